//! The demultiplexer: the only reader of the UDP socket.
//!
//! Per datagram: a ClientHello is answered statelessly with a HelloVerifyRequest unless
//! it carries a valid cookie; only then may it create per-peer state (a handshake task),
//! subject to the handshake cap. Every other datagram goes to the peer's handshake or
//! session, or is dropped. Routing while a peer both has a session and re-handshakes
//! (a device that lost its state and reconnected from the same address):
//! epoch-0 records go to the handshake; epoch-1 records go to the old session until the
//! client's ChangeCipherSpec shows that its epoch-1 records are the new handshake's.
//! (webrtc-dtls ends a PSK handshake on a record it cannot decrypt, so records cannot
//! simply be offered to both.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, trace, warn};

use crate::cookie::CookieJar;
use crate::handshake::{self, HandshakeStart};
use crate::metrics::Counters;
use crate::peer_conn::PeerConn;
use crate::record;
use crate::server::Shared;
use crate::session::{Pending, lock};

/// Largest UDP payload; DTLS records are far smaller, but a short buffer would make
/// the kernel truncate silently.
const MAX_DATAGRAM: usize = 65_535;

pub(crate) async fn run(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    let mut cookies = CookieJar::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut rotate = tokio::time::interval(shared.config.cookie_rotation);
    rotate.set_missed_tick_behavior(MissedTickBehavior::Delay);
    rotate.tick().await;
    // Evict within a quarter of the idle timeout, but do not spin for tiny ones.
    let sweep_period =
        (shared.config.idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(5));
    let mut sweep = tokio::time::interval(sweep_period);
    sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = crate::server::stopped(&mut shutdown) => break,
            _ = rotate.tick() => cookies.rotate(),
            _ = sweep.tick() => evict_idle(&shared),
            r = shared.socket.recv_from(&mut buf) => match r {
                Ok((n, peer)) => on_datagram(&shared, &cookies, peer, &buf[..n]),
                // ICMP errors surface here on some systems; they concern one peer only.
                Err(e) => debug!(error = %e, "recv_from failed"),
            },
        }
    }
    debug!("demultiplexer stopped");
}

fn on_datagram(shared: &Arc<Shared>, cookies: &CookieJar, peer: SocketAddr, data: &[u8]) {
    let Some(summary) = record::summarise(data) else {
        trace!(%peer, len = data.len(), "dropping datagram without a DTLS record");
        Counters::inc(&shared.counters.datagrams_dropped);
        return;
    };
    if summary.starts_with_client_hello {
        on_client_hello(shared, cookies, peer, data);
        return;
    }
    let mut table = lock(&shared.table);
    let Some(slot) = table.peers.get_mut(&peer) else {
        trace!(%peer, "dropping datagram from a peer without state");
        Counters::inc(&shared.counters.datagrams_dropped);
        return;
    };
    if let Some(pending) = slot.pending.as_mut() {
        if summary.has_change_cipher_spec {
            pending.finishing = true;
        }
        if summary.has_epoch0 || pending.finishing || slot.session.is_none() {
            forward(shared, &pending.tx, data);
            return;
        }
    }
    if let Some(session) = &slot.session {
        session.touch(shared.now_ms());
        forward(shared, &session.tx, data);
    }
}

fn on_client_hello(shared: &Arc<Shared>, cookies: &CookieJar, peer: SocketAddr, data: &[u8]) {
    let mut data = data.to_vec();
    if record::normalise_client_hello_version(&mut data) > 0 {
        trace!(%peer, "normalised ClientHello record version to DTLS 1.2");
    }
    let hello = match record::parse_client_hello(&data) {
        Ok(hello) => hello,
        Err(e) => {
            debug!(%peer, error = %e, "dropping unusable ClientHello");
            Counters::inc(&shared.counters.datagrams_dropped);
            return;
        }
    };
    if !cookies.verify(peer, &hello) {
        let cookie = cookies.make(peer, &hello);
        let hvr = record::hello_verify_request(&hello, &cookie);
        // try_send_to: never wait on the socket here; a lost HelloVerifyRequest is
        // retransmitted by the client's own ClientHello retransmission.
        match shared.socket.try_send_to(&hvr, peer) {
            Ok(_) => Counters::inc(&shared.counters.cookies_sent),
            Err(e) => debug!(%peer, error = %e, "HelloVerifyRequest not sent"),
        }
        return;
    }
    let random = hello.random;
    let record_sequence = hello.record_sequence;
    let kind = handshake::choose_kind(
        &hello,
        shared.config.psk,
        shared.config.certificate.is_some(),
    );

    let mut table = lock(&shared.table);
    if let Some(pending) = table.peers.get(&peer).and_then(|s| s.pending.as_ref()) {
        if pending.client_random == random {
            // Retransmission of the ClientHello this handshake started from.
            forward(shared, &pending.tx, &data);
            return;
        }
        // The client started over (new random): the old handshake cannot complete.
        let id = pending.id;
        if let Some(old) = table.remove_pending(peer, id) {
            old.abort.abort();
            Counters::inc(&shared.counters.handshakes_superseded);
            debug!(%peer, session = %id, "handshake superseded by a new ClientHello");
        }
    }
    let Some(kind) = kind else {
        debug!(%peer, "no cipher suite in common");
        Counters::inc(&shared.counters.hellos_no_common_suite);
        return;
    };
    if table.handshakes >= shared.config.max_handshakes {
        Counters::inc(&shared.counters.hellos_dropped_over_cap);
        warn!(%peer, cap = shared.config.max_handshakes, "handshake cap reached, ClientHello dropped");
        return;
    }
    let id = shared.next_id();
    let (tx, rx) = mpsc::channel(shared.config.per_peer_queue);
    let conn = Arc::new(PeerConn::new(
        peer,
        shared.local_addr,
        Arc::clone(&shared.socket),
        rx,
    ));
    forward(shared, &tx, &data);
    let start = HandshakeStart {
        peer,
        id,
        kind,
        record_sequence,
        conn,
        tx: tx.clone(),
    };
    // Spawned while holding the table lock, so the entry exists before the task can
    // look for it.
    let task = tokio::spawn(handshake::run(
        Arc::clone(shared),
        start,
        shared.task_guard(),
    ));
    table.peers.entry(peer).or_default().pending = Some(Pending {
        id,
        tx,
        client_random: random,
        finishing: false,
        abort: task.abort_handle(),
    });
    table.handshakes += 1;
    debug!(%peer, session = %id, ?kind, "cookie valid, handshake started");
}

/// Hands a datagram to a peer task without waiting: a full queue drops it, like a
/// full socket buffer would, so one slow peer cannot stall the demultiplexer.
fn forward(shared: &Shared, tx: &mpsc::Sender<Vec<u8>>, data: &[u8]) {
    if tx.try_send(data.to_vec()).is_err() {
        Counters::inc(&shared.counters.datagrams_dropped);
    }
}

fn evict_idle(shared: &Shared) {
    let now = shared.now_ms();
    let idle_ms = u64::try_from(shared.config.idle_timeout.as_millis()).unwrap_or(u64::MAX);
    let mut table = lock(&shared.table);
    let idle: Vec<_> = table
        .peers
        .values()
        .filter_map(|slot| slot.session.as_ref())
        .filter(|s| now.saturating_sub(s.last_rx_ms()) >= idle_ms)
        .map(|s| (s.peer, s.id))
        .collect();
    for (peer, id) in idle {
        if let Some(session) = table.remove_session(peer, id) {
            session.stop(false);
            Counters::inc(&shared.counters.evictions);
            info!(%peer, session = %id, "idle DTLS session evicted");
        }
    }
}
