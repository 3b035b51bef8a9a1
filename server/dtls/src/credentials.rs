//! Who a peer is: the credential look-up trait, the authenticated identity handed to the
//! layer above, and a chain verifier for device certificates.
//!
//! Certificate chains are verified here rather than by webrtc-dtls: webrtc-dtls would use
//! rustls-webpki, which rejects X.509 v1 certificates, and real device fleets still carry
//! v1 factory certificates. The server runs webrtc-dtls with `RequireAnyClientCert` (it
//! still checks the CertificateVerify signature, i.e. possession of the leaf key) and
//! calls [`Credentials::verify_client_chain`] from its verify callback.

use std::collections::HashMap;
use std::sync::Arc;

use thiserror::Error;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Version;

/// The authenticated identity of a DTLS peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// PSK mode: the PSK identity the client sent.
    Psk { identity: Vec<u8> },
    /// Certificate mode: the leaf's subject CN (LwM2M puts the endpoint name there) and the
    /// chain as the client sent it (DER, leaf first).
    X509 {
        common_name: Option<String>,
        chain: Vec<Vec<u8>>,
    },
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CredentialError {
    #[error("unknown PSK identity")]
    UnknownPskIdentity,
    #[error("client sent no certificate")]
    NoCertificate,
    #[error("certificate {index} in the chain is not valid DER X.509: {reason}")]
    Malformed { index: usize, reason: String },
    #[error("certificate {index} is outside its validity period")]
    Expired { index: usize },
    #[error("certificate {index} is X.509 v1 and not pinned by policy")]
    UnpinnedV1 { index: usize },
    #[error("certificate {index} is used as an issuer but is not a CA")]
    NotCa { index: usize },
    #[error("certificate {index} has a bad signature")]
    BadSignature { index: usize },
    #[error("chain does not end at a configured trust anchor")]
    UnknownIssuer,
    #[error("chain longer than {0} certificates")]
    TooLong(usize),
    #[error("certificates are not configured")]
    CertificatesNotConfigured,
    #[error("rejected by policy: {0}")]
    Policy(String),
}

/// Credential look-up, implemented by the server's security store.
pub trait Credentials: Send + Sync + 'static {
    /// The key for a PSK identity, or `None` if unknown.
    fn psk(&self, identity: &[u8]) -> Option<Vec<u8>>;
    /// Verifies a client certificate chain (DER, leaf first) and names its owner.
    fn verify_client_chain(&self, chain: &[Vec<u8>]) -> Result<Identity, CredentialError>;
}

/// Extra rules on top of chain verification.
pub trait CertificatePolicy: Send + Sync + 'static {
    /// Whether this X.509 v1 leaf certificate is accepted (e.g. pinned by fingerprint).
    /// v1 certificates carry no extensions, so nothing in them limits their use.
    fn accept_v1_leaf(&self, _leaf_der: &[u8]) -> bool {
        false
    }
    /// Last word on a chain that verified.
    fn check(&self, _identity: &Identity) -> Result<(), CredentialError> {
        Ok(())
    }
}

/// The default policy: no v1 certificates, nothing else.
pub struct StrictPolicy;
impl CertificatePolicy for StrictPolicy {}

/// Pins v1 leaf certificates by exact DER match.
pub struct PinnedV1Policy {
    pub pinned: Vec<Vec<u8>>,
}
impl CertificatePolicy for PinnedV1Policy {
    fn accept_v1_leaf(&self, leaf_der: &[u8]) -> bool {
        self.pinned.iter().any(|p| p == leaf_der)
    }
}

const MAX_CHAIN: usize = 6;

/// Verifies client chains against configured CA certificates.
pub struct ChainVerifier {
    trust_anchors: Vec<Vec<u8>>,
    policy: Arc<dyn CertificatePolicy>,
}

impl ChainVerifier {
    /// `trust_anchors`: DER CA certificates. They are trusted as given (not re-verified).
    pub fn new(trust_anchors: Vec<Vec<u8>>, policy: Arc<dyn CertificatePolicy>) -> Self {
        Self {
            trust_anchors,
            policy,
        }
    }

    pub fn verify(&self, chain: &[Vec<u8>]) -> Result<Identity, CredentialError> {
        if chain.is_empty() {
            return Err(CredentialError::NoCertificate);
        }
        if chain.len() > MAX_CHAIN {
            return Err(CredentialError::TooLong(MAX_CHAIN));
        }
        let certs = chain
            .iter()
            .enumerate()
            .map(|(index, der)| parse(der, index))
            .collect::<Result<Vec<_>, _>>()?;
        let anchors: Vec<X509Certificate<'_>> = self
            .trust_anchors
            .iter()
            .filter_map(|der| X509Certificate::from_der(der).ok().map(|(_, c)| c))
            .collect();

        for (index, cert) in certs.iter().enumerate() {
            if !cert.validity().is_valid() {
                return Err(CredentialError::Expired { index });
            }
            if cert.version() == X509Version::V1 {
                let leaf_pinned = index == 0 && self.policy.accept_v1_leaf(&chain[0]);
                if !leaf_pinned {
                    return Err(CredentialError::UnpinnedV1 { index });
                }
            }
            if index > 0 && !is_ca(cert) {
                return Err(CredentialError::NotCa { index });
            }
            // Does a trust anchor issue this certificate? Then the chain is complete.
            let anchored = anchors.iter().any(|anchor| {
                anchor.subject() == cert.issuer()
                    && cert.verify_signature(Some(anchor.public_key())).is_ok()
            });
            if anchored {
                let identity = Identity::X509 {
                    common_name: common_name(&certs[0]),
                    chain: chain.to_vec(),
                };
                self.policy.check(&identity)?;
                return Ok(identity);
            }
            // Otherwise the next certificate in the chain must be its issuer.
            let Some(issuer) = certs.get(index + 1) else {
                return Err(CredentialError::UnknownIssuer);
            };
            if issuer.subject() != cert.issuer() {
                return Err(CredentialError::UnknownIssuer);
            }
            if cert.verify_signature(Some(issuer.public_key())).is_err() {
                return Err(CredentialError::BadSignature { index });
            }
        }
        Err(CredentialError::UnknownIssuer)
    }
}

fn parse(der: &[u8], index: usize) -> Result<X509Certificate<'_>, CredentialError> {
    match X509Certificate::from_der(der) {
        Ok((&[], cert)) => Ok(cert),
        Ok(_) => Err(CredentialError::Malformed {
            index,
            reason: "trailing bytes".into(),
        }),
        Err(e) => Err(CredentialError::Malformed {
            index,
            reason: e.to_string(),
        }),
    }
}

fn is_ca(cert: &X509Certificate<'_>) -> bool {
    matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca)
}

fn common_name(cert: &X509Certificate<'_>) -> Option<String> {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}

/// In-memory credentials: a PSK table and an optional chain verifier. Enough for tests
/// and small deployments; the server proper implements [`Credentials`] over its store.
#[derive(Default)]
pub struct MemoryCredentials {
    psks: HashMap<Vec<u8>, Vec<u8>>,
    verifier: Option<ChainVerifier>,
}

impl MemoryCredentials {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with_psk(mut self, identity: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.psks.insert(identity.into(), key.into());
        self
    }
    pub fn with_chain_verifier(mut self, verifier: ChainVerifier) -> Self {
        self.verifier = Some(verifier);
        self
    }
}

impl Credentials for MemoryCredentials {
    fn psk(&self, identity: &[u8]) -> Option<Vec<u8>> {
        self.psks.get(identity).cloned()
    }
    fn verify_client_chain(&self, chain: &[Vec<u8>]) -> Result<Identity, CredentialError> {
        self.verifier
            .as_ref()
            .ok_or(CredentialError::CertificatesNotConfigured)?
            .verify(chain)
    }
}
