//! Observe: the request goes through the real device; notifications are decoded into
//! `Notification`s by the service. The notification part is driven by hand-written CoAP
//! answers (Observe sequence numbers, an error ending the observation) so it does not depend on
//! the simulated device's notification support.

mod dm_support;

use std::time::Duration;

use dm_support::{ENDPOINT, World};
use steward::dm::{Command, DmError, DmEvent, DownlinkRequest, DownlinkResponse};
use steward_coap::message::{Code, Response, encode_uint, option};
use steward_objects::{ContentFormat, Node, NodeMap, Path, Resource, Value, Version};

#[test]
fn observe_through_the_device_answers_with_the_value() {
    let mut world = World::registered(Version::V1_1);
    match world.request(DownlinkRequest::Observe {
        path: Path::Resource(3, 0, 9),
        format: None,
    }) {
        Ok(DownlinkResponse::Observe { node, .. }) => assert_eq!(
            node,
            Some(Node::Resource(Resource::Single(Value::Integer(100))))
        ),
        other => panic!("{other:?}"),
    }
}

fn notification(seq: u32, value: &str) -> Response {
    Response::new(Code::CONTENT)
        .with_option(option::OBSERVE, encode_uint(seq))
        .with_payload(ContentFormat::Text.code(), value.as_bytes().to_vec())
}

#[test]
fn notifications_become_typed_events_and_an_error_ends_them() {
    let mut world = World::registered(Version::V1_1);
    let now = world.now();
    let path = Path::Resource(3, 0, 9);
    let ticket = world
        .dm
        .send(
            now,
            world.server.registrations(),
            ENDPOINT,
            DownlinkRequest::Observe { path, format: None },
            Duration::from_secs(60),
        )
        .expect("built");
    // Play the device by hand: take the command instead of sending it.
    let Some(Command::Send { request, .. }) = world.dm.poll_command() else {
        panic!("a send command");
    };
    assert_eq!(request.options.observe(), Some(0));
    assert_eq!(request.options.accept(), Some(ContentFormat::Text.code()));

    world.dm.on_response(now, ticket, &notification(3, "55"));
    world.dm.on_response(now, ticket, &notification(4, "56"));
    world
        .dm
        .on_response(now, ticket, &Response::new(Code::NOT_FOUND));
    world.dm.on_response(now, ticket, &notification(5, "57"));
    let events: Vec<DmEvent> = std::iter::from_fn(|| world.dm.poll_event()).collect();
    let single = |v: i64| Node::Resource(Resource::Single(Value::Integer(v)));
    assert_eq!(
        events,
        [
            DmEvent::Completed {
                ticket,
                endpoint: ENDPOINT.into(),
                result: Ok(DownlinkResponse::Observe {
                    node: Some(single(55)),
                    observe: Some(3)
                })
            },
            DmEvent::Notification(steward::dm::Notification {
                ticket,
                endpoint: ENDPOINT.into(),
                paths: vec![path],
                nodes: NodeMap::from([(path, single(56))]),
                observe: Some(4),
            }),
            DmEvent::ObservationEnded {
                ticket,
                endpoint: ENDPOINT.into(),
                reason: DmError::Device {
                    code: Code::NOT_FOUND,
                    diagnostic: String::new()
                }
            },
        ],
        "the notification after the error is ignored"
    );
    assert!(world.dm.observations().is_empty());
}

#[test]
fn a_malformed_notification_is_a_typed_error() {
    let mut world = World::registered(Version::V1_1);
    let now = world.now();
    let ticket = world
        .dm
        .send(
            now,
            world.server.registrations(),
            ENDPOINT,
            DownlinkRequest::Observe {
                path: Path::Resource(3, 0, 9),
                format: None,
            },
            Duration::from_secs(60),
        )
        .expect("built");
    world.dm.on_response(now, ticket, &notification(1, "1"));
    assert_eq!(world.dm.observations().len(), 1);
    world
        .dm
        .on_response(now, ticket, &notification(2, "not a number"));
    let ended = std::iter::from_fn(|| world.dm.poll_event()).any(|e| {
        matches!(
            e,
            DmEvent::ObservationEnded {
                reason: DmError::Decode { .. },
                ..
            }
        )
    });
    assert!(ended);
}
