//! OEE by ISO 22400-2, in one function every view calls: a machine's state
//! segments, part and scrap counter readings, ideal cycle time, the planned
//! windows of a period and the loss rules in; an [`Oee`] record out (times,
//! counts, the loss tree, A, P, Q, OEE, warnings). [`Oee::merge`] rolls
//! records up by adding their times and counts, so a line's OEE is weighted
//! by each machine's planned time, never an average of ratios.
//!
//! - Planned busy time (PBT): the planned windows (shifts minus breaks and
//!   planned downtime; the whole period when there is no calendar) minus
//!   stops the rules call `planned` (e.g. changeovers, when configured so).
//! - Run time (actual production time): running, plus micro-stops (stops
//!   shorter than the threshold, a performance loss), inside PBT.
//! - Availability losses: breakdowns, setups, stops, time with no data.
//!   PBT = run time + availability losses, exactly.
//! - Net run time = ideal cycle time × produced; performance = net / run.
//!   Reduced speed = run − net − micro-stops (negative when the ideal
//!   cycle time is too long: performance > 100 %, warned, never clamped).
//! - Fully productive time = ideal × good; quality = good / produced.
//!   Rejects within the start-up window after a setup (changeover, tool
//!   change) ends are start-up rejects, the others production rejects.
//! - OEE = A × P × Q = fully productive time / PBT.
//!
//! The MES's operation completions (good and scrap per operation) give
//! its own quality beside the counters' ([`Oee::mes_quality`]).
//!
//! Counters: produced and scrap are the sums of the counters' increases
//! with their reading time inside PBT; a decrease is a reset (the new
//! reading is counted from zero).

use std::collections::BTreeMap;

use super::rules::{Loss, LossRules};
use crate::twin::MachineState;

/// A machine state from `start_us` to `end_us`.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub start_us: i64,
    pub end_us: i64,
    pub state: MachineState,
    pub reason: String,
}

/// What one machine recorded over (at least) the period.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MachineInput {
    pub asset_id: String,
    pub ideal_cycle_s: Option<f64>,
    /// Where the ideal cycle time came from (for warnings).
    pub ideal_source: String,
    /// Contiguous, oldest first; time not covered has no data.
    pub segments: Vec<Segment>,
    /// (reading time, cumulative count), oldest first.
    pub part_counter: Vec<(i64, f64)>,
    pub scrap_counter: Vec<(i64, f64)>,
    /// The MES's operation completions on this machine: (time, good,
    /// scrap), oldest first — its own quality, set beside the counters'.
    pub mes_completions: Vec<(i64, f64, f64)>,
}

/// An OEE record: one machine, or a roll-up, over one period.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Oee {
    pub planned_s: f64,
    pub run_s: f64,
    pub net_run_s: f64,
    pub fully_productive_s: f64,
    pub produced: f64,
    pub good: f64,
    /// Seconds (A and P losses) or ideal-time seconds (Q losses) per
    /// (loss, reason).
    pub losses: BTreeMap<(Loss, String), f64>,
    pub startup_rejects: f64,
    pub production_rejects: f64,
    /// Machines (or records) merged in.
    pub machines: u32,
    /// Of them, machines with no ideal cycle time (no P, no OEE).
    pub without_ideal: u32,
    /// The MES's reported good and scrap quantities of the operations it
    /// completed in the period, and how many.
    pub mes_good: f64,
    pub mes_scrap: f64,
    pub mes_operations: u32,
    pub warnings: Vec<String>,
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

impl Oee {
    pub fn availability(&self) -> Option<f64> {
        ratio(self.run_s, self.planned_s)
    }
    pub fn performance(&self) -> Option<f64> {
        if self.without_ideal > 0 {
            return None;
        }
        ratio(self.net_run_s, self.run_s)
    }
    pub fn quality(&self) -> Option<f64> {
        ratio(self.good, self.produced)
    }
    /// The MES's own quality for the operations it completed in the
    /// period (a cross-check of the counters').
    pub fn mes_quality(&self) -> Option<f64> {
        ratio(self.mes_good, self.mes_good + self.mes_scrap)
    }

    pub fn oee(&self) -> Option<f64> {
        if self.without_ideal > 0 {
            return None;
        }
        ratio(self.fully_productive_s, self.planned_s)
    }

    /// Seconds of one factor's losses.
    pub fn loss_s(&self, factor: char) -> f64 {
        self.losses
            .iter()
            .filter(|((l, _), _)| l.factor() == factor)
            .map(|(_, s)| s)
            .sum()
    }

    /// Adds another record's times and counts (a roll-up).
    pub fn merge(&mut self, o: &Oee) {
        self.planned_s += o.planned_s;
        self.run_s += o.run_s;
        self.net_run_s += o.net_run_s;
        self.fully_productive_s += o.fully_productive_s;
        self.produced += o.produced;
        self.good += o.good;
        self.startup_rejects += o.startup_rejects;
        self.production_rejects += o.production_rejects;
        self.machines += o.machines;
        self.without_ideal += o.without_ideal;
        self.mes_good += o.mes_good;
        self.mes_scrap += o.mes_scrap;
        self.mes_operations += o.mes_operations;
        for (k, v) in &o.losses {
            *self.losses.entry(k.clone()).or_default() += v;
        }
        self.warnings.extend(o.warnings.iter().cloned());
    }

    /// Planned → run → net run → fully productive, s.
    pub fn waterfall(&self) -> [(&'static str, f64); 4] {
        [
            ("planned busy time", self.planned_s),
            ("run time", self.run_s),
            ("net run time", self.net_run_s),
            ("fully productive time", self.fully_productive_s),
        ]
    }

    /// Losses largest first (a Pareto), excluded time left out.
    pub fn pareto(&self) -> Vec<(Loss, String, f64)> {
        let mut v: Vec<(Loss, String, f64)> = self
            .losses
            .iter()
            .filter(|((l, _), s)| *l != Loss::Planned && **s > 0.0)
            .map(|((l, r), s)| (*l, r.clone(), *s))
            .collect();
        v.sort_by(|a, b| b.2.total_cmp(&a.2));
        v
    }
}

/// Overlap of [a, b) with the sorted windows, s.
fn overlap_s(windows: &[(i64, i64)], a: i64, b: i64) -> f64 {
    windows
        .iter()
        .map(|&(x, y)| (b.min(y) - a.max(x)).max(0))
        .sum::<i64>() as f64
        / 1e6
}

fn inside(windows: &[(i64, i64)], t: i64) -> bool {
    windows.iter().any(|&(x, y)| t > x && t <= y)
}

/// Counter increases read inside `windows` (a reading at t counts the
/// parts made up to t), as (time, increase); an increase over an interval
/// mostly without data (`blind`) cannot be placed and is returned apart.
fn increases(
    counter: &[(i64, f64)],
    windows: &[(i64, i64)],
    blind: &[(i64, i64)],
) -> (Vec<(i64, f64)>, f64) {
    let mut out = Vec::new();
    let mut unseen = 0.0;
    for w in counter.windows(2) {
        let (t0, (t, v)) = (w[0].0, w[1]);
        let d = if v >= w[0].1 { v - w[0].1 } else { v };
        if d <= 0.0 || !inside(windows, t) {
            continue;
        }
        // Mostly blind between the two readings: the parts cannot be placed.
        let blind_us: i64 = blind
            .iter()
            .map(|&(a, b)| (b.min(t) - a.max(t0)).max(0))
            .sum();
        if 2 * blind_us > t - t0 {
            unseen += d;
        } else {
            out.push((t, d));
        }
    }
    (out, unseen)
}

/// Computes one machine's OEE over `planned` (sorted, non-overlapping
/// windows, µs).
pub fn compute(input: &MachineInput, planned: &[(i64, i64)], rules: &LossRules) -> Oee {
    let mut o = Oee {
        machines: 1,
        ..Default::default()
    };
    let planned_total: f64 = planned.iter().map(|(a, b)| (b - a) as f64 / 1e6).sum();
    // Time in PBT each segment covers, classified.
    let mut covered = 0.0;
    let mut excluded: Vec<(i64, i64)> = Vec::new();
    let mut setup_ends: Vec<i64> = Vec::new();
    // Only what can touch the windows (sorted inputs are cut by binary
    // search: a shift of a month's history costs its own segments).
    let (w0, w1) = (
        planned.first().map_or(i64::MIN, |w| w.0),
        planned.last().map_or(i64::MIN, |w| w.1),
    );
    let reach_us = (rules.startup_reject_window_s * 1e6) as i64;
    let segments: &[Segment] = if input.segments.is_sorted_by_key(|s| s.start_us) {
        let lo = input
            .segments
            .partition_point(|s| s.end_us <= w0.saturating_sub(reach_us));
        let hi = input.segments.partition_point(|s| s.start_us < w1);
        &input.segments[lo.min(hi)..hi]
    } else {
        &input.segments
    };
    let window = |c: &[(i64, f64)]| -> std::ops::Range<usize> {
        if !c.is_sorted_by_key(|r| r.0) {
            return 0..c.len();
        }
        let lo = c.partition_point(|r| r.0 <= w0).saturating_sub(1);
        let hi = c.partition_point(|r| r.0 <= w1);
        lo.min(hi)..hi
    };
    let part_counter = &input.part_counter[window(&input.part_counter)];
    let scrap_counter = &input.scrap_counter[window(&input.scrap_counter)];
    for s in segments {
        let t = overlap_s(planned, s.start_us, s.end_us);
        if t <= 0.0 {
            if s.state == MachineState::Setup {
                setup_ends.push(s.end_us);
            }
            continue;
        }
        covered += t;
        let whole_s = (s.end_us - s.start_us) as f64 / 1e6;
        let loss = rules.classify(s.state, &s.reason).map(|l| match l {
            Loss::Stop if whole_s < rules.micro_stop_threshold_s => Loss::MicroStop,
            l => l,
        });
        if s.state == MachineState::Setup {
            setup_ends.push(s.end_us);
        }
        match loss {
            None => o.run_s += t,
            Some(Loss::MicroStop) => {
                o.run_s += t;
                *o.losses
                    .entry((Loss::MicroStop, s.reason.clone()))
                    .or_default() += t;
            }
            Some(Loss::Planned) => {
                excluded.push((s.start_us, s.end_us));
                *o.losses
                    .entry((Loss::Planned, s.reason.clone()))
                    .or_default() += t;
            }
            Some(l) => {
                *o.losses.entry((l, s.reason.clone())).or_default() += t;
            }
        }
    }
    let excluded_s: f64 = excluded
        .iter()
        .map(|&(a, b)| overlap_s(planned, a, b))
        .sum();
    let no_data = (planned_total - covered).max(0.0);
    if no_data > 0.0 {
        *o.losses
            .entry((Loss::NoData, "no state recorded".into()))
            .or_default() += no_data;
    }
    o.planned_s = planned_total - excluded_s;
    // Counts inside planned busy time.
    let busy: Vec<(i64, i64)> = excluded.iter().fold(planned.to_vec(), |p, &(a, b)| {
        crate::calendar::subtract(&p, a, b)
    });
    // Time the twin had no state for: parts counted across it cannot be
    // told apart from the ones before, and are left out (said).
    let blind: Vec<(i64, i64)> = segments
        .iter()
        .filter(|s| s.state == MachineState::Unknown)
        .map(|s| (s.start_us, s.end_us))
        .collect();
    let (parts, unseen) = increases(part_counter, &busy, &blind);
    o.produced = parts.iter().fold(0.0, |a, x| a + x.1);
    if unseen > 0.0 {
        o.warnings.push(format!(
            "{}: {unseen} parts counted across time without data are left out",
            input.asset_id
        ));
    }
    let (scrap, _) = increases(scrap_counter, &busy, &blind);
    let starts = &setup_ends;
    let window_us = (rules.startup_reject_window_s * 1e6) as i64;
    for (t, n) in &scrap {
        if starts.iter().any(|s| *t > *s && *t <= s + window_us) {
            o.startup_rejects += n;
        } else {
            o.production_rejects += n;
        }
    }
    for &(t, good, scrap) in &input.mes_completions {
        if inside(&busy, t) {
            o.mes_good += good;
            o.mes_scrap += scrap;
            o.mes_operations += 1;
        }
    }
    let rejects = o.startup_rejects + o.production_rejects;
    o.good = (o.produced - rejects).max(0.0);
    match input.ideal_cycle_s.filter(|c| *c > 0.0) {
        Some(ideal) => {
            o.net_run_s = ideal * o.produced;
            o.fully_productive_s = ideal * o.good;
            let micro: f64 = o.loss_s_of(Loss::MicroStop);
            let reduced = o.run_s - o.net_run_s - micro;
            o.losses
                .insert((Loss::ReducedSpeed, String::new()), reduced);
            if o.startup_rejects > 0.0 {
                o.losses.insert(
                    (Loss::StartupRejects, String::new()),
                    ideal * o.startup_rejects,
                );
            }
            if o.production_rejects > 0.0 {
                o.losses.insert(
                    (Loss::ProductionRejects, String::new()),
                    ideal * o.production_rejects,
                );
            }
            if o.net_run_s > o.run_s + 1e-9 && o.run_s > 0.0 {
                o.warnings.push(format!(
                    "{}: performance {:.1} % > 100 %: {} parts in {:.0} s of run time at an ideal cycle time of {ideal} s ({}); check the ideal cycle time",
                    input.asset_id,
                    100.0 * o.net_run_s / o.run_s,
                    o.produced,
                    o.run_s,
                    input.ideal_source
                ));
            }
        }
        None => {
            o.without_ideal = 1;
            o.warnings.push(format!(
            "{}: no ideal cycle time (registry nominal `ideal_cycle_time`): performance and OEE not computed",
            input.asset_id
        ));
        }
    }
    if input.scrap_counter.is_empty() && o.produced > 0.0 {
        o.warnings.push(format!(
            "{}: no scrap counter recorded: every part counted as good (quality 100 %)",
            input.asset_id
        ));
    }
    if o.produced + 1e-9 < rejects {
        o.warnings.push(format!(
            "{}: {rejects} rejects counted against {} parts produced: the scrap counter runs ahead of the part counter",
            input.asset_id, o.produced
        ));
    }
    o
}

impl Oee {
    fn loss_s_of(&self, loss: Loss) -> f64 {
        self.losses
            .iter()
            .filter(|((l, _), _)| *l == loss)
            .map(|(_, s)| s)
            .sum()
    }
}
