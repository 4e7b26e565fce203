//! The live plant's scheduling problem: the what-if process model of the
//! plant now (machines, their state and expected return, the shift
//! calendar, setups, the MES's orders with routings, progress, release and
//! due dates) and the per-machine fits in; a [`Problem`] out, with notes on
//! what it assumed.
//!
//! One operation per (order, remaining routing step), its time the
//! order's remaining quantity × the machine's expected cycle time; a step
//! with alternative machines keeps them all (a flexible job shop; the
//! plant's alternatives are the machines of the same class, line and
//! nominal cycle time, [`same_class_alternatives`]). A
//! machine down or in setup at the fork is available after the expected
//! rest of that stop (from its recorded stop durations); its tool is
//! changed after the mean running time between recorded tool changes,
//! less the running time since the last one. Breakdowns and cycle-time
//! variation are left to the robustness check ([`super::robust`]).

use std::collections::HashMap;

use super::plan::{Job, Machine, Objective, Op, Problem, ToolChange};
use crate::registry::AssetRegistry;
use crate::whatif::fit::MachineFit;
use crate::whatif::model::{Model, StopKind};

/// The problem and how it maps back to the model.
#[derive(Debug, Clone)]
pub struct LiveProblem {
    pub problem: Problem,
    /// Per job, the model's order index.
    pub job_order: Vec<usize>,
    pub notes: Vec<String>,
}

/// Per station of the model, the other machines that can run its work:
/// the machines of the same class in the same line (ISA-95 work center)
/// with the same nominal ideal cycle time.
pub fn same_class_alternatives(registry: &AssetRegistry, model: &Model) -> Vec<Vec<u32>> {
    let key = |id: &str| {
        let a = registry.get(registry.by_id(id)?)?;
        let cycle = a.nominal.get("ideal_cycle_time")?;
        Some((
            a.class.clone(),
            a.isa95.site.clone(),
            a.isa95.area.clone(),
            a.isa95.work_center.clone(),
            cycle.value.to_bits(),
            cycle.unit.clone(),
        ))
    };
    let keys: Vec<_> = model.stations.iter().map(|s| key(&s.id)).collect();
    (0..model.stations.len())
        .map(|i| {
            (0..model.stations.len())
                .filter(|&j| j != i && keys[i].is_some() && keys[i] == keys[j])
                .map(|j| j as u32)
                .collect()
        })
        .collect()
}

/// Builds the problem from the plant's model (its orders, not generated
/// arrivals) and the fits by asset id; `alternatives[s]`: machines that
/// may run a step routed to station `s` (empty: none).
pub fn problem_from_model(
    model: &Model,
    fits: &[MachineFit],
    alternatives: &[Vec<u32>],
    objective: Objective,
) -> LiveProblem {
    let mut notes = Vec::new();
    let fit_of: HashMap<&str, &MachineFit> =
        fits.iter().map(|f| (f.asset_id.as_str(), f)).collect();
    let mut machines = Vec::new();
    for st in &model.stations {
        let mut m = Machine::new(st.id.clone());
        m.setup_default_s = st.setup_default_s;
        m.setups = st.setups.clone();
        m.initial_family = st.initial_family;
        if let Some(stop) = &st.initial_stop
            && matches!(stop.kind, StopKind::Down | StopKind::Setup)
            && stop.remaining_s >= 1.0
        {
            m.available_from_s = stop.remaining_s;
            m.unavailable_because = Some(format!(
                "{} ({}): expected back in {}",
                crate::whatif::fit::kind_label(stop.kind),
                stop.name,
                duration_text(stop.remaining_s)
            ));
        }
        let mut off: Vec<(f64, f64)> = st.downtime.clone();
        if st.follows_calendar {
            off.extend(model.off_shift.iter().copied());
        }
        m.off_s = merge(off);
        let tool = st
            .stops
            .iter()
            .find(|s| s.kind == StopKind::Setup && s.between.mean() > 0.0);
        if let Some(t) = tool {
            let interval_s = t.between.mean();
            let since = fit_of
                .get(st.id.as_str())
                .and_then(|f| f.running_since_tool_change_s);
            if since.is_none() {
                notes.push(format!(
                    "{}: no tool change in the fitted window; the next one assumed after a full interval ({} of processing)",
                    st.id,
                    duration_text(interval_s)
                ));
            }
            m.tool_change = Some(ToolChange {
                after_s: (interval_s - since.unwrap_or(0.0)).max(0.0),
                interval_s,
                duration_s: t.duration.mean(),
            });
        }
        machines.push(m);
    }
    let mut jobs = Vec::new();
    let mut ops = Vec::new();
    let mut job_order = Vec::new();
    for (oi, o) in model.orders.iter().enumerate() {
        let Some(product) = model.products.get(o.product as usize) else {
            continue;
        };
        let j = jobs.len();
        let mut job = Job {
            id: o.id.clone(),
            product: product.id.clone(),
            quantity: o.quantity,
            family: product.family,
            release_s: o.release_s.max(0.0),
            due_s: o.due_s,
            weight: o.weight,
            ops: Vec::new(),
        };
        for (k, step) in product.routing.iter().enumerate().skip(o.step as usize) {
            let mut units = o.quantity;
            let mut in_progress = false;
            let mut stations = step.stations.clone();
            for s in &step.stations {
                for &alt in alternatives.get(*s as usize).into_iter().flatten() {
                    if !stations.contains(&alt) {
                        stations.push(alt);
                    }
                }
            }
            if k == o.step as usize
                && let Some((s, done)) = o.in_process
            {
                units = o.quantity.saturating_sub(done).max(1);
                in_progress = true;
                stations = vec![s];
            }
            let alternatives = stations
                .iter()
                .map(|&s| {
                    let factor = model
                        .stations
                        .get(s as usize)
                        .map_or(1.0, |x| x.time_factor);
                    (s as usize, step.time.mean() * factor * f64::from(units))
                })
                .collect();
            job.ops.push(ops.len());
            ops.push(Op {
                job: j,
                step: k as u32,
                alternatives,
                in_progress,
            });
        }
        if job.ops.is_empty() {
            continue;
        }
        jobs.push(job);
        job_order.push(oi);
    }
    if !model.arrivals.is_empty() {
        notes.push(format!(
            "{} generated arrival stream(s) are not scheduled (only known orders are)",
            model.arrivals.len()
        ));
    }
    LiveProblem {
        problem: Problem {
            origin_us: model.origin_us,
            machines,
            jobs,
            ops,
            objective,
        },
        job_order,
        notes,
    }
}

/// "40 s", "12.5 min", "3.2 h".
pub fn duration_text(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// Sorted, overlapping and touching windows joined.
fn merge(mut w: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    w.retain(|(a, b)| b > a && *b > 0.0);
    w.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(w.len());
    for (a, b) in w {
        match out.last_mut() {
            Some(l) if a <= l.1 => l.1 = l.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}
