//! The MES as a peer, end to end: polling the simulator's REST API, B2MML
//! schedules, an MES outage with context back-filled after recovery, the
//! reconciliation detectors on crafted cases and a normal run, authority
//! file errors, and proof that the twin never writes to the MES nor
//! overwrites the authoritative side.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use mezzanine::demo::mes::{MesSim, MesSimSettings, spawn_mes_simulator};
use mezzanine::ingest::{HopStamps, Origin, Quality, Sample, SampleValue, now_us};
use mezzanine::mes::b2mml;
use mezzanine::mes::poll::{ApiClient, PollSettings, http_get, poll_once};
use mezzanine::mes::{Contract, Envelope, WorkOrderBook};
use mezzanine::reconcile::{
    MesView, PhysicalView, ReconcileError, ReconcileRules, Reconciler, Status,
};
use serde_json::json;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A simulator whose first orders are already running.
fn running_sim(api_port: u16, broker_port: u16) -> mezzanine::demo::mes::MesSimulator {
    let reg = crate::live::registry();
    // Started 60 s ago at ×60: every machine has dispatched its first order.
    let sim = MesSim::new(&reg, 11, now_us() - 60_000_000, 60.0);
    spawn_mes_simulator(
        sim,
        MesSimSettings {
            broker_host: "127.0.0.1".into(),
            broker_port,
            api_port,
            heartbeat_interval_ms: 500,
            floor: None,
        },
    )
    .expect("MES simulator")
}

fn wait_for_api(url: &str, rt: &tokio::runtime::Runtime) {
    let start = Instant::now();
    while rt
        .block_on(http_get(
            &format!("{url}/api/v1/health"),
            &ApiClient::default(),
        ))
        .is_err()
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "API never came up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn polling_the_rest_api_reconciles_the_snapshot_and_only_ever_gets() {
    use mezzanine::demo::broker::{free_port, start_embedded_broker};
    let broker = start_embedded_broker(free_port().expect("port")).expect("broker");
    let mes = running_sim(free_port().expect("port"), broker.port);
    let rt = rt();
    wait_for_api(&mes.api_url, &rt);
    let settings = PollSettings {
        api_url: mes.api_url.clone(),
        interval_ms: 1_000,
        work_orders: true,
        equipment: true,
        schedule: true,
        token: None,
        ca_file: None,
        catch_up_page_events: 500,
    };
    let snap = rt.block_on(poll_once(&settings)).expect("poll");
    let orders = snap.work_orders.as_ref().expect("work orders polled");
    let running: Vec<_> = orders.iter().filter(|o| o.status == "running").collect();
    assert!(running.len() >= 4, "{} running orders", running.len());
    let schedule = snap.schedule.as_ref().expect("schedule polled");
    assert!(
        schedule
            .iter()
            .any(|o| o.status == "released" && o.planned_start_us.is_some()),
        "the schedule holds planned orders"
    );
    assert!(snap.equipment.as_ref().is_some_and(|e| e.len() >= 4));

    // The snapshot reconciled against an empty model: one change per
    // running order, and the book agrees with the MES after it.
    let mut book = WorkOrderBook::default();
    let changes = book.apply_orders_snapshot(orders, snap.as_of_us);
    for o in &running {
        assert_eq!(book.active_on(&o.asset_id), Some(o.work_order.as_str()));
    }
    assert!(changes.len() >= running.len());
    // The same snapshot again changes nothing.
    assert!(book.apply_orders_snapshot(orders, snap.as_of_us).is_empty());
    // An order the MES no longer lists as running leaves its machine.
    let mut later = orders.clone();
    later[0].status = "completed".into();
    if running.iter().any(|o| o.work_order == later[0].work_order) {
        let ch = book.apply_orders_snapshot(&later, snap.as_of_us + 1);
        assert!(ch.iter().any(|c| matches!(
            c,
            mezzanine::mes::Change::AssetWorkOrder {
                work_order: None,
                ..
            }
        )));
    }

    // The catch-up resource answers and validates as events, a page at a
    // time: pages of 4 give back the events one large page gives, in order
    // and once each (the log may grow between the two reads: a prefix).
    use mezzanine::mes::poll::{events_page, events_since};
    let client = ApiClient::default();
    let paged = rt
        .block_on(events_since(&mes.api_url, &client, 0, 4))
        .expect("events");
    let whole = rt
        .block_on(events_page(&mes.api_url, &client, 0, None, 1_000))
        .expect("one page");
    let contract = Contract::load().expect("contract");
    assert!(paged.len() >= 10, "{} events in the log", paged.len());
    assert!(whole.events.len() >= paged.len());
    assert_eq!(paged[..], whole.events[..paged.len()]);
    for e in &paged {
        contract.decode_value(e, "test").expect("a valid event");
    }
    let first = rt
        .block_on(events_page(&mes.api_url, &client, 0, None, 4))
        .expect("page");
    assert_eq!(first.events.len(), 4);
    let cursor = first.next_cursor.expect("a cursor while more follow");
    let second = rt
        .block_on(events_page(&mes.api_url, &client, 0, Some(&cursor), 4))
        .expect("page 2");
    assert_eq!(second.events[..], whole.events[4..8]);
    // A cursor the API never handed out, and a page too large, are refused.
    for bad in [
        events_page(&mes.api_url, &client, 0, Some("x y"), 4),
        events_page(&mes.api_url, &client, 0, None, 1_000_000),
    ] {
        let err = rt.block_on(bad).expect_err("refused");
        assert!(err.to_string().contains("400"), "{err}");
    }

    // Offline: refused, then back.
    mes.set_online(false);
    std::thread::sleep(Duration::from_millis(600));
    let err = rt.block_on(poll_once(&settings)).expect_err("offline");
    assert!(err.to_string().contains("/api/v1/health"), "{err}");
    mes.set_online(true);
    wait_for_api(&mes.api_url, &rt);

    let requests = mes.shared.requests();
    assert!(requests.len() >= 5);
    assert!(
        requests.iter().all(|r| r.starts_with("GET ")),
        "only GET: {requests:?}"
    );

    // A secured API: without the bearer token refused (and said so), with
    // it answered.
    let token = "tk-7f3a9c-unguessable";
    mes.shared
        .required_token
        .set(token.to_string())
        .expect("token set once");
    let err = rt.block_on(poll_once(&settings)).expect_err("no token");
    assert!(err.to_string().contains("401"), "{err}");
    assert!(!err.to_string().contains(token), "{err}");
    let with_token = PollSettings {
        token: Some(mezzanine::config::Secret::new(token)),
        ..settings.clone()
    };
    assert!(
        !format!("{with_token:?}").contains(token),
        "Debug shows the token"
    );
    rt.block_on(poll_once(&with_token))
        .expect("poll with the token");
    mes.stop();
}

#[test]
fn b2mml_schedules_round_trip_and_invalid_documents_are_refused_by_line() {
    let reg = crate::live::registry();
    let mut sim = MesSim::new(&reg, 5, 1_795_500_000_000_000, 10.0);
    sim.step(1_795_500_000_000_000, None);
    let schedule = sim.schedule_b2mml(1_795_500_000_000_000);
    assert!(
        schedule.requests.len() >= 12,
        "{} requests",
        schedule.requests.len()
    );
    let xml = b2mml::write(&schedule);
    let back = b2mml::parse(&xml, std::path::Path::new("sched.xml"), Some(&reg)).expect("parses");
    assert_eq!(back, schedule, "written and read back unchanged");

    let dir = tempfile::tempdir().expect("dir");
    let cases: [(&str, String, &[&str]); 5] = [
        (
            "not-xml.xml",
            "<ProductionSchedule><ID>x</ID>\n<ProductionRequest></ProductionSchedule>".into(),
            &["not-xml.xml", "2:", "not well-formed"],
        ),
        (
            "wrong-root.xml",
            "<?xml version=\"1.0\"?>\n<MaterialLot><ID>L</ID></MaterialLot>".into(),
            &["2:1", "<MaterialLot>", "ProductionSchedule"],
        ),
        (
            "unknown-machine.xml",
            xml.replacen(&schedule.requests[0].routing[0], "L9-MILL-99", 1),
            &["L9-MILL-99", "not an asset in the registry"],
        ),
        (
            "bad-quantity.xml",
            xml.replacen(
                &format!("<QuantityString>{}<", schedule.requests[0].quantity),
                "<QuantityString>-3<",
                1,
            ),
            &["quantity `-3`"],
        ),
        (
            "bad-time.xml",
            xml.replacen("<StartTime>", "<StartTime>tomorrow", 1),
            &["StartTime `tomorrow", "RFC 3339"],
        ),
    ];
    for (name, text, expect) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, &text).expect("write");
        let err = b2mml::parse(&text, &path, Some(&reg)).expect_err(name);
        let msg = err.to_string();
        for e in expect {
            assert!(msg.contains(e), "{name}: `{e}` not in:\n{msg}");
        }
        // Every problem names its line.
        assert!(
            msg.lines().skip(1).all(|l| l
                .trim()
                .split(':')
                .next()
                .is_some_and(|n| n.parse::<u32>().is_ok())),
            "{msg}"
        );
    }
}

fn rules_text(after_s: f64) -> String {
    format!(
        r#"version = 1
[authority]
work_order_state = "mes"
physical_state = "twin"
part_count = "twin"
quality_records = "mes"
[rules.mes_running_machine_stopped]
domain = "physical_state"
after_s = {after_s}
spindle_below_rpm = 50
vibration_below_mm_s = 0.8
[rules.mes_idle_machine_cutting]
domain = "work_order_state"
after_s = {after_s}
spindle_above_rpm = 500
load_above_pct = 10
[rules.part_count_divergence]
domain = "part_count"
tolerance_parts = 2
tolerance_pct = 5
settle_s = 5
[rules.completed_order_without_quality]
domain = "quality_records"
after_s = {after_s}
"#
    )
}

fn rules(after_s: f64) -> ReconcileRules {
    ReconcileRules::parse(&rules_text(after_s), std::path::Path::new("reconcile.toml"))
        .expect("rules")
}

fn phys(asset: &str, rpm: f64, vib: f64, load: f64, parts: f64) -> PhysicalView {
    PhysicalView {
        asset_id: asset.into(),
        spindle_rpm: Some(rpm),
        spindle_load_pct: Some(load),
        vibration_mm_s: Some(vib),
        part_count: Some(parts),
        part_count_ts_us: None,
        state: if rpm > 100.0 { "running" } else { "down" }.into(),
    }
}

fn mes(wo: Option<&str>) -> MesView {
    MesView {
        work_order: wo.map(str::to_string),
        operation: wo.map(|_| 1),
    }
}

fn ev(c: &Contract, id: &str, ty: &str, t_us: i64, payload: serde_json::Value) -> Envelope {
    let at = jiff::Timestamp::from_microsecond(t_us)
        .expect("t")
        .to_string();
    c.decode_value(
        &json!({"id": id, "type": ty, "schema_version": "2.0", "source_time": at, "payload": payload}),
        "test",
    )
    .expect("event")
}

const T0: i64 = 1_795_500_000_000_000;
const S: i64 = 1_000_000;

/// A normal hour: orders start, the machine cuts, parts count up, orders
/// complete with matching counts and a quality record; between orders the
/// machine is briefly idle.
fn normal_run(r: &mut Reconciler, c: &Contract) {
    let mut parts = 500.0;
    let mut t = T0;
    for k in 0..6 {
        let wo = format!("WO-{k}");
        r.on_mes_event(
            &ev(
                c,
                &format!("s{k}"),
                "work_order.started",
                t,
                json!({"work_order": wo, "asset_id": "L1-MILL-01"}),
            ),
            Some(&phys("L1-MILL-01", 9000.0, 2.1, 60.0, parts)),
        );
        for _ in 0..40 {
            t += 10 * S;
            parts += 0.5;
            r.observe(
                t,
                &[(
                    phys("L1-MILL-01", 9000.0, 2.1, 60.0, parts.floor()),
                    mes(Some(&wo)),
                )],
            );
        }
        let made = 20;
        r.on_mes_event(
            &ev(c, &format!("o{k}"), "operation.completed", t,
                json!({"work_order": wo, "operation": 1, "asset_id": "L1-MILL-01", "good_count": made - 1, "scrap_count": 1})),
            None,
        );
        r.on_mes_event(
            &ev(
                c,
                &format!("c{k}"),
                "work_order.completed",
                t,
                json!({"work_order": wo, "good_count": made - 1, "scrap_count": 1}),
            ),
            None,
        );
        r.on_mes_event(
            &ev(c, &format!("q{k}"), "quality.disposition", t + 5 * S,
                json!({"work_order": wo, "serial": format!("S{k}"), "asset_id": "FIN-CMM-01", "disposition": "pass", "defect_codes": []})),
            None,
        );
        // A short changeover: spindle stopped, no order.
        for _ in 0..3 {
            t += 10 * S;
            r.observe(
                t,
                &[(phys("L1-MILL-01", 0.0, 0.1, 0.0, parts.floor()), mes(None))],
            );
        }
    }
}

/// WO-9 started on lathe 1 at counter 100 and completed 600 s later with
/// `good` good parts and 2 scrap.
fn part_count_case(c: &Contract, good: u64) -> Reconciler {
    let mut r = Reconciler::new(rules(60.0), "t");
    r.on_mes_event(
        &ev(
            c,
            "a",
            "work_order.started",
            T0,
            json!({"work_order": "WO-9", "asset_id": "L2-LATHE-01"}),
        ),
        Some(&phys("L2-LATHE-01", 3000.0, 1.0, 40.0, 100.0)),
    );
    r.on_mes_event(
        &ev(
            c,
            "b",
            "operation.completed",
            T0 + 600 * S,
            json!({"work_order": "WO-9", "operation": 1, "asset_id": "L2-LATHE-01",
                   "good_count": good, "scrap_count": 2}),
        ),
        None,
    );
    r
}

#[test]
fn every_detector_stays_silent_on_a_normal_run() {
    let c = Contract::load().expect("contract");
    let mut r = Reconciler::new(rules(60.0), "t");
    normal_run(&mut r, &c);
    assert!(
        r.discrepancies.is_empty(),
        "{:#?}",
        r.discrepancies
            .iter()
            .map(|d| d.summary())
            .collect::<Vec<_>>()
    );
}

#[test]
fn each_detector_fires_on_its_crafted_case_with_both_views() {
    let c = Contract::load().expect("contract");

    // MES says running; spindle and vibration say stopped for > 60 s.
    let mut r = Reconciler::new(rules(60.0), "t");
    for k in 0..10 {
        r.observe(
            T0 + k * 10 * S,
            &[(phys("L1-MILL-02", 0.0, 0.2, 0.0, 10.0), mes(Some("WO-7")))],
        );
    }
    assert_eq!(r.discrepancies.len(), 1, "raised once while it persists");
    let d = &r.discrepancies[0];
    assert_eq!(d.rule, "mes_running_machine_stopped");
    assert_eq!(d.asset_id.as_deref(), Some("L1-MILL-02"));
    assert!(d.mes_view.contains("WO-7 running"), "{}", d.mes_view);
    assert!(
        d.twin_view.contains("stopped") && d.twin_view.contains("0 rpm"),
        "{}",
        d.twin_view
    );
    assert_eq!(d.authority.label(), "twin");
    assert_eq!(d.since_us, T0);
    // 59 s is not enough.
    let mut r = Reconciler::new(rules(60.0), "t");
    for k in 0..=59 {
        r.observe(
            T0 + k * S,
            &[(phys("L1-MILL-02", 0.0, 0.2, 0.0, 10.0), mes(Some("WO-7")))],
        );
    }
    assert!(r.discrepancies.is_empty());

    // MES says idle; the machine cuts for > 60 s.
    let mut r = Reconciler::new(rules(60.0), "t");
    for k in 0..8 {
        r.observe(
            T0 + k * 10 * S,
            &[(phys("L1-MILL-03", 8000.0, 2.0, 55.0, 10.0), mes(None))],
        );
    }
    assert_eq!(r.discrepancies.len(), 1);
    let d = &r.discrepancies[0];
    assert_eq!(d.rule, "mes_idle_machine_cutting");
    assert_eq!(d.mes_view, "no work order running");
    assert!(d.twin_view.contains("8000 rpm"), "{}", d.twin_view);
    assert_eq!(d.authority.label(), "MES");

    // Part counts diverge: the MES reports 30, the counter advanced 20.
    // The counter reached 120 a second before the MES's completion.
    let lathe = || PhysicalView {
        part_count_ts_us: Some(T0 + 599 * S),
        ..phys("L2-LATHE-01", 3000.0, 1.0, 40.0, 120.0)
    };
    let mut r = part_count_case(&c, 28);
    r.observe(T0 + 602 * S, &[(lathe(), mes(None))]);
    assert!(r.discrepancies.is_empty(), "not before the counter settled");
    r.observe(T0 + 606 * S, &[(lathe(), mes(None))]);
    assert_eq!(r.discrepancies.len(), 1);
    let d = &r.discrepancies[0];
    assert_eq!(d.rule, "part_count_divergence");
    assert!(d.mes_view.contains("30 parts"), "{}", d.mes_view);
    assert!(d.twin_view.contains("advanced 20"), "{}", d.twin_view);
    assert_eq!(d.work_order.as_deref(), Some("WO-9"));
    // Within tolerance (±2): silent.
    let mut r = part_count_case(&c, 20);
    r.observe(T0 + 606 * S, &[(lathe(), mes(None))]);
    assert!(r.discrepancies.is_empty());

    // A completed order with no quality record after 60 s.
    let mut r = Reconciler::new(rules(60.0), "t");
    r.on_mes_event(
        &ev(
            &c,
            "c",
            "work_order.completed",
            T0,
            json!({"work_order": "WO-11", "good_count": 10, "scrap_count": 0}),
        ),
        None,
    );
    r.observe(T0 + 59 * S, &[]);
    assert!(r.discrepancies.is_empty());
    r.observe(T0 + 61 * S, &[]);
    assert_eq!(r.discrepancies.len(), 1);
    assert_eq!(r.discrepancies[0].rule, "completed_order_without_quality");
    assert_eq!(r.discrepancies[0].work_order.as_deref(), Some("WO-11"));
}

#[test]
fn the_lifecycle_is_moved_by_a_person_with_a_note() {
    let mut r = Reconciler::new(rules(0.0), "t");
    r.observe(
        T0,
        &[(phys("L1-MILL-02", 0.0, 0.2, 0.0, 10.0), mes(Some("WO-7")))],
    );
    let id = r.discrepancies[0].id.clone();
    assert_eq!(r.discrepancies[0].status(), Status::Open);
    assert_eq!(
        r.acknowledge(&id, " ", T0 + S).expect_err("who"),
        ReconcileError::NameRequired
    );
    r.acknowledge(&id, "j.moreau", T0 + S).expect("ack");
    assert_eq!(r.get(&id).expect("d").status(), Status::Acknowledged);
    assert_eq!(
        r.resolve(&id, "j.moreau", "", T0 + 2 * S)
            .expect_err("note"),
        ReconcileError::NoteRequired
    );
    let d = r
        .resolve(
            &id,
            "j.moreau",
            "operator forgot to close WO-7 at the terminal",
            T0 + 2 * S,
        )
        .expect("resolve");
    assert_eq!(d.status(), Status::Resolved);
    assert_eq!(d.history.len(), 3);
    let detail: serde_json::Value = serde_json::from_str(&d.detail_json()).expect("json");
    assert_eq!(detail["by"], "j.moreau");
    assert_eq!(detail["authority"], "twin");
    assert!(matches!(
        r.resolve(&id, "j.moreau", "again", T0 + 3 * S),
        Err(ReconcileError::AlreadyResolved(_))
    ));
    assert!(matches!(
        r.acknowledge("D-nope", "j.moreau", T0),
        Err(ReconcileError::UnknownDiscrepancy(_))
    ));
}

#[test]
fn authority_file_errors_name_the_line_and_the_problem() {
    let p = std::path::Path::new("plant/reconcile.toml");
    let check = |text: String, expect: &[&str]| {
        let err = ReconcileRules::parse(&text, p)
            .expect_err("refused")
            .to_string();
        assert!(err.contains("plant/reconcile.toml"), "{err}");
        for e in expect {
            assert!(err.contains(e), "`{e}` not in:\n{err}");
        }
    };
    let good = rules_text(60.0);
    // A domain without an owner: never inferred.
    check(
        good.replace("part_count = \"twin\"\n", ""),
        &[
            "authority.part_count is not declared",
            "never inferred",
            "2:1",
        ],
    );
    check(
        good.replace("physical_state = \"twin\"", "physical_state = \"plc\""),
        &["4:18", "`plc` is not an owner"],
    );
    check(
        good.replace(
            "quality_records = \"mes\"",
            "quality_records = \"mes\"\nenergy = \"twin\"",
        ),
        &["7:1", "unknown domain `energy`"],
    );
    check(
        good.replace("spindle_below_rpm = 50", "spindle_below = 50"),
        &["unknown field `spindle_below`"],
    );
    check(
        good.replace("tolerance_parts = 2", "tolerance_parts = -2"),
        &["tolerance_parts", "must be a finite number"],
    );
    check(
        good.replace("after_s = 60\nspindle_above_rpm", "spindle_above_rpm"),
        &["missing `after_s`"],
    );
    check(
        good.replace("version = 1", "version = 7"),
        &["1:11", "version 7 is not supported"],
    );
    check("version = 1\n[authority\n".into(), &["2:"]);
}

fn sample(
    reg: &mezzanine::registry::AssetRegistry,
    asset: &str,
    prop: &str,
    v: SampleValue,
    ts_us: i64,
) -> Sample {
    let a = reg.by_id(asset).expect("asset");
    Sample {
        property: reg.property_by_name(a, prop).expect("property"),
        value: v,
        reason: None,
        quality: Quality::Good,
        origin: Origin::Mqtt,
        hops: HopStamps {
            source_us: ts_us,
            broker_us: None,
            received_us: ts_us,
            decoded_us: ts_us,
            arrival_stamped: false,
            historical: false,
            mqtt_pkid: None,
            redelivered: false,
        },
    }
}

#[test]
fn reconciliation_never_corrects_either_side() {
    use mezzanine::bench::headless_twin;
    use mezzanine::ingest::{PendingMes, PendingSamples, ingest_channel};
    use mezzanine::mes::{MesContext, MesPlugin, MesState};
    use mezzanine::reconcile::{ReconcileCommand, ReconcilePlugin, Reconciliation};
    use mezzanine::twin::{AssetEntities, AssetState, MachineState};

    let reg = crate::live::registry();
    let (_tx, rx) = ingest_channel(16);
    let mut app = headless_twin(&reg, rx);
    app.add_plugins(MesPlugin {
        reorder_window_us: 0,
        seen: Vec::new(),
        heartbeat_timeout_ms: 600_000,
        domains: Default::default(),
        poll_interval_ms: 10_000,
    })
    .add_plugins(ReconcilePlugin {
        restored: Vec::new(),
        rules: rules(0.5),
        period_ms: 50,
    });
    let c = Contract::load().expect("contract");
    let now = now_us();
    // The MES starts WO-42 on mill 2, which is physically down.
    app.world_mut().resource_mut::<PendingMes>().0.push((
        ev(
            &c,
            "x1",
            "work_order.started",
            now,
            json!({"work_order": "WO-42", "asset_id": "L1-MILL-02"}),
        ),
        None,
    ));
    let mut pending = Vec::new();
    for (p, v) in [
        ("state", SampleValue::Text("down".into())),
        ("spindle_speed", SampleValue::Number(0.0)),
        ("vibration_rms", SampleValue::Number(0.1)),
        ("spindle_load", SampleValue::Number(0.0)),
        ("part_count", SampleValue::Number(400.0)),
    ] {
        pending.push((sample(&reg, "L1-MILL-02", p, v, now), None));
    }
    app.world_mut()
        .resource_mut::<PendingSamples>()
        .0
        .extend(pending);
    let start = Instant::now();
    while app
        .world()
        .resource::<Reconciliation>()
        .engine
        .discrepancies
        .is_empty()
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no discrepancy raised"
        );
        app.update();
        std::thread::sleep(Duration::from_millis(20));
    }
    let mill = *app
        .world()
        .resource::<AssetEntities>()
        .0
        .get(&reg.by_id("L1-MILL-02").expect("mill"))
        .expect("entity");
    let id = app
        .world()
        .resource::<Reconciliation>()
        .engine
        .discrepancies[0]
        .id
        .clone();
    let both_sides = |app: &App| {
        (
            app.world()
                .resource::<MesState>()
                .0
                .book
                .active_on("L1-MILL-02")
                .map(str::to_string),
            app.world()
                .resource::<MesContext>()
                .work_orders
                .get("L1-MILL-02")
                .cloned(),
            app.world().get::<AssetState>(mill).map(|s| s.state),
        )
    };
    let before = both_sides(&app);
    assert_eq!(
        before,
        (
            Some("WO-42".into()),
            Some("WO-42".into()),
            Some(MachineState::Down)
        )
    );
    for cmd in [
        ReconcileCommand::Acknowledge {
            id: id.clone(),
            by: "j.moreau".into(),
        },
        ReconcileCommand::Resolve {
            id: id.clone(),
            by: "j.moreau".into(),
            note: "MES terminal was not updated".into(),
        },
    ] {
        app.world_mut().write_message(cmd);
        for _ in 0..5 {
            app.update();
        }
        // Neither the MES's work-order view (it owns that domain) nor the
        // twin's physical state (it owns that one) moved.
        assert_eq!(both_sides(&app), before);
    }
    let rec = app.world().resource::<Reconciliation>();
    assert_eq!(
        rec.engine.get(&id).map(|d| d.status()),
        Some(Status::Resolved)
    );
    assert_eq!(rec.last_error, None);
}

/// What an independent subscriber saw: (topic, source time).
type Seen = Arc<std::sync::Mutex<Vec<(String, i64)>>>;

/// Every (topic, source time) an independent subscriber saw on `filter`
/// (time 0 where the payload is not a reading).
fn observe(
    port: u16,
    filter: &str,
    client_id: &str,
) -> (
    std::thread::JoinHandle<()>,
    Seen,
    Arc<std::sync::atomic::AtomicBool>,
) {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (s2, st2) = (seen.clone(), stop.clone());
    let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut conn) = Client::new(opts, 1_000);
    client
        .subscribe(filter, QoS::AtLeastOnce)
        .expect("subscribe");
    let h = std::thread::spawn(move || {
        while !st2.load(std::sync::atomic::Ordering::Relaxed) {
            match conn.recv_timeout(Duration::from_millis(100)) {
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    // Source time when the payload is a reading, else 0.
                    let ts = mezzanine::ingest::decode::decode_json(&p.payload, "rpm")
                        .ok()
                        .and_then(|d| d.source_ts_us)
                        .unwrap_or(0);
                    s2.lock().expect("lock").push((p.topic.clone(), ts));
                }
                Ok(Err(_)) => std::thread::sleep(Duration::from_millis(50)),
                _ => {}
            }
        }
    });
    (h, seen, stop)
}

#[test]
fn an_mes_outage_marks_context_unavailable_then_catches_up_and_back_fills() {
    use mezzanine::bench::headless_twin;
    use mezzanine::demo::{DemoSettings, start_embedded_plant};
    use mezzanine::history::{HistoryPlugin, Store, WriterSettings};
    use mezzanine::ingest::ingest_channel;
    use mezzanine::ingest::mqtt::{MesRoute, MqttSettings, spawn_mqtt_adapter};
    use mezzanine::mes::poll::spawn_poller;
    use mezzanine::mes::{LinkStatus, MesLink, MesPlugin, MesPollChannel};

    let reg = crate::live::registry();
    let dir = tempfile::tempdir().expect("dir");
    let plant = start_embedded_plant(
        reg.clone(),
        &DemoSettings {
            seed: 3,
            time_scale: 30.0,
            tick_ms: 100,
            pki_dir: dir.path().join("pki"),
            inject: Vec::new(),
        },
    )
    .expect("plant");
    let (obs, seen, stop_obs) = observe(
        plant.broker.port,
        "acme/lyon/machining/line1/mill01/spindle_speed",
        "outage-observer",
    );
    // Everything on the MES's topic tree, to show the twin adds nothing.
    let (mes_obs, mes_seen, stop_mes_obs) =
        observe(plant.broker.port, "acme/lyon/mes/#", "mes-observer");
    let (plugin, threads) = HistoryPlugin::start(
        &dir.path().join("h.duckdb"),
        reg.clone(),
        WriterSettings::default(),
    )
    .expect("history");
    let (tx, rx) = ingest_channel(65_536);
    let tx = tx.with_recorder(threads.writer.recorder.clone());
    let adapter = spawn_mqtt_adapter(
        MqttSettings {
            payloads: Default::default(),
            sparkplug: Default::default(),
            host: "127.0.0.1".into(),
            port: plant.broker.port,
            client_id: "twin-outage".into(),
            username: None,
            password: None,
            topics: vec!["acme/lyon/#".into()],
            tls: None,
            mes: Some(MesRoute {
                topic_prefix: "acme/lyon/mes/events/".into(),
                heartbeat_topic: Some("acme/lyon/mes/heartbeat".into()),
                contract: Arc::new(Contract::load().expect("contract")),
            }),
        },
        reg.clone(),
        tx.clone(),
    )
    .expect("adapter");
    let poller = spawn_poller(PollSettings {
        api_url: plant.mes.api_url.clone(),
        interval_ms: 1_000,
        work_orders: false,
        equipment: false,
        schedule: true,
        token: None,
        ca_file: None,
        // Small pages: the catch-up below spans several.
        catch_up_page_events: 3,
    })
    .expect("poller");
    let mut app = headless_twin(&reg, rx);
    app.add_plugins(plugin)
        .add_plugins(MesPlugin {
            reorder_window_us: 500_000,
            seen: Vec::new(),
            heartbeat_timeout_ms: 3_000,
            domains: Default::default(),
            poll_interval_ms: 1_000,
        })
        .insert_resource(MesPollChannel {
            results: poller.results.clone(),
            commands: poller.commands.clone(),
        });
    let run_until = |app: &mut App, what: &str, limit_s: u64, done: &dyn Fn(&App) -> bool| {
        let start = Instant::now();
        while !done(app) {
            assert!(
                start.elapsed() < Duration::from_secs(limit_s),
                "{what}: {:?}",
                app.world().resource::<MesLink>()
            );
            app.update();
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    run_until(&mut app, "MES up", 20, &|a| {
        a.world().resource::<MesLink>().status == LinkStatus::Up
    });
    // The MES goes away before its first orders start (5–25 s after start).
    plant.mes.set_online(false);
    run_until(&mut app, "outage seen", 20, &|a| {
        a.world().resource::<MesLink>().is_down()
    });
    let outage_from = match app.world().resource::<MesLink>().status {
        LinkStatus::Down { since_us } => since_us,
        s => panic!("{s:?}"),
    };
    // Physical data keeps flowing while orders start inside the MES.
    let wait_until = Instant::now() + Duration::from_secs(27);
    while Instant::now() < wait_until {
        app.update();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(app.world().resource::<MesLink>().is_down(), "still down");
    plant.mes.set_online(true);
    run_until(&mut app, "recovered", 30, &|a| {
        let l = a.world().resource::<MesLink>();
        l.status == LinkStatus::Up && l.outages.last().is_some_and(|o| o.1.is_some())
    });
    let link = app.world().resource::<MesLink>().clone();
    assert!(
        link.caught_up_events >= 8,
        "missed events fetched: {}",
        link.caught_up_events
    );
    // Pages of 3: the log since the outage took several requests, and the
    // recovery waited for the last.
    assert!(
        link.catch_up_pages >= 3,
        "{} catch-up pages",
        link.catch_up_pages
    );
    let outage_to = link.outages.last().and_then(|o| o.1).expect("ended");
    // Acks (heartbeats' included) reached the broker in order: it never
    // dropped the twin's connection.
    assert_eq!(
        app.world()
            .resource::<mezzanine::ingest::LinkStatus>()
            .mqtt_reconnects,
        0,
        "the broker dropped the twin"
    );
    // A few more frames so the back-fill commits.
    for _ in 0..20 {
        app.update();
        std::thread::sleep(Duration::from_millis(20));
    }
    threads.writer.flush().expect("flush");
    stop_obs.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = obs.join();
    drop(adapter);
    poller.stop();
    drop(tx);
    drop(app);
    threads.shutdown();
    let requests = plant.mes.shared.requests();
    assert!(
        requests.iter().all(|r| r.starts_with("GET ")),
        "only GET: {requests:?}"
    );
    // Over MQTT: no more messages on the MES's event topics than the MES
    // itself published (the twin's client only subscribes).
    plant.mes.set_online(false);
    std::thread::sleep(Duration::from_millis(800));
    stop_mes_obs.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = mes_obs.join();
    let (events_seen, beats_seen) = {
        let m = mes_seen.lock().expect("lock");
        let events = m
            .iter()
            .filter(|(t, _)| t.starts_with("acme/lyon/mes/events/"))
            .count() as u64;
        (events, m.len() as u64 - events)
    };
    let published = plant
        .mes
        .published
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        beats_seen > 0,
        "the observer was subscribed (saw a heartbeat)"
    );
    assert!(
        events_seen <= published,
        "{events_seen} MES events on the broker, {published} published by the MES"
    );
    plant.stop();

    let store = Store::open(&dir.path().join("h.duckdb"), &reg).expect("reopen");
    let q = |sql: &str| -> i64 {
        store
            .conn
            .query_row(sql, [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    let during = format!("ts_us BETWEEN {outage_from} AND {outage_to}");
    let recorded_during = q(&format!("SELECT count(*) FROM samples WHERE {during}"));
    assert!(
        recorded_during > 1_000,
        "{recorded_during} samples recorded during the outage"
    );
    assert_eq!(
        q("SELECT count(*) FROM samples WHERE context_unavailable"),
        0,
        "all back-filled"
    );
    // The machines whose orders started inside the outage carry them.
    let filled = q(&format!(
        "SELECT count(DISTINCT p.asset_id) FROM samples s JOIN properties p USING (prop_id)
         WHERE {during} AND s.work_order IS NOT NULL"
    ));
    assert!(
        filled >= 4,
        "{filled} machines got their work order back-filled"
    );
    assert_eq!(
        q("SELECT count(*) FROM mes_outages WHERE end_us IS NOT NULL AND backfilled_rows > 0"),
        1
    );
    // Nothing lost: every spindle reading an independent subscriber saw
    // during the outage is in the history.
    let mill = reg.by_id("L1-MILL-01").expect("mill");
    let prop = reg.property_by_name(mill, "spindle_speed").expect("prop");
    let pid = store.props.id(prop).expect("id");
    let seen: Vec<i64> = seen
        .lock()
        .expect("lock")
        .iter()
        .map(|(_, ts)| *ts)
        .filter(|ts| (outage_from..=outage_to).contains(ts))
        .collect();
    assert!(seen.len() >= 20, "{} readings observed", seen.len());
    eprintln!(
        "outage {:.1} s: {recorded_during} samples recorded meanwhile, {} back-filled; \
         {} missed MES events fetched; {filled} machines got a work order; \
         {} spindle readings seen by an independent subscriber, all recorded once",
        (outage_to - outage_from) as f64 / 1e6,
        q("SELECT sum(backfilled_rows) FROM mes_outages"),
        link.caught_up_events,
        seen.len()
    );
    for ts in &seen {
        assert_eq!(
            q(&format!(
                "SELECT count(*) FROM samples WHERE prop_id = {pid} AND ts_us = {ts}"
            )),
            1,
            "reading at {ts} recorded once"
        );
    }
}

#[test]
fn import_schedule_stores_a_b2mml_document_and_refuses_a_broken_one() {
    use std::process::Command;
    let reg = crate::live::registry();
    let mut sim = MesSim::new(&reg, 9, 1_795_500_000_000_000, 10.0);
    sim.step(1_795_500_000_000_000, None);
    let schedule = sim.schedule_b2mml(1_795_500_000_000_000);
    let dir = tempfile::tempdir().expect("dir");
    let good = dir.path().join("schedule.xml");
    std::fs::write(&good, b2mml::write(&schedule)).expect("write");
    let history = dir.path().join("h.duckdb");
    let run = |file: &std::path::Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_mezzanine"))
            .arg("import-schedule")
            .arg(file)
            .arg("--history")
            .arg(&history)
            .arg("--registry")
            .arg(crate::repo("scenes/demo-plant.toml"))
            .output()
            .expect("binary runs");
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (code, out) = run(&good);
    assert_eq!(code, 0, "{out}");
    let n = schedule.requests.len();
    assert!(out.contains(&format!("({n} production requests)")), "{out}");
    assert!(out.contains(&schedule.requests[0].id), "{out}");
    // Again: replaced, not doubled.
    assert_eq!(run(&good).0, 0);
    let bad = dir.path().join("broken.xml");
    std::fs::write(
        &bad,
        b2mml::write(&schedule).replacen(&schedule.requests[1].routing[0], "L7-PRESS-01", 1),
    )
    .expect("write");
    let (code, out) = run(&bad);
    assert_ne!(code, 0);
    assert!(
        out.contains("broken.xml") && out.contains("L7-PRESS-01") && out.contains("not an asset"),
        "{out}"
    );
    let store = mezzanine::history::Store::open(&history, &reg).expect("open");
    let rows: i64 = store
        .conn
        .query_row("SELECT count(*) FROM schedules", [], |r| r.get(0))
        .expect("count");
    assert_eq!(
        rows as usize, n,
        "one import kept, the broken one stored nothing"
    );
}

#[test]
fn unresolved_discrepancies_come_back_after_a_restart_and_resolved_ones_do_not() {
    use mezzanine::history::{HistoryPlugin, Store, WriterSettings};
    use mezzanine::reconcile::discrepancy_msg;
    let reg = crate::live::registry();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("h.duckdb");
    let (_plugin, threads) =
        HistoryPlugin::start(&path, reg.clone(), WriterSettings::default()).expect("history");
    let mut r = Reconciler::new(rules(0.0), "run1");
    r.observe(
        T0,
        &[
            (phys("L1-MILL-02", 0.0, 0.2, 0.0, 10.0), mes(Some("WO-7"))),
            (phys("L1-MILL-03", 9000.0, 2.0, 50.0, 10.0), mes(None)),
        ],
    );
    assert_eq!(r.discrepancies.len(), 2);
    let (a, b) = (r.discrepancies[0].id.clone(), r.discrepancies[1].id.clone());
    for d in &r.discrepancies {
        threads
            .writer
            .app
            .send(discrepancy_msg(d, T0))
            .expect("send");
    }
    let d = r.acknowledge(&a, "j.moreau", T0 + S).expect("ack").clone();
    threads
        .writer
        .app
        .send(discrepancy_msg(&d, T0 + S))
        .expect("send");
    let d = r
        .resolve(&b, "j.moreau", "order was closed late", T0 + 2 * S)
        .expect("resolve")
        .clone();
    threads
        .writer
        .app
        .send(discrepancy_msg(&d, T0 + 2 * S))
        .expect("send");
    threads.writer.flush().expect("flush");
    threads.shutdown();

    let store = Store::open(&path, &reg).expect("reopen");
    let rows = mezzanine::history::query::unresolved_discrepancies(&store.conn).expect("rows");
    drop(store);
    let mut r2 = Reconciler::new(rules(0.0), "run2");
    assert_eq!(r2.restore(&rows), 1, "only the unresolved one");
    let back = r2.get(&a).expect("restored");
    assert_eq!(back.status(), Status::Acknowledged);
    assert_eq!(back.mes_view, r.get(&a).expect("a").mes_view);
    assert_eq!(back.twin_view, r.get(&a).expect("a").twin_view);
    assert_eq!(
        back.history.last().and_then(|s| s.by.as_deref()),
        Some("j.moreau")
    );
    assert!(r2.get(&b).is_none());
    // The condition still holds: not raised a second time.
    r2.observe(
        T0 + 10 * S,
        &[(phys("L1-MILL-02", 0.0, 0.2, 0.0, 10.0), mes(Some("WO-7")))],
    );
    assert_eq!(r2.discrepancies.len(), 1);
}

#[test]
fn in_polling_mode_the_twin_takes_work_orders_from_the_api_and_ignores_their_events() {
    use mezzanine::bench::headless_twin;
    use mezzanine::config::{MesDomains, SyncMode};
    use mezzanine::demo::broker::{free_port, start_embedded_broker};
    use mezzanine::ingest::{PendingMes, ingest_channel};
    use mezzanine::mes::poll::spawn_poller;
    use mezzanine::mes::{MesContext, MesLink, MesPlugin, MesPollChannel, MesSchedule, MesState};

    let reg = crate::live::registry();
    let broker = start_embedded_broker(free_port().expect("port")).expect("broker");
    let mes = running_sim(free_port().expect("port"), broker.port);
    let rt = rt();
    wait_for_api(&mes.api_url, &rt);
    let poller = spawn_poller(PollSettings {
        api_url: mes.api_url.clone(),
        interval_ms: 500,
        work_orders: true,
        equipment: true,
        schedule: true,
        token: None,
        ca_file: None,
        catch_up_page_events: 500,
    })
    .expect("poller");
    let (_tx, rx) = ingest_channel(16);
    let mut app = headless_twin(&reg, rx);
    app.add_plugins(MesPlugin {
        reorder_window_us: 0,
        seen: Vec::new(),
        heartbeat_timeout_ms: 600_000,
        domains: MesDomains {
            work_orders: SyncMode::Polling,
            equipment: SyncMode::Polling,
            quality: SyncMode::Events,
            schedule: SyncMode::Polling,
        },
        poll_interval_ms: 500,
    })
    .insert_resource(MesPollChannel {
        results: poller.results.clone(),
        commands: poller.commands.clone(),
    });
    // An event for a polled domain: recorded, not applied.
    let c = Contract::load().expect("contract");
    app.world_mut().resource_mut::<PendingMes>().0.push((
        ev(
            &c,
            "p1",
            "work_order.started",
            now_us(),
            json!({"work_order": "WO-999999", "asset_id": "L1-MILL-01"}),
        ),
        None,
    ));
    let start = Instant::now();
    loop {
        app.update();
        let polled = app.world().resource::<MesLink>().last_poll_us.is_some();
        if polled && app.world().resource::<MesContext>().work_orders.len() >= 4 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no polled work orders"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let ctx = app.world().resource::<MesContext>().clone();
    // The MES runs on meanwhile (×60), so an order may have finished since
    // the last poll: that is the polling lag the UI warns about.
    let running: Vec<_> = mes
        .shared
        .orders()
        .into_iter()
        .filter(|o| o.status == "running" || o.status == "held")
        .collect();
    let agree = running
        .iter()
        .filter(|o| ctx.work_orders.get(&o.asset_id) == Some(&o.work_order))
        .count();
    assert!(
        agree >= 4 && agree + 1 >= running.len(),
        "{agree} of {} running orders as polled: {ctx:?}",
        running.len()
    );
    assert_ne!(
        ctx.work_orders.get("L1-MILL-01").map(String::as_str),
        Some("WO-999999")
    );
    let state = app.world().resource::<MesState>();
    assert_eq!(
        state.0.ignored, 1,
        "the event of a polled domain was not applied"
    );
    assert!(
        state.0.book.assets.values().any(|a| a.mode.is_some()),
        "modes polled"
    );
    assert!(
        !app.world().resource::<MesSchedule>().orders.is_empty(),
        "schedule polled"
    );
    poller.stop();
    mes.stop();
}

#[test]
fn an_outage_still_open_at_exit_is_closed_on_reopen_and_its_samples_stay_flagged() {
    use mezzanine::history::{HistoryPlugin, Store, WriterMsg, WriterSettings};
    use mezzanine::ingest::Recorded;
    let reg = crate::live::registry();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("h.duckdb");
    let send = |w: &mezzanine::history::HistoryWriter, t: i64| {
        w.recorder
            .send(Recorded::Sample(
                sample(
                    &reg,
                    "L1-MILL-01",
                    "spindle_speed",
                    SampleValue::Number(9000.0),
                    t,
                ),
                None,
            ))
            .expect("send");
    };
    let (_p, threads) =
        HistoryPlugin::start(&path, reg.clone(), WriterSettings::default()).expect("history");
    let w = &threads.writer;
    w.app
        .send(WriterMsg::WorkOrder {
            asset_id: "L1-MILL-01".into(),
            work_order: Some("WO-1".into()),
            ts_us: T0,
        })
        .expect("send");
    send(w, T0 + S);
    w.app
        .send(WriterMsg::MesLink {
            up: false,
            ts_us: T0 + 2 * S,
        })
        .expect("send");
    send(w, T0 + 3 * S);
    send(w, T0 + 4 * S);
    w.flush().expect("flush");
    threads.shutdown(); // the MES never came back in this run

    let (_p, threads) =
        HistoryPlugin::start(&path, reg.clone(), WriterSettings::default()).expect("reopen");
    let w = &threads.writer;
    // A new outage in the next run is its own row, and its back-fill
    // touches only its own samples.
    w.app
        .send(WriterMsg::MesLink {
            up: false,
            ts_us: T0 + 10 * S,
        })
        .expect("send");
    send(w, T0 + 11 * S);
    w.app
        .send(WriterMsg::Backfill {
            from_us: T0 + 10 * S,
            to_us: T0 + 12 * S,
        })
        .expect("send");
    w.app
        .send(WriterMsg::MesLink {
            up: true,
            ts_us: T0 + 12 * S,
        })
        .expect("send");
    w.flush().expect("flush");
    threads.shutdown();

    let store = Store::open(&path, &reg).expect("open");
    let rows: Vec<(i64, Option<i64>, Option<i64>)> = {
        let mut st = store
            .conn
            .prepare("SELECT start_us, end_us, backfilled_rows FROM mes_outages ORDER BY start_us")
            .expect("prepare");
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    assert_eq!(
        rows,
        vec![
            (T0 + 2 * S, Some(T0 + 4 * S), Some(0)),
            (T0 + 10 * S, Some(T0 + 12 * S), Some(1)),
        ]
    );
    let flagged: i64 = store
        .conn
        .query_row(
            "SELECT count(*) FROM samples WHERE context_unavailable",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(
        flagged, 2,
        "the first run's outage samples keep their honest flag"
    );
    let with_wo: i64 = store
        .conn
        .query_row(
            "SELECT count(*) FROM samples WHERE work_order = 'WO-1'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(
        with_wo, 2,
        "before the first outage, and back-filled in the second"
    );
}

/// A catch-up answer that arrives after newer live events does not undo
/// them: per order and per machine, the newest source time wins.
#[test]
fn an_older_event_arriving_late_does_not_undo_a_newer_one() {
    use mezzanine::mes::sync::{MesSync, OrderStatus};
    let c = Contract::load().expect("contract");
    let mut sync = MesSync::new(0, 1_000);
    let apply = |sync: &mut MesSync, e: Envelope| {
        assert!(sync.offer(e));
        sync.step(true)
    };
    // Live: WO-2 runs on the mill from T0 + 100 s, its first operation.
    apply(
        &mut sync,
        ev(
            &c,
            "live-1",
            "operation.started",
            T0 + 100 * S,
            json!({"work_order": "WO-2", "operation": 1, "asset_id": "L1-MILL-01"}),
        ),
    );
    // Catch-up, later: what happened before — WO-1 on the mill, completed,
    // and a hold of WO-2 that was lifted before T0 + 100 s.
    for (id, ty, t, payload) in [
        (
            "old-1",
            "work_order.started",
            T0 + 10 * S,
            json!({"work_order": "WO-1", "asset_id": "L1-MILL-01"}),
        ),
        (
            "old-2",
            "operation.started",
            T0 + 20 * S,
            json!({"work_order": "WO-1", "operation": 3, "asset_id": "L1-MILL-01"}),
        ),
        (
            "old-3",
            "work_order.held",
            T0 + 50 * S,
            json!({"work_order": "WO-2", "reason": "material", "asset_id": "L1-MILL-01"}),
        ),
        (
            "old-4",
            "equipment.mode_changed",
            T0 + 60 * S,
            json!({"asset_id": "L1-MILL-01", "mode": "maintenance"}),
        ),
    ] {
        apply(&mut sync, ev(&c, id, ty, t, payload));
    }
    let book = &sync.book;
    let mill = &book.assets["L1-MILL-01"];
    assert_eq!(mill.work_order.as_deref(), Some("WO-2"), "{mill:?}");
    assert_eq!(mill.operation, Some(1));
    assert_eq!(book.orders["WO-2"].status, OrderStatus::Running);
    assert_eq!(book.orders["WO-1"].status, OrderStatus::Running);
    // The mode had no newer value: it applies.
    assert!(mill.mode.is_some());
    assert_eq!(
        book.stale_ignored, 3,
        "two machine assignments and one hold"
    );
    // A newer event still applies as before.
    let ch = apply(
        &mut sync,
        ev(
            &c,
            "live-2",
            "work_order.completed",
            T0 + 200 * S,
            json!({"work_order": "WO-2", "good_count": 5, "scrap_count": 0}),
        ),
    );
    assert_eq!(ch.len(), 1);
    assert_eq!(sync.book.assets["L1-MILL-01"].work_order, None);
}

/// The part-count check reads the machine counter at the MES events'
/// source times: events applied late (after an outage) are compared with
/// what the counter said then, not with what it says when they arrive.
#[test]
fn the_part_count_check_reads_the_counter_at_the_events_source_times() {
    let c = Contract::load().expect("contract");
    let mut r = Reconciler::new(rules(60.0), "t");
    // (Spindle at rest in every view: only the part count is under test.)
    let lathe = |count: f64, ts_us: i64| PhysicalView {
        part_count_ts_us: Some(ts_us),
        ..phys("L2-LATHE-01", 0.0, 0.1, 0.0, count)
    };
    // The twin saw the counter all along: 100 at T0, 120 at T0 + 100 s,
    // then the next order took it to 160 by T0 + 300 s.
    for (count, t) in [
        (100.0, 0),
        (110.0, 50),
        (120.0, 100),
        (140.0, 200),
        (160.0, 300),
    ] {
        r.observe(T0 + t * S + 1, &[(lathe(count, T0 + t * S), mes(None))]);
    }
    // Only now (T0 + 300 s) do the MES's events for WO-9 arrive: it started
    // at T0 and completed 20 parts at T0 + 100 s.
    r.on_mes_event(
        &ev(
            &c,
            "a",
            "work_order.started",
            T0,
            json!({"work_order": "WO-9", "asset_id": "L2-LATHE-01"}),
        ),
        Some(&lathe(160.0, T0 + 300 * S)),
    );
    r.on_mes_event(
        &ev(
            &c,
            "b",
            "operation.completed",
            T0 + 100 * S,
            json!({"work_order": "WO-9", "operation": 1, "asset_id": "L2-LATHE-01",
                   "good_count": 19, "scrap_count": 1}),
        ),
        Some(&lathe(160.0, T0 + 300 * S)),
    );
    r.observe(T0 + 310 * S, &[(lathe(160.0, T0 + 300 * S), mes(None))]);
    assert!(
        r.discrepancies.is_empty(),
        "{:?}",
        r.discrepancies
            .iter()
            .map(|d| d.summary())
            .collect::<Vec<_>>()
    );
    // The same late events with a count that did not happen still fire.
    r.on_mes_event(
        &ev(
            &c,
            "c",
            "work_order.started",
            T0 + 100 * S,
            json!({"work_order": "WO-10", "asset_id": "L2-LATHE-01"}),
        ),
        None,
    );
    r.on_mes_event(
        &ev(
            &c,
            "d",
            "operation.completed",
            T0 + 200 * S,
            json!({"work_order": "WO-10", "operation": 1, "asset_id": "L2-LATHE-01",
                   "good_count": 40, "scrap_count": 0}),
        ),
        None,
    );
    r.observe(T0 + 320 * S, &[(lathe(160.0, T0 + 300 * S), mes(None))]);
    assert_eq!(r.discrepancies.len(), 1);
    assert!(
        r.discrepancies[0].twin_view.contains("advanced 20"),
        "{}",
        r.discrepancies[0].twin_view
    );
}

/// While the MES is away (or catching up) its view is frozen: nothing is
/// compared with it, and once it is back a condition must hold its whole
/// time again before it is raised.
#[test]
fn reconciliation_pauses_while_the_mes_is_away() {
    let mut r = Reconciler::new(rules(60.0), "t");
    let stopped = || [(phys("L1-MILL-02", 0.0, 0.2, 0.0, 10.0), mes(Some("WO-7")))];
    // 50 s of "MES running, machine stopped", then the MES goes away.
    for k in 0..=5 {
        r.observe(T0 + k * 10 * S, &stopped());
    }
    for k in 6..=30 {
        r.note_counters(T0 + k * 10 * S, &stopped());
        r.pause();
    }
    assert!(
        r.discrepancies.is_empty(),
        "raised against a frozen MES view"
    );
    // Back at T0 + 310 s: 59 s more are not enough, 60 s are.
    for k in 31..=36 {
        r.observe(T0 + k * 10 * S, &stopped());
    }
    assert!(r.discrepancies.is_empty());
    r.observe(T0 + 370 * S, &stopped());
    assert_eq!(r.discrepancies.len(), 1);
    assert_eq!(r.discrepancies[0].since_us, T0 + 310 * S);
}

/// What the engine and the order book hold stays bounded over a long run.
#[test]
fn the_engine_and_the_order_book_forget_what_is_done() {
    use mezzanine::mes::sync::{COMPLETED_KEPT, MesSync, OrderStatus};
    use mezzanine::reconcile::detect::{RESOLVED_KEPT, Status};
    let c = Contract::load().expect("contract");
    // 1,000 completed orders without a quality record, each resolved.
    let mut r = Reconciler::new(rules(1.0), "t");
    for k in 0..1_000 {
        r.on_mes_event(
            &ev(
                &c,
                &format!("c{k}"),
                "work_order.completed",
                T0 + k * S,
                json!({"work_order": format!("WO-{k}"), "good_count": 1, "scrap_count": 0}),
            ),
            None,
        );
        r.observe(T0 + k * S + 2 * S, &[]);
        let ids: Vec<String> = r
            .discrepancies
            .iter()
            .filter(|d| d.status() != Status::Resolved)
            .map(|d| d.id.clone())
            .collect();
        for id in ids {
            r.resolve(&id, "qa", "checked", T0 + k * S + 3 * S)
                .expect("resolve");
        }
    }
    r.observe(T0 + 2_000 * S, &[]);
    assert_eq!(r.discrepancies.len(), RESOLVED_KEPT);
    // The newest are kept.
    assert!(
        r.discrepancies
            .iter()
            .any(|d| d.work_order.as_deref() == Some("WO-999"))
    );
    // 20,000 inspected orders: the set is capped.
    for k in 0..20_000 {
        r.on_mes_event(
            &ev(
                &c,
                &format!("q{k}"),
                "quality.disposition",
                T0 + k * S,
                json!({"work_order": format!("WO-Q{k}"), "serial": "S", "asset_id": "FIN-CMM-01",
                       "disposition": "pass", "defect_codes": []}),
            ),
            None,
        );
    }
    assert_eq!(r.size().inspected_orders, 10_000);

    // The book: 7,000 orders completed over two days, and one still running.
    let mut sync = MesSync::new(0, 100_000);
    let h = 3_600 * S;
    sync.offer(ev(
        &c,
        "run",
        "work_order.started",
        T0,
        json!({"work_order": "WO-LONG", "asset_id": "L1-MILL-01"}),
    ));
    for k in 0..7_000i64 {
        let t = T0 + k * 48 * h / 7_000;
        sync.offer(ev(
            &c,
            &format!("s{k}"),
            "work_order.started",
            t,
            json!({"work_order": format!("WO-{k}"), "asset_id": "L2-LATHE-01"}),
        ));
        sync.offer(ev(
            &c,
            &format!("e{k}"),
            "work_order.completed",
            t + S,
            json!({"work_order": format!("WO-{k}"), "good_count": 1, "scrap_count": 0}),
        ));
        sync.step(true);
    }
    let completed = sync
        .book
        .orders
        .values()
        .filter(|o| o.status == OrderStatus::Completed)
        .count();
    assert!(
        completed <= COMPLETED_KEPT,
        "{completed} completed orders kept"
    );
    // The last day's are there; the first day's are gone.
    assert!(completed >= 3_000, "{completed}");
    assert!(sync.book.orders.contains_key("WO-6999"));
    assert!(!sync.book.orders.contains_key("WO-0"));
    assert_eq!(sync.book.orders["WO-LONG"].status, OrderStatus::Running);
}

/// The real recorder polls a secured MES API with a bearer token from the
/// environment: the API sees only authorized GETs, and no line the process
/// prints or logs holds the token.
#[test]
fn the_mes_token_is_sent_and_never_logged() {
    use mezzanine::demo::broker::{free_port, start_embedded_broker};
    use std::io::Read;
    use std::process::{Command, Stdio};
    let broker = start_embedded_broker(free_port().expect("port")).expect("broker");
    let mes = running_sim(free_port().expect("port"), broker.port);
    let token = "tk-91b2e4-do-not-print";
    mes.shared
        .required_token
        .set(token.to_string())
        .expect("token set once");
    let rt = rt();
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("mezzanine.toml");
    std::fs::write(
        &config,
        format!(
            "[plant]\nscene = \"{}\"\nregistry = \"{}\"\n\n[mes]\napi_url = \"{}\"\n\
             poll_interval_ms = 500\n\n[history]\npath = \"{}\"\n",
            crate::repo("scenes/demo-plant.glb").display(),
            crate::repo("scenes/demo-plant.toml").display(),
            mes.api_url,
            dir.path().join("h.duckdb").display()
        ),
    )
    .expect("config");
    let mut rec = Command::new(env!("CARGO_BIN_EXE_mezzanine"))
        .arg("--config")
        .arg(&config)
        .arg("record")
        .env("MEZZANINE_MES_API_TOKEN", token)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("recorder");
    let (mut out, mut err) = (
        rec.stdout.take().expect("stdout"),
        rec.stderr.take().expect("stderr"),
    );
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        let _ = err.read_to_string(&mut s);
        s
    });
    std::thread::sleep(Duration::from_secs(6));
    let _ = Command::new("kill")
        .args(["-TERM", &rec.id().to_string()])
        .status();
    let status = rec.wait().expect("exits");
    let printed = reader.join().expect("output");
    assert!(status.success(), "{status:?}\n{printed}");
    assert!(printed.contains("recording to"), "{printed}");
    assert!(
        !printed.contains(token),
        "the token was printed:\n{printed}"
    );
    let requests = mes.shared.requests();
    assert!(
        requests.iter().any(|r| r == "GET /api/v1/health"),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .all(|r| r.starts_with("GET ") && !r.contains("(401)")),
        "{requests:?}"
    );
    drop(rt);
    mes.stop();
}

/// An API that answers with more than the client takes is refused with a
/// message naming the limit, and the poller is not flooded.
#[test]
fn an_oversized_mes_answer_is_refused() {
    use mezzanine::mes::poll::MAX_ANSWER_BYTES;
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut req = [0u8; 4096];
            let _ = s.read(&mut req);
            let n = MAX_ANSWER_BYTES + 1024;
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {n}\r\n\r\n"
            );
            let chunk = vec![b' '; 64 * 1024];
            let mut sent = 0;
            while sent < n {
                let k = chunk.len().min(n - sent);
                if s.write_all(&chunk[..k]).is_err() {
                    break;
                }
                sent += k;
            }
        }
    });
    let url = format!("http://127.0.0.1:{port}/api/v1/health");
    let err = rt()
        .block_on(http_get(&url, &ApiClient::default()))
        .expect_err("an answer over the limit");
    assert!(
        err.to_string()
            .contains(&format!("over {MAX_ANSWER_BYTES} bytes")),
        "{err}"
    );
    let _ = server.join();
}

/// `https://` with the plant's CA: the poller checks the MES's certificate
/// and sends its token inside TLS; a server signed by another CA, or no CA
/// configured, is refused with the reason.
#[test]
fn the_mes_api_is_reached_over_https_with_the_plants_ca() {
    use mezzanine::config::Secret;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    crate::live::test_ca(d);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs: Vec<_> =
        rustls_pemfile::certs(&mut std::fs::read(d.join("server.pem")).expect("pem").as_slice())
            .collect::<Result<_, _>>()
            .expect("certs");
    let key = rustls_pemfile::private_key(
        &mut std::fs::read(d.join("server.key")).expect("key").as_slice(),
    )
    .expect("key")
    .expect("a key");
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let rt = rt();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let heard: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = heard.clone();
    rt.spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let Ok(mut tls) = acceptor.accept(tcp).await else { continue };
            let mut buf = vec![0u8; 8192];
            let n = tls.read(&mut buf).await.unwrap_or(0);
            log.lock().expect("log").push(String::from_utf8_lossy(&buf[..n]).to_string());
            let body = format!(r#"{{"status":"online","as_of":"{}"}}"#, jiff::Timestamp::now());
            let _ = tls
                .write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
            let _ = tls.shutdown().await;
        }
    });
    let settings = |ca: Option<&str>| PollSettings {
        api_url: format!("https://127.0.0.1:{port}"),
        interval_ms: 1_000,
        work_orders: false,
        equipment: false,
        schedule: false,
        token: Some(Secret::new("tk-over-tls")),
        ca_file: ca.map(|c| d.join(c)),
        catch_up_page_events: 500,
    };
    let snap = rt
        .block_on(poll_once(&settings(Some("ca.pem"))))
        .expect("over TLS");
    assert!(snap.as_of_us > 0);
    let requests = heard.lock().expect("log").clone();
    assert!(
        requests.iter().any(|r| r.starts_with("GET /api/v1/health")
            && r.contains("authorization: Bearer tk-over-tls")),
        "{requests:?}"
    );
    let err = rt
        .block_on(poll_once(&settings(Some("other-ca.pem"))))
        .expect_err("another CA");
    assert!(err.to_string().contains("TLS"), "{err}");
    let err = rt.block_on(poll_once(&settings(None))).expect_err("no CA");
    assert!(err.to_string().contains("ca_file"), "{err}");
}

/// A schedule as an MES gateway and a vendor sample write it (B2MML V0600
/// style): inside a Sync envelope, the routing as nested segment
/// requirements, the quantity as a `MaterialRequirement` with use
/// *Produced*, times without a zone, durations and setups. Imported with
/// the real binary: read right, zone-less times in the plant's zone with a
/// note, and what is not imported listed.
#[test]
fn a_vendor_style_b2mml_v0600_schedule_imports_with_notes() {
    use std::process::Command;
    let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<SyncProductionSchedule xmlns="http://www.mesa.org/xml/B2MML-V0600" releaseID="6.0">
  <ApplicationArea><CreationDateTime>2026-11-24T05:00:00Z</CreationDateTime></ApplicationArea>
  <DataArea>
    <Sync/>
    <ProductionSchedule>
      <ID>GW-2026-11-24</ID>
      <PublishedDate>2026-11-24T05:00:00Z</PublishedDate>
      <ScheduleState>Released</ScheduleState>
      <ProductionRequest>
        <ID>WO-777</ID>
        <Description>Housing A-12</Description>
        <RequestState>Ready</RequestState>
        <SegmentRequirement>
          <ID>WO-777-RT</ID>
          <ProcessSegmentID>ROUTING</ProcessSegmentID>
          <EarliestStartTime>2026-11-24T08:00:00</EarliestStartTime>
          <LatestEndTime>2026-11-24T12:30:00</LatestEndTime>
          <MaterialRequirement>
            <MaterialDefinitionID>A-12</MaterialDefinitionID>
            <MaterialUse>Produced</MaterialUse>
            <Quantity><QuantityString>40</QuantityString><UnitOfMeasure>pcs</UnitOfMeasure></Quantity>
          </MaterialRequirement>
          <MaterialRequirement>
            <MaterialDefinitionID>AL-BAR-60</MaterialDefinitionID>
            <MaterialUse>Consumed</MaterialUse>
            <Quantity><QuantityString>12</QuantityString><UnitOfMeasure>m</UnitOfMeasure></Quantity>
          </MaterialRequirement>
          <SegmentRequirement>
            <ID>WO-777-10</ID>
            <ProcessSegmentID>MILL</ProcessSegmentID>
            <Duration>PT2H</Duration>
            <SetupTime>PT15M</SetupTime>
            <EquipmentRequirement><EquipmentID>L1-MILL-02</EquipmentID></EquipmentRequirement>
          </SegmentRequirement>
          <SegmentRequirement>
            <ID>WO-777-20</ID>
            <ProcessSegmentID>INSPECT</ProcessSegmentID>
            <Duration>PT20M</Duration>
            <EquipmentRequirement><EquipmentID>FIN-CMM-01</EquipmentID></EquipmentRequirement>
          </SegmentRequirement>
        </SegmentRequirement>
      </ProductionRequest>
    </ProductionSchedule>
  </DataArea>
</SyncProductionSchedule>
"#;
    let reg = crate::live::registry();
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("gateway.xml");
    std::fs::write(&file, xml).expect("write");
    let (schedule, notes) =
        b2mml::parse_with_notes(xml, &file, Some(&reg)).expect("a valid V0600 schedule");
    assert_eq!(schedule.id, "GW-2026-11-24");
    let r = &schedule.requests[0];
    assert_eq!(r.routing, vec!["L1-MILL-02", "FIN-CMM-01"]);
    assert_eq!((r.quantity, r.unit.as_str()), (40.0, "pcs"));
    assert_eq!(r.product, "Housing A-12");
    // 08:00 in Europe/Paris (UTC+1 in November) is 07:00Z.
    let paris = jiff::civil::date(2026, 11, 24)
        .at(8, 0, 0, 0)
        .to_zoned(jiff::tz::TimeZone::get(&reg.plant().time_zone).expect("zone"))
        .expect("zoned");
    assert_eq!(
        r.earliest_start_us,
        Some(paris.timestamp().as_microsecond())
    );
    let notes = notes.join("\n");
    for expect in [
        "inside <SyncProductionSchedule> was read",
        "EarliestStartTime `2026-11-24T08:00:00` has no zone: read in the plant's zone",
        "<Duration> ×2",
        "<SetupTime>",
        "<RequestState>",
        "<MaterialRequirement (Consumed)>",
        "not imported from the schedule: <ScheduleState>",
    ] {
        assert!(notes.contains(expect), "`{expect}` not in:\n{notes}");
    }

    let out = Command::new(env!("CARGO_BIN_EXE_mezzanine"))
        .arg("import-schedule")
        .arg(&file)
        .arg("--history")
        .arg(dir.path().join("h.duckdb"))
        .arg("--registry")
        .arg(crate::repo("scenes/demo-plant.toml"))
        .output()
        .expect("binary runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("WO-777"), "{text}");
    assert!(
        text.contains("note: ") && text.contains("has no zone"),
        "{text}"
    );
    assert!(
        text.contains("imported schedule GW-2026-11-24 (1 production requests)"),
        "{text}"
    );
}
