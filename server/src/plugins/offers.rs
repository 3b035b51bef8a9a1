//! The plugins' bootstrap offers at run time: one [`OfferRegistry`] in memory, kept equal to
//! the store's `bootstrap_offers` tree, shared by the plugin dispatcher (which changes it when
//! a plugin's effects make or withdraw offers) and the Bootstrap-Server (which reads it when a
//! session starts, through [`OfferSource`]).
//!
//! ```text
//!  plugin effects ─► dispatcher ─► PluginOffers::apply ─► store (one transaction with the
//!                                   (check the cap)        event's kv writes, fsync)
//!                                                        ─► registry (write lock, brief)
//!  Bootstrap-Request ─► BootstrapSessions ─► offers_for(ep) (read lock, cheap)
//! ```
//!
//! Writers (a plugin's changes, the pruning of expired offers) take turns under one mutex so
//! that what the store holds and what the registry holds never differ: the store is written
//! first, the registry after, and no other writer runs in between. Readers never wait for the
//! store.
//!
//! Offers of a plugin that is not loaded (it was removed on reload) or that the operator
//! disabled are not written to devices, but stay stored: they are back when the plugin is.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use super::host::PluginHost;
use crate::bootstrap::offers::{Offer, OfferChange, OfferError, OfferRegistry, OfferSource};
use crate::store::{PluginKvWrite, StoreError};

/// Why a plugin's offer changes were not applied (nothing of them, nor of the event's
/// key-value writes, was).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A rule that depends on the offers standing (the per-plugin cap): the plugin's fault.
    #[error(transparent)]
    Refused(#[from] OfferError),
    #[error("cannot store the offers: {0}")]
    Store(#[from] StoreError),
    #[error("this plugin host has no store")]
    NoStore,
}

/// The shared registry and its store.
pub struct PluginOffers {
    registry: RwLock<OfferRegistry>,
    writing: Mutex<()>,
    host: Arc<PluginHost>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PluginOffers {
    /// Reads the stored offers (blocking: call from a blocking thread) and prunes those
    /// expired at `now_ms`. A store that cannot be read leaves the registry empty (logged):
    /// the Bootstrap-Server still serves configurations.
    pub fn load(host: Arc<PluginHost>, now_ms: u64) -> PluginOffers {
        let mut offers = Vec::new();
        if let Some(store) = host.store() {
            match store.bootstrap_offers() {
                Ok((read, unreadable)) => {
                    for e in unreadable {
                        tracing::error!(error = %e, "a stored bootstrap offer cannot be read; it is not offered");
                    }
                    offers = read;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the stored bootstrap offers; none is offered");
                }
            }
        }
        let loaded = PluginOffers {
            registry: RwLock::new(OfferRegistry::from_offers(offers)),
            writing: Mutex::new(()),
            host,
        };
        loaded.prune(now_ms);
        let count = loaded.read().len();
        if count > 0 {
            tracing::info!(offers = count, "bootstrap offers loaded");
        }
        loaded
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, OfferRegistry> {
        self.registry.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// A plugin's offers by name (expired ones too, until pruned).
    pub fn of_plugin(&self, plugin: &str) -> Vec<Offer> {
        self.read().of_plugin(plugin).cloned().collect()
    }

    /// Every offer, by (plugin, name).
    pub fn all(&self) -> Vec<Offer> {
        self.read().iter().cloned().collect()
    }

    /// Applies one event of `plugin`: its key-value writes and its offer changes, durably
    /// and atomically, after checking the per-plugin cap at `now_ms`. Blocking.
    pub fn apply(
        &self,
        plugin: &str,
        kv: &[PluginKvWrite],
        changes: Vec<OfferChange>,
        now_ms: u64,
    ) -> Result<(), ApplyError> {
        let store = self.host.store().ok_or(ApplyError::NoStore)?;
        let _one = lock(&self.writing);
        self.read().check(&changes, now_ms)?;
        store.plugin_apply_with_offers(plugin, kv, &changes)?;
        for change in &changes {
            match change {
                OfferChange::Put(o) => tracing::info!(
                    plugin,
                    offer = o.name(),
                    path = %o.path(),
                    endpoints = o.endpoints().len(),
                    finish_on_accept = o.finish_on_accept(),
                    expires_ms = o.expires_ms(),
                    "bootstrap offer made"
                ),
                OfferChange::Withdraw { name, .. } => {
                    tracing::info!(plugin, offer = %name, "bootstrap offer withdrawn");
                }
            }
        }
        self.registry
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .apply(changes);
        Ok(())
    }

    /// Removes the offers expired at `now_ms` from the store and the registry; returns how
    /// many. Blocking. Offers that cannot be removed from the store stay (and are not
    /// offered: sessions skip expired offers anyway).
    pub fn prune(&self, now_ms: u64) -> usize {
        let _one = lock(&self.writing);
        let expired = self.read().expired(now_ms);
        if expired.is_empty() {
            return 0;
        }
        if let Some(store) = self.host.store()
            && let Err(e) = store.bootstrap_offers_remove(&expired)
        {
            tracing::error!(error = %e, "cannot remove expired bootstrap offers");
            return 0;
        }
        for (plugin, name) in &expired {
            tracing::info!(plugin, offer = %name, "bootstrap offer expired");
        }
        self.registry
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&expired);
        expired.len()
    }
}

impl OfferSource for PluginOffers {
    fn offers_for(&self, endpoint: &str, now_ms: u64) -> Vec<Offer> {
        let registry = self.read();
        if registry.is_empty() {
            return Vec::new();
        }
        registry.applicable(endpoint, now_ms, &mut |plugin| {
            self.host.is_offering(plugin)
        })
    }
}
