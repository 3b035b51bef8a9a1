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
use steward_coap::stack::{Stack, StackConfig};

use crate::device::{self, Device, DeviceConfig, Effect};
use crate::registration::{Exchange, Registration, RegistrationConfig, RegistrationEvent};

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
}

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
}

impl<P: Copy + Eq + Hash + Ord + Debug> SimDevice<P> {
    /// A device that will register with `server` once [`SimDevice::start`]ed.
    pub fn new(config: DeviceConfig, server: P) -> SimDevice<P> {
        let device = Device::new(config);
        let registration = Registration::new(registration_config(&device));
        SimDevice {
            device,
            registration,
            server,
            exchanges: Vec::new(),
            wake_at: None,
            events: VecDeque::new(),
        }
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
                let response = device::handle(&mut self.device, &request);
                self.events.push_back(DeviceEvent::Served {
                    method: request.method,
                    path: request.path_string(),
                    code: response.code,
                });
                // NotPending means the exchange is gone (peer forgotten): nothing to answer.
                let _ = stack.respond(now, id, response);
                let effects = self.device.take_effects();
                for effect in effects {
                    self.apply(now, effect);
                }
            }
            Event::Response { id, response, .. } => {
                if let Some(exchange) = self.take_exchange(id) {
                    self.registration.on_response(now, exchange, &response);
                }
            }
            Event::Failed { id, .. } => {
                if let Some(exchange) = self.take_exchange(id) {
                    self.registration.on_failure(now, exchange);
                }
            }
            // Observations are served as plain reads so far; nothing to end.
            Event::ObserveEnded { .. } => {}
        }
    }

    /// Acts on due timers and sends what the registration wants sent.
    pub fn poll(&mut self, now: Instant, stack: &mut Stack<P>) {
        if self.wake_at.is_some_and(|at| at <= now) {
            self.start();
        }
        self.registration.handle_timeout(now);
        while let Some((exchange, request)) = self.registration.poll_request() {
            let id = stack.request(now, self.server, request, true);
            self.exchanges.push((id, exchange));
        }
        while let Some(e) = self.registration.poll_event() {
            self.events.push_back(DeviceEvent::Registration(e));
        }
    }

    /// The next instant [`SimDevice::poll`] has work at.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.registration.poll_timeout(), self.wake_at]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn poll_event(&mut self) -> Option<DeviceEvent> {
        self.events.pop_front()
    }

    fn take_exchange(&mut self, id: RequestId) -> Option<Exchange> {
        let at = self.exchanges.iter().position(|(r, _)| *r == id)?;
        Some(self.exchanges.swap_remove(at).1)
    }

    fn apply(&mut self, now: Instant, effect: Effect) {
        match effect {
            Effect::Reboot | Effect::FactoryReset => {
                // Attributes live in RAM: a reboot forgets them (observations too, later).
                self.registration = Registration::new(registration_config(&self.device));
                self.exchanges.clear();
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
        self.stack.handle(now, peer, datagram);
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
