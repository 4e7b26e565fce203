//! The command line: arguments in, typed [`Cli`] values out (clap). The
//! binary dispatches them to the desktop app (`app::run`) or a headless
//! tool (`tools::…::run`); nothing here runs anything.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "mezzanine",
    version,
    about = "A desktop digital twin for manufacturing (ISA-95 Level 3.5)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(clap::Args, Debug, Default)]
pub struct RunArgs {
    /// Configuration file (TOML); defaults run the embedded demo plant.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Plant layout (glTF/GLB), overriding the config.
    #[arg(long)]
    pub scene: Option<PathBuf>,
    /// Asset registry (TOML), overriding the config.
    #[arg(long)]
    pub registry: Option<PathBuf>,
    /// Window size, e.g. 1280x800.
    #[arg(long, value_parser = parse_size)]
    pub window_size: Option<(u32, u32)>,
    /// Turn shadows off (helps software rendering).
    #[arg(long)]
    pub no_shadows: bool,
    /// Turn multisampling off (helps software rendering).
    #[arg(long)]
    pub no_msaa: bool,
    /// Save a screenshot of the plant to this PNG once it is shown, then exit.
    #[arg(long)]
    pub screenshot: Option<PathBuf>,
    /// Start a physical cause of bad parts in the embedded demo plant:
    /// `<cause>@<machine>@+<offset>[/<duration>]`, cause one of coolant,
    /// chatter, tool_wear, fixture (e.g. `chatter@L1-MILL-02@+10m/3m`).
    /// Repeatable; also `mezzanine record --demo-inject …`.
    #[arg(long = "demo-inject", global = true)]
    pub demo_inject: Vec<String>,
    /// Select this asset at start (e.g. L1-MILL-02).
    #[arg(long)]
    pub select: Option<String>,
    /// Open the latency and ingest windows at start.
    #[arg(long)]
    pub show_latency: bool,
    /// Start in replay this many seconds before now (paused), once the
    /// history has that far back.
    #[arg(long, conflicts_with = "replay_at")]
    pub replay_ago_s: Option<u64>,
    /// Start in replay at this time (RFC 3339 with offset, or
    /// `YYYY-MM-DD HH:MM[:SS]` in the plant's zone), once it is recorded.
    #[arg(long)]
    pub replay_at: Option<String>,
    /// History file (DuckDB), overriding the config.
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// With --screenshot: frames to let pass once the plant is live.
    #[arg(long, default_value_t = 20)]
    pub screenshot_settle_frames: u32,
    /// Embedded demo only: take its MES off the network from START to END
    /// seconds after start (e.g. `30..90`), to show an outage and the
    /// catch-up that follows.
    #[arg(long, value_parser = parse_range_s)]
    pub demo_mes_outage: Option<(u64, u64)>,
    /// Open the discrepancy list at start.
    #[arg(long)]
    pub show_discrepancies: bool,
    /// Open the schedule panel at start and schedule the plant once the
    /// MES is heard (the MES plan against the twin's schedule).
    #[arg(long)]
    pub show_schedule: bool,
    /// Open the OEE panel at start, with the 3D view coloured by OEE.
    #[arg(long)]
    pub show_oee: bool,
    /// Open the quality panel at start following this part (serial): its
    /// first operation framed, the cursor at its start.
    #[arg(long)]
    pub quality: Option<String>,
    /// Open the what-if panel and run this scenario file (TOML, the format
    /// `mezzanine whatif` reads) once the MES is heard.
    #[arg(long)]
    pub whatif: Option<PathBuf>,
    /// With --whatif: when the study is done, put the time cursor this many
    /// hours past the fork (the ghosts of that moment).
    #[arg(long)]
    pub whatif_at_h: Option<f64>,
    /// With --whatif: two synchronized views side by side (baseline |
    /// first scenario) instead of the ghosts overlaid.
    #[arg(long)]
    pub whatif_split: bool,
    /// With --whatif: measure frames (the study with 100 replications
    /// running; then N frames with two scenarios' ghosts, N without, N
    /// with again), log the table and exit.
    #[arg(long)]
    pub whatif_bench_frames: Option<u32>,
    /// With --whatif: when the study is shown, write its meeting pack (the
    /// window and charts as PNG, CSVs, the scenario file, the PDF report)
    /// into this folder, as the panel's button does, then exit.
    #[arg(long)]
    pub whatif_pack: Option<PathBuf>,
    /// With --whatif: start in presentation mode (large type; F5 toggles).
    #[arg(long)]
    pub whatif_present: bool,
    /// Open the enterprise view instead of a site's plant: every site's
    /// summary from the enterprise broker named in this file (TOML: broker,
    /// sites and their configs for the drill-down to a layout).
    #[arg(long, value_name = "ENTERPRISE_TOML")]
    pub enterprise: Option<PathBuf>,
}

pub fn parse_range_s(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("`{s}` is not START..END (seconds)"))?;
    let a: u64 = a
        .trim()
        .parse()
        .map_err(|_| format!("bad start in `{s}`"))?;
    let b: u64 = b.trim().parse().map_err(|_| format!("bad end in `{s}`"))?;
    if b <= a {
        return Err(format!("`{s}`: the end must come after the start"));
    }
    Ok((a, b))
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the desktop app (the default).
    Run(RunArgs),
    /// Check that a layout and a registry agree; exit code 1 if anything is unbound.
    Check {
        /// Plant layout (glTF/GLB).
        scene: PathBuf,
        /// Asset registry (TOML).
        registry: PathBuf,
    },
    /// Run the demo plant's PLC simulator alone against external endpoints.
    DemoPlant {
        /// Broker to publish the UNS to, e.g. mqtt://127.0.0.1:1883.
        #[arg(long)]
        mqtt: String,
        /// Host an OPC UA server at this endpoint, e.g. opc.tcp://127.0.0.1:4840/.
        #[arg(long)]
        opcua: Option<String>,
        /// Asset registry (TOML) naming the topics and nodes.
        #[arg(long)]
        registry: Option<PathBuf>,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Plant seconds per wall second.
        #[arg(long, default_value_t = 10.0)]
        time_scale: f64,
    },
    /// Record the plant to the history file without a window (a recorder
    /// for a server); the same adapters and writer as the app.
    Record {
        /// History file (DuckDB), overriding the config.
        #[arg(long)]
        history: Option<PathBuf>,
        /// Asset registry (TOML), overriding the config.
        #[arg(long)]
        registry: Option<PathBuf>,
        /// Stop after this many seconds without a new sample (default: run until killed).
        #[arg(long)]
        exit_after_idle_s: Option<u64>,
    },
    /// Export a time range of the history to Parquet, partitioned by day and asset.
    Export {
        /// Start (RFC 3339 with zone, e.g. 2026-11-24T08:00:00+01:00, or
        /// `YYYY-MM-DD HH:MM[:SS]` in the plant's time zone).
        #[arg(long)]
        from: String,
        /// End (exclusive), same forms as --from.
        #[arg(long)]
        to: String,
        /// Output folder (created; must not already hold an export).
        #[arg(long)]
        out: PathBuf,
        /// History file (DuckDB), overriding the config.
        #[arg(long)]
        history: Option<PathBuf>,
    },
    /// Import a production schedule (B2MML `ProductionSchedule` XML) into the
    /// history file; every equipment id must be in the registry. Importing
    /// a schedule with the same ID again replaces it.
    ImportSchedule {
        /// The B2MML document.
        file: PathBuf,
        /// History file (DuckDB), overriding the config.
        #[arg(long)]
        history: Option<PathBuf>,
        /// Asset registry (TOML), overriding the config.
        #[arg(long)]
        registry: Option<PathBuf>,
    },
    /// Measure a pipeline and print a table (`bench ingest`, `bench history`,
    /// `bench soak`, `bench whatif`, `bench schedule`).
    Bench {
        /// Which pipeline: `ingest`, `history`, `soak`, `whatif`, `schedule`, `oee`, `quality`
        /// or `share` (1, 2, 3 recorders on one shared subscription).
        what: String,
        /// A run under 30 s at smaller rates (soak: one minute).
        #[arg(long)]
        quick: bool,
        /// How long the soak runs (default 30).
        #[arg(long)]
        minutes: Option<u64>,
        /// The soak's load, samples per second (default 20,000).
        #[arg(long)]
        rate: Option<u64>,
    },
    /// Run a fault drill against real processes and print its table
    /// (`drill kill`: the recorder killed under load, the broker restarted).
    Drill {
        /// Which drill: `kill` (one recorder killed under load, the broker
        /// restarted) or `share` (members of a shared subscription, one
        /// killed, each sample once in the histories and the lake).
        what: String,
        /// Ten interruptions instead of 200.
        #[arg(long)]
        quick: bool,
        /// How many interruptions (a fifth of them broker restarts).
        #[arg(long)]
        kills: Option<u32>,
        /// Asset registry (TOML) naming the drill's topics (default: the demo plant's).
        #[arg(long)]
        registry: Option<PathBuf>,
        /// `drill share`: members of the shared subscription (default 3).
        #[arg(long, default_value_t = 3)]
        recorders: usize,
        /// `drill share`: messages to publish (default 30,000).
        #[arg(long, default_value_t = 30_000)]
        messages: u64,
    },
    /// OPC UA server certificates: list the ones the client refused, or
    /// trust one (`opcua trust --thumbprint <hex>`).
    Opcua {
        /// `trust`.
        what: String,
        /// The refused certificate to trust (8 or more hex digits).
        #[arg(long)]
        thumbprint: Option<String>,
    },
    /// What-if: run a scenario file against the plant forked from the
    /// history (`--at`) or a standalone model (`--model`), print baseline vs
    /// each scenario with 95 % confidence intervals; or back-test the
    /// simulation against a recorded window (`whatif backtest`).
    Whatif(WhatifArgs),
    /// OEE (ISO 22400-2) from the history: availability × performance ×
    /// quality per shift, day, machine or line, with the loss waterfall and
    /// Pareto for one machine (`--machine`).
    Oee(OeeArgs),
    /// Quality: `quality failures` (recent failed parts), `quality genealogy`
    /// (what made a serial, or what a lot or order made), `quality rank`
    /// (what was different for a failed part), `quality batch` (what
    /// separates the failures of a period from good parts), `quality
    /// evidence` (the evidence pack, `--out DIR`), `quality simulate` (record
    /// the demo plant with injected causes into a history, faster than real
    /// time).
    Quality(QualityArgs),
    /// The audit trail: `audit verify` recomputes the hash chain and names the
    /// first broken record (exit 1); `audit list` prints it.
    Audit {
        /// `verify` or `list`.
        what: String,
        #[arg(long)]
        history: Option<PathBuf>,
        #[arg(long)]
        registry: Option<PathBuf>,
    },
    /// The Parquet lake: `lake compact` merges each partition's files into
    /// one, dropping rows written twice (by two members of a shared
    /// subscription, or redelivered); `lake status` lists its datasets.
    Lake {
        /// `compact` or `status`.
        what: String,
        /// The lake folder, overriding the config's `[lake] path`.
        #[arg(long)]
        lake: Option<PathBuf>,
    },
    /// Schedule the plant as recorded (`--from-history`) against the MES
    /// plan, or solve a job-shop (`--jsp`) or flexible job-shop (`--fjsp`)
    /// benchmark instance.
    Schedule(ScheduleArgs),
    /// Regenerate the demo plant's layout and registry.
    GenerateDemoPlant {
        /// Output folder.
        #[arg(long, default_value = "scenes")]
        out: PathBuf,
    },
}

/// `mezzanine oee …`.
#[derive(clap::Args, Debug)]
pub struct OeeArgs {
    /// Start (RFC 3339 with offset, `YYYY-MM-DD HH:MM[:SS]` in the plant's
    /// zone, or `start` for the recording's first sample).
    #[arg(long, default_value = "start")]
    pub from: String,
    /// End (same forms, or `end` for the recording's last sample).
    #[arg(long, default_value = "end")]
    pub to: String,
    /// shift, day, machine or line.
    #[arg(long, default_value = "machine")]
    pub by: String,
    /// One machine: its loss waterfall and the Pareto of its losses.
    #[arg(long)]
    pub machine: Option<String>,
    /// Write the table as CSV.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Shift calendar (TOML), overriding the config's `[plant] shift_calendar`.
    #[arg(long)]
    pub calendar: Option<PathBuf>,
    /// Loss rules (TOML; see config/oee-losses.toml), overriding the
    /// config's `[plant] oee_rules`; else the defaults.
    #[arg(long)]
    pub rules: Option<PathBuf>,
    #[arg(long)]
    pub history: Option<PathBuf>,
    #[arg(long)]
    pub registry: Option<PathBuf>,
}

/// `mezzanine quality …`.
#[derive(clap::Args, Debug)]
pub struct QualityArgs {
    /// failures, genealogy, rank, batch, evidence or simulate.
    pub what: String,
    /// simulate: recorded minutes of the demo plant (faster than real time,
    /// ending now) with `--demo-inject` causes.
    #[arg(long, default_value_t = 120.0)]
    pub minutes: f64,
    /// simulate: the demo's seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// The part (genealogy, rank, evidence).
    #[arg(long)]
    pub serial: Option<String>,
    /// A material lot: every part made from it (genealogy).
    #[arg(long)]
    pub lot: Option<String>,
    /// A work order: every part made under it (genealogy).
    #[arg(long)]
    pub work_order: Option<String>,
    /// Where the evidence pack goes (a folder, replaced).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Good parts per operation behind each envelope.
    #[arg(long, default_value_t = 100)]
    pub good: usize,
    /// Failures in the last this many recorded hours (failures).
    #[arg(long, default_value_t = 24.0)]
    pub since_h: f64,
    #[arg(long)]
    pub history: Option<PathBuf>,
    #[arg(long)]
    pub registry: Option<PathBuf>,
}

/// `mezzanine schedule …`.
#[derive(clap::Args, Debug)]
pub struct ScheduleArgs {
    /// A job-shop instance (OR-Library format).
    #[arg(long, conflicts_with_all = ["fjsp", "from_history"])]
    pub jsp: Option<PathBuf>,
    /// A flexible job-shop instance (Brandimarte format).
    #[arg(long, conflicts_with = "from_history")]
    pub fjsp: Option<PathBuf>,
    /// Schedule the plant's open orders as recorded in the history, and
    /// compare with the MES plan recorded then.
    #[arg(long)]
    pub from_history: bool,
    /// The moment to schedule from (RFC 3339 with offset, `YYYY-MM-DD
    /// HH:MM[:SS]` in the plant's zone, or `latest`).
    #[arg(long, default_value = "latest")]
    pub at: String,
    /// makespan, tardiness (weighted), or mix[:W] (W × tardiness +
    /// (1 − W) × makespan).
    #[arg(long, default_value = "mix:0.9")]
    pub objective: String,
    /// Search time, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub time_limit_s: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// A known lower bound (benchmarks; else a trivial one is computed).
    #[arg(long)]
    pub lower_bound: Option<u32>,
    /// What-if replications of both schedules under breakdowns and
    /// cycle-time variation (0: none).
    #[arg(long, default_value_t = 20)]
    pub replications: u32,
    /// Hours of history before `--at` to fit the machines on.
    #[arg(long, default_value_t = 8.0)]
    pub fit_hours: f64,
    /// Hours ahead the shift calendar is read for.
    #[arg(long, default_value_t = 48.0)]
    pub horizon_h: f64,
    /// Shift calendar (TOML), overriding the config's.
    #[arg(long)]
    pub calendar: Option<PathBuf>,
    /// Write the twin's schedule as a B2MML ProductionSchedule.
    #[arg(long)]
    pub b2mml: Option<PathBuf>,
    /// Publish the reschedule as a recommendation (retained) on the twin's
    /// recommendations topic of the configured broker.
    #[arg(long)]
    pub publish: bool,
    /// Worker threads for the replications (default: cores − 1).
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long)]
    pub history: Option<PathBuf>,
    #[arg(long)]
    pub registry: Option<PathBuf>,
}

/// `mezzanine whatif …`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct WhatifArgs {
    #[command(subcommand)]
    pub command: Option<WhatifCommand>,
    /// The scenario file (TOML). Without one, the baseline alone runs.
    pub scenario: Option<PathBuf>,
    /// A standalone model file (TOML) instead of the plant.
    #[arg(long, conflicts_with = "at")]
    pub model: Option<PathBuf>,
    /// Fork the plant as recorded at this time (RFC 3339 with offset,
    /// `YYYY-MM-DD HH:MM[:SS]` in the plant's zone, or `latest`).
    #[arg(long)]
    pub at: Option<String>,
    /// Replications per variant (overrides the scenario file).
    #[arg(long)]
    pub replications: Option<u32>,
    /// Simulated hours after the fork (overrides the scenario file; default 8).
    #[arg(long)]
    pub horizon_h: Option<f64>,
    /// Hours of history before the fork to fit the machines on (default 8).
    #[arg(long, default_value_t = 8.0)]
    pub fit_hours: f64,
    /// Shift calendar (TOML), overriding the config's `[plant] shift_calendar`.
    #[arg(long)]
    pub calendar: Option<PathBuf>,
    /// Write the KPI table as CSV.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Write every machine's state over time and every order's moves
    /// (replication 0 of each variant) as Parquet.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Write the meeting pack into this folder: report.pdf, the KPI,
    /// order and machine CSVs, the scenario file, the fingerprint, the
    /// scenario's sequence as B2MML (the app adds its pictures).
    #[arg(long)]
    pub pack: Option<PathBuf>,
    /// Worker threads (default: cores − 1, at least 1).
    #[arg(long)]
    pub threads: Option<usize>,
    /// History file (DuckDB), overriding the config.
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// Asset registry (TOML), overriding the config.
    #[arg(long)]
    pub registry: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum WhatifCommand {
    /// One job of a sweep: the sweep file lists scenario files (and the
    /// model or fork moment they share); `--index I` runs the I-th (default:
    /// `SLURM_ARRAY_TASK_ID` or `JOB_COMPLETION_INDEX`, as array jobs set
    /// them) and writes its KPI table as Parquet into the lake under
    /// `whatif/sweep=<name>/job=<I>/`. `--list` prints the jobs.
    Sweep {
        /// The sweep file (TOML).
        sweep: PathBuf,
        #[arg(long)]
        index: Option<usize>,
        /// The lake folder (default: the config's `[lake] path`).
        #[arg(long)]
        lake: Option<PathBuf>,
        /// Print the jobs and their count, run nothing.
        #[arg(long)]
        list: bool,
        /// Worker threads (default: cores − 1, at least 1).
        #[arg(long)]
        threads: Option<usize>,
        #[arg(long)]
        history: Option<PathBuf>,
        #[arg(long)]
        registry: Option<PathBuf>,
    },
    /// Fork from the recorded state at --from, simulate to --to with the
    /// orders as the MES had them, compare with what was recorded.
    Backtest {
        /// T0 (same forms as `export --from`).
        #[arg(long)]
        from: String,
        /// T1.
        #[arg(long)]
        to: String,
        /// Fit the machines on the history from here to T0 (default: as
        /// long before T0 as the window is long).
        #[arg(long)]
        fit_from: Option<String>,
        #[arg(long, default_value_t = 20)]
        replications: u32,
        /// Write the per-machine comparison as CSV.
        #[arg(long)]
        csv: Option<PathBuf>,
        #[arg(long)]
        history: Option<PathBuf>,
        #[arg(long)]
        registry: Option<PathBuf>,
    },
}

pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("`{s}` is not WIDTHxHEIGHT"))?;
    let w: u32 = w
        .trim()
        .parse()
        .map_err(|_| format!("bad width in `{s}`"))?;
    let h: u32 = h
        .trim()
        .parse()
        .map_err(|_| format!("bad height in `{s}`"))?;
    if w < 320 || h < 240 {
        return Err(format!("`{s}` is smaller than 320x240"));
    }
    Ok((w, h))
}

/// A time from the command line, in microseconds since the Unix epoch:
/// RFC 3339 with an offset, or a civil time (`YYYY-MM-DD HH:MM[:SS]`) in
/// the plant's zone `tz`.
pub fn parse_time(s: &str, tz: &str) -> Result<i64, String> {
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return Ok(ts.as_microsecond());
    }
    let civil: jiff::civil::DateTime = s.trim().replace(' ', "T").parse().map_err(|_| {
        format!(
            "`{s}` is not a time: use 2026-11-24T08:00:00+01:00 or `2026-11-24 08:00` (plant time, {tz})"
        )
    })?;
    let zoned = civil.in_tz(tz).map_err(|_| {
        format!("the plant's time zone `{tz}` is unknown here; give the time with an offset")
    })?;
    Ok(zoned.timestamp().as_microsecond())
}
