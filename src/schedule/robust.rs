//! Robustness: two schedules of the live problem (the MES plan's and the
//! twin's) and the plant's what-if model in; each schedule run through the
//! what-if engine under the fitted breakdowns, stops and cycle-time
//! variation, replication by replication with common random numbers, out:
//! weighted tardiness and makespan of each with 95 % confidence intervals,
//! and the paired difference.
//!
//! A schedule runs as a dispatching policy: every machine takes, among the
//! jobs waiting for it, the one planned earliest there
//! ([`crate::whatif::model::Rule::Planned`]), on the machine the schedule
//! planned for it. Orders still open at the horizon count as finishing at
//! the horizon (and are counted).

use std::sync::Arc;

use super::ScheduleError;
use super::live::LiveProblem;
use super::plan::Plan;
use crate::whatif::model::{Model, Rule};
use crate::whatif::stats::Estimate;
use crate::whatif::{Outcome, Pool, Progress};

/// One schedule's outcomes.
#[derive(Debug, Clone, PartialEq)]
pub struct Spread {
    /// Σ weight × tardiness, h.
    pub tardiness_h: Estimate,
    pub makespan_h: Estimate,
    pub late_orders: Estimate,
    /// Orders not finished by the horizon, summed over replications.
    pub unfinished: u64,
    /// Per replication, for the paired differences.
    tardiness_runs: Vec<f64>,
    makespan_runs: Vec<f64>,
}

/// The MES plan against the twin's schedule under uncertainty.
#[derive(Debug, Clone, PartialEq)]
pub struct Robustness {
    pub replications: u32,
    pub seed: u64,
    pub horizon_h: f64,
    pub mes: Spread,
    pub twin: Spread,
    /// Twin − MES (negative: the twin's schedule is better).
    pub tardiness_delta_h: Estimate,
    pub makespan_delta_h: Estimate,
}

impl Robustness {
    /// "expected 3.1 ± 0.4 h less weighted lateness …"
    pub fn sentence(&self) -> String {
        let d = &self.tardiness_delta_h;
        let m = &self.makespan_delta_h;
        fn word(x: f64, less: &'static str, more: &'static str) -> &'static str {
            if x <= 0.0 { less } else { more }
        }
        format!(
            "the twin's schedule: expected {:.2} ± {:.2} h {} weighted lateness and a makespan {:.2} ± {:.2} h {} than the MES plan ({} replications with breakdowns and cycle-time variation{})",
            d.mean.abs(),
            d.half_width,
            word(d.mean, "less", "more"),
            m.mean.abs(),
            m.half_width,
            word(m.mean, "shorter", "longer"),
            self.replications,
            if d.significant() {
                ""
            } else {
                "; the lateness difference is within the noise"
            }
        )
    }
}

/// The model with `plan` as every machine's dispatching policy.
pub fn planned_model(model: &Model, lp: &LiveProblem, plan: &Plan, horizon_s: f64) -> Model {
    let mut m = model.clone();
    m.arrivals.clear();
    m.warmup_s = 0.0;
    m.horizon_s = horizon_s;
    for st in &mut m.stations {
        st.rule = Rule::Planned;
    }
    for (j, job) in lp.problem.jobs.iter().enumerate() {
        let Some(order) = m.orders.get_mut(lp.job_order[j]) else {
            continue;
        };
        let steps = m
            .products
            .get(order.product as usize)
            .map_or(0, |p| p.routing.len());
        order.plan = vec![(u32::MAX, f64::MAX); steps];
        let product = order.product as usize;
        for &o in &job.ops {
            let step = lp.problem.ops[o].step as usize;
            let machine = plan.machine[o] as u32;
            if let Some(slot) = order.plan.get_mut(step) {
                *slot = (machine, plan.start_s[o]);
            }
            // An alternative the schedule chose becomes one the engine knows.
            if let Some(st) = m
                .products
                .get_mut(product)
                .and_then(|p| p.routing.get_mut(step))
                && !st.stations.contains(&machine)
            {
                st.stations.push(machine);
            }
        }
    }
    m
}

fn spread(lp: &LiveProblem, model: &Model, runs: &[Outcome]) -> Spread {
    let mut tard = Vec::new();
    let mut mk = Vec::new();
    let mut late = Vec::new();
    let mut unfinished = 0;
    for r in runs {
        let (mut t, mut c, mut l) = (0.0, 0.0f64, 0.0);
        for (j, job) in lp.problem.jobs.iter().enumerate() {
            let done = r
                .order_done_s
                .get(lp.job_order[j])
                .copied()
                .unwrap_or(f64::NAN);
            let done = if done.is_nan() {
                unfinished += 1;
                model.horizon_s
            } else {
                done
            };
            c = c.max(done);
            if let Some(d) = job.due_s
                && done > d
            {
                t += job.weight * (done - d);
                l += 1.0;
            }
        }
        tard.push(t / 3600.0);
        mk.push(c / 3600.0);
        late.push(l);
    }
    Spread {
        tardiness_h: Estimate::of(tard.iter().copied()),
        makespan_h: Estimate::of(mk.iter().copied()),
        late_orders: Estimate::of(late),
        unfinished,
        tardiness_runs: tard,
        makespan_runs: mk,
    }
}

/// How many replications, from which seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RobustOptions {
    pub replications: u32,
    pub seed: u64,
}

/// Runs both schedules `opts.replications` times on `pool`.
pub fn compare(
    model: &Model,
    lp: &LiveProblem,
    (mes, twin): (&Plan, &Plan),
    opts: RobustOptions,
    pool: &Pool,
    progress: &Progress,
) -> Result<Robustness, ScheduleError> {
    let RobustOptions { replications, seed } = opts;
    // Long enough for breakdowns to delay the last order well past plan.
    let horizon_s = (3.0 * mes.kpis.makespan_s.max(twin.kpis.makespan_s)).max(model.horizon_s);
    let models = [
        Arc::new(planned_model(model, lp, mes, horizon_s)),
        Arc::new(planned_model(model, lp, twin, horizon_s)),
    ];
    for m in &models {
        let problems = m.problems();
        if !problems.is_empty() {
            return Err(ScheduleError::Problem(problems.join("; ")));
        }
    }
    let runs = pool
        .run(&models, 0..replications.max(2), seed, false, progress)
        .map_err(|_| ScheduleError::WhatIf(crate::whatif::WhatIfError::Cancelled))?;
    let mes_s = spread(lp, &models[0], &runs[0]);
    let twin_s = spread(lp, &models[1], &runs[1]);
    Ok(Robustness {
        replications: replications.max(2),
        seed,
        horizon_h: horizon_s / 3600.0,
        tardiness_delta_h: Estimate::paired(&mes_s.tardiness_runs, &twin_s.tardiness_runs),
        makespan_delta_h: Estimate::paired(&mes_s.makespan_runs, &twin_s.makespan_runs),
        mes: mes_s,
        twin: twin_s,
    })
}
