//! One scheduling study, as the command line and the app run it: the
//! plant's what-if model, its fits and the MES schedule in; the live
//! problem, the twin's schedule, the MES plan (as stated and run on the
//! plant as it is), its conflicts, the per-order differences, the
//! robustness of both under the plant's uncertainty, and the
//! recommendation to publish out.

use std::fmt::Write as _;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::ScheduleError;
use super::compare::{MesPlan, OrderDiff, executed, mes_plan, order_diffs};
use super::live::{LiveProblem, duration_text, problem_from_model};
use super::plan::{Kpis, Objective, Plan, PlanOptions, PlanReport, Problem, solve};
use super::robust::{RobustOptions, Robustness, compare};
use crate::contract::{ProductionRequest, Schedule};
use crate::mes::recommend::{Fingerprint, Recommendation};
use crate::whatif::fit::MachineFit;
use crate::whatif::{Model, Pool, Progress};

/// How to run a study.
#[derive(Debug, Clone, Copy)]
pub struct StudyOptions {
    pub objective: Objective,
    pub time_limit: Duration,
    pub seed: u64,
    /// What-if replications for the robustness check (0: none).
    pub replications: u32,
    pub threads: Option<usize>,
}

/// What a study found.
#[derive(Debug, Clone)]
pub struct ScheduleStudy {
    pub live: LiveProblem,
    pub twin: PlanReport,
    /// The MES plan, when the MES stated one.
    pub mes: Option<MesPlan>,
    /// Where the MES plan came from, and when it was stated.
    pub mes_source: Option<(String, i64)>,
    /// The MES plan's KPIs as stated (its own times).
    pub mes_stated: Option<Kpis>,
    /// The MES plan's sequence on the plant as it is.
    pub mes_executed: Option<Plan>,
    pub diffs: Vec<OrderDiff>,
    pub robustness: Option<Robustness>,
    /// Units of measure of the MES plan's orders.
    mes_units: Vec<(String, String)>,
}

/// Runs a study. `schedule`: the MES's, with where it came from and when;
/// `alternatives`: per station, the machines that may stand in for it.
pub fn run(
    model: &Model,
    fits: &[MachineFit],
    alternatives: &[Vec<u32>],
    schedule: Option<(&Schedule, &str, i64)>,
    opts: StudyOptions,
    progress: &Progress,
    cancel: Option<&AtomicBool>,
) -> Result<ScheduleStudy, ScheduleError> {
    let live = problem_from_model(model, fits, alternatives, opts.objective);
    if live.problem.jobs.is_empty() {
        return Err(ScheduleError::Problem(
            "no open order to schedule (the MES has released none the twin knows)".into(),
        ));
    }
    let twin = solve(
        &live.problem,
        PlanOptions {
            time_limit: opts.time_limit,
            max_iterations: None,
            seed: opts.seed,
        },
        cancel,
    )?;
    let p = &live.problem;
    let mes = schedule.map(|(s, _, _)| mes_plan(s, p));
    let mes_executed = mes.as_ref().and_then(|m| executed(p, m));
    let mes_stated = mes.as_ref().map(|m| stated_kpis(p, m));
    let diffs = match &mes {
        Some(m) => order_diffs(p, m, mes_executed.as_ref(), &twin.best),
        None => order_diffs(
            p,
            &MesPlan {
                schedule_id: String::new(),
                ops: Vec::new(),
                conflicts: Vec::new(),
                notes: Vec::new(),
            },
            None,
            &twin.best,
        ),
    };
    let robustness = match (&mes_executed, opts.replications) {
        (Some(e), r) if r > 0 => {
            let pool = opts.threads.map_or_else(Pool::default_size, Pool::new);
            Some(compare(
                model,
                &live,
                (e, &twin.best),
                RobustOptions {
                    replications: r,
                    seed: opts.seed,
                },
                &pool,
                progress,
            )?)
        }
        _ => None,
    };
    Ok(ScheduleStudy {
        twin,
        mes,
        mes_source: schedule.map(|(_, src, at)| (src.to_string(), at)),
        mes_stated,
        mes_executed,
        diffs,
        robustness,
        live,
        mes_units: schedule.map_or_else(Vec::new, |(s, _, _)| {
            s.requests
                .iter()
                .map(|r| (r.id.clone(), r.unit.clone()))
                .collect()
        }),
    })
}

/// The MES plan's KPIs on its own stated times.
fn stated_kpis(p: &Problem, m: &MesPlan) -> Kpis {
    let mut k = Kpis::default();
    for job in &p.jobs {
        let Some(end) = m
            .ops
            .iter()
            .filter(|x| x.order == job.id)
            .map(|x| x.end_us)
            .max()
        else {
            continue;
        };
        let end_s = (end - p.origin_us) as f64 / 1e6;
        k.makespan_s = k.makespan_s.max(end_s);
        if let Some(d) = job.due_s
            && end_s > d
        {
            k.weighted_tardiness_s += job.weight * (end_s - d);
            k.tardy_jobs += 1;
        }
    }
    k
}

fn hhmm(t_us: i64) -> String {
    let s = crate::mes::rfc3339(t_us);
    s.get(11..16).unwrap_or(&s).to_string()
}

fn minutes(s: Option<f64>) -> String {
    s.map_or_else(|| "—".into(), |v| format!("{:+.0}", v / 60.0))
}

impl ScheduleStudy {
    /// The comparison as text (what `mezzanine schedule --from-history` prints).
    pub fn text(&self) -> String {
        let p = &self.live.problem;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "now {} · {} open orders, {} operations on {} machines · objective: {}",
            crate::mes::rfc3339(p.origin_us),
            p.jobs.len(),
            p.ops.len(),
            p.machines.len(),
            p.objective.label()
        );
        for m in &p.machines {
            if let Some(why) = &m.unavailable_because {
                let _ = writeln!(s, "  {}: {why}", m.id);
            }
            if let Some(t) = m.tool_change {
                let _ = writeln!(
                    s,
                    "  {}: tool change planned after {} of processing ({} each, every {})",
                    m.id,
                    duration_text(t.after_s),
                    duration_text(t.duration_s),
                    duration_text(t.interval_s)
                );
            }
        }
        match (&self.mes, &self.mes_source) {
            (Some(m), Some((src, at))) => {
                let _ = writeln!(
                    s,
                    "\nMES plan {} ({src}, stated {}): {} operations",
                    m.schedule_id,
                    crate::mes::rfc3339(*at),
                    m.ops.len()
                );
                if m.conflicts.is_empty() {
                    let _ = writeln!(s, "  no conflicts with the plant as it is");
                } else {
                    let _ = writeln!(s, "  {} conflict(s):", m.conflicts.len());
                    for c in &m.conflicts {
                        let _ = writeln!(s, "  [{}] {}", c.kind.label(), c.message);
                    }
                }
                for n in &m.notes {
                    let _ = writeln!(s, "  note: {n}");
                }
            }
            _ => {
                let _ = writeln!(
                    s,
                    "\nno MES plan recorded (poll the MES schedule, or `mezzanine import-schedule`): the twin's schedule alone"
                );
            }
        }
        let t = &self.twin;
        let _ = writeln!(
            s,
            "\ntwin schedule: first schedule ({:?} rule) in {:.1} ms, best after {:.2} s, {} iterations in {:.2} s (stopped: {})",
            t.start_rule,
            t.first_schedule.as_secs_f64() * 1e3,
            t.time_to_best.as_secs_f64(),
            t.iterations,
            t.elapsed.as_secs_f64(),
            t.stopped
        );
        let row = |name: &str, k: Option<&Kpis>| -> String {
            match k {
                Some(k) => format!(
                    "  {name:<34} {:>9.2} {:>12.2} {:>6}",
                    k.makespan_s / 3600.0,
                    k.weighted_tardiness_s / 3600.0,
                    k.tardy_jobs
                ),
                None => format!("  {name:<34} {:>9} {:>12} {:>6}", "—", "—", "—"),
            }
        };
        let _ = writeln!(
            s,
            "  {:<34} {:>9} {:>12} {:>6}",
            "", "makespan h", "w. tardiness h", "late"
        );
        let _ = writeln!(
            s,
            "{}",
            row("MES plan, as stated", self.mes_stated.as_ref())
        );
        let _ = writeln!(
            s,
            "{}",
            row(
                "MES plan, on the plant as it is",
                self.mes_executed.as_ref().map(|e| &e.kpis)
            )
        );
        let _ = writeln!(s, "{}", row("twin schedule", Some(&t.best.kpis)));
        let _ = writeln!(
            s,
            "\norders (times UTC; minutes: twin − MES, lateness = end − due)"
        );
        let _ = writeln!(
            s,
            "  {:<14} {:>5} | {:>5} {:>5} {:>6} {:>8} | {:>5} {:>5} {:>6} | {:>6} {:>6}",
            "order",
            "due",
            "MES",
            "end",
            "late",
            "on-plant",
            "twin",
            "end",
            "late",
            "Δstart",
            "Δend"
        );
        for d in &self.diffs {
            let _ = writeln!(
                s,
                "  {:<14} {:>5} | {:>5} {:>5} {:>6} {:>8} | {:>5} {:>5} {:>6} | {:>6} {:>6}",
                d.order,
                d.due_us.map_or("—".into(), hhmm),
                d.mes_start_us.map_or("—".into(), hhmm),
                d.mes_end_us.map_or("—".into(), hhmm),
                minutes(d.lateness_s(d.mes_end_us)),
                minutes(d.lateness_s(d.mes_executed_end_us)),
                hhmm(d.twin_start_us),
                hhmm(d.twin_end_us),
                minutes(d.lateness_s(Some(d.twin_end_us))),
                minutes(d.start_delta_s()),
                minutes(d.end_delta_s()),
            );
        }
        if let Some(r) = &self.robustness {
            let _ = writeln!(
                s,
                "\nrobustness: {} replications (seed {}), breakdowns, stops and cycle-time variation fitted from the history; 95 % intervals",
                r.replications, r.seed
            );
            let _ = writeln!(
                s,
                "  {:<16} {:>20} {:>20} {:>14}",
                "", "w. tardiness h", "makespan h", "late orders"
            );
            for (name, x) in [("MES plan", &r.mes), ("twin schedule", &r.twin)] {
                let _ = writeln!(
                    s,
                    "  {name:<16} {:>11.2} ± {:<6.2} {:>11.2} ± {:<6.2} {:>7.1} ± {:<4.1}",
                    x.tardiness_h.mean,
                    x.tardiness_h.half_width,
                    x.makespan_h.mean,
                    x.makespan_h.half_width,
                    x.late_orders.mean,
                    x.late_orders.half_width
                );
            }
            let _ = writeln!(
                s,
                "  {:<16} {:>11.2} ± {:<6.2} {:>11.2} ± {:<6.2}",
                "Δ twin − MES",
                r.tardiness_delta_h.mean,
                r.tardiness_delta_h.half_width,
                r.makespan_delta_h.mean,
                r.makespan_delta_h.half_width
            );
            let _ = writeln!(s, "  {}", r.sentence());
        }
        for n in &self.live.notes {
            let _ = writeln!(s, "note: {n}");
        }
        s
    }

    fn mes_unit(&self, order: &str) -> Option<String> {
        self.mes_units
            .iter()
            .find(|(o, _)| o == order)
            .map(|(_, u)| u.clone())
    }

    /// The twin's schedule as a production schedule: one request per
    /// order, in planned start order, with the machines it plans and its
    /// planned start and end.
    pub fn schedule_record(&self, id: &str) -> Schedule {
        let p = &self.live.problem;
        let plan = &self.twin.best;
        let at = |s: f64| p.origin_us + (s * 1e6).round() as i64;
        let reqs: Vec<(f64, ProductionRequest)> = p
            .jobs
            .iter()
            .filter_map(|job| {
                let (&first, &last) = (job.ops.first()?, job.ops.last()?);
                Some((
                    plan.start_s[first],
                    ProductionRequest {
                        id: job.id.clone(),
                        product: job.product.split(" via ").next().unwrap_or("").to_string(),
                        quantity: f64::from(job.quantity),
                        unit: self.mes_unit(&job.id).unwrap_or_else(|| "ea".to_string()),
                        routing: job
                            .ops
                            .iter()
                            .map(|&o| p.machines[plan.machine[o]].id.clone())
                            .collect(),
                        earliest_start_us: Some(at(plan.start_s[first])),
                        latest_end_us: Some(at(plan.end_s[last])),
                    },
                ))
            })
            .collect();
        Schedule::in_start_order(id, crate::ingest::now_us(), reqs)
    }

    /// The reschedule as a recommendation.
    pub fn recommendation(&self, id: &str) -> Recommendation {
        let p = &self.live.problem;
        let summary = match &self.robustness {
            Some(r) => r.sentence(),
            None => format!(
                "the twin's schedule: weighted tardiness {:.2} h, makespan {:.2} h (deterministic)",
                self.twin.best.kpis.weighted_tardiness_s / 3600.0,
                self.twin.best.kpis.makespan_s / 3600.0
            ),
        };
        let sched = self.schedule_record(id);
        let orders: Vec<serde_json::Value> = sched
            .requests
            .iter()
            .map(|r| {
                let d = self.diffs.iter().find(|d| d.order == r.id);
                serde_json::json!({
                    "order": r.id,
                    "machines": r.routing,
                    "start": r.earliest_start_us.map(crate::mes::rfc3339),
                    "end": r.latest_end_us.map(crate::mes::rfc3339),
                    "due": d.and_then(|d| d.due_us).map(crate::mes::rfc3339),
                    "mes_start": d.and_then(|d| d.mes_start_us).map(crate::mes::rfc3339),
                    "start_delta_min": d.and_then(|d| d.start_delta_s()).map(|s| s / 60.0),
                    "end_delta_min": d.and_then(|d| d.end_delta_s()).map(|s| s / 60.0),
                })
            })
            .collect();
        let est = |e: &crate::whatif::stats::Estimate| serde_json::json!({"mean": e.mean, "half_width_95": e.half_width, "n": e.n});
        let robust = self.robustness.as_ref().map(|r| {
            serde_json::json!({
                "replications": r.replications,
                "seed": r.seed,
                "weighted_tardiness_h": {"mes_plan": est(&r.mes.tardiness_h), "twin": est(&r.twin.tardiness_h), "delta": est(&r.tardiness_delta_h)},
                "makespan_h": {"mes_plan": est(&r.mes.makespan_h), "twin": est(&r.twin.makespan_h), "delta": est(&r.makespan_delta_h)},
            })
        });
        // Replication i of seed s draws from the streams keyed (s, i).
        let seeds = self
            .robustness
            .as_ref()
            .map_or_else(Vec::new, |r| vec![r.seed]);
        Recommendation {
            id: id.to_string(),
            kind: "reschedule".into(),
            created: crate::mes::rfc3339(crate::ingest::now_us()),
            summary,
            fingerprint: Fingerprint::new(
                seeds,
                p.origin_us,
                "schedule problem v1",
                format!("{p:?}").as_bytes(),
            ),
            details: serde_json::json!({
                "objective": p.objective.label(),
                "mes_plan": self.mes.as_ref().map(|m| m.schedule_id.clone()),
                "conflicts": self.mes.as_ref().map(|m| m.conflicts.iter().map(|c| c.message.clone()).collect::<Vec<_>>()),
                "twin": {"makespan_h": self.twin.best.kpis.makespan_s / 3600.0, "weighted_tardiness_h": self.twin.best.kpis.weighted_tardiness_s / 3600.0, "late_orders": self.twin.best.kpis.tardy_jobs},
                "orders": orders,
                "robustness": robust,
            }),
            advisory: true,
        }
    }
}
