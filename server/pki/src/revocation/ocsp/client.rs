//! The device side: build a request for a certificate and check the answer before trusting
//! the certificate (seed 003: the device asks whether the server's certificate was revoked).

use std::time::{Duration, SystemTime};

use der::asn1::{Null, OctetString};
use der::{Decode, Encode};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::ocsp::{OcspCertId, OcspCertStatus, OcspFlag, OcspResponse as OpensslResponse};
use openssl::stack::Stack;
use openssl::x509::X509Ref;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::{X509VerifyFlags, X509VerifyParam};
use sha1::{Digest, Sha1};
use spki::AlgorithmIdentifierOwned;
use x509_cert::serial_number::SerialNumber;
use x509_ocsp::builder::OcspRequestBuilder;
use x509_ocsp::ext::Nonce;
use x509_ocsp::{BasicOcspResponse, CertId, OcspResponse, OcspResponseStatus, Request, Version};

use super::{ID_OCSP_BASIC, ID_SHA1, IssuerHashes, MAX_NONCE_LEN};
use crate::revocation::time::{from_generalized, unix_seconds};
use crate::revocation::{CertStatus, RevocationReason, normalize_serial, serial_of, spki_key_bits};

/// Clock difference tolerated between device and responder when judging thisUpdate and
/// nextUpdate. Devices without a good clock are the norm.
pub const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// Oldest acceptable thisUpdate when the response carries no nextUpdate (ours always does;
/// RFC 6960 §4.2.2.1 leaves the policy to the client).
pub const MAX_AGE_WITHOUT_NEXT_UPDATE: Duration = Duration::from_secs(3600);

/// The OCSPResponseStatus values (RFC 6960 §4.2.1) other than `successful`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseStatus {
    /// 1: the responder could not parse our request.
    MalformedRequest,
    /// 2
    InternalError,
    /// 3
    TryLater,
    /// 5
    SigRequired,
    /// 6: the responder does not answer for this issuer.
    Unauthorized,
}

/// Why a request could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// RFC 8954: a nonce has 1 to 32 octets.
    #[error("nonce length {0} outside 1..=32")]
    InvalidNonce(usize),
    /// The certificate or issuer could not be read.
    #[error("openssl: {0}")]
    Crypto(#[from] ErrorStack),
    /// DER encoding failed.
    #[error("DER: {0}")]
    Encoding(#[from] der::Error),
    /// The issuer's key is not a well-formed SubjectPublicKeyInfo.
    #[error("issuer key is not a valid SubjectPublicKeyInfo")]
    IssuerKey,
}

/// Why a response does not establish the certificate's status. Every variant means "do not
/// trust the certificate on the strength of this response".
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Not a DER OCSPResponse with a BasicOCSPResponse inside.
    #[error("malformed OCSP response: {0}")]
    Malformed(&'static str),
    /// The responder answered with an error status.
    #[error("OCSP responder answered {0:?}")]
    Unsuccessful(ResponseStatus),
    /// Bad signature, or a signer that is neither the issuer nor a responder it delegated to.
    #[error("OCSP response signature or responder not trusted: {0}")]
    Untrusted(ErrorStack),
    /// We sent a nonce and the response does not carry it.
    #[error("OCSP response has no nonce")]
    NonceMissing,
    /// The response carries a different nonce (a replay, or an answer to someone else).
    #[error("OCSP response nonce does not match the request")]
    NonceMismatch,
    /// The response says nothing about our certificate.
    #[error("OCSP response has no status for the certificate")]
    NoStatusForCertificate,
    /// thisUpdate is in the future beyond the tolerated clock skew.
    #[error("OCSP response is not yet valid")]
    NotYetValid,
    /// nextUpdate has passed (or, without nextUpdate, thisUpdate is too old).
    #[error("OCSP response is stale")]
    Stale,
    /// The certificate, issuer or time handed to `check_response` is unusable (our side, not
    /// the responder's).
    #[error("unusable local input: {0}")]
    Local(&'static str),
    /// openssl failed on local material (certificate, store).
    #[error("openssl: {0}")]
    Crypto(ErrorStack),
}

/// A DER OCSPRequest for `cert`, issued by `issuer`, with a SHA-1 CertID (what openssl and
/// RFC 5019 responders expect) and, if given, a nonce extension.
pub fn request_for(
    cert: &X509Ref,
    issuer: &X509Ref,
    nonce: Option<&[u8]>,
) -> Result<Vec<u8>, RequestError> {
    let cert_id = sha1_cert_id(cert, issuer)?;
    let mut builder = OcspRequestBuilder::new(Version::V1).with_request(Request::new(cert_id));
    if let Some(nonce) = nonce {
        if nonce.is_empty() || nonce.len() > MAX_NONCE_LEN {
            return Err(RequestError::InvalidNonce(nonce.len()));
        }
        builder = builder
            .with_extension(Nonce::new(nonce)?)
            .map_err(|e| RequestError::Encoding(builder_to_der(e)))?;
    }
    Ok(builder.build().to_der()?)
}

/// Checks a DER OCSPResponse about `cert` (issued by `issuer`) at time `now` and returns the
/// certificate's status.
///
/// Accepts only a response that is signed by `issuer` or by a responder certificate that
/// `issuer` issued with id-kp-OCSPSigning (openssl `OCSP_basic_verify` with the issuer as the
/// only trust anchor), that echoes `expected_nonce` when one is given, and that is fresh at
/// `now` within [`CLOCK_SKEW`].
pub fn check_response(
    response_der: &[u8],
    cert: &X509Ref,
    issuer: &X509Ref,
    expected_nonce: Option<&[u8]>,
    now: SystemTime,
) -> Result<CertStatus, CheckError> {
    let basic = decode_basic(response_der)?;
    verify_signature(response_der, issuer, now)?;

    if let Some(expected) = expected_nonce {
        match basic.tbs_response_data.nonce() {
            None => return Err(CheckError::NonceMissing),
            Some(n) if n.0.as_bytes() != expected => return Err(CheckError::NonceMismatch),
            Some(_) => {}
        }
    }

    let issuer_hashes =
        IssuerHashes::of(issuer).map_err(|_| CheckError::Malformed("issuer key unreadable"))?;
    let serial = serial_of(cert).map_err(CheckError::Crypto)?;
    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|r| {
            issuer_hashes.matches(&r.cert_id)
                && normalize_serial(r.cert_id.serial_number.as_bytes()) == serial.as_slice()
        })
        .ok_or(CheckError::NoStatusForCertificate)?;

    check_freshness(
        from_generalized(&single.this_update.0),
        single.next_update.map(|t| from_generalized(&t.0)),
        now,
    )?;

    let status = match single.cert_status {
        x509_ocsp::CertStatus::Good(_) => CertStatus::Good,
        x509_ocsp::CertStatus::Unknown(_) => CertStatus::Unknown,
        x509_ocsp::CertStatus::Revoked(info) => CertStatus::Revoked {
            revoked_at: from_generalized(&info.revocation_time.0),
            reason: info.revocation_reason.map(RevocationReason::from_x509),
        },
    };
    cross_check_with_openssl(response_der, cert, issuer, status)?;
    Ok(status)
}

fn sha1_cert_id(cert: &X509Ref, issuer: &X509Ref) -> Result<CertId, RequestError> {
    let name = issuer.subject_name().to_der()?;
    let key = spki_key_bits(&issuer.public_key()?.public_key_to_der()?)
        .map_err(|_| RequestError::IssuerKey)?;
    Ok(CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: ID_SHA1,
            // RFC 6960 implementations (openssl included) write an explicit NULL here.
            parameters: Some(Null.into()),
        },
        issuer_name_hash: OctetString::new(Sha1::digest(&name).to_vec())?,
        issuer_key_hash: OctetString::new(Sha1::digest(&key).to_vec())?,
        serial_number: SerialNumber::new(&serial_of(cert)?)?,
    })
}

fn builder_to_der(e: x509_ocsp::builder::Error) -> der::Error {
    match e {
        x509_ocsp::builder::Error::Asn1(e) => e,
        _ => der::ErrorKind::Failed.into(),
    }
}

fn decode_basic(response_der: &[u8]) -> Result<BasicOcspResponse, CheckError> {
    let response =
        OcspResponse::from_der(response_der).map_err(|_| CheckError::Malformed("OCSPResponse"))?;
    let unsuccessful = match response.response_status {
        OcspResponseStatus::Successful => None,
        OcspResponseStatus::MalformedRequest => Some(ResponseStatus::MalformedRequest),
        OcspResponseStatus::InternalError => Some(ResponseStatus::InternalError),
        OcspResponseStatus::TryLater => Some(ResponseStatus::TryLater),
        OcspResponseStatus::SigRequired => Some(ResponseStatus::SigRequired),
        OcspResponseStatus::Unauthorized => Some(ResponseStatus::Unauthorized),
    };
    if let Some(status) = unsuccessful {
        return Err(CheckError::Unsuccessful(status));
    }
    let bytes = response.response_bytes.ok_or(CheckError::Malformed(
        "successful response without responseBytes",
    ))?;
    if bytes.response_type != ID_OCSP_BASIC {
        return Err(CheckError::Malformed(
            "response type is not id-pkix-ocsp-basic",
        ));
    }
    BasicOcspResponse::from_der(bytes.response.as_bytes())
        .map_err(|_| CheckError::Malformed("BasicOCSPResponse"))
}

/// openssl checks the signature and that the signer is authorised for `issuer`. The issuer
/// is the only trust anchor (PARTIAL_CHAIN: it may be an intermediate; the device already
/// trusts it because it validated the server chain), and NO_EXPLICIT turns off openssl's
/// fallback of accepting any signer that chains to a trusted root.
fn verify_signature(
    response_der: &[u8],
    issuer: &X509Ref,
    now: SystemTime,
) -> Result<(), CheckError> {
    let basic = OpensslResponse::from_der(response_der)
        .and_then(|r| r.basic())
        .map_err(|_| CheckError::Malformed("openssl could not read the BasicOCSPResponse"))?;

    let mut param = X509VerifyParam::new().map_err(CheckError::Crypto)?;
    param
        .set_flags(X509VerifyFlags::PARTIAL_CHAIN)
        .map_err(CheckError::Crypto)?;
    let secs = unix_seconds(now)
        .and_then(|s| s.try_into().ok())
        .ok_or(CheckError::Local("time before 1970"))?;
    param.set_time(secs);

    let mut store = X509StoreBuilder::new().map_err(CheckError::Crypto)?;
    store
        .add_cert(issuer.to_owned())
        .map_err(CheckError::Crypto)?;
    store.set_param(&param).map_err(CheckError::Crypto)?;
    let store = store.build();

    // The issuer is also offered as a candidate signer, for responses signed by the CA that
    // do not carry its certificate.
    let mut certs = Stack::new().map_err(CheckError::Crypto)?;
    certs.push(issuer.to_owned()).map_err(CheckError::Crypto)?;
    basic
        .verify(&certs, &store, OcspFlag::NO_EXPLICIT)
        .map_err(CheckError::Untrusted)
}

fn check_freshness(
    this_update: SystemTime,
    next_update: Option<SystemTime>,
    now: SystemTime,
) -> Result<(), CheckError> {
    if this_update > now + CLOCK_SKEW {
        return Err(CheckError::NotYetValid);
    }
    let expires = match next_update {
        Some(next) => next + CLOCK_SKEW,
        None => this_update + MAX_AGE_WITHOUT_NEXT_UPDATE,
    };
    if now > expires {
        return Err(CheckError::Stale);
    }
    Ok(())
}

/// The status is read with `x509-ocsp` (which gives us the times as values); openssl read the
/// same signed bytes for the signature check. Asking openssl for the status too closes the
/// door on a DER parser differential between the two.
fn cross_check_with_openssl(
    response_der: &[u8],
    cert: &X509Ref,
    issuer: &X509Ref,
    status: CertStatus,
) -> Result<(), CheckError> {
    let basic = OpensslResponse::from_der(response_der)
        .and_then(|r| r.basic())
        .map_err(|_| CheckError::Malformed("openssl could not read the BasicOCSPResponse"))?;
    let id =
        OcspCertId::from_cert(MessageDigest::sha1(), cert, issuer).map_err(CheckError::Crypto)?;
    // A SHA-256 CertID is invisible to a SHA-1 lookup; nothing to compare then.
    let Some(found) = basic.find_status(&id) else {
        return Ok(());
    };
    let agrees = match status {
        CertStatus::Good => found.status == OcspCertStatus::GOOD,
        CertStatus::Revoked { .. } => found.status == OcspCertStatus::REVOKED,
        CertStatus::Unknown => found.status == OcspCertStatus::UNKNOWN,
    };
    if agrees {
        Ok(())
    } else {
        Err(CheckError::Malformed(
            "parsers disagree on the certificate status",
        ))
    }
}
