//! JSON payload conventions: the config's `[[mqtt.payload]]` rules in, for
//! each topic the [`JsonLayout`] that says where its value, source time,
//! quality and reason are (read by `decode::decode_json_as`).
//!
//! Real UNS publishers differ: `ts_us`, `timestamp_ms`, ISO 8601 text,
//! nested objects. A rule names a preset or the fields; the first rule
//! whose topic filter matches wins; other topics use the `mezzanine`
//! preset. Time-like fields a layout does not read are reported (once per
//! topic, by the adapter), so a value stamped at arrival is never silent.

use crate::config::{PayloadPreset, PayloadRule, TimeFormat};

/// A dotted path into a JSON object (`data.value` → `["data", "value"]`).
pub type FieldPath = Vec<String>;

fn path(dotted: &str) -> FieldPath {
    dotted.split('.').map(str::to_string).collect()
}

/// Where one convention keeps each part of a sample.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonLayout {
    pub value: FieldPath,
    /// Source-time fields tried in order, each with its format.
    pub times: Vec<(FieldPath, TimeFormat)>,
    pub quality: Option<FieldPath>,
    pub reason: Option<FieldPath>,
    /// UMH's tag form: without `value`, the one key other than the time
    /// fields is the value.
    pub value_from_single_key: bool,
}

/// Field names that usually carry a source time; one that a layout does
/// not read is worth a warning.
pub const TIME_LIKE_FIELDS: &[&str] = &[
    "ts",
    "ts_us",
    "ts_ms",
    "timestamp",
    "timestamp_ms",
    "timestamp_us",
    "time",
    "datetime",
    "sourceTimestamp",
    "SourceTimestamp",
];

impl JsonLayout {
    pub fn preset(p: PayloadPreset) -> Self {
        let base = |times: Vec<(FieldPath, TimeFormat)>| JsonLayout {
            value: path("value"),
            times,
            quality: Some(path("quality")),
            reason: Some(path("reason")),
            value_from_single_key: false,
        };
        match p {
            PayloadPreset::Mezzanine => base(vec![
                (path("ts_us"), TimeFormat::Us),
                (path("ts"), TimeFormat::Ms),
            ]),
            PayloadPreset::Umh => JsonLayout {
                value_from_single_key: true,
                ..base(vec![(path("timestamp_ms"), TimeFormat::Ms)])
            },
            PayloadPreset::Iso => base(vec![
                (path("timestamp"), TimeFormat::Rfc3339),
                (path("time"), TimeFormat::Rfc3339),
            ]),
        }
    }

    /// The layout a config rule describes (validated by the config).
    pub fn from_rule(r: &PayloadRule) -> Self {
        if let Some(p) = r.preset {
            return Self::preset(p);
        }
        JsonLayout {
            value: path(r.value.as_deref().unwrap_or("value")),
            times: match (&r.time, r.time_format) {
                (Some(t), Some(f)) => vec![(path(t), f)],
                _ => Vec::new(),
            },
            quality: r.quality.as_deref().map(path),
            reason: None,
            value_from_single_key: false,
        }
    }

    /// Whether the layout reads this top-level field.
    pub fn reads(&self, field: &str) -> bool {
        let first = |p: &FieldPath| p.first().is_some_and(|f| f == field);
        first(&self.value)
            || self.times.iter().any(|(p, _)| first(p))
            || self.quality.as_ref().is_some_and(first)
            || self.reason.as_ref().is_some_and(first)
    }
}

/// Does an MQTT topic filter (`+` one level, `#` the rest) match `topic`?
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The layouts of a broker's topics: rules in order, then the default.
#[derive(Debug, Clone, PartialEq)]
pub struct PayloadLayouts {
    rules: Vec<(String, JsonLayout)>,
    default: JsonLayout,
}

impl Default for PayloadLayouts {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            default: JsonLayout::preset(PayloadPreset::Mezzanine),
        }
    }
}

impl PayloadLayouts {
    pub fn from_rules(rules: &[PayloadRule]) -> Self {
        Self {
            rules: rules
                .iter()
                .map(|r| (r.topics.trim().to_string(), JsonLayout::from_rule(r)))
                .collect(),
            ..Self::default()
        }
    }

    pub fn for_topic(&self, topic: &str) -> &JsonLayout {
        self.rules
            .iter()
            .find(|(f, _)| topic_matches(f, topic))
            .map_or(&self.default, |(_, l)| l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        assert!(topic_matches("a/#", "a/b/c"));
        assert!(topic_matches("a/+/c", "a/b/c"));
        assert!(!topic_matches("a/+/c", "a/b/d"));
        assert!(!topic_matches("a/b", "a/b/c"));
        assert!(topic_matches("#", "x"));
        assert!(!topic_matches("a/b/c", "a/b"));
    }
}
