//! A machine's OEE inputs for a period, read from the history file: its
//! state segments (the transition in effect at the start, then each one
//! in the period; the last runs to the end of the recording, not past it),
//! its part and scrap counter readings (the last one before the period as
//! the baseline) and its ideal cycle time (the registry's nominal
//! `ideal_cycle_time`; the MES contract carries none per operation).

use duckdb::{Connection, params};

use super::OeeError;
use super::compute::{MachineInput, Segment};
use crate::history::HistoryError;
use crate::history::query::{raw_samples, transitions};
use crate::history::store::PropIds;
use crate::registry::{AssetIdx, AssetRegistry};
use crate::twin::MachineState;

/// Machines OEE is computed for: assets with an ideal cycle time.
pub fn machines(registry: &AssetRegistry) -> Vec<AssetIdx> {
    registry
        .assets()
        .iter()
        .enumerate()
        .filter(|(_, a)| a.nominal.contains_key("ideal_cycle_time"))
        .map(|(i, _)| AssetIdx(i as u32))
        .collect()
}

/// The nominal ideal cycle time in seconds.
pub fn ideal_cycle_s(registry: &AssetRegistry, asset: AssetIdx) -> Option<f64> {
    let q = registry.get(asset)?.nominal.get("ideal_cycle_time")?;
    Some(match q.unit.as_str() {
        "min" => q.value * 60.0,
        "h" => q.value * 3600.0,
        "ms" => q.value / 1000.0,
        _ => q.value,
    })
}

fn counter(
    conn: &Connection,
    props: &PropIds,
    registry: &AssetRegistry,
    asset: AssetIdx,
    name: &str,
    from_us: i64,
    to_us: i64,
) -> Result<Vec<(i64, f64)>, HistoryError> {
    let Some(pid) = registry
        .property_by_name(asset, name)
        .and_then(|p| props.id(p))
    else {
        return Ok(Vec::new());
    };
    let before: Option<(i64, f64)> = conn
        .query_row(
            "SELECT ts_us, value FROM samples WHERE prop_id = ? AND ts_us < ? AND value IS NOT NULL
             ORDER BY ts_us DESC LIMIT 1",
            params![pid, from_us],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map(Some)
        .or_else(|e| match e {
            duckdb::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })
        .map_err(crate::history::sql_err("reading a counter"))?;
    let mut out: Vec<(i64, f64)> = before.into_iter().collect();
    out.extend(
        raw_samples(conn, pid, from_us, to_us + 1)?
            .into_iter()
            .filter_map(|(t, v, _)| v.map(|v| (t, v))),
    );
    Ok(out)
}

/// Silences of an asset in [from_us, to_us]: (last sample, next sample)
/// pairs further apart than three of its slowest expected periods.
fn silences(
    conn: &Connection,
    props: &PropIds,
    registry: &AssetRegistry,
    asset: AssetIdx,
    from_us: i64,
    to_us: i64,
) -> Result<Vec<(i64, i64)>, HistoryError> {
    let Some(a) = registry.get(asset) else {
        return Ok(Vec::new());
    };
    let ids: Vec<String> = (0..a.properties.len() as u32)
        .filter_map(|p| props.id(crate::registry::PropertyRef { asset, property: p }))
        .map(|i| i.to_string())
        .collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let slowest_ms = a
        .properties
        .iter()
        .filter_map(|p| p.expected_period_ms)
        .max()
        .unwrap_or(60_000);
    let limit_us = 3 * slowest_ms as i64 * 1000;
    let sql = format!(
        "SELECT ts_us, nx FROM (SELECT ts_us, lead(ts_us) OVER (ORDER BY ts_us) AS nx
           FROM samples WHERE prop_id IN ({}) AND ts_us >= ? AND ts_us <= ?)
         WHERE nx - ts_us > ? ORDER BY ts_us",
        ids.join(",")
    );
    let mut st = conn
        .prepare(&sql)
        .map_err(crate::history::sql_err("finding silences"))?;
    let rows = st
        .query_map(params![from_us - limit_us, to_us, limit_us], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        })
        .map_err(crate::history::sql_err("finding silences"))?;
    rows.collect::<Result<Vec<_>, _>>()
        .map_err(crate::history::sql_err("finding silences"))
}

/// The segments with the gaps cut out and marked as no data.
fn cut(segments: Vec<Segment>, gaps: &[(i64, i64)]) -> Vec<Segment> {
    let mut out = Vec::with_capacity(segments.len() + gaps.len() * 2);
    for s in segments {
        let mut pieces = vec![(s.start_us, s.end_us)];
        for &(a, b) in gaps {
            let mut next = Vec::new();
            for (x, y) in pieces {
                if b <= x || a >= y {
                    next.push((x, y));
                } else {
                    if a > x {
                        next.push((x, a));
                    }
                    if b < y {
                        next.push((b, y));
                    }
                }
            }
            pieces = next;
        }
        for (x, y) in pieces {
            out.push(Segment {
                start_us: x,
                end_us: y,
                ..s.clone()
            });
        }
    }
    for &(a, b) in gaps {
        out.push(Segment {
            start_us: a,
            end_us: b,
            state: MachineState::Unknown,
            reason: "no data (the asset was silent)".into(),
        });
    }
    out.sort_by_key(|s| s.start_us);
    out
}

/// One machine's inputs over [from_us, to_us); `recorded_to_us`: the end
/// of the recording (states are not extended past it); `time_scale`: plant
/// seconds per recorded second (the embedded demo compresses time; 1 for a
/// real plant), the nominal cycle time is divided by it.
#[allow(clippy::too_many_arguments)]
pub fn machine_input(
    conn: &Connection,
    props: &PropIds,
    registry: &AssetRegistry,
    asset: AssetIdx,
    from_us: i64,
    to_us: i64,
    recorded_to_us: i64,
    time_scale: f64,
) -> Result<MachineInput, OeeError> {
    let a = registry
        .get(asset)
        .ok_or_else(|| OeeError::Input(format!("no asset {}", asset.0)))?;
    let tr = transitions(conn, &a.id, from_us, to_us)?;
    // Segments keep their whole length (a stop is a micro-stop by its
    // length, not by the part inside the period); the last one ends at the
    // next transition, or the end of the recording.
    let next: Option<i64> = conn
        .query_row(
            "SELECT min(ts_us) FROM transitions WHERE asset_id = ? AND ts_us > ?",
            params![a.id, to_us],
            |r| r.get(0),
        )
        .map_err(crate::history::sql_err("reading transitions"))?;
    let end = next.unwrap_or(recorded_to_us);
    let mut segments = Vec::new();
    for (i, t) in tr.iter().enumerate() {
        let s = t.ts_us;
        let e = tr.get(i + 1).map_or(end, |n| n.ts_us);
        if e > s {
            segments.push(Segment {
                start_us: s,
                end_us: e,
                state: MachineState::parse(&t.state).unwrap_or(MachineState::Unknown),
                reason: t.reason.clone().unwrap_or_default(),
            });
        }
    }
    // Where the asset sent nothing for longer than three of its slowest
    // update periods, the twin did not know its state: no data (a state
    // recorded before is not carried through the silence).
    let gaps = silences(conn, props, registry, asset, from_us, to_us)?;
    if !gaps.is_empty() {
        segments = cut(segments, &gaps);
    }
    Ok(MachineInput {
        asset_id: a.id.clone(),
        ideal_cycle_s: ideal_cycle_s(registry, asset).map(|c| c / time_scale.max(1e-9)),
        ideal_source: if time_scale == 1.0 {
            "registry nominal ideal_cycle_time".into()
        } else {
            format!("registry nominal ideal_cycle_time ÷ the demo's time scale {time_scale}")
        },
        segments,
        part_counter: {
            let parts = counter(conn, props, registry, asset, "part_count", from_us, to_us)?;
            if parts.is_empty() {
                counter(conn, props, registry, asset, "cycle_count", from_us, to_us)?
            } else {
                parts
            }
        },
        scrap_counter: counter(conn, props, registry, asset, "scrap_count", from_us, to_us)?,
    })
}
