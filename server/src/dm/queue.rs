//! Queue mode (Transport §6.5): downlink requests for a sleeping device wait here, FIFO, each
//! with its own deadline, until the device shows up (any uplink) and they are released one at a
//! time.
//!
//! In memory for now. The operations mirror the store's queue API (`enqueue`, `peek`, `pop`,
//! `expire`, `clear`, in `crate::store::Store`), and entries keep the request already built
//! (a CoAP request, serializable as is), so a store-backed queue can replace this one without
//! changing the service; what it adds is a stable encoding of [`QueuedEntry`].

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use super::request::{BuiltRequest, DownlinkRequest};
use super::service::Ticket;

/// One request waiting for its device.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedEntry {
    pub ticket: Ticket,
    pub request: DownlinkRequest,
    pub built: BuiltRequest,
    pub queued_at: Instant,
    pub deadline: Instant,
}

/// The queues of every endpoint.
#[derive(Debug, Default)]
pub struct DownlinkQueues {
    queues: HashMap<String, VecDeque<QueuedEntry>>,
}

impl DownlinkQueues {
    pub fn enqueue(&mut self, endpoint: &str, entry: QueuedEntry) {
        self.queues
            .entry(endpoint.to_owned())
            .or_default()
            .push_back(entry);
    }

    pub fn len(&self, endpoint: &str) -> usize {
        self.queues.get(endpoint).map_or(0, VecDeque::len)
    }

    pub fn is_empty(&self, endpoint: &str) -> bool {
        self.len(endpoint) == 0
    }

    pub fn pop(&mut self, endpoint: &str) -> Option<QueuedEntry> {
        let queue = self.queues.get_mut(endpoint)?;
        let entry = queue.pop_front();
        if queue.is_empty() {
            self.queues.remove(endpoint);
        }
        entry
    }

    /// Removes and returns every entry whose deadline has passed, across endpoints.
    pub fn expire(&mut self, now: Instant) -> Vec<(String, QueuedEntry)> {
        let mut out = Vec::new();
        self.queues.retain(|endpoint, queue| {
            let (due, keep): (VecDeque<_>, VecDeque<_>) =
                queue.drain(..).partition(|e| e.deadline <= now);
            out.extend(due.into_iter().map(|e| (endpoint.clone(), e)));
            *queue = keep;
            !queue.is_empty()
        });
        // Deterministic order for callers and tests: by deadline, then FIFO.
        out.sort_by_key(|(_, e)| (e.deadline, e.ticket));
        out
    }

    /// Removes an endpoint's whole queue (deregistration).
    pub fn clear(&mut self, endpoint: &str) -> Vec<QueuedEntry> {
        self.queues
            .remove(endpoint)
            .map(Vec::from)
            .unwrap_or_default()
    }

    /// The earliest deadline of any queued entry.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.queues
            .values()
            .flat_map(|q| q.iter().map(|e| e.deadline))
            .min()
    }
}
