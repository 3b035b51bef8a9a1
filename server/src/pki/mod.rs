//! The server side of the PKI: [`PkiService`] ties steward-pki's CA, enrolment policy, CRL and
//! OCSP to the data directory and the sled store.
//!
//! ```text
//! DATA_DIR/ca/root.crt.pem, issuing.crt.pem, issuing.key.pem (root.key.pem after `ca init`)
//! DATA_DIR/ca/manufacturers/<name>.pem   manufacturer CAs that sign factory certificates
//! DATA_DIR/ca/server-cert.pem            the LwM2M server's DTLS chain (leaf + issuing CA)
//! DATA_DIR/ca/server-key.pem             its key, PKCS#8, 0600
//! ```
//!
//! What it decides (DESIGN.md, "Security rules"):
//!
//! - EST `/sen` ([`PkiService`] is the [`Enroller`](steward_pki::est::Enroller)): a factory
//!   certificate under a manufacturer CA whose device ID is on the allow-list, or a PSK identity
//!   of the security store; either way the CSR's CN must be that device ID / endpoint name. A
//!   certificate of our own CA is sent to `/sren`.
//! - EST `/sren`: the DTLS leaf must be a certificate we issued and recorded, byte for byte,
//!   not revoked and not expired; the new certificate keeps its subject and SAN.
//! - DTLS on the bootstrap/EST port: factory chains (as `/sen` judges them) or our operational
//!   chains; on the LwM2M port: our operational chains (recorded, not revoked) only.
//! - Revocation state lives in the store; the CRL is cached and rebuilt after a revocation or
//!   when half its validity has passed; OCSP answers from the store on every request.
//!
//! Refusals of EST requests are not logged here: the [`EstService`] returns an
//! [`AuditLine`](steward_pki::est::AuditLine) for each, which the caller logs once. Revocations
//! and the server certificate's (re)issuance are logged on target `steward::audit`.

mod chain;
mod enroll;
mod revocation;
mod server_cert;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use openssl::x509::X509;
use steward_pki::ca::{Ca, CaError, CaNames, Serial};
use steward_pki::est::{EncodeError, EstConfig, EstEncoder, EstService};
use steward_pki::policy::{FactoryPolicy, ManufacturerCas, ManufacturerError};
use steward_pki::profile::Profiles;
use steward_pki::records::{IssuedRecord, PkiStoreError, RevocationReason};
use steward_pki::revocation::crl::CrlError;
use steward_pki::revocation::ocsp::{OcspResponder, ResponderError};

use crate::store::SledStore;

pub use revocation::reason_from_name;

/// The CA directory under the data directory.
pub const CA_DIR: &str = "ca";
/// Manufacturer CAs, one PEM file per manufacturer, under [`CA_DIR`].
pub const MANUFACTURERS_DIR: &str = "manufacturers";
/// The issuing CA certificate's file name in [`CA_DIR`] (steward-pki's layout); its presence
/// means "a CA exists".
pub const ISSUING_CERT_FILE: &str = "issuing.crt.pem";
/// The root certificate's file name in [`CA_DIR`].
pub const ROOT_CERT_FILE: &str = "root.crt.pem";

/// How the service issues and publishes.
#[derive(Debug, Clone)]
pub struct PkiSettings {
    /// Certificate profiles by name (`device`, `server`, `validation` built in).
    pub profiles: Profiles,
    /// nextUpdate − thisUpdate of the CRL.
    pub crl_validity: Duration,
    /// OCSP URL put into issued certificates (AIA), unless the profile names its own.
    pub ocsp_url: Option<String>,
    /// CRL distribution point put into issued certificates, unless the profile names its own.
    pub crl_url: Option<String>,
    /// Largest CSR accepted (EST answers 4.13 above it).
    pub max_csr_bytes: usize,
    /// Serve EST `/skg` and `/skc` (server-generated device keys). Off by default: keeping the
    /// key on the device is the LwM2M norm, generating it here is a deployment decision.
    pub server_keygen: bool,
    /// Let factory credentials enrol again while the endpoint holds a valid operational
    /// certificate. Off by default: seed 003 replaces factory credentials on first connection,
    /// so a copied factory certificate cannot obtain a second identity for a device. A device
    /// that lost its certificate is re-admitted by revoking the old one.
    pub factory_reenrolment: bool,
}

impl Default for PkiSettings {
    fn default() -> Self {
        PkiSettings {
            profiles: Profiles::default(),
            crl_validity: Duration::from_secs(86_400),
            ocsp_url: None,
            crl_url: None,
            max_csr_bytes: steward_pki::csr::DEFAULT_MAX_CSR_LEN,
            server_keygen: false,
            factory_reenrolment: false,
        }
    }
}

/// Errors of the PKI service.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("CA: {0}")]
    Ca(#[from] CaError),
    #[error("PKI store: {0}")]
    Store(#[from] PkiStoreError),
    #[error("manufacturer CAs: {0}")]
    Manufacturer(#[from] ManufacturerError),
    #[error("CRL: {0}")]
    Crl(#[from] CrlError),
    #[error("OCSP responder: {0}")]
    Ocsp(#[from] ResponderError),
    #[error("crypto: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate profile {0:?} is not configured")]
    UnknownProfile(String),
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),
    #[error("the system clock is before 1970")]
    Clock,
}

/// The CA service. Cheap to clone; all clones share one CA, store and CRL cache.
#[derive(Clone)]
pub struct PkiService {
    inner: Arc<Inner>,
}

struct Inner {
    ca: Ca,
    ca_dir: PathBuf,
    store: Arc<SledStore>,
    settings: PkiSettings,
    factory: FactoryPolicy,
    ocsp: OcspResponder,
    crl: Mutex<revocation::CrlCache>,
    /// Serialises [`PkiService::server_certificate`] so that two callers do not both re-issue.
    server_cert: Mutex<()>,
}

impl std::fmt::Debug for PkiService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PkiService")
            .field("ca", &self.inner.ca)
            .field("ca_dir", &self.inner.ca_dir)
            .field("manufacturers", &self.inner.factory.manufacturers.len())
            .finish_non_exhaustive()
    }
}

impl PkiService {
    /// Loads the CA from `DATA_DIR/ca`; `Ok(None)` when there is none (the server then runs
    /// without EST and certificate issuance).
    pub fn load(
        data_dir: &Path,
        store: Arc<SledStore>,
        settings: PkiSettings,
    ) -> Result<Option<PkiService>, PkiError> {
        let ca_dir = data_dir.join(CA_DIR);
        if !ca_exists(&ca_dir) {
            return Ok(None);
        }
        let ca = Ca::load(&ca_dir)?;
        PkiService::with_ca(ca, ca_dir, store, settings).map(Some)
    }

    /// Loads the CA, creating a new root and issuing CA in `DATA_DIR/ca` if there is none.
    pub fn init_if_missing(
        data_dir: &Path,
        store: Arc<SledStore>,
        settings: PkiSettings,
    ) -> Result<PkiService, PkiError> {
        let ca_dir = data_dir.join(CA_DIR);
        let ca = if ca_exists(&ca_dir) {
            Ca::load(&ca_dir)?
        } else {
            Ca::init(&ca_dir, &CaNames::default(), unix(SystemTime::now())?)?
        };
        PkiService::with_ca(ca, ca_dir, store, settings)
    }

    fn with_ca(
        ca: Ca,
        ca_dir: PathBuf,
        store: Arc<SledStore>,
        settings: PkiSettings,
    ) -> Result<PkiService, PkiError> {
        for profile in settings.profiles.iter() {
            profile.validate().map_err(CaError::from)?;
        }
        let mut manufacturers = ManufacturerCas::new();
        let dir = ca_dir.join(MANUFACTURERS_DIR);
        if dir.is_dir() {
            manufacturers.add_pem_dir(&dir)?;
        }
        // The issuing CA answers OCSP itself (RFC 6960 §4.2.2.2, "the CA who issued the
        // certificate"): no delegated responder certificate to renew every 30 days.
        let ocsp = OcspResponder::new(ca.issuing_cert(), ca.issuing_key(), &[])?;
        Ok(PkiService {
            inner: Arc::new(Inner {
                ca,
                ca_dir,
                store,
                settings,
                factory: FactoryPolicy::new(manufacturers),
                ocsp,
                crl: Mutex::new(revocation::CrlCache::default()),
                server_cert: Mutex::new(()),
            }),
        })
    }

    /// The CA certificates, DER, issuing CA first (the EST `/crts` answer).
    pub fn ca_chain_der(&self) -> Vec<Vec<u8>> {
        self.inner.ca.chain_der().to_vec()
    }

    /// The root certificate, DER.
    pub fn root_der(&self) -> Vec<u8> {
        self.inner.ca.root_cert_der().to_vec()
    }

    /// The manufacturer CA certificates, DER, in manufacturer name order.
    pub fn manufacturer_cas_der(&self) -> Vec<Vec<u8>> {
        self.inner
            .factory
            .manufacturers
            .iter()
            .flat_map(|m| m.certs().iter().filter_map(|c| c.to_der().ok()))
            .collect()
    }

    /// The CA itself (for tools and tests that issue outside EST).
    pub fn ca(&self) -> &Ca {
        &self.inner.ca
    }

    /// The PKI records.
    pub fn store(&self) -> &Arc<SledStore> {
        &self.inner.store
    }

    /// The settings the service was built with.
    pub fn settings(&self) -> &PkiSettings {
        &self.inner.settings
    }

    /// The certificates issued to an endpoint, oldest first.
    pub fn issued_for_endpoint(&self, endpoint: &str) -> Result<Vec<IssuedRecord>, PkiError> {
        Ok(steward_pki::records::PkiStore::issued_for_endpoint(
            &*self.inner.store,
            endpoint,
        )?)
    }

    /// The EST-coaps resources backed by this service.
    pub fn est_service(&self) -> EstService<PkiService, PkiEncoder> {
        let config = EstConfig {
            server_keygen: self.inner.settings.server_keygen,
            csr_attrs: true,
            max_csr_len: self.inner.settings.max_csr_bytes,
        };
        EstService::new(self.clone(), PkiEncoder, config)
    }

    /// Revokes one certificate; `false` if it already was. Unknown serials are an error.
    pub fn revoke_serial(
        &self,
        serial: &Serial,
        reason: RevocationReason,
        now: SystemTime,
    ) -> Result<bool, PkiError> {
        revocation::revoke_serial(self, serial, reason, now)
    }

    /// Revokes every unrevoked certificate of an endpoint; returns how many.
    pub fn revoke_endpoint(
        &self,
        endpoint: &str,
        reason: RevocationReason,
        now: SystemTime,
    ) -> Result<usize, PkiError> {
        revocation::revoke_endpoint(self, endpoint, reason, now)
    }

    /// Whether a certificate of ours is revoked; `false` for certificates we never issued.
    pub fn is_revoked(&self, cert_der: &[u8]) -> Result<bool, PkiError> {
        revocation::is_revoked(self, cert_der)
    }

    /// A DER OCSPResponse for a DER OCSPRequest, signed by the issuing CA. Never fails: bad
    /// requests get an unsigned malformedRequest.
    pub fn ocsp_response(&self, request_der: &[u8], now: SystemTime) -> Vec<u8> {
        revocation::ocsp_response(self, request_der, now)
    }

    /// The current CRL, DER.
    pub fn crl_der(&self, now: SystemTime) -> Result<Vec<u8>, PkiError> {
        revocation::crl_der(self, now)
    }

    /// DTLS client-chain check for the bootstrap/EST port.
    pub fn verify_bootstrap_chain(
        &self,
        chain: &[Vec<u8>],
    ) -> Result<steward_dtls::Identity, steward_dtls::CredentialError> {
        chain::verify_bootstrap_chain(self, chain)
    }

    /// DTLS client-chain check for the LwM2M server port.
    pub fn verify_operational_chain(
        &self,
        chain: &[Vec<u8>],
        extra_cas: &[Vec<u8>],
    ) -> Result<steward_dtls::Identity, steward_dtls::CredentialError> {
        chain::verify_operational_chain(self, chain, extra_cas)
    }

    /// The LwM2M server's own DTLS certificate (see `server_cert.rs`): (chain PEM, key PEM, leaf
    /// DER).
    pub fn server_certificate(&self, cn: &str) -> Result<(String, String, Vec<u8>), PkiError> {
        server_cert::server_certificate(self, cn)
    }

    /// A profile by name, with the service-wide OCSP and CRL URLs filled in where the profile
    /// has none.
    fn profile(&self, name: &str) -> Result<steward_pki::profile::Profile, PkiError> {
        let mut profile = self
            .inner
            .settings
            .profiles
            .get(name)
            .cloned()
            .ok_or_else(|| PkiError::UnknownProfile(name.to_owned()))?;
        if profile.ocsp_url.is_none() {
            profile.ocsp_url.clone_from(&self.inner.settings.ocsp_url);
        }
        if profile.crl_url.is_none() {
            profile.crl_url.clone_from(&self.inner.settings.crl_url);
        }
        Ok(profile)
    }

    /// Whether `cert` was signed by our issuing CA (issuer name and signature).
    fn issued_by_us(&self, cert: &X509) -> bool {
        let issuing = self.inner.ca.issuing_cert();
        let same_name = match (cert.issuer_name().to_der(), issuing.subject_name().to_der()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        same_name && steward_pki::ossl::verified(issuing.public_key().and_then(|k| cert.verify(&k)))
    }
}

/// The certs-only and multipart-core encoders EST needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct PkiEncoder;

impl EstEncoder for PkiEncoder {
    fn certs_only(&self, certs: &[Vec<u8>]) -> Result<Vec<u8>, EncodeError> {
        steward_pki::pkcs7::certs_only(certs).map_err(|e| EncodeError(e.to_string()))
    }

    fn multipart(&self, parts: &[(u16, &[u8])]) -> Result<Vec<u8>, EncodeError> {
        let parts: Vec<steward_pki::multipart::Part> = parts
            .iter()
            .map(|(ct, bytes)| steward_pki::multipart::Part::new(*ct, *bytes))
            .collect();
        steward_pki::multipart::encode(&parts).map_err(|e| EncodeError(e.to_string()))
    }
}

/// Whether `dir` holds a CA (its issuing certificate).
pub fn ca_exists(dir: &Path) -> bool {
    dir.join(ISSUING_CERT_FILE).exists()
}

/// Unix seconds of `t`.
fn unix(t: SystemTime) -> Result<u64, PkiError> {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| PkiError::Clock)
}
