//! The Bootstrap interface, client side, in simulated time against a scripted bootstrap peer:
//! the peer answers the device's Bootstrap-Request and Register, and sends the bootstrap
//! server's operations with `pair.server_request` (one `Pair` side plays both the bootstrap
//! server and the LwM2M server, as `SimDevice` without a resolver maps every URI to it).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use steward_client::bootstrap::account::mode;
use steward_client::bootstrap::{BootstrapEvent, Security, State};
use steward_client::registration::RegistrationEvent;
use steward_client::{BootstrapServer, DeviceConfig, DeviceEvent, SimDevice, harness};
use steward_coap::endpoint::Event;
use steward_coap::message::{Code, Method, Request, Response, encode_uint, option};
use steward_coap::sim::{Link, Pair, Side};
use steward_objects::link::DiscoverAnswer;
use steward_objects::{ContentFormat, Instance, Node, Path, Resource, Value, Version, codec};

const BS_URI: &str = "coap://bs.example:5783";
const SERVER_URI: &str = "coap://lwm2m.example:5683";

/// The scripted peer: what it was asked, and how it answers.
#[derive(Default)]
struct Peer {
    bootstrap_requests: Vec<Request>,
    registers: Vec<Request>,
    deregisters: usize,
    /// Answer the Bootstrap-Request with this instead of 2.04.
    refuse: Option<Code>,
}

impl Peer {
    fn answer(&mut self, request: &Request) -> Response {
        match (request.method, request.path_string().as_str()) {
            (Method::Post, "/bs") => {
                self.bootstrap_requests.push(request.clone());
                Response::new(self.refuse.unwrap_or(Code::CHANGED))
            }
            (Method::Post, "/rd") => {
                self.registers.push(request.clone());
                Response::new(Code::CREATED)
                    .with_option(option::LOCATION_PATH, b"rd".to_vec())
                    .with_option(option::LOCATION_PATH, b"7".to_vec())
            }
            (Method::Post, "/rd/7") => Response::new(Code::CHANGED),
            (Method::Delete, "/rd/7") => {
                self.deregisters += 1;
                Response::new(Code::DELETED)
            }
            _ => Response::new(Code::NOT_FOUND),
        }
    }
}

struct Setup {
    pair: Pair,
    device: SimDevice<Side>,
    peer: Peer,
}

impl Setup {
    /// A factory device that knows only its bootstrap server.
    fn new(lwm2m: Version, seed: u64) -> Setup {
        let mut config = DeviceConfig::new("bs-dev", lwm2m);
        config.bootstrap = Some(BootstrapServer {
            uri: BS_URI.into(),
            security: Security::NoSec,
        });
        Setup {
            pair: Pair::new(Link::perfect(), seed),
            device: SimDevice::new(config, Side::Server),
            peer: Peer::default(),
        }
    }

    fn run(&mut self, duration: Duration) {
        let peer = &mut self.peer;
        harness::run(&mut self.pair, &mut self.device, duration, |r| {
            peer.answer(r)
        });
    }

    /// Sends a bootstrap-server operation and runs until its answer.
    fn call(&mut self, request: Request) -> Response {
        let id = self.pair.server_request(request, true);
        for _ in 0..100 {
            self.run(Duration::from_millis(50));
            let at = self
                .pair
                .server_events
                .iter()
                .position(|e| matches!(e, Event::Response { id: i, .. } if *i == id));
            if let Some(at) = at
                && let Event::Response { response, .. } = self.pair.server_events.remove(at)
            {
                return response;
            }
        }
        panic!("no answer");
    }

    fn events(&mut self) -> Vec<DeviceEvent> {
        std::iter::from_fn(|| self.device.poll_event()).collect()
    }

    /// Starts the device and lets the peer accept its Bootstrap-Request.
    fn requested(&mut self) {
        self.device.start();
        self.run(Duration::from_secs(1));
        assert!(
            self.device.bootstrap().is_serving(),
            "{:?}",
            self.device.bootstrap().state()
        );
    }

    /// Delete `/`, write a server account (SSID 101, NoSec) and its Server instance.
    fn configure(&mut self, lifetime: i64) {
        assert_eq!(self.call(delete("/")).code, Code::DELETED);
        let security = instance([
            (0, Value::String(SERVER_URI.into())),
            (1, Value::Boolean(false)),
            (2, Value::Integer(mode::NO_SEC)),
            (10, Value::Integer(101)),
        ]);
        assert_eq!(self.call(write("/0/1", &security)).code, Code::CHANGED);
        let server = instance([
            (0, Value::Integer(101)),
            (1, Value::Integer(lifetime)),
            (6, Value::Boolean(false)),
            (7, Value::String("U".into())),
        ]);
        assert_eq!(self.call(write("/1/0", &server)).code, Code::CHANGED);
    }
}

fn instance<const N: usize>(values: [(u16, Value); N]) -> Instance {
    Instance {
        resources: values
            .into_iter()
            .map(|(r, v)| (r, Resource::Single(v)))
            .collect(),
    }
}

/// A Bootstrap-Write of a whole instance in SenML CBOR.
fn write(path: &str, inst: &Instance) -> Request {
    let p: Path = path.parse().unwrap();
    let body = codec::encode(ContentFormat::SenmlCbor, &p, &Node::Instance(inst.clone())).unwrap();
    Request::new(Method::Put)
        .with_path(path)
        .with_payload(ContentFormat::SenmlCbor.code(), body)
}

fn delete(path: &str) -> Request {
    Request::new(Method::Delete).with_path(path)
}

fn discover(path: &str) -> Request {
    Request::new(Method::Get)
        .with_path(path)
        .with_option(option::ACCEPT, encode_uint(40))
}

fn finish() -> Request {
    Request::new(Method::Post).with_path("/bs")
}

#[test]
fn delete_write_finish_then_register() {
    let mut s = Setup::new(Version::V1_1, 1);
    s.requested();
    let request = &s.peer.bootstrap_requests[0];
    assert_eq!(
        request.options.uri_query().unwrap(),
        ["ep=bs-dev", "pct=112"],
        "1.1 asks for SenML CBOR"
    );
    assert!(
        s.peer.registers.is_empty(),
        "no Register before the bootstrap"
    );

    // Bootstrap-Discover on `/` shows the version and the bootstrap account's URI.
    let answer = s.call(discover("/"));
    assert_eq!(answer.code, Code::CONTENT);
    let links = DiscoverAnswer::parse(&answer.payload).unwrap();
    assert_eq!(links.lwm2m, Some(Version::V1_1));
    let bs = links.get(&Path::Instance(0, 0)).unwrap();
    assert_eq!(bs.properties.uri.as_deref(), Some(BS_URI));
    assert_eq!(
        bs.properties.ssid, None,
        "the bootstrap account has no SSID"
    );
    assert!(links.get(&Path::Instance(3, 0)).is_some());

    s.configure(120);
    // Discover /0 now lists the new account with its SSID and URI.
    let text = String::from_utf8(s.call(discover("/0")).payload).unwrap();
    assert!(
        text.contains(&format!("</0/1>;ssid=101;uri=\"{SERVER_URI}\"")),
        "{text}"
    );
    // Bootstrap-Read (1.1) of /1 gives back what was written; /0 holds secrets.
    let read = s.call(Request::new(Method::Get).with_path("/1/0"));
    assert_eq!(read.code, Code::CONTENT);
    assert_eq!(
        s.call(Request::new(Method::Get).with_path("/0")).code,
        Code::UNAUTHORIZED
    );

    assert_eq!(s.call(finish()).code, Code::CHANGED);
    s.run(Duration::from_secs(1));
    assert_eq!(s.device.bootstrap().state(), &State::Finished);
    assert!(s.device.registration().is_registered());
    let register = s.peer.registers.last().unwrap();
    assert_eq!(
        register.options.uri_query().unwrap(),
        ["ep=bs-dev", "lt=120", "lwm2m=1.1", "b=U"]
    );
    let events = s.events();
    let account = events.iter().find_map(|e| match e {
        DeviceEvent::Bootstrapped { account } => Some(account.clone()),
        _ => None,
    });
    let account = account.expect("a Bootstrapped event");
    assert_eq!((account.ssid, account.uri.as_str()), (101, SERVER_URI));
    assert_eq!(account.security, Security::NoSec);
    assert!(events.contains(&DeviceEvent::Bootstrap(BootstrapEvent::Finished)));

    // Registered, /0 is off limits to the LwM2M server again.
    assert_eq!(
        s.call(Request::new(Method::Get).with_path("/0/1")).code,
        Code::UNAUTHORIZED
    );
}

#[test]
fn finish_with_an_unusable_configuration_is_not_acceptable() {
    let mut s = Setup::new(Version::V1_1, 2);
    s.requested();
    assert_eq!(s.call(delete("/")).code, Code::DELETED);
    // A server account whose SSID no Server instance has.
    let security = instance([
        (0, Value::String(SERVER_URI.into())),
        (1, Value::Boolean(false)),
        (2, Value::Integer(mode::NO_SEC)),
        (10, Value::Integer(5)),
    ]);
    assert_eq!(s.call(write("/0/1", &security)).code, Code::CHANGED);
    let refused = s.call(finish());
    assert_eq!(refused.code, Code::NOT_ACCEPTABLE);
    assert!(
        s.device.bootstrap().is_serving(),
        "still the bootstrap server's"
    );
    assert!(s.peer.registers.is_empty());

    // Fixing it makes Finish succeed.
    let server = instance([(0, Value::Integer(5)), (1, Value::Integer(60))]);
    assert_eq!(s.call(write("/1/3", &server)).code, Code::CHANGED);
    assert_eq!(s.call(finish()).code, Code::CHANGED);
    s.run(Duration::from_secs(1));
    assert_eq!(s.peer.registers.len(), 1);
}

#[test]
fn delete_root_keeps_the_bootstrap_account_and_the_device() {
    let mut s = Setup::new(Version::V1_2, 3);
    s.requested();
    s.configure(300);
    assert_eq!(s.device.device().server_accounts().len(), 1);
    assert_eq!(s.call(delete("/")).code, Code::DELETED);
    let d = s.device.device();
    assert!(d.server_accounts().is_empty());
    assert_eq!(
        d.bootstrap_account().map(|a| a.uri),
        Some(BS_URI.to_owned())
    );
    assert!(d.node(&Path::Instance(3, 0)).is_some(), "/3/0 stays");
    assert!(d.node(&Path::Instance(1, 0)).is_none());
    // The bootstrap account and the Device object cannot be deleted by name either.
    assert_eq!(s.call(delete("/0/0")).code, Code::BAD_REQUEST);
    assert_eq!(s.call(delete("/3/0")).code, Code::BAD_REQUEST);
    // Deleting an account takes its Server instance along (unbootstrapping).
    s.configure(300);
    assert_eq!(s.call(delete("/0/1")).code, Code::DELETED);
    assert!(s.device.device().node(&Path::Instance(1, 0)).is_none());
}

#[test]
fn object_level_write_in_tlv_creates_instances() {
    let mut s = Setup::new(Version::V1_0, 4);
    s.requested();
    assert_eq!(
        s.peer.bootstrap_requests[0].options.uri_query().unwrap(),
        ["ep=bs-dev"],
        "1.0 sends no pct"
    );
    let accounts = Node::Object(
        [(
            4,
            instance([
                (0, Value::String(SERVER_URI.into())),
                (1, Value::Boolean(false)),
                (2, Value::Integer(mode::PSK)),
                (3, Value::Opaque(b"bs-dev".to_vec())),
                (5, Value::Opaque(vec![0x11; 16])),
                (10, Value::Integer(9)),
            ]),
        )]
        .into(),
    );
    let body = codec::encode(ContentFormat::Tlv, &Path::Object(0), &accounts).unwrap();
    let put = Request::new(Method::Put)
        .with_path("/0")
        .with_payload(ContentFormat::Tlv.code(), body);
    assert_eq!(s.call(put).code, Code::CHANGED);
    // Bootstrap-Read is 1.1+.
    assert_eq!(
        s.call(Request::new(Method::Get).with_path("/1")).code,
        Code::METHOD_NOT_ALLOWED
    );
    let server = Node::Instance(instance([(0, Value::Integer(9)), (1, Value::Integer(90))]));
    let body = codec::encode(ContentFormat::Tlv, &Path::Instance(1, 2), &server).unwrap();
    let put = Request::new(Method::Put)
        .with_path("/1/2")
        .with_payload(ContentFormat::Tlv.code(), body);
    assert_eq!(s.call(put).code, Code::CHANGED);
    // A 1.0 device does not read SenML CBOR.
    let senml = write("/1/3", &instance([(0, Value::Integer(3))]));
    assert_eq!(s.call(senml).code, Code::UNSUPPORTED_CONTENT_FORMAT);

    assert_eq!(s.call(finish()).code, Code::CHANGED);
    s.run(Duration::from_secs(1));
    let account = s.events().into_iter().find_map(|e| match e {
        DeviceEvent::Bootstrapped { account } => Some(account),
        _ => None,
    });
    assert_eq!(
        account.map(|a| a.security),
        Some(Security::Psk {
            identity: b"bs-dev".to_vec(),
            key: vec![0x11; 16]
        })
    );
    assert_eq!(s.peer.registers.len(), 1);
}

#[test]
fn bootstrap_request_trigger_bootstraps_again() {
    let mut s = Setup::new(Version::V1_1, 5);
    s.requested();
    s.configure(300);
    assert_eq!(s.call(finish()).code, Code::CHANGED);
    s.run(Duration::from_secs(1));
    assert!(s.device.registration().is_registered());
    s.events();

    // The LwM2M server executes the Bootstrap-Request Trigger.
    let trigger = Request::new(Method::Post).with_path("/1/0/9");
    assert_eq!(s.call(trigger).code, Code::CHANGED);
    s.run(Duration::from_secs(1));
    assert_eq!(s.peer.deregisters, 1, "left the old server");
    assert_eq!(s.peer.bootstrap_requests.len(), 2);
    assert!(s.device.bootstrap().is_serving());

    // A new configuration: lifetime 600.
    s.configure(600);
    assert_eq!(s.call(finish()).code, Code::CHANGED);
    s.run(Duration::from_secs(1));
    let register = s.peer.registers.last().unwrap();
    assert!(register.options.uri_query().unwrap().contains(&"lt=600"));
    assert_eq!(s.peer.registers.len(), 2);
}

#[test]
fn silence_after_the_request_times_out_and_retries() {
    let mut s = Setup::new(Version::V1_1, 6);
    s.requested();
    // The bootstrap server never sends anything: after EXCHANGE_LIFETIME the device gives up
    // and asks again after the back-off (5 s).
    s.run(Duration::from_secs(250));
    assert_eq!(s.peer.bootstrap_requests.len(), 1);
    let failed = s.events().into_iter().find_map(|e| match e {
        DeviceEvent::Bootstrap(BootstrapEvent::Failed { reason, retry_in }) => {
            Some((reason.to_string(), retry_in))
        }
        _ => None,
    });
    // 5 s, spread by up to a half per device (devices that fail together come back apart).
    let (reason, retry_in) = failed.expect("failed");
    assert_eq!(reason, "no Bootstrap-Finish in time");
    assert!(retry_in >= Duration::from_secs(5) && retry_in < Duration::from_millis(7500));
    s.run(retry_in);
    assert_eq!(s.peer.bootstrap_requests.len(), 2);
}

#[test]
fn a_refused_request_backs_off() {
    let mut s = Setup::new(Version::V1_1, 7);
    s.peer.refuse = Some(Code::BAD_REQUEST);
    s.device.start();
    s.run(Duration::from_secs(16));
    // At 0, 5 and 15 s.
    assert_eq!(s.peer.bootstrap_requests.len(), 3);
    assert!(s.peer.registers.is_empty());
}

#[test]
fn certificate_mode_with_est_is_not_available_yet() {
    let mut s = Setup::new(Version::V1_1, 8);
    s.requested();
    assert_eq!(s.call(delete("/")).code, Code::DELETED);
    let security = instance([
        (0, Value::String("coaps://lwm2m.example".into())),
        (1, Value::Boolean(false)),
        (2, Value::Integer(mode::CERTIFICATE_WITH_EST)),
        (4, Value::Opaque(vec![0x30, 0x00])),
        (10, Value::Integer(1)),
    ]);
    assert_eq!(s.call(write("/0/1", &security)).code, Code::CHANGED);
    let server = instance([(0, Value::Integer(1)), (1, Value::Integer(60))]);
    assert_eq!(s.call(write("/1/0", &server)).code, Code::CHANGED);
    assert_eq!(s.call(finish()).code, Code::CHANGED);
    s.run(Duration::from_secs(1));
    assert!(s.peer.registers.is_empty());
    let failed = s.events().into_iter().find_map(|e| match e {
        DeviceEvent::Bootstrap(BootstrapEvent::Failed { reason, .. }) => Some(reason.to_string()),
        _ => None,
    });
    assert_eq!(
        failed.as_deref(),
        Some("bootstrapped account unusable: EST enrolment not available")
    );
}

#[test]
fn registration_events_unchanged_for_factory_devices() {
    // A device without a bootstrap account registers at once, as before.
    let mut pair = Pair::new(Link::perfect(), 9);
    let mut device = SimDevice::new(DeviceConfig::new("plain", Version::V1_1), Side::Server);
    let mut peer = Peer::default();
    device.start();
    harness::run(&mut pair, &mut device, Duration::from_secs(1), |r| {
        peer.answer(r)
    });
    assert!(peer.bootstrap_requests.is_empty());
    let first = device.poll_event();
    assert_eq!(
        first,
        Some(DeviceEvent::Registration(RegistrationEvent::Registered {
            location: "/rd/7".into()
        }))
    );
    // Its Bootstrap-Request Trigger has nowhere to go.
    let id = pair.server_request(Request::new(Method::Post).with_path("/1/0/9"), true);
    harness::run(&mut pair, &mut device, Duration::from_secs(1), |r| {
        peer.answer(r)
    });
    assert!(
        pair.server_events
            .iter()
            .any(|e| matches!(e, Event::Response { id: i, .. } if *i == id))
    );
    assert!(peer.bootstrap_requests.is_empty());
}
