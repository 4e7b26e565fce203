//! Compile-time checks of the shipped data: every layout in `scenes/` must
//! bind cleanly to its registry (same stem, `.toml`), and every WGSL shader
//! in `shaders/` must parse. Drift fails the build with the full report.

// Cargo reads a build script's instructions from its stdout.
#![allow(clippy::print_stdout)]

#[allow(dead_code)]
#[path = "src/registry/file.rs"]
mod registry_file;
// `registry_file` checks OPC UA node ids through its sibling `node_id`.
#[path = "src/registry/node_id.rs"]
#[allow(dead_code)]
mod node_id;

#[allow(dead_code)]
#[path = "src/scene/layout.rs"]
mod layout;

use std::path::Path;

fn main() {
    println!("cargo::rerun-if-changed=scenes");
    println!("cargo::rerun-if-changed=shaders");
    println!("cargo::rerun-if-changed=src/registry/file.rs");
    println!("cargo::rerun-if-changed=src/scene/layout.rs");

    let mut failures = Vec::new();
    check_scenes(Path::new("scenes"), &mut failures);
    check_shaders(Path::new("shaders"), &mut failures);
    if !failures.is_empty() {
        panic!(
            "\n\nshipped data check failed:\n\n{}\n",
            failures.join("\n\n")
        );
    }
}

fn sorted_files(dir: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == ext))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn check_scenes(dir: &Path, failures: &mut Vec<String>) {
    for glb in sorted_files(dir, "glb")
        .into_iter()
        .chain(sorted_files(dir, "gltf"))
    {
        let reg_path = glb.with_extension("toml");
        let registry = match registry_file::load_registry(&reg_path) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!(
                    "{}: its registry does not load: {e}",
                    glb.display()
                ));
                continue;
            }
        };
        let refs = registry
            .assets
            .iter()
            .map(|a| layout::AssetRef {
                id: a.id.clone(),
                gltf_node: a.gltf_node.clone(),
            })
            .collect();
        match layout::Layout::read(&glb) {
            Ok(l) => {
                let report = l.bind(&layout::Binder::new(refs));
                if !report.is_clean() {
                    failures.push(format!(
                        "{} and {} disagree (run `mezzanine check` for this report):\n{}",
                        glb.display(),
                        reg_path.display(),
                        report.to_text()
                    ));
                }
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
}

fn check_shaders(dir: &Path, failures: &mut Vec<String>) {
    for path in sorted_files(dir, "wgsl") {
        let src = match std::fs::read_to_string(&path) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("cannot read {}: {e}", path.display()));
                continue;
            }
        };
        // A shader that imports Bevy's modules is composed the way Bevy
        // composes it (naga_oil, with bevy_pbr's sources) by the
        // `ghost_shader_composes` test; plain WGSL is parsed here.
        if src.contains("#import") || src.contains("#{") {
            continue;
        }
        if let Err(e) = naga::front::wgsl::parse_str(&src) {
            failures.push(e.emit_to_string_with_path(&src, &path));
        }
    }
}
