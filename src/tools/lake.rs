//! `mezzanine lake compact | status`: the lake folder in (from `--lake` or
//! the config), merged partitions or a table of its datasets out.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::config::AppConfig;
use crate::history::lake;

#[allow(clippy::print_stdout)] // a command-line report
pub fn run(config: Option<PathBuf>, what: &str, dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let dir = match dir {
        Some(d) => d,
        None => AppConfig::load(config.as_deref())?
            .lake
            .path
            .context("no lake: give --lake DIR or set [lake] path in the config")?,
    };
    if !dir.is_dir() {
        anyhow::bail!("{} is not a lake folder", dir.display());
    }
    match what {
        "compact" => {
            let r = lake::compact(&dir)?;
            println!(
                "compacted {} partitions of {}: {} files with {} rows into {} rows \
                 ({} duplicates dropped)",
                r.partitions,
                dir.display(),
                r.files_in,
                r.rows_in,
                r.rows_out,
                r.duplicates_dropped()
            );
            Ok(ExitCode::SUCCESS)
        }
        "status" => {
            let c = duckdb::Connection::open_in_memory()?;
            println!(
                "{:<14} | {:>6} | {:>12} | {:>10} | first (UTC)          | last (UTC)",
                "dataset", "files", "rows", "partitions"
            );
            println!("{}", "-".repeat(100));
            for name in lake::datasets() {
                let files = lake::parquet_files(&dir.join(name))?;
                if files.is_empty() {
                    continue;
                }
                let parts: std::collections::BTreeSet<_> =
                    files.iter().filter_map(|f| f.parent()).collect();
                let glob = format!(
                    "read_parquet('{}/{name}/**/*.parquet', hive_partitioning = true, union_by_name = true)",
                    dir.display().to_string().replace('\'', "''")
                );
                let has_ts = !matches!(name, "schedules" | "mes_outages" | "audit_log");
                let (rows, first, last): (i64, Option<String>, Option<String>) = if has_ts {
                    c.query_row(
                        &format!(
                            "SELECT count(*), strftime(min(make_timestamp(ts_us)), '%Y-%m-%d %H:%M:%S'),
                                    strftime(max(make_timestamp(ts_us)), '%Y-%m-%d %H:%M:%S') FROM {glob}"
                        ),
                        [],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )?
                } else {
                    (
                        c.query_row(&format!("SELECT count(*) FROM {glob}"), [], |r| r.get(0))?,
                        None,
                        None,
                    )
                };
                println!(
                    "{name:<14} | {:>6} | {rows:>12} | {:>10} | {:<20} | {}",
                    files.len(),
                    parts.len(),
                    first.unwrap_or_default(),
                    last.unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        other => anyhow::bail!("unknown lake command `{other}`: use `compact` or `status`"),
    }
}
