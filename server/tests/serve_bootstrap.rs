//! The Bootstrap-Server listener over real UDP, datagram by datagram: Bootstrap-Pack, refusals,
//! EST discovery and EST's demand for an authenticated client, and the CA-less answers.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use steward::bootstrap::{BootstrapConfig, SecurityMode, ServerConfig, ServerSecurity};
use steward::config::Config;
use steward::runtime;
use steward_coap::message::{Code, Method, Request};
use steward_coap::wire::{self, Kind, Message, Token, Type};
use steward_objects::{ContentFormat, ModelRegistry, Path, Value, codec};

/// One confirmable request and its piggybacked response.
fn exchange(server: SocketAddr, request: Request) -> (Code, Vec<u8>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let message = Message {
        mtype: Type::Con,
        kind: Kind::Request(request.method),
        mid: 0x1234,
        token: Token::from_u64(7),
        options: request.options,
        payload: request.payload,
    };
    socket
        .send_to(&wire::encode(&message).unwrap(), server)
        .unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = socket.recv_from(&mut buf).expect("an answer");
    let answer = wire::decode(&buf[..n]).unwrap();
    assert_eq!(answer.token, message.token);
    match answer.kind {
        Kind::Response(code) => (code, answer.payload),
        other => panic!("not a response: {other:?}"),
    }
}

async fn ask(server: SocketAddr, request: Request) -> (Code, Vec<u8>) {
    tokio::task::spawn_blocking(move || exchange(server, request))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_listener_answers_pack_refusals_and_est_discovery() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A CA in the data directory (offline: the running server holds sled's lock).
    {
        let store = std::sync::Arc::new(steward::store::SledStore::open(&data).unwrap());
        steward::pki::PkiService::init_if_missing(&data, store, Default::default()).unwrap();
    }
    let config = Config {
        allow_unsecured: true,
        ..Config::ephemeral(data)
    };
    let server = runtime::start(&config).await.unwrap();
    let bs = server.bs_coap_addr().unwrap();
    let uri = format!("coap://{}", server.coap_addr());
    let mut account = ServerSecurity::new(&uri, SecurityMode::NoSec);
    account.server_id = Some(3);
    let mut bootstrap = BootstrapConfig::default();
    bootstrap.security.insert(1, account);
    bootstrap.servers.insert(0, ServerConfig::new(3));
    server
        .store()
        .put_bootstrap_config("pack-1", &bootstrap)
        .unwrap();

    // Bootstrap-Pack (LwM2M 1.2): the whole configuration in one SenML CBOR answer.
    let pack = Request::new(Method::Get)
        .with_path("/bspack")
        .with_query("ep=pack-1")
        .with_option(
            steward_coap::message::option::ACCEPT,
            steward_coap::message::encode_uint(112),
        );
    let (code, payload) = ask(bs, pack).await;
    assert_eq!(code, Code::CONTENT, "{}", String::from_utf8_lossy(&payload));
    let nodes = codec::decode_nodes(
        ContentFormat::SenmlCbor,
        &payload,
        None,
        &ModelRegistry::core(),
    )
    .unwrap();
    let leaves: std::collections::BTreeMap<Path, Value> = nodes
        .iter()
        .flat_map(|(path, node)| node.leaves(path).unwrap())
        .map(|(path, value)| (path, value.clone()))
        .collect();
    assert_eq!(
        leaves.get(&Path::Resource(0, 1, 0)),
        Some(&Value::String(uri))
    );
    let short_id = leaves.get(&Path::Resource(1, 0, 0)).cloned();
    assert!(
        matches!(
            short_id,
            Some(Value::Integer(3) | Value::UnsignedInteger(3))
        ),
        "{short_id:?}"
    );

    // A Bootstrap-Request for an endpoint without configuration.
    let unknown = Request::new(Method::Post)
        .with_path("/bs")
        .with_query("ep=nobody");
    let (code, _) = ask(bs, unknown).await;
    assert_eq!(code, Code::BAD_REQUEST);

    // EST is discoverable, and every EST function wants an authenticated (DTLS) client.
    let core = Request::new(Method::Get)
        .with_path("/.well-known/core")
        .with_query("rt=ace.est*");
    let (code, links) = ask(bs, core).await;
    assert_eq!(code, Code::CONTENT);
    let links = String::from_utf8(links).unwrap();
    assert!(links.contains("rt=\"ace.est.sen\""), "{links}");
    let sen = Request::new(Method::Post)
        .with_path("/.well-known/est/sen")
        .with_payload(286, vec![0x30, 0x00]);
    assert_eq!(ask(bs, sen).await.0, Code::UNAUTHORIZED);

    // The CRL over CoAP, signed by the issuing CA; unknown paths are 4.04.
    let (code, crl) = ask(bs, Request::new(Method::Get).with_path("/crl")).await;
    assert_eq!(code, Code::CONTENT);
    let crl = openssl::x509::X509Crl::from_der(&crl).unwrap();
    let issuing = openssl::x509::X509::from_der(&server.pki().unwrap().ca_chain_der()[0]).unwrap();
    assert!(crl.verify(&issuing.public_key().unwrap()).unwrap());
    let (code, _) = ask(bs, Request::new(Method::Get).with_path("/nothing")).await;
    assert_eq!(code, Code::NOT_FOUND);

    server.shutdown().await.unwrap();
}
