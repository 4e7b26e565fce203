//! The MES simulator: the registry, a seed and the machines' counters in;
//! MES events (JSON envelopes) on `acme/lyon/mes/events/<type>`, a heartbeat
//! on `acme/lyon/mes/heartbeat`, and a read-only REST API out.
//!
//! Each machining asset (mills and lathes) has a production schedule: the
//! next three orders are planned (routing, quantity, planned start and end,
//! due date) and released ahead; an order is dispatched when the machine is
//! free (material issued, order and operation started, mode production) and
//! completes when the machine's own part counter has advanced by the order
//! quantity, as an MES that reads the machine would; then operation and
//! order completed with good and scrap counts, a quality disposition for a
//! sampled part, and a changeover (mode setup). Like a real shop, it is not
//! perfect: now and then an order is held for a while, an operator mistypes
//! a count, an inspection result is never entered, or a machine waits long
//! for its next order. The lathes' MES module still speaks schema version 1,
//! the rest version 2. Events are sent at least once (some twice with the
//! same id, as after an MES failover).
//!
//! The REST API (`/api/v1/…`, in `mes_api`) serves current work orders, the schedule (JSON
//! and B2MML XML), equipment modes, and the event log since a time; it only
//! answers GET, and counts every request it gets. [`MesSimulator::set_online`]
//! takes the whole MES off the network and back, as in an outage: no events,
//! no heartbeat, connections refused. Its clock keeps running meanwhile, and
//! what happened is in the event log when it returns.
//!
//! [`MesSim`] is deterministic for a seed and a sequence of step times.
//!
//! Why one file of ~750 lines: the simulator is one state machine whose
//! schedule, dispatch, completion and imperfections share its state; the
//! REST API, the part that is not, lives in `mes_api`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde::Serialize;
use serde_json::{Value, json};

use super::DemoError;
use super::plc::Rng;
use crate::ingest::now_us;
use crate::ingest::worker::WorkerThread;
use crate::mes::rfc3339;
use crate::registry::{AssetIdx, AssetRegistry};

/// Where the simulator publishes (the default `[mes] events_topic`).
pub const MES_TOPIC_PREFIX: &str = "acme/lyon/mes/events/";
/// Where its heartbeat goes (the default `[mes] heartbeat_topic`).
pub const MES_HEARTBEAT_TOPIC: &str = "acme/lyon/mes/heartbeat";

/// The machines' counters as the PLCs hold them, shared with the MES.
#[derive(Debug)]
pub struct ShopFloor {
    ids: HashMap<String, usize>,
    /// (parts, scrap); `u64::MAX` parts until the PLC reported.
    counts: Vec<(AtomicU64, AtomicU64)>,
    /// Parts the CMM measured, waiting for the MES to disposition them.
    inspected: Mutex<Vec<super::parts::Inspected>>,
}

impl ShopFloor {
    pub fn new(registry: &AssetRegistry) -> Self {
        Self {
            ids: registry
                .assets()
                .iter()
                .enumerate()
                .map(|(i, a)| (a.id.clone(), i))
                .collect(),
            counts: registry
                .assets()
                .iter()
                .map(|_| (AtomicU64::new(u64::MAX), AtomicU64::new(0)))
                .collect(),
            inspected: Mutex::new(Vec::new()),
        }
    }

    /// The CMM measured these parts (from the PLC side).
    pub fn push_inspected(&self, parts: Vec<super::parts::Inspected>) {
        if parts.is_empty() {
            return;
        }
        if let Ok(mut q) = self.inspected.lock() {
            q.extend(parts);
            // The MES may be away for a while; keep a bounded backlog.
            let n = q.len();
            if n > 50_000 {
                q.drain(..n - 50_000);
            }
        }
    }

    fn take_inspected(&self) -> Vec<super::parts::Inspected> {
        self.inspected
            .lock()
            .map(|mut q| std::mem::take(&mut *q))
            .unwrap_or_default()
    }

    pub fn set(&self, asset: AssetIdx, parts: u64, scrap: u64) {
        if let Some((p, s)) = self.counts.get(asset.0 as usize) {
            s.store(scrap, Ordering::Relaxed);
            p.store(parts, Ordering::Relaxed);
        }
    }

    pub fn set_by_id(&self, asset_id: &str, parts: u64, scrap: u64) {
        if let Some(&i) = self.ids.get(asset_id) {
            self.set(AssetIdx(i as u32), parts, scrap);
        }
    }

    /// (parts, scrap) of a machine, once its PLC has reported.
    pub fn get(&self, asset_id: &str) -> Option<(u64, u64)> {
        let (p, s) = self.counts.get(*self.ids.get(asset_id)?)?;
        let parts = p.load(Ordering::Relaxed);
        (parts != u64::MAX).then(|| (parts, s.load(Ordering::Relaxed)))
    }
}

/// One order as the MES's REST API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderRecord {
    pub work_order: String,
    pub product: String,
    pub quantity: u64,
    pub unit: &'static str,
    pub routing: Vec<String>,
    pub asset_id: String,
    /// released | running | held | completed
    pub status: &'static str,
    pub operation: Option<u32>,
    pub good_count: u64,
    pub scrap_count: u64,
    pub hold_reason: Option<String>,
    pub planned_start_us: i64,
    pub planned_end_us: i64,
    pub due_us: i64,
    pub started_us: Option<i64>,
    pub completed_us: Option<i64>,
}

/// An event the MES recorded (and published, when online).
#[derive(Debug, Clone, PartialEq)]
pub struct MesMessage {
    pub topic: String,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone)]
struct LoggedEvent {
    /// Its place in the log (the API's cursor).
    seq: u64,
    source_time_us: i64,
    payload: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Planned {
    wo: String,
    qty: u64,
    start_us: i64,
    end_us: i64,
}

#[derive(Debug, Clone)]
enum Phase {
    Idle {
        next_start_us: i64,
    },
    Running {
        wo: String,
        qty: u64,
        start_counts: Option<(u64, u64)>,
        fallback_end_us: i64,
        hold_at_us: Option<i64>,
        held_until_us: Option<i64>,
    },
}

#[derive(Debug, Clone)]
struct Machine {
    asset_id: String,
    legacy: bool,
    /// One part, wall microseconds.
    cycle_us: i64,
    queue: VecDeque<Planned>,
    phase: Phase,
    mode: &'static str,
    /// Recent orders on the machine: (order, lot, started, completed).
    recent: VecDeque<(String, String, i64, Option<i64>)>,
}

const HOLD_REASONS: [&str; 3] = [
    "first article inspection pending",
    "material certificate missing",
    "engineering change under review",
];

/// The simulated MES.
pub struct MesSim {
    rng: Rng,
    machines: Vec<Machine>,
    orders: BTreeMap<String, OrderRecord>,
    log: VecDeque<LoggedEvent>,
    next_wo: u64,
    next_event: u64,
    /// Part of every event id, so ids stay unique across runs (a real MES
    /// never reuses one; the twin remembers them across restarts).
    run_tag: String,
    time_scale: f64,
}

/// How many events the log keeps for catch-up.
const LOG_CAPACITY: usize = 20_000;

impl MesSim {
    pub fn new(registry: &AssetRegistry, seed: u64, start_us: i64, time_scale: f64) -> Self {
        let mut rng = Rng::new(seed ^ 0x4D45_5300);
        let time_scale = time_scale.max(0.01);
        let machines = registry
            .assets()
            .iter()
            .filter(|a| a.class == "cnc_mill" || a.class == "cnc_lathe")
            .map(|a| {
                let cycle_s = a.nominal.get("ideal_cycle_time").map_or(120.0, |q| q.value);
                Machine {
                    asset_id: a.id.clone(),
                    legacy: a.class == "cnc_lathe",
                    cycle_us: (cycle_s * 1e6 / time_scale) as i64,
                    queue: VecDeque::new(),
                    phase: Phase::Idle {
                        // After the twin has subscribed (events are not retained).
                        next_start_us: start_us + (rng.range(5.0, 25.0) * 1e6) as i64,
                    },
                    mode: "idle",
                    recent: VecDeque::new(),
                }
            })
            .collect();
        Self {
            rng,
            machines,
            orders: BTreeMap::new(),
            log: VecDeque::new(),
            next_wo: 240_100,
            next_event: 1,
            run_tag: format!("{:x}", start_us),
            time_scale,
        }
    }

    /// Plant minutes as wall microseconds.
    fn plant_minutes_us(&self, min: f64) -> i64 {
        (min * 60e6 / self.time_scale) as i64
    }

    fn envelope(
        &mut self,
        ty: &str,
        legacy: bool,
        now_us: i64,
        payload: Value,
        out: &mut Vec<MesMessage>,
    ) {
        let id = format!("mes-{}-{:08}", self.run_tag, self.next_event);
        self.next_event += 1;
        let version = if legacy { "1.4" } else { "2.0" };
        let e = json!({"id": id, "type": ty, "schema_version": version,
                       "source_time": rfc3339(now_us), "payload": payload});
        let msg = MesMessage {
            topic: format!("{MES_TOPIC_PREFIX}{ty}"),
            payload: e.to_string().into_bytes(),
        };
        self.log.push_back(LoggedEvent {
            seq: self.next_event,
            source_time_us: now_us,
            payload: msg.payload.clone(),
        });
        while self.log.len() > LOG_CAPACITY {
            self.log.pop_front();
        }
        // At least once: a failover sends some events twice.
        if self.rng.f64() < 0.05 {
            out.push(msg.clone());
        }
        out.push(msg);
    }

    fn set_mode(&mut self, i: usize, mode: &'static str, now_us: i64, out: &mut Vec<MesMessage>) {
        if self.machines[i].mode == mode {
            return;
        }
        self.machines[i].mode = mode;
        let (legacy, asset) = (self.machines[i].legacy, self.machines[i].asset_id.clone());
        let payload = if legacy {
            json!({"equipment": asset, "mode": mode.to_ascii_uppercase()})
        } else {
            json!({"asset_id": asset, "mode": mode})
        };
        self.envelope("equipment.mode_changed", legacy, now_us, payload, out);
    }

    /// Plans orders until the machine has three ahead, releasing each.
    fn plan(&mut self, i: usize, now_us: i64, out: &mut Vec<MesMessage>) {
        while self.machines[i].queue.len() < 3 {
            let m = &self.machines[i];
            let (legacy, asset, cycle_us) = (m.legacy, m.asset_id.clone(), m.cycle_us);
            let after = m
                .queue
                .back()
                .map(|p| p.end_us)
                .or(match &m.phase {
                    Phase::Idle { next_start_us } => Some(*next_start_us),
                    Phase::Running {
                        fallback_end_us, ..
                    } => Some(*fallback_end_us),
                })
                .unwrap_or(now_us)
                .max(now_us);
            let wo = format!("WO-{}", self.next_wo);
            self.next_wo += 1;
            let qty = 8 + (self.rng.f64() * 16.0) as u64;
            let start_us = after + self.plant_minutes_us(5.0);
            let end_us = start_us + cycle_us * qty as i64;
            let due_us = end_us + self.plant_minutes_us(240.0);
            let (product, routing) = if legacy {
                (
                    "SHF-40 drive shaft",
                    vec![asset.clone(), "FIN-WASH-01".into(), "FIN-CMM-01".into()],
                )
            } else {
                (
                    "HSG-220 pump housing",
                    vec![asset.clone(), "FIN-WASH-01".into(), "FIN-CMM-01".into()],
                )
            };
            let released = if legacy {
                json!({"wo": wo, "part_no": product, "qty": qty,
                       "due_date": jiff::Timestamp::from_microsecond(due_us)
                           .unwrap_or(jiff::Timestamp::UNIX_EPOCH).strftime("%Y-%m-%d").to_string(),
                       "route": routing.join(">")})
            } else {
                json!({"work_order": wo, "product": product,
                       "quantity": {"value": qty, "unit": "count"}, "due": rfc3339(due_us),
                       "routing": routing})
            };
            self.envelope("work_order.released", legacy, now_us, released, out);
            self.orders.insert(
                wo.clone(),
                OrderRecord {
                    work_order: wo.clone(),
                    product: product.into(),
                    quantity: qty,
                    unit: "count",
                    routing,
                    asset_id: asset,
                    status: "released",
                    operation: None,
                    good_count: 0,
                    scrap_count: 0,
                    hold_reason: None,
                    planned_start_us: start_us,
                    planned_end_us: end_us,
                    due_us,
                    started_us: None,
                    completed_us: None,
                },
            );
            self.machines[i].queue.push_back(Planned {
                wo,
                qty,
                start_us,
                end_us,
            });
        }
    }

    /// Events due at `now_us` (wall clock, microseconds since the epoch).
    /// `floor` gives the machines' counters; without it orders complete on
    /// their planned duration.
    pub fn step(&mut self, now_us: i64, floor: Option<&ShopFloor>) -> Vec<MesMessage> {
        let mut out = Vec::new();
        for i in 0..self.machines.len() {
            self.plan(i, now_us, &mut out);
            let legacy = self.machines[i].legacy;
            let asset = self.machines[i].asset_id.clone();
            match self.machines[i].phase.clone() {
                Phase::Idle { next_start_us } if now_us >= next_start_us => {
                    let Some(p) = self.machines[i].queue.pop_front() else {
                        continue;
                    };
                    let lot = format!("LOT-{}", 88_000 + self.next_event);
                    let (issued, started, op) = if legacy {
                        (
                            json!({"wo": p.wo, "item": "42CrMo4 bar 40 mm", "lot": lot, "qty": p.qty, "uom": "count"}),
                            json!({"wo": p.wo, "equipment": asset}),
                            json!({"wo": p.wo, "op_seq": 10, "equipment": asset}),
                        )
                    } else {
                        (
                            json!({"work_order": p.wo, "material": "AlSi10Mg billet 220 mm", "lot": lot, "quantity": {"value": p.qty, "unit": "count"}}),
                            json!({"work_order": p.wo, "asset_id": asset}),
                            json!({"work_order": p.wo, "operation": 1, "asset_id": asset}),
                        )
                    };
                    self.envelope("material.issued", legacy, now_us, issued, &mut out);
                    self.envelope("work_order.started", legacy, now_us, started, &mut out);
                    self.envelope("operation.started", legacy, now_us, op, &mut out);
                    self.set_mode(i, "production", now_us, &mut out);
                    let recent = &mut self.machines[i].recent;
                    recent.push_back((p.wo.clone(), lot.clone(), now_us, None));
                    if recent.len() > 16 {
                        recent.pop_front();
                    }
                    let planned = p.end_us - p.start_us;
                    let hold_at_us = (self.rng.f64() < 0.06).then(|| now_us + planned * 3 / 10);
                    if let Some(o) = self.orders.get_mut(&p.wo) {
                        o.status = "running";
                        o.operation = Some(if legacy { 10 } else { 1 });
                        o.started_us = Some(now_us);
                    }
                    self.machines[i].phase = Phase::Running {
                        wo: p.wo,
                        qty: p.qty,
                        start_counts: floor.and_then(|f| f.get(&asset)),
                        fallback_end_us: now_us + planned,
                        hold_at_us,
                        held_until_us: None,
                    };
                }
                Phase::Running {
                    wo,
                    qty,
                    start_counts,
                    fallback_end_us,
                    hold_at_us,
                    held_until_us,
                } => {
                    if hold_at_us.is_some_and(|t| now_us >= t) {
                        let reason = HOLD_REASONS[(self.rng.next_u64() % 3) as usize];
                        let held = if legacy {
                            json!({"wo": wo, "equipment": asset, "hold_reason": reason})
                        } else {
                            json!({"work_order": wo, "asset_id": asset, "reason": reason})
                        };
                        self.envelope("work_order.held", legacy, now_us, held, &mut out);
                        if let Some(o) = self.orders.get_mut(&wo) {
                            o.status = "held";
                            o.hold_reason = Some(reason.into());
                        }
                        let hold_min = self.rng.range(2.0, 6.0);
                        let until = now_us + self.plant_minutes_us(hold_min);
                        if let Phase::Running {
                            hold_at_us,
                            held_until_us,
                            ..
                        } = &mut self.machines[i].phase
                        {
                            *hold_at_us = None;
                            *held_until_us = Some(until);
                        }
                        continue;
                    }
                    if let Some(until) = held_until_us {
                        if now_us < until {
                            continue;
                        }
                        let resumed = if legacy {
                            json!({"wo": wo, "equipment": asset})
                        } else {
                            json!({"work_order": wo, "asset_id": asset})
                        };
                        self.envelope("work_order.started", legacy, now_us, resumed, &mut out);
                        if let Some(o) = self.orders.get_mut(&wo) {
                            o.status = "running";
                            o.hold_reason = None;
                        }
                        if let Phase::Running { held_until_us, .. } = &mut self.machines[i].phase {
                            *held_until_us = None;
                        }
                        continue;
                    }
                    let counts_now = floor.and_then(|f| f.get(&asset));
                    let (done, good, scrap) = match (start_counts, counts_now) {
                        (Some((p0, s0)), Some((p1, s1))) => {
                            let made = p1.saturating_sub(p0);
                            let scrap = s1.saturating_sub(s0).min(made);
                            (made >= qty, made - scrap, scrap)
                        }
                        _ => {
                            let scrap =
                                u64::from(self.rng.f64() < 0.4) + u64::from(self.rng.f64() < 0.2);
                            (now_us >= fallback_end_us, qty.saturating_sub(scrap), scrap)
                        }
                    };
                    if !done {
                        continue;
                    }
                    // An operator mistypes the count now and then.
                    let good = if self.rng.f64() < 0.08 {
                        good + 3 + self.rng.next_u64() % 4
                    } else {
                        good
                    };
                    let (op, done_ev) = if legacy {
                        (
                            json!({"wo": wo, "op_seq": 10, "equipment": asset, "good": good, "scrap": scrap}),
                            json!({"wo": wo, "good": good, "scrap": scrap}),
                        )
                    } else {
                        (
                            json!({"work_order": wo, "operation": 1, "asset_id": asset, "good_count": good, "scrap_count": scrap}),
                            json!({"work_order": wo, "good_count": good, "scrap_count": scrap}),
                        )
                    };
                    self.envelope("operation.completed", legacy, now_us, op, &mut out);
                    self.envelope("work_order.completed", legacy, now_us, done_ev, &mut out);
                    if let Some(r) = self.machines[i].recent.iter_mut().find(|r| r.0 == wo) {
                        r.3 = Some(now_us);
                    }
                    if let Some(o) = self.orders.get_mut(&wo) {
                        o.status = "completed";
                        o.good_count = good;
                        o.scrap_count = scrap;
                        o.completed_us = Some(now_us);
                    }
                    // Changeover; now and then the next order is long in coming.
                    let long_wait = self.rng.f64() < 0.10;
                    let gap_min = if long_wait {
                        self.rng.range(15.0, 30.0)
                    } else {
                        self.rng.range(2.0, 8.0)
                    };
                    self.set_mode(
                        i,
                        if long_wait { "idle" } else { "setup" },
                        now_us,
                        &mut out,
                    );
                    let next = now_us + self.plant_minutes_us(gap_min);
                    self.machines[i].phase = Phase::Idle {
                        next_start_us: next,
                    };
                    // The plan slides to when the machine is free again.
                    let mut t = next;
                    let gap = self.plant_minutes_us(5.0);
                    for p in self.machines[i].queue.iter_mut() {
                        let d = p.end_us - p.start_us;
                        p.start_us = t;
                        p.end_us = t + d;
                        t = p.end_us + gap;
                        if let Some(o) = self.orders.get_mut(&p.wo) {
                            o.planned_start_us = p.start_us;
                            o.planned_end_us = p.end_us;
                        }
                    }
                }
                Phase::Idle { .. } => {}
            }
        }
        if let Some(f) = floor {
            self.disposition(f.take_inspected(), now_us, &mut out);
        }
        // Completed orders stay listed for a while, then leave the API.
        let horizon = now_us - self.plant_minutes_us(240.0);
        self.orders
            .retain(|_, o| o.completed_us.is_none_or(|t| t >= horizon));
        out
    }

    /// Current orders (released, running, held, recently completed).
    pub fn orders(&self) -> Vec<OrderRecord> {
        self.orders.values().cloned().collect()
    }

    /// The last orders each machine ran (up to 16 per machine): (asset,
    /// order, material lot, started, completed).
    pub fn order_spells(&self) -> Vec<(String, String, String, i64, Option<i64>)> {
        let mut v: Vec<_> = self
            .machines
            .iter()
            .flat_map(|m| {
                m.recent
                    .iter()
                    .map(|(wo, lot, s, e)| (m.asset_id.clone(), wo.clone(), lot.clone(), *s, *e))
            })
            .collect();
        v.sort_by_key(|r| r.3);
        v
    }

    /// A disposition by serial for each part the CMM measured, under the
    /// order its machine was running when the part was cut; a part cut
    /// outside any order gets none. As in a real shop, a result is now and
    /// then never entered.
    fn disposition(
        &mut self,
        parts: Vec<super::parts::Inspected>,
        now_us: i64,
        out: &mut Vec<MesMessage>,
    ) {
        for p in parts {
            let Some(m) = self.machines.iter().find(|m| m.asset_id == p.machined_on) else {
                continue;
            };
            let legacy = m.legacy;
            let Some(wo) = m
                .recent
                .iter()
                .find(|(_, _, s, e)| {
                    *s <= p.machined_end_us && e.is_none_or(|e| p.machined_end_us <= e)
                })
                .map(|r| r.0.clone())
            else {
                continue;
            };
            if self.rng.f64() < 0.03 {
                continue;
            }
            let (v1, v2) = match (p.failed, p.scrap) {
                (false, _) => ("OK", "pass"),
                (true, true) => ("NOK", "scrap"),
                (true, false) => ("REWORK", "rework"),
            };
            let payload = if legacy {
                json!({"wo": wo, "serial": p.serial, "equipment": "FIN-CMM-01",
                       "result": v1, "defects": p.defect_codes.join(",")})
            } else {
                json!({"work_order": wo, "serial": p.serial, "asset_id": "FIN-CMM-01",
                       "disposition": v2, "defect_codes": p.defect_codes})
            };
            self.envelope(
                "quality.disposition",
                legacy,
                now_us.max(p.inspected_us),
                payload,
                out,
            );
        }
    }

    /// Orders not yet completed, in planned start order.
    pub fn schedule(&self) -> Vec<OrderRecord> {
        let mut v: Vec<OrderRecord> = self
            .orders
            .values()
            .filter(|o| o.status != "completed")
            .cloned()
            .collect();
        v.sort_by_key(|o| (o.planned_start_us, o.work_order.clone()));
        v
    }

    /// The open orders as a B2MML production schedule.
    pub fn schedule_b2mml(&self, now_us: i64) -> crate::mes::b2mml::Schedule {
        crate::mes::b2mml::Schedule {
            id: format!("SCHED-{}-{}", self.run_tag, now_us / 1_000_000),
            published_us: Some(now_us),
            requests: self
                .schedule()
                .into_iter()
                .map(|o| crate::mes::b2mml::ProductionRequest {
                    id: o.work_order,
                    product: o.product,
                    quantity: o.quantity as f64,
                    unit: o.unit.into(),
                    routing: o.routing,
                    earliest_start_us: Some(o.planned_start_us),
                    latest_end_us: Some(o.due_us),
                })
                .collect(),
        }
    }

    /// Each machine's mode and the order it runs.
    pub fn equipment(&self) -> Vec<(String, &'static str, Option<String>)> {
        self.machines
            .iter()
            .map(|m| {
                let wo = match &m.phase {
                    Phase::Running { wo, .. } => Some(wo.clone()),
                    Phase::Idle { .. } => None,
                };
                (m.asset_id.clone(), m.mode, wo)
            })
            .collect()
    }

    /// Recorded events with a source time at or after `since_us`, as sent,
    /// in the order sent: at most `limit` after the event numbered
    /// `after_seq`, and the number of the last one when more follow (the
    /// API's cursor).
    pub fn events_page(
        &self,
        since_us: i64,
        after_seq: Option<u64>,
        limit: usize,
    ) -> (Vec<Value>, Option<u64>) {
        let mut matching = self
            .log
            .iter()
            .filter(|e| e.source_time_us >= since_us && after_seq.is_none_or(|a| e.seq > a));
        let page: Vec<&LoggedEvent> = matching.by_ref().take(limit).collect();
        let next = match (matching.next(), page.last()) {
            (Some(_), Some(last)) => Some(last.seq),
            _ => None,
        };
        let events = page
            .iter()
            .filter_map(|e| serde_json::from_slice(&e.payload).ok())
            .collect();
        (events, next)
    }
}

/// The simulator's state shared between its clock and its API.
pub struct MesShared {
    sim: Mutex<MesSim>,
    online: AtomicBool,
    /// Every request the REST API got, as `METHOD path`.
    pub(super) requests: Mutex<Vec<String>>,
    /// When set, the API answers 401 to a request without this bearer
    /// token (as a secured MES would).
    pub required_token: std::sync::OnceLock<String>,
}

impl MesShared {
    pub(super) fn sim(&self) -> std::sync::MutexGuard<'_, MesSim> {
        self.sim.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every request the API got so far, as `METHOD path`.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn orders(&self) -> Vec<OrderRecord> {
        self.sim().orders()
    }

    /// Takes the MES off the network (false) or brings it back (true).
    pub fn set_online(&self, online: bool) {
        self.online.store(online, Ordering::Relaxed);
    }

    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Relaxed)
    }
}

/// The running simulator.
pub struct MesSimulator {
    worker: WorkerThread,
    pub shared: Arc<MesShared>,
    /// Events published (duplicates included).
    pub published: Arc<AtomicU64>,
    /// `http://127.0.0.1:<port>` of the REST API.
    pub api_url: String,
}

impl MesSimulator {
    pub fn stop(self) {
        self.worker.stop();
    }

    /// Takes the MES off the network (false) or brings it back (true).
    pub fn set_online(&self, online: bool) {
        self.shared.set_online(online);
    }

    pub fn is_online(&self) -> bool {
        self.shared.online.load(Ordering::Relaxed)
    }
}

/// Settings of a running simulator.
#[derive(Debug, Clone)]
pub struct MesSimSettings {
    pub broker_host: String,
    pub broker_port: u16,
    /// Port of the REST API on 127.0.0.1.
    pub api_port: u16,
    pub heartbeat_interval_ms: u64,
    /// The machines' counters (None: orders complete on planned duration).
    pub floor: Option<Arc<ShopFloor>>,
}

/// Runs `sim` in real time: publishes to the broker and serves the API.
pub fn spawn_mes_simulator(sim: MesSim, s: MesSimSettings) -> Result<MesSimulator, DemoError> {
    let published = Arc::new(AtomicU64::new(0));
    let count = published.clone();
    let shared = Arc::new(MesShared {
        sim: Mutex::new(sim),
        online: AtomicBool::new(true),
        requests: Mutex::new(Vec::new()),
        required_token: std::sync::OnceLock::new(),
    });
    let api_url = format!("http://127.0.0.1:{}", s.api_port);
    let sh = shared.clone();
    let worker = WorkerThread::spawn("mes-sim", "MES simulator", move |stop| async move {
        let mut opts = MqttOptions::new("mezzanine-demo-mes", s.broker_host, s.broker_port);
        opts.set_keep_alive(Duration::from_secs(10));
        let (client, mut eventloop) = AsyncClient::new(opts, 10_000);
        tokio::spawn(async move {
            loop {
                if eventloop.poll().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
        let addr = SocketAddr::from(([127, 0, 0, 1], s.api_port));
        let mut server: Option<tokio::task::JoinHandle<()>> = None;
        let mut last_beat = std::time::Instant::now() - Duration::from_secs(3600);
        while !stop.load(Ordering::Relaxed) {
            let online = sh.online.load(Ordering::Relaxed);
            // The API is up exactly while the MES is online.
            match (&server, online) {
                (None, true) => match tokio::net::TcpListener::bind(addr).await {
                    Ok(l) => server = Some(tokio::spawn(super::mes_api::serve_api(l, sh.clone()))),
                    Err(e) => bevy::log::warn!("MES simulator: cannot listen on {addr}: {e}"),
                },
                (Some(_), false) => {
                    if let Some(t) = server.take() {
                        t.abort();
                        let _ = t.await;
                    }
                }
                _ => {}
            }
            let msgs = sh.sim().step(now_us(), s.floor.as_deref());
            if online {
                for m in msgs {
                    if client
                        .try_publish(m.topic, QoS::AtLeastOnce, false, m.payload)
                        .is_ok()
                    {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if last_beat.elapsed() >= Duration::from_millis(s.heartbeat_interval_ms) {
                    last_beat = std::time::Instant::now();
                    let beat = json!({"source_time": rfc3339(now_us()), "status": "online"});
                    let _ = client.try_publish(
                        MES_HEARTBEAT_TOPIC,
                        QoS::AtMostOnce,
                        false,
                        beat.to_string().into_bytes(),
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if let Some(t) = server.take() {
            t.abort();
        }
    })?;
    Ok(MesSimulator {
        worker,
        shared,
        published,
        api_url,
    })
}
