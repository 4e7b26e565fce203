//! The MES as a peer: its events in, the twin's view of work orders out.
//!
//! `crate::contract` (a lower layer, re-exported as `mes::contract`) turns
//! bytes into validated, current-version events (JSON Schema per event
//! type and major version, v1 upcast to v2, clear errors for everything
//! refused); `sync` applies them idempotently and in
//! source-time order to a [`sync::WorkOrderBook`]. Nothing here ever writes
//! to the MES. (The MES simulator, the MQTT and polling wiring, outages and
//! reconciliation build on these.)

pub mod b2mml;
pub mod poll;
pub mod recommend;
pub mod sync;

/// The event contract lives in the lowest layer (`crate::contract`): ingest
/// decodes with it, history stores what it decodes. Re-exported here, where
/// MES code and its users look for it.
pub mod contract {
    pub use crate::contract::*;
}

pub use crate::contract::{Contract, ContractError, Envelope, MesEvent};
pub use sync::{Change, MesSync, WorkOrderBook};

/// Microseconds since the Unix epoch as an RFC 3339 UTC time, as MES
/// envelopes and B2MML documents carry them.
pub fn rfc3339(us: i64) -> String {
    jiff::Timestamp::from_microsecond(us)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_string()
}

/// Everything that can go wrong with the MES as a peer: a refused event,
/// a B2MML document, the MES API.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MesError {
    #[error(transparent)]
    Contract(#[from] ContractError),
    #[error("B2MML schedule {file}:\n  {}", problems.join("\n  "))]
    B2mml { file: String, problems: Vec<String> },
    #[error("MES API {url}: {message}")]
    Api { url: String, message: String },
    #[error("recommendation not published on {topic}: {reason}")]
    Recommendation { topic: String, reason: String },
    #[error("cannot write {path}: {message}")]
    Write { path: String, message: String },
}

use std::sync::Arc;

use bevy::prelude::*;

use crate::MezzanineSet;
use crate::config::{MesDomains, SyncMode};
use crate::history::{History, WriterMsg};
use crate::ingest::{MesHeartbeats, PendingMes, now_us};
use poll::{PollCommand, PollMsg};

/// The MES sync state in the app.
#[derive(Resource, Debug)]
pub struct MesState(pub MesSync);

/// What each asset runs according to the MES (asset id → work order).
#[derive(Resource, Debug, Default, Clone, PartialEq)]
pub struct MesContext {
    pub work_orders: std::collections::HashMap<String, String>,
    pub last_event_us: Option<i64>,
}

/// Whether the MES is reachable, as the twin sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStatus {
    /// Nothing heard yet.
    Unknown,
    Up,
    /// Nothing heard since `since_us`: observations are context-unavailable.
    Down {
        since_us: i64,
    },
    /// Heard again; fetching the events missed since `since_us`.
    CatchingUp {
        since_us: i64,
    },
}

/// The MES connection: heartbeat, events and polls in; outages out.
#[derive(Resource, Debug, Clone)]
pub struct MesLink {
    pub status: LinkStatus,
    /// Receipt time of the newest heartbeat, event or successful poll.
    pub last_heard_us: Option<i64>,
    pub last_poll_us: Option<i64>,
    pub last_poll_error: Option<String>,
    /// Outages seen this run: (start, end once over).
    pub outages: Vec<(i64, Option<i64>)>,
    /// Events fetched by catch-up after outages that the twin had missed.
    pub caught_up_events: u64,
    /// Pages of the MES event log fetched by those catch-ups.
    pub catch_up_pages: u64,
    /// Events listed and missed in the pages of the catch-up under way.
    catch_up_progress: (u64, u64),
    pub timeout_us: i64,
    pub domains: MesDomains,
    pub poll_interval_ms: u64,
    /// A poller is running (some domain is polled, or the API is watched).
    pub polling: bool,
    started_us: i64,
    /// After a failed catch-up, the next try waits until then.
    retry_catch_up_us: i64,
}

impl MesLink {
    /// Outages are detected at all (a heartbeat topic or an API to poll;
    /// sporadic events alone cannot tell silence from an outage).
    pub fn watched(&self) -> bool {
        self.timeout_us > 0
    }

    pub fn is_down(&self) -> bool {
        matches!(
            self.status,
            LinkStatus::Down { .. } | LinkStatus::CatchingUp { .. }
        )
    }

    fn heard(&mut self, at_us: i64) {
        self.last_heard_us = Some(self.last_heard_us.map_or(at_us, |t| t.max(at_us)));
    }
}

/// The polling channel to the MES API (when one is configured).
#[derive(Resource)]
pub struct MesPollChannel {
    pub results: crossbeam_channel::Receiver<PollMsg>,
    pub commands: crossbeam_channel::Sender<PollCommand>,
}

/// The MES's production schedule, as last polled.
#[derive(Resource, Debug, Default, Clone)]
pub struct MesSchedule {
    pub as_of_us: Option<i64>,
    pub orders: Vec<poll::OrderSnapshot>,
}

/// An MES event the twin applied (in source-time order, once per id).
#[derive(Message, Debug, Clone)]
pub struct MesApplied(pub Envelope);

/// Applies MES events and polls: dedupe, reorder, apply, record work-order
/// context; watches the link and catches up after an outage.
pub struct MesPlugin {
    pub reorder_window_us: i64,
    /// Event ids already applied in earlier runs (from the history file).
    pub seen: Vec<String>,
    /// 0: outages are not detected (no heartbeat topic and no API).
    pub heartbeat_timeout_ms: u64,
    pub domains: MesDomains,
    pub poll_interval_ms: u64,
}

impl MesPlugin {
    /// Settings from the `[mes]` configuration.
    pub fn from_config(c: &crate::config::MesConfig, seen: Vec<String>) -> Self {
        Self {
            reorder_window_us: c.reorder_window_ms as i64 * 1000,
            seen,
            heartbeat_timeout_ms: c.heartbeat_timeout_ms,
            domains: c.domains.clone(),
            poll_interval_ms: c.poll_interval_ms,
        }
    }
}

/// Event types of each polled domain (recorded, but not applied).
fn polled_types(d: &MesDomains) -> Vec<String> {
    let mut v = Vec::new();
    if d.work_orders == SyncMode::Polling {
        v.extend(
            [
                "work_order.started",
                "work_order.held",
                "work_order.completed",
                "operation.started",
                "operation.completed",
            ]
            .map(String::from),
        );
    }
    if d.equipment == SyncMode::Polling {
        v.push("equipment.mode_changed".into());
    }
    v
}

impl Plugin for MesPlugin {
    fn build(&self, app: &mut App) {
        let mut sync = MesSync::new(self.reorder_window_us, 100_000);
        sync.seen.seed(self.seen.iter().cloned());
        sync.ignored_types.extend(polled_types(&self.domains));
        let contract = match Contract::load() {
            Ok(c) => Some(Arc::new(c)),
            Err(e) => {
                error!("MES contract: {e}");
                None
            }
        };
        app.insert_resource(MesState(sync))
            .insert_resource(MesLink {
                status: LinkStatus::Unknown,
                last_heard_us: None,
                last_poll_us: None,
                last_poll_error: None,
                outages: Vec::new(),
                caught_up_events: 0,
                catch_up_pages: 0,
                catch_up_progress: (0, 0),
                timeout_us: self.heartbeat_timeout_ms as i64 * 1000,
                domains: self.domains.clone(),
                poll_interval_ms: self.poll_interval_ms,
                polling: false,
                started_us: now_us(),
                retry_catch_up_us: 0,
            })
            .insert_resource(MesContract(contract))
            .init_resource::<MesContext>()
            .init_resource::<MesSchedule>()
            .init_resource::<PendingMes>()
            .init_resource::<MesHeartbeats>()
            .add_message::<MesApplied>()
            .add_systems(
                Update,
                (receive_polls, apply_mes, watch_link)
                    .chain()
                    .in_set(MezzanineSet::Apply),
            );
    }
}

#[derive(Resource)]
struct MesContract(Option<Arc<Contract>>);

/// Records what the twin now believes each machine runs.
fn record_changes(changes: Vec<Change>, ctx: &mut MesContext, history: Option<&History>) {
    for c in changes {
        let Change::AssetWorkOrder {
            asset_id,
            work_order,
            ts_us,
        } = c;
        match &work_order {
            Some(w) => {
                ctx.work_orders.insert(asset_id.clone(), w.clone());
            }
            None => {
                ctx.work_orders.remove(&asset_id);
            }
        }
        if let Some(h) = history {
            h.record(WriterMsg::WorkOrder {
                asset_id,
                work_order,
                ts_us,
            });
        }
    }
}

fn apply_released(
    released: Vec<(Envelope, Vec<Change>)>,
    ctx: &mut MesContext,
    history: Option<&History>,
    applied: &mut MessageWriter<MesApplied>,
) {
    for (e, changes) in released {
        ctx.last_event_us = Some(
            ctx.last_event_us
                .map_or(e.source_time_us, |t| t.max(e.source_time_us)),
        );
        applied.write(MesApplied(e));
        record_changes(changes, ctx, history);
    }
}

fn apply_mes(
    mut pending: ResMut<PendingMes>,
    mut state: ResMut<MesState>,
    mut ctx: ResMut<MesContext>,
    mut link: ResMut<MesLink>,
    history: Option<Res<History>>,
    mut quiet_since: Local<Option<std::time::Instant>>,
    mut applied: MessageWriter<MesApplied>,
) {
    let got = !pending.0.is_empty();
    for (e, ack) in pending.0.drain(..) {
        state.0.offer(e);
        // Without a recorder the event is handled once it is in the buffer.
        if let Some(a) = ack {
            a.send();
        }
    }
    if got {
        *quiet_since = Some(std::time::Instant::now());
        link.heard(now_us());
    }
    // Once the source is quiet for the window, everything held is applied.
    let window = std::time::Duration::from_micros(state.0.reorder_window_us().max(0) as u64);
    let flush = quiet_since.is_some_and(|t| t.elapsed() >= window);
    let released = state.0.step(flush);
    apply_released(released, &mut ctx, history.as_deref(), &mut applied);
}

/// The planning content of two polled schedules differs.
fn plan_changed(a: &[poll::OrderSnapshot], b: &[poll::OrderSnapshot]) -> bool {
    let key = |o: &poll::OrderSnapshot| {
        (
            o.work_order.clone(),
            o.asset_id.clone(),
            o.status.clone(),
            o.planned_start_us,
            o.due_us,
            o.quantity.to_bits(),
        )
    };
    a.len() != b.len() || a.iter().zip(b).any(|(x, y)| key(x) != key(y))
}

/// A polled schedule as the schedule record: open orders with their
/// routing (from the released event when the twin saw it, else the machine
/// the MES names), planned start and due date.
pub fn schedule_record(
    orders: &[poll::OrderSnapshot],
    book: &sync::WorkOrderBook,
    as_of_us: i64,
) -> crate::contract::Schedule {
    crate::contract::Schedule {
        id: format!("MES-API@{}", rfc3339(as_of_us)),
        published_us: Some(as_of_us),
        requests: orders
            .iter()
            .filter(|o| o.status != "completed")
            .map(|o| crate::contract::ProductionRequest {
                id: o.work_order.clone(),
                product: o.product.clone(),
                quantity: o.quantity,
                unit: o.unit.clone(),
                routing: book
                    .orders
                    .get(&o.work_order)
                    .map(|w| w.routing.clone())
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| vec![o.asset_id.clone()]),
                earliest_start_us: o.planned_start_us,
                latest_end_us: o.due_us,
            })
            .collect(),
    }
}

#[allow(clippy::too_many_arguments)]
fn receive_polls(
    channel: Option<Res<MesPollChannel>>,
    contract: Res<MesContract>,
    mut state: ResMut<MesState>,
    mut ctx: ResMut<MesContext>,
    mut link: ResMut<MesLink>,
    mut schedule: ResMut<MesSchedule>,
    history: Option<Res<History>>,
    mut applied: MessageWriter<MesApplied>,
) {
    let Some(ch) = channel else {
        return;
    };
    link.polling = true;
    for msg in ch.results.try_iter() {
        match msg {
            PollMsg::Snapshot(snap) => {
                link.last_poll_us = Some(snap.received_us);
                link.last_poll_error = None;
                link.heard(snap.received_us);
                let mut changes = Vec::new();
                if let Some(orders) = &snap.work_orders {
                    changes.extend(state.0.book.apply_orders_snapshot(orders, snap.as_of_us));
                }
                if let Some(eq) = &snap.equipment {
                    state.0.book.apply_equipment_snapshot(eq);
                }
                if let Some(s) = snap.schedule {
                    // A changed plan is recorded, so `schedule --at T`
                    // sees the plan the MES had then.
                    if let Some(h) = &history
                        && (schedule.as_of_us.is_none() || plan_changed(&schedule.orders, &s))
                    {
                        h.record(WriterMsg::Schedule {
                            ts_us: snap.as_of_us,
                            source: "MES API (polled)".into(),
                            schedule: schedule_record(&s, &state.0.book, snap.as_of_us),
                        });
                    }
                    schedule.as_of_us = Some(snap.as_of_us);
                    schedule.orders = s;
                }
                record_changes(changes, &mut ctx, history.as_deref());
            }
            PollMsg::Unreachable { error, .. } => {
                if link.last_poll_error.is_none() {
                    warn!("MES API: {error}");
                }
                link.last_poll_error = Some(error);
            }
            PollMsg::CatchUp {
                since_us,
                events,
                more,
            } => {
                let mut new = 0u64;
                if let Some(c) = &contract.0 {
                    for v in &events {
                        match c.decode_value(v, "MES API /api/v1/events") {
                            Ok(e) => {
                                if let Some(h) = &history
                                    && !state.0.seen.contains(&e.id)
                                {
                                    h.record(WriterMsg::mes_event(&e));
                                }
                                if state.0.offer(e) {
                                    new += 1;
                                }
                            }
                            Err(e) => warn!("MES catch-up: {e}"),
                        }
                    }
                }
                // Everything missed so far is applied now, in source-time
                // order (the MES lists its log in that order, page by page).
                let released = state.0.step(true);
                apply_released(released, &mut ctx, history.as_deref(), &mut applied);
                link.caught_up_events += new;
                link.catch_up_pages += 1;
                link.catch_up_progress.0 += events.len() as u64;
                link.catch_up_progress.1 += new;
                if !more {
                    let (listed, missed) = std::mem::take(&mut link.catch_up_progress);
                    info!(
                        "MES catch-up: {listed} events since the outage began, {missed} of them missed"
                    );
                    finish_recovery(&mut link, since_us, history.as_deref());
                }
            }
            PollMsg::CatchUpFailed { since_us, error } => {
                link.catch_up_progress = (0, 0);
                warn!(
                    "MES catch-up failed ({error}); trying again in 5 s, context stays unavailable"
                );
                link.status = LinkStatus::Down { since_us };
                link.retry_catch_up_us = now_us() + 5_000_000;
            }
        }
    }
}

fn finish_recovery(link: &mut MesLink, since_us: i64, history: Option<&History>) {
    let now = now_us();
    if let Some(h) = history {
        h.record(WriterMsg::Backfill {
            from_us: since_us,
            to_us: now,
        });
        h.record(WriterMsg::MesLink {
            up: true,
            ts_us: now,
        });
    }
    if let Some(o) = link.outages.last_mut()
        && o.1.is_none()
    {
        o.1 = Some(now);
    }
    info!("MES back after {:.0} s", (now - since_us) as f64 / 1e6);
    link.status = LinkStatus::Up;
}

fn watch_link(
    mut link: ResMut<MesLink>,
    beats: Res<MesHeartbeats>,
    channel: Option<Res<MesPollChannel>>,
    state: Res<MesState>,
    history: Option<Res<History>>,
) {
    if let Some(t) = beats.last_received_us {
        link.heard(t);
    }
    if !link.watched() {
        if link.last_heard_us.is_some() {
            link.status = LinkStatus::Up;
        }
        return;
    }
    let now = now_us();
    let heard = link.last_heard_us;
    match link.status {
        LinkStatus::Unknown | LinkStatus::Up => {
            let silent_since = heard.unwrap_or(link.started_us);
            if now - silent_since > link.timeout_us {
                warn!(
                    "MES silent for {:.0} s: observations are marked context-unavailable",
                    (now - silent_since) as f64 / 1e6
                );
                link.status = LinkStatus::Down {
                    since_us: silent_since,
                };
                link.outages.push((silent_since, None));
                if let Some(h) = &history {
                    h.record(WriterMsg::MesLink {
                        up: false,
                        ts_us: silent_since,
                    });
                }
            } else if heard.is_some() {
                link.status = LinkStatus::Up;
            }
        }
        LinkStatus::Down { since_us } => {
            // Heard again within the timeout: back.
            if heard.is_some_and(|t| now - t <= link.timeout_us / 2 && t > since_us)
                && now >= link.retry_catch_up_us
            {
                match &channel {
                    Some(ch) => {
                        // Events from before the outage's start may still be in
                        // flight; ask from one reorder window earlier.
                        let from = since_us - state.0.reorder_window_us() - 1_000_000;
                        let _ = ch
                            .commands
                            .try_send(PollCommand::CatchUp { since_us: from });
                        link.status = LinkStatus::CatchingUp { since_us };
                    }
                    None => finish_recovery(&mut link, since_us, history.as_deref()),
                }
            }
        }
        LinkStatus::CatchingUp { .. } => {}
    }
}
