//! `mezzanine record`: the app without a window (a recorder for a server).
//! The same assembly as the desktop app on its headless front — adapters,
//! history writer, the MES sync that gives each sample its work-order
//! context (and marks samples context-unavailable while the MES is away),
//! reconciliation — stepped here at 20 Hz. Prints the file's state on open,
//! a status line every minute (with each source's link), failures of the
//! writer at once, link changes through the log, and a summary at the end;
//! exits non-zero when no source ever connected. SIGINT or SIGTERM (Ctrl-C, `systemctl stop`) stop it
//! in order: the adapters first, then the writer commits what it holds,
//! rolls up and checkpoints.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::tool_config;
use crate::app::{self, Front, Launch};
use crate::history::History;
use crate::ingest::LinkStatus;
use crate::twin::TwinCounters;

/// How often the headless app steps (MES sync, reconciliation, twin).
const STEP: Duration = Duration::from_millis(50);

/// `, N samples stamped at arrival (no source time)` when there are any.
fn arrival_note(world: &bevy::ecs::world::World) -> String {
    match world
        .get_resource::<TwinCounters>()
        .map_or(0, |c| c.arrival_stamped)
    {
        0 => String::new(),
        n => format!(", {n} samples stamped at arrival (no source time read)"),
    }
}

/// The lake's state in one line.
fn lake_line(l: &crate::history::lake::LakeStats) -> String {
    let closed = l.closed_until_us.load(Relaxed);
    format!(
        "lake: {} files ({} corrections), {} rows, closed until {}{}",
        l.files.load(Relaxed),
        l.correction_files.load(Relaxed),
        l.rows.load(Relaxed),
        jiff::Timestamp::from_microsecond(closed)
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|_| "—".into()),
        match l.errors.load(Relaxed) {
            0 => String::new(),
            n => format!(
                ", {n} failed passes (last: {})",
                l.last_error
                    .lock()
                    .ok()
                    .and_then(|e| e.clone())
                    .unwrap_or_default()
            ),
        }
    )
}

pub fn run(
    config: Option<PathBuf>,
    history: Option<PathBuf>,
    registry: Option<PathBuf>,
    exit_after_idle_s: Option<u64>,
    demo_inject: Vec<String>,
) -> anyhow::Result<ExitCode> {
    let mut cfg = tool_config(config, history, registry)?;
    cfg.demo.inject.extend(demo_inject);
    cfg.validate()?;
    if !cfg.history.enabled {
        anyhow::bail!("`record` records into the history: [history] enabled is false");
    }
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Relaxed))
            .context("installing the SIGINT/SIGTERM handler")?;
    }
    let path = cfg.history.db_path();
    let mut assembled = app::build(Launch {
        cfg,
        front: Front::Recorder,
        replay: None,
        demo_mes_outage: None,
    })?;
    let Some(history) = assembled.app.world().get_resource::<History>().cloned() else {
        assembled.shutdown();
        anyhow::bail!("the history did not start");
    };
    println!("{}", history.report.summary());
    let stats = history.stats.clone();
    println!("recording to {}", path.display());
    let mut last_written = 0;
    let mut idle_since = Instant::now();
    let mut last_report = Instant::now();
    let mut failing = false;
    let mut ever_connected = false;
    loop {
        let step_start = Instant::now();
        assembled.app.update();
        std::thread::sleep(STEP.saturating_sub(step_start.elapsed()));
        let written = stats.samples_written.load(Relaxed);
        let links = assembled.app.world().resource::<LinkStatus>();
        ever_connected |= links.any_connected();
        // Say at once when writing stops working, and when it works again.
        let failing_now = stats.failing_since_us.load(Relaxed) != 0;
        if failing_now != failing {
            failing = failing_now;
            let error = stats.last_error.lock().ok().and_then(|e| e.clone());
            if failing {
                eprintln!(
                    "error: {}",
                    error.unwrap_or_else(|| "cannot write the history".into())
                );
            } else {
                eprintln!("history: writing again");
            }
        }
        if last_report.elapsed().as_secs() >= 60 {
            last_report = Instant::now();
            println!(
                "{}: {}; {written} samples recorded, backlog {}, last commit {:.1} ms, {} dead \
                 letters, {} failed commits{}{}",
                jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ"),
                links.describe(),
                stats.backlog.load(Relaxed),
                stats.last_commit_us.load(Relaxed) as f64 / 1000.0,
                stats.dead_letters.load(Relaxed),
                stats.commit_errors.load(Relaxed),
                stats
                    .last_error
                    .lock()
                    .ok()
                    .and_then(|e| e.clone())
                    .map(|e| format!(", last error: {e}"))
                    .unwrap_or_default(),
                arrival_note(assembled.app.world())
            );
            if let Some(l) = &history.lake {
                println!("  {}", lake_line(l));
            }
        }
        // Waiting for disk space is not being idle.
        if written != last_written || failing_now {
            last_written = written;
            idle_since = Instant::now();
        }
        if exit_after_idle_s.is_some_and(|s| idle_since.elapsed().as_secs() >= s) {
            break;
        }
        if stop.load(Relaxed) {
            println!("stopping: committing what is queued, then a checkpoint");
            break;
        }
    }
    let links = assembled.app.world().resource::<LinkStatus>().describe();
    let lake = history.lake.clone();
    assembled.shutdown();
    if let Some(l) = &lake {
        println!("{}", lake_line(l));
    }
    println!(
        "recorded {} samples ({} duplicates dropped, {} dead letters, {} failed commits) in {} \
         commits",
        stats.samples_written.load(Relaxed),
        stats.duplicates_dropped.load(Relaxed),
        stats.dead_letters.load(Relaxed),
        stats.commit_errors.load(Relaxed),
        stats.commits.load(Relaxed)
    );
    if !ever_connected {
        eprintln!("error: no source ever connected ({links})");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
