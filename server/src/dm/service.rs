//! [`DeviceRequests`]: the one service through which everything (API, plugins, CLI) talks to
//! devices. Sans-IO like the rest of the server: the caller owns the CoAP `Stack`, feeds this
//! service `now`, registrations and the stack's events, and carries out its [`Command`]s.
//!
//! Flow of one request:
//! 1. [`DeviceRequests::send`] looks up the registration, builds the CoAP request (all checks
//!    happen here: nothing invalid is sent) and returns a [`Ticket`];
//! 2. it is sent at once ([`Command::Send`]) or, for a queue-mode device that is asleep (or
//!    busy with a previous request), queued;
//! 3. the caller passes the stack's `RequestId` back with [`DeviceRequests::sent`], then the
//!    stack's events with [`DeviceRequests::on_stack_event`] (or `on_response`/`on_failure`);
//! 4. the outcome comes out of [`DeviceRequests::poll_event`] as [`DmEvent::Completed`].
//!
//! Queue mode (Transport §6.5): a device is awake for `awake_window` (MAX_TRANSMIT_WAIT,
//! 93 s) after its last uplink ([`DeviceRequests::on_uplink`]: Register, Update, Send, or any
//! answer to us). Queued requests go out one at a time, the next after the previous one's
//! outcome, while it is awake; a queued request whose timeout passes fails with
//! [`DmError::Expired`]. Presence changes are [`DmEvent::Awake`] and [`DmEvent::Sleeping`].
//!
//! Queued requests are made durable by the caller: a request that enters the queue comes out
//! as [`Command::Persist`] (its record, see [`super::queue`]), and [`Command::Unpersist`]
//! follows once it has an outcome. After a restart, [`DeviceRequests::restore_queued`] puts the
//! stored records back under fresh tickets; their outcomes are ordinary
//! [`DmEvent::Completed`] events (nobody waits for those tickets any more: the runtime
//! publishes them on its event stream with the store's queue ID).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use steward_coap::endpoint::{Event, Failure, RequestId};
use steward_coap::message::{Request, Response};
use steward_objects::{ModelRegistry, NodeMap, Path, Version};

use super::error::DmError;
use super::queue::{DownlinkQueues, QueuedEntry, RecordError, decode_queued, encode_queued};
use super::request::{BuiltRequest, DownlinkRequest, RequestKind};
use super::response::{DownlinkResponse, decode_composite, decode_response, decode_single};
use crate::lwm2m::{LinkSummary, RegisteredClient, Registrations};

/// CoAP MAX_TRANSMIT_WAIT with the default transmission parameters (RFC 7252 §4.8.2): how
/// long a queue-mode client stays reachable after it last sent something (Transport §6.5).
pub const MAX_TRANSMIT_WAIT: Duration = Duration::from_secs(93);

/// Names one request given to [`DeviceRequests::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(u64);

impl Ticket {
    /// The ticket's number (unique for the life of one service).
    pub fn id(self) -> u64 {
        self.0
    }

    #[cfg(test)]
    pub(crate) fn for_test(id: u64) -> Ticket {
        Ticket(id)
    }
}

impl fmt::Display for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dm#{}", self.0)
    }
}

#[derive(Debug, Clone)]
pub struct DmConfig {
    /// How long a queue-mode device counts as awake after an uplink.
    pub awake_window: Duration,
    /// Requests waiting per sleeping device; more are refused with [`DmError::QueueFull`].
    pub max_queued_per_endpoint: usize,
}

impl Default for DmConfig {
    fn default() -> Self {
        DmConfig {
            awake_window: MAX_TRANSMIT_WAIT,
            max_queued_per_endpoint: 64,
        }
    }
}

/// What the caller must do on its stack.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `stack.request(now, peer(address), request, confirmable)`, then
    /// [`DeviceRequests::sent`] with the id it returns.
    Send {
        ticket: Ticket,
        address: String,
        request: Request,
        confirmable: bool,
    },
    /// `stack.cancel(now, peer(address), id)`: a request we gave up on, or an observation
    /// cancelled passively (the next notification gets a Reset).
    Cancel { address: String, id: RequestId },
    /// A request entered `endpoint`'s queue: store `record` (see [`super::queue`] for its
    /// encoding) so it survives a restart, and remember which stored entry `ticket` is.
    Persist {
        ticket: Ticket,
        endpoint: String,
        record: Vec<u8>,
        queued_at: Instant,
        deadline: Instant,
    },
    /// The queued request of `ticket` has an outcome (or was given up): remove its stored
    /// entry. Only follows a [`Command::Persist`] or a [`DeviceRequests::restore_queued`].
    Unpersist { ticket: Ticket, endpoint: String },
}

/// A notification of an established observation.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The ticket of the Observe request.
    pub ticket: Ticket,
    pub endpoint: String,
    pub paths: Vec<Path>,
    /// The values, by observed path (one entry for a single-path observation).
    pub nodes: NodeMap,
    pub observe: Option<u32>,
}

/// What the service reports.
#[derive(Debug, Clone, PartialEq)]
pub enum DmEvent {
    Completed {
        ticket: Ticket,
        endpoint: String,
        result: Result<DownlinkResponse, DmError>,
    },
    Notification(Notification),
    /// The observation of this ticket ended (error notification, reset, device gone).
    ObservationEnded {
        ticket: Ticket,
        endpoint: String,
        reason: DmError,
    },
    /// A queue-mode device that was asleep sent something.
    Awake {
        endpoint: String,
    },
    /// A queue-mode device's awake window ran out.
    Sleeping {
        endpoint: String,
    },
}

/// What the service knows about a client, refreshed from its registration at every `send`
/// and uplink.
#[derive(Debug, Clone)]
struct ClientView {
    address: String,
    links: LinkSummary,
    queue_mode: bool,
    awake_until: Option<Instant>,
    /// The queue-mode request on the wire, if any (one at a time).
    in_flight: Option<Ticket>,
}

impl ClientView {
    fn from_client(client: &RegisteredClient, previous: Option<&ClientView>) -> ClientView {
        ClientView {
            address: client.registration.address.clone(),
            links: client.links.clone(),
            queue_mode: client.registration.queue_mode,
            awake_until: previous.and_then(|p| p.awake_until),
            in_flight: previous.and_then(|p| p.in_flight),
        }
    }

    fn is_awake(&self, now: Instant) -> bool {
        self.awake_until.is_some_and(|t| t > now)
    }
}

/// A request sent and not yet answered, or an established observation.
#[derive(Debug, Clone)]
struct Exchange {
    endpoint: String,
    kind: RequestKind,
    built: BuiltRequest,
    deadline: Instant,
    request_id: Option<RequestId>,
}

#[derive(Debug)]
pub struct DeviceRequests {
    config: DmConfig,
    models: ModelRegistry,
    next_ticket: u64,
    clients: HashMap<String, ClientView>,
    pending: HashMap<Ticket, Exchange>,
    observations: HashMap<Ticket, Exchange>,
    by_request: HashMap<RequestId, Ticket>,
    queues: DownlinkQueues,
    /// Tickets whose queue entry is in the store (until their outcome).
    persisted: HashSet<Ticket>,
    commands: VecDeque<Command>,
    events: VecDeque<DmEvent>,
}

impl DeviceRequests {
    pub fn new(config: DmConfig, models: ModelRegistry) -> DeviceRequests {
        DeviceRequests {
            config,
            models,
            next_ticket: 1,
            clients: HashMap::new(),
            pending: HashMap::new(),
            observations: HashMap::new(),
            by_request: HashMap::new(),
            queues: DownlinkQueues::default(),
            persisted: HashSet::new(),
            commands: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn models(&self) -> &ModelRegistry {
        &self.models
    }

    /// For models learnt after start (plugins loaded or reloaded).
    pub fn models_mut(&mut self) -> &mut ModelRegistry {
        &mut self.models
    }

    /// Builds `request` for `endpoint` and sends or queues it. `timeout` covers the whole
    /// life of the request, time spent queued included.
    pub fn send(
        &mut self,
        now: Instant,
        registrations: &Registrations,
        endpoint: &str,
        request: DownlinkRequest,
        timeout: Duration,
    ) -> Result<Ticket, DmError> {
        let client = registrations
            .by_endpoint(endpoint)
            .ok_or_else(|| DmError::NotRegistered(endpoint.to_owned()))?;
        let models = self.models.for_client(&client.announced_versions());
        let built = request.build(client, &models)?;
        let kind = RequestKind::from(&request);
        let view = ClientView::from_client(client, self.clients.get(endpoint));
        let queue_mode = view.queue_mode;
        let can_go = !queue_mode
            || (view.is_awake(now) && view.in_flight.is_none() && self.queues.is_empty(endpoint));
        if !can_go && self.queues.len(endpoint) >= self.config.max_queued_per_endpoint {
            return Err(DmError::QueueFull {
                endpoint: endpoint.to_owned(),
                limit: self.config.max_queued_per_endpoint,
            });
        }
        self.clients.insert(endpoint.to_owned(), view);
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        let deadline = now + timeout;
        if can_go {
            self.dispatch(ticket, endpoint, kind, built, deadline);
        } else {
            if let Ok(record) = encode_queued(ticket, &kind, &built) {
                // Encoding into memory cannot fail with these types; if it ever did, the
                // request would still be queued, in memory only.
                self.persisted.insert(ticket);
                self.commands.push_back(Command::Persist {
                    ticket,
                    endpoint: endpoint.to_owned(),
                    record,
                    queued_at: now,
                    deadline,
                });
            }
            self.queues.enqueue(
                endpoint,
                QueuedEntry {
                    ticket,
                    kind,
                    built,
                    queued_at: now,
                    deadline,
                },
            );
        }
        Ok(ticket)
    }

    /// Puts a queued request read back from the store (after a restart) into `endpoint`'s
    /// queue under a fresh ticket. `waited` is how long it has been queued so far,
    /// `remaining` how long it may still wait (zero: it expired while the server was down, and
    /// the next [`DeviceRequests::handle_timeout`] fails it with [`DmError::Expired`]). An
    /// endpoint that is not registered any more fails it at once with
    /// [`DmError::Deregistered`]. Either way its outcome ends with [`Command::Unpersist`]:
    /// the caller must already know which stored entry the returned ticket is. No
    /// [`Command::Persist`]: it is stored already.
    pub fn restore_queued(
        &mut self,
        now: Instant,
        registrations: &Registrations,
        endpoint: &str,
        record: &[u8],
        waited: Duration,
        remaining: Duration,
    ) -> Result<(Ticket, RequestKind), RecordError> {
        let decoded = decode_queued(record)?;
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        self.persisted.insert(ticket);
        if let Some(client) = registrations.by_endpoint(endpoint) {
            let view = ClientView::from_client(client, self.clients.get(endpoint));
            self.clients.insert(endpoint.to_owned(), view);
            self.queues.enqueue(
                endpoint,
                QueuedEntry {
                    ticket,
                    kind: decoded.kind.clone(),
                    built: decoded.built,
                    queued_at: now.checked_sub(waited).unwrap_or(now),
                    deadline: now + remaining,
                },
            );
        } else {
            self.report(ticket, endpoint, Err(DmError::Deregistered));
        }
        Ok((ticket, decoded.kind))
    }

    /// The stack's id for a [`Command::Send`], so its events can be matched.
    pub fn sent(&mut self, ticket: Ticket, id: RequestId) {
        if let Some(exchange) = self.pending.get_mut(&ticket) {
            exchange.request_id = Some(id);
            self.by_request.insert(id, ticket);
        }
    }

    /// The ticket a stack request id belongs to, if it is ours.
    pub fn ticket_of(&self, id: RequestId) -> Option<Ticket> {
        self.by_request.get(&id).copied()
    }

    /// Takes a stack event; false when it is not about one of our requests.
    pub fn on_stack_event<P>(&mut self, now: Instant, event: &Event<P>) -> bool {
        match event {
            Event::Response { id, response, .. } => match self.ticket_of(*id) {
                Some(ticket) => {
                    self.on_response(now, ticket, response);
                    true
                }
                None => false,
            },
            Event::Failed { id, reason, .. } => match self.ticket_of(*id) {
                Some(ticket) => {
                    self.on_failure(now, ticket, *reason);
                    true
                }
                None => false,
            },
            Event::Request { .. } | Event::ObserveEnded { .. } => false,
        }
    }

    /// The device's answer to a request, or a notification of an observation.
    pub fn on_response(&mut self, now: Instant, ticket: Ticket, response: &Response) {
        if let Some(exchange) = self.pending.remove(&ticket) {
            // An answer is an uplink: the device is awake for another window.
            self.touch(now, &exchange.endpoint);
            let result = self.decode(&exchange, response);
            let established = result
                .as_ref()
                .is_ok_and(DownlinkResponse::establishes_observation);
            if established {
                self.observations.insert(ticket, exchange.clone());
            } else if let Some(id) = exchange.request_id {
                self.by_request.remove(&id);
            }
            self.complete(now, ticket, &exchange.endpoint, result);
        } else if let Some(observation) = self.observations.get(&ticket).cloned() {
            self.touch(now, &observation.endpoint);
            match self.notification(ticket, &observation, response) {
                Ok(n) => self.events.push_back(DmEvent::Notification(n)),
                Err(reason) => self.end_observation(ticket, reason),
            }
        }
    }

    /// The stack gave up on a request (or an observation).
    pub fn on_failure(&mut self, now: Instant, ticket: Ticket, failure: Failure) {
        let reason = match failure {
            Failure::Timeout => DmError::Timeout,
            other => DmError::Transport(other),
        };
        if let Some(exchange) = self.pending.remove(&ticket) {
            if let Some(id) = exchange.request_id {
                self.by_request.remove(&id);
            }
            self.complete(now, ticket, &exchange.endpoint, Err(reason));
        } else if self.observations.contains_key(&ticket) {
            self.end_observation(ticket, reason);
        }
    }

    /// A queue-mode (or any) device sent something: it is awake; release its queue.
    pub fn on_uplink(&mut self, now: Instant, client: &RegisteredClient) {
        let endpoint = client.registration.endpoint.clone();
        let view = ClientView::from_client(client, self.clients.get(&endpoint));
        let was_awake = view.is_awake(now);
        self.clients.insert(endpoint.clone(), view);
        self.touch(now, &endpoint);
        if !was_awake && client.registration.queue_mode {
            self.events.push_back(DmEvent::Awake {
                endpoint: endpoint.clone(),
            });
        }
        self.release_next(now, &endpoint);
    }

    /// The device deregistered or expired: everything waiting for it fails, its observations
    /// end.
    pub fn on_deregistered(&mut self, endpoint: &str) {
        for entry in self.queues.clear(endpoint) {
            self.report(entry.ticket, endpoint, Err(DmError::Deregistered));
        }
        let mut gone: Vec<Ticket> = self
            .pending
            .iter()
            .filter(|(_, e)| e.endpoint == endpoint)
            .map(|(t, _)| *t)
            .collect();
        gone.sort();
        let address = self.clients.remove(endpoint).map(|c| c.address);
        for ticket in gone {
            if let Some(exchange) = self.pending.remove(&ticket) {
                self.forget_on_stack(address.as_deref(), exchange.request_id);
                self.report(ticket, endpoint, Err(DmError::Deregistered));
            }
        }
        let mut ended: Vec<Ticket> = self
            .observations
            .iter()
            .filter(|(_, e)| e.endpoint == endpoint)
            .map(|(t, _)| *t)
            .collect();
        ended.sort();
        for ticket in ended {
            if let Some(o) = self.observations.remove(&ticket) {
                self.forget_on_stack(address.as_deref(), o.request_id);
                self.events.push_back(DmEvent::ObservationEnded {
                    ticket,
                    endpoint: endpoint.to_owned(),
                    reason: DmError::Deregistered,
                });
            }
        }
    }

    /// Ends an observation passively: the stack forgets it and resets the next notification
    /// (RFC 7641 §3.6). False when `ticket` is not an established observation.
    pub fn cancel_observation(&mut self, ticket: Ticket) -> bool {
        let Some(o) = self.observations.remove(&ticket) else {
            return false;
        };
        let address = self.clients.get(&o.endpoint).map(|c| c.address.clone());
        self.forget_on_stack(address.as_deref(), o.request_id);
        true
    }

    /// Established observations: ticket, endpoint and observed paths.
    pub fn observations(&self) -> Vec<(Ticket, String, Vec<Path>)> {
        let mut out: Vec<_> = self
            .observations
            .iter()
            .map(|(t, e)| (*t, e.endpoint.clone(), e.kind.observed_paths()))
            .collect();
        out.sort_by_key(|(t, _, _)| *t);
        out
    }

    /// Requests waiting in `endpoint`'s queue.
    pub fn queued(&self, endpoint: &str) -> usize {
        self.queues.len(endpoint)
    }

    /// True while a queue-mode device counts as awake.
    pub fn is_awake(&self, now: Instant, endpoint: &str) -> bool {
        self.clients.get(endpoint).is_some_and(|c| c.is_awake(now))
    }

    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<DmEvent> {
        self.events.pop_front()
    }

    /// The next instant [`DeviceRequests::handle_timeout`] has work at.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let pending = self.pending.values().map(|e| e.deadline).min();
        let awake = self.clients.values().filter_map(|c| c.awake_until).min();
        [pending, awake, self.queues.next_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Fails requests whose time is up and puts devices whose window ran out to sleep.
    pub fn handle_timeout(&mut self, now: Instant) {
        for (endpoint, entry) in self.queues.expire(now) {
            let waited = now.saturating_duration_since(entry.queued_at);
            self.report(entry.ticket, &endpoint, Err(DmError::Expired { waited }));
        }
        let mut due: Vec<Ticket> = self
            .pending
            .iter()
            .filter(|(_, e)| e.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        due.sort();
        for ticket in due {
            if let Some(exchange) = self.pending.remove(&ticket) {
                let address = self
                    .clients
                    .get(&exchange.endpoint)
                    .map(|c| c.address.clone());
                self.forget_on_stack(address.as_deref(), exchange.request_id);
                self.complete(now, ticket, &exchange.endpoint, Err(DmError::Timeout));
            }
        }
        let mut asleep: Vec<String> = Vec::new();
        for (endpoint, view) in &mut self.clients {
            if view.awake_until.is_some_and(|t| t <= now) {
                view.awake_until = None;
                if view.queue_mode {
                    asleep.push(endpoint.clone());
                }
            }
        }
        asleep.sort();
        for endpoint in asleep {
            self.events.push_back(DmEvent::Sleeping { endpoint });
        }
    }

    // -----------------------------------------------------------------------------------------

    fn dispatch(
        &mut self,
        ticket: Ticket,
        endpoint: &str,
        kind: RequestKind,
        built: BuiltRequest,
        deadline: Instant,
    ) {
        let Some(view) = self.clients.get_mut(endpoint) else {
            return;
        };
        if view.queue_mode {
            view.in_flight = Some(ticket);
        }
        self.commands.push_back(Command::Send {
            ticket,
            address: view.address.clone(),
            request: built.request.clone(),
            confirmable: true,
        });
        self.pending.insert(
            ticket,
            Exchange {
                endpoint: endpoint.to_owned(),
                kind,
                built,
                deadline,
                request_id: None,
            },
        );
    }

    /// Reports an outcome; a queue-mode device's next request may go now.
    fn complete(
        &mut self,
        now: Instant,
        ticket: Ticket,
        endpoint: &str,
        result: Result<DownlinkResponse, DmError>,
    ) {
        self.report(ticket, endpoint, result);
        if let Some(view) = self.clients.get_mut(endpoint)
            && view.in_flight == Some(ticket)
        {
            view.in_flight = None;
            self.release_next(now, endpoint);
        }
    }

    /// Sends the oldest queued request of an awake, idle queue-mode device.
    fn release_next(&mut self, now: Instant, endpoint: &str) {
        let ready = self
            .clients
            .get(endpoint)
            .is_some_and(|v| v.is_awake(now) && v.in_flight.is_none());
        if !ready {
            return;
        }
        while let Some(entry) = self.queues.pop(endpoint) {
            if entry.deadline <= now {
                let waited = now.saturating_duration_since(entry.queued_at);
                self.report(entry.ticket, endpoint, Err(DmError::Expired { waited }));
                continue;
            }
            self.dispatch(
                entry.ticket,
                endpoint,
                entry.kind,
                entry.built,
                entry.deadline,
            );
            return;
        }
    }

    /// Reports an outcome and lets go of its stored queue entry, if it had one.
    fn report(
        &mut self,
        ticket: Ticket,
        endpoint: &str,
        result: Result<DownlinkResponse, DmError>,
    ) {
        if self.persisted.remove(&ticket) {
            self.commands.push_back(Command::Unpersist {
                ticket,
                endpoint: endpoint.to_owned(),
            });
        }
        self.events.push_back(DmEvent::Completed {
            ticket,
            endpoint: endpoint.to_owned(),
            result,
        });
    }

    fn touch(&mut self, now: Instant, endpoint: &str) {
        let window = self.config.awake_window;
        if let Some(view) = self.clients.get_mut(endpoint) {
            view.awake_until = Some(now + window);
        }
    }

    fn forget_on_stack(&mut self, address: Option<&str>, id: Option<RequestId>) {
        if let Some(id) = id {
            self.by_request.remove(&id);
            if let Some(address) = address {
                self.commands.push_back(Command::Cancel {
                    address: address.to_owned(),
                    id,
                });
            }
        }
    }

    fn end_observation(&mut self, ticket: Ticket, reason: DmError) {
        if let Some(o) = self.observations.remove(&ticket) {
            if let Some(id) = o.request_id {
                self.by_request.remove(&id);
            }
            self.events.push_back(DmEvent::ObservationEnded {
                ticket,
                endpoint: o.endpoint,
                reason,
            });
        }
    }

    /// The announced objects and the alternate path (`/` for an unknown client).
    fn client_links(&self, endpoint: &str) -> (&[(u16, Option<Version>)], &str) {
        self.clients.get(endpoint).map_or((&[], "/"), |c| {
            (c.links.announced_versions(), c.links.alternate_path())
        })
    }

    fn decode(
        &self,
        exchange: &Exchange,
        response: &Response,
    ) -> Result<DownlinkResponse, DmError> {
        let (announced, alternate_path) = self.client_links(&exchange.endpoint);
        let models = self.models.for_client(announced);
        decode_response(
            &exchange.kind,
            &exchange.built,
            response,
            &models,
            alternate_path,
        )
    }

    /// A notification: an error code ends the observation (RFC 7641 §3.2).
    fn notification(
        &self,
        ticket: Ticket,
        observation: &Exchange,
        response: &Response,
    ) -> Result<Notification, DmError> {
        if !response.code.is_success() {
            return Err(DmError::Device {
                code: response.code,
                diagnostic: String::from_utf8_lossy(&response.payload).into_owned(),
            });
        }
        let (announced, _) = self.client_links(&observation.endpoint);
        let models = self.models.for_client(announced);
        let paths = observation.kind.observed_paths();
        let nodes = match &observation.kind {
            RequestKind::Observe { path } => {
                decode_single(path, response, observation.built.format, &models)?
                    .map(|node| NodeMap::from([(*path, node)]))
                    .unwrap_or_default()
            }
            _ => decode_composite(&paths, response, &models)?,
        };
        Ok(Notification {
            ticket,
            endpoint: observation.endpoint.clone(),
            paths,
            nodes,
            observe: response.options.observe(),
        })
    }
}
