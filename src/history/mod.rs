//! The flight recorder: everything the twin sees, in an embedded DuckDB file.
//!
//! In: samples and dead letters from the ingest tap (with their MQTT acks),
//! and context from the app ([`writer::WriterMsg`]). Out: rows in the file
//! (written by [`writer::HistoryWriter`] on its own thread, acks sent after
//! each commit), and answers to [`ReadRequest`]s computed on a reader thread
//! with its own connection and delivered as [`ReadResponse`]s into
//! [`HistoryAnswers`] — the frame never waits on SQL.
//!
//! `store` opens, migrates and recovers the file; `query` answers questions;
//! `export` writes Parquet.

pub mod audit;
pub mod export;
pub mod lake;
pub mod query;
pub mod store;
pub mod writer;

use std::path::PathBuf;
use std::sync::Arc;

use bevy::prelude::*;
use crossbeam_channel::{Receiver, Sender};

use crate::ingest::{Origin, Quality};
use crate::registry::AssetIdx;
pub use store::{OpenReport, PropIds, SCHEMA_VERSION, Store};
pub use writer::{HistoryWriter, LatencySummary, WriterMsg, WriterSettings, WriterStats};

/// Everything that can go wrong with the history file.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(
        "the history file {} is in use by another process (is another Mezzanine running?): {message}",
        path.display()
    )]
    InUse { path: PathBuf, message: String },
    #[error("cannot open the history file {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: duckdb::Error,
    },
    #[error(
        "the history file has schema version {found}, newer than this build supports ({supported}); open it with a newer Mezzanine"
    )]
    TooNew { found: i64, supported: i64 },
    #[error("migrating the history file from schema {from} to {to} failed: {source}")]
    Migrate {
        from: i64,
        to: i64,
        source: duckdb::Error,
    },
    #[error("history query failed ({what}): {source}")]
    Sql {
        what: &'static str,
        source: duckdb::Error,
    },
    #[error("cannot set the unreadable history file {} aside: {source}", path.display())]
    SetAside {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the history thread: {source}")]
    Thread { source: std::io::Error },
    #[error("the history writer has stopped")]
    WriterGone,
    #[error("export: {0}")]
    Export(String),
    /// A lake setting or folder that cannot be used.
    #[error("{0}")]
    Lake(String),
    #[error("history query returned unexpected data: {0}")]
    Data(String),
}

/// Maps a DuckDB error to [`HistoryError::Sql`] saying what was being done.
pub(crate) fn sql_err(what: &'static str) -> impl FnOnce(duckdb::Error) -> HistoryError {
    move |source| HistoryError::Sql { what, source }
}

pub(crate) fn quality_code(q: Quality) -> u8 {
    match q {
        Quality::Good => 0,
        Quality::Uncertain => 1,
        Quality::Bad => 2,
    }
}

pub(crate) fn quality_from_code(c: u8) -> Quality {
    match c {
        0 => Quality::Good,
        1 => Quality::Uncertain,
        _ => Quality::Bad,
    }
}

pub(crate) fn origin_code(o: Origin) -> u8 {
    match o {
        Origin::Mqtt => 0,
        Origin::OpcUa => 1,
    }
}

pub(crate) fn origin_from_code(c: u8) -> Origin {
    if c == 0 { Origin::Mqtt } else { Origin::OpcUa }
}

/// A question for the reader thread. Only the newest request of each kind
/// that is waiting is answered (scrubbing sends many).
#[derive(Debug, Clone, PartialEq)]
pub enum ReadRequest {
    StateAt {
        t_us: i64,
    },
    Trend {
        asset: AssetIdx,
        /// (property index in the registry, history id)
        props: Vec<(u32, i32)>,
        from_us: i64,
        to_us: i64,
        width_us: i64,
    },
    Timeline {
        asset_id: Option<String>,
        from_us: i64,
        to_us: i64,
    },
    NextMarker {
        after_us: i64,
        forward: bool,
    },
    Bookmarks,
    Export {
        from_us: i64,
        to_us: i64,
        out_dir: PathBuf,
    },
    /// A connection of the reader's own database for a worker thread of
    /// its own (a long analysis that must not hold the reader up); the tag
    /// says which worker asked (one request per tag is kept).
    Connection {
        tag: u8,
    },
    /// End the reader thread (closing its connection).
    Stop,
}

impl ReadRequest {
    fn kind(&self) -> u8 {
        match self {
            ReadRequest::StateAt { .. } => 0,
            ReadRequest::Trend { .. } => 1,
            ReadRequest::Timeline { .. } => 2,
            ReadRequest::NextMarker { .. } => 3,
            ReadRequest::Bookmarks => 4,
            ReadRequest::Export { .. } => 5,
            ReadRequest::Stop => 6,
            ReadRequest::Connection { tag } => 7 + (*tag).min(8),
        }
    }
}

/// Trend series of one asset.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrendData {
    pub asset: Option<AssetIdx>,
    pub from_us: i64,
    pub to_us: i64,
    pub width_us: i64,
    pub source: Option<query::BucketSource>,
    /// Property index → buckets.
    pub series: Vec<(u32, Vec<query::Bucket>)>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct TimelineData {
    pub asset_id: Option<String>,
    pub from_us: i64,
    pub to_us: i64,
    pub transitions: Vec<query::Transition>,
    pub markers: Vec<query::Marker>,
}

#[derive(Debug)]
pub enum ReadResponse {
    StateAt(Result<query::StateAt, HistoryError>),
    Trend(Result<TrendData, HistoryError>),
    Timeline(Result<TimelineData, HistoryError>),
    NextMarker(Result<Option<query::Marker>, HistoryError>),
    Bookmarks(Result<Vec<(i64, String)>, HistoryError>),
    Export(Result<export::ExportReport, HistoryError>),
    /// In a mutex only so the answer can sit in a resource (a connection
    /// is `Send`, not `Sync`); the worker takes it out.
    Connection(
        u8,
        Result<std::sync::Mutex<duckdb::Connection>, HistoryError>,
    ),
}

/// Requests (and answers) the reader's queues hold.
const READ_QUEUE: usize = 1_024;

/// The reader thread: its own connection, requests in, responses out.
pub struct HistoryReader {
    pub requests: Sender<ReadRequest>,
    pub responses: Receiver<ReadResponse>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HistoryReader {
    pub fn spawn(conn: duckdb::Connection, props: Arc<PropIds>) -> Result<Self, HistoryError> {
        // The reader coalesces requests to the newest of each kind, so a
        // queue this long only fills when it is stuck; the app drains the
        // responses every frame.
        let (req_tx, req_rx) = crossbeam_channel::bounded::<ReadRequest>(READ_QUEUE);
        let (resp_tx, resp_rx) = crossbeam_channel::bounded(READ_QUEUE);
        let thread = std::thread::Builder::new()
            .name("history-reader".into())
            .spawn(move || {
                while let Ok(first) = req_rx.recv() {
                    // Keep only the newest request of each kind.
                    let mut pending: Vec<ReadRequest> = vec![first];
                    pending.extend(req_rx.try_iter());
                    let mut latest: Vec<ReadRequest> = Vec::new();
                    for r in pending.into_iter().rev() {
                        let keep_all = matches!(r, ReadRequest::Export { .. });
                        if keep_all || !latest.iter().any(|l| l.kind() == r.kind()) {
                            latest.push(r);
                        }
                    }
                    for r in latest.into_iter().rev() {
                        if r == ReadRequest::Stop {
                            return;
                        }
                        if resp_tx.send(answer(&conn, &props, r)).is_err() {
                            return;
                        }
                    }
                }
            })
            .map_err(|source| HistoryError::Thread { source })?;
        Ok(Self {
            requests: req_tx,
            responses: resp_rx,
            thread: Some(thread),
        })
    }

    /// Ends the thread and waits for it (its connection closes). Answers
    /// nobody will read any more are drained, so the thread is never left
    /// waiting to hand one over.
    pub fn stop(mut self) {
        let _ = self.requests.send(ReadRequest::Stop);
        if let Some(t) = self.thread.take() {
            while !t.is_finished() {
                if self
                    .responses
                    .recv_timeout(std::time::Duration::from_millis(5))
                    .is_err()
                {
                    std::thread::yield_now();
                }
            }
            let _ = t.join();
        }
    }
}

/// The recorder's threads, owned by the binary and stopped in order at exit.
pub struct HistoryThreads {
    pub writer: HistoryWriter,
    pub reader: HistoryReader,
}

impl HistoryThreads {
    /// Stops the reader, then lets the writer commit, checkpoint and end.
    /// Call after the adapters have stopped.
    pub fn shutdown(self) {
        self.reader.stop();
        self.writer.join();
    }
}

fn answer(conn: &duckdb::Connection, props: &PropIds, r: ReadRequest) -> ReadResponse {
    match r {
        ReadRequest::StateAt { t_us } => ReadResponse::StateAt(query::state_at(conn, props, t_us)),
        ReadRequest::Trend {
            asset,
            props: wanted,
            from_us,
            to_us,
            width_us,
        } => {
            let ids: Vec<i32> = wanted.iter().map(|(_, id)| *id).collect();
            ReadResponse::Trend(query::buckets(conn, &ids, from_us, to_us, width_us).map(
                |(source, mut m)| {
                    TrendData {
                        asset: Some(asset),
                        from_us,
                        to_us,
                        width_us,
                        source: Some(source),
                        series: wanted
                            .iter()
                            .map(|(pi, id)| (*pi, m.remove(id).unwrap_or_default()))
                            .collect(),
                    }
                },
            ))
        }
        ReadRequest::Timeline {
            asset_id,
            from_us,
            to_us,
        } => ReadResponse::Timeline((|| {
            let transitions = match &asset_id {
                Some(a) => query::transitions(conn, a, from_us, to_us)?,
                None => Vec::new(),
            };
            let markers = query::markers(conn, from_us, to_us, 2_000)?;
            Ok(TimelineData {
                asset_id,
                from_us,
                to_us,
                transitions,
                markers,
            })
        })()),
        ReadRequest::NextMarker { after_us, forward } => {
            ReadResponse::NextMarker(query::next_marker(conn, after_us, forward))
        }
        ReadRequest::Bookmarks => ReadResponse::Bookmarks(query::bookmarks(conn)),
        ReadRequest::Export {
            from_us,
            to_us,
            out_dir,
        } => ReadResponse::Export(export::export_parquet(conn, from_us, to_us, &out_dir)),
        ReadRequest::Connection { tag } => ReadResponse::Connection(
            tag,
            conn.try_clone()
                .map(std::sync::Mutex::new)
                .map_err(sql_err("connection for a worker")),
        ),
        ReadRequest::Stop => ReadResponse::Bookmarks(Ok(Vec::new())),
    }
}

/// The recorder as the app sees it.
#[derive(Resource, Clone)]
pub struct History {
    pub app: Sender<WriterMsg>,
    pub stats: Arc<WriterStats>,
    pub props: Arc<PropIds>,
    pub report: OpenReport,
    pub requests: Sender<ReadRequest>,
    /// The lake's counters, when the writer has a lake.
    pub lake: Option<Arc<lake::LakeStats>>,
}

impl History {
    /// Send a record (work order, MES event, discrepancy, bookmark).
    pub fn record(&self, m: WriterMsg) -> bool {
        self.app.send(m).is_ok()
    }
    /// Ask the reader; a request it cannot queue (it is stuck far behind)
    /// is dropped with a warning, never waited for on the frame.
    pub fn ask(&self, r: ReadRequest) {
        if let Err(crossbeam_channel::TrySendError::Full(r)) = self.requests.try_send(r) {
            warn!("history reader is {READ_QUEUE} requests behind; dropped {r:?}");
        }
    }
}

/// Connections the reader handed out ([`ReadRequest::Connection`]), for
/// the worker that asked to take.
#[derive(Resource, Default)]
pub struct WorkerConnections(
    pub  Vec<(
        u8,
        Result<std::sync::Mutex<duckdb::Connection>, HistoryError>,
    )>,
);

impl WorkerConnections {
    /// The connection handed out for `tag`, if it came.
    pub fn take(
        &mut self,
        tag: u8,
    ) -> Option<Result<std::sync::Mutex<duckdb::Connection>, HistoryError>> {
        let i = self.0.iter().position(|c| c.0 == tag)?;
        Some(self.0.swap_remove(i).1)
    }
}

/// Worker tags for [`ReadRequest::Connection`].
pub const WORKER_SCHEDULE: u8 = 0;
pub const WORKER_OEE: u8 = 1;
pub const WORKER_WHATIF: u8 = 2;
pub const WORKER_QUALITY: u8 = 3;

/// Responses that arrived this frame, for playback and the UI to take.
#[derive(Resource, Default, Debug)]
pub struct HistoryAnswers(pub Vec<ReadResponse>);

#[derive(Resource)]
struct ReaderResponses(Receiver<ReadResponse>);

/// Wires an open writer and reader into the app.
pub struct HistoryPlugin {
    pub history: History,
    pub responses: Receiver<ReadResponse>,
    /// MES event ids already recorded (newest first), for the MES sync.
    pub mes_seen_ids: Vec<String>,
    /// Discrepancies still open or acknowledged in the file.
    pub unresolved_discrepancies: Vec<query::DiscrepancyRow>,
}

impl HistoryPlugin {
    /// Opens the file, starts the writer and a reader. Returns the plugin
    /// and the threads (the writer's `recorder` sender is what the ingest
    /// tap needs).
    pub fn start(
        path: &std::path::Path,
        registry: Arc<crate::registry::AssetRegistry>,
        settings: WriterSettings,
    ) -> Result<(Self, HistoryThreads), HistoryError> {
        let store = Store::open(path, &registry)?;
        let mes_seen_ids = query::recent_mes_event_ids(&store.conn, 100_000)?;
        let unresolved_discrepancies = query::unresolved_discrepancies(&store.conn)?;
        let report = store.report.clone();
        let props = store.props.clone();
        let reader = HistoryReader::spawn(store.reader()?, props.clone())?;
        let writer = HistoryWriter::spawn(store, registry, settings, 65_536)?;
        Ok((
            Self {
                history: History {
                    app: writer.app.clone(),
                    stats: writer.stats.clone(),
                    props,
                    report,
                    requests: reader.requests.clone(),
                    lake: writer.lake.clone(),
                },
                responses: reader.responses.clone(),
                mes_seen_ids,
                unresolved_discrepancies,
            },
            HistoryThreads { writer, reader },
        ))
    }
}

impl Plugin for HistoryPlugin {
    fn build(&self, app: &mut App) {
        info!("{}", self.history.report.summary());
        app.insert_resource(self.history.clone())
            .insert_resource(ReaderResponses(self.responses.clone()))
            .init_resource::<HistoryAnswers>()
            .add_systems(Update, collect_answers.in_set(crate::MezzanineSet::Record));
    }
}

fn collect_answers(rx: Res<ReaderResponses>, mut answers: ResMut<HistoryAnswers>) {
    answers.0.clear();
    answers.0.extend(rx.0.try_iter());
}

/// Stores a production schedule (replacing an earlier import with the same
/// ID) in one transaction; returns the number of requests stored.
pub fn import_schedule(
    store: &Store,
    s: &crate::contract::Schedule,
    source: &str,
) -> Result<usize, HistoryError> {
    let c = &store.conn;
    let sql = |e| sql_err("import schedule")(e);
    c.execute_batch("BEGIN TRANSACTION").map_err(sql)?;
    match insert_schedule(c, s, source, crate::ingest::now_us()) {
        Ok(()) => {
            c.execute_batch("COMMIT").map_err(sql)?;
            Ok(s.requests.len())
        }
        Err(e) => {
            let _ = c.execute_batch("ROLLBACK");
            Err(sql(e))
        }
    }
}

/// The schedule's rows, stated at `at_us`, in place of any with its id
/// (inside the caller's transaction).
pub(crate) fn insert_schedule(
    c: &duckdb::Connection,
    s: &crate::contract::Schedule,
    source: &str,
    at_us: i64,
) -> duckdb::Result<()> {
    c.execute(
        "DELETE FROM schedules WHERE schedule_id = ?",
        duckdb::params![s.id],
    )?;
    for r in &s.requests {
        c.execute(
            "INSERT INTO schedules VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            duckdb::params![
                at_us,
                s.id,
                source,
                r.id,
                r.product,
                r.quantity,
                r.unit,
                r.asset_id(),
                r.routing.join(">"),
                r.earliest_start_us,
                r.latest_end_us
            ],
        )?;
    }
    Ok(())
}
