//! The vendor service's database: sled in `<data-dir>/db`, three trees.
//!
//! | tree | key | value |
//! |---|---|---|
//! | `meta` | `b"format"` | u32 big-endian, [`FORMAT_VERSION`] |
//! | `meta` | `b"issuer"` | the issuer name (UTF-8), set by `init` |
//! | `admins` | administrator name (UTF-8) | CBOR [`AdminRecord`] |
//! | `audit` | sequence number (u64 big-endian) | CBOR [`AuditRecord`] |
//!
//! Audit keys are the records' sequence numbers, assigned in the order requests are decided,
//! so key order is time order and "newest last" is a plain scan. Every write is flushed
//! (fsynced) before the call returns: an issued token's record is on disk before the token
//! leaves the service.
//!
//! sled holds a lock on the directory while the database is open, so a running
//! `steward vendor serve` keeps the offline commands out ([`VendorError::Locked`]).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use minicbor::{Decode, Encode};
use sled::Tree;

use super::VendorError;
use super::admin_token::same_digest;
use super::audit::AuditRecord;
use super::request::{AdminName, Issuer};

/// The on-disk format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_KEY: &[u8] = b"format";
const ISSUER_KEY: &[u8] = b"issuer";

/// How long [`VendorDb::open`] waits for sled's directory lock: sled lets go of it a moment
/// after the last handle is dropped, which an in-process restart runs into; a lock held longer
/// belongs to another process.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// An administrator: the SHA-256 of its bearer token and when it was added.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct AdminRecord {
    #[cbor(n(0), with = "minicbor::bytes")]
    pub token_sha256: [u8; 32],
    /// Seconds since the Unix epoch.
    #[n(1)]
    pub created_at: u64,
}

pub struct VendorDb {
    db: sled::Db,
    meta: Tree,
    admins: Tree,
    audit: Tree,
    /// Serialises "next sequence number, insert": two signings must not get the same number.
    append: Mutex<()>,
}

impl VendorDb {
    /// Opens (or creates) `<dir>/db`.
    pub fn open(dir: &Path) -> Result<VendorDb, VendorError> {
        let path = dir.join("db");
        // sled writes `conf` when it creates a database; the marker is flushed before the
        // first open returns, so a database with `conf` but no marker is damaged.
        let existed = path.join("conf").exists();
        let config = sled::Config::new().path(&path);
        let deadline = Instant::now() + LOCK_WAIT;
        let db = loop {
            // sled has code paths that panic on damaged files; a damaged database is an error
            // for the operator, not a crash.
            let opened = catch_unwind(AssertUnwindSafe(|| config.open())).map_err(|_| {
                VendorError::Corrupt(format!("sled panicked while opening {}", path.display()))
            })?;
            match opened {
                Ok(db) => break db,
                Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                    if Instant::now() >= deadline {
                        return Err(VendorError::Locked(dir.to_path_buf()));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let store = VendorDb {
            meta: db.open_tree("meta")?,
            admins: db.open_tree("admins")?,
            audit: db.open_tree("audit")?,
            append: Mutex::new(()),
            db,
        };
        store.check_format(existed, &path)?;
        Ok(store)
    }

    /// Reads the format marker, writing it into a new database. A database that existed but
    /// lost the marker has lost its records (sled recovers silently up to the first bad
    /// record): refused rather than started empty, which would hide a lost audit log.
    fn check_format(&self, existed: bool, path: &Path) -> Result<(), VendorError> {
        match self.meta.get(FORMAT_KEY)? {
            Some(v) => {
                let bytes: [u8; 4] = v.as_ref().try_into().map_err(|_| {
                    VendorError::Corrupt(format!("format marker has {} bytes, not 4", v.len()))
                })?;
                let found = u32::from_be_bytes(bytes);
                if found != FORMAT_VERSION {
                    return Err(VendorError::Corrupt(format!(
                        "format {found}, this build reads format {FORMAT_VERSION}"
                    )));
                }
                Ok(())
            }
            None if existed || !self.admins.is_empty() || !self.audit.is_empty() => {
                Err(VendorError::Corrupt(format!(
                    "{} has no format marker: its files are damaged (restore a backup), or the \
                     very first open was interrupted (then remove it: it holds nothing)",
                    path.display()
                )))
            }
            None => Ok(self.write_format()?),
        }
    }

    fn write_format(&self) -> Result<(), sled::Error> {
        self.meta
            .insert(FORMAT_KEY, &FORMAT_VERSION.to_be_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    pub fn issuer(&self) -> Result<Option<Issuer>, VendorError> {
        let Some(bytes) = self.meta.get(ISSUER_KEY)? else {
            return Ok(None);
        };
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| VendorError::Corrupt("the issuer is not UTF-8".into()))?;
        Issuer::parse(text)
            .map(Some)
            .map_err(|e| VendorError::Corrupt(format!("stored issuer: {e}")))
    }

    pub fn set_issuer(&self, issuer: &Issuer) -> Result<(), VendorError> {
        self.meta.insert(ISSUER_KEY, issuer.as_str().as_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    /// Adds an administrator; `AdminExists` if the name is taken (never replaces a token
    /// silently).
    pub fn add_admin(&self, name: &AdminName, record: &AdminRecord) -> Result<(), VendorError> {
        let value = encode(record)?;
        self.admins
            .compare_and_swap(name.as_str(), None as Option<&[u8]>, Some(value))?
            .map_err(|_| VendorError::AdminExists(name.to_string()))?;
        self.db.flush()?;
        Ok(())
    }

    /// Removes an administrator; false if there was none.
    pub fn remove_admin(&self, name: &str) -> Result<bool, VendorError> {
        let removed = self.admins.remove(name)?.is_some();
        self.db.flush()?;
        Ok(removed)
    }

    pub fn admin(&self, name: &str) -> Result<Option<AdminRecord>, VendorError> {
        self.admins
            .get(name)?
            .map(|v| decode(&v, "admins"))
            .transpose()
    }

    /// Every administrator, by name.
    pub fn admins(&self) -> Result<Vec<(String, AdminRecord)>, VendorError> {
        self.admins
            .iter()
            .map(|entry| {
                let (k, v) = entry?;
                let name = String::from_utf8(k.to_vec()).map_err(|_| {
                    VendorError::Corrupt("an administrator name is not UTF-8".into())
                })?;
                Ok((name, decode(&v, "admins")?))
            })
            .collect()
    }

    /// The administrator whose token has this digest. Every stored digest is compared, in
    /// constant time each, so that neither the position of the match nor a near miss shows in
    /// the timing (there are a handful of administrators, not thousands).
    pub fn admin_by_digest(&self, digest: &[u8; 32]) -> Result<Option<String>, VendorError> {
        let mut found = None;
        for (name, record) in self.admins()? {
            if same_digest(&record.token_sha256, digest) && found.is_none() {
                found = Some(name);
            }
        }
        Ok(found)
    }

    /// Appends `record` under the next sequence number (set in the record) and flushes; the
    /// record as stored.
    pub fn append_audit(&self, mut record: AuditRecord) -> Result<AuditRecord, VendorError> {
        // Nothing inside can leave the guarded unit inconsistent: a poisoned lock is usable.
        let _guard = self.append.lock().unwrap_or_else(PoisonError::into_inner);
        let last = match self.audit.last()? {
            Some((key, _)) => seq_of(&key)?,
            None => 0,
        };
        record.seq = last
            .checked_add(1)
            .ok_or_else(|| VendorError::Corrupt("audit sequence exhausted".into()))?;
        let value = encode(&record)?;
        self.audit.insert(record.seq.to_be_bytes(), value)?;
        self.db.flush()?;
        Ok(record)
    }

    /// The last `limit` records, oldest first.
    pub fn audit(&self, limit: usize) -> Result<Vec<AuditRecord>, VendorError> {
        let mut records = self
            .audit
            .iter()
            .rev()
            .take(limit)
            .map(|entry| {
                let (_, v) = entry?;
                decode(&v, "audit")
            })
            .collect::<Result<Vec<AuditRecord>, VendorError>>()?;
        records.reverse();
        Ok(records)
    }
}

fn seq_of(key: &[u8]) -> Result<u64, VendorError> {
    key.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| VendorError::Corrupt(format!("audit key of {} bytes, not 8", key.len())))
}

fn encode<T: Encode<()>>(value: &T) -> Result<Vec<u8>, VendorError> {
    // A Vec writer cannot fail; should encoding ever fail anyway, nothing half-written is
    // stored (an audit record must not become an empty value).
    minicbor::to_vec(value).map_err(|e| VendorError::Storage(format!("encoding a record: {e}")))
}

fn decode<T: for<'b> Decode<'b, ()>>(bytes: &[u8], tree: &str) -> Result<T, VendorError> {
    minicbor::decode(bytes)
        .map_err(|e| VendorError::Corrupt(format!("undecodable record in {tree}: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::vendor::audit::{Channel, Outcome};

    fn record(admin: &str) -> AuditRecord {
        AuditRecord {
            seq: 0,
            time: 1,
            admin: admin.into(),
            channel: Channel::Cli,
            remote: None,
            fingerprint: String::new(),
            installation: String::new(),
            outcome: Outcome::Refused,
            token_id: None,
            issued_at: None,
            expires_at: None,
            size: None,
            reason: Some("test".into()),
        }
    }

    #[test]
    fn audit_sequence_and_limit() {
        let dir = tempfile::tempdir().unwrap();
        let db = VendorDb::open(dir.path()).unwrap();
        for i in 0..5 {
            let stored = db.append_audit(record(&format!("a{i}"))).unwrap();
            assert_eq!(stored.seq, i + 1);
        }
        let all = db.audit(100).unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(all[0].admin, "a0");
        let last = db.audit(2).unwrap();
        assert_eq!(
            last.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![4, 5],
            "newest last"
        );
    }

    #[test]
    fn admins_are_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let db = VendorDb::open(dir.path()).unwrap();
        let name = AdminName::parse("alice").unwrap();
        let record = AdminRecord {
            token_sha256: [1; 32],
            created_at: 5,
        };
        db.add_admin(&name, &record).unwrap();
        let other = AdminRecord {
            token_sha256: [2; 32],
            created_at: 6,
        };
        assert!(matches!(
            db.add_admin(&name, &other),
            Err(VendorError::AdminExists(_))
        ));
        assert_eq!(db.admin("alice").unwrap(), Some(record));
        assert_eq!(
            db.admin_by_digest(&[1; 32]).unwrap().as_deref(),
            Some("alice")
        );
        assert_eq!(db.admin_by_digest(&[2; 32]).unwrap(), None);
        assert!(db.remove_admin("alice").unwrap());
        assert!(!db.remove_admin("alice").unwrap());
    }
}
