//! Read queries over the history file: a connection and a question in,
//! plain rows out. Bevy-free; run on reader threads (never the UI thread).
//!
//! - [`state_at`]: every property's last value at T, each asset's machine
//!   state and work order at T — from the newest keyframe at or before T
//!   plus the samples after it, so the scan is bounded whatever the size.
//! - [`buckets`]: min / avg / max per bucket over a range, from the 1 s or
//!   1 min rollups (plus the few samples not rolled up yet) when the bucket
//!   width allows, else from raw samples.
//! - [`transitions`], [`markers`], [`next_marker`], [`bookmarks`], [`raw_samples`].

use std::collections::HashMap;

use crate::history::writer::{VTYPE_BOOL, VTYPE_INT};

use duckdb::{Connection, params};

mod buckets;

pub use buckets::{Bucket, BucketSource, buckets};

use super::store::PropIds;
use super::{HistoryError, origin_from_code, quality_from_code, sql_err as q};
use crate::ingest::{Origin, Quality};
use crate::twin::DOWN_CODES;

/// A value as stored.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredValue {
    /// A boolean as the source sent it.
    Bool(bool),
    /// A 64-bit integer a double cannot hold exactly.
    Integer(i64),
    Number(f64),
    Text(String),
    Spectrum {
        blob_id: i64,
        bin_hz: f32,
        bins: Vec<f32>,
    },
    Missing,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PropValue {
    pub prop_id: i32,
    pub value_ts_us: i64,
    pub value: StoredValue,
    pub quality: Quality,
    pub origin: Origin,
    /// Sent late from the source's buffer (Sparkplug `is_historical`).
    pub historical: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AssetStateAt {
    pub asset_id: String,
    pub state: String,
    pub reason: Option<String>,
    pub since_ts_us: i64,
}

/// The plant as recorded at one instant.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StateAt {
    pub t_us: i64,
    pub values: Vec<PropValue>,
    pub states: Vec<AssetStateAt>,
    /// Asset id → the work order it was running (None: none).
    pub work_orders: HashMap<String, Option<String>>,
}

/// Every property's last value at or before `t_us`, plus machine states and
/// work orders. Spectra are read back with their bins. Only the properties
/// of `props` (the registry the file was opened with) are answered: rows
/// of properties the registry no longer has stay in the file, unread.
pub fn state_at(conn: &Connection, props: &PropIds, t_us: i64) -> Result<StateAt, HistoryError> {
    let kf: Option<i64> = conn
        .query_row(
            "SELECT max(ts_us) FROM keyframes WHERE ts_us <= ?",
            params![t_us],
            |r| r.get(0),
        )
        .map_err(q("finding the keyframe"))?;
    let mut by_prop: HashMap<i32, PropValue> = HashMap::new();
    type Row = (
        i32,
        i64,
        Option<f64>,
        Option<String>,
        Option<i64>,
        u8,
        u8,
        Option<bool>,
        Option<i64>,
        Option<u8>,
    );
    let read = |r: &duckdb::Row<'_>| -> duckdb::Result<Row> {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
            r.get(8)?,
            r.get(9)?,
        ))
    };
    let mut rows: Vec<Row> = Vec::new();
    if let Some(k) = kf {
        let mut st = conn
            .prepare(
                "SELECT prop_id, value_ts_us, value, text, blob_id, quality, origin, NULL::BOOLEAN,
                        ivalue, vtype
                 FROM keyframes WHERE ts_us = ?",
            )
            .map_err(q("reading the keyframe"))?;
        for r in st
            .query_map(params![k], read)
            .map_err(q("reading the keyframe"))?
        {
            rows.push(r.map_err(q("reading the keyframe"))?);
        }
    }
    {
        let mut st = conn
            .prepare(
                "SELECT prop_id, max(ts_us), arg_max_null(value, ts_us), arg_max_null(text, ts_us),
                        arg_max_null(blob_id, ts_us), arg_max(quality, ts_us), arg_max(origin, ts_us),
                        arg_max_null(historical, ts_us), arg_max_null(ivalue, ts_us),
                        arg_max_null(vtype, ts_us)
                 FROM samples WHERE ts_us > ? AND ts_us <= ? GROUP BY prop_id",
            )
            .map_err(q("reading samples after the keyframe"))?;
        for r in st
            .query_map(params![kf.unwrap_or(i64::MIN), t_us], read)
            .map_err(q("reading samples after the keyframe"))?
        {
            rows.push(r.map_err(q("reading samples after the keyframe"))?);
        }
    }
    for (prop_id, ts, value, text, blob_id, quality, origin, historical, ivalue, vtype) in rows {
        if props.property(prop_id).is_none()
            || by_prop.get(&prop_id).is_some_and(|v| v.value_ts_us > ts)
        {
            continue;
        }
        let value = match (value, text, blob_id) {
            (Some(v), _, _) => match (vtype, ivalue) {
                (Some(VTYPE_BOOL), _) => StoredValue::Bool(v != 0.0),
                (Some(VTYPE_INT), Some(i)) => StoredValue::Integer(i),
                _ => StoredValue::Number(v),
            },
            (_, Some(t), _) => StoredValue::Text(t),
            (_, _, Some(id)) => StoredValue::Spectrum {
                blob_id: id,
                bin_hz: 0.0,
                bins: Vec::new(),
            },
            _ => StoredValue::Missing,
        };
        by_prop.insert(
            prop_id,
            PropValue {
                prop_id,
                value_ts_us: ts,
                value,
                quality: quality_from_code(quality),
                origin: origin_from_code(origin),
                historical: historical == Some(true),
            },
        );
    }
    let mut values: Vec<PropValue> = by_prop.into_values().collect();
    values.sort_by_key(|v| v.prop_id);
    for v in &mut values {
        if let StoredValue::Spectrum {
            blob_id,
            bin_hz,
            bins,
        } = &mut v.value
            && let Some((hz, b)) = blob(conn, *blob_id)?
        {
            *bin_hz = hz;
            *bins = b;
        }
    }

    let mut states = Vec::new();
    {
        let mut st = conn
            .prepare(
                "SELECT asset_id, arg_max(state, ts_us), arg_max_null(reason, ts_us), max(ts_us)
                 FROM transitions WHERE ts_us <= ? GROUP BY asset_id ORDER BY asset_id",
            )
            .map_err(q("reading states"))?;
        for r in st
            .query_map(params![t_us], |r| {
                Ok(AssetStateAt {
                    asset_id: r.get(0)?,
                    state: r.get(1)?,
                    reason: r.get(2)?,
                    since_ts_us: r.get(3)?,
                })
            })
            .map_err(q("reading states"))?
        {
            states.push(r.map_err(q("reading states"))?);
        }
    }
    let mut work_orders = HashMap::new();
    {
        let mut st = conn
            .prepare(
                "SELECT asset_id, arg_max_null(work_order, ts_us) FROM work_orders
                 WHERE ts_us <= ? GROUP BY asset_id",
            )
            .map_err(q("reading work orders"))?;
        for r in st
            .query_map(params![t_us], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
            })
            .map_err(q("reading work orders"))?
        {
            let (a, w) = r.map_err(q("reading work orders"))?;
            work_orders.insert(a, w);
        }
    }
    Ok(StateAt {
        t_us,
        values,
        states,
        work_orders,
    })
}

/// A stored spectrum's bin width and bins.
pub fn blob(conn: &Connection, blob_id: i64) -> Result<Option<(f32, Vec<f32>)>, HistoryError> {
    let row: Option<(f32, Vec<u8>)> = match conn.query_row(
        "SELECT bin_hz, bins_f32le FROM blobs WHERE blob_id = ?",
        params![blob_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    ) {
        Ok(v) => Some(v),
        Err(duckdb::Error::QueryReturnedNoRows) => None,
        Err(source) => {
            return Err(HistoryError::Sql {
                what: "reading a spectrum",
                source,
            });
        }
    };
    Ok(row.map(|(hz, bytes)| (hz, spectrum_bins(&bytes))))
}

/// A stored spectrum's bins (`blobs.bins_f32le`: little-endian f32 each).
pub fn spectrum_bins(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// One stored sample: source time, number, text.
pub type RawSample = (i64, Option<f64>, Option<String>);

/// Raw samples of one property in `[from_us, to_us)`, oldest first.
pub fn raw_samples(
    conn: &Connection,
    prop_id: i32,
    from_us: i64,
    to_us: i64,
) -> Result<Vec<RawSample>, HistoryError> {
    let mut st = conn
        .prepare(
            "SELECT ts_us, value, text FROM samples WHERE prop_id = ? AND ts_us >= ? AND ts_us < ?
             ORDER BY ts_us",
        )
        .map_err(q("reading samples"))?;
    let rows = st
        .query_map(params![prop_id, from_us, to_us], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .map_err(q("reading samples"))?;
    rows.collect::<Result<_, _>>().map_err(q("reading samples"))
}

/// A machine state from `ts_us` on.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub ts_us: i64,
    pub state: String,
    pub reason: Option<String>,
}

/// The transitions of one asset in `[from_us, to_us]`, preceded by the one
/// in effect at `from_us` (if any), oldest first.
pub fn transitions(
    conn: &Connection,
    asset_id: &str,
    from_us: i64,
    to_us: i64,
) -> Result<Vec<Transition>, HistoryError> {
    let mut st = conn
        .prepare(
            "(SELECT ts_us, state, reason FROM transitions WHERE asset_id = ? AND ts_us <= ?
              ORDER BY ts_us DESC LIMIT 1)
             UNION ALL
             (SELECT ts_us, state, reason FROM transitions WHERE asset_id = ? AND ts_us > ? AND ts_us <= ?)
             ORDER BY ts_us",
        )
        .map_err(q("reading transitions"))?;
    let rows = st
        .query_map(params![asset_id, from_us, asset_id, from_us, to_us], |r| {
            Ok(Transition {
                ts_us: r.get(0)?,
                state: r.get(1)?,
                reason: r.get(2)?,
            })
        })
        .map_err(q("reading transitions"))?;
    rows.collect::<Result<_, _>>()
        .map_err(q("reading transitions"))
}

/// Kinds of timeline marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MarkerKind {
    Breakdown,
    MesEvent,
    Discrepancy,
    QualityHold,
    Bookmark,
    MesOutage,
}

impl MarkerKind {
    fn parse(s: &str) -> Self {
        match s {
            "breakdown" => MarkerKind::Breakdown,
            "discrepancy" => MarkerKind::Discrepancy,
            "hold" => MarkerKind::QualityHold,
            "bookmark" => MarkerKind::Bookmark,
            "mes_outage" => MarkerKind::MesOutage,
            _ => MarkerKind::MesEvent,
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            MarkerKind::Breakdown => "breakdown",
            MarkerKind::MesEvent => "MES event",
            MarkerKind::Discrepancy => "discrepancy",
            MarkerKind::QualityHold => "quality hold",
            MarkerKind::Bookmark => "bookmark",
            MarkerKind::MesOutage => "MES outage",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub ts_us: i64,
    pub kind: MarkerKind,
    pub asset_id: Option<String>,
    pub text: String,
}

/// Every marker, as one query: breakdowns (any state code the twin reads
/// as down), MES events, discrepancies, bookmarks, outages.
fn markers_sql() -> String {
    let down: Vec<String> = DOWN_CODES.iter().map(|c| format!("'{c}'")).collect();
    format!(
        "
    SELECT ts_us, 'breakdown' AS kind, asset_id, coalesce(reason, state) AS text
      FROM transitions WHERE lower(trim(state)) IN ({})
    UNION ALL
    SELECT ts_us, CASE WHEN lower(event_type) LIKE '%hold%' THEN 'hold' ELSE 'mes' END,
           asset_id, event_type FROM mes_events
    UNION ALL
    SELECT ts_us, 'discrepancy', asset_id, rule FROM discrepancies
    UNION ALL
    SELECT ts_us, 'bookmark', NULL, name FROM bookmarks
    UNION ALL
    SELECT start_us, 'mes_outage', NULL, 'MES unreachable: context unavailable' FROM mes_outages
    UNION ALL
    SELECT end_us, 'mes_outage', NULL,
           'MES back; ' || coalesce(backfilled_rows, 0) || ' samples back-filled'
      FROM mes_outages WHERE end_us IS NOT NULL",
        down.join(", ")
    )
}

/// One row of [`markers_sql`].
fn marker_row(r: &duckdb::Row<'_>) -> duckdb::Result<Marker> {
    Ok(Marker {
        ts_us: r.get(0)?,
        kind: MarkerKind::parse(&r.get::<_, String>(1)?),
        asset_id: r.get(2)?,
        text: r.get(3)?,
    })
}

/// Timeline markers in `[from_us, to_us]`, oldest first, at most `limit`.
pub fn markers(
    conn: &Connection,
    from_us: i64,
    to_us: i64,
    limit: usize,
) -> Result<Vec<Marker>, HistoryError> {
    let sql = format!(
        "SELECT * FROM ({}) WHERE ts_us >= ? AND ts_us <= ? ORDER BY ts_us LIMIT ?",
        markers_sql()
    );
    let mut st = conn.prepare(&sql).map_err(q("reading markers"))?;
    let rows = st
        .query_map(params![from_us, to_us, limit as i64], marker_row)
        .map_err(q("reading markers"))?;
    rows.collect::<Result<_, _>>().map_err(q("reading markers"))
}

/// The first marker strictly after (or, backwards, before) `t_us`.
pub fn next_marker(
    conn: &Connection,
    t_us: i64,
    forward: bool,
) -> Result<Option<Marker>, HistoryError> {
    let sql = if forward {
        format!(
            "SELECT * FROM ({}) WHERE ts_us > ? ORDER BY ts_us LIMIT 1",
            markers_sql()
        )
    } else {
        format!(
            "SELECT * FROM ({}) WHERE ts_us < ? ORDER BY ts_us DESC LIMIT 1",
            markers_sql()
        )
    };
    let mut st = conn.prepare(&sql).map_err(q("finding the next marker"))?;
    let mut rows = st
        .query_map(params![t_us], marker_row)
        .map_err(q("finding the next marker"))?;
    rows.next()
        .transpose()
        .map_err(q("finding the next marker"))
}

/// Every bookmark, oldest first.
pub fn bookmarks(conn: &Connection) -> Result<Vec<(i64, String)>, HistoryError> {
    let mut st = conn
        .prepare("SELECT ts_us, name FROM bookmarks ORDER BY ts_us")
        .map_err(q("reading bookmarks"))?;
    let rows = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(q("reading bookmarks"))?;
    rows.collect::<Result<_, _>>()
        .map_err(q("reading bookmarks"))
}

/// Source-time range of all samples.
pub fn recorded_range(conn: &Connection) -> Result<Option<(i64, i64)>, HistoryError> {
    let (a, b): (Option<i64>, Option<i64>) = conn
        .query_row("SELECT min(ts_us), max(ts_us) FROM samples", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(q("reading the recorded range"))?;
    Ok(a.zip(b))
}

/// Ids of the most recent MES events recorded (newest first), to seed the
/// seen-id set after a restart so a re-sent event is still recognised.
pub fn recent_mes_event_ids(conn: &Connection, limit: usize) -> Result<Vec<String>, HistoryError> {
    let mut st = conn
        .prepare("SELECT event_id FROM mes_events ORDER BY received_us DESC LIMIT ?")
        .map_err(q("reading MES event ids"))?;
    let rows = st
        .query_map(params![limit as i64], |r| r.get(0))
        .map_err(q("reading MES event ids"))?;
    rows.collect::<Result<_, _>>()
        .map_err(q("reading MES event ids"))
}

/// One recorded step of a discrepancy's life (a `discrepancies` row).
#[derive(Debug, Clone, PartialEq)]
pub struct DiscrepancyRow {
    pub ts_us: i64,
    pub discrepancy_id: String,
    pub asset_id: Option<String>,
    pub rule: String,
    pub status: String,
    pub detail: String,
}

/// Every step of the discrepancies not resolved yet, oldest first, so a
/// restart shows what is still open.
pub fn unresolved_discrepancies(conn: &Connection) -> Result<Vec<DiscrepancyRow>, HistoryError> {
    let what = "reading open discrepancies";
    let mut st = conn
        .prepare(
            "SELECT ts_us, discrepancy_id, asset_id, rule, status, detail FROM discrepancies
             WHERE discrepancy_id IN (
               SELECT discrepancy_id FROM discrepancies GROUP BY discrepancy_id
               HAVING arg_max(status, ts_us) <> 'resolved')
             ORDER BY ts_us, rowid",
        )
        .map_err(q(what))?;
    let rows = st
        .query_map([], |r| {
            Ok(DiscrepancyRow {
                ts_us: r.get(0)?,
                discrepancy_id: r.get(1)?,
                asset_id: r.get(2)?,
                rule: r.get(3)?,
                status: r.get(4)?,
                detail: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
            })
        })
        .map_err(q(what))?;
    rows.collect::<Result<_, _>>().map_err(q(what))
}

/// The newest production schedule stated (polled or imported) at or
/// before `at_us`: the schedule, where it came from and when it was stated.
pub fn schedule_at(
    conn: &Connection,
    at_us: i64,
) -> Result<Option<(crate::contract::Schedule, String, i64)>, HistoryError> {
    let newest: Option<(String, String, i64)> = conn
        .query_row(
            "SELECT schedule_id, source, imported_us FROM schedules WHERE imported_us <= ?
             ORDER BY imported_us DESC, schedule_id DESC LIMIT 1",
            params![at_us],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map(Some)
        .or_else(|e| match e {
            duckdb::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })
        .map_err(q("schedule at"))?;
    let Some((id, source, stated_us)) = newest else {
        return Ok(None);
    };
    let mut st = conn
        .prepare(
            "SELECT work_order, product, quantity, unit, routing, earliest_start_us, latest_end_us
             FROM schedules WHERE schedule_id = ? ORDER BY earliest_start_us NULLS LAST, work_order",
        )
        .map_err(q("schedule at"))?;
    let rows = st
        .query_map(params![id], |r| {
            let routing: Option<String> = r.get(4)?;
            Ok(crate::contract::ProductionRequest {
                id: r.get(0)?,
                product: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                quantity: r.get::<_, Option<f64>>(2)?.unwrap_or(0.0),
                unit: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                routing: routing
                    .filter(|s| !s.is_empty())
                    .map(|s| s.split('>').map(str::to_string).collect())
                    .unwrap_or_default(),
                earliest_start_us: r.get(5)?,
                latest_end_us: r.get(6)?,
            })
        })
        .map_err(q("schedule at"))?;
    let requests = rows
        .collect::<Result<Vec<_>, _>>()
        .map_err(q("schedule at"))?;
    Ok(Some((
        crate::contract::Schedule {
            id,
            published_us: Some(stated_us),
            requests,
        },
        source,
        stated_us,
    )))
}
