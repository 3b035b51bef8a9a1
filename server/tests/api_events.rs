//! The HTTP API's event stream, metrics and bearer token against a running server
//! (`runtime::start`, real UDP device, real HTTP over TCP): an SSE client filtered on `ep`
//! reads REGISTRATION, NOTIFICATION (after an observe started through `Devices`) and
//! DEREGISTRATION while an unfiltered one reads too and a third never reads; `/metrics` moves;
//! the server still shuts down with the streams open; a configured token is required.

mod fleet;
mod http_client;
mod udp_device;

use std::net::SocketAddr;
use std::time::Duration;

use fleet::TempDir;
use http_client::{Request, Sse};
use serde_json::Value as Json;
use steward::config::{Config, HttpToken};
use steward::devices::DeviceEvent;
use steward::dm::{DownlinkRequest, DownlinkResponse};
use steward::runtime::{self, RunningServer};
use steward_client::DeviceConfig;
use steward_objects::{Path, Value, Version};
use tokio::io::AsyncReadExt;

const WAIT: Duration = Duration::from_secs(15);

async fn server(name: &str, token: Option<&str>) -> (TempDir, RunningServer, SocketAddr) {
    let dir = TempDir::new(name);
    let config = Config {
        allow_unsecured: true,
        http_token: token.map(HttpToken::new),
        ..Config::ephemeral(dir.path().join("data"))
    };
    let server = runtime::start(&config)
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    let http = server.http_addr().expect("the HTTP listener");
    (dir, server, http)
}

/// A plain HTTP/1.1 GET: status, head (all lower-case) and body.
async fn get(http: SocketAddr, target: &str, token: Option<&str>) -> (u16, String, String) {
    let reply = Request::get(target)
        .bearer(token)
        .timeout(WAIT)
        .send(http)
        .await;
    (reply.status, reply.head_lower(), reply.text())
}

/// An open event stream that waits [`WAIT`] for each event.
async fn open(http: SocketAddr, target: &str) -> Sse {
    let mut sse = Sse::open(http, target).await;
    sse.timeout = WAIT;
    sse
}

impl Sse {
    /// The next event, which must be `name`. COAPLOG events (produced while an `?ep=` stream
    /// is open, see api_coaplog.rs) are skipped.
    async fn expect(&mut self, name: &str) -> Json {
        let (got, data) = loop {
            let (got, data) = self.next_json().await;
            if got != "COAPLOG" {
                break (got, data);
            }
        };
        assert_eq!(got, name, "{data}");
        data
    }
}

/// The value of an unlabelled sample in a scrape.
fn metric(scrape: &str, name: &str) -> Option<u64> {
    scrape.lines().find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok()).flatten()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_follows_a_device_and_metrics_move() {
    let (_dir, server, http) = server("api-events", None).await;
    let devices = server.devices();
    let mut events = devices.events();

    let (status, head, before) = get(http, "/metrics", None).await;
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    assert!(
        before.contains("# TYPE steward_registrations gauge"),
        "{before}"
    );
    assert_eq!(metric(&before, "steward_registrations"), Some(0));
    assert_eq!(metric(&before, "steward_notifications_total"), Some(0));

    // One reader that never reads, one filtered on the device, one on another endpoint,
    // one unfiltered.
    let _stalled = open(http, "/api/event").await;
    let mut mine = open(http, "/api/event?ep=ev-1").await;
    let other = open(http, "/api/event?ep=someone-else").await;
    let mut all = open(http, "/api/event").await;

    let device = udp_device::registered_device(
        server.coap_addr(),
        &mut events,
        DeviceConfig::new("ev-1", Version::V1_1),
    )
    .await;
    let reg = mine.expect("REGISTRATION").await;
    assert_eq!(reg["endpoint"], "ev-1", "{reg}");
    assert_eq!(reg["lwM2mVersion"], "1.1", "{reg}");
    assert!(reg["registrationId"].is_string(), "{reg}");
    let reg = all.expect("REGISTRATION").await;
    assert_eq!(reg["endpoint"], "ev-1", "{reg}");

    let battery = Path::Resource(3, 0, 9);
    let observed = devices
        .request(
            "ev-1",
            DownlinkRequest::Observe {
                path: battery,
                format: None,
            },
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|e| panic!("observe: {e}"));
    assert!(
        matches!(observed, DownlinkResponse::Observe { .. }),
        "{observed:?}"
    );
    device.command(move |client, now| {
        client.device.set(&battery, Value::Integer(42));
        client.handle_timeout(now);
    });
    // The observe answer may carry a first value; wait for the 42.
    let note = loop {
        let note = mine.expect("NOTIFICATION").await;
        if note["val"]["value"] == "42" {
            break note;
        }
    };
    assert_eq!(note["ep"], "ev-1", "{note}");
    assert_eq!(note["kind"], "single", "{note}");
    assert_eq!(note["res"], "/3/0/9", "{note}");
    assert_eq!(note["val"]["id"], 9, "{note}");

    let (_, _, during) = get(http, "/metrics", None).await;
    assert_eq!(
        metric(&during, "steward_registrations"),
        Some(1),
        "{during}"
    );
    assert_eq!(metric(&during, "steward_observations"), Some(1), "{during}");
    assert!(
        metric(&during, "steward_notifications_total").is_some_and(|n| n >= 1),
        "{during}"
    );
    assert_eq!(metric(&during, "steward_sse_streams"), Some(4), "{during}");
    assert!(
        during.contains(
            "steward_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"200\"} 1"
        ),
        "{during}"
    );
    assert!(
        during.contains("steward_registration_events_total{event=\"register\"} 1"),
        "{during}"
    );

    device.command(|client, now| {
        client.device.deregister();
        client.handle_timeout(now);
    });
    let gone = mine.expect("DEREGISTRATION").await;
    assert_eq!(gone["endpoint"], "ev-1", "{gone}");
    udp_device::wait_for(
        &mut events,
        |e| matches!(e, DeviceEvent::Deregistered { endpoint } if endpoint == "ev-1"),
    )
    .await;

    // The unfiltered reader saw everything, in order.
    let mut names = Vec::new();
    while names.last().map(String::as_str) != Some("DEREGISTRATION") {
        names.push(all.next_json().await.0);
    }
    assert!(names.iter().any(|n| n == "NOTIFICATION"), "{names:?}");
    // The other endpoint's stream got nothing but keep-alives: its buffer has no event.
    assert!(!other.text.contains("event:"), "{}", other.text);

    let (_, _, after) = get(http, "/metrics", None).await;
    assert_eq!(metric(&after, "steward_registrations"), Some(0), "{after}");

    // Open streams (one never read) do not hold the shutdown up.
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("shutdown with open event streams")
        .expect("shutdown");
    // And they end.
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(WAIT, mine.stream.read_to_end(&mut rest)).await;
    assert!(matches!(ended, Ok(Ok(_))), "{ended:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_token_is_required_on_every_route() {
    let (_dir, server, http) = server("api-token", Some("s3cret")).await;
    for target in ["/metrics", "/api/event", "/api/clients", "/no/such/route"] {
        let (status, head, _) = get(http, target, None).await;
        assert_eq!(status, 401, "{target}: {head}");
        assert!(
            head.contains("www-authenticate: bearer"),
            "{target}: {head}"
        );
        let (status, _, _) = get(http, target, Some("wrong")).await;
        assert_eq!(status, 401, "{target} with a wrong token");
    }
    let (status, _, body) = get(http, "/metrics", Some("s3cret")).await;
    assert_eq!(status, 200, "{body}");
    // 401s are counted too.
    assert!(body.contains("status=\"401\""), "{body}");
    let _events = Sse::open_with(http, "/api/event", Some("s3cret")).await;
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("shutdown in time")
        .expect("shutdown");
}
