//! Queue mode and observations across a server restart, over real UDP on 127.0.0.1 with
//! `steward_client` devices: a read queued for a sleeping device is delivered after the
//! server restarts (same data directory, same port) and the device wakes, its outcome on the
//! event stream; a queued read that expires while the server is down is reported failed; an
//! observation is re-established after the restart and notifies again.

mod fleet;
mod udp_device;

use std::net::SocketAddr;
use std::path::Path as FsPath;
use std::time::Duration;

use fleet::TempDir;
use steward::config::Config;
use steward::devices::{DeviceEvent, DeviceEvents, RequestOrigin};
use steward::dm::{DmConfig, DmError, DownlinkRequest, DownlinkResponse, RequestKind};
use steward::runtime::{self, RunningServer};
use steward_client::{Client, DeviceConfig, QueueTiming};
use steward_objects::{Node, Path, Resource, Value, Version};
use steward_transport::Handle;

use udp_device::WAIT;
const BATTERY: Path = Path::Resource(3, 0, 9);

fn dm() -> DmConfig {
    DmConfig {
        awake_window: Duration::from_millis(600),
        ..DmConfig::default()
    }
}

async fn start(data: &FsPath, coap_port: u16) -> (RunningServer, DeviceEvents) {
    let config = Config {
        coap_port,
        coaps_port: 0,
        bs_coap_port: 0,
        bs_coaps_port: 0,
        http_port: 0,
        data_dir: data.to_path_buf(),
        allow_unsecured: true,
        ..Config::default()
    };
    let server = runtime::start_with(&config, dm())
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    let events = server.devices().events();
    (server, events)
}

/// Stops `server` and starts a new one on the same data directory and CoAP port.
async fn restart(server: RunningServer, data: &FsPath) -> (RunningServer, DeviceEvents) {
    let port = server.coap_addr().port();
    server.shutdown().await.expect("shutdown");
    start(data, port).await
}

async fn wait_for(events: &mut DeviceEvents, want: impl Fn(&DeviceEvent) -> bool) -> DeviceEvent {
    udp_device::wait_for(events, want).await
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

/// Starts a device over UDP and waits until both sides have its registration.
async fn device(
    server: &RunningServer,
    events: &mut DeviceEvents,
    config: DeviceConfig,
) -> Handle<Client<SocketAddr>> {
    udp_device::registered_device(server.coap_addr(), events, config).await
}

fn queue_device(endpoint: &str, sleep: Duration) -> DeviceConfig {
    let mut config = DeviceConfig::new(endpoint, Version::V1_1);
    config.queue_mode = true;
    config.lifetime = 600;
    config.queue = QueueTiming {
        awake: Duration::from_secs(1),
        sleep,
    };
    config
}

fn read_battery() -> DownlinkRequest {
    DownlinkRequest::Read {
        path: BATTERY,
        format: None,
    }
}

fn single(node: Option<&Node>) -> Option<&Value> {
    match node {
        Some(Node::Resource(Resource::Single(v))) => Some(v),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_read_is_delivered_after_a_restart() {
    let dir = TempDir::new("restart-queue");
    let data = dir.path().join("data");
    let (server, mut events) = start(&data, 0).await;
    let _device = device(
        &server,
        &mut events,
        queue_device("rq-a", Duration::from_secs(3)),
    )
    .await;
    wait_for(
        &mut events,
        |e| matches!(e, DeviceEvent::Sleeping { endpoint } if endpoint == "rq-a"),
    )
    .await;
    let devices = server.devices();
    let pending = devices
        .start("rq-a", read_battery(), Duration::from_secs(30))
        .expect("queued");
    assert_eq!(devices.queued("rq-a"), 1);
    let store = server.store();
    assert!(
        wait_until(|| store.queue_len("rq-a").is_ok_and(|n| n == 1)).await,
        "the queued read reached the store"
    );
    drop(store);

    // The device sleeps on; the server restarts meanwhile. The caller of the first run learns
    // that its server stopped.
    let (server, mut events) = restart(server, &data).await;
    assert_eq!(pending.outcome().await, Err(DmError::ServerStopped));
    let restored = server.restored_queue().to_vec();
    assert_eq!(restored.len(), 1, "{restored:?}");
    assert_eq!(restored[0].endpoint, "rq-a");
    assert_eq!(restored[0].kind, RequestKind::Read { path: BATTERY });
    assert!(!restored[0].expired);
    assert_eq!(server.devices().queued("rq-a"), 1);

    // The device wakes with an Update: the restored read goes out and its outcome is
    // published with the store's queue ID.
    let event = wait_for(&mut events, |e| matches!(e, DeviceEvent::Completed { .. })).await;
    let DeviceEvent::Completed {
        ticket,
        endpoint,
        origin,
        result,
    } = event
    else {
        unreachable!()
    };
    assert_eq!(ticket, restored[0].ticket);
    assert_eq!(endpoint, "rq-a");
    assert_eq!(
        origin,
        RequestOrigin::Restored {
            queue_id: restored[0].queue_id
        }
    );
    match result {
        Ok(DownlinkResponse::Read { node, .. }) => {
            assert!(single(node.as_ref()).is_some(), "{node:?}")
        }
        other => panic!("{other:?}"),
    }
    let store = server.store();
    assert!(
        wait_until(|| store.queue_len("rq-a").is_ok_and(|n| n == 0)).await,
        "the delivered read left the store"
    );
    drop(store);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_read_that_expires_during_a_restart_is_reported_failed() {
    let dir = TempDir::new("restart-expire");
    let data = dir.path().join("data");
    let (server, mut events) = start(&data, 0).await;
    // Asleep for much longer than the test.
    let _device = device(
        &server,
        &mut events,
        queue_device("rq-x", Duration::from_secs(120)),
    )
    .await;
    wait_for(
        &mut events,
        |e| matches!(e, DeviceEvent::Sleeping { endpoint } if endpoint == "rq-x"),
    )
    .await;
    let pending = server
        .devices()
        .start("rq-x", read_battery(), Duration::from_millis(800))
        .expect("queued");
    let store = server.store();
    assert!(
        wait_until(|| store.queue_len("rq-x").is_ok_and(|n| n == 1)).await,
        "the queued read reached the store"
    );
    drop(store);
    let port = server.coap_addr().port();
    server.shutdown().await.expect("shutdown");
    drop(pending);
    // Down for longer than the request may wait.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (server, mut events) = start(&data, port).await;
    let restored = server.restored_queue().to_vec();
    assert_eq!(restored.len(), 1, "{restored:?}");
    assert!(restored[0].expired);

    let event = wait_for(&mut events, |e| matches!(e, DeviceEvent::Completed { .. })).await;
    match event {
        DeviceEvent::Completed {
            ticket,
            endpoint,
            origin: RequestOrigin::Restored { queue_id },
            result: Err(e @ DmError::Expired { waited }),
        } => {
            assert_eq!(ticket, restored[0].ticket);
            assert_eq!(queue_id, restored[0].queue_id);
            assert_eq!(endpoint, "rq-x");
            assert!(waited >= Duration::from_millis(800), "{waited:?}");
            assert!(e.to_string().contains("expired"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.devices().queued("rq-x"), 0);
    let store = server.store();
    assert!(
        wait_until(|| store.queue_len("rq-x").is_ok_and(|n| n == 0)).await,
        "the expired read left the store"
    );
    drop(store);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observation_survives_a_restart() {
    let dir = TempDir::new("restart-observe");
    let data = dir.path().join("data");
    let (server, mut events) = start(&data, 0).await;
    let device = device(
        &server,
        &mut events,
        DeviceConfig::new("ro-a", Version::V1_1),
    )
    .await;
    let observed = server
        .devices()
        .request(
            "ro-a",
            DownlinkRequest::Observe {
                path: BATTERY,
                format: None,
            },
            Duration::from_secs(10),
        )
        .await;
    assert!(
        matches!(
            observed,
            Ok(DownlinkResponse::Observe {
                observe: Some(_),
                ..
            })
        ),
        "{observed:?}"
    );
    let store = server.store();
    assert!(
        wait_until(|| store.observations("ro-a").is_ok_and(|o| o.len() == 1)).await,
        "the observation is in the store"
    );
    let old = store.observations("ro-a").unwrap_or_default();
    drop(store);

    let (server, mut events) = restart(server, &data).await;
    assert!(server.devices().observations().is_empty());
    // The device's next Update re-establishes the observation.
    device.command(|client, now| {
        client.device.registration_mut().trigger_update();
        client.handle_timeout(now);
    });
    let event = wait_for(&mut events, |e| matches!(e, DeviceEvent::Completed { .. })).await;
    let DeviceEvent::Completed {
        ticket,
        endpoint,
        origin,
        result,
    } = event
    else {
        unreachable!()
    };
    assert_eq!(endpoint, "ro-a");
    assert_eq!(
        origin,
        RequestOrigin::Reobserve {
            paths: vec![BATTERY]
        }
    );
    assert!(
        matches!(
            result,
            Ok(DownlinkResponse::Observe {
                observe: Some(_),
                ..
            })
        ),
        "{result:?}"
    );
    let observations = server.devices().observations();
    assert_eq!(
        observations,
        vec![(ticket, "ro-a".to_owned(), vec![BATTERY])]
    );

    // The stored record is replaced by the new observation's.
    let store = server.store();
    assert!(
        wait_until(|| store
            .observations("ro-a")
            .is_ok_and(|o| o.len() == 1 && o[0].token != old[0].token))
        .await,
        "the stored observation was replaced"
    );
    drop(store);

    device.command(|client, now| {
        client.device.set(&BATTERY, Value::Integer(42));
        client.handle_timeout(now);
    });
    wait_for(&mut events, |e| {
        matches!(e, DeviceEvent::Notification(n)
            if n.ticket == ticket && single(n.nodes.get(&BATTERY)) == Some(&Value::Integer(42)))
    })
    .await;
    server.shutdown().await.expect("shutdown");
}
