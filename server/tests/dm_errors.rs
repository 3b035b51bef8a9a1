//! Error paths: unknown paths (4.04), an Accept the device cannot serve (4.06), a device that
//! stops answering (Timeout), and requests refused before sending.

mod dm_support;

use std::time::Duration;

use dm_support::World;
use steward::dm::{DmError, DownlinkRequest, Fault, WriteMode};
use steward_coap::message::Code;
use steward_objects::{ContentFormat, Node, Path, Resource, Value, Version};

#[test]
fn unknown_paths_are_4_04() {
    let mut world = World::registered(Version::V1_1);
    for path in [
        Path::Instance(3, 7),
        Path::Object(42),
        Path::Resource(3, 0, 999),
    ] {
        match world.request(DownlinkRequest::Read { path, format: None }) {
            Err(e @ DmError::Device { code, .. }) => {
                assert_eq!(code, Code::NOT_FOUND, "{path}");
                assert_eq!(e.fault(), Fault::Device);
                assert_eq!(e.code(), Code::NOT_FOUND);
            }
            other => panic!("{path}: {other:?}"),
        }
    }
}

#[test]
fn unsupported_accept_is_4_06() {
    let mut world = World::registered(Version::V1_1);
    match world.request(DownlinkRequest::Read {
        path: Path::Resource(3, 0, 0),
        format: Some(ContentFormat::Opaque),
    }) {
        Err(DmError::Device { code, diagnostic }) => {
            assert_eq!(code, Code::NOT_ACCEPTABLE);
            assert!(!diagnostic.is_empty(), "the device says why");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_silent_device_times_out() {
    let mut world = World::registered(Version::V1_1);
    world.pair.link.loss = 1.0;
    let ticket = world
        .submit(
            DownlinkRequest::Read {
                path: Path::Resource(3, 0, 9),
                format: None,
            },
            Duration::from_secs(30),
        )
        .expect("sent");
    let outcome = world.run_until_outcome(ticket, Duration::from_secs(200));
    assert_eq!(outcome, Some(Err(DmError::Timeout)));
    assert_eq!(DmError::Timeout.code(), Code::GATEWAY_TIMEOUT);

    // Without our own deadline the stack's retransmissions run out: still a Timeout.
    let ticket = world
        .submit(
            DownlinkRequest::Read {
                path: Path::Resource(3, 0, 9),
                format: None,
            },
            Duration::from_secs(3600),
        )
        .expect("sent");
    let outcome = world.run_until_outcome(ticket, Duration::from_secs(400));
    assert_eq!(outcome, Some(Err(DmError::Timeout)));
}

#[test]
fn invalid_requests_are_refused_before_sending() {
    let mut world = World::registered(Version::V1_0);
    let sent = world.sent_at.len();
    let refusals = [
        (
            DownlinkRequest::Write {
                path: Path::Object(3),
                node: Node::Object(Default::default()),
                mode: WriteMode::Replace,
                format: None,
            },
            "PathNotAllowed",
        ),
        (
            DownlinkRequest::Write {
                path: Path::Resource(3, 0, 14),
                node: Node::Resource(Resource::Single(Value::String("x".into()))),
                mode: WriteMode::PartialUpdate,
                format: None,
            },
            "PathNotAllowed",
        ),
        (
            DownlinkRequest::Write {
                path: Path::Resource(3, 0, 14),
                node: Node::ResourceInstance(Value::String("x".into())),
                mode: WriteMode::Replace,
                format: None,
            },
            "InvalidRequest",
        ),
        (
            DownlinkRequest::ReadComposite {
                paths: vec![Path::Resource(3, 0, 0)],
                format: None,
            },
            "VersionTooLow",
        ),
        (
            DownlinkRequest::Read {
                path: Path::Resource(3, 0, 9),
                format: Some(ContentFormat::SenmlCbor),
            },
            "FormatNotAccepted",
        ),
        (
            DownlinkRequest::Execute {
                path: Path::Instance(3, 0),
                args: None,
            },
            "PathNotAllowed",
        ),
    ];
    for (request, kind) in refusals {
        let e = world.submit(request.clone(), Duration::from_secs(10));
        let got = format!("{e:?}");
        assert!(got.contains(kind), "{request:?}: {got}");
    }
    assert!(matches!(
        world.dm.send(
            world.pair.now,
            world.server.registrations(),
            "nobody",
            DownlinkRequest::Delete {
                path: Path::Instance(1, 0)
            },
            Duration::from_secs(1)
        ),
        Err(DmError::NotRegistered(_))
    ));
    assert_eq!(world.sent_at.len(), sent, "nothing was sent");
}
