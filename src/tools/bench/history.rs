//! `mezzanine bench history`: synthetic samples in, a table out.
//!
//! 1. The raw Appender ceiling: pre-built rows appended to the samples table
//!    with one Appender on one thread, committed every 50 000 rows.
//! 2. The writer: the same rows sent as samples (each with an ack) through
//!    the real [`HistoryWriter`] — channel, idempotency check, batching,
//!    transactions, transitions, keyframes, rollups, acks after commit.
//!    The ratio of the two is the cost of the recorder over the ceiling.
//! 3. Queries on reader connections at growing sizes (built through the
//!    writer): state-at-T at random T, and a scrub frame (1 h window, 100
//!    properties, 1 s buckets), p50/p95.
//!
//! Data: 100 assets × 10 properties at 10 Hz each (10 000 rows per second
//! of plant time), so 100M rows are 2.8 h of plant.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use duckdb::params;

use super::{BenchError, synthetic_registry};
use crate::demo::plc::Rng;
use crate::history::{HistoryWriter, Store, WriterSettings, query};
use crate::ingest::{Ack, HopStamps, Origin, Quality, Recorded, Sample, SampleValue};
use crate::registry::{AssetIdx, AssetRegistry, PropertyRef};

const ASSETS: usize = 100;
const PROPS: usize = 10;
const HZ: i64 = 10;
const T0_US: i64 = 1_790_000_000_000_000;

/// The i-th synthetic row: (prop index, ts_us, value).
fn row(i: u64) -> (usize, i64, f64) {
    let n_props = (ASSETS * PROPS) as u64;
    let p = (i % n_props) as usize;
    let tick = (i / n_props) as i64;
    let ts = T0_US + tick * (1_000_000 / HZ) + p as i64; // distinct per property
    let v = 50.0 + 20.0 * ((tick as f64) * 0.01 + p as f64).sin();
    (p, ts, v)
}

fn prop_ref(p: usize) -> PropertyRef {
    PropertyRef {
        asset: AssetIdx((p / PROPS) as u32),
        property: (p % PROPS) as u32,
    }
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i]
}

/// Rows per second appending `n` rows with one raw Appender.
fn appender_ceiling(dir: &std::path::Path, reg: &AssetRegistry, n: u64) -> Result<f64, BenchError> {
    let store = Store::open(&dir.join("ceiling.duckdb"), reg)?;
    let ids: Vec<i32> = (0..ASSETS * PROPS)
        .map(|p| store.props.id(prop_ref(p)).unwrap_or(0))
        .collect();
    let c = &store.conn;
    let sql = |source| crate::history::HistoryError::Sql {
        what: "ceiling",
        source,
    };
    let t = Instant::now();
    let mut i = 0u64;
    while i < n {
        let end = (i + 50_000).min(n);
        c.execute_batch("BEGIN TRANSACTION").map_err(sql)?;
        {
            let mut a = c.appender("samples").map_err(sql)?;
            for k in i..end {
                let (p, ts, v) = row(k);
                a.append_row(params![
                    ts,
                    ids[p],
                    Some(v),
                    None::<&str>,
                    None::<i64>,
                    0u8,
                    0u8,
                    ts,
                    None::<&str>,
                    k as i64,
                    false
                ])
                .map_err(sql)?;
            }
            a.flush().map_err(sql)?;
        }
        c.execute_batch("COMMIT").map_err(sql)?;
        i = end;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

/// Sends rows `[from, to)` through the writer and waits for every ack.
fn feed(writer: &HistoryWriter, from: u64, to: u64) -> Result<f64, BenchError> {
    let acked = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    for k in from..to {
        let (p, ts, v) = row(k);
        let a = acked.clone();
        let s = Sample {
            property: prop_ref(p),
            value: SampleValue::Number(v),
            reason: None,
            quality: Quality::Good,
            origin: Origin::Mqtt,
            hops: HopStamps {
                source_us: ts,
                broker_us: None,
                received_us: ts,
                decoded_us: ts,
                arrival_stamped: false,
                historical: false,
                mqtt_pkid: None,
                redelivered: false,
            },
        };
        let ack = Ack::new(move || {
            a.fetch_add(1, Ordering::Relaxed);
        });
        if writer
            .recorder
            .send(Recorded::Sample(s, Some(ack)))
            .is_err()
        {
            return Err(crate::history::HistoryError::WriterGone.into());
        }
    }
    let want = to - from;
    while acked.load(Ordering::Relaxed) < want {
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(want as f64 / t.elapsed().as_secs_f64())
}

struct QueryTimes {
    rows: u64,
    state_p50_ms: f64,
    state_p95_ms: f64,
    scrub_p50_ms: f64,
    scrub_p95_ms: f64,
    scrub_buckets: usize,
}

fn measure_queries(
    conn: &duckdb::Connection,
    store_props: &crate::history::PropIds,
    rows: u64,
    rng: &mut Rng,
) -> Result<QueryTimes, BenchError> {
    let (_, last_ts, _) = row(rows - 1);
    let span = last_ts - T0_US;
    let mut state = Vec::new();
    for _ in 0..40 {
        let t = T0_US + (rng.f64() * span as f64) as i64;
        let s = Instant::now();
        let r = query::state_at(conn, store_props, t)?;
        state.push(s.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(r);
    }
    let ids: Vec<i32> = (0..100)
        .filter_map(|p| store_props.id(prop_ref(p)))
        .collect();
    let window = 3_600_000_000i64.min(span);
    let mut scrub = Vec::new();
    let mut n_buckets = 0;
    for _ in 0..20 {
        let end = T0_US + window + (rng.f64() * (span - window).max(0) as f64) as i64;
        let s = Instant::now();
        let (_, m) = query::buckets(conn, &ids, end - window, end, 1_000_000)?;
        scrub.push(s.elapsed().as_secs_f64() * 1e3);
        n_buckets = m.values().map(Vec::len).sum();
    }
    Ok(QueryTimes {
        rows,
        state_p50_ms: percentile(&mut state, 0.5),
        state_p95_ms: percentile(&mut state, 0.95),
        scrub_p50_ms: percentile(&mut scrub, 0.5),
        scrub_p95_ms: percentile(&mut scrub, 0.95),
        scrub_buckets: n_buckets,
    })
}

pub fn run_history_bench(quick: bool) -> Result<(), BenchError> {
    let reg = Arc::new(AssetRegistry::new(synthetic_registry(ASSETS, PROPS)));
    let dir = std::env::temp_dir().join(format!("mezzanine-bench-history-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let append_n: u64 = if quick { 300_000 } else { 2_000_000 };
    let sizes: &[u64] = if quick {
        &[300_000, 1_000_000]
    } else {
        &[1_000_000, 10_000_000, 100_000_000]
    };
    println!(
        "history bench: {ASSETS} assets × {PROPS} properties at {HZ} Hz, files under {}",
        dir.display()
    );

    let ceiling = appender_ceiling(&dir, &reg, append_n)?;

    let store = Store::open(&dir.join("bench.duckdb"), &reg)?;
    let props = store.props.clone();
    let reader = store.reader()?;
    let settings = WriterSettings {
        // Checkpoints and the 1 min rollup as in the app; a long run.
        ..WriterSettings::default()
    };
    let writer = HistoryWriter::spawn(store, reg.clone(), settings, 65_536)?;
    let sustained = feed(&writer, 0, append_n)?;
    let commits = writer.stats.commits.load(Ordering::Relaxed);

    println!();
    println!("append ({append_n} rows, one run):");
    println!("  raw Appender ceiling   {ceiling:>12.0} rows/s");
    println!(
        "  recorder (acked)       {sustained:>12.0} rows/s   ratio ceiling/recorder = {:.2}   commits: {commits}",
        ceiling / sustained
    );

    let mut rng = Rng::new(7);
    let mut done = append_n;
    let mut results = Vec::new();
    for &size in sizes {
        if size > done {
            let t = Instant::now();
            let rate = feed(&writer, done, size)?;
            println!(
                "  filled to {size} rows in {:.0} s ({rate:.0} rows/s)",
                t.elapsed().as_secs_f64()
            );
            done = size;
        }
        writer.flush()?;
        // Let the rollups catch up, as they do within a second in the app.
        std::thread::sleep(Duration::from_millis(1_500));
        writer.flush()?;
        results.push(measure_queries(&reader, &props, size, &mut rng)?);
    }
    println!();
    println!(
        "     rows | state-at-T p50 / p95 ms | scrub frame (1 h, 100 props, 1 s) p50 / p95 ms | buckets"
    );
    for r in &results {
        println!(
            "{:>9} | {:>10.2} / {:>8.2} | {:>25.2} / {:>8.2} | {:>7}",
            r.rows, r.state_p50_ms, r.state_p95_ms, r.scrub_p50_ms, r.scrub_p95_ms, r.scrub_buckets
        );
    }
    println!(
        "(goals: state-at-T < 20 ms and scrub frame < 50 ms p95 at 100M rows; recorder within 2× of the ceiling)"
    );
    drop(reader);
    writer.join();
    let size_mb = std::fs::metadata(dir.join("bench.duckdb"))
        .map(|m| m.len() as f64 / 1e6)
        .unwrap_or(0.0);
    println!("history file: {size_mb:.0} MB for {done} rows");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
