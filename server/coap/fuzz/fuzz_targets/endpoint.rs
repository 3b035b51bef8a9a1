//! A sequence of datagrams from a few peers, with timer ticks between them: the endpoint never
//! panics, answers every request it reports, and holds no state once every lifetime is over.
#![no_main]

use std::time::{Duration, Instant};

use steward_coap::endpoint::{Config, Endpoint, Event};
use steward_coap::message::{Code, Response};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut ep: Endpoint<u8> = Endpoint::new(Config::default());
    let start = Instant::now();
    let mut now = start;
    // Input: [peer, advance-ms, len, bytes...]*
    let mut rest = data;
    while let [peer, advance, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (datagram, next) = tail.split_at(n);
        rest = next;
        now += Duration::from_millis(u64::from(*advance) * 20);
        ep.handle_timeout(now);
        ep.handle(now, peer % 4, datagram);
        while let Some(event) = ep.poll_event() {
            if let Event::Request { id, .. } = event {
                ep.respond(now, id, Response::new(Code::CONTENT))
                    .expect("a reported request can be answered once");
            }
        }
        while ep.poll_transmit().is_some() {}
    }
    ep.handle_timeout(now + Duration::from_secs(600));
    while ep.poll_transmit().is_some() {}
    assert_eq!(ep.peer_count(), 0, "state outlives every lifetime");
});
