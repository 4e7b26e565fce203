//! The flight recorder against real DuckDB files in temp dirs: round trip,
//! state at T, buckets, Parquet export, `kill -9` with a real mosquitto and
//! the real `mezzanine record` process, a WAL DuckDB cannot replay, a
//! migration from schema 1, and replay in a headless app.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use duckdb::{Connection, params};

use mezzanine::demo::broker::free_port;
use mezzanine::history::query::{self, BucketSource, StoredValue};
use mezzanine::history::store::{migrate_to, schema_version, wal_path};
use mezzanine::history::{HistoryWriter, SCHEMA_VERSION, Store, WriterMsg, WriterSettings};
use mezzanine::ingest::decode::encode_json;
use mezzanine::ingest::{
    Ack, DeadLetter, HopStamps, Origin, Quality, Recorded, Sample, SampleValue,
};
use mezzanine::registry::{AssetRegistry, PropertyRef};

use crate::live::{Pub, SPINDLE_TOPIC, registry, start_mosquitto};
use crate::repo;

/// 2026-11-24T10:00:00Z, on a minute boundary.
const T0: i64 = 1_795_514_400_000_000;
const S: i64 = 1_000_000;

fn prop(reg: &AssetRegistry, asset: &str, name: &str) -> PropertyRef {
    let a = reg.by_id(asset).expect("asset");
    reg.property_by_name(a, name).expect("property")
}

fn sample(property: PropertyRef, value: SampleValue, ts_us: i64) -> Sample {
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
    }
}

fn fast_settings() -> WriterSettings {
    WriterSettings {
        flush_interval: Duration::from_millis(20),
        rollup_1s_every: Duration::from_millis(10),
        rollup_1m_every: Duration::from_millis(10),
        ..WriterSettings::default()
    }
}

struct Rec {
    writer: HistoryWriter,
    acks: Arc<AtomicU64>,
    reader: Connection,
    props: Arc<mezzanine::history::PropIds>,
}

fn open(path: &std::path::Path, reg: &Arc<AssetRegistry>, settings: WriterSettings) -> Rec {
    let store = Store::open(path, reg).expect("open");
    let reader = store.reader().expect("reader");
    let props = store.props.clone();
    let writer = HistoryWriter::spawn(store, reg.clone(), settings, 1024).expect("writer");
    Rec {
        writer,
        acks: Arc::new(AtomicU64::new(0)),
        reader,
        props,
    }
}

impl Rec {
    fn send(&self, s: Sample) {
        let a = self.acks.clone();
        self.writer
            .recorder
            .send(Recorded::Sample(
                s,
                Some(Ack::new(move || {
                    a.fetch_add(1, Ordering::SeqCst);
                })),
            ))
            .expect("writer alive");
    }
    fn flush(&self) {
        self.writer.flush().expect("flush");
    }
}

#[test]
fn samples_round_trip_and_duplicates_are_dropped_in_memory() {
    let reg = registry();
    let dir = tempfile::tempdir().expect("dir");
    let r = open(&dir.path().join("h.duckdb"), &reg, fast_settings());
    let speed = prop(&reg, "L1-MILL-01", "spindle_speed");
    let state = prop(&reg, "L1-MILL-01", "state");
    let spectrum = prop(&reg, "L1-MILL-01", "vibration_spectrum");
    let bins: Vec<f32> = (0..64).map(|i| i as f32 * 0.25).collect();

    // Work-order context (from the MES side) tags what follows.
    r.writer
        .app
        .send(WriterMsg::WorkOrder {
            asset_id: "L1-MILL-01".into(),
            work_order: Some("WO-4711".into()),
            ts_us: T0 - S,
        })
        .expect("writer alive");
    r.send(sample(speed, SampleValue::Number(1000.0), T0));
    r.send(sample(speed, SampleValue::Number(1200.5), T0 + S));
    // A QoS 1 redelivery: same property, same source time.
    r.send(sample(speed, SampleValue::Number(1200.5), T0 + S));
    r.send(sample(state, SampleValue::Text("running".into()), T0));
    let mut down = sample(state, SampleValue::Text("down".into()), T0 + 2 * S);
    down.reason = Some("tool breakage".into());
    r.send(down);
    r.send(sample(
        spectrum,
        SampleValue::Spectrum {
            bin_hz: 12.5,
            bins: bins.clone().into(),
        },
        T0,
    ));
    // A payload that could not be decoded is kept too, and acknowledged.
    let a = r.acks.clone();
    r.writer
        .recorder
        .send(Recorded::DeadLetter(
            DeadLetter {
                origin: Origin::Mqtt,
                source: "acme/lyon/machining/line1/mill01/spindle_speed".into(),
                reason: "not JSON".into(),
                payload_len: 3,
                payload_head: b"\x00\x01\x02".to_vec(),
                received_us: T0,
            },
            Some(Ack::new(move || {
                a.fetch_add(1, Ordering::SeqCst);
            })),
        ))
        .expect("writer alive");
    r.flush();

    // Every delivery is acknowledged once durable, the duplicate too.
    assert_eq!(r.acks.load(Ordering::SeqCst), 7);
    let (dl, reason): (i64, String) = r
        .reader
        .query_row("SELECT count(*), min(reason) FROM dead_letters", [], |x| {
            Ok((x.get(0)?, x.get(1)?))
        })
        .expect("dead letters");
    assert_eq!((dl, reason.as_str()), (1, "not JSON"));
    let tagged: i64 = r
        .reader
        .query_row(
            "SELECT count(*) FROM samples WHERE work_order = 'WO-4711'",
            [],
            |x| x.get(0),
        )
        .expect("tagged");
    assert_eq!(tagged, 5, "every sample of the mill carries its work order");
    assert_eq!(r.writer.stats.duplicates_dropped.load(Ordering::SeqCst), 1);
    let id = r.props.id(speed).expect("id");
    let rows = query::raw_samples(&r.reader, id, T0 - S, T0 + 10 * S).expect("rows");
    assert_eq!(
        rows,
        vec![(T0, Some(1000.0), None), (T0 + S, Some(1200.5), None)]
    );
    let tr = query::transitions(&r.reader, "L1-MILL-01", T0 - S, T0 + 10 * S).expect("tr");
    assert_eq!(tr.len(), 2);
    assert_eq!((tr[0].ts_us, tr[0].state.as_str()), (T0, "running"));
    assert_eq!(
        (tr[1].ts_us, tr[1].state.as_str(), tr[1].reason.as_deref()),
        (T0 + 2 * S, "down", Some("tool breakage"))
    );
    let at = query::state_at(&r.reader, &r.props, T0 + S + S / 2).expect("state");
    let get = |p: PropertyRef| {
        let id = r.props.id(p).expect("id");
        at.values
            .iter()
            .find(|v| v.prop_id == id)
            .map(|v| v.value.clone())
    };
    assert_eq!(get(speed), Some(StoredValue::Number(1200.5)));
    assert_eq!(get(state), Some(StoredValue::Text("running".into())));
    match get(spectrum) {
        Some(StoredValue::Spectrum {
            bin_hz, bins: got, ..
        }) => {
            assert_eq!(bin_hz, 12.5);
            assert_eq!(got, bins);
        }
        other => panic!("spectrum not read back: {other:?}"),
    }
    let mill = at
        .states
        .iter()
        .find(|s| s.asset_id == "L1-MILL-01")
        .expect("state");
    assert_eq!((mill.state.as_str(), mill.since_ts_us), ("running", T0));
    assert_eq!(
        at.work_orders.get("L1-MILL-01"),
        Some(&Some("WO-4711".to_string()))
    );
    let n: i64 = r
        .reader
        .query_row("SELECT count(*) FROM samples", [], |x| x.get(0))
        .expect("count");
    assert_eq!(n, 5, "the duplicate never reached the table");
}

#[test]
fn state_at_t_matches_a_hand_computed_case_across_keyframes() {
    let reg = registry();
    let dir = tempfile::tempdir().expect("dir");
    let settings = WriterSettings {
        keyframe_every_rows: 2,
        ..fast_settings()
    };
    let r = open(&dir.path().join("h.duckdb"), &reg, settings);
    let a = prop(&reg, "L1-MILL-01", "spindle_speed");
    let b = prop(&reg, "L1-MILL-01", "spindle_temp");
    let (ia, ib) = (r.props.id(a).expect("a"), r.props.id(b).expect("b"));
    // One commit per line, so keyframes fall between them.
    for (p, t, v) in [
        (a, 10, 1.0),
        (b, 15, 100.0),
        (a, 20, 2.0),
        (b, 35, 300.0),
        (a, 40, 4.0),
        // Late: arrives after t=40 was recorded (and after its keyframe).
        (a, 30, 3.0),
        (b, 38, 380.0),
        // Exactly at the first keyframe's time, in a later batch.
        (b, 10, 50.0),
    ] {
        r.send(sample(p, SampleValue::Number(v), T0 + t * S));
        r.flush();
    }
    assert!(r.writer.stats.keyframes.load(Ordering::SeqCst) >= 2);
    let kf: i64 = r
        .reader
        .query_row("SELECT count(DISTINCT ts_us) FROM keyframes", [], |x| {
            x.get(0)
        })
        .expect("keyframes");
    assert!(kf >= 2, "keyframes written: {kf}");

    let at = |t: i64| -> (Option<f64>, Option<f64>) {
        let s = query::state_at(&r.reader, &r.props, T0 + t).expect("state");
        let v = |id: i32| {
            s.values
                .iter()
                .find(|v| v.prop_id == id)
                .and_then(|v| match v.value {
                    StoredValue::Number(x) => Some(x),
                    _ => None,
                })
        };
        (v(ia), v(ib))
    };
    assert_eq!(at(5 * S), (None, None));
    assert_eq!(
        at(10 * S),
        (Some(1.0), Some(50.0)),
        "a sample at exactly T counts, also one at exactly a keyframe's time from a later batch"
    );
    assert_eq!(at(10 * S - 1), (None, None));
    assert_eq!(at(17 * S), (Some(1.0), Some(100.0)));
    assert_eq!(at(20 * S), (Some(2.0), Some(100.0)));
    assert_eq!(
        at(32 * S),
        (Some(3.0), Some(100.0)),
        "the late sample is found"
    );
    assert_eq!(at(36 * S), (Some(3.0), Some(300.0)));
    assert_eq!(at(39 * S), (Some(3.0), Some(380.0)));
    assert_eq!(
        at(100 * S),
        (Some(4.0), Some(380.0)),
        "the keyframe at t=40 was patched with the late b@38"
    );
}

#[test]
fn range_buckets_agree_before_and_after_the_rollups() {
    let reg = registry();
    let dir = tempfile::tempdir().expect("dir");
    let settings = WriterSettings {
        // No rollup until asked for: first read the raw tail.
        rollup_1s_every: Duration::from_secs(3600),
        rollup_1m_every: Duration::from_secs(3600),
        ..fast_settings()
    };
    let path = dir.path().join("h.duckdb");
    let r = open(&path, &reg, settings);
    let p = prop(&reg, "L1-MILL-01", "spindle_speed");
    let id = r.props.id(p).expect("id");
    for (t_ms, v) in [
        (100, 10.0),
        (500, 20.0),
        (1200, 30.0),
        (1900, 50.0),
        (2500, 40.0),
    ] {
        r.send(sample(p, SampleValue::Number(v), T0 + t_ms * 1000));
    }
    r.flush();
    let expect_1s = vec![
        (T0, 2, 10.0, 15.0, 20.0),
        (T0 + S, 2, 30.0, 40.0, 50.0),
        (T0 + 2 * S, 1, 40.0, 40.0, 40.0),
    ];
    let flat =
        |m: &std::collections::HashMap<i32, Vec<query::Bucket>>| -> Vec<(i64, i64, f64, f64, f64)> {
            m.get(&id)
                .map(|v| {
                    v.iter()
                        .map(|b| (b.start_us, b.n, b.min, b.avg, b.max))
                        .collect()
                })
                .unwrap_or_default()
        };
    let (src, m) = query::buckets(&r.reader, &[id], T0, T0 + 10 * S, S).expect("1 s");
    assert_eq!(src, BucketSource::Rollup1s);
    assert_eq!(flat(&m), expect_1s, "from the raw tail");
    let rolled: i64 = r
        .reader
        .query_row("SELECT count(*) FROM rollup_1s", [], |x| x.get(0))
        .expect("count");
    assert_eq!(rolled, 0);
    drop(r.reader);
    r.writer.join();

    // Closing rolls up what was left (reopening after a crash does the
    // same); the answer must not change.
    let r = open(&path, &reg, fast_settings());
    let rolled: i64 = r
        .reader
        .query_row("SELECT count(*) FROM rollup_1s", [], |x| x.get(0))
        .expect("count");
    assert_eq!(rolled, 3);
    let (_, m) = query::buckets(&r.reader, &[id], T0, T0 + 10 * S, S).expect("1 s");
    assert_eq!(flat(&m), expect_1s, "from the 1 s rollup");
    let (src, m) = query::buckets(&r.reader, &[id], T0, T0 + 120 * S, 60 * S).expect("1 min");
    assert_eq!(src, BucketSource::Rollup1m);
    assert_eq!(flat(&m), vec![(T0, 5, 10.0, 30.0, 50.0)]);
    // Two properties whose ids are not neighbours: the exact id list is used.
    let power = prop(&reg, "L1-MILL-01", "power");
    let pid = r.props.id(power).expect("id");
    assert!((pid - id).abs() > 1, "ids {id} and {pid} are neighbours");
    let (_, m) = query::buckets(&r.reader, &[pid, id], T0, T0 + 10 * S, S).expect("two");
    assert_eq!(flat(&m), expect_1s);
    assert!(!m.contains_key(&pid), "power has no samples: {m:?}");
    let (src, m) = query::buckets(&r.reader, &[id], T0, T0 + 3 * S, S / 2).expect("raw");
    assert_eq!(src, BucketSource::Raw);
    assert_eq!(
        flat(&m),
        vec![
            (T0, 1, 10.0, 10.0, 10.0),
            (T0 + S / 2, 1, 20.0, 20.0, 20.0),
            (T0 + S, 1, 30.0, 30.0, 30.0),
            (T0 + 3 * S / 2, 1, 50.0, 50.0, 50.0),
            (T0 + 5 * S / 2, 1, 40.0, 40.0, 40.0),
        ]
    );
}

#[test]
fn parquet_export_is_partitioned_by_day_and_asset_and_reads_back() {
    let reg = registry();
    let dir = tempfile::tempdir().expect("dir");
    let r = open(&dir.path().join("h.duckdb"), &reg, fast_settings());
    let mill = prop(&reg, "L1-MILL-01", "spindle_speed");
    let lathe = prop(&reg, "L2-LATHE-01", "spindle_speed");
    // 2026-11-23T23:59:58Z .. 2026-11-24T00:00:02Z: two days.
    let midnight = 1_795_478_400_000_000;
    let mut sum = 0.0;
    for i in 0..4 {
        let t = midnight - 2 * S + i * S;
        r.send(sample(mill, SampleValue::Number(i as f64), t));
        r.send(sample(lathe, SampleValue::Number(10.0 * i as f64), t));
        sum += 11.0 * i as f64;
    }
    r.flush();
    let out = dir.path().join("export");
    let report = mezzanine::history::export::export_parquet(
        &r.reader,
        midnight - 10 * S,
        midnight + 10 * S,
        &out,
    )
    .expect("export");
    assert_eq!(report.samples, 8);
    assert_eq!(
        report.files, 4,
        "2 days × 2 assets of samples, none of transitions"
    );
    for day in ["2026-11-23", "2026-11-24"] {
        for asset in ["L1-MILL-01", "L2-LATHE-01"] {
            let d = out.join(format!("samples/day={day}/asset_id={asset}"));
            assert!(d.is_dir(), "{} missing", d.display());
        }
    }
    let c = Connection::open_in_memory().expect("duckdb");
    let (n, s, assets): (i64, f64, i64) = c
        .query_row(
            &format!(
                "SELECT count(*), sum(value), count(DISTINCT asset_id)
                 FROM read_parquet('{}/samples/**/*.parquet', hive_partitioning = true)",
                out.display()
            ),
            [],
            |x| Ok((x.get(0)?, x.get(1)?, x.get(2)?)),
        )
        .expect("read back");
    assert_eq!((n, s, assets), (8, sum, 2));
    // Zone-aware times in the files (Parquet's UTC-adjusted timestamps),
    // the microsecond kept.
    let (ty, exact): (String, bool) = c
        .query_row(
            &format!(
                "SELECT any_value(typeof(ts)), bool_and(epoch_us(ts) = ts_us)
                 FROM read_parquet('{}/samples/**/*.parquet', hive_partitioning = true)",
                out.display()
            ),
            [],
            |x| Ok((x.get(0)?, x.get(1)?)),
        )
        .expect("types");
    assert_eq!((ty.as_str(), exact), ("TIMESTAMP WITH TIME ZONE", true));
    // So do the file's readable views.
    let (ty, exact): (String, bool) = r
        .reader
        .query_row(
            "SELECT any_value(typeof(ts)), bool_and(epoch_us(ts) = ts_us) FROM samples_readable",
            [],
            |x| Ok((x.get(0)?, x.get(1)?)),
        )
        .expect("view");
    assert_eq!((ty.as_str(), exact), ("TIMESTAMP WITH TIME ZONE", true));
    let again = mezzanine::history::export::export_parquet(&r.reader, midnight - S, midnight, &out)
        .expect_err("refuses to overwrite");
    assert!(again.to_string().contains("already exists"), "{again}");
}

/// A config for `record` on the broker at `port` (no OPC UA), its history
/// in `dir`: (history file, config file).
fn recorder_on_broker(
    dir: &std::path::Path,
    port: u16,
    client_id: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let db = dir.join("history.duckdb");
    let config = dir.join("mezzanine.toml");
    std::fs::write(
        &config,
        format!(
            "[plant]\nscene = \"{}\"\nregistry = \"{}\"\n\n[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\n\
             client_id = \"{client_id}\"\ntopic_roots = [\"acme/lyon/#\"]\n\n[opcua]\nenabled = false\n\n\
             [history]\npath = \"{}\"\n",
            repo("scenes/demo-plant.glb").display(),
            repo("scenes/demo-plant.toml").display(),
            db.display()
        ),
    )
    .expect("config");
    (db, config)
}

fn record_cmd(config: &std::path::Path, idle_exit_s: Option<u64>) -> std::process::Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mezzanine"));
    c.arg("--config").arg(config).arg("record");
    if let Some(s) = idle_exit_s {
        c.arg("--exit-after-idle-s").arg(s.to_string());
    }
    c.stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("recorder starts")
}

fn wait_for_line(child: &mut std::process::Child, needle: &str) {
    use std::io::BufRead;
    let out = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(out).lines();
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < Duration::from_secs(30), "no `{needle}`");
        match lines.next() {
            Some(Ok(l)) if l.contains(needle) => break,
            Some(_) => {}
            None => panic!("recorder exited before `{needle}`"),
        }
    }
    // Keep draining so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
}

#[test]
fn kill_9_mid_stream_loses_no_acknowledged_sample() {
    let reg = registry();
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port().expect("port");
    let _broker = start_mosquitto(port, dir.path());
    let (db, config) = recorder_on_broker(dir.path(), port, "recorder-kill9");

    let mut rec = record_cmd(&config, None);
    wait_for_line(&mut rec, "recording to");
    // Let it subscribe, so the broker keeps its session from here on.
    std::thread::sleep(Duration::from_secs(2));

    let n: i64 = 2_000;
    let base = mezzanine::ingest::now_us() - 3_600 * S;
    let publisher = Pub::new(port, "plc-kill9");
    for i in 0..n {
        if i == n / 2 {
            // SIGKILL: no chance to flush, commit or say goodbye.
            rec.kill().expect("kill -9");
            rec.wait().expect("reaped");
        }
        publisher.publish(
            SPINDLE_TOPIC,
            encode_json(&SampleValue::Number(i as f64), base + i * 1000, None),
        );
        if i < n / 2 {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    std::thread::sleep(Duration::from_millis(500));

    // What the killed process had committed is there (its WAL replays) and
    // is part of the stream: the kill did land mid-stream.
    let id = {
        let store = Store::open(&db, &reg).expect("opens after kill -9");
        assert!(store.report.set_aside.is_none(), "{:?}", store.report);
        let id = store
            .props
            .id(reg.resolve_topic(SPINDLE_TOPIC).expect("topic"))
            .expect("id");
        let before: i64 = store
            .conn
            .query_row(
                "SELECT count(*) FROM samples WHERE prop_id = ?",
                params![id],
                |x| x.get(0),
            )
            .expect("count");
        assert!(
            before > 0 && before <= n / 2,
            "{before} samples recorded before the kill"
        );
        id
    };

    // Restart: it reopens its file and the broker delivers the rest.
    let mut rec = record_cmd(&config, Some(3));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = rec.try_wait().expect("wait") {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "recorder hangs");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "recorder failed: {status}");

    let store = Store::open(&db, &reg).expect("reopen");
    assert!(store.report.set_aside.is_none(), "{:?}", store.report);
    let (rows, distinct, lo, hi): (i64, i64, i64, i64) = store
        .conn
        .query_row(
            "SELECT count(*), count(DISTINCT ts_us), min(ts_us), max(ts_us) FROM samples WHERE prop_id = ?",
            params![id],
            |x| Ok((x.get(0)?, x.get(1)?, x.get(2)?, x.get(3)?)),
        )
        .expect("count");
    assert_eq!(distinct, n, "every published sample is recorded");
    assert_eq!(rows, n, "and none twice");
    assert_eq!((lo, hi), (base, base + (n - 1) * 1000));
}

#[test]
fn a_file_duckdb_cannot_open_is_set_aside_and_a_new_one_started() {
    let reg = registry();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("history.duckdb");
    {
        let r = open(&path, &reg, fast_settings());
        let p = prop(&reg, "L1-MILL-01", "spindle_speed");
        for i in 0..100 {
            r.send(sample(p, SampleValue::Number(i as f64), T0 + i * S));
        }
        r.flush();
        drop(r.reader);
        r.writer.join();
    }
    // Leave a WAL behind, as a killed process does, then damage it.
    {
        let c = Connection::open(&path).expect("open");
        c.execute_batch(
            "PRAGMA disable_checkpoint_on_shutdown; SET checkpoint_threshold = '1GB';
             CREATE TABLE scratch (i INTEGER); INSERT INTO scratch SELECT range FROM range(1000);",
        )
        .expect("writes");
    }
    let wal = wal_path(&path);
    let mut bytes = std::fs::read(&wal).expect("a WAL was left behind");
    assert!(bytes.len() > 256, "WAL of {} bytes", bytes.len());
    // Flip bytes inside an entry: its checksum no longer matches, so the
    // replay fails ("Corrupt WAL file"), as after a torn or bad write.
    let mid = bytes.len() / 2;
    for b in bytes[mid..mid + 32].iter_mut() {
        *b ^= 0x5A;
    }
    std::fs::write(&wal, &bytes).expect("damage");
    let original = std::fs::read(&path).expect("file");

    let store = Store::open(&path, &reg).expect("a new file is started");
    let aside = store
        .report
        .set_aside
        .clone()
        .expect("the damaged file is set aside");
    assert!(store.report.created);
    assert!(
        store.report.summary().contains("set aside"),
        "{}",
        store.report.summary()
    );
    // Nothing deleted: the damaged file and its WAL are kept byte for byte.
    assert_eq!(std::fs::read(&aside.file).expect("kept"), original);
    assert_eq!(
        std::fs::read(aside.wal.as_ref().expect("wal kept")).expect("wal"),
        bytes
    );
    // The new file works.
    let n: i64 = store
        .conn
        .query_row("SELECT count(*) FROM samples", [], |x| x.get(0))
        .expect("count");
    assert_eq!(n, 0);
    assert_eq!(schema_version(&store.conn).expect("v"), SCHEMA_VERSION);
}

#[test]
fn schema_1_files_are_migrated_and_keep_their_rows() {
    let reg = registry();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("old.duckdb");
    let p = prop(&reg, "L1-MILL-01", "spindle_speed");
    {
        // A file as the first recorder wrote it.
        let c = Connection::open(&path).expect("open");
        migrate_to(&c, 1).expect("v1");
        assert_eq!(schema_version(&c).expect("v"), 1);
        c.execute(
            "INSERT INTO properties VALUES (1, 'L1-MILL-01', 'spindle_speed', 'rpm')",
            [],
        )
        .expect("prop");
        for (i, v) in [(0, 100.0), (1, 300.0), (2, 200.0)] {
            c.execute(
                "INSERT INTO samples VALUES (?, 1, ?, NULL, NULL, 0, 0, ?)",
                params![T0 + i * S, v, T0 + i * S],
            )
            .expect("row");
        }
    }
    let store = Store::open(&path, &reg).expect("migrates");
    assert_eq!(store.report.migrated_from, Some(1));
    assert_eq!(schema_version(&store.conn).expect("v"), SCHEMA_VERSION);
    assert_eq!(store.props.id(p), Some(1), "property ids are kept");
    let (n, seqs): (i64, i64) = store
        .conn
        .query_row(
            "SELECT count(*), count(DISTINCT seq) FROM samples",
            [],
            |x| Ok((x.get(0)?, x.get(1)?)),
        )
        .expect("rows");
    assert_eq!((n, seqs), (3, 3));
    // The writer takes over the old rows: rollups and state at T see them.
    let reader = store.reader().expect("reader");
    let props = store.props.clone();
    let writer = HistoryWriter::spawn(store, reg.clone(), fast_settings(), 16).expect("writer");
    writer.flush().expect("flush");
    let (_, m) = query::buckets(&reader, &[1], T0, T0 + 3 * S, 3 * S).expect("buckets");
    let b = m.get(&1).expect("series")[0];
    assert_eq!((b.n, b.min, b.max, b.avg), (3, 100.0, 300.0, 200.0));
    let at = query::state_at(&reader, &props, T0 + S).expect("state");
    assert_eq!(at.values[0].value, StoredValue::Number(300.0));
    drop(reader);
    writer.join();
}

#[test]
fn replay_shows_the_recorded_state_while_the_twin_stays_live() {
    use bevy::prelude::*;
    use mezzanine::bench::headless_twin;
    use mezzanine::history::HistoryPlugin;
    use mezzanine::ingest::{IngestEvent, ingest_channel, now_us};
    use mezzanine::playback::{PlaybackCommand, Shown, TimeCursor};
    use mezzanine::twin::{AssetEntities, AssetState, MachineState};

    let reg = registry();
    let dir = tempfile::tempdir().expect("dir");
    let (plugin, threads) =
        HistoryPlugin::start(&dir.path().join("h.duckdb"), reg.clone(), fast_settings())
            .expect("history");
    let (tx, rx) = ingest_channel(1024);
    let tx = tx.with_recorder(threads.writer.recorder.clone());
    let mut app = headless_twin(&reg, rx);
    app.add_plugins(plugin);

    let state = prop(&reg, "L1-MILL-01", "state");
    let speed = prop(&reg, "L1-MILL-01", "spindle_speed");
    let now = now_us();
    let mut down = sample(state, SampleValue::Text("down".into()), now - 3_600 * S);
    down.reason = Some("servo drive alarm".into());
    for s in [
        down,
        sample(speed, SampleValue::Number(0.0), now - 3_600 * S),
        sample(state, SampleValue::Text("running".into()), now - 10 * S),
        sample(speed, SampleValue::Number(12_000.0), now - 10 * S),
    ] {
        assert!(tx.send(IngestEvent::Sample(s, None)));
    }
    for _ in 0..5 {
        app.update();
    }
    threads.writer.flush().expect("recorded");
    let mill = *app
        .world()
        .resource::<AssetEntities>()
        .0
        .get(&reg.by_id("L1-MILL-01").expect("mill"))
        .expect("entity");
    let shown = |app: &App| app.world().get::<Shown>(mill).cloned().expect("shown");
    assert_eq!(shown(&app).state.state, MachineState::Running);
    assert!(!shown(&app).replay);

    app.world_mut()
        .write_message(PlaybackCommand::Seek(now - 1_800 * S));
    let start = Instant::now();
    while !(shown(&app).replay && shown(&app).state.state == MachineState::Down) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "replay never showed the recorded state: {:?}",
            shown(&app)
        );
        app.update();
        std::thread::sleep(Duration::from_millis(10));
    }
    let past = shown(&app);
    assert_eq!(past.state.reason.as_deref(), Some("servo drive alarm"));
    let v = past.values.0[speed.property as usize]
        .as_ref()
        .expect("recorded speed");
    assert_eq!(v.value, SampleValue::Number(0.0));
    // The twin itself stays live underneath.
    assert_eq!(
        app.world().get::<AssetState>(mill).expect("state").state,
        MachineState::Running
    );
    assert!(!app.world().resource::<TimeCursor>().is_live());

    app.world_mut().write_message(PlaybackCommand::GoLive);
    app.update();
    app.update();
    assert!(app.world().resource::<TimeCursor>().is_live());
    assert!(!shown(&app).replay);
    assert_eq!(shown(&app).state.state, MachineState::Running);
    drop(tx);
    threads.shutdown();
}

#[test]
fn a_wide_scrub_frame_over_many_properties_loses_nothing() {
    let reg = registry();
    let dir = tempfile::tempdir().expect("dir");
    let r = open(&dir.path().join("h.duckdb"), &reg, fast_settings());
    // Twelve numeric properties across the plant.
    let mut props = Vec::new();
    for a in ["L1-MILL-01", "L1-MILL-02", "L2-LATHE-01"] {
        for p in ["spindle_speed", "spindle_load", "spindle_temp", "power"] {
            props.push(prop(&reg, a, p));
        }
    }
    for (k, p) in props.iter().enumerate() {
        for s in 0..3i64 {
            r.send(sample(
                *p,
                SampleValue::Number((k * 10) as f64 + s as f64),
                T0 + s * S + 10,
            ));
        }
    }
    r.flush();
    let ids: Vec<i32> = props.iter().map(|p| r.props.id(*p).expect("id")).collect();
    // One hour of 1 s buckets for 12 properties with gaps between their ids.
    let (_, m) = query::buckets(&r.reader, &ids, T0, T0 + 3_600 * S, S).expect("frame");
    assert_eq!(m.len(), 12, "every property answered: {:?}", m.keys());
    for (k, id) in ids.iter().enumerate() {
        let got: Vec<(i64, f64)> = m[id].iter().map(|b| (b.start_us, b.avg)).collect();
        let base = (k * 10) as f64;
        assert_eq!(
            got,
            vec![(T0, base), (T0 + S, base + 1.0), (T0 + 2 * S, base + 2.0)],
            "property {id}"
        );
    }
}

#[test]
fn every_state_code_the_twin_reads_as_down_is_a_breakdown_marker() {
    let reg = registry();
    let dir = tempfile::tempdir().expect("dir");
    let r = open(&dir.path().join("h.duckdb"), &reg, fast_settings());
    let state = prop(&reg, "L1-MILL-01", "state");
    for (i, code) in ["running", "fault", "running", "ABORTED", "idle", "down"]
        .iter()
        .enumerate()
    {
        r.send(sample(
            state,
            SampleValue::Text((*code).into()),
            T0 + i as i64 * S,
        ));
    }
    r.flush();
    let m = query::markers(&r.reader, T0 - S, T0 + 10 * S, 100).expect("markers");
    let breakdowns: Vec<(i64, &str)> = m
        .iter()
        .filter(|m| m.kind == query::MarkerKind::Breakdown)
        .map(|m| ((m.ts_us - T0) / S, m.text.as_str()))
        .collect();
    assert_eq!(breakdowns, [(1, "fault"), (3, "ABORTED"), (5, "down")]);
    let next = query::next_marker(&r.reader, T0 + S, true).expect("next");
    assert_eq!(next.map(|m| m.ts_us), Some(T0 + 3 * S));
    r.writer.join();
}

#[test]
fn record_stops_in_order_on_sigterm_with_everything_committed() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("history.duckdb");
    let config = dir.path().join("mezzanine.toml");
    // The embedded demo plant (no endpoint named) feeds the recorder.
    std::fs::write(
        &config,
        format!(
            "[plant]\nscene = \"{}\"\nregistry = \"{}\"\n\n[history]\npath = \"{}\"\n",
            repo("scenes/demo-plant.glb").display(),
            repo("scenes/demo-plant.toml").display(),
            db.display()
        ),
    )
    .expect("config");
    let mut rec = record_cmd(&config, None);
    let mut lines = std::io::BufReader::new(rec.stdout.take().expect("stdout")).lines();
    let start = Instant::now();
    for l in lines.by_ref() {
        assert!(start.elapsed() < Duration::from_secs(30), "no start line");
        if l.expect("line").contains("recording to") {
            break;
        }
    }
    // Long enough for the demo MES to hand out its first work orders (about
    // 9 s after start in the headless app test).
    std::thread::sleep(Duration::from_secs(12));
    let term = Command::new("kill")
        .args(["-TERM", &rec.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = rec.wait().expect("exits");
    assert!(status.success(), "{status:?}: {rest:?}");
    let summary = rest
        .iter()
        .find(|l| l.starts_with("recorded "))
        .unwrap_or_else(|| panic!("no summary: {rest:?}"));
    let n: i64 = summary
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("a count");
    assert!(n > 0, "{summary}");
    let conn = Connection::open(&db).expect("reopen");
    let stored: i64 = conn
        .query_row("SELECT count(*) FROM samples", [], |r| r.get(0))
        .expect("count");
    assert_eq!(stored, n, "every sample it reported is in the file");
    // The recorder runs the app's MES sync: its samples carry the work
    // orders the MES gave in this run, from a file that had none.
    let (context_rows, with_order): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM work_orders WHERE work_order IS NOT NULL),
                    (SELECT count(*) FROM samples WHERE work_order IS NOT NULL)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("context");
    assert!(
        context_rows > 0 && with_order > 0,
        "{context_rows} work-order changes, {with_order} samples with a work order"
    );
    let wal = wal_path(&db);
    assert!(
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "checkpointed at exit: {} is {} bytes",
        wal.display(),
        std::fs::metadata(&wal).map_or(0, |m| m.len())
    );
    println!(
        "SIGTERM after 12 s: {n} samples committed ({with_order} with a work order), WAL folded \
         into the file"
    );
}

#[test]
fn a_file_that_is_not_a_history_is_refused_and_left_untouched() {
    let reg = registry();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("history.duckdb");
    // Someone pointed the config at the wrong file.
    let text = b"shift report, not a database\n".repeat(200);
    std::fs::write(&path, &text).expect("write");
    let e = match Store::open(&path, &reg) {
        Ok(_) => panic!("opened a text file as a history"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("cannot open the history file") && e.contains("history.duckdb"),
        "{e}"
    );
    assert_eq!(std::fs::read(&path).expect("still there"), text);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["history.duckdb"], "nothing set aside or created");
}

#[test]
fn two_values_with_one_source_time_are_both_kept_and_redeliveries_are_not() {
    let reg = registry();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("h.duckdb");
    let speed = prop(&reg, "L1-MILL-01", "spindle_speed");
    let spectrum = prop(&reg, "L1-MILL-01", "vibration_spectrum");
    let spec = |k: f32| SampleValue::Spectrum {
        bin_hz: 12.5,
        bins: vec![k; 16].into(),
    };
    let stored = |r: &Rec| -> Vec<(i64, Option<f64>)> {
        let mut st = r
            .reader
            .prepare("SELECT ts_us, value FROM samples ORDER BY seq")
            .expect("query");
        st.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    {
        let r = open(&path, &reg, fast_settings());
        // A PLC whose clock ticks in whole seconds: two readings, one stamp.
        r.send(sample(speed, SampleValue::Number(1000.0), T0));
        r.send(sample(speed, SampleValue::Number(1010.0), T0));
        r.send(sample(speed, SampleValue::Number(1000.0), T0)); // redelivery
        r.send(sample(spectrum, spec(1.0), T0));
        r.send(sample(spectrum, spec(2.0), T0));
        r.send(sample(spectrum, spec(1.0), T0)); // redelivery
        r.flush();
        let rows = stored(&r);
        assert_eq!(
            rows,
            vec![
                (T0, Some(1000.0)),
                (T0, Some(1010.0)),
                (T0, None),
                (T0, None)
            ]
        );
        assert_eq!(r.writer.stats.duplicates_dropped.load(Ordering::Relaxed), 2);
        r.writer.join();
    }
    // After a restart the keys come back from the file, values included.
    let r = open(&path, &reg, fast_settings());
    r.send(sample(speed, SampleValue::Number(1010.0), T0)); // redelivery
    r.send(sample(spectrum, spec(2.0), T0)); // redelivery
    r.send(sample(speed, SampleValue::Number(1020.0), T0)); // new
    r.flush();
    assert_eq!(stored(&r).len(), 5);
    assert_eq!(r.writer.stats.duplicates_dropped.load(Ordering::Relaxed), 2);
    let n_blobs: i64 = r
        .reader
        .query_row("SELECT count(*) FROM blobs", [], |row| row.get(0))
        .expect("blobs");
    assert_eq!(n_blobs, 2, "a dropped duplicate leaves no blob behind");
    r.writer.join();
}

#[test]
fn a_row_the_database_refuses_becomes_a_dead_letter_and_the_rest_commits() {
    let reg = registry();
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(&dir.path().join("h.duckdb"), &reg).expect("open");
    // A file whose samples table refuses values of a billion and more (as a
    // hand-edited or foreign schema might): a row DuckDB itself refuses.
    store
        .conn
        .execute_batch(
            "DROP TABLE samples;
             CREATE TABLE samples (ts_us BIGINT NOT NULL, prop_id INTEGER NOT NULL,
                value DOUBLE CHECK (value IS NULL OR value < 1e9), text VARCHAR, blob_id BIGINT,
                quality UTINYINT NOT NULL, origin UTINYINT NOT NULL, received_us BIGINT NOT NULL,
                work_order VARCHAR, seq BIGINT, context_unavailable BOOLEAN, historical BOOLEAN,
                mqtt_pkid USMALLINT, ivalue BIGINT, vtype UTINYINT);",
        )
        .expect("schema with a check");
    let reader = store.reader().expect("reader");
    let props = store.props.clone();
    let writer = HistoryWriter::spawn(store, reg.clone(), fast_settings(), 1024).expect("writer");
    let r = Rec {
        writer,
        acks: Arc::new(AtomicU64::new(0)),
        reader,
        props,
    };
    let speed = prop(&reg, "L1-MILL-01", "spindle_speed");
    let state = prop(&reg, "L1-MILL-01", "state");
    r.send(sample(speed, SampleValue::Number(1000.0), T0));
    r.send(sample(speed, SampleValue::Number(2e9), T0 + S));
    r.send(sample(state, SampleValue::Text("running".into()), T0 + S));
    r.send(sample(speed, SampleValue::Number(1002.0), T0 + 2 * S));
    r.flush();
    let values: Vec<Option<f64>> = {
        let mut st = r
            .reader
            .prepare("SELECT value FROM samples ORDER BY seq")
            .expect("query");
        st.query_map([], |row| row.get(0))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    assert_eq!(values, vec![Some(1000.0), None, Some(1002.0)]);
    let (source, reason, head): (String, String, Vec<u8>) = r
        .reader
        .query_row(
            "SELECT source, reason, payload_head FROM dead_letters",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .expect("one dead letter");
    assert_eq!(source, "L1-MILL-01.spindle_speed");
    assert!(
        reason.contains("refused") && reason.contains("CHECK"),
        "{reason}"
    );
    assert_eq!(String::from_utf8_lossy(&head), "2000000000");
    let stats = &r.writer.stats;
    assert_eq!(stats.poison_rows.load(Ordering::Relaxed), 1);
    assert_eq!(stats.failing_since_us.load(Ordering::Relaxed), 0);
    assert_eq!(
        r.acks.load(Ordering::SeqCst),
        4,
        "every delivery acknowledged"
    );
    // Later samples go straight in.
    r.send(sample(speed, SampleValue::Number(1003.0), T0 + 3 * S));
    r.flush();
    let n: i64 = r
        .reader
        .query_row("SELECT count(*) FROM samples", [], |row| row.get(0))
        .expect("count");
    assert_eq!(n, 4);
    r.writer.join();
}

/// The real recorder on a disk that fills up (here a file-size limit on the
/// process, raised while it runs): it says so at once, takes nothing more
/// while it cannot write, withholds the acks so the broker keeps the data,
/// and records everything, once, when there is room again.
#[test]
fn a_full_disk_holds_the_data_at_the_broker_and_recording_resumes() {
    use std::io::BufRead;
    let reg = registry();
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port().expect("port");
    let _broker = start_mosquitto(port, dir.path());
    let (db, config) = recorder_on_broker(dir.path(), port, "recorder-full");
    // 160 kB per file: the WAL reaches it after about 1,500 samples. The
    // shell ignores SIGXFSZ for it, so a write past the limit fails (EFBIG)
    // instead of killing the process, as on a full disk.
    let mut rec = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; exec prlimit --fsize=160000:unlimited {} --config {} record \
             --exit-after-idle-s 4",
            env!("CARGO_BIN_EXE_mezzanine"),
            config.display()
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("recorder starts");
    let (tx, lines) = std::sync::mpsc::sync_channel::<String>(10_000);
    for out in [
        Box::new(rec.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(rec.stderr.take().expect("stderr")),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
    }
    drop(tx);
    let mut seen: Vec<String> = Vec::new();
    let wait_for = |needle: &str, seen: &mut Vec<String>| {
        let start = Instant::now();
        while !seen.iter().any(|l| l.contains(needle)) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no `{needle}` in {seen:?}"
            );
            if let Ok(l) = lines.recv_timeout(Duration::from_millis(200)) {
                seen.push(l);
            }
        }
    };
    wait_for("recording to", &mut seen);
    std::thread::sleep(Duration::from_secs(2));

    let n: i64 = 6_000;
    let base = mezzanine::ingest::now_us() - 3_600 * S;
    let publisher = Pub::new(port, "plc-full");
    for i in 0..n {
        publisher.publish(
            SPINDLE_TOPIC,
            encode_json(&SampleValue::Number(i as f64), base + i * 1000, None),
        );
        if i % 100 == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    wait_for("error: cannot write the history", &mut seen);
    // Full for a while: it keeps running and takes nothing more in.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        rec.try_wait().expect("wait").is_none(),
        "the recorder died: {seen:?}"
    );
    let raised = Command::new("prlimit")
        .args([
            "--pid",
            &rec.id().to_string(),
            "--fsize=unlimited:unlimited",
        ])
        .status()
        .expect("prlimit");
    assert!(raised.success());
    wait_for("history: writing again", &mut seen);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = rec.try_wait().expect("wait") {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "recorder hangs");
        std::thread::sleep(Duration::from_millis(100));
    };
    while let Ok(l) = lines.recv_timeout(Duration::from_millis(500)) {
        seen.push(l);
    }
    assert!(status.success(), "recorder failed: {status}: {seen:?}");
    let summary = seen
        .iter()
        .find(|l| l.starts_with("recorded "))
        .unwrap_or_else(|| panic!("no summary: {seen:?}"));
    assert!(!summary.contains(" 0 failed commits"), "{summary}");

    let store = Store::open(&db, &reg).expect("reopen");
    let id = store
        .props
        .id(reg.resolve_topic(SPINDLE_TOPIC).expect("topic"))
        .expect("id");
    let (rows, distinct): (i64, i64) = store
        .conn
        .query_row(
            "SELECT count(*), count(DISTINCT ts_us) FROM samples WHERE prop_id = ?",
            params![id],
            |x| Ok((x.get(0)?, x.get(1)?)),
        )
        .expect("count");
    println!("disk full and freed: {summary}");
    assert_eq!(distinct, n, "every published sample is recorded");
    assert_eq!(rows, n, "and none twice");
}

/// `mezzanine drill kill` through the real binary, three interruptions:
/// it prints its table and finds nothing lost and nothing twice.
#[test]
fn the_kill_drill_runs_and_finds_nothing_lost() {
    let out = Command::new(env!("CARGO_BIN_EXE_mezzanine"))
        .args(["drill", "kill", "--kills", "3"])
        .output()
        .expect("drill runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = stdout
        .lines()
        .last()
        .unwrap_or_default()
        .split('|')
        .map(|c| c.trim().to_string())
        .collect::<Vec<_>>();
    // kills | broker | published | acked | recorded | acked & lost | duplicates
    assert_eq!(row.len(), 7, "{stdout}");
    assert_eq!((row[0].as_str(), row[1].as_str()), ("3", "0"), "{stdout}");
    let n = |i: usize| row[i].parse::<u64>().unwrap_or(u64::MAX);
    assert!(n(3) > 0 && n(4) >= n(3), "{stdout}");
    assert_eq!((n(5), n(6)), (0, 0), "{stdout}");
    println!("{stdout}");
}

/// An OPC UA-only plant (no broker named) records; a source where nothing
/// listens is said at once, once, and `record` exits non-zero.
#[test]
fn record_runs_on_opcua_alone_and_fails_loudly_when_no_source_connects() {
    use mezzanine::demo::opcua_server::start_opcua_server;
    use opcua::types::{NodeId, Variant};
    let reg = registry();
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port().expect("port");
    let server = start_opcua_server(&reg, port, dir.path().join("server")).expect("server");
    let db = dir.path().join("history.duckdb");
    let config = dir.path().join("opcua-only.toml");
    std::fs::write(
        &config,
        format!(
            "[plant]\nscene = \"{}\"\nregistry = \"{}\"\n\n[opcua]\nendpoint = \"{}\"\n\
             security_policy = \"None\"\nsecurity_mode = \"None\"\nsampling_interval_ms = 50\n\n\
             [mes]\nevents_topic = \"\"\nheartbeat_topic = \"\"\n\n[history]\npath = \"{}\"\n",
            repo("scenes/demo-plant.glb").display(),
            repo("scenes/demo-plant.toml").display(),
            server.endpoint(),
            db.display()
        ),
    )
    .expect("config");
    let mut rec = record_cmd(&config, Some(3));
    wait_for_line(&mut rec, "recording to");
    let node = NodeId::new(2, "Line1.Mill01.Spindle.Speed");
    for i in 0..40 {
        server.set_values(vec![(
            node.clone(),
            Variant::Double(8_000.0 + f64::from(i)),
            mezzanine::ingest::now_us(),
        )]);
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = rec.wait().expect("exits when idle");
    assert!(status.success(), "{status:?}");
    server.stop();
    let conn = Connection::open(&db).expect("open");
    let spindle: i64 = conn
        .query_row(
            "SELECT count(*) FROM samples s JOIN properties p USING (prop_id) \
             WHERE p.asset_id = 'L1-MILL-01' AND p.property = 'spindle_speed' AND s.value >= 8000",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert!(spindle >= 10, "{spindle} spindle samples from OPC UA");
    drop(conn);

    // Nothing listens on the broker's port.
    let dead = free_port().expect("port");
    let (_, config) = recorder_on_broker(dir.path(), dead, "mz-dead");
    let std::process::Output { status, stderr, .. } = Command::new(env!("CARGO_BIN_EXE_mezzanine"))
        .arg("--config")
        .arg(&config)
        .args(["record", "--exit-after-idle-s", "3"])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&stderr);
    assert!(!status.success(), "exit {status:?}");
    assert!(
        stderr.contains("error: no source ever connected (MQTT down"),
        "{stderr}"
    );
    // Said when it happened, and not again on every retry.
    assert_eq!(stderr.matches("MQTT link down").count(), 1, "{stderr}");
}

/// A value the source sent late from its buffer (Sparkplug
/// `is_historical`) is recorded with its flag, and a replay shows it as
/// such; a present value after it is not flagged.
#[test]
fn historical_samples_are_recorded_flagged_and_replayed_as_such() {
    let reg = registry();
    let dir = tempfile::tempdir().expect("dir");
    let r = open(&dir.path().join("h.duckdb"), &reg, fast_settings());
    let power = prop(&reg, "L1-ROBOT-01", "power");
    let mut late = sample(power, SampleValue::Number(7.5), T0);
    late.hops.historical = true;
    r.send(late);
    r.send(sample(power, SampleValue::Number(8.5), T0 + 2 * S));
    r.flush();
    let flags: Vec<(f64, bool)> = {
        let mut st = r
            .reader
            .prepare("SELECT value, historical FROM samples_readable ORDER BY ts")
            .expect("prepare");
        st.query_map([], |x| Ok((x.get(0)?, x.get(1)?)))
            .expect("query")
            .map(|x| x.expect("row"))
            .collect()
    };
    assert_eq!(flags, vec![(7.5, true), (8.5, false)]);
    let pid = r.props.id(power).expect("prop id");
    let at = |t| {
        query::state_at(&r.reader, &r.props, t)
            .expect("state")
            .values
            .into_iter()
            .find(|v| v.prop_id == pid)
            .map(|v| (v.value, v.historical))
    };
    assert_eq!(at(T0 + S), Some((StoredValue::Number(7.5), true)));
    assert_eq!(at(T0 + 3 * S), Some((StoredValue::Number(8.5), false)));
}

/// A sample without a source time is stamped at arrival, so a broker's
/// redelivery (DUP, same packet id) of one already recorded would look new;
/// it is known by its packet id, across a restart of the recorder. A new
/// message that happens to reuse the packet id and value (not DUP) is kept.
#[test]
fn a_redelivered_sample_without_source_time_is_recorded_once_across_a_restart() {
    let reg = registry();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("h.duckdb");
    let speed = prop(&reg, "L1-MILL-01", "spindle_speed");
    let at_arrival = |v: f64, arrival_us: i64, pkid: u16, dup: bool| {
        let mut s = sample(speed, SampleValue::Number(v), arrival_us);
        s.hops.arrival_stamped = true;
        s.hops.mqtt_pkid = Some(pkid);
        s.hops.redelivered = dup;
        s
    };
    let r = open(&path, &reg, fast_settings());
    r.send(at_arrival(8000.0, T0, 7, false));
    r.send(at_arrival(8100.0, T0 + S, 8, false));
    r.flush();
    r.writer.join();
    // Killed before its acks went out: the broker sends both again, DUP.
    let r = open(&path, &reg, fast_settings());
    r.send(at_arrival(8000.0, T0 + 5 * S, 7, true));
    r.send(at_arrival(8100.0, T0 + 5 * S + 1, 8, true));
    // A redelivery of something never recorded is recorded.
    r.send(at_arrival(8200.0, T0 + 5 * S + 2, 9, true));
    // A new message reusing packet id 7 with the same value.
    r.send(at_arrival(8000.0, T0 + 9 * S, 7, false));
    r.flush();
    assert_eq!(r.writer.stats.duplicates_dropped.load(Ordering::Relaxed), 2);
    let values: Vec<f64> = {
        let mut st = r
            .reader
            .prepare("SELECT value FROM samples ORDER BY ts_us")
            .expect("prepare");
        st.query_map([], |x| x.get(0))
            .expect("query")
            .map(|x| x.expect("row"))
            .collect()
    };
    assert_eq!(values, vec![8000.0, 8100.0, 8200.0, 8000.0]);
    r.writer.join();
}

/// Booleans and 64-bit integers beyond 2^53 come back as the source sent
/// them: in a replay (state at T, from samples and from keyframes), in the
/// readable view and in a Parquet export.
#[test]
fn booleans_and_big_integers_come_back_as_sent() {
    let reg = registry();
    let dir = tempfile::tempdir().expect("dir");
    let settings = WriterSettings {
        keyframe_every_rows: 2,
        ..fast_settings()
    };
    let r = open(&dir.path().join("h.duckdb"), &reg, settings);
    let count = prop(&reg, "L1-MILL-01", "part_count");
    let speed = prop(&reg, "L1-MILL-01", "spindle_speed");
    let big: i64 = 9_007_199_254_740_993; // 2^53 + 1: no double holds it
    r.send(sample(count, SampleValue::Integer(big), T0));
    r.send(sample(speed, SampleValue::Bool(true), T0));
    r.flush();
    r.send(sample(count, SampleValue::Integer(big + 2), T0 + S));
    r.flush();
    let at = |t, p| {
        let pid = r.props.id(p).expect("id");
        query::state_at(&r.reader, &r.props, t)
            .expect("state")
            .values
            .into_iter()
            .find(|v| v.prop_id == pid)
            .map(|v| v.value)
    };
    assert_eq!(at(T0, count), Some(StoredValue::Integer(big)));
    assert_eq!(at(T0 + 2 * S, count), Some(StoredValue::Integer(big + 2)));
    assert_eq!(at(T0 + 2 * S, speed), Some(StoredValue::Bool(true)));
    assert!(r.writer.stats.keyframes.load(Ordering::Relaxed) >= 1);
    let (ty, exact): (String, i64) = r
        .reader
        .query_row(
            "SELECT value_type, integer_value FROM samples_readable
             WHERE property = 'part_count' ORDER BY ts LIMIT 1",
            [],
            |x| Ok((x.get(0)?, x.get(1)?)),
        )
        .expect("view");
    assert_eq!((ty.as_str(), exact), ("integer", big));
    let out = dir.path().join("export");
    mezzanine::history::export::export_parquet(&r.reader, T0 - S, T0 + 10 * S, &out)
        .expect("export");
    let c = Connection::open_in_memory().expect("duckdb");
    let (n_int, first, flag): (i64, i64, bool) = c
        .query_row(
            &format!(
                "SELECT count(*) FILTER (WHERE value_type = 'integer'),
                        min(integer_value), bool_or(boolean_value)
                 FROM read_parquet('{}/samples/**/*.parquet', hive_partitioning = true)",
                out.display()
            ),
            [],
            |x| Ok((x.get(0)?, x.get(1)?, x.get(2)?)),
        )
        .expect("read back");
    assert_eq!((n_int, first, flag), (2, big, true));
}
