//! CoAP over DTLS 1.2, client side: one task owns a [`ClientSession`] with one server and the
//! state machine, feeds it the session's datagrams and timer ticks, and sends its output
//! through the session.
//!
//! The session is (re)established by the driver: on start, when the session fails (an alert
//! from the server, a send error), and when the application asks for it (`on_event` returns
//! [`Directive::Reconnect`], e.g. after a request got no answer: a server that restarted has
//! lost the session, and DTLS over UDP has no other way to tell). Each connection uses a fresh
//! socket and a full handshake; failed handshakes are retried with exponential backoff. The
//! application hears about it through `on_link` ([`LinkEvent`]), with the machine, so it can
//! forget the old session's CoAP state and register again.
//!
//! Datagrams the machine addresses to anyone but the configured server are dropped (one
//! session, one peer).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use steward_dtls::{ClientConfig, ClientSession, DtlsError};
use tokio::sync::{mpsc, watch};

use crate::{Command, Handle, Machine};

/// Largest datagram accepted from the session.
const MAX_DATAGRAM: usize = 65_535;

/// What the application wants after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    Continue,
    /// Drop the session and shake hands again.
    Reconnect,
}

/// The session's life, reported to `on_link`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// A handshake completed; `reconnect` is false for the first session.
    Connected {
        local: SocketAddr,
        reconnect: bool,
        /// The server's certificate chain (DER, leaf first); empty over PSK.
        peer_certificates: Vec<Vec<u8>>,
    },
    /// A handshake failed; the next attempt is in `retry_in`.
    HandshakeFailed { error: String, retry_in: Duration },
    /// An established session ended; a new handshake follows at once.
    Lost { reason: String },
}

/// Reconnection pacing.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

/// Spawns the driver. `on_event` runs in the driver task for every machine event;
/// `on_link` for every [`LinkEvent`]. Must be called inside a tokio runtime. The handle's
/// `local` address is the server's (the local one changes with every session; see
/// [`LinkEvent::Connected`]).
pub fn spawn<M, F, L>(
    config: ClientConfig,
    backoff: Backoff,
    machine: M,
    on_event: F,
    on_link: L,
) -> (Handle<M>, tokio::task::JoinHandle<M>)
where
    M: Machine + Send + 'static,
    F: FnMut(&mut M, Instant, M::Event) -> Directive + Send + 'static,
    L: FnMut(&mut M, Instant, LinkEvent) + Send + 'static,
{
    let (handle, commands, stop) = Handle::new(config.server);
    let driver = Driver {
        config,
        backoff,
        machine,
        on_event,
        on_link,
        commands,
        stop,
    };
    let task = tokio::spawn(driver.run());
    (handle, task)
}

struct Driver<M, F, L> {
    config: ClientConfig,
    backoff: Backoff,
    machine: M,
    on_event: F,
    on_link: L,
    commands: mpsc::UnboundedReceiver<Command<M>>,
    stop: watch::Receiver<bool>,
}

/// Why a session phase ended.
enum End {
    Stop,
    Lost(String),
}

impl<M, F, L> Driver<M, F, L>
where
    M: Machine,
    F: FnMut(&mut M, Instant, M::Event) -> Directive,
    L: FnMut(&mut M, Instant, LinkEvent),
{
    async fn run(mut self) -> M {
        let mut delay = self.backoff.initial;
        let mut connected_before = false;
        loop {
            let Some(connected) = self.connect().await else {
                break;
            };
            match connected {
                Ok(session) => {
                    delay = self.backoff.initial;
                    let peer_certificates = session.peer_certificates().await;
                    (self.on_link)(
                        &mut self.machine,
                        Instant::now(),
                        LinkEvent::Connected {
                            local: session.local_addr(),
                            reconnect: connected_before,
                            peer_certificates,
                        },
                    );
                    connected_before = true;
                    let end = self.serve(&session).await;
                    session.close().await;
                    match end {
                        End::Stop => break,
                        End::Lost(reason) => {
                            tracing::debug!(server = %self.config.server, %reason, "DTLS session lost");
                            (self.on_link)(
                                &mut self.machine,
                                Instant::now(),
                                LinkEvent::Lost { reason },
                            );
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(server = %self.config.server, error = %e, "DTLS handshake failed");
                    (self.on_link)(
                        &mut self.machine,
                        Instant::now(),
                        LinkEvent::HandshakeFailed {
                            error: e.to_string(),
                            retry_in: delay,
                        },
                    );
                    if !self.idle(delay).await {
                        break;
                    }
                    delay = (delay * 2).min(self.backoff.max);
                }
            }
        }
        self.machine
    }

    /// Shakes hands; `None` when told to stop meanwhile. Commands wait in their channel.
    async fn connect(&mut self) -> Option<Result<ClientSession, DtlsError>> {
        if *self.stop.borrow() {
            return None;
        }
        tokio::select! {
            result = ClientSession::connect(&self.config) => Some(result),
            _ = self.stop.changed() => None,
        }
    }

    /// Without a session: runs the machine's timers and the commands (whose output is dropped)
    /// for `delay`. False when told to stop.
    async fn idle(&mut self, delay: Duration) -> bool {
        let until = tokio::time::Instant::now() + delay;
        loop {
            self.discard();
            let timer = self.machine.poll_timeout();
            tokio::select! {
                () = tokio::time::sleep_until(until) => return true,
                () = crate::sleep_until(timer) => self.machine.handle_timeout(Instant::now()),
                command = self.commands.recv() => match command {
                    Some(f) => f(&mut self.machine, Instant::now()),
                    None => return false,
                },
                _ = self.stop.changed() => return false,
            }
            if *self.stop.borrow() {
                return false;
            }
        }
    }

    /// Drops what the machine wants to send (there is no session) and hands out its events.
    fn discard(&mut self) {
        loop {
            let mut idle = true;
            while self.machine.poll_transmit().is_some() {
                idle = false;
            }
            while let Some(event) = self.machine.poll_event() {
                idle = false;
                // Asking to reconnect without a session changes nothing.
                let _ = (self.on_event)(&mut self.machine, Instant::now(), event);
            }
            if idle {
                return;
            }
        }
    }

    async fn serve(&mut self, session: &ClientSession) -> End {
        let server = self.config.server;
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            if let Err(end) = self.flush(session).await {
                return end;
            }
            let timer = self.machine.poll_timeout();
            tokio::select! {
                received = session.recv(&mut buf) => match received {
                    Ok(n) => {
                        let datagram = buf.get(..n).unwrap_or_default();
                        self.machine.handle(Instant::now(), server, datagram);
                    }
                    Err(e) => return End::Lost(e.to_string()),
                },
                () = crate::sleep_until(timer) => self.machine.handle_timeout(Instant::now()),
                command = self.commands.recv() => match command {
                    Some(f) => f(&mut self.machine, Instant::now()),
                    None => return End::Stop,
                },
                _ = self.stop.changed() => {}
            }
            if *self.stop.borrow() {
                // Let what the last command queued (a De-register) go out.
                let _ = self.flush(session).await;
                return End::Stop;
            }
        }
    }

    async fn flush(&mut self, session: &ClientSession) -> Result<(), End> {
        let server = self.config.server;
        let mut reconnect = false;
        loop {
            let mut idle = true;
            while let Some((peer, datagram)) = self.machine.poll_transmit() {
                idle = false;
                if peer != server {
                    tracing::debug!(%peer, "not the DTLS server: datagram dropped");
                    continue;
                }
                if let Err(e) = session.send(&datagram).await {
                    return Err(End::Lost(format!("send failed: {e}")));
                }
            }
            while let Some(event) = self.machine.poll_event() {
                idle = false;
                if (self.on_event)(&mut self.machine, Instant::now(), event) == Directive::Reconnect
                {
                    reconnect = true;
                }
            }
            if idle {
                break;
            }
        }
        if reconnect {
            return Err(End::Lost("the application asked for a new session".into()));
        }
        Ok(())
    }
}
