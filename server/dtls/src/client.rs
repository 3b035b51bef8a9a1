//! The client side: one webrtc-dtls client connection over its own UDP socket, for simulated
//! devices and tests.
//!
//! PSK (identity and key) or X.509 (a certificate chain and its P-256 key). In certificate
//! mode the server is checked by our callback rather than webrtc-dtls's rustls-webpki path
//! (which would also demand a host name in the certificate, and LwM2M clients address servers
//! by URI, often an IP literal): the server's leaf must either be one of the configured
//! certificates (pinned, e.g. a self-signed server certificate) or chain up to one of them as
//! a trust anchor ([`ChainVerifier`] with [`StrictPolicy`]). webrtc-dtls still checks the
//! ServerKeyExchange signature against the leaf's key, so the server holds that key.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use webrtc_dtls::cipher_suite::CipherSuiteId;
use webrtc_dtls::config::{Config, ExtendedMasterSecretType};
use webrtc_dtls::conn::DTLSConn;
use webrtc_dtls::crypto::Certificate;

use crate::config::ServerCertificate;
use crate::credentials::{ChainVerifier, StrictPolicy};
use crate::error::DtlsError;

/// A client's own certificate chain (leaf first) and P-256 key.
#[derive(Clone)]
pub struct ClientCertificate {
    inner: Arc<Certificate>,
}

impl ClientCertificate {
    /// `chain`: DER certificates, leaf first. `pkcs8_key`: DER PKCS#8 P-256 key.
    pub fn from_der(chain: Vec<Vec<u8>>, pkcs8_key: &[u8]) -> Result<Self, DtlsError> {
        ServerCertificate::from_der(chain, pkcs8_key).map(|c| Self {
            inner: Arc::new(c.inner),
        })
    }

    /// PEM: one or more CERTIFICATE blocks (leaf first) and a PRIVATE KEY block.
    pub fn from_pem(certificates_pem: &str, key_pem: &str) -> Result<Self, DtlsError> {
        ServerCertificate::from_pem(certificates_pem, key_pem).map(|c| Self {
            inner: Arc::new(c.inner),
        })
    }
}

/// How a handshake failure our server check caused begins, so that a caller can tell "this
/// server is not the one I trust" from a network failure in the error text it is given.
pub const SERVER_CERTIFICATE_REFUSED: &str = "server certificate refused";

/// How a client decides that the server's certificate is the right one.
#[derive(Clone)]
pub struct ServerTrust {
    certificates: Vec<Vec<u8>>,
    /// Accept any chain (see [`ServerTrust::judged_later`]).
    any: bool,
}

impl ServerTrust {
    /// DER certificates: each is both a pin (the server's leaf may equal it) and a trust
    /// anchor (the server's chain may end at it).
    pub fn new(certificates: Vec<Vec<u8>>) -> Self {
        Self {
            certificates,
            any: false,
        }
    }

    /// Completes the handshake with whatever certificate the server shows (it must still
    /// hold that certificate's key): for a caller that judges the chain itself once the
    /// session is up ([`ClientSession::peer_certificates`]) and limits what it accepts over
    /// an unauthenticated session accordingly, as a locked-in device in recovery mode does.
    pub fn judged_later() -> Self {
        Self {
            certificates: Vec::new(),
            any: true,
        }
    }

    /// Every CERTIFICATE block of a PEM text.
    pub fn from_pem(pem_text: &str) -> Result<Self, DtlsError> {
        let certificates = certificates_from_pem(pem_text)?;
        if certificates.is_empty() {
            return Err(DtlsError::Certificate("no CERTIFICATE in the PEM".into()));
        }
        Ok(Self::new(certificates))
    }

    /// Whether the server's chain (DER, leaf first) is trusted.
    pub fn verify(&self, chain: &[Vec<u8>]) -> Result<(), String> {
        let Some(leaf) = chain.first() else {
            return Err("server sent no certificate".into());
        };
        if self.any {
            return Ok(());
        }
        if self.certificates.iter().any(|c| c == leaf) {
            return Ok(());
        }
        ChainVerifier::new(self.certificates.clone(), Arc::new(StrictPolicy))
            .verify(chain)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The CERTIFICATE blocks of a PEM text, as DER.
pub fn certificates_from_pem(pem_text: &str) -> Result<Vec<Vec<u8>>, DtlsError> {
    Ok(pem::parse_many(pem_text)
        .map_err(|e| DtlsError::Certificate(format!("certificate PEM: {e}")))?
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .collect())
}

/// What a client authenticates with.
#[derive(Clone)]
pub enum ClientCredentials {
    Psk {
        identity: Vec<u8>,
        key: Vec<u8>,
    },
    Certificate {
        certificate: ClientCertificate,
        server: ServerTrust,
    },
}

/// Where and how a client connects.
#[derive(Clone)]
pub struct ClientConfig {
    pub server: SocketAddr,
    pub credentials: ClientCredentials,
    /// A handshake that has not completed after this long fails.
    pub handshake_timeout: Duration,
    /// Initial handshake retransmission interval.
    pub flight_interval: Duration,
    pub mtu: usize,
}

impl ClientConfig {
    pub fn new(server: SocketAddr, credentials: ClientCredentials) -> Self {
        Self {
            server,
            credentials,
            handshake_timeout: Duration::from_secs(10),
            flight_interval: Duration::from_secs(1),
            mtu: 1200,
        }
    }

    fn dtls_config(&self) -> Config {
        let mut config = Config {
            extended_master_secret: ExtendedMasterSecretType::Request,
            flight_interval: self.flight_interval,
            mtu: self.mtu,
            ..Config::default()
        };
        match &self.credentials {
            ClientCredentials::Psk { identity, key } => {
                let key = key.clone();
                config.psk = Some(Arc::new(move |_hint: &[u8]| Ok(key.clone())));
                config.psk_identity_hint = Some(identity.clone());
                config.cipher_suites = vec![
                    CipherSuiteId::Tls_Psk_With_Aes_128_Ccm_8,
                    CipherSuiteId::Tls_Psk_With_Aes_128_Ccm,
                ];
            }
            ClientCredentials::Certificate {
                certificate,
                server,
            } => {
                config.certificates = vec![(*certificate.inner).clone()];
                config.cipher_suites = vec![
                    CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_128_Ccm_8,
                    CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_128_Ccm,
                ];
                // The chain is checked by the callback (see the module docs).
                config.insecure_skip_verify = true;
                let server = server.clone();
                config.verify_peer_certificate = Some(Arc::new(move |chain: &[Vec<u8>], _| {
                    server.verify(chain).map_err(|reason| {
                        webrtc_dtls::Error::Other(format!("{SERVER_CERTIFICATE_REFUSED}: {reason}"))
                    })
                }));
            }
        }
        config
    }
}

/// An established client session.
pub struct ClientSession {
    conn: DTLSConn,
    local: SocketAddr,
    server: SocketAddr,
}

impl ClientSession {
    /// Binds a fresh UDP socket (an unspecified address of the server's family, port 0) and
    /// shakes hands with the server.
    pub async fn connect(config: &ClientConfig) -> Result<ClientSession, DtlsError> {
        let bind = match config.server {
            SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
            SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
        };
        let socket = UdpSocket::bind(bind).await?;
        socket.connect(config.server).await?;
        let local = socket.local_addr()?;
        let handshake = DTLSConn::new(Arc::new(socket), config.dtls_config(), true, None);
        let conn = tokio::time::timeout(config.handshake_timeout, handshake)
            .await
            .map_err(|_| DtlsError::HandshakeTimeout)??;
        Ok(ClientSession {
            conn,
            local,
            server: config.server,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn server_addr(&self) -> SocketAddr {
        self.server
    }

    /// The server's certificate chain as it sent it (DER, leaf first); empty over PSK.
    pub async fn peer_certificates(&self) -> Vec<Vec<u8>> {
        self.conn.connection_state().await.peer_certificates
    }

    /// Sends one datagram (a DTLS application-data record).
    pub async fn send(&self, datagram: &[u8]) -> Result<(), DtlsError> {
        self.conn.write(datagram, None).await?;
        Ok(())
    }

    /// Receives one datagram into `buf`. Cancel-safe. An error means the session is over
    /// (an alert from the server, or closed).
    pub async fn recv(&self, buf: &mut [u8]) -> Result<usize, DtlsError> {
        Ok(self.conn.read(buf, None).await?)
    }

    /// Sends close_notify and closes the socket.
    pub async fn close(&self) {
        let _ = self.conn.close().await;
    }
}
