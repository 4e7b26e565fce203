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

use serde_json::json;

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
        expected_period_ms: Some(period_ms),
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
                prop(m, "vibration_spectrum", "mm/s", None, 10_000),
                prop(m, "power", "kW", Some("Power"), 1_000),
                prop(m, "part_count", "count", Some("Counters.Parts"), 60_000),
                prop(m, "scrap_count", "count", Some("Counters.Scrap"), 60_000),
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
        }
        WashStation => {
            props.extend([
                prop(m, "water_temp", "degC", Some("Tank.Temperature"), 5_000),
                prop(m, "spray_pressure", "bar", Some("Pump.Pressure"), 1_000),
                prop(m, "power", "kW", None, 1_000),
                prop(m, "part_count", "count", Some("Counters.Parts"), 60_000),
            ]);
            nominal.insert("ideal_cycle_time".into(), q(90.0, "s"));
            nominal.insert("water_temp_limit".into(), q(70.0, "degC"));
        }
        Cmm => {
            props.extend([
                prop(m, "probe_temp", "degC", Some("Probe.Temperature"), 5_000),
                prop(m, "part_count", "count", Some("Counters.Parts"), 60_000),
                prop(m, "scrap_count", "count", Some("Counters.Rejects"), 60_000),
            ]);
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

// ---- geometry ------------------------------------------------------------

const FLOOR: Paint = Paint::matte([0.62, 0.64, 0.66]);
const AISLE_YELLOW: Paint = Paint::matte([0.95, 0.78, 0.10]);
const WALKWAY: Paint = Paint::matte([0.70, 0.72, 0.74]);
const WALL: Paint = Paint::matte([0.80, 0.80, 0.76]);
const MACHINE_WHITE: Paint = Paint::matte([0.86, 0.87, 0.88]);
const MILL_BLUE: Paint = Paint::matte([0.16, 0.40, 0.72]);
const LATHE_TEAL: Paint = Paint::matte([0.12, 0.58, 0.54]);
const WINDOW: Paint = Paint::metal([0.18, 0.24, 0.30]);
const PANEL_DARK: Paint = Paint::matte([0.16, 0.17, 0.19]);
const ROBOT_ORANGE: Paint = Paint::matte([0.96, 0.50, 0.10]);
const STEEL: Paint = Paint::metal([0.66, 0.68, 0.70]);
const BELT: Paint = Paint::matte([0.12, 0.12, 0.12]);
const GRANITE: Paint = Paint::matte([0.24, 0.24, 0.27]);
const WASH_STEEL: Paint = Paint::metal([0.72, 0.78, 0.82]);
const RACK_BLUE: Paint = Paint::matte([0.12, 0.30, 0.58]);
const RACK_ORANGE: Paint = Paint::matte([0.90, 0.45, 0.12]);
const BIN_GREY: Paint = Paint::matte([0.45, 0.48, 0.52]);

fn box_part(name: String, paint: Paint, center: [f32; 3], size: [f32; 3]) -> NodeSpec {
    NodeSpec::part(name, Shape::Cube, paint, center, size)
}

fn cyl_part(name: String, paint: Paint, center: [f32; 3], size: [f32; 3]) -> NodeSpec {
    NodeSpec::part(name, Shape::Cylinder, paint, center, size)
}

fn hall() -> NodeSpec {
    let s = |n: &str| n.to_string();
    let structure = json!({ "role": "structure" });
    let mut hall = NodeSpec::group("Hall").extras(structure.clone());
    hall = hall.child(box_part(
        s("Floor"),
        FLOOR,
        [0.0, -0.05, 0.0],
        [64.0, 0.1, 40.0],
    ));
    // Main aisle between the lines and the cross aisle to finishing: yellow edge lines.
    for (name, z) in [("Aisle.Main.N", -4.6), ("Aisle.Main.S", 2.6)] {
        hall = hall.child(box_part(
            s(name),
            AISLE_YELLOW,
            [-5.0, 0.005, z],
            [50.0, 0.01, 0.12],
        ));
    }
    for (name, x) in [("Aisle.Cross.W", 11.0), ("Aisle.Cross.E", 13.6)] {
        hall = hall.child(box_part(
            s(name),
            AISLE_YELLOW,
            [x, 0.005, 0.0],
            [0.12, 0.01, 36.0],
        ));
    }
    hall = hall.child(box_part(
        s("Walkway.Main"),
        WALKWAY,
        [-5.0, 0.004, -1.0],
        [50.0, 0.008, 7.0],
    ));
    // Low walls around the hall so the extent reads at a glance.
    hall = hall.child(box_part(
        s("Wall.North"),
        WALL,
        [0.0, 1.0, -20.1],
        [64.4, 2.0, 0.2],
    ));
    hall = hall.child(box_part(
        s("Wall.West"),
        WALL,
        [-32.1, 1.0, 0.0],
        [0.2, 2.0, 40.4],
    ));
    hall.extras(structure)
}

fn machine_node(m: &MachineSpec) -> NodeSpec {
    let id = &m.id;
    let p = |part: &str| format!("{id}.{part}");
    let mut node = NodeSpec::group(id.clone()).at([m.x_m, 0.0, m.z_m], m.yaw_deg);
    if m.tag_extras {
        node = node.extras(json!({ "asset_id": id, "class": m.class.code() }));
    }
    let parts: Vec<NodeSpec> = match m.class {
        MachineClass::CncMill => vec![
            box_part(p("Base"), PANEL_DARK, [0.0, 0.15, 0.0], [3.2, 0.3, 2.6]),
            box_part(
                p("Enclosure"),
                MACHINE_WHITE,
                [0.0, 1.4, 0.0],
                [3.0, 2.2, 2.4],
            ),
            box_part(p("Door"), MILL_BLUE, [-0.3, 1.3, 1.22], [1.8, 1.6, 0.05]),
            box_part(p("Window"), WINDOW, [-0.3, 1.5, 1.25], [1.2, 0.8, 0.03]),
            box_part(p("Roof"), MILL_BLUE, [0.0, 2.55, 0.0], [3.0, 0.1, 2.4]),
            box_part(
                p("Control"),
                PANEL_DARK,
                [1.35, 1.4, 1.35],
                [0.55, 0.8, 0.3],
            ),
            box_part(p("ChipConveyor"), STEEL, [-1.9, 0.6, -0.4], [0.8, 1.0, 1.2]),
        ],
        MachineClass::CncLathe => vec![
            box_part(p("Base"), PANEL_DARK, [0.0, 0.2, 0.0], [3.6, 0.4, 1.8]),
            box_part(
                p("Enclosure"),
                MACHINE_WHITE,
                [0.0, 1.2, 0.0],
                [3.4, 1.6, 1.7],
            ),
            box_part(p("Door"), LATHE_TEAL, [0.2, 1.25, 0.87], [2.0, 1.2, 0.05]),
            box_part(p("Window"), WINDOW, [0.2, 1.4, 0.9], [1.4, 0.6, 0.03]),
            box_part(
                p("Headstock"),
                LATHE_TEAL,
                [-1.4, 2.15, 0.0],
                [0.6, 0.3, 1.7],
            ),
            box_part(p("Control"), PANEL_DARK, [1.5, 1.5, 0.95], [0.5, 0.7, 0.25]),
            cyl_part(p("BarFeeder"), STEEL, [-3.4, 1.0, 0.0], [0.45, 3.0, 0.45]).roll(90.0),
            box_part(
                p("BarFeederStand"),
                PANEL_DARK,
                [-3.4, 0.4, 0.0],
                [2.6, 0.8, 0.5],
            ),
        ],
        MachineClass::Robot => vec![
            cyl_part(p("Pedestal"), PANEL_DARK, [0.0, 0.35, 0.0], [0.9, 0.7, 0.9]),
            cyl_part(p("Base"), ROBOT_ORANGE, [0.0, 0.85, 0.0], [0.7, 0.3, 0.7]),
            box_part(
                p("LowerArm"),
                ROBOT_ORANGE,
                [0.25, 1.5, 0.0],
                [0.28, 1.3, 0.32],
            )
            .roll(-20.0),
            box_part(
                p("UpperArm"),
                ROBOT_ORANGE,
                [0.85, 2.1, 0.0],
                [1.2, 0.24, 0.26],
            )
            .roll(-10.0),
            cyl_part(p("Wrist"), PANEL_DARK, [1.45, 1.95, 0.0], [0.18, 0.3, 0.18]),
            box_part(p("Gripper"), STEEL, [1.45, 1.7, 0.0], [0.3, 0.2, 0.12]),
            // Safety fence posts around the cell.
            box_part(
                p("Fence.A"),
                AISLE_YELLOW,
                [-1.6, 0.9, -1.6],
                [0.06, 1.8, 0.06],
            ),
            box_part(
                p("Fence.B"),
                AISLE_YELLOW,
                [1.6, 0.9, -1.6],
                [0.06, 1.8, 0.06],
            ),
            box_part(
                p("Fence.Rail"),
                AISLE_YELLOW,
                [0.0, 1.7, -1.6],
                [3.2, 0.05, 0.05],
            ),
        ],
        MachineClass::Conveyor => {
            let l = m.length_m;
            let mut v = vec![
                box_part(p("Frame"), STEEL, [0.0, 0.78, 0.0], [l, 0.14, 0.9]),
                box_part(p("Belt"), BELT, [0.0, 0.87, 0.0], [l - 0.1, 0.04, 0.76]),
                box_part(p("Rail.N"), STEEL, [0.0, 0.96, -0.45], [l, 0.12, 0.04]),
                box_part(p("Rail.S"), STEEL, [0.0, 0.96, 0.45], [l, 0.12, 0.04]),
                box_part(
                    p("Drive"),
                    MILL_BLUE,
                    [l * 0.5 - 0.3, 0.6, 0.6],
                    [0.4, 0.35, 0.35],
                ),
            ];
            let legs = (l / 2.5).ceil() as i32;
            for i in 0..=legs {
                let x = -l * 0.5 + 0.1 + (l - 0.2) * i as f32 / legs as f32;
                v.push(box_part(
                    p(&format!("Leg{i:02}")),
                    PANEL_DARK,
                    [x, 0.36, 0.0],
                    [0.08, 0.72, 0.8],
                ));
            }
            v
        }
        MachineClass::WashStation => vec![
            box_part(p("Cabinet"), WASH_STEEL, [0.0, 1.1, 0.0], [3.0, 2.2, 2.2]),
            box_part(p("Hood"), STEEL, [0.0, 2.35, 0.0], [2.4, 0.3, 1.6]),
            cyl_part(p("Exhaust"), WASH_STEEL, [0.7, 3.0, -0.3], [0.4, 1.0, 0.4]),
            box_part(
                p("LoadPort"),
                PANEL_DARK,
                [0.0, 1.0, 1.12],
                [1.2, 0.8, 0.05],
            ),
            cyl_part(p("Tank"), STEEL, [-1.9, 0.6, 0.0], [1.0, 1.2, 1.0]),
            box_part(p("Control"), PANEL_DARK, [1.2, 1.5, 1.14], [0.45, 0.6, 0.1]),
        ],
        MachineClass::Cmm => vec![
            box_part(p("Room"), WINDOW, [0.0, 0.01, 0.0], [4.2, 0.02, 4.2]),
            box_part(p("Table"), GRANITE, [0.0, 0.45, 0.0], [2.0, 0.9, 1.6]),
            box_part(p("Leg.L"), STEEL, [-0.85, 1.45, 0.0], [0.18, 1.1, 0.3]),
            box_part(p("Leg.R"), STEEL, [0.85, 1.45, 0.0], [0.18, 1.1, 0.3]),
            box_part(p("Bridge"), STEEL, [0.0, 2.05, 0.0], [1.95, 0.2, 0.34]),
            box_part(p("Ram"), PANEL_DARK, [0.2, 1.6, 0.0], [0.16, 0.9, 0.16]),
            cyl_part(
                p("Probe"),
                MACHINE_WHITE,
                [0.2, 1.08, 0.0],
                [0.05, 0.15, 0.05],
            ),
            box_part(
                p("Workstation"),
                PANEL_DARK,
                [1.6, 0.55, 1.4],
                [0.8, 1.1, 0.6],
            ),
        ],
        MachineClass::BufferStore => {
            let mut v = Vec::new();
            for bay in 0..4 {
                let x = -4.5 + 3.0 * bay as f32;
                for side in [-0.5f32, 0.5] {
                    v.push(box_part(
                        p(&format!(
                            "Upright{bay}{}",
                            if side < 0.0 { "F" } else { "B" }
                        )),
                        RACK_BLUE,
                        [x, 2.0, side],
                        [0.1, 4.0, 0.1],
                    ));
                }
                for level in 0..4 {
                    let y = 0.2 + 1.2 * level as f32;
                    if bay < 3 {
                        v.push(box_part(
                            p(&format!("Beam{bay}{level}")),
                            RACK_ORANGE,
                            [x + 1.5, y, 0.0],
                            [3.0, 0.1, 1.1],
                        ));
                        if (bay + level) % 3 != 2 {
                            v.push(box_part(
                                p(&format!("Bin{bay}{level}")),
                                BIN_GREY,
                                [x + 1.5, y + 0.4, 0.0],
                                [2.4, 0.7, 0.9],
                            ));
                        }
                    }
                }
            }
            v
        }
    };
    for part in parts {
        node = node.child(part);
    }
    node
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
        let report = layout.bind(&Binder::new(crate::registry::asset_refs(&parsed)));
        assert!(report.is_clean(), "{}", report.to_text());
        assert_eq!(report.bound.len(), spec.machines.len());
    }
}
