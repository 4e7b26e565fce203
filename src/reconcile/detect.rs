//! The detectors: the MES's view and the twin's view of each machine in,
//! [`Discrepancy`] records out. Bevy-free and clock-free (every call takes
//! the time), so a crafted case can be replayed exactly.
//!
//! The engine only observes. It holds no handle to the MES and changes
//! neither view: a divergence becomes a record that a person acknowledges
//! and resolves.

use std::collections::{HashMap, HashSet, VecDeque};

use serde_json::json;

use super::ReconcileError;
use super::rules::{Authority, Domain, ReconcileRules, Rule, RuleKind};
use crate::mes::{Envelope, MesEvent};

/// The physical signals of one machine at one moment, as the twin has them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PhysicalView {
    pub asset_id: String,
    pub spindle_rpm: Option<f64>,
    pub spindle_load_pct: Option<f64>,
    pub vibration_mm_s: Option<f64>,
    /// The machine's cumulative part counter…
    pub part_count: Option<f64>,
    /// …and its source time (None: as of the call that passes the view).
    pub part_count_ts_us: Option<i64>,
    /// The twin's machine state label (for the record).
    pub state: String,
}

/// What the MES says about the same machine.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MesView {
    pub work_order: Option<String>,
    pub operation: Option<u32>,
}

/// Where a discrepancy is in its life. Only a person moves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Open,
    Acknowledged,
    Resolved,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Acknowledged => "acknowledged",
            Status::Resolved => "resolved",
        }
    }
}

/// One step of a discrepancy's life.
#[derive(Debug, Clone, PartialEq)]
pub struct LifecycleStep {
    pub ts_us: i64,
    pub status: Status,
    pub by: Option<String>,
    pub note: Option<String>,
}

/// A divergence between the MES and the twin.
#[derive(Debug, Clone, PartialEq)]
pub struct Discrepancy {
    pub id: String,
    pub rule: &'static str,
    pub domain: Domain,
    pub authority: Authority,
    pub asset_id: Option<String>,
    pub work_order: Option<String>,
    /// The MES's view, in words.
    pub mes_view: String,
    /// The twin's view, in words.
    pub twin_view: String,
    /// Since when the two views diverge (source time).
    pub since_us: i64,
    /// When the divergence was raised.
    pub opened_us: i64,
    /// When the condition stopped holding (the record stays until resolved).
    pub cleared_us: Option<i64>,
    pub history: Vec<LifecycleStep>,
}

impl Discrepancy {
    pub fn status(&self) -> Status {
        self.history.last().map_or(Status::Open, |s| s.status)
    }

    /// The detail recorded in the history (JSON).
    pub fn detail_json(&self) -> String {
        let last = self.history.last();
        json!({
            "domain": self.domain.key(),
            "authority": self.authority.label(),
            "work_order": self.work_order,
            "mes_view": self.mes_view,
            "twin_view": self.twin_view,
            "since_us": self.since_us,
            "cleared_us": self.cleared_us,
            "by": last.and_then(|s| s.by.clone()),
            "note": last.and_then(|s| s.note.clone()),
        })
        .to_string()
    }

    /// One line for lists and markers.
    pub fn summary(&self) -> String {
        format!(
            "{} on {}: MES says {}; twin says {} ({} is authoritative for {})",
            self.rule,
            self.asset_id.as_deref().unwrap_or("—"),
            self.mes_view,
            self.twin_view,
            self.authority.label(),
            self.domain
        )
    }
}

#[derive(Debug, Clone, Default)]
struct AssetTrack {
    /// Since when each persisting condition has held, per rule.
    since_us: HashMap<&'static str, i64>,
    /// The counter when the current MES order started on this machine
    /// (read at the start event's source time).
    order_start_count: Option<(String, f64)>,
    /// The part counter's changes (source time, value), oldest first, so
    /// an MES event is compared with the counter at its own source time.
    counter: VecDeque<(i64, f64)>,
    /// Open discrepancy per rule (so a persisting condition raises once).
    raised: HashMap<&'static str, String>,
}

#[derive(Debug, Clone)]
struct PendingCount {
    asset_id: String,
    work_order: String,
    mes_count: f64,
    start_count: f64,
    due_us: i64,
    since_us: i64,
}

#[derive(Debug, Clone)]
struct PendingQuality {
    work_order: String,
    asset_id: Option<String>,
    completed_us: i64,
}

/// The detectors and the discrepancies they raised.
/// Counter changes kept per machine (older ones are forgotten first)…
const COUNTER_CHANGES_KEPT: usize = 4_096;
/// …and for how long (source time).
const COUNTER_KEPT_US: i64 = 4 * 3_600 * 1_000_000;
/// Orders remembered as inspected, and order → machine pairs.
const ORDERS_KEPT: usize = 10_000;
/// Resolved discrepancies kept in memory for the UI (all are in the history).
pub const RESOLVED_KEPT: usize = 500;
/// Unresolved discrepancies kept in memory; beyond this the oldest are
/// forgotten here (they stay in the history and return on restart).
pub const UNRESOLVED_KEPT: usize = 10_000;

/// A set of order numbers that forgets the oldest past its capacity.
#[derive(Debug, Clone, Default)]
struct RecentOrders<V> {
    map: HashMap<String, V>,
    order: VecDeque<String>,
}

impl<V> RecentOrders<V> {
    fn insert(&mut self, k: String, v: V) {
        if self.map.insert(k.clone(), v).is_none() {
            self.order.push_back(k);
            while self.order.len() > ORDERS_KEPT {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }
    fn get(&self, k: &str) -> Option<&V> {
        self.map.get(k)
    }
    fn contains(&self, k: &str) -> bool {
        self.map.contains_key(k)
    }
    fn len(&self) -> usize {
        self.map.len()
    }
}

/// Memory held by the engine, for tests and the status panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineSize {
    pub discrepancies: usize,
    pub inspected_orders: usize,
    pub order_assets: usize,
    pub counter_changes: usize,
}

#[derive(Debug, Clone)]
pub struct Reconciler {
    rules: ReconcileRules,
    assets: HashMap<String, AssetTrack>,
    counts: Vec<PendingCount>,
    quality: Vec<PendingQuality>,
    /// Orders with at least one quality disposition.
    inspected: RecentOrders<()>,
    /// The machine each order started on.
    order_assets: RecentOrders<String>,
    /// Bounded by [`RESOLVED_KEPT`] resolved and [`UNRESOLVED_KEPT`]
    /// unresolved ones.
    pub discrepancies: Vec<Discrepancy>,
    next_id: u64,
    id_tag: String,
}

impl Reconciler {
    /// `id_tag` makes ids unique across runs (e.g. the start time in hex).
    pub fn new(rules: ReconcileRules, id_tag: impl Into<String>) -> Self {
        Self {
            rules,
            assets: HashMap::new(),
            counts: Vec::new(),
            quality: Vec::new(),
            inspected: RecentOrders::default(),
            order_assets: RecentOrders::default(),
            discrepancies: Vec::new(),
            next_id: 1,
            id_tag: id_tag.into(),
        }
    }

    pub fn rules(&self) -> &ReconcileRules {
        &self.rules
    }

    pub fn size(&self) -> EngineSize {
        EngineSize {
            discrepancies: self.discrepancies.len(),
            inspected_orders: self.inspected.len(),
            order_assets: self.order_assets.len(),
            counter_changes: self.assets.values().map(|t| t.counter.len()).sum(),
        }
    }

    /// Notes a machine's part counter at its source time (changes only).
    fn note_counter(&mut self, asset_id: &str, ts_us: i64, value: f64) {
        let t = self.assets.entry(asset_id.to_string()).or_default();
        match t.counter.back() {
            Some((_, v)) if *v == value => return,
            Some((last, _)) if *last > ts_us => {
                // Late: keep the log in time order.
                let at = t.counter.partition_point(|(ts, _)| *ts <= ts_us);
                t.counter.insert(at, (ts_us, value));
            }
            _ => t.counter.push_back((ts_us, value)),
        }
        let horizon = ts_us.saturating_sub(COUNTER_KEPT_US);
        while t.counter.len() > COUNTER_CHANGES_KEPT
            || t.counter.front().is_some_and(|(ts, _)| *ts < horizon)
        {
            t.counter.pop_front();
        }
    }

    /// Parts a machine's counter has advanced since its current MES order
    /// started on it: (work order, parts), when both are known.
    pub fn order_progress(&self, asset_id: &str) -> Option<(&str, f64)> {
        let t = self.assets.get(asset_id)?;
        let (wo, start) = t.order_start_count.as_ref()?;
        let now = t.counter.back()?.1;
        Some((wo.as_str(), (now - start).max(0.0)))
    }

    /// The counter at `ts_us` (the last change at or before it), if the log
    /// reaches back that far.
    fn counter_at(&self, asset_id: &str, ts_us: i64) -> Option<f64> {
        let c = &self.assets.get(asset_id)?.counter;
        let at = c.partition_point(|(ts, _)| *ts <= ts_us);
        at.checked_sub(1).map(|i| c[i].1)
    }

    /// Takes the machines' counters in without comparing anything (while
    /// the MES's view is stale).
    pub fn note_counters(&mut self, now_us: i64, machines: &[(PhysicalView, MesView)]) {
        for (p, _) in machines {
            if let Some(c) = p.part_count {
                self.note_counter(&p.asset_id, p.part_count_ts_us.unwrap_or(now_us), c);
            }
        }
    }

    /// The MES is away or catching up: its view is frozen, so nothing is
    /// compared with it, and a condition must hold its full time again
    /// once the MES is back. Raised discrepancies stay as they are; checks
    /// already due wait for the MES's missed events.
    pub fn pause(&mut self) {
        for t in self.assets.values_mut() {
            t.since_us.clear();
        }
    }

    /// Forgets the oldest resolved discrepancies past [`RESOLVED_KEPT`] and
    /// the oldest unresolved past [`UNRESOLVED_KEPT`].
    fn prune_discrepancies(&mut self) {
        let resolved = self
            .discrepancies
            .iter()
            .filter(|d| d.status() == Status::Resolved)
            .count();
        let unresolved = self.discrepancies.len() - resolved;
        let (mut drop_resolved, mut drop_unresolved) = (
            resolved.saturating_sub(RESOLVED_KEPT),
            unresolved.saturating_sub(UNRESOLVED_KEPT),
        );
        if drop_resolved + drop_unresolved == 0 {
            return;
        }
        let mut forgotten: HashSet<String> = HashSet::new();
        self.discrepancies.retain(|d| {
            let slot = if d.status() == Status::Resolved {
                &mut drop_resolved
            } else {
                &mut drop_unresolved
            };
            if *slot > 0 {
                *slot -= 1;
                forgotten.insert(d.id.clone());
                false
            } else {
                true
            }
        });
        for t in self.assets.values_mut() {
            t.raised.retain(|_, id| !forgotten.contains(id));
        }
    }

    fn rule(&self, name: &str) -> Option<Rule> {
        self.rules.rule(name).cloned()
    }

    pub fn get(&self, id: &str) -> Option<&Discrepancy> {
        self.discrepancies.iter().find(|d| d.id == id)
    }

    /// Open or acknowledged discrepancies on an asset.
    pub fn unresolved_on(&self, asset_id: &str) -> impl Iterator<Item = &Discrepancy> {
        self.discrepancies.iter().filter(move |d| {
            d.asset_id.as_deref() == Some(asset_id) && d.status() != Status::Resolved
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn raise(
        &mut self,
        rule: &Rule,
        asset_id: Option<&str>,
        work_order: Option<&str>,
        mes_view: String,
        twin_view: String,
        since_us: i64,
        now_us: i64,
    ) -> usize {
        let id = format!("D-{}-{:04}", self.id_tag, self.next_id);
        self.next_id += 1;
        self.discrepancies.push(Discrepancy {
            id,
            rule: rule.kind.name(),
            domain: rule.domain,
            authority: rule.authority,
            asset_id: asset_id.map(str::to_string),
            work_order: work_order.map(str::to_string),
            mes_view,
            twin_view,
            since_us,
            opened_us: now_us,
            cleared_us: None,
            history: vec![LifecycleStep {
                ts_us: now_us,
                status: Status::Open,
                by: None,
                note: None,
            }],
        });
        self.discrepancies.len() - 1
    }

    /// An MES event as applied to the twin's view (in source-time order).
    /// `physical` is the machine the event names, as the twin sees it now.
    pub fn on_mes_event(&mut self, e: &Envelope, physical: Option<&PhysicalView>) {
        let ts = e.source_time_us;
        if let Some(p) = physical
            && let Some(c) = p.part_count
        {
            self.note_counter(&p.asset_id, p.part_count_ts_us.unwrap_or(ts), c);
        }
        match &e.event {
            MesEvent::WorkOrderStarted {
                work_order,
                asset_id,
            }
            | MesEvent::OperationStarted {
                work_order,
                asset_id,
                ..
            } => {
                self.order_assets
                    .insert(work_order.clone(), asset_id.clone());
                // The counter when the order started, not when the event
                // happened to be applied (a catch-up applies it late).
                let at_start = self.counter_at(asset_id, ts);
                let t = self.assets.entry(asset_id.clone()).or_default();
                let same = t
                    .order_start_count
                    .as_ref()
                    .is_some_and(|(w, _)| w == work_order);
                if !same && let Some(c) = at_start {
                    t.order_start_count = Some((work_order.clone(), c));
                }
            }
            MesEvent::OperationCompleted {
                work_order,
                asset_id,
                good_count,
                scrap_count,
                ..
            } => {
                let start = self
                    .assets
                    .get_mut(asset_id)
                    .and_then(|t| t.order_start_count.take())
                    .filter(|(w, _)| w == work_order);
                if let (
                    Some((_, start_count)),
                    Some(Rule {
                        kind: RuleKind::PartCountDivergence { settle_s, .. },
                        ..
                    }),
                ) = (start, self.rule("part_count_divergence"))
                {
                    self.counts.push(PendingCount {
                        asset_id: asset_id.clone(),
                        work_order: work_order.clone(),
                        mes_count: (*good_count + *scrap_count) as f64,
                        start_count,
                        due_us: ts + (settle_s * 1e6) as i64,
                        since_us: ts,
                    });
                }
            }
            MesEvent::WorkOrderCompleted { work_order, .. }
                if !self.inspected.contains(work_order) =>
            {
                self.quality.push(PendingQuality {
                    work_order: work_order.clone(),
                    asset_id: self.order_assets.get(work_order).cloned(),
                    completed_us: ts,
                });
            }
            MesEvent::QualityDisposition { work_order, .. } => {
                self.inspected.insert(work_order.clone(), ());
                self.quality.retain(|q| &q.work_order != work_order);
            }
            _ => {}
        }
    }

    /// Compares both views of every machine at `now_us`; returns the indices
    /// of discrepancies raised by this call.
    pub fn observe(&mut self, now_us: i64, machines: &[(PhysicalView, MesView)]) -> Vec<usize> {
        self.prune_discrepancies();
        self.note_counters(now_us, machines);
        let mut raised = Vec::new();
        let stopped_rule = self.rule("mes_running_machine_stopped");
        let cutting_rule = self.rule("mes_idle_machine_cutting");
        for (phys, mes) in machines {
            if let Some(
                rule @ Rule {
                    kind:
                        RuleKind::MesRunningMachineStopped {
                            after_s,
                            spindle_below_rpm,
                            vibration_below_mm_s,
                        },
                    ..
                },
            ) = &stopped_rule
            {
                let stopped = phys.spindle_rpm.is_some_and(|v| v < *spindle_below_rpm)
                    && phys
                        .vibration_mm_s
                        .is_none_or(|v| v < *vibration_below_mm_s);
                let holds = mes.work_order.is_some() && stopped;
                raised.extend(
                    self.persisting(rule, phys, holds, *after_s, now_us, |since| {
                        let mes_view = format!(
                            "{} running{}",
                            mes.work_order.as_deref().unwrap_or_default(),
                            mes.operation
                                .map(|o| format!(", operation {o}"))
                                .unwrap_or_default()
                        );
                        let twin_view = format!(
                            "stopped for {:.0} s: spindle {:.0} rpm, vibration {} ({})",
                            (now_us - since) as f64 / 1e6,
                            phys.spindle_rpm.unwrap_or(0.0),
                            phys.vibration_mm_s
                                .map_or("—".to_string(), |v| format!("{v:.2} mm/s")),
                            phys.state
                        );
                        (mes.work_order.clone(), mes_view, twin_view)
                    }),
                );
            }
            if let Some(
                rule @ Rule {
                    kind:
                        RuleKind::MesIdleMachineCutting {
                            after_s,
                            spindle_above_rpm,
                            load_above_pct,
                        },
                    ..
                },
            ) = &cutting_rule
            {
                let cutting = phys.spindle_rpm.is_some_and(|v| v > *spindle_above_rpm)
                    && phys.spindle_load_pct.is_none_or(|v| v > *load_above_pct);
                let holds = mes.work_order.is_none() && cutting;
                raised.extend(
                    self.persisting(rule, phys, holds, *after_s, now_us, |since| {
                        let twin_view = format!(
                            "cutting for {:.0} s: spindle {:.0} rpm, load {}",
                            (now_us - since) as f64 / 1e6,
                            phys.spindle_rpm.unwrap_or(0.0),
                            phys.spindle_load_pct
                                .map_or("—".to_string(), |v| format!("{v:.0} %")),
                        );
                        (None, "no work order running".into(), twin_view)
                    }),
                );
            }
        }

        // Part counts, once the machine's counter had time to settle.
        if let Some(
            rule @ Rule {
                kind:
                    RuleKind::PartCountDivergence {
                        tolerance_parts,
                        tolerance_pct,
                        ..
                    },
                ..
            },
        ) = self.rule("part_count_divergence")
        {
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.counts)
                .into_iter()
                .partition(|c| c.due_us <= now_us);
            self.counts = later;
            for c in due {
                // The counter at the completion's source time: the check
                // waited `settle_s` for the samples up to it to arrive.
                let Some(end_count) = self.counter_at(&c.asset_id, c.since_us) else {
                    continue;
                };
                let twin_count = end_count - c.start_count;
                let tol = tolerance_parts.max(c.mes_count.abs() * tolerance_pct / 100.0);
                if (twin_count - c.mes_count).abs() > tol {
                    let i = self.raise(
                        &rule,
                        Some(&c.asset_id),
                        Some(&c.work_order),
                        format!("{} reported {:.0} parts (good + scrap)", c.work_order, c.mes_count),
                        format!(
                            "machine counter advanced {twin_count:.0} parts over the operation (tolerance ±{tol:.0})"
                        ),
                        c.since_us,
                        now_us,
                    );
                    raised.push(i);
                }
            }
        }

        // Completed orders still without a quality record.
        if let Some(
            rule @ Rule {
                kind: RuleKind::CompletedOrderWithoutQuality { after_s },
                ..
            },
        ) = self.rule("completed_order_without_quality")
        {
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.quality)
                .into_iter()
                .partition(|q| now_us - q.completed_us >= (after_s * 1e6) as i64);
            self.quality = later;
            for q in due {
                let i = self.raise(
                    &rule,
                    q.asset_id.as_deref(),
                    Some(&q.work_order),
                    format!(
                        "{} completed, no quality disposition recorded",
                        q.work_order
                    ),
                    format!(
                        "no inspection result for {} after {after_s:.0} s",
                        q.work_order
                    ),
                    q.completed_us,
                    now_us,
                );
                raised.push(i);
            }
        }
        raised
    }

    /// A condition that must hold for `after_s` before it is raised, once
    /// while it persists; when it stops holding, the record notes when.
    /// `views` gives (work order, MES view, twin view) from the start time.
    fn persisting(
        &mut self,
        rule: &Rule,
        phys: &PhysicalView,
        holds: bool,
        after_s: f64,
        now_us: i64,
        views: impl FnOnce(i64) -> (Option<String>, String, String),
    ) -> Option<usize> {
        let key = rule.kind.name();
        let track = self.assets.entry(phys.asset_id.clone()).or_default();
        if !holds {
            track.since_us.remove(key);
            if let Some(id) = track.raised.remove(key) {
                self.mark_cleared(&id, now_us);
            }
            return None;
        }
        let since = *track.since_us.entry(key).or_insert(now_us);
        if now_us - since < (after_s * 1e6) as i64 || track.raised.contains_key(key) {
            return None;
        }
        let (wo, mes_view, twin_view) = views(since);
        let i = self.raise(
            rule,
            Some(&phys.asset_id),
            wo.as_deref(),
            mes_view,
            twin_view,
            since,
            now_us,
        );
        let id = self.discrepancies[i].id.clone();
        if let Some(t) = self.assets.get_mut(&phys.asset_id) {
            t.raised.insert(key, id);
        }
        Some(i)
    }

    fn mark_cleared(&mut self, id: &str, now_us: i64) {
        if let Some(d) = self.discrepancies.iter_mut().find(|d| d.id == id) {
            d.cleared_us.get_or_insert(now_us);
        }
    }

    /// Brings back the discrepancies a previous run left unresolved (their
    /// recorded steps, oldest first). A restored one whose condition had not
    /// cleared keeps blocking a duplicate for the same machine and rule.
    pub fn restore(&mut self, rows: &[crate::history::query::DiscrepancyRow]) -> usize {
        const RULES: [&str; 4] = [
            "mes_running_machine_stopped",
            "mes_idle_machine_cutting",
            "part_count_divergence",
            "completed_order_without_quality",
        ];
        let before = self.discrepancies.len();
        for r in rows {
            let detail: serde_json::Value = serde_json::from_str(&r.detail).unwrap_or_default();
            let text = |k: &str| detail.get(k).and_then(|v| v.as_str()).map(str::to_string);
            let status = match r.status.as_str() {
                "acknowledged" => Status::Acknowledged,
                "resolved" => Status::Resolved,
                _ => Status::Open,
            };
            let step = LifecycleStep {
                ts_us: r.ts_us,
                status,
                by: text("by"),
                note: text("note"),
            };
            if let Some(d) = self
                .discrepancies
                .iter_mut()
                .find(|d| d.id == r.discrepancy_id)
            {
                if status != Status::Open {
                    d.history.push(step);
                }
                continue;
            }
            let Some(rule) = RULES.into_iter().find(|n| *n == r.rule) else {
                continue;
            };
            let domain = text("domain")
                .and_then(|k| Domain::ALL.into_iter().find(|d| d.key() == k))
                .unwrap_or(Domain::WorkOrderState);
            let authority = match text("authority").as_deref() {
                Some("twin") => Authority::Twin,
                _ => Authority::Mes,
            };
            let cleared_us = detail.get("cleared_us").and_then(|v| v.as_i64());
            if cleared_us.is_none()
                && let Some(a) = &r.asset_id
            {
                self.assets
                    .entry(a.clone())
                    .or_default()
                    .raised
                    .insert(rule, r.discrepancy_id.clone());
            }
            self.discrepancies.push(Discrepancy {
                id: r.discrepancy_id.clone(),
                rule,
                domain,
                authority,
                asset_id: r.asset_id.clone(),
                work_order: text("work_order"),
                mes_view: text("mes_view").unwrap_or_default(),
                twin_view: text("twin_view").unwrap_or_default(),
                since_us: detail
                    .get("since_us")
                    .and_then(|v| v.as_i64())
                    .unwrap_or(r.ts_us),
                opened_us: r.ts_us,
                cleared_us,
                history: vec![LifecycleStep {
                    status: Status::Open,
                    by: None,
                    note: None,
                    ..step
                }],
            });
        }
        self.discrepancies.len() - before
    }

    /// A person acknowledges a discrepancy.
    pub fn acknowledge(
        &mut self,
        id: &str,
        by: &str,
        now_us: i64,
    ) -> Result<&Discrepancy, ReconcileError> {
        self.step(id, Status::Acknowledged, by, None, now_us)
    }

    /// A person resolves a discrepancy, saying what was found.
    pub fn resolve(
        &mut self,
        id: &str,
        by: &str,
        note: &str,
        now_us: i64,
    ) -> Result<&Discrepancy, ReconcileError> {
        if note.trim().is_empty() {
            return Err(ReconcileError::NoteRequired);
        }
        self.step(
            id,
            Status::Resolved,
            by,
            Some(note.trim().to_string()),
            now_us,
        )
    }

    fn step(
        &mut self,
        id: &str,
        status: Status,
        by: &str,
        note: Option<String>,
        now_us: i64,
    ) -> Result<&Discrepancy, ReconcileError> {
        if by.trim().is_empty() {
            return Err(ReconcileError::NameRequired);
        }
        let d = self
            .discrepancies
            .iter_mut()
            .find(|d| d.id == id)
            .ok_or_else(|| ReconcileError::UnknownDiscrepancy(id.to_string()))?;
        if d.status() == Status::Resolved {
            return Err(ReconcileError::AlreadyResolved(id.to_string()));
        }
        if !(status == Status::Acknowledged && d.status() == Status::Acknowledged) {
            d.history.push(LifecycleStep {
                ts_us: now_us,
                status,
                by: Some(by.trim().to_string()),
                note,
            });
        }
        Ok(d)
    }
}
