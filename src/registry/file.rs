//! The registry file: TOML text in, a validated [`Registry`] out.
//!
//! Every asset is described once: id, ISA-95 path, ISO 23247 element kind,
//! glTF node, its properties (each with a unit, an MQTT topic and/or an
//! OPC UA node id) and its nominal parameters with units. Bad input is
//! refused with every problem listed as `file:line:column: field: message`.
//!
//! This file depends on std, serde and toml only: `build.rs` includes it to
//! check the shipped scenes against their registries at compile time.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The registry format this build reads and writes.
pub const REGISTRY_FORMAT_VERSION: u32 = 1;

/// Units a property or nominal parameter may carry (UCUM-style codes).
pub const KNOWN_UNITS: &[&str] = &[
    "1", "%", "count", "s", "ms", "min", "h", "Hz", "rpm", "degC", "K", "um", "mm", "m", "mm/s",
    "m/s", "m/s2", "mm/min", "m/min", "W", "kW", "kWh", "A", "V", "Pa", "kPa", "bar", "l/min", "g",
    "kg", "N", "Nm", "parts/h",
];

/// The units of a nominal time (`ideal_cycle_time`, `transport_time`,
/// `changeover_time`).
pub const TIME_UNITS: &[&str] = &["ms", "s", "min", "h"];

/// Everything that can go wrong reading a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read registry {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}", format_problems(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

/// One validation problem, located in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    /// Dotted path of the offending field, e.g. `asset[3].property[1].unit`.
    pub field: String,
    pub message: String,
}

fn format_problems(path: &Path, problems: &[Problem]) -> String {
    let mut out = format!(
        "{}: registry refused, {} problem(s):",
        path.display(),
        problems.len()
    );
    for p in problems {
        out.push_str(&format!(
            "\n  {}:{}:{}: {}: {}",
            path.display(),
            p.line,
            p.column,
            p.field,
            p.message
        ));
    }
    out
}

/// ISO 23247-2 observable manufacturing element kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OmeKind {
    Equipment,
    Material,
    Personnel,
    Process,
    Facility,
    Environment,
    Product,
}

impl fmt::Display for OmeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            OmeKind::Equipment => "equipment",
            OmeKind::Material => "material",
            OmeKind::Personnel => "personnel",
            OmeKind::Process => "process",
            OmeKind::Facility => "facility",
            OmeKind::Environment => "environment",
            OmeKind::Product => "product",
        };
        f.write_str(s)
    }
}

/// ISA-95 equipment hierarchy: enterprise / site / area / work center / work unit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Isa95Path {
    pub enterprise: String,
    pub site: String,
    pub area: String,
    pub work_center: String,
    pub work_unit: String,
}

impl Isa95Path {
    pub const LEVELS: [&'static str; 5] =
        ["enterprise", "site", "area", "work center", "work unit"];

    fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('/').map(str::trim).collect();
        if parts.len() != 5 || parts.iter().any(|p| p.is_empty()) {
            return Err(format!(
                "`{s}` must have five non-empty levels: enterprise/site/area/work_center/work_unit"
            ));
        }
        Ok(Self {
            enterprise: parts[0].to_string(),
            site: parts[1].to_string(),
            area: parts[2].to_string(),
            work_center: parts[3].to_string(),
            work_unit: parts[4].to_string(),
        })
    }

    /// The levels from enterprise down to work unit.
    pub fn levels(&self) -> [&str; 5] {
        [
            &self.enterprise,
            &self.site,
            &self.area,
            &self.work_center,
            &self.work_unit,
        ]
    }
}

impl fmt::Display for Isa95Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.levels().join("/"))
    }
}

/// A value with its unit.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Quantity {
    pub value: f64,
    pub unit: String,
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.value, self.unit)
    }
}

/// How a property's MQTT payloads are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// `{"value": …, "ts_us": …}` or a bare scalar.
    #[default]
    Json,
    /// Binary spectrum frame (see `ingest::decode`).
    Spectrum,
}

/// One observable property of an asset and where it is published.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyRecord {
    pub name: String,
    pub unit: String,
    pub encoding: Encoding,
    pub mqtt: Option<String>,
    pub opcua: Option<String>,
    /// The Sparkplug metric that carries it when its name differs from the
    /// property's (folder-style names such as `Spindle/Speed`).
    pub sparkplug_metric: Option<String>,
    /// How often a healthy source updates it; beyond that the value is stale.
    pub expected_period_ms: Option<u64>,
}

/// One asset, described once.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetRecord {
    pub id: String,
    pub name: String,
    /// Equipment class, e.g. `cnc_mill`, `robot`, `conveyor`.
    pub class: String,
    pub iso23247: OmeKind,
    pub isa95: Isa95Path,
    pub gltf_node: String,
    /// Sparkplug B source (`group/edge[/device]`) publishing this asset's
    /// metrics, matched to properties by `sparkplug_metric`, else by name.
    pub sparkplug: Option<String>,
    pub properties: Vec<PropertyRecord>,
    pub nominal: BTreeMap<String, Quantity>,
}

/// Header facts about the plant the registry describes.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlantInfo {
    pub name: String,
    /// IANA time zone of the site, e.g. `Europe/Paris`.
    pub time_zone: String,
}

/// A validated registry.
#[derive(Debug, Clone, PartialEq)]
pub struct Registry {
    pub version: u32,
    pub plant: PlantInfo,
    pub assets: Vec<AssetRecord>,
    pub source: PathBuf,
}

// ---- raw, span-carrying form straight from serde -------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    version: Spanned<u32>,
    plant: PlantInfo,
    #[serde(default, rename = "asset")]
    assets: Vec<RawAsset>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAsset {
    id: Spanned<String>,
    name: String,
    class: String,
    iso23247: OmeKind,
    isa95: Spanned<String>,
    gltf_node: Spanned<String>,
    sparkplug: Option<Spanned<String>>,
    #[serde(default, rename = "property")]
    properties: Vec<RawProperty>,
    #[serde(default)]
    nominal: BTreeMap<String, Spanned<Quantity>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProperty {
    name: Spanned<String>,
    unit: Spanned<String>,
    mqtt: Option<Spanned<String>>,
    opcua: Option<Spanned<String>>,
    sparkplug_metric: Option<Spanned<String>>,
    expected_period_ms: Option<u64>,
    #[serde(default)]
    encoding: Encoding,
}

/// Byte offset → 1-based (line, column).
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, column)
}

struct Collector<'a> {
    text: &'a str,
    problems: Vec<Problem>,
}

impl Collector<'_> {
    fn push<T>(&mut self, at: &Spanned<T>, field: String, message: String) {
        let (line, column) = line_col(self.text, at.span().start);
        self.problems.push(Problem {
            line,
            column,
            field,
            message,
        });
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// Read and validate a registry file.
pub fn load_registry(path: &Path) -> Result<Registry, RegistryError> {
    let text = std::fs::read_to_string(path).map_err(|source| RegistryError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_registry(&text, path)
}

/// Validate registry text; `path` is used in messages only.
pub fn parse_registry(text: &str, path: &Path) -> Result<Registry, RegistryError> {
    let raw: RawRegistry = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map_or((0, 0), |s| line_col(text, s.start));
        RegistryError::Syntax {
            path: path.to_path_buf(),
            line,
            column,
            message: e.message().trim().to_string(),
        }
    })?;

    let mut c = Collector {
        text,
        problems: Vec::new(),
    };
    if *raw.version.get_ref() != REGISTRY_FORMAT_VERSION {
        c.push(
            &raw.version,
            "version".into(),
            format!(
                "registry format {} is not supported (this build reads version {})",
                raw.version.get_ref(),
                REGISTRY_FORMAT_VERSION
            ),
        );
    }

    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut nodes: HashMap<&str, usize> = HashMap::new();
    let mut topics: HashMap<&str, (usize, String)> = HashMap::new();
    let mut opc_nodes: HashMap<&str, (usize, String)> = HashMap::new();
    let mut sparkplug_ids: HashMap<&str, usize> = HashMap::new();

    for (ai, a) in raw.assets.iter().enumerate() {
        let id = a.id.get_ref().as_str();
        if !valid_id(id) {
            c.push(
                &a.id,
                format!("asset[{ai}].id"),
                format!("`{id}` is not a valid id (letters, digits, '-', '_', '.')"),
            );
        }
        if let Some(first) = ids.insert(id, ai) {
            c.push(
                &a.id,
                format!("asset[{ai}].id"),
                format!("duplicate asset id `{id}` (first used by asset[{first}])"),
            );
        }
        if let Err(msg) = Isa95Path::parse(a.isa95.get_ref()) {
            c.push(&a.isa95, format!("asset[{ai}].isa95"), msg);
        }
        let node = a.gltf_node.get_ref().as_str();
        if node.is_empty() {
            c.push(
                &a.gltf_node,
                format!("asset[{ai}].gltf_node"),
                "must name a glTF node".into(),
            );
        } else if let Some(first) = nodes.insert(node, ai) {
            c.push(
                &a.gltf_node,
                format!("asset[{ai}].gltf_node"),
                format!("glTF node `{node}` is already bound to asset[{first}]"),
            );
        }

        if let Some(sp) = &a.sparkplug {
            let v = sp.get_ref().as_str();
            let parts: Vec<&str> = v.split('/').collect();
            if !(2..=3).contains(&parts.len())
                || parts.iter().any(|p| p.is_empty() || p.contains(['+', '#']))
            {
                c.push(
                    sp,
                    format!("asset[{ai}].sparkplug"),
                    format!("`{v}` must be group/edge_node or group/edge_node/device"),
                );
            } else if let Some(first) = sparkplug_ids.insert(v, ai) {
                c.push(
                    sp,
                    format!("asset[{ai}].sparkplug"),
                    format!("Sparkplug source `{v}` is already claimed by asset[{first}]"),
                );
            }
        }
        let mut prop_names: HashMap<&str, usize> = HashMap::new();
        // Metric name → the property it feeds (explicit, else the name).
        let mut metrics: HashMap<&str, &str> = HashMap::new();
        for (pi, p) in a.properties.iter().enumerate() {
            let field = format!("asset[{ai}].property[{pi}]");
            let pname = p.name.get_ref().as_str();
            if !valid_id(pname) {
                c.push(
                    &p.name,
                    format!("{field}.name"),
                    format!("`{pname}` is not a valid property name"),
                );
            }
            if prop_names.insert(pname, pi).is_some() {
                c.push(
                    &p.name,
                    format!("{field}.name"),
                    format!("asset `{id}` already has a property `{pname}`"),
                );
            }
            check_unit(&mut c, &p.unit, format!("{field}.unit"));
            if let Some(m) = &p.sparkplug_metric {
                let metric = m.get_ref().as_str();
                if a.sparkplug.is_none() {
                    c.push(
                        m,
                        format!("{field}.sparkplug_metric"),
                        "the asset has no `sparkplug` source to read it from".into(),
                    );
                } else if metric.trim().is_empty() {
                    c.push(
                        m,
                        format!("{field}.sparkplug_metric"),
                        "an empty metric name".into(),
                    );
                }
            }
            let metric = p
                .sparkplug_metric
                .as_ref()
                .map_or(pname, |m| m.get_ref().as_str());
            if a.sparkplug.is_some()
                && let Some(other) = metrics.insert(metric, pname)
            {
                let at = p.sparkplug_metric.as_ref().unwrap_or(&p.name);
                c.push(
                    at,
                    format!("{field}.sparkplug_metric"),
                    format!("metric `{metric}` already feeds property `{other}`"),
                );
            }
            if p.mqtt.is_none() && p.opcua.is_none() && a.sparkplug.is_none() {
                c.push(
                    &p.name,
                    field.clone(),
                    format!(
                        "property `{pname}` has neither an `mqtt` topic nor an `opcua` node, and the asset no `sparkplug` source"
                    ),
                );
            }
            if let Some(t) = &p.mqtt {
                let topic = t.get_ref().as_str();
                if topic.is_empty() || topic.contains(['+', '#']) || topic.starts_with('/') {
                    c.push(
                        t,
                        format!("{field}.mqtt"),
                        format!(
                            "`{topic}` must be a concrete topic (no wildcards, no leading '/')"
                        ),
                    );
                }
                let who = format!("{id}.{pname}");
                if let Some((_, other)) = topics.insert(topic, (ai, who)) {
                    c.push(
                        t,
                        format!("{field}.mqtt"),
                        format!("topic `{topic}` is already claimed by `{other}`"),
                    );
                }
            }
            if let Some(n) = &p.opcua {
                let nid = n.get_ref().as_str();
                if let Err(why) = super::node_id::RegistryNodeId::parse(nid) {
                    c.push(
                        n,
                        format!("{field}.opcua"),
                        format!(
                            "`{nid}` is not an OPC UA node id like \
                             `nsu=urn:acme:plc;s=Line1.Mill01.Spindle.Speed` or `ns=2;i=1001`: {why}"
                        ),
                    );
                }
                let who = format!("{id}.{pname}");
                if let Some((_, other)) = opc_nodes.insert(nid, (ai, who)) {
                    c.push(
                        n,
                        format!("{field}.opcua"),
                        format!("OPC UA node `{nid}` is already claimed by `{other}`"),
                    );
                }
            }
        }
        for (key, q) in &a.nominal {
            let unit = Spanned::new(q.span(), q.get_ref().unit.clone());
            check_unit(&mut c, &unit, format!("asset[{ai}].nominal.{key}.unit"));
            let (v, u) = (q.get_ref().value, q.get_ref().unit.as_str());
            if !v.is_finite() {
                c.push(
                    q,
                    format!("asset[{ai}].nominal.{key}.value"),
                    "must be a finite number".into(),
                );
            }
            // The parameters the what-if model reads: a time, a count.
            let problem = match key.as_str() {
                "ideal_cycle_time" | "transport_time" | "changeover_time"
                    if !TIME_UNITS.contains(&u) =>
                {
                    Some(format!(
                        "is a time: unit must be one of {TIME_UNITS:?}, not `{u}`"
                    ))
                }
                "ideal_cycle_time" if v <= 0.0 => Some("must be > 0".into()),
                "transport_time" | "changeover_time" if v < 0.0 => Some("must be ≥ 0".into()),
                "queue_capacity" if u != "count" => Some(format!(
                    "is a number of lots: unit must be `count`, not `{u}`"
                )),
                "queue_capacity" if v < 0.0 || v.fract() != 0.0 => {
                    Some("must be a whole number ≥ 0".into())
                }
                _ => None,
            };
            if let Some(p) = problem {
                c.push(q, format!("asset[{ai}].nominal.{key}"), p);
            }
        }
    }

    if !c.problems.is_empty() {
        return Err(RegistryError::Invalid {
            path: path.to_path_buf(),
            problems: c.problems,
        });
    }

    let assets = raw
        .assets
        .into_iter()
        .map(|a| AssetRecord {
            id: a.id.into_inner(),
            name: a.name,
            class: a.class,
            iso23247: a.iso23247,
            // Checked above: parsing cannot fail here, but stay total anyway.
            isa95: Isa95Path::parse(a.isa95.get_ref()).unwrap_or(Isa95Path {
                enterprise: String::new(),
                site: String::new(),
                area: String::new(),
                work_center: String::new(),
                work_unit: String::new(),
            }),
            gltf_node: a.gltf_node.into_inner(),
            sparkplug: a.sparkplug.map(Spanned::into_inner),
            properties: a
                .properties
                .into_iter()
                .map(|p| PropertyRecord {
                    name: p.name.into_inner(),
                    unit: p.unit.into_inner(),
                    encoding: p.encoding,
                    mqtt: p.mqtt.map(Spanned::into_inner),
                    opcua: p.opcua.map(Spanned::into_inner),
                    sparkplug_metric: p.sparkplug_metric.map(Spanned::into_inner),
                    expected_period_ms: p.expected_period_ms,
                })
                .collect(),
            nominal: a
                .nominal
                .into_iter()
                .map(|(k, v)| (k, v.into_inner()))
                .collect(),
        })
        .collect();

    Ok(Registry {
        version: raw.version.into_inner(),
        plant: raw.plant,
        assets,
        source: path.to_path_buf(),
    })
}

fn check_unit(c: &mut Collector<'_>, unit: &Spanned<String>, field: String) {
    let u = unit.get_ref().as_str();
    if u.trim().is_empty() {
        c.push(unit, field, "a unit is required".into());
    } else if !KNOWN_UNITS.contains(&u) {
        c.push(
            unit,
            field,
            format!("unknown unit `{u}` (known: {})", KNOWN_UNITS.join(", ")),
        );
    }
}

impl Registry {
    /// Serialize back to the file format (used by the demo-plant generator).
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("version = {}\n\n", self.version));
        out.push_str("[plant]\n");
        out.push_str(&format!("name = {}\n", toml_str(&self.plant.name)));
        out.push_str(&format!(
            "time_zone = {}\n",
            toml_str(&self.plant.time_zone)
        ));
        for a in &self.assets {
            out.push_str("\n[[asset]]\n");
            out.push_str(&format!("id = {}\n", toml_str(&a.id)));
            out.push_str(&format!("name = {}\n", toml_str(&a.name)));
            out.push_str(&format!("class = {}\n", toml_str(&a.class)));
            out.push_str(&format!("iso23247 = \"{}\"\n", a.iso23247));
            out.push_str(&format!("isa95 = {}\n", toml_str(&a.isa95.to_string())));
            out.push_str(&format!("gltf_node = {}\n", toml_str(&a.gltf_node)));
            if let Some(sp) = &a.sparkplug {
                out.push_str(&format!("sparkplug = {}\n", toml_str(sp)));
            }
            if !a.nominal.is_empty() {
                out.push_str("\n[asset.nominal]\n");
                for (k, q) in &a.nominal {
                    out.push_str(&format!(
                        "{k} = {{ value = {:?}, unit = {} }}\n",
                        q.value,
                        toml_str(&q.unit)
                    ));
                }
            }
            for p in &a.properties {
                out.push_str("\n[[asset.property]]\n");
                out.push_str(&format!("name = {}\n", toml_str(&p.name)));
                out.push_str(&format!("unit = {}\n", toml_str(&p.unit)));
                if p.encoding == Encoding::Spectrum {
                    out.push_str("encoding = \"spectrum\"\n");
                }
                if let Some(t) = &p.mqtt {
                    out.push_str(&format!("mqtt = {}\n", toml_str(t)));
                }
                if let Some(n) = &p.opcua {
                    out.push_str(&format!("opcua = {}\n", toml_str(n)));
                }
                if let Some(m) = &p.sparkplug_metric {
                    out.push_str(&format!("sparkplug_metric = {}\n", toml_str(m)));
                }
                if let Some(ms) = p.expected_period_ms {
                    out.push_str(&format!("expected_period_ms = {ms}\n"));
                }
            }
        }
        out
    }
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}
