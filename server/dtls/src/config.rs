//! Transport configuration.

use std::net::SocketAddr;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use webrtc_dtls::crypto::{Certificate, CryptoPrivateKey};

use crate::error::DtlsError;

/// Configuration of a [`crate::DtlsServer`]. Start from [`DtlsConfig::new`] and change fields.
#[derive(Clone)]
pub struct DtlsConfig {
    pub bind: SocketAddr,
    /// Offer PSK suites (keys come from [`crate::Credentials::psk`]).
    pub psk: bool,
    /// Sent in ServerKeyExchange when set; LwM2M does not use it.
    pub psk_identity_hint: Option<Vec<u8>>,
    /// Offer ECDHE_ECDSA suites with this certificate (client certificates are required
    /// and verified by [`crate::Credentials::verify_client_chain`]).
    pub certificate: Option<ServerCertificate>,
    /// A handshake that has not completed after this long is abandoned and its state freed.
    pub handshake_timeout: Duration,
    /// An established session with no datagram from the peer for this long is evicted.
    pub idle_timeout: Duration,
    /// Handshakes in progress at once; further (cookie-valid) ClientHellos are dropped.
    pub max_handshakes: usize,
    /// SO_RCVBUF and SO_SNDBUF requested for the socket (the kernel may grant less; the
    /// granted value is logged). `None` keeps the system default.
    pub socket_buffer: Option<usize>,
    /// Handshake flights are fragmented to this size.
    pub mtu: usize,
    /// Initial handshake retransmission interval of webrtc-dtls.
    pub flight_interval: Duration,
    /// Capacity of the channel of received application datagrams.
    pub inbound_queue: usize,
    /// Datagrams queued per peer before the demultiplexer drops (UDP semantics).
    pub per_peer_queue: usize,
    /// The cookie secret rotates this often; a cookie is valid for one to two periods.
    pub cookie_rotation: Duration,
}

impl DtlsConfig {
    pub fn new(bind: SocketAddr) -> Self {
        Self {
            bind,
            psk: true,
            psk_identity_hint: None,
            certificate: None,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max_handshakes: 256,
            socket_buffer: Some(4 * 1024 * 1024),
            mtu: 1200,
            flight_interval: Duration::from_secs(1),
            inbound_queue: 1024,
            per_peer_queue: 64,
            cookie_rotation: Duration::from_secs(60),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), DtlsError> {
        if !self.psk && self.certificate.is_none() {
            return Err(DtlsError::Config(
                "neither PSK nor a certificate is enabled".into(),
            ));
        }
        if self.max_handshakes == 0 || self.inbound_queue == 0 || self.per_peer_queue == 0 {
            return Err(DtlsError::Config("queue sizes and caps must be > 0".into()));
        }
        if self.handshake_timeout.is_zero() || self.idle_timeout.is_zero() {
            return Err(DtlsError::Config("timeouts must be > 0".into()));
        }
        Ok(())
    }
}

/// The server's certificate chain and P-256 private key.
#[derive(Clone)]
pub struct ServerCertificate {
    pub(crate) inner: Certificate,
}

impl ServerCertificate {
    /// `chain`: DER certificates, server first. `pkcs8_key`: DER PKCS#8 P-256 key.
    pub fn from_der(chain: Vec<Vec<u8>>, pkcs8_key: &[u8]) -> Result<Self, DtlsError> {
        if chain.is_empty() {
            return Err(DtlsError::Certificate("empty certificate chain".into()));
        }
        let key_pair = rcgen::KeyPair::try_from(pkcs8_key)
            .map_err(|e| DtlsError::Certificate(format!("private key: {e}")))?;
        Self::from_key_pair(chain, &key_pair)
    }

    /// PEM: one or more CERTIFICATE blocks (server first) and a PRIVATE KEY block.
    pub fn from_pem(certificates_pem: &str, key_pem: &str) -> Result<Self, DtlsError> {
        let chain: Vec<Vec<u8>> = pem::parse_many(certificates_pem)
            .map_err(|e| DtlsError::Certificate(format!("certificate PEM: {e}")))?
            .into_iter()
            .filter(|p| p.tag() == "CERTIFICATE")
            .map(|p| p.into_contents())
            .collect();
        let key_pair = rcgen::KeyPair::from_pem(key_pem)
            .map_err(|e| DtlsError::Certificate(format!("private key PEM: {e}")))?;
        Self::from_key_pair(chain, &key_pair)
    }

    fn from_key_pair(chain: Vec<Vec<u8>>, key_pair: &rcgen::KeyPair) -> Result<Self, DtlsError> {
        if chain.is_empty() {
            return Err(DtlsError::Certificate("no CERTIFICATE found".into()));
        }
        // LwM2M (Transport §5.2.3) mandates secp256r1; webrtc-dtls also takes Ed25519,
        // which no LwM2M client would accept.
        if key_pair.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            return Err(DtlsError::Certificate("key is not ECDSA P-256".into()));
        }
        let private_key = CryptoPrivateKey::from_key_pair(key_pair)
            .map_err(|e| DtlsError::Certificate(e.to_string()))?;
        Ok(Self {
            inner: Certificate {
                certificate: chain.into_iter().map(CertificateDer::from).collect(),
                private_key,
            },
        })
    }
}
