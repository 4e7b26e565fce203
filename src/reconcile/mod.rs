//! Reconciliation by authority rules: the twin's live values and the MES's
//! applied events in; [`Discrepancy`] records out (to the UI, the 3D badges
//! and the history).
//!
//! `rules` reads the authority file (who owns each data domain, and the
//! detectors' thresholds); `detect` compares the two views. Nothing here
//! corrects either side: there is no path from this module to the MES, and
//! it never writes the twin's state or the MES context. A person moves each
//! discrepancy from open to acknowledged to resolved, with a note, through
//! [`ReconcileCommand`]s.

pub mod detect;
pub mod rules;

use std::path::PathBuf;

use bevy::prelude::*;

pub use detect::{Discrepancy, MesView, PhysicalView, Reconciler, Status};
pub use rules::{Authority, Domain, ReconcileRules, RuleKind};

use crate::MezzanineSet;
use crate::history::{History, WriterMsg};
use crate::ingest::now_us;
use crate::mes::{MesApplied, MesLink, MesState};
use crate::registry::AssetRegistry;
use crate::twin::{AssetState, BoundAsset, Freshness, LiveValues};

/// Everything that can go wrong with the authority file or a lifecycle step.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReconcileError {
    #[error("cannot read authority rules {}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error("authority rules {}:\n  {}", path.display(), problems.join("\n  "))]
    Rules {
        path: PathBuf,
        problems: Vec<String>,
    },
    #[error("no discrepancy {0}")]
    UnknownDiscrepancy(String),
    #[error("discrepancy {0} is already resolved")]
    AlreadyResolved(String),
    #[error("resolving needs a note saying what was found")]
    NoteRequired,
    #[error("say who you are: the lifecycle records a person")]
    NameRequired,
}

/// What a person does to a discrepancy (sent by the UI).
#[derive(Message, Debug, Clone, PartialEq)]
pub enum ReconcileCommand {
    Acknowledge {
        id: String,
        by: String,
    },
    Resolve {
        id: String,
        by: String,
        note: String,
    },
}

/// The detectors and every discrepancy raised this run.
#[derive(Resource, Debug)]
pub struct Reconciliation {
    pub engine: Reconciler,
    /// The last lifecycle error, for the UI.
    pub last_error: Option<String>,
}

/// Runs the detectors once a second and applies lifecycle commands.
pub struct ReconcilePlugin {
    pub rules: ReconcileRules,
    /// Steps of discrepancies a previous run left unresolved (from history).
    pub restored: Vec<crate::history::query::DiscrepancyRow>,
    /// How often the detectors compare the views, milliseconds.
    pub period_ms: u64,
}

impl Plugin for ReconcilePlugin {
    fn build(&self, app: &mut App) {
        let tag = format!("{:x}", now_us() / 1_000_000);
        let mut engine = Reconciler::new(self.rules.clone(), tag);
        let n = engine.restore(&self.restored);
        if n > 0 {
            info!("{n} unresolved discrepancies from earlier runs restored");
        }
        app.insert_resource(Reconciliation {
            engine,
            last_error: None,
        })
        .insert_resource(ReconcileTimer(Timer::new(
            std::time::Duration::from_millis(self.period_ms.max(1)),
            TimerMode::Repeating,
        )))
        .add_message::<ReconcileCommand>()
        .add_systems(
            Update,
            (feed_mes_events, run_detectors, apply_commands)
                .chain()
                .in_set(MezzanineSet::Reconcile),
        );
    }
}

#[derive(Resource)]
struct ReconcileTimer(Timer);

/// The twin's physical view of one asset.
fn physical_view(
    registry: &AssetRegistry,
    names: &rules::PropertyNames,
    bound: &BoundAsset,
    values: &LiveValues,
    state: &AssetState,
) -> Option<PhysicalView> {
    let a = registry.get(bound.0)?;
    let value = |name: &str| {
        let r = registry.property_by_name(bound.0, name)?;
        values.0.get(r.property as usize)?.as_ref()
    };
    let num = |name: &str| value(name).and_then(|v| v.value.as_f64());
    Some(PhysicalView {
        asset_id: a.id.clone(),
        spindle_rpm: num(&names.spindle_speed),
        spindle_load_pct: num(&names.spindle_load),
        vibration_mm_s: num(&names.vibration),
        part_count: num(&names.part_count),
        part_count_ts_us: value(&names.part_count).map(|v| v.source_ts_us),
        state: state.state.label().to_string(),
    })
}

fn feed_mes_events(
    mut applied: MessageReader<MesApplied>,
    mut rec: ResMut<Reconciliation>,
    registry: Res<AssetRegistry>,
    assets: Query<(&BoundAsset, &LiveValues, &AssetState)>,
) {
    for MesApplied(e) in applied.read() {
        let phys = e.event.asset_id().and_then(|id| {
            let idx = registry.by_id(id)?;
            let names = rec.engine.rules().properties.clone();
            assets
                .iter()
                .find(|(b, _, _)| b.0 == idx)
                .and_then(|(b, v, s)| physical_view(&registry, &names, b, v, s))
        });
        rec.engine.on_mes_event(e, phys.as_ref());
    }
}

#[allow(clippy::too_many_arguments)] // one system: both views, the link, the record
fn run_detectors(
    time: Res<Time>,
    mut timer: ResMut<ReconcileTimer>,
    mut rec: ResMut<Reconciliation>,
    registry: Res<AssetRegistry>,
    mes: Option<Res<MesState>>,
    link: Option<Res<MesLink>>,
    assets: Query<(&BoundAsset, &LiveValues, &AssetState, &Freshness)>,
    history: Option<Res<History>>,
) {
    if !timer.0.tick(time.delta()).just_finished() {
        return;
    }
    let names = rec.engine.rules().properties.clone();
    let machines: Vec<(PhysicalView, MesView)> = assets
        .iter()
        // A silent machine's last values say nothing about now.
        .filter(|(_, _, _, f)| !f.stale)
        .filter_map(|(b, v, s, _)| physical_view(&registry, &names, b, v, s))
        // Only machines the MES dispatches to are compared.
        .filter(|p| p.spindle_rpm.is_some() || p.part_count.is_some())
        .map(|p| {
            let ctx = mes.as_ref().and_then(|m| m.0.book.assets.get(&p.asset_id));
            let view = MesView {
                work_order: ctx.and_then(|c| c.work_order.clone()),
                operation: ctx.and_then(|c| c.operation),
            };
            (p, view)
        })
        .collect();
    let now = now_us();
    if link.is_some_and(|l| l.is_down()) {
        // The MES's view is frozen while it is away and until its missed
        // events are in: compare nothing with it.
        rec.engine.note_counters(now, &machines);
        rec.engine.pause();
        return;
    }
    for i in rec.engine.observe(now, &machines) {
        let d = &rec.engine.discrepancies[i];
        warn!("discrepancy {}: {}", d.id, d.summary());
        if let Some(h) = &history {
            h.record(discrepancy_msg(d, now));
        }
    }
}

fn apply_commands(
    mut commands: MessageReader<ReconcileCommand>,
    mut rec: ResMut<Reconciliation>,
    history: Option<Res<History>>,
) {
    for c in commands.read() {
        let now = now_us();
        let result = match c {
            ReconcileCommand::Acknowledge { id, by } => rec.engine.acknowledge(id, by, now),
            ReconcileCommand::Resolve { id, by, note } => rec.engine.resolve(id, by, note, now),
        }
        .map(|d| discrepancy_msg(d, now));
        match result {
            Ok(msg) => {
                rec.last_error = None;
                if let Some(h) = &history {
                    h.record(msg);
                }
            }
            Err(e) => rec.last_error = Some(e.to_string()),
        }
    }
}

/// The history row of a discrepancy's current step.
pub fn discrepancy_msg(d: &Discrepancy, ts_us: i64) -> WriterMsg {
    WriterMsg::Discrepancy {
        ts_us,
        discrepancy_id: d.id.clone(),
        asset_id: d.asset_id.clone(),
        rule: d.rule.to_string(),
        status: d.status().label().to_string(),
        detail: d.detail_json(),
    }
}
