//! Applying MES events safely: decoded [`Envelope`]s in; for each event
//! applied, the [`Change`]s it made to the twin's view of work orders out.
//!
//! - [`SeenEvents`]: the ids already applied (bounded, seeded from the
//!   history file on start), so a re-sent event changes nothing.
//! - [`ReorderBuffer`]: holds events for a short window and releases them
//!   in source-time order, so an MES failover that re-sends out of order
//!   does not move the model backwards.
//! - [`WorkOrderBook`]: work orders and what each asset is running; every
//!   apply is idempotent by state too (a second "started" for the same
//!   order and asset is not a second active order).

use std::collections::{BTreeMap, HashMap, HashSet};

pub use crate::contract::SeenEvents;
use crate::contract::{Envelope, EquipmentMode, MesEvent};

/// Releases events in source-time order once they are older than the
/// newest seen by `window_us` (or when flushed).
#[derive(Debug, Clone)]
pub struct ReorderBuffer {
    window_us: i64,
    newest_us: i64,
    held: BTreeMap<(i64, String), Envelope>,
}

impl ReorderBuffer {
    pub fn new(window_us: i64) -> Self {
        Self {
            window_us: window_us.max(0),
            newest_us: i64::MIN,
            held: BTreeMap::new(),
        }
    }

    pub fn push(&mut self, e: Envelope) {
        self.newest_us = self.newest_us.max(e.source_time_us);
        self.held.insert((e.source_time_us, e.id.clone()), e);
    }

    /// Events now older than the window, oldest first.
    pub fn release(&mut self) -> Vec<Envelope> {
        let cut = self.newest_us.saturating_sub(self.window_us);
        let keep = self.held.split_off(&(cut.saturating_add(1), String::new()));
        let out = std::mem::replace(&mut self.held, keep);
        out.into_values().collect()
    }

    /// Everything held, oldest first (the source went quiet).
    pub fn flush(&mut self) -> Vec<Envelope> {
        std::mem::take(&mut self.held).into_values().collect()
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    Released,
    Running,
    Held,
    Completed,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WorkOrder {
    pub number: String,
    pub product: Option<String>,
    pub quantity: Option<f64>,
    pub due_us: Option<i64>,
    pub routing: Vec<String>,
    pub status: OrderStatus,
    pub hold_reason: Option<String>,
    pub good_count: u64,
    pub scrap_count: u64,
    /// Source time of the last change.
    pub updated_us: i64,
}

/// What one asset is doing, as the MES sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AssetContext {
    pub work_order: Option<String>,
    pub operation: Option<u32>,
    pub mode: Option<EquipmentMode>,
    /// Source time of the newest event that set the work order or the
    /// operation: an older one arriving later (a catch-up answer after live
    /// events) does not undo it.
    pub order_since_us: i64,
    /// Source time of the newest mode change applied.
    pub mode_since_us: i64,
}

/// A change the twin reacts to (and records). Order status and equipment
/// mode live in the [`WorkOrderBook`], read from there by the UI and the
/// reconciliation; only what the twin must act on is announced.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The work order an asset runs from `ts_us` on (None: none).
    AssetWorkOrder {
        asset_id: String,
        work_order: Option<String>,
        ts_us: i64,
    },
}

/// Work orders and the per-asset MES context.
///
/// Newer wins: each order and each asset remembers the source time of the
/// last event that changed it, and an older event arriving later changes
/// neither (it is still recorded). Counts only grow.
///
/// Bounded: completed orders are kept [`COMPLETED_KEPT_US`] of source time
/// after their last change, and at most [`COMPLETED_KEPT`] of them (the
/// history holds every event); released, running and held orders are all
/// kept.
#[derive(Debug, Clone, Default)]
pub struct WorkOrderBook {
    pub orders: HashMap<String, WorkOrder>,
    pub assets: HashMap<String, AssetContext>,
    /// Events (or parts of them) older than what the book already holds.
    pub stale_ignored: u64,
    /// Newest source time applied, the clock of the pruning.
    newest_us: i64,
}

/// How long a completed order stays in the book after its last change.
pub const COMPLETED_KEPT_US: i64 = 24 * 3_600 * 1_000_000;
/// Most completed orders kept in the book.
pub const COMPLETED_KEPT: usize = 5_000;

impl WorkOrderBook {
    fn order(&mut self, number: &str, ts_us: i64) -> &mut WorkOrder {
        self.orders
            .entry(number.to_string())
            .or_insert_with(|| WorkOrder {
                number: number.to_string(),
                product: None,
                quantity: None,
                due_us: None,
                routing: Vec::new(),
                status: OrderStatus::Released,
                hold_reason: None,
                good_count: 0,
                scrap_count: 0,
                updated_us: ts_us,
            })
    }

    /// False (and counted) when the asset's order was set by a newer event.
    fn set_asset_order(
        &mut self,
        asset: &str,
        wo: Option<&str>,
        ts_us: i64,
        out: &mut Vec<Change>,
    ) -> bool {
        let ctx = self.assets.entry(asset.to_string()).or_default();
        if ts_us < ctx.order_since_us {
            self.stale_ignored += 1;
            return false;
        }
        ctx.order_since_us = ts_us;
        if ctx.work_order.as_deref() != wo {
            ctx.work_order = wo.map(str::to_string);
            if wo.is_none() {
                ctx.operation = None;
            }
            out.push(Change::AssetWorkOrder {
                asset_id: asset.to_string(),
                work_order: wo.map(str::to_string),
                ts_us,
            });
        }
        true
    }

    /// False (and counted) when the order changed at a later source time.
    fn set_status(&mut self, wo: &str, status: OrderStatus, ts_us: i64) -> bool {
        let o = self.order(wo, ts_us);
        if ts_us < o.updated_us {
            self.stale_ignored += 1;
            return false;
        }
        o.updated_us = ts_us;
        o.status = status;
        true
    }

    fn set_counts(&mut self, wo: &str, good: u64, scrap: u64, ts_us: i64) {
        let o = self.order(wo, ts_us);
        o.good_count = o.good_count.max(good);
        o.scrap_count = o.scrap_count.max(scrap);
        o.updated_us = o.updated_us.max(ts_us);
    }

    /// Forgets completed orders past their time or their number.
    fn prune(&mut self) {
        let horizon = self.newest_us.saturating_sub(COMPLETED_KEPT_US);
        self.orders
            .retain(|_, o| o.status != OrderStatus::Completed || o.updated_us >= horizon);
        let mut completed: Vec<(i64, String)> = self
            .orders
            .values()
            .filter(|o| o.status == OrderStatus::Completed)
            .map(|o| (o.updated_us, o.number.clone()))
            .collect();
        if completed.len() > COMPLETED_KEPT {
            completed.sort_unstable();
            for (_, n) in &completed[..completed.len() - COMPLETED_KEPT] {
                self.orders.remove(n);
            }
        }
    }

    /// Applies one event; returns what changed (nothing for a repeat).
    pub fn apply(&mut self, e: &Envelope) -> Vec<Change> {
        let ts = e.source_time_us;
        let mut out = Vec::new();
        self.newest_us = self.newest_us.max(ts);
        match &e.event {
            MesEvent::WorkOrderReleased {
                work_order,
                product,
                quantity,
                due_us,
                routing,
            } => {
                let o = self.order(work_order, ts);
                o.product = Some(product.clone());
                o.quantity = Some(quantity.value);
                o.due_us = Some(*due_us);
                o.routing = routing.clone();
            }
            MesEvent::WorkOrderStarted {
                work_order,
                asset_id,
            } => {
                self.set_status(work_order, OrderStatus::Running, ts);
                self.set_asset_order(asset_id, Some(work_order), ts, &mut out);
            }
            MesEvent::OperationStarted {
                work_order,
                operation,
                asset_id,
            } => {
                self.set_status(work_order, OrderStatus::Running, ts);
                if self.set_asset_order(asset_id, Some(work_order), ts, &mut out) {
                    self.assets.entry(asset_id.clone()).or_default().operation = Some(*operation);
                }
            }
            MesEvent::OperationCompleted {
                work_order,
                asset_id,
                good_count,
                scrap_count,
                ..
            } => {
                self.set_counts(work_order, *good_count, *scrap_count, ts);
                if self
                    .assets
                    .get(asset_id)
                    .and_then(|a| a.work_order.as_deref())
                    == Some(work_order.as_str())
                {
                    self.set_asset_order(asset_id, None, ts, &mut out);
                }
            }
            MesEvent::WorkOrderHeld {
                work_order, reason, ..
            } => {
                if self.set_status(work_order, OrderStatus::Held, ts) {
                    self.order(work_order, ts).hold_reason = Some(reason.clone());
                }
            }
            MesEvent::WorkOrderCompleted {
                work_order,
                good_count,
                scrap_count,
            } => {
                let newest = self.set_status(work_order, OrderStatus::Completed, ts);
                self.set_counts(work_order, *good_count, *scrap_count, ts);
                if !newest {
                    return out;
                }
                let running: Vec<String> = self
                    .assets
                    .iter()
                    .filter(|(_, c)| c.work_order.as_deref() == Some(work_order.as_str()))
                    .map(|(a, _)| a.clone())
                    .collect();
                for a in running {
                    self.set_asset_order(&a, None, ts, &mut out);
                }
            }
            MesEvent::EquipmentModeChanged { asset_id, mode } => {
                let ctx = self.assets.entry(asset_id.clone()).or_default();
                if ts < ctx.mode_since_us {
                    self.stale_ignored += 1;
                } else {
                    ctx.mode_since_us = ts;
                    ctx.mode = Some(*mode);
                }
            }
            MesEvent::MaterialIssued { .. } | MesEvent::QualityDisposition { .. } => {}
        }
        if matches!(e.event, MesEvent::WorkOrderCompleted { .. }) {
            self.prune();
        }
        out
    }

    /// Reconciles a polled list of orders against the book (the polling
    /// mode): order status and counts, and which order each machine runs
    /// (running or held on it), as of `ts_us`. Returns what changed.
    pub fn apply_orders_snapshot(
        &mut self,
        orders: &[super::poll::OrderSnapshot],
        ts_us: i64,
    ) -> Vec<Change> {
        let mut out = Vec::new();
        let mut on_asset: HashMap<&str, &super::poll::OrderSnapshot> = HashMap::new();
        for o in orders {
            let status = match o.status.as_str() {
                "running" => OrderStatus::Running,
                "held" => OrderStatus::Held,
                "completed" => OrderStatus::Completed,
                _ => OrderStatus::Released,
            };
            self.set_status(&o.work_order, status, ts_us);
            let rec = self.order(&o.work_order, ts_us);
            rec.product = Some(o.product.clone());
            rec.quantity = Some(o.quantity);
            rec.due_us = o.due_us.or(rec.due_us);
            rec.good_count = o.good_count;
            rec.scrap_count = o.scrap_count;
            if matches!(status, OrderStatus::Running | OrderStatus::Held) {
                on_asset.insert(o.asset_id.as_str(), o);
            }
        }
        let mut assets: Vec<String> = self.assets.keys().cloned().collect();
        assets.extend(on_asset.keys().map(|a| a.to_string()));
        assets.sort();
        assets.dedup();
        for a in assets {
            let wo = on_asset.get(a.as_str()).map(|o| o.work_order.clone());
            if self.set_asset_order(&a, wo.as_deref(), ts_us, &mut out)
                && let Some(o) = on_asset.get(a.as_str())
            {
                self.assets.entry(a.clone()).or_default().operation = o.operation;
            }
        }
        self.newest_us = self.newest_us.max(ts_us);
        self.prune();
        out
    }

    /// Takes polled equipment modes into the book (modes are read from
    /// the book; they announce no [`Change`]).
    pub fn apply_equipment_snapshot(&mut self, equipment: &[super::poll::EquipmentSnapshot]) {
        for e in equipment {
            let Ok(mode) = serde_json::from_value::<EquipmentMode>(serde_json::Value::String(
                e.mode.to_ascii_lowercase(),
            )) else {
                continue;
            };
            self.assets.entry(e.asset_id.clone()).or_default().mode = Some(mode);
        }
    }

    /// Work orders currently running on `asset`.
    pub fn active_on(&self, asset: &str) -> Option<&str> {
        self.assets.get(asset)?.work_order.as_deref()
    }
}

/// Dedupe, reorder and apply in one place.
#[derive(Debug, Clone)]
pub struct MesSync {
    pub seen: SeenEvents,
    pub reorder: ReorderBuffer,
    pub book: WorkOrderBook,
    pub duplicates: u64,
    pub applied: u64,
    /// Event types whose domain is polled: recorded, not applied.
    pub ignored_types: HashSet<String>,
    pub ignored: u64,
}

impl MesSync {
    pub fn new(window_us: i64, seen_capacity: usize) -> Self {
        Self {
            seen: SeenEvents::new(seen_capacity),
            reorder: ReorderBuffer::new(window_us),
            book: WorkOrderBook::default(),
            duplicates: 0,
            applied: 0,
            ignored_types: HashSet::new(),
            ignored: 0,
        }
    }

    pub fn reorder_window_us(&self) -> i64 {
        self.reorder.window_us
    }

    /// Takes an event; false if it was a duplicate (already applied or held).
    pub fn offer(&mut self, e: Envelope) -> bool {
        if !self.seen.insert(&e.id) {
            self.duplicates += 1;
            return false;
        }
        self.reorder.push(e);
        true
    }

    /// Applies what the reorder window releases (all of it with `flush`).
    pub fn step(&mut self, flush: bool) -> Vec<(Envelope, Vec<Change>)> {
        let ready = if flush {
            self.reorder.flush()
        } else {
            self.reorder.release()
        };
        ready
            .into_iter()
            .map(|e| {
                if self.ignored_types.contains(&e.event_type) {
                    self.ignored += 1;
                    return (e, Vec::new());
                }
                self.applied += 1;
                let ch = self.book.apply(&e);
                (e, ch)
            })
            .collect()
    }
}
