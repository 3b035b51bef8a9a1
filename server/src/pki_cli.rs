//! `steward ca ...` and `steward bootstrap ...`: the CA, manufacturers, allow-list, issued
//! certificates, revocations and bootstrap configurations, managed offline in the data
//! directory. The store is a sled database that `steward serve` keeps locked while it runs, so
//! stop the server first (commands that only touch `DATA_DIR/ca` files work either way, but a
//! running server reads them only at start).
//!
//! ```text
//! steward ca init [--data-dir D] [--org O]
//! steward ca import --root R.pem --issuing I.pem --key K.pem
//! steward ca show
//! steward ca manufacturer add NAME FILE.pem | list
//! steward ca allow-list import FILE(.csv|.json) | list | remove ID
//! steward ca issued [--endpoint E]
//! steward ca revoke (--serial HEX | --endpoint E) [--reason keyCompromise|...]
//! steward ca crl --out FILE.der
//! steward bootstrap import FILE.json | export
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use clap::{Args, Subcommand};
use openssl::asn1::Asn1Time;
use openssl::hash::MessageDigest;
use openssl::x509::{X509NameRef, X509Ref};
use steward_pki::ca::{Ca, CaError, CaNames, SerialError};
use steward_pki::policy::{AllowList, AllowListError, ManufacturerCas, ManufacturerError};
use steward_pki::records::{IssuedRecord, PkiStore, PkiStoreError};

use crate::bootstrap::config::{ConfigError, configs_from_json, configs_to_json};
use crate::pki::{CA_DIR, MANUFACTURERS_DIR, PkiError, PkiService, PkiSettings, ca_exists};
use crate::store::{SledStore, Store, StoreError};

/// `steward ca`.
#[derive(Debug, Args)]
pub struct CaArgs {
    /// The server's data directory (store and `ca/` live there).
    #[arg(long, default_value = "./steward-data", global = true)]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub action: CaAction,
}

#[derive(Debug, Subcommand)]
pub enum CaAction {
    /// Create a new root and issuing CA in DATA_DIR/ca.
    Init {
        /// Organisation (subject O) of both CA certificates.
        #[arg(long)]
        org: Option<String>,
    },
    /// Import an existing root certificate, issuing certificate and issuing key (PEM).
    Import {
        #[arg(long)]
        root: PathBuf,
        #[arg(long)]
        issuing: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
    /// Print the CA certificates: subject, serial, validity, SHA-256 fingerprint.
    Show,
    /// Manufacturer CAs whose factory certificates may enrol.
    Manufacturer {
        #[command(subcommand)]
        action: ManufacturerAction,
    },
    /// Device IDs the manufacturers reported as produced.
    AllowList {
        #[command(subcommand)]
        action: AllowListAction,
    },
    /// List issued certificates.
    Issued {
        #[arg(long)]
        endpoint: Option<String>,
    },
    /// Revoke one certificate or every certificate of an endpoint.
    Revoke {
        /// Serial number in hex (colons allowed).
        #[arg(
            long,
            conflicts_with = "endpoint",
            required_unless_present = "endpoint"
        )]
        serial: Option<String>,
        #[arg(long)]
        endpoint: Option<String>,
        /// RFC 5280 reason: unspecified, keyCompromise, cACompromise, affiliationChanged,
        /// superseded, cessationOfOperation, certificateHold, privilegeWithdrawn, ...
        #[arg(long, default_value = "unspecified")]
        reason: String,
    },
    /// Write the current CRL (DER).
    Crl {
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ManufacturerAction {
    /// Add a manufacturer CA (PEM with one or more CA certificates) under NAME.
    Add { name: String, file: PathBuf },
    /// List the manufacturers and their CA certificates.
    List,
}

#[derive(Debug, Subcommand)]
pub enum AllowListAction {
    /// Import device IDs from CSV (a `device_id` column, or one ID per line) or JSON.
    Import {
        file: PathBuf,
    },
    List,
    Remove {
        id: String,
    },
}

/// `steward bootstrap`.
#[derive(Debug, Args)]
pub struct BootstrapArgs {
    #[arg(long, default_value = "./steward-data", global = true)]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub action: BootstrapAction,
}

#[derive(Debug, Subcommand)]
pub enum BootstrapAction {
    /// Store the configurations of a Leshan bootstrap JSON file (`{"endpoint": {...}}`).
    Import { file: PathBuf },
    /// Print every stored configuration as Leshan bootstrap JSON.
    Export,
}

#[derive(Debug, thiserror::Error)]
pub enum PkiCliError {
    #[error("no CA in {} (run `steward ca init` or `steward ca import`)", .0.display())]
    NoCa(PathBuf),
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("store: {0} (is `steward serve` running on this data directory? stop it first)")]
    Store(#[from] StoreError),
    #[error("PKI store: {0}")]
    PkiStore(#[from] PkiStoreError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    AllowList {
        path: PathBuf,
        source: AllowListError,
    },
    #[error(transparent)]
    Manufacturer(#[from] ManufacturerError),
    #[error(
        "manufacturer name {0:?} must be 1-64 characters of A-Z a-z 0-9 . _ - (not starting with .)"
    )]
    BadManufacturerName(String),
    #[error("manufacturer {0:?} already exists; remove {1} first to replace it")]
    ManufacturerExists(String, PathBuf),
    #[error("bad serial: {0}")]
    BadSerial(#[from] SerialError),
    #[error("unknown revocation reason {0:?}")]
    BadReason(String),
    #[error("{0:?} is not on the allow-list")]
    NotOnAllowList(String),
    #[error("bootstrap configuration: {0}")]
    Bootstrap(#[from] ConfigError),
    #[error("bootstrap configuration of {endpoint:?}: {source}")]
    InvalidBootstrap {
        endpoint: String,
        source: ConfigError,
    },
    #[error("crypto: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
}

/// Runs `steward ca ACTION` on `data_dir`; returns the lines to print.
pub fn run_ca(
    data_dir: &Path,
    action: &CaAction,
    now: SystemTime,
) -> Result<Vec<String>, PkiCliError> {
    let ca_dir = data_dir.join(CA_DIR);
    match action {
        CaAction::Init { org } => {
            let names = CaNames {
                organization: org.clone(),
                ..CaNames::default()
            };
            let ca = Ca::init(&ca_dir, &names, unix(now))?;
            let mut lines = vec![format!("created a CA in {}", ca_dir.display())];
            lines.extend(describe_ca(&ca)?);
            lines.push(format!(
                "the root key is {}/root.key.pem: move it offline; the server only needs the issuing key",
                ca_dir.display()
            ));
            Ok(lines)
        }
        CaAction::Import { root, issuing, key } => {
            let ca = Ca::import(&ca_dir, &read(root)?, &read(issuing)?, &read(key)?)?;
            let mut lines = vec![format!("imported a CA into {}", ca_dir.display())];
            lines.extend(describe_ca(&ca)?);
            Ok(lines)
        }
        CaAction::Show => describe_ca(&load_ca(&ca_dir)?),
        CaAction::Manufacturer { action } => manufacturer(&ca_dir, action),
        CaAction::AllowList { action } => allow_list(data_dir, action),
        CaAction::Issued { endpoint } => {
            let store = open_store(data_dir)?;
            let records = match endpoint {
                Some(ep) => store.issued_for_endpoint(ep)?,
                None => store.all_issued()?,
            };
            Ok(records.iter().map(describe_issued).collect())
        }
        CaAction::Revoke {
            serial,
            endpoint,
            reason,
        } => {
            let reason = crate::pki::reason_from_name(reason)
                .ok_or_else(|| PkiCliError::BadReason(reason.clone()))?;
            let pki = service(data_dir)?;
            match (serial, endpoint) {
                (Some(serial), _) => {
                    let serial = serial.parse()?;
                    let line = if pki.revoke_serial(&serial, reason, now)? {
                        format!("revoked {serial} ({reason})")
                    } else {
                        format!("{serial} was already revoked")
                    };
                    Ok(vec![line])
                }
                (None, Some(endpoint)) => {
                    let n = pki.revoke_endpoint(endpoint, reason, now)?;
                    Ok(vec![format!(
                        "revoked {n} certificate(s) of {endpoint} ({reason})"
                    )])
                }
                // clap requires one of the two; answer sensibly anyway.
                (None, None) => Err(PkiCliError::BadReason("give --serial or --endpoint".into())),
            }
        }
        CaAction::Crl { out } => {
            let pki = service(data_dir)?;
            let der = pki.crl_der(now)?;
            std::fs::write(out, &der).map_err(|e| PkiCliError::Io {
                path: out.clone(),
                source: e,
            })?;
            let revoked = pki.store().revoked()?.len();
            Ok(vec![format!(
                "wrote {} ({} bytes, {revoked} revoked certificate(s))",
                out.display(),
                der.len()
            )])
        }
    }
}

/// Runs `steward bootstrap ACTION` on `data_dir`; returns the lines to print.
pub fn run_bootstrap(
    data_dir: &Path,
    action: &BootstrapAction,
) -> Result<Vec<String>, PkiCliError> {
    let store = open_store(data_dir)?;
    let lines = match action {
        BootstrapAction::Import { file } => {
            let configs = configs_from_json(&read(file)?)?;
            // Validate everything before storing anything: a file is imported whole or not at all.
            for (endpoint, config) in &configs {
                config
                    .validate()
                    .map_err(|source| PkiCliError::InvalidBootstrap {
                        endpoint: endpoint.clone(),
                        source,
                    })?;
            }
            for (endpoint, config) in &configs {
                store.put_bootstrap_config(endpoint, config)?;
            }
            vec![format!(
                "imported {} bootstrap configuration(s)",
                configs.len()
            )]
        }
        BootstrapAction::Export => {
            let configs = store.bootstrap_configs()?;
            vec![configs_to_json(
                configs.iter().map(|(ep, config)| (ep.as_str(), config)),
            )]
        }
    };
    store.flush()?;
    Ok(lines)
}

/// `steward ca` from parsed arguments, at the current time.
pub fn run_ca_args(args: &CaArgs) -> Result<Vec<String>, PkiCliError> {
    run_ca(&args.data_dir, &args.action, SystemTime::now())
}

/// `steward bootstrap` from parsed arguments.
pub fn run_bootstrap_args(args: &BootstrapArgs) -> Result<Vec<String>, PkiCliError> {
    run_bootstrap(&args.data_dir, &args.action)
}

fn manufacturer(ca_dir: &Path, action: &ManufacturerAction) -> Result<Vec<String>, PkiCliError> {
    let dir = ca_dir.join(MANUFACTURERS_DIR);
    match action {
        ManufacturerAction::Add { name, file } => {
            let valid_name = !name.is_empty()
                && name.len() <= 64
                && !name.starts_with('.')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !valid_name {
                return Err(PkiCliError::BadManufacturerName(name.clone()));
            }
            let pem = read(file)?;
            // The same checks the server applies at start (CA certificates only).
            ManufacturerCas::new().add_pem(name, &pem)?;
            let path = dir.join(format!("{name}.pem"));
            if path.exists() {
                return Err(PkiCliError::ManufacturerExists(name.clone(), path));
            }
            let io = |e| PkiCliError::Io {
                path: path.clone(),
                source: e,
            };
            std::fs::create_dir_all(&dir).map_err(io)?;
            std::fs::write(&path, &pem).map_err(io)?;
            Ok(vec![format!(
                "added manufacturer {name} ({}); restart the server to use it",
                path.display()
            )])
        }
        ManufacturerAction::List => {
            let mut cas = ManufacturerCas::new();
            if dir.is_dir() {
                cas.add_pem_dir(&dir)?;
            }
            let mut lines = Vec::new();
            for m in cas.iter() {
                for cert in m.certs() {
                    lines.push(format!(
                        "{}\t{}\t{}",
                        m.name(),
                        subject(cert.subject_name()),
                        fingerprint(cert)?
                    ));
                }
            }
            Ok(lines)
        }
    }
}

fn allow_list(data_dir: &Path, action: &AllowListAction) -> Result<Vec<String>, PkiCliError> {
    let store = open_store(data_dir)?;
    match action {
        AllowListAction::Import { file } => {
            let text = String::from_utf8_lossy(&read(file)?).into_owned();
            let is_json = match file.extension().and_then(|e| e.to_str()) {
                Some(ext) => ext.eq_ignore_ascii_case("json"),
                None => text.trim_start().starts_with('['),
            };
            let list = if is_json {
                AllowList::from_json(&text)
            } else {
                AllowList::from_csv(&text)
            }
            .map_err(|source| PkiCliError::AllowList {
                path: file.clone(),
                source,
            })?;
            let added = store.allow_list_put_all(list.iter())?;
            Ok(vec![format!(
                "imported {} device ID(s), {added} new",
                list.len()
            )])
        }
        AllowListAction::List => Ok(store.allow_list_all()?),
        AllowListAction::Remove { id } => {
            if store.allow_list_remove(id)? {
                Ok(vec![format!("removed {id} from the allow-list")])
            } else {
                Err(PkiCliError::NotOnAllowList(id.clone()))
            }
        }
    }
}

fn open_store(data_dir: &Path) -> Result<Arc<SledStore>, PkiCliError> {
    Ok(Arc::new(SledStore::open(data_dir)?))
}

fn service(data_dir: &Path) -> Result<PkiService, PkiCliError> {
    let store = open_store(data_dir)?;
    PkiService::load(data_dir, store, PkiSettings::default())?
        .ok_or_else(|| PkiCliError::NoCa(data_dir.join(CA_DIR)))
}

fn load_ca(ca_dir: &Path) -> Result<Ca, PkiCliError> {
    if !ca_exists(ca_dir) {
        return Err(PkiCliError::NoCa(ca_dir.to_path_buf()));
    }
    Ok(Ca::load(ca_dir)?)
}

fn describe_ca(ca: &Ca) -> Result<Vec<String>, PkiCliError> {
    let mut lines = Vec::new();
    for (role, cert) in [("root", ca.root_cert()), ("issuing", ca.issuing_cert())] {
        lines.push(format!("{role}: {}", subject(cert.subject_name())));
        lines.push(format!(
            "  serial {}",
            cert.serial_number()
                .to_bn()?
                .to_hex_str()?
                .to_ascii_lowercase()
        ));
        lines.push(format!(
            "  valid {} to {}",
            cert.not_before(),
            cert.not_after()
        ));
        lines.push(format!("  sha256 {}", fingerprint(cert)?));
    }
    Ok(lines)
}

fn describe_issued(r: &IssuedRecord) -> String {
    let status = match r.revoked {
        Some(rev) => format!("revoked {} ({})", time(rev.at), rev.reason),
        None => "valid".to_owned(),
    };
    format!(
        "{}\t{}\t{}\tnot_after {}\t{status}",
        r.serial,
        r.endpoint,
        r.profile,
        time(r.not_after)
    )
}

fn subject(name: &X509NameRef) -> String {
    name.entries()
        .map(|e| {
            let key = e.object().nid().short_name().unwrap_or("?");
            let value = e.data().to_string().unwrap_or_else(|_| "<not text>".into());
            format!("{key}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn fingerprint(cert: &X509Ref) -> Result<String, PkiCliError> {
    Ok(cert
        .digest(MessageDigest::sha256())?
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":"))
}

fn time(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|t| Asn1Time::from_unix(t).ok())
        .map_or_else(|| unix.to_string(), |t| t.to_string())
}

fn read(path: &Path) -> Result<Vec<u8>, PkiCliError> {
    std::fs::read(path).map_err(|e| PkiCliError::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
