//! The PLC simulator: the registry and a seed in, timed [`Emission`]s out.
//!
//! Each machine runs through realistic states — running, idle (micro-stops),
//! blocked, starved, setup (tool change), down with a reason — completes
//! cycles (good and scrap parts), and wears its tool slowly, which raises
//! vibration and the scrap rate until a tool change resets it. Values follow
//! the state: spindle speed and load, temperatures with thermal lag, power,
//! vibration RMS and a vibration spectrum. Deterministic for a given seed and
//! step sequence; `time_scale` compresses plant time for the demo.

use std::sync::Arc;

use super::parts::{PartFlow, PartValue};
use crate::ingest::SampleValue;
use crate::registry::{AssetIdx, AssetRegistry, PropertyRef};
// The PLC speaks the twin's state vocabulary, so every code it sends parses.
use crate::twin::MachineState;

/// A small, fast, seedable generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }
    /// Roughly normal (sum of uniforms), mean 0, deviation `sd`.
    pub fn noise(&mut self, sd: f64) -> f64 {
        (self.f64() + self.f64() + self.f64() - 1.5) * 2.0 * sd
    }
}

/// A value the simulator wants published.
#[derive(Debug, Clone, PartialEq)]
pub struct Emission {
    pub property: PropertyRef,
    pub value: SampleValue,
    pub reason: Option<String>,
    pub ts_us: i64,
}

const DOWN_REASONS: [&str; 6] = [
    "spindle overload",
    "tool breakage",
    "coolant level low",
    "door interlock open",
    "servo drive alarm",
    "chip conveyor jam",
];

/// Properties the part flow publishes when they change, never on a period.
pub const EVENT_PROPERTIES: [&str; 4] = ["part_serial", "diameter", "flatness", "position"];

struct PropSim {
    index: u32,
    name: String,
    period_ms: u64,
    next_due_ms: u64,
}

struct MachineSim {
    asset: AssetIdx,
    class: String,
    state: MachineState,
    reason: Option<String>,
    state_left_ms: f64,
    state_changed: bool,
    wear: f64,
    cycle_left_ms: f64,
    cycle_ms: f64,
    parts: u64,
    scrap: u64,
    /// Since when (wall ms) the current state and reason hold.
    since_wall_ms: u64,
    spindle_temp_c: f64,
    fluid_temp_c: f64,
    stock: f64,
    max_rpm: f64,
    rated_kw: f64,
    capacity: f64,
    /// The fixture's work offset the spindle probe found at the last setup, mm.
    fixture_offset_mm: f64,
    props: Vec<PropSim>,
}

/// One state episode of one machine: (asset, state, reason, start wall ms,
/// end wall ms).
pub type Episode = (AssetIdx, MachineState, String, u64, u64);

/// The whole plant's PLCs.
pub struct PlcSim {
    rng: Rng,
    registry: Arc<AssetRegistry>,
    machines: Vec<MachineSim>,
    /// Plant time elapsed, ms (already scaled).
    t_ms: f64,
    /// Wall-clock step counter, ms.
    wall_ms: u64,
    /// The simulator's own accounting, when asked for (tests): every state
    /// episode that ended, as (asset, state, reason, start, end) in wall ms.
    truth: Option<Vec<Episode>>,
    start_us: i64,
    time_scale: f64,
    parts: PartFlow,
    machining: Vec<AssetIdx>,
    /// What the part flow published this step.
    part_values: Vec<(AssetIdx, &'static str, PartValue)>,
}

fn nominal(registry: &AssetRegistry, a: AssetIdx, key: &str, default: f64) -> f64 {
    registry
        .get(a)
        .and_then(|r| r.nominal.get(key))
        .map_or(default, |q| q.value)
}

impl PlcSim {
    /// `start_us` is the source time of the first step; `time_scale` is
    /// plant seconds per wall second.
    pub fn new(registry: Arc<AssetRegistry>, seed: u64, start_us: i64, time_scale: f64) -> Self {
        let mut rng = Rng::new(seed);
        let machines = registry
            .assets()
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let asset = AssetIdx(i as u32);
                let cycle_ms = nominal(&registry, asset, "ideal_cycle_time", 60.0) * 1000.0;
                let props = a
                    .properties
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.mqtt.is_some() || p.opcua.is_some() || a.sparkplug.is_some())
                    .filter(|(_, p)| !EVENT_PROPERTIES.contains(&p.name.as_str()))
                    .map(|(pi, p)| PropSim {
                        index: pi as u32,
                        name: p.name.clone(),
                        period_ms: p.expected_period_ms.unwrap_or(1_000).max(50),
                        next_due_ms: 0,
                    })
                    .collect();
                MachineSim {
                    asset,
                    class: a.class.clone(),
                    state: MachineState::Running,
                    reason: None,
                    state_left_ms: rng.range(20_000.0, 400_000.0),
                    state_changed: true,
                    wear: rng.range(0.0, 0.9),
                    cycle_left_ms: rng.range(0.0, cycle_ms),
                    cycle_ms,
                    parts: rng.range(50.0, 900.0) as u64,
                    scrap: rng.range(0.0, 12.0) as u64,
                    since_wall_ms: 0,
                    spindle_temp_c: rng.range(28.0, 40.0),
                    fluid_temp_c: rng.range(55.0, 60.0),
                    stock: rng.range(0.3, 0.8) * nominal(&registry, asset, "capacity", 480.0),
                    max_rpm: nominal(&registry, asset, "max_spindle_speed", 10_000.0),
                    rated_kw: nominal(&registry, asset, "rated_power", 5.0),
                    capacity: nominal(&registry, asset, "capacity", 480.0),
                    fixture_offset_mm: 0.0,
                    props,
                }
            })
            .collect();
        let machining = registry
            .assets()
            .iter()
            .enumerate()
            .filter(|(_, a)| a.class == "cnc_mill" || a.class == "cnc_lathe")
            .map(|(i, _)| AssetIdx(i as u32))
            .collect();
        let parts = PartFlow::new(&registry, seed, start_us, time_scale.max(0.01));
        Self {
            rng,
            registry,
            machines,
            parts,
            machining,
            part_values: Vec::new(),
            t_ms: 0.0,
            wall_ms: 0,
            truth: None,
            start_us,
            time_scale: time_scale.max(0.01),
        }
    }

    pub fn registry(&self) -> &Arc<AssetRegistry> {
        &self.registry
    }

    /// Source time of the last step, µs.
    pub fn now_us(&self) -> i64 {
        self.start_us + (self.wall_ms as i64) * 1000
    }

    /// The parts' flow: serials, causes, the simulator's record of parts.
    pub fn parts(&self) -> &PartFlow {
        &self.parts
    }

    pub fn parts_mut(&mut self) -> &mut PartFlow {
        &mut self.parts
    }

    /// Each machine's part and scrap counters (what an MES reads from it).
    /// Keep the simulator's own accounting from now on: every state
    /// episode (for ground-truth tests; it grows without bound).
    pub fn record_truth(&mut self) {
        self.truth.get_or_insert_with(Vec::new);
    }

    /// The episodes that ended, and the ones under way up to now.
    pub fn episodes(&self) -> Vec<Episode> {
        let mut v = self.truth.clone().unwrap_or_default();
        for m in &self.machines {
            v.push((
                m.asset,
                m.state,
                m.reason.clone().unwrap_or_default(),
                m.since_wall_ms,
                self.wall_ms,
            ));
        }
        v
    }

    pub fn counters(&self) -> impl Iterator<Item = (AssetIdx, u64, u64)> + '_ {
        self.machines.iter().map(|m| (m.asset, m.parts, m.scrap))
    }

    /// Advance by `dt_wall_ms` of wall time; returns what is due.
    pub fn step(&mut self, dt_wall_ms: u64) -> Vec<Emission> {
        self.wall_ms += dt_wall_ms;
        let dt = dt_wall_ms as f64 * self.time_scale;
        self.t_ms += dt;
        let ts_us = self.start_us + (self.wall_ms as i64) * 1000;
        self.parts
            .update_causes(self.wall_ms, dt, &self.machining.clone());
        let mut out = Vec::new();
        for mi in 0..self.machines.len() {
            self.advance(mi, dt, ts_us);
            self.emit(mi, ts_us, &mut out);
        }
        let states: Vec<bool> = self
            .machines
            .iter()
            .map(|m| m.state == MachineState::Running)
            .collect();
        let finishing = self
            .parts
            .step_finishing(ts_us, self.wall_ms, dt, |a| states[a.0 as usize]);
        self.part_values.extend(finishing);
        for (asset, name, v) in std::mem::take(&mut self.part_values) {
            let Some(property) = self.registry.property_by_name(asset, name) else {
                continue;
            };
            out.push(Emission {
                property,
                value: match v {
                    PartValue::Serial(s) => SampleValue::Text(s),
                    PartValue::Feature(x) => SampleValue::Number(x),
                },
                reason: None,
                ts_us,
            });
        }
        out
    }

    fn advance(&mut self, mi: usize, dt: f64, ts_us: i64) {
        let now_ms = self.wall_ms;
        let parts = &mut self.parts;
        let part_values = &mut self.part_values;
        let truth = &mut self.truth;
        let rng = &mut self.rng;
        let m = &mut self.machines[mi];
        let machining = m.class == "cnc_mill" || m.class == "cnc_lathe";
        m.state_left_ms -= dt;
        if m.state_left_ms <= 0.0 {
            let (next, reason, dur_s) = if m.state != MachineState::Running {
                (MachineState::Running, None, rng.range(60.0, 900.0))
            } else if machining && m.wear >= 1.0 {
                (
                    MachineState::Setup,
                    Some("tool change".to_string()),
                    rng.range(120.0, 360.0),
                )
            } else {
                let p_down = 0.08 + 0.25 * m.wear.min(1.0);
                let r = rng.f64();
                if r < p_down {
                    let reason =
                        DOWN_REASONS[(rng.next_u64() % DOWN_REASONS.len() as u64) as usize];
                    (
                        MachineState::Down,
                        Some(reason.to_string()),
                        rng.range(180.0, 1200.0),
                    )
                } else if r < p_down + 0.40 {
                    (
                        MachineState::Idle,
                        Some("micro-stop".to_string()),
                        rng.range(10.0, 90.0),
                    )
                } else if r < p_down + 0.55 {
                    (
                        MachineState::Blocked,
                        Some("downstream full".to_string()),
                        rng.range(30.0, 240.0),
                    )
                } else if r < p_down + 0.72 {
                    (
                        MachineState::Starved,
                        Some("no material".to_string()),
                        rng.range(30.0, 240.0),
                    )
                } else {
                    (MachineState::Running, None, rng.range(60.0, 900.0))
                }
            };
            if next == MachineState::Running && m.state == MachineState::Setup {
                m.wear = 0.0;
                m.fixture_offset_mm = rng.noise(0.0003);
            }
            if next != m.state || reason != m.reason {
                m.state_changed = true;
                if let Some(t) = truth.as_mut() {
                    t.push((
                        m.asset,
                        m.state,
                        m.reason.clone().unwrap_or_default(),
                        m.since_wall_ms,
                        now_ms,
                    ));
                }
                m.since_wall_ms = now_ms;
            }
            m.state = next;
            m.reason = reason;
            m.state_left_ms = dur_s * 1000.0;
        }
        let running = m.state == MachineState::Running;
        if running {
            if machining {
                parts.running(m.asset, dt);
            }
            m.cycle_left_ms -= dt;
            while m.cycle_left_ms <= 0.0 {
                if machining {
                    let serial = parts.cycle_done(m.asset, ts_us, now_ms);
                    part_values.push((m.asset, "part_serial", serial));
                }
                m.cycle_left_ms += m.cycle_ms * rng.range(1.0, 1.15);
                m.parts += 1;
                let p_scrap = 0.01 + 0.12 * m.wear * m.wear;
                if rng.f64() < p_scrap {
                    m.scrap += 1;
                }
                if machining {
                    m.wear += rng.range(0.004, 0.007);
                }
                if m.class == "buffer_store" {
                    m.stock = (m.stock - 1.0).max(0.0);
                }
            }
        }
        if m.class == "buffer_store" {
            // Deliveries arrive in batches.
            if rng.f64() < dt / 600_000.0 {
                m.stock = (m.stock + rng.range(20.0, 60.0)).min(m.capacity);
            }
        }
        // First-order thermal response, time constant 5 min of plant time.
        let k = 1.0 - (-dt / 300_000.0).exp();
        let spindle_target = if running { 38.0 + 12.0 * m.wear } else { 24.0 };
        m.spindle_temp_c += (spindle_target - m.spindle_temp_c) * k;
        let fluid_target = if running { 60.0 } else { 52.0 };
        m.fluid_temp_c += (fluid_target - m.fluid_temp_c) * k;
    }

    fn value(&mut self, mi: usize, name: &str) -> Option<(SampleValue, Option<String>)> {
        let rng = &mut self.rng;
        let m = &self.machines[mi];
        let running = m.state == MachineState::Running;
        let cause = self.parts.active(m.asset);
        let chatter = running && cause == Some(super::parts::Cause::Chatter);
        let n = |v: f64| Some((SampleValue::Number(v), None));
        match name {
            "state" => Some((SampleValue::Text(m.state.label().into()), m.reason.clone())),
            "spindle_speed" => n(if running {
                (m.max_rpm * 0.6 + rng.noise(m.max_rpm * 0.01)).round()
            } else {
                0.0
            }),
            "spindle_load" => n(if running {
                (45.0 + 20.0 * m.wear + rng.noise(4.0)).clamp(0.0, 100.0)
            } else {
                0.0
            }),
            "spindle_temp" => n(m.spindle_temp_c + rng.noise(0.1)),
            "vibration_rms" => n(if running {
                0.8 + 3.0 * m.wear * m.wear + rng.noise(0.08) + if chatter { 0.15 } else { 0.0 }
            } else {
                0.05 + rng.noise(0.01)
            }
            .max(0.0)),
            "power" => n(match m.state {
                MachineState::Running => m.rated_kw * (0.55 + 0.25 * m.wear) + rng.noise(0.2),
                MachineState::Down => 0.02 * m.rated_kw,
                _ => 0.12 * m.rated_kw + rng.noise(0.05),
            }
            .max(0.0)),
            "part_count" | "cycle_count" => n(m.parts as f64),
            "scrap_count" => n(m.scrap as f64),
            "axis1_temp" => n(m.spindle_temp_c * 0.9 + rng.noise(0.1)),
            "belt_speed" => n(if running { 12.0 + rng.noise(0.1) } else { 0.0 }),
            "water_temp" => n(m.fluid_temp_c + rng.noise(0.1)),
            "spray_pressure" => n(if running { 4.0 + rng.noise(0.05) } else { 0.0 }),
            "probe_temp" => n(20.0 + rng.noise(0.05)),
            // The chiller holds the coolant at 20 °C until it fails.
            "coolant_temp" => n(20.0
                + rng.noise(0.15)
                + if cause == Some(super::parts::Cause::Coolant) {
                    6.0
                } else {
                    0.0
                }),
            // Tool life used, from the tool management system.
            "tool_wear" => n(if cause == Some(super::parts::Cause::ToolWear) {
                185.0 + rng.noise(3.0)
            } else {
                (m.wear * 100.0).round()
            }),
            "probe_offset" => n(m.fixture_offset_mm
                + rng.noise(0.0004)
                + if cause == Some(super::parts::Cause::Fixture) {
                    0.045
                } else {
                    0.0
                }),
            "stored_parts" => n(m.stock.round()),
            "fill_level" => n((m.stock / m.capacity.max(1.0) * 100.0).clamp(0.0, 100.0)),
            "vibration_spectrum" => {
                let wear = m.wear;
                let rpm = if running { m.max_rpm * 0.6 } else { 0.0 };
                let bin_hz = 10.0f32;
                let f0 = rpm / 60.0;
                let bins: Arc<[f32]> = (0..64)
                    .map(|b| {
                        let f = f64::from(b as u16) * f64::from(bin_hz);
                        let peak = |fc: f64, amp: f64| amp * (-((f - fc) / 6.0).powi(2)).exp();
                        let mut v = 0.02 + rng.f64() * 0.02;
                        if running {
                            v += peak(f0, 1.0)
                                + peak(2.0 * f0, 0.35)
                                + peak(4.7 * f0 / 2.0, 0.05 + 1.5 * wear);
                        }
                        if chatter {
                            v += peak(430.0, 0.9);
                        }
                        v as f32
                    })
                    .collect();
                Some((SampleValue::Spectrum { bin_hz, bins }, None))
            }
            _ => None,
        }
    }

    fn emit(&mut self, mi: usize, ts_us: i64, out: &mut Vec<Emission>) {
        let now_ms = self.wall_ms;
        let asset = self.machines[mi].asset;
        let changed = std::mem::take(&mut self.machines[mi].state_changed);
        for pi in 0..self.machines[mi].props.len() {
            let (index, due, is_state) = {
                let p = &self.machines[mi].props[pi];
                (p.index, p.next_due_ms <= now_ms, p.name == "state")
            };
            if !(due || (is_state && changed)) {
                continue;
            }
            let name = self.machines[mi].props[pi].name.clone();
            if let Some((value, reason)) = self.value(mi, &name) {
                out.push(Emission {
                    property: PropertyRef {
                        asset,
                        property: index,
                    },
                    value,
                    reason,
                    ts_us,
                });
            }
            let p = &mut self.machines[mi].props[pi];
            p.next_due_ms = now_ms + p.period_ms;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::plant::PlantSpec;
    use std::hash::{Hash, Hasher};

    fn sim(seed: u64) -> PlcSim {
        let reg = Arc::new(AssetRegistry::new(PlantSpec::demo().registry()));
        PlcSim::new(reg, seed, 1_700_000_000_000_000, 10.0)
    }

    fn digest(s: &mut PlcSim, steps: usize) -> (u64, usize) {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let mut n = 0;
        for _ in 0..steps {
            for e in s.step(100) {
                n += 1;
                (e.property.asset.0, e.property.property, e.ts_us).hash(&mut h);
                format!("{:?}{:?}", e.value, e.reason).hash(&mut h);
            }
        }
        (h.finish(), n)
    }

    #[test]
    fn same_seed_same_plant() {
        let a = digest(&mut sim(7), 3_000);
        let b = digest(&mut sim(7), 3_000);
        let c = digest(&mut sim(8), 3_000);
        assert_eq!(a, b);
        assert_ne!(a.0, c.0);
        assert!(a.1 > 10_000, "only {} emissions in 5 minutes", a.1);
    }

    #[test]
    fn machines_change_state_and_count_parts() {
        let mut s = sim(3);
        let mut states = std::collections::HashSet::new();
        for _ in 0..36_000 {
            for e in s.step(100) {
                if let SampleValue::Text(code) = e.value {
                    states.insert(code);
                }
            }
        }
        for code in ["running", "idle", "down", "setup"] {
            assert!(states.contains(code), "never saw {code}: {states:?}");
        }
        let mills: Vec<&MachineSim> = s
            .machines
            .iter()
            .filter(|m| m.class == "cnc_mill")
            .collect();
        assert!(mills.iter().all(|m| m.parts > 50));
    }
}
