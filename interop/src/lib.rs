//! Test support for interop runs: a Steward CoAP endpoint serving a few fixed resources on
//! loopback, and a runner for external client processes with a time limit.

use std::net::SocketAddr;
use std::process::Output;
use std::time::Duration;

use std::sync::Arc;
use steward_coap::endpoint::{Config, Endpoint, Event};
use steward_coap::message::{Code, Method, Request, Response};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use steward_dtls::{
    ChainVerifier, DtlsConfig, DtlsServer, MemoryCredentials, ServerCertificate, StrictPolicy,
};
use steward_transport::Handle;
use steward_transport::udp::{self, UdpConfig};

/// What the test server answers: `/hello` → text, `/echo` (POST/PUT) → the body back,
/// anything else → 4.04.
pub fn answer(request: &Request) -> Response {
    match (request.method, request.path_string().as_str()) {
        (Method::Get, "/") => Response::new(Code::CONTENT).with_payload(0, b"Steward".to_vec()),
        (Method::Get, "/hello") => {
            Response::new(Code::CONTENT).with_payload(0, b"Hello from Steward".to_vec())
        }
        (Method::Post | Method::Put, "/echo") => {
            Response::new(Code::CHANGED).with_payload(0, request.payload.clone())
        }
        (_, "/hello" | "/echo") => Response::new(Code::METHOD_NOT_ALLOWED),
        _ => Response::new(Code::NOT_FOUND),
    }
}

/// Starts a plain-UDP Steward endpoint on 127.0.0.1 with a free port. Dropping the handle
/// stops it.
pub async fn start_plain_server() -> std::io::Result<Handle<Endpoint<SocketAddr>>> {
    let config = UdpConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..UdpConfig::default()
    };
    let (socket, _granted) = udp::bind(&config)?;
    let endpoint = Endpoint::new(Config::default());
    let (handle, _task) = udp::spawn(
        socket,
        endpoint,
        |ep: &mut Endpoint<SocketAddr>, now, event| {
            if let Event::Request { id, request } = event {
                let _ = ep.respond(now, id, answer(&request));
            }
        },
    )?;
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

/// Starts a CoAP-over-DTLS Steward endpoint on 127.0.0.1 with a free port: PSK always, and
/// certificates when `pki` is given. Dropping the handle stops it.
pub fn start_dtls_server(
    pki: Option<&TestPki>,
) -> Result<Handle<Endpoint<SocketAddr>>, steward_dtls::DtlsError> {
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
    let endpoint = Endpoint::new(Config::default());
    let (handle, _task) = steward_transport::dtls::spawn(
        server,
        inbound,
        endpoint,
        |ep: &mut Endpoint<SocketAddr>, now, event, peers: &steward_transport::dtls::Peers| {
            if let Event::Request { id, request } = event {
                let response = match request.path_string().as_str() {
                    // Tells the client who the server thinks it is: the authenticated identity.
                    "/whoami" => Response::new(Code::CONTENT).with_payload(
                        0,
                        peers
                            .identity(id.peer())
                            .map(|i| describe(i))
                            .unwrap_or_default()
                            .into_bytes(),
                    ),
                    _ => answer(&request),
                };
                let _ = ep.respond(now, id, response);
            }
        },
    );
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
