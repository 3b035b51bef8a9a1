//! A CoAP request parsed into the DM operation it asks for (Transport §6.4.4), before anything
//! touches the object tree: method, path, formats and query are checked here once.

use steward_coap::message::{Method, Request};
use steward_objects::link::NotificationAttributes;
use steward_objects::{ContentFormat, Models, Path};

use super::error::DmError;

/// How a Write changes what is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// PUT: the target becomes exactly the payload.
    Replace,
    /// POST: the payload's resources (or instances) are added or overwritten, others stay.
    Update,
}

/// One DM operation with its arguments.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    Read {
        path: Path,
        accept: Option<ContentFormat>,
    },
    Discover {
        path: Path,
        depth: Option<u8>,
    },
    Write {
        path: Path,
        mode: WriteMode,
        format: ContentFormat,
        payload: Vec<u8>,
    },
    WriteAttributes {
        path: Path,
        attributes: NotificationAttributes,
    },
    Execute {
        path: Path,
        arguments: Vec<u8>,
    },
    Create {
        object: u16,
        format: ContentFormat,
        payload: Vec<u8>,
    },
    Delete {
        path: Path,
    },
    ReadComposite {
        format: ContentFormat,
        accept: Option<ContentFormat>,
        payload: Vec<u8>,
    },
    WriteComposite {
        format: ContentFormat,
        payload: Vec<u8>,
    },
}

impl Operation {
    /// Parses `request`; `models` tells an Execute from a partial update on a resource.
    pub fn parse(request: &Request, models: &dyn Models) -> Result<Operation, DmError> {
        let path = path_of(request)?;
        let content_format = request.options.content_format();
        let format = || -> Result<ContentFormat, DmError> {
            let code = content_format
                .ok_or_else(|| DmError::BadRequest("Content-Format is required".into()))?;
            ContentFormat::from_code(code).ok_or(DmError::UnsupportedContentFormat(code))
        };
        let accept = match request.options.accept() {
            None => None,
            Some(code) => Some(ContentFormat::from_code(code).ok_or(DmError::NotAcceptable(code))?),
        };
        let query = query_of(request)?;
        match request.method {
            Method::Get if accept == Some(ContentFormat::LinkFormat) => Ok(Operation::Discover {
                path,
                depth: depth_of(&query)?,
            }),
            // Observe=0 is served as a plain Read for now: the answer carries no Observe
            // option, which tells the server (RFC 7641 §3.1) that nothing is observed.
            Method::Get => Ok(Operation::Read { path, accept }),
            Method::Put if content_format.is_none() && request.payload.is_empty() => {
                if query.is_empty() {
                    return Err(DmError::BadRequest(
                        "PUT without payload and without attributes".into(),
                    ));
                }
                let attributes = NotificationAttributes::from_query(&query)
                    .map_err(|e| DmError::BadRequest(e.to_string()))?;
                Ok(Operation::WriteAttributes { path, attributes })
            }
            Method::Put => Ok(Operation::Write {
                path,
                mode: WriteMode::Replace,
                format: format()?,
                payload: request.payload.clone(),
            }),
            Method::Post => match path {
                Path::Object(object) => Ok(Operation::Create {
                    object,
                    format: format()?,
                    payload: request.payload.clone(),
                }),
                Path::Instance(..) => Ok(Operation::Write {
                    path,
                    mode: WriteMode::Update,
                    format: format()?,
                    payload: request.payload.clone(),
                }),
                Path::Resource(o, _, r) => match models.resource(o, r) {
                    None => Err(DmError::not_found(path)),
                    Some(m) if m.operations.execute => Ok(Operation::Execute {
                        path,
                        arguments: request.payload.clone(),
                    }),
                    // Transport: a partial update at resource level is for multiple
                    // resources only (it adds resource instances).
                    Some(m) if m.multiple => Ok(Operation::Write {
                        path,
                        mode: WriteMode::Update,
                        format: format()?,
                        payload: request.payload.clone(),
                    }),
                    Some(_) => Err(DmError::not_allowed("POST", path)),
                },
                Path::Root | Path::ResourceInstance(..) => Err(DmError::not_allowed("POST", path)),
            },
            Method::Delete => Ok(Operation::Delete { path }),
            Method::Fetch if path == Path::Root => Ok(Operation::ReadComposite {
                format: format()?,
                accept,
                payload: request.payload.clone(),
            }),
            Method::IPatch if path == Path::Root => Ok(Operation::WriteComposite {
                format: format()?,
                payload: request.payload.clone(),
            }),
            Method::Fetch | Method::IPatch | Method::Patch => {
                Err(DmError::not_allowed("this method", path))
            }
        }
    }
}

/// The LwM2M path of the Uri-Path; a segment that is not an ID names nothing on this device.
pub(super) fn path_of(request: &Request) -> Result<Path, DmError> {
    let not_found = || DmError::not_found(request.path_string());
    let segments = request.options.uri_path().ok_or_else(not_found)?;
    let mut ids = Vec::with_capacity(segments.len());
    for s in segments {
        // Only plain decimal IDs: "+3" or " 3" are not paths.
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(not_found());
        }
        ids.push(s.parse::<u16>().map_err(|_| not_found())?);
    }
    Path::from_ids(&ids).ok_or_else(not_found)
}

fn query_of(request: &Request) -> Result<Vec<String>, DmError> {
    let items = request
        .options
        .uri_query()
        .ok_or_else(|| DmError::BadRequest("Uri-Query is not UTF-8".into()))?;
    Ok(items.into_iter().map(str::to_owned).collect())
}

/// `depth=0..=3` of a 1.2 Discover.
fn depth_of(query: &[String]) -> Result<Option<u8>, DmError> {
    let mut depth = None;
    for item in query {
        match item.split_once('=') {
            Some(("depth", v)) => {
                let d: u8 = v
                    .parse()
                    .ok()
                    .filter(|d| *d <= 3)
                    .ok_or_else(|| DmError::BadRequest(format!("depth={v} is not 0 to 3")))?;
                depth = Some(d);
            }
            _ => {
                return Err(DmError::BadRequest(format!(
                    "unknown Discover parameter {item:?}"
                )));
            }
        }
    }
    Ok(depth)
}
