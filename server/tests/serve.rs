//! `steward serve` in-process over real sockets on 127.0.0.1: simulated clients register over
//! UDP, every registration is in the store before the client saw 2.01, the registrations come
//! back after a restart on the same data directory and the clients' Updates are accepted.

mod fleet;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use fleet::{Fleet, TempDir, id_of, registered};
use steward::config::Config;
use steward::runtime::{self, RunningServer};
use steward_client::DeviceEvent;
use steward_client::registration::RegistrationEvent;
use steward_coap::endpoint::Event;
use steward_coap::message::{Code, Method, Request};
use steward_coap::stack::{Stack, StackConfig};
use steward_transport::udp::{self, UdpConfig};
use tokio::sync::mpsc;

const DEVICES: usize = 20;
const WAIT: Duration = Duration::from_secs(30);

fn config(dir: &TempDir) -> Config {
    Config {
        coap_port: 0,
        coaps_port: 0,
        bs_coap_port: 0,
        bs_coaps_port: 0,
        http_port: 0,
        data_dir: dir.path().join("data"),
        allow_unsecured: true,
        expiry_grace_secs: 0,
        ..Config::default()
    }
}

async fn start(config: &Config) -> RunningServer {
    runtime::start(config)
        .await
        .unwrap_or_else(|e| panic!("start: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_are_stored_restored_and_updated_after_restart() {
    let dir = TempDir::new("serve-restart");
    let mut config = config(&dir);
    let server = start(&config).await;
    let coap = server.coap_addr();
    assert_eq!(server.restored(), 0);

    let mut fleet = Fleet::start(coap, "dev", DEVICES, 300);
    let all: Vec<usize> = (0..DEVICES).collect();
    let reports = fleet
        .wait_for(&all, WAIT, |e| registered(e).is_some())
        .await
        .unwrap_or_else(|(missing, _)| panic!("not registered: {missing:?}"));
    let locations: BTreeMap<usize, String> = reports
        .iter()
        .filter_map(|r| registered(&r.event).map(|l| (r.device, l.to_owned())))
        .collect();

    // Each 2.01 was sent after the store write: every registration is there, with its ID.
    let store = server.store();
    for (device, location) in &locations {
        let endpoint = &fleet.endpoints[*device];
        let stored = store
            .registration(endpoint)
            .expect("store read")
            .unwrap_or_else(|| panic!("{endpoint} acknowledged but not stored"));
        assert_eq!(stored.id, id_of(location), "{endpoint}");
        assert_eq!(stored.lifetime, 300);
        assert_eq!(server.registration(endpoint), Some(stored));
    }
    assert_eq!(store.registrations().expect("list").len(), DEVICES);
    drop(store);
    server.shutdown().await.expect("shutdown");

    // Restart on the same data directory and port: the registrations come back...
    config.coap_port = coap.port();
    let server = start(&config).await;
    assert_eq!(server.coap_addr(), coap);
    assert_eq!(server.restored(), DEVICES);
    assert_eq!(server.registration_count(), DEVICES);
    for (device, location) in &locations {
        let endpoint = &fleet.endpoints[*device];
        let held = server.registration(endpoint).map(|r| r.id);
        assert_eq!(
            held.as_deref(),
            Some(id_of(location)),
            "{endpoint} restored"
        );
    }

    // ...and the clients, which never noticed, are updated (2.04, not 4.04).
    let before: BTreeMap<String, u64> = server
        .store()
        .registrations()
        .expect("list")
        .into_iter()
        .map(|r| (r.endpoint, r.last_update_ms))
        .collect();
    tokio::time::sleep(Duration::from_millis(5)).await;
    fleet.update_all();
    let reports = fleet
        .wait_for(&all, WAIT, |e| {
            matches!(e, DeviceEvent::Registration(RegistrationEvent::Updated))
        })
        .await
        .unwrap_or_else(|(missing, seen)| panic!("no 2.04 for {missing:?}: {seen:?}"));
    assert!(
        !reports.iter().any(|r| matches!(
            r.event,
            DeviceEvent::Registration(RegistrationEvent::UpdateFailed { .. })
        )),
        "{reports:?}"
    );
    let store = server.store();
    for endpoint in &fleet.endpoints {
        let stored = store.registration(endpoint).expect("read").expect("stored");
        assert!(
            stored.last_update_ms > before[endpoint],
            "{endpoint}: Update persisted"
        );
    }

    // De-register: 2.02 only once the registration is gone from the store.
    fleet.command(0, |client, now| client.deregister(now));
    fleet
        .wait_for(&[0], WAIT, |e| {
            matches!(
                e,
                DeviceEvent::Registration(RegistrationEvent::Deregistered)
            )
        })
        .await
        .unwrap_or_else(|(_, seen)| panic!("no de-register: {seen:?}"));
    assert_eq!(store.registration(&fleet.endpoints[0]).expect("read"), None);
    assert_eq!(server.registration(&fleet.endpoints[0]), None);
    assert_eq!(store.registrations().expect("list").len(), DEVICES - 1);

    fleet.stop();
    drop(store);
    server.shutdown().await.expect("shutdown");
}

/// A plain CoAP stack on its own socket, for requests the simulated client does not make.
struct RawClient {
    handle: steward_transport::Handle<Stack<SocketAddr>>,
    responses: mpsc::UnboundedReceiver<Code>,
}

impl RawClient {
    fn new() -> RawClient {
        let (socket, _) = udp::bind(&UdpConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..UdpConfig::default()
        })
        .expect("bind");
        let (tx, responses) = mpsc::unbounded_channel();
        let (handle, _) = udp::spawn(
            socket,
            Stack::new(StackConfig::default()),
            move |_, _, ev| {
                if let Event::Response { response, .. } = ev {
                    let _ = tx.send(response.code);
                }
            },
        )
        .expect("spawn");
        RawClient { handle, responses }
    }

    async fn request(&mut self, server: SocketAddr, request: Request) -> Code {
        self.handle.command(move |stack, now| {
            stack.request(now, server, request, true);
        });
        tokio::time::timeout(WAIT, self.responses.recv())
            .await
            .ok()
            .flatten()
            .expect("a response")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsecured_registration_is_refused_by_default_and_unknown_paths_are_not_found() {
    let dir = TempDir::new("serve-nosec");
    let config = Config {
        allow_unsecured: false,
        ..config(&dir)
    };
    let server = start(&config).await;
    let coap = server.coap_addr();
    let mut raw = RawClient::new();

    let register = Request::new(Method::Post)
        .with_path("/rd")
        .with_query("ep=nosec")
        .with_query("lwm2m=1.1")
        .with_payload(40, b"</1/0>,</3/0>".to_vec());
    assert_eq!(raw.request(coap, register).await, Code::FORBIDDEN);
    assert_eq!(server.registration_count(), 0);
    assert!(server.store().registrations().expect("list").is_empty());

    for path in ["/3/0", "/bs", "/dp", "/"] {
        let get = Request::new(Method::Get).with_path(path);
        assert_eq!(raw.request(coap, get).await, Code::NOT_FOUND, "{path}");
    }
    // An Update for a registration nobody holds: 4.04 from the Registration interface.
    let update = Request::new(Method::Post).with_path("/rd/nope");
    assert_eq!(raw.request(coap, update).await, Code::NOT_FOUND);

    raw.handle.shutdown();
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_registrations_leave_memory_and_store() {
    let dir = TempDir::new("serve-expiry");
    let server = start(&config(&dir)).await;
    let mut fleet = Fleet::start(server.coap_addr(), "short", 2, 1);
    fleet
        .wait_for(&[0, 1], WAIT, |e| registered(e).is_some())
        .await
        .unwrap_or_else(|(missing, _)| panic!("not registered: {missing:?}"));
    // Stop the devices before they update: their 1 s lifetime runs out.
    fleet.stop();
    let store = server.store();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !store.registrations().expect("list").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "registrations not expired from the store"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(server.registration_count(), 0);
    drop(store);
    server.shutdown().await.expect("shutdown");
}

/// A CON `POST /rd?ep=EP&lwm2m=1.1` with a link-format payload, encoded by hand (message ID
/// 0x1234, no token) so that the DTLS client needs no CoAP stack.
fn register_datagram(ep: &str) -> Vec<u8> {
    let query = format!("ep={ep}");
    assert!(query.len() < 13, "one-byte option length");
    let mut d = vec![0x40, 0x02, 0x12, 0x34];
    d.extend([0xB2, b'r', b'd']); // Uri-Path (11) "rd"
    d.extend([0x11, 40]); // Content-Format (12) = 40, link format
    d.push(0x30 | query.len() as u8); // Uri-Query (15)
    d.extend(query.as_bytes());
    d.push(0x09); // Uri-Query again: "lwm2m=1.1"
    d.extend(b"lwm2m=1.1");
    d.push(0xFF);
    d.extend(b"</1/0>,</3/0>");
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psk_registration_over_dtls_uses_the_stored_key() {
    use std::sync::Arc;
    use steward::store::{Credential, SecurityInfo};
    use webrtc_dtls::cipher_suite::CipherSuiteId;
    use webrtc_dtls::config::{Config as DtlsClientConfig, ExtendedMasterSecretType};
    use webrtc_dtls::conn::DTLSConn;

    let dir = TempDir::new("serve-dtls");
    let config = Config {
        allow_unsecured: false,
        ..config(&dir)
    };
    let server = start(&config).await;
    let key = vec![0x42; 16];
    server
        .store()
        .put_security(&SecurityInfo {
            endpoint: "psk-dev".into(),
            credential: Credential::Psk {
                identity: b"psk-dev".to_vec(),
                key: key.clone(),
            },
        })
        .expect("provision");

    let connect = |identity: &'static [u8], key: Vec<u8>| {
        let coaps = server.coaps_addr();
        async move {
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("bind");
            socket.connect(coaps).await.expect("connect");
            let config = DtlsClientConfig {
                psk: Some(Arc::new(move |_hint: &[u8]| Ok(key.clone()))),
                psk_identity_hint: Some(identity.to_vec()),
                cipher_suites: vec![CipherSuiteId::Tls_Psk_With_Aes_128_Ccm_8],
                extended_master_secret: ExtendedMasterSecretType::Request,
                flight_interval: Duration::from_millis(300),
                ..DtlsClientConfig::default()
            };
            tokio::time::timeout(
                Duration::from_secs(10),
                DTLSConn::new(Arc::new(socket), config, true, None),
            )
            .await
        }
    };

    // An identity the store does not know never completes a handshake.
    let refused = connect(b"stranger", key.clone()).await;
    assert!(
        !matches!(refused, Ok(Ok(_))),
        "unknown PSK identity accepted"
    );

    let conn = connect(b"psk-dev", key)
        .await
        .expect("handshake in time")
        .expect("handshake with the stored key");
    conn.write(&register_datagram("psk-dev"), None)
        .await
        .expect("send Register");
    let mut buf = vec![0u8; 1500];
    // Skip an empty ACK, should the store write outlast separate_response_after.
    let code = loop {
        let n = tokio::time::timeout(WAIT, conn.read(&mut buf, None))
            .await
            .expect("a response in time")
            .expect("read");
        if n >= 2 && buf[1] != 0 {
            break buf[1];
        }
    };
    assert_eq!(code, 0x41, "2.01 Created");
    let stored = server
        .store()
        .registration("psk-dev")
        .expect("read")
        .expect("stored");
    assert_eq!(
        stored.identity,
        steward::registry::PeerIdentity::Psk(b"psk-dev".to_vec())
    );
    let _ = conn.close().await;
    server.shutdown().await.expect("shutdown");
}
