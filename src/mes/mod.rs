//! The MES as a peer: its events in, the twin's view of work orders out.
//!
//! `contract` turns bytes into validated, current-version events (JSON
//! Schema per event type and major version, v1 upcast to v2, clear errors
//! for everything refused); `sync` applies them idempotently and in
//! source-time order to a [`sync::WorkOrderBook`]. Nothing here ever writes
//! to the MES. (The MES simulator, the MQTT and polling wiring, outages and
//! reconciliation build on these.)

pub mod contract;
pub mod sync;

pub use contract::{Contract, Envelope, MesEvent};
pub use sync::{Change, MesSync, WorkOrderBook};

/// Everything that can go wrong with an MES event or the contract itself.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MesError {
    #[error("schema file {file}: {message}")]
    Schema { file: String, message: String },
    #[error("{source_name}: not JSON: {message}")]
    NotJson {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: not an MES event envelope: {message}")]
    Envelope {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: event {id}: unknown event type `{event_type}`")]
    UnknownType {
        id: String,
        event_type: String,
        source_name: String,
    },
    #[error(
        "event {id}: {event_type} schema version {version} is not supported (accepted: {accepted})"
    )]
    UnsupportedVersion {
        id: String,
        event_type: String,
        version: String,
        accepted: String,
    },
    #[error("event {id}: {event_type} {version} payload is invalid: {message}")]
    Payload {
        id: String,
        event_type: String,
        version: String,
        message: String,
    },
    #[error("event {id}: {event_type} could not be upcast: {message}")]
    Upcast {
        id: String,
        event_type: String,
        message: String,
    },
}

use bevy::prelude::*;

use crate::MezzanineSet;
use crate::history::{History, WriterMsg};
use crate::ingest::PendingMes;

/// The MES sync state in the app.
#[derive(Resource, Debug)]
pub struct MesState(pub MesSync);

/// What each asset runs according to the MES (asset id → work order).
#[derive(Resource, Debug, Default, Clone, PartialEq)]
pub struct MesContext {
    pub work_orders: std::collections::HashMap<String, String>,
    pub last_event_us: Option<i64>,
}

/// Applies MES events: dedupe, reorder, apply, record work-order context.
pub struct MesPlugin {
    pub reorder_window_us: i64,
    /// Event ids already applied in earlier runs (from the history file).
    pub seen: Vec<String>,
}

impl Plugin for MesPlugin {
    fn build(&self, app: &mut App) {
        let mut sync = MesSync::new(self.reorder_window_us, 100_000);
        sync.seen.seed(self.seen.iter().cloned());
        app.insert_resource(MesState(sync))
            .init_resource::<MesContext>()
            .init_resource::<PendingMes>()
            .add_systems(Update, apply_mes.in_set(MezzanineSet::Apply));
    }
}

fn apply_mes(
    mut pending: ResMut<PendingMes>,
    mut state: ResMut<MesState>,
    mut ctx: ResMut<MesContext>,
    history: Option<Res<History>>,
    mut quiet_since: Local<Option<std::time::Instant>>,
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
    }
    // Once the source is quiet for the window, everything held is applied.
    let window = std::time::Duration::from_micros(state.0.reorder_window_us().max(0) as u64);
    let flush = quiet_since.is_some_and(|t| t.elapsed() >= window);
    for (e, changes) in state.0.step(flush) {
        ctx.last_event_us = Some(
            ctx.last_event_us
                .map_or(e.source_time_us, |t| t.max(e.source_time_us)),
        );
        for c in changes {
            if let Change::AssetWorkOrder {
                asset_id,
                work_order,
                ts_us,
            } = c
            {
                match &work_order {
                    Some(w) => {
                        ctx.work_orders.insert(asset_id.clone(), w.clone());
                    }
                    None => {
                        ctx.work_orders.remove(&asset_id);
                    }
                }
                if let Some(h) = &history {
                    h.record(WriterMsg::WorkOrder {
                        asset_id,
                        work_order,
                        ts_us,
                    });
                }
            }
        }
    }
}
