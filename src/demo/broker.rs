//! The embedded MQTT broker (rumqttd) on a loopback port: nothing in, a
//! running broker out. rumqttd keeps sessions in memory only and cannot be
//! stopped once started; it lives as long as the process.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

use super::DemoError;

/// A free TCP port on the loopback interface (free when asked; bind soon).
pub fn free_port() -> Result<u16, DemoError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|source| DemoError::Network {
            what: "find a free port",
            source,
        })
}

/// A broker accepting MQTT 3.1.1 on `127.0.0.1:port`.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedBroker {
    pub port: u16,
}

impl EmbeddedBroker {
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

fn broker_config(port: u16) -> Config {
    let connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: 1 << 20,
        max_inflight_count: 1_000,
        auth: None,
        external_auth: None,
        // Without this, publishes to a topic nobody subscribed to are refused.
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: "uns".into(),
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 1_000,
            max_outgoing_packet_count: 1_000,
            // The router keeps a log per topic of this many segments of this
            // size; local subscribers read it within milliseconds, so a
            // small log bounds the broker's memory on a long run.
            max_segment_size: 1 << 20,
            max_segment_count: 4,
            ..Default::default()
        },
        v4: Some(HashMap::from([("uns".to_string(), server)])),
        ..Default::default()
    }
}

/// Start the broker on its own named thread and wait until it accepts.
pub fn start_embedded_broker(port: u16) -> Result<EmbeddedBroker, DemoError> {
    let config = broker_config(port);
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = Broker::new(config);
            if let Err(e) = broker.start() {
                bevy::log::error!("embedded MQTT broker stopped: {e}");
            }
        })
        .map_err(|source| DemoError::Network {
            what: "start the broker thread",
            source,
        })?;
    let start = Instant::now();
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(EmbeddedBroker { port });
        }
        if start.elapsed() > Duration::from_secs(10) {
            return Err(DemoError::NotReady {
                what: format!("embedded MQTT broker on port {port}"),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
