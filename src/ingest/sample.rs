//! The normalized sample every adapter produces, whatever the wire format.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::registry::PropertyRef;

/// Wall-clock time in microseconds since the Unix epoch (UTC).
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// 2000-01-01T00:00:00Z in µs since the Unix epoch: no plant data is older.
pub const EARLIEST_SOURCE_US: i64 = 946_684_800_000_000;

/// Which source times are believed. A PLC with an unset or wrong clock, or
/// milliseconds sent as microseconds, would otherwise freeze a property's
/// live value (older samples lose to the far-future one) and poison the
/// recorder's keyframe watermark. A sample outside the window becomes a
/// dead letter naming both times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceTimeWindow {
    /// Nothing before this (µs since the Unix epoch).
    pub earliest_us: i64,
    /// Nothing more than this far ahead of its receipt (µs).
    pub max_ahead_us: i64,
}

impl Default for SourceTimeWindow {
    fn default() -> Self {
        Self {
            earliest_us: EARLIEST_SOURCE_US,
            max_ahead_us: 300_000_000,
        }
    }
}

impl SourceTimeWindow {
    /// Ok when `source_us` is plausible for a sample received at
    /// `received_us`; else the reason, with both times.
    pub fn check(&self, source_us: i64, received_us: i64) -> Result<(), String> {
        if source_us < self.earliest_us {
            return Err(format!(
                "source time {} is before {}, the earliest believed (a clock that was never set?)",
                time_label(source_us),
                time_label(self.earliest_us)
            ));
        }
        if source_us > received_us.saturating_add(self.max_ahead_us) {
            return Err(format!(
                "source time {} is {} s ahead of its receipt at {} (at most {} s believed): \
                 a wrong clock, or milliseconds sent as microseconds?",
                time_label(source_us),
                source_us.saturating_sub(received_us) / 1_000_000,
                time_label(received_us),
                self.max_ahead_us / 1_000_000
            ));
        }
        Ok(())
    }
}

/// A time in µs since the Unix epoch as RFC 3339 UTC, or the raw number
/// when it is past what a calendar can show.
pub fn time_label(us: i64) -> String {
    jiff::Timestamp::from_microsecond(us)
        .map_or_else(|_| format!("{us} µs since 1970"), |t| t.to_string())
}

/// A decoded value.
#[derive(Debug, Clone, PartialEq)]
pub enum SampleValue {
    Number(f64),
    /// A 64-bit integer a double cannot hold exactly (beyond 2^53), as an
    /// OPC UA Int64/UInt64, a Sparkplug Int64/UInt64 or a JSON integer
    /// sent it. Smaller integers are `Number`s (exact in a double).
    Integer(i64),
    Bool(bool),
    Text(String),
    /// A vibration (or other) spectrum: equally spaced bins from 0 Hz.
    Spectrum {
        bin_hz: f32,
        bins: Arc<[f32]>,
    },
}

/// Integers up to this magnitude are exact as a double.
pub const EXACT_IN_F64: i64 = 1 << 53;

impl SampleValue {
    /// A whole number as the source sent it: a `Number` while a double
    /// holds it exactly, else an `Integer`.
    pub fn whole(v: i64) -> SampleValue {
        if v.unsigned_abs() <= EXACT_IN_F64 as u64 {
            SampleValue::Number(v as f64)
        } else {
            SampleValue::Integer(v)
        }
    }

    /// An unsigned whole number: as [`SampleValue::whole`], a double past
    /// `i64::MAX`.
    pub fn whole_u64(v: u64) -> SampleValue {
        i64::try_from(v).map_or(SampleValue::Number(v as f64), SampleValue::whole)
    }

    /// Ok unless a number (or a spectrum's bin width or a bin) is NaN or
    /// infinite, which no process value is: such a sample becomes a dead
    /// letter with this reason instead of poisoning averages and plots.
    pub fn check_finite(&self) -> Result<(), String> {
        match self {
            SampleValue::Number(v) if !v.is_finite() => {
                Err(format!("value {v} is not a finite number"))
            }
            SampleValue::Spectrum { bin_hz, bins } => {
                if !bin_hz.is_finite() || *bin_hz <= 0.0 {
                    return Err(format!(
                        "spectrum bin width {bin_hz} Hz is not a positive number"
                    ));
                }
                match bins.iter().position(|b| !b.is_finite()) {
                    Some(i) => Err(format!(
                        "spectrum bin {i} is {}, not a finite number",
                        bins[i]
                    )),
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            SampleValue::Number(v) => Some(*v),
            SampleValue::Integer(i) => Some(*i as f64),
            SampleValue::Bool(b) => Some(f64::from(u8::from(*b))),
            _ => None,
        }
    }
}

/// OPC UA-style quality, shared by every source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quality {
    #[default]
    Good,
    Uncertain,
    Bad,
}

impl Quality {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "good" | "g" | "192" => Some(Quality::Good),
            "uncertain" | "u" => Some(Quality::Uncertain),
            "bad" | "b" | "0" => Some(Quality::Bad),
            _ => None,
        }
    }
}

/// Which adapter a sample came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    Mqtt,
    OpcUa,
}

impl Origin {
    pub fn label(self) -> &'static str {
        match self {
            Origin::Mqtt => "MQTT",
            Origin::OpcUa => "OPC UA",
        }
    }
}

/// Time stamps along the way, microseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HopStamps {
    /// When the source (PLC, device) says the value was taken.
    pub source_us: i64,
    /// When a broker or server saw it, where the protocol says so.
    pub broker_us: Option<i64>,
    /// When the adapter read it off the socket.
    pub received_us: i64,
    /// When the adapter finished decoding it.
    pub decoded_us: i64,
    /// The payload carried no source time (or none its layout reads):
    /// `source_us` is the receipt time.
    pub arrival_stamped: bool,
    /// The source sent it late, from its store-and-forward buffer (a
    /// Sparkplug `is_historical` metric): recorded, never the live value.
    pub historical: bool,
    /// The MQTT packet id of a QoS 1 delivery, and whether the broker
    /// flagged it as a redelivery (DUP): how a sample without a source time
    /// is told apart from a resend of one already recorded.
    pub mqtt_pkid: Option<u16>,
    pub redelivered: bool,
}

/// One value of one asset property, normalized.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub property: PropertyRef,
    pub value: SampleValue,
    /// Why a state is what it is (e.g. a down reason), when the source says.
    pub reason: Option<String>,
    pub quality: Quality,
    pub origin: Origin,
    pub hops: HopStamps,
}
