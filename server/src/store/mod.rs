//! The durable store: every state that must survive a restart (DESIGN.md, "Data flow").
//!
//! [`Store`] is the seam: the server talks to `Arc<dyn Store>`, [`SledStore`] is the embedded
//! default, and another backend (Redis, Postgres) can implement the same trait later. The trait
//! covers what the LwM2M server needs (issue 4, item 2):
//!
//! - registrations by endpoint name, with lookup by registration ID and by expiry time;
//! - observations per endpoint, dropped when the endpoint re-registers or deregisters;
//! - security credentials per endpoint ([`SecurityInfo`]: PSK, X.509 expectations, RPK), with
//!   lookup by PSK identity for the DTLS handshake;
//! - queued downlink requests per endpoint for queue mode, FIFO, each with an expiry.
//!
//! # Durability contract
//!
//! Every mutating method returns only after its effect is durable (on disk, fsynced), unless the
//! store was explicitly opened with [`Durability::Relaxed`]. That is what lets the server answer
//! 2.01 Created to a Register after `put_registration` returns and still hold the registration
//! after `kill -9`. Concurrent callers share fsyncs (group commit, see [`SledStore`]), and
//! [`Store::put_registrations`] makes a whole batch durable with one fsync.
//!
//! The methods block (disk I/O). Async callers should use `tokio::task::spawn_blocking` or a
//! dedicated thread; concurrent blocking callers are exactly what group commit batches.
//!
//! # Errors
//!
//! [`StoreError`] is split by fault domain ([`FaultDomain`]): the storage itself failed (I/O,
//! corruption, unsupported format) — the server should answer 5.00 and alert; a record the
//! operation needs does not exist; or the operation conflicts with what is stored (a registration
//! ID or PSK identity owned by another endpoint, an observation for a stale registration). Lookups
//! of something absent are not errors: they return `Ok(None)` / an empty list.

mod bootstrap;
mod offers;
mod pki;
mod plugins;
mod sled_store;

pub use bootstrap::{BOOTSTRAP_RECORD_FORMAT, BootstrapRecord};
pub use offers::{OFFER_RECORD_FORMAT, OfferRecord, ValueRecord};
pub use plugins::{PluginKvWrite, PluginTimer};
pub use sled_store::{Durability, SledStore, VerifyReport};

use crate::hex::encode as hex;
use std::fmt;

use minicbor::{Decode, Encode};

use crate::bootstrap::BootstrapConfig;
use crate::observation::ObservationRecord;
use crate::registry::Registration;

/// The storage seam. Object safe: the server holds an `Arc<dyn Store>`.
///
/// Time is passed in (unix milliseconds) rather than read from a clock, so that tests and the
/// simulated-time harness decide what "now" is.
pub trait Store: Send + Sync {
    // --- registrations -------------------------------------------------------------------------

    /// Stores a registration under its endpoint name and returns the one it replaced.
    ///
    /// The same registration ID as the stored one is an Update: observations are kept. A
    /// different ID is a re-registration: the old ID stops resolving and the endpoint's
    /// observations are dropped, atomically with the write. Fails with
    /// [`Conflict::RegistrationIdTaken`] if the ID belongs to another endpoint.
    fn put_registration(&self, reg: &Registration) -> Result<Option<Registration>, StoreError>;

    /// [`Store::put_registration`] for many registrations with a single durability point: each
    /// registration is applied atomically on its own, in order, and then one fsync covers all of
    /// them. The inner results are per registration (a conflict on one does not fail the others);
    /// the outer error means the batch could not be made durable, so none of it may be
    /// acknowledged.
    #[allow(clippy::type_complexity)] // a per-item result inside a batch result is the point.
    fn put_registrations(
        &self,
        regs: &[Registration],
    ) -> Result<Vec<Result<Option<Registration>, StoreError>>, StoreError>;

    /// The registration of an endpoint.
    fn registration(&self, endpoint: &str) -> Result<Option<Registration>, StoreError>;

    /// The registration with this registration ID (the `/rd/{id}` of Update and De-register).
    fn registration_by_id(&self, id: &str) -> Result<Option<Registration>, StoreError>;

    /// Removes an endpoint's registration and its observations; returns the registration.
    /// Queued requests are left alone: the caller fails them with a result
    /// ([`Store::clear_queue`]) so that whoever queued them learns why.
    fn remove_registration(&self, endpoint: &str) -> Result<Option<Registration>, StoreError>;

    /// All registrations, ordered by endpoint name.
    fn registrations(&self) -> Result<Vec<Registration>, StoreError>;

    /// Registrations whose lifetime has run out at `now_ms`:
    /// `expires_at_ms() <= now_ms`, ordered by expiry time. Lifetime 0 never expires.
    fn expired_registrations(&self, now_ms: u64) -> Result<Vec<Registration>, StoreError>;

    // --- observations --------------------------------------------------------------------------

    /// Stores an observation (keyed by endpoint and token) and returns the one with the same
    /// token it replaced. Fails with [`StoreError::NotFound`] if the endpoint is not registered
    /// and with [`Conflict::StaleRegistration`] if `obs.registration_id` is not the current
    /// registration.
    fn put_observation(
        &self,
        obs: &ObservationRecord,
    ) -> Result<Option<ObservationRecord>, StoreError>;

    fn observation(
        &self,
        endpoint: &str,
        token: &[u8],
    ) -> Result<Option<ObservationRecord>, StoreError>;

    /// An endpoint's observations, ordered by token.
    fn observations(&self, endpoint: &str) -> Result<Vec<ObservationRecord>, StoreError>;

    fn remove_observation(
        &self,
        endpoint: &str,
        token: &[u8],
    ) -> Result<Option<ObservationRecord>, StoreError>;

    // --- security ------------------------------------------------------------------------------

    /// Stores an endpoint's credentials and returns the ones they replaced. Fails with
    /// [`Conflict::PskIdentityTaken`] if the PSK identity belongs to another endpoint (the DTLS
    /// handshake looks keys up by identity, so it must be unique).
    fn put_security(&self, info: &SecurityInfo) -> Result<Option<SecurityInfo>, StoreError>;

    fn security(&self, endpoint: &str) -> Result<Option<SecurityInfo>, StoreError>;

    /// The credentials whose PSK identity is `identity` (DTLS PSK handshake).
    fn security_by_psk_identity(&self, identity: &[u8])
    -> Result<Option<SecurityInfo>, StoreError>;

    fn remove_security(&self, endpoint: &str) -> Result<Option<SecurityInfo>, StoreError>;

    /// All credentials, ordered by endpoint name.
    fn security_infos(&self) -> Result<Vec<SecurityInfo>, StoreError>;

    // --- queue mode ----------------------------------------------------------------------------

    /// Appends a serialized downlink request to an endpoint's queue. The store assigns the ID,
    /// which increases monotonically across the whole store and across restarts, so ID order is
    /// FIFO order.
    fn enqueue(
        &self,
        endpoint: &str,
        request: Vec<u8>,
        created_ms: u64,
        expires_ms: u64,
    ) -> Result<QueuedRequest, StoreError>;

    /// The oldest queued request of an endpoint, without removing it. Expired requests are not
    /// skipped: call [`Store::expire_queue`] first.
    fn queue_peek(&self, endpoint: &str) -> Result<Option<QueuedRequest>, StoreError>;

    /// Removes and returns the oldest queued request of an endpoint. Two concurrent callers
    /// never get the same request.
    fn queue_pop(&self, endpoint: &str) -> Result<Option<QueuedRequest>, StoreError>;

    /// Removes one queued request by ID (e.g. after `queue_peek` and a successful send).
    fn queue_remove(&self, endpoint: &str, id: u64) -> Result<Option<QueuedRequest>, StoreError>;

    /// An endpoint's queue in FIFO order.
    fn queued(&self, endpoint: &str) -> Result<Vec<QueuedRequest>, StoreError>;

    /// Every endpoint's queue (server start): grouped by endpoint, FIFO within each.
    fn all_queued(&self) -> Result<Vec<QueuedRequest>, StoreError>;

    fn queue_len(&self, endpoint: &str) -> Result<usize, StoreError>;

    /// Removes an endpoint's requests with `expires_ms <= now_ms` and returns them (FIFO order),
    /// so the caller can fail each one with a clear result.
    fn expire_queue(&self, endpoint: &str, now_ms: u64) -> Result<Vec<QueuedRequest>, StoreError>;

    /// [`Store::expire_queue`] over every endpoint (periodic sweep); ordered by endpoint, then
    /// FIFO.
    fn expire_all_queues(&self, now_ms: u64) -> Result<Vec<QueuedRequest>, StoreError>;

    /// Removes and returns an endpoint's whole queue (deregistration).
    fn clear_queue(&self, endpoint: &str) -> Result<Vec<QueuedRequest>, StoreError>;

    // --- bootstrap configurations ----------------------------------------------------------------

    /// The bootstrap configuration of an endpoint (what the Bootstrap-Server writes into it).
    fn bootstrap_config(&self, endpoint: &str) -> Result<Option<BootstrapConfig>, StoreError>;

    /// Stores an endpoint's bootstrap configuration, replacing any previous one. Not validated
    /// here: the caller runs [`BootstrapConfig::validate`] (the bootstrap session checks again).
    fn put_bootstrap_config(
        &self,
        endpoint: &str,
        config: &BootstrapConfig,
    ) -> Result<(), StoreError>;

    /// Removes an endpoint's bootstrap configuration; false when there was none.
    fn remove_bootstrap_config(&self, endpoint: &str) -> Result<bool, StoreError>;

    /// All bootstrap configurations, ordered by endpoint name.
    fn bootstrap_configs(&self) -> Result<Vec<(String, BootstrapConfig)>, StoreError>;

    // --- maintenance ---------------------------------------------------------------------------

    /// Makes everything written so far durable. Only needed with [`Durability::Relaxed`] (and
    /// before a clean shutdown); with the default durability every write already is.
    fn flush(&self) -> Result<(), StoreError>;
}

/// Credentials of one endpoint, as the DTLS layer checks them.
#[derive(Clone, PartialEq, Eq, Encode, Decode)]
pub struct SecurityInfo {
    #[n(0)]
    pub endpoint: String,
    #[n(1)]
    pub credential: Credential,
}

/// How an endpoint must authenticate.
#[derive(Clone, PartialEq, Eq, Encode, Decode)]
pub enum Credential {
    /// DTLS-PSK: the identity the client presents and the shared key.
    #[n(0)]
    Psk {
        #[cbor(n(0), with = "minicbor::bytes")]
        identity: Vec<u8>,
        #[cbor(n(1), with = "minicbor::bytes")]
        key: Vec<u8>,
    },
    /// DTLS with an X.509 client certificate chaining to a configured CA.
    #[n(1)]
    X509 {
        /// The subject CN the certificate must carry; the security rules require it to equal the
        /// endpoint name, so this is normally the endpoint name.
        #[n(0)]
        expected_cn: String,
        /// If set, the SHA-256 of the DER certificate the client must present (pinning), on top
        /// of chain validation.
        #[cbor(n(1), with = "minicbor::bytes")]
        pinned_sha256: Option<Vec<u8>>,
    },
    /// DTLS with a raw public key: the DER SubjectPublicKeyInfo the client must present.
    #[n(2)]
    Rpk {
        #[cbor(n(0), with = "minicbor::bytes")]
        public_key_der: Vec<u8>,
    },
}

// Debug by hand so that PSK keys never reach a log line.
impl fmt::Debug for SecurityInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecurityInfo")
            .field("endpoint", &self.endpoint)
            .field("credential", &self.credential)
            .finish()
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Psk { identity, key } => f
                .debug_struct("Psk")
                .field("identity", &String::from_utf8_lossy(identity))
                .field("key", &format_args!("<{} bytes redacted>", key.len()))
                .finish(),
            Credential::X509 {
                expected_cn,
                pinned_sha256,
            } => f
                .debug_struct("X509")
                .field("expected_cn", expected_cn)
                .field("pinned_sha256", &pinned_sha256.as_deref().map(hex))
                .finish(),
            Credential::Rpk { public_key_der } => f
                .debug_struct("Rpk")
                .field("public_key_der", &hex(public_key_der))
                .finish(),
        }
    }
}

impl SecurityInfo {
    /// The PSK identity, if these are PSK credentials.
    pub fn psk_identity(&self) -> Option<&[u8]> {
        match &self.credential {
            Credential::Psk { identity, .. } => Some(identity),
            _ => None,
        }
    }
}

/// One downlink request waiting for a queue-mode device to wake up.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct QueuedRequest {
    /// Assigned by the store; increasing, so ID order is FIFO order.
    #[n(0)]
    pub id: u64,
    #[n(1)]
    pub endpoint: String,
    /// The request as the `DeviceRequests` service serialized it; opaque to the store.
    #[cbor(n(2), with = "minicbor::bytes")]
    pub request: Vec<u8>,
    /// Unix milliseconds.
    #[n(3)]
    pub created_ms: u64,
    /// Unix milliseconds after which the request must not be sent any more.
    #[n(4)]
    pub expires_ms: u64,
}

/// The kinds of record, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Registration,
    Observation,
    Security,
    QueuedRequest,
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordKind::Registration => "registration",
            RecordKind::Observation => "observation",
            RecordKind::Security => "security info",
            RecordKind::QueuedRequest => "queued request",
        })
    }
}

/// What an operation conflicted with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    #[error("registration ID {id:?} belongs to endpoint {owner:?}")]
    RegistrationIdTaken { id: String, owner: String },
    #[error("PSK identity {identity:?} belongs to endpoint {owner:?}")]
    PskIdentityTaken { identity: String, owner: String },
    #[error("registration {registration_id:?} is not the current registration of {endpoint:?}")]
    StaleRegistration {
        endpoint: String,
        registration_id: String,
    },
}

/// Where a [`StoreError`] comes from, for mapping to responses and alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultDomain {
    /// The storage failed: I/O, corruption, unsupported format, backend bug. Not the caller's
    /// fault; retrying may or may not help; the operation was not acknowledged.
    Storage,
    /// A record the operation needs does not exist.
    NotFound,
    /// The operation conflicts with stored state, or its input cannot be stored.
    Conflict,
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The database or a record in it is damaged.
    #[error("store corrupted: {0}")]
    Corrupt(String),
    /// The database was written by an incompatible version of Steward.
    #[error("store format {found} is not supported (this build reads format {supported})")]
    UnsupportedFormat { found: u32, supported: u32 },
    /// The backend failed in a way that is neither I/O nor corruption (a bug report from sled).
    #[error("store backend error: {0}")]
    Backend(String),
    #[error("{kind} not found: {key}")]
    NotFound { kind: RecordKind, key: String },
    #[error("store conflict: {0}")]
    Conflict(#[from] Conflict),
    /// The input cannot be stored (e.g. an endpoint name longer than 65535 bytes).
    #[error("invalid store input: {0}")]
    Invalid(String),
}

impl StoreError {
    pub fn domain(&self) -> FaultDomain {
        match self {
            StoreError::Io(_)
            | StoreError::Corrupt(_)
            | StoreError::UnsupportedFormat { .. }
            | StoreError::Backend(_) => FaultDomain::Storage,
            StoreError::NotFound { .. } => FaultDomain::NotFound,
            StoreError::Conflict(_) | StoreError::Invalid(_) => FaultDomain::Conflict,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_psk_key() {
        let info = SecurityInfo {
            endpoint: "ep".into(),
            credential: Credential::Psk {
                identity: b"id".to_vec(),
                key: b"supersecret".to_vec(),
            },
        };
        let s = format!("{info:?}");
        assert!(!s.contains("supersecret"), "{s}");
        assert!(s.contains("11 bytes redacted"), "{s}");
    }

    #[test]
    fn security_cbor_round_trip() {
        for credential in [
            Credential::Psk {
                identity: b"id".to_vec(),
                key: vec![1, 2, 3],
            },
            Credential::X509 {
                expected_cn: "ep".into(),
                pinned_sha256: Some(vec![7; 32]),
            },
            Credential::X509 {
                expected_cn: "ep".into(),
                pinned_sha256: None,
            },
            Credential::Rpk {
                public_key_der: vec![0x30, 0x59],
            },
        ] {
            let info = SecurityInfo {
                endpoint: "ep".into(),
                credential,
            };
            let bytes = minicbor::to_vec(&info).unwrap_or_default();
            assert_eq!(minicbor::decode::<SecurityInfo>(&bytes).ok(), Some(info));
        }
    }

    #[test]
    fn fault_domains() {
        assert_eq!(
            StoreError::Corrupt("x".into()).domain(),
            FaultDomain::Storage
        );
        assert_eq!(
            StoreError::NotFound {
                kind: RecordKind::Registration,
                key: "ep".into()
            }
            .domain(),
            FaultDomain::NotFound
        );
        assert_eq!(
            StoreError::from(Conflict::RegistrationIdTaken {
                id: "1".into(),
                owner: "ep".into()
            })
            .domain(),
            FaultDomain::Conflict
        );
    }
}
