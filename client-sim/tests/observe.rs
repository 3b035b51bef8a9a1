//! Observe on a simulated device, in simulated time: notifications timed by pmin/pmax,
//! thresholds (gt/lt), steps (st), cancel, composite observe, simulated sensors.

mod common;

use std::time::Duration;

use common::{Setup, observe, write_attributes};
use steward_client::{DeviceConfig, DeviceEvent, SensorConfig};
use steward_coap::message::{Code, Method, Request, encode_uint, option};
use steward_objects::{ContentFormat, Path, Value, Version, codec};

const BATTERY: Path = Path::Resource(3, 0, 9);

fn setup() -> Setup {
    Setup::registered(DeviceConfig::new("obs-1", Version::V1_1))
}

fn set_battery(s: &mut Setup, v: i64) {
    assert!(s.device.set(&BATTERY, Value::Integer(v)));
}

#[test]
fn observe_answers_with_observe_and_pmax_notifies_without_changes() {
    let mut s = setup();
    let wa = s.call(
        write_attributes("/3/0/9", "pmax=10"),
        Duration::from_secs(5),
    );
    assert_eq!(wa.map(|r| r.code), Some(Code::CHANGED));
    let id = s.request(observe("/3/0/9"));
    s.run(Duration::from_millis(100));
    let first = s.take_responses(id);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].code, Code::CONTENT);
    assert!(first[0].options.observe().is_some(), "{:?}", first[0]);
    assert_eq!(first[0].payload, b"100");
    assert_eq!(s.device.observation_count(), 1);

    let times = s.notification_times(id, 60);
    // One every 10 s: 6 in a minute, give or take the edge.
    assert!((5..=6).contains(&times.len()), "{times:?}");
    for pair in times.windows(2) {
        assert!((9..=11).contains(&(pair[1] - pair[0])), "{times:?}");
    }
}

#[test]
fn default_pmax_comes_from_the_server_object() {
    let mut s = setup();
    // /1/0/3 is 60 s in the simulated device.
    let id = s.request(observe("/3/0/9"));
    s.run(Duration::from_millis(100));
    assert_eq!(s.take_responses(id).len(), 1);
    let times = s.notification_times(id, 130);
    assert_eq!(times.len(), 2, "{times:?}");
}

#[test]
fn pmin_limits_the_rate_of_rapid_changes() {
    let mut s = setup();
    s.call(
        write_attributes("/3/0/9", "pmin=5&pmax=0"),
        Duration::from_secs(5),
    );
    let id = s.request(observe("/3/0/9"));
    s.run(Duration::from_millis(100));
    assert_eq!(s.take_responses(id).len(), 1);
    let mut times = Vec::new();
    let mut level = 100;
    for second in 1..=30u64 {
        // Changes every half second.
        for _ in 0..2 {
            level -= 1;
            set_battery(&mut s, level);
            s.run(Duration::from_millis(500));
        }
        for _ in s.take_responses(id) {
            times.push(second);
        }
    }
    assert!(
        times.len() >= 5,
        "changes must still be reported: {times:?}"
    );
    assert!(times.len() <= 7, "{times:?}");
    for pair in times.windows(2) {
        assert!(pair[1] - pair[0] >= 4, "{times:?}");
    }
}

#[test]
fn change_without_attributes_notifies_at_once() {
    let mut s = setup();
    let id = s.request(observe("/3/0/9"));
    s.run(Duration::from_millis(100));
    s.take_responses(id);
    set_battery(&mut s, 42);
    s.run(Duration::from_millis(100));
    let n = s.take_responses(id);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].payload, b"42");
    assert!(
        s.events()
            .iter()
            .any(|e| matches!(e, DeviceEvent::Notified { code, .. } if *code == Code::CONTENT))
    );
}

#[test]
fn gt_and_lt_notify_only_when_crossing() {
    let mut s = setup();
    s.call(
        write_attributes("/3/0/9", "gt=50&lt=20&pmax=0"),
        Duration::from_secs(5),
    );
    let id = s.request(observe("/3/0/9"));
    s.run(Duration::from_millis(100));
    s.take_responses(id);
    let mut seen = Vec::new();
    for level in [90, 70, 55, 45, 40, 30, 25, 15, 10, 30, 60] {
        set_battery(&mut s, level);
        s.run(Duration::from_secs(1));
        for r in s.take_responses(id) {
            seen.push(String::from_utf8_lossy(&r.payload).into_owned());
        }
    }
    // 100 → 45 crosses gt, 25 → 15 crosses lt, 10 → 30 crosses lt, 30 → 60 crosses gt.
    assert_eq!(seen, ["45", "15", "30", "60"]);
}

#[test]
fn st_notifies_on_steps_from_the_last_notified_value() {
    let mut s = setup();
    s.call(
        write_attributes("/3/0/9", "st=5&pmax=0"),
        Duration::from_secs(5),
    );
    let id = s.request(observe("/3/0/9"));
    s.run(Duration::from_millis(100));
    s.take_responses(id);
    let mut seen = Vec::new();
    for level in [99, 98, 97, 96, 95, 94, 92, 90, 89] {
        set_battery(&mut s, level);
        s.run(Duration::from_secs(1));
        for r in s.take_responses(id) {
            seen.push(String::from_utf8_lossy(&r.payload).into_owned());
        }
    }
    assert_eq!(seen, ["95", "90"]);
}

#[test]
fn attribute_precedence_resource_over_instance_over_object() {
    let mut s = setup();
    s.call(write_attributes("/3", "pmax=40"), Duration::from_secs(5));
    s.call(write_attributes("/3/0", "pmax=20"), Duration::from_secs(5));
    let id = s.request(observe("/3/0/9"));
    s.run(Duration::from_millis(100));
    s.take_responses(id);
    let times = s.notification_times(id, 60);
    assert_eq!(
        times.len(),
        3,
        "instance pmax=20 wins over object: {times:?}"
    );
    s.call(write_attributes("/3/0/9", "pmax=5"), Duration::from_secs(5));
    let times = s.notification_times(id, 30);
    assert!((5..=7).contains(&times.len()), "resource pmax=5: {times:?}");
}

#[test]
fn cancel_stops_notifications() {
    let mut s = setup();
    s.call(write_attributes("/3/0/9", "pmax=2"), Duration::from_secs(5));
    let id = s.request(observe("/3/0/9"));
    assert!(!s.notification_times(id, 10).is_empty());
    s.pair
        .server
        .cancel(s.pair.now, steward_coap::sim::Side::Client, id);
    // The next notification is answered with RST: the device forgets the observation.
    s.run(Duration::from_secs(5));
    assert_eq!(s.device.observation_count(), 0);
    assert!(s.notification_times(id, 10).is_empty());
}

#[test]
fn get_with_observe_1_is_served_as_a_read() {
    let mut s = setup();
    let id = s.request(observe("/3/0/9"));
    s.run(Duration::from_millis(100));
    assert_eq!(s.device.observation_count(), 1);
    s.pair
        .server
        .cancel(s.pair.now, steward_coap::sim::Side::Client, id);
    // The server stack sends a GET with Observe 1 under a new token, which ends nothing on
    // the device (RFC 7641 §3.6 needs the same token); it must still be answered as a Read.
    let get = Request::new(Method::Get)
        .with_path("/3/0/9")
        .with_option(option::OBSERVE, encode_uint(1));
    let r = s.call(get, Duration::from_secs(5));
    assert_eq!(r.map(|r| r.code), Some(Code::CONTENT));
}

#[test]
fn observe_in_the_requested_format_and_at_instance_level() {
    let mut s = setup();
    let req = observe("/3/0").with_option(
        option::ACCEPT,
        encode_uint(u32::from(ContentFormat::SenmlJson.code())),
    );
    let id = s.request(req);
    s.run(Duration::from_millis(100));
    s.take_responses(id);
    set_battery(&mut s, 77);
    s.run(Duration::from_millis(100));
    let n = s.take_responses(id);
    assert_eq!(n.len(), 1);
    assert_eq!(
        n[0].options.content_format(),
        Some(ContentFormat::SenmlJson.code())
    );
    let node = codec::decode(
        ContentFormat::SenmlJson,
        &Path::Instance(3, 0),
        &n[0].payload,
        s.device.device().models(),
    )
    .expect("a SenML JSON instance");
    assert_eq!(Some(node), s.device.device().node(&Path::Instance(3, 0)));
}

#[test]
fn composite_observe_notifies_on_change_of_any_path() {
    let mut s = setup();
    let paths = codec::encode_paths(
        ContentFormat::SenmlCbor,
        &[Path::Resource(3, 0, 9), Path::Resource(4, 0, 2)],
    )
    .expect("paths encode");
    let fetch = Request::new(Method::Fetch)
        .with_path("/")
        .with_option(option::OBSERVE, encode_uint(0))
        .with_payload(ContentFormat::SenmlCbor.code(), paths);
    let id = s.request(fetch);
    s.run(Duration::from_millis(100));
    assert_eq!(s.take_responses(id).len(), 1);
    assert!(s.device.set(&Path::Resource(4, 0, 2), Value::Integer(-70)));
    s.run(Duration::from_millis(100));
    let n = s.take_responses(id);
    assert_eq!(n.len(), 1);
    let nodes = codec::decode_nodes(
        ContentFormat::SenmlCbor,
        &n[0].payload,
        None,
        s.device.device().models(),
    )
    .expect("SenML CBOR");
    assert_eq!(
        nodes.get(&Path::Resource(4, 0, 2)),
        s.device.device().node(&Path::Resource(4, 0, 2)).as_ref()
    );
    assert!(nodes.contains_key(&Path::Resource(3, 0, 9)));
}

#[test]
fn simulated_battery_drains_and_notifies() {
    let mut config = DeviceConfig::new("obs-sensors", Version::V1_1);
    config.sensors = Some(SensorConfig::new(3));
    let mut s = Setup::registered(config);
    let id = s.request(observe("/3/0/9"));
    s.run(Duration::from_millis(100));
    s.take_responses(id);
    // 10 ticks per percent: ~6 changes in a minute.
    let times = s.notification_times(id, 60);
    assert!((5..=7).contains(&times.len()), "{times:?}");
}
