//! The demo OPC UA server (async-opcua): the registry's OPC UA node ids in, a
//! structured address space (`Line1` / `Mill01` / `Spindle` / `Speed`) out,
//! with values set by the PLC simulator and pushed to subscribers.
//!
//! Security: the demo listens on loopback with SecurityPolicy None and
//! anonymous users; real deployments point the twin at their own server.
//! [`start_secured_opcua_server`] serves the same nodes only over
//! Basic256Sha256 and Aes256Sha256RsaPss with SignAndEncrypt and one user
//! name and password (what the client's security is tested against).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use opcua::server::address_space::Variable;
use opcua::server::diagnostics::NamespaceMetadata;
use opcua::server::node_manager::memory::{SimpleNodeManager, simple_node_manager};
use opcua::server::{ServerBuilder, ServerHandle, SubscriptionCache};
use opcua::types::{DataValue, DateTime, Identifier, NodeId, Variant};

use super::DemoError;
use crate::registry::AssetRegistry;
use crate::registry::node_id::{Namespace, RegistryNodeId};

/// Namespace URI of the demo plant's nodes; the registry's `ns=2` is this.
pub const DEMO_NAMESPACE_URI: &str = "urn:mezzanine:demo-plant";

/// A running server and the handles the simulator writes through.
pub struct DemoOpcUaServer {
    pub port: u16,
    handle: ServerHandle,
    node_manager: Arc<SimpleNodeManager>,
    subscriptions: Arc<SubscriptionCache>,
    thread: Option<JoinHandle<()>>,
}

impl DemoOpcUaServer {
    pub fn endpoint(&self) -> String {
        format!("opc.tcp://127.0.0.1:{}/", self.port)
    }

    /// Set node values with their source time (µs since the Unix epoch),
    /// notifying subscribers; the server stamps its own time.
    pub fn set_values(&self, values: Vec<(NodeId, Variant, i64)>) {
        let server_ts = DateTime::now();
        let owned: Vec<(NodeId, DataValue)> = values
            .into_iter()
            .map(|(n, v, source_us)| {
                let mut dv = DataValue::new_at(v, server_ts);
                dv.source_timestamp = Some(DateTime::from(unix_us_to_ticks(source_us)));
                (n, dv)
            })
            .collect();
        let _ = self.node_manager.set_values(
            &self.subscriptions,
            owned.iter().map(|(n, dv)| (n, None, dv.clone())),
        );
    }

    /// Stop accepting and close every session (a server "restart" in tests).
    pub fn stop(mut self) {
        self.handle.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for DemoOpcUaServer {
    fn drop(&mut self) {
        self.handle.cancel();
    }
}

/// µs since the Unix epoch → OPC UA ticks (100 ns since 1601).
fn unix_us_to_ticks(us: i64) -> i64 {
    us.saturating_mul(10)
        .saturating_add(116_444_736_000_000_000)
}

/// Every node id of the registry, checked against the demo namespace index.
fn registry_nodes(registry: &AssetRegistry) -> Result<Vec<NodeId>, DemoError> {
    let mut out = Vec::new();
    for a in registry.assets() {
        for p in &a.properties {
            if let Some(id) = &p.opcua {
                // The demo's own namespace may be named by its URI.
                let text = match RegistryNodeId::parse(id) {
                    Ok(RegistryNodeId {
                        namespace: Namespace::Uri(uri),
                        ..
                    }) if uri != DEMO_NAMESPACE_URI => {
                        return Err(DemoError::OpcUa(format!(
                            "`{id}` of {}: the demo server serves {DEMO_NAMESPACE_URI} only",
                            a.id
                        )));
                    }
                    Ok(n) => match n.namespace {
                        Namespace::Uri(_) => n.with_index(2),
                        Namespace::Index(_) => id.clone(),
                    },
                    Err(why) => {
                        return Err(DemoError::OpcUa(format!("`{id}` of {}: {why}", a.id)));
                    }
                };
                let n = NodeId::from_str(&text).map_err(|_| {
                    DemoError::OpcUa(format!("`{id}` of {} is not a node id", a.id))
                })?;
                if n.namespace != 2 {
                    return Err(DemoError::OpcUa(format!(
                        "`{id}` of {}: the demo server serves namespace 2 only",
                        a.id
                    )));
                }
                out.push(n);
            }
        }
    }
    Ok(out)
}

/// Start the server on `port` (its own thread and runtime) and wait until
/// it accepts connections.
pub fn start_opcua_server(
    registry: &AssetRegistry,
    port: u16,
    pki_dir: PathBuf,
) -> Result<DemoOpcUaServer, DemoError> {
    start_with(registry, port, pki_dir, None)
}

/// The same server with only secured endpoints (Basic256Sha256 and
/// Aes256Sha256RsaPss, SignAndEncrypt) and the one user `user`/`password`.
pub fn start_secured_opcua_server(
    registry: &AssetRegistry,
    port: u16,
    pki_dir: PathBuf,
    user: &str,
    password: &str,
) -> Result<DemoOpcUaServer, DemoError> {
    start_with(registry, port, pki_dir, Some((user, password)))
}

fn start_with(
    registry: &AssetRegistry,
    port: u16,
    pki_dir: PathBuf,
    secured: Option<(&str, &str)>,
) -> Result<DemoOpcUaServer, DemoError> {
    let nodes = registry_nodes(registry)?;
    let initial: Vec<(NodeId, Variant)> = nodes
        .iter()
        .map(|n| {
            let v = match &n.identifier {
                Identifier::String(s) if s.as_ref().ends_with(".State") => Variant::from("unknown"),
                _ => Variant::Double(0.0),
            };
            (n.clone(), v)
        })
        .collect();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("opcua-server-io")
        .enable_all()
        .build()
        .map_err(|source| DemoError::Network {
            what: "start the OPC UA runtime",
            source,
        })?;
    // The server spawns its samplers while building: inside the runtime.
    let guard = rt.enter();
    let builder = match secured {
        None => ServerBuilder::new_anonymous("Mezzanine demo PLC"),
        Some((user, password)) => {
            use opcua::server::{ServerEndpoint, ServerUserToken};
            let tokens = ["operator".to_string()];
            ServerBuilder::new()
                .application_name("Mezzanine demo PLC (secured)")
                .add_user_token("operator", ServerUserToken::user_pass(user, password))
                .add_endpoint(
                    "basic256sha256",
                    ServerEndpoint::new_basic256sha256_sign_encrypt("/", &tokens),
                )
                .add_endpoint(
                    "aes256sha256rsapss",
                    ServerEndpoint::new_aes256_sha256_rsapss_sign_encrypt("/", &tokens),
                )
                .discovery_urls(vec!["/".to_owned()])
        }
    };
    let (server, handle) = builder
        .application_uri("urn:mezzanine:demo-plc")
        .product_uri("urn:mezzanine")
        .host("127.0.0.1")
        .port(port)
        .pki_dir(pki_dir)
        .create_sample_keypair(true)
        .trust_client_certs(true)
        .diagnostics_enabled(false)
        .with_node_manager(simple_node_manager(
            NamespaceMetadata {
                namespace_uri: DEMO_NAMESPACE_URI.to_owned(),
                ..Default::default()
            },
            "demo-plant",
        ))
        .build()
        .map_err(DemoError::OpcUa)?;
    let node_manager = handle
        .node_managers()
        .get_of_type::<SimpleNodeManager>()
        .ok_or_else(|| DemoError::OpcUa("node manager missing".into()))?;
    let ns = handle
        .get_namespace_index(DEMO_NAMESPACE_URI)
        .ok_or_else(|| DemoError::OpcUa("namespace missing".into()))?;
    if ns != 2 {
        return Err(DemoError::OpcUa(format!(
            "demo namespace got index {ns}, expected 2"
        )));
    }

    // Folders for every dotted prefix: Line1, Line1.Mill01, Line1.Mill01.Spindle.
    {
        let mut space = node_manager.address_space().write();
        let mut folders = BTreeSet::new();
        for (n, _) in &initial {
            if let Identifier::String(s) = &n.identifier {
                let parts: Vec<&str> = s.as_ref().split('.').collect();
                for depth in 1..parts.len() {
                    folders.insert(parts[..depth].join("."));
                }
            }
        }
        for f in &folders {
            let id = NodeId::new(ns, f.clone());
            let (parent, name) = match f.rsplit_once('.') {
                Some((p, n)) => (NodeId::new(ns, p.to_string()), n.to_string()),
                None => (NodeId::objects_folder_id(), f.clone()),
            };
            space.add_folder(&id, name.as_str(), name.as_str(), &parent);
        }
        for (n, v) in &initial {
            let Identifier::String(s) = &n.identifier else {
                continue;
            };
            let (parent, name) = match s.as_ref().rsplit_once('.') {
                Some((p, name)) => (NodeId::new(ns, p.to_string()), name.to_string()),
                None => (NodeId::objects_folder_id(), s.as_ref().to_string()),
            };
            let var = Variable::new(n, name.as_str(), name.as_str(), v.clone());
            space.add_variables(vec![var], &parent);
        }
    }

    let subscriptions = handle.subscriptions().clone();
    drop(guard);
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
        .map_err(|source| DemoError::Network {
            what: "bind the OPC UA port",
            source,
        })?;
    let thread = std::thread::Builder::new()
        .name("opcua-server".into())
        .spawn(move || {
            if let Err(e) = rt.block_on(server.run_with(listener)) {
                bevy::log::error!("demo OPC UA server stopped: {e}");
            }
            rt.shutdown_timeout(Duration::from_secs(1));
        })
        .map_err(|source| DemoError::Network {
            what: "start the OPC UA server thread",
            source,
        })?;
    Ok(DemoOpcUaServer {
        port,
        handle,
        node_manager,
        subscriptions,
        thread: Some(thread),
    })
}
