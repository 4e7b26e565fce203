//! The twin's live state: samples in (through
//! [`crate::ingest::PendingSamples`]), per-asset components out
//! ([`LiveValues`], [`AssetState`] and [`Freshness`] on each bound asset
//! entity, found through [`AssetEntities`]).
//!
//! Each asset keeps the last value per property with source time; a
//! sample of its `state` property becomes a [`MachineStateUpdate`], applied
//! in source-time order to its [`AssetState`]; and [`Freshness`] turns stale
//! when the asset goes silent past its expected update period.

use std::collections::HashMap;

use bevy::prelude::*;

use crate::MezzanineSet;
use crate::ingest::{
    LatencyStats, Origin, PendingOffline, PendingSamples, Quality, SampleValue, now_us,
};
use crate::registry::{AssetIdx, AssetRegistry};

/// The PLC state codes that mean a machine is down (lower case).
pub const DOWN_CODES: [&str; 3] = ["down", "fault", "aborted"];

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

    /// Parse a PLC state code (`running`, `down`, …).
    pub fn parse(code: &str) -> Option<Self> {
        Some(match code.trim().to_ascii_lowercase().as_str() {
            "running" | "run" | "execute" => MachineState::Running,
            "idle" => MachineState::Idle,
            "blocked" => MachineState::Blocked,
            "starved" => MachineState::Starved,
            "setup" | "changeover" => MachineState::Setup,
            c if DOWN_CODES.contains(&c) => MachineState::Down,
            _ => return None,
        })
    }

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

/// The last value of one property.
#[derive(Debug, Clone, PartialEq)]
pub struct LastValue {
    pub value: SampleValue,
    pub quality: Quality,
    pub origin: Origin,
    pub source_ts_us: i64,
    pub received_us: i64,
    pub applied_us: i64,
    /// Sent late from the source's buffer (only ever shown in replay:
    /// the live state never takes one).
    pub historical: bool,
}

/// Last value per property, indexed like the registry's property list.
#[derive(Component, Debug, Clone, Default, PartialEq)]
pub struct LiveValues(pub Vec<Option<LastValue>>);

/// Whether an asset is still talking.
#[derive(Component, Debug, Clone, Default, PartialEq)]
pub struct Freshness {
    /// Receipt time of the newest sample of any property.
    pub last_sample_us: Option<i64>,
    /// No sample for longer than three expected update periods, or the
    /// source said it is gone.
    pub stale: bool,
    /// The source said it is gone (a Sparkplug death certificate): why and
    /// when (µs), until its next sample.
    pub offline: Option<(String, i64)>,
}

/// What the twin did with the samples it was given.
#[derive(Resource, Debug, Clone, Default, PartialEq)]
pub struct TwinCounters {
    pub applied: u64,
    /// Same property, same source time, same value (QoS 1 redelivery, or
    /// the same reading arriving through MQTT and OPC UA).
    pub duplicates: u64,
    /// Older than the value already held: kept out of the live state.
    pub out_of_order: u64,
    /// For an asset the layout has no node for.
    pub without_entity: u64,
    /// A `state` text that is not a known machine state.
    pub unknown_state_codes: u64,
    /// Applied with the receipt time as source time (the payload carried
    /// none the twin reads).
    pub arrival_stamped: u64,
    /// Sent late from a source's buffer (Sparkplug `is_historical`):
    /// recorded, kept out of the live state.
    pub historical: u64,
}

/// Asset index → its entity in the live world.
#[derive(Resource, Debug, Default)]
pub struct AssetEntities(pub HashMap<AssetIdx, Entity>);

/// A state transition for one asset: written by [`apply_samples`] for each
/// sample of a `state` property, applied by [`apply_state_updates`].
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
            .init_resource::<TwinCounters>()
            .init_resource::<PendingSamples>()
            .init_resource::<PendingOffline>()
            .init_resource::<LatencyStats>()
            .add_message::<MachineStateUpdate>()
            .add_systems(
                Update,
                (
                    apply_offline,
                    apply_samples,
                    apply_state_updates,
                    mark_stale,
                )
                    .chain()
                    .in_set(MezzanineSet::Apply),
            );
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

/// Applies drained samples to the live state, then acknowledges them.
#[allow(clippy::too_many_arguments)]
pub fn apply_samples(
    mut pending: ResMut<PendingSamples>,
    registry: Res<AssetRegistry>,
    entities: Res<AssetEntities>,
    mut assets: Query<(&mut LiveValues, &mut Freshness)>,
    mut counters: ResMut<TwinCounters>,
    mut latency: ResMut<LatencyStats>,
    mut state_updates: MessageWriter<MachineStateUpdate>,
) {
    if pending.0.is_empty() {
        return;
    }
    let applied_us = now_us();
    for (sample, ack) in pending.0.drain(..) {
        if sample.hops.historical {
            counters.historical += 1;
            if let Some(a) = ack {
                a.send();
            }
            continue;
        }
        let r = sample.property;
        let target = entities
            .0
            .get(&r.asset)
            .and_then(|&e| assets.get_mut(e).ok());
        let Some((mut values, mut fresh)) = target else {
            counters.without_entity += 1;
            if let Some(a) = ack {
                a.send();
            }
            continue;
        };
        let pi = r.property as usize;
        if values.0.len() <= pi {
            values.0.resize(pi + 1, None);
        }
        let src = sample.hops.source_us;
        let verdict = match &values.0[pi] {
            // The same reading again; a different value with the same
            // stamp (a coarse PLC clock) is news and applies.
            Some(last) if last.source_ts_us == src && last.value == sample.value => {
                Verdict::Duplicate
            }
            Some(last) if last.source_ts_us > src => Verdict::OutOfOrder,
            _ => Verdict::Apply,
        };
        fresh.last_sample_us = Some(
            fresh
                .last_sample_us
                .map_or(sample.hops.received_us, |t| t.max(sample.hops.received_us)),
        );
        // Talking again after a death certificate.
        if fresh.offline.is_some() {
            fresh.offline = None;
        }
        match verdict {
            Verdict::Duplicate => counters.duplicates += 1,
            Verdict::OutOfOrder => counters.out_of_order += 1,
            Verdict::Apply => {
                counters.applied += 1;
                counters.arrival_stamped += u64::from(sample.hops.arrival_stamped);
                latency.record_applied(sample.origin, &sample.hops, applied_us);
                // Only text samples can be states: look the name up for those alone.
                let state_code = match &sample.value {
                    SampleValue::Text(code)
                        if registry.property(r).is_some_and(|(_, p)| p.name == "state") =>
                    {
                        Some(code)
                    }
                    _ => None,
                };
                if let Some(code) = state_code {
                    match MachineState::parse(code.as_str()) {
                        Some(state) => {
                            state_updates.write(MachineStateUpdate {
                                asset: r.asset,
                                state,
                                reason: sample.reason.clone(),
                                ts_us: src,
                            });
                        }
                        None => counters.unknown_state_codes += 1,
                    }
                }
                values.0[pi] = Some(LastValue {
                    value: sample.value,
                    quality: sample.quality,
                    origin: sample.origin,
                    source_ts_us: src,
                    received_us: sample.hops.received_us,
                    applied_us,
                    historical: false,
                });
            }
        }
        if let Some(a) = ack {
            a.send();
        }
    }
}

enum Verdict {
    Apply,
    Duplicate,
    OutOfOrder,
}

/// How long an asset may stay silent: three times its fastest update period.
pub fn silence_limit_us(registry: &AssetRegistry, asset: AssetIdx) -> i64 {
    let fastest_ms = registry
        .get(asset)
        .and_then(|a| {
            a.properties
                .iter()
                .filter_map(|p| p.expected_period_ms)
                .min()
        })
        .unwrap_or(5_000);
    (fastest_ms.max(100) as i64) * 3 * 1000
}

/// Marks assets whose source said it is gone: stale at once, with why.
pub fn apply_offline(
    mut pending: ResMut<PendingOffline>,
    entities: Res<AssetEntities>,
    mut assets: Query<&mut Freshness>,
) {
    for (asset, reason, at_us) in pending.0.drain(..) {
        if let Some(mut f) = entities.0.get(&asset).and_then(|&e| assets.get_mut(e).ok()) {
            f.stale = true;
            f.offline = Some((reason, at_us));
        }
    }
}

/// Flags assets that went silent (checked twice a second).
pub fn mark_stale(
    mut last_check_us: Local<i64>,
    registry: Res<AssetRegistry>,
    mut assets: Query<(&BoundAsset, &mut Freshness)>,
) {
    let now = now_us();
    if now - *last_check_us < 500_000 {
        return;
    }
    *last_check_us = now;
    for (b, mut f) in &mut assets {
        let stale = f.offline.is_some()
            || f.last_sample_us
                .is_some_and(|t| now - t > silence_limit_us(&registry, b.0));
        if f.stale != stale {
            f.stale = stale;
        }
    }
}
