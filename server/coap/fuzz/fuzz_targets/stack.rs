//! The full stack (block-wise, observe, Echo) under arbitrary datagrams from a few peers: it
//! never panics, answers every request it reports (sometimes with bodies large enough to go
//! block-wise), and holds no state once every lifetime is over.
#![no_main]

use std::time::{Duration, Instant};

use steward_coap::endpoint::Event;
use steward_coap::message::{Code, Response};
use steward_coap::stack::{Stack, StackConfig};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut stack: Stack<u8> = Stack::new(StackConfig::default());
    let mut now = Instant::now();
    // Input: [peer, advance, len, bytes...]*; the advance byte's low bit picks a large answer.
    let mut rest = data;
    while let [peer, advance, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (datagram, next) = tail.split_at(n);
        rest = next;
        now += Duration::from_millis(u64::from(*advance) * 20);
        stack.handle_timeout(now);
        stack.handle(now, peer % 4, datagram);
        let large = advance & 1 == 1;
        while let Some(event) = stack.poll_event() {
            if let Event::Request { id, .. } = event {
                let body = if large {
                    vec![b'x'; 3000]
                } else {
                    b"ok".to_vec()
                };
                let _ = stack.respond(now, id, Response::new(Code::CONTENT).with_payload(0, body));
            }
        }
        while stack.poll_transmit().is_some() {}
    }
    let later = now + Duration::from_secs(3600);
    stack.handle_timeout(later);
    while stack.poll_transmit().is_some() {}
    assert_eq!(stack.peer_count(), 0, "peer state outlives every lifetime");
    assert_eq!(stack.cache_len(), 0, "Block2 cache outlives its lifetime");
    assert_eq!(
        stack.block1_buffered(),
        0,
        "Block1 buffers outlive their lifetime"
    );
});
