//! Registration in simulated time against a minimal in-test registration server: register,
//! periodic updates, re-register after a 4.04, deregister; and DM requests from the server
//! answered through the same device loop.

use std::time::Duration;

use steward_client::harness;
use steward_client::registration::{RegistrationEvent, State};
use steward_client::{DeviceConfig, DeviceEvent, SimDevice};
use steward_coap::endpoint::Event;
use steward_coap::message::{Code, Method, Request, Response, option};
use steward_coap::sim::{Link, Pair, Side};
use steward_objects::Version;
use steward_objects::link::ObjectLinks;

/// What the in-test server saw.
#[derive(Default)]
struct Seen {
    registers: Vec<Request>,
    updates: usize,
    deletes: usize,
    /// Answer the next update with 4.04, as a server that lost the registration.
    forget_next_update: bool,
}

impl Seen {
    fn answer(&mut self, request: &Request) -> Response {
        match (request.method, request.path_string().as_str()) {
            (Method::Post, "/rd") => {
                self.registers.push(request.clone());
                Response::new(Code::CREATED)
                    .with_option(option::LOCATION_PATH, b"rd".to_vec())
                    .with_option(option::LOCATION_PATH, b"abc".to_vec())
            }
            (Method::Post, "/rd/abc") if self.forget_next_update => {
                self.forget_next_update = false;
                Response::new(Code::NOT_FOUND)
            }
            (Method::Post, "/rd/abc") => {
                self.updates += 1;
                Response::new(Code::CHANGED)
            }
            (Method::Delete, "/rd/abc") => {
                self.deletes += 1;
                Response::new(Code::DELETED)
            }
            _ => Response::new(Code::NOT_FOUND),
        }
    }
}

fn device(lwm2m: Version, lifetime: u32) -> SimDevice<Side> {
    let mut config = DeviceConfig::new("sim-1", lwm2m);
    config.lifetime = lifetime;
    SimDevice::new(config, Side::Server)
}

fn events(device: &mut SimDevice<Side>) -> Vec<DeviceEvent> {
    std::iter::from_fn(|| device.poll_event()).collect()
}

fn registration_events(device: &mut SimDevice<Side>) -> Vec<RegistrationEvent> {
    events(device)
        .into_iter()
        .filter_map(|e| match e {
            DeviceEvent::Registration(r) => Some(r),
            _ => None,
        })
        .collect()
}

#[test]
fn register_update_reregister_deregister() {
    let mut pair = Pair::new(Link::perfect(), 1);
    let mut seen = Seen::default();
    let mut dev = device(Version::V1_1, 300);
    dev.start();
    harness::run(&mut pair, &mut dev, Duration::from_secs(5), |r| {
        seen.answer(r)
    });

    assert_eq!(dev.registration().location(), Some("/rd/abc"));
    assert_eq!(
        registration_events(&mut dev),
        vec![RegistrationEvent::Registered {
            location: "/rd/abc".into()
        }]
    );
    let register = seen.registers.first().expect("a Register");
    let query = register.options.uri_query().expect("UTF-8 query");
    assert_eq!(query, ["ep=sim-1", "lt=300", "lwm2m=1.1", "b=U"]);
    assert_eq!(register.options.content_format(), Some(40));
    let links = ObjectLinks::parse(&register.payload).expect("object links");
    assert!(links.has_instance(3, 0) && links.has_instance(1, 0));
    assert!(!links.content_formats().is_empty(), "1.1 announces ct=");

    // Lifetime 300 s: the margin is 93 s (a full CoAP retransmission), so updates come every
    // 207 s; in 700 s that is three.
    harness::run(&mut pair, &mut dev, Duration::from_secs(700), |r| {
        seen.answer(r)
    });
    assert_eq!(seen.updates, 3);
    assert_eq!(
        registration_events(&mut dev),
        vec![RegistrationEvent::Updated; 3]
    );

    // The server lost us: the next Update gets 4.04 and the device registers again.
    seen.forget_next_update = true;
    harness::run(&mut pair, &mut dev, Duration::from_secs(210), |r| {
        seen.answer(r)
    });
    assert_eq!(seen.registers.len(), 2);
    assert_eq!(
        registration_events(&mut dev),
        vec![
            RegistrationEvent::UpdateFailed {
                code: Some(Code::NOT_FOUND)
            },
            RegistrationEvent::Registered {
                location: "/rd/abc".into()
            },
        ]
    );

    dev.deregister();
    harness::run(&mut pair, &mut dev, Duration::from_secs(5), |r| {
        seen.answer(r)
    });
    assert_eq!(seen.deletes, 1);
    assert_eq!(dev.registration().state(), &State::Idle);
    assert_eq!(
        registration_events(&mut dev),
        vec![RegistrationEvent::Deregistered]
    );
}

#[test]
fn register_backs_off_while_the_server_refuses() {
    let mut pair = Pair::new(Link::perfect(), 2);
    let mut dev = device(Version::V1_0, 60);
    let mut attempts = 0;
    dev.start();
    harness::run(&mut pair, &mut dev, Duration::from_secs(20), |_| {
        attempts += 1;
        Response::new(Code::SERVICE_UNAVAILABLE)
    });
    // Retries after 2, 4 and 8 s: attempts at 0, 2, 6, 14 s.
    assert_eq!(attempts, 4);
    let delays: Vec<Duration> = registration_events(&mut dev)
        .into_iter()
        .filter_map(|e| match e {
            RegistrationEvent::RegisterFailed { retry_in, .. } => Some(retry_in),
            _ => None,
        })
        .collect();
    assert_eq!(delays[..3], [2, 4, 8].map(Duration::from_secs));
}

#[test]
fn server_requests_are_answered_and_trigger_updates() {
    let mut pair = Pair::new(Link::perfect(), 3);
    let mut seen = Seen::default();
    let mut dev = device(Version::V1_2, 3600);
    dev.start();
    harness::run(&mut pair, &mut dev, Duration::from_secs(2), |r| {
        seen.answer(r)
    });
    assert!(dev.registration().is_registered());

    // The server reads the battery level, then executes the Registration Update Trigger.
    let read = pair.server_request(Request::new(Method::Get).with_path("/3/0/9"), true);
    let trigger = pair.server_request(Request::new(Method::Post).with_path("/1/0/8"), true);
    harness::run(&mut pair, &mut dev, Duration::from_secs(5), |r| {
        seen.answer(r)
    });
    let outcome = |pair: &mut Pair, id| {
        let at = pair
            .server_events
            .iter()
            .position(|e| matches!(e, Event::Response { id: r, .. } if *r == id))?;
        match pair.server_events.remove(at) {
            Event::Response { response, .. } => Some(response),
            _ => None,
        }
    };
    let read = outcome(&mut pair, read).expect("read answered");
    assert_eq!(
        (read.code, read.payload.as_slice()),
        (Code::CONTENT, &b"100"[..])
    );
    assert_eq!(
        outcome(&mut pair, trigger).map(|r| r.code),
        Some(Code::CHANGED)
    );
    assert_eq!(seen.updates, 1, "the trigger sent an Update");

    // Writing the lifetime makes the next Update carry lt=.
    let write = Request::new(Method::Put)
        .with_path("/1/0/1")
        .with_payload(0, b"120".to_vec());
    pair.server_request(write, true);
    harness::run(&mut pair, &mut dev, Duration::from_secs(5), |r| {
        seen.answer(r)
    });
    assert_eq!(seen.updates, 2);
    assert_eq!(dev.registration().config().lifetime, 120);
}

#[test]
fn reboot_registers_again() {
    let mut pair = Pair::new(Link::perfect(), 4);
    let mut seen = Seen::default();
    let mut dev = device(Version::V1_1, 3600);
    dev.start();
    harness::run(&mut pair, &mut dev, Duration::from_secs(2), |r| {
        seen.answer(r)
    });
    pair.server_request(Request::new(Method::Post).with_path("/3/0/4"), true);
    harness::run(&mut pair, &mut dev, Duration::from_secs(5), |r| {
        seen.answer(r)
    });
    assert_eq!(seen.registers.len(), 2);
    assert!(events(&mut dev).contains(&DeviceEvent::Rebooting));
    assert!(dev.registration().is_registered());
}

#[test]
fn queue_mode_parameters_per_version() {
    for (lwm2m, expected) in [
        (Version::V1_0, vec!["ep=q", "lt=300", "lwm2m=1.0", "b=UQ"]),
        (
            Version::V1_1,
            vec!["ep=q", "lt=300", "lwm2m=1.1", "b=U", "Q"],
        ),
    ] {
        let mut pair = Pair::new(Link::perfect(), 5);
        let mut seen = Seen::default();
        let mut config = DeviceConfig::new("q", lwm2m);
        config.queue_mode = true;
        let mut dev = SimDevice::new(config, Side::Server);
        dev.start();
        harness::run(&mut pair, &mut dev, Duration::from_secs(2), |r| {
            seen.answer(r)
        });
        let query = seen.registers[0].options.uri_query().expect("UTF-8");
        assert_eq!(query, expected);
    }
}

/// A server that speaks only LwM2M 1.0: it refuses `lwm2m=1.2` and `lwm2m=1.1` with 4.12.
fn only_1_0(seen: &mut Seen, request: &Request) -> Response {
    let query = request.options.uri_query().unwrap_or_default();
    if request.path_string() == "/rd"
        && query.iter().any(|q| *q == "lwm2m=1.2" || *q == "lwm2m=1.1")
    {
        seen.registers.push(request.clone());
        return Response::new(Code::PRECONDITION_FAILED);
    }
    seen.answer(request)
}

#[test]
fn version_falls_back_on_precondition_failed() {
    let mut pair = Pair::new(Link::perfect(), 6);
    let mut seen = Seen::default();
    let mut config = DeviceConfig::new("fb", Version::V1_2);
    config.queue_mode = true;
    let mut dev = SimDevice::new(config, Side::Server);
    dev.start();
    harness::run(&mut pair, &mut dev, Duration::from_secs(2), |r| {
        only_1_0(&mut seen, r)
    });
    assert_eq!(dev.registration().location(), Some("/rd/abc"));
    let queries: Vec<Vec<&str>> = seen
        .registers
        .iter()
        .map(|r| r.options.uri_query().expect("UTF-8"))
        .collect();
    assert_eq!(
        queries,
        [
            vec!["ep=fb", "lt=300", "lwm2m=1.2", "b=U", "Q"],
            vec!["ep=fb", "lt=300", "lwm2m=1.1", "b=U", "Q"],
            // 1.0: queue mode goes into the binding, no `Q`.
            vec!["ep=fb", "lt=300", "lwm2m=1.0", "b=UQ"],
        ]
    );
    // Each Register describes the device of its version: 1.0 announces no `ct=` and no
    // object versions.
    let links: Vec<ObjectLinks> = seen
        .registers
        .iter()
        .map(|r| ObjectLinks::parse(&r.payload).expect("links"))
        .collect();
    assert!(!links[0].content_formats().is_empty());
    assert!(links[2].content_formats().is_empty());
    assert!(
        links[2]
            .announced_versions()
            .iter()
            .all(|(_, v)| v.is_none())
    );
    assert_eq!(dev.device().lwm2m(), Version::V1_0);
    assert_eq!(
        registration_events(&mut dev),
        vec![
            RegistrationEvent::VersionFallback {
                from: Version::V1_2,
                to: Version::V1_1
            },
            RegistrationEvent::VersionFallback {
                from: Version::V1_1,
                to: Version::V1_0
            },
            RegistrationEvent::Registered {
                location: "/rd/abc".into()
            },
        ]
    );
    // The device now answers as a 1.0 device: TLV, no SenML CBOR (112).
    let id = pair.server_request(
        Request::new(Method::Get)
            .with_path("/3/0")
            .with_option(option::ACCEPT, steward_coap::message::encode_uint(112)),
        true,
    );
    harness::run(&mut pair, &mut dev, Duration::from_secs(2), |r| {
        only_1_0(&mut seen, r)
    });
    let answered = pair.server_events.iter().find_map(|e| match e {
        Event::Response {
            id: i, response, ..
        } if *i == id => Some(response.code),
        _ => None,
    });
    assert_eq!(answered, Some(Code::NOT_ACCEPTABLE));
}

#[test]
fn version_refused_everywhere_is_a_failure() {
    let mut pair = Pair::new(Link::perfect(), 7);
    let mut dev = device(Version::V1_1, 300);
    let mut attempts = Vec::new();
    dev.start();
    harness::run(&mut pair, &mut dev, Duration::from_secs(3), |r| {
        attempts.push(r.options.uri_query().unwrap_or_default().join("&"));
        Response::new(Code::PRECONDITION_FAILED)
    });
    // 1.1, then 1.0 at once; then the failure backs off (2 s) and 1.0 is tried again.
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert!(attempts[0].contains("lwm2m=1.1") && attempts[1].contains("lwm2m=1.0"));
    assert!(attempts[2].contains("lwm2m=1.0"));
    let events = registration_events(&mut dev);
    assert_eq!(
        events[..2],
        [
            RegistrationEvent::VersionFallback {
                from: Version::V1_1,
                to: Version::V1_0
            },
            RegistrationEvent::RegisterFailed {
                code: Some(Code::PRECONDITION_FAILED),
                retry_in: Duration::from_secs(2)
            },
        ]
    );
}
