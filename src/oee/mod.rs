//! OEE by ISO 22400-2: machine states, part and scrap counters (recorded
//! by the twin), the shift calendar and the loss rules in; availability,
//! performance, quality and OEE with their loss tree, per machine, rolled
//! up through the ISA-95 hierarchy and bucketed by shift, day, machine or
//! line, out.
//!
//! - `rules`: the loss rules file (which state and reason is which loss,
//!   the micro-stop threshold, changeovers, the start-up window).
//! - `compute`: the one function every view calls, and roll-ups that add
//!   times (weighted by planned time, never averaged).
//! - `history`: a machine's inputs for a period from the history file.
//! - `table`: periods × groups → rows (by shift, day, machine, line).
//! - `live`: the running shift kept up to date in the app (appends, one
//!   compute a second), past shifts from the history on a worker thread.

pub mod compute;
pub mod history;
pub mod live;
pub mod rules;
pub mod table;

use std::path::PathBuf;

pub use compute::{MachineInput, Oee, Segment, compute};
pub use rules::{Loss, LossRules};

/// Everything that can go wrong computing OEE.
#[derive(Debug, thiserror::Error)]
pub enum OeeError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", crate::calendar::located(path, "OEE loss rules ", problems))]
    File {
        path: PathBuf,
        /// (line, column, message)
        problems: Vec<(usize, usize, String)>,
    },
    #[error("history: {0}")]
    History(#[from] crate::history::HistoryError),
    #[error("{0}")]
    Input(String),
}
