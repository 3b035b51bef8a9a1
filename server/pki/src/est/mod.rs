//! EST-coaps (RFC 9148) request handling, sans-IO.
//!
//! [`EstService::handle`] takes one reassembled request (block-wise transfer is done by
//! steward-coap below) together with the authenticated DTLS identity and returns the response
//! and, for every refusal and every issuance, an [`AuditLine`]. It never touches a socket, a
//! clock or openssl: certificate decisions are delegated to an [`Enroller`], and the two
//! encodings that need CMS or CBOR helpers (certs-only, ct 281; multipart-core, ct 62) to an
//! [`EstEncoder`]. The server glues both from the CA, policy, pkcs7 and multipart modules.
//!
//! ## Resources
//!
//! | path (under `/.well-known/est/`) | method | request ct | Accept | response |
//! |---|---|---|---|---|
//! | `crts` | GET | — | none/281/287 | 2.05, 281 (287 only if there is exactly one CA cert) |
//! | `sen`, `sren` | POST | 286 | none/281/287 | 2.04, 281 or 287 |
//! | `skg` | POST | 286 | none/62 | 2.04, 62 = [284 key, 281 certs-only] |
//! | `skc` | POST | 286 | none/62 | 2.04, 62 = [284 key, 287 cert] |
//! | `att` | GET | — | none/285 | 2.05, 285 |
//!
//! The labelled form `/.well-known/est/<label>/<short>` (RFC 9148 §4.1, RFC 7030 §3.2.2)
//! selects a CA profile: the label is passed to the [`Enroller`] in [`EstContext::label`] and
//! must be one it knows ([`Enroller::has_label`]); an unknown label is 4.04, like a path that
//! does not exist, because RFC 9148 §4.5 uses 4.04 for "resource not available".
//!
//! ## Order of checks
//!
//! path (4.04) → client identity (4.01, for every EST function: RFC 9148 §3 requires an
//! authenticated client for all of them) → label (4.04) → method (4.05) → `/sren` needs a
//! certificate identity (4.01) → Content-Format (4.15) → Accept (4.06) → size (4.13) →
//! DER framing of the CSR (4.00) → [`Enroller`] → encoding. Authentication comes before the
//! label check so that an unauthenticated peer cannot probe which profiles exist.
//!
//! `GET /.well-known/core` is answered too (2.05, ct 40, the EST links only, `?rt=ace.est*`
//! style filtering) and needs no identity; a server with other resources should rather merge
//! [`discovery`] into its own `/.well-known/core` answer.
//!
//! ## What the handler does not do
//!
//! It does not parse the CSR beyond checking that the payload is exactly one DER SEQUENCE: the
//! signature, the subject, the binding of the subject to the DTLS identity and the allow-list
//! are the [`Enroller`]'s business. It never returns ct 280 (encrypted server-generated keys):
//! `/skg` and `/skc` always answer with an unencrypted PKCS#8 key (284) inside the DTLS session.

mod audit;
mod discovery;
mod enroller;
mod route;
mod service;

pub use audit::{AuditLine, AuditOutcome};
pub use discovery::{EST_ROOT, discovery, discovery_payload};
pub use enroller::{
    EncodeError, Enroller, EstClient, EstContext, EstEncoder, EstRefusal, ServerKey,
};
pub use route::{EstFunction, Route, route};
pub use service::{EstConfig, EstRequest, EstResponse, EstService, RequestError};

/// Content-Format numbers used by EST-coaps (RFC 9148 §8.1, RFC 8710, RFC 6690).
pub mod content_format {
    /// application/link-format (RFC 6690).
    pub const LINK_FORMAT: u16 = 40;
    /// application/multipart-core (RFC 8710).
    pub const MULTIPART_CORE: u16 = 62;
    /// application/pkcs7-mime; smime-type=server-generated-key (never produced here).
    pub const SERVER_GENERATED_KEY: u16 = 280;
    /// application/pkcs7-mime; smime-type=certs-only.
    pub const CERTS_ONLY: u16 = 281;
    /// application/pkcs8.
    pub const PKCS8: u16 = 284;
    /// application/csrattrs.
    pub const CSRATTRS: u16 = 285;
    /// application/pkcs10.
    pub const PKCS10: u16 = 286;
    /// application/pkix-cert.
    pub const PKIX_CERT: u16 = 287;
}
