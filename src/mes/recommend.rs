//! Recommendations to the MES, never writes: a reschedule (or, later, a
//! what-if scenario) and its fingerprint in; a retained JSON message on
//! the twin's own recommendations topic (`<mes.recommendations_topic>/<id>`)
//! and a B2MML `ProductionSchedule` document out. The MES stays the
//! authority: a topic under the MES's namespace (`mes.topic_root`, the
//! events and heartbeat topics) is refused before anything is sent.
//!
//! The fingerprint says how to get the same answer again: the seeds, the
//! fork time, the model's version and the SHA-256 of the inputs.

use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::MesError;
use crate::config::MesConfig;
use crate::contract::Schedule;
use crate::ingest::mqtt::TlsFiles;

/// How to reproduce a recommendation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fingerprint {
    pub seeds: Vec<u64>,
    /// The plant's moment the recommendation was computed from.
    pub fork_time: String,
    pub fork_us: i64,
    /// The twin's version and the version of the model it built.
    pub model_version: String,
    /// SHA-256 of the inputs (the problem or model as the twin saw it).
    pub inputs_sha256: String,
}

impl Fingerprint {
    pub fn new(seeds: Vec<u64>, fork_us: i64, model_version: &str, inputs: &[u8]) -> Self {
        Self {
            seeds,
            fork_time: super::rfc3339(fork_us),
            fork_us,
            model_version: format!("mezzanine {} / {model_version}", env!("CARGO_PKG_VERSION")),
            inputs_sha256: sha256_hex(inputs),
        }
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One recommendation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    pub id: String,
    /// `reschedule` or `what-if`.
    pub kind: String,
    pub created: String,
    /// One sentence for a person.
    pub summary: String,
    pub fingerprint: Fingerprint,
    /// The recommendation's own data (orders, KPIs, intervals).
    pub details: serde_json::Value,
    /// Always true: the MES decides.
    pub advisory: bool,
}

impl Recommendation {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// Topic filters the twin must never publish under: the MES's root and
/// its events and heartbeat topics.
pub fn mes_roots(mes: &MesConfig) -> Vec<String> {
    let mut roots = Vec::new();
    for t in [
        mes.topic_root.as_str(),
        mes.events_topic.as_str(),
        mes.heartbeat_topic.as_str(),
    ] {
        let t = t.trim().trim_end_matches('#').trim_end_matches('/');
        if !t.is_empty() {
            roots.push(t.to_string());
        }
    }
    roots
}

/// The topic of recommendation `id`, or why it may not be published.
pub fn topic_for(mes: &MesConfig, id: &str) -> Result<String, MesError> {
    let base = mes.recommendations_topic.trim().trim_end_matches('/');
    let refuse = |reason: String| MesError::Recommendation {
        topic: format!("{base}/{id}"),
        reason,
    };
    if base.is_empty() {
        return Err(refuse(
            "no recommendations topic is configured (mes.recommendations_topic)".into(),
        ));
    }
    if id.is_empty() || id.contains(['/', '+', '#']) || base.contains(['+', '#']) {
        return Err(refuse(
            "a recommendation topic is one concrete topic: no '+' or '#', and the id has no '/'"
                .into(),
        ));
    }
    let topic = format!("{base}/{id}");
    for root in mes_roots(mes) {
        if topic == root || topic.starts_with(&format!("{root}/")) {
            return Err(refuse(format!(
                "it lies under the MES's topics ({root}): the twin recommends, it never writes to the MES"
            )));
        }
    }
    Ok(topic)
}

/// Where to publish.
#[derive(Debug, Clone)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls: Option<TlsFiles>,
}

/// Publishes `rec` retained (QoS 1) on its topic and waits for the
/// broker's acknowledgement.
pub fn publish(
    broker: &Broker,
    mes: &MesConfig,
    rec: &Recommendation,
    timeout: Duration,
) -> Result<String, MesError> {
    let topic = topic_for(mes, &rec.id)?;
    let fail = |reason: String| MesError::Recommendation {
        topic: topic.clone(),
        reason,
    };
    let mut opts = MqttOptions::new(broker.client_id.clone(), broker.host.clone(), broker.port);
    opts.set_keep_alive(Duration::from_secs(10));
    if let (Some(u), Some(p)) = (&broker.username, &broker.password) {
        opts.set_credentials(u.clone(), p.clone());
    }
    if let Some(t) = &broker.tls {
        opts.set_transport(t.transport().map_err(|e| fail(e.to_string()))?);
    }
    let (client, mut conn) = Client::new(opts, 10);
    client
        .publish(
            topic.clone(),
            QoS::AtLeastOnce,
            true,
            rec.to_json().into_bytes(),
        )
        .map_err(|e| fail(e.to_string()))?;
    let t0 = Instant::now();
    let result = loop {
        let left = timeout.saturating_sub(t0.elapsed());
        if left.is_zero() {
            break Err(fail(format!(
                "the broker at {}:{} did not acknowledge within {:.0} s",
                broker.host,
                broker.port,
                timeout.as_secs_f64()
            )));
        }
        match conn.recv_timeout(left) {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => break Ok(topic.clone()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                break Err(fail(format!("broker {}:{}: {e}", broker.host, broker.port)));
            }
            Err(_) => {}
        }
    };
    let _ = client.disconnect();
    // Let the DISCONNECT go out.
    let _ = conn.recv_timeout(Duration::from_millis(100));
    result
}

/// Writes the B2MML document of a recommended schedule to `path`.
pub fn write_b2mml(path: &std::path::Path, s: &Schedule) -> Result<(), MesError> {
    std::fs::write(path, super::b2mml::write(s)).map_err(|e| MesError::Write {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}
