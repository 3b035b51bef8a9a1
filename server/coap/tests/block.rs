//! Block-wise transfers end to end: the RFC 7959 examples (§3) as lockstep sequences, client ⇄
//! server round trips, and hostile input.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use steward_coap::block::{
    Block1Assembler, Block1Config, Block1Outcome, Block1Progress, Block1Sender, Block2Fetcher,
    Block2Progress, BlockError, BlockOption, slice_response,
};
use steward_coap::message::{Code, Method, Request, Response, option};

fn b(num: u32, more: bool, szx: u8) -> BlockOption {
    BlockOption { num, more, szx }
}

/// SZX of a block size from the RFC figures' `num/M/size` notation.
fn szx(size: usize) -> u8 {
    steward_coap::block::szx_for_size(size)
}

fn block2(r: &Response) -> Option<BlockOption> {
    BlockOption::from_options(&r.options, option::BLOCK2).unwrap_or_else(|e| panic!("{e}"))
}

fn block1_req(r: &Request) -> Option<BlockOption> {
    BlockOption::from_options(&r.options, option::BLOCK1).unwrap_or_else(|e| panic!("{e}"))
}

fn block1_resp(r: &Response) -> Option<BlockOption> {
    BlockOption::from_options(&r.options, option::BLOCK1).unwrap_or_else(|e| panic!("{e}"))
}

fn get_with_block2(block: Option<BlockOption>) -> Request {
    let mut r = Request::new(Method::Get).with_path("/status");
    if let Some(block) = block {
        block.set_in(&mut r.options, option::BLOCK2);
    }
    r
}

fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn content(len: usize) -> Response {
    Response::new(Code::CONTENT)
        .with_payload(0, body(len))
        .with_option(option::ETAG, vec![0xab])
}

/// Server side of a Block2 exchange: what the endpoint does with a GET.
fn serve(resource: &Response, request: &Request, default_szx: u8) -> Response {
    let asked = BlockOption::from_options(&request.options, option::BLOCK2)
        .unwrap_or_else(|e| panic!("{e}"));
    slice_response(resource, asked, default_szx).unwrap_or_else(|e| panic!("{e}"))
}

/// RFC 7959 §3.1, Figure 2: simple block-wise GET, 128-byte blocks chosen by the server.
#[test]
fn rfc7959_figure2_simple_get() {
    let resource = content(128 * 2 + 50);
    let expected = [
        b(0, true, szx(128)),
        b(1, true, szx(128)),
        b(2, false, szx(128)),
    ];
    let mut fetcher = Block2Fetcher::new(get_with_block2(None), 4096);
    let mut request = fetcher.request().clone();
    for (i, want) in expected.iter().enumerate() {
        let response = serve(&resource, &request, szx(128));
        assert_eq!(block2(&response), Some(*want), "response {i}");
        assert_eq!(response.options.contains(option::SIZE2), i == 0);
        match fetcher.on_response(response) {
            Ok(Block2Progress::Continue(next)) => {
                assert_eq!(block2_req(&next), Some(b(want.num + 1, false, szx(128))));
                request = next;
            }
            Ok(Block2Progress::Complete(whole)) => {
                assert_eq!(i, 2);
                assert_eq!(whole.payload, resource.payload);
                assert!(!whole.options.contains(option::BLOCK2));
                assert!(!whole.options.contains(option::SIZE2));
                return;
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("transfer did not complete");
}

fn block2_req(r: &Request) -> Option<BlockOption> {
    BlockOption::from_options(&r.options, option::BLOCK2).unwrap_or_else(|e| panic!("{e}"))
}

/// RFC 7959 §3.1, Figure 3: early negotiation, the client asks 64-byte blocks up front.
#[test]
fn rfc7959_figure3_early_negotiation() {
    let resource = content(64 * 4 + 10);
    let mut fetcher = Block2Fetcher::new(get_with_block2(Some(b(0, false, szx(64)))), 4096);
    let mut request = fetcher.request().clone();
    let mut seen = Vec::new();
    loop {
        let response = serve(&resource, &request, 6);
        seen.push(block2(&response));
        match fetcher.on_response(response) {
            Ok(Block2Progress::Continue(next)) => request = next,
            Ok(Block2Progress::Complete(whole)) => {
                assert_eq!(whole.payload, resource.payload);
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let want: Vec<_> = (0..5).map(|n| Some(b(n, n < 4, szx(64)))).collect();
    assert_eq!(seen, want);
}

/// RFC 7959 §3.1, Figure 4: late negotiation. The first block comes at 128; the client then asks
/// block 2 of 64 (the same offset) and continues at 64.
#[test]
fn rfc7959_figure4_late_negotiation() {
    let resource = content(64 * 5 + 20);
    let first = serve(&resource, &get_with_block2(None), szx(128));
    assert_eq!(block2(&first), Some(b(0, true, szx(128))));
    let mut got = first.payload.clone();
    for (num, more) in [(2, true), (3, true), (4, true), (5, false)] {
        let r = serve(&resource, &get_with_block2(Some(b(num, false, szx(64)))), 6);
        assert_eq!(block2(&r), Some(b(num, more, szx(64))));
        got.extend_from_slice(&r.payload);
    }
    assert_eq!(got, resource.payload);
}

/// Figures 5 and 6 lose a CON or an ACK: the exchange layer retransmits the same request, and
/// the stateless slicer answers it identically.
#[test]
fn rfc7959_figures5_6_retransmission_gets_the_same_block() {
    let resource = content(300);
    let request = get_with_block2(Some(b(3, false, szx(64))));
    assert_eq!(serve(&resource, &request, 6), serve(&resource, &request, 6));
}

fn put_block(block: BlockOption, payload: Vec<u8>) -> Request {
    let mut r = Request::new(Method::Put).with_path("/options");
    block.set_in(&mut r.options, option::BLOCK1);
    r.payload = payload;
    r
}

fn continue_echo(o: &Block1Outcome) -> BlockOption {
    match o {
        Block1Outcome::Continue(r) => {
            assert_eq!(r.code, Code::CONTINUE);
            block1_resp(r).unwrap_or_else(|| panic!("2.31 without Block1"))
        }
        other => panic!("expected 2.31, got {other:?}"),
    }
}

/// RFC 7959 §3.2, Figure 7 (simple atomic block-wise PUT), driven by the sender.
#[test]
fn rfc7959_figure7_atomic_put() {
    let data = body(128 * 2 + 40);
    let mut sender = Block1Sender::new(
        Request::new(Method::Put)
            .with_path("/options")
            .with_payload(0, data.clone()),
        szx(128),
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut server = Block1Assembler::new(Block1Config::default());
    let now = Instant::now();
    let mut request = sender.request();
    assert_eq!(request.options.get_uint(option::SIZE1), Some(296));
    let script = [
        b(0, true, szx(128)),
        b(1, true, szx(128)),
        b(2, false, szx(128)),
    ];
    for (i, want) in script.iter().enumerate() {
        assert_eq!(block1_req(&request), Some(*want), "request {i}");
        let outcome = server.offer(now, "peer", &request);
        let response = match outcome {
            Block1Outcome::Continue(r) => {
                assert_eq!(block1_resp(&r), Some(b(want.num, true, want.szx)));
                r
            }
            Block1Outcome::Complete {
                request: whole,
                block1,
            } => {
                assert_eq!(whole.payload, data);
                assert_eq!(whole.options.content_format(), Some(0));
                let r = Block1Outcome::finish(block1, Response::new(Code::CHANGED));
                assert_eq!(block1_resp(&r), Some(b(2, false, szx(128))));
                r
            }
            Block1Outcome::Error(r) => panic!("{r:?}"),
        };
        match sender.on_response(response) {
            Ok(Block1Progress::Continue(next)) => request = next,
            Ok(Block1Progress::Complete(r)) => {
                assert_eq!((i, r.code), (2, Code::CHANGED));
                return;
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("transfer did not complete");
}

/// RFC 7959 §3.2, Figure 8: the server asks for 32-byte blocks in its first 2.31; the client
/// continues with block 4 of 32 (byte 128).
#[test]
fn rfc7959_figure8_put_with_negotiation() {
    let data = body(128 + 32 * 2 + 10);
    let mut server = Block1Assembler::new(Block1Config {
        preferred_szx: szx(32),
        ..Block1Config::default()
    });
    let now = Instant::now();
    let mut sender = Block1Sender::new(
        Request::new(Method::Put)
            .with_path("/options")
            .with_payload(0, data.clone()),
        szx(128),
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut sent = Vec::new();
    let mut echoes = Vec::new();
    let mut request = sender.request();
    loop {
        sent.push(block1_req(&request));
        let response = match server.offer(now, 7u32, &request) {
            Block1Outcome::Continue(r) => r,
            Block1Outcome::Complete {
                request: whole,
                block1,
            } => {
                assert_eq!(whole.payload, data);
                Block1Outcome::finish(block1, Response::new(Code::CHANGED))
            }
            Block1Outcome::Error(r) => panic!("{r:?}"),
        };
        echoes.push(block1_resp(&response));
        match sender.on_response(response) {
            Ok(Block1Progress::Continue(next)) => request = next,
            Ok(Block1Progress::Complete(r)) => {
                assert_eq!(r.code, Code::CHANGED);
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(
        sent,
        [
            Some(b(0, true, szx(128))),
            Some(b(4, true, szx(32))),
            Some(b(5, true, szx(32))),
            Some(b(6, false, szx(32)))
        ]
    );
    assert_eq!(
        echoes,
        [
            Some(b(0, true, szx(32))),
            Some(b(4, true, szx(32))),
            Some(b(5, true, szx(32))),
            Some(b(6, false, szx(32)))
        ]
    );
}

/// RFC 7959 §3.3: atomic block-wise POST with a block-wise response. The Block2 phase repeats
/// the request without Block1 and without the body.
#[test]
fn rfc7959_post_with_blockwise_response() {
    let data = body(128 * 2 + 1);
    let answer = content(128 * 2 + 77);
    let mut server = Block1Assembler::new(Block1Config::default());
    let now = Instant::now();
    let mut sender = Block1Sender::new(
        Request::new(Method::Post)
            .with_path("/options")
            .with_payload(0, data.clone()),
        szx(128),
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut request = sender.request();
    let final_response = loop {
        let response = match server.offer(now, (), &request) {
            Block1Outcome::Continue(r) => r,
            Block1Outcome::Complete {
                request: whole,
                block1,
            } => {
                assert_eq!(whole.payload, data);
                let first = serve(&answer, &whole, szx(128));
                Block1Outcome::finish(block1, first)
            }
            Block1Outcome::Error(r) => panic!("{r:?}"),
        };
        match sender.on_response(response) {
            Ok(Block1Progress::Continue(next)) => request = next,
            Ok(Block1Progress::Complete(r)) => break r,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(block1_resp(&final_response), Some(b(2, false, szx(128))));
    assert_eq!(block2(&final_response), Some(b(0, true, szx(128))));
    let mut fetcher = sender.block2_fetcher(4096);
    let mut progress = fetcher.on_response(final_response);
    loop {
        match progress {
            Ok(Block2Progress::Continue(next)) => {
                assert!(next.payload.is_empty());
                assert!(!next.options.contains(option::BLOCK1));
                assert!(!next.options.contains(option::SIZE1));
                // Not block1-wise any more: the assembler passes it through.
                let Block1Outcome::Complete { request: plain, .. } = server.offer(now, (), &next)
                else {
                    panic!("Block2 follow-up was not passed through");
                };
                progress = fetcher.on_response(serve(&answer, &plain, 6));
            }
            Ok(Block2Progress::Complete(whole)) => {
                assert_eq!(whole.payload, answer.payload);
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn fetcher_detects_etag_change() {
    let v1 = content(100);
    let mut v2 = content(100);
    v2.options.set(option::ETAG, vec![0xcd]);
    let mut fetcher = Block2Fetcher::new(get_with_block2(None), 4096);
    let Ok(Block2Progress::Continue(next)) = fetcher.on_response(serve(&v1, fetcher.request(), 0))
    else {
        panic!("expected a follow-up");
    };
    assert_eq!(
        fetcher.on_response(serve(&v2, &next, 0)),
        Err(BlockError::EtagChanged)
    );
}

#[test]
fn fetcher_enforces_its_cap() {
    let big = content(1000);
    // Size2 on the first block says 1000 > 500: stop at once.
    let mut fetcher = Block2Fetcher::new(get_with_block2(None), 500);
    assert_eq!(
        fetcher.on_response(serve(&big, fetcher.request(), 4)),
        Err(BlockError::TooLarge { limit: 500 })
    );
    // Without Size2 the cap still holds when the bytes arrive.
    let mut fetcher = Block2Fetcher::new(get_with_block2(None), 500);
    let mut r = serve(&big, fetcher.request(), 4);
    r.options.remove(option::SIZE2);
    let mut progress = fetcher.on_response(r);
    while let Ok(Block2Progress::Continue(next)) = progress {
        progress = fetcher.on_response(serve(&big, &next, 4));
    }
    assert_eq!(progress, Err(BlockError::TooLarge { limit: 500 }));
}

#[test]
fn fetcher_drops_observe_from_follow_ups() {
    let resource = content(100);
    let request = get_with_block2(None).with_option(option::OBSERVE, vec![]);
    let mut first = serve(&resource, &request, 0);
    first.options.set_uint(option::OBSERVE, 5);
    let mut fetcher = Block2Fetcher::new(request, 4096);
    let Ok(Block2Progress::Continue(next)) = fetcher.on_response(first) else {
        panic!("expected a follow-up");
    };
    assert!(!next.options.contains(option::OBSERVE));
    let mut progress = fetcher.on_response(serve(&resource, &next, 0));
    while let Ok(Block2Progress::Continue(next)) = progress {
        progress = fetcher.on_response(serve(&resource, &next, 0));
    }
    let Ok(Block2Progress::Complete(whole)) = progress else {
        panic!("{progress:?}");
    };
    // The notification's options stay with the assembled representation.
    assert_eq!(whole.options.observe(), Some(5));
    assert_eq!(whole.payload, resource.payload);
}

// --- Hostile input -------------------------------------------------------------------------

fn error_code(o: &Block1Outcome) -> Option<Code> {
    match o {
        Block1Outcome::Error(r) => Some(r.code),
        _ => None,
    }
}

#[test]
fn malformed_block1_values_are_bad_option() {
    let mut server = Block1Assembler::new(Block1Config::default());
    let now = Instant::now();
    for value in [vec![0, 0, 0, 0x10], vec![0x07], vec![0xff, 0xff, 0xff]] {
        let r = Request::new(Method::Put)
            .with_path("/x")
            .with_option(option::BLOCK1, value.clone());
        assert_eq!(
            error_code(&server.offer(now, 0, &r)),
            Some(Code::BAD_OPTION),
            "{value:?}"
        );
    }
    // 3 bytes is the most, and fine: the largest block number, with nothing before it.
    let r = Request::new(Method::Put)
        .with_path("/x")
        .with_option(option::BLOCK1, vec![0xff, 0xff, 0xf8])
        .with_payload(0, vec![0; 16]);
    assert_eq!(
        error_code(&server.offer(now, 0, &r)),
        Some(Code::REQUEST_ENTITY_INCOMPLETE)
    );
    assert_eq!((server.len(), server.buffered()), (0, 0));
    // num >= 2^20 cannot be encoded in the first place.
    assert_eq!(
        b(1 << 20, false, 0).encode(),
        Err(BlockError::NumTooLarge(1 << 20))
    );
    // SZX 7 in a Block2 request.
    let asked = BlockOption::parse(&[0x07]);
    assert_eq!(asked, Err(BlockError::Bert));
}

#[test]
fn bomb_then_real_transfer() {
    let mut server = Block1Assembler::new(Block1Config::default());
    let now = Instant::now();
    let bomb = put_block(b(10000, true, 6), vec![0; 1024]);
    assert_eq!(
        error_code(&server.offer(now, 1, &bomb)),
        Some(Code::REQUEST_ENTITY_INCOMPLETE)
    );
    assert_eq!(server.buffered(), 0);
    let ok = put_block(b(0, true, 6), vec![0; 1024]);
    assert_eq!(continue_echo(&server.offer(now, 1, &ok)), b(0, true, 6));
    // The bomb against a live transfer: still 4.08, the transfer survives.
    assert_eq!(
        error_code(&server.offer(now, 1, &bomb)),
        Some(Code::REQUEST_ENTITY_INCOMPLETE)
    );
    assert_eq!(server.buffered(), 1024);
}

#[test]
fn over_cap_body_is_413_with_size1() {
    let mut server = Block1Assembler::new(Block1Config {
        max_body: 100,
        ..Block1Config::default()
    });
    let now = Instant::now();
    let mut sender = Block1Sender::new(
        Request::new(Method::Put)
            .with_path("/x")
            .with_payload(0, body(500)),
        szx(32),
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let outcome = server.offer(now, 1, &sender.request());
    let Block1Outcome::Error(r) = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(r.code, Code::REQUEST_ENTITY_TOO_LARGE);
    assert_eq!(r.options.get_uint(option::SIZE1), Some(100));
    // The sender hands the error to its caller as the final answer.
    assert_eq!(
        sender.on_response(r.clone()),
        Ok(Block1Progress::Complete(r))
    );
}

#[test]
fn interleaved_request_tags_on_one_path_stay_apart() {
    let mut server = Block1Assembler::new(Block1Config::default());
    let now = Instant::now();
    let a_body = vec![0xaa; 40];
    let b_body = vec![0xbb; 40];
    let mk = |tag: &[u8], body: &[u8]| {
        Block1Sender::new(
            Request::new(Method::Put)
                .with_path("/3/0/1")
                .with_payload(0, body.to_vec()),
            0,
            Some(tag.to_vec()),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let mut a = mk(b"a", &a_body);
    let mut bb = mk(b"b", &b_body);
    let mut done = Vec::new();
    let mut next_a = Some(a.request());
    let mut next_b = Some(bb.request());
    while next_a.is_some() || next_b.is_some() {
        for (sender, next) in [(&mut a, &mut next_a), (&mut bb, &mut next_b)] {
            let Some(request) = next.take() else { continue };
            let response = match server.offer(now, 9, &request) {
                Block1Outcome::Continue(r) => r,
                Block1Outcome::Complete {
                    request: whole,
                    block1,
                } => {
                    assert!(!whole.options.contains(option::REQUEST_TAG));
                    done.push(whole.payload);
                    Block1Outcome::finish(block1, Response::new(Code::CHANGED))
                }
                Block1Outcome::Error(r) => panic!("{r:?}"),
            };
            if let Ok(Block1Progress::Continue(r)) = sender.on_response(response) {
                *next = Some(r);
            }
        }
    }
    assert_eq!(done, [a_body, b_body]);
    assert_eq!(server.buffered(), 0);
}

#[test]
fn same_path_without_tag_block0_restarts() {
    let mut server = Block1Assembler::new(Block1Config::default());
    let now = Instant::now();
    let first = put_block(b(0, true, 0), vec![1; 16]);
    server.offer(now, 1, &first);
    server.offer(now, 1, &put_block(b(1, true, 0), vec![1; 16]));
    assert_eq!(server.buffered(), 32);
    // A new body from the same peer to the same target with no tag: it replaces the old one.
    server.offer(now, 1, &put_block(b(0, true, 0), vec![2; 16]));
    assert_eq!((server.len(), server.buffered()), (1, 16));
    let outcome = server.offer(now, 1, &put_block(b(1, false, 0), vec![2; 3]));
    let Block1Outcome::Complete { request, .. } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(request.payload, [vec![2; 16], vec![2; 3]].concat());
    // An empty tag is not "no tag": a tagged block 1 does not continue an untagged body.
    server.offer(now, 1, &put_block(b(0, true, 0), vec![3; 16]));
    let tagged = put_block(b(1, false, 0), vec![3; 2]).with_option(option::REQUEST_TAG, vec![]);
    assert_eq!(
        error_code(&server.offer(now, 1, &tagged)),
        Some(Code::REQUEST_ENTITY_INCOMPLETE)
    );
    // Nor does another peer's block continue it.
    let other_peer = put_block(b(1, false, 0), vec![3; 2]);
    assert_eq!(
        error_code(&server.offer(now, 2, &other_peer)),
        Some(Code::REQUEST_ENTITY_INCOMPLETE)
    );
}

#[test]
fn idle_transfer_is_dropped() {
    let mut server = Block1Assembler::new(Block1Config {
        idle_timeout: Duration::from_secs(30),
        ..Block1Config::default()
    });
    let t0 = Instant::now();
    server.offer(t0, 1, &put_block(b(0, true, 0), vec![1; 16]));
    // Activity pushes the deadline.
    server.offer(
        t0 + Duration::from_secs(20),
        1,
        &put_block(b(1, true, 0), vec![1; 16]),
    );
    assert_eq!(server.expire(t0 + Duration::from_secs(40)), 0);
    assert_eq!(server.poll_timeout(), Some(t0 + Duration::from_secs(50)));
    assert_eq!(server.expire(t0 + Duration::from_secs(50)), 1);
    assert_eq!((server.len(), server.buffered()), (0, 0));
    assert_eq!(server.poll_timeout(), None);
}

#[test]
fn sender_refuses_a_continue_for_the_wrong_block() {
    let mut sender = Block1Sender::new(
        Request::new(Method::Put)
            .with_path("/x")
            .with_payload(0, body(100)),
        0,
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut r = Response::new(Code::CONTINUE);
    b(3, true, 0).set_in(&mut r.options, option::BLOCK1);
    assert_eq!(
        sender.on_response(r),
        Err(BlockError::OutOfOrder {
            expected: 0,
            got: 48
        })
    );
    assert_eq!(
        sender.on_response(Response::new(Code::CONTINUE)),
        Err(BlockError::MissingBlock)
    );
}

#[test]
fn small_bodies_go_as_plain_requests() {
    let request = Request::new(Method::Put)
        .with_path("/x")
        .with_payload(0, body(16));
    let sender =
        Block1Sender::new(request.clone(), 0, Some(vec![1])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sender.request(), request);
}

// --- Round trips ---------------------------------------------------------------------------

proptest! {
    #[test]
    fn block1_round_trip(
        len in 0usize..6000,
        client_szx in 0u8..=6,
        server_szx in 0u8..=6,
        tag in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..=8)),
    ) {
        let data = body(len);
        let mut sender = Block1Sender::new(
            Request::new(Method::Post).with_path("/5/0/0").with_payload(42, data.clone()),
            client_szx,
            tag,
        ).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut server = Block1Assembler::new(Block1Config {
            preferred_szx: server_szx,
            ..Block1Config::default()
        });
        let now = Instant::now();
        let mut request = sender.request();
        let mut whole = None;
        for _ in 0..10_000 {
            let response = match server.offer(now, 0u8, &request) {
                Block1Outcome::Continue(r) => r,
                Block1Outcome::Complete { request: r, block1 } => {
                    whole = Some(r);
                    Block1Outcome::finish(block1, Response::new(Code::CHANGED))
                }
                Block1Outcome::Error(r) => return Err(TestCaseError::fail(format!("{r:?}"))),
            };
            match sender.on_response(response) {
                Ok(Block1Progress::Continue(next)) => request = next,
                Ok(Block1Progress::Complete(r)) => {
                    prop_assert_eq!(r.code, Code::CHANGED);
                    break;
                }
                Err(e) => return Err(TestCaseError::fail(e.to_string())),
            }
        }
        let whole = whole.ok_or_else(|| TestCaseError::fail("no body"))?;
        prop_assert_eq!(whole.payload, data);
        prop_assert_eq!(whole.options.content_format(), Some(42));
        prop_assert_eq!(server.buffered(), 0);
    }

    #[test]
    fn block2_round_trip(
        len in 0usize..6000,
        early in proptest::option::of(0u8..=6),
        server_szx in 0u8..=6,
    ) {
        let resource = content(len);
        let mut fetcher = Block2Fetcher::new(get_with_block2(early.map(|s| b(0, false, s))), 1 << 16);
        let mut request = fetcher.request().clone();
        let mut finished = false;
        for _ in 0..10_000 {
            let asked = BlockOption::from_options(&request.options, option::BLOCK2)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let response = slice_response(&resource, asked, server_szx)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            match fetcher.on_response(response) {
                Ok(Block2Progress::Continue(next)) => request = next,
                Ok(Block2Progress::Complete(whole)) => {
                    prop_assert_eq!(whole.payload, resource.payload);
                    prop_assert_eq!(whole.options.get(option::ETAG), Some(&[0xab][..]));
                    finished = true;
                    break;
                }
                Err(e) => return Err(TestCaseError::fail(e.to_string())),
            }
        }
        prop_assert!(finished, "did not finish");
    }

    #[test]
    fn parse_never_panics(value in proptest::collection::vec(any::<u8>(), 0..6)) {
        if let Ok(block) = BlockOption::parse(&value) {
            prop_assert!(block.szx <= 6);
            prop_assert!(block.num < 1 << 20);
            let again = block.encode().map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(BlockOption::parse(&again), Ok(block));
        }
    }
}
