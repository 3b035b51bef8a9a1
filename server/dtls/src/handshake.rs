//! One handshake task per cookie-verified ClientHello; when it completes, the same task
//! becomes the session's reader.
//!
//! webrtc-dtls takes one `Config` per connection and refuses one holding both a PSK and
//! certificates, so the demultiplexer picks the kind from the ClientHello's cipher
//! suites and this module builds the matching config. Both set `skip_hello_verify` (our
//! patch of the vendored webrtc-dtls): the cookie has already been checked statelessly.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use webrtc_dtls::cipher_suite::CipherSuiteId;
use webrtc_dtls::config::{ClientAuthType, Config, ExtendedMasterSecretType};
use webrtc_dtls::conn::DTLSConn;

use crate::Inbound;
use crate::credentials::Identity;
use crate::metrics::Counters;
use crate::peer_conn::PeerConn;
use crate::record::ClientHello;
use crate::server::{Shared, TaskGuard};
use crate::session::{Session, SessionId, lock};

/// Which credentials a handshake uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandshakeKind {
    Psk,
    Certificate,
}

const PSK_SUITES: [CipherSuiteId; 3] = [
    CipherSuiteId::Tls_Psk_With_Aes_128_Ccm_8,
    CipherSuiteId::Tls_Psk_With_Aes_128_Ccm,
    CipherSuiteId::Tls_Psk_With_Aes_128_Gcm_Sha256,
];
const ECDSA_SUITES: [CipherSuiteId; 3] = [
    CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_128_Ccm_8,
    CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_128_Ccm,
    CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_128_Gcm_Sha256,
];

/// The kind of the first suite in the client's preference order that we can serve.
pub(crate) fn choose_kind(
    hello: &ClientHello<'_>,
    psk: bool,
    certificate: bool,
) -> Option<HandshakeKind> {
    hello.cipher_suites().find_map(|suite| {
        if psk && PSK_SUITES.iter().any(|s| *s as u16 == suite) {
            Some(HandshakeKind::Psk)
        } else if certificate && ECDSA_SUITES.iter().any(|s| *s as u16 == suite) {
            Some(HandshakeKind::Certificate)
        } else {
            None
        }
    })
}

type IdentitySlot = Arc<Mutex<Option<Identity>>>;

fn dtls_config(
    shared: &Shared,
    kind: HandshakeKind,
    record_sequence: u64,
    slot: &IdentitySlot,
) -> Config {
    let mut config = Config {
        extended_master_secret: ExtendedMasterSecretType::Request,
        flight_interval: shared.config.flight_interval,
        mtu: shared.config.mtu,
        skip_hello_verify: true,
        // Our HelloVerifyRequests copied the record sequence numbers of the client's
        // earlier ClientHellos (RFC 6347 §4.2.1); the ServerHello must not repeat one,
        // or clients with epoch-0 replay detection (GnuTLS) drop it as a duplicate.
        // Continuing from the cookie-bearing ClientHello's number is what OpenSSL does.
        initial_sequence_number: record_sequence,
        ..Config::default()
    };
    match kind {
        HandshakeKind::Psk => {
            let credentials = Arc::clone(&shared.credentials);
            let slot = Arc::clone(slot);
            config.cipher_suites = PSK_SUITES.to_vec();
            config.psk_identity_hint = shared.config.psk_identity_hint.clone();
            config.psk = Some(Arc::new(move |identity: &[u8]| {
                match credentials.psk(identity) {
                    Some(key) => {
                        *lock(&slot) = Some(Identity::Psk {
                            identity: identity.to_vec(),
                        });
                        Ok(key)
                    }
                    None => {
                        debug!(identity = %String::from_utf8_lossy(identity), "unknown PSK identity");
                        Err(webrtc_dtls::Error::Other("unknown PSK identity".into()))
                    }
                }
            }));
        }
        HandshakeKind::Certificate => {
            let credentials = Arc::clone(&shared.credentials);
            let slot = Arc::clone(slot);
            config.cipher_suites = ECDSA_SUITES.to_vec();
            if let Some(cert) = &shared.config.certificate {
                config.certificates = vec![cert.inner.clone()];
            }
            // "Any" makes webrtc-dtls skip its rustls-webpki chain check (which rejects
            // X.509 v1) but still demand a certificate and check CertificateVerify; the
            // chain is verified by our callback below.
            config.client_auth = ClientAuthType::RequireAnyClientCert;
            config.verify_peer_certificate = Some(Arc::new(move |chain: &[Vec<u8>], _| {
                match credentials.verify_client_chain(chain) {
                    Ok(identity) => {
                        *lock(&slot) = Some(identity);
                        Ok(())
                    }
                    Err(e) => {
                        debug!(error = %e, "client certificate rejected");
                        Err(webrtc_dtls::Error::Other(format!(
                            "client certificate: {e}"
                        )))
                    }
                }
            }));
        }
    }
    config
}

pub(crate) struct HandshakeStart {
    pub peer: SocketAddr,
    pub id: SessionId,
    pub kind: HandshakeKind,
    /// Record sequence number of the cookie-bearing ClientHello.
    pub record_sequence: u64,
    pub conn: Arc<PeerConn>,
    pub tx: mpsc::Sender<Vec<u8>>,
}

pub(crate) async fn run(shared: Arc<Shared>, start: HandshakeStart, _guard: TaskGuard) {
    let HandshakeStart {
        peer,
        id,
        kind,
        record_sequence,
        conn,
        tx,
    } = start;
    let slot: IdentitySlot = Arc::default();
    let config = dtls_config(&shared, kind, record_sequence, &slot);
    let mut shutdown = shared.shutdown.clone();
    let result = tokio::select! {
        r = tokio::time::timeout(
            shared.config.handshake_timeout,
            DTLSConn::new(conn, config, false, None),
        ) => r,
        _ = crate::server::stopped(&mut shutdown) => {
            lock(&shared.table).remove_pending(peer, id);
            return;
        }
    };
    let dtls = match result {
        Ok(Ok(dtls)) => dtls,
        Ok(Err(e)) => {
            if lock(&shared.table).remove_pending(peer, id).is_some() {
                Counters::inc(&shared.counters.handshakes_failed);
            }
            info!(%peer, session = %id, ?kind, error = %e, "DTLS handshake failed");
            return;
        }
        Err(_) => {
            if lock(&shared.table).remove_pending(peer, id).is_some() {
                Counters::inc(&shared.counters.handshakes_timed_out);
            }
            info!(%peer, session = %id, ?kind, "DTLS handshake timed out");
            return;
        }
    };
    let identity = lock(&slot).take();
    let identity = match identity {
        Some(identity) => identity,
        None => {
            // Cannot happen with RequireAnyClientCert/PSK (the callbacks ran), but an
            // unauthenticated session must never reach the layer above.
            warn!(%peer, "handshake completed without an authenticated identity");
            lock(&shared.table).remove_pending(peer, id);
            Counters::inc(&shared.counters.handshakes_failed);
            return;
        }
    };
    let session = Arc::new(Session::new(
        id,
        peer,
        Arc::new(identity),
        Arc::new(dtls),
        tx,
        shared.now_ms(),
    ));
    {
        let mut table = lock(&shared.table);
        if table.remove_pending(peer, id).is_none() {
            // Superseded while finishing; the newer handshake wins.
            return;
        }
        let slot = table.peers.entry(peer).or_default();
        let old = slot.session.replace(Arc::clone(&session));
        table.by_id.insert(id, peer);
        if let Some(old) = old {
            table.by_id.remove(&old.id);
            old.stop(true);
            Counters::inc(&shared.counters.sessions_replaced);
            info!(%peer, old = %old.id, new = %id, "session replaced by a new handshake");
        }
    }
    Counters::inc(&shared.counters.handshakes_ok);
    info!(%peer, session = %id, ?kind, identity = ?session.identity, "DTLS session established");
    read_loop(&shared, &session).await;
}

async fn read_loop(shared: &Arc<Shared>, session: &Arc<Session>) {
    let mut shutdown = shared.shutdown.clone();
    let mut buf = vec![0u8; 16 * 1024];
    let mut shutting_down = false;
    loop {
        tokio::select! {
            _ = crate::server::stopped(&mut shutdown) => { shutting_down = true; break; }
            _ = session.stopped() => break,
            r = session.conn.read(&mut buf, None) => match r {
                Ok(n) => {
                    let inbound = Inbound {
                        peer: session.peer,
                        identity: Arc::clone(&session.identity),
                        session: session.id,
                        datagram: buf[..n].to_vec(),
                    };
                    if shared.inbound_tx.send(inbound).await.is_err() {
                        debug!("inbound receiver dropped");
                        break;
                    }
                }
                Err(e) => {
                    debug!(peer = %session.peer, session = %session.id, error = %e, "session ended");
                    break;
                }
            }
        }
    }
    lock(&shared.table).remove_session(session.peer, session.id);
    if !session.was_replaced() || shutting_down {
        // close_notify is a courtesy; do not let a stuck writer hold shutdown up.
        let _ = tokio::time::timeout(Duration::from_millis(500), session.conn.close()).await;
    }
}
