//! Mezzanine: a desktop digital twin for manufacturing, beside the MES at
//! ISA-95 "Level 3.5".
//!
//! Data flows one way through the modules. Each sits in a layer and
//! imports only from layers below it ([`LAYERS`]; `tests/it/layers.rs`
//! fails the suite on an import against the flow):
//!
//! ```text
//!  0  config, contract,  settings; the MES event contract (envelope, schemas, schedule record);
//!     calendar           the shift calendar (planned working time)
//!  1  registry           assets: ISA-95 path ↔ glTF node ↔ topics ↔ OPC UA node ids
//!  2  ingest             MQTT / OPC UA bytes → Sample, MES bytes → Envelope, dead letters
//!  3  twin               live state per asset (samples → AssetState, LiveValues)
//!  4  scene              glTF layout → entities bound to assets, with twin components
//!  5  history            DuckDB: stores what it is given; queries for replay and trends
//!  6  mes                events applied to work orders; polling; outages (→ history messages)
//!  7  reconcile          authority rules → discrepancies
//!  8  demo               the embedded plant: broker, OPC UA server, PLC and MES simulators
//!  9  playback           the time cursor: live or replay, changed only through commands
//! 10  whatif             forks of the plant as worlds, the event engine, scenarios, statistics
//! 11  schedule           the plant's scheduling problem, tabu search, the MES plan compared,
//!                        robustness through what-if; benchmark instances;
//!     federation         the site summary published for the enterprise, and the
//!                        enterprise view's model of every site (from its broker)
//! 12  render             the 3D view: status colours, camera, picking
//! 13  ui                 egui panels; they only send commands
//! 14  cli                the command line's types
//! 15  app                the desktop app assembled from the plugins above
//! 16  tools              headless subcommands (check, record, export, bench, whatif, schedule, …)
//! ```
//!
//! Each frame runs the systems in one chained set:
//! `Ingest → Bind → Apply → Reconcile → Record → Playback → Render`. The UI
//! runs in bevy_egui's `EguiPrimaryContextPass` and only sends commands
//! (`SelectionCommand`, `CameraCommand`, `PlaybackCommand`, …) that the
//! chain drains.

pub mod app;
pub mod calendar;
pub mod cli;
pub mod config;
pub mod contract;
pub mod demo;
pub mod federation;
pub mod history;
pub mod ingest;
pub mod mes;
pub mod oee;
pub mod pdf;
pub mod playback;
pub mod quality;
pub mod reconcile;
pub mod registry;
pub mod render;
pub mod scene;
pub mod schedule;
// The command line prints its reports and tables to stdout.
#[allow(clippy::print_stdout)]
pub mod tools;
pub mod twin;
pub mod ui;
pub mod whatif;

/// The benchmarks, where tests and `benches/` have always found them.
pub use tools::bench;

/// The layers of the crate, lowest first: a module may import only from
/// modules in layers before its own. Planned layers (OEE, quality) go
/// beside `whatif` and `schedule`, between `playback` and `render`.
pub const LAYERS: &[&[&str]] = &[
    &["config", "contract", "calendar", "pdf"],
    &["registry"],
    &["ingest"],
    &["twin"],
    &["scene"],
    &["history"],
    &["mes"],
    &["reconcile"],
    &["demo"],
    &["playback"],
    &["whatif", "oee", "quality"],
    &["schedule", "federation"],
    &["render"],
    &["ui"],
    &["cli"],
    &["app"],
    &["tools"],
];

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
