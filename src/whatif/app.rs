//! What-if in the app: [`WhatIfCommand`]s from the UI in; a study run on a
//! thread of its own (never on the frame) and its result as the
//! [`WhatIfView`] resource out — the KPI report, and per variant the
//! trajectory of its replication 0 that the ghosts and the future side of
//! the timeline show.
//!
//! A run forks the plant where the time cursor is: live, the live world is
//! read once (machine states, the MES book); in replay, the history at the
//! cursor. Machines are fitted on the history before that moment through a
//! connection the history reader hands out, on the study's thread. The
//! live world is never written.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use crossbeam_channel::{Receiver, bounded};

use super::background::{Background, Run};
use super::plant::{
    PlantSettings, PlantSnapshot, build_model, fits_from_history, recorded_mes_events,
    snapshot_from_history, snapshot_from_world,
};
use super::scenario::{ScenarioFile, apply};
use super::trajectory::Trajectory;
use super::{Model, Pool, Progress, Report, Study, StudyResult, WhatIfError};
use crate::calendar::ShiftCalendar;
use crate::config::MesConfig;
use crate::contract::{ProductionRequest, Schedule};
use crate::history::{History, WorkerConnections};
use crate::mes::MesState;
use crate::mes::recommend::{Broker, Fingerprint, Recommendation};
use crate::playback::{PlaybackCommand, TimeCursor};
use crate::registry::AssetRegistry;

/// What the UI asks.
#[derive(Message, Debug, Clone, PartialEq)]
pub enum WhatIfCommand {
    Run(ScenarioFile),
    Cancel,
    /// Publish scenario `variant` (1.. ; 0 is the baseline) as a
    /// recommendation, and write its B2MML schedule into `b2mml_dir`.
    Publish {
        variant: usize,
        b2mml_dir: PathBuf,
    },
    /// Write the meeting pack of the last result into `dir`, with these
    /// pictures (PNG files the app took) in its report.
    WritePack {
        dir: PathBuf,
        pictures: Vec<PathBuf>,
        time_zone: String,
    },
    /// Forget the result (the ghosts go).
    Clear,
}

pub use super::background::JobState;

/// A finished study.
#[derive(Debug, Clone)]
pub struct WhatIfOutcome {
    pub file: ScenarioFile,
    pub result: StudyResult,
    pub report: Report,
    /// Per variant (baseline first): replication 0, a frame a minute.
    pub trajectories: Vec<Trajectory>,
    /// The fork moment and whether it was the live plant.
    pub at_us: i64,
    pub live: bool,
    pub fingerprint: Fingerprint,
    /// What the model builder and the fits said.
    pub notes: Vec<String>,
    pub wall_s: f64,
}

impl WhatIfOutcome {
    pub fn horizon_end_us(&self) -> i64 {
        self.at_us + (self.result.models[0].horizon_s * 1e6) as i64
    }

    /// Replication 0's operations of variant `v`: (order, step, machine,
    /// start s, end s), in start order.
    pub fn operations(&self, v: usize) -> Vec<(u32, u32, u32, f64, f64)> {
        use super::engine::TraceRow;
        let Some(run) = self.result.runs.get(v).and_then(|r| r.first()) else {
            return Vec::new();
        };
        let mut open: std::collections::HashMap<(u32, u32), f64> = Default::default();
        let mut out = Vec::new();
        let mut step_of: std::collections::HashMap<u32, u32> = Default::default();
        for row in &run.trace {
            if let TraceRow::Job {
                t_s,
                order,
                station,
                what,
                ..
            } = row
            {
                if *order == super::engine::NONE {
                    continue;
                }
                match *what {
                    "started" => {
                        open.insert((*order, *station), *t_s);
                    }
                    "finished" => {
                        let start = open.remove(&(*order, *station)).unwrap_or(0.0);
                        let step = step_of.entry(*order).or_insert(0);
                        out.push((*order, *step, *station, start, *t_s));
                        *step += 1;
                    }
                    _ => {}
                }
            }
        }
        out.sort_by(|a, b| a.3.total_cmp(&b.3));
        out
    }

    /// The sequence scenario `v` ran, as a schedule record (B2MML).
    pub fn schedule_record(&self, v: usize, id: &str) -> Schedule {
        let model = &self.result.models[v.min(self.result.models.len() - 1)];
        let at = |s: f64| self.at_us + (s * 1e6).round() as i64;
        let mut per: std::collections::BTreeMap<u32, Vec<(u32, u32, f64, f64)>> =
            Default::default();
        for (o, step, m, a, b) in self.operations(v) {
            per.entry(o).or_default().push((step, m, a, b));
        }
        let reqs: Vec<(f64, ProductionRequest)> = per
            .into_iter()
            .filter_map(|(o, ops)| {
                let order = model.orders.get(o as usize)?;
                let first = ops.first()?;
                let last = ops.last()?;
                Some((
                    first.2,
                    ProductionRequest {
                        id: order.id.clone(),
                        product: model
                            .products
                            .get(order.product as usize)
                            .map(|p| p.id.clone())
                            .unwrap_or_default(),
                        quantity: f64::from(order.quantity),
                        unit: "ea".into(),
                        routing: ops
                            .iter()
                            .filter_map(|op| model.stations.get(op.1 as usize))
                            .map(|s| s.id.clone())
                            .collect(),
                        earliest_start_us: Some(at(first.2)),
                        latest_end_us: Some(at(last.3)),
                    },
                ))
            })
            .collect();
        Schedule::in_start_order(id, crate::ingest::now_us(), reqs)
    }

    /// Scenario `v` as a recommendation: its changes, every KPI's
    /// difference with its 95 % interval, and the fingerprint.
    pub fn recommendation(&self, v: usize, id: &str) -> Recommendation {
        let name = self.report.names.get(v).cloned().unwrap_or_default();
        let changes: Vec<String> = self
            .file
            .scenarios
            .get(v.wrapping_sub(1))
            .map(|s| s.changes.iter().map(|c| c.describe()).collect())
            .unwrap_or_default();
        let kpis: Vec<serde_json::Value> = self
            .report
            .kpis
            .iter()
            .map(|k| {
                let d = k.diffs.get(v.wrapping_sub(1));
                serde_json::json!({
                    "kpi": k.name,
                    "unit": k.unit,
                    "baseline": k.values[0].mean,
                    "scenario": k.values.get(v).map(|e| e.mean),
                    "difference": d.map(|e| e.mean),
                    "ci95_half_width": d.map(|e| e.half_width),
                })
            })
            .collect();
        let summary = match self.report.kpis.first().and_then(|k| {
            k.diffs
                .get(v.wrapping_sub(1))
                .map(|d| (k.name, k.unit, d.mean, d.half_width))
        }) {
            Some((k, u, m, h)) => format!(
                "{name}: {k} {m:+.2} ± {h:.2} {u} vs the plant as it is ({} replications, 95 %)",
                self.report.replications
            ),
            None => format!("{name} ({} replications)", self.report.replications),
        };
        Recommendation {
            id: id.to_string(),
            kind: "what-if".into(),
            created: crate::mes::rfc3339(crate::ingest::now_us()),
            summary,
            fingerprint: self.fingerprint.clone(),
            details: serde_json::json!({
                "scenario": name,
                "changes": changes,
                "horizon_h": self.result.models[0].horizon_s / 3600.0,
                "replications": self.report.replications,
                "kpis": kpis,
            }),
            advisory: true,
        }
    }
}

/// What the what-if panels show.
#[derive(Resource, Default)]
pub struct WhatIfView {
    pub state: JobState,
    pub progress: Option<Arc<Progress>>,
    pub started: Option<Instant>,
    pub outcome: Option<Arc<WhatIfOutcome>>,
    /// What the last publish did.
    pub last_action: Option<String>,
    /// A run asked for before the plant had orders.
    pub pending: Option<ScenarioFile>,
    /// The last meeting pack: its folder and file count, or why not.
    pub last_pack: Option<Result<(PathBuf, usize), String>>,
}

impl WhatIfView {
    pub fn busy(&self) -> bool {
        matches!(self.state, JobState::Starting | JobState::Running) || self.pending.is_some()
    }
}

/// How the app runs studies.
#[derive(Clone)]
pub struct WhatIfSettings {
    pub time_scale: f64,
    pub fit_hours: f64,
    pub calendar: Option<ShiftCalendar>,
    pub mes: MesConfig,
    pub broker: Option<Broker>,
    /// Worker threads (None: cores − 1).
    pub threads: Option<usize>,
    /// Run this file once the plant has orders (demo and screenshots).
    pub auto_run: Option<ScenarioFile>,
}

#[derive(Resource, Clone)]
struct Settings(WhatIfSettings);

enum Source {
    Live(PlantSnapshot),
    Recorded(i64),
}

struct Job {
    source: Source,
    file: ScenarioFile,
}

#[derive(Resource)]
struct Running {
    study: Background<Job, WhatIfOutcome>,
    published: Option<Receiver<String>>,
    pack: Option<Receiver<Result<(PathBuf, usize), String>>>,
}

impl Default for Running {
    fn default() -> Self {
        Self {
            study: Background::new(crate::history::WORKER_WHATIF, "whatif-study"),
            published: None,
            pack: None,
        }
    }
}

pub struct WhatIfPlugin {
    pub settings: WhatIfSettings,
}

impl Plugin for WhatIfPlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(Settings(self.settings.clone()))
            .insert_resource(WhatIfView {
                pending: self.settings.auto_run.clone(),
                ..default()
            })
            .init_resource::<Running>()
            .init_resource::<WorkerConnections>()
            .add_message::<WhatIfCommand>()
            .add_message::<PlaybackCommand>()
            .add_systems(
                Update,
                (start_runs, take_connection, collect_results)
                    .chain()
                    .after(crate::MezzanineSet::Playback),
            );
    }
}

fn has_orders(world: &World) -> bool {
    world
        .get_resource::<MesState>()
        .is_some_and(|m| !m.0.book.orders.is_empty())
}

fn start_runs(world: &mut World) {
    let mut commands: Vec<WhatIfCommand> = world
        .resource_mut::<Messages<WhatIfCommand>>()
        .drain()
        .collect();
    if let Some(f) = world.resource_mut::<WhatIfView>().pending.take() {
        commands.push(WhatIfCommand::Run(f));
    }
    for c in commands {
        match c {
            WhatIfCommand::Run(file) => start(world, file),
            WhatIfCommand::Cancel => {
                world.resource_mut::<Running>().study.cancel();
                let mut view = world.resource_mut::<WhatIfView>();
                if let Some(p) = &view.progress {
                    p.cancel();
                }
                view.pending = None;
            }
            WhatIfCommand::Publish { variant, b2mml_dir } => publish(world, variant, b2mml_dir),
            WhatIfCommand::WritePack {
                dir,
                pictures,
                time_zone,
            } => write_pack(world, dir, pictures, time_zone),
            WhatIfCommand::Clear => {
                let mut view = world.resource_mut::<WhatIfView>();
                view.outcome = None;
                view.state = JobState::Idle;
                world
                    .resource_mut::<Messages<PlaybackCommand>>()
                    .write(PlaybackCommand::FutureUntil(None));
            }
        }
    }
}

fn start(world: &mut World, file: ScenarioFile) {
    if world.resource::<Running>().study.busy() {
        world.resource_mut::<WhatIfView>().last_action =
            Some("a study is already running: cancel it first".into());
        return;
    }
    let cursor = world.resource::<TimeCursor>().clone();
    let source = if cursor.t_us >= crate::ingest::now_us() - 1_000_000 {
        if !has_orders(world) {
            // Ask again next frame: the MES has not been heard yet.
            world.resource_mut::<WhatIfView>().pending = Some(file);
            return;
        }
        match snapshot_from_world(world, crate::ingest::now_us()) {
            Ok(s) => Source::Live(s),
            Err(e) => {
                world.resource_mut::<WhatIfView>().state = JobState::Failed(e.to_string());
                return;
            }
        }
    } else {
        Source::Recorded(cursor.t_us)
    };
    let job = Job { source, file };
    let progress = Progress::new();
    {
        let mut view = world.resource_mut::<WhatIfView>();
        view.state = JobState::Starting;
        view.progress = Some(progress.clone());
        view.started = Some(Instant::now());
        view.last_action = None;
    }
    let history = world.get_resource::<History>().cloned();
    let at_once = world
        .resource_mut::<Running>()
        .study
        .ask(history.as_ref(), job);
    if let Some(job) = at_once {
        spawn(world, job, None, progress);
    }
}

fn take_connection(world: &mut World) {
    let taken = Background::take_connection_in::<Running>(world, |r| &mut r.study);
    let Some((job, conn)) = taken else {
        return;
    };
    let progress = world
        .resource::<WhatIfView>()
        .progress
        .clone()
        .unwrap_or_default();
    match conn {
        Ok(conn) => spawn(world, job, Some(conn), progress),
        Err(e) => world.resource_mut::<WhatIfView>().state = JobState::Failed(e),
    }
}

fn spawn(world: &mut World, job: Job, conn: Option<duckdb::Connection>, progress: Arc<Progress>) {
    let settings = world.resource::<Settings>().0.clone();
    let registry = world.resource::<AssetRegistry>().clone();
    let props = world.get_resource::<History>().map(|h| h.props.clone());
    let spawned = world
        .resource_mut::<Running>()
        .study
        .spawn(job, conn, progress, move |run| {
            study(&settings, &registry, props.as_deref(), run)
        });
    world.resource_mut::<WhatIfView>().state = spawned;
}

/// Builds the baseline model of the plant at the job's moment.
fn baseline(
    settings: &WhatIfSettings,
    registry: &AssetRegistry,
    conn: Option<&duckdb::Connection>,
    props: Option<&crate::history::store::PropIds>,
    source: Source,
    horizon_h: f64,
) -> Result<(Model, Vec<String>, bool), WhatIfError> {
    let (at_us, live) = match &source {
        Source::Live(s) => (s.at_us, true),
        Source::Recorded(t) => (*t, false),
    };
    let fit_from = at_us - (settings.fit_hours * 3.6e9) as i64;
    let fits = match (conn, props) {
        (Some(c), Some(p)) => fits_from_history(c, p, registry, fit_from, at_us)?,
        _ => Vec::new(),
    };
    let snap = match source {
        Source::Live(s) => s,
        Source::Recorded(at_us) => {
            let (Some(c), Some(p)) = (conn, props) else {
                return Err(WhatIfError::History(
                    "a fork from the past needs the history".into(),
                ));
            };
            let events = recorded_mes_events(c, at_us)?;
            snapshot_from_history(c, p, registry, &events, at_us, None)?
        }
    };
    let horizon_us = (horizon_h * 3.6e9) as i64;
    let plant = PlantSettings {
        horizon_s: horizon_h * 3600.0,
        time_scale: settings.time_scale,
        off_shift_us: settings
            .calendar
            .as_ref()
            .map_or_else(Vec::new, |c| c.off(at_us, at_us + horizon_us)),
        has_calendar: settings.calendar.is_some(),
    };
    let (model, notes) = build_model(registry, &snap, &fits, &plant)?;
    Ok((model, notes, live))
}

fn study(
    settings: &WhatIfSettings,
    registry: &AssetRegistry,
    props: Option<&crate::history::store::PropIds>,
    run: Run<Job>,
) -> Result<WhatIfOutcome, String> {
    let Run {
        job,
        conn,
        progress,
        cancel,
    } = run;
    let t0 = Instant::now();
    let file = job.file;
    let horizon_h = file.horizon_h.unwrap_or(8.0);
    let (model, notes, live) = baseline(
        settings,
        registry,
        conn.as_ref(),
        props,
        job.source,
        horizon_h,
    )
    .map_err(|e| e.to_string())?;
    run_study(
        Arc::new(model),
        file,
        settings.threads,
        live,
        notes,
        &progress,
        &cancel,
        t0,
    )
    .map_err(|e| e.to_string())
}

/// A study of `file`'s scenarios against `base`: the replications on the
/// pool, replication 0 of each variant stepped as a trajectory, the report
/// and the fingerprint. What the app runs on its thread; tests call it.
#[allow(clippy::too_many_arguments)]
pub fn run_study(
    base: Arc<Model>,
    file: ScenarioFile,
    threads: Option<usize>,
    live: bool,
    notes: Vec<String>,
    progress: &Progress,
    cancel: &AtomicBool,
    t0: Instant,
) -> Result<WhatIfOutcome, WhatIfError> {
    let mut scenarios = Vec::new();
    for s in &file.scenarios {
        let m = apply(&base, &s.changes).map_err(|message| WhatIfError::Scenario {
            name: s.name.clone(),
            message,
        })?;
        scenarios.push((s.name.clone(), Arc::new(m)));
    }
    let study = Study {
        baseline: base.clone(),
        scenarios,
        seed: file.seed,
        replications: file.replications,
        trace: true,
    };
    let pool = threads.map_or_else(Pool::default_size, Pool::new);
    let result = pool.run_study(&study, progress)?;
    let mut trajectories = Vec::new();
    for m in &result.models {
        let t = Trajectory::record(m.clone(), file.seed, 0, Some(cancel))
            .ok_or(WhatIfError::Cancelled)?;
        trajectories.push(t);
    }
    let inputs = format!("{:?}\n{:?}", result.models, file);
    let fingerprint = Fingerprint::new(
        vec![file.seed],
        base.origin_us,
        &format!("what-if model, {} machines", base.stations.len()),
        inputs.as_bytes(),
    );
    let report = Report::new(&result);
    Ok(WhatIfOutcome {
        at_us: base.origin_us,
        file,
        report,
        result,
        trajectories,
        live,
        fingerprint,
        notes,
        wall_s: t0.elapsed().as_secs_f64(),
    })
}

fn collect_results(
    mut running: ResMut<Running>,
    mut view: ResMut<WhatIfView>,
    mut out: MessageWriter<PlaybackCommand>,
) {
    if let Some(rx) = &running.published
        && let Ok(msg) = rx.try_recv()
    {
        view.last_action = Some(msg);
        running.published = None;
    }
    if let Some(rx) = &running.pack
        && let Ok(r) = rx.try_recv()
    {
        view.last_action = Some(match &r {
            Ok((dir, n)) => format!(
                "meeting pack written: {} ({n} files; open report.pdf)",
                dir.display()
            ),
            Err(e) => format!("the meeting pack was not written: {e}"),
        });
        view.last_pack = Some(r);
        running.pack = None;
    }
    let Some(r) = running.study.poll() else {
        return;
    };
    match r {
        Ok(o) => {
            out.write(PlaybackCommand::FutureUntil(Some(o.horizon_end_us())));
            view.outcome = Some(Arc::new(o));
            view.state = JobState::Done;
        }
        Err(e) => view.state = JobState::Failed(e),
    }
}

/// The recommendation id of a study forked at `at_us`.
pub fn recommendation_id(at_us: i64, variant: usize) -> String {
    format!(
        "whatif-{}-s{variant}",
        crate::mes::rfc3339(at_us).replace([':', '-', '.'], "")
    )
}

/// Writes the meeting pack on a thread of its own (the PDF compresses
/// pictures; the frame does not wait).
fn write_pack(world: &mut World, dir: PathBuf, pictures: Vec<PathBuf>, time_zone: String) {
    let Some(o) = world.resource::<WhatIfView>().outcome.clone() else {
        world.resource_mut::<WhatIfView>().last_action =
            Some("nothing to put in a pack: run a scenario first".into());
        return;
    };
    let (tx, rx) = bounded(1);
    let shown = dir.display().to_string();
    let spawned = std::thread::Builder::new()
        .name("whatif-pack".into())
        .spawn(move || {
            let r = super::pack::write_pack(&o, &dir, &pictures, &time_zone)
                .map(|files| (dir.clone(), files.len()))
                .map_err(|e| e.to_string());
            let _ = tx.send(r);
        });
    let msg = match spawned {
        Ok(_) => {
            world.resource_mut::<Running>().pack = Some(rx);
            format!("writing the meeting pack to {shown} …")
        }
        Err(e) => format!("cannot start the pack's thread: {e}"),
    };
    world.resource_mut::<WhatIfView>().last_action = Some(msg);
}

/// Publishes on a thread of its own (the broker may take seconds).
fn publish(world: &mut World, variant: usize, b2mml_dir: PathBuf) {
    let settings = world.resource::<Settings>().0.clone();
    let view = world.resource::<WhatIfView>();
    let o = match (&view.outcome, &settings.broker) {
        (None, _) => {
            world.resource_mut::<WhatIfView>().last_action =
                Some("nothing to publish: run a scenario first".into());
            return;
        }
        (Some(_), None) => {
            world.resource_mut::<WhatIfView>().last_action = Some("no broker to publish to".into());
            return;
        }
        (Some(o), Some(_)) if variant == 0 || variant >= o.result.models.len() => {
            world.resource_mut::<WhatIfView>().last_action =
                Some("pick a scenario to publish (not the baseline)".into());
            return;
        }
        (Some(o), Some(_)) => o.clone(),
    };
    let Some(broker) = settings.broker.clone() else {
        return;
    };
    let id = recommendation_id(o.at_us, variant);
    // Refuse before anything is written.
    if let Err(e) = crate::mes::recommend::topic_for(&settings.mes, &id) {
        world.resource_mut::<WhatIfView>().last_action = Some(e.to_string());
        return;
    }
    let (tx, rx) = bounded(1);
    let spawned = std::thread::Builder::new()
        .name("whatif-publish".into())
        .spawn(move || {
            let rec = o.recommendation(variant, &id);
            let b2mml = b2mml_dir.join(format!("{id}.b2mml.xml"));
            let written = std::fs::create_dir_all(&b2mml_dir)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    crate::mes::recommend::write_b2mml(&b2mml, &o.schedule_record(variant, &id))
                        .map_err(|e| e.to_string())
                });
            let msg = match crate::mes::recommend::publish(
                &broker,
                &settings.mes,
                &rec,
                Duration::from_secs(5),
            ) {
                Ok(topic) => match written {
                    Ok(()) => format!(
                        "published (retained) on {topic}; B2MML written to {}",
                        b2mml.display()
                    ),
                    Err(e) => format!("published (retained) on {topic}; B2MML not written: {e}"),
                },
                Err(e) => e.to_string(),
            };
            let _ = tx.send(msg);
        });
    let msg = match spawned {
        Ok(_) => {
            world.resource_mut::<Running>().published = Some(rx);
            "publishing …".to_string()
        }
        Err(e) => format!("cannot start the publisher's thread: {e}"),
    };
    world.resource_mut::<WhatIfView>().last_action = Some(msg);
}
