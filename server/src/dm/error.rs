//! Why a downlink request did not give a usable answer, split by who is at fault, and the one
//! place where each reason becomes a CoAP code (for the API and plugins that relay it).

use std::time::Duration;

use steward_coap::endpoint::Failure;
use steward_coap::message::Code;
use steward_objects::ContentFormat;
use steward_objects::Path;
use steward_objects::codec::{DecodeError, EncodeError};
use steward_objects::link::{AttributeError, LinkError};

/// Who caused a [`DmError`]: decides whether retrying, fixing the call or looking at the device
/// helps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The caller asked for something invalid; nothing was sent.
    Caller,
    /// The device cannot do it (version, formats) or answered with an error code.
    Device,
    /// The device answered something we cannot use.
    DeviceMisbehaved,
    /// No answer: timeout, reset, link trouble, queued too long.
    Transport,
}

/// A downlink request that failed. Variants before `Device` are found before sending.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DmError {
    /// No registration for this endpoint name.
    #[error("endpoint {0:?} is not registered")]
    NotRegistered(String),
    /// The operation cannot target this path (e.g. Write on an object, Execute on an instance).
    #[error("{operation} is not allowed on {path}")]
    PathNotAllowed { operation: &'static str, path: Path },
    /// The request is malformed in itself (node does not fit its path, empty attribute set).
    #[error("invalid {operation} request: {reason}")]
    InvalidRequest {
        operation: &'static str,
        reason: String,
    },
    /// Invalid Write-Attributes set (`lt >= gt`, ...).
    #[error("invalid attributes: {0}")]
    InvalidAttributes(#[from] AttributeError),
    /// The client's LwM2M version does not have this operation or feature.
    #[error("{operation} needs LwM2M {needs} or later; the client registered with {has}")]
    VersionTooLow {
        operation: &'static str,
        needs: &'static str,
        has: String,
    },
    /// No content format the client supports can carry this request.
    #[error("no content format of this client can carry a {operation} request")]
    NoFormat { operation: &'static str },
    /// The caller forced a content format the client cannot use for this content.
    #[error("the client cannot use {format} for this {operation} request")]
    FormatNotAccepted {
        operation: &'static str,
        format: ContentFormat,
    },
    /// The node could not be encoded in the chosen format.
    #[error("cannot encode the request: {0}")]
    Encode(#[from] EncodeError),
    /// Too many requests already queued for this sleeping device.
    #[error("the queue of {endpoint:?} is full ({limit} requests)")]
    QueueFull { endpoint: String, limit: usize },

    /// The device answered with an error code (4.04 Not Found, 4.05 Method Not Allowed, ...).
    #[error("the device answered {code}{}", diagnostic_suffix(.diagnostic))]
    Device { code: Code, diagnostic: String },

    /// A success code this operation does not produce (2.04 to a Read, ...).
    #[error("the device answered {code} to a {operation} request")]
    UnexpectedCode { operation: &'static str, code: Code },
    /// The answer's payload did not decode with the client's models.
    #[error("cannot decode the device's {format} answer: {source}")]
    Decode {
        format: ContentFormat,
        source: DecodeError,
    },
    /// The answer's Content-Format is missing, unknown, or not usable for this operation.
    #[error("the device answered with content format {code:?}, unusable here")]
    BadContentFormat { code: Option<u16> },
    /// A Discover answer that is not valid link format.
    #[error("cannot parse the device's Discover answer: {0}")]
    Link(#[from] LinkError),
    /// A Location-Path in a Create answer that names no instance of the created object.
    #[error("the device's Create answer has an unusable Location-Path {0:?}")]
    BadLocation(String),

    /// No answer in time (retransmissions exhausted or the request's own timeout).
    #[error("no answer from the device in time")]
    Timeout,
    /// A queued request whose timeout ran out before the device woke up.
    #[error("the device did not wake up within {waited:?}; the queued request expired")]
    Expired { waited: Duration },
    /// The device reset the exchange, or the transport could not carry it.
    #[error("transport failure: {0:?}")]
    Transport(Failure),
    /// The device deregistered (or its registration expired) while the request waited.
    #[error("the device deregistered before the request could be answered")]
    Deregistered,
    /// The server is shutting down (or stopped): the request was not sent or not answered.
    #[error("the server stopped before the request could be answered")]
    ServerStopped,
}

fn diagnostic_suffix(diagnostic: &str) -> String {
    if diagnostic.is_empty() {
        String::new()
    } else {
        format!(": {diagnostic}")
    }
}

impl DmError {
    pub fn fault(&self) -> Fault {
        match self {
            DmError::NotRegistered(_)
            | DmError::PathNotAllowed { .. }
            | DmError::InvalidRequest { .. }
            | DmError::InvalidAttributes(_)
            | DmError::Encode(_)
            | DmError::FormatNotAccepted { .. } => Fault::Caller,
            DmError::VersionTooLow { .. } | DmError::NoFormat { .. } | DmError::Device { .. } => {
                Fault::Device
            }
            DmError::UnexpectedCode { .. }
            | DmError::Decode { .. }
            | DmError::BadContentFormat { .. }
            | DmError::Link(_)
            | DmError::BadLocation(_) => Fault::DeviceMisbehaved,
            DmError::QueueFull { .. }
            | DmError::Timeout
            | DmError::Expired { .. }
            | DmError::Transport(_)
            | DmError::Deregistered
            | DmError::ServerStopped => Fault::Transport,
        }
    }

    /// The code to relay this error with (REST/CoAP APIs over the service): the device's own
    /// code when it gave one, 4.xx for the caller's faults, 5.02/5.04 for device and link trouble
    /// (the gateway semantics of RFC 7252 §5.9.3: we are the intermediary).
    pub fn code(&self) -> Code {
        match self {
            DmError::Device { code, .. } => *code,
            DmError::NotRegistered(_) => Code::NOT_FOUND,
            DmError::PathNotAllowed { .. } => Code::METHOD_NOT_ALLOWED,
            DmError::InvalidRequest { .. } | DmError::InvalidAttributes(_) | DmError::Encode(_) => {
                Code::BAD_REQUEST
            }
            DmError::FormatNotAccepted { .. } | DmError::NoFormat { .. } => Code::NOT_ACCEPTABLE,
            DmError::VersionTooLow { .. } => Code::NOT_IMPLEMENTED,
            DmError::QueueFull { .. } | DmError::ServerStopped => Code::SERVICE_UNAVAILABLE,
            DmError::UnexpectedCode { .. }
            | DmError::Decode { .. }
            | DmError::BadContentFormat { .. }
            | DmError::Link(_)
            | DmError::BadLocation(_)
            | DmError::Transport(_) => Code::new(5, 2),
            DmError::Timeout | DmError::Expired { .. } => Code::GATEWAY_TIMEOUT,
            DmError::Deregistered => Code::NOT_FOUND,
        }
    }
}
