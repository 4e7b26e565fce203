//! The demo plant's geometry: a machine's description in, its glTF node
//! tree (boxes and cylinders with paints) out; plus the hall (floor,
//! aisles, walls) as structure nodes.

use serde_json::json;

use super::glb::{NodeSpec, Paint, Shape};
use super::plant::{MachineClass, MachineSpec};

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

pub(super) fn hall() -> NodeSpec {
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

pub(super) fn machine_node(m: &MachineSpec) -> NodeSpec {
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
