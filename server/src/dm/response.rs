//! CoAP answers to downlink requests, decoded into typed [`DownlinkResponse`]s with the
//! client's models. Every failure is a [`DmError`]: an error code from the device, a success
//! code the operation does not give, or a payload that does not decode. Never a panic.

use steward_coap::message::{Code, Response, option};
use steward_objects::link::DiscoverAnswer;
use steward_objects::{ContentFormat, Models, Node, NodeMap, Path, codec};

use super::error::DmError;
use super::request::{BuiltRequest, RequestKind};

/// A successful answer, per operation.
#[derive(Debug, Clone, PartialEq)]
pub enum DownlinkResponse {
    /// 2.05; `node` is `None` when the device answered with an empty payload (allowed).
    Read {
        node: Option<Node>,
        format: Option<ContentFormat>,
    },
    /// 2.04
    Write,
    /// 2.04
    WriteAttributes,
    /// 2.04
    Execute,
    /// 2.01; `location` is the instance the device created (from Location-Path, or the one
    /// the request named).
    Create { location: Option<Path> },
    /// 2.02
    Delete,
    /// 2.05
    Discover { links: DiscoverAnswer },
    /// 2.05; requested paths without values are absent.
    ReadComposite { nodes: NodeMap },
    /// 2.04
    WriteComposite,
    /// 2.05; `observe` is the Observe sequence number, `None` when the device did not
    /// establish the observation (it answered as to a plain Read, RFC 7641 §3.1).
    Observe {
        node: Option<Node>,
        observe: Option<u32>,
    },
    /// 2.05
    ObserveComposite {
        nodes: NodeMap,
        observe: Option<u32>,
    },
    /// 2.05: the last value, sent with the cancellation.
    CancelObservation { node: Option<Node> },
    /// 2.05
    CancelCompositeObservation { nodes: NodeMap },
}

impl DownlinkResponse {
    /// True for an Observe or Observe-Composite answer that carried Observe: the device now
    /// notifies (RFC 7641 §3.2); without the option it answered as a plain read.
    pub fn establishes_observation(&self) -> bool {
        matches!(
            self,
            DownlinkResponse::Observe {
                observe: Some(_),
                ..
            } | DownlinkResponse::ObserveComposite {
                observe: Some(_),
                ..
            }
        )
    }
}

impl DownlinkResponse {
    /// The LwM2M success code of this answer.
    pub fn code(&self) -> Code {
        match self {
            DownlinkResponse::Create { .. } => Code::CREATED,
            DownlinkResponse::Delete => Code::DELETED,
            DownlinkResponse::Write
            | DownlinkResponse::WriteAttributes
            | DownlinkResponse::Execute
            | DownlinkResponse::WriteComposite => Code::CHANGED,
            DownlinkResponse::Read { .. }
            | DownlinkResponse::Discover { .. }
            | DownlinkResponse::ReadComposite { .. }
            | DownlinkResponse::Observe { .. }
            | DownlinkResponse::ObserveComposite { .. }
            | DownlinkResponse::CancelObservation { .. }
            | DownlinkResponse::CancelCompositeObservation { .. } => Code::CONTENT,
        }
    }
}

/// The success code each operation answers with (Transport §6.4.4/§6.4.5).
fn expected_code(request: &RequestKind) -> Code {
    match request {
        RequestKind::Create { .. } => Code::CREATED,
        RequestKind::Delete { .. } => Code::DELETED,
        RequestKind::Write { .. }
        | RequestKind::WriteAttributes { .. }
        | RequestKind::Execute { .. }
        | RequestKind::WriteComposite { .. } => Code::CHANGED,
        _ => Code::CONTENT,
    }
}

/// Decodes the device's answer to a request of this kind (sent as `built`) with the client's `models`.
/// `alternate_path` is the client's prefix, for Discover links and Create locations.
pub fn decode_response(
    request: &RequestKind,
    built: &BuiltRequest,
    response: &Response,
    models: &dyn Models,
    alternate_path: &str,
) -> Result<DownlinkResponse, DmError> {
    if !response.code.is_success() {
        return Err(DmError::Device {
            code: response.code,
            diagnostic: String::from_utf8_lossy(&response.payload).into_owned(),
        });
    }
    if response.code != expected_code(request) {
        return Err(DmError::UnexpectedCode {
            operation: request.operation(),
            code: response.code,
        });
    }
    let observe = response.options.observe();
    Ok(match request {
        RequestKind::Read { path, .. } => DownlinkResponse::Read {
            node: decode_single(path, response, built.format, models)?,
            format: content_format(response)?,
        },
        RequestKind::Observe { path, .. } => DownlinkResponse::Observe {
            node: decode_single(path, response, built.format, models)?,
            observe,
        },
        RequestKind::CancelObservation { path } => DownlinkResponse::CancelObservation {
            node: decode_single(path, response, built.format, models)?,
        },
        RequestKind::ReadComposite { paths, .. } => DownlinkResponse::ReadComposite {
            nodes: decode_composite(paths, response, models)?,
        },
        RequestKind::ObserveComposite { paths, .. } => DownlinkResponse::ObserveComposite {
            nodes: decode_composite(paths, response, models)?,
            observe,
        },
        RequestKind::CancelCompositeObservation { paths, .. } => {
            DownlinkResponse::CancelCompositeObservation {
                nodes: decode_composite(paths, response, models)?,
            }
        }
        RequestKind::Discover { .. } => {
            match content_format(response)? {
                None | Some(ContentFormat::LinkFormat) => {}
                Some(_) => {
                    return Err(DmError::BadContentFormat {
                        code: response.options.content_format(),
                    });
                }
            }
            DownlinkResponse::Discover {
                links: DiscoverAnswer::parse_under(&response.payload, alternate_path)?,
            }
        }
        RequestKind::Create {
            object, instance, ..
        } => DownlinkResponse::Create {
            location: match location(response, alternate_path, *object)? {
                Some(path) => Some(path),
                None => instance.map(|i| Path::Instance(*object, i)),
            },
        },
        RequestKind::Write { .. } => DownlinkResponse::Write,
        RequestKind::WriteAttributes { .. } => DownlinkResponse::WriteAttributes,
        RequestKind::Execute { .. } => DownlinkResponse::Execute,
        RequestKind::Delete { .. } => DownlinkResponse::Delete,
        RequestKind::WriteComposite { .. } => DownlinkResponse::WriteComposite,
    })
}

/// The answer's Content-Format, `None` when absent; an unknown number is the device's fault.
pub(crate) fn content_format(response: &Response) -> Result<Option<ContentFormat>, DmError> {
    match response.options.content_format() {
        None => Ok(None),
        Some(code) => ContentFormat::from_code(code)
            .map(Some)
            .ok_or(DmError::BadContentFormat { code: Some(code) }),
    }
}

/// The node at `path`. Empty payload: no node. A payload without Content-Format is read in
/// the format asked for with Accept (some 1.0 clients omit the option).
pub(crate) fn decode_single(
    path: &Path,
    response: &Response,
    asked: Option<ContentFormat>,
    models: &dyn Models,
) -> Result<Option<Node>, DmError> {
    if response.payload.is_empty() {
        return Ok(None);
    }
    let format = content_format(response)?
        .or(asked)
        .ok_or(DmError::BadContentFormat { code: None })?;
    codec::decode(format, path, &response.payload, models)
        .map(Some)
        .map_err(|source| DmError::Decode { format, source })
}

/// Nodes grouped under the requested paths.
pub(crate) fn decode_composite(
    paths: &[Path],
    response: &Response,
    models: &dyn Models,
) -> Result<NodeMap, DmError> {
    if response.payload.is_empty() {
        return Ok(NodeMap::new());
    }
    let format = content_format(response)?.ok_or(DmError::BadContentFormat { code: None })?;
    if !format.is_composite() {
        return Err(DmError::BadContentFormat {
            code: Some(format.code()),
        });
    }
    codec::decode_nodes(format, &response.payload, Some(paths), models)
        .map_err(|source| DmError::Decode { format, source })
}

/// The created instance from Location-Path (`/o/i`, under the client's alternate path).
fn location(
    response: &Response,
    alternate_path: &str,
    object: u16,
) -> Result<Option<Path>, DmError> {
    let segments: Vec<String> = response
        .options
        .get_all(option::LOCATION_PATH)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    if segments.is_empty() {
        return Ok(None);
    }
    let joined = format!("/{}", segments.join("/"));
    let bad = || DmError::BadLocation(joined.clone());
    let prefix = alternate_path.trim_end_matches('/');
    let rest = joined.strip_prefix(prefix).ok_or_else(bad)?;
    match rest.parse::<Path>() {
        Ok(Path::Instance(o, i)) if o == object => Ok(Some(Path::Instance(o, i))),
        _ => Err(bad()),
    }
}
