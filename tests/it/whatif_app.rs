//! What-if part 2: the ghost shader as Bevy composes it, trajectories of a
//! real study, the scenario file written and read back, the meeting pack
//! (its PDF and CSVs), and a what-if recommendation on a real broker.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use naga_oil::compose::{
    ComposableModuleDescriptor, Composer, ComposerErrorInner, NagaModuleDescriptor, ShaderDefValue,
    ShaderLanguage, ShaderType,
};

use super::repo;

/// Source folders of the locked Bevy crates that hold WGSL modules.
fn bevy_shader_dirs() -> Vec<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            let n = p["name"].as_str().unwrap_or("");
            n.starts_with("bevy_") && p["version"].as_str().unwrap_or("").starts_with("0.19")
        })
        .filter_map(|p| {
            Path::new(p["manifest_path"].as_str()?)
                .parent()
                .map(|d| d.join("src"))
        })
        .collect()
}

fn wgsl_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            wgsl_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "wgsl") {
            out.push(p);
        }
    }
}

/// The definitions Bevy's mesh pipeline sets for a material's fragment
/// shader in the main pass (this app: MSAA on, no prepasses).
fn pipeline_defs() -> HashMap<String, ShaderDefValue> {
    let mut d = HashMap::new();
    for (k, v) in [
        ("MATERIAL_BIND_GROUP", 3),
        ("MAX_DIRECTIONAL_LIGHTS", 10),
        ("MAX_CASCADES_PER_LIGHT", 4),
        ("MAX_RECT_LIGHTS", 8),
        ("AVAILABLE_STORAGE_BUFFER_BINDINGS", 8),
        ("PER_OBJECT_BUFFER_BATCH_SIZE", 0),
    ] {
        d.insert(k.to_string(), ShaderDefValue::UInt(v));
    }
    for k in [
        "MESH_PIPELINE",
        "VERTEX_OUTPUT_INSTANCE_INDEX",
        "VERTEX_POSITIONS",
        "VERTEX_NORMALS",
        "VERTEX_UVS",
        "VERTEX_UVS_A",
        "MULTISAMPLED",
        "TONEMAP_IN_SHADER",
    ] {
        d.insert(k.to_string(), ShaderDefValue::Bool(true));
    }
    d
}

/// Composes `src` as Bevy would: every bevy module its imports need,
/// added in rounds (a module only once the modules it imports are), then
/// the shader itself, validated.
fn compose(src: &str, file: &str) -> Result<naga::Module, String> {
    let mut files = Vec::new();
    for d in bevy_shader_dirs() {
        wgsl_files(&d, &mut files);
    }
    let mut left: Vec<(PathBuf, String)> = files
        .into_iter()
        .filter_map(|p| {
            let s = std::fs::read_to_string(&p).ok()?;
            s.contains("#define_import_path").then_some((p, s))
        })
        .collect();
    assert!(
        left.len() > 20,
        "bevy's WGSL modules were not found ({} files)",
        left.len()
    );
    let defs = pipeline_defs();
    let mut composer = Composer::default();
    loop {
        let before = left.len();
        left.retain(|(path, src)| {
            composer
                .add_composable_module(ComposableModuleDescriptor {
                    source: src,
                    file_path: &path.to_string_lossy(),
                    language: ShaderLanguage::Wgsl,
                    as_name: None,
                    additional_imports: &[],
                    shader_defs: defs.clone(),
                })
                .is_err_and(|e| matches!(e.inner, ComposerErrorInner::ImportNotFound(..)))
        });
        if left.len() == before || left.is_empty() {
            break;
        }
    }
    composer
        .make_naga_module(NagaModuleDescriptor {
            source: src,
            file_path: file,
            shader_type: ShaderType::Wgsl,
            shader_defs: defs,
            additional_imports: &[],
        })
        .map_err(|e| e.emit_to_string(&composer))
}

/// shaders/ghost.wgsl composes with bevy_pbr's modules (its imports
/// resolved by naga_oil, as Bevy's shader cache does) and validates.
#[test]
fn ghost_shader_composes() {
    let path = repo("shaders/ghost.wgsl");
    let src = std::fs::read_to_string(&path).unwrap();
    let module = compose(&src, &path.to_string_lossy()).unwrap_or_else(|e| panic!("{e}"));
    let frag = module
        .entry_points
        .iter()
        .find(|e| e.name == "fragment")
        .expect("a fragment entry point");
    assert_eq!(format!("{:?}", frag.stage), "Fragment");
    // The material's uniform sits where Bevy binds materials.
    assert!(
        module.global_variables.iter().any(|(_, g)| g
            .binding
            .as_ref()
            .is_some_and(|b| b.group == 3 && b.binding == 0)),
        "the ghost's uniform is at @group(3) @binding(0)"
    );
}

/// The same text with an error in it does not compose: the check can fail.
#[test]
fn a_broken_ghost_shader_fails_the_check() {
    let src = std::fs::read_to_string(repo("shaders/ghost.wgsl"))
        .unwrap()
        .replace("ghost.rim_power", "ghost.rim_strength");
    let e = compose(&src, "ghost.wgsl").expect_err("a misspelt field must not compose");
    assert!(e.contains("rim_strength"), "{e}");
}
