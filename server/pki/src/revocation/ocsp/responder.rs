//! The OCSP responder: DER request in, DER response out, never a panic.

use std::time::{Duration, SystemTime};

use der::asn1::OctetString;
use der::{Decode, Encode};
use openssl::error::ErrorStack;
use openssl::pkey::{PKeyRef, Private};
use openssl::x509::{X509, X509Ref};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use sha1::{Digest, Sha1};
use spki::{AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier};
use x509_cert::Certificate;
use x509_cert::ext::Extensions;
use x509_ocsp::builder::OcspResponseBuilder;
use x509_ocsp::ext::Nonce;
use x509_ocsp::{OcspRequest, OcspResponse, ResponderId, RevokedInfo, SingleResponse};

use super::{ID_NONCE, IssuerHashes, IssuerKeyError, MAX_NONCE_LEN};
use crate::revocation::crl::ECDSA_WITH_SHA256;
use crate::revocation::time::ocsp_time;
use crate::revocation::{CertStatus, normalize_serial, spki_key_bits};

/// How long a response stays valid (nextUpdate − thisUpdate) unless configured otherwise.
/// Short, because the point of the service (seed 003) is that devices learn quickly that a
/// server certificate was revoked.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(3600);

/// Most CertIDs answered in one request. Clients ask about one certificate (or a short
/// chain); a cap keeps a single request from making us sign a huge response.
pub const MAX_REQUESTS: usize = 16;

/// Encodings of the unsigned error responses (RFC 6960 §2.3), used when even encoding the
/// error with `x509-ocsp` fails so that `respond` always has bytes to return.
const MALFORMED_REQUEST_DER: [u8; 5] = [0x30, 0x03, 0x0a, 0x01, 0x01];
const INTERNAL_ERROR_DER: [u8; 5] = [0x30, 0x03, 0x0a, 0x01, 0x02];

/// Why an `OcspResponder` could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ResponderError {
    /// The signing key is not a P-256 key.
    #[error("the OCSP signing key is not a P-256 key")]
    UnsupportedKey,
    /// The signing key does not belong to the first certificate of the responder chain (or,
    /// with an empty chain, to the issuer).
    #[error("the OCSP signing key does not match the responder certificate")]
    KeyMismatch,
    /// A certificate could not be read.
    #[error("invalid certificate: {0}")]
    Certificate(String),
    /// openssl failed while reading a key or certificate.
    #[error("openssl: {0}")]
    Crypto(#[from] ErrorStack),
}

/// Answers OCSP requests about certificates of one issuer.
///
/// The responder is either the CA itself (empty `responder_chain` or the CA certificate) or a
/// delegated responder whose certificate the CA issued with id-kp-OCSPSigning (RFC 6960
/// §4.2.2.2); that certificate goes first in `responder_chain` and is sent in every response
/// so that clients can check the delegation.
#[derive(Clone)]
pub struct OcspResponder {
    issuer: IssuerHashes,
    signing_key: SigningKey,
    /// SHA-1 of the responder's public key, the byKey ResponderID.
    key_hash: OctetString,
    chain: Vec<Certificate>,
    validity: Duration,
}

impl std::fmt::Debug for OcspResponder {
    // Keeps the private key out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OcspResponder")
            .field("key_hash", &self.key_hash)
            .field("chain_len", &self.chain.len())
            .field("validity", &self.validity)
            .finish_non_exhaustive()
    }
}

impl OcspResponder {
    /// A responder for certificates issued by `issuer`, signing with `signing_key`.
    pub fn new(
        issuer: &X509Ref,
        signing_key: &PKeyRef<Private>,
        responder_chain: &[X509],
    ) -> Result<Self, ResponderError> {
        let responder_cert: &X509Ref = responder_chain.first().map_or(issuer, |c| c);
        if !responder_cert.public_key()?.public_eq(signing_key) {
            return Err(ResponderError::KeyMismatch);
        }
        let pkcs8 = signing_key.private_key_to_pkcs8()?;
        let key = SigningKey::from_pkcs8_der(&pkcs8).map_err(|_| ResponderError::UnsupportedKey)?;
        let key_bits = spki_key_bits(&signing_key.public_key_to_der()?)
            .map_err(|_| ResponderError::UnsupportedKey)?;
        let key_hash = OctetString::new(Sha1::digest(&key_bits).to_vec())
            .map_err(|e| ResponderError::Certificate(e.to_string()))?;
        let issuer = IssuerHashes::of(issuer).map_err(|e| match e {
            IssuerKeyError::Crypto(e) => ResponderError::Crypto(e),
            IssuerKeyError::Spki => ResponderError::Certificate("issuer key".into()),
        })?;
        let chain = responder_chain
            .iter()
            .map(|c| {
                let der = c.to_der()?;
                Certificate::from_der(&der).map_err(|e| ResponderError::Certificate(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            issuer,
            signing_key: key,
            key_hash,
            chain,
            validity: DEFAULT_VALIDITY,
        })
    }

    /// Sets nextUpdate − thisUpdate.
    pub fn with_validity(mut self, validity: Duration) -> Self {
        self.validity = validity;
        self
    }

    /// Answers one DER OCSPRequest.
    ///
    /// `lookup` gets each serial (unsigned big-endian, see [`crate::revocation`]) whose CertID
    /// names our issuer; CertIDs of other issuers, or with a hash algorithm other than SHA-1
    /// or SHA-256, are answered `unknown` without calling it. Undecodable requests, empty or
    /// oversized request lists, bad nonces and unknown critical extensions get an unsigned
    /// `malformedRequest`; a failure on our side gets `internalError`.
    pub fn respond(
        &self,
        request_der: &[u8],
        lookup: &dyn Fn(&[u8]) -> CertStatus,
        now: SystemTime,
    ) -> Vec<u8> {
        match self.answer(request_der, lookup, now) {
            Ok(der) => der,
            Err(Refusal::Malformed(why)) => {
                tracing::debug!(why, "OCSP request refused as malformed");
                OcspResponse::malformed_request()
                    .to_der()
                    .unwrap_or_else(|_| MALFORMED_REQUEST_DER.to_vec())
            }
            Err(Refusal::Internal(why)) => {
                tracing::warn!(%why, "OCSP responder failed");
                OcspResponse::internal_error()
                    .to_der()
                    .unwrap_or_else(|_| INTERNAL_ERROR_DER.to_vec())
            }
        }
    }

    fn answer(
        &self,
        request_der: &[u8],
        lookup: &dyn Fn(&[u8]) -> CertStatus,
        now: SystemTime,
    ) -> Result<Vec<u8>, Refusal> {
        let request = OcspRequest::from_der(request_der)
            .map_err(|_| Refusal::Malformed("undecodable OCSPRequest"))?;
        let tbs = &request.tbs_request;
        if tbs.request_list.is_empty() {
            return Err(Refusal::Malformed("empty requestList"));
        }
        if tbs.request_list.len() > MAX_REQUESTS {
            return Err(Refusal::Malformed("too many CertIDs"));
        }
        let nonce = request_nonce(tbs.request_extensions.as_ref())?;
        for single in &tbs.request_list {
            reject_critical(single.single_request_extensions.as_ref())?;
        }

        let this_update = ocsp_time(now).map_err(Refusal::internal)?;
        let next_update = now
            .checked_add(self.validity)
            .ok_or_else(|| Refusal::Internal("nextUpdate overflows".into()))
            .and_then(|t| ocsp_time(t).map_err(Refusal::internal))?;

        let mut builder = OcspResponseBuilder::new(ResponderId::ByKey(self.key_hash.clone()));
        for single in &tbs.request_list {
            let status = self.status_of(&single.req_cert, lookup)?;
            builder = builder.with_single_response(
                SingleResponse::new(single.req_cert.clone(), status, this_update)
                    .with_next_update(next_update),
            );
        }
        if let Some(nonce) = nonce {
            builder = builder.with_extension(nonce).map_err(Refusal::internal)?;
        }
        let certs = (!self.chain.is_empty()).then(|| self.chain.clone());
        let response = builder
            .sign::<_, DerSignature>(&mut EcdsaSha256(&self.signing_key), certs, this_update)
            .map_err(Refusal::internal)?;
        response.to_der().map_err(Refusal::internal)
    }

    fn status_of(
        &self,
        id: &x509_ocsp::CertId,
        lookup: &dyn Fn(&[u8]) -> CertStatus,
    ) -> Result<x509_ocsp::CertStatus, Refusal> {
        if !self.issuer.matches(id) {
            return Ok(x509_ocsp::CertStatus::unknown());
        }
        Ok(
            match lookup(normalize_serial(id.serial_number.as_bytes())) {
                CertStatus::Good => x509_ocsp::CertStatus::good(),
                CertStatus::Unknown => x509_ocsp::CertStatus::unknown(),
                CertStatus::Revoked { revoked_at, reason } => {
                    x509_ocsp::CertStatus::revoked(RevokedInfo {
                        revocation_time: ocsp_time(revoked_at).map_err(Refusal::internal)?,
                        revocation_reason: reason.map(|r| r.to_x509()),
                    })
                }
            },
        )
    }
}

/// Names the signature algorithm for x509-ocsp. p256's own `SignatureAlgorithmIdentifier`
/// impl needs sha2's `oid` feature; ecdsa-with-SHA256 is a constant, so we state it here
/// instead of widening the dependency.
struct EcdsaSha256<'a>(&'a SigningKey);

impl Signer<DerSignature> for EcdsaSha256<'_> {
    fn try_sign(&self, msg: &[u8]) -> Result<DerSignature, p256::ecdsa::Error> {
        self.0.try_sign(msg)
    }
}

impl DynSignatureAlgorithmIdentifier for EcdsaSha256<'_> {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        // RFC 5758 §3.2: the parameters field is absent for ECDSA.
        Ok(AlgorithmIdentifierOwned {
            oid: ECDSA_WITH_SHA256,
            parameters: None,
        })
    }
}

/// Why a request got an error response instead of a signed one.
#[derive(Debug)]
enum Refusal {
    /// The client's fault (RFC 6960 malformedRequest).
    Malformed(&'static str),
    /// Ours (internalError).
    Internal(String),
}

impl Refusal {
    fn internal(e: impl std::fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }
}

/// The request nonce, if any. RFC 6960 §4.4.1 wraps the nonce in an OCTET STRING inside
/// extnValue (as openssl does); RFC 8954 bounds it to 1..=32 octets.
fn request_nonce(extensions: Option<&Extensions>) -> Result<Option<Nonce>, Refusal> {
    reject_critical(extensions)?;
    let mut nonces = extensions
        .into_iter()
        .flatten()
        .filter(|e| e.extn_id == ID_NONCE);
    let Some(ext) = nonces.next() else {
        return Ok(None);
    };
    if nonces.next().is_some() {
        return Err(Refusal::Malformed("duplicate nonce extension"));
    }
    let nonce = Nonce::from_der(ext.extn_value.as_bytes())
        .map_err(|_| Refusal::Malformed("nonce is not an OCTET STRING"))?;
    let len = nonce.0.as_bytes().len();
    if len == 0 || len > MAX_NONCE_LEN {
        return Err(Refusal::Malformed("nonce length outside 1..=32 (RFC 8954)"));
    }
    Ok(Some(nonce))
}

/// RFC 6960 §4.4: unrecognised extensions are ignored unless marked critical. The nonce is the
/// only one we understand.
fn reject_critical(extensions: Option<&Extensions>) -> Result<(), Refusal> {
    let unknown_critical = extensions
        .into_iter()
        .flatten()
        .any(|e| e.critical && e.extn_id != ID_NONCE);
    if unknown_critical {
        Err(Refusal::Malformed("unknown critical extension"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_error_encodings_match_x509_ocsp() {
        assert_eq!(
            OcspResponse::malformed_request().to_der().ok(),
            Some(MALFORMED_REQUEST_DER.to_vec())
        );
        assert_eq!(
            OcspResponse::internal_error().to_der().ok(),
            Some(INTERNAL_ERROR_DER.to_vec())
        );
    }
}
