//! The demo plant's layout generator: a plant description in, the GLB layout
//! and its registry TOML out (`mezzanine generate-demo-plant`).
//!
//! Acme Precision, Lyon: two machining lines (three CNC mills and three CNC
//! lathes, each with a conveyor and a tending robot), a finishing area (wash
//! station, CMM inspection cell, outfeed conveyor) and a buffer store, on a
//! 64 m × 40 m hall floor with painted aisles. Machines carry their asset id
//! in node `extras`, as a PLM export would; the buffer store is bound by node
//! name only, so both binding paths are exercised by the shipped scene. The
//! robots publish through Sparkplug B, everything else as UNS JSON.

use std::collections::BTreeMap;

use super::geometry::{hall, machine_node};
use super::glb::{GlbBuilder, NodeSpec, Paint, Shape};
use crate::registry::{
    AssetRecord, Encoding, Isa95Path, OmeKind, PlantInfo, PropertyRecord, Quantity,
    REGISTRY_FORMAT_VERSION, Registry,
};

const ENTERPRISE: &str = "Acme Precision";
const SITE: &str = "Lyon";
const UNS_ROOT: &str = "acme/lyon";

/// One machine of the demo plant.
#[derive(Debug, Clone)]
pub struct MachineSpec {
    pub id: String,
    pub name: String,
    pub class: MachineClass,
    pub area: String,
    pub work_center: String,
    pub work_unit: String,
    /// Floor position (x, z) in metres and heading in degrees.
    pub x_m: f32,
    pub z_m: f32,
    pub yaw_deg: f32,
    /// Conveyor length in metres (conveyors only).
    pub length_m: f32,
    /// Bind through `extras` (true) or by node name only (false).
    pub tag_extras: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineClass {
    CncMill,
    CncLathe,
    Robot,
    Conveyor,
    WashStation,
    Cmm,
    BufferStore,
}

impl MachineClass {
    pub fn code(self) -> &'static str {
        match self {
            MachineClass::CncMill => "cnc_mill",
            MachineClass::CncLathe => "cnc_lathe",
            MachineClass::Robot => "robot",
            MachineClass::Conveyor => "conveyor",
            MachineClass::WashStation => "wash_station",
            MachineClass::Cmm => "cmm",
            MachineClass::BufferStore => "buffer_store",
        }
    }
}

/// The whole demo plant: machines plus the hall they stand in.
#[derive(Debug, Clone)]
pub struct PlantSpec {
    pub machines: Vec<MachineSpec>,
    /// Extra geometry with no asset (used by tests to build broken layouts).
    pub stray_nodes: Vec<String>,
}

#[allow(clippy::too_many_arguments)]
fn machine(
    id: &str,
    name: &str,
    class: MachineClass,
    area: &str,
    work_center: &str,
    work_unit: &str,
    x_m: f32,
    z_m: f32,
    yaw_deg: f32,
) -> MachineSpec {
    MachineSpec {
        id: id.into(),
        name: name.into(),
        class,
        area: area.into(),
        work_center: work_center.into(),
        work_unit: work_unit.into(),
        x_m,
        z_m,
        yaw_deg,
        length_m: 0.0,
        tag_extras: true,
    }
}

impl PlantSpec {
    /// The shipped demo plant.
    pub fn demo() -> Self {
        use MachineClass::*;
        let mut m = vec![
            machine(
                "L1-CONV-01",
                "Line 1 transfer conveyor",
                Conveyor,
                "Machining",
                "Line1",
                "Conveyor01",
                -4.0,
                -8.0,
                0.0,
            ),
            machine(
                "L1-MILL-01",
                "Line 1 CNC mill 1 (5-axis VMC)",
                CncMill,
                "Machining",
                "Line1",
                "Mill01",
                -16.0,
                -12.0,
                0.0,
            ),
            machine(
                "L1-MILL-02",
                "Line 1 CNC mill 2 (5-axis VMC)",
                CncMill,
                "Machining",
                "Line1",
                "Mill02",
                -8.0,
                -12.0,
                0.0,
            ),
            machine(
                "L1-MILL-03",
                "Line 1 CNC mill 3 (horizontal HMC)",
                CncMill,
                "Machining",
                "Line1",
                "Mill03",
                0.0,
                -12.0,
                0.0,
            ),
            machine(
                "L1-ROBOT-01",
                "Line 1 tending robot",
                Robot,
                "Machining",
                "Line1",
                "Robot01",
                6.5,
                -10.5,
                180.0,
            ),
            machine(
                "L2-CONV-01",
                "Line 2 transfer conveyor",
                Conveyor,
                "Machining",
                "Line2",
                "Conveyor01",
                -4.0,
                6.0,
                0.0,
            ),
            machine(
                "L2-LATHE-01",
                "Line 2 CNC lathe 1 (turn-mill)",
                CncLathe,
                "Machining",
                "Line2",
                "Lathe01",
                -16.0,
                10.0,
                180.0,
            ),
            machine(
                "L2-LATHE-02",
                "Line 2 CNC lathe 2",
                CncLathe,
                "Machining",
                "Line2",
                "Lathe02",
                -8.0,
                10.0,
                180.0,
            ),
            machine(
                "L2-LATHE-03",
                "Line 2 CNC lathe 3",
                CncLathe,
                "Machining",
                "Line2",
                "Lathe03",
                0.0,
                10.0,
                180.0,
            ),
            machine(
                "L2-ROBOT-01",
                "Line 2 tending robot",
                Robot,
                "Machining",
                "Line2",
                "Robot01",
                6.5,
                8.5,
                0.0,
            ),
            machine(
                "FIN-WASH-01",
                "Parts wash station",
                WashStation,
                "Finishing",
                "Cleaning",
                "Wash01",
                17.0,
                -3.0,
                0.0,
            ),
            machine(
                "FIN-CMM-01",
                "CMM inspection cell",
                Cmm,
                "Finishing",
                "Inspection",
                "CMM01",
                24.5,
                -3.0,
                0.0,
            ),
            machine(
                "FIN-CONV-01",
                "Finishing outfeed conveyor",
                Conveyor,
                "Finishing",
                "Cleaning",
                "Conveyor01",
                21.0,
                2.5,
                0.0,
            ),
            machine(
                "LOG-BUF-01",
                "Raw-part buffer store",
                BufferStore,
                "Logistics",
                "Stores",
                "Buffer01",
                -27.0,
                -1.0,
                90.0,
            ),
        ];
        for c in m.iter_mut() {
            if c.class == MachineClass::Conveyor {
                c.length_m = if c.id.starts_with("FIN") { 9.0 } else { 22.0 };
            }
        }
        if let Some(b) = m.iter_mut().find(|c| c.id == "LOG-BUF-01") {
            b.tag_extras = false;
        }
        Self {
            machines: m,
            stray_nodes: Vec::new(),
        }
    }

    /// The registry describing every machine once.
    pub fn registry(&self) -> Registry {
        Registry {
            version: REGISTRY_FORMAT_VERSION,
            plant: PlantInfo {
                name: format!("{ENTERPRISE} — {SITE} machining plant"),
                time_zone: "Europe/Paris".into(),
            },
            assets: self.machines.iter().map(asset_record).collect(),
            source: "scenes/demo-plant.toml".into(),
        }
    }

    /// The GLB layout.
    pub fn glb(&self) -> Vec<u8> {
        let mut b = GlbBuilder::default();
        let mut plant = NodeSpec::group("Plant");
        plant = plant.child(hall());
        let mut groups: BTreeMap<String, NodeSpec> = BTreeMap::new();
        for m in &self.machines {
            let g = groups
                .entry(m.work_center.clone())
                .or_insert_with(|| NodeSpec::group(m.work_center.clone()));
            g.children.push(machine_node(m));
        }
        for (_, g) in groups {
            plant = plant.child(g);
        }
        for (i, stray) in self.stray_nodes.iter().enumerate() {
            plant = plant.child(NodeSpec::part(
                stray.clone(),
                Shape::Cube,
                Paint::matte([0.8, 0.2, 0.6]),
                [-20.0 + 3.0 * i as f32, 0.5, 16.0],
                [1.0, 1.0, 1.0],
            ));
        }
        let root = b.add(&plant);
        b.finish(&[root], "mezzanine generate-demo-plant")
    }
}

fn topic(m: &MachineSpec, tag: &str) -> String {
    format!(
        "{UNS_ROOT}/{}/{}/{}/{tag}",
        m.area.to_lowercase(),
        m.work_center.to_lowercase(),
        m.work_unit.to_lowercase()
    )
}

fn prop(
    m: &MachineSpec,
    name: &str,
    unit: &str,
    opc: Option<&str>,
    period_ms: u64,
) -> PropertyRecord {
    PropertyRecord {
        name: name.into(),
        unit: unit.into(),
        encoding: if name.ends_with("_spectrum") {
            Encoding::Spectrum
        } else {
            Encoding::Json
        },
        mqtt: Some(topic(m, name)),
        opcua: opc.map(|leaf| format!("ns=2;s={}.{}.{leaf}", m.work_center, m.work_unit)),
        sparkplug_metric: None,
        expected_period_ms: Some(period_ms),
    }
}

/// A value published when it changes (part tracking, measurements): no
/// period, so never stale.
fn event_prop(m: &MachineSpec, name: &str, unit: &str) -> PropertyRecord {
    PropertyRecord {
        expected_period_ms: None,
        ..prop(m, name, unit, None, 0)
    }
}

fn q(value: f64, unit: &str) -> Quantity {
    Quantity {
        value,
        unit: unit.into(),
    }
}

fn asset_record(m: &MachineSpec) -> AssetRecord {
    use MachineClass::*;
    let mut props = vec![prop(m, "state", "1", Some("State"), 5_000)];
    let mut nominal = BTreeMap::new();
    match m.class {
        CncMill | CncLathe => {
            props.extend([
                prop(m, "spindle_speed", "rpm", Some("Spindle.Speed"), 1_000),
                prop(m, "spindle_load", "%", Some("Spindle.Load"), 1_000),
                prop(
                    m,
                    "spindle_temp",
                    "degC",
                    Some("Spindle.Temperature"),
                    5_000,
                ),
                prop(m, "vibration_rms", "mm/s", None, 1_000),
                prop(m, "vibration_spectrum", "mm/s", None, 5_000),
                prop(m, "power", "kW", Some("Power"), 1_000),
                prop(m, "part_count", "count", Some("Counters.Parts"), 60_000),
                prop(m, "scrap_count", "count", Some("Counters.Scrap"), 60_000),
                prop(m, "coolant_temp", "degC", None, 1_000),
                prop(m, "tool_wear", "%", None, 5_000),
                prop(m, "probe_offset", "mm", None, 5_000),
                event_prop(m, "part_serial", "1"),
            ]);
            let (cycle, rpm, power) = if m.class == CncMill {
                (240.0, 15_000.0, 22.0)
            } else {
                (150.0, 5_000.0, 18.5)
            };
            nominal.insert("ideal_cycle_time".into(), q(cycle, "s"));
            nominal.insert("max_spindle_speed".into(), q(rpm, "rpm"));
            nominal.insert("spindle_temp_limit".into(), q(65.0, "degC"));
            nominal.insert("vibration_limit".into(), q(4.5, "mm/s"));
            nominal.insert("rated_power".into(), q(power, "kW"));
            // Lots that may wait at the machine, and a product change.
            nominal.insert("queue_capacity".into(), q(4.0, "count"));
            nominal.insert("changeover_time".into(), q(20.0, "min"));
        }
        Robot => {
            props.extend([
                prop(m, "cycle_count", "count", Some("Counters.Cycles"), 60_000),
                prop(m, "axis1_temp", "degC", None, 5_000),
                prop(m, "power", "kW", Some("Power"), 1_000),
            ]);
            nominal.insert("ideal_cycle_time".into(), q(18.0, "s"));
            nominal.insert("payload".into(), q(35.0, "kg"));
            nominal.insert("reach".into(), q(2.0, "m"));
        }
        Conveyor => {
            props.extend([
                prop(m, "belt_speed", "m/min", Some("Belt.Speed"), 1_000),
                prop(m, "power", "kW", None, 1_000),
            ]);
            nominal.insert("max_belt_speed".into(), q(18.0, "m/min"));
            nominal.insert("length".into(), q(f64::from(m.length_m), "m"));
            // End to end at the running belt speed (12 m/min).
            nominal.insert(
                "transport_time".into(),
                q((f64::from(m.length_m) / 12.0 * 60.0).round(), "s"),
            );
        }
        WashStation => {
            props.extend([
                prop(m, "water_temp", "degC", Some("Tank.Temperature"), 5_000),
                prop(m, "spray_pressure", "bar", Some("Pump.Pressure"), 1_000),
                prop(m, "power", "kW", None, 1_000),
                prop(m, "part_count", "count", Some("Counters.Parts"), 60_000),
                event_prop(m, "part_serial", "1"),
            ]);
            nominal.insert("ideal_cycle_time".into(), q(90.0, "s"));
            nominal.insert("water_temp_limit".into(), q(70.0, "degC"));
        }
        Cmm => {
            props.extend([
                prop(m, "probe_temp", "degC", Some("Probe.Temperature"), 5_000),
                prop(m, "part_count", "count", Some("Counters.Parts"), 60_000),
                prop(m, "scrap_count", "count", Some("Counters.Rejects"), 60_000),
                event_prop(m, "part_serial", "1"),
            ]);
            // Measured on every part, with the drawing's nominal and tolerance.
            for f in super::parts::FEATURES {
                props.push(event_prop(m, f.name, "mm"));
                nominal.insert(format!("{}_nominal", f.name), q(f.nominal_mm, "mm"));
                nominal.insert(format!("{}_tolerance", f.name), q(f.tolerance_mm, "mm"));
            }
            nominal.insert("ideal_cycle_time".into(), q(300.0, "s"));
            nominal.insert("room_temp_limit".into(), q(22.0, "degC"));
        }
        BufferStore => {
            props.extend([
                prop(m, "stored_parts", "count", Some("Stock.Parts"), 10_000),
                prop(m, "fill_level", "%", None, 10_000),
            ]);
            nominal.insert("capacity".into(), q(480.0, "count"));
        }
    }
    // The robots' controllers speak Sparkplug B, as many edge gateways do:
    // one DDATA message per robot carries all its metrics.
    let sparkplug = (m.class == Robot).then(|| {
        format!(
            "acme/{}/{}",
            m.work_center.to_lowercase(),
            m.work_unit.to_lowercase()
        )
    });
    if sparkplug.is_some() {
        for p in &mut props {
            p.mqtt = None;
        }
    }
    AssetRecord {
        id: m.id.clone(),
        name: m.name.clone(),
        class: m.class.code().into(),
        sparkplug,
        iso23247: OmeKind::Equipment,
        isa95: Isa95Path {
            enterprise: ENTERPRISE.into(),
            site: SITE.into(),
            area: m.area.clone(),
            work_center: m.work_center.clone(),
            work_unit: m.work_unit.clone(),
        },
        gltf_node: m.id.clone(),
        properties: props,
        nominal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::layout::{Binder, Layout};

    #[test]
    fn demo_plant_binds_cleanly_and_has_enough_machines() {
        let spec = PlantSpec::demo();
        assert!(spec.machines.len() >= 12);
        let reg = spec.registry();
        let text = reg.to_toml();
        let parsed = crate::registry::parse_registry(&text, "demo.toml".as_ref())
            .unwrap_or_else(|e| panic!("generated registry must validate: {e}"));
        assert_eq!(parsed.assets.len(), spec.machines.len());
        let layout = Layout::from_bytes(&spec.glb(), "demo.glb".as_ref()).expect("valid glb");
        let report = layout.bind(&Binder::new(crate::scene::asset_refs(&parsed.assets)));
        assert!(report.is_clean(), "{}", report.to_text());
        assert_eq!(report.bound.len(), spec.machines.len());
    }
}
