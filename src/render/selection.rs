//! Selection: clicks on machines and [`SelectionCommand`]s in, the
//! [`Selection`] resource, a highlight box and camera framing out.

use bevy::picking::events::{Click, Out, Over, Pointer};
use bevy::picking::pointer::PointerButton;
use bevy::prelude::*;
use bevy::window::Window;

use super::bounds::WorldBounds;
use super::camera::{CameraCommand, PointerGesture};
use crate::registry::AssetIdx;
use crate::twin::{AssetEntities, BoundAsset};

/// The selected and hovered assets.
#[derive(Resource, Debug, Default, Clone, PartialEq)]
pub struct Selection {
    pub selected: Option<AssetIdx>,
    pub hovered: Option<AssetIdx>,
}

/// Requests to change the selection (from the UI, picking or keys).
#[derive(Message, Debug, Clone, Copy, PartialEq)]
pub enum SelectionCommand {
    Select(AssetIdx),
    /// Select and move the camera to it.
    SelectAndFrame(AssetIdx),
    Clear,
    FrameSelection,
}

/// A click bubbles from a mesh primitive up through its parents: the first
/// bound asset on the way is selected; reaching the window means empty space.
pub fn on_click(
    mut click: On<Pointer<Click>>,
    assets: Query<&BoundAsset>,
    windows: Query<(), With<Window>>,
    gesture: Res<PointerGesture>,
    mut out: MessageWriter<SelectionCommand>,
) {
    if click.event().event.button != PointerButton::Primary || gesture.is_drag() {
        return;
    }
    let target = click.event().entity;
    if let Ok(asset) = assets.get(target) {
        out.write(SelectionCommand::Select(asset.0));
        click.propagate(false);
    } else if windows.get(target).is_ok() {
        out.write(SelectionCommand::Clear);
    }
}

pub fn on_over(
    mut over: On<Pointer<Over>>,
    assets: Query<&BoundAsset>,
    mut sel: ResMut<Selection>,
) {
    if let Ok(asset) = assets.get(over.event().entity) {
        sel.hovered = Some(asset.0);
        over.propagate(false);
    }
}

pub fn on_out(mut out: On<Pointer<Out>>, assets: Query<&BoundAsset>, mut sel: ResMut<Selection>) {
    if let Ok(asset) = assets.get(out.event().entity) {
        if sel.hovered == Some(asset.0) {
            sel.hovered = None;
        }
        out.propagate(false);
    }
}

pub fn selection_keys(
    keys: Res<ButtonInput<KeyCode>>,
    egui_input: Option<Res<bevy_egui::input::EguiWantsInput>>,
    mut out: MessageWriter<SelectionCommand>,
    mut cam: MessageWriter<CameraCommand>,
) {
    if egui_input.is_some_and(|w| w.wants_keyboard_input()) {
        return;
    }
    if keys.just_pressed(KeyCode::Escape) {
        out.write(SelectionCommand::Clear);
    }
    if keys.just_pressed(KeyCode::KeyF) {
        out.write(SelectionCommand::FrameSelection);
    }
    if keys.any_just_pressed([KeyCode::KeyH, KeyCode::Home]) {
        cam.write(CameraCommand::FrameAll);
    }
}

pub fn apply_selection_commands(
    mut commands: MessageReader<SelectionCommand>,
    mut sel: ResMut<Selection>,
    index: Res<AssetEntities>,
    bounds: Query<&WorldBounds>,
    mut cam: MessageWriter<CameraCommand>,
) {
    for c in commands.read() {
        let frame = match *c {
            SelectionCommand::Select(a) => {
                sel.selected = Some(a);
                None
            }
            SelectionCommand::SelectAndFrame(a) => {
                sel.selected = Some(a);
                Some(a)
            }
            SelectionCommand::Clear => {
                sel.selected = None;
                None
            }
            SelectionCommand::FrameSelection => sel.selected,
        };
        if let Some(b) = frame
            .and_then(|a| index.0.get(&a))
            .and_then(|&e| bounds.get(e).ok())
        {
            cam.write(CameraCommand::Frame(*b));
        }
    }
}

/// Wire boxes: bright around the selection, faint around the hovered asset.
pub fn draw_highlight(
    sel: Res<Selection>,
    index: Res<AssetEntities>,
    bounds: Query<&WorldBounds>,
    mut gizmos: Gizmos,
) {
    let draw = |gizmos: &mut Gizmos, a: AssetIdx, color: Color, grow: f32| {
        if let Some(b) = index.0.get(&a).and_then(|&e| bounds.get(e).ok()) {
            let t =
                Transform::from_translation(b.center()).with_scale(b.size() + Vec3::splat(grow));
            gizmos.cube(t, color);
        }
    };
    if let Some(h) = sel.hovered.filter(|h| Some(*h) != sel.selected) {
        draw(&mut gizmos, h, Color::srgba(1.0, 1.0, 1.0, 0.6), 0.15);
    }
    if let Some(s) = sel.selected {
        draw(&mut gizmos, s, Color::srgb(0.1, 0.9, 1.0), 0.25);
        draw(&mut gizmos, s, Color::srgb(0.1, 0.9, 1.0), 0.30);
    }
}
