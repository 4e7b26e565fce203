//! The plant's live sources, started from the configuration: the embedded
//! demo plant (when no external endpoint is named), the MQTT and OPC UA
//! adapters feeding one [`IngestSender`], and the MES poller. Shared by the
//! desktop app and `mezzanine record`; held outside the Bevy app (whose
//! runner consumes it) and stopped in order once it has ended.

use std::sync::Arc;

use super::AppError;
use crate::config::{AppConfig, MqttRole, SyncMode};
use crate::demo;
use crate::ingest::mqtt::{MesRoute, MqttSettings, TlsFiles, parse_mqtt_url, spawn_mqtt_adapter};
use crate::ingest::opcua::{OpcUaSettings, spawn_opcua_adapter};
use crate::ingest::{IngestSender, SourceTimeWindow};
use crate::mes::Contract;
use crate::mes::poll::{MesPoller, PollSettings, spawn_poller};
use crate::registry::AssetRegistry;

/// Adapters and, when no external endpoint is named, the embedded plant.
pub struct LiveSources {
    pub mes_poller: Option<MesPoller>,
    pub opcua: Option<crate::ingest::opcua::OpcUaAdapter>,
    /// Absent in an OPC UA-only plant.
    pub mqtt: Option<crate::ingest::mqtt::MqttAdapter>,
    pub plant: Option<demo::EmbeddedPlant>,
}

impl LiveSources {
    /// Adapters first, then the plant they listen to; waits for each.
    pub fn stop(self) {
        if let Some(p) = self.mes_poller {
            p.stop();
        }
        if let Some(o) = self.opcua {
            o.stop();
        }
        if let Some(m) = self.mqtt {
            m.stop();
        }
        if let Some(p) = self.plant {
            p.stop();
        }
    }
}

/// Starts what the configuration names; the embedded plant fills in for
/// an endpoint left unset. `role` picks the default MQTT client id.
pub fn start_live_sources(
    cfg: &AppConfig,
    role: MqttRole,
    registry: Arc<AssetRegistry>,
    tx: IngestSender,
) -> Result<LiveSources, AppError> {
    let tx = tx.with_time_window(SourceTimeWindow {
        earliest_us: cfg.ingest.earliest_source_us()?,
        max_ahead_us: (cfg.ingest.max_source_ahead_s as i64).saturating_mul(1_000_000),
    });
    let plant = if cfg.embedded_demo() {
        let settings = demo::DemoSettings {
            seed: cfg.demo.seed,
            time_scale: cfg.demo.time_scale,
            tick_ms: cfg.demo.tick_ms,
            pki_dir: cfg.pki_dir(),
            inject: cfg
                .demo
                .inject
                .iter()
                .map(|s| s.parse())
                .collect::<Result<_, String>>()
                .map_err(|m| AppError::Demo(demo::DemoError::Inject(m)))?,
        };
        Some(demo::start_embedded_plant(registry.clone(), &settings).map_err(AppError::Demo)?)
    } else {
        None
    };
    let mqtt_url = match (&cfg.mqtt.url, &plant) {
        (Some(u), _) => Some(u.clone()),
        (None, Some(p)) => Some(p.broker.url()),
        // An OPC UA-only plant (the config's validation made sure some
        // source is named).
        (None, None) => None,
    };
    let mqtt = match mqtt_url {
        Some(u) => Some(start_mqtt(cfg, role, &u, registry.clone(), tx.clone())?),
        None => None,
    };
    let endpoint = match (&cfg.opcua.endpoint, &plant) {
        (Some(e), _) => Some(e.clone()),
        (None, Some(p)) => Some(p.opcua.endpoint()),
        (None, None) => None,
    };
    let opcua = match endpoint.filter(|_| cfg.opcua.enabled) {
        Some(endpoint) => Some(spawn_opcua_adapter(
            OpcUaSettings {
                endpoint,
                security_policy: cfg.opcua.security_policy.clone(),
                security_mode: cfg.opcua.security_mode.clone(),
                username: cfg.opcua.username.clone(),
                password: cfg.opcua.password.clone(),
                pki_dir: cfg.pki_dir().join("client"),
                sampling_interval_ms: cfg.opcua.sampling_interval_ms,
            },
            registry,
            tx,
        )?),
        None => None,
    };
    // The MES API: the configured one, else the embedded demo's.
    let api_url = cfg
        .mes
        .api_url
        .clone()
        .or_else(|| plant.as_ref().map(|p| p.mes.api_url.clone()));
    let mes_poller = match api_url {
        Some(api_url) => Some(
            spawn_poller(PollSettings {
                api_url,
                token: cfg.mes.api_token.clone(),
                ca_file: cfg.mes.ca_file.clone(),
                interval_ms: cfg.mes.poll_interval_ms,
                catch_up_page_events: cfg.mes.catch_up_page_events,
                work_orders: cfg.mes.domains.work_orders == SyncMode::Polling,
                equipment: cfg.mes.domains.equipment == SyncMode::Polling,
                schedule: cfg.mes.domains.schedule == SyncMode::Polling,
            })
            .map_err(AppError::Poller)?,
        ),
        None => None,
    };
    Ok(LiveSources {
        mes_poller,
        opcua,
        mqtt,
        plant,
    })
}

/// The MQTT adapter on `mqtt_url`, subscribed to the topic roots and the
/// MES topics.
fn start_mqtt(
    cfg: &AppConfig,
    role: MqttRole,
    mqtt_url: &str,
    registry: Arc<AssetRegistry>,
    tx: IngestSender,
) -> Result<crate::ingest::mqtt::MqttAdapter, AppError> {
    let url = parse_mqtt_url(mqtt_url)?;
    let tls = if url.tls {
        Some(TlsFiles {
            ca_file: cfg
                .mqtt
                .ca_file
                .clone()
                .ok_or_else(|| AppError::TlsWithoutCa {
                    url: mqtt_url.to_string(),
                })?,
            client_cert_file: cfg.mqtt.client_cert_file.clone(),
            client_key_file: cfg.mqtt.client_key_file.clone(),
        })
    } else {
        None
    };
    let mut topics: Vec<String> = match &cfg.mqtt.share_group {
        Some(g) => cfg
            .mqtt
            .topic_roots
            .iter()
            .map(|t| format!("$share/{g}/{t}"))
            .collect(),
        None => cfg.mqtt.topic_roots.clone(),
    };
    for e in [cfg.mes.events_topic.trim(), cfg.mes.heartbeat_topic.trim()] {
        if !e.is_empty() && !topics.iter().any(|r| r == e) {
            topics.push(e.to_string());
        }
    }
    let mes = match cfg.mes.topic_prefix() {
        Some(topic_prefix) => Some(MesRoute {
            topic_prefix,
            heartbeat_topic: Some(cfg.mes.heartbeat_topic.trim().to_string())
                .filter(|t| !t.is_empty()),
            contract: Arc::new(Contract::load().map_err(AppError::Contract)?),
        }),
        None => None,
    };
    Ok(spawn_mqtt_adapter(
        MqttSettings {
            host: url.host,
            port: url.port,
            tls,
            client_id: cfg.mqtt.client_id_for(role)?,
            username: cfg.mqtt.username.clone(),
            password: cfg.mqtt.password.clone(),
            topics,
            mes,
            payloads: crate::ingest::payload::PayloadLayouts::from_rules(&cfg.mqtt.payloads),
            sparkplug: crate::ingest::mqtt::SparkplugHost {
                request_rebirth: cfg.sparkplug.request_rebirth,
                rebirth_min_interval: std::time::Duration::from_secs(
                    cfg.sparkplug.rebirth_min_interval_s.max(1),
                ),
                host_id: cfg.sparkplug.host_id.clone(),
                // Beside the history file, so each recording keeps its own.
                alias_file: Some(
                    cfg.history
                        .db_path()
                        .with_extension("sparkplug-aliases.json"),
                ),
            },
        },
        registry,
        tx,
    )?)
}
