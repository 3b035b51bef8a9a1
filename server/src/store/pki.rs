//! The PKI's records in the sled store: [`PkiStore`] for [`SledStore`].
//!
//! | tree | key | value |
//! |---|---|---|
//! | `issued` | serial (unsigned big-endian magnitude) | CBOR [`IssuedRecord`] |
//! | `issued_by_endpoint` | endpoint length (u16 BE) ‖ endpoint ‖ serial | empty |
//! | `allow_list` | device ID (UTF-8) | empty |
//! | `pki_meta` | `b"crl_number"` | last CRL number handed out, u64 BE |
//!
//! `issued_by_endpoint` is a secondary index of `issued`, written in the same transaction; its
//! key is length-prefixed (as the queue keys are) so that a prefix scan for `dev-1` cannot match
//! `dev-10`. Every mutation goes through the store's group-commit gate before returning, so a
//! recorded certificate, a revocation or a handed-out CRL number survives `kill -9`: a CRL
//! number must never be reused (RFC 5280 §5.2.3), and a revocation that is forgotten would let
//! a revoked device back in.

use sled::Transactional;
use sled::Tree;
use sled::transaction::{TransactionError, abort};
use steward_pki::ca::Serial;
use steward_pki::policy::validate_device_id;
use steward_pki::records::{IssuedRecord, PkiStore, PkiStoreError, Revocation, RevocationReason};

use super::{SledStore, StoreError};

const ISSUED: &str = "issued";
const ISSUED_BY_ENDPOINT: &str = "issued_by_endpoint";
const ALLOW_LIST: &str = "allow_list";
const PKI_META: &str = "pki_meta";
const CRL_NUMBER_KEY: &[u8] = b"crl_number";

impl SledStore {
    /// sled keeps opened trees in a map, so opening by name on each call is a lookup, and it
    /// keeps the PKI out of `SledStore`'s struct (and out of stores that never issue).
    fn pki_tree(&self, name: &str) -> Result<Tree, PkiStoreError> {
        self.db().open_tree(name).map_err(from_sled)
    }

    fn pki_commit(&self) -> Result<(), PkiStoreError> {
        self.commit().map_err(from_store)
    }

    /// Every certificate issued, in serial order (`steward ca issued`).
    pub fn all_issued(&self) -> Result<Vec<IssuedRecord>, PkiStoreError> {
        self.pki_tree(ISSUED)?
            .iter()
            .values()
            .map(|v| IssuedRecord::from_cbor(&v.map_err(from_sled)?))
            .collect()
    }

    /// Adds many device IDs at once, atomically and with one fsync (an allow-list import can
    /// hold a whole production run); returns how many were new. Every ID is validated before
    /// anything is written.
    pub fn allow_list_put_all<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<usize, PkiStoreError> {
        let tree = self.pki_tree(ALLOW_LIST)?;
        let mut batch = sled::Batch::default();
        let mut new = std::collections::BTreeSet::new();
        for id in ids {
            validate_device_id(id)
                .map_err(|reason| PkiStoreError::Invalid(format!("device ID {id:?}: {reason}")))?;
            if !tree.contains_key(id.as_bytes()).map_err(from_sled)? {
                new.insert(id);
            }
            batch.insert(id.as_bytes(), &[] as &[u8]);
        }
        tree.apply_batch(batch).map_err(from_sled)?;
        self.pki_commit()?;
        Ok(new.len())
    }
}

impl PkiStore for SledStore {
    fn put_issued(&self, record: &IssuedRecord) -> Result<(), PkiStoreError> {
        let issued = self.pki_tree(ISSUED)?;
        let index = self.pki_tree(ISSUED_BY_ENDPOINT)?;
        let key = record.serial.as_bytes();
        let index_key = endpoint_key(&record.endpoint, Some(&record.serial))?;
        let value = record.to_cbor();
        let result = (&issued, &index).transaction(|(issued, index)| {
            if issued.get(key)?.is_some() {
                return abort(PkiStoreError::SerialTaken(record.serial.clone()));
            }
            issued.insert(key, value.as_slice())?;
            index.insert(index_key.as_slice(), &[] as &[u8])?;
            Ok(())
        });
        from_tx(result)?;
        self.pki_commit()
    }

    fn issued(&self, serial: &Serial) -> Result<Option<IssuedRecord>, PkiStoreError> {
        match self
            .pki_tree(ISSUED)?
            .get(serial.as_bytes())
            .map_err(from_sled)?
        {
            Some(v) => Ok(Some(IssuedRecord::from_cbor(&v)?)),
            None => Ok(None),
        }
    }

    fn issued_for_endpoint(&self, endpoint: &str) -> Result<Vec<IssuedRecord>, PkiStoreError> {
        let issued = self.pki_tree(ISSUED)?;
        let index = self.pki_tree(ISSUED_BY_ENDPOINT)?;
        let prefix = endpoint_key(endpoint, None)?;
        let mut records = Vec::new();
        for item in index.scan_prefix(&prefix).keys() {
            let key = item.map_err(from_sled)?;
            let serial = &key[prefix.len()..];
            let Some(v) = issued.get(serial).map_err(from_sled)? else {
                return Err(PkiStoreError::Corrupt(format!(
                    "endpoint index of {endpoint:?} names a serial with no record"
                )));
            };
            records.push(IssuedRecord::from_cbor(&v)?);
        }
        // The index is in serial order; a stable sort keeps it on equal issue times.
        records.sort_by_key(|r| r.issued_at);
        Ok(records)
    }

    fn revoke(
        &self,
        serial: &Serial,
        reason: RevocationReason,
        at: u64,
    ) -> Result<bool, PkiStoreError> {
        let issued = self.pki_tree(ISSUED)?;
        let key = serial.as_bytes();
        let result = issued.transaction(|issued| {
            let Some(v) = issued.get(key)? else {
                return abort(PkiStoreError::UnknownSerial(serial.clone()));
            };
            let mut record = IssuedRecord::from_cbor(&v).or_else(abort)?;
            if record.revoked.is_some() {
                // The first revocation stands: its time is what relying parties have seen.
                return Ok(false);
            }
            record.revoked = Some(Revocation { at, reason });
            issued.insert(key, record.to_cbor())?;
            Ok(true)
        });
        let changed = from_tx(result)?;
        if changed {
            self.pki_commit()?;
        }
        Ok(changed)
    }

    fn revoked(&self) -> Result<Vec<IssuedRecord>, PkiStoreError> {
        // A full scan: revocation lists are rebuilt rarely (see PkiService's CRL cache), and a
        // revoked-only index would be one more thing to keep consistent.
        let mut out = Vec::new();
        for item in self.pki_tree(ISSUED)?.iter().values() {
            let record = IssuedRecord::from_cbor(&item.map_err(from_sled)?)?;
            if record.is_revoked() {
                out.push(record);
            }
        }
        Ok(out)
    }

    fn allow_list_contains(&self, device_id: &str) -> Result<bool, PkiStoreError> {
        self.pki_tree(ALLOW_LIST)?
            .contains_key(device_id.as_bytes())
            .map_err(from_sled)
    }

    fn allow_list_put(&self, device_id: &str) -> Result<bool, PkiStoreError> {
        validate_device_id(device_id)
            .map_err(|reason| PkiStoreError::Invalid(format!("device ID: {reason}")))?;
        let old = self
            .pki_tree(ALLOW_LIST)?
            .insert(device_id.as_bytes(), &[] as &[u8])
            .map_err(from_sled)?;
        self.pki_commit()?;
        Ok(old.is_none())
    }

    fn allow_list_remove(&self, device_id: &str) -> Result<bool, PkiStoreError> {
        let old = self
            .pki_tree(ALLOW_LIST)?
            .remove(device_id.as_bytes())
            .map_err(from_sled)?;
        if old.is_some() {
            self.pki_commit()?;
        }
        Ok(old.is_some())
    }

    fn allow_list_all(&self) -> Result<Vec<String>, PkiStoreError> {
        self.pki_tree(ALLOW_LIST)?
            .iter()
            .keys()
            .map(|k| {
                let k = k.map_err(from_sled)?;
                String::from_utf8(k.to_vec())
                    .map_err(|_| PkiStoreError::Corrupt("allow-list entry is not UTF-8".into()))
            })
            .collect()
    }

    fn next_crl_number(&self) -> Result<u64, PkiStoreError> {
        let meta = self.pki_tree(PKI_META)?;
        // update_and_fetch is an atomic read-modify-write, so two callers never get the same
        // number; an unreadable value is corruption, not a reason to restart at 1.
        let mut bad_value = false;
        let new = meta
            .update_and_fetch(CRL_NUMBER_KEY, |old| {
                let last = match old {
                    None => 0,
                    Some(bytes) => match <[u8; 8]>::try_from(bytes) {
                        Ok(b) => u64::from_be_bytes(b),
                        Err(_) => {
                            bad_value = true;
                            return old.map(<[u8]>::to_vec);
                        }
                    },
                };
                Some(last.saturating_add(1).to_be_bytes().to_vec())
            })
            .map_err(from_sled)?;
        if bad_value {
            return Err(PkiStoreError::Corrupt("CRL number is not 8 bytes".into()));
        }
        let number = new
            .as_deref()
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| PkiStoreError::Corrupt("CRL number vanished".into()))?;
        self.pki_commit()?;
        Ok(number)
    }
}

/// `len(endpoint) u16 BE ‖ endpoint ‖ serial`; without a serial, the prefix of an endpoint.
fn endpoint_key(endpoint: &str, serial: Option<&Serial>) -> Result<Vec<u8>, PkiStoreError> {
    let len = u16::try_from(endpoint.len()).map_err(|_| {
        PkiStoreError::Invalid(format!(
            "endpoint name of {} bytes is longer than 65535",
            endpoint.len()
        ))
    })?;
    let serial = serial.map_or(&[][..], Serial::as_bytes);
    let mut key = Vec::with_capacity(2 + endpoint.len() + serial.len());
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(endpoint.as_bytes());
    key.extend_from_slice(serial);
    Ok(key)
}

fn from_sled(e: sled::Error) -> PkiStoreError {
    match e {
        sled::Error::Corruption { .. } => PkiStoreError::Corrupt(e.to_string()),
        other => PkiStoreError::Backend(other.to_string()),
    }
}

fn from_store(e: StoreError) -> PkiStoreError {
    match e {
        StoreError::Corrupt(what) => PkiStoreError::Corrupt(what),
        other => PkiStoreError::Backend(other.to_string()),
    }
}

fn from_tx<T>(result: Result<T, TransactionError<PkiStoreError>>) -> Result<T, PkiStoreError> {
    match result {
        Ok(v) => Ok(v),
        Err(TransactionError::Abort(e)) => Err(e),
        Err(TransactionError::Storage(e)) => Err(from_sled(e)),
    }
}
