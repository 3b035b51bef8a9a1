//! Leshan's `/api/clients` and `/api/objectspecs` contract (leshan-rest-api.md §2.1–2.3) over
//! real HTTP against the running server, with simulated devices over real UDP: the requests
//! Leshan's web UI sends (leshan-webui-requests.md §4) and the JSON compared field by field.

mod fleet;
mod http_client;
mod udp_device;

use std::net::SocketAddr;
use std::time::Duration;

use fleet::TempDir;
use http_client::{Request, Sse};
use serde_json::{Value as Json, json};
use steward::config::Config;
use steward::devices::{DeviceEvent, DeviceEvents};
use steward::dm::DmConfig;
use steward::runtime::{self, RunningServer};
use steward_client::{DeviceConfig, QueueTiming};
use steward_objects::Version;

struct World {
    _dir: TempDir,
    server: RunningServer,
    http: SocketAddr,
    events: DeviceEvents,
}

async fn world(name: &str, dm: DmConfig) -> World {
    let dir = TempDir::new(name);
    let config = Config {
        allow_unsecured: true,
        ..Config::ephemeral(dir.path().join("data"))
    };
    let server = runtime::start_with(&config, dm)
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    let http = server.http_addr().expect("HTTP listener");
    let events = server.devices().events();
    World {
        _dir: dir,
        server,
        http,
        events,
    }
}

/// An HTTP answer: status, Content-Type, body.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Json {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// One request with the API client's `Accept`, the body as `(content type, text)`.
async fn http(addr: SocketAddr, method: &str, target: &str, body: Option<(&str, &str)>) -> Answer {
    let mut request =
        Request::new(method, target).header("Accept", "application/json, text/plain, */*");
    if let Some((content_type, body)) = body {
        request = request.body(content_type, body.as_bytes());
    }
    let reply = request.send(addr).await;
    Answer {
        status: reply.status,
        content_type: reply.content_type(),
        body: String::from_utf8(reply.body).expect("UTF-8 answer"),
    }
}

impl World {
    async fn get(&self, target: &str) -> Answer {
        http(self.http, "GET", target, None).await
    }
    async fn put_json(&self, target: &str, body: &Json) -> Answer {
        http(
            self.http,
            "PUT",
            target,
            Some(("application/json", &body.to_string())),
        )
        .await
    }
}

/// Status, valid, success, failure: the fields the UI colours its buttons with.
fn assert_envelope(answer: &Answer, status: &str, success: bool) -> Json {
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(
        answer.content_type.starts_with("application/json"),
        "{answer:?}"
    );
    let j = answer.json();
    assert_eq!(j["status"], json!(status), "{j}");
    assert_eq!(j["valid"], json!(true), "{j}");
    assert_eq!(j["success"], json!(success), "{j}");
    assert_eq!(j["failure"], json!(!success), "{j}");
    j
}

fn assert_text(answer: &Answer, status: u16, body: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert!(answer.content_type.starts_with("text/plain"), "{answer:?}");
    assert_eq!(answer.body, body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_objectspecs_and_unknown_endpoints() {
    let mut w = world("api-clients-reg", DmConfig::default()).await;
    let _device = udp_device::registered_device(
        w.server.coap_addr(),
        &mut w.events,
        DeviceConfig::new("urn:api:1", Version::V1_1),
    )
    .await;

    let list = w.get("/api/clients").await;
    assert_eq!(list.status, 200);
    let list = list.json();
    let regs = list.as_array().expect("array");
    assert_eq!(regs.len(), 1);
    let reg = &regs[0];
    assert_eq!(reg["endpoint"], json!("urn:api:1"));
    assert!(
        reg["registrationId"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert!(
        reg["registrationDate"]
            .as_u64()
            .is_some_and(|ms| ms > 1_600_000_000_000)
    );
    assert!(reg["lastUpdate"].as_u64().is_some());
    assert!(
        reg["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:"))
    );
    assert_eq!(reg["lwM2mVersion"], json!("1.1"));
    assert_eq!(reg["lifetime"], json!(300));
    assert_eq!(reg["bindingMode"], json!("U"));
    assert_eq!(reg["rootPath"], json!("/"));
    assert_eq!(reg["secure"], json!(false));
    assert_eq!(reg["queuemode"], json!(false));
    assert_eq!(reg["availableInstances"]["3"], json!([0]));
    assert!(reg.get("sleeping").is_none(), "only for queue mode");
    assert!(reg.get("smsNumber").is_none(), "null fields are left out");
    let links = reg["objectLinks"].as_array().expect("objectLinks");
    assert!(
        links
            .iter()
            .any(|l| l["url"] == json!("/3/0") && l["attributes"] == json!({})),
        "{links:?}"
    );

    // The endpoint is percent-encoded by the UI (`encodeURIComponent`).
    let one = w.get("/api/clients/urn%3Aapi%3A1").await;
    assert_eq!(one.status, 200);
    assert_eq!(&one.json(), reg);

    let specs = w.get("/api/objectspecs/urn%3Aapi%3A1").await;
    assert_eq!(specs.status, 200);
    let specs = specs.json();
    let device = specs
        .as_array()
        .and_then(|a| a.iter().find(|m| m["id"] == json!(3)))
        .expect("object 3");
    assert_eq!(device["name"], json!("Device"));
    assert_eq!(device["instancetype"], json!("single"));
    let reboot = device["resourcedefs"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["id"] == json!(4)))
        .expect("/3/0/4");
    assert_eq!(reboot["operations"], json!("E"));
    assert_eq!(reboot["type"], json!("none"));
    let ids: Vec<u64> = specs
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["id"].as_u64()).collect())
        .unwrap_or_default();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "sorted by id");

    // Unknown endpoints: 400 (not 404), text.
    assert_text(
        &w.get("/api/clients/nobody").await,
        400,
        "No registered client with id 'nobody'",
    );
    assert_text(
        &w.get("/api/clients/nobody/3/0/0?timeout=5&format=TEXT")
            .await,
        400,
        "No registered client with id 'nobody'",
    );
    assert_text(
        &w.get("/api/objectspecs/nobody").await,
        400,
        "no registered client with id 'nobody'",
    );
    w.server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_operations_as_the_ui_sends_them() {
    let mut w = world("api-clients-ops", DmConfig::default()).await;
    let device = udp_device::registered_device(
        w.server.coap_addr(),
        &mut w.events,
        DeviceConfig::new("ops-1", Version::V1_1),
    )
    .await;
    let base = "/api/clients/ops-1";

    // Read a single resource as TEXT.
    let read = w.get(&format!("{base}/3/0/0?timeout=5&format=TEXT")).await;
    let j = assert_envelope(&read, "CONTENT(205)", true);
    assert_eq!(j["content"]["id"], json!(0));
    assert_eq!(j["content"]["kind"], json!("singleResource"));
    assert_eq!(j["content"]["type"], json!("STRING"));
    assert!(j["content"]["value"].is_string());
    assert!(j.get("errormessage").is_none());

    // Read the instance as TLV: integers are strings, time is in ms.
    let read = w.get(&format!("{base}/3/0?timeout=5&format=TLV")).await;
    let j = assert_envelope(&read, "CONTENT(205)", true);
    assert_eq!(j["content"]["kind"], json!("instance"));
    let resources = j["content"]["resources"].as_array().expect("resources");
    let battery = resources
        .iter()
        .find(|r| r["id"] == json!(9))
        .expect("/3/0/9");
    assert_eq!(battery["type"], json!("INTEGER"));
    assert!(
        battery["value"]
            .as_str()
            .is_some_and(|v| v.parse::<i64>().is_ok()),
        "{battery}"
    );
    if let Some(time) = resources.iter().find(|r| r["id"] == json!(13)) {
        assert!(
            time["value"].as_i64().is_some_and(|ms| ms % 1000 == 0),
            "{time}"
        );
    }

    // Write /3/0/14 as the UI does (lower-case type), then read it back.
    let write = w
        .put_json(
            &format!("{base}/3/0/14?timeout=5&format=TEXT"),
            &json!({"id":14,"kind":"singleResource","value":"+03","type":"string"}),
        )
        .await;
    let j = assert_envelope(&write, "CHANGED(204)", true);
    assert!(j.get("content").is_none());
    let back = w.get(&format!("{base}/3/0/14?timeout=5&format=TEXT")).await;
    assert_eq!(back.json()["content"]["value"], json!("+03"));

    // Instance write, partial update.
    let update = w
        .put_json(
            &format!("{base}/3/0?timeout=5&format=TLV&replace=false"),
            &json!({"kind":"instance","resources":[{"id":14,"kind":"singleResource","value":"+05","type":"string"}],"id":0}),
        )
        .await;
    assert_envelope(&update, "CHANGED(204)", true);

    // Bad bodies: 400 with Leshan's prefix.
    let bad = http(
        w.http,
        "PUT",
        &format!("{base}/3/0/14?timeout=5"),
        Some(("application/json", "{not json")),
    )
    .await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.body
            .starts_with("Invalid request: unable to parse json to tlv:"),
        "{bad:?}"
    );
    let wrong_type = w
        .put_json(
            &format!("{base}/3/0/14?timeout=5"),
            &json!({"id":14,"kind":"singleResource","value":3,"type":"string"}),
        )
        .await;
    assert_eq!(wrong_type.status, 400, "{wrong_type:?}");

    // Paths that are no LwM2M path, and POST on a path that is neither Create nor Execute.
    assert_text(&w.get(&format!("{base}/3/x")).await, 400, "Invalid path");
    assert_text(
        &http(w.http, "POST", &format!("{base}/3/0/1/2/3"), None).await,
        400,
        "Invalid path",
    );
    let create_on_instance = http(w.http, "POST", &format!("{base}/3/0"), None).await;
    assert_text(
        &create_on_instance,
        400,
        "Invalid request: Invalid path /3/0: Create request must target an object",
    );

    // A device error is an answer: 200 with success false.
    let missing = w.get(&format!("{base}/3/7/0?timeout=5&format=TEXT")).await;
    let j = assert_envelope(&missing, "NOT_FOUND(404)", false);
    assert!(j.get("content").is_none());

    // Discover.
    let discover = w.get(&format!("{base}/3/discover?timeout=5")).await;
    let j = assert_envelope(&discover, "CONTENT(205)", true);
    let links = j["objectLinks"].as_array().expect("objectLinks");
    assert!(links.iter().any(|l| l["url"] == json!("/3/0")), "{links:?}");

    // Write-Attributes: the query is the attribute set.
    let attrs = http(
        w.http,
        "PUT",
        &format!("{base}/3/0/9/attributes?pmin=5&pmax=60"),
        None,
    )
    .await;
    assert_envelope(&attrs, "CHANGED(204)", true);
    let bad_attrs = http(
        w.http,
        "PUT",
        &format!("{base}/3/0/9/attributes?color=red"),
        None,
    )
    .await;
    assert_eq!(bad_attrs.status, 400);
    assert!(
        bad_attrs.body.starts_with("Invalid attributes: "),
        "{bad_attrs:?}"
    );

    // Observe, then active cancel, then active cancel of nothing (404), passive cancel (200 empty).
    let observe = http(
        w.http,
        "POST",
        &format!("{base}/3/0/9/observe?timeout=5&format=TEXT"),
        None,
    )
    .await;
    let j = assert_envelope(&observe, "CONTENT(205)", true);
    assert_eq!(j["content"]["id"], json!(9));
    let cancel = http(
        w.http,
        "DELETE",
        &format!("{base}/3/0/9/observe?active&timeout=5"),
        None,
    )
    .await;
    assert_envelope(&cancel, "CONTENT(205)", true);
    let none = http(
        w.http,
        "DELETE",
        &format!("{base}/3/0/9/observe?active&timeout=5"),
        None,
    )
    .await;
    assert_text(
        &none,
        404,
        "no observation for path /3/0/9 for  client 'ops-1'",
    );
    let passive = http(w.http, "DELETE", &format!("{base}/3/0/9/observe"), None).await;
    assert_eq!((passive.status, passive.body.as_str()), (200, ""));

    // Composite read (paths percent-encoded, as axios does) and composite write.
    let composite = w
        .get(&format!(
            "{base}/composite?timeout=5&pathformat=SENML_CBOR&nodeformat=SENML_CBOR&paths=%2F3%2F0%2F1,%2F3%2F0%2F14"
        ))
        .await;
    let j = assert_envelope(&composite, "CONTENT(205)", true);
    assert_eq!(j["content"]["/3/0/14"]["kind"], json!("singleResource"));
    assert_eq!(j["content"]["/3/0/14"]["value"], json!("+05"));
    assert_eq!(j["content"]["/3/0/1"]["id"], json!(1));
    let cwrite = w
        .put_json(
            &format!("{base}/composite?timeout=5&pathformat=SENML_CBOR&nodeformat=SENML_CBOR"),
            &json!({"/3/0/14":{"id":14,"kind":"singleResource","value":"+09","type":"string"}}),
        )
        .await;
    assert_envelope(&cwrite, "CHANGED(204)", true);
    let cobserve = http(
        w.http,
        "POST",
        &format!("{base}/composite/observe?timeout=5&pathformat=SENML_CBOR&nodeformat=SENML_CBOR&paths=/3/0/1,/3/0/14"),
        None,
    )
    .await;
    let j = assert_envelope(&cobserve, "CONTENT(205)", true);
    assert_eq!(j["content"]["/3/0/14"]["value"], json!("+09"));
    let cpassive = http(
        w.http,
        "DELETE",
        &format!("{base}/composite/observe?paths=/3/0/1,/3/0/14"),
        None,
    )
    .await;
    assert_eq!(cpassive.status, 200);

    // Execute with raw arguments under x-www-form-urlencoded (never form-decoded): Reboot.
    let execute = http(
        w.http,
        "POST",
        &format!("{base}/3/0/4"),
        Some(("application/x-www-form-urlencoded", "0='abc',1")),
    )
    .await;
    assert_eq!(execute.status, 200, "{execute:?}");
    let j = execute.json();
    assert!(
        j["status"].as_str().is_some_and(|s| s.ends_with(')')),
        "{j}"
    );

    // A device that stopped answering: 504 after the request's own timeout.
    device.shutdown();
    let timeout = w.get(&format!("{base}/3/0/0?timeout=1&format=TEXT")).await;
    assert_text(&timeout, 504, "Request timeout");
    w.server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_for_a_sleeping_device_is_delayed() {
    let dm = DmConfig {
        awake_window: Duration::from_millis(600),
        ..DmConfig::default()
    };
    let mut w = world("api-clients-queue", dm).await;
    // The operator's event stream, opened before anything happens.
    let mut events = Sse::open(w.http, "/api/event?ep=q-1").await;
    let mut config = DeviceConfig::new("q-1", Version::V1_1);
    config.queue_mode = true;
    config.queue = QueueTiming {
        awake: Duration::from_secs(1),
        sleep: Duration::from_secs(2),
    };
    let _device = udp_device::registered_device(w.server.coap_addr(), &mut w.events, config).await;
    udp_device::wait_for(
        &mut w.events,
        |e| matches!(e, DeviceEvent::Sleeping { endpoint } if endpoint == "q-1"),
    )
    .await;

    let reg = w.get("/api/clients/q-1").await.json();
    assert_eq!(reg["queuemode"], json!(true));
    assert_eq!(reg["sleeping"], json!(true));

    let answer = w.get("/api/clients/q-1/3/0/9?timeout=30&format=TEXT").await;
    assert_eq!(answer.status, 200);
    let j = answer.json();
    assert_eq!(j["ep"], json!("q-1"));
    assert_eq!(j["path"], json!("/3/0/9"));
    assert_eq!(j["delayed"], json!(true));
    assert!(j.get("response").is_none());
    let request_id = j["requestId"].as_str().expect("requestId").to_owned();

    // The answer comes as a REQUEST_RESPONSE event once the device wakes up.
    let outcome = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let (name, data) = events.next_json().await;
            if name == "REQUEST_RESPONSE" && data["requestId"] == json!(request_id) {
                return data;
            }
        }
    })
    .await
    .expect("the delayed answer");
    assert_eq!(outcome["ep"], json!("q-1"));
    assert_eq!(outcome["path"], json!("/3/0/9"));
    assert_eq!(outcome["delayed"], json!(true));
    assert_eq!(outcome["response"]["status"], json!("CONTENT(205)"));
    assert_eq!(outcome["response"]["content"]["id"], json!(9));
    w.server.shutdown().await.expect("shutdown");
}
