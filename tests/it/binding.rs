//! glTF import and binding, headless: the shipped GLB is read with the gltf
//! crate, spawned as the node hierarchy Bevy's loader produces (Name +
//! GltfExtras per node), and bound in an App with MinimalPlugins — no GPU.

use bevy::ecs::system::RunSystemOnce;
use bevy::gltf::GltfExtras;
use bevy::prelude::*;

use mezzanine::CoreSetsPlugin;
use mezzanine::registry::{AssetRegistry, load_registry};
use mezzanine::scene::bind_subtree;
use mezzanine::scene::layout::Layout;
use mezzanine::twin::{
    AssetEntities, AssetState, BoundAsset, MachineState, MachineStateUpdate, TwinPlugin,
};

use crate::repo;

#[derive(Component)]
struct Root;

fn spawn_layout(world: &mut World, layout: &Layout) -> Entity {
    fn spawn(world: &mut World, layout: &Layout, i: usize) -> Entity {
        let n = &layout.nodes[i];
        let mut e = world.spawn(Transform::default());
        if let Some(name) = &n.name {
            e.insert(Name::new(name.clone()));
        }
        if let Some(x) = &n.extras {
            e.insert(GltfExtras { value: x.clone() });
        }
        let id = e.id();
        if n.has_mesh {
            // Bevy puts mesh primitives on unnamed child entities.
            let prim = world.spawn(Transform::default()).id();
            world.entity_mut(id).add_child(prim);
        }
        for &c in &n.children {
            let child = spawn(world, layout, c);
            world.entity_mut(id).add_child(child);
        }
        id
    }
    let root = world.spawn((Root, Transform::default())).id();
    for &r in &layout.roots {
        let e = spawn(world, layout, r);
        world.entity_mut(root).add_child(e);
    }
    root
}

fn bind_system(
    mut commands: Commands,
    root: Query<Entity, With<Root>>,
    children: Query<&Children>,
    nodes: Query<(Option<&Name>, Option<&GltfExtras>)>,
    registry: Res<AssetRegistry>,
    mut index: ResMut<AssetEntities>,
) -> usize {
    let root = root.single().expect("one root");
    bind_subtree(
        root,
        &mut commands,
        &children,
        &nodes,
        &registry,
        &mut index,
    )
}

fn app_with_demo_plant() -> (App, AssetRegistry) {
    let reg = AssetRegistry::new(load_registry(&repo("scenes/demo-plant.toml")).expect("registry"));
    let layout = Layout::read(&repo("scenes/demo-plant.glb")).expect("layout");
    let mut app = App::new();
    app.add_plugins((MinimalPlugins, CoreSetsPlugin, TwinPlugin))
        .insert_resource(reg.clone());
    spawn_layout(app.world_mut(), &layout);
    let bound = app
        .world_mut()
        .run_system_once(bind_system)
        .expect("system runs");
    assert_eq!(bound, reg.assets().len(), "every registry asset is bound");
    app.update();
    (app, reg)
}

#[test]
fn every_demo_asset_binds_to_exactly_one_node_entity() {
    let (mut app, reg) = app_with_demo_plant();
    let world = app.world_mut();
    let mut q = world.query::<(&BoundAsset, &Name, &AssetState)>();
    let mut seen: Vec<String> = q
        .iter(world)
        .map(|(b, name, s)| {
            let a = reg.get(b.0).expect("valid index");
            assert_eq!(
                a.gltf_node,
                name.as_str(),
                "bound to the node the registry names"
            );
            assert_eq!(s.state, MachineState::Unknown);
            a.id.clone()
        })
        .collect();
    seen.sort();
    let mut expected: Vec<String> = reg.assets().iter().map(|a| a.id.clone()).collect();
    expected.sort();
    assert_eq!(seen, expected);
    // The buffer store has no extras: it is bound by its node name.
    let buf = reg.by_id("LOG-BUF-01").expect("buffer store");
    assert!(world.resource::<AssetEntities>().0.contains_key(&buf));
}

#[test]
fn state_updates_apply_in_source_time_order() {
    let (mut app, reg) = app_with_demo_plant();
    let mill = reg.by_id("L1-MILL-02").expect("mill");
    let update = |state, reason: Option<&str>, ts_us| MachineStateUpdate {
        asset: mill,
        state,
        reason: reason.map(str::to_string),
        ts_us,
    };
    app.world_mut()
        .write_message(update(MachineState::Running, None, 2_000_000));
    app.update();
    app.world_mut().write_message(update(
        MachineState::Down,
        Some("spindle overload"),
        3_000_000,
    ));
    // A late, older message must not move the machine back in time.
    app.world_mut()
        .write_message(update(MachineState::Idle, None, 2_500_000));
    app.update();
    let e = app.world().resource::<AssetEntities>().0[&mill];
    let s = app.world().get::<AssetState>(e).expect("state component");
    assert_eq!(s.state, MachineState::Down);
    assert_eq!(s.reason.as_deref(), Some("spindle overload"));
    assert_eq!(s.since_ts_us, Some(3_000_000));
}
