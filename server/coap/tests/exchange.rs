//! The exchange layer in simulated time: piggybacked and separate responses, deduplication,
//! retransmission and back-off, NSTART, resets, observe notifications, hostile datagrams.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use steward_coap::endpoint::{Config, Endpoint, Event, Failure};
use steward_coap::message::{Code, Method, Request, Response, option};
use steward_coap::sim::{Link, Pair, Side};
use steward_coap::wire::{self, Kind, Message, Token, Type};

fn get(path: &str) -> Request {
    Request::new(Method::Get).with_path(path)
}

fn echo_path(req: &Request) -> Response {
    Response::new(Code::CONTENT).with_payload(0, req.path_string().into_bytes())
}

const MINUTES: Duration = Duration::from_secs(600);

#[test]
fn piggybacked_response_takes_two_datagrams() {
    let mut pair = Pair::new(Link::perfect(), 1);
    let id = pair.client_request(get("/3/0/0"), true);
    let response = pair.run_until_response(id, MINUTES, echo_path);
    assert_eq!(response.map(|r| r.payload), Some(b"/3/0/0".to_vec()));
    assert_eq!(
        pair.stats.sent, 2,
        "CON request + ACK carrying the response"
    );
}

#[test]
fn late_answers_go_as_separate_confirmable_responses() {
    let mut pair = Pair::new(Link::perfect(), 2);
    let id = pair.client_request(get("/slow"), true);
    // Let the server sit on the request past `separate_response_after`.
    pair.run_for(Duration::from_secs(3));
    let incoming = pair
        .server_events
        .iter()
        .find_map(|e| match e {
            Event::Request { id, .. } => Some(*id),
            _ => None,
        })
        .expect("server saw the request");
    pair.server_events.clear();
    let early = pair.take_client_outcome(id);
    assert!(early.is_none(), "no response yet: {early:?}");
    let now = pair.now;
    pair.server
        .respond(now, incoming, Response::new(Code::CHANGED))
        .expect("still pending");
    pair.run_for(Duration::from_secs(1));
    assert_eq!(
        pair.take_client_outcome(id).map(|r| r.map(|r| r.code)),
        Some(Ok(Code::CHANGED))
    );
    // Request, empty ACK, CON response, ACK of the response: nothing retransmitted.
    assert_eq!(pair.stats.sent, 4);
    assert_eq!(pair.client.stats().retransmissions, 0);
    assert_eq!(pair.server.stats().retransmissions, 0);
    assert_eq!(
        pair.server
            .respond(now, incoming, Response::new(Code::CHANGED)),
        Err(steward_coap::endpoint::RespondError::NotPending),
        "a request is answered once"
    );
}

#[test]
fn unanswered_requests_back_off_then_time_out() {
    let mut pair = Pair::new(Link::lossy(1.0), 3);
    let start = pair.now;
    let id = pair.client_request(get("/void"), true);
    let mut outcome = None;
    while outcome.is_none() && pair.step() {
        outcome = pair.take_client_outcome(id);
    }
    assert_eq!(outcome, Some(Err(Failure::Timeout)));
    assert_eq!(pair.client.stats().retransmissions, 4, "MAX_RETRANSMIT");
    // RFC 7252 §4.8.2: the last retransmission times out between MAX_TRANSMIT_SPAN + its own
    // timeout bounds: [2 s × (1+2+4+8+16), 3 s × (1+2+4+8+16)] = [62 s, 93 s].
    let waited = pair.now - start;
    assert!(
        waited >= Duration::from_secs(62) && waited <= Duration::from_secs(93),
        "{waited:?}"
    );
}

#[test]
fn nstart_one_sends_requests_one_at_a_time() {
    let mut pair = Pair::new(Link::perfect(), 4);
    let ids: Vec<_> = (0..3)
        .map(|i| pair.client_request(get(&format!("/r/{i}")), true))
        .collect();
    let mut seen_order = Vec::new();
    let mut max_in_server_queue = 0;
    for _ in 0..100 {
        let pending = pair
            .server_events
            .iter()
            .filter(|e| matches!(e, Event::Request { .. }))
            .count();
        max_in_server_queue = max_in_server_queue.max(pending);
        pair.answer_server_requests(&mut |req: &Request| {
            seen_order.push(req.path_string());
            echo_path(req)
        });
        if !pair.step() {
            break;
        }
    }
    assert_eq!(seen_order, ["/r/0", "/r/1", "/r/2"]);
    assert_eq!(max_in_server_queue, 1, "never two requests outstanding");
    for id in ids {
        assert!(matches!(pair.take_client_outcome(id), Some(Ok(_))));
    }
}

#[test]
fn duplicates_are_answered_from_the_cache_not_the_handler() {
    let mut server: Endpoint<u8> = Endpoint::new(Config::default());
    let now = std::time::Instant::now();
    let msg = Message {
        mtype: Type::Con,
        kind: Kind::Request(Method::Get),
        mid: 77,
        token: Token::new(&[9, 9]).expect("token"),
        options: get("/3/0/9").options,
        payload: vec![],
    };
    let bytes = wire::encode(&msg).expect("encodes");
    server.handle(now, 1, &bytes);
    let Some(Event::Request { id, .. }) = server.poll_event() else {
        panic!("request event");
    };
    server
        .respond(
            now,
            id,
            Response::new(Code::CONTENT).with_payload(0, b"100".to_vec()),
        )
        .expect("pending");
    let first = server.poll_transmit().expect("ACK with response").datagram;
    server.handle(now + Duration::from_secs(1), 1, &bytes);
    assert_eq!(
        server.poll_event(),
        None,
        "the handler does not see the duplicate"
    );
    assert_eq!(server.poll_transmit().map(|t| t.datagram), Some(first));
    assert_eq!(server.stats().duplicates, 1);
    // After EXCHANGE_LIFETIME the message ID is forgotten and the peer's state is gone.
    server.handle_timeout(now + Duration::from_secs(248));
    assert_eq!(server.peer_count(), 0);
}

#[test]
fn resets_pings_and_unknown_critical_options() {
    let mut ep: Endpoint<u8> = Endpoint::new(Config::default());
    let now = std::time::Instant::now();
    let decode = |t: Option<steward_coap::endpoint::Transmit<u8>>| {
        wire::decode(&t.expect("a reply").datagram).expect("valid reply")
    };
    // A CON ping gets a Reset.
    ep.handle(now, 1, &[0x40, 0x00, 0x12, 0x34]);
    let reply = decode(ep.poll_transmit());
    assert_eq!((reply.mtype, reply.mid), (Type::Rst, 0x1234));
    // A response nobody asked for gets a Reset.
    let stray = Message {
        mtype: Type::Con,
        kind: Kind::Response(Code::CONTENT),
        mid: 5,
        token: Token::new(&[1]).expect("token"),
        options: Default::default(),
        payload: b"x".to_vec(),
    };
    ep.handle(now, 1, &wire::encode(&stray).expect("encodes"));
    assert_eq!(decode(ep.poll_transmit()).mtype, Type::Rst);
    // An unknown critical option: 4.02 for a CON, a Reset for a NON.
    let mut req = Message {
        mtype: Type::Con,
        kind: Kind::Request(Method::Get),
        mid: 6,
        token: Token::new(&[2]).expect("token"),
        options: get("/x").with_option(65001, vec![1]).options,
        payload: vec![],
    };
    ep.handle(now, 1, &wire::encode(&req).expect("encodes"));
    let reply = decode(ep.poll_transmit());
    assert_eq!(
        (reply.mtype, reply.kind),
        (Type::Ack, Kind::Response(Code::BAD_OPTION))
    );
    req.mtype = Type::Non;
    req.mid = 7;
    ep.handle(now, 1, &wire::encode(&req).expect("encodes"));
    assert_eq!(decode(ep.poll_transmit()).mtype, Type::Rst);
    assert_eq!(ep.poll_event(), None, "no handler saw these");
    // A malformed CON with a readable header gets a Reset; garbage is dropped.
    ep.handle(now, 1, &[0x49, 0x01, 0x00, 0x08]);
    assert_eq!(decode(ep.poll_transmit()).mtype, Type::Rst);
    ep.handle(now, 1, &[0xff, 0x00]);
    assert_eq!(ep.poll_transmit(), None);
}

#[test]
fn observe_notifications_flow_until_the_client_forgets() {
    let mut pair = Pair::new(Link::perfect(), 5);
    let observe = get("/3/0/9").with_option(option::OBSERVE, vec![]);
    let id = pair.client_request(observe, true);
    pair.run_for(Duration::from_millis(50));
    let key = pair
        .server_events
        .drain(..)
        .find_map(|e| match e {
            Event::Request { id, .. } => Some(id),
            _ => None,
        })
        .expect("observe request");
    let now = pair.now;
    let note = |seq: u32, level: &str| {
        Response::new(Code::CONTENT)
            .with_option(option::OBSERVE, steward_coap::message::encode_uint(seq))
            .with_payload(0, level.as_bytes().to_vec())
    };
    pair.server
        .respond(now, key, note(1, "100"))
        .expect("pending");
    pair.run_for(Duration::from_millis(50));
    let now = pair.now;
    pair.server
        .notify(now, key.observe_key(), note(2, "99"), true)
        .expect("encodes");
    pair.run_for(Duration::from_millis(50));
    let now = pair.now;
    pair.server
        .notify(now, key.observe_key(), note(3, "98"), false)
        .expect("encodes");
    pair.run_for(Duration::from_millis(50));
    let payloads: Vec<Vec<u8>> = pair
        .client_events
        .drain(..)
        .filter_map(|e| match e {
            Event::Response {
                id: r, response, ..
            } if r == id => Some(response.payload),
            _ => None,
        })
        .collect();
    assert_eq!(payloads, [b"100".to_vec(), b"99".to_vec(), b"98".to_vec()]);
    // The client forgets the observation: the next notification is rejected with a Reset.
    let now = pair.now;
    pair.client.cancel(now, Side::Server, id);
    pair.server
        .notify(now, key.observe_key(), note(4, "97"), false)
        .expect("encodes");
    pair.run_for(Duration::from_millis(50));
    assert!(pair.server_events.iter().any(|e| matches!(
        e,
        Event::ObserveEnded {
            reason: Failure::Reset,
            ..
        }
    )));
}

#[test]
fn oversize_datagrams_die_on_the_link() {
    let mut link = Link::perfect();
    link.mtu = 200;
    let mut pair = Pair::new(link, 6);
    let big = Request::new(Method::Put)
        .with_path("/5/0/0")
        .with_payload(42, vec![0u8; 500]);
    let id = pair.client_request(big, true);
    assert_eq!(pair.run_until_response(id, MINUTES, echo_path), None);
    assert_eq!(pair.stats.too_big, 5, "first send and four retransmissions");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Over a link that loses, duplicates and reorders, every request that completes gets its
    /// own response, and the server's handler runs at most once per request.
    #[test]
    fn lossy_links_never_mix_up_or_repeat_exchanges(
        seed in any::<u64>(),
        loss in 0.0f64..0.4,
        duplicate in 0.0f64..0.3,
        jitter_ms in 0u64..400,
        count in 1usize..12,
    ) {
        let link = Link { jitter: Duration::from_millis(jitter_ms), loss, duplicate, ..Link::perfect() };
        let mut pair = Pair::new(link, seed);
        let ids: Vec<_> = (0..count)
            .map(|i| (i, pair.client_request(get(&format!("/req/{i}")), true)))
            .collect();
        let mut handled: HashMap<String, usize> = HashMap::new();
        let mut outcomes = HashMap::new();
        while outcomes.len() < ids.len() {
            pair.answer_server_requests(&mut |req: &Request| {
                *handled.entry(req.path_string()).or_default() += 1;
                echo_path(req)
            });
            for (i, id) in &ids {
                if let Some(o) = pair.take_client_outcome(*id) {
                    outcomes.insert(*i, o);
                }
            }
            if !pair.step() {
                break;
            }
        }
        prop_assert_eq!(outcomes.len(), ids.len(), "every request ends");
        for (i, outcome) in &outcomes {
            if let Ok(response) = outcome {
                let expected = format!("/req/{i}").into_bytes();
                prop_assert_eq!(&response.payload, &expected);
            } else {
                prop_assert_eq!(outcome.clone().err(), Some(Failure::Timeout));
            }
        }
        for (path, n) in &handled {
            prop_assert_eq!(*n, 1usize, "{} handled {} times", path, n);
        }
    }

    /// Random datagrams never panic the endpoint and never leave it holding unbounded state.
    #[test]
    fn random_datagrams_are_harmless(datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..64)) {
        let mut ep: Endpoint<u16> = Endpoint::new(Config::default());
        let now = std::time::Instant::now();
        for (i, d) in datagrams.iter().enumerate() {
            ep.handle(now, (i % 4) as u16, d);
        }
        while ep.poll_transmit().is_some() {}
        while ep.poll_event().is_some() {}
        ep.handle_timeout(now + Duration::from_secs(300));
        prop_assert_eq!(ep.peer_count(), 0, "all state expires");
    }
}

#[test]
fn dedup_memory_is_capped_and_evicts_the_oldest_first() {
    let config = Config {
        max_dedup_entries: 100,
        ..Config::default()
    };
    let mut server: Endpoint<u16> = Endpoint::new(config);
    let now = std::time::Instant::now();
    let request = |mid: u16| {
        let msg = Message {
            mtype: Type::Con,
            kind: Kind::Request(Method::Get),
            mid,
            token: Token::new(&mid.to_be_bytes()).expect("token"),
            options: get("/x").options,
            payload: vec![],
        };
        wire::encode(&msg).expect("encodes")
    };
    let mut handled = 0;
    let mut answer_all = |server: &mut Endpoint<u16>| {
        while let Some(event) = server.poll_event() {
            if let Event::Request { id, .. } = event {
                handled += 1;
                server
                    .respond(now, id, Response::new(Code::CONTENT))
                    .expect("pending");
            }
        }
        while server.poll_transmit().is_some() {}
    };
    for i in 0..1000u16 {
        server.handle(now, i % 500, &request(i));
        answer_all(&mut server);
    }
    assert!(
        server.peer_count() <= 100,
        "peers with state: {}",
        server.peer_count()
    );
    // The newest exchange is still remembered: its duplicate is answered from the cache.
    server.handle(now, 999 % 500, &request(999));
    answer_all(&mut server);
    // The oldest was evicted: its duplicate reaches the handler again.
    server.handle(now, 0, &request(0));
    answer_all(&mut server);
    assert_eq!(handled, 1001, "only the evicted exchange ran twice");
}
