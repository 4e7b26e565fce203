//! The twin's live state: state updates in (as [`MachineStateUpdate`]
//! messages), per-asset components out ([`AssetState`] on each bound asset
//! entity, found through [`AssetEntities`]).
//!
//! The adapters that feed it arrive with the live-ingest work; until then
//! every asset shows [`MachineState::Unknown`] ("no data").

use std::collections::HashMap;

use bevy::prelude::*;

use crate::MezzanineSet;
use crate::registry::AssetIdx;

/// What a machine is doing, in the categories OEE and the status colours use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Reflect)]
pub enum MachineState {
    /// No data received yet.
    #[default]
    Unknown,
    Running,
    Idle,
    /// Cannot unload: downstream full.
    Blocked,
    /// Waiting for material: upstream empty.
    Starved,
    Setup,
    Down,
}

impl MachineState {
    pub const ALL: [MachineState; 7] = [
        MachineState::Running,
        MachineState::Idle,
        MachineState::Blocked,
        MachineState::Starved,
        MachineState::Setup,
        MachineState::Down,
        MachineState::Unknown,
    ];

    pub fn label(self) -> &'static str {
        match self {
            MachineState::Unknown => "no data",
            MachineState::Running => "running",
            MachineState::Idle => "idle",
            MachineState::Blocked => "blocked",
            MachineState::Starved => "starved",
            MachineState::Setup => "setup",
            MachineState::Down => "down",
        }
    }

    /// Status colour as sRGB bytes, shared by the 3D beacons and the panels.
    pub fn srgb(self) -> [u8; 3] {
        match self {
            MachineState::Unknown => [140, 146, 156],
            MachineState::Running => [46, 184, 92],
            MachineState::Idle => [240, 200, 40],
            MachineState::Blocked => [150, 90, 220],
            MachineState::Starved => [60, 150, 240],
            MachineState::Setup => [250, 140, 30],
            MachineState::Down => [225, 45, 45],
        }
    }
}

/// The registry asset an entity stands for (set by the scene binder).
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundAsset(pub AssetIdx);

/// Current machine state of a bound asset.
#[derive(Component, Debug, Clone, PartialEq, Default)]
pub struct AssetState {
    pub state: MachineState,
    /// Why it is in that state (e.g. a down reason), when known.
    pub reason: Option<String>,
    /// Source time of the transition, microseconds since the Unix epoch (UTC).
    pub since_ts_us: Option<i64>,
}

/// Asset index → its entity in the live world.
#[derive(Resource, Debug, Default)]
pub struct AssetEntities(pub HashMap<AssetIdx, Entity>);

/// A state transition for one asset, from an adapter or a simulator.
#[derive(Message, Debug, Clone, PartialEq)]
pub struct MachineStateUpdate {
    pub asset: AssetIdx,
    pub state: MachineState,
    pub reason: Option<String>,
    pub ts_us: i64,
}

pub struct TwinPlugin;

impl Plugin for TwinPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<AssetEntities>()
            .add_message::<MachineStateUpdate>()
            .add_systems(Update, apply_state_updates.in_set(MezzanineSet::Apply));
    }
}

/// Applies state updates; an update older than the current state is ignored,
/// so a redelivered message cannot move a machine back in time.
pub fn apply_state_updates(
    mut updates: MessageReader<MachineStateUpdate>,
    entities: Res<AssetEntities>,
    mut states: Query<&mut AssetState>,
) {
    for u in updates.read() {
        let Some(&e) = entities.0.get(&u.asset) else {
            continue;
        };
        let Ok(mut s) = states.get_mut(e) else {
            continue;
        };
        if s.since_ts_us.is_some_and(|t| t > u.ts_us) {
            continue;
        }
        if s.state != u.state || s.reason != u.reason {
            *s = AssetState {
                state: u.state,
                reason: u.reason.clone(),
                since_ts_us: Some(u.ts_us),
            };
        }
    }
}
