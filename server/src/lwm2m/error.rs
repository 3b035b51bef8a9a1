//! Why a Registration-interface request was refused, and the one place that decides which CoAP
//! code each reason gets.
//!
//! Codes follow Transport §6.4.3 ("Operation to Method and URI Mapping"): Register may answer
//! 4.00, 4.03, 4.12 (and 4.09, see [`RegistrationError::UnknownProfile`]); Update and
//! De-register may only answer 4.00 and 4.04. That table is why a request to someone else's
//! registration gets 4.00 and not 4.03 (Leshan's `RegistrationHandler` does the same:
//! `UpdateResponse.badRequest("forbidden")`).

use steward_coap::message::{Code, Method};
use steward_objects::link::LinkError;

/// A refused Registration-interface request. The `Display` text is the diagnostic payload.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegistrationError {
    // --- the peer sent something malformed: 4.00 ---
    #[error("Uri-Path or Uri-Query is not UTF-8")]
    NotUtf8,
    #[error("parameter {0:?} given more than once")]
    DuplicateParameter(&'static str),
    #[error("parameter {name:?} has an invalid value {value:?}")]
    BadValue { name: &'static str, value: String },
    #[error("lwm2m={0:?} is not a version number")]
    MalformedVersion(String),
    #[error("missing endpoint name (ep)")]
    MissingEndpoint,
    #[error("missing object links payload")]
    MissingObjectLinks,
    #[error("object links: {0}")]
    BadObjectLinks(LinkError),
    #[error("binding {binding:?} is not valid for LwM2M {version}")]
    BadBinding {
        binding: String,
        version: &'static str,
    },
    /// The request names a registration that belongs to another client (Update, De-register).
    #[error("forbidden: registration belongs to another client")]
    NotOwner,

    // --- policy: 4.03 ---
    #[error("endpoint name {endpoint:?} does not match the authenticated identity")]
    IdentityMismatch { endpoint: String },
    #[error("unsecured (NoSec) registrations are not allowed")]
    UnsecuredRefused,

    // --- incompatible peer ---
    #[error("LwM2M version {0} is not supported (1.0, 1.1, 1.2 are)")]
    UnsupportedVersion(String),
    #[error("content format {0} is not application/link-format (40)")]
    UnsupportedContentFormat(u16),
    /// 1.2 `pid` without a payload: we keep no profiles, so we cannot know the object list.
    #[error("profile id {0:?} is unknown: register with the full object list")]
    UnknownProfile(String),

    // --- routing ---
    #[error("no registration {0:?}")]
    UnknownRegistration(String),
    #[error("no such resource")]
    NotFound,
    #[error("{0} is not allowed here")]
    MethodNotAllowed(Method),
}

impl RegistrationError {
    /// The CoAP response code for this refusal.
    pub fn code(&self) -> Code {
        use RegistrationError as E;
        match self {
            E::NotUtf8
            | E::DuplicateParameter(_)
            | E::BadValue { .. }
            | E::MalformedVersion(_)
            | E::MissingEndpoint
            | E::MissingObjectLinks
            | E::BadObjectLinks(_)
            | E::BadBinding { .. }
            | E::NotOwner => Code::BAD_REQUEST,
            // Core 1.1 §5.3.1 Register: "4.03 Forbidden: the Endpoint Client Name registration
            // in the LwM2M Server is not allowed"; STYLE: policy denied → 4.03.
            E::IdentityMismatch { .. } | E::UnsecuredRefused => Code::FORBIDDEN,
            // Transport §6.4.3: "4.12 Precondition Failed: LwM2M version not supported"; the
            // client may fall back to an older version on it.
            E::UnsupportedVersion(_) => Code::PRECONDITION_FAILED,
            E::UnsupportedContentFormat(_) => Code::UNSUPPORTED_CONTENT_FORMAT,
            E::UnknownProfile(_) => Code::CONFLICT,
            E::UnknownRegistration(_) | E::NotFound => Code::NOT_FOUND,
            E::MethodNotAllowed(_) => Code::METHOD_NOT_ALLOWED,
        }
    }
}
