//! The MES event contract and its idempotent, ordered application: every
//! example of every version validates and maps; refusals say why.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use mezzanine::mes::contract::{
    ACCEPTED_MAJORS, Disposition, EVENT_TYPES, EquipmentMode, SCHEMA_FILES, upcast_v1,
};
use mezzanine::mes::sync::{Change, OrderStatus, ReorderBuffer};
use mezzanine::mes::{Contract, ContractError, Envelope, MesEvent, MesSync};

use crate::repo;

fn example(ty: &str, major: u32) -> Value {
    let path = repo(&format!("schemas/mes/examples/{ty}.v{major}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_schema_file_is_compiled_in_and_every_type_has_both_majors() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(repo("schemas/mes"))
        .expect("schemas/mes")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".schema.json"))
        .collect();
    let compiled: BTreeSet<String> = SCHEMA_FILES.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(on_disk, compiled, "schemas/mes and SCHEMA_FILES differ");
    for ty in EVENT_TYPES {
        for m in ACCEPTED_MAJORS {
            assert!(
                compiled.contains(&format!("{ty}.v{m}.schema.json")),
                "{ty} v{m} has no schema"
            );
        }
    }
    Contract::load().expect("every schema compiles");
}

#[test]
fn every_example_of_every_version_validates_and_maps_to_the_same_event() {
    let c = Contract::load().expect("contract");
    for ty in EVENT_TYPES {
        let v1 = c
            .decode_value(&example(ty, 1), "example")
            .unwrap_or_else(|e| panic!("{ty} v1: {e}"));
        let v2 = c
            .decode_value(&example(ty, 2), "example")
            .unwrap_or_else(|e| panic!("{ty} v2: {e}"));
        assert_eq!((v1.schema_major, v2.schema_major), (1, 2), "{ty}");
        assert_eq!(v1.event, v2.event, "{ty}: v1 and v2 examples mean the same");
        assert_eq!(
            upcast_v1(ty, &example(ty, 1)["payload"]).expect("upcast"),
            example(ty, 2)["payload"],
            "{ty}: the upcaster maps the v1 example onto the v2 example"
        );
        assert_eq!(v2.source_time_us, 1_795_511_700_250_000, "{ty}");
    }
    // Spot checks of the mapping itself.
    let d = c
        .decode_value(&example("quality.disposition", 1), "example")
        .expect("v1");
    assert_eq!(
        d.event,
        MesEvent::QualityDisposition {
            work_order: "WO-240117".into(),
            serial: "HSG220-000913".into(),
            asset_id: Some("FIN-CMM-01".into()),
            disposition: Disposition::Rework,
            defect_codes: vec!["D12".into(), "D40".into()],
        }
    );
    let op = c
        .decode_value(&example("operation.started", 1), "example")
        .expect("v1");
    assert!(matches!(
        op.event,
        MesEvent::OperationStarted { operation: 2, .. }
    ));
    let mode = c
        .decode_value(&example("equipment.mode_changed", 1), "example")
        .expect("v1");
    assert!(matches!(
        mode.event,
        MesEvent::EquipmentModeChanged {
            mode: EquipmentMode::Maintenance,
            ..
        }
    ));
}

#[test]
fn refusals_name_the_event_the_version_and_the_field() {
    let c = Contract::load().expect("contract");
    let mut v3 = example("work_order.started", 2);
    v3["schema_version"] = json!("3.0");
    let e = c.decode_value(&v3, "acme/lyon/mes/events").expect_err("v3");
    assert!(matches!(e, ContractError::UnsupportedVersion { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("work_order.started") && text.contains("3.0") && text.contains("1.x, 2.x"),
        "{text}"
    );

    let mut missing = example("operation.completed", 2);
    missing["payload"]
        .as_object_mut()
        .expect("object")
        .remove("scrap_count");
    let e = c.decode_value(&missing, "t").expect_err("missing field");
    assert!(matches!(e, ContractError::Payload { .. }), "{e}");
    assert!(e.to_string().contains("scrap_count"), "{e}");

    let mut bad_mode = example("equipment.mode_changed", 1);
    bad_mode["payload"]["mode"] = json!("party");
    let e = c.decode_value(&bad_mode, "t").expect_err("enum");
    assert!(e.to_string().contains("/mode"), "{e}");

    let mut unknown = example("work_order.started", 2);
    unknown["type"] = json!("work_order.teleported");
    let e = c.decode_value(&unknown, "t").expect_err("type");
    assert!(matches!(e, ContractError::UnknownType { .. }), "{e}");

    let e = c
        .decode(b"{\"id\": 1", "acme/lyon/mes/events")
        .expect_err("json");
    assert!(
        e.to_string().starts_with("acme/lyon/mes/events: not JSON"),
        "{e}"
    );
    let e = c.decode(b"{\"id\": \"x\"}", "t").expect_err("envelope");
    assert!(matches!(e, ContractError::Envelope { .. }), "{e}");
}

fn event(c: &Contract, id: &str, ty: &str, at: &str, payload: Value) -> Envelope {
    c.decode_value(
        &json!({"id": id, "type": ty, "schema_version": "2.0", "source_time": at, "payload": payload}),
        "test",
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_duplicate_changes_nothing_and_a_second_start_is_not_a_second_order() {
    let c = Contract::load().expect("contract");
    let mut sync = MesSync::new(0, 1000);
    let started = event(
        &c,
        "e1",
        "work_order.started",
        "2026-11-24T08:00:00Z",
        json!({"work_order": "WO-1", "asset_id": "L1-MILL-01"}),
    );
    assert!(sync.offer(started.clone()));
    let first = sync.step(true);
    assert_eq!(first.len(), 1);
    assert!(first[0].1.contains(&Change::AssetWorkOrder {
        asset_id: "L1-MILL-01".into(),
        work_order: Some("WO-1".into()),
        ts_us: started.source_time_us,
    }));
    let before = sync.book.orders.clone();
    // The same event again (MES failover re-send): refused by id.
    assert!(!sync.offer(started));
    assert!(sync.step(true).is_empty());
    assert_eq!(sync.duplicates, 1);
    // The same fact under a new id: applied, but changes nothing.
    sync.offer(event(
        &c,
        "e2",
        "work_order.started",
        "2026-11-24T08:00:01Z",
        json!({"work_order": "WO-1", "asset_id": "L1-MILL-01"}),
    ));
    let again = sync.step(true);
    assert!(again[0].1.is_empty(), "{:?}", again[0].1);
    assert_eq!(sync.book.orders.len(), 1);
    assert_eq!(sync.book.orders["WO-1"].status, before["WO-1"].status);
    let active: Vec<_> = sync
        .book
        .assets
        .values()
        .filter(|a| a.work_order.is_some())
        .collect();
    assert_eq!(active.len(), 1, "one active order");
}

#[test]
fn events_are_applied_in_source_time_order_within_the_window() {
    let c = Contract::load().expect("contract");
    let mut sync = MesSync::new(5_000_000, 1000);
    // Completed arrives before started (re-sent out of order).
    sync.offer(event(
        &c,
        "b",
        "work_order.completed",
        "2026-11-24T08:10:00Z",
        json!({"work_order": "WO-2", "good_count": 10, "scrap_count": 1}),
    ));
    sync.offer(event(
        &c,
        "a",
        "work_order.started",
        "2026-11-24T08:00:00Z",
        json!({"work_order": "WO-2", "asset_id": "L2-LATHE-01"}),
    ));
    // The window holds the newest 5 s; the older one is released first.
    let r = sync.step(false);
    assert_eq!(
        r.iter().map(|(e, _)| e.id.as_str()).collect::<Vec<_>>(),
        ["a"]
    );
    let r = sync.step(true);
    assert_eq!(
        r.iter().map(|(e, _)| e.id.as_str()).collect::<Vec<_>>(),
        ["b"]
    );
    assert_eq!(sync.book.orders["WO-2"].status, OrderStatus::Completed);
    assert_eq!(
        sync.book.active_on("L2-LATHE-01"),
        None,
        "completed frees the lathe"
    );

    let mut buf = ReorderBuffer::new(1_000_000);
    for (id, t) in [
        ("x", "2026-11-24T08:00:03Z"),
        ("y", "2026-11-24T08:00:01Z"),
        ("z", "2026-11-24T08:00:02Z"),
    ] {
        buf.push(event(
            &c,
            id,
            "equipment.mode_changed",
            t,
            json!({"asset_id": "L1-MILL-01", "mode": "setup"}),
        ));
    }
    let out: Vec<String> = buf.release().into_iter().map(|e| e.id).collect();
    assert_eq!(
        out,
        ["y", "z"],
        "older than newest − 1 s, in source-time order"
    );
    assert_eq!(buf.flush().len(), 1);
}

#[test]
fn the_seen_ids_survive_a_restart_through_the_history_file() {
    use mezzanine::history::{HistoryWriter, Store, WriterMsg, WriterSettings, query};
    let reg = crate::live::registry();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("h.duckdb");
    let c = Contract::load().expect("contract");
    let e = event(
        &c,
        "evt-77",
        "work_order.started",
        "2026-11-24T08:00:00Z",
        json!({"work_order": "WO-7", "asset_id": "L1-MILL-02"}),
    );
    {
        let store = Store::open(&path, &reg).expect("open");
        let w = HistoryWriter::spawn(store, reg.clone(), WriterSettings::default(), 16)
            .expect("writer");
        w.app.send(WriterMsg::mes_event(&e)).expect("send");
        w.flush().expect("flush");
        w.join();
    }
    let store = Store::open(&path, &reg).expect("reopen");
    let mut sync = MesSync::new(0, 1000);
    sync.seen
        .seed(query::recent_mes_event_ids(&store.conn, 100_000).expect("ids"));
    assert!(
        !sync.offer(e),
        "a re-sent event after a restart is still a duplicate"
    );
    assert_eq!(sync.duplicates, 1);
}

#[test]
fn mes_events_over_mqtt_set_work_orders_once_and_refusals_become_dead_letters() {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use bevy::prelude::*;
    use mezzanine::bench::headless_twin;
    use mezzanine::demo::broker::{free_port, start_embedded_broker};
    use mezzanine::history::{HistoryPlugin, WriterSettings};
    use mezzanine::ingest::mqtt::{MesRoute, MqttSettings, spawn_mqtt_adapter};
    use mezzanine::ingest::{DeadLetters, LinkState, LinkStatus, ingest_channel};
    use mezzanine::mes::{MesContext, MesPlugin, MesState};
    use mezzanine::playback::Shown;
    use mezzanine::twin::AssetEntities;

    let reg = crate::live::registry();
    let broker = start_embedded_broker(free_port().expect("port")).expect("broker");
    let dir = tempfile::tempdir().expect("dir");
    let (plugin, threads) = HistoryPlugin::start(
        &dir.path().join("h.duckdb"),
        reg.clone(),
        WriterSettings::default(),
    )
    .expect("history");
    let (tx, rx) = ingest_channel(1024);
    let tx = tx.with_recorder(threads.writer.recorder.clone());
    let adapter = spawn_mqtt_adapter(
        MqttSettings {
            payloads: Default::default(),
            sparkplug: Default::default(),
            host: "127.0.0.1".into(),
            port: broker.port,
            client_id: "twin-mes".into(),
            username: None,
            password: None,
            topics: vec!["acme/lyon/mes/events/#".into()],
            tls: None,
            mes: Some(MesRoute {
                topic_prefix: "acme/lyon/mes/events/".into(),
                heartbeat_topic: None,
                contract: Arc::new(Contract::load().expect("contract")),
            }),
        },
        reg.clone(),
        tx.clone(),
    )
    .expect("adapter");
    let mut app = headless_twin(&reg, rx);
    app.add_plugins(plugin).add_plugins(MesPlugin {
        reorder_window_us: 0,
        seen: Vec::new(),
        heartbeat_timeout_ms: 600_000,
        domains: Default::default(),
        poll_interval_ms: 10_000,
    });
    let start = Instant::now();
    while app.world().resource::<LinkStatus>().mqtt != LinkState::Connected {
        assert!(start.elapsed() < Duration::from_secs(20), "no MQTT link");
        app.update();
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));

    let publisher = crate::live::Pub::new(broker.port, "mes-sim");
    let started = serde_json::to_vec(&example("work_order.started", 1)).expect("json");
    let topic = "acme/lyon/mes/events/work_order.started";
    publisher.publish(topic, started.clone());
    publisher.publish(topic, started); // MES failover re-send
    let mut v3 = example("work_order.held", 2);
    v3["schema_version"] = json!("3.0");
    publisher.publish(
        "acme/lyon/mes/events/work_order.held",
        serde_json::to_vec(&v3).expect("json"),
    );

    let mill = *app
        .world()
        .resource::<AssetEntities>()
        .0
        .get(&reg.by_id("L1-MILL-01").expect("mill"))
        .expect("entity");
    let start = Instant::now();
    loop {
        app.update();
        let ctx = app.world().resource::<MesContext>().clone();
        let dead = app.world().resource::<DeadLetters>().total;
        let dups = app.world().resource::<MesState>().0.duplicates;
        let shown = app
            .world()
            .get::<Shown>(mill)
            .and_then(|s| s.work_order.clone());
        if ctx.work_orders.get("L1-MILL-01").map(String::as_str) == Some("WO-240117")
            && dead >= 1
            && dups >= 1
            && shown.is_some()
        {
            assert_eq!(
                shown.as_deref(),
                Some("WO-240117"),
                "the inspector shows it"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "work orders {ctx:?}, dead letters {dead}, duplicates {dups}, shown {shown:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let dl = app.world().resource::<DeadLetters>();
    let reason = &dl.recent.back().expect("dead letter").reason;
    assert!(
        reason.contains("3.0 is not supported") && reason.contains("work_order.held"),
        "{reason}"
    );
    assert_eq!(app.world().resource::<MesState>().0.book.orders.len(), 1);

    // Recorded once, with the work-order context.
    threads.writer.flush().expect("flush");
    drop(adapter);
    drop(tx);
    drop(app);
    threads.shutdown();
    let reg2 = reg.clone();
    let store =
        mezzanine::history::Store::open(&dir.path().join("h.duckdb"), &reg2).expect("reopen");
    let (events, wos): (i64, i64) = store
        .conn
        .query_row(
            "SELECT (SELECT count(*) FROM mes_events), (SELECT count(*) FROM work_orders WHERE work_order = 'WO-240117')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("counts");
    assert_eq!((events, wos), (1, 1), "one event stored, one context row");
}

#[test]
fn the_mes_simulator_speaks_the_contract_at_least_once_in_both_versions() {
    use mezzanine::demo::mes::MesSim;
    let reg = crate::live::registry();
    let c = Contract::load().expect("contract");
    let run = || {
        let mut sim = MesSim::new(&reg, 7, 1_795_500_000_000_000, 10.0);
        let mut msgs = Vec::new();
        // Two plant hours at ×10: 12 wall minutes in 1 s steps.
        for s in 0..720i64 {
            msgs.extend(sim.step(1_795_500_000_000_000 + s * 1_000_000, None));
        }
        msgs
    };
    let msgs = run();
    assert_eq!(msgs, run(), "same seed, same events");
    let mut sync = MesSync::new(0, 100_000);
    let (mut v1, mut v2) = (0, 0);
    for m in &msgs {
        let e = c
            .decode(&m.payload, &m.topic)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&m.payload)));
        assert!(
            m.topic.ends_with(&e.event_type),
            "{} vs {}",
            m.topic,
            e.event_type
        );
        if e.schema_major == 1 {
            v1 += 1;
        } else {
            v2 += 1;
        }
        sync.offer(e);
    }
    sync.step(true);
    assert!(v1 > 0 && v2 > 0, "v1 {v1}, v2 {v2}");
    assert!(sync.duplicates > 0, "some events were sent twice");
    let completed = sync
        .book
        .orders
        .values()
        .filter(|o| o.status == OrderStatus::Completed)
        .count();
    assert!(
        completed >= 6,
        "{completed} orders completed in two plant hours"
    );
    assert!(
        sync.book.orders.len() >= completed,
        "{} orders",
        sync.book.orders.len()
    );
}
