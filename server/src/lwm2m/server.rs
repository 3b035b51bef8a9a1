//! The Registration interface as a sans-IO handler: a request and its authenticated peer in,
//! a response and domain events out. No sockets and no clock: the caller passes `now` (unix
//! ms), asks [`Lwm2mServer::poll_timeout`] when to call [`Lwm2mServer::handle_timeout`], and
//! sends the response through its `Stack`. The stack has already removed duplicates
//! (retransmissions get the cached answer), so every request seen here is new.

use steward_coap::endpoint::{Event, Incoming};
use steward_coap::message::{Code, Request, Response, option};

use super::error::RegistrationError;
use super::identity::{endpoint_for, owns};
use super::registration::{
    self, RD, RegisterRequest, RegistrationRequest, UpdateRequest, is_registration_path,
};
use super::registrations::{Changes, NewRegistration, Registrations, RestoreIssue};
use crate::registry::{Lwm2mVersion, PeerIdentity, Registration};

/// Lifetime when `lt` is absent (Core 1.1 §5.3.1 Table: default 86400 s).
pub const DEFAULT_LIFETIME: u32 = 86_400;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Accept NoSec (coap://) registrations. Off by default: Transport §5.3 allows NoSec only
    /// with lower-layer security, which the server cannot see.
    pub allow_unsecured: bool,
    /// Lifetime for a Register without `lt`.
    pub default_lifetime: u32,
    /// Added to every lifetime before a registration expires: an Update that was sent in time
    /// but retransmitted (up to MAX_TRANSMIT_WAIT, 93 s) should not lose the race.
    pub expiry_grace_ms: u64,
    /// Seeds the registration-ID generator (the caller draws it from the OS; tests fix it).
    pub id_seed: u64,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            allow_unsecured: false,
            default_lifetime: DEFAULT_LIFETIME,
            expiry_grace_ms: 0,
            id_seed: 0x5745_5741_5244,
        }
    }
}

/// The sender of a request, as the transport authenticated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// `ip:port` (or any stable name the transport uses for the peer).
    pub address: String,
    pub identity: PeerIdentity,
}

/// What happened to registrations, for observations, the API and its event stream.
#[derive(Debug, Clone, PartialEq)]
pub enum DomainEvent {
    /// A new registration; `replaced` is the endpoint's previous one, whose observations are
    /// void now.
    Registered {
        registration: Registration,
        replaced: Option<Registration>,
    },
    Updated {
        previous: Registration,
        current: Registration,
    },
    Deregistered {
        registration: Registration,
    },
    Expired {
        registration: Registration,
    },
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply<P> {
    pub to: Incoming<P>,
    pub response: Response,
    pub events: Vec<DomainEvent>,
}

/// What [`Lwm2mServer::handle`] did with an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Handled<P> {
    /// A Registration-interface request: send `response` with `Stack::respond`.
    Reply(Reply<P>),
    /// Not for this interface (another path, or not a request): route it elsewhere.
    NotMine(Event<P>),
}

#[derive(Debug)]
pub struct Lwm2mServer {
    config: ServerConfig,
    registrations: Registrations,
}

impl Lwm2mServer {
    pub fn new(config: ServerConfig) -> Lwm2mServer {
        Lwm2mServer {
            registrations: Registrations::new(config.id_seed, config.expiry_grace_ms),
            config,
        }
    }

    pub fn registrations(&self) -> &Registrations {
        &self.registrations
    }

    /// Puts back the registrations the store holds (server start); see
    /// [`Registrations::restore`].
    pub fn restore(&mut self, registrations: Vec<Registration>) -> Vec<RestoreIssue> {
        self.registrations.restore(registrations)
    }

    /// Makes an endpoint's registration what the store says it is (`None`: not registered),
    /// after a store write failed and the change it carried was not acknowledged.
    pub fn reconcile(&mut self, endpoint: &str, stored: Option<Registration>) {
        self.registrations.forget_endpoint(endpoint);
        if let Some(r) = stored {
            self.registrations.restore(vec![r]);
        }
    }

    /// Takes an event from the stack. Requests under `/rd` are answered; everything else is
    /// handed back.
    pub fn handle<P: Copy>(&mut self, now_ms: u64, event: Event<P>, peer: &Peer) -> Handled<P> {
        match event {
            Event::Request { id, request } if is_registration_path(&request) => {
                let (response, events) = self.handle_request(now_ms, peer, &request);
                Handled::Reply(Reply {
                    to: id,
                    response,
                    events,
                })
            }
            other => Handled::NotMine(other),
        }
    }

    /// Answers one Registration-interface request.
    pub fn handle_request(
        &mut self,
        now_ms: u64,
        peer: &Peer,
        request: &Request,
    ) -> (Response, Vec<DomainEvent>) {
        let outcome = registration::parse(request).and_then(|parsed| match parsed {
            RegistrationRequest::Register(r) => self.register(now_ms, peer, r),
            RegistrationRequest::Update(u) => self.update(now_ms, peer, u),
            RegistrationRequest::Deregister(d) => self.deregister(peer, &d.id),
        });
        match outcome {
            Ok(ok) => ok,
            Err(e) => (
                Response::new(e.code()).with_diagnostic(&e.to_string()),
                Vec::new(),
            ),
        }
    }

    /// When [`Lwm2mServer::handle_timeout`] has work (unix ms).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.registrations.next_expiry()
    }

    /// Expires every registration whose lifetime has run out.
    pub fn handle_timeout(&mut self, now_ms: u64) -> Vec<DomainEvent> {
        self.registrations
            .expire(now_ms)
            .into_iter()
            .map(|registration| DomainEvent::Expired { registration })
            .collect()
    }

    fn register(
        &mut self,
        now_ms: u64,
        peer: &Peer,
        r: RegisterRequest,
    ) -> Result<(Response, Vec<DomainEvent>), RegistrationError> {
        let endpoint = endpoint_for(
            r.endpoint.as_deref(),
            &peer.identity,
            self.config.allow_unsecured,
        )?;
        let queue_mode = r.queue_mode();
        let links = match (r.objects, r.profile_id) {
            (Some(links), _) => links,
            (None, Some(pid)) => return Err(RegistrationError::UnknownProfile(pid)),
            (None, None) => return Err(RegistrationError::MissingObjectLinks),
        };
        let registered = self.registrations.register(
            NewRegistration {
                endpoint,
                version: r.version,
                lifetime: r.lifetime.unwrap_or(self.config.default_lifetime),
                binding: r.binding.unwrap_or_default(),
                queue_mode,
                sms: r.sms,
                links,
                address: peer.address.clone(),
                identity: peer.identity.clone(),
            },
            now_ms,
        );
        let response = Response::new(Code::CREATED)
            .with_option(option::LOCATION_PATH, RD.as_bytes().to_vec())
            .with_option(
                option::LOCATION_PATH,
                registered.registration.id.as_bytes().to_vec(),
            );
        let event = DomainEvent::Registered {
            registration: registered.registration,
            replaced: registered.replaced,
        };
        Ok((response, vec![event]))
    }

    fn update(
        &mut self,
        now_ms: u64,
        peer: &Peer,
        u: UpdateRequest,
    ) -> Result<(Response, Vec<DomainEvent>), RegistrationError> {
        let current = self
            .registrations
            .get(&u.id)
            .ok_or_else(|| RegistrationError::UnknownRegistration(clip(&u.id)))?;
        if !owns(&current.registration, &peer.identity, &peer.address) {
            return Err(RegistrationError::NotOwner);
        }
        let version = current.registration.version;
        if let Some(b) = u.binding
            && !b.fits(version)
        {
            return Err(RegistrationError::BadBinding {
                binding: b.to_string(),
                version: version.as_str(),
            });
        }
        // Queue mode: `Q` (1.1+) or `Q` inside `b` turns it on. A 1.0 client that sends a
        // binding without `Q` turns it off; for 1.1+ `Q` is not repeated on every Update, so
        // its absence changes nothing.
        let queue_mode = if u.queue || u.binding.is_some_and(|b| b.queue) {
            Some(true)
        } else if u.binding.is_some() && version == Lwm2mVersion::V1_0 {
            Some(false)
        } else {
            None
        };
        let changes = Changes {
            lifetime: u.lifetime,
            binding: u.binding,
            queue_mode,
            sms: u.sms,
            links: u.objects,
            address: Some(peer.address.clone()),
        };
        let (previous, current) = self
            .registrations
            .update(&u.id, changes, now_ms)
            .ok_or_else(|| RegistrationError::UnknownRegistration(clip(&u.id)))?;
        Ok((
            Response::new(Code::CHANGED),
            vec![DomainEvent::Updated { previous, current }],
        ))
    }

    fn deregister(
        &mut self,
        peer: &Peer,
        id: &str,
    ) -> Result<(Response, Vec<DomainEvent>), RegistrationError> {
        let current = self
            .registrations
            .get(id)
            .ok_or_else(|| RegistrationError::UnknownRegistration(clip(id)))?;
        if !owns(&current.registration, &peer.identity, &peer.address) {
            return Err(RegistrationError::NotOwner);
        }
        let registration = self
            .registrations
            .deregister(id)
            .ok_or_else(|| RegistrationError::UnknownRegistration(clip(id)))?;
        Ok((
            Response::new(Code::DELETED),
            vec![DomainEvent::Deregistered { registration }],
        ))
    }
}

fn clip(s: &str) -> String {
    s.chars().take(32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use steward_coap::message::Method;

    fn peer() -> Peer {
        Peer {
            address: "a".into(),
            identity: PeerIdentity::Psk(b"dev".to_vec()),
        }
    }

    fn register(server: &mut Lwm2mServer, query: &[&str]) -> String {
        let mut r = Request::new(Method::Post).with_path("/rd");
        for q in query {
            r = r.with_query(q);
        }
        let r = r.with_payload(40, b"</1/0>,</3/0>".to_vec());
        let (response, _) = server.handle_request(0, &peer(), &r);
        assert_eq!(response.code, Code::CREATED);
        let location: Vec<_> = response.options.get_all(option::LOCATION_PATH).collect();
        String::from_utf8_lossy(location.get(1).copied().unwrap_or_default()).into_owned()
    }

    fn update(server: &mut Lwm2mServer, id: &str, query: &[&str]) -> Code {
        let mut r = Request::new(Method::Post).with_path(&format!("/rd/{id}"));
        for q in query {
            r = r.with_query(q);
        }
        server.handle_request(1_000, &peer(), &r).0.code
    }

    fn queue_mode(server: &Lwm2mServer, id: &str) -> Option<bool> {
        server
            .registrations()
            .get(id)
            .map(|c| c.registration.queue_mode)
    }

    #[test]
    fn update_binding_follows_the_registration_version() {
        let mut s = Lwm2mServer::new(ServerConfig::default());
        let id = register(&mut s, &["ep=dev", "lwm2m=1.0", "b=UQ"]);
        assert_eq!(queue_mode(&s, &id), Some(true));
        assert_eq!(
            update(&mut s, &id, &["b=T"]),
            Code::BAD_REQUEST,
            "no T in 1.0"
        );
        assert_eq!(update(&mut s, &id, &["b=U"]), Code::CHANGED);
        assert_eq!(
            queue_mode(&s, &id),
            Some(false),
            "1.0: `U` without Q ends queue mode"
        );

        let id = register(&mut s, &["ep=dev", "lwm2m=1.1", "Q"]);
        assert_eq!(update(&mut s, &id, &["b=T"]), Code::CHANGED);
        assert_eq!(
            queue_mode(&s, &id),
            Some(true),
            "1.1: Q is not repeated on Update"
        );
        let binding = s
            .registrations()
            .get(&id)
            .map(|c| c.registration.binding.clone());
        assert_eq!(binding.as_deref(), Some("T"));
    }

    #[test]
    fn errors_carry_a_diagnostic() {
        let mut s = Lwm2mServer::new(ServerConfig::default());
        let r = Request::new(Method::Post)
            .with_path("/rd")
            .with_query("ep=dev")
            .with_query("lwm2m=9.9");
        let (response, events) = s.handle_request(0, &peer(), &r);
        assert_eq!(response.code, Code::PRECONDITION_FAILED);
        assert!(!response.payload.is_empty() && events.is_empty());
        // 1.2 profile ID without a payload: we keep no profiles.
        let pid = Request::new(Method::Post)
            .with_path("/rd")
            .with_query("ep=dev")
            .with_query("lwm2m=1.2")
            .with_query("pid=6:ab");
        assert_eq!(s.handle_request(0, &peer(), &pid).0.code, Code::CONFLICT);
    }
}
