//! Live ingest against real servers: the embedded rumqttd broker, a real
//! mosquitto started by the test (killed and restarted mid-run), and an
//! async-opcua server started in the test (restarted mid-stream).

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mezzanine::demo::broker::{free_port, start_embedded_broker};
use mezzanine::demo::opcua_server::start_opcua_server;
use mezzanine::demo::plant::PlantSpec;
use mezzanine::ingest::decode::{encode_json, encode_spectrum};
use mezzanine::ingest::mqtt::{MqttSettings, spawn_mqtt_adapter};
use mezzanine::ingest::opcua::{OpcUaSettings, spawn_opcua_adapter};
use mezzanine::ingest::{
    IngestEvent, IngestReceiver, LinkState, LinkStatus, Origin, SampleValue, ingest_channel, now_us,
};
use mezzanine::registry::{AssetRegistry, parse_registry};
use opcua::types::{NodeId, Variant};
use rumqttc::{AsyncClient, MqttOptions, QoS};

pub(crate) fn registry() -> Arc<AssetRegistry> {
    Arc::new(AssetRegistry::new(PlantSpec::demo().registry()))
}

fn settings(port: u16, client_id: &str) -> MqttSettings {
    MqttSettings {
        payloads: Default::default(),
        sparkplug: Default::default(),
        mes: None,
        tls: None,
        host: "127.0.0.1".into(),
        port,
        client_id: client_id.into(),
        username: None,
        password: None,
        topics: vec!["acme/lyon/#".into(), "spBv1.0/acme/#".into()],
    }
}

/// Collects adapter events until `done` says so or the guard time runs out.
fn collect(
    rx: &IngestReceiver,
    guard: Duration,
    mut done: impl FnMut(&[IngestEvent]) -> bool,
) -> Vec<IngestEvent> {
    let start = Instant::now();
    let mut out = Vec::new();
    while start.elapsed() < guard {
        if let Ok(ev) = rx.0.recv_timeout(Duration::from_millis(50)) {
            // Acknowledge as the twin does once it has applied a sample.
            out.extend(ack_all(vec![ev]));
        }
        if done(&out) {
            break;
        }
    }
    out
}

fn ack_all(events: Vec<IngestEvent>) -> Vec<IngestEvent> {
    events
        .into_iter()
        .map(|ev| match ev {
            IngestEvent::Sample(s, Some(a)) => {
                a.send();
                IngestEvent::Sample(s, None)
            }
            IngestEvent::DeadLetter(d, Some(a)) => {
                a.send();
                IngestEvent::DeadLetter(d, None)
            }
            other => other,
        })
        .collect()
}

fn samples_of(events: &[IngestEvent]) -> Vec<&mezzanine::ingest::Sample> {
    events
        .iter()
        .filter_map(|e| match e {
            IngestEvent::Sample(s, _) => Some(s),
            _ => None,
        })
        .collect()
}

fn dead_letters_of(events: &[IngestEvent]) -> Vec<&mezzanine::ingest::DeadLetter> {
    events
        .iter()
        .filter_map(|e| match e {
            IngestEvent::DeadLetter(d, _) => Some(d),
            _ => None,
        })
        .collect()
}

/// Samples and dead letters, not link reports.
fn non_link(events: &[IngestEvent]) -> usize {
    events
        .iter()
        .filter(|x| !matches!(x, IngestEvent::Link { .. }))
        .count()
}

fn connected(events: &[IngestEvent], origin: Origin) -> bool {
    events
        .iter()
        .any(|e| matches!(e, IngestEvent::Link { origin: o, state: LinkState::Connected } if *o == origin))
}

/// A publishing client on its own runtime.
pub(crate) struct Pub {
    rt: tokio::runtime::Runtime,
    client: AsyncClient,
}

impl Pub {
    pub(crate) fn new(port: u16, id: &str) -> Self {
        Self::with_max_packet(port, id, 10 * 1024)
    }

    /// A publisher allowed packets up to `bytes`.
    pub(crate) fn with_max_packet(port: u16, id: &str, bytes: usize) -> Self {
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_clean_session(false);
        opts.set_max_packet_size(bytes, bytes);
        Self::with_options(opts)
    }

    /// A publisher that logs in.
    pub(crate) fn new_with_credentials(port: u16, id: &str, user: &str, pass: &str) -> Self {
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_credentials(user, pass);
        Self::with_options(opts)
    }

    /// A client on its own runtime, its event loop pumped in the background.
    fn with_options(mut opts: MqttOptions) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        opts.set_keep_alive(Duration::from_secs(5));
        let (client, mut el) = AsyncClient::new(opts, 10_000);
        rt.spawn(async move {
            loop {
                if el.poll().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        Self { rt, client }
    }

    pub(crate) fn publish(&self, topic: &str, payload: Vec<u8>) {
        let c = self.client.clone();
        let topic = topic.to_string();
        self.rt
            .block_on(async move { c.publish(topic, QoS::AtLeastOnce, false, payload).await })
            .expect("queued");
    }
}

pub(crate) const SPINDLE_TOPIC: &str = "acme/lyon/machining/line1/mill01/spindle_speed";
const SPINDLE_NODE: &str = "ns=2;s=Line1.Mill01.Spindle.Speed";
/// A plausible source time (2025-11-24T16:00:00Z): the adapters dead-letter
/// times before 2000 or more than 5 min ahead of receipt.
const T0: i64 = 1_764_000_000_000_000;

/// An embedded broker and an MQTT adapter subscribed to it as `client_id`,
/// connected and settled.
fn adapter_on_embedded_broker(
    reg: &Arc<AssetRegistry>,
    client_id: &str,
) -> (
    mezzanine::demo::broker::EmbeddedBroker,
    mezzanine::ingest::mqtt::MqttAdapter,
    IngestReceiver,
) {
    let broker = start_embedded_broker(free_port().expect("port")).expect("broker");
    let (tx, rx) = ingest_channel(1024);
    let adapter =
        spawn_mqtt_adapter(settings(broker.port, client_id), reg.clone(), tx).expect("adapter");
    let ev = collect(&rx, Duration::from_secs(20), |e| connected(e, Origin::Mqtt));
    assert!(
        connected(&ev, Origin::Mqtt),
        "adapter never connected: {ev:?}"
    );
    std::thread::sleep(Duration::from_millis(300)); // subscription settles
    (broker, adapter, rx)
}

/// A Sparkplug B payload of `metrics` with sequence number `seq`, stamped
/// now, as an edge node sends it.
fn sp_payload(seq: u64, metrics: Vec<mezzanine::ingest::sparkplug::Metric>) -> Vec<u8> {
    use prost::Message;
    mezzanine::ingest::sparkplug::Payload {
        timestamp: Some(now_us() as u64 / 1000),
        seq: Some(seq),
        metrics,
    }
    .encode_to_vec()
}

/// A Double metric, by name, alias or both.
fn sp_double(
    name: Option<&str>,
    alias: Option<u64>,
    v: f64,
) -> mezzanine::ingest::sparkplug::Metric {
    use mezzanine::ingest::sparkplug::{Metric, MetricValue, datatype};
    Metric {
        name: name.map(str::to_string),
        alias,
        datatype: Some(datatype::DOUBLE),
        value: Some(MetricValue::DoubleValue(v)),
        ..Default::default()
    }
}

/// An OPC UA adapter (policy None) on `endpoint`, its client PKI in `dir`.
fn opcua_adapter(
    endpoint: String,
    reg: &Arc<AssetRegistry>,
    dir: &std::path::Path,
) -> (mezzanine::ingest::opcua::OpcUaAdapter, IngestReceiver) {
    let (tx, rx) = ingest_channel(10_000);
    let adapter = spawn_opcua_adapter(
        OpcUaSettings {
            endpoint,
            security_policy: "None".into(),
            security_mode: "None".into(),
            username: None,
            password: None,
            pki_dir: dir.join("client"),
            sampling_interval_ms: 50.0,
        },
        reg.clone(),
        tx,
    )
    .expect("adapter");
    (adapter, rx)
}

/// An MQTT adapter with `s` feeding a headless twin, stepped until the
/// link is up and its subscription has settled.
fn twin_on_broker(
    s: MqttSettings,
    reg: &Arc<AssetRegistry>,
) -> (mezzanine::ingest::mqtt::MqttAdapter, bevy::app::App) {
    let (tx, rx) = ingest_channel(1024);
    let adapter = spawn_mqtt_adapter(s, reg.clone(), tx).expect("adapter");
    let mut app = mezzanine::app::headless_twin(reg, rx);
    let start = Instant::now();
    while app.world().resource::<LinkStatus>().mqtt != LinkState::Connected {
        assert!(start.elapsed() < Duration::from_secs(20), "never connected");
        app.update();
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    (adapter, app)
}

#[test]
fn embedded_broker_decodes_good_payloads_and_dead_letters_bad_ones() {
    let reg = registry();
    let (broker, adapter, rx) = adapter_on_embedded_broker(&reg, "twin-embedded");

    let p = Pub::new(broker.port, "test-publisher");
    p.publish(
        SPINDLE_TOPIC,
        encode_json(&SampleValue::Number(9000.0), T0 + 1_000, None),
    );
    let spectrum_topic = "acme/lyon/machining/line1/mill01/vibration_spectrum";
    let good_spectrum = encode_spectrum(10.0, &[0.1, 0.9, 0.2], T0 + 2_000);
    p.publish(spectrum_topic, good_spectrum.clone());
    p.publish(
        spectrum_topic,
        good_spectrum[..good_spectrum.len() - 3].to_vec(),
    ); // truncated
    p.publish(SPINDLE_TOPIC, br#"{"value": "very fast"}"#.to_vec()); // wrong type
    p.publish("acme/lyon/machining/line9/ghost/temp", b"1".to_vec()); // unknown topic

    let ev = ack_all(collect(&rx, Duration::from_secs(20), |e| non_link(e) >= 5));
    let samples = samples_of(&ev);
    let dead = dead_letters_of(&ev);
    assert_eq!(samples.len(), 2, "{ev:?}");
    let spindle = reg.resolve_topic(SPINDLE_TOPIC).expect("registry");
    assert_eq!(samples[0].property, spindle);
    assert_eq!(samples[0].value, SampleValue::Number(9000.0));
    assert_eq!(samples[0].hops.source_us, T0 + 1_000);
    assert!(matches!(&samples[1].value, SampleValue::Spectrum { bins, .. } if bins.len() == 3));
    let reasons: Vec<(&str, &str)> = dead
        .iter()
        .map(|d| (d.source.as_str(), d.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons[0].1.contains("truncated"), "{reasons:?}");
    assert!(
        reasons[1]
            .1
            .contains("text but the property is measured in `rpm`"),
        "{reasons:?}"
    );
    assert_eq!(
        reasons[2],
        (
            "acme/lyon/machining/line9/ghost/temp",
            "topic is not in the asset registry"
        )
    );
    adapter.stop();
}

#[test]
fn sparkplug_metrics_land_on_the_device_asset_and_bad_ones_are_dead_lettered() {
    use mezzanine::ingest::sparkplug;
    let reg = registry();
    let (broker, adapter, rx) = adapter_on_embedded_broker(&reg, "twin-sparkplug");

    let p = Pub::new(broker.port, "edge-gateway");
    let good = sparkplug::encode(
        &[
            ("power", &SampleValue::Number(2.5)),
            ("state", &SampleValue::Text("idle".into())),
            ("colour", &SampleValue::Number(1.0)),
        ],
        1_700_000_000_000,
        1,
    );
    p.publish("spBv1.0/acme/DDATA/line1/robot01", good.clone());
    p.publish("spBv1.0/acme/DDATA/line9/robot99", good.clone()); // unknown device
    // Truncated inside the last metric (the final 2 bytes are only `seq`).
    p.publish(
        "spBv1.0/acme/DDATA/line1/robot01",
        good[..good.len() - 6].to_vec(),
    );

    let ev = collect(&rx, Duration::from_secs(20), |e| non_link(e) >= 5);
    let samples = samples_of(&ev);
    let dead: Vec<_> = dead_letters_of(&ev)
        .into_iter()
        .map(|d| d.reason.as_str())
        .collect();
    let robot = reg.by_id("L1-ROBOT-01").expect("robot");
    assert_eq!(samples.len(), 2, "{ev:?}");
    assert_eq!(
        Some(samples[0].property),
        reg.property_by_name(robot, "power")
    );
    assert_eq!(samples[0].value, SampleValue::Number(2.5));
    assert_eq!(samples[0].hops.source_us, 1_700_000_000_000_000);
    assert_eq!(
        Some(samples[1].property),
        reg.property_by_name(robot, "state")
    );
    assert_eq!(dead.len(), 3, "{dead:?}");
    assert_eq!(
        dead[0],
        "metric `colour` is not a property of this asset (name it with `sparkplug_metric` in the registry)"
    );
    assert_eq!(
        dead[1],
        "Sparkplug source `acme/line9/robot99` is not in the asset registry"
    );
    assert!(dead[2].starts_with("not a Sparkplug B payload"), "{dead:?}");
    adapter.stop();
}

#[test]
fn hostile_source_times_become_dead_letters_and_the_adapter_lives_on() {
    use mezzanine::ingest::sparkplug;
    let reg = registry();
    let (broker, adapter, rx) = adapter_on_embedded_broker(&reg, "twin-hostile");

    let p = Pub::new(broker.port, "plc-wrong-clock");
    let now = now_us();
    for payload in [
        // ms that overflow µs (once a panic on the adapter thread)
        r#"{"value": 1001, "ts": 9223372036854775807}"#.to_string(),
        r#"{"value": 1002, "ts_us": -9223372036854775808}"#.to_string(),
        r#"{"value": 1003, "ts_us": 17}"#.to_string(),
        // a day ahead: a PLC with a wrong real-time clock
        format!(r#"{{"value": 1004, "ts_us": {}}}"#, now + 86_400_000_000),
        // µs sent as ms
        format!(r#"{{"value": 1005, "ts": {now}}}"#),
    ] {
        p.publish(SPINDLE_TOPIC, payload.into_bytes());
    }
    let sp = sparkplug::encode(&[("power", &SampleValue::Number(1.0))], u64::MAX, 1);
    p.publish("spBv1.0/acme/DDATA/line1/robot01", sp);
    // A good sample after all of them: the adapter is still there.
    p.publish(
        SPINDLE_TOPIC,
        encode_json(&SampleValue::Number(1006.0), now, None),
    );

    let ev = ack_all(collect(&rx, Duration::from_secs(20), |e| {
        samples_of(e).len() + dead_letters_of(e).len() >= 7
    }));
    let samples = samples_of(&ev);
    assert_eq!(samples.len(), 1, "{ev:?}");
    assert_eq!(samples[0].value, SampleValue::Number(1006.0));
    assert_eq!(samples[0].hops.source_us, now);
    let dead: Vec<(&str, &str)> = dead_letters_of(&ev)
        .into_iter()
        .map(|d| (d.source.as_str(), d.reason.as_str()))
        .collect();
    assert_eq!(dead.len(), 6, "{dead:?}");
    for (source, _) in &dead[..5] {
        assert_eq!(*source, SPINDLE_TOPIC);
    }
    assert!(dead[0].1.contains("`ts`"), "{dead:?}");
    assert!(
        dead[1].1.contains("is before 2000-01-01T00:00:00Z")
            && dead[2].1.contains("1970-01-01T00:00:00.000017Z"),
        "{dead:?}"
    );
    assert!(
        dead[3].1.contains("s ahead of its receipt") && dead[4].1.contains("milliseconds sent as"),
        "{dead:?}"
    );
    assert_eq!(dead[5].0, "spBv1.0/acme/DDATA/line1/robot01");
    assert!(
        dead[5].1.contains("timestamp 18446744073709551615 ms"),
        "{dead:?}"
    );
    adapter.stop();
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// In `dir`: `ca.pem`, `other-ca.pem` (a CA nobody used), and
/// `server.pem`/`server.key` for 127.0.0.1 signed by `ca.pem`.
pub(crate) fn test_ca(d: &std::path::Path) {
    for (name, cn) in [("ca", "Mezzanine test CA"), ("other-ca", "Somebody else")] {
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-subj",
                &format!("/CN={cn}"),
            ],
        );
    }
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(d.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
}

#[test]
fn tls_broker_is_reached_with_the_right_ca_and_refused_with_a_wrong_one() {
    use mezzanine::ingest::mqtt::TlsFiles;
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    test_ca(d);
    #[cfg(unix)]
    for f in ["ca.pem", "server.pem", "server.key"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.join(f), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let (tls_port, plain_port) = (free_port().expect("port"), free_port().expect("port"));
    let extra = format!(
        "listener {tls_port} 127.0.0.1\ncafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key\n",
        d.display()
    );
    let broker = start_mosquitto_with(plain_port, d, &extra);
    let reg = registry();

    let tls_settings = |ca: &str, id: &str| MqttSettings {
        payloads: Default::default(),
        sparkplug: Default::default(),
        mes: None,
        tls: Some(TlsFiles {
            ca_file: d.join(ca),
            client_cert_file: None,
            client_key_file: None,
        }),
        ..settings(tls_port, id)
    };
    let (tx, rx) = ingest_channel(1024);
    let adapter =
        spawn_mqtt_adapter(tls_settings("ca.pem", "twin-tls"), reg.clone(), tx).expect("adapter");
    assert!(
        connected(
            &collect(&rx, Duration::from_secs(20), |e| connected(e, Origin::Mqtt)),
            Origin::Mqtt
        ),
        "no TLS connection"
    );
    std::thread::sleep(Duration::from_millis(300));
    let p = Pub::new(plain_port, "plc-plain");
    p.publish(
        SPINDLE_TOPIC,
        encode_json(&SampleValue::Number(4321.0), T0 + 5, None),
    );
    let ev = collect(&rx, Duration::from_secs(20), |e| {
        e.iter().any(|x| matches!(x, IngestEvent::Sample(..)))
    });
    assert!(
        ev.iter().any(
            |x| matches!(x, IngestEvent::Sample(s, _) if s.value == SampleValue::Number(4321.0))
        ),
        "{ev:?}"
    );
    adapter.stop();

    // A broker whose certificate the configured CA did not sign is refused.
    let (tx, rx) = ingest_channel(1024);
    let adapter = spawn_mqtt_adapter(
        tls_settings("other-ca.pem", "twin-wrong-ca"),
        reg.clone(),
        tx,
    )
    .expect("adapter");
    let ev = collect(&rx, Duration::from_secs(5), |e| {
        e.iter().any(|x| {
            matches!(
                x,
                IngestEvent::Link {
                    state: LinkState::Disconnected(_),
                    ..
                }
            )
        })
    });
    assert!(
        !connected(&ev, Origin::Mqtt),
        "connected with the wrong CA: {ev:?}"
    );
    assert!(ev.iter().any(|x| matches!(x, IngestEvent::Link { state: LinkState::Disconnected(why), .. } if why.to_lowercase().contains("tls") || why.to_lowercase().contains("cert"))), "{ev:?}");
    adapter.stop();

    // A missing CA file is named at start.
    let (tx, _rx) = ingest_channel(16);
    let err = spawn_mqtt_adapter(tls_settings("missing.pem", "twin-missing"), reg, tx)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("missing.pem"), "{err}");
    drop(broker);
}

pub(crate) struct Mosquitto(pub(crate) Child);

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn start_mosquitto(port: u16, dir: &std::path::Path) -> Mosquitto {
    start_mosquitto_with(port, dir, "")
}

/// mosquitto whose first lines are `first` (global options and listeners
/// of their own), then the usual anonymous listener on `port`.
fn start_mosquitto_with_first(port: u16, dir: &std::path::Path, first: &str) -> Mosquitto {
    start_mosquitto_conf(port, dir, first, "")
}

pub(crate) fn start_mosquitto_with(
    port: u16,
    dir: &std::path::Path,
    extra_listeners: &str,
) -> Mosquitto {
    start_mosquitto_conf(port, dir, "", extra_listeners)
}

fn start_mosquitto_conf(
    port: u16,
    dir: &std::path::Path,
    first: &str,
    extra_listeners: &str,
) -> Mosquitto {
    // Started as root, mosquitto drops to its own user: let it write here.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    }
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "{first}listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nautosave_interval 1\nmax_queued_messages 100000\nlog_dest file {}/mosquitto.log\nlog_type all\n{extra_listeners}",
            dir.display(),
            dir.display()
        ),
    )
    .expect("config");
    let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or_else(|| panic!("mosquitto is not installed (`make test` installs it)"));
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto starts");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "mosquitto did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Mosquitto(child)
}

fn sample_sources(events: &[IngestEvent]) -> Vec<i64> {
    events
        .iter()
        .filter_map(|e| {
            if let IngestEvent::Sample(s, _) = e {
                Some(s.hops.source_us)
            } else {
                None
            }
        })
        .collect()
}

#[test]
fn mosquitto_restart_loses_nothing_published_at_qos1_after_it() {
    if std::env::var_os("MZ_TEST_LOG").is_some() {
        let _ = bevy::log::tracing_subscriber::fmt()
            .with_env_filter("debug")
            .try_init();
    }
    let reg = registry();
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port().expect("port");
    let mut broker = start_mosquitto(port, dir.path());
    let (tx, rx) = ingest_channel(100_000);
    let adapter = spawn_mqtt_adapter(settings(port, "twin-mosquitto"), reg, tx).expect("adapter");
    assert!(connected(
        &collect(&rx, Duration::from_secs(20), |e| connected(e, Origin::Mqtt)),
        Origin::Mqtt
    ));
    std::thread::sleep(Duration::from_millis(300));

    let before = 300;
    {
        let p = Pub::new(port, "plc-before");
        for i in 0..before {
            p.publish(
                SPINDLE_TOPIC,
                encode_json(&SampleValue::Number(i as f64), T0 + i, None),
            );
        }
        let got = ack_all(collect(&rx, Duration::from_secs(30), |e| {
            sample_sources(e).len() >= before as usize
        }));
        assert_eq!(sample_sources(&got).len(), before as usize);
    }

    // Let the broker persist the twin's session (autosave every second), as a
    // production broker with persistence does, then kill it (SIGKILL) and
    // bring it back on the same port. Publishing starts at once, before the
    // twin has reconnected: the restored session must queue for it.
    std::thread::sleep(Duration::from_millis(2500));
    drop(broker);
    std::thread::sleep(Duration::from_millis(500));
    broker = start_mosquitto(port, dir.path());
    let after = 500i64;
    let p = Pub::new(port, "plc-after");
    for i in 0..after {
        p.publish(
            SPINDLE_TOPIC,
            encode_json(&SampleValue::Number(i as f64), T0 + 1_000_000 + i, None),
        );
    }
    let got = ack_all(collect(&rx, Duration::from_secs(60), |e| {
        sample_sources(e)
            .iter()
            .filter(|&&t| t >= T0 + 1_000_000)
            .collect::<HashSet<_>>()
            .len()
            >= after as usize
    }));
    let unique: HashSet<i64> = sample_sources(&got)
        .into_iter()
        .filter(|&t| t >= T0 + 1_000_000)
        .collect();
    assert_eq!(
        unique.len(),
        after as usize,
        "lost {} of {after} after the restart",
        after as usize - unique.len()
    );
    let links: Vec<&LinkState> = got
        .iter()
        .filter_map(|e| {
            if let IngestEvent::Link { state, .. } = e {
                Some(state)
            } else {
                None
            }
        })
        .collect();
    assert!(
        links.iter().any(|s| **s == LinkState::Connected),
        "no reconnect seen: {links:?}"
    );
    adapter.stop();
    drop(broker);
}

#[test]
fn opcua_subscription_recovers_after_server_restart_and_meets_mqtt_on_one_property() {
    if std::env::var_os("MZ_TEST_LOG").is_some() {
        let _ = bevy::log::tracing_subscriber::fmt()
            .with_env_filter("debug")
            .try_init();
    }
    let reg = registry();
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port().expect("port");
    let server = start_opcua_server(&reg, port, dir.path().join("server")).expect("server");
    let (adapter, rx) = opcua_adapter(server.endpoint(), &reg, dir.path());
    let ev = collect(&rx, Duration::from_secs(30), |e| {
        connected(e, Origin::OpcUa)
    });
    assert!(connected(&ev, Origin::OpcUa), "never connected: {ev:?}");

    let node = NodeId::new(2, "Line1.Mill01.Spindle.Speed");
    let wait_for = |rx: &IngestReceiver, want: f64| {
        let got = collect(rx, Duration::from_secs(30), |e| {
            e.iter().any(
                |x| matches!(x, IngestEvent::Sample(s, _) if s.value == SampleValue::Number(want)),
            )
        });
        got.into_iter().find_map(|x| match x {
            IngestEvent::Sample(s, _) if s.value == SampleValue::Number(want) => Some(s),
            _ => None,
        })
    };
    server.set_values(vec![(node.clone(), Variant::Double(8100.0), now_us())]);
    let s = wait_for(&rx, 8100.0).expect("first value arrives");
    assert_eq!(s.origin, Origin::OpcUa);
    // The same spindle through MQTT and through OPC UA: one property.
    assert_eq!(Some(s.property), reg.resolve_topic(SPINDLE_TOPIC));
    assert_eq!(Some(s.property), reg.resolve_opcua(SPINDLE_NODE));
    assert!(
        s.hops.broker_us.is_some(),
        "server time stamp is the server hop"
    );

    server.stop();
    std::thread::sleep(Duration::from_millis(500));
    let server = start_opcua_server(&reg, port, dir.path().join("server")).expect("server again");
    // Keep writing until the adapter's new subscription picks values up.
    let start = Instant::now();
    let mut recovered = None;
    let mut v = 9000.0;
    while recovered.is_none() && start.elapsed() < Duration::from_secs(60) {
        v += 1.0;
        server.set_values(vec![(node.clone(), Variant::Double(v), now_us())]);
        recovered = collect(&rx, Duration::from_millis(500), |e| {
            e.iter().any(|x| matches!(x, IngestEvent::Sample(s, _) if s.value.as_f64().is_some_and(|f| f >= 9000.0)))
        })
        .into_iter()
        .find_map(|x| match x {
            IngestEvent::Sample(s, _) if s.value.as_f64().is_some_and(|f| f >= 9000.0) => Some(s),
            _ => None,
        });
    }
    assert!(recovered.is_some(), "no data after the server restart");
    adapter.stop();
    server.stop();
}

/// Appends a protobuf varint.
fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The nasty set, published to the running app's broker (a real mosquitto,
/// which passes 10 MB messages on): the app does not panic, each one is a
/// dead letter with its reason (in the app and in the history), and the
/// app stays live — a good sample after them all is applied.
#[test]
fn hostile_payloads_become_dead_letters_and_the_app_stays_live() {
    use mezzanine::app::{self, Front, Launch};
    use mezzanine::config::AppConfig;
    use mezzanine::history::History;
    use mezzanine::ingest::{DeadLetters, LinkStatus, sparkplug};
    use mezzanine::twin::{AssetEntities, LiveValues};

    let dir = tempfile::tempdir().expect("dir");
    let port = free_port().expect("port");
    let _broker = start_mosquitto(port, dir.path());
    let mut cfg = AppConfig::load(None).expect("defaults");
    cfg.mqtt.url = Some(format!("mqtt://127.0.0.1:{port}"));
    cfg.mqtt.client_id = Some("twin-hostile-app".into());
    cfg.opcua.enabled = false;
    cfg.history.path = Some(dir.path().join("h.duckdb"));
    cfg.validate().expect("valid");
    let mut a = app::build(Launch {
        cfg,
        front: Front::Headless,
        replay: None,
        demo_mes_outage: None,
    })
    .expect("app");
    let start = Instant::now();
    while a.app.world().resource::<LinkStatus>().mqtt != LinkState::Connected {
        assert!(start.elapsed() < Duration::from_secs(20), "never connected");
        a.app.update();
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500)); // subscription settles

    let now = now_us();
    let spectrum_topic = "acme/lyon/machining/line1/mill01/vibration_spectrum";
    let robot = "spBv1.0/acme/DDATA/line1/robot01";
    // A Sparkplug metric of a type nobody here knows (a bytes value, tag 16).
    let unknown_type = {
        let mut metric = Vec::new();
        metric.push(0x0a); // name
        varint(&mut metric, 5);
        metric.extend_from_slice(b"power");
        metric.push(0x20); // datatype
        varint(&mut metric, 17);
        varint(&mut metric, (16 << 3) | 2); // bytes_value
        varint(&mut metric, 3);
        metric.extend_from_slice(b"\x00\xff\x10");
        let mut p = vec![0x08]; // timestamp
        varint(&mut p, (now / 1000) as u64);
        p.push(0x12); // metrics
        varint(&mut p, metric.len() as u64);
        p.extend_from_slice(&metric);
        p
    };
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let nasty: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            SPINDLE_TOPIC,
            format!(r#"{{"value": 1, "ts_us": {}}}"#, i64::MIN).into_bytes(),
            "before 2000",
        ),
        (
            SPINDLE_TOPIC,
            format!(r#"{{"value": 1, "ts_us": {}}}"#, i64::MAX).into_bytes(),
            "ahead of its receipt",
        ),
        (
            SPINDLE_TOPIC,
            format!(r#"{{"value": 1, "ts": {}}}"#, i64::MAX).into_bytes(),
            "`ts`",
        ),
        (SPINDLE_TOPIC, br#"{"value": NaN}"#.to_vec(), "not JSON"),
        (SPINDLE_TOPIC, br#"{"value": 1e999}"#.to_vec(), "not JSON"),
        (
            SPINDLE_TOPIC,
            vec![b'7'; 10 << 20],
            "over the 1048576 byte limit",
        ),
        (SPINDLE_TOPIC, deep.into_bytes(), "recursion limit"),
        (
            SPINDLE_TOPIC,
            b"{\"value\": \"\xff\xfe\"}".to_vec(),
            "not JSON",
        ),
        (
            spectrum_topic,
            mezzanine::ingest::decode::encode_spectrum(10.0, &[1.0, f32::NAN, 2.0], now),
            "spectrum bin 1 is NaN",
        ),
        (
            robot,
            sparkplug::encode(
                &[("power", &SampleValue::Number(f64::INFINITY))],
                (now / 1000) as u64,
                1,
            ),
            "value inf is not a finite number",
        ),
        (
            robot,
            sparkplug::encode(
                &[("power", &SampleValue::Number(f64::NAN))],
                (now / 1000) as u64,
                2,
            ),
            "value NaN is not a finite number",
        ),
        (robot, unknown_type, "is not one the twin reads"),
        (robot, vec![0xff; 64], "not a Sparkplug B payload"),
    ];
    let publisher = Pub::with_max_packet(port, "fuzzer", 32 << 20);
    for (topic, payload, _) in &nasty {
        publisher.publish(topic, payload.clone());
    }
    // And then a good one: the adapter and the app are still there.
    publisher.publish(
        SPINDLE_TOPIC,
        encode_json(&SampleValue::Number(4242.0), now, None),
    );
    let reg = registry();
    let spindle = reg.resolve_topic(SPINDLE_TOPIC).expect("topic");
    let shown = |app: &bevy::prelude::App| {
        let e = app.world().resource::<AssetEntities>().0[&spindle.asset];
        app.world()
            .get::<LiveValues>(e)
            .expect("values")
            .0
            .get(spindle.property as usize)
            .and_then(|v| v.as_ref())
            .map(|v| v.value.clone())
    };
    let start = Instant::now();
    while shown(&a.app) != Some(SampleValue::Number(4242.0))
        || a.app.world().resource::<DeadLetters>().total < nasty.len() as u64
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "after 30 s: {} dead letters, spindle shows {:?}; {:?}",
            a.app.world().resource::<DeadLetters>().total,
            shown(&a.app),
            a.app
                .world()
                .resource::<DeadLetters>()
                .recent
                .iter()
                .map(|d| &d.reason)
                .collect::<Vec<_>>()
        );
        a.app.update();
        std::thread::sleep(Duration::from_millis(20));
    }
    let dead = a.app.world().resource::<DeadLetters>();
    assert_eq!(dead.total, nasty.len() as u64);
    let reasons: Vec<(String, String)> = dead
        .recent
        .iter()
        .map(|d| (d.source.clone(), d.reason.clone()))
        .collect();
    for ((topic, _, why), (source, reason)) in nasty.iter().zip(&reasons) {
        assert_eq!(source, topic);
        assert!(reason.contains(why), "`{reason}` should say `{why}`");
    }
    let links = a.app.world().resource::<LinkStatus>().clone();
    assert_eq!(
        (links.mqtt, links.mqtt_reconnects),
        (LinkState::Connected, 0)
    );
    assert_eq!(
        a.live.mqtt.as_ref().expect("mqtt").restarts(),
        0,
        "the adapter never failed"
    );
    // The history holds them too.
    let history = a.app.world().resource::<History>().clone();
    a.shutdown();
    assert_eq!(
        history
            .stats
            .dead_letters
            .load(std::sync::atomic::Ordering::Relaxed),
        nasty.len() as u64
    );
    println!(
        "{} hostile payloads: each a dead letter, the app live",
        nasty.len()
    );
    for (_, r) in reasons {
        println!("  {r}");
    }
}

/// Against a server that offers only SignAndEncrypt with a user name: an
/// unknown server certificate is refused, named by its thumbprint with what
/// to do; once a person trusts it, Basic256Sha256 and Aes256Sha256RsaPss
/// both connect and deliver; a wrong password is refused.
#[test]
fn a_secured_opcua_server_is_trusted_by_a_person_not_by_default() {
    use mezzanine::demo::opcua_server::start_secured_opcua_server;
    let reg = registry();
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port().expect("port");
    let server = start_secured_opcua_server(
        &reg,
        port,
        dir.path().join("server"),
        "operator",
        "s3cret-Pa55",
    )
    .expect("secured server");
    let client_pki = dir.path().join("client");
    let adapter_with = |policy: &str, password: &str, rx_cap: usize| {
        let (tx, rx) = ingest_channel(rx_cap);
        let adapter = spawn_opcua_adapter(
            OpcUaSettings {
                endpoint: server.endpoint(),
                security_policy: policy.into(),
                security_mode: "SignAndEncrypt".into(),
                username: Some("operator".into()),
                password: Some(password.into()),
                pki_dir: client_pki.clone(),
                sampling_interval_ms: 50.0,
            },
            reg.clone(),
            tx,
        )
        .expect("adapter");
        (adapter, rx)
    };
    let down_reason = |e: &[IngestEvent]| {
        e.iter().rev().find_map(|x| match x {
            IngestEvent::Link {
                origin: Origin::OpcUa,
                state: LinkState::Disconnected(why),
            } => Some(why.clone()),
            _ => None,
        })
    };

    // Unknown server certificate: refused, and the refusal says what to do.
    let (adapter, rx) = adapter_with("Basic256Sha256", "s3cret-Pa55", 10_000);
    let ev = collect(&rx, Duration::from_secs(30), |e| {
        down_reason(e).is_some_and(|w| w.contains("not trusted"))
    });
    let why = down_reason(&ev).unwrap_or_default();
    assert!(
        why.contains("not trusted") && why.contains("mezzanine opcua trust --thumbprint"),
        "{why}"
    );
    assert!(
        !connected(&ev, Origin::OpcUa),
        "connected to an unknown server"
    );
    adapter.stop();
    let rejected = mezzanine::ingest::opcua::rejected_certs(&client_pki);
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(why.contains(&rejected[0].thumbprint), "{why}");

    // A person trusts it (the thumbprint's first 8 digits are enough).
    let moved = mezzanine::tools::opcua_trust::trust(&client_pki, &rejected[0].thumbprint[..8])
        .expect("trusted");
    assert_eq!(moved.len(), 1);
    let bad = mezzanine::tools::opcua_trust::trust(&client_pki, "deadbeef");
    assert!(bad.is_err(), "nothing left to trust");

    let node = NodeId::new(2, "Line1.Mill01.Spindle.Speed");
    for (k, policy) in ["Basic256Sha256", "Aes256Sha256RsaPss"].iter().enumerate() {
        let (adapter, rx) = adapter_with(policy, "s3cret-Pa55", 10_000);
        let ev = collect(&rx, Duration::from_secs(30), |e| {
            connected(e, Origin::OpcUa)
        });
        assert!(
            connected(&ev, Origin::OpcUa),
            "{policy}: {:?}",
            down_reason(&ev)
        );
        let want = 7000.0 + k as f64;
        let got = collect(&rx, Duration::from_secs(20), |e| {
            server.set_values(vec![(node.clone(), Variant::Double(want), now_us())]);
            e.iter().any(
                |x| matches!(x, IngestEvent::Sample(s, _) if s.value == SampleValue::Number(want)),
            )
        });
        assert!(
            got.iter().any(
                |x| matches!(x, IngestEvent::Sample(s, _) if s.value == SampleValue::Number(want))
            ),
            "{policy}: no value over the encrypted session"
        );
        adapter.stop();
    }

    // A wrong password is refused.
    let (adapter, rx) = adapter_with("Basic256Sha256", "guess", 10_000);
    let ev = collect(&rx, Duration::from_secs(20), |e| down_reason(e).is_some());
    assert!(
        !connected(&ev, Origin::OpcUa),
        "connected with a wrong password"
    );
    println!("wrong password: {}", down_reason(&ev).unwrap_or_default());
    adapter.stop();
    server.stop();
}

/// mosquitto with a password file and an ACL that lets the twin's user only
/// read: the running app works (a PLC's samples arrive), its MES and
/// reconciliation included, and a privileged subscriber on `#` sees nothing
/// but what the PLC published — the twin publishes nowhere. A wrong
/// password is refused.
#[test]
fn a_read_only_broker_account_is_all_the_twin_needs() {
    use mezzanine::app::{self, Front, Launch};
    use mezzanine::config::AppConfig;
    use mezzanine::ingest::LinkStatus;
    use mezzanine::twin::{AssetEntities, LiveValues};
    use std::sync::Mutex;

    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    let passwd = d.join("passwd");
    for (user, pass) in [
        ("twin", "twin-pw"),
        ("plc", "plc-pw"),
        ("auditor", "audit-pw"),
    ] {
        let mut c = Command::new("mosquitto_passwd");
        if user == "twin" {
            c.arg("-c");
        }
        let ok = c
            .args(["-b", &passwd.display().to_string(), user, pass])
            .status()
            .expect("mosquitto_passwd")
            .success();
        assert!(ok, "mosquitto_passwd {user}");
    }
    std::fs::write(
        d.join("acl"),
        "user twin\ntopic read acme/#\ntopic read spBv1.0/#\n\n\
         user plc\ntopic readwrite #\n\nuser auditor\ntopic read #\n",
    )
    .expect("acl");
    #[cfg(unix)]
    for f in ["passwd", "acl"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.join(f), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    // The listener of start_mosquitto_with allows anonymous; this one not.
    let port = free_port().expect("port");
    let plain = free_port().expect("port");
    let extra = format!(
        "per_listener_settings true\nlistener {port} 127.0.0.1\nallow_anonymous false\n\
         password_file {0}/passwd\nacl_file {0}/acl\n",
        d.display()
    );
    let _broker = start_mosquitto_with_first(plain, d, &extra);

    // The privileged subscriber logs every message on the broker.
    type Log = Arc<Mutex<Vec<(String, Vec<u8>)>>>;
    let seen: Log = Arc::default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    {
        let mut opts = MqttOptions::new("auditor", "127.0.0.1", port);
        opts.set_credentials("auditor", "audit-pw");
        let (client, mut el) = AsyncClient::new(opts, 100);
        let seen = seen.clone();
        rt.spawn(async move {
            let _ = client.subscribe("#", QoS::AtLeastOnce).await;
            loop {
                match el.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        if let Ok(mut s) = seen.lock() {
                            s.push((p.topic.clone(), p.payload.to_vec()));
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
    }

    let build = |password: &str, id: &str| {
        let mut cfg = AppConfig::load(None).expect("defaults");
        cfg.mqtt.url = Some(format!("mqtt://127.0.0.1:{port}"));
        cfg.mqtt.client_id = Some(id.into());
        cfg.mqtt.username = Some("twin".into());
        cfg.mqtt.password = Some(password.into());
        cfg.opcua.enabled = false;
        cfg.history.path = Some(d.join(format!("{id}.duckdb")));
        cfg.validate().expect("valid");
        app::build(Launch {
            cfg,
            front: Front::Headless,
            replay: None,
            demo_mes_outage: None,
        })
        .expect("app")
    };
    // A wrong password: refused, never connected.
    let mut wrong = build("guess", "twin-wrong");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        wrong.app.update();
        std::thread::sleep(Duration::from_millis(20));
    }
    let l = wrong.app.world().resource::<LinkStatus>().clone();
    assert!(
        matches!(&l.mqtt, LinkState::Disconnected(why) if why.to_lowercase().contains("auth") || why.to_lowercase().contains("refused")),
        "{:?}",
        l.mqtt
    );
    wrong.shutdown();

    let mut a = build("twin-pw", "twin-acl");
    let start = Instant::now();
    while a.app.world().resource::<LinkStatus>().mqtt != LinkState::Connected {
        assert!(start.elapsed() < Duration::from_secs(20), "never connected");
        a.app.update();
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let plc = Pub::new_with_credentials(port, "plc-acl", "plc", "plc-pw");
    let reg = registry();
    let spindle = reg.resolve_topic(SPINDLE_TOPIC).expect("topic");
    let now = now_us();
    let mut published = Vec::new();
    for k in 0..20 {
        let payload = encode_json(&SampleValue::Number(100.0 + k as f64), now + k * 1000, None);
        plc.publish(SPINDLE_TOPIC, payload.clone());
        published.push((SPINDLE_TOPIC.to_string(), payload));
    }
    // The app runs a few seconds: ingest, MES sync, reconciliation.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        a.app.update();
        std::thread::sleep(Duration::from_millis(20));
    }
    let e = a.app.world().resource::<AssetEntities>().0[&spindle.asset];
    let v = a
        .app
        .world()
        .get::<LiveValues>(e)
        .and_then(|v| v.0.get(spindle.property as usize).cloned().flatten())
        .map(|v| v.value);
    assert_eq!(
        v,
        Some(SampleValue::Number(119.0)),
        "the PLC's samples arrive"
    );
    a.shutdown();
    let seen = seen.lock().expect("log").clone();
    let foreign: Vec<&(String, Vec<u8>)> = seen.iter().filter(|m| !published.contains(m)).collect();
    assert!(
        foreign.is_empty(),
        "published by someone other than the PLC: {:?}",
        foreign.iter().map(|(t, _)| t).collect::<Vec<_>>()
    );
    assert_eq!(
        seen.len(),
        published.len(),
        "the auditor saw every PLC message"
    );
    // The ACL would drop a publish before the auditor saw it: the broker's
    // own log says whether the twin tried at all.
    let log = std::fs::read_to_string(d.join("mosquitto.log")).expect("broker log");
    assert!(
        log.contains("Received PUBLISH from plc-acl"),
        "the broker logs publishes"
    );
    let tried: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("PUBLISH from twin-acl") || l.contains("Denied PUBLISH"))
        .collect();
    assert!(tried.is_empty(), "the twin published: {tried:?}");
    drop(rt);
}

/// Ignition/Tahu-style folder names (`Drive/Power`) through a real
/// mosquitto: a registry property names its metric, a BIRTH announces
/// aliases, alias-only DATA lands on the right properties, and what cannot
/// be placed is dead-lettered in words.
#[test]
fn folder_style_sparkplug_metrics_map_through_the_registry() {
    use mezzanine::ingest::sparkplug::{Metric, MetricValue, datatype};
    let dir = tempfile::tempdir().expect("dir");
    // The demo plant's robot, its metrics named the Ignition way.
    let mut spec = PlantSpec::demo().registry();
    let robot = spec
        .assets
        .iter_mut()
        .find(|a| a.id == "L1-ROBOT-01")
        .expect("robot");
    for p in &mut robot.properties {
        p.sparkplug_metric = match p.name.as_str() {
            "power" => Some("Drive/Power".into()),
            "axis1_temp" => Some("Axis 1/Temperature".into()),
            _ => None,
        };
    }
    let text = spec.to_toml();
    assert!(
        text.contains("sparkplug_metric = \"Drive/Power\""),
        "{text}"
    );
    let reg = Arc::new(AssetRegistry::new(
        parse_registry(&text, std::path::Path::new("plant.toml")).expect("registry"),
    ));
    let port = free_port().expect("port");
    let _mosquitto = start_mosquitto(port, dir.path());
    let (tx, rx) = ingest_channel(1024);
    let adapter =
        spawn_mqtt_adapter(settings(port, "twin-folders"), reg.clone(), tx).expect("adapter");
    let ev = collect(&rx, Duration::from_secs(20), |e| connected(e, Origin::Mqtt));
    assert!(connected(&ev, Origin::Mqtt), "{ev:?}");
    std::thread::sleep(Duration::from_millis(300));

    let metric = |name: Option<&str>, alias: u64, v: MetricValue, dt: u32| Metric {
        name: name.map(str::to_string),
        alias: Some(alias),
        datatype: Some(dt),
        value: Some(v),
        ..Default::default()
    };
    let p = Pub::new(port, "ignition-edge");
    p.publish(
        "spBv1.0/acme/DBIRTH/line1/robot01",
        sp_payload(
            0,
            vec![
                metric(
                    Some("Drive/Power"),
                    1,
                    MetricValue::DoubleValue(1.5),
                    datatype::DOUBLE,
                ),
                metric(
                    Some("Axis 1/Temperature"),
                    2,
                    MetricValue::FloatValue(31.0),
                    datatype::FLOAT,
                ),
                metric(
                    Some("Drive/Current"),
                    3,
                    MetricValue::DoubleValue(4.0),
                    datatype::DOUBLE,
                ),
            ],
        ),
    );
    p.publish(
        "spBv1.0/acme/DDATA/line1/robot01",
        sp_payload(
            1,
            vec![
                metric(None, 1, MetricValue::DoubleValue(2.25), datatype::DOUBLE),
                metric(None, 2, MetricValue::FloatValue(33.5), datatype::FLOAT),
                metric(None, 9, MetricValue::DoubleValue(0.0), datatype::DOUBLE),
                Metric {
                    name: Some("Drive/Power".into()),
                    datatype: Some(16),
                    ..Default::default()
                },
            ],
        ),
    );
    let ev = collect(&rx, Duration::from_secs(20), |e| non_link(e) >= 7);
    let robot = reg.by_id("L1-ROBOT-01").expect("robot");
    let power = reg.property_by_name(robot, "power");
    let temp = reg.property_by_name(robot, "axis1_temp");
    let got: Vec<(Option<mezzanine::registry::PropertyRef>, SampleValue)> = samples_of(&ev)
        .iter()
        .map(|s| (Some(s.property), s.value.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (power, SampleValue::Number(1.5)),
            (temp, SampleValue::Number(31.0)),
            (power, SampleValue::Number(2.25)),
            (temp, SampleValue::Number(33.5)),
        ]
    );
    let dead: Vec<&str> = dead_letters_of(&ev)
        .into_iter()
        .map(|d| d.reason.as_str())
        .collect();
    assert_eq!(
        dead,
        vec![
            "metric `Drive/Current` is not a property of this asset (name it with \
             `sparkplug_metric` in the registry)",
            "metric with alias 9: alias 9 was not announced in a BIRTH message from \
             acme/line1/robot01 since the twin started",
            "metric `Drive/Power`: its datatype DataSet (16) is not one the twin reads \
             (numbers, booleans and strings)",
        ]
    );
    adapter.stop();
}

/// UNS JSON in the conventions real publishers use, through a real
/// mosquitto, each topic root with its `[[mqtt.payload]]` rule: the source
/// time is read where each convention keeps it; a payload whose time field
/// the layout does not read is stamped at arrival, flagged and counted by
/// the twin; a zone-less ISO time is a dead letter that says so.
#[test]
fn uns_payload_conventions_are_mapped_per_topic_root() {
    use mezzanine::config::AppConfig;
    use mezzanine::ingest::payload::PayloadLayouts;
    let cfg = AppConfig::from_toml(
        r#"
[[mqtt.payload]]
topics = "acme/lyon/machining/line1/mill01/#"
preset = "umh"

[[mqtt.payload]]
topics = "acme/lyon/machining/line1/mill02/+"
preset = "iso"

[[mqtt.payload]]
topics = "acme/lyon/machining/line2/#"
value = "data.value"
time = "data.t"
time_format = "s"
quality = "data.q"
"#,
        std::path::Path::new("mezzanine.toml"),
    )
    .expect("config");
    cfg.validate().expect("valid");
    let reg = registry();
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port().expect("port");
    let _mosquitto = start_mosquitto(port, dir.path());
    let mut s = settings(port, "twin-uns-dialects");
    s.payloads = PayloadLayouts::from_rules(&cfg.mqtt.payloads);
    let (adapter, mut app) = twin_on_broker(s, &reg);

    let p = Pub::new(port, "paho-style-publisher");
    let t_ms: i64 = 1_795_500_000_123;
    let sent = [
        // UMH: timestamp_ms, and the tag form where the one other key is the value.
        (
            "acme/lyon/machining/line1/mill01/spindle_speed",
            format!(r#"{{"timestamp_ms": {t_ms}, "value": 8000}}"#),
        ),
        (
            "acme/lyon/machining/line1/mill01/spindle_load",
            format!(r#"{{"timestamp_ms": {t_ms}, "spindle_load": 61.5}}"#),
        ),
        // ISO 8601 text with its offset; then one without (refused).
        (
            "acme/lyon/machining/line1/mill02/spindle_speed",
            r#"{"value": 7000, "timestamp": "2026-11-24T07:00:00.123+01:00"}"#.to_string(),
        ),
        (
            "acme/lyon/machining/line1/mill02/spindle_load",
            r#"{"value": 5, "timestamp": "2026-11-24T07:00:00"}"#.to_string(),
        ),
        // Nested, seconds with a fraction.
        (
            "acme/lyon/machining/line2/lathe01/spindle_speed",
            r#"{"data": {"value": 3000, "t": 1795500000.123, "q": "uncertain"}}"#.to_string(),
        ),
        // The default layout meets a `timestamp` it does not read.
        (
            "acme/lyon/machining/line1/mill03/spindle_speed",
            format!(r#"{{"value": 6000, "timestamp": {t_ms}}}"#),
        ),
    ];
    for (topic, payload) in &sent {
        p.publish(topic, payload.clone().into_bytes());
    }
    let start = Instant::now();
    loop {
        app.update();
        let w = app.world();
        let applied = w.resource::<mezzanine::twin::TwinCounters>().applied;
        let dead = w.resource::<mezzanine::ingest::DeadLetters>().total;
        if applied + dead >= sent.len() as u64 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{applied} applied, {dead} dead letters"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let world = app.world();
    let dead: Vec<_> = world
        .resource::<mezzanine::ingest::DeadLetters>()
        .recent
        .iter()
        .cloned()
        .collect();
    let counters = world.resource::<mezzanine::twin::TwinCounters>();
    assert_eq!(counters.applied, 5, "{counters:?}");
    assert_eq!(counters.arrival_stamped, 1, "{counters:?}");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        dead[0].source,
        "acme/lyon/machining/line1/mill02/spindle_load"
    );
    assert!(
        dead[0]
            .reason
            .contains("`timestamp` is not a valid RFC 3339 time with a zone offset"),
        "{}",
        dead[0].reason
    );
    // Each value at the source time its convention gave.
    let at = |asset: &str, prop: &str| {
        let a = reg.by_id(asset).expect("asset");
        let r = reg.property_by_name(a, prop).expect("property");
        let e = world.resource::<mezzanine::twin::AssetEntities>().0[&a];
        world
            .get::<mezzanine::twin::LiveValues>(e)
            .and_then(|v| v.0.get(r.property as usize).cloned().flatten())
            .map(|v| (v.value, v.source_ts_us))
            .expect("a live value")
    };
    let us = t_ms * 1000;
    assert_eq!(
        at("L1-MILL-01", "spindle_speed"),
        (SampleValue::Number(8000.0), us)
    );
    assert_eq!(
        at("L1-MILL-01", "spindle_load"),
        (SampleValue::Number(61.5), us)
    );
    assert_eq!(
        at("L1-MILL-02", "spindle_speed"),
        (SampleValue::Number(7000.0), us)
    );
    assert_eq!(
        at("L2-LATHE-01", "spindle_speed"),
        (SampleValue::Number(3000.0), us)
    );
    let (v, stamped) = at("L1-MILL-03", "spindle_speed");
    assert_eq!(v, SampleValue::Number(6000.0));
    assert!(stamped > us + 1_000_000, "stamped at arrival, not at {us}");
    drop(app);
    adapter.stop();
}

/// Node ids by namespace URI against a real async-opcua server: the URI is
/// looked up in the server's NamespaceArray, values arrive on the right
/// property, and a URI the server does not have is refused by name, with
/// the namespaces it does have.
#[test]
fn opcua_node_ids_by_namespace_uri_resolve_through_the_server() {
    use mezzanine::demo::opcua_server::DEMO_NAMESPACE_URI;
    let served = registry();
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port().expect("port");
    let server = start_opcua_server(&served, port, dir.path().join("server")).expect("server");
    // The twin's registry names the same nodes by URI, and one elsewhere.
    let mut spec = PlantSpec::demo().registry();
    let mill = spec
        .assets
        .iter_mut()
        .find(|a| a.id == "L1-MILL-01")
        .expect("mill");
    for p in &mut mill.properties {
        match p.name.as_str() {
            "spindle_speed" => {
                p.opcua = Some(format!(
                    "nsu={DEMO_NAMESPACE_URI};s=Line1.Mill01.Spindle.Speed"
                ))
            }
            "spindle_load" => p.opcua = Some("nsu=urn:other-vendor:plc;s=Load".into()),
            _ => {}
        }
    }
    let reg = Arc::new(AssetRegistry::new(
        parse_registry(&spec.to_toml(), std::path::Path::new("plant.toml")).expect("registry"),
    ));
    let (adapter, rx) = opcua_adapter(server.endpoint(), &reg, dir.path());
    let speed = NodeId::new(2, "Line1.Mill01.Spindle.Speed");
    let mut ev = Vec::new();
    let start = Instant::now();
    while !ev
        .iter()
        .any(|e| matches!(e, IngestEvent::Sample(s, _) if s.value == SampleValue::Number(8123.0)))
    {
        assert!(start.elapsed() < Duration::from_secs(30), "{ev:?}");
        server.set_values(vec![(speed.clone(), Variant::Double(8123.0), now_us())]);
        ev.extend(collect(&rx, Duration::from_millis(300), |_| false));
    }
    let mill = reg.by_id("L1-MILL-01").expect("mill");
    let s = samples_of(&ev)
        .into_iter()
        .find(|s| s.value == SampleValue::Number(8123.0))
        .expect("sample");
    assert_eq!(
        Some(s.property),
        reg.property_by_name(mill, "spindle_speed")
    );
    let refused: Vec<_> = dead_letters_of(&ev)
        .into_iter()
        .filter(|d| d.source == "nsu=urn:other-vendor:plc;s=Load")
        .collect();
    assert_eq!(refused.len(), 1, "{ev:?}");
    assert!(
        refused[0]
            .reason
            .starts_with("namespace `urn:other-vendor:plc` is not on this server (its namespaces: 0 = http://opcfoundation.org/UA/"),
        "{}",
        refused[0].reason
    );
    assert!(
        refused[0]
            .reason
            .contains(&format!("2 = {DEMO_NAMESPACE_URI}")),
        "{}",
        refused[0].reason
    );
    adapter.stop();
    server.stop();
}

/// The twin as a Sparkplug host application, through a real mosquitto
/// watched by an independent subscriber: alias-only data after a restart
/// (no birth seen) makes it ask the edge node to rebirth (an NCMD, at most
/// once per interval); a skipped sequence number does too; after the
/// births, alias-only data lands; a DDEATH makes the asset stale at once
/// with the reason, and its next value makes it live again; the STATE of
/// the host is published, retained.
#[test]
fn as_a_sparkplug_host_the_twin_asks_for_rebirths_and_honours_deaths() {
    use mezzanine::ingest::mqtt::SparkplugHost;
    use mezzanine::ingest::sparkplug::{MetricValue, Payload};
    use prost::Message;
    use std::sync::Mutex;
    let reg = registry();
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port().expect("port");
    let _mosquitto = start_mosquitto(port, dir.path());
    // The auditor: every message on the Sparkplug tree.
    type Log = Arc<Mutex<Vec<(String, Vec<u8>, bool)>>>;
    let seen: Log = Arc::default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    {
        let (client, mut el) =
            AsyncClient::new(MqttOptions::new("auditor", "127.0.0.1", port), 100);
        let seen = seen.clone();
        rt.spawn(async move {
            let _ = client.subscribe("spBv1.0/#", QoS::AtLeastOnce).await;
            loop {
                match el.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        if let Ok(mut s) = seen.lock() {
                            s.push((p.topic.clone(), p.payload.to_vec(), p.retain));
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut s = settings(port, "twin-host");
    s.sparkplug = SparkplugHost {
        request_rebirth: true,
        rebirth_min_interval: Duration::from_millis(1_500),
        host_id: Some("mezzanine-test".into()),
        alias_file: None,
    };
    let (adapter, mut app) = twin_on_broker(s, &reg);
    let step = |app: &mut bevy::app::App, ms: u64| {
        let end = Instant::now() + Duration::from_millis(ms);
        while Instant::now() < end {
            app.update();
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let ncmds = |seen: &Log| -> Vec<Payload> {
        seen.lock()
            .expect("log")
            .iter()
            .filter(|(t, _, _)| t == "spBv1.0/acme/NCMD/line1")
            .map(|(_, p, _)| Payload::decode(&p[..]).expect("an NCMD payload"))
            .collect()
    };
    let power = |alias: u64, name: Option<&str>, v: f64| sp_double(name, Some(alias), v);
    let edge = Pub::new(port, "edge-line1");
    // The edge node keeps sending alias-only data it announced before the
    // twin started: two messages, one request.
    edge.publish(
        "spBv1.0/acme/DDATA/line1/robot01",
        sp_payload(7, vec![power(1, None, 1.0)]),
    );
    edge.publish(
        "spBv1.0/acme/DDATA/line1/robot01",
        sp_payload(8, vec![power(1, None, 2.0)]),
    );
    step(&mut app, 800);
    let asked = ncmds(&seen);
    assert_eq!(asked.len(), 1, "one request within the interval");
    assert_eq!(
        asked[0].metrics[0].name.as_deref(),
        Some("Node Control/Rebirth")
    );
    assert_eq!(
        asked[0].metrics[0].value,
        Some(MetricValue::BooleanValue(true))
    );
    // The node answers with its births; alias-only data now lands.
    edge.publish("spBv1.0/acme/NBIRTH/line1", sp_payload(0, vec![]));
    edge.publish(
        "spBv1.0/acme/DBIRTH/line1/robot01",
        sp_payload(1, vec![power(1, Some("power"), 3.0)]),
    );
    edge.publish(
        "spBv1.0/acme/DDATA/line1/robot01",
        sp_payload(2, vec![power(1, None, 4.5)]),
    );
    step(&mut app, 800);
    let robot = reg.by_id("L1-ROBOT-01").expect("robot");
    let power_ref = reg.property_by_name(robot, "power").expect("power");
    let entity = app.world().resource::<mezzanine::twin::AssetEntities>().0[&robot];
    let live = |app: &bevy::app::App| {
        app.world()
            .get::<mezzanine::twin::LiveValues>(entity)
            .and_then(|v| v.0.get(power_ref.property as usize).cloned().flatten())
            .map(|v| v.value)
    };
    assert_eq!(live(&app), Some(SampleValue::Number(4.5)));
    // Sequence 3 and 4 lost: past the interval, a second request.
    step(&mut app, 1_000);
    edge.publish(
        "spBv1.0/acme/DDATA/line1/robot01",
        sp_payload(5, vec![power(1, None, 5.0)]),
    );
    step(&mut app, 800);
    assert_eq!(ncmds(&seen).len(), 2, "a sequence gap asks again");

    // A device death: stale at once, with the reason.
    edge.publish("spBv1.0/acme/DDEATH/line1/robot01", sp_payload(6, vec![]));
    step(&mut app, 600);
    let fresh = app
        .world()
        .get::<mezzanine::twin::Freshness>(entity)
        .expect("freshness")
        .clone();
    assert!(fresh.stale, "{fresh:?}");
    assert_eq!(
        fresh.offline.map(|o| o.0).as_deref(),
        Some("DDEATH from Sparkplug device acme/line1/robot01")
    );
    // Born again and talking: live.
    edge.publish(
        "spBv1.0/acme/DBIRTH/line1/robot01",
        sp_payload(7, vec![power(1, Some("power"), 6.0)]),
    );
    step(&mut app, 800);
    let fresh = app
        .world()
        .get::<mezzanine::twin::Freshness>(entity)
        .expect("freshness")
        .clone();
    assert!(fresh.offline.is_none() && !fresh.stale, "{fresh:?}");
    assert_eq!(live(&app), Some(SampleValue::Number(6.0)));

    // The host's STATE, retained, online.
    let state: Vec<(String, Vec<u8>, bool)> = seen
        .lock()
        .expect("log")
        .iter()
        .filter(|(t, _, _)| t == "spBv1.0/STATE/mezzanine-test")
        .cloned()
        .collect();
    assert_eq!(state.len(), 1, "{state:?}");
    let v: serde_json::Value = serde_json::from_slice(&state[0].1).expect("JSON");
    assert_eq!(v["online"], serde_json::Value::Bool(true));
    // Nothing else from the twin: only NCMD and STATE.
    let from_twin: Vec<String> = seen
        .lock()
        .expect("log")
        .iter()
        .map(|(t, _, _)| t.clone())
        .filter(|t| !t.contains("/DDATA/") && !t.contains("BIRTH") && !t.contains("DEATH"))
        .collect();
    assert!(
        from_twin
            .iter()
            .all(|t| t == "spBv1.0/acme/NCMD/line1" || t == "spBv1.0/STATE/mezzanine-test"),
        "{from_twin:?}"
    );
    drop(app);
    adapter.stop();
}

/// Through a real mosquitto: a Sparkplug metric flagged `is_historical`
/// (store-and-forward after a network outage) reaches the recorder's path
/// flagged, and never moves the live view, which keeps the present value.
#[test]
fn historical_sparkplug_metrics_do_not_move_the_live_view() {
    use mezzanine::ingest::sparkplug::{Metric, MetricValue, datatype};
    let reg = registry();
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port().expect("port");
    let _mosquitto = start_mosquitto(port, dir.path());
    let (adapter, mut app) = twin_on_broker(settings(port, "twin-historical"), &reg);
    let now_ms = now_us() as u64 / 1000;
    let metric = |v: f64, ts: u64, historical: bool| Metric {
        name: Some("power".into()),
        timestamp: Some(ts),
        datatype: Some(datatype::DOUBLE),
        is_historical: historical.then_some(true),
        value: Some(MetricValue::DoubleValue(v)),
        ..Default::default()
    };
    let p = Pub::new(port, "edge-buffered");
    // The present value, then the buffer flushed after an outage.
    p.publish(
        "spBv1.0/acme/DDATA/line1/robot01",
        sp_payload(0, vec![metric(9.0, now_ms, false)]),
    );
    p.publish(
        "spBv1.0/acme/DDATA/line1/robot01",
        sp_payload(
            1,
            vec![
                metric(1.0, now_ms - 60_000, true),
                metric(2.0, now_ms - 30_000, true),
            ],
        ),
    );
    let start = Instant::now();
    loop {
        app.update();
        let c = app.world().resource::<mezzanine::twin::TwinCounters>();
        if c.applied + c.historical >= 3 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{c:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let c = app
        .world()
        .resource::<mezzanine::twin::TwinCounters>()
        .clone();
    assert_eq!((c.applied, c.historical), (1, 2), "{c:?}");
    let robot = reg.by_id("L1-ROBOT-01").expect("robot");
    let power = reg.property_by_name(robot, "power").expect("power");
    let entity = app.world().resource::<mezzanine::twin::AssetEntities>().0[&robot];
    let live = app
        .world()
        .get::<mezzanine::twin::LiveValues>(entity)
        .and_then(|v| v.0.get(power.property as usize).cloned().flatten())
        .expect("live value");
    assert_eq!(live.value, SampleValue::Number(9.0));
    assert!(!live.historical);
    drop(app);
    adapter.stop();
}

/// From a real async-opcua server: an Int64 beyond 2^53 arrives exact, a
/// Boolean as a boolean (the recorder then keeps both types).
#[test]
fn opcua_int64_and_boolean_values_keep_their_type() {
    let reg = registry();
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port().expect("port");
    let server = start_opcua_server(&reg, port, dir.path().join("server")).expect("server");
    let (adapter, rx) = opcua_adapter(server.endpoint(), &reg, dir.path());
    let big: i64 = 9_007_199_254_740_993;
    let parts = NodeId::new(2, "Line1.Mill01.Counters.Parts");
    let load = NodeId::new(2, "Line1.Mill01.Spindle.Load");
    let mut ev = Vec::new();
    let start = Instant::now();
    let want = |ev: &[IngestEvent]| {
        let s = samples_of(ev);
        s.iter().any(|s| s.value == SampleValue::Integer(big))
            && s.iter().any(|s| s.value == SampleValue::Bool(true))
    };
    while !want(&ev) {
        assert!(start.elapsed() < Duration::from_secs(30), "{ev:?}");
        server.set_values(vec![
            (parts.clone(), Variant::Int64(big), now_us()),
            (load.clone(), Variant::Boolean(true), now_us()),
        ]);
        ev.extend(collect(&rx, Duration::from_millis(300), |_| false));
    }
    adapter.stop();
    server.stop();
}

/// The aliases of the last births are kept beside the history: after a
/// restart of the twin, alias-only data from an edge node that did not
/// publish its births again is read at once (through a real mosquitto).
#[test]
fn sparkplug_aliases_survive_a_restart_of_the_twin() {
    use mezzanine::ingest::mqtt::SparkplugHost;
    let reg = registry();
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port().expect("port");
    let _mosquitto = start_mosquitto(port, dir.path());
    let aliases = dir.path().join("history.sparkplug-aliases.json");
    let twin = |id: &str| {
        let (tx, rx) = ingest_channel(1024);
        let mut s = settings(port, id);
        s.sparkplug = SparkplugHost {
            alias_file: Some(aliases.clone()),
            ..SparkplugHost::default()
        };
        let adapter = spawn_mqtt_adapter(s, reg.clone(), tx).expect("adapter");
        let ev = collect(&rx, Duration::from_secs(20), |e| connected(e, Origin::Mqtt));
        assert!(connected(&ev, Origin::Mqtt), "{ev:?}");
        std::thread::sleep(Duration::from_millis(300));
        (adapter, rx)
    };
    let power = |name: Option<&str>, v: f64| sp_double(name, Some(4), v);
    let payload = |seq: u64, m| sp_payload(seq, vec![m]);
    let edge = Pub::new(port, "edge-keeps-going");
    let (first, rx) = twin("twin-run-1");
    edge.publish(
        "spBv1.0/acme/DBIRTH/line1/robot01",
        payload(1, power(Some("power"), 1.0)),
    );
    let ev = collect(&rx, Duration::from_secs(20), |e| non_link(e) >= 1);
    assert_eq!(samples_of(&ev).len(), 1, "{ev:?}");
    first.stop();
    let kept = std::fs::read_to_string(&aliases).expect("aliases kept");
    assert!(
        kept.contains("acme/line1/robot01") && kept.contains("power"),
        "{kept}"
    );
    // A new run; the edge node sends data by alias only.
    let (second, rx) = twin("twin-run-2");
    edge.publish(
        "spBv1.0/acme/DDATA/line1/robot01",
        payload(2, power(None, 2.5)),
    );
    let ev = collect(&rx, Duration::from_secs(20), |e| non_link(e) >= 1);
    assert!(dead_letters_of(&ev).is_empty(), "{ev:?}");
    let robot = reg.by_id("L1-ROBOT-01").expect("robot");
    let got: Vec<_> = samples_of(&ev)
        .iter()
        .map(|s| (Some(s.property), s.value.clone()))
        .collect();
    assert_eq!(
        got,
        vec![(
            reg.property_by_name(robot, "power"),
            SampleValue::Number(2.5)
        )]
    );
    second.stop();
}
