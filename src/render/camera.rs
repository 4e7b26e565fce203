//! The orbit camera: mouse, keyboard and [`CameraCommand`]s in, the camera's
//! transform and viewport out.
//!
//! Mouse: left-drag orbits, right- or middle-drag pans, the wheel zooms.
//! Keyboard: W/A/S/D or arrows pan, Q/E turn, Z/X or PageUp/PageDown zoom,
//! F frames the selection, H (or Home) frames the whole plant.

use bevy::camera::Viewport;
use bevy::input::mouse::{AccumulatedMouseMotion, AccumulatedMouseScroll, MouseScrollUnit};
use bevy::prelude::*;
use bevy::window::PrimaryWindow;
use bevy_egui::input::EguiWantsInput;

use super::bounds::WorldBounds;

/// Orbit parameters; the transform is derived from them every frame.
#[derive(Component, Debug, Clone)]
pub struct OrbitCamera {
    pub focus: Vec3,
    /// Heading around +Y, radians.
    pub yaw_rad: f32,
    /// Elevation above the floor plane, radians.
    pub pitch_rad: f32,
    pub distance_m: f32,
    /// Where a framing move is heading (focus, distance).
    pub goal: Option<(Vec3, f32)>,
}

impl Default for OrbitCamera {
    fn default() -> Self {
        Self {
            focus: Vec3::ZERO,
            yaw_rad: -0.3,
            pitch_rad: 0.8,
            distance_m: 70.0,
            goal: None,
        }
    }
}

impl OrbitCamera {
    pub fn transform(&self) -> Transform {
        let dir = Vec3::new(
            self.yaw_rad.sin() * self.pitch_rad.cos(),
            self.pitch_rad.sin(),
            self.yaw_rad.cos() * self.pitch_rad.cos(),
        );
        Transform::from_translation(self.focus + dir * self.distance_m)
            .looking_at(self.focus, Vec3::Y)
    }

    /// The closest distance from which every corner of `b` is inside the
    /// view (with a margin), looking at its centre from the current heading.
    pub fn fit_distance(&self, b: &WorldBounds, fov_y_rad: f32, aspect: f32) -> f32 {
        let tan_y = (fov_y_rad * 0.5).tan() * 0.9;
        let tan_x = tan_y * aspect.max(0.1);
        let probe = OrbitCamera {
            focus: b.center(),
            ..self.clone()
        };
        let fits = |d: f32| {
            let t = OrbitCamera {
                distance_m: d,
                ..probe.clone()
            }
            .transform();
            let view = t.compute_affine().inverse();
            (0..8).all(|i| {
                let c = Vec3::new(
                    if i & 1 == 0 { b.min.x } else { b.max.x },
                    if i & 2 == 0 { b.min.y } else { b.max.y },
                    if i & 4 == 0 { b.min.z } else { b.max.z },
                );
                let p = view.transform_point3(c);
                let depth = -p.z;
                depth > 0.1 && p.x.abs() <= depth * tan_x && p.y.abs() <= depth * tan_y
            })
        };
        let (mut lo, mut hi) = (1.0f32, 600.0f32);
        if !fits(hi) {
            return hi;
        }
        for _ in 0..40 {
            let mid = 0.5 * (lo + hi);
            if fits(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi.max(3.0)
    }
}

/// Requests to move the camera (from keys, the UI, or selection).
#[derive(Message, Debug, Clone, Copy, PartialEq)]
pub enum CameraCommand {
    /// Frame a world-space box.
    Frame(WorldBounds),
    /// Frame every bound asset.
    FrameAll,
}

/// Panel insets in logical pixels; the 3D view gets what is left.
#[derive(Resource, Debug, Clone, Copy, Default, PartialEq)]
pub struct ViewportInsets {
    pub left: f32,
    pub right: f32,
    pub top: f32,
    pub bottom: f32,
}

/// Whether the current left-button press has turned into a drag, so that
/// releasing it does not count as a click on a machine.
#[derive(Resource, Debug, Default)]
pub struct PointerGesture {
    pub travelled_px: f32,
}

impl PointerGesture {
    pub const DRAG_THRESHOLD_PX: f32 = 5.0;
    pub fn is_drag(&self) -> bool {
        self.travelled_px > Self::DRAG_THRESHOLD_PX
    }
}

const MIN_PITCH_RAD: f32 = 0.08;
const MAX_PITCH_RAD: f32 = 1.52;

#[allow(clippy::too_many_arguments)]
pub fn orbit_input(
    mut cams: Query<&mut OrbitCamera>,
    buttons: Res<ButtonInput<MouseButton>>,
    keys: Res<ButtonInput<KeyCode>>,
    motion: Res<AccumulatedMouseMotion>,
    scroll: Res<AccumulatedMouseScroll>,
    egui_input: Option<Res<EguiWantsInput>>,
    mut gesture: ResMut<PointerGesture>,
    time: Res<Time>,
) {
    let Ok(mut cam) = cams.single_mut() else {
        return;
    };
    let (pointer_free, keys_free) = egui_input.map_or((true, true), |w| {
        (
            !(w.is_pointer_over_area() || w.wants_pointer_input()),
            !w.wants_keyboard_input(),
        )
    });
    let dt = time.delta_secs().min(0.1);

    if buttons.just_pressed(MouseButton::Left) {
        gesture.travelled_px = 0.0;
    }
    if buttons.pressed(MouseButton::Left) {
        gesture.travelled_px += motion.delta.length();
    }

    let mut moved = false;
    if pointer_free {
        let d = motion.delta;
        if buttons.pressed(MouseButton::Left) && gesture.is_drag() {
            cam.yaw_rad -= d.x * 0.006;
            cam.pitch_rad = (cam.pitch_rad + d.y * 0.005).clamp(MIN_PITCH_RAD, MAX_PITCH_RAD);
            moved = true;
        }
        if buttons.pressed(MouseButton::Right) || buttons.pressed(MouseButton::Middle) {
            let scale = cam.distance_m * 0.0015;
            let (right, fwd) = ground_axes(cam.yaw_rad);
            cam.focus += (-right * d.x + fwd * d.y) * scale;
            moved = true;
        }
        let lines = match scroll.unit {
            MouseScrollUnit::Line => scroll.delta.y,
            MouseScrollUnit::Pixel => scroll.delta.y / 40.0,
        };
        if lines != 0.0 {
            cam.distance_m = (cam.distance_m * 0.88f32.powf(lines)).clamp(2.0, 400.0);
            moved = true;
        }
    }

    if keys_free {
        let (right, fwd) = ground_axes(cam.yaw_rad);
        let mut pan = Vec3::ZERO;
        if keys.any_pressed([KeyCode::KeyW, KeyCode::ArrowUp]) {
            pan += fwd;
        }
        if keys.any_pressed([KeyCode::KeyS, KeyCode::ArrowDown]) {
            pan -= fwd;
        }
        if keys.any_pressed([KeyCode::KeyD, KeyCode::ArrowRight]) {
            pan += right;
        }
        if keys.any_pressed([KeyCode::KeyA, KeyCode::ArrowLeft]) {
            pan -= right;
        }
        if pan != Vec3::ZERO {
            let speed = cam.distance_m * 0.8;
            cam.focus += pan.normalize() * speed * dt;
            moved = true;
        }
        if keys.pressed(KeyCode::KeyQ) {
            cam.yaw_rad += 1.5 * dt;
            moved = true;
        }
        if keys.pressed(KeyCode::KeyE) {
            cam.yaw_rad -= 1.5 * dt;
            moved = true;
        }
        if keys.any_pressed([KeyCode::KeyZ, KeyCode::PageUp]) {
            cam.distance_m = (cam.distance_m * (1.0 - 1.5 * dt)).max(2.0);
            moved = true;
        }
        if keys.any_pressed([KeyCode::KeyX, KeyCode::PageDown]) {
            cam.distance_m = (cam.distance_m * (1.0 + 1.5 * dt)).min(400.0);
            moved = true;
        }
    }
    if moved {
        cam.goal = None;
    }
}

/// Unit vectors on the floor: screen-right and screen-forward.
fn ground_axes(yaw_rad: f32) -> (Vec3, Vec3) {
    let fwd = -Vec3::new(yaw_rad.sin(), 0.0, yaw_rad.cos());
    let right = Vec3::new(-fwd.z, 0.0, fwd.x);
    (right, fwd)
}

pub fn apply_camera_commands(
    mut commands: MessageReader<CameraCommand>,
    mut cams: Query<(&mut OrbitCamera, &Projection)>,
    plant: Query<&WorldBounds, With<super::PlantBounds>>,
) {
    let Ok((mut cam, projection)) = cams.single_mut() else {
        return;
    };
    let (fov, aspect) = fov_aspect(projection);
    for c in commands.read() {
        let target = match c {
            CameraCommand::Frame(b) => Some(*b),
            CameraCommand::FrameAll => plant.iter().next().copied(),
        };
        if let Some(b) = target {
            let d = cam.fit_distance(&b, fov, aspect);
            cam.goal = Some((b.center(), d));
        }
    }
}

/// Vertical field of view and aspect ratio of a projection.
pub fn fov_aspect(projection: &Projection) -> (f32, f32) {
    match projection {
        Projection::Perspective(p) => (p.fov, p.aspect_ratio),
        _ => (std::f32::consts::FRAC_PI_4, 16.0 / 9.0),
    }
}

pub fn update_camera_transform(
    mut cams: Query<(&mut OrbitCamera, &mut Transform)>,
    time: Res<Time>,
) {
    let dt = time.delta_secs().min(0.1);
    for (mut cam, mut t) in &mut cams {
        if let Some((focus, dist)) = cam.goal {
            let k = 1.0 - (-8.0 * dt).exp();
            cam.focus = cam.focus.lerp(focus, k);
            cam.distance_m += (dist - cam.distance_m) * k;
            if cam.focus.distance(focus) < 0.01 && (cam.distance_m - dist).abs() < 0.01 {
                cam.goal = None;
            }
        }
        *t = cam.transform();
    }
}

/// Split screen: the view between the panels shared by the plant camera
/// (left half) and the [`SecondView`] camera (right half).
#[derive(Resource, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SplitScreen(pub bool);

/// The split screen's second camera (moved with the plant camera).
#[derive(Component)]
pub struct SecondView;

fn same_viewport(a: &Option<Viewport>, b: &Option<Viewport>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a.physical_position == b.physical_position && a.physical_size == b.physical_size
        }
        _ => false,
    }
}

pub fn apply_viewport_insets(
    insets: Res<ViewportInsets>,
    split: Res<SplitScreen>,
    window: Query<&Window, With<PrimaryWindow>>,
    mut cams: Query<&mut Camera, (With<OrbitCamera>, Without<SecondView>)>,
    mut second: Query<&mut Camera, (With<SecondView>, Without<OrbitCamera>)>,
) {
    let Ok(window) = window.single() else {
        return;
    };
    let scale = window.scale_factor();
    let (w, h) = (window.physical_width(), window.physical_height());
    let left = (insets.left * scale) as u32;
    let top = (insets.top * scale) as u32;
    let right = (insets.right * scale) as u32;
    let bottom = (insets.bottom * scale) as u32;
    let viewport = if w > left + right + 16 && h > top + bottom + 16 {
        Some(Viewport {
            physical_position: UVec2::new(left, top),
            physical_size: UVec2::new(w - left - right, h - top - bottom),
            ..default()
        })
    } else {
        None
    };
    let (viewport, right) = match (split.0, viewport) {
        (true, Some(vp)) => {
            let half = vp.physical_size.x / 2;
            (
                Some(Viewport {
                    physical_position: vp.physical_position,
                    physical_size: UVec2::new(half.max(1), vp.physical_size.y),
                    ..default()
                }),
                Some(Viewport {
                    physical_position: vp.physical_position + UVec2::new(half, 0),
                    physical_size: UVec2::new(
                        (vp.physical_size.x - half).max(1),
                        vp.physical_size.y,
                    ),
                    ..default()
                }),
            )
        }
        (_, vp) => (vp, None),
    };
    for mut cam in &mut cams {
        if !same_viewport(&cam.viewport, &viewport) {
            cam.viewport = viewport.clone();
        }
    }
    for mut cam in &mut second {
        let active = right.is_some();
        if cam.is_active != active {
            cam.is_active = active;
        }
        if right.is_some() && !same_viewport(&cam.viewport, &right) {
            cam.viewport = right.clone();
        }
    }
}
