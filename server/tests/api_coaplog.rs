//! `COAPLOG` on the HTTP API's event stream against a running server (`runtime::start`, real
//! UDP device, raw HTTP/1.1): with a stream open on `?ep=`, a Read sent through `Devices`
//! shows up as the outgoing GET and the device's piggybacked 2.05, in Leshan's
//! `CoapMessage` shape.

mod fleet;
mod http_client;
mod udp_device;

use std::net::SocketAddr;
use std::time::Duration;

use fleet::TempDir;
use http_client::Sse;
use serde_json::Value as Json;
use steward::config::Config;
use steward::dm::{DownlinkRequest, DownlinkResponse};
use steward::runtime;
use steward_client::DeviceConfig;
use steward_objects::{Path, Version};

const WAIT: Duration = Duration::from_secs(15);

/// An SSE stream on `target`, past its response head.
async fn sse(http: SocketAddr, target: &str) -> Sse {
    let mut sse = Sse::open(http, target).await;
    sse.timeout = WAIT;
    sse
}

/// The next COAPLOG that `want` accepts.
async fn next_coaplog(lines: &mut Sse, want: impl Fn(&Json) -> bool) -> Json {
    loop {
        let (name, data) = lines.next_json().await;
        if name == "COAPLOG" && want(&data) {
            return data;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_is_logged_both_ways() {
    let dir = TempDir::new("api-coaplog");
    let config = Config {
        allow_unsecured: true,
        ..Config::ephemeral(dir.path().join("data"))
    };
    let server = runtime::start(&config)
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    let http = server.http_addr().expect("the HTTP listener");
    let devices = server.devices();
    let mut events = devices.events();
    let _device = udp_device::registered_device(
        server.coap_addr(),
        &mut events,
        DeviceConfig::new("log-1", Version::V1_1),
    )
    .await;

    let mut mine = sse(http, "/api/event?ep=log-1").await;
    let read = devices
        .request(
            "log-1",
            DownlinkRequest::Read {
                path: Path::Resource(3, 0, 0),
                format: None,
            },
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|e| panic!("read: {e}"));
    assert!(matches!(read, DownlinkResponse::Read { .. }), "{read:?}");

    let get = next_coaplog(&mut mine, |d| d["incoming"] == false && d["code"] == "GET").await;
    assert_eq!(get["type"], "CON", "{get}");
    assert_eq!(get["ep"], "log-1", "{get}");
    let options = get["options"].as_str().expect("options as text");
    assert!(options.contains("Uri-Path: 3, 0, 0"), "{get}");
    assert!(get["mId"].is_u64(), "{get}");
    assert!(get["timestamp"].as_u64().is_some_and(|t| t > 0), "{get}");
    let token = get["token"].as_str().expect("a token");
    assert!(
        !token.is_empty() && token.chars().all(|c| c.is_ascii_hexdigit()),
        "{get}"
    );

    let answer = next_coaplog(&mut mine, |d| d["incoming"] == true && d["code"] == "2.05").await;
    assert_eq!(answer["type"], "ACK", "{answer}");
    assert_eq!(answer["mId"], get["mId"], "{answer}");
    assert_eq!(answer["token"], get["token"], "{answer}");
    assert_eq!(answer["ep"], "log-1", "{answer}");
    assert!(answer["payload"].is_string(), "{answer}");

    drop(mine);
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("the server stops")
        .expect("shutdown");
}
