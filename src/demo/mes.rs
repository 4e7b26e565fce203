//! The MES simulator: the registry and a seed in, MES events (JSON
//! envelopes) on `acme/lyon/mes/events/<type>` out.
//!
//! Each machining asset (mills and lathes) works through a stream of work
//! orders: released, material issued, started, operation started; after
//! the order's run time, operation and order completed with good and scrap
//! counts, and a quality disposition for a sampled part. The lathes' MES
//! module still speaks schema version 1, the rest version 2. Events are sent
//! at least once: some are sent twice with the same id, as after an MES
//! failover. Deterministic for a seed and a sequence of step times.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::{Value, json};

use super::DemoError;
use super::plc::Rng;
use crate::ingest::now_us;
use crate::ingest::worker::WorkerThread;
use crate::registry::AssetRegistry;

/// Where the simulator publishes (the default `[mes] events_topic`).
pub const MES_TOPIC_PREFIX: &str = "acme/lyon/mes/events/";

enum Phase {
    Idle { next_start_us: i64 },
    Running { wo: String, ends_us: i64, qty: u64 },
}

struct Machine {
    asset_id: String,
    legacy: bool,
    phase: Phase,
}

/// The simulated MES.
pub struct MesSim {
    rng: Rng,
    machines: Vec<Machine>,
    next_wo: u64,
    next_event: u64,
    /// Part of every event id, so ids stay unique across runs (a real MES
    /// never reuses one; the twin remembers them across restarts).
    run_tag: String,
    time_scale: f64,
}

/// One event to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct MesMessage {
    pub topic: String,
    pub payload: Vec<u8>,
}

impl MesSim {
    pub fn new(registry: &AssetRegistry, seed: u64, start_us: i64, time_scale: f64) -> Self {
        let mut rng = Rng::new(seed ^ 0x4D45_5300);
        let machines = registry
            .assets()
            .iter()
            .filter(|a| a.class == "cnc_mill" || a.class == "cnc_lathe")
            .map(|a| Machine {
                asset_id: a.id.clone(),
                legacy: a.class == "cnc_lathe",
                phase: Phase::Idle {
                    // After the twin has subscribed (the demo publishes without retain).
                    next_start_us: start_us + (rng.range(5.0, 25.0) * 1e6) as i64,
                },
            })
            .collect();
        Self {
            rng,
            machines,
            next_wo: 240_100,
            next_event: 1,
            run_tag: format!("{:x}", start_us),
            time_scale: time_scale.max(0.01),
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
        let at = jiff::Timestamp::from_microsecond(now_us)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
            .to_string();
        let version = if legacy { "1.4" } else { "2.0" };
        let e = json!({"id": id, "type": ty, "schema_version": version, "source_time": at, "payload": payload});
        let msg = MesMessage {
            topic: format!("{MES_TOPIC_PREFIX}{ty}"),
            payload: e.to_string().into_bytes(),
        };
        // At least once: a failover sends some events twice.
        if self.rng.f64() < 0.05 {
            out.push(msg.clone());
        }
        out.push(msg);
    }

    /// Events due at `now_us` (wall clock, microseconds since the epoch).
    pub fn step(&mut self, now_us: i64) -> Vec<MesMessage> {
        let mut out = Vec::new();
        for i in 0..self.machines.len() {
            let legacy = self.machines[i].legacy;
            let asset = self.machines[i].asset_id.clone();
            match self.machines[i].phase {
                Phase::Idle { next_start_us } if now_us >= next_start_us => {
                    let wo = format!("WO-{}", self.next_wo);
                    self.next_wo += 1;
                    let qty = 10 + (self.rng.f64() * 30.0) as u64;
                    let run_min = 20.0 + self.rng.range(0.0, 40.0);
                    let run_us = self.plant_minutes_us(run_min);
                    let due = jiff::Timestamp::from_microsecond(now_us + 86_400_000_000)
                        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
                    let (released, issued, started, op) = if legacy {
                        (
                            json!({"wo": wo, "part_no": "SHF-40 drive shaft", "qty": qty,
                                   "due_date": due.strftime("%Y-%m-%d").to_string(),
                                   "route": format!("{asset}>FIN-WASH-01>FIN-CMM-01")}),
                            json!({"wo": wo, "item": "42CrMo4 bar 40 mm", "lot": format!("LOT-{}", 88_000 + self.next_wo), "qty": qty, "uom": "count"}),
                            json!({"wo": wo, "equipment": asset}),
                            json!({"wo": wo, "op_seq": 10, "equipment": asset}),
                        )
                    } else {
                        (
                            json!({"work_order": wo, "product": "HSG-220 pump housing",
                                   "quantity": {"value": qty, "unit": "count"}, "due": due.to_string(),
                                   "routing": [asset, "FIN-WASH-01", "FIN-CMM-01"]}),
                            json!({"work_order": wo, "material": "AlSi10Mg billet 220 mm", "lot": format!("LOT-{}", 88_000 + self.next_wo), "quantity": {"value": qty, "unit": "count"}}),
                            json!({"work_order": wo, "asset_id": asset}),
                            json!({"work_order": wo, "operation": 1, "asset_id": asset}),
                        )
                    };
                    self.envelope("work_order.released", legacy, now_us, released, &mut out);
                    self.envelope("material.issued", legacy, now_us, issued, &mut out);
                    self.envelope("work_order.started", legacy, now_us, started, &mut out);
                    self.envelope("operation.started", legacy, now_us, op, &mut out);
                    self.machines[i].phase = Phase::Running {
                        wo,
                        ends_us: now_us + run_us,
                        qty,
                    };
                }
                Phase::Running {
                    ref wo,
                    ends_us,
                    qty,
                } if now_us >= ends_us => {
                    let wo = wo.clone();
                    let scrap = u64::from(self.rng.f64() < 0.4) + u64::from(self.rng.f64() < 0.2);
                    let good = qty.saturating_sub(scrap);
                    let serial = format!("{}-{:06}", asset, self.next_event);
                    let rework = self.rng.f64() < 0.15;
                    let (op, done, quality) = if legacy {
                        (
                            json!({"wo": wo, "op_seq": 10, "equipment": asset, "good": good, "scrap": scrap}),
                            json!({"wo": wo, "good": good, "scrap": scrap}),
                            json!({"wo": wo, "serial": serial, "equipment": "FIN-CMM-01",
                                   "result": if rework { "REWORK" } else { "OK" },
                                   "defects": if rework { "D12" } else { "" }}),
                        )
                    } else {
                        (
                            json!({"work_order": wo, "operation": 1, "asset_id": asset, "good_count": good, "scrap_count": scrap}),
                            json!({"work_order": wo, "good_count": good, "scrap_count": scrap}),
                            json!({"work_order": wo, "serial": serial, "asset_id": "FIN-CMM-01",
                                   "disposition": if rework { "rework" } else { "pass" },
                                   "defect_codes": if rework { vec!["D12"] } else { Vec::new() }}),
                        )
                    };
                    self.envelope("operation.completed", legacy, now_us, op, &mut out);
                    self.envelope("work_order.completed", legacy, now_us, done, &mut out);
                    self.envelope("quality.disposition", legacy, now_us, quality, &mut out);
                    let changeover_min = 2.0 + self.rng.range(0.0, 6.0);
                    let changeover = self.plant_minutes_us(changeover_min);
                    self.machines[i].phase = Phase::Idle {
                        next_start_us: now_us + changeover,
                    };
                }
                _ => {}
            }
        }
        out
    }
}

/// The running simulator.
pub struct MesSimulator {
    worker: WorkerThread,
    pub published: Arc<AtomicU64>,
}

impl MesSimulator {
    pub fn stop(self) {
        self.worker.stop();
    }
}

/// Runs `sim` in real time, publishing to the broker at (host, port).
pub fn spawn_mes_simulator(
    mut sim: MesSim,
    host: String,
    port: u16,
) -> Result<MesSimulator, DemoError> {
    let published = Arc::new(AtomicU64::new(0));
    let count = published.clone();
    let worker = WorkerThread::spawn("mes-sim", "MES simulator", move |stop| async move {
        let mut opts = MqttOptions::new("mezzanine-demo-mes", host, port);
        opts.set_keep_alive(Duration::from_secs(10));
        let (client, mut eventloop) = AsyncClient::new(opts, 1_000);
        tokio::spawn(async move {
            loop {
                if eventloop.poll().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
        while !stop.load(Ordering::Relaxed) {
            for m in sim.step(now_us()) {
                if client
                    .try_publish(m.topic, QoS::AtLeastOnce, false, m.payload)
                    .is_ok()
                {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })?;
    Ok(MesSimulator { worker, published })
}
