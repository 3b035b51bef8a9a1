//! Certificate revocation lists (RFC 5280 §5).
//!
//! openssl 0.10.82 has `X509CrlBuilder`, but its `X509RevokedBuilder` can only set the serial
//! and the date: it cannot add the reasonCode entry extension (§5.3.1) that OCSP clients and
//! `openssl crl -text` show to operators. So the list is assembled with the typed `x509-cert`
//! structures and DER-encoded by `der`; openssl only produces the ECDSA signature over the
//! TBSCertList bytes. The result is checked against openssl (`X509Crl::verify`,
//! `openssl verify -crl_check`) in `tests/crl_*.rs`.

use std::time::SystemTime;

use der::Encode;
use der::asn1::{BitString, ObjectIdentifier, OctetString, Uint};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKeyRef, Private};
use openssl::sign::Signer;
use openssl::x509::X509Ref;
use sha1::{Digest, Sha1};
use spki::AlgorithmIdentifierOwned;
use x509_cert::Version;
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::ext::AsExtension;
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, CrlNumber};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;

use super::{RevokedEntry, spki_key_bits, time::x509_time};

/// ecdsa-with-SHA256 (RFC 5758 §3.2); parameters are absent for ECDSA.
pub(crate) const ECDSA_WITH_SHA256: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");

/// Why a CRL could not be built. All of these are mistakes of the caller or of the CA
/// material; none depends on network input.
#[derive(Debug, thiserror::Error)]
pub enum CrlError {
    /// The signing key is not the key certified by the issuer certificate.
    #[error("the signing key does not match the issuer certificate")]
    KeyMismatch,
    /// Only EC keys are supported (the CA is P-256, signatures are ECDSA-SHA256).
    #[error("unsupported CA key type (expected an EC key)")]
    UnsupportedKey,
    /// nextUpdate must be later than thisUpdate.
    #[error("nextUpdate is not after thisUpdate")]
    InvalidUpdateWindow,
    /// A serial number is longer than the 20 octets RFC 5280 §4.1.2.2 allows.
    #[error("serial number {0:02x?} is not a valid RFC 5280 serial")]
    InvalidSerial(Vec<u8>),
    /// DER encoding failed (for example a time outside the encodable range).
    #[error("DER encoding failed: {0}")]
    Encoding(#[from] der::Error),
    /// openssl failed while reading the issuer or signing.
    #[error("openssl: {0}")]
    Crypto(#[from] ErrorStack),
}

/// Builds and signs a v2 CRL for `issuer`.
///
/// Carries the cRLNumber (§5.2.3, the caller keeps it monotonic) and the
/// authorityKeyIdentifier (§5.2.1, the issuer's subjectKeyIdentifier, or the SHA-1 of its key
/// when the certificate has none) extensions, and a reasonCode entry extension for every entry
/// that has a reason. Entries are sorted by serial so that the same revocation state always
/// produces the same TBSCertList.
pub fn build_crl(
    issuer: &X509Ref,
    key: &PKeyRef<Private>,
    entries: &[RevokedEntry],
    crl_number: u64,
    this_update: SystemTime,
    next_update: SystemTime,
) -> Result<Vec<u8>, CrlError> {
    if key.id() != Id::EC {
        return Err(CrlError::UnsupportedKey);
    }
    if !issuer.public_key()?.public_eq(key) {
        return Err(CrlError::KeyMismatch);
    }
    if next_update <= this_update {
        return Err(CrlError::InvalidUpdateWindow);
    }

    let issuer_name: Name = der::Decode::from_der(&issuer.subject_name().to_der()?)?;
    let mut sorted: Vec<&RevokedEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| {
        let (a, b) = (
            super::normalize_serial(&a.serial),
            super::normalize_serial(&b.serial),
        );
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    });
    let revoked = sorted
        .into_iter()
        .map(|entry| revoked_cert(entry, &issuer_name))
        .collect::<Result<Vec<_>, _>>()?;

    let signature_algorithm = AlgorithmIdentifierOwned {
        oid: ECDSA_WITH_SHA256,
        parameters: None,
    };
    let tbs = TbsCertList {
        version: Version::V2,
        signature: signature_algorithm.clone(),
        issuer: issuer_name.clone(),
        this_update: x509_time(this_update)?,
        next_update: Some(x509_time(next_update)?),
        // RFC 5280 §5.1.2.6: when there are no revoked certificates the list is absent,
        // not an empty SEQUENCE.
        revoked_certificates: (!revoked.is_empty()).then_some(revoked),
        crl_extensions: Some(vec![
            authority_key_identifier(issuer)?.to_extension(&issuer_name, &[])?,
            CrlNumber(Uint::new(&crl_number.to_be_bytes())?).to_extension(&issuer_name, &[])?,
        ]),
    };

    let tbs_der = tbs.to_der()?;
    let mut signer = Signer::new(MessageDigest::sha256(), key)?;
    // openssl emits the DER Ecdsa-Sig-Value that X.509 expects in the BIT STRING.
    let signature = signer.sign_oneshot_to_vec(&tbs_der)?;

    let crl = CertificateList {
        tbs_cert_list: tbs,
        signature_algorithm,
        signature: BitString::from_bytes(&signature)?,
    };
    Ok(crl.to_der()?)
}

fn revoked_cert(entry: &RevokedEntry, issuer: &Name) -> Result<RevokedCert, CrlError> {
    let magnitude = super::normalize_serial(&entry.serial);
    // A zero serial is non-conforming but representable; Uint needs at least one octet.
    let magnitude = if magnitude.is_empty() {
        &[0u8][..]
    } else {
        magnitude
    };
    let serial_number =
        SerialNumber::new(magnitude).map_err(|_| CrlError::InvalidSerial(entry.serial.clone()))?;
    let crl_entry_extensions = match entry.reason {
        Some(reason) => Some(vec![reason.to_x509().to_extension(issuer, &[])?]),
        None => None,
    };
    Ok(RevokedCert {
        serial_number,
        revocation_date: x509_time(entry.revoked_at)?,
        crl_entry_extensions,
    })
}

/// The keyIdentifier must equal the issuer certificate's subjectKeyIdentifier, or path
/// builders that match AKI to SKI will not find the issuer.
fn authority_key_identifier(issuer: &X509Ref) -> Result<AuthorityKeyIdentifier, CrlError> {
    let key_id = match issuer.subject_key_id() {
        Some(ski) => ski.as_slice().to_vec(),
        None => {
            let bits = spki_key_bits(&issuer.public_key()?.public_key_to_der()?)
                .map_err(|_| CrlError::UnsupportedKey)?;
            Sha1::digest(&bits).to_vec()
        }
    };
    Ok(AuthorityKeyIdentifier {
        key_identifier: Some(OctetString::new(key_id)?),
        ..Default::default()
    })
}
