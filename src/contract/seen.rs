//! Idempotency keys of MES events: event ids in, "first time?" out.
//!
//! The contract makes an event id name one event: a re-sent event carries
//! the same id. A bounded set of the ids already handled (seeded from the
//! history file on start) lets the sync and the recorder each handle an
//! event once.

use std::collections::{HashSet, VecDeque};

/// Ids of events already applied, oldest forgotten first.
#[derive(Debug, Clone)]
pub struct SeenEvents {
    ids: HashSet<String>,
    order: VecDeque<String>,
    capacity: usize,
}

impl SeenEvents {
    pub fn new(capacity: usize) -> Self {
        Self {
            ids: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Seeds the set (e.g. with the ids in the history file).
    pub fn seed(&mut self, ids: impl IntoIterator<Item = String>) {
        for id in ids {
            self.insert(&id);
        }
    }

    /// True the first time an id is seen.
    pub fn insert(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        self.ids.insert(id.to_string());
        self.order.push_back(id.to_string());
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        true
    }

    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}
