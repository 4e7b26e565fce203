//! Screenshots for tests and docs: a [`CaptureRequest`] in, a PNG on disk and
//! (optionally) the app's exit out.
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
    if !ready || schedule.is_some_and(|v| v.busy()) {
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
    let sidecar = serde_json::json!({ "asset_states": states, "replay": replay });
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
