//! `mezzanine whatif`: a scenario file and a plant (forked from the
//! history) or a model file in; baseline vs each scenario with 95 %
//! confidence intervals on stdout, a progress bar on stderr, and CSV and
//! Parquet for analysts. `mezzanine whatif backtest`: a recorded window
//! in, the simulation's errors against it out.

use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::tool_config;
use crate::calendar::ShiftCalendar;
use crate::cli::{WhatifArgs, WhatifCommand, parse_time};
use crate::config::AppConfig;
use crate::history::Store;
use crate::registry::{AssetRegistry, load_registry};
use crate::whatif::app::run_study;
use crate::whatif::backtest::{BacktestSettings, backtest};
use crate::whatif::engine::TraceRow;
use crate::whatif::model_file::load_model;
use crate::whatif::plant::{
    PlantSettings, build_model, fits_from_history, recorded_mes_events, snapshot_from_history,
};
use crate::whatif::scenario::{ScenarioFile, apply, load_scenarios};
use crate::whatif::{Model, Pool, Progress, Replications, StudyResult};

pub fn run(config: Option<PathBuf>, args: WhatifArgs) -> anyhow::Result<ExitCode> {
    if let Some(WhatifCommand::Sweep {
        sweep,
        index,
        lake,
        list,
        threads,
        history,
        registry,
    }) = args.command
    {
        return run_sweep(
            config,
            &sweep,
            SweepRun {
                index,
                lake,
                list,
                threads,
                history,
                registry,
            },
        );
    }
    if let Some(WhatifCommand::Backtest {
        from,
        to,
        fit_from,
        replications,
        csv,
        history,
        registry,
    }) = args.command
    {
        return run_backtest(
            config,
            &from,
            &to,
            fit_from.as_deref(),
            replications,
            csv,
            history,
            registry,
        );
    }
    let scenarios = match &args.scenario {
        Some(p) => load_scenarios(p)?,
        None => ScenarioFile {
            name: "baseline".into(),
            horizon_h: None,
            replications: Replications::Fixed(20),
            seed: 1,
            scenarios: Vec::new(),
        },
    };
    let horizon_h = args.horizon_h.or(scenarios.horizon_h);
    let (base, fits_text) = match (&args.model, &args.at) {
        (Some(m), _) => {
            let mut model = load_model(m)?;
            if let Some(h) = horizon_h {
                model.horizon_s = h * 3600.0;
            }
            (model, Vec::new())
        }
        (None, Some(at)) => {
            let f = fork(ForkArgs {
                config,
                at,
                horizon_h: horizon_h.unwrap_or(8.0),
                fit_hours: args.fit_hours,
                calendar: args.calendar.clone(),
                history: args.history,
                registry: args.registry,
            })?;
            (f.model, f.text)
        }
        (None, None) => anyhow::bail!(
            "say what to simulate: --at <time> (the plant as recorded then, or `latest`) or --model <file.toml>"
        ),
    };
    let base = Arc::new(base);
    let mut file = scenarios.clone();
    if let Some(n) = args.replications {
        file.replications = Replications::Fixed(n.max(2));
    }
    // Every scenario applies to the model before anything runs.
    for s in &scenarios.scenarios {
        apply(&base, &s.changes).map_err(|message| crate::whatif::WhatIfError::Scenario {
            name: s.name.clone(),
            message,
        })?;
    }
    println!("What-if: {}", base.name);
    if base.origin_us != 0 {
        println!("  forked at {}", crate::mes::rfc3339(base.origin_us));
    }
    println!(
        "  horizon {:.2} h; {} machines, {} orders, {} arrival streams; shift calendar: {}",
        base.horizon_s / 3600.0,
        base.stations.len(),
        base.orders.len(),
        base.arrivals.len(),
        if base.has_calendar {
            "yes"
        } else {
            "none (all time counted as working)"
        }
    );
    for line in &fits_text {
        println!("  {line}");
    }
    for s in &scenarios.scenarios {
        println!("  scenario {:?}:", s.name);
        for c in &s.changes {
            println!("    - {}", c.describe());
        }
    }
    let t = Instant::now();
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let outcome = with_progress(|p| {
        run_study(
            base.clone(),
            file.clone(),
            args.threads,
            false,
            fits_text.clone(),
            p,
            &cancel,
            t,
        )
    })?;
    let wall = t.elapsed();
    let result = &outcome.result;
    let events: u64 = result.runs.iter().flatten().map(|o| o.events).sum();
    println!(
        "  {} replications × {} variants on {} worker thread{} in {:.2} s ({:.1} M events/s), seed {}\n",
        result.runs[0].len(),
        result.runs.len(),
        result.threads,
        if result.threads == 1 { "" } else { "s" },
        wall.as_secs_f64(),
        events as f64 / wall.as_secs_f64().max(1e-9) / 1e6,
        result.seed
    );
    let report = &outcome.report;
    print!("{}", report.to_text());
    if let Some(p) = &args.csv {
        std::fs::write(p, report.to_csv()).with_context(|| format!("writing {}", p.display()))?;
        println!("wrote {}", p.display());
    }
    if let Some(p) = &args.trace {
        let rows = write_trace(result, p)?;
        println!("wrote {} ({rows} rows)", p.display());
    }
    if let Some(dir) = &args.pack {
        let tz = crate::config::AppConfig::load(None)
            .ok()
            .and_then(|c| load_registry(&c.plant.registry).ok())
            .map_or_else(|| "UTC".to_string(), |r| r.plant.time_zone.clone());
        let files = crate::whatif::pack::write_pack(&outcome, dir, &[], &tz)?;
        println!(
            "wrote the meeting pack to {} ({} files: report.pdf, CSVs, scenario.toml)",
            dir.display(),
            files.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `f` with a progress bar on the terminal.
pub(super) fn with_progress<T>(
    f: impl FnOnce(&Progress) -> Result<T, crate::whatif::WhatIfError>,
) -> anyhow::Result<T> {
    let progress = Progress::new();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tty = std::io::stderr().is_terminal();
    let bar = {
        let (p, done) = (progress.clone(), done.clone());
        std::thread::Builder::new()
            .name("whatif-progress".into())
            .spawn(move || {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    if tty {
                        let (d, t) = p.counts();
                        let pct = p.percent();
                        let filled = (pct / 5.0) as usize;
                        eprint!(
                            "\r  [{}{}] {pct:5.1} % ({d}/{t} replications)",
                            "#".repeat(filled),
                            " ".repeat(20 - filled.min(20))
                        );
                        let _ = std::io::stderr().flush();
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                if tty {
                    eprint!("\r{}\r", " ".repeat(60));
                }
            })
            .ok()
    };
    let r = f(&progress);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(b) = bar {
        let _ = b.join();
    }
    Ok(r?)
}

pub(super) fn open_history(
    config: Option<PathBuf>,
    history: Option<PathBuf>,
    registry: Option<PathBuf>,
) -> anyhow::Result<(AppConfig, AssetRegistry, Store)> {
    let cfg = tool_config(config, history, registry)?;
    let registry = AssetRegistry::new(load_registry(&cfg.plant.registry)?);
    let path = cfg.history.db_path();
    if !path.exists() {
        anyhow::bail!("no history file at {}", path.display());
    }
    let store = Store::open(&path, &registry).with_context(|| {
        format!(
            "opening the history file {} (a recorder or the app writing to it holds it: stop it, or copy the file)",
            path.display()
        )
    })?;
    Ok((cfg, registry, store))
}

/// Plant seconds per recorded second: the embedded demo's time scale.
fn time_scale(cfg: &AppConfig) -> f64 {
    if cfg.embedded_demo() {
        cfg.demo.time_scale
    } else {
        1.0
    }
}

/// The shift calendar: `--calendar`, else the config's.
fn calendar(cfg: &AppConfig, flag: Option<PathBuf>) -> anyhow::Result<Option<ShiftCalendar>> {
    match flag.or_else(|| cfg.plant.shift_calendar.clone()) {
        Some(p) => Ok(Some(ShiftCalendar::load(&p)?)),
        None => Ok(None),
    }
}

/// The plant forked from the history at a moment, with what built it.
pub(super) struct HistoryFork {
    pub cfg: AppConfig,
    pub registry: AssetRegistry,
    pub store: Store,
    pub at_us: i64,
    pub model: Model,
    pub fits: Vec<crate::whatif::fit::MachineFit>,
    /// How the model was fitted, and what it assumed.
    pub text: Vec<String>,
}

/// Where and how a fork is taken.
pub(super) struct ForkArgs<'a> {
    pub config: Option<PathBuf>,
    pub at: &'a str,
    pub horizon_h: f64,
    pub fit_hours: f64,
    pub calendar: Option<PathBuf>,
    pub history: Option<PathBuf>,
    pub registry: Option<PathBuf>,
}

/// Forks the plant from the history at `args.at`.
pub(super) fn fork(args: ForkArgs<'_>) -> anyhow::Result<HistoryFork> {
    let ForkArgs {
        config,
        at,
        horizon_h,
        fit_hours,
        calendar: calendar_flag,
        history,
        registry,
    } = args;
    let (cfg, registry, store) = open_history(config, history, registry)?;
    let cal = calendar(&cfg, calendar_flag)?;
    let conn = &store.conn;
    let range = crate::history::query::recorded_range(conn)?
        .ok_or_else(|| anyhow::anyhow!("the history holds no samples yet"))?;
    let at_us = if at == "latest" {
        range.1
    } else {
        parse_time(at, &registry.plant().time_zone).map_err(anyhow::Error::msg)?
    };
    if at_us < range.0 || at_us > range.1 {
        anyhow::bail!(
            "--at {} is outside the recording ({} to {})",
            crate::mes::rfc3339(at_us),
            crate::mes::rfc3339(range.0),
            crate::mes::rfc3339(range.1)
        );
    }
    let fit_from = (at_us - (fit_hours * 3.6e9) as i64).max(range.0);
    let fits = fits_from_history(conn, &store.props, &registry, fit_from, at_us)?;
    let events = recorded_mes_events(conn, at_us)?;
    let mut snap = snapshot_from_history(conn, &store.props, &registry, &events, at_us, None)?;
    // The orders the MES had planned then, as the live fork sees them.
    if let Some((plan, _, _)) = crate::history::query::schedule_at(conn, at_us)? {
        crate::whatif::plant::add_planned_orders(&mut snap, &plan);
    }
    let horizon_us = (horizon_h * 3.6e9) as i64;
    let settings = PlantSettings {
        horizon_s: horizon_h * 3600.0,
        time_scale: time_scale(&cfg),
        off_shift_us: cal
            .as_ref()
            .map_or_else(Vec::new, |c| c.off(at_us, at_us + horizon_us)),
        has_calendar: cal.is_some(),
    };
    let (model, notes) = build_model(&registry, &snap, &fits, &settings)?;
    let mut text = vec![format!(
        "fitted on {:.2} h of history before the fork:",
        (at_us - fit_from) as f64 / 3.6e9
    )];
    for f in &fits {
        text.extend(f.describe().into_iter().map(|l| format!("  {l}")));
    }
    text.extend(notes.into_iter().map(|n| format!("note: {n}")));
    drop(events);
    Ok(HistoryFork {
        cfg,
        registry,
        store,
        at_us,
        model,
        fits,
        text,
    })
}

#[allow(clippy::too_many_arguments)]
fn run_backtest(
    config: Option<PathBuf>,
    from: &str,
    to: &str,
    fit_from: Option<&str>,
    replications: u32,
    csv: Option<PathBuf>,
    history: Option<PathBuf>,
    registry: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let (cfg, registry, store) = open_history(config, history, registry)?;
    let tz = registry.plant().time_zone.clone();
    let from_us = parse_time(from, &tz).map_err(anyhow::Error::msg)?;
    let to_us = parse_time(to, &tz).map_err(anyhow::Error::msg)?;
    let fit_from_us = match fit_from {
        Some(f) => parse_time(f, &tz).map_err(anyhow::Error::msg)?,
        None => from_us - (to_us - from_us),
    };
    let settings = BacktestSettings {
        from_us,
        to_us,
        fit_from_us,
        replications,
        seed: 1,
        time_scale: time_scale(&cfg),
        calendar: calendar(&cfg, None)?,
    };
    let pool = Pool::default_size();
    let bt =
        with_progress(|p| backtest(&store.conn, &store.props, &registry, &settings, &pool, p))?;
    println!("Fitted on the window before T0:");
    for f in &bt.fits {
        for l in f.describe() {
            println!("  {l}");
        }
    }
    println!();
    print!("{}", bt.to_text());
    if let Some(p) = csv {
        std::fs::write(&p, bt.to_csv()).with_context(|| format!("writing {}", p.display()))?;
        println!("wrote {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes replication 0's trace of every variant as one Parquet file:
/// `variant, kind (state | job), t_s, ts_us, machine, state, order_id, event`.
fn write_trace(r: &StudyResult, path: &Path) -> anyhow::Result<usize> {
    let conn = duckdb::Connection::open_in_memory().context("opening DuckDB in memory")?;
    conn.execute_batch(
        "CREATE TABLE trace (variant VARCHAR, kind VARCHAR, t_s DOUBLE, ts_us BIGINT,
                             machine VARCHAR, state VARCHAR, order_id VARCHAR, event VARCHAR)",
    )?;
    let mut rows = 0;
    {
        let mut app = conn.appender("trace")?;
        for (v, runs) in r.runs.iter().enumerate() {
            let model = &r.models[v];
            let Some(o) = runs.first() else { continue };
            let ts = |t: f64| model.origin_us + (t * 1e6) as i64;
            for row in &o.trace {
                match row {
                    TraceRow::State {
                        t_s,
                        station,
                        state,
                    } => {
                        app.append_row(duckdb::params![
                            r.names[v],
                            "state",
                            t_s,
                            ts(*t_s),
                            model.stations[*station as usize].id,
                            state.label(),
                            None::<String>,
                            None::<String>
                        ])?;
                    }
                    TraceRow::Job {
                        t_s,
                        order,
                        job,
                        station,
                        what,
                    } => {
                        let order_id = model
                            .orders
                            .get(*order as usize)
                            .map_or_else(|| format!("job-{job}"), |o| o.id.clone());
                        let machine = model.stations.get(*station as usize).map(|s| s.id.clone());
                        app.append_row(duckdb::params![
                            r.names[v],
                            "job",
                            t_s,
                            ts(*t_s),
                            machine,
                            None::<String>,
                            order_id,
                            what
                        ])?;
                    }
                }
                rows += 1;
            }
        }
    }
    let target = path.display().to_string().replace('\'', "''");
    conn.execute_batch(&format!("COPY trace TO '{target}' (FORMAT PARQUET)"))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(rows)
}

/// A sweep file: scenario files run as independent jobs on one model.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    version: u32,
    name: String,
    /// A standalone model file (relative to the sweep file)…
    model: Option<PathBuf>,
    /// …or the plant forked from the history at this moment (`latest`, or
    /// a time as `--at` takes it).
    at: Option<String>,
    /// Overrides every scenario file's replications.
    replications: Option<u32>,
    #[serde(rename = "job")]
    jobs: Vec<SweepJob>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepJob {
    /// A scenario file (relative to the sweep file).
    scenario: PathBuf,
}

struct SweepRun {
    index: Option<usize>,
    lake: Option<PathBuf>,
    list: bool,
    threads: Option<usize>,
    history: Option<PathBuf>,
    registry: Option<PathBuf>,
}

/// The job index from the flag, else from the array-job runners' variables.
fn job_index(flag: Option<usize>) -> anyhow::Result<usize> {
    if let Some(i) = flag {
        return Ok(i);
    }
    for var in ["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"] {
        if let Ok(v) = std::env::var(var) {
            return v
                .trim()
                .parse()
                .with_context(|| format!("{var}={v} is not a job index"));
        }
    }
    anyhow::bail!(
        "which job? give --index I (or run under Slurm's SLURM_ARRAY_TASK_ID or a Kubernetes \
         Indexed Job's JOB_COMPLETION_INDEX); `--list` shows the jobs"
    )
}

#[allow(clippy::print_stdout)] // a command-line report
fn run_sweep(config: Option<PathBuf>, path: &Path, r: SweepRun) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let sweep: SweepFile =
        toml::from_str(&text).with_context(|| format!("{}: not a sweep file", path.display()))?;
    if sweep.version != 1 {
        anyhow::bail!(
            "{}: sweep version {} (this build reads 1)",
            path.display(),
            sweep.version
        );
    }
    crate::history::lake::check_name("sweep name", &sweep.name)?;
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let rel = |p: &Path| {
        if p.is_relative() {
            base_dir.join(p)
        } else {
            p.to_path_buf()
        }
    };
    if r.list {
        println!("sweep {:?}: {} jobs", sweep.name, sweep.jobs.len());
        for (i, j) in sweep.jobs.iter().enumerate() {
            println!("  {i}: {}", rel(&j.scenario).display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let index = job_index(r.index)?;
    let job = sweep.jobs.get(index).with_context(|| {
        format!(
            "job {index} of sweep {:?}: it has {} jobs (0–{})",
            sweep.name,
            sweep.jobs.len(),
            sweep.jobs.len().saturating_sub(1)
        )
    })?;
    let lake = match r.lake {
        Some(l) => l,
        None => AppConfig::load(config.as_deref())?
            .lake
            .path
            .context("no lake: give --lake DIR or set [lake] path in the config")?,
    };
    let scenario_path = rel(&job.scenario);
    let mut file = load_scenarios(&scenario_path)?;
    if let Some(n) = sweep.replications {
        file.replications = Replications::Fixed(n.max(2));
    }
    let (base, notes) = match (&sweep.model, &sweep.at) {
        (Some(m), None) => {
            let mut model = load_model(&rel(m))?;
            if let Some(h) = file.horizon_h {
                model.horizon_s = h * 3600.0;
            }
            (model, Vec::new())
        }
        (None, Some(at)) => {
            let f = fork(ForkArgs {
                config,
                at,
                horizon_h: file.horizon_h.unwrap_or(8.0),
                fit_hours: 8.0,
                calendar: None,
                history: r.history,
                registry: r.registry,
            })?;
            (f.model, f.text)
        }
        _ => anyhow::bail!("{}: give exactly one of `model` or `at`", path.display()),
    };
    let base = Arc::new(base);
    println!(
        "sweep {:?} job {index}/{}: {} on {}",
        sweep.name,
        sweep.jobs.len(),
        scenario_path.display(),
        base.name
    );
    let t = Instant::now();
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let outcome = with_progress(|p| {
        run_study(
            base.clone(),
            file.clone(),
            r.threads,
            false,
            notes.clone(),
            p,
            &cancel,
            t,
        )
    })?;
    print!("{}", outcome.report.to_text());
    // The KPI table as Parquet, with the job's identity on every row;
    // written beside and renamed, so a reader never sees half of it.
    let dir = lake
        .join("whatif")
        .join(format!("sweep={}", sweep.name))
        .join(format!("job={index}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let csv = dir.join(".kpis.csv.tmp");
    std::fs::write(&csv, outcome.report.to_csv())
        .with_context(|| format!("writing {}", csv.display()))?;
    let tmp = dir.join(".kpis.parquet.tmp");
    let out = dir.join("kpis.parquet");
    let q = |p: &Path| p.display().to_string().replace('\'', "''");
    let conn = duckdb::Connection::open_in_memory()?;
    conn.execute_batch(&format!(
        "COPY (SELECT '{scen}' AS scenario_file, '{title}' AS study, {seed}::UBIGINT AS seed,
                      {reps}::INTEGER AS replications_run, to_timestamp({now} / 1e6) AS finished, *
               FROM read_csv('{csv}', header = true, all_varchar = false))
         TO '{tmp}' (FORMAT parquet)",
        scen = job.scenario.display().to_string().replace('\'', "''"),
        title = file.name.replace('\'', "''"),
        seed = outcome.result.seed,
        reps = outcome.result.runs.first().map_or(0, Vec::len),
        now = crate::ingest::now_us(),
        csv = q(&csv),
        tmp = q(&tmp),
    ))
    .context("writing the job's Parquet")?;
    std::fs::rename(&tmp, &out).with_context(|| format!("renaming into {}", out.display()))?;
    let _ = std::fs::remove_file(&csv);
    println!(
        "wrote {} ({:.1} s)",
        out.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
