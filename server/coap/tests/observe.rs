//! RFC 7641 bookkeeping: the observer list of a server (§4) and the freshness and lifetime of
//! an observation at the client (§3).

use std::time::{Duration, Instant};

use proptest::prelude::*;
use steward_coap::message::{Code, Method, Request, Response, encode_uint, option};
use steward_coap::observe::{
    CapExceeded, ClientObserveConfig, FRESHNESS_HORIZON, NotificationDecision,
    ObservationFreshness, ObservationTracker, ObserveConfig, ObserverRegistry, Registration,
    SEQUENCE_MODULUS, is_fresh, next_sequence,
};
use steward_coap::wire::Token;

fn register_request(path: &str) -> Request {
    Request::new(Method::Get)
        .with_path(path)
        .with_option(option::OBSERVE, encode_uint(0))
}

fn tok(n: u64) -> Token {
    Token::from_u64(n)
}

fn notification(observe: u32) -> Response {
    Response::new(Code::CONTENT).with_option(option::OBSERVE, encode_uint(observe))
}

fn accepted(r: &Registration) -> Option<u32> {
    match r {
        Registration::Accepted { observe, .. } => Some(*observe),
        Registration::Ignored(_) => None,
    }
}

fn register(
    reg: &mut ObserverRegistry<u32>,
    peer: u32,
    token: u64,
    path: &str,
    now: Instant,
) -> Registration {
    match reg.register(
        peer,
        tok(token),
        path.to_owned(),
        register_request(path),
        now,
    ) {
        Ok(r) => r,
        Err(e) => panic!("a GET with Observe 0 is a registration: {e}"),
    }
}

// ---- server side --------------------------------------------------------------------------

#[test]
fn same_peer_and_token_replaces_the_entry() {
    let now = Instant::now();
    let mut reg = ObserverRegistry::new(ObserveConfig::default());
    register(&mut reg, 1, 10, "/3/0", now);
    // The same token now observes another resource: one entry, moved (§4.1).
    let r = register(&mut reg, 1, 10, "/3/0/9", now);
    assert!(matches!(
        r,
        Registration::Accepted {
            refreshed: true,
            replaced: None,
            ..
        }
    ));
    assert_eq!(reg.len(), 1);
    assert_eq!(reg.observers("/3/0").count(), 0);
    assert_eq!(reg.observers("/3/0/9").count(), 1);
}

#[test]
fn same_peer_and_resource_replaces_the_older_token() {
    let now = Instant::now();
    let mut reg = ObserverRegistry::new(ObserveConfig::default());
    register(&mut reg, 1, 10, "/3/0", now);
    register(&mut reg, 2, 10, "/3/0", now);
    let r = register(&mut reg, 1, 11, "/3/0", now);
    assert_eq!(
        r,
        Registration::Accepted {
            observe: 0,
            refreshed: false,
            replaced: Some(tok(10)),
        }
    );
    let observers: Vec<(u32, Token)> = reg.observers("/3/0").map(|o| (o.peer, o.token)).collect();
    assert_eq!(
        observers,
        [(2, tok(10)), (1, tok(11))],
        "registration order"
    );
    assert!(reg.next_notification(1, tok(10), now).is_none());
}

#[test]
fn both_replace_rules_at_once() {
    let now = Instant::now();
    let mut reg = ObserverRegistry::new(ObserveConfig::default());
    register(&mut reg, 1, 10, "/a", now);
    register(&mut reg, 1, 11, "/b", now);
    // Token 10 moves to /b, where token 11 was: both old entries go, one new one stays.
    let r = register(&mut reg, 1, 10, "/b", now);
    assert!(matches!(
        r,
        Registration::Accepted {
            refreshed: true,
            replaced: Some(t),
            ..
        } if t == tok(11)
    ));
    assert_eq!(reg.len(), 1);
    assert_eq!(reg.count_for_peer(1), 1);
}

#[test]
fn deregistration() {
    let now = Instant::now();
    let mut reg = ObserverRegistry::new(ObserveConfig::default());
    register(&mut reg, 1, 10, "/a", now);
    register(&mut reg, 1, 11, "/b", now);
    register(&mut reg, 2, 10, "/a", now);
    let gone = reg.deregister(1, tok(10));
    assert_eq!(gone.map(|o| o.resource_key), Some("/a".to_owned()));
    assert!(reg.deregister(1, tok(10)).is_none(), "already gone");
    let gone: Vec<u32> = reg
        .deregister_resource("/a")
        .into_iter()
        .map(|o| o.peer)
        .collect();
    assert_eq!(gone, [2]);
    let gone: Vec<Token> = reg
        .deregister_peer(1)
        .into_iter()
        .map(|o| o.token)
        .collect();
    assert_eq!(gone, [tok(11)]);
    assert!(reg.is_empty());
    assert_eq!(reg.count_for_peer(1), 0);
}

#[test]
fn caps_ignore_the_observe_option() {
    let now = Instant::now();
    let mut reg = ObserverRegistry::new(ObserveConfig {
        max_per_peer: 2,
        max_total: 3,
        ..ObserveConfig::default()
    });
    register(&mut reg, 1, 1, "/a", now);
    register(&mut reg, 1, 2, "/b", now);
    assert_eq!(
        register(&mut reg, 1, 3, "/c", now),
        Registration::Ignored(CapExceeded::PerPeer { limit: 2 })
    );
    // A replacement does not grow the list, so it is allowed at the cap.
    assert!(accepted(&register(&mut reg, 1, 2, "/b", now)).is_some());
    assert!(accepted(&register(&mut reg, 1, 9, "/a", now)).is_some());
    register(&mut reg, 2, 1, "/a", now);
    assert_eq!(
        register(&mut reg, 3, 1, "/a", now),
        Registration::Ignored(CapExceeded::Total { limit: 3 })
    );
    assert_eq!(reg.len(), 3);
    assert!(
        reg.get(3, tok(1)).is_none(),
        "nothing is kept for an ignored request"
    );
    // Room again after a deregistration.
    reg.deregister(2, tok(1));
    assert!(accepted(&register(&mut reg, 3, 1, "/a", now)).is_some());
}

#[test]
fn sequence_numbers_increase_and_wrap() {
    let now = Instant::now();
    let mut reg = ObserverRegistry::new(ObserveConfig {
        initial_sequence: SEQUENCE_MODULUS - 1000,
        ..ObserveConfig::default()
    });
    let first = register(&mut reg, 1, 1, "/a", now);
    assert_eq!(accepted(&first), Some(SEQUENCE_MODULUS - 1000));
    register(&mut reg, 2, 1, "/a", now);
    let mut previous = SEQUENCE_MODULUS - 1000;
    // Walk through the wrap on one observer; the other keeps its own count.
    for i in 1..=1001 {
        let Some(n) = reg.next_notification(1, tok(1), now) else {
            panic!("observer is registered");
        };
        assert_eq!(n.observe, next_sequence(previous));
        assert!(n.observe < SEQUENCE_MODULUS);
        // Consecutive values are always fresh at the client, through the wrap.
        assert!(is_fresh(previous, now, n.observe, now), "at step {i}");
        previous = n.observe;
    }
    assert_eq!(previous, 1);
    assert_eq!(
        reg.next_notification(2, tok(1), now).map(|n| n.observe),
        Some(SEQUENCE_MODULUS - 999)
    );
    // Out-of-range starts are reduced to 24 bits.
    let mut reg = ObserverRegistry::new(ObserveConfig {
        initial_sequence: u32::MAX,
        ..ObserveConfig::default()
    });
    assert_eq!(
        accepted(&register(&mut reg, 1, 1, "/a", now)),
        Some(SEQUENCE_MODULUS - 1)
    );
}

#[test]
fn confirmable_at_least_every_con_interval() {
    let t0 = Instant::now();
    let day = Duration::from_secs(24 * 3600);
    let mut reg = ObserverRegistry::new(ObserveConfig::default());
    register(&mut reg, 1, 1, "/a", t0);
    let con = |reg: &mut ObserverRegistry<u32>, at: Instant| {
        reg.next_notification(1, tok(1), at).map(|n| n.confirmable)
    };
    // The registration itself showed the client is there.
    assert_eq!(con(&mut reg, t0 + Duration::from_secs(60)), Some(false));
    assert_eq!(
        con(&mut reg, t0 + day - Duration::from_secs(1)),
        Some(false)
    );
    assert_eq!(con(&mut reg, t0 + day), Some(true));
    // The clock restarts at the CON.
    assert_eq!(
        con(&mut reg, t0 + day + Duration::from_secs(1)),
        Some(false)
    );
    assert_eq!(con(&mut reg, t0 + 2 * day), Some(true));
    // A CON sent by the application's choice also counts.
    reg.record_confirmable(1, tok(1), t0 + 2 * day + Duration::from_secs(3600));
    assert_eq!(con(&mut reg, t0 + 3 * day), Some(false));
    assert_eq!(
        con(&mut reg, t0 + 3 * day + Duration::from_secs(3600)),
        Some(true)
    );
    // So does a re-registration.
    register(&mut reg, 1, 1, "/a", t0 + 4 * day);
    assert_eq!(
        con(&mut reg, t0 + 4 * day + Duration::from_secs(10)),
        Some(false)
    );
}

#[test]
fn configurable_con_interval() {
    let t0 = Instant::now();
    let mut reg = ObserverRegistry::new(ObserveConfig {
        con_interval: Duration::from_secs(30),
        ..ObserveConfig::default()
    });
    register(&mut reg, 1, 1, "/a", t0);
    let n = reg.next_notification(1, tok(1), t0 + Duration::from_secs(30));
    assert_eq!(n.map(|n| n.confirmable), Some(true));
}

// ---- client side --------------------------------------------------------------------------

#[test]
fn the_128_second_rule() {
    let t0 = Instant::now();
    let mut f = ObservationFreshness::new();
    assert!(f.accept(1000, t0), "the first notification is fresh");
    assert!(!f.accept(999, t0 + Duration::from_secs(5)), "reordered");
    assert!(!f.accept(10, t0 + FRESHNESS_HORIZON), "still within 128 s");
    // The server restarted its sequence; after 128 s anything is newer.
    assert!(f.accept(10, t0 + FRESHNESS_HORIZON + Duration::from_secs(1)));
    assert_eq!(
        f.newest(),
        Some((10, t0 + FRESHNESS_HORIZON + Duration::from_secs(1)))
    );
    // And the new sequence carries on from there.
    assert!(f.accept(11, t0 + FRESHNESS_HORIZON + Duration::from_secs(2)));
    assert!(!f.accept(5, t0 + FRESHNESS_HORIZON + Duration::from_secs(3)));
}

#[test]
fn tracker_delivers_drops_and_rejects() {
    let t0 = Instant::now();
    let mut t = ObservationTracker::new(ClientObserveConfig {
        reregister_margin: Duration::from_secs(5),
    });
    t.start(7u32, tok(1));
    // Unknown tokens, or known tokens from another peer, are Reset (§3.6).
    assert_eq!(
        t.on_notification(7, tok(2), &notification(3), t0),
        NotificationDecision::Reject
    );
    assert_eq!(
        t.on_notification(8, tok(1), &notification(3), t0),
        NotificationDecision::Reject
    );
    assert_eq!(
        t.on_notification(7, tok(1), &notification(SEQUENCE_MODULUS - 2), t0),
        NotificationDecision::Deliver {
            reregister_at: Some(t0 + Duration::from_secs(65)),
        }
    );
    // Across the wrap: 1 is newer than 2^24 - 2.
    let mut with_max_age = notification(1);
    with_max_age.options.set_uint(option::MAX_AGE, 300);
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(
        t.on_notification(7, tok(1), &with_max_age, t1),
        NotificationDecision::Deliver {
            reregister_at: Some(t1 + Duration::from_secs(305)),
        }
    );
    assert_eq!(
        t.on_notification(7, tok(1), &notification(SEQUENCE_MODULUS - 1), t1),
        NotificationDecision::Stale
    );
    assert_eq!(
        t.reregister_deadline(7, tok(1)),
        Some(t1 + Duration::from_secs(305)),
        "a stale notification does not move the deadline"
    );
    assert!(t.cancel(7, tok(1)));
    assert_eq!(
        t.on_notification(7, tok(1), &notification(2), t1),
        NotificationDecision::Reject,
        "cancelled by forgetting: the next notification is Reset"
    );
}

#[test]
fn reregistration_deadlines() {
    let t0 = Instant::now();
    let mut t = ObservationTracker::new(ClientObserveConfig {
        reregister_margin: Duration::from_secs(2),
    });
    assert_eq!(t.poll_timeout(), None);
    t.start(1u32, tok(1));
    t.start(1, tok(2));
    t.start(2, tok(1));
    assert_eq!(
        t.poll_timeout(),
        None,
        "no deadline before the first response"
    );
    let short = |s: u32| {
        let mut n = notification(5);
        n.options.set_uint(option::MAX_AGE, s);
        n
    };
    t.on_notification(1, tok(1), &short(20), t0);
    t.on_notification(1, tok(2), &short(10), t0);
    t.on_notification(2, tok(1), &short(10), t0);
    assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(12)));
    assert!(
        t.due_for_reregistration(t0 + Duration::from_secs(11))
            .is_empty()
    );
    assert_eq!(
        t.due_for_reregistration(t0 + Duration::from_secs(12)),
        [(1, tok(2)), (2, tok(1))],
        "earliest first, then in start order"
    );
    assert!(
        t.due_for_reregistration(t0 + Duration::from_secs(13))
            .is_empty(),
        "reported once"
    );
    assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(22)));
    // Re-registering under the same token keeps the freshness state.
    t.start(1, tok(2));
    assert_eq!(
        t.on_notification(1, tok(2), &short(10), t0 + Duration::from_secs(13)),
        NotificationDecision::Stale
    );
    assert_eq!(
        t.on_notification(
            1,
            tok(2),
            &{
                let mut n = notification(6);
                n.options.set_uint(option::MAX_AGE, 10);
                n
            },
            t0 + Duration::from_secs(13)
        ),
        NotificationDecision::Deliver {
            reregister_at: Some(t0 + Duration::from_secs(25)),
        }
    );
}

#[test]
fn end_to_end_registry_to_tracker() {
    // The server side's numbers are always fresh at the client side, refreshes included.
    let t0 = Instant::now();
    let mut reg = ObserverRegistry::new(ObserveConfig::default());
    let mut client = ObservationTracker::new(ClientObserveConfig::default());
    client.start(1u32, tok(1));
    let first = accepted(&register(&mut reg, 1, 1, "/3/0", t0)).unwrap_or(u32::MAX);
    assert!(matches!(
        client.on_notification(1, tok(1), &notification(first), t0),
        NotificationDecision::Deliver { .. }
    ));
    for i in 0..100u32 {
        let now = t0 + Duration::from_millis(u64::from(i));
        let observe = if i % 10 == 9 {
            client.start(1, tok(1));
            accepted(&register(&mut reg, 1, 1, "/3/0", now)).unwrap_or(u32::MAX)
        } else {
            reg.next_notification(1, tok(1), now)
                .map(|n| n.observe)
                .unwrap_or(u32::MAX)
        };
        assert!(matches!(
            client.on_notification(1, tok(1), &notification(observe), now),
            NotificationDecision::Deliver { .. }
        ));
    }
}

// ---- properties ---------------------------------------------------------------------------

/// Distance from `base` to `v` going forward in 24-bit space.
fn forward(base: u32, v: u32) -> u32 {
    v.wrapping_sub(base) & (SEQUENCE_MODULUS - 1)
}

proptest! {
    /// A server sends an increasing run of values (gaps allowed, anywhere in the 24-bit space,
    /// total span under 2^23); the network reorders and duplicates them within 128 s. The
    /// client accepts an increasing subsequence, and never drops the newest value.
    #[test]
    fn accepted_notifications_increase(
        start in 0..SEQUENCE_MODULUS,
        steps in proptest::collection::vec(1u32..5000, 1..200),
        swaps in proptest::collection::vec((0usize..200, 0usize..200), 0..100),
        dups in proptest::collection::vec(0usize..200, 0..20),
    ) {
        let mut sent = Vec::with_capacity(steps.len() + 1);
        let mut v = start;
        sent.push(v);
        for s in &steps {
            v = (v + s) & (SEQUENCE_MODULUS - 1);
            sent.push(v);
        }
        let newest = v;
        let mut received = sent.clone();
        for &d in &dups {
            if let Some(&x) = received.get(d % sent.len()) {
                received.push(x);
            }
        }
        let n = received.len();
        for &(a, b) in &swaps {
            received.swap(a % n, b % n);
        }

        let t0 = Instant::now();
        let mut f = ObservationFreshness::new();
        let mut accepted = Vec::new();
        for (i, &value) in received.iter().enumerate() {
            // All within 128 s of each other, so only the numbers decide.
            let now = t0 + Duration::from_millis(i as u64);
            if f.accept(value, now) {
                accepted.push(value);
            }
        }
        let first = accepted.first().copied();
        prop_assert!(first.is_some(), "the first notification is always fresh");
        let base = first.unwrap_or_default();
        // Increasing in the modular sense: measured forward from the first accepted value,
        // which is part of a span shorter than 2^23, the accepted values strictly increase.
        let unwrapped: Vec<u32> = accepted.iter().map(|&a| forward(base, a)).collect();
        prop_assert!(unwrapped.windows(2).all(|w| w[0] < w[1]), "{:?}", accepted);
        prop_assert!(accepted.windows(2).all(|w| is_fresh(w[0], t0, w[1], t0)));
        prop_assert_eq!(accepted.last().copied(), Some(newest));
    }

    /// The rule is antisymmetric for distinct values away from the half-way point: of two
    /// notifications arriving together, exactly one order is fresh.
    #[test]
    fn exactly_one_order_is_fresh(a in 0..SEQUENCE_MODULUS, b in 0..SEQUENCE_MODULUS) {
        let t = Instant::now();
        let half = forward(a, b) == SEQUENCE_MODULUS / 2;
        if a == b || half {
            prop_assert!(!is_fresh(a, t, b, t) && !is_fresh(b, t, a, t));
        } else {
            prop_assert!(is_fresh(a, t, b, t) != is_fresh(b, t, a, t));
        }
    }
}
