//! The 3D view: twin state, selection and camera commands in; lights, the
//! orbit camera, status colours, highlight boxes, what-if ghosts and
//! screenshots out.
//! It reads the twin's state and never changes it.

pub mod bounds;
pub mod camera;
pub mod capture;
pub mod ghost;
pub mod selection;
pub mod status;

use bevy::camera::CameraOutputMode;
use bevy::camera::visibility::RenderLayers;
use bevy::light::CascadeShadowConfigBuilder;
use bevy::picking::mesh_picking::MeshPickingPlugin;
use bevy::prelude::*;
use bevy::render::render_resource::BlendState;
use bevy_egui::{EguiGlobalSettings, PrimaryEguiContext};

use crate::MezzanineSet;
pub use bounds::{PlantBounds, WorldBounds};
pub use camera::{CameraCommand, OrbitCamera, PointerGesture, ViewportInsets};
pub use capture::CaptureRequest;
pub use selection::{Selection, SelectionCommand};

/// Rendering options the binary chooses (software rendering wants them low).
#[derive(Resource, Debug, Clone, Copy)]
pub struct RenderOptions {
    pub shadows: bool,
    pub msaa: bool,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            shadows: true,
            msaa: true,
        }
    }
}

pub struct RenderPlugin {
    pub options: RenderOptions,
    pub capture: Option<CaptureRequest>,
}

impl Plugin for RenderPlugin {
    fn build(&self, app: &mut App) {
        if !app.is_plugin_added::<MeshPickingPlugin>() {
            app.add_plugins(MeshPickingPlugin);
        }
        app.add_plugins(ghost::GhostPlugin);
        app.insert_resource(self.options)
            .insert_resource(ClearColor(Color::srgb(0.80, 0.84, 0.88)))
            .insert_resource(GlobalAmbientLight {
                color: Color::WHITE,
                brightness: 900.0,
                ..default()
            })
            .init_resource::<Selection>()
            .init_resource::<ViewportInsets>()
            .init_resource::<PointerGesture>()
            .add_message::<SelectionCommand>()
            .add_message::<CameraCommand>()
            .add_message::<capture::SnapshotCommand>()
            .add_message::<capture::SnapshotDone>()
            .init_resource::<capture::Snapshots>()
            .add_systems(Update, capture::take_snapshots.after(MezzanineSet::Render))
            .add_systems(Startup, (setup_view, status::setup_palette))
            .add_systems(
                Update,
                (
                    bounds::compute_asset_bounds,
                    bounds::compute_plant_bounds,
                    frame_plant_once,
                    selection::selection_keys,
                    selection::apply_selection_commands,
                    camera::orbit_input,
                    camera::apply_camera_commands,
                    camera::update_camera_transform,
                    camera::apply_viewport_insets,
                    status::spawn_markers,
                    status::recolor_markers,
                    status::heatmap_pads,
                    selection::draw_highlight,
                )
                    .chain()
                    .in_set(MezzanineSet::Render),
            )
            .add_observer(selection::on_click)
            .add_observer(selection::on_over)
            .add_observer(selection::on_out);
        if let Some(req) = &self.capture {
            app.insert_resource(req.clone())
                .init_resource::<capture::CaptureProgress>()
                .add_systems(Update, capture::drive_capture.after(MezzanineSet::Render));
        }
    }
}

fn setup_view(
    mut commands: Commands,
    options: Res<RenderOptions>,
    egui_settings: Option<ResMut<EguiGlobalSettings>>,
) {
    // The panels get a camera of their own: the 3D camera's viewport shrinks
    // to the space between the panels, the UI camera covers the window.
    if let Some(mut s) = egui_settings {
        s.auto_create_primary_context = false;
    }
    commands.spawn((
        Name::new("UI camera"),
        PrimaryEguiContext,
        Camera2d,
        RenderLayers::none(),
        Camera {
            // After the plant camera (0) and the split screen's second (1).
            order: 2,
            output_mode: CameraOutputMode::Write {
                blend_state: Some(BlendState::ALPHA_BLENDING),
                clear_color: ClearColorConfig::None,
            },
            clear_color: ClearColorConfig::Custom(Color::NONE),
            ..default()
        },
    ));
    let cam = OrbitCamera {
        focus: Vec3::new(0.0, 0.0, 0.0),
        ..default()
    };
    let mut e = commands.spawn((
        Name::new("Plant camera"),
        Camera3d::default(),
        cam.transform(),
        cam,
        // The plant; the ghosts' layers are added while a study is shown.
        RenderLayers::layer(0),
    ));
    if !options.msaa {
        e.insert(Msaa::Off);
    }
    commands.spawn((
        Name::new("Sun"),
        DirectionalLight {
            illuminance: 9_000.0,
            shadow_maps_enabled: options.shadows,
            ..default()
        },
        Transform::from_xyz(-20.0, 40.0, 25.0).looking_at(Vec3::ZERO, Vec3::Y),
        CascadeShadowConfigBuilder {
            num_cascades: 1,
            maximum_distance: 160.0,
            ..default()
        }
        .build(),
    ));
}

/// Frames the whole plant once every asset has its box, and again if the
/// viewport between the panels changes size while the panels settle (the
/// first few seconds), so the first picture shows the whole plant.
fn frame_plant_once(
    mut framed_for: Local<Option<Vec2>>,
    time: Res<Time>,
    mut cams: Query<(&mut OrbitCamera, &Projection, &Camera)>,
    bounds: Query<&WorldBounds, With<PlantBounds>>,
    unbounded: Query<(), (With<crate::twin::BoundAsset>, Without<WorldBounds>)>,
    insets: Res<ViewportInsets>,
) {
    if insets.left == 0.0 || !unbounded.is_empty() {
        return;
    }
    if framed_for.is_some() && time.elapsed_secs() > 5.0 {
        return;
    }
    let (Ok((mut c, p, cam)), Some(b)) = (cams.single_mut(), bounds.iter().next()) else {
        return;
    };
    if cam.viewport.is_none() {
        return;
    }
    let Some(size) = cam.logical_viewport_size() else {
        return;
    };
    if *framed_for == Some(size) {
        return;
    }
    // Jump, don't glide, so the first frames are useful.
    let (fov, _) = camera::fov_aspect(p);
    c.focus = b.center();
    c.distance_m = c.fit_distance(b, fov, size.x / size.y.max(1.0));
    c.goal = None;
    *framed_for = Some(size);
}
