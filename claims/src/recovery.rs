//! The claims of the trust-chain recovery token (seed 000, issue 8): the claim table, their
//! strict deterministic encoding and the checks a device makes, without the signature.
//!
//! The token itself (a COSE_Sign1 over these claims, signed by the vendor) is made and verified
//! in `steward_pki::recovery`; a plugin verifies its signature through the host
//! (`cose_verify`) and decodes the payload it gets back with [`RecoveryClaims::decode`].
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
//! | −65537 | [`CLAIM_CTL_FINGERPRINT`] | SHA-256 of the canonical CTL it replaces (`steward_pki::ctl::Ctl::fingerprint`) | bstr, 32 bytes |
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
//! [`RecoveryClaims::check`] checks decoded claims against what a device expects
//! ([`Expectation`]), in this order: the lifetime (`exp - iat` at most [`MAX_LIFETIME`], 30
//! days), the CTL fingerprint, the installation, then time: `iat` at most [`CLOCK_SKEW`]
//! (300 s) in the future, and `now < exp`. [`RecoveryClaims::check_lifetime`] and
//! [`RecoveryClaims::check_time`] are the parts that do not depend on the device (what a server
//! checks before it relays a token).

use minicbor::Decoder;
use minicbor::data::Type;

use crate::cbor::{self, MAJOR_BYTES, MAJOR_MAP, MAJOR_UNSIGNED};

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
/// The largest token (the signed COSE_Sign1, not just the claims) anyone signs or verifies:
/// 1 KiB, checked before decoding.
pub const MAX_TOKEN_LEN: usize = 1024;
/// The size of a CTL fingerprint (SHA-256), in bytes.
pub const FINGERPRINT_LEN: usize = 32;
/// The size of a token id (`cti`), in bytes.
pub const TOKEN_ID_LEN: usize = 16;

/// The claims of a recovery token (see the [claim table](self#claim-table)). Times are seconds
/// since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryClaims {
    /// `iss`: the vendor.
    pub issuer: String,
    /// The fingerprint of the CTL the token lets a device replace.
    pub ctl_fingerprint: [u8; FINGERPRINT_LEN],
    /// The installation the token is scoped to.
    pub installation: String,
    /// `iat`.
    pub issued_at: u64,
    /// `exp`.
    pub expires_at: u64,
    /// `cti`: unique per token; devices remember the ones they used.
    pub token_id: [u8; TOKEN_ID_LEN],
}

/// What a device expects of a recovery token: the fingerprint of the CTL it holds, its
/// installation ID and its clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expectation<'a> {
    /// The fingerprint of the device's current CTL (`steward_pki::ctl::Ctl::fingerprint`).
    pub fingerprint: [u8; FINGERPRINT_LEN],
    /// The installation the device belongs to.
    pub installation: &'a str,
    /// Now, in seconds since the Unix epoch.
    pub now: u64,
}

/// Why recovery claims were refused (or could not be encoded). `Display` carries no category
/// prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// Claims that break the [rules](self#strict-decoding).
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
}

impl RecoveryClaims {
    /// The claims as deterministic CBOR (the token's payload). `Malformed` if a claim breaks
    /// the [rules](self#strict-decoding) (names out of 1..=128 bytes, `exp <= iat`).
    pub fn encode(&self) -> Result<Vec<u8>, ClaimError> {
        self.check_form()?;
        Ok(self.encode_unchecked())
    }

    /// Decodes a claims map, accepting only what [`RecoveryClaims::encode`] makes (see the
    /// [rules](self#strict-decoding)). `Malformed` otherwise.
    pub fn decode(bytes: &[u8]) -> Result<Self, ClaimError> {
        let malformed = |e: minicbor::decode::Error| ClaimError::Malformed(format!("claims: {e}"));
        let mut decoder = Decoder::new(bytes);
        let count = decoder
            .map()
            .map_err(malformed)?
            .ok_or_else(|| ClaimError::Malformed("claims: indefinite-length map".into()))?;
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
                return Err(ClaimError::Malformed(
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
                    return Err(ClaimError::Malformed(format!(
                        "claims: unknown claim {other}"
                    )));
                }
            };
            if duplicate {
                return Err(ClaimError::Malformed(format!(
                    "claims: duplicate claim {key}"
                )));
            }
        }
        if decoder.position() != bytes.len() {
            return Err(ClaimError::Malformed(
                "claims: trailing bytes after the map".into(),
            ));
        }
        let missing = |claim: &str| ClaimError::Malformed(format!("claims: no {claim}"));
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
            return Err(ClaimError::Malformed(
                "claims are not in canonical encoding".into(),
            ));
        }
        Ok(claims)
    }

    /// Checks the claims against what a device expects (see [Checks](self#checks)): the
    /// lifetime, the fingerprint, the installation, then `iat` and `exp` against `expect.now`.
    /// The first failure wins.
    pub fn check(&self, expect: &Expectation<'_>) -> Result<(), ClaimError> {
        self.check_lifetime()?;
        if self.ctl_fingerprint != expect.fingerprint {
            return Err(ClaimError::WrongFingerprint);
        }
        if self.installation != expect.installation {
            return Err(ClaimError::WrongInstallation);
        }
        self.check_time(expect.now)
    }

    /// `Lifetime` when `exp - iat` is over [`MAX_LIFETIME`] (`Malformed` when `exp <= iat`,
    /// which [`RecoveryClaims::decode`] already refuses).
    pub fn check_lifetime(&self) -> Result<(), ClaimError> {
        let Some(lifetime) = self.expires_at.checked_sub(self.issued_at) else {
            return Err(ClaimError::Malformed("claims: exp is not after iat".into()));
        };
        if lifetime > MAX_LIFETIME {
            return Err(ClaimError::Lifetime);
        }
        Ok(())
    }

    /// The time checks at `now` (seconds since the Unix epoch): `NotYetValid` when `iat` is
    /// more than [`CLOCK_SKEW`] in the future, `Expired` when `now >= exp`.
    pub fn check_time(&self, now: u64) -> Result<(), ClaimError> {
        if self.issued_at > now.saturating_add(CLOCK_SKEW) {
            return Err(ClaimError::NotYetValid);
        }
        if now >= self.expires_at {
            return Err(ClaimError::Expired);
        }
        Ok(())
    }

    fn check_form(&self) -> Result<(), ClaimError> {
        for (what, value) in [("iss", &self.issuer), ("installation", &self.installation)] {
            if value.is_empty() || value.len() > MAX_NAME_LEN {
                return Err(ClaimError::Malformed(format!(
                    "claims: {what} of {} bytes, not 1..={MAX_NAME_LEN}",
                    value.len()
                )));
            }
        }
        if self.expires_at <= self.issued_at {
            return Err(ClaimError::Malformed("claims: exp is not after iat".into()));
        }
        Ok(())
    }

    fn encode_unchecked(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.issuer.len() + self.installation.len());
        cbor::head(&mut out, MAJOR_MAP, 6);
        cbor::int(&mut out, CLAIM_ISS);
        cbor::text(&mut out, &self.issuer);
        cbor::int(&mut out, CLAIM_EXP);
        cbor::head(&mut out, MAJOR_UNSIGNED, self.expires_at);
        cbor::int(&mut out, CLAIM_IAT);
        cbor::head(&mut out, MAJOR_UNSIGNED, self.issued_at);
        cbor::int(&mut out, CLAIM_CTI);
        cbor::head(&mut out, MAJOR_BYTES, self.token_id.len() as u64);
        out.extend_from_slice(&self.token_id);
        cbor::int(&mut out, CLAIM_CTL_FINGERPRINT);
        cbor::bytes(&mut out, &self.ctl_fingerprint);
        cbor::int(&mut out, CLAIM_INSTALLATION);
        cbor::text(&mut out, &self.installation);
        out
    }
}

fn name(decoder: &mut Decoder<'_>, claim: &str) -> Result<String, ClaimError> {
    if decoder.datatype().ok() != Some(Type::String) {
        return Err(ClaimError::Malformed(format!(
            "claims: {claim} is not a definite text string"
        )));
    }
    decoder
        .str()
        .map(str::to_owned)
        .map_err(|e| ClaimError::Malformed(format!("claims: {claim}: {e}")))
}

fn uint(decoder: &mut Decoder<'_>, claim: &str) -> Result<u64, ClaimError> {
    if !matches!(
        decoder.datatype().ok(),
        Some(Type::U8 | Type::U16 | Type::U32 | Type::U64)
    ) {
        return Err(ClaimError::Malformed(format!(
            "claims: {claim} is not an unsigned integer"
        )));
    }
    decoder
        .u64()
        .map_err(|e| ClaimError::Malformed(format!("claims: {claim}: {e}")))
}

fn fixed<const N: usize>(decoder: &mut Decoder<'_>, claim: &str) -> Result<[u8; N], ClaimError> {
    if decoder.datatype().ok() != Some(Type::Bytes) {
        return Err(ClaimError::Malformed(format!(
            "claims: {claim} is not a definite byte string"
        )));
    }
    let bytes = decoder
        .bytes()
        .map_err(|e| ClaimError::Malformed(format!("claims: {claim}: {e}")))?;
    bytes.try_into().map_err(|_| {
        ClaimError::Malformed(format!("claims: {claim} is {} bytes, not {N}", bytes.len()))
    })
}
