//! The job-shop solver against the classic instances: parsing and its
//! errors, feasibility of every schedule it returns, the evaluator never
//! below the lower bound, determinism, known optima, and the command.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mezzanine::schedule::instance::{Instance, load, parse_fjsp, parse_jsp};
use mezzanine::schedule::solver::{Evaluator, SolveOptions, check, construct, solve};

fn bench(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches/jobshop")
        .join(name)
}

fn iterations(n: u64, seed: u64) -> SolveOptions {
    SolveOptions {
        time_limit: Duration::from_secs(600),
        max_iterations: Some(n),
        seed,
    }
}

#[test]
fn both_formats_parse_and_broken_files_name_the_line() {
    let ft06 = load(&bench("ft06.txt")).unwrap();
    assert_eq!((ft06.jobs.len(), ft06.machines, ft06.ops.len()), (6, 6, 36));
    assert!(ft06.is_classic());
    assert_eq!(ft06.ops[0].alternatives, vec![(2, 1)]);
    let mk01 = load(&bench("mk01.fjs")).unwrap();
    assert_eq!(
        (mk01.jobs.len(), mk01.machines, mk01.ops.len()),
        (10, 6, 55)
    );
    assert!(!mk01.is_classic());
    // Machines from 1 in the file, from 0 here.
    assert_eq!(mk01.ops[0].alternatives, vec![(0, 5), (2, 4)]);
    let e = parse_jsp(Path::new("x.txt"), "2 2\n0 3 1 4\n0 2 7 1\n")
        .unwrap_err()
        .to_string();
    assert_eq!(e, "x.txt:3: machine 7 is not below 2");
    let e = parse_jsp(Path::new("x.txt"), "2 2\n0 3 1\n0 1 1 1\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("x.txt:2: expected `machine time` pairs"),
        "{e}"
    );
    let e = parse_jsp(Path::new("x.txt"), "3 2\n0 3 1 4\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("3 jobs announced, only 1 job line follows"),
        "{e}"
    );
    let e = parse_fjsp(Path::new("y.fjs"), "1 2\n1 2 1 3 9 4\n")
        .unwrap_err()
        .to_string();
    assert_eq!(e, "y.fjs:2: machine 9 is not in 1..=2");
    let e = parse_fjsp(Path::new("y.fjs"), "1 2\n1 1 x 3\n")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("y.fjs:2: \"x\" is not a whole number"), "{e}");
}

/// A random feasible schedule: jobs dispatched in a random order.
fn random_schedule(inst: &Instance, seed: u64) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = vec![0; inst.jobs.len()];
    let mut machine = vec![0; inst.ops.len()];
    let mut seq = vec![Vec::new(); inst.machines];
    loop {
        let open: Vec<usize> = (0..inst.jobs.len())
            .filter(|&j| next[j] < inst.jobs[j].len())
            .collect();
        if open.is_empty() {
            break;
        }
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let j = open[(s % open.len() as u64) as usize];
        let o = inst.jobs[j][next[j]];
        let alts = &inst.ops[o].alternatives;
        let m = alts[((s >> 8) % alts.len() as u64) as usize].0;
        machine[o] = m;
        seq[m].push(o);
        next[j] += 1;
    }
    (machine, seq)
}

#[test]
fn the_evaluator_never_goes_below_the_optimum_and_solutions_are_feasible() {
    for (file, optimum) in [("ft06.txt", 55), ("la01.txt", 666), ("mk01.fjs", 40)] {
        let inst = load(&bench(file)).unwrap();
        let mut ev = Evaluator::new(&inst);
        for seed in 0..300 {
            let (m, s) = random_schedule(&inst, seed);
            let c = ev.eval(&m, &s).expect("a dispatch order is acyclic");
            assert!(c >= optimum, "{file}: {c} below the optimum {optimum}");
        }
        let (m, s) = construct(&inst);
        assert!(ev.eval(&m, &s).unwrap() >= optimum);
        let r = solve(&inst, iterations(200_000, 1), None);
        assert_eq!(check(&inst, &r.best), None, "{file}");
        assert!(r.best.makespan >= optimum);
        assert!(r.best.makespan <= r.initial_makespan);
    }
    // A sequence against the jobs' order is refused, not evaluated.
    let inst = load(&bench("ft06.txt")).unwrap();
    let (m, mut s) = construct(&inst);
    let a = inst.jobs[0][0];
    let b = inst.jobs[0][1];
    let (ma, mb) = (m[a], m[b]);
    s[ma].retain(|&x| x != a);
    s[mb].retain(|&x| x != b);
    s[ma].push(a);
    s[mb].insert(0, b);
    assert_eq!(Evaluator::new(&inst).eval(&m, &s), None);
}

#[test]
fn known_optima_are_reached_and_a_seed_gives_the_same_schedule() {
    for (file, optimum) in [
        ("ft06.txt", 55),
        ("la01.txt", 666),
        ("la05.txt", 593),
        ("mk01.fjs", 40),
    ] {
        let inst = load(&bench(file)).unwrap();
        let r = solve(&inst, iterations(300_000, 1), None);
        assert_eq!(
            r.best.makespan, optimum,
            "{file} after {} iterations",
            r.iterations
        );
        assert_eq!(check(&inst, &r.best), None);
    }
    let inst = load(&bench("ft10.txt")).unwrap();
    let a = solve(&inst, iterations(3_000, 7), None);
    let b = solve(&inst, iterations(3_000, 7), None);
    assert_eq!(a.best, b.best);
    assert_eq!(a.iterations, b.iterations);
    assert!(a.best.makespan < a.initial_makespan);
}

#[test]
fn schedule_command_prints_the_makespan_and_refuses_a_broken_file() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mezzanine"))
        .args([
            "schedule",
            "--time-limit-s",
            "2",
            "--lower-bound",
            "55",
            "--jsp",
        ])
        .arg(bench("ft06.txt"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("makespan 55"), "{text}");
    assert!(text.contains("gap 0.00 %"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "2 2\n0 3 1 4\n0 x 1 1\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mezzanine"))
        .args(["schedule", "--jsp"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.txt:3: \"x\" is not a whole number"),
        "{err}"
    );
}

// ---- The plant's problem: times, conflicts, robustness, recommendations ----

use mezzanine::contract::{ProductionRequest, Schedule};
use mezzanine::schedule::compare::{ConflictKind, executed, mes_plan};
use mezzanine::schedule::plan::{
    self, Job, Machine, Objective, Op, PlanOptions, Problem, ToolChange, evaluate,
};

fn op(job: usize, step: u32, alts: &[(usize, f64)]) -> Op {
    Op {
        job,
        step,
        alternatives: alts.to_vec(),
        in_progress: false,
    }
}

fn job(id: &str, family: u32, due_s: Option<f64>, ops: Vec<usize>) -> Job {
    Job {
        id: id.into(),
        product: format!("P{family}"),
        quantity: 10,
        family,
        release_s: 0.0,
        due_s,
        weight: 1.0,
        ops,
    }
}

/// M0 is off from 100 s to 200 s and needs 10 s to change family; M1 is
/// back at 50 s. J0: 80 s on M0, then 30 s on M1. J1: 40 s on M0, due 150 s.
fn tiny(objective: Objective) -> Problem {
    let mut m0 = Machine::new("M0");
    m0.off_s = vec![(100.0, 200.0)];
    m0.setup_default_s = 10.0;
    let mut m1 = Machine::new("M1");
    m1.available_from_s = 50.0;
    m1.unavailable_because = Some("down (test): expected back in 1 min".into());
    Problem {
        origin_us: 1_780_000_000_000_000,
        machines: vec![m0, m1],
        jobs: vec![
            job("J0", 0, None, vec![0, 1]),
            job("J1", 1, Some(150.0), vec![2]),
        ],
        ops: vec![
            op(0, 0, &[(0, 80.0)]),
            op(0, 1, &[(1, 30.0)]),
            op(1, 0, &[(0, 40.0)]),
        ],
        objective,
    }
}

#[test]
fn plant_times_follow_off_windows_setups_returns_and_tool_changes() {
    let p = tiny(Objective::Makespan);
    // J0 first on M0: J1 sets up 80–90, runs 90–100, waits out the off
    // window, ends at 230 (80 s late); J0's second step waits for M0 (80).
    let a = evaluate(&p, &[0, 1, 0], &[vec![0, 2], vec![1]]).unwrap();
    assert_eq!(
        (a.start_s[2], a.end_s[2], a.setup_s[2]),
        (90.0, 230.0, 10.0)
    );
    assert_eq!((a.start_s[1], a.end_s[1]), (80.0, 110.0));
    assert_eq!(a.kpis.makespan_s, 230.0);
    assert_eq!((a.kpis.weighted_tardiness_s, a.kpis.tardy_jobs), (80.0, 1));
    assert_eq!(plan::check(&p, &a), None);
    // J1 first: on time, J0 pays the setup and the off window.
    let b = evaluate(&p, &[0, 1, 0], &[vec![2, 0], vec![1]]).unwrap();
    assert_eq!((b.end_s[2], b.start_s[0], b.end_s[0]), (40.0, 50.0, 230.0));
    assert_eq!(
        (b.kpis.makespan_s, b.kpis.weighted_tardiness_s),
        (260.0, 0.0)
    );
    assert_eq!(plan::check(&p, &b), None);
    // The solver finds each objective's better one.
    let opts = PlanOptions {
        time_limit: Duration::from_secs(60),
        max_iterations: Some(500),
        seed: 3,
    };
    let r = plan::solve(&p, opts, None).unwrap();
    assert_eq!(r.best.kpis.makespan_s, 230.0);
    let r = plan::solve(&tiny(Objective::WeightedTardiness), opts, None).unwrap();
    assert_eq!(r.best.kpis.weighted_tardiness_s, 0.0);
    // A tool change once 50 s have been processed: before J1, 5 s more.
    let mut t = tiny(Objective::Makespan);
    t.machines[0].tool_change = Some(ToolChange {
        after_s: 50.0,
        interval_s: 100.0,
        duration_s: 5.0,
    });
    let c = evaluate(&t, &[0, 1, 0], &[vec![0, 2], vec![1]]).unwrap();
    assert_eq!(
        (c.setup_s[2], c.start_s[2], c.end_s[2]),
        (15.0, 95.0, 235.0)
    );
    assert_eq!(plan::check(&t, &c), None);
    // A running operation stays first; a plan that moves it is refused.
    let mut r = tiny(Objective::Makespan);
    r.ops[2].in_progress = true;
    assert!(evaluate(&r, &[0, 1, 0], &[vec![0, 2], vec![1]]).is_none());
    let s = plan::solve(&r, opts, None).unwrap();
    assert_eq!(s.best.sequence[0][0], 2);
    // A cycle between the machines' orders and the jobs' is no schedule.
    assert!(evaluate(&p, &[0, 0, 0], &[vec![1, 0, 2], vec![]]).is_none());
    // Objectives parse, or say what is expected.
    assert_eq!(
        Objective::parse("mix:0.25").unwrap(),
        Objective::Mix {
            tardiness: 0.25,
            makespan: 0.75
        }
    );
    let e = Objective::parse("fastest").unwrap_err().to_string();
    assert!(e.contains("expected makespan, tardiness or mix"), "{e}");
}

#[test]
fn a_down_machine_is_not_scheduled_before_its_expected_return() {
    use mezzanine::bench::whatif::{live_world, model_of};
    use mezzanine::registry::{AssetRegistry, load_registry};
    use mezzanine::schedule::live::problem_from_model;
    let at_us = 1_780_000_000_000_000;
    let reg = AssetRegistry::new(load_registry(&crate::repo("scenes/demo-plant.toml")).unwrap());
    let world = live_world(&reg, 24, at_us);
    let model = model_of(&world, at_us);
    let lp = problem_from_model(
        &model,
        &[],
        &mezzanine::schedule::live::same_class_alternatives(&reg, &model),
        Objective::WeightedTardiness,
    );
    let p = &lp.problem;
    let down: Vec<usize> = (0..p.machines.len())
        .filter(|&m| p.machines[m].available_from_s > 0.0)
        .collect();
    assert!(!down.is_empty(), "the built world has a machine down");
    for &m in &down {
        let why = p.machines[m].unavailable_because.as_deref().unwrap();
        assert!(why.contains("spindle overload"), "{why}");
    }
    assert!(p.jobs.len() >= 20 && p.ops.iter().any(|o| o.in_progress));
    // The mills of a line stand in for each other (a flexible shop).
    assert!(p.ops.iter().any(|o| o.alternatives.len() == 3));
    // The calendar's break is an off window of every machine.
    assert!(p.machines.iter().all(|m| m.off_s.len() == 1));
    let opts = PlanOptions {
        time_limit: Duration::from_secs(60),
        max_iterations: Some(300),
        seed: 11,
    };
    let r = plan::solve(p, opts, None).unwrap();
    assert_eq!(plan::check(p, &r.best), None);
    for &m in &down {
        for &o in &r.best.sequence[m] {
            assert!(
                r.best.start_s[o] >= p.machines[m].available_from_s,
                "operation {o} starts on {} at {} s, before its return at {} s",
                p.machines[m].id,
                r.best.start_s[o],
                p.machines[m].available_from_s
            );
        }
    }
    assert!(r.best.kpis.objective <= r.initial.objective);
    // The same seed, the same schedule.
    let again = plan::solve(p, opts, None).unwrap();
    assert_eq!(again.best, r.best);
}

fn request(id: &str, routing: &[&str], start_s: i64, origin_us: i64) -> ProductionRequest {
    ProductionRequest {
        id: id.into(),
        product: "P".into(),
        quantity: 10.0,
        unit: "ea".into(),
        routing: routing.iter().map(|s| s.to_string()).collect(),
        earliest_start_us: Some(origin_us + start_s * 1_000_000),
        latest_end_us: None,
    }
}

#[test]
fn the_conflict_detector_calls_out_each_kind_in_a_crafted_mes_plan() {
    let origin = 1_780_000_000_000_000;
    let a = Machine::new("A");
    let mut b = Machine::new("B");
    b.available_from_s = 600.0;
    b.unavailable_because = Some("down (spindle): expected back in 10 min".into());
    let c = Machine::new("C");
    let p = Problem {
        origin_us: origin,
        machines: vec![a, b, c],
        jobs: vec![
            job("W1", 0, Some(5000.0), vec![0, 1]),
            job("W2", 0, Some(100.0), vec![2]),
            job("W3", 0, None, vec![3]),
            job("W4", 0, None, vec![4]),
        ],
        ops: vec![
            op(0, 0, &[(0, 300.0)]),
            op(0, 1, &[(1, 100.0)]),
            op(1, 0, &[(0, 300.0)]),
            op(2, 0, &[(2, 50.0)]),
            op(3, 0, &[(1, 100.0)]),
        ],
        objective: Objective::WeightedTardiness,
    };
    let s = Schedule {
        id: "PLAN-1".into(),
        published_us: Some(origin),
        requests: vec![
            request("W1", &["A", "B"], 0, origin),
            request("W2", &["A"], 100, origin),
            request("W3", &["A"], 400, origin),
            request("W4", &["B"], 60, origin),
            request("W9", &["X-UNKNOWN"], 0, origin),
        ],
    };
    let m = mes_plan(&s, &p);
    let kinds: std::collections::BTreeSet<ConflictKind> =
        m.conflicts.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        vec![
            ConflictKind::MachineDown,
            ConflictKind::Overlap,
            ConflictKind::CannotRun,
            ConflictKind::DueImpossible
        ],
        "{:#?}",
        m.conflicts
    );
    let text = |k: ConflictKind| -> Vec<String> {
        m.conflicts
            .iter()
            .filter(|c| c.kind == k)
            .map(|c| c.message.clone())
            .collect()
    };
    // W4 on B at 60 s, B back at 600 s (W1's second step on B at 300 s is
    // the twin's layout, not a time the MES stated).
    assert_eq!(text(ConflictKind::MachineDown).len(), 1);
    assert!(text(ConflictKind::MachineDown)[0].starts_with("W4 step 1 planned on B"));
    // W2 (100–400 s) on A while W1 runs there (0–300 s): 200 s = 3 min.
    assert_eq!(text(ConflictKind::Overlap).len(), 1);
    assert!(
        text(ConflictKind::Overlap)[0].contains("overlaps W1 step 1")
            && text(ConflictKind::Overlap)[0].ends_with("on A by 3.3 min"),
        "{:?}",
        text(ConflictKind::Overlap)
    );
    // W3 runs on C only; W9 names no machine at all.
    let cannot = text(ConflictKind::CannotRun);
    assert_eq!(cannot.len(), 2, "{cannot:?}");
    assert!(
        cannot
            .iter()
            .any(|t| t.contains("W3 step 1 is planned on A, which cannot run it (it runs on C)"))
    );
    assert!(
        cannot
            .iter()
            .any(|t| t.contains("X-UNKNOWN, which is not a machine"))
    );
    // W2 needs 300 s and is due at 100 s.
    assert_eq!(text(ConflictKind::DueImpossible).len(), 1);
    assert!(text(ConflictKind::DueImpossible)[0].starts_with("W2 is due"));
    assert!(m.notes.iter().any(|n| n.contains("W9")));
    // A plan without conflicts has none.
    let clean = Schedule {
        id: "PLAN-2".into(),
        published_us: None,
        requests: vec![
            request("W1", &["A", "B"], 300, origin),
            request("W3", &["C"], 0, origin),
            request("W2", &["A"], 0, origin),
            request("W4", &["B"], 700, origin),
        ],
    };
    let mut q = p.clone();
    q.jobs[1].due_s = Some(400.0);
    let m2 = mes_plan(&clean, &q);
    assert!(m2.conflicts.is_empty(), "{:#?}", m2.conflicts);
    // The plan's sequence, run on the plant as it is, is a feasible schedule
    // that keeps the MES's order on each machine.
    let e = executed(&q, &m2).unwrap();
    assert_eq!(plan::check(&q, &e), None);
    assert_eq!(e.sequence[0], vec![2, 0]);
    assert_eq!(e.start_s[1], 600.0, "B's step waits for B's return");
    assert_eq!(e.sequence[1], vec![1, 4]);
}

#[test]
fn the_same_plan_twice_differs_by_nothing_under_uncertainty() {
    use mezzanine::bench::whatif::{live_world, model_of};
    use mezzanine::registry::{AssetRegistry, load_registry};
    use mezzanine::schedule::live::problem_from_model;
    use mezzanine::schedule::robust::{RobustOptions, compare};
    let at_us = 1_780_000_000_000_000;
    let reg = AssetRegistry::new(load_registry(&crate::repo("scenes/demo-plant.toml")).unwrap());
    let world = live_world(&reg, 12, at_us);
    let mut model = model_of(&world, at_us);
    // Breakdowns on every machine, so replications differ.
    for st in &mut model.stations {
        st.stops.push(mezzanine::whatif::model::StopMode {
            name: "breakdown".into(),
            kind: mezzanine::whatif::model::StopKind::Down,
            between: mezzanine::whatif::dist::Dist::Exponential { mean: 3600.0 },
            duration: mezzanine::whatif::dist::Dist::Exponential { mean: 600.0 },
        });
    }
    let lp = problem_from_model(&model, &[], &[], Objective::Makespan);
    let opts = PlanOptions {
        time_limit: Duration::from_secs(60),
        max_iterations: Some(100),
        seed: 2,
    };
    let twin = plan::solve(&lp.problem, opts, None).unwrap().best;
    let pool = mezzanine::whatif::Pool::new(2);
    let progress = mezzanine::whatif::Progress::new();
    let ro = RobustOptions {
        replications: 8,
        seed: 5,
    };
    let same = compare(&model, &lp, (&twin, &twin), ro, &pool, &progress).unwrap();
    assert_eq!(same.tardiness_delta_h.mean, 0.0);
    assert_eq!(same.makespan_delta_h.mean, 0.0);
    assert!(same.twin.makespan_h.half_width > 0.0, "replications vary");
    assert!(same.twin.makespan_h.mean * 3600.0 >= twin.kpis.makespan_s * 0.5);
    // The constructive start (EDD) against the search's schedule.
    let (m, s) = plan::construct(&lp.problem, plan::Rule::Edd);
    let edd = evaluate(&lp.problem, &m, &s).unwrap();
    let d = compare(&model, &lp, (&edd, &twin), ro, &pool, &progress).unwrap();
    assert_eq!(d.tardiness_delta_h.n, 8);
    assert!(d.sentence().contains("8 replications"), "{}", d.sentence());
}

#[test]
fn a_recommendation_reaches_an_independent_subscriber_and_nothing_goes_to_mes_topics() {
    use mezzanine::config::MesConfig;
    use mezzanine::mes::recommend::{Broker, Fingerprint, Recommendation, publish, topic_for};
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let port = mezzanine::demo::broker::free_port().unwrap();
    let _broker = mezzanine::demo::broker::start_embedded_broker(port).unwrap();
    let listen = |id: &str| {
        let (c, conn) = Client::new(MqttOptions::new(id, "127.0.0.1", port), 64);
        c.subscribe("#", QoS::AtLeastOnce).unwrap();
        (c, conn)
    };
    let drain = |conn: &mut rumqttc::Connection, for_ms: u64| {
        let mut got = Vec::new();
        let t0 = std::time::Instant::now();
        while t0.elapsed() < Duration::from_millis(for_ms) {
            if let Ok(Ok(Event::Incoming(Packet::Publish(p)))) =
                conn.recv_timeout(Duration::from_millis(50))
            {
                got.push((p.topic.clone(), p.retain, p.payload.to_vec()));
            }
        }
        got
    };
    let (_c1, mut before) = listen("independent-before");
    drain(&mut before, 500);
    let mes = MesConfig::default();
    let rec = Recommendation {
        id: "reschedule-test-1".into(),
        kind: "reschedule".into(),
        created: "2026-11-30T10:00:00Z".into(),
        summary: "expected 3.1 ± 0.4 h less lateness".into(),
        fingerprint: Fingerprint::new(vec![1], 1_780_000_000_000_000, "test", b"inputs"),
        details: serde_json::json!({"orders": []}),
        advisory: true,
    };
    let broker = Broker {
        host: "127.0.0.1".into(),
        port,
        client_id: "twin-recommend-test".into(),
        username: None,
        password: None,
        tls: None,
    };
    let topic = publish(&broker, &mes, &rec, Duration::from_secs(10)).unwrap();
    assert_eq!(topic, "acme/lyon/twin/recommendations/reschedule-test-1");
    // Under the MES's namespace: refused before anything is sent.
    let mut bad = mes.clone();
    bad.recommendations_topic = "acme/lyon/mes/plans".into();
    let e = publish(&broker, &bad, &rec, Duration::from_secs(10))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("lies under the MES's topics (acme/lyon/mes)"),
        "{e}"
    );
    bad.recommendations_topic = "acme/lyon/twin/+".into();
    assert!(topic_for(&bad, "x").is_err());
    let live = drain(&mut before, 1500);
    assert_eq!(
        live.len(),
        1,
        "{:?}",
        live.iter().map(|x| &x.0).collect::<Vec<_>>()
    );
    assert_eq!(live[0].0, topic);
    let v: serde_json::Value = serde_json::from_slice(&live[0].2).unwrap();
    assert_eq!(v["advisory"], true);
    assert_eq!(v["fingerprint"]["fork_us"], 1_780_000_000_000_000i64);
    assert_eq!(
        v["fingerprint"]["inputs_sha256"],
        // sha256sum of the bytes `inputs`
        "32381523e63197c929b67f793a8098bed0ae3a6fa902634fdbcc6fa4567f3346"
    );
    // Retained: a subscriber that comes later still gets it.
    let (_c2, mut later) = listen("independent-later");
    let got = drain(&mut later, 1500);
    assert!(
        got.iter().any(|(t, retain, _)| t == &topic && *retain),
        "{:?}",
        got.iter().map(|x| (&x.0, x.1)).collect::<Vec<_>>()
    );
    assert!(
        got.iter()
            .chain(&live)
            .all(|(t, _, _)| !t.starts_with("acme/lyon/mes"))
    );
}

#[test]
fn schedule_from_history_compares_with_the_mes_plan_and_writes_b2mml() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.duckdb");
    let _ = crate::whatif::record_demo(&db, 40);
    let xml = dir.path().join("plan.xml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mezzanine"))
        .args(["schedule", "--from-history", "--history"])
        .arg(&db)
        .args([
            "--time-limit-s",
            "1",
            "--replications",
            "6",
            "--threads",
            "2",
            "--b2mml",
        ])
        .arg(&xml)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    println!("{stdout}");
    assert!(stdout.contains("MES plan SCHED-"), "{stdout}");
    assert!(stdout.contains("twin schedule"), "{stdout}");
    assert!(stdout.contains("robustness: 6 replications"), "{stdout}");
    assert!(stdout.contains("Δ twin − MES"), "{stdout}");
    let doc = std::fs::read_to_string(&xml).unwrap();
    let parsed = mezzanine::mes::b2mml::parse(&doc, Path::new("plan.xml"), None).unwrap();
    assert!(parsed.id.starts_with("reschedule-"));
    assert!(!parsed.requests.is_empty());
    // A moment outside the recording is refused with the recording's range.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mezzanine"))
        .args(["schedule", "--from-history", "--history"])
        .arg(&db)
        .args(["--at", "2001-01-01T00:00:00Z"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("outside the recording"));
}
