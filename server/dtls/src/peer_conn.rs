//! The per-peer virtual connection that webrtc-dtls runs on.
//!
//! webrtc-dtls wants a `webrtc_util::Conn` per peer. Ours reads the datagrams the
//! demultiplexer routed to this peer from a channel and writes to the one shared
//! socket, so the demultiplexer keeps sole ownership of receiving.

use std::any::Any;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::net::UdpSocket;
use tokio::sync::{Mutex, mpsc};
use webrtc_util::Conn;

pub(crate) struct PeerConn {
    peer: SocketAddr,
    local: SocketAddr,
    socket: Arc<UdpSocket>,
    rx: Mutex<mpsc::Receiver<Vec<u8>>>,
}

impl PeerConn {
    pub fn new(
        peer: SocketAddr,
        local: SocketAddr,
        socket: Arc<UdpSocket>,
        rx: mpsc::Receiver<Vec<u8>>,
    ) -> Self {
        Self {
            peer,
            local,
            socket,
            rx: Mutex::new(rx),
        }
    }
}

#[async_trait]
impl Conn for PeerConn {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util::Result<()> {
        Err(webrtc_util::Error::Other(
            "PeerConn is already connected".into(),
        ))
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        let mut rx = self.rx.lock().await;
        match rx.recv().await {
            Some(datagram) => {
                // Longer datagrams are truncated, as recv on a UDP socket would do;
                // webrtc-dtls reads into an 8 KiB buffer, above any sane DTLS datagram.
                let n = datagram.len().min(buf.len());
                buf[..n].copy_from_slice(&datagram[..n]);
                Ok(n)
            }
            // The demultiplexer dropped this peer. Returning an error would make
            // webrtc-dtls's reader loop spin (it only stops on its own close signal,
            // which comes when the DTLSConn is dropped), so wait for that instead.
            None => std::future::pending().await,
        }
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        let n = self.recv(buf).await?;
        Ok((n, self.peer))
    }

    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        self.socket
            .send_to(buf, self.peer)
            .await
            .map_err(|e| webrtc_util::Error::Other(e.to_string()))
    }

    async fn send_to(&self, buf: &[u8], _target: SocketAddr) -> webrtc_util::Result<usize> {
        self.send(buf).await
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.local)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        Some(self.peer)
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        // The socket is shared; closing one peer closes nothing underneath.
        Ok(())
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }
}
