//! The Bootstrap-Server listeners (coap 5783, coaps 5784): Bootstrap-Request and
//! Bootstrap-Pack to the sans-IO [`BootstrapSessions`], EST-coaps to the CA's
//! [`EstService`], and the revocation service (`POST /ocsp`, `GET /crl`).
//!
//! ```text
//!  UDP driver ──┐                       ┌─► BootstrapSessions ─► Bootstrap-Write/Delete/... out
//!               ├─► BootstrapRouter ────┼─► EstService (coaps only; plain CoAP gets 4.01)
//!  DTLS driver ─┘   (driver task)       └─► PkiService: OCSP responses, the CRL
//! ```
//!
//! Everything runs in the driver task of the listener the request came in on: a session's
//! requests go out on the same stack (and so the same DTLS session) as its Bootstrap-Request,
//! and the answers come back to the same router. Configurations are read from the store there
//! too; sled reads of one small record are cheap enough not to need a thread hop. The
//! plugins' bootstrap offers are read from memory ([`PluginOffers`], a read lock), and the
//! devices' answers to them go to the plugins with the Bootstrap-Requests.
//!
//! DTLS on 5784 accepts bootstrap PSKs from the store and certificate chains that the CA
//! service accepts for bootstrap: a factory certificate chaining to a manufacturer CA, or an
//! operational certificate of ours that is not revoked ([`PkiService::verify_bootstrap_chain`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::plugins::dispatch::{BootstrapNotice, BootstrapRequested, OfferAnswered};
use crate::plugins::offers::PluginOffers;
use steward_coap::endpoint::{Event, Incoming, RequestId};
use steward_coap::message::{Code, Method, Request, Response, encode_uint, option};
use steward_coap::stack::Stack;
use steward_dtls::{DtlsConfig, DtlsServer, Identity};
use steward_pki::est::{EstClient, EstService, Route};
use steward_transport::dtls::Peers;
use steward_transport::udp::{self, UdpConfig};
use steward_transport::{Commander, Handle};
use tokio::sync::{Semaphore, broadcast, watch};
use tokio::task::JoinHandle;

use super::{
    CoapStack, RuntimeError, StoreCredentials, peer_identity, respond, stack_config, unix_ms,
};
use crate::bootstrap::{Action, BootstrapEvent, BootstrapSessions, Correlation, Outcome};
use crate::lwm2m::Peer;
use crate::pki::{PkiEncoder, PkiService};
use crate::registry::PeerIdentity;
use crate::store::{SledStore, Store};

/// The session timer looks at least this often.
const TICK: Duration = Duration::from_millis(250);
/// EST enrolments under way at once; more get 5.03 + Max-Age.
const EST_IN_FLIGHT: usize = 256;
/// Max-Age of that 5.03: when to come back.
const EST_RETRY_SECS: u32 = 2;

/// The running Bootstrap-Server listeners.
pub(super) struct BootstrapListeners {
    pub coap: SocketAddr,
    pub coaps: SocketAddr,
    /// The CoAPs listener's handshake counters (for `/metrics`).
    pub dtls_counters: steward_dtls::DtlsCounters,
    udp: (Handle<CoapStack>, JoinHandle<CoapStack>),
    dtls: (Handle<CoapStack>, JoinHandle<CoapStack>),
    timer: JoinHandle<()>,
}

impl BootstrapListeners {
    pub(super) async fn shutdown(self) {
        self.timer.abort();
        for (handle, task) in [self.udp, self.dtls] {
            handle.shutdown();
            let _ = task.await;
        }
    }
}

/// What both listeners share: the sessions (one manager, so a device can bootstrap over
/// either), the store and the CA.
struct Shared {
    sessions: Mutex<BootstrapSessions>,
    store: Arc<SledStore>,
    pki: Option<PkiService>,
    est: Option<EstService<PkiService, PkiEncoder>>,
    /// Enrolments under way on the blocking pool.
    est_slots: Arc<Semaphore>,
    /// Every session event, for the API's `/bs/api/event` stream (no receiver is fine).
    events: broadcast::Sender<BootstrapEvent>,
    /// Every Bootstrap-Request (started or refused) and every answer to an offer, for the
    /// plugins.
    requests: broadcast::Sender<BootstrapNotice>,
    /// The plugins' offers, written first in the sessions they apply to.
    offers: Arc<PluginOffers>,
}

/// One listener's router: its own map of our requests, since request IDs are per stack.
struct BootstrapRouter {
    shared: Arc<Shared>,
    pending: Mutex<HashMap<RequestId, Correlation>>,
    transport: &'static str,
    /// Its own driver, for answers computed outside the driver task (EST).
    commander: Arc<OnceLock<Commander<CoapStack>>>,
}

#[allow(clippy::too_many_arguments)] // one call site, each argument a different listener input
pub(super) fn start(
    coap_addr: SocketAddr,
    coaps_addr: SocketAddr,
    allow_unsecured: bool,
    store: Arc<SledStore>,
    pki: Option<PkiService>,
    server_certificate: Option<steward_dtls::ServerCertificate>,
    stop: watch::Receiver<bool>,
    events: broadcast::Sender<BootstrapEvent>,
    requests: broadcast::Sender<BootstrapNotice>,
    offers: Arc<PluginOffers>,
) -> Result<BootstrapListeners, RuntimeError> {
    let sessions = BootstrapSessions::new(crate::bootstrap::SessionsConfig {
        allow_unsecured,
        ..crate::bootstrap::SessionsConfig::default()
    });
    let shared = Arc::new(Shared {
        sessions: Mutex::new(sessions),
        store: Arc::clone(&store),
        est: pki.as_ref().map(PkiService::est_service),
        pki: pki.clone(),
        est_slots: Arc::new(Semaphore::new(EST_IN_FLIGHT)),
        events,
        requests,
        offers,
    });

    let (socket, _) = udp::bind(&UdpConfig {
        bind: coap_addr,
        ..UdpConfig::default()
    })
    .map_err(|source| RuntimeError::BindCoap {
        addr: coap_addr,
        source,
    })?;
    let router = BootstrapRouter::new(Arc::clone(&shared), "bs-coap");
    let udp_commander = Arc::clone(&router.commander);
    let (udp_handle, udp_task) =
        udp::spawn(socket, Stack::new(stack_config()), move |stack, now, ev| {
            router.route(stack, now, ev, None, false);
        })
        .map_err(|source| RuntimeError::BindCoap {
            addr: coap_addr,
            source,
        })?;

    let mut dtls_config = DtlsConfig::new(coaps_addr);
    let mut credentials = StoreCredentials::new(Arc::clone(&store) as Arc<dyn Store>);
    if let Some(pki) = &pki {
        credentials = credentials.with_bootstrap_pki(pki.clone());
    }
    dtls_config.certificate = server_certificate;
    let (dtls_server, inbound) =
        DtlsServer::bind(dtls_config, Arc::new(credentials)).map_err(|source| {
            RuntimeError::BindCoaps {
                addr: coaps_addr,
                source,
            }
        })?;
    let dtls_counters = dtls_server.counters();
    let router = BootstrapRouter::new(Arc::clone(&shared), "bs-coaps");
    let dtls_commander = Arc::clone(&router.commander);
    let (dtls_handle, dtls_task) = steward_transport::dtls::spawn(
        dtls_server,
        inbound,
        Stack::new(stack_config()),
        move |stack, now, ev, peers: &Peers| {
            let identity = match &ev {
                Event::Request { id, .. } => peers.identity(id.peer()).cloned(),
                _ => None,
            };
            router.route(stack, now, ev, identity.as_deref(), true);
        },
    );

    let _ = udp_commander.set(udp_handle.commander());
    let _ = dtls_commander.set(dtls_handle.commander());
    let timer = tokio::spawn(tick(Arc::clone(&shared), stop));
    let coap = udp_handle.local;
    let coaps = dtls_handle.local;
    tracing::info!(%coap, %coaps, ca = pki.is_some(), "bootstrap server and EST listening");
    Ok(BootstrapListeners {
        coap,
        coaps,
        dtls_counters,
        udp: (udp_handle, udp_task),
        dtls: (dtls_handle, dtls_task),
        timer,
    })
}

/// Fails sessions past their deadline (a failed session sends nothing more).
async fn tick(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => return,
        }
        let now = unix_ms();
        let mut sessions = lock(&shared.sessions);
        if sessions.poll_timeout().is_none_or(|at| at > now) {
            continue;
        }
        for action in sessions.on_timeout(now) {
            match action {
                Action::Event(event) => publish(&shared, event),
                Action::Send(out) => tracing::debug!(
                    endpoint = %out.endpoint,
                    "request of a timed-out session not sent"
                ),
            }
        }
    }
}

impl BootstrapRouter {
    fn new(shared: Arc<Shared>, transport: &'static str) -> BootstrapRouter {
        BootstrapRouter {
            shared,
            pending: Mutex::new(HashMap::new()),
            transport,
            commander: Arc::new(OnceLock::new()),
        }
    }

    /// `identity`: the DTLS identity (`None` on plain CoAP, where `secure` is false).
    fn route(
        &self,
        stack: &mut CoapStack,
        now: Instant,
        event: Event<SocketAddr>,
        identity: Option<&Identity>,
        secure: bool,
    ) {
        match event {
            Event::Request { id, request } => {
                self.request(stack, now, id, &request, identity, secure)
            }
            Event::Response { id, response, .. } => {
                self.outcome(stack, now, id, Outcome::Response(response));
            }
            Event::Failed { id, reason, .. } => {
                self.outcome(stack, now, id, Outcome::Failed(reason))
            }
            Event::ObserveEnded { .. } => {}
        }
    }

    fn request(
        &self,
        stack: &mut CoapStack,
        now: Instant,
        id: Incoming<SocketAddr>,
        request: &Request,
        identity: Option<&Identity>,
        secure: bool,
    ) {
        let peer = id.peer();
        let segments: Vec<String> = request
            .options
            .uri_path()
            .unwrap_or_default()
            .into_iter()
            .map(str::to_owned)
            .collect();
        if crate::bootstrap::is_bootstrap_path(request) {
            let who = match (secure, identity.and_then(peer_identity)) {
                (false, _) => PeerIdentity::Unsecured,
                (true, Some(identity)) => identity,
                (true, None) => {
                    respond(stack, now, id, Response::new(Code::UNAUTHORIZED));
                    return;
                }
            };
            let who = Peer {
                address: peer.to_string(),
                identity: who,
            };
            let (response, actions) = {
                let store: &dyn Store = &*self.shared.store;
                let offers: &PluginOffers = &self.shared.offers;
                lock(&self.shared.sessions).on_request_with_offers(
                    unix_ms(),
                    &who,
                    request,
                    store,
                    offers,
                )
            };
            for action in &actions {
                let (endpoint, accepted) = match action {
                    Action::Event(BootstrapEvent::Started { endpoint, .. }) => (endpoint, true),
                    Action::Event(BootstrapEvent::Refused {
                        endpoint: Some(endpoint),
                        ..
                    }) => (endpoint, false),
                    _ => continue,
                };
                let _ = self
                    .shared
                    .requests
                    .send(BootstrapNotice::Requested(BootstrapRequested {
                        endpoint: endpoint.clone(),
                        transport: self.transport.trim_start_matches("bs-"),
                        accepted,
                    }));
            }
            // The answer to the Bootstrap-Request goes before the session's first request.
            respond(stack, now, id, response);
            self.apply(stack, now, actions);
            return;
        }
        match segments.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["ocsp"] => {
                let response = match (&self.shared.pki, request.method) {
                    (None, _) => no_ca(),
                    (Some(pki), Method::Post) => {
                        binary(pki.ocsp_response(&request.payload, SystemTime::now()))
                    }
                    (Some(_), _) => Response::new(Code::METHOD_NOT_ALLOWED),
                };
                respond(stack, now, id, response);
                return;
            }
            ["crl"] => {
                let response = match (&self.shared.pki, request.method) {
                    (None, _) => no_ca(),
                    (Some(pki), Method::Get) => match pki.crl_der(SystemTime::now()) {
                        Ok(der) => binary(der),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot build the CRL");
                            Response::new(Code::INTERNAL_SERVER_ERROR)
                        }
                    },
                    (Some(_), _) => Response::new(Code::METHOD_NOT_ALLOWED),
                };
                respond(stack, now, id, response);
                return;
            }
            _ => {}
        }
        if let Some(route) = steward_pki::est::route(&segments) {
            let Some(est) = &self.shared.est else {
                // Without a CA there is nothing to discover here (the Bootstrap interface is
                // not discoverable: clients are configured with its URI).
                let response = match route {
                    Route::Core => Response::new(Code::CONTENT).with_payload(40, Vec::new()),
                    _ => no_ca(),
                };
                respond(stack, now, id, response);
                return;
            };
            let client = if secure {
                identity.map(est_client)
            } else {
                None
            };
            if matches!(route, Route::Function { .. }) {
                self.enrol_elsewhere(stack, now, id, request, client);
                return;
            }
            let answer = est.handle_coap(request, client);
            respond(stack, now, id, answer.to_coap());
            return;
        }
        tracing::debug!(%peer, transport = self.transport, path = %request.path_string(), "no such resource: 4.04");
        respond(stack, now, id, Response::new(Code::NOT_FOUND));
    }

    /// EST functions parse and sign certificates and wait for the store's fsync: they run on
    /// the blocking pool, not in this driver task, so enrolments use every core, share
    /// fsyncs (the store's group commit), and never hold up bootstrap traffic. The stack keeps
    /// the request pending (an empty ACK goes out if the answer takes a while, RFC 9148
    /// §4.7). Past [`EST_IN_FLIGHT`] enrolments at once, 5.03 with Max-Age asks the client to
    /// come back (RFC 9148 §4.7).
    fn enrol_elsewhere(
        &self,
        stack: &mut CoapStack,
        now: Instant,
        id: Incoming<SocketAddr>,
        request: &Request,
        client: Option<EstClient>,
    ) {
        let Ok(permit) = Arc::clone(&self.shared.est_slots).try_acquire_owned() else {
            let busy = Response::new(Code::SERVICE_UNAVAILABLE)
                .with_option(option::MAX_AGE, encode_uint(EST_RETRY_SECS));
            respond(stack, now, id, busy);
            return;
        };
        let Some(commander) = self.commander.get().cloned() else {
            respond(stack, now, id, Response::new(Code::SERVICE_UNAVAILABLE));
            return;
        };
        let shared = Arc::clone(&self.shared);
        let request = request.clone();
        let transport = self.transport;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let Some(est) = &shared.est else {
                return;
            };
            let answer = est.handle_coap(&request, client);
            let peer = id.peer();
            if let Some(audit) = &answer.audit {
                tracing::info!(target: "steward::audit", %peer, transport, "{audit}");
            }
            let response = answer.to_coap();
            commander.command(move |stack, now| respond(stack, now, id, response));
        });
    }

    fn outcome(&self, stack: &mut CoapStack, now: Instant, id: RequestId, outcome: Outcome) {
        let Some(correlation) = lock(&self.pending).remove(&id) else {
            return;
        };
        let actions = lock(&self.shared.sessions).on_response(unix_ms(), correlation, outcome);
        self.apply(stack, now, actions);
    }

    fn apply(&self, stack: &mut CoapStack, now: Instant, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Event(event) => publish(&self.shared, event),
                Action::Send(out) => {
                    let Ok(addr) = out.address.parse::<SocketAddr>() else {
                        tracing::error!(address = %out.address, "bootstrap peer address unusable");
                        continue;
                    };
                    let rid = stack.request(now, addr, out.request, true);
                    lock(&self.pending).insert(rid, out.correlation);
                }
            }
        }
    }
}

fn est_client(identity: &Identity) -> EstClient {
    match identity {
        Identity::Psk { identity } => EstClient::Psk {
            identity: identity.clone(),
        },
        Identity::X509 { common_name, chain } => EstClient::Certificate {
            common_name: common_name.clone(),
            chain: chain.clone(),
        },
    }
}

/// 2.05 with a DER body. OCSP and CRLs have no CoAP Content-Format, so none is sent.
fn binary(der: Vec<u8>) -> Response {
    let mut response = Response::new(Code::CONTENT);
    response.payload = der;
    response
}

fn no_ca() -> Response {
    Response::new(Code::NOT_FOUND).with_diagnostic("no CA: run `steward ca init`")
}

/// Logs `event` and hands it to the API's event stream (and an offer's answer to its
/// plugin).
fn publish(shared: &Shared, event: BootstrapEvent) {
    log_event(&event);
    if let BootstrapEvent::OfferAnswered {
        endpoint,
        plugin,
        offer,
        code,
        diagnostic,
        ..
    } = &event
    {
        // No receiver (no plugin host routing) is fine.
        let _ = shared
            .requests
            .send(BootstrapNotice::OfferAnswered(OfferAnswered {
                plugin: plugin.clone(),
                offer: offer.clone(),
                endpoint: endpoint.clone(),
                code: code.to_string(),
                diagnostic: diagnostic.clone(),
            }));
    }
    // No subscriber (no SSE client, or no HTTP server) is fine.
    let _ = shared.events.send(event);
}

fn log_event(event: &BootstrapEvent) {
    match event {
        BootstrapEvent::Failed { .. } | BootstrapEvent::Refused { .. } => {
            tracing::warn!(?event, "bootstrap");
        }
        _ => tracing::info!(?event, "bootstrap"),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
