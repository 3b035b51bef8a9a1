//! Certificate mode of `steward serve`: the device CAs and the server's own certificate.
//!
//! Certificate mode is on when at least one device CA is configured (`device_cas`). Device
//! chains are verified by steward-dtls's [`ChainVerifier`] with [`StrictPolicy`] against those
//! CAs; the Registration interface then requires the endpoint name to equal the leaf's CN.
//!
//! The server's certificate chain and key come from `dtls_certificate` when configured. If
//! not, the server uses `DATA_DIR/dtls/server-cert.pem` and `server-key.pem`, generating a
//! self-signed P-256 certificate there on first start (the key file is written with mode 0600
//! on Unix). Its PEM and SHA-256 fingerprint are logged at start, so devices can pin it.

use crate::hex::encode as hex;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use steward_dtls::{ChainVerifier, DtlsError, ServerCertificate, StrictPolicy};

use crate::config::Config;

/// Directory under the data directory holding a generated server certificate.
pub const DTLS_DIR: &str = "dtls";
pub const SERVER_CERT_FILE: &str = "server-cert.pem";
pub const SERVER_KEY_FILE: &str = "server-key.pem";
/// Subject CN of a generated server certificate.
pub const GENERATED_CN: &str = "Steward LwM2M server";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: no CERTIFICATE block", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: {reason}", path.display())]
    Pem { path: PathBuf, reason: String },
    #[error("server certificate {}: {source}", path.display())]
    ServerCertificate { path: PathBuf, source: DtlsError },
    #[error("cannot generate the server certificate: {0}")]
    Generate(String),
}

/// What certificate mode needs: the device CAs and the server's certificate.
pub struct CertificateMode {
    /// DER device CA certificates.
    pub device_cas: Vec<Vec<u8>>,
    pub server: ServerCertificate,
    /// The server's certificate chain, PEM.
    pub server_chain_pem: String,
    /// Where the server's certificate was read (or generated).
    pub server_certificate_path: PathBuf,
    /// True when the certificate was generated at this start.
    pub generated: bool,
}

impl CertificateMode {
    /// The verifier of device chains.
    pub fn chain_verifier(&self) -> ChainVerifier {
        ChainVerifier::new(self.device_cas.clone(), Arc::new(StrictPolicy))
    }
}

/// Where a generated server certificate lives.
pub fn generated_certificate_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DTLS_DIR).join(SERVER_CERT_FILE)
}

/// Where a generated server key lives.
pub fn generated_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DTLS_DIR).join(SERVER_KEY_FILE)
}

/// Loads certificate mode, or `None` when no device CA is configured. Logs the server's
/// certificate.
pub fn certificate_mode(config: &Config) -> Result<Option<CertificateMode>, TlsError> {
    if config.device_cas.is_empty() {
        return Ok(None);
    }
    let mut device_cas = Vec::new();
    for path in &config.device_cas {
        device_cas.extend(read_certificates(path)?);
    }
    let (cert_path, key_path) = match &config.dtls_certificate {
        Some(paths) => (paths.certificate.clone(), paths.private_key.clone()),
        None => (
            generated_certificate_path(&config.data_dir),
            generated_key_path(&config.data_dir),
        ),
    };
    let generated = config.dtls_certificate.is_none() && !cert_path.exists();
    if generated {
        generate(&cert_path, &key_path)?;
    }
    let chain_pem = read(&cert_path)?;
    let key_pem = read(&key_path)?;
    let server = ServerCertificate::from_pem(&chain_pem, &key_pem).map_err(|source| {
        TlsError::ServerCertificate {
            path: cert_path.clone(),
            source,
        }
    })?;
    let leaf = read_certificates(&cert_path)?;
    let fingerprint = leaf.first().map(|der| hex(&Sha256::digest(der)));
    tracing::info!(
        device_cas = device_cas.len(),
        certificate = %cert_path.display(),
        generated,
        sha256 = fingerprint.as_deref().unwrap_or_default(),
        "DTLS certificate mode on; server certificate:\n{chain_pem}"
    );
    Ok(Some(CertificateMode {
        device_cas,
        server,
        server_chain_pem: chain_pem,
        server_certificate_path: cert_path,
        generated,
    }))
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The CERTIFICATE blocks of a PEM file, as DER; at least one.
fn read_certificates(path: &Path) -> Result<Vec<Vec<u8>>, TlsError> {
    let certificates =
        steward_dtls::certificates_from_pem(&read(path)?).map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certificates)
}

/// A self-signed P-256 certificate (CN [`GENERATED_CN`], SAN localhost) and its key.
fn generate(cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, GENERATED_CN);
    let cert = params
        .self_signed(&key)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    // The key first: a certificate file without its key would be taken as complete.
    write_new(key_path, key.serialize_pem().as_bytes(), true)?;
    write_new(cert_path, cert.pem().as_bytes(), false)?;
    Ok(())
}

/// Writes a file through a temporary name and a rename, so a crash leaves no half file.
fn write_new(path: &Path, contents: &[u8], private: bool) -> Result<(), TlsError> {
    let write_err = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(write_err)?;
    }
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(&tmp).map_err(write_err)?;
    file.write_all(contents).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(write_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("steward-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .self_signed(&key)
            .unwrap_or_else(|e| panic!("{e}"))
            .pem()
    }

    #[test]
    fn no_device_ca_no_certificate_mode() {
        let config = Config {
            data_dir: temp("none"),
            ..Config::default()
        };
        assert!(matches!(certificate_mode(&config), Ok(None)));
        assert!(!config.data_dir.exists(), "nothing generated");
    }

    #[test]
    fn a_server_certificate_is_generated_once_and_reused() {
        let dir = temp("generate");
        let ca = dir.join("ca.pem");
        let _ = std::fs::create_dir_all(&dir);
        std::fs::write(&ca, ca_pem()).unwrap_or_else(|e| panic!("{e}"));
        let config = Config {
            data_dir: dir.join("data"),
            device_cas: vec![ca],
            ..Config::default()
        };
        let first = certificate_mode(&config)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("certificate mode"));
        assert!(first.generated);
        assert_eq!(first.device_cas.len(), 1);
        assert_eq!(
            first.server_certificate_path,
            generated_certificate_path(&config.data_dir)
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(generated_key_path(&config.data_dir))
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or_default();
            assert_eq!(mode, 0o600);
        }
        let second = certificate_mode(&config)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("certificate mode"));
        assert!(!second.generated);
        assert_eq!(first.server_chain_pem, second.server_chain_pem);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unreadable_or_empty_ca_files_are_errors() {
        let dir = temp("bad-ca");
        let _ = std::fs::create_dir_all(&dir);
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not pem").unwrap_or_else(|e| panic!("{e}"));
        for (path, needle) in [
            (dir.join("missing.pem"), "cannot read"),
            (empty, "no CERTIFICATE"),
        ] {
            let config = Config {
                data_dir: dir.join("data"),
                device_cas: vec![path],
                ..Config::default()
            };
            let e = certificate_mode(&config).err().map(|e| e.to_string());
            assert!(e.as_deref().is_some_and(|e| e.contains(needle)), "{e:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
