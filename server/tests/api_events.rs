//! The HTTP API's event stream, metrics and bearer token against a running server
//! (`runtime::start`, real UDP device, real HTTP over TCP): an SSE client filtered on `ep`
//! reads REGISTRATION, NOTIFICATION (after an observe started through `Devices`) and
//! DEREGISTRATION while an unfiltered one reads too and a third never reads; `/metrics` moves;
//! the server still shuts down with the streams open; a configured token is required.

mod fleet;
mod udp_device;

use std::net::SocketAddr;
use std::time::Duration;

use fleet::TempDir;
use serde_json::Value as Json;
use steward::config::{Config, HttpToken};
use steward::devices::DeviceEvent;
use steward::dm::{DownlinkRequest, DownlinkResponse};
use steward::runtime::{self, RunningServer};
use steward_client::DeviceConfig;
use steward_objects::{Path, Value, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

/// A plain HTTP/1.1 GET: status, headers (lower-case names) and body.
async fn get(http: SocketAddr, target: &str, token: Option<&str>) -> (u16, String, String) {
    let mut s = TcpStream::connect(http).await.expect("connect");
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!("GET {target} HTTP/1.1\r\nHost: steward\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw))
        .await
        .expect("answer in time")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body.as_bytes()).0
    } else {
        body.to_owned()
    };
    (status, head.to_ascii_lowercase(), body)
}

/// Decodes the complete chunks at the start of `raw`: (text, bytes consumed).
fn dechunk(raw: &[u8]) -> (String, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let rest = &raw[at..];
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            break;
        };
        let size = std::str::from_utf8(&rest[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
        let Some(size) = size else { break };
        let end = eol + 2 + size + 2;
        if rest.len() < end {
            break;
        }
        out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
        at += end;
        if size == 0 {
            break;
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), at)
}

/// An event-stream client reading server-sent events over a raw HTTP/1.1 connection.
struct Sse {
    stream: TcpStream,
    raw: Vec<u8>,
    text: String,
}

impl Sse {
    async fn open(http: SocketAddr, target: &str) -> Sse {
        let mut stream = TcpStream::connect(http).await.expect("connect");
        let req =
            format!("GET {target} HTTP/1.1\r\nHost: steward\r\nAccept: text/event-stream\r\n\r\n");
        stream.write_all(req.as_bytes()).await.expect("send");
        let mut sse = Sse {
            stream,
            raw: Vec::new(),
            text: String::new(),
        };
        // The headers: once they are here the handler has subscribed.
        let head = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(end) = sse.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&sse.raw[..end]).to_ascii_lowercase();
                    sse.raw.drain(..end + 4);
                    return head;
                }
                sse.fill().await;
            }
        })
        .await
        .expect("headers in time");
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("content-type: text/event-stream"), "{head}");
        sse
    }

    async fn fill(&mut self) {
        let mut buf = [0u8; 4096];
        let n = self.stream.read(&mut buf).await.expect("read");
        assert!(n > 0, "the stream ended");
        self.raw.extend_from_slice(&buf[..n]);
        let (text, used) = dechunk(&self.raw);
        self.raw.drain(..used);
        self.text.push_str(&text);
    }

    /// The next named event (comments skipped): name and parsed JSON data.
    async fn next_event(&mut self) -> (String, Json) {
        tokio::time::timeout(WAIT, async {
            loop {
                while let Some(end) = self.text.find("\n\n") {
                    let block: String = self.text.drain(..end + 2).collect();
                    let mut name = None;
                    let mut data = String::new();
                    for line in block.lines() {
                        if let Some(n) = line.strip_prefix("event:") {
                            name = Some(n.trim().to_owned());
                        } else if let Some(d) = line.strip_prefix("data:") {
                            data.push_str(d.strip_prefix(' ').unwrap_or(d));
                        }
                    }
                    if let Some(name) = name {
                        let json = serde_json::from_str(&data)
                            .unwrap_or_else(|e| panic!("{name} data {data:?}: {e}"));
                        return (name, json);
                    }
                }
                self.fill().await;
            }
        })
        .await
        .expect("an event in time")
    }

    /// The next event, which must be `name`. COAPLOG events (produced while an `?ep=` stream
    /// is open, see api_coaplog.rs) are skipped.
    async fn expect(&mut self, name: &str) -> Json {
        let (got, data) = loop {
            let (got, data) = self.next_event().await;
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
    let _stalled = Sse::open(http, "/api/event").await;
    let mut mine = Sse::open(http, "/api/event?ep=ev-1").await;
    let other = Sse::open(http, "/api/event?ep=someone-else").await;
    let mut all = Sse::open(http, "/api/event").await;

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
        names.push(all.next_event().await.0);
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
    let _events = Sse::open_with_token(http, "s3cret").await;
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("shutdown in time")
        .expect("shutdown");
}

impl Sse {
    async fn open_with_token(http: SocketAddr, token: &str) -> TcpStream {
        let mut stream = TcpStream::connect(http).await.expect("connect");
        let req = format!(
            "GET /api/event HTTP/1.1\r\nHost: steward\r\nAuthorization: Bearer {token}\r\n\
             Accept: text/event-stream\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await.expect("send");
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("headers in time")
            .expect("read");
        let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        stream
    }
}
