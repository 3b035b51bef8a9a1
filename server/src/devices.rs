//! [`Devices`]: the running server's device-management handle. It wires the sans-IO
//! [`DeviceRequests`] service into the runtime (see `runtime`):
//!
//! ```text
//!  Devices::request ──► DeviceRequests::send ──► Command::Send ──► Commander ─► Stack::request
//!        ▲ oneshot                                                     (driver task)
//!        └──── DmEvent::Completed ◄── on_stack_event ◄── Event::Response / Failed (driver)
//!  writer thread (after the store write): Registered / Updated ─► on_uplink
//!                                         Deregistered / Expired ─► on_deregistered
//!  driver: POST /dp ─► handle_send ─► on_uplink, DeviceEvent::Send
//!  DM timer task ─► handle_timeout (request deadlines, queue expiry, presence)
//! ```
//!
//! Everything the service reports that is not the answer to a request goes out on one
//! broadcast stream of [`DeviceEvent`]s ([`Devices::events`]): notifications, ended
//! observations, Send reports, presence (awake / sleeping) and registration changes.
//!
//! # Locks
//!
//! Two mutexes: the registrations (`Lwm2mServer`) and the service state. Whoever needs both
//! takes the registrations first. Nothing awaits while holding either, and everything done
//! under them is non-blocking (channel sends).
//!
//! # Observations in the store
//!
//! An established observation is recorded with [`Store::put_observation`](crate::store::Store)
//! and removed when it ends or is cancelled (deregistration removes them with the
//! registration). The stack does not expose CoAP tokens, so the record's `token` names the
//! observation instead: a random 4-byte number of this server run followed by the
//! observation's [`Ticket`] number (4 bytes, big-endian), so records of different runs never
//! collide.
//!
//! After a restart the old run's tokens are gone from the stack: notifications for them are
//! answered with a Reset (the device drops those observations, RFC 7641 §3.6). The runtime
//! hands the stored records to the hub at start (`Hub::restore`); when the device next sends
//! a Register or an Update, the hub sends a fresh Observe (or Observe-Composite) for each
//! record's paths in its recorded format, removes the old record, and records the new
//! observation once the device establishes it. LwM2M Core has the server re-establish
//! observations after a Register; after an Update the device may still hold the old ones, but
//! our side of them is lost, so they are re-observed too. Each re-observation's outcome is a
//! [`DeviceEvent::Completed`] with [`RequestOrigin::Reobserve`]; its notifications come as
//! usual, under the new ticket.
//!
//! # Queued requests in the store
//!
//! Requests queued for a sleeping queue-mode device are persisted through the same store
//! writer: the service's [`Command::Persist`] / [`Command::Unpersist`] become
//! `StoreChange::Enqueue` / `StoreChange::Dequeue` (the writer maps tickets to the
//! store's queue IDs). At start the runtime reads the queues back into the service
//! (`Hub::restore`); each gets a fresh ticket and, since its caller is gone, its outcome
//! is published as [`DeviceEvent::Completed`] with [`RequestOrigin::Restored`] and the store's
//! queue ID. Requests that expired while the server was down fail with
//! [`DmError::Expired`] on the first timer tick after start.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use steward_coap::endpoint::Event;
use steward_coap::message::{Request, Response};
use steward_coap::stack::Stack;
use steward_objects::{ContentFormat, Path};
use steward_transport::Commander;
use tokio::sync::{broadcast, oneshot};

use crate::bootstrap::bootstrap_trigger;
use crate::clock::unix_ms;
use crate::dm::{
    Command, DeviceRequests, DmError, DmEvent, DownlinkRequest, DownlinkResponse,
    MAX_TRANSMIT_WAIT, Notification, RequestKind, SendReport, Ticket, handle_send,
};
use crate::lwm2m::identity::owns;
use crate::lwm2m::{DomainEvent, Lwm2mServer, RegisteredClient};
use crate::observation::ObservationRecord;
use crate::registry::{PeerIdentity, Registration};
use crate::store::QueuedRequest;

type CoapStack = Stack<SocketAddr>;

/// Events kept for slow subscribers before they start missing some.
const EVENT_CAPACITY: usize = 4096;
/// Extra time a caller waits past a request's own timeout before giving up on the service
/// (which completes every request at its deadline; this only guards against a stopped timer).
const WAIT_MARGIN: Duration = Duration::from_secs(5);

/// Which listener a device talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Coap,
    Coaps,
}

impl Transport {
    fn of(identity: &PeerIdentity) -> Transport {
        match identity {
            PeerIdentity::Unsecured => Transport::Coap,
            _ => Transport::Coaps,
        }
    }
}

/// Something that happened on a device, as the server saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceEvent {
    /// A new registration (stored); `replaced`: the endpoint had one before (a reboot).
    Registered {
        endpoint: String,
        registration_id: String,
        replaced: bool,
    },
    Updated {
        endpoint: String,
    },
    Deregistered {
        endpoint: String,
    },
    Expired {
        endpoint: String,
    },
    /// A notification of an established observation.
    Notification(Notification),
    /// An observation ended (error notification, reset, device gone, cancelled by us).
    ObservationEnded {
        ticket: Ticket,
        endpoint: String,
        reason: DmError,
    },
    /// Values the device reported with Send (`POST /dp`).
    Send(SendReport),
    /// A queue-mode device that was asleep sent something.
    Awake {
        endpoint: String,
    },
    /// A queue-mode device's awake window ran out: requests for it are queued.
    Sleeping {
        endpoint: String,
    },
    /// The outcome of a request nobody waits for: one the server made on its own (see
    /// [`RequestOrigin`]). Requests made through [`Devices`] get theirs from their
    /// [`PendingRequest`] instead.
    Completed {
        ticket: Ticket,
        endpoint: String,
        origin: RequestOrigin,
        result: Result<DownlinkResponse, DmError>,
    },
}

/// Why the server sent a request no caller waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOrigin {
    /// A queued request read back from the store at start (its caller was in the previous
    /// run); `queue_id` is its ID in the store ([`QueuedRequest::id`]).
    Restored { queue_id: u64 },
    /// A fresh Observe re-establishing an observation stored by the previous run.
    Reobserve { paths: Vec<Path> },
}

/// A queued request read back from the store at start, as the service took it.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoredRequest {
    pub queue_id: u64,
    pub endpoint: String,
    /// Its ticket in this run.
    pub ticket: Ticket,
    pub kind: RequestKind,
    /// It expired while the server was down (it fails on the first timer tick).
    pub expired: bool,
}

/// A write for the store writer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StoreChange {
    PutObservation(ObservationRecord),
    RemoveObservation {
        endpoint: String,
        token: Vec<u8>,
    },
    /// Append a queued request's record; the writer remembers `ticket`'s queue ID.
    Enqueue {
        ticket: Ticket,
        endpoint: String,
        record: Vec<u8>,
        created_ms: u64,
        expires_ms: u64,
    },
    /// Remove the stored entry of `ticket`.
    Dequeue {
        ticket: Ticket,
        endpoint: String,
    },
}

/// Where store changes go to be made durable (the runtime's store writer).
pub(crate) type StoreSink = Box<dyn Fn(StoreChange) + Send + Sync>;

/// An Observe request in flight or established, for its store record.
#[derive(Debug, Clone)]
struct ObserveMeta {
    paths: Vec<Path>,
    composite: bool,
    format: Option<ContentFormat>,
}

impl ObserveMeta {
    /// The meta of an Observe or Observe-Composite; `format` as the caller forced it.
    fn of(kind: &RequestKind, format: Option<ContentFormat>) -> Option<ObserveMeta> {
        match kind {
            RequestKind::Observe { path } => Some(ObserveMeta {
                paths: vec![*path],
                composite: false,
                format,
            }),
            RequestKind::ObserveComposite { paths } => Some(ObserveMeta {
                paths: paths.clone(),
                composite: true,
                format,
            }),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct Route {
    address: String,
    registration_id: String,
}

type Waiter = oneshot::Sender<Result<DownlinkResponse, DmError>>;

struct HubState {
    dm: DeviceRequests,
    waiters: HashMap<Ticket, Waiter>,
    observing: HashMap<Ticket, (String, ObserveMeta)>,
    routes: HashMap<String, Route>,
    /// address → transport, for the service's commands (which name the address only).
    transports: HashMap<String, Transport>,
    /// Requests without a caller: their outcome is published.
    orphans: HashMap<Ticket, RequestOrigin>,
    /// Observations stored by the previous run, by endpoint, to re-establish at its next
    /// Register or Update.
    reobserve: HashMap<String, Vec<ObservationRecord>>,
}

/// The shared core behind [`Devices`], the routers, the writer and the DM timer.
pub(crate) struct Hub {
    lwm2m: Arc<Mutex<Lwm2mServer>>,
    state: Arc<Mutex<HubState>>,
    coap: OnceLock<Commander<CoapStack>>,
    coaps: OnceLock<Commander<CoapStack>>,
    events: broadcast::Sender<DeviceEvent>,
    sink: Mutex<Option<StoreSink>>,
    closed: AtomicBool,
    /// Tells this run's observation tokens from other runs' (see the module docs).
    run: u32,
    /// Requests by operation and outcome (see [`Devices::counters`]).
    counters: Arc<crate::dm::DmCounters>,
}

impl Hub {
    pub(crate) fn new(lwm2m: Arc<Mutex<Lwm2mServer>>, dm: DeviceRequests) -> Hub {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        Hub {
            lwm2m,
            state: Arc::new(Mutex::new(HubState {
                dm,
                waiters: HashMap::new(),
                observing: HashMap::new(),
                routes: HashMap::new(),
                transports: HashMap::new(),
                orphans: HashMap::new(),
                reobserve: HashMap::new(),
            })),
            coap: OnceLock::new(),
            coaps: OnceLock::new(),
            events,
            sink: Mutex::new(None),
            closed: AtomicBool::new(false),
            run: run_id(),
            counters: Arc::default(),
        }
    }

    /// The store token of this run's observation `ticket`.
    fn token(&self, ticket: Ticket) -> Vec<u8> {
        let mut token = self.run.to_be_bytes().to_vec();
        // Tickets past 2^32 in one run wrap; the run prefix still separates runs.
        token.extend_from_slice(&(ticket.id() as u32).to_be_bytes());
        token
    }

    /// Takes what the store kept from the previous run (before the listeners start):
    /// `queued` goes back into the service's queues (records it cannot read are returned as
    /// the second list, for the caller to log and drop), `observations` wait for their
    /// device's next Register or Update to be re-established.
    pub(crate) fn restore(
        &self,
        now: Instant,
        now_ms: u64,
        queued: Vec<QueuedRequest>,
        observations: Vec<ObservationRecord>,
    ) -> (Vec<RestoredRequest>, Vec<(QueuedRequest, String)>) {
        let lwm2m = lock_any(&self.lwm2m);
        let mut st = self.lock_state();
        let mut restored = Vec::new();
        let mut unreadable = Vec::new();
        for q in queued {
            let waited = Duration::from_millis(now_ms.saturating_sub(q.created_ms));
            let remaining = Duration::from_millis(q.expires_ms.saturating_sub(now_ms));
            match st.dm.restore_queued(
                now,
                lwm2m.registrations(),
                &q.endpoint,
                &q.request,
                waited,
                remaining,
            ) {
                Ok((ticket, kind)) => {
                    if let Some(meta) = ObserveMeta::of(&kind, None) {
                        st.observing.insert(ticket, (q.endpoint.clone(), meta));
                    }
                    st.orphans
                        .insert(ticket, RequestOrigin::Restored { queue_id: q.id });
                    restored.push(RestoredRequest {
                        queue_id: q.id,
                        endpoint: q.endpoint,
                        ticket,
                        kind,
                        expired: remaining.is_zero(),
                    });
                }
                Err(e) => unreadable.push((q, e.to_string())),
            }
        }
        for record in observations {
            st.reobserve
                .entry(record.endpoint.clone())
                .or_default()
                .push(record);
        }
        (restored, unreadable)
    }

    /// Re-establishes the stored observations of `endpoint`, if any (after its Register or
    /// Update has been handled).
    fn reobserve(&self, now: Instant, endpoint: &str) {
        let lwm2m = lock_any(&self.lwm2m);
        let mut st = self.lock_state();
        let Some(records) = st.reobserve.remove(endpoint) else {
            return;
        };
        for record in records {
            // The old record goes first: the new one (put when the device establishes it)
            // must not be removed by it.
            self.store(StoreChange::RemoveObservation {
                endpoint: record.endpoint.clone(),
                token: record.token.clone(),
            });
            let Ok(paths) = record
                .paths
                .iter()
                .map(|p| p.parse::<Path>())
                .collect::<Result<Vec<Path>, _>>()
            else {
                tracing::warn!(%endpoint, paths = ?record.paths, "stored observation with an invalid path dropped");
                continue;
            };
            let format = record.content_format.and_then(ContentFormat::from_code);
            let request = match (record.composite, paths.as_slice()) {
                (false, [path]) => DownlinkRequest::Observe {
                    path: *path,
                    format,
                },
                (true, _) => DownlinkRequest::ObserveComposite {
                    paths: paths.clone(),
                    format,
                },
                (false, _) => {
                    tracing::warn!(%endpoint, paths = ?record.paths, "stored observation with several paths but not composite: dropped");
                    continue;
                }
            };
            let meta = ObserveMeta {
                paths: paths.clone(),
                composite: record.composite,
                format,
            };
            match st.dm.send(
                now,
                lwm2m.registrations(),
                endpoint,
                request,
                MAX_TRANSMIT_WAIT,
            ) {
                Ok(ticket) => {
                    tracing::debug!(%endpoint, %ticket, paths = ?record.paths, "re-observing after a restart");
                    st.observing.insert(ticket, (endpoint.to_owned(), meta));
                    st.orphans
                        .insert(ticket, RequestOrigin::Reobserve { paths });
                }
                Err(e) => {
                    tracing::warn!(%endpoint, paths = ?record.paths, error = %e, "stored observation not re-established");
                }
            }
        }
        drop(lwm2m);
        self.pump(&mut st);
    }

    pub(crate) fn install(&self, transport: Transport, commander: Commander<CoapStack>) {
        let slot = match transport {
            Transport::Coap => &self.coap,
            Transport::Coaps => &self.coaps,
        };
        let _ = slot.set(commander);
    }

    pub(crate) fn set_sink(&self, sink: StoreSink) {
        *lock_any(&self.sink) = Some(sink);
    }

    /// Stops taking requests: waiting callers get [`DmError::ServerStopped`], and the store
    /// sink is dropped (so the writer can finish).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        lock_any(&self.sink).take();
        let mut st = self.lock_state();
        for (_, waiter) in st.waiters.drain() {
            let _ = waiter.send(Err(DmError::ServerStopped));
        }
    }

    fn lock_state(&self) -> MutexGuard<'_, HubState> {
        lock_any(&self.state)
    }

    /// The next instant the service has timed work.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.lock_state().dm.poll_timeout()
    }

    /// Handles the service's due deadlines and hands out whatever it has pending (outcomes
    /// decided at `Hub::restore` wait for the first call).
    pub(crate) fn handle_timeout(&self, now: Instant) {
        let mut st = self.lock_state();
        if st.dm.poll_timeout().is_some_and(|t| t <= now) {
            st.dm.handle_timeout(now);
        }
        self.pump(&mut st);
    }

    /// A stack event that is not a request (driver task): answers to our requests and
    /// notifications.
    pub(crate) fn on_stack_event(&self, now: Instant, event: &Event<SocketAddr>) {
        let mut st = self.lock_state();
        if st.dm.on_stack_event(now, event) {
            self.pump(&mut st);
        } else {
            tracing::trace!(?event, "stack event for no device request");
        }
    }

    /// Registration changes, once they are durable (writer thread).
    pub(crate) fn on_domain_events(&self, events: &[DomainEvent]) {
        let now = Instant::now();
        for event in events {
            match event {
                DomainEvent::Registered {
                    registration,
                    replaced,
                } => {
                    if replaced.is_some() {
                        // A new registration voids the old one's observations and exchanges
                        // (the device forgot them: Transport §6.4.5).
                        let mut st = self.lock_state();
                        st.dm.on_deregistered(&registration.endpoint);
                        self.pump(&mut st);
                    }
                    self.uplink(now, registration);
                    self.reobserve(now, &registration.endpoint);
                    self.publish(DeviceEvent::Registered {
                        endpoint: registration.endpoint.clone(),
                        registration_id: registration.id.clone(),
                        replaced: replaced.is_some(),
                    });
                }
                DomainEvent::Updated { current, .. } => {
                    self.uplink(now, current);
                    self.reobserve(now, &current.endpoint);
                    self.publish(DeviceEvent::Updated {
                        endpoint: current.endpoint.clone(),
                    });
                }
                DomainEvent::Deregistered { registration }
                | DomainEvent::Expired { registration } => {
                    let endpoint = &registration.endpoint;
                    {
                        let mut st = self.lock_state();
                        st.dm.on_deregistered(endpoint);
                        self.pump(&mut st);
                        if st
                            .routes
                            .get(endpoint)
                            .is_some_and(|r| r.registration_id == registration.id)
                            && let Some(route) = st.routes.remove(endpoint)
                        {
                            st.transports.remove(&route.address);
                        }
                        st.observing.retain(|_, (ep, _)| ep != endpoint);
                        // The store dropped its observations with the registration.
                        st.reobserve.remove(endpoint);
                    }
                    self.publish(match event {
                        DomainEvent::Expired { .. } => DeviceEvent::Expired {
                            endpoint: endpoint.clone(),
                        },
                        _ => DeviceEvent::Deregistered {
                            endpoint: endpoint.clone(),
                        },
                    });
                }
            }
        }
    }

    /// The device of this registration sent something: it is awake; its queue may go.
    fn uplink(&self, now: Instant, registration: &Registration) {
        let client = lock_any(&self.lwm2m)
            .registrations()
            .by_endpoint(&registration.endpoint)
            .filter(|c| c.registration.id == registration.id)
            .cloned();
        let Some(client) = client else {
            // Replaced or gone meanwhile: the newer event does the work.
            return;
        };
        let mut st = self.lock_state();
        note_route(&mut st, &client);
        st.dm.on_uplink(now, &client);
        self.pump(&mut st);
    }

    /// A Send (`POST /dp`) from `address` with `identity` (driver task): the response to give.
    pub(crate) fn on_send(
        &self,
        now: Instant,
        address: &str,
        identity: &PeerIdentity,
        request: &Request,
    ) -> Response {
        let client = {
            let lwm2m = lock_any(&self.lwm2m);
            let registrations = lwm2m.registrations();
            let direct = match identity {
                PeerIdentity::Psk(id) => std::str::from_utf8(id)
                    .ok()
                    .and_then(|ep| registrations.by_endpoint(ep)),
                PeerIdentity::X509 { common_name } => registrations.by_endpoint(common_name),
                PeerIdentity::Unsecured => None,
            };
            direct
                .filter(|c| owns(&c.registration, identity, address))
                .or_else(|| {
                    registrations
                        .iter()
                        .find(|c| owns(&c.registration, identity, address))
                })
                .cloned()
        };
        let mut st = self.lock_state();
        let (response, report) = handle_send(client.as_ref(), request, st.dm.models());
        if let Some(client) = &client {
            note_route(&mut st, client);
            st.dm.on_uplink(now, client);
            self.pump(&mut st);
        }
        drop(st);
        match report {
            Ok(report) => {
                tracing::debug!(endpoint = %report.endpoint, entries = report.entries.len(), "send");
                self.publish(DeviceEvent::Send(report));
            }
            Err(e) => tracing::debug!(%address, error = %e, "send refused"),
        }
        response
    }

    /// Carries out the service's commands and hands out its events, under the state lock.
    fn pump(&self, st: &mut HubState) {
        loop {
            let mut idle = true;
            while let Some(command) = st.dm.poll_command() {
                idle = false;
                self.execute(st, command);
            }
            while let Some(event) = st.dm.poll_event() {
                idle = false;
                self.deliver(st, event);
            }
            if idle {
                return;
            }
        }
    }

    fn commander(&self, st: &HubState, address: &str) -> Option<&Commander<CoapStack>> {
        match st.transports.get(address)? {
            Transport::Coap => self.coap.get(),
            Transport::Coaps => self.coaps.get(),
        }
    }

    fn execute(&self, st: &mut HubState, command: Command) {
        match command {
            Command::Send {
                ticket,
                address,
                request,
                confirmable,
            } => {
                let peer: Option<SocketAddr> = address.parse().ok();
                let (Some(peer), Some(commander)) = (peer, self.commander(st, &address)) else {
                    // Left to the request's deadline, which fails it with a timeout.
                    tracing::warn!(%ticket, %address, "no listener for this device: request not sent");
                    return;
                };
                let state = Arc::clone(&self.state);
                let sent = commander.command(move |stack: &mut CoapStack, now| {
                    let id = stack.request(now, peer, request, confirmable);
                    lock_any(&state).dm.sent(ticket, id);
                });
                if !sent {
                    tracing::debug!(%ticket, "listener stopped: request not sent");
                }
            }
            Command::Cancel { address, id } => {
                let peer: Option<SocketAddr> = address.parse().ok();
                if let (Some(peer), Some(commander)) = (peer, self.commander(st, &address)) {
                    commander.command(move |stack: &mut CoapStack, now| {
                        stack.cancel(now, peer, id);
                    });
                }
            }
            Command::Persist {
                ticket,
                endpoint,
                record,
                queued_at,
                deadline,
            } => {
                // The service counts in Instants, the store in unix milliseconds.
                let (now, now_ms) = (Instant::now(), unix_ms());
                let at = |t: Instant| {
                    if t >= now {
                        now_ms.saturating_add(duration_ms(t - now))
                    } else {
                        now_ms.saturating_sub(duration_ms(now - t))
                    }
                };
                self.store(StoreChange::Enqueue {
                    ticket,
                    endpoint,
                    record,
                    created_ms: at(queued_at),
                    expires_ms: at(deadline),
                });
            }
            Command::Unpersist { ticket, endpoint } => {
                self.store(StoreChange::Dequeue { ticket, endpoint });
            }
        }
    }

    fn deliver(&self, st: &mut HubState, event: DmEvent) {
        match event {
            DmEvent::Completed {
                ticket,
                endpoint,
                result,
            } => {
                let established = result
                    .as_ref()
                    .is_ok_and(DownlinkResponse::establishes_observation);
                if established {
                    if let Some((_, meta)) = st.observing.get(&ticket) {
                        let record = ObservationRecord {
                            token: self.token(ticket),
                            endpoint: endpoint.clone(),
                            registration_id: st
                                .routes
                                .get(&endpoint)
                                .map(|r| r.registration_id.clone())
                                .unwrap_or_default(),
                            paths: meta.paths.iter().map(ToString::to_string).collect(),
                            composite: meta.composite,
                            content_format: meta.format.map(ContentFormat::code),
                            created_ms: unix_ms(),
                        };
                        self.store(StoreChange::PutObservation(record));
                    }
                } else {
                    st.observing.remove(&ticket);
                }
                if let Some(waiter) = st.waiters.remove(&ticket) {
                    let _ = waiter.send(result);
                } else if let Some(origin) = st.orphans.remove(&ticket) {
                    match &result {
                        Ok(_) => tracing::debug!(%ticket, %endpoint, ?origin, "completed"),
                        Err(e) => tracing::info!(%ticket, %endpoint, ?origin, error = %e, "failed"),
                    }
                    self.publish(DeviceEvent::Completed {
                        ticket,
                        endpoint,
                        origin,
                        result,
                    });
                }
            }
            DmEvent::Notification(n) => self.publish(DeviceEvent::Notification(n)),
            DmEvent::ObservationEnded {
                ticket,
                endpoint,
                reason,
            } => {
                if st.observing.remove(&ticket).is_some() {
                    self.store(StoreChange::RemoveObservation {
                        endpoint: endpoint.clone(),
                        token: self.token(ticket),
                    });
                }
                self.publish(DeviceEvent::ObservationEnded {
                    ticket,
                    endpoint,
                    reason,
                });
            }
            DmEvent::Awake { endpoint } => self.publish(DeviceEvent::Awake { endpoint }),
            DmEvent::Sleeping { endpoint } => self.publish(DeviceEvent::Sleeping { endpoint }),
        }
    }

    fn store(&self, change: StoreChange) {
        match lock_any(&self.sink).as_ref() {
            Some(sink) => sink(change),
            None => tracing::debug!(?change, "store writer stopped: change dropped"),
        }
    }

    fn publish(&self, event: DeviceEvent) {
        // No subscriber is fine: nobody is listening.
        let _ = self.events.send(event);
    }
}

fn note_route(st: &mut HubState, client: &RegisteredClient) {
    let r = &client.registration;
    let transport = Transport::of(&r.identity);
    if let Some(old) = st.routes.get(&r.endpoint)
        && old.address != r.address
    {
        let old = old.address.clone();
        st.transports.remove(&old);
    }
    st.transports.insert(r.address.clone(), transport);
    st.routes.insert(
        r.endpoint.clone(),
        Route {
            address: r.address.clone(),
            registration_id: r.id.clone(),
        },
    );
}

/// The server's device-management handle: requests to devices and the stream of what they
/// report. Cheap to clone; every clone talks to the same server.
#[derive(Clone)]
pub struct Devices {
    hub: Arc<Hub>,
}

/// A request handed to the service, waiting for its outcome.
pub struct PendingRequest {
    ticket: Ticket,
    rx: oneshot::Receiver<Result<DownlinkResponse, DmError>>,
    timeout: Duration,
    hub: Arc<Hub>,
    operation: &'static str,
    /// An active cancel (endpoint, paths): once the device confirms, our side of those
    /// observations ends too, whoever made the request.
    cancels: Option<(String, Vec<Path>)>,
}

impl PendingRequest {
    pub fn ticket(&self) -> Ticket {
        self.ticket
    }

    /// The device's answer, or why there is none.
    pub async fn outcome(self) -> Result<DownlinkResponse, DmError> {
        let result = match tokio::time::timeout(self.timeout + WAIT_MARGIN, self.rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(DmError::ServerStopped),
            Err(_) => {
                self.hub.lock_state().waiters.remove(&self.ticket);
                Err(DmError::Timeout)
            }
        };
        self.hub.counters.record(self.operation, &result);
        if let (Ok(_), Some((endpoint, paths))) = (&result, self.cancels) {
            // The device stopped notifying: end our side of those observations too.
            let devices = Devices { hub: self.hub };
            let tickets: Vec<Ticket> = devices
                .observations()
                .into_iter()
                .filter(|(_, ep, p)| *ep == endpoint && *p == paths)
                .map(|(t, _, _)| t)
                .collect();
            for ticket in tickets {
                devices.cancel_observation(ticket);
            }
        }
        result
    }
}

/// The stream of [`DeviceEvent`]s from [`Devices::events`].
pub struct DeviceEvents {
    rx: broadcast::Receiver<DeviceEvent>,
}

impl DeviceEvents {
    /// The next event; `None` once the server is gone. Events missed by a subscriber that
    /// fell more than a few thousand behind are skipped (with a warning).
    pub async fn next(&mut self) -> Option<DeviceEvent> {
        loop {
            match self.rx.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "device event subscriber fell behind");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next event already there, without waiting.
    pub fn try_next(&mut self) -> Option<DeviceEvent> {
        loop {
            match self.rx.try_recv() {
                Ok(event) => return Some(event),
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "device event subscriber fell behind");
                }
                Err(_) => return None,
            }
        }
    }
}

impl Devices {
    pub(crate) fn new(hub: Arc<Hub>) -> Devices {
        Devices { hub }
    }

    /// Sends `request` to `endpoint` (or queues it while a queue-mode device sleeps) and
    /// waits for the answer. `timeout` covers the whole life of the request, queueing
    /// included.
    pub async fn request(
        &self,
        endpoint: &str,
        request: DownlinkRequest,
        timeout: Duration,
    ) -> Result<DownlinkResponse, DmError> {
        self.start(endpoint, request, timeout)?.outcome().await
    }

    /// Hands `request` to the service and returns at once; await
    /// [`PendingRequest::outcome`] for the answer. Fails at once for what can be checked
    /// before sending (unknown endpoint, invalid request, full queue).
    pub fn start(
        &self,
        endpoint: &str,
        request: DownlinkRequest,
        timeout: Duration,
    ) -> Result<PendingRequest, DmError> {
        let operation = request.operation();
        let cancels = match &request {
            DownlinkRequest::CancelObservation { path } => Some(vec![*path]),
            DownlinkRequest::CancelCompositeObservation { paths, .. } => Some(paths.clone()),
            _ => None,
        }
        .map(|paths| (endpoint.to_owned(), paths));
        let refused = |e: DmError| {
            let result = crate::dm::RequestResult::of_error(&e);
            self.hub.counters.count(operation, result);
            e
        };
        if self.hub.closed.load(Ordering::SeqCst) {
            return Err(refused(DmError::ServerStopped));
        }
        let meta = match &request {
            DownlinkRequest::Observe { format, .. }
            | DownlinkRequest::ObserveComposite { format, .. } => {
                ObserveMeta::of(&RequestKind::from(&request), *format)
            }
            _ => None,
        };
        let lwm2m = lock_any(&self.hub.lwm2m);
        let mut st = self.hub.lock_state();
        if let Some(client) = lwm2m.registrations().by_endpoint(endpoint) {
            // Registrations restored at start have not sent anything yet: learn their route.
            if !st.routes.contains_key(endpoint) {
                note_route(&mut st, client);
            }
        }
        let ticket = st
            .dm
            .send(
                Instant::now(),
                lwm2m.registrations(),
                endpoint,
                request,
                timeout,
            )
            .map_err(refused)?;
        drop(lwm2m);
        let (tx, rx) = oneshot::channel();
        st.waiters.insert(ticket, tx);
        if let Some(meta) = meta {
            st.observing.insert(ticket, (endpoint.to_owned(), meta));
        }
        self.hub.pump(&mut st);
        Ok(PendingRequest {
            ticket,
            rx,
            timeout,
            hub: Arc::clone(&self.hub),
            operation,
            cancels,
        })
    }

    /// Ends an observation passively (the device's next notification gets a Reset) and
    /// removes it from the store. False when `ticket` is no established observation.
    pub fn cancel_observation(&self, ticket: Ticket) -> bool {
        let mut st = self.hub.lock_state();
        if !st.dm.cancel_observation(ticket) {
            return false;
        }
        if let Some((endpoint, _)) = st.observing.remove(&ticket) {
            self.hub.store(StoreChange::RemoveObservation {
                endpoint: endpoint.clone(),
                token: self.hub.token(ticket),
            });
            self.hub.publish(DeviceEvent::ObservationEnded {
                ticket,
                endpoint,
                reason: DmError::InvalidRequest {
                    operation: "Observe",
                    reason: "cancelled by the server".into(),
                },
            });
        }
        self.hub.pump(&mut st);
        true
    }

    /// Subscribes to what devices report from now on.
    pub fn events(&self) -> DeviceEvents {
        DeviceEvents {
            rx: self.hub.events.subscribe(),
        }
    }

    /// Established observations: ticket, endpoint, observed paths.
    pub fn observations(&self) -> Vec<(Ticket, String, Vec<Path>)> {
        self.hub.lock_state().dm.observations()
    }

    /// Requests waiting for a sleeping queue-mode device.
    pub fn queued(&self, endpoint: &str) -> usize {
        self.hub.lock_state().dm.queued(endpoint)
    }

    /// True while a queue-mode device counts as awake (after an uplink, for the awake
    /// window). Always false for a device that sent nothing since the server started.
    pub fn is_awake(&self, endpoint: &str) -> bool {
        self.hub.lock_state().dm.is_awake(Instant::now(), endpoint)
    }

    /// Every current registration, in no particular order.
    pub fn registrations(&self) -> Vec<Registration> {
        lock_any(&self.hub.lwm2m)
            .registrations()
            .iter()
            .map(|c| c.registration.clone())
            .collect()
    }

    /// The endpoint's current registration.
    pub fn registration(&self, endpoint: &str) -> Option<Registration> {
        lock_any(&self.hub.lwm2m)
            .registrations()
            .by_endpoint(endpoint)
            .map(|c| c.registration.clone())
    }

    /// Server-initiated bootstrap: executes Bootstrap-Request Trigger (`/1/x/9`) on the
    /// device, which then bootstraps again with its Bootstrap-Server. `own_instance` is this
    /// server's /1 instance when the device has several. Returns the executed path.
    pub async fn trigger_bootstrap(
        &self,
        endpoint: &str,
        own_instance: Option<u16>,
        timeout: Duration,
    ) -> Result<Path, DmError> {
        let registration = self
            .registration(endpoint)
            .ok_or_else(|| DmError::NotRegistered(endpoint.to_owned()))?;
        let path = bootstrap_trigger(&registration, own_instance).map_err(|e| {
            DmError::InvalidRequest {
                operation: "Execute",
                reason: e.to_string(),
            }
        })?;
        let execute = DownlinkRequest::Execute { path, args: None };
        self.request(endpoint, execute, timeout).await?;
        Ok(path)
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A random number for this server run (no RNG crate needed for a non-secret ID).
fn run_id() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(SystemTime::now()) as u32
}

fn lock_any<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// Added for the HTTP API (`api/clients.rs`, Leshan's `/api/objectspecs/{ep}`): the models a
// client's content is typed with are otherwise private to the service.
impl Devices {
    /// The object models `endpoint` announced, in the versions it announced, sorted by ID.
    /// Objects without a known model are left out; `None` when it is not registered.
    pub fn client_object_models(
        &self,
        endpoint: &str,
    ) -> Option<Vec<steward_objects::ObjectModel>> {
        // Same lock order as `start`: registrations, then the service state.
        let lwm2m = lock_any(&self.hub.lwm2m);
        let announced = lwm2m
            .registrations()
            .by_endpoint(endpoint)?
            .announced_versions();
        let st = self.hub.lock_state();
        let models = st.dm.models().for_client(&announced);
        let found = announced
            .iter()
            .filter_map(|(id, _)| steward_objects::Models::object(&models, *id).cloned())
            .collect();
        drop(st);
        drop(lwm2m);
        Some(found)
    }
}

impl Devices {
    /// Requests by operation and outcome since the server started, whoever made them (API,
    /// CLI, plugins). A request is counted when its outcome is awaited, or when it is refused
    /// before sending.
    pub fn counters(&self) -> &crate::dm::DmCounters {
        &self.hub.counters
    }
}

impl Devices {
    /// Adds object models (plugins' objects) to those requests and answers are typed with.
    /// A model already there is replaced by the new version of the same object.
    pub fn add_models(&self, models: Vec<steward_objects::ObjectModel>) {
        let mut st = self.hub.lock_state();
        for model in models {
            st.dm.models_mut().insert(model);
        }
    }
}
