//! Send (`POST /dp` with timestamps) and queue mode (sleep, drop, wake with an Update).

mod common;

use std::time::Duration;

use common::{Setup, observe};
use steward_client::{DeviceConfig, DeviceEvent, QueueTiming, SendError, SensorConfig};
use steward_coap::message::{Code, Method, Request};
use steward_objects::{ContentFormat, Node, Path, Resource, Value, Version, codec};

const BATTERY: Path = Path::Resource(3, 0, 9);
const SIGNAL: Path = Path::Resource(4, 0, 2);

fn sensor_device(format: ContentFormat, lwm2m: Version) -> Setup {
    let mut config = DeviceConfig::new("send-1", lwm2m);
    config.sensors = Some(SensorConfig::new(11));
    config.send_format = format;
    Setup::registered(config)
}

#[test]
fn send_series_decodes_to_the_samples_with_increasing_times() {
    for (format, lwm2m) in [
        (ContentFormat::SenmlCbor, Version::V1_1),
        (ContentFormat::SenmlJson, Version::V1_2),
    ] {
        let mut s = sensor_device(format, lwm2m);
        s.run(Duration::from_secs(30));
        let samples: Vec<_> = s
            .device
            .sensors()
            .expect("sensors")
            .history()
            .rev()
            .take(5)
            .cloned()
            .collect();
        let now = s.pair.now;
        s.device
            .send_series(now, &mut s.pair.client, &[BATTERY, SIGNAL], 5)
            .expect("send");
        s.run(Duration::from_secs(1));
        assert!(s.events().contains(&DeviceEvent::Sent {
            code: Code::CHANGED
        }));
        let sent = s.server.sends.pop().expect("a Send");
        assert_eq!(sent.method, Method::Post);
        assert_eq!(sent.options.content_format(), Some(format.code()));
        let entries = codec::decode_timestamped(format, &sent.payload, s.device.device().models())
            .expect("decodes");
        assert_eq!(entries.len(), 5, "{format:?}");
        let times: Vec<f64> = entries.iter().filter_map(|e| e.time.map(|t| t.0)).collect();
        assert_eq!(times.len(), 5);
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
        for (entry, sample) in entries.iter().zip(samples.iter().rev()) {
            for (path, value) in &sample.values {
                if *path == BATTERY || *path == SIGNAL {
                    assert_eq!(
                        entry.nodes.get(path),
                        Some(&Node::Resource(Resource::Single(value.clone()))),
                        "{format:?} {path}"
                    );
                }
            }
        }
    }
}

#[test]
fn send_in_lwm2m_cbor_carries_the_newest_values_without_time() {
    let mut s = sensor_device(ContentFormat::Lwm2mCbor, Version::V1_2);
    s.run(Duration::from_secs(5));
    let now = s.pair.now;
    let signal = s.device.device().node(&SIGNAL);
    s.device
        .send_series(now, &mut s.pair.client, &[BATTERY, SIGNAL], 5)
        .expect("send");
    s.run(Duration::from_secs(1));
    let sent = s.server.sends.pop().expect("a Send");
    let nodes = codec::decode_nodes(
        ContentFormat::Lwm2mCbor,
        &sent.payload,
        None,
        s.device.device().models(),
    )
    .expect("decodes");
    assert_eq!(nodes.get(&SIGNAL), signal.as_ref());
}

#[test]
fn send_current_values_and_refusals() {
    let mut s = Setup::registered(DeviceConfig::new("send-2", Version::V1_1));
    assert!(s.device.set(&BATTERY, Value::Integer(61)));
    let now = s.pair.now;
    s.device
        .send(now, &mut s.pair.client, &[BATTERY])
        .expect("send");
    s.run(Duration::from_secs(1));
    let sent = s.server.sends.pop().expect("a Send");
    let entries = codec::decode_timestamped(
        ContentFormat::SenmlCbor,
        &sent.payload,
        s.device.device().models(),
    )
    .expect("decodes");
    assert_eq!(
        entries[0].nodes.get(&BATTERY),
        Some(&Node::Resource(Resource::Single(Value::Integer(61))))
    );
    assert_eq!(
        s.device
            .send(now, &mut s.pair.client, &[Path::Resource(3, 0, 99)]),
        Err(SendError::NotFound(Path::Resource(3, 0, 99)))
    );
    // Mute Send on: refused.
    assert!(
        s.device
            .set(&Path::Resource(1, 0, 23), Value::Boolean(true))
    );
    assert_eq!(
        s.device.send(now, &mut s.pair.client, &[BATTERY]),
        Err(SendError::Muted)
    );
    // A 1.0 device has no Send.
    let mut old = Setup::registered(DeviceConfig::new("send-3", Version::V1_0));
    let now = old.pair.now;
    assert!(matches!(
        old.device.send(now, &mut old.pair.client, &[BATTERY]),
        Err(SendError::NotSupported(_))
    ));
}

fn queue_device() -> Setup {
    let mut config = DeviceConfig::new("queue-1", Version::V1_1);
    config.queue_mode = true;
    config.lifetime = 3600;
    config.queue = QueueTiming {
        awake: Duration::from_secs(5),
        sleep: Duration::from_secs(30),
    };
    Setup::registered(config)
}

fn read(path: &str) -> Request {
    Request::new(Method::Get).with_path(path)
}

#[test]
fn queue_mode_sleeps_drops_and_wakes_with_an_update() {
    let mut s = queue_device();
    assert!(s.device.is_awake());
    assert_eq!(
        s.call(read("/3/0/9"), Duration::from_secs(2))
            .map(|r| r.code),
        Some(Code::CONTENT)
    );
    s.run(Duration::from_secs(6));
    assert!(!s.device.is_awake());
    assert!(s.events().contains(&DeviceEvent::Slept));

    // Asleep: the request is never answered (the server's retransmissions give up).
    let id = s.request(read("/3/0/9"));
    s.run(Duration::from_secs(20));
    assert!(s.take_responses(id).is_empty());
    assert!(!s.device.is_awake());
    // The server gives up on it (NSTART 1 would hold the next request behind it).
    let now = s.pair.now;
    s.pair
        .server
        .cancel(now, steward_coap::sim::Side::Client, id);

    // Wakes on its own after 30 s of sleep (about 36 s in), with a registration Update.
    let updates = s.server.updates;
    s.run(Duration::from_secs(10));
    assert!(s.device.is_awake());
    assert!(s.events().contains(&DeviceEvent::Woke));
    assert_eq!(s.server.updates, updates + 1);
    assert_eq!(
        s.call(read("/3/0/9"), Duration::from_secs(2))
            .map(|r| r.code),
        Some(Code::CONTENT)
    );
    // And sleeps again after the awake window.
    s.run(Duration::from_secs(10));
    assert!(!s.device.is_awake());
}

#[test]
fn queue_mode_holds_notifications_until_the_wake_up() {
    let mut s = queue_device();
    let id = s.request(observe("/3/0/9"));
    s.run(Duration::from_millis(200));
    assert_eq!(s.take_responses(id).len(), 1);
    s.run(Duration::from_secs(6));
    assert!(!s.device.is_awake());
    assert!(s.device.set(&BATTERY, Value::Integer(50)));
    s.run(Duration::from_secs(10));
    assert!(s.take_responses(id).is_empty(), "asleep: nothing sent");
    s.run(Duration::from_secs(22));
    assert!(s.device.is_awake());
    let n = s.take_responses(id);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].payload, b"50");
}
