//! OEE live, for the running shift: the twin's machine states and counter
//! values as they change in; each machine's [`MachineInput`] for the
//! current shift kept up to date by appending (a state change adds a
//! segment, a counter reading adds a reading: O(1), never a recompute per
//! sample), and the records computed by the same [`compute`] at most once a
//! second, out. A shift that ends is kept, computed once more, in `past`.
//!
//! Without a shift calendar the period is "since the app started", every
//! hour planned, and the record says so. Past shifts from before the app
//! started come from the history (the panel sends [`OeeCommand`]; a
//! worker thread computes them into [`HistoryShifts`]).

use std::sync::Arc;

use bevy::prelude::*;

use super::compute::{MachineInput, Oee, Segment, compute};
use super::rules::LossRules;
use crate::calendar::ShiftCalendar;
use crate::registry::{AssetIdx, AssetRegistry};
use crate::twin::{AssetState, BoundAsset, LiveValues, MachineState};

/// Per period (label), each machine's record.
pub type PeriodRecords = Vec<(String, Vec<(AssetIdx, Oee)>)>;

/// Per tracked machine: (asset, index in the tracker, part and scrap
/// counter property indexes).
type CounterIndex = Vec<(AssetIdx, usize, Option<u32>, Option<u32>)>;

/// The period the live records cover.
#[derive(Debug, Clone, PartialEq)]
pub struct LivePeriod {
    pub label: String,
    pub start_us: i64,
    pub end_us: i64,
    /// Planned windows of the period, µs.
    pub planned: Vec<(i64, i64)>,
    /// False: no shift calendar, every hour counted as planned.
    pub from_calendar: bool,
    /// The twin has watched the period since then (the app's start, or the
    /// period's): the live record counts planned time from here; the
    /// history has the earlier part.
    pub live_from_us: i64,
}

struct Tracked {
    asset: AssetIdx,
    input: MachineInput,
    /// (state, reason, since) last seen.
    last: Option<(MachineState, Option<String>, Option<i64>)>,
    part_ts: i64,
    scrap_ts: i64,
}

/// The live tracker (no Bevy): what the system feeds, what the panel reads.
pub struct LiveTracker {
    calendar: Option<ShiftCalendar>,
    pub rules: LossRules,
    time_scale: f64,
    started_us: i64,
    pub period: Option<LivePeriod>,
    machines: Vec<Tracked>,
    /// Per machine, the current period's record (as of `computed_us`).
    pub records: Vec<(AssetIdx, Oee)>,
    pub computed_us: i64,
    /// Shifts that ended while the app ran: (period, records).
    pub past: Vec<(LivePeriod, Vec<(AssetIdx, Oee)>)>,
}

impl LiveTracker {
    /// `machines`: (asset, id, ideal cycle s).
    pub fn new(
        calendar: Option<ShiftCalendar>,
        rules: LossRules,
        time_scale: f64,
        machines: Vec<(AssetIdx, String, Option<f64>)>,
        now_us: i64,
    ) -> Self {
        let k = time_scale.max(1e-9);
        Self {
            calendar,
            rules: rules.scaled(k),
            time_scale: k,
            started_us: now_us,
            period: None,
            machines: machines
                .into_iter()
                .map(|(asset, id, ideal)| Tracked {
                    asset,
                    input: MachineInput {
                        asset_id: id,
                        ideal_cycle_s: ideal.map(|c| c / k),
                        ideal_source: if k == 1.0 {
                            "registry nominal ideal_cycle_time".into()
                        } else {
                            format!("registry nominal ideal_cycle_time ÷ the demo's time scale {k}")
                        },
                        ..Default::default()
                    },
                    last: None,
                    part_ts: i64::MIN,
                    scrap_ts: i64::MIN,
                })
                .collect(),
            records: Vec::new(),
            computed_us: i64::MIN,
            past: Vec::new(),
        }
    }

    pub fn has_calendar(&self) -> bool {
        self.calendar.is_some()
    }

    pub fn time_scale(&self) -> f64 {
        self.time_scale
    }

    /// The period containing `now_us`.
    fn period_at(&self, now_us: i64) -> Option<LivePeriod> {
        match &self.calendar {
            Some(c) => c
                .instances(now_us - 86_400_000_000, now_us + 86_400_000_000)
                .into_iter()
                .find(|i| i.start_us <= now_us && now_us < i.end_us)
                .map(|i| LivePeriod {
                    label: format!("{} {}", i.date, i.name),
                    start_us: i.start_us,
                    end_us: i.end_us,
                    planned: i.working,
                    from_calendar: true,
                    live_from_us: i.start_us.max(self.started_us),
                }),
            None => Some(LivePeriod {
                label: "since the app started".into(),
                start_us: self.started_us,
                end_us: i64::MAX,
                planned: vec![(self.started_us, i64::MAX)],
                from_calendar: false,
                live_from_us: self.started_us,
            }),
        }
    }

    /// Moves to the period of `now_us` (archiving the one that ended).
    pub fn roll(&mut self, now_us: i64) {
        let p = self.period_at(now_us);
        if p.as_ref().map(|p| p.start_us) == self.period.as_ref().map(|p| p.start_us) {
            return;
        }
        if let Some(old) = self.period.take() {
            let end = old.end_us;
            let records = self.compute_at(&old, end);
            self.past.push((old, records));
        }
        for m in &mut self.machines {
            // The state in effect carries into the new period.
            let carried = m.input.segments.last().map(|s| Segment {
                start_us: s.start_us,
                end_us: i64::MAX,
                state: s.state,
                reason: s.reason.clone(),
            });
            m.input.segments = carried.into_iter().collect();
            let keep = |v: &mut Vec<(i64, f64)>| {
                let last = v.last().copied();
                v.clear();
                v.extend(last);
            };
            keep(&mut m.input.part_counter);
            keep(&mut m.input.scrap_counter);
        }
        self.period = p;
    }

    /// A machine's state as the twin holds it (appends a segment when it
    /// changed).
    pub fn observe_state(
        &mut self,
        i: usize,
        state: MachineState,
        reason: Option<&str>,
        since_us: Option<i64>,
        now_us: i64,
    ) {
        let Some(m) = self.machines.get_mut(i) else {
            return;
        };
        if m.last
            .as_ref()
            .is_some_and(|l| l.0 == state && l.1.as_deref() == reason && l.2 == since_us)
        {
            return;
        }
        let start = since_us.unwrap_or(now_us);
        if let Some(prev) = m.input.segments.last_mut() {
            prev.end_us = start.max(prev.start_us);
        }
        m.input.segments.push(Segment {
            start_us: start,
            end_us: i64::MAX,
            state,
            reason: reason.unwrap_or_default().to_string(),
        });
        m.last = Some((state, reason.map(str::to_string), since_us));
    }

    /// A counter reading (`scrap`: the scrap counter, else parts).
    pub fn observe_counter(&mut self, i: usize, scrap: bool, ts_us: i64, value: f64) {
        let Some(m) = self.machines.get_mut(i) else {
            return;
        };
        let (last, v) = if scrap {
            (&mut m.scrap_ts, &mut m.input.scrap_counter)
        } else {
            (&mut m.part_ts, &mut m.input.part_counter)
        };
        if ts_us > *last {
            *last = ts_us;
            v.push((ts_us, value));
        }
    }

    /// Each machine's record as of `now_us` — or as of its part counter's
    /// last reading, when it has one inside the period: parts are only
    /// known where the counter was read, so run time counted past it would
    /// understate performance until the next reading.
    fn compute_at(&self, p: &LivePeriod, now_us: i64) -> Vec<(AssetIdx, Oee)> {
        self.machines
            .iter()
            .map(|m| {
                let upto = match m.input.part_counter.last() {
                    Some(&(t, _)) if t > p.live_from_us && t <= now_us => t,
                    _ => now_us,
                };
                let planned: Vec<(i64, i64)> = p
                    .planned
                    .iter()
                    .map(|&(a, b)| (a.max(p.live_from_us), b.min(upto)))
                    .filter(|(a, b)| b > a)
                    .collect();
                let mut input = m.input.clone();
                if let Some(s) = input.segments.last_mut()
                    && s.end_us == i64::MAX
                {
                    s.end_us = now_us.max(s.start_us);
                }
                (m.asset, compute(&input, &planned, &self.rules))
            })
            .collect()
    }

    /// Computes the current period's records as of `now_us`.
    pub fn update(&mut self, now_us: i64) {
        self.records = match &self.period {
            Some(p) => self.compute_at(p, now_us),
            None => Vec::new(),
        };
        self.computed_us = now_us;
    }

    /// The current period's segments of a machine (for "show on the
    /// timeline"), open one ended at `now_us`.
    pub fn segments(&self, asset: AssetIdx, now_us: i64) -> Vec<Segment> {
        self.machines
            .iter()
            .find(|m| m.asset == asset)
            .map(|m| {
                let mut v = m.input.segments.clone();
                if let Some(s) = v.last_mut()
                    && s.end_us == i64::MAX
                {
                    s.end_us = now_us;
                }
                v
            })
            .unwrap_or_default()
    }
}

/// The live tracker in the app.
#[derive(Resource)]
pub struct OeeLive(pub LiveTracker);

/// Past shifts (or days) from the history, per machine, as the panel last
/// asked for them.
#[derive(Resource, Default)]
pub struct HistoryShifts {
    pub rows: PeriodRecords,
    pub computed_us: Option<i64>,
    pub error: Option<String>,
    pub busy: bool,
}

/// What the OEE panel asks.
#[derive(Message, Debug, Clone, PartialEq)]
pub enum OeeCommand {
    /// Past shifts (days without a calendar) of the last `hours`, per
    /// machine, from the history.
    LoadHistory { hours: f64 },
    /// Colour the machines in the 3D view by OEE (or by state again).
    Heatmap(bool),
}

/// The 3D view colours machines by OEE while this is on.
#[derive(Resource, Default, Debug, Clone, Copy, PartialEq)]
pub struct OeeHeatmap(pub bool);

#[derive(Resource, Default)]
struct HistoryJob {
    waiting: Option<f64>,
    results: Option<crossbeam_channel::Receiver<Result<PeriodRecords, String>>>,
}

/// Where the app's OEE comes from.
pub struct OeePlugin {
    pub calendar: Option<ShiftCalendar>,
    pub rules: LossRules,
    pub time_scale: f64,
}

impl Plugin for OeePlugin {
    fn build(&self, app: &mut App) {
        let registry = app.world().resource::<AssetRegistry>().clone();
        let machines = super::history::machines(&registry)
            .into_iter()
            .map(|a| {
                (
                    a,
                    registry.get(a).map(|r| r.id.clone()).unwrap_or_default(),
                    super::history::ideal_cycle_s(&registry, a),
                )
            })
            .collect();
        let tracker = LiveTracker::new(
            self.calendar.clone(),
            self.rules.clone(),
            self.time_scale,
            machines,
            crate::ingest::now_us(),
        );
        app.insert_resource(OeeLive(tracker))
            .insert_resource(OeeSources(Arc::new(self.calendar.clone())))
            .init_resource::<HistoryShifts>()
            .init_resource::<HistoryJob>()
            .init_resource::<OeeHeatmap>()
            .init_resource::<crate::history::WorkerConnections>()
            .add_message::<OeeCommand>()
            .add_systems(Update, track_live.after(crate::MezzanineSet::Apply))
            .add_systems(Update, load_history.after(crate::MezzanineSet::Playback));
    }
}

/// The calendar the history worker uses (the same as live).
#[derive(Resource, Clone)]
pub struct OeeSources(pub Arc<Option<ShiftCalendar>>);

fn track_live(
    registry: Res<AssetRegistry>,
    assets: Query<(&BoundAsset, &AssetState, &LiveValues)>,
    mut live: ResMut<OeeLive>,
    mut index: Local<CounterIndex>,
) {
    let now = crate::ingest::now_us();
    let t = &mut live.0;
    if index.is_empty() {
        for (i, m) in t.machines.iter().enumerate() {
            let prop = |name: &str| registry.property_by_name(m.asset, name).map(|p| p.property);
            let parts = prop("part_count").or_else(|| prop("cycle_count"));
            index.push((m.asset, i, parts, prop("scrap_count")));
        }
    }
    t.roll(now);
    for (b, state, values) in &assets {
        let Some(&(_, i, parts, scrap)) = index.iter().find(|x| x.0 == b.0) else {
            continue;
        };
        if state.state != MachineState::Unknown || state.since_ts_us.is_some() {
            t.observe_state(
                i,
                state.state,
                state.reason.as_deref(),
                state.since_ts_us,
                now,
            );
        }
        for (p, is_scrap) in [(parts, false), (scrap, true)] {
            if let Some(v) = p
                .and_then(|p| values.0.get(p as usize))
                .and_then(|v| v.as_ref())
                && !v.historical
                && let Some(x) = v.value.as_f64()
            {
                t.observe_counter(i, is_scrap, v.source_ts_us, x);
            }
        }
    }
    if now.saturating_sub(t.computed_us) >= 1_000_000 {
        t.update(now);
    }
}

#[allow(clippy::too_many_arguments)]
fn load_history(
    mut commands: MessageReader<OeeCommand>,
    mut heatmap: ResMut<OeeHeatmap>,
    mut job: ResMut<HistoryJob>,
    mut view: ResMut<HistoryShifts>,
    mut connections: ResMut<crate::history::WorkerConnections>,
    history: Option<Res<crate::history::History>>,
    registry: Res<AssetRegistry>,
    sources: Res<OeeSources>,
    live: Res<OeeLive>,
) {
    for c in commands.read() {
        let hours = match c {
            OeeCommand::Heatmap(on) => {
                heatmap.0 = *on;
                continue;
            }
            OeeCommand::LoadHistory { hours } => hours,
        };
        if job.waiting.is_some() || job.results.is_some() {
            continue;
        }
        match &history {
            Some(h) => {
                h.ask(crate::history::ReadRequest::Connection {
                    tag: crate::history::WORKER_OEE,
                });
                job.waiting = Some(*hours);
                view.busy = true;
            }
            None => view.error = Some("no history: past shifts need the recorder".into()),
        }
    }
    if let Some(hours) = job.waiting
        && let Some(c) = connections.take(crate::history::WORKER_OEE)
    {
        job.waiting = None;
        let conn = match c {
            Ok(c) => c.into_inner().unwrap_or_else(|p| p.into_inner()),
            Err(e) => {
                view.error = Some(e.to_string());
                view.busy = false;
                return;
            }
        };
        let Some(props) = history.as_ref().map(|h| h.props.clone()) else {
            return;
        };
        let registry = registry.clone();
        let calendar = sources.0.clone();
        let rules = live.0.rules.clone();
        let time_scale = live.0.time_scale();
        let (tx, rx) = crossbeam_channel::bounded(1);
        let spawned = std::thread::Builder::new()
            .name("oee-history".into())
            .spawn(move || {
                let r = past_shifts(
                    &conn,
                    &props,
                    &registry,
                    calendar.as_ref().as_ref(),
                    &rules,
                    time_scale,
                    hours,
                );
                let _ = tx.send(r.map_err(|e| e.to_string()));
            });
        match spawned {
            Ok(_) => job.results = Some(rx),
            Err(e) => {
                view.error = Some(format!("cannot start the OEE history thread: {e}"));
                view.busy = false;
            }
        }
    }
    if let Some(rx) = &job.results
        && let Ok(r) = rx.try_recv()
    {
        job.results = None;
        view.busy = false;
        view.computed_us = Some(crate::ingest::now_us());
        match r {
            Ok(rows) => {
                view.rows = rows;
                view.error = None;
            }
            Err(e) => view.error = Some(e),
        }
    }
}

/// Per shift (per day without a calendar) of the last `hours` of the
/// recording, each machine's record, computed by the same function as
/// everything else.
pub fn past_shifts(
    conn: &duckdb::Connection,
    props: &crate::history::store::PropIds,
    registry: &AssetRegistry,
    calendar: Option<&ShiftCalendar>,
    rules: &LossRules,
    time_scale: f64,
    hours: f64,
) -> Result<PeriodRecords, super::OeeError> {
    let Some((first, last)) = crate::history::query::recorded_range(conn)? else {
        return Ok(Vec::new());
    };
    let to_us = last;
    let from_us = (to_us - (hours * 3.6e9) as i64).max(first);
    let by = if calendar.is_some() {
        super::table::By::Shift
    } else {
        super::table::By::Day
    };
    let periods = super::table::periods(calendar, &registry.plant().time_zone, from_us, to_us, by);
    let machines = super::history::machines(registry);
    let mut inputs = Vec::new();
    for a in &machines {
        inputs.push((
            *a,
            super::history::machine_input(
                conn, props, registry, *a, from_us, to_us, last, time_scale,
            )?,
        ));
    }
    Ok(periods
        .iter()
        .map(|p| {
            (
                p.label.clone(),
                inputs
                    .iter()
                    .map(|(a, m)| (*a, compute(m, &p.planned, rules)))
                    .collect(),
            )
        })
        .collect())
}
