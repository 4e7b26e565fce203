//! What-if: the plant's state now (or a model file) in; its simulated
//! futures under hypotheticals, with confidence intervals, out. Never
//! writes to the live twin or the MES.
//!
//! - `model`: the process model as plain data; `model_file` reads it from
//!   a standalone TOML file; `plant` builds it from the live twin or the
//!   recorded history (registry, MES orders, machine states, fits).
//! - `fit`: per machine, distributions fitted from the history.
//! - `engine`: the discrete-event engine (one replication).
//! - `fork`: a scenario as its own `bevy::ecs::World` with its own
//!   `Schedule` and clock, holding what the ghost renderer will read.
//! - `scenario`: hypotheticals and the scenario file.
//! - `pool`: replications on threads of their own; `stats` and `report`:
//!   paired confidence intervals and the tables.
//! - `backtest`: a fork from the recorded past, compared with what happened.
//! - `rng`, `dist`: keyed random streams and distributions.
//! - `trajectory`: a fork stepped a simulated minute at a time, for the
//!   ghosts and the future side of the timeline.
//! - `app`: studies in the app, on a thread of their own (`WhatIfPlugin`);
//!   `background`: the job, history connection and thread any panel's
//!   study uses (what-if, schedule).
//! - `pack`: the meeting pack (CSV, scenario file, PDF report).

pub mod app;
pub mod background;
pub mod backtest;
pub mod dist;
pub mod engine;
pub mod fit;
pub mod fork;
pub mod model;
pub mod model_file;
pub mod pack;
pub mod plant;
pub mod pool;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod stats;
pub mod trajectory;

use std::path::PathBuf;

pub use engine::{Engine, Outcome, RunOptions, SimState};
pub use model::Model;
pub use pool::{Pool, Progress, Study, StudyResult};
pub use report::Report;
pub use scenario::{Change, Replications, Scenario, ScenarioFile};

/// Everything that can go wrong in what-if.
#[derive(Debug, thiserror::Error)]
pub enum WhatIfError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", crate::calendar::located(path, "", problems))]
    File {
        path: PathBuf,
        /// (line, column, message)
        problems: Vec<(usize, usize, String)>,
    },
    #[error("model: {0}")]
    Model(String),
    #[error("scenario {name:?}: {message}")]
    Scenario { name: String, message: String },
    #[error("history: {0}")]
    History(String),
    #[error("cancelled")]
    Cancelled,
}

impl From<engine::Cancelled> for WhatIfError {
    fn from(_: engine::Cancelled) -> Self {
        WhatIfError::Cancelled
    }
}
