//! `mezzanine generate-demo-plant`: the demo plant's spec in, its layout
//! (GLB) and registry (TOML) written to a folder.

use std::path::Path;
use std::process::ExitCode;

use crate::demo;

pub fn run(out: &Path) -> anyhow::Result<ExitCode> {
    let spec = demo::plant::PlantSpec::demo();
    let (glb, toml) = demo::write_plant(&spec, out, "demo-plant")?;
    println!(
        "wrote {} ({} machines) and {}",
        glb.display(),
        spec.machines.len(),
        toml.display()
    );
    Ok(ExitCode::SUCCESS)
}
