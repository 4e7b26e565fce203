//! World-space boxes of assets: mesh bounds and transforms in, a
//! [`WorldBounds`] per bound asset (and one for the whole plant) out.

use bevy::camera::primitives::Aabb;
use bevy::prelude::*;

use crate::twin::BoundAsset;

/// An axis-aligned box in plant coordinates (metres).
#[derive(Component, Debug, Clone, Copy, PartialEq)]
pub struct WorldBounds {
    pub min: Vec3,
    pub max: Vec3,
}

impl WorldBounds {
    pub fn center(&self) -> Vec3 {
        (self.min + self.max) * 0.5
    }
    pub fn size(&self) -> Vec3 {
        self.max - self.min
    }
    pub fn union(self, o: WorldBounds) -> WorldBounds {
        WorldBounds {
            min: self.min.min(o.min),
            max: self.max.max(o.max),
        }
    }
}

/// World box of every mesh below `root` (None when nothing has bounds yet).
pub fn subtree_bounds(
    root: Entity,
    children: &Query<&Children>,
    meshes: &Query<(&Aabb, &GlobalTransform)>,
) -> Option<WorldBounds> {
    let mut out: Option<WorldBounds> = None;
    let mut stack = vec![root];
    while let Some(e) = stack.pop() {
        if let Ok((aabb, gt)) = meshes.get(e) {
            let c = Vec3::from(aabb.center);
            let h = Vec3::from(aabb.half_extents);
            for sx in [-1.0, 1.0] {
                for sy in [-1.0, 1.0] {
                    for sz in [-1.0, 1.0] {
                        let p = gt.transform_point(c + h * Vec3::new(sx, sy, sz));
                        let b = WorldBounds { min: p, max: p };
                        out = Some(out.map_or(b, |o| o.union(b)));
                    }
                }
            }
        }
        if let Ok(c) = children.get(e) {
            stack.extend(c.iter());
        }
    }
    out
}

/// Computes bounds once per asset, after its meshes have theirs.
pub fn compute_asset_bounds(
    mut commands: Commands,
    assets: Query<Entity, (With<BoundAsset>, Without<WorldBounds>)>,
    children: Query<&Children>,
    meshes: Query<(&Aabb, &GlobalTransform)>,
) {
    for e in &assets {
        if let Some(b) = subtree_bounds(e, &children, &meshes) {
            commands.entity(e).insert(b);
        }
    }
}

/// Marks the entity holding the bounds of all assets together.
#[derive(Component)]
pub struct PlantBounds;

pub fn compute_plant_bounds(
    mut commands: Commands,
    assets: Query<&WorldBounds, With<BoundAsset>>,
    changed: Query<(), (With<BoundAsset>, Added<WorldBounds>)>,
    mut plant: Query<&mut WorldBounds, (With<PlantBounds>, Without<BoundAsset>)>,
) {
    if changed.is_empty() {
        return;
    }
    let Some(all) = assets.iter().copied().reduce(WorldBounds::union) else {
        return;
    };
    match plant.single_mut() {
        Ok(mut b) => *b = all,
        Err(_) => {
            commands.spawn((PlantBounds, all, Name::new("Plant bounds")));
        }
    }
}
