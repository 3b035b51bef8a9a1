//! The admin routes over real HTTP against the real runtime: `/api/security/*`, `/api/server/*`,
//! the bootstrap server's `/bs/api/*` and `/api/steward/*`, each with the request Leshan's UIs
//! send (leshan-webui-requests.md §4.5, §5) and the error cases of leshan-rest-api.md §2.2/§2.5.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod http_client;

use std::net::SocketAddr;

use http_client::Request;
use serde_json::{Value, json};
use steward::config::Config;
use steward::runtime;

/// One HTTP/1.1 exchange with `Connection: close`: (status, content type, body).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut request =
        Request::new(method, path).header("Accept", "application/json, text/plain, */*");
    if let Some(ct) = content_type {
        request = request.body(ct, body);
    }
    let reply = request.send(addr).await;
    assert!(!reply.chunked(), "these answers have a length");
    (reply.status, reply.content_type(), reply.body)
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    http(addr, "GET", path, None, b"").await
}

async fn put_json(addr: SocketAddr, path: &str, body: &Value) -> (u16, String, Vec<u8>) {
    http(
        addr,
        "PUT",
        path,
        Some("application/json"),
        body.to_string().as_bytes(),
    )
    .await
}

fn text(body: &[u8]) -> &str {
    std::str::from_utf8(body).unwrap()
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap()
}

/// A server with a CA in its data directory (created offline: the running server holds
/// sled's lock), or without one.
async fn start(with_ca: bool) -> (tempfile::TempDir, runtime::RunningServer, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    if with_ca {
        let store = std::sync::Arc::new(steward::store::SledStore::open(&data).unwrap());
        steward::pki::PkiService::init_if_missing(&data, store, Default::default()).unwrap();
    }
    let server = runtime::start(&Config::ephemeral(data)).await.unwrap();
    let http = server.http_addr().unwrap();
    (dir, server, http)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_clients_as_the_leshan_ui_uses_them() {
    let (_dir, server, addr) = start(false).await;

    // Empty store: an empty array.
    let (status, ct, body) = get(addr, "/api/security/clients").await;
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    assert_eq!(json_of(&body), json!([]));

    // "Add Security Information": PUT with the trailing slash, 200 empty.
    let psk = json!({"endpoint":"ep-new","tls":{"mode":"psk","details":{"identity":"id-new","key":"00112233"}}});
    let (status, _, body) = put_json(addr, "/api/security/clients/", &psk).await;
    assert_eq!(status, 200, "{}", text(&body));
    assert!(body.is_empty());
    // An RPK (a real SPKI) and an X.509 entry, the other two forms the UI sends.
    let spki = openssl::ec::EcKey::generate(
        &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap(),
    )
    .unwrap()
    .public_key_to_der()
    .unwrap();
    let spki_hex: String = spki.iter().map(|b| format!("{b:02x}")).collect();
    let rpk = json!({"endpoint":"ep-rpk","tls":{"mode":"rpk","details":{"key":spki_hex}}});
    assert_eq!(put_json(addr, "/api/security/clients", &rpk).await.0, 200);
    let x509 = json!({"endpoint":"ep-x509","tls":{"mode":"x509","details":{}}});
    assert_eq!(put_json(addr, "/api/security/clients/", &x509).await.0, 200);

    // Listed field by field, ordered by endpoint; x509 without details as Leshan prints it.
    let (status, _, body) = get(addr, "/api/security/clients").await;
    assert_eq!(status, 200);
    let list = json_of(&body);
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert_eq!(list[0], psk);
    assert_eq!(list[0]["tls"]["details"]["key"], "00112233");
    assert_eq!(list[1]["endpoint"], "ep-rpk");
    assert_eq!(list[1]["tls"]["mode"], "rpk");
    assert_eq!(list[1]["tls"]["details"]["key"], json!(spki_hex));
    assert_eq!(list[2], json!({"endpoint":"ep-x509","tls":{"mode":"x509"}}));
    // Stored for the DTLS layer too.
    assert!(server.store().security("ep-new").unwrap().is_some());

    // The same PSK identity for another endpoint: Leshan's message.
    let dup = json!({"endpoint":"ep-other","tls":{"mode":"psk","details":{"identity":"id-new","key":"aa"}}});
    let (status, ct, body) = put_json(addr, "/api/security/clients/", &dup).await;
    assert_eq!(status, 400);
    assert!(ct.starts_with("text/plain"), "{ct}");
    assert_eq!(text(&body), "PSK Identity id-new is already used");

    // Invalid bodies: 400 with `Invalid request body: ...`, never a 500.
    for (bad, needle) in [
        (json!({"tls":{"mode":"psk"}}), "endpoint is mandatory"),
        (json!({"endpoint":"e"}), "tls or oscore is mandatory"),
        (
            json!({"endpoint":"e","tls":{"mode":"psk","details":{"identity":"i","key":"xyz"}}}),
            "hexadecimal",
        ),
        (
            json!({"endpoint":"e","tls":{"mode":"rpk","details":{"key":"0011"}}}),
            "SubjectPublicKeyInfo",
        ),
        (json!({"endpoint":"e","tls":{"mode":"nope"}}), "tls mode"),
        (
            json!({"endpoint":"e","oscore":{"sid":"01","msec":"02","rid":"03"}}),
            "OSCORE",
        ),
        (json!([1, 2]), "JSON object"),
    ] {
        let (status, _, body) = put_json(addr, "/api/security/clients/", &bad).await;
        assert_eq!(status, 400, "{bad}");
        assert!(
            text(&body).starts_with("Invalid request body: "),
            "{}",
            text(&body)
        );
        assert!(text(&body).contains(needle), "{}", text(&body));
    }
    let (status, _, body) = http(
        addr,
        "PUT",
        "/api/security/clients/",
        Some("application/json"),
        b"{\"endpoint\":",
    )
    .await;
    assert_eq!(status, 400);
    assert!(text(&body).starts_with("Invalid request body: "));

    // Hostile endpoint names: control characters, dot segments, encoded separators.
    let ctl = json!({"endpoint":"a\u{1b}[31m","tls":{"mode":"x509"}});
    let (status, _, body) = put_json(addr, "/api/security/clients/", &ctl).await;
    assert_eq!(status, 400);
    assert!(text(&body).contains("invalid endpoint name"));
    for path in [
        "/api/security/clients/..",
        "/api/security/clients/a%2F..%2Fb",
        "/api/security/clients/a%0Ab",
    ] {
        assert_eq!(http(addr, "DELETE", path, None, b"").await.0, 400, "{path}");
    }
    // A huge body: 413 before it is read.
    let huge = vec![b' '; 200 * 1024];
    let (status, _, _) = http(
        addr,
        "PUT",
        "/api/security/clients/",
        Some("application/json"),
        &huge,
    )
    .await;
    assert_eq!(status, 413);

    // Delete: 200 empty; absent: 200 {"message":"not_found"}; percent-decoded endpoint.
    let colon = json!({"endpoint":"urn:imei:1","tls":{"mode":"x509"}});
    assert_eq!(
        put_json(addr, "/api/security/clients/", &colon).await.0,
        200
    );
    let (status, _, body) = http(
        addr,
        "DELETE",
        "/api/security/clients/urn%3Aimei%3A1",
        None,
        b"",
    )
    .await;
    assert_eq!((status, body.len()), (200, 0));
    let (status, _, body) = http(
        addr,
        "DELETE",
        "/api/security/clients/urn%3Aimei%3A1",
        None,
        b"",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(json_of(&body), json!({"message":"not_found"}));
    assert_eq!(
        http(addr, "DELETE", "/api/security/clients", None, b"")
            .await
            .0,
        400
    );

    // Any other GET under /api/security/ and /api/server/: Leshan's empty 400, not a 404.
    for other in ["/api/security/nothing", "/api/server/nothing/else"] {
        let (status, _, body) = get(addr, other).await;
        assert_eq!((status, body.len()), (400, 0), "{other}");
    }

    // /api/server/endpoint: the bound CoAP and CoAPs listeners.
    let (status, _, body) = get(addr, "/api/server/endpoint").await;
    assert_eq!(status, 200);
    let endpoints = json_of(&body);
    let coap = server.coap_addr();
    assert_eq!(endpoints[0]["uri"]["scheme"], "coap");
    assert_eq!(endpoints[0]["uri"]["port"], json!(coap.port()));
    assert_eq!(endpoints[0]["uri"]["host"], json!(coap.ip().to_string()));
    assert_eq!(endpoints[0]["uri"]["full"], json!(format!("coap://{coap}")));
    assert!(
        endpoints[0]["description"]
            .as_str()
            .unwrap()
            .contains("CoAP")
    );
    assert_eq!(endpoints[1]["uri"]["scheme"], "coaps");
    assert_eq!(
        endpoints[1]["uri"]["port"],
        json!(server.coaps_addr().port())
    );

    // No CA: no server identity to show (Leshan's `{}`), and the Steward PKI routes say why.
    let (status, _, body) = get(addr, "/api/server/security").await;
    assert_eq!((status, json_of(&body)), (200, json!({})));
    for path in [
        "/api/steward/ca",
        "/api/steward/certificates",
        "/api/steward/allow-list",
    ] {
        let (status, _, body) = get(addr, path).await;
        assert_eq!(status, 404, "{path}");
        assert!(text(&body).contains("no CA"), "{}", text(&body));
    }

    server.shutdown().await.unwrap();
}

/// The bootstrap UI's "add config" sequence (leshan-webui-requests.md §5.2), listing, the
/// Bootstrap-Pack preview and deletion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_configs_as_the_bs_ui_uses_them() {
    let (_dir, server, addr) = start(false).await;

    let (status, ct, body) = get(addr, "/bs/api/bootstrap").await;
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    assert_eq!(json_of(&body), json!({}));

    // No credentials: DELETE security (must be 2xx even when absent), then POST the config.
    let (status, _, _) = http(
        addr,
        "DELETE",
        "/bs/api/security/clients/bs-ep-a",
        None,
        b"",
    )
    .await;
    assert_eq!(status, 200);
    let config = json!({
        "security":{"1":{"bootstrapServer":false,"clientOldOffTime":1,"securityMode":"NO_SEC","serverId":123,
            "serverSmsNumber":"","smsBindingKeyParam":[],"smsBindingKeySecret":[],"smsSecurityMode":"NO_SEC",
            "uri":"coap://127.0.0.1:5683"}},
        "servers":{"0":{"binding":"U","defaultMinPeriod":1,"lifetime":300,"notifIfDisabled":true,"shortId":123}},
        "oscore":{},
        "toDelete":["/0","/1","/21"]
    });
    let (status, _, body) = http(
        addr,
        "POST",
        "/bs/api/bootstrap/bs-ep-a",
        Some("application/json"),
        config.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{}", text(&body));
    assert!(body.is_empty());

    // With credentials: PUT security on the bootstrap side; the one store serves both servers.
    let cred = json!({"tls":{"mode":"psk","details":{"identity":"bs-id","key":"a1b2c3"}},"endpoint":"bs-ep-b"});
    assert_eq!(
        put_json(addr, "/bs/api/security/clients/", &cred).await.0,
        200
    );
    let (_, _, body) = get(addr, "/api/security/clients").await;
    assert_eq!(json_of(&body), json!([cred]));
    let (_, _, body) = get(addr, "/bs/api/security/clients").await;
    assert_eq!(json_of(&body), json!([cred]));

    // Listing: `{ep: config}`, with Leshan's field names and the maps the UI reads.
    let (status, _, body) = get(addr, "/bs/api/bootstrap").await;
    assert_eq!(status, 200);
    let all = json_of(&body);
    let a = &all["bs-ep-a"];
    assert_eq!(a["servers"]["0"]["shortId"], 123);
    assert_eq!(a["servers"]["0"]["lifetime"], 300);
    assert_eq!(a["servers"]["0"]["binding"], "U");
    assert_eq!(a["security"]["1"]["serverId"], 123);
    assert_eq!(a["security"]["1"]["securityMode"], "NO_SEC");
    assert_eq!(a["security"]["1"]["uri"], "coap://127.0.0.1:5683");
    assert_eq!(a["security"]["1"]["bootstrapServer"], false);
    assert_eq!(a["toDelete"], json!(["/0", "/1", "/21"]));
    assert!(a["oscore"].is_object(), "{a}");

    // The Bootstrap-Pack preview: SenML JSON of /0 and /1.
    let (status, ct, body) = get(addr, "/api/steward/bootstrap-pack/bs-ep-a").await;
    assert_eq!(
        (status, ct.as_str()),
        (200, "application/senml+json"),
        "{}",
        text(&body)
    );
    let pack = json_of(&body);
    let records = pack.as_array().unwrap();
    assert!(
        records.iter().any(|r| r["vs"] == "coap://127.0.0.1:5683"),
        "{pack}"
    );
    let (status, _, body) = get(addr, "/api/steward/bootstrap-pack/nobody").await;
    assert_eq!((status, text(&body)), (404, "no config for nobody"));

    // Errors with Leshan's messages.
    let post = |path: &'static str, body: &'static [u8]| {
        http(addr, "POST", path, Some("application/json"), body)
    };
    let (status, _, body) = post("/bs/api/bootstrap/bs-ep-c", b"").await;
    assert_eq!((status, text(&body)), (400, "no content"));
    let (status, _, body) = post("/bs/api/bootstrap", b"{}").await;
    assert_eq!(
        (status, text(&body)),
        (400, "endpoint name should be specified in the URL")
    );
    let (status, _, body) = post("/bs/api/bootstrap/a/b", b"{}").await;
    assert_eq!(
        (status, text(&body)),
        (
            400,
            "endpoint name should be specified in the URL, nothing more"
        )
    );
    let (status, _, body) = post("/bs/api/bootstrap/bs-ep-c", b"{\"servers\":").await;
    assert_eq!(status, 400);
    assert!(!body.is_empty());
    let (status, _, body) = post(
        "/bs/api/bootstrap/bs-ep-c",
        br#"{"security":{"0":{"uri":"coaps://bs:5784","bootstrapServer":true,"securityMode":"PSK","publicKeyOrId":[1],"secretKey":[]}}}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        text(&body),
        "pre-shared-key mode, secret key must not be empty"
    );
    let (status, _, body) = get(addr, "/bs/api/bootstrap/").await;
    assert_eq!((status, text(&body)), (404, "bad URL"));
    assert_eq!(post("/bs/api/bootstrap/..", b"{}").await.0, 400);

    // /bs/api/server/endpoint: the bootstrap listeners.
    let (_, _, body) = get(addr, "/bs/api/server/endpoint").await;
    let endpoints = json_of(&body);
    assert_eq!(endpoints[0]["uri"]["scheme"], "coap");
    assert_eq!(
        endpoints[0]["uri"]["port"],
        json!(server.bs_coap_addr().unwrap().port())
    );
    assert_eq!(endpoints[1]["uri"]["scheme"], "coaps");

    // Delete: 204, then 404 `no config for {ep}`.
    let (status, _, _) = http(addr, "DELETE", "/bs/api/bootstrap/bs-ep-a", None, b"").await;
    assert_eq!(status, 204);
    let (status, _, body) = http(addr, "DELETE", "/bs/api/bootstrap/bs-ep-a", None, b"").await;
    assert_eq!((status, text(&body)), (404, "no config for bs-ep-a"));

    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steward_pki_routes_and_server_identity() {
    let (_dir, server, addr) = start(true).await;
    let pki = server.pki().unwrap().clone();

    // The server identity as Leshan shows it: a certificate with an EC public key.
    let (status, _, body) = get(addr, "/api/server/security").await;
    assert_eq!(status, 200, "{}", text(&body));
    let identity = json_of(&body);
    let b64 = identity["certificate"]["b64Der"].as_str().unwrap();
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let cert = openssl::x509::X509::from_der(&der).unwrap();
    let pubkey = &identity["certificate"]["pubkey"];
    let spki = base64::engine::general_purpose::STANDARD
        .decode(pubkey["b64Der"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        spki,
        cert.public_key().unwrap().public_key_to_der().unwrap()
    );
    if cert.public_key().unwrap().ec_key().is_ok() {
        assert!(pubkey["x"].as_str().unwrap().len() >= 2);
        assert!(pubkey["y"].as_str().unwrap().len() >= 2);
        assert!(pubkey["params"].is_string());
    }
    let (_, _, body) = get(addr, "/bs/api/server/security").await;
    assert_eq!(json_of(&body), identity);

    // The CA chain, JSON and PEM.
    let (status, _, body) = get(addr, "/api/steward/ca").await;
    assert_eq!(status, 200);
    let chain = json_of(&body)["chain"].as_array().unwrap().clone();
    assert_eq!(chain.len(), pki.ca_chain_der().len());
    assert_eq!(chain[0]["sha256"].as_str().unwrap().len(), 64);
    assert!(
        chain[0]["pem"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    assert!(chain[0]["subject"].as_str().unwrap().contains("CN="));
    let (status, ct, body) = get(addr, "/api/steward/ca?format=pem").await;
    assert_eq!((status, ct.as_str()), (200, "application/x-pem-file"));
    assert_eq!(
        openssl::x509::X509::stack_from_pem(&body).unwrap().len(),
        chain.len()
    );

    // Issued certificates: the server certificate was issued above.
    let (status, _, body) = get(addr, "/api/steward/certificates").await;
    assert_eq!(status, 200);
    let issued = json_of(&body);
    let first = &issued[0];
    let serial = first["serial"].as_str().unwrap().to_owned();
    assert!(serial.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(first["notAfter"].as_u64().unwrap() > first["notBefore"].as_u64().unwrap());
    assert!(
        first["notBefore"].as_u64().unwrap() > 1_000_000_000_000,
        "milliseconds"
    );
    assert!(first["revoked"].is_null());
    let endpoint = first["endpoint"].as_str().unwrap().to_owned();
    let (_, _, body) = get(
        addr,
        &format!("/api/steward/certificates?endpoint={endpoint}"),
    )
    .await;
    assert_eq!(
        json_of(&body).as_array().unwrap().len(),
        issued.as_array().unwrap().len()
    );
    let (_, _, body) = get(addr, "/api/steward/certificates?endpoint=nobody").await;
    assert_eq!(json_of(&body), json!([]));

    // Revoke by serial: 1, then 0 (already); the record shows when and why.
    let revoke = |body: Value| {
        http(
            addr,
            "POST",
            "/api/steward/revoke",
            Some("application/json"),
            body.to_string().into_bytes().leak(),
        )
    };
    let (status, _, body) = revoke(json!({"serial": serial, "reason": "keyCompromise"})).await;
    assert_eq!(status, 200, "{}", text(&body));
    assert_eq!(json_of(&body), json!({"revoked": 1}));
    let (_, _, body) = revoke(json!({"serial": serial})).await;
    assert_eq!(json_of(&body), json!({"revoked": 0}));
    let (_, _, body) = get(addr, "/api/steward/certificates").await;
    let record = &json_of(&body)[0];
    assert_eq!(record["revoked"]["reason"], "keyCompromise");
    assert!(record["revoked"]["at"].as_u64().unwrap() > 1_000_000_000_000);
    let (_, _, body) = revoke(json!({"endpoint": "nobody"})).await;
    assert_eq!(json_of(&body), json!({"revoked": 0}));
    // Errors.
    assert_eq!(revoke(json!({"serial": "0badc0de"})).await.0, 404);
    assert_eq!(revoke(json!({"serial": "zz"})).await.0, 400);
    assert_eq!(
        revoke(json!({"serial": serial, "reason": "bored"})).await.0,
        400
    );
    assert_eq!(revoke(json!({})).await.0, 400);
    assert_eq!(
        revoke(json!({"serial": serial, "endpoint": "x"})).await.0,
        400
    );
    assert_eq!(revoke(json!({"endpoint": "../etc"})).await.0, 400);

    // Allow-list: JSON and CSV imports, listing, deletion.
    let (status, _, body) = get(addr, "/api/steward/allow-list").await;
    assert_eq!((status, json_of(&body)), (200, json!([])));
    let (status, _, body) = http(
        addr,
        "POST",
        "/api/steward/allow-list",
        Some("application/json"),
        br#"["dev-1","dev-2"]"#,
    )
    .await;
    assert_eq!(status, 200, "{}", text(&body));
    assert_eq!(json_of(&body), json!({"received": 2, "added": 2}));
    let (status, _, body) = http(
        addr,
        "POST",
        "/api/steward/allow-list",
        Some("text/csv"),
        b"id,batch\ndev-2,1\ndev-3,1\n",
    )
    .await;
    assert_eq!(status, 200, "{}", text(&body));
    assert_eq!(json_of(&body), json!({"received": 2, "added": 1}));
    let (_, _, body) = get(addr, "/api/steward/allow-list").await;
    assert_eq!(json_of(&body), json!(["dev-1", "dev-2", "dev-3"]));
    let (status, _, _) = http(addr, "DELETE", "/api/steward/allow-list/dev-2", None, b"").await;
    assert_eq!(status, 204);
    let (status, _, _) = http(addr, "DELETE", "/api/steward/allow-list/dev-2", None, b"").await;
    assert_eq!(status, 404);
    let (status, _, _) = http(
        addr,
        "POST",
        "/api/steward/allow-list",
        Some("application/json"),
        b"{\"not\":\"array\"}",
    )
    .await;
    assert_eq!(status, 400);
    let (status, _, _) = http(
        addr,
        "POST",
        "/api/steward/allow-list",
        Some("text/plain"),
        b"dev-9",
    )
    .await;
    assert_eq!(status, 415);
    let (status, _, _) = http(
        addr,
        "POST",
        "/api/steward/allow-list",
        Some("application/json"),
        b"[\"a\\u0000b\"]",
    )
    .await;
    assert_eq!(status, 400);

    server.shutdown().await.unwrap();
}
