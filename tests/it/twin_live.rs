//! The embedded default plant end to end, headless: broker, OPC UA server
//! and PLC simulator feed both adapters, and the twin's machines come alive.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bevy::prelude::*;

use mezzanine::bench::headless_twin;
use mezzanine::demo::plant::PlantSpec;
use mezzanine::demo::{DemoSettings, start_embedded_plant};
use mezzanine::ingest::mqtt::{MqttSettings, spawn_mqtt_adapter};
use mezzanine::ingest::opcua::{OpcUaSettings, spawn_opcua_adapter};
use mezzanine::ingest::{
    Hop, HopStamps, IngestEvent, IngestSender, LatencyStats, LinkState, LinkStatus, Origin,
    Quality, Sample, SampleValue, ingest_channel,
};
use mezzanine::registry::AssetRegistry;
use mezzanine::twin::{AssetEntities, AssetState, LiveValues, MachineState, TwinCounters};

fn sample(
    tx: &IngestSender,
    reg: &AssetRegistry,
    topic: &str,
    value: SampleValue,
    source_us: i64,
    origin: Origin,
) {
    let property = reg.resolve_topic(topic).expect("topic in registry");
    tx.send(IngestEvent::Sample(
        Sample {
            property,
            value,
            reason: Some("tool breakage".into()),
            quality: Quality::Good,
            origin,
            hops: HopStamps {
                source_us,
                broker_us: None,
                received_us: source_us + 10,
                decoded_us: source_us + 20,
                arrival_stamped: false,
                historical: false,
                mqtt_pkid: None,
                redelivered: false,
            },
        },
        None,
    ));
}

#[test]
fn twin_applies_in_source_time_order_and_drops_duplicates() {
    let reg = AssetRegistry::new(PlantSpec::demo().registry());
    let (tx, rx) = ingest_channel(64);
    let mut app = headless_twin(&reg, rx);
    let state_topic = "acme/lyon/machining/line1/mill02/state";
    let speed_topic = "acme/lyon/machining/line1/mill02/spindle_speed";
    sample(
        &tx,
        &reg,
        state_topic,
        SampleValue::Text("down".into()),
        2_000,
        Origin::Mqtt,
    );
    sample(
        &tx,
        &reg,
        speed_topic,
        SampleValue::Number(0.0),
        2_000,
        Origin::Mqtt,
    );
    // The same reading again (QoS 1 redelivery) and an older one.
    sample(
        &tx,
        &reg,
        speed_topic,
        SampleValue::Number(0.0),
        2_000,
        Origin::OpcUa,
    );
    sample(
        &tx,
        &reg,
        speed_topic,
        SampleValue::Number(8000.0),
        1_000,
        Origin::Mqtt,
    );
    app.update();
    let mill = reg.by_id("L1-MILL-02").expect("mill");
    let e = app.world().resource::<AssetEntities>().0[&mill];
    let state = app.world().get::<AssetState>(e).expect("state");
    assert_eq!(
        (state.state, state.reason.as_deref(), state.since_ts_us),
        (MachineState::Down, Some("tool breakage"), Some(2_000))
    );
    let speed = reg.resolve_topic(speed_topic).expect("speed").property as usize;
    let values = app.world().get::<LiveValues>(e).expect("values");
    let last = values.0[speed].as_ref().expect("speed value");
    assert_eq!(
        (last.value.clone(), last.source_ts_us),
        (SampleValue::Number(0.0), 2_000)
    );
    let c = app.world().resource::<TwinCounters>();
    assert_eq!((c.applied, c.duplicates, c.out_of_order), (2, 1, 1));
    // A different reading with the same stamp (a coarse PLC clock) is news.
    sample(
        &tx,
        &reg,
        speed_topic,
        SampleValue::Number(5.0),
        2_000,
        Origin::Mqtt,
    );
    app.update();
    let values = app.world().get::<LiveValues>(e).expect("values");
    assert_eq!(
        values.0[speed].as_ref().map(|v| v.value.clone()),
        Some(SampleValue::Number(5.0))
    );
    let c = app.world().resource::<TwinCounters>();
    assert_eq!((c.applied, c.duplicates, c.out_of_order), (3, 1, 1));
    assert!(
        app.world()
            .resource::<LatencyStats>()
            .summary(Origin::Mqtt, Hop::Decode)
            .is_some()
    );
}

/// Properties updated at least every 5 s that have no value yet.
fn missing_fast(app: &mut App, reg: &AssetRegistry) -> Vec<String> {
    let world = app.world_mut();
    let mut q = world.query::<(&mezzanine::twin::BoundAsset, &LiveValues)>();
    let mut out = Vec::new();
    for (b, v) in q.iter(world) {
        let Some(a) = reg.get(b.0) else { continue };
        for (i, p) in a.properties.iter().enumerate() {
            let fast = p.expected_period_ms.is_some_and(|ms| ms <= 5_000);
            if fast && !v.0.get(i).is_some_and(Option::is_some) {
                out.push(format!("{}.{}", a.id, p.name));
            }
        }
    }
    out
}

#[test]
fn embedded_plant_brings_every_machine_to_life_through_both_adapters() {
    let reg = AssetRegistry::new(PlantSpec::demo().registry());
    let dir = tempfile::tempdir().expect("dir");
    let plant = start_embedded_plant(
        Arc::new(reg.clone()),
        &DemoSettings {
            seed: 5,
            time_scale: 30.0,
            tick_ms: 100,
            pki_dir: dir.path().join("pki"),
            inject: Vec::new(),
        },
    )
    .expect("embedded plant");
    let (tx, rx) = ingest_channel(65_536);
    let mqtt = spawn_mqtt_adapter(
        MqttSettings {
            payloads: Default::default(),
            sparkplug: Default::default(),
            mes: None,
            tls: None,
            host: "127.0.0.1".into(),
            port: plant.broker.port,
            client_id: "twin-e2e".into(),
            username: None,
            password: None,
            topics: vec!["acme/lyon/#".into(), "spBv1.0/acme/#".into()],
        },
        Arc::new(reg.clone()),
        tx.clone(),
    )
    .expect("mqtt adapter");
    let opcua = spawn_opcua_adapter(
        OpcUaSettings {
            endpoint: plant.opcua.endpoint(),
            security_policy: "None".into(),
            security_mode: "None".into(),
            username: None,
            password: None,
            pki_dir: dir.path().join("pki/client"),
            sampling_interval_ms: 100.0,
        },
        Arc::new(reg.clone()),
        tx,
    )
    .expect("opcua adapter");
    let mut app = headless_twin(&reg, rx);
    let start = Instant::now();
    let alive = |app: &mut App| {
        let world = app.world_mut();
        let mut q = world.query::<&AssetState>();
        q.iter(world)
            .filter(|s| s.state != MachineState::Unknown)
            .count()
    };
    while start.elapsed() < Duration::from_secs(60) {
        app.update();
        let links = app.world().resource::<LinkStatus>().clone();
        let both = links.mqtt == LinkState::Connected && links.opcua == LinkState::Connected;
        let lat = app.world().resource::<LatencyStats>();
        let from_opc = lat.summary(Origin::OpcUa, Hop::DecodeToApply).is_some();
        let from_mqtt = lat.summary(Origin::Mqtt, Hop::DecodeToApply).is_some();
        if both
            && from_opc
            && from_mqtt
            && alive(&mut app) == reg.assets().len()
            && missing_fast(&mut app, &reg).is_empty()
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        alive(&mut app),
        reg.assets().len(),
        "not every machine reported a state"
    );
    let lat = app.world().resource::<LatencyStats>();
    assert!(lat.summary(Origin::Mqtt, Hop::SourceToAdapter).is_some());
    assert!(lat.summary(Origin::OpcUa, Hop::SourceToServer).is_some());
    // Every fast property of every asset has a value (the robots' axis
    // temperature comes through Sparkplug B only).
    assert_eq!(missing_fast(&mut app, &reg), Vec::<String>::new());
    // Acks reached the broker in order (dead letters and MES traffic
    // included): it never dropped the twin's connection.
    assert_eq!(
        app.world().resource::<LinkStatus>().mqtt_reconnects,
        0,
        "the broker dropped the twin"
    );
    let counters = app.world().resource::<TwinCounters>().clone();
    assert!(
        counters.applied as usize >= reg.assets().len(),
        "{counters:?}"
    );
    assert_eq!(counters.unknown_state_codes, 0);
    mqtt.stop();
    opcua.stop();
}

#[test]
fn silent_assets_turn_stale_and_recover_with_the_next_sample() {
    use mezzanine::ingest::now_us;
    use mezzanine::twin::Freshness;
    let reg = AssetRegistry::new(PlantSpec::demo().registry());
    let (tx, rx) = ingest_channel(64);
    let mut app = headless_twin(&reg, rx);
    let mill = reg.by_id("L1-MILL-01").expect("mill");
    let e = app.world().resource::<AssetEntities>().0[&mill];
    // The mill's fastest property is expected every second: silent for 10 s is stale.
    app.world_mut()
        .get_mut::<Freshness>(e)
        .expect("freshness")
        .last_sample_us = Some(now_us() - 10_000_000);
    app.update();
    assert!(app.world().get::<Freshness>(e).expect("freshness").stale);
    // A never-heard-from asset is "no data", not stale.
    let lathe =
        app.world().resource::<AssetEntities>().0[&reg.by_id("L2-LATHE-01").expect("lathe")];
    assert!(
        !app.world()
            .get::<Freshness>(lathe)
            .expect("freshness")
            .stale
    );

    let now = now_us();
    sample(
        &tx,
        &reg,
        "acme/lyon/machining/line1/mill01/power",
        SampleValue::Number(5.0),
        now,
        Origin::Mqtt,
    );
    app.update();
    std::thread::sleep(std::time::Duration::from_millis(600)); // staleness is re-checked twice a second
    app.update();
    assert!(!app.world().get::<Freshness>(e).expect("freshness").stale);
}

/// The recorder path never waits on the frame loop: with the twin frozen
/// for 15 s while 5,000 samples/s flow through a real broker, every sample
/// is recorded, acks keep going out, the broker keeps the twin, and one
/// frame afterwards the view shows the latest value of every property.
#[test]
fn a_frozen_frame_loop_stops_neither_recording_nor_acks() {
    use mezzanine::demo::broker::{free_port, start_embedded_broker};
    use mezzanine::history::{HistoryPlugin, WriterSettings};
    use mezzanine::ingest::decode::encode_json;
    use mezzanine::ingest::{OverflowStats, now_us};
    use std::sync::atomic::Ordering;

    const RATE_PER_S: u64 = 5_000;
    const FREEZE_S: u64 = 15;
    let reg = crate::live::registry();
    let dir = tempfile::tempdir().expect("dir");
    let broker = start_embedded_broker(free_port().expect("port")).expect("broker");
    let (plugin, threads) = HistoryPlugin::start(
        &dir.path().join("h.duckdb"),
        reg.clone(),
        WriterSettings::default(),
    )
    .expect("history");
    drop(plugin);
    // A small twin channel, so the freeze overflows it within a second.
    let (tx, rx) = ingest_channel(2_048);
    let tx = tx.with_recorder(threads.writer.recorder.clone());
    let adapter = spawn_mqtt_adapter(
        MqttSettings {
            payloads: Default::default(),
            sparkplug: Default::default(),
            mes: None,
            tls: None,
            host: "127.0.0.1".into(),
            port: broker.port,
            client_id: "twin-frozen".into(),
            username: None,
            password: None,
            topics: vec!["acme/lyon/#".into()],
        },
        reg.clone(),
        tx,
    )
    .expect("adapter");
    let mut app = headless_twin(&reg, rx);
    let start = Instant::now();
    while app.world().resource::<LinkStatus>().mqtt != LinkState::Connected {
        assert!(start.elapsed() < Duration::from_secs(20), "never connected");
        app.update();
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300)); // subscription settles

    let mut topics = Vec::new();
    for a in ["L1-MILL-01", "L1-MILL-02", "L2-LATHE-01"] {
        for p in ["spindle_speed", "spindle_load", "spindle_temp"] {
            let asset = reg.by_id(a).expect("asset");
            let r = reg.property_by_name(asset, p).expect("property");
            let topic = reg.property(r).and_then(|(_, p)| p.mqtt.clone());
            topics.push((r, topic.expect("topic")));
        }
    }
    // The frame loop is frozen from here: no app.update() until the end.
    let publisher = crate::live::Pub::new(broker.port, "plc-fast");
    let total = RATE_PER_S * FREEZE_S;
    let stats = threads.writer.stats.clone();
    let acks_at = |s: &mezzanine::history::WriterStats| s.acks_sent.load(Ordering::Relaxed);
    let mut acks_seen = Vec::new();
    let t0 = Instant::now();
    let base_us = now_us();
    let mut last = vec![0.0; topics.len()];
    for i in 0..total {
        // Paced: message i leaves at i / RATE seconds.
        let due = Duration::from_micros(i * 1_000_000 / RATE_PER_S);
        if let Some(wait) = due.checked_sub(t0.elapsed()) {
            std::thread::sleep(wait);
        }
        if i % (RATE_PER_S * 3) == 0 {
            acks_seen.push(acks_at(&stats));
        }
        let k = (i as usize) % topics.len();
        let value = i as f64;
        last[k] = value;
        let ts_us = base_us + (i * 1_000_000 / RATE_PER_S) as i64;
        publisher.publish(
            &topics[k].1,
            encode_json(&SampleValue::Number(value), ts_us, None),
        );
    }
    let publish_s = t0.elapsed().as_secs_f64();
    // Every sample reaches the disk while the frame loop is still frozen.
    let start = Instant::now();
    while stats.samples_written.load(Ordering::Relaxed) < total {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "recorded {} of {total}",
            stats.samples_written.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    acks_seen.push(acks_at(&stats));
    eprintln!(
        "frozen {:.1} s: published {total} at {RATE_PER_S}/s, recorded {}, acks during the \
         freeze {acks_seen:?}",
        t0.elapsed().as_secs_f64(),
        stats.samples_written.load(Ordering::Relaxed)
    );
    assert!(
        publish_s >= FREEZE_S as f64 - 0.5,
        "the freeze was {publish_s} s"
    );
    assert_eq!(stats.samples_written.load(Ordering::Relaxed), total);
    assert_eq!(stats.duplicates_dropped.load(Ordering::Relaxed), 0);
    assert!(
        acks_seen.windows(2).all(|w| w[1] > w[0]),
        "acks stalled while the frame loop was frozen: {acks_seen:?}"
    );
    assert_eq!(*acks_seen.last().expect("acks"), total);

    // One frame and the view has caught up with every property.
    app.update();
    let links = app.world().resource::<LinkStatus>().clone();
    assert_eq!(
        (links.mqtt.clone(), links.mqtt_reconnects),
        (LinkState::Connected, 0),
        "the broker dropped the twin during the freeze"
    );
    let coalesced = *app.world().resource::<OverflowStats>();
    assert!(
        coalesced.episodes >= 1 && coalesced.samples_coalesced > total / 2,
        "{coalesced:?}"
    );
    for (k, (r, topic)) in topics.iter().enumerate() {
        let e = app.world().resource::<AssetEntities>().0[&r.asset];
        let v = app.world().get::<LiveValues>(e).expect("values").0[r.property as usize]
            .as_ref()
            .map(|v| v.value.clone());
        assert_eq!(v, Some(SampleValue::Number(last[k])), "{topic}");
    }
    adapter.stop();
    threads.shutdown();
}
