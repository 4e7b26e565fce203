//! Genealogy: what made a part, and what a lot or an order made.
//!
//! In: the history file — `part_events` (a part entering a station, from
//! each `part_serial` sample), `work_orders` (what the MES said each machine
//! ran, from when), MES events (`material.issued` for lots,
//! `quality.disposition` by serial) and the measured features (properties
//! with a `<name>_tolerance` in their asset's nominal values). Out: a
//! [`Genealogy`] per serial — its operations in routing order (asset, entry,
//! exit, work order, material lot), its measurements against tolerance,
//! the MES's dispositions — and the serials made from a lot or under an
//! order. A part's operation on an asset runs from its serial's arrival to
//! the next `part_serial` value on that asset.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use duckdb::{Connection, params};

use super::QualityError;
use crate::history::store::PropIds;
use crate::registry::{AssetIdx, AssetRegistry};

/// One operation of a part.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// 1, 2, … in routing (time) order.
    pub seq: usize,
    pub asset_id: String,
    pub start_us: i64,
    /// `None` while the part is still there.
    pub end_us: Option<i64>,
    /// The order the asset ran when the part left it (MES context).
    pub work_order: Option<String>,
    pub material_lot: Option<String>,
}

/// A measured feature against its tolerance.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub asset_id: String,
    pub name: String,
    pub unit: String,
    pub ts_us: i64,
    pub value: f64,
    pub nominal: f64,
    pub tolerance: f64,
    /// A form or position deviation (nominal 0): limited above only.
    pub upper_only: bool,
}

impl Measured {
    /// How far outside tolerance (0 inside), in the feature's unit.
    pub fn excess(&self) -> f64 {
        let d = self.value - self.nominal;
        if self.upper_only {
            (d - self.tolerance).max(0.0)
        } else {
            (d.abs() - self.tolerance).max(0.0)
        }
    }
    pub fn in_tolerance(&self) -> bool {
        self.excess() <= 0.0
    }
}

/// The MES's disposition of a serial.
#[derive(Debug, Clone, PartialEq)]
pub struct DispositionRecord {
    pub ts_us: i64,
    pub work_order: Option<String>,
    /// pass | scrap | rework
    pub disposition: String,
    pub defect_codes: Vec<String>,
}

/// Good, failed, or not known yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Good,
    Failed,
    /// Not measured and not dispositioned (yet).
    Unknown,
}

/// Everything known about one part.
#[derive(Debug, Clone, PartialEq)]
pub struct Genealogy {
    pub serial: String,
    pub operations: Vec<Operation>,
    pub measured: Vec<Measured>,
    pub dispositions: Vec<DispositionRecord>,
}

impl Genealogy {
    pub fn verdict(&self) -> Verdict {
        let bad_disposition = self.dispositions.iter().any(|d| d.disposition != "pass");
        if bad_disposition || self.measured.iter().any(|m| !m.in_tolerance()) {
            Verdict::Failed
        } else if self.measured.is_empty() && self.dispositions.is_empty() {
            Verdict::Unknown
        } else {
            Verdict::Good
        }
    }

    /// The part's order: the first operation's that has one, else the
    /// disposition's.
    pub fn work_order(&self) -> Option<&str> {
        self.operations
            .iter()
            .find_map(|o| o.work_order.as_deref())
            .or_else(|| {
                self.dispositions
                    .iter()
                    .find_map(|d| d.work_order.as_deref())
            })
    }

    pub fn material_lots(&self) -> Vec<&str> {
        let s: BTreeSet<&str> = self
            .operations
            .iter()
            .filter_map(|o| o.material_lot.as_deref())
            .collect();
        s.into_iter().collect()
    }

    /// What is wrong with it, in words.
    pub fn reasons(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .measured
            .iter()
            .filter(|m| !m.in_tolerance())
            .map(|m| {
                format!(
                    "{} {:.4} {} (nominal {:.3}, {}{:.3})",
                    m.name,
                    m.value,
                    m.unit,
                    m.nominal,
                    if m.upper_only { "≤ +" } else { "± " },
                    m.tolerance
                )
            })
            .collect();
        for d in self.dispositions.iter().filter(|d| d.disposition != "pass") {
            v.push(format!(
                "MES: {}{}",
                d.disposition,
                if d.defect_codes.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", d.defect_codes.join(", "))
                }
            ));
        }
        v
    }
}

/// The measured features of the registry: (asset, prop id, name, unit,
/// nominal, tolerance, upper only).
#[derive(Debug, Clone)]
pub struct FeatureDef {
    pub asset: AssetIdx,
    pub asset_id: String,
    pub prop_id: i32,
    pub name: String,
    pub unit: String,
    pub nominal: f64,
    pub tolerance: f64,
    pub upper_only: bool,
}

pub fn feature_defs(registry: &AssetRegistry, props: &PropIds) -> Vec<FeatureDef> {
    let mut out = Vec::new();
    for (ai, a) in registry.assets().iter().enumerate() {
        let asset = AssetIdx(ai as u32);
        for p in &a.properties {
            let Some(tol) = a.nominal.get(&format!("{}_tolerance", p.name)) else {
                continue;
            };
            let nominal = a
                .nominal
                .get(&format!("{}_nominal", p.name))
                .map_or(0.0, |q| q.value);
            let Some(r) = registry.property_by_name(asset, &p.name) else {
                continue;
            };
            let Some(prop_id) = props.id(r) else {
                continue;
            };
            out.push(FeatureDef {
                asset,
                asset_id: a.id.clone(),
                prop_id,
                name: p.name.clone(),
                unit: p.unit.clone(),
                nominal,
                tolerance: tol.value,
                upper_only: nominal == 0.0,
            });
        }
    }
    out
}

/// A string field of an MES event's (v2) payload.
pub(crate) fn payload_str(payload: &str, key: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(payload)
        .ok()?
        .get(key)?
        .as_str()
        .map(str::to_string)
}

pub(crate) fn sql(what: &'static str) -> impl FnOnce(duckdb::Error) -> QualityError {
    move |source| QualityError::Sql { what, source }
}

/// A station's part events in a time range: (ts, serial), time order.
pub(crate) fn station_events(
    conn: &Connection,
    asset_id: &str,
    from_us: i64,
    to_us: i64,
) -> Result<Vec<(i64, String)>, QualityError> {
    let mut st = conn
        .prepare_cached(
            "SELECT ts_us, serial FROM part_events WHERE asset_id = ? AND ts_us >= ? AND ts_us <= ?
             ORDER BY ts_us",
        )
        .map_err(sql("reading part events"))?;
    let rows = st
        .query_map(params![asset_id, from_us, to_us], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(sql("reading part events"))?;
    rows.collect::<Result<_, _>>()
        .map_err(sql("reading part events"))
}

/// The next part event on an asset after `ts_us`.
fn next_event_us(
    conn: &Connection,
    asset_id: &str,
    ts_us: i64,
) -> Result<Option<i64>, QualityError> {
    conn.prepare_cached("SELECT min(ts_us) FROM part_events WHERE asset_id = ? AND ts_us > ?")
        .and_then(|mut st| st.query_row(params![asset_id, ts_us], |r| r.get(0)))
        .map_err(sql("reading part events"))
}

/// The order the MES had on an asset at `ts_us`.
fn work_order_at(
    conn: &Connection,
    asset_id: &str,
    ts_us: i64,
) -> Result<Option<String>, QualityError> {
    conn.prepare_cached(
        "SELECT arg_max(work_order, ts_us) FROM work_orders WHERE asset_id = ? AND ts_us <= ?",
    )
    .and_then(|mut st| st.query_row(params![asset_id, ts_us], |r| r.get(0)))
    .map_err(sql("reading work orders"))
}

/// Lots issued to an order.
fn lots_of(conn: &Connection, work_order: &str) -> Result<Vec<String>, QualityError> {
    let mut st = conn
        .prepare_cached(
            "SELECT payload FROM mes_events WHERE event_type = 'material.issued' AND work_order = ?",
        )
        .map_err(sql("reading material lots"))?;
    let rows = st
        .query_map(params![work_order], |r| r.get::<_, Option<String>>(0))
        .map_err(sql("reading material lots"))?;
    let mut v: Vec<String> = rows
        .filter_map(|r| r.ok().flatten())
        .filter_map(|p| payload_str(&p, "lot"))
        .collect();
    v.sort();
    v.dedup();
    Ok(v)
}

/// Dispositions of a serial.
fn dispositions_of(
    conn: &Connection,
    serial: &str,
) -> Result<Vec<DispositionRecord>, QualityError> {
    // Payloads are JSON text; the serial is matched as a JSON string, then
    // checked in the parsed payload.
    let needle = format!("%{}%", serde_json::Value::String(serial.to_string()));
    let mut st = conn
        .prepare_cached(
            "SELECT ts_us, work_order, payload FROM mes_events
             WHERE event_type = 'quality.disposition' AND payload LIKE ? ORDER BY ts_us",
        )
        .map_err(sql("reading dispositions"))?;
    let rows = st
        .query_map(params![needle], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })
        .map_err(sql("reading dispositions"))?;
    let mut out = Vec::new();
    for r in rows {
        let (ts_us, work_order, payload) = r.map_err(sql("reading dispositions"))?;
        let Some(v) = payload.and_then(|p| serde_json::from_str::<serde_json::Value>(&p).ok())
        else {
            continue;
        };
        if v.get("serial").and_then(|s| s.as_str()) != Some(serial) {
            continue;
        }
        out.push(DispositionRecord {
            ts_us,
            work_order,
            disposition: v
                .get("disposition")
                .and_then(|d| d.as_str())
                .unwrap_or_default()
                .to_string(),
            defect_codes: v
                .get("defect_codes")
                .and_then(|c| c.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    Ok(out)
}

/// Feature values recorded on `asset_id` in `(from_us, to_us]`.
pub(crate) fn features_in(
    conn: &Connection,
    defs: &[FeatureDef],
    asset_id: &str,
    from_us: i64,
    to_us: i64,
) -> Result<Vec<Measured>, QualityError> {
    let mine: Vec<&FeatureDef> = defs.iter().filter(|d| d.asset_id == asset_id).collect();
    if mine.is_empty() {
        return Ok(Vec::new());
    }
    let ids = mine
        .iter()
        .map(|d| d.prop_id.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut st = conn
        .prepare(&format!(
            "SELECT ts_us, prop_id, value FROM samples
             WHERE prop_id IN ({ids}) AND ts_us > ? AND ts_us <= ? AND value IS NOT NULL
             ORDER BY ts_us"
        ))
        .map_err(sql("reading measurements"))?;
    let rows = st
        .query_map(params![from_us, to_us], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i32>(1)?,
                r.get::<_, f64>(2)?,
            ))
        })
        .map_err(sql("reading measurements"))?;
    let mut out = Vec::new();
    for r in rows {
        let (ts_us, id, value) = r.map_err(sql("reading measurements"))?;
        if let Some(d) = mine.iter().find(|d| d.prop_id == id) {
            out.push(Measured {
                asset_id: asset_id.to_string(),
                name: d.name.clone(),
                unit: d.unit.clone(),
                ts_us,
                value,
                nominal: d.nominal,
                tolerance: d.tolerance,
                upper_only: d.upper_only,
            });
        }
    }
    Ok(out)
}

/// The genealogy of one serial; an unknown serial is an error naming it.
pub fn part(
    conn: &Connection,
    registry: &AssetRegistry,
    props: &PropIds,
    serial: &str,
) -> Result<Genealogy, QualityError> {
    let serial = serial.trim();
    if serial.is_empty() {
        return Err(QualityError::UnknownSerial(String::new()));
    }
    let mut st = conn
        .prepare_cached(
            "SELECT asset_id, min(ts_us) FROM part_events WHERE serial = ?
             GROUP BY asset_id ORDER BY 2",
        )
        .map_err(sql("reading part events"))?;
    let entries: Vec<(String, i64)> = st
        .query_map(params![serial], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(sql("reading part events"))?
        .collect::<Result<_, _>>()
        .map_err(sql("reading part events"))?;
    let dispositions = dispositions_of(conn, serial)?;
    if entries.is_empty() && dispositions.is_empty() {
        return Err(QualityError::UnknownSerial(serial.to_string()));
    }
    let defs = feature_defs(registry, props);
    let mut operations = Vec::new();
    let mut measured = Vec::new();
    let mut lots_by_wo: HashMap<String, Vec<String>> = HashMap::new();
    for (k, (asset_id, start_us)) in entries.into_iter().enumerate() {
        let end_us = next_event_us(conn, &asset_id, start_us)?;
        let work_order = match end_us {
            Some(e) => work_order_at(conn, &asset_id, e)?,
            None => work_order_at(conn, &asset_id, start_us)?,
        };
        let material_lot = match &work_order {
            Some(w) => {
                if !lots_by_wo.contains_key(w) {
                    lots_by_wo.insert(w.clone(), lots_of(conn, w)?);
                }
                lots_by_wo.get(w).and_then(|l| l.first().cloned())
            }
            None => None,
        };
        if let Some(e) = end_us {
            measured.extend(features_in(conn, &defs, &asset_id, start_us, e)?);
        }
        operations.push(Operation {
            seq: k + 1,
            asset_id,
            start_us,
            end_us,
            work_order,
            material_lot,
        });
    }
    Ok(Genealogy {
        serial: serial.to_string(),
        operations,
        measured,
        dispositions,
    })
}

/// Serials made under an order: parts that left the order's machine while
/// the MES had the order on it, and parts the MES dispositioned under it.
pub fn parts_of_work_order(
    conn: &Connection,
    work_order: &str,
) -> Result<Vec<String>, QualityError> {
    // The order's spells on each asset: from its row in `work_orders` to
    // the next row for that asset.
    let mut st = conn
        .prepare_cached(
            "WITH w AS (SELECT asset_id, ts_us, work_order,
                               lead(ts_us) OVER (PARTITION BY asset_id ORDER BY ts_us) AS until_us
                        FROM work_orders)
             SELECT asset_id, ts_us, until_us FROM w WHERE work_order = ?",
        )
        .map_err(sql("reading work orders"))?;
    let spells: Vec<(String, i64, Option<i64>)> = st
        .query_map(params![work_order], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .map_err(sql("reading work orders"))?
        .collect::<Result<_, _>>()
        .map_err(sql("reading work orders"))?;
    let mut serials = BTreeSet::new();
    for (asset_id, from_us, until_us) in spells {
        // A part belongs to the spell its exit falls in: look from a little
        // before (it may have entered earlier) to the spell's end.
        let to = until_us.unwrap_or(i64::MAX / 2);
        let events = station_events(conn, &asset_id, from_us - 86_400_000_000, to)?;
        for w in events.windows(2) {
            let ((_, s), (end, _)) = (&w[0], &w[1]);
            if !s.is_empty() && *end > from_us && *end <= to {
                serials.insert(s.clone());
            }
        }
    }
    let mut st = conn
        .prepare_cached(
            "SELECT payload FROM mes_events
             WHERE event_type = 'quality.disposition' AND work_order = ?",
        )
        .map_err(sql("reading dispositions"))?;
    let rows = st
        .query_map(params![work_order], |r| r.get::<_, Option<String>>(0))
        .map_err(sql("reading dispositions"))?;
    for p in rows.flatten().flatten() {
        if let Some(s) = payload_str(&p, "serial") {
            serials.insert(s);
        }
    }
    Ok(serials.into_iter().collect())
}

/// Orders a lot was issued to.
pub fn work_orders_of_lot(conn: &Connection, lot: &str) -> Result<Vec<String>, QualityError> {
    let needle = format!("%{}%", serde_json::Value::String(lot.to_string()));
    let mut st = conn
        .prepare_cached(
            "SELECT work_order, payload FROM mes_events
             WHERE event_type = 'material.issued' AND payload LIKE ? AND work_order IS NOT NULL",
        )
        .map_err(sql("reading material lots"))?;
    let rows = st
        .query_map(params![needle], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
        })
        .map_err(sql("reading material lots"))?;
    let mut v: Vec<String> = rows
        .filter_map(|r| r.ok())
        .filter(|(_, p)| p.as_deref().and_then(|p| payload_str(p, "lot")).as_deref() == Some(lot))
        .map(|(w, _)| w)
        .collect();
    v.sort();
    v.dedup();
    Ok(v)
}

/// Every part made from a lot: (order, serials).
pub fn parts_of_lot(
    conn: &Connection,
    lot: &str,
) -> Result<BTreeMap<String, Vec<String>>, QualityError> {
    let mut out = BTreeMap::new();
    for wo in work_orders_of_lot(conn, lot)? {
        let parts = parts_of_work_order(conn, &wo)?;
        out.insert(wo, parts);
    }
    if out.is_empty() {
        return Err(QualityError::UnknownLot(lot.to_string()));
    }
    Ok(out)
}
