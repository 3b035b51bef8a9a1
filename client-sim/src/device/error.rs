//! Why a device-management request failed, and the CoAP code each reason maps to.

use steward_coap::message::{Code, Response};
use steward_objects::Path;
use steward_objects::codec::{DecodeError, EncodeError};

/// A refused DM request. Each variant is one CoAP error code (Transport §6.4.4 tables).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DmError {
    /// 4.00: the payload or query cannot be used.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 4.01: the Security object (and later ACL-protected ones) is off limits to a DM server.
    #[error("{0} is not accessible to an LwM2M server")]
    Unauthorized(Path),
    /// 4.03: the device refuses what was written (a recovery token or CTL update that does
    /// not pass its checks, anything but a token in recovery mode).
    #[error("{0}")]
    Forbidden(String),
    /// 4.04: nothing at this path.
    #[error("{0} not found")]
    NotFound(String),
    /// 4.05: the operation is not allowed at this path (R-only resource written, ...).
    #[error("{what} not allowed on {path}")]
    MethodNotAllowed { what: &'static str, path: String },
    /// 4.06: the Accept option names a format the device does not offer for this content.
    #[error("cannot answer in content format {0}")]
    NotAcceptable(u16),
    /// 4.15: the Content-Format is not one the device reads for this operation.
    #[error("content format {0} not supported here")]
    UnsupportedContentFormat(u16),
    /// 5.00: the device's own state could not be encoded; a device bug, not the server's.
    #[error("internal error: {0}")]
    Internal(String),
}

impl DmError {
    pub fn code(&self) -> Code {
        match self {
            DmError::BadRequest(_) => Code::BAD_REQUEST,
            DmError::Unauthorized(_) => Code::UNAUTHORIZED,
            DmError::Forbidden(_) => Code::FORBIDDEN,
            DmError::NotFound(_) => Code::NOT_FOUND,
            DmError::MethodNotAllowed { .. } => Code::METHOD_NOT_ALLOWED,
            DmError::NotAcceptable(_) => Code::NOT_ACCEPTABLE,
            DmError::UnsupportedContentFormat(_) => Code::UNSUPPORTED_CONTENT_FORMAT,
            DmError::Internal(_) => Code::INTERNAL_SERVER_ERROR,
        }
    }

    /// The error response, with the reason as diagnostic payload for the operator.
    pub fn to_response(&self) -> Response {
        Response::new(self.code()).with_diagnostic(&self.to_string())
    }

    pub(crate) fn not_allowed(what: &'static str, path: impl ToString) -> DmError {
        DmError::MethodNotAllowed {
            what,
            path: path.to_string(),
        }
    }

    pub(crate) fn not_found(path: impl ToString) -> DmError {
        DmError::NotFound(path.to_string())
    }

    /// A payload that did not decode: 4.15 when the format cannot carry this content at
    /// all, 4.00 when the bytes are wrong.
    pub(crate) fn from_decode(code: u16, e: &DecodeError) -> DmError {
        if e.is_unsupported_format() {
            DmError::UnsupportedContentFormat(code)
        } else {
            DmError::BadRequest(e.to_string())
        }
    }

    /// Our own node did not encode: 4.06 when the asked format cannot carry it (opaque for a
    /// string), otherwise a device bug.
    pub(crate) fn from_encode(code: u16, e: &EncodeError) -> DmError {
        match e {
            EncodeError::Unsupported { .. } => DmError::NotAcceptable(code),
            other => DmError::Internal(other.to_string()),
        }
    }
}
