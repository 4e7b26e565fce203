//! Configuration: defaults, then a TOML file, then `MEZZANINE_*` environment
//! variables, then command-line flags; validated once, read-only afterwards.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Everything that can go wrong assembling the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{name}={value}: {message}")]
    Env {
        name: &'static str,
        value: String,
        message: String,
    },
    #[error("{what} {} does not exist", path.display())]
    Missing { what: &'static str, path: PathBuf },
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

/// A credential from the configuration: never printed (its `Debug` says
/// `***`), only handed to the request that needs it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppConfig {
    pub plant: PlantConfig,
    pub window: WindowConfig,
    pub render: RenderConfig,
    pub mqtt: MqttConfig,
    pub opcua: OpcUaConfig,
    pub demo: DemoConfig,
    pub history: HistoryConfig,
    pub mes: MesConfig,
    pub reconcile: ReconcileConfig,
    pub ingest: IngestConfig,
    pub sparkplug: SparkplugConfig,
    pub lake: LakeConfig,
    pub federation: FederationConfig,
}

/// The Parquet lake the recorder closes its periods into (`history::lake`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// The lake folder; absent: no lake.
    pub path: Option<PathBuf>,
    /// This recorder's name in its file names; absent: its MQTT client id.
    /// Every recorder writing into one lake needs its own.
    pub recorder: Option<String>,
    /// Period length: each is closed into Parquet once it is over.
    pub close_every_s: u64,
    /// How long after its end a period is closed.
    pub grace_s: u64,
    /// How often the lake looks for closed periods and late rows.
    pub tick_ms: u64,
}

impl Default for LakeConfig {
    fn default() -> Self {
        Self {
            path: None,
            recorder: None,
            close_every_s: 3_600,
            grace_s: 60,
            tick_ms: 5_000,
        }
    }
}

/// The site summary this twin publishes for the enterprise view.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationConfig {
    /// Publish the summary (retained).
    pub publish: bool,
    /// The broker it goes to (plain `mqtt://`); absent: the UNS broker.
    /// A site broker bridged to the enterprise broker carries it on.
    pub broker: Option<String>,
    /// Summaries go under `<topic_root>/<site>/…`.
    pub topic_root: String,
    /// At most one message per asset in this many milliseconds.
    pub min_interval_ms: u64,
}

impl Default for FederationConfig {
    fn default() -> Self {
        Self {
            publish: false,
            broker: None,
            topic_root: "mezzanine/sites".into(),
            min_interval_ms: 1_000,
        }
    }
}

/// The twin as a Sparkplug B host application. Off by default: then it
/// only listens. These are the only messages it may send to Level 2.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SparkplugConfig {
    /// Ask an edge node to publish its births again (an `NCMD` with
    /// `Node Control/Rebirth` = true) when a metric alias was never
    /// announced (e.g. after the twin restarted) or a sequence number was
    /// skipped.
    pub request_rebirth: bool,
    /// At most one rebirth request per edge node in this many seconds.
    pub rebirth_min_interval_s: u64,
    /// Publish the host application's state (`spBv1.0/STATE/<host_id>`,
    /// retained, `online` true at connect and false as the will).
    pub host_id: Option<String>,
}

impl Default for SparkplugConfig {
    fn default() -> Self {
        Self {
            request_rebirth: false,
            rebirth_min_interval_s: 30,
            host_id: None,
        }
    }
}

/// What the adapters believe of a sample's source time.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Nothing older than this (RFC 3339 with an offset).
    pub earliest_source_time: String,
    /// Nothing more than this many seconds ahead of its receipt.
    pub max_source_ahead_s: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            earliest_source_time: "2000-01-01T00:00:00Z".into(),
            max_source_ahead_s: 300,
        }
    }
}

impl IngestConfig {
    /// `earliest_source_time` in µs since the Unix epoch.
    pub fn earliest_source_us(&self) -> Result<i64, ConfigError> {
        self.earliest_source_time
            .parse::<jiff::Timestamp>()
            .map(|t| t.as_microsecond())
            .map_err(|e| ConfigError::Invalid {
                field: "ingest.earliest_source_time",
                message: format!(
                    "`{}` is not an RFC 3339 time with an offset ({e})",
                    self.earliest_source_time
                ),
            })
    }
}

/// Reconciliation: the authority file (who owns each data domain).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileConfig {
    pub enabled: bool,
    /// The authority and detector file (see `config/reconcile.toml`).
    pub rules: PathBuf,
    /// How often the detectors compare the two views, milliseconds.
    pub period_ms: u64,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            rules: shipped("config/reconcile.toml"),
            period_ms: 1_000,
        }
    }
}

/// How a data domain reaches the twin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Pushed: MES events over MQTT, applied as they arrive.
    Events,
    /// Pulled: the MES REST API every `poll_interval_ms`, the snapshot
    /// reconciled against the twin's model. Changes between two polls are
    /// not seen, and the view can lag by up to one interval.
    Polling,
}

/// The sync mode of each MES data domain ("hybrid" is a mix of both).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MesDomains {
    /// Which order each machine runs, and order status.
    pub work_orders: SyncMode,
    /// Equipment modes (production, setup, maintenance…).
    pub equipment: SyncMode,
    /// Quality dispositions (events only: the API has no quality resource).
    pub quality: SyncMode,
    /// The production schedule (polling only: the MES publishes no event).
    pub schedule: SyncMode,
}

impl Default for MesDomains {
    fn default() -> Self {
        Self {
            work_orders: SyncMode::Events,
            equipment: SyncMode::Events,
            quality: SyncMode::Events,
            schedule: SyncMode::Polling,
        }
    }
}

/// The MES, as a peer: where its events arrive.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MesConfig {
    /// MQTT topic filter of the MES event tree (empty: no MES events).
    pub events_topic: String,
    /// Events are applied in source-time order within this window.
    pub reorder_window_ms: u64,
    /// Where the MES publishes its heartbeat (empty: none).
    pub heartbeat_topic: String,
    /// Nothing heard from the MES (heartbeat, event or poll) for this long:
    /// it is out, and observations are marked context-unavailable.
    pub heartbeat_timeout_ms: u64,
    /// Base URL of the MES REST API, e.g. `http://mes.example:8080` (absent:
    /// the embedded demo's, or no polling).
    pub api_url: Option<String>,
    /// How often polled domains are fetched.
    pub poll_interval_ms: u64,
    /// Events asked for per page when catching up after an outage (the
    /// API's `limit`; the MES may answer fewer).
    pub catch_up_page_events: usize,
    pub domains: MesDomains,
    /// Sent as `Authorization: Bearer …` to the API (or from the
    /// environment variable `MEZZANINE_MES_API_TOKEN`).
    pub api_token: Option<Secret>,
    /// The CA (PEM) that signed the API's certificate (`https://` URLs).
    pub ca_file: Option<PathBuf>,
    /// The MES's own topic namespace: the twin never publishes under it.
    pub topic_root: String,
    /// Where the twin publishes its recommendations (retained, one topic
    /// per recommendation id below it), in the twin's own namespace.
    pub recommendations_topic: String,
}

impl Default for MesConfig {
    fn default() -> Self {
        Self {
            events_topic: "acme/lyon/mes/events/#".into(),
            reorder_window_ms: 2_000,
            heartbeat_topic: "acme/lyon/mes/heartbeat".into(),
            heartbeat_timeout_ms: 10_000,
            api_url: None,
            poll_interval_ms: 10_000,
            catch_up_page_events: 500,
            domains: MesDomains::default(),
            api_token: None,
            ca_file: None,
            topic_root: "acme/lyon/mes".into(),
            recommendations_topic: "acme/lyon/twin/recommendations".into(),
        }
    }
}

impl MesConfig {
    /// The topic prefix events arrive under (the filter without `#`).
    pub fn topic_prefix(&self) -> Option<String> {
        let t = self.events_topic.trim();
        (!t.is_empty()).then(|| t.trim_end_matches('#').to_string())
    }
}

/// The flight recorder (embedded DuckDB).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// The DuckDB file; absent means `history.duckdb` in the user's data folder.
    pub path: Option<PathBuf>,
    /// Record at all (the 3D view works without history, but has no playback).
    pub enabled: bool,
    /// Longest a sample waits before its batch is committed (and acknowledged).
    pub flush_interval_ms: u64,
    /// Shortest gap between two commits, so a trickle of samples is batched.
    pub min_commit_gap_ms: u64,
    /// Largest batch, in rows.
    pub max_batch_rows: usize,
    /// How often the WAL is folded into the file.
    pub checkpoint_interval_s: u64,
    /// How often the last value of every property is written as a keyframe.
    pub keyframe_interval_s: u64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            path: None,
            enabled: true,
            flush_interval_ms: 100,
            min_commit_gap_ms: 2,
            max_batch_rows: 50_000,
            checkpoint_interval_s: 300,
            keyframe_interval_s: 60,
        }
    }
}

impl HistoryConfig {
    pub fn db_path(&self) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| data_dir().join("history.duckdb"))
    }
}

/// A JSON payload convention of the plant's publishers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadPreset {
    /// `{"value": …, "ts_us": µs}` or `"ts"` in ms, `"quality"`, `"reason"`.
    Mezzanine,
    /// United Manufacturing Hub: `{"timestamp_ms": ms, "value": …}`, or
    /// `{"timestamp_ms": ms, "<tag>": …}` with the one other key the value.
    Umh,
    /// `{"value": …, "timestamp": "2026-11-24T10:00:00.123+01:00"}` (or
    /// `"time"`): ISO 8601 / RFC 3339 text with its zone offset.
    Iso,
}

/// How a payload field's source time is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeFormat {
    /// Microseconds since the Unix epoch.
    Us,
    /// Milliseconds since the Unix epoch.
    Ms,
    /// Seconds since the Unix epoch (fractions allowed).
    S,
    /// RFC 3339 text with a zone offset.
    Rfc3339,
}

/// One `[[mqtt.payload]]` entry: a preset, or the fields by name (a dotted
/// path reaches into nested objects, e.g. `data.value`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadRule {
    /// MQTT topic filter (`+` and `#` allowed).
    pub topics: String,
    pub preset: Option<PayloadPreset>,
    pub value: Option<String>,
    pub time: Option<String>,
    pub time_format: Option<TimeFormat>,
    pub quality: Option<String>,
}

/// The UNS broker. Without a `url`, the embedded demo broker is used.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// `mqtt://host:port`; absent means the embedded demo plant's broker.
    pub url: Option<String>,
    /// Fixed, so the broker keeps the session (and queued QoS 1 messages).
    /// Absent: `mezzanine-<installation id>` for the app and
    /// `mezzanine-<installation id>-record` for `mezzanine record`, the id
    /// made once and kept in the data folder — so two installations on one
    /// broker, or the app and the recorder of one, never share a session.
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Topic filters to subscribe to.
    pub topic_roots: Vec<String>,
    /// Subscribe to `topic_roots` as a member of this MQTT shared
    /// subscription (`$share/<group>/<filter>`): the broker hands each
    /// message to one member, so several recorders split one UNS. MES topics
    /// are subscribed to directly, so every member keeps the work-order
    /// context. Absent: plain subscriptions.
    pub share_group: Option<String>,
    /// How JSON payloads name their value and source time, per topic
    /// filter (`[[mqtt.payload]]`, the first match wins; unmatched topics
    /// use the `mezzanine` preset).
    #[serde(rename = "payload")]
    pub payloads: Vec<PayloadRule>,
    /// For `mqtts://`: the CA that signed the broker's certificate (PEM).
    pub ca_file: Option<PathBuf>,
    /// For brokers that ask for a client certificate (PEM).
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            url: None,
            client_id: None,
            username: None,
            password: None,
            topic_roots: vec!["acme/lyon/#".into(), "spBv1.0/acme/#".into()],
            share_group: None,
            payloads: Vec::new(),
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
        }
    }
}

/// The OPC UA server. Without an `endpoint`, the embedded demo server is used.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpcUaConfig {
    /// `opc.tcp://host:port/path`; absent means the embedded demo server.
    pub endpoint: Option<String>,
    /// `None`, `Basic256Sha256` or `Aes256Sha256RsaPss`.
    pub security_policy: String,
    /// `None`, `Sign` or `SignAndEncrypt`.
    pub security_mode: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub sampling_interval_ms: f64,
    /// Turn the OPC UA adapter off entirely.
    pub enabled: bool,
    /// Allow SecurityPolicy None to an endpoint that is not on this machine
    /// (anyone on the network can read and forge the values).
    pub allow_insecure: bool,
}

/// True for `localhost`, `127.x.x.x` and `::1` in an `opc.tcp://` URL.
pub fn is_loopback_endpoint(endpoint: &str) -> bool {
    let rest = endpoint.strip_prefix("opc.tcp://").unwrap_or(endpoint);
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Default for OpcUaConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            security_policy: "None".into(),
            security_mode: "None".into(),
            username: None,
            password: None,
            sampling_interval_ms: 100.0,
            enabled: true,
            allow_insecure: false,
        }
    }
}

/// The embedded demo plant (used when no external endpoints are named).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoConfig {
    pub seed: u64,
    /// Plant seconds per wall second.
    pub time_scale: f64,
    pub tick_ms: u64,
    /// Physical causes of bad parts to start, each
    /// `<cause>@<machine>@+<offset>[/<duration>]` (e.g.
    /// `chatter@L1-MILL-02@+10m/3m`); causes also happen on their own.
    pub inject: Vec<String>,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            time_scale: 10.0,
            tick_ms: 100,
            inject: Vec::new(),
        }
    }
}

impl AppConfig {
    /// True when no external endpoint is named: run the embedded plant.
    pub fn embedded_demo(&self) -> bool {
        self.mqtt.url.is_none() && self.opcua.endpoint.is_none()
    }

    /// Where certificates live (client and demo server).
    pub fn pki_dir(&self) -> PathBuf {
        data_dir().join("pki")
    }
}

/// Who connects to the broker: the desktop app or the headless recorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttRole {
    App,
    Record,
}

impl MqttConfig {
    /// The client id for `role`: the configured one, else one made from
    /// this installation's id (see [`installation_id`]).
    pub fn client_id_for(&self, role: MqttRole) -> Result<String, ConfigError> {
        if let Some(id) = &self.client_id {
            return Ok(id.clone());
        }
        let base = format!("mezzanine-{}", installation_id(&data_dir())?);
        Ok(match role {
            MqttRole::App => base,
            MqttRole::Record => format!("{base}-record"),
        })
    }
}

/// This installation's id (16 hex digits), made on first use and kept in
/// `dir/installation-id`.
pub fn installation_id(dir: &Path) -> Result<String, ConfigError> {
    use std::hash::{BuildHasher, Hasher};
    let file = dir.join("installation-id");
    if let Ok(text) = std::fs::read_to_string(&file) {
        let id = text.trim();
        if id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(id.to_string());
        }
    }
    // RandomState is seeded from the OS's randomness for each process.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    let id = format!("{:016x}", h.finish());
    let io = |source| ConfigError::Io {
        path: file.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::write(&file, format!("{id}\n")).map_err(io)?;
    Ok(id)
}

/// The user's data folder for Mezzanine (`$XDG_DATA_HOME/mezzanine`,
/// `~/.local/share/mezzanine`, or a temp folder as a last resort).
pub fn data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("mezzanine");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".local/share/mezzanine");
    }
    std::env::temp_dir().join("mezzanine")
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlantConfig {
    /// glTF/GLB plant layout.
    pub scene: PathBuf,
    /// Asset registry (TOML).
    pub registry: PathBuf,
    /// Shift calendar (TOML, `crate::calendar`); none: all time counts as
    /// planned working time, and what-if says so.
    pub shift_calendar: Option<PathBuf>,
    /// OEE loss rules (TOML; the `oee` layer reads them); none: the defaults.
    pub oee_rules: Option<PathBuf>,
    /// The site's short name (the lake's `site=` partition, the enterprise
    /// view's site); absent: the second level of the registry's ISA-95
    /// paths (enterprise/site/…), lower-cased.
    pub site: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowConfig {
    pub width_px: u32,
    pub height_px: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RenderConfig {
    pub shadows: bool,
    pub msaa: bool,
}

/// Where the shipped demo plant lives: next to the working directory when run
/// from a checkout, else next to the crate sources this binary was built from.
pub fn shipped(relative: &str) -> PathBuf {
    let local = PathBuf::from(relative);
    if local.exists() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

impl Default for PlantConfig {
    fn default() -> Self {
        Self {
            scene: shipped("scenes/demo-plant.glb"),
            registry: shipped("scenes/demo-plant.toml"),
            shift_calendar: None,
            oee_rules: None,
            site: None,
        }
    }
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            width_px: 1600,
            height_px: 900,
        }
    }
}

impl Default for RenderConfig {
    fn default() -> Self {
        Self {
            shadows: true,
            msaa: true,
        }
    }
}

impl AppConfig {
    /// Defaults, overlaid by `file` (if any), then by the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut cfg = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
                Self::from_toml(&text, path)?
            }
            None => Self::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        Ok(cfg)
    }

    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut cfg: AppConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        // Relative paths in a config file are relative to the file.
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut cfg.plant.scene, &mut cfg.plant.registry] {
            if p.is_relative() && text.contains("[plant]") {
                *p = base.join(&*p);
            }
        }
        for p in [
            &mut cfg.mqtt.ca_file,
            &mut cfg.mqtt.client_cert_file,
            &mut cfg.mqtt.client_key_file,
            &mut cfg.mes.ca_file,
            &mut cfg.history.path,
            &mut cfg.plant.shift_calendar,
            &mut cfg.plant.oee_rules,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(cfg)
    }

    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = get("MEZZANINE_MES_API_TOKEN").filter(|v| !v.trim().is_empty()) {
            self.mes.api_token = Some(Secret(v.trim().to_string()));
        }
        if let Some(v) = get("MEZZANINE_SCENE") {
            self.plant.scene = v.into();
        }
        if let Some(v) = get("MEZZANINE_REGISTRY") {
            self.plant.registry = v.into();
        }
        if let Some(v) = get("MEZZANINE_MQTT_URL") {
            self.mqtt.url = Some(v);
        }
        if let Some(v) = get("MEZZANINE_OPCUA_ENDPOINT") {
            self.opcua.endpoint = Some(v);
        }
        if let Some(v) = get("MEZZANINE_HISTORY") {
            self.history.path = Some(v.into());
        }
        if let Some(v) = get("MEZZANINE_SHADOWS") {
            self.render.shadows = parse_bool("MEZZANINE_SHADOWS", &v)?;
        }
        Ok(())
    }

    /// Checks that the files named exist.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.plant.scene.exists() {
            return Err(ConfigError::Missing {
                what: "plant layout",
                path: self.plant.scene.clone(),
            });
        }
        if !self.plant.registry.exists() {
            return Err(ConfigError::Missing {
                what: "asset registry",
                path: self.plant.registry.clone(),
            });
        }
        if let Some(c) = &self.plant.shift_calendar
            && !c.exists()
        {
            return Err(ConfigError::Missing {
                what: "shift calendar",
                path: c.clone(),
            });
        }
        if let Some(c) = &self.plant.oee_rules
            && !c.exists()
        {
            return Err(ConfigError::Missing {
                what: "OEE loss rules",
                path: c.clone(),
            });
        }
        if let Some(g) = &self.mqtt.share_group
            && (g.is_empty() || g.contains(['/', '+', '#']))
        {
            return Err(ConfigError::Invalid {
                field: "mqtt.share_group",
                message: format!(
                    "{g:?}: a shared subscription's group name must be non-empty and hold no \
                     '/', '+' or '#'"
                ),
            });
        }
        let rec = self.mes.recommendations_topic.trim().trim_end_matches('/');
        if rec.contains(['+', '#']) {
            return Err(ConfigError::Invalid {
                field: "mes.recommendations_topic",
                message: format!("`{rec}` must be a topic, not a filter (no '+' or '#')"),
            });
        }
        for root in [&self.mes.topic_root, &self.mes.events_topic] {
            let root = root.trim().trim_end_matches('#').trim_end_matches('/');
            if !rec.is_empty()
                && !root.is_empty()
                && (rec == root || rec.starts_with(&format!("{root}/")))
            {
                return Err(ConfigError::Invalid {
                    field: "mes.recommendations_topic",
                    message: format!(
                        "`{rec}` lies under the MES's topics (`{root}`): the twin publishes recommendations in its own namespace"
                    ),
                });
            }
        }
        if self.mqtt.topic_roots.is_empty() {
            return Err(ConfigError::Invalid {
                field: "mqtt.topic_roots",
                message: "name at least one topic filter, e.g. \"acme/lyon/#\"".into(),
            });
        }
        if !(self.demo.time_scale > 0.0 && self.demo.time_scale <= 3600.0) {
            return Err(ConfigError::Invalid {
                field: "demo.time_scale",
                message: format!("{} is outside 0..3600", self.demo.time_scale),
            });
        }
        if self.history.flush_interval_ms == 0 || self.history.flush_interval_ms > 10_000 {
            return Err(ConfigError::Invalid {
                field: "history.flush_interval_ms",
                message: format!("{} is outside 1..10000", self.history.flush_interval_ms),
            });
        }
        self.ingest.earliest_source_us()?;
        if self.ingest.max_source_ahead_s > 86_400 * 366 {
            return Err(ConfigError::Invalid {
                field: "ingest.max_source_ahead_s",
                message: format!("{} is more than a year", self.ingest.max_source_ahead_s),
            });
        }
        if self.history.max_batch_rows == 0 {
            return Err(ConfigError::Invalid {
                field: "history.max_batch_rows",
                message: "must be at least 1".into(),
            });
        }
        if self.mes.domains.quality == SyncMode::Polling {
            return Err(ConfigError::Invalid {
                field: "mes.domains.quality",
                message: "the MES API offers no quality resource: use \"events\"".into(),
            });
        }
        if self.mes.domains.schedule == SyncMode::Events {
            return Err(ConfigError::Invalid {
                field: "mes.domains.schedule",
                message: "the MES publishes no schedule events: use \"polling\"".into(),
            });
        }
        if self.mes.poll_interval_ms < 500 {
            return Err(ConfigError::Invalid {
                field: "mes.poll_interval_ms",
                message: format!("{} is below 500", self.mes.poll_interval_ms),
            });
        }
        if self.mqtt.url.is_none() && self.opcua.endpoint.is_some() && !self.opcua.enabled {
            return Err(ConfigError::Invalid {
                field: "opcua.enabled",
                message: "false, and no [mqtt] url: the plant has no source to record \
                          (name a broker, enable OPC UA, or set neither for the demo plant)"
                    .into(),
            });
        }
        for (i, r) in self.mqtt.payloads.iter().enumerate() {
            let field = "mqtt.payload";
            let at = format!("[[mqtt.payload]] #{} (topics `{}`)", i + 1, r.topics);
            let custom = r.value.is_some() || r.time.is_some() || r.quality.is_some();
            let problem = if r.topics.trim().is_empty() {
                Some("`topics` is empty".to_string())
            } else if r.preset.is_some() && custom {
                Some("name a `preset` or the fields (`value`, `time`, …), not both".into())
            } else if r.preset.is_none() && r.value.is_none() {
                Some("name a `preset` or at least the `value` field".into())
            } else if r.time.is_some() != r.time_format.is_some() {
                Some("`time` and `time_format` go together".into())
            } else {
                None
            };
            if let Some(message) = problem {
                return Err(ConfigError::Invalid {
                    field,
                    message: format!("{at}: {message}"),
                });
            }
        }
        if let Some(h) = &self.sparkplug.host_id
            && (h.is_empty() || h.contains(['/', '+', '#']))
        {
            return Err(ConfigError::Invalid {
                field: "sparkplug.host_id",
                message: format!("`{h}` must be one topic level (no '/', '+' or '#')"),
            });
        }
        if !(1..=10_000).contains(&self.mes.catch_up_page_events) {
            return Err(ConfigError::Invalid {
                field: "mes.catch_up_page_events",
                message: format!("{} is not in 1..=10000", self.mes.catch_up_page_events),
            });
        }
        if let Some(u) = &self.mes.api_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(ConfigError::Invalid {
                    field: "mes.api_url",
                    message: format!("`{u}`: use an http:// or https:// URL"),
                });
            }
            if u.starts_with("https://") && self.mes.ca_file.is_none() {
                return Err(ConfigError::Invalid {
                    field: "mes.ca_file",
                    message: format!(
                        "`{u}` is HTTPS: name the CA (PEM) that signed the MES's certificate"
                    ),
                });
            }
        }
        if let Some(e) = &self.opcua.endpoint
            && self.opcua.enabled
            && self.opcua.security_policy == "None"
            && !self.opcua.allow_insecure
            && !is_loopback_endpoint(e)
        {
            return Err(ConfigError::Invalid {
                field: "opcua.security_policy",
                message: format!(
                    "`None` to {e}, which is not on this machine: anyone on the network could \
                     read and forge its values. Use Basic256Sha256 or Aes256Sha256RsaPss with \
                     SignAndEncrypt, or set [opcua] allow_insecure = true to accept the risk"
                ),
            });
        }
        if self.history.keyframe_interval_s == 0 {
            return Err(ConfigError::Invalid {
                field: "history.keyframe_interval_s",
                message: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

fn parse_bool(name: &'static str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::Env {
            name,
            value: v.to_string(),
            message: "expected true/false".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_policy_none_is_refused_off_this_machine_unless_allowed() {
        for (e, local) in [
            ("opc.tcp://127.0.0.1:4840/", true),
            ("opc.tcp://localhost:4840", true),
            ("opc.tcp://[::1]:4840/x", true),
            ("opc.tcp://plc-7.plant.local:4840/", false),
            ("opc.tcp://10.0.3.17:4840", false),
        ] {
            assert_eq!(is_loopback_endpoint(e), local, "{e}");
        }
        // The shipped layout and registry, so that only the OPC UA part fails.
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut cfg = AppConfig::default();
        cfg.plant.scene = root.join("scenes/demo-plant.glb");
        cfg.plant.registry = root.join("scenes/demo-plant.toml");
        cfg.opcua.endpoint = Some("opc.tcp://10.0.3.17:4840/".into());
        let e = cfg
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("opcua.security_policy")
                && e.contains("10.0.3.17")
                && e.contains("allow_insecure"),
            "{e}"
        );
        cfg.opcua.allow_insecure = true;
        assert!(cfg.validate().is_ok());
        cfg.opcua.allow_insecure = false;
        cfg.opcua.security_policy = "Basic256Sha256".into();
        cfg.opcua.security_mode = "SignAndEncrypt".into();
        assert!(cfg.validate().is_ok());
        cfg.opcua.endpoint = Some("opc.tcp://127.0.0.1:4840/".into());
        cfg.opcua.security_policy = "None".into();
        cfg.opcua.security_mode = "None".into();
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn file_then_environment_override_defaults() {
        let cfg = AppConfig::from_toml(
            "[plant]\nscene = \"a.glb\"\nregistry = \"a.toml\"\n[window]\nwidth_px = 800\n",
            Path::new("/etc/mz/mezzanine.toml"),
        )
        .expect("valid config");
        assert_eq!(cfg.plant.scene, PathBuf::from("/etc/mz/a.glb"));
        assert_eq!(cfg.window.width_px, 800);
        assert_eq!(cfg.window.height_px, 900);
        let mut cfg = cfg;
        cfg.apply_env(|k| (k == "MEZZANINE_SHADOWS").then(|| "off".to_string()))
            .expect("valid env");
        assert!(!cfg.render.shadows);
        let err = cfg
            .apply_env(|k| (k == "MEZZANINE_SHADOWS").then(|| "maybe".to_string()))
            .expect_err("bad bool");
        assert!(err.to_string().contains("MEZZANINE_SHADOWS=maybe"));
    }

    #[test]
    fn unknown_keys_are_refused_with_the_file_name() {
        let err = AppConfig::from_toml("[plant]\nscen = \"x\"\n", Path::new("m.toml"))
            .expect_err("unknown key");
        let msg = err.to_string();
        assert!(msg.starts_with("m.toml:"), "{msg}");
        assert!(msg.contains("scen"), "{msg}");
    }

    #[test]
    fn the_source_time_window_is_read_and_a_bad_one_is_named() {
        let cfg = AppConfig::from_toml(
            "[ingest]\nearliest_source_time = \"2020-06-01T00:00:00+02:00\"\n",
            Path::new("m.toml"),
        )
        .expect("valid config");
        assert_eq!(
            cfg.ingest.earliest_source_us().ok(),
            Some(1_590_962_400_000_000)
        );
        assert_eq!(cfg.ingest.max_source_ahead_s, 300);
        let cfg = AppConfig::from_toml(
            "[ingest]\nearliest_source_time = \"2020-06-01\"\n",
            Path::new("m.toml"),
        )
        .expect("parses");
        let err = cfg.validate().expect_err("no offset");
        assert!(
            err.to_string()
                .starts_with("ingest.earliest_source_time: `2020-06-01` is not an RFC 3339 time"),
            "{err}"
        );
    }

    #[test]
    fn the_installation_id_is_made_once_and_kept_and_roles_get_their_own_client() {
        let dir = tempfile::tempdir().expect("dir");
        let a = installation_id(dir.path()).expect("made");
        assert_eq!(a.len(), 16, "{a}");
        assert_eq!(installation_id(dir.path()).expect("kept"), a);
        let other = tempfile::tempdir().expect("dir");
        assert_ne!(installation_id(other.path()).expect("made"), a);
        let mut m = MqttConfig::default();
        let app = m.client_id_for(MqttRole::App).expect("app");
        let rec = m.client_id_for(MqttRole::Record).expect("record");
        assert_eq!(rec, format!("{app}-record"));
        m.client_id = Some("line-1-twin".into());
        assert_eq!(
            m.client_id_for(MqttRole::Record).expect("configured"),
            "line-1-twin"
        );
    }
}
