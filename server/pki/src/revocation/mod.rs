//! Revocation: CRLs (RFC 5280 §5) and an OCSP responder plus its client side (RFC 6960).
//!
//! Seed 003 asks for "a separate validation service" so that devices sleeping in a warehouse
//! can at least learn that the server's certificate was revoked. The server publishes a CRL
//! and answers OCSP; the simulated device uses [`ocsp::request_for`] and
//! [`ocsp::check_response`] before it trusts the LwM2M server.
//!
//! Everything here is pure: times come in as arguments (`now`), the revocation database is a
//! lookup closure, and the CA is an openssl certificate and key handed in by the caller.
//!
//! ## Serial numbers
//!
//! A serial number is passed around as its unsigned big-endian magnitude without leading zero
//! octets (what `BigNum::to_vec` gives, see [`serial_of`]). The DER INTEGER form adds a zero
//! octet when the high bit is set; [`normalize_serial`] strips it so that a lookup keyed by
//! `serial_of(cert)` finds the serial that arrives in an OCSP CertID.

pub mod crl;
pub mod ocsp;

mod time;

use std::time::SystemTime;

use openssl::error::ErrorStack;
use openssl::x509::X509Ref;

/// The reason of a revocation: one type for the records, CRLs and OCSP.
pub use crate::records::RevocationReason;

/// The x509-cert forms of [`RevocationReason`], for CRL entries and OCSP responses.
impl RevocationReason {
    pub(crate) fn to_x509(self) -> x509_cert::ext::pkix::CrlReason {
        use x509_cert::ext::pkix::CrlReason as R;
        match self {
            Self::Unspecified => R::Unspecified,
            Self::KeyCompromise => R::KeyCompromise,
            Self::CaCompromise => R::CaCompromise,
            Self::AffiliationChanged => R::AffiliationChanged,
            Self::Superseded => R::Superseded,
            Self::CessationOfOperation => R::CessationOfOperation,
            Self::CertificateHold => R::CertificateHold,
            Self::RemoveFromCrl => R::RemoveFromCRL,
            Self::PrivilegeWithdrawn => R::PrivilegeWithdrawn,
            Self::AaCompromise => R::AaCompromise,
        }
    }

    pub(crate) fn from_x509(reason: x509_cert::ext::pkix::CrlReason) -> Self {
        use x509_cert::ext::pkix::CrlReason as R;
        match reason {
            R::Unspecified => Self::Unspecified,
            R::KeyCompromise => Self::KeyCompromise,
            R::CaCompromise => Self::CaCompromise,
            R::AffiliationChanged => Self::AffiliationChanged,
            R::Superseded => Self::Superseded,
            R::CessationOfOperation => Self::CessationOfOperation,
            R::CertificateHold => Self::CertificateHold,
            R::RemoveFromCRL => Self::RemoveFromCrl,
            R::PrivilegeWithdrawn => Self::PrivilegeWithdrawn,
            R::AaCompromise => Self::AaCompromise,
        }
    }
}

/// The status of one certificate, as the CA's records know it (input of the OCSP responder)
/// and as an OCSP response reports it (output of [`ocsp::check_response`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertStatus {
    /// Issued by us and not revoked.
    Good,
    /// Revoked at `revoked_at`, for `reason` if one was recorded.
    Revoked {
        /// When the revocation took effect.
        revoked_at: SystemTime,
        /// Why, if known.
        reason: Option<RevocationReason>,
    },
    /// Not known to the responder (another issuer, or a serial we never issued).
    Unknown,
}

/// One entry of a CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// Serial number, unsigned big-endian (see the module docs).
    pub serial: Vec<u8>,
    /// Revocation date.
    pub revoked_at: SystemTime,
    /// reasonCode entry extension; `None` leaves the extension out (RFC 5280 §5.3.1 says to
    /// omit it rather than write `unspecified`).
    pub reason: Option<RevocationReason>,
}

/// The serial number of `cert` in the form used throughout this module.
pub fn serial_of(cert: &X509Ref) -> Result<Vec<u8>, ErrorStack> {
    Ok(cert.serial_number().to_bn()?.to_vec())
}

/// Strips leading zero octets, turning a DER INTEGER content into the unsigned magnitude.
/// A zero serial (non-conforming, but RFC 5280 says to cope) becomes the empty slice, as
/// `BigNum::to_vec` also gives for zero.
pub fn normalize_serial(serial: &[u8]) -> &[u8] {
    let start = serial.iter().position(|&b| b != 0).unwrap_or(serial.len());
    &serial[start..]
}

/// The contents of the subjectPublicKey BIT STRING of an SPKI (the input of the OCSP
/// issuerKeyHash, the responder KeyHash and the RFC 5280 method-1 key identifier).
pub(crate) fn spki_key_bits(spki_der: &[u8]) -> Result<Vec<u8>, spki::Error> {
    use der::Decode;
    let spki = spki::SubjectPublicKeyInfoRef::from_der(spki_der)?;
    Ok(spki.subject_public_key.raw_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_match_x509_cert() {
        for reason in RevocationReason::ALL {
            // x509-cert's enum has the RFC 5280 codes as discriminants.
            assert_eq!(reason.to_x509() as u32, u32::from(reason.code()));
            assert_eq!(RevocationReason::from_x509(reason.to_x509()), reason);
        }
    }

    #[test]
    fn normalize_strips_der_sign_octet() {
        assert_eq!(normalize_serial(&[0x00, 0x80, 0x01]), &[0x80, 0x01]);
        assert_eq!(normalize_serial(&[0x01]), &[0x01]);
        assert_eq!(normalize_serial(&[0x00]), &[] as &[u8]);
    }
}
