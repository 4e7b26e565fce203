//! The MQTT adapter: UNS topics in (rumqttc, QoS 1, persistent session),
//! [`IngestEvent`]s out over the bounded channel.
//!
//! Topics under `spBv1.0/` are Sparkplug B (see [`super::sparkplug`]); all
//! others are resolved through the registry's per-property topics.
//!
//! Session: fixed client id, clean session off, manual acks. A QoS 1 message
//! is acknowledged only when the app calls its [`Ack`] (after the twin
//! applied it), so a crash in between makes the broker deliver it again.
//! Reconnects with exponential backoff (100 ms → 5 s), re-subscribing on
//! every connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};

use super::decode::{decode_json_as, decode_spectrum};
use super::payload::{JsonLayout, PayloadLayouts};
use super::sample::{HopStamps, Origin, Sample, SourceTimeWindow, now_us};
use super::sparkplug::{self, AliasBook};
use super::{Ack, DeadLetter, IngestError, IngestEvent, IngestSender, LinkState};
use crate::registry::{AssetRegistry, Encoding};
use bevy::log::{info, warn};

/// Where and how to connect.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttSettings {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Filters to subscribe to, e.g. `acme/lyon/#`.
    pub topics: Vec<String>,
    /// TLS to the broker (from an `mqtts://` URL).
    pub tls: Option<TlsFiles>,
    /// Topics under this prefix carry MES events, not samples.
    pub mes: Option<MesRoute>,
    /// Where each topic's JSON payloads keep value and source time.
    pub payloads: PayloadLayouts,
    /// What the twin sends as a Sparkplug host application (nothing by
    /// default).
    pub sparkplug: SparkplugHost,
}

/// The twin's Sparkplug host role: rebirth requests and its STATE.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SparkplugHost {
    pub request_rebirth: bool,
    pub rebirth_min_interval: Duration,
    /// Publishes `spBv1.0/STATE/<host_id>` (retained) when set.
    pub host_id: Option<String>,
    /// Where the aliases of the last births are kept across restarts
    /// (None: not kept).
    pub alias_file: Option<PathBuf>,
}

/// The STATE topic of a Sparkplug host application.
pub fn state_topic(host_id: &str) -> String {
    format!("{}/STATE/{host_id}", sparkplug::NAMESPACE)
}

fn state_payload(online: bool) -> Vec<u8> {
    format!(r#"{{"online":{online},"timestamp":{}}}"#, now_us() / 1000).into_bytes()
}

/// What decoding remembers between publishes: Sparkplug aliases, the
/// payload layouts, and the topics already warned about an unread time.
#[derive(Debug, Default)]
pub struct DecodeState {
    pub aliases: AliasBook,
    pub layouts: PayloadLayouts,
    pub host: SparkplugHost,
    unread_time_warned: std::collections::HashSet<String>,
    /// Edge node → when the twin last asked it to rebirth (or, with
    /// requests off, said it would help).
    rebirth_asked: std::collections::HashMap<String, std::time::Instant>,
}

impl DecodeState {
    pub fn new(layouts: PayloadLayouts, host: SparkplugHost) -> Self {
        Self {
            layouts,
            host,
            ..Self::default()
        }
    }

    /// Asks edge nodes that need it to publish their births again, at most
    /// once per interval each; with requests off, says once that it would
    /// help.
    fn request_rebirths(&mut self, client: &AsyncClient) {
        for (node, why) in self.aliases.take_rebirth_wanted() {
            let now = std::time::Instant::now();
            if !self.host.request_rebirth {
                if self.rebirth_asked.insert(node.clone(), now).is_none() {
                    info!(
                        "Sparkplug edge node {node}: {why}; with [sparkplug] request_rebirth = \
                         true the twin would ask it to publish its births again"
                    );
                }
                continue;
            }
            if self
                .rebirth_asked
                .get(&node)
                .is_some_and(|t| now.duration_since(*t) < self.host.rebirth_min_interval)
            {
                continue;
            }
            self.rebirth_asked.insert(node.clone(), now);
            let Some((group, edge)) = node.split_once('/') else {
                continue;
            };
            let topic = format!("{}/{group}/NCMD/{edge}", sparkplug::NAMESPACE);
            let payload = sparkplug::rebirth_request((now_us() / 1000).max(0) as u64);
            match client.try_publish(topic.clone(), QoS::AtMostOnce, false, payload) {
                Ok(()) => info!("asked Sparkplug edge node {node} to rebirth ({why}) on {topic}"),
                Err(e) => warn!("rebirth request to {node} not sent: {e}"),
            }
        }
    }
}

/// Topics warned about a time field their layout does not read, at most
/// (one line each, once per run).
const UNREAD_TIME_WARNINGS: usize = 200;

/// Where MES events arrive and the contract that decodes them.
#[derive(Debug, Clone)]
pub struct MesRoute {
    /// e.g. `acme/lyon/mes/events/`
    pub topic_prefix: String,
    /// e.g. `acme/lyon/mes/heartbeat` (None: no heartbeat)
    pub heartbeat_topic: Option<String>,
    pub contract: Arc<crate::contract::Contract>,
}

impl PartialEq for MesRoute {
    fn eq(&self, other: &Self) -> bool {
        self.topic_prefix == other.topic_prefix
            && self.heartbeat_topic == other.heartbeat_topic
            && Arc::ptr_eq(&self.contract, &other.contract)
    }
}

/// PEM files for a TLS connection to the broker.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TlsFiles {
    /// The CA that signed the broker's certificate.
    pub ca_file: PathBuf,
    /// Client certificate and key, when the broker asks for one.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
}

impl TlsFiles {
    fn read(path: &Path) -> Result<Vec<u8>, IngestError> {
        std::fs::read(path).map_err(|source| IngestError::TlsFile {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The rumqttc transport for these files (files are read now, so a
    /// missing file is reported at start, naming it).
    pub fn transport(&self) -> Result<rumqttc::Transport, IngestError> {
        // One process-wide crypto provider for rustls; a second install is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = Self::read(&self.ca_file)?;
        let client_auth = match (&self.client_cert_file, &self.client_key_file) {
            (Some(c), Some(k)) => Some((Self::read(c)?, Self::read(k)?)),
            (None, None) => None,
            _ => {
                return Err(IngestError::BadUrl {
                    url: "mqtts://".into(),
                    reason: "a client certificate needs its key, and the key its certificate"
                        .into(),
                });
            }
        };
        Ok(rumqttc::Transport::tls(ca, client_auth, None))
    }
}

/// A broker address: host, port, and whether it speaks TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

/// Split `mqtt://host:port`, `mqtts://host:port` (or `tcp://`, `ssl://`, or a
/// bare `host:port`). Default ports: 1883, and 8883 for TLS.
pub fn parse_mqtt_url(url: &str) -> Result<BrokerUrl, IngestError> {
    let bad = |reason: &str| IngestError::BadUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let plain = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"));
    let secure = url
        .strip_prefix("mqtts://")
        .or_else(|| url.strip_prefix("ssl://"));
    let (rest, tls) = match (plain, secure) {
        (Some(r), _) => (r, false),
        (None, Some(r)) => (r, true),
        (None, None) if url.contains("://") => {
            return Err(bad("scheme must be mqtt:// or mqtts://"));
        }
        (None, None) => (url, false),
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>().map_err(|_| bad("port is not a number"))?,
        ),
        None => (rest, if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok(BrokerUrl {
        host: host.to_string(),
        port,
        tls,
    })
}

/// The largest payload decoded; a larger one is a dead letter.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;
/// The largest packet the client takes from the broker at all (beyond it
/// the connection fails and the broker redelivers: set the broker's own
/// `message_size_limit` below this).
pub const MAX_PACKET_BYTES: usize = 64 << 20;

/// A running adapter.
pub type MqttAdapter = super::worker::WorkerThread;

/// Start the adapter on its own named thread with its own runtime.
pub fn spawn_mqtt_adapter(
    settings: MqttSettings,
    registry: Arc<AssetRegistry>,
    tx: IngestSender,
) -> Result<MqttAdapter, IngestError> {
    let transport = settings.tls.as_ref().map(TlsFiles::transport).transpose()?;
    MqttAdapter::supervised(
        "mqtt-ingest",
        "MQTT adapter",
        tx.link_down_on_failure(Origin::Mqtt),
        move |stop| {
            run(
                settings.clone(),
                transport.clone(),
                registry.clone(),
                tx.clone(),
                stop,
            )
        },
    )
}

async fn run(
    settings: MqttSettings,
    transport: Option<rumqttc::Transport>,
    registry: Arc<AssetRegistry>,
    tx: IngestSender,
    stop: Arc<AtomicBool>,
) {
    let mut opts = MqttOptions::new(
        settings.client_id.clone(),
        settings.host.clone(),
        settings.port,
    );
    opts.set_keep_alive(Duration::from_secs(10));
    opts.set_clean_session(false);
    opts.set_manual_acks(true);
    // Receive far larger packets than any payload is allowed to be, so an
    // oversized one becomes a dead letter (and is acknowledged) instead of
    // a protocol error that would make the broker send it again forever.
    opts.set_max_packet_size(MAX_PACKET_BYTES, 1 << 20);
    if let Some(t) = transport {
        opts.set_transport(t);
    }
    if let (Some(u), Some(p)) = (&settings.username, &settings.password) {
        opts.set_credentials(u.clone(), p.clone());
    }
    if let Some(host) = &settings.sparkplug.host_id {
        opts.set_last_will(rumqttc::LastWill::new(
            state_topic(host),
            state_payload(false),
            QoS::AtLeastOnce,
            true,
        ));
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 4096);
    let link = |state| {
        tx.try_send(IngestEvent::Link {
            origin: Origin::Mqtt,
            state,
        });
    };
    link(LinkState::Connecting);
    let mut backoff = Duration::from_millis(100);
    let mut connected = false;
    let mut decode = DecodeState::new(settings.payloads.clone(), settings.sparkplug.clone());
    if let Some(f) = &settings.sparkplug.alias_file {
        let (book, error) = AliasBook::load(f);
        if let Some(e) = error {
            warn!("Sparkplug aliases of the last run not read ({e}); they are learned again");
        }
        decode.aliases = book;
    }
    let window = tx.time_window();
    while !stop.load(Ordering::Relaxed) {
        let polled = tokio::time::timeout(Duration::from_millis(250), eventloop.poll()).await;
        let Ok(event) = polled else {
            continue; // quiet period: look at the stop flag again
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                connected = true;
                backoff = Duration::from_millis(100);
                let filters = settings
                    .topics
                    .iter()
                    .map(|t| rumqttc::SubscribeFilter::new(t.clone(), QoS::AtLeastOnce));
                if let Err(e) = client.try_subscribe_many(filters) {
                    link(LinkState::Disconnected(format!("subscribe failed: {e}")));
                } else {
                    link(LinkState::Connected);
                }
                if let Some(host) = &settings.sparkplug.host_id
                    && let Err(e) = client.try_publish(
                        state_topic(host),
                        QoS::AtLeastOnce,
                        true,
                        state_payload(true),
                    )
                {
                    warn!("Sparkplug STATE not published: {e}");
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let received_us = now_us();
                if settings
                    .mes
                    .as_ref()
                    .and_then(|m| m.heartbeat_topic.as_deref())
                    == Some(p.topic.as_str())
                {
                    let ack = ack_for(&client, &p);
                    if !tx.send(IngestEvent::MesHeartbeat { received_us, ack }) {
                        return;
                    }
                    continue;
                }
                let evs = match settings
                    .mes
                    .as_ref()
                    .filter(|m| p.topic.starts_with(&m.topic_prefix))
                {
                    Some(m) => mes_event(&m.contract, &client, p, received_us),
                    None => to_events(&registry, &client, &mut decode, p, received_us, &window),
                };
                for ev in evs {
                    if !tx.send(ev) {
                        return; // the app is gone
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                if connected {
                    connected = false;
                }
                link(LinkState::Disconnected(e.to_string()));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    let _ = client.try_disconnect();
}

fn ack_for(client: &AsyncClient, p: &Publish) -> Option<Ack> {
    if p.qos == QoS::AtMostOnce {
        return None;
    }
    let client = client.clone();
    // Keep what the ack needs, not the payload.
    let mut token = Publish::new(p.topic.clone(), p.qos, Vec::new());
    token.pkid = p.pkid;
    Some(Ack::new(move || {
        let _ = client.try_ack(&token);
    }))
}

fn dead_letter(source: &str, reason: String, payload: &[u8], received_us: i64) -> DeadLetter {
    DeadLetter {
        origin: Origin::Mqtt,
        source: source.to_string(),
        reason,
        payload_len: payload.len(),
        payload_head: payload.iter().take(64).copied().collect(),
        received_us,
    }
}

/// Decode one publish into samples and dead letters. The publish's ack rides
/// on the last event, so it is sent once everything before it is handled.
pub fn to_events(
    registry: &AssetRegistry,
    client: &AsyncClient,
    state: &mut DecodeState,
    p: Publish,
    received_us: i64,
    window: &SourceTimeWindow,
) -> Vec<IngestEvent> {
    let mut ack = ack_for(client, &p);
    let mut out: Vec<IngestEvent> = if p.payload.len() > MAX_PAYLOAD_BYTES {
        vec![IngestEvent::DeadLetter(
            dead_letter(
                &p.topic,
                format!(
                    "payload of {} bytes is over the {} byte limit",
                    p.payload.len(),
                    MAX_PAYLOAD_BYTES
                ),
                &p.payload,
                received_us,
            ),
            None,
        )]
    } else if let Some(topic) = sparkplug::parse_topic(&p.topic)
        && matches!(topic.message_type, "NDEATH" | "DDEATH")
    {
        state.aliases.forget(&topic);
        if let Some(f) = &state.host.alias_file
            && let Err(e) = state.aliases.save(f)
        {
            warn!("Sparkplug aliases not saved: {e}");
        }
        let source = topic.source_id();
        let assets = if topic.device.is_some() {
            registry
                .resolve_sparkplug_source(&source)
                .into_iter()
                .collect()
        } else {
            registry.sparkplug_assets_of_node(&source)
        };
        info!("Sparkplug {} from {source}", topic.message_type);
        assets
            .into_iter()
            .map(|asset| IngestEvent::SourceDown {
                asset,
                reason: format!(
                    "{} from Sparkplug {} {source}",
                    topic.message_type,
                    if topic.device.is_some() {
                        "device"
                    } else {
                        "edge node"
                    }
                ),
                at_us: received_us,
            })
            .collect()
    } else if let Some(topic) = sparkplug::parse_topic(&p.topic) {
        let out = decode_sparkplug(
            registry,
            &mut state.aliases,
            &p.topic,
            &topic,
            &p.payload,
            received_us,
        )
        .into_iter()
        .map(|r| match r {
            Ok(s) => IngestEvent::Sample(s, None),
            Err(d) => IngestEvent::DeadLetter(d, None),
        })
        .collect();
        state.request_rebirths(client);
        if let Some(f) = &state.host.alias_file
            && let Err(e) = state.aliases.save(f)
        {
            warn!("Sparkplug aliases not saved: {e}");
        }
        out
    } else {
        let layout = state.layouts.for_topic(&p.topic);
        match decode_publish(registry, &p.topic, &p.payload, received_us, layout) {
            Ok((sample, unread)) => {
                if let Some(field) = unread
                    && state.unread_time_warned.len() < UNREAD_TIME_WARNINGS
                    && state.unread_time_warned.insert(p.topic.to_string())
                {
                    warn!(
                        "`{}`: the payload has a `{field}` field that its layout does not read as \
                         the source time; samples are stamped at arrival (map it with \
                         [[mqtt.payload]], e.g. preset = \"umh\" or time = \"{field}\")",
                        p.topic
                    );
                }
                vec![IngestEvent::Sample(sample, None)]
            }
            Err(reason) => vec![IngestEvent::DeadLetter(
                dead_letter(&p.topic, reason, &p.payload, received_us),
                None,
            )],
        }
    };
    // A sample from a clock nobody should believe, or with a number that is
    // not one, is kept as a dead letter.
    for ev in &mut out {
        if let IngestEvent::Sample(s, _) = ev {
            if p.qos != QoS::AtMostOnce {
                s.hops.mqtt_pkid = Some(p.pkid);
            }
            s.hops.redelivered = p.dup;
        }
        if let IngestEvent::Sample(s, _) = ev
            && let Err(reason) = window
                .check(s.hops.source_us, received_us)
                .and_then(|()| s.value.check_finite())
        {
            *ev = IngestEvent::DeadLetter(
                dead_letter(&p.topic, reason, &p.payload, received_us),
                None,
            );
        }
    }
    if let Some(last) = out.last_mut() {
        match last {
            IngestEvent::Sample(_, a) | IngestEvent::DeadLetter(_, a) | IngestEvent::Mes(_, a) => {
                *a = ack.take()
            }
            IngestEvent::MesHeartbeat { ack: a, .. } => *a = ack.take(),
            IngestEvent::Link { .. } | IngestEvent::AckOnly(_) | IngestEvent::SourceDown { .. } => {
            }
        }
    }
    if let Some(a) = ack {
        // A message with no metrics: only the ack, in its turn.
        out.push(IngestEvent::AckOnly(a));
    }
    out
}

/// Decode one MES event; a refusal becomes a dead letter naming why.
pub fn mes_event(
    contract: &crate::contract::Contract,
    client: &AsyncClient,
    p: Publish,
    received_us: i64,
) -> Vec<IngestEvent> {
    let ack = ack_for(client, &p);
    vec![match contract.decode(&p.payload, &p.topic) {
        Ok(e) => IngestEvent::Mes(Box::new(e), ack),
        Err(e) => IngestEvent::DeadLetter(
            dead_letter(&p.topic, e.to_string(), &p.payload, received_us),
            ack,
        ),
    }]
}

/// Decode a Sparkplug B message: one result per metric.
pub fn decode_sparkplug(
    registry: &AssetRegistry,
    aliases: &mut AliasBook,
    topic_name: &str,
    topic: &sparkplug::SparkplugTopic<'_>,
    payload: &[u8],
    received_us: i64,
) -> Vec<Result<Sample, DeadLetter>> {
    let source = topic.source_id();
    let dead = |reason: String| dead_letter(topic_name, reason, payload, received_us);
    if !matches!(topic.message_type, "NBIRTH" | "DBIRTH" | "NDATA" | "DDATA") {
        // Death certificates and commands carry no process values.
        return Vec::new();
    }
    let Some(asset) = registry.resolve_sparkplug_source(&source) else {
        return vec![Err(dead(format!(
            "Sparkplug source `{source}` is not in the asset registry"
        )))];
    };
    let (metrics, skipped) = match aliases.decode(topic, payload) {
        Ok(v) => v,
        Err(e) => return vec![Err(dead(e.to_string()))],
    };
    let decoded_us = now_us();
    let mut out: Vec<Result<Sample, DeadLetter>> = skipped
        .into_iter()
        .map(|s| Err(dead(format!("{}: {}", s.what, s.reason))))
        .collect();
    for m in metrics {
        let Some(r) = registry.resolve_sparkplug_metric(asset, &m.name) else {
            out.push(Err(dead(format!(
                "metric `{}` is not a property of this asset (name it with `sparkplug_metric` \
                 in the registry)",
                m.name
            ))));
            continue;
        };
        let source_us = match m.ts_ms {
            None => received_us,
            Some(ms) => match i64::try_from(ms).ok().and_then(|v| v.checked_mul(1000)) {
                Some(us) => us,
                None => {
                    out.push(Err(dead(format!(
                        "metric `{}`: timestamp {ms} ms is past what microseconds can hold",
                        m.name
                    ))));
                    continue;
                }
            },
        };
        out.push(Ok(Sample {
            property: r,
            value: m.value,
            reason: None,
            quality: m.quality,
            origin: Origin::Mqtt,
            hops: HopStamps {
                source_us,
                broker_us: None,
                received_us,
                decoded_us,
                arrival_stamped: m.ts_ms.is_none(),
                historical: m.historical,
                mqtt_pkid: None,
                redelivered: false,
            },
        }));
    }
    out
}

/// Resolve a topic through the registry and decode its payload in
/// `layout`; with the sample, a time-like field the layout left unread.
pub fn decode_publish(
    registry: &AssetRegistry,
    topic: &str,
    payload: &[u8],
    received_us: i64,
    layout: &JsonLayout,
) -> Result<(Sample, Option<String>), String> {
    let Some(r) = registry.resolve_topic(topic) else {
        return Err("topic is not in the asset registry".into());
    };
    let Some((_, prop)) = registry.property(r) else {
        return Err("registry entry vanished".into());
    };
    let decoded = match prop.encoding {
        Encoding::Json => decode_json_as(payload, &prop.unit, layout),
        Encoding::Spectrum => decode_spectrum(payload),
    }
    .map_err(|e| e.to_string())?;
    let decoded_us = now_us();
    let sample = Sample {
        property: r,
        value: decoded.value,
        reason: decoded.reason,
        quality: decoded.quality,
        origin: Origin::Mqtt,
        hops: HopStamps {
            source_us: decoded.source_ts_us.unwrap_or(received_us),
            broker_us: None,
            received_us,
            decoded_us,
            arrival_stamped: decoded.source_ts_us.is_none(),
            historical: false,
            mqtt_pkid: None,
            redelivered: false,
        },
    };
    Ok((sample, decoded.unread_time_field))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = |host: &str, port, tls| BrokerUrl {
            host: host.into(),
            port,
            tls,
        };
        assert_eq!(
            parse_mqtt_url("mqtt://broker.local:1884").ok(),
            Some(u("broker.local", 1884, false))
        );
        assert_eq!(
            parse_mqtt_url("127.0.0.1").ok(),
            Some(u("127.0.0.1", 1883, false))
        );
        assert_eq!(
            parse_mqtt_url("mqtts://broker").ok(),
            Some(u("broker", 8883, true))
        );
        assert!(matches!(
            parse_mqtt_url("http://x:1"),
            Err(IngestError::BadUrl { .. })
        ));
        assert!(matches!(
            parse_mqtt_url("mqtt://x:port"),
            Err(IngestError::BadUrl { .. })
        ));
    }
}
