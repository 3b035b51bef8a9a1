//! Security Mode 4 (Certificate mode with EST, LwM2M Transport §5.2.4, standards.md §1.11) on
//! the device side, and the OCSP check of the LwM2M server's certificate (seed 003).
//!
//! An [`EstSession`] is a sans-IO state machine like [`crate::bootstrap::Bootstrap`]: it
//! hands out one CoAP request at a time ([`EstSession::poll_request`]), takes the answer
//! ([`EstSession::on_response`] / [`EstSession::on_failure`]) and reports
//! [`EstEvent`]s. [`crate::SimDevice`] drives it over the same [`crate::Stack`] as everything
//! else, towards the bootstrap server (the EST server is the bootstrap server's own coaps
//! endpoint at the RFC 9148 default root `/.well-known/est`). The stack does the block-wise
//! part: a Block2 answer (certificates are ~500–1000 bytes each) reaches the session whole.
//!
//! ```text
//!  GET /crts (Accept 281) ─► POST /sen|/sren (ct 286, Accept 281) ─► POST /ocsp ─► Done
//!      explicit TAs             new P-256 key, CSR CN = endpoint      server cert Good?
//!        │ any failure: back off (5 s doubling to 10 min; 5.03 + Max-Age: that long), retry
//! ```
//!
//! - **Trust anchors**: `/crts` comes first (RFC 7030 §4.1: the client fetches the explicit
//!   TA before it relies on the server's answers). The issued certificate must chain to them
//!   ([`credentials::verify_chain`]) or the answer is refused. The `/crts` answer is trusted
//!   because it comes over the bootstrap DTLS session, authenticated with the implicit TA
//!   (`--ca`); in simulated time there is no DTLS and the test plays both sides.
//! - **Key**: generated on the device, never sent; a 4.xx answer to `/sen` makes the next
//!   attempt use a fresh key, a 5.03 (RFC 9148 §4.7) resends the identical CSR.
//! - **Re-enrolment** (`/sren`, RFC 7030 §4.2.2): same subject CN as the current certificate,
//!   new key (rekey). The DTLS session must authenticate with the current certificate; the
//!   transport takes care of that ([`crate::transport::wanted`]).
//! - **OCSP** (seed 003: a device must be able to learn that the server's certificate was
//!   revoked): before the device trusts `/0/x/4` it POSTs a DER OCSPRequest with a fresh
//!   16-byte nonce for that certificate, issuer = the `/crts` CA certificate that signed it, to
//!   [`OcspCheck::On`]'s path on the bootstrap server. **No Content-Format option**: CoAP has
//!   no registered number for `application/ocsp-request`/`-response` (RFC 6960 App. A defines
//!   only the HTTP media types), so both bodies are bare DER. Only a signed, fresh answer with
//!   our nonce saying Good lets the device connect; Revoked, Unknown, no answer, an error or
//!   an invalid answer reject the server (**fail closed**), reported as
//!   [`crate::DeviceEvent::ServerCertificateRejected`], and the check is retried after the
//!   back-off.

pub mod credentials;
mod session;

use std::time::Duration;

pub use credentials::{CredentialError, Enrolled, StoredPaths};
pub use session::{EstEvent, EstFailure, EstJob, EstOutcome, EstSession, EstStep, RejectReason};

/// RFC 9148 §4.1: the default root every EST-coaps server must serve.
pub const DEFAULT_EST_ROOT: &str = "/.well-known/est";
/// Where the server-certificate check is POSTed on the bootstrap server by default.
pub const DEFAULT_OCSP_PATH: &str = "/ocsp";

/// Whether and where the device checks the LwM2M server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OcspCheck {
    Off,
    /// POST to this Uri-Path on the bootstrap server.
    On {
        path: String,
    },
}

impl Default for OcspCheck {
    fn default() -> OcspCheck {
        OcspCheck::On {
            path: DEFAULT_OCSP_PATH.into(),
        }
    }
}

/// How a device enrols and checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EstConfig {
    /// The CSR's CN (the endpoint name: the EST server binds it to the DTLS identity).
    pub endpoint: String,
    /// `/.well-known/est` or a labelled root `/.well-known/est/<label>`.
    pub est_root: String,
    pub ocsp: OcspCheck,
    /// First retry delay; doubles per failure up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl EstConfig {
    /// The defaults: RFC 9148 root, OCSP check on at [`DEFAULT_OCSP_PATH`], 5 s to 10 min
    /// back-off (as the bootstrap's).
    pub fn new(endpoint: impl Into<String>) -> EstConfig {
        EstConfig {
            endpoint: endpoint.into(),
            est_root: DEFAULT_EST_ROOT.into(),
            ocsp: OcspCheck::default(),
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(600),
        }
    }
}
