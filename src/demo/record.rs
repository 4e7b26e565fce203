//! The demo plant recorded straight into a history file, faster than real
//! time: the PLC and MES simulators stepped by their own clocks, their
//! values and events handed to the real history writer as the recorder
//! would receive them (nothing goes over a broker), the MES's work-order
//! context applied as the twin's MES sync applies it.
//!
//! In: a registry, a file path and [`RecordSettings`] (seed, length, time
//! scale, causes to inject). Out: the history file, and the simulators' own
//! record ([`RecordedRun`]): every finished part with its operations and
//! measurements, and every order's spell on its machine with its material
//! lot — the ground truth quality tests and the quality benchmark compare
//! the twin's genealogy with.

use std::path::Path;
use std::sync::Arc;

use super::mes::{MesSim, ShopFloor};
use super::parts::{Injection, PartRecord};
use super::plc::{Emission, PlcSim};
use crate::contract::Contract;
use crate::history::{HistoryError, HistoryWriter, Store, WriterMsg, WriterSettings};
use crate::ingest::{HopStamps, Origin, Quality, Recorded, Sample};
use crate::mes::sync::{Change, MesSync};
use crate::registry::AssetRegistry;

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordSettings {
    pub seed: u64,
    /// Recorded (wall) minutes.
    pub minutes: f64,
    pub time_scale: f64,
    /// Simulator step, ms.
    pub tick_ms: u64,
    pub start_us: i64,
    pub injections: Vec<Injection>,
    /// Causes also happen on their own.
    pub spontaneous: bool,
}

impl Default for RecordSettings {
    fn default() -> Self {
        Self {
            seed: 7,
            minutes: 30.0,
            time_scale: 10.0,
            tick_ms: 100,
            start_us: 1_780_000_000_000_000,
            injections: Vec::new(),
            spontaneous: true,
        }
    }
}

/// One order on its machine, as the MES simulator ran it.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderSpell {
    pub asset_id: String,
    pub work_order: String,
    pub lot: String,
    pub start_us: i64,
    pub end_us: Option<i64>,
}

/// The simulators' own record of the run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecordedRun {
    pub parts: Vec<PartRecord>,
    pub orders: Vec<OrderSpell>,
    pub start_us: i64,
    pub end_us: i64,
    pub samples_written: u64,
}

/// A PLC emission as the recorder receives it from MQTT.
pub fn as_recorded(e: Emission) -> Recorded {
    Recorded::Sample(
        Sample {
            property: e.property,
            value: e.value,
            reason: e.reason,
            quality: Quality::Good,
            origin: Origin::Mqtt,
            hops: HopStamps {
                source_us: e.ts_us,
                received_us: e.ts_us + 800,
                decoded_us: e.ts_us + 900,
                ..Default::default()
            },
        },
        None,
    )
}

/// Everything that can go wrong recording the demo.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("{0}")]
    Setup(String),
    #[error("the history writer stopped while recording")]
    WriterGone,
}

/// Records the demo plant into `path`; `progress(done fraction)` is
/// called now and then.
pub fn record_demo(
    path: &Path,
    registry: Arc<AssetRegistry>,
    s: &RecordSettings,
    mut progress: impl FnMut(f64),
) -> Result<RecordedRun, RecordError> {
    let store = Store::open(path, &registry)?;
    let writer = HistoryWriter::spawn(store, registry.clone(), WriterSettings::default(), 65_536)?;
    let mut plc = PlcSim::new(registry.clone(), s.seed, s.start_us, s.time_scale);
    plc.record_truth();
    plc.parts_mut().record_truth();
    plc.parts_mut().set_spontaneous(s.spontaneous);
    plc.parts_mut()
        .inject(&registry, &s.injections)
        .map_err(RecordError::Setup)?;
    let mut mes = MesSim::new(&registry, s.seed, s.start_us, s.time_scale);
    let floor = ShopFloor::new(&registry);
    let contract = Contract::load().map_err(|e| RecordError::Setup(e.to_string()))?;
    let mut sync = MesSync::new(0, 100_000);
    let steps = (s.minutes * 60_000.0 / s.tick_ms as f64).round() as u64;
    let mut now = s.start_us;
    for step in 1..=steps {
        now = s.start_us + (step * s.tick_ms) as i64 * 1000;
        for e in plc.step(s.tick_ms) {
            writer
                .recorder
                .send(as_recorded(e))
                .map_err(|_| RecordError::WriterGone)?;
        }
        for (a, parts, scrap) in plc.counters() {
            floor.set(a, parts, scrap);
        }
        floor.push_inspected(plc.parts_mut().take_inspected());
        for m in mes.step(now, Some(&floor)) {
            let Ok(e) = contract.decode(&m.payload, &m.topic) else {
                continue;
            };
            if !sync.offer(e.clone()) {
                continue;
            }
            writer
                .recorder
                .send(Recorded::Mes(Box::new(e), None))
                .map_err(|_| RecordError::WriterGone)?;
        }
        for (_, changes) in sync.step(true) {
            for Change::AssetWorkOrder {
                asset_id,
                work_order,
                ts_us,
            } in changes
            {
                writer
                    .app
                    .send(WriterMsg::WorkOrder {
                        asset_id,
                        work_order,
                        ts_us,
                    })
                    .map_err(|_| RecordError::WriterGone)?;
            }
        }
        if step % 6_000 == 0 {
            progress(step as f64 / steps as f64);
        }
    }
    writer.flush()?;
    let samples_written = writer
        .stats
        .samples_written
        .load(std::sync::atomic::Ordering::Relaxed);
    writer.join();
    progress(1.0);
    Ok(RecordedRun {
        parts: plc.parts().truth().to_vec(),
        orders: mes
            .order_spells()
            .into_iter()
            .map(|(asset_id, work_order, lot, start_us, end_us)| OrderSpell {
                asset_id,
                work_order,
                lot,
                start_us,
                end_us,
            })
            .collect(),
        start_us: s.start_us,
        end_us: now,
        samples_written,
    })
}
