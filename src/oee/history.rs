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
use crate::history::query::transitions;
use crate::history::store::PropIds;
use crate::registry::{AssetIdx, AssetRegistry};
use crate::twin::MachineState;

/// A counter's history id and expected period (ms), if the asset has it.
type CounterRef = Option<(i32, u64)>;

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

/// Every listed counter's readings in [from_us, to_us], each preceded by
/// its last reading before `from_us` (the baseline): two scans in all.
fn counters(
    conn: &Connection,
    ids: &[i32],
    from_us: i64,
    to_us: i64,
) -> Result<std::collections::HashMap<i32, Vec<(i64, f64)>>, HistoryError> {
    let mut out: std::collections::HashMap<i32, Vec<(i64, f64)>> = Default::default();
    if ids.is_empty() {
        return Ok(out);
    }
    let list = ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    let q = || crate::history::sql_err("reading counters");
    // (prop, time, value) rows into the readings by prop.
    let mut read = |sql: String, args: &[&dyn duckdb::ToSql]| -> Result<(), HistoryError> {
        let mut st = conn.prepare(&sql).map_err(q())?;
        let rows = st
            .query_map(args, |r| {
                Ok((
                    r.get::<_, i32>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, f64>(2)?,
                ))
            })
            .map_err(q())?;
        for r in rows {
            let (p, t, v) = r.map_err(q())?;
            out.entry(p).or_default().push((t, v));
        }
        Ok(())
    };
    // The baseline: each counter's last reading before the period.
    read(
        format!(
            "SELECT prop_id, max(ts_us), arg_max(value, ts_us) FROM samples
             WHERE prop_id IN ({list}) AND ts_us < ? AND value IS NOT NULL GROUP BY prop_id"
        ),
        params![from_us],
    )?;
    read(
        format!(
            "SELECT prop_id, ts_us, value FROM samples
             WHERE prop_id IN ({list}) AND ts_us >= ? AND ts_us <= ? AND value IS NOT NULL
             ORDER BY prop_id, ts_us"
        ),
        params![from_us, to_us],
    )?;
    Ok(out)
}

/// Per machine id, the MES's (time, good, scrap) operation completions.
type Completions = std::collections::HashMap<String, Vec<(i64, f64, f64)>>;

/// The MES's operation completions in (from_us, to_us] by machine:
/// (time, good, scrap) from the recorded `operation.completed` events.
fn mes_completions(
    conn: &Connection,
    from_us: i64,
    to_us: i64,
) -> Result<Completions, HistoryError> {
    let q = || crate::history::sql_err("reading MES operation completions");
    let mut st = conn
        .prepare(
            "SELECT ts_us, asset_id, payload FROM mes_events
             WHERE event_type = 'operation.completed' AND ts_us > ? AND ts_us <= ?
             ORDER BY ts_us",
        )
        .map_err(q())?;
    let rows = st
        .query_map(params![from_us, to_us], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })
        .map_err(q())?;
    let mut out = Completions::default();
    for r in rows {
        let (t, asset, payload) = r.map_err(q())?;
        let (Some(asset), Some(p)) = (asset, payload) else {
            continue;
        };
        // Stored events were validated on arrival (v2 payloads).
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&p) else {
            continue;
        };
        let n = |k: &str| v.get(k).and_then(serde_json::Value::as_f64).unwrap_or(0.0);
        out.entry(asset)
            .or_default()
            .push((t, n("good_count"), n("scrap_count")));
    }
    Ok(out)
}

/// Silences: consecutive readings of a periodic counter further apart than
/// three of its expected periods (the twin heard nothing of the machine).
fn silences(readings: &[(i64, f64)], period_ms: u64) -> Vec<(i64, i64)> {
    let limit_us = 3 * period_ms as i64 * 1000;
    readings
        .windows(2)
        .filter(|w| w[1].0 - w[0].0 > limit_us)
        .map(|w| (w[0].0, w[1].0))
        .collect()
}

/// The segments with the gaps cut out and marked as no data.
fn cut(segments: Vec<Segment>, gaps: &[(i64, i64)]) -> Vec<Segment> {
    let mut out = Vec::with_capacity(segments.len() + gaps.len() * 2);
    for s in segments {
        let pieces = gaps
            .iter()
            .fold(vec![(s.start_us, s.end_us)], |p, &(a, b)| {
                crate::calendar::subtract(&p, a, b)
            });
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

/// The machines' inputs over [from_us, to_us); `recorded_to_us`: the end
/// of the recording (states are not extended past it); `time_scale`: plant
/// seconds per recorded second (the embedded demo compresses time; 1 for a
/// real plant), the nominal cycle time is divided by it. The samples table
/// is scanned twice for all machines together.
#[allow(clippy::too_many_arguments)]
pub fn machine_inputs(
    conn: &Connection,
    props: &PropIds,
    registry: &AssetRegistry,
    assets: &[AssetIdx],
    from_us: i64,
    to_us: i64,
    recorded_to_us: i64,
    time_scale: f64,
) -> Result<Vec<MachineInput>, OeeError> {
    let counter_of = |a: AssetIdx, names: &[&str]| {
        names.iter().find_map(|n| {
            let p = registry.property_by_name(a, n)?;
            let period = registry
                .property(p)
                .and_then(|(_, r)| r.expected_period_ms)
                .unwrap_or(60_000);
            Some((props.id(p)?, period))
        })
    };
    let wanted: Vec<(AssetIdx, CounterRef, CounterRef)> = assets
        .iter()
        .map(|a| {
            (
                *a,
                counter_of(*a, &["part_count", "cycle_count"]),
                counter_of(*a, &["scrap_count"]),
            )
        })
        .collect();
    let ids: Vec<i32> = wanted
        .iter()
        .flat_map(|w| [w.1.map(|x| x.0), w.2.map(|x| x.0)])
        .flatten()
        .collect();
    let readings = counters(conn, &ids, from_us, to_us)?;
    let completions = mes_completions(conn, from_us, to_us)?;
    let mut out = Vec::with_capacity(assets.len());
    for (asset, parts, scrap) in wanted {
        let a = registry
            .get(asset)
            .ok_or_else(|| OeeError::Input(format!("no asset {}", asset.0)))?;
        let tr = transitions(conn, &a.id, from_us, to_us)?;
        // Segments keep their whole length (a stop is a micro-stop by its
        // length, not by the part inside the period); the last one ends at
        // the next transition, or the end of the recording.
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
        let part_counter = parts
            .and_then(|(id, _)| readings.get(&id).cloned())
            .unwrap_or_default();
        // Where the machine's periodic counter went silent the twin did
        // not know its state: no data (a state recorded before is not
        // carried through the silence).
        if let Some((_, period)) = parts {
            let gaps = silences(&part_counter, period);
            if !gaps.is_empty() {
                segments = cut(segments, &gaps);
            }
        }
        out.push(MachineInput {
            asset_id: a.id.clone(),
            ideal_cycle_s: ideal_cycle_s(registry, asset).map(|c| c / time_scale.max(1e-9)),
            ideal_source: if time_scale == 1.0 {
                "registry nominal ideal_cycle_time".into()
            } else {
                format!("registry nominal ideal_cycle_time ÷ the demo's time scale {time_scale}")
            },
            segments,
            part_counter,
            scrap_counter: scrap
                .and_then(|(id, _)| readings.get(&id).cloned())
                .unwrap_or_default(),
            mes_completions: completions.get(&a.id).cloned().unwrap_or_default(),
        });
    }
    Ok(out)
}

/// One machine's inputs (see [`machine_inputs`]).
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
    machine_inputs(
        conn,
        props,
        registry,
        &[asset],
        from_us,
        to_us,
        recorded_to_us,
        time_scale,
    )?
    .pop()
    .ok_or_else(|| OeeError::Input(format!("no asset {}", asset.0)))
}
