//! The asset registry: a registry file in, one [`AssetRegistry`] resource out.
//!
//! Every consumer (scene binding, adapters, UI) resolves identity here: by
//! asset id, glTF node name, MQTT topic or OPC UA node id. Nothing else in
//! the crate hard-codes a tag path.

mod file;
pub mod node_id;

use std::collections::HashMap;

use bevy::prelude::*;

pub use file::{
    AssetRecord, Encoding, Isa95Path, KNOWN_UNITS, OmeKind, PlantInfo, Problem, PropertyRecord,
    Quantity, REGISTRY_FORMAT_VERSION, Registry, RegistryError, load_registry, parse_registry,
};

pub(crate) use file::line_col;

/// Index of an asset in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AssetIdx(pub u32);

/// Where a topic or node id lands: asset and property index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PropertyRef {
    pub asset: AssetIdx,
    pub property: u32,
}

/// The loaded registry with its lookup indexes.
#[derive(Resource, Debug, Clone)]
pub struct AssetRegistry {
    registry: Registry,
    by_id: HashMap<String, AssetIdx>,
    by_node: HashMap<String, AssetIdx>,
    by_topic: HashMap<String, PropertyRef>,
    by_opcua: HashMap<String, PropertyRef>,
    by_sparkplug: HashMap<String, AssetIdx>,
    /// (asset, Sparkplug metric name) → property.
    by_metric: HashMap<(AssetIdx, String), PropertyRef>,
}

impl AssetRegistry {
    pub fn new(registry: Registry) -> Self {
        let mut by_id = HashMap::new();
        let mut by_node = HashMap::new();
        let mut by_topic = HashMap::new();
        let mut by_opcua = HashMap::new();
        let mut by_sparkplug = HashMap::new();
        let mut by_metric = HashMap::new();
        for (i, a) in registry.assets.iter().enumerate() {
            let idx = AssetIdx(i as u32);
            if let Some(sp) = &a.sparkplug {
                by_sparkplug.insert(sp.clone(), idx);
            }
            by_id.insert(a.id.clone(), idx);
            by_node.insert(a.gltf_node.clone(), idx);
            for (pi, p) in a.properties.iter().enumerate() {
                let r = PropertyRef {
                    asset: idx,
                    property: pi as u32,
                };
                if let Some(t) = &p.mqtt {
                    by_topic.insert(t.clone(), r);
                }
                if let Some(n) = &p.opcua {
                    by_opcua.insert(n.clone(), r);
                }
                if a.sparkplug.is_some() {
                    let metric = p.sparkplug_metric.as_ref().unwrap_or(&p.name);
                    by_metric.insert((idx, metric.clone()), r);
                }
            }
        }
        Self {
            registry,
            by_id,
            by_node,
            by_topic,
            by_opcua,
            by_sparkplug,
            by_metric,
        }
    }

    /// The site's short name from the ISA-95 paths (their second level,
    /// lower-cased, anything but letters, digits, `-`, `_` as `-`): the
    /// default for the lake's `site=` partition and the enterprise view.
    pub fn site_name(&self) -> String {
        let site = self
            .registry
            .assets
            .first()
            .map(|a| a.isa95.site.as_str())
            .unwrap_or("site");
        let s: String = site
            .trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        if s.is_empty() { "site".into() } else { s }
    }

    pub fn plant(&self) -> &PlantInfo {
        &self.registry.plant
    }

    pub fn assets(&self) -> &[AssetRecord] {
        &self.registry.assets
    }

    pub fn get(&self, idx: AssetIdx) -> Option<&AssetRecord> {
        self.registry.assets.get(idx.0 as usize)
    }

    pub fn by_id(&self, id: &str) -> Option<AssetIdx> {
        self.by_id.get(id).copied()
    }

    pub fn by_gltf_node(&self, node: &str) -> Option<AssetIdx> {
        self.by_node.get(node).copied()
    }

    pub fn resolve_topic(&self, topic: &str) -> Option<PropertyRef> {
        self.by_topic.get(topic).copied()
    }

    pub fn resolve_opcua(&self, node_id: &str) -> Option<PropertyRef> {
        self.by_opcua.get(node_id).copied()
    }

    /// The asset a Sparkplug source publishes for.
    pub fn resolve_sparkplug_source(&self, source_id: &str) -> Option<AssetIdx> {
        self.by_sparkplug.get(source_id).copied()
    }

    /// The assets an edge node publishes: its own (`group/edge`) and its
    /// devices' (`group/edge/…`).
    pub fn sparkplug_assets_of_node(&self, node: &str) -> Vec<AssetIdx> {
        let prefix = format!("{node}/");
        let mut out: Vec<AssetIdx> = self
            .by_sparkplug
            .iter()
            .filter(|(s, _)| s.as_str() == node || s.starts_with(&prefix))
            .map(|(_, &a)| a)
            .collect();
        out.sort();
        out
    }

    /// The property a Sparkplug metric of `asset` feeds: the one naming it
    /// as `sparkplug_metric`, else the one of the same name.
    pub fn resolve_sparkplug_metric(&self, asset: AssetIdx, metric: &str) -> Option<PropertyRef> {
        self.by_metric.get(&(asset, metric.to_string())).copied()
    }

    /// A property of `asset` by name.
    pub fn property_by_name(&self, asset: AssetIdx, name: &str) -> Option<PropertyRef> {
        let a = self.get(asset)?;
        let pi = a.properties.iter().position(|p| p.name == name)?;
        Some(PropertyRef {
            asset,
            property: pi as u32,
        })
    }

    pub fn property(&self, r: PropertyRef) -> Option<(&AssetRecord, &PropertyRecord)> {
        let a = self.get(r.asset)?;
        Some((a, a.properties.get(r.property as usize)?))
    }

    pub fn source(&self) -> &std::path::Path {
        &self.registry.source
    }
}

/// Inserts the registry the binary loaded.
pub struct RegistryPlugin {
    pub registry: AssetRegistry,
}

impl Plugin for RegistryPlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(self.registry.clone());
    }
}
