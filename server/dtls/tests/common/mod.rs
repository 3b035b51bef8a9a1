//! Test helpers: servers, webrtc-dtls clients, a test PKI, crafted ClientHellos.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls_pki_types::CertificateDer;
use steward_dtls::{
    ChainVerifier, DtlsConfig, DtlsServer, Inbound, MemoryCredentials, Metrics, ServerCertificate,
    StrictPolicy,
};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use webrtc_dtls::cipher_suite::CipherSuiteId;
use webrtc_dtls::config::{Config, ExtendedMasterSecretType};
use webrtc_dtls::conn::DTLSConn;
use webrtc_dtls::crypto::{Certificate, CryptoPrivateKey};

pub const PSK_ID: &[u8] = b"dev-psk-1";
pub const PSK_KEY: &[u8] = &[0x11; 16];
pub const WAIT: Duration = Duration::from_secs(20);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A CA, a server certificate and a client certificate (CN = `client_cn`) under it.
pub struct TestPki {
    pub ca_der: Vec<u8>,
    pub server: ServerCertificate,
    pub client_chain: Vec<Vec<u8>>,
    pub client_key: KeyPair,
}

pub fn test_pki(client_cn: &str) -> TestPki {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Steward Test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca");

    let server_key = KeyPair::generate().expect("server key");
    let server_params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    let server_cert = server_params
        .signed_by(&server_key, &ca, &ca_key)
        .expect("server cert");

    let client_key = KeyPair::generate().expect("client key");
    let mut client_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    client_params
        .distinguished_name
        .push(DnType::CommonName, client_cn);
    let client_cert = client_params
        .signed_by(&client_key, &ca, &ca_key)
        .expect("client cert");

    TestPki {
        ca_der: ca.der().to_vec(),
        server: ServerCertificate::from_der(
            vec![server_cert.der().to_vec(), ca.der().to_vec()],
            &server_key.serialize_der(),
        )
        .expect("server certificate"),
        client_chain: vec![client_cert.der().to_vec()],
        client_key,
    }
}

pub fn base_config() -> DtlsConfig {
    let mut config = DtlsConfig::new("127.0.0.1:0".parse().expect("addr"));
    config.socket_buffer = Some(4 * 1024 * 1024);
    config
}

pub fn psk_server(config: DtlsConfig) -> (DtlsServer, mpsc::Receiver<Inbound>) {
    let creds = MemoryCredentials::new().with_psk(PSK_ID, PSK_KEY);
    DtlsServer::bind(config, Arc::new(creds)).expect("bind")
}

pub fn pki_server(pki: &TestPki) -> (DtlsServer, mpsc::Receiver<Inbound>) {
    let mut config = base_config();
    config.certificate = Some(pki.server.clone());
    let creds = MemoryCredentials::new()
        .with_psk(PSK_ID, PSK_KEY)
        .with_chain_verifier(ChainVerifier::new(
            vec![pki.ca_der.clone()],
            Arc::new(StrictPolicy),
        ));
    DtlsServer::bind(config, Arc::new(creds)).expect("bind")
}

pub async fn client_socket(server: SocketAddr) -> Arc<UdpSocket> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind client");
    socket.connect(server).await.expect("connect");
    Arc::new(socket)
}

pub fn psk_client_config(identity: &[u8], key: &[u8]) -> Config {
    let key = key.to_vec();
    Config {
        psk: Some(Arc::new(move |_hint: &[u8]| Ok(key.clone()))),
        psk_identity_hint: Some(identity.to_vec()),
        cipher_suites: vec![CipherSuiteId::Tls_Psk_With_Aes_128_Ccm_8],
        extended_master_secret: ExtendedMasterSecretType::Request,
        flight_interval: Duration::from_millis(300),
        ..Config::default()
    }
}

pub fn cert_client_config(chain: &[Vec<u8>], key: &KeyPair) -> Config {
    Config {
        certificates: vec![Certificate {
            certificate: chain.iter().cloned().map(CertificateDer::from).collect(),
            private_key: CryptoPrivateKey::from_key_pair(key).expect("client key"),
        }],
        cipher_suites: vec![CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_128_Ccm_8],
        // The server certificate is not what these tests are about.
        insecure_skip_verify: true,
        extended_master_secret: ExtendedMasterSecretType::Request,
        flight_interval: Duration::from_millis(300),
        ..Config::default()
    }
}

pub async fn connect(socket: Arc<UdpSocket>, config: Config) -> Result<DTLSConn, String> {
    match tokio::time::timeout(WAIT, DTLSConn::new(socket, config, true, None)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("client handshake timed out".into()),
    }
}

pub async fn recv_inbound(rx: &mut mpsc::Receiver<Inbound>) -> Inbound {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("inbound in time")
        .expect("inbound channel open")
}

pub async fn client_read(conn: &DTLSConn) -> Vec<u8> {
    let mut buf = vec![0u8; 2048];
    let n = tokio::time::timeout(WAIT, conn.read(&mut buf, None))
        .await
        .expect("client read in time")
        .expect("client read");
    buf.truncate(n);
    buf
}

/// Polls the server's metrics until `cond` holds (generous timeout, no timing asserts).
pub async fn wait_metrics(
    server: &DtlsServer,
    what: &str,
    cond: impl Fn(&Metrics) -> bool,
) -> Metrics {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let m = server.metrics();
        if cond(&m) {
            return m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A minimal ClientHello datagram: PSK CCM_8 only, no extensions.
pub fn crafted_client_hello(
    record_version: [u8; 2],
    message_seq: u16,
    random: [u8; 32],
    cookie: &[u8],
) -> Vec<u8> {
    let mut body = vec![0xfe, 0xfd];
    body.extend_from_slice(&random);
    body.push(0);
    body.push(cookie.len() as u8);
    body.extend_from_slice(cookie);
    body.extend_from_slice(&[0, 2, 0xc0, 0xa8]);
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&[0, 0]); // empty extensions
    let len = body.len() as u32;
    let mut hs = vec![1u8];
    hs.extend_from_slice(&len.to_be_bytes()[1..]);
    hs.extend_from_slice(&message_seq.to_be_bytes());
    hs.extend_from_slice(&[0, 0, 0]);
    hs.extend_from_slice(&len.to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![
        22,
        record_version[0],
        record_version[1],
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ];
    rec.push(message_seq as u8);
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// The cookie of a HelloVerifyRequest datagram.
pub fn hvr_cookie(datagram: &[u8]) -> Option<Vec<u8>> {
    if datagram.first() != Some(&22) || datagram.get(13) != Some(&3) {
        return None;
    }
    let len = usize::from(*datagram.get(13 + 12 + 2)?);
    Some(datagram.get(13 + 12 + 3..13 + 12 + 3 + len)?.to_vec())
}

/// Drives the cookie exchange by hand and leaves a handshake hanging on the server.
pub async fn stalled_handshake(server: SocketAddr, random: [u8; 32]) -> Arc<UdpSocket> {
    let socket = client_socket(server).await;
    socket
        .send(&crafted_client_hello([0xfe, 0xfd], 0, random, &[]))
        .await
        .expect("send");
    let mut buf = vec![0u8; 2048];
    let n = tokio::time::timeout(WAIT, socket.recv(&mut buf))
        .await
        .expect("HelloVerifyRequest in time")
        .expect("recv");
    let cookie = hvr_cookie(&buf[..n]).expect("HelloVerifyRequest");
    socket
        .send(&crafted_client_hello([0xfe, 0xfd], 1, random, &cookie))
        .await
        .expect("send");
    socket
}
