//! Payload decoders: bytes in, a [`Decoded`] value (or a reason to dead-letter
//! it) out. Also the matching encoders the demo plant publishes with.
//!
//! - JSON: `{"value": 1234.5, "ts_us": 1764000000000000, "quality": "good",
//!   "reason": "…"}`; `ts` in milliseconds is accepted too, and a bare scalar
//!   (`1234.5`, `"running"`, `true`) is a value stamped on receipt. Other
//!   conventions (field names, nesting, time formats) through a
//!   [`JsonLayout`] (`payload`).
//! - Spectrum (binary, little endian): `b"SPEC"`, u16 version (1), u16 bin
//!   count, f32 bin width in Hz, i64 source time in µs, then the f32 bins.

use std::sync::Arc;

use serde_json::Value;

use super::payload::{JsonLayout, TIME_LIKE_FIELDS};
use super::sample::{Quality, SampleValue};
use crate::config::TimeFormat;

/// Why a payload could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("payload is not JSON: {0}")]
    NotJson(String),
    #[error("JSON object has no `{0}`")]
    MissingValue(String),
    #[error("`value` is {0}, expected a number, boolean or string")]
    WrongType(&'static str),
    #[error("`value` is text but the property is measured in `{unit}`")]
    TextForQuantity { unit: String },
    #[error("`{field}` is not a valid {expected}")]
    BadField { field: String, expected: String },
    #[error("spectrum payload truncated: {got} of {need} bytes")]
    Truncated { got: usize, need: usize },
    #[error("spectrum payload does not start with SPEC")]
    BadMagic,
    #[error("spectrum format version {0} is not supported")]
    UnsupportedVersion(u16),
    #[error("not a Sparkplug B payload: {0}")]
    NotSparkplug(String),
}

/// A decoded payload, before identity is attached.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub value: SampleValue,
    pub source_ts_us: Option<i64>,
    pub quality: Quality,
    pub reason: Option<String>,
    /// Without a source time: a field that looks like one but that the
    /// payload layout does not read (e.g. `timestamp` under the default).
    pub unread_time_field: Option<String>,
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn scalar(v: Value, unit: &str) -> Result<SampleValue, DecodeError> {
    match v {
        // A big integer keeps every digit; others are doubles.
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Ok(SampleValue::whole(i)),
            (None, Some(u)) => Ok(SampleValue::whole_u64(u)),
            _ => n
                .as_f64()
                .map(SampleValue::Number)
                .ok_or(DecodeError::WrongType("a number out of range")),
        },
        Value::Bool(b) => Ok(SampleValue::Bool(b)),
        Value::String(s) if unit == "1" => Ok(SampleValue::Text(s)),
        Value::String(_) => Err(DecodeError::TextForQuantity { unit: unit.into() }),
        other => Err(DecodeError::WrongType(json_type(&other))),
    }
}

/// Decode a JSON payload for a property measured in `unit`, in the
/// default (`mezzanine`) layout.
pub fn decode_json(payload: &[u8], unit: &str) -> Result<Decoded, DecodeError> {
    decode_json_as(
        payload,
        unit,
        &JsonLayout::preset(crate::config::PayloadPreset::Mezzanine),
    )
}

fn get_path<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k.as_str()))
}

fn bad(path: &[String], expected: &str) -> DecodeError {
    DecodeError::BadField {
        field: path.join("."),
        expected: expected.to_string(),
    }
}

/// A source time in one of the formats, as µs since the Unix epoch.
fn time_us(v: &Value, path: &[String], format: TimeFormat) -> Result<i64, DecodeError> {
    // Whole or fractional counts of a unit; out of range is refused.
    let scaled = |per_us: f64, what: &str| -> Result<i64, DecodeError> {
        if let Some(i) = v.as_i64() {
            return i
                .checked_mul(per_us as i64)
                .ok_or_else(|| bad(path, &format!("{what} (this one overflows microseconds)")));
        }
        match v.as_f64().map(|f| f * per_us) {
            Some(us) if us.is_finite() && us.abs() < 9.2e18 => Ok(us.round() as i64),
            _ => Err(bad(path, what)),
        }
    };
    match format {
        TimeFormat::Us => v
            .as_i64()
            .ok_or_else(|| bad(path, "integer of microseconds")),
        TimeFormat::Ms => scaled(1e3, "time in milliseconds"),
        TimeFormat::S => scaled(1e6, "time in seconds"),
        TimeFormat::Rfc3339 => {
            let text = v
                .as_str()
                .ok_or_else(|| bad(path, "RFC 3339 time (text)"))?;
            text.parse::<jiff::Timestamp>()
                .map(|t| t.as_microsecond())
                .map_err(|_| {
                    bad(
                        path,
                        &format!("RFC 3339 time with a zone offset (got `{text}`)"),
                    )
                })
        }
    }
}

/// Decode a JSON payload for a property measured in `unit`, reading the
/// fields where `layout` says they are. A bare scalar is a value stamped on
/// receipt, whatever the layout.
pub fn decode_json_as(
    payload: &[u8],
    unit: &str,
    layout: &JsonLayout,
) -> Result<Decoded, DecodeError> {
    let v: Value =
        serde_json::from_slice(payload).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    let Value::Object(map) = &v else {
        return Ok(Decoded {
            value: scalar(v, unit)?,
            source_ts_us: None,
            quality: Quality::Good,
            reason: None,
            unread_time_field: None,
        });
    };
    let raw_value = match get_path(&v, &layout.value) {
        Some(x) => x.clone(),
        None if layout.value_from_single_key => {
            let mut others = map.iter().filter(|(k, _)| !layout.reads(k));
            match (others.next(), others.next()) {
                (Some((_, x)), None) => x.clone(),
                _ => return Err(DecodeError::MissingValue(layout.value.join("."))),
            }
        }
        None => return Err(DecodeError::MissingValue(layout.value.join("."))),
    };
    let value = scalar(raw_value, unit)?;
    let mut source_ts_us = None;
    for (p, format) in &layout.times {
        if let Some(t) = get_path(&v, p) {
            source_ts_us = Some(time_us(t, p, *format)?);
            break;
        }
    }
    let quality = match layout
        .quality
        .as_ref()
        .and_then(|p| Some((p, get_path(&v, p)?)))
    {
        None => Quality::Good,
        Some((p, q)) => q
            .as_str()
            .and_then(Quality::parse)
            .ok_or_else(|| bad(p, "quality (good, uncertain, bad)"))?,
    };
    let reason = layout
        .reason
        .as_ref()
        .and_then(|p| get_path(&v, p))
        .and_then(Value::as_str)
        .map(str::to_string);
    let unread_time_field = match source_ts_us {
        Some(_) => None,
        None => map
            .keys()
            .find(|k| TIME_LIKE_FIELDS.contains(&k.as_str()) && !layout.reads(k))
            .cloned(),
    };
    Ok(Decoded {
        value,
        source_ts_us,
        quality,
        reason,
        unread_time_field,
    })
}

/// Encode a JSON payload (the demo plant's publisher).
pub fn encode_json(value: &SampleValue, ts_us: i64, reason: Option<&str>) -> Vec<u8> {
    let v = match value {
        SampleValue::Number(n) => serde_json::json!(n),
        SampleValue::Integer(i) => serde_json::json!(i),
        SampleValue::Bool(b) => serde_json::json!(b),
        SampleValue::Text(s) => serde_json::json!(s),
        SampleValue::Spectrum { .. } => serde_json::json!(null),
    };
    let mut o = serde_json::json!({ "value": v, "ts_us": ts_us });
    if let Some(r) = reason {
        o["reason"] = serde_json::json!(r);
    }
    o.to_string().into_bytes()
}

const SPEC_MAGIC: &[u8; 4] = b"SPEC";
const SPEC_HEADER: usize = 4 + 2 + 2 + 4 + 8;

/// Decode a binary spectrum payload.
pub fn decode_spectrum(payload: &[u8]) -> Result<Decoded, DecodeError> {
    if payload.len() < SPEC_HEADER {
        return Err(DecodeError::Truncated {
            got: payload.len(),
            need: SPEC_HEADER,
        });
    }
    if &payload[0..4] != SPEC_MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let u16_at = |o: usize| u16::from_le_bytes([payload[o], payload[o + 1]]);
    let version = u16_at(4);
    if version != 1 {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let count = usize::from(u16_at(6));
    let bin_hz = f32::from_le_bytes([payload[8], payload[9], payload[10], payload[11]]);
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&payload[12..20]);
    let ts_us = i64::from_le_bytes(ts);
    let need = SPEC_HEADER + count * 4;
    if payload.len() < need {
        return Err(DecodeError::Truncated {
            got: payload.len(),
            need,
        });
    }
    let bins: Arc<[f32]> = payload[SPEC_HEADER..need]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok(Decoded {
        value: SampleValue::Spectrum { bin_hz, bins },
        source_ts_us: Some(ts_us),
        unread_time_field: None,
        quality: Quality::Good,
        reason: None,
    })
}

/// Encode a binary spectrum payload.
pub fn encode_spectrum(bin_hz: f32, bins: &[f32], ts_us: i64) -> Vec<u8> {
    let count = bins.len().min(usize::from(u16::MAX));
    let mut out = Vec::with_capacity(SPEC_HEADER + count * 4);
    out.extend_from_slice(SPEC_MAGIC);
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&(count as u16).to_le_bytes());
    out.extend_from_slice(&bin_hz.to_le_bytes());
    out.extend_from_slice(&ts_us.to_le_bytes());
    for b in &bins[..count] {
        out.extend_from_slice(&b.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_object_scalar_and_millisecond_time() {
        let d = decode_json(
            br#"{"value": 1234.5, "ts_us": 17, "quality": "uncertain"}"#,
            "rpm",
        )
        .expect("decodes");
        assert_eq!(d.value, SampleValue::Number(1234.5));
        assert_eq!(d.source_ts_us, Some(17));
        assert_eq!(d.quality, Quality::Uncertain);
        let d = decode_json(
            br#"{"value": "down", "ts": 5, "reason": "tool breakage"}"#,
            "1",
        )
        .expect("decodes");
        assert_eq!(d.value, SampleValue::Text("down".into()));
        assert_eq!(d.source_ts_us, Some(5000));
        assert_eq!(d.reason.as_deref(), Some("tool breakage"));
        let d = decode_json(b"42", "count").expect("bare scalar");
        assert_eq!((d.value, d.source_ts_us), (SampleValue::Number(42.0), None));
        // Past 2^53 an integer keeps every digit.
        let d = decode_json(br#"{"value": 9007199254740993}"#, "count").expect("big");
        assert_eq!(d.value, SampleValue::Integer(9_007_199_254_740_993));
        let d = decode_json(br#"{"value": 18446744073709551615}"#, "count").expect("u64 max");
        assert_eq!(d.value, SampleValue::Number(18_446_744_073_709_551_615.0));
    }

    #[test]
    fn json_bad_inputs_say_why() {
        assert!(matches!(
            decode_json(br#"{"value": 12"#, "rpm"),
            Err(DecodeError::NotJson(_))
        ));
        assert_eq!(
            decode_json(br#"{"v": 1}"#, "rpm"),
            Err(DecodeError::MissingValue("value".into()))
        );
        assert_eq!(
            decode_json(br#"{"value": [1, 2]}"#, "rpm"),
            Err(DecodeError::WrongType("an array"))
        );
        assert_eq!(
            decode_json(br#"{"value": "fast"}"#, "rpm"),
            Err(DecodeError::TextForQuantity { unit: "rpm".into() })
        );
        assert!(matches!(
            decode_json(br#"{"value": 1, "ts_us": "noon"}"#, "rpm"),
            Err(DecodeError::BadField { field, .. }) if field == "ts_us"
        ));
    }

    #[test]
    fn spectrum_round_trip_and_truncation() {
        let bins = [0.1f32, 2.5, 0.3];
        let bytes = encode_spectrum(12.5, &bins, 99);
        let d = decode_spectrum(&bytes).expect("decodes");
        assert_eq!(d.source_ts_us, Some(99));
        let SampleValue::Spectrum { bin_hz, bins: got } = d.value else {
            panic!("not a spectrum");
        };
        assert_eq!((bin_hz, &got[..]), (12.5, &bins[..]));
        assert_eq!(
            decode_spectrum(&bytes[..bytes.len() - 1]),
            Err(DecodeError::Truncated {
                got: bytes.len() - 1,
                need: bytes.len()
            })
        );
        assert_eq!(
            decode_spectrum(b"SPE"),
            Err(DecodeError::Truncated { got: 3, need: 20 })
        );
        let mut wrong = bytes.clone();
        wrong[0] = b'X';
        assert_eq!(decode_spectrum(&wrong), Err(DecodeError::BadMagic));
        wrong = bytes;
        wrong[4] = 9;
        assert_eq!(
            decode_spectrum(&wrong),
            Err(DecodeError::UnsupportedVersion(9))
        );
    }

    #[test]
    fn milliseconds_that_overflow_microseconds_are_refused_not_a_panic() {
        let e = decode_json(br#"{"value": 1, "ts": 9223372036854775807}"#, "rpm")
            .expect_err("overflow");
        assert_eq!(
            e.to_string(),
            "`ts` is not a valid time in milliseconds (this one overflows microseconds)"
        );
    }
}
