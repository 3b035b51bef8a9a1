//! Revocation: marking certificates revoked in the store, the cached CRL and OCSP answers.
//!
//! The CRL is cached because every build takes a CRL number from the store (an fsync) and a
//! signature; it is rebuilt after a revocation (so a revoked certificate shows up at once) and
//! when half its validity has passed (so relying parties that fetch near nextUpdate get a
//! fresh one). OCSP answers from the store on every request: it is the service that tells a
//! device *now* that a certificate is revoked (seed 003).

use std::sync::MutexGuard;
use std::time::{Duration, SystemTime};

use openssl::x509::X509;
use steward_pki::ca::Serial;
use steward_pki::records::{PkiStore, RevocationReason};
use steward_pki::revocation::{self as rev, CertStatus, RevokedEntry};

use super::{PkiError, PkiService, unix};

/// The last CRL built, and whether a revocation has happened since.
#[derive(Debug, Default)]
pub(super) struct CrlCache {
    der: Option<Vec<u8>>,
    this_update: Option<SystemTime>,
    stale: bool,
}

/// A revocation reason by its RFC 5280 name (`keyCompromise`) or snake_case
/// (`key_compromise`), case-insensitively.
pub fn reason_from_name(name: &str) -> Option<RevocationReason> {
    let folded: String = name
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .collect::<String>()
        .to_ascii_lowercase();
    RevocationReason::ALL
        .into_iter()
        .find(|r| r.to_string().to_ascii_lowercase() == folded)
}

pub(super) fn revoke_serial(
    pki: &PkiService,
    serial: &Serial,
    reason: RevocationReason,
    now: SystemTime,
) -> Result<bool, PkiError> {
    let changed = pki.inner.store.revoke(serial, reason, unix(now)?)?;
    if changed {
        crl_cache(pki).stale = true;
        tracing::info!(target: "steward::audit", %serial, %reason, "certificate revoked");
    }
    Ok(changed)
}

pub(super) fn revoke_endpoint(
    pki: &PkiService,
    endpoint: &str,
    reason: RevocationReason,
    now: SystemTime,
) -> Result<usize, PkiError> {
    let mut count = 0;
    for record in pki.inner.store.issued_for_endpoint(endpoint)? {
        if !record.is_revoked() && revoke_serial(pki, &record.serial, reason, now)? {
            count += 1;
        }
    }
    Ok(count)
}

pub(super) fn is_revoked(pki: &PkiService, cert_der: &[u8]) -> Result<bool, PkiError> {
    let cert = X509::from_der(cert_der).map_err(|e| PkiError::InvalidCertificate(e.to_string()))?;
    if !pki.issued_by_us(&cert) {
        return Ok(false);
    }
    let serial = Serial::from_asn1(cert.serial_number())
        .map_err(|e| PkiError::InvalidCertificate(e.to_string()))?;
    Ok(pki
        .inner
        .store
        .issued(&serial)?
        .is_some_and(|r| r.der == cert_der && r.is_revoked()))
}

pub(super) fn ocsp_response(pki: &PkiService, request_der: &[u8], now: SystemTime) -> Vec<u8> {
    let lookup = |serial: &[u8]| -> CertStatus {
        let Ok(serial) = Serial::from_bytes(serial) else {
            return CertStatus::Unknown;
        };
        match pki.inner.store.issued(&serial) {
            Ok(Some(record)) => match record.revoked {
                None => CertStatus::Good,
                Some(r) => CertStatus::Revoked {
                    revoked_at: SystemTime::UNIX_EPOCH + Duration::from_secs(r.at),
                    reason: crl_reason(r.reason),
                },
            },
            Ok(None) => CertStatus::Unknown,
            // "unknown" is never mistaken for "good" by a client; the failure is logged.
            Err(e) => {
                tracing::warn!(error = %e, %serial, "OCSP: PKI store unavailable");
                CertStatus::Unknown
            }
        }
    };
    pki.inner.ocsp.respond(request_der, &lookup, now)
}

pub(super) fn crl_der(pki: &PkiService, now: SystemTime) -> Result<Vec<u8>, PkiError> {
    let validity = pki.inner.settings.crl_validity;
    let mut cache = crl_cache(pki);
    if let (Some(der), Some(this_update), false) = (&cache.der, cache.this_update, cache.stale)
        && now >= this_update
        && now < this_update + validity / 2
    {
        return Ok(der.clone());
    }
    let entries: Vec<RevokedEntry> = pki
        .inner
        .store
        .revoked()?
        .into_iter()
        .filter_map(|record| {
            let revocation = record.revoked?;
            Some(RevokedEntry {
                serial: record.serial.as_bytes().to_vec(),
                revoked_at: SystemTime::UNIX_EPOCH + Duration::from_secs(revocation.at),
                reason: crl_reason(revocation.reason),
            })
        })
        .collect();
    let number = pki.inner.store.next_crl_number()?;
    let ca = &pki.inner.ca;
    let der = rev::crl::build_crl(
        ca.issuing_cert(),
        ca.issuing_key(),
        &entries,
        number,
        now,
        now + validity,
    )?;
    *cache = CrlCache {
        der: Some(der.clone()),
        this_update: Some(now),
        stale: false,
    };
    Ok(der)
}

/// The CRL/OCSP reason; `unspecified` is left out, as RFC 5280 §5.3.1 asks.
fn crl_reason(reason: RevocationReason) -> Option<RevocationReason> {
    (reason != RevocationReason::Unspecified).then_some(reason)
}

fn crl_cache(pki: &PkiService) -> MutexGuard<'_, CrlCache> {
    // The cache holds no invariant a panic could break half-way (the worst case is a CRL
    // rebuilt once more), so a poisoned lock is taken over rather than propagated.
    pki.inner
        .crl
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
