//! Finite-capacity scheduling: job-shop and flexible job-shop instances in
//! (the standard benchmark files today), schedules out. No Bevy.
//!
//! - `instance`: the two benchmark formats → [`instance::Instance`].
//! - `solver`: constructive start + tabu search on the disjunctive graph
//!   (N5 moves, machine reassignment for flexible shops), a time budget,
//!   cancel, the time to best; `check` proves a schedule feasible.

pub mod instance;
pub mod solver;

use std::path::PathBuf;

/// Everything that can go wrong in scheduling.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Instance {
        path: PathBuf,
        line: usize,
        message: String,
    },
}
