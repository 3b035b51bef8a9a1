//! `steward serve` at run time: the store, the LwM2M Registration interface and the CoAP and
//! CoAPs listeners, wired together.
//!
//! ```text
//!  UDP driver ──┐  (on_event, driver task)             ┌─► Stack::respond via Commander
//!               ├─► Router ─► Lwm2mServer (memory) ──► Job ─► writer thread ─► SledStore
//!  DTLS driver ─┘     non-/rd: 4.04 at once            │        (put / remove, fsync)
//!  expiry timer ─────────────► handle_timeout ─────────┘
//! ```
//!
//! Device management ([`Devices`], from [`RunningServer::devices`]) rides on the same drivers:
//! `POST /dp` (Send) and the answers to our requests are routed to the hub in `devices`, the
//! writer tells it about registration changes once they are durable (so a queue-mode device's
//! requests go out after its Update is stored and acknowledged), and a timer task drives the
//! service's deadlines. See the `devices` module docs.
//!
//! # Durability
//!
//! A Register, Update or De-register changes the in-memory registrations in the driver task
//! (so the next request of the same client sees it), but its response is not sent there:
//! the change goes to the writer thread as a [`Job`], the writer makes it durable in the store
//! (`put_registrations` / `remove_registration`, which return after the fsync), and only then
//! sends the 2.01 / 2.04 / 2.02 through the driver's [`Commander`]. Meanwhile the stack keeps
//! the request pending: it sends an empty ACK after `separate_response_after` if the write takes
//! that long, and the response then goes out as a separate CON. A client that saw 2.01 therefore
//! has its registration on disk, whatever happens to the process afterwards.
//!
//! The writer takes every job already queued in one batch and covers their registration writes
//! with a single fsync (application-level group commit); jobs are applied in arrival order, so
//! an Update queued behind its Register is written after it. If a write fails, the client gets
//! 5.00 and the endpoint's in-memory registration is put back to what the store holds.
//!
//! The writer is a dedicated OS thread rather than `spawn_blocking` per request: one thread
//! keeps the writes in order without locks, and batching needs a single consumer anyway.
//!
//! # Restart
//!
//! [`start`] reads every stored registration back into the [`Lwm2mServer`] before the
//! listeners open, so a client's Update after a restart gets 2.04, not 4.04. Registrations that
//! expired while the server was down are expired (and removed from the store) by the first
//! timer tick.
//!
//! The store's queued downlink requests and observations are read back too and handed to the
//! device-management hub (`Hub::restore`, see the `devices` module docs): queued requests
//! wait for their device's next uplink as before the restart (their outcomes go to the event
//! stream as `DeviceEvent::Completed`), observations are re-established at the device's next
//! Register or Update. The device-management timer starts `DM_START_GRACE` (250 ms) after
//! `start` returns, so a caller that subscribes to `Devices::events` right away also sees the
//! failures of requests that expired while the server was down.
//!
//! # Security
//!
//! Plain CoAP registrations are refused (4.03) unless `allow_unsecured` is set. DTLS PSK keys
//! come from the store's security infos ([`StoreCredentials`]); the endpoint name must equal
//! the PSK identity (see `lwm2m::identity`). Certificate mode is on when device CAs are
//! configured (see `tls`): device chains are verified against them ([`ChainVerifier`] with
//! `StrictPolicy`) and the endpoint name must equal the leaf's CN. Without device CAs every
//! certificate handshake is refused.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use steward_coap::endpoint::{self, Event, Incoming};
use steward_coap::message::{Code, Response};
use steward_coap::stack::{Stack, StackConfig};
use steward_dtls::{
    ChainVerifier, CredentialError, Credentials, DtlsConfig, DtlsError, DtlsServer, Identity,
    ServerCertificate,
};
use steward_objects::ModelRegistry;
use steward_transport::dtls::Peers;
use steward_transport::udp::{self, UdpConfig};
use steward_transport::{Commander, Handle};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::unix_ms;
use crate::config::Config;
use crate::devices::{Devices, Hub, RestoredRequest, StoreChange, Transport};
use crate::dm::{DeviceRequests, DmConfig, Ticket, is_send};
use crate::lwm2m::registration::is_registration_path;
use crate::lwm2m::{DomainEvent, Lwm2mServer, Peer, ServerConfig};
use crate::pki::PkiService;
use crate::plugins::dispatch::Dispatcher;
use crate::plugins::host::PluginHost;
use crate::plugins::offers::PluginOffers;

mod bootstrap;
mod http;

/// Subject CN of the server certificate the CA issues to the LwM2M and bootstrap listeners.
pub const SERVER_CN: &str = "steward";
use crate::registry::{PeerIdentity, Registration};
use crate::store::{Credential, SledStore, Store, StoreError};

/// Jobs the writer takes in one batch (one fsync) at most.
const MAX_BATCH: usize = 512;
/// The expiry timer looks at least this often (a new registration may expire earlier than the
/// deadline it was sleeping towards).
const EXPIRY_TICK: Duration = Duration::from_secs(1);
/// How long the writer waits for a driver's commander to be installed (it is, right after the
/// driver is spawned; this only covers a request answered before that line ran).
const COMMANDER_WAIT: Duration = Duration::from_secs(2);
/// The device-management timer looks at least this often (a request handed in while it sleeps
/// may have an earlier deadline).
const DM_TICK: Duration = Duration::from_millis(100);
/// The device-management timer's first tick comes this long after start (see "Restart").
const DM_START_GRACE: Duration = Duration::from_millis(250);

type CoapStack = Stack<SocketAddr>;
type Shared = Arc<Mutex<Lwm2mServer>>;

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot open the store in {}: {source}", path.display())]
    OpenStore { path: PathBuf, source: StoreError },
    #[error("cannot read the stored registrations: {0}")]
    ReadStore(StoreError),
    #[error("cannot listen for CoAP on {addr}: {source}")]
    BindCoap {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen for CoAPs on {addr}: {source}")]
    BindCoaps { addr: SocketAddr, source: DtlsError },
    #[error("cannot listen for HTTP on {addr}: {source}")]
    BindHttp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("DTLS certificate mode: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot start the store writer: {0}")]
    Writer(std::io::Error),
    #[error("{0} failed")]
    Task(&'static str),
    #[error("cannot flush the store at shutdown: {0}")]
    Flush(StoreError),
    #[error("the CA in the data directory: {0}")]
    Pki(String),
    #[error("the plugin host: {0}")]
    Plugins(String),
}

/// A running server; stop it with [`RunningServer::shutdown`] (dropping it stops the listeners
/// too, without waiting).
pub struct RunningServer {
    coap: SocketAddr,
    coaps: SocketAddr,
    store: Arc<SledStore>,
    lwm2m: Shared,
    udp: Option<(Handle<CoapStack>, JoinHandle<CoapStack>)>,
    dtls: Option<(Handle<CoapStack>, JoinHandle<CoapStack>)>,
    expiry: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    dm_timer: Option<JoinHandle<()>>,
    writer: Option<std::thread::JoinHandle<()>>,
    restored: usize,
    restored_queue: Vec<RestoredRequest>,
    hub: Arc<Hub>,
    bootstrap: Option<bootstrap::BootstrapListeners>,
    http: Option<http::HttpServer>,
    pki: Option<PkiService>,
    plugins: Dispatcher,
}

/// Opens the store, restores the registrations, and starts the listeners, the expiry timer and
/// the store writer. Must run inside a tokio runtime.
pub async fn start(config: &Config) -> Result<RunningServer, RuntimeError> {
    start_with(config, DmConfig::default()).await
}

/// [`start`] with device-management settings (the queue-mode awake window, queue sizes).
pub async fn start_with(config: &Config, dm: DmConfig) -> Result<RunningServer, RuntimeError> {
    let dir = config.data_dir.clone();
    let opened = tokio::task::spawn_blocking(move || {
        let store = SledStore::open(&dir).map_err(|source| RuntimeError::OpenStore {
            path: dir.clone(),
            source,
        })?;
        let stored = store.registrations().map_err(RuntimeError::ReadStore)?;
        let queued = store.all_queued().map_err(RuntimeError::ReadStore)?;
        let mut observations = Vec::new();
        for registration in &stored {
            observations.extend(
                store
                    .observations(&registration.endpoint)
                    .map_err(RuntimeError::ReadStore)?,
            );
        }
        Ok::<_, RuntimeError>((store, stored, queued, observations))
    })
    .await
    .map_err(|_| RuntimeError::Task("opening the store"))??;
    let (store, stored, queued, observations) = opened;
    let store = Arc::new(store);
    let pki = {
        let store = Arc::clone(&store);
        let dir = config.data_dir.clone();
        let settings = config
            .pki
            .settings()
            .map_err(|e| RuntimeError::Pki(e.to_string()))?;
        tokio::task::spawn_blocking(move || PkiService::load(&dir, store, settings))
            .await
            .map_err(|_| RuntimeError::Task("loading the CA"))?
            .map_err(|e| RuntimeError::Pki(e.to_string()))?
    };

    // Plugins load before the device-management service so that the models of the objects
    // they own type requests and answers from the first registration on.
    let plugin_host = {
        let host_config = config.plugins.host_config(&config.data_dir);
        let store = Arc::clone(&store);
        let pki = pki.clone();
        tokio::task::spawn_blocking(move || {
            let host = PluginHost::new(host_config, Some(store), pki)
                .map_err(|e| RuntimeError::Plugins(e.to_string()))?;
            let report = host.load();
            tracing::info!(loaded = ?report.loaded, refused = report.refused.len(), "plugins loaded");
            Ok::<_, RuntimeError>(Arc::new(host))
        })
        .await
        .map_err(|_| RuntimeError::Task("loading the plugins"))??
    };
    let offers = {
        let host = Arc::clone(&plugin_host);
        tokio::task::spawn_blocking(move || Arc::new(PluginOffers::load(host, unix_ms())))
            .await
            .map_err(|_| RuntimeError::Task("loading the bootstrap offers"))?
    };
    let mut models = ModelRegistry::core();
    for model in plugin_host.models() {
        models.insert(model);
    }

    let mut server = Lwm2mServer::new(ServerConfig {
        allow_unsecured: config.allow_unsecured,
        default_lifetime: config.default_lifetime,
        expiry_grace_ms: config.expiry_grace_secs.saturating_mul(1000),
        id_seed: random_seed(),
    });
    let restored = stored.len();
    for issue in server.restore(stored) {
        tracing::warn!(
            endpoint = %issue.endpoint,
            id = %issue.id,
            problem = %issue.problem,
            "stored registration restored with a problem"
        );
    }
    tracing::info!(
        restored,
        data_dir = %config.data_dir.display(),
        "registrations restored from the store"
    );
    let lwm2m: Shared = Arc::new(Mutex::new(server));
    let hub = Arc::new(Hub::new(
        Arc::clone(&lwm2m),
        DeviceRequests::new(dm, models),
    ));
    let (restored_queue, unreadable) = hub.restore(Instant::now(), unix_ms(), queued, observations);
    tracing::info!(
        queued = restored_queue.len(),
        expired = restored_queue.iter().filter(|r| r.expired).count(),
        "queued requests restored from the store"
    );
    let queue_ids: HashMap<Ticket, (String, u64)> = restored_queue
        .iter()
        .map(|r| (r.ticket, (r.endpoint.clone(), r.queue_id)))
        .collect();
    if !unreadable.is_empty() {
        let store = Arc::clone(&store);
        let dropped = tokio::task::spawn_blocking(move || {
            for (q, problem) in unreadable {
                tracing::error!(endpoint = %q.endpoint, queue_id = q.id, %problem, "unreadable queued request dropped from the store");
                store
                    .queue_remove(&q.endpoint, q.id)
                    .map_err(RuntimeError::ReadStore)?;
            }
            Ok::<_, RuntimeError>(())
        })
        .await
        .map_err(|_| RuntimeError::Task("dropping unreadable queued requests"))?;
        dropped?;
    }

    let (jobs, jobs_rx) = std_mpsc::channel::<Job>();
    let writer = {
        let store = Arc::clone(&store);
        let lwm2m = Arc::clone(&lwm2m);
        let hub = Arc::clone(&hub);
        std::thread::Builder::new()
            .name("steward-store".into())
            .spawn(move || write_jobs(&*store, &lwm2m, &hub, &jobs_rx, queue_ids))
            .map_err(RuntimeError::Writer)?
    };
    {
        let jobs = jobs.clone();
        hub.set_sink(Box::new(move |change| {
            let _ = jobs.send(Job {
                events: Vec::new(),
                reply: None,
                change: Some(change),
            });
        }));
    }
    // If a listener cannot start, the hub must let go of its job sender, or the writer
    // (and the store it holds open) would never stop.
    let mut guard = CloseOnDrop(Some(Arc::clone(&hub)));

    // COAPLOG: what the LwM2M stacks send and receive, while the API watches (api::events).
    let coap_log = crate::api::events::coap_log_channel();

    // Plain CoAP.
    let addr = config.coap_addr();
    let (socket, _) = udp::bind(&UdpConfig {
        bind: addr,
        ..UdpConfig::default()
    })
    .map_err(|source| RuntimeError::BindCoap { addr, source })?;
    let router = Router::new(Arc::clone(&lwm2m), Arc::clone(&hub), jobs.clone(), "coap");
    let responder = router.responder.clone();
    let mut stack = Stack::new(stack_config());
    stack.set_tracer(Some(coap_tracer(&coap_log)));
    let (handle, task) = udp::spawn(socket, stack, move |stack, now, ev| {
        router.route(stack, now, ev, Some(PeerIdentity::Unsecured));
    })
    .map_err(|source| RuntimeError::BindCoap { addr, source })?;
    responder.install(handle.commander());
    hub.install(Transport::Coap, handle.commander());
    let coap = handle.local;
    let udp = (handle, task);

    // CoAP over DTLS.
    let addr = config.coaps_addr();
    let mut dtls_config = DtlsConfig::new(addr);
    let mut credentials = StoreCredentials::new(Arc::clone(&store) as Arc<dyn Store>);
    let mode = crate::tls::certificate_mode(config)?;
    // With a CA the server's certificate comes from it (unless one is configured), so devices
    // that enrolled over EST trust it through the CA they got from /crts.
    let pki_certificate = match &pki {
        Some(pki) => Some(pki_server_certificate(pki)?),
        None => None,
    };
    match (&pki, mode) {
        (Some(pki), mode) => {
            let (server, extra_cas) = match mode {
                Some(m) if config.dtls_certificate.is_some() => (Some(m.server), m.device_cas),
                Some(m) => (pki_certificate.clone(), m.device_cas),
                None => (pki_certificate.clone(), Vec::new()),
            };
            credentials = credentials.with_operational_pki(pki.clone(), extra_cas);
            dtls_config.certificate = server;
        }
        (None, Some(mode)) => {
            credentials = credentials.with_chain_verifier(mode.chain_verifier());
            dtls_config.certificate = Some(mode.server);
        }
        (None, None) => {}
    }
    let (dtls_server, inbound) = DtlsServer::bind(dtls_config, Arc::new(credentials))
        .map_err(|source| RuntimeError::BindCoaps { addr, source })?;
    let dtls_counters = dtls_server.counters();
    let router = Router::new(Arc::clone(&lwm2m), Arc::clone(&hub), jobs.clone(), "coaps");
    let responder = router.responder.clone();
    // The stack sees decrypted CoAP, which is what Leshan logs.
    let mut stack = Stack::new(stack_config());
    stack.set_tracer(Some(coap_tracer(&coap_log)));
    let (handle, task) = steward_transport::dtls::spawn(
        dtls_server,
        inbound,
        stack,
        move |stack, now, ev, peers: &Peers| {
            let identity = match &ev {
                Event::Request { id, .. } => peers
                    .identity(id.peer())
                    .and_then(|identity| peer_identity(identity)),
                _ => None,
            };
            router.route(stack, now, ev, identity);
        },
    );
    responder.install(handle.commander());
    hub.install(Transport::Coaps, handle.commander());
    let coaps = handle.local;
    let dtls = (handle, task);

    let (stop, stopped) = watch::channel(false);
    let (bootstrap_events, _) = tokio::sync::broadcast::channel(1024);
    let (bootstrap_requests, bootstrap_requests_rx) = tokio::sync::broadcast::channel(1024);
    let bootstrap = bootstrap::start(
        config.bs_coap_addr(),
        config.bs_coaps_addr(),
        config.allow_unsecured,
        Arc::clone(&store),
        pki.clone(),
        pki_certificate,
        stopped.clone(),
        bootstrap_events.clone(),
        bootstrap_requests,
        Arc::clone(&offers),
    )?;
    let plugins = Dispatcher::start(
        plugin_host,
        offers,
        Devices::new(Arc::clone(&hub)),
        Some(bootstrap_requests_rx),
        stopped.clone(),
    );
    let api = crate::api::ApiState {
        devices: Devices::new(Arc::clone(&hub)),
        store: Arc::clone(&store) as Arc<dyn Store>,
        pki: pki.clone(),
        http_token: config.http_token.clone(),
        shutdown: crate::api::events::ApiShutdown::default(),
        delayed: crate::api::clients::delayed_channel(),
        bootstrap_events,
        coap_log,
        plugins: Some(plugins.clone()),
        dtls: vec![
            ("lwm2m", dtls_counters),
            ("bootstrap", bootstrap.dtls_counters.clone()),
        ],
        endpoints: crate::api::ServerEndpoints {
            coap,
            coaps,
            bs_coap: bootstrap.coap,
            bs_coaps: bootstrap.coaps,
        },
    };
    let http = http::start(config.http_addr(), api)
        .await
        .map_err(|source| RuntimeError::BindHttp {
            addr: config.http_addr(),
            source,
        })?;
    let expiry = tokio::spawn(expire(Arc::clone(&lwm2m), jobs, stopped.clone()));
    let dm_timer = tokio::spawn(dm_timer(Arc::clone(&hub), stopped));

    guard.0 = None;
    tracing::info!(%coap, %coaps, allow_unsecured = config.allow_unsecured, "steward serving");
    Ok(RunningServer {
        coap,
        coaps,
        store,
        lwm2m,
        udp: Some(udp),
        dtls: Some(dtls),
        expiry: Some((stop, expiry)),
        dm_timer: Some(dm_timer),
        writer: Some(writer),
        restored,
        restored_queue,
        hub,
        bootstrap: Some(bootstrap),
        http: Some(http),
        pki,
        plugins,
    })
}

/// The LwM2M server's certificate from the CA, as the DTLS layer takes it.
fn pki_server_certificate(pki: &PkiService) -> Result<ServerCertificate, RuntimeError> {
    let (chain_pem, key_pem, _) = pki
        .server_certificate(SERVER_CN)
        .map_err(|e| RuntimeError::Pki(e.to_string()))?;
    ServerCertificate::from_pem(&chain_pem, &key_pem)
        .map_err(|e| RuntimeError::Pki(format!("server certificate: {e}")))
}

impl RunningServer {
    /// Where plain CoAP listens (the bound port when the configured one was 0).
    pub fn coap_addr(&self) -> SocketAddr {
        self.coap
    }

    /// Where CoAPs (DTLS) listens.
    pub fn coaps_addr(&self) -> SocketAddr {
        self.coaps
    }

    /// The store, for tests and tools (provisioning PSKs, reading registrations).
    pub fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store) as Arc<dyn Store>
    }

    /// How many registrations were read back from the store at start.
    pub fn restored(&self) -> usize {
        self.restored
    }

    /// The queued downlink requests read back from the store at start, with their tickets in
    /// this run (their outcomes come as `DeviceEvent::Completed` on `Devices::events`).
    pub fn restored_queue(&self) -> &[RestoredRequest] {
        &self.restored_queue
    }

    /// The registration the server holds in memory for an endpoint.
    pub fn registration(&self, endpoint: &str) -> Option<Registration> {
        lock(&self.lwm2m)
            .registrations()
            .by_endpoint(endpoint)
            .map(|c| c.registration.clone())
    }

    /// The device-management handle: requests to devices, notifications, Send, presence.
    pub fn devices(&self) -> Devices {
        Devices::new(Arc::clone(&self.hub))
    }

    /// Where the Bootstrap-Server listens for plain CoAP.
    pub fn bs_coap_addr(&self) -> Option<SocketAddr> {
        self.bootstrap.as_ref().map(|b| b.coap)
    }

    /// Where the Bootstrap-Server and EST-coaps listen for CoAPs.
    pub fn bs_coaps_addr(&self) -> Option<SocketAddr> {
        self.bootstrap.as_ref().map(|b| b.coaps)
    }

    /// Where the HTTP listener (OCSP, CRL) is.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|h| h.local)
    }

    /// The CA service, when the data directory has a CA.
    /// The plugin host and its dispatcher.
    pub fn plugins(&self) -> &Dispatcher {
        &self.plugins
    }

    pub fn pki(&self) -> Option<&PkiService> {
        self.pki.as_ref()
    }

    /// How many registrations the server holds in memory.
    pub fn registration_count(&self) -> usize {
        lock(&self.lwm2m).registrations().len()
    }

    /// Stops the listeners and the timer, lets the writer finish the writes already queued
    /// (their responses are not sent any more), and flushes the store.
    pub async fn shutdown(mut self) -> Result<(), RuntimeError> {
        let mut failed = None;
        if let Some(bootstrap) = self.bootstrap.take() {
            bootstrap.shutdown().await;
        }
        if let Some(http) = self.http.take() {
            http.shutdown().await;
        }
        for (name, driver) in [("coap", self.udp.take()), ("coaps", self.dtls.take())] {
            if let Some((handle, task)) = driver {
                handle.shutdown();
                if task.await.is_err() {
                    tracing::error!(listener = name, "listener task failed");
                    failed = Some(RuntimeError::Task("a listener"));
                }
            }
        }
        if let Some((stop, task)) = self.expiry.take() {
            let _ = stop.send(true);
            if task.await.is_err() {
                failed = Some(RuntimeError::Task("the expiry timer"));
            }
        }
        if let Some(task) = self.dm_timer.take()
            && task.await.is_err()
        {
            failed = Some(RuntimeError::Task("the device-management timer"));
        }
        // The stop signal above ended the plugin routing loops; the workers finish their
        // current event and let go of the store.
        self.plugins.shutdown().await;
        // Callers still waiting get ServerStopped; the hub lets go of its job sender.
        self.hub.close();
        // Every job sender lived in the listeners and the timer, which are gone: the writer
        // drains what is queued and ends.
        if let Some(writer) = self.writer.take() {
            let joined = tokio::task::spawn_blocking(move || writer.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                failed = Some(RuntimeError::Task("the store writer"));
            }
        }
        let store = Arc::clone(&self.store);
        let flushed = tokio::task::spawn_blocking(move || store.flush())
            .await
            .map_err(|_| RuntimeError::Task("the final flush"))?;
        flushed.map_err(RuntimeError::Flush)?;
        tracing::info!("steward stopped");
        failed.map_or(Ok(()), Err)
    }
}

/// Closes the hub when `start` fails half-way.
struct CloseOnDrop(Option<Arc<Hub>>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(hub) = self.0.take() {
            hub.close();
        }
    }
}

/// DTLS credentials: PSK keys from the store by identity
/// ([`Store::security_by_psk_identity`]), device certificate chains by the configured
/// [`ChainCheck`] (refused without one).
pub struct StoreCredentials {
    store: Arc<dyn Store>,
    chains: ChainCheck,
}

/// Who judges device certificate chains.
enum ChainCheck {
    /// No certificate mode: every chain is refused.
    None,
    /// The configured device CAs (`--device-ca`).
    Verifier(ChainVerifier),
    /// LwM2M server port with a CA: operational certificates of ours (not revoked), or
    /// chains to the configured device CAs.
    Operational {
        pki: PkiService,
        extra_cas: Vec<Vec<u8>>,
    },
    /// Bootstrap/EST port: factory certificates of the manufacturers, or ours.
    Bootstrap(PkiService),
}

impl StoreCredentials {
    pub fn new(store: Arc<dyn Store>) -> StoreCredentials {
        StoreCredentials {
            store,
            chains: ChainCheck::None,
        }
    }

    /// Accepts device certificates that this verifier accepts.
    pub fn with_chain_verifier(mut self, verifier: ChainVerifier) -> StoreCredentials {
        self.chains = ChainCheck::Verifier(verifier);
        self
    }

    /// Accepts operational certificates issued by our CA, and chains to `extra_cas`.
    pub fn with_operational_pki(
        mut self,
        pki: PkiService,
        extra_cas: Vec<Vec<u8>>,
    ) -> StoreCredentials {
        self.chains = ChainCheck::Operational { pki, extra_cas };
        self
    }

    /// Accepts what the CA accepts for bootstrap and enrolment.
    pub fn with_bootstrap_pki(mut self, pki: PkiService) -> StoreCredentials {
        self.chains = ChainCheck::Bootstrap(pki);
        self
    }
}

impl Credentials for StoreCredentials {
    fn psk(&self, identity: &[u8]) -> Option<Vec<u8>> {
        match self.store.security_by_psk_identity(identity) {
            Ok(Some(info)) => match info.credential {
                Credential::Psk { key, .. } => Some(key),
                _ => None,
            },
            Ok(None) => {
                tracing::debug!(
                    identity = %String::from_utf8_lossy(identity),
                    "DTLS handshake with an unknown PSK identity"
                );
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "PSK lookup in the store failed");
                None
            }
        }
    }

    fn verify_client_chain(&self, chain: &[Vec<u8>]) -> Result<Identity, CredentialError> {
        let verified = match &self.chains {
            ChainCheck::None => Err(CredentialError::CertificatesNotConfigured),
            ChainCheck::Verifier(verifier) => verifier.verify(chain),
            ChainCheck::Operational { pki, extra_cas } => {
                pki.verify_operational_chain(chain, extra_cas)
            }
            ChainCheck::Bootstrap(pki) => pki.verify_bootstrap_chain(chain),
        };
        verified.inspect_err(|e| {
            tracing::info!(error = %e, "device certificate refused");
        })
    }
}

/// A registration change waiting to be made durable, with the response that acknowledges it.
struct Job {
    events: Vec<DomainEvent>,
    reply: Option<PendingReply>,
    /// An observation or queued request to record or forget (no registration change then).
    change: Option<StoreChange>,
}

struct PendingReply {
    to: Incoming<SocketAddr>,
    response: Response,
    responder: Responder,
}

/// Sends responses through a driver from outside its task.
#[derive(Clone, Default)]
struct Responder(Arc<OnceLock<Commander<CoapStack>>>);

impl Responder {
    fn install(&self, commander: Commander<CoapStack>) {
        let _ = self.0.set(commander);
    }

    fn send(&self, to: Incoming<SocketAddr>, response: Response) {
        let deadline = Instant::now() + COMMANDER_WAIT;
        let commander = loop {
            match self.0.get() {
                Some(c) => break c,
                None if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                None => {
                    tracing::warn!(peer = %to.peer(), "listener not ready: response dropped");
                    return;
                }
            }
        };
        let peer = to.peer();
        let sent = commander.command(move |stack, now| {
            if let Err(e) = stack.respond(now, to, response) {
                tracing::debug!(%peer, error = %e, "response not sent");
            }
        });
        if !sent {
            tracing::debug!(%peer, "listener stopped: response dropped");
        }
    }
}

/// Routes a listener's events: `/rd` to the Registration interface, `/dp` to Send, answers to
/// our requests to the device-management hub, every other request 4.04.
struct Router {
    lwm2m: Shared,
    hub: Arc<Hub>,
    jobs: std_mpsc::Sender<Job>,
    responder: Responder,
    transport: &'static str,
}

impl Router {
    fn new(
        lwm2m: Shared,
        hub: Arc<Hub>,
        jobs: std_mpsc::Sender<Job>,
        transport: &'static str,
    ) -> Router {
        Router {
            lwm2m,
            hub,
            jobs,
            responder: Responder::default(),
            transport,
        }
    }

    /// `identity` is the peer's authenticated identity (`Unsecured` on plain CoAP; `None` when
    /// a DTLS session has no usable one).
    fn route(
        &self,
        stack: &mut CoapStack,
        now: Instant,
        event: Event<SocketAddr>,
        identity: Option<PeerIdentity>,
    ) {
        let (id, request) = match event {
            Event::Request { id, request } => (id, request),
            // Answers to our requests and notifications.
            other => {
                self.hub.on_stack_event(now, &other);
                return;
            }
        };
        let peer = id.peer();
        if is_send(&request) {
            let Some(identity) = identity else {
                tracing::warn!(%peer, "DTLS session without a usable identity: 4.01");
                respond(stack, now, id, Response::new(Code::UNAUTHORIZED));
                return;
            };
            let response = self
                .hub
                .on_send(now, &peer.to_string(), &identity, &request);
            respond(stack, now, id, response);
            return;
        }
        if !is_registration_path(&request) {
            tracing::debug!(
                %peer,
                transport = self.transport,
                method = ?request.method,
                path = %request.path_string(),
                "no such resource: 4.04"
            );
            respond(stack, now, id, Response::new(Code::NOT_FOUND));
            return;
        }
        let Some(identity) = identity else {
            tracing::warn!(%peer, "DTLS session without a usable identity: 4.01");
            respond(stack, now, id, Response::new(Code::UNAUTHORIZED));
            return;
        };
        let who = Peer {
            address: peer.to_string(),
            identity,
        };
        let (response, events) = lock(&self.lwm2m).handle_request(unix_ms(), &who, &request);
        if events.is_empty() {
            // Refused: nothing changed, nothing to make durable.
            tracing::debug!(
                %peer,
                transport = self.transport,
                code = %response.code,
                reason = %String::from_utf8_lossy(&response.payload),
                "registration request refused"
            );
            respond(stack, now, id, response);
            return;
        }
        for event in &events {
            log_event(event, self.transport);
        }
        let job = Job {
            events,
            change: None,
            reply: Some(PendingReply {
                to: id,
                response,
                responder: self.responder.clone(),
            }),
        };
        if self.jobs.send(job).is_err() {
            // The writer is gone (shutting down): the change cannot be made durable, so it is
            // not acknowledged.
            tracing::warn!(%peer, "store writer stopped: 5.03");
            respond(stack, now, id, Response::new(Code::SERVICE_UNAVAILABLE));
        }
    }
}

fn respond(stack: &mut CoapStack, now: Instant, id: Incoming<SocketAddr>, response: Response) {
    if let Err(e) = stack.respond(now, id, response) {
        tracing::debug!(peer = %id.peer(), error = %e, "response not sent");
    }
}

fn log_event(event: &DomainEvent, transport: &str) {
    match event {
        DomainEvent::Registered {
            registration,
            replaced,
        } => tracing::debug!(
            endpoint = %registration.endpoint,
            id = %registration.id,
            transport,
            replaced = replaced.is_some(),
            "register"
        ),
        DomainEvent::Updated { current, .. } => {
            tracing::debug!(endpoint = %current.endpoint, id = %current.id, "update");
        }
        DomainEvent::Deregistered { registration } => {
            tracing::debug!(endpoint = %registration.endpoint, id = %registration.id, "de-register");
        }
        DomainEvent::Expired { registration } => {
            tracing::info!(endpoint = %registration.endpoint, id = %registration.id, "expired");
        }
    }
}

/// The writer thread: makes jobs durable in order, then sends their responses and tells the
/// device-management hub (whose queued requests may go once the device's uplink is stored).
fn write_jobs(
    store: &dyn Store,
    lwm2m: &Mutex<Lwm2mServer>,
    hub: &Hub,
    jobs: &std_mpsc::Receiver<Job>,
    mut queue_ids: HashMap<Ticket, (String, u64)>,
) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let outcomes = persist(store, &batch);
        for (job, outcome) in batch.into_iter().zip(outcomes) {
            match outcome {
                Ok(()) => {
                    if let Some(r) = job.reply {
                        r.responder.send(r.to, r.response);
                    }
                    if !job.events.is_empty() {
                        hub.on_domain_events(&job.events);
                    }
                    if let Some(change) = job.change {
                        write_change(store, &mut queue_ids, change);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "store write failed: change not acknowledged");
                    for endpoint in endpoints(&job.events) {
                        let stored = store.registration(endpoint).unwrap_or_else(|e| {
                            tracing::warn!(%endpoint, error = %e, "store read failed");
                            None
                        });
                        lock(lwm2m).reconcile(endpoint, stored);
                    }
                    if let Some(r) = job.reply {
                        let response = Response::new(Code::INTERNAL_SERVER_ERROR)
                            .with_diagnostic("the registration could not be stored");
                        r.responder.send(r.to, response);
                    }
                }
            }
        }
    }
}

/// Applies the jobs' changes in order: consecutive registration writes as one batch (one
/// fsync), removals one by one. One outcome per job.
fn persist(store: &dyn Store, jobs: &[Job]) -> Vec<Result<(), String>> {
    let mut outcomes: Vec<Result<(), String>> = jobs.iter().map(|_| Ok(())).collect();
    let mut puts: Vec<(usize, Registration)> = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        for event in &job.events {
            match event {
                DomainEvent::Registered { registration, .. }
                | DomainEvent::Updated {
                    current: registration,
                    ..
                } => puts.push((i, registration.clone())),
                DomainEvent::Deregistered { registration }
                | DomainEvent::Expired { registration } => {
                    put_all(store, &mut puts, &mut outcomes);
                    if let Err(e) = remove(store, registration) {
                        fail(&mut outcomes, i, e.to_string());
                    }
                }
            }
        }
    }
    put_all(store, &mut puts, &mut outcomes);
    outcomes
}

fn put_all(
    store: &dyn Store,
    puts: &mut Vec<(usize, Registration)>,
    outcomes: &mut [Result<(), String>],
) {
    if puts.is_empty() {
        return;
    }
    let (owners, regs): (Vec<usize>, Vec<Registration>) = std::mem::take(puts).into_iter().unzip();
    match store.put_registrations(&regs) {
        Ok(each) => {
            for (i, result) in owners.into_iter().zip(each) {
                if let Err(e) = result {
                    fail(outcomes, i, e.to_string());
                }
            }
        }
        Err(e) => {
            let message = e.to_string();
            for i in owners {
                fail(outcomes, i, message.clone());
            }
        }
    }
}

/// Removes a registration if the store still holds that one (not a newer registration of the
/// same endpoint).
fn remove(store: &dyn Store, registration: &Registration) -> Result<(), StoreError> {
    match store.registration(&registration.endpoint)? {
        Some(stored) if stored.id == registration.id => {
            store.remove_registration(&registration.endpoint)?;
            Ok(())
        }
        _ => Ok(()),
    }
}

fn fail(outcomes: &mut [Result<(), String>], i: usize, message: String) {
    if let Some(o) = outcomes.get_mut(i)
        && o.is_ok()
    {
        *o = Err(message);
    }
}

fn endpoints(events: &[DomainEvent]) -> Vec<&str> {
    let mut out: Vec<&str> = events
        .iter()
        .map(|e| match e {
            DomainEvent::Registered { registration, .. }
            | DomainEvent::Deregistered { registration }
            | DomainEvent::Expired { registration } => registration.endpoint.as_str(),
            DomainEvent::Updated { current, .. } => current.endpoint.as_str(),
        })
        .collect();
    out.dedup();
    out
}

/// The expiry timer: expires registrations when their deadline passes and has them removed
/// from the store.
async fn expire(lwm2m: Shared, jobs: std_mpsc::Sender<Job>, mut stop: watch::Receiver<bool>) {
    loop {
        let next = lock(&lwm2m).poll_timeout();
        let wait = next.map_or(EXPIRY_TICK, |at| {
            Duration::from_millis(at.saturating_sub(unix_ms())).min(EXPIRY_TICK)
        });
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        let events = lock(&lwm2m).handle_timeout(unix_ms());
        if events.is_empty() {
            continue;
        }
        for event in &events {
            log_event(event, "timer");
        }
        if jobs
            .send(Job {
                events,
                reply: None,
                change: None,
            })
            .is_err()
        {
            return;
        }
    }
}

/// Records or forgets an observation or a queued request. A failure is logged: the
/// observation or request itself lives on in memory, only its record after a restart is
/// affected. `queue_ids` maps the service's tickets to the store's queue IDs.
fn write_change(
    store: &dyn Store,
    queue_ids: &mut HashMap<Ticket, (String, u64)>,
    change: StoreChange,
) {
    match change {
        StoreChange::PutObservation(record) => {
            if let Err(e) = store.put_observation(&record) {
                tracing::warn!(endpoint = %record.endpoint, error = %e, "observation not stored");
            }
        }
        StoreChange::RemoveObservation { endpoint, token } => {
            if let Err(e) = store.remove_observation(&endpoint, &token) {
                tracing::warn!(%endpoint, error = %e, "observation not removed from the store");
            }
        }
        StoreChange::Enqueue {
            ticket,
            endpoint,
            record,
            created_ms,
            expires_ms,
        } => match store.enqueue(&endpoint, record, created_ms, expires_ms) {
            Ok(stored) => {
                queue_ids.insert(ticket, (endpoint, stored.id));
            }
            Err(e) => {
                tracing::warn!(%endpoint, %ticket, error = %e, "queued request not stored");
            }
        },
        StoreChange::Dequeue { ticket, endpoint } => match queue_ids.remove(&ticket) {
            Some((stored_endpoint, id)) => {
                if let Err(e) = store.queue_remove(&stored_endpoint, id) {
                    tracing::warn!(%endpoint, %ticket, error = %e, "queued request not removed from the store");
                }
            }
            None => tracing::debug!(%endpoint, %ticket, "queued request was not stored"),
        },
    }
}

/// The device-management timer: request deadlines, queued requests expiring, presence.
async fn dm_timer(hub: Arc<Hub>, mut stop: watch::Receiver<bool>) {
    tokio::select! {
        () = tokio::time::sleep(DM_START_GRACE) => {}
        _ = stop.changed() => return,
    }
    loop {
        let now = Instant::now();
        let wait = hub
            .poll_timeout()
            .map_or(DM_TICK, |at| at.saturating_duration_since(now).min(DM_TICK));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        hub.handle_timeout(Instant::now());
    }
}

fn peer_identity(identity: &Identity) -> Option<PeerIdentity> {
    match identity {
        Identity::Psk { identity } => Some(PeerIdentity::Psk(identity.clone())),
        Identity::X509 {
            common_name: Some(cn),
            ..
        } => Some(PeerIdentity::X509 {
            common_name: cn.clone(),
        }),
        Identity::X509 {
            common_name: None, ..
        } => None,
    }
}

/// Sends each datagram to `log`, but only while someone listens: otherwise it costs one
/// atomic load.
fn coap_tracer(
    log: &tokio::sync::broadcast::Sender<crate::api::events::CoapLogRecord>,
) -> steward_coap::stack::TraceFn<SocketAddr> {
    let log = log.clone();
    Box::new(move |direction, peer, datagram| {
        if log.receiver_count() == 0 {
            return;
        }
        let timestamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let _ = log.send(crate::api::events::CoapLogRecord {
            incoming: direction == steward_coap::stack::Direction::Incoming,
            peer,
            datagram: datagram.to_vec(),
            timestamp,
        });
    })
}

fn stack_config() -> StackConfig {
    StackConfig {
        endpoint: endpoint::Config {
            seed: random_seed(),
            ..endpoint::Config::default()
        },
        ..StackConfig::default()
    }
}

/// A seed from the process's hash randomness (no RNG crate needed for non-secret IDs).
fn random_seed() -> u64 {
    RandomState::new().hash_one(SystemTime::now())
}

fn lock(m: &Mutex<Lwm2mServer>) -> MutexGuard<'_, Lwm2mServer> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Lwm2mVersion;
    use crate::store::SecurityInfo;

    fn temp_store(name: &str) -> (PathBuf, Arc<SledStore>) {
        let dir = std::env::temp_dir().join(format!(
            "steward-runtime-{name}-{}-{}",
            std::process::id(),
            random_seed()
        ));
        let store = SledStore::open(&dir).unwrap_or_else(|e| panic!("{e}"));
        (dir, Arc::new(store))
    }

    fn reg(endpoint: &str, id: &str) -> Registration {
        Registration {
            id: id.into(),
            endpoint: endpoint.into(),
            version: Lwm2mVersion::V1_1,
            lifetime: 60,
            binding: "U".into(),
            queue_mode: false,
            sms: None,
            object_links: "</1/0>,</3/0>".into(),
            address: "127.0.0.1:1".into(),
            identity: PeerIdentity::Unsecured,
            registered_at_ms: 1_000,
            last_update_ms: 1_000,
        }
    }

    fn job(events: Vec<DomainEvent>) -> Job {
        Job {
            events,
            reply: None,
            change: None,
        }
    }

    #[test]
    fn store_credentials_answer_psk_identities() {
        let (dir, store) = temp_store("psk");
        store
            .put_security(&SecurityInfo {
                endpoint: "dev".into(),
                credential: Credential::Psk {
                    identity: b"dev".to_vec(),
                    key: vec![1, 2, 3],
                },
            })
            .unwrap_or_else(|e| panic!("{e}"));
        let creds = StoreCredentials::new(Arc::clone(&store) as Arc<dyn Store>);
        assert_eq!(creds.psk(b"dev"), Some(vec![1, 2, 3]));
        assert_eq!(creds.psk(b"other"), None);
        assert_eq!(
            creds.verify_client_chain(&[]),
            Err(CredentialError::CertificatesNotConfigured)
        );
        drop((creds, store));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn persist_applies_jobs_in_order() {
        let (dir, store) = temp_store("persist");
        let a1 = reg("a", "id-a1");
        let mut a1_updated = a1.clone();
        a1_updated.lifetime = 120;
        let b = reg("b", "id-b");
        let a2 = reg("a", "id-a2");
        let jobs = vec![
            job(vec![DomainEvent::Registered {
                registration: a1.clone(),
                replaced: None,
            }]),
            job(vec![DomainEvent::Updated {
                previous: a1.clone(),
                current: a1_updated.clone(),
            }]),
            job(vec![DomainEvent::Registered {
                registration: b.clone(),
                replaced: None,
            }]),
            // Removing b flushes the writes before it.
            job(vec![DomainEvent::Deregistered {
                registration: b.clone(),
            }]),
            job(vec![DomainEvent::Registered {
                registration: a2.clone(),
                replaced: Some(a1_updated.clone()),
            }]),
            // A stale expiry of a1 must not remove a2.
            job(vec![DomainEvent::Expired {
                registration: a1_updated,
            }]),
        ];
        let outcomes = persist(&*store, &jobs);
        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
        let stored = store.registrations().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stored, vec![a2]);
        assert!(store.verify().is_ok());
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_failed_write_fails_only_its_job() {
        let (dir, store) = temp_store("conflict");
        // b claims a's registration ID: the store refuses it as a conflict.
        let a = reg("a", "same-id");
        let b = reg("b", "same-id");
        let jobs = vec![
            job(vec![DomainEvent::Registered {
                registration: a.clone(),
                replaced: None,
            }]),
            job(vec![DomainEvent::Registered {
                registration: b,
                replaced: None,
            }]),
        ];
        let outcomes = persist(&*store, &jobs);
        assert!(outcomes[0].is_ok());
        assert!(
            outcomes[1]
                .as_ref()
                .is_err_and(|e| e.contains("belongs to endpoint")),
            "{outcomes:?}"
        );
        assert_eq!(
            store.registrations().unwrap_or_else(|e| panic!("{e}")),
            vec![a]
        );
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }
}
