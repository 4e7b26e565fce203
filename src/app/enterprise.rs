//! `mezzanine --enterprise enterprise.toml`: the enterprise view's window.
//! The enterprise broker's site summaries in (through the federation
//! feed), applied to the model each frame; the `ui::enterprise` panels out;
//! a drill-down opens the site's twin (its config) as a process of its own.
//! With `--screenshot` it saves the window once every expected site was
//! heard (or soon after connecting), then exits.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bevy::log::LogPlugin;
use bevy::prelude::*;
use bevy::render::view::screenshot::{Screenshot, ScreenshotCaptured, save_to_disk};
use bevy::window::WindowResolution;
use bevy_egui::{EguiPlugin, EguiPrimaryContextPass};

use super::{AppError, LOG_FILTER};
use crate::federation::enterprise::{
    EnterpriseConfig, EnterpriseFeed, EnterpriseModel, FeedEvent, SiteFreshness, spawn_feed,
};
use crate::ui::enterprise::{EnterpriseCommand, EnterpriseView, enterprise_ui};

#[derive(Resource)]
struct Feed(EnterpriseFeed);

#[derive(Resource)]
struct Shot {
    path: PathBuf,
    settle_frames: u32,
    settled: u32,
    frames: u32,
    requested: bool,
    done: Option<u32>,
    connected_frames: u32,
}

#[derive(Resource, Default)]
struct ShotDone;

/// Opens the window; returns when it is closed.
pub fn run_enterprise(
    path: &Path,
    window_px: (u32, u32),
    screenshot: Option<PathBuf>,
    settle_frames: u32,
) -> Result<ExitCode, AppError> {
    let cfg = EnterpriseConfig::load(path).map_err(|e| AppError::Federation(e.to_string()))?;
    if cfg!(target_os = "linux") && std::env::var_os("DISPLAY").is_none_or(|d| d.is_empty()) {
        return Err(AppError::NoDisplay);
    }
    let feed = spawn_feed(&cfg).map_err(|e| AppError::Federation(e.to_string()))?;
    let mut app = App::new();
    app.add_plugins(
        DefaultPlugins
            .set(LogPlugin {
                filter: LOG_FILTER.into(),
                ..default()
            })
            .set(WindowPlugin {
                primary_window: Some(Window {
                    title: "Mezzanine — enterprise".into(),
                    resolution: WindowResolution::new(window_px.0, window_px.1),
                    ..default()
                }),
                ..default()
            }),
    )
    .add_plugins(EguiPlugin::default())
    .add_message::<EnterpriseCommand>()
    .insert_resource(EnterpriseView {
        model: EnterpriseModel::new(&cfg),
        broker: cfg.broker.clone(),
        connected: false,
        note: None,
    })
    .insert_resource(Feed(feed))
    .add_systems(Startup, |mut commands: Commands| {
        commands.spawn(Camera2d);
    })
    .add_systems(Update, (pump, open_site))
    .add_systems(EguiPrimaryContextPass, enterprise_ui);
    if let Some(p) = screenshot {
        app.insert_resource(Shot {
            path: p,
            settle_frames,
            settled: 0,
            frames: 0,
            requested: false,
            done: None,
            connected_frames: 0,
        })
        .add_systems(Update, capture);
    }
    Ok(match app.run() {
        AppExit::Success => ExitCode::SUCCESS,
        AppExit::Error(code) => ExitCode::from(code.get()),
    })
}

fn pump(feed: Res<Feed>, mut view: ResMut<EnterpriseView>) {
    while let Ok(e) = feed.0.events.try_recv() {
        match e {
            FeedEvent::Message { topic, payload } => {
                if let Err(err) = view.model.apply(&topic, &payload) {
                    warn!("enterprise: {err}");
                }
            }
            FeedEvent::Link(up) => view.connected = up,
        }
    }
}

/// The drill-down: the site's twin, on its own config, in its own window.
fn open_site(mut commands: MessageReader<EnterpriseCommand>, mut view: ResMut<EnterpriseView>) {
    for c in commands.read() {
        let EnterpriseCommand::OpenSite(site) = c;
        let Some(config) = view.model.sites.get(site).and_then(|s| s.config.clone()) else {
            continue;
        };
        let note = match std::env::current_exe().and_then(|exe| {
            std::process::Command::new(exe)
                .arg("--config")
                .arg(&config)
                .spawn()
        }) {
            Ok(_) => format!("opened {site}'s layout ({})", config.display()),
            Err(e) => format!("cannot open {site}'s layout: {e}"),
        };
        info!("enterprise: {note}");
        view.note = Some(note);
    }
}

/// Saves the window once every expected site was heard (or 120 frames after
/// connecting), then exits.
fn capture(
    mut commands: Commands,
    mut shot: ResMut<Shot>,
    view: Res<EnterpriseView>,
    done: Option<Res<ShotDone>>,
    mut exit: MessageWriter<AppExit>,
) {
    shot.frames += 1;
    if let Some(n) = shot.done.as_mut() {
        *n += 1;
        if *n > 3 {
            exit.write(AppExit::Success);
        }
        return;
    }
    if done.is_some() {
        info!("screenshot written to {}", shot.path.display());
        shot.done = Some(0);
        return;
    }
    if shot.requested {
        return;
    }
    // Every expected site heard, or connected long enough for the
    // retained summaries to have arrived (a site may never have published).
    let now = crate::ingest::now_us();
    let heard = view
        .model
        .sites
        .keys()
        .all(|s| view.model.freshness(s, now) != SiteFreshness::Unheard);
    if view.connected {
        shot.connected_frames += 1;
    }
    if !heard && shot.connected_frames < 120 && shot.frames < 6_000 {
        return;
    }
    shot.settled += 1;
    if shot.settled < shot.settle_frames {
        return;
    }
    shot.requested = true;
    commands
        .spawn(Screenshot::primary_window())
        .observe(save_to_disk(shot.path.clone()))
        .observe(|_: On<ScreenshotCaptured>, mut commands: Commands| {
            commands.insert_resource(ShotDone);
        });
}
