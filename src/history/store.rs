//! The history file: opening (with crash recovery), the versioned schema and
//! its migrations, and the stable property ids the hot table uses.
//!
//! A path and the registry in; a [`Store`] (one DuckDB connection, the
//! property id map and an [`OpenReport`]) out. Bevy-free.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use duckdb::{Connection, params};

use super::{HistoryError, sql_err as sql};
use crate::registry::{AssetIdx, AssetRegistry, PropertyRef};

/// The schema this build writes. Older files are migrated on open.
pub const SCHEMA_VERSION: i64 = 8;

/// Each migration takes the file from version `i` to `i + 1` (index 0 creates
/// version 1). Appended columns keep the column order of older files, so a
/// fresh file is built by running the whole chain.
const MIGRATIONS: [&str; 8] = [
    // v1: the first recorder.
    "CREATE TABLE meta (key VARCHAR PRIMARY KEY, value BIGINT NOT NULL);
     CREATE TABLE properties (prop_id INTEGER PRIMARY KEY, asset_id VARCHAR NOT NULL,
                              property VARCHAR NOT NULL, unit VARCHAR);
     -- The hot table: append-only, no key (duplicates are dropped before it).
     CREATE TABLE samples (ts_us BIGINT NOT NULL, prop_id INTEGER NOT NULL, value DOUBLE,
                           text VARCHAR, blob_id BIGINT, quality UTINYINT NOT NULL,
                           origin UTINYINT NOT NULL, received_us BIGINT NOT NULL);
     CREATE TABLE blobs (blob_id BIGINT NOT NULL, ts_us BIGINT NOT NULL, prop_id INTEGER NOT NULL,
                         bin_hz FLOAT, bins_f32le BLOB);
     CREATE TABLE transitions (ts_us BIGINT NOT NULL, asset_id VARCHAR NOT NULL,
                               state VARCHAR NOT NULL, reason VARCHAR);
     CREATE TABLE dead_letters (received_us BIGINT NOT NULL, origin VARCHAR NOT NULL,
                                source VARCHAR NOT NULL, reason VARCHAR NOT NULL,
                                payload_len INTEGER NOT NULL, payload_head BLOB);
     CREATE TABLE mes_events (ts_us BIGINT NOT NULL, received_us BIGINT NOT NULL,
                              event_id VARCHAR NOT NULL, event_type VARCHAR NOT NULL,
                              asset_id VARCHAR, work_order VARCHAR, payload VARCHAR);
     CREATE TABLE discrepancies (ts_us BIGINT NOT NULL, discrepancy_id VARCHAR NOT NULL,
                                 asset_id VARCHAR, rule VARCHAR NOT NULL, status VARCHAR NOT NULL,
                                 detail VARCHAR);",
    // v2: work-order context, a commit sequence, rollups, keyframes, bookmarks.
    "ALTER TABLE samples ADD COLUMN work_order VARCHAR;
     ALTER TABLE samples ADD COLUMN seq BIGINT;
     UPDATE samples SET seq = rowid;
     CREATE TABLE work_orders (ts_us BIGINT NOT NULL, asset_id VARCHAR NOT NULL, work_order VARCHAR);
     CREATE TABLE rollup_1s (bucket_us BIGINT NOT NULL, prop_id INTEGER NOT NULL, n BIGINT NOT NULL,
                             vmin DOUBLE, vmax DOUBLE, vsum DOUBLE);
     CREATE TABLE rollup_1m (bucket_us BIGINT NOT NULL, prop_id INTEGER NOT NULL, n BIGINT NOT NULL,
                             vmin DOUBLE, vmax DOUBLE, vsum DOUBLE);
     CREATE TABLE keyframes (ts_us BIGINT NOT NULL, prop_id INTEGER NOT NULL, value_ts_us BIGINT NOT NULL,
                             value DOUBLE, text VARCHAR, blob_id BIGINT, quality UTINYINT NOT NULL,
                             origin UTINYINT NOT NULL);
     CREATE TABLE bookmarks (ts_us BIGINT NOT NULL, name VARCHAR NOT NULL, created_us BIGINT NOT NULL);
     INSERT INTO meta VALUES ('rollup_1s_seq', 0), ('rollup_1m_seq', 0);
     -- Readable timestamps for the duckdb CLI and Python.
     CREATE VIEW samples_readable AS
       SELECT make_timestamp(s.ts_us) AS ts_utc, p.asset_id, p.property, p.unit, s.value, s.text,
              s.blob_id, s.quality, s.origin, make_timestamp(s.received_us) AS received_utc, s.work_order
       FROM samples s JOIN properties p USING (prop_id);
     CREATE VIEW transitions_readable AS
       SELECT make_timestamp(ts_us) AS ts_utc, asset_id, state, reason FROM transitions;",
    // v3: MES outages (context-unavailable samples, back-filled later) and
    // imported production schedules.
    "ALTER TABLE samples ADD COLUMN context_unavailable BOOLEAN;
     CREATE TABLE mes_outages (start_us BIGINT NOT NULL, end_us BIGINT, backfilled_rows BIGINT);
     CREATE TABLE schedules (imported_us BIGINT NOT NULL, schedule_id VARCHAR NOT NULL,
                             source VARCHAR NOT NULL, work_order VARCHAR NOT NULL, product VARCHAR,
                             quantity DOUBLE, unit VARCHAR, asset_id VARCHAR, routing VARCHAR,
                             earliest_start_us BIGINT, latest_end_us BIGINT);
     CREATE OR REPLACE VIEW samples_readable AS
       SELECT make_timestamp(s.ts_us) AS ts_utc, p.asset_id, p.property, p.unit, s.value, s.text,
              s.blob_id, s.quality, s.origin, make_timestamp(s.received_us) AS received_utc,
              s.work_order, s.context_unavailable
       FROM samples s JOIN properties p USING (prop_id);",
    // v4: the readable views give zone-aware times (TIMESTAMPTZ), so the
    // duckdb CLI, Python and Parquet readers show and convert them right.
    // `to_timestamp(µs / 1e6)` is epoch-based (no session time zone in it)
    // and gives back every microsecond exactly.
    "CREATE OR REPLACE VIEW samples_readable AS
       SELECT to_timestamp(s.ts_us / 1e6) AS ts, p.asset_id, p.property, p.unit, s.value, s.text,
              s.blob_id, s.quality, s.origin, to_timestamp(s.received_us / 1e6) AS received,
              s.work_order, s.context_unavailable, s.ts_us
       FROM samples s JOIN properties p USING (prop_id);
     CREATE OR REPLACE VIEW transitions_readable AS
       SELECT to_timestamp(ts_us / 1e6) AS ts, asset_id, state, reason, ts_us FROM transitions;
     CREATE VIEW mes_events_readable AS
       SELECT to_timestamp(ts_us / 1e6) AS ts, to_timestamp(received_us / 1e6) AS received,
              event_id, event_type, asset_id, work_order, payload FROM mes_events;
     CREATE VIEW dead_letters_readable AS
       SELECT to_timestamp(received_us / 1e6) AS received, origin, source, reason, payload_len
       FROM dead_letters;
     CREATE VIEW discrepancies_readable AS
       SELECT to_timestamp(ts_us / 1e6) AS ts, discrepancy_id, asset_id, rule, status, detail
       FROM discrepancies;
     CREATE VIEW mes_outages_readable AS
       SELECT to_timestamp(start_us / 1e6) AS start, to_timestamp(end_us / 1e6) AS \"end\",
              backfilled_rows FROM mes_outages;",
    // v5: samples a source sent late from its buffer (Sparkplug
    // `is_historical`), recorded but never the live value.
    "ALTER TABLE samples ADD COLUMN historical BOOLEAN;
     CREATE OR REPLACE VIEW samples_readable AS
       SELECT to_timestamp(s.ts_us / 1e6) AS ts, p.asset_id, p.property, p.unit, s.value, s.text,
              s.blob_id, s.quality, s.origin, to_timestamp(s.received_us / 1e6) AS received,
              s.work_order, s.context_unavailable, s.ts_us, s.historical
       FROM samples s JOIN properties p USING (prop_id);",
    // v6: the MQTT packet id of samples stamped at arrival, so a broker's
    // redelivery after a restart is known as one.
    "ALTER TABLE samples ADD COLUMN mqtt_pkid USMALLINT;",
    // v7: the value's type as the source sent it: booleans (1/0 in `value`)
    // and 64-bit integers (exact in `ivalue`) come back as such.
    "ALTER TABLE samples ADD COLUMN ivalue BIGINT;
     ALTER TABLE samples ADD COLUMN vtype UTINYINT;
     ALTER TABLE keyframes ADD COLUMN ivalue BIGINT;
     ALTER TABLE keyframes ADD COLUMN vtype UTINYINT;
     CREATE OR REPLACE VIEW samples_readable AS
       SELECT to_timestamp(s.ts_us / 1e6) AS ts, p.asset_id, p.property, p.unit, s.value, s.text,
              s.blob_id, s.quality, s.origin, to_timestamp(s.received_us / 1e6) AS received,
              s.work_order, s.context_unavailable, s.ts_us, s.historical,
              CASE s.vtype WHEN 1 THEN 'boolean' WHEN 2 THEN 'integer' END AS value_type,
              CASE WHEN s.vtype = 1 THEN s.value <> 0 END AS boolean_value,
              s.ivalue AS integer_value
       FROM samples s JOIN properties p USING (prop_id);",
    // v8: parts entering stations (from each `part_serial` sample, for
    // genealogy without scanning the samples), and the append-only,
    // hash-chained audit trail.
    "CREATE TABLE part_events (ts_us BIGINT NOT NULL, asset_id VARCHAR NOT NULL,
                               serial VARCHAR NOT NULL, work_order VARCHAR);
     INSERT INTO part_events
       SELECT s.ts_us, p.asset_id, s.text, s.work_order FROM samples s JOIN properties p USING (prop_id)
       WHERE p.property = 'part_serial' AND s.text IS NOT NULL;
     CREATE TABLE audit_log (seq BIGINT NOT NULL, ts_us BIGINT NOT NULL, time_zone VARCHAR NOT NULL,
                             kind VARCHAR NOT NULL, subject VARCHAR NOT NULL, field VARCHAR NOT NULL,
                             value VARCHAR, previous_value VARCHAR, signer VARCHAR, meaning VARCHAR,
                             prev_hash VARCHAR NOT NULL, hash VARCHAR NOT NULL);
     CREATE VIEW audit_log_readable AS
       SELECT seq, to_timestamp(ts_us / 1e6) AS ts, time_zone, kind, subject, field, value,
              previous_value, signer, meaning, hash FROM audit_log;
     CREATE VIEW part_events_readable AS
       SELECT to_timestamp(ts_us / 1e6) AS ts, asset_id, serial, work_order, ts_us FROM part_events;",
];

/// What happened when the file was opened.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OpenReport {
    pub path: PathBuf,
    /// The file did not exist (or was set aside) and was created.
    pub created: bool,
    /// The file was at this older schema version and was migrated.
    pub migrated_from: Option<i64>,
    /// The file could not be opened (e.g. its WAL could not be replayed) and
    /// was moved here, with its WAL, and never deleted.
    pub set_aside: Option<SetAside>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SetAside {
    pub file: PathBuf,
    pub wal: Option<PathBuf>,
    pub reason: String,
}

impl OpenReport {
    /// One line for the log and the UI.
    pub fn summary(&self) -> String {
        let mut s = format!("history {}", self.path.display());
        if self.created {
            s.push_str(" (new file)");
        }
        if let Some(v) = self.migrated_from {
            s.push_str(&format!(" (migrated from schema {v} to {SCHEMA_VERSION})"));
        }
        if let Some(a) = &self.set_aside {
            s.push_str(&format!(
                "; the previous file could not be opened ({}) and was set aside as {}",
                a.reason,
                a.file.display()
            ));
        }
        s
    }
}

/// The most memory DuckDB's buffer pool takes for one history file, MiB.
pub const MEMORY_LIMIT_MIB: u64 = 1024;

/// Registry property ↔ the stable integer id the history uses. Ids are kept
/// per (asset id, property name), so they survive registry edits.
#[derive(Debug, Clone, Default)]
pub struct PropIds {
    by_ref: HashMap<PropertyRef, i32>,
    by_id: HashMap<i32, PropertyRef>,
}

impl PropIds {
    pub fn id(&self, r: PropertyRef) -> Option<i32> {
        self.by_ref.get(&r).copied()
    }
    pub fn property(&self, id: i32) -> Option<PropertyRef> {
        self.by_id.get(&id).copied()
    }
    pub fn len(&self) -> usize {
        self.by_ref.len()
    }
    pub fn is_empty(&self) -> bool {
        self.by_ref.is_empty()
    }
    /// Ids of every property of one asset.
    pub fn of_asset(&self, asset: AssetIdx) -> Vec<(u32, i32)> {
        let mut v: Vec<(u32, i32)> = self
            .by_ref
            .iter()
            .filter(|(r, _)| r.asset == asset)
            .map(|(r, id)| (r.property, *id))
            .collect();
        v.sort_unstable();
        v
    }
}

/// An open history file.
pub struct Store {
    pub conn: Connection,
    pub props: Arc<PropIds>,
    pub report: OpenReport,
}

/// The WAL DuckDB keeps next to `path`.
pub fn wal_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".wal");
    PathBuf::from(p)
}

/// The one failure a file is set aside for: DuckDB could not replay its
/// write-ahead log (torn or corrupt after a crash). The file itself is then
/// unusable as it is, and a new one keeps the recorder going.
fn is_wal_replay_failure(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("wal")
        && (m.contains("replay") || m.contains("corrupt") || m.contains("checksum"))
        && !m.contains("permission denied")
}

fn is_lock_conflict(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("could not set lock") || m.contains("conflicting lock")
}

impl Store {
    /// Opens (or creates) the file, migrates it, and syncs the property ids
    /// with `registry`. A file whose write-ahead log DuckDB cannot replay is
    /// set aside (with every `<file>.wal*`) and a new one started; any other
    /// refusal (another process holds it, permissions, a newer storage
    /// version, not a DuckDB file) is an error and the file is left as it is.
    pub fn open(path: &Path, registry: &AssetRegistry) -> Result<Self, HistoryError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| HistoryError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let mut report = OpenReport {
            path: path.to_path_buf(),
            created: !path.exists(),
            ..OpenReport::default()
        };
        let conn = match Connection::open(path) {
            Ok(c) => c,
            Err(e) => {
                let message = e.to_string();
                if is_lock_conflict(&message) {
                    return Err(HistoryError::InUse {
                        path: path.to_path_buf(),
                        message,
                    });
                }
                if !path.exists() || !is_wal_replay_failure(&message) {
                    return Err(HistoryError::Open {
                        path: path.to_path_buf(),
                        source: e,
                    });
                }
                let aside = set_aside(path, &message)?;
                report.set_aside = Some(aside);
                report.created = true;
                Connection::open(path).map_err(|source| HistoryError::Open {
                    path: path.to_path_buf(),
                    source,
                })?
            }
        };
        // DuckDB's buffer pool would otherwise grow towards 80 % of the
        // machine's memory on a recorder that runs for weeks; past this it
        // evicts clean pages (and spills large queries to disk).
        conn.execute_batch(&format!("SET memory_limit = '{MEMORY_LIMIT_MIB}MiB'"))
            .map_err(sql("setting the memory limit"))?;
        report.migrated_from = migrate(&conn)?;
        let props = Arc::new(sync_properties(&conn, registry)?);
        Ok(Self {
            conn,
            props,
            report,
        })
    }

    /// A second connection to the same database, for a reader thread.
    pub fn reader(&self) -> Result<Connection, HistoryError> {
        self.conn.try_clone().map_err(sql("opening a reader"))
    }
}

/// Moves a file DuckDB cannot open (and its WAL) out of the way, next to it,
/// with the time in the name. Nothing is deleted.
fn set_aside(path: &Path, reason: &str) -> Result<SetAside, HistoryError> {
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "history.duckdb".into());
    let file = path.with_file_name(format!("{name}.damaged-{stamp}"));
    std::fs::rename(path, &file).map_err(|source| HistoryError::SetAside {
        path: path.to_path_buf(),
        source,
    })?;
    // The WAL and whatever DuckDB keeps beside it (`.wal.checkpoint`,
    // `.wal.recovery`, …) go with the file.
    let wal_name = format!("{name}.wal");
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut wal_to = None;
    let entries = std::fs::read_dir(dir).map_err(|source| HistoryError::SetAside {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries.flatten() {
        let from_name = entry.file_name().to_string_lossy().into_owned();
        let Some(suffix) = from_name.strip_prefix(&wal_name) else {
            continue;
        };
        let to = path.with_file_name(format!("{name}.damaged-{stamp}.wal{suffix}"));
        std::fs::rename(entry.path(), &to).map_err(|source| HistoryError::SetAside {
            path: entry.path(),
            source,
        })?;
        if suffix.is_empty() {
            wal_to = Some(to);
        }
    }
    let reason = reason.lines().next().unwrap_or(reason).to_string();
    eprintln!(
        "history: {} could not be opened ({reason}); it was set aside as {} and a new file started",
        path.display(),
        file.display()
    );
    Ok(SetAside {
        file,
        wal: wal_to,
        reason,
    })
}

/// The schema version of an open file (0 for an empty one).
pub fn schema_version(conn: &Connection) -> Result<i64, HistoryError> {
    let has_meta: i64 = conn
        .query_row(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta'",
            [],
            |r| r.get(0),
        )
        .map_err(sql("reading the schema version"))?;
    if has_meta == 0 {
        return Ok(0);
    }
    let v: Option<i64> = conn
        .query_row(
            "SELECT max(value) FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .map_err(sql("reading the schema version"))?;
    Ok(v.unwrap_or(0))
}

/// Brings the file to `target` (at most [`SCHEMA_VERSION`]), one version per
/// transaction. Returns the version it started from when it migrated.
pub fn migrate_to(conn: &Connection, target: i64) -> Result<Option<i64>, HistoryError> {
    let found = schema_version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(HistoryError::TooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for v in found..target {
        let step = MIGRATIONS[v as usize];
        let run = || -> duckdb::Result<()> {
            conn.execute_batch("BEGIN TRANSACTION")?;
            conn.execute_batch(step)?;
            conn.execute(
                "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                params![v + 1],
            )?;
            conn.execute_batch("COMMIT")
        };
        if let Err(source) = run() {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(HistoryError::Migrate {
                from: v,
                to: v + 1,
                source,
            });
        }
    }
    Ok((found > 0 && found < target).then_some(found))
}

fn migrate(conn: &Connection) -> Result<Option<i64>, HistoryError> {
    migrate_to(conn, SCHEMA_VERSION)
}

/// Gives every registry property an id, keeping the ids already in the file.
fn sync_properties(conn: &Connection, registry: &AssetRegistry) -> Result<PropIds, HistoryError> {
    let mut known: HashMap<(String, String), i32> = HashMap::new();
    let mut max_id = 0i32;
    {
        let mut st = conn
            .prepare("SELECT prop_id, asset_id, property FROM properties")
            .map_err(sql("reading property ids"))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, i32>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(sql("reading property ids"))?;
        for row in rows {
            let (id, a, p) = row.map_err(sql("reading property ids"))?;
            max_id = max_id.max(id);
            known.insert((a, p), id);
        }
    }
    let mut ids = PropIds::default();
    let mut new_rows = Vec::new();
    for (ai, a) in registry.assets().iter().enumerate() {
        for (pi, p) in a.properties.iter().enumerate() {
            let r = PropertyRef {
                asset: AssetIdx(ai as u32),
                property: pi as u32,
            };
            let id = match known.get(&(a.id.clone(), p.name.clone())) {
                Some(&id) => id,
                None => {
                    max_id += 1;
                    new_rows.push((max_id, a.id.clone(), p.name.clone(), p.unit.clone()));
                    max_id
                }
            };
            ids.by_ref.insert(r, id);
            ids.by_id.insert(id, r);
        }
    }
    if !new_rows.is_empty() {
        let mut app = conn
            .appender("properties")
            .map_err(sql("adding property ids"))?;
        for (id, a, p, u) in &new_rows {
            app.append_row(params![id, a, p, u])
                .map_err(sql("adding property ids"))?;
        }
        app.flush().map_err(sql("adding property ids"))?;
    }
    Ok(ids)
}
