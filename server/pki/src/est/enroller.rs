//! The seams: who is asking ([`EstClient`]), what the server decides ([`Enroller`]), how
//! certificates and keys are packed ([`EstEncoder`]), and how a refusal is typed
//! ([`EstRefusal`]).

use std::fmt;
use std::sync::Arc;

use steward_coap::message::Code;

/// The authenticated DTLS identity of the peer, as the transport reported it. Mirrors
/// `steward_dtls::Identity` without depending on that crate.
#[derive(Clone, PartialEq, Eq)]
pub enum EstClient {
    /// PSK mode: the PSK identity the client sent (LwM2M bootstrap sessions are often PSK; the
    /// Enroller then binds the CSR subject to this identity, standards.md §1.11).
    Psk { identity: Vec<u8> },
    /// Certificate mode: the leaf's subject CN and the chain as the client sent it (DER, leaf
    /// first). The chain has been verified by the DTLS layer against its trust store.
    Certificate {
        common_name: Option<String>,
        chain: Vec<Vec<u8>>,
    },
}

impl EstClient {
    /// True for certificate-authenticated clients (required by `/sren`).
    pub fn has_certificate(&self) -> bool {
        matches!(self, EstClient::Certificate { .. })
    }
}

/// `psk:<identity>` or `x509:CN=<cn>`, escaped so that a hostile identity cannot forge or
/// split an audit line.
impl fmt::Display for EstClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EstClient::Psk { identity } => match std::str::from_utf8(identity) {
                Ok(text) => write!(f, "psk:{}", text.escape_debug()),
                Err(_) => {
                    f.write_str("psk:0x")?;
                    identity.iter().try_for_each(|b| write!(f, "{b:02x}"))
                }
            },
            EstClient::Certificate {
                common_name: Some(cn),
                ..
            } => write!(f, "x509:CN={}", cn.escape_debug()),
            EstClient::Certificate {
                common_name: None, ..
            } => f.write_str("x509:<no CN>"),
        }
    }
}

/// Debug shows the identity, not the certificate bytes.
impl fmt::Debug for EstClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EstClient::Certificate { chain, .. } => {
                write!(f, "EstClient({self}, {} certs)", chain.len())
            }
            EstClient::Psk { .. } => write!(f, "EstClient({self})"),
        }
    }
}

/// What the Enroller knows about the request besides the payload.
#[derive(Debug, Clone, Copy)]
pub struct EstContext<'a> {
    /// The authenticated peer. Always present: unauthenticated requests never reach the
    /// Enroller.
    pub client: &'a EstClient,
    /// The `<label>` of `/.well-known/est/<label>/<short>`, already accepted by
    /// [`Enroller::has_label`]; `None` for the default profile.
    pub label: Option<&'a str>,
}

/// A server-generated key pair's delivery: the private key (PKCS#8 DER, unencrypted) and the
/// certificate issued for it.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerKey {
    pub pkcs8_der: Vec<u8>,
    pub cert_der: Vec<u8>,
}

/// Never prints the private key.
impl fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerKey")
            .field(
                "pkcs8_der",
                &format_args!("<{} bytes redacted>", self.pkcs8_der.len()),
            )
            .field("cert_der", &format_args!("<{} bytes>", self.cert_der.len()))
            .finish()
    }
}

/// A refusal with the CoAP code it maps to and a reason for the audit line. Split by who is at
/// fault, like rustls' errors: the client's input (4.00, 4.13), its identity (4.01), policy
/// (4.03), availability (4.04, 5.03) and the server itself (5.00).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EstRefusal {
    /// 4.00: malformed CSR, bad signature, CSR names another endpoint, unknown attribute ...
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 4.01: no identity, or one the server does not know.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// 4.03: known identity, but policy says no: not on the allow-list, revoked, unknown
    /// manufacturer, expired factory certificate, subject change on re-enrolment ...
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 4.04: the resource is not available for this client (RFC 9148 §4.5), e.g. a profile
    /// this client may not use.
    #[error("not found: {0}")]
    NotFound(String),
    /// 4.13: the request is larger than the server accepts.
    #[error("too large: {0}")]
    TooLarge(String),
    /// 5.00: the server failed (store, CA key, encoding).
    #[error("internal error: {0}")]
    Internal(String),
    /// 5.03 with Max-Age: try again later with the identical request (RFC 9148 §4.7, e.g.
    /// manual approval pending).
    #[error("try again in {max_age} s: {reason}")]
    TryLater { max_age: u32, reason: String },
}

impl EstRefusal {
    pub fn code(&self) -> Code {
        match self {
            EstRefusal::BadRequest(_) => Code::BAD_REQUEST,
            EstRefusal::Unauthorized(_) => Code::UNAUTHORIZED,
            EstRefusal::Forbidden(_) => Code::FORBIDDEN,
            EstRefusal::NotFound(_) => Code::NOT_FOUND,
            EstRefusal::TooLarge(_) => Code::REQUEST_ENTITY_TOO_LARGE,
            EstRefusal::Internal(_) => Code::INTERNAL_SERVER_ERROR,
            EstRefusal::TryLater { .. } => Code::SERVICE_UNAVAILABLE,
        }
    }

    /// The reason for the audit line (not necessarily sent to the client).
    pub fn reason(&self) -> &str {
        match self {
            EstRefusal::BadRequest(r)
            | EstRefusal::Unauthorized(r)
            | EstRefusal::Forbidden(r)
            | EstRefusal::NotFound(r)
            | EstRefusal::TooLarge(r)
            | EstRefusal::Internal(r)
            | EstRefusal::TryLater { reason: r, .. } => r,
        }
    }

    /// Max-Age for 5.03 responses.
    pub fn max_age(&self) -> Option<u32> {
        match self {
            EstRefusal::TryLater { max_age, .. } => Some(*max_age),
            _ => None,
        }
    }
}

/// The server's decisions, glued by the server from the CA, the enrolment policy and the
/// store. Every method gets the authenticated client; refusals are typed.
pub trait Enroller {
    /// True if `label` names a CA profile served under `/.well-known/est/<label>/`. The default
    /// knows no labels, so only the default root is served.
    fn has_label(&self, label: &str) -> bool {
        let _ = label;
        false
    }

    /// `/crts`: the CA certificates (DER, issuing CA first). An empty list is answered 5.00.
    fn ca_certs(&self, ctx: &EstContext<'_>) -> Result<Vec<Vec<u8>>, EstRefusal>;

    /// `/sen`: issue a certificate (DER) for the CSR or refuse. `csr_der` is exactly one
    /// well-framed DER SEQUENCE; everything inside it is unchecked. The Enroller must verify
    /// the CSR signature (proof of possession) and bind its subject to `ctx.client`.
    fn enroll(&self, ctx: &EstContext<'_>, csr_der: &[u8]) -> Result<Vec<u8>, EstRefusal>;

    /// `/sren`: `ctx.client` is certificate-authenticated (the handler checked); the leaf of
    /// its chain is the certificate being renewed (RFC 7030 §4.2.2). Refuse unless it is a
    /// current operational certificate and the CSR keeps its subject and SAN.
    fn reenroll(&self, ctx: &EstContext<'_>, csr_der: &[u8]) -> Result<Vec<u8>, EstRefusal>;

    /// `/skg` and `/skc`: generate a key pair, issue a certificate for it. The CSR's public key
    /// and signature MUST be ignored (RFC 9148 §4.8); its subject and attributes still apply.
    /// Only called when [`super::EstConfig::server_keygen`] is on.
    fn server_keygen(&self, ctx: &EstContext<'_>, csr_der: &[u8]) -> Result<ServerKey, EstRefusal>;

    /// `/att`: DER CsrAttrs (RFC 7030 §4.5.2), possibly an empty SEQUENCE (`30 00`).
    fn csr_attrs(&self, ctx: &EstContext<'_>) -> Result<Vec<u8>, EstRefusal>;
}

/// Why an encoder failed; the handler answers 5.00.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EncodeError(pub String);

/// The two encodings the handler needs but does not implement, so that it stays free of CMS
/// and CBOR code (the server wires `pkcs7` and `multipart`).
pub trait EstEncoder {
    /// Degenerate CMS SignedData, certs-only (ct 281), holding `certs` in order.
    fn certs_only(&self, certs: &[Vec<u8>]) -> Result<Vec<u8>, EncodeError>;

    /// application/multipart-core (ct 62, RFC 8710): `[ct1, bstr1, ct2, bstr2, ...]`.
    fn multipart(&self, parts: &[(u16, &[u8])]) -> Result<Vec<u8>, EncodeError>;
}

// Forwarding impls so that the service can own a `&T`, `Arc<T>` or `Box<T>` of a shared
// Enroller/encoder (the server shares its CA between EST and the plugin host).
macro_rules! forward {
    ($($ptr:ty),*) => {$(
        impl<T: Enroller + ?Sized> Enroller for $ptr {
            fn has_label(&self, label: &str) -> bool {
                (**self).has_label(label)
            }
            fn ca_certs(&self, ctx: &EstContext<'_>) -> Result<Vec<Vec<u8>>, EstRefusal> {
                (**self).ca_certs(ctx)
            }
            fn enroll(&self, ctx: &EstContext<'_>, csr_der: &[u8]) -> Result<Vec<u8>, EstRefusal> {
                (**self).enroll(ctx, csr_der)
            }
            fn reenroll(&self, ctx: &EstContext<'_>, csr_der: &[u8]) -> Result<Vec<u8>, EstRefusal> {
                (**self).reenroll(ctx, csr_der)
            }
            fn server_keygen(
                &self,
                ctx: &EstContext<'_>,
                csr_der: &[u8],
            ) -> Result<ServerKey, EstRefusal> {
                (**self).server_keygen(ctx, csr_der)
            }
            fn csr_attrs(&self, ctx: &EstContext<'_>) -> Result<Vec<u8>, EstRefusal> {
                (**self).csr_attrs(ctx)
            }
        }
        impl<T: EstEncoder + ?Sized> EstEncoder for $ptr {
            fn certs_only(&self, certs: &[Vec<u8>]) -> Result<Vec<u8>, EncodeError> {
                (**self).certs_only(certs)
            }
            fn multipart(&self, parts: &[(u16, &[u8])]) -> Result<Vec<u8>, EncodeError> {
                (**self).multipart(parts)
            }
        }
    )*};
}

forward!(&T, Arc<T>, Box<T>);
