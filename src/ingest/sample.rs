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

/// A decoded value.
#[derive(Debug, Clone, PartialEq)]
pub enum SampleValue {
    Number(f64),
    Bool(bool),
    Text(String),
    /// A vibration (or other) spectrum: equally spaced bins from 0 Hz.
    Spectrum {
        bin_hz: f32,
        bins: Arc<[f32]>,
    },
}

impl SampleValue {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            SampleValue::Number(v) => Some(*v),
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
