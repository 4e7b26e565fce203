//! The MES context of the recording: [`WriterMsg`]s from `mes` in (work
//! orders per asset, MES events, the MES link going down or up, back-fill
//! requests), the work order each new sample carries out, and the SQL that
//! stores the context and repairs it after an outage.
//!
//! History knows no MES rules: `mes` decides what an outage is and when it
//! has caught up, and says so with `MesLink` and `Backfill`. Here those
//! messages become rows: while the link is down, samples are recorded
//! context-unavailable with no work order; a back-fill gives each of them
//! the work order its asset ran at the sample's source time, from the
//! (then complete) work-order history.

use std::collections::HashMap;
use std::sync::Arc;

use duckdb::{Connection, params};

use super::WriterMsg;
use crate::contract::{Envelope, SeenEvents};
use crate::history::{HistoryError, sql_err as q};
use crate::registry::AssetRegistry;

/// MES event ids remembered to store each event once.
const SEEN_EVENT_IDS: usize = 100_000;

impl WriterMsg {
    /// The record of one MES event (payload in the current version).
    pub fn mes_event(e: &Envelope) -> Self {
        WriterMsg::MesEvent {
            ts_us: e.source_time_us,
            event_id: e.id.clone(),
            event_type: e.event_type.clone(),
            asset_id: e.event.asset_id().map(str::to_string),
            work_order: e.event.work_order().map(str::to_string),
            payload: e.payload_v2.to_string(),
        }
    }
}

/// What the writer knows of the MES right now.
pub(super) struct MesContext {
    /// Asset ids, indexed like the registry's assets.
    asset_ids: Vec<String>,
    /// Work order per asset, indexed like the registry's assets.
    work_orders: Vec<Option<Arc<str>>>,
    /// MES event ids already stored (seeded from the file).
    seen: SeenEvents,
    /// The MES is unreachable: samples carry no work order until back-filled.
    down: bool,
}

impl MesContext {
    /// The context as the file left it: each asset's last work order, the
    /// recent event ids; an outage a previous run did not see end (it
    /// stopped first) is closed with that run's recording — its samples
    /// stay context-unavailable.
    pub(super) fn load(conn: &Connection, registry: &AssetRegistry) -> Result<Self, HistoryError> {
        let asset_ids: Vec<String> = registry.assets().iter().map(|a| a.id.clone()).collect();
        let mut last: HashMap<String, Option<Arc<str>>> = HashMap::new();
        {
            let mut st = conn
                .prepare(
                    "SELECT asset_id, arg_max_null(work_order, ts_us) FROM work_orders GROUP BY asset_id",
                )
                .map_err(q("reading the work-order context"))?;
            let rows = st
                .query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
                })
                .map_err(q("reading the work-order context"))?;
            for row in rows {
                let (a, wo) = row.map_err(q("reading the work-order context"))?;
                last.insert(a, wo.map(Arc::from));
            }
        }
        let mut seen = SeenEvents::new(SEEN_EVENT_IDS);
        seen.seed(crate::history::query::recent_mes_event_ids(
            conn,
            SEEN_EVENT_IDS,
        )?);
        conn.execute(
            "UPDATE mes_outages SET end_us = greatest(start_us, (SELECT max(ts_us) FROM samples)),
                    backfilled_rows = 0
             WHERE end_us IS NULL",
            [],
        )
        .map_err(q("closing an outage left open"))?;
        Ok(Self {
            work_orders: asset_ids
                .iter()
                .map(|a| last.get(a).cloned().flatten())
                .collect(),
            asset_ids,
            seen,
            down: false,
        })
    }

    /// True the first time an event id is offered: store it then.
    pub(super) fn first_time(&mut self, event_id: &str) -> bool {
        self.seen.insert(event_id)
    }

    /// Takes the context a message carries (before it is written).
    pub(super) fn note(&mut self, m: &WriterMsg) {
        match m {
            WriterMsg::MesLink { up, .. } => self.down = !up,
            WriterMsg::WorkOrder {
                asset_id,
                work_order,
                ..
            } => {
                if let Some(i) = self.asset_ids.iter().position(|a| a == asset_id) {
                    self.work_orders[i] = work_order.as_deref().map(Arc::from);
                }
            }
            _ => {}
        }
    }

    /// Whether new samples are recorded without MES context.
    pub(super) fn unavailable(&self) -> bool {
        self.down
    }

    /// The work order a new sample of asset `asset` carries.
    pub(super) fn work_order(&self, asset: usize) -> Option<Arc<str>> {
        if self.down {
            return None;
        }
        self.work_orders.get(asset).cloned().flatten()
    }
}

/// Writes one MES message inside the batch's transaction; `received_us` is
/// the commit's wall time. Returns false for messages that are not MES
/// context (the caller writes those).
pub(super) fn write(c: &Connection, m: &WriterMsg, received_us: i64) -> duckdb::Result<bool> {
    match m {
        WriterMsg::WorkOrder {
            asset_id,
            work_order,
            ts_us,
        } => {
            c.execute(
                "INSERT INTO work_orders VALUES (?, ?, ?)",
                params![ts_us, asset_id, work_order],
            )?;
        }
        WriterMsg::MesEvent {
            ts_us,
            event_id,
            event_type,
            asset_id,
            work_order,
            payload,
        } => {
            c.execute(
                "INSERT INTO mes_events VALUES (?, ?, ?, ?, ?, ?, ?)",
                params![
                    ts_us,
                    received_us,
                    event_id,
                    event_type,
                    asset_id,
                    work_order,
                    payload
                ],
            )?;
        }
        WriterMsg::MesLink { up: false, ts_us } => {
            c.execute(
                "INSERT INTO mes_outages SELECT ?, NULL, NULL
                 WHERE NOT EXISTS (SELECT 1 FROM mes_outages WHERE end_us IS NULL)",
                params![ts_us],
            )?;
            // The outage began when the MES was last heard: what was
            // recorded since then carries a context that may be stale.
            c.execute(
                "UPDATE samples SET context_unavailable = true, work_order = NULL
                 WHERE ts_us >= ? AND context_unavailable IS NOT TRUE",
                params![ts_us],
            )?;
        }
        WriterMsg::MesLink { up: true, .. } => {}
        WriterMsg::Backfill { from_us, to_us } => {
            // Each sample's work order is the one its asset ran at the
            // sample's source time, per the (now complete) MES history.
            let filled = c.execute(
                "UPDATE samples SET work_order = f.wo, context_unavailable = false
                 FROM (SELECT s.seq AS seq, w.work_order AS wo
                       FROM samples s JOIN properties p USING (prop_id)
                       ASOF LEFT JOIN work_orders w
                         ON p.asset_id = w.asset_id AND s.ts_us >= w.ts_us
                       WHERE s.context_unavailable AND s.ts_us >= ?) f
                 WHERE samples.seq = f.seq",
                params![from_us],
            )?;
            c.execute(
                "UPDATE mes_outages SET end_us = ?, backfilled_rows = ?
                 WHERE end_us IS NULL",
                params![to_us, filled as i64],
            )?;
            bevy::log::info!(
                "MES context back-filled for {filled} samples recorded while it was away"
            );
        }
        _ => return Ok(false),
    }
    Ok(true)
}
