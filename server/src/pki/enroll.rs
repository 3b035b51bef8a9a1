//! [`Enroller`] for [`PkiService`]: who may enrol which name (DESIGN.md security rules).
//!
//! Order in `/sen`: identity first (factory chain or PSK → the one endpoint name it may
//! enrol), then the CSR (size, structure, proof of possession), then the binding of the CSR's
//! CN to that name, then issuance and the store record. Nothing is recorded unless a
//! certificate is issued, and a certificate is only returned once it is recorded.

use std::time::SystemTime;

use openssl::nid::Nid;
use openssl::x509::{X509, X509Req};
use steward_pki::ca::{IssueParams, Issued, Serial};
use steward_pki::csr::{Csr, CsrError, CsrLimits};
use steward_pki::est::{Enroller, EstClient, EstContext, EstRefusal, ServerKey};
use steward_pki::policy::{PolicyError, Refusal};
use steward_pki::profile;
use steward_pki::records::{IssuedRecord, PkiStore};

use super::{PkiError, PkiService, unix};
use crate::store::Store;

/// CsrAttrs (RFC 7030 §4.5.2) asking for a P-256 key and ECDSA with SHA-256:
/// `SEQUENCE { ecdsa-with-SHA256, SEQUENCE { id-ecPublicKey, SET { secp256r1 } } }`.
const CSR_ATTRS_P256_SHA256: [u8; 35] = [
    0x30, 0x21, // CsrAttrs
    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02, // ecdsa-with-SHA256
    0x30, 0x15, // Attribute
    0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, // id-ecPublicKey
    0x31, 0x0a, // SET OF
    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, // secp256r1
];

impl Enroller for PkiService {
    fn ca_certs(&self, _ctx: &EstContext<'_>) -> Result<Vec<Vec<u8>>, EstRefusal> {
        Ok(self.ca_chain_der())
    }

    fn enroll(&self, ctx: &EstContext<'_>, csr_der: &[u8]) -> Result<Vec<u8>, EstRefusal> {
        let now = now()?;
        let endpoint = self.enrolling_endpoint(ctx.client, now)?;
        let csr = self.parse_csr(csr_der)?;
        require_cn(&csr, &endpoint)?;
        if let Some(again) = self.first_enrolment(&endpoint, &csr, now)? {
            return Ok(again);
        }
        let profile = self.profile(profile::DEVICE).map_err(internal)?;
        self.issue_recorded(&csr, &profile, &endpoint, now)
    }

    fn reenroll(&self, ctx: &EstContext<'_>, csr_der: &[u8]) -> Result<Vec<u8>, EstRefusal> {
        let now = now()?;
        let EstClient::Certificate { chain, .. } = ctx.client else {
            return Err(EstRefusal::Unauthorized(
                "re-enrolment needs the current certificate".into(),
            ));
        };
        let current = self.current_operational(chain, now)?;
        let csr = self.parse_csr(csr_der)?;
        // RFC 7030 §4.2.2: the subject stays; a CSR that asks for another name is refused
        // rather than silently given the old one.
        if let Some(cn) = csr.common_name()
            && cn != current.endpoint
        {
            return Err(EstRefusal::Forbidden(
                "re-enrolment cannot change the subject".into(),
            ));
        }
        // Renew under the profile the certificate was issued under, if it still exists.
        let profile_name = if self.inner.settings.profiles.get(&current.profile).is_some() {
            current.profile.clone()
        } else {
            profile::DEVICE.to_owned()
        };
        let profile = self.profile(&profile_name).map_err(internal)?;
        let issued = self
            .inner
            .ca
            .reissue_keeping(
                &current.der,
                &csr,
                &profile,
                IssueParams::new(serial()?, now),
            )
            .map_err(internal)?;
        self.record(&issued, &current.endpoint, &profile_name, now)?;
        Ok(issued.der)
    }

    fn server_keygen(&self, ctx: &EstContext<'_>, csr_der: &[u8]) -> Result<ServerKey, EstRefusal> {
        let now = now()?;
        let endpoint = self.enrolling_endpoint(ctx.client, now)?;
        // RFC 9148 §4.8: the CSR's key and signature are ignored, so it is not parsed with
        // `Csr::from_der` (which insists on proof of possession); only its subject counts.
        if csr_der.len() > self.inner.settings.max_csr_bytes {
            return Err(EstRefusal::TooLarge(format!(
                "CSR of {} bytes exceeds {}",
                csr_der.len(),
                self.inner.settings.max_csr_bytes
            )));
        }
        let req = X509Req::from_der(csr_der)
            .map_err(|_| EstRefusal::BadRequest("malformed CSR".into()))?;
        let mut cns = req.subject_name().entries_by_nid(Nid::COMMONNAME);
        let cn = cns.next().map(|e| e.data().to_string());
        if cns.next().is_some() {
            return Err(EstRefusal::BadRequest(
                "CSR subject has more than one common name".into(),
            ));
        }
        match cn {
            None => {}
            Some(Ok(cn)) if cn == endpoint => {}
            Some(Ok(_)) => {
                return Err(EstRefusal::BadRequest("CSR names another endpoint".into()));
            }
            Some(Err(_)) => {
                return Err(EstRefusal::BadRequest("CSR common name is not text".into()));
            }
        }
        let profile = self.profile(profile::DEVICE).map_err(internal)?;
        let generated = self
            .inner
            .ca
            .server_keygen(&endpoint, &profile, IssueParams::new(serial()?, now))
            .map_err(internal)?;
        self.record(&generated.cert, &endpoint, profile::DEVICE, now)?;
        Ok(ServerKey {
            pkcs8_der: generated.key.pkcs8_der,
            cert_der: generated.cert.der,
        })
    }

    fn csr_attrs(&self, _ctx: &EstContext<'_>) -> Result<Vec<u8>, EstRefusal> {
        Ok(CSR_ATTRS_P256_SHA256.to_vec())
    }
}

impl PkiService {
    /// The endpoint name an `/sen` (or `/skg`) client may enrol.
    fn enrolling_endpoint(&self, client: &EstClient, now: u64) -> Result<String, EstRefusal> {
        match client {
            EstClient::Psk { identity } => {
                let info = self
                    .inner
                    .store
                    .security_by_psk_identity(identity)
                    .map_err(|e| EstRefusal::Internal(format!("security store: {e}")))?;
                match info {
                    Some(info) => Ok(info.endpoint),
                    None => Err(EstRefusal::Forbidden(
                        "PSK identity is not bound to an endpoint".into(),
                    )),
                }
            }
            EstClient::Certificate { chain, .. } => {
                if let Some(leaf) = chain.first().and_then(|der| X509::from_der(der).ok())
                    && self.issued_by_us(&leaf)
                {
                    return Err(EstRefusal::Forbidden(
                        "an operational certificate re-enrols with /sren".into(),
                    ));
                }
                let device = self
                    .inner
                    .factory
                    .check(chain, now, &*self.inner.store)
                    .map_err(policy_refusal)?;
                Ok(device.device_id)
            }
        }
    }

    /// Refuses `/sen` when the endpoint already holds a valid operational certificate: its
    /// factory credentials were replaced on first enrolment (seed 003), so presenting them
    /// again is either a device that lost its certificate (the operator revokes the old one)
    /// or someone with a copy of them. One exception: a CSR for the very key that certificate
    /// certifies is the same enrolment asked again (its answer was lost: under load, a CoAP
    /// exchange gives up before a slow answer arrives), and gets the same certificate back
    /// (`Some`). It proves possession of that key, so it learns nothing it did not hold; without
    /// this, one lost answer locked the device out until an operator revoked the certificate.
    fn first_enrolment(
        &self,
        endpoint: &str,
        csr: &Csr,
        now: u64,
    ) -> Result<Option<Vec<u8>>, EstRefusal> {
        if self.inner.settings.factory_reenrolment {
            return Ok(None);
        }
        let issued = self
            .inner
            .store
            .issued_for_endpoint(endpoint)
            .map_err(|e| EstRefusal::Internal(format!("PKI store: {e}")))?;
        let Some(current) = issued
            .iter()
            .find(|r| r.profile == profile::DEVICE && !r.is_revoked() && now <= r.not_after)
        else {
            return Ok(None);
        };
        let same_key = X509::from_der(&current.der)
            .and_then(|cert| cert.public_key())
            .and_then(|key| key.public_key_to_der())
            .ok()
            .zip(csr.public_key_der().ok())
            .is_some_and(|(certified, asked)| certified == asked);
        if same_key {
            return Ok(Some(current.der.clone()));
        }
        Err(EstRefusal::Forbidden(format!(
            "{endpoint} already holds operational certificate {}: re-enrol with /sren, or \
             revoke it to admit the factory credentials again",
            current.serial
        )))
    }

    /// The record of the DTLS leaf for `/sren`: ours, byte for byte, unrevoked, unexpired.
    fn current_operational(&self, chain: &[Vec<u8>], now: u64) -> Result<IssuedRecord, EstRefusal> {
        let Some(leaf_der) = chain.first() else {
            return Err(EstRefusal::Unauthorized("no client certificate".into()));
        };
        let not_ours = || EstRefusal::Forbidden("not a certificate issued by this CA".into());
        let leaf = X509::from_der(leaf_der).map_err(|_| not_ours())?;
        if !self.issued_by_us(&leaf) {
            return Err(not_ours());
        }
        let serial = Serial::from_asn1(leaf.serial_number()).map_err(|_| not_ours())?;
        let record = self
            .inner
            .store
            .issued(&serial)
            .map_err(|e| EstRefusal::Internal(format!("PKI store: {e}")))?
            .filter(|r| r.der == *leaf_der)
            .ok_or_else(not_ours)?;
        if record.is_revoked() {
            return Err(EstRefusal::Forbidden("the certificate is revoked".into()));
        }
        if now > record.not_after {
            return Err(EstRefusal::Forbidden("the certificate has expired".into()));
        }
        Ok(record)
    }

    fn parse_csr(&self, der: &[u8]) -> Result<Csr, EstRefusal> {
        let limits = CsrLimits {
            max_der_len: self.inner.settings.max_csr_bytes,
        };
        Csr::from_der(der, limits).map_err(|e| match e {
            CsrError::TooLarge { .. } => EstRefusal::TooLarge(e.to_string()),
            other => EstRefusal::BadRequest(other.to_string()),
        })
    }

    fn record(
        &self,
        issued: &Issued,
        endpoint: &str,
        profile: &str,
        now: u64,
    ) -> Result<(), EstRefusal> {
        let record = IssuedRecord {
            serial: issued.serial.clone(),
            endpoint: endpoint.to_owned(),
            profile: profile.to_owned(),
            not_before: issued.not_before,
            not_after: issued.not_after,
            der: issued.der.clone(),
            issued_at: now,
            revoked: None,
        };
        self.inner
            .store
            .put_issued(&record)
            .map_err(|e| EstRefusal::Internal(format!("cannot record the certificate: {e}")))
    }
}

fn require_cn(csr: &Csr, endpoint: &str) -> Result<(), EstRefusal> {
    match csr.common_name() {
        Some(cn) if cn == endpoint => Ok(()),
        Some(_) => Err(EstRefusal::BadRequest("CSR names another endpoint".into())),
        None => Err(EstRefusal::BadRequest(
            "CSR subject has no common name".into(),
        )),
    }
}

fn policy_refusal(e: PolicyError) -> EstRefusal {
    match e {
        PolicyError::Refused(Refusal::MalformedCertificate { .. } | Refusal::EmptyChain) => {
            EstRefusal::BadRequest(e.to_string())
        }
        PolicyError::Refused(r) => EstRefusal::Forbidden(r.to_string()),
        PolicyError::Store(e) => EstRefusal::Internal(format!("allow-list: {e}")),
        PolicyError::Internal(e) => EstRefusal::Internal(e),
    }
}

fn serial() -> Result<Serial, EstRefusal> {
    Serial::random().map_err(|e| EstRefusal::Internal(format!("random serial: {e}")))
}

fn now() -> Result<u64, EstRefusal> {
    unix(SystemTime::now()).map_err(internal)
}

fn internal(e: impl Into<PkiError>) -> EstRefusal {
    EstRefusal::Internal(e.into().to_string())
}

impl PkiService {
    /// Issues a certificate for a plugin's `certificate-issue` host call. The CSR's signature
    /// is checked (proof of possession) and its common name becomes the subject; the
    /// issuance is recorded like an EST one and audited under the plugin's name.
    pub fn issue_for_plugin(
        &self,
        plugin: &str,
        csr_der: &[u8],
        profile_name: &str,
    ) -> Result<Vec<u8>, EstRefusal> {
        let now = now()?;
        let csr = self.parse_csr(csr_der)?;
        let cn = csr
            .common_name()
            .ok_or_else(|| EstRefusal::BadRequest("CSR subject has no common name".into()))?
            .to_owned();
        let profile = self
            .profile(profile_name)
            .map_err(|e| EstRefusal::BadRequest(e.to_string()))?;
        let der = self.issue_recorded(&csr, &profile, &cn, now)?;
        tracing::info!(
            target: "steward::audit",
            plugin,
            endpoint = %cn,
            profile = profile_name,
            "certificate issued at a plugin's request"
        );
        Ok(der)
    }

    /// Issues a certificate for `csr` with subject CN `endpoint` and records it.
    fn issue_recorded(
        &self,
        csr: &Csr,
        profile: &steward_pki::profile::Profile,
        endpoint: &str,
        now: u64,
    ) -> Result<Vec<u8>, EstRefusal> {
        let params = IssueParams::new(serial()?, now)
            .with_subject_cn(endpoint)
            .map_err(internal)?;
        let issued = self
            .inner
            .ca
            .issue(csr, profile, params)
            .map_err(internal)?;
        self.record(&issued, endpoint, &profile.name, now)?;
        Ok(issued.der)
    }
}
