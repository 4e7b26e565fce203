//! Export a time range of the history to Parquet for analysts: a connection,
//! a range and a folder in; `samples/` and `transitions/` folders out, each
//! partitioned Hive-style by day (UTC) and asset
//! (`samples/day=2026-11-24/asset_id=L1-MILL-01/data_0.parquet`).

use std::path::{Path, PathBuf};

use duckdb::{Connection, params};

use super::HistoryError;

/// What an export wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportReport {
    pub out_dir: PathBuf,
    pub samples: u64,
    pub transitions: u64,
    pub files: usize,
}

fn quote_path(p: &Path) -> String {
    p.to_string_lossy().replace('\'', "''")
}

fn count_files(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                count_files(&p)
            } else {
                usize::from(p.extension().is_some_and(|x| x == "parquet"))
            }
        })
        .sum()
}

/// Writes samples and transitions with source time in `[from_us, to_us)`.
/// Refuses a folder that already holds an export, so nothing is overwritten.
pub fn export_parquet(
    conn: &Connection,
    from_us: i64,
    to_us: i64,
    out_dir: &Path,
) -> Result<ExportReport, HistoryError> {
    if to_us <= from_us {
        return Err(HistoryError::Export(format!(
            "the range is empty: --to must be after --from ({from_us} µs ≥ {to_us} µs)"
        )));
    }
    for sub in ["samples", "transitions"] {
        let d = out_dir.join(sub);
        if d.exists() {
            return Err(HistoryError::Export(format!(
                "{} already exists; export into an empty folder",
                d.display()
            )));
        }
    }
    std::fs::create_dir_all(out_dir).map_err(|source| HistoryError::Io {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let count = |sql: &str| -> Result<u64, HistoryError> {
        conn.query_row(sql, params![from_us, to_us], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|source| HistoryError::Sql {
                what: "counting rows to export",
                source,
            })
    };
    let samples = count("SELECT count(*) FROM samples WHERE ts_us >= ? AND ts_us < ?")?;
    let transitions = count("SELECT count(*) FROM transitions WHERE ts_us >= ? AND ts_us < ?")?;
    let s_dir = quote_path(&out_dir.join("samples"));
    let t_dir = quote_path(&out_dir.join("transitions"));
    // COPY takes no bound parameters: the range is two integers.
    let sql = format!(
        "COPY (
           SELECT to_timestamp(s.ts_us / 1e6) AS ts, s.ts_us, p.asset_id, p.property, p.unit,
                  s.value, s.text, s.blob_id,
                  CASE s.quality WHEN 0 THEN 'good' WHEN 1 THEN 'uncertain' ELSE 'bad' END AS quality,
                  CASE s.origin WHEN 0 THEN 'mqtt' ELSE 'opcua' END AS origin,
                  s.received_us, s.work_order,
                  CASE s.vtype WHEN 1 THEN 'boolean' WHEN 2 THEN 'integer'
                    ELSE CASE WHEN s.value IS NOT NULL THEN 'number' END END AS value_type,
                  CASE WHEN s.vtype = 1 THEN s.value <> 0 END AS boolean_value,
                  s.ivalue AS integer_value,
                  strftime(make_timestamp(s.ts_us), '%Y-%m-%d') AS day
           FROM samples s JOIN properties p USING (prop_id)
           WHERE s.ts_us >= {from_us} AND s.ts_us < {to_us}
           ORDER BY p.asset_id, s.ts_us
         ) TO '{s_dir}' (FORMAT parquet, PARTITION_BY (day, asset_id));
         COPY (
           SELECT to_timestamp(ts_us / 1e6) AS ts, ts_us, asset_id, state, reason,
                  strftime(make_timestamp(ts_us), '%Y-%m-%d') AS day
           FROM transitions WHERE ts_us >= {from_us} AND ts_us < {to_us}
           ORDER BY asset_id, ts_us
         ) TO '{t_dir}' (FORMAT parquet, PARTITION_BY (day, asset_id));"
    );
    conn.execute_batch(&sql)
        .map_err(|source| HistoryError::Sql {
            what: "writing Parquet",
            source,
        })?;
    Ok(ExportReport {
        out_dir: out_dir.to_path_buf(),
        samples,
        transitions,
        files: count_files(out_dir),
    })
}
