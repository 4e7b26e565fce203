//! Status colours: the [`Shown`] state (live, or recorded at the replay cursor) in,
//! a stack-light beacon above each machine and a floor pad under it, coloured by state, out.

use std::collections::HashMap;

use bevy::prelude::*;

use super::bounds::WorldBounds;
use crate::playback::Shown;
use crate::twin::{BoundAsset, MachineState};

/// One material per machine state, shared by every beacon and pad.
#[derive(Resource)]
pub struct StatusPalette {
    pub beacon: HashMap<MachineState, Handle<StandardMaterial>>,
    /// Beacon of a machine that went silent: dark, not lit.
    pub stale: Handle<StandardMaterial>,
    pub pad: HashMap<MachineState, Handle<StandardMaterial>>,
    pub beacon_mesh: Handle<Mesh>,
    pub pad_mesh: Handle<Mesh>,
}

/// The beacon and pad entities of an asset.
#[derive(Component)]
pub struct StatusMarkers {
    pub beacon: Entity,
    pub pad: Entity,
    pub shown: (MachineState, bool),
}

/// Marks an entity drawn by the status layer (not part of the layout).
#[derive(Component)]
pub struct StatusMarker;

pub fn setup_palette(
    mut commands: Commands,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
) {
    let mut beacon = HashMap::new();
    let mut pad = HashMap::new();
    for s in MachineState::ALL {
        let [r, g, b] = s.srgb();
        let c = Color::srgb_u8(r, g, b);
        let lin = c.to_linear();
        beacon.insert(
            s,
            materials.add(StandardMaterial {
                base_color: c,
                emissive: LinearRgba::rgb(lin.red * 2.0, lin.green * 2.0, lin.blue * 2.0),
                ..default()
            }),
        );
        pad.insert(
            s,
            materials.add(StandardMaterial {
                base_color: c.with_alpha(1.0),
                perceptual_roughness: 0.9,
                ..default()
            }),
        );
    }
    let stale = materials.add(StandardMaterial {
        base_color: Color::srgb(0.12, 0.12, 0.14),
        perceptual_roughness: 0.4,
        ..default()
    });
    commands.insert_resource(StatusPalette {
        beacon,
        stale,
        pad,
        beacon_mesh: meshes.add(Cylinder::new(0.22, 0.5)),
        pad_mesh: meshes.add(Cuboid::new(1.0, 0.02, 1.0)),
    });
}

/// An asset whose markers are not spawned yet.
type UnmarkedAsset<'a> = (Entity, &'a WorldBounds, &'a GlobalTransform, &'a Shown);

/// Spawns markers once an asset's bounds are known.
pub fn spawn_markers(
    mut commands: Commands,
    palette: Option<Res<StatusPalette>>,
    assets: Query<UnmarkedAsset, (With<BoundAsset>, Without<StatusMarkers>)>,
) {
    let Some(palette) = palette else {
        return;
    };
    for (e, b, gt, shown) in &assets {
        let state = &shown.state;
        let inv = gt.affine().inverse();
        let top = Vec3::new(b.center().x, b.max.y + 0.45, b.center().z);
        let pad_at = Vec3::new(b.center().x, 0.012, b.center().z);
        let (_, rot, _) = gt.to_scale_rotation_translation();
        // Pads are axis-aligned in the world; undo the asset's own rotation.
        let local_rot = rot.inverse();
        let size = b.size();
        let beacon = commands
            .spawn((
                StatusMarker,
                Name::new("status beacon"),
                Mesh3d(palette.beacon_mesh.clone()),
                MeshMaterial3d(palette.beacon[&state.state].clone()),
                Transform::from_translation(inv.transform_point3(top)),
            ))
            .id();
        let pad = commands
            .spawn((
                StatusMarker,
                Name::new("status pad"),
                Mesh3d(palette.pad_mesh.clone()),
                MeshMaterial3d(palette.pad[&state.state].clone()),
                Transform::from_translation(inv.transform_point3(pad_at))
                    .with_rotation(local_rot)
                    .with_scale(Vec3::new(size.x + 0.6, 1.0, size.z + 0.6)),
            ))
            .id();
        commands
            .entity(e)
            .add_children(&[beacon, pad])
            .insert(StatusMarkers {
                beacon,
                pad,
                shown: (state.state, false),
            });
    }
}

/// State, freshness and markers of one asset.
type ShownStatus<'a> = (&'a Shown, &'a mut StatusMarkers);

/// Assets whose shown state or freshness changed.
type StatusChanged = Changed<Shown>;

/// Recolours markers when a state or freshness changes.
pub fn recolor_markers(
    palette: Option<Res<StatusPalette>>,
    mut assets: Query<ShownStatus, StatusChanged>,
    mut mats: Query<&mut MeshMaterial3d<StandardMaterial>, With<StatusMarker>>,
) {
    let Some(palette) = palette else {
        return;
    };
    for (shown, mut markers) in &mut assets {
        let (state, fresh) = (&shown.state, &shown.freshness);
        let want = (state.state, fresh.stale);
        if markers.shown == want {
            continue;
        }
        if let Ok(mut m) = mats.get_mut(markers.beacon) {
            m.0 = if fresh.stale {
                palette.stale.clone()
            } else {
                palette.beacon[&state.state].clone()
            };
        }
        if let Ok(mut m) = mats.get_mut(markers.pad) {
            m.0 = palette.pad[&state.state].clone();
        }
        markers.shown = want;
    }
}

/// Floor pads coloured by OEE (the running shift's record) while the
/// heat-map is on; by state again when it is turned off. Beacons keep the
/// state.
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
pub fn heatmap_pads(
    heat: Option<Res<crate::oee::live::OeeHeatmap>>,
    live: Option<Res<crate::oee::live::OeeLive>>,
    palette: Option<Res<StatusPalette>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
    assets: Query<(&BoundAsset, &Shown, &StatusMarkers)>,
    mut mats: Query<&mut MeshMaterial3d<StandardMaterial>, With<StatusMarker>>,
    mut buckets: Local<Vec<Handle<StandardMaterial>>>,
    mut shown: Local<(bool, i64)>,
) {
    let (Some(heat), Some(live), Some(palette)) = (heat, live, palette) else {
        return;
    };
    let on = heat.0;
    let at = live.0.computed_us;
    if (on, at) == *shown || (!on && !shown.0) {
        return;
    }
    if buckets.is_empty() {
        // 0: no OEE (grey); 1..=10: 0–100 % from red through yellow to green.
        buckets.push(materials.add(StandardMaterial {
            base_color: Color::srgb(0.35, 0.35, 0.38),
            perceptual_roughness: 0.9,
            ..default()
        }));
        for i in 0..10 {
            let t = ((i as f32 / 9.0 - 0.4) / 0.5).clamp(0.0, 1.0);
            let c = Color::hsl(t * 120.0, 0.8, 0.5);
            let lin = c.to_linear();
            buckets.push(materials.add(StandardMaterial {
                base_color: c,
                emissive: LinearRgba::rgb(lin.red * 0.6, lin.green * 0.6, lin.blue * 0.6),
                perceptual_roughness: 0.9,
                ..default()
            }));
        }
    }
    for (b, s, markers) in &assets {
        let Ok(mut m) = mats.get_mut(markers.pad) else {
            continue;
        };
        m.0 = if on {
            let oee = live
                .0
                .records
                .iter()
                .find(|r| r.0 == b.0)
                .and_then(|r| r.1.oee());
            match oee {
                Some(x) => buckets[1 + ((x.clamp(0.0, 0.999) * 10.0) as usize)].clone(),
                None => buckets[0].clone(),
            }
        } else {
            palette.pad[&s.state.state].clone()
        };
    }
    *shown = (on, at);
}
