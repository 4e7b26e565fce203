//! Sparkplug B: `spBv1.0/<group>/<type>/<edge>/<device>` topics with
//! protobuf payloads in, samples for the asset whose registry entry names
//! that device out (metrics matched to properties by name).
//!
//! The subset handled: NBIRTH/DBIRTH (metric names and aliases are learned),
//! NDATA/DDATA (metrics by name or by a learned alias), scalar datatypes
//! (integers, floats, doubles, booleans, strings). Messages are decoded with
//! prost from the Sparkplug B message shapes declared below (no code
//! generation step).

use std::collections::HashMap;

use prost::Message;

use super::decode::DecodeError;
use super::sample::{Quality, SampleValue};

/// The Sparkplug B payload (the fields this twin reads).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Payload {
    #[prost(uint64, optional, tag = "1")]
    pub timestamp: Option<u64>,
    #[prost(message, repeated, tag = "2")]
    pub metrics: Vec<Metric>,
    #[prost(uint64, optional, tag = "3")]
    pub seq: Option<u64>,
}

/// One Sparkplug B metric.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metric {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(uint64, optional, tag = "2")]
    pub alias: Option<u64>,
    #[prost(uint64, optional, tag = "3")]
    pub timestamp: Option<u64>,
    #[prost(uint32, optional, tag = "4")]
    pub datatype: Option<u32>,
    /// Sent late from the edge node's store-and-forward buffer.
    #[prost(bool, optional, tag = "5")]
    pub is_historical: Option<bool>,
    #[prost(bool, optional, tag = "7")]
    pub is_null: Option<bool>,
    #[prost(oneof = "MetricValue", tags = "10, 11, 12, 13, 14, 15")]
    pub value: Option<MetricValue>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum MetricValue {
    #[prost(uint32, tag = "10")]
    IntValue(u32),
    #[prost(uint64, tag = "11")]
    LongValue(u64),
    #[prost(float, tag = "12")]
    FloatValue(f32),
    #[prost(double, tag = "13")]
    DoubleValue(f64),
    #[prost(bool, tag = "14")]
    BooleanValue(bool),
    #[prost(string, tag = "15")]
    StringValue(String),
}

/// Sparkplug B datatype codes used here.
pub mod datatype {
    pub const INT32: u32 = 3;
    pub const INT64: u32 = 4;
    pub const UINT32: u32 = 7;
    pub const UINT64: u32 = 8;
    pub const FLOAT: u32 = 9;
    pub const DOUBLE: u32 = 10;
    pub const BOOLEAN: u32 = 11;
    pub const STRING: u32 = 12;
}

/// The parts of a Sparkplug topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparkplugTopic<'a> {
    pub group: &'a str,
    pub message_type: &'a str,
    pub edge_node: &'a str,
    pub device: Option<&'a str>,
}

impl SparkplugTopic<'_> {
    /// `group/edge[/device]`: how the registry names the source.
    pub fn source_id(&self) -> String {
        match self.device {
            Some(d) => format!("{}/{}/{}", self.group, self.edge_node, d),
            None => format!("{}/{}", self.group, self.edge_node),
        }
    }
}

pub const NAMESPACE: &str = "spBv1.0";

/// Split a topic in the Sparkplug B namespace; None if it is not one.
pub fn parse_topic(topic: &str) -> Option<SparkplugTopic<'_>> {
    let mut parts = topic.split('/');
    if parts.next()? != NAMESPACE {
        return None;
    }
    let group = parts.next()?;
    let message_type = parts.next()?;
    let edge_node = parts.next()?;
    let device = parts.next();
    if parts.next().is_some() || group.is_empty() || edge_node.is_empty() {
        return None;
    }
    Some(SparkplugTopic {
        group,
        message_type,
        edge_node,
        device,
    })
}

/// One decoded metric, named.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedMetric {
    pub name: String,
    pub value: SampleValue,
    pub ts_ms: Option<u64>,
    pub quality: Quality,
    /// `is_historical`: from the edge node's buffer, not the present.
    pub historical: bool,
}

/// Learns aliases from BIRTH messages, per source; follows each edge
/// node's sequence numbers; notes why an edge node should publish its
/// births again (an alias never announced, a skipped sequence number).
#[derive(Debug, Default)]
pub struct AliasBook {
    by_source: HashMap<String, HashMap<u64, String>>,
    /// Edge node (`group/edge`) → the last `seq` it sent.
    last_seq: HashMap<String, u64>,
    /// Edge node → why a rebirth would help, until taken.
    rebirth_wanted: HashMap<String, String>,
    /// A birth changed the aliases since the last [`AliasBook::save`].
    changed: bool,
}

/// The aliases as kept on disk: source → alias → metric name.
type SavedAliases = std::collections::BTreeMap<String, std::collections::BTreeMap<u64, String>>;

/// Why a metric of a decodable payload was skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct SkippedMetric {
    pub what: String,
    pub reason: String,
}

fn metric_value(m: &Metric) -> Result<SampleValue, String> {
    if m.is_null == Some(true) {
        return Err("null value".into());
    }
    match &m.value {
        Some(MetricValue::IntValue(v)) => Ok(SampleValue::Number(match m.datatype {
            Some(datatype::INT32) => f64::from(*v as i32),
            _ => f64::from(*v),
        })),
        Some(MetricValue::LongValue(v)) => Ok(match m.datatype {
            Some(datatype::INT64) => SampleValue::whole(*v as i64),
            _ => SampleValue::whole_u64(*v),
        }),
        Some(MetricValue::FloatValue(v)) => Ok(SampleValue::Number(f64::from(*v))),
        Some(MetricValue::DoubleValue(v)) => Ok(SampleValue::Number(*v)),
        Some(MetricValue::BooleanValue(b)) => Ok(SampleValue::Bool(*b)),
        Some(MetricValue::StringValue(s)) => Ok(SampleValue::Text(s.clone())),
        None => Err(match m.datatype {
            Some(t) => format!(
                "its datatype {} is not one the twin reads (numbers, booleans and strings)",
                datatype_name(t)
            ),
            None => "it carries no value".into(),
        }),
    }
}

/// A Sparkplug B datatype code as the specification names it.
fn datatype_name(code: u32) -> String {
    let name = match code {
        1 => "Int8",
        2 => "Int16",
        3 => "Int32",
        4 => "Int64",
        5 => "UInt8",
        6 => "UInt16",
        7 => "UInt32",
        8 => "UInt64",
        9 => "Float",
        10 => "Double",
        11 => "Boolean",
        12 => "String",
        13 => "DateTime",
        14 => "Text",
        15 => "UUID",
        16 => "DataSet",
        17 => "Bytes",
        18 => "File",
        19 => "Template",
        20 => "PropertySet",
        21 => "PropertySetList",
        _ => return format!("{code} (unknown)"),
    };
    format!("{name} ({code})")
}

impl AliasBook {
    /// The aliases the last births announced, as saved by a previous run
    /// (absent or unreadable: an empty book, and the error for the log).
    pub fn load(path: &std::path::Path) -> (Self, Option<String>) {
        let mut book = Self::default();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (book, None),
            Err(e) => return (book, Some(format!("{}: {e}", path.display()))),
        };
        match serde_json::from_str::<SavedAliases>(&text) {
            Ok(saved) => {
                book.by_source = saved
                    .into_iter()
                    .map(|(s, m)| (s, m.into_iter().collect()))
                    .collect();
                (book, None)
            }
            Err(e) => (book, Some(format!("{}: {e}", path.display()))),
        }
    }

    /// Writes the aliases when a birth changed them (to a temporary file,
    /// then renamed, so a crash never leaves half a file).
    pub fn save(&mut self, path: &std::path::Path) -> Result<(), String> {
        if !self.changed {
            return Ok(());
        }
        let saved: SavedAliases = self
            .by_source
            .iter()
            .map(|(s, m)| (s.clone(), m.iter().map(|(a, n)| (*a, n.clone())).collect()))
            .collect();
        let text = serde_json::to_string_pretty(&saved).map_err(|e| e.to_string())?;
        let tmp = path.with_extension("json.tmp");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
        self.changed = false;
        Ok(())
    }

    /// Why edge nodes should publish their births again, since the last
    /// call: (`group/edge`, reason).
    pub fn take_rebirth_wanted(&mut self) -> Vec<(String, String)> {
        self.rebirth_wanted.drain().collect()
    }

    /// An edge node or device died: what was learned of it is void until
    /// its next birth.
    pub fn forget(&mut self, topic: &SparkplugTopic<'_>) {
        let source = topic.source_id();
        let before = self.by_source.len();
        if topic.device.is_none() {
            let prefix = format!("{source}/");
            self.by_source
                .retain(|s, _| s != &source && !s.starts_with(&prefix));
            self.last_seq.remove(&source);
        } else {
            self.by_source.remove(&source);
        }
        self.changed |= self.by_source.len() != before;
    }

    /// Follows the edge node's `seq` (0–255, one per message, 0 again at
    /// NBIRTH); a gap means messages were lost.
    fn note_seq(&mut self, topic: &SparkplugTopic<'_>, seq: Option<u64>) {
        let node = format!("{}/{}", topic.group, topic.edge_node);
        let Some(seq) = seq else { return };
        let expected = self.last_seq.get(&node).map(|s| (s + 1) % 256);
        self.last_seq.insert(node.clone(), seq);
        if topic.message_type == "NBIRTH" {
            return;
        }
        match expected {
            Some(e) if e != seq => {
                self.rebirth_wanted.entry(node).or_insert(format!(
                    "sequence number {seq} where {e} was next: messages were lost"
                ));
            }
            // Data from a node whose birth the twin has not seen.
            None if !topic.message_type.ends_with("BIRTH")
                && !self.by_source.contains_key(&topic.source_id()) =>
            {
                self.rebirth_wanted
                    .entry(node)
                    .or_insert("no birth seen since the twin started".into());
            }
            _ => {}
        }
    }

    /// Decode a payload; BIRTH messages teach the aliases used later.
    pub fn decode(
        &mut self,
        topic: &SparkplugTopic<'_>,
        payload: &[u8],
    ) -> Result<(Vec<DecodedMetric>, Vec<SkippedMetric>), DecodeError> {
        let p = Payload::decode(payload).map_err(|e| DecodeError::NotSparkplug(e.to_string()))?;
        let source = topic.source_id();
        let birth = topic.message_type.ends_with("BIRTH");
        self.note_seq(topic, p.seq);
        if birth {
            let learned: HashMap<u64, String> = p
                .metrics
                .iter()
                .filter_map(|m| Some((m.alias?, m.name.clone()?)))
                .collect();
            if self.by_source.get(&source) != Some(&learned) {
                self.changed = true;
                self.by_source.insert(source.clone(), learned);
            }
        }
        let mut out = Vec::new();
        let mut skipped = Vec::new();
        for m in &p.metrics {
            let name = match (&m.name, m.alias) {
                (Some(n), _) => Some(n.clone()),
                (None, Some(a)) => self.by_source.get(&source).and_then(|b| b.get(&a)).cloned(),
                (None, None) => None,
            };
            let Some(name) = name else {
                if m.alias.is_some() {
                    self.rebirth_wanted
                        .entry(format!("{}/{}", topic.group, topic.edge_node))
                        .or_insert("a metric alias it never announced to the twin".into());
                }
                skipped.push(match m.alias {
                    Some(a) => SkippedMetric {
                        what: format!("metric with alias {a}"),
                        reason: format!(
                            "alias {a} was not announced in a BIRTH message from {source} \
                             since the twin started"
                        ),
                    },
                    None => SkippedMetric {
                        what: "metric without a name".into(),
                        reason: "it has neither a name nor an alias".into(),
                    },
                });
                continue;
            };
            match metric_value(m) {
                Ok(value) => out.push(DecodedMetric {
                    name,
                    value,
                    ts_ms: m.timestamp.or(p.timestamp),
                    quality: Quality::Good,
                    historical: m.is_historical == Some(true),
                }),
                Err(reason) => skipped.push(SkippedMetric {
                    what: format!("metric `{name}`"),
                    reason,
                }),
            }
        }
        Ok((out, skipped))
    }
}

/// An `NCMD` payload asking an edge node to publish its births again
/// (`Node Control/Rebirth` = true).
pub fn rebirth_request(ts_ms: u64) -> Vec<u8> {
    Payload {
        timestamp: Some(ts_ms),
        metrics: vec![Metric {
            name: Some("Node Control/Rebirth".into()),
            timestamp: Some(ts_ms),
            datatype: Some(datatype::BOOLEAN),
            value: Some(MetricValue::BooleanValue(true)),
            ..Default::default()
        }],
        seq: None,
    }
    .encode_to_vec()
}

/// Encode a DDATA/DBIRTH payload of named metrics (the demo PLC uses this).
pub fn encode(metrics: &[(&str, &SampleValue)], ts_ms: u64, seq: u64) -> Vec<u8> {
    let metrics = metrics
        .iter()
        .filter_map(|(name, v)| {
            let (datatype, value) = match v {
                SampleValue::Number(n) => (datatype::DOUBLE, MetricValue::DoubleValue(*n)),
                SampleValue::Integer(i) => (datatype::INT64, MetricValue::LongValue(*i as u64)),
                SampleValue::Bool(b) => (datatype::BOOLEAN, MetricValue::BooleanValue(*b)),
                SampleValue::Text(t) => (datatype::STRING, MetricValue::StringValue(t.clone())),
                SampleValue::Spectrum { .. } => return None,
            };
            Some(Metric {
                name: Some((*name).to_string()),
                alias: None,
                timestamp: Some(ts_ms),
                datatype: Some(datatype),
                is_historical: None,
                is_null: None,
                value: Some(value),
            })
        })
        .collect();
    Payload {
        timestamp: Some(ts_ms),
        metrics,
        seq: Some(seq % 256),
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic() -> SparkplugTopic<'static> {
        parse_topic("spBv1.0/acme/DDATA/line1/robot01").expect("valid topic")
    }

    #[test]
    fn topics() {
        let t = topic();
        assert_eq!(t.source_id(), "acme/line1/robot01");
        assert_eq!(
            parse_topic("spBv1.0/acme/NDATA/edge").map(|t| t.device),
            Some(None)
        );
        assert_eq!(parse_topic("acme/lyon/x"), None);
        assert_eq!(parse_topic("spBv1.0/acme"), None);
    }

    #[test]
    fn round_trip_and_aliases() {
        let mut book = AliasBook::default();
        let bytes = encode(
            &[
                ("power", &SampleValue::Number(3.5)),
                ("state", &SampleValue::Text("idle".into())),
            ],
            1_000,
            7,
        );
        let (m, skipped) = book.decode(&topic(), &bytes).expect("decodes");
        assert!(skipped.is_empty());
        assert_eq!(m[0].name, "power");
        assert_eq!(m[0].value, SampleValue::Number(3.5));
        assert_eq!(m[1].value, SampleValue::Text("idle".into()));
        assert_eq!(m[0].ts_ms, Some(1_000));

        // A BIRTH announces alias 5 = "power"; DATA then uses the alias only.
        let birth = Payload {
            timestamp: Some(1),
            seq: Some(0),
            metrics: vec![Metric {
                name: Some("power".into()),
                alias: Some(5),
                datatype: Some(datatype::FLOAT),
                value: Some(MetricValue::FloatValue(1.0)),
                ..Default::default()
            }],
        };
        let birth_topic = parse_topic("spBv1.0/acme/DBIRTH/line1/robot01").expect("topic");
        book.decode(&birth_topic, &birth.encode_to_vec())
            .expect("birth");
        let data = Payload {
            timestamp: Some(2),
            seq: Some(1),
            metrics: vec![
                Metric {
                    alias: Some(5),
                    datatype: Some(datatype::INT32),
                    value: Some(MetricValue::IntValue((-4i32) as u32)),
                    ..Default::default()
                },
                Metric {
                    alias: Some(9),
                    value: Some(MetricValue::IntValue(1)),
                    ..Default::default()
                },
            ],
        };
        let (m, skipped) = book.decode(&topic(), &data.encode_to_vec()).expect("data");
        assert_eq!(
            (m[0].name.as_str(), &m[0].value),
            ("power", &SampleValue::Number(-4.0))
        );
        assert_eq!(skipped[0].what, "metric with alias 9");
        assert_eq!(
            skipped[0].reason,
            "alias 9 was not announced in a BIRTH message from acme/line1/robot01 since the \
             twin started"
        );
    }

    #[test]
    fn truncated_and_wrong_payloads_are_errors() {
        let bytes = encode(&[("power", &SampleValue::Number(3.5))], 1_000, 7);
        assert!(matches!(
            AliasBook::default().decode(&topic(), &bytes[..bytes.len() - 6]),
            Err(DecodeError::NotSparkplug(_))
        ));
        assert!(matches!(
            AliasBook::default().decode(&topic(), br#"{"value": 1}"#),
            Err(DecodeError::NotSparkplug(_))
        ));
    }
}
