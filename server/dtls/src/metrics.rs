//! Counters of the transport, read with [`crate::DtlsServer::metrics`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub(crate) struct Counters {
    pub handshakes_ok: AtomicU64,
    pub handshakes_failed: AtomicU64,
    pub handshakes_timed_out: AtomicU64,
    pub handshakes_superseded: AtomicU64,
    pub cookies_sent: AtomicU64,
    pub hellos_dropped_over_cap: AtomicU64,
    pub hellos_no_common_suite: AtomicU64,
    pub datagrams_dropped: AtomicU64,
    pub evictions: AtomicU64,
    pub sessions_replaced: AtomicU64,
}

impl Counters {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A snapshot of the counters and gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metrics {
    pub handshakes_ok: u64,
    pub handshakes_failed: u64,
    pub handshakes_timed_out: u64,
    /// A newer cookie-valid ClientHello from the same address replaced a handshake.
    pub handshakes_superseded: u64,
    pub cookies_sent: u64,
    pub hellos_dropped_over_cap: u64,
    pub hellos_no_common_suite: u64,
    /// Junk, unparsable or unroutable datagrams, and datagrams dropped on full queues.
    pub datagrams_dropped: u64,
    pub evictions: u64,
    /// A completed handshake replaced an established session of the same address.
    pub sessions_replaced: u64,
    /// Gauge: established sessions.
    pub sessions: u64,
    /// Gauge: handshakes in progress.
    pub handshakes_in_progress: u64,
    /// Gauge: addresses with any per-peer state (session or handshake).
    pub peers: u64,
    /// Gauge: handshake and session tasks still running.
    pub tasks: u64,
}

impl Counters {
    pub fn snapshot(&self) -> Metrics {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Metrics {
            handshakes_ok: r(&self.handshakes_ok),
            handshakes_failed: r(&self.handshakes_failed),
            handshakes_timed_out: r(&self.handshakes_timed_out),
            handshakes_superseded: r(&self.handshakes_superseded),
            cookies_sent: r(&self.cookies_sent),
            hellos_dropped_over_cap: r(&self.hellos_dropped_over_cap),
            hellos_no_common_suite: r(&self.hellos_no_common_suite),
            datagrams_dropped: r(&self.datagrams_dropped),
            evictions: r(&self.evictions),
            sessions_replaced: r(&self.sessions_replaced),
            ..Metrics::default()
        }
    }
}

/// The counters of one [`crate::DtlsServer`], from [`crate::DtlsServer::counters`]; cheap to
/// clone. Its snapshots carry the counters only (the gauges stay zero).
#[derive(Clone)]
pub struct DtlsCounters(pub(crate) Arc<Counters>);

impl DtlsCounters {
    pub fn snapshot(&self) -> Metrics {
        self.0.snapshot()
    }
}

impl std::fmt::Debug for DtlsCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DtlsCounters")
            .field(&self.snapshot())
            .finish()
    }
}
