//! [`SledStore`]: the embedded [`Store`] on sled 0.34.
//!
//! # Layout
//!
//! One sled tree per record kind; keys are bytes, values are CBOR (minicbor derive, integer
//! keys, so a field added later as an `Option` still reads old records).
//!
//! | tree | key | value |
//! |---|---|---|
//! | default | `b"format"` | u32 big-endian, [`FORMAT_VERSION`] |
//! | `registrations` | endpoint name (UTF-8) | CBOR [`Registration`] |
//! | `registration_ids` | registration ID (UTF-8) | endpoint name |
//! | `registration_expiry` | expiry unix ms (u64 BE) ‖ endpoint name | empty |
//! | `observations` | endpoint name | CBOR array of [`ObservationRecord`], sorted by token |
//! | `security` | endpoint name | CBOR [`SecurityInfo`] |
//! | `psk_identities` | PSK identity bytes | endpoint name |
//! | `queue` | endpoint length (u16 BE) ‖ endpoint ‖ request ID (u64 BE) | CBOR [`QueuedRequest`] |
//! | `bootstrap` | endpoint name | CBOR [`super::BootstrapRecord`] (see `store/bootstrap.rs`) |
//!
//! `registration_ids` and `registration_expiry` are secondary indexes of `registrations`, and
//! `psk_identities` of `security`; every write updates a record and its indexes in one sled
//! transaction. The observations of an endpoint are one value (not one key per token) because
//! sled transactions cannot scan: keeping them in one key lets the re-registration transaction
//! drop them atomically. An endpoint has a handful of observations, so rewriting the list is
//! cheap. The queue key is length-prefixed so that a prefix scan of one endpoint cannot match
//! another endpoint whose name starts with it, and big-endian IDs sort in FIFO order.
//!
//! # Durability and group commit
//!
//! sled only promises that writes before a completed `flush()` survive a crash. With
//! [`Durability::Sync`] (the default) every mutating method applies its transaction, then waits
//! on the group-commit gate: the first waiting caller becomes the leader and runs one
//! `flush()` (write + fsync) covering every write applied before it started; callers that
//! arrive during that flush wait for the next one, which the next leader runs for all of them.
//! So N concurrent writers cost about one fsync per fsync-duration rather than N fsyncs, and a
//! single writer pays exactly one fsync per write. `put_registrations` goes further and covers a
//! whole batch with one flush. [`Durability::Relaxed`] skips the gate and relies on sled's
//! background flush (every 500 ms): faster, but a crash loses the last writes.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use minicbor::{Decode, Encode};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree, abort};
use sled::{IVec, Transactional, Tree};

use super::{
    BootstrapRecord, Conflict, QueuedRequest, RecordKind, SecurityInfo, Store, StoreError,
};
use crate::bootstrap::BootstrapConfig;
use crate::observation::ObservationRecord;
use crate::registry::Registration;

/// The on-disk format this build reads and writes; bump on an incompatible layout change.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_KEY: &[u8] = b"format";

/// sled's background flush interval; only what [`Durability::Relaxed`] relies on.
const BACKGROUND_FLUSH_MS: u64 = 500;

/// How long [`SledStore::open_with`] waits for sled's directory lock.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// When a write counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every mutating call returns after its effect is fsynced (group commit).
    #[default]
    Sync,
    /// Mutating calls return once applied in memory; sled flushes in the background every
    /// 500 ms, and [`Store::flush`] forces it. A crash can lose the last writes. For tests,
    /// benchmarks and caches, not for acknowledged registrations.
    Relaxed,
}

/// What [`SledStore::verify`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VerifyReport {
    pub registrations: usize,
    pub observations: usize,
    pub security_infos: usize,
    pub queued_requests: usize,
}

/// The sled-backed store. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct SledStore {
    db: sled::Db,
    registrations: Tree,
    registration_ids: Tree,
    registration_expiry: Tree,
    observations: Tree,
    security: Tree,
    psk_identities: Tree,
    queue: Tree,
    bootstrap: Tree,
    durability: Durability,
    gate: GroupCommit,
}

impl SledStore {
    /// Opens (or creates) the store in directory `path` with [`Durability::Sync`].
    pub fn open(path: impl AsRef<Path>) -> Result<SledStore, StoreError> {
        SledStore::open_with(path, Durability::Sync)
    }

    /// Opens (or creates) the store. A damaged database is reported as
    /// [`StoreError::Corrupt`] (or `Io`), never as a panic: sled has code paths that panic on
    /// damaged files, so the open runs under `catch_unwind`.
    pub fn open_with(
        path: impl AsRef<Path>,
        durability: Durability,
    ) -> Result<SledStore, StoreError> {
        let config = sled::Config::new()
            .path(path.as_ref())
            .flush_every_ms(Some(BACKGROUND_FLUSH_MS));
        // sled releases its directory lock only when its last background thread lets go of
        // the page cache, which can be a moment after the previous `SledStore` in this process
        // was dropped (an in-process restart). Retry the lock briefly; a lock still held after
        // that (another process) is reported as the I/O error it is.
        // Whether sled files were already there: an existing database must come back with our
        // format marker (see check_format).
        let existed = path.as_ref().join("conf").exists()
            || std::fs::metadata(path.as_ref().join("db")).is_ok_and(|m| m.len() > 0);
        let deadline = Instant::now() + LOCK_WAIT;
        let db = loop {
            let opened = catch_unwind(AssertUnwindSafe(|| config.open())).map_err(|panic| {
                StoreError::Corrupt(format!(
                    "sled panicked while opening: {}",
                    panic_message(&panic)
                ))
            })?;
            match opened {
                Ok(db) => break db,
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock")
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(from_sled(e)),
            }
        };
        let tree = |name: &str| db.open_tree(name).map_err(from_sled);
        let store = SledStore {
            registrations: tree("registrations")?,
            registration_ids: tree("registration_ids")?,
            registration_expiry: tree("registration_expiry")?,
            observations: tree("observations")?,
            security: tree("security")?,
            psk_identities: tree("psk_identities")?,
            queue: tree("queue")?,
            bootstrap: tree("bootstrap")?,
            durability,
            gate: GroupCommit::default(),
            db,
        };
        store.check_format(existed)?;
        Ok(store)
    }

    /// Reads the format marker, writing it into a fresh database.
    ///
    /// sled's recovery cannot tell a damaged log from a torn write: it recovers up to the first
    /// bad record and silently drops the rest. A database whose files existed but which comes
    /// back without the marker (written and flushed before the first open returned) has lost
    /// everything; that is reported as corruption instead of starting empty. (Damage after the
    /// marker loses records silently; see the crate's store notes.)
    fn check_format(&self, existed: bool) -> Result<(), StoreError> {
        match self.db.get(FORMAT_KEY).map_err(from_sled)? {
            Some(v) => {
                let bytes: [u8; 4] = v.as_ref().try_into().map_err(|_| {
                    StoreError::Corrupt(format!("format marker has {} bytes, not 4", v.len()))
                })?;
                let found = u32::from_be_bytes(bytes);
                if found != FORMAT_VERSION {
                    return Err(StoreError::UnsupportedFormat {
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
                Ok(())
            }
            None => {
                // A database with records but no marker was not written by us (or lost its
                // marker): refuse rather than guess.
                let has_records = [&self.registrations, &self.security, &self.queue]
                    .iter()
                    .any(|t| !t.is_empty());
                if has_records {
                    return Err(StoreError::Corrupt(
                        "records present but format marker missing".into(),
                    ));
                }
                if existed {
                    return Err(StoreError::Corrupt(
                        "existing database recovered without its format marker: its files are \
                         damaged (or the very first open was interrupted)"
                            .into(),
                    ));
                }
                self.db
                    .insert(FORMAT_KEY, &FORMAT_VERSION.to_be_bytes())
                    .map_err(from_sled)?;
                self.db.flush().map_err(from_sled)?;
                Ok(())
            }
        }
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// How many flushes (fsyncs) the group-commit gate has run: with the write count, tells how
    /// well writes were batched.
    pub fn flush_count(&self) -> u64 {
        self.gate.flushes.load(Ordering::Relaxed)
    }

    /// The sled database, for the PKI trees (`store/pki.rs`).
    pub(super) fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Makes writes applied so far durable, according to the configured durability.
    pub(super) fn commit(&self) -> Result<(), StoreError> {
        match self.durability {
            Durability::Sync => self.gate.commit(&self.db),
            Durability::Relaxed => Ok(()),
        }
    }

    /// Reads every record and checks that the indexes agree with the records. Costs a full
    /// scan; meant for tests, the crash test and an operator's `check` command, not for every
    /// start.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport::default();
        let inconsistent =
            |what: String| Err(StoreError::Corrupt(format!("index inconsistent: {what}")));
        for item in self.registrations.iter() {
            let (k, v) = item.map_err(from_sled)?;
            let reg: Registration = decode(&v, "registrations", &k)?;
            if reg.endpoint.as_bytes() != k.as_ref() {
                return inconsistent(format!(
                    "registration under key {:?} is for {:?}",
                    lossy(&k),
                    reg.endpoint
                ));
            }
            match self
                .registration_ids
                .get(reg.id.as_bytes())
                .map_err(from_sled)?
            {
                Some(ep) if ep.as_ref() == k.as_ref() => {}
                other => {
                    return inconsistent(format!(
                        "ID {:?} of {:?} maps to {:?}",
                        reg.id,
                        reg.endpoint,
                        other.map(|e| lossy(&e))
                    ));
                }
            }
            if let Some(exp) = reg.expires_at_ms()
                && !self
                    .registration_expiry
                    .contains_key(expiry_key(exp, &reg.endpoint))
                    .map_err(from_sled)?
            {
                return inconsistent(format!("no expiry entry for {:?}", reg.endpoint));
            }
            report.registrations += 1;
        }
        if self.registration_ids.len() != report.registrations {
            return inconsistent(format!(
                "{} registration IDs for {} registrations",
                self.registration_ids.len(),
                report.registrations
            ));
        }
        for item in self.registration_expiry.iter() {
            let (k, _) = item.map_err(from_sled)?;
            let (exp, ep) = split_expiry_key(&k)?;
            let reg = self.registration(ep)?;
            if reg.as_ref().and_then(Registration::expires_at_ms) != Some(exp) {
                return inconsistent(format!("stale expiry entry {exp} for {ep:?}"));
            }
        }
        for item in self.observations.iter() {
            let (k, v) = item.map_err(from_sled)?;
            let list: Vec<ObservationRecord> = decode(&v, "observations", &k)?;
            let ep = std::str::from_utf8(&k)
                .map_err(|_| StoreError::Corrupt("observation key not UTF-8".into()))?;
            let reg = self.registration(ep)?;
            for obs in &list {
                if obs.endpoint != ep || reg.as_ref().map(|r| &r.id) != Some(&obs.registration_id) {
                    return inconsistent(format!(
                        "observation {:?} of {ep:?} has no current registration",
                        obs.token
                    ));
                }
            }
            report.observations += list.len();
        }
        let mut psk = 0;
        for item in self.security.iter() {
            let (k, v) = item.map_err(from_sled)?;
            let info: SecurityInfo = decode(&v, "security", &k)?;
            if let Some(identity) = info.psk_identity() {
                psk += 1;
                match self.psk_identities.get(identity).map_err(from_sled)? {
                    Some(ep) if ep.as_ref() == k.as_ref() => {}
                    _ => {
                        return inconsistent(format!(
                            "PSK identity of {:?} not indexed",
                            info.endpoint
                        ));
                    }
                }
            }
            report.security_infos += 1;
        }
        if self.psk_identities.len() != psk {
            return inconsistent(format!(
                "{} PSK identities for {psk} PSK credentials",
                self.psk_identities.len()
            ));
        }
        for item in self.queue.iter() {
            let (k, v) = item.map_err(from_sled)?;
            let req: QueuedRequest = decode(&v, "queue", &k)?;
            if queue_key(&req.endpoint, req.id)?.as_slice() != k.as_ref() {
                return inconsistent(format!(
                    "queued request {} stored under a foreign key",
                    req.id
                ));
            }
            report.queued_requests += 1;
        }
        Ok(report)
    }

    /// The put_registration transaction, without the durability wait.
    fn apply_registration(&self, reg: &Registration) -> Result<Option<Registration>, StoreError> {
        let value = encode(reg);
        let new_expiry = reg
            .expires_at_ms()
            .map(|exp| expiry_key(exp, &reg.endpoint));
        let result = (
            &self.registrations,
            &self.registration_ids,
            &self.registration_expiry,
            &self.observations,
        )
            .transaction(|(regs, ids, expiry, obs)| {
                let ep = reg.endpoint.as_bytes();
                if let Some(owner) = ids.get(reg.id.as_bytes())?
                    && owner.as_ref() != ep
                {
                    return abort(StoreError::Conflict(Conflict::RegistrationIdTaken {
                        id: reg.id.clone(),
                        owner: lossy(&owner),
                    }));
                }
                let old = match regs.get(ep)? {
                    Some(v) => {
                        Some(decode::<Registration>(&v, "registrations", ep).or_else(abort)?)
                    }
                    None => None,
                };
                if let Some(old) = &old {
                    if old.id != reg.id {
                        // Re-registration: the old ID stops resolving and the device has
                        // forgotten its observations.
                        ids.remove(old.id.as_bytes())?;
                        obs.remove(ep)?;
                    }
                    if let Some(exp) = old.expires_at_ms() {
                        expiry.remove(expiry_key(exp, &old.endpoint))?;
                    }
                }
                regs.insert(ep, value.as_slice())?;
                ids.insert(reg.id.as_bytes(), ep)?;
                if let Some(key) = &new_expiry {
                    expiry.insert(key.as_slice(), &[] as &[u8])?;
                }
                Ok(old)
            });
        from_tx(result)
    }

    /// Removes queue entries (by key) that `select` picks among an endpoint's queue, or among
    /// all queues when `prefix` is empty. Uses compare-and-swap so that a concurrent pop and
    /// expiry never both return the same request.
    fn take_queued(
        &self,
        prefix: &[u8],
        mut select: impl FnMut(&QueuedRequest) -> bool,
    ) -> Result<Vec<QueuedRequest>, StoreError> {
        let mut taken = Vec::new();
        for item in self.queue.scan_prefix(prefix) {
            let (k, v) = item.map_err(from_sled)?;
            let req: QueuedRequest = decode(&v, "queue", &k)?;
            if !select(&req) {
                continue;
            }
            let swapped = self
                .queue
                .compare_and_swap(&k, Some(&v), None as Option<&[u8]>)
                .map_err(from_sled)?;
            // Lost the race: another caller took it; it is not ours to return.
            if swapped.is_ok() {
                taken.push(req);
            }
        }
        Ok(taken)
    }
}

impl Store for SledStore {
    fn put_registration(&self, reg: &Registration) -> Result<Option<Registration>, StoreError> {
        let old = self.apply_registration(reg)?;
        self.commit()?;
        Ok(old)
    }

    fn put_registrations(
        &self,
        regs: &[Registration],
    ) -> Result<Vec<Result<Option<Registration>, StoreError>>, StoreError> {
        let results: Vec<_> = regs.iter().map(|r| self.apply_registration(r)).collect();
        // One durability point for the whole batch, even for items that failed: the others
        // must not be acknowledged before it.
        self.commit()?;
        Ok(results)
    }

    fn registration(&self, endpoint: &str) -> Result<Option<Registration>, StoreError> {
        get_decoded(&self.registrations, "registrations", endpoint.as_bytes())
    }

    fn registration_by_id(&self, id: &str) -> Result<Option<Registration>, StoreError> {
        let Some(ep) = self
            .registration_ids
            .get(id.as_bytes())
            .map_err(from_sled)?
        else {
            return Ok(None);
        };
        // Index and record are written in one transaction, but a reader between two separate
        // reads can see the endpoint re-register; only return a registration that still has
        // this ID.
        Ok(
            get_decoded::<Registration>(&self.registrations, "registrations", &ep)?
                .filter(|r| r.id == id),
        )
    }

    fn remove_registration(&self, endpoint: &str) -> Result<Option<Registration>, StoreError> {
        let result = (
            &self.registrations,
            &self.registration_ids,
            &self.registration_expiry,
            &self.observations,
        )
            .transaction(|(regs, ids, expiry, obs)| {
                let ep = endpoint.as_bytes();
                let Some(v) = regs.remove(ep)? else {
                    return Ok(None);
                };
                let old: Registration = decode(&v, "registrations", ep).or_else(abort)?;
                ids.remove(old.id.as_bytes())?;
                if let Some(exp) = old.expires_at_ms() {
                    expiry.remove(expiry_key(exp, endpoint))?;
                }
                obs.remove(ep)?;
                Ok(Some(old))
            });
        let old = from_tx(result)?;
        if old.is_some() {
            self.commit()?;
        }
        Ok(old)
    }

    fn registrations(&self) -> Result<Vec<Registration>, StoreError> {
        all_decoded(&self.registrations, "registrations")
    }

    fn expired_registrations(&self, now_ms: u64) -> Result<Vec<Registration>, StoreError> {
        let mut out = Vec::new();
        // Keys sort by expiry time first: everything below `now_ms + 1` has expired. At
        // `u64::MAX` there is no such bound, so scan everything.
        let end = now_ms.checked_add(1).map(u64::to_be_bytes);
        let scan = match &end {
            Some(end) => self.registration_expiry.range(..end.as_slice()),
            None => self.registration_expiry.range::<&[u8], _>(..),
        };
        for item in scan {
            let (k, _) = item.map_err(from_sled)?;
            let (exp, ep) = split_expiry_key(&k)?;
            // A concurrent update may have moved the expiry since the scan read the index:
            // trust the record.
            if let Some(reg) = self.registration(ep)?
                && reg.expires_at_ms() == Some(exp)
            {
                out.push(reg);
            }
        }
        Ok(out)
    }

    fn put_observation(
        &self,
        record: &ObservationRecord,
    ) -> Result<Option<ObservationRecord>, StoreError> {
        let result = (&self.registrations, &self.observations).transaction(|(regs, obs)| {
            let ep = record.endpoint.as_bytes();
            let Some(v) = regs.get(ep)? else {
                return abort(StoreError::NotFound {
                    kind: RecordKind::Registration,
                    key: record.endpoint.clone(),
                });
            };
            let reg: Registration = decode(&v, "registrations", ep).or_else(abort)?;
            if reg.id != record.registration_id {
                return abort(StoreError::Conflict(Conflict::StaleRegistration {
                    endpoint: record.endpoint.clone(),
                    registration_id: record.registration_id.clone(),
                }));
            }
            let mut list = observation_list(obs, ep)?;
            let old = match list.binary_search_by(|o| o.token.cmp(&record.token)) {
                Ok(i) => Some(std::mem::replace(&mut list[i], record.clone())),
                Err(i) => {
                    list.insert(i, record.clone());
                    None
                }
            };
            obs.insert(ep, encode(&list))?;
            Ok(old)
        });
        let old = from_tx(result)?;
        self.commit()?;
        Ok(old)
    }

    fn observation(
        &self,
        endpoint: &str,
        token: &[u8],
    ) -> Result<Option<ObservationRecord>, StoreError> {
        Ok(self
            .observations(endpoint)?
            .into_iter()
            .find(|o| o.token == token))
    }

    fn observations(&self, endpoint: &str) -> Result<Vec<ObservationRecord>, StoreError> {
        Ok(
            get_decoded(&self.observations, "observations", endpoint.as_bytes())?
                .unwrap_or_default(),
        )
    }

    fn remove_observation(
        &self,
        endpoint: &str,
        token: &[u8],
    ) -> Result<Option<ObservationRecord>, StoreError> {
        let result = self.observations.transaction(|obs| {
            let ep = endpoint.as_bytes();
            let mut list = observation_list(obs, ep)?;
            let Ok(i) = list.binary_search_by(|o| o.token.as_slice().cmp(token)) else {
                return Ok(None);
            };
            let old = list.remove(i);
            if list.is_empty() {
                obs.remove(ep)?;
            } else {
                obs.insert(ep, encode(&list))?;
            }
            Ok(Some(old))
        });
        let old = from_tx(result)?;
        if old.is_some() {
            self.commit()?;
        }
        Ok(old)
    }

    fn put_security(&self, info: &SecurityInfo) -> Result<Option<SecurityInfo>, StoreError> {
        let value = encode(info);
        let result = (&self.security, &self.psk_identities).transaction(|(sec, psk)| {
            let ep = info.endpoint.as_bytes();
            if let Some(identity) = info.psk_identity()
                && let Some(owner) = psk.get(identity)?
                && owner.as_ref() != ep
            {
                return abort(StoreError::Conflict(Conflict::PskIdentityTaken {
                    identity: lossy(identity),
                    owner: lossy(&owner),
                }));
            }
            let old = match sec.get(ep)? {
                Some(v) => Some(decode::<SecurityInfo>(&v, "security", ep).or_else(abort)?),
                None => None,
            };
            if let Some(identity) = old.as_ref().and_then(SecurityInfo::psk_identity) {
                psk.remove(identity)?;
            }
            sec.insert(ep, value.as_slice())?;
            if let Some(identity) = info.psk_identity() {
                psk.insert(identity, ep)?;
            }
            Ok(old)
        });
        let old = from_tx(result)?;
        self.commit()?;
        Ok(old)
    }

    fn security(&self, endpoint: &str) -> Result<Option<SecurityInfo>, StoreError> {
        get_decoded(&self.security, "security", endpoint.as_bytes())
    }

    fn security_by_psk_identity(
        &self,
        identity: &[u8],
    ) -> Result<Option<SecurityInfo>, StoreError> {
        let Some(ep) = self.psk_identities.get(identity).map_err(from_sled)? else {
            return Ok(None);
        };
        // As in registration_by_id: only what still carries this identity.
        Ok(
            get_decoded::<SecurityInfo>(&self.security, "security", &ep)?
                .filter(|info| info.psk_identity() == Some(identity)),
        )
    }

    fn remove_security(&self, endpoint: &str) -> Result<Option<SecurityInfo>, StoreError> {
        let result = (&self.security, &self.psk_identities).transaction(|(sec, psk)| {
            let ep = endpoint.as_bytes();
            let Some(v) = sec.remove(ep)? else {
                return Ok(None);
            };
            let old: SecurityInfo = decode(&v, "security", ep).or_else(abort)?;
            if let Some(identity) = old.psk_identity() {
                psk.remove(identity)?;
            }
            Ok(Some(old))
        });
        let old = from_tx(result)?;
        if old.is_some() {
            self.commit()?;
        }
        Ok(old)
    }

    fn security_infos(&self) -> Result<Vec<SecurityInfo>, StoreError> {
        all_decoded(&self.security, "security")
    }

    fn enqueue(
        &self,
        endpoint: &str,
        request: Vec<u8>,
        created_ms: u64,
        expires_ms: u64,
    ) -> Result<QueuedRequest, StoreError> {
        // sled's generator is monotonic across restarts (it persists a high-water mark and
        // skips ahead on recovery), which is what makes ID order FIFO order.
        let id = self.db.generate_id().map_err(from_sled)?;
        let req = QueuedRequest {
            id,
            endpoint: endpoint.to_owned(),
            request,
            created_ms,
            expires_ms,
        };
        self.queue
            .insert(queue_key(endpoint, id)?, encode(&req))
            .map_err(from_sled)?;
        self.commit()?;
        Ok(req)
    }

    fn queue_peek(&self, endpoint: &str) -> Result<Option<QueuedRequest>, StoreError> {
        match self.queue.scan_prefix(queue_prefix(endpoint)?).next() {
            Some(item) => {
                let (k, v) = item.map_err(from_sled)?;
                Ok(Some(decode(&v, "queue", &k)?))
            }
            None => Ok(None),
        }
    }

    fn queue_pop(&self, endpoint: &str) -> Result<Option<QueuedRequest>, StoreError> {
        let prefix = queue_prefix(endpoint)?;
        // A lost compare-and-swap means someone else took the head: look again.
        loop {
            let Some(item) = self.queue.scan_prefix(&prefix).next() else {
                return Ok(None);
            };
            let (k, v) = item.map_err(from_sled)?;
            let req: QueuedRequest = decode(&v, "queue", &k)?;
            if self
                .queue
                .compare_and_swap(&k, Some(&v), None as Option<&[u8]>)
                .map_err(from_sled)?
                .is_ok()
            {
                self.commit()?;
                return Ok(Some(req));
            }
        }
    }

    fn queue_remove(&self, endpoint: &str, id: u64) -> Result<Option<QueuedRequest>, StoreError> {
        let key = queue_key(endpoint, id)?;
        let Some(v) = self.queue.remove(&key).map_err(from_sled)? else {
            return Ok(None);
        };
        let req = decode(&v, "queue", &key)?;
        self.commit()?;
        Ok(Some(req))
    }

    fn queued(&self, endpoint: &str) -> Result<Vec<QueuedRequest>, StoreError> {
        self.queue
            .scan_prefix(queue_prefix(endpoint)?)
            .map(|item| {
                let (k, v) = item.map_err(from_sled)?;
                decode(&v, "queue", &k)
            })
            .collect()
    }

    fn all_queued(&self) -> Result<Vec<QueuedRequest>, StoreError> {
        self.queue
            .iter()
            .map(|item| {
                let (k, v) = item.map_err(from_sled)?;
                decode(&v, "queue", &k)
            })
            .collect()
    }

    fn queue_len(&self, endpoint: &str) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.queue.scan_prefix(queue_prefix(endpoint)?).keys() {
            item.map_err(from_sled)?;
            n += 1;
        }
        Ok(n)
    }

    fn expire_queue(&self, endpoint: &str, now_ms: u64) -> Result<Vec<QueuedRequest>, StoreError> {
        let taken = self.take_queued(&queue_prefix(endpoint)?, |r| r.expires_ms <= now_ms)?;
        if !taken.is_empty() {
            self.commit()?;
        }
        Ok(taken)
    }

    fn expire_all_queues(&self, now_ms: u64) -> Result<Vec<QueuedRequest>, StoreError> {
        let taken = self.take_queued(&[], |r| r.expires_ms <= now_ms)?;
        if !taken.is_empty() {
            self.commit()?;
        }
        Ok(taken)
    }

    fn clear_queue(&self, endpoint: &str) -> Result<Vec<QueuedRequest>, StoreError> {
        let taken = self.take_queued(&queue_prefix(endpoint)?, |_| true)?;
        if !taken.is_empty() {
            self.commit()?;
        }
        Ok(taken)
    }

    fn bootstrap_config(&self, endpoint: &str) -> Result<Option<BootstrapConfig>, StoreError> {
        match self.bootstrap.get(endpoint.as_bytes()).map_err(from_sled)? {
            Some(v) => Ok(Some(BootstrapRecord::decode(&v, endpoint.as_bytes())?)),
            None => Ok(None),
        }
    }

    fn put_bootstrap_config(
        &self,
        endpoint: &str,
        config: &BootstrapConfig,
    ) -> Result<(), StoreError> {
        let record = BootstrapRecord::new(config).to_bytes();
        self.bootstrap
            .insert(endpoint.as_bytes(), record)
            .map_err(from_sled)?;
        self.commit()
    }

    fn remove_bootstrap_config(&self, endpoint: &str) -> Result<bool, StoreError> {
        let removed = self
            .bootstrap
            .remove(endpoint.as_bytes())
            .map_err(from_sled)?
            .is_some();
        if removed {
            self.commit()?;
        }
        Ok(removed)
    }

    fn bootstrap_configs(&self) -> Result<Vec<(String, BootstrapConfig)>, StoreError> {
        self.bootstrap
            .iter()
            .map(|item| {
                let (k, v) = item.map_err(from_sled)?;
                let endpoint = String::from_utf8(k.to_vec())
                    .map_err(|_| StoreError::Corrupt("bootstrap key is not UTF-8".into()))?;
                Ok((endpoint, BootstrapRecord::decode(&v, &k)?))
            })
            .collect()
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(from_sled)?;
        Ok(())
    }
}

/// The group-commit gate (see the module docs). Tickets count applied writes; `flushed` is the
/// highest ticket known durable.
#[derive(Default)]
struct GroupCommit {
    state: Mutex<GateState>,
    flushed_cv: Condvar,
    flushes: AtomicU64,
}

#[derive(Default)]
struct GateState {
    /// Tickets handed out: one per write applied to sled, taken after the write.
    written: u64,
    /// Every ticket up to this one is durable.
    flushed: u64,
    /// A leader is flushing right now.
    flushing: bool,
}

impl GroupCommit {
    /// Returns once a flush that started after the caller's write has completed.
    fn commit(&self, db: &sled::Db) -> Result<(), StoreError> {
        let mut st = self.lock();
        st.written += 1;
        // The caller's write was applied before this ticket was taken, so any flush that
        // starts after this point covers it.
        let ticket = st.written;
        loop {
            if st.flushed >= ticket {
                return Ok(());
            }
            if st.flushing {
                st = self
                    .flushed_cv
                    .wait(st)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                continue;
            }
            st.flushing = true;
            let target = st.written;
            drop(st);
            let result = db.flush();
            self.flushes.fetch_add(1, Ordering::Relaxed);
            st = self.lock();
            st.flushing = false;
            if result.is_ok() {
                st.flushed = st.flushed.max(target);
            }
            self.flushed_cv.notify_all();
            // On failure only the leader reports it; the followers loop, one becomes the next
            // leader and tries its own flush, so nobody is told "durable" without a flush that
            // succeeded.
            result.map_err(from_sled)?;
        }
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        // The state is three counters updated together under the lock, never left half-done
        // by a panic, so a poisoned lock still holds consistent state.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub(super) fn from_sled(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(io) => StoreError::Io(io),
        sled::Error::Corruption { at, bt: _ } => StoreError::Corrupt(match at {
            Some(at) => format!("sled reports corruption at {at:?}"),
            None => "sled reports corruption".to_owned(),
        }),
        sled::Error::CollectionNotFound(name) => {
            StoreError::Corrupt(format!("sled tree {:?} missing", lossy(&name)))
        }
        sled::Error::Unsupported(why) => StoreError::Backend(why),
        sled::Error::ReportableBug(what) => StoreError::Backend(format!("sled bug: {what}")),
    }
}

pub(super) fn from_tx<T>(result: Result<T, TransactionError<StoreError>>) -> Result<T, StoreError> {
    result.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => from_sled(e),
    })
}

fn encode<T: Encode<()>>(value: &T) -> Vec<u8> {
    // Encoding into a Vec cannot fail (the only error source is the writer, and Vec's is
    // infallible).
    minicbor::to_vec(value).unwrap_or_default()
}

fn decode<T: for<'b> Decode<'b, ()>>(
    bytes: &[u8],
    tree: &str,
    key: &[u8],
) -> Result<T, StoreError> {
    minicbor::decode(bytes).map_err(|e| {
        StoreError::Corrupt(format!(
            "undecodable record in {tree} at {:?}: {e}",
            lossy(key)
        ))
    })
}

fn get_decoded<T: for<'b> Decode<'b, ()>>(
    tree: &Tree,
    name: &str,
    key: &[u8],
) -> Result<Option<T>, StoreError> {
    match tree.get(key).map_err(from_sled)? {
        Some(v) => Ok(Some(decode(&v, name, key)?)),
        None => Ok(None),
    }
}

fn all_decoded<T: for<'b> Decode<'b, ()>>(tree: &Tree, name: &str) -> Result<Vec<T>, StoreError> {
    tree.iter()
        .map(|item| {
            let (k, v) = item.map_err(from_sled)?;
            decode(&v, name, &k)
        })
        .collect()
}

fn observation_list(
    obs: &TransactionalTree,
    ep: &[u8],
) -> Result<Vec<ObservationRecord>, ConflictableTransactionError<StoreError>> {
    match obs.get(ep)? {
        Some(v) => decode(&v, "observations", ep).map_err(ConflictableTransactionError::Abort),
        None => Ok(Vec::new()),
    }
}

fn expiry_key(expires_ms: u64, endpoint: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + endpoint.len());
    k.extend_from_slice(&expires_ms.to_be_bytes());
    k.extend_from_slice(endpoint.as_bytes());
    k
}

fn split_expiry_key(k: &IVec) -> Result<(u64, &str), StoreError> {
    let bad = || StoreError::Corrupt(format!("malformed expiry index key {:?}", lossy(k)));
    let (time, ep) = k.split_at_checked(8).ok_or_else(bad)?;
    let time = u64::from_be_bytes(time.try_into().map_err(|_| bad())?);
    Ok((time, std::str::from_utf8(ep).map_err(|_| bad())?))
}

fn queue_prefix(endpoint: &str) -> Result<Vec<u8>, StoreError> {
    let len = u16::try_from(endpoint.len())
        .map_err(|_| StoreError::Invalid(format!("endpoint name of {} bytes", endpoint.len())))?;
    let mut k = Vec::with_capacity(2 + endpoint.len() + 8);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(endpoint.as_bytes());
    Ok(k)
}

fn queue_key(endpoint: &str, id: u64) -> Result<Vec<u8>, StoreError> {
    let mut k = queue_prefix(endpoint)?;
    k.extend_from_slice(&id.to_be_bytes());
    Ok(k)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keys_sort_fifo_and_do_not_leak_across_endpoints() {
        let a1 = queue_key("a", 1).unwrap_or_default();
        let a2 = queue_key("a", 256).unwrap_or_default();
        let ab = queue_key("ab", 0).unwrap_or_default();
        let prefix = queue_prefix("a").unwrap_or_default();
        assert!(a1 < a2, "big-endian IDs sort numerically");
        assert!(a1.starts_with(&prefix) && a2.starts_with(&prefix));
        assert!(
            !ab.starts_with(&prefix),
            "length prefix separates \"a\" from \"ab\""
        );
        assert!(matches!(
            queue_prefix(&"x".repeat(65_536)),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn expiry_keys_round_trip_and_sort_by_time() {
        let k = IVec::from(expiry_key(10_000, "ep"));
        assert_eq!(split_expiry_key(&k).ok(), Some((10_000, "ep")));
        assert!(expiry_key(9, "zzz") < expiry_key(10, "a"));
        assert!(split_expiry_key(&IVec::from(&b"short"[..])).is_err());
    }

    #[test]
    fn sled_errors_map_to_fault_domains() {
        use super::super::FaultDomain;
        let corrupt = from_sled(sled::Error::Corruption { at: None, bt: () });
        assert_eq!(corrupt.domain(), FaultDomain::Storage);
        let io = from_sled(sled::Error::Io(std::io::Error::other("disk")));
        assert!(matches!(io, StoreError::Io(_)));
        let bug = from_sled(sled::Error::ReportableBug("x".into()));
        assert_eq!(bug.domain(), FaultDomain::Storage);
    }
}
