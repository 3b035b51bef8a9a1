//! The device loop: a [`Device`] answering the server and a [`Registration`] talking to it,
//! over a CoAP [`Stack`].
//!
//! [`SimDevice`] does not own the stack, so tests can hand it the client side of a
//! `steward_coap::sim::Pair`; [`Client`] owns one and has the driving surface a tokio driver
//! needs.
//!
//! At [`SimDevice::start`] the device registers with the LwM2M server account in /0 and /1 if
//! it has a usable one (re-using a persisted registration while its lifetime lasts), else it
//! bootstraps with its bootstrap-server account ([`crate::bootstrap`]). Server URIs become
//! peers through the [`PeerResolver`]; without one every server is the peer the device was
//! made with (tests on a `Pair`, where one scripted peer plays bootstrap and LwM2M server).
//! A bootstrap-server operation is told from a DM request by its peer and by the bootstrap
//! being under way.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::hash::Hash;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use steward_coap::endpoint::{Event, RequestId};
use steward_coap::message::{Code, Method};
use steward_coap::observe::{ObserveRequest, Registration as ObserveRegistration, observe_request};
use steward_coap::stack::{Stack, StackConfig};
use steward_objects::Path;

use crate::bootstrap::{
    Bootstrap, BootstrapConfig, BootstrapEvent, Enrolment, NoEnrolment, Security, ServerAccount,
    ServerUri,
};
use crate::device::{self, Device, DeviceConfig, Effect};
use crate::est::{
    EstConfig, EstEvent, EstFailure, EstJob, EstOutcome, EstSession, OcspCheck, RejectReason,
};
use crate::firmware::{self, PackageUri, Task, UpdateResult};
use crate::observe::{self, Observations};
use crate::queue::{Queue, Transition};
use crate::registration::{Exchange, Registration, RegistrationConfig, RegistrationEvent};
use crate::send::{self, SendError};
use crate::sensors::Sensors;
use crate::state::{CredentialPaths, DeviceState, SavedRegistration, StateError, StateStore};

/// How long a rebooting device stays silent before it registers again.
const REBOOT_DELAY: Duration = Duration::from_secs(1);
/// Disable Timeout when `/1/x/5` is absent (Server object default).
const DEFAULT_DISABLE_TIMEOUT: Duration = Duration::from_secs(86_400);

/// What a device did, for progress output and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceEvent {
    Registration(RegistrationEvent),
    /// A DM request from the server was answered.
    Served {
        method: Method,
        path: String,
        code: Code,
    },
    /// An executed Reboot or Factory Reset: the device registers again shortly.
    Rebooting,
    /// A recovery token was accepted: the CTL is erased and the device bootstraps again from
    /// its initial state (see [`crate::trust`]).
    TrustReset,
    /// Disable executed: silent until the Disable Timeout runs out.
    Disabled {
        until: Instant,
    },
    /// Something the simulator cannot do (a Bootstrap-Request Trigger without a
    /// bootstrap-server account).
    Unsupported(Effect),
    /// Progress of a client-initiated bootstrap.
    Bootstrap(BootstrapEvent),
    /// The bootstrap finished: the device registers with this account now. A driver whose
    /// transport is bound to one server (DTLS) must switch to the account's URI and security.
    Bootstrapped {
        account: ServerAccount,
    },
    /// A server URI names no peer the device can reach (no resolver answer).
    Unreachable {
        uri: String,
    },
    /// The persisted state could not be written.
    StateSaveFailed {
        error: String,
    },
    /// Progress of an EST enrolment, re-enrolment or server-certificate check
    /// ([`crate::est`]); a rejected server certificate is
    /// [`DeviceEvent::ServerCertificateRejected`] instead.
    Est(EstEvent),
    /// The OCSP check did not vouch for the LwM2M server's certificate: the device does not
    /// connect to it (fail closed) and checks again in `retry_in` (zero: not by itself, as
    /// with [`RejectReason::NoResponder`]; the next start tries again).
    ServerCertificateRejected {
        reason: RejectReason,
        retry_in: Duration,
    },
    /// Enrolled credentials were written as PEM files to the state directory.
    CredentialsStored {
        paths: crate::est::StoredPaths,
    },
    /// An observation was accepted under this resource key.
    Observed {
        key: String,
    },
    /// A notification went out (a non-2.xx one ends the observation).
    Notified {
        key: String,
        code: Code,
    },
    /// The server answered a Send.
    Sent {
        code: Code,
    },
    /// A Send got no answer.
    SendFailed,
    /// Queue mode: the radio is off until the device wakes.
    Slept,
    /// Queue mode: awake again; a registration Update is on its way.
    Woke,
    /// Queue mode: a request arrived while asleep and was dropped.
    Dropped {
        path: String,
    },
    /// Firmware Update State (/5/0/3) or Update Result (/5/0/5) changed.
    Firmware {
        state: firmware::State,
        result: i64,
    },
    /// A firmware update finished: the device runs `version` and sends an Update.
    FirmwareUpdated {
        version: String,
    },
    /// An executable resource of an extra object was executed ([`Effect::Executed`]): the
    /// device answered 2.04 and did nothing else.
    Executed {
        path: Path,
        arguments: Vec<u8>,
    },
}

/// Maps the host and port of a Package URI to a peer the stack can send to.
pub type PeerResolver<P> = fn(&str, u16) -> Option<P>;

/// A simulated device on a stack it does not own; see the module docs.
#[derive(Debug)]
pub struct SimDevice<P> {
    device: Device,
    registration: Registration,
    server: P,
    /// Our registration requests in flight on the stack.
    exchanges: Vec<(RequestId, Exchange)>,
    /// When a rebooting or disabled device registers again.
    wake_at: Option<Instant>,
    events: VecDeque<DeviceEvent>,
    observations: Observations,
    sensors: Option<Sensors>,
    /// Present for a queue-mode device.
    queue: Option<Queue>,
    /// Our Sends in flight.
    sends: Vec<RequestId>,
    /// The firmware download in flight (pull), with its peer for cancelling.
    download: Option<(RequestId, P)>,
    /// A firmware verification or installation due at a time.
    firmware_job: Option<(Instant, Task)>,
    /// Finds the peer of a Package URI host other than the LwM2M server's.
    resolver: Option<PeerResolver<P>>,
    /// The first instant the device saw, to turn `Instant`s into Unix time from
    /// `DeviceConfig::clock` (for /5/0/12).
    epoch: Option<Instant>,
    /// Firmware State and Update Result as last reported.
    firmware_seen: (firmware::State, i64),
    bootstrap: Bootstrap,
    /// The bootstrap server's peer while bootstrapping.
    bootstrap_peer: Option<P>,
    /// Our Bootstrap-Request in flight.
    bootstrap_request: Option<RequestId>,
    /// Turns a Security Mode 4 account into usable credentials when no EST client is
    /// configured (none by default).
    enrolment: Box<dyn Enrolment>,
    /// The EST client and the OCSP check ([`crate::est`]); `None`: neither.
    est: Option<EstConfig>,
    /// The session under way, what it is for, and the bootstrap server's peer it talks to.
    est_session: Option<EstRun<P>>,
    /// The server certificate that passed the OCSP check in this run of the device: a driver
    /// that reconnects does not check again for every session.
    trusted_server: Option<Vec<u8>>,
    /// Persisted state, when a state directory is attached.
    persist: Option<Persist>,
    /// A persisted registration to resume with an Update at the next start.
    resume: Option<String>,
}

/// An EST session and its context.
#[derive(Debug)]
struct EstRun<P> {
    session: EstSession,
    peer: P,
    /// Our request in flight.
    request: Option<RequestId>,
    account: ServerAccount,
    then: AfterEst,
}

/// What the device does when the session succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterEst {
    /// Register after a Bootstrap-Finish (reports [`DeviceEvent::Bootstrapped`]).
    Bootstrapped,
    /// Register (or resume) after a start.
    Start,
    /// New credentials: register afresh (a new DTLS session registers, Transport §5.2.6).
    Reenrolled,
}

/// Why a re-enrolment cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReenrolError {
    #[error("no EST client configured")]
    NotConfigured,
    #[error("the device has no bootstrap server (the EST server) it can reach")]
    NoEstServer,
    #[error("the device has no certificate-mode server account")]
    NoCertificate,
    #[error("the current certificate is unreadable or has no CN: {0}")]
    BadCertificate(String),
}

/// The state directory of a device and what was last written there.
#[derive(Debug)]
struct Persist {
    store: StateStore,
    credentials: CredentialPaths,
    last: Option<DeviceState>,
    /// When the registration was last confirmed (Register or Update answered).
    confirmed_at: Option<Instant>,
}

impl<P: Copy + Eq + Hash + Ord + Debug> SimDevice<P> {
    /// A device that will register with `server` once [`SimDevice::start`]ed.
    pub fn new(config: DeviceConfig, server: P) -> SimDevice<P> {
        let device = Device::new(config);
        let registration = Registration::new(registration_config(&device));
        let sensors = device.config().sensors.map(|c| Sensors::new(c, &device));
        let queue = device
            .config()
            .queue_mode
            .then(|| Queue::new(device.config().queue));
        let bootstrap = Bootstrap::new(bootstrap_config(&device));
        SimDevice {
            device,
            registration,
            server,
            exchanges: Vec::new(),
            wake_at: None,
            events: VecDeque::new(),
            observations: Observations::new(),
            sensors,
            queue,
            sends: Vec::new(),
            download: None,
            firmware_job: None,
            resolver: None,
            epoch: None,
            firmware_seen: (firmware::State::Idle, 0),
            bootstrap,
            bootstrap_peer: None,
            bootstrap_request: None,
            enrolment: Box::new(NoEnrolment),
            est: None,
            est_session: None,
            trusted_server: None,
            persist: None,
            resume: None,
        }
    }

    /// Attaches a state directory: loads the device's saved state, if any, into the device
    /// (accounts, negotiated version, firmware) and saves every change from now on. Call
    /// before [`SimDevice::start`]. True when a state was loaded. A registration saved with
    /// lifetime left (by the device's clock, `DeviceConfig::clock`) is resumed with an Update.
    pub fn attach_state(
        &mut self,
        store: StateStore,
        credentials: CredentialPaths,
    ) -> Result<bool, StateError> {
        let endpoint = self.device.config().endpoint.clone();
        let saved = store.load(&endpoint)?;
        let loaded = saved.is_some();
        if let Some(state) = &saved {
            state.apply(&mut self.device);
            self.registration = Registration::new(registration_config(&self.device));
            self.bootstrap = Bootstrap::new(bootstrap_config(&self.device));
            self.firmware_seen = (
                firmware::state(&self.device),
                firmware::update_result(&self.device),
            );
            let clock = self.device.config().clock;
            let account = self.device.server_account();
            self.resume = state
                .registration
                .as_ref()
                .filter(|r| r.expires > clock)
                .filter(|r| account.is_some_and(|a| a.uri == r.server_uri))
                .map(|r| r.location.clone());
        }
        self.persist = Some(Persist {
            store,
            credentials,
            last: saved,
            confirmed_at: None,
        });
        Ok(loaded)
    }

    /// Forgets a registration to resume: the next start sends a Register. A new DTLS session
    /// needs this (Transport §5.2.6: an Update is not enough).
    pub fn discard_resume(&mut self) {
        self.resume = None;
    }

    /// Sets what enrols a Security Mode 4 account (see [`Enrolment`]).
    pub fn set_enrolment(&mut self, enrolment: Box<dyn Enrolment>) {
        self.enrolment = enrolment;
    }

    /// Turns on the EST client for Security Mode 4 and, with [`EstConfig::ocsp`], the OCSP
    /// check of the server certificate (modes 2 and 4); see [`crate::est`]. It talks to the
    /// bootstrap server, so the device needs a bootstrap account. Replaces the
    /// [`Enrolment`] hook for mode 4.
    pub fn set_est(&mut self, config: Option<EstConfig>) {
        self.est = config;
    }

    /// The EST session under way, if any.
    pub fn est_session(&self) -> Option<&EstSession> {
        self.est_session.as_ref().map(|r| &r.session)
    }

    /// True while the device belongs to its bootstrap server: a bootstrap, or an EST session
    /// (enrolment, re-enrolment, server-certificate check) with it. A driver bound to one
    /// server keeps the bootstrap server's session meanwhile.
    pub fn is_bootstrapping(&self) -> bool {
        self.bootstrap.is_active() || self.est_session.is_some()
    }

    /// True while a `/sren` session runs: its DTLS session must authenticate with the current
    /// operational certificate, not the factory credentials (RFC 7030 §3.3.2).
    pub fn is_reenrolling(&self) -> bool {
        self.est_session
            .as_ref()
            .is_some_and(|r| matches!(r.session.job(), EstJob::Reenrol { .. }))
    }

    /// Starts a re-enrolment (`/sren`) of the current certificate-mode account: a new key, the
    /// same subject CN; on success the device writes the new credentials to /0 and registers
    /// afresh. Call [`SimDevice::poll`] to send.
    pub fn reenrol(&mut self) -> Result<(), ReenrolError> {
        let config = self.est.clone().ok_or(ReenrolError::NotConfigured)?;
        let account = self
            .device
            .server_account()
            .ok_or(ReenrolError::NoCertificate)?;
        let Security::Certificate {
            certificate,
            server_certificate,
            ..
        } = &account.security
        else {
            return Err(ReenrolError::NoCertificate);
        };
        let common_name = common_name(certificate).map_err(ReenrolError::BadCertificate)?;
        let job = EstJob::Reenrol {
            common_name,
            server_certificate: server_certificate.clone(),
        };
        if !self.start_est(config, job, account, AfterEst::Reenrolled) {
            return Err(ReenrolError::NoEstServer);
        }
        Ok(())
    }

    pub fn bootstrap(&self) -> &Bootstrap {
        &self.bootstrap
    }

    /// The peer the registration talks to (changes with a bootstrap).
    pub fn server(&self) -> P {
        self.server
    }

    /// How Package URI hosts become peers. Without one, only the LwM2M server's own host and
    /// port (`/0/0/0`) is reachable; the UDP client installs [`firmware::ip_resolver`].
    pub fn set_peer_resolver(&mut self, resolver: PeerResolver<P>) {
        self.resolver = Some(resolver);
    }

    /// Changes a value from the device side (a sensor, a button): observations of it are
    /// evaluated at the next [`SimDevice::poll`]. False when the path names nothing settable.
    pub fn set(&mut self, path: &Path, value: steward_objects::Value) -> bool {
        self.device.set_path(path, value)
    }

    /// How many observations the device serves.
    pub fn observation_count(&self) -> usize {
        self.observations.len()
    }

    /// The simulated sensors, when configured.
    pub fn sensors(&self) -> Option<&Sensors> {
        self.sensors.as_ref()
    }

    /// False while a queue-mode device sleeps (it answers nothing then).
    pub fn is_awake(&self) -> bool {
        self.queue.as_ref().is_none_or(Queue::is_awake)
    }

    /// Sends the current values of `paths` to the server (`POST /dp`, 1.1+, Mute Send off),
    /// in the configured format. The answer comes as [`DeviceEvent::Sent`].
    pub fn send(
        &mut self,
        now: Instant,
        stack: &mut Stack<P>,
        paths: &[Path],
    ) -> Result<RequestId, SendError> {
        let entry = send::current(&self.device, paths)?;
        self.send_entries(now, stack, &[entry])
    }

    /// Like [`SimDevice::send`], with the last `samples` sensor samples as a time series
    /// (oldest first; just the current values without sensors).
    pub fn send_series(
        &mut self,
        now: Instant,
        stack: &mut Stack<P>,
        paths: &[Path],
        samples: usize,
    ) -> Result<RequestId, SendError> {
        let entries = match &self.sensors {
            Some(s) => send::series(&self.device, s.history(), paths, samples)?,
            None => vec![send::current(&self.device, paths)?],
        };
        self.send_entries(now, stack, &entries)
    }

    fn send_entries(
        &mut self,
        now: Instant,
        stack: &mut Stack<P>,
        entries: &[steward_objects::TimestampedNodes],
    ) -> Result<RequestId, SendError> {
        let format = self.device.config().send_format;
        send::check(&self.device, format)?;
        if !self.registration.is_registered() {
            return Err(SendError::NotRegistered);
        }
        // LwM2M CBOR has no time field: it carries the newest values only.
        let newest;
        let entries = if format == steward_objects::ContentFormat::Lwm2mCbor {
            newest = entries
                .last()
                .map(|e| steward_objects::TimestampedNodes {
                    time: None,
                    nodes: e.nodes.clone(),
                })
                .into_iter()
                .collect::<Vec<_>>();
            &newest[..]
        } else {
            entries
        };
        let request = send::request(format, entries)?;
        // Sending is the device's own activity: a sleeping queue-mode device wakes for it.
        if let Some(q) = &mut self.queue
            && q.wake(now)
        {
            self.events.push_back(DeviceEvent::Woke);
            self.registration.trigger_update();
        }
        let id = stack.request(now, self.server, request, true);
        self.sends.push(id);
        Ok(id)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn device_mut(&mut self) -> &mut Device {
        &mut self.device
    }

    pub fn registration(&self) -> &Registration {
        &self.registration
    }

    pub fn registration_mut(&mut self) -> &mut Registration {
        &mut self.registration
    }

    /// Starts registering, or bootstrapping when the device has no usable server account
    /// (see the module docs); call [`SimDevice::poll`] to send.
    pub fn start(&mut self) {
        self.wake_at = None;
        if let Some(q) = &mut self.queue {
            q.reset();
        }
        let account = self.device.server_account();
        if account.is_none()
            && let Some(bs) = self.device.bootstrap_account()
        {
            self.resume = None;
            self.start_bootstrap(&bs.uri, bs.hold_off);
            return;
        }
        self.bootstrap.stop();
        self.est_session = None;
        if let Some(account) = &account
            && let Some((config, job)) = self.est_job(account)
        {
            if !self.start_est(config, job, account.clone(), AfterEst::Start) {
                // Nobody to enrol with or to ask about the server certificate: fail
                // closed, and stay so until the next start.
                self.events
                    .push_back(DeviceEvent::ServerCertificateRejected {
                        reason: RejectReason::NoResponder,
                        retry_in: Duration::ZERO,
                    });
            }
            return;
        }
        self.register_with(account.as_ref());
    }

    /// Registers (or resumes a persisted registration) with `account`'s server, or with the
    /// configured server when there is no account.
    fn register_with(&mut self, account: Option<&ServerAccount>) {
        if let Some(account) = account {
            self.device.use_server(account.ssid);
            if let Some(peer) = self.peer_of(&account.uri) {
                self.server = peer;
            }
        }
        match self.resume.take() {
            Some(location) => self.registration.resume(location),
            None => self.registration.start(),
        }
    }

    /// The EST session `account` needs before the device may use it, if any: an enrolment
    /// for mode 4, the OCSP check for a server certificate not checked yet in this run.
    fn est_job(&self, account: &ServerAccount) -> Option<(EstConfig, EstJob)> {
        let config = self.est.clone()?;
        let check = matches!(config.ocsp, OcspCheck::On { .. });
        let job = match &account.security {
            Security::CertificateWithEst { server_certificate } => EstJob::Enrol {
                server_certificate: server_certificate.clone(),
            },
            Security::Certificate {
                server_certificate, ..
            } if check && self.trusted_server.as_ref() != Some(server_certificate) => {
                EstJob::CheckServer {
                    server_certificate: server_certificate.clone(),
                }
            }
            _ => return None,
        };
        Some((config, job))
    }

    /// Starts an EST session with the bootstrap server; false when the device has none it
    /// can reach.
    fn start_est(
        &mut self,
        config: EstConfig,
        job: EstJob,
        account: ServerAccount,
        then: AfterEst,
    ) -> bool {
        let Some(bs) = self.device.bootstrap_account() else {
            return false;
        };
        let Some(peer) = self.peer_of(&bs.uri) else {
            self.events.push_back(DeviceEvent::Unreachable {
                uri: bs.uri.clone(),
            });
            return false;
        };
        self.est_session = Some(EstRun {
            session: EstSession::new(config, job),
            peer,
            request: None,
            account,
            then,
        });
        true
    }

    /// Sends the session's due request and acts on its events and outcome.
    fn poll_est(&mut self, now: Instant, stack: &mut Stack<P>) {
        let Some(run) = &mut self.est_session else {
            return;
        };
        run.session.handle_timeout(now);
        if run.request.is_none()
            && let Some(request) = run.session.poll_request(now)
        {
            run.request = Some(stack.request(now, run.peer, request, true));
        }
        while let Some(event) = run.session.poll_event() {
            self.events.push_back(match event {
                EstEvent::Failed {
                    reason: EstFailure::ServerCertificateRejected(reason),
                    retry_in,
                } => DeviceEvent::ServerCertificateRejected { reason, retry_in },
                other => DeviceEvent::Est(other),
            });
        }
        if !run.session.is_done() {
            return;
        }
        let outcome = run.session.take_outcome();
        let Some(run) = self.est_session.take() else {
            return;
        };
        self.est_done(now, run, outcome);
    }

    /// The session succeeded: use the account.
    fn est_done(&mut self, now: Instant, run: EstRun<P>, outcome: Option<EstOutcome>) {
        let mut account = run.account;
        let server_certificate = match &account.security {
            Security::CertificateWithEst { server_certificate }
            | Security::Certificate {
                server_certificate, ..
            } => server_certificate.clone(),
            _ => Vec::new(),
        };
        if matches!(
            self.est.as_ref().map(|c| &c.ocsp),
            Some(OcspCheck::On { .. })
        ) {
            self.trusted_server = Some(server_certificate.clone());
        }
        if let Some(EstOutcome::Enrolled(enrolled)) = outcome {
            let security = Security::Certificate {
                certificate: enrolled.certificate.clone(),
                server_certificate,
                private_key: enrolled.private_key.clone(),
            };
            for (rid, resource) in security.resources() {
                if let steward_objects::Resource::Single(v) = resource {
                    self.device.set(0, account.security_instance, rid, v);
                }
            }
            account.security = security;
            if let Some(p) = &self.persist {
                let endpoint = &self.device.config().endpoint;
                match crate::est::credentials::store(&p.store, endpoint, &enrolled) {
                    Ok(paths) => self
                        .events
                        .push_back(DeviceEvent::CredentialsStored { paths }),
                    Err(e) => self.events.push_back(DeviceEvent::StateSaveFailed {
                        error: e.to_string(),
                    }),
                }
            }
        }
        match run.then {
            AfterEst::Bootstrapped => self.connect(now, account),
            AfterEst::Start => self.register_with(Some(&account)),
            AfterEst::Reenrolled => {
                self.resume = None;
                self.registration = Registration::new(registration_config(&self.device));
                self.exchanges.clear();
                self.registration.start();
            }
        }
    }

    /// Client-initiated bootstrap with the server at `uri`.
    fn start_bootstrap(&mut self, uri: &str, hold_off: Duration) {
        match self.peer_of(uri) {
            Some(peer) => {
                self.bootstrap_peer = Some(peer);
                self.bootstrap_request = None;
                self.bootstrap.start(hold_off);
            }
            None => self.events.push_back(DeviceEvent::Unreachable {
                uri: uri.to_owned(),
            }),
        }
    }

    /// The peer of a server URI: the resolver's answer, or without a resolver the peer the
    /// device was made with.
    fn peer_of(&self, uri: &str) -> Option<P> {
        let Some(resolver) = self.resolver else {
            return Some(self.server);
        };
        let uri = ServerUri::parse(uri).ok()?;
        resolver(&uri.host, uri.port)
    }

    /// Deregisters; call [`SimDevice::poll`] to send.
    pub fn deregister(&mut self) {
        self.wake_at = None;
        self.registration.deregister();
    }

    /// Gives up on the LwM2M server (its certificate does not chain to the CTL, say) and
    /// bootstraps; false when the device has no bootstrap server.
    pub fn fall_back_to_bootstrap(&mut self) -> bool {
        let Some(bs) = self.device.bootstrap_account() else {
            return false;
        };
        if self.bootstrap.is_active() {
            return true;
        }
        self.registration = Registration::new(registration_config(&self.device));
        self.exchanges.clear();
        self.observations.clear();
        self.est_session = None;
        self.resume = None;
        self.start_bootstrap(&bs.uri, Duration::ZERO);
        true
    }

    /// Handles one event of the stack: answers requests, matches responses.
    pub fn on_event(&mut self, now: Instant, stack: &mut Stack<P>, event: Event<P>) {
        match event {
            Event::Request { id, request } => {
                if let Some(q) = &mut self.queue {
                    if !q.is_awake() {
                        // The radio is off: a real device never saw this request.
                        self.events.push_back(DeviceEvent::Dropped {
                            path: request.path_string(),
                        });
                        return;
                    }
                    q.activity(now);
                }
                let unix = u64::try_from(self.unix(now)).unwrap_or(0);
                self.device.set_unix_now(unix);
                if self.bootstrap.is_active() && Some(id.peer()) == self.bootstrap_peer {
                    self.bootstrap.activity(now);
                    let response = device::handle_bootstrap(&mut self.device, &request);
                    self.events.push_back(DeviceEvent::Served {
                        method: request.method,
                        path: request.path_string(),
                        code: response.code,
                    });
                    let locked_out = response.code == steward_coap::message::Code::FORBIDDEN
                        && self
                            .device
                            .trust()
                            .is_some_and(|t| !t.accepts_configuration());
                    let _ = stack.respond(now, id, response);
                    if locked_out && !request.path_string().starts_with("/42769/0/") {
                        // The server fails its session on our refusal and says no more: ask
                        // again later (a token may be waiting then) instead of waiting out
                        // the exchange lifetime.
                        self.bootstrap.unusable(
                            now,
                            "recovery mode: the bootstrap server does not chain to the CTL".into(),
                        );
                    }
                    for effect in self.device.take_effects() {
                        self.apply(now, stack, effect);
                    }
                    return;
                }
                let response = device::handle(&mut self.device, &request);
                self.events.push_back(DeviceEvent::Served {
                    method: request.method,
                    path: request.path_string(),
                    code: response.code,
                });
                if observe_request(&request) == Some(ObserveRequest::Register) {
                    let key = observe::resource_key(&request, &response);
                    let accepted = stack.observe_accept(now, id, key.clone(), response.clone());
                    if let Ok(Some(ObserveRegistration::Accepted { .. })) = accepted {
                        self.observations
                            .start(now, key.clone(), request, &response, &self.device);
                        self.events.push_back(DeviceEvent::Observed { key });
                    }
                } else {
                    // NotPending means the exchange is gone (peer forgotten): nothing to answer.
                    let _ = stack.respond(now, id, response);
                }
                let effects = self.device.take_effects();
                for effect in effects {
                    self.apply(now, stack, effect);
                }
            }
            Event::Response { id, response, .. } => {
                if let Some(q) = &mut self.queue {
                    q.activity(now);
                }
                if let Some(exchange) = self.take_exchange(id) {
                    self.registration.on_response(now, exchange, &response);
                    self.on_registration_answer(now);
                } else if self.bootstrap_request == Some(id) {
                    self.bootstrap_request = None;
                    self.bootstrap.on_response(now, &response);
                } else if let wall = self.wall(now)
                    && let Some(run) = &mut self.est_session
                    && run.request == Some(id)
                {
                    run.request = None;
                    run.session.on_response(now, wall, &response);
                    self.poll_est(now, stack);
                } else if self.take_download(id) {
                    self.on_download(now, Ok(response));
                } else if self.take_send(id) {
                    self.events.push_back(DeviceEvent::Sent {
                        code: response.code,
                    });
                }
            }
            Event::Failed { id, .. } => {
                if let Some(exchange) = self.take_exchange(id) {
                    self.registration.on_failure(now, exchange);
                } else if self.bootstrap_request == Some(id) {
                    self.bootstrap_request = None;
                    self.bootstrap.on_failure(now);
                } else if let Some(run) = &mut self.est_session
                    && run.request == Some(id)
                {
                    run.request = None;
                    run.session.on_failure(now);
                    self.poll_est(now, stack);
                } else if self.take_download(id) {
                    self.on_download(now, Err(()));
                } else if self.take_send(id) {
                    self.events.push_back(DeviceEvent::SendFailed);
                }
            }
            // The stack took the observer off its list; `Observations::poll` forgets it.
            Event::ObserveEnded { .. } => {}
        }
    }

    /// Acts on due timers and sends what the registration wants sent.
    pub fn poll(&mut self, now: Instant, stack: &mut Stack<P>) {
        self.epoch.get_or_insert(now);
        if self.wake_at.is_some_and(|at| at <= now) {
            self.start();
        }
        self.poll_firmware(now);
        if let Some(s) = &mut self.sensors {
            // Sensors measure while the radio sleeps too.
            s.handle_timeout(now, &mut self.device);
        }
        self.poll_queue(now);
        self.registration.handle_timeout(now);
        while let Some((exchange, request)) = self.registration.poll_request() {
            if let Some(q) = &mut self.queue {
                q.activity(now);
            }
            let id = stack.request(now, self.server, request, true);
            self.exchanges.push((id, exchange));
        }
        self.bootstrap.handle_timeout(now);
        if let Some(peer) = self.bootstrap_peer
            && let Some(request) = self.bootstrap.poll_request()
        {
            self.bootstrap_request = Some(stack.request(now, peer, request, true));
        }
        while let Some(e) = self.bootstrap.poll_event() {
            self.events.push_back(DeviceEvent::Bootstrap(e));
        }
        self.poll_est(now, stack);
        while let Some(e) = self.registration.poll_event() {
            if matches!(
                e,
                RegistrationEvent::Registered { .. } | RegistrationEvent::Updated
            ) && let Some(p) = &mut self.persist
            {
                p.confirmed_at = Some(now);
            }
            self.events.push_back(DeviceEvent::Registration(e));
        }
        self.persist(now);
        if self.is_awake() {
            // Asleep, due notifications wait for the wake-up (one per observation then).
            for n in self.observations.poll(now, &mut self.device, stack) {
                if let Some(q) = &mut self.queue {
                    q.activity(now);
                }
                self.events.push_back(DeviceEvent::Notified {
                    key: n.key,
                    code: n.code,
                });
            }
        }
    }

    /// Queue mode: sleep when the awake window ran out, wake on schedule or when the
    /// registration must send (an Update due by the lifetime is a wake-up too).
    fn poll_queue(&mut self, now: Instant) {
        let Some(q) = &mut self.queue else {
            return;
        };
        if !self.registration.is_registered() {
            // Only a registered device sleeps; registering keeps it awake.
            q.reset();
            return;
        }
        let registration_due = self.registration.poll_timeout().is_some_and(|t| t <= now);
        let transition = if !q.is_awake() && registration_due {
            q.wake(now);
            Some(Transition::Woke)
        } else {
            q.handle_timeout(now)
        };
        match transition {
            Some(Transition::Slept) => self.events.push_back(DeviceEvent::Slept),
            Some(Transition::Woke) => {
                self.events.push_back(DeviceEvent::Woke);
                // Transport §6.5: a CON registration Update announces the device is awake.
                self.registration.trigger_update();
            }
            None => {}
        }
    }

    /// The next instant [`SimDevice::poll`] has work at.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let observations = if self.is_awake() {
            self.observations.poll_timeout(&self.device)
        } else {
            None
        };
        [
            self.registration.poll_timeout(),
            self.bootstrap.poll_timeout(),
            self.est_session
                .as_ref()
                .and_then(|r| r.session.poll_timeout()),
            self.wake_at,
            self.sensors.as_ref().and_then(Sensors::poll_timeout),
            self.queue.as_ref().and_then(Queue::poll_timeout),
            self.firmware_job.as_ref().map(|(at, _)| *at),
            observations,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn poll_event(&mut self) -> Option<DeviceEvent> {
        self.events.pop_front()
    }

    fn take_send(&mut self, id: RequestId) -> bool {
        let Some(at) = self.sends.iter().position(|r| *r == id) else {
            return false;
        };
        self.sends.swap_remove(at);
        true
    }

    fn take_download(&mut self, id: RequestId) -> bool {
        if self.download.is_some_and(|(d, _)| d == id) {
            self.download = None;
            true
        } else {
            false
        }
    }

    /// Runs a due firmware job and reports State / Update Result changes, stamping Last State
    /// Change Time (/5/0/12, object 1.1+) when the State moved.
    fn poll_firmware(&mut self, now: Instant) {
        if let Some((_, task)) = self.firmware_job.take_if(|(at, _)| *at <= now) {
            match task {
                Task::Verify => {
                    if firmware::verify(&mut self.device) {
                        self.schedule(now, Task::Install);
                    }
                }
                Task::Install => {
                    if let Some(version) = firmware::install(&mut self.device) {
                        self.events
                            .push_back(DeviceEvent::FirmwareUpdated { version });
                        // A device running new firmware tells the server at once (the
                        // server re-reads /3 and /5), as real devices do after an update.
                        self.registration.trigger_update();
                    }
                }
                Task::Download(_) | Task::Abort => {}
            }
        }
        let seen = (
            firmware::state(&self.device),
            firmware::update_result(&self.device),
        );
        if seen != self.firmware_seen {
            if seen.0 != self.firmware_seen.0 {
                let elapsed = self.epoch.map_or(0, |e| now.duration_since(e).as_secs());
                let unix = self
                    .device
                    .config()
                    .clock
                    .saturating_add(i64::try_from(elapsed).unwrap_or(i64::MAX));
                self.device
                    .set(5, 0, 12, steward_objects::Value::Time(unix));
            }
            self.firmware_seen = seen;
            self.events.push_back(DeviceEvent::Firmware {
                state: seen.0,
                result: seen.1,
            });
        }
    }

    fn schedule(&mut self, now: Instant, task: Task) {
        let config = self.device.config().firmware;
        let delay = match task {
            Task::Install => config.install_delay,
            _ => config.verify_delay,
        };
        self.firmware_job = Some((now + delay, task));
    }

    /// Starts fetching a Package URI.
    fn start_download(&mut self, now: Instant, stack: &mut Stack<P>, uri: &PackageUri) {
        let Some(peer) = self.resolve(uri) else {
            // No route to that host: Anjay reports an unreachable address as invalid URI.
            firmware::downloaded(&mut self.device, Err(UpdateResult::InvalidUri));
            return;
        };
        if let Some(q) = &mut self.queue {
            q.activity(now);
        }
        let id = stack.request(now, peer, uri.request(), true);
        self.download = Some((id, peer));
    }

    fn resolve(&self, uri: &PackageUri) -> Option<P> {
        let server_uri = self
            .device
            .server_account()
            .map_or_else(|| self.device.config().server_uri.clone(), |a| a.uri);
        let server = PackageUri::parse(&server_uri, &[0]).ok();
        if server.is_some_and(|s| s.host.eq_ignore_ascii_case(&uri.host) && s.port == uri.port) {
            return Some(self.server);
        }
        self.resolver.and_then(|r| r(&uri.host, uri.port))
    }

    /// The outcome of the package GET: the image (checked after the verify delay), or the
    /// Update Result of the failure (see the `firmware` module docs for the mapping).
    fn on_download(&mut self, now: Instant, outcome: Result<steward_coap::message::Response, ()>) {
        let outcome = match outcome {
            Ok(r) if r.code.is_success() => Ok(r.payload),
            Ok(r) if r.code == Code::NOT_FOUND => Err(UpdateResult::InvalidUri),
            Ok(_) | Err(()) => Err(UpdateResult::ConnectionLost),
        };
        if firmware::downloaded(&mut self.device, outcome) {
            self.schedule(now, Task::Verify);
        }
    }

    fn take_exchange(&mut self, id: RequestId) -> Option<Exchange> {
        let at = self.exchanges.iter().position(|(r, _)| *r == id)?;
        Some(self.exchanges.swap_remove(at).1)
    }

    fn apply(&mut self, now: Instant, stack: &mut Stack<P>, effect: Effect) {
        match effect {
            Effect::Firmware(Task::Download(uri)) => self.start_download(now, stack, &uri),
            Effect::Firmware(Task::Abort) => {
                self.firmware_job = None;
                if let Some((id, peer)) = self.download.take() {
                    stack.cancel(now, peer, id);
                }
            }
            Effect::Firmware(task) => self.schedule(now, task),
            Effect::Reboot | Effect::FactoryReset => {
                // Attributes live in RAM: a reboot forgets them (observations too, later).
                self.registration = Registration::new(registration_config(&self.device));
                self.exchanges.clear();
                self.observations.clear();
                self.bootstrap.stop();
                self.est_session = None;
                // A download or installation in progress does not survive the reboot.
                self.firmware_job = None;
                self.download = None;
                firmware::interrupted(&mut self.device);
                self.wake_at = Some(now + REBOOT_DELAY);
                self.events.push_back(DeviceEvent::Rebooting);
            }
            Effect::RegistrationUpdate => self.registration.trigger_update(),
            Effect::Disable => {
                self.registration.deregister();
                let until = now + self.disable_timeout();
                self.wake_at = Some(until);
                self.events.push_back(DeviceEvent::Disabled { until });
            }
            Effect::RegistrationParametersChanged => {
                self.registration.set_lifetime(self.device.lifetime());
                self.registration.set_binding(&self.device.binding());
            }
            Effect::ObjectsChanged => self
                .registration
                .set_object_links(self.device.object_links()),
            Effect::BootstrapRequest => match self.device.bootstrap_account() {
                Some(bs) => {
                    // Leave the current server politely, then belong to the bootstrap server.
                    self.registration.deregister();
                    self.observations.clear();
                    self.est_session = None;
                    self.start_bootstrap(&bs.uri, bs.hold_off);
                }
                None => self.events.push_back(DeviceEvent::Unsupported(effect)),
            },
            Effect::BootstrapFinished => self.bootstrap_finished(now),
            Effect::TrustReset => {
                self.events.push_back(DeviceEvent::TrustReset);
                if self.registration.is_registered() {
                    self.registration.deregister();
                }
                self.observations.clear();
                self.est_session = None;
                self.trusted_server = None;
                self.resume = None;
                self.device.forget_bootstrapped_accounts();
                self.bootstrap.stop();
                match self.device.bootstrap_account() {
                    Some(bs) => self.start_bootstrap(&bs.uri, Duration::ZERO),
                    None => self.events.push_back(DeviceEvent::Unsupported(effect)),
                }
            }
            Effect::Executed { path, arguments } => {
                self.events
                    .push_back(DeviceEvent::Executed { path, arguments });
            }
        }
    }

    /// Finish accepted: register with the configured account. Security Mode 4 enrols first
    /// and, with the OCSP check on, the server certificate is checked first
    /// ([`SimDevice::set_est`]); without an EST client mode 4 goes to the [`Enrolment`] hook.
    fn bootstrap_finished(&mut self, now: Instant) {
        self.bootstrap.finished();
        let Some(mut account) = self.device.server_accounts().into_iter().next() else {
            // Finish answers 4.06 without an account; nothing to do.
            return;
        };
        if let Some((config, job)) = self.est_job(&account) {
            if self.start_est(config, job, account, AfterEst::Bootstrapped) {
                // "Finished" now; "Bootstrapped" when the session is done.
                while let Some(e) = self.bootstrap.poll_event() {
                    self.events.push_back(DeviceEvent::Bootstrap(e));
                }
                return;
            }
            return self
                .bootstrap
                .unusable(now, "no EST server (bootstrap server) to reach".into());
        }
        match &account.security {
            Security::CertificateWithEst { .. } => match self.enrolment.enrol(&account) {
                Ok(security) => {
                    for (rid, resource) in security.resources() {
                        if let steward_objects::Resource::Single(v) = resource {
                            self.device.set(0, account.security_instance, rid, v);
                        }
                    }
                    account.security = security;
                }
                Err(e) => return self.bootstrap.unusable(now, e.to_string()),
            },
            Security::Unsupported(mode) => {
                let why = format!("security mode {mode} is not supported");
                return self.bootstrap.unusable(now, why);
            }
            Security::NoSec | Security::Psk { .. } | Security::Certificate { .. } => {}
        }
        self.connect(now, account);
    }

    /// Registers with a freshly bootstrapped (and, for mode 4, enrolled) account.
    fn connect(&mut self, now: Instant, account: ServerAccount) {
        let Some(peer) = self.peer_of(&account.uri) else {
            self.events.push_back(DeviceEvent::Unreachable {
                uri: account.uri.clone(),
            });
            return self
                .bootstrap
                .unusable(now, format!("cannot reach {}", account.uri));
        };
        self.device.use_server(account.ssid);
        self.server = peer;
        self.bootstrap_peer = None;
        self.resume = None;
        self.registration = Registration::new(registration_config(&self.device));
        self.exchanges.clear();
        self.registration.start();
        // "Finished" before "Bootstrapped", in the order they happened.
        while let Some(e) = self.bootstrap.poll_event() {
            self.events.push_back(DeviceEvent::Bootstrap(e));
        }
        self.events.push_back(DeviceEvent::Bootstrapped { account });
    }

    /// After a registration answer: a version fallback changes the device before the next
    /// Register is built (it is built at the next poll).
    fn on_registration_answer(&mut self, _now: Instant) {
        let lwm2m = self.registration.config().lwm2m;
        if lwm2m != self.device.lwm2m() {
            self.device.set_lwm2m(lwm2m);
            self.registration
                .adapt(self.device.object_links(), self.device.binding());
            self.bootstrap
                .set_lwm2m(lwm2m, self.device.preferred_format());
        }
    }

    /// Saves the state when it changed (state directory attached).
    fn persist(&mut self, now: Instant) {
        let unix = self.unix(now);
        let Some(p) = &mut self.persist else {
            return;
        };
        let registration = match (self.registration.location(), self.device.server_account()) {
            (Some(location), Some(account)) => {
                let lifetime = i64::from(self.registration.config().lifetime);
                let confirmed = p.confirmed_at.unwrap_or(now);
                let since = i64::try_from(now.saturating_duration_since(confirmed).as_secs())
                    .unwrap_or(i64::MAX);
                Some(SavedRegistration {
                    location: location.to_owned(),
                    server_uri: account.uri,
                    expires: if lifetime == 0 {
                        i64::MAX
                    } else {
                        unix.saturating_sub(since).saturating_add(lifetime)
                    },
                })
            }
            _ => None,
        };
        let state = DeviceState::capture(&self.device, registration, p.credentials.clone());
        if p.last.as_ref() == Some(&state) {
            return;
        }
        match p.store.save(&state) {
            Ok(()) => p.last = Some(state),
            Err(e) => {
                // Remember it anyway: one failure event per change, not one per poll.
                p.last = Some(state);
                self.events.push_back(DeviceEvent::StateSaveFailed {
                    error: e.to_string(),
                });
            }
        }
    }

    /// The device's wall-clock time at `now` (a clock before 1970 reads as 1970).
    fn wall(&self, now: Instant) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(self.unix(now)).unwrap_or(0))
    }

    /// Unix seconds at `now`, from the clock the device was configured with.
    fn unix(&self, now: Instant) -> i64 {
        let elapsed = self
            .epoch
            .map_or(0, |e| now.saturating_duration_since(e).as_secs());
        self.device
            .config()
            .clock
            .saturating_add(i64::try_from(elapsed).unwrap_or(i64::MAX))
    }

    fn disable_timeout(&self) -> Duration {
        match self.device.node(&steward_objects::Path::Resource(1, 0, 5)) {
            Some(steward_objects::Node::Resource(steward_objects::Resource::Single(
                steward_objects::Value::Integer(s),
            ))) => Duration::from_secs(u64::try_from(s).unwrap_or(0)),
            Some(steward_objects::Node::Resource(steward_objects::Resource::Single(
                steward_objects::Value::UnsignedInteger(s),
            ))) => Duration::from_secs(s),
            _ => DEFAULT_DISABLE_TIMEOUT,
        }
    }
}

/// The subject CN of a DER certificate.
fn common_name(der: &[u8]) -> Result<String, String> {
    let cert = openssl::x509::X509::from_der(der).map_err(|e| e.to_string())?;
    let entry = cert
        .subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .ok_or_else(|| "no CN".to_owned())?;
    String::from_utf8(entry.data().as_slice().to_vec()).map_err(|e| e.to_string())
}

fn bootstrap_config(device: &Device) -> BootstrapConfig {
    let mut config = BootstrapConfig::new(device.config().endpoint.clone(), device.lwm2m());
    config.preferred_format = device.preferred_format();
    if let Some(t) = device.trust() {
        // A locked-out device asks for a recovery token at least this often.
        let every = t.config().recovery_retry;
        config.retry_base = config.retry_base.min(every);
        config.retry_max = config.retry_max.min(every);
    }
    config
}

fn registration_config(device: &Device) -> RegistrationConfig {
    let c = device.config();
    let mut config = RegistrationConfig::new(c.endpoint.clone(), c.lwm2m, device.object_links());
    config.lifetime = device.lifetime();
    config.binding = device.binding();
    config.queue_mode = c.queue_mode;
    config
}

/// A [`SimDevice`] with its own stack: the machine a driver runs.
#[derive(Debug)]
pub struct Client<P: Copy + Eq + Hash + Ord + Debug> {
    pub stack: Stack<P>,
    pub device: SimDevice<P>,
}

impl<P: Copy + Eq + Hash + Ord + Debug> Client<P> {
    pub fn new(config: DeviceConfig, stack: StackConfig, server: P) -> Client<P> {
        Client {
            stack: Stack::new(stack),
            device: SimDevice::new(config, server),
        }
    }

    pub fn start(&mut self, now: Instant) {
        self.device.start();
        self.drive(now);
    }

    pub fn deregister(&mut self, now: Instant) {
        self.device.deregister();
        self.drive(now);
    }

    pub fn handle(&mut self, now: Instant, peer: P, datagram: &[u8]) {
        // A sleeping queue-mode device has its radio off: the datagram never arrives.
        if self.device.is_awake() {
            self.stack.handle(now, peer, datagram);
        }
        self.drive(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.stack.handle_timeout(now);
        self.drive(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.stack.poll_timeout(), self.device.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn poll_transmit(&mut self) -> Option<(P, Vec<u8>)> {
        self.stack.poll_transmit().map(|t| (t.peer, t.datagram))
    }

    pub fn poll_event(&mut self) -> Option<DeviceEvent> {
        self.device.poll_event()
    }

    /// Feeds the stack's events to the device and lets it send, until both are quiet (a
    /// request may fail at once and produce another event).
    fn drive(&mut self, now: Instant) {
        loop {
            self.device.poll(now, &mut self.stack);
            let Some(event) = self.stack.poll_event() else {
                return;
            };
            self.device.on_event(now, &mut self.stack, event);
        }
    }
}

impl steward_transport::Machine for Client<SocketAddr> {
    type Event = DeviceEvent;

    fn handle(&mut self, now: Instant, peer: SocketAddr, datagram: &[u8]) {
        Client::handle(self, now, peer, datagram);
    }
    fn handle_timeout(&mut self, now: Instant) {
        Client::handle_timeout(self, now);
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Client::poll_timeout(self)
    }
    fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        Client::poll_transmit(self)
    }
    fn poll_event(&mut self) -> Option<DeviceEvent> {
        Client::poll_event(self)
    }
    fn forget_peer(&mut self, peer: SocketAddr) {
        self.stack.forget_peer(peer);
    }
}
