//! The harness of the `dm_*` tests: a real simulated device (`steward_client::SimDevice`) on
//! the client side of a `sim::Pair`, the real Registration handler and the real
//! `DeviceRequests` service on the server side, in simulated time. No mocks: every request goes
//! through both CoAP stacks and the simulated link.

// Each dm_* test crate uses a different subset of this harness.
#![allow(dead_code)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use steward::dm::{
    Command, DeviceRequests, DmConfig, DmError, DmEvent, DownlinkRequest, DownlinkResponse,
    SendReport, Ticket, handle_send, is_send,
};
use steward::lwm2m::server::{DomainEvent, Handled, Lwm2mServer, Peer, ServerConfig};
use steward::registry::PeerIdentity;
use steward_client::SimDevice;
use steward_client::device::DeviceConfig;
use steward_coap::endpoint::{Event, Failure, RequestId};
use steward_coap::message::{Request, Response};
use steward_coap::sim::{Link, Pair, Side};
use steward_objects::{ModelRegistry, Version};

pub const ENDPOINT: &str = "dm-device";

pub struct World {
    pub pair: Pair,
    pub device: SimDevice<Side>,
    pub server: Lwm2mServer,
    pub dm: DeviceRequests,
    /// Every service event with the simulated time it came out.
    pub events: Vec<(Instant, DmEvent)>,
    pub domain: Vec<DomainEvent>,
    pub sends: Vec<SendReport>,
    /// When each request left the service for the stack.
    pub sent_at: Vec<(Instant, Ticket)>,
    /// Tickets the service asked to persist (`Command::Persist`) and to forget.
    pub persisted: Vec<Ticket>,
    pub unpersisted: Vec<Ticket>,
    /// Requests the test sent from the device's side (not the device's own), and their
    /// outcomes, kept away from the device.
    device_side: Vec<RequestId>,
    pub device_side_outcomes: Vec<(RequestId, Result<Response, Failure>)>,
    epoch_ms: u64,
    start: Instant,
}

impl World {
    /// A registered device of this version on a perfect link.
    pub fn registered(lwm2m: Version) -> World {
        World::with(DeviceConfig::new(ENDPOINT, lwm2m), Link::perfect(), 7)
    }

    pub fn with(config: DeviceConfig, link: Link, seed: u64) -> World {
        let pair = Pair::new(link, seed);
        let start = pair.now;
        let mut device = SimDevice::new(config, Side::Server);
        device.start();
        let server = Lwm2mServer::new(ServerConfig {
            allow_unsecured: true,
            ..ServerConfig::default()
        });
        let epoch_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut world = World {
            pair,
            device,
            server,
            dm: DeviceRequests::new(DmConfig::default(), ModelRegistry::core()),
            events: Vec::new(),
            domain: Vec::new(),
            sends: Vec::new(),
            sent_at: Vec::new(),
            persisted: Vec::new(),
            unpersisted: Vec::new(),
            device_side: Vec::new(),
            device_side_outcomes: Vec::new(),
            epoch_ms,
            start,
        };
        world.run(Duration::from_secs(10));
        assert!(
            world.server.registrations().by_endpoint(ENDPOINT).is_some(),
            "the device registered"
        );
        world
    }

    /// Sends a hand-made request from the device's side of the link (a Send the simulated
    /// device would not make); its outcome lands in `device_side_outcomes`.
    pub fn device_side_request(&mut self, request: Request) -> RequestId {
        let id = self.pair.client_request(request, true);
        self.device_side.push(id);
        id
    }

    pub fn now(&self) -> Instant {
        self.pair.now
    }

    fn now_ms(&self) -> u64 {
        self.epoch_ms + (self.pair.now - self.start).as_millis() as u64
    }

    /// Hands a request to the service (it may be sent or queued).
    pub fn submit(
        &mut self,
        request: DownlinkRequest,
        timeout: Duration,
    ) -> Result<Ticket, DmError> {
        let now = self.pair.now;
        let ticket = self
            .dm
            .send(now, self.server.registrations(), ENDPOINT, request, timeout)?;
        self.drain_commands();
        Ok(ticket)
    }

    /// Sends a request and runs until its outcome (at most 5 minutes of simulated time).
    pub fn request(&mut self, request: DownlinkRequest) -> Result<DownlinkResponse, DmError> {
        let ticket = self.submit(request, Duration::from_secs(120))?;
        self.run_until_outcome(ticket, Duration::from_secs(300))
            .unwrap_or_else(|| panic!("no outcome for {ticket}"))
    }

    pub fn run_until_outcome(
        &mut self,
        ticket: Ticket,
        limit: Duration,
    ) -> Option<Result<DownlinkResponse, DmError>> {
        let end = self.pair.now + limit;
        while self.pair.now < end {
            if let Some(outcome) = self.outcome(ticket) {
                return Some(outcome);
            }
            self.run(Duration::from_millis(500));
        }
        self.outcome(ticket)
    }

    pub fn outcome(&self, ticket: Ticket) -> Option<Result<DownlinkResponse, DmError>> {
        self.events.iter().find_map(|(_, e)| match e {
            DmEvent::Completed {
                ticket: t, result, ..
            } if *t == ticket => Some(result.clone()),
            _ => None,
        })
    }

    pub fn completed_at(&self, ticket: Ticket) -> Option<Instant> {
        self.events.iter().find_map(|(at, e)| match e {
            DmEvent::Completed { ticket: t, .. } if *t == ticket => Some(*at),
            _ => None,
        })
    }

    fn drain_commands(&mut self) {
        let now = self.pair.now;
        while let Some(command) = self.dm.poll_command() {
            match command {
                Command::Send {
                    ticket,
                    request,
                    confirmable,
                    ..
                } => {
                    // One device per world: every address is the pair's client side.
                    let id = self
                        .pair
                        .server
                        .request(now, Side::Client, request, confirmable);
                    self.dm.sent(ticket, id);
                    self.sent_at.push((now, ticket));
                }
                Command::Cancel { id, .. } => self.pair.server.cancel(now, Side::Client, id),
                // No store in the simulated harness: queued requests live in memory only.
                Command::Persist { ticket, .. } => self.persisted.push(ticket),
                Command::Unpersist { ticket, .. } => self.unpersisted.push(ticket),
            }
        }
        while let Some(event) = self.dm.poll_event() {
            self.events.push((now, event));
        }
    }

    /// Runs both sides for `duration` of simulated time.
    pub fn run(&mut self, duration: Duration) {
        let end = self.pair.now + duration;
        let peer = Peer {
            address: ENDPOINT.into(),
            identity: PeerIdentity::Unsecured,
        };
        loop {
            let now = self.pair.now;
            for event in std::mem::take(&mut self.pair.client_events) {
                match event {
                    Event::Response { id, response, .. } if self.device_side.contains(&id) => {
                        self.device_side_outcomes.push((id, Ok(response)));
                    }
                    Event::Failed { id, reason, .. } if self.device_side.contains(&id) => {
                        self.device_side_outcomes.push((id, Err(reason)));
                    }
                    other => self.device.on_event(now, &mut self.pair.client, other),
                }
            }
            self.device.poll(now, &mut self.pair.client);
            if self.dm.poll_timeout().is_some_and(|t| t <= now) {
                self.dm.handle_timeout(now);
            }
            let now_ms = self.now_ms();
            for event in std::mem::take(&mut self.pair.server_events) {
                match self.server.handle(now_ms, event, &peer) {
                    Handled::Reply(reply) => {
                        let _ = self.pair.server.respond(now, reply.to, reply.response);
                        for e in reply.events {
                            self.on_domain_event(now, &e);
                            self.domain.push(e);
                        }
                    }
                    Handled::NotMine(Event::Request { id, request }) if is_send(&request) => {
                        let client = self.server.registrations().by_endpoint(ENDPOINT);
                        let (response, report) = handle_send(client, &request, self.dm.models());
                        if let Some(client) = client {
                            self.dm.on_uplink(now, client);
                        }
                        if let Ok(report) = report {
                            self.sends.push(report);
                        }
                        let _ = self.pair.server.respond(now, id, response);
                    }
                    Handled::NotMine(other) => {
                        self.dm.on_stack_event(now, &other);
                    }
                }
            }
            self.drain_commands();
            if now >= end {
                return;
            }
            let limit = [self.device.poll_timeout(), self.dm.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .map_or(end, |t| t.clamp(now, end));
            if !self.pair.step_until(Some(limit)) {
                self.pair.now = if limit > now { limit } else { end };
            }
        }
    }

    fn on_domain_event(&mut self, now: Instant, event: &DomainEvent) {
        match event {
            DomainEvent::Registered { registration, .. }
            | DomainEvent::Updated {
                current: registration,
                ..
            } => {
                if let Some(client) = self
                    .server
                    .registrations()
                    .by_endpoint(&registration.endpoint)
                {
                    self.dm.on_uplink(now, client);
                }
            }
            DomainEvent::Deregistered { registration } | DomainEvent::Expired { registration } => {
                self.dm.on_deregistered(&registration.endpoint);
            }
        }
    }
}
