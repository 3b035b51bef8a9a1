//! The device loop: a [`Device`] answering the server and a [`Registration`] talking to it,
//! over a CoAP [`Stack`].
//!
//! [`SimDevice`] does not own the stack, so tests can hand it the client side of a
//! `steward_coap::sim::Pair`; [`Client`] owns one and has the driving surface a tokio driver
//! needs.

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

use crate::device::{self, Device, DeviceConfig, Effect};
use crate::firmware::{self, PackageUri, Task, UpdateResult};
use crate::observe::{self, Observations};
use crate::queue::{Queue, Transition};
use crate::registration::{Exchange, Registration, RegistrationConfig, RegistrationEvent};
use crate::send::{self, SendError};
use crate::sensors::Sensors;

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
    /// Disable executed: silent until the Disable Timeout runs out.
    Disabled {
        until: Instant,
    },
    /// Something the simulator does not do yet (Bootstrap-Request Trigger).
    Unsupported(Effect),
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
        }
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

    /// Starts registering; call [`SimDevice::poll`] to send.
    pub fn start(&mut self) {
        self.wake_at = None;
        if let Some(q) = &mut self.queue {
            q.reset();
        }
        self.registration.start();
    }

    /// Deregisters; call [`SimDevice::poll`] to send.
    pub fn deregister(&mut self) {
        self.wake_at = None;
        self.registration.deregister();
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
        while let Some(e) = self.registration.poll_event() {
            self.events.push_back(DeviceEvent::Registration(e));
        }
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
        let server_uri = match self.device.node(&Path::Resource(0, 0, 0)) {
            Some(steward_objects::Node::Resource(steward_objects::Resource::Single(
                steward_objects::Value::String(s),
            ))) => s,
            _ => self.device.config().server_uri.clone(),
        };
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
            Effect::BootstrapRequest => self.events.push_back(DeviceEvent::Unsupported(effect)),
        }
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
