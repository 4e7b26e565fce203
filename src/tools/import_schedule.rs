//! `mezzanine import-schedule`: a B2MML `ProductionSchedule` in, validated
//! against the registry, stored in the history file (replacing an earlier
//! import with the same ID), and printed as a table in the plant's zone,
//! with notes on what was read under an assumption or not imported.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use super::tool_config;
use crate::history::Store;
use crate::registry::{AssetRegistry, load_registry};

pub fn run(
    config: Option<PathBuf>,
    file: &Path,
    history: Option<PathBuf>,
    registry: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let cfg = tool_config(config, history, registry)?;
    let registry = AssetRegistry::new(load_registry(&cfg.plant.registry)?);
    let xml =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let (schedule, notes) = crate::mes::b2mml::parse_with_notes(&xml, file, Some(&registry))?;
    let path = cfg.history.db_path();
    let store = Store::open(&path, &registry).context("opening the history file")?;
    let n = crate::history::import_schedule(&store, &schedule, &file.display().to_string())?;
    let tz =
        jiff::tz::TimeZone::get(&registry.plant().time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
    let when = |us: Option<i64>| {
        us.and_then(|u| jiff::Timestamp::from_microsecond(u).ok())
            .map_or("—".to_string(), |t| {
                t.to_zoned(tz.clone())
                    .strftime("%Y-%m-%d %H:%M %Z")
                    .to_string()
            })
    };
    println!(
        "{:<12} {:<22} {:>8}  {:<12} {:<22} {:<22}",
        "order", "product", "qty", "machine", "earliest start", "latest end"
    );
    for r in &schedule.requests {
        println!(
            "{:<12} {:<22} {:>8}  {:<12} {:<22} {:<22}",
            r.id,
            r.product.chars().take(22).collect::<String>(),
            format!("{} {}", r.quantity, r.unit),
            r.asset_id().unwrap_or("—"),
            when(r.earliest_start_us),
            when(r.latest_end_us)
        );
    }
    for note in &notes {
        println!("note: {}: {note}", file.display());
    }
    println!(
        "imported schedule {} ({n} production requests) into {}",
        schedule.id,
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
