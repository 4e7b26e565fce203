//! Scheduling in the app: [`ScheduleCommand`]s from the UI in; a study run
//! on a thread of its own (never on the frame) and its result as the
//! [`ScheduleView`] resource out, for the Gantt panel to draw.
//!
//! A run reads the plant where the time cursor is: live, the live world
//! once (machine states, the MES book, the polled MES plan); in replay, the
//! history at the cursor (states, MES events, the plan recorded then). The
//! machines are fitted on the history before that moment, through a
//! connection the history reader hands out, on the study's thread.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use crossbeam_channel::{Receiver, bounded};

use super::plan::Objective;
use super::study::{ScheduleStudy, StudyOptions};
use crate::calendar::ShiftCalendar;
use crate::config::MesConfig;
use crate::contract::Schedule;
use crate::history::{History, WorkerConnections};
use crate::mes::recommend::Broker;
use crate::mes::{MesSchedule, MesState};
use crate::playback::TimeCursor;
use crate::registry::AssetRegistry;
use crate::whatif::background::{Background, Run};
use crate::whatif::plant::{
    PlantSettings, PlantSnapshot, build_model, fits_from_history, recorded_mes_events,
    snapshot_from_history, snapshot_from_world,
};
use crate::whatif::{Progress, WhatIfError};

/// What a run is asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScheduleRequest {
    pub objective: Objective,
    pub time_limit_s: f64,
    pub replications: u32,
}

impl Default for ScheduleRequest {
    fn default() -> Self {
        Self {
            objective: Objective::Mix {
                tardiness: 0.9,
                makespan: 0.1,
            },
            time_limit_s: 5.0,
            replications: 20,
        }
    }
}

/// What the UI asks.
#[derive(Message, Debug, Clone, PartialEq)]
pub enum ScheduleCommand {
    Run(ScheduleRequest),
    Cancel,
    /// Publish the last result as a recommendation.
    Publish,
    /// Write the last result's schedule as B2MML.
    SaveB2mml(PathBuf),
}

/// Where a run is (the what-if panel's states).
pub use crate::whatif::background::JobState;

/// What the Gantt panel shows.
#[derive(Resource, Default)]
pub struct ScheduleView {
    pub state: JobState,
    pub progress: Option<Arc<Progress>>,
    /// Seconds of search asked for, and when the run began.
    pub started: Option<(Instant, f64)>,
    pub study: Option<Arc<ScheduleStudy>>,
    /// The plant's moment the study is of, and whether it was live.
    pub at: Option<(i64, bool)>,
    /// What the last publish or save did.
    pub last_action: Option<String>,
    /// A run the UI asked for before the plant had orders to schedule.
    pub pending: Option<ScheduleRequest>,
}

impl ScheduleView {
    pub fn busy(&self) -> bool {
        matches!(self.state, JobState::Starting | JobState::Running) || self.pending.is_some()
    }
}

/// How the app schedules.
#[derive(Clone)]
pub struct ScheduleSettings {
    pub time_scale: f64,
    pub fit_hours: f64,
    pub calendar: Option<ShiftCalendar>,
    pub mes: MesConfig,
    pub broker: Option<Broker>,
    pub seed: u64,
    /// Run once at start, as soon as the plant has orders.
    pub auto_run: Option<ScheduleRequest>,
}

#[derive(Resource, Clone)]
struct Settings(ScheduleSettings);

/// The plant as the run reads it.
enum Source {
    Live {
        snap: PlantSnapshot,
        plan: Option<(Schedule, String, i64)>,
    },
    Recorded {
        at_us: i64,
    },
}

struct Job {
    source: Source,
    request: ScheduleRequest,
}

#[derive(Resource)]
struct Running {
    study: Background<Job, ScheduleStudy>,
    published: Option<Receiver<String>>,
}

impl Default for Running {
    fn default() -> Self {
        Self {
            study: Background::new(crate::history::WORKER_SCHEDULE, "schedule-study"),
            published: None,
        }
    }
}

pub struct SchedulePlugin {
    pub settings: ScheduleSettings,
}

impl Plugin for SchedulePlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(Settings(self.settings.clone()))
            .insert_resource(ScheduleView {
                pending: self.settings.auto_run,
                ..default()
            })
            .init_resource::<Running>()
            .init_resource::<WorkerConnections>()
            .add_message::<ScheduleCommand>()
            .add_systems(
                Update,
                (start_runs, take_connection, collect_results)
                    .chain()
                    .after(crate::MezzanineSet::Playback),
            );
    }
}

/// Orders the live world can schedule.
fn has_orders(world: &World) -> bool {
    world
        .get_resource::<MesState>()
        .is_some_and(|m| !m.0.book.orders.is_empty())
        && world
            .get_resource::<MesSchedule>()
            .is_some_and(|s| s.as_of_us.is_some())
}

fn start_runs(world: &mut World) {
    let mut commands: Vec<ScheduleCommand> = world
        .resource_mut::<Messages<ScheduleCommand>>()
        .drain()
        .collect();
    {
        let mut view = world.resource_mut::<ScheduleView>();
        if let Some(r) = view.pending {
            commands.push(ScheduleCommand::Run(r));
            view.pending = None;
        }
    }
    for c in commands {
        match c {
            ScheduleCommand::Run(request) => start(world, request),
            ScheduleCommand::Cancel => {
                world.resource_mut::<Running>().study.cancel();
                let mut view = world.resource_mut::<ScheduleView>();
                if let Some(p) = &view.progress {
                    p.cancel();
                }
                view.pending = None;
            }
            ScheduleCommand::Publish => publish(world),
            ScheduleCommand::SaveB2mml(path) => {
                let view = world.resource::<ScheduleView>();
                let msg = match &view.study {
                    Some(s) => {
                        let id = recommendation_id(view.at.map_or(0, |a| a.0));
                        match crate::mes::recommend::write_b2mml(&path, &s.schedule_record(&id)) {
                            Ok(()) => format!("B2MML {id} written to {}", path.display()),
                            Err(e) => e.to_string(),
                        }
                    }
                    None => "nothing to save: run a schedule first".into(),
                };
                world.resource_mut::<ScheduleView>().last_action = Some(msg);
            }
        }
    }
}

fn recommendation_id(at_us: i64) -> String {
    format!(
        "reschedule-{}",
        crate::mes::rfc3339(at_us).replace([':', '-', '.'], "")
    )
}

fn start(world: &mut World, request: ScheduleRequest) {
    if world.resource::<Running>().study.busy() {
        return; // one run at a time
    }
    let cursor = world.resource::<TimeCursor>().clone();
    let source = if cursor.is_live() {
        if !has_orders(world) {
            // Ask again next frame: the MES has not been heard yet.
            world.resource_mut::<ScheduleView>().pending = Some(request);
            return;
        }
        let at_us = crate::ingest::now_us();
        let snap = match snapshot_from_world(world, at_us) {
            Ok(s) => s,
            Err(e) => {
                world.resource_mut::<ScheduleView>().state = JobState::Failed(e.to_string());
                return;
            }
        };
        let plan = match (
            world.get_resource::<MesSchedule>(),
            world.get_resource::<MesState>(),
        ) {
            (Some(s), Some(m)) => s.as_of_us.map(|t| {
                (
                    crate::mes::schedule_record(&s.orders, &m.0.book, t),
                    "MES API (polled)".to_string(),
                    t,
                )
            }),
            _ => None,
        };
        Source::Live { snap, plan }
    } else {
        Source::Recorded { at_us: cursor.t_us }
    };
    let at = match &source {
        Source::Live { snap, .. } => (snap.at_us, true),
        Source::Recorded { at_us } => (*at_us, false),
    };
    let job = Job { source, request };
    let progress = Progress::new();
    {
        let mut view = world.resource_mut::<ScheduleView>();
        view.state = JobState::Starting;
        view.progress = Some(progress.clone());
        view.started = Some((Instant::now(), request.time_limit_s));
        view.at = Some(at);
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
        .resource::<ScheduleView>()
        .progress
        .clone()
        .unwrap_or_default();
    match conn {
        Ok(conn) => spawn(world, job, Some(conn), progress),
        Err(e) => world.resource_mut::<ScheduleView>().state = JobState::Failed(e),
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
    world.resource_mut::<ScheduleView>().state = spawned;
}

fn study(
    settings: &ScheduleSettings,
    registry: &AssetRegistry,
    props: Option<&crate::history::store::PropIds>,
    run: Run<Job>,
) -> Result<ScheduleStudy, String> {
    let Run {
        job,
        conn,
        progress,
        cancel,
    } = run;
    let h = |e: WhatIfError| e.to_string();
    let at_us = match &job.source {
        Source::Live { snap, .. } => snap.at_us,
        Source::Recorded { at_us } => *at_us,
    };
    let fit_from = at_us - (settings.fit_hours * 3.6e9) as i64;
    let fits = match (&conn, props) {
        (Some(c), Some(p)) => fits_from_history(c, p, registry, fit_from, at_us).map_err(h)?,
        _ => Vec::new(),
    };
    let (snap, plan) = match job.source {
        Source::Live { snap, plan } => (snap, plan),
        Source::Recorded { at_us } => {
            let (Some(c), Some(p)) = (&conn, props) else {
                return Err("replay needs the history".into());
            };
            let events = recorded_mes_events(c, at_us).map_err(h)?;
            let mut snap =
                snapshot_from_history(c, p, registry, &events, at_us, None).map_err(h)?;
            let plan = crate::history::query::schedule_at(c, at_us).map_err(|e| e.to_string())?;
            if let Some((s, _, _)) = &plan {
                crate::whatif::plant::add_planned_orders(&mut snap, s);
            }
            (snap, plan)
        }
    };
    let horizon_us = 48 * 3_600_000_000;
    let plant = PlantSettings {
        horizon_s: 48.0 * 3600.0,
        time_scale: settings.time_scale,
        off_shift_us: settings
            .calendar
            .as_ref()
            .map_or_else(Vec::new, |c| c.off(at_us, at_us + horizon_us)),
        has_calendar: settings.calendar.is_some(),
    };
    let (model, _notes) = build_model(registry, &snap, &fits, &plant).map_err(h)?;
    let alternatives = super::live::same_class_alternatives(registry, &model);
    super::study::run(
        &model,
        &fits,
        &alternatives,
        plan.as_ref().map(|(s, src, t)| (s, src.as_str(), *t)),
        StudyOptions {
            objective: job.request.objective,
            time_limit: Duration::from_secs_f64(job.request.time_limit_s.max(0.1)),
            seed: settings.seed,
            replications: job.request.replications,
            threads: None,
        },
        &progress,
        Some(&cancel),
    )
    .map_err(|e| e.to_string())
}

fn collect_results(mut running: ResMut<Running>, mut view: ResMut<ScheduleView>) {
    if let Some(rx) = &running.published
        && let Ok(msg) = rx.try_recv()
    {
        view.last_action = Some(msg);
        running.published = None;
    }
    let Some(r) = running.study.poll() else {
        return;
    };
    match r {
        Ok(s) => {
            view.study = Some(Arc::new(s));
            view.state = JobState::Done;
        }
        Err(e) => view.state = JobState::Failed(e),
    }
}

/// Publishes on a thread of its own (the broker may take seconds to
/// answer; the frame does not wait).
fn publish(world: &mut World) {
    let settings = world.resource::<Settings>().0.clone();
    let view = world.resource::<ScheduleView>();
    let (s, b) = match (&view.study, &settings.broker) {
        (None, _) => {
            world.resource_mut::<ScheduleView>().last_action =
                Some("nothing to publish: run a schedule first".into());
            return;
        }
        (Some(_), None) => {
            world.resource_mut::<ScheduleView>().last_action =
                Some("no broker to publish to".into());
            return;
        }
        (Some(s), Some(b)) => (s.clone(), b.clone()),
    };
    let id = recommendation_id(view.at.map_or(0, |a| a.0));
    let (tx, rx) = bounded(1);
    let spawned = std::thread::Builder::new()
        .name("schedule-publish".into())
        .spawn(move || {
            let rec = s.recommendation(&id);
            let msg = match crate::mes::recommend::publish(
                &b,
                &settings.mes,
                &rec,
                Duration::from_secs(5),
            ) {
                Ok(topic) => format!("published (retained) on {topic}"),
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
    world.resource_mut::<ScheduleView>().last_action = Some(msg);
}
