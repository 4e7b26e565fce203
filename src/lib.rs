//! Mezzanine: a desktop digital twin for manufacturing, beside the MES at
//! ISA-95 "Level 3.5".
//!
//! Data flows one way through the modules, and each frame runs the systems
//! in one chained set, in this order:
//!
//! ```text
//!  PLM glTF layout ──► scene ──┐
//!  registry TOML ──► registry ─┼─► twin (AssetState per asset) ──► render (3D, status colours)
//!  UNS / OPC UA ──► ingest ────┤                                 └─► ui (panels → commands)
//!  MES events / API ──► mes ───┴─► reconcile (discrepancies) ──► history (DuckDB)
//!
//!  MezzanineSet:  Ingest → Bind → Apply → Reconcile → Record → Playback → Simulate → Render
//! ```
//!
//! The UI runs in bevy_egui's `EguiPrimaryContextPass` and only sends
//! commands (`SelectionCommand`, `CameraCommand`) that the chain drains.

pub mod bench;
pub mod config;
pub mod demo;
pub mod history;
pub mod ingest;
pub mod mes;
pub mod playback;
pub mod reconcile;
pub mod registry;
pub mod render;
pub mod scene;
pub mod twin;
pub mod ui;

use bevy::prelude::*;

/// The per-frame stages, run in this order.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MezzanineSet {
    /// Adapters' samples drained into the world.
    Ingest,
    /// Layout nodes bound to registry assets.
    Bind,
    /// Samples and MES context applied to twin state.
    Apply,
    /// Authority rules compared; discrepancies raised.
    Reconcile,
    /// History written.
    Record,
    /// The time cursor moved.
    Playback,
    /// What-if worlds stepped.
    Simulate,
    /// The 3D view brought up to date.
    Render,
}

/// Orders the stages; every plugin places its systems in one of them.
pub struct CoreSetsPlugin;

impl Plugin for CoreSetsPlugin {
    fn build(&self, app: &mut App) {
        app.configure_sets(
            Update,
            (
                MezzanineSet::Ingest,
                MezzanineSet::Bind,
                MezzanineSet::Apply,
                MezzanineSet::Reconcile,
                MezzanineSet::Record,
                MezzanineSet::Playback,
                MezzanineSet::Simulate,
                MezzanineSet::Render,
            )
                .chain(),
        );
    }
}

/// The headless core: registry, scene binding and twin state. Tests use it
/// with `MinimalPlugins`; the app adds render and UI on top.
pub struct TwinCorePlugins {
    pub registry: registry::AssetRegistry,
    pub layout_path: std::path::PathBuf,
}

impl Plugin for TwinCorePlugins {
    fn build(&self, app: &mut App) {
        app.add_plugins((
            CoreSetsPlugin,
            registry::RegistryPlugin {
                registry: self.registry.clone(),
            },
            twin::TwinPlugin,
            playback::PlaybackPlugin,
            scene::ScenePlugin {
                layout_path: self.layout_path.clone(),
            },
        ));
    }
}
