//! The public handle: bind, send, metrics, shutdown.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::DtlsConfig;
use crate::credentials::{Credentials, Identity};
use crate::error::DtlsError;
use crate::metrics::{Counters, DtlsCounters, Metrics};
use crate::session::{SessionId, Table, lock};

/// An application datagram received on an authenticated session.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub peer: SocketAddr,
    pub identity: Arc<Identity>,
    pub session: SessionId,
    pub datagram: Vec<u8>,
}

/// Where [`DtlsServer::send`] sends: the current session of an address, or one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Peer(SocketAddr),
    /// Fails if that session has been replaced or evicted, so a reply never reaches a
    /// different (re-handshaken) identity by accident.
    Session(SessionId),
}

impl From<SocketAddr> for Target {
    fn from(a: SocketAddr) -> Self {
        Target::Peer(a)
    }
}
impl From<SessionId> for Target {
    fn from(s: SessionId) -> Self {
        Target::Session(s)
    }
}

/// State shared by the demultiplexer, handshake and session tasks.
pub(crate) struct Shared {
    pub config: DtlsConfig,
    pub credentials: Arc<dyn Credentials>,
    pub socket: Arc<UdpSocket>,
    pub local_addr: SocketAddr,
    pub table: Mutex<Table>,
    pub counters: Arc<Counters>,
    pub inbound_tx: mpsc::Sender<Inbound>,
    pub shutdown: watch::Receiver<bool>,
    started: Instant,
    next_id: AtomicU64,
    tasks: AtomicUsize,
    tasks_done: Notify,
}

impl Shared {
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
    pub fn next_id(&self) -> SessionId {
        SessionId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }
    /// Counts a task until the guard drops (also when the task is aborted).
    pub fn task_guard(self: &Arc<Self>) -> TaskGuard {
        self.tasks.fetch_add(1, Ordering::SeqCst);
        TaskGuard(Arc::clone(self))
    }
}

pub(crate) struct TaskGuard(Arc<Shared>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.tasks.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.tasks_done.notify_waiters();
        }
    }
}

/// The DTLS server: owns the UDP socket and every per-peer task.
///
/// Dropping it signals every task to stop; [`DtlsServer::shutdown`] also waits for them.
pub struct DtlsServer {
    shared: Arc<Shared>,
    shutdown_tx: watch::Sender<bool>,
    demux: Option<JoinHandle<()>>,
}

impl DtlsServer {
    /// Binds the socket and starts the demultiplexer. Application datagrams arrive on the
    /// returned receiver. Must be called inside a tokio runtime.
    pub fn bind(
        config: DtlsConfig,
        credentials: Arc<dyn Credentials>,
    ) -> Result<(DtlsServer, mpsc::Receiver<Inbound>), DtlsError> {
        config.validate()?;
        let socket = bind_socket(&config)?;
        let local_addr = socket.local_addr()?;
        let (inbound_tx, inbound_rx) = mpsc::channel(config.inbound_queue);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            config,
            credentials,
            socket: Arc::new(socket),
            local_addr,
            table: Mutex::new(Table::default()),
            counters: Arc::default(),
            inbound_tx,
            shutdown: shutdown_rx,
            started: Instant::now(),
            next_id: AtomicU64::new(1),
            tasks: AtomicUsize::new(0),
            tasks_done: Notify::new(),
        });
        let demux = tokio::spawn(crate::demux::run(Arc::clone(&shared)));
        info!(%local_addr, "DTLS server listening");
        Ok((
            DtlsServer {
                shared,
                shutdown_tx,
                demux: Some(demux),
            },
            inbound_rx,
        ))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// Encrypts and sends one datagram on an established session.
    pub async fn send(&self, to: impl Into<Target>, datagram: &[u8]) -> Result<(), DtlsError> {
        let to = to.into();
        let session = {
            let table = lock(&self.shared.table);
            match to {
                Target::Peer(peer) => table
                    .session(peer)
                    .ok_or(DtlsError::NoSessionForPeer(peer))?,
                Target::Session(id) => table.session_by_id(id).ok_or(DtlsError::NoSession(id))?,
            }
        };
        session.conn.write(datagram, None).await?;
        Ok(())
    }

    /// The identity of the current session of `peer`, if any.
    pub fn identity(&self, peer: SocketAddr) -> Option<Arc<Identity>> {
        lock(&self.shared.table)
            .session(peer)
            .map(|s| Arc::clone(&s.identity))
    }

    /// A handle on this server's counters that outlives it and keeps nothing else alive (for
    /// a metrics endpoint, once the server has been handed to its driver).
    pub fn counters(&self) -> DtlsCounters {
        DtlsCounters(Arc::clone(&self.shared.counters))
    }

    pub fn metrics(&self) -> Metrics {
        let mut m = self.shared.counters.snapshot();
        {
            let table = lock(&self.shared.table);
            m.sessions = table.session_count() as u64;
            m.handshakes_in_progress = table.handshakes as u64;
            m.peers = table.peers.len() as u64;
        }
        m.tasks = self.shared.tasks.load(Ordering::SeqCst) as u64;
        m
    }

    /// Stops every task, waits (up to 5 s) for them to end, and returns the final metrics.
    pub async fn shutdown(mut self) -> Metrics {
        self.shutdown_tx.send_replace(true);
        if let Some(demux) = self.demux.take() {
            let _ = demux.await;
        }
        let wait = async {
            loop {
                let notified = self.shared.tasks_done.notified();
                if self.shared.tasks.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .is_err()
        {
            warn!(
                tasks = self.shared.tasks.load(Ordering::SeqCst),
                "DTLS tasks still running after shutdown"
            );
        }
        let mut table = lock(&self.shared.table);
        for slot in table.peers.values() {
            if let Some(p) = &slot.pending {
                p.abort.abort();
            }
        }
        *table = Table::default();
        drop(table);
        self.metrics()
    }
}

impl Drop for DtlsServer {
    fn drop(&mut self) {
        self.shutdown_tx.send_replace(true);
    }
}

/// We create the socket ourselves so the buffers can be raised: a server behind one
/// socket receives every device's traffic, and the default ~200 KiB overflows under load.
fn bind_socket(config: &DtlsConfig) -> Result<UdpSocket, DtlsError> {
    let domain = Domain::for_address(config.bind);
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if let Some(size) = config.socket_buffer {
        if let Err(e) = socket.set_recv_buffer_size(size) {
            warn!(error = %e, size, "could not set SO_RCVBUF");
        }
        if let Err(e) = socket.set_send_buffer_size(size) {
            warn!(error = %e, size, "could not set SO_SNDBUF");
        }
        // Linux doubles the request and caps it at net.core.rmem_max; log what we got.
        let granted_rcv = socket.recv_buffer_size().unwrap_or(0);
        let granted_snd = socket.send_buffer_size().unwrap_or(0);
        info!(
            requested = size,
            granted_rcv, granted_snd, "DTLS socket buffers"
        );
        if granted_rcv < size {
            warn!(
                requested = size,
                granted = granted_rcv,
                "kernel granted a smaller SO_RCVBUF (raise net.core.rmem_max)"
            );
        }
    }
    socket.set_nonblocking(true)?;
    socket.bind(&config.bind.into())?;
    Ok(UdpSocket::from_std(socket.into())?)
}

/// Resolves once shutdown is signalled (or the server handle is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    // The guard wait_for returns is not Send; drop it before the future yields again.
    let _ = rx.wait_for(|stop| *stop).await.is_ok();
}
