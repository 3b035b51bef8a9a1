//! The factory-certificate check for EST `/sen` (DESIGN.md: "a factory certificate chaining to a
//! configured manufacturer CA whose device ID is on the allow-list").
//!
//! The caller has already let the DTLS handshake prove that the peer holds the leaf's private
//! key; this module decides whether that certificate may enrol.

use openssl::nid::Nid;
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::{X509VerifyFlags, X509VerifyParam};
use openssl::x509::{X509, X509NameRef, X509StoreContext};

use super::allow_list::AllowListLookup;
use super::manufacturer::{ManufacturerCa, ManufacturerCas};
use crate::records::PkiStoreError;

/// Longest chain a device may present (leaf + intermediates); bounds the work per handshake.
pub const MAX_CHAIN_LEN: usize = 8;

// OpenSSL verification results (x509_vfy.h) that mean "this store has no issuer for the
// chain", i.e. the chain belongs to some other manufacturer or to none.
const X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT: i32 = 2;
const X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT: i32 = 18;
const X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN: i32 = 19;
const X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY: i32 = 20;
const X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE: i32 = 21;
// Results that mean "the chain is this manufacturer's but outside its validity".
const X509_V_ERR_CERT_NOT_YET_VALID: i32 = 9;
const X509_V_ERR_CERT_HAS_EXPIRED: i32 = 10;

/// Which subject attribute is the device ID.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeviceIdSource {
    /// The subject serialNumber (2.5.4.5) if present, else the common name. The default,
    /// because in IEEE 802.1AR IDevIDs the serialNumber is the per-device identifier while the
    /// CN is often a product name shared by a whole model line.
    #[default]
    SerialNumberThenCommonName,
    /// Only the common name.
    CommonName,
    /// Only the serialNumber attribute.
    SerialNumber,
}

/// A factory certificate that may enrol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactoryDevice {
    pub device_id: String,
    /// Name of the manufacturer whose CA the chain reached.
    pub manufacturer: String,
}

/// Why a factory certificate may not enrol (CoAP 4.03, or 4.00 for the malformed cases).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no client certificate")]
    EmptyChain,
    #[error("certificate {index} of the chain is not valid DER")]
    MalformedCertificate { index: usize },
    #[error("the chain has {0} certificates, more than {MAX_CHAIN_LEN}")]
    ChainTooLong(usize),
    /// A CA certificate used as a device certificate. With partial chains a manufacturer CA
    /// certificate (public) would otherwise verify against itself.
    #[error("the leaf certificate is a CA certificate")]
    LeafIsCa,
    #[error("the certificate does not chain to any configured manufacturer CA")]
    UnknownManufacturer,
    #[error("certificate at depth {depth} has expired")]
    Expired { depth: u32 },
    #[error("certificate at depth {depth} is not yet valid")]
    NotYetValid { depth: u32 },
    #[error("chain verification failed: {0}")]
    BadChain(String),
    #[error("the certificate subject carries no device ID")]
    NoDeviceId,
    #[error("the certificate's device ID is unusable: {0}")]
    InvalidDeviceId(String),
    #[error("the certificate subject carries more than one device ID attribute")]
    AmbiguousDeviceId,
    #[error("device {device_id:?} of {manufacturer:?} is not on the allow-list")]
    NotOnAllowList {
        device_id: String,
        manufacturer: String,
    },
}

/// The outcome of [`FactoryPolicy::check`] when it is not a yes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The device may not enrol.
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
    /// The allow-list could not be read: our fault, not the device's (5.00/5.03). Never an
    /// implicit yes: security decisions fail closed.
    #[error("allow-list unavailable: {0}")]
    Store(#[from] PkiStoreError),
    /// The crypto library failed while verifying.
    #[error("verification failed internally: {0}")]
    Internal(String),
}

impl PolicyError {
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            PolicyError::Refused(r) => Some(r),
            _ => None,
        }
    }
}

/// Manufacturer CAs plus the rule for finding the device ID.
#[derive(Debug, Clone, Default)]
pub struct FactoryPolicy {
    pub manufacturers: ManufacturerCas,
    pub device_id_source: DeviceIdSource,
}

impl FactoryPolicy {
    pub fn new(manufacturers: ManufacturerCas) -> FactoryPolicy {
        FactoryPolicy {
            manufacturers,
            device_id_source: DeviceIdSource::default(),
        }
    }

    /// Checks a presented chain (leaf first, DER) at `now` (unix seconds): the leaf is an
    /// end-entity certificate, the chain reaches a manufacturer CA with every certificate
    /// within its validity, and the device ID is on the allow-list.
    pub fn check(
        &self,
        chain_der: &[Vec<u8>],
        now: u64,
        allow_list: &(impl AllowListLookup + ?Sized),
    ) -> Result<FactoryDevice, PolicyError> {
        let (leaf, intermediates) = parse_chain(chain_der)?;
        let manufacturer = self.find_manufacturer(&leaf, &intermediates, now)?;
        let device_id = device_id(leaf.subject_name(), self.device_id_source)?;
        if !allow_list.contains(&device_id)? {
            return Err(Refusal::NotOnAllowList {
                device_id,
                manufacturer: manufacturer.name().to_owned(),
            }
            .into());
        }
        Ok(FactoryDevice {
            device_id,
            manufacturer: manufacturer.name().to_owned(),
        })
    }

    /// The first manufacturer whose CAs verify the chain. A verification error other than
    /// "no issuer here" means the chain is that manufacturer's but bad, and is reported as such
    /// rather than as an unknown manufacturer.
    fn find_manufacturer(
        &self,
        leaf: &X509,
        intermediates: &Stack<X509>,
        now: u64,
    ) -> Result<&ManufacturerCa, PolicyError> {
        let internal = |e: openssl::error::ErrorStack| PolicyError::Internal(e.to_string());
        let time =
            i64::try_from(now).map_err(|_| PolicyError::Internal("time out of range".into()))?;
        for manufacturer in self.manufacturers.iter() {
            let mut store = X509StoreBuilder::new().map_err(internal)?;
            for cert in manufacturer.certs() {
                store.add_cert(cert.clone()).map_err(internal)?;
            }
            let mut param = X509VerifyParam::new().map_err(internal)?;
            param.set_time(time);
            param
                .set_flags(X509VerifyFlags::PARTIAL_CHAIN)
                .map_err(internal)?;
            store.set_param(&param).map_err(internal)?;
            let store = store.build();
            let mut ctx = X509StoreContext::new().map_err(internal)?;
            let (ok, code, depth, message) = ctx
                .init(&store, leaf, intermediates, |c| {
                    let ok = c.verify_cert()?;
                    let err = c.error();
                    Ok((ok, err.as_raw(), c.error_depth(), err.error_string()))
                })
                .map_err(internal)?;
            if !ok {
                // The verdict is in `code`; what OpenSSL queued must not leak into a later
                // error on this thread (see `crate::ossl`).
                let _ = crate::ossl::verified(Ok(false));
            }
            if ok {
                return Ok(manufacturer);
            }
            match code {
                X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
                | X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
                | X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
                | X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
                | X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE => continue,
                X509_V_ERR_CERT_HAS_EXPIRED => return Err(Refusal::Expired { depth }.into()),
                X509_V_ERR_CERT_NOT_YET_VALID => {
                    return Err(Refusal::NotYetValid { depth }.into());
                }
                _ => {
                    return Err(Refusal::BadChain(format!(
                        "{message} (depth {depth}, manufacturer {:?})",
                        manufacturer.name()
                    ))
                    .into());
                }
            }
        }
        Err(Refusal::UnknownManufacturer.into())
    }
}

fn parse_chain(chain_der: &[Vec<u8>]) -> Result<(X509, Stack<X509>), PolicyError> {
    let Some(leaf_der) = chain_der.first() else {
        return Err(Refusal::EmptyChain.into());
    };
    if chain_der.len() > MAX_CHAIN_LEN {
        return Err(Refusal::ChainTooLong(chain_der.len()).into());
    }
    let leaf = X509::from_der(leaf_der).map_err(|_| Refusal::MalformedCertificate { index: 0 })?;
    if super::is_ca_cert(leaf_der) {
        return Err(Refusal::LeafIsCa.into());
    }
    let mut intermediates = Stack::new().map_err(|e| PolicyError::Internal(e.to_string()))?;
    for (index, der) in chain_der.iter().enumerate().skip(1) {
        let cert = X509::from_der(der).map_err(|_| Refusal::MalformedCertificate { index })?;
        intermediates
            .push(cert)
            .map_err(|e| PolicyError::Internal(e.to_string()))?;
    }
    Ok((leaf, intermediates))
}

/// The device ID of a subject, by `source`. Several values of the chosen attribute make the ID
/// ambiguous and are refused rather than picking one.
pub fn device_id(subject: &X509NameRef, source: DeviceIdSource) -> Result<String, Refusal> {
    let serial = || single_entry(subject, Nid::SERIALNUMBER);
    let cn = || single_entry(subject, Nid::COMMONNAME);
    let id = match source {
        DeviceIdSource::SerialNumberThenCommonName => match serial()? {
            Some(s) => Some(s),
            None => cn()?,
        },
        DeviceIdSource::CommonName => cn()?,
        DeviceIdSource::SerialNumber => serial()?,
    };
    id.filter(|s| !s.is_empty()).ok_or(Refusal::NoDeviceId)
}

fn single_entry(subject: &X509NameRef, nid: Nid) -> Result<Option<String>, Refusal> {
    let mut entries = subject.entries_by_nid(nid);
    let Some(first) = entries.next() else {
        return Ok(None);
    };
    if entries.next().is_some() {
        return Err(Refusal::AmbiguousDeviceId);
    }
    let value = first
        .data()
        .to_string()
        .map_err(|_| Refusal::InvalidDeviceId("not a string".into()))?;
    // `to_string` keeps interior NULs and maps undecodable bytes to U+FFFD; neither may pass
    // as an ID, or "dev1\0x" and "dev1" (or two different undecodable IDs) could be confused.
    if value.contains('\u{fffd}') {
        return Err(Refusal::InvalidDeviceId("not valid text".into()));
    }
    super::validate_device_id(&value).map_err(|r| Refusal::InvalidDeviceId(r.into()))?;
    Ok(Some(value))
}
