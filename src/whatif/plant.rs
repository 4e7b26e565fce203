//! The plant's process model: the registry, a [`PlantSnapshot`] (machine
//! states now and since when; the MES's released, running and planned
//! orders with routings, quantities, due dates and progress) and the fits
//! from the history in; a [`Model`] out.
//!
//! Snapshots come from the live world ([`snapshot_from_world`], read once
//! at the fork, never written) or from the recorded history at a past
//! moment ([`snapshot_from_history`], for `whatif --at` and back-tests).

use std::collections::{BTreeMap, HashMap};

use bevy::prelude::*;
use duckdb::Connection;

use super::WhatIfError;
use super::dist::Dist;
use super::fit::{MachineFit, stop_kind};
use super::model::{InitialStop, Model, Order, Product, Station, Step, StopKind};
use crate::contract::{Contract, Envelope, MesEvent};
use crate::mes::sync::{OrderStatus, WorkOrderBook};
use crate::mes::{MesSchedule, MesState};
use crate::reconcile::Reconciliation;
use crate::registry::AssetRegistry;
use crate::twin::{AssetState, BoundAsset, MachineState};

/// A machine at the fork.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineNow {
    pub asset_id: String,
    pub state: MachineState,
    pub reason: Option<String>,
    pub since_us: Option<i64>,
}

/// An order at the fork.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderNow {
    pub id: String,
    pub product: String,
    pub quantity: u32,
    pub routing: Vec<String>,
    /// Running on this machine, with this many units of its step done.
    pub running_on: Option<(String, u32)>,
    pub due_us: Option<i64>,
    /// Released later than the fork (planned orders; back-tests).
    pub release_us: Option<i64>,
    pub held: bool,
}

/// The plant at one moment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlantSnapshot {
    pub at_us: i64,
    pub machines: Vec<MachineNow>,
    pub orders: Vec<OrderNow>,
    /// What the snapshot could not know exactly, for the report.
    pub notes: Vec<String>,
}

/// How the plant's model is built.
#[derive(Debug, Clone, PartialEq)]
pub struct PlantSettings {
    pub horizon_s: f64,
    /// Plant seconds per recorded second (the embedded demo compresses
    /// time; 1 for a real plant): nominal times are divided by it.
    pub time_scale: f64,
    /// Off windows of the shift calendar, µs (absolute).
    pub off_shift_us: Vec<(i64, i64)>,
    pub has_calendar: bool,
}

/// Machines the model simulates: assets with an ideal cycle time.
pub fn is_machine(registry: &AssetRegistry, id: &str) -> bool {
    registry
        .by_id(id)
        .and_then(|a| registry.get(a))
        .is_some_and(|a| a.nominal.contains_key("ideal_cycle_time"))
}

fn nominal_s(registry: &AssetRegistry, id: &str, key: &str) -> Option<f64> {
    let a = registry.get(registry.by_id(id)?)?;
    let q = a.nominal.get(key)?;
    Some(match q.unit.as_str() {
        "min" => q.value * 60.0,
        "h" => q.value * 3600.0,
        "ms" => q.value / 1000.0,
        _ => q.value,
    })
}

/// Transport after a step on `id`: the conveyor of the same line
/// (ISA-95 work center), if it has a `transport_time`.
fn transport_s(registry: &AssetRegistry, id: &str) -> f64 {
    let Some(a) = registry.by_id(id).and_then(|a| registry.get(a)) else {
        return 0.0;
    };
    let line =
        |p: &crate::registry::Isa95Path| (p.site.clone(), p.area.clone(), p.work_center.clone());
    let here = line(&a.isa95);
    registry
        .assets()
        .iter()
        .filter(|c| c.class == "conveyor" && line(&c.isa95) == here)
        .find_map(|c| nominal_s(registry, &c.id, "transport_time"))
        .unwrap_or(0.0)
}

/// Builds the model; `fits` by asset id.
pub fn build_model(
    registry: &AssetRegistry,
    snap: &PlantSnapshot,
    fits: &[MachineFit],
    settings: &PlantSettings,
) -> Result<(Model, Vec<String>), WhatIfError> {
    let mut notes = snap.notes.clone();
    let scale = settings.time_scale.max(1e-9);
    let fit_of: HashMap<&str, &MachineFit> =
        fits.iter().map(|f| (f.asset_id.as_str(), f)).collect();
    let mut m = Model {
        name: format!(
            "{} at {}",
            registry.plant().name,
            crate::mes::rfc3339(snap.at_us)
        ),
        origin_us: snap.at_us,
        horizon_s: settings.horizon_s,
        warmup_s: 0.0,
        stations: Vec::new(),
        families: Vec::new(),
        products: Vec::new(),
        orders: Vec::new(),
        arrivals: Vec::new(),
        off_shift: settings
            .off_shift_us
            .iter()
            .map(|(a, b)| ((a - snap.at_us) as f64 / 1e6, (b - snap.at_us) as f64 / 1e6))
            .filter(|(_, b)| *b > 0.0)
            .collect(),
        has_calendar: settings.has_calendar,
        time_unit: "h",
        time_unit_s: 3600.0,
    };
    let now: HashMap<&str, &MachineNow> = snap
        .machines
        .iter()
        .map(|x| (x.asset_id.as_str(), x))
        .collect();
    let mut cycle: Vec<Dist> = Vec::new();
    for a in registry.assets() {
        if !is_machine(registry, &a.id) {
            continue;
        }
        let mut st = Station::new(a.id.clone());
        if let Some(q) = a.nominal.get("queue_capacity") {
            st.buffer_capacity = Some(q.value.max(0.0) as u32);
        }
        if let Some(c) = nominal_s(registry, &a.id, "changeover_time") {
            st.setup_default_s = c / scale;
        }
        let fit = fit_of.get(a.id.as_str());
        let nominal = nominal_s(registry, &a.id, "ideal_cycle_time").unwrap_or(60.0) / scale;
        cycle.push(match fit.and_then(|f| f.cycle.as_ref()) {
            Some(c) => c.dist.clone(),
            None => {
                if !fits.is_empty() {
                    notes.push(format!(
                        "{}: no cycle-time data; nominal {:.1} s used",
                        a.id, nominal
                    ));
                }
                Dist::Fixed(nominal)
            }
        });
        if let Some(f) = fit {
            st.stops = f.stop_modes();
            if let Some((r, _)) = f.scrap {
                st.scrap_rate = r.clamp(0.0, 0.99);
            }
        }
        if let Some(x) = now.get(a.id.as_str())
            && let Some(kind) = stop_kind(x.state)
        {
            let elapsed = x
                .since_us
                .map_or(0.0, |s| ((snap.at_us - s) as f64 / 1e6).max(0.0));
            let name = match (kind, &x.reason) {
                (StopKind::Down, Some(r)) => r.clone(),
                _ => super::fit::kind_label(kind).to_string(),
            };
            let residual = fit.and_then(|f| f.residual_s(kind, &name, elapsed));
            match residual {
                Some(r) => {
                    st.initial_stop = Some(InitialStop {
                        kind,
                        name,
                        remaining_s: r,
                    })
                }
                None if kind == StopKind::Down => {
                    notes.push(format!(
                        "{} is down ({}) with no repair times recorded: assumed back in 30 min",
                        a.id, name
                    ));
                    st.initial_stop = Some(InitialStop {
                        kind,
                        name,
                        remaining_s: 1800.0 / scale,
                    });
                }
                None => {}
            }
        }
        m.stations.push(st);
    }
    // Products: one per (product, routing).
    let mut products: BTreeMap<(String, Vec<String>), u32> = BTreeMap::new();
    let mut skipped = Vec::new();
    let mut unknown_routing = Vec::new();
    for o in &snap.orders {
        if o.held {
            skipped.push(format!("{} (held)", o.id));
            continue;
        }
        // An order whose release the twin never saw has no routing: the
        // machine it runs on is all that is known of it.
        let own;
        let routing = match (&o.running_on, o.routing.is_empty()) {
            (Some((asset, _)), true) => {
                own = vec![asset.clone()];
                unknown_routing.push(o.id.clone());
                &own
            }
            _ => &o.routing,
        };
        let steps: Vec<&String> = routing.iter().filter(|r| is_machine(registry, r)).collect();
        if steps.is_empty() {
            skipped.push(format!("{} (no simulated machine in its routing)", o.id));
            continue;
        }
        let key = (
            o.product.clone(),
            steps.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        );
        let p = match products.get(&key) {
            Some(p) => *p,
            None => {
                let family = m.family(&o.product);
                let mut routing = Vec::new();
                for s in &steps {
                    let Some(si) = m.station(s) else {
                        return Err(WhatIfError::Model(format!(
                            "order {}: routing names {s}, which is not a machine",
                            o.id
                        )));
                    };
                    routing.push(Step {
                        stations: vec![si],
                        time: cycle[si as usize].clone(),
                        transport_s: transport_s(registry, s) / scale,
                    });
                }
                m.products.push(Product {
                    id: format!("{} via {}", o.product, key.1.join(">")),
                    family,
                    routing,
                });
                let p = (m.products.len() - 1) as u32;
                products.insert(key.clone(), p);
                p
            }
        };
        let mut step = 0;
        let mut in_process = None;
        if let Some((asset, done)) = &o.running_on
            && let Some(i) = key.1.iter().position(|s| s == asset)
        {
            step = i as u32;
            in_process = Some((
                m.station(asset).unwrap_or(0),
                (*done).min(o.quantity.saturating_sub(1)),
            ));
        }
        m.orders.push(Order {
            id: o.id.clone(),
            product: p,
            quantity: o.quantity.max(1),
            release_s: o
                .release_us
                .map_or(0.0, |r| ((r - snap.at_us) as f64 / 1e6).max(0.0)),
            due_s: o.due_us.map(|d| (d - snap.at_us) as f64 / 1e6),
            weight: 1.0,
            step,
            in_process,
            plan: Vec::new(),
        });
    }
    if !skipped.is_empty() {
        notes.push(format!("not simulated: {}", skipped.join(", ")));
    }
    if !unknown_routing.is_empty() {
        notes.push(format!(
            "routing not known (released before the twin listened): simulated on the machine running it only: {}",
            unknown_routing.join(", ")
        ));
    }
    let problems = m.problems();
    if !problems.is_empty() {
        return Err(WhatIfError::Model(problems.join("; ")));
    }
    Ok((m, notes))
}

/// Reads the live world once: machine states, the MES's orders.
pub fn snapshot_from_world(world: &World, at_us: i64) -> Result<PlantSnapshot, WhatIfError> {
    let registry = world
        .get_resource::<AssetRegistry>()
        .ok_or_else(|| WhatIfError::Model("the live world has no asset registry".into()))?;
    let mut machines = Vec::new();
    let mut q = world
        .try_query::<(&BoundAsset, &AssetState)>()
        .ok_or_else(|| WhatIfError::Model("the live world has no machine states".into()))?;
    for (b, s) in q.iter(world) {
        if let Some(a) = registry.get(b.0) {
            machines.push(MachineNow {
                asset_id: a.id.clone(),
                state: s.state,
                reason: s.reason.clone(),
                since_us: s.since_ts_us,
            });
        }
    }
    machines.sort_by(|a, b| a.asset_id.cmp(&b.asset_id));
    let mut snap = PlantSnapshot {
        at_us,
        machines,
        ..Default::default()
    };
    if let Some(mes) = world.get_resource::<MesState>() {
        // Progress of running orders: the reconciliation keeps each
        // machine's counter at its order's start.
        let mut progress = HashMap::new();
        if let Some(r) = world.get_resource::<Reconciliation>() {
            for (asset, ctx) in &mes.0.book.assets {
                if let (Some(wo), Some((started, parts))) =
                    (&ctx.work_order, r.engine.order_progress(asset))
                    && wo == started
                {
                    progress.insert(wo.clone(), parts as u32);
                }
            }
        }
        orders_from_book(&mes.0.book, &progress, &mut snap);
    } else {
        snap.notes
            .push("no MES connection: no orders to simulate".into());
    }
    if let Some(s) = world.get_resource::<MesSchedule>() {
        for o in &s.orders {
            if snap.orders.iter().any(|x| x.id == o.work_order) || o.status == "completed" {
                continue;
            }
            snap.orders.push(OrderNow {
                id: o.work_order.clone(),
                product: o.product.clone(),
                quantity: o.quantity.max(1.0) as u32,
                routing: vec![o.asset_id.clone()],
                running_on: None,
                due_us: o.due_us,
                release_us: o.planned_start_us.filter(|t| *t > at_us),
                held: o.status == "held",
            });
        }
    }
    Ok(snap)
}

/// Released, running and held orders of a book; `progress` gives the
/// units done of running orders (else 0, noted).
fn orders_from_book(
    book: &WorkOrderBook,
    progress: &HashMap<String, u32>,
    snap: &mut PlantSnapshot,
) {
    let mut ids: Vec<&String> = book.orders.keys().collect();
    ids.sort();
    let mut unknown_progress = Vec::new();
    for id in ids {
        let o = &book.orders[id];
        if o.status == OrderStatus::Completed {
            continue;
        }
        let running_on = if o.status == OrderStatus::Running {
            book.assets
                .iter()
                .filter(|(_, c)| c.work_order.as_deref() == Some(id.as_str()))
                .map(|(a, _)| a.clone())
                .min()
                .map(|a| {
                    let done = match progress.get(id) {
                        Some(d) => *d,
                        None => {
                            unknown_progress.push(id.clone());
                            0
                        }
                    };
                    (a, done)
                })
        } else {
            None
        };
        snap.orders.push(OrderNow {
            id: id.clone(),
            product: o
                .product
                .clone()
                .unwrap_or_else(|| "unknown product".into()),
            quantity: o.quantity.unwrap_or(1.0).max(1.0) as u32,
            routing: o.routing.clone(),
            running_on,
            due_us: o.due_us,
            release_us: None,
            held: o.status == OrderStatus::Held,
        });
    }
    if !unknown_progress.is_empty() {
        snap.notes.push(format!(
            "progress of running orders not known from counters (taken as 0): {}",
            unknown_progress.join(", ")
        ));
    }
}

/// The MES events recorded up to `to_us`, oldest first, decoded.
pub fn recorded_mes_events(conn: &Connection, to_us: i64) -> Result<Vec<Envelope>, WhatIfError> {
    let contract = Contract::load().map_err(|e| WhatIfError::History(e.to_string()))?;
    let mut st = conn
        .prepare(
            "SELECT ts_us, event_id, event_type, payload FROM mes_events WHERE ts_us <= ?
             ORDER BY ts_us, received_us",
        )
        .map_err(|e| WhatIfError::History(format!("reading MES events: {e}")))?;
    let rows = st
        .query_map(duckdb::params![to_us], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })
        .map_err(|e| WhatIfError::History(format!("reading MES events: {e}")))?;
    let mut out = Vec::new();
    for row in rows {
        let (ts, id, ty, payload) =
            row.map_err(|e| WhatIfError::History(format!("reading MES events: {e}")))?;
        let Some(payload) = payload else { continue };
        let raw = format!(
            "{{\"id\":{},\"type\":{},\"schema_version\":\"2.0\",\"source_time\":\"{}\",\"payload\":{}}}",
            serde_json::Value::String(id),
            serde_json::Value::String(ty),
            crate::mes::rfc3339(ts),
            payload
        );
        // Recorded events were valid when they came; one that is not now
        // (a contract change) is left out of the fork.
        if let Ok(e) = contract.decode(raw.as_bytes(), "history") {
            out.push(e);
        }
    }
    Ok(out)
}

/// The plant as recorded at `at_us`: machine states from the transitions,
/// orders from the MES events up to then (progress of running orders from
/// the machines' part counters), and — when `releases_until_us` is given —
/// the orders the MES released after `at_us` up to then, at their release
/// times (the orders "as the MES had them", for a back-test).
pub fn snapshot_from_history(
    conn: &Connection,
    props: &crate::history::store::PropIds,
    registry: &AssetRegistry,
    events: &[Envelope],
    at_us: i64,
    releases_until_us: Option<i64>,
) -> Result<PlantSnapshot, WhatIfError> {
    let h = |e: crate::history::HistoryError| WhatIfError::History(e.to_string());
    let mut machines = Vec::new();
    for a in registry.assets() {
        if !is_machine(registry, &a.id) {
            continue;
        }
        let tr = crate::history::query::transitions(conn, &a.id, at_us, at_us).map_err(h)?;
        let (state, reason, since) = match tr.last() {
            Some(t) => (
                MachineState::parse(&t.state).unwrap_or(MachineState::Unknown),
                t.reason.clone(),
                Some(t.ts_us),
            ),
            None => (MachineState::Unknown, None, None),
        };
        machines.push(MachineNow {
            asset_id: a.id.clone(),
            state,
            reason,
            since_us: since,
        });
    }
    let mut book = WorkOrderBook::default();
    let mut started: HashMap<String, (String, i64)> = HashMap::new();
    for e in events.iter().filter(|e| e.source_time_us <= at_us) {
        book.apply(e);
        match &e.event {
            MesEvent::WorkOrderStarted {
                work_order,
                asset_id,
            }
            | MesEvent::OperationStarted {
                work_order,
                asset_id,
                ..
            } => {
                started
                    .entry(work_order.clone())
                    .or_insert((asset_id.clone(), e.source_time_us));
            }
            _ => {}
        }
    }
    // Progress of running orders: the machine's part counter since the start.
    let mut progress = HashMap::new();
    for (wo, (asset, t0)) in &started {
        let Some(a) = registry.by_id(asset) else {
            continue;
        };
        let Some(pid) = super::fit::counter(registry, a, "part_count").and_then(|p| props.id(p))
        else {
            continue;
        };
        if let (Some(c0), Some(c1)) = (
            super::fit::counter_at(conn, pid, *t0)?,
            super::fit::counter_at(conn, pid, at_us)?,
        ) {
            progress.insert(wo.clone(), (c1 - c0).max(0.0) as u32);
        }
    }
    let mut snap = PlantSnapshot {
        at_us,
        machines,
        ..Default::default()
    };
    orders_from_book(&book, &progress, &mut snap);
    if let Some(until) = releases_until_us {
        for e in events
            .iter()
            .filter(|e| e.source_time_us > at_us && e.source_time_us <= until)
        {
            if let MesEvent::WorkOrderReleased {
                work_order,
                product,
                quantity,
                due_us,
                routing,
            } = &e.event
                && !snap.orders.iter().any(|o| &o.id == work_order)
            {
                snap.orders.push(OrderNow {
                    id: work_order.clone(),
                    product: product.clone(),
                    quantity: quantity.value.max(1.0) as u32,
                    routing: routing.clone(),
                    running_on: None,
                    due_us: Some(*due_us),
                    release_us: Some(e.source_time_us),
                    held: false,
                });
            }
        }
    }
    Ok(snap)
}

/// Every machine's fit over `[from_us, to_us]` of the history.
pub fn fits_from_history(
    conn: &Connection,
    props: &crate::history::store::PropIds,
    registry: &AssetRegistry,
    from_us: i64,
    to_us: i64,
) -> Result<Vec<MachineFit>, WhatIfError> {
    let mut fits = Vec::new();
    for (i, a) in registry.assets().iter().enumerate() {
        if is_machine(registry, &a.id) {
            fits.push(super::fit::fit_machine(
                conn,
                props,
                registry,
                crate::registry::AssetIdx(i as u32),
                from_us,
                to_us,
            )?);
        }
    }
    Ok(fits)
}

/// The MES plan's orders the snapshot does not hold yet (planned, not
/// released): each released at its planned start (or at once), with the
/// plan's routing, quantity and latest end as its due date.
pub fn add_planned_orders(snap: &mut PlantSnapshot, schedule: &crate::contract::Schedule) {
    for r in &schedule.requests {
        if snap.orders.iter().any(|o| o.id == r.id) || r.routing.is_empty() {
            continue;
        }
        snap.orders.push(OrderNow {
            id: r.id.clone(),
            product: r.product.clone(),
            quantity: r.quantity.max(1.0) as u32,
            routing: r.routing.clone(),
            running_on: None,
            due_us: r.latest_end_us,
            release_us: r.earliest_start_us.filter(|t| *t > snap.at_us),
            held: false,
        });
    }
}
