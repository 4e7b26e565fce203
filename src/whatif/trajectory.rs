//! Trajectories: a scenario's model in; the plant's simulated future out,
//! sampled once per simulated minute from a [`Fork`] (never per event), for
//! the ghosts and the future side of the timeline.
//!
//! A frame holds, per machine, its state, its queue and the order on it,
//! and per order the machine it is at. Between two frames the ghosts
//! interpolate: an order that changed machine moves along the line between
//! them; states and queues hold the earlier frame's value.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::engine::SimState;
use super::fork::{Fork, SimBuffer, SimMachine, SimOrder};
use super::model::Model;

/// Simulated seconds between frames.
pub const FRAME_S: f64 = 60.0;

/// One machine in a frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MachineFrame {
    pub state: SimState,
    /// Jobs waiting in its buffer.
    pub queue: u32,
    /// The order (index into the model's orders) it works on.
    pub order: Option<u32>,
}

/// The plant at one simulated minute.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub machines: Vec<MachineFrame>,
    /// Per order of the model: the machine it is at or going to.
    pub orders: Vec<Option<u32>>,
}

/// Where an order is between two frames.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrderAt {
    pub order: u32,
    /// The machine it left (or is at) and the one it goes to.
    pub from: u32,
    pub to: u32,
    /// 0 at `from`, 1 at `to`.
    pub frac: f32,
    /// On the machine (being worked), not waiting or moving.
    pub on_machine: bool,
}

/// One replication's future, frame by frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Trajectory {
    /// The fork moment, µs since the Unix epoch (UTC).
    pub origin_us: i64,
    pub step_s: f64,
    pub frames: Vec<Frame>,
    /// The machines' asset ids, in station order.
    pub machines: Vec<String>,
    pub orders: Vec<String>,
}

impl Trajectory {
    /// Steps a fork of `model` (replication `replication` under `seed`: the
    /// same run the pool makes for it) to its horizon, one frame a minute.
    /// None when cancelled.
    pub fn record(
        model: Arc<Model>,
        seed: u64,
        replication: u32,
        cancel: Option<&AtomicBool>,
    ) -> Option<Trajectory> {
        let horizon_s = model.horizon_s;
        let machines = model.stations.iter().map(|s| s.id.clone()).collect();
        let orders = model.orders.iter().map(|o| o.id.clone()).collect();
        let origin_us = model.origin_us;
        // A scenario's "machine down" windows run as planned downtime (the
        // machine off); the ghosts show them as the stop they stand for.
        let downtime: Vec<Vec<(f64, f64)>> =
            model.stations.iter().map(|s| s.downtime.clone()).collect();
        let mut fork = Fork::new(model, seed, replication);
        let n = (horizon_s / FRAME_S).ceil().max(0.0) as usize;
        let mut frames = Vec::with_capacity(n + 1);
        for k in 0..=n {
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return None;
            }
            let t_s = (k as f64 * FRAME_S).min(horizon_s);
            fork.advance_to(t_s);
            let mut f = frame_of(&mut fork);
            for (m, w) in f.machines.iter_mut().zip(&downtime) {
                if m.state == SimState::Off && w.iter().any(|(a, b)| *a <= t_s && t_s < *b) {
                    m.state = SimState::Down;
                }
            }
            frames.push(f);
        }
        Some(Trajectory {
            origin_us,
            step_s: FRAME_S,
            frames,
            machines,
            orders,
        })
    }

    /// Simulated seconds the trajectory covers.
    pub fn span_s(&self) -> f64 {
        self.frames.len().saturating_sub(1) as f64 * self.step_s
    }

    pub fn end_us(&self) -> i64 {
        self.origin_us + (self.span_s() * 1e6) as i64
    }

    /// The frame at or before `t_us` and the share of the way to the next;
    /// None outside the trajectory.
    pub fn locate(&self, t_us: i64) -> Option<(usize, f32)> {
        let t_s = (t_us - self.origin_us) as f64 / 1e6;
        if t_s < 0.0 || t_s > self.span_s() || self.frames.is_empty() {
            return None;
        }
        let k = ((t_s / self.step_s).floor() as usize).min(self.frames.len() - 1);
        let frac = ((t_s - k as f64 * self.step_s) / self.step_s).clamp(0.0, 1.0) as f32;
        Some((k, frac))
    }

    /// The machines at `t_us` (the frame at or before it).
    pub fn machines_at(&self, t_us: i64) -> Option<&[MachineFrame]> {
        self.locate(t_us)
            .map(|(k, _)| self.frames[k].machines.as_slice())
    }

    /// Every order in the plant at `t_us`, interpolated between frames.
    pub fn orders_at(&self, t_us: i64) -> Vec<OrderAt> {
        let Some((k, frac)) = self.locate(t_us) else {
            return Vec::new();
        };
        let a = &self.frames[k];
        let b = self.frames.get(k + 1).unwrap_or(a);
        let mut out = Vec::new();
        for (o, here) in a.orders.iter().enumerate() {
            let Some(from) = *here else { continue };
            let next = b.orders.get(o).copied().flatten();
            let on_machine = a
                .machines
                .get(from as usize)
                .is_some_and(|m| m.order == Some(o as u32));
            let (to, frac) = match next {
                Some(to) if to != from => (to, frac),
                _ => (from, 0.0),
            };
            out.push(OrderAt {
                order: o as u32,
                from,
                to,
                frac,
                on_machine: on_machine && to == from,
            });
        }
        out
    }
}

fn frame_of(fork: &mut Fork) -> Frame {
    let mut machines: Vec<(u32, MachineFrame)> = Vec::new();
    let mut q = fork.world.query::<(&SimMachine, &SimBuffer)>();
    for (m, b) in q.iter(&fork.world) {
        machines.push((
            m.station,
            MachineFrame {
                state: m.state,
                queue: b.level,
                order: None,
            },
        ));
    }
    machines.sort_by_key(|m| m.0);
    let mut machines: Vec<MachineFrame> = machines.into_iter().map(|m| m.1).collect();
    let mut orders: Vec<(u32, Option<u32>)> = Vec::new();
    let mut q = fork.world.query::<&SimOrder>();
    for o in q.iter(&fork.world) {
        orders.push((o.order, o.at.map(|a| a.0)));
    }
    orders.sort_by_key(|o| o.0);
    let engine = &fork.world.resource::<super::fork::EngineState>().0;
    for (s, m) in machines.iter_mut().enumerate() {
        m.order = engine.order_on(s as u32);
    }
    Frame {
        machines,
        orders: orders.into_iter().map(|o| o.1).collect(),
    }
}
