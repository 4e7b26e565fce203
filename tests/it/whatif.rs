//! What-if: the engine against hand computations and queueing theory,
//! determinism, common random numbers, hypotheticals, forks and cancel.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mezzanine::whatif::model_file::{load_model, parse_model};
use mezzanine::whatif::scenario::{Change, apply, parse_scenarios};
use mezzanine::whatif::stats::Estimate;
use mezzanine::whatif::{Engine, Model, Pool, Progress, Replications, RunOptions, Study};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/whatif")
        .join(name)
}

fn model(name: &str) -> Arc<Model> {
    Arc::new(load_model(&data(name)).unwrap())
}

fn run_once(m: &Arc<Model>, seed: u64, rep: u32) -> mezzanine::whatif::Outcome {
    Engine::new(m.clone(), seed, rep, RunOptions::default())
        .run(None)
        .unwrap()
}

#[test]
fn two_machines_in_series_finish_when_the_hand_computation_says() {
    let m = model("flow-shop.toml");
    let o = run_once(&m, 1, 0);
    // M1 runs 4, 2, 6, 2, 4 s: done at 4, 6, 12, 14, 18.
    // M2 runs 6, 3, 9, 3, 6 s from max(M1 done, M2 free):
    // 4→10, 10→13, 13→22, 22→25, 25→31.
    assert_eq!(o.order_done_s, vec![10.0, 13.0, 22.0, 25.0, 31.0]);
    assert_eq!(o.units_done, vec![9, 9]);
    // M1 works 18 of 31 s (the rest of the horizon it is starved).
    assert_eq!(o.time_in[0][0], 18.0);
    assert_eq!(o.time_in[1][0], 27.0);
    let (l, lw, _) = o.little();
    assert!((o.wip_area - o.wip_area_by_job).abs() < 1e-9);
    assert!(l > 0.0 && lw > 0.0);
}

fn single_machine(rule: &str) -> mezzanine::whatif::Outcome {
    // Five jobs, p = 3, 1, 4, 2, 5 s; due 4, 9, 8, 3, 14 s.
    let mut text = format!(
        "version = 1\nhorizon = 100\n[[station]]\nid = \"M\"\ndispatch = \"{rule}\"\n\
         [[product]]\nid = \"P\"\n[[product.step]]\nstation = \"M\"\ntime = 1\n"
    );
    for (i, (p, d)) in [(3, 4), (1, 9), (4, 8), (2, 3), (5, 14)].iter().enumerate() {
        text.push_str(&format!(
            "[[order]]\nid = \"J{}\"\nproduct = \"P\"\nquantity = {p}\ndue = {d}\n",
            i + 1
        ));
    }
    let m = Arc::new(parse_model(Path::new("single.toml"), &text).unwrap());
    run_once(&m, 1, 0)
}

fn mean_flow_and_max_lateness(o: &mezzanine::whatif::Outcome) -> (f64, f64) {
    let due = [4.0, 9.0, 8.0, 3.0, 14.0];
    let mean = o.order_done_s.iter().sum::<f64>() / 5.0;
    let lmax = o
        .order_done_s
        .iter()
        .zip(due)
        .map(|(c, d)| c - d)
        .fold(f64::MIN, f64::max);
    (mean, lmax)
}

#[test]
fn spt_minimises_mean_flow_time_and_edd_maximum_lateness() {
    let spt = single_machine("SPT");
    let edd = single_machine("EDD");
    let fifo = single_machine("FIFO");
    // SPT: J2, J4, J1, J3, J5 → 1, 3, 6, 10, 15.
    assert_eq!(spt.order_done_s, vec![6.0, 1.0, 10.0, 3.0, 15.0]);
    // EDD: J4, J1, J3, J2, J5 → 2, 5, 9, 10, 15.
    assert_eq!(edd.order_done_s, vec![5.0, 10.0, 9.0, 2.0, 15.0]);
    assert_eq!(fifo.order_done_s, vec![3.0, 4.0, 8.0, 10.0, 15.0]);
    assert_eq!(mean_flow_and_max_lateness(&spt), (7.0, 2.0));
    assert_eq!(mean_flow_and_max_lateness(&edd), (8.2, 1.0));
    assert_eq!(mean_flow_and_max_lateness(&fifo), (8.0, 7.0));
    for rule in ["CR", "ATC"] {
        let o = single_machine(rule);
        let (mean, lmax) = mean_flow_and_max_lateness(&o);
        assert!(mean >= 7.0 && lmax >= 1.0, "{rule}: {mean} {lmax}");
    }
}

#[test]
fn mm1_mean_wait_matches_queueing_theory_and_littles_law_holds() {
    let m = model("mm1.toml");
    let runs = Pool::new(2)
        .run(&[m], 0..20, 7, false, &Progress::new())
        .unwrap()
        .remove(0);
    let wq = Estimate::of(runs.iter().map(|o| o.mean_wait_s()));
    assert!(
        (wq.mean - 4.0).abs() <= wq.half_width,
        "Wq {:.3} ± {:.3} does not cover 4.0",
        wq.mean,
        wq.half_width
    );
    let l = Estimate::of(runs.iter().map(|o| o.wip()));
    assert!((l.mean - 4.0).abs() <= l.half_width.max(0.3), "L {l:?}");
    for o in &runs {
        let (l, lw, gap) = o.little();
        assert!(gap < 0.05, "L {l} vs λW {lw}");
        assert!((o.wip_area - o.wip_area_by_job).abs() / o.wip_area < 1e-9);
    }
}

fn line_study(
    changes: Vec<(String, Vec<Change>)>,
    reps: u32,
    threads: usize,
) -> mezzanine::whatif::StudyResult {
    let base = model("line.toml");
    let scenarios = changes
        .into_iter()
        .map(|(n, c)| (n, Arc::new(apply(&base, &c).unwrap())))
        .collect();
    let study = Study {
        baseline: base,
        scenarios,
        seed: 11,
        replications: Replications::Fixed(reps),
        trace: false,
    };
    Pool::new(threads)
        .run_study(&study, &Progress::new())
        .unwrap()
}

#[test]
fn same_seed_same_result_on_any_number_of_threads_and_nothing_changed_is_zero() {
    let scen = || {
        vec![
            ("null".to_string(), vec![]),
            (
                "mill down".to_string(),
                vec![Change::MachineDown {
                    machine: "MILL-1".into(),
                    from_h: 1.0,
                    for_h: 2.0,
                }],
            ),
        ]
    };
    let digests = |r: &mezzanine::whatif::StudyResult| {
        r.runs
            .iter()
            .map(|v| v.iter().map(|o| o.digest()).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    };
    let one = line_study(scen(), 8, 1);
    let two = line_study(scen(), 8, 2);
    let four = line_study(scen(), 8, 4);
    assert_eq!(digests(&one), digests(&two));
    assert_eq!(digests(&one), digests(&four));
    // Replications differ from each other.
    assert_ne!(one.runs[0][0].digest(), one.runs[0][1].digest());
    // The null scenario is the baseline, bit for bit: every difference is 0.
    assert_eq!(digests(&one)[0], digests(&one)[1]);
    let report = mezzanine::whatif::Report::new(&one);
    for k in &report.kpis {
        assert_eq!(k.diffs[0].mean, 0.0, "{}", k.name);
        assert_eq!(k.diffs[0].half_width, 0.0, "{}", k.name);
    }
}

#[test]
fn common_random_numbers_leave_other_machines_draws_alone() {
    // Changing MILL-2's cycle time leaves MILL-1 (another routing) as it
    // was until they interact: they share only the wash after them, whose
    // buffer is big enough here, so MILL-1's time in each state is identical.
    let r = line_study(
        vec![(
            "mill-2 slower".into(),
            vec![Change::CycleTime {
                machine: "MILL-2".into(),
                factor: 1.3,
            }],
        )],
        4,
        2,
    );
    for (b, s) in r.runs[0].iter().zip(&r.runs[1]) {
        assert_eq!(
            b.units_done[0], s.units_done[0],
            "the saw is upstream of both"
        );
        assert_eq!(b.time_in[1], s.time_in[1], "MILL-1's draws are its own");
        assert_ne!(b.time_in[2], s.time_in[2], "MILL-2 changed");
    }
}

#[test]
fn each_hypothetical_moves_the_outcome_the_expected_way() {
    let down = Change::MachineDown {
        machine: "MILL-1".into(),
        from_h: 0.0,
        for_h: 4.0,
    };
    let r = line_study(
        vec![
            ("down".into(), vec![down]),
            (
                "faster".into(),
                vec![Change::CycleTime {
                    machine: "MILL-1".into(),
                    factor: 0.6,
                }],
            ),
            (
                "mttr x3".into(),
                vec![Change::Mttr {
                    machine: "MILL-1".into(),
                    factor: 3.0,
                }],
            ),
            (
                "mtbf x0.3".into(),
                vec![Change::Mtbf {
                    machine: "MILL-1".into(),
                    factor: 0.3,
                }],
            ),
            (
                "scrap".into(),
                vec![Change::ScrapRate {
                    machine: "MILL-1".into(),
                    rate: 0.3,
                }],
            ),
            (
                "overtime".into(),
                vec![Change::Overtime {
                    from_h: 0.0,
                    for_h: 16.0,
                }],
            ),
            (
                "shift off".into(),
                vec![Change::ShiftOff {
                    from_h: 1.0,
                    for_h: 3.0,
                }],
            ),
            (
                "alternative".into(),
                vec![Change::Alternative {
                    product: "housing".into(),
                    step: 2,
                    machine: "MILL-2".into(),
                }],
            ),
            (
                "rush".into(),
                vec![Change::RushOrder {
                    id: "RUSH".into(),
                    product: "housing".into(),
                    quantity: 30,
                    due_h: Some(2.0),
                    release_h: 0.0,
                }],
            ),
        ],
        10,
        2,
    );
    let report = mezzanine::whatif::Report::new(&r);
    let kpi = |name: &str| report.kpis.iter().find(|k| k.name == name).unwrap().clone();
    let units = kpi("units completed");
    let tard = kpi("total tardiness");
    let later = |v: usize| units.diffs[v - 1].mean < 0.0 || tard.diffs[v - 1].mean > 0.0;
    let earlier = |v: usize| units.diffs[v - 1].mean > 0.0 || tard.diffs[v - 1].mean < 0.0;
    assert!(
        later(1),
        "machine down: {:?} {:?}",
        units.diffs[0],
        tard.diffs[0]
    );
    assert!(
        earlier(2),
        "faster: {:?} {:?}",
        units.diffs[1],
        tard.diffs[1]
    );
    assert!(later(3), "mttr: {:?}", units.diffs[2]);
    assert!(later(4), "mtbf: {:?}", units.diffs[3]);
    assert!(units.diffs[4].mean < 0.0, "scrap: {:?}", units.diffs[4]);
    assert!(earlier(6), "overtime: {:?}", units.diffs[5]);
    assert!(later(7), "shift off: {:?}", units.diffs[6]);
    assert!(
        earlier(8),
        "alternative: {:?} {:?}",
        units.diffs[7],
        tard.diffs[7]
    );
    // The rush order is an order more (and the others wait for it).
    assert_eq!(report.orders.len(), 4);
    let orders_done = kpi("orders done");
    assert!(orders_done.values[9].mean >= orders_done.values[0].mean);
    // Every hypothetical with a down machine is significantly worse.
    assert!(units.diffs[0].significant());
}

#[test]
fn a_study_is_cancelled_within_50_ms() {
    let mut m = (*model("mm1.toml")).clone();
    m.horizon_s = 1e12;
    let m = Arc::new(m);
    let progress = Progress::new();
    let p2 = progress.clone();
    let handle = std::thread::Builder::new()
        .name("whatif-test".into())
        .spawn(move || Pool::new(2).run(&[m], 0..4, 1, false, &p2).is_err())
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    progress.cancel();
    let cancelled = handle.join().unwrap();
    let took = t.elapsed();
    assert!(cancelled);
    assert!(took < Duration::from_millis(50), "took {took:?}");
}

#[test]
fn scenario_and_model_files_report_problems_at_line_and_column() {
    let err = parse_scenarios(
        Path::new("s.toml"),
        "version = 1\n[[scenario]]\nname = \"x\"\n[[scenario.change]]\nkind = \"machine_dwn\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("s.toml:5:8"), "{err}");
    assert!(err.contains("machine_dwn"), "{err}");
    let err = parse_model(
        Path::new("m.toml"),
        "version = 1\nhorizon = 10\n[[station]]\nid = \"A\"\n[[product]]\nid = \"P\"\n\
         [[product.step]]\nstation = \"B\"\ntime = { dist = \"exp\", mean = -1 }\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("m.toml:8:11: no station \"B\""), "{err}");
    assert!(err.contains("m.toml:9:8"), "{err}");
    let err = parse_model(Path::new("m.toml"), "version = 2\nhorizon = 1\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("m.toml:1:11"), "{err}");
    let s = parse_scenarios(
        Path::new("s.toml"),
        "version = 1\nreplications = 5\n[[scenario]]\nname = \"down\"\n[[scenario.change]]\n\
         kind = \"machine_down\"\nmachine = \"NOPE\"\nfrom_h = 0\nfor_h = 1\n",
    )
    .unwrap();
    let e = apply(&model("line.toml"), &s.scenarios[0].changes).unwrap_err();
    assert!(e.contains("NOPE"), "{e}");
}

// --- forks of a live world --------------------------------------------------

use bevy::prelude::*;
use mezzanine::bench::whatif::{live_world, model_of};
use mezzanine::registry::AssetRegistry;
use mezzanine::whatif::fork::{Fork, SimClock, SimMachine, SimOrder};

const AT_US: i64 = 1_780_000_000_000_000;

fn demo_registry() -> AssetRegistry {
    AssetRegistry::new(mezzanine::demo::plant::PlantSpec::demo().registry())
}

/// Everything of the live world a fork reads, as text.
pub(crate) fn live_digest(world: &mut World) -> String {
    let mut states: Vec<String> = world
        .query::<(&mezzanine::twin::BoundAsset, &mezzanine::twin::AssetState)>()
        .iter(world)
        .map(|(b, s)| format!("{b:?}{s:?}"))
        .collect();
    states.sort();
    let book = &world.resource::<mezzanine::mes::MesState>().0.book;
    let mut orders: Vec<String> = book.orders.values().map(|o| format!("{o:?}")).collect();
    orders.sort();
    let mut assets: Vec<String> = book.assets.iter().map(|a| format!("{a:?}")).collect();
    assets.sort();
    format!("{states:?}{orders:?}{assets:?}{}", world.entities().len())
}

#[test]
fn a_fork_reads_the_live_world_once_and_leaves_it_unchanged() {
    let reg = demo_registry();
    let mut live = live_world(&reg, 24, AT_US);
    let before = live_digest(&mut live);
    let model = Arc::new(model_of(&live, AT_US));
    assert_eq!(model.origin_us, AT_US);
    assert!(model.stations.iter().any(|s| s.id == "L1-MILL-03"));
    assert_eq!(model.orders.len(), 24);
    // A fork in its own world, and a study with a scenario beside it.
    let mut fork = Fork::new(model.clone(), 1, 0);
    let machines = fork.world.query::<&SimMachine>().iter(&fork.world).count();
    let orders = fork.world.query::<&SimOrder>().iter(&fork.world).count();
    assert_eq!((machines, orders), (model.stations.len(), 24));
    fork.advance_to(3.0 * 3600.0);
    assert_eq!(fork.clock().now_s, 3.0 * 3600.0);
    assert_eq!(
        fork.world.resource::<SimClock>().now_us(),
        AT_US + 3 * 3_600_000_000
    );
    let done = fork
        .world
        .query::<&SimOrder>()
        .iter(&fork.world)
        .filter(|o| o.done_s.is_some())
        .count();
    assert!(done > 0, "no order done in 3 h");
    let working = fork
        .world
        .query::<&SimMachine>()
        .iter(&fork.world)
        .filter(|m| m.units_done > 0)
        .count();
    assert!(working >= 6, "{working} machines made parts");
    let down = Arc::new(
        apply(
            &model,
            &[Change::MachineDown {
                machine: "L1-MILL-03".into(),
                from_h: 0.0,
                for_h: 2.0,
            }],
        )
        .unwrap(),
    );
    let study = Study {
        baseline: model,
        scenarios: vec![("mill 3 down".into(), down)],
        seed: 3,
        replications: Replications::Fixed(5),
        trace: false,
    };
    let r = Pool::new(2).run_study(&study, &Progress::new()).unwrap();
    assert_eq!(r.runs[1].len(), 5);
    // The live world is as it was.
    assert_eq!(live_digest(&mut live), before);
}

#[test]
fn a_fork_stepped_by_frames_equals_one_run_to_the_horizon() {
    let reg = demo_registry();
    let live = live_world(&reg, 24, AT_US);
    let model = Arc::new(model_of(&live, AT_US));
    let mut fork = Fork::new(model.clone(), 9, 2);
    for minute in 1..=480 {
        fork.advance_to(f64::from(minute) * 60.0);
    }
    let stepped = fork
        .world
        .remove_resource::<mezzanine::whatif::fork::EngineState>()
        .unwrap()
        .0
        .finish_outcome();
    let whole = Engine::new(model, 9, 2, RunOptions::default())
        .run(None)
        .unwrap();
    assert_eq!(stepped.digest(), whole.digest());
}

// --- the command line and the benchmark -------------------------------------

fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_mezzanine"))
}

#[test]
fn whatif_command_prints_intervals_and_writes_csv_and_a_parquet_trace() {
    let dir = tempfile::tempdir().unwrap();
    let scen = dir.path().join("s.toml");
    std::fs::write(
        &scen,
        "version = 1\nname = \"mill down\"\nreplications = 6\nseed = 4\n\
         [[scenario]]\nname = \"MILL-1 down 2 h\"\n[[scenario.change]]\nkind = \"machine_down\"\n\
         machine = \"MILL-1\"\nfrom_h = 1\nfor_h = 2\n",
    )
    .unwrap();
    let (csv, trace) = (dir.path().join("k.csv"), dir.path().join("t.parquet"));
    let out = bin()
        .args(["whatif"])
        .arg(&scen)
        .arg("--model")
        .arg(data("line.toml"))
        .arg("--csv")
        .arg(&csv)
        .arg("--trace")
        .arg(&trace)
        .arg("--pack")
        .arg(dir.path().join("pack"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("MILL-1 down from +1 h for 2 h"), "{text}");
    assert!(text.contains("Δ MILL-1 down 2 h"), "{text}");
    assert!(text.contains("Little's law"), "{text}");
    assert!(text.contains("Bottleneck, baseline:"), "{text}");
    let csv_text = std::fs::read_to_string(&csv).unwrap();
    assert!(csv_text.starts_with("kpi,unit,variant,mean"));
    assert!(csv_text.contains("throughput,jobs/h,MILL-1 down 2 h,"));
    let conn = duckdb::Connection::open_in_memory().unwrap();
    let (states, jobs, variants): (i64, i64, i64) = conn
        .query_row(
            &format!(
                "SELECT count(*) FILTER (kind = 'state'), count(*) FILTER (kind = 'job'),
                        count(DISTINCT variant) FROM read_parquet('{}')",
                trace.display()
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert!(states > 10 && jobs > 10, "{states} {jobs}");
    assert_eq!(variants, 2);
    // The meeting pack from the command line: the report and the file to
    // run it again.
    let pdf = std::fs::read(dir.path().join("pack/report.pdf")).unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    let again = mezzanine::whatif::scenario::load_scenarios(&dir.path().join("pack/scenario.toml"))
        .unwrap();
    assert_eq!(again.name, "mill down");
    assert!(text.contains("wrote the meeting pack"), "{text}");
    // A bad scenario file: the line and column, exit code 2.
    std::fs::write(&scen, "version = 1\n[[scenario]]\nname = 3\n").unwrap();
    let out = bin()
        .arg("whatif")
        .arg(&scen)
        .arg("--model")
        .arg(data("line.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("s.toml:3:8"), "{err}");
}

#[test]
fn bench_whatif_prints_its_table() {
    let out = bin().args(["bench", "whatif", "--quick"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for row in [
        "M/M/1",
        "fork: demo plant",
        "fork: synthetic plant",
        "one 8-h shift",
        "100 replications",
    ] {
        assert!(text.contains(row), "{row} missing:\n{text}");
    }
}

// --- back-testing against a recorded demo run -------------------------------

use mezzanine::contract::Contract;
use mezzanine::demo::mes::{MesSim, ShopFloor};
use mezzanine::demo::plc::PlcSim;
use mezzanine::history::{HistoryWriter, Store, WriterMsg, WriterSettings};
use mezzanine::whatif::backtest::{BacktestSettings, backtest};

/// A PLC simulator emission as the recorder receives it over MQTT.
pub(crate) use mezzanine::demo::record::as_recorded as recorded;

/// Records `minutes` of the demo plant (its PLC and MES simulators at the
/// demo's time scale, 10) into a history file through the real writer,
/// faster than real time: the simulators are stepped by their own clocks
/// instead of waiting for the wall clock, and nothing goes over a broker.
pub(crate) fn record_demo(path: &Path, minutes: i64) -> (Arc<AssetRegistry>, i64) {
    let reg = Arc::new(demo_registry());
    let store = Store::open(path, &reg).unwrap();
    let writer = HistoryWriter::spawn(store, reg.clone(), WriterSettings::default(), 4096).unwrap();
    let start = AT_US;
    let mut plc = PlcSim::new(reg.clone(), 42, start, 10.0);
    let mut mes = MesSim::new(&reg, 42, start, 10.0);
    let floor = ShopFloor::new(&reg);
    let contract = Contract::load().unwrap();
    for step in 1..=minutes * 600 {
        let now = start + step * 100_000;
        for e in plc.step(100) {
            writer.recorder.send(recorded(e)).unwrap();
        }
        for (a, parts, scrap) in plc.counters() {
            floor.set(a, parts, scrap);
        }
        for m in mes.step(now, Some(&floor)) {
            let e = contract.decode(&m.payload, &m.topic).unwrap();
            writer.app.send(WriterMsg::mes_event(&e)).unwrap();
        }
        // The MES's plan as a poll would record it, once a minute.
        if step % 600 == 0 {
            writer
                .app
                .send(WriterMsg::Schedule {
                    ts_us: now,
                    source: "MES API (polled)".into(),
                    schedule: mes.schedule_b2mml(now),
                })
                .unwrap();
        }
    }
    writer.flush().unwrap();
    writer.join();
    (reg, start)
}

/// Per machining asset: the deviation and mean of the parts the demo PLC
/// simulator makes in minutes [from, to) over `seeds` seeds.
fn demo_parts_sd(
    reg: &Arc<AssetRegistry>,
    seeds: u64,
    from_min: i64,
    to_min: i64,
) -> std::collections::HashMap<String, (f64, f64)> {
    let mut per: std::collections::HashMap<String, Vec<f64>> = Default::default();
    for seed in 100..100 + seeds {
        let mut plc = PlcSim::new(reg.clone(), seed, AT_US, 10.0);
        for _ in 0..from_min * 600 {
            plc.step(100);
        }
        let a: Vec<(mezzanine::registry::AssetIdx, u64, u64)> = plc.counters().collect();
        for _ in from_min * 600..to_min * 600 {
            plc.step(100);
        }
        for ((asset, p0, _), (_, p1, _)) in a.iter().zip(plc.counters()) {
            let id = reg.get(*asset).unwrap().id.clone();
            per.entry(id).or_default().push((p1 - p0) as f64);
        }
    }
    per.into_iter()
        .map(|(id, v)| {
            let e = Estimate::of(v.iter().copied());
            let sd = e.half_width / mezzanine::whatif::stats::t975(v.len() - 1)
                * (v.len() as f64).sqrt();
            (id, (sd, e.mean))
        })
        .collect()
}

#[test]
fn a_back_test_on_a_recorded_demo_run_predicts_parts_and_states_within_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo.duckdb");
    // 180 recorded minutes (30 plant hours): fit on the first 150,
    // back-test the last 30.
    let (reg, start) = record_demo(&path, 180);
    let store = Store::open(&path, &reg).unwrap();
    let min = 60_000_000;
    let settings = BacktestSettings {
        fit_from_us: start + min,
        from_us: start + 150 * min,
        to_us: start + 180 * min,
        replications: 20,
        seed: 1,
        time_scale: 10.0,
        calendar: None,
    };
    let bt = backtest(
        &store.conn,
        &store.props,
        &reg,
        &settings,
        &Pool::new(2),
        &Progress::new(),
    )
    .unwrap();
    println!("{}", bt.to_text());
    for f in &bt.fits {
        println!("{}", f.describe().join("\n"));
    }
    let mills: Vec<_> = bt
        .machines
        .iter()
        .filter(|m| m.asset_id.contains("MILL") || m.asset_id.contains("LATHE"))
        .collect();
    assert_eq!(mills.len(), 6);
    assert!(bt.machines.iter().all(|m| !m.asset_id.contains("ROBOT")));
    // The bound comes from the variability of the plant itself: the demo's
    // PLC simulator run with other seeds over the same window gives the
    // run-to-run deviation of each machine's parts. The recorded window is
    // one such run; the fit window is another, five times as long, so the
    // fitted rate carries a fifth of that variance; and the simulation's
    // mean has its own spread. Three deviations of the sum.
    let plant_sd = demo_parts_sd(&reg, 12, 150, 180);
    let mut cv_sum = 0.0;
    for m in &mills {
        let actual = m.actual_parts.expect("recorded parts") as f64;
        assert!(actual > 10.0, "{}: {actual} parts", m.asset_id);
        let (sd, mean) = plant_sd[&m.asset_id];
        cv_sum += sd / mean;
        let sim_sd = m.sim_parts.half_width / 2.09;
        let bound = 3.0 * (sd * sd * (1.0 + 30.0 / 150.0) + sim_sd * sim_sd).sqrt();
        println!(
            "{}: simulated {:.1}, recorded {actual}, plant run-to-run sd {sd:.1} (mean {mean:.1}), bound ±{bound:.1}",
            m.asset_id, m.sim_parts.mean
        );
        assert!(
            (m.sim_parts.mean - actual).abs() <= bound,
            "{}: simulated {:.1} vs recorded {actual} (bound {bound:.1})",
            m.asset_id,
            m.sim_parts.mean
        );
    }
    // Mean absolute percentage error: about 0.8 × the coefficient of
    // variation for pure noise; twice that is the bound.
    let (mape, _) = bt.parts_error();
    let mape_bound = 2.0 * 100.0 * cv_sum / mills.len() as f64;
    println!("parts MAPE {mape:.1} % (bound {mape_bound:.1} %)");
    assert!(
        mape < mape_bound,
        "parts MAPE {mape:.1} % over {mape_bound:.1} %"
    );
    let (cm, _, _) = bt.completion_error();
    assert!(!bt.completions.is_empty());
    assert!(cm.is_finite());
}

#[test]
fn whatif_forks_the_recorded_plant_with_its_shift_calendar() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo.duckdb");
    let _ = record_demo(&path, 60);
    let cal = dir.path().join("shifts.toml");
    std::fs::write(
        &cal,
        "version = 1\ntime_zone = \"Europe/Paris\"\n[[shift]]\nname = \"day\"\n\
         days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\n\
         start = \"06:00\"\nend = \"22:00\"\nbreaks = [[\"12:00\", \"12:30\"]]\n",
    )
    .unwrap();
    let scen = dir.path().join("s.toml");
    std::fs::write(
        &scen,
        "version = 1\nreplications = 5\nhorizon_h = 2\n[[scenario]]\nname = \"mill 3 down\"\n\
         [[scenario.change]]\nkind = \"machine_down\"\nmachine = \"L1-MILL-03\"\nfrom_h = 0\nfor_h = 1\n",
    )
    .unwrap();
    let out = bin()
        .arg("whatif")
        .arg(&scen)
        .args(["--at", "latest", "--fit-hours", "1"])
        .arg("--history")
        .arg(&path)
        .arg("--registry")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scenes/demo-plant.toml"))
        .arg("--calendar")
        .arg(&cal)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("shift calendar: yes"), "{text}");
    assert!(text.contains("forked at 2026-05-28T"), "{text}");
    assert!(text.contains("L1-MILL-03: 1.0 h recorded"), "{text}");
    assert!(text.contains("cycle time 2"), "{text}");
    assert!(text.contains("L1-MILL-03 down from +0 h for 1 h"), "{text}");
    assert!(text.contains("Bottleneck, mill 3 down:"), "{text}");
}

#[test]
fn replications_run_until_the_half_width_is_small_enough() {
    let base = model("line.toml");
    let down = Arc::new(
        apply(
            &base,
            &[Change::CycleTime {
                machine: "MILL-1".into(),
                factor: 1.2,
            }],
        )
        .unwrap(),
    );
    let study = |threads: usize| {
        let s = Study {
            baseline: base.clone(),
            scenarios: vec![("slower".into(), down.clone())],
            seed: 5,
            replications: Replications::UntilHalfWidth { pct: 1.5, max: 400 },
            trace: false,
        };
        Pool::new(threads).run_study(&s, &Progress::new()).unwrap()
    };
    let r = study(2);
    let n = r.runs[0].len();
    assert!(n > 10 && n % 10 == 0 && n < 400, "{n} replications");
    let tp = |v: &Vec<mezzanine::whatif::Outcome>| {
        v.iter().map(|o| o.throughput_per_h()).collect::<Vec<_>>()
    };
    let base_tp = Estimate::of(tp(&r.runs[0]));
    let diff = Estimate::paired(&tp(&r.runs[0]), &tp(&r.runs[1]));
    assert!(
        diff.half_width <= 0.015 * base_tp.mean,
        "{diff:?} vs {base_tp:?}"
    );
    // One batch fewer would not have been enough, and the stopping point
    // does not depend on the threads.
    let before = Estimate::paired(&tp(&r.runs[0])[..n - 10], &tp(&r.runs[1])[..n - 10]);
    assert!(
        before.half_width > 0.015 * Estimate::of(tp(&r.runs[0])[..n - 10].iter().copied()).mean
    );
    assert_eq!(study(1).runs[1].len(), n);
}
