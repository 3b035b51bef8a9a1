//! Runs a [`SimDevice`] on the client side of a `steward_coap::sim::Pair`, in simulated time,
//! against a server played by a closure. For this crate's tests and for server tests that
//! want a real client without sockets.

use std::time::Duration;

use steward_coap::message::{Request, Response};
use steward_coap::sim::{Pair, Side};

use crate::SimDevice;

/// Runs `device` and the link for `duration` of simulated time, answering every request the
/// server side receives with `answer`. Server requests started with `pair.server_request`
/// are answered by the device; their outcomes stay in `pair.server_events`.
pub fn run(
    pair: &mut Pair,
    device: &mut SimDevice<Side>,
    duration: Duration,
    mut answer: impl FnMut(&Request) -> Response,
) {
    let end = pair.now + duration;
    // A sleeping queue-mode device has its radio off: the link loses everything meanwhile.
    let loss = pair.link.loss;
    loop {
        let now = pair.now;
        for event in std::mem::take(&mut pair.client_events) {
            device.on_event(now, &mut pair.client, event);
        }
        device.poll(now, &mut pair.client);
        pair.link.loss = if device.is_awake() { loss } else { 1.0 };
        pair.answer_server_requests(&mut answer);
        if now >= end {
            pair.link.loss = loss;
            return;
        }
        let limit = device.poll_timeout().map_or(end, |t| t.clamp(now, end));
        if !pair.step_until(Some(limit)) {
            // Nothing on the link before `limit`: jump there (the device's next deadline).
            // A deadline that does not move time would spin; the device consumes every due
            // deadline in `poll`, so `limit > now` here unless it is `end`.
            pair.now = pair.now.max(limit);
            if limit <= now {
                pair.now = end;
            }
        }
    }
}
