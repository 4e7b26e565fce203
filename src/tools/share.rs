//! `mezzanine drill share` and `mezzanine bench share`: several
//! `mezzanine record` processes as members of one MQTT shared subscription
//! (`$share/recorders/acme/lyon/#`) on a real mosquitto, each with its own
//! history file and its own files in one Parquet lake.
//!
//! A QoS 1 publisher in this process sends a fixed number of numbered
//! samples as fast as the broker takes them and logs every one the broker
//! acknowledged. The drill kills one member with SIGKILL a third of the way
//! through and starts it again (its persistent session keeps what the broker
//! handed it meanwhile); at the end every member is stopped in order, the
//! lake is compacted, and each acknowledged sample must be in the members'
//! histories and in the lake exactly once. The benchmark runs 1, 2, 3 …
//! members without a kill and prints the throughput with the CPU time each
//! process took, which says where the bottleneck is.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rumqttc::{AsyncClient, MqttOptions, QoS};

use super::drill::{AckTracker, Broker, TOPICS, signal};
use crate::demo::broker::free_port;
use crate::history::{Store, lake};
use crate::ingest::decode::encode_json;
use crate::ingest::{SampleValue, now_us};
use crate::registry::{AssetRegistry, load_registry};

/// Source time between two consecutive messages, µs.
const STEP_US: i64 = 100;

/// What one run found.
#[derive(Debug, Clone, PartialEq)]
pub struct ShareReport {
    pub recorders: usize,
    pub killed: bool,
    pub published: u64,
    pub acked: u64,
    /// Rows of the drill's samples in the members' history files.
    pub in_histories: u64,
    /// Acknowledged and in no history.
    pub lost: u64,
    /// Samples in more than one row across the histories.
    pub doubled: u64,
    /// Rows each member recorded.
    pub per_member: Vec<u64>,
    pub lake_rows_before: u64,
    pub lake_rows_after: u64,
    pub lake_lost: u64,
    pub lake_doubled: u64,
    /// Publisher: acknowledged messages per second.
    pub publish_rate: f64,
    /// Recorded: rows per second from the first receipt to the last.
    pub record_rate: f64,
    /// CPU seconds from the first message until every sample is in the
    /// lake: mosquitto, all members (a killed member's start counted),
    /// this process (the publisher, and the lake reads that wait).
    pub cpu_broker_s: f64,
    pub cpu_recorders_s: f64,
    pub cpu_publisher_s: f64,
}

/// User + system CPU seconds of a process so far (Linux `/proc`).
fn cpu_s(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) in parentheses.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here;
    // the kernel counts in USER_HZ, 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

fn member_config(dir: &Path, port: u16, i: usize, registry: &Path) -> anyhow::Result<PathBuf> {
    let defaults = crate::config::AppConfig::default();
    let config = dir.join(format!("rec-{i}.toml"));
    std::fs::write(
        &config,
        format!(
            "[plant]\nscene = \"{}\"\nregistry = \"{}\"\nsite = \"lyon\"\n\n\
             [mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\nclient_id = \"share-rec-{i}\"\n\
             topic_roots = [\"acme/lyon/#\"]\nshare_group = \"recorders\"\n\n\
             [opcua]\nenabled = false\n\n[reconcile]\nenabled = false\n\n\
             [history]\npath = \"{}\"\n\n\
             [lake]\npath = \"{}\"\nrecorder = \"rec-{i}\"\nclose_every_s = 5\ngrace_s = 1\n\
             tick_ms = 250\n",
            std::path::absolute(&defaults.plant.scene)?.display(),
            std::path::absolute(registry)?.display(),
            dir.join(format!("rec-{i}.duckdb")).display(),
            dir.join("lake").display(),
        ),
    )?;
    Ok(config)
}

fn start_member(dir: &Path, config: &Path, i: usize) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("rec-{i}.log")))?;
    Command::new(std::env::current_exe().context("locating this binary")?)
        .arg("--config")
        .arg(config)
        .arg("record")
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting a recorder")
}

/// The publisher: `messages` QoS 1 messages as fast as the broker acks
/// them; message `seq` has value `seq` and source time `base_us + seq·STEP`.
/// Returns the acknowledged seqs and the seconds it took.
fn publish(
    port: u16,
    base_us: i64,
    messages: u64,
    progress: Arc<AtomicU64>,
) -> anyhow::Result<(Vec<u64>, f64)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut opts = MqttOptions::new("share-publisher", "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_inflight(500);
        let (client, mut el) = AsyncClient::new(opts, 10_000);
        let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
        let done = Arc::new(AtomicBool::new(false));
        let pump = {
            let acked = acked.clone();
            let progress = progress.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let mut acks = AckTracker::default();
                loop {
                    match el.poll().await {
                        Ok(ev) => {
                            if let Some(seq) = acks.observe(&ev) {
                                let mut l = acked.lock().unwrap_or_else(|p| p.into_inner());
                                l.push(seq);
                                progress.store(l.len() as u64, Ordering::Relaxed);
                                if l.len() as u64 == messages {
                                    done.store(true, Ordering::Release);
                                }
                            }
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            })
        };
        let t0 = Instant::now();
        for seq in 0..messages {
            let topic = TOPICS[(seq % TOPICS.len() as u64) as usize];
            let payload = encode_json(
                &SampleValue::Number(seq as f64),
                base_us + seq as i64 * STEP_US,
                None,
            );
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .context("publishing")?;
        }
        let wait = Instant::now();
        while !done.load(Ordering::Acquire) && wait.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let secs = t0.elapsed().as_secs_f64();
        pump.abort();
        let acked = acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok((acked, secs))
    })
}

/// Rows in the lake's `samples` dataset and their distinct count by value
/// (the drill's values are unique per message).
fn lake_counts(lake_dir: &Path, base_us: i64) -> anyhow::Result<HashMap<u64, u64>> {
    let mut counts = HashMap::new();
    let samples = lake_dir.join("samples");
    if !samples.is_dir() || lake::parquet_files(&samples)?.is_empty() {
        return Ok(counts);
    }
    let c = duckdb::Connection::open_in_memory()?;
    let mut st = c.prepare(&format!(
        "SELECT CAST(value AS UBIGINT), count(*) FROM read_parquet('{}/samples/**/*.parquet',
           hive_partitioning = true) WHERE ts_us >= {base_us} GROUP BY 1",
        lake_dir.display()
    ))?;
    let rows = st.query_map([], |r| Ok((r.get::<_, u64>(0)?, r.get::<_, u64>(1)?)))?;
    for r in rows {
        let (v, n) = r?;
        counts.insert(v, n);
    }
    Ok(counts)
}

/// One run with `recorders` members (and a kill of one if `kill`).
pub fn share_run(
    recorders: usize,
    messages: u64,
    kill: bool,
    registry: Option<PathBuf>,
) -> anyhow::Result<ShareReport> {
    let dir = std::env::temp_dir().join(format!(
        "mezzanine-share-{}-{}",
        std::process::id(),
        now_us()
    ));
    std::fs::create_dir_all(&dir)?;
    // Started as root, mosquitto drops to its own user: let it write here.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
    }
    let result = run_in(&dir, recorders, messages, kill, registry);
    if result.is_ok() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("the run's files are kept in {}", dir.display());
    }
    result
}

fn run_in(
    dir: &Path,
    recorders: usize,
    messages: u64,
    kill: bool,
    registry: Option<PathBuf>,
) -> anyhow::Result<ShareReport> {
    if recorders == 0 {
        bail!("at least one recorder");
    }
    let defaults = crate::config::AppConfig::default();
    let registry_path = registry.unwrap_or(defaults.plant.registry.clone());
    let reg = AssetRegistry::new(load_registry(&registry_path)?);
    let port = free_port()?;
    let broker = Broker::start(dir, port)?;
    let configs: Vec<PathBuf> = (0..recorders)
        .map(|i| member_config(dir, port, i, &registry_path))
        .collect::<anyhow::Result<_>>()?;
    let mut members: Vec<Child> = configs
        .iter()
        .enumerate()
        .map(|(i, c)| start_member(dir, c, i))
        .collect::<anyhow::Result<_>>()?;
    // Every member's session and subscription exist before the first message.
    std::thread::sleep(Duration::from_secs(4));
    // CPU from here on: the load, not the processes' start.
    let cpu_start_members: f64 = members.iter().map(|m| cpu_s(&m.id().to_string())).sum();
    let cpu_start_broker = cpu_s(&broker.pid().to_string());
    let cpu_start_self = cpu_s("self");
    let base_us = now_us();
    let progress = Arc::new(AtomicU64::new(0));
    let publisher = {
        let progress = progress.clone();
        std::thread::Builder::new()
            .name("share-publisher".into())
            .spawn(move || publish(port, base_us, messages, progress))?
    };
    let mut cpu_recorders_s = -cpu_start_members;
    let mut killed = false;
    if kill {
        while progress.load(Ordering::Relaxed) < messages / 3 && !publisher.is_finished() {
            std::thread::sleep(Duration::from_millis(5));
        }
        let victim = recorders - 1;
        cpu_recorders_s += cpu_s(&members[victim].id().to_string());
        members[victim].kill()?;
        members[victim].wait()?;
        killed = true;
        eprintln!(
            "killed rec-{victim} (SIGKILL) after {} messages",
            progress.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_secs(1));
        members[victim] = start_member(dir, &configs[victim], victim)?;
    }
    let (acked, publish_s) = publisher
        .join()
        .map_err(|_| anyhow::anyhow!("the publisher panicked"))??;
    // Wait for the lake to hold every acknowledged sample (periods close
    // every 5 s), at most two minutes.
    let start = Instant::now();
    loop {
        let n = lake_counts(&dir.join("lake"), base_us)?.len() as u64;
        if n >= acked.len() as u64 || start.elapsed() > Duration::from_secs(120) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    for m in &members {
        cpu_recorders_s += cpu_s(&m.id().to_string());
    }
    let cpu_broker_s = cpu_s(&broker.pid().to_string()) - cpu_start_broker;
    let cpu_publisher_s = cpu_s("self") - cpu_start_self;
    for m in &members {
        signal(m, "TERM")?;
    }
    for m in &mut members {
        let deadline = Instant::now();
        while m.try_wait()?.is_none() {
            if deadline.elapsed() > Duration::from_secs(60) {
                m.kill()?;
                bail!("a recorder did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    drop(broker);

    // The members' histories.
    let mut counts: HashMap<u64, u64> = HashMap::new();
    let mut per_member = Vec::new();
    let (mut first_rx, mut last_rx) = (i64::MAX, i64::MIN);
    for i in 0..recorders {
        let store = Store::open(&dir.join(format!("rec-{i}.duckdb")), &reg)?;
        let ids: Vec<String> = TOPICS
            .iter()
            .filter_map(|t| reg.resolve_topic(t))
            .filter_map(|r| store.props.id(r))
            .map(|id| id.to_string())
            .collect();
        let filter = format!("prop_id IN ({}) AND ts_us >= {base_us}", ids.join(","));
        let (n, a, b): (i64, Option<i64>, Option<i64>) = store.conn.query_row(
            &format!(
                "SELECT count(*), min(received_us), max(received_us) FROM samples WHERE {filter}"
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        per_member.push(n as u64);
        if let (Some(a), Some(b)) = (a, b) {
            first_rx = first_rx.min(a);
            last_rx = last_rx.max(b);
        }
        let mut st = store.conn.prepare(&format!(
            "SELECT CAST(value AS UBIGINT), count(*) FROM samples WHERE {filter} GROUP BY 1"
        ))?;
        let rows = st.query_map([], |r| Ok((r.get::<_, u64>(0)?, r.get::<_, u64>(1)?)))?;
        for r in rows {
            let (v, k) = r?;
            *counts.entry(v).or_default() += k;
        }
    }
    let lake_dir = dir.join("lake");
    let before = lake_counts(&lake_dir, base_us)?;
    lake::compact(&lake_dir)?;
    let after = lake_counts(&lake_dir, base_us)?;
    let in_histories: u64 = counts.values().sum();
    let span_s = ((last_rx - first_rx) as f64 / 1e6).max(1e-3);
    Ok(ShareReport {
        recorders,
        killed,
        published: messages,
        acked: acked.len() as u64,
        in_histories,
        lost: acked.iter().filter(|s| !counts.contains_key(s)).count() as u64,
        doubled: counts.values().filter(|n| **n > 1).count() as u64,
        per_member,
        lake_rows_before: before.values().sum(),
        lake_rows_after: after.values().sum(),
        lake_lost: acked.iter().filter(|s| !after.contains_key(s)).count() as u64,
        lake_doubled: after.values().filter(|n| **n > 1).count() as u64,
        publish_rate: acked.len() as f64 / publish_s.max(1e-3),
        record_rate: in_histories as f64 / span_s,
        cpu_broker_s,
        cpu_recorders_s,
        cpu_publisher_s,
    })
}

fn header() {
    println!(
        "{:>9} | {:>6} | {:>9} | {:>9} | {:>9} | {:>4} | {:>7} | {:>18} | {:>10} | {:>10} | {:>22}",
        "recorders",
        "kill",
        "published",
        "acked",
        "histories",
        "lost",
        "doubled",
        "per member",
        "lake rows",
        "recorded/s",
        "CPU s broker/rec/pub"
    );
    println!("{}", "-".repeat(150));
}

fn row(r: &ShareReport) {
    let members: Vec<String> = r.per_member.iter().map(u64::to_string).collect();
    println!(
        "{:>9} | {:>6} | {:>9} | {:>9} | {:>9} | {:>4} | {:>7} | {:>18} | {:>4}→{:<5} | {:>10.0} | {:>6.1} / {:>5.1} / {:>5.1}",
        r.recorders,
        if r.killed { "SIGKILL" } else { "-" },
        r.published,
        r.acked,
        r.in_histories,
        r.lost + r.lake_lost,
        r.doubled + r.lake_doubled,
        members.join("+"),
        r.lake_rows_before,
        r.lake_rows_after,
        r.record_rate,
        r.cpu_broker_s,
        r.cpu_recorders_s,
        r.cpu_publisher_s,
    );
}

/// `mezzanine drill share`: one run with a member killed; exit 1 on any loss
/// or double.
#[allow(clippy::print_stdout)] // a command-line table
pub fn drill(
    recorders: usize,
    messages: u64,
    registry: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let r = share_run(recorders, messages, true, registry)?;
    println!(
        "\nshared-subscription drill: {recorders} `mezzanine record` members of \
         $share/recorders/acme/lyon/# on mosquitto, one killed with SIGKILL a third of the way \
         through and restarted; lake compacted at the end"
    );
    header();
    row(&r);
    let ok = r.lost == 0 && r.doubled == 0 && r.lake_lost == 0 && r.lake_doubled == 0;
    println!(
        "{}",
        if ok {
            "nothing lost, nothing doubled (histories and lake)"
        } else {
            "LOSS OR DOUBLES: see the table"
        }
    );
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `mezzanine bench share`: throughput with 1 … `max` members.
#[allow(clippy::print_stdout)] // a command-line table
pub fn bench(max: usize, messages: u64) -> anyhow::Result<ExitCode> {
    println!(
        "\nshared subscription throughput: {messages} QoS 1 messages, as fast as mosquitto \
         acknowledges them, into 1 … {max} `mezzanine record` members (each its own DuckDB \
         file and lake files)"
    );
    header();
    for n in 1..=max {
        let r = share_run(n, messages, false, None)?;
        row(&r);
    }
    Ok(ExitCode::SUCCESS)
}
