//! Why a Bootstrap-interface request from a client was refused, and the one place that decides
//! which CoAP code each reason gets.
//!
//! Codes follow Transport §6.4.2 (standards.md §1.2): Bootstrap-Request answers 4.00 for an
//! unknown endpoint and 4.15 for an unsupported `pct`; Bootstrap-Pack-Request 4.00, 4.01, 4.04,
//! 4.05, 4.06. An endpoint name that does not match the authenticated identity is 4.03, as on
//! the Registration interface (see [`crate::lwm2m::identity`]: "policy denied → 4.03").

use steward_coap::message::{Code, Method};

/// A refused Bootstrap-Request or Bootstrap-Pack-Request. The `Display` text is the diagnostic
/// payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootstrapError {
    // --- the peer sent something malformed: 4.00 ---
    #[error("Uri-Path or Uri-Query is not UTF-8")]
    NotUtf8,
    #[error("parameter {0:?} given more than once")]
    DuplicateParameter(&'static str),
    #[error("parameter {name:?} has an invalid value {value:?}")]
    BadValue { name: &'static str, value: String },
    #[error("missing endpoint name (ep)")]
    MissingEndpoint,
    /// Leshan answers the same Bad Request ("no bootstrap config").
    #[error("no bootstrap config for endpoint {0:?}")]
    NoConfig(String),

    // --- policy: 4.03 ---
    #[error("endpoint name {0:?} does not match the authenticated identity")]
    IdentityMismatch(String),
    #[error("unsecured (NoSec) bootstrap is not allowed")]
    UnsecuredRefused,

    // --- formats ---
    /// `pct` names a format we cannot write a configuration in.
    #[error("preferred content format {0} is not supported (TLV, SenML JSON/CBOR, LwM2M CBOR are)")]
    UnsupportedPreferredFormat(u16),
    /// Bootstrap-Pack-Request asked (Accept) for a format a pack cannot be written in.
    #[error(
        "a bootstrap pack is available as SenML CBOR (112), SenML JSON (110) or LwM2M CBOR (11544), not {0}"
    )]
    NotAcceptable(u16),

    // --- routing ---
    #[error("no such resource")]
    NotFound,
    #[error("{0} is not allowed here")]
    MethodNotAllowed(Method),

    // --- our side ---
    #[error("too many bootstrap sessions in progress, retry later")]
    TooManySessions,
    /// The configuration store failed; the text is for the log, the client sees 5.00.
    #[error("bootstrap configuration unavailable")]
    ConfigUnavailable(String),
    /// The stored configuration does not validate or encode: an operator error.
    #[error("bootstrap configuration of {endpoint:?} is invalid")]
    InvalidConfig { endpoint: String, reason: String },
}

impl BootstrapError {
    /// The CoAP response code for this refusal.
    pub fn code(&self) -> Code {
        use BootstrapError as E;
        match self {
            E::NotUtf8
            | E::DuplicateParameter(_)
            | E::BadValue { .. }
            | E::MissingEndpoint
            | E::NoConfig(_) => Code::BAD_REQUEST,
            E::IdentityMismatch(_) | E::UnsecuredRefused => Code::FORBIDDEN,
            E::UnsupportedPreferredFormat(_) => Code::UNSUPPORTED_CONTENT_FORMAT,
            E::NotAcceptable(_) => Code::NOT_ACCEPTABLE,
            E::NotFound => Code::NOT_FOUND,
            E::MethodNotAllowed(_) => Code::METHOD_NOT_ALLOWED,
            E::TooManySessions => Code::SERVICE_UNAVAILABLE,
            E::ConfigUnavailable(_) | E::InvalidConfig { .. } => Code::INTERNAL_SERVER_ERROR,
        }
    }
}
