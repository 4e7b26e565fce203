//! `mezzanine drill kill`: the recorder killed at random moments under load,
//! and the broker restarted, then the history compared with what the broker
//! acknowledged to the publisher. A table out.
//!
//! Real processes: a mosquitto with persistence (started here, in a temp
//! folder), `mezzanine record` (this binary) with its own client id and
//! history file, and an independent QoS 1 publisher in this process that
//! logs every message the broker acknowledged. The recorder is killed with
//! SIGKILL at random moments and started again; every fifth kill the
//! broker is stopped (SIGTERM, so it persists its queue) and started again
//! instead. At the end a last recorder run takes what is left, and each
//! acknowledged message must be in the history exactly once.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};

use crate::demo::broker::free_port;
use crate::history::Store;
use crate::ingest::decode::encode_json;
use crate::ingest::{SampleValue, now_us};
use crate::registry::{AssetRegistry, load_registry};

/// The topics the drill publishes to (numeric JSON properties of the demo
/// plant's registry).
pub(crate) const TOPICS: [&str; 4] = [
    "acme/lyon/machining/line1/mill01/spindle_speed",
    "acme/lyon/machining/line1/mill02/spindle_speed",
    "acme/lyon/machining/line2/lathe01/spindle_speed",
    "acme/lyon/machining/line1/mill01/spindle_load",
];
/// Messages per second from the publisher.
const RATE_PER_S: u64 = 1_000;

/// A small xorshift generator: kill moments need no cryptography.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in `lo..hi` milliseconds.
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo).max(1))
    }
}

pub(crate) fn mosquitto_bin() -> anyhow::Result<&'static str> {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context("the kill drill needs mosquitto (e.g. `apt install mosquitto`)")
}

pub(crate) struct Broker {
    child: Child,
    conf: PathBuf,
    port: u16,
}

impl Broker {
    pub(crate) fn start(dir: &Path, port: u16) -> anyhow::Result<Self> {
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
                 persistence_location {}/\nautosave_interval 1\nmax_queued_messages 0\n\
                 max_inflight_messages 1000\nlog_dest none\n",
                dir.display()
            ),
        )?;
        let b = Self {
            child: Command::new(mosquitto_bin()?)
                .arg("-c")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting mosquitto")?,
            conf,
            port,
        };
        b.wait_listening()?;
        Ok(b)
    }

    fn wait_listening(&self) -> anyhow::Result<()> {
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if start.elapsed() > Duration::from_secs(10) {
                bail!("mosquitto did not listen on {}", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM (it writes its persistence file), then start it again.
    fn restart(&mut self) -> anyhow::Result<()> {
        signal(&self.child, "TERM")?;
        self.child.wait()?;
        self.child = Command::new(mosquitto_bin()?)
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("restarting mosquitto")?;
        self.wait_listening()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn signal(child: &Child, sig: &str) -> anyhow::Result<()> {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .context("running kill")?
        .success();
    if !ok {
        bail!("kill -{sig} {} failed", child.id());
    }
    Ok(())
}

/// Which of a QoS 1 publisher's messages the broker acknowledged: message
/// `seq` is the seq-th publish to go out (a retransmission keeps its first
/// seq), matched to its PUBACK by packet id.
#[derive(Default)]
pub(crate) struct AckTracker {
    /// pkid → seq of messages out and not yet acknowledged.
    out: HashMap<u16, u64>,
    next_seq: u64,
}

impl AckTracker {
    /// The seq a PUBACK acknowledges, if `ev` is one.
    pub(crate) fn observe(&mut self, ev: &Event) -> Option<u64> {
        match ev {
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                let next = &mut self.next_seq;
                self.out.entry(*pkid).or_insert_with(|| {
                    *next += 1;
                    *next - 1
                });
                None
            }
            Event::Incoming(Packet::PubAck(a)) => self.out.remove(&a.pkid),
            _ => None,
        }
    }
}

/// What the publisher sent and what the broker acknowledged, by sequence.
#[derive(Default)]
struct PubLog {
    published: u64,
    acked: HashSet<u64>,
}

/// A QoS 1 publisher on its own thread: message `seq` carries the value
/// `seq` and a source time of `base_us + seq` ms.
fn spawn_publisher(
    port: u16,
    base_us: i64,
    log: Arc<Mutex<PubLog>>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("drill-publisher".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let mut opts = MqttOptions::new("drill-publisher", "127.0.0.1", port);
                opts.set_keep_alive(Duration::from_secs(5));
                opts.set_clean_session(false);
                let (client, mut el) = AsyncClient::new(opts, 10_000);
                let events = log.clone();
                let pump = tokio::spawn(async move {
                    let mut acks = AckTracker::default();
                    loop {
                        match el.poll().await {
                            Ok(ev) => {
                                if let Some(seq) = acks.observe(&ev) {
                                    let mut l = events.lock().unwrap_or_else(|p| p.into_inner());
                                    l.acked.insert(seq);
                                }
                            }
                            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                        }
                    }
                });
                let t0 = Instant::now();
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let due = (t0.elapsed().as_secs_f64() * RATE_PER_S as f64) as u64;
                    if seq >= due {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        continue;
                    }
                    let topic = TOPICS[(seq % TOPICS.len() as u64) as usize];
                    let payload = encode_json(
                        &SampleValue::Number(seq as f64),
                        base_us + seq as i64 * 1000,
                        None,
                    );
                    if client
                        .publish(topic, QoS::AtLeastOnce, false, payload)
                        .await
                        .is_err()
                    {
                        break;
                    }
                    seq += 1;
                    log.lock().unwrap_or_else(|p| p.into_inner()).published = seq;
                }
                // Let the last acks come in.
                tokio::time::sleep(Duration::from_secs(3)).await;
                pump.abort();
            });
        })
}

fn recorder(config: &Path, idle_exit_s: Option<u64>) -> anyhow::Result<Child> {
    let mut c = Command::new(std::env::current_exe().context("locating this binary")?);
    c.arg("--config").arg(config).arg("record");
    if let Some(s) = idle_exit_s {
        c.arg("--exit-after-idle-s").arg(s.to_string());
    }
    c.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the recorder")
}

/// What the drill found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KillReport {
    pub recorder_kills: u32,
    pub broker_restarts: u32,
    pub published: u64,
    pub acked: u64,
    pub recorded: u64,
    pub acked_and_lost: u64,
    pub duplicates: u64,
}

#[allow(clippy::print_stdout)] // a command-line table
pub fn run(quick: bool, kills: Option<u32>, registry: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let kills = kills.unwrap_or(if quick { 10 } else { 200 });
    let report = kill_drill(kills, registry)?;
    println!(
        "\nkill drill: `mezzanine record` killed with SIGKILL at random moments under a \
         {RATE_PER_S}/s QoS 1 load, mosquitto (persistence on) restarted every fifth time"
    );
    println!(
        "{:>8} | {:>8} | {:>9} | {:>9} | {:>9} | {:>14} | {:>10}",
        "kills", "broker", "published", "acked", "recorded", "acked & lost", "duplicates"
    );
    println!("{}", "-".repeat(84));
    println!(
        "{:>8} | {:>8} | {:>9} | {:>9} | {:>9} | {:>14} | {:>10}",
        report.recorder_kills,
        report.broker_restarts,
        report.published,
        report.acked,
        report.recorded,
        report.acked_and_lost,
        report.duplicates
    );
    Ok(if report.acked_and_lost == 0 && report.duplicates == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs the drill with `kills` interruptions (a fifth of them broker
/// restarts) and compares the history with the publisher's log.
pub fn kill_drill(kills: u32, registry: Option<PathBuf>) -> anyhow::Result<KillReport> {
    let dir = std::env::temp_dir().join(format!(
        "mezzanine-drill-{}-{}",
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
    let result = drill_in(&dir, kills, registry);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn drill_in(dir: &Path, kills: u32, registry: Option<PathBuf>) -> anyhow::Result<KillReport> {
    let defaults = crate::config::AppConfig::default();
    let registry_path = registry.unwrap_or(defaults.plant.registry.clone());
    let reg = AssetRegistry::new(load_registry(&registry_path)?);
    let port = free_port()?;
    let mut broker = Broker::start(dir, port)?;
    let db = dir.join("history.duckdb");
    let config = dir.join("mezzanine.toml");
    std::fs::write(
        &config,
        format!(
            "[plant]\nscene = \"{}\"\nregistry = \"{}\"\n\n[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\n\
             client_id = \"drill-recorder\"\ntopic_roots = [\"acme/lyon/#\"]\n\n[opcua]\nenabled = false\n\n\
             [reconcile]\nenabled = false\n\n[history]\npath = \"{}\"\n",
            std::path::absolute(&defaults.plant.scene)?.display(),
            std::path::absolute(&registry_path)?.display(),
            db.display()
        ),
    )?;
    // The recorder's session exists before the first message.
    let mut rec = recorder(&config, None)?;
    std::thread::sleep(Duration::from_secs(3));
    let log = Arc::new(Mutex::new(PubLog::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let base_us = now_us() - 3_600_000_000;
    let publisher = spawn_publisher(port, base_us, log.clone(), stop.clone())?;
    let mut rng = Rng(now_us() as u64 | 1);
    let (mut recorder_kills, mut broker_restarts) = (0u32, 0u32);
    for k in 0..kills {
        std::thread::sleep(rng.ms(300, 2_500));
        if k % 5 == 4 {
            broker.restart()?;
            broker_restarts += 1;
        } else {
            rec.kill()?;
            rec.wait()?;
            recorder_kills += 1;
            rec = recorder(&config, None)?;
        }
        eprint!("\r{recorder_kills} recorder kills, {broker_restarts} broker restarts   ");
    }
    eprintln!();
    stop.store(true, Ordering::Relaxed);
    let _ = publisher.join();
    rec.kill()?;
    rec.wait()?;
    // A last run takes what the broker still holds for it.
    let mut last = recorder(&config, Some(5))?;
    let start = Instant::now();
    loop {
        if last.try_wait()?.is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(120) {
            last.kill()?;
            bail!("the last recorder run did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(broker);

    let store = Store::open(&db, &reg)?;
    let ids: Vec<String> = TOPICS
        .iter()
        .filter_map(|t| reg.resolve_topic(t))
        .filter_map(|r| store.props.id(r))
        .map(|id| id.to_string())
        .collect();
    if ids.len() != TOPICS.len() {
        bail!(
            "the registry at {} lacks the drill's topics",
            registry_path.display()
        );
    }
    let mut counts: HashMap<u64, u64> = HashMap::new();
    {
        let mut st = store.conn.prepare(&format!(
            "SELECT CAST(value AS UBIGINT), count(*) FROM samples WHERE prop_id IN ({}) \
             AND ts_us >= ? GROUP BY 1",
            ids.join(",")
        ))?;
        let rows = st.query_map([base_us], |r| {
            Ok((r.get::<_, u64>(0)?, r.get::<_, u64>(1)?))
        })?;
        for r in rows {
            let (v, n) = r?;
            counts.insert(v, n);
        }
    }
    let log = log.lock().unwrap_or_else(|p| p.into_inner());
    Ok(KillReport {
        recorder_kills,
        broker_restarts,
        published: log.published,
        acked: log.acked.len() as u64,
        recorded: counts.len() as u64,
        acked_and_lost: log.acked.iter().filter(|s| !counts.contains_key(s)).count() as u64,
        duplicates: counts.values().filter(|n| **n > 1).count() as u64,
    })
}
