//! The Parquet lake against a real writer and DuckDB file in a temp dir:
//! closed periods land Hive-partitioned, a late sample becomes a correction
//! file of its partition, a stop closes the rest, every table's count in the
//! lake equals the history's, and `mezzanine lake compact` (the real binary)
//! merges a partition's files and drops rows two recorders both wrote.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use duckdb::Connection;

use mezzanine::history::lake::{LakeSettings, parquet_files};
use mezzanine::history::{HistoryWriter, Store, WriterMsg, WriterSettings};
use mezzanine::ingest::{
    DeadLetter, HopStamps, Origin, Quality, Recorded, Sample, SampleValue, now_us,
};
use mezzanine::registry::{AssetRegistry, PropertyRef};

use crate::live::registry;

const HOUR: i64 = 3_600_000_000;

fn prop(reg: &AssetRegistry, asset: &str, name: &str) -> PropertyRef {
    let a = reg.by_id(asset).expect("asset");
    reg.property_by_name(a, name).expect("property")
}

fn sample(property: PropertyRef, value: SampleValue, ts_us: i64) -> Recorded {
    Recorded::Sample(
        Sample {
            property,
            value,
            reason: None,
            quality: Quality::Good,
            origin: Origin::Mqtt,
            hops: HopStamps {
                source_us: ts_us,
                broker_us: None,
                received_us: ts_us + 500,
                decoded_us: ts_us + 600,
                arrival_stamped: false,
                historical: false,
                mqtt_pkid: None,
                redelivered: false,
            },
        },
        None,
    )
}

fn count(c: &Connection, sql: &str) -> i64 {
    c.query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn lake_count(c: &Connection, lake: &Path, dataset: &str) -> i64 {
    if parquet_files(&lake.join(dataset))
        .unwrap_or_default()
        .is_empty()
    {
        return 0;
    }
    count(
        c,
        &format!(
            "SELECT count(*) FROM read_parquet('{}/{dataset}/**/*.parquet', hive_partitioning = true)",
            lake.display()
        ),
    )
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "waited for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_lake_closes_periods_takes_late_rows_as_corrections_and_matches_the_history() {
    let reg: Arc<AssetRegistry> = registry();
    let dir = tempfile::tempdir().expect("dir");
    let lake = dir.path().join("lake");
    let db = dir.path().join("h.duckdb");
    let settings = WriterSettings {
        flush_interval: Duration::from_millis(20),
        lake: Some(LakeSettings {
            dir: lake.clone(),
            site: "lyon".into(),
            recorder: "rec-a".into(),
            close_every_us: HOUR,
            grace_us: 0,
            tick: Duration::from_millis(100),
        }),
        ..WriterSettings::default()
    };
    // Three past hours are recorded first without a lake; the lake is then
    // switched on over the existing file (its first pass closes them).
    let lake_settings = settings.lake.clone();
    let store = Store::open(&db, &reg).expect("open");
    let writer = HistoryWriter::spawn(
        store,
        reg.clone(),
        WriterSettings {
            lake: None,
            ..settings.clone()
        },
        1024,
    )
    .expect("writer");
    let speed = prop(&reg, "L1-MILL-01", "spindle_speed");
    let state = prop(&reg, "L1-MILL-01", "state");
    let spectrum = prop(&reg, "L1-MILL-01", "vibration_spectrum");
    let this_hour = now_us().div_euclid(HOUR) * HOUR;
    // Three closed hours of samples, a state change and a spectrum in each,
    // and one row of every other dataset.
    let mut sent = 0;
    for h in 1..=3 {
        let base = this_hour - h * HOUR;
        for i in 0..100 {
            writer
                .recorder
                .send(sample(
                    speed,
                    SampleValue::Number(i as f64),
                    base + i * 1_000_000,
                ))
                .expect("send");
            sent += 1;
        }
        for (k, s) in ["running", "stopped"].iter().enumerate() {
            writer
                .recorder
                .send(sample(
                    state,
                    SampleValue::Text((*s).into()),
                    base + 200_000_000 + k as i64,
                ))
                .expect("send");
        }
        writer
            .recorder
            .send(sample(
                spectrum,
                SampleValue::Spectrum {
                    bin_hz: 10.0,
                    bins: Arc::from(vec![1.0f32, 2.0, 3.0, 4.0]),
                },
                base + 300_000_000,
            ))
            .expect("send");
    }
    let old = this_hour - 2 * HOUR;
    for msg in [
        WriterMsg::MesEvent {
            ts_us: old,
            event_id: "EV-1".into(),
            event_type: "order.released".into(),
            asset_id: Some("L1-MILL-01".into()),
            work_order: Some("WO-1".into()),
            payload: "{}".into(),
        },
        WriterMsg::WorkOrder {
            asset_id: "L1-MILL-01".into(),
            work_order: Some("WO-1".into()),
            ts_us: old + 1,
        },
        WriterMsg::Discrepancy {
            ts_us: old + 2,
            discrepancy_id: "D-1".into(),
            asset_id: Some("L1-MILL-01".into()),
            rule: "state".into(),
            status: "open".into(),
            detail: "MES says running, PLC stopped".into(),
        },
        WriterMsg::Bookmark {
            ts_us: old + 3,
            name: "look here".into(),
        },
    ] {
        writer.app.send(msg).expect("send");
    }
    writer
        .recorder
        .send(Recorded::DeadLetter(
            DeadLetter {
                origin: Origin::Mqtt,
                source: "acme/lyon/x".into(),
                reason: "not JSON".into(),
                payload_len: 3,
                payload_head: b"{{{".to_vec(),
                received_us: old + 4,
            },
            None,
        ))
        .expect("send");
    writer.flush().expect("flush");
    writer.join();
    let store = Store::open(&db, &reg).expect("open");
    let writer = HistoryWriter::spawn(
        store,
        reg.clone(),
        WriterSettings {
            lake: lake_settings,
            ..settings
        },
        1024,
    )
    .expect("writer");
    let stats = writer.lake.clone().expect("a lake");
    let why = || format!("{:?}", stats.last_error.lock().map(|e| e.clone()));
    wait_until("the closed hours in the lake", || {
        assert_eq!(
            stats.errors.load(std::sync::atomic::Ordering::Relaxed),
            0,
            "{}",
            why()
        );
        stats
            .closed_until_us
            .load(std::sync::atomic::Ordering::Relaxed)
            >= this_hour
            && stats.rows.load(std::sync::atomic::Ordering::Relaxed) >= sent
    });
    let c = Connection::open_in_memory().expect("duckdb");
    assert_eq!(lake_count(&c, &lake, "samples"), 3 * 100 + 3 * 2 + 3);
    let hour_dir = |t: i64| {
        let ts = jiff::Timestamp::from_microsecond(t).expect("ts");
        lake.join("samples").join("site=lyon").join(format!(
            "date={}/hour={}",
            ts.strftime("%Y-%m-%d"),
            ts.strftime("%-H")
        ))
    };
    let oldest = this_hour - 3 * HOUR;
    let files = parquet_files(&hour_dir(oldest)).expect("partition");
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0]
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("rec-a-")),
        "{files:?}"
    );
    // The partitions carry the site, date and hour back.
    let (site, hours): (String, i64) = c
        .query_row(
            &format!(
                "SELECT any_value(site), count(DISTINCT hour) FROM read_parquet('{}/samples/**/*.parquet', hive_partitioning = true)",
                lake.display()
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("partitions");
    assert_eq!((site.as_str(), hours), ("lyon", 3));

    // A late sample for the oldest (closed) hour: a correction file there.
    writer
        .recorder
        .send(sample(
            speed,
            SampleValue::Number(-1.0),
            oldest + 500_000_000,
        ))
        .expect("send");
    writer.flush().expect("flush");
    wait_until("the correction file", || {
        stats
            .correction_files
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    });
    let files = parquet_files(&hour_dir(oldest)).expect("partition");
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().contains("rec-a-corr-")),
        "{files:?}"
    );
    assert_eq!(lake_count(&c, &lake, "samples"), 3 * 100 + 3 * 2 + 3 + 1);

    // This hour's samples are not closed yet; the stop closes them.
    for i in 0..10 {
        writer
            .recorder
            .send(sample(
                speed,
                SampleValue::Number(i as f64),
                now_us() - 1_000 + i,
            ))
            .expect("send");
    }
    writer.join();
    // Every table of the history is in the lake, row for row.
    let store = Store::open(&db, &reg).expect("reopen");
    let h = &store.conn;
    for (dataset, table) in [
        ("samples", "samples"),
        ("spectra", "blobs"),
        ("transitions", "transitions"),
        ("mes_events", "mes_events"),
        ("work_orders", "work_orders"),
        ("discrepancies", "discrepancies"),
        ("dead_letters", "dead_letters"),
        ("part_events", "part_events"),
        ("bookmarks", "bookmarks"),
        ("schedules", "schedules"),
        ("audit_log", "audit_log"),
        ("mes_outages", "mes_outages"),
    ] {
        assert_eq!(
            lake_count(&c, &lake, dataset),
            count(h, &format!("SELECT count(*) FROM {table}")),
            "{dataset}"
        );
    }
    assert!(count(h, "SELECT count(*) FROM transitions") >= 2);
    // Same values and times, not only counts.
    let lake_sum: f64 = c
        .query_row(
            &format!(
                "SELECT sum(value * 1.0 + ts_us % 1000) FROM read_parquet('{}/samples/**/*.parquet', hive_partitioning = true)",
                lake.display()
            ),
            [],
            |r| r.get(0),
        )
        .expect("sum");
    let db_sum: f64 = h
        .query_row(
            "SELECT sum(value * 1.0 + ts_us % 1000) FROM samples",
            [],
            |r| r.get(0),
        )
        .expect("sum");
    assert_eq!(lake_sum, db_sum);
    // Spectra keep their bins.
    let n_bins: i64 = count(
        &c,
        &format!(
            "SELECT sum(n_bins) FROM read_parquet('{}/spectra/**/*.parquet', hive_partitioning = true)",
            lake.display()
        ),
    );
    assert_eq!(n_bins, 12);
    drop(store);

    // A second recorder that wrote the same rows (a redelivery, or two
    // members of a shared subscription): compaction keeps one of each.
    let dup_from = parquet_files(&hour_dir(oldest)).expect("partition")[0].clone();
    let dup_rows = count(
        &c,
        &format!(
            "SELECT count(*) FROM read_parquet('{}')",
            dup_from.display()
        ),
    );
    std::fs::copy(&dup_from, hour_dir(oldest).join("rec-b-copy.parquet")).expect("copy");
    let before = lake_count(&c, &lake, "samples");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mezzanine"))
        .args(["lake", "compact", "--lake"])
        .arg(&lake)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("{dup_rows} duplicates dropped")),
        "{stdout}"
    );
    assert_eq!(lake_count(&c, &lake, "samples"), before - dup_rows);
    let files = parquet_files(&hour_dir(oldest)).expect("partition");
    assert_eq!(files.len(), 1, "{files:?}");
    // Nothing was lost by the merge: one row per key, every key still there.
    let distinct = count(
        &c,
        &format!(
            "SELECT count(*) FROM (SELECT DISTINCT asset_id, property, ts_us FROM read_parquet('{}/samples/**/*.parquet', hive_partitioning = true))",
            lake.display()
        ),
    );
    assert_eq!(distinct, lake_count(&c, &lake, "samples"));
}

/// `mezzanine drill share` through the real binary: three recorders on one
/// mosquitto as members of `$share/recorders/…`, one killed with SIGKILL a
/// third of the way through and started again; every acknowledged sample
/// is once in the members' histories and once in the compacted lake.
#[test]
fn three_shared_subscription_recorders_lose_and_double_nothing_when_one_is_killed() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mezzanine"))
        .args(["drill", "share", "--recorders", "3", "--messages", "6000"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}{stderr}");
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("killed rec-2 (SIGKILL)"), "{stderr}");
    let row = stdout
        .lines()
        .find(|l| l.contains("SIGKILL |"))
        .expect("the table's row");
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    // recorders, kill, published, acked, histories, lost, doubled, members…
    assert_eq!(
        &cells[..7],
        ["3", "SIGKILL", "6000", "6000", "6000", "0", "0"]
    );
    let members: Vec<u64> = cells[7].split('+').map(|n| n.parse().expect("n")).collect();
    assert_eq!(members.len(), 3);
    assert!(
        members.iter().all(|n| *n > 0),
        "every member took a share: {members:?}"
    );
    assert_eq!(
        cells[8], "6000→6000",
        "the lake before and after compaction"
    );
}

/// `mezzanine whatif sweep` through the real binary: the worked example's
/// two jobs, one chosen by `--index`, one by a Kubernetes Indexed Job's
/// `JOB_COMPLETION_INDEX`; both KPI tables land in the lake and read back
/// as one dataset, partitioned by sweep and job.
#[test]
fn a_whatif_sweep_runs_each_job_into_the_lake() {
    let dir = tempfile::tempdir().expect("dir");
    let lake = dir.path().join("lake");
    let sweep = crate::repo("docs/whatif/sweep-line.toml");
    let run = |args: &[&str], env: Option<(&str, &str)>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_mezzanine"));
        c.args(["whatif", "sweep"]).arg(&sweep).args(args);
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        c.env_remove("SLURM_ARRAY_TASK_ID");
        let out = c.output().expect("runs");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, text) = run(&["--list"], None);
    assert!(ok && text.contains("2 jobs"), "{text}");
    let lake_s = lake.display().to_string();
    let (ok, text) = run(&["--index", "0", "--lake", &lake_s], None);
    assert!(ok, "{text}");
    let (ok, text) = run(&["--lake", &lake_s], Some(("JOB_COMPLETION_INDEX", "1")));
    assert!(ok, "{text}");
    let (ok, text) = run(&["--index", "2", "--lake", &lake_s], None);
    assert!(!ok && text.contains("it has 2 jobs"), "{text}");
    let c = Connection::open_in_memory().expect("duckdb");
    let mut st = c
        .prepare(&format!(
            "SELECT sweep, job, count(DISTINCT variant), count(*), any_value(scenario_file)
             FROM read_parquet('{}/whatif/**/*.parquet', hive_partitioning = true)
             GROUP BY ALL ORDER BY job",
            lake.display()
        ))
        .expect("query");
    let rows: Vec<(String, i64, i64, i64, String)> = st
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .expect("rows")
        .map(|r| r.expect("row"))
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (i, (sweep, job, variants, n, file)) in rows.iter().enumerate() {
        assert_eq!(sweep, "line-downtime");
        assert_eq!(*job, i as i64);
        assert_eq!(*variants, 3, "baseline and two scenarios: {rows:?}");
        assert!(*n > 6, "{rows:?}");
        assert!(
            file.ends_with(if i == 0 {
                "mill-down.toml"
            } else {
                "line-mill2-down.toml"
            }),
            "{file}"
        );
    }
}
