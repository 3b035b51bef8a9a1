//! The device's side of the certificate material: its key pair (generated here, never sent),
//! the PKCS#10 request, picking its certificate out of a certs-only answer, checking that the
//! certificate chains to the CA certificates from `/crts`, and the PEM files in the state
//! directory.

use std::path::{Path as FsPath, PathBuf};

use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, PKeyRef, Private};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509, X509NameBuilder, X509Ref, X509ReqBuilder, X509StoreContext};

use crate::state::StateStore;

/// Why the device's own certificate material could not be made or used. These are local
/// failures (or an answer that does not fit our request), never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("openssl: {0}")]
    Crypto(String),
    /// The certs-only answer holds no certificate for our public key.
    #[error("no certificate in the answer matches the device key")]
    NoMatchingCertificate,
    /// The issued certificate does not chain to the CA certificates of `/crts`.
    #[error("the issued certificate does not chain to the EST CA: {0}")]
    Untrusted(String),
    #[error("{}: {reason}", path.display())]
    Io { path: PathBuf, reason: String },
}

impl From<openssl::error::ErrorStack> for CredentialError {
    fn from(e: openssl::error::ErrorStack) -> CredentialError {
        CredentialError::Crypto(e.to_string())
    }
}

/// What an enrolment gave the device: its private key (PKCS#8 DER), its certificate and the CA
/// certificates from `/crts` (DER, as the server listed them: issuing CA first).
#[derive(Clone, PartialEq, Eq)]
pub struct Enrolled {
    pub private_key: Vec<u8>,
    pub certificate: Vec<u8>,
    pub ca: Vec<Vec<u8>>,
}

// The private key stays out of logs.
impl std::fmt::Debug for Enrolled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrolled")
            .field("certificate_len", &self.certificate.len())
            .field("ca", &self.ca.len())
            .finish_non_exhaustive()
    }
}

/// A fresh P-256 key pair (RFC 9148 §3: secp256r1 is the mandatory curve; LwM2M §5.2.4:
/// the key is generated on the device). openssl seeds from the OS RNG (RFC 4086 quality).
pub fn new_key() -> Result<PKey<Private>, CredentialError> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    Ok(PKey::from_ec_key(EcKey::generate(&group)?)?)
}

/// A DER PKCS#10 request with subject `CN=<common_name>`, signed with `key` (the signature is
/// the proof of possession EST relies on).
pub fn csr(key: &PKeyRef<Private>, common_name: &str) -> Result<Vec<u8>, CredentialError> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, common_name)?;
    let name = name.build();
    let mut req = X509ReqBuilder::new()?;
    req.set_version(0)?;
    req.set_subject_name(&name)?;
    req.set_pubkey(key)?;
    req.sign(key, MessageDigest::sha256())?;
    Ok(req.build().to_der()?)
}

/// The certificate among `certs` (DER) whose public key is `key`'s: a certs-only answer may
/// carry the chain too, in any order.
pub fn pick_leaf(certs: &[Vec<u8>], key: &PKeyRef<Private>) -> Result<X509, CredentialError> {
    certs
        .iter()
        .filter_map(|der| X509::from_der(der).ok())
        .find(|c| c.public_key().is_ok_and(|k| k.public_eq(key)))
        .ok_or(CredentialError::NoMatchingCertificate)
}

/// Checks that `leaf` chains to `ca` (the explicit trust anchors of `/crts`, RFC 7030 §4.1.3):
/// the self-signed certificates are the anchors, the others intermediates.
pub fn verify_chain(leaf: &X509Ref, ca: &[X509]) -> Result<(), CredentialError> {
    let mut store = X509StoreBuilder::new()?;
    let mut untrusted = Stack::new()?;
    let mut anchors = 0;
    for c in ca {
        // A certificate is its own issuer when it verifies under its own key.
        let self_signed = c.public_key().and_then(|k| c.verify(&k)).unwrap_or(false);
        if self_signed {
            store.add_cert(c.clone())?;
            anchors += 1;
        } else {
            untrusted.push(c.clone())?;
        }
    }
    if anchors == 0 {
        // An issuing CA without its root: trust what /crts named.
        for c in ca {
            store.add_cert(c.clone())?;
        }
        store.set_flags(openssl::x509::verify::X509VerifyFlags::PARTIAL_CHAIN)?;
    }
    let store = store.build();
    let mut ctx = X509StoreContext::new()?;
    let ok = ctx.init(&store, leaf, &untrusted, |c| {
        let ok = c.verify_cert()?;
        Ok(ok.then_some(()).ok_or_else(|| c.error().to_string()))
    })?;
    ok.map_err(CredentialError::Untrusted)
}

/// The certificate among `ca` that issued `cert` (subject matches its issuer and its key
/// verifies the signature): the issuer an OCSP request names.
pub fn issuer_of<'a>(cert: &X509Ref, ca: &'a [X509]) -> Option<&'a X509> {
    let issuer = cert.issuer_name().to_der().ok()?;
    ca.iter().find(|c| {
        c.subject_name().to_der().ok().as_deref() == Some(issuer.as_slice())
            && c.public_key()
                .and_then(|k| cert.verify(&k))
                .unwrap_or(false)
    })
}

/// Where [`store`] put the enrolled material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPaths {
    pub certificate: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// Writes the enrolled key, certificate and CA chain as PEM next to the device's state file:
/// `<state file stem>.est-key.pem` (mode 0600 on Unix), `.est-cert.pem`, `.est-ca.pem`. The
/// state file itself already holds them in /0; the PEM files are for operators and other
/// tools (openssl, a real DTLS client). The factory files given on the command line are never
/// overwritten: a later re-bootstrap needs them.
pub fn store(
    store: &StateStore,
    endpoint: &str,
    enrolled: &Enrolled,
) -> Result<StoredPaths, CredentialError> {
    let base = store.path(endpoint).with_extension("");
    let with = |suffix: &str| {
        let mut name = base.clone().into_os_string();
        name.push(suffix);
        PathBuf::from(name)
    };
    let paths = StoredPaths {
        certificate: with(".est-cert.pem"),
        key: with(".est-key.pem"),
        ca: with(".est-ca.pem"),
    };
    let key = PKey::private_key_from_der(&enrolled.private_key)?.private_key_to_pem_pkcs8()?;
    let cert = X509::from_der(&enrolled.certificate)?.to_pem()?;
    let mut ca = Vec::new();
    for der in &enrolled.ca {
        ca.extend(X509::from_der(der)?.to_pem()?);
    }
    write_file(&paths.key, &key, true)?;
    write_file(&paths.certificate, &cert, false)?;
    write_file(&paths.ca, &ca, false)?;
    Ok(paths)
}

/// Temporary file, then rename, like the state file: a crash leaves old or new, never half.
fn write_file(path: &FsPath, bytes: &[u8], secret: bool) -> Result<(), CredentialError> {
    let io = |e: std::io::Error| CredentialError::Io {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(&tmp).map_err(io)?;
    std::io::Write::write_all(&mut file, bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_parses_on_the_server_side_with_our_cn_and_key() {
        let key = new_key().unwrap_or_else(|e| panic!("{e}"));
        let der = csr(&key, "urn:dev:1").unwrap_or_else(|e| panic!("{e}"));
        let parsed = steward_pki::csr::Csr::from_der(&der, steward_pki::csr::CsrLimits::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.common_name(), Some("urn:dev:1"));
        assert!(parsed.public_key().public_eq(&key));
    }

    #[test]
    fn no_leaf_for_another_key() {
        let key = new_key().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            pick_leaf(&[vec![0x30, 0x00]], &key).err(),
            Some(CredentialError::NoMatchingCertificate)
        );
    }
}
