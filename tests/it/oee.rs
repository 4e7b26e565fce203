//! OEE by ISO 22400-2: hand-computed cases, each exact (breaks, a
//! breakdown, micro-stops on both sides of the threshold, reduced speed,
//! start-up and production rejects, changeovers both ways, planned
//! downtime over a breakdown, a counter reset, roll-up weights, shifts
//! across midnight and daylight-saving changes), the rules file's errors,
//! the ground truth of the demo PLC simulator, and the command.

use std::path::Path;

use mezzanine::calendar::ShiftCalendar;
use mezzanine::oee::{Loss, LossRules, MachineInput, Oee, Segment, compute};
use mezzanine::twin::MachineState;

/// 2026-11-30 (a Monday) at hh:mm UTC, µs.
fn at(h: i64, m: i64) -> i64 {
    1_796_000_000_000_000 - 1_796_000_000_000_000 % 86_400_000_000 + (h * 3600 + m * 60) * 1_000_000
}

fn seg(a: (i64, i64), b: (i64, i64), state: MachineState, reason: &str) -> Segment {
    Segment {
        start_us: at(a.0, a.1),
        end_us: at(b.0, b.1),
        state,
        reason: reason.into(),
    }
}

const DAY: &str = "version = 1\ntime_zone = \"UTC\"\n[[shift]]\nname = \"day\"\n\
    days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\n\
    start = \"06:00\"\nend = \"14:00\"\nbreaks = [[\"09:00\", \"09:15\"], [\"12:00\", \"12:30\"]]\n";

fn planned(cal: &ShiftCalendar) -> Vec<(i64, i64)> {
    cal.working(at(0, 0), at(24, 0))
        .iter()
        .map(|w| (w.start_us, w.end_us))
        .collect()
}

/// One shift 06:00–14:00 with breaks of 15 and 30 min (7.25 h planned):
/// running, a 30-min breakdown, a 30-min changeover, a 1-min stop (below
/// the 2-min threshold) and a 5-min one (above), then running; 300 parts
/// at an ideal 60 s; 3 rejects 5 min after the changeover, 2 later.
fn shift_machine() -> MachineInput {
    use MachineState::*;
    MachineInput {
        asset_id: "M1".into(),
        ideal_cycle_s: Some(60.0),
        ideal_source: "test".into(),
        segments: vec![
            seg((6, 0), (7, 0), Running, ""),
            seg((7, 0), (7, 30), Down, "spindle"),
            seg((7, 30), (8, 0), Setup, "changeover"),
            seg((8, 0), (8, 1), Idle, "micro-stop"),
            seg((8, 1), (8, 6), Idle, "waiting"),
            seg((8, 6), (14, 0), Running, ""),
        ],
        part_counter: vec![
            (at(5, 59), 0.0),
            (at(7, 0), 60.0),
            (at(8, 0), 60.0),
            (at(10, 0), 160.0),
            (at(14, 0), 300.0),
        ],
        scrap_counter: vec![(at(5, 59), 0.0), (at(8, 5), 3.0), (at(11, 0), 5.0)],
        // The MES's own count: two operations in the shift, one after it.
        mes_completions: vec![
            (at(10, 0), 150.0, 3.0),
            (at(13, 0), 140.0, 2.0),
            (at(15, 0), 10.0, 0.0),
        ],
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
}

fn check_identity(o: &Oee) {
    let (a, p, q, oee) = (
        o.availability().unwrap(),
        o.performance().unwrap(),
        o.quality().unwrap(),
        o.oee().unwrap(),
    );
    assert!(close(a * p * q, oee), "A×P×Q {} ≠ OEE {oee}", a * p * q);
    assert!(close(oee, o.fully_productive_s / o.planned_s));
    assert!((0.0..=1.0).contains(&a), "availability {a}");
    // Planned busy time is run time plus the availability losses, exactly.
    assert!(close(o.planned_s, o.run_s + o.loss_s('A')));
}

#[test]
fn a_shift_with_breaks_stops_and_rejects_is_computed_exactly() {
    let cal = ShiftCalendar::parse(Path::new("day.toml"), DAY).unwrap();
    let o = compute(&shift_machine(), &planned(&cal), &LossRules::default());
    assert_eq!(o.planned_s, 26_100.0);
    // 1 h + 1 min micro-stop + 5 h 54 min − 45 min of breaks.
    assert_eq!(o.run_s, 3600.0 + 60.0 + 18_540.0);
    assert_eq!(o.losses[&(Loss::Breakdown, "spindle".into())], 1800.0);
    assert_eq!(o.losses[&(Loss::Setup, "changeover".into())], 1800.0);
    assert_eq!(o.losses[&(Loss::Stop, "waiting".into())], 300.0);
    assert_eq!(o.losses[&(Loss::MicroStop, "micro-stop".into())], 60.0);
    assert_eq!((o.produced, o.good), (300.0, 295.0));
    assert_eq!((o.startup_rejects, o.production_rejects), (3.0, 2.0));
    assert_eq!(o.net_run_s, 18_000.0);
    assert_eq!(o.fully_productive_s, 17_700.0);
    assert_eq!(
        o.losses[&(Loss::ReducedSpeed, String::new())],
        22_200.0 - 18_000.0 - 60.0
    );
    assert_eq!(o.losses[&(Loss::StartupRejects, String::new())], 180.0);
    assert_eq!(o.losses[&(Loss::ProductionRejects, String::new())], 120.0);
    assert!(close(o.oee().unwrap(), 17_700.0 / 26_100.0));
    check_identity(&o);
    assert!(o.warnings.is_empty(), "{:?}", o.warnings);
    // The MES's quality, beside: the two operations inside the shift.
    assert_eq!((o.mes_good, o.mes_scrap, o.mes_operations), (290.0, 5.0, 2));
    assert!(close(o.mes_quality().unwrap(), 290.0 / 295.0));
    // The Pareto starts with the largest loss.
    assert_eq!(o.pareto()[0].0, Loss::ReducedSpeed);

    // Changeovers as planned time: out of planned busy time.
    let planned_rules = LossRules {
        changeover_counts: false,
        ..LossRules::default()
    };
    let c = compute(&shift_machine(), &planned(&cal), &planned_rules);
    assert_eq!(c.planned_s, 26_100.0 - 1800.0);
    assert_eq!(c.run_s, o.run_s);
    assert!(c.availability().unwrap() > o.availability().unwrap());
    check_identity(&c);

    // A lower threshold makes the 5-min stop a micro-stop (run time).
    let low = LossRules {
        micro_stop_threshold_s: 600.0,
        ..LossRules::default()
    };
    let l = compute(&shift_machine(), &planned(&cal), &low);
    assert_eq!(l.run_s, o.run_s + 300.0);
    check_identity(&l);
}

#[test]
fn planned_downtime_over_a_breakdown_never_makes_availability_negative() {
    let text = format!(
        "{DAY}[[planned_downtime]]\nfrom = \"2026-11-30 07:15\"\nto = \"2026-11-30 07:45\"\n"
    );
    let cal = ShiftCalendar::parse(Path::new("pd.toml"), &text).unwrap();
    // The day of `at` must be the calendar's day for this case.
    assert_eq!(mezzanine::mes::rfc3339(at(7, 15)), "2026-11-30T07:15:00Z");
    let o = compute(&shift_machine(), &planned(&cal), &LossRules::default());
    assert_eq!(o.planned_s, 26_100.0 - 1800.0);
    assert_eq!(o.losses[&(Loss::Breakdown, "spindle".into())], 900.0);
    assert_eq!(o.losses[&(Loss::Setup, "changeover".into())], 900.0);
    check_identity(&o);
    // A machine down through the whole shift: availability 0, not below.
    let mut down = shift_machine();
    down.segments = vec![seg((5, 0), (15, 0), MachineState::Down, "fire")];
    down.part_counter.clear();
    down.scrap_counter.clear();
    let d = compute(&down, &planned(&cal), &LossRules::default());
    assert_eq!(d.availability(), Some(0.0));
    assert_eq!(d.run_s, 0.0);
    // A stop the rules call planned (a break taken on the machine) leaves
    // planned busy time.
    let rules = LossRules::parse(
        Path::new("r.toml"),
        "version = 1\n[[loss]]\nstate = \"idle\"\nreason = \"waiting\"\nloss = \"planned\"\n",
    )
    .unwrap();
    let w = compute(&shift_machine(), &planned(&cal), &rules);
    assert_eq!(w.planned_s, 26_100.0 - 1800.0 - 300.0);
    check_identity(&w);
}

#[test]
fn counter_resets_performance_above_100_and_rollups_weighted_by_planned_time() {
    let all = vec![(at(6, 0), at(14, 0))];
    let mut m = shift_machine();
    m.segments = vec![seg((6, 0), (14, 0), MachineState::Running, "")];
    // 0 → 100 → 150, reset, 20 → 50: 200 parts.
    m.part_counter = vec![
        (at(5, 0), 0.0),
        (at(7, 0), 100.0),
        (at(8, 0), 150.0),
        (at(9, 0), 20.0),
        (at(10, 0), 50.0),
    ];
    m.scrap_counter.clear();
    let o = compute(&m, &all, &LossRules::default());
    assert_eq!(o.produced, 200.0);
    // Too long an ideal cycle time: performance over 100 %, said, not clamped.
    m.ideal_cycle_s = Some(300.0);
    let fast = compute(&m, &all, &LossRules::default());
    assert!(fast.performance().unwrap() > 1.0);
    assert!(
        fast.warnings[0].contains("M1: performance 208.3 % > 100 %")
            && fast.warnings[0].contains("ideal cycle time of 300 s"),
        "{:?}",
        fast.warnings
    );
    // Roll-up: two machines, one with half the planned time.
    let half = vec![(at(6, 0), at(10, 0))];
    let mut b = shift_machine();
    b.asset_id = "M2".into();
    b.segments = vec![seg((6, 0), (14, 0), MachineState::Running, "")];
    b.part_counter = vec![(at(5, 0), 0.0), (at(10, 0), 120.0)];
    b.scrap_counter.clear();
    let ob = compute(&b, &half, &LossRules::default());
    let mut up = Oee::default();
    up.merge(&o);
    up.merge(&ob);
    let weighted = (o.fully_productive_s + ob.fully_productive_s) / (o.planned_s + ob.planned_s);
    assert!(close(up.oee().unwrap(), weighted));
    let mean = (o.oee().unwrap() + ob.oee().unwrap()) / 2.0;
    assert!(
        (up.oee().unwrap() - mean).abs() > 0.01,
        "a roll-up is not a mean"
    );
    assert_eq!(up.machines, 2);
    check_identity(&up);
}

#[test]
fn night_shifts_across_midnight_and_daylight_saving_changes() {
    let text = "version = 1\ntime_zone = \"Europe/Paris\"\n[[shift]]\nname = \"night\"\n\
        days = [\"sat\"]\nstart = \"22:00\"\nend = \"06:00\"\n";
    let cal = ShiftCalendar::parse(Path::new("n.toml"), text).unwrap();
    let running = |a: i64, b: i64| MachineInput {
        asset_id: "M".into(),
        ideal_cycle_s: Some(60.0),
        ideal_source: "test".into(),
        segments: vec![Segment {
            start_us: a,
            end_us: b,
            state: MachineState::Running,
            reason: String::new(),
        }],
        part_counter: Vec::new(),
        scrap_counter: Vec::new(),
        mes_completions: Vec::new(),
    };
    let day = 86_400_000_000i64;
    // Spring forward, 2026-03-29 02:00 → 03:00: the night is 7 h; fall
    // back, 2026-10-25 03:00 → 02:00: 9 h; a night in between: 8 h.
    for (sat, hours) in [
        ("2026-03-28", 7.0),
        ("2026-10-24", 9.0),
        ("2026-06-13", 8.0),
    ] {
        let t0 = mezzanine::cli::parse_time(&format!("{sat} 12:00"), "Europe/Paris").unwrap();
        let shifts = cal.instances(t0, t0 + day);
        assert_eq!(shifts.len(), 1, "{sat}");
        let s = &shifts[0];
        assert_eq!(s.name, "night");
        let o = compute(&running(t0, t0 + day), &s.working, &LossRules::default());
        assert_eq!(o.planned_s, hours * 3600.0, "{sat}");
        assert_eq!(o.availability(), Some(1.0));
    }
}

#[test]
fn the_loss_rules_file_reports_problems_at_line_and_column() {
    let e = LossRules::parse(
        Path::new("losses.toml"),
        "version = 1\nchangeover = \"sometimes\"\nmicro_stop_threshold_s = -5\n\
         [[loss]]\nstate = \"running\"\nloss = \"stop\"\n[[loss]]\nstate = \"sleeping\"\nloss = \"stop\"\n\
         [[loss]]\nstate = \"down\"\nloss = \"bad luck\"\n",
    )
    .unwrap_err()
    .to_string();
    for want in [
        "losses.toml: OEE loss rules refused, 5 problem(s):",
        "losses.toml:2:14: changeover \"sometimes\"",
        "losses.toml:3:26: micro_stop_threshold_s must be a number of seconds ≥ 0",
        "losses.toml:5:9: running is production time, not a loss",
        "losses.toml:8:9: state \"sleeping\"",
        "losses.toml:12:8: loss \"bad luck\"",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
    let shipped = LossRules::load(&crate::repo("config/oee-losses.toml")).unwrap();
    assert_eq!(shipped.micro_stop_threshold_s, 120.0);
}

/// The demo PLC simulator runs 60 recorded minutes (10 plant hours at its
/// ×10 clock) into a real history file, keeping its own accounting of
/// every state episode and its part and scrap counters; the twin computes
/// OEE from the file alone. Time: the recorded transitions carry the
/// simulator's own step times, so run time and availability agree to
/// rounding. Counts: a counter is only known where it was read (the demo
/// publishes them every 60 s); the period runs from one reading to
/// another, so the twin's counts must equal the simulator's exactly.
#[test]
fn the_twins_oee_matches_the_simulators_own_accounting() {
    use std::collections::HashMap;
    use std::sync::Arc;

    use mezzanine::demo::plc::PlcSim;
    use mezzanine::history::{HistoryWriter, Store, WriterSettings};
    use mezzanine::oee::history::{machine_input, machines};
    use mezzanine::registry::{AssetRegistry, load_registry};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.duckdb");
    let reg = Arc::new(AssetRegistry::new(
        load_registry(&crate::repo("scenes/demo-plant.toml")).unwrap(),
    ));
    let start = 1_780_000_000_000_000i64;
    let minutes = 60;
    let store = Store::open(&path, &reg).unwrap();
    let writer = HistoryWriter::spawn(store, reg.clone(), WriterSettings::default(), 4096).unwrap();
    let mut plc = PlcSim::new(reg.clone(), 7, start, 10.0);
    plc.record_truth();
    let mut counts_at: HashMap<u32, (u64, u64)> = HashMap::new();
    // Counter readings at 0.1 s, 60.1 s, 120.1 s, …: the period runs from
    // the second reading to the 59th.
    let from_us = start + 60_100_000;
    let to_us = start + 3_540_100_000;
    let mut end_counts: HashMap<u32, (u64, u64)> = HashMap::new();
    for step in 1..=minutes * 600 {
        for e in plc.step(100) {
            writer.recorder.send(crate::whatif::recorded(e)).unwrap();
        }
        if start + step * 100_000 == from_us {
            for (a, p, s) in plc.counters() {
                counts_at.insert(a.0, (p, s));
            }
        }
        if start + step * 100_000 == to_us {
            for (a, p, s) in plc.counters() {
                end_counts.insert(a.0, (p, s));
            }
        }
    }
    writer.flush().unwrap();
    writer.join();
    let episodes = plc.episodes();

    let store = Store::open(&path, &reg).unwrap();
    let rules = LossRules::default().scaled(10.0);
    let planned = vec![(from_us, to_us)];
    println!(
        "| machine | A twin | A simulator | produced twin | simulator | rejects twin | simulator |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut worst_a: f64 = 0.0;
    for a in machines(&reg) {
        let recorded_to = start + minutes * 60_000_000;
        let input = machine_input(
            &store.conn,
            &store.props,
            &reg,
            a,
            from_us,
            to_us,
            recorded_to,
            10.0,
        )
        .unwrap();
        let o = compute(&input, &planned, &rules);
        // The simulator's accounting with the same definitions.
        let (mut run, mut total) = (0.0, 0.0);
        for (asset, state, _, s_ms, e_ms) in episodes.iter().filter(|e| e.0 == a) {
            let (s_us, e_us) = (start + *s_ms as i64 * 1000, start + *e_ms as i64 * 1000);
            let t = (e_us.min(to_us) - s_us.max(from_us)).max(0) as f64 / 1e6;
            if t <= 0.0 {
                continue;
            }
            let _ = asset;
            total += t;
            let whole = (e_us - s_us) as f64 / 1e6;
            let micro = matches!(
                state,
                MachineState::Idle | MachineState::Blocked | MachineState::Starved
            ) && whole < rules.micro_stop_threshold_s;
            if *state == MachineState::Running || micro {
                run += t;
            }
        }
        let a_truth = run / total;
        let a_twin = o.availability().unwrap();
        worst_a = worst_a.max((a_twin - a_truth).abs());
        let (p0, s0) = counts_at[&a.0];
        let (p1, s1) = end_counts[&a.0];
        let (parts, scrap) = ((p1 - p0) as f64, (s1 - s0) as f64);
        let rejects = o.startup_rejects + o.production_rejects;
        println!(
            "| {} | {:.4} | {:.4} | {} | {} | {} | {} |",
            input.asset_id, a_twin, a_truth, o.produced, parts, rejects, scrap
        );
        assert!(
            close(total, (to_us - from_us) as f64 / 1e6),
            "the simulator accounts for every second"
        );
        assert!(
            (a_twin - a_truth).abs() < 1e-6,
            "{}: A {a_twin} vs {a_truth}",
            input.asset_id
        );
        assert_eq!(o.produced, parts, "{}: parts", input.asset_id);
        if reg.property_by_name(a, "scrap_count").is_some() {
            assert_eq!(rejects, scrap, "{}: rejects", input.asset_id);
        } else {
            // Scrap the PLC does not publish, the twin cannot know: said.
            assert!(o.warnings.iter().any(|w| w.contains("no scrap counter")));
        }
        let q = o.quality().unwrap();
        assert!(close(
            o.availability().unwrap() * o.performance().unwrap() * q,
            o.oee().unwrap()
        ));
    }
    println!("largest availability difference: {worst_a:.2e}");
}

/// The live tracker, fed state changes and counter readings one by one as
/// the twin sees them, gives the same record as the one function over the
/// same windows (no calendar: planned since the tracker started).
#[test]
fn the_live_tracker_appends_and_agrees_with_the_one_function() {
    use mezzanine::oee::live::LiveTracker;
    use mezzanine::registry::AssetIdx;
    let m = shift_machine();
    let start = at(6, 0);
    let mut t = LiveTracker::new(
        None,
        LossRules::default(),
        1.0,
        vec![(AssetIdx(0), "M1".into(), Some(60.0))],
        start,
    );
    t.roll(start);
    let mut events: Vec<(i64, bool)> = Vec::new();
    for s in &m.segments {
        events.push((s.start_us, true));
    }
    for (ts, _) in &m.part_counter {
        events.push((*ts, false));
    }
    events.sort();
    for (ts, is_state) in events {
        if is_state {
            let s = m.segments.iter().find(|s| s.start_us == ts).unwrap();
            t.observe_state(0, s.state, Some(&s.reason), Some(s.start_us), ts);
        } else {
            let v = m.part_counter.iter().find(|c| c.0 == ts).unwrap().1;
            t.observe_counter(0, false, ts, v);
        }
    }
    for (ts, v) in &m.scrap_counter {
        t.observe_counter(0, true, *ts, *v);
    }
    let now = at(14, 0);
    t.update(now);
    let mut whole = m.clone();
    // The reading before the tracker started is its baseline too.
    whole.segments.last_mut().unwrap().end_us = now;
    let want = compute(&whole, &[(start, now)], &LossRules::default());
    assert_eq!(t.records.len(), 1);
    let got = &t.records[0].1;
    assert_eq!(got.planned_s, want.planned_s);
    assert_eq!(got.run_s, want.run_s);
    assert_eq!(got.produced, want.produced);
    assert_eq!(got.oee(), want.oee());
}
