//! `mezzanine export`: a time range (RFC 3339, or civil time in the plant's
//! zone) in, Parquet files partitioned by day and asset out.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use super::tool_config;
use crate::cli::parse_time;
use crate::history::Store;
use crate::registry::{AssetRegistry, load_registry};

pub fn run(
    config: Option<PathBuf>,
    from: &str,
    to: &str,
    out: &Path,
    history: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let cfg = tool_config(config, history, None)?;
    let registry = AssetRegistry::new(load_registry(&cfg.plant.registry)?);
    let tz = registry.plant().time_zone.clone();
    let from_us = parse_time(from, &tz).map_err(anyhow::Error::msg)?;
    let to_us = parse_time(to, &tz).map_err(anyhow::Error::msg)?;
    let path = cfg.history.db_path();
    if !path.exists() {
        anyhow::bail!("no history file at {}", path.display());
    }
    let store = Store::open(&path, &registry).context("opening the history file")?;
    let r = crate::history::export::export_parquet(&store.conn, from_us, to_us, out)?;
    println!(
        "exported {} samples and {} transitions to {} ({} Parquet files)",
        r.samples,
        r.transitions,
        r.out_dir.display(),
        r.files
    );
    Ok(ExitCode::SUCCESS)
}
