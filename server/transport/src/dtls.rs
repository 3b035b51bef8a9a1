//! CoAP over DTLS 1.2: `steward-dtls` owns the socket and the sessions; this driver feeds the
//! decrypted datagrams of each session to the state machine and sends its output back through
//! the session it answers.
//!
//! A peer's DTLS session can change under the same address (a device that rebooted and shook
//! hands again). Its CoAP state (message IDs, tokens, observations) belonged to the old session,
//! so the machine forgets the peer when a datagram arrives on a new session, and replies go to
//! the session they were meant for, never to whoever holds the address now.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use steward_dtls::{DtlsServer, Identity, Inbound, SessionId, Target};
use tokio::sync::{mpsc, watch};

use crate::{Command, Handle, Machine};

/// Datagrams taken from the channel per wake-up before output is flushed.
const BATCH: usize = 64;

/// The authenticated peers the driver has heard from.
#[derive(Debug, Default)]
pub struct Peers {
    sessions: HashMap<SocketAddr, (SessionId, Arc<Identity>)>,
}

impl Peers {
    /// The identity the peer authenticated with (PSK identity or certificate subject).
    pub fn identity(&self, peer: SocketAddr) -> Option<&Arc<Identity>> {
        self.sessions.get(&peer).map(|(_, id)| id)
    }

    fn session(&self, peer: SocketAddr) -> Option<SessionId> {
        self.sessions.get(&peer).map(|(s, _)| *s)
    }

    /// Records the session a datagram came on; true when it replaced another one.
    fn note(&mut self, inbound: &Inbound) -> bool {
        let previous = self.sessions.insert(
            inbound.peer,
            (inbound.session, Arc::clone(&inbound.identity)),
        );
        previous.is_some_and(|(s, _)| s != inbound.session)
    }
}

/// Spawns the driver over a bound [`DtlsServer`]. `on_event` runs in the driver task with the
/// machine and the peers' identities. The server shuts down when the driver stops.
pub fn spawn<M, F>(
    server: DtlsServer,
    inbound: mpsc::Receiver<Inbound>,
    machine: M,
    on_event: F,
) -> (Handle<M>, tokio::task::JoinHandle<M>)
where
    M: Machine + Send + 'static,
    F: FnMut(&mut M, Instant, M::Event, &Peers) + Send + 'static,
{
    let (handle, commands, stop) = Handle::new(server.local_addr());
    let task = tokio::spawn(run(server, inbound, machine, on_event, commands, stop));
    (handle, task)
}

async fn run<M, F>(
    server: DtlsServer,
    mut inbound: mpsc::Receiver<Inbound>,
    mut machine: M,
    mut on_event: F,
    mut commands: mpsc::UnboundedReceiver<Command<M>>,
    mut stop: watch::Receiver<bool>,
) -> M
where
    M: Machine,
    F: FnMut(&mut M, Instant, M::Event, &Peers),
{
    let mut peers = Peers::default();
    loop {
        flush(&server, &mut machine, &mut on_event, &peers).await;
        let timer = machine.poll_timeout();
        tokio::select! {
            received = inbound.recv() => {
                let Some(first) = received else { break };
                let now = Instant::now();
                deliver(&mut machine, &mut peers, now, first);
                for _ in 1..BATCH {
                    match inbound.try_recv() {
                        Ok(next) => deliver(&mut machine, &mut peers, now, next),
                        Err(_) => break,
                    }
                }
            }
            () = crate::sleep_until(timer) => machine.handle_timeout(Instant::now()),
            command = commands.recv() => match command {
                Some(f) => f(&mut machine, Instant::now()),
                None => break,
            },
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
    }
    flush(&server, &mut machine, &mut on_event, &peers).await;
    server.shutdown().await;
    machine
}

fn deliver<M: Machine>(machine: &mut M, peers: &mut Peers, now: Instant, inbound: Inbound) {
    if peers.note(&inbound) {
        machine.forget_peer(inbound.peer);
    }
    machine.handle(now, inbound.peer, &inbound.datagram);
}

async fn flush<M, F>(server: &DtlsServer, machine: &mut M, on_event: &mut F, peers: &Peers)
where
    M: Machine,
    F: FnMut(&mut M, Instant, M::Event, &Peers),
{
    loop {
        let mut idle = true;
        while let Some((peer, datagram)) = machine.poll_transmit() {
            idle = false;
            let target = match peers.session(peer) {
                Some(session) => Target::Session(session),
                None => Target::Peer(peer),
            };
            if let Err(e) = server.send(target, &datagram).await {
                tracing::debug!(%peer, error = %e, "DTLS send failed");
            }
        }
        while let Some(event) = machine.poll_event() {
            idle = false;
            on_event(machine, Instant::now(), event, peers);
        }
        if idle {
            return;
        }
    }
}
