//! Quality in the desktop app: [`QualityCommand`]s in (from the UI), the
//! [`QualityView`] out (recent failures, the followed part's ranking with
//! envelopes, its audit trail, the last evidence pack). The queries run on
//! a thread of their own with the history reader's connection (asked for
//! by tag [`WORKER_QUALITY`]); the frame only polls for answers. Audit
//! records go to the history writer (`WriterMsg::Audit`), which chains
//! them.

use std::path::PathBuf;

use bevy::prelude::*;
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};

use super::compare::{self, Failure, Ranking};
use super::evidence::{EvidenceReport, write_evidence};
use crate::history::audit::{AuditEntry, AuditRecord};
use crate::history::{History, ReadRequest, WorkerConnections, WriterMsg};
use crate::registry::AssetRegistry;

pub use crate::history::WORKER_QUALITY;

/// Good parts per operation behind an envelope in the app.
pub const APP_GOOD_PARTS: usize = 100;

/// What the UI may ask.
#[derive(Message, Debug, Clone, PartialEq)]
pub enum QualityCommand {
    /// Reload the failures of the last `hours` recorded.
    RefreshFailures { hours: f64 },
    /// Follow this part: genealogy and ranking.
    Follow(String),
    /// What separates these failed parts from good ones, across the batch.
    CompareBatch(Vec<String>),
    /// Write the evidence pack of the followed part into this folder.
    WriteEvidence(PathBuf),
    /// Append to the audit trail (the subject is usually the serial).
    Audit(AuditEntry),
    /// Stop following.
    Close,
}

/// A failure with why, for the list.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureRow {
    pub failure: Failure,
    pub reasons: Vec<String>,
}

/// What the quality panel shows.
#[derive(Resource, Debug, Default)]
pub struct QualityView {
    pub failures: Vec<FailureRow>,
    pub ranking: Option<Ranking>,
    /// The followed serial (also while its ranking is coming).
    pub serial: Option<String>,
    pub trail: Vec<AuditRecord>,
    /// Work under way, in words.
    pub busy: Option<String>,
    pub error: Option<String>,
    pub evidence: Option<Result<EvidenceReport, String>>,
    /// The last batch comparison: (failed parts, rows).
    pub batch: Option<(usize, Vec<compare::BatchRow>)>,
    /// Records sent to the writer, not yet read back.
    pub pending_audit: Vec<AuditEntry>,
    pub connected: bool,
}

enum Req {
    Failures { hours: f64 },
    Rank(String),
    Evidence { serial: String, dir: PathBuf },
    Trail(String),
    Batch(Vec<String>),
}

enum Resp {
    Failures(Result<Vec<FailureRow>, String>),
    Ranking(Result<Ranking, String>),
    Evidence(Result<EvidenceReport, String>),
    Trail(Result<Vec<AuditRecord>, String>),
    Batch(Result<(usize, Vec<compare::BatchRow>), String>),
}

#[derive(Resource, Default)]
struct Worker {
    tx: Option<Sender<Req>>,
    rx: Option<Receiver<Resp>>,
    asked: bool,
    /// Requests made before the connection came.
    queued: Vec<Req>,
    /// Re-read the trail at this time (s since start), after a write.
    trail_at: Option<f64>,
}

/// Quality in the app.
pub struct QualityPlugin;

impl Plugin for QualityPlugin {
    fn build(&self, app: &mut App) {
        app.add_message::<QualityCommand>()
            .init_resource::<QualityView>()
            .init_resource::<Worker>()
            .add_systems(Update, (start_worker, apply_commands, collect).chain());
    }
}

fn spawn_worker(
    conn: duckdb::Connection,
    registry: std::sync::Arc<AssetRegistry>,
    props: std::sync::Arc<crate::history::store::PropIds>,
) -> std::io::Result<(Sender<Req>, Receiver<Resp>)> {
    // Requests are few (a click each); answers are drained every frame.
    let (tx, req_rx) = bounded::<Req>(32);
    let (resp_tx, rx) = bounded::<Resp>(32);
    std::thread::Builder::new()
        .name("quality".into())
        .spawn(move || {
            while let Ok(r) = req_rx.recv() {
                let e = |e: super::QualityError| e.to_string();
                let resp = match r {
                    Req::Failures { hours } => Resp::Failures((|| {
                        let (_, last) = crate::history::query::recorded_range(&conn)
                            .map_err(|e| e.to_string())?
                            .unwrap_or((0, 0));
                        let from = last - (hours * 3.6e9) as i64;
                        let f = compare::failures(&conn, &registry, &props, from, last, 200)
                            .map_err(e)?;
                        Ok(f.into_iter()
                            .map(|failure| {
                                let reasons = super::genealogy::part(
                                    &conn,
                                    &registry,
                                    &props,
                                    &failure.serial,
                                )
                                .map(|g| g.reasons())
                                .unwrap_or_default();
                                FailureRow { failure, reasons }
                            })
                            .collect())
                    })()),
                    Req::Rank(serial) => Resp::Ranking(
                        compare::rank(&conn, &registry, &props, &serial, APP_GOOD_PARTS).map_err(e),
                    ),
                    Req::Evidence { serial, dir } => Resp::Evidence(
                        write_evidence(
                            &conn,
                            &registry,
                            &props,
                            &serial,
                            &dir,
                            APP_GOOD_PARTS,
                            |_, _| {},
                        )
                        .map_err(e),
                    ),
                    Req::Batch(serials) => Resp::Batch(
                        compare::rank_batch(&conn, &registry, &props, &serials, APP_GOOD_PARTS)
                            .map(|rows| (serials.len(), rows))
                            .map_err(e),
                    ),
                    Req::Trail(serial) => Resp::Trail(
                        crate::history::audit::records(&conn, Some(&serial))
                            .map_err(|e| e.to_string()),
                    ),
                };
                if resp_tx.send(resp).is_err() {
                    return;
                }
            }
        })?;
    Ok((tx, rx))
}

fn start_worker(
    mut worker: ResMut<Worker>,
    mut view: ResMut<QualityView>,
    history: Option<Res<History>>,
    conns: Option<ResMut<WorkerConnections>>,
    registry: Option<Res<AssetRegistry>>,
) {
    if worker.tx.is_some() || worker.queued.is_empty() {
        return;
    }
    let (Some(h), Some(mut conns), Some(reg)) = (history, conns, registry) else {
        if !worker.queued.is_empty() {
            view.error = Some("quality needs the history (the recorder is off)".into());
            worker.queued.clear();
            view.busy = None;
        }
        return;
    };
    if !worker.asked {
        h.ask(ReadRequest::Connection {
            tag: WORKER_QUALITY,
        });
        worker.asked = true;
        return;
    }
    let Some(c) = conns.take(WORKER_QUALITY) else {
        return;
    };
    let started = c
        .map_err(|e| e.to_string())
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .and_then(|conn| {
            spawn_worker(conn, std::sync::Arc::new(reg.clone()), h.props.clone())
                .map_err(|e| e.to_string())
        });
    match started {
        Ok((tx, rx)) => {
            for r in worker.queued.drain(..) {
                let _ = tx.try_send(r);
            }
            worker.tx = Some(tx);
            worker.rx = Some(rx);
            view.connected = true;
        }
        Err(e) => {
            view.error = Some(format!("quality: {e}"));
            worker.queued.clear();
            worker.asked = false;
            view.busy = None;
        }
    }
}

/// Hands a request to the worker; one it cannot take now (32 waiting) is
/// refused with a word to the user, never queued without bound.
fn send(worker: &mut Worker, view: &mut QualityView, r: Req) {
    match &worker.tx {
        Some(tx) => {
            if let Err(TrySendError::Full(_)) = tx.try_send(r) {
                view.error = Some("quality: still busy with earlier requests; try again".into());
                view.busy = None;
            }
        }
        None if worker.queued.len() < 32 => worker.queued.push(r),
        None => view.error = Some("quality: waiting for the history's connection".into()),
    }
}

fn apply_commands(
    mut commands: MessageReader<QualityCommand>,
    mut worker: ResMut<Worker>,
    mut view: ResMut<QualityView>,
    history: Option<Res<History>>,
    time: Res<Time>,
) {
    for c in commands.read() {
        match c {
            QualityCommand::RefreshFailures { hours } => {
                send(&mut worker, &mut view, Req::Failures { hours: *hours });
            }
            QualityCommand::Follow(serial) => {
                let serial = serial.trim().to_string();
                if serial.is_empty() {
                    continue;
                }
                view.serial = Some(serial.clone());
                view.ranking = None;
                view.error = None;
                view.evidence = None;
                view.trail.clear();
                view.busy = Some(format!(
                    "comparing {serial} with the last {APP_GOOD_PARTS} good parts of each operation"
                ));
                send(&mut worker, &mut view, Req::Rank(serial.clone()));
                send(&mut worker, &mut view, Req::Trail(serial));
            }
            QualityCommand::CompareBatch(serials) => {
                view.busy = Some(format!(
                    "comparing {} failed parts with good parts",
                    serials.len()
                ));
                view.batch = None;
                send(&mut worker, &mut view, Req::Batch(serials.clone()));
            }
            QualityCommand::WriteEvidence(dir) => {
                if let Some(serial) = view.serial.clone() {
                    view.busy = Some(format!("writing the evidence pack to {}", dir.display()));
                    view.evidence = None;
                    send(
                        &mut worker,
                        &mut view,
                        Req::Evidence {
                            serial,
                            dir: dir.clone(),
                        },
                    );
                }
            }
            QualityCommand::Audit(entry) => match &history {
                Some(h) if h.record(WriterMsg::Audit(entry.clone())) => {
                    view.pending_audit.push(entry.clone());
                    worker.trail_at = Some(time.elapsed_secs_f64() + 1.0);
                }
                _ => view.error = Some("the audit trail needs the history (recorder off)".into()),
            },
            QualityCommand::Close => {
                view.serial = None;
                view.ranking = None;
                view.trail.clear();
                view.evidence = None;
                view.busy = None;
            }
        }
    }
    if worker
        .trail_at
        .is_some_and(|t| time.elapsed_secs_f64() >= t)
    {
        worker.trail_at = None;
        if let Some(s) = view.serial.clone() {
            send(&mut worker, &mut view, Req::Trail(s));
        }
    }
}

fn collect(worker: Res<Worker>, mut view: ResMut<QualityView>) {
    let Some(rx) = &worker.rx else { return };
    for r in rx.try_iter() {
        match r {
            Resp::Failures(Ok(f)) => view.failures = f,
            Resp::Failures(Err(e)) => view.error = Some(e),
            Resp::Ranking(Ok(r)) => {
                if view.serial.as_deref() == Some(r.genealogy.serial.as_str()) {
                    view.ranking = Some(r);
                    view.busy = None;
                }
            }
            Resp::Ranking(Err(e)) => {
                view.error = Some(e);
                view.busy = None;
            }
            Resp::Evidence(r) => {
                view.evidence = Some(r);
                view.busy = None;
            }
            Resp::Trail(Ok(t)) => {
                view.pending_audit
                    .retain(|p| !t.iter().any(|r| &r.entry == p));
                view.trail = t;
            }
            Resp::Trail(Err(e)) => view.error = Some(e),
            Resp::Batch(r) => {
                view.busy = None;
                match r {
                    Ok(b) => view.batch = Some(b),
                    Err(e) => view.error = Some(e),
                }
            }
        }
    }
}
