//! The MES plan against the twin's schedule: the MES's production
//! schedule (polled, or an imported B2MML `ProductionSchedule`) and the
//! live [`Problem`] in; the MES plan's operations as stated, its conflicts
//! with the plant as it is, the plan's sequence run on the live problem,
//! and per order the difference in start, end and lateness out.
//!
//! The MES states each order's planned start and routing; its operations
//! are laid out one after the other from that start with the twin's
//! processing times (an operation running now starts now). Conflicts,
//! where the MES stated the time (an order's first open step, or one
//! running): an operation planned on a machine that is down or in setup
//! before its expected return, two overlapping on one machine (by more
//! than 30 s); and for every step, a routing on a machine that cannot run
//! it; for every order, a due date no schedule can meet (the order alone on
//! free machines would still be late).

use std::collections::HashMap;

use super::plan::{Plan, Problem, evaluate};
use crate::contract::Schedule;

/// One operation as the MES planned it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedOp {
    pub order: String,
    /// Routing step (0 = first).
    pub step: u32,
    pub machine: String,
    pub start_us: i64,
    pub end_us: i64,
    /// The problem's operation it is, if the twin knows it.
    pub op: Option<usize>,
    /// Its start is the MES's (the order's planned start, or running now);
    /// false: laid out after the order's previous step by the twin.
    pub stated: bool,
}

/// What kind of conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConflictKind {
    MachineDown,
    Overlap,
    CannotRun,
    DueImpossible,
}

impl ConflictKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::MachineDown => "machine not available",
            Self::Overlap => "overlap on a machine",
            Self::CannotRun => "routing the machine cannot run",
            Self::DueImpossible => "due date already impossible",
        }
    }
}

/// A conflict in the MES plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub kind: ConflictKind,
    pub order: String,
    pub machine: Option<String>,
    pub at_us: Option<i64>,
    pub message: String,
}

/// One order: the MES plan against the twin's schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderDiff {
    pub order: String,
    pub due_us: Option<i64>,
    /// As the MES stated it.
    pub mes_start_us: Option<i64>,
    pub mes_end_us: Option<i64>,
    /// The MES's sequence run on the plant as it is.
    pub mes_executed_end_us: Option<i64>,
    pub twin_start_us: i64,
    pub twin_end_us: i64,
}

impl OrderDiff {
    /// Twin start − MES start, s.
    pub fn start_delta_s(&self) -> Option<f64> {
        self.mes_start_us
            .map(|m| (self.twin_start_us - m) as f64 / 1e6)
    }
    pub fn end_delta_s(&self) -> Option<f64> {
        self.mes_end_us.map(|m| (self.twin_end_us - m) as f64 / 1e6)
    }
    /// End − due, s (negative: early).
    pub fn lateness_s(&self, end_us: Option<i64>) -> Option<f64> {
        Some((end_us? - self.due_us?) as f64 / 1e6)
    }
}

/// The MES plan as stated and what it means on the live problem.
#[derive(Debug, Clone, PartialEq)]
pub struct MesPlan {
    pub schedule_id: String,
    pub ops: Vec<PlannedOp>,
    pub conflicts: Vec<Conflict>,
    /// Orders of the twin's problem the MES plan does not hold, and plan
    /// requests the twin has no open order for.
    pub notes: Vec<String>,
}

fn us(p: &Problem, s: f64) -> i64 {
    p.origin_us + (s * 1e6).round() as i64
}

fn hhmm(t_us: i64) -> String {
    let s = crate::mes::rfc3339(t_us);
    s.get(11..16).unwrap_or(&s).to_string()
}

/// Reads the MES schedule against the problem.
pub fn mes_plan(schedule: &Schedule, p: &Problem) -> MesPlan {
    let job_of: HashMap<&str, usize> = p
        .jobs
        .iter()
        .enumerate()
        .map(|(j, job)| (job.id.as_str(), j))
        .collect();
    let machine_of: HashMap<&str, usize> = p
        .machines
        .iter()
        .enumerate()
        .map(|(m, x)| (x.id.as_str(), m))
        .collect();
    let mut plan = MesPlan {
        schedule_id: schedule.id.clone(),
        ops: Vec::new(),
        conflicts: Vec::new(),
        notes: Vec::new(),
    };
    let mut unknown = Vec::new();
    for r in &schedule.requests {
        let Some(&j) = job_of.get(r.id.as_str()) else {
            unknown.push(r.id.clone());
            // Its routing can still be wrong.
            for (k, step) in r.routing.iter().enumerate() {
                if !machine_of.contains_key(step.as_str()) {
                    plan.conflicts.push(cannot_run(&r.id, k as u32, step, None));
                }
            }
            continue;
        };
        let job = &p.jobs[j];
        let mut t = r.earliest_start_us.unwrap_or(p.origin_us);
        for (k, &o) in job.ops.iter().enumerate() {
            let op = &p.ops[o];
            let named = r
                .routing
                .get(op.step as usize)
                .cloned()
                .unwrap_or_else(|| p.machines[op.alternatives[0].0].id.clone());
            let d = match machine_of.get(named.as_str()) {
                Some(&m) => match op.alternatives.iter().find(|a| a.0 == m) {
                    Some(a) => a.1,
                    None => {
                        plan.conflicts
                            .push(cannot_run(&job.id, op.step, &named, Some((p, o))));
                        op.alternatives[0].1
                    }
                },
                None => {
                    plan.conflicts
                        .push(cannot_run(&job.id, op.step, &named, Some((p, o))));
                    op.alternatives[0].1
                }
            };
            if op.in_progress {
                t = p.origin_us;
            }
            let end = t + (d * 1e6).round() as i64;
            plan.ops.push(PlannedOp {
                order: job.id.clone(),
                step: op.step,
                machine: named,
                start_us: t,
                end_us: end,
                op: Some(o),
                stated: k == 0 || op.in_progress,
            });
            t = end;
        }
    }
    if !unknown.is_empty() {
        plan.notes.push(format!(
            "in the MES plan without an open order in the twin: {}",
            unknown.join(", ")
        ));
    }
    let planned: std::collections::HashSet<&str> =
        schedule.requests.iter().map(|r| r.id.as_str()).collect();
    let missing: Vec<&str> = p
        .jobs
        .iter()
        .filter(|j| !planned.contains(j.id.as_str()))
        .map(|j| j.id.as_str())
        .collect();
    if !missing.is_empty() {
        plan.notes.push(format!(
            "open orders the MES plan does not hold (sequenced after its own): {}",
            missing.join(", ")
        ));
    }
    // A machine that is not back yet (where the MES stated the time).
    for x in plan.ops.iter().filter(|x| x.stated) {
        let Some(&m) = machine_of.get(x.machine.as_str()) else {
            continue;
        };
        let mach = &p.machines[m];
        let back = us(p, mach.available_from_s);
        if let Some(why) = &mach.unavailable_because
            && x.start_us + 30_000_000 < back
        {
            plan.conflicts.push(Conflict {
                kind: ConflictKind::MachineDown,
                order: x.order.clone(),
                machine: Some(x.machine.clone()),
                at_us: Some(x.start_us),
                message: format!(
                    "{} step {} planned on {} at {}, but {} is {why} (at about {})",
                    x.order,
                    x.step + 1,
                    x.machine,
                    hhmm(x.start_us),
                    x.machine,
                    hhmm(back)
                ),
            });
        }
    }
    // Overlaps on a machine, of operations whose times the MES stated.
    let mut by_machine: HashMap<&str, Vec<&PlannedOp>> = HashMap::new();
    for x in plan.ops.iter().filter(|x| x.stated) {
        by_machine.entry(x.machine.as_str()).or_default().push(x);
    }
    let mut machines: Vec<&str> = by_machine.keys().copied().collect();
    machines.sort_unstable();
    for m in machines {
        let v = by_machine
            .get_mut(m)
            .map(std::mem::take)
            .unwrap_or_default();
        let mut v = v;
        v.sort_by_key(|x| (x.start_us, x.end_us));
        let mut latest: Option<&PlannedOp> = None;
        for x in v {
            if let Some(l) = latest
                && x.start_us + 30_000_000 < l.end_us
            {
                plan.conflicts.push(Conflict {
                    kind: ConflictKind::Overlap,
                    order: x.order.clone(),
                    machine: Some(m.to_string()),
                    at_us: Some(x.start_us),
                    message: format!(
                        "{} step {} ({}–{}) overlaps {} step {} ({}–{}) on {m} by {:.1} min",
                        x.order,
                        x.step + 1,
                        hhmm(x.start_us),
                        hhmm(x.end_us),
                        l.order,
                        l.step + 1,
                        hhmm(l.start_us),
                        hhmm(l.end_us),
                        (l.end_us.min(x.end_us) - x.start_us) as f64 / 60e6
                    ),
                });
            }
            if latest.is_none_or(|l| x.end_us > l.end_us) {
                latest = Some(x);
            }
        }
    }
    // Due dates no schedule can meet.
    for (j, job) in p.jobs.iter().enumerate() {
        let Some(due) = job.due_s else { continue };
        let fin = earliest_finish_s(p, j);
        if fin > due + 1.0 {
            plan.conflicts.push(Conflict {
                kind: ConflictKind::DueImpossible,
                order: job.id.clone(),
                machine: None,
                at_us: Some(us(p, due)),
                message: format!(
                    "{} is due at {}, but alone on free machines it would finish at {} ({:.0} min late)",
                    job.id,
                    hhmm(us(p, due)),
                    hhmm(us(p, fin)),
                    (fin - due) / 60.0
                ),
            });
        }
    }
    plan.conflicts
        .sort_by(|a, b| (a.kind, &a.order, a.at_us).cmp(&(b.kind, &b.order, b.at_us)));
    plan
}

fn cannot_run(order: &str, step: u32, named: &str, op: Option<(&Problem, usize)>) -> Conflict {
    let can = op.map(|(p, o)| {
        p.ops[o]
            .alternatives
            .iter()
            .map(|a| p.machines[a.0].id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    });
    Conflict {
        kind: ConflictKind::CannotRun,
        order: order.to_string(),
        machine: Some(named.to_string()),
        at_us: None,
        message: match can {
            Some(c) => format!(
                "{order} step {} is planned on {named}, which cannot run it (it runs on {c})",
                step + 1
            ),
            None => format!(
                "{order} step {} is planned on {named}, which is not a machine the twin knows",
                step + 1
            ),
        },
    }
}

/// When job `j` would finish alone, each step on its fastest machine from
/// that machine's return, in working time.
pub fn earliest_finish_s(p: &Problem, j: usize) -> f64 {
    let job = &p.jobs[j];
    let mut t = job.release_s.max(0.0);
    for &o in &job.ops {
        t = p.ops[o]
            .alternatives
            .iter()
            .map(|&(m, d)| {
                let mach = &p.machines[m];
                mach.finish(t.max(mach.available_from_s), d)
            })
            .fold(f64::INFINITY, f64::min);
    }
    t
}

/// The MES plan's sequence as a schedule of the problem: each operation
/// on its planned machine (its first alternative when the MES names one
/// that cannot run it), each machine's operations in planned start order,
/// orders the plan does not hold after them by due date.
pub fn mes_sequence(p: &Problem, mes: &MesPlan) -> (Vec<usize>, Vec<Vec<usize>>) {
    let n = p.ops.len();
    let mut machine: Vec<usize> = p.ops.iter().map(|o| o.alternatives[0].0).collect();
    let mut key: Vec<i64> = vec![i64::MAX; n];
    let machine_of: HashMap<&str, usize> = p
        .machines
        .iter()
        .enumerate()
        .map(|(m, x)| (x.id.as_str(), m))
        .collect();
    for x in &mes.ops {
        let Some(o) = x.op else { continue };
        if let Some(&m) = machine_of.get(x.machine.as_str())
            && p.ops[o].alternatives.iter().any(|a| a.0 == m)
        {
            machine[o] = m;
        }
        key[o] = x.start_us;
    }
    let mut seq = vec![Vec::new(); p.machines.len()];
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| {
        let (ja, jb) = (&p.jobs[p.ops[a].job], &p.jobs[p.ops[b].job]);
        (!p.ops[a].in_progress, key[a])
            .cmp(&(!p.ops[b].in_progress, key[b]))
            .then(
                ja.due_s
                    .unwrap_or(f64::MAX)
                    .total_cmp(&jb.due_s.unwrap_or(f64::MAX)),
            )
            .then(p.ops[a].job.cmp(&p.ops[b].job))
            .then(p.ops[a].step.cmp(&p.ops[b].step))
    });
    for o in order {
        seq[machine[o]].push(o);
    }
    (machine, seq)
}

/// Per order: the MES plan (stated, and run on the plant as it is)
/// against the twin's schedule.
pub fn order_diffs(
    p: &Problem,
    mes: &MesPlan,
    executed: Option<&Plan>,
    twin: &Plan,
) -> Vec<OrderDiff> {
    let mut out = Vec::new();
    for job in &p.jobs {
        let (Some(&first), Some(&last)) = (job.ops.first(), job.ops.last()) else {
            continue;
        };
        let stated: Vec<&PlannedOp> = mes.ops.iter().filter(|x| x.order == job.id).collect();
        out.push(OrderDiff {
            order: job.id.clone(),
            due_us: job.due_s.map(|d| us(p, d)),
            mes_start_us: stated.iter().map(|x| x.start_us).min(),
            mes_end_us: stated.iter().map(|x| x.end_us).max(),
            mes_executed_end_us: executed.map(|e| us(p, e.end_s[last])),
            twin_start_us: us(p, twin.start_s[first]),
            twin_end_us: us(p, twin.end_s[last]),
        });
    }
    out
}

/// The MES plan's sequence run on the live problem, if it is one.
pub fn executed(p: &Problem, mes: &MesPlan) -> Option<Plan> {
    let (m, s) = mes_sequence(p, mes);
    evaluate(p, &m, &s)
}
