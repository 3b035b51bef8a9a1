//! The Send operation (Information Reporting, 1.1+): `POST /dp` from a registered client with
//! SenML JSON/CBOR (or, 1.2, LwM2M CBOR) values, possibly timestamped. Parsed with the client's
//! models into a [`SendReport`]; answered 2.04, 4.00 when the payload does not decode, 4.04
//! when the sender is not registered, 4.15 for a format Send cannot use.

use steward_coap::message::{Code, Method, Request, Response};
use steward_objects::{ContentFormat, ModelRegistry, TimestampedNodes, codec};

use crate::lwm2m::RegisteredClient;

/// What a device reported with Send.
#[derive(Debug, Clone, PartialEq)]
pub struct SendReport {
    pub endpoint: String,
    /// In the order sent; each with its SenML time (absolute or relative, as sent).
    pub entries: Vec<TimestampedNodes>,
}

/// Why a Send was refused; each is one response code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SendError {
    #[error("Send from a client that is not registered")]
    NotRegistered,
    #[error("Send without a usable content format ({0:?})")]
    UnsupportedFormat(Option<u16>),
    #[error("malformed Send payload: {0}")]
    Malformed(String),
}

impl SendError {
    pub fn code(&self) -> Code {
        match self {
            SendError::NotRegistered => Code::NOT_FOUND,
            SendError::UnsupportedFormat(_) => Code::UNSUPPORTED_CONTENT_FORMAT,
            SendError::Malformed(_) => Code::BAD_REQUEST,
        }
    }
}

/// True for `POST /dp`.
pub fn is_send(request: &Request) -> bool {
    request.method == Method::Post && request.options.uri_path() == Some(vec!["dp"])
}

/// Parses a Send from `client` (`None`: the peer has no registration).
pub fn parse_send(
    client: Option<&RegisteredClient>,
    request: &Request,
    models: &ModelRegistry,
) -> Result<SendReport, SendError> {
    let client = client.ok_or(SendError::NotRegistered)?;
    let code = request.options.content_format();
    let format = code
        .and_then(ContentFormat::from_code)
        .filter(|f| f.is_composite())
        .ok_or(SendError::UnsupportedFormat(code))?;
    let models = models.for_client(&client.announced_versions());
    let entries = codec::decode_timestamped(format, &request.payload, &models)
        .map_err(|e| SendError::Malformed(e.to_string()))?;
    if entries.is_empty() {
        return Err(SendError::Malformed("no value".into()));
    }
    Ok(SendReport {
        endpoint: client.registration.endpoint.clone(),
        entries,
    })
}

/// Answers a Send: the response to give and the report (or why there is none).
pub fn handle_send(
    client: Option<&RegisteredClient>,
    request: &Request,
    models: &ModelRegistry,
) -> (Response, Result<SendReport, SendError>) {
    match parse_send(client, request, models) {
        Ok(report) => (Response::new(Code::CHANGED), Ok(report)),
        Err(e) => (
            Response::new(e.code()).with_diagnostic(&e.to_string()),
            Err(e),
        ),
    }
}
