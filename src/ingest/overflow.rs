//! The twin's copy of the live stream when the frame loop falls behind.
//!
//! In: events an adapter could not put on the full twin channel (with a
//! recorder attached, every copy after the first that did not fit, until the
//! frame loop catches up). Out: the same events, coalesced, taken by
//! [`super::drain_ingest`] in one piece.
//!
//! The recorder path never waits on the frame loop: it is lossless on its
//! own channel. The twin only shows the plant *now*, so while it is behind
//! it keeps the latest sample per property (the history keeps them all),
//! the most recent dead letters and their count, every MES event up to a
//! cap (their count beyond it is reported), the last heartbeat and the
//! link changes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{DeadLetter, IngestEvent, LinkState, Origin, Sample};
use crate::registry::PropertyRef;

/// Most MES events held for a frame loop that is behind. Past this the
/// twin's order book would be wrong: the loss is counted and logged (the
/// history has every event; a restart rebuilds the book from it).
pub const MES_EVENTS_KEPT: usize = 100_000;
/// Link changes held (flapping beyond this keeps the latest).
const LINK_CHANGES_KEPT: usize = 256;

/// Shared by the sending and the draining side.
#[derive(Debug, Default, Clone)]
pub struct Overflow(Arc<Mutex<Inner>>);

#[derive(Debug, Default)]
pub(crate) struct Inner {
    /// True from the first event that did not fit until the frame loop took
    /// them: meanwhile every copy comes here, so order is kept.
    pub(crate) active: bool,
    samples: Vec<Sample>,
    index: HashMap<PropertyRef, usize>,
    dead: VecDeque<DeadLetter>,
    dead_not_kept: u64,
    mes: VecDeque<Box<crate::contract::Envelope>>,
    links: VecDeque<(Origin, LinkState)>,
    /// Sources that said they are gone (the latest per asset).
    offline: HashMap<crate::registry::AssetIdx, (String, i64)>,
    heartbeats: u64,
    last_heartbeat_us: Option<i64>,
    /// Counted over the whole run.
    stats: OverflowStats,
}

/// What coalescing did, for the status line and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, bevy::prelude::Resource)]
pub struct OverflowStats {
    /// Times the frame loop fell behind far enough to fill the channel.
    pub episodes: u64,
    /// Samples replaced by a newer one of the same property before the twin
    /// saw them (they are in the history).
    pub samples_coalesced: u64,
    /// MES events the twin never saw (past [`MES_EVENTS_KEPT`]).
    pub mes_lost: u64,
}

/// What the frame loop takes in one piece.
#[derive(Debug, Default)]
pub struct Taken {
    pub events: Vec<IngestEvent>,
    /// Dead letters counted but not kept (only the latest are).
    pub dead_not_kept: u64,
    /// Heartbeats beyond the one in `events`.
    pub extra_heartbeats: u64,
}

impl Inner {
    pub(crate) fn push(&mut self, ev: IngestEvent) {
        if !self.active {
            self.active = true;
            self.stats.episodes += 1;
        }
        match ev {
            IngestEvent::Sample(s, _) => match self.index.get(&s.property) {
                Some(&i) => {
                    self.samples[i] = s;
                    self.stats.samples_coalesced += 1;
                }
                None => {
                    self.index.insert(s.property, self.samples.len());
                    self.samples.push(s);
                }
            },
            IngestEvent::DeadLetter(d, _) => {
                if self.dead.len() == super::DeadLetters::KEEP {
                    self.dead.pop_front();
                    self.dead_not_kept += 1;
                }
                self.dead.push_back(d);
            }
            IngestEvent::Mes(e, _) => {
                if self.mes.len() < MES_EVENTS_KEPT {
                    self.mes.push_back(e);
                } else {
                    if self.stats.mes_lost == 0 {
                        bevy::log::error!(
                            "the frame loop is too far behind: the live order book misses MES \
                             events from `{}` on (all are recorded; a restart rebuilds it)",
                            e.id
                        );
                    }
                    self.stats.mes_lost += 1;
                }
            }
            IngestEvent::MesHeartbeat { received_us, .. } => {
                self.heartbeats += 1;
                self.last_heartbeat_us = Some(received_us);
            }
            IngestEvent::Link { origin, state } => {
                if self.links.len() == LINK_CHANGES_KEPT {
                    self.links.pop_front();
                }
                self.links.push_back((origin, state));
            }
            IngestEvent::SourceDown {
                asset,
                reason,
                at_us,
            } => {
                self.offline.insert(asset, (reason, at_us));
            }
            // Acks belong to the recorder; nothing for the twin.
            IngestEvent::AckOnly(_) => {}
        }
    }

    fn take(&mut self) -> Taken {
        self.active = false;
        self.index.clear();
        let mut events: Vec<IngestEvent> = Vec::with_capacity(
            self.links.len() + self.mes.len() + self.dead.len() + self.samples.len() + 1,
        );
        events.extend(
            self.links
                .drain(..)
                .map(|(origin, state)| IngestEvent::Link { origin, state }),
        );
        events.extend(self.mes.drain(..).map(|e| IngestEvent::Mes(e, None)));
        let extra_heartbeats = self.heartbeats.saturating_sub(1);
        if let Some(received_us) = self.last_heartbeat_us.take() {
            events.push(IngestEvent::MesHeartbeat {
                received_us,
                ack: None,
            });
        }
        self.heartbeats = 0;
        events.extend(
            self.dead
                .drain(..)
                .map(|d| IngestEvent::DeadLetter(d, None)),
        );
        // Before the samples: a source that came back meanwhile is live
        // again with its newest value.
        events.extend(self.offline.drain().map(|(asset, (reason, at_us))| {
            IngestEvent::SourceDown {
                asset,
                reason,
                at_us,
            }
        }));
        events.extend(self.samples.drain(..).map(|s| IngestEvent::Sample(s, None)));
        Taken {
            events,
            dead_not_kept: std::mem::take(&mut self.dead_not_kept),
            extra_heartbeats,
        }
    }
}

impl Overflow {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding it leaves plain data behind: use it.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// If the sending side fell back on the overflow, everything still on
    /// `channel` (older) and then the overflow (newer), in that order.
    pub fn take_if_active(
        &self,
        channel: &crossbeam_channel::Receiver<IngestEvent>,
    ) -> Option<Taken> {
        let mut inner = self.lock();
        if !inner.active {
            return None;
        }
        // While it is active, senders that coalesce put nothing on the
        // channel (they decide under this lock): what is on it now is older
        // than what the overflow holds.
        let older: Vec<IngestEvent> = channel.try_iter().collect();
        let mut taken = inner.take();
        drop(inner);
        let mut events = older;
        events.append(&mut taken.events);
        taken.events = events;
        Some(taken)
    }

    pub fn stats(&self) -> OverflowStats {
        self.lock().stats
    }
}
