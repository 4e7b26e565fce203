//! Keyframes and late samples: each committed sample's value in, keyframe
//! rows out, so a state-at-T query reads one keyframe and the few samples
//! after it instead of the whole file.
//!
//! A keyframe (every property's last value, stamped with the newest source
//! time) is written at least every `keyframe_interval_us` of source time and
//! every `keyframe_every_rows` samples. A sample at or before the last
//! keyframe (a late one, from a later batch) is added to the keyframes
//! written since its source time, so state at T stays exact.

use std::collections::HashMap;

use duckdb::{Connection, params};

use super::rows::{IntBuild, SampleRow, Typed, stored_columns};
use super::{WriterSettings, WriterStats};
use crate::history::query::state_at;
use crate::history::store::PropIds;
use crate::history::{HistoryError, origin_code, quality_code, sql_err as q};

/// The last value of a property, kept for keyframes.
#[derive(Clone)]
pub(super) struct LastRow {
    pub(super) ts_us: i64,
    pub(super) value: Option<f64>,
    pub(super) text: Option<String>,
    pub(super) blob_id: Option<i64>,
    pub(super) quality: u8,
    pub(super) origin: u8,
    pub(super) typed: Typed,
}

/// Every property's last value and where the last keyframe stands.
pub(super) struct Keyframes {
    last: HashMap<i32, LastRow, IntBuild>,
    /// Source time of the last keyframe (`i64::MIN`: none yet).
    last_ts_us: i64,
    rows_since: u64,
}

impl Keyframes {
    /// Where the file's keyframes stand, and each property's last value
    /// (from the state at the end of the file).
    pub(super) fn load(conn: &Connection, props: &PropIds) -> Result<Self, HistoryError> {
        let last_ts_us: Option<i64> = conn
            .query_row("SELECT max(ts_us) FROM keyframes", [], |r| r.get(0))
            .map_err(q("reading the last keyframe"))?;
        let mut last = HashMap::default();
        for v in state_at(conn, props, i64::MAX)?.values {
            let (value, text, blob_id, typed) = stored_columns(v.value);
            last.insert(
                v.prop_id,
                LastRow {
                    ts_us: v.value_ts_us,
                    value,
                    text,
                    blob_id,
                    quality: quality_code(v.quality),
                    origin: origin_code(v.origin),
                    typed,
                },
            );
        }
        Ok(Self {
            last,
            last_ts_us: last_ts_us.unwrap_or(i64::MIN),
            rows_since: 0,
        })
    }

    /// Takes a new sample's value (if it is the property's newest); returns
    /// whether the sample is late (at or before the last keyframe).
    pub(super) fn note(&mut self, prop_id: i32, row: LastRow) -> bool {
        let ts_us = row.ts_us;
        if self.last.get(&prop_id).is_none_or(|l| l.ts_us <= ts_us) {
            self.last.insert(prop_id, row);
        }
        ts_us <= self.last_ts_us
    }

    /// Whether the batch about to commit (`batch_rows` samples, newest
    /// source time `max_ts_us`) ends with a keyframe.
    pub(super) fn due(&self, max_ts_us: i64, batch_rows: u64, s: &WriterSettings) -> bool {
        !self.last.is_empty()
            && (max_ts_us.saturating_sub(self.last_ts_us) >= s.keyframe_interval_us
                || self.rows_since + batch_rows >= s.keyframe_every_rows)
    }

    /// After a commit: a keyframe written at `max_ts_us`, or more rows since.
    pub(super) fn committed(
        &mut self,
        wrote_keyframe: bool,
        max_ts_us: i64,
        rows: u64,
        stats: &WriterStats,
    ) {
        if wrote_keyframe {
            self.last_ts_us = max_ts_us;
            self.rows_since = 0;
            stats
                .keyframes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        } else {
            self.rows_since += rows;
        }
    }

    /// Adds each late sample to the keyframes written since its source
    /// time, where they hold an older value of its property (queries take
    /// the newest value per property and keyframe).
    pub(super) fn patch_late(
        c: &Connection,
        samples: &[SampleRow],
        late: &[usize],
    ) -> duckdb::Result<()> {
        for &i in late {
            let r = &samples[i];
            c.execute(
                "INSERT INTO keyframes
                 SELECT DISTINCT k.ts_us, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM keyframes k
                 WHERE k.ts_us >= ? AND NOT EXISTS (
                   SELECT 1 FROM keyframes n
                   WHERE n.ts_us = k.ts_us AND n.prop_id = ? AND n.value_ts_us >= ?)",
                params![
                    r.prop_id,
                    r.ts_us,
                    r.value,
                    r.text.as_deref(),
                    r.blob_id,
                    r.quality,
                    r.origin,
                    r.typed.ivalue,
                    r.typed.vtype,
                    r.ts_us,
                    r.prop_id,
                    r.ts_us
                ],
            )?;
        }
        Ok(())
    }

    /// Appends a keyframe at `k_us`: every property's last value (which
    /// already holds the batch's rows, noted as they came in).
    pub(super) fn append(&self, c: &Connection, k_us: i64) -> duckdb::Result<()> {
        let mut a = c.appender("keyframes")?;
        for (id, l) in &self.last {
            a.append_row(params![
                k_us,
                id,
                l.ts_us,
                l.value,
                l.text.as_deref(),
                l.blob_id,
                l.quality,
                l.origin,
                l.typed.ivalue,
                l.typed.vtype
            ])?;
        }
        a.flush()
    }
}
