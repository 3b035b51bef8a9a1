//! The stack end to end: block-wise transfers over a lossy link with a real MTU, the Block2
//! cache and ETags, observe freshness and block-wise notifications, Echo retries, and hostile
//! requests against the caps.

use std::cell::Cell;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use steward_coap::block::{BlockError, BlockOption, MAX_NUM};
use steward_coap::echo::EchoConfig;
use steward_coap::endpoint::{Event, Failure, Incoming, RequestId};
use steward_coap::message::{Code, Method, Request, Response, encode_uint, option};
use steward_coap::observe::Registration;
use steward_coap::sim::{Link, Pair, Side};
use steward_coap::stack::{Block2CacheConfig, ServerEcho, Stack, StackConfig};
use steward_coap::wire::{self, Kind, Message, Token, Type};

const HOUR: Duration = Duration::from_secs(3600);

fn body(len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ salt).collect()
}

/// LwM2M over DTLS on a typical path: 1152 bytes leaves room for 1024-byte blocks.
fn lossy_mtu(loss: f64) -> Link {
    Link {
        mtu: 1152,
        loss,
        ..Link::perfect()
    }
}

fn get(path: &str) -> Request {
    Request::new(Method::Get).with_path(path)
}

fn observe(path: &str) -> Request {
    get(path).with_option(option::OBSERVE, encode_uint(0))
}

/// Runs until the client's request `id` ends, answering the server's requests with `answer`.
fn run(
    pair: &mut Pair,
    id: RequestId,
    answer: &mut impl FnMut(&Request) -> Response,
) -> Option<Result<Response, Failure>> {
    let deadline = pair.now + HOUR;
    loop {
        pair.answer_server_requests(answer);
        if let Some(outcome) = pair.take_client_outcome(id) {
            return Some(outcome);
        }
        if !pair.step_until(Some(deadline)) {
            pair.answer_server_requests(answer);
            return pair.take_client_outcome(id);
        }
    }
}

fn block2(r: &Response) -> Option<BlockOption> {
    BlockOption::from_options(&r.options, option::BLOCK2).unwrap_or_else(|e| panic!("{e}"))
}

// ---- block-wise through the pair ----------------------------------------------------------

#[test]
fn a_4k_get_over_a_lossy_link_arrives_whole_and_runs_the_handler_once() {
    let mut pair = Pair::new(lossy_mtu(0.2), 11);
    let want = body(4096, 0);
    let id = pair.client_request(get("/5/0/0"), true);
    let calls = Cell::new(0);
    let outcome = run(&mut pair, id, &mut |req: &Request| {
        calls.set(calls.get() + 1);
        assert!(
            !req.options.contains(option::BLOCK2),
            "block-wise is hidden"
        );
        Response::new(Code::CONTENT).with_payload(42, want.clone())
    });
    let response = match outcome {
        Some(Ok(r)) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(response.payload, want);
    assert_eq!(response.options.content_format(), Some(42));
    assert!(
        response.options.contains(option::ETAG),
        "the server added one"
    );
    assert!(!response.options.contains(option::BLOCK2));
    assert!(!response.options.contains(option::SIZE2));
    assert_eq!(calls.get(), 1, "follow-ups come from the cache");
    assert_eq!(pair.server.stack_stats().block2_cache_hits, 3);
    assert_eq!(pair.stats.too_big, 0, "every block fits the MTU");
    assert!(pair.stats.lost > 0, "the link did lose datagrams");
}

#[test]
fn a_10k_put_over_a_lossy_link_arrives_whole_and_runs_the_handler_once() {
    let mut pair = Pair::new(lossy_mtu(0.2), 12);
    let want = body(10 * 1024, 3);
    let put = Request::new(Method::Put)
        .with_path("/5/0/0")
        .with_payload(42, want.clone());
    let id = pair.client_request(put, true);
    let calls = Cell::new(0);
    let outcome = run(&mut pair, id, &mut |req: &Request| {
        calls.set(calls.get() + 1);
        assert_eq!(req.method, Method::Put);
        assert_eq!(req.path_string(), "/5/0/0");
        assert_eq!(req.payload, want, "the whole body, in order");
        assert!(!req.options.contains(option::BLOCK1));
        assert!(!req.options.contains(option::REQUEST_TAG));
        Response::new(Code::CHANGED)
    });
    let response = match outcome {
        Some(Ok(r)) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(response.code, Code::CHANGED);
    assert!(
        !response.options.contains(option::BLOCK1),
        "the echo is hidden"
    );
    assert_eq!(calls.get(), 1);
    assert_eq!(pair.stats.too_big, 0);
    assert_eq!(pair.server.block1_buffered(), 0, "nothing left behind");
}

#[test]
fn a_large_post_with_a_large_answer_uses_both_directions() {
    let mut pair = Pair::new(Link::perfect(), 13);
    let sent = body(3000, 5);
    let answer = body(2500, 6);
    let post = Request::new(Method::Post)
        .with_path("/est/sen")
        .with_payload(0, sent.clone());
    let id = pair.client_request(post, true);
    let calls = Cell::new(0);
    let outcome = run(&mut pair, id, &mut |req: &Request| {
        calls.set(calls.get() + 1);
        assert_eq!(req.payload, sent);
        Response::new(Code::CHANGED).with_payload(0, answer.clone())
    });
    assert_eq!(outcome.map(|r| r.map(|r| r.payload)), Some(Ok(answer)));
    assert_eq!(
        calls.get(),
        1,
        "a POST runs once; its blocks come from the cache"
    );
}

#[test]
fn a_smaller_configured_block_size_is_used_both_ways() {
    let small = StackConfig {
        block_szx: 4,
        ..StackConfig::default()
    };
    let mut link = Link::perfect();
    link.mtu = 400;
    let mut pair = Pair::with_configs(link, 14, small.clone(), small);
    let want = body(2000, 9);
    let id = pair.client_request(get("/big"), true);
    let outcome = run(&mut pair, id, &mut |_| {
        Response::new(Code::CONTENT).with_payload(0, want.clone())
    });
    assert_eq!(
        outcome.map(|r| r.map(|r| r.payload)),
        Some(Ok(want.clone()))
    );
    let put = Request::new(Method::Put).with_payload(0, want.clone());
    let id = pair.client_request(put, true);
    let outcome = run(&mut pair, id, &mut |req| {
        assert_eq!(req.payload, want);
        Response::new(Code::CHANGED)
    });
    assert_eq!(outcome.map(|r| r.map(|r| r.code)), Some(Ok(Code::CHANGED)));
    assert_eq!(pair.stats.too_big, 0, "256-byte blocks fit a 400-byte MTU");
}

#[test]
fn a_changed_representation_is_detected_by_etag_and_fetched_again() {
    // No cache: every follow-up reaches the handler, which changes the resource after the
    // first call.
    let uncached = StackConfig {
        block2_cache: Block2CacheConfig {
            max_entries: 0,
            ..Block2CacheConfig::default()
        },
        ..StackConfig::default()
    };
    let mut pair = Pair::with_configs(Link::perfect(), 15, StackConfig::default(), uncached);
    let id = pair.client_request(get("/3/0"), true);
    let calls = Cell::new(0);
    let outcome = run(&mut pair, id, &mut |req: &Request| {
        calls.set(calls.get() + 1);
        assert!(!req.options.contains(option::BLOCK2));
        let version = if calls.get() == 1 { 1 } else { 2 };
        Response::new(Code::CONTENT).with_payload(0, body(4096, version))
    });
    assert_eq!(
        outcome.map(|r| r.map(|r| r.payload)),
        Some(Ok(body(4096, 2))),
        "only the new version, never a mix"
    );
    assert_eq!(pair.client.stack_stats().block2_restarts, 1);
    // v1 block 0, v2 block 1 (mismatch), then v2 blocks 0 to 3.
    assert_eq!(calls.get(), 6);
}

#[test]
fn a_representation_that_never_holds_still_fails_cleanly() {
    let uncached = StackConfig {
        block2_cache: Block2CacheConfig {
            max_entries: 0,
            ..Block2CacheConfig::default()
        },
        ..StackConfig::default()
    };
    let mut pair = Pair::with_configs(Link::perfect(), 16, StackConfig::default(), uncached);
    let id = pair.client_request(get("/clock"), true);
    let calls = Cell::new(0u8);
    let outcome = run(&mut pair, id, &mut |_| {
        calls.set(calls.get() + 1);
        Response::new(Code::CONTENT).with_payload(0, body(2048, calls.get()))
    });
    assert_eq!(outcome, Some(Err(Failure::Block(BlockError::EtagChanged))));
    assert_eq!(
        pair.client.stack_stats().block2_restarts,
        2,
        "the configured limit"
    );
    assert_eq!(pair.client.outstanding(), 0);
}

#[test]
fn an_oversized_response_fails_with_a_clear_reason() {
    let capped = StackConfig {
        max_response_body: 3000,
        ..StackConfig::default()
    };
    let mut pair = Pair::with_configs(Link::perfect(), 17, capped, StackConfig::default());
    let id = pair.client_request(get("/huge"), true);
    let outcome = run(&mut pair, id, &mut |_| {
        Response::new(Code::CONTENT).with_payload(0, body(8000, 0))
    });
    assert_eq!(
        outcome,
        Some(Err(Failure::Block(BlockError::TooLarge { limit: 3000 }))),
        "Size2 announces the length: refused before fetching"
    );
}

#[test]
fn errors_are_not_sliced() {
    let mut pair = Pair::new(Link::perfect(), 18);
    let id = pair.client_request(get("/missing"), true);
    let diagnostic = "x".repeat(1100);
    let outcome = run(&mut pair, id, &mut |_| {
        Response::new(Code::NOT_FOUND).with_diagnostic(&diagnostic)
    });
    let response = match outcome {
        Some(Ok(r)) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(response.code, Code::NOT_FOUND);
    assert_eq!(response.payload.len(), 1100);
    assert!(!response.options.contains(option::ETAG));
}

// ---- observe ------------------------------------------------------------------------------

/// The server accepts the registration the client sent; returns the client's request id once
/// the first response has arrived.
fn establish_observation(pair: &mut Pair, path: &str, first: Response) -> RequestId {
    let id = pair.client_request(observe(path), true);
    let incoming = loop {
        if let Some(id) = take_server_request(pair) {
            break id;
        }
        assert!(pair.step(), "the registration never arrived");
    };
    let now = pair.now;
    let registration = pair
        .server
        .observe_accept(now, incoming, path, first)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        registration,
        Some(Registration::Accepted { observe: 0, .. })
    ));
    while !pair
        .client_events
        .iter()
        .any(|e| matches!(e, Event::Response { id: r, .. } if *r == id))
    {
        assert!(pair.step(), "the first response never arrived");
    }
    id
}

fn take_server_request(pair: &mut Pair) -> Option<Incoming<Side>> {
    let at = pair
        .server_events
        .iter()
        .position(|e| matches!(e, Event::Request { .. }))?;
    match pair.server_events.remove(at) {
        Event::Request { id, .. } => Some(id),
        _ => None,
    }
}

fn client_responses(pair: &mut Pair, id: RequestId) -> Vec<Response> {
    let mut out = Vec::new();
    pair.client_events.retain(|e| match e {
        Event::Response {
            id: r, response, ..
        } if *r == id => {
            out.push(response.clone());
            false
        }
        _ => true,
    });
    out
}

#[test]
fn reordered_notifications_deliver_only_fresh_ones() {
    let link = Link {
        jitter: Duration::from_millis(400),
        ..Link::perfect()
    };
    let mut pair = Pair::new(link, 21);
    let id = establish_observation(&mut pair, "/3303/0/5700", Response::new(Code::CONTENT));
    let first = client_responses(&mut pair, id);
    assert_eq!(first.len(), 1);
    for level in 1..=20u8 {
        let now = pair.now;
        let note = Response::new(Code::CONTENT).with_payload(0, vec![level]);
        assert_eq!(pair.server.notify_observers(now, "/3303/0/5700", note), 1);
        pair.run_for(Duration::from_millis(20));
    }
    pair.run_for(Duration::from_secs(2));
    let delivered: Vec<u32> = client_responses(&mut pair, id)
        .iter()
        .map(|r| r.options.observe().unwrap_or_else(|| panic!("Observe")))
        .collect();
    assert!(
        delivered.windows(2).all(|w| w[0] < w[1]),
        "only ever newer: {delivered:?}"
    );
    assert_eq!(
        delivered.last(),
        Some(&20),
        "the newest always gets through"
    );
    let stale = pair.client.stack_stats().stale_notifications;
    assert!(stale > 0, "the jitter did reorder");
    assert_eq!(delivered.len() as u64 + stale, 20);
}

#[test]
fn a_large_notification_is_fetched_completely_before_delivery() {
    // Confirmable notifications, so that the cancellation below is noticed over a lossy link.
    let server = StackConfig {
        confirmable_notifications: true,
        ..StackConfig::default()
    };
    let mut pair = Pair::with_configs(lossy_mtu(0.1), 22, StackConfig::default(), server);
    let small = Response::new(Code::CONTENT).with_payload(0, b"v0".to_vec());
    let id = establish_observation(&mut pair, "/5/0", small);
    assert_eq!(client_responses(&mut pair, id).len(), 1);
    let big = body(3000, 7);
    let now = pair.now;
    let note = Response::new(Code::CONTENT).with_payload(0, big.clone());
    assert_eq!(pair.server.notify_observers(now, "/5/0", note), 1);
    pair.run_for(Duration::from_secs(120));
    let delivered = client_responses(&mut pair, id);
    assert_eq!(delivered.len(), 1, "one event for the whole notification");
    assert_eq!(delivered[0].payload, big);
    assert_eq!(delivered[0].options.observe(), Some(1));
    assert!(!delivered[0].options.contains(option::BLOCK2));
    assert!(
        pair.server_events
            .iter()
            .all(|e| !matches!(e, Event::Request { .. })),
        "the follow-ups never reached the application"
    );
    assert_eq!(pair.server.stack_stats().block2_cache_hits, 2);
    // The client forgets: the next notification is rejected and the observer goes.
    let now = pair.now;
    pair.client.cancel(now, Side::Server, id);
    let note = Response::new(Code::CONTENT).with_payload(0, b"v2".to_vec());
    let now = pair.now;
    pair.server.notify_observers(now, "/5/0", note);
    pair.run_for(Duration::from_secs(100));
    assert!(pair.server.observers().is_empty());
    assert!(pair.server_events.iter().any(|e| matches!(
        e,
        Event::ObserveEnded {
            reason: Failure::Reset,
            ..
        }
    )));
}

#[test]
fn an_error_notification_ends_the_observation_on_both_sides() {
    let mut pair = Pair::new(Link::perfect(), 23);
    let id = establish_observation(&mut pair, "/3/0", Response::new(Code::CONTENT));
    client_responses(&mut pair, id);
    let now = pair.now;
    pair.server
        .notify_observers(now, "/3/0", Response::new(Code::NOT_FOUND));
    pair.run_for(Duration::from_secs(1));
    let last = client_responses(&mut pair, id);
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].code, Code::NOT_FOUND);
    assert!(pair.server.observers().is_empty());
    assert_eq!(pair.client.outstanding(), 0);
}

#[test]
fn observe_1_takes_the_observer_off_the_list() {
    let mut pair = Pair::new(Link::perfect(), 24);
    let id = establish_observation(&mut pair, "/3/0", Response::new(Code::CONTENT));
    client_responses(&mut pair, id);
    assert_eq!(pair.server.observers().len(), 1);
    // An explicit deregistration is a new request (new token) here, so it only counts when it
    // reuses the observation's token; the stack's requests never do. What it must not do is
    // disturb the list when the token differs.
    let dereg = get("/3/0").with_option(option::OBSERVE, encode_uint(1));
    let other = pair.client_request(dereg, true);
    let outcome = run(&mut pair, other, &mut |_| Response::new(Code::CONTENT));
    assert_eq!(outcome.map(|r| r.map(|r| r.code)), Some(Ok(Code::CONTENT)));
    assert_eq!(pair.server.observers().len(), 1);
    // The client cancels; the next notification is reset and the observer goes.
    let now = pair.now;
    pair.client.cancel(now, Side::Server, id);
    let now = pair.now;
    pair.server
        .notify_observers(now, "/3/0", Response::new(Code::CONTENT));
    pair.run_for(Duration::from_secs(1));
    assert!(pair.server.observers().is_empty());
}

#[test]
fn an_observe_registration_must_fit_in_one_block() {
    let mut pair = Pair::new(Link::perfect(), 25);
    let fetch = Request::new(Method::Fetch)
        .with_option(option::OBSERVE, encode_uint(0))
        .with_payload(0, body(2000, 0));
    let id = pair.client_request(fetch, true);
    assert_eq!(
        pair.take_client_outcome(id),
        None,
        "reported through the event queue"
    );
    pair.run_for(Duration::from_millis(10));
    assert_eq!(
        pair.take_client_outcome(id),
        Some(Err(Failure::Block(BlockError::TooLarge { limit: 1024 })))
    );
    assert_eq!(pair.stats.sent, 0);
}

/// A raw CoAP server in front of a client stack, to script notifications exactly.
#[test]
fn stale_notifications_are_acked_but_not_delivered() {
    let mut client: Stack<u8> = Stack::new(StackConfig::default());
    let now = Instant::now();
    let id = client.request(now, 1, observe("/temp"), true);
    let sent = wire::decode(
        &client
            .poll_transmit()
            .unwrap_or_else(|| panic!("GET"))
            .datagram,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let note = |mtype, mid, seq: u32| Message {
        mtype,
        kind: Kind::Response(Code::CONTENT),
        mid,
        token: sent.token,
        options: Response::new(Code::CONTENT)
            .with_option(option::OBSERVE, encode_uint(seq))
            .options,
        payload: seq.to_string().into_bytes(),
    };
    let feed = |client: &mut Stack<u8>, msg: Message| {
        client.handle(
            now,
            1,
            &wire::encode(&msg).unwrap_or_else(|e| panic!("{e}")),
        );
    };
    feed(&mut client, note(Type::Ack, sent.mid, 5));
    for (mtype, mid, seq) in [
        (Type::Non, 100, 3),
        (Type::Non, 101, 7),
        (Type::Non, 102, 6),
        (Type::Con, 103, 4),
        (Type::Non, 104, 8),
    ] {
        feed(&mut client, note(mtype, mid, seq));
    }
    let mut delivered = Vec::new();
    while let Some(e) = client.poll_event() {
        match e {
            Event::Response {
                id: r, response, ..
            } if r == id => delivered.push(response.payload),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(delivered, [b"5".to_vec(), b"7".to_vec(), b"8".to_vec()]);
    assert_eq!(client.stack_stats().stale_notifications, 3);
    let acks: Vec<Message> = std::iter::from_fn(|| client.poll_transmit())
        .filter_map(|t| wire::decode(&t.datagram).ok())
        .collect();
    assert!(
        acks.iter().any(|m| m.mtype == Type::Ack && m.mid == 103),
        "the stale CON was still acknowledged: {acks:?}"
    );
}

// ---- Echo ---------------------------------------------------------------------------------

fn echo_for_puts() -> StackConfig {
    StackConfig {
        echo: Some(ServerEcho {
            secret: [7; 16],
            config: EchoConfig::default(),
            require_for: |r: &Request| r.method == Method::Put,
        }),
        ..StackConfig::default()
    }
}

#[test]
fn an_echo_challenge_is_retried_once_and_the_application_sees_only_success() {
    let mut pair = Pair::with_configs(Link::perfect(), 31, StackConfig::default(), echo_for_puts());
    let put = Request::new(Method::Put)
        .with_path("/1/0/1")
        .with_payload(0, b"300".to_vec());
    let id = pair.client_request(put, true);
    let calls = Cell::new(0);
    let outcome = run(&mut pair, id, &mut |req: &Request| {
        calls.set(calls.get() + 1);
        assert_eq!(req.payload, b"300");
        Response::new(Code::CHANGED)
    });
    assert_eq!(outcome.map(|r| r.map(|r| r.code)), Some(Ok(Code::CHANGED)));
    assert_eq!(calls.get(), 1);
    assert_eq!(pair.server.stack_stats().echo_challenges, 1);
    assert_eq!(pair.client.stack_stats().echo_retries, 1);
    // A GET is not covered by the policy.
    let id = pair.client_request(get("/1/0/1"), true);
    let outcome = run(&mut pair, id, &mut |_| Response::new(Code::CONTENT));
    assert_eq!(outcome.map(|r| r.map(|r| r.code)), Some(Ok(Code::CONTENT)));
    assert_eq!(pair.server.stack_stats().echo_challenges, 1);
}

#[test]
fn an_echo_challenge_on_a_block1_body_restarts_it_at_block_0() {
    let mut pair = Pair::with_configs(lossy_mtu(0.1), 32, StackConfig::default(), echo_for_puts());
    let want = body(5000, 1);
    let put = Request::new(Method::Put).with_payload(0, want.clone());
    let id = pair.client_request(put, true);
    let calls = Cell::new(0);
    let outcome = run(&mut pair, id, &mut |req: &Request| {
        calls.set(calls.get() + 1);
        assert_eq!(req.payload, want);
        Response::new(Code::CHANGED)
    });
    assert_eq!(outcome.map(|r| r.map(|r| r.code)), Some(Ok(Code::CHANGED)));
    assert_eq!(calls.get(), 1);
    assert_eq!(pair.server.stack_stats().echo_challenges, 1, "block 0 only");
}

#[test]
fn a_server_that_never_accepts_echo_gets_one_retry_only() {
    let strict = StackConfig {
        echo: Some(ServerEcho {
            secret: [7; 16],
            // Every value is stale by the time it comes back.
            config: EchoConfig {
                freshness_window: Duration::ZERO,
            },
            require_for: |_| true,
        }),
        ..StackConfig::default()
    };
    let mut pair = Pair::with_configs(Link::perfect(), 33, StackConfig::default(), strict);
    let id = pair.client_request(get("/x"), true);
    let outcome = run(&mut pair, id, &mut |_| panic!("never reaches the handler"));
    assert_eq!(
        outcome.map(|r| r.map(|r| r.code)),
        Some(Ok(Code::UNAUTHORIZED))
    );
    assert_eq!(pair.client.stack_stats().echo_retries, 1);
    assert_eq!(pair.server.stack_stats().echo_challenges, 2);
}

// ---- hostile input against a server stack -------------------------------------------------

struct Raw {
    server: Stack<u8>,
    now: Instant,
    mid: u16,
}

impl Raw {
    fn new(config: StackConfig) -> Raw {
        Raw {
            server: Stack::new(config),
            now: Instant::now(),
            mid: 0,
        }
    }

    /// Sends a CON request from `peer`; returns the request event, if the application got one.
    fn send(&mut self, peer: u8, request: &Request) -> Option<(Incoming<u8>, Request)> {
        let token = Token::from_u64(u64::from(self.mid.wrapping_add(1)));
        self.send_with(peer, token, request)
    }

    fn send_with(
        &mut self,
        peer: u8,
        token: Token,
        request: &Request,
    ) -> Option<(Incoming<u8>, Request)> {
        self.mid = self.mid.wrapping_add(1);
        let msg = Message {
            mtype: Type::Con,
            kind: Kind::Request(request.method),
            mid: self.mid,
            token,
            options: request.options.clone(),
            payload: request.payload.clone(),
        };
        let bytes = wire::encode(&msg).unwrap_or_else(|e| panic!("{e}"));
        self.server.handle(self.now, peer, &bytes);
        match self.server.poll_event() {
            Some(Event::Request { id, request }) => Some((id, request)),
            None => None,
            Some(other) => panic!("{other:?}"),
        }
    }

    /// The response the server sent last.
    fn reply(&mut self) -> Response {
        let mut last = None;
        while let Some(t) = self.server.poll_transmit() {
            last = Some(t.datagram);
        }
        let msg = wire::decode(&last.unwrap_or_else(|| panic!("a reply")))
            .unwrap_or_else(|e| panic!("{e}"));
        match msg.kind {
            Kind::Response(code) => Response {
                code,
                options: msg.options,
                payload: msg.payload,
            },
            other => panic!("{other:?}"),
        }
    }

    fn respond(&mut self, id: Incoming<u8>, response: Response) -> Response {
        self.server
            .respond(self.now, id, response)
            .unwrap_or_else(|e| panic!("{e}"));
        self.reply()
    }
}

fn with_block(mut request: Request, number: u16, num: u32, more: bool, szx: u8) -> Request {
    BlockOption { num, more, szx }.set_in(&mut request.options, number);
    request
}

#[test]
fn a_block1_bomb_through_the_stack_costs_nothing() {
    let mut raw = Raw::new(StackConfig::default());
    let bomb = with_block(
        Request::new(Method::Put)
            .with_path("/fw")
            .with_payload(0, vec![0; 1024]),
        option::BLOCK1,
        10_000,
        true,
        6,
    );
    assert!(raw.send(1, &bomb).is_none(), "the handler never sees it");
    assert_eq!(raw.reply().code, Code::REQUEST_ENTITY_INCOMPLETE);
    assert_eq!(raw.server.block1_buffered(), 0);
    // An announced body over the cap is refused at block 0.
    let announced = with_block(
        Request::new(Method::Put)
            .with_path("/fw")
            .with_payload(0, vec![0; 1024])
            .with_option(option::SIZE1, encode_uint(100 << 20)),
        option::BLOCK1,
        0,
        true,
        6,
    );
    assert!(raw.send(1, &announced).is_none());
    assert_eq!(raw.reply().code, Code::REQUEST_ENTITY_TOO_LARGE);
    assert_eq!(raw.server.block1_buffered(), 0);
    // Malformed block options are the peer's fault: 4.02.
    let bert = Request::new(Method::Get).with_option(option::BLOCK2, vec![0x07]);
    assert!(raw.send(1, &bert).is_none());
    assert_eq!(raw.reply().code, Code::BAD_OPTION);
}

#[test]
fn orphaned_block2_follow_ups_are_served_fresh_then_from_the_cache() {
    let mut raw = Raw::new(StackConfig::default());
    let rep = body(4096, 4);
    let follow_up = with_block(get("/big"), option::BLOCK2, 2, false, 6);
    let (id, request) = raw.send(1, &follow_up).unwrap_or_else(|| panic!("fresh"));
    assert!(!request.options.contains(option::BLOCK2));
    let answer = raw.respond(
        id,
        Response::new(Code::CONTENT).with_payload(0, rep.clone()),
    );
    assert_eq!(
        block2(&answer),
        Some(BlockOption {
            num: 2,
            more: true,
            szx: 6
        })
    );
    assert_eq!(answer.payload, rep[2048..3072].to_vec());
    let etag = answer.options.get(option::ETAG).map(<[u8]>::to_vec);
    assert!(etag.is_some());
    // The next block comes from the cache, same ETag.
    let next = with_block(get("/big"), option::BLOCK2, 3, false, 6);
    assert!(raw.send(1, &next).is_none(), "cache hit");
    let answer = raw.reply();
    assert_eq!(answer.payload, rep[3072..].to_vec());
    assert_eq!(answer.options.get(option::ETAG).map(<[u8]>::to_vec), etag);
    // Another peer asking the same is a different transfer.
    assert!(raw.send(2, &next).is_some());
    // A POST follow-up with nothing cached is not re-run without its body.
    let post = with_block(
        Request::new(Method::Post).with_path("/x"),
        option::BLOCK2,
        1,
        false,
        6,
    );
    assert!(raw.send(1, &post).is_none());
    assert_eq!(raw.reply().code, Code::REQUEST_ENTITY_INCOMPLETE);
}

#[test]
fn a_block2_request_for_a_huge_number_is_refused() {
    let mut raw = Raw::new(StackConfig::default());
    // With the representation cached: refused without the application.
    let (id, _) = raw.send(1, &get("/big")).unwrap_or_else(|| panic!("fresh"));
    raw.respond(
        id,
        Response::new(Code::CONTENT).with_payload(0, body(4096, 0)),
    );
    let huge = with_block(get("/big"), option::BLOCK2, MAX_NUM, false, 6);
    assert!(raw.send(1, &huge).is_none());
    assert_eq!(raw.reply().code, Code::BAD_REQUEST);
    // Without: the handler renders it once, the slice is out of range.
    let other = with_block(get("/other"), option::BLOCK2, MAX_NUM, false, 6);
    let (id, _) = raw.send(1, &other).unwrap_or_else(|| panic!("fresh"));
    let answer = raw.respond(
        id,
        Response::new(Code::CONTENT).with_payload(0, body(4096, 0)),
    );
    assert_eq!(answer.code, Code::BAD_REQUEST);
    assert!(raw.server.cache_bytes() <= 2 * 4200);
}

#[test]
fn observe_1_under_the_observation_token_deregisters() {
    let mut raw = Raw::new(StackConfig::default());
    let token = Token::from_u64(0xabc);
    let (id, _) = raw
        .send_with(1, token, &observe("/3/0"))
        .unwrap_or_else(|| panic!("fresh"));
    let now = raw.now;
    let accepted = raw
        .server
        .observe_accept(now, id, "/3/0", Response::new(Code::CONTENT))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(accepted, Some(Registration::Accepted { .. })));
    assert_eq!(
        raw.reply().options.observe(),
        Some(0),
        "Observe in the answer"
    );
    assert_eq!(raw.server.observers().len(), 1);
    let dereg = get("/3/0").with_option(option::OBSERVE, encode_uint(1));
    let (id, request) = raw
        .send_with(1, token, &dereg)
        .unwrap_or_else(|| panic!("served as a GET"));
    assert!(raw.server.observers().is_empty());
    // A plain answer to it; using observe_accept would be a mistake and is refused.
    assert_eq!(
        raw.server
            .observe_accept(now, id, "/3/0", Response::new(Code::CONTENT)),
        Err(steward_coap::stack::StackError::NotARegistration)
    );
    assert_eq!(request.options.observe(), Some(1));
    raw.respond(id, Response::new(Code::CONTENT));
}

#[test]
fn the_block2_cache_never_exceeds_its_caps() {
    let cap = 10_000;
    let mut raw = Raw::new(StackConfig {
        block2_cache: Block2CacheConfig {
            max_entries: 100,
            max_entries_per_peer: 3,
            max_bytes: cap,
            ..Block2CacheConfig::default()
        },
        ..StackConfig::default()
    });
    for i in 0..200u32 {
        let peer = (i % 7) as u8;
        let path = format!("/r/{i}");
        let (id, _) = raw
            .send(peer, &get(&path))
            .unwrap_or_else(|| panic!("fresh"));
        let len = 1025 + (i as usize * 37) % 6000;
        raw.respond(
            id,
            Response::new(Code::CONTENT).with_payload(0, body(len, 0)),
        );
        assert!(
            raw.server.cache_bytes() <= cap,
            "{}",
            raw.server.cache_bytes()
        );
    }
    assert!(raw.server.cache_len() <= 7 * 3);
    // Everything expires.
    raw.server
        .handle_timeout(raw.now + Duration::from_secs(248));
    assert_eq!((raw.server.cache_len(), raw.server.cache_bytes()), (0, 0));
}

#[test]
fn unanswered_requests_are_forgotten_after_the_exchange_lifetime() {
    let mut raw = Raw::new(StackConfig::default());
    let (id, _) = raw
        .send(1, &get("/slow"))
        .unwrap_or_else(|| panic!("fresh"));
    raw.server
        .handle_timeout(raw.now + Duration::from_secs(248));
    assert_eq!(
        raw.server
            .respond(raw.now, id, Response::new(Code::CONTENT)),
        Err(steward_coap::endpoint::RespondError::NotPending)
    );
    assert_eq!(
        raw.server.poll_timeout(),
        None,
        "nothing left to wake up for"
    );
}

// ---- properties ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Over a lossy, reordering link with a 1152-byte MTU, a block-wise GET and PUT either
    /// complete with the exact body or time out; the handler runs at most once for each.
    #[test]
    fn blockwise_transfers_are_exact_or_time_out(
        seed in any::<u64>(),
        loss in 0.0f64..0.25,
        jitter_ms in 0u64..200,
        get_len in 1025usize..6000,
        put_len in 1025usize..12_000,
    ) {
        let link = Link { jitter: Duration::from_millis(jitter_ms), ..lossy_mtu(loss) };
        let mut pair = Pair::new(link, seed);
        let representation = body(get_len, 1);
        let upload = body(put_len, 2);
        let get_id = pair.client_request(get("/r"), true);
        let put = Request::new(Method::Put).with_path("/w").with_payload(0, upload.clone());
        let put_id = pair.client_request(put, true);
        let (gets, puts) = (Cell::new(0), Cell::new(0));
        let mut answer = |req: &Request| match req.method {
            Method::Get => {
                gets.set(gets.get() + 1);
                Response::new(Code::CONTENT).with_payload(0, representation.clone())
            }
            _ => {
                puts.set(puts.get() + 1);
                assert_eq!(&req.payload, &upload);
                Response::new(Code::CHANGED)
            }
        };
        let get_outcome = run(&mut pair, get_id, &mut answer);
        let put_outcome = run(&mut pair, put_id, &mut answer);
        match get_outcome {
            Some(Ok(r)) => prop_assert_eq!(r.payload, representation.clone()),
            other => prop_assert_eq!(other, Some(Err(Failure::Timeout))),
        }
        match put_outcome {
            Some(Ok(r)) => prop_assert_eq!(r.code, Code::CHANGED),
            other => prop_assert_eq!(other, Some(Err(Failure::Timeout))),
        }
        prop_assert!(gets.get() <= 1, "GET handled {} times", gets.get());
        prop_assert!(puts.get() <= 1, "PUT handled {} times", puts.get());
        prop_assert_eq!(pair.stats.too_big, 0);
    }
}
