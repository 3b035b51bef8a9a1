//! # steward-transport
//!
//! Thin tokio drivers around the sans-IO CoAP layer: they own a socket, feed datagrams and
//! timer ticks to the state machine, send what it wants sent, and hand its events to the
//! application. All protocol decisions stay in `steward-coap`.
//!
//! - [`udp`]: plain CoAP over UDP with socket buffers sized by us.
//! - [`Machine`]: what a driver needs from a state machine (the endpoint or the full stack).

pub mod udp;

use std::net::SocketAddr;
use std::time::Instant;

use steward_coap::endpoint::{Endpoint, Event};

/// The driving surface shared by `steward_coap::endpoint::Endpoint` and the layers above it.
pub trait Machine {
    type Event;
    fn handle(&mut self, now: Instant, peer: SocketAddr, datagram: &[u8]);
    fn handle_timeout(&mut self, now: Instant);
    fn poll_timeout(&self) -> Option<Instant>;
    fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)>;
    fn poll_event(&mut self) -> Option<Self::Event>;
}

impl Machine for Endpoint<SocketAddr> {
    type Event = Event<SocketAddr>;

    fn handle(&mut self, now: Instant, peer: SocketAddr, datagram: &[u8]) {
        Endpoint::handle(self, now, peer, datagram);
    }
    fn handle_timeout(&mut self, now: Instant) {
        Endpoint::handle_timeout(self, now);
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Endpoint::poll_timeout(self)
    }
    fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        Endpoint::poll_transmit(self).map(|t| (t.peer, t.datagram))
    }
    fn poll_event(&mut self) -> Option<Self::Event> {
        Endpoint::poll_event(self)
    }
}
