//! DTLS 1.2 server transport for CoAP (Steward).
//!
//! One tokio task (the demultiplexer, `demux.rs`) owns the UDP socket. It answers
//! ClientHellos with stateless cookies (`cookie.rs`), starts one webrtc-dtls server
//! connection per cookie-verified peer (`handshake.rs`) on a virtual connection fed
//! from a channel (`peer_conn.rs`), and routes later datagrams to it (`session.rs`).
//! The layer above gets [`Inbound`] datagrams tagged with the authenticated
//! [`Identity`] and sends with [`DtlsServer::send`].
//!
//! The client side ([`ClientSession`], `client.rs`) is one webrtc-dtls client connection
//! with PSK or X.509 credentials, the server's certificate checked against pinned
//! certificates or trust anchors ([`ServerTrust`]); simulated devices and tests use it.
//!
//! webrtc-dtls is vendored with two small patches (see `VENDORED.md`): its server
//! always ran its own HelloVerifyRequest exchange (which cannot be layered behind a
//! stateless cookie: the transcript covers the cookie-bearing ClientHello and its
//! message_seq), and it tore PSK sessions down on any undecryptable record.

mod client;
mod config;
mod cookie;
mod credentials;
mod demux;
mod error;
mod handshake;
mod metrics;
mod peer_conn;
mod record;
mod server;
mod session;

pub use client::{
    ClientCertificate, ClientConfig, ClientCredentials, ClientSession, SERVER_CERTIFICATE_REFUSED,
    ServerTrust, certificates_from_pem,
};
pub use config::{DtlsConfig, ServerCertificate};
pub use credentials::{
    CertificatePolicy, ChainVerifier, CredentialError, Credentials, Identity, MemoryCredentials,
    PinnedV1Policy, StrictPolicy,
};
pub use error::DtlsError;
pub use metrics::{DtlsCounters, Metrics};
pub use server::{DtlsServer, Inbound, Target};
pub use session::SessionId;
