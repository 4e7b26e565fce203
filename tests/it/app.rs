//! The app as the binary assembles it (`app::build`), headless: the embedded
//! plant, both adapters, the recorder, the MES and reconciliation wired by
//! the same function `mezzanine run` calls, without a window.

use std::time::{Duration, Instant};

use mezzanine::app::{self, Front, Launch};
use mezzanine::config::AppConfig;
use mezzanine::history::History;
use mezzanine::ingest::{LinkState, LinkStatus};
use mezzanine::mes::MesContext;
use mezzanine::twin::{AssetState, MachineState};

#[test]
fn the_binarys_assembly_runs_headless_live_recorded_and_with_mes_context() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("h.duckdb");
    let mut cfg = AppConfig::load(None).expect("shipped defaults");
    cfg.history.path = Some(db.clone());
    cfg.validate().expect("valid");
    let mut a = app::build(Launch {
        cfg,
        front: Front::Headless,
        replay: None,
        demo_mes_outage: None,
    })
    .expect("assembled");
    assert!(
        a.live.plant.is_some(),
        "no endpoint named: the embedded plant"
    );
    assert!(a.live.opcua.is_some() && a.live.mes_poller.is_some());

    let start = Instant::now();
    let (mut live, mut assets, mut written, mut orders, mut links);
    loop {
        a.app.update();
        let world = a.app.world_mut();
        let states: Vec<MachineState> = world
            .query::<&AssetState>()
            .iter(world)
            .map(|s| s.state)
            .collect();
        assets = states.len();
        live = states
            .iter()
            .filter(|s| **s != MachineState::Unknown)
            .count();
        written = world
            .resource::<History>()
            .stats
            .samples_written
            .load(std::sync::atomic::Ordering::Relaxed);
        orders = world.resource::<MesContext>().work_orders.len();
        let l = world.resource::<LinkStatus>();
        links = (l.mqtt.clone(), l.opcua.clone());
        if live * 10 >= assets * 9 && written > 0 && orders > 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "after 60 s: {live}/{assets} assets live, {written} samples recorded, \
             {orders} machines with a work order, links {links:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(links, (LinkState::Connected, LinkState::Connected));
    println!(
        "headless app: {live}/{assets} assets live, {written} samples recorded, \
         {orders} machines with a work order after {:.1} s",
        start.elapsed().as_secs_f64()
    );

    // A what-if fork of the running app's world: read once, never written.
    {
        use mezzanine::whatif::plant::{PlantSettings, build_model, snapshot_from_world};
        let world = a.app.world_mut();
        let before = crate::whatif::live_digest(world);
        let at_us = mezzanine::ingest::now_us();
        let snap = snapshot_from_world(world, at_us).expect("snapshot");
        assert!(snap.machines.len() >= 10, "{:?}", snap.machines);
        assert!(!snap.orders.is_empty(), "no MES orders in the fork");
        let registry = world
            .resource::<mezzanine::registry::AssetRegistry>()
            .clone();
        let settings = PlantSettings {
            horizon_s: 3600.0,
            time_scale: 10.0,
            off_shift_us: Vec::new(),
            has_calendar: false,
        };
        let (model, _notes) = build_model(&registry, &snap, &[], &settings).expect("model");
        let model = std::sync::Arc::new(model);
        let runs = mezzanine::whatif::Pool::new(1)
            .run(
                std::slice::from_ref(&model),
                0..2,
                1,
                false,
                &mezzanine::whatif::Progress::new(),
            )
            .expect("runs");
        assert!(runs[0].iter().all(|o| o.events > 0));
        let mut fork = mezzanine::whatif::fork::Fork::new(model, 1, 0);
        fork.advance_to(600.0);
        assert_eq!(crate::whatif::live_digest(world), before);
    }

    // The schedule panel's run: the live plant read once, the study on a
    // thread of its own, the frame never waiting.
    {
        use bevy::prelude::Messages;
        use mezzanine::schedule::app::{JobState, ScheduleCommand, ScheduleRequest, ScheduleView};
        use mezzanine::schedule::plan::Objective;
        a.app
            .world_mut()
            .resource_mut::<Messages<ScheduleCommand>>()
            .write(ScheduleCommand::Run(ScheduleRequest {
                objective: Objective::WeightedTardiness,
                time_limit_s: 0.5,
                replications: 4,
            }));
        let t0 = Instant::now();
        let mut slowest_frame = Duration::ZERO;
        loop {
            let f = Instant::now();
            a.app.update();
            slowest_frame = slowest_frame.max(f.elapsed());
            let v = a.app.world().resource::<ScheduleView>();
            match &v.state {
                JobState::Done => break,
                JobState::Failed(e) => panic!("the schedule failed: {e}"),
                _ => {}
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "no schedule after 60 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let v = a.app.world().resource::<ScheduleView>();
        let study = v.study.clone().expect("a study");
        let p = &study.live.problem;
        assert!(!p.jobs.is_empty(), "the MES's open orders are scheduled");
        assert_eq!(mezzanine::schedule::plan::check(p, &study.twin.best), None);
        assert!(study.mes.is_some(), "the polled MES plan is set beside it");
        for (m, mach) in p.machines.iter().enumerate() {
            for &o in &study.twin.best.sequence[m] {
                assert!(study.twin.best.start_s[o] >= mach.available_from_s);
            }
        }
        println!(
            "schedule in the app: {} orders, {} operations, {} conflicts in the MES plan, slowest frame {:.1} ms while it ran",
            p.jobs.len(),
            p.ops.len(),
            study.mes.as_ref().map_or(0, |m| m.conflicts.len()),
            slowest_frame.as_secs_f64() * 1e3
        );
    }

    // A what-if study of the live plant in the app: 100 replications on a
    // thread of its own while frames go on; its trajectories for the ghosts.
    {
        use bevy::prelude::Messages;
        use mezzanine::whatif::app::{JobState, WhatIfCommand, WhatIfView};
        use mezzanine::whatif::scenario::{Change, Scenario, ScenarioFile};
        let file = ScenarioFile {
            name: "Mill 3 down".into(),
            horizon_h: Some(4.0),
            replications: mezzanine::whatif::Replications::Fixed(100),
            seed: 3,
            scenarios: vec![Scenario {
                name: "L1-MILL-03 down 2 h".into(),
                changes: vec![Change::MachineDown {
                    machine: "L1-MILL-03".into(),
                    from_h: 0.1,
                    for_h: 2.0,
                }],
            }],
        };
        a.app
            .world_mut()
            .resource_mut::<Messages<WhatIfCommand>>()
            .write(WhatIfCommand::Run(file));
        let t0 = Instant::now();
        let mut frames: Vec<Duration> = Vec::new();
        loop {
            let f = Instant::now();
            a.app.update();
            let v = a.app.world().resource::<WhatIfView>();
            let running = v.busy();
            if running {
                frames.push(f.elapsed());
            }
            match &v.state {
                JobState::Done => break,
                JobState::Failed(e) => panic!("the study failed: {e}"),
                _ => {}
            }
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "no study after 120 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let v = a.app.world().resource::<WhatIfView>();
        let o = v.outcome.clone().expect("an outcome");
        assert!(o.live, "forked from the live plant");
        assert_eq!(o.report.replications, 100);
        assert_eq!(o.trajectories.len(), 2);
        let mill = o.result.models[0]
            .station("L1-MILL-03")
            .expect("Mill 3 in the model") as usize;
        // 0.1 h + 60 s: Mill 3 down in the scenario's trajectory.
        let k = 7;
        assert_eq!(
            o.trajectories[1].frames[k].machines[mill].state,
            mezzanine::whatif::SimState::Down
        );
        // The cursor may now go into the study's future (the command is
        // read by playback on the next frame).
        a.app.update();
        assert_eq!(
            a.app
                .world()
                .resource::<mezzanine::playback::TimeCursor>()
                .future_until_us,
            Some(o.horizon_end_us())
        );
        frames.sort();
        let p99 = frames[(frames.len() * 99 / 100).min(frames.len() - 1)];
        println!(
            "what-if in the app: 100 replications × 2 variants in {:.2} s on its thread; {} frames meanwhile, p99 frame (app update) {:.2} ms, slowest {:.2} ms",
            o.wall_s,
            frames.len(),
            p99.as_secs_f64() * 1e3,
            frames.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
        );
    }

    // OEE live for the running period, from what the twin saw.
    {
        let live = &a.app.world().resource::<mezzanine::oee::live::OeeLive>().0;
        assert_eq!(
            live.records.len(),
            10,
            "every machine with an ideal cycle time"
        );
        assert!(live.records.iter().all(|r| r.1.planned_s > 0.0));
        assert!(!live.has_calendar());
    }

    // Quality in the app: an investigation record goes through the writer
    // onto the chained trail, and the panel's worker reads it back; an
    // unknown serial is refused by name.
    {
        use mezzanine::history::audit::AuditEntry;
        use mezzanine::quality::app::{QualityCommand, QualityView};
        a.app
            .world_mut()
            .write_message(QualityCommand::Audit(AuditEntry {
                ts_us: mezzanine::ingest::now_us(),
                time_zone: "Europe/Paris".into(),
                kind: "investigation.opened".into(),
                subject: "S-APP-TEST".into(),
                field: "title".into(),
                value: Some("app test".into()),
                previous_value: None,
                signer: Some("tester".into()),
                meaning: None,
            }));
        a.app
            .world_mut()
            .write_message(QualityCommand::Follow("S-APP-TEST".into()));
        let start = Instant::now();
        loop {
            a.app.update();
            let v = a.app.world().resource::<QualityView>();
            if v.error.is_some() && v.trail.len() == 1 {
                assert!(
                    v.error.as_deref().unwrap_or("").contains("`S-APP-TEST`"),
                    "{:?}",
                    v.error
                );
                assert_eq!(v.trail[0].seq, 1);
                assert_eq!(v.trail[0].prev_hash, mezzanine::history::audit::GENESIS);
                assert!(v.pending_audit.is_empty());
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "quality view after 20 s: error {:?}, trail {:?}",
                v.error,
                v.trail
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    // The orderly shutdown commits what the recorder holds.
    a.shutdown();
    let conn = duckdb::Connection::open(&db).expect("reopen");
    let (samples, work_orders): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM samples), (SELECT count(*) FROM work_orders)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("counts");
    assert!(
        samples as u64 >= written,
        "{samples} rows < {written} written"
    );
    assert!(work_orders > 0, "the work-order context was recorded");
}

#[test]
fn a_refused_start_names_the_problem_and_leaves_nothing_running() {
    let dir = tempfile::tempdir().expect("dir");
    let mut cfg = AppConfig::load(None).expect("shipped defaults");
    cfg.history.path = Some(dir.path().join("h.duckdb"));
    cfg.reconcile.rules = dir.path().join("no-such-rules.toml");
    let e = match app::build(Launch {
        cfg,
        front: Front::Headless,
        replay: None,
        demo_mes_outage: None,
    }) {
        Ok(_) => panic!("started without its authority rules"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("authority rules") && e.contains("no-such-rules.toml"),
        "{e}"
    );
    // The recorder was stopped: the file opens again at once.
    duckdb::Connection::open(dir.path().join("h.duckdb")).expect("file released");
}

#[test]
fn the_binary_refuses_a_missing_display_and_an_unknown_selection_before_starting() {
    let dir = tempfile::tempdir().expect("dir");
    let history = dir.path().join("h.duckdb");
    let run = |display: Option<&str>, extra: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_mezzanine"));
        c.arg("--history").arg(&history).args(extra);
        c.env_remove("WAYLAND_DISPLAY");
        match display {
            Some(d) => c.env("DISPLAY", d),
            None => c.env_remove("DISPLAY"),
        };
        let out = c.output().expect("runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = run(None, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("no X display") && err.contains("mezzanine record"),
        "{err}"
    );
    // A display that is never reached: the selection is refused first.
    let (code, err) = run(Some(":999"), &["--select", "L9-NOPE-01"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--select L9-NOPE-01: no such asset"), "{err}");
    assert!(
        !history.exists(),
        "nothing was started, no history file made"
    );
}
