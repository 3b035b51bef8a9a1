//! The client side of the Registration interface (Transport §6.4.3) as a sans-IO state
//! machine: Register, Update before the lifetime runs out, Deregister, re-register when the
//! server forgot us, back off when it does not answer.
//!
//! Driving surface, like the CoAP layer: [`Registration::poll_request`] hands out the next
//! request to send (at most one is in flight), the caller reports its outcome with
//! [`Registration::on_response`] or [`Registration::on_failure`], [`Registration::poll_timeout`]
//! names the next deadline and [`Registration::handle_timeout`] acts on it. No clock, no I/O.
//!
//! Version fallback: a server that does not speak the client's LwM2M version answers Register
//! with 4.12 Precondition Failed (Transport §6.4.3). The client then registers again at once
//! with the next lower version it supports (1.2 → 1.1 → 1.0), announced as
//! [`RegistrationEvent::VersionFallback`] so the device loop can adapt the device (models,
//! formats, binding style) before the new Register is built. Only a 4.12 at the lowest version
//! is reported as a failure and backed off; the device stays at that version (a real device
//! keeps the version it last negotiated, and so does its persisted state).
//!
//! When to update: at `lifetime − margin`, where the margin is a tenth of the lifetime but at
//! least 93 s (CoAP MAX_TRANSMIT_WAIT, so a fully retransmitted Update still lands in time)
//! and at most half the lifetime (so short test lifetimes still update before expiry).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use steward_coap::message::{Code, Method, Request, Response, option};
use steward_objects::link::ObjectLinks;
use steward_objects::{ContentFormat, Version};

/// CoAP MAX_TRANSMIT_WAIT with default parameters (RFC 7252 §4.8.2).
const MAX_TRANSMIT_WAIT: Duration = Duration::from_secs(93);

/// What the device registers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationConfig {
    pub endpoint: String,
    pub lwm2m: Version,
    /// The lowest version to fall back to on 4.12 (1.0 unless told otherwise).
    pub min_lwm2m: Version,
    /// Seconds; 0 means the registration never expires and no periodic Update is sent.
    pub lifetime: u32,
    /// `b=` as the device states it (`U`, or `UQ` for a 1.0 queue-mode device).
    pub binding: String,
    /// `Q` (1.1+); a 1.0 device puts queue mode in its binding instead.
    pub queue_mode: bool,
    pub object_links: ObjectLinks,
    /// First retry delay after a failed Register; doubles per failure up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl RegistrationConfig {
    pub fn new(endpoint: impl Into<String>, lwm2m: Version, object_links: ObjectLinks) -> Self {
        RegistrationConfig {
            endpoint: endpoint.into(),
            lwm2m,
            min_lwm2m: Version::V1_0,
            lifetime: 300,
            binding: "U".to_owned(),
            queue_mode: false,
            object_links,
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(300),
        }
    }
}

/// Where the registration stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Not started, or deregistered.
    Idle,
    /// Register sent or about to be.
    Registering,
    /// Registered at `location` (e.g. `/rd/5a3f`).
    Registered { location: String },
    /// Waiting to try Register again.
    Backoff { until: Instant },
    /// De-register sent.
    Deregistering,
}

/// What happened, for progress output and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationEvent {
    Registered {
        location: String,
    },
    Updated,
    Deregistered,
    /// Register failed (`code` is `None` on a timeout); the next attempt is in `retry_in`.
    RegisterFailed {
        code: Option<Code>,
        retry_in: Duration,
    },
    /// The server no longer knows us (4.04, or another error) or did not answer an Update:
    /// the device registers again.
    UpdateFailed {
        code: Option<Code>,
    },
    /// The server refused `from` with 4.12: the next Register, at once, says `to`.
    VersionFallback {
        from: Version,
        to: Version,
    },
}

/// The versions a client falls back through, highest first.
pub const VERSIONS: [Version; 3] = [Version::V1_2, Version::V1_1, Version::V1_0];

/// Names one request handed out by [`Registration::poll_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Exchange(u64);

/// Which registration request is in flight ([`Registration::in_flight`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    Register,
    Update,
    Deregister,
}

/// Changes that the next Update must carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Changes {
    lifetime: bool,
    binding: bool,
    objects: bool,
}

/// The registration state machine; see the module docs.
#[derive(Debug, Clone)]
pub struct Registration {
    config: RegistrationConfig,
    state: State,
    /// The request in flight.
    in_flight: Option<(Exchange, RequestKind)>,
    /// A request decided on but not handed out yet.
    queued: Option<RequestKind>,
    next_exchange: u64,
    /// When the next periodic Update is due (registered only).
    update_at: Option<Instant>,
    failures: u32,
    changes: Changes,
    /// Deregister once the request in flight is done.
    deregister_wanted: bool,
    events: VecDeque<RegistrationEvent>,
}

impl Registration {
    pub fn new(config: RegistrationConfig) -> Registration {
        Registration {
            config,
            state: State::Idle,
            in_flight: None,
            queued: None,
            next_exchange: 0,
            update_at: None,
            failures: 0,
            changes: Changes::default(),
            deregister_wanted: false,
            events: VecDeque::new(),
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn config(&self) -> &RegistrationConfig {
        &self.config
    }

    /// The Location-Path the server gave us, while registered.
    pub fn location(&self) -> Option<&str> {
        match &self.state {
            State::Registered { location } => Some(location),
            _ => None,
        }
    }

    /// The request handed out and not answered yet: a load generator times it from here.
    pub fn in_flight(&self) -> Option<RequestKind> {
        self.in_flight.map(|(_, kind)| kind)
    }

    pub fn is_registered(&self) -> bool {
        matches!(self.state, State::Registered { .. })
    }

    /// Starts registering (again): a fresh Register, whatever the state. A reboot or a new
    /// DTLS session needs this (Transport §5.2.6: an Update is not enough).
    pub fn start(&mut self) {
        self.deregister_wanted = false;
        self.update_at = None;
        self.state = State::Registering;
        self.queued = Some(RequestKind::Register);
        // A reply to an older request must not be taken for the answer to this one.
        self.in_flight = None;
    }

    /// Resumes a registration that survived a restart (persisted location, lifetime not run
    /// out): an Update instead of a Register. A 4.04 to it makes the device register again.
    pub fn resume(&mut self, location: impl Into<String>) {
        self.deregister_wanted = false;
        self.update_at = None;
        self.in_flight = None;
        self.state = State::Registered {
            location: location.into(),
        };
        self.queued = Some(RequestKind::Update);
    }

    /// The device adapted to a new version (after [`RegistrationEvent::VersionFallback`]):
    /// the next Register carries these.
    pub fn adapt(&mut self, object_links: ObjectLinks, binding: String) {
        self.config.object_links = object_links;
        self.config.binding = binding;
    }

    /// Sends an Update now (Registration Update Trigger) if registered.
    pub fn trigger_update(&mut self) {
        if self.is_registered() && self.queued.is_none() {
            self.queued = Some(RequestKind::Update);
        }
    }

    /// The lifetime changed (`/1/x/1` written): the next Update carries `lt=`.
    pub fn set_lifetime(&mut self, lifetime: u32) {
        if lifetime != self.config.lifetime {
            self.config.lifetime = lifetime;
            self.changes.lifetime = true;
            self.trigger_update();
        }
    }

    /// The binding changed (`/1/x/7` written): the next Update carries `b=`.
    pub fn set_binding(&mut self, binding: &str) {
        if binding != self.config.binding {
            binding.clone_into(&mut self.config.binding);
            self.changes.binding = true;
            self.trigger_update();
        }
    }

    /// Instances were created or deleted: the next Update carries the object links.
    pub fn set_object_links(&mut self, links: ObjectLinks) {
        if links != self.config.object_links {
            self.config.object_links = links;
            self.changes.objects = true;
            self.trigger_update();
        }
    }

    /// Deregisters (after the request in flight, if any); stays idle afterwards.
    pub fn deregister(&mut self) {
        match self.state {
            State::Registered { .. } if self.in_flight.is_none() => {
                self.queued = Some(RequestKind::Deregister);
            }
            State::Registered { .. } | State::Registering => self.deregister_wanted = true,
            State::Idle | State::Deregistering => {}
            State::Backoff { .. } => {
                self.state = State::Idle;
                self.queued = None;
                self.events.push_back(RegistrationEvent::Deregistered);
            }
        }
    }

    /// The next request to send, with the name to report its outcome under.
    pub fn poll_request(&mut self) -> Option<(Exchange, Request)> {
        if self.in_flight.is_some() {
            return None;
        }
        let kind = self.queued.take()?;
        let request = match (kind, &self.state) {
            (RequestKind::Register, _) => self.register_request(),
            (RequestKind::Update, State::Registered { location }) => {
                let location = location.clone();
                self.update_request(&location)
            }
            (RequestKind::Deregister, State::Registered { location }) => {
                let location = location.clone();
                self.state = State::Deregistering;
                Request::new(Method::Delete).with_path(&location)
            }
            // The state moved on since this was queued (e.g. re-registering): drop it.
            _ => return None,
        };
        self.next_exchange += 1;
        let exchange = Exchange(self.next_exchange);
        self.in_flight = Some((exchange, kind));
        Some((exchange, request))
    }

    /// The response to a request we handed out.
    pub fn on_response(&mut self, now: Instant, exchange: Exchange, response: &Response) {
        let Some(kind) = self.take_in_flight(exchange) else {
            return;
        };
        match kind {
            RequestKind::Register => match location_of(response) {
                Some(location) if response.code == Code::CREATED => {
                    self.failures = 0;
                    self.changes = Changes::default();
                    self.state = State::Registered {
                        location: location.clone(),
                    };
                    self.schedule_update(now);
                    self.events
                        .push_back(RegistrationEvent::Registered { location });
                    if self.deregister_wanted {
                        self.deregister_wanted = false;
                        self.queued = Some(RequestKind::Deregister);
                    }
                }
                _ if response.code == Code::PRECONDITION_FAILED && self.fall_back() => {}
                // A 2.01 without Location-Path cannot be updated or deleted: a failure too.
                _ => self.register_failed(now, Some(response.code)),
            },
            RequestKind::Update if response.code == Code::CHANGED => {
                self.failures = 0;
                self.changes = Changes::default();
                self.schedule_update(now);
                self.events.push_back(RegistrationEvent::Updated);
                if self.deregister_wanted {
                    self.deregister_wanted = false;
                    self.queued = Some(RequestKind::Deregister);
                }
            }
            RequestKind::Update => self.update_failed(Some(response.code)),
            // 2.02, or an error: either way the server holds nothing we still use.
            RequestKind::Deregister => self.deregistered(),
        }
    }

    /// A request we handed out got no response (the CoAP layer gave up).
    pub fn on_failure(&mut self, now: Instant, exchange: Exchange) {
        let Some(kind) = self.take_in_flight(exchange) else {
            return;
        };
        match kind {
            RequestKind::Register => self.register_failed(now, None),
            RequestKind::Update => self.update_failed(None),
            RequestKind::Deregister => self.deregistered(),
        }
    }

    /// The next instant [`Registration::handle_timeout`] must be called at.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Backoff { until } => Some(until),
            State::Registered { .. } if self.in_flight.is_none() && self.queued.is_none() => {
                self.update_at
            }
            _ => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Backoff { until } if until <= now => self.start(),
            State::Registered { .. }
                if self.update_at.is_some_and(|at| at <= now)
                    && self.in_flight.is_none()
                    && self.queued.is_none() =>
            {
                self.update_at = None;
                self.queued = Some(RequestKind::Update);
            }
            _ => {}
        }
    }

    pub fn poll_event(&mut self) -> Option<RegistrationEvent> {
        self.events.pop_front()
    }

    fn take_in_flight(&mut self, exchange: Exchange) -> Option<RequestKind> {
        match self.in_flight {
            Some((e, kind)) if e == exchange => {
                self.in_flight = None;
                Some(kind)
            }
            _ => None,
        }
    }

    fn register_request(&self) -> Request {
        let c = &self.config;
        let mut request = Request::new(Method::Post)
            .with_path("/rd")
            .with_query(&format!("ep={}", c.endpoint))
            .with_query(&format!("lt={}", c.lifetime))
            .with_query(&format!("lwm2m={}", c.lwm2m))
            .with_query(&format!("b={}", c.binding));
        if c.queue_mode && c.lwm2m >= Version::V1_1 {
            request = request.with_query("Q");
        }
        request.with_payload(
            ContentFormat::LinkFormat.code(),
            c.object_links.to_string().into_bytes(),
        )
    }

    /// An Update carries only what changed (Transport §6.4.3); a periodic one carries nothing.
    fn update_request(&self, location: &str) -> Request {
        let c = &self.config;
        let mut request = Request::new(Method::Post).with_path(location);
        if self.changes.lifetime {
            request = request.with_query(&format!("lt={}", c.lifetime));
        }
        if self.changes.binding {
            request = request.with_query(&format!("b={}", c.binding));
        }
        if self.changes.objects {
            request = request.with_payload(
                ContentFormat::LinkFormat.code(),
                c.object_links.to_string().into_bytes(),
            );
        }
        request
    }

    /// 4.12 to a Register: on to the next lower version, if there is one.
    fn fall_back(&mut self) -> bool {
        let from = self.config.lwm2m;
        let Some(to) = VERSIONS
            .into_iter()
            .find(|v| *v < from && *v >= self.config.min_lwm2m)
        else {
            return false;
        };
        self.config.lwm2m = to;
        self.events
            .push_back(RegistrationEvent::VersionFallback { from, to });
        if self.deregister_wanted {
            self.deregister_wanted = false;
            self.deregistered();
        } else {
            self.state = State::Registering;
            self.queued = Some(RequestKind::Register);
        }
        true
    }

    fn schedule_update(&mut self, now: Instant) {
        self.update_at = match self.config.lifetime {
            0 => None,
            lt => {
                let lifetime = Duration::from_secs(u64::from(lt));
                let margin = (lifetime / 10).max(MAX_TRANSMIT_WAIT).min(lifetime / 2);
                Some(now + (lifetime - margin))
            }
        };
    }

    fn register_failed(&mut self, now: Instant, code: Option<Code>) {
        self.failures = self.failures.saturating_add(1);
        let retry_in =
            crate::retry::backoff(self.failures, self.config.retry_base, self.config.retry_max);
        self.update_at = None;
        if self.deregister_wanted {
            // Nobody wants this registration any more: stop instead of retrying.
            self.deregister_wanted = false;
            return self.deregistered();
        }
        self.state = State::Backoff {
            until: now + retry_in,
        };
        self.events
            .push_back(RegistrationEvent::RegisterFailed { code, retry_in });
    }

    /// 4.04 means the server lost the registration; any failed Update leaves us unsure that
    /// it still holds one, and registering again is the only way to be sure (Core §6.2.2).
    fn update_failed(&mut self, code: Option<Code>) {
        self.events
            .push_back(RegistrationEvent::UpdateFailed { code });
        if self.deregister_wanted {
            self.deregister_wanted = false;
            return self.deregistered();
        }
        self.start();
        // Keep what changed: the new Register carries all of it anyway.
    }

    fn deregistered(&mut self) {
        self.state = State::Idle;
        self.update_at = None;
        self.queued = None;
        self.events.push_back(RegistrationEvent::Deregistered);
    }
}

/// `/rd/5a3f` from the Location-Path options of a 2.01.
fn location_of(response: &Response) -> Option<String> {
    let segments: Vec<&str> = response
        .options
        .get_all(option::LOCATION_PATH)
        .map(|s| std::str::from_utf8(s).ok())
        .collect::<Option<_>>()?;
    if segments.is_empty() || segments.iter().any(|s| s.is_empty()) {
        return None;
    }
    Some(format!("/{}", segments.join("/")))
}
