//! Ghosts: a what-if study's trajectories ([`WhatIfView`]), the time
//! cursor and [`GhostCommand`]s in; translucent machines, queues and work
//! items of each scenario over the solid live plant out, drawn with the
//! ghost material (`shaders/ghost.wgsl`) — and, in split mode, a second
//! camera beside the first, moved with it.
//!
//! Each variant (baseline 0, scenarios 1..) draws on render layer 1 + v, so
//! a camera shows the variants its layers name. Ghosts cast no shadows and
//! are never picked. With the cursor in the future (or in the past inside
//! the study's horizon) each variant shows the plant at that scenario time:
//! machines coloured by simulated state (down pulses), queues as stacks in
//! front of machines, orders moving between machines, interpolated between
//! the trajectory's one-minute frames.

use std::collections::HashMap;
use std::sync::Arc;

use bevy::asset::uuid_handle;
use bevy::camera::ClearColorConfig;
use bevy::camera::visibility::RenderLayers;
use bevy::light::NotShadowCaster;
use bevy::pbr::{Material, MaterialPlugin};
use bevy::prelude::*;
use bevy::render::render_resource::{AsBindGroup, ShaderType};
use bevy::shader::ShaderRef;

use super::bounds::WorldBounds;
use super::camera::OrbitCamera;
use crate::playback::TimeCursor;
use crate::registry::AssetRegistry;
use crate::twin::{AssetEntities, MachineState};
use crate::whatif::SimState;
use crate::whatif::app::{WhatIfOutcome, WhatIfView};

/// The ghost shader, compiled into the binary.
pub const GHOST_SHADER: Handle<Shader> = uuid_handle!("6f1d3c2e-8a4b-4e57-9d0b-2f7e5a1c9b31");

/// At most this many variants get ghosts (baseline and three scenarios).
pub const MAX_GHOSTS: usize = 4;

/// Each variant's colour (sRGB): baseline, then the scenarios.
pub const VARIANT_SRGB: [[u8; 3]; MAX_GHOSTS] = [
    [70, 170, 255],
    [255, 120, 30],
    [190, 90, 255],
    [40, 210, 120],
];

/// The colour of variant `v`.
pub fn variant_srgb(v: usize) -> [u8; 3] {
    VARIANT_SRGB[v % MAX_GHOSTS]
}

/// The render layer of variant `v`'s ghosts.
pub fn ghost_layer(v: usize) -> usize {
    1 + v
}

/// What the ghost shader reads.
#[derive(ShaderType, Debug, Clone, Copy, PartialEq)]
pub struct GhostParams {
    pub tint: Vec4,
    pub state_colour: Vec4,
    pub pulse: f32,
    pub rim_power: f32,
    pub state_mix: f32,
    pub strength: f32,
}

/// The ghost material.
#[derive(Asset, TypePath, AsBindGroup, Debug, Clone)]
pub struct GhostMaterial {
    #[uniform(0)]
    pub params: GhostParams,
}

impl Material for GhostMaterial {
    fn fragment_shader() -> ShaderRef {
        ShaderRef::Handle(GHOST_SHADER)
    }
    fn alpha_mode(&self) -> AlphaMode {
        AlphaMode::Blend
    }
    fn enable_shadows() -> bool {
        false
    }
    fn enable_prepass() -> bool {
        false
    }
}

/// Overlay (every enabled variant in one view) or split screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GhostMode {
    #[default]
    Overlay,
    /// Two synchronized views: `left` | `right` variant.
    Split { left: usize, right: usize },
}

/// How ghosts are shown.
#[derive(Resource, Debug, Clone, PartialEq)]
pub struct GhostView {
    pub mode: GhostMode,
    /// Per variant: shown in the overlay.
    pub enabled: [bool; MAX_GHOSTS],
}

impl Default for GhostView {
    fn default() -> Self {
        // The overlay shows the scenarios over the live plant; the
        // baseline's future is one click away (and left in split mode).
        let mut enabled = [true; MAX_GHOSTS];
        enabled[0] = false;
        Self {
            mode: GhostMode::Overlay,
            enabled,
        }
    }
}

/// What the UI asks of the ghosts.
#[derive(Message, Debug, Clone, PartialEq)]
pub enum GhostCommand {
    Toggle(usize),
    Mode(GhostMode),
}

/// What a ghost entity stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GhostKind {
    Machine(u32),
    Queue(u32),
    Item(u32),
}

#[derive(Component, Debug, Clone, Copy)]
pub struct Ghost {
    pub variant: usize,
    pub kind: GhostKind,
}

use super::camera::{SecondView as SplitCamera, SplitScreen};

/// The outcome the ghosts were built for, and each machine's box.
#[derive(Resource, Default)]
pub struct GhostScene {
    outcome: Option<Arc<WhatIfOutcome>>,
    /// Per station (in the model's order): its box, where the layout has it.
    boxes: Vec<Option<WorldBounds>>,
    /// Per ghost machine: the state its material shows.
    shown: HashMap<Entity, (SimState, bool)>,
    unit: Handle<Mesh>,
    /// Around the machines the hypotheticals name: where the camera goes.
    focus: Option<WorldBounds>,
}

pub struct GhostPlugin;

impl Plugin for GhostPlugin {
    fn build(&self, app: &mut App) {
        let shader = Shader::from_wgsl(
            include_str!("../../shaders/ghost.wgsl"),
            "shaders/ghost.wgsl",
        );
        if let Some(mut shaders) = app.world_mut().get_resource_mut::<Assets<Shader>>() {
            let _ = shaders.insert(GHOST_SHADER.id(), shader);
        }
        app.add_plugins(MaterialPlugin::<GhostMaterial>::default())
            .init_resource::<GhostView>()
            .init_resource::<GhostScene>()
            .add_message::<GhostCommand>()
            .init_resource::<SplitScreen>()
            .add_systems(Startup, spawn_split_camera)
            .add_systems(
                Update,
                (
                    apply_ghost_commands,
                    build_ghosts,
                    move_ghosts,
                    split_cameras,
                )
                    .chain()
                    .after(super::camera::update_camera_transform)
                    .before(super::camera::apply_viewport_insets)
                    .in_set(crate::MezzanineSet::Render),
            );
    }
}

/// The colour of a simulated state (the live palette's, so a ghost reads
/// like the plant).
pub fn sim_state_srgb(s: SimState) -> [u8; 3] {
    let m = match s {
        SimState::Running => MachineState::Running,
        SimState::Setup => MachineState::Setup,
        SimState::Starved => MachineState::Starved,
        SimState::Blocked => MachineState::Blocked,
        SimState::Down | SimState::MicroStop => MachineState::Down,
        SimState::Off => MachineState::Unknown,
    };
    m.srgb()
}

fn linear(srgb: [u8; 3], a: f32) -> Vec4 {
    let c = Color::srgb_u8(srgb[0], srgb[1], srgb[2]).to_linear();
    Vec4::new(c.red, c.green, c.blue, a)
}

fn params(v: usize, state: Option<SimState>, body_alpha: f32) -> GhostParams {
    // A stopped machine stands out: more body, its state's colour.
    let body_alpha = match state {
        Some(SimState::Down | SimState::Blocked | SimState::Off) => body_alpha.max(0.55),
        _ => body_alpha,
    };
    GhostParams {
        tint: linear(variant_srgb(v), body_alpha),
        state_colour: linear(state.map_or(variant_srgb(v), sim_state_srgb), 1.0),
        pulse: if matches!(state, Some(SimState::Down)) {
            1.0
        } else {
            0.0
        },
        rim_power: 2.0,
        state_mix: if state.is_some() { 0.85 } else { 0.0 },
        strength: 1.0,
    }
}

fn apply_ghost_commands(mut cmds: MessageReader<GhostCommand>, mut view: ResMut<GhostView>) {
    for c in cmds.read() {
        match c {
            GhostCommand::Toggle(v) => {
                if let Some(e) = view.enabled.get_mut(*v) {
                    *e = !*e;
                }
            }
            GhostCommand::Mode(m) => view.mode = *m,
        }
    }
}

fn spawn_split_camera(mut commands: Commands, options: Res<super::RenderOptions>) {
    let mut e = commands.spawn((
        Name::new("Split camera"),
        SplitCamera,
        Camera3d::default(),
        Camera {
            order: 1,
            is_active: false,
            clear_color: ClearColorConfig::None,
            ..default()
        },
        RenderLayers::layer(0),
    ));
    if !options.msaa {
        e.insert(Msaa::Off);
    }
}

/// (Re)spawns the ghosts when a study's outcome arrives or goes.
#[allow(clippy::too_many_arguments)]
fn build_ghosts(
    mut commands: Commands,
    view: Option<Res<WhatIfView>>,
    mut scene: ResMut<GhostScene>,
    registry: Res<AssetRegistry>,
    index: Option<Res<AssetEntities>>,
    bounds: Query<&WorldBounds>,
    ghosts: Query<Entity, With<Ghost>>,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<GhostMaterial>>,
    mut camera_out: MessageWriter<super::CameraCommand>,
) {
    let current = view.as_ref().and_then(|v| v.outcome.clone());
    let same = match (&current, &scene.outcome) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    };
    // A machine whose box was not known yet (its layout still loading)
    // gets its ghost once it is: built again then.
    let box_of = |id: &str| {
        let idx = registry.by_id(id)?;
        let e = index.as_ref()?.0.get(&idx)?;
        bounds.get(*e).ok().copied()
    };
    let boxes_grew = same
        && current.as_ref().is_some_and(|o| {
            o.result.models[0]
                .stations
                .iter()
                .zip(&scene.boxes)
                .any(|(s, b)| b.is_none() && box_of(&s.id).is_some())
        });
    if same && !boxes_grew {
        return;
    }
    for e in &ghosts {
        commands.entity(e).despawn();
    }
    scene.shown.clear();
    scene.boxes.clear();
    scene.outcome = current.clone();
    let Some(o) = current else {
        return;
    };
    if scene.unit == Handle::default() {
        scene.unit = meshes.add(Cuboid::new(1.0, 1.0, 1.0));
    }
    let boxes: Vec<Option<WorldBounds>> = o.result.models[0]
        .stations
        .iter()
        .map(|s| box_of(&s.id))
        .collect();
    let unit = scene.unit.clone();
    // Every ghost: hidden until the cursor shows it, on its variant's
    // layer, casting no shadow and never picked.
    let ghost = |v: usize, kind: GhostKind, material: Handle<GhostMaterial>, t: Transform| {
        let what = match kind {
            GhostKind::Machine(s) => format!("machine {s}"),
            GhostKind::Queue(s) => format!("queue {s}"),
            GhostKind::Item(k) => format!("order {k}"),
        };
        (
            Name::new(format!("ghost {v} {what}")),
            Ghost { variant: v, kind },
            Mesh3d(unit.clone()),
            MeshMaterial3d(material),
            t,
            Visibility::Hidden,
            RenderLayers::layer(ghost_layer(v)),
            NotShadowCaster,
            Pickable::IGNORE,
        )
    };
    for v in 0..o.trajectories.len().min(MAX_GHOSTS) {
        let grow = 1.04 + 0.05 * v as f32;
        for (s, b) in boxes.iter().enumerate() {
            let Some(b) = b else { continue };
            let body = materials.add(GhostMaterial {
                params: params(v, Some(SimState::Starved), 0.32),
            });
            let t = Transform::from_translation(b.center()).with_scale(b.size() * grow);
            let m = commands
                .spawn(ghost(v, GhostKind::Machine(s as u32), body, t))
                .id();
            scene.shown.insert(m, (SimState::Starved, false));
            let stack = materials.add(GhostMaterial {
                params: params(v, None, 0.55),
            });
            commands.spawn(ghost(
                v,
                GhostKind::Queue(s as u32),
                stack,
                Transform::IDENTITY,
            ));
        }
        let item = materials.add(GhostMaterial {
            params: params(v, None, 0.75),
        });
        for k in 0..o.result.models[v].orders.len() {
            let t = Transform::from_scale(Vec3::splat(0.45));
            commands.spawn(ghost(v, GhostKind::Item(k as u32), item.clone(), t));
        }
    }
    // Frame the machines the hypotheticals name (with room around them).
    let named: Vec<WorldBounds> = o
        .file
        .scenarios
        .iter()
        .flat_map(|s| s.changes.iter().filter_map(|c| c.machine()))
        .filter_map(|id| {
            let s = o.result.models[0].station(id)?;
            boxes.get(s as usize).copied().flatten()
        })
        .collect();
    scene.focus = named.into_iter().reduce(WorldBounds::union).map(|b| {
        let c = b.center();
        let half = (b.size() * 0.5 + Vec3::splat(4.0)) * 1.3;
        WorldBounds {
            min: c - half,
            max: c + half,
        }
    });
    if let Some(f) = scene.focus {
        camera_out.write(super::CameraCommand::Frame(f));
    }
    scene.boxes = boxes;
}

/// Where a queue's stack stands: in front of the machine (+z), on the floor.
fn queue_base(b: &WorldBounds, v: usize) -> Vec3 {
    let c = b.center();
    Vec3::new(
        c.x - b.size().x * 0.3 + 0.55 * v as f32,
        b.min.y,
        b.max.z + 0.6,
    )
}

/// Where an order sits on a machine: above its top.
fn item_on(b: &WorldBounds, v: usize) -> Vec3 {
    Vec3::new(b.center().x + 0.5 * v as f32, b.max.y + 0.45, b.center().z)
}

/// Moves and colours the ghosts to the cursor's scenario time.
fn move_ghosts(
    cursor: Res<TimeCursor>,
    view: Res<GhostView>,
    mut scene: ResMut<GhostScene>,
    mut ghosts: Query<(
        Entity,
        &Ghost,
        &mut Transform,
        &mut Visibility,
        &MeshMaterial3d<GhostMaterial>,
    )>,
    mut materials: ResMut<Assets<GhostMaterial>>,
) {
    let Some(o) = scene.outcome.clone() else {
        return;
    };
    let t_us = cursor.t_us;
    let active = !cursor.is_live();
    let shown_variant = |v: usize| match view.mode {
        GhostMode::Overlay => view.enabled.get(v).copied().unwrap_or(false),
        GhostMode::Split { left, right } => v == left || v == right,
    };
    // Per variant: machines and orders at the cursor.
    let at: Vec<Option<(&[crate::whatif::trajectory::MachineFrame], Vec<_>)>> = o
        .trajectories
        .iter()
        .enumerate()
        .map(|(v, tr)| {
            if !active || !shown_variant(v) {
                return None;
            }
            Some((tr.machines_at(t_us)?, tr.orders_at(t_us)))
        })
        .collect();
    let mut items: Vec<HashMap<u32, crate::whatif::trajectory::OrderAt>> = at
        .iter()
        .map(|a| {
            a.as_ref()
                .map(|(_, orders)| orders.iter().map(|x| (x.order, *x)).collect())
                .unwrap_or_default()
        })
        .collect();
    for (e, g, mut t, mut vis, mat) in &mut ghosts {
        let Some(Some((machines, _))) = at.get(g.variant) else {
            vis.set_if_neq(Visibility::Hidden);
            continue;
        };
        let show = match g.kind {
            GhostKind::Machine(s) => {
                let Some(mf) = machines.get(s as usize) else {
                    continue;
                };
                let key = (mf.state, true);
                if scene.shown.get(&e) != Some(&key) {
                    if let Some(mut m) = materials.get_mut(&mat.0) {
                        m.params = params(g.variant, Some(mf.state), 0.32);
                    }
                    scene.shown.insert(e, key);
                }
                true
            }
            GhostKind::Queue(s) => {
                let (Some(mf), Some(Some(b))) =
                    (machines.get(s as usize), scene.boxes.get(s as usize))
                else {
                    continue;
                };
                if mf.queue == 0 {
                    false
                } else {
                    let h = 0.22 * mf.queue as f32;
                    let base = queue_base(b, g.variant);
                    *t = Transform::from_translation(base + Vec3::Y * (h * 0.5))
                        .with_scale(Vec3::new(0.5, h, 0.5));
                    true
                }
            }
            GhostKind::Item(k) => match items.get_mut(g.variant).and_then(|m| m.remove(&k)) {
                Some(x) if x.on_machine || x.from != x.to => {
                    let (Some(Some(a)), Some(Some(b))) = (
                        scene.boxes.get(x.from as usize),
                        scene.boxes.get(x.to as usize),
                    ) else {
                        continue;
                    };
                    let p0 = item_on(a, g.variant);
                    let p1 = item_on(b, g.variant);
                    let f = x.frac;
                    // A low arc between the machines.
                    let lift = 4.0 * f * (1.0 - f) * 1.5;
                    t.translation = p0.lerp(p1, f) + Vec3::Y * lift;
                    true
                }
                _ => false,
            },
        };
        vis.set_if_neq(if show {
            Visibility::Visible
        } else {
            Visibility::Hidden
        });
    }
}

/// The plant camera shows the plant and the overlay's variants (or the
/// left one); in split mode the second camera shows the right one, moved
/// with the plant camera (the viewports are halved where the panels'
/// insets are applied).
#[allow(clippy::type_complexity)]
fn split_cameras(
    mut was_split: Local<bool>,
    mut camera_out: MessageWriter<super::CameraCommand>,
    view: Res<GhostView>,
    scene: Res<GhostScene>,
    mut split_screen: ResMut<SplitScreen>,
    mut main: Query<(&mut RenderLayers, &Transform), (With<OrbitCamera>, Without<SplitCamera>)>,
    mut split: Query<
        (&mut RenderLayers, &mut Transform),
        (With<SplitCamera>, Without<OrbitCamera>),
    >,
) {
    let Ok((mut layers, t)) = main.single_mut() else {
        return;
    };
    let n = scene
        .outcome
        .as_ref()
        .map_or(0, |o| o.trajectories.len().min(MAX_GHOSTS));
    let (want_main, right) = match view.mode {
        GhostMode::Split { left, right } if n > 0 => (
            RenderLayers::from_layers(&[0, ghost_layer(left)]),
            Some(right),
        ),
        _ => {
            let mut l = vec![0];
            l.extend((0..n).filter(|v| view.enabled[*v]).map(ghost_layer));
            (RenderLayers::from_layers(&l), None)
        }
    };
    if *layers != want_main {
        *layers = want_main;
    }
    if split_screen.0 != right.is_some() {
        split_screen.0 = right.is_some();
    }
    // Half the width: frame again for it (and back).
    if right.is_some() != *was_split {
        *was_split = right.is_some();
        camera_out.write(match scene.focus {
            Some(f) => super::CameraCommand::Frame(f),
            None => super::CameraCommand::FrameAll,
        });
    }
    let Ok((mut slayers, mut st)) = split.single_mut() else {
        return;
    };
    if let Some(r) = right {
        let want = RenderLayers::from_layers(&[0, ghost_layer(r)]);
        if *slayers != want {
            *slayers = want;
        }
        *st = *t;
    }
}
