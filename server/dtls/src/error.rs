//! Errors of the DTLS transport.

use std::net::SocketAddr;

use thiserror::Error;

use crate::session::SessionId;

#[derive(Debug, Error)]
pub enum DtlsError {
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("server certificate or key unusable: {0}")]
    Certificate(String),
    #[error("no established session with {0}")]
    NoSessionForPeer(SocketAddr),
    #[error("no established session {0}")]
    NoSession(SessionId),
    #[error("DTLS handshake timed out")]
    HandshakeTimeout,
    #[error("session closed")]
    SessionClosed,
    #[error("DTLS error: {0}")]
    Dtls(#[from] webrtc_dtls::Error),
}
