//! The `mezzanine` binary: command line and configuration in, the desktop
//! app (or a headless tool: `check`, `generate-demo-plant`) out.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use bevy::log::LogPlugin;
use bevy::prelude::*;
use bevy::window::WindowResolution;
use bevy_egui::EguiPlugin;
use clap::{Parser, Subcommand};

use mezzanine::config::{AppConfig, SyncMode};
use mezzanine::history::{HistoryPlugin, HistoryWriter, Store, WriterSettings};
use mezzanine::ingest::mqtt::{
    MesRoute, MqttSettings, TlsFiles, parse_mqtt_url, spawn_mqtt_adapter,
};
use mezzanine::ingest::opcua::{OpcUaSettings, spawn_opcua_adapter};
use mezzanine::ingest::{IngestPlugin, IngestSender, ingest_channel};
use mezzanine::registry::{AssetRegistry, asset_refs, load_registry};
use mezzanine::render::{CaptureRequest, RenderOptions, RenderPlugin};
use mezzanine::scene::layout::{Binder, Layout};
use mezzanine::{TwinCorePlugins, demo, scene, ui};

#[derive(Parser, Debug)]
#[command(
    name = "mezzanine",
    version,
    about = "A desktop digital twin for manufacturing (ISA-95 Level 3.5)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args, Debug, Default)]
struct RunArgs {
    /// Configuration file (TOML); defaults run the embedded demo plant.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Plant layout (glTF/GLB), overriding the config.
    #[arg(long)]
    scene: Option<PathBuf>,
    /// Asset registry (TOML), overriding the config.
    #[arg(long)]
    registry: Option<PathBuf>,
    /// Window size, e.g. 1280x800.
    #[arg(long, value_parser = parse_size)]
    window_size: Option<(u32, u32)>,
    /// Turn shadows off (helps software rendering).
    #[arg(long)]
    no_shadows: bool,
    /// Turn multisampling off (helps software rendering).
    #[arg(long)]
    no_msaa: bool,
    /// Save a screenshot of the plant to this PNG once it is shown, then exit.
    #[arg(long)]
    screenshot: Option<PathBuf>,
    /// Select this asset at start (e.g. L1-MILL-02).
    #[arg(long)]
    select: Option<String>,
    /// Open the latency and ingest windows at start.
    #[arg(long)]
    show_latency: bool,
    /// Start in replay this many seconds before now (paused), once the
    /// history has that far back.
    #[arg(long, conflicts_with = "replay_at")]
    replay_ago_s: Option<u64>,
    /// Start in replay at this time (RFC 3339 with offset, or
    /// `YYYY-MM-DD HH:MM[:SS]` in the plant's zone), once it is recorded.
    #[arg(long)]
    replay_at: Option<String>,
    /// History file (DuckDB), overriding the config.
    #[arg(long)]
    history: Option<PathBuf>,
    /// With --screenshot: frames to let pass once the plant is live.
    #[arg(long, default_value_t = 20)]
    screenshot_settle_frames: u32,
    /// Embedded demo only: take its MES off the network from START to END
    /// seconds after start (e.g. `30..90`), to show an outage and the
    /// catch-up that follows.
    #[arg(long, value_parser = parse_range_s)]
    demo_mes_outage: Option<(u64, u64)>,
    /// Open the discrepancy list at start.
    #[arg(long)]
    show_discrepancies: bool,
}

fn parse_range_s(s: &str) -> Result<(u64, u64), String> {
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
enum Command {
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
    /// Measure a pipeline and print a table (`bench ingest`, `bench history`).
    Bench {
        /// Which pipeline: `ingest` or `history`.
        what: String,
        /// A run under 30 s at smaller rates.
        #[arg(long)]
        quick: bool,
    },
    /// Regenerate the demo plant's layout and registry.
    GenerateDemoPlant {
        /// Output folder.
        #[arg(long, default_value = "scenes")]
        out: PathBuf,
    },
}

/// Quiet the chatty network crates; keep our own logs at info.
const LOG_FILTER: &str = "info,wgpu=error,naga=warn,rumqttd=warn,rumqttc=warn,\
opcua_server=warn,opcua_client=warn,opcua_core=warn,async_opcua_server=warn,\
async_opcua_client=warn,async_opcua_core=warn";

fn parse_size(s: &str) -> Result<(u32, u32), String> {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => run(cli.run),
        Some(Command::Run(args)) => run(RunArgs {
            config: args.config.or(cli.run.config),
            ..args
        }),
        Some(Command::Check { scene, registry }) => check(&scene, &registry),
        Some(Command::GenerateDemoPlant { out }) => generate(&out),
        Some(Command::Bench { what, quick }) => match what.as_str() {
            "ingest" => mezzanine::bench::run_ingest_bench(quick)
                .map(|_| ExitCode::SUCCESS)
                .map_err(anyhow::Error::from),
            "history" => mezzanine::bench::history::run_history_bench(quick)
                .map(|_| ExitCode::SUCCESS)
                .map_err(anyhow::Error::from),
            other => Err(anyhow::anyhow!(
                "unknown benchmark `{other}` (try `ingest` or `history`)"
            )),
        },
        Some(Command::Record {
            history,
            registry,
            exit_after_idle_s,
        }) => record(cli.run.config, history, registry, exit_after_idle_s),
        Some(Command::Export {
            from,
            to,
            out,
            history,
        }) => export(cli.run.config, &from, &to, &out, history),
        Some(Command::ImportSchedule {
            file,
            history,
            registry,
        }) => import_schedule(cli.run.config, &file, history, registry),
        Some(Command::DemoPlant {
            mqtt,
            opcua,
            registry,
            seed,
            time_scale,
        }) => demo_plant(&mqtt, opcua.as_deref(), registry, seed, time_scale),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn check(scene: &std::path::Path, registry: &std::path::Path) -> anyhow::Result<ExitCode> {
    let reg = load_registry(registry)?;
    let layout = Layout::read(scene)?;
    let report = layout.bind(&Binder::new(asset_refs(&reg)));
    print!("{}", report.to_text());
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn generate(out: &std::path::Path) -> anyhow::Result<ExitCode> {
    let spec = demo::plant::PlantSpec::demo();
    let (glb, toml) = demo::write_plant(&spec, out, "demo-plant")?;
    println!(
        "wrote {} ({} machines) and {}",
        glb.display(),
        spec.machines.len(),
        toml.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The history threads, kept for the app's lifetime and stopped in order.
/// Adapters and (when no external endpoint is named) the embedded plant;
/// held by `main` (not by the app, which its runner consumes) and stopped
/// in order once the app has ended.
struct LiveSources {
    mes_poller: Option<mezzanine::mes::poll::MesPoller>,
    opcua: Option<mezzanine::ingest::opcua::OpcUaAdapter>,
    mqtt: mezzanine::ingest::mqtt::MqttAdapter,
    plant: Option<demo::EmbeddedPlant>,
}

impl LiveSources {
    /// Adapters first, then the plant they listen to; waits for each.
    fn stop(self) {
        if let Some(p) = self.mes_poller {
            p.stop();
        }
        if let Some(o) = self.opcua {
            o.stop();
        }
        self.mqtt.stop();
        if let Some(p) = self.plant {
            p.stop();
        }
    }
}

fn start_live_sources(
    cfg: &AppConfig,
    registry: Arc<AssetRegistry>,
    tx: IngestSender,
) -> anyhow::Result<LiveSources> {
    let plant = if cfg.embedded_demo() {
        let settings = demo::DemoSettings {
            seed: cfg.demo.seed,
            time_scale: cfg.demo.time_scale,
            tick_ms: cfg.demo.tick_ms,
            pki_dir: cfg.pki_dir(),
        };
        Some(
            demo::start_embedded_plant(registry.clone(), &settings)
                .context("starting the embedded demo plant")?,
        )
    } else {
        None
    };
    let mqtt_url = match (&cfg.mqtt.url, &plant) {
        (Some(u), _) => u.clone(),
        (None, Some(p)) => p.broker.url(),
        (None, None) => anyhow::bail!("no MQTT broker: set [mqtt] url"),
    };
    let url = parse_mqtt_url(&mqtt_url)?;
    let tls = if url.tls {
        Some(TlsFiles {
            ca_file: cfg.mqtt.ca_file.clone().with_context(|| {
                format!(
                    "{mqtt_url} is TLS: set [mqtt] ca_file to the CA (PEM) that signed the broker"
                )
            })?,
            client_cert_file: cfg.mqtt.client_cert_file.clone(),
            client_key_file: cfg.mqtt.client_key_file.clone(),
        })
    } else {
        None
    };
    let mqtt = spawn_mqtt_adapter(
        MqttSettings {
            host: url.host,
            port: url.port,
            tls,
            client_id: cfg.mqtt.client_id.clone(),
            username: cfg.mqtt.username.clone(),
            password: cfg.mqtt.password.clone(),
            topics: {
                let mut t = cfg.mqtt.topic_roots.clone();
                for e in [cfg.mes.events_topic.trim(), cfg.mes.heartbeat_topic.trim()] {
                    if !e.is_empty() && !t.iter().any(|r| r == e) {
                        t.push(e.to_string());
                    }
                }
                t
            },
            mes: match cfg.mes.topic_prefix() {
                Some(topic_prefix) => Some(MesRoute {
                    topic_prefix,
                    heartbeat_topic: Some(cfg.mes.heartbeat_topic.trim().to_string())
                        .filter(|t| !t.is_empty()),
                    contract: Arc::new(
                        mezzanine::mes::Contract::load()
                            .context("loading the MES event schemas")?,
                    ),
                }),
                None => None,
            },
        },
        registry.clone(),
        tx.clone(),
    )?;
    let endpoint = match (&cfg.opcua.endpoint, &plant) {
        (Some(e), _) => Some(e.clone()),
        (None, Some(p)) => Some(p.opcua.endpoint()),
        (None, None) => None,
    };
    let opcua = match endpoint.filter(|_| cfg.opcua.enabled) {
        Some(endpoint) => Some(spawn_opcua_adapter(
            OpcUaSettings {
                endpoint,
                security_policy: cfg.opcua.security_policy.clone(),
                security_mode: cfg.opcua.security_mode.clone(),
                username: cfg.opcua.username.clone(),
                password: cfg.opcua.password.clone(),
                pki_dir: cfg.pki_dir().join("client"),
                sampling_interval_ms: cfg.opcua.sampling_interval_ms,
            },
            registry,
            tx,
        )?),
        None => None,
    };
    // The MES API: the configured one, else the embedded demo's.
    let api_url = cfg
        .mes
        .api_url
        .clone()
        .or_else(|| plant.as_ref().map(|p| p.mes.api_url.clone()));
    let mes_poller = match api_url {
        Some(api_url) => Some(
            mezzanine::mes::poll::spawn_poller(mezzanine::mes::poll::PollSettings {
                api_url,
                interval_ms: cfg.mes.poll_interval_ms,
                work_orders: cfg.mes.domains.work_orders == SyncMode::Polling,
                equipment: cfg.mes.domains.equipment == SyncMode::Polling,
                schedule: cfg.mes.domains.schedule == SyncMode::Polling,
            })
            .context("starting the MES poller")?,
        ),
        None => None,
    };
    Ok(LiveSources {
        mes_poller,
        opcua,
        mqtt,
        plant,
    })
}

fn demo_plant(
    mqtt: &str,
    opcua: Option<&str>,
    registry: Option<PathBuf>,
    seed: u64,
    time_scale: f64,
) -> anyhow::Result<ExitCode> {
    let cfg = AppConfig::load(None)?;
    let reg_path = registry.unwrap_or(cfg.plant.registry.clone());
    let registry = Arc::new(AssetRegistry::new(load_registry(&reg_path)?));
    let url = parse_mqtt_url(mqtt)?;
    if url.tls {
        anyhow::bail!("the demo plant publishes over plain MQTT; give it an mqtt:// URL");
    }
    let (host, port) = (url.host, url.port);
    let server = match opcua {
        Some(ep) => {
            let port = ep
                .trim_end_matches('/')
                .rsplit_once(':')
                .and_then(|(_, p)| p.split('/').next()?.parse::<u16>().ok())
                .with_context(|| format!("`{ep}` has no port; use opc.tcp://127.0.0.1:4840/"))?;
            Some(Arc::new(demo::opcua_server::start_opcua_server(
                &registry,
                port,
                cfg.pki_dir().join("server"),
            )?))
        }
        None => None,
    };
    let sim = demo::plc::PlcSim::new(registry, seed, mezzanine::ingest::now_us(), time_scale);
    let publisher =
        demo::publisher::spawn_publisher(sim, Some((host, port)), server.clone(), 100, None)?;
    println!(
        "demo plant publishing to {mqtt}{}; Ctrl-C to stop",
        server
            .as_ref()
            .map(|s| format!(", OPC UA at {}", s.endpoint()))
            .unwrap_or_default()
    );
    loop {
        std::thread::sleep(std::time::Duration::from_secs(10));
        let c = &publisher.counters;
        println!(
            "published {} MQTT messages, {} OPC UA updates, {} MQTT errors",
            c.mqtt_published.load(std::sync::atomic::Ordering::Relaxed),
            c.opcua_updates.load(std::sync::atomic::Ordering::Relaxed),
            c.mqtt_errors.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = AppConfig::load(args.config.as_deref())?;
    if let Some(s) = args.scene {
        cfg.plant.scene = s;
    }
    if let Some(r) = args.registry {
        cfg.plant.registry = r;
    }
    if let Some((w, h)) = args.window_size {
        cfg.window.width_px = w;
        cfg.window.height_px = h;
    }
    cfg.render.shadows &= !args.no_shadows;
    cfg.render.msaa &= !args.no_msaa;
    cfg.validate()?;
    let registry = load_registry(&cfg.plant.registry)
        .with_context(|| "the asset registry must load before the plant can be shown")?;

    let registry = AssetRegistry::new(registry);
    if let Some(h) = args.history {
        cfg.history.path = Some(h);
    }
    let (mut tx, rx) = ingest_channel(65_536);
    let recorder = if cfg.history.enabled {
        let (plugin, threads) = HistoryPlugin::start(
            &cfg.history.db_path(),
            Arc::new(registry.clone()),
            WriterSettings::from_config(&cfg.history),
        )
        .context("opening the history file")?;
        tx = tx.with_recorder(threads.writer.recorder.clone());
        Some((plugin, threads))
    } else {
        None
    };
    let live = start_live_sources(&cfg, Arc::new(registry.clone()), tx)?;
    if let Some((from_s, to_s)) = args.demo_mes_outage {
        let shared = live
            .plant
            .as_ref()
            .map(|p| p.mes.shared.clone())
            .context("--demo-mes-outage needs the embedded demo plant")?;
        std::thread::Builder::new()
            .name("demo-mes-outage".into())
            .spawn(move || {
                std::thread::sleep(std::time::Duration::from_secs(from_s));
                bevy::log::warn!("demo: the MES goes off the network for {} s", to_s - from_s);
                shared.set_online(false);
                std::thread::sleep(std::time::Duration::from_secs(to_s - from_s));
                bevy::log::warn!("demo: the MES is back on the network");
                shared.set_online(true);
            })
            .context("starting the demo outage timer")?;
    }

    let mut app = App::new();
    scene::register_plant_source(&mut app, &cfg.plant.scene);
    app.add_plugins(
        DefaultPlugins
            .set(LogPlugin {
                filter: LOG_FILTER.into(),
                ..default()
            })
            .set(WindowPlugin {
                primary_window: Some(Window {
                    title: format!("Mezzanine — {}", registry.plant().name),
                    resolution: WindowResolution::new(cfg.window.width_px, cfg.window.height_px),
                    ..default()
                }),
                ..default()
            }),
    )
    .add_plugins(EguiPlugin::default())
    .add_plugins(TwinCorePlugins {
        registry,
        layout_path: cfg.plant.scene.clone(),
    })
    .add_plugins(IngestPlugin { receiver: rx })
    .add_plugins(RenderPlugin {
        options: RenderOptions {
            shadows: cfg.render.shadows,
            msaa: cfg.render.msaa,
        },
        capture: args.screenshot.map(|path| CaptureRequest {
            path,
            settle_frames: args.screenshot_settle_frames,
            exit_after: true,
            max_frames: 3_000 + args.screenshot_settle_frames,
            min_live_fraction: 0.9,
        }),
    })
    .add_plugins(ui::UiPlugin);
    if let Some(id) = args.select {
        let idx = app
            .world()
            .resource::<AssetRegistry>()
            .by_id(&id)
            .with_context(|| format!("--select {id}: no such asset in the registry"))?;
        app.add_systems(
            Update,
            move |mut done: Local<bool>,
                  index: Res<mezzanine::twin::AssetEntities>,
                  mut out: MessageWriter<mezzanine::render::SelectionCommand>| {
                if !*done && index.0.contains_key(&idx) {
                    out.write(mezzanine::render::SelectionCommand::Select(idx));
                    *done = true;
                }
            },
        );
    }
    let mut mes_seen = Vec::new();
    let mut restored = Vec::new();
    let mut recorder_threads = None;
    if let Some((mut plugin, threads)) = recorder {
        mes_seen = std::mem::take(&mut plugin.mes_seen_ids);
        restored = std::mem::take(&mut plugin.unresolved_discrepancies);
        app.add_plugins(plugin);
        recorder_threads = Some(threads);
    }
    let mut mes_plugin = mezzanine::mes::MesPlugin::from_config(&cfg.mes, mes_seen);
    if live.mes_poller.is_none() && cfg.mes.heartbeat_topic.trim().is_empty() {
        // Sporadic events alone cannot tell a quiet MES from an absent one.
        mes_plugin.heartbeat_timeout_ms = 0;
    }
    app.add_plugins(mes_plugin);
    if let Some(p) = &live.plant {
        app.add_plugins(demo::DemoControlPlugin {
            mes: p.mes.shared.clone(),
        });
    }
    if let Some(p) = &live.mes_poller {
        app.insert_resource(mezzanine::mes::MesPollChannel {
            results: p.results.clone(),
            commands: p.commands.clone(),
        });
    }
    if cfg.reconcile.enabled {
        let rules = mezzanine::reconcile::ReconcileRules::load(&cfg.reconcile.rules)
            .context("the authority rules must load before the twin reconciles")?;
        app.add_plugins(mezzanine::reconcile::ReconcilePlugin {
            rules,
            restored,
            period_ms: cfg.reconcile.period_ms,
        });
    }
    let replay_at_us = match (&args.replay_at, args.replay_ago_s) {
        (Some(t), _) => {
            let tz = app
                .world()
                .resource::<AssetRegistry>()
                .plant()
                .time_zone
                .clone();
            Some(parse_time_arg(t, &tz).context("--replay-at")?)
        }
        (None, Some(ago_s)) => Some(mezzanine::ingest::now_us() - (ago_s as i64) * 1_000_000),
        (None, None) => None,
    };
    if let Some(t) = replay_at_us {
        app.add_systems(
            Update,
            move |mut done: Local<bool>,
                  history: Option<Res<mezzanine::history::History>>,
                  mut out: MessageWriter<mezzanine::playback::PlaybackCommand>| {
                let Some(h) = history else {
                    return;
                };
                if !*done && h.stats.range_us().is_some_and(|(a, _)| a <= t) {
                    out.write(mezzanine::playback::PlaybackCommand::Seek(t));
                    *done = true;
                }
            },
        );
    }
    if args.show_discrepancies {
        app.world_mut()
            .resource_mut::<ui::UiState>()
            .discrepancies
            .open = true;
    }
    if args.show_latency {
        let mut ui_state = app.world_mut().resource_mut::<ui::UiState>();
        ui_state.show_latency = true;
        ui_state.show_ingest = true;
    }
    // The runner takes the app (its world included) and drops it when the
    // window closes; the threads below live outside it.
    let exit = app.run();
    // Orderly shutdown: the adapters stop, then the recorder commits what it
    // holds, checkpoints and closes the file, before the process (and
    // DuckDB's global state) ends. Nothing may still run a query then.
    live.stop();
    if let Some(threads) = recorder_threads {
        threads.shutdown();
    }
    Ok(match exit {
        AppExit::Success => ExitCode::SUCCESS,
        AppExit::Error(code) => ExitCode::from(code.get()),
    })
}

/// The configuration of a headless tool, with its `--history` and
/// `--registry` overrides.
fn tool_config(
    config: Option<PathBuf>,
    history: Option<PathBuf>,
    registry: Option<PathBuf>,
) -> anyhow::Result<AppConfig> {
    let mut cfg = AppConfig::load(config.as_deref())?;
    if let Some(h) = history {
        cfg.history.path = Some(h);
    }
    if let Some(r) = registry {
        cfg.plant.registry = r;
    }
    Ok(cfg)
}

/// Headless recording: adapters → history writer, no twin, no window.
fn record(
    config: Option<PathBuf>,
    history: Option<PathBuf>,
    registry: Option<PathBuf>,
    exit_after_idle_s: Option<u64>,
) -> anyhow::Result<ExitCode> {
    use std::sync::atomic::Ordering::Relaxed;
    let cfg = tool_config(config, history, registry)?;
    cfg.validate()?;
    let registry = Arc::new(AssetRegistry::new(load_registry(&cfg.plant.registry)?));
    let path = cfg.history.db_path();
    let store = Store::open(&path, &registry).context("opening the history file")?;
    println!("{}", store.report.summary());
    let writer = HistoryWriter::spawn(
        store,
        registry.clone(),
        WriterSettings::from_config(&cfg.history),
        65_536,
    )?;
    let stats = writer.stats.clone();
    let tx = IngestSender::recorder_only(writer.recorder.clone());
    let sources = start_live_sources(&cfg, registry, tx)?;
    println!("recording to {}", path.display());
    let mut last_written = 0;
    let mut idle_since = std::time::Instant::now();
    let mut last_report = std::time::Instant::now();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let written = stats.samples_written.load(Relaxed);
        if last_report.elapsed().as_secs() >= 60 {
            last_report = std::time::Instant::now();
            println!(
                "{}: {written} samples recorded, backlog {}, last commit {:.1} ms, {} dead letters{}",
                jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ"),
                stats.backlog.load(Relaxed),
                stats.last_commit_us.load(Relaxed) as f64 / 1000.0,
                stats.dead_letters.load(Relaxed),
                stats
                    .last_error
                    .lock()
                    .ok()
                    .and_then(|e| e.clone())
                    .map(|e| format!(", last error: {e}"))
                    .unwrap_or_default()
            );
        }
        if written != last_written {
            last_written = written;
            idle_since = std::time::Instant::now();
        }
        if exit_after_idle_s.is_some_and(|s| idle_since.elapsed().as_secs() >= s) {
            break;
        }
    }
    sources.stop();
    let stats = writer.stats.clone();
    writer.join();
    println!(
        "recorded {} samples ({} duplicates dropped, {} dead letters) in {} commits",
        stats.samples_written.load(Relaxed),
        stats.duplicates_dropped.load(Relaxed),
        stats.dead_letters.load(Relaxed),
        stats.commits.load(Relaxed)
    );
    Ok(ExitCode::SUCCESS)
}

/// A time from the command line: RFC 3339 with an offset, or a civil time in
/// the plant's zone.
fn parse_time_arg(s: &str, tz: &str) -> anyhow::Result<i64> {
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return Ok(ts.as_microsecond());
    }
    let civil: jiff::civil::DateTime = s.trim().replace(' ', "T").parse().with_context(|| {
        format!("`{s}` is not a time: use 2026-11-24T08:00:00+01:00 or `2026-11-24 08:00` (plant time, {tz})")
    })?;
    let zoned = civil.in_tz(tz).with_context(|| {
        format!("the plant's time zone `{tz}` is unknown here; give the time with an offset")
    })?;
    Ok(zoned.timestamp().as_microsecond())
}

fn import_schedule(
    config: Option<PathBuf>,
    file: &std::path::Path,
    history: Option<PathBuf>,
    registry: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let cfg = tool_config(config, history, registry)?;
    let registry = AssetRegistry::new(load_registry(&cfg.plant.registry)?);
    let xml =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let schedule = mezzanine::mes::b2mml::parse(&xml, file, Some(&registry))?;
    let path = cfg.history.db_path();
    let store = Store::open(&path, &registry).context("opening the history file")?;
    let n = mezzanine::history::import_schedule(&store, &schedule, &file.display().to_string())?;
    let tz =
        jiff::tz::TimeZone::get(&registry.plant().time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
    let when = |us: Option<i64>| {
        us.and_then(|u| jiff::Timestamp::from_microsecond(u).ok())
            .map_or("—".to_string(), |t| {
                t.to_zoned(tz.clone())
                    .strftime("%Y-%m-%d %H:%M %Z")
                    .to_string()
            })
    };
    println!(
        "{:<12} {:<22} {:>8}  {:<12} {:<22} {:<22}",
        "order", "product", "qty", "machine", "earliest start", "latest end"
    );
    for r in &schedule.requests {
        println!(
            "{:<12} {:<22} {:>8}  {:<12} {:<22} {:<22}",
            r.id,
            r.product.chars().take(22).collect::<String>(),
            format!("{} {}", r.quantity, r.unit),
            r.asset_id().unwrap_or("—"),
            when(r.earliest_start_us),
            when(r.latest_end_us)
        );
    }
    println!(
        "imported schedule {} ({n} production requests) into {}",
        schedule.id,
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn export(
    config: Option<PathBuf>,
    from: &str,
    to: &str,
    out: &std::path::Path,
    history: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let cfg = tool_config(config, history, None)?;
    let registry = AssetRegistry::new(load_registry(&cfg.plant.registry)?);
    let tz = registry.plant().time_zone.clone();
    let from_us = parse_time_arg(from, &tz)?;
    let to_us = parse_time_arg(to, &tz)?;
    let path = cfg.history.db_path();
    if !path.exists() {
        anyhow::bail!("no history file at {}", path.display());
    }
    let store = Store::open(&path, &registry).context("opening the history file")?;
    let r = mezzanine::history::export::export_parquet(&store.conn, from_us, to_us, out)?;
    println!(
        "exported {} samples and {} transitions to {} ({} Parquet files)",
        r.samples,
        r.transitions,
        r.out_dir.display(),
        r.files
    );
    Ok(ExitCode::SUCCESS)
}
