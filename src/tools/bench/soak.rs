//! `mezzanine bench soak --minutes M`: a steady load in, a table of how the
//! process holds up out.
//!
//! 20,000 samples/s (or `--rate`) from a publisher through the embedded broker into the
//! app's path (MQTT adapter → recorder commit → ack, and the twin's copy
//! applied by a headless frame loop at 60 Hz) for M minutes. Every 5
//! minutes (every minute in runs under 10 minutes) a row: resident memory,
//! the recorder's backlog, and the p99 of source → twin and receipt →
//! commit over that interval. At the end: what was not recorded after a
//! 60 s drain (unacknowledged, so the broker's still), and how much the
//! resident memory grew after the first interval (the warm-up).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{BenchError, BenchPath, Rig, spawn_load};
use crate::ingest::{Hop, LatencyStats, Origin};

/// The soak's default load, samples per second.
pub const SOAK_RATE_PER_S: u64 = 20_000;

/// Resident memory of this process, MiB (from /proc).
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// One row of the soak table.
#[derive(Debug, Clone)]
pub struct SoakRow {
    pub minute: f64,
    pub published: u64,
    pub recorded: u64,
    pub backlog: u64,
    pub rss_mib: f64,
    /// Of the resident memory, what DuckDB says it holds (its buffer pool).
    pub duckdb_mib: f64,
    pub twin_p99_ms: Option<f64>,
    pub commit_p99_ms: Option<f64>,
}

#[allow(clippy::print_stdout)] // a command-line table
pub fn run_soak(minutes: u64, rate_per_s: u64) -> Result<Vec<SoakRow>, BenchError> {
    let minutes = minutes.max(1);
    let rate_per_s = rate_per_s.max(1);
    let every = Duration::from_secs(if minutes < 10 { 60 } else { 300 });
    let mut rig = Rig::start(BenchPath::Recorder, 100, 10)?;
    let published = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let load = spawn_load(
        rig.broker.port,
        rig.topics.clone(),
        rate_per_s,
        minutes * 60,
        published.clone(),
        stop.clone(),
        "bench-soak-load".into(),
    );
    println!(
        "\nsoak: {rate_per_s} samples/s for {minutes} min, {} tags, publisher → embedded \
         rumqttd → MQTT adapter → recorder (commit, then ack) + twin at 60 Hz",
        rig.topics.len()
    );
    println!(
        "{:>6} | {:>10} | {:>10} | {:>7} | {:>8} | {:>10} | {:>14} | {:>15}",
        "min",
        "published",
        "recorded",
        "backlog",
        "RSS MiB",
        "DuckDB MiB",
        "src→twin p99 ms",
        "rcv→commit p99 ms"
    );
    println!("{}", "-".repeat(101));
    let t0 = Instant::now();
    let mut next_row = t0 + every;
    let mut rows = Vec::new();
    let frame = Duration::from_micros(16_667);
    loop {
        let f0 = Instant::now();
        rig.app.update();
        let finished = load.is_finished();
        // The last row when the load ends (unless one was just printed).
        let last_row_fresh = next_row.saturating_duration_since(Instant::now()) > every / 2;
        if Instant::now() >= next_row || (finished && !last_row_fresh) {
            next_row += every;
            let lat = rig.app.world().resource::<LatencyStats>();
            let twin = lat.summary(Origin::Mqtt, Hop::SourceToTwin);
            rig.app.world_mut().resource_mut::<LatencyStats>().reset();
            let (backlog, commit, duckdb_bytes) = match &rig.history {
                Some(h) => (
                    h.writer.stats.backlog.load(Ordering::Relaxed),
                    h.writer.stats.take_commit_latency(),
                    h.writer.stats.duckdb_memory_bytes.load(Ordering::Relaxed),
                ),
                None => (0, None, 0),
            };
            let row = SoakRow {
                minute: t0.elapsed().as_secs_f64() / 60.0,
                published: published.load(Ordering::Relaxed),
                recorded: rig.recorded(),
                backlog,
                rss_mib: rss_mib(),
                duckdb_mib: duckdb_bytes as f64 / (1024.0 * 1024.0),
                twin_p99_ms: twin.map(|s| s.p99_us as f64 / 1000.0),
                commit_p99_ms: commit.map(|s| s.p99_us as f64 / 1000.0),
            };
            let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
            println!(
                "{:>6.1} | {:>10} | {:>10} | {:>7} | {:>8.1} | {:>10.1} | {:>14} | {:>15}",
                row.minute,
                row.published,
                row.recorded,
                row.backlog,
                row.rss_mib,
                row.duckdb_mib,
                opt(row.twin_p99_ms),
                opt(row.commit_p99_ms)
            );
            rows.push(row);
        }
        if finished {
            break;
        }
        std::thread::sleep(frame.saturating_sub(f0.elapsed()));
    }
    let _ = load.join();
    // Let the recorder finish what it holds.
    let total = published.load(Ordering::Relaxed);
    let drain = Instant::now();
    while rig.recorded() < total && drain.elapsed() < Duration::from_secs(60) {
        rig.app.update();
        std::thread::sleep(Duration::from_millis(50));
    }
    let recorded = rig.recorded();
    stop.store(true, Ordering::Relaxed);
    rig.stop();
    let growth = |f: fn(&SoakRow) -> f64| match (rows.first().map(f), rows.last().map(f)) {
        (Some(a), Some(b)) if a > 0.0 => {
            format!("{:+.1} % ({a:.0} → {b:.0} MiB)", (b - a) / a * 100.0)
        }
        _ => "-".into(),
    };
    println!(
        "published {total}, recorded {recorded}, not recorded after a 60 s drain {} (never \
         acknowledged, so still the broker's to deliver); after the first interval → end: RSS \
         {}, DuckDB's buffers {}, the rest {}",
        total.saturating_sub(recorded),
        growth(|r| r.rss_mib),
        growth(|r| r.duckdb_mib),
        growth(|r| r.rss_mib - r.duckdb_mib),
    );
    Ok(rows)
}
