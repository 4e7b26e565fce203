//! `mezzanine schedule --jsp file | --fjsp file`: a benchmark instance in,
//! the solver's makespan, its gap to a lower bound and the time to its best
//! out.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::schedule::instance::{parse_fjsp, parse_jsp};
use crate::schedule::solver::{SolveOptions, check, solve};

pub fn run(
    jsp: Option<&Path>,
    fjsp: Option<&Path>,
    time_limit_s: f64,
    seed: u64,
    lower_bound: Option<u32>,
) -> anyhow::Result<ExitCode> {
    let (path, flexible) = match (jsp, fjsp) {
        (Some(p), None) => (p, false),
        (None, Some(p)) => (p, true),
        _ => anyhow::bail!("give one instance: --jsp file.txt or --fjsp file.fjs"),
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let inst = if flexible {
        parse_fjsp(path, &text)?
    } else {
        parse_jsp(path, &text)?
    };
    let opts = SolveOptions {
        time_limit: Duration::from_secs_f64(time_limit_s.max(0.0)),
        max_iterations: None,
        seed,
    };
    println!(
        "{}: {} jobs, {} machines, {} operations{}; time limit {time_limit_s} s, seed {seed}",
        inst.name,
        inst.jobs.len(),
        inst.machines,
        inst.ops.len(),
        if inst.is_classic() { "" } else { " (flexible)" }
    );
    let r = solve(&inst, opts, None);
    if let Some(problem) = check(&inst, &r.best) {
        anyhow::bail!("the solver returned an infeasible schedule: {problem}");
    }
    let lb = lower_bound.unwrap_or_else(|| inst.trivial_lower_bound());
    println!(
        "makespan {} (start {}), lower bound {lb}{}, gap {:.2} %, best found after {:.3} s, {} iterations in {:.2} s (stopped: {})",
        r.best.makespan,
        r.initial_makespan,
        if lower_bound.is_some() {
            ""
        } else {
            " (trivial)"
        },
        (f64::from(r.best.makespan) - f64::from(lb)) / f64::from(lb.max(1)) * 100.0,
        r.time_to_best.as_secs_f64(),
        r.iterations,
        r.elapsed.as_secs_f64(),
        r.stopped
    );
    for (m, q) in r.best.sequence.iter().enumerate() {
        let ops: Vec<String> = q
            .iter()
            .map(|&o| format!("J{}@{}", inst.ops[o].job + 1, r.best.start[o]))
            .collect();
        println!("  M{m}: {}", ops.join(" "));
    }
    Ok(ExitCode::SUCCESS)
}
