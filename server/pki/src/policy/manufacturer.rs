//! Manufacturer CAs: the intermediate (and optionally root) certificates under which
//! manufacturers issue factory device certificates (seed 003: "Manufacturer – 3rd party in the
//! PKI acts as an intermediate Certificate Authority - it issues certificates for devices").
//!
//! Every certificate given for a manufacturer is a trust anchor for that manufacturer: a factory
//! chain is accepted when it reaches any of them, even if it is an intermediate (OpenSSL's
//! partial-chain mode). That is the point of the scheme: trusting the manufacturer's
//! intermediate must not mean trusting everything else its root ever signed.

use std::path::Path;

use openssl::x509::X509;

/// Why the manufacturer configuration is unusable (an operator error, found at start-up).
#[derive(Debug, thiserror::Error)]
pub enum ManufacturerError {
    #[error("manufacturer {name:?}: {reason}")]
    Invalid { name: String, reason: String },
    #[error("manufacturer file {}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// One manufacturer: a name for logs and records, and its CA certificates.
#[derive(Clone)]
pub struct ManufacturerCa {
    name: String,
    certs: Vec<X509>,
}

impl std::fmt::Debug for ManufacturerCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManufacturerCa")
            .field("name", &self.name)
            .field("certs", &self.certs.len())
            .finish()
    }
}

impl ManufacturerCa {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn certs(&self) -> &[X509] {
        &self.certs
    }
}

/// The configured manufacturers.
#[derive(Debug, Clone, Default)]
pub struct ManufacturerCas {
    list: Vec<ManufacturerCa>,
}

impl ManufacturerCas {
    pub fn new() -> ManufacturerCas {
        ManufacturerCas::default()
    }

    /// Adds a manufacturer from PEM text holding one or more CA certificates. Each must be a CA
    /// certificate (basicConstraints CA:TRUE): a device certificate configured here by mistake
    /// would otherwise become an anchor that "issues" itself.
    pub fn add_pem(&mut self, name: &str, pem: &[u8]) -> Result<(), ManufacturerError> {
        let invalid = |reason: String| ManufacturerError::Invalid {
            name: name.to_owned(),
            reason,
        };
        if name.is_empty() {
            return Err(invalid("empty name".into()));
        }
        if self.list.iter().any(|m| m.name == name) {
            return Err(invalid("configured twice".into()));
        }
        let certs = X509::stack_from_pem(pem).map_err(|e| invalid(e.to_string()))?;
        if certs.is_empty() {
            return Err(invalid("no certificate in the PEM".into()));
        }
        for cert in &certs {
            let der = cert.to_der().map_err(|e| invalid(e.to_string()))?;
            if !super::is_ca_cert(&der) {
                return Err(invalid(format!(
                    "{:?} is not a CA certificate",
                    super::subject_summary(cert)
                )));
            }
        }
        self.list.push(ManufacturerCa {
            name: name.to_owned(),
            certs,
        });
        Ok(())
    }

    /// Adds a manufacturer from a PEM file.
    pub fn add_pem_file(&mut self, name: &str, path: &Path) -> Result<(), ManufacturerError> {
        let pem = std::fs::read(path).map_err(|e| ManufacturerError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        self.add_pem(name, &pem)
    }

    /// Adds every `*.pem` file in `dir` as a manufacturer named after the file stem, in name
    /// order (so that the result does not depend on directory order).
    pub fn add_pem_dir(&mut self, dir: &Path) -> Result<(), ManufacturerError> {
        let io = |e| ManufacturerError::Io {
            path: dir.to_path_buf(),
            source: e,
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().is_some_and(|e| e == "pem") {
                paths.push(path);
            }
        }
        paths.sort();
        for path in paths {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            self.add_pem_file(&name, &path)?;
        }
        Ok(())
    }

    pub fn iter(&self) -> impl Iterator<Item = &ManufacturerCa> {
        self.list.iter()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}
