//! The one integration-test binary (each test binary links Bevy, so there is
//! only one). Modules follow the data flow.

// Test code may unwrap, print its figures, and start helper threads
// without names: a panic or a hang here is the test failing, in its name.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::disallowed_methods
)]

mod app;
mod binding;
mod check_cli;
mod federation;
mod history;
mod lake;
mod layers;
mod live;
mod mes;
mod mes_peer;
mod oee;
mod quality;
mod registry;
mod robust;
mod schedule;
mod screenshot;
mod twin_live;
mod whatif;
mod whatif_app;

use std::path::PathBuf;

/// A path inside the repository.
pub fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}
