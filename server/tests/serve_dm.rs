//! Device management through the running server (`runtime::start` + `RunningServer::devices`)
//! over real UDP sockets on 127.0.0.1, against `steward_client` devices: reads in the chosen
//! and in forced formats, write and read back, execute, observe with a notification after the
//! device changes a value, Send on the event stream, a request to an unknown endpoint, and a
//! read queued for a sleeping queue-mode device.

mod fleet;
mod udp_device;

use std::net::SocketAddr;
use std::time::Duration;

use fleet::TempDir;
use steward::config::Config;
use steward::devices::{DeviceEvent, DeviceEvents, Devices};
use steward::dm::{DmConfig, DmError, DownlinkRequest, DownlinkResponse, WriteMode};
use steward::runtime::{self, RunningServer};
use steward_client::{Client, DeviceConfig, QueueTiming};
use steward_objects::{ContentFormat, Node, Path, Resource, Value, Version};
use steward_transport::Handle;

const TIMEOUT: Duration = Duration::from_secs(10);
use udp_device::WAIT;

struct World {
    _dir: TempDir,
    server: RunningServer,
    devices: Devices,
    events: DeviceEvents,
}

async fn world(name: &str, dm: DmConfig) -> World {
    let dir = TempDir::new(name);
    let config = Config {
        coap_port: 0,
        coaps_port: 0,
        bs_coap_port: 0,
        bs_coaps_port: 0,
        http_port: 0,
        data_dir: dir.path().join("data"),
        allow_unsecured: true,
        ..Config::default()
    };
    let server = runtime::start_with(&config, dm)
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    let devices = server.devices();
    let events = devices.events();
    World {
        _dir: dir,
        server,
        devices,
        events,
    }
}

impl World {
    /// Starts a device over UDP and waits until both sides have its registration.
    async fn device(&mut self, config: DeviceConfig) -> Handle<Client<SocketAddr>> {
        udp_device::registered_device(self.server.coap_addr(), &mut self.events, config).await
    }

    async fn wait_for(&mut self, want: impl Fn(&DeviceEvent) -> bool) -> DeviceEvent {
        udp_device::wait_for(&mut self.events, want).await
    }

    async fn request(&self, endpoint: &str, request: DownlinkRequest) -> DownlinkResponse {
        let op = request.operation();
        self.devices
            .request(endpoint, request, TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{op} on {endpoint}: {e}"))
    }
}

fn single(node: Option<&Node>) -> Option<&Value> {
    match node {
        Some(Node::Resource(Resource::Single(v))) => Some(v),
        _ => None,
    }
}

fn read(path: Path, format: Option<ContentFormat>) -> DownlinkRequest {
    DownlinkRequest::Read { path, format }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_write_and_execute_over_udp() {
    let mut w = world("serve-dm-rwx", DmConfig::default()).await;
    let _device = w.device(DeviceConfig::new("dm-a", Version::V1_1)).await;

    // /3/0 in the format the server chooses for this client, then in forced ones.
    let chosen = w.request("dm-a", read(Path::Instance(3, 0), None)).await;
    let DownlinkResponse::Read {
        node: Some(Node::Instance(instance)),
        format: Some(_),
    } = &chosen
    else {
        panic!("{chosen:?}")
    };
    assert!(instance.resources.contains_key(&0), "{instance:?}");
    for forced in [
        ContentFormat::Tlv,
        ContentFormat::SenmlJson,
        ContentFormat::SenmlCbor,
    ] {
        match w
            .request("dm-a", read(Path::Instance(3, 0), Some(forced)))
            .await
        {
            DownlinkResponse::Read {
                node: Some(Node::Instance(i)),
                format,
            } => {
                assert_eq!(format, Some(forced));
                assert_eq!(i.resources.get(&0), instance.resources.get(&0));
            }
            other => panic!("{forced}: {other:?}"),
        }
    }
    match w
        .request(
            "dm-a",
            read(Path::Resource(3, 0, 0), Some(ContentFormat::Text)),
        )
        .await
    {
        DownlinkResponse::Read { node, format } => {
            assert_eq!(format, Some(ContentFormat::Text));
            assert!(matches!(single(node.as_ref()), Some(Value::String(_))));
        }
        other => panic!("{other:?}"),
    }

    // Write the UTC offset and read it back.
    let offset = Path::Resource(3, 0, 14);
    let written = w
        .request(
            "dm-a",
            DownlinkRequest::Write {
                path: offset,
                node: Node::Resource(Resource::Single(Value::String("+02:00".into()))),
                mode: WriteMode::Replace,
                format: None,
            },
        )
        .await;
    assert_eq!(written, DownlinkResponse::Write);
    match w.request("dm-a", read(offset, None)).await {
        DownlinkResponse::Read { node, .. } => {
            assert_eq!(single(node.as_ref()), Some(&Value::String("+02:00".into())))
        }
        other => panic!("{other:?}"),
    }

    // Execute Reboot: 2.04, then the device registers again.
    let executed = w
        .request(
            "dm-a",
            DownlinkRequest::Execute {
                path: Path::Resource(3, 0, 4),
                args: None,
            },
        )
        .await;
    assert_eq!(executed, DownlinkResponse::Execute);
    w.wait_for(|e| {
        matches!(e, DeviceEvent::Registered { endpoint, replaced: true, .. } if endpoint == "dm-a")
    })
    .await;

    // Nobody by that name.
    let unknown = w
        .devices
        .request("nobody", read(Path::Resource(3, 0, 0), None), TIMEOUT)
        .await;
    assert_eq!(unknown, Err(DmError::NotRegistered("nobody".into())));

    w.server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lwm2m_cbor_for_a_1_2_device() {
    let mut w = world("serve-dm-cbor", DmConfig::default()).await;
    let _device = w.device(DeviceConfig::new("dm-12", Version::V1_2)).await;
    match w
        .request(
            "dm-12",
            read(Path::Instance(3, 0), Some(ContentFormat::Lwm2mCbor)),
        )
        .await
    {
        DownlinkResponse::Read {
            node: Some(Node::Instance(i)),
            format,
        } => {
            assert_eq!(format, Some(ContentFormat::Lwm2mCbor));
            assert!(i.resources.contains_key(&0));
        }
        other => panic!("{other:?}"),
    }
    w.server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_notifies_when_the_device_changes_a_value() {
    let mut w = world("serve-dm-observe", DmConfig::default()).await;
    let device = w.device(DeviceConfig::new("dm-o", Version::V1_1)).await;
    let battery = Path::Resource(3, 0, 9);
    let observed = w
        .request(
            "dm-o",
            DownlinkRequest::Observe {
                path: battery,
                format: None,
            },
        )
        .await;
    assert!(
        matches!(
            observed,
            DownlinkResponse::Observe {
                observe: Some(_),
                ..
            }
        ),
        "{observed:?}"
    );
    let observations = w.devices.observations();
    assert_eq!(observations.len(), 1, "{observations:?}");
    let ticket = observations[0].0;

    // The record reaches the store through the writer thread.
    let store = w.server.store();
    let stored = wait_until(|| store.observations("dm-o").is_ok_and(|o| o.len() == 1)).await;
    assert!(stored, "the observation is in the store");

    device.command(move |client, now| {
        client.device.set(&battery, Value::Integer(42));
        client.handle_timeout(now);
    });
    let notified = w
        .wait_for(|e| {
            matches!(e, DeviceEvent::Notification(n)
                if n.ticket == ticket
                    && single(n.nodes.get(&battery)) == Some(&Value::Integer(42)))
        })
        .await;
    assert!(matches!(notified, DeviceEvent::Notification(_)));

    assert!(w.devices.cancel_observation(ticket));
    assert!(w.devices.observations().is_empty());
    let removed = wait_until(|| store.observations("dm-o").is_ok_and(|o| o.is_empty())).await;
    assert!(removed, "the observation left the store");
    drop(store);
    w.server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_arrives_on_the_event_stream() {
    let mut w = world("serve-dm-send", DmConfig::default()).await;
    let device = w.device(DeviceConfig::new("dm-s", Version::V1_1)).await;
    device.command(|client, now| {
        let sent = client
            .device
            .send(now, &mut client.stack, &[Path::Resource(3, 0, 9)]);
        assert!(sent.is_ok(), "{sent:?}");
        client.handle_timeout(now);
    });
    let event = w
        .wait_for(|e| matches!(e, DeviceEvent::Send(r) if r.endpoint == "dm-s"))
        .await;
    let DeviceEvent::Send(report) = event else {
        unreachable!()
    };
    let battery = report
        .entries
        .iter()
        .find_map(|e| e.nodes.get(&Path::Resource(3, 0, 9)));
    assert!(battery.is_some(), "{report:?}");
    w.server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_for_a_sleeping_device_waits_for_its_wake_up() {
    let dm = DmConfig {
        awake_window: Duration::from_millis(600),
        ..DmConfig::default()
    };
    let mut w = world("serve-dm-queue", dm).await;
    let mut config = DeviceConfig::new("dm-q", Version::V1_1);
    config.queue_mode = true;
    config.queue = QueueTiming {
        awake: Duration::from_secs(1),
        sleep: Duration::from_secs(2),
    };
    let _device = w.device(config).await;
    w.wait_for(|e| matches!(e, DeviceEvent::Sleeping { endpoint } if endpoint == "dm-q"))
        .await;
    let pending = w
        .devices
        .start("dm-q", read(Path::Resource(3, 0, 9), None), TIMEOUT)
        .expect("queued");
    assert_eq!(w.devices.queued("dm-q"), 1);
    let outcome = pending.outcome().await;
    assert!(
        matches!(outcome, Ok(DownlinkResponse::Read { node: Some(_), .. })),
        "{outcome:?}"
    );
    assert_eq!(w.devices.queued("dm-q"), 0);
    w.server.shutdown().await.expect("shutdown");
}

async fn wait_until(mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}
