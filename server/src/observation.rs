//! Observations the server holds on devices (LwM2M Information Reporting, Transport §6.4.5).
//!
//! An observation is identified by the CoAP token the server chose for the Observe request; the
//! device echoes it in every notification. The record is persisted so that notifications arriving
//! after a server restart can still be matched to what was observed, in which format.
//! Observations belong to one registration: the store drops them when the endpoint re-registers
//! (new registration ID) or deregisters, because the device forgets them too (Transport §6.4.5:
//! a new Register cancels all observations).

use minicbor::{Decode, Encode};

/// One active observation, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ObservationRecord {
    /// The CoAP token of the Observe request (0–8 bytes); unique per endpoint.
    #[cbor(n(0), with = "minicbor::bytes")]
    pub token: Vec<u8>,
    #[n(1)]
    pub endpoint: String,
    /// The registration the observation was made under. The store refuses to add an observation
    /// for a registration that is no longer current (a late Observe response after a
    /// re-registration would otherwise resurrect a dead observation).
    #[n(2)]
    pub registration_id: String,
    /// Observed paths in text form (`/3/0/1`, see `steward_objects::path::Path`). One path for a
    /// plain Observe, several for a composite Observe.
    #[n(3)]
    pub paths: Vec<String>,
    /// Composite Observe (FETCH) rather than Observe (GET), even with a single path.
    #[n(4)]
    pub composite: bool,
    /// The content format the server asked for (Accept), if it asked.
    #[n(5)]
    pub content_format: Option<u16>,
    /// Unix milliseconds.
    #[n(6)]
    pub created_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cbor_round_trip() {
        let o = ObservationRecord {
            token: vec![1, 2, 3, 4],
            endpoint: "ep".into(),
            registration_id: "r1".into(),
            paths: vec!["/3/0/1".into(), "/1/0".into()],
            composite: true,
            content_format: Some(112),
            created_ms: 42,
        };
        let bytes = minicbor::to_vec(&o).unwrap_or_default();
        assert_eq!(minicbor::decode::<ObservationRecord>(&bytes).ok(), Some(o));
    }
}
