//! A small GLB writer: boxes and cylinders with PBR colours in, GLB bytes out.
//!
//! Only what the plant generator needs: shared unit meshes scaled per node,
//! one material per colour, names and `extras` on nodes.

use std::collections::HashMap;

use serde_json::{Value, json};

/// A unit shape, centred on the origin, one metre across.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    Cube,
    /// Axis along +Y, radius 0.5, height 1.
    Cylinder,
}

/// An sRGB colour with PBR parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Paint {
    pub rgb: [f32; 3],
    pub metallic: f32,
    pub roughness: f32,
}

impl Paint {
    pub const fn matte(rgb: [f32; 3]) -> Self {
        Self {
            rgb,
            metallic: 0.0,
            roughness: 0.8,
        }
    }
    pub const fn metal(rgb: [f32; 3]) -> Self {
        Self {
            rgb,
            metallic: 0.6,
            roughness: 0.45,
        }
    }
    fn key(&self) -> [u32; 5] {
        [
            self.rgb[0].to_bits(),
            self.rgb[1].to_bits(),
            self.rgb[2].to_bits(),
            self.metallic.to_bits(),
            self.roughness.to_bits(),
        ]
    }
}

/// A node under construction.
#[derive(Debug, Clone, Default)]
pub struct NodeSpec {
    pub name: String,
    pub translation: [f32; 3],
    /// Rotation about +Y, degrees.
    pub yaw_deg: f32,
    /// Rotation about +Z, degrees (applied after yaw in the node's frame).
    pub roll_deg: f32,
    pub scale: [f32; 3],
    pub mesh: Option<(Shape, Paint)>,
    pub extras: Option<Value>,
    pub children: Vec<NodeSpec>,
}

impl NodeSpec {
    pub fn group(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            scale: [1.0; 3],
            ..Default::default()
        }
    }

    /// A shape of `size` metres whose centre sits at `center`.
    pub fn part(
        name: impl Into<String>,
        shape: Shape,
        paint: Paint,
        center: [f32; 3],
        size: [f32; 3],
    ) -> Self {
        Self {
            name: name.into(),
            translation: center,
            scale: size,
            mesh: Some((shape, paint)),
            ..Default::default()
        }
    }

    pub fn at(mut self, translation: [f32; 3], yaw_deg: f32) -> Self {
        self.translation = translation;
        self.yaw_deg = yaw_deg;
        self
    }

    pub fn roll(mut self, roll_deg: f32) -> Self {
        self.roll_deg = roll_deg;
        self
    }

    pub fn extras(mut self, extras: Value) -> Self {
        self.extras = Some(extras);
        self
    }

    pub fn child(mut self, c: NodeSpec) -> Self {
        self.children.push(c);
        self
    }
}

fn quat_yaw_roll(yaw_deg: f32, roll_deg: f32) -> [f32; 4] {
    let (sy, cy) = (yaw_deg.to_radians() * 0.5).sin_cos();
    let (sr, cr) = (roll_deg.to_radians() * 0.5).sin_cos();
    // q = qy * qz, with qy = (0, sy, 0, cy) and qz = (0, 0, sr, cr).
    [sy * sr, sy * cr, cy * sr, cy * cr]
}

struct MeshData {
    positions: Vec<[f32; 3]>,
    normals: Vec<[f32; 3]>,
    indices: Vec<u16>,
}

fn cube() -> MeshData {
    let mut m = MeshData {
        positions: vec![],
        normals: vec![],
        indices: vec![],
    };
    let faces: [([f32; 3], [f32; 3], [f32; 3]); 6] = [
        ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]),
        ([-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]),
        ([0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]),
        ([0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]),
        ([0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]),
        ([0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]),
    ];
    for (n, u, v) in faces {
        let base = m.positions.len() as u16;
        for (a, b) in [(-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)] {
            m.positions.push([
                n[0] * 0.5 + u[0] * a + v[0] * b,
                n[1] * 0.5 + u[1] * a + v[1] * b,
                n[2] * 0.5 + u[2] * a + v[2] * b,
            ]);
            m.normals.push(n);
        }
        m.indices
            .extend_from_slice(&[base, base + 1, base + 2, base, base + 2, base + 3]);
    }
    m
}

fn cylinder(segments: u16) -> MeshData {
    let mut m = MeshData {
        positions: vec![],
        normals: vec![],
        indices: vec![],
    };
    let step = std::f32::consts::TAU / f32::from(segments);
    // Side.
    for i in 0..=segments {
        let a = f32::from(i) * step;
        let (s, c) = a.sin_cos();
        m.positions.push([0.5 * c, -0.5, 0.5 * s]);
        m.normals.push([c, 0.0, s]);
        m.positions.push([0.5 * c, 0.5, 0.5 * s]);
        m.normals.push([c, 0.0, s]);
    }
    for i in 0..segments {
        let b = i * 2;
        m.indices
            .extend_from_slice(&[b, b + 1, b + 3, b, b + 3, b + 2]);
    }
    // Caps.
    for (y, ny) in [(0.5f32, 1.0f32), (-0.5, -1.0)] {
        let center = m.positions.len() as u16;
        m.positions.push([0.0, y, 0.0]);
        m.normals.push([0.0, ny, 0.0]);
        for i in 0..=segments {
            let a = f32::from(i) * step;
            let (s, c) = a.sin_cos();
            m.positions.push([0.5 * c, y, 0.5 * s]);
            m.normals.push([0.0, ny, 0.0]);
        }
        for i in 0..segments {
            let a = center + 1 + i;
            if ny > 0.0 {
                m.indices.extend_from_slice(&[center, a + 1, a]);
            } else {
                m.indices.extend_from_slice(&[center, a, a + 1]);
            }
        }
    }
    m
}

/// Accumulates nodes and writes one GLB.
#[derive(Default)]
pub struct GlbBuilder {
    bin: Vec<u8>,
    buffer_views: Vec<Value>,
    accessors: Vec<Value>,
    materials: Vec<Value>,
    material_index: HashMap<[u32; 5], usize>,
    meshes: Vec<Value>,
    mesh_index: HashMap<(Shape, [u32; 5]), usize>,
    shape_accessors: HashMap<Shape, (usize, usize, usize)>,
    nodes: Vec<Value>,
}

impl GlbBuilder {
    fn push_view(&mut self, bytes: &[u8], target: u32) -> usize {
        while !self.bin.len().is_multiple_of(4) {
            self.bin.push(0);
        }
        let offset = self.bin.len();
        self.bin.extend_from_slice(bytes);
        self.buffer_views.push(json!({
            "buffer": 0, "byteOffset": offset, "byteLength": bytes.len(), "target": target
        }));
        self.buffer_views.len() - 1
    }

    fn shape(&mut self, shape: Shape) -> (usize, usize, usize) {
        if let Some(&a) = self.shape_accessors.get(&shape) {
            return a;
        }
        let data = match shape {
            Shape::Cube => cube(),
            Shape::Cylinder => cylinder(24),
        };
        let pos_bytes: Vec<u8> = data
            .positions
            .iter()
            .flat_map(|p| p.iter().flat_map(|f| f.to_le_bytes()))
            .collect();
        let nrm_bytes: Vec<u8> = data
            .normals
            .iter()
            .flat_map(|p| p.iter().flat_map(|f| f.to_le_bytes()))
            .collect();
        let idx_bytes: Vec<u8> = data.indices.iter().flat_map(|i| i.to_le_bytes()).collect();
        let (mut min, mut max) = ([f32::MAX; 3], [f32::MIN; 3]);
        for p in &data.positions {
            for k in 0..3 {
                min[k] = min[k].min(p[k]);
                max[k] = max[k].max(p[k]);
            }
        }
        let vp = self.push_view(&pos_bytes, 34962);
        let vn = self.push_view(&nrm_bytes, 34962);
        let vi = self.push_view(&idx_bytes, 34963);
        let count = data.positions.len();
        self.accessors.push(json!({
            "bufferView": vp, "componentType": 5126, "count": count, "type": "VEC3",
            "min": min, "max": max
        }));
        let ap = self.accessors.len() - 1;
        self.accessors.push(json!({
            "bufferView": vn, "componentType": 5126, "count": count, "type": "VEC3"
        }));
        let an = self.accessors.len() - 1;
        self.accessors.push(json!({
            "bufferView": vi, "componentType": 5123, "count": data.indices.len(), "type": "SCALAR"
        }));
        let ai = self.accessors.len() - 1;
        self.shape_accessors.insert(shape, (ap, an, ai));
        (ap, an, ai)
    }

    fn material(&mut self, paint: Paint) -> usize {
        if let Some(&i) = self.material_index.get(&paint.key()) {
            return i;
        }
        // glTF base colours are linear; the paints are given in sRGB.
        let lin = |c: f32| {
            if c <= 0.04045 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        self.materials.push(json!({
            "name": format!("paint_{:02x}{:02x}{:02x}",
                (paint.rgb[0] * 255.0) as u8, (paint.rgb[1] * 255.0) as u8, (paint.rgb[2] * 255.0) as u8),
            "pbrMetallicRoughness": {
                "baseColorFactor": [lin(paint.rgb[0]), lin(paint.rgb[1]), lin(paint.rgb[2]), 1.0],
                "metallicFactor": paint.metallic,
                "roughnessFactor": paint.roughness
            }
        }));
        let i = self.materials.len() - 1;
        self.material_index.insert(paint.key(), i);
        i
    }

    fn mesh(&mut self, shape: Shape, paint: Paint) -> usize {
        if let Some(&i) = self.mesh_index.get(&(shape, paint.key())) {
            return i;
        }
        let (ap, an, ai) = self.shape(shape);
        let mat = self.material(paint);
        self.meshes.push(json!({
            "primitives": [{
                "attributes": { "POSITION": ap, "NORMAL": an },
                "indices": ai,
                "material": mat
            }]
        }));
        let i = self.meshes.len() - 1;
        self.mesh_index.insert((shape, paint.key()), i);
        i
    }

    /// Add a node tree; returns the index of its root.
    pub fn add(&mut self, spec: &NodeSpec) -> usize {
        let children: Vec<usize> = spec.children.iter().map(|c| self.add(c)).collect();
        let mut node = json!({
            "name": spec.name,
            "translation": spec.translation,
            "rotation": quat_yaw_roll(spec.yaw_deg, spec.roll_deg),
            "scale": spec.scale,
        });
        if let Some((shape, paint)) = spec.mesh {
            node["mesh"] = json!(self.mesh(shape, paint));
        }
        if !children.is_empty() {
            node["children"] = json!(children);
        }
        if let Some(extras) = &spec.extras {
            node["extras"] = extras.clone();
        }
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Write the GLB with one scene whose roots are `roots`.
    pub fn finish(mut self, roots: &[usize], generator: &str) -> Vec<u8> {
        while !self.bin.len().is_multiple_of(4) {
            self.bin.push(0);
        }
        let doc = json!({
            "asset": { "version": "2.0", "generator": generator },
            "scene": 0,
            "scenes": [{ "name": "Plant", "nodes": roots }],
            "nodes": self.nodes,
            "meshes": self.meshes,
            "materials": self.materials,
            "accessors": self.accessors,
            "bufferViews": self.buffer_views,
            "buffers": [{ "byteLength": self.bin.len() }],
        });
        let mut json_bytes = doc.to_string().into_bytes();
        while !json_bytes.len().is_multiple_of(4) {
            json_bytes.push(b' ');
        }
        let total = 12 + 8 + json_bytes.len() + 8 + self.bin.len();
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(b"glTF");
        out.extend_from_slice(&2u32.to_le_bytes());
        out.extend_from_slice(&(total as u32).to_le_bytes());
        out.extend_from_slice(&(json_bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(b"JSON");
        out.extend_from_slice(&json_bytes);
        out.extend_from_slice(&(self.bin.len() as u32).to_le_bytes());
        out.extend_from_slice(b"BIN\0");
        out.extend_from_slice(&self.bin);
        out
    }
}
