//! Test support for interop runs: a Steward CoAP stack serving a few fixed resources on
//! loopback over UDP or DTLS, and a runner for external client processes with a time limit.
//!
//! Resources: `/` and `/hello` (text), `/echo` (POST/PUT: the body back), `/large` (4 KiB,
//! block-wise), `/counter` (observable, notified every 200 ms), `/whoami` (the authenticated
//! DTLS identity).

use std::net::SocketAddr;
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use steward_coap::endpoint::Event;
use steward_coap::message::{Code, Method, Request, Response};
use steward_coap::stack::{Stack, StackConfig};
use steward_dtls::{
    ChainVerifier, DtlsConfig, DtlsServer, MemoryCredentials, ServerCertificate, StrictPolicy,
};
use steward_transport::udp::{self, UdpConfig};
use steward_transport::{Commander, Handle};

/// The machine the test servers run.
pub type Server = Stack<SocketAddr>;

/// The 4 KiB body of `/large`: printable, position-dependent, so a misplaced block shows.
pub fn large_body() -> Vec<u8> {
    (0..4096u32).map(|i| b'a' + (i % 26) as u8).collect()
}

/// What the test server answers for everything but `/counter` and `/whoami`.
pub fn answer(request: &Request) -> Response {
    match (request.method, request.path_string().as_str()) {
        (Method::Get, "/") => Response::new(Code::CONTENT).with_payload(0, b"Steward".to_vec()),
        (Method::Get, "/hello") => {
            Response::new(Code::CONTENT).with_payload(0, b"Hello from Steward".to_vec())
        }
        (Method::Get, "/large") => Response::new(Code::CONTENT).with_payload(0, large_body()),
        (Method::Post | Method::Put, "/echo") => {
            Response::new(Code::CHANGED).with_payload(0, request.payload.clone())
        }
        (_, "/hello" | "/echo" | "/large") => Response::new(Code::METHOD_NOT_ALLOWED),
        _ => Response::new(Code::NOT_FOUND),
    }
}

fn counter_value(n: u64) -> Response {
    // One value per line: libcoap prints notification payloads back to back.
    Response::new(Code::CONTENT).with_payload(0, format!("{n}\n").into_bytes())
}

/// Handles one stack event the way both test servers do. `whoami` describes the peer.
fn serve(
    stack: &mut Server,
    now: Instant,
    event: Event<SocketAddr>,
    whoami: impl Fn(SocketAddr) -> String,
) {
    let Event::Request { id, request } = event else {
        return;
    };
    match request.path_string().as_str() {
        "/counter" if request.method == Method::Get => {
            let response = counter_value(0);
            if steward_coap::endpoint::is_observe_register(&request) {
                let _ = stack.observe_accept(now, id, "/counter", response);
            } else {
                let _ = stack.respond(now, id, response);
            }
        }
        "/whoami" => {
            let body = whoami(id.peer()).into_bytes();
            let _ = stack.respond(now, id, Response::new(Code::CONTENT).with_payload(0, body));
        }
        _ => {
            let _ = stack.respond(now, id, answer(&request));
        }
    }
}

/// Notifies `/counter` observers every 200 ms until the driver stops.
fn start_counter(commander: Commander<Server>) {
    tokio::spawn(async move {
        let mut n = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            n += 1;
            let value = n;
            let alive = commander.command(move |stack: &mut Server, now| {
                stack.notify_observers(now, "/counter", counter_value(value));
            });
            if !alive {
                return;
            }
        }
    });
}

/// Starts a plain-UDP Steward stack on 127.0.0.1 with a free port. Dropping the handle stops it.
pub async fn start_plain_server() -> std::io::Result<Handle<Server>> {
    let config = UdpConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..UdpConfig::default()
    };
    let (socket, _granted) = udp::bind(&config)?;
    let (handle, _task) = udp::spawn(
        socket,
        Stack::new(StackConfig::default()),
        |stack: &mut Server, now, event| {
            serve(stack, now, event, |_| "anonymous".to_owned());
        },
    )?;
    start_counter(handle.commander());
    Ok(handle)
}

/// Runs an external program with a time limit; it is killed if it overruns.
pub async fn run(program: &str, args: &[&str], limit: Duration) -> std::io::Result<Output> {
    let child = tokio::process::Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(limit, child).await {
        Ok(out) => out,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{program} did not finish within {limit:?}"),
        )),
    }
}

/// PSK credentials the DTLS test server knows.
pub const PSK_IDENTITY: &str = "steward-interop";
pub const PSK_KEY: &[u8] = b"interop-secret-16";

/// A throwaway PKI: a CA, a server certificate for `localhost`/127.0.0.1, and one client
/// certificate whose CN is the device's endpoint name. PEM for the external clients.
pub struct TestPki {
    pub ca_pem: String,
    pub ca_der: Vec<u8>,
    pub server: ServerCertificate,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

pub fn test_pki(client_cn: &str) -> Result<TestPki, rcgen::Error> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Steward Interop CA");
    let ca = ca_params.self_signed(&ca_key)?;
    let server_key = KeyPair::generate()?;
    let server_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    let server_cert = server_params.signed_by(&server_key, &ca, &ca_key)?;
    let client_key = KeyPair::generate()?;
    let mut client_params = CertificateParams::new(Vec::<String>::new())?;
    client_params
        .distinguished_name
        .push(DnType::CommonName, client_cn);
    let client_cert = client_params.signed_by(&client_key, &ca, &ca_key)?;
    let server = ServerCertificate::from_der(
        vec![server_cert.der().to_vec(), ca.der().to_vec()],
        &server_key.serialize_der(),
    )
    .map_err(|e| rcgen::Error::PemError(e.to_string()))?;
    Ok(TestPki {
        ca_pem: ca.pem(),
        ca_der: ca.der().to_vec(),
        server,
        client_cert_pem: client_cert.pem(),
        client_key_pem: client_key.serialize_pem(),
    })
}

/// Starts a CoAP-over-DTLS Steward stack on 127.0.0.1 with a free port: PSK always, and
/// certificates when `pki` is given. Dropping the handle stops it.
pub fn start_dtls_server(pki: Option<&TestPki>) -> Result<Handle<Server>, steward_dtls::DtlsError> {
    let mut config = DtlsConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)));
    let mut credentials = MemoryCredentials::new().with_psk(PSK_IDENTITY, PSK_KEY);
    if let Some(pki) = pki {
        config.certificate = Some(pki.server.clone());
        credentials = credentials.with_chain_verifier(ChainVerifier::new(
            vec![pki.ca_der.clone()],
            Arc::new(StrictPolicy),
        ));
    }
    let (server, inbound) = DtlsServer::bind(config, Arc::new(credentials))?;
    let (handle, _task) = steward_transport::dtls::spawn(
        server,
        inbound,
        Stack::new(StackConfig::default()),
        |stack: &mut Server, now, event, peers: &steward_transport::dtls::Peers| {
            serve(stack, now, event, |peer| {
                peers
                    .identity(peer)
                    .map(|i| describe(i))
                    .unwrap_or_default()
            });
        },
    );
    start_counter(handle.commander());
    Ok(handle)
}

/// `psk:<identity>` or `x509:<subject CN>`: short enough for one datagram.
pub fn describe(identity: &steward_dtls::Identity) -> String {
    match identity {
        steward_dtls::Identity::Psk { identity } => {
            format!("psk:{}", String::from_utf8_lossy(identity))
        }
        steward_dtls::Identity::X509 { common_name, .. } => {
            format!("x509:{}", common_name.as_deref().unwrap_or(""))
        }
    }
}
