//! Parts with a history: the PLC simulator's serial numbers, the route each
//! part takes (machining → wash → CMM), the features the CMM measures, and
//! the physical causes that spoil them.
//!
//! In: the machines' cycles and states from [`super::plc::PlcSim`] each
//! step. Out: `part_serial` values (the serial in a station, as a PLC's
//! part-tracking tag), the CMM's measured features (`diameter`, `flatness`,
//! `position`) at the end of each inspection, the inspected parts for the
//! MES simulator (it dispositions them by serial), and, when asked, the
//! simulator's own record of every finished part (ground truth for tests).
//!
//! A [`Cause`] active on a machine moves one of its signals and one measured
//! feature of the parts it makes: a coolant temperature excursion (the
//! chiller fails: `coolant_temp` up, diameter oversize), spindle chatter (a
//! band near 430 Hz rises in `vibration_spectrum`, flatness out), tool wear
//! past its limit (the tool change is missed: `tool_wear` beyond 100 %,
//! diameter undersize), a fixture offset after a changeover (`probe_offset`
//! moves, position out). A part is affected when the cause was active for at
//! least half of its cutting time (a fixture offset: and when it was
//! clamped). Causes are injected on demand
//! ([`Injection`], `--demo-inject`) and happen on their own at a low rate.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

use super::plc::Rng;
use crate::registry::{AssetIdx, AssetRegistry};

/// A physical cause of bad parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cause {
    Coolant,
    Chatter,
    ToolWear,
    Fixture,
}

impl Cause {
    pub const ALL: [Cause; 4] = [
        Cause::Coolant,
        Cause::Chatter,
        Cause::ToolWear,
        Cause::Fixture,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Cause::Coolant => "coolant",
            Cause::Chatter => "chatter",
            Cause::ToolWear => "tool_wear",
            Cause::Fixture => "fixture",
        }
    }

    /// The machine signal the cause moves.
    pub fn signal(self) -> &'static str {
        match self {
            Cause::Coolant => "coolant_temp",
            Cause::Chatter => "vibration_spectrum",
            Cause::ToolWear => "tool_wear",
            Cause::Fixture => "probe_offset",
        }
    }

    /// What it is, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Cause::Coolant => "coolant temperature excursion (chiller fault)",
            Cause::Chatter => "spindle chatter (band near 430 Hz)",
            Cause::ToolWear => "tool wear past its limit (tool change missed)",
            Cause::Fixture => "fixture offset after a changeover",
        }
    }
}

impl FromStr for Cause {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Cause::ALL
            .into_iter()
            .find(|c| c.code() == s)
            .ok_or_else(|| {
                format!(
                    "unknown cause `{s}` (one of {})",
                    Cause::ALL.map(|c| c.code()).join(", ")
                )
            })
    }
}

/// A cause to start on a machine: `<cause>@<machine>@+<offset>[/<duration>]`,
/// e.g. `chatter@L1-MILL-02@+10m/3m` (wall time since the demo started;
/// durations in `s`, `m` or `h`; 3 minutes unless given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injection {
    pub cause: Cause,
    pub asset_id: String,
    pub at_ms: u64,
    pub duration_ms: u64,
}

fn duration_ms(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1_000.0),
        Some((i, 'm')) => (&s[..i], 60_000.0),
        Some((i, 'h')) => (&s[..i], 3_600_000.0),
        _ => return Err(format!("`{s}` is not a duration (e.g. 90s, 5m, 1h)")),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 90s, 5m, 1h)"))?;
    if !(v.is_finite() && v >= 0.0 && v * mult < 1e12) {
        return Err(format!("`{s}` is out of range"));
    }
    Ok((v * mult) as u64)
}

impl FromStr for Injection {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('@').collect();
        let [cause, asset, when] = parts[..] else {
            return Err(format!(
                "`{s}`: expected <cause>@<machine>@+<offset>[/<duration>], e.g. chatter@L1-MILL-02@+10m/3m"
            ));
        };
        let cause: Cause = cause.parse()?;
        if asset.is_empty() {
            return Err(format!("`{s}`: no machine"));
        }
        let when = when.strip_prefix('+').unwrap_or(when);
        let (at, dur) = match when.split_once('/') {
            Some((a, d)) => (a, Some(d)),
            None => (when, None),
        };
        Ok(Injection {
            cause,
            asset_id: asset.to_string(),
            at_ms: duration_ms(at).map_err(|e| format!("`{s}`: {e}"))?,
            duration_ms: match dur {
                Some(d) => duration_ms(d).map_err(|e| format!("`{s}`: {e}"))?,
                None => 180_000,
            },
        })
    }
}

impl fmt::Display for Injection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{}@+{}s/{}s",
            self.cause.code(),
            self.asset_id,
            self.at_ms / 1000,
            self.duration_ms / 1000
        )
    }
}

/// One measured feature's design: nominal and symmetric tolerance, or an
/// upper limit only (form and position tolerances).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeatureSpec {
    pub name: &'static str,
    pub nominal_mm: f64,
    pub tolerance_mm: f64,
    pub upper_only: bool,
}

/// The features the demo's CMM measures on every part.
pub const FEATURES: [FeatureSpec; 3] = [
    FeatureSpec {
        name: "diameter",
        nominal_mm: 25.0,
        tolerance_mm: 0.010,
        upper_only: false,
    },
    FeatureSpec {
        name: "flatness",
        nominal_mm: 0.0,
        tolerance_mm: 0.020,
        upper_only: true,
    },
    FeatureSpec {
        name: "position",
        nominal_mm: 0.0,
        tolerance_mm: 0.030,
        upper_only: true,
    },
];

impl FeatureSpec {
    /// How far outside tolerance `v` is (0 inside), in mm.
    pub fn excess_mm(&self, v: f64) -> f64 {
        let d = v - self.nominal_mm;
        if self.upper_only {
            (d - self.tolerance_mm).max(0.0)
        } else {
            (d.abs() - self.tolerance_mm).max(0.0)
        }
    }
}

/// One operation of a part: a station, from when the part entered it to
/// when it left (source time, µs).
#[derive(Debug, Clone, PartialEq)]
pub struct PartOp {
    pub asset: AssetIdx,
    pub start_us: i64,
    pub end_us: i64,
}

/// A finished part as the simulator made it.
#[derive(Debug, Clone, PartialEq)]
pub struct PartRecord {
    pub serial: String,
    pub ops: Vec<PartOp>,
    /// In [`FEATURES`] order, mm.
    pub features_mm: [f64; 3],
    pub failed: bool,
    /// The cause that spoiled it, if one did.
    pub cause: Option<Cause>,
}

/// A part the CMM has measured, for the MES to disposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspected {
    pub serial: String,
    /// The machine that cut it, and when it left that machine.
    pub machined_on: String,
    pub machined_end_us: i64,
    pub inspected_us: i64,
    pub failed: bool,
    /// Out of tolerance by more than the tolerance itself: scrap, else rework.
    pub scrap: bool,
    /// D01 diameter, D02 flatness, D03 position.
    pub defect_codes: Vec<String>,
}

/// A value the part flow wants published: (asset, property name, value).
#[derive(Debug, Clone, PartialEq)]
pub enum PartValue {
    Serial(String),
    Feature(f64),
}

#[derive(Debug, Clone)]
struct InProcess {
    serial: String,
    ops: Vec<PartOp>,
    /// Running time on the machining station, and of it under each cause.
    running_ms: f64,
    cause_ms: [f64; 4],
    /// The cause active when the part was clamped.
    at_start: Option<Cause>,
    cause: Option<Cause>,
}

#[derive(Debug, Clone, Default)]
struct Station {
    asset: Option<AssetIdx>,
    queue: VecDeque<(u64, InProcess)>,
    current: Option<(InProcess, f64)>,
}

/// Per machining machine.
#[derive(Debug, Clone, Default)]
struct Cell {
    part: Option<InProcess>,
    /// The cause active now and until when (wall ms).
    active: Option<(Cause, u64)>,
}

/// The part flow of the whole plant.
pub struct PartFlow {
    rng: Rng,
    run_tag: String,
    next_serial: u64,
    cells: Vec<Cell>,
    products: Vec<&'static str>,
    ids: Vec<String>,
    wash: Station,
    cmm: Station,
    injections: Vec<(Injection, Option<AssetIdx>)>,
    spontaneous: bool,
    /// Plant ms per wall ms.
    time_scale: f64,
    truth: Option<Vec<PartRecord>>,
    inspected: Vec<Inspected>,
}

/// Plant time of a wash, and of an inspection, ms.
const WASH_MS: f64 = 15_000.0;
const CMM_MS: f64 = 15_000.0;
/// Plant time from a machine to the wash, ms.
const TRANSFER_MS: f64 = 60_000.0;
/// Spontaneous causes: about one per machine per this many plant hours.
const SPONTANEOUS_EVERY_H: f64 = 12.0;

impl PartFlow {
    pub fn new(registry: &AssetRegistry, seed: u64, start_us: i64, time_scale: f64) -> Self {
        let n = registry.assets().len();
        let find = |class: &str| {
            registry
                .assets()
                .iter()
                .position(|a| a.class == class)
                .map(|i| AssetIdx(i as u32))
        };
        Self {
            rng: Rng::new(seed ^ 0x5041_5254),
            run_tag: format!("{:06X}", (start_us / 1_000_000) & 0xFF_FFFF),
            next_serial: 1,
            cells: vec![Cell::default(); n],
            products: registry
                .assets()
                .iter()
                .map(|a| if a.class == "cnc_lathe" { "SHF" } else { "HSG" })
                .collect(),
            ids: registry.assets().iter().map(|a| a.id.clone()).collect(),
            wash: Station {
                asset: find("wash_station"),
                ..Station::default()
            },
            cmm: Station {
                asset: find("cmm"),
                ..Station::default()
            },
            injections: Vec::new(),
            spontaneous: true,
            time_scale,
            truth: None,
            inspected: Vec::new(),
        }
    }

    /// Causes to start on given machines; an unknown machine is an error
    /// naming it.
    pub fn inject(
        &mut self,
        registry: &AssetRegistry,
        injections: &[Injection],
    ) -> Result<(), String> {
        for inj in injections {
            let Some(i) = registry.by_id(&inj.asset_id) else {
                return Err(format!(
                    "--demo-inject {inj}: no machine `{}` in the registry",
                    inj.asset_id
                ));
            };
            let class = &registry.assets()[i.0 as usize].class;
            if class != "cnc_mill" && class != "cnc_lathe" {
                return Err(format!(
                    "--demo-inject {inj}: `{}` is a {class}; causes act on mills and lathes",
                    inj.asset_id
                ));
            }
            self.injections.push((inj.clone(), Some(i)));
        }
        Ok(())
    }

    /// Whether causes also happen on their own (on unless turned off).
    pub fn set_spontaneous(&mut self, on: bool) {
        self.spontaneous = on;
    }

    pub fn record_truth(&mut self) {
        self.truth.get_or_insert_with(Vec::new);
    }

    /// Every part finished so far (with [`Self::record_truth`]).
    pub fn truth(&self) -> &[PartRecord] {
        self.truth.as_deref().unwrap_or(&[])
    }

    /// Parts inspected since the last call.
    pub fn take_inspected(&mut self) -> Vec<Inspected> {
        std::mem::take(&mut self.inspected)
    }

    /// The cause active on a machine now.
    pub fn active(&self, asset: AssetIdx) -> Option<Cause> {
        self.cells
            .get(asset.0 as usize)
            .and_then(|c| c.active.map(|a| a.0))
    }

    /// Start injected causes that are due, draw spontaneous ones, end those
    /// that ran out. `machining` lists the mills and lathes.
    pub fn update_causes(&mut self, wall_ms: u64, dt_plant_ms: f64, machining: &[AssetIdx]) {
        for (inj, asset) in &mut self.injections {
            if let Some(a) = *asset
                && wall_ms >= inj.at_ms
            {
                self.cells[a.0 as usize].active = Some((inj.cause, inj.at_ms + inj.duration_ms));
                *asset = None;
            }
        }
        for &a in machining {
            let cell = &mut self.cells[a.0 as usize];
            if cell.active.is_some_and(|(_, until)| wall_ms >= until) {
                cell.active = None;
            }
            if self.spontaneous
                && cell.active.is_none()
                && self.rng.f64() < dt_plant_ms / (SPONTANEOUS_EVERY_H * 3_600_000.0)
            {
                let cause = Cause::ALL[(self.rng.next_u64() % 4) as usize];
                let dur_wall_ms = self.rng.range(20.0, 40.0) * 60_000.0 / self.time_scale;
                cell.active = Some((cause, wall_ms + dur_wall_ms as u64));
            }
        }
    }

    fn new_serial(&mut self, asset: AssetIdx) -> String {
        let s = format!(
            "{}-{}-{:05}",
            self.products[asset.0 as usize], self.run_tag, self.next_serial
        );
        self.next_serial += 1;
        s
    }

    /// A machining machine ran for `dt_plant_ms` (call before its cycles).
    pub fn running(&mut self, asset: AssetIdx, dt_plant_ms: f64) {
        let cell = &mut self.cells[asset.0 as usize];
        let active = cell.active.map(|a| a.0);
        if let Some(p) = cell.part.as_mut() {
            p.running_ms += dt_plant_ms;
            if let Some(c) = active {
                p.cause_ms[c as usize] += dt_plant_ms;
            }
        }
    }

    /// A machining machine finished a cycle at `ts_us`: its part leaves for
    /// the wash and the next one is loaded. Returns the new serial to
    /// publish.
    pub fn cycle_done(&mut self, asset: AssetIdx, ts_us: i64, wall_ms: u64) -> PartValue {
        if let Some(mut p) = self.cells[asset.0 as usize].part.take() {
            if let Some(op) = p.ops.last_mut() {
                op.end_us = ts_us;
            }
            // A fixture offset spoils parts clamped under it; the others,
            // parts cut under them for at least half their cutting time.
            p.cause = Cause::ALL.into_iter().find(|c| {
                p.running_ms > 0.0
                    && p.cause_ms[*c as usize] >= 0.5 * p.running_ms
                    && (*c != Cause::Fixture || p.at_start == Some(Cause::Fixture))
            });
            let ready = wall_ms + (TRANSFER_MS / self.time_scale) as u64;
            if self.wash.asset.is_some() {
                self.wash.queue.push_back((ready, p));
            } else {
                self.finish(p, ts_us, None);
            }
        }
        let serial = self.new_serial(asset);
        let at_start = self.cells[asset.0 as usize].active.map(|a| a.0);
        self.cells[asset.0 as usize].part = Some(InProcess {
            serial: serial.clone(),
            ops: vec![PartOp {
                asset,
                start_us: ts_us,
                end_us: ts_us,
            }],
            running_ms: 0.0,
            cause_ms: [0.0; 4],
            at_start,
            cause: None,
        });
        PartValue::Serial(serial)
    }

    /// Wash and CMM, each working while its own state is running. Returns
    /// what to publish: (asset, property, value).
    pub fn step_finishing(
        &mut self,
        ts_us: i64,
        wall_ms: u64,
        dt_plant_ms: f64,
        running: impl Fn(AssetIdx) -> bool,
    ) -> Vec<(AssetIdx, &'static str, PartValue)> {
        let mut out = Vec::new();
        // Wash → CMM.
        let washed = Self::step_station(
            &mut self.wash,
            ts_us,
            wall_ms,
            dt_plant_ms,
            WASH_MS,
            &running,
            &mut out,
        );
        for p in washed {
            if self.cmm.asset.is_some() {
                self.cmm.queue.push_back((wall_ms, p));
            } else {
                self.finish(p, ts_us, None);
            }
        }
        let inspected = Self::step_station(
            &mut self.cmm,
            ts_us,
            wall_ms,
            dt_plant_ms,
            CMM_MS,
            &running,
            &mut out,
        );
        for p in inspected {
            let cmm = self.cmm.asset;
            let features = self.measure(p.cause);
            if let Some(c) = cmm {
                for (f, v) in FEATURES.iter().zip(features) {
                    out.push((c, f.name, PartValue::Feature(v)));
                }
            }
            self.finish(p, ts_us, Some(features));
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn step_station(
        st: &mut Station,
        ts_us: i64,
        wall_ms: u64,
        dt_plant_ms: f64,
        op_ms: f64,
        running: &impl Fn(AssetIdx) -> bool,
        out: &mut Vec<(AssetIdx, &'static str, PartValue)>,
    ) -> Vec<InProcess> {
        let mut done = Vec::new();
        let Some(asset) = st.asset else {
            return done;
        };
        if !running(asset) {
            return done;
        }
        let mut budget = dt_plant_ms;
        loop {
            if let Some((_, left)) = st.current.as_mut()
                && *left > budget
            {
                *left -= budget;
                break;
            }
            if let Some((mut p, left)) = st.current.take() {
                budget -= left;
                if let Some(op) = p.ops.last_mut() {
                    op.end_us = ts_us;
                }
                done.push(p);
            }
            let ready = st.queue.front().is_some_and(|(r, _)| *r <= wall_ms);
            match st.queue.pop_front() {
                Some((_, mut p)) if ready => {
                    p.ops.push(PartOp {
                        asset,
                        start_us: ts_us,
                        end_us: ts_us,
                    });
                    out.retain(|(a, prop, _)| !(*a == asset && *prop == "part_serial"));
                    out.push((asset, "part_serial", PartValue::Serial(p.serial.clone())));
                    st.current = Some((p, op_ms));
                }
                other => {
                    if let Some(waiting) = other {
                        st.queue.push_front(waiting);
                    }
                    if !done.is_empty() {
                        out.push((asset, "part_serial", PartValue::Serial(String::new())));
                    }
                    break;
                }
            }
        }
        done
    }

    fn measure(&mut self, cause: Option<Cause>) -> [f64; 3] {
        let r = &mut self.rng;
        let mut d = 25.0 + r.noise(0.0025);
        let mut flat = (0.007 + r.noise(0.0025)).abs();
        let mut pos = (0.010 + r.noise(0.004)).abs();
        match cause {
            Some(Cause::Coolant) => d += 0.018 + r.noise(0.002),
            Some(Cause::ToolWear) => d -= 0.018 + r.noise(0.002),
            Some(Cause::Chatter) => flat += 0.025 + r.noise(0.003),
            Some(Cause::Fixture) => pos += 0.045 + r.noise(0.003),
            None => {}
        }
        let round = |v: f64| (v * 1e4).round() / 1e4;
        [round(d), round(flat), round(pos)]
    }

    fn finish(&mut self, p: InProcess, ts_us: i64, features: Option<[f64; 3]>) {
        let features_mm = features.unwrap_or([f64::NAN; 3]);
        let excess: Vec<f64> = FEATURES
            .iter()
            .zip(features_mm)
            .map(|(f, v)| if v.is_nan() { 0.0 } else { f.excess_mm(v) })
            .collect();
        let failed = excess.iter().any(|e| *e > 0.0);
        if features.is_some() {
            let first = p.ops.first();
            self.inspected.push(Inspected {
                serial: p.serial.clone(),
                machined_on: first
                    .and_then(|o| self.ids.get(o.asset.0 as usize))
                    .cloned()
                    .unwrap_or_default(),
                machined_end_us: first.map_or(ts_us, |o| o.end_us),
                inspected_us: ts_us,
                failed,
                scrap: FEATURES
                    .iter()
                    .zip(&excess)
                    .any(|(f, e)| *e > f.tolerance_mm),
                defect_codes: excess
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| **e > 0.0)
                    .map(|(i, _)| format!("D0{}", i + 1))
                    .collect(),
            });
        }
        if let Some(t) = self.truth.as_mut() {
            t.push(PartRecord {
                serial: p.serial,
                ops: p.ops,
                features_mm,
                failed,
                cause: p.cause,
            });
        }
    }

    /// Parts waiting for or in the wash and the CMM.
    pub fn in_finishing(&self) -> usize {
        self.wash.queue.len()
            + self.cmm.queue.len()
            + usize::from(self.wash.current.is_some())
            + usize::from(self.cmm.current.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injections_parse_and_refuse_with_reasons() {
        let i: Injection = "chatter@L1-MILL-02@+10m/3m".parse().unwrap();
        assert_eq!(i.cause, Cause::Chatter);
        assert_eq!(i.asset_id, "L1-MILL-02");
        assert_eq!((i.at_ms, i.duration_ms), (600_000, 180_000));
        let i: Injection = "coolant@L2-LATHE-01@90s".parse().unwrap();
        assert_eq!((i.at_ms, i.duration_ms), (90_000, 180_000));
        assert!(
            "rust@L1-MILL-01@+1m"
                .parse::<Injection>()
                .unwrap_err()
                .contains("unknown cause `rust`")
        );
        assert!(
            "coolant@L1-MILL-01"
                .parse::<Injection>()
                .unwrap_err()
                .contains("expected")
        );
        assert!(
            "coolant@L1-MILL-01@+soon"
                .parse::<Injection>()
                .unwrap_err()
                .contains("not a duration")
        );
    }

    #[test]
    fn tolerance_excess() {
        let d = FEATURES[0];
        assert_eq!(d.excess_mm(25.005), 0.0);
        assert!((d.excess_mm(24.985) - 0.005).abs() < 1e-9);
        let f = FEATURES[1];
        assert!((f.excess_mm(0.03) - 0.01).abs() < 1e-9);
    }
}
