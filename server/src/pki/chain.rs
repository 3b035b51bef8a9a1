//! DTLS client-chain checks: which certificates may open a session on which port.
//!
//! - Bootstrap/EST port: a factory chain accepted by the [`FactoryPolicy`] (manufacturer CA,
//!   within validity, device ID on the allow-list), or one of our operational certificates.
//!   Checking the allow-list already at the handshake keeps devices the manufacturer never
//!   reported out of the session altogether (fail closed), not just out of `/sen`.
//! - LwM2M port: a chain to our CA (or to `extra_cas`, e.g. a previous provider's CA during a
//!   trust transfer); a leaf of our CA must be recorded, byte for byte, and not revoked.
//!
//! [`FactoryPolicy`]: steward_pki::policy::FactoryPolicy

use std::sync::Arc;
use std::time::SystemTime;

use openssl::x509::X509;
use steward_dtls::{ChainVerifier, CredentialError, Identity, StrictPolicy};
use steward_pki::ca::Serial;
use steward_pki::policy::{MAX_CHAIN_LEN, PolicyError, Refusal};
use steward_pki::records::PkiStore;

use super::{PkiService, unix};

pub(super) fn verify_bootstrap_chain(
    pki: &PkiService,
    chain: &[Vec<u8>],
) -> Result<Identity, CredentialError> {
    let leaf = leaf(chain)?;
    if pki.issued_by_us(&leaf) {
        return verify_operational_chain(pki, chain, &[]);
    }
    let now = unix(SystemTime::now()).map_err(|e| CredentialError::Policy(e.to_string()))?;
    let device = pki
        .inner
        .factory
        .check(chain, now, &*pki.inner.store)
        .map_err(credential_error)?;
    Ok(Identity::X509 {
        common_name: Some(device.device_id),
        chain: chain.to_vec(),
    })
}

pub(super) fn verify_operational_chain(
    pki: &PkiService,
    chain: &[Vec<u8>],
    extra_cas: &[Vec<u8>],
) -> Result<Identity, CredentialError> {
    let leaf = leaf(chain)?;
    let mut anchors = pki.ca_chain_der();
    anchors.extend_from_slice(extra_cas);
    let identity = ChainVerifier::new(anchors, Arc::new(StrictPolicy)).verify(chain)?;
    if pki.issued_by_us(&leaf) {
        let serial = Serial::from_asn1(leaf.serial_number())
            .map_err(|e| CredentialError::Policy(format!("serial: {e}")))?;
        // Fail closed: a certificate of ours that we cannot look up might be revoked.
        let record =
            pki.inner.store.issued(&serial).map_err(|e| {
                CredentialError::Policy(format!("revocation state unavailable: {e}"))
            })?;
        match record {
            Some(r) if r.der == chain[0] && !r.is_revoked() => {}
            Some(r) if r.der == chain[0] => {
                return Err(CredentialError::Policy("certificate revoked".into()));
            }
            _ => {
                return Err(CredentialError::Policy(
                    "certificate not issued by this CA's records".into(),
                ));
            }
        }
    }
    Ok(identity)
}

fn leaf(chain: &[Vec<u8>]) -> Result<X509, CredentialError> {
    let der = chain.first().ok_or(CredentialError::NoCertificate)?;
    X509::from_der(der).map_err(|e| CredentialError::Malformed {
        index: 0,
        reason: e.to_string(),
    })
}

fn credential_error(e: PolicyError) -> CredentialError {
    match e {
        PolicyError::Refused(Refusal::EmptyChain) => CredentialError::NoCertificate,
        PolicyError::Refused(Refusal::MalformedCertificate { index }) => {
            CredentialError::Malformed {
                index,
                reason: "not DER X.509".into(),
            }
        }
        PolicyError::Refused(Refusal::ChainTooLong(_)) => CredentialError::TooLong(MAX_CHAIN_LEN),
        PolicyError::Refused(Refusal::UnknownManufacturer) => CredentialError::UnknownIssuer,
        PolicyError::Refused(Refusal::Expired { depth } | Refusal::NotYetValid { depth }) => {
            CredentialError::Expired {
                index: usize::try_from(depth).unwrap_or(usize::MAX),
            }
        }
        other => CredentialError::Policy(other.to_string()),
    }
}
