//! `GET /bs/api/event`: the bootstrap server's `BSSESSION` stream (leshan-rest-api.md §2.5)
//! over real HTTP against the running server, with a device bootstrapping over real UDP
//! (raw CoAP: a Bootstrap-Request, then 2.02/2.04 to every Bootstrap-Delete/Write/Finish).

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod http_client;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use http_client::Sse;
use serde_json::Value as Json;
use steward::bootstrap::{BootstrapConfig, SecurityMode, ServerConfig, ServerSecurity};
use steward::config::Config;
use steward::runtime;
use steward_coap::message::{Code, Method, Options, Request};
use steward_coap::wire::{self, Kind, Message, Token, Type};
use steward_objects::Path;
use tokio::io::AsyncReadExt;

const WAIT: Duration = Duration::from_secs(10);

/// An open `/bs/api/event` stream (`query` e.g. `?ep=x` or empty), past the response head.
async fn sse(http: SocketAddr, query: &str) -> Sse {
    let mut sse = Sse::open(http, &format!("/bs/api/event{query}")).await;
    sse.timeout = WAIT;
    sse
}

/// The next `BSSESSION` event's data.
async fn next_bs(lines: &mut Sse) -> Json {
    let (name, data) = lines.next_json().await;
    assert_eq!(name, "BSSESSION", "{data}");
    assert!(data["time"].as_u64().is_some_and(|t| t > 0), "{data}");
    assert!(data["message"].is_string(), "{data}");
    data
}

fn send(socket: &UdpSocket, to: SocketAddr, message: &Message) {
    socket.send_to(&wire::encode(message).unwrap(), to).unwrap();
}

/// A raw CoAP device: Bootstrap-Request for `ep`, then answers every request of the server
/// (2.02 to Delete, 2.04 to the rest) until Bootstrap-Finish. Returns the Bootstrap-Request's
/// response code and the requests seen (method, path).
fn bootstrap_device(bs: SocketAddr, ep: &str) -> (Code, Vec<(Method, String)>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let request = Request::new(Method::Post)
        .with_path("/bs")
        .with_query(&format!("ep={ep}"));
    let token = Token::from_u64(0xb5);
    send(
        &socket,
        bs,
        &Message {
            mtype: Type::Con,
            kind: Kind::Request(request.method),
            mid: 0x0100,
            token,
            options: request.options,
            payload: request.payload,
        },
    );
    let mut answer = None;
    let mut seen = Vec::new();
    let mut last_mid = None;
    let mut buf = [0u8; 2048];
    loop {
        let (n, from) = socket
            .recv_from(&mut buf)
            .expect("a datagram from the server");
        let message = wire::decode(&buf[..n]).unwrap();
        match message.kind {
            Kind::Response(code) if message.token == token => {
                answer = Some(code);
                // A refused request: nothing follows.
                if !code.is_success() {
                    return (code, seen);
                }
            }
            Kind::Request(method) => {
                let path = message
                    .options
                    .uri_path()
                    .map(|segments| format!("/{}", segments.join("/")))
                    .unwrap_or_default();
                // A retransmission is answered again but seen once.
                if last_mid != Some(message.mid) {
                    seen.push((method, path.clone()));
                }
                last_mid = Some(message.mid);
                let code = if method == Method::Delete {
                    Code::DELETED
                } else {
                    Code::CHANGED
                };
                send(
                    &socket,
                    from,
                    &Message {
                        mtype: Type::Ack,
                        kind: Kind::Response(code),
                        mid: message.mid,
                        token: message.token,
                        options: Options::new(),
                        payload: Vec::new(),
                    },
                );
                if method == Method::Post && path == "/bs" {
                    return (answer.expect("the Bootstrap-Request answered first"), seen);
                }
            }
            _ => {}
        }
    }
}

async fn device(bs: SocketAddr, ep: &str) -> (Code, Vec<(Method, String)>) {
    let ep = ep.to_owned();
    tokio::task::spawn_blocking(move || bootstrap_device(bs, &ep))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_sessions_and_refusals_stream_as_bssession_events() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        allow_unsecured: true,
        ..Config::ephemeral(dir.path().join("data"))
    };
    let server = runtime::start(&config).await.unwrap();
    let bs = server.bs_coap_addr().unwrap();
    let http = server.http_addr().expect("HTTP listener");

    let uri = format!("coap://{}", server.coap_addr());
    let mut account = ServerSecurity::new(&uri, SecurityMode::NoSec);
    account.server_id = Some(3);
    let mut bootstrap = BootstrapConfig {
        to_delete: vec![Path::Object(1)],
        ..BootstrapConfig::default()
    };
    bootstrap.security.insert(1, account);
    bootstrap.servers.insert(0, ServerConfig::new(3));
    server
        .store()
        .put_bootstrap_config("bs-dev-1", &bootstrap)
        .unwrap();

    // The operator's streams, opened before anything happens: all events, and one device's.
    let mut all = sse(http, "").await;
    let mut mine = sse(http, "?ep=bs-dev-1").await;

    // A Bootstrap-Request for an endpoint without configuration: Leshan's "no config".
    let (code, seen) = device(bs, "nobody").await;
    assert_eq!(code, Code::BAD_REQUEST);
    assert!(seen.is_empty(), "{seen:?}");
    let refused = next_bs(&mut all).await;
    assert_eq!(refused["name"], "no config", "{refused}");
    assert_eq!(refused["endpoint"], "nobody", "{refused}");

    // A device bootstrapping to the end.
    let (code, seen) = device(bs, "bs-dev-1").await;
    assert_eq!(code, Code::CHANGED);
    assert_eq!(seen.first(), Some(&(Method::Delete, "/1".to_owned())));
    assert_eq!(seen.last(), Some(&(Method::Post, "/bs".to_owned())));

    for stream in [&mut all, &mut mine] {
        // The filtered stream never saw "nobody": its first event is this session's.
        let mut names = Vec::new();
        let mut messages = Vec::new();
        loop {
            let event = next_bs(stream).await;
            assert_eq!(event["endpoint"], "bs-dev-1", "{event}");
            let name = event["name"].as_str().unwrap().to_owned();
            messages.push(event["message"].as_str().unwrap().to_owned());
            names.push(name.clone());
            assert_ne!(name, "failed", "{event}");
            if name == "finished" {
                break;
            }
        }
        let steps = names.len() - 3;
        assert_eq!(names[..2], ["new session", "authorized"], "{names:?}");
        assert!(
            names[2..2 + steps]
                .iter()
                .all(|n| n == "receive success response"),
            "{names:?}"
        );
        // One step per request the device answered, in the order sent.
        assert_eq!(steps, seen.len(), "{names:?} {seen:?}");
        let step_messages = &messages[2..2 + steps];
        assert!(
            step_messages[0].starts_with("Bootstrap-Delete /1"),
            "{step_messages:?}"
        );
        assert!(step_messages[0].contains("2.02"), "{step_messages:?}");
        assert!(
            step_messages
                .iter()
                .any(|m| m.starts_with("Bootstrap-Write")),
            "{step_messages:?}"
        );
        assert!(
            step_messages[steps - 1].starts_with("Bootstrap-Finish"),
            "{step_messages:?}"
        );
    }

    // The streams end when the server stops.
    tokio::time::timeout(WAIT, server.shutdown())
        .await
        .expect("shutdown with open event streams")
        .expect("shutdown");
    for lines in [all, mine] {
        let mut stream = lines.stream;
        let mut rest = Vec::new();
        let ended = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest)).await;
        assert!(matches!(ended, Ok(Ok(_))), "{ended:?}");
    }
}
