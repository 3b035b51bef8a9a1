//! Send (`POST /dp`, 1.1+): a handcrafted SenML payload with timestamps, from the device's
//! side of the link, becomes a `SendReport`; malformed payloads and unregistered senders are
//! refused with 4.00 and 4.04.

mod dm_support;

use std::time::Duration;

use dm_support::World;
use steward::dm::{SendError, parse_send};
use steward_coap::message::{Code, Method, Request};
use steward_objects::{ContentFormat, ModelRegistry, Node, Resource, Timestamp, Value, Version};

fn post_dp(world: &mut World, format: ContentFormat, payload: &[u8]) -> Code {
    let request = Request::new(Method::Post)
        .with_path("/dp")
        .with_payload(format.code(), payload.to_vec());
    let id = world.device_side_request(request);
    let end = world.now() + Duration::from_secs(30);
    while world.now() < end {
        world.run(Duration::from_millis(200));
        if let Some((_, outcome)) = world.device_side_outcomes.iter().find(|(r, _)| *r == id) {
            return outcome.as_ref().expect("answered").code;
        }
    }
    panic!("no answer to the Send");
}

#[test]
fn send_with_timestamps_is_reported() {
    let mut world = World::registered(Version::V1_1);
    let senml = br#"[{"bn":"/3/0/","bt":1700000000,"n":"9","v":80},{"n":"9","v":75,"t":60},{"bn":"/3/0/","n":"7/0","v":3700,"t":60}]"#;
    assert_eq!(
        post_dp(&mut world, ContentFormat::SenmlJson, senml),
        Code::CHANGED
    );
    let report = world.sends.last().expect("a report");
    assert_eq!(report.endpoint, dm_support::ENDPOINT);
    assert_eq!(report.entries.len(), 2, "{report:?}");
    assert_eq!(report.entries[0].time, Some(Timestamp(1_700_000_000.0)));
    assert_eq!(report.entries[1].time, Some(Timestamp(1_700_000_060.0)));
    let battery = |i: usize| {
        report.entries[i]
            .nodes
            .get(&"/3/0/9".parse().expect("path"))
    };
    assert_eq!(
        battery(0),
        Some(&Node::Resource(Resource::Single(Value::Integer(80))))
    );
    assert_eq!(
        battery(1),
        Some(&Node::Resource(Resource::Single(Value::Integer(75))))
    );

    assert_eq!(
        post_dp(&mut world, ContentFormat::SenmlJson, b"[{\"n\":"),
        Code::BAD_REQUEST
    );
    assert_eq!(
        post_dp(&mut world, ContentFormat::Text, b"80"),
        Code::UNSUPPORTED_CONTENT_FORMAT
    );
}

#[test]
fn send_from_an_unregistered_client_is_4_04() {
    let request = Request::new(Method::Post).with_path("/dp").with_payload(
        ContentFormat::SenmlJson.code(),
        br#"[{"n":"/3/0/9","v":1}]"#.to_vec(),
    );
    let refused = parse_send(None, &request, &ModelRegistry::core());
    assert_eq!(refused, Err(SendError::NotRegistered));
    assert_eq!(SendError::NotRegistered.code(), Code::NOT_FOUND);
}
