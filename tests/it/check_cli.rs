//! `mezzanine check` on the shipped layout and on broken ones.

use std::process::Command;

use mezzanine::demo::plant::PlantSpec;
use mezzanine::demo::write_plant;

use crate::repo;

fn check(scene: &std::path::Path, registry: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mezzanine"))
        .arg("check")
        .arg(scene)
        .arg(registry)
        .output()
        .expect("binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn shipped_layout_is_clean() {
    let (code, out) = check(
        &repo("scenes/demo-plant.glb"),
        &repo("scenes/demo-plant.toml"),
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("bound assets: 14 (13 by extras, 1 by node name)"),
        "{out}"
    );
    assert!(out.contains("result: clean"), "{out}");
}

#[test]
fn missing_and_extra_nodes_are_both_reported_with_exit_code_1() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The registry of the full plant, a layout without one mill and with a stray pallet.
    let full = PlantSpec::demo();
    let (_, registry) = write_plant(&full, dir.path(), "full").expect("write");
    let mut broken = full.clone();
    broken.machines.retain(|m| m.id != "L1-MILL-03");
    broken.stray_nodes.push("Pallet.Stray".into());
    let (scene, _) = write_plant(&broken, dir.path(), "broken").expect("write");

    let (code, out) = check(&scene, &registry);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("MISSING L1-MILL-03"), "{out}");
    assert!(out.contains("EXTRA   node `Pallet.Stray`"), "{out}");
    assert!(out.contains("assets without geometry: 1"), "{out}");
    assert!(out.contains("geometry without an asset: 1"), "{out}");
}

#[test]
fn duplicated_and_unknown_asset_ids_are_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let full = PlantSpec::demo();
    let (_, registry) = write_plant(&full, dir.path(), "full").expect("write");
    let mut dup = full.clone();
    // A second copy of lathe 2, and a machine the registry does not know.
    let mut copy = dup
        .machines
        .iter()
        .find(|m| m.id == "L2-LATHE-02")
        .expect("lathe")
        .clone();
    copy.x_m += 40.0;
    dup.machines.push(copy);
    let mut ghost = dup.machines[0].clone();
    ghost.id = "L9-MILL-99".into();
    dup.machines.push(ghost);
    let (scene, _) = write_plant(&dup, dir.path(), "dup").expect("write");

    let (code, out) = check(&scene, &registry);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("DUP     L2-LATHE-02"), "{out}");
    assert!(
        out.contains("`L9-MILL-99`, which the registry does not list"),
        "{out}"
    );
}

#[test]
fn unreadable_inputs_fail_with_the_file_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("not-a-layout.glb");
    std::fs::write(&bad, b"this is not glTF").expect("write");
    let (code, out) = check(&bad, &repo("scenes/demo-plant.toml"));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("not-a-layout.glb is not a valid glTF/GLB file"),
        "{out}"
    );

    let reg = dir.path().join("bad.toml");
    std::fs::write(&reg, "version = 1\n[plant]\nname = \"x\"\n").expect("write");
    let (code, out) = check(&repo("scenes/demo-plant.glb"), &reg);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("bad.toml:"), "{out}");
    assert!(out.contains("time_zone"), "{out}");
}

/// A layout as Blender exports it: a number custom property becomes a JSON
/// number in the node's extras. A whole number binds as its decimal text;
/// a wrong type is named as such, not called missing.
#[test]
fn numeric_asset_ids_bind_and_wrong_types_are_named() {
    use mezzanine::demo::glb::{GlbBuilder, NodeSpec, Paint, Shape};
    use serde_json::json;
    let dir = tempfile::tempdir().expect("temp dir");
    let part = |name: &str, x: f32, extras: serde_json::Value| {
        NodeSpec::part(
            name,
            Shape::Cube,
            Paint::matte([0.5, 0.5, 0.5]),
            [x, 0.5, 0.0],
            [1.0; 3],
        )
        .extras(extras)
    };
    let mut b = GlbBuilder::default();
    let roots = [
        b.add(&part("Cube.001", 0.0, json!({"asset_id": 1001}))),
        b.add(&part("Cube.002", 2.0, json!({"asset_id": 1002.5}))),
        b.add(&part("Cube.003", 4.0, json!({"asset_id": true}))),
    ];
    let scene = dir.path().join("blender.glb");
    std::fs::write(&scene, b.finish(&roots, "Khronos glTF Blender I/O")).expect("glb");
    let registry = dir.path().join("plant.toml");
    let asset = |id: &str| {
        format!(
            "[[asset]]\nid = \"{id}\"\nname = \"Press {id}\"\nclass = \"press\"\n\
             iso23247 = \"equipment\"\nisa95 = \"Acme/Lyon/Press/Line1/P{id}\"\ngltf_node = \"Press{id}\"\n\n"
        )
    };
    std::fs::write(
        &registry,
        format!(
            "version = 1\n\n[plant]\nname = \"Blender\"\ntime_zone = \"Europe/Paris\"\n\n{}{}",
            asset("1001"),
            asset("1002")
        ),
    )
    .expect("registry");
    let (code, out) = check(&scene, &registry);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("bound assets: 1 (1 by extras"), "{out}");
    assert!(
        out.contains("extras asset_id is a fractional number (1002.5); use text or a whole number"),
        "{out}"
    );
    assert!(
        out.contains("extras asset_id is true/false (true)"),
        "{out}"
    );
    assert!(!out.contains("no asset_id in extras"), "{out}");
}
