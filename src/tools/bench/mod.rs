//! `mezzanine bench ingest`: a load generator in, a table out (and
//! `bench history`, in [`history`]).
//!
//! Drives N tag updates per second through the real path — rumqttc
//! publishers → embedded rumqttd broker → MQTT adapter → bounded channel →
//! the twin's apply system in a headless Bevy app — and reports sustained
//! throughput, per-hop p50/p99, CPU used, and lost or duplicated updates.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bevy::prelude::*;
use rumqttc::{AsyncClient, MqttOptions, QoS};

use crate::demo::broker::{free_port, start_embedded_broker};
use crate::ingest::decode::encode_json;
use crate::ingest::mqtt::{MqttSettings, spawn_mqtt_adapter};
use crate::ingest::{Hop, LatencyStats, Origin, SampleValue, ingest_channel, now_us};
use crate::registry::{
    AssetRecord, AssetRegistry, Encoding, Isa95Path, OmeKind, PlantInfo, PropertyRecord,
    REGISTRY_FORMAT_VERSION, Registry,
};
use crate::twin::TwinCounters;

pub mod history;
pub mod oee;
pub mod quality;
pub mod schedule;
pub mod soak;
pub mod whatif;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    History(#[from] crate::history::HistoryError),
    #[error("benchmark: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Demo(#[from] crate::demo::DemoError),
    #[error(transparent)]
    Ingest(#[from] crate::ingest::IngestError),
    #[error("the adapter did not connect within 20 s")]
    NoConnection,
}

/// What one load step measured.
#[derive(Debug, Clone)]
pub struct StepResult {
    pub path: BenchPath,
    pub target_per_s: u64,
    pub published: u64,
    /// Applied to the twin (on the recorder path the twin's copy coalesces
    /// when the frame loop falls behind, so this may be less).
    pub applied: u64,
    /// Committed to the history (recorder path).
    pub recorded: Option<u64>,
    /// Receipt → commit p50/p99, µs: how long an ack waits for the disk.
    pub commit_p50_p99_us: Option<(u64, u64)>,
    pub duplicates: u64,
    pub lost: u64,
    pub sustained_per_s: f64,
    pub hops: BTreeMap<&'static str, (u64, u64)>,
    pub cpu_percent: f64,
}

/// A registry of `assets` × `props` synthetic tags under `bench/`.
pub fn synthetic_registry(assets: usize, props: usize) -> Registry {
    Registry {
        version: REGISTRY_FORMAT_VERSION,
        plant: PlantInfo {
            name: "bench".into(),
            time_zone: "UTC".into(),
        },
        assets: (0..assets)
            .map(|a| AssetRecord {
                id: format!("A{a:04}"),
                name: format!("bench asset {a}"),
                class: "bench".into(),
                iso23247: OmeKind::Equipment,
                isa95: Isa95Path {
                    enterprise: "bench".into(),
                    site: "bench".into(),
                    area: "bench".into(),
                    work_center: "wc".into(),
                    work_unit: format!("u{a}"),
                },
                gltf_node: format!("A{a:04}"),
                sparkplug: None,
                properties: (0..props)
                    .map(|p| PropertyRecord {
                        name: format!("p{p}"),
                        unit: "1".into(),
                        encoding: Encoding::Json,
                        mqtt: Some(format!("bench/a{a}/p{p}")),
                        opcua: None,
                        sparkplug_metric: None,
                        expected_period_ms: Some(1_000),
                    })
                    .collect(),
                nominal: Default::default(),
            })
            .collect(),
        source: "bench".into(),
    }
}

/// Generated samples for a benchmark's history: `rows` of them, the
/// properties `ids` in turn, evenly over `[from_us, to_us)`; then a
/// checkpoint.
fn fill_samples(
    c: &duckdb::Connection,
    ids: &[i32],
    from_us: i64,
    to_us: i64,
    rows: i64,
) -> duckdb::Result<()> {
    let n = ids.len().max(1) as i64;
    let step_us = (to_us - from_us) * n / rows.max(1);
    let list = ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    c.execute(
        &format!(
            "INSERT INTO samples (ts_us, prop_id, value, quality, origin, received_us)
             SELECT {from_us} + (r // {n}) * {step_us}, [{list}][1 + r % {n}], (r % 1000) / 10.0, 0, 0,
                    {from_us} + (r // {n}) * {step_us}
             FROM range({rows}) t(r)"
        ),
        [],
    )?;
    c.execute_batch("CHECKPOINT")
}

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// The headless twin the benchmark drives, from the app's own assembly.
pub use crate::app::headless_twin;

/// `mezzanine bench <what>`: the pipeline's table on stdout.
pub fn run(
    what: &str,
    quick: bool,
    minutes: Option<u64>,
    rate_per_s: Option<u64>,
) -> anyhow::Result<std::process::ExitCode> {
    match what {
        "ingest" => {
            run_ingest_bench(quick)?;
        }
        "history" => history::run_history_bench(quick)?,
        "whatif" => whatif::run_whatif_bench(quick)?,
        "schedule" => schedule::run_schedule_bench(quick)?,
        "oee" => oee::run_oee_bench(quick)?,
        "quality" => quality::run_quality_bench(quick)?,
        "share" => {
            super::share::bench(3, if quick { 10_000 } else { 60_000 })?;
        }
        "soak" => {
            soak::run_soak(
                minutes.unwrap_or(if quick { 1 } else { 30 }),
                rate_per_s.unwrap_or(soak::SOAK_RATE_PER_S),
            )?;
        }
        other => anyhow::bail!(
            "unknown benchmark `{other}` (try `ingest`, `history`, `soak`, `whatif`, `schedule`, `oee`, `quality` or `share`)"
        ),
    };
    Ok(std::process::ExitCode::SUCCESS)
}

/// Which path a load step drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchPath {
    /// Adapter → twin; acks sent when the frame drains them.
    Twin,
    /// Adapter → recorder (commit, then ack) and the twin's copy: the
    /// path the app runs.
    Recorder,
}

impl BenchPath {
    pub fn label(self) -> &'static str {
        match self {
            BenchPath::Twin => "twin",
            BenchPath::Recorder => "recorder+twin",
        }
    }
}

/// The real pipeline under load: embedded broker, MQTT adapter, a headless
/// twin, and (on the recorder path) the history writer on a temp file.
pub struct Rig {
    pub reg: AssetRegistry,
    pub topics: Arc<Vec<String>>,
    pub broker: crate::demo::broker::EmbeddedBroker,
    pub adapter: crate::ingest::mqtt::MqttAdapter,
    pub app: App,
    pub history: Option<crate::history::HistoryThreads>,
    /// Holds the temp folder of the history file.
    _dir: Option<TempDir>,
}

/// A temp folder removed on drop (the bench has no dev-dependencies).
pub struct TempDir(pub std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Rig {
    pub fn start(path: BenchPath, assets: usize, props: usize) -> Result<Self, BenchError> {
        let reg = AssetRegistry::new(synthetic_registry(assets, props));
        let topics: Arc<Vec<String>> = Arc::new(
            reg.assets()
                .iter()
                .flat_map(|a| a.properties.iter().filter_map(|p| p.mqtt.clone()))
                .collect(),
        );
        let broker = start_embedded_broker(free_port()?)?;
        let (mut tx, rx) = ingest_channel(65_536);
        let (mut history, mut dir) = (None, None);
        if path == BenchPath::Recorder {
            let d = TempDir(std::env::temp_dir().join(format!(
                "mezzanine-bench-{}-{}",
                std::process::id(),
                now_us()
            )));
            std::fs::create_dir_all(&d.0)?;
            let (_plugin, threads) = crate::history::HistoryPlugin::start(
                &d.0.join("bench.duckdb"),
                Arc::new(reg.clone()),
                crate::history::WriterSettings::default(),
            )?;
            tx = tx.with_recorder(threads.writer.recorder.clone());
            history = Some(threads);
            dir = Some(d);
        }
        let adapter = spawn_mqtt_adapter(
            MqttSettings {
                mes: None,
                tls: None,
                host: "127.0.0.1".into(),
                port: broker.port,
                client_id: format!("bench-{path:?}").to_lowercase(),
                username: None,
                password: None,
                topics: vec!["bench/#".into()],
                payloads: Default::default(),
                sparkplug: Default::default(),
            },
            Arc::new(reg.clone()),
            tx,
        )?;
        let mut app = headless_twin(&reg, rx);
        let start = Instant::now();
        while app.world().resource::<crate::ingest::LinkStatus>().mqtt
            != crate::ingest::LinkState::Connected
        {
            app.update();
            if start.elapsed() > Duration::from_secs(20) {
                return Err(BenchError::NoConnection);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(300));
        Ok(Self {
            reg,
            topics,
            broker,
            adapter,
            app,
            history,
            _dir: dir,
        })
    }

    /// Samples the recorder has committed (0 on the twin path).
    pub fn recorded(&self) -> u64 {
        self.history.as_ref().map_or(0, |h| {
            h.writer.stats.samples_written.load(Ordering::Relaxed)
        })
    }

    /// Stops the adapter, then the recorder (last commit, checkpoint).
    pub fn stop(self) {
        self.adapter.stop();
        drop(self.app);
        if let Some(h) = self.history {
            h.shutdown();
        }
    }
}

/// Run the ingest benchmark on both paths and print its table.
pub fn run_ingest_bench(quick: bool) -> Result<Vec<StepResult>, BenchError> {
    let (assets, props) = (100, 10);
    let (rates, step_s): (&[u64], u64) = if quick {
        (&[5_000, 20_000], 4)
    } else {
        (&[10_000, 50_000, 100_000], 10)
    };
    let mut results = Vec::new();
    for path in [BenchPath::Twin, BenchPath::Recorder] {
        let mut rig = Rig::start(path, assets, props)?;
        for &rate in rates {
            results.push(load_step(&mut rig, path, rate, step_s));
        }
        rig.stop();
    }
    print_table(&results, assets * props);
    Ok(results)
}

/// One rate for `step_s` seconds; waits until the path has drained.
fn load_step(rig: &mut Rig, path: BenchPath, rate: u64, step_s: u64) -> StepResult {
    let app = &mut rig.app;
    app.world_mut().resource_mut::<LatencyStats>().reset();
    if let Some(h) = &rig.history {
        let _ = h.writer.stats.take_commit_latency();
    }
    let before = app.world().resource::<TwinCounters>().clone();
    let recorded0 = rig.history.as_ref().map_or(0, |h| {
        h.writer.stats.samples_written.load(Ordering::Relaxed)
    });
    let cpu0 = cpu_seconds();
    let published = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let load = spawn_load(
        rig.broker.port,
        rig.topics.clone(),
        rate,
        step_s,
        published.clone(),
        stop.clone(),
        format!("bench-load-{path:?}-{rate}").to_lowercase(),
    );
    let t0 = Instant::now();
    // Apply until the load ends and the pipeline is drained (or gives up).
    let mut idle_since: Option<Instant> = None;
    let mut last_seen = 0;
    loop {
        app.update();
        let c = app.world().resource::<TwinCounters>();
        let seen = match &rig.history {
            // The recorder path is done when everything is on disk; the
            // twin's copy coalesces when it falls behind.
            Some(h) => h.writer.stats.samples_written.load(Ordering::Relaxed) - recorded0,
            None => {
                c.applied + c.duplicates + c.out_of_order
                    - before.applied
                    - before.duplicates
                    - before.out_of_order
            }
        };
        let done_publishing = load.is_finished();
        if done_publishing && seen >= published.load(Ordering::Relaxed) {
            break;
        }
        if seen == last_seen && done_publishing {
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(5) {
                break;
            }
        } else {
            idle_since = None;
        }
        last_seen = seen;
        if t0.elapsed() > Duration::from_secs(step_s * 6 + 30) {
            stop.store(true, Ordering::Relaxed);
            break;
        }
    }
    let _ = load.join();
    // One more frame: the twin takes what coalesced meanwhile.
    app.update();
    let wall_s = t0.elapsed().as_secs_f64();
    let cpu_percent = (cpu_seconds() - cpu0) / wall_s * 100.0;
    let c = app.world().resource::<TwinCounters>().clone();
    let applied = c.applied - before.applied;
    let duplicates = c.duplicates - before.duplicates;
    let published = published.load(Ordering::Relaxed);
    let lat = app.world().resource::<LatencyStats>();
    let mut hops = BTreeMap::new();
    for h in [
        Hop::SourceToAdapter,
        Hop::Decode,
        Hop::DecodeToApply,
        Hop::SourceToTwin,
    ] {
        if let Some(s) = lat.summary(Origin::Mqtt, h) {
            hops.insert(h.label(), (s.p50_us, s.p99_us));
        }
    }
    let (recorded, commit) = match &rig.history {
        Some(h) => (
            Some(h.writer.stats.samples_written.load(Ordering::Relaxed) - recorded0),
            h.writer.stats.take_commit_latency(),
        ),
        None => (None, None),
    };
    let delivered =
        recorded.unwrap_or(applied + duplicates + (c.out_of_order - before.out_of_order));
    StepResult {
        path,
        target_per_s: rate,
        published,
        applied,
        recorded,
        commit_p50_p99_us: commit.map(|l| (l.p50_us, l.p99_us)),
        duplicates,
        lost: published.saturating_sub(delivered),
        sustained_per_s: recorded.unwrap_or(applied) as f64 / wall_s,
        hops,
        cpu_percent,
    }
}

/// Publishers on their own thread, `rate` updates/s for `secs` seconds,
/// cycling through the topics; each payload carries its publish time.
pub fn spawn_load(
    port: u16,
    topics: Arc<Vec<String>>,
    rate: u64,
    secs: u64,
    published: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    client_id: String,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("bench-load".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
                opts.set_keep_alive(Duration::from_secs(30));
                opts.set_inflight(u16::MAX);
                let (client, mut el) = AsyncClient::new(opts, 50_000);
                // Counts the broker's acks: under overload the client's own
                // queue holds publishes that have not left yet.
                let acked = Arc::new(AtomicU64::new(0));
                let acks = acked.clone();
                let pump = tokio::spawn(async move {
                    loop {
                        match el.poll().await {
                            Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                                acks.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(_) => {}
                            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                        }
                    }
                });
                let total = rate * secs;
                let t0 = Instant::now();
                let mut sent = 0u64;
                let mut value = 0.0f64;
                while sent < total && !stop.load(Ordering::Relaxed) {
                    let due = ((t0.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
                    if sent >= due {
                        tokio::time::sleep(Duration::from_micros(500)).await;
                        continue;
                    }
                    while sent < due {
                        let topic = &topics[(sent as usize) % topics.len()];
                        value += 1.0;
                        let payload = encode_json(&SampleValue::Number(value), now_us(), None);
                        if client
                            .publish(topic.clone(), QoS::AtLeastOnce, false, payload)
                            .await
                            .is_err()
                        {
                            return;
                        }
                        sent += 1;
                        published.store(sent, Ordering::Relaxed);
                    }
                }
                // Let the last publishes leave (the broker acknowledged them)
                // before the client goes.
                let wait = Instant::now();
                while acked.load(Ordering::Relaxed) < sent
                    && wait.elapsed() < Duration::from_secs(120)
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                pump.abort();
            });
        })
        .unwrap_or_else(|e| panic!("cannot start the load thread: {e}"))
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn print_table(results: &[StepResult], tags: usize) {
    println!(
        "\ningest benchmark: {tags} tags, publishers → embedded rumqttd → MQTT adapter → twin, and \
         → recorder (DuckDB commit, then ack) + twin (QoS 1, JSON)"
    );
    println!(
        "{:>13} | {:>8} | {:>9} | {:>9} | {:>9} | {:>10} | {:>5} | {:>4} | {:>15} | {:>15} | {:>15} | {:>5}",
        "path",
        "target/s",
        "published",
        "applied",
        "recorded",
        "sustained/s",
        "lost",
        "dup",
        "src→twin ms",
        "decode→twin ms",
        "rcv→commit ms",
        "CPU%"
    );
    println!("{}", "-".repeat(150));
    for r in results {
        let pair = |p: Option<(u64, u64)>| {
            p.map_or("-".to_string(), |(p50, p99)| {
                format!("{}/{}", ms(p50), ms(p99))
            })
        };
        let hop = |k: &str| pair(r.hops.get(k).copied());
        println!(
            "{:>13} | {:>8} | {:>9} | {:>9} | {:>9} | {:>10.0} | {:>5} | {:>4} | {:>15} | {:>15} | {:>15} | {:>5.0}",
            r.path.label(),
            r.target_per_s,
            r.published,
            r.applied,
            r.recorded.map_or("-".to_string(), |n| n.to_string()),
            r.sustained_per_s,
            r.lost,
            r.duplicates,
            hop(Hop::SourceToTwin.label()),
            hop(Hop::DecodeToApply.label()),
            pair(r.commit_p50_p99_us),
            r.cpu_percent
        );
    }
    println!(
        "(latency columns are p50/p99; sustained/s counts what reached the end of the path — the \
         twin, or the disk; on the recorder path the twin's copy coalesces per property when the \
         frame loop falls behind, so `applied` may be below `recorded`; CPU% is of one core)"
    );
}
