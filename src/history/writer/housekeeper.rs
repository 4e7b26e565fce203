//! The housekeeper: the committed sequence number in, rollups and
//! checkpoints out, on its own thread and connection so appends and acks go
//! on while rollups run. Checkpoints take the commit lock so no batch is
//! half written. [`rollup`] is also run by the writer on open (rows a crash
//! left without rollups) and at shutdown.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use duckdb::{Connection, params};

use super::{WriterSettings, WriterStats};
use crate::history::{HistoryError, sql_err as q};

/// Adds the committed samples past the table's watermark (up to seq `hi`) to
/// a rollup, in one transaction with the new watermark. Rows per bucket are
/// additive, so a late sample simply adds a row to its (older) bucket.
pub(super) fn rollup(
    conn: &Connection,
    hi: i64,
    table: &str,
    key: &str,
    width_us: i64,
) -> Result<bool, HistoryError> {
    let lo: i64 = conn
        .query_row("SELECT value FROM meta WHERE key = ?", params![key], |r| {
            r.get(0)
        })
        .map_err(q("reading a rollup watermark"))?;
    if hi <= lo {
        return Ok(false);
    }
    let sql = format!(
        "BEGIN TRANSACTION;
         INSERT INTO {table}
           SELECT ts_us // {width_us} * {width_us}, prop_id, count(value), min(value), max(value), sum(value)
           FROM samples WHERE seq >= {lo} AND seq < {hi} AND value IS NOT NULL
           GROUP BY ALL;
         UPDATE meta SET value = {hi} WHERE key = '{key}';
         COMMIT;"
    );
    if let Err(source) = conn.execute_batch(&sql) {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(HistoryError::Sql {
            what: "rolling up",
            source,
        });
    }
    Ok(true)
}

/// How often DuckDB's memory use is read into `WriterStats`.
const MEMORY_READ_EVERY: Duration = Duration::from_secs(5);

/// The rollup thread: its own connection, so appends and acks go on while
/// rollups run; checkpoints take the commit lock so no batch is half written.
pub(super) struct Housekeeper {
    pub(super) conn: Connection,
    pub(super) committed: Arc<AtomicI64>,
    pub(super) commit_lock: Arc<Mutex<()>>,
    pub(super) stats: Arc<WriterStats>,
    pub(super) settings: WriterSettings,
    pub(super) stop: Arc<AtomicBool>,
}

impl Housekeeper {
    pub(super) fn run(self) {
        let mut last_1s = Instant::now();
        let mut last_1m = Instant::now();
        let mut last_checkpoint = Instant::now();
        let mut last_memory = Instant::now();
        let note = |e: String| {
            bevy::log::error!("history rollup: {e}");
            if let Ok(mut l) = self.stats.last_error.lock() {
                *l = Some(e);
            }
        };
        while !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
            let now = Instant::now();
            let hi = self.committed.load(Ordering::Acquire);
            for (last, every, table, key, width) in [
                (
                    &mut last_1s,
                    self.settings.rollup_1s_every,
                    "rollup_1s",
                    "rollup_1s_seq",
                    1_000_000,
                ),
                (
                    &mut last_1m,
                    self.settings.rollup_1m_every,
                    "rollup_1m",
                    "rollup_1m_seq",
                    60_000_000,
                ),
            ] {
                if now.duration_since(*last) >= every {
                    *last = now;
                    match rollup(&self.conn, hi, table, key, width) {
                        Ok(true) => {
                            self.stats.rollup_passes.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(false) => {}
                        Err(e) => note(e.to_string()),
                    }
                }
            }
            if now.duration_since(last_memory) >= MEMORY_READ_EVERY {
                last_memory = now;
                // DuckDB's own account of its buffers (the file's pages it
                // caches, up to its memory limit): the bench soak tells this
                // apart from the rest of the process.
                if let Ok(bytes) = self.conn.query_row(
                    "SELECT COALESCE(sum(memory_usage_bytes), 0)::BIGINT FROM duckdb_memory()",
                    [],
                    |r| r.get::<_, i64>(0),
                ) {
                    self.stats
                        .duckdb_memory_bytes
                        .store(bytes.max(0) as u64, Ordering::Relaxed);
                }
            }
            if now.duration_since(last_checkpoint) >= self.settings.checkpoint_interval {
                last_checkpoint = now;
                let _held = self.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
                match self.conn.execute_batch("CHECKPOINT") {
                    Ok(()) => {
                        self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => note(format!("checkpoint: {e}")),
                }
            }
        }
    }
}
