//! `steward serve` in-process with `steward_client` devices over DTLS on 127.0.0.1: PSK with
//! the key in the store (registered, then read through `devices()`; registered again after a
//! server restart through a new handshake), mutual X.509 with a device certificate from the
//! configured CA (the server's certificate generated in the data directory and pinned by the
//! device), a certificate whose CN is not the endpoint name (4.03), and a certificate from
//! another CA (handshake refused).

mod fleet;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use fleet::TempDir;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use steward::config::Config;
use steward::dm::{DownlinkRequest, DownlinkResponse};
use steward::registry::PeerIdentity;
use steward::runtime::{self, RunningServer};
use steward::store::{Credential, SecurityInfo};
use steward_client::dtls::DtlsEvent;
use steward_client::registration::RegistrationEvent;
use steward_client::{Client, DeviceConfig, DeviceEvent};
use steward_coap::endpoint::Config as EndpointConfig;
use steward_coap::message::Code;
use steward_coap::stack::StackConfig;
use steward_dtls::{ClientCertificate, ClientConfig, ClientCredentials, ServerTrust};
use steward_objects::{Node, Path, Version};
use steward_transport::Handle;
use steward_transport::dtls_client::{Backoff, LinkEvent};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(15);

/// A CA: its certificate (PEM and the rcgen object to sign with) and key.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca { cert, key }
    }

    /// A device certificate with this CN, and its key.
    fn issue(&self, common_name: &str) -> ClientCertificate {
        let key = KeyPair::generate().expect("device key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("device certificate");
        ClientCertificate::from_der(vec![cert.der().to_vec()], &key.serialize_der())
            .expect("client certificate")
    }

    fn write(&self, dir: &TempDir) -> PathBuf {
        let path = dir.path().join("device-ca.pem");
        std::fs::write(&path, self.cert.pem()).expect("write CA");
        path
    }
}

fn config(dir: &TempDir, device_cas: Vec<PathBuf>) -> Config {
    Config {
        coap_port: 0,
        coaps_port: 0,
        bs_coap_port: 0,
        bs_coaps_port: 0,
        http_port: 0,
        data_dir: dir.path().join("data"),
        allow_unsecured: false,
        device_cas,
        ..Config::default()
    }
}

async fn start(config: &Config) -> RunningServer {
    runtime::start(config)
        .await
        .unwrap_or_else(|e| panic!("start: {e}"))
}

/// Starts a DTLS device; its events arrive on the receiver.
fn device(
    server: SocketAddr,
    endpoint: &str,
    credentials: ClientCredentials,
) -> (
    Handle<Client<SocketAddr>>,
    mpsc::UnboundedReceiver<DtlsEvent>,
) {
    let mut config = DeviceConfig::new(endpoint, Version::V1_1);
    config.server_uri = format!("coaps://{server}");
    config.lifetime = 300;
    let stack = StackConfig {
        endpoint: EndpointConfig {
            seed: endpoint.len() as u64,
            // Give up on an unanswered request fast (the restart test relies on it).
            ack_timeout: Duration::from_millis(300),
            max_retransmit: 1,
            ..EndpointConfig::default()
        },
        ..StackConfig::default()
    };
    let client = Client::new(config, stack, server);
    let mut dtls = ClientConfig::new(server, credentials);
    dtls.flight_interval = Duration::from_millis(300);
    dtls.handshake_timeout = Duration::from_secs(3);
    let backoff = Backoff {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(1),
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let (handle, _task) = steward_client::dtls::spawn(dtls, backoff, client, move |_, _, e| {
        let _ = tx.send(e);
    });
    (handle, rx)
}

/// Waits for an event matching `want`; panics with what was seen instead.
async fn wait_for(
    rx: &mut mpsc::UnboundedReceiver<DtlsEvent>,
    what: &str,
    want: impl Fn(&DtlsEvent) -> bool,
) -> DtlsEvent {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        while let Some(event) = rx.recv().await {
            if want(&event) {
                return Some(event);
            }
            seen.push(event);
        }
        None
    })
    .await;
    match found {
        Ok(Some(event)) => event,
        _ => panic!("no {what}; seen {seen:?}"),
    }
}

fn is_registered(e: &DtlsEvent) -> bool {
    matches!(
        e,
        DtlsEvent::Device(DeviceEvent::Registration(
            RegistrationEvent::Registered { .. }
        ))
    )
}

async fn read_device_object(server: &RunningServer, endpoint: &str) {
    let read = DownlinkRequest::Read {
        path: Path::Instance(3, 0),
        format: None,
    };
    match server.devices().request(endpoint, read, WAIT).await {
        Ok(DownlinkResponse::Read {
            node: Some(Node::Instance(instance)),
            ..
        }) => assert!(instance.resources.contains_key(&0), "{instance:?}"),
        other => panic!("read /3/0 of {endpoint}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psk_device_registers_is_read_and_registers_again_after_a_restart() {
    let dir = TempDir::new("serve-dtls-psk");
    let mut config = config(&dir, Vec::new());
    let server = start(&config).await;
    let key = vec![0x5a; 16];
    server
        .store()
        .put_security(&SecurityInfo {
            endpoint: "psk-sim".into(),
            credential: Credential::Psk {
                identity: b"psk-sim".to_vec(),
                key: key.clone(),
            },
        })
        .expect("provision");

    let coaps = server.coaps_addr();
    let credentials = ClientCredentials::Psk {
        identity: b"psk-sim".to_vec(),
        key,
    };
    let (handle, mut events) = device(coaps, "psk-sim", credentials);
    wait_for(&mut events, "registration", is_registered).await;
    let stored = server.registration("psk-sim").expect("registered");
    assert_eq!(stored.identity, PeerIdentity::Psk(b"psk-sim".to_vec()));
    read_device_object(&server, "psk-sim").await;

    // The server restarts on the same port: the device's session is gone with it. Its next
    // Update goes unanswered, so it shakes hands again and registers again.
    server.shutdown().await.expect("shutdown");
    config.coaps_port = coaps.port();
    let server = start(&config).await;
    handle.command(|client, now| {
        client.device.registration_mut().trigger_update();
        client.handle_timeout(now);
    });
    wait_for(&mut events, "a new session", |e| {
        matches!(
            e,
            DtlsEvent::Link(LinkEvent::Connected {
                reconnect: true,
                ..
            })
        )
    })
    .await;
    wait_for(&mut events, "registration again", is_registered).await;
    read_device_object(&server, "psk-sim").await;

    handle.shutdown();
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_device_from_the_configured_ca_registers_with_mutual_authentication() {
    let dir = TempDir::new("serve-dtls-x509");
    let ca = Ca::new("Steward Test Device CA");
    let server = start(&config(&dir, vec![ca.write(&dir)])).await;

    // The server generated its certificate into the data directory; the device pins it.
    let pinned = std::fs::read_to_string(steward::tls::generated_certificate_path(
        &dir.path().join("data"),
    ))
    .expect("generated server certificate");
    let credentials = ClientCredentials::Certificate {
        certificate: ca.issue("x509-sim"),
        server: ServerTrust::from_pem(&pinned).expect("server trust"),
    };
    let (handle, mut events) = device(server.coaps_addr(), "x509-sim", credentials);
    wait_for(&mut events, "registration", is_registered).await;
    let stored = server.registration("x509-sim").expect("registered");
    assert_eq!(
        stored.identity,
        PeerIdentity::X509 {
            common_name: "x509-sim".into()
        }
    );
    read_device_object(&server, "x509-sim").await;

    // A device that trusts another server certificate refuses this one.
    let other = Ca::new("Not The Server");
    let credentials = ClientCredentials::Certificate {
        certificate: ca.issue("wary-sim"),
        server: ServerTrust::new(vec![other.cert.der().to_vec()]),
    };
    let (wary, mut wary_events) = device(server.coaps_addr(), "wary-sim", credentials);
    let failed = wait_for(&mut wary_events, "a failed handshake", |e| {
        matches!(e, DtlsEvent::Link(LinkEvent::HandshakeFailed { .. }))
    })
    .await;
    assert!(
        format!("{failed:?}").contains("server certificate"),
        "{failed:?}"
    );
    assert_eq!(server.registration("wary-sim"), None);

    wary.shutdown();
    handle.shutdown();
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_cn_other_than_the_endpoint_name_is_refused() {
    let dir = TempDir::new("serve-dtls-cn");
    let ca = Ca::new("Steward Test Device CA");
    let server = start(&config(&dir, vec![ca.write(&dir)])).await;
    let pinned = std::fs::read_to_string(steward::tls::generated_certificate_path(
        &dir.path().join("data"),
    ))
    .expect("generated server certificate");
    let credentials = ClientCredentials::Certificate {
        certificate: ca.issue("someone-else"),
        server: ServerTrust::from_pem(&pinned).expect("server trust"),
    };
    let (handle, mut events) = device(server.coaps_addr(), "cn-sim", credentials);
    // The handshake succeeds (the chain is good); the Register is refused.
    wait_for(&mut events, "a session", |e| {
        matches!(e, DtlsEvent::Link(LinkEvent::Connected { .. }))
    })
    .await;
    wait_for(&mut events, "4.03", |e| {
        matches!(
            e,
            DtlsEvent::Device(DeviceEvent::Registration(
                RegistrationEvent::RegisterFailed {
                    code: Some(Code::FORBIDDEN),
                    ..
                }
            ))
        )
    })
    .await;
    assert_eq!(server.registration("cn-sim"), None);
    assert_eq!(server.registration("someone-else"), None);
    assert_eq!(server.registration_count(), 0);

    handle.shutdown();
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_another_ca_fails_the_handshake() {
    let dir = TempDir::new("serve-dtls-other-ca");
    let trusted = Ca::new("Steward Test Device CA");
    let server = start(&config(&dir, vec![trusted.write(&dir)])).await;
    let pinned = std::fs::read_to_string(steward::tls::generated_certificate_path(
        &dir.path().join("data"),
    ))
    .expect("generated server certificate");
    let stranger = Ca::new("Steward Test Device CA"); // same name, other key
    let credentials = ClientCredentials::Certificate {
        certificate: stranger.issue("rogue-sim"),
        server: ServerTrust::from_pem(&pinned).expect("server trust"),
    };
    let (handle, mut events) = device(server.coaps_addr(), "rogue-sim", credentials);
    wait_for(&mut events, "a failed handshake", |e| {
        matches!(e, DtlsEvent::Link(LinkEvent::HandshakeFailed { .. }))
    })
    .await;
    // And it keeps failing: no session, no registration.
    wait_for(&mut events, "a second failed handshake", |e| {
        matches!(e, DtlsEvent::Link(LinkEvent::HandshakeFailed { .. }))
    })
    .await;
    assert_eq!(server.registration_count(), 0);

    handle.shutdown();
    server.shutdown().await.expect("shutdown");
}
