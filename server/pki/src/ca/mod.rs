//! The certificate authority: a self-signed root and an issuing CA under it, kept as PEM files
//! in one directory.
//!
//! ```text
//! dir/root.crt.pem      root certificate (the trust anchor devices get from EST /crts)
//! dir/root.key.pem      root key, 0600; only `init` writes it and nothing here reads it
//! dir/issuing.crt.pem   issuing CA certificate, signed by the root, pathlen 0
//! dir/issuing.key.pem   issuing CA key, 0600; signs device, server and OCSP certificates
//! ```
//!
//! Two levels so that the root key can be moved offline after `init` (the running server only
//! loads the issuing key), and so that a compromised issuing CA can be replaced under the root
//! that devices already trust. Keys are P-256 everywhere: it is the curve RFC 9148 and the
//! LwM2M DTLS suites (TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8) mandate.
//!
//! Time is passed in as unix seconds (`now`), never read from the clock, so that tests and the
//! simulated-time harness decide what "now" is.

mod ext;
mod files;
mod issue;
mod serial;

pub use issue::{GeneratedKey, IssueParams, Issued, ServerGenerated};
pub use serial::{MAX_SERIAL_LEN, RANDOM_SERIAL_LEN, Serial, SerialError};

use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, PKeyRef, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509Builder, X509Name, X509NameBuilder, X509Ref};

use crate::profile::ProfileError;

/// Names and lifetimes for a new CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaNames {
    /// Subject O of both certificates, if any.
    pub organization: Option<String>,
    pub root_cn: String,
    pub issuing_cn: String,
    pub root_days: u32,
    pub issuing_days: u32,
}

impl Default for CaNames {
    fn default() -> Self {
        CaNames {
            organization: None,
            root_cn: "Steward Root CA".into(),
            issuing_cn: "Steward Issuing CA".into(),
            // 20 and 10 years: devices in the field keep the root as their trust anchor, and the
            // issuing CA must outlive the longest device certificate it signs.
            root_days: 7300,
            issuing_days: 3650,
        }
    }
}

/// Errors of the CA, by fault domain.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    // --- storage: the CA directory ---
    #[error("CA file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a CA already exists ({} is present); refusing to overwrite it", .0.display())]
    AlreadyExists(PathBuf),

    // --- CA material given by the operator (import) or found on disk (load) ---
    #[error("invalid CA material: {0}")]
    InvalidCa(String),
    #[error("the issuing CA key does not match the issuing CA certificate")]
    KeyMismatch,
    #[error("unsupported CA key: {0} (the CA uses P-256)")]
    UnsupportedKey(String),

    // --- the issuing request ---
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error("invalid issuing request: {0}")]
    InvalidRequest(String),
    #[error("the issuing CA expired at {not_after} (now {now})")]
    CaExpired { not_after: u64, now: u64 },

    // --- internal: crypto library or encoder failure ---
    #[error("crypto error: {0}")]
    Crypto(#[from] ErrorStack),
    #[error("DER encoding error: {0}")]
    Encoding(String),
}

/// A loaded CA: the root certificate, the issuing certificate and the issuing key.
pub struct Ca {
    root: X509,
    issuing: X509,
    key: PKey<Private>,
    /// issuing, root (DER): the EST /crts answer and the chain to append to issued certificates.
    chain_der: Vec<Vec<u8>>,
    issuing_not_after: u64,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("root", &self.root.subject_name())
            .field("issuing", &self.issuing.subject_name())
            .field("issuing_not_after", &self.issuing_not_after)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Creates a new root and issuing CA in `dir` (created if missing). Refuses with
    /// [`CaError::AlreadyExists`] if any CA file is already there.
    pub fn init(dir: &Path, names: &CaNames, now: u64) -> Result<Ca, CaError> {
        files::ensure_absent(dir)?;
        if names.root_days == 0 || names.issuing_days == 0 {
            return Err(CaError::InvalidRequest("CA lifetime of 0 days".into()));
        }
        let root_key = new_p256_key()?;
        let root_name = ca_name(names.organization.as_deref(), &names.root_cn)?;
        let root = build_ca_cert(&CaCertSpec {
            subject: &root_name,
            key: &root_key,
            issuer: None,
            issuer_key: &root_key,
            path_len: None,
            now,
            days: names.root_days,
        })?;
        let key = new_p256_key()?;
        let issuing_name = ca_name(names.organization.as_deref(), &names.issuing_cn)?;
        let issuing = build_ca_cert(&CaCertSpec {
            subject: &issuing_name,
            key: &key,
            issuer: Some(&root),
            issuer_key: &root_key,
            path_len: Some(0),
            now,
            days: names.issuing_days,
        })?;
        files::write_all_new(
            dir,
            &[
                (
                    files::ROOT_KEY,
                    &root_key.private_key_to_pem_pkcs8()?,
                    files::SECRET_MODE,
                ),
                (
                    files::ISSUING_KEY,
                    &key.private_key_to_pem_pkcs8()?,
                    files::SECRET_MODE,
                ),
                (files::ROOT_CERT, &root.to_pem()?, files::PUBLIC_MODE),
                (files::ISSUING_CERT, &issuing.to_pem()?, files::PUBLIC_MODE),
            ],
        )?;
        tracing::info!(dir = %dir.display(), "created a new root and issuing CA");
        Ca::from_parts(root, issuing, key)
    }

    /// Imports an existing CA: checks that the issuing certificate is a CA certificate signed by
    /// the (self-signed) root and that the key is its P-256 key, then writes the three files.
    /// No root key is written: an imported root's key stays with its owner.
    pub fn import(
        dir: &Path,
        root_pem: &[u8],
        issuing_cert_pem: &[u8],
        issuing_key_pem: &[u8],
    ) -> Result<Ca, CaError> {
        files::ensure_absent(dir)?;
        let ca = Ca::from_pem(root_pem, issuing_cert_pem, issuing_key_pem)?;
        files::write_all_new(
            dir,
            &[
                (files::ISSUING_KEY, issuing_key_pem, files::SECRET_MODE),
                (files::ROOT_CERT, &ca.root.to_pem()?, files::PUBLIC_MODE),
                (
                    files::ISSUING_CERT,
                    &ca.issuing.to_pem()?,
                    files::PUBLIC_MODE,
                ),
            ],
        )?;
        tracing::info!(dir = %dir.display(), "imported a CA");
        Ok(ca)
    }

    /// Loads the CA from `dir`, with the same checks as [`Ca::import`].
    pub fn load(dir: &Path) -> Result<Ca, CaError> {
        let root = files::read(dir, files::ROOT_CERT)?;
        let issuing = files::read(dir, files::ISSUING_CERT)?;
        let key = files::read(dir, files::ISSUING_KEY)?;
        files::warn_if_exposed(dir, files::ISSUING_KEY);
        files::warn_if_exposed(dir, files::ROOT_KEY);
        Ca::from_pem(&root, &issuing, &key)
    }

    fn from_pem(root_pem: &[u8], issuing_pem: &[u8], key_pem: &[u8]) -> Result<Ca, CaError> {
        let invalid = |what: &str, e: ErrorStack| CaError::InvalidCa(format!("{what}: {e}"));
        let root = X509::from_pem(root_pem).map_err(|e| invalid("root certificate", e))?;
        let issuing = X509::from_pem(issuing_pem).map_err(|e| invalid("issuing certificate", e))?;
        let key = PKey::private_key_from_pem(key_pem).map_err(|e| invalid("issuing key", e))?;
        Ca::from_parts(root, issuing, key)
    }

    /// Checks the parts fit together; every constructor goes through here.
    fn from_parts(root: X509, issuing: X509, key: PKey<Private>) -> Result<Ca, CaError> {
        check_is_ca(&root, "root")?;
        check_is_ca(&issuing, "issuing")?;
        let root_key = root.public_key()?;
        if !root.verify(&root_key)? || root.issuer_name_hash() != root.subject_name_hash() {
            return Err(CaError::InvalidCa(
                "the root certificate is not self-signed".into(),
            ));
        }
        if issuing.issuer_name().to_der()? != root.subject_name().to_der()?
            || !issuing.verify(&root_key)?
        {
            return Err(CaError::InvalidCa(
                "the issuing certificate is not signed by the root".into(),
            ));
        }
        check_p256(&key)?;
        if !issuing.public_key()?.public_eq(&key) {
            return Err(CaError::KeyMismatch);
        }
        let issuing_der = issuing.to_der()?;
        let issuing_not_after = not_after_unix(&issuing_der)?;
        let chain_der = vec![issuing_der, root.to_der()?];
        Ok(Ca {
            root,
            issuing,
            key,
            chain_der,
            issuing_not_after,
        })
    }

    /// The issuing CA certificate.
    pub fn issuing_cert(&self) -> &X509Ref {
        &self.issuing
    }

    /// The issuing CA certificate, DER.
    pub fn issuing_cert_der(&self) -> &[u8] {
        &self.chain_der[0]
    }

    /// The issuing CA key (signs certificates, CRLs and OCSP responses).
    pub fn issuing_key(&self) -> &PKeyRef<Private> {
        &self.key
    }

    /// The root certificate.
    pub fn root_cert(&self) -> &X509Ref {
        &self.root
    }

    /// The root certificate, DER.
    pub fn root_cert_der(&self) -> &[u8] {
        &self.chain_der[1]
    }

    /// Issuing then root certificate, DER: the EST /crts answer.
    pub fn chain_der(&self) -> &[Vec<u8>] {
        &self.chain_der
    }

    /// The issuing CA's notAfter, unix seconds. Issued certificates never outlive it.
    pub fn issuing_not_after(&self) -> u64 {
        self.issuing_not_after
    }
}

struct CaCertSpec<'a> {
    subject: &'a X509Name,
    key: &'a PKey<Private>,
    /// `None` for a self-signed certificate.
    issuer: Option<&'a X509>,
    issuer_key: &'a PKey<Private>,
    path_len: Option<u32>,
    now: u64,
    days: u32,
}

fn build_ca_cert(spec: &CaCertSpec<'_>) -> Result<X509, CaError> {
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let serial = Serial::random()?.to_asn1()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(spec.subject)?;
    b.set_issuer_name(match spec.issuer {
        Some(issuer) => issuer.subject_name(),
        None => spec.subject,
    })?;
    b.set_pubkey(spec.key)?;
    // A CA certificate is backdated by an hour: devices with slightly late clocks must accept
    // the chain of a CA created minutes ago.
    let not_before = asn1_time(spec.now.saturating_sub(3600))?;
    let not_after = asn1_time(spec.now.saturating_add(u64::from(spec.days) * 86_400))?;
    b.set_not_before(&not_before)?;
    b.set_not_after(&not_after)?;
    let mut bc = BasicConstraints::new();
    bc.critical().ca();
    if let Some(n) = spec.path_len {
        bc.pathlen(n);
    }
    b.append_extension(bc.build()?)?;
    let mut ku = KeyUsage::new();
    ku.critical().key_cert_sign().crl_sign();
    if spec.issuer.is_some() {
        // The issuing CA may sign OCSP responses itself (RFC 6960 §4.2.2.2, CA as responder),
        // and signing anything other than certificates and CRLs is digitalSignature.
        ku.digital_signature();
    }
    b.append_extension(ku.build()?)?;
    let ski =
        SubjectKeyIdentifier::new().build(&b.x509v3_context(spec.issuer.map(|c| &**c), None))?;
    b.append_extension(ski)?;
    let aki = AuthorityKeyIdentifier::new()
        .keyid(true)
        .build(&b.x509v3_context(spec.issuer.map(|c| &**c), None))?;
    b.append_extension(aki)?;
    b.sign(spec.issuer_key, MessageDigest::sha256())?;
    Ok(b.build())
}

fn ca_name(organization: Option<&str>, cn: &str) -> Result<X509Name, CaError> {
    if cn.is_empty() {
        return Err(CaError::InvalidRequest("empty CA common name".into()));
    }
    let mut n = X509NameBuilder::new()?;
    if let Some(o) = organization {
        n.append_entry_by_nid(Nid::ORGANIZATIONNAME, o)?;
    }
    n.append_entry_by_nid(Nid::COMMONNAME, cn)?;
    Ok(n.build())
}

pub(crate) fn new_p256_key() -> Result<PKey<Private>, ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    PKey::from_ec_key(EcKey::generate(&group)?)
}

fn check_p256(key: &PKeyRef<Private>) -> Result<(), CaError> {
    if key.id() != Id::EC {
        return Err(CaError::UnsupportedKey(format!(
            "key type {}",
            key.id().as_raw()
        )));
    }
    match key.ec_key()?.group().curve_name() {
        Some(Nid::X9_62_PRIME256V1) => Ok(()),
        other => Err(CaError::UnsupportedKey(format!(
            "curve {}",
            other
                .and_then(|n| n.short_name().ok())
                .unwrap_or("explicit")
        ))),
    }
}

/// basicConstraints CA:TRUE, and keyCertSign if keyUsage is present (RFC 5280 §4.2.1.3/9).
fn check_is_ca(cert: &X509Ref, which: &str) -> Result<(), CaError> {
    let der = cert.to_der()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| CaError::InvalidCa(format!("{which} certificate: {e}")))?;
    let is_ca = parsed
        .basic_constraints()
        .map_err(|e| CaError::InvalidCa(format!("{which} certificate: {e}")))?
        .is_some_and(|bc| bc.value.ca);
    if !is_ca {
        return Err(CaError::InvalidCa(format!(
            "the {which} certificate is not a CA (basicConstraints CA:TRUE missing)"
        )));
    }
    let ku = parsed
        .key_usage()
        .map_err(|e| CaError::InvalidCa(format!("{which} certificate: {e}")))?;
    if ku.is_some_and(|ku| !ku.value.key_cert_sign()) {
        return Err(CaError::InvalidCa(format!(
            "the {which} certificate may not sign certificates (keyUsage lacks keyCertSign)"
        )));
    }
    Ok(())
}

pub(crate) fn asn1_time(unix: u64) -> Result<Asn1Time, CaError> {
    let t = i64::try_from(unix)
        .map_err(|_| CaError::InvalidRequest(format!("time {unix} out of range")))?;
    Ok(Asn1Time::from_unix(t)?)
}

/// notAfter of a DER certificate as unix seconds (0 if it is before 1970).
pub(crate) fn not_after_unix(der: &[u8]) -> Result<u64, CaError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| CaError::InvalidCa(format!("certificate: {e}")))?;
    Ok(u64::try_from(parsed.validity().not_after.timestamp()).unwrap_or(0))
}
