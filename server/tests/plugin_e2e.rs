//! The example plugin (plugins/examples/example) inside a real `steward serve` runtime, with a
//! simulated device over real UDP that implements the plugin's object 42799. Every effect and
//! every host import is exercised, and the assertions look at both ends: what the plugin
//! stored and emitted, and what the device saw.

mod http_client;
mod plugins;
mod udp_device;

use std::net::SocketAddr;
use std::path::Path as FsPath;
use std::time::Duration;

use http_client::Request as HttpRequest;
use serde_json::{Value as Json, json};
use steward::config::Config;
use steward::plugins::dispatch::PluginApiEvent;
use steward::runtime::{self, RunningServer};
use steward_client::{DeviceConfig, DeviceEvent as SimEvent, ExtraObject};
use steward_objects::{Instance, Path, Resource, Value, Version};
use tokio::sync::{broadcast, mpsc};

const WAIT: Duration = Duration::from_secs(20);
const DDF: &str = include_str!("../../plugins/examples/example/42799.xml");

fn config(data: &FsPath) -> Config {
    let mut config = Config::ephemeral(data.to_path_buf());
    config.allow_unsecured = true;
    config
}

/// A CA in the data directory, for the certificate host calls.
fn init_ca(data: &FsPath) {
    // Offline, before the server holds sled's lock.
    let store = std::sync::Arc::new(steward::store::SledStore::open(data).expect("store"));
    steward::pki::PkiService::init_if_missing(data, store, Default::default()).expect("CA");
}

/// The example plugin's signing key: `plugin-keys/example/example.pem`.
fn install_key(data: &FsPath) {
    let dir = data.join("plugin-keys/example");
    std::fs::create_dir_all(&dir).expect("key dir");
    let group =
        openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).expect("curve");
    let key = openssl::pkey::PKey::from_ec_key(openssl::ec::EcKey::generate(&group).expect("key"))
        .expect("pkey");
    std::fs::write(
        dir.join("example.pem"),
        key.private_key_to_pem_pkcs8().expect("pem"),
    )
    .expect("write key");
}

fn device_config(endpoint: &str) -> DeviceConfig {
    let mut config = DeviceConfig::new(endpoint, Version::V1_1);
    let mut object = ExtraObject::from_ddf(DDF).expect("DDF").remove(0);
    let mut instance = Instance::default();
    instance
        .resources
        .insert(0, Resource::Single(Value::Integer(0)));
    instance
        .resources
        .insert(1, Resource::Single(Value::String("factory".into())));
    object.instances.insert(0, instance);
    config.extra_objects.push(object);
    config
}

/// The plugins' API events, kept until a test asks for them (the plugin's concurrent
/// requests answer in any order).
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

    /// The first event of `kind` whose data satisfies `want` (taken out of the buffer).
    async fn get(&mut self, kind: &str, want: impl Fn(&Json) -> bool) -> Json {
        let matches = |e: &PluginApiEvent| e.kind == kind && want(&e.data);
        if let Some(i) = self.seen.iter().position(matches) {
            return self.seen.remove(i).data;
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Ok(e)) if matches(&e) => return e.data,
                Ok(Ok(e)) => self.seen.push(e),
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                _ => panic!("no {kind} event came; seen: {:?}", self.seen),
            }
        }
    }

    async fn response(&mut self, correlation: &str) -> Json {
        self.get("response", |d| d["correlation"] == correlation)
            .await
    }
}

async fn executed(device: &mut mpsc::UnboundedReceiver<SimEvent>, path: Path) {
    let found = tokio::time::timeout(WAIT, async {
        while let Some(e) = device.recv().await {
            if matches!(&e, SimEvent::Executed { path: p, .. } if *p == path) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "the device executed {path}");
}

/// A command through the HTTP API, as an operator sends it.
async fn http_command(http: SocketAddr, plugin: &str, name: &str, argument: Json) -> (u16, Json) {
    let body = json!({"name": name, "argument": argument}).to_string();
    let target = format!("/api/steward/plugins/{plugin}/commands");
    let reply = HttpRequest::new("POST", &target)
        .body("application/json", body.as_bytes())
        .send(http)
        .await;
    let json = serde_json::from_str(&reply.text()).unwrap_or(Json::String(reply.text()));
    (reply.status, json)
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
    let store = server.plugins().host().store().expect("store");
    store
        .plugin_kv_get("example", key)
        .expect("kv")
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

/// The device's value at a resource, read inside its driver.
async fn device_value(
    handle: &steward_transport::Handle<steward_client::Client<SocketAddr>>,
    path: Path,
) -> Option<steward_objects::Node> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    handle.command(move |client, _| {
        let _ = tx.send(client.device.device().node(&path));
    });
    rx.await.expect("device answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_plugin_drives_a_device_through_every_effect() {
    let dir = tempfile::tempdir().expect("tempdir");
    plugins::install(dir.path(), &["example"]);
    install_key(dir.path());
    init_ca(dir.path());
    let server = runtime::start(&config(dir.path())).await.expect("server");
    let http = server.http_addr().expect("http");
    let mut events = Events::new(&server);
    let mut sse = http_client::Sse::open(http, "/api/event").await;

    // Registered: the plugin reads the manufacturer, labels the instance, observes the counter.
    let (handle, mut device) = udp_device::spawn_device(server.coap_addr(), device_config("ex-1"));
    let seen = events.get("device-seen", |d| d["endpoint"] == "ex-1").await;
    assert_eq!(seen, json!({"endpoint": "ex-1"}));
    let manufacturer = events.response("manufacturer").await;
    assert_eq!(manufacturer["ok"], true, "{manufacturer}");
    let read = manufacturer["values"]["/3/0/0"]
        .as_str()
        .expect("manufacturer text");
    assert!(!read.is_empty());
    assert_eq!(kv(&server, "manufacturer/ex-1").as_deref(), Some(read));
    assert!(kv(&server, "seen/ex-1").is_some(), "registration id stored");
    assert_eq!(events.response("label").await["body"], "written");
    assert_eq!(
        device_value(&handle, Path::Resource(42799, 0, 1)).await,
        Some(steward_objects::Node::Resource(Resource::Single(
            Value::String("managed by example".into())
        )))
    );
    let observing = events.response("observe").await;
    assert_eq!(observing["ok"], true, "{observing}");
    // The same events reach the HTTP event stream as PLUGIN.
    loop {
        let (name, data) = sse.next_json().await;
        if name == "PLUGIN" {
            assert_eq!(data["plugin"], "example");
            break;
        }
    }

    // Notification: the counter changes on the device.
    handle.command(|client, now| {
        client
            .device
            .set(&Path::Resource(42799, 0, 0), Value::Integer(41));
        client.handle_timeout(now);
    });
    let note = events
        .get("notification", |d| d["values"]["/42799/0/0"] == 41)
        .await;
    assert_eq!(note["correlation"], "observe");
    assert!(kv(&server, "counter/ex-1").is_some_and(|v| v.contains("41")));

    // Cancelling ends the observation on both sides: the device confirms, the server forgets it.
    command(
        &server,
        "cancel-observe",
        json!({"endpoint": "ex-1", "path": "/42799/0/0"}),
    )
    .await;
    assert_eq!(events.response("cmd-cancel").await["body"], "cancelled");
    let observed: Vec<_> = server
        .devices()
        .observations()
        .into_iter()
        .filter(|(_, ep, _)| ep == "ex-1")
        .collect();
    assert!(observed.is_empty(), "{observed:?}");

    // Execute, Create, Delete, Read, Write on command.
    command(&server, "execute", json!({"endpoint": "ex-1"})).await;
    executed(&mut device, Path::Resource(42799, 0, 2)).await;
    assert_eq!(events.response("cmd-execute").await["body"], "executed");

    command(
        &server,
        "create",
        json!({"endpoint": "ex-1", "instance": 1, "label": "second"}),
    )
    .await;
    let created = events.response("cmd-create").await;
    assert_eq!(created["location"], "/42799/1", "{created}");
    assert!(
        device_value(&handle, Path::Instance(42799, 1))
            .await
            .is_some()
    );
    command(
        &server,
        "delete",
        json!({"endpoint": "ex-1", "path": "/42799/1"}),
    )
    .await;
    assert_eq!(events.response("cmd-delete").await["body"], "deleted");
    assert!(
        device_value(&handle, Path::Instance(42799, 1))
            .await
            .is_none()
    );

    command(
        &server,
        "write",
        json!({"endpoint": "ex-1", "path": "/42799/0/1", "label": "by command"}),
    )
    .await;
    assert_eq!(events.response("cmd-write").await["ok"], true);
    command(
        &server,
        "read",
        json!({"endpoint": "ex-1", "path": "/42799/0", "correlation": "whole"}),
    )
    .await;
    let whole = events.response("whole").await;
    assert_eq!(whole["values"]["/42799/0/1"], "by command", "{whole}");
    // A device error comes back as a failed response with its code.
    command(
        &server,
        "read",
        json!({"endpoint": "ex-1", "path": "/42799/9"}),
    )
    .await;
    let missing = events.response("cmd-read").await;
    assert_eq!(missing["ok"], false);
    assert_eq!(missing["code"], "4.04", "{missing}");

    // Send: values of the plugin's object reach it.
    handle.command(|client, now| {
        let Client { stack, device } = client;
        device
            .send(now, stack, &[Path::Resource(42799, 0, 0)])
            .expect("send");
    });
    let sent = events.get("send", |d| d["endpoint"] == "ex-1").await;
    assert_eq!(sent["values"]["/42799/0/0"], 41);

    // A timer that executes on the device when it runs out.
    command(
        &server,
        "timer",
        json!({"endpoint": "ex-1", "after_ms": 50}),
    )
    .await;
    events.get("timer", |d| d["name"] == "tick:ex-1").await;
    executed(&mut device, Path::Resource(42799, 0, 2)).await;
    // A cancelled timer does not fire.
    command(
        &server,
        "timer",
        json!({"endpoint": "ex-1", "after_ms": 300}),
    )
    .await;
    command(&server, "cancel-timer", json!({"endpoint": "ex-1"})).await;

    // Host imports: clock, randomness, log, keys (COSE), key-value, the CA.
    assert!(
        command(&server, "now", Json::Null).await["now_ms"]
            .as_u64()
            .expect("ms")
            > 1_600_000_000_000
    );
    let a = command(&server, "random", Json::Null).await["hex"].clone();
    let b = command(&server, "random", Json::Null).await["hex"].clone();
    assert_eq!(a.as_str().map(str::len), Some(32));
    assert_ne!(a, b);
    assert_eq!(
        command(&server, "log", json!({"message": "hello"})).await["logged"],
        true
    );
    let signed = command(&server, "sign", json!({"payload": "attested"})).await;
    let cose = signed["cose"].as_str().expect("signed").to_owned();
    let verified = command(&server, "verify", json!({"cose": cose})).await;
    assert_eq!(verified["payload"], "attested");
    let mut tampered = cose.clone();
    let last = tampered.pop().expect("hex");
    tampered.push(if last == '0' { '1' } else { '0' });
    let refused = command(&server, "verify", json!({"cose": tampered})).await;
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("signature")),
        "{refused}"
    );
    let no_key = command(&server, "verify", json!({"cose": cose, "key": "other"})).await;
    assert!(
        no_key["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("denied")),
        "{no_key}"
    );
    command(&server, "put", json!({"key": "note", "value": "kept"})).await;
    assert_eq!(
        command(&server, "get", json!({"key": "note"})).await["value"],
        "kept"
    );
    let keys = command(&server, "list", json!({"prefix": "manufacturer/"})).await;
    assert_eq!(keys["keys"], json!(["manufacturer/ex-1"]));
    let (csr, _) = csr("plugin-made");
    let issued = command(
        &server,
        "issue-cert",
        json!({"csr": hex(&csr), "profile": "device"}),
    )
    .await;
    let cert = issued["certificate"].as_str().expect("issued").to_owned();
    let chain: Vec<String> = std::iter::once(cert)
        .chain(
            server
                .pki()
                .expect("CA")
                .ca_chain_der()
                .iter()
                .map(|d| hex(d)),
        )
        .collect();
    let info = command(&server, "verify-cert", json!({"chain": chain})).await;
    assert!(
        info["subject"]
            .as_str()
            .is_some_and(|s| s.contains("CN=plugin-made")),
        "{info}"
    );
    let recorded = server
        .pki()
        .expect("CA")
        .issued_for_endpoint("plugin-made")
        .expect("records");
    assert_eq!(recorded.len(), 1, "the issuance is recorded");
    let bad = command(
        &server,
        "issue-cert",
        json!({"csr": "3000", "profile": "device"}),
    )
    .await;
    assert!(
        bad["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("invalid")),
        "{bad}"
    );

    // Audit and emit on command; the HTTP API carries commands and lists plugins.
    let (status, reply) = http_command(
        http,
        "example",
        "emit",
        json!({"kind": "custom", "data": {"x": 1}}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    events.get("custom", |d| d["x"] == 1).await;
    let (status, _) = http_command(http, "example", "audit", json!({"subject": "ex-1"})).await;
    assert_eq!(status, 200);
    let (status, reply) = http_command(http, "example", "nonsense", Json::Null).await;
    assert_eq!(
        status, 400,
        "a rejected command is the caller's fault: {reply}"
    );
    let (status, reply) =
        http_command(http, "example", "write-core", json!({"endpoint": "ex-1"})).await;
    assert_eq!(status, 502, "{reply}");
    assert!(
        reply
            .as_str()
            .is_some_and(|t| t.contains("object 3 is not owned")),
        "{reply}"
    );
    let (status, _) = http_command(http, "nobody", "x", Json::Null).await;
    assert_eq!(status, 404);
    let list = HttpRequest::get("/api/steward/plugins")
        .send(http)
        .await
        .json();
    assert_eq!(list["plugins"][0]["name"], "example");
    assert_eq!(list["plugins"][0]["objects"], json!([42799]));

    // Bootstrap request: a device asks the bootstrap server.
    bootstrap_request(server.bs_coap_addr().expect("bootstrap"), "bs-dev").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while kv(&server, "bootstrap/bs-dev").is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bootstrap-request reached the plugin"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(kv(&server, "bootstrap/bs-dev").as_deref(), Some("coap"));

    // Deregistered.
    handle.command(|client, now| client.deregister(now));
    events
        .get("deregistered", |d| d["endpoint"] == "ex-1")
        .await;
    assert_eq!(kv(&server, "seen/ex-1"), None);
    // Only write-core failed (the unknown command was rejected: the caller's fault).
    assert_eq!(server.plugins().host().status()[0].events_failed, 1);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_state_and_timers_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    plugins::install(dir.path(), &["example"]);
    let server = runtime::start(&config(dir.path())).await.expect("server");
    command(&server, "put", json!({"key": "durable", "value": "yes"})).await;
    command(
        &server,
        "timer",
        json!({"endpoint": "later", "after_ms": 1500}),
    )
    .await;
    server.shutdown().await.expect("shutdown");

    let server = runtime::start(&config(dir.path())).await.expect("restart");
    let mut events = Events::new(&server);
    assert_eq!(
        command(&server, "get", json!({"key": "durable"})).await["value"],
        "yes"
    );
    events.get("timer", |d| d["name"] == "tick:later").await;
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_are_contained_while_devices_are_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    plugins::install(dir.path(), &["example", "hostile"]);
    let mut config = config(dir.path());
    config.plugins.memory_mib = Some(16);
    config.plugins.max_failures = Some(10);
    let server = runtime::start(&config).await.expect("server");
    let http = server.http_addr().expect("http");
    let mut device_events = server.devices().events();
    let _device =
        udp_device::registered_device(server.coap_addr(), &mut device_events, device_config("hx"))
            .await;
    for (command, want) in [
        ("loop", "CPU deadline"),
        ("host-spin", "CPU deadline"),
        ("bomb", "memory limit"),
        ("trap", "trapped"),
    ] {
        let (status, reply) = http_command(http, "hostile", command, Json::Null).await;
        assert_eq!(status, 502, "{command}: {reply}");
        assert!(
            reply.as_str().is_some_and(|t| t.contains(want)),
            "{command}: {reply}"
        );
        // The server still serves the device, and the other plugin still works.
        let read = server
            .devices()
            .request(
                "hx",
                steward::dm::DownlinkRequest::Read {
                    path: Path::Resource(3, 0, 0),
                    format: None,
                },
                Duration::from_secs(10),
            )
            .await;
        assert!(read.is_ok(), "{command}: {read:?}");
        let (status, _) = http_command(http, "example", "now", Json::Null).await;
        assert_eq!(status, 200);
    }
    let (status, reply) = http_command(http, "hostile", "ok", Json::Null).await;
    assert_eq!((status, reply), (200, json!({"ok": true})));

    // Disable and enable through the API; the state is reported and survives a reload.
    let disable = HttpRequest::new("POST", "/api/steward/plugins/hostile/disable")
        .send(http)
        .await;
    assert_eq!(disable.status, 200);
    let (status, _) = http_command(http, "hostile", "ok", Json::Null).await;
    assert_eq!(status, 503);
    let reload = HttpRequest::new("POST", "/api/steward/plugins/reload")
        .send(http)
        .await
        .json();
    assert_eq!(reload["loaded"], json!(["example", "hostile"]));
    let list = HttpRequest::get("/api/steward/plugins")
        .send(http)
        .await
        .json();
    assert_eq!(list["plugins"][1]["state"], "disabled");
    HttpRequest::new("POST", "/api/steward/plugins/hostile/enable")
        .send(http)
        .await;
    let (status, _) = http_command(http, "hostile", "ok", Json::Null).await;
    assert_eq!(status, 200);

    // The operator's CLI talks to the same API.
    use steward::plugins_cli::PluginsCommand;
    let cli = |command| {
        let args = steward::plugins_cli::PluginsArgs {
            command,
            api: Some(format!("http://{http}")),
            token: None,
        };
        tokio::task::spawn_blocking(move || steward::plugins_cli::run(&args))
    };
    let lines = cli(PluginsCommand::List)
        .await
        .expect("task")
        .expect("list");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("hostile") && l.contains("active")),
        "{lines:?}"
    );
    let disable = PluginsCommand::Disable {
        name: "hostile".into(),
    };
    let lines = cli(disable).await.expect("task").expect("disable");
    assert_eq!(lines, ["hostile: disabled"]);
    let refused = cli(PluginsCommand::Command {
        name: "hostile".into(),
        command: "ok".into(),
        argument: None,
    })
    .await
    .expect("task")
    .expect_err("disabled");
    assert!(refused.to_string().contains("503"), "{refused}");
    let enable = PluginsCommand::Enable {
        name: "hostile".into(),
    };
    cli(enable).await.expect("task").expect("enable");
    let lines = cli(PluginsCommand::Command {
        name: "example".into(),
        command: "put".into(),
        argument: Some(r#"{"key":"k","value":"v"}"#.into()),
    })
    .await
    .expect("task")
    .expect("command");
    assert_eq!(lines, [r#"{"stored":true}"#]);
    let lines = cli(PluginsCommand::Reload)
        .await
        .expect("task")
        .expect("reload");
    assert_eq!(lines[0], "loaded: example, hostile");
    server.shutdown().await.expect("shutdown");
}

use steward_client::Client;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A P-256 CSR for `cn` (DER) and its key.
fn csr(cn: &str) -> (Vec<u8>, openssl::pkey::PKey<openssl::pkey::Private>) {
    let group =
        openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).expect("curve");
    let key = openssl::pkey::PKey::from_ec_key(openssl::ec::EcKey::generate(&group).expect("key"))
        .expect("pkey");
    let mut name = openssl::x509::X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", cn).expect("cn");
    let mut req = openssl::x509::X509ReqBuilder::new().expect("req");
    req.set_subject_name(&name.build()).expect("subject");
    req.set_pubkey(&key).expect("pubkey");
    req.sign(&key, openssl::hash::MessageDigest::sha256())
        .expect("sign");
    (req.build().to_der().expect("der"), key)
}

/// `POST /bs?ep=` as a plain-CoAP device would send it (the server answers 4.00 for an
/// endpoint without a configuration; the plugin hears about the request either way).
async fn bootstrap_request(server: SocketAddr, endpoint: &str) {
    use steward_coap::message::{Method, Request};
    use steward_coap::wire::{Kind, Message, Token, Type};
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let request = Request::new(Method::Post)
        .with_path("/bs")
        .with_query(&format!("ep={endpoint}"));
    let message = Message {
        mtype: Type::Con,
        kind: Kind::Request(request.method),
        mid: 0x1234,
        token: Token::from_u64(7),
        options: request.options,
        payload: request.payload,
    };
    let datagram = steward_coap::wire::encode(&message).expect("encode");
    socket.send_to(&datagram, server).await.expect("send");
    let mut buf = [0u8; 1500];
    let _ = tokio::time::timeout(WAIT, socket.recv_from(&mut buf)).await;
}
