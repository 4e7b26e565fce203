//! Fits from the history: a recorded window of one machine (its state
//! transitions and its part and scrap counters) in; what the process model
//! needs out — the cycle-time distribution, stops per kind and reason with
//! their running time between and their durations (time between failures
//! on *running* time, time to repair per reason), the micro-stop rate, the
//! scrap rate — each with the number of observations behind it. The same
//! pass gives the window's actuals (time in state, parts) for back-tests.

use std::sync::Arc;

use duckdb::Connection;

use super::WhatIfError;
use super::dist::Dist;
use super::engine::SimState;
use super::model::{StopKind, StopMode};
use crate::history::query::{Transition, raw_samples, transitions};
use crate::history::store::PropIds;
use crate::registry::{AssetIdx, AssetRegistry, PropertyRef};
use crate::twin::MachineState;

/// Durations a stop reason needs to be drawn from its own.
pub const MIN_OWN: usize = 5;

/// One kind of stop as observed.
#[derive(Debug, Clone, PartialEq)]
pub struct StopFit {
    pub kind: StopKind,
    /// The reason (down) or the state's name.
    pub name: String,
    /// Stops that began in the window.
    pub count: u32,
    /// Durations of the stops wholly inside the window, s.
    pub durations_s: Vec<f64>,
}

impl StopFit {
    pub fn mean_duration_s(&self) -> f64 {
        if self.durations_s.is_empty() {
            f64::NAN
        } else {
            self.durations_s.iter().sum::<f64>() / self.durations_s.len() as f64
        }
    }
}

/// The cycle time as observed through the part counter.
#[derive(Debug, Clone, PartialEq)]
pub struct CycleFit {
    /// Running time per part (Σ running ÷ Σ parts), s.
    pub mean_s: f64,
    pub parts: u64,
    /// Counter intervals with parts and running time in them.
    pub intervals: usize,
    pub dist: Dist,
}

/// One machine over one window.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineFit {
    pub asset_id: String,
    pub from_us: i64,
    pub to_us: i64,
    /// Seconds in each [`SimState`] in the window (no data: not counted).
    pub time_in: [f64; 7],
    pub running_s: f64,
    pub stops: Vec<StopFit>,
    pub cycle: Option<CycleFit>,
    /// Parts counted in the window (counter difference).
    pub parts: Option<u64>,
    /// (scrap ÷ parts, parts) in the window.
    pub scrap: Option<(f64, u64)>,
    /// Running time since the end of the window's last tool change (a
    /// setup whose reason names the tool), s; None when it had none.
    pub running_since_tool_change_s: Option<f64>,
}

impl MachineFit {
    /// The stop modes for the model: between = exponential with the
    /// observed running time per stop, duration = the observed durations
    /// (pooled over the kind when a reason has fewer than 5).
    pub fn stop_modes(&self) -> Vec<StopMode> {
        self.stops
            .iter()
            .filter(|s| s.count > 0 && self.running_s > 0.0)
            .filter_map(|s| {
                // A reason seen fewer than MIN_OWN times borrows the
                // durations of every stop of its kind on this machine.
                let durations: Vec<f64> = if s.durations_s.len() >= MIN_OWN {
                    s.durations_s.clone()
                } else {
                    self.stops
                        .iter()
                        .filter(|o| o.kind == s.kind)
                        .flat_map(|o| o.durations_s.iter().copied())
                        .collect()
                };
                (!durations.is_empty()).then(|| StopMode {
                    name: s.name.clone(),
                    kind: s.kind,
                    between: Dist::Exponential {
                        mean: self.running_s / f64::from(s.count),
                    },
                    duration: Dist::Empirical(Arc::from(durations.as_slice())),
                })
            })
            .collect()
    }

    /// What is left of a stop of `kind` (`name`) that has lasted
    /// `elapsed_s`: the mean excess beyond it of the observed durations of
    /// that reason (else of that kind); a quarter of their mean when none
    /// lasted that long.
    pub fn residual_s(&self, kind: StopKind, name: &str, elapsed_s: f64) -> Option<f64> {
        // This reason's durations, else every duration of this kind.
        let own: Vec<f64> = self
            .stops
            .iter()
            .filter(|s| s.kind == kind && s.name == name)
            .flat_map(|s| s.durations_s.iter().copied())
            .collect();
        let durations = if own.is_empty() {
            self.stops
                .iter()
                .filter(|s| s.kind == kind)
                .flat_map(|s| s.durations_s.iter().copied())
                .collect()
        } else {
            own
        };
        if durations.is_empty() {
            return None;
        }
        let longer: Vec<f64> = durations
            .iter()
            .filter(|d| **d > elapsed_s)
            .map(|d| d - elapsed_s)
            .collect();
        Some(if longer.is_empty() {
            0.25 * durations.iter().sum::<f64>() / durations.len() as f64
        } else {
            longer.iter().sum::<f64>() / longer.len() as f64
        })
    }

    /// One line per fitted quantity with its sample count.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        let h = (self.to_us - self.from_us) as f64 / 3.6e9;
        out.push(format!(
            "{}: {:.1} h recorded, running {:.1} h",
            self.asset_id,
            h,
            self.running_s / 3600.0
        ));
        match &self.cycle {
            Some(c) => out.push(format!(
                "  cycle time {:.1} s per part (from {} parts in {} counter intervals)",
                c.mean_s, c.parts, c.intervals
            )),
            None => out.push("  cycle time: no part counter data (nominal value used)".into()),
        }
        if let Some((r, n)) = self.scrap {
            out.push(format!("  scrap rate {:.2} % (of {n} parts)", r * 100.0));
        }
        for s in &self.stops {
            let between = if s.count > 0 {
                format!("{:.0} s", self.running_s / f64::from(s.count))
            } else {
                "–".into()
            };
            out.push(format!(
                "  {:<10} {:<32} {:>3} stops, running time between {between:>7}, mean duration {:.0} s (from {})",
                kind_label(s.kind),
                s.name,
                s.count,
                s.mean_duration_s(),
                s.durations_s.len()
            ));
        }
        out
    }
}

pub fn kind_label(k: StopKind) -> &'static str {
    match k {
        StopKind::Down => "down",
        StopKind::MicroStop => "micro-stop",
        StopKind::Setup => "setup",
        StopKind::Blocked => "blocked",
        StopKind::Starved => "starved",
    }
}

/// The stop kind of a twin state (None: running or no data).
pub fn stop_kind(state: MachineState) -> Option<StopKind> {
    Some(match state {
        MachineState::Down => StopKind::Down,
        MachineState::Idle => StopKind::MicroStop,
        MachineState::Setup => StopKind::Setup,
        MachineState::Blocked => StopKind::Blocked,
        MachineState::Starved => StopKind::Starved,
        MachineState::Running | MachineState::Unknown => return None,
    })
}

pub fn sim_state(state: MachineState) -> Option<SimState> {
    Some(match state {
        MachineState::Running => SimState::Running,
        MachineState::Setup => SimState::Setup,
        MachineState::Idle => SimState::MicroStop,
        MachineState::Blocked => SimState::Blocked,
        MachineState::Starved => SimState::Starved,
        MachineState::Down => SimState::Down,
        MachineState::Unknown => return None,
    })
}

/// The counter property of a machine (`part_count` or `cycle_count`).
pub fn counter(registry: &AssetRegistry, asset: AssetIdx, name: &str) -> Option<PropertyRef> {
    registry.property_by_name(asset, name)
}

/// A counter's last value at or before `t_us`.
pub fn counter_at(conn: &Connection, prop_id: i32, t_us: i64) -> Result<Option<f64>, WhatIfError> {
    conn.query_row(
        "SELECT value FROM samples WHERE prop_id = ? AND ts_us <= ? AND value IS NOT NULL
         ORDER BY ts_us DESC LIMIT 1",
        duckdb::params![prop_id, t_us],
        |r| r.get::<_, f64>(0),
    )
    .map(Some)
    .or_else(|e| match e {
        duckdb::Error::QueryReturnedNoRows => Ok(None),
        e => Err(WhatIfError::History(format!("reading a counter: {e}"))),
    })
}

/// State segments (start, end, state, reason) clipped to the window.
fn segments(
    tr: &[Transition],
    from_us: i64,
    to_us: i64,
) -> Vec<(i64, i64, MachineState, String, bool)> {
    let mut out = Vec::new();
    for (i, t) in tr.iter().enumerate() {
        let end = tr.get(i + 1).map_or(to_us, |n| n.ts_us).min(to_us);
        let start = t.ts_us.max(from_us);
        if end <= start {
            continue;
        }
        let state = MachineState::parse(&t.state).unwrap_or(MachineState::Unknown);
        let whole = t.ts_us >= from_us && tr.get(i + 1).is_some_and(|n| n.ts_us <= to_us);
        out.push((
            start,
            end,
            state,
            t.reason.clone().unwrap_or_default(),
            whole,
        ));
    }
    out
}

/// Fits one machine over `[from_us, to_us)`.
pub fn fit_machine(
    conn: &Connection,
    props: &PropIds,
    registry: &AssetRegistry,
    asset: AssetIdx,
    from_us: i64,
    to_us: i64,
) -> Result<MachineFit, WhatIfError> {
    let h = |e: crate::history::HistoryError| WhatIfError::History(e.to_string());
    let id = registry
        .get(asset)
        .map(|a| a.id.clone())
        .ok_or_else(|| WhatIfError::Model(format!("no asset {}", asset.0)))?;
    let tr = transitions(conn, &id, from_us, to_us).map_err(h)?;
    let segs = segments(&tr, from_us, to_us);
    let mut fit = MachineFit {
        asset_id: id,
        from_us,
        to_us,
        time_in: [0.0; 7],
        running_s: 0.0,
        stops: Vec::new(),
        cycle: None,
        parts: None,
        scrap: None,
        running_since_tool_change_s: None,
    };
    for (start, end, state, reason, whole) in &segs {
        let d = (end - start) as f64 / 1e6;
        if let Some(s) = sim_state(*state) {
            fit.time_in[s.index()] += d;
        }
        if *state == MachineState::Running {
            fit.running_s += d;
        }
        let Some(kind) = stop_kind(*state) else {
            continue;
        };
        let name = if kind == StopKind::Down && !reason.is_empty() {
            reason.clone()
        } else {
            kind_label(kind).to_string()
        };
        let i = match fit
            .stops
            .iter()
            .position(|s| s.kind == kind && s.name == name)
        {
            Some(i) => i,
            None => {
                fit.stops.push(StopFit {
                    kind,
                    name,
                    count: 0,
                    durations_s: Vec::new(),
                });
                fit.stops.len() - 1
            }
        };
        if *start > from_us || tr.first().is_some_and(|t| t.ts_us >= from_us) {
            fit.stops[i].count += 1;
        }
        if *whole {
            fit.stops[i].durations_s.push(d);
        }
    }
    fit.stops
        .sort_by(|a, b| b.count.cmp(&a.count).then(a.name.cmp(&b.name)));
    if let Some(k) = segs
        .iter()
        .rposition(|s| s.2 == MachineState::Setup && s.3.to_ascii_lowercase().contains("tool"))
    {
        fit.running_since_tool_change_s = Some(
            segs[k + 1..]
                .iter()
                .filter(|s| s.2 == MachineState::Running)
                .map(|s| (s.1 - s.0) as f64 / 1e6)
                .sum(),
        );
    }
    // Cycle time from the part counter and the running time between its samples.
    if let Some(pc) =
        counter(registry, asset, "part_count").or_else(|| counter(registry, asset, "cycle_count"))
        && let Some(pid) = props.id(pc)
    {
        let samples = raw_samples(conn, pid, from_us, to_us).map_err(h)?;
        let running_in = |a: i64, b: i64| -> f64 {
            segs.iter()
                .filter(|s| s.2 == MachineState::Running)
                .map(|s| (s.1.min(b) - s.0.max(a)).max(0) as f64 / 1e6)
                .sum()
        };
        let (mut parts, mut run, mut est) = (0u64, 0.0, Vec::new());
        for w in samples.windows(2) {
            let (Some(a), Some(b)) = (w[0].1, w[1].1) else {
                continue;
            };
            if b < a {
                continue; // a counter reset
            }
            let n = (b - a).round() as u64;
            let r = running_in(w[0].0, w[1].0);
            if n > 0 && r > 0.0 {
                parts += n;
                run += r;
                est.push(r / n as f64);
            }
        }
        let first = samples.iter().find_map(|s| s.1);
        let last = samples.iter().rev().find_map(|s| s.1);
        if let (Some(a), Some(b)) = (first, last)
            && b >= a
        {
            fit.parts = Some((b - a).round() as u64);
        }
        if parts >= 5 && est.len() >= 3 {
            let mean = run / parts as f64;
            let m_est = est.iter().sum::<f64>() / est.len() as f64;
            let k = mean / m_est;
            fit.cycle = Some(CycleFit {
                mean_s: mean,
                parts,
                intervals: est.len(),
                dist: Dist::Empirical(est.iter().map(|x| x * k).collect()),
            });
        }
        if let Some(sc) = counter(registry, asset, "scrap_count")
            && let Some(sid) = props.id(sc)
        {
            let s = raw_samples(conn, sid, from_us, to_us).map_err(h)?;
            let (a, b) = (s.iter().find_map(|x| x.1), s.iter().rev().find_map(|x| x.1));
            if let (Some(a), Some(b), Some(p)) = (a, b, fit.parts)
                && p > 0
                && b >= a
            {
                fit.scrap = Some(((b - a) / p as f64, p));
            }
        }
    }
    Ok(fit)
}
