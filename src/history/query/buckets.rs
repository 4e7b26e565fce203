//! Trend buckets: property ids and a range in, min / avg / max per bucket
//! out — from the 1 s or 1 min rollups (plus the few samples not rolled up
//! yet) when the bucket width allows, else from raw samples; answers from
//! Arrow batches merged into fixed slots.

use std::collections::HashMap;

use duckdb::arrow::array::{Array, Float64Array, Int32Array, Int64Array};
use duckdb::{Connection, params};

use crate::history::{HistoryError, sql_err as q};

/// One bucket of a trend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub start_us: i64,
    pub n: i64,
    pub min: f64,
    pub avg: f64,
    pub max: f64,
}

/// Where a bucket query was answered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketSource {
    Raw,
    Rollup1s,
    Rollup1m,
}

/// Min / avg / max per `width_us` bucket of each property in `[from_us,
/// to_us)`. Buckets are aligned to multiples of the width since the epoch.
pub fn buckets(
    conn: &Connection,
    prop_ids: &[i32],
    from_us: i64,
    to_us: i64,
    width_us: i64,
) -> Result<(BucketSource, HashMap<i32, Vec<Bucket>>), HistoryError> {
    let mut out: HashMap<i32, Vec<Bucket>> = HashMap::new();
    if prop_ids.is_empty() || to_us <= from_us || width_us <= 0 {
        return Ok((BucketSource::Raw, out));
    }
    let mut sorted = prop_ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let (lo, hi) = (sorted[0], sorted[sorted.len() - 1]);
    // One asset's properties have neighbouring ids: a range test is a cheap,
    // vectorized scan filter; the exact list only when there are holes.
    let list = if (hi - lo) as usize + 1 == sorted.len() {
        format!("{lo} AND {hi}")
    } else {
        format!(
            "{lo} AND {hi} AND prop_id IN ({})",
            sorted
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    let w = width_us;
    let (source, sql) = if w % 60_000_000 == 0 || w % 1_000_000 == 0 {
        let (table, key, grain, source) = if w % 60_000_000 == 0 {
            (
                "rollup_1m",
                "rollup_1m_seq",
                60_000_000i64,
                BucketSource::Rollup1m,
            )
        } else {
            (
                "rollup_1s",
                "rollup_1s_seq",
                1_000_000i64,
                BucketSource::Rollup1s,
            )
        };
        let from_b = from_us.div_euclid(w) * w;
        // A constant, so the scan can skip row groups by their seq range (a
        // subquery here would read the whole seq column).
        let wm: i64 = conn
            .query_row("SELECT value FROM meta WHERE key = ?", params![key], |r| {
                r.get(0)
            })
            .map_err(q("reading a rollup watermark"))?;
        let n_slots = ((to_us - from_b + w - 1) / w) as usize;
        if n_slots.saturating_mul(prop_ids.len()) <= 5_000_000 {
            // Rollup rows are additive: merge them into a dense grid here,
            // without a GROUP BY over hundreds of thousands of groups.
            let sql = format!(
                "SELECT prop_id, bucket_us, n, vmin, vmax, vsum FROM {table}
                 WHERE prop_id BETWEEN {list} AND bucket_us >= {from_b} AND bucket_us < {to_us} AND n > 0
                 UNION ALL
                 SELECT prop_id, ts_us // {grain} * {grain}, 1::BIGINT, value, value, value FROM samples
                 WHERE seq >= {wm} AND prop_id BETWEEN {list}
                   AND ts_us >= {from_b} AND ts_us < {to_us} AND value IS NOT NULL"
            );
            let grid = merge_rows(conn, &sql, prop_ids, from_b, w, n_slots)?;
            return Ok((source, grid));
        }
        (
            source,
            format!(
                "WITH r AS (
                   SELECT bucket_us AS b, prop_id, n, vmin, vmax, vsum FROM {table}
                   WHERE prop_id BETWEEN {list} AND bucket_us >= {from_b} AND bucket_us < {to_us}
                   UNION ALL
                   SELECT ts_us // {grain} * {grain}, prop_id, 1, value, value, value FROM samples
                   WHERE seq >= {wm} AND prop_id BETWEEN {list}
                     AND ts_us >= {from_b} AND ts_us < {to_us} AND value IS NOT NULL)
                 SELECT prop_id, b // {w} * {w} AS bb, sum(n)::BIGINT, min(vmin), max(vmax), sum(vsum) / sum(n)
                 FROM r WHERE n > 0 GROUP BY prop_id, bb"
            ),
        )
    } else {
        (
            BucketSource::Raw,
            format!(
                "SELECT prop_id, ts_us // {w} * {w} AS bb, count(*)::BIGINT, min(value), max(value), avg(value)
                 FROM samples WHERE prop_id BETWEEN {list} AND ts_us >= {from_us} AND ts_us < {to_us}
                   AND value IS NOT NULL
                 GROUP BY prop_id, bb"
            ),
        )
    };
    // Columnar (Arrow) results: a scrub frame can be hundreds of thousands of
    // buckets, and row-by-row conversion would dominate its time.
    let mut st = conn.prepare(&sql).map_err(q("reading buckets"))?;
    let batches = st.query_arrow([]).map_err(q("reading buckets"))?;
    for batch in batches {
        let col = |i: usize| batch.column(i).as_any();
        let ids = col(0).downcast_ref::<Int32Array>();
        let starts = col(1).downcast_ref::<Int64Array>();
        let ns = col(2).downcast_ref::<Int64Array>();
        let mins = col(3).downcast_ref::<Float64Array>();
        let maxs = col(4).downcast_ref::<Float64Array>();
        let avgs = col(5).downcast_ref::<Float64Array>();
        let (Some(ids), Some(starts), Some(ns), Some(mins), Some(maxs), Some(avgs)) =
            (ids, starts, ns, mins, maxs, avgs)
        else {
            return Err(HistoryError::Data(format!(
                "bucket columns are {:?}",
                batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.data_type())
                    .collect::<Vec<_>>()
            )));
        };
        for i in 0..batch.num_rows() {
            out.entry(ids.value(i)).or_default().push(Bucket {
                start_us: starts.value(i),
                n: ns.value(i),
                min: mins.value(i),
                max: maxs.value(i),
                avg: avgs.value(i),
            });
        }
    }
    for v in out.values_mut() {
        v.sort_unstable_by_key(|b| b.start_us);
    }
    Ok((source, out))
}

/// Runs `sql` (prop_id, bucket start, n, min, max, sum per row) and adds
/// the rows into `width_us` buckets from `from_us`.
fn merge_rows(
    conn: &Connection,
    sql: &str,
    prop_ids: &[i32],
    from_us: i64,
    width_us: i64,
    n_slots: usize,
) -> Result<HashMap<i32, Vec<Bucket>>, HistoryError> {
    #[derive(Clone, Copy)]
    struct Acc {
        n: i64,
        min: f64,
        max: f64,
        sum: f64,
    }
    let empty = Acc {
        n: 0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
        sum: 0.0,
    };
    let index: HashMap<i32, usize> = prop_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, i))
        .collect();
    let mut grid = vec![empty; n_slots * prop_ids.len()];
    let mut st = conn.prepare(sql).map_err(q("reading buckets"))?;
    let batches = st.query_arrow([]).map_err(q("reading buckets"))?;
    for batch in batches {
        let col = |i: usize| batch.column(i).as_any();
        let cols = (
            col(0).downcast_ref::<Int32Array>(),
            col(1).downcast_ref::<Int64Array>(),
            col(2).downcast_ref::<Int64Array>(),
            col(3).downcast_ref::<Float64Array>(),
            col(4).downcast_ref::<Float64Array>(),
            col(5).downcast_ref::<Float64Array>(),
        );
        let (Some(ids), Some(starts), Some(ns), Some(mins), Some(maxs), Some(sums)) = cols else {
            return Err(HistoryError::Data(format!(
                "rollup columns are {:?}",
                batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.data_type().clone())
                    .collect::<Vec<_>>()
            )));
        };
        for i in 0..batch.num_rows() {
            let Some(&p) = index.get(&ids.value(i)) else {
                continue;
            };
            let slot = ((starts.value(i) - from_us) / width_us) as usize;
            if slot >= n_slots {
                continue;
            }
            let a = &mut grid[p * n_slots + slot];
            a.n += ns.value(i);
            a.min = a.min.min(mins.value(i));
            a.max = a.max.max(maxs.value(i));
            a.sum += sums.value(i);
        }
    }
    let mut out = HashMap::new();
    for (p, id) in prop_ids.iter().enumerate() {
        let v: Vec<Bucket> = grid[p * n_slots..(p + 1) * n_slots]
            .iter()
            .enumerate()
            .filter(|(_, a)| a.n > 0)
            .map(|(k, a)| Bucket {
                start_us: from_us + k as i64 * width_us,
                n: a.n,
                min: a.min,
                max: a.max,
                avg: a.sum / a.n as f64,
            })
            .collect();
        if !v.is_empty() {
            out.insert(*id, v);
        }
    }
    Ok(out)
}
