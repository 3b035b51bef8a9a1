//! Persistent device state (`--state-dir`): a restarted device re-uses its bootstrap result,
//! its registration (Update instead of Register while the lifetime lasts) and its negotiated
//! version; a corrupt or unknown state file is a clear error, never a panic.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use steward_client::bootstrap::Security;
use steward_client::bootstrap::account::mode;
use steward_client::state::{CredentialPaths, StateError, StateStore};
use steward_client::{BootstrapServer, DeviceConfig, SimDevice, harness};
use steward_coap::endpoint::Event;
use steward_coap::message::{Code, Method, Request, Response, option};
use steward_coap::sim::{Link, Pair, Side};
use steward_objects::{ContentFormat, Instance, Node, Path, Resource, Value, Version, codec};

const CLOCK: i64 = 1_700_000_000;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "steward-client-state-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[derive(Default)]
struct Peer {
    log: Vec<String>,
    /// Versions refused with 4.12.
    refuse: Vec<&'static str>,
}

impl Peer {
    fn answer(&mut self, request: &Request) -> Response {
        let query = request.options.uri_query().unwrap_or_default().join("&");
        self.log.push(format!(
            "{} {}?{query}",
            request.method,
            request.path_string()
        ));
        match (request.method, request.path_string().as_str()) {
            (Method::Post, "/bs") => Response::new(Code::CHANGED),
            (Method::Post, "/rd") if self.refuse.iter().any(|v| query.contains(v)) => {
                Response::new(Code::PRECONDITION_FAILED)
            }
            (Method::Post, "/rd") => Response::new(Code::CREATED)
                .with_option(option::LOCATION_PATH, b"rd".to_vec())
                .with_option(option::LOCATION_PATH, b"k9".to_vec()),
            (Method::Post, "/rd/k9") => Response::new(Code::CHANGED),
            _ => Response::new(Code::NOT_FOUND),
        }
    }
}

fn config(lwm2m: Version, clock: i64) -> DeviceConfig {
    let mut c = DeviceConfig::new("keeper", lwm2m);
    c.clock = clock;
    c.bootstrap = Some(BootstrapServer {
        uri: "coap://bs.example".into(),
        security: Security::NoSec,
    });
    c
}

fn run(pair: &mut Pair, device: &mut SimDevice<Side>, peer: &mut Peer, secs: u64) {
    harness::run(pair, device, Duration::from_secs(secs), |r| peer.answer(r));
}

fn call(pair: &mut Pair, device: &mut SimDevice<Side>, peer: &mut Peer, request: Request) -> Code {
    let id = pair.server_request(request, true);
    run(pair, device, peer, 1);
    pair.server_events
        .iter()
        .find_map(|e| match e {
            Event::Response {
                id: i, response, ..
            } if *i == id => Some(response.code),
            _ => None,
        })
        .unwrap()
}

fn put(path: &str, values: Vec<(u16, Value)>) -> Request {
    let inst = Instance {
        resources: values
            .into_iter()
            .map(|(r, v)| (r, Resource::Single(v)))
            .collect(),
    };
    let p: Path = path.parse().unwrap();
    let body = codec::encode(ContentFormat::SenmlJson, &p, &Node::Instance(inst)).unwrap();
    Request::new(Method::Put)
        .with_path(path)
        .with_payload(ContentFormat::SenmlJson.code(), body)
}

/// Bootstraps a fresh device with a state directory and leaves it registered.
fn bootstrapped(store: &StateStore, peer: &mut Peer) -> (Pair, SimDevice<Side>) {
    let mut pair = Pair::new(Link::perfect(), 11);
    let mut device = SimDevice::new(config(Version::V1_2, CLOCK), Side::Server);
    let credentials = CredentialPaths {
        certificate: Some("/etc/dev.pem".into()),
        ..CredentialPaths::default()
    };
    assert!(!device.attach_state(store.clone(), credentials).unwrap());
    device.start();
    run(&mut pair, &mut device, peer, 1);
    let security = vec![
        (0, Value::String("coap://lwm2m.example".into())),
        (1, Value::Boolean(false)),
        (2, Value::Integer(mode::PSK)),
        (3, Value::Opaque(b"keeper".to_vec())),
        (5, Value::Opaque(vec![7; 16])),
        (10, Value::Integer(42)),
    ];
    assert_eq!(
        call(&mut pair, &mut device, peer, put("/0/3", security)),
        Code::CHANGED
    );
    let server = vec![(0, Value::Integer(42)), (1, Value::Integer(600))];
    assert_eq!(
        call(&mut pair, &mut device, peer, put("/1/3", server)),
        Code::CHANGED
    );
    let finish = Request::new(Method::Post).with_path("/bs");
    assert_eq!(call(&mut pair, &mut device, peer, finish), Code::CHANGED);
    run(&mut pair, &mut device, peer, 1);
    assert_eq!(device.registration().location(), Some("/rd/k9"));
    (pair, device)
}

#[test]
fn state_survives_a_restart() {
    let store = StateStore::new(dir("restart"));
    let mut peer = Peer {
        refuse: vec!["lwm2m=1.2"],
        ..Peer::default()
    };
    let (_pair, device) = bootstrapped(&store, &mut peer);
    assert_eq!(device.device().lwm2m(), Version::V1_1, "fell back from 1.2");
    drop(device);
    let saved = store.load("keeper").unwrap().unwrap();
    assert_eq!(saved.lwm2m, Version::V1_1);
    assert_eq!(saved.ssid, 42);
    assert_eq!(saved.credentials.certificate, Some("/etc/dev.pem".into()));
    let registration = saved.registration.clone().unwrap();
    assert_eq!(registration.location, "/rd/k9");
    assert_eq!(registration.server_uri, "coap://lwm2m.example");
    // Registered about 2 s after CLOCK, lifetime 600.
    assert!(
        (CLOCK + 600..=CLOCK + 605).contains(&registration.expires),
        "{registration:?}"
    );

    // Power cycle a minute later: the same account, an Update to the old location, no
    // bootstrap, and the negotiated version.
    let mut peer = Peer::default();
    let mut pair = Pair::new(Link::perfect(), 12);
    let mut device = SimDevice::new(config(Version::V1_2, CLOCK + 60), Side::Server);
    assert!(
        device
            .attach_state(store.clone(), CredentialPaths::default())
            .unwrap()
    );
    assert_eq!(device.device().lwm2m(), Version::V1_1);
    let account = device.device().server_account().unwrap();
    assert_eq!(account.ssid, 42);
    assert_eq!(
        account.security,
        Security::Psk {
            identity: b"keeper".to_vec(),
            key: vec![7; 16]
        }
    );
    device.start();
    run(&mut pair, &mut device, &mut peer, 1);
    assert_eq!(peer.log, ["POST /rd/k9?"]);
    assert!(device.registration().is_registered());

    // After the lifetime ran out: Register (at 1.1), still no bootstrap.
    let mut peer = Peer::default();
    let mut pair = Pair::new(Link::perfect(), 13);
    let mut device = SimDevice::new(config(Version::V1_2, CLOCK + 10_000), Side::Server);
    assert!(
        device
            .attach_state(store.clone(), CredentialPaths::default())
            .unwrap()
    );
    device.start();
    run(&mut pair, &mut device, &mut peer, 1);
    assert_eq!(peer.log.len(), 1);
    assert!(
        peer.log[0].starts_with("POST /rd?ep=keeper&lt=600&lwm2m=1.1"),
        "{:?}",
        peer.log
    );
    let _ = std::fs::remove_dir_all(store.dir());
}

#[test]
fn firmware_state_is_kept() {
    let store = StateStore::new(dir("firmware"));
    let mut peer = Peer::default();
    let (_pair, mut device) = bootstrapped(&store, &mut peer);
    device.set(&Path::Resource(3, 0, 3), Value::String("2.0.0".into()));
    device.set(&Path::Resource(5, 0, 7), Value::String("2.0.0".into()));
    device.set(&Path::Resource(5, 0, 5), Value::Integer(1));
    // Saved at the next poll.
    let mut pair = Pair::new(Link::perfect(), 14);
    run(&mut pair, &mut device, &mut peer, 1);
    drop(device);
    let mut device = SimDevice::new(config(Version::V1_2, CLOCK), Side::Server);
    assert!(
        device
            .attach_state(store.clone(), CredentialPaths::default())
            .unwrap()
    );
    let value = |p| device.device().node(&p);
    assert_eq!(
        value(Path::Resource(3, 0, 3)),
        Some(Node::Resource(Resource::Single(Value::String(
            "2.0.0".into()
        ))))
    );
    assert_eq!(
        value(Path::Resource(5, 0, 5)),
        Some(Node::Resource(Resource::Single(Value::Integer(1))))
    );
    if std::env::var_os("SHOW_STATE").is_some() {
        println!("{}", std::fs::read_to_string(store.path("keeper")).unwrap());
    }
    let _ = std::fs::remove_dir_all(store.dir());
}

#[test]
fn corrupt_or_unknown_state_is_a_clear_error() {
    let store = StateStore::new(dir("corrupt"));
    std::fs::create_dir_all(store.dir()).unwrap();
    let path = store.path("keeper");
    let mut device = SimDevice::new(config(Version::V1_1, CLOCK), Side::Server);

    std::fs::write(&path, b"{ not json").unwrap();
    let err = device
        .attach_state(store.clone(), CredentialPaths::default())
        .unwrap_err();
    assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("keeper.json"), "{err}");

    std::fs::write(&path, br#"{"format": 99, "whatever": true}"#).unwrap();
    let err = device
        .attach_state(store.clone(), CredentialPaths::default())
        .unwrap_err();
    assert!(
        matches!(
            err,
            StateError::UnsupportedFormat {
                found: 99,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );

    // Right format, wrong content: a security instance with a string where a boolean goes.
    let mut good = Vec::new();
    {
        let mut peer = Peer::default();
        let other = StateStore::new(dir("corrupt-src"));
        let (_pair, d) = bootstrapped(&other, &mut peer);
        drop(d);
        good.extend(std::fs::read(other.path("keeper")).unwrap());
        let _ = std::fs::remove_dir_all(other.dir());
    }
    let text = String::from_utf8(good).unwrap();
    assert!(text.contains("\"format\": 1"), "{text}");
    let broken = text.replacen("\"vb\": false", "\"vb\": \"maybe\"", 1);
    assert_ne!(broken, text);
    std::fs::write(&path, broken).unwrap();
    let err = device
        .attach_state(store.clone(), CredentialPaths::default())
        .unwrap_err();
    assert!(matches!(err, StateError::Corrupt { .. }), "{err}");

    // The device is untouched by failed loads: it still bootstraps from factory state.
    assert!(device.device().server_account().is_none());
    let _ = std::fs::remove_dir_all(store.dir());
}
