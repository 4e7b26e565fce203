//! `mezzanine demo-plant`: the demo plant's PLC simulator alone, publishing
//! to an external broker (and hosting an OPC UA server if asked), with its
//! counters printed every 10 s until killed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use anyhow::Context as _;

use crate::config::AppConfig;
use crate::demo;
use crate::ingest::mqtt::parse_mqtt_url;
use crate::registry::{AssetRegistry, load_registry};

pub fn run(
    mqtt: &str,
    opcua: Option<&str>,
    registry: Option<PathBuf>,
    seed: u64,
    time_scale: f64,
) -> anyhow::Result<ExitCode> {
    let cfg = AppConfig::load(None)?;
    let reg_path = registry.unwrap_or(cfg.plant.registry.clone());
    let registry = Arc::new(AssetRegistry::new(load_registry(&reg_path)?));
    let url = parse_mqtt_url(mqtt)?;
    if url.tls {
        anyhow::bail!("the demo plant publishes over plain MQTT; give it an mqtt:// URL");
    }
    let (host, port) = (url.host, url.port);
    let server = match opcua {
        Some(ep) => {
            let port = ep
                .trim_end_matches('/')
                .rsplit_once(':')
                .and_then(|(_, p)| p.split('/').next()?.parse::<u16>().ok())
                .with_context(|| format!("`{ep}` has no port; use opc.tcp://127.0.0.1:4840/"))?;
            Some(Arc::new(demo::opcua_server::start_opcua_server(
                &registry,
                port,
                cfg.pki_dir().join("server"),
            )?))
        }
        None => None,
    };
    let sim = demo::plc::PlcSim::new(registry, seed, crate::ingest::now_us(), time_scale);
    let publisher =
        demo::publisher::spawn_publisher(sim, Some((host, port)), server.clone(), 100, None)?;
    println!(
        "demo plant publishing to {mqtt}{}; Ctrl-C to stop",
        server
            .as_ref()
            .map(|s| format!(", OPC UA at {}", s.endpoint()))
            .unwrap_or_default()
    );
    loop {
        std::thread::sleep(std::time::Duration::from_secs(10));
        let c = &publisher.counters;
        println!(
            "published {} MQTT messages, {} OPC UA updates, {} MQTT errors",
            c.mqtt_published.load(Relaxed),
            c.opcua_updates.load(Relaxed),
            c.mqtt_errors.load(Relaxed)
        );
    }
}
