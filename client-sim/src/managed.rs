//! One device on real sockets whose transport follows it from its bootstrap server to its
//! LwM2M server: what `steward-client --bootstrap URI` / `--state-dir DIR` runs, and what
//! `steward demo` runs in-process.
//!
//! A device talks to its bootstrap server and then to the LwM2M server the bootstrap
//! configured, each with its own security (NoSec → CoAP over UDP; PSK or X.509 from `/0` →
//! DTLS). A DTLS session is bound to one server, so whenever the server the device wants
//! (bootstrap server while bootstrapping, else its account) needs another transport than the
//! one running, the driver is stopped, the device taken back and a new driver started. Plain
//! UDP reaches any address, so NoSec → NoSec needs no switch.
//!
//! Which server and credentials the device wants is [`crate::transport::wanted`]: the factory
//! credentials ([`ManagedConfig::factory`]) for the bootstrap server, those the bootstrap
//! server wrote in /0 for the LwM2M server. Security Mode 4 (EST) enrols over the bootstrap
//! server's session before the switch, and the OCSP check of the server certificate runs
//! there too ([`crate::est`]).
//!
//! [`spawn`] starts the runner task and returns a [`ManagedDevice`]: its events
//! ([`ManagedEvent`]: the device's, its DTLS sessions', and which driver runs), a way to run a
//! command on the device in the current driver, and [`ManagedDevice::stop`] (De-register,
//! then close the socket).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use steward_coap::endpoint::Config as EndpointConfig;
use steward_coap::stack::StackConfig;
use steward_dtls::{ClientConfig, ClientCredentials};
use steward_transport::dtls_client::{Backoff, LinkEvent};
use steward_transport::udp::{self, UdpConfig};
use steward_transport::{Commander, Handle};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::bootstrap::{Security, ServerUri};
use crate::dtls::DtlsEvent;
use crate::est::{DEFAULT_EST_ROOT, EstConfig, OcspCheck};
use crate::registration::RegistrationEvent;
use crate::state::{CredentialPaths, StateStore};
use crate::transport::{self, TransportError};
use crate::{BootstrapServer, Client, DeviceConfig, DeviceEvent, ReenrolError, StateError};

/// How long [`ManagedDevice::stop`] waits for the De-register answer by default.
pub const DEFAULT_DEREGISTER_WAIT: Duration = Duration::from_secs(2);

/// How to run one managed device.
#[derive(Clone)]
pub struct ManagedConfig {
    /// The device. `server_uri` is the LwM2M server it is made with (used until a bootstrap
    /// or its persisted state gives it another account); `bootstrap` is filled in from
    /// [`ManagedConfig::bootstrap`] and the factory credentials.
    pub device: DeviceConfig,
    /// The address `device.server_uri` names.
    pub server: SocketAddr,
    /// Factory credentials (PSK or certificate): for a `coaps` bootstrap server, and for a
    /// `coaps` server URI without security in /0.
    pub factory: Option<ClientCredentials>,
    /// Bootstrap server URI (`coap://` or `coaps://`, an IP address or `localhost`): the
    /// device bootstraps when it has no usable LwM2M server account.
    pub bootstrap: Option<String>,
    /// With a bootstrap server: the EST root on it (RFC 9148).
    pub est_root: String,
    /// With a bootstrap server: whether (and where) the LwM2M server's certificate is checked
    /// with its OCSP responder before the device trusts it.
    pub ocsp: OcspCheck,
    /// Keep the device's state in `DIR/<endpoint>.json` across restarts.
    pub state_dir: Option<PathBuf>,
    /// The files the factory credentials came from, recorded with the state.
    pub credential_files: CredentialPaths,
    /// Re-enrol (EST `/sren`) the persisted certificate-mode account at start; needs a
    /// bootstrap server and a state with such an account.
    pub reenrol: bool,
    pub stack: StackConfig,
    /// DTLS handshake retry pacing.
    pub backoff: Backoff,
    /// How long [`ManagedDevice::stop`] waits for the De-register answer.
    pub deregister_wait: Duration,
}

impl ManagedConfig {
    /// `device` with server `server`, no factory credentials, no bootstrap server, no state;
    /// EST and OCSP at their defaults, a stack seeded from the endpoint name.
    pub fn new(device: DeviceConfig, server: SocketAddr) -> ManagedConfig {
        let stack = StackConfig {
            endpoint: EndpointConfig {
                seed: endpoint_seed(&device.endpoint),
                ..EndpointConfig::default()
            },
            ..StackConfig::default()
        };
        ManagedConfig {
            device,
            server,
            factory: None,
            bootstrap: None,
            est_root: DEFAULT_EST_ROOT.into(),
            ocsp: OcspCheck::default(),
            state_dir: None,
            credential_files: CredentialPaths::default(),
            reenrol: false,
            stack,
            backoff: Backoff::default(),
            deregister_wait: DEFAULT_DEREGISTER_WAIT,
        }
    }
}

/// What a managed device reports, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagedEvent {
    /// A driver started: DTLS with `addr`, or CoAP over UDP (which reaches any address;
    /// `addr` is the server wanted first).
    Driver { addr: SocketAddr, dtls: bool },
    /// The device's own event.
    Device(DeviceEvent),
    /// The DTLS session's.
    Link(LinkEvent),
    /// The device wants a server that cannot be named (the current driver keeps running).
    NoTarget { error: String },
}

/// Why a managed device could not start or stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum ManagedError {
    #[error("bootstrap server {uri}: {why}")]
    BootstrapUri { uri: String, why: String },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot re-enrol: {0}")]
    Reenrol(#[from] ReenrolError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("device task failed: {0}")]
    Task(String),
}

/// A running managed device. Dropping it stops the device without De-register.
pub struct ManagedDevice {
    state_loaded: bool,
    events: mpsc::UnboundedReceiver<ManagedEvent>,
    stop: Option<oneshot::Sender<()>>,
    current: CurrentDriver,
    task: JoinHandle<Result<Client<SocketAddr>, ManagedError>>,
}

/// Starts the device and its runner task (call inside a tokio runtime). Fails before
/// anything runs when the bootstrap URI is invalid, the state unreadable or a re-enrolment
/// impossible.
pub fn spawn(config: ManagedConfig) -> Result<ManagedDevice, ManagedError> {
    let ManagedConfig {
        mut device,
        server,
        factory,
        bootstrap,
        est_root,
        ocsp,
        state_dir,
        credential_files,
        reenrol,
        stack,
        backoff,
        deregister_wait,
    } = config;
    let endpoint = device.endpoint.clone();
    if let Some(uri) = &bootstrap {
        ServerUri::parse(uri).map_err(|e| ManagedError::BootstrapUri {
            uri: uri.clone(),
            why: e.to_string(),
        })?;
        device.bootstrap = Some(BootstrapServer {
            uri: uri.clone(),
            security: factory_security(factory.as_ref()),
        });
    }
    let mut client = Client::new(device, stack, server);
    // Package URIs on real sockets: IP literals (and localhost), no DNS.
    client
        .device
        .set_peer_resolver(crate::firmware::ip_resolver);
    if bootstrap.is_some() {
        // The EST server and the OCSP responder are the bootstrap server's.
        let mut est = EstConfig::new(endpoint);
        est.est_root = est_root;
        est.ocsp = ocsp;
        client.device.set_est(Some(est));
    }
    let state_loaded = match state_dir {
        Some(dir) => client
            .device
            .attach_state(StateStore::new(dir), credential_files)?,
        None => false,
    };
    if reenrol {
        client.device.reenrol()?;
    }
    let (events_tx, events) = mpsc::unbounded_channel();
    let (stop, stop_rx) = oneshot::channel();
    let current = CurrentDriver::default();
    let runner = Runner {
        factory,
        backoff,
        deregister_wait,
        events: events_tx,
        current: current.clone(),
    };
    let task = tokio::spawn(runner.run(client, stop_rx));
    Ok(ManagedDevice {
        state_loaded,
        events,
        stop: Some(stop),
        current,
        task,
    })
}

impl ManagedDevice {
    /// Whether a persisted state was loaded at start.
    pub fn state_loaded(&self) -> bool {
        self.state_loaded
    }

    /// The next event; `None` once the runner has ended (see [`ManagedDevice::join`]).
    pub async fn next_event(&mut self) -> Option<ManagedEvent> {
        self.events.recv().await
    }

    /// An event if one is waiting.
    pub fn try_next_event(&mut self) -> Option<ManagedEvent> {
        self.events.try_recv().ok()
    }

    /// Runs `f` on the device in the driver task; false while the transport is being
    /// switched (no driver) or after the runner ended.
    pub fn command(
        &self,
        f: impl FnOnce(&mut Client<SocketAddr>, Instant) + Send + 'static,
    ) -> bool {
        match &*self.current.lock() {
            Some(commander) => commander.command(f),
            None => false,
        }
    }

    /// Asks the runner to De-register the device (waiting up to the configured time for the
    /// answer) and close its socket. Events keep coming until [`ManagedDevice::next_event`]
    /// returns `None`.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits for the runner to end: after [`ManagedDevice::stop`], or on its own when the
    /// device can reach no server. Returns the device as it was last.
    pub async fn join(self) -> Result<Client<SocketAddr>, ManagedError> {
        let ManagedDevice { stop, task, .. } = self;
        // Kept until the task ends: dropping it would stop the device without De-register.
        let _stop = stop;
        task.await.map_err(|e| ManagedError::Task(e.to_string()))?
    }

    /// [`ManagedDevice::stop`], then [`ManagedDevice::join`] (undelivered events are dropped).
    pub async fn shutdown(mut self) -> Result<Client<SocketAddr>, ManagedError> {
        self.stop();
        self.join().await
    }
}

/// A stable per-device seed, so two devices never share message IDs and tokens.
pub fn endpoint_seed(endpoint: &str) -> u64 {
    let mut h = DefaultHasher::new();
    endpoint.hash(&mut h);
    h.finish()
}

/// The /0 content of the factory bootstrap account for the factory credentials.
fn factory_security(factory: Option<&ClientCredentials>) -> Security {
    match factory {
        None => Security::NoSec,
        Some(ClientCredentials::Psk { identity, key }) => Security::Psk {
            identity: identity.clone(),
            key: key.clone(),
        },
        // The key stays with the caller: /0/x/5 of the bootstrap account is never read back.
        Some(ClientCredentials::Certificate { .. }) => Security::Certificate {
            certificate: Vec::new(),
            server_certificate: Vec::new(),
            private_key: Vec::new(),
        },
    }
}

/// The commander of the driver running now, if any.
#[derive(Clone, Default)]
struct CurrentDriver(Arc<Mutex<Option<Commander<Client<SocketAddr>>>>>);

impl CurrentDriver {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Commander<Client<SocketAddr>>>> {
        // The slot holds no invariant a panicking holder could break.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Runner {
    factory: Option<ClientCredentials>,
    backoff: Backoff,
    deregister_wait: Duration,
    events: mpsc::UnboundedSender<ManagedEvent>,
    current: CurrentDriver,
}

impl Runner {
    async fn run(
        self,
        mut client: Client<SocketAddr>,
        mut stop: oneshot::Receiver<()>,
    ) -> Result<Client<SocketAddr>, ManagedError> {
        let mut first = true;
        loop {
            let wanted = transport::wanted(&client.device, self.factory.as_ref())?;
            let (switch_tx, mut switch_rx) = mpsc::unbounded_channel::<()>();
            let fallback_switch = switch_tx.clone();
            let to_bootstrap = transport::is_bootstrap_target(&client.device);
            if wanted.credentials.is_none() && to_bootstrap {
                // Plain CoAP authenticates nobody: a locked-in device is in recovery mode.
                client.device.device_mut().trust_bootstrap_session(&[]);
            }
            let deregistered = Arc::new(Notify::new());
            let watch = {
                let factory = self.factory.clone();
                let events = self.events.clone();
                let current = wanted.clone();
                let deregistered = Arc::clone(&deregistered);
                move |client: &mut Client<SocketAddr>, event: DeviceEvent| {
                    if event == DeviceEvent::Registration(RegistrationEvent::Deregistered) {
                        deregistered.notify_one();
                    }
                    // A closed channel only means nobody listens any more.
                    let _ = events.send(ManagedEvent::Device(event));
                    match transport::wanted(&client.device, factory.as_ref()) {
                        Ok(wanted) if !wanted.same_driver(&current) => {
                            let _ = switch_tx.send(());
                        }
                        Ok(_) => {}
                        Err(e) => {
                            let _ = events.send(ManagedEvent::NoTarget {
                                error: e.to_string(),
                            });
                        }
                    }
                }
            };
            let _ = self.events.send(ManagedEvent::Driver {
                addr: wanted.addr,
                dtls: wanted.credentials.is_some(),
            });
            let bootstrapping = client.device.is_bootstrapping();
            let (handle, task) = match &wanted.credentials {
                Some(credentials) => {
                    let events = self.events.clone();
                    let server = wanted.addr;
                    let switched = !first;
                    crate::dtls::spawn(
                        ClientConfig::new(wanted.addr, credentials.clone()),
                        self.backoff.clone(),
                        client,
                        move |client, now, event| match event {
                            DtlsEvent::Device(event) => watch(client, event),
                            DtlsEvent::Link(event) => {
                                match &event {
                                    LinkEvent::Connected {
                                        peer_certificates, ..
                                    } if to_bootstrap => client
                                        .device
                                        .device_mut()
                                        .trust_bootstrap_session(peer_certificates),
                                    LinkEvent::HandshakeFailed { error, .. }
                                        if !to_bootstrap
                                            && client.device.device().trust().is_some()
                                            && error.contains(
                                                steward_dtls::SERVER_CERTIFICATE_REFUSED,
                                            )
                                            && client.device.fall_back_to_bootstrap() =>
                                    {
                                        // Locked in, and this server does not chain to the
                                        // CTL: bootstrap (where a recovery token may wait).
                                        let _ = fallback_switch.send(());
                                    }
                                    _ => {}
                                }
                                if switched
                                    && matches!(
                                        event,
                                        LinkEvent::Connected {
                                            reconnect: false,
                                            ..
                                        }
                                    )
                                    && !client.device.is_bootstrapping()
                                {
                                    register_afresh(client, now, server);
                                }
                                let _ = events.send(ManagedEvent::Link(event));
                            }
                        },
                    )
                }
                None => {
                    let (handle, task) = spawn_udp(wanted.addr, client, watch)?;
                    // The first driver starts the device; a later one starts it again unless
                    // a bootstrap is under way (its request is retransmitted on the new
                    // socket).
                    if first {
                        handle.command(|client, now| client.start(now));
                    } else if !bootstrapping {
                        let server = wanted.addr;
                        handle.command(move |client, now| register_afresh(client, now, server));
                    }
                    (handle, task)
                }
            };
            *self.current.lock() = Some(handle.commander());
            first = false;
            tokio::select! {
                _ = switch_rx.recv() => {
                    *self.current.lock() = None;
                    handle.shutdown();
                    client = task.await.map_err(|e| ManagedError::Task(e.to_string()))?;
                }
                asked = &mut stop => {
                    // `Err`: the `ManagedDevice` was dropped, stop without De-register.
                    if asked.is_ok() {
                        handle.command(|client, now| client.deregister(now));
                        let _ = tokio::time::timeout(self.deregister_wait, deregistered.notified())
                            .await;
                    }
                    *self.current.lock() = None;
                    handle.shutdown();
                    return task.await.map_err(|e| ManagedError::Task(e.to_string()));
                }
            }
        }
    }
}

/// The first session with a server the device switched to. The device sent its Register
/// while the previous driver still ran (bound to the bootstrap server, the datagram went
/// nowhere), and that exchange holds the CoAP slot for this server (NSTART 1) until its
/// retransmission 2 to 3 s later, with the Register the new session started queued behind it
/// (two registrations, the first voided at once). A new DTLS session or socket is a new
/// message-ID space anyway: forget the exchange and register now.
fn register_afresh(client: &mut Client<SocketAddr>, now: Instant, server: SocketAddr) {
    steward_transport::Machine::forget_peer(client, server);
    // The Register failed by forgetting is no longer the one in flight after this start.
    client.start(now);
}

type Driver = (Handle<Client<SocketAddr>>, JoinHandle<Client<SocketAddr>>);

/// CoAP over UDP from an ephemeral port of the server address's family.
fn spawn_udp(
    server: SocketAddr,
    client: Client<SocketAddr>,
    mut watch: impl FnMut(&mut Client<SocketAddr>, DeviceEvent) + Send + 'static,
) -> Result<Driver, ManagedError> {
    let bind = match server {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    };
    let (socket, _) = udp::bind(&UdpConfig {
        bind,
        recv_buffer: 64 << 10,
        send_buffer: 64 << 10,
    })?;
    Ok(udp::spawn(socket, client, move |client, _, event| {
        watch(client, event);
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use steward_objects::Version;

    #[test]
    fn a_bad_bootstrap_uri_fails_before_anything_runs() {
        let server = SocketAddr::from(([127, 0, 0, 1], 5683));
        let mut config = ManagedConfig::new(DeviceConfig::new("dev", Version::V1_1), server);
        config.bootstrap = Some("http://127.0.0.1:5783".into());
        // No tokio runtime here: spawn must fail before it starts the runner task.
        match spawn(config) {
            Err(ManagedError::BootstrapUri { uri, .. }) => assert_eq!(uri, "http://127.0.0.1:5783"),
            Err(e) => panic!("a URI error expected, got {e}"),
            Ok(_) => panic!("a URI error expected"),
        }
    }

    #[test]
    fn the_factory_bootstrap_account_carries_the_psk() {
        let psk = ClientCredentials::Psk {
            identity: b"dev".to_vec(),
            key: vec![1, 2, 3],
        };
        assert_eq!(
            factory_security(Some(&psk)),
            Security::Psk {
                identity: b"dev".to_vec(),
                key: vec![1, 2, 3]
            }
        );
        assert_eq!(factory_security(None), Security::NoSec);
    }
}
