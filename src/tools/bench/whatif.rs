//! `mezzanine bench whatif`: the engine's speed on M/M/1 and on a plant,
//! the time to fork the demo plant and a synthetic 50-machine plant from a
//! live world, one 8-hour shift of 50 machines and 1,000 orders, and 100
//! replications of it on the pool. Prints one table.
//!
//! The synthetic plant is built the way a live fork is: a bevy `World`
//! holding the registry, machine states and the MES's work-order book,
//! read by `whatif::plant`; tests use the same builders.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bevy::prelude::*;

use crate::mes::MesState;
use crate::mes::sync::{AssetContext, MesSync, OrderStatus, WorkOrder, WorkOrderBook};
use crate::registry::{AssetIdx, AssetRegistry, parse_registry};
use crate::twin::{AssetState, BoundAsset, MachineState};
use crate::whatif::dist::Dist;
use crate::whatif::fork::Fork;
use crate::whatif::model::{StopKind, StopMode};
use crate::whatif::model_file::parse_model;
use crate::whatif::plant::{PlantSettings, build_model, snapshot_from_world};
use crate::whatif::{Engine, Model, Pool, Progress, RunOptions};

/// A registry of `lines` × `per_line` machines (1-minute cycles, buffers
/// of 4 lots) and a conveyor per line (1 minute end to end).
pub fn synthetic_registry(lines: usize, per_line: usize) -> AssetRegistry {
    let mut t =
        String::from("version = 1\n[plant]\nname = \"Synthetic plant\"\ntime_zone = \"UTC\"\n");
    for l in 0..lines {
        for k in 0..=per_line {
            let (id, class, nominal) = if k == per_line {
                (
                    format!("S-L{l}-CONV"),
                    "conveyor",
                    "transport_time = { value = 60.0, unit = \"s\" }".to_string(),
                )
            } else {
                (
                    format!("S-L{l}-M{k:02}"),
                    "cnc_mill",
                    format!(
                        "ideal_cycle_time = {{ value = {}.0, unit = \"s\" }}\n\
                         queue_capacity = {{ value = 4.0, unit = \"count\" }}\n\
                         changeover_time = {{ value = 10.0, unit = \"min\" }}",
                        50 + 5 * (k % 5)
                    ),
                )
            };
            t.push_str(&format!(
                "\n[[asset]]\nid = \"{id}\"\nname = \"{id}\"\nclass = \"{class}\"\niso23247 = \"equipment\"\n\
                 isa95 = \"Synth/Site/Area/Line{l}/{id}\"\ngltf_node = \"{id}\"\n[asset.nominal]\n{nominal}\n\
                 [[asset.property]]\nname = \"state\"\nunit = \"1\"\nmqtt = \"synth/{id}/state\"\n"
            ));
        }
    }
    match parse_registry(&t, Path::new("synthetic.toml")) {
        Ok(r) => AssetRegistry::new(r),
        // The text above is generated here; a refusal is a bug in it.
        Err(e) => panic!("synthetic registry refused: {e}"),
    }
}

/// A live world as the app holds it: the registry, every machine's state
/// (a few down), and an MES book of `orders` released orders routed along
/// their line (the first `running` of them in process).
pub fn live_world(registry: &AssetRegistry, orders: usize, at_us: i64) -> World {
    let mut world = World::new();
    world.insert_resource(registry.clone());
    let machines: Vec<(AssetIdx, String, String)> = registry
        .assets()
        .iter()
        .enumerate()
        .filter(|(_, a)| a.nominal.contains_key("ideal_cycle_time") && a.class != "robot")
        .map(|(i, a)| {
            (
                AssetIdx(i as u32),
                a.id.clone(),
                a.isa95.work_center.clone(),
            )
        })
        .collect();
    for (n, (idx, _, _)) in machines.iter().enumerate() {
        let (state, reason) = if n % 17 == 3 {
            (MachineState::Down, Some("spindle overload".to_string()))
        } else {
            (MachineState::Running, None)
        };
        world.spawn((
            BoundAsset(*idx),
            AssetState {
                state,
                reason,
                since_ts_us: Some(at_us - 300_000_000),
            },
        ));
    }
    let mut lines: Vec<String> = machines.iter().map(|m| m.2.clone()).collect();
    lines.sort();
    lines.dedup();
    let mut book = WorkOrderBook::default();
    for o in 0..orders {
        let line = &lines[o % lines.len()];
        let on_line: Vec<&String> = machines
            .iter()
            .filter(|m| &m.2 == line)
            .map(|m| &m.1)
            .collect();
        let steps = on_line.len().min(5);
        // Two cells per line, each a flow line of five machines: orders
        // enter at a cell's first machine and go forward (no loop back: a
        // cycle of full buffers would block every machine in it for good).
        let first = if (o / lines.len()).is_multiple_of(2) {
            0
        } else {
            on_line.len() - steps
        };
        let routing: Vec<String> = (0..steps).map(|k| on_line[first + k].clone()).collect();
        let id = format!("WO-{:05}", o + 1);
        let running = o < on_line.len() * lines.len() && !book.assets.contains_key(&routing[0]);
        if running {
            book.assets.insert(
                routing[0].clone(),
                AssetContext {
                    work_order: Some(id.clone()),
                    ..Default::default()
                },
            );
        }
        book.orders.insert(
            id.clone(),
            WorkOrder {
                number: id,
                product: Some(format!("P{}", o % 7)),
                quantity: Some(3.0 + (o % 5) as f64),
                due_us: Some(at_us + ((2 + o % 14) as i64) * 3_600_000_000),
                routing,
                status: if running {
                    OrderStatus::Running
                } else {
                    OrderStatus::Released
                },
                hold_reason: None,
                good_count: 0,
                scrap_count: 0,
                updated_us: at_us,
            },
        );
    }
    let mut sync = MesSync::new(1_000_000, 1_000);
    sync.book = book;
    world.insert_resource(MesState(sync));
    world
}

/// The model of a live world (what a fork reads), with an 8-hour horizon.
pub fn model_of(world: &World, at_us: i64) -> Model {
    let registry = world.resource::<AssetRegistry>().clone();
    let snap = match snapshot_from_world(world, at_us) {
        Ok(s) => s,
        Err(e) => panic!("snapshot of a built world: {e}"),
    };
    let settings = PlantSettings {
        horizon_s: 8.0 * 3600.0,
        time_scale: 1.0,
        off_shift_us: vec![(
            at_us + 4 * 3_600_000_000,
            at_us + 4 * 3_600_000_000 + 1_800_000_000,
        )],
        has_calendar: true,
    };
    match build_model(&registry, &snap, &[], &settings) {
        Ok((m, _)) => m,
        Err(e) => panic!("model of a built world: {e}"),
    }
}

const MM1: &str = "version = 1\nhorizon = 1\n[[station]]\nid = \"server\"\n\
    [[product]]\nid = \"c\"\n[[product.step]]\nstation = \"server\"\ntime = { dist = \"exp\", mean = 1.0 }\n\
    [[arrivals]]\nproduct = \"c\"\ninterarrival = { dist = \"exp\", mean = 1.25 }\n";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the benchmark and prints its table.
pub fn run_whatif_bench(quick: bool) -> anyhow::Result<()> {
    let at_us = 1_780_000_000_000_000;
    let mut rows: Vec<(String, String, String, bool)> = Vec::new();
    // M/M/1: events per second on one thread.
    let mut mm1 = parse_model(Path::new("mm1"), MM1)?;
    let target_events = if quick { 4_000_000.0 } else { 20_000_000.0 };
    mm1.horizon_s = target_events / 1.6;
    let mm1 = Arc::new(mm1);
    let t = Instant::now();
    let o = Engine::new(mm1, 1, 0, RunOptions::default())
        .run(None)
        .map_err(|_| anyhow::anyhow!("cancelled"))?;
    let eps = o.events as f64 / t.elapsed().as_secs_f64();
    rows.push((
        format!(
            "M/M/1 (ρ 0.8), {:.1} M events, one thread",
            o.events as f64 / 1e6
        ),
        format!("{:.1} M events/s", eps / 1e6),
        "≥ 10 M events/s".into(),
        eps >= 10e6,
    ));
    // The demo plant's fork.
    let demo = AssetRegistry::new(crate::demo::plant::PlantSpec::demo().registry());
    let demo_world = live_world(&demo, 24, at_us);
    let synth = synthetic_registry(5, 10);
    let synth_world = live_world(&synth, 1_000, at_us);
    for (name, world) in [
        ("demo plant (12 machines, 24 orders)", &demo_world),
        ("synthetic plant (50 machines, 1,000 orders)", &synth_world),
    ] {
        let n = if quick { 20 } else { 100 };
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            let model = Arc::new(model_of(world, at_us));
            let fork = Fork::new(model, 1, 0);
            times.push(t.elapsed().as_secs_f64());
            drop(fork);
        }
        let ms = median(times) * 1e3;
        rows.push((
            format!("fork: {name}, median of {n}"),
            format!("{ms:.2} ms"),
            "< 5 ms".into(),
            ms < 5.0,
        ));
    }
    // One 8-hour shift of the synthetic plant, with breakdowns (every 2 h
    // of running, 15 min to repair) and micro-stops (every 10 min, 20–90 s).
    let mut model = model_of(&synth_world, at_us);
    for st in &mut model.stations {
        st.stops = vec![
            StopMode {
                name: "breakdown".into(),
                kind: StopKind::Down,
                between: Dist::Exponential { mean: 7200.0 },
                duration: Dist::Exponential { mean: 900.0 },
            },
            StopMode {
                name: "micro-stop".into(),
                kind: StopKind::MicroStop,
                between: Dist::Exponential { mean: 600.0 },
                duration: Dist::Uniform {
                    min: 20.0,
                    max: 90.0,
                },
            },
        ];
    }
    let model = Arc::new(model);
    let n = if quick { 10 } else { 50 };
    let (mut times, mut events) = (Vec::new(), 0u64);
    for r in 0..n {
        let t = Instant::now();
        let o = Engine::new(model.clone(), 1, r, RunOptions::default())
            .run(None)
            .map_err(|_| anyhow::anyhow!("cancelled"))?;
        times.push(t.elapsed().as_secs_f64());
        events += o.events;
    }
    let total: f64 = times.iter().sum();
    let shift_ms = median(times) * 1e3;
    rows.push((
        format!(
            "plant model: 50 machines, 1,000 orders, {} events per shift",
            events / n as u64
        ),
        format!("{:.1} M events/s", events as f64 / total / 1e6),
        "–".into(),
        true,
    ));
    rows.push((
        format!("one 8-h shift of it, median of {n}"),
        format!("{shift_ms:.2} ms"),
        "< 20 ms".into(),
        shift_ms < 20.0,
    ));
    let pool = Pool::default_size();
    let t = Instant::now();
    let runs = pool
        .run(
            std::slice::from_ref(&model),
            0..100,
            1,
            false,
            &Progress::new(),
        )
        .map_err(|_| anyhow::anyhow!("cancelled"))?;
    let s = t.elapsed().as_secs_f64();
    rows.push((
        format!(
            "100 replications of the shift, {} worker thread{}",
            pool.threads(),
            if pool.threads() == 1 { "" } else { "s" }
        ),
        format!("{s:.3} s"),
        "< 2 s".into(),
        s < 2.0 && runs[0].len() == 100,
    ));
    let w = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(10);
    println!(
        "| {:<w$} | {:>16} | {:>16} | met |",
        "measure", "result", "goal"
    );
    println!(
        "|{}|{}|{}|-----|",
        "-".repeat(w + 2),
        "-".repeat(18),
        "-".repeat(18)
    );
    for (m, v, g, ok) in rows {
        println!(
            "| {m:<w$} | {v:>16} | {g:>16} | {} |",
            if ok { "yes" } else { "no " }
        );
    }
    println!(
        "(dev profile as `cargo run` builds it; {} cores here)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    Ok(())
}
