//! Bootstrap offers end to end (issue 8): the example plugin (plugins/examples/example) offers
//! values of its object 42799 through its `offer` / `withdraw` commands, inside a real
//! `steward serve` runtime; simulated devices (steward-client's managed runner, NoSec over real
//! UDP) bootstrap and register; a raw CoAP device shows exactly which requests a session sent.
//! The assertions look at every end: what the device holds, what the plugin was told (its API
//! events and key-value store), the `BSSESSION` stream and `GET /api/steward/plugins`.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod http_client;
mod plugins;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path as FsPath;
use std::time::Duration;

use http_client::{Request as HttpRequest, Sse};
use serde_json::{Value as Json, json};
use steward::bootstrap::{BootstrapConfig, SecurityMode, ServerConfig, ServerSecurity};
use steward::config::Config;
use steward::devices::DeviceEvent;
use steward::plugins::dispatch::PluginApiEvent;
use steward::runtime::{self, RunningServer};
use steward_client::managed::{self, ManagedConfig, ManagedDevice};
use steward_client::{DeviceConfig, ExtraObject};
use steward_coap::message::{Code, Method, Options, Request};
use steward_coap::wire::{self, Kind, Message, Token, Type};
use steward_objects::{Instance, Node, Path, Resource, Value, Version};
use tokio::sync::broadcast;

const WAIT: Duration = Duration::from_secs(20);
const DDF: &str = include_str!("../../plugins/examples/example/42799.xml");

fn config(data: &FsPath) -> Config {
    let mut config = Config::ephemeral(data.to_path_buf());
    config.allow_unsecured = true;
    config
}

/// A NoSec account on this server's LwM2M listener; only /0 and /1 are deleted first.
fn configure(server: &RunningServer, endpoints: &[&str]) {
    let uri = format!("coap://{}", server.coap_addr());
    let mut account = ServerSecurity::new(&uri, SecurityMode::NoSec);
    account.server_id = Some(1);
    let mut bootstrap = BootstrapConfig::default();
    bootstrap.security.insert(1, account);
    bootstrap.servers.insert(0, ServerConfig::new(1));
    for ep in endpoints {
        server.store().put_bootstrap_config(ep, &bootstrap).unwrap();
    }
}

/// A factory device that knows only the bootstrap server; with `object`, it implements 42799
/// (instance 0) from the example plugin's DDF.
fn spawn_device(server: &RunningServer, endpoint: &str, object: bool) -> ManagedDevice {
    let mut device = DeviceConfig::new(endpoint, Version::V1_1);
    if object {
        let mut extra = ExtraObject::from_ddf(DDF).unwrap().remove(0);
        let mut instance = Instance::default();
        instance
            .resources
            .insert(0, Resource::Single(Value::Integer(0)));
        instance
            .resources
            .insert(1, Resource::Single(Value::String("factory".into())));
        extra.instances.insert(0, instance);
        device.extra_objects.push(extra);
    }
    let mut managed = ManagedConfig::new(device, server.coap_addr());
    managed.bootstrap = Some(format!("coap://{}", server.bs_coap_addr().unwrap()));
    managed::spawn(managed).unwrap()
}

/// The device's value at `path`, read in its driver.
async fn device_value(device: &ManagedDevice, path: Path) -> Option<Node> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    assert!(
        device.command(move |client, _| {
            let _ = tx.send(client.device.device().node(&path));
        }),
        "the device runs a driver"
    );
    rx.await.unwrap()
}

fn text(s: &str) -> Option<Node> {
    Some(Node::Resource(Resource::Single(Value::String(s.into()))))
}

async fn registered(events: &mut steward::devices::DeviceEvents, endpoint: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(DeviceEvent::Registered { endpoint: ep, .. })) if ep == endpoint => return,
            Ok(Some(_)) => {}
            _ => panic!("{endpoint} did not register"),
        }
    }
}

/// The plugins' API events, kept until a test asks for them.
struct Events {
    rx: broadcast::Receiver<PluginApiEvent>,
    seen: Vec<PluginApiEvent>,
}

impl Events {
    fn new(server: &RunningServer) -> Events {
        Events {
            rx: server.plugins().api_events(),
            seen: Vec::new(),
        }
    }

    /// The example plugin's `offer-answered` event for (offer, endpoint).
    async fn answer(&mut self, offer: &str, endpoint: &str) -> Json {
        let matches = |e: &PluginApiEvent| {
            e.kind == "offer-answered" && e.data["offer"] == offer && e.data["endpoint"] == endpoint
        };
        if let Some(i) = self.seen.iter().position(matches) {
            return self.seen.remove(i).data;
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Ok(e)) if matches(&e) => return e.data,
                Ok(Ok(e)) => self.seen.push(e),
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                _ => panic!(
                    "no answer to {offer} from {endpoint}; seen: {:?}",
                    self.seen
                ),
            }
        }
    }
}

async fn command(server: &RunningServer, name: &str, argument: Json) -> Json {
    server
        .plugins()
        .command("example", name, &argument)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .unwrap_or(Json::Null)
}

fn kv(server: &RunningServer, key: &str) -> Option<String> {
    let store = server.plugins().host().store().unwrap();
    store
        .plugin_kv_get("example", key)
        .unwrap()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

/// The example plugin's offers as `GET /api/steward/plugins` lists them.
async fn listed_offers(http: SocketAddr) -> Json {
    let reply = HttpRequest::get("/api/steward/plugins").send(http).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    let example = body["plugins"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "example"))
        .cloned()
        .unwrap_or_else(|| panic!("example not listed: {body}"));
    example["offers"].clone()
}

fn send(socket: &UdpSocket, to: SocketAddr, message: &Message) {
    socket.send_to(&wire::encode(message).unwrap(), to).unwrap();
}

/// A raw NoSec device: Bootstrap-Request for `ep`, then 2.02 to every Delete and 2.04 to every
/// other request until Bootstrap-Finish. Returns the Bootstrap-Request's answer and the
/// requests (method, path) in order.
fn raw_bootstrap_blocking(bs: SocketAddr, ep: &str) -> (Code, Vec<(Method, String)>) {
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
        let (n, from) = socket.recv_from(&mut buf).expect("a datagram");
        let message = wire::decode(&buf[..n]).unwrap();
        match message.kind {
            Kind::Response(code) if message.token == token => {
                answer = Some(code);
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

async fn raw_bootstrap(server: &RunningServer, ep: &str) -> (Code, Vec<(Method, String)>) {
    let bs = server.bs_coap_addr().unwrap();
    let ep = ep.to_owned();
    tokio::task::spawn_blocking(move || raw_bootstrap_blocking(bs, &ep))
        .await
        .unwrap()
}

fn put(path: &str) -> (Method, String) {
    (Method::Put, path.to_owned())
}

/// The requests of a session with the configuration of [`configure`].
fn configured() -> Vec<(Method, String)> {
    vec![
        (Method::Delete, "/0".into()),
        (Method::Delete, "/1".into()),
        put("/0/1"),
        put("/1/0"),
        (Method::Post, "/bs".into()),
    ]
}

/// `BSSESSION` frames of one endpoint until one whose message starts with `until`.
async fn frames_until(sse: &mut Sse, until: &str) -> Vec<Json> {
    let mut frames = Vec::new();
    loop {
        let (name, data) = sse.next_json().await;
        assert_eq!(name, "BSSESSION", "{data}");
        let done = data["message"]
            .as_str()
            .is_some_and(|m| m.starts_with(until));
        frames.push(data);
        if done {
            return frames;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_reach_devices_through_bootstrap() {
    let dir = tempfile::tempdir().unwrap();
    plugins::install(dir.path(), &["example"]);
    let server = runtime::start(&config(dir.path())).await.unwrap();
    let http = server.http_addr().unwrap();
    let mut events = Events::new(&server);
    let mut devices = server.devices().events();
    configure(&server, &["offer-1", "plain-1", "finish-1", "raw-1"]);

    // Instance 1 does not exist on the devices: a Bootstrap-Write creates it, and the
    // plugin's own label write at registration (to /42799/0/1) does not touch it.
    let label = json!({"name": "label", "path": "/42799/1/1", "value": "offered",
        "endpoints": ["offer-1", "plain-1", "raw-1"]});
    assert_eq!(
        command(&server, "offer", label).await,
        json!({"offered": true})
    );
    let reset = json!({"name": "reset", "path": "/42799/1/1", "value": "reset",
        "endpoints": ["finish-1"], "finishOnAccept": true});
    command(&server, "offer", reset).await;
    assert_eq!(
        listed_offers(http).await,
        json!([
            {"name": "label", "path": "/42799/1/1", "endpoints": 3,
             "finish_on_accept": false, "expires_ms": null},
            {"name": "reset", "path": "/42799/1/1", "endpoints": 1,
             "finish_on_accept": true, "expires_ms": null},
        ])
    );

    // A device implementing 42799 accepts the offer, then is configured and registers.
    let accepting = spawn_device(&server, "offer-1", true);
    registered(&mut devices, "offer-1").await;
    let answer = events.answer("label", "offer-1").await;
    assert_eq!(answer["code"], "2.04", "{answer}");
    assert_eq!(
        kv(&server, "offer-answer/label/offer-1").as_deref(),
        Some("2.04")
    );
    assert_eq!(
        device_value(&accepting, Path::Resource(42799, 1, 1)).await,
        text("offered")
    );

    // A device without the object refuses it (4.04) and is configured all the same.
    let refusing = spawn_device(&server, "plain-1", false);
    registered(&mut devices, "plain-1").await;
    let answer = events.answer("label", "plain-1").await;
    assert_eq!(answer["code"], "4.04", "{answer}");
    assert_eq!(
        kv(&server, "offer-answer/label/plain-1").as_deref(),
        Some("4.04")
    );

    // Finish on accept: the accepted write is followed at once by Bootstrap-Finish, nothing
    // of the configuration is written. (This factory device has no server account, so it
    // answers the Finish 4.06: the session fails there, as it should.)
    let mut sse = Sse::open(http, "/bs/api/event?ep=finish-1").await;
    sse.timeout = WAIT;
    let finishing = spawn_device(&server, "finish-1", true);
    let frames = frames_until(&mut sse, "Bootstrap-Finish").await;
    let names: Vec<&str> = frames.iter().filter_map(|f| f["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "new session",
            "authorized",
            "receive success response",
            "receive error response"
        ],
        "{frames:?}"
    );
    let offer_frame = frames[2]["message"].as_str().unwrap();
    assert!(
        offer_frame.starts_with(
            "Bootstrap-Write /42799/1/1 (offer \"reset\" of plugin example)\nresponse: 2.04"
        ),
        "{offer_frame}"
    );
    assert_eq!(events.answer("reset", "finish-1").await["code"], "2.04");
    assert_eq!(
        device_value(&finishing, Path::Resource(42799, 1, 1)).await,
        text("reset")
    );

    // Offers go first, then the configuration; a withdrawn offer is not written again.
    let (code, seen) = raw_bootstrap(&server, "raw-1").await;
    assert_eq!(code, Code::CHANGED);
    let mut expected = vec![put("/42799/1/1")];
    expected.extend(configured());
    assert_eq!(seen, expected);
    assert_eq!(events.answer("label", "raw-1").await["code"], "2.04");
    assert_eq!(
        command(&server, "withdraw", json!({"name": "label"})).await,
        json!({"withdrawn": true})
    );
    let (_, seen) = raw_bootstrap(&server, "raw-1").await;
    assert_eq!(seen, configured());
    let offers = listed_offers(http).await;
    assert_eq!(offers.as_array().map(Vec::len), Some(1), "{offers}");
    assert_eq!(offers[0]["name"], "reset");

    for device in [accepting, refusing, finishing] {
        let _ = tokio::time::timeout(WAIT, device.shutdown()).await;
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_survive_a_restart_and_come_only_from_running_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let plugin_dir = plugins::install(dir.path(), &["example"]);
    let server = runtime::start(&config(dir.path())).await.unwrap();
    // Every endpoint; a bad offer fails the command (the plugin asked for what it may not do)
    // and leaves nothing behind.
    command(
        &server,
        "offer",
        json!({"name": "everyone", "path": "/42799/0/1", "value": "kept"}),
    )
    .await;
    let refused = server
        .plugins()
        .command(
            "example",
            "offer",
            &json!({"name": "bad", "path": "/3/0/1", "value": "x"}),
        )
        .await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("not owned")),
        "{refused:?}"
    );
    server.shutdown().await.unwrap();

    let server = runtime::start(&config(dir.path())).await.unwrap();
    let http = server.http_addr().unwrap();
    let mut events = Events::new(&server);
    assert_eq!(
        listed_offers(http).await,
        json!([{"name": "everyone", "path": "/42799/0/1", "endpoints": 0,
                "finish_on_accept": false, "expires_ms": null}])
    );

    // No configuration, but an offer: an offer-only session (the offer, then Finish).
    let (code, seen) = raw_bootstrap(&server, "stranger").await;
    assert_eq!(code, Code::CHANGED);
    assert_eq!(seen, [put("/42799/0/1"), (Method::Post, "/bs".to_owned())]);
    assert_eq!(events.answer("everyone", "stranger").await["code"], "2.04");

    // A disabled plugin's offers are not written (and without them: "no config", 4.00).
    let disable = HttpRequest::new("POST", "/api/steward/plugins/example/disable")
        .send(http)
        .await;
    assert_eq!(disable.status, 200, "{}", disable.text());
    let (code, seen) = raw_bootstrap(&server, "stranger").await;
    assert_eq!((code, seen.len()), (Code::BAD_REQUEST, 0));
    let enable = HttpRequest::new("POST", "/api/steward/plugins/example/enable")
        .send(http)
        .await;
    assert_eq!(enable.status, 200, "{}", enable.text());
    let (code, _) = raw_bootstrap(&server, "stranger").await;
    assert_eq!(code, Code::CHANGED);

    // Nor are those of a plugin that is no longer loaded; they stay stored for its return.
    std::fs::remove_file(plugin_dir.join("example.wasm")).unwrap();
    assert!(server.plugins().reload().await.loaded.is_empty());
    let (code, _) = raw_bootstrap(&server, "stranger").await;
    assert_eq!(code, Code::BAD_REQUEST);
    assert_eq!(server.plugins().offers().all().len(), 1);
    plugins::install(dir.path(), &["example"]);
    assert_eq!(server.plugins().reload().await.loaded, ["example"]);
    let (code, seen) = raw_bootstrap(&server, "stranger").await;
    assert_eq!((code, seen.len()), (Code::CHANGED, 2));
    server.shutdown().await.unwrap();
}
