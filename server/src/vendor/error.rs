//! What can go wrong in the vendor service, split by who has to act: the administrator (a
//! request or name that is wrong), the operator of the service (its data directory: not set up,
//! in use, unreadable key), or the service itself (storage, signing). The HTTP API maps the
//! first to 4xx and the rest to 500 (see `api.rs`); the CLI prints the message.

use std::path::PathBuf;

use super::request::InputError;

/// Why a vendor-service operation failed. `Display` is a complete sentence for the operator.
#[derive(Debug, thiserror::Error)]
pub enum VendorError {
    /// The request is wrong: the message says what to fix.
    #[error("{0}")]
    Input(#[from] InputError),
    /// The administrator named for an offline signing does not exist (or was removed).
    #[error("no administrator named {0:?}")]
    UnknownAdmin(String),
    #[error("an administrator named {0:?} already exists (remove it first to replace its token)")]
    AdminExists(String),
    /// `vendor-key.pem` is not in the data directory.
    #[error(
        "{} holds no vendor key (vendor-key.pem): run `steward vendor init --data-dir {}` first",
        .0.display(), .0.display()
    )]
    NotInitialised(PathBuf),
    /// `init` found a key (or the public key) in place; it never overwrites one.
    #[error(
        "{} already exists: `steward vendor init` never overwrites a vendor key (devices are built \
         with its public half)",
        .0.display()
    )]
    AlreadyInitialised(PathBuf),
    /// The database says the directory was initialised, but the key is gone: a new key would
    /// sign tokens that no device built with the old public key accepts.
    #[error(
        "{} was initialised but its vendor key is missing: restore vendor-key.pem from a backup \
         (a new key would not match the public key devices are built with)",
        .0.display()
    )]
    KeyLost(PathBuf),
    /// Another process (a running `steward vendor serve`, or another command) holds the
    /// database.
    #[error(
        "the vendor data directory {} is in use by another process (a running `steward vendor \
         serve`?): stop it first, or use `steward vendor request` against the running service",
        .0.display()
    )]
    Locked(PathBuf),
    /// The key files cannot be used: unreadable PEM, not P-256, the public file does not match.
    #[error("vendor key {}: {reason}", .path.display())]
    Key { path: PathBuf, reason: String },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The database failed (I/O under sled).
    #[error("vendor database: {0}")]
    Storage(String),
    /// A record in the database cannot be read.
    #[error("vendor database is damaged: {0}")]
    Corrupt(String),
    /// Signing, or the randomness it needs, failed.
    #[error("cannot sign the recovery token: {0}")]
    Sign(String),
    /// The signing was not recorded, so its token was thrown away (fail closed).
    #[error("the signing could not be recorded in the audit log, so no token was issued: {0}")]
    Audit(String),
    /// The HTTP listener could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

impl From<sled::Error> for VendorError {
    fn from(e: sled::Error) -> VendorError {
        match e {
            sled::Error::Corruption { .. } => VendorError::Corrupt(e.to_string()),
            other => VendorError::Storage(other.to_string()),
        }
    }
}
