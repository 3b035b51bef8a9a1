//! What the plugin asks of the host, behind a trait so that the decision logic runs in native
//! unit tests against an in-memory store (`tests::FakeEnv`).

use steward_plugin_sdk::{HostError, PluginError, failed, host};

use crate::records::{DeviceRecord, Stats, TokenRecord, device_key, token_key};

/// The host calls the plugin makes: key-value reads (as committed before the event), the clock,
/// COSE verification by key name, the log.
pub(crate) trait Env {
    fn kv_get(&self, key: &str) -> Option<Vec<u8>>;
    /// At most `limit` (≤ 1000) keys starting with `prefix`, sorted.
    fn kv_list(&self, prefix: &str, limit: u32) -> Vec<String>;
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    fn cose_verify(&self, key: &str, message: &[u8]) -> Result<Vec<u8>, HostError>;
    fn log_warn(&self, message: &str);

    /// Seconds since the Unix epoch (the tokens' unit).
    fn now_s(&self) -> u64 {
        self.now_ms() / 1000
    }

    /// A JSON record of ours; one that does not parse fails the event (it is our own data:
    /// deciding on a guess would not fail closed).
    fn record<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, PluginError> {
        self.kv_get(key)
            .map(|bytes| {
                serde_json::from_slice(&bytes)
                    .map_err(|e| failed(format!("stored record {key} does not parse: {e}")))
            })
            .transpose()
    }

    fn token(&self, token_id: &str) -> Result<Option<TokenRecord>, PluginError> {
        self.record(&token_key(token_id))
    }

    fn device(&self, endpoint: &str) -> Result<Option<DeviceRecord>, PluginError> {
        self.record(&device_key(endpoint))
    }

    fn stats(&self) -> Result<Stats, PluginError> {
        Ok(self.record(crate::records::STATS_KEY)?.unwrap_or_default())
    }

    /// Every imported token (withdrawn and expired ones too), in token-id order.
    fn tokens(&self) -> Result<Vec<TokenRecord>, PluginError> {
        self.kv_list(crate::records::TOKEN_PREFIX, 1000)
            .iter()
            .filter_map(|key| self.record::<TokenRecord>(key).transpose())
            .collect()
    }
}

/// The real host (only inside the server).
pub(crate) struct HostEnv;

impl Env for HostEnv {
    fn kv_get(&self, key: &str) -> Option<Vec<u8>> {
        host::kv_get(key)
    }

    fn kv_list(&self, prefix: &str, limit: u32) -> Vec<String> {
        host::kv_list(prefix, limit)
    }

    fn now_ms(&self) -> u64 {
        host::now_ms()
    }

    fn cose_verify(&self, key: &str, message: &[u8]) -> Result<Vec<u8>, HostError> {
        host::cose_verify(key, message)
    }

    fn log_warn(&self, message: &str) {
        host::log_warn(message);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use steward_plugin_sdk::{Effect, HostError};

    use super::Env;

    /// An in-memory host: a key-value store that [`FakeEnv::apply`] commits effects to, a
    /// settable clock, and a "vendor key" under which a token `d2 84 <payload>` verifies to
    /// `<payload>` unless its last byte is 0xff (a bad signature).
    pub(crate) struct FakeEnv {
        pub kv: RefCell<BTreeMap<String, Vec<u8>>>,
        pub now_ms: u64,
        pub vendor_key: bool,
    }

    impl FakeEnv {
        pub fn new(now_ms: u64) -> Self {
            FakeEnv {
                kv: RefCell::new(BTreeMap::new()),
                now_ms,
                vendor_key: true,
            }
        }

        /// Commits the key-value effects of an event, as the host does after `handle`.
        pub fn apply(&self, effects: &[Effect]) {
            let mut kv = self.kv.borrow_mut();
            for effect in effects {
                match effect {
                    Effect::KvPut((key, value)) => {
                        assert!(key.len() <= 256, "key over 256 bytes: {key}");
                        assert!(value.len() <= 64 * 1024, "value over 64 KiB at {key}");
                        kv.insert(key.clone(), value.clone());
                    }
                    Effect::KvDelete(key) => {
                        kv.remove(key);
                    }
                    _ => {}
                }
            }
        }

        pub fn json(&self, key: &str) -> serde_json::Value {
            let kv = self.kv.borrow();
            let bytes = kv.get(key).unwrap_or_else(|| panic!("no {key}"));
            serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{key}: {e}"))
        }
    }

    impl Env for FakeEnv {
        fn kv_get(&self, key: &str) -> Option<Vec<u8>> {
            self.kv.borrow().get(key).cloned()
        }

        fn kv_list(&self, prefix: &str, limit: u32) -> Vec<String> {
            self.kv
                .borrow()
                .keys()
                .filter(|k| k.starts_with(prefix))
                .take(limit.min(1000) as usize)
                .cloned()
                .collect()
        }

        fn now_ms(&self) -> u64 {
            self.now_ms
        }

        fn cose_verify(&self, key: &str, message: &[u8]) -> Result<Vec<u8>, HostError> {
            if key != "vendor" || !self.vendor_key {
                return Err(HostError::Denied(format!(
                    "no key '{key}' for plugin 'trust-recovery'"
                )));
            }
            match message {
                [0xd2, 0x84, .., 0xff] => Err(HostError::Failed("bad signature".into())),
                [0xd2, 0x84, payload @ ..] => Ok(payload.to_vec()),
                _ => Err(HostError::Invalid("not a COSE_Sign1".into())),
            }
        }

        fn log_warn(&self, _message: &str) {}
    }
}
