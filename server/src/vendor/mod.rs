//! The device vendor's recovery service (seed 000, issue 8): it holds the vendor recovery key
//! and signs recovery tokens for administrators it knows, auditing every request.
//!
//! A locked-in installation that lost the keys of its Certificate Trust List cannot sign a
//! chain-linked CTL update any more. Its administrator reads the CTL fingerprint from a device
//! (object 42769), asks the vendor for a recovery token scoped to that fingerprint and the
//! installation's ID, and hands the token to the Steward server, which relays it to every
//! device; each device verifies it with the vendor public key it was built with
//! (`steward_pki::recovery`). The recovery key never leaves this service and never enters the
//! Steward server.
//!
//! This is a separate service with its own data directory, run by the vendor:
//!
//! ```text
//! steward vendor init  --data-dir D [--issuer NAME]       create the key (never overwrites one)
//! steward vendor admin add|list|remove [NAME] --data-dir D
//! steward vendor serve --data-dir D [--listen 127.0.0.1:8090]
//! steward vendor sign  --data-dir D --admin NAME --fingerprint HEX --installation ID
//!                      [--lifetime SECONDS] [--out FILE]   offline, audited as channel "cli"
//! steward vendor request --url URL --token T --fingerprint HEX --installation ID
//!                      [--lifetime SECONDS] [--out FILE]   the administrator's client
//! steward vendor audit --data-dir D [--limit N]
//! ```
//!
//! # Data directory
//!
//! | file | what |
//! |---|---|
//! | `vendor-key.pem` | the recovery key: P-256, PKCS#8, mode 0600, created by `init`, never overwritten |
//! | `vendor-public.pem` | its SubjectPublicKeyInfo PEM: what devices are built with |
//! | `db/` | sled: the issuer name, administrators, the audit log (see [`store`]) |
//!
//! The key id (the tokens' COSE `kid`, and resource 7 "Vendor Key ID" of object 42769) is the
//! SHA-256 of the public key's SubjectPublicKeyInfo DER. A running `serve` holds the database's
//! lock, so the offline commands (`admin`, `sign`, `audit`) refuse with a clear error until it
//! stops.
//!
//! # HTTP API
//!
//! Plain HTTP, loopback by default: put TLS in front of it (a reverse proxy) before exposing
//! it. Administrators authenticate with `Authorization: Bearer <token>`; tokens are 32 random
//! bytes in hex, printed once by `admin add`; the service keeps their SHA-256 and compares
//! digests in constant time.
//!
//! | Route | Auth | Answer |
//! |---|---|---|
//! | `POST /api/vendor/recovery-tokens` | admin | body `{"fingerprint":"<64 hex>","installation":"<1..128 bytes>","lifetimeSeconds":<optional, default 604800, at most 2592000>}` → 201 `{"token":"<hex>","tokenId":"<32 hex>","issuedAt":s,"expiresAt":s,"size":n,"installation":..,"fingerprint":"<64 hex>","keyId":"<64 hex>","issuer":..}` |
//! | `GET /api/vendor/audit?limit=N` | admin | `{"records":[..]}`, newest last, the last N (default 1000, at most 10000); fields as [`AuditRecord`] in camelCase |
//! | `GET /api/vendor/public-key` | none | the public key PEM (`application/x-pem-file`) |
//! | `GET /api/vendor/key-id` | none | the key id, 64 hex digits (`text/plain`) |
//!
//! Errors are JSON `{"error":"<message>"}`: 400 for a body that is not the object above, a
//! fingerprint that is not 64 hex digits, an installation ID that is empty, over 128 bytes or
//! has control characters, a lifetime of 0 or over 30 days, or a bad `limit`; 401 (with
//! `WWW-Authenticate: Bearer`) without a token or with an unknown one; 413 for a body over
//! 8 KiB; 500 when the key or the database fails, including when the audit record of a
//! signing cannot be written: then no token is returned (fail closed).
//!
//! # Audit
//!
//! Every signing request of a known administrator is recorded before the answer, issued or
//! refused ([`AuditRecord`]: sequence number, time, administrator, channel `api`/`cli`, remote
//! address, fingerprint, installation, token id, iat, exp, size, outcome and reason). Requests
//! without a valid token are not recorded (anyone could fill the log with them); they are
//! logged. An offline `sign` naming an unknown administrator is recorded as refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use steward_pki::recovery::{RecoveryClaims, sign_recovery_token};

pub mod admin_token;
pub mod api;
pub mod audit;
pub mod cli;
pub mod client;
mod error;
pub mod key;
pub mod request;
pub mod server;
pub mod store;

pub use admin_token::AdminToken;
pub use audit::{AuditRecord, Channel, Origin, Outcome};
pub use error::VendorError;
pub use request::{InputError, SignInput, SignRequest};
pub use server::{RunningVendor, serve};

use key::VendorKey;
use request::{AdminName, Issuer, for_display, hex};
use store::{AdminRecord, VendorDb};

/// The issuer written into tokens when `init` is not given one.
pub const DEFAULT_ISSUER: &str = "steward-vendor";

/// A clock before this (2024-01-01) is wrong, and a token stamped with it would be expired (or
/// not yet valid) everywhere: signing is refused instead.
const EARLIEST_PLAUSIBLE_TIME: u64 = 1_704_067_200;

/// The vendor service on one data directory: the key, the administrators and the audit log.
/// Cheap to clone; every clone is the same service.
#[derive(Clone)]
pub struct VendorService {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    key: VendorKey,
    issuer: Issuer,
    db: VendorDb,
}

/// A token the service issued, with its claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The COSE_Sign1 token.
    pub token: Vec<u8>,
    pub claims: RecoveryClaims,
    /// The COSE `kid` it carries.
    pub key_id: [u8; 32],
    /// Its audit record's sequence number.
    pub audit_seq: u64,
}

impl Issued {
    /// The answer of `POST /api/vendor/recovery-tokens`.
    pub fn to_json(&self) -> Value {
        json!({
            "token": hex(&self.token),
            "tokenId": hex(&self.claims.token_id),
            "issuedAt": self.claims.issued_at,
            "expiresAt": self.claims.expires_at,
            "size": self.token.len(),
            "installation": self.claims.installation,
            "fingerprint": hex(&self.claims.ctl_fingerprint),
            "keyId": hex(&self.key_id),
            "issuer": self.claims.issuer,
        })
    }
}

/// An administrator as `admin list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub name: String,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
}

impl VendorService {
    /// Sets up a data directory: creates it (mode 0700) if needed, the key pair and the
    /// database with `issuer`. Refuses if a key file is already there, or if the database was
    /// initialised before (its key would be lost).
    pub fn init(dir: &Path, issuer: &str) -> Result<VendorService, VendorError> {
        let issuer = Issuer::parse(issuer)?;
        create_dir(dir)?;
        if let Some(existing) = key::find_existing(dir)? {
            return Err(VendorError::AlreadyInitialised(existing));
        }
        // The database first: it takes the directory's lock, so an init racing a running
        // service or another init stops here.
        let db = VendorDb::open(dir)?;
        if db.issuer()?.is_some() {
            return Err(VendorError::KeyLost(dir.to_path_buf()));
        }
        key::create(dir)?;
        if let Err(e) = db.set_issuer(&issuer) {
            // Without its issuer the directory is not initialised: take the key back so that
            // a retry can start over (no token was signed with it).
            let _ = std::fs::remove_file(dir.join(key::KEY_FILE));
            let _ = std::fs::remove_file(dir.join(key::PUBLIC_FILE));
            return Err(e);
        }
        let key = key::load(dir)?;
        Ok(VendorService::from_parts(dir, key, issuer, db))
    }

    /// Opens an initialised data directory.
    pub fn open(dir: &Path) -> Result<VendorService, VendorError> {
        // Checked before the database is opened, so that a mistyped directory is not left
        // with an empty database in it.
        if key::find_existing(dir)?.is_none() {
            return Err(VendorError::NotInitialised(dir.to_path_buf()));
        }
        let db = VendorDb::open(dir)?;
        let key = match key::load(dir) {
            Err(VendorError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Err(VendorError::KeyLost(dir.to_path_buf()));
            }
            other => other?,
        };
        let issuer = db.issuer()?.ok_or_else(|| {
            VendorError::Corrupt(format!(
                "{} has a key but no issuer: `steward vendor init` was interrupted",
                dir.display()
            ))
        })?;
        Ok(VendorService::from_parts(dir, key, issuer, db))
    }

    fn from_parts(dir: &Path, key: VendorKey, issuer: Issuer, db: VendorDb) -> VendorService {
        VendorService {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                key,
                issuer,
                db,
            }),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn issuer(&self) -> &str {
        self.inner.issuer.as_str()
    }

    /// The SubjectPublicKeyInfo PEM devices are built with.
    pub fn public_key_pem(&self) -> &str {
        self.inner.key.public_pem()
    }

    /// SHA-256 of the public key's SubjectPublicKeyInfo DER: the tokens' `kid`.
    pub fn key_id(&self) -> [u8; 32] {
        self.inner.key.key_id()
    }

    /// Adds an administrator and returns its bearer token: the only time it is shown.
    pub fn add_admin(&self, name: &str) -> Result<AdminToken, VendorError> {
        let name = AdminName::parse(name)?;
        let token = AdminToken::generate().map_err(|e| VendorError::Sign(e.to_string()))?;
        let record = AdminRecord {
            token_sha256: token.digest(),
            created_at: now(),
        };
        self.inner.db.add_admin(&name, &record)?;
        tracing::info!(admin = %name, "administrator added");
        Ok(token)
    }

    /// Removes an administrator (its token stops working at once); false if there was none.
    /// Its audit records stay.
    pub fn remove_admin(&self, name: &str) -> Result<bool, VendorError> {
        let removed = self.inner.db.remove_admin(name)?;
        if removed {
            tracing::info!(admin = %for_display(name), "administrator removed");
        }
        Ok(removed)
    }

    pub fn admins(&self) -> Result<Vec<Admin>, VendorError> {
        Ok(self
            .inner
            .db
            .admins()?
            .into_iter()
            .map(|(name, record)| Admin {
                name,
                created_at: record.created_at,
            })
            .collect())
    }

    /// The administrator whose bearer token this is, if any.
    pub fn authenticate(&self, token: &str) -> Result<Option<String>, VendorError> {
        self.inner.db.admin_by_digest(&admin_token::digest(token))
    }

    /// Signs a recovery token for `admin`, who must exist. The request is parsed here, so the
    /// API and the CLI refuse the same things; every outcome is audited. The token is returned
    /// only once its audit record is on disk: if that write fails, the token is dropped and the
    /// error is [`VendorError::Audit`].
    pub fn sign(
        &self,
        admin: &str,
        origin: &Origin,
        input: &SignInput,
    ) -> Result<Issued, VendorError> {
        self.sign_then_record(admin, origin, input, |record| {
            self.inner.db.append_audit(record)
        })
    }

    /// [`VendorService::sign`] with the audit write as a parameter, so that a test can make
    /// it fail and see that no token comes out.
    fn sign_then_record(
        &self,
        admin: &str,
        origin: &Origin,
        input: &SignInput,
        record_issued: impl FnOnce(AuditRecord) -> Result<AuditRecord, VendorError>,
    ) -> Result<Issued, VendorError> {
        let now = now();
        if self.inner.db.admin(admin)?.is_none() {
            let e = VendorError::UnknownAdmin(for_display(admin));
            self.refuse(admin, origin, input, &e.to_string());
            return Err(e);
        }
        let request = match input.parse() {
            Ok(r) => r,
            Err(e) => {
                self.refuse(admin, origin, input, &e.to_string());
                return Err(e.into());
            }
        };
        if now < EARLIEST_PLAUSIBLE_TIME {
            let e = VendorError::Sign(format!(
                "the system clock says {now} s since 1970, before 2024: fix the clock"
            ));
            self.refuse(admin, origin, input, &e.to_string());
            return Err(e);
        }
        let mut token_id = [0u8; 16];
        if let Err(e) = openssl::rand::rand_bytes(&mut token_id) {
            let e = VendorError::Sign(format!("no random token id: {e}"));
            self.refuse(admin, origin, input, &e.to_string());
            return Err(e);
        }
        let claims = RecoveryClaims {
            issuer: self.inner.issuer.as_str().to_owned(),
            ctl_fingerprint: request.fingerprint.bytes(),
            installation: request.installation.as_str().to_owned(),
            issued_at: now,
            // `Lifetime` is at most 30 days and `now` a plausible clock: no overflow, but a
            // saturating add costs nothing.
            expires_at: now.saturating_add(request.lifetime.seconds()),
            token_id,
        };
        let key_id = self.key_id();
        let token = match sign_recovery_token(self.inner.key.signing_key(), &key_id, &claims) {
            Ok(token) => token,
            Err(e) => {
                let e = VendorError::Sign(e.to_string());
                self.refuse(admin, origin, input, &e.to_string());
                return Err(e);
            }
        };
        let record = AuditRecord {
            seq: 0,
            time: now,
            admin: admin.to_owned(),
            channel: origin.channel,
            remote: origin.remote.map(|a| a.to_string()),
            fingerprint: request.fingerprint.hex(),
            installation: claims.installation.clone(),
            outcome: Outcome::Issued,
            token_id: Some(hex(&token_id)),
            issued_at: Some(claims.issued_at),
            expires_at: Some(claims.expires_at),
            size: Some(token.len() as u64),
            reason: None,
        };
        let stored = record_issued(record).map_err(|e| VendorError::Audit(e.to_string()))?;
        tracing::info!(
            admin,
            channel = origin.channel.as_str(),
            remote = ?origin.remote,
            fingerprint = %request.fingerprint.hex(),
            installation = %claims.installation,
            cti = %hex(&token_id),
            seq = stored.seq,
            "recovery token issued"
        );
        Ok(Issued {
            token,
            claims,
            key_id,
            audit_seq: stored.seq,
        })
    }

    /// Records a refused request of `admin`. The refusal stands whether or not the record is
    /// written; a failed write is logged as the error it is.
    pub fn refuse(&self, admin: &str, origin: &Origin, input: &SignInput, reason: &str) {
        let record = AuditRecord {
            seq: 0,
            time: now(),
            admin: for_display(admin),
            channel: origin.channel,
            remote: origin.remote.map(|a| a.to_string()),
            fingerprint: for_display(&input.fingerprint),
            installation: for_display(&input.installation),
            outcome: Outcome::Refused,
            token_id: None,
            issued_at: None,
            expires_at: None,
            size: None,
            reason: Some(for_display(reason)),
        };
        match self.inner.db.append_audit(record) {
            Ok(stored) => tracing::warn!(
                admin = %for_display(admin),
                channel = origin.channel.as_str(),
                remote = ?origin.remote,
                seq = stored.seq,
                reason = %for_display(reason),
                "recovery token refused"
            ),
            Err(e) => tracing::error!(
                admin = %for_display(admin),
                error = %e,
                "cannot record a refused recovery-token request in the audit log"
            ),
        }
    }

    /// The last `limit` audit records, oldest first.
    pub fn audit(&self, limit: usize) -> Result<Vec<AuditRecord>, VendorError> {
        self.inner.db.audit(limit)
    }
}

/// Seconds since the Unix epoch; 0 for a clock before 1970 (which `sign` then refuses).
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Creates the data directory owner-only when it does not exist yet; an existing directory is
/// left as it is.
fn create_dir(dir: &Path) -> Result<(), VendorError> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(source) => Err(VendorError::Io {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn no_token_without_its_audit_record() {
        let dir = tempfile::tempdir().unwrap();
        let service = VendorService::init(dir.path(), "ACME").unwrap();
        service.add_admin("alice").unwrap();
        let input = SignInput {
            fingerprint: "ab".repeat(32),
            installation: "site-1".into(),
            lifetime_seconds: None,
        };
        let failed = service.sign_then_record("alice", &Origin::cli(), &input, |_| {
            Err(VendorError::Storage("disk full".into()))
        });
        match failed {
            Err(VendorError::Audit(reason)) => assert!(reason.contains("disk full")),
            other => panic!("expected an audit failure, got {other:?}"),
        }
        // The real path records, then returns the token.
        let issued = service.sign("alice", &Origin::cli(), &input).unwrap();
        let records = service.audit(10).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].seq, issued.audit_seq);
        assert_eq!(records[0].token_id, Some(hex(&issued.claims.token_id)));
    }
}
