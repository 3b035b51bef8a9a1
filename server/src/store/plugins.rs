//! Plugin state in the sled store: each plugin's key-value namespace, its timers, and which
//! plugins the operator disabled.
//!
//! | tree | key | value |
//! |---|---|---|
//! | `plugin_kv` | plugin name ‖ 0x00 ‖ key | the value |
//! | `plugin_timers` | plugin name ‖ 0x00 ‖ timer name | due time, Unix ms, u64 BE |
//! | `plugin_disabled` | plugin name | empty |
//! | `plugin_owners` | object ID, u16 BE | the owning plugin's name |
//!
//! Their bootstrap offers are in `bootstrap_offers` (`store::offers`), written in one
//! transaction with the key-value writes of the same event.
//!
//! Plugin names never contain 0x00 (see `plugins::describe`), so a namespace is exactly the
//! keys that start with `name ‖ 0x00` and one plugin's prefix scan cannot reach another's.
//! The writes of one event go in one sled batch and through the group-commit gate before the
//! event counts as handled: a restart (or `kill -9`) loses nothing a plugin was told is stored.

use sled::Tree;

use super::{SledStore, StoreError};

pub(super) const KV: &str = "plugin_kv";
const TIMERS: &str = "plugin_timers";
const DISABLED: &str = "plugin_disabled";
const OWNERS: &str = "plugin_owners";

/// One key-value change of an event's effects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginKvWrite {
    Put(String, Vec<u8>),
    Delete(String),
}

/// A timer as stored: which plugin, its name, when it is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginTimer {
    pub plugin: String,
    pub name: String,
    pub due_ms: u64,
}

pub(super) fn namespaced(plugin: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(plugin.len() + 1 + key.len());
    k.extend_from_slice(plugin.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

fn sled_error(e: sled::Error) -> StoreError {
    super::sled_store::from_sled(e)
}

impl SledStore {
    fn plugin_tree(&self, name: &str) -> Result<Tree, StoreError> {
        self.db().open_tree(name).map_err(sled_error)
    }

    /// A value of `plugin`'s namespace.
    pub fn plugin_kv_get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .plugin_tree(KV)?
            .get(namespaced(plugin, key))
            .map_err(sled_error)?
            .map(|v| v.to_vec()))
    }

    /// Keys of `plugin`'s namespace starting with `prefix`, sorted, at most `limit`.
    pub fn plugin_kv_keys(
        &self,
        plugin: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let strip = plugin.len() + 1;
        let mut keys = Vec::new();
        for item in self
            .plugin_tree(KV)?
            .scan_prefix(namespaced(plugin, prefix))
            .keys()
            .take(limit)
        {
            let k = item.map_err(sled_error)?;
            // Keys were written from `String`s, so they are UTF-8; skip anything else.
            if let Ok(key) = std::str::from_utf8(&k[strip..]) {
                keys.push(key.to_owned());
            }
        }
        Ok(keys)
    }

    /// Applies one event's key-value writes atomically and durably.
    pub fn plugin_kv_apply(
        &self,
        plugin: &str,
        writes: &[PluginKvWrite],
    ) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for w in writes {
            match w {
                PluginKvWrite::Put(k, v) => batch.insert(namespaced(plugin, k), v.as_slice()),
                PluginKvWrite::Delete(k) => batch.remove(namespaced(plugin, k)),
            }
        }
        self.plugin_tree(KV)?
            .apply_batch(batch)
            .map_err(sled_error)?;
        self.commit()
    }

    /// Sets (or moves) a timer.
    pub fn plugin_timer_put(&self, timer: &PluginTimer) -> Result<(), StoreError> {
        self.plugin_tree(TIMERS)?
            .insert(
                namespaced(&timer.plugin, &timer.name),
                &timer.due_ms.to_be_bytes(),
            )
            .map_err(sled_error)?;
        self.commit()
    }

    /// Removes a timer; false when there was none.
    pub fn plugin_timer_remove(&self, plugin: &str, name: &str) -> Result<bool, StoreError> {
        let old = self
            .plugin_tree(TIMERS)?
            .remove(namespaced(plugin, name))
            .map_err(sled_error)?;
        self.commit()?;
        Ok(old.is_some())
    }

    /// Every stored timer (read at start).
    pub fn plugin_timers(&self) -> Result<Vec<PluginTimer>, StoreError> {
        let mut timers = Vec::new();
        for item in self.plugin_tree(TIMERS)?.iter() {
            let (k, v) = item.map_err(sled_error)?;
            let Some(split) = k.iter().position(|&b| b == 0) else {
                continue;
            };
            let (Ok(plugin), Ok(name)) = (
                std::str::from_utf8(&k[..split]),
                std::str::from_utf8(&k[split + 1..]),
            ) else {
                continue;
            };
            let Ok(due) = <[u8; 8]>::try_from(v.as_ref()) else {
                continue;
            };
            timers.push(PluginTimer {
                plugin: plugin.to_owned(),
                name: name.to_owned(),
                due_ms: u64::from_be_bytes(due),
            });
        }
        Ok(timers)
    }

    /// Records that the operator disabled (or re-enabled) a plugin.
    pub fn plugin_set_disabled(&self, plugin: &str, disabled: bool) -> Result<(), StoreError> {
        let tree = self.plugin_tree(DISABLED)?;
        if disabled {
            tree.insert(plugin.as_bytes(), &[]).map_err(sled_error)?;
        } else {
            tree.remove(plugin.as_bytes()).map_err(sled_error)?;
        }
        self.commit()
    }

    /// Records which plugin owns which object (replacing the previous record), so that the
    /// same plugins keep their objects across restarts.
    pub fn plugin_set_owners(
        &self,
        owners: &std::collections::HashMap<u16, String>,
    ) -> Result<(), StoreError> {
        let tree = self.plugin_tree(OWNERS)?;
        let mut batch = sled::Batch::default();
        for key in tree.iter().keys() {
            batch.remove(key.map_err(sled_error)?);
        }
        for (object, plugin) in owners {
            batch.insert(&object.to_be_bytes(), plugin.as_bytes());
        }
        tree.apply_batch(batch).map_err(sled_error)?;
        self.commit()
    }

    /// Object ID → owning plugin, as last recorded.
    pub fn plugin_owners(&self) -> Result<std::collections::BTreeMap<u16, String>, StoreError> {
        let mut owners = std::collections::BTreeMap::new();
        for item in self.plugin_tree(OWNERS)?.iter() {
            let (k, v) = item.map_err(sled_error)?;
            if let (Ok(id), Ok(name)) = (<[u8; 2]>::try_from(k.as_ref()), std::str::from_utf8(&v)) {
                owners.insert(u16::from_be_bytes(id), name.to_owned());
            }
        }
        Ok(owners)
    }

    pub fn plugin_disabled(&self, plugin: &str) -> Result<bool, StoreError> {
        self.plugin_tree(DISABLED)?
            .contains_key(plugin.as_bytes())
            .map_err(sled_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(dir.path()).expect("open");
        (dir, store)
    }

    #[test]
    fn namespaces_do_not_overlap() {
        let (_dir, store) = store();
        let put = |k: &str, v: &[u8]| PluginKvWrite::Put(k.into(), v.to_vec());
        store
            .plugin_kv_apply("a", &[put("x", b"1"), put("xy", b"2")])
            .expect("apply");
        store
            .plugin_kv_apply("ab", &[put("x", b"3")])
            .expect("apply");
        assert_eq!(
            store.plugin_kv_get("a", "x").expect("get"),
            Some(b"1".to_vec())
        );
        assert_eq!(
            store.plugin_kv_get("ab", "x").expect("get"),
            Some(b"3".to_vec())
        );
        assert_eq!(
            store.plugin_kv_keys("a", "", 10).expect("keys"),
            ["x", "xy"]
        );
        assert_eq!(store.plugin_kv_keys("a", "xy", 10).expect("keys"), ["xy"]);
        assert_eq!(store.plugin_kv_keys("a", "", 1).expect("keys"), ["x"]);
        store
            .plugin_kv_apply("a", &[PluginKvWrite::Delete("x".into())])
            .expect("apply");
        assert_eq!(store.plugin_kv_get("a", "x").expect("get"), None);
    }

    #[test]
    fn state_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = SledStore::open(dir.path()).expect("open");
            store
                .plugin_kv_apply("p", &[PluginKvWrite::Put("k".into(), b"v".to_vec())])
                .expect("apply");
            store
                .plugin_timer_put(&PluginTimer {
                    plugin: "p".into(),
                    name: "t".into(),
                    due_ms: 42,
                })
                .expect("timer");
            store.plugin_set_disabled("q", true).expect("disable");
        }
        let store = SledStore::open(dir.path()).expect("reopen");
        assert_eq!(
            store.plugin_kv_get("p", "k").expect("get"),
            Some(b"v".to_vec())
        );
        assert_eq!(
            store.plugin_timers().expect("timers"),
            [PluginTimer {
                plugin: "p".into(),
                name: "t".into(),
                due_ms: 42
            }]
        );
        assert!(store.plugin_disabled("q").expect("disabled"));
        assert!(!store.plugin_disabled("p").expect("disabled"));
        assert!(store.plugin_timer_remove("p", "t").expect("remove"));
        assert!(store.plugin_timers().expect("timers").is_empty());
    }
}
