//! Plain CoAP over UDP.
//!
//! One task owns the socket and the state machine, so the machine needs no lock: datagrams,
//! timer ticks and application commands are serialised through one `select!`. After each wake-up
//! the driver drains every datagram the kernel already holds (`try_recv_from`) before sending,
//! which batches work under load without a syscall per wait.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::{Command, Handle, Machine};

/// Largest datagram we accept; CoAP over UDP stays far below (RFC 7252 §4.6).
const MAX_DATAGRAM: usize = 65_535;
/// Datagrams drained per wake-up before the machine's output is flushed.
const BATCH: usize = 64;

#[derive(Debug, Clone)]
pub struct UdpConfig {
    pub bind: SocketAddr,
    /// SO_RCVBUF / SO_SNDBUF to ask for: bursts of device traffic are dropped by the kernel,
    /// not by us, when these are small. The kernel may grant less (net.core.rmem_max).
    pub recv_buffer: usize,
    pub send_buffer: usize,
}

impl Default for UdpConfig {
    fn default() -> UdpConfig {
        UdpConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 5683)),
            recv_buffer: 4 << 20,
            send_buffer: 4 << 20,
        }
    }
}

/// What the kernel actually granted, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    pub local: SocketAddr,
    pub recv_buffer: usize,
    pub send_buffer: usize,
}

/// Creates the socket ourselves so its buffers can be sized before binding.
pub fn bind(config: &UdpConfig) -> io::Result<(UdpSocket, Granted)> {
    let socket = Socket::new(
        Domain::for_address(config.bind),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    // Best effort: a kernel limit lowers the value, it does not fail the call.
    let _ = socket.set_recv_buffer_size(config.recv_buffer);
    let _ = socket.set_send_buffer_size(config.send_buffer);
    socket.set_nonblocking(true)?;
    socket.bind(&config.bind.into())?;
    let granted = Granted {
        local: socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("bound socket has no IP address"))?,
        recv_buffer: socket.recv_buffer_size()?,
        send_buffer: socket.send_buffer_size()?,
    };
    let socket = UdpSocket::from_std(socket.into())?;
    tracing::info!(
        local = %granted.local,
        recv_buffer = granted.recv_buffer,
        send_buffer = granted.send_buffer,
        "CoAP UDP socket bound"
    );
    Ok((socket, granted))
}

/// Spawns the driver. `on_event` runs in the driver task for every event, with the machine, so
/// it can answer at once (a piggybacked response needs no round trip through a channel).
pub fn spawn<M, F>(
    socket: UdpSocket,
    machine: M,
    on_event: F,
) -> io::Result<(Handle<M>, tokio::task::JoinHandle<M>)>
where
    M: Machine + Send + 'static,
    F: FnMut(&mut M, Instant, M::Event) + Send + 'static,
{
    let local = socket.local_addr()?;
    let (handle, rx, stop) = Handle::new(local);
    let task = tokio::spawn(run(socket, machine, on_event, rx, stop));
    Ok((handle, task))
}

async fn run<M, F>(
    socket: UdpSocket,
    mut machine: M,
    mut on_event: F,
    mut commands: mpsc::UnboundedReceiver<Command<M>>,
    mut stop: watch::Receiver<bool>,
) -> M
where
    M: Machine,
    F: FnMut(&mut M, Instant, M::Event),
{
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        flush(&socket, &mut machine, &mut on_event).await;
        let timer = machine.poll_timeout();
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let now = Instant::now();
                match received {
                    Ok((n, peer)) => machine.handle(now, peer, buf.get(..n).unwrap_or_default()),
                    // ICMP port unreachable surfaces as an error on Linux; it concerns one
                    // peer, never the socket, so keep serving.
                    Err(e) => tracing::debug!(error = %e, "UDP receive error"),
                }
                for _ in 1..BATCH {
                    match socket.try_recv_from(&mut buf) {
                        Ok((n, peer)) => machine.handle(now, peer, buf.get(..n).unwrap_or_default()),
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
    flush(&socket, &mut machine, &mut on_event).await;
    machine
}

/// Sends everything the machine queued and hands out its events, until both are empty (an
/// event handler may queue more datagrams).
async fn flush<M, F>(socket: &UdpSocket, machine: &mut M, on_event: &mut F)
where
    M: Machine,
    F: FnMut(&mut M, Instant, M::Event),
{
    loop {
        let mut idle = true;
        while let Some((peer, datagram)) = machine.poll_transmit() {
            idle = false;
            if let Err(e) = socket.send_to(&datagram, peer).await {
                tracing::debug!(%peer, error = %e, "UDP send failed");
            }
        }
        while let Some(event) = machine.poll_event() {
            idle = false;
            on_event(machine, Instant::now(), event);
        }
        if idle {
            return;
        }
    }
}
