//! Plugins' bootstrap offers in the sled store ([`crate::bootstrap::offers`]).
//!
//! | tree | key | value |
//! |---|---|---|
//! | `bootstrap_offers` | plugin name ‖ 0x00 ‖ offer name | an [`OfferRecord`] (CBOR) |
//!
//! As for the plugins' key-value namespaces (`store::plugins`), plugin names never contain
//! 0x00, so one plugin's keys cannot reach another's. An event's offer changes are written in
//! one transaction with its key-value writes, then through the group-commit gate: an offer a
//! plugin was told is made survives `kill -9`, and a plugin never sees its state without the
//! offer it made in the same event (or the reverse).
//!
//! # Record format
//!
//! ```text
//! { 0: 1 (format), 1: "/42799/0/1", 2: [tag, value...], 3: ["ep", ..], 4: finish-on-accept,
//!   5: expires-ms / null }
//! ```
//!
//! The value is its own small CBOR union ([`ValueRecord`]) rather than an encoded LwM2M
//! payload: a content format is chosen per session, and the record must not depend on one.

use minicbor::{Decode, Encode};
use sled::Transactional;

use super::plugins::PluginKvWrite;
use super::sled_store::{from_sled, from_tx};
use super::{SledStore, StoreError};
use crate::bootstrap::offers::{NewOffer, Offer, OfferChange};
use steward_objects::{ObjLink, Path, Value};

const OFFERS: &str = "bootstrap_offers";
/// The record layout this build writes and reads.
pub const OFFER_RECORD_FORMAT: u32 = 1;

/// One stored offer (its plugin and name are the key).
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct OfferRecord {
    #[n(0)]
    pub format: u32,
    #[n(1)]
    pub path: String,
    #[n(2)]
    pub value: ValueRecord,
    #[n(3)]
    pub endpoints: Vec<String>,
    #[n(4)]
    pub finish_on_accept: bool,
    #[n(5)]
    pub expires_ms: Option<u64>,
}

/// An LwM2M value as stored.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub enum ValueRecord {
    #[n(0)]
    String(#[n(0)] String),
    #[n(1)]
    Integer(#[n(0)] i64),
    #[n(2)]
    Unsigned(#[n(0)] u64),
    #[n(3)]
    Float(#[n(0)] f64),
    #[n(4)]
    Boolean(#[n(0)] bool),
    #[n(5)]
    Opaque(#[cbor(n(0), with = "minicbor::bytes")] Vec<u8>),
    #[n(6)]
    Time(#[n(0)] i64),
    #[n(7)]
    Objlnk(#[n(0)] u16, #[n(1)] u16),
    #[n(8)]
    Corelnk(#[n(0)] String),
}

impl From<&Value> for ValueRecord {
    fn from(v: &Value) -> ValueRecord {
        match v {
            Value::String(s) => ValueRecord::String(s.clone()),
            Value::Integer(i) => ValueRecord::Integer(*i),
            Value::UnsignedInteger(u) => ValueRecord::Unsigned(*u),
            Value::Float(f) => ValueRecord::Float(*f),
            Value::Boolean(b) => ValueRecord::Boolean(*b),
            Value::Opaque(o) => ValueRecord::Opaque(o.clone()),
            Value::Time(t) => ValueRecord::Time(*t),
            Value::Objlnk(l) => ValueRecord::Objlnk(l.object, l.instance),
            Value::Corelnk(c) => ValueRecord::Corelnk(c.clone()),
        }
    }
}

impl From<ValueRecord> for Value {
    fn from(v: ValueRecord) -> Value {
        match v {
            ValueRecord::String(s) => Value::String(s),
            ValueRecord::Integer(i) => Value::Integer(i),
            ValueRecord::Unsigned(u) => Value::UnsignedInteger(u),
            ValueRecord::Float(f) => Value::Float(f),
            ValueRecord::Boolean(b) => Value::Boolean(b),
            ValueRecord::Opaque(o) => Value::Opaque(o),
            ValueRecord::Time(t) => Value::Time(t),
            ValueRecord::Objlnk(object, instance) => Value::Objlnk(ObjLink { object, instance }),
            ValueRecord::Corelnk(c) => Value::Corelnk(c),
        }
    }
}

impl OfferRecord {
    pub fn new(offer: &Offer) -> OfferRecord {
        OfferRecord {
            format: OFFER_RECORD_FORMAT,
            path: offer.path().to_string(),
            value: offer.value().into(),
            endpoints: offer.endpoints().iter().cloned().collect(),
            finish_on_accept: offer.finish_on_accept(),
            expires_ms: offer.expires_ms(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // Encoding into a Vec cannot fail (the writer is infallible).
        minicbor::to_vec(self).unwrap_or_default()
    }

    /// Decodes the record stored at `key` back into an offer.
    pub fn decode(key: &[u8], bytes: &[u8]) -> Result<Offer, StoreError> {
        let corrupt = |what: String| {
            StoreError::Corrupt(format!(
                "undecodable record in {OFFERS} at {:?}: {what}",
                String::from_utf8_lossy(key)
            ))
        };
        let (plugin, name) = split_key(key).ok_or_else(|| corrupt("malformed key".into()))?;
        let record: OfferRecord = minicbor::decode(bytes).map_err(|e| corrupt(e.to_string()))?;
        if record.format != OFFER_RECORD_FORMAT {
            return Err(StoreError::UnsupportedFormat {
                found: record.format,
                supported: OFFER_RECORD_FORMAT,
            });
        }
        let path: Path = record
            .path
            .parse()
            .map_err(|_| corrupt(format!("path {:?}", record.path)))?;
        NewOffer {
            plugin,
            name,
            path,
            value: record.value.into(),
            endpoints: record.endpoints,
            finish_on_accept: record.finish_on_accept,
            expires_ms: record.expires_ms,
        }
        .check(None)
        .map_err(|e| corrupt(e.to_string()))
    }
}

fn key(plugin: &str, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(plugin.len() + 1 + name.len());
    k.extend_from_slice(plugin.as_bytes());
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k
}

fn split_key(k: &[u8]) -> Option<(String, String)> {
    let split = k.iter().position(|&b| b == 0)?;
    let plugin = std::str::from_utf8(&k[..split]).ok()?;
    let name = std::str::from_utf8(&k[split + 1..]).ok()?;
    Some((plugin.to_owned(), name.to_owned()))
}

impl SledStore {
    /// Every stored offer, and the records that could not be read (each a reason; they are
    /// left in place for the operator, and do not keep the others from being offered).
    pub fn bootstrap_offers(&self) -> Result<(Vec<Offer>, Vec<StoreError>), StoreError> {
        let tree = self.db().open_tree(OFFERS).map_err(from_sled)?;
        let mut offers = Vec::new();
        let mut unreadable = Vec::new();
        for item in tree.iter() {
            let (k, v) = item.map_err(from_sled)?;
            match OfferRecord::decode(&k, &v) {
                Ok(o) => offers.push(o),
                Err(e) => unreadable.push(e),
            }
        }
        Ok((offers, unreadable))
    }

    /// Applies one event's key-value writes and offer changes of `plugin` in one transaction,
    /// durably. Every change must be `plugin`'s (the caller's check).
    pub fn plugin_apply_with_offers(
        &self,
        plugin: &str,
        kv: &[PluginKvWrite],
        offers: &[OfferChange],
    ) -> Result<(), StoreError> {
        if let Some(other) = offers.iter().find(|c| c.plugin() != plugin) {
            return Err(StoreError::Invalid(format!(
                "an offer change of plugin {} among plugin {plugin}'s",
                other.plugin()
            )));
        }
        let kv_tree = self.db().open_tree(super::plugins::KV).map_err(from_sled)?;
        let offer_tree = self.db().open_tree(OFFERS).map_err(from_sled)?;
        let records: Vec<(Vec<u8>, Option<Vec<u8>>)> = offers
            .iter()
            .map(|c| match c {
                OfferChange::Put(o) => (
                    key(o.plugin(), o.name()),
                    Some(OfferRecord::new(o).to_bytes()),
                ),
                OfferChange::Withdraw { plugin, name } => (key(plugin, name), None),
            })
            .collect();
        let result = (&kv_tree, &offer_tree).transaction(|(kv_tx, offer_tx)| {
            for w in kv {
                match w {
                    PluginKvWrite::Put(k, v) => {
                        kv_tx.insert(super::plugins::namespaced(plugin, k), v.as_slice())?;
                    }
                    PluginKvWrite::Delete(k) => {
                        kv_tx.remove(super::plugins::namespaced(plugin, k))?;
                    }
                }
            }
            for (k, v) in &records {
                match v {
                    Some(v) => offer_tx.insert(k.as_slice(), v.as_slice())?,
                    None => offer_tx.remove(k.as_slice())?,
                };
            }
            Ok::<(), sled::transaction::ConflictableTransactionError<StoreError>>(())
        });
        from_tx(result)?;
        self.commit()
    }

    /// Removes offers by (plugin, name) (the expired ones), durably.
    pub fn bootstrap_offers_remove(&self, keys: &[(String, String)]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let tree = self.db().open_tree(OFFERS).map_err(from_sled)?;
        let mut batch = sled::Batch::default();
        for (plugin, name) in keys {
            batch.remove(key(plugin, name));
        }
        tree.apply_batch(batch).map_err(from_sled)?;
        self.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(plugin: &str, name: &str, value: Value, expires_ms: Option<u64>) -> Offer {
        NewOffer {
            plugin: plugin.into(),
            name: name.into(),
            path: Path::Resource(42799, 0, 1),
            value,
            endpoints: vec!["b".into(), "a".into()],
            finish_on_accept: true,
            expires_ms,
        }
        .check(None)
        .expect("valid")
    }

    #[test]
    fn every_value_round_trips() {
        let values = [
            Value::String("x".into()),
            Value::Integer(-1),
            Value::UnsignedInteger(u64::MAX),
            Value::Float(0.5),
            Value::Boolean(true),
            Value::Opaque(vec![0, 1]),
            Value::Time(7),
            Value::Objlnk(ObjLink {
                object: 3,
                instance: 0,
            }),
            Value::Corelnk("</3>".into()),
        ];
        for v in values {
            let o = offer("p", "n", v, Some(9));
            let bytes = OfferRecord::new(&o).to_bytes();
            assert_eq!(OfferRecord::decode(&key("p", "n"), &bytes).ok(), Some(o));
        }
        assert!(matches!(
            OfferRecord::decode(b"no-separator", &[]),
            Err(StoreError::Corrupt(_))
        ));
        let future = OfferRecord {
            format: 2,
            ..OfferRecord::new(&offer("p", "n", Value::Integer(1), None))
        };
        assert!(matches!(
            OfferRecord::decode(&key("p", "n"), &future.to_bytes()),
            Err(StoreError::UnsupportedFormat { found: 2, .. })
        ));
    }

    #[test]
    fn offers_and_kv_writes_are_stored_together_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = offer("p", "a", Value::Integer(1), None);
        let b = offer("p", "b", Value::Integer(2), Some(5));
        {
            let store = SledStore::open(dir.path()).expect("open");
            store
                .plugin_apply_with_offers(
                    "p",
                    &[PluginKvWrite::Put("k".into(), b"v".to_vec())],
                    &[OfferChange::Put(a.clone()), OfferChange::Put(b.clone())],
                )
                .expect("apply");
            store
                .plugin_apply_with_offers(
                    "q",
                    &[],
                    &[OfferChange::Put(offer("q", "a", Value::Integer(3), None))],
                )
                .expect("apply");
            // Another plugin's change is refused, nothing of it written.
            assert!(
                store
                    .plugin_apply_with_offers(
                        "p",
                        &[PluginKvWrite::Put("k2".into(), b"v".to_vec())],
                        &[OfferChange::Withdraw {
                            plugin: "q".into(),
                            name: "a".into()
                        }],
                    )
                    .is_err()
            );
            store
                .plugin_apply_with_offers(
                    "p",
                    &[],
                    &[OfferChange::Withdraw {
                        plugin: "p".into(),
                        name: "nothing".into(),
                    }],
                )
                .expect("withdrawing nothing is fine");
        }
        let store = SledStore::open(dir.path()).expect("reopen");
        assert_eq!(
            store.plugin_kv_get("p", "k").expect("kv"),
            Some(b"v".to_vec())
        );
        assert_eq!(store.plugin_kv_get("p", "k2").expect("kv"), None);
        let (offers, unreadable) = store.bootstrap_offers().expect("offers");
        assert!(unreadable.is_empty());
        assert_eq!(offers.len(), 3);
        assert_eq!(offers[0], a);
        assert_eq!(offers[1], b);
        store
            .bootstrap_offers_remove(&[("p".into(), "b".into())])
            .expect("remove");
        store
            .plugin_apply_with_offers(
                "q",
                &[],
                &[OfferChange::Withdraw {
                    plugin: "q".into(),
                    name: "a".into(),
                }],
            )
            .expect("withdraw");
        let (offers, _) = store.bootstrap_offers().expect("offers");
        assert_eq!(offers, [a]);
    }
}
