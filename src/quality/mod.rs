//! Quality: follow a part through the plant and find what was different.
//!
//! In: the history file (part events, signals, spectra, MES events, the
//! audit trail) and the registry. Out: a part's [`genealogy`] (which
//! assets made it, when, under which order and material lot, and what a lot
//! or an order made), a [`compare::Ranking`] of the (asset, signal) pairs
//! where a failed part departs from the envelope of the last good parts of
//! the same operation, batch comparisons, and the [`evidence`] pack
//! (genealogy, Parquet of every sample and spectrum in the operation
//! windows, plots, a PDF report and a SHA-256 manifest). Investigations
//! (opened, notes, conclusion, sign-off) go on the history's hash-chained
//! audit trail (`history::audit`).

pub mod app;
pub mod compare;
pub mod evidence;
pub mod genealogy;

use std::path::PathBuf;

pub use compare::{ALARM_SCORE, Difference, Ranking, rank};
pub use genealogy::{Genealogy, Verdict};

/// Everything that can go wrong following a part.
#[derive(Debug, thiserror::Error)]
pub enum QualityError {
    #[error(
        "no part with serial `{0}` in the history (no station recorded it, no MES disposition names it)"
    )]
    UnknownSerial(String),
    #[error("no material lot `{0}` in the history (no `material.issued` event names it)")]
    UnknownLot(String),
    #[error("history query failed ({what}): {source}")]
    Sql {
        what: &'static str,
        source: duckdb::Error,
    },
    #[error(transparent)]
    History(#[from] crate::history::HistoryError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("evidence pack: {0}")]
    Evidence(String),
}
