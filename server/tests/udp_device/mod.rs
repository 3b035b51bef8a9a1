//! One simulated device over real UDP against an in-process `steward serve`, for the tests
//! that need the server's device-management side (serve_dm, serve_restart_queue).
#![allow(dead_code)]

use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::time::Duration;

use steward::devices::{DeviceEvent, DeviceEvents};
use steward_client::registration::RegistrationEvent;
use steward_client::{Client, DeviceConfig, DeviceEvent as SimEvent};
use steward_coap::endpoint::Config as EndpointConfig;
use steward_coap::stack::StackConfig;
use steward_transport::Handle;
use steward_transport::udp::{self, UdpConfig};
use tokio::sync::mpsc;

pub const WAIT: Duration = Duration::from_secs(15);

/// Starts a device (its own socket and driver) registering with `server`; its events come on
/// the returned channel.
pub fn spawn_device(
    server: SocketAddr,
    mut config: DeviceConfig,
) -> (
    Handle<Client<SocketAddr>>,
    mpsc::UnboundedReceiver<SimEvent>,
) {
    config.server_uri = format!("coap://{server}");
    let stack = StackConfig {
        endpoint: EndpointConfig {
            seed: RandomState::new().hash_one(&config.endpoint),
            ..EndpointConfig::default()
        },
        ..StackConfig::default()
    };
    let client = Client::new(config, stack, server);
    let (socket, _) = udp::bind(&UdpConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        recv_buffer: 64 << 10,
        send_buffer: 64 << 10,
    })
    .expect("bind a device socket");
    let (tx, rx) = mpsc::unbounded_channel();
    let (handle, _task) = udp::spawn(socket, client, move |_, _, event| {
        let _ = tx.send(event);
    })
    .expect("spawn a device");
    handle.command(|client, now| client.start(now));
    (handle, rx)
}

/// The next server-side device event that `want` accepts (panics after [`WAIT`]).
pub async fn wait_for(
    events: &mut DeviceEvents,
    want: impl Fn(&DeviceEvent) -> bool,
) -> DeviceEvent {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(e)) if want(&e) => return e,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => panic!("the awaited device event did not come"),
        }
    }
}

/// Starts a device and waits until both sides have its registration: the server publishes it
/// as its 2.01 leaves, and the device must have the 2.01 too (a Send before that is refused by
/// the device itself).
pub async fn registered_device(
    server: SocketAddr,
    events: &mut DeviceEvents,
    config: DeviceConfig,
) -> Handle<Client<SocketAddr>> {
    let endpoint = config.endpoint.clone();
    let (handle, mut reports) = spawn_device(server, config);
    wait_for(
        events,
        |e| matches!(e, DeviceEvent::Registered { endpoint: ep, .. } if *ep == endpoint),
    )
    .await;
    let seen = tokio::time::timeout(WAIT, async {
        while let Some(event) = reports.recv().await {
            if matches!(
                event,
                SimEvent::Registration(RegistrationEvent::Registered { .. })
            ) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(seen, Ok(true), "{endpoint} saw its registration");
    handle
}
