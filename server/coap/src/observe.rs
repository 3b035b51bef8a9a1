//! Observing resources (RFC 7641), on both sides, as pure bookkeeping: no I/O, no clock, no
//! message IDs. The endpoint ([`crate::endpoint`]) owns the exchanges and asks this module what
//! to do.
//!
//! # Server side: [`ObserverRegistry`]
//!
//! In LwM2M the *device* is the CoAP server of an observation (the simulated clients use this
//! side), and the Steward server observes it. The registry keeps the list of observers of §4.1,
//! keyed by peer and token:
//!
//! - a GET/FETCH with Observe = 0 registers ([`ObserverRegistry::register`]); an entry with the
//!   same peer and token is replaced, not duplicated (§4.1), and so is an entry of the same peer
//!   for the same resource (a client observes a resource once, §3.1: the newer request wins);
//! - Observe = 1, or a Reset in answer to a notification (§3.6, §4.5), deregisters;
//! - each entry has its own 24-bit sequence of Observe values (§4.4), which keeps increasing
//!   when the same peer and token re-register, so the client's freshness check (§3.4) never sees
//!   it go backwards;
//! - a server that sends non-confirmable notifications must send a confirmable one from time to
//!   time to learn whether the client is still there (§4.5); by default at least every 24 hours,
//!   as the RFC suggests;
//! - observers are capped per peer and in total. Over a cap the registration is *ignored*: the
//!   request is served as a plain GET, without Observe in the response (§4.1 allows this, and
//!   it tells the client that it is not on the list, §3.1). The decision is made before any
//!   state is kept (see quinn's `Incoming`).
//!
//! # Client side: [`ObservationTracker`], [`ObservationFreshness`]
//!
//! The Steward server observes devices. For each observation it keeps the Observe value and
//! local arrival time of the newest notification, drops notifications that are older (§3.4),
//! ends the observation on an error notification or one without Observe (§3.2, §3.1), tells the
//! endpoint to Reset notifications for tokens it does not know (§3.6, RFC 7252 §5.3.2), and
//! computes when to re-register because the last notification's Max-Age ran out (§3.3.1).
//!
//! Nothing here iterates a hash map in a way a caller can see: lists come back in registration
//! order, so runs are reproducible.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use crate::message::{Method, Options, Request, Response, option};
use crate::wire::Token;

/// Observe = 0 in a GET or FETCH: add me to the list (§2).
pub const REGISTER: u32 = 0;
/// Observe = 1 in a GET or FETCH: remove me from the list (§2, §3.6).
pub const DEREGISTER: u32 = 1;
/// Observe values in notifications are 24-bit sequence numbers (§3.4, §4.4).
pub const SEQUENCE_MODULUS: u32 = 1 << 24;
const SEQUENCE_MASK: u32 = SEQUENCE_MODULUS - 1;
const SEQUENCE_HALF: u32 = 1 << 23;
/// After this long a notification is fresh whatever its number (§3.4): by then the server may
/// have wrapped or restarted its sequence, and reordering in the network is assumed shorter.
pub const FRESHNESS_HORIZON: Duration = Duration::from_secs(128);
/// Max-Age when a notification carries none (RFC 7252 §5.10.5).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(60);
/// How long a server may send only non-confirmable notifications (§4.5 suggests 24 hours).
pub const DEFAULT_CON_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// What a request asks of the observer list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObserveRequest {
    Register,
    Deregister,
}

/// Whether `request` registers or deregisters an observation. Only GET and FETCH can observe
/// (§2, RFC 8132 §2.4); other Observe values, and values longer than three bytes, have no
/// meaning in a request, so the request is then served as if it had no Observe option.
pub fn observe_request(request: &Request) -> Option<ObserveRequest> {
    if !matches!(request.method, Method::Get | Method::Fetch) {
        return None;
    }
    match request.options.observe()? {
        REGISTER => Some(ObserveRequest::Register),
        DEREGISTER => Some(ObserveRequest::Deregister),
        _ => None,
    }
}

/// Why the registry refused to do what it was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObserveError {
    /// API misuse: only a GET or FETCH with Observe = 0 registers.
    #[error("{method} request with Observe {observe:?} is not an observe registration")]
    NotARegistration {
        method: Method,
        observe: Option<u32>,
    },
}

/// Limits of a server's observer list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObserveConfig {
    /// Observations one peer may hold at once.
    pub max_per_peer: usize,
    /// Observations all peers together may hold.
    pub max_total: usize,
    /// The longest run of time in which every notification to an observer may be NON.
    pub con_interval: Duration,
    /// The Observe value of a new registration's first response (taken modulo 2^24). Any
    /// start will do (§4.4); the setting lets tests reach the wrap without 2^24 notifications.
    pub initial_sequence: u32,
}

impl Default for ObserveConfig {
    fn default() -> ObserveConfig {
        ObserveConfig {
            // An LwM2M server typically observes a handful of objects on a device; a simulated
            // device with a few servers stays far below this.
            max_per_peer: 64,
            max_total: 4096,
            con_interval: DEFAULT_CON_INTERVAL,
            initial_sequence: 0,
        }
    }
}

/// One entry of the list of observers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observer<P> {
    pub peer: P,
    pub token: Token,
    /// What the application observes, in its own terms (for LwM2M the object path plus
    /// anything that changes the representation, such as the Accept format).
    pub resource_key: String,
    /// The registering request; notifications are its response, re-run (§4.2).
    pub request: Request,
}

/// The outcome of a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// The peer is on the list: answer with Observe = `observe` in the response.
    Accepted {
        observe: u32,
        /// The same peer and token were already on the list; the entry was updated (§4.1).
        refreshed: bool,
        /// Another token of the same peer observed the same resource; that entry is gone and
        /// its notifications stop.
        replaced: Option<Token>,
    },
    /// Over a cap: serve the request as a plain GET or FETCH, without Observe (§4.1).
    Ignored(CapExceeded),
}

/// Which cap refused a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapExceeded {
    PerPeer { limit: usize },
    Total { limit: usize },
}

/// What the next notification to an observer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notification {
    /// The Observe value.
    pub observe: u32,
    /// The notification must be CON: no CON has gone to this observer for
    /// [`ObserveConfig::con_interval`] (§4.5). The endpoint may also send CON when this is
    /// false; it then calls [`ObserverRegistry::record_confirmable`].
    pub confirmable: bool,
}

#[derive(Debug, Clone)]
struct Entry<P> {
    observer: Observer<P>,
    sequence: u32,
    /// When the observer last proved it is there: its registration, or a CON notification (if
    /// that CON is not acknowledged the endpoint deregisters, §4.5, so counting it at send time
    /// is the same as counting its ACK).
    last_con: Instant,
    /// Registration order, so that lists come back in a reproducible order.
    serial: u64,
}

/// The list of observers of a CoAP server (§4.1), keyed by peer and token.
#[derive(Debug, Clone)]
pub struct ObserverRegistry<P> {
    config: ObserveConfig,
    entries: HashMap<(P, Token), Entry<P>>,
    /// Keys of the entries observing a resource, in registration order.
    by_resource: HashMap<String, Vec<(P, Token)>>,
    per_peer: HashMap<P, usize>,
    next_serial: u64,
}

impl<P: Copy + Eq + Hash> ObserverRegistry<P> {
    pub fn new(config: ObserveConfig) -> ObserverRegistry<P> {
        ObserverRegistry {
            config,
            entries: HashMap::new(),
            by_resource: HashMap::new(),
            per_peer: HashMap::new(),
            next_serial: 0,
        }
    }

    pub fn config(&self) -> &ObserveConfig {
        &self.config
    }

    /// Handles a GET or FETCH with Observe = 0 (§4.1). `now` counts as a sign of life of the
    /// observer for the CON rule (§4.5).
    pub fn register(
        &mut self,
        peer: P,
        token: Token,
        resource_key: String,
        request: Request,
        now: Instant,
    ) -> Result<Registration, ObserveError> {
        if observe_request(&request) != Some(ObserveRequest::Register) {
            return Err(ObserveError::NotARegistration {
                method: request.method,
                observe: request.options.observe(),
            });
        }

        // The same peer and token: update in place, and keep the sequence going so the
        // client, whose freshness state is per token, keeps accepting our numbers.
        let previous = self.remove(&(peer, token));
        // The same peer on the same resource under another token: the newer request wins.
        let other = self
            .by_resource
            .get(&resource_key)
            .and_then(|keys| keys.iter().find(|(p, _)| *p == peer).copied());
        let replaced = other
            .and_then(|key| self.remove(&key))
            .map(|e| e.observer.token);

        if previous.is_none() && replaced.is_none() {
            // Nothing was freed, so the list grows by one: check the caps first.
            let of_peer = self.per_peer.get(&peer).copied().unwrap_or(0);
            if of_peer >= self.config.max_per_peer {
                return Ok(Registration::Ignored(CapExceeded::PerPeer {
                    limit: self.config.max_per_peer,
                }));
            }
            if self.entries.len() >= self.config.max_total {
                return Ok(Registration::Ignored(CapExceeded::Total {
                    limit: self.config.max_total,
                }));
            }
        }

        let sequence = match &previous {
            Some(e) => next_sequence(e.sequence),
            None => self.config.initial_sequence & SEQUENCE_MASK,
        };
        let serial = self.next_serial;
        self.next_serial += 1;
        self.insert(Entry {
            observer: Observer {
                peer,
                token,
                resource_key,
                request,
            },
            sequence,
            last_con: now,
            serial,
        });
        Ok(Registration::Accepted {
            observe: sequence,
            refreshed: previous.is_some(),
            replaced,
        })
    }

    /// Removes an observer: it sent Observe = 1 (§3.6), reset a notification (§4.5), did not
    /// acknowledge a CON notification (§4.5), or the application ended the observation with a
    /// final non-2.xx notification (§4.2).
    pub fn deregister(&mut self, peer: P, token: Token) -> Option<Observer<P>> {
        self.remove(&(peer, token)).map(|e| e.observer)
    }

    /// Removes every observation of a peer (its session is gone), in registration order.
    pub fn deregister_peer(&mut self, peer: P) -> Vec<Observer<P>> {
        let keys: Vec<(P, Token)> = self
            .entries
            .keys()
            .filter(|(p, _)| *p == peer)
            .copied()
            .collect();
        self.remove_all(keys)
    }

    /// Removes every observation of a resource (it was deleted: the endpoint sends each
    /// observer a final 4.04, §3.2), in registration order.
    pub fn deregister_resource(&mut self, resource_key: &str) -> Vec<Observer<P>> {
        let keys = self
            .by_resource
            .get(resource_key)
            .cloned()
            .unwrap_or_default();
        self.remove_all(keys)
    }

    /// The observers of a resource, in registration order.
    pub fn observers(&self, resource_key: &str) -> impl Iterator<Item = &Observer<P>> {
        self.by_resource
            .get(resource_key)
            .into_iter()
            .flatten()
            .filter_map(|key| self.entries.get(key))
            .map(|e| &e.observer)
    }

    pub fn get(&self, peer: P, token: Token) -> Option<&Observer<P>> {
        self.entries.get(&(peer, token)).map(|e| &e.observer)
    }

    /// The Observe value and message type of the next notification to an observer; `None` if
    /// it is not on the list. Each call takes a new number (§4.4): call it once per
    /// notification actually sent.
    pub fn next_notification(
        &mut self,
        peer: P,
        token: Token,
        now: Instant,
    ) -> Option<Notification> {
        let interval = self.config.con_interval;
        let entry = self.entries.get_mut(&(peer, token))?;
        entry.sequence = next_sequence(entry.sequence);
        let confirmable = now.saturating_duration_since(entry.last_con) >= interval;
        if confirmable {
            entry.last_con = now;
        }
        Some(Notification {
            observe: entry.sequence,
            confirmable,
        })
    }

    /// The endpoint sent a CON notification of its own accord: the 24-hour clock restarts.
    pub fn record_confirmable(&mut self, peer: P, token: Token, now: Instant) {
        if let Some(entry) = self.entries.get_mut(&(peer, token)) {
            entry.last_con = now;
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn count_for_peer(&self, peer: P) -> usize {
        self.per_peer.get(&peer).copied().unwrap_or(0)
    }

    fn insert(&mut self, entry: Entry<P>) {
        let key = (entry.observer.peer, entry.observer.token);
        self.by_resource
            .entry(entry.observer.resource_key.clone())
            .or_default()
            .push(key);
        *self.per_peer.entry(key.0).or_default() += 1;
        self.entries.insert(key, entry);
    }

    fn remove(&mut self, key: &(P, Token)) -> Option<Entry<P>> {
        let entry = self.entries.remove(key)?;
        if let Some(keys) = self.by_resource.get_mut(&entry.observer.resource_key) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.by_resource.remove(&entry.observer.resource_key);
            }
        }
        if let Some(count) = self.per_peer.get_mut(&key.0) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_peer.remove(&key.0);
            }
        }
        Some(entry)
    }

    fn remove_all(&mut self, keys: Vec<(P, Token)>) -> Vec<Observer<P>> {
        let mut removed: Vec<Entry<P>> = keys.iter().filter_map(|k| self.remove(k)).collect();
        removed.sort_by_key(|e| e.serial);
        removed.into_iter().map(|e| e.observer).collect()
    }
}

/// The Observe value after `v`, modulo 2^24.
pub const fn next_sequence(v: u32) -> u32 {
    v.wrapping_add(1) & SEQUENCE_MASK
}

/// The freshness rule of §3.4: is a notification `(v2, t2)` newer than the newest one so far,
/// `(v1, t1)`? Values are compared as 24-bit serial numbers; after [`FRESHNESS_HORIZON`] any
/// value is newer. Times are the client's local arrival times.
pub fn is_fresh(v1: u32, t1: Instant, v2: u32, t2: Instant) -> bool {
    let (v1, v2) = (v1 & SEQUENCE_MASK, v2 & SEQUENCE_MASK);
    (v1 < v2 && v2 - v1 < SEQUENCE_HALF)
        || (v1 > v2 && v1 - v2 > SEQUENCE_HALF)
        || t2.saturating_duration_since(t1) > FRESHNESS_HORIZON
}

/// The newest notification of one observation, for the freshness rule (§3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ObservationFreshness {
    newest: Option<(u32, Instant)>,
}

impl ObservationFreshness {
    pub fn new() -> ObservationFreshness {
        ObservationFreshness::default()
    }

    /// Whether a notification with Observe `observe` arriving at `now` is fresh, without
    /// recording it. The first one always is.
    pub fn is_fresh(&self, observe: u32, now: Instant) -> bool {
        match self.newest {
            None => true,
            Some((v1, t1)) => is_fresh(v1, t1, observe, now),
        }
    }

    /// Records the notification if it is fresh and says whether it was; a stale one must not
    /// replace the representation the client holds (§3.4).
    pub fn accept(&mut self, observe: u32, now: Instant) -> bool {
        let fresh = self.is_fresh(observe, now);
        if fresh {
            self.newest = Some((observe & SEQUENCE_MASK, now));
        }
        fresh
    }

    /// The Observe value and arrival time of the newest notification.
    pub fn newest(&self) -> Option<(u32, Instant)> {
        self.newest
    }
}

/// Settings of the observing side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientObserveConfig {
    /// Added to the Max-Age of the last notification before re-registering (§3.3.1), so that a
    /// notification sent just as the old one expires, and delayed a little, is not raced by the
    /// re-registration.
    pub reregister_margin: Duration,
}

impl Default for ClientObserveConfig {
    fn default() -> ClientObserveConfig {
        ClientObserveConfig {
            reregister_margin: Duration::from_secs(5),
        }
    }
}

/// What the endpoint does with a response that matches, or claims to be, a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationDecision {
    /// Fresh: hand it to the application. If no newer notification arrives by
    /// `reregister_at`, re-register (§3.3.1); `None` when the deadline is beyond the clock.
    Deliver { reregister_at: Option<Instant> },
    /// Older than one already delivered (§3.4): drop it. A CON is still acknowledged: the
    /// client still wants the observation.
    Stale,
    /// The observation is over (an error code, §3.2, or no Observe option, §3.1/§4.2): hand
    /// the response to the application as the final one; the token is forgotten.
    Ended,
    /// No observation has this token (never had, or cancelled by forgetting, §3.6): answer a
    /// CON with Reset, and a NON may be Reset too so that the server stops (RFC 7252 §5.3.2,
    /// RFC 7641 §3.6).
    Reject,
}

#[derive(Debug, Clone)]
struct ClientObservation {
    freshness: ObservationFreshness,
    reregister_at: Option<Instant>,
    serial: u64,
}

/// The observations a client holds, keyed by peer and token.
#[derive(Debug, Clone)]
pub struct ObservationTracker<P> {
    config: ClientObserveConfig,
    observations: HashMap<(P, Token), ClientObservation>,
    next_serial: u64,
}

impl<P: Copy + Eq + Hash> ObservationTracker<P> {
    pub fn new(config: ClientObserveConfig) -> ObservationTracker<P> {
        ObservationTracker {
            config,
            observations: HashMap::new(),
            next_serial: 0,
        }
    }

    /// The endpoint sent a GET/FETCH with Observe = 0 under `token`. Re-registering under the
    /// same token (§3.3.1) keeps the freshness state: the server's numbers go on from where
    /// they were, and a server that lost them is covered by the 128-second rule. The
    /// re-registration deadline is cleared until the response arrives; if none does, the
    /// endpoint's request timeout ends the observation with [`ObservationTracker::cancel`].
    pub fn start(&mut self, peer: P, token: Token) {
        let serial = self.next_serial;
        match self.observations.get_mut(&(peer, token)) {
            Some(o) => o.reregister_at = None,
            None => {
                self.next_serial += 1;
                self.observations.insert(
                    (peer, token),
                    ClientObservation {
                        freshness: ObservationFreshness::new(),
                        reregister_at: None,
                        serial,
                    },
                );
            }
        }
    }

    /// Classifies the response to the registration or a later notification.
    pub fn on_notification(
        &mut self,
        peer: P,
        token: Token,
        response: &Response,
        now: Instant,
    ) -> NotificationDecision {
        let key = (peer, token);
        let Some(observation) = self.observations.get_mut(&key) else {
            return NotificationDecision::Reject;
        };
        let observe = match response.options.observe() {
            Some(v) if response.code.is_success() => v,
            _ => {
                self.observations.remove(&key);
                return NotificationDecision::Ended;
            }
        };
        if !observation.freshness.accept(observe, now) {
            return NotificationDecision::Stale;
        }
        let wait = max_age(&response.options).saturating_add(self.config.reregister_margin);
        observation.reregister_at = now.checked_add(wait);
        NotificationDecision::Deliver {
            reregister_at: observation.reregister_at,
        }
    }

    /// Stops tracking an observation (the application cancelled it). The endpoint either sends
    /// a GET with Observe = 1 or lets the next notification be Reset (§3.6).
    pub fn cancel(&mut self, peer: P, token: Token) -> bool {
        self.observations.remove(&(peer, token)).is_some()
    }

    pub fn contains(&self, peer: P, token: Token) -> bool {
        self.observations.contains_key(&(peer, token))
    }

    pub fn freshness(&self, peer: P, token: Token) -> Option<&ObservationFreshness> {
        self.observations.get(&(peer, token)).map(|o| &o.freshness)
    }

    pub fn reregister_deadline(&self, peer: P, token: Token) -> Option<Instant> {
        self.observations
            .get(&(peer, token))
            .and_then(|o| o.reregister_at)
    }

    /// The earliest re-registration deadline, for the endpoint's timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.observations
            .values()
            .filter_map(|o| o.reregister_at)
            .min()
    }

    /// Observations whose deadline has passed, earliest first (ties in start order). Each is
    /// reported once: its deadline is cleared until [`ObservationTracker::start`] is called
    /// again and a response arrives.
    pub fn due_for_reregistration(&mut self, now: Instant) -> Vec<(P, Token)> {
        let mut due: Vec<(Instant, u64, (P, Token))> = self
            .observations
            .iter_mut()
            .filter_map(|(key, o)| match o.reregister_at {
                Some(at) if at <= now => {
                    o.reregister_at = None;
                    Some((at, o.serial, *key))
                }
                _ => None,
            })
            .collect();
        due.sort_by_key(|(at, serial, _)| (*at, *serial));
        due.into_iter().map(|(_, _, key)| key).collect()
    }

    pub fn len(&self) -> usize {
        self.observations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.observations.is_empty()
    }
}

/// The Max-Age of a response (RFC 7252 §5.10.5), 60 s when absent or unreadable.
fn max_age(options: &Options) -> Duration {
    options
        .get_uint(option::MAX_AGE)
        .map(|s| Duration::from_secs(u64::from(s)))
        .unwrap_or(DEFAULT_MAX_AGE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Code, encode_uint};

    fn get_observe(path: &str, observe: u32) -> Request {
        Request::new(Method::Get)
            .with_path(path)
            .with_option(option::OBSERVE, encode_uint(observe))
    }

    fn tok(n: u8) -> Token {
        Token::new(&[n]).unwrap_or_default()
    }

    #[test]
    fn requests_are_classified() {
        assert_eq!(
            observe_request(&get_observe("/3/0", 0)),
            Some(ObserveRequest::Register)
        );
        assert_eq!(
            observe_request(&get_observe("/3/0", 1)),
            Some(ObserveRequest::Deregister)
        );
        assert_eq!(observe_request(&get_observe("/3/0", 2)), None);
        assert_eq!(observe_request(&Request::new(Method::Get)), None);
        let put = Request::new(Method::Put).with_option(option::OBSERVE, vec![]);
        assert_eq!(observe_request(&put), None);
        let fetch = Request::new(Method::Fetch).with_option(option::OBSERVE, vec![]);
        assert_eq!(observe_request(&fetch), Some(ObserveRequest::Register));
        let long = Request::new(Method::Get).with_option(option::OBSERVE, vec![0, 0, 0, 0]);
        assert_eq!(observe_request(&long), None, "Observe is at most 3 bytes");
    }

    #[test]
    fn register_rejects_non_registrations() {
        let mut r = ObserverRegistry::<u8>::new(ObserveConfig::default());
        let now = Instant::now();
        let err = r.register(1, tok(1), "/3/0".into(), get_observe("/3/0", 1), now);
        assert!(matches!(err, Err(ObserveError::NotARegistration { .. })));
        assert!(r.is_empty());
    }

    #[test]
    fn sequence_wraps_at_24_bits() {
        assert_eq!(next_sequence(SEQUENCE_MODULUS - 1), 0);
        assert_eq!(next_sequence(5), 6);
    }

    #[test]
    fn freshness_rule_edges() {
        let t = Instant::now();
        assert!(is_fresh(1, t, 2, t));
        assert!(!is_fresh(2, t, 1, t));
        assert!(!is_fresh(7, t, 7, t), "a duplicate is not fresh");
        assert!(is_fresh(0, t, SEQUENCE_HALF - 1, t));
        assert!(
            !is_fresh(0, t, SEQUENCE_HALF, t),
            "exactly half way is ambiguous: stale"
        );
        assert!(!is_fresh(SEQUENCE_HALF, t, 0, t));
        assert!(is_fresh(SEQUENCE_HALF + 1, t, 0, t));
        assert!(is_fresh(SEQUENCE_MODULUS - 1, t, 0, t), "wrap");
        assert!(!is_fresh(0, t, SEQUENCE_MODULUS - 1, t));
        let later = t + FRESHNESS_HORIZON;
        assert!(!is_fresh(9, t, 3, later), "128 s exactly is not yet enough");
        assert!(is_fresh(9, t, 3, later + Duration::from_millis(1)));
    }

    #[test]
    fn refresh_keeps_the_sequence_going() {
        let mut r = ObserverRegistry::<u8>::new(ObserveConfig::default());
        let now = Instant::now();
        let first = r.register(1, tok(1), "/3/0".into(), get_observe("/3/0", 0), now);
        assert_eq!(
            first,
            Ok(Registration::Accepted {
                observe: 0,
                refreshed: false,
                replaced: None
            })
        );
        let n = r.next_notification(1, tok(1), now).map(|n| n.observe);
        assert_eq!(n, Some(1));
        let again = r.register(1, tok(1), "/3/0".into(), get_observe("/3/0", 0), now);
        assert_eq!(
            again,
            Ok(Registration::Accepted {
                observe: 2,
                refreshed: true,
                replaced: None
            })
        );
        assert_eq!(r.len(), 1);
        assert_eq!(r.count_for_peer(1), 1);
    }

    #[test]
    fn tracker_ends_on_errors_and_missing_observe() {
        let mut t = ObservationTracker::<u8>::new(ClientObserveConfig::default());
        let now = Instant::now();
        t.start(1, tok(1));
        let not_found = Response::new(Code::NOT_FOUND);
        assert_eq!(
            t.on_notification(1, tok(1), &not_found, now),
            NotificationDecision::Ended
        );
        assert!(!t.contains(1, tok(1)));
        t.start(1, tok(2));
        let plain = Response::new(Code::CONTENT);
        assert_eq!(
            t.on_notification(1, tok(2), &plain, now),
            NotificationDecision::Ended,
            "2.05 without Observe: the server did not add us (§3.1)"
        );
        assert!(t.is_empty());
    }

    #[test]
    fn max_age_defaults_to_60_seconds() {
        assert_eq!(max_age(&Options::new()), DEFAULT_MAX_AGE);
        let mut o = Options::new();
        o.set_uint(option::MAX_AGE, 300);
        assert_eq!(max_age(&o), Duration::from_secs(300));
    }
}
