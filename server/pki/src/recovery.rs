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
//! These constants are the one place where the keys are fixed; server, plugins and client-sim
//! use them from here.
//!
//! | key | constant | claim | value |
//! |---|---|---|---|
//! | 1 | [`CLAIM_ISS`] | issuer (the vendor) | tstr, 1..=128 bytes |
//! | 4 | [`CLAIM_EXP`] | expiry, seconds since the Unix epoch | uint, > iat |
//! | 6 | [`CLAIM_IAT`] | issued at, seconds since the Unix epoch | uint |
//! | 7 | [`CLAIM_CTI`] | token id, unique per token | bstr, 16 bytes |
//! | −65537 | [`CLAIM_CTL_FINGERPRINT`] | SHA-256 of the canonical CTL it replaces ([`crate::ctl::Ctl::fingerprint`]) | bstr, 32 bytes |
//! | −65538 | [`CLAIM_INSTALLATION`] | the installation ID it is scoped to | tstr, 1..=128 bytes |
//!
//! All six claims are required. The map is deterministic CBOR (RFC 8949 §4.2.1): definite
//! length, shortest heads, keys in bytewise order of their encodings, which is the order of the
//! table (`01`, `04`, `06`, `07`, `3a00010000`, `3a00010001`). Times are integers, not the
//! floats NumericDate allows.
//!
//! # Strict decoding
//!
//! [`RecoveryClaims::decode`] accepts exactly the bytes [`RecoveryClaims::encode`] makes:
//! **unknown claims are refused** (a claim added later to narrow a token, say a device list,
//! must not be ignored by a device that does not know it; new claims mean a new table here),
//! duplicate keys are refused, all claims must be present with the types and sizes above, in
//! canonical order and encoding, with nothing after the map, and `exp > iat`.
//!
//! # Checks
//!
//! [`verify_recovery_token`] checks, in this order: size ([`MAX_TOKEN_LEN`]), the signature,
//! the claims' form, the lifetime (`exp - iat` at most [`MAX_LIFETIME`], 30 days), the CTL
//! fingerprint and the installation against the device's [`Expectation`], then time: `iat` at
//! most [`CLOCK_SKEW`] (300 s) in the future, and `now < exp`.
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
//! accept is
//! [`MAX_TOKEN_LEN`].

use minicbor::Decoder;
use minicbor::data::Type;

use crate::cose::{CoseError, SigningKey, VerifyingKey, cose_sign1_es256, cose_verify1_es256};
use crate::ctl::{MAJOR_BYTES, MAJOR_MAP, MAJOR_NEGATIVE, MAJOR_TEXT, MAJOR_UNSIGNED, cbor_head};

/// CWT `iss` (RFC 8392): the vendor that issued the token.
pub const CLAIM_ISS: i64 = 1;
/// CWT `exp` (RFC 8392): the token is refused from this time on.
pub const CLAIM_EXP: i64 = 4;
/// CWT `iat` (RFC 8392): when the vendor issued the token.
pub const CLAIM_IAT: i64 = 6;
/// CWT `cti` (RFC 8392): the token's unique id, 16 bytes.
pub const CLAIM_CTI: i64 = 7;
/// Private use: SHA-256 of the canonical encoding of the CTL the token lets a device replace.
pub const CLAIM_CTL_FINGERPRINT: i64 = -65537;
/// Private use: the installation the token is scoped to.
pub const CLAIM_INSTALLATION: i64 = -65538;

/// The longest issuer and installation ID, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// The longest a token may live: `exp - iat` of at most 30 days, in seconds.
pub const MAX_LIFETIME: u64 = 30 * 24 * 60 * 60;
/// How far in the future `iat` may be before a token is `NotYetValid`: 300 s.
pub const CLOCK_SKEW: u64 = 300;
/// The largest token we sign or verify: 1 KiB (checked before decoding).
pub const MAX_TOKEN_LEN: usize = 1024;

/// The claims of a recovery token (see the [claim table](self#claim-table)). Times are seconds
/// since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryClaims {
    /// `iss`: the vendor.
    pub issuer: String,
    /// The fingerprint of the CTL the token lets a device replace.
    pub ctl_fingerprint: [u8; 32],
    /// The installation the token is scoped to.
    pub installation: String,
    /// `iat`.
    pub issued_at: u64,
    /// `exp`.
    pub expires_at: u64,
    /// `cti`: unique per token; devices remember the ones they used.
    pub token_id: [u8; 16],
}

/// What a device expects of a recovery token: the fingerprint of the CTL it holds, its
/// installation ID and its clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expectation<'a> {
    /// [`crate::ctl::Ctl::fingerprint`] of the device's current CTL.
    pub fingerprint: [u8; 32],
    /// The installation the device belongs to.
    pub installation: &'a str,
    /// Now, in seconds since the Unix epoch.
    pub now: u64,
}

/// Why a recovery token was refused (or could not be made). `Display` carries no category
/// prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryError {
    /// A well-formed COSE_Sign1 that the vendor key did not sign.
    #[error("bad signature on the recovery token")]
    Signature,
    /// Not a token we accept: not a COSE_Sign1 (see [`crate::cose`]), over [`MAX_TOKEN_LEN`],
    /// or claims that break the [rules](self#strict-decoding).
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

impl RecoveryClaims {
    /// The claims as deterministic CBOR (the token's payload). `Malformed` if a claim breaks
    /// the [rules](self#strict-decoding) (names out of 1..=128 bytes, `exp <= iat`).
    pub fn encode(&self) -> Result<Vec<u8>, RecoveryError> {
        self.check_form()?;
        Ok(self.encode_unchecked())
    }

    /// Decodes a claims map, accepting only what [`RecoveryClaims::encode`] makes (see the
    /// [rules](self#strict-decoding)). `Malformed` otherwise.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecoveryError> {
        let malformed =
            |e: minicbor::decode::Error| RecoveryError::Malformed(format!("claims: {e}"));
        let mut decoder = Decoder::new(bytes);
        let count = decoder
            .map()
            .map_err(malformed)?
            .ok_or_else(|| RecoveryError::Malformed("claims: indefinite-length map".into()))?;
        let mut issuer = None;
        let mut expires_at = None;
        let mut issued_at = None;
        let mut token_id = None;
        let mut ctl_fingerprint = None;
        let mut installation = None;
        for _ in 0..count {
            if !matches!(
                decoder.datatype().map_err(malformed)?,
                Type::U8
                    | Type::U16
                    | Type::U32
                    | Type::U64
                    | Type::I8
                    | Type::I16
                    | Type::I32
                    | Type::I64
            ) {
                return Err(RecoveryError::Malformed(
                    "claims: a key is not an integer".into(),
                ));
            }
            let key = decoder.i64().map_err(malformed)?;
            let duplicate = match key {
                CLAIM_ISS => issuer.replace(name(&mut decoder, "iss")?).is_some(),
                CLAIM_EXP => expires_at.replace(uint(&mut decoder, "exp")?).is_some(),
                CLAIM_IAT => issued_at.replace(uint(&mut decoder, "iat")?).is_some(),
                CLAIM_CTI => token_id.replace(fixed(&mut decoder, "cti")?).is_some(),
                CLAIM_CTL_FINGERPRINT => ctl_fingerprint
                    .replace(fixed(&mut decoder, "CTL fingerprint")?)
                    .is_some(),
                CLAIM_INSTALLATION => installation
                    .replace(name(&mut decoder, "installation")?)
                    .is_some(),
                other => {
                    return Err(RecoveryError::Malformed(format!(
                        "claims: unknown claim {other}"
                    )));
                }
            };
            if duplicate {
                return Err(RecoveryError::Malformed(format!(
                    "claims: duplicate claim {key}"
                )));
            }
        }
        if decoder.position() != bytes.len() {
            return Err(RecoveryError::Malformed(
                "claims: trailing bytes after the map".into(),
            ));
        }
        let missing = |claim: &str| RecoveryError::Malformed(format!("claims: no {claim}"));
        let claims = Self {
            issuer: issuer.ok_or_else(|| missing("iss"))?,
            ctl_fingerprint: ctl_fingerprint.ok_or_else(|| missing("CTL fingerprint"))?,
            installation: installation.ok_or_else(|| missing("installation"))?,
            issued_at: issued_at.ok_or_else(|| missing("iat"))?,
            expires_at: expires_at.ok_or_else(|| missing("exp"))?,
            token_id: token_id.ok_or_else(|| missing("cti"))?,
        };
        claims.check_form()?;
        // Catches keys out of canonical order and non-shortest heads.
        if claims.encode_unchecked() != bytes {
            return Err(RecoveryError::Malformed(
                "claims are not in canonical encoding".into(),
            ));
        }
        Ok(claims)
    }

    fn check_form(&self) -> Result<(), RecoveryError> {
        for (what, value) in [("iss", &self.issuer), ("installation", &self.installation)] {
            if value.is_empty() || value.len() > MAX_NAME_LEN {
                return Err(RecoveryError::Malformed(format!(
                    "claims: {what} of {} bytes, not 1..={MAX_NAME_LEN}",
                    value.len()
                )));
            }
        }
        if self.expires_at <= self.issued_at {
            return Err(RecoveryError::Malformed(
                "claims: exp is not after iat".into(),
            ));
        }
        Ok(())
    }

    fn encode_unchecked(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.issuer.len() + self.installation.len());
        cbor_head(&mut out, MAJOR_MAP, 6);
        int(&mut out, CLAIM_ISS);
        cbor_head(&mut out, MAJOR_TEXT, self.issuer.len() as u64);
        out.extend_from_slice(self.issuer.as_bytes());
        int(&mut out, CLAIM_EXP);
        cbor_head(&mut out, MAJOR_UNSIGNED, self.expires_at);
        int(&mut out, CLAIM_IAT);
        cbor_head(&mut out, MAJOR_UNSIGNED, self.issued_at);
        int(&mut out, CLAIM_CTI);
        cbor_head(&mut out, MAJOR_BYTES, self.token_id.len() as u64);
        out.extend_from_slice(&self.token_id);
        int(&mut out, CLAIM_CTL_FINGERPRINT);
        cbor_head(&mut out, MAJOR_BYTES, self.ctl_fingerprint.len() as u64);
        out.extend_from_slice(&self.ctl_fingerprint);
        int(&mut out, CLAIM_INSTALLATION);
        cbor_head(&mut out, MAJOR_TEXT, self.installation.len() as u64);
        out.extend_from_slice(self.installation.as_bytes());
        out
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
    if claims.expires_at - claims.issued_at > MAX_LIFETIME {
        return Err(RecoveryError::Lifetime);
    }
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
    // `decode` checked exp > iat.
    if claims.expires_at - claims.issued_at > MAX_LIFETIME {
        return Err(RecoveryError::Lifetime);
    }
    if claims.ctl_fingerprint != expect.fingerprint {
        return Err(RecoveryError::WrongFingerprint);
    }
    if claims.installation != expect.installation {
        return Err(RecoveryError::WrongInstallation);
    }
    if claims.issued_at > expect.now.saturating_add(CLOCK_SKEW) {
        return Err(RecoveryError::NotYetValid);
    }
    if expect.now >= claims.expires_at {
        return Err(RecoveryError::Expired);
    }
    Ok(claims)
}

/// Appends an integer map key in its shortest form.
fn int(out: &mut Vec<u8>, value: i64) {
    if value >= 0 {
        cbor_head(out, MAJOR_UNSIGNED, value.unsigned_abs());
    } else {
        // -1 - value, without overflow for i64::MIN.
        cbor_head(out, MAJOR_NEGATIVE, (value + 1).unsigned_abs());
    }
}

fn name(decoder: &mut Decoder<'_>, claim: &str) -> Result<String, RecoveryError> {
    if decoder.datatype().ok() != Some(Type::String) {
        return Err(RecoveryError::Malformed(format!(
            "claims: {claim} is not a definite text string"
        )));
    }
    decoder
        .str()
        .map(str::to_owned)
        .map_err(|e| RecoveryError::Malformed(format!("claims: {claim}: {e}")))
}

fn uint(decoder: &mut Decoder<'_>, claim: &str) -> Result<u64, RecoveryError> {
    if !matches!(
        decoder.datatype().ok(),
        Some(Type::U8 | Type::U16 | Type::U32 | Type::U64)
    ) {
        return Err(RecoveryError::Malformed(format!(
            "claims: {claim} is not an unsigned integer"
        )));
    }
    decoder
        .u64()
        .map_err(|e| RecoveryError::Malformed(format!("claims: {claim}: {e}")))
}

fn fixed<const N: usize>(decoder: &mut Decoder<'_>, claim: &str) -> Result<[u8; N], RecoveryError> {
    if decoder.datatype().ok() != Some(Type::Bytes) {
        return Err(RecoveryError::Malformed(format!(
            "claims: {claim} is not a definite byte string"
        )));
    }
    let bytes = decoder
        .bytes()
        .map_err(|e| RecoveryError::Malformed(format!("claims: {claim}: {e}")))?;
    bytes.try_into().map_err(|_| {
        RecoveryError::Malformed(format!("claims: {claim} is {} bytes, not {N}", bytes.len()))
    })
}
