//! Queue mode (Transport §6.5): requests for a sleeping device wait, go out one at a time
//! after it shows up, and expire with a clear result when it does not.

mod dm_support;

use std::time::Duration;

use dm_support::{ENDPOINT, World};
use steward::dm::{DmError, DmEvent, DownlinkRequest, MAX_TRANSMIT_WAIT};
use steward_client::device::DeviceConfig;
use steward_coap::sim::Link;
use steward_objects::{Path, Version};

fn queue_device() -> World {
    let mut config = DeviceConfig::new(ENDPOINT, Version::V1_1);
    config.queue_mode = true;
    config.lifetime = 600;
    World::with(config, Link::perfect(), 11)
}

fn read(path: Path) -> DownlinkRequest {
    DownlinkRequest::Read { path, format: None }
}

#[test]
fn queued_requests_go_one_at_a_time_after_an_uplink() {
    let mut world = queue_device();
    world.run(MAX_TRANSMIT_WAIT + Duration::from_secs(5));
    assert!(
        world
            .events
            .iter()
            .any(|(_, e)| matches!(e, DmEvent::Sleeping { endpoint } if endpoint == ENDPOINT)),
        "the server saw the device go to sleep"
    );
    let tickets: Vec<_> = [9, 10, 0]
        .into_iter()
        .map(|r| {
            world
                .submit(read(Path::Resource(3, 0, r)), Duration::from_secs(3600))
                .expect("queued")
        })
        .collect();
    assert_eq!(world.dm.queued(ENDPOINT), 3);
    let sent_before = world.sent_at.len();
    world.run(Duration::from_secs(1));
    assert_eq!(
        world.sent_at.len(),
        sent_before,
        "nothing goes to a sleeping device"
    );

    // The device wakes on its own schedule (or its lifetime's Update) and tells the server
    // with an Update: that uplink releases the queue.
    let last = *tickets.last().expect("three");
    let outcome = world.run_until_outcome(last, Duration::from_secs(1800));
    assert!(matches!(outcome, Some(Ok(_))), "{outcome:?}");
    assert!(
        world
            .events
            .iter()
            .any(|(_, e)| matches!(e, DmEvent::Awake { .. }))
    );
    // Each queued request was handed out for persistence and let go once answered.
    assert_eq!(world.persisted, tickets);
    assert_eq!(world.unpersisted, tickets);
    for pair in tickets.windows(2) {
        let done = world.completed_at(pair[0]).expect("completed");
        let next_sent = world
            .sent_at
            .iter()
            .find(|(_, t)| *t == pair[1])
            .map(|(at, _)| *at)
            .expect("sent");
        assert!(
            next_sent >= done,
            "{} went out before {} was answered",
            pair[1],
            pair[0]
        );
        assert!(
            matches!(world.outcome(pair[0]), Some(Ok(_))),
            "{:?}",
            world.outcome(pair[0])
        );
    }
}

#[test]
fn a_queued_request_expires_with_a_clear_result() {
    let mut world = queue_device();
    world.run(MAX_TRANSMIT_WAIT + Duration::from_secs(5));
    let ticket = world
        .submit(read(Path::Resource(3, 0, 9)), Duration::from_secs(2))
        .expect("queued");
    world.run(Duration::from_secs(5));
    match world.outcome(ticket) {
        Some(Err(e @ DmError::Expired { .. })) => {
            assert!(e.to_string().contains("expired"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(world.dm.queued(ENDPOINT), 0);
    assert_eq!(world.persisted, vec![ticket]);
    assert_eq!(world.unpersisted, vec![ticket]);
}
