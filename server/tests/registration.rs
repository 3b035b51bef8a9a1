//! The Registration interface end to end: a real `Stack` pair on the simulated link, the
//! server side answered by `Lwm2mServer`, the client side sending requests built by hand.

use std::time::{Duration, Instant};

use steward::lwm2m::registration::RegisterRequest;
use steward::lwm2m::{DomainEvent, Handled, Lwm2mServer, Peer, ServerConfig, UpdateRequest};
use steward::registry::{Lwm2mVersion, PeerIdentity};
use steward_coap::message::{Code, Method, Request, Response, option};
use steward_coap::sim::{Link, Pair};
use steward_objects::link::ObjectLinks;

const BASE_MS: u64 = 1_700_000_000_000;
const LINKS: &[u8] = b"</>;rt=\"oma.lwm2m\";ct=110,</1/0>,</3>;ver=1.1,</3/0>";

struct Harness {
    pair: Pair,
    server: Lwm2mServer,
    start: Instant,
    /// Who the transport says the client is.
    peer: Peer,
    events: Vec<DomainEvent>,
}

impl Harness {
    fn new(link: Link, seed: u64, config: ServerConfig) -> Harness {
        let pair = Pair::new(link, seed);
        Harness {
            start: pair.now,
            pair,
            server: Lwm2mServer::new(config),
            peer: Peer {
                address: "192.0.2.1:5683".into(),
                identity: psk("sensor-1"),
            },
            events: Vec::new(),
        }
    }

    fn perfect() -> Harness {
        Harness::new(Link::perfect(), 1, ServerConfig::default())
    }

    fn now_ms(&self) -> u64 {
        let elapsed = self.pair.now.saturating_duration_since(self.start);
        BASE_MS + u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
    }

    /// The simulated instant of a unix-ms deadline.
    fn instant_of(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms.saturating_sub(BASE_MS))
    }

    /// Lets the server answer everything it has received and expire what is due.
    fn serve(&mut self) {
        let now = self.pair.now;
        let now_ms = self.now_ms();
        for event in std::mem::take(&mut self.pair.server_events) {
            match self.server.handle(now_ms, event, &self.peer) {
                Handled::Reply(reply) => {
                    self.events.extend(reply.events);
                    let sent = self.pair.server.respond(now, reply.to, reply.response);
                    assert!(sent.is_ok(), "{sent:?}");
                }
                Handled::NotMine(other) => panic!("not a registration event: {other:?}"),
            }
        }
        let expired = self.server.handle_timeout(now_ms);
        self.events.extend(expired);
    }

    /// Sends a confirmable request from the client and runs until its response (or failure).
    fn request(&mut self, request: Request) -> Option<Response> {
        let id = self.pair.client_request(request, true);
        let deadline = self.pair.now + Duration::from_secs(300);
        loop {
            self.serve();
            if let Some(outcome) = self.pair.take_client_outcome(id) {
                return outcome.ok();
            }
            if !self.pair.step_until(Some(deadline)) {
                self.serve();
                return self.pair.take_client_outcome(id).and_then(Result::ok);
            }
        }
    }

    /// Runs simulated time forward, waking the server for its expiry timer.
    fn run_for(&mut self, duration: Duration) {
        let end = self.pair.now + duration;
        loop {
            let wake = self
                .server
                .poll_timeout()
                .map(|ms| self.instant_of(ms))
                .filter(|at| *at < end)
                .unwrap_or(end);
            while self.pair.step_until(Some(wake)) {
                self.serve();
            }
            self.pair.now = self.pair.now.max(wake);
            self.serve();
            if wake >= end {
                break;
            }
        }
    }

    /// Registers with `query`, returning the response.
    fn register(&mut self, query: &[&str]) -> Response {
        let mut r = Request::new(Method::Post).with_path("/rd");
        for q in query {
            r = r.with_query(q);
        }
        let r = r.with_payload(40, LINKS.to_vec());
        self.request(r)
            .unwrap_or_else(|| panic!("no response to Register"))
    }

    fn registered_id(&mut self, query: &[&str]) -> String {
        let response = self.register(query);
        assert_eq!(response.code, Code::CREATED, "{}", diagnostic(&response));
        let location = location_path(&response);
        assert_eq!(location.len(), 2, "{location:?}");
        assert_eq!(location[0], "rd");
        location[1].clone()
    }
}

fn psk(identity: &str) -> PeerIdentity {
    PeerIdentity::Psk(identity.as_bytes().to_vec())
}

fn location_path(response: &Response) -> Vec<String> {
    response
        .options
        .get_all(option::LOCATION_PATH)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

fn diagnostic(response: &Response) -> String {
    String::from_utf8_lossy(&response.payload).into_owned()
}

fn code_of(response: Option<Response>) -> Option<Code> {
    response.map(|r| r.code)
}

#[test]
fn register_update_deregister() {
    let mut h = Harness::perfect();
    let id = h.registered_id(&["ep=sensor-1", "lt=300", "lwm2m=1.1", "b=U", "Q"]);
    let client = h.server.registrations().by_endpoint("sensor-1").cloned();
    let client = client.unwrap_or_else(|| panic!("not registered"));
    assert_eq!(client.registration.id, id);
    assert_eq!(client.registration.lifetime, 300);
    assert!(client.registration.queue_mode);
    assert_eq!(client.links.announced_versions().len(), 2);
    assert!(matches!(
        h.events.as_slice(),
        [DomainEvent::Registered { replaced: None, .. }]
    ));

    let update = UpdateRequest {
        lifetime: Some(600),
        ..UpdateRequest::new(&id)
    };
    assert_eq!(code_of(h.request(update.to_request())), Some(Code::CHANGED));
    let lifetime = h
        .server
        .registrations()
        .get(&id)
        .map(|c| c.registration.lifetime);
    assert_eq!(lifetime, Some(600));
    assert!(
        matches!(h.events.last(), Some(DomainEvent::Updated { previous, current })
        if previous.lifetime == 300 && current.lifetime == 600)
    );

    let deregister = Request::new(Method::Delete).with_path(&format!("/rd/{id}"));
    assert_eq!(code_of(h.request(deregister.clone())), Some(Code::DELETED));
    assert!(h.server.registrations().is_empty());
    assert!(matches!(
        h.events.last(),
        Some(DomainEvent::Deregistered { .. })
    ));
    // Gone now: a second De-register is 4.04.
    assert_eq!(code_of(h.request(deregister)), Some(Code::NOT_FOUND));
}

#[test]
fn update_of_an_unknown_registration_is_not_found() {
    let mut h = Harness::perfect();
    let response = h.request(UpdateRequest::new("nosuchid00").to_request());
    assert_eq!(code_of(response), Some(Code::NOT_FOUND));
}

#[test]
fn unsupported_version_is_precondition_failed() {
    let mut h = Harness::perfect();
    let response = h.register(&["ep=sensor-1", "lwm2m=1.3"]);
    assert_eq!(response.code, Code::PRECONDITION_FAILED);
    assert!(
        diagnostic(&response).contains("1.3"),
        "{}",
        diagnostic(&response)
    );
    assert!(h.server.registrations().is_empty());
    // A malformed version is a bad request, not an incompatible one.
    assert_eq!(
        h.register(&["ep=sensor-1", "lwm2m=x"]).code,
        Code::BAD_REQUEST
    );
}

#[test]
fn endpoint_must_match_the_identity() {
    let mut h = Harness::perfect();
    let response = h.register(&["ep=sensor-2", "lwm2m=1.1"]);
    assert_eq!(response.code, Code::FORBIDDEN, "{}", diagnostic(&response));
    h.peer.identity = PeerIdentity::X509 {
        common_name: "sensor-1".into(),
    };
    assert_eq!(h.register(&["ep=sensor-2"]).code, Code::FORBIDDEN);
    assert_eq!(h.register(&["ep=sensor-1"]).code, Code::CREATED);
    assert!(
        h.events
            .iter()
            .all(|e| matches!(e, DomainEvent::Registered { .. }))
    );
    assert_eq!(h.events.len(), 1);
}

#[test]
fn lwm2m_1_1_without_ep_takes_the_identity() {
    let mut h = Harness::perfect();
    let id = h.registered_id(&["lwm2m=1.1"]);
    let ep = h
        .server
        .registrations()
        .get(&id)
        .map(|c| c.registration.endpoint.clone());
    assert_eq!(ep.as_deref(), Some("sensor-1"));
    // 1.0 has no such rule.
    assert_eq!(h.register(&["lwm2m=1.0"]).code, Code::BAD_REQUEST);
}

#[test]
fn unsecured_only_when_configured() {
    let mut h = Harness::perfect();
    h.peer.identity = PeerIdentity::Unsecured;
    assert_eq!(h.register(&["ep=plain"]).code, Code::FORBIDDEN);

    let config = ServerConfig {
        allow_unsecured: true,
        ..ServerConfig::default()
    };
    let mut h = Harness::new(Link::perfect(), 2, config);
    h.peer.identity = PeerIdentity::Unsecured;
    let id = h.registered_id(&["ep=plain"]);
    // A NoSec client is known only by its address: an Update from elsewhere is refused.
    h.peer.address = "198.51.100.7:40000".into();
    let update = h.request(UpdateRequest::new(&id).to_request());
    assert_eq!(code_of(update), Some(Code::BAD_REQUEST));
}

#[test]
fn update_from_another_identity_is_refused() {
    let mut h = Harness::perfect();
    let id = h.registered_id(&["ep=sensor-1"]);
    h.peer.identity = psk("sensor-2");
    let response = h.request(UpdateRequest::new(&id).to_request());
    // Transport §6.4.3 allows only 4.00 and 4.04 for Update (and Leshan answers 4.00).
    assert_eq!(code_of(response), Some(Code::BAD_REQUEST));
    let delete = Request::new(Method::Delete).with_path(&format!("/rd/{id}"));
    assert_eq!(code_of(h.request(delete)), Some(Code::BAD_REQUEST));
    assert_eq!(h.server.registrations().len(), 1);
    // The same identity from a new address (NAT rebinding) is fine, and moves the address.
    h.peer.identity = psk("sensor-1");
    h.peer.address = "203.0.113.9:1234".into();
    let response = h.request(UpdateRequest::new(&id).to_request());
    assert_eq!(code_of(response), Some(Code::CHANGED));
    let address = h
        .server
        .registrations()
        .get(&id)
        .map(|c| c.registration.address.clone());
    assert_eq!(address.as_deref(), Some("203.0.113.9:1234"));
}

#[test]
fn re_register_replaces_the_old_registration() {
    let mut h = Harness::perfect();
    let first = h.registered_id(&["ep=sensor-1", "lwm2m=1.0", "b=UQ"]);
    let second = h.registered_id(&["ep=sensor-1", "lwm2m=1.2"]);
    assert_ne!(first, second);
    assert_eq!(h.server.registrations().len(), 1);
    match h.events.last() {
        Some(DomainEvent::Registered {
            registration,
            replaced: Some(old),
        }) => {
            assert_eq!(old.id, first);
            assert!(old.queue_mode, "1.0 `b=UQ` is queue mode");
            assert_eq!(registration.version, Lwm2mVersion::V1_2);
        }
        other => panic!("{other:?}"),
    }
    let old = h.request(UpdateRequest::new(&first).to_request());
    assert_eq!(code_of(old), Some(Code::NOT_FOUND));
}

#[test]
fn registration_expires_after_its_lifetime() {
    let mut h = Harness::perfect();
    let id = h.registered_id(&["ep=sensor-1", "lt=60"]);
    h.run_for(Duration::from_secs(59));
    assert!(h.server.registrations().get(&id).is_some());
    // An Update renews the lifetime from now.
    assert_eq!(
        code_of(h.request(UpdateRequest::new(&id).to_request())),
        Some(Code::CHANGED)
    );
    h.run_for(Duration::from_secs(59));
    assert!(h.server.registrations().get(&id).is_some());
    h.run_for(Duration::from_secs(2));
    assert!(h.server.registrations().is_empty());
    match h.events.last() {
        Some(DomainEvent::Expired { registration }) => assert_eq!(registration.id, id),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.server.poll_timeout(), None);
}

#[test]
fn lossy_link_still_gives_one_registration() {
    let link = Link {
        duplicate: 0.3,
        jitter: Duration::from_millis(50),
        ..Link::lossy(0.3)
    };
    let (mut answered, mut lost, mut duplicated) = (0, 0, 0);
    for seed in 0..20 {
        let mut h = Harness::new(link, seed, ServerConfig::default());
        let request = RegisterRequest::new(
            Some("sensor-1"),
            Lwm2mVersion::V1_1,
            ObjectLinks::new().with_instance(1, 0).with_instance(3, 0),
        )
        .to_request();
        let response = h.request(request);
        // Let every retransmission and duplicate drain.
        h.run_for(Duration::from_secs(300));
        let registered = h
            .events
            .iter()
            .filter(|e| matches!(e, DomainEvent::Registered { .. }))
            .count();
        assert!(
            registered <= 1,
            "seed {seed}: the handler saw the Register twice"
        );
        assert_eq!(h.server.registrations().len(), registered, "seed {seed}");
        lost += h.pair.stats.lost;
        duplicated += h.pair.stats.duplicated;
        if let Some(r) = response {
            answered += 1;
            assert_eq!(registered, 1, "seed {seed}");
            assert_eq!(r.code, Code::CREATED);
            let id = location_path(&r).pop();
            let live = h.server.registrations().by_endpoint("sensor-1");
            assert_eq!(id.as_deref(), live.map(|c| c.registration.id.as_str()));
        }
    }
    assert!(
        lost > 0 && duplicated > 0,
        "the link did its job: {lost} lost, {duplicated} duplicated"
    );
    assert!(
        answered >= 18,
        "only {answered} of 20 answered through 30% loss"
    );
}

#[test]
fn other_paths_are_handed_back() {
    let mut server = Lwm2mServer::new(ServerConfig::default());
    let mut pair = Pair::new(Link::perfect(), 3);
    pair.client_request(Request::new(Method::Post).with_path("/dp"), true);
    pair.step();
    let peer = Peer {
        address: "a".into(),
        identity: psk("a"),
    };
    let events = std::mem::take(&mut pair.server_events);
    assert_eq!(events.len(), 1);
    for e in events {
        assert!(matches!(server.handle(0, e, &peer), Handled::NotMine(_)));
    }
}
