//! Screenshots for tests and docs: a [`CaptureRequest`] in, a PNG on disk and
//! (optionally) the app's exit out. Snapshots for meeting packs: a
//! [`SnapshotCommand`] in (a folder and the screen rectangles of charts),
//! the window and each chart as PNG files and a [`SnapshotDone`] out.
//!
//! Waits until the layout is bound, every asset has its status markers and
//! a schedule asked for at start is done, then lets a few more frames pass (pipelines compile on the first frames
//! under software rendering) before capturing the primary window.

use std::path::PathBuf;

use bevy::prelude::*;
use bevy::render::view::screenshot::{Screenshot, ScreenshotCaptured, save_to_disk};

use super::status::StatusMarkers;
use crate::playback::Shown;
use crate::scene::{LoadPhase, PlantLayout};
use crate::twin::{BoundAsset, MachineState};

#[derive(Resource, Debug, Clone)]
pub struct CaptureRequest {
    pub path: PathBuf,
    /// Frames to wait once the plant is fully shown.
    pub settle_frames: u32,
    pub exit_after: bool,
    /// Give up (and exit with an error) after this many frames.
    pub max_frames: u32,
    /// Wait until this share of assets reports a live state (0 = don't wait).
    pub min_live_fraction: f32,
}

#[derive(Resource, Debug, Default)]
pub struct CaptureProgress {
    frames: u32,
    settled: u32,
    requested: bool,
    done_frames: Option<u32>,
}

#[derive(Resource, Debug, Default, Clone, Copy)]
pub struct CaptureDone;

#[allow(clippy::too_many_arguments)]
pub fn drive_capture(
    mut commands: Commands,
    req: Res<CaptureRequest>,
    mut p: ResMut<CaptureProgress>,
    layout: Res<PlantLayout>,
    assets: Query<&Shown, With<BoundAsset>>,
    marked: Query<(), (With<BoundAsset>, With<StatusMarkers>)>,
    done: Option<Res<CaptureDone>>,
    schedule: Option<Res<crate::schedule::app::ScheduleView>>,
    whatif: Option<Res<crate::whatif::app::WhatIfView>>,
    ghosts: Query<(&super::ghost::Ghost, &Visibility)>,
    mut exit: MessageWriter<AppExit>,
) {
    p.frames += 1;
    if let Some(n) = p.done_frames.as_mut() {
        *n += 1;
        if *n > 3 && req.exit_after {
            exit.write(AppExit::Success);
        }
        return;
    }
    if done.is_some() {
        info!("screenshot written to {}", req.path.display());
        p.done_frames = Some(0);
        return;
    }
    if p.requested {
        return;
    }
    if p.frames > req.max_frames {
        error!(
            "gave up waiting for the plant to show after {} frames",
            p.frames
        );
        exit.write(AppExit::error());
        return;
    }
    let ready = match &layout.phase {
        LoadPhase::Ready => {
            let total = assets.iter().count();
            let live = assets
                .iter()
                .filter(|s| s.state.state != MachineState::Unknown)
                .count();
            total > 0
                && total == marked.iter().count()
                && live as f32 >= req.min_live_fraction * total as f32
        }
        LoadPhase::Failed(_) => true,
        LoadPhase::Loading => false,
    };
    // A schedule asked for at start is part of the picture.
    if !ready || schedule.is_some_and(|v| v.busy()) || whatif.is_some_and(|v| v.busy()) {
        return;
    }
    p.settled += 1;
    if p.settled < req.settle_frames {
        return;
    }
    p.requested = true;
    let path = req.path.clone();
    // A sidecar says what the picture shows, for tests and reviewers.
    let mut states: Vec<String> = assets
        .iter()
        .map(|s| s.state.state.label().to_string())
        .collect();
    states.sort();
    let replay = assets.iter().any(|s| s.replay);
    // Visible ghosts per variant (machines, queues, work items).
    let mut ghost_counts = [0usize; super::ghost::MAX_GHOSTS];
    for (g, v) in &ghosts {
        if *v == Visibility::Visible
            && let Some(n) = ghost_counts.get_mut(g.variant)
        {
            *n += 1;
        }
    }
    let sidecar = serde_json::json!({
        "asset_states": states,
        "replay": replay,
        "ghosts_visible": ghost_counts,
    });
    if let Err(e) = std::fs::write(path.with_extension("json"), sidecar.to_string()) {
        warn!("cannot write the screenshot sidecar: {e}");
    }
    commands
        .spawn(Screenshot::primary_window())
        .observe(save_to_disk(path))
        .observe(|_: On<ScreenshotCaptured>, mut commands: Commands| {
            commands.insert_resource(CaptureDone);
        });
}

/// Take the window as `view.png` into `dir`, and each named rectangle
/// (physical pixels: x, y, width, height) as `<name>.png`.
#[derive(Message, Debug, Clone, PartialEq)]
pub struct SnapshotCommand {
    pub dir: PathBuf,
    pub crops: Vec<(String, [u32; 4])>,
}

/// The files a snapshot wrote, or why it failed.
#[derive(Message, Debug, Clone, PartialEq)]
pub struct SnapshotDone {
    pub dir: PathBuf,
    pub result: Result<Vec<PathBuf>, String>,
}

/// Snapshots in flight: their results come back on this channel.
#[derive(Resource)]
pub struct Snapshots {
    tx: crossbeam_channel::Sender<SnapshotDone>,
    rx: crossbeam_channel::Receiver<SnapshotDone>,
}

impl Default for Snapshots {
    fn default() -> Self {
        // A few snapshots at most are ever in flight (one per click).
        let (tx, rx) = crossbeam_channel::bounded(16);
        Self { tx, rx }
    }
}

pub fn take_snapshots(
    mut commands: Commands,
    mut cmds: MessageReader<SnapshotCommand>,
    snaps: Res<Snapshots>,
    mut done: MessageWriter<SnapshotDone>,
) {
    for c in cmds.read() {
        let c = c.clone();
        let tx = snaps.tx.clone();
        commands.spawn(Screenshot::primary_window()).observe(
            move |shot: On<ScreenshotCaptured>| {
                let img = shot.image.clone();
                let (c, tx) = (c.clone(), tx.clone());
                // Encoding PNGs takes a while: not on the frame.
                let _ = std::thread::Builder::new()
                    .name("snapshot-png".into())
                    .spawn(move || {
                        let result = save_snapshot(img, &c);
                        let _ = tx.send(SnapshotDone { dir: c.dir, result });
                    });
            },
        );
    }
    for d in snaps.rx.try_iter() {
        done.write(d);
    }
}

fn save_snapshot(img: Image, c: &SnapshotCommand) -> Result<Vec<PathBuf>, String> {
    let rgb = img
        .try_into_dynamic()
        .map_err(|e| format!("the window's picture: {e}"))?
        .to_rgb8();
    std::fs::create_dir_all(&c.dir).map_err(|e| format!("{}: {e}", c.dir.display()))?;
    let mut files = Vec::new();
    let view = c.dir.join("view.png");
    rgb.save(&view)
        .map_err(|e| format!("{}: {e}", view.display()))?;
    files.push(view);
    let (w, h) = rgb.dimensions();
    for (name, [x, y, cw, ch]) in &c.crops {
        let (x, y) = ((*x).min(w.saturating_sub(1)), (*y).min(h.saturating_sub(1)));
        let (cw, ch) = ((*cw).min(w - x), (*ch).min(h - y));
        if cw < 8 || ch < 8 {
            continue;
        }
        let part = image::imageops::crop_imm(&rgb, x, y, cw, ch).to_image();
        let p = c.dir.join(format!("{name}.png"));
        part.save(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        files.push(p);
    }
    Ok(files)
}
