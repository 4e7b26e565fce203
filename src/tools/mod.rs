//! The headless subcommands: command-line values in, a report on stdout and
//! an exit code out. Each uses the same layers as the app (registry,
//! adapters, history, MES), without a window.

pub mod bench;
pub mod check;
pub mod demo_plant;
pub mod drill;
pub mod export;
pub mod fuzz;
pub mod generate;
pub mod import_schedule;
pub mod lake;
pub mod oee;
pub mod opcua_trust;
pub mod quality;
pub mod record;
pub mod schedule;
pub mod share;
pub mod whatif;

use std::path::PathBuf;

use crate::config::AppConfig;

/// The configuration of a headless tool, with its `--history` and
/// `--registry` overrides.
pub fn tool_config(
    config: Option<PathBuf>,
    history: Option<PathBuf>,
    registry: Option<PathBuf>,
) -> anyhow::Result<AppConfig> {
    let mut cfg = AppConfig::load(config.as_deref())?;
    if let Some(h) = history {
        cfg.history.path = Some(h);
    }
    if let Some(r) = registry {
        cfg.plant.registry = r;
    }
    Ok(cfg)
}
