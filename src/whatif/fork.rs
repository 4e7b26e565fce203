//! A fork: one scenario of the plant as its own `bevy::ecs::World`, with
//! its own `Schedule` (single-threaded; a schedule binds to the first world
//! it runs, so each fork has one) and its own [`SimClock`].
//!
//! The world holds one entity per machine ([`SimMachine`], with its buffer
//! as [`SimBuffer`]) and per order ([`SimOrder`]): what the ghost renderer
//! reads. The engine's hot state lives in the world as the [`EngineState`]
//! resource; the schedule advances it to the clock's target, then copies
//! its state into the components — once per step, never per event. The live
//! world is read once, when the model is built (`plant`), and never written.

use std::sync::Arc;

use bevy::ecs::schedule::{Schedule, ScheduleLabel, SingleThreadedExecutor};
use bevy::prelude::*;

use super::engine::{Engine, RunOptions, SimState};
use super::model::Model;

/// The fork's clock: simulated seconds since the fork, and where to go.
#[derive(Resource, Debug, Clone, Copy, PartialEq)]
pub struct SimClock {
    /// The fork moment, µs since the Unix epoch (UTC).
    pub origin_us: i64,
    pub now_s: f64,
    pub target_s: f64,
}

impl SimClock {
    pub fn now_us(&self) -> i64 {
        self.origin_us + (self.now_s * 1e6) as i64
    }
}

/// The engine of this fork (one replication).
#[derive(Resource)]
pub struct EngineState(pub Engine);

/// A simulated machine.
#[derive(Component, Debug, Clone, PartialEq)]
pub struct SimMachine {
    pub station: u32,
    pub asset_id: String,
    pub state: SimState,
    /// The order it works on.
    pub order: Option<String>,
    pub units_done: u64,
}

/// A machine's input buffer.
#[derive(Component, Debug, Clone, PartialEq)]
pub struct SimBuffer {
    pub station: u32,
    pub capacity: Option<u32>,
    pub level: u32,
}

/// A simulated order.
#[derive(Component, Debug, Clone, PartialEq)]
pub struct SimOrder {
    pub order: u32,
    pub id: String,
    /// The machine it is at (or travelling to) and its routing step.
    pub at: Option<(u32, u32)>,
    pub done_s: Option<f64>,
}

/// The schedule every fork runs.
#[derive(ScheduleLabel, Debug, Clone, PartialEq, Eq, Hash)]
pub struct Simulate;

/// One scenario in its own world.
pub struct Fork {
    pub world: World,
    schedule: Schedule,
}

impl Fork {
    /// A world for `model`, replication `replication` under `seed`.
    pub fn new(model: Arc<Model>, seed: u64, replication: u32) -> Fork {
        let mut world = World::new();
        for (i, s) in model.stations.iter().enumerate() {
            world.spawn((
                SimMachine {
                    station: i as u32,
                    asset_id: s.id.clone(),
                    state: SimState::Starved,
                    order: None,
                    units_done: 0,
                },
                SimBuffer {
                    station: i as u32,
                    capacity: s.buffer_capacity,
                    level: 0,
                },
            ));
        }
        for (i, o) in model.orders.iter().enumerate() {
            world.spawn(SimOrder {
                order: i as u32,
                id: o.id.clone(),
                at: None,
                done_s: None,
            });
        }
        world.insert_resource(SimClock {
            origin_us: model.origin_us,
            now_s: 0.0,
            target_s: 0.0,
        });
        world.insert_resource(EngineState(Engine::new(
            model,
            seed,
            replication,
            RunOptions::default(),
        )));
        let mut schedule = Schedule::new(Simulate);
        schedule.set_executor(SingleThreadedExecutor::new());
        schedule.add_systems((advance_engine, sync_machines, sync_orders).chain());
        let mut fork = Fork { world, schedule };
        fork.schedule.run(&mut fork.world);
        fork
    }

    /// Simulates up to `t_s` seconds after the fork and updates the entities.
    pub fn advance_to(&mut self, t_s: f64) {
        if let Some(mut c) = self.world.get_resource_mut::<SimClock>() {
            c.target_s = t_s;
        }
        self.schedule.run(&mut self.world);
    }

    pub fn clock(&self) -> SimClock {
        *self.world.resource::<SimClock>()
    }
}

fn advance_engine(mut clock: ResMut<SimClock>, mut engine: ResMut<EngineState>) {
    if clock.target_s > engine.0.now_s() {
        // A fork stepped by frames is never cancelled mid-step.
        let _ = engine.0.run_until(clock.target_s, None);
    }
    clock.now_s = engine.0.now_s();
}

fn sync_machines(engine: Res<EngineState>, mut q: Query<(&mut SimMachine, &mut SimBuffer)>) {
    let e = &engine.0;
    let model = e.model();
    for (mut m, mut b) in &mut q {
        let s = m.station;
        let state = e.station_state(s);
        let order = e
            .order_on(s)
            .and_then(|o| model.orders.get(o as usize))
            .map(|o| o.id.clone());
        let units = e.units_done(s);
        if m.state != state || m.order != order || m.units_done != units {
            m.state = state;
            m.order = order;
            m.units_done = units;
        }
        let level = e.queue_len(s);
        if b.level != level {
            b.level = level;
        }
    }
}

fn sync_orders(engine: Res<EngineState>, mut q: Query<&mut SimOrder>) {
    let e = &engine.0;
    for mut o in &mut q {
        let at = e.order_position(o.order);
        let done = e.order_done_s(o.order);
        if o.at != at || o.done_s != done {
            o.at = at;
            o.done_s = done;
        }
    }
}
