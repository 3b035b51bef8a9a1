//! X.509 extensions that OpenSSL's typed builders do not cover: AIA, CRL distribution points,
//! ocsp-nocheck and a subjectAltName copied byte for byte.
//!
//! They are DER-encoded with RustCrypto's `x509-cert` types and handed to OpenSSL as raw
//! extension values. The alternative, OpenSSL's configuration-string syntax
//! ("OCSP;URI:..."), would parse operator-supplied URLs as a mini-language where a comma starts
//! a new value.

use der::Encode;
use der::asn1::{Ia5String, ObjectIdentifier};
use openssl::asn1::{Asn1Object, Asn1OctetString};
use openssl::x509::X509Extension;
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{AccessDescription, AuthorityInfoAccessSyntax, CrlDistributionPoints};

use super::CaError;

const OID_SUBJECT_ALT_NAME: &str = "2.5.29.17";
const OID_CRL_DISTRIBUTION_POINTS: &str = "2.5.29.31";
const OID_AUTHORITY_INFO_ACCESS: &str = "1.3.6.1.5.5.7.1.1";
/// id-pkix-ocsp-nocheck, RFC 6960 §4.2.2.2.1.
const OID_OCSP_NOCHECK: &str = "1.3.6.1.5.5.7.48.1.5";
/// id-ad-ocsp, RFC 5280 §4.2.2.1.
const ID_AD_OCSP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1");

fn raw(oid: &str, critical: bool, value: &[u8]) -> Result<X509Extension, CaError> {
    let oid = Asn1Object::from_str(oid)?;
    let value = Asn1OctetString::new_from_bytes(value)?;
    Ok(X509Extension::new_from_der(&oid, critical, &value)?)
}

fn uri(url: &str) -> Result<GeneralName, CaError> {
    let s = Ia5String::new(url).map_err(|e| CaError::Encoding(format!("URL {url:?}: {e}")))?;
    Ok(GeneralName::UniformResourceIdentifier(s))
}

fn encode(value: &impl Encode) -> Result<Vec<u8>, CaError> {
    value.to_der().map_err(|e| CaError::Encoding(e.to_string()))
}

/// Authority Information Access with one OCSP responder URL.
pub(super) fn ocsp_aia(url: &str) -> Result<X509Extension, CaError> {
    let aia = AuthorityInfoAccessSyntax(vec![AccessDescription {
        access_method: ID_AD_OCSP,
        access_location: uri(url)?,
    }]);
    raw(OID_AUTHORITY_INFO_ACCESS, false, &encode(&aia)?)
}

/// CRL distribution points with one full-name URL.
pub(super) fn crl_distribution_point(url: &str) -> Result<X509Extension, CaError> {
    let dps = CrlDistributionPoints(vec![DistributionPoint {
        distribution_point: Some(DistributionPointName::FullName(vec![uri(url)?])),
        reasons: None,
        crl_issuer: None,
    }]);
    raw(OID_CRL_DISTRIBUTION_POINTS, false, &encode(&dps)?)
}

/// id-pkix-ocsp-nocheck: the extension value is a DER NULL.
pub(super) fn ocsp_nocheck() -> Result<X509Extension, CaError> {
    raw(OID_OCSP_NOCHECK, false, &[0x05, 0x00])
}

/// A subjectAltName from its DER GeneralNames. RFC 5280 §4.2.1.6: critical when the subject is
/// empty, because then the SAN is the only identity.
pub(super) fn subject_alt_name(
    general_names_der: &[u8],
    critical: bool,
) -> Result<X509Extension, CaError> {
    raw(OID_SUBJECT_ALT_NAME, critical, general_names_der)
}
