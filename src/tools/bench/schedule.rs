//! `mezzanine bench schedule`: the solver on the classic instances in
//! `benches/jobshop/` (Fisher–Thompson, Lawrence, Brandimarte) with a fixed
//! time limit each; makespan, gap to the proven optimum, time to best, and
//! the mean gap over la01–la20, as one table.

use std::path::Path;
use std::time::Duration;

use crate::config::shipped;
use crate::schedule::instance::load;
use crate::schedule::solver::{SolveOptions, check, solve};

pub fn run_schedule_bench(quick: bool) -> anyhow::Result<()> {
    let dir = shipped("benches/jobshop");
    let known = std::fs::read_to_string(dir.join("best-known.tsv"))
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.join("best-known.tsv").display()))?;
    let limit_s = if quick { 1.0 } else { 10.0 };
    let mut rows = Vec::new();
    for line in known.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        let (Some(name), Some(lb)) = (f.first(), f.get(1).and_then(|v| v.parse::<u32>().ok()))
        else {
            continue;
        };
        if quick
            && !matches!(
                *name,
                "ft06" | "ft10" | "la01" | "la02" | "la03" | "la04" | "la05" | "mk01"
            )
        {
            continue;
        }
        let file = ["txt", "fjs"]
            .iter()
            .map(|e| dir.join(format!("{name}.{e}")))
            .find(|p| p.exists());
        let Some(file) = file else { continue };
        let inst = load(Path::new(&file))?;
        let r = solve(
            &inst,
            SolveOptions {
                time_limit: Duration::from_secs_f64(limit_s),
                max_iterations: None,
                seed: 1,
            },
            None,
        );
        if let Some(p) = check(&inst, &r.best) {
            anyhow::bail!("{name}: infeasible schedule: {p}");
        }
        let gap = (f64::from(r.best.makespan) - f64::from(lb)) / f64::from(lb) * 100.0;
        rows.push((name.to_string(), inst, lb, r, gap));
    }
    println!(
        "| instance | size | optimum | start | makespan | gap % | time to best s | iterations |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, inst, lb, r, gap) in &rows {
        println!(
            "| {name} | {}×{} | {lb} | {} | {} | {gap:.2} | {:.2} | {} |",
            inst.jobs.len(),
            inst.machines,
            r.initial_makespan,
            r.best.makespan,
            r.time_to_best.as_secs_f64(),
            r.iterations
        );
    }
    // The plant's daily problem: 50 machines, 200 orders × 5 operations,
    // two eligible machines each (a fixed pseudo-random instance).
    let plant = synthetic_plant(200, 5, 50);
    let budget_s = if quick { 1.0 } else { 5.0 };
    let t = std::time::Instant::now();
    let first = crate::schedule::solver::construct(&plant);
    let first_ms = t.elapsed().as_secs_f64() * 1e3;
    let start = crate::schedule::solver::Evaluator::new(&plant)
        .eval(&first.0, &first.1)
        .unwrap_or(0);
    let r = solve(
        &plant,
        SolveOptions {
            time_limit: Duration::from_secs_f64(budget_s),
            max_iterations: None,
            seed: 1,
        },
        None,
    );
    if let Some(p) = check(&plant, &r.best) {
        anyhow::bail!("synthetic plant: infeasible schedule: {p}");
    }
    println!(
        "| plant-50×1000 (flexible) | 200×50 | ≥ {} | {start} | {} | – | {:.2} | {} |",
        plant.trivial_lower_bound(),
        r.best.makespan,
        r.time_to_best.as_secs_f64(),
        r.iterations
    );
    // The same size as the live plant's problem: a synthetic registry of 5
    // lines × 10 machines, 200 released orders routed along their line
    // (some running, a few machines down, a break in the calendar), the
    // machines of a line with the same class and cycle as alternatives.
    let at_us = 1_780_000_000_000_000;
    let registry = super::whatif::synthetic_registry(5, 10);
    let world = super::whatif::live_world(&registry, 200, at_us);
    let model = super::whatif::model_of(&world, at_us);
    let alternatives = crate::schedule::live::same_class_alternatives(&registry, &model);
    let lp = crate::schedule::live::problem_from_model(
        &model,
        &[],
        &alternatives,
        crate::schedule::plan::Objective::Mix {
            tardiness: 0.9,
            makespan: 0.1,
        },
    );
    let p = &lp.problem;
    let r = crate::schedule::plan::solve(
        p,
        crate::schedule::plan::PlanOptions {
            time_limit: Duration::from_secs_f64(budget_s),
            max_iterations: None,
            seed: 1,
        },
        None,
    )?;
    if let Some(e) = crate::schedule::plan::check(p, &r.best) {
        anyhow::bail!("live-shaped plant: infeasible schedule: {e}");
    }
    let flexible = p.ops.iter().filter(|o| o.alternatives.len() > 1).count();
    println!(
        "| plant-live 50 machines, {} orders, {} operations ({flexible} with alternatives) | {}×{} | – | {:.0} | {:.0} | – | {:.2} | {} |",
        p.jobs.len(),
        p.ops.len(),
        p.jobs.len(),
        p.machines.len(),
        r.initial.objective,
        r.best.kpis.objective,
        r.time_to_best.as_secs_f64(),
        r.iterations
    );
    let live_line = format!(
        "plant-live: objective 0.9 × weighted tardiness + 0.1 × makespan (s); first schedule ({:?}) after {:.1} ms; weighted tardiness {:.2} h → {:.2} h, late orders {} → {}, makespan {:.2} h → {:.2} h in {budget_s} s",
        r.start_rule,
        r.first_schedule.as_secs_f64() * 1e3,
        r.initial.weighted_tardiness_s / 3600.0,
        r.best.kpis.weighted_tardiness_s / 3600.0,
        r.initial.tardy_jobs,
        r.best.kpis.tardy_jobs,
        r.initial.makespan_s / 3600.0,
        r.best.kpis.makespan_s / 3600.0
    );
    let la: Vec<f64> = rows
        .iter()
        .filter(|r| r.0.starts_with("la"))
        .map(|r| r.4)
        .collect();
    if !la.is_empty() {
        println!(
            "mean gap over {} Lawrence instances: {:.2} %",
            la.len(),
            la.iter().sum::<f64>() / la.len() as f64
        );
    }
    println!(
        "({limit_s} s per instance, seed 1, dev profile, one thread; plant-50×1000: a first \
         schedule after {first_ms:.1} ms, then {budget_s} s of search)"
    );
    println!("{live_line}");
    Ok(())
}

/// A flexible job shop shaped like a plant's day: `jobs` orders of `ops`
/// operations on `machines` machines, each operation on two of them.
pub fn synthetic_plant(
    jobs: usize,
    ops: usize,
    machines: usize,
) -> crate::schedule::instance::Instance {
    use crate::schedule::instance::{Instance, Operation};
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut inst = Instance {
        name: "plant-50x1000".into(),
        machines,
        jobs: Vec::with_capacity(jobs),
        ops: Vec::with_capacity(jobs * ops),
    };
    for j in 0..jobs {
        let mut list = Vec::with_capacity(ops);
        for _ in 0..ops {
            let a = (next() % machines as u64) as usize;
            let b = (a + 1 + (next() % (machines as u64 - 1)) as usize) % machines;
            let t = 10 + (next() % 50) as u32;
            list.push(inst.ops.len());
            inst.ops.push(Operation {
                job: j,
                alternatives: vec![(a, t), (b, t + (next() % 10) as u32)],
            });
        }
        inst.jobs.push(list);
    }
    inst
}
