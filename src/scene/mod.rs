//! Plant layout import: a glTF/GLB file in, entities bound to registry assets
//! out ([`BoundAsset`] + [`AssetState`] on each asset's node entity, and the
//! [`AssetEntities`] index).
//!
//! The file is read twice on purpose: once headlessly with the `gltf` crate
//! for the binding report (what `mezzanine check` prints), and once through
//! Bevy's asset server for the geometry. Both bind with the same [`Binder`].

pub mod layout;

use std::path::{Path, PathBuf};

use bevy::asset::io::AssetSourceBuilder;
use bevy::gltf::{GltfAssetLabel, GltfExtras};
use bevy::prelude::*;
use bevy::world_serialization::{WorldAssetRoot, WorldInstanceReady};

use crate::MezzanineSet;
use crate::registry::{AssetRecord, AssetRegistry};
use crate::twin::{AssetEntities, AssetState, BoundAsset, Freshness, LiveValues};
use layout::{AssetRef, Binder, BindingReport, Layout, NodeBinding};

/// The (id, glTF node) pairs the binder matches layout nodes against.
pub fn asset_refs(assets: &[AssetRecord]) -> Vec<AssetRef> {
    assets
        .iter()
        .map(|a| AssetRef {
            id: a.id.clone(),
            gltf_node: a.gltf_node.clone(),
        })
        .collect()
}

/// Asset source name under which the layout's folder is mounted.
pub const PLANT_SOURCE: &str = "plant";

/// Mount the layout's folder as an asset source. Must run before
/// `DefaultPlugins` (asset sources are fixed when the asset plugin builds).
pub fn register_plant_source(app: &mut App, layout_path: &Path) {
    let dir = layout_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    app.register_asset_source(
        PLANT_SOURCE,
        AssetSourceBuilder::platform_default(&dir.to_string_lossy(), None),
    );
}

/// Where the layout comes from and how far loading got.
#[derive(Resource, Debug, Clone)]
pub struct PlantLayout {
    pub path: PathBuf,
    pub phase: LoadPhase,
    /// The headless binding report (None if the file could not be read).
    pub report: Option<BindingReport>,
    /// Entities bound in the live world.
    pub bound_entities: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadPhase {
    Loading,
    Ready,
    Failed(String),
}

/// Marks the entity that holds the spawned layout.
#[derive(Component)]
pub struct PlantRoot;

pub struct ScenePlugin {
    pub layout_path: PathBuf,
}

impl Plugin for ScenePlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(PlantLayout {
            path: self.layout_path.clone(),
            phase: LoadPhase::Loading,
            report: None,
            bound_entities: 0,
        })
        .add_systems(Startup, spawn_layout)
        .add_systems(Update, watch_load_failure.in_set(MezzanineSet::Bind))
        .add_observer(bind_on_ready);
    }
}

fn spawn_layout(
    mut commands: Commands,
    mut layout: ResMut<PlantLayout>,
    registry: Res<AssetRegistry>,
    asset_server: Res<AssetServer>,
) {
    match Layout::read(&layout.path) {
        Ok(l) => {
            let report = l.bind(&Binder::new(asset_refs(registry.assets())));
            if report.is_clean() {
                info!(
                    "layout {}: {} assets bound",
                    layout.path.display(),
                    report.bound.len()
                );
            } else {
                warn!("layout binding is incomplete:\n{}", report.to_text());
            }
            layout.report = Some(report);
        }
        Err(e) => {
            error!("{e}");
            layout.phase = LoadPhase::Failed(e.to_string());
            return;
        }
    }
    let Some(file) = layout.path.file_name() else {
        layout.phase = LoadPhase::Failed(format!("{} is not a file", layout.path.display()));
        return;
    };
    let asset_path = format!("{PLANT_SOURCE}://{}", file.to_string_lossy());
    let handle = asset_server.load(GltfAssetLabel::Scene(0).from_asset(asset_path));
    commands.spawn((PlantRoot, Name::new("Plant layout"), WorldAssetRoot(handle)));
}

fn watch_load_failure(
    mut layout: ResMut<PlantLayout>,
    roots: Query<&WorldAssetRoot, With<PlantRoot>>,
    asset_server: Res<AssetServer>,
) {
    if layout.phase != LoadPhase::Loading {
        return;
    }
    for root in &roots {
        if let Some(bevy::asset::LoadState::Failed(err)) = asset_server.get_load_state(root.id()) {
            let msg = format!("cannot load {}: {err}", layout.path.display());
            error!("{msg}");
            layout.phase = LoadPhase::Failed(msg);
        }
    }
}

/// Walk the spawned layout and bind nodes to assets, top-most match first.
#[allow(clippy::too_many_arguments)]
fn bind_on_ready(
    ready: On<WorldInstanceReady>,
    mut commands: Commands,
    roots: Query<(), With<PlantRoot>>,
    children: Query<&Children>,
    nodes: Query<(Option<&Name>, Option<&GltfExtras>)>,
    registry: Res<AssetRegistry>,
    mut index: ResMut<AssetEntities>,
    mut layout: ResMut<PlantLayout>,
) {
    let root = ready.event().entity;
    if roots.get(root).is_err() {
        return;
    }
    let bound = bind_subtree(
        root,
        &mut commands,
        &children,
        &nodes,
        &registry,
        &mut index,
    );
    layout.bound_entities = bound;
    layout.phase = LoadPhase::Ready;
    info!("plant layout spawned: {bound} asset entities bound");
}

/// Bind every node below `root`; returns how many entities were bound.
/// Shared by the live app and the headless tests.
pub fn bind_subtree(
    root: Entity,
    commands: &mut Commands,
    children: &Query<&Children>,
    nodes: &Query<(Option<&Name>, Option<&GltfExtras>)>,
    registry: &AssetRegistry,
    index: &mut AssetEntities,
) -> usize {
    let binder = Binder::new(asset_refs(registry.assets()));
    let mut bound = 0;
    let mut stack: Vec<Entity> = children
        .get(root)
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    while let Some(e) = stack.pop() {
        let (name, extras) = nodes.get(e).unwrap_or((None, None));
        match binder.bind(name.map(Name::as_str), extras.map(|x| x.value.as_str())) {
            NodeBinding::Bound { asset_id, .. } => {
                if let Some(idx) = registry.by_id(&asset_id) {
                    if index.0.contains_key(&idx) {
                        warn!(
                            "asset {asset_id} is claimed by more than one node; keeping the first"
                        );
                        continue;
                    }
                    commands.entity(e).insert((
                        BoundAsset(idx),
                        AssetState::default(),
                        LiveValues::default(),
                        Freshness::default(),
                    ));
                    index.0.insert(idx, e);
                    bound += 1;
                }
            }
            NodeBinding::Structure
            | NodeBinding::UnknownAsset { .. }
            | NodeBinding::BadExtras { .. } => {}
            NodeBinding::None => {
                if let Ok(c) = children.get(e) {
                    stack.extend(c.iter());
                }
            }
        }
    }
    bound
}
