//! The MES event contract: bytes in, a validated, current-version
//! [`MesEvent`] (with its envelope) out — or a [`ContractError`] that says
//! why.
//!
//! This is the lowest layer, beside `config`: the ingest adapters decode MES
//! messages with it (an MES event leaves ingest as a plain [`Envelope`]),
//! the history stores envelopes it is given, and `mes` applies them. It
//! imports nothing from the crate.
//!
//! Every event is an envelope `{id, type, schema_version, source_time,
//! payload}`. Each event type has a JSON Schema per major version in
//! `schemas/mes/<type>.v<major>.schema.json` (compiled into the binary).
//! The current major (2) and the previous one (1) are accepted; a v1
//! payload is validated against its own schema, then upcast to v2 and
//! validated again before it is typed. Anything else is refused with the
//! accepted majors named.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Value, json};

pub mod schedule;
pub mod seen;

pub use schedule::{ProductionRequest, Schedule};
pub use seen::SeenEvents;

/// Everything that can go wrong decoding an MES event, or with the shipped
/// schemas themselves.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ContractError {
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

/// The major version this build models events in.
pub const CURRENT_MAJOR: u32 = 2;
/// Majors accepted on the wire (the current and the previous one).
pub const ACCEPTED_MAJORS: [u32; 2] = [1, 2];

/// Every schema file shipped, by name, compiled in.
pub const SCHEMA_FILES: &[(&str, &str)] = &[
    (
        "envelope.schema.json",
        include_str!("../../schemas/mes/envelope.schema.json"),
    ),
    (
        "work_order.released.v1.schema.json",
        include_str!("../../schemas/mes/work_order.released.v1.schema.json"),
    ),
    (
        "work_order.released.v2.schema.json",
        include_str!("../../schemas/mes/work_order.released.v2.schema.json"),
    ),
    (
        "work_order.started.v1.schema.json",
        include_str!("../../schemas/mes/work_order.started.v1.schema.json"),
    ),
    (
        "work_order.started.v2.schema.json",
        include_str!("../../schemas/mes/work_order.started.v2.schema.json"),
    ),
    (
        "work_order.held.v1.schema.json",
        include_str!("../../schemas/mes/work_order.held.v1.schema.json"),
    ),
    (
        "work_order.held.v2.schema.json",
        include_str!("../../schemas/mes/work_order.held.v2.schema.json"),
    ),
    (
        "work_order.completed.v1.schema.json",
        include_str!("../../schemas/mes/work_order.completed.v1.schema.json"),
    ),
    (
        "work_order.completed.v2.schema.json",
        include_str!("../../schemas/mes/work_order.completed.v2.schema.json"),
    ),
    (
        "operation.started.v1.schema.json",
        include_str!("../../schemas/mes/operation.started.v1.schema.json"),
    ),
    (
        "operation.started.v2.schema.json",
        include_str!("../../schemas/mes/operation.started.v2.schema.json"),
    ),
    (
        "operation.completed.v1.schema.json",
        include_str!("../../schemas/mes/operation.completed.v1.schema.json"),
    ),
    (
        "operation.completed.v2.schema.json",
        include_str!("../../schemas/mes/operation.completed.v2.schema.json"),
    ),
    (
        "equipment.mode_changed.v1.schema.json",
        include_str!("../../schemas/mes/equipment.mode_changed.v1.schema.json"),
    ),
    (
        "equipment.mode_changed.v2.schema.json",
        include_str!("../../schemas/mes/equipment.mode_changed.v2.schema.json"),
    ),
    (
        "material.issued.v1.schema.json",
        include_str!("../../schemas/mes/material.issued.v1.schema.json"),
    ),
    (
        "material.issued.v2.schema.json",
        include_str!("../../schemas/mes/material.issued.v2.schema.json"),
    ),
    (
        "quality.disposition.v1.schema.json",
        include_str!("../../schemas/mes/quality.disposition.v1.schema.json"),
    ),
    (
        "quality.disposition.v2.schema.json",
        include_str!("../../schemas/mes/quality.disposition.v2.schema.json"),
    ),
];

/// The event types of the contract.
pub const EVENT_TYPES: [&str; 9] = [
    "work_order.released",
    "work_order.started",
    "work_order.held",
    "work_order.completed",
    "operation.started",
    "operation.completed",
    "equipment.mode_changed",
    "material.issued",
    "quality.disposition",
];

/// A quantity with its unit.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quantity {
    pub value: f64,
    pub unit: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EquipmentMode {
    Production,
    Setup,
    Maintenance,
    Idle,
    Offline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    Pass,
    Scrap,
    Rework,
}

/// An MES event in the current (v2) model.
#[derive(Debug, Clone, PartialEq)]
pub enum MesEvent {
    WorkOrderReleased {
        work_order: String,
        product: String,
        quantity: Quantity,
        due_us: i64,
        routing: Vec<String>,
    },
    WorkOrderStarted {
        work_order: String,
        asset_id: String,
    },
    WorkOrderHeld {
        work_order: String,
        asset_id: Option<String>,
        reason: String,
    },
    WorkOrderCompleted {
        work_order: String,
        good_count: u64,
        scrap_count: u64,
    },
    OperationStarted {
        work_order: String,
        operation: u32,
        asset_id: String,
    },
    OperationCompleted {
        work_order: String,
        operation: u32,
        asset_id: String,
        good_count: u64,
        scrap_count: u64,
    },
    EquipmentModeChanged {
        asset_id: String,
        mode: EquipmentMode,
    },
    MaterialIssued {
        work_order: String,
        material: String,
        lot: String,
        quantity: Quantity,
    },
    QualityDisposition {
        work_order: String,
        serial: String,
        asset_id: Option<String>,
        disposition: Disposition,
        defect_codes: Vec<String>,
    },
}

impl MesEvent {
    /// The work order the event is about, if any.
    pub fn work_order(&self) -> Option<&str> {
        use MesEvent::*;
        match self {
            WorkOrderReleased { work_order, .. }
            | WorkOrderStarted { work_order, .. }
            | WorkOrderHeld { work_order, .. }
            | WorkOrderCompleted { work_order, .. }
            | OperationStarted { work_order, .. }
            | OperationCompleted { work_order, .. }
            | MaterialIssued { work_order, .. }
            | QualityDisposition { work_order, .. } => Some(work_order),
            EquipmentModeChanged { .. } => None,
        }
    }

    /// The asset the event is about, if any.
    pub fn asset_id(&self) -> Option<&str> {
        use MesEvent::*;
        match self {
            WorkOrderStarted { asset_id, .. }
            | OperationStarted { asset_id, .. }
            | OperationCompleted { asset_id, .. }
            | EquipmentModeChanged { asset_id, .. } => Some(asset_id),
            WorkOrderHeld { asset_id, .. } | QualityDisposition { asset_id, .. } => {
                asset_id.as_deref()
            }
            _ => None,
        }
    }
}

/// A decoded, validated event with its envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub id: String,
    pub event_type: String,
    /// As sent (e.g. 1.4); the event itself is in the current model.
    pub schema_major: u32,
    pub schema_minor: u32,
    pub source_time_us: i64,
    pub event: MesEvent,
    /// The payload upcast to the current version, as JSON.
    pub payload_v2: Value,
}

/// Compiled schemas, by (event type, major).
pub struct Contract {
    envelope: jsonschema::Validator,
    payloads: HashMap<(String, u32), jsonschema::Validator>,
}

impl std::fmt::Debug for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contract")
            .field("payload_schemas", &self.payloads.len())
            .finish()
    }
}

fn compile(name: &str, text: &str) -> Result<jsonschema::Validator, ContractError> {
    let schema: Value = serde_json::from_str(text).map_err(|e| ContractError::Schema {
        file: name.to_string(),
        message: e.to_string(),
    })?;
    jsonschema::validator_for(&schema).map_err(|e| ContractError::Schema {
        file: name.to_string(),
        message: e.to_string(),
    })
}

/// All problems of `instance` against `v`, as `path: message` lines.
fn problems(v: &jsonschema::Validator, instance: &Value) -> Option<String> {
    let list: Vec<String> = v
        .iter_errors(instance)
        .map(|e| {
            let path = e.instance_path().to_string();
            if path.is_empty() {
                e.to_string()
            } else {
                format!("{path}: {e}")
            }
        })
        .collect();
    (!list.is_empty()).then(|| list.join("; "))
}

impl Contract {
    /// Compiles the shipped schemas.
    pub fn load() -> Result<Self, ContractError> {
        let mut envelope = None;
        let mut payloads = HashMap::new();
        for (name, text) in SCHEMA_FILES {
            let v = compile(name, text)?;
            if *name == "envelope.schema.json" {
                envelope = Some(v);
                continue;
            }
            let stem = name.trim_end_matches(".schema.json");
            let (ty, major) = stem
                .rsplit_once(".v")
                .and_then(|(t, m)| Some((t.to_string(), m.parse::<u32>().ok()?)))
                .ok_or_else(|| ContractError::Schema {
                    file: name.to_string(),
                    message: "name is not <type>.v<major>.schema.json".into(),
                })?;
            payloads.insert((ty, major), v);
        }
        Ok(Self {
            envelope: envelope.ok_or_else(|| ContractError::Schema {
                file: "envelope.schema.json".into(),
                message: "missing".into(),
            })?,
            payloads,
        })
    }

    /// Decodes and validates one event; `source` (topic or URL) goes into
    /// the error so an operator can find the sender.
    pub fn decode(&self, bytes: &[u8], source: &str) -> Result<Envelope, ContractError> {
        let raw: Value = serde_json::from_slice(bytes).map_err(|e| ContractError::NotJson {
            source_name: source.to_string(),
            message: e.to_string(),
        })?;
        self.decode_value(&raw, source)
    }

    pub fn decode_value(&self, raw: &Value, source: &str) -> Result<Envelope, ContractError> {
        if let Some(p) = problems(&self.envelope, raw) {
            return Err(ContractError::Envelope {
                source_name: source.to_string(),
                message: p,
            });
        }
        let field = |k: &str| raw.get(k).and_then(Value::as_str).unwrap_or_default();
        let id = field("id").to_string();
        let event_type = field("type").to_string();
        let version = field("schema_version");
        let (major, minor) = version
            .split_once('.')
            .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
            .unwrap_or((0, 0));
        let source_time_us = field("source_time")
            .parse::<jiff::Timestamp>()
            .map_err(|e| ContractError::Envelope {
                source_name: source.to_string(),
                message: format!("source_time `{}`: {e}", field("source_time")),
            })?
            .as_microsecond();
        if !EVENT_TYPES.contains(&event_type.as_str()) {
            return Err(ContractError::UnknownType {
                id,
                event_type,
                source_name: source.to_string(),
            });
        }
        let Some(schema) = self.payloads.get(&(event_type.clone(), major)) else {
            return Err(ContractError::UnsupportedVersion {
                id,
                event_type,
                version: version.to_string(),
                accepted: ACCEPTED_MAJORS
                    .iter()
                    .map(|m| format!("{m}.x"))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        let payload = raw.get("payload").cloned().unwrap_or(Value::Null);
        if let Some(p) = problems(schema, &payload) {
            return Err(ContractError::Payload {
                id,
                event_type,
                version: version.to_string(),
                message: p,
            });
        }
        let payload_v2 = if major == CURRENT_MAJOR {
            payload
        } else {
            let up = upcast_v1(&event_type, &payload).map_err(|message| ContractError::Upcast {
                id: id.clone(),
                event_type: event_type.clone(),
                message,
            })?;
            let current = &self.payloads[&(event_type.clone(), CURRENT_MAJOR)];
            if let Some(p) = problems(current, &up) {
                return Err(ContractError::Upcast {
                    id,
                    event_type,
                    message: format!("the upcast payload does not match v{CURRENT_MAJOR}: {p}"),
                });
            }
            up
        };
        let event = typed(&event_type, &payload_v2).map_err(|message| ContractError::Payload {
            id: id.clone(),
            event_type: event_type.clone(),
            version: version.to_string(),
            message,
        })?;
        Ok(Envelope {
            id,
            event_type,
            schema_major: major,
            schema_minor: minor,
            source_time_us,
            event,
            payload_v2,
        })
    }
}

/// Maps a validated v1 payload to the v2 shape.
pub fn upcast_v1(event_type: &str, p: &Value) -> Result<Value, String> {
    let s = |k: &str| -> Result<Value, String> {
        p.get(k)
            .cloned()
            .ok_or_else(|| format!("v1 field `{k}` missing"))
    };
    let opt = |k: &str| p.get(k).cloned();
    let with_opt = |mut v: Value, k2: &str, val: Option<Value>| {
        if let (Some(x), Some(o)) = (val, v.as_object_mut()) {
            o.insert(k2.to_string(), x);
        }
        v
    };
    Ok(match event_type {
        "work_order.released" => {
            let route = s("route")?;
            let routing: Vec<Value> = route
                .as_str()
                .unwrap_or_default()
                .split('>')
                .map(|a| Value::String(a.to_string()))
                .collect();
            // A v1 due date is a day: the order is due by its end, not its
            // start (v1 names no zone; UTC).
            let due = format!("{}T23:59:59Z", s("due_date")?.as_str().unwrap_or_default());
            json!({"work_order": s("wo")?, "product": s("part_no")?,
                   "quantity": {"value": s("qty")?, "unit": "count"},
                   "due": due, "routing": routing})
        }
        "work_order.started" => json!({"work_order": s("wo")?, "asset_id": s("equipment")?}),
        "work_order.held" => with_opt(
            json!({"work_order": s("wo")?, "reason": s("hold_reason")?}),
            "asset_id",
            opt("equipment"),
        ),
        "work_order.completed" => {
            json!({"work_order": s("wo")?, "good_count": s("good")?, "scrap_count": s("scrap")?})
        }
        "operation.started" | "operation.completed" => {
            // v1 numbers operations 10, 20, 30 …; v2 counts 1, 2, 3 …
            let seq = s("op_seq")?
                .as_u64()
                .ok_or("op_seq is not a whole number")?;
            let mut v =
                json!({"work_order": s("wo")?, "operation": seq / 10, "asset_id": s("equipment")?});
            if event_type == "operation.completed"
                && let Some(o) = v.as_object_mut()
            {
                o.insert("good_count".into(), s("good")?);
                o.insert("scrap_count".into(), s("scrap")?);
            }
            v
        }
        "equipment.mode_changed" => json!({
            "asset_id": s("equipment")?,
            "mode": s("mode")?.as_str().unwrap_or_default().to_ascii_lowercase(),
        }),
        "material.issued" => json!({
            "work_order": s("wo")?, "material": s("item")?, "lot": s("lot")?,
            "quantity": {"value": s("qty")?, "unit": s("uom")?},
        }),
        "quality.disposition" => {
            let disposition = match s("result")?.as_str().unwrap_or_default() {
                "OK" => "pass",
                "NOK" => "scrap",
                "REWORK" => "rework",
                other => return Err(format!("v1 result `{other}` has no v2 disposition")),
            };
            let defects: Vec<Value> = s("defects")?
                .as_str()
                .unwrap_or_default()
                .split(',')
                .filter(|d| !d.is_empty())
                .map(|d| Value::String(d.to_string()))
                .collect();
            with_opt(
                json!({"work_order": s("wo")?, "serial": s("serial")?,
                       "disposition": disposition, "defect_codes": defects}),
                "asset_id",
                opt("equipment"),
            )
        }
        other => return Err(format!("no upcaster for `{other}`")),
    })
}

/// Types a validated v2 payload.
fn typed(event_type: &str, p: &Value) -> Result<MesEvent, String> {
    fn get<T: serde::de::DeserializeOwned>(p: &Value, k: &str) -> Result<T, String> {
        serde_json::from_value(p.get(k).cloned().unwrap_or(Value::Null))
            .map_err(|e| format!("{k}: {e}"))
    }
    fn opt<T: serde::de::DeserializeOwned>(p: &Value, k: &str) -> Result<Option<T>, String> {
        match p.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| format!("{k}: {e}")),
        }
    }
    Ok(match event_type {
        "work_order.released" => {
            let due: String = get(p, "due")?;
            MesEvent::WorkOrderReleased {
                work_order: get(p, "work_order")?,
                product: get(p, "product")?,
                quantity: get(p, "quantity")?,
                due_us: due
                    .parse::<jiff::Timestamp>()
                    .map_err(|e| format!("due `{due}`: {e}"))?
                    .as_microsecond(),
                routing: get(p, "routing")?,
            }
        }
        "work_order.started" => MesEvent::WorkOrderStarted {
            work_order: get(p, "work_order")?,
            asset_id: get(p, "asset_id")?,
        },
        "work_order.held" => MesEvent::WorkOrderHeld {
            work_order: get(p, "work_order")?,
            asset_id: opt(p, "asset_id")?,
            reason: get(p, "reason")?,
        },
        "work_order.completed" => MesEvent::WorkOrderCompleted {
            work_order: get(p, "work_order")?,
            good_count: get(p, "good_count")?,
            scrap_count: get(p, "scrap_count")?,
        },
        "operation.started" => MesEvent::OperationStarted {
            work_order: get(p, "work_order")?,
            operation: get(p, "operation")?,
            asset_id: get(p, "asset_id")?,
        },
        "operation.completed" => MesEvent::OperationCompleted {
            work_order: get(p, "work_order")?,
            operation: get(p, "operation")?,
            asset_id: get(p, "asset_id")?,
            good_count: get(p, "good_count")?,
            scrap_count: get(p, "scrap_count")?,
        },
        "equipment.mode_changed" => MesEvent::EquipmentModeChanged {
            asset_id: get(p, "asset_id")?,
            mode: get(p, "mode")?,
        },
        "material.issued" => MesEvent::MaterialIssued {
            work_order: get(p, "work_order")?,
            material: get(p, "material")?,
            lot: get(p, "lot")?,
            quantity: get(p, "quantity")?,
        },
        "quality.disposition" => MesEvent::QualityDisposition {
            work_order: get(p, "work_order")?,
            serial: get(p, "serial")?,
            asset_id: opt(p, "asset_id")?,
            disposition: get(p, "disposition")?,
            defect_codes: get(p, "defect_codes")?,
        },
        other => return Err(format!("no model for `{other}`")),
    })
}
