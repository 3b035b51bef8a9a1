//! One audit line per refusal and per issuance.

use std::fmt;

use steward_coap::message::Code;

use super::route::EstFunction;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditOutcome {
    /// A certificate was issued and delivered (`/sen`, `/sren`, `/skg`, `/skc`).
    Issued,
    /// The request was refused; [`AuditLine::code`] says how.
    Refused,
}

/// What the server should write to its audit log (and the API event stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditLine {
    /// The client identity as [`super::EstClient`]'s `Display` prints it, or `anonymous`.
    pub client: String,
    /// The request path as `/a/b/c`, lossy and escaped (it is attacker-controlled).
    pub path: String,
    /// The function, when the path named one.
    pub function: Option<EstFunction>,
    /// The profile label, when the path carried one.
    pub label: Option<String>,
    pub outcome: AuditOutcome,
    /// The response code sent.
    pub code: Code,
    /// Why: the refusal reason, or for an issuance the issued certificate's SHA-256.
    pub reason: String,
}

impl AuditOutcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Issued => "issued",
            AuditOutcome::Refused => "refused",
        }
    }
}

/// `est client=psk:dev-1 path=/.well-known/est/sen code=4.03 outcome=refused reason="..."`.
impl fmt::Display for AuditLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "est client={} path={} code={} outcome={} reason=\"{}\"",
            self.client,
            self.path,
            self.code,
            self.outcome.as_str(),
            self.reason.escape_debug()
        )
    }
}
