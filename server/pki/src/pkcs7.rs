//! certs-only CMS (EST content format 281, `application/pkcs7-mime; smime-type=certs-only`).
//!
//! A "degenerate" SignedData (RFC 5652 §5, RFC 7030 §4.1.3): no content, no signers, just a
//! bag of certificates. EST uses it for /crts, /sen and /sren responses and as the certificate
//! half of /skg. Built and parsed with the RustCrypto `cms` types rather than hand-written DER;
//! openssl can read it but has no builder for it.
//!
//! The certificates field is a DER SET OF, which is sorted by encoding: the order of the input
//! is not preserved. Callers find the certificate they need by content (subject, key), as
//! RFC 7030 clients must anyway.

use cms::cert::CertificateChoices;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{CertificateSet, EncapsulatedContentInfo, SignedData, SignerInfos};
use der::asn1::{ObjectIdentifier, SetOfVec};
use der::{Any, Decode, Encode};
use x509_cert::Certificate;

/// CoAP Content-Format of certs-only CMS (RFC 9148 §8.1).
pub const CONTENT_FORMAT_CERTS_ONLY: u16 = 281;

const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");

/// Errors of [`certs_only`] and [`parse_certs_only`].
#[derive(Debug, thiserror::Error)]
pub enum Pkcs7Error {
    /// Building a certs-only message with no certificate is a caller bug.
    #[error("no certificates to send")]
    NoCertificates,
    /// Input certificate `index` is not a DER X.509 certificate.
    #[error("certificate {index} is not a valid DER certificate: {source}")]
    InvalidCertificate {
        /// Position in the input slice.
        index: usize,
        /// What the decoder said.
        source: der::Error,
    },
    /// Not a DER ContentInfo carrying SignedData.
    #[error("not a CMS SignedData: {0}")]
    Malformed(der::Error),
    /// The ContentInfo holds something other than SignedData.
    #[error("CMS content type {0} is not id-signedData")]
    NotSignedData(ObjectIdentifier),
    /// SignedData with signers or content is a signed message, not a certs-only bag; reading
    /// its certificates without checking the signature would mislead the caller.
    #[error("SignedData has signers or content; not certs-only")]
    NotCertsOnly,
    /// A certificate choice other than a plain X.509 certificate (RFC 5652 `other`).
    #[error("unsupported certificate choice in the certificate set")]
    UnsupportedCertificateChoice,
    /// Encoding failed.
    #[error("DER encoding failed: {0}")]
    Encoding(der::Error),
}

/// Wraps DER certificates in a certs-only SignedData and returns its DER ContentInfo.
/// Identical certificates are sent once (a SET OF may not repeat an element in DER).
pub fn certs_only(certs: &[Vec<u8>]) -> Result<Vec<u8>, Pkcs7Error> {
    if certs.is_empty() {
        return Err(Pkcs7Error::NoCertificates);
    }
    let mut choices = Vec::with_capacity(certs.len());
    for (index, der) in certs.iter().enumerate() {
        let cert = Certificate::from_der(der)
            .map_err(|source| Pkcs7Error::InvalidCertificate { index, source })?;
        let choice = CertificateChoices::Certificate(cert);
        if !choices.contains(&choice) {
            choices.push(choice);
        }
    }
    let signed_data = SignedData {
        // RFC 5652 §5.1: version 1 when there are only X.509 certificates and no signers
        // with subjectKeyIdentifier.
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::new(),
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: ID_DATA,
            econtent: None,
        },
        certificates: Some(CertificateSet(
            SetOfVec::try_from(choices).map_err(Pkcs7Error::Encoding)?,
        )),
        crls: None,
        signer_infos: SignerInfos(SetOfVec::new()),
    };
    let content_info = ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: Any::encode_from(&signed_data).map_err(Pkcs7Error::Encoding)?,
    };
    content_info.to_der().map_err(Pkcs7Error::Encoding)
}

/// Reads the DER certificates out of a certs-only SignedData (client side of /crts, /sen,
/// /sren). An absent certificate set gives an empty list.
pub fn parse_certs_only(der: &[u8]) -> Result<Vec<Vec<u8>>, Pkcs7Error> {
    let content_info = ContentInfo::from_der(der).map_err(Pkcs7Error::Malformed)?;
    if content_info.content_type != ID_SIGNED_DATA {
        return Err(Pkcs7Error::NotSignedData(content_info.content_type));
    }
    let signed_data: SignedData = content_info
        .content
        .decode_as()
        .map_err(Pkcs7Error::Malformed)?;
    if !signed_data.signer_infos.0.is_empty() || signed_data.encap_content_info.econtent.is_some() {
        return Err(Pkcs7Error::NotCertsOnly);
    }
    let Some(set) = signed_data.certificates else {
        return Ok(Vec::new());
    };
    set.0
        .iter()
        .map(|choice| match choice {
            CertificateChoices::Certificate(cert) => cert.to_der().map_err(Pkcs7Error::Encoding),
            CertificateChoices::Other(_) => Err(Pkcs7Error::UnsupportedCertificateChoice),
        })
        .collect()
}
