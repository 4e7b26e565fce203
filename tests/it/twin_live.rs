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
        },
    )
    .expect("embedded plant");
    let (tx, rx) = ingest_channel(65_536);
    let mqtt = spawn_mqtt_adapter(
        MqttSettings {
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
