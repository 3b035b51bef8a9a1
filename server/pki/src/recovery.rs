//! The trust-chain recovery token (seed 000, issue 8): a vendor-signed permission for one
//! installation to replace the Certificate Trust List ([`crate::ctl`]) its devices hold, when no
//! key of that CTL can sign a chain-linked update any more. No I/O.
//!
//! The token is issued by the vendor service with the vendor recovery key, which never lives in
//! the Steward server; the server only relays it. Devices hold the vendor's public recovery key
//! and verify with [`verify_recovery_token`].
//!
//! # Format
//!
//! A **tagged COSE_Sign1** (tag 18, ES256, raw `r || s`; see [`crate::cose`]) with protected
//! header `{1: -7, 4: kid}` (the kid names the vendor key, empty allowed) whose payload is the
//! CWT claims set below (RFC 8392). It is **not** wrapped in the CWT tag 61: the COSE tag already
//! says what the message is, and one fixed form keeps the test vectors byte-exact; a token
//! wrapped in tag 61 is refused. The payload is a CBOR map, so a CTL update (whose payload is a
//! CBOR array) can never pass for a token or the other way round, even if keys were confused.
//!
//! # Claim table
//!
//! The claims, their keys and their strict deterministic encoding are fixed in the
//! [`steward_claims`] crate (see its [claim table](steward_claims::recovery#claim-table) and
//! [decoding rules](steward_claims::recovery#strict-decoding)), which builds for
//! `wasm32-wasip2` so that the trust-recovery plugin decodes the same claims. This module
//! re-exports them: `steward_pki::recovery::RecoveryClaims` and `steward_claims::RecoveryClaims`
//! are one type.
//!
//! # Checks
//!
//! [`verify_recovery_token`] checks, in this order: size ([`MAX_TOKEN_LEN`]), the signature,
//! the claims' form, then [`RecoveryClaims::check`]: the lifetime (`exp - iat` at most
//! [`MAX_LIFETIME`], 30 days), the CTL fingerprint and the installation against the device's
//! [`Expectation`], then time: `iat` at most [`CLOCK_SKEW`] (300 s) in the future, and
//! `now < exp`.
//!
//! **Replay protection lives at the device**, not in the token: a device remembers the token
//! ids (`cti`) it has used, and once it has recovered its CTL is replaced, so the token's
//! fingerprint no longer matches and the same token is refused as `WrongFingerprint`.
//!
//! # Size
//!
//! The test vector (`tests/vectors/recovery-token-1.hex`: a 20-byte issuer, a 19-byte
//! installation ID, an 8-byte kid) is **202 bytes**: 155 bytes (66 of them the signature, 39
//! the fingerprint's and 18 the token id's claims) plus the lengths of the issuer, the
//! installation ID and the kid, each one byte more from 24 bytes on. The largest we make or
//! accept is [`MAX_TOKEN_LEN`].

pub use steward_claims::recovery::{
    CLAIM_CTI, CLAIM_CTL_FINGERPRINT, CLAIM_EXP, CLAIM_IAT, CLAIM_INSTALLATION, CLAIM_ISS,
    CLOCK_SKEW, ClaimError, Expectation, MAX_LIFETIME, MAX_NAME_LEN, MAX_TOKEN_LEN, RecoveryClaims,
};

use crate::cose::{CoseError, SigningKey, VerifyingKey, cose_sign1_es256, cose_verify1_es256};

/// Why a recovery token was refused (or could not be made). `Display` carries no category
/// prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryError {
    /// A well-formed COSE_Sign1 that the vendor key did not sign.
    #[error("bad signature on the recovery token")]
    Signature,
    /// Not a token we accept: not a COSE_Sign1 (see [`crate::cose`]), over [`MAX_TOKEN_LEN`],
    /// or claims that break the
    /// [rules](steward_claims::recovery#strict-decoding).
    #[error("{0}")]
    Malformed(String),
    /// The token is for another CTL (or the device has already recovered).
    #[error("the recovery token is for another CTL")]
    WrongFingerprint,
    /// The token is for another installation.
    #[error("the recovery token is for another installation")]
    WrongInstallation,
    /// `now >= exp`.
    #[error("the recovery token has expired")]
    Expired,
    /// `iat` is more than [`CLOCK_SKEW`] in the future.
    #[error("the recovery token is not valid yet")]
    NotYetValid,
    /// `exp - iat` is over [`MAX_LIFETIME`].
    #[error("the recovery token lives longer than {MAX_LIFETIME} s")]
    Lifetime,
    /// Signing failed.
    #[error("{0}")]
    Sign(String),
}

impl From<ClaimError> for RecoveryError {
    fn from(error: ClaimError) -> Self {
        match error {
            ClaimError::Malformed(message) => Self::Malformed(message),
            ClaimError::WrongFingerprint => Self::WrongFingerprint,
            ClaimError::WrongInstallation => Self::WrongInstallation,
            ClaimError::Expired => Self::Expired,
            ClaimError::NotYetValid => Self::NotYetValid,
            ClaimError::Lifetime => Self::Lifetime,
        }
    }
}

/// Signs `claims` as a recovery token (see the [format](self#format)) with the vendor recovery
/// key, `kid` naming it (empty for none). `Malformed` for claims that break the rules or a token
/// over [`MAX_TOKEN_LEN`], `Lifetime` for one that would live over [`MAX_LIFETIME`].
pub fn sign_recovery_token(
    signing_key: &SigningKey,
    kid: &[u8],
    claims: &RecoveryClaims,
) -> Result<Vec<u8>, RecoveryError> {
    let payload = claims.encode()?;
    claims.check_lifetime()?;
    let token = cose_sign1_es256(signing_key, kid, &payload).map_err(|e| match e {
        CoseError::Invalid(message) => RecoveryError::Malformed(message),
        other => RecoveryError::Sign(other.to_string()),
    })?;
    if token.len() > MAX_TOKEN_LEN {
        return Err(RecoveryError::Malformed(format!(
            "token of {} bytes is over the {MAX_TOKEN_LEN}-byte limit",
            token.len()
        )));
    }
    Ok(token)
}

/// Verifies a recovery token with the vendor's public recovery key and checks it against what
/// the device expects (see [Checks](self#checks)); returns its claims. The kid is not compared
/// with anything.
pub fn verify_recovery_token(
    verifying_key: &VerifyingKey,
    token: &[u8],
    expect: &Expectation<'_>,
) -> Result<RecoveryClaims, RecoveryError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(RecoveryError::Malformed(format!(
            "token of {} bytes is over the {MAX_TOKEN_LEN}-byte limit",
            token.len()
        )));
    }
    let (payload, _kid) = cose_verify1_es256(verifying_key, token).map_err(|e| match e {
        CoseError::BadSignature => RecoveryError::Signature,
        other => RecoveryError::Malformed(format!("recovery token: {other}")),
    })?;
    let claims = RecoveryClaims::decode(&payload)?;
    claims.check(expect)?;
    Ok(claims)
}
