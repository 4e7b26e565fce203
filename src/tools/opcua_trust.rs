//! `mezzanine opcua trust`: the server certificates the OPC UA client
//! refused (in its PKI folder's `rejected`) listed, and the one a person
//! names by thumbprint moved to `trusted`, so the next connection accepts
//! it. Nothing is trusted without a thumbprint.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};

use super::tool_config;
use crate::ingest::opcua::rejected_certs;

/// Moves the rejected certificate(s) whose thumbprint starts with
/// `thumbprint` (at least 8 hex digits, any case) from `<pki>/rejected` to
/// `<pki>/trusted`; returns where they went.
pub fn trust(pki_dir: &Path, thumbprint: &str) -> anyhow::Result<Vec<PathBuf>> {
    let want = thumbprint.trim().to_ascii_lowercase();
    if want.len() < 8 || !want.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("`{thumbprint}`: give at least 8 hex digits of the thumbprint");
    }
    let matching: Vec<_> = rejected_certs(pki_dir)
        .into_iter()
        .filter(|c| c.thumbprint.to_ascii_lowercase().starts_with(&want))
        .collect();
    if matching.is_empty() {
        bail!(
            "no rejected certificate with thumbprint {thumbprint} in {}",
            pki_dir.join("rejected").display()
        );
    }
    let trusted = pki_dir.join("trusted");
    std::fs::create_dir_all(&trusted).with_context(|| format!("creating {}", trusted.display()))?;
    let mut moved = Vec::new();
    for c in matching {
        let to = trusted.join(&c.file_name);
        std::fs::rename(&c.path, &to)
            .with_context(|| format!("moving {} to {}", c.path.display(), to.display()))?;
        moved.push(to);
    }
    Ok(moved)
}

#[allow(clippy::print_stdout)] // a command-line report
pub fn run(config: Option<PathBuf>, thumbprint: Option<String>) -> anyhow::Result<ExitCode> {
    let cfg = tool_config(config, None, None)?;
    let pki = cfg.pki_dir().join("client");
    match thumbprint {
        Some(t) => {
            for p in trust(&pki, &t)? {
                println!("trusted {}", p.display());
            }
            println!("the adapter accepts this server from its next connection attempt");
        }
        None => {
            let rejected = rejected_certs(&pki);
            if rejected.is_empty() {
                println!(
                    "no refused server certificate in {}",
                    pki.join("rejected").display()
                );
            }
            for c in rejected {
                let when = jiff::Timestamp::try_from(c.modified)
                    .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                    .unwrap_or_default();
                println!("{}  refused {when}  {}", c.thumbprint, c.file_name);
            }
            println!("trust one with `mezzanine opcua trust --thumbprint <thumbprint>`");
        }
    }
    Ok(ExitCode::SUCCESS)
}
