//! The PLC gateway: [`PlcSim`] emissions in, UNS publishes (MQTT, QoS 1) and
//! OPC UA node updates out, in real time on a named thread.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opcua::types::{NodeId, Variant};
use rumqttc::{AsyncClient, MqttOptions, QoS};

use super::DemoError;
use super::opcua_server::DemoOpcUaServer;
use super::plc::PlcSim;
use crate::ingest::decode::{encode_json, encode_spectrum};
use crate::ingest::worker::WorkerThread;
use crate::ingest::{SampleValue, now_us, sparkplug};
use crate::registry::Encoding;

/// Counters the publisher keeps (read by tests and the bench).
#[derive(Debug, Default)]
pub struct PublisherCounters {
    pub mqtt_published: AtomicU64,
    pub opcua_updates: AtomicU64,
    pub mqtt_errors: AtomicU64,
}

pub struct Publisher {
    worker: WorkerThread,
    pub counters: Arc<PublisherCounters>,
}

impl Publisher {
    pub fn stop(self) {
        self.worker.stop();
    }
}

/// `spBv1.0/<group>/<type>/<edge>[/<device>]` for a registry source id.
fn sparkplug_topic(source: &str, message_type: &str) -> String {
    let mut parts = source.splitn(3, '/');
    let group = parts.next().unwrap_or_default();
    let edge = parts.next().unwrap_or_default();
    match parts.next() {
        Some(device) => format!(
            "{}/{group}/{message_type}/{edge}/{device}",
            sparkplug::NAMESPACE
        ),
        None => format!("{}/{group}/{message_type}/{edge}", sparkplug::NAMESPACE),
    }
}

/// Run `sim` in real time, stepping every `tick_ms`, publishing to the broker
/// at `mqtt` (host, port) and to `opcua` if given.
pub fn spawn_publisher(
    mut sim: PlcSim,
    mqtt: Option<(String, u16)>,
    opcua: Option<Arc<DemoOpcUaServer>>,
    tick_ms: u64,
    floor: Option<Arc<super::mes::ShopFloor>>,
) -> Result<Publisher, DemoError> {
    let counters = Arc::new(PublisherCounters::default());
    let counters_t = counters.clone();
    let worker = WorkerThread::spawn("plc-sim", "PLC simulator", move |stop_t| {
        async move {
            let client = mqtt.map(|(host, port)| {
                let mut opts = MqttOptions::new("mezzanine-demo-plc", host, port);
                opts.set_keep_alive(Duration::from_secs(10));
                opts.set_max_packet_size(1 << 20, 1 << 20);
                let (client, mut eventloop) = AsyncClient::new(opts, 10_000);
                let c = counters_t.clone();
                tokio::spawn(async move {
                    loop {
                        if eventloop.poll().await.is_err() {
                            c.mqtt_errors.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                });
                client
            });
            let registry = sim.registry().clone();
            let node_ids: Vec<Vec<Option<NodeId>>> = registry
                .assets()
                .iter()
                .map(|a| {
                    a.properties
                        .iter()
                        .map(|p| p.opcua.as_deref().and_then(|s| NodeId::from_str(s).ok()))
                        .collect()
                })
                .collect();
            let start = Instant::now();
            let mut wall_ms = 0u64;
            let mut seq = 0u64;
            while !stop_t.load(Ordering::Relaxed) {
                // A PLC stamps a value when it publishes it: real time here.
                let stamp_us = now_us();
                let emissions = sim.step(tick_ms);
                if let Some(f) = &floor {
                    for (asset, parts, scrap) in sim.counters() {
                        f.set(asset, parts, scrap);
                    }
                    // The MES knows parts by the time they were stamped.
                    let shift_us = stamp_us - sim.now_us();
                    let mut inspected = sim.parts_mut().take_inspected();
                    for p in &mut inspected {
                        p.machined_end_us += shift_us;
                        p.inspected_us += shift_us;
                    }
                    f.push_inspected(inspected);
                }
                wall_ms += tick_ms;
                let mut opc_batch = Vec::new();
                let mut sparkplug_batches: HashMap<u32, Vec<(String, SampleValue)>> =
                    HashMap::new();
                for e in emissions {
                    let Some((asset, prop)) = registry.property(e.property) else {
                        continue;
                    };
                    if asset.sparkplug.is_some() {
                        sparkplug_batches
                            .entry(e.property.asset.0)
                            .or_default()
                            .push((prop.name.clone(), e.value.clone()));
                    }
                    if let (Some(client), Some(topic)) = (&client, &prop.mqtt) {
                        let payload = match (&e.value, prop.encoding) {
                            (SampleValue::Spectrum { bin_hz, bins }, Encoding::Spectrum) => {
                                encode_spectrum(*bin_hz, bins, stamp_us)
                            }
                            _ => encode_json(&e.value, stamp_us, e.reason.as_deref()),
                        };
                        match client
                            .publish(topic.clone(), QoS::AtLeastOnce, false, payload)
                            .await
                        {
                            Ok(()) => counters_t.mqtt_published.fetch_add(1, Ordering::Relaxed),
                            Err(_) => counters_t.mqtt_errors.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                    let node = node_ids
                        .get(e.property.asset.0 as usize)
                        .and_then(|v| v.get(e.property.property as usize))
                        .and_then(Option::clone);
                    if let Some(node) = node {
                        let v = match &e.value {
                            SampleValue::Number(n) => Variant::Double(*n),
                            SampleValue::Integer(i) => Variant::Int64(*i),
                            SampleValue::Bool(b) => Variant::Boolean(*b),
                            SampleValue::Text(t) => Variant::from(t.as_str()),
                            SampleValue::Spectrum { .. } => continue,
                        };
                        opc_batch.push((node, v, stamp_us));
                    }
                }
                if let Some(client) = &client {
                    for (asset, metrics) in sparkplug_batches {
                        let Some(source) = registry
                            .get(crate::registry::AssetIdx(asset))
                            .and_then(|a| a.sparkplug.as_ref())
                        else {
                            continue;
                        };
                        let named: Vec<(&str, &SampleValue)> =
                            metrics.iter().map(|(n, v)| (n.as_str(), v)).collect();
                        seq += 1;
                        let payload = sparkplug::encode(&named, (stamp_us / 1000) as u64, seq);
                        let topic = sparkplug_topic(source, "DDATA");
                        match client
                            .publish(topic, QoS::AtLeastOnce, false, payload)
                            .await
                        {
                            Ok(()) => counters_t.mqtt_published.fetch_add(1, Ordering::Relaxed),
                            Err(_) => counters_t.mqtt_errors.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                }
                if let Some(server) = opcua.as_ref().filter(|_| !opc_batch.is_empty()) {
                    counters_t
                        .opcua_updates
                        .fetch_add(opc_batch.len() as u64, Ordering::Relaxed);
                    server.set_values(opc_batch);
                }
                // Stay on the wall clock: sleep until the next tick is due.
                let due = Duration::from_millis(wall_ms);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
            if let Some(c) = client {
                let _ = c.try_disconnect();
            }
        }
    })?;
    Ok(Publisher { worker, counters })
}
