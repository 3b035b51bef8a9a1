//! An in-memory [`PkiStore`] for tests and tools. Nothing survives the process.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use super::{IssuedRecord, PkiStore, PkiStoreError, Revocation, RevocationReason};
use crate::ca::Serial;

/// A [`PkiStore`] in a mutex.
#[derive(Debug, Default)]
pub struct MemoryPkiStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    issued: BTreeMap<Serial, IssuedRecord>,
    allow_list: BTreeSet<String>,
    last_crl_number: u64,
}

impl MemoryPkiStore {
    pub fn new() -> MemoryPkiStore {
        MemoryPkiStore::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, PkiStoreError> {
        // A panic while holding the lock may have left a half-applied change: report it as a
        // backend failure rather than carrying on with possibly inconsistent state.
        self.inner
            .lock()
            .map_err(|_| PkiStoreError::Backend("memory store lock poisoned".into()))
    }
}

impl PkiStore for MemoryPkiStore {
    fn put_issued(&self, record: &IssuedRecord) -> Result<(), PkiStoreError> {
        let mut inner = self.lock()?;
        if inner.issued.contains_key(&record.serial) {
            return Err(PkiStoreError::SerialTaken(record.serial.clone()));
        }
        inner.issued.insert(record.serial.clone(), record.clone());
        Ok(())
    }

    fn issued(&self, serial: &Serial) -> Result<Option<IssuedRecord>, PkiStoreError> {
        Ok(self.lock()?.issued.get(serial).cloned())
    }

    fn issued_for_endpoint(&self, endpoint: &str) -> Result<Vec<IssuedRecord>, PkiStoreError> {
        let mut records: Vec<IssuedRecord> = self
            .lock()?
            .issued
            .values()
            .filter(|r| r.endpoint == endpoint)
            .cloned()
            .collect();
        // The map is ordered by serial already, so a stable sort keeps serial order on ties.
        records.sort_by_key(|r| r.issued_at);
        Ok(records)
    }

    fn revoke(
        &self,
        serial: &Serial,
        reason: RevocationReason,
        at: u64,
    ) -> Result<bool, PkiStoreError> {
        let mut inner = self.lock()?;
        let record = inner
            .issued
            .get_mut(serial)
            .ok_or_else(|| PkiStoreError::UnknownSerial(serial.clone()))?;
        if record.revoked.is_some() {
            return Ok(false);
        }
        record.revoked = Some(Revocation { at, reason });
        Ok(true)
    }

    fn revoked(&self) -> Result<Vec<IssuedRecord>, PkiStoreError> {
        Ok(self
            .lock()?
            .issued
            .values()
            .filter(|r| r.is_revoked())
            .cloned()
            .collect())
    }

    fn allow_list_contains(&self, device_id: &str) -> Result<bool, PkiStoreError> {
        Ok(self.lock()?.allow_list.contains(device_id))
    }

    fn allow_list_put(&self, device_id: &str) -> Result<bool, PkiStoreError> {
        crate::policy::validate_device_id(device_id)
            .map_err(|reason| PkiStoreError::Invalid(format!("device ID: {reason}")))?;
        Ok(self.lock()?.allow_list.insert(device_id.to_owned()))
    }

    fn allow_list_remove(&self, device_id: &str) -> Result<bool, PkiStoreError> {
        Ok(self.lock()?.allow_list.remove(device_id))
    }

    fn allow_list_all(&self) -> Result<Vec<String>, PkiStoreError> {
        Ok(self.lock()?.allow_list.iter().cloned().collect())
    }

    fn next_crl_number(&self) -> Result<u64, PkiStoreError> {
        let mut inner = self.lock()?;
        inner.last_crl_number += 1;
        Ok(inner.last_crl_number)
    }
}
