//! PKCS#10 certificate signing requests (RFC 2986), parsed once into a [`Csr`] that can only
//! exist if the request is well-formed, signed by its own key (proof of possession, RFC 7030
//! §3.4 / LwM2M Transport §5.2.4) and carries a key type we issue for.
//!
//! Two parsers look at every request: x509-parser reads the structure (subject, requested
//! extensions, the challengePassword attribute, which OpenSSL's Rust binding cannot reach) and
//! must consume every byte; OpenSSL verifies the signature and provides the key and subject in
//! the form the certificate builder needs. Input is size-capped before either parser runs.
//!
//! Requested extensions other than subjectAltName are ignored: the CA, not the device, decides
//! key usage, basic constraints and the rest (see `ca::issue`).

use std::net::IpAddr;

use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, PKeyRef, Public};
use openssl::x509::{X509NameRef, X509Req};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::OID_X509_EXT_SUBJECT_ALT_NAME;
use x509_parser::prelude::FromDer;

/// Default cap on a CSR's DER size. A P-256 CSR with a few SAN entries is ~300–600 bytes and an
/// RSA-4096 one ~1.7 KiB; anything past 4 KiB is not a device enrolling.
pub const DEFAULT_MAX_CSR_LEN: usize = 4096;
/// Smallest RSA modulus accepted (NIST SP 800-57: 112-bit security).
pub const MIN_RSA_BITS: u32 = 2048;
/// Largest RSA modulus accepted; bigger keys only make signature checks expensive.
pub const MAX_RSA_BITS: u32 = 8192;

/// Limits applied before and during parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsrLimits {
    pub max_der_len: usize,
}

impl Default for CsrLimits {
    fn default() -> Self {
        CsrLimits {
            max_der_len: DEFAULT_MAX_CSR_LEN,
        }
    }
}

/// Why a CSR was refused. All of these are the requester's fault (CoAP 4.00 Bad Request).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    #[error("CSR is {len} bytes, more than the {max} allowed")]
    TooLarge { len: usize, max: usize },
    #[error("malformed CSR: {0}")]
    Malformed(String),
    /// The request is not signed by the key it carries: no proof of possession.
    #[error("CSR signature does not verify with its own public key")]
    BadSignature,
    #[error("unsupported key in CSR: {0}")]
    UnsupportedKey(String),
    #[error("CSR subject has no common name")]
    MissingCommonName,
    #[error("CSR subject has more than one common name")]
    MultipleCommonNames,
}

/// The kind of public key in a CSR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    EcP256,
    EcP384,
    Rsa { bits: u32 },
}

impl KeyKind {
    pub fn is_ec(self) -> bool {
        matches!(self, KeyKind::EcP256 | KeyKind::EcP384)
    }
}

/// One subjectAltName entry, as far as a CA needs to understand it. The certificate receives the
/// extension byte for byte (see [`Csr::san_der`]), so entries listed as `Other` are not lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SanEntry {
    Dns(String),
    Uri(String),
    Email(String),
    Ip(IpAddr),
    /// otherName, directoryName, registeredID, x400Address, ediPartyName or a malformed IP.
    Other(String),
}

/// A parsed CSR whose signature verified with its own key.
pub struct Csr {
    der: Vec<u8>,
    req: X509Req,
    public_key: PKey<Public>,
    key_kind: KeyKind,
    subject_der: Vec<u8>,
    common_name: Option<String>,
    san: Vec<SanEntry>,
    san_der: Option<Vec<u8>>,
    challenge_password: Option<String>,
}

impl std::fmt::Debug for Csr {
    // The challengePassword may be a one-time enrolment secret: keep it out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Csr")
            .field("common_name", &self.common_name)
            .field("key_kind", &self.key_kind)
            .field("san", &self.san)
            .field(
                "challenge_password",
                &self.challenge_password.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// What x509-parser extracted, owned so that the borrow of the input ends.
struct Structure {
    subject_der: Vec<u8>,
    common_name: Option<String>,
    multiple_cns: bool,
    san: Vec<SanEntry>,
    san_der: Option<Vec<u8>>,
    challenge_password: Option<String>,
}

impl Csr {
    /// Parses and checks a DER PKCS#10 request.
    ///
    /// Checks, in order: size, structure (x509-parser, no trailing bytes; then OpenSSL), key
    /// type, self-signature. A subject with several common names is refused here because the CN
    /// is an identity (endpoint name, PSK binding) and must not be ambiguous; a missing CN is
    /// allowed (a re-enrolment keeps the current certificate's subject) and reported by
    /// [`Csr::require_common_name`].
    pub fn from_der(der: &[u8], limits: CsrLimits) -> Result<Csr, CsrError> {
        if der.len() > limits.max_der_len {
            return Err(CsrError::TooLarge {
                len: der.len(),
                max: limits.max_der_len,
            });
        }
        let structure = parse_structure(der)?;
        if structure.multiple_cns {
            return Err(CsrError::MultipleCommonNames);
        }
        let req = X509Req::from_der(der).map_err(|e| CsrError::Malformed(e.to_string()))?;
        let public_key = req
            .public_key()
            .map_err(|e| CsrError::UnsupportedKey(e.to_string()))?;
        let key_kind = key_kind(&public_key)?;
        // An error from verify (e.g. an ECDSA signature that is not a valid DER SEQUENCE) means
        // the same as `false`: possession is not proven.
        if !crate::ossl::verified(req.verify(&public_key)) {
            return Err(CsrError::BadSignature);
        }
        Ok(Csr {
            der: der.to_vec(),
            req,
            public_key,
            key_kind,
            subject_der: structure.subject_der,
            common_name: structure.common_name,
            san: structure.san,
            san_der: structure.san_der,
            challenge_password: structure.challenge_password,
        })
    }

    /// The request as received.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The subject common name, if the subject has one.
    pub fn common_name(&self) -> Option<&str> {
        self.common_name.as_deref()
    }

    /// The subject common name, or [`CsrError::MissingCommonName`].
    pub fn require_common_name(&self) -> Result<&str, CsrError> {
        self.common_name().ok_or(CsrError::MissingCommonName)
    }

    /// The full subject Name, DER.
    pub fn subject_der(&self) -> &[u8] {
        &self.subject_der
    }

    /// The subject as OpenSSL sees it, for copying into a certificate.
    pub fn subject_name(&self) -> &X509NameRef {
        self.req.subject_name()
    }

    /// The requested subjectAltName entries.
    pub fn san(&self) -> &[SanEntry] {
        &self.san
    }

    /// The requested subjectAltName extension value (DER GeneralNames), if any.
    pub fn san_der(&self) -> Option<&[u8]> {
        self.san_der.as_deref()
    }

    /// The SubjectPublicKeyInfo, DER.
    pub fn public_key_der(&self) -> Result<Vec<u8>, openssl::error::ErrorStack> {
        self.public_key.public_key_to_der()
    }

    /// The public key, for the certificate builder.
    pub fn public_key(&self) -> &PKeyRef<Public> {
        &self.public_key
    }

    pub fn key_kind(&self) -> KeyKind {
        self.key_kind
    }

    /// The PKCS#9 challengePassword attribute. With EST this may carry tls-unique (RFC 7030
    /// §3.5) or an enrolment secret.
    pub fn challenge_password(&self) -> Option<&str> {
        self.challenge_password.as_deref()
    }
}

fn parse_structure(der: &[u8]) -> Result<Structure, CsrError> {
    let malformed = |e: &dyn std::fmt::Display| CsrError::Malformed(e.to_string());
    let (rest, csr) = X509CertificationRequest::from_der(der).map_err(|e| malformed(&e))?;
    if !rest.is_empty() {
        return Err(CsrError::Malformed(format!(
            "{} bytes after the request",
            rest.len()
        )));
    }
    let info = &csr.certification_request_info;
    let mut cns = info.subject.iter_common_name();
    let common_name = match cns.next() {
        Some(cn) => Some(
            cn.as_str()
                .map_err(|_| CsrError::Malformed("common name is not a string".into()))?
                .to_owned(),
        ),
        None => None,
    };
    let multiple_cns = cns.next().is_some();
    // The CN becomes an endpoint name and is compared with PSK bindings and allow-lists; a NUL
    // or other control character in it can only serve to confuse a comparison or a log line.
    if common_name
        .as_deref()
        .is_some_and(|cn| cn.chars().any(char::is_control))
    {
        return Err(CsrError::Malformed(
            "common name contains a control character".into(),
        ));
    }

    let mut san = Vec::new();
    let mut san_der = None;
    let mut challenge_password = None;
    for attr in info.iter_attributes() {
        match attr.parsed_attribute() {
            ParsedCriAttribute::ChallengePassword(p) => {
                if challenge_password.replace(p.0.clone()).is_some() {
                    return Err(CsrError::Malformed(
                        "two challengePassword attributes".into(),
                    ));
                }
            }
            ParsedCriAttribute::ExtensionRequest(req) => {
                for ext in &req.extensions {
                    if ext.oid != OID_X509_EXT_SUBJECT_ALT_NAME {
                        continue;
                    }
                    if san_der.replace(ext.value.to_vec()).is_some() {
                        return Err(CsrError::Malformed("two subjectAltName extensions".into()));
                    }
                    let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(names) =
                        ext.parsed_extension()
                    else {
                        return Err(CsrError::Malformed("unparsable subjectAltName".into()));
                    };
                    san.extend(names.general_names.iter().map(san_entry));
                }
            }
            ParsedCriAttribute::UnsupportedAttribute => {}
        }
    }
    Ok(Structure {
        subject_der: info.subject.as_raw().to_vec(),
        common_name,
        multiple_cns,
        san,
        san_der,
        challenge_password,
    })
}

fn san_entry(name: &GeneralName<'_>) -> SanEntry {
    match name {
        GeneralName::DNSName(s) => SanEntry::Dns((*s).to_owned()),
        GeneralName::URI(s) => SanEntry::Uri((*s).to_owned()),
        GeneralName::RFC822Name(s) => SanEntry::Email((*s).to_owned()),
        GeneralName::IPAddress(bytes) => match bytes.len() {
            4 => {
                let mut a = [0u8; 4];
                a.copy_from_slice(bytes);
                SanEntry::Ip(IpAddr::from(a))
            }
            16 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(bytes);
                SanEntry::Ip(IpAddr::from(a))
            }
            n => SanEntry::Other(format!("IP address of {n} bytes")),
        },
        other => SanEntry::Other(format!("{other:?}")),
    }
}

fn key_kind(key: &PKeyRef<Public>) -> Result<KeyKind, CsrError> {
    let unsupported = |what: String| CsrError::UnsupportedKey(what);
    match key.id() {
        Id::EC => {
            let ec = key.ec_key().map_err(|e| unsupported(e.to_string()))?;
            match ec.group().curve_name() {
                Some(Nid::X9_62_PRIME256V1) => Ok(KeyKind::EcP256),
                Some(Nid::SECP384R1) => Ok(KeyKind::EcP384),
                Some(nid) => Err(unsupported(format!(
                    "EC curve {}",
                    nid.short_name().unwrap_or("unknown")
                ))),
                None => Err(unsupported("EC key with explicit curve parameters".into())),
            }
        }
        Id::RSA => {
            let bits = key.bits();
            if (MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                Ok(KeyKind::Rsa { bits })
            } else {
                Err(unsupported(format!(
                    "RSA-{bits} (need {MIN_RSA_BITS}..={MAX_RSA_BITS} bits)"
                )))
            }
        }
        other => Err(unsupported(format!("key type {}", other.as_raw()))),
    }
}
