//! The OPC UA adapter: data changes of every registry node id in (async-opcua
//! subscription, monitored items created in chunks), [`IngestEvent`]s out.
//!
//! Runs on its own named thread. When the connection drops, the session's
//! event loop ends and the adapter builds a new session and subscription
//! after a backoff (200 ms doubling to 5 s), so a server restart is survived.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opcua::client::{ClientBuilder, DataChangeCallback, IdentityToken, MonitoredItem, Session};
use opcua::crypto::SecurityPolicy;
use opcua::types::{
    DataValue, MessageSecurityMode, MonitoredItemCreateRequest, NodeId, TimestampsToReturn,
    UserTokenPolicy, Variant,
};

use super::sample::{HopStamps, Origin, Quality, Sample, SampleValue, now_us};
use super::{DeadLetter, IngestError, IngestEvent, IngestSender, LinkState};
use crate::registry::AssetRegistry;
use crate::registry::node_id::{Namespace, RegistryNodeId};
use bevy::log::warn;

/// Servers cap monitored items per call; this many is accepted everywhere.
pub const MONITORED_ITEMS_PER_CALL: usize = 500;

#[derive(Debug, Clone, PartialEq)]
pub struct OpcUaSettings {
    /// e.g. `opc.tcp://127.0.0.1:4840/`
    pub endpoint: String,
    /// `None`, `Basic256Sha256` or `Aes256Sha256RsaPss`.
    pub security_policy: String,
    /// `None`, `Sign` or `SignAndEncrypt`.
    pub security_mode: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Where the client keeps its certificate and trusted server certificates.
    pub pki_dir: PathBuf,
    /// Sampling interval asked of the server.
    pub sampling_interval_ms: f64,
}

/// A running adapter.
pub type OpcUaAdapter = super::worker::WorkerThread;

fn security(
    settings: &OpcUaSettings,
) -> Result<(SecurityPolicy, MessageSecurityMode), IngestError> {
    let policy = match settings.security_policy.as_str() {
        "None" => SecurityPolicy::None,
        "Basic256Sha256" => SecurityPolicy::Basic256Sha256,
        "Aes256Sha256RsaPss" | "Aes256_Sha256_RsaPss" => SecurityPolicy::Aes256Sha256RsaPss,
        other => {
            return Err(IngestError::OpcUaConfig(format!(
                "security policy `{other}` (use None, Basic256Sha256 or Aes256Sha256RsaPss)"
            )));
        }
    };
    let mode = match settings.security_mode.as_str() {
        "None" => MessageSecurityMode::None,
        "Sign" => MessageSecurityMode::Sign,
        "SignAndEncrypt" => MessageSecurityMode::SignAndEncrypt,
        other => {
            return Err(IngestError::OpcUaConfig(format!(
                "security mode `{other}` (use None, Sign or SignAndEncrypt)"
            )));
        }
    };
    if (policy == SecurityPolicy::None) != (mode == MessageSecurityMode::None) {
        return Err(IngestError::OpcUaConfig(
            "security policy None goes with mode None, and only with it".into(),
        ));
    }
    Ok((policy, mode))
}

pub fn spawn_opcua_adapter(
    settings: OpcUaSettings,
    registry: Arc<AssetRegistry>,
    tx: IngestSender,
) -> Result<OpcUaAdapter, IngestError> {
    let (policy, mode) = security(&settings)?;
    OpcUaAdapter::supervised(
        "opcua-ingest",
        "OPC UA adapter",
        tx.link_down_on_failure(Origin::OpcUa),
        move |stop| {
            run(
                settings.clone(),
                policy,
                mode,
                registry.clone(),
                tx.clone(),
                stop,
            )
        },
    )
}

async fn run(
    settings: OpcUaSettings,
    policy: SecurityPolicy,
    mode: MessageSecurityMode,
    registry: Arc<AssetRegistry>,
    tx: IngestSender,
    stop: Arc<AtomicBool>,
) {
    let link = |state| {
        tx.try_send(IngestEvent::Link {
            origin: Origin::OpcUa,
            state,
        });
    };
    let client = ClientBuilder::new()
        .application_name("Mezzanine")
        .application_uri("urn:mezzanine:client")
        .product_uri("urn:mezzanine")
        .pki_dir(settings.pki_dir.clone())
        .create_sample_keypair(true)
        // An unknown server certificate is refused and kept in
        // `<pki>/rejected` for a person to trust (`mezzanine opcua trust`).
        .trust_server_certs(false)
        // No retries inside the session: after a server restart its
        // re-created subscription was seen to stay silent, so the adapter
        // builds a fresh session and subscription itself (below).
        .session_retry_limit(0)
        .keep_alive_interval(Duration::from_secs(2))
        .client();
    let mut client = match client {
        Ok(c) => c,
        Err(errs) => {
            link(LinkState::Disconnected(format!(
                "client configuration: {}",
                errs.join("; ")
            )));
            return;
        }
    };
    let node_ids: Vec<String> = registry
        .assets()
        .iter()
        .flat_map(|a| a.properties.iter().filter_map(|p| p.opcua.clone()))
        .collect();
    let mut backoff = Duration::from_millis(200);
    while !stop.load(Ordering::Relaxed) {
        let attempt = std::time::SystemTime::now();
        // Why an attempt failed, with what to do when the server's
        // certificate is the reason.
        let refused = |why: String| {
            // A certificate refusal names the file even when it was left
            // in `rejected` by an earlier attempt.
            let cert_refusal = why.contains("Certificate");
            let since = if cert_refusal {
                std::time::UNIX_EPOCH
            } else {
                attempt
            };
            let why = match newest_rejected(&settings.pki_dir, since) {
                Some(c) => format!(
                    "the server's certificate is not trusted ({}, thumbprint {}): check it is \
                     your server's, then run `mezzanine opcua trust --thumbprint {}` (it moves \
                     the file from {} to its trusted folder) [{why}]",
                    c.file_name,
                    c.thumbprint,
                    c.thumbprint,
                    c.path
                        .parent()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                ),
                None => why,
            };
            LinkState::Disconnected(why)
        };
        link(LinkState::Connecting);
        let identity = match (&settings.username, &settings.password) {
            (Some(u), Some(p)) => IdentityToken::UserName(u.clone(), p.clone().into()),
            _ => IdentityToken::Anonymous,
        };
        let endpoint = (
            settings.endpoint.as_str(),
            policy.to_str(),
            mode,
            UserTokenPolicy::anonymous(),
        );
        let connected = client
            .connect_to_matching_endpoint(endpoint, identity)
            .await;
        let (session, event_loop) = match connected {
            Ok(s) => s,
            Err(e) => {
                link(refused(format!("connect to {}: {e}", settings.endpoint)));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let mut loop_handle = event_loop.spawn();
        let up = tokio::time::timeout(Duration::from_secs(10), session.wait_for_connection()).await;
        if !matches!(up, Ok(true)) {
            let why = if loop_handle.is_finished() {
                match (&mut loop_handle).await {
                    Ok(s) => format!("session did not come up: {s}"),
                    Err(e) => format!("session did not come up: {e}"),
                }
            } else {
                "session did not come up within 10 s".to_string()
            };
            link(refused(why));
            loop_handle.abort();
            tokio::time::sleep(backoff).await;
            continue;
        }
        if let Err(e) = subscribe(
            &session,
            &registry,
            &node_ids,
            &tx,
            settings.sampling_interval_ms,
        )
        .await
        {
            link(LinkState::Disconnected(e));
            let _ = session.disconnect().await;
            loop_handle.abort();
            tokio::time::sleep(backoff).await;
            continue;
        }
        backoff = Duration::from_millis(200);
        link(LinkState::Connected);
        loop {
            tokio::select! {
                status = &mut loop_handle => {
                    let why = match status {
                        Ok(s) => format!("session ended: {s}"),
                        Err(e) => format!("session task failed: {e}"),
                    };
                    link(LinkState::Disconnected(why));
                    break;
                }
                _ = tokio::time::sleep(Duration::from_millis(250)) => {
                    if stop.load(Ordering::Relaxed) {
                        let _ = session.disconnect().await;
                        loop_handle.abort();
                        return;
                    }
                }
            }
        }
    }
}

async fn subscribe(
    session: &Arc<Session>,
    registry: &Arc<AssetRegistry>,
    node_ids: &[String],
    tx: &IngestSender,
    sampling_interval_ms: f64,
) -> Result<(), String> {
    // The registry's ids as this server numbers them: a namespace URI is
    // looked up in its NamespaceArray (read at every connect, since a
    // server may renumber after an upgrade).
    let parsed: Vec<(&String, Result<RegistryNodeId, String>)> = node_ids
        .iter()
        .map(|id| (id, RegistryNodeId::parse(id)))
        .collect();
    let namespaces = if parsed.iter().any(|(_, n)| {
        matches!(
            n,
            Ok(RegistryNodeId {
                namespace: Namespace::Uri(_),
                ..
            })
        )
    }) {
        Some(
            session
                .read_namespace_array()
                .await
                .map_err(|e| format!("reading the server's NamespaceArray: {e}"))?,
        )
    } else {
        None
    };
    let mut bad: Vec<(String, String)> = Vec::new();
    let mut resolved: Vec<NodeId> = Vec::new();
    let mut to_registry: HashMap<String, String> = HashMap::new();
    for (id, node) in parsed {
        let text = match node {
            Err(why) => {
                bad.push((id.clone(), why));
                continue;
            }
            Ok(n) => match &n.namespace {
                Namespace::Index(_) => id.clone(),
                Namespace::Uri(uri) => match namespaces.as_ref().and_then(|m| m.get_index(uri)) {
                    Some(index) => n.with_index(index),
                    None => {
                        bad.push((
                            id.clone(),
                            format!(
                                "namespace `{uri}` is not on this server (its namespaces: {})",
                                namespace_list(namespaces.as_ref())
                            ),
                        ));
                        continue;
                    }
                },
            },
        };
        match NodeId::from_str(&text) {
            Ok(n) => {
                to_registry.insert(n.to_string(), id.clone());
                resolved.push(n);
            }
            Err(_) => bad.push((id.clone(), format!("`{text}` is not a node id"))),
        }
    }
    let to_registry = Arc::new(to_registry);
    let names = to_registry.clone();
    let reg = registry.clone();
    let tx_cb = tx.clone();
    let window = tx.time_window();
    let callback = DataChangeCallback::new(move |dv: DataValue, item: &MonitoredItem| {
        let received_us = now_us();
        let server_form = item.item_to_monitor().node_id.to_string();
        // Named as the registry names it (a namespace URI stays a URI).
        let node = names.get(&server_form).cloned().unwrap_or(server_form);
        let sample = data_change_to_sample(&reg, &node, &dv, received_us).and_then(|s| {
            window.check(s.hops.source_us, received_us)?;
            s.value.check_finite()?;
            Ok(s)
        });
        let ev = match sample {
            Ok(s) => IngestEvent::Sample(s, None),
            Err(reason) => IngestEvent::DeadLetter(
                DeadLetter {
                    origin: Origin::OpcUa,
                    source: node,
                    reason,
                    payload_len: 0,
                    payload_head: Vec::new(),
                    received_us,
                },
                None,
            ),
        };
        tx_cb.send(ev);
    });
    let sub = session
        .create_subscription(Duration::from_millis(50), 600, 20, 0, 0, true, callback)
        .await
        .map_err(|e| format!("create subscription: {e}"))?;
    for chunk in resolved.chunks(MONITORED_ITEMS_PER_CALL) {
        let items: Vec<MonitoredItemCreateRequest> = chunk
            .iter()
            .map(|n| {
                let mut req = MonitoredItemCreateRequest::from(n.clone());
                req.requested_parameters.sampling_interval = sampling_interval_ms;
                req.requested_parameters.queue_size = 10;
                req
            })
            .collect();
        let created = session
            .create_monitored_items(sub, TimestampsToReturn::Both, items)
            .await
            .map_err(|e| format!("create monitored items: {e}"))?;
        for (c, n) in created.iter().zip(chunk) {
            if !c.result.status_code.is_good() {
                let key = n.to_string();
                let id = to_registry.get(&key).cloned().unwrap_or(key);
                bad.push((
                    id,
                    format!(
                        "the server refused to monitor this node ({})",
                        c.result.status_code
                    ),
                ));
            }
        }
    }
    for (id, reason) in bad {
        warn!("OPC UA node `{id}`: {reason}");
        tx.try_send(IngestEvent::DeadLetter(
            DeadLetter {
                origin: Origin::OpcUa,
                source: id,
                reason,
                payload_len: 0,
                payload_head: Vec::new(),
                received_us: now_us(),
            },
            None,
        ));
    }
    Ok(())
}

/// A server's namespaces, in index order, for an error message.
fn namespace_list(map: Option<&opcua::types::NamespaceMap>) -> String {
    let Some(map) = map else {
        return "not read".into();
    };
    let mut all: Vec<(&u16, &String)> =
        map.known_namespaces().iter().map(|(u, i)| (i, u)).collect();
    all.sort();
    all.iter()
        .map(|(i, u)| format!("{i} = {u}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// OPC UA time (100 ns ticks since 1601) → µs since the Unix epoch.
fn ticks_to_unix_us(ticks: i64) -> i64 {
    ticks.saturating_sub(116_444_736_000_000_000) / 10
}

/// Map a data change through the registry into a sample.
pub fn data_change_to_sample(
    registry: &AssetRegistry,
    node_id: &str,
    dv: &DataValue,
    received_us: i64,
) -> Result<Sample, String> {
    let r = registry
        .resolve_opcua(node_id)
        .ok_or_else(|| "node id is not in the asset registry".to_string())?;
    let (_, prop) = registry.property(r).ok_or("registry entry vanished")?;
    let variant = dv.value.as_ref().ok_or("data change without a value")?;
    let value = match variant {
        Variant::Double(v) => SampleValue::Number(*v),
        Variant::Float(v) => SampleValue::Number(f64::from(*v)),
        Variant::Int16(v) => SampleValue::Number(f64::from(*v)),
        Variant::UInt16(v) => SampleValue::Number(f64::from(*v)),
        Variant::Int32(v) => SampleValue::Number(f64::from(*v)),
        Variant::UInt32(v) => SampleValue::Number(f64::from(*v)),
        Variant::Int64(v) => SampleValue::whole(*v),
        Variant::UInt64(v) => SampleValue::whole_u64(*v),
        Variant::Byte(v) => SampleValue::Number(f64::from(*v)),
        Variant::Boolean(b) => SampleValue::Bool(*b),
        Variant::String(s) if prop.unit == "1" => SampleValue::Text(s.as_ref().to_string()),
        Variant::String(_) => {
            return Err(format!(
                "text value for a property measured in `{}`",
                prop.unit
            ));
        }
        Variant::Empty => return Err("empty value".into()),
        other => return Err(format!("unsupported value type {:?}", other.type_id())),
    };
    let status = dv.status.unwrap_or_default();
    let quality = if status.is_good() {
        Quality::Good
    } else if status.is_uncertain() {
        Quality::Uncertain
    } else {
        Quality::Bad
    };
    let server_us = dv
        .server_timestamp
        .as_ref()
        .map(|t| ticks_to_unix_us(t.checked_ticks()));
    let stamped = dv
        .source_timestamp
        .as_ref()
        .map(|t| ticks_to_unix_us(t.checked_ticks()))
        .or(server_us);
    let source_us = stamped.unwrap_or(received_us);
    let decoded_us = now_us();
    Ok(Sample {
        property: r,
        value,
        reason: None,
        quality,
        origin: Origin::OpcUa,
        hops: HopStamps {
            source_us,
            broker_us: server_us,
            received_us,
            decoded_us,
            arrival_stamped: stamped.is_none(),
            historical: false,
            mqtt_pkid: None,
            redelivered: false,
        },
    })
}

/// A server certificate the client refused, waiting in `<pki>/rejected`.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedCert {
    pub path: std::path::PathBuf,
    pub file_name: String,
    /// SHA-1 thumbprint, hex (from the file name async-opcua gives it).
    pub thumbprint: String,
    pub modified: std::time::SystemTime,
}

/// The certificates in `<pki_dir>/rejected`, newest first.
pub fn rejected_certs(pki_dir: &std::path::Path) -> Vec<RejectedCert> {
    let Ok(entries) = std::fs::read_dir(pki_dir.join("rejected")) else {
        return Vec::new();
    };
    let mut out: Vec<RejectedCert> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let file_name = e.file_name().to_string_lossy().to_string();
            let stem = file_name.strip_suffix(".der")?;
            // "<common name> [<thumbprint>].der" or "<thumbprint>.der"
            let thumbprint = match stem.rsplit_once('[') {
                Some((_, t)) => t.trim_end_matches(']').to_string(),
                None => stem.to_string(),
            };
            Some(RejectedCert {
                path: e.path(),
                file_name,
                thumbprint,
                modified: e.metadata().ok()?.modified().ok()?,
            })
        })
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(c.modified));
    out
}

/// The certificate rejected since `since`, if one was.
fn newest_rejected(
    pki_dir: &std::path::Path,
    since: std::time::SystemTime,
) -> Option<RejectedCert> {
    let since = since.checked_sub(Duration::from_secs(1)).unwrap_or(since);
    rejected_certs(pki_dir)
        .into_iter()
        .find(|c| c.modified >= since)
}
