//! Per-peer state: established sessions, handshakes in progress, and the table that holds
//! them. The table is the only per-peer state in the server; it gets an entry only after a
//! ClientHello carried a valid cookie.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, mpsc};
use tokio::task::AbortHandle;
use webrtc_dtls::conn::DTLSConn;

use crate::credentials::Identity;

/// Identifies one DTLS session (one completed handshake) for the server's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.0)
    }
}

pub(crate) struct Session {
    pub id: SessionId,
    pub peer: SocketAddr,
    pub identity: Arc<Identity>,
    pub conn: Arc<DTLSConn>,
    /// Feeds the session's `PeerConn`.
    pub tx: mpsc::Sender<Vec<u8>>,
    /// Milliseconds since server start of the last datagram from the peer.
    last_rx_ms: AtomicU64,
    stop: Notify,
    /// Set when a new handshake from the same address replaced this session: the peer
    /// has no keys for it any more, so no close_notify is sent.
    replaced: AtomicBool,
}

impl Session {
    pub fn new(
        id: SessionId,
        peer: SocketAddr,
        identity: Arc<Identity>,
        conn: Arc<DTLSConn>,
        tx: mpsc::Sender<Vec<u8>>,
        now_ms: u64,
    ) -> Self {
        Self {
            id,
            peer,
            identity,
            conn,
            tx,
            last_rx_ms: AtomicU64::new(now_ms),
            stop: Notify::new(),
            replaced: AtomicBool::new(false),
        }
    }
    pub fn touch(&self, now_ms: u64) {
        self.last_rx_ms.store(now_ms, Ordering::Relaxed);
    }
    pub fn last_rx_ms(&self) -> u64 {
        self.last_rx_ms.load(Ordering::Relaxed)
    }
    /// Asks the session task to end (it holds the only long-lived reference to the conn).
    pub fn stop(&self, replaced: bool) {
        self.replaced.store(replaced, Ordering::Relaxed);
        // notify_one stores a permit, so a stop that races the task's select is not lost.
        self.stop.notify_one();
    }
    pub async fn stopped(&self) {
        self.stop.notified().await;
    }
    pub fn was_replaced(&self) -> bool {
        self.replaced.load(Ordering::Relaxed)
    }
}

/// A handshake in progress (its task owns the webrtc-dtls connection).
pub(crate) struct Pending {
    pub id: SessionId,
    pub tx: mpsc::Sender<Vec<u8>>,
    /// Retransmissions of the same ClientHello go to this handshake; a different random
    /// means the client started over.
    pub client_random: [u8; 32],
    /// The client sent ChangeCipherSpec: its epoch-1 records now belong to this handshake,
    /// not to the old session of the same address.
    pub finishing: bool,
    pub abort: AbortHandle,
}

#[derive(Default)]
pub(crate) struct PeerSlot {
    pub session: Option<Arc<Session>>,
    pub pending: Option<Pending>,
}

#[derive(Default)]
pub(crate) struct Table {
    pub peers: HashMap<SocketAddr, PeerSlot>,
    pub by_id: HashMap<SessionId, SocketAddr>,
    pub handshakes: usize,
}

impl Table {
    /// Removes the pending handshake `id` of `peer` if it is still the current one.
    /// Whoever removes a pending entry also releases its handshake slot.
    pub fn remove_pending(&mut self, peer: SocketAddr, id: SessionId) -> Option<Pending> {
        let slot = self.peers.get_mut(&peer)?;
        if slot.pending.as_ref().map(|p| p.id) != Some(id) {
            return None;
        }
        let pending = slot.pending.take();
        self.handshakes = self.handshakes.saturating_sub(1);
        self.drop_if_empty(peer);
        pending
    }

    /// Removes session `id` of `peer` if it is still the current one.
    pub fn remove_session(&mut self, peer: SocketAddr, id: SessionId) -> Option<Arc<Session>> {
        let slot = self.peers.get_mut(&peer)?;
        if slot.session.as_ref().map(|s| s.id) != Some(id) {
            return None;
        }
        let session = slot.session.take();
        self.by_id.remove(&id);
        self.drop_if_empty(peer);
        session
    }

    pub fn session(&self, peer: SocketAddr) -> Option<Arc<Session>> {
        self.peers.get(&peer)?.session.clone()
    }

    pub fn session_by_id(&self, id: SessionId) -> Option<Arc<Session>> {
        let peer = self.by_id.get(&id)?;
        self.session(*peer).filter(|s| s.id == id)
    }

    pub fn session_count(&self) -> usize {
        self.by_id.len()
    }

    pub fn drop_if_empty(&mut self, peer: SocketAddr) {
        if let Some(slot) = self.peers.get(&peer)
            && slot.session.is_none()
            && slot.pending.is_none()
        {
            self.peers.remove(&peer);
        }
    }
}

/// Locks a std mutex, ignoring poisoning: the table's invariants hold between statements,
/// and a panicking task must not take the whole transport down with it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
