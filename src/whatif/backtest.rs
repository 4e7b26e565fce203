//! Back-testing: the recorded history and a window [T0, T1] in; how well
//! the simulation from the recorded state at T0 predicted what the plant
//! then did, out.
//!
//! The model is fitted on the history *before* T0 (a fit window of its
//! own, so the test is out of sample), forked from the recorded machine
//! states and MES orders at T0, given the orders the MES released during
//! the window at their release times, and run R replications to T1. Its
//! per-machine parts, operation completions and time in state are
//! compared with the recorded ones: mean absolute percentage error and
//! bias, per machine and overall.

use std::fmt::Write as _;
use std::sync::Arc;

use duckdb::Connection;

use super::WhatIfError;
use super::engine::{RunOptions, SimState};
use super::fit::{MachineFit, fit_machine};
use super::plant::{
    PlantSettings, build_model, is_machine, recorded_mes_events, snapshot_from_history,
};
use super::pool::{Pool, Progress};
use super::stats::Estimate;
use crate::contract::MesEvent;
use crate::history::store::PropIds;
use crate::registry::AssetRegistry;

/// What to back-test.
#[derive(Debug, Clone)]
pub struct BacktestSettings {
    pub from_us: i64,
    pub to_us: i64,
    /// Fit the model on [fit_from_us, from_us).
    pub fit_from_us: i64,
    pub replications: u32,
    pub seed: u64,
    pub time_scale: f64,
    /// The plant's shift calendar, if it has one.
    pub calendar: Option<crate::calendar::ShiftCalendar>,
}

/// One machine: recorded vs simulated.
#[derive(Debug, Clone)]
pub struct MachineRow {
    pub asset_id: String,
    pub actual_parts: Option<u64>,
    pub sim_parts: Estimate,
    /// Share of the window per [`SimState`], recorded and simulated.
    pub actual_share: [f64; 7],
    pub sim_share: [f64; 7],
    pub actual_completions: usize,
    pub sim_completions: Estimate,
}

/// One operation the MES recorded as completed in the window.
#[derive(Debug, Clone)]
pub struct CompletionRow {
    pub work_order: String,
    pub asset_id: String,
    /// After T0, s.
    pub actual_s: f64,
    /// Mean over the replications that completed it.
    pub sim_s: Option<f64>,
    pub sim_done_in: usize,
}

/// The back-test's result.
#[derive(Debug, Clone)]
pub struct Backtest {
    pub settings: BacktestSettings,
    pub fits: Vec<MachineFit>,
    pub notes: Vec<String>,
    pub machines: Vec<MachineRow>,
    pub completions: Vec<CompletionRow>,
    pub orders_at_fork: usize,
    pub orders_released_in_window: usize,
}

fn share(t: &[f64; 7]) -> [f64; 7] {
    let total: f64 = t.iter().sum();
    let mut out = [0.0; 7];
    if total > 0.0 {
        for (o, v) in out.iter_mut().zip(t) {
            *o = v / total;
        }
    }
    out
}

/// Runs a back-test on an open history.
pub fn backtest(
    conn: &Connection,
    props: &PropIds,
    registry: &AssetRegistry,
    settings: &BacktestSettings,
    pool: &Pool,
    progress: &Progress,
) -> Result<Backtest, WhatIfError> {
    let s = settings;
    if s.to_us <= s.from_us || s.from_us <= s.fit_from_us {
        return Err(WhatIfError::Model(
            "a back-test needs fit start < T0 < T1".into(),
        ));
    }
    let mut fits = Vec::new();
    let mut actual = Vec::new();
    for (i, a) in registry.assets().iter().enumerate() {
        if !is_machine(registry, &a.id) {
            continue;
        }
        let idx = crate::registry::AssetIdx(i as u32);
        fits.push(fit_machine(
            conn,
            props,
            registry,
            idx,
            s.fit_from_us,
            s.from_us,
        )?);
        actual.push(fit_machine(conn, props, registry, idx, s.from_us, s.to_us)?);
    }
    let events = recorded_mes_events(conn, s.to_us)?;
    let snap = snapshot_from_history(conn, props, registry, &events, s.from_us, Some(s.to_us))?;
    let orders_released_in_window = snap
        .orders
        .iter()
        .filter(|o| o.release_us.is_some())
        .count();
    let orders_at_fork = snap.orders.len() - orders_released_in_window;
    let plant = PlantSettings {
        horizon_s: (s.to_us - s.from_us) as f64 / 1e6,
        time_scale: s.time_scale,
        off_shift_us: s
            .calendar
            .as_ref()
            .map_or_else(Vec::new, |c| c.off(s.from_us, s.to_us)),
        has_calendar: s.calendar.is_some(),
    };
    let (model, notes) = build_model(registry, &snap, &fits, &plant)?;
    let model = Arc::new(model);
    let runs = pool
        .run_with(
            std::slice::from_ref(&model),
            0..s.replications.max(2),
            s.seed,
            progress,
            |_| RunOptions {
                record_trace: false,
                record_ops: true,
                max_events: None,
            },
        )?
        .remove(0);
    // Operations the MES completed in the window.
    let mut completions = Vec::new();
    for e in events
        .iter()
        .filter(|e| e.source_time_us > s.from_us && e.source_time_us <= s.to_us)
    {
        if let MesEvent::OperationCompleted {
            work_order,
            asset_id,
            ..
        } = &e.event
        {
            let (Some(o), Some(st)) = (
                model.orders.iter().position(|o| &o.id == work_order),
                model.station(asset_id),
            ) else {
                continue;
            };
            let times: Vec<f64> = runs
                .iter()
                .filter_map(|r| {
                    r.ops
                        .iter()
                        .find(|(oo, _, ss, _)| *oo == o as u32 && *ss == st)
                        .map(|x| x.3)
                })
                .collect();
            completions.push(CompletionRow {
                work_order: work_order.clone(),
                asset_id: asset_id.clone(),
                actual_s: (e.source_time_us - s.from_us) as f64 / 1e6,
                sim_s: (!times.is_empty()).then(|| times.iter().sum::<f64>() / times.len() as f64),
                sim_done_in: times.len(),
            });
        }
    }
    let mut machines = Vec::new();
    let mut unrouted = Vec::new();
    for (si, st) in model.stations.iter().enumerate() {
        let Some(act) = actual.iter().find(|a| a.asset_id == st.id) else {
            continue;
        };
        // A machine no order is routed through only idles in the model:
        // nothing to compare.
        let routed = model.products.iter().any(|p| {
            p.routing
                .iter()
                .any(|step| step.stations.contains(&(si as u32)))
        });
        if !routed {
            unrouted.push(st.id.clone());
            continue;
        }
        let mut sim_t = [0.0; 7];
        for r in &runs {
            for (k, v) in r.time_in[si].iter().enumerate() {
                sim_t[k] += v / runs.len() as f64;
            }
        }
        // Operations the simulation completed on this machine.
        let sim_completions = Estimate::of(
            runs.iter()
                .map(|r| r.ops.iter().filter(|op| op.2 == si as u32).count() as f64),
        );
        machines.push(MachineRow {
            asset_id: st.id.clone(),
            actual_parts: act.parts,
            sim_parts: Estimate::of(
                runs.iter()
                    .map(|r| r.units_done[si] as f64 + r.units_in_process[si]),
            ),
            actual_share: share(&act.time_in),
            sim_share: share(&sim_t),
            actual_completions: completions.iter().filter(|c| c.asset_id == st.id).count(),
            sim_completions,
        });
    }
    let mut notes = notes;
    if !unrouted.is_empty() {
        notes.push(format!(
            "not compared (no order's routing goes through them): {}",
            unrouted.join(", ")
        ));
    }
    Ok(Backtest {
        settings: s.clone(),
        fits,
        notes,
        machines,
        completions,
        orders_at_fork,
        orders_released_in_window,
    })
}

impl Backtest {
    /// (MAPE %, bias %) of parts over the machines with recorded parts.
    pub fn parts_error(&self) -> (f64, f64) {
        mape_bias(
            self.machines
                .iter()
                .filter_map(|m| Some((m.actual_parts? as f64, m.sim_parts.mean)))
                .filter(|(a, _)| *a > 0.0),
        )
    }

    /// (MAPE %, bias %) of the running share.
    pub fn running_error(&self) -> (f64, f64) {
        let r = SimState::Running.index();
        mape_bias(
            self.machines
                .iter()
                .map(|m| (m.actual_share[r], m.sim_share[r]))
                .filter(|(a, _)| *a > 0.0),
        )
    }

    /// (mean absolute error, bias) of completion times, s, over the
    /// operations the simulation completed too; and how many it did not.
    pub fn completion_error(&self) -> (f64, f64, usize) {
        let done: Vec<(f64, f64)> = self
            .completions
            .iter()
            .filter_map(|c| Some((c.actual_s, c.sim_s?)))
            .collect();
        let missed = self.completions.len() - done.len();
        if done.is_empty() {
            return (f64::NAN, f64::NAN, missed);
        }
        let n = done.len() as f64;
        (
            done.iter().map(|(a, s)| (s - a).abs()).sum::<f64>() / n,
            done.iter().map(|(a, s)| s - a).sum::<f64>() / n,
            missed,
        )
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let st = &self.settings;
        let _ = writeln!(
            s,
            "Back-test {} → {} ({:.2} h), fitted on the {:.2} h before, {} replications",
            crate::mes::rfc3339(st.from_us),
            crate::mes::rfc3339(st.to_us),
            (st.to_us - st.from_us) as f64 / 3.6e9,
            (st.from_us - st.fit_from_us) as f64 / 3.6e9,
            st.replications
        );
        let _ = writeln!(
            s,
            "Orders: {} open at T0, {} released in the window.",
            self.orders_at_fork, self.orders_released_in_window
        );
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        let _ = writeln!(
            s,
            "\n{:<14} | {:>8} | {:>16} | {:>7} | {:>15} | {:>15} | {:>15} | {:>11}",
            "machine",
            "parts",
            "simulated",
            "error",
            "running rec/sim",
            "down rec/sim",
            "stops rec/sim",
            "op. done"
        );
        let _ = writeln!(s, "{}", "-".repeat(126));
        let (r, d) = (SimState::Running.index(), SimState::Down.index());
        for m in &self.machines {
            let err = match m.actual_parts {
                Some(a) if a > 0 => {
                    format!("{:+.1} %", (m.sim_parts.mean - a as f64) / a as f64 * 100.0)
                }
                _ => "–".into(),
            };
            let other = |x: &[f64; 7]| 1.0 - x[r] - x[d];
            let _ = writeln!(
                s,
                "{:<14} | {:>8} | {:>7.1} ± {:>5.1} | {:>7} | {:>6.1} / {:>5.1} % | {:>6.1} / {:>5.1} % | {:>6.1} / {:>5.1} % | {:>4} / {:>4.1}",
                m.asset_id,
                m.actual_parts.map_or("–".into(), |p| p.to_string()),
                m.sim_parts.mean,
                m.sim_parts.half_width,
                err,
                m.actual_share[r] * 100.0,
                m.sim_share[r] * 100.0,
                m.actual_share[d] * 100.0,
                m.sim_share[d] * 100.0,
                other(&m.actual_share) * 100.0,
                other(&m.sim_share) * 100.0,
                m.actual_completions,
                m.sim_completions.mean
            );
        }
        let (pm, pb) = self.parts_error();
        let (rm, rb) = self.running_error();
        let (cm, cb, missed) = self.completion_error();
        let _ = writeln!(
            s,
            "\nParts per machine: MAPE {pm:.1} %, bias {pb:+.1} %.\nRunning share: MAPE {rm:.1} %, bias {rb:+.1} %.\n\
             Operation completions: {} recorded in the window; simulated time error: mean absolute {:.1} min, bias {:+.1} min; {} not completed in the simulation.",
            self.completions.len(),
            cm / 60.0,
            cb / 60.0,
            missed
        );
        s
    }

    /// Per machine, CSV.
    pub fn to_csv(&self) -> String {
        let mut s = String::from(
            "asset_id,actual_parts,sim_parts_mean,sim_parts_half_width_95,actual_running_share,sim_running_share,actual_down_share,sim_down_share,actual_op_completions,sim_op_completions\n",
        );
        let (r, d) = (SimState::Running.index(), SimState::Down.index());
        for m in &self.machines {
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{},{},{}",
                m.asset_id,
                m.actual_parts.map_or(String::new(), |p| p.to_string()),
                m.sim_parts.mean,
                m.sim_parts.half_width,
                m.actual_share[r],
                m.sim_share[r],
                m.actual_share[d],
                m.sim_share[d],
                m.actual_completions,
                m.sim_completions.mean
            );
        }
        s
    }
}

fn mape_bias(pairs: impl Iterator<Item = (f64, f64)>) -> (f64, f64) {
    let v: Vec<(f64, f64)> = pairs.collect();
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = v.len() as f64;
    (
        v.iter().map(|(a, s)| ((s - a) / a).abs()).sum::<f64>() / n * 100.0,
        v.iter().map(|(a, s)| (s - a) / a).sum::<f64>() / n * 100.0,
    )
}
