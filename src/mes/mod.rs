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
