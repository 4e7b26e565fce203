//! What was different: a failed part's signals against the envelope of the
//! last good parts of the same operation.
//!
//! In: the history file, the registry and a serial (or several). Out: a
//! [`Ranking`] — per (asset, signal) of every operation the part went
//! through, the part's window statistic, the good parts' median and
//! spread, a robust score and the envelope to plot — and, for a batch, the
//! (asset, signal) pairs that separate failed parts from good ones.
//!
//! The window statistic is the median of a signal while the machine was
//! running during the part's operation (a part that sat through a stop is
//! compared on its cutting time, not on the stop); a value reported before
//! the window counts as held into it. For a spectrum, the mean spectrum
//! over the same time, compared bin by bin. The score is the robust z
//! `(x − median) / (1.4826 · MAD)` over the good parts (MAD floored at 0.1 %
//! of the median's size, so a constant signal does not divide by zero);
//! for a spectrum, the bin that departs most. Counters, states, serials and
//! the measured features themselves (the symptom, not a cause) are left
//! out.

use std::collections::HashMap;
use std::time::Instant;

use duckdb::{Connection, params};

use super::QualityError;
use super::genealogy::{self, FeatureDef, Genealogy, Verdict, sql};
use crate::history::store::PropIds;
use crate::registry::{AssetIdx, AssetRegistry, Encoding};

/// A score at or above this is an alarm: the part's window is far outside
/// what good parts of the same operation showed.
pub const ALARM_SCORE: f64 = 6.0;

/// Points across a window in an envelope plot.
pub const ENVELOPE_POINTS: usize = 40;

/// How far back good parts are looked for.
const LOOKBACK_US: i64 = 7 * 86_400_000_000;

/// A signal worth comparing.
#[derive(Debug, Clone)]
pub struct Signal {
    pub asset: AssetIdx,
    pub asset_id: String,
    pub property: String,
    pub unit: String,
    pub prop_id: i32,
    pub spectrum: bool,
}

/// The process signals of an asset.
pub fn signals_of(registry: &AssetRegistry, props: &PropIds, asset: AssetIdx) -> Vec<Signal> {
    let Some(a) = registry.get(asset) else {
        return Vec::new();
    };
    a.properties
        .iter()
        .filter(|p| {
            p.name != "state"
                && p.name != "part_serial"
                && p.unit != "count"
                && !a.nominal.contains_key(&format!("{}_tolerance", p.name))
        })
        .filter_map(|p| {
            let r = registry.property_by_name(asset, &p.name)?;
            Some(Signal {
                asset,
                asset_id: a.id.clone(),
                property: p.name.clone(),
                unit: p.unit.clone(),
                prop_id: props.id(r)?,
                spectrum: p.encoding == Encoding::Spectrum,
            })
        })
        .collect()
}

/// Good parts' percentiles and the part, across normalised window time
/// (scalars) or frequency (spectra).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Envelope {
    /// Window fraction 0..1, or Hz for a spectrum.
    pub x: Vec<f64>,
    pub p05: Vec<f64>,
    pub p50: Vec<f64>,
    pub p95: Vec<f64>,
    pub part: Vec<f64>,
}

/// One (asset, signal) of one operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub asset_id: String,
    pub operation: usize,
    pub property: String,
    pub unit: String,
    pub spectrum: bool,
    /// Signed robust z (for a spectrum, of its most departing bin).
    pub score: f64,
    pub value: f64,
    pub median: f64,
    pub spread: f64,
    /// Good parts behind the envelope.
    pub n_good: usize,
    /// For a spectrum: where it departs most.
    pub at_hz: Option<f64>,
    pub window_us: (i64, i64),
    pub envelope: Envelope,
}

impl Difference {
    pub fn alarm(&self) -> bool {
        self.score.abs() >= ALARM_SCORE
    }
}

/// A part compared.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranking {
    pub genealogy: Genealogy,
    /// Most different first.
    pub differences: Vec<Difference>,
    /// Good parts asked for per operation.
    pub n_good_wanted: usize,
    pub elapsed_ms: f64,
}

impl Ranking {
    pub fn top(&self) -> Option<&Difference> {
        self.differences.first()
    }
    pub fn alarms(&self) -> impl Iterator<Item = &Difference> {
        self.differences.iter().filter(|d| d.alarm())
    }
}

/// Verdicts of the parts inspected in a time range, by serial: measured
/// features against tolerance and the MES's dispositions.
pub fn verdicts(
    conn: &Connection,
    defs: &[FeatureDef],
    from_us: i64,
    to_us: i64,
) -> Result<HashMap<String, (Verdict, i64)>, QualityError> {
    let mut out: HashMap<String, (Verdict, i64)> = HashMap::new();
    let mut stations: Vec<&str> = defs.iter().map(|d| d.asset_id.as_str()).collect();
    stations.sort_unstable();
    stations.dedup();
    for st_id in stations {
        let events = genealogy::station_events(conn, st_id, from_us, to_us)?;
        let Some(last) = events.last() else { continue };
        let feats = genealogy::features_in(conn, defs, st_id, events[0].0, last.0)?;
        let mut fi = 0;
        for w in events.windows(2) {
            let ((start, serial), (end, _)) = (&w[0], &w[1]);
            while fi < feats.len() && feats[fi].ts_us <= *start {
                fi += 1;
            }
            let mut any = false;
            let mut bad = false;
            while fi < feats.len() && feats[fi].ts_us <= *end {
                any = true;
                bad |= !feats[fi].in_tolerance();
                fi += 1;
            }
            if any && !serial.is_empty() {
                let v = if bad { Verdict::Failed } else { Verdict::Good };
                out.insert(serial.clone(), (v, *end));
            }
        }
    }
    let mut st = conn
        .prepare_cached(
            "SELECT payload, ts_us FROM mes_events
             WHERE event_type = 'quality.disposition' AND ts_us >= ? AND ts_us <= ?",
        )
        .map_err(sql("reading dispositions"))?;
    let rows = st
        .query_map(params![from_us, to_us], |r| {
            Ok((r.get::<_, Option<String>>(0)?, r.get::<_, i64>(1)?))
        })
        .map_err(sql("reading dispositions"))?;
    for (payload, ts) in rows.flatten() {
        let payload = payload.unwrap_or_default();
        let r = (
            genealogy::payload_str(&payload, "serial"),
            genealogy::payload_str(&payload, "disposition"),
            ts,
        );
        if let (Some(serial), Some(d)) = (r.0, r.1) {
            let e = out.entry(serial).or_insert((Verdict::Good, r.2));
            if d != "pass" {
                e.0 = Verdict::Failed;
            }
        }
    }
    Ok(out)
}

/// A part that failed, for the list of recent failures.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub serial: String,
    pub ts_us: i64,
}

/// Parts that failed in a time range, newest first.
pub fn failures(
    conn: &Connection,
    registry: &AssetRegistry,
    props: &PropIds,
    from_us: i64,
    to_us: i64,
    limit: usize,
) -> Result<Vec<Failure>, QualityError> {
    let defs = genealogy::feature_defs(registry, props);
    let mut v: Vec<Failure> = verdicts(conn, &defs, from_us, to_us)?
        .into_iter()
        .filter(|(_, (v, _))| *v == Verdict::Failed)
        .map(|(serial, (_, ts_us))| Failure { serial, ts_us })
        .collect();
    v.sort_by(|a, b| b.ts_us.cmp(&a.ts_us).then(a.serial.cmp(&b.serial)));
    v.truncate(limit);
    Ok(v)
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let r = p * (sorted.len() - 1) as f64;
    let (lo, hi) = (r.floor() as usize, r.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (r - lo as f64)
}

/// Median and robust spread (1.4826 · MAD, floored) of good values.
pub fn robust(values: &[f64]) -> (f64, f64) {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let m = median(&mut v);
    let mut dev: Vec<f64> = v.iter().map(|x| (x - m).abs()).collect();
    let mad = median(&mut dev);
    (m, (1.4826 * mad).max(1e-3 * m.abs()).max(1e-9))
}

/// What one window of one asset holds.
struct AssetData {
    /// prop id → (ts, value) in time order.
    scalars: HashMap<i32, Vec<(i64, f64)>>,
    /// prop id → (ts, bin Hz, bins).
    spectra: HashMap<i32, Vec<(i64, f32, Vec<f32>)>>,
    /// (ts, running) in time order, from the state before the range.
    running: Vec<(i64, bool)>,
}

impl AssetData {
    fn load(
        conn: &Connection,
        asset_id: &str,
        signals: &[Signal],
        from_us: i64,
        to_us: i64,
    ) -> Result<Self, QualityError> {
        // A value reported up to a minute before the range is held into it.
        let hold_us = 60_000_000;
        let scalar_ids: Vec<String> = signals
            .iter()
            .filter(|s| !s.spectrum)
            .map(|s| s.prop_id.to_string())
            .collect();
        let mut scalars: HashMap<i32, Vec<(i64, f64)>> = HashMap::new();
        if !scalar_ids.is_empty() {
            let mut st = conn
                .prepare(&format!(
                    "SELECT prop_id, ts_us, value FROM samples
                     WHERE prop_id IN ({}) AND ts_us >= ? AND ts_us <= ? AND value IS NOT NULL
                     ORDER BY ts_us",
                    scalar_ids.join(",")
                ))
                .map_err(sql("reading signals"))?;
            let rows = st
                .query_map(params![from_us - hold_us, to_us], |r| {
                    Ok((
                        r.get::<_, i32>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, f64>(2)?,
                    ))
                })
                .map_err(sql("reading signals"))?;
            for r in rows {
                let (id, ts, v) = r.map_err(sql("reading signals"))?;
                scalars.entry(id).or_default().push((ts, v));
            }
        }
        let spec_ids: Vec<String> = signals
            .iter()
            .filter(|s| s.spectrum)
            .map(|s| s.prop_id.to_string())
            .collect();
        let mut spectra: HashMap<i32, Vec<(i64, f32, Vec<f32>)>> = HashMap::new();
        if !spec_ids.is_empty() {
            let mut st = conn
                .prepare(&format!(
                    "SELECT prop_id, ts_us, bin_hz, bins_f32le FROM blobs
                     WHERE prop_id IN ({}) AND ts_us >= ? AND ts_us <= ? ORDER BY ts_us",
                    spec_ids.join(",")
                ))
                .map_err(sql("reading spectra"))?;
            let rows = st
                .query_map(params![from_us - hold_us, to_us], |r| {
                    Ok((
                        r.get::<_, i32>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<f32>>(2)?,
                        r.get::<_, Option<Vec<u8>>>(3)?,
                    ))
                })
                .map_err(sql("reading spectra"))?;
            for r in rows {
                let (id, ts, hz, bytes) = r.map_err(sql("reading spectra"))?;
                let bins = crate::history::query::spectrum_bins(&bytes.unwrap_or_default());
                spectra
                    .entry(id)
                    .or_default()
                    .push((ts, hz.unwrap_or(1.0), bins));
            }
        }
        let running = crate::history::query::transitions(conn, asset_id, from_us - hold_us, to_us)
            .map_err(QualityError::History)?
            .into_iter()
            .map(|t| (t.ts_us, t.state == "running"))
            .collect();
        Ok(Self {
            scalars,
            spectra,
            running,
        })
    }

    fn running_at(&self, ts: i64) -> bool {
        match self.running.partition_point(|(t, _)| *t <= ts) {
            0 => true,
            i => self.running[i - 1].1,
        }
    }

    /// Values in the window while running, with the one before it held in.
    fn window_values(&self, id: i32, w: (i64, i64)) -> Vec<f64> {
        let Some(v) = self.scalars.get(&id) else {
            return Vec::new();
        };
        let first = v.partition_point(|(t, _)| *t < w.0);
        let mut out = Vec::new();
        // A value reported before the window is held into it when the
        // machine was running both when it was read and when the window
        // opened.
        if first > 0 && self.running_at(w.0) && self.running_at(v[first - 1].0) {
            out.push(v[first - 1].1);
        }
        for (t, x) in &v[first..] {
            if *t >= w.1 {
                break;
            }
            if self.running_at(*t) {
                out.push(*x);
            }
        }
        out
    }

    /// The signal across the window (sample and hold), for plots.
    fn curve(&self, id: i32, w: (i64, i64)) -> Vec<f64> {
        let Some(v) = self.scalars.get(&id) else {
            return vec![f64::NAN; ENVELOPE_POINTS];
        };
        (0..ENVELOPE_POINTS)
            .map(|k| {
                let t = w.0 + ((w.1 - w.0) as f64 * k as f64 / (ENVELOPE_POINTS - 1) as f64) as i64;
                match v.partition_point(|(ts, _)| *ts <= t) {
                    0 => f64::NAN,
                    i => v[i - 1].1,
                }
            })
            .collect()
    }

    /// The mean spectrum over the window's running time (or the last one
    /// before it, held): (bin Hz, bins).
    fn window_spectrum(&self, id: i32, w: (i64, i64)) -> Option<(f32, Vec<f64>)> {
        let v = self.spectra.get(&id)?;
        let first = v.partition_point(|(t, _, _)| *t < w.0);
        let mut picked: Vec<&(i64, f32, Vec<f32>)> = v[first..]
            .iter()
            .take_while(|(t, _, _)| *t < w.1)
            .filter(|(t, _, _)| self.running_at(*t))
            .collect();
        if picked.is_empty() && first > 0 && self.running_at(w.0) && self.running_at(v[first - 1].0)
        {
            picked.push(&v[first - 1]);
        }
        let (_, hz, bins0) = picked.first()?;
        let mut sum = vec![0.0; bins0.len()];
        for (_, _, b) in &picked {
            for (s, x) in sum.iter_mut().zip(b) {
                *s += f64::from(*x);
            }
        }
        let n = picked.len() as f64;
        Some((*hz, sum.into_iter().map(|s| s / n).collect()))
    }
}

/// A part's serial and its window on an asset, µs.
type PartWindow = (String, (i64, i64));

/// The last parts through an asset that entered before `before_us` (up
/// to `limit`), with their windows, oldest first.
fn candidate_windows(
    conn: &Connection,
    asset_id: &str,
    before_us: i64,
    limit: usize,
) -> Result<Vec<PartWindow>, QualityError> {
    let mut st = conn
        .prepare_cached(
            "SELECT ts_us, serial FROM part_events WHERE asset_id = ? AND ts_us <= ? AND ts_us >= ?
             ORDER BY ts_us DESC LIMIT ?",
        )
        .map_err(sql("reading part events"))?;
    let mut events: Vec<(i64, String)> = st
        .query_map(
            params![asset_id, before_us, before_us - LOOKBACK_US, limit as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(sql("reading part events"))?
        .collect::<Result<_, _>>()
        .map_err(sql("reading part events"))?;
    events.reverse();
    Ok(events
        .windows(2)
        .filter(|w| !w[0].1.is_empty())
        .map(|w| (w[0].1.clone(), (w[0].0, w[1].0)))
        .collect())
}

/// Compares one part with the last `n_good` good parts of each of its
/// operations.
pub fn rank(
    conn: &Connection,
    registry: &AssetRegistry,
    props: &PropIds,
    serial: &str,
    n_good: usize,
) -> Result<Ranking, QualityError> {
    let t0 = Instant::now();
    let g = genealogy::part(conn, registry, props, serial)?;
    let defs = genealogy::feature_defs(registry, props);
    // Candidates for each operation, then the verdicts of all of them at
    // once (inspection comes after the operation, so look a day further).
    let candidates: Vec<Vec<PartWindow>> = g
        .operations
        .iter()
        .map(|op| candidate_windows(conn, &op.asset_id, op.start_us, n_good * 3 + 50))
        .collect::<Result<_, _>>()?;
    let from = candidates
        .iter()
        .filter_map(|c| c.first().map(|w| w.1.0))
        .min();
    let to = g.operations.iter().map(|o| o.start_us).max();
    let v = match (from, to) {
        (Some(f), Some(t)) => verdicts(conn, &defs, f, t + 86_400_000_000)?,
        _ => HashMap::new(),
    };
    let mut differences = Vec::new();
    for (op, cands) in g.operations.iter().zip(candidates) {
        let Some(end_us) = op.end_us else { continue };
        let Some(asset) = registry.by_id(&op.asset_id) else {
            continue;
        };
        let signals = signals_of(registry, props, asset);
        if signals.is_empty() {
            continue;
        }
        let w = (op.start_us, end_us);
        let mut good: Vec<PartWindow> = cands
            .into_iter()
            .rev()
            .filter(|(s, _)| s != &g.serial)
            .filter(|(s, _)| v.get(s).is_some_and(|(v, _)| *v == Verdict::Good))
            .take(n_good)
            .collect();
        good.reverse();
        if good.len() < 3 {
            continue;
        }
        let data = AssetData::load(conn, &op.asset_id, &signals, good[0].1.0, w.1)?;
        for s in &signals {
            if s.spectrum {
                let Some((hz, part)) = data.window_spectrum(s.prop_id, w) else {
                    continue;
                };
                let goods: Vec<Vec<f64>> = good
                    .iter()
                    .filter_map(|(_, gw)| data.window_spectrum(s.prop_id, *gw))
                    .filter(|(_, b)| b.len() == part.len())
                    .map(|(_, b)| b)
                    .collect();
                if goods.len() < 3 {
                    continue;
                }
                let mut env = Envelope::default();
                let (mut best, mut best_k) = (0.0f64, 0usize);
                let mut best_stats = (f64::NAN, f64::NAN);
                for (k, x) in part.iter().enumerate() {
                    let col: Vec<f64> = goods.iter().map(|b| b[k]).collect();
                    let (m, spread) = robust(&col);
                    let z = (x - m) / spread.max(0.05 * m.abs());
                    if z.abs() > best.abs() {
                        (best, best_k, best_stats) = (z, k, (m, spread));
                    }
                    let mut sorted = col.clone();
                    sorted.sort_by(f64::total_cmp);
                    env.x.push(f64::from(hz) * k as f64);
                    env.p05.push(percentile(&sorted, 0.05));
                    env.p50.push(percentile(&sorted, 0.5));
                    env.p95.push(percentile(&sorted, 0.95));
                    env.part.push(*x);
                }
                differences.push(Difference {
                    asset_id: op.asset_id.clone(),
                    operation: op.seq,
                    property: s.property.clone(),
                    unit: s.unit.clone(),
                    spectrum: true,
                    score: best,
                    value: part[best_k],
                    median: best_stats.0,
                    spread: best_stats.1,
                    n_good: goods.len(),
                    at_hz: Some(f64::from(hz) * best_k as f64),
                    window_us: w,
                    envelope: env,
                });
                continue;
            }
            let mut mine = data.window_values(s.prop_id, w);
            if mine.is_empty() {
                continue;
            }
            let x = median(&mut mine);
            let mut stats = Vec::new();
            let mut curves = Vec::new();
            for (_, gw) in &good {
                let mut v = data.window_values(s.prop_id, *gw);
                if !v.is_empty() {
                    stats.push(median(&mut v));
                    curves.push(data.curve(s.prop_id, *gw));
                }
            }
            if stats.len() < 3 {
                continue;
            }
            let (m, spread) = robust(&stats);
            let mut env = Envelope {
                part: data.curve(s.prop_id, w),
                ..Envelope::default()
            };
            for k in 0..ENVELOPE_POINTS {
                let mut col: Vec<f64> = curves
                    .iter()
                    .map(|c| c[k])
                    .filter(|v| v.is_finite())
                    .collect();
                col.sort_by(f64::total_cmp);
                env.x.push(k as f64 / (ENVELOPE_POINTS - 1) as f64);
                env.p05.push(percentile(&col, 0.05));
                env.p50.push(percentile(&col, 0.5));
                env.p95.push(percentile(&col, 0.95));
            }
            differences.push(Difference {
                asset_id: op.asset_id.clone(),
                operation: op.seq,
                property: s.property.clone(),
                unit: s.unit.clone(),
                spectrum: false,
                score: (x - m) / spread,
                value: x,
                median: m,
                spread,
                n_good: stats.len(),
                at_hz: None,
                window_us: w,
                envelope: env,
            });
        }
    }
    differences.sort_by(|a, b| b.score.abs().total_cmp(&a.score.abs()));
    Ok(Ranking {
        genealogy: g,
        differences,
        n_good_wanted: n_good,
        elapsed_ms: t0.elapsed().as_secs_f64() * 1e3,
    })
}

/// Across a batch of failed parts: per (asset, signal), how many failed
/// parts went through it, how many of them alarmed on it, and their median
/// |score|.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRow {
    pub asset_id: String,
    pub property: String,
    pub parts: usize,
    pub alarmed: usize,
    pub median_abs_score: f64,
}

pub fn rank_batch(
    conn: &Connection,
    registry: &AssetRegistry,
    props: &PropIds,
    serials: &[String],
    n_good: usize,
) -> Result<Vec<BatchRow>, QualityError> {
    let mut by: HashMap<(String, String), Vec<f64>> = HashMap::new();
    for s in serials {
        let r = rank(conn, registry, props, s, n_good)?;
        for d in r.differences {
            by.entry((d.asset_id, d.property))
                .or_default()
                .push(d.score.abs());
        }
    }
    let mut rows: Vec<BatchRow> = by
        .into_iter()
        .map(|((asset_id, property), mut v)| BatchRow {
            asset_id,
            property,
            parts: v.len(),
            alarmed: v.iter().filter(|s| **s >= ALARM_SCORE).count(),
            median_abs_score: median(&mut v),
        })
        .collect();
    rows.sort_by(|a, b| {
        b.alarmed
            .cmp(&a.alarmed)
            .then(b.median_abs_score.total_cmp(&a.median_abs_score))
    });
    Ok(rows)
}
