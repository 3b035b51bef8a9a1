//! Firmware Update (/5/0) on a simulated device, in simulated time: push block-wise, pull by
//! CoAP URI, Update, Cancel, and each failure's Update Result.

mod common;

use std::time::Duration;

use common::{Setup, observe};
use steward_client::firmware::{self, State};
use steward_client::{DeviceConfig, DeviceEvent};
use steward_coap::message::{Code, Method, Request, Response};
use steward_objects::{Node, Path, Resource, Value, Version};

const WAIT: Duration = Duration::from_secs(10);

fn setup(lwm2m: Version) -> Setup {
    Setup::registered(DeviceConfig::new("fw-1", lwm2m))
}

/// A 20 KiB body with a recognisable pattern.
fn body() -> Vec<u8> {
    (0..20 * 1024u32).map(|i| (i % 251) as u8).collect()
}

fn put_package(s: &mut Setup, bytes: Vec<u8>) -> Option<Response> {
    let put = Request::new(Method::Put)
        .with_path("/5/0/0")
        .with_payload(42, bytes);
    s.call(put, WAIT)
}

fn write_uri(s: &mut Setup, uri: &str) -> Option<Response> {
    let put = Request::new(Method::Put)
        .with_path("/5/0/1")
        .with_payload(0, uri.as_bytes().to_vec());
    s.call(put, WAIT)
}

fn execute(s: &mut Setup, path: &str) -> Option<Code> {
    s.call(Request::new(Method::Post).with_path(path), WAIT)
        .map(|r| r.code)
}

fn read_text(s: &mut Setup, path: &str) -> String {
    let get = Request::new(Method::Get)
        .with_path(path)
        .with_option(steward_coap::message::option::ACCEPT, vec![]);
    let r = s.call(get, WAIT);
    r.map(|r| String::from_utf8_lossy(&r.payload).into_owned())
        .unwrap_or_default()
}

fn state(s: &Setup) -> State {
    firmware::state(s.device.device())
}

fn result(s: &Setup) -> i64 {
    firmware::update_result(s.device.device())
}

fn string(s: &Setup, path: Path) -> Option<String> {
    match s.device.device().node(&path) {
        Some(Node::Resource(Resource::Single(Value::String(v)))) => Some(v),
        _ => None,
    }
}

const FIRMWARE_VERSION: Path = Path::Resource(3, 0, 3);

/// Executes Update and waits for the new firmware: Idle, result 1, /3/0/3 changed, an Update.
fn update_and_check(s: &mut Setup) {
    let updates = s.server.updates;
    assert_eq!(execute(s, "/5/0/2"), Some(Code::CHANGED));
    assert_eq!(state(s), State::Updating);
    s.run(Duration::from_secs(5));
    assert_eq!(state(s), State::Idle);
    assert_eq!(result(s), 1);
    assert_eq!(string(s, FIRMWARE_VERSION).as_deref(), Some("2.0.0"));
    assert_eq!(string(s, Path::Resource(5, 0, 7)).as_deref(), Some("2.0.0"));
    assert!(string(s, Path::Resource(5, 0, 6)).is_some_and(|n| !n.is_empty()));
    assert!(s.server.updates > updates, "the device sends an Update");
    assert!(
        s.events()
            .iter()
            .any(|e| matches!(e, DeviceEvent::FirmwareUpdated { version } if version == "2.0.0"))
    );
}

#[test]
fn push_block_wise_then_update() {
    let mut s = setup(Version::V1_2);
    assert_eq!(string(&s, FIRMWARE_VERSION).as_deref(), Some("1.0.0"));
    // State and Update Result are observable: every change is notified.
    let obs = s.request(observe("/5/0/3"));
    s.run(Duration::from_millis(100));
    assert_eq!(s.take_responses(obs).len(), 1);

    let pkg = firmware::package("2.0.0", &body());
    assert!(pkg.len() > 20 * 1024);
    let r = put_package(&mut s, pkg);
    assert_eq!(r.map(|r| r.code), Some(Code::CHANGED));
    // Being checked: still Downloading.
    assert_eq!(state(&s), State::Downloading);
    s.run(Duration::from_secs(1));
    assert_eq!(state(&s), State::Downloaded);
    assert_eq!(result(&s), 0);
    assert_eq!(read_text(&mut s, "/5/0/3"), "2");
    update_and_check(&mut s);
    let states: Vec<Vec<u8>> = s
        .take_responses(obs)
        .into_iter()
        .map(|r| r.payload)
        .collect();
    for expected in [b"1", b"2", b"3", b"0"] {
        assert!(
            states.iter().any(|p| p == expected),
            "state {expected:?} notified: {states:?}"
        );
    }
}

#[test]
fn pull_by_coap_uri_then_update() {
    let mut s = setup(Version::V1_1);
    s.server
        .files
        .insert("/fw/pkg".into(), firmware::package("2.0.0", &body()));
    let r = write_uri(&mut s, "coap://127.0.0.1:5683/fw/pkg");
    assert_eq!(r.map(|r| r.code), Some(Code::CHANGED));
    s.run(Duration::from_secs(3));
    assert_eq!(state(&s), State::Downloaded, "result {}", result(&s));
    assert_eq!(read_text(&mut s, "/5/0/1"), "coap://127.0.0.1:5683/fw/pkg");
    update_and_check(&mut s);
}

#[test]
fn corrupted_hash_is_integrity_failure() {
    let mut s = setup(Version::V1_2);
    let mut pkg = firmware::package("2.0.0", &body());
    if let Some(b) = pkg.last_mut() {
        *b ^= 0xff;
    }
    assert_eq!(
        put_package(&mut s, pkg).map(|r| r.code),
        Some(Code::CHANGED)
    );
    s.run(Duration::from_secs(1));
    assert_eq!((state(&s), result(&s)), (State::Idle, 5));
    assert_eq!(string(&s, FIRMWARE_VERSION).as_deref(), Some("1.0.0"));
}

#[test]
fn bad_magic_is_unsupported_package() {
    let mut s = setup(Version::V1_2);
    let r = put_package(&mut s, b"\x7fELF not our firmware".to_vec());
    assert_eq!(r.map(|r| r.code), Some(Code::CHANGED));
    s.run(Duration::from_secs(1));
    assert_eq!((state(&s), result(&s)), (State::Idle, 6));
}

#[test]
fn pulled_package_is_checked_too() {
    let mut s = setup(Version::V1_2);
    s.server.files.insert("/fw/junk".into(), b"junk".to_vec());
    write_uri(&mut s, "coap://127.0.0.1:5683/fw/junk");
    s.run(Duration::from_secs(3));
    assert_eq!((state(&s), result(&s)), (State::Idle, 6));
}

#[test]
fn bad_uris_are_invalid_uri_or_unsupported_protocol() {
    let mut s = setup(Version::V1_2);
    for (uri, expected) in [
        ("not a uri", 7),
        ("ftp://127.0.0.1/fw", 7),
        ("coap://127.0.0.1:70000/fw", 7),
        ("coaps://127.0.0.1:5684/fw", 9),
        ("http://127.0.0.1/fw", 9),
        // Parses, but no route to that host from the simulated device.
        ("coap://198.51.100.7/fw", 7),
    ] {
        let r = write_uri(&mut s, uri);
        assert_eq!(r.map(|r| r.code), Some(Code::CHANGED), "{uri}");
        s.run(Duration::from_secs(1));
        assert_eq!((state(&s), result(&s)), (State::Idle, expected), "{uri}");
    }
    // An empty URI resets: Idle, result 0.
    assert_eq!(write_uri(&mut s, "").map(|r| r.code), Some(Code::CHANGED));
    assert_eq!((state(&s), result(&s)), (State::Idle, 0));
}

#[test]
fn not_found_uri_is_invalid_uri() {
    let mut s = setup(Version::V1_2);
    write_uri(&mut s, "coap://127.0.0.1:5683/fw/missing");
    s.run(Duration::from_secs(3));
    assert_eq!((state(&s), result(&s)), (State::Idle, 7));
}

#[test]
fn unanswered_download_is_connection_lost() {
    let mut s = setup(Version::V1_2);
    s.server
        .files
        .insert("/fw/pkg".into(), firmware::package("2.0.0", &body()));
    let put = Request::new(Method::Put)
        .with_path("/5/0/1")
        .with_payload(0, b"coap://127.0.0.1:5683/fw/pkg".to_vec());
    s.request(put);
    // Deliver the Write, then cut the link before the device answers and starts its GET:
    // nobody ever answers the download.
    while s.pair.client_events.is_empty() {
        assert!(s.pair.step());
    }
    s.pair.link.loss = 1.0;
    s.run(Duration::from_secs(150));
    assert_eq!((state(&s), result(&s)), (State::Idle, 4));
}

#[test]
fn update_outside_downloaded_is_refused() {
    let mut s = setup(Version::V1_2);
    assert_eq!(execute(&mut s, "/5/0/2"), Some(Code::METHOD_NOT_ALLOWED));
    assert_eq!((state(&s), result(&s)), (State::Idle, 0));
    // Cancel needs something to cancel as well.
    assert_eq!(execute(&mut s, "/5/0/10"), Some(Code::METHOD_NOT_ALLOWED));
}

#[test]
fn cancel_in_downloaded_and_reset_by_empty_write() {
    let mut s = setup(Version::V1_2);
    put_package(&mut s, firmware::package("2.0.0", &body()));
    s.run(Duration::from_secs(1));
    assert_eq!(state(&s), State::Downloaded);
    // A second package without a reset first is refused.
    let again = put_package(&mut s, firmware::package("3.0.0", b"x"));
    assert_eq!(again.map(|r| r.code), Some(Code::BAD_REQUEST));
    assert_eq!(execute(&mut s, "/5/0/10"), Some(Code::CHANGED));
    assert_eq!((state(&s), result(&s)), (State::Idle, 10));
    assert_eq!(execute(&mut s, "/5/0/2"), Some(Code::METHOD_NOT_ALLOWED));

    // Downloading, then a single NUL written to Package: back to Idle, result 0.
    put_package(&mut s, firmware::package("2.0.0", &body()));
    assert_eq!(state(&s), State::Downloading);
    assert_eq!(
        put_package(&mut s, vec![0]).map(|r| r.code),
        Some(Code::CHANGED)
    );
    s.run(Duration::from_secs(1));
    assert_eq!((state(&s), result(&s)), (State::Idle, 0));
}

#[test]
fn cancel_during_pull_download() {
    let mut s = setup(Version::V1_2);
    s.server
        .files
        .insert("/fw/pkg".into(), firmware::package("2.0.0", &body()));
    let put = Request::new(Method::Put)
        .with_path("/5/0/1")
        .with_payload(0, b"coap://127.0.0.1:5683/fw/pkg".to_vec());
    s.request(put);
    while s.pair.client_events.is_empty() {
        assert!(s.pair.step());
    }
    s.pair.link.loss = 1.0;
    s.run(Duration::from_secs(5));
    assert_eq!(state(&s), State::Downloading);
    s.pair.link.loss = 0.0;
    assert_eq!(execute(&mut s, "/5/0/10"), Some(Code::CHANGED));
    assert_eq!((state(&s), result(&s)), (State::Idle, 10));
    // The abandoned download does not come back to life.
    s.run(Duration::from_secs(120));
    assert_eq!((state(&s), result(&s)), (State::Idle, 10));
}

#[test]
fn last_state_change_time_moves_with_the_state() {
    let mut config = DeviceConfig::new("fw-t", Version::V1_2);
    config.clock = 1_700_000_000;
    let mut s = Setup::registered(config);
    s.run(Duration::from_secs(30));
    put_package(&mut s, firmware::package("2.0.0", b"small"));
    s.run(Duration::from_secs(1));
    match s.device.device().node(&Path::Resource(5, 0, 12)) {
        Some(Node::Resource(Resource::Single(Value::Time(t)))) => {
            assert!((1_700_000_030..1_700_000_040).contains(&t), "{t}");
        }
        other => panic!("no /5/0/12: {other:?}"),
    }
}

#[test]
fn push_only_refuses_pull() {
    let mut config = DeviceConfig::new("fw-p", Version::V1_2);
    config.firmware.delivery = firmware::Delivery::Push;
    let mut s = Setup::registered(config);
    let r = write_uri(&mut s, "coap://127.0.0.1:5683/fw/pkg");
    assert_eq!(r.map(|r| r.code), Some(Code::METHOD_NOT_ALLOWED));
    assert_eq!(read_text(&mut s, "/5/0/9"), "1");
}

#[test]
fn lwm2m_1_0_device_has_the_1_0_object() {
    let mut s = setup(Version::V1_0);
    put_package(&mut s, firmware::package("2.0.0", &body()));
    s.run(Duration::from_secs(1));
    assert_eq!(state(&s), State::Downloaded);
    // Cancel came with object 5 version 1.1.
    assert_eq!(execute(&mut s, "/5/0/10"), Some(Code::NOT_FOUND));
    update_and_check(&mut s);
}

#[test]
fn firmware_instance_reads_in_every_announced_format() {
    for lwm2m in [Version::V1_0, Version::V1_1, Version::V1_2] {
        let mut s = setup(lwm2m);
        let formats = s.device.device().formats();
        for format in formats {
            if matches!(
                format,
                steward_objects::ContentFormat::Text
                    | steward_objects::ContentFormat::Opaque
                    | steward_objects::ContentFormat::Cbor
            ) {
                continue; // single-value formats cannot carry an instance
            }
            let get = Request::new(Method::Get).with_path("/5/0").with_option(
                steward_coap::message::option::ACCEPT,
                steward_coap::message::encode_uint(u32::from(format.code())),
            );
            let r = s.call(get, WAIT).map(|r| r.code);
            assert_eq!(r, Some(Code::CONTENT), "{lwm2m:?} {format:?}");
        }
    }
}
