//! Bootstrap offers: single resource values that plugins ask the Bootstrap-Server to write
//! first in the sessions it starts (WIT `bootstrap-offer`, issue 8). No I/O here: the
//! registry is a value; the plugin host keeps it durable (`plugins::offers`) and the session
//! manager ([`super::BootstrapSessions`]) reads it through [`OfferSource`] when a session
//! starts.
//!
//! # What a session does with offers
//!
//! ```text
//!   POST /bs?ep=dev   ─────►  offers for dev (not expired), by (plugin, name)
//!                     ◄─────  PUT /o/i/r   one Bootstrap-Write per offer, first
//!   2.04 | 4.xx       ─────►  OfferAnswered (any code); an error does not fail the session
//!                     ◄─────  the configuration's Discover/Delete/Write ... Finish
//!                             (or at once Finish: a 2.xx to an offer with finish-on-accept)
//! ```
//!
//! An offer is kept until withdrawn or expired, so it reaches every device of its endpoint
//! list that bootstraps while it stands, also while its plugin is not running; the session
//! manager never removes one. Its value is checked against the owning plugin's model when the
//! plugin makes it ([`crate::plugins::effects`]), so a session only encodes it.
//!
//! Why the registry is keyed by (plugin, name) and read in that order: a session's requests
//! must not depend on hash order (the same state bootstraps a device the same way twice), and
//! two plugins never collide on a name.

use std::collections::{BTreeMap, BTreeSet};

use steward_objects::{Path, Value};

/// Offers one plugin may hold at once.
pub const MAX_OFFERS_PER_PLUGIN: usize = 64;
/// Endpoint names one offer may list.
pub const MAX_OFFER_ENDPOINTS: usize = 10_000;
/// An offer's name: 1 to this many characters.
pub const MAX_OFFER_NAME_CHARS: usize = 64;
/// An endpoint name an offer lists: 1 to this many bytes (as for the plugins' requests).
pub const MAX_ENDPOINT_BYTES: usize = 255;

/// Why an offer (or a change to a plugin's offers) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    #[error("offer name must be 1 to {MAX_OFFER_NAME_CHARS} characters")]
    Name,
    #[error("offer path {0} is not a resource (/o/i/r)")]
    NotAResource(Path),
    #[error("{0} endpoints listed, at most {MAX_OFFER_ENDPOINTS}")]
    TooManyEndpoints(usize),
    #[error(
        "{0:?} is not an endpoint name (1 to {MAX_ENDPOINT_BYTES} bytes, no control characters)"
    )]
    Endpoint(String),
    #[error("offer expires at {expires_ms} ms, which is not after now ({now_ms} ms)")]
    Expired { expires_ms: u64, now_ms: u64 },
    #[error("plugin {plugin} would hold {count} offers, at most {MAX_OFFERS_PER_PLUGIN}")]
    TooMany { plugin: String, count: usize },
}

/// An offer as a plugin makes it, not yet checked.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOffer {
    pub plugin: String,
    pub name: String,
    pub path: Path,
    pub value: Value,
    /// Empty: every endpoint.
    pub endpoints: Vec<String>,
    pub finish_on_accept: bool,
    /// Unix ms; `None`: until withdrawn.
    pub expires_ms: Option<u64>,
}

impl NewOffer {
    /// Checks the offer's own rules. `now_ms` is given when the offer is being made (it must
    /// not be expired already); a stored offer read back is checked without it (an expired
    /// one is pruned, not refused).
    pub fn check(self, now_ms: Option<u64>) -> Result<Offer, OfferError> {
        let chars = self.name.chars().count();
        if chars == 0 || chars > MAX_OFFER_NAME_CHARS {
            return Err(OfferError::Name);
        }
        if !matches!(self.path, Path::Resource(..)) {
            return Err(OfferError::NotAResource(self.path));
        }
        if self.endpoints.len() > MAX_OFFER_ENDPOINTS {
            return Err(OfferError::TooManyEndpoints(self.endpoints.len()));
        }
        if let Some(bad) = self.endpoints.iter().find(|e| !is_endpoint_name(e)) {
            return Err(OfferError::Endpoint(bad.chars().take(64).collect()));
        }
        if let (Some(expires_ms), Some(now_ms)) = (self.expires_ms, now_ms)
            && expires_ms <= now_ms
        {
            return Err(OfferError::Expired { expires_ms, now_ms });
        }
        Ok(Offer {
            plugin: self.plugin,
            name: self.name,
            path: self.path,
            value: self.value,
            endpoints: self.endpoints.into_iter().collect(),
            finish_on_accept: self.finish_on_accept,
            expires_ms: self.expires_ms,
        })
    }
}

/// An endpoint name as offers list them: what a Bootstrap-Request's `ep` can carry and a
/// plugin's request may name.
pub fn is_endpoint_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_ENDPOINT_BYTES && !name.chars().any(char::is_control)
}

/// A checked offer: its path is a resource, its name and endpoint list are within bounds.
/// Built only by [`NewOffer::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    plugin: String,
    name: String,
    path: Path,
    value: Value,
    endpoints: BTreeSet<String>,
    finish_on_accept: bool,
    expires_ms: Option<u64>,
}

impl Offer {
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Always a [`Path::Resource`].
    pub fn path(&self) -> Path {
        self.path
    }

    pub fn value(&self) -> &Value {
        &self.value
    }

    /// Empty: every endpoint.
    pub fn endpoints(&self) -> &BTreeSet<String> {
        &self.endpoints
    }

    pub fn finish_on_accept(&self) -> bool {
        self.finish_on_accept
    }

    pub fn expires_ms(&self) -> Option<u64> {
        self.expires_ms
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_ms.is_some_and(|at| at <= now_ms)
    }

    /// Whether a session of `endpoint` starting at `now_ms` writes this offer.
    pub fn applies_to(&self, endpoint: &str, now_ms: u64) -> bool {
        !self.is_expired(now_ms) && (self.endpoints.is_empty() || self.endpoints.contains(endpoint))
    }

    fn key(&self) -> (String, String) {
        (self.plugin.clone(), self.name.clone())
    }
}

/// One change to a plugin's offers, as its effects ask for it.
#[derive(Debug, Clone, PartialEq)]
pub enum OfferChange {
    /// Adds the offer, or replaces the plugin's offer of the same name.
    Put(Offer),
    /// Withdraws the plugin's offer of that name; nothing when there is none.
    Withdraw { plugin: String, name: String },
}

impl OfferChange {
    pub fn plugin(&self) -> &str {
        match self {
            OfferChange::Put(o) => o.plugin(),
            OfferChange::Withdraw { plugin, .. } => plugin,
        }
    }
}

/// Where a starting session gets its offers from.
pub trait OfferSource {
    /// The offers a session of `endpoint` starting at `now_ms` writes, in the order it writes
    /// them.
    fn offers_for(&self, endpoint: &str, now_ms: u64) -> Vec<Offer>;
}

/// No offers: sessions as before offers existed.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoOffers;

impl OfferSource for NoOffers {
    fn offers_for(&self, _: &str, _: u64) -> Vec<Offer> {
        Vec::new()
    }
}

/// Every standing offer, by (plugin, name).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OfferRegistry {
    offers: BTreeMap<(String, String), Offer>,
}

impl OfferRegistry {
    pub fn new() -> OfferRegistry {
        OfferRegistry::default()
    }

    /// A registry holding `offers` (read back from the store); a later offer of the same
    /// (plugin, name) replaces an earlier one.
    pub fn from_offers(offers: impl IntoIterator<Item = Offer>) -> OfferRegistry {
        OfferRegistry {
            offers: offers.into_iter().map(|o| (o.key(), o)).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.offers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offers.is_empty()
    }

    pub fn get(&self, plugin: &str, name: &str) -> Option<&Offer> {
        self.offers.get(&(plugin.to_owned(), name.to_owned()))
    }

    /// A plugin's offers by name, expired ones included (until pruned).
    pub fn of_plugin<'a>(&'a self, plugin: &'a str) -> impl Iterator<Item = &'a Offer> + 'a {
        self.offers.values().filter(move |o| o.plugin == plugin)
    }

    /// Every offer, by (plugin, name).
    pub fn iter(&self) -> impl Iterator<Item = &Offer> {
        self.offers.values()
    }

    /// Whether `changes` (one plugin's, in order) keep every plugin they touch within
    /// [`MAX_OFFERS_PER_PLUGIN`] offers that are not expired at `now_ms`. Nothing changes.
    pub fn check(&self, changes: &[OfferChange], now_ms: u64) -> Result<(), OfferError> {
        let mut names: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for change in changes {
            let plugin = change.plugin();
            let held = names.entry(plugin).or_insert_with(|| {
                self.of_plugin(plugin)
                    .filter(|o| !o.is_expired(now_ms))
                    .map(|o| o.name.as_str())
                    .collect()
            });
            match change {
                OfferChange::Put(o) => {
                    held.insert(o.name());
                    if held.len() > MAX_OFFERS_PER_PLUGIN {
                        return Err(OfferError::TooMany {
                            plugin: plugin.to_owned(),
                            count: held.len(),
                        });
                    }
                }
                OfferChange::Withdraw { name, .. } => {
                    held.remove(name.as_str());
                }
            }
        }
        Ok(())
    }

    /// Applies `changes` in order (checked with [`OfferRegistry::check`] first).
    pub fn apply(&mut self, changes: impl IntoIterator<Item = OfferChange>) {
        for change in changes {
            match change {
                OfferChange::Put(o) => {
                    self.offers.insert(o.key(), o);
                }
                OfferChange::Withdraw { plugin, name } => {
                    self.offers.remove(&(plugin, name));
                }
            }
        }
    }

    /// The (plugin, name) of every offer expired at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> Vec<(String, String)> {
        self.offers
            .iter()
            .filter(|(_, o)| o.is_expired(now_ms))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Removes offers by (plugin, name).
    pub fn remove(&mut self, keys: &[(String, String)]) {
        for k in keys {
            self.offers.remove(k);
        }
    }

    /// The offers for a session of `endpoint` at `now_ms` whose plugin `offering` accepts
    /// (loaded and enabled), by (plugin, name).
    pub fn applicable(
        &self,
        endpoint: &str,
        now_ms: u64,
        offering: &mut dyn FnMut(&str) -> bool,
    ) -> Vec<Offer> {
        // Asked once per plugin, not per offer: the answer may take a lock.
        let mut verdicts: BTreeMap<&str, bool> = BTreeMap::new();
        let mut out = Vec::new();
        for o in self.offers.values() {
            if !o.applies_to(endpoint, now_ms) {
                continue;
            }
            let ok = *verdicts
                .entry(o.plugin.as_str())
                .or_insert_with(|| offering(&o.plugin));
            if ok {
                out.push(o.clone());
            }
        }
        out
    }
}

impl OfferSource for OfferRegistry {
    fn offers_for(&self, endpoint: &str, now_ms: u64) -> Vec<Offer> {
        self.applicable(endpoint, now_ms, &mut |_| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(plugin: &str, name: &str, endpoints: &[&str]) -> Offer {
        NewOffer {
            plugin: plugin.into(),
            name: name.into(),
            path: Path::Resource(42799, 0, 1),
            value: Value::String("offered".into()),
            endpoints: endpoints.iter().map(|e| (*e).to_owned()).collect(),
            finish_on_accept: false,
            expires_ms: None,
        }
        .check(Some(0))
        .expect("valid offer")
    }

    fn new(name: &str) -> NewOffer {
        NewOffer {
            plugin: "p".into(),
            name: name.into(),
            path: Path::Resource(42799, 0, 1),
            value: Value::Integer(1),
            endpoints: Vec::new(),
            finish_on_accept: true,
            expires_ms: Some(100),
        }
    }

    #[test]
    fn offers_are_checked() {
        assert!(new("a").check(Some(99)).is_ok());
        assert_eq!(new("").check(None), Err(OfferError::Name));
        assert_eq!(new(&"x".repeat(65)).check(None), Err(OfferError::Name));
        assert!(
            new(&"é".repeat(64)).check(None).is_ok(),
            "characters, not bytes"
        );
        let mut instance = new("a");
        instance.path = Path::Instance(42799, 0);
        assert!(matches!(
            instance.check(None),
            Err(OfferError::NotAResource(_))
        ));
        let mut many = new("a");
        many.endpoints = vec!["e".into(); MAX_OFFER_ENDPOINTS + 1];
        assert_eq!(
            many.check(None),
            Err(OfferError::TooManyEndpoints(MAX_OFFER_ENDPOINTS + 1))
        );
        for bad in ["", "a\nb", &"e".repeat(256)] {
            let mut o = new("a");
            o.endpoints = vec!["ok".into(), bad.into()];
            assert!(
                matches!(o.check(None), Err(OfferError::Endpoint(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            new("a").check(Some(100)),
            Err(OfferError::Expired {
                expires_ms: 100,
                now_ms: 100
            })
        );
        assert!(
            new("a").check(None).is_ok(),
            "stored offers are not refused"
        );
    }

    #[test]
    fn offers_apply_to_their_endpoints_until_they_expire() {
        let all = offer("p", "all", &[]);
        assert!(all.applies_to("anyone", 0));
        let some = offer("p", "some", &["a", "b", "a"]);
        assert_eq!(some.endpoints().len(), 2, "duplicates collapse");
        assert!(some.applies_to("a", 0));
        assert!(!some.applies_to("c", 0));
        let expiring = new("e").check(Some(0)).expect("valid");
        assert!(expiring.applies_to("x", 99));
        assert!(!expiring.applies_to("x", 100));
    }

    #[test]
    fn sessions_get_offers_by_plugin_then_name_and_only_from_offering_plugins() {
        let registry = OfferRegistry::from_offers([
            offer("zeta", "a", &[]),
            offer("alpha", "z", &[]),
            offer("alpha", "b", &["dev"]),
            offer("alpha", "c", &["other"]),
            offer("off", "a", &[]),
        ]);
        let names = |offers: Vec<Offer>| -> Vec<String> {
            offers
                .iter()
                .map(|o| format!("{}/{}", o.plugin(), o.name()))
                .collect()
        };
        assert_eq!(
            names(registry.offers_for("dev", 0)),
            ["alpha/b", "alpha/z", "off/a", "zeta/a"]
        );
        let mut asked = Vec::new();
        let filtered = registry.applicable("dev", 0, &mut |p| {
            asked.push(p.to_owned());
            p != "off"
        });
        assert_eq!(names(filtered), ["alpha/b", "alpha/z", "zeta/a"]);
        assert_eq!(asked, ["alpha", "off", "zeta"], "once per plugin");
        assert!(NoOffers.offers_for("dev", 0).is_empty());
    }

    #[test]
    fn a_plugin_holds_at_most_64_offers() {
        let mut registry = OfferRegistry::new();
        let puts: Vec<OfferChange> = (0..MAX_OFFERS_PER_PLUGIN)
            .map(|i| OfferChange::Put(offer("p", &format!("o{i}"), &[])))
            .collect();
        assert_eq!(registry.check(&puts, 0), Ok(()));
        registry.apply(puts);
        assert_eq!(registry.len(), MAX_OFFERS_PER_PLUGIN);
        // Replacing one is fine; a 65th is not; withdrawing first makes room.
        let replace = [OfferChange::Put(offer("p", "o0", &["x"]))];
        assert_eq!(registry.check(&replace, 0), Ok(()));
        let extra = OfferChange::Put(offer("p", "new", &[]));
        assert!(matches!(
            registry.check(std::slice::from_ref(&extra), 0),
            Err(OfferError::TooMany { count: 65, .. })
        ));
        let withdraw = OfferChange::Withdraw {
            plugin: "p".into(),
            name: "o1".into(),
        };
        assert_eq!(
            registry.check(&[withdraw.clone(), extra.clone()], 0),
            Ok(())
        );
        assert!(
            registry.check(&[extra.clone(), withdraw], 0).is_err(),
            "in order"
        );
        // Other plugins have their own 64.
        assert_eq!(
            registry.check(&[OfferChange::Put(offer("q", "a", &[]))], 0),
            Ok(())
        );
        // Nothing changed by checking.
        assert_eq!(registry.len(), MAX_OFFERS_PER_PLUGIN);
    }

    #[test]
    fn expired_offers_do_not_count_and_are_pruned() {
        let mut registry = OfferRegistry::from_offers([
            new("old").check(None).expect("valid"),
            offer("p", "keep", &[]),
        ]);
        assert_eq!(registry.expired(100), [("p".to_owned(), "old".to_owned())]);
        assert!(registry.expired(99).is_empty());
        let puts: Vec<OfferChange> = (0..MAX_OFFERS_PER_PLUGIN - 1)
            .map(|i| OfferChange::Put(offer("p", &format!("n{i}"), &[])))
            .collect();
        assert!(registry.check(&puts, 99).is_err(), "old still counts at 99");
        assert_eq!(registry.check(&puts, 100), Ok(()));
        let expired = registry.expired(100);
        registry.remove(&expired);
        assert_eq!(registry.len(), 1);
        assert!(registry.get("p", "keep").is_some());
        assert!(registry.offers_for("x", 100).len() == 1);
    }
}
