//! The Parquet lake: the history file's tables, closed period by period into
//! Parquet files any engine reads (DuckDB, Spark, Trino, pandas), while the
//! recorder that owns the DuckDB file keeps writing.
//!
//! In: a connection to the history file, the committed sample sequence and
//! [`LakeSettings`]. Out: files under the lake folder, one dataset per
//! table, Hive-partitioned by site, UTC date and UTC hour:
//!
//! ```text
//! <lake>/samples/site=lyon/date=2026-11-30/hour=14/rec-1-<from>.parquet
//! <lake>/samples/site=lyon/date=2026-11-30/hour=14/rec-1-corr-<from>.parquet
//! <lake>/schedules/site=lyon/rec-1.parquet          (snapshot tables)
//! ```
//!
//! A row goes into the lake exactly once per recorder: when it is committed
//! and its period is closed (`close_every` after its period began, plus a
//! grace). The watermarks that say what was exported live in the history
//! file's `meta` table, next to the rows. A row that arrives for a period
//! already closed (a late sample, a back-filled MES event) goes into a
//! correction file (`-corr-`) of its partition at the next tick. Files are
//! written into `<lake>/_staging/` and renamed into place, so a reader never
//! sees half a file; a file's name comes from the watermarks it starts at,
//! so a run cut short between the rename and the watermark is repeated into
//! the same names. [`compact`] merges a partition's files into one and drops
//! duplicates by key — the same sample recorded by two members of a shared
//! subscription, or redelivered after a crash.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use duckdb::{Connection, params};

use super::{HistoryError, sql_err as q};

/// Where the lake is and how often it closes a period.
#[derive(Debug, Clone, PartialEq)]
pub struct LakeSettings {
    pub dir: PathBuf,
    /// The `site=` partition.
    pub site: String,
    /// This recorder's name: the first part of its file names, so members
    /// writing into one lake never overwrite each other.
    pub recorder: String,
    /// Length of a period (an hour by default); periods are aligned to UTC.
    pub close_every_us: i64,
    /// How long after a period ends it is closed (samples on their way).
    pub grace_us: i64,
    /// How often the lake looks for closed periods and late rows.
    pub tick: Duration,
}

/// A table closed period by period: its time column and the column that
/// orders its commits.
struct TimeTable {
    /// The dataset's folder name in the lake.
    name: &'static str,
    /// The history table it comes from (append-only, never deleted from,
    /// so its row ids run 0 … count − 1 in commit order).
    table: &'static str,
    /// The rows, with `ts_us` (partitioning time) and `wm` (watermark).
    select: &'static str,
    /// How duplicates are told apart on compaction (`*`: the whole row).
    key: &'static str,
    /// What the key is ordered by when duplicates are dropped.
    keep: &'static str,
}

const TIME_TABLES: [TimeTable; 8] = [
    TimeTable {
        name: "samples",
        table: "samples",
        select: "SELECT s.seq AS wm, s.ts_us, to_timestamp(s.ts_us / 1e6) AS ts, p.asset_id,
                        p.property, p.unit, s.value, s.text,
                        CASE s.quality WHEN 0 THEN 'good' WHEN 1 THEN 'uncertain' ELSE 'bad' END AS quality,
                        CASE s.origin WHEN 0 THEN 'mqtt' ELSE 'opcua' END AS origin,
                        s.received_us, s.work_order, s.context_unavailable, s.historical,
                        CASE s.vtype WHEN 1 THEN 'boolean' WHEN 2 THEN 'integer'
                          ELSE CASE WHEN s.value IS NOT NULL THEN 'number' END END AS value_type,
                        s.ivalue AS integer_value, s.blob_id IS NOT NULL AS has_spectrum
                 FROM samples s JOIN properties p USING (prop_id)",
        key: "asset_id, property, ts_us",
        keep: "received_us",
    },
    TimeTable {
        name: "spectra",
        table: "blobs",
        select: "SELECT b.rowid AS wm, b.ts_us, to_timestamp(b.ts_us / 1e6) AS ts, p.asset_id,
                        p.property, p.unit, b.bin_hz,
                        (octet_length(b.bins_f32le) // 4)::INTEGER AS n_bins, b.bins_f32le
                 FROM blobs b JOIN properties p USING (prop_id)",
        key: "asset_id, property, ts_us",
        keep: "n_bins",
    },
    TimeTable {
        name: "transitions",
        table: "transitions",
        select: "SELECT rowid AS wm, ts_us, to_timestamp(ts_us / 1e6) AS ts, asset_id, state, reason
                 FROM transitions",
        key: "*",
        keep: "ts_us",
    },
    TimeTable {
        name: "mes_events",
        table: "mes_events",
        select: "SELECT rowid AS wm, ts_us, to_timestamp(ts_us / 1e6) AS ts, received_us, event_id,
                        event_type, asset_id, work_order, payload
                 FROM mes_events",
        key: "event_id",
        keep: "received_us",
    },
    TimeTable {
        name: "work_orders",
        table: "work_orders",
        select: "SELECT rowid AS wm, ts_us, to_timestamp(ts_us / 1e6) AS ts, asset_id, work_order
                 FROM work_orders",
        key: "*",
        keep: "ts_us",
    },
    TimeTable {
        name: "discrepancies",
        table: "discrepancies",
        select: "SELECT rowid AS wm, ts_us, to_timestamp(ts_us / 1e6) AS ts, discrepancy_id,
                        asset_id, rule, status, detail
                 FROM discrepancies",
        key: "*",
        keep: "ts_us",
    },
    TimeTable {
        name: "dead_letters",
        table: "dead_letters",
        select: "SELECT rowid AS wm, received_us AS ts_us, to_timestamp(received_us / 1e6) AS ts,
                        origin, source, reason, payload_len, payload_head
                 FROM dead_letters",
        key: "*",
        keep: "ts_us",
    },
    TimeTable {
        name: "part_events",
        table: "part_events",
        select: "SELECT rowid AS wm, ts_us, to_timestamp(ts_us / 1e6) AS ts, asset_id, serial,
                        work_order
                 FROM part_events",
        key: "*",
        keep: "ts_us",
    },
];

/// Tables that change in place or are small: written whole at each close.
const SNAPSHOT_TABLES: [(&str, &str); 4] = [
    (
        "schedules",
        "SELECT to_timestamp(imported_us / 1e6) AS imported, imported_us, schedule_id, source,
                work_order, product, quantity, unit, asset_id, routing, earliest_start_us,
                latest_end_us FROM schedules",
    ),
    (
        "mes_outages",
        "SELECT to_timestamp(start_us / 1e6) AS start, start_us, end_us, backfilled_rows
         FROM mes_outages",
    ),
    (
        "bookmarks",
        "SELECT to_timestamp(ts_us / 1e6) AS ts, ts_us, name, created_us FROM bookmarks",
    ),
    (
        "audit_log",
        "SELECT seq, to_timestamp(ts_us / 1e6) AS ts, ts_us, time_zone, kind, subject, field,
                value, previous_value, signer, meaning, prev_hash, hash FROM audit_log",
    ),
];

/// Every dataset the lake holds, for readers and `lake compact`.
pub fn datasets() -> impl Iterator<Item = &'static str> {
    TIME_TABLES
        .iter()
        .map(|t| t.name)
        .chain(SNAPSHOT_TABLES.iter().map(|t| t.0))
}

const CLOSED_KEY: &str = "lake_closed_until_us";

/// A name safe as a path segment and a file-name prefix.
pub fn check_name(what: &str, name: &str) -> Result<(), HistoryError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(HistoryError::Lake(format!(
            "the lake's {what} {name:?} must be 1–64 letters, digits, '-', '_' or '.' \
             (it becomes a folder or file name)"
        )))
    }
}

fn quote(p: &Path) -> String {
    p.to_string_lossy().replace('\'', "''")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HistoryError + '_ {
    move |source| HistoryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What one pass wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PassReport {
    pub files: usize,
    pub correction_files: usize,
    pub rows: u64,
}

/// Counters the recorder reports.
#[derive(Debug, Default)]
pub struct LakeStats {
    pub files: AtomicU64,
    pub correction_files: AtomicU64,
    pub rows: AtomicU64,
    /// Everything before this (µs since the epoch, UTC) is closed.
    pub closed_until_us: AtomicI64,
    pub errors: AtomicU64,
    pub last_error: std::sync::Mutex<Option<String>>,
}

fn meta_get(conn: &Connection, key: &str) -> Result<Option<i64>, HistoryError> {
    conn.query_row(
        "SELECT max(value) FROM meta WHERE key = ?",
        params![key],
        |r| r.get(0),
    )
    .map_err(q("reading a lake watermark"))
}

/// The first period start at or after which nothing is closed yet.
fn closable(now_us: i64, s: &LakeSettings) -> i64 {
    let every = s.close_every_us.max(1_000_000);
    (now_us - s.grace_us).div_euclid(every) * every
}

/// Exports what became closed since the last pass: every committed row
/// (samples below `committed_seq`) whose period ends at or before
/// `close_to_us` and that no earlier pass took. `close_to_us` is a period
/// boundary while running, the stop time at a stop.
pub fn export_pass(
    conn: &Connection,
    s: &LakeSettings,
    committed_seq: i64,
    close_to_us: i64,
    commit_lock: &std::sync::Mutex<()>,
) -> Result<PassReport, HistoryError> {
    let prev_closed = meta_get(conn, CLOSED_KEY)?.unwrap_or(i64::MIN);
    let close_to = close_to_us.max(prev_closed);
    let staging = s.dir.join("_staging").join(&s.recorder);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    std::fs::create_dir_all(&staging).map_err(io(&staging))?;
    let mut report = PassReport::default();
    let mut marks: Vec<(String, i64)> = Vec::new();
    // (staging folder, table, file-name prefix) of what this pass wrote.
    let mut staged: Vec<(PathBuf, &'static str, String)> = Vec::new();
    let since = if prev_closed == i64::MIN {
        "start".to_string()
    } else {
        jiff::Timestamp::from_microsecond(prev_closed)
            .map(|t| t.strftime("%Y%m%dT%H%M%SZ").to_string())
            .unwrap_or_else(|_| prev_closed.to_string())
    };
    conn.execute_batch("BEGIN TRANSACTION")
        .map_err(q("starting a lake pass"))?;
    let result = (|| -> Result<(), HistoryError> {
        for t in &TIME_TABLES {
            let key = format!("lake_wm_{}", t.name);
            let lo = meta_get(conn, &key)?.unwrap_or(0);
            let hi: i64 = if t.name == "samples" {
                committed_seq
            } else {
                // The table's row count (from its metadata, no scan).
                conn.query_row(&format!("SELECT count(*) FROM {}", t.table), [], |r| {
                    r.get(0)
                })
                .map_err(q("reading a lake watermark"))?
            };
            // Taken now: committed and closed; taken before: committed
            // before `lo` and closed before `prev_closed`. The difference as
            // two ranges the scan prunes by its zone maps: rows of the newly
            // closed periods (by time), and rows committed since the last
            // pass for periods closed before (by watermark) — corrections.
            let main = (close_to > prev_closed)
                .then(|| format!("wm < {hi} AND ts_us >= {prev_closed} AND ts_us < {close_to}"));
            let corr = (hi > lo && prev_closed > i64::MIN)
                .then(|| format!("wm >= {lo} AND wm < {hi} AND ts_us < {prev_closed}"));
            for (kind, filter, prefix) in [
                ("main", main, format!("{}-{since}-{lo}", s.recorder)),
                ("corr", corr, format!("{}-corr-{since}-{lo}", s.recorder)),
            ] {
                let Some(filter) = filter else {
                    continue;
                };
                let out = staging.join(kind).join(t.name);
                let kind_dir = staging.join(kind);
                std::fs::create_dir_all(&kind_dir).map_err(io(&kind_dir))?;
                let sql = format!(
                    "COPY (SELECT * EXCLUDE (wm),
                                 '{site}' AS site,
                                 strftime(make_timestamp(ts_us), '%Y-%m-%d') AS date,
                                 hour(make_timestamp(ts_us)) AS hour
                          FROM ({select}) WHERE {filter} ORDER BY ts_us)
                     TO '{out}' (FORMAT parquet, PARTITION_BY (site, date, hour),
                                 FILENAME_PATTERN 'data_{{i}}')",
                    site = s.site,
                    select = t.select,
                    out = quote(&out),
                );
                // COPY answers with the number of rows it wrote.
                let n: i64 = conn
                    .query_row(&sql, [], |r| r.get(0))
                    .map_err(q("writing lake Parquet"))?;
                if n == 0 {
                    continue;
                }
                report.rows += n as u64;
                staged.push((out, t.name, prefix));
            }
            marks.push((key, hi.max(lo)));
        }
        Ok(())
    })();
    // The pass only read; its snapshot ends here.
    let _ = conn.execute_batch("COMMIT");
    result?;
    // Into place, named after where the pass began: a pass repeated after
    // a crash between here and the watermarks writes the same names.
    for (root, table, prefix) in &staged {
        let correction = prefix.contains("-corr-");
        for file in parquet_files(root)? {
            let rel = file
                .parent()
                .and_then(|p| p.strip_prefix(root).ok())
                .map(Path::to_path_buf)
                .unwrap_or_default();
            let stem = file
                .file_stem()
                .map(|x| x.to_string_lossy().into_owned())
                .unwrap_or_default();
            let dest_dir = s.dir.join(table).join(&rel);
            std::fs::create_dir_all(&dest_dir).map_err(io(&dest_dir))?;
            let dest = dest_dir.join(format!("{prefix}-{stem}.parquet"));
            std::fs::rename(&file, &dest).map_err(io(&file))?;
            report.files += 1;
            if correction {
                report.correction_files += 1;
            }
        }
    }
    // Snapshots when a period closes (and at a stop).
    if close_to > prev_closed {
        for (name, select) in SNAPSHOT_TABLES {
            let dir = s.dir.join(name).join(format!("site={}", s.site));
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            let tmp = staging.join(format!("{name}.parquet"));
            conn.execute_batch(&format!(
                "COPY ({select}) TO '{}' (FORMAT parquet)",
                quote(&tmp)
            ))
            .map_err(q("writing a lake snapshot"))?;
            let dest = dir.join(format!("{}.parquet", s.recorder));
            std::fs::rename(&tmp, &dest).map_err(io(&tmp))?;
        }
    }
    let mut sql = String::from("BEGIN TRANSACTION;");
    for (k, v) in marks
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .chain([(CLOSED_KEY, close_to)])
    {
        sql.push_str(&format!("INSERT OR REPLACE INTO meta VALUES ('{k}', {v});"));
    }
    sql.push_str("COMMIT;");
    let _held = commit_lock.lock().unwrap_or_else(|p| p.into_inner());
    if let Err(source) = conn.execute_batch(&sql) {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(HistoryError::Sql {
            what: "saving the lake watermarks",
            source,
        });
    }
    let _ = std::fs::remove_dir_all(&staging);
    Ok(report)
}

/// Every `*.parquet` under `dir` (not `_`- or `.`-prefixed folders).
pub fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>, HistoryError> {
    let mut out = Vec::new();
    if !dir.is_dir() {
        return Ok(out);
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(io(&d))? {
            let p = e.map_err(io(&d))?.path();
            let hidden = p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(['_', '.']));
            if p.is_dir() {
                if !hidden {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "parquet") && !hidden {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The lake's thread: a pass every tick; a last one, up to the stop time,
/// when stopped.
pub struct LakeExporter {
    pub conn: Connection,
    pub settings: LakeSettings,
    pub committed: Arc<AtomicI64>,
    pub stats: Arc<LakeStats>,
    /// The last pass, up to now, then the thread ends.
    pub stop: Arc<AtomicBool>,
    /// No pass starts while set (the writer's last commit and checkpoint
    /// have the file alone); `busy` says whether one is running.
    pub hold: Arc<AtomicBool>,
    pub busy: Arc<AtomicBool>,
    /// Held while the watermarks are written (as a checkpoint holds it).
    pub commit_lock: Arc<std::sync::Mutex<()>>,
}

impl LakeExporter {
    pub fn run(self) {
        let mut last = Instant::now() - self.settings.tick;
        loop {
            let stopping = self.stop.load(Ordering::Acquire);
            // Busy first, then the hold: `join` sets the hold, then waits
            // while busy, so a pass either sees the hold or is waited for.
            self.busy.store(true, Ordering::SeqCst);
            let held = self.hold.load(Ordering::SeqCst) && !stopping;
            if !held && (stopping || last.elapsed() >= self.settings.tick) {
                last = Instant::now();
                let now = crate::ingest::now_us();
                let to = if stopping {
                    now
                } else {
                    closable(now, &self.settings)
                };
                let committed = self.committed.load(Ordering::Acquire);
                match export_pass(&self.conn, &self.settings, committed, to, &self.commit_lock) {
                    Ok(r) => {
                        self.stats
                            .files
                            .fetch_add(r.files as u64, Ordering::Relaxed);
                        self.stats
                            .correction_files
                            .fetch_add(r.correction_files as u64, Ordering::Relaxed);
                        self.stats.rows.fetch_add(r.rows, Ordering::Relaxed);
                        self.stats.closed_until_us.store(to, Ordering::Relaxed);
                    }
                    Err(e) => {
                        bevy::log::error!("lake: {e}");
                        self.stats.errors.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut l) = self.stats.last_error.lock() {
                            *l = Some(e.to_string());
                        }
                    }
                }
            }
            self.busy.store(false, Ordering::SeqCst);
            if stopping {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// What `lake compact` did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompactReport {
    pub partitions: usize,
    pub files_in: usize,
    pub rows_in: u64,
    pub rows_out: u64,
}

impl CompactReport {
    pub fn duplicates_dropped(&self) -> u64 {
        self.rows_in - self.rows_out
    }
}

/// Merges every partition of the time-partitioned datasets that holds more
/// than one file into one, keeping one row per key. The merged file is
/// written beside the others under a hidden name, renamed into place, and
/// only then are the files it replaces removed (a reader meanwhile may see
/// a row twice, never none).
pub fn compact(lake: &Path) -> Result<CompactReport, HistoryError> {
    let conn = Connection::open_in_memory().map_err(q("opening DuckDB for compaction"))?;
    let mut report = CompactReport::default();
    for t in &TIME_TABLES {
        let root = lake.join(t.name);
        if !root.exists() {
            continue;
        }
        let mut by_dir: std::collections::BTreeMap<PathBuf, Vec<PathBuf>> = Default::default();
        for f in parquet_files(&root)? {
            if let Some(d) = f.parent() {
                by_dir.entry(d.to_path_buf()).or_default().push(f);
            }
        }
        for (dir, files) in by_dir {
            if files.len() < 2 {
                continue;
            }
            let list = files
                .iter()
                .map(|f| format!("'{}'", quote(f)))
                .collect::<Vec<_>>()
                .join(", ");
            let src = format!("read_parquet([{list}], union_by_name = true)");
            let rows_in: i64 = conn
                .query_row(&format!("SELECT count(*) FROM {src}"), [], |r| r.get(0))
                .map_err(q("reading a lake partition"))?;
            let select = if t.key == "*" {
                format!("SELECT DISTINCT * FROM {src}")
            } else {
                format!(
                    "SELECT * FROM {src}
                     QUALIFY row_number() OVER (PARTITION BY {} ORDER BY {}) = 1",
                    t.key, t.keep
                )
            };
            let stamp = crate::ingest::now_us();
            let tmp = dir.join(format!(".compact-{stamp}.parquet.tmp"));
            conn.execute_batch(&format!(
                "COPY ({select} ORDER BY ts_us) TO '{}' (FORMAT parquet)",
                quote(&tmp)
            ))
            .map_err(q("writing a compacted partition"))?;
            let rows_out: i64 = conn
                .query_row(
                    &format!("SELECT count(*) FROM read_parquet('{}')", quote(&tmp)),
                    [],
                    |r| r.get(0),
                )
                .map_err(q("reading a compacted partition"))?;
            let dest = dir.join(format!("compacted-{stamp}.parquet"));
            std::fs::rename(&tmp, &dest).map_err(io(&tmp))?;
            for f in &files {
                std::fs::remove_file(f).map_err(io(f))?;
            }
            report.partitions += 1;
            report.files_in += files.len();
            report.rows_in += rows_in as u64;
            report.rows_out += rows_out as u64;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_US: i64 = 3_600_000_000;

    #[test]
    fn periods_close_after_their_grace() {
        let s = LakeSettings {
            dir: PathBuf::new(),
            site: "a".into(),
            recorder: "r".into(),
            close_every_us: HOUR_US,
            grace_us: 60_000_000,
            tick: Duration::from_secs(1),
        };
        // 14:00:30 with a 60 s grace: 13:00–14:00 is not closed yet.
        let t = 14 * HOUR_US + 30_000_000;
        assert_eq!(closable(t, &s), 13 * HOUR_US);
        assert_eq!(closable(t + 60_000_000, &s), 14 * HOUR_US);
        assert!(check_name("site", "lyon-2").is_ok());
        assert!(check_name("site", "../x").is_err());
        assert!(check_name("site", "").is_err());
    }
}
