//! `mezzanine check`: a layout and a registry in, the binding report out;
//! exit code 1 when anything is unbound.

use std::path::Path;
use std::process::ExitCode;

use crate::registry::load_registry;
use crate::scene::asset_refs;
use crate::scene::layout::{Binder, Layout};

pub fn run(scene: &Path, registry: &Path) -> anyhow::Result<ExitCode> {
    let reg = load_registry(registry)?;
    let layout = Layout::read(scene)?;
    let report = layout.bind(&Binder::new(asset_refs(&reg.assets)));
    print!("{}", report.to_text());
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
