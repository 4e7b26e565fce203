//! Live ingest: adapters (MQTT, OPC UA) turn bytes into [`Sample`]s on their
//! own named threads and send them over one bounded channel; the
//! [`IngestPlugin`] drains it once per frame into [`PendingSamples`] for the
//! twin, and keeps [`DeadLetters`], [`LinkStatus`] and counters.
//!
//! Adapters know the registry (identity) but nothing of entities.

pub mod decode;
pub mod latency;
pub mod mqtt;
pub mod opcua;
pub mod overflow;
pub mod payload;
pub mod sample;
pub mod sparkplug;
pub mod worker;

use std::collections::VecDeque;

use bevy::prelude::*;
use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::MezzanineSet;
pub use latency::{Hop, LatencyStats};
pub use overflow::{Overflow, OverflowStats};
pub use sample::{HopStamps, Origin, Quality, Sample, SampleValue, SourceTimeWindow, now_us};

/// Everything that can go wrong starting or running an adapter.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("bad broker URL `{url}`: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot start the {what} thread: {source}")]
    Thread {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("OPC UA client configuration is invalid: {0}")]
    OpcUaConfig(String),
    #[error("{0} is not supported by this build")]
    Unsupported(String),
    #[error("cannot read TLS file {}: {source}", path.display())]
    TlsFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Called once the sample it belongs to is safely handled (today: applied to
/// the twin; with the history store: committed to disk). Sends the MQTT
/// PUBACK for QoS 1 deliveries.
pub struct Ack(Box<dyn FnOnce() + Send + Sync>);

impl Ack {
    pub fn new(f: impl FnOnce() + Send + Sync + 'static) -> Self {
        Self(Box::new(f))
    }
    pub fn send(self) {
        (self.0)();
    }
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ack")
    }
}

/// A payload that could not become a sample, kept so that nothing vanishes.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub origin: Origin,
    /// Topic or node id.
    pub source: String,
    pub reason: String,
    pub payload_len: usize,
    /// The first bytes of the payload, for the operator to look at.
    pub payload_head: Vec<u8>,
    pub received_us: i64,
}

/// Connection state of one adapter.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LinkState {
    #[default]
    NotStarted,
    Connecting,
    Connected,
    Disconnected(String),
}

/// What adapters send over the channel.
#[derive(Debug)]
pub enum IngestEvent {
    Sample(Sample, Option<Ack>),
    DeadLetter(DeadLetter, Option<Ack>),
    Link {
        origin: Origin,
        state: LinkState,
    },
    /// A validated MES event (from the MES topic tree).
    Mes(Box<crate::contract::Envelope>, Option<Ack>),
    /// The MES's heartbeat arrived. Not recorded, but its ack (a broker may
    /// deliver it at QoS 1) takes its turn with the others: acks must reach
    /// the broker in the order the messages came.
    MesHeartbeat {
        received_us: i64,
        ack: Option<Ack>,
    },
    /// A message with nothing in it to keep (e.g. a Sparkplug death
    /// certificate): only its ack, which waits its turn.
    AckOnly(Ack),
    /// A source said it is gone (a Sparkplug NDEATH or DDEATH): the asset
    /// is stale at once, with the reason, until its next sample.
    SourceDown {
        asset: crate::registry::AssetIdx,
        reason: String,
        at_us: i64,
    },
}

/// What the recording tap receives: every sample and dead letter, with the
/// acknowledgement that the recorder sends once it is durable.
#[derive(Debug)]
pub enum Recorded {
    Sample(Sample, Option<Ack>),
    DeadLetter(DeadLetter, Option<Ack>),
    Mes(Box<crate::contract::Envelope>, Option<Ack>),
    /// Nothing to store; only the ack, sent in turn after the commit.
    AckOnly(Ack),
}

impl IngestEvent {
    /// A copy for the twin, without the ack (status events are not copied).
    fn copy_without_ack(&self) -> Option<IngestEvent> {
        match self {
            IngestEvent::Sample(s, _) => Some(IngestEvent::Sample(s.clone(), None)),
            IngestEvent::DeadLetter(d, _) => Some(IngestEvent::DeadLetter(d.clone(), None)),
            IngestEvent::Mes(e, _) => Some(IngestEvent::Mes(e.clone(), None)),
            IngestEvent::MesHeartbeat { received_us, .. } => Some(IngestEvent::MesHeartbeat {
                received_us: *received_us,
                ack: None,
            }),
            IngestEvent::SourceDown {
                asset,
                reason,
                at_us,
            } => Some(IngestEvent::SourceDown {
                asset: *asset,
                reason: reason.clone(),
                at_us: *at_us,
            }),
            IngestEvent::Link { .. } | IngestEvent::AckOnly(_) => None,
        }
    }

    /// What the recorder keeps (nothing of a status event).
    fn into_recorded(self) -> Option<Recorded> {
        match self {
            IngestEvent::Sample(s, ack) => Some(Recorded::Sample(s, ack)),
            IngestEvent::DeadLetter(d, ack) => Some(Recorded::DeadLetter(d, ack)),
            IngestEvent::Mes(e, ack) => Some(Recorded::Mes(e, ack)),
            IngestEvent::MesHeartbeat { ack, .. } => ack.map(Recorded::AckOnly),
            IngestEvent::AckOnly(a) => Some(Recorded::AckOnly(a)),
            IngestEvent::Link { .. } | IngestEvent::SourceDown { .. } => None,
        }
    }
}

/// The sending half handed to adapters. With a recorder attached, samples
/// and dead letters go to the recorder first (carrying the ack, lossless,
/// back-pressure onto the adapter when the disk is slow) and to the twin
/// without it, never waiting on the frame loop: a copy that does not fit
/// goes to the [`Overflow`], which coalesces.
#[derive(Clone, Debug)]
pub struct IngestSender {
    twin: Option<Sender<IngestEvent>>,
    overflow: Overflow,
    recorder: Option<Sender<Recorded>>,
    window: SourceTimeWindow,
}

impl IngestSender {
    /// Only a recorder (headless recording, no twin).
    pub fn recorder_only(recorder: Sender<Recorded>) -> Self {
        Self {
            twin: None,
            overflow: Overflow::default(),
            recorder: Some(recorder),
            window: SourceTimeWindow::default(),
        }
    }

    /// The source times the adapters believe (see [`SourceTimeWindow`]).
    pub fn with_time_window(mut self, window: SourceTimeWindow) -> Self {
        self.window = window;
        self
    }

    /// What the adapters check each sample's source time against.
    pub fn time_window(&self) -> SourceTimeWindow {
        self.window
    }

    /// Also send every sample and dead letter to `recorder`.
    pub fn with_recorder(mut self, recorder: Sender<Recorded>) -> Self {
        self.recorder = Some(recorder);
        self
    }

    /// False once nobody listens any more. Without a recorder the twin is
    /// the only consumer: this blocks while its channel is full
    /// (back-pressure onto the adapter and so onto the broker, never a
    /// silent drop), and the frame loop sends the acks. With a recorder, it
    /// blocks only on the recorder; a sample whose recorder is gone keeps
    /// its ack unsent, so the broker delivers it again to the next session.
    pub fn send(&self, ev: IngestEvent) -> bool {
        if matches!(ev, IngestEvent::Link { .. }) {
            return self.try_send(ev);
        }
        let Some(rec) = &self.recorder else {
            return self.twin.as_ref().is_none_or(|t| t.send(ev).is_ok());
        };
        // The recorder takes the ack; the twin, if any, gets a copy without it.
        let for_twin = if self.twin.is_some() {
            ev.copy_without_ack()
        } else {
            None
        };
        let recorded = match ev.into_recorded() {
            Some(r) => rec.send(r).is_ok(),
            None => true, // nothing to keep (a heartbeat without an ack)
        };
        match (&self.twin, for_twin) {
            (Some(t), Some(copy)) => recorded && self.to_twin(t, copy),
            _ => recorded,
        }
    }

    /// Never blocks: a copy that does not fit, and every one after it
    /// until the frame loop has caught up, goes to the overflow.
    fn to_twin(&self, twin: &Sender<IngestEvent>, ev: IngestEvent) -> bool {
        let mut o = self.overflow.lock();
        if o.active {
            o.push(ev);
            return true;
        }
        match twin.try_send(ev) {
            Ok(()) => true,
            Err(TrySendError::Full(ev)) => {
                o.push(ev);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// What a supervised adapter reports when its body failed: the link
    /// down, with the reason, until the restart connects again.
    pub fn link_down_on_failure(&self, origin: Origin) -> impl Fn(&str) + Send + 'static {
        let status = self.clone();
        move |why| {
            status.try_send(IngestEvent::Link {
                origin,
                state: LinkState::Disconnected(format!("adapter failed ({why}); restarting")),
            });
        }
    }

    /// Non-blocking send for status events: one that does not fit waits in
    /// the overflow, it is not lost.
    pub fn try_send(&self, ev: IngestEvent) -> bool {
        match &self.twin {
            Some(t) => self.to_twin(t, ev),
            None => true,
        }
    }
}

/// The receiving half, drained by the app.
#[derive(Resource, Clone)]
pub struct IngestReceiver(pub Receiver<IngestEvent>, pub Overflow);

/// A bounded channel between adapters and the app.
pub fn ingest_channel(capacity: usize) -> (IngestSender, IngestReceiver) {
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    let overflow = Overflow::default();
    (
        IngestSender {
            twin: Some(tx),
            overflow: overflow.clone(),
            recorder: None,
            window: SourceTimeWindow::default(),
        },
        IngestReceiver(rx, overflow),
    )
}

/// Samples drained this frame, waiting for the twin to apply them.
#[derive(Resource, Debug, Default)]
pub struct PendingSamples(pub Vec<(Sample, Option<Ack>)>);

/// Sources that said they are gone, drained this frame: (asset, reason,
/// when), for the twin to mark stale.
#[derive(Resource, Debug, Default)]
pub struct PendingOffline(pub Vec<(crate::registry::AssetIdx, String, i64)>);

/// MES events drained this frame, waiting for the MES sync to apply them.
#[derive(Resource, Debug, Default)]
pub struct PendingMes(pub Vec<(crate::contract::Envelope, Option<Ack>)>);

/// When the MES's heartbeat was last received (µs since the Unix epoch).
#[derive(Resource, Debug, Default, Clone, Copy, PartialEq)]
pub struct MesHeartbeats {
    pub last_received_us: Option<i64>,
    pub count: u64,
}

/// The most recent dead letters and the count of all of them.
#[derive(Resource, Debug, Default)]
pub struct DeadLetters {
    pub recent: VecDeque<DeadLetter>,
    pub total: u64,
}

impl DeadLetters {
    pub const KEEP: usize = 500;
    pub fn push(&mut self, d: DeadLetter) {
        if self.total < 20 {
            warn!(
                "dead letter from {} `{}`: {}",
                d.origin.label(),
                d.source,
                d.reason
            );
        }
        self.total += 1;
        if self.recent.len() == Self::KEEP {
            self.recent.pop_front();
        }
        self.recent.push_back(d);
    }
}

/// Connection state per adapter, as last reported.
#[derive(Resource, Debug, Default, Clone)]
pub struct LinkStatus {
    pub mqtt: LinkState,
    pub opcua: LinkState,
    pub mqtt_reconnects: u32,
    pub opcua_reconnects: u32,
}

impl LinkStatus {
    /// Some adapter is connected now.
    pub fn any_connected(&self) -> bool {
        self.mqtt == LinkState::Connected || self.opcua == LinkState::Connected
    }

    /// One line for people: each started adapter's state, e.g.
    /// `MQTT up (2 reconnects), OPC UA down: connection refused`.
    pub fn describe(&self) -> String {
        let one = |label: &str, state: &LinkState, reconnects: u32| {
            let again = match reconnects {
                0 => String::new(),
                1 => " (1 reconnect)".into(),
                n => format!(" ({n} reconnects)"),
            };
            match state {
                LinkState::NotStarted => None,
                LinkState::Connecting => Some(format!("{label} connecting{again}")),
                LinkState::Connected => Some(format!("{label} up{again}")),
                LinkState::Disconnected(why) => Some(format!("{label} down{again}: {why}")),
            }
        };
        let parts: Vec<String> = [
            one(Origin::Mqtt.label(), &self.mqtt, self.mqtt_reconnects),
            one(Origin::OpcUa.label(), &self.opcua, self.opcua_reconnects),
        ]
        .into_iter()
        .flatten()
        .collect();
        if parts.is_empty() {
            "no source started".into()
        } else {
            parts.join(", ")
        }
    }
}

/// Most events drained in one frame, so a flood cannot freeze the UI.
#[derive(Resource, Debug, Clone, Copy)]
pub struct DrainBudget(pub usize);

impl Default for DrainBudget {
    fn default() -> Self {
        Self(250_000)
    }
}

pub struct IngestPlugin {
    pub receiver: IngestReceiver,
}

impl Plugin for IngestPlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(self.receiver.clone())
            .init_resource::<PendingSamples>()
            .init_resource::<PendingMes>()
            .init_resource::<PendingOffline>()
            .init_resource::<DeadLetters>()
            .init_resource::<LinkStatus>()
            .init_resource::<DrainBudget>()
            .init_resource::<LatencyStats>()
            .init_resource::<OverflowStats>()
            .add_systems(Update, drain_ingest.in_set(MezzanineSet::Ingest))
            .add_systems(Last, latency::record_frame_hop);
    }
}

#[allow(clippy::too_many_arguments)] // one system, one resource per kind of event
pub fn drain_ingest(
    rx: Res<IngestReceiver>,
    budget: Res<DrainBudget>,
    mut pending: ResMut<PendingSamples>,
    mut pending_mes: ResMut<PendingMes>,
    mut beats: Option<ResMut<MesHeartbeats>>,
    mut dead: ResMut<DeadLetters>,
    mut links: ResMut<LinkStatus>,
    mut coalesced: ResMut<OverflowStats>,
    mut offline: ResMut<PendingOffline>,
) {
    // Behind far enough to have filled the channel: take all of it and the
    // coalesced rest in one piece (bounded by the channel and the overflow's
    // caps), else a budget's worth.
    let events: Box<dyn Iterator<Item = IngestEvent>> = match rx.1.take_if_active(&rx.0) {
        Some(taken) => {
            dead.total += taken.dead_not_kept;
            if let Some(b) = beats.as_deref_mut() {
                b.count += taken.extra_heartbeats;
            }
            *coalesced = rx.1.stats();
            Box::new(taken.events.into_iter())
        }
        None => Box::new(rx.0.try_iter().take(budget.0)),
    };
    for ev in events {
        match ev {
            // Without a recorder nothing is durable anyway: acks go out here,
            // in the order the messages came (a broker drops a client whose
            // acks arrive out of order).
            IngestEvent::Sample(s, ack) => {
                if let Some(a) = ack {
                    a.send();
                }
                pending.0.push((s, None));
            }
            IngestEvent::Mes(e, ack) => {
                if let Some(a) = ack {
                    a.send();
                }
                pending_mes.0.push((*e, None));
            }
            IngestEvent::MesHeartbeat { received_us, ack } => {
                if let Some(b) = beats.as_deref_mut() {
                    b.last_received_us = Some(received_us);
                    b.count += 1;
                }
                if let Some(a) = ack {
                    a.send();
                }
            }
            IngestEvent::AckOnly(a) => a.send(),
            IngestEvent::SourceDown {
                asset,
                reason,
                at_us,
            } => offline.0.push((asset, reason, at_us)),
            IngestEvent::DeadLetter(d, ack) => {
                dead.push(d);
                // Recorded: the broker need not send it again.
                if let Some(a) = ack {
                    a.send();
                }
            }
            IngestEvent::Link { origin, state } => {
                let links = &mut *links;
                let (slot, count) = match origin {
                    Origin::Mqtt => (&mut links.mqtt, &mut links.mqtt_reconnects),
                    Origin::OpcUa => (&mut links.opcua, &mut links.opcua_reconnects),
                };
                if state == LinkState::Connected && matches!(slot, LinkState::Disconnected(_)) {
                    *count += 1;
                }
                // Changes only: an adapter retrying against a dead endpoint
                // reports the same failure on every try.
                if state != *slot {
                    if let LinkState::Disconnected(why) = &state {
                        warn!("{} link down: {why}", origin.label());
                    } else if state == LinkState::Connected {
                        info!("{} link up", origin.label());
                    }
                }
                *slot = state;
            }
        }
    }
}
