//! What the PKI stores: issued certificates with their revocation state, the allow-list and the
//! CRL number, behind the [`PkiStore`] seam (the server implements it on sled;
//! [`MemoryPkiStore`] serves tests and tools).
//!
//! # Stored format
//!
//! An [`IssuedRecord`] is CBOR `[version, serial, endpoint, profile, not_before, not_after, der,
//! issued_at, revocation]` with `version` = [`ISSUED_RECORD_VERSION`]. The version comes first
//! so that a later layout can be told apart, and a reader refuses versions it does not know
//! instead of misreading them. Times are unix seconds. A revocation is `[at, reason]` or null,
//! the reason stored as its RFC 5280 code.

mod memory;

pub use memory::MemoryPkiStore;

use std::fmt;

use minicbor::data::Type;
use minicbor::{Decode, Decoder, Encode, Encoder};
use serde::{Deserialize, Serialize};

use crate::ca::Serial;

/// Layout version of [`IssuedRecord`]'s CBOR encoding.
pub const ISSUED_RECORD_VERSION: u32 = 1;

/// A certificate this CA issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedRecord {
    pub serial: Serial,
    /// The LwM2M endpoint name the certificate was issued to.
    pub endpoint: String,
    /// Name of the profile it was issued under.
    pub profile: String,
    pub not_before: u64,
    pub not_after: u64,
    /// The certificate, DER.
    pub der: Vec<u8>,
    pub issued_at: u64,
    pub revoked: Option<Revocation>,
}

/// When and why a certificate was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct Revocation {
    /// Unix seconds.
    #[n(0)]
    pub at: u64,
    #[n(1)]
    pub reason: RevocationReason,
}

/// CRLReason, RFC 5280 §5.3.1 (code 7 is unused there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationReason {
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    CertificateHold,
    RemoveFromCrl,
    PrivilegeWithdrawn,
    AaCompromise,
}

impl RevocationReason {
    pub const ALL: [RevocationReason; 10] = [
        RevocationReason::Unspecified,
        RevocationReason::KeyCompromise,
        RevocationReason::CaCompromise,
        RevocationReason::AffiliationChanged,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
        RevocationReason::CertificateHold,
        RevocationReason::RemoveFromCrl,
        RevocationReason::PrivilegeWithdrawn,
        RevocationReason::AaCompromise,
    ];

    /// The RFC 5280 reasonCode value.
    pub fn code(self) -> u8 {
        match self {
            RevocationReason::Unspecified => 0,
            RevocationReason::KeyCompromise => 1,
            RevocationReason::CaCompromise => 2,
            RevocationReason::AffiliationChanged => 3,
            RevocationReason::Superseded => 4,
            RevocationReason::CessationOfOperation => 5,
            RevocationReason::CertificateHold => 6,
            RevocationReason::RemoveFromCrl => 8,
            RevocationReason::PrivilegeWithdrawn => 9,
            RevocationReason::AaCompromise => 10,
        }
    }

    /// The reason for an RFC 5280 reasonCode value; `None` for 7 and values above 10.
    pub fn from_code(code: u8) -> Option<RevocationReason> {
        RevocationReason::ALL.into_iter().find(|r| r.code() == code)
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The RFC 5280 ASN.1 names, as CRL dumps print them.
        f.write_str(match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "keyCompromise",
            RevocationReason::CaCompromise => "cACompromise",
            RevocationReason::AffiliationChanged => "affiliationChanged",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessationOfOperation",
            RevocationReason::CertificateHold => "certificateHold",
            RevocationReason::RemoveFromCrl => "removeFromCRL",
            RevocationReason::PrivilegeWithdrawn => "privilegeWithdrawn",
            RevocationReason::AaCompromise => "aACompromise",
        })
    }
}

impl<C> Encode<C> for RevocationReason {
    fn encode<W: minicbor::encode::Write>(
        &self,
        e: &mut Encoder<W>,
        _ctx: &mut C,
    ) -> Result<(), minicbor::encode::Error<W::Error>> {
        e.u8(self.code())?;
        Ok(())
    }
}

impl<'b, C> Decode<'b, C> for RevocationReason {
    fn decode(d: &mut Decoder<'b>, _ctx: &mut C) -> Result<Self, minicbor::decode::Error> {
        let code = d.u8()?;
        RevocationReason::from_code(code).ok_or_else(|| {
            minicbor::decode::Error::message(format!("unknown revocation reason code {code}"))
        })
    }
}

impl IssuedRecord {
    /// Whether the certificate is revoked. certificateHold counts: a held certificate must not
    /// be accepted until the hold is lifted.
    pub fn is_revoked(&self) -> bool {
        self.revoked.is_some()
    }

    /// The stored encoding.
    pub fn to_cbor(&self) -> Vec<u8> {
        // Encoding into a Vec cannot fail (its writer is infallible).
        minicbor::to_vec(self).unwrap_or_default()
    }

    /// Decodes the stored encoding, refusing unknown versions and trailing bytes.
    pub fn from_cbor(bytes: &[u8]) -> Result<IssuedRecord, PkiStoreError> {
        let mut d = Decoder::new(bytes);
        let record: IssuedRecord = d
            .decode()
            .map_err(|e| PkiStoreError::Corrupt(format!("issued record: {e}")))?;
        if d.position() != bytes.len() {
            return Err(PkiStoreError::Corrupt(
                "issued record: trailing bytes".into(),
            ));
        }
        Ok(record)
    }
}

impl<C> Encode<C> for IssuedRecord {
    fn encode<W: minicbor::encode::Write>(
        &self,
        e: &mut Encoder<W>,
        ctx: &mut C,
    ) -> Result<(), minicbor::encode::Error<W::Error>> {
        e.array(9)?
            .u32(ISSUED_RECORD_VERSION)?
            .encode_with(&self.serial, ctx)?
            .str(&self.endpoint)?
            .str(&self.profile)?
            .u64(self.not_before)?
            .u64(self.not_after)?
            .bytes(&self.der)?
            .u64(self.issued_at)?;
        match &self.revoked {
            Some(r) => e.encode_with(r, ctx)?,
            None => e.null()?,
        };
        Ok(())
    }
}

impl<'b, C> Decode<'b, C> for IssuedRecord {
    fn decode(d: &mut Decoder<'b>, ctx: &mut C) -> Result<Self, minicbor::decode::Error> {
        let len = d.array()?;
        let version = d.u32()?;
        if version != ISSUED_RECORD_VERSION {
            return Err(minicbor::decode::Error::message(format!(
                "issued record version {version} is not supported (this build reads {ISSUED_RECORD_VERSION})"
            )));
        }
        if len != Some(9) {
            return Err(minicbor::decode::Error::message(
                "issued record v1 must be an array of 9",
            ));
        }
        let serial = d.decode_with(ctx)?;
        let endpoint = d.str()?.to_owned();
        let profile = d.str()?.to_owned();
        let not_before = d.u64()?;
        let not_after = d.u64()?;
        let der = d.bytes()?.to_vec();
        let issued_at = d.u64()?;
        let revoked = if d.datatype()? == Type::Null {
            d.null()?;
            None
        } else {
            Some(d.decode_with(ctx)?)
        };
        Ok(IssuedRecord {
            serial,
            endpoint,
            profile,
            not_before,
            not_after,
            der,
            issued_at,
            revoked,
        })
    }
}

/// Where a [`PkiStoreError`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultDomain {
    /// The storage failed (I/O, corruption, backend): answer 5.00 and alert.
    Storage,
    /// The record the operation needs does not exist.
    NotFound,
    /// The operation conflicts with what is stored, or its input cannot be stored.
    Conflict,
}

/// Errors of a [`PkiStore`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PkiStoreError {
    #[error("PKI store backend error: {0}")]
    Backend(String),
    #[error("PKI store corrupted: {0}")]
    Corrupt(String),
    #[error("no issued certificate with serial {0}")]
    UnknownSerial(Serial),
    #[error("serial {0} is already recorded")]
    SerialTaken(Serial),
    #[error("invalid PKI store input: {0}")]
    Invalid(String),
}

impl PkiStoreError {
    pub fn domain(&self) -> FaultDomain {
        match self {
            PkiStoreError::Backend(_) | PkiStoreError::Corrupt(_) => FaultDomain::Storage,
            PkiStoreError::UnknownSerial(_) => FaultDomain::NotFound,
            PkiStoreError::SerialTaken(_) | PkiStoreError::Invalid(_) => FaultDomain::Conflict,
        }
    }
}

/// The PKI's storage seam. Object safe; methods block (disk I/O), and every mutation is durable
/// when it returns, as with the server's `Store`. Lookups of something absent return
/// `Ok(None)` / an empty list, not an error.
pub trait PkiStore: Send + Sync {
    /// Records a newly issued certificate. Fails with [`PkiStoreError::SerialTaken`] if the
    /// serial is already recorded (serials are unique per issuer, RFC 5280 §4.1.2.2).
    fn put_issued(&self, record: &IssuedRecord) -> Result<(), PkiStoreError>;

    fn issued(&self, serial: &Serial) -> Result<Option<IssuedRecord>, PkiStoreError>;

    /// Certificates issued to an endpoint, oldest first (by `issued_at`, then serial).
    fn issued_for_endpoint(&self, endpoint: &str) -> Result<Vec<IssuedRecord>, PkiStoreError>;

    /// Marks a certificate revoked. Returns `true` if it was not revoked before, `false` if it
    /// already was (the first revocation is kept: its time is what relying parties have seen).
    /// Fails with [`PkiStoreError::UnknownSerial`] for a serial this CA did not issue.
    fn revoke(
        &self,
        serial: &Serial,
        reason: RevocationReason,
        at: u64,
    ) -> Result<bool, PkiStoreError>;

    /// All revoked certificates (for the CRL), ordered by serial.
    fn revoked(&self) -> Result<Vec<IssuedRecord>, PkiStoreError>;

    fn allow_list_contains(&self, device_id: &str) -> Result<bool, PkiStoreError>;

    /// Adds a device ID; `true` if it was not on the list.
    fn allow_list_put(&self, device_id: &str) -> Result<bool, PkiStoreError>;

    /// Removes a device ID; `true` if it was on the list.
    fn allow_list_remove(&self, device_id: &str) -> Result<bool, PkiStoreError>;

    /// The whole allow-list, sorted.
    fn allow_list_all(&self) -> Result<Vec<String>, PkiStoreError>;

    /// The next CRL number: 1, 2, 3, ... across restarts (RFC 5280 §5.2.3 requires them to
    /// increase monotonically).
    fn next_crl_number(&self) -> Result<u64, PkiStoreError>;
}
