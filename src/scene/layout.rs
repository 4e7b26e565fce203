//! Plant layouts: glTF/GLB bytes in, a node tree and a binding report out.
//!
//! A node binds to a registry asset through its `extras` (`{"asset_id": "…"}`,
//! as a PLM or Blender export writes custom properties) or, as a fallback,
//! through its name matching the asset's `gltf_node`. Nodes whose extras say
//! `{"role": "structure"}` (floor, walls, aisles) are never assets.
//!
//! This file depends on std, serde_json and gltf only: `build.rs` includes it
//! to check the shipped scenes at compile time, and `mezzanine check` prints
//! its report for any user's layout.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Everything that can go wrong reading a layout.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("cannot read layout {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a valid glTF/GLB file: {source}", path.display())]
    Gltf { path: PathBuf, source: gltf::Error },
    #[error("{} has no scene to show", path.display())]
    NoScene { path: PathBuf },
}

/// How a node was bound to its asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindVia {
    /// The node's `extras.asset_id` names the asset.
    Extras,
    /// The node's name equals the asset's `gltf_node`.
    Name,
}

/// What the layout says about one node, before looking at the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTag {
    pub asset_id: Option<String>,
    pub structure: bool,
    /// Extras that were there but could not be read, for people.
    pub problem: Option<String>,
}

/// Parse a node's raw extras JSON. An `asset_id` may be text or a whole
/// number (Blender writes a number custom property as one); anything else,
/// and extras that are not JSON, are a problem to report, not an absence.
pub fn node_tag(extras_json: Option<&str>) -> NodeTag {
    let mut tag = NodeTag {
        asset_id: None,
        structure: false,
        problem: None,
    };
    let Some(raw) = extras_json else {
        return tag;
    };
    let value: serde_json::Value = match serde_json::from_str(raw) {
        Ok(v) => v,
        Err(e) => {
            tag.problem = Some(format!("extras are not valid JSON ({e})"));
            return tag;
        }
    };
    use serde_json::Value;
    match value.get("asset_id") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => tag.asset_id = Some(s.clone()),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => tag.asset_id = Some(n.to_string()),
        Some(other) => {
            let kind = match other {
                Value::Number(_) => "a fractional number",
                Value::Bool(_) => "true/false",
                Value::Array(_) => "a list",
                _ => "an object",
            };
            tag.problem = Some(format!(
                "extras asset_id is {kind} ({other}); use text or a whole number"
            ));
        }
    }
    tag.structure = value.get("role").and_then(Value::as_str) == Some("structure");
    tag
}

/// The registry side of binding: an asset id and the node name it expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetRef {
    pub id: String,
    pub gltf_node: String,
}

/// Identity lookup used by both the headless check and the live scene.
pub struct Binder {
    ids: HashMap<String, usize>,
    by_node: HashMap<String, usize>,
    assets: Vec<AssetRef>,
}

/// The decision for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeBinding {
    Bound {
        asset_id: String,
        via: BindVia,
    },
    /// Extras name an asset the registry does not know.
    UnknownAsset {
        asset_id: String,
    },
    /// Extras that cannot be read (not JSON, an asset_id of the wrong type)
    /// and no registry asset of the node's name.
    BadExtras {
        problem: String,
    },
    Structure,
    None,
}

impl Binder {
    pub fn new(assets: Vec<AssetRef>) -> Self {
        let ids = assets
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.clone(), i))
            .collect();
        let by_node = assets
            .iter()
            .enumerate()
            .map(|(i, a)| (a.gltf_node.clone(), i))
            .collect();
        Self {
            ids,
            by_node,
            assets,
        }
    }

    pub fn assets(&self) -> &[AssetRef] {
        &self.assets
    }

    /// Decide what a node is: extras first, then the name.
    pub fn bind(&self, name: Option<&str>, extras_json: Option<&str>) -> NodeBinding {
        let tag = node_tag(extras_json);
        if tag.structure {
            return NodeBinding::Structure;
        }
        if let Some(id) = tag.asset_id {
            return if self.ids.contains_key(&id) {
                NodeBinding::Bound {
                    asset_id: id,
                    via: BindVia::Extras,
                }
            } else {
                NodeBinding::UnknownAsset { asset_id: id }
            };
        }
        if let Some(&i) = name.and_then(|n| self.by_node.get(n)) {
            return NodeBinding::Bound {
                asset_id: self.assets[i].id.clone(),
                via: BindVia::Name,
            };
        }
        match tag.problem {
            Some(problem) => NodeBinding::BadExtras { problem },
            None => NodeBinding::None,
        }
    }
}

/// One node of a layout file.
#[derive(Debug, Clone)]
pub struct LayoutNode {
    pub index: usize,
    pub name: Option<String>,
    pub extras: Option<String>,
    pub has_mesh: bool,
    pub children: Vec<usize>,
}

/// The node forest of a layout's default scene.
#[derive(Debug, Clone)]
pub struct Layout {
    pub path: PathBuf,
    pub nodes: Vec<LayoutNode>,
    pub roots: Vec<usize>,
}

impl Layout {
    pub fn read(path: &Path) -> Result<Self, LayoutError> {
        let bytes = std::fs::read(path).map_err(|source| LayoutError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, path)
    }

    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, LayoutError> {
        let gltf = gltf::Gltf::from_slice(bytes).map_err(|source| LayoutError::Gltf {
            path: path.to_path_buf(),
            source,
        })?;
        let scene = gltf
            .default_scene()
            .or_else(|| gltf.scenes().next())
            .ok_or_else(|| LayoutError::NoScene {
                path: path.to_path_buf(),
            })?;
        let nodes = gltf
            .nodes()
            .map(|n| LayoutNode {
                index: n.index(),
                name: n.name().map(str::to_string),
                extras: n.extras().as_ref().map(|r| r.get().to_string()),
                has_mesh: n.mesh().is_some(),
                children: n.children().map(|c| c.index()).collect(),
            })
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            nodes,
            roots: scene.nodes().map(|n| n.index()).collect(),
        })
    }

    fn label(&self, i: usize) -> String {
        self.nodes[i]
            .name
            .clone()
            .unwrap_or_else(|| format!("<node {i}>"))
    }

    fn subtree_has_mesh(&self, i: usize) -> bool {
        let n = &self.nodes[i];
        n.has_mesh || n.children.iter().any(|&c| self.subtree_has_mesh(c))
    }

    /// Bind every node against the registry and report what does not fit.
    ///
    /// Walks from the scene roots: a bound node claims its whole subtree;
    /// structure is skipped; an unbound node that carries geometry is
    /// reported; a grouping node without geometry is walked into.
    pub fn bind(&self, binder: &Binder) -> BindingReport {
        let mut report = BindingReport {
            layout: self.path.clone(),
            ..Default::default()
        };
        let mut claimed: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut stack: Vec<usize> = self.roots.iter().rev().copied().collect();
        let mut visited = vec![false; self.nodes.len()];
        while let Some(i) = stack.pop() {
            if i >= self.nodes.len() || std::mem::replace(&mut visited[i], true) {
                continue;
            }
            let node = &self.nodes[i];
            match binder.bind(node.name.as_deref(), node.extras.as_deref()) {
                NodeBinding::Bound { asset_id, via } => {
                    claimed
                        .entry(asset_id.clone())
                        .or_default()
                        .push(self.label(i));
                    report.bound.push(BoundNode {
                        asset_id,
                        node: self.label(i),
                        via,
                    });
                }
                NodeBinding::UnknownAsset { asset_id } => {
                    report.unbound_geometry.push(UnboundNode {
                        node: self.label(i),
                        reason: format!(
                            "extras name asset `{asset_id}`, which the registry does not list"
                        ),
                    });
                }
                NodeBinding::BadExtras { problem } => {
                    report.unbound_geometry.push(UnboundNode {
                        node: self.label(i),
                        reason: problem,
                    });
                }
                NodeBinding::Structure => {}
                NodeBinding::None => {
                    if node.has_mesh {
                        report.unbound_geometry.push(UnboundNode {
                            node: self.label(i),
                            reason: "geometry with no asset_id in extras and no registry asset of this name".into(),
                        });
                    } else if self.subtree_has_mesh(i) {
                        stack.extend(node.children.iter().rev().copied());
                    }
                }
            }
        }
        for a in binder.assets() {
            match claimed.get(&a.id) {
                None => report.missing_geometry.push(a.id.clone()),
                Some(nodes) if nodes.len() > 1 => report.duplicates.push(Duplicate {
                    asset_id: a.id.clone(),
                    nodes: nodes.clone(),
                }),
                Some(_) => {}
            }
        }
        report
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundNode {
    pub asset_id: String,
    pub node: String,
    pub via: BindVia,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnboundNode {
    pub node: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    pub asset_id: String,
    pub nodes: Vec<String>,
}

/// The outcome of binding one layout to one registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindingReport {
    pub layout: PathBuf,
    pub bound: Vec<BoundNode>,
    /// Registry assets that no node represents.
    pub missing_geometry: Vec<String>,
    /// Geometry that no registry asset claims.
    pub unbound_geometry: Vec<UnboundNode>,
    /// Assets claimed by more than one node.
    pub duplicates: Vec<Duplicate>,
}

impl BindingReport {
    /// True when every asset has exactly one node and every node an asset.
    pub fn is_clean(&self) -> bool {
        self.missing_geometry.is_empty()
            && self.unbound_geometry.is_empty()
            && self.duplicates.is_empty()
    }

    /// A human-readable report, one finding per line.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let by_extras = self
            .bound
            .iter()
            .filter(|b| b.via == BindVia::Extras)
            .count();
        let _ = writeln!(out, "layout: {}", self.layout.display());
        let _ = writeln!(
            out,
            "bound assets: {} ({} by extras, {} by node name)",
            self.bound.len(),
            by_extras,
            self.bound.len() - by_extras
        );
        for b in &self.bound {
            let via = match b.via {
                BindVia::Extras => "extras",
                BindVia::Name => "name",
            };
            let _ = writeln!(
                out,
                "  ok      {:<16} <- node `{}` ({via})",
                b.asset_id, b.node
            );
        }
        let _ = writeln!(
            out,
            "assets without geometry: {}",
            self.missing_geometry.len()
        );
        for id in &self.missing_geometry {
            let _ = writeln!(out, "  MISSING {id:<16} no node carries this asset");
        }
        let _ = writeln!(
            out,
            "geometry without an asset: {}",
            self.unbound_geometry.len()
        );
        for u in &self.unbound_geometry {
            let _ = writeln!(out, "  EXTRA   node `{}`: {}", u.node, u.reason);
        }
        let _ = writeln!(out, "duplicates: {}", self.duplicates.len());
        for d in &self.duplicates {
            let _ = writeln!(
                out,
                "  DUP     {:<16} claimed by nodes {}",
                d.asset_id,
                d.nodes
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let _ = writeln!(
            out,
            "result: {}",
            if self.is_clean() {
                "clean"
            } else {
                "UNBOUND items found"
            }
        );
        out
    }
}
