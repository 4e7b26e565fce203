//! The history writer: one named thread that owns the write connection.
//!
//! In: [`Recorded`] samples and dead letters from the ingest tap (each with
//! its MQTT ack), and [`WriterMsg`]s from the app (work-order context, MES
//! events and link state, discrepancies, bookmarks, flush requests). Out:
//! rows appended in batches, one transaction per batch; the acks of a batch
//! are sent only after its commit. [`WriterStats`] reports the backlog and
//! what was written.
//!
//! This file holds the batch loop and the acks; the rest is split by
//! responsibility:
//! - `rows`: row encoding, the Appender SQL, in-memory duplicate keys,
//!   state transitions;
//! - `keyframes`: keyframes and late-sample patching;
//! - `housekeeper`: rollups and checkpoints, on their own thread;
//! - `mes_context`: the work-order context of each sample and the outage
//!   back-fill, driven by the messages `mes` sends.

mod housekeeper;
mod keyframes;
mod mes_context;
mod rows;

pub(crate) use rows::{VTYPE_BOOL, VTYPE_INT};

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, never, select};
use duckdb::{Connection, params};

use super::store::{PropIds, Store};
use super::{HistoryError, origin_code, quality_code, sql_err as q};
use crate::ingest::{Ack, DeadLetter, Recorded, Sample, now_us};
use crate::registry::AssetRegistry;
use housekeeper::{Housekeeper, rollup};
use keyframes::{Keyframes, LastRow};
use mes_context::MesContext;
use rows::{BlobRow, Dedupe, SampleRow, TransitionRow, Transitions};

/// Writer tuning, from `[history]` in the config.
#[derive(Debug, Clone)]
pub struct WriterSettings {
    pub flush_interval: Duration,
    pub min_commit_gap: Duration,
    pub max_batch_rows: usize,
    pub checkpoint_interval: Duration,
    /// A keyframe at least this often (source time)…
    pub keyframe_interval_us: i64,
    /// …and at least every this many rows, so a state-at-T query never scans
    /// more than this many samples past its keyframe.
    pub keyframe_every_rows: u64,
    /// How often the 1 s and 1 min rollups catch up with the samples.
    pub rollup_1s_every: Duration,
    pub rollup_1m_every: Duration,
    /// Idempotency keys kept in memory.
    pub dedupe_keys: usize,
    /// The Parquet lake the closed periods go to (none: no lake).
    pub lake: Option<super::lake::LakeSettings>,
}

impl Default for WriterSettings {
    fn default() -> Self {
        Self {
            flush_interval: Duration::from_millis(100),
            min_commit_gap: Duration::from_millis(2),
            max_batch_rows: 50_000,
            checkpoint_interval: Duration::from_secs(300),
            keyframe_interval_us: 60_000_000,
            keyframe_every_rows: 100_000,
            rollup_1s_every: Duration::from_secs(1),
            rollup_1m_every: Duration::from_secs(10),
            dedupe_keys: 1_000_000,
            lake: None,
        }
    }
}

impl WriterSettings {
    pub fn from_config(c: &crate::config::HistoryConfig) -> Self {
        Self {
            flush_interval: Duration::from_millis(c.flush_interval_ms),
            min_commit_gap: Duration::from_millis(c.min_commit_gap_ms),
            max_batch_rows: c.max_batch_rows,
            checkpoint_interval: Duration::from_secs(c.checkpoint_interval_s.max(1)),
            keyframe_interval_us: c.keyframe_interval_s as i64 * 1_000_000,
            ..Self::default()
        }
    }
}

/// Context and events from the app side.
#[derive(Debug)]
pub enum WriterMsg {
    /// The work order an asset is running from `ts_us` on (`None`: none).
    WorkOrder {
        asset_id: String,
        work_order: Option<String>,
        ts_us: i64,
    },
    MesEvent {
        ts_us: i64,
        event_id: String,
        event_type: String,
        asset_id: Option<String>,
        work_order: Option<String>,
        payload: String,
    },
    Discrepancy {
        ts_us: i64,
        discrepancy_id: String,
        asset_id: Option<String>,
        rule: String,
        status: String,
        detail: String,
    },
    Bookmark {
        ts_us: i64,
        name: String,
    },
    /// A record for the audit trail (chained to the one before when written).
    Audit(crate::history::audit::AuditEntry),
    /// A production schedule as the MES stated it at `ts_us` (a poll that
    /// changed it), replacing an earlier one with the same id.
    Schedule {
        ts_us: i64,
        source: String,
        schedule: crate::contract::Schedule,
    },
    /// The MES became unreachable (`up: false`, from `ts_us` on) or came
    /// back. While it is away, samples are marked context-unavailable.
    MesLink {
        up: bool,
        ts_us: i64,
    },
    /// The MES is back and its missed events are applied: fill in the work
    /// order of every context-unavailable sample in the range from the
    /// work-order history, and close the outage.
    Backfill {
        from_us: i64,
        to_us: i64,
    },
    /// Commit what is queued now and answer when it is durable.
    Flush(Sender<()>),
    /// Commit what is queued, checkpoint and stop.
    Shutdown,
}

/// What the writer has done, shared with the UI and benchmarks.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub samples_written: AtomicU64,
    pub rows_written: AtomicU64,
    pub commits: AtomicU64,
    pub duplicates_dropped: AtomicU64,
    pub dead_letters: AtomicU64,
    pub acks_sent: AtomicU64,
    pub backlog: AtomicU64,
    pub last_commit_us: AtomicU64,
    pub last_commit_rows: AtomicU64,
    pub commit_errors: AtomicU64,
    /// Since when (µs since the Unix epoch) commits keep failing; 0 while
    /// writing works. Meanwhile nothing new is taken in and no ack goes out.
    pub failing_since_us: AtomicI64,
    /// Rows the database refused on their own (stored as dead letters when
    /// they were samples, else logged).
    pub poison_rows: AtomicU64,
    pub checkpoints: AtomicU64,
    pub keyframes: AtomicU64,
    pub rollup_passes: AtomicU64,
    /// Memory DuckDB holds for this file (its buffer pool, capped by
    /// `store::MEMORY_LIMIT_MIB`), read every few seconds.
    pub duckdb_memory_bytes: AtomicU64,
    /// Source-time range of the recorded samples (0 = none yet).
    pub first_ts_us: AtomicI64,
    pub last_ts_us: AtomicI64,
    pub last_error: Mutex<Option<String>>,
    /// Receipt → commit of each sample, µs (the wait an ack has behind the
    /// disk); `take_commit_latency` empties it.
    commit_latency: Mutex<Option<hdrhistogram::Histogram<u64>>>,
}

/// p50, p99 and max of a latency histogram, µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl WriterStats {
    /// Receipt → commit latency of the samples committed since the last
    /// call (None when none were).
    pub fn take_commit_latency(&self) -> Option<LatencySummary> {
        let mut slot = self
            .commit_latency
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let h = slot.take()?;
        (!h.is_empty()).then(|| LatencySummary {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
        })
    }

    fn note_commit(&self, received_us: impl Iterator<Item = i64>, committed_us: i64) {
        let mut slot = self
            .commit_latency
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 2).ok();
        }
        if let Some(h) = slot.as_mut() {
            for r in received_us {
                h.saturating_record(committed_us.saturating_sub(r).max(1) as u64);
            }
        }
    }

    pub fn range_us(&self) -> Option<(i64, i64)> {
        let a = self.first_ts_us.load(Ordering::Relaxed);
        let b = self.last_ts_us.load(Ordering::Relaxed);
        (a != 0 && b != 0).then_some((a, b))
    }
    fn widen(&self, ts_us: i64) {
        let f = self.first_ts_us.load(Ordering::Relaxed);
        if f == 0 || ts_us < f {
            self.first_ts_us.store(ts_us, Ordering::Relaxed);
        }
        if ts_us > self.last_ts_us.load(Ordering::Relaxed) {
            self.last_ts_us.store(ts_us, Ordering::Relaxed);
        }
    }
}

/// The running writer. Dropping every sender stops it after a last commit
/// and checkpoint; `join` waits for that.
pub struct HistoryWriter {
    pub recorder: Sender<Recorded>,
    pub app: Sender<WriterMsg>,
    pub stats: Arc<WriterStats>,
    thread: Option<JoinHandle<()>>,
    housekeeper: Option<JoinHandle<()>>,
    stop_housekeeper: Arc<AtomicBool>,
    /// The lake's counters, when there is a lake.
    pub lake: Option<Arc<super::lake::LakeStats>>,
    lake_thread: Option<JoinHandle<()>>,
    stop_lake: Arc<AtomicBool>,
    hold_lake: Arc<AtomicBool>,
    lake_busy: Arc<AtomicBool>,
}

impl Drop for HistoryWriter {
    fn drop(&mut self) {
        self.stop_housekeeper.store(true, Ordering::Relaxed);
        self.stop_lake.store(true, Ordering::Release);
    }
}

impl HistoryWriter {
    /// Starts the writer thread on `store`'s connection.
    pub fn spawn(
        store: Store,
        registry: Arc<AssetRegistry>,
        settings: WriterSettings,
        capacity: usize,
    ) -> Result<Self, HistoryError> {
        let (rec_tx, rec_rx) = crossbeam_channel::bounded(capacity);
        let (app_tx, app_rx) = crossbeam_channel::bounded(4_096);
        let stats = Arc::new(WriterStats::default());
        let hk_conn = store.reader()?;
        let mut w = Writer::new(store, registry, settings.clone(), stats.clone())?;
        let hk = Housekeeper {
            conn: hk_conn,
            committed: w.committed.clone(),
            commit_lock: w.commit_lock.clone(),
            stats: stats.clone(),
            settings,
            stop: Arc::new(AtomicBool::new(false)),
        };
        let stop_housekeeper = hk.stop.clone();
        let stop_lake = Arc::new(AtomicBool::new(false));
        let hold_lake = Arc::new(AtomicBool::new(false));
        let lake_busy = Arc::new(AtomicBool::new(false));
        let (lake, lake_thread) = match &hk.settings.lake {
            Some(ls) => {
                let stats = Arc::new(super::lake::LakeStats::default());
                let exporter = super::lake::LakeExporter {
                    conn: hk
                        .conn
                        .try_clone()
                        .map_err(q("opening the lake's connection"))?,
                    settings: ls.clone(),
                    committed: w.committed.clone(),
                    stats: stats.clone(),
                    stop: stop_lake.clone(),
                    hold: hold_lake.clone(),
                    busy: lake_busy.clone(),
                    commit_lock: w.commit_lock.clone(),
                };
                let t = std::thread::Builder::new()
                    .name("history-lake".into())
                    .spawn(move || exporter.run())
                    .map_err(|source| HistoryError::Thread { source })?;
                (Some(stats), Some(t))
            }
            None => (None, None),
        };
        let housekeeper = std::thread::Builder::new()
            .name("history-rollup".into())
            .spawn(move || hk.run())
            .map_err(|source| HistoryError::Thread { source })?;
        let thread = std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || w.run(rec_rx, app_rx))
            .map_err(|source| HistoryError::Thread { source })?;
        Ok(Self {
            recorder: rec_tx,
            app: app_tx,
            stats,
            thread: Some(thread),
            housekeeper: Some(housekeeper),
            stop_housekeeper,
            lake,
            lake_thread,
            stop_lake,
            hold_lake,
            lake_busy,
        })
    }

    /// Commits everything sent so far; returns once it is on disk.
    pub fn flush(&self) -> Result<(), HistoryError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.app
            .send(WriterMsg::Flush(tx))
            .map_err(|_| HistoryError::WriterGone)?;
        rx.recv().map_err(|_| HistoryError::WriterGone)
    }

    /// Commits what is queued, checkpoints and waits for the thread to end;
    /// then the lake (if any) takes everything committed, up to now.
    /// Samples still in flight after this are not acknowledged (the broker
    /// delivers them again next time).
    pub fn join(mut self) {
        // The rollup thread first, so the final checkpoint has the file alone.
        self.stop_housekeeper.store(true, Ordering::Relaxed);
        if let Some(t) = self.housekeeper.take() {
            let _ = t.join();
        }
        // No lake pass during the last commit and checkpoint.
        self.hold_lake.store(true, Ordering::SeqCst);
        while self.lake_thread.is_some() && self.lake_busy.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.app.send(WriterMsg::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // The lake last: it closes everything committed, up to now.
        self.stop_lake.store(true, Ordering::Release);
        if let Some(t) = self.lake_thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Default)]
struct Batch {
    samples: Vec<SampleRow>,
    /// Indexes into `samples` of rows older than the last keyframe: the
    /// keyframes after them are patched so state at T stays exact.
    late: Vec<usize>,
    blobs: Vec<BlobRow>,
    transitions: Vec<TransitionRow>,
    dead: Vec<DeadLetter>,
    app: Vec<WriterMsg>,
    acks: Vec<Ack>,
    replies: Vec<Sender<()>>,
    started: Option<Instant>,
}

impl Batch {
    fn rows(&self) -> usize {
        self.samples.len() + self.blobs.len() + self.transitions.len() + self.dead.len()
    }
    fn is_empty(&self) -> bool {
        self.rows() == 0 && self.app.is_empty() && self.acks.is_empty() && self.replies.is_empty()
    }
}

struct Writer {
    conn: Connection,
    props: Arc<PropIds>,
    settings: WriterSettings,
    stats: Arc<WriterStats>,
    transitions: Transitions,
    /// `part_serial` prop id → asset id.
    part_props: std::collections::HashMap<i32, String>,
    /// The plant's zone, for the audit records the writer makes.
    time_zone: String,
    dedupe: Dedupe,
    keyframes: Keyframes,
    mes: MesContext,
    next_seq: i64,
    committed_seq: i64,
    next_blob_id: i64,
    max_ts_us: i64,
    batch: Batch,
    last_commit: Instant,
    /// Next seq not yet committed, for the rollup thread.
    committed: Arc<AtomicI64>,
    /// Held while a batch is written and committed, and by a checkpoint.
    commit_lock: Arc<Mutex<()>>,
    retry_after: Option<Instant>,
    /// The next wait after a failed commit (doubles up to 5 s).
    backoff: Duration,
    /// When the current run of failed commits began.
    failing_since: Option<Instant>,
    /// The batch in memory was already searched for rows the database
    /// refuses on their own.
    batch_checked: bool,
    registry: Arc<AssetRegistry>,
    shutting_down: bool,
}

/// The first wait after a failed commit.
const FIRST_RETRY: Duration = Duration::from_millis(250);
/// The longest wait between retries of a failing commit.
const MAX_RETRY: Duration = Duration::from_secs(5);

/// A failure of the disk or the file (full, too large, read-only, I/O),
/// not of one row: retried as it is, never split.
fn is_storage_failure(msg: &str) -> bool {
    [
        "Could not write",
        "No space left",
        "File too large",
        "Disk quota",
        "IO Error",
        "Read-only file system",
        "Failed to commit",
        "invalidated",
    ]
    .iter()
    .any(|m| msg.contains(m))
}

impl Writer {
    fn new(
        store: Store,
        registry: Arc<AssetRegistry>,
        settings: WriterSettings,
        stats: Arc<WriterStats>,
    ) -> Result<Self, HistoryError> {
        let Store { conn, props, .. } = store;
        let next_seq: i64 = conn
            .query_row("SELECT coalesce(max(seq) + 1, 0) FROM samples", [], |r| {
                r.get(0)
            })
            .map_err(q("reading the last sequence number"))?;
        let next_blob_id: i64 = conn
            .query_row("SELECT coalesce(max(blob_id) + 1, 1) FROM blobs", [], |r| {
                r.get(0)
            })
            .map_err(q("reading the last blob id"))?;
        let (first, last): (Option<i64>, Option<i64>) = conn
            .query_row("SELECT min(ts_us), max(ts_us) FROM samples", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(q("reading the recorded range"))?;
        if let (Some(a), Some(b)) = (first, last) {
            stats.widen(a);
            stats.widen(b);
        }
        let transitions = Transitions::load(&conn, &registry, &props)?;
        let part_props = rows::part_props(&registry, &props);

        let mes = MesContext::load(&conn, &registry)?;
        let mut dedupe = Dedupe::new(settings.dedupe_keys);
        if let Some(last) = last {
            dedupe.seed(&conn, last)?;
        }
        let keyframes = Keyframes::load(&conn, &props)?;
        // Rows a crash left without rollups are rolled up before anything new.
        rollup(&conn, next_seq, "rollup_1s", "rollup_1s_seq", 1_000_000)?;
        rollup(&conn, next_seq, "rollup_1m", "rollup_1m_seq", 60_000_000)?;
        Ok(Self {
            conn,
            props,
            settings,
            stats,
            transitions,
            part_props,
            time_zone: registry.plant().time_zone.clone(),
            dedupe,
            keyframes,
            mes,
            next_seq,
            committed_seq: next_seq,
            next_blob_id,
            max_ts_us: last.unwrap_or(0),
            batch: Batch::default(),
            last_commit: Instant::now(),
            committed: Arc::new(AtomicI64::new(next_seq)),
            commit_lock: Arc::new(Mutex::new(())),
            retry_after: None,
            backoff: FIRST_RETRY,
            failing_since: None,
            batch_checked: false,
            registry,
            shutting_down: false,
        })
    }

    fn run(&mut self, rec_rx: Receiver<Recorded>, app_rx: Receiver<WriterMsg>) {
        let mut rec_rx = Some(rec_rx);
        let mut app_rx = Some(app_rx);
        let nothing_r: Receiver<Recorded> = never();
        let nothing_a: Receiver<WriterMsg> = never();
        loop {
            if rec_rx.is_none() && app_rx.is_none() || self.shutting_down {
                break;
            }
            let wait = self.wait_time();
            // While a commit keeps failing, or the batch is full, nothing new
            // is taken in: memory stays bounded, the channel fills, the
            // adapters slow down and the broker keeps the unacknowledged rest.
            let hold =
                self.retry_after.is_some() || self.batch.rows() >= self.settings.max_batch_rows;
            let r = match &rec_rx {
                Some(r) if !hold => r,
                _ => &nothing_r,
            };
            let a = app_rx.as_ref().unwrap_or(&nothing_a);
            select! {
                recv(r) -> m => match m {
                    Ok(m) => self.push_recorded(m),
                    Err(_) => rec_rx = None,
                },
                recv(a) -> m => match m {
                    Ok(m) => self.push_app(m),
                    Err(_) => app_rx = None,
                },
                default(wait) => {}
            }
            // Take whatever else is already queued, up to a full batch.
            if let Some(r) = &rec_rx {
                while self.retry_after.is_none() && self.batch.rows() < self.settings.max_batch_rows
                {
                    match r.try_recv() {
                        Ok(m) => self.push_recorded(m),
                        Err(_) => break,
                    }
                }
                self.stats.backlog.store(r.len() as u64, Ordering::Relaxed);
            }
            if let Some(a) = &app_rx {
                while let Ok(m) = a.try_recv() {
                    self.push_app(m);
                }
            }
            let queue_empty = rec_rx.as_ref().is_none_or(|r| r.is_empty());
            if self.commit_due(queue_empty) {
                self.commit();
            }
        }
        // Shutting down: everything queued is committed, rolled up, checkpointed.
        for _ in 0..3 {
            if self.batch.is_empty() {
                break;
            }
            self.retry_after = None;
            self.commit();
        }
        let hi = self.committed_seq;
        let _ = rollup(&self.conn, hi, "rollup_1s", "rollup_1s_seq", 1_000_000);
        let _ = rollup(&self.conn, hi, "rollup_1m", "rollup_1m_seq", 60_000_000);
        if let Err(e) = self.conn.execute_batch("CHECKPOINT") {
            self.note_error(format!("final checkpoint: {e}"));
        }
    }

    fn wait_time(&self) -> Duration {
        let tick = Duration::from_millis(250);
        if let Some(t) = self.retry_after {
            // A failed commit waits out its back-off instead of spinning.
            return t
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
                .min(tick);
        }
        match self.batch.started {
            None => tick,
            Some(t) => {
                let age_limit =
                    (t + self.settings.flush_interval).saturating_duration_since(Instant::now());
                let gap = (self.last_commit + self.settings.min_commit_gap)
                    .saturating_duration_since(Instant::now());
                age_limit.min(gap.max(Duration::from_micros(200))).min(tick)
            }
        }
    }

    fn commit_due(&self, queue_empty: bool) -> bool {
        let Some(started) = self.batch.started else {
            return false;
        };
        if self.retry_after.is_some_and(|t| Instant::now() < t) {
            return false;
        }
        if !self.batch.replies.is_empty() {
            return true;
        }
        let now = Instant::now();
        self.batch.rows() >= self.settings.max_batch_rows
            || now.duration_since(started) >= self.settings.flush_interval
            || (queue_empty && now.duration_since(self.last_commit) >= self.settings.min_commit_gap)
    }

    fn start_batch(&mut self) {
        if self.batch.started.is_none() {
            self.batch.started = Some(Instant::now());
        }
    }

    fn push_recorded(&mut self, m: Recorded) {
        self.start_batch();
        match m {
            Recorded::Sample(s, ack) => {
                self.push_sample(s);
                if let Some(a) = ack {
                    self.batch.acks.push(a);
                }
            }
            Recorded::DeadLetter(d, ack) => {
                self.batch.dead.push(d);
                if let Some(a) = ack {
                    self.batch.acks.push(a);
                }
            }
            Recorded::AckOnly(a) => self.batch.acks.push(a),
            Recorded::Mes(e, ack) => {
                // A re-sent event is acknowledged but not stored twice.
                if self.mes.first_time(&e.id) {
                    self.batch.app.push(WriterMsg::mes_event(&e));
                } else {
                    self.stats
                        .duplicates_dropped
                        .fetch_add(1, Ordering::Relaxed);
                }
                if let Some(a) = ack {
                    self.batch.acks.push(a);
                }
            }
        }
    }

    fn push_app(&mut self, m: WriterMsg) {
        self.start_batch();
        match m {
            WriterMsg::Flush(reply) => self.batch.replies.push(reply),
            WriterMsg::Shutdown => self.shutting_down = true,
            other => {
                self.mes.note(&other);
                self.batch.app.push(other);
            }
        }
    }

    fn push_sample(&mut self, s: Sample) {
        let Some(prop_id) = self.props.id(s.property) else {
            self.batch.dead.push(DeadLetter {
                origin: s.origin,
                source: format!("property {:?}", s.property),
                reason: "property has no history id (registry changed while running?)".into(),
                payload_len: 0,
                payload_head: Vec::new(),
                received_us: s.hops.received_us,
            });
            return;
        };
        let ts_us = s.hops.source_us;
        let blob_id_before = self.next_blob_id;
        let (value, text, blob, typed) =
            rows::encode_value(s.value, ts_us, prop_id, &mut self.next_blob_id);
        let print = rows::fingerprint(
            value,
            typed.ivalue,
            text.as_deref(),
            blob.as_ref().map(|b| (b.bin_hz, b.bytes.as_slice())),
        );
        // Without a source time the stamp is the arrival, different on a
        // redelivery: such a sample is also keyed by its MQTT packet id, and
        // a redelivery (DUP) of one already recorded is a duplicate.
        let pkid_key = s
            .hops
            .mqtt_pkid
            .filter(|_| s.hops.arrival_stamped)
            .map(|pkid| (prop_id, rows::pkid_slot(pkid), print));
        let resent = pkid_key.is_some_and(|k| s.hops.redelivered && self.dedupe.contains(&k));
        if resent || !self.dedupe.first_time((prop_id, ts_us, print)) {
            self.next_blob_id = blob_id_before;
            self.stats
                .duplicates_dropped
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Some(k) = pkid_key {
            self.dedupe.refresh(k);
        }
        let blob_id = blob.as_ref().map(|b| b.blob_id);
        if let Some(b) = blob {
            self.batch.blobs.push(b);
        }
        if let Some(t) = self
            .transitions
            .offer(prop_id, ts_us, text.as_ref(), &s.reason)
        {
            self.batch.transitions.push(t);
        }
        let quality = quality_code(s.quality);
        let origin = origin_code(s.origin);
        let late = self.keyframes.note(
            prop_id,
            LastRow {
                ts_us,
                value,
                text: text.clone(),
                blob_id,
                quality,
                origin,
                typed,
            },
        );
        if late {
            // At or before the last keyframe (a later batch, so not in it).
            self.batch.late.push(self.batch.samples.len());
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.batch.samples.push(SampleRow {
            ts_us,
            prop_id,
            value,
            text,
            blob_id,
            quality,
            origin,
            received_us: s.hops.received_us,
            work_order: self.mes.work_order(s.property.asset.0 as usize),
            seq,
            context_unavailable: self.mes.unavailable(),
            historical: s.hops.historical,
            mqtt_pkid: s.hops.mqtt_pkid.filter(|_| s.hops.arrival_stamped),
            typed,
        });
    }

    fn note_error(&self, e: String) {
        bevy::log::error!("history writer: {e}");
        if let Ok(mut l) = self.stats.last_error.lock() {
            *l = Some(e);
        }
    }

    /// Appends the batch in one transaction, then sends its acks. On failure
    /// the batch stays in memory (acks unsent) and is retried.
    fn commit(&mut self) {
        let t0 = Instant::now();
        let keyframe_due = self.keyframes.due(
            self.max_ts_after_batch(),
            self.batch.samples.len() as u64,
            &self.settings,
        );
        let result = {
            let lock = self.commit_lock.clone();
            let _held = lock.lock().unwrap_or_else(|p| p.into_inner());
            self.write_batch(keyframe_due)
        };
        match result {
            Ok(()) => {
                let b = std::mem::take(&mut self.batch);
                let n_samples = b.samples.len() as u64;
                self.stats
                    .note_commit(b.samples.iter().map(|r| r.received_us), now_us());
                if let Some(max) = b.samples.iter().map(|r| r.ts_us).max() {
                    self.max_ts_us = self.max_ts_us.max(max);
                }
                if let Some(min) = b.samples.iter().map(|r| r.ts_us).min() {
                    self.stats.widen(min);
                    self.stats.widen(self.max_ts_us);
                }
                self.committed_seq = self.next_seq;
                self.committed.store(self.next_seq, Ordering::Release);
                self.keyframes
                    .committed(keyframe_due, self.max_ts_us, n_samples, &self.stats);
                let s = &self.stats;
                s.samples_written.fetch_add(n_samples, Ordering::Relaxed);
                s.rows_written.fetch_add(b.rows() as u64, Ordering::Relaxed);
                s.dead_letters
                    .fetch_add(b.dead.len() as u64, Ordering::Relaxed);
                s.commits.fetch_add(1, Ordering::Relaxed);
                s.last_commit_rows.store(b.rows() as u64, Ordering::Relaxed);
                s.acks_sent
                    .fetch_add(b.acks.len() as u64, Ordering::Relaxed);
                for a in b.acks {
                    a.send();
                }
                for r in b.replies {
                    let _ = r.send(());
                }
                s.last_commit_us
                    .store(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
                self.retry_after = None;
                self.backoff = FIRST_RETRY;
                self.batch_checked = false;
                if let Some(since) = self.failing_since.take() {
                    bevy::log::info!(
                        "history writer: writing again after {:.1} s of failed commits",
                        since.elapsed().as_secs_f64()
                    );
                    s.failing_since_us.store(0, Ordering::Relaxed);
                    if let Ok(mut l) = s.last_error.lock() {
                        *l = None;
                    }
                }
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                self.stats.commit_errors.fetch_add(1, Ordering::Relaxed);
                let msg = e.to_string();
                if !is_storage_failure(&msg) && !self.batch_checked {
                    // Perhaps one row the database will never take: find
                    // such rows, set them aside, and try again at once.
                    self.batch_checked = true;
                    if self.set_aside_refused_rows() > 0 {
                        self.retry_after = Some(Instant::now());
                        self.last_commit = Instant::now();
                        return;
                    }
                }
                if self.failing_since.is_none() {
                    self.failing_since = Some(Instant::now());
                    self.stats
                        .failing_since_us
                        .store(now_us(), Ordering::Relaxed);
                    self.note_error(format!(
                        "cannot write the history: {msg}. Holding {} rows in memory and taking \
                         no more; their acks are withheld, so the broker keeps what follows. \
                         Retrying.",
                        self.batch.rows()
                    ));
                } else if let Ok(mut l) = self.stats.last_error.lock() {
                    *l = Some(format!("cannot write the history: {msg}"));
                }
                self.retry_after = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_RETRY);
            }
        }
        self.last_commit = Instant::now();
    }

    /// Tries each row of the batch on its own (in a transaction rolled back
    /// at once) and takes out those the database refuses: a refused sample
    /// becomes a dead letter naming the property and the reason, any other
    /// refused row is logged. Returns how many were taken out.
    fn set_aside_refused_rows(&mut self) -> usize {
        let c = &self.conn;
        let refused = |f: &dyn Fn() -> duckdb::Result<()>| -> Option<String> {
            c.execute_batch("BEGIN TRANSACTION").ok()?;
            let r = f();
            let _ = c.execute_batch("ROLLBACK");
            r.err().map(|e| e.to_string())
        };
        let received = now_us();
        let b = &self.batch;
        let bad_samples: Vec<(usize, String)> = (0..b.samples.len())
            .filter_map(|i| {
                refused(&|| rows::append(c, &b.samples[i..=i], &[], &[], &[])).map(|e| (i, e))
            })
            .collect();
        let bad_blobs: Vec<(usize, String)> = (0..b.blobs.len())
            .filter_map(|i| {
                refused(&|| rows::append(c, &[], &b.blobs[i..=i], &[], &[])).map(|e| (i, e))
            })
            .collect();
        let bad_transitions: Vec<(usize, String)> = (0..b.transitions.len())
            .filter_map(|i| {
                refused(&|| rows::append(c, &[], &[], &b.transitions[i..=i], &[])).map(|e| (i, e))
            })
            .collect();
        let bad_dead: Vec<(usize, String)> = (0..b.dead.len())
            .filter_map(|i| {
                refused(&|| rows::append(c, &[], &[], &[], &b.dead[i..=i])).map(|e| (i, e))
            })
            .collect();
        let bad_app: Vec<(usize, String)> = (0..b.app.len())
            .filter_map(|i| {
                refused(&|| write_app(c, &b.app[i], received, &self.time_zone)).map(|e| (i, e))
            })
            .collect();
        let n = bad_samples.len()
            + bad_blobs.len()
            + bad_transitions.len()
            + bad_dead.len()
            + bad_app.len();
        if n == 0 {
            return 0;
        }
        self.stats
            .poison_rows
            .fetch_add(n as u64, Ordering::Relaxed);
        for (i, e) in &bad_blobs {
            bevy::log::error!(
                "history writer: a spectrum row was refused and dropped: {e} ({:?})",
                self.batch.blobs[*i].blob_id
            );
        }
        for (i, e) in &bad_transitions {
            bevy::log::error!(
                "history writer: a state transition was refused and dropped: {e} ({:?})",
                self.batch.transitions[*i]
            );
        }
        for (i, e) in &bad_dead {
            bevy::log::error!(
                "history writer: a dead letter was refused and dropped: {e} (from `{}`)",
                self.batch.dead[*i].source
            );
        }
        for (i, e) in &bad_app {
            bevy::log::error!(
                "history writer: an app record was refused and dropped: {e} ({:?})",
                self.batch.app[*i]
            );
        }
        let mut new_dead = Vec::new();
        for (i, e) in &bad_samples {
            let r = &self.batch.samples[*i];
            let name = self
                .props
                .property(r.prop_id)
                .and_then(|p| self.registry.property(p))
                .map_or_else(
                    || format!("property id {}", r.prop_id),
                    |(a, p)| format!("{}.{}", a.id, p.name),
                );
            let shown = match (&r.value, &r.text) {
                (Some(v), _) => v.to_string(),
                (None, Some(t)) => t.chars().take(64).collect(),
                (None, None) => String::new(),
            };
            bevy::log::error!(
                "history writer: a sample of {name} at {} µs was refused: {e}",
                r.ts_us
            );
            new_dead.push(DeadLetter {
                origin: crate::history::origin_from_code(r.origin),
                source: name,
                reason: format!(
                    "the history refused this sample (source time {} µs): {e}",
                    r.ts_us
                ),
                payload_len: shown.len(),
                payload_head: shown.into_bytes(),
                received_us: r.received_us,
            });
        }
        // Late-sample indexes follow their samples.
        let late_kept: Vec<usize> = {
            let b = &self.batch;
            let bad: std::collections::HashSet<usize> =
                bad_samples.iter().map(|(i, _)| *i).collect();
            b.late
                .iter()
                .filter(|i| !bad.contains(i))
                .map(|i| i - bad.iter().filter(|j| **j < *i).count())
                .collect()
        };
        let b = &mut self.batch;
        drop_at(&mut b.samples, &bad_samples);
        drop_at(&mut b.blobs, &bad_blobs);
        drop_at(&mut b.transitions, &bad_transitions);
        drop_at(&mut b.dead, &bad_dead);
        drop_at(&mut b.app, &bad_app);
        b.late = late_kept;
        b.dead.extend(new_dead);
        n
    }

    fn max_ts_after_batch(&self) -> i64 {
        self.batch
            .samples
            .iter()
            .map(|r| r.ts_us)
            .max()
            .unwrap_or(self.max_ts_us)
            .max(self.max_ts_us)
    }

    fn write_batch(&mut self, keyframe: bool) -> duckdb::Result<()> {
        let c = &self.conn;
        let b = &self.batch;
        c.execute_batch("BEGIN TRANSACTION")?;
        rows::append(c, &b.samples, &b.blobs, &b.transitions, &b.dead)?;
        rows::append_part_events(c, &b.samples, &self.part_props)?;
        let received = now_us();
        for m in &b.app {
            write_app(c, m, received, &self.time_zone)?;
        }
        Keyframes::patch_late(c, &b.samples, &b.late)?;
        if keyframe {
            self.keyframes.append(c, self.max_ts_after_batch())?;
        }
        c.execute_batch("COMMIT")
    }
}

/// One record from the app side: MES context, a discrepancy, a bookmark.
fn audit_append(c: &Connection, e: &crate::history::audit::AuditEntry) -> duckdb::Result<()> {
    crate::history::audit::append(c, e)
        .map(|_| ())
        .map_err(|e| match e {
            crate::history::HistoryError::Sql { source, .. } => source,
            other => duckdb::Error::ToSqlConversionFailure(Box::new(std::io::Error::other(
                other.to_string(),
            ))),
        })
}

fn write_app(c: &Connection, m: &WriterMsg, received: i64, time_zone: &str) -> duckdb::Result<()> {
    if mes_context::write(c, m, received)? {
        return Ok(());
    }
    match m {
        WriterMsg::Discrepancy {
            ts_us,
            discrepancy_id,
            asset_id,
            rule,
            status,
            detail,
        } => {
            c.execute(
                "INSERT INTO discrepancies VALUES (?, ?, ?, ?, ?, ?)",
                params![ts_us, discrepancy_id, asset_id, rule, status, detail],
            )?;
            // Acknowledgements and resolutions are people's acts: on the trail.
            if status == "acknowledged" || status == "resolved" {
                let e = crate::history::audit::AuditEntry {
                    ts_us: *ts_us,
                    time_zone: time_zone.to_string(),
                    kind: format!("discrepancy.{status}"),
                    subject: discrepancy_id.clone(),
                    field: "status".into(),
                    value: Some(status.clone()),
                    previous_value: None,
                    // A person acknowledges; the reconciler resolves when
                    // the condition clears.
                    signer: if status == "acknowledged" {
                        std::env::var("USER")
                            .or_else(|_| std::env::var("USERNAME"))
                            .ok()
                    } else {
                        Some("mezzanine reconciler".into())
                    },
                    meaning: Some(detail.clone()),
                };
                audit_append(c, &e)?;
            }
        }
        WriterMsg::Audit(e) => audit_append(c, e)?,
        WriterMsg::Bookmark { ts_us, name } => {
            c.execute(
                "INSERT INTO bookmarks VALUES (?, ?, ?)",
                params![ts_us, name, received],
            )?;
        }
        WriterMsg::Schedule {
            ts_us,
            source,
            schedule,
        } => crate::history::insert_schedule(c, schedule, source, *ts_us)?,
        _ => {}
    }
    Ok(())
}

/// Removes the entries at the indexes named in `bad`.
fn drop_at<T>(v: &mut Vec<T>, bad: &[(usize, String)]) {
    let mut k = 0;
    v.retain(|_| {
        let keep = !bad.iter().any(|(i, _)| *i == k);
        k += 1;
        keep
    });
}
