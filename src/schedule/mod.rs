//! Finite-capacity scheduling: the live plant's problem (or a standard
//! benchmark instance) in; a schedule, its comparison with the MES plan
//! and its robustness under the plant's uncertainty out. The solvers use
//! no Bevy; the live problem is built from the what-if model.
//!
//! - `instance`: the two benchmark formats → [`instance::Instance`].
//! - `solver`: constructive start + tabu search on the disjunctive graph
//!   (N5 moves, machine reassignment for flexible shops), a time budget,
//!   cancel, the time to best; `check` proves a schedule feasible.
//! - `plan`: the plant's problem (release and due dates, machine returns,
//!   off windows, setups, tool changes, running operations; makespan,
//!   weighted tardiness or a mix) and its solver; `check` for plans.
//! - `live`: the what-if model of the plant now → the problem.
//! - `compare`: the MES schedule → its operations as stated, conflicts,
//!   its sequence on the live problem, per-order differences.
//! - `robust`: both schedules through the what-if engine, replications,
//!   confidence intervals.
//! - `study`: all of it in one run, its text, and the recommendation.
//! - `app`: the Bevy side — commands from the UI, a study on its own
//!   thread, the result as a resource for the Gantt panel.

pub mod app;
pub mod compare;
pub mod instance;
pub mod live;
pub mod plan;
pub mod robust;
pub mod solver;
pub mod study;

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
    #[error("scheduling problem: {0}")]
    Problem(String),
    #[error("history: {0}")]
    History(String),
    #[error(transparent)]
    WhatIf(#[from] crate::whatif::WhatIfError),
}
