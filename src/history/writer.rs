//! The history writer: one named thread that owns the write connection.
//!
//! In: [`Recorded`] samples and dead letters from the ingest tap (each with
//! its MQTT ack), and [`WriterMsg`]s from the app (work-order context, MES
//! events, discrepancies, bookmarks, flush requests). Out: rows appended in
//! batches with DuckDB's Appender, one transaction per batch; the acks of a
//! batch are sent only after its commit. Duplicates (same property, same
//! source time) are dropped in memory before they reach the table. Rollups,
//! keyframes and checkpoints run on timers in the same thread; [`WriterStats`]
//! reports the backlog and what was written.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, never, select};
use duckdb::{Connection, params};

use super::store::{PropIds, Store};
use super::{HistoryError, origin_code, quality_code, sql_err as q};
use crate::ingest::{Ack, DeadLetter, Recorded, Sample, SampleValue, now_us};
use crate::registry::{AssetIdx, AssetRegistry};

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

impl WriterMsg {
    /// The record of one MES event (payload in the current version).
    pub fn mes_event(e: &crate::mes::Envelope) -> Self {
        WriterMsg::MesEvent {
            ts_us: e.source_time_us,
            event_id: e.id.clone(),
            event_type: e.event_type.clone(),
            asset_id: e.event.asset_id().map(str::to_string),
            work_order: e.event.work_order().map(str::to_string),
            payload: e.payload_v2.to_string(),
        }
    }
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
    pub checkpoints: AtomicU64,
    pub keyframes: AtomicU64,
    pub rollup_passes: AtomicU64,
    /// Source-time range of the recorded samples (0 = none yet).
    pub first_ts_us: AtomicI64,
    pub last_ts_us: AtomicI64,
    pub last_error: Mutex<Option<String>>,
}

impl WriterStats {
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
}

impl Drop for HistoryWriter {
    fn drop(&mut self) {
        self.stop_housekeeper.store(true, Ordering::Relaxed);
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
        let housekeeper = std::thread::Builder::new()
            .name("mezzanine-history-rollup".into())
            .spawn(move || hk.run())
            .map_err(|source| HistoryError::Thread { source })?;
        let thread = std::thread::Builder::new()
            .name("mezzanine-history-writer".into())
            .spawn(move || w.run(rec_rx, app_rx))
            .map_err(|source| HistoryError::Thread { source })?;
        Ok(Self {
            recorder: rec_tx,
            app: app_tx,
            stats,
            thread: Some(thread),
            housekeeper: Some(housekeeper),
            stop_housekeeper,
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

    /// Commits what is queued, checkpoints and waits for the thread to end.
    /// Samples still in flight after this are not acknowledged (the broker
    /// delivers them again next time).
    pub fn join(mut self) {
        // The rollup thread first, so the final checkpoint has the file alone.
        self.stop_housekeeper.store(true, Ordering::Relaxed);
        if let Some(t) = self.housekeeper.take() {
            let _ = t.join();
        }
        let _ = self.app.send(WriterMsg::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct SampleRow {
    ts_us: i64,
    prop_id: i32,
    value: Option<f64>,
    text: Option<String>,
    blob_id: Option<i64>,
    quality: u8,
    origin: u8,
    received_us: i64,
    work_order: Option<Arc<str>>,
    seq: i64,
    /// Recorded while the MES was unreachable: the work order is unknown
    /// until the back-fill after it returns.
    context_unavailable: bool,
}

struct BlobRow {
    blob_id: i64,
    ts_us: i64,
    prop_id: i32,
    bin_hz: f32,
    bytes: Vec<u8>,
}

/// The last value of a property, kept for keyframes.
#[derive(Clone)]
struct LastRow {
    ts_us: i64,
    value: Option<f64>,
    text: Option<String>,
    blob_id: Option<i64>,
    quality: u8,
    origin: u8,
}

#[derive(Default)]
struct Batch {
    samples: Vec<SampleRow>,
    /// Indexes into `samples` of rows older than the last keyframe: the
    /// keyframes after them are patched so state at T stays exact.
    late: Vec<usize>,
    blobs: Vec<BlobRow>,
    transitions: Vec<(i64, String, String, Option<String>)>,
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
    /// prop id → asset id, for the `state` property of each asset.
    state_props: HashMap<i32, String>,
    asset_ids: Vec<String>,
    last_state: HashMap<String, (i64, String, Option<String>)>,
    /// Work order per asset, indexed like the registry's assets.
    work_orders: Vec<Option<Arc<str>>>,
    seen: HashSet<(i32, i64), IntBuild>,
    seen_order: VecDeque<(i32, i64)>,
    last: HashMap<i32, LastRow, IntBuild>,
    next_seq: i64,
    committed_seq: i64,
    next_blob_id: i64,
    max_ts_us: i64,
    last_keyframe_ts_us: i64,
    rows_since_keyframe: u64,
    batch: Batch,
    last_commit: Instant,
    /// Next seq not yet committed, for the rollup thread.
    committed: Arc<AtomicI64>,
    /// Held while a batch is written and committed, and by a checkpoint.
    commit_lock: Arc<Mutex<()>>,
    retry_after: Option<Instant>,
    shutting_down: bool,
    /// MES event ids already stored (seeded from the file).
    mes_seen: crate::mes::sync::SeenEvents,
    /// The MES is unreachable: samples carry no work order until back-filled.
    mes_down: bool,
}

/// A fast hasher for the integer keys of the hot path (the idempotency set
/// is touched twice per sample; SipHash's cost buys nothing for them).
#[derive(Default, Clone, Copy)]
struct IntHasher(u64);

impl IntHasher {
    fn add(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl std::hash::Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.add(u64::from(*b));
        }
    }
    fn write_i32(&mut self, i: i32) {
        self.add(u64::from(i as u32));
    }
    fn write_i64(&mut self, i: i64) {
        self.add(i as u64);
    }
}

type IntBuild = std::hash::BuildHasherDefault<IntHasher>;

impl Writer {
    fn new(
        store: Store,
        registry: Arc<AssetRegistry>,
        settings: WriterSettings,
        stats: Arc<WriterStats>,
    ) -> Result<Self, HistoryError> {
        let Store { conn, props, .. } = store;
        let mut state_props = HashMap::new();
        let asset_ids: Vec<String> = registry.assets().iter().map(|a| a.id.clone()).collect();
        for (ai, a) in registry.assets().iter().enumerate() {
            if let Some(r) = registry.property_by_name(AssetIdx(ai as u32), "state")
                && let Some(id) = props.id(r)
            {
                state_props.insert(id, a.id.clone());
            }
        }
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
        let last_keyframe_ts_us: Option<i64> = conn
            .query_row("SELECT max(ts_us) FROM keyframes", [], |r| r.get(0))
            .map_err(q("reading the last keyframe"))?;

        let mut last_state = HashMap::new();
        {
            let mut st = conn
                .prepare(
                    "SELECT asset_id, max(ts_us), arg_max(state, ts_us), arg_max_null(reason, ts_us)
                     FROM transitions GROUP BY asset_id",
                )
                .map_err(q("reading the last states"))?;
            let rows = st
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                })
                .map_err(q("reading the last states"))?;
            for row in rows {
                let (a, ts, s, reason) = row.map_err(q("reading the last states"))?;
                last_state.insert(a, (ts, s, reason));
            }
        }
        let mut work_orders = HashMap::new();
        {
            let mut st = conn
                .prepare(
                    "SELECT asset_id, arg_max_null(work_order, ts_us) FROM work_orders GROUP BY asset_id",
                )
                .map_err(q("reading the work-order context"))?;
            let rows = st
                .query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
                })
                .map_err(q("reading the work-order context"))?;
            for row in rows {
                let (a, wo) = row.map_err(q("reading the work-order context"))?;
                work_orders.insert(a, wo.map(Arc::from));
            }
        }

        let mut w = Self {
            conn,
            props,
            settings,
            stats,
            state_props,
            last_state,
            work_orders: asset_ids
                .iter()
                .map(|a| work_orders.get(a).cloned().flatten())
                .collect(),
            asset_ids,
            mes_down: false,
            seen: HashSet::default(),
            seen_order: VecDeque::new(),
            last: HashMap::default(),
            next_seq,
            committed_seq: next_seq,
            next_blob_id,
            max_ts_us: last.unwrap_or(0),
            last_keyframe_ts_us: last_keyframe_ts_us.unwrap_or(i64::MIN),
            rows_since_keyframe: 0,
            batch: Batch::default(),
            last_commit: Instant::now(),
            committed: Arc::new(AtomicI64::new(next_seq)),
            commit_lock: Arc::new(Mutex::new(())),
            retry_after: None,
            shutting_down: false,
            mes_seen: crate::mes::sync::SeenEvents::new(100_000),
        };
        w.mes_seen
            .seed(super::query::recent_mes_event_ids(&w.conn, 100_000)?);
        // An outage a previous run did not see end (it stopped first) ended
        // with that run's recording; its samples stay context-unavailable.
        w.conn
            .execute(
                "UPDATE mes_outages SET end_us = greatest(start_us, (SELECT max(ts_us) FROM samples)),
                        backfilled_rows = 0
                 WHERE end_us IS NULL",
                [],
            )
            .map_err(super::sql_err("closing an outage left open"))?;
        w.seed_recent()?;
        // Rows a crash left without rollups are rolled up before anything new.
        rollup(&w.conn, next_seq, "rollup_1s", "rollup_1s_seq", 1_000_000)?;
        rollup(&w.conn, next_seq, "rollup_1m", "rollup_1m_seq", 60_000_000)?;
        Ok(w)
    }

    /// Idempotency keys and last values from the end of the file, so a
    /// redelivery after a restart is still recognised as a duplicate.
    fn seed_recent(&mut self) -> Result<(), HistoryError> {
        let Some((_, last)) = self.stats.range_us() else {
            return Ok(());
        };
        let from = last - 300_000_000;
        let keys: Vec<(i32, i64)> = {
            let mut st = self
                .conn
                .prepare(
                    "SELECT prop_id, ts_us FROM samples WHERE ts_us >= ? ORDER BY ts_us DESC LIMIT ?",
                )
                .map_err(q("reading recent keys"))?;
            let rows = st
                .query_map(params![from, self.settings.dedupe_keys as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(q("reading recent keys"))?;
            rows.collect::<Result<_, _>>()
                .map_err(q("reading recent keys"))?
        };
        for k in keys.into_iter().rev() {
            self.remember(k);
        }
        let state = super::query::state_at(&self.conn, &self.props, i64::MAX)?;
        for v in state.values {
            let (value, text, blob_id) = match v.value {
                super::query::StoredValue::Number(x) => (Some(x), None, None),
                super::query::StoredValue::Text(t) => (None, Some(t), None),
                super::query::StoredValue::Spectrum { blob_id, .. } => (None, None, Some(blob_id)),
                super::query::StoredValue::Missing => (None, None, None),
            };
            self.last.insert(
                v.prop_id,
                LastRow {
                    ts_us: v.value_ts_us,
                    value,
                    text,
                    blob_id,
                    quality: quality_code(v.quality),
                    origin: origin_code(v.origin),
                },
            );
        }
        Ok(())
    }

    fn remember(&mut self, k: (i32, i64)) -> bool {
        if !self.seen.insert(k) {
            return false;
        }
        self.seen_order.push_back(k);
        while self.seen_order.len() > self.settings.dedupe_keys {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
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
            let r = rec_rx.as_ref().unwrap_or(&nothing_r);
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
                while self.batch.rows() < self.settings.max_batch_rows {
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
                if self.mes_seen.insert(&e.id) {
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
            WriterMsg::MesLink { up, .. } => {
                self.mes_down = !up;
                self.batch.app.push(m);
            }
            WriterMsg::WorkOrder {
                ref asset_id,
                ref work_order,
                ..
            } => {
                if let Some(i) = self.asset_ids.iter().position(|a| a == asset_id) {
                    self.work_orders[i] = work_order.as_deref().map(Arc::from);
                }
                self.batch.app.push(m);
            }
            other => self.batch.app.push(other),
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
        if !self.remember((prop_id, ts_us)) {
            self.stats
                .duplicates_dropped
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        let (value, text, blob_id) = match s.value {
            SampleValue::Number(v) => (Some(v), None, None),
            SampleValue::Bool(b) => (Some(f64::from(u8::from(b))), None, None),
            SampleValue::Text(t) => (None, Some(t), None),
            SampleValue::Spectrum { bin_hz, bins } => {
                let id = self.next_blob_id;
                self.next_blob_id += 1;
                let mut bytes = Vec::with_capacity(bins.len() * 4);
                for b in bins.iter() {
                    bytes.extend_from_slice(&b.to_le_bytes());
                }
                self.batch.blobs.push(BlobRow {
                    blob_id: id,
                    ts_us,
                    prop_id,
                    bin_hz,
                    bytes,
                });
                (None, None, Some(id))
            }
        };
        if let (Some(asset_id), Some(code)) = (self.state_props.get(&prop_id), &text) {
            let prev = self.last_state.get(asset_id);
            let newer = prev.is_none_or(|(t, _, _)| *t <= ts_us);
            let changed = prev.is_none_or(|(_, st, r)| st != code || *r != s.reason);
            if newer && changed {
                self.last_state
                    .insert(asset_id.clone(), (ts_us, code.clone(), s.reason.clone()));
                self.batch.transitions.push((
                    ts_us,
                    asset_id.clone(),
                    code.clone(),
                    s.reason.clone(),
                ));
            }
        }
        let quality = quality_code(s.quality);
        let origin = origin_code(s.origin);
        let newer = self.last.get(&prop_id).is_none_or(|l| l.ts_us <= ts_us);
        if newer {
            self.last.insert(
                prop_id,
                LastRow {
                    ts_us,
                    value,
                    text: text.clone(),
                    blob_id,
                    quality,
                    origin,
                },
            );
        }
        let work_order = if self.mes_down {
            None
        } else {
            self.work_orders
                .get(s.property.asset.0 as usize)
                .cloned()
                .flatten()
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        // At or before the last keyframe (a later batch, so not in it).
        if ts_us <= self.last_keyframe_ts_us {
            self.batch.late.push(self.batch.samples.len());
        }
        self.batch.samples.push(SampleRow {
            ts_us,
            prop_id,
            value,
            text,
            blob_id,
            quality,
            origin,
            received_us: s.hops.received_us,
            work_order,
            seq,
            context_unavailable: self.mes_down,
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
        let keyframe_due = self
            .max_ts_after_batch()
            .saturating_sub(self.last_keyframe_ts_us)
            >= self.settings.keyframe_interval_us
            || self.rows_since_keyframe + self.batch.samples.len() as u64
                >= self.settings.keyframe_every_rows;
        let result = {
            let lock = self.commit_lock.clone();
            let _held = lock.lock().unwrap_or_else(|p| p.into_inner());
            self.write_batch(keyframe_due)
        };
        match result {
            Ok(()) => {
                let b = std::mem::take(&mut self.batch);
                let n_samples = b.samples.len() as u64;
                if let Some(max) = b.samples.iter().map(|r| r.ts_us).max() {
                    self.max_ts_us = self.max_ts_us.max(max);
                }
                if let Some(min) = b.samples.iter().map(|r| r.ts_us).min() {
                    self.stats.widen(min);
                    self.stats.widen(self.max_ts_us);
                }
                self.committed_seq = self.next_seq;
                self.committed.store(self.next_seq, Ordering::Release);
                if keyframe_due && !self.last.is_empty() {
                    self.last_keyframe_ts_us = self.max_ts_us;
                    self.rows_since_keyframe = 0;
                    self.stats.keyframes.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.rows_since_keyframe += n_samples;
                }
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
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                self.stats.commit_errors.fetch_add(1, Ordering::Relaxed);
                self.note_error(format!("commit failed, will retry: {e}"));
                self.retry_after = Some(Instant::now() + Duration::from_millis(500));
            }
        }
        self.last_commit = Instant::now();
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
        if !b.samples.is_empty() {
            let mut a = c.appender("samples")?;
            for r in &b.samples {
                a.append_row(params![
                    r.ts_us,
                    r.prop_id,
                    r.value,
                    r.text.as_deref(),
                    r.blob_id,
                    r.quality,
                    r.origin,
                    r.received_us,
                    r.work_order.as_deref(),
                    r.seq,
                    r.context_unavailable
                ])?;
            }
            a.flush()?;
        }
        if !b.blobs.is_empty() {
            let mut a = c.appender("blobs")?;
            for r in &b.blobs {
                a.append_row(params![
                    r.blob_id,
                    r.ts_us,
                    r.prop_id,
                    r.bin_hz,
                    &r.bytes[..]
                ])?;
            }
            a.flush()?;
        }
        if !b.transitions.is_empty() {
            let mut a = c.appender("transitions")?;
            for (ts, asset, state, reason) in &b.transitions {
                a.append_row(params![ts, asset, state, reason.as_deref()])?;
            }
            a.flush()?;
        }
        if !b.dead.is_empty() {
            let mut a = c.appender("dead_letters")?;
            for d in &b.dead {
                a.append_row(params![
                    d.received_us,
                    d.origin.label(),
                    d.source,
                    d.reason,
                    d.payload_len as i64,
                    &d.payload_head[..]
                ])?;
            }
            a.flush()?;
        }
        let received = now_us();
        for m in &b.app {
            match m {
                WriterMsg::WorkOrder {
                    asset_id,
                    work_order,
                    ts_us,
                } => {
                    c.execute(
                        "INSERT INTO work_orders VALUES (?, ?, ?)",
                        params![ts_us, asset_id, work_order],
                    )?;
                }
                WriterMsg::MesEvent {
                    ts_us,
                    event_id,
                    event_type,
                    asset_id,
                    work_order,
                    payload,
                } => {
                    c.execute(
                        "INSERT INTO mes_events VALUES (?, ?, ?, ?, ?, ?, ?)",
                        params![
                            ts_us, received, event_id, event_type, asset_id, work_order, payload
                        ],
                    )?;
                }
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
                }
                WriterMsg::Bookmark { ts_us, name } => {
                    c.execute(
                        "INSERT INTO bookmarks VALUES (?, ?, ?)",
                        params![ts_us, name, received],
                    )?;
                }
                WriterMsg::MesLink { up: false, ts_us } => {
                    c.execute(
                        "INSERT INTO mes_outages SELECT ?, NULL, NULL
                         WHERE NOT EXISTS (SELECT 1 FROM mes_outages WHERE end_us IS NULL)",
                        params![ts_us],
                    )?;
                    // The outage began when the MES was last heard: what was
                    // recorded since then carries a context that may be stale.
                    c.execute(
                        "UPDATE samples SET context_unavailable = true, work_order = NULL
                         WHERE ts_us >= ? AND context_unavailable IS NOT TRUE",
                        params![ts_us],
                    )?;
                }
                WriterMsg::MesLink { up: true, .. } => {}
                WriterMsg::Backfill { from_us, to_us } => {
                    // Each sample's work order is the one its asset ran at the
                    // sample's source time, per the (now complete) MES history.
                    let filled = c.execute(
                        "UPDATE samples SET work_order = f.wo, context_unavailable = false
                         FROM (SELECT s.seq AS seq, w.work_order AS wo
                               FROM samples s JOIN properties p USING (prop_id)
                               ASOF LEFT JOIN work_orders w
                                 ON p.asset_id = w.asset_id AND s.ts_us >= w.ts_us
                               WHERE s.context_unavailable AND s.ts_us >= ?) f
                         WHERE samples.seq = f.seq",
                        params![from_us],
                    )?;
                    c.execute(
                        "UPDATE mes_outages SET end_us = ?, backfilled_rows = ?
                         WHERE end_us IS NULL",
                        params![to_us, filled as i64],
                    )?;
                    bevy::log::info!(
                        "MES context back-filled for {filled} samples recorded while it was away"
                    );
                }
                WriterMsg::Flush(_) | WriterMsg::Shutdown => {}
            }
        }
        // A late sample is newer than what the keyframes written since its
        // source time hold for its property: add it to them (queries take
        // the newest value per property and keyframe).
        for &i in &b.late {
            let r = &b.samples[i];
            c.execute(
                "INSERT INTO keyframes
                 SELECT DISTINCT k.ts_us, ?, ?, ?, ?, ?, ?, ? FROM keyframes k
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
                    r.ts_us,
                    r.prop_id,
                    r.ts_us
                ],
            )?;
        }
        if keyframe && !self.last.is_empty() {
            let k = self.max_ts_after_batch();
            let mut a = c.appender("keyframes")?;
            // `last` already holds the batch's rows (updated as they came in).
            for (id, l) in &self.last {
                a.append_row(params![
                    k,
                    id,
                    l.ts_us,
                    l.value,
                    l.text.as_deref(),
                    l.blob_id,
                    l.quality,
                    l.origin
                ])?;
            }
            a.flush()?;
        }
        c.execute_batch("COMMIT")
    }
}

/// Adds the committed samples past the table's watermark (up to seq `hi`) to
/// a rollup, in one transaction with the new watermark. Rows per bucket are
/// additive, so a late sample simply adds a row to its (older) bucket.
fn rollup(
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

/// The rollup thread: its own connection, so appends and acks go on while
/// rollups run; checkpoints take the commit lock so no batch is half written.
struct Housekeeper {
    conn: Connection,
    committed: Arc<AtomicI64>,
    commit_lock: Arc<Mutex<()>>,
    stats: Arc<WriterStats>,
    settings: WriterSettings,
    stop: Arc<AtomicBool>,
}

impl Housekeeper {
    fn run(self) {
        let mut last_1s = Instant::now();
        let mut last_1m = Instant::now();
        let mut last_checkpoint = Instant::now();
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
