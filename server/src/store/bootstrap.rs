//! Bootstrap configurations in the store: the record kept in the sled tree `bootstrap` (key:
//! endpoint name, value: a [`BootstrapRecord`]).
//!
//! # Record format
//!
//! A CBOR envelope like every other record (integer keys, minicbor), holding a format number
//! and the configuration as Leshan-shaped JSON bytes:
//!
//! ```text
//! { 0: 1 (format), 1: h'7b22...' (BootstrapConfig JSON) }
//! ```
//!
//! Why JSON inside: the configuration's schema *is* its Leshan JSON shape (about fifty fields,
//! with defaults, enum names and byte-array rules in [`crate::bootstrap::config`]). A second,
//! CBOR, encoding of the same types would be a second schema to keep in step, and a field added
//! later would need care in both. JSON with field names reads old records as they were (an
//! absent field takes its default), and what an operator exports is byte-for-byte what the
//! store holds. The cost, a few hundred bytes more per endpoint, does not matter for
//! configurations that are written by an operator and read once per bootstrap. The envelope's
//! format number lets a later build change the inner encoding and still read these records.

use minicbor::{Decode, Encode};

use super::StoreError;
use crate::bootstrap::BootstrapConfig;

/// The inner encoding this build writes and reads: 1 = `BootstrapConfig` JSON.
pub const BOOTSTRAP_RECORD_FORMAT: u32 = 1;

/// One stored bootstrap configuration.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct BootstrapRecord {
    #[n(0)]
    pub format: u32,
    #[cbor(n(1), with = "minicbor::bytes")]
    pub config: Vec<u8>,
}

impl BootstrapRecord {
    pub fn new(config: &BootstrapConfig) -> BootstrapRecord {
        BootstrapRecord {
            format: BOOTSTRAP_RECORD_FORMAT,
            config: config.to_json().into_bytes(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // Encoding into a Vec cannot fail (the writer is infallible).
        minicbor::to_vec(self).unwrap_or_default()
    }

    /// Decodes a stored record; `key` names it in errors.
    pub fn decode(bytes: &[u8], key: &[u8]) -> Result<BootstrapConfig, StoreError> {
        let corrupt = |what: String| {
            StoreError::Corrupt(format!(
                "undecodable record in bootstrap at {:?}: {what}",
                String::from_utf8_lossy(key)
            ))
        };
        let record: BootstrapRecord =
            minicbor::decode(bytes).map_err(|e| corrupt(e.to_string()))?;
        if record.format != BOOTSTRAP_RECORD_FORMAT {
            return Err(StoreError::UnsupportedFormat {
                found: record.format,
                supported: BOOTSTRAP_RECORD_FORMAT,
            });
        }
        BootstrapConfig::from_json(&record.config).map_err(|e| corrupt(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::bootstrap::{ServerConfig, ServerSecurity};

    #[test]
    fn record_round_trip_and_format_check() {
        let mut config = BootstrapConfig::default();
        config.servers.insert(0, ServerConfig::new(1));
        config
            .security
            .insert(1, ServerSecurity::psk("coaps://x", 1, b"id", b"key"));
        let bytes = BootstrapRecord::new(&config).to_bytes();
        assert_eq!(BootstrapRecord::decode(&bytes, b"ep").unwrap(), config);
        let future = BootstrapRecord {
            format: 2,
            config: Vec::new(),
        }
        .to_bytes();
        assert!(matches!(
            BootstrapRecord::decode(&future, b"ep"),
            Err(StoreError::UnsupportedFormat { found: 2, .. })
        ));
        assert!(matches!(
            BootstrapRecord::decode(&[0xff], b"ep"),
            Err(StoreError::Corrupt(_))
        ));
    }
}
