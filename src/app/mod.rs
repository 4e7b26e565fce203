//! The app, assembled from plugins: a [`Launch`] (validated configuration
//! and start options) in, an [`Assembled`] app with its live sources and
//! recorder threads out, ready to run and to stop in order.
//!
//! The binary calls [`run`]; tests call [`build`] with [`Front::Headless`]
//! and get the same wiring (ingest, twin, history, MES, reconciliation,
//! demo controls) without a window: one entity per registry asset instead
//! of the layout's geometry, no render and no UI.

pub mod enterprise;
pub mod frames;
pub mod sources;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use bevy::log::LogPlugin;
use bevy::prelude::*;
use bevy::window::WindowResolution;
use bevy_egui::EguiPlugin;

pub use sources::{LiveSources, start_live_sources};

use crate::cli::{RunArgs, parse_time};
use crate::config::{AppConfig, ConfigError, MqttRole};
use crate::history::{HistoryError, HistoryPlugin, HistoryThreads, WriterSettings};
use crate::ingest::{IngestError, IngestPlugin, IngestReceiver, ingest_channel, now_us};
use crate::registry::{AssetIdx, AssetRegistry, RegistryError, RegistryPlugin, load_registry};
use crate::render::{CaptureRequest, RenderOptions, RenderPlugin, SelectionCommand};
use crate::twin::{AssetEntities, AssetState, BoundAsset, Freshness, LiveValues, TwinPlugin};
use crate::{CoreSetsPlugin, TwinCorePlugins, demo, mes, playback, reconcile, scene, ui};

/// Quiet the chatty network crates; keep our own logs at info.
pub const LOG_FILTER: &str = "info,wgpu=error,naga=warn,rumqttd=warn,rumqttc=warn,\
opcua_server=warn,opcua_client=warn,opcua_core=warn,async_opcua_server=warn,\
async_opcua_client=warn,async_opcua_core=warn";

/// Everything that stops the app from starting, each naming what to fix.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Federation(String),
    #[error("the asset registry must load before the plant can be shown: {0}")]
    Registry(RegistryError),
    #[error("opening the history file: {0}")]
    History(HistoryError),
    #[error("starting the embedded demo plant: {0}")]
    Demo(demo::DemoError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error("loading the MES event schemas: {0}")]
    Contract(crate::contract::ContractError),
    #[error("starting the MES poller: {0}")]
    Poller(mes::MesError),
    #[error("the authority rules must load before the twin reconciles: {0}")]
    Rules(reconcile::ReconcileError),
    #[error("{url} is TLS: set [mqtt] ca_file to the CA (PEM) that signed the broker")]
    TlsWithoutCa { url: String },
    #[error("--select {0}: no such asset in the registry")]
    UnknownAsset(String),
    #[error(
        "no X display to open a window on (DISPLAY is not set); run it in an X11 session \
         (or under Xvfb), or use `mezzanine record` for a recorder without a window"
    )]
    NoDisplay,
    #[error("--demo-mes-outage needs the embedded demo plant")]
    OutageWithoutDemo,
    #[error("--replay-at: {0}")]
    ReplayAt(String),
    #[error("starting the demo outage timer: {0}")]
    Thread(std::io::Error),
    #[error("the shift calendar: {0}")]
    Calendar(crate::calendar::CalendarError),
    #[error("the OEE loss rules: {0}")]
    OeeRules(crate::oee::OeeError),
    #[error("--whatif: {0}")]
    Scenario(crate::whatif::WhatIfError),
}

/// With a window (render and UI), without (tests), or as the headless
/// recorder (`mezzanine record`: no window, logs on stderr, its own MQTT
/// client id).
#[derive(Debug, Clone)]
pub enum Front {
    Desktop(Box<DesktopOptions>),
    Headless,
    Recorder,
}

/// What the desktop front starts with.
#[derive(Debug, Clone, Default)]
pub struct DesktopOptions {
    pub screenshot: Option<PathBuf>,
    pub screenshot_settle_frames: u32,
    pub select: Option<String>,
    pub show_latency: bool,
    pub show_discrepancies: bool,
    /// Open the schedule panel and schedule once the MES is heard.
    pub show_schedule: bool,
    /// Open the OEE panel (and the 3D heat-map by OEE).
    pub show_oee: bool,
    pub quality: Option<String>,
    /// Open the what-if panel and run this scenario file.
    pub whatif: Option<crate::whatif::ScenarioFile>,
    /// Hours past the fork to put the cursor at when the study is done.
    pub whatif_at_h: Option<f64>,
    pub whatif_split: bool,
    /// Frames per phase of the ghosts' frame benchmark.
    pub whatif_bench_frames: Option<u32>,
    /// Write the study's meeting pack here, then exit.
    pub whatif_pack: Option<PathBuf>,
    /// Start the what-if panel in presentation mode.
    pub whatif_present: bool,
}

/// Where the time cursor starts.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplayStart {
    /// RFC 3339, or a civil time in the plant's zone.
    At(String),
    /// Seconds before now.
    Ago(u64),
}

/// A validated configuration and how to start.
#[derive(Debug, Clone)]
pub struct Launch {
    pub cfg: AppConfig,
    pub front: Front,
    pub replay: Option<ReplayStart>,
    /// Take the embedded demo MES off the network from START to END s.
    pub demo_mes_outage: Option<(u64, u64)>,
}

impl Launch {
    /// The configuration file with the command line's overrides, validated.
    pub fn from_args(args: RunArgs) -> Result<Self, AppError> {
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
        if let Some(h) = args.history {
            cfg.history.path = Some(h);
        }
        cfg.demo.inject.extend(args.demo_inject.iter().cloned());
        cfg.render.shadows &= !args.no_shadows;
        cfg.render.msaa &= !args.no_msaa;
        cfg.validate()?;
        Ok(Self {
            cfg,
            front: Front::Desktop(Box::new(DesktopOptions {
                screenshot: args.screenshot,
                screenshot_settle_frames: args.screenshot_settle_frames,
                select: args.select,
                show_latency: args.show_latency,
                show_discrepancies: args.show_discrepancies,
                show_schedule: args.show_schedule,
                show_oee: args.show_oee,
                quality: args.quality.clone(),
                whatif: match &args.whatif {
                    Some(p) => {
                        let mut f = crate::whatif::scenario::load_scenarios(p)
                            .map_err(AppError::Scenario)?;
                        if args.whatif_bench_frames.is_some() {
                            f.replications = crate::whatif::Replications::Fixed(100);
                        }
                        Some(f)
                    }
                    None => None,
                },
                whatif_at_h: args.whatif_at_h,
                whatif_split: args.whatif_split,
                whatif_bench_frames: args.whatif_bench_frames,
                whatif_pack: args.whatif_pack,
                whatif_present: args.whatif_present,
            })),
            replay: match (args.replay_at, args.replay_ago_s) {
                (Some(t), _) => Some(ReplayStart::At(t)),
                (None, Some(s)) => Some(ReplayStart::Ago(s)),
                (None, None) => None,
            },
            demo_mes_outage: args.demo_mes_outage,
        })
    }
}

/// The app with what lives outside it: the runner consumes the app (its
/// world included), so the sources and the recorder are held here and
/// stopped in order after it.
pub struct Assembled {
    pub app: App,
    pub live: LiveSources,
    pub recorder: Option<HistoryThreads>,
}

impl Assembled {
    /// Runs the app until its window closes, then stops everything in order.
    pub fn run(mut self) -> AppExit {
        let exit = self.app.run();
        self.live.stop();
        if let Some(threads) = self.recorder {
            threads.shutdown();
        }
        exit
    }

    /// Orderly shutdown without running (headless use): the app is dropped
    /// first, then the adapters stop, then the recorder commits, checkpoints
    /// and closes the file — before the process (and DuckDB's global state)
    /// ends, nothing may still run a query.
    pub fn shutdown(self) {
        let Assembled {
            app,
            live,
            recorder,
        } = self;
        drop(app);
        live.stop();
        if let Some(threads) = recorder {
            threads.shutdown();
        }
    }
}

/// The command line's `run`: configuration, assembly, the window.
pub fn run(args: RunArgs) -> Result<ExitCode, AppError> {
    if let Some(path) = &args.enterprise {
        let cfg = AppConfig::load(args.config.as_deref())?;
        let size = args
            .window_size
            .unwrap_or((cfg.window.width_px, cfg.window.height_px));
        return enterprise::run_enterprise(
            path,
            size,
            args.screenshot.clone(),
            args.screenshot_settle_frames,
        );
    }
    let exit = build(Launch::from_args(args)?)?.run();
    Ok(match exit {
        AppExit::Success => ExitCode::SUCCESS,
        AppExit::Error(code) => ExitCode::from(code.get()),
    })
}

/// Assembles the app: registry, recorder, live sources, then the plugins of
/// every layer in data-flow order.
pub fn build(launch: Launch) -> Result<Assembled, AppError> {
    let cfg = &launch.cfg;
    let registry =
        AssetRegistry::new(load_registry(&cfg.plant.registry).map_err(AppError::Registry)?);
    // Refusals that need nothing started come first.
    let mut select = None;
    if let Front::Desktop(opts) = &launch.front {
        // The window is X11's (the only windowing backend built in).
        if cfg!(target_os = "linux") && std::env::var_os("DISPLAY").is_none_or(|d| d.is_empty()) {
            return Err(AppError::NoDisplay);
        }
        if let Some(id) = &opts.select {
            select = Some(
                registry
                    .by_id(id)
                    .ok_or_else(|| AppError::UnknownAsset(id.clone()))?,
            );
        }
    }
    let (mut tx, rx) = ingest_channel(65_536);
    let recorder = if cfg.history.enabled {
        let mut settings = WriterSettings::from_config(&cfg.history);
        settings.lake = lake_settings(cfg, &registry, role_of(&launch.front))?;
        let (plugin, threads) =
            HistoryPlugin::start(&cfg.history.db_path(), Arc::new(registry.clone()), settings)
                .map_err(AppError::History)?;
        tx = tx.with_recorder(threads.writer.recorder.clone());
        Some((plugin, threads))
    } else {
        None
    };
    let role = role_of(&launch.front);
    let live = match start_live_sources(cfg, role, Arc::new(registry.clone()), tx) {
        Ok(live) => live,
        Err(e) => {
            if let Some((_, threads)) = recorder {
                threads.shutdown();
            }
            return Err(e);
        }
    };

    let mut app = App::new();
    let time_zone = registry.plant().time_zone.clone();
    let registry_site = site_name(cfg, &registry);
    match &launch.front {
        Front::Desktop(opts) => add_desktop(&mut app, cfg, registry, rx, opts),
        Front::Headless => add_headless(&mut app, &registry, rx),
        Front::Recorder => {
            app.add_plugins(LogPlugin {
                filter: LOG_FILTER.into(),
                ..default()
            });
            add_headless(&mut app, &registry, rx);
        }
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
    let mut mes_plugin = mes::MesPlugin::from_config(&cfg.mes, mes_seen);
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
        app.insert_resource(mes::MesPollChannel {
            results: p.results.clone(),
            commands: p.commands.clone(),
        });
    }
    let mut assembled = Assembled {
        app,
        live,
        recorder: recorder_threads,
    };
    // From here on a refusal stops what was started before returning.
    let wired = (|| {
        if let Some((from_s, to_s)) = launch.demo_mes_outage {
            let p = assembled
                .live
                .plant
                .as_ref()
                .ok_or(AppError::OutageWithoutDemo)?;
            schedule_demo_outage(p.mes.shared.clone(), from_s, to_s)?;
        }
        if cfg.reconcile.enabled {
            let rules =
                reconcile::ReconcileRules::load(&cfg.reconcile.rules).map_err(AppError::Rules)?;
            assembled.app.add_plugins(reconcile::ReconcilePlugin {
                rules,
                restored,
                period_ms: cfg.reconcile.period_ms,
            });
        }
        if let Some(start) = &launch.replay {
            let t_us = match start {
                ReplayStart::At(t) => parse_time(t, &time_zone).map_err(AppError::ReplayAt)?,
                ReplayStart::Ago(s) => now_us() - (*s as i64) * 1_000_000,
            };
            assembled.app.add_systems(
                Update,
                move |mut done: Local<bool>,
                      history: Option<Res<crate::history::History>>,
                      mut out: MessageWriter<playback::PlaybackCommand>| {
                    let Some(h) = history else {
                        return;
                    };
                    if !*done && h.stats.range_us().is_some_and(|(a, _)| a <= t_us) {
                        out.write(playback::PlaybackCommand::Seek(t_us));
                        *done = true;
                    }
                },
            );
        }
        if !matches!(launch.front, Front::Recorder) {
            let auto_run = match &launch.front {
                Front::Desktop(o) if o.show_schedule => {
                    Some(crate::schedule::app::ScheduleRequest::default())
                }
                _ => None,
            };
            let settings = schedule_settings(cfg, &assembled.live, auto_run)?;
            add_live_oee(&mut assembled.app, cfg, &settings)?;
            let whatif = crate::whatif::app::WhatIfSettings {
                time_scale: settings.time_scale,
                fit_hours: settings.fit_hours,
                calendar: settings.calendar.clone(),
                mes: settings.mes.clone(),
                broker: settings.broker.clone(),
                threads: None,
                auto_run: match &launch.front {
                    Front::Desktop(o) => o.whatif.clone(),
                    _ => None,
                },
            };
            assembled
                .app
                .add_plugins(crate::schedule::app::SchedulePlugin { settings })
                .add_plugins(crate::whatif::app::WhatIfPlugin { settings: whatif })
                .add_plugins(crate::quality::app::QualityPlugin);
        }
        if cfg.federation.publish {
            if matches!(launch.front, Front::Recorder) {
                // The site summary carries OEE: the recorder tracks it too.
                let settings = schedule_settings(cfg, &assembled.live, None)?;
                add_live_oee(&mut assembled.app, cfg, &settings)?;
            }
            let settings = summary_settings(cfg, &assembled.live, &registry_site, role)?;
            assembled
                .app
                .add_plugins(crate::federation::publish::SummaryPlugin { settings });
        }
        if let Front::Desktop(opts) = &launch.front {
            desktop_start_options(&mut assembled.app, opts, select);
        }
        Ok(())
    })();
    match wired {
        Ok(()) => Ok(assembled),
        Err(e) => {
            assembled.shutdown();
            Err(e)
        }
    }
}

/// How the app schedules: the demo's time scale, the shift calendar, the
/// broker recommendations go to (the configured one, else the embedded
/// demo's).
/// The live OEE tracker, on the calendar and time scale the schedule uses
/// and the configured loss rules.
fn add_live_oee(
    app: &mut App,
    cfg: &AppConfig,
    settings: &crate::schedule::app::ScheduleSettings,
) -> Result<(), AppError> {
    let rules = match &cfg.plant.oee_rules {
        Some(p) => crate::oee::LossRules::load(p).map_err(AppError::OeeRules)?,
        None => crate::oee::LossRules::default(),
    };
    app.add_plugins(crate::oee::live::OeePlugin {
        calendar: settings.calendar.clone(),
        rules,
        time_scale: settings.time_scale,
    });
    Ok(())
}

fn role_of(front: &Front) -> MqttRole {
    match front {
        Front::Recorder => MqttRole::Record,
        Front::Desktop(_) | Front::Headless => MqttRole::App,
    }
}

/// The site's name: `[plant] site`, else from the registry's ISA-95 paths.
pub fn site_name(cfg: &AppConfig, registry: &AssetRegistry) -> String {
    cfg.plant
        .site
        .clone()
        .unwrap_or_else(|| registry.site_name())
}

/// `[lake]` as the writer takes it (none without a lake path).
fn lake_settings(
    cfg: &AppConfig,
    registry: &AssetRegistry,
    role: MqttRole,
) -> Result<Option<crate::history::lake::LakeSettings>, AppError> {
    let Some(dir) = &cfg.lake.path else {
        return Ok(None);
    };
    let recorder = match &cfg.lake.recorder {
        Some(r) => r.clone(),
        None => cfg.mqtt.client_id_for(role)?,
    };
    let site = site_name(cfg, registry);
    crate::history::lake::check_name("site", &site).map_err(|e| ConfigError::Invalid {
        field: "plant.site",
        message: e.to_string(),
    })?;
    crate::history::lake::check_name("recorder", &recorder).map_err(|e| ConfigError::Invalid {
        field: "lake.recorder",
        message: e.to_string(),
    })?;
    Ok(Some(crate::history::lake::LakeSettings {
        dir: dir.clone(),
        site,
        recorder,
        close_every_us: cfg.lake.close_every_s.max(1) as i64 * 1_000_000,
        grace_us: cfg.lake.grace_s as i64 * 1_000_000,
        tick: std::time::Duration::from_millis(cfg.lake.tick_ms.max(50)),
    }))
}

/// Where the site summary goes: `[federation] broker`, else the UNS
/// broker (the configured one, or the embedded demo's).
fn summary_settings(
    cfg: &AppConfig,
    live: &LiveSources,
    site: &str,
    role: MqttRole,
) -> Result<crate::federation::publish::SummarySettings, AppError> {
    let url = cfg
        .federation
        .broker
        .clone()
        .or_else(|| cfg.mqtt.url.clone())
        .or_else(|| live.plant.as_ref().map(|p| p.broker.url()))
        .ok_or(AppError::Federation(
            "[federation] publish needs a broker: set [federation] broker or [mqtt] url".into(),
        ))?;
    let u = crate::ingest::mqtt::parse_mqtt_url(&url)
        .map_err(|e| AppError::Federation(format!("[federation] broker: {e}")))?;
    if u.tls {
        return Err(AppError::Federation(format!(
            "[federation] broker {url}: the summary is published over plain MQTT only; use a \
             local broker and bridge it over TLS (config/mosquitto-site-bridge.conf)"
        )));
    }
    Ok(crate::federation::publish::SummarySettings {
        host: u.host,
        port: u.port,
        client_id: format!("{}-summary", cfg.mqtt.client_id_for(role)?),
        username: cfg.mqtt.username.clone(),
        password: cfg.mqtt.password.clone(),
        topic_root: cfg.federation.topic_root.clone(),
        site: site.to_string(),
        min_interval: std::time::Duration::from_millis(cfg.federation.min_interval_ms.max(100)),
    })
}

fn schedule_settings(
    cfg: &AppConfig,
    live: &LiveSources,
    auto_run: Option<crate::schedule::app::ScheduleRequest>,
) -> Result<crate::schedule::app::ScheduleSettings, AppError> {
    let calendar = match &cfg.plant.shift_calendar {
        Some(p) => Some(crate::calendar::ShiftCalendar::load(p).map_err(AppError::Calendar)?),
        None => None,
    };
    let url = cfg
        .mqtt
        .url
        .clone()
        .or_else(|| live.plant.as_ref().map(|p| p.broker.url()));
    let broker = match url {
        Some(u) => {
            let b = crate::ingest::mqtt::parse_mqtt_url(&u)?;
            let tls = match (b.tls, &cfg.mqtt.ca_file) {
                (false, _) => None,
                (true, Some(ca)) => Some(crate::ingest::mqtt::TlsFiles {
                    ca_file: ca.clone(),
                    client_cert_file: cfg.mqtt.client_cert_file.clone(),
                    client_key_file: cfg.mqtt.client_key_file.clone(),
                }),
                (true, None) => return Err(AppError::TlsWithoutCa { url: u }),
            };
            Some(crate::mes::recommend::Broker {
                host: b.host,
                port: b.port,
                client_id: format!("{}-recommend", cfg.mqtt.client_id_for(MqttRole::App)?),
                username: cfg.mqtt.username.clone(),
                password: cfg.mqtt.password.clone(),
                tls,
            })
        }
        None => None,
    };
    Ok(crate::schedule::app::ScheduleSettings {
        time_scale: if cfg.embedded_demo() {
            cfg.demo.time_scale
        } else {
            1.0
        },
        fit_hours: 8.0,
        calendar,
        mes: cfg.mes.clone(),
        broker,
        seed: 1,
        auto_run,
    })
}

/// The window, the layout's geometry, render and UI.
fn add_desktop(
    app: &mut App,
    cfg: &AppConfig,
    registry: AssetRegistry,
    rx: IngestReceiver,
    opts: &DesktopOptions,
) {
    scene::register_plant_source(app, &cfg.plant.scene);
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
        capture: opts.screenshot.clone().map(|path| CaptureRequest {
            path,
            settle_frames: opts.screenshot_settle_frames,
            exit_after: true,
            max_frames: 3_000 + opts.screenshot_settle_frames,
            min_live_fraction: 0.9,
        }),
    })
    .add_plugins(ui::UiPlugin);
}

/// No window: the core layers with one entity per registry asset.
fn add_headless(app: &mut App, registry: &AssetRegistry, rx: IngestReceiver) {
    app.add_plugins(MinimalPlugins);
    add_headless_core(app, registry, rx);
}

/// The headless core on an app that already has its base plugins: registry,
/// twin, playback and ingest, with the twin's components on one entity per
/// asset (what the scene binder gives each bound node).
pub fn add_headless_core(app: &mut App, registry: &AssetRegistry, rx: IngestReceiver) {
    app.add_plugins((
        CoreSetsPlugin,
        RegistryPlugin {
            registry: registry.clone(),
        },
        TwinPlugin,
        playback::PlaybackPlugin,
    ))
    .add_plugins(IngestPlugin { receiver: rx });
    let mut index = AssetEntities::default();
    for i in 0..registry.assets().len() {
        let idx = AssetIdx(i as u32);
        let e = app
            .world_mut()
            .spawn((
                BoundAsset(idx),
                AssetState::default(),
                LiveValues::default(),
                Freshness::default(),
            ))
            .id();
        index.0.insert(idx, e);
    }
    app.insert_resource(index);
}

/// A headless twin on `MinimalPlugins` fed by `rx` (benchmarks and tests).
pub fn headless_twin(registry: &AssetRegistry, rx: IngestReceiver) -> App {
    let mut app = App::new();
    add_headless(&mut app, registry, rx);
    app
}

/// Selection and panels the command line asked for.
fn desktop_start_options(app: &mut App, opts: &DesktopOptions, select: Option<AssetIdx>) {
    if let Some(idx) = select {
        app.add_systems(
            Update,
            move |mut done: Local<bool>,
                  index: Res<AssetEntities>,
                  mut out: MessageWriter<SelectionCommand>| {
                if !*done && index.0.contains_key(&idx) {
                    out.write(SelectionCommand::Select(idx));
                    *done = true;
                }
            },
        );
    }
    let mut ui_state = app.world_mut().resource_mut::<ui::UiState>();
    ui_state.discrepancies.open |= opts.show_discrepancies;
    ui_state.show_latency |= opts.show_latency;
    ui_state.show_ingest |= opts.show_latency;
    ui_state.schedule.open |= opts.show_schedule;
    ui_state.oee.open |= opts.show_oee;
    if let Some(serial) = &opts.quality {
        ui_state.quality.open = true;
        ui_state.quality.serial = serial.clone();
    }
    if let Some(f) = &opts.whatif {
        ui_state.whatif.open = true;
        ui_state.whatif.load(f.clone());
        ui_state.whatif.presentation = opts.whatif_present;
        if let Some(dir) = &opts.whatif_pack {
            ui_state.whatif.pack_auto = Some((dir.clone(), 30));
        }
    }
    if let (Some(_), Some(n)) = (&opts.whatif, opts.whatif_bench_frames) {
        app.insert_resource(frames::FrameBench::new(n))
            .add_systems(Last, frames::frame_bench);
    }
    if let (Some(_), Some(_)) = (&opts.whatif, &opts.whatif_pack) {
        app.add_systems(
            Last,
            |view: Option<Res<crate::whatif::app::WhatIfView>>,
             mut exit: MessageWriter<AppExit>,
             mut done: Local<bool>| {
                let Some(r) = view.as_ref().and_then(|v| v.last_pack.as_ref()) else {
                    return;
                };
                if *done {
                    return;
                }
                *done = true;
                match r {
                    Ok((dir, n)) => {
                        info!("meeting pack written: {} ({n} files)", dir.display());
                        exit.write(AppExit::Success);
                    }
                    Err(e) => {
                        error!("the meeting pack was not written: {e}");
                        exit.write(AppExit::error());
                    }
                }
            },
        );
    }
    if opts.whatif.is_some() && opts.whatif_split {
        app.insert_resource(crate::render::ghost::GhostView {
            mode: crate::render::ghost::GhostMode::Split { left: 0, right: 1 },
            ..default()
        });
    }
    if let Some(h) = opts.whatif_at_h {
        // When the study is done, the cursor goes to that scenario time.
        app.add_systems(
            Update,
            move |mut done: Local<bool>,
                  view: Option<Res<crate::whatif::app::WhatIfView>>,
                  mut out: MessageWriter<playback::PlaybackCommand>| {
                if *done {
                    return;
                }
                if let Some(o) = view.and_then(|v| v.outcome.clone()) {
                    out.write(playback::PlaybackCommand::Seek(
                        o.at_us + (h * 3.6e9) as i64,
                    ));
                    *done = true;
                }
            },
        );
    }
    if opts.show_oee {
        app.insert_resource(crate::oee::live::OeeHeatmap(true));
    }
    if let Some(serial) = opts.quality.clone() {
        app.add_systems(
            Update,
            move |mut done: Local<bool>,
                  mut out: MessageWriter<crate::quality::app::QualityCommand>| {
                if !*done {
                    out.write(crate::quality::app::QualityCommand::Follow(serial.clone()));
                    *done = true;
                }
            },
        );
    }
}

/// Takes the embedded demo MES off the network from `from_s` to `to_s`.
fn schedule_demo_outage(
    shared: Arc<demo::mes::MesShared>,
    from_s: u64,
    to_s: u64,
) -> Result<(), AppError> {
    std::thread::Builder::new()
        .name("demo-mes-outage".into())
        .spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(from_s));
            warn!("demo: the MES goes off the network for {} s", to_s - from_s);
            shared.set_online(false);
            std::thread::sleep(std::time::Duration::from_secs(to_s - from_s));
            warn!("demo: the MES is back on the network");
            shared.set_online(true);
        })
        .map(|_| ())
        .map_err(AppError::Thread)
}
