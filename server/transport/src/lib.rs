//! # steward-transport
//!
//! Thin tokio drivers around the sans-IO CoAP layer: they own a socket, feed datagrams and
//! timer ticks to the state machine, send what it wants sent, and hand its events to the
//! application. All protocol decisions stay in `steward-coap`.
//!
//! - [`udp`]: plain CoAP over UDP with socket buffers sized by us.
//! - [`dtls`]: CoAP over DTLS 1.2 through `steward-dtls`, with each peer's authenticated identity.
//! - [`dtls_client`]: the client side: one DTLS session with one server, re-established when
//!   it fails.
//! - [`Machine`]: what a driver needs from a state machine (the endpoint or the full stack).

pub mod dtls;
pub mod dtls_client;
pub mod udp;

use std::net::SocketAddr;
use std::time::Instant;

use steward_coap::endpoint::{Endpoint, Event};
use steward_coap::stack::Stack;
use tokio::sync::{mpsc, watch};

/// A command from the application, run against the machine inside the driver task.
pub type Command<M> = Box<dyn FnOnce(&mut M, Instant) + Send>;

/// A handle to a running driver: send it commands, stop it. Dropping it stops the driver.
pub struct Handle<M> {
    commands: mpsc::UnboundedSender<Command<M>>,
    shutdown: watch::Sender<bool>,
    pub local: SocketAddr,
}

impl<M> Handle<M> {
    fn new(
        local: SocketAddr,
    ) -> (
        Handle<M>,
        mpsc::UnboundedReceiver<Command<M>>,
        watch::Receiver<bool>,
    ) {
        let (commands, rx) = mpsc::unbounded_channel();
        let (shutdown, stop) = watch::channel(false);
        (
            Handle {
                commands,
                shutdown,
                local,
            },
            rx,
            stop,
        )
    }

    /// Runs `f` on the machine in the driver task (e.g. start a request, answer one).
    pub fn command(&self, f: impl FnOnce(&mut M, Instant) + Send + 'static) -> bool {
        self.commands.send(Box::new(f)).is_ok()
    }

    /// A clonable sender of commands, for tasks that act on the machine (timers, notifiers).
    /// It does not keep the driver alive: dropping the handle still stops it.
    pub fn commander(&self) -> Commander<M> {
        Commander(self.commands.clone())
    }

    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

impl<M> Drop for Handle<M> {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Sends commands to a running driver; see [`Handle::commander`].
pub struct Commander<M>(mpsc::UnboundedSender<Command<M>>);

impl<M> Clone for Commander<M> {
    fn clone(&self) -> Self {
        Commander(self.0.clone())
    }
}

impl<M> Commander<M> {
    /// False once the driver has stopped.
    pub fn command(&self, f: impl FnOnce(&mut M, Instant) + Send + 'static) -> bool {
        self.0.send(Box::new(f)).is_ok()
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The driving surface shared by `steward_coap::endpoint::Endpoint` and the layers above it.
pub trait Machine {
    type Event;
    fn handle(&mut self, now: Instant, peer: SocketAddr, datagram: &[u8]);
    fn handle_timeout(&mut self, now: Instant);
    fn poll_timeout(&self) -> Option<Instant>;
    fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)>;
    fn poll_event(&mut self) -> Option<Self::Event>;
    /// Drops all state about a peer (its DTLS session was replaced: a new message-ID space).
    fn forget_peer(&mut self, peer: SocketAddr);
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
    fn forget_peer(&mut self, peer: SocketAddr) {
        Endpoint::forget_peer(self, peer);
    }
}

impl Machine for Stack<SocketAddr> {
    type Event = Event<SocketAddr>;

    fn handle(&mut self, now: Instant, peer: SocketAddr, datagram: &[u8]) {
        Stack::handle(self, now, peer, datagram);
    }
    fn handle_timeout(&mut self, now: Instant) {
        Stack::handle_timeout(self, now);
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Stack::poll_timeout(self)
    }
    fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        Stack::poll_transmit(self).map(|t| (t.peer, t.datagram))
    }
    fn poll_event(&mut self) -> Option<Self::Event> {
        Stack::poll_event(self)
    }
    fn forget_peer(&mut self, peer: SocketAddr) {
        Stack::forget_peer(self, peer);
    }
}
