//! OCSP (RFC 6960): a responder for the CA and the device-side check.
//!
//! openssl can parse and verify OCSP responses but cannot build a BasicOCSPResponse nor list
//! the CertIDs of a parsed request (standards.md §6.3), so the responder decodes and builds
//! the structures with `x509-ocsp` and signs with `p256`. The client side builds its request
//! with `x509-ocsp` (openssl's `OcspRequest` has no nonce binding) and leaves signature and
//! responder-authorisation checks to openssl's `OCSP_basic_verify`, which implements the
//! RFC 6960 §4.2.2.2 rules (CA-signed or delegated with id-kp-OCSPSigning).
//!
//! Nonces follow RFC 8954: 1 to 32 octets; longer ones get `malformedRequest`.

mod client;
mod responder;

pub use client::{
    CLOCK_SKEW, CheckError, MAX_AGE_WITHOUT_NEXT_UPDATE, RequestError, ResponseStatus,
    check_response, request_for,
};
pub use responder::{DEFAULT_VALIDITY, MAX_REQUESTS, OcspResponder, ResponderError};

use der::asn1::ObjectIdentifier;
use openssl::error::ErrorStack;
use openssl::x509::X509Ref;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use x509_ocsp::CertId;

use super::spki_key_bits;

/// Largest nonce RFC 8954 §2.1 allows.
pub const MAX_NONCE_LEN: usize = 32;

const ID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
/// id-pkix-ocsp-nonce (RFC 6960 §4.4.1).
const ID_NONCE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.2");
/// id-pkix-ocsp-basic (RFC 6960 §4.2.1).
const ID_OCSP_BASIC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");

/// The CertID hashes of one issuer, for both hash algorithms clients use: SHA-1 (openssl's
/// default and what RFC 5019 profiles) and SHA-256.
#[derive(Debug, Clone)]
struct IssuerHashes {
    sha1_name: Vec<u8>,
    sha1_key: Vec<u8>,
    sha256_name: Vec<u8>,
    sha256_key: Vec<u8>,
}

/// The issuer key could not be read as an SPKI.
#[derive(Debug)]
enum IssuerKeyError {
    Crypto(ErrorStack),
    Spki,
}

impl IssuerHashes {
    /// issuerNameHash covers the DER of the issuer's subject Name, issuerKeyHash the contents
    /// of its subjectPublicKey BIT STRING (RFC 6960 §4.1.1).
    fn of(issuer: &X509Ref) -> Result<Self, IssuerKeyError> {
        let name = issuer
            .subject_name()
            .to_der()
            .map_err(IssuerKeyError::Crypto)?;
        let spki = issuer
            .public_key()
            .and_then(|k| k.public_key_to_der())
            .map_err(IssuerKeyError::Crypto)?;
        let key = spki_key_bits(&spki).map_err(|_| IssuerKeyError::Spki)?;
        Ok(Self {
            sha1_name: Sha1::digest(&name).to_vec(),
            sha1_key: Sha1::digest(&key).to_vec(),
            sha256_name: Sha256::digest(&name).to_vec(),
            sha256_key: Sha256::digest(&key).to_vec(),
        })
    }

    /// Whether `id` names this issuer. CertIDs with another hash algorithm never match: we
    /// cannot tell whose they are, and RFC 6960 gives `unknown` for that case.
    fn matches(&self, id: &CertId) -> bool {
        let (name, key) = match id.hash_algorithm.oid {
            ID_SHA1 => (&self.sha1_name, &self.sha1_key),
            ID_SHA256 => (&self.sha256_name, &self.sha256_key),
            _ => return false,
        };
        id.issuer_name_hash.as_bytes() == name.as_slice()
            && id.issuer_key_hash.as_bytes() == key.as_slice()
    }
}
