//! Site → enterprise federation.
//!
//! Out of a site twin ([`publish`]): its summary on its own broker, under
//! `<topic_root>/<site>/…`, retained, at most once per interval per asset —
//! `site` (a heartbeat each interval: MES link, recorder health, OEE by
//! line for the current shift, open discrepancies), `assets/<asset id>`
//! (state, OEE of the current shift, open discrepancies; when it changes),
//! and `online` (`true` at connect, `false` as the last will). A broker
//! bridge (mosquitto's, `config/mosquitto-site-bridge.conf`) carries those
//! topics to the enterprise broker.
//!
//! Into the enterprise view ([`enterprise`]): those messages from the
//! enterprise broker, applied to an [`enterprise::EnterpriseModel`] of sites,
//! areas, lines and machines; a site whose heartbeat is older than the
//! configured age is stale, shown with the time it was last heard.

pub mod enterprise;
pub mod publish;

use serde::{Deserialize, Serialize};

/// Everything that can go wrong here.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    #[error("{path}: {message}")]
    Config { path: String, message: String },
    #[error("summary on `{topic}` is not valid: {message}")]
    Payload { topic: String, message: String },
    #[error("broker URL {url}: {message}")]
    Broker { url: String, message: String },
    #[error("cannot start the federation thread: {0}")]
    Thread(std::io::Error),
}

/// One machine as its site states it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetSummary {
    pub asset_id: String,
    pub name: String,
    pub area: String,
    pub line: String,
    /// The twin's machine state (`running`, `idle`, `down`, …).
    pub state: String,
    /// The state's reason, when the PLC gave one.
    pub reason: Option<String>,
    /// OEE of the current shift (fractions 0–1), when known.
    pub oee: Option<OeeSummary>,
    pub open_discrepancies: u32,
    /// Site time of this summary, µs since the Unix epoch (UTC).
    pub ts_us: i64,
}

/// A shift's OEE, as fractions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OeeSummary {
    pub shift: String,
    pub availability: Option<f64>,
    pub performance: Option<f64>,
    pub quality: Option<f64>,
    pub oee: Option<f64>,
}

/// A line's OEE for the current shift (its machines' times merged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineSummary {
    pub area: String,
    pub line: String,
    pub oee: Option<OeeSummary>,
}

/// The recorder's health, when the site twin records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecorderHealth {
    pub samples_written: u64,
    pub backlog: u64,
    /// Since when commits fail (µs), none while writing works.
    pub failing_since_us: Option<i64>,
    pub dead_letters: u64,
}

/// The site's heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteSummary {
    pub site: String,
    pub name: String,
    pub time_zone: String,
    /// `up`, `down`, `catching up` or `unknown`.
    pub mes_link: String,
    pub recorder: Option<RecorderHealth>,
    pub lines: Vec<LineSummary>,
    pub open_discrepancies: u32,
    pub assets: u32,
    /// Site time of this heartbeat, µs since the Unix epoch (UTC).
    pub ts_us: i64,
}

/// `<root>/<site>/site`.
pub fn site_topic(root: &str, site: &str) -> String {
    format!("{}/{site}/site", root.trim_end_matches('/'))
}

/// `<root>/<site>/online`.
pub fn online_topic(root: &str, site: &str) -> String {
    format!("{}/{site}/online", root.trim_end_matches('/'))
}

/// `<root>/<site>/assets/<asset id>`.
pub fn asset_topic(root: &str, site: &str, asset_id: &str) -> String {
    format!("{}/{site}/assets/{asset_id}", root.trim_end_matches('/'))
}
