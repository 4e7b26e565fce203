//! The one integration-test binary (each test binary links Bevy, so there is
//! only one). Modules follow the data flow.

mod binding;
mod check_cli;
mod history;
mod live;
mod mes;
mod mes_peer;
mod registry;
mod screenshot;
mod twin_live;

use std::path::PathBuf;

/// A path inside the repository.
pub fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}
