//! Typed downlink requests (Transport §6.4.4 and §6.4.5) and how each becomes a CoAP request
//! for one registered client: alternate path prefix from its object links, content format from
//! `choose_format` for its version and announced formats (unless the caller forces one), Accept
//! on reads, and every check that can be made before anything is sent.

use std::collections::BTreeMap;

use steward_coap::message::{Method, Request, encode_uint, option};
use steward_objects::format::Payload;
use steward_objects::link::NotificationAttributes;
use steward_objects::{
    ClientFormats, ContentFormat, Instance, Models, Node, NodeMap, Path, Resource, Version,
    choose_format, codec,
};

use super::error::DmError;
use crate::lwm2m::RegisteredClient;

/// How a Write changes what is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// PUT: the target becomes exactly the payload.
    Replace,
    /// POST: the payload's resources (or resource instances) are added or overwritten.
    PartialUpdate,
}

/// One operation the server asks a device to perform.
#[derive(Debug, Clone, PartialEq)]
pub enum DownlinkRequest {
    Read {
        path: Path,
        /// Forces the Accept format; `None` lets `choose_format` pick.
        format: Option<ContentFormat>,
    },
    Write {
        path: Path,
        node: Node,
        mode: WriteMode,
        format: Option<ContentFormat>,
    },
    WriteAttributes {
        path: Path,
        attributes: NotificationAttributes,
    },
    Execute {
        path: Path,
        /// Core §5.4.5 argument list, e.g. `0='a',1`.
        args: Option<String>,
    },
    Create {
        object: u16,
        /// The instance to create; `None` lets the device pick (its answer names it).
        instance: Option<u16>,
        resources: BTreeMap<u16, Resource>,
        format: Option<ContentFormat>,
    },
    Delete {
        path: Path,
    },
    Discover {
        path: Path,
        /// 1.2 `?depth=0..3`.
        depth: Option<u8>,
    },
    ReadComposite {
        paths: Vec<Path>,
        format: Option<ContentFormat>,
    },
    WriteComposite {
        nodes: NodeMap,
        format: Option<ContentFormat>,
    },
    Observe {
        path: Path,
        format: Option<ContentFormat>,
    },
    /// Active cancel (GET with Observe=1) of the observation of `path`. The stack gives every
    /// request a fresh token, so the device must match by path (as Leshan clients and ours do);
    /// [`super::DeviceRequests::cancel_observation`] is the passive, token-exact alternative.
    CancelObservation {
        path: Path,
    },
    ObserveComposite {
        paths: Vec<Path>,
        format: Option<ContentFormat>,
    },
    /// Active cancel of a composite observation (FETCH with Observe=1, same path list).
    CancelCompositeObservation {
        paths: Vec<Path>,
        format: Option<ContentFormat>,
    },
}

/// A request ready for the stack, with what decoding its answer needs.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltRequest {
    pub request: Request,
    /// The format of the payload sent, or asked for with Accept (what the answer should use).
    pub format: Option<ContentFormat>,
}

impl DownlinkRequest {
    /// The operation's name, for errors and logs.
    pub fn operation(&self) -> &'static str {
        match self {
            DownlinkRequest::Read { .. } => "Read",
            DownlinkRequest::Write { .. } => "Write",
            DownlinkRequest::WriteAttributes { .. } => "Write-Attributes",
            DownlinkRequest::Execute { .. } => "Execute",
            DownlinkRequest::Create { .. } => "Create",
            DownlinkRequest::Delete { .. } => "Delete",
            DownlinkRequest::Discover { .. } => "Discover",
            DownlinkRequest::ReadComposite { .. } => "Read-Composite",
            DownlinkRequest::WriteComposite { .. } => "Write-Composite",
            DownlinkRequest::Observe { .. } => "Observe",
            DownlinkRequest::CancelObservation { .. } => "Cancel Observation",
            DownlinkRequest::ObserveComposite { .. } => "Observe-Composite",
            DownlinkRequest::CancelCompositeObservation { .. } => "Cancel Observation-Composite",
        }
    }

    /// True for requests whose answer starts an observation.
    pub fn is_observe(&self) -> bool {
        matches!(
            self,
            DownlinkRequest::Observe { .. } | DownlinkRequest::ObserveComposite { .. }
        )
    }

    /// Builds the CoAP request for `client`, typing through `models` (the client's view of the
    /// registry). Fails without side effects when the request cannot be valid for this client.
    pub fn build(
        &self,
        client: &RegisteredClient,
        models: &dyn Models,
    ) -> Result<BuiltRequest, DmError> {
        let op = self.operation();
        let formats = &client.formats;
        let uri = |path: &Path| client.links.client_path(path);
        match self {
            DownlinkRequest::Read { path, format } | DownlinkRequest::Observe { path, format } => {
                not_root(op, path)?;
                let format = pick(op, formats, read_shape(models, path), *format)?;
                let mut request = Request::new(Method::Get).with_path(&uri(path));
                if self.is_observe() {
                    request = request.with_option(option::OBSERVE, encode_uint(0));
                }
                request = request.with_option(option::ACCEPT, accept(format));
                Ok(BuiltRequest {
                    request,
                    format: Some(format),
                })
            }
            DownlinkRequest::CancelObservation { path } => {
                not_root(op, path)?;
                let format = pick(op, formats, read_shape(models, path), None)?;
                let request = Request::new(Method::Get)
                    .with_path(&uri(path))
                    .with_option(option::OBSERVE, encode_uint(1))
                    .with_option(option::ACCEPT, accept(format));
                Ok(BuiltRequest {
                    request,
                    format: Some(format),
                })
            }
            DownlinkRequest::Write {
                path,
                node,
                mode,
                format,
            } => {
                check_write_path(op, path, *mode, formats.lwm2m, models)?;
                node.check_fits(path)
                    .map_err(|e| invalid(op, e.to_string()))?;
                let shape = node_shape(models, path, node);
                if *mode == WriteMode::PartialUpdate && shape != Payload::Tree {
                    return Err(invalid(op, "a partial update carries resources".into()));
                }
                let format = pick(op, formats, shape, *format)?;
                let payload = codec::encode(format, path, node)?;
                let method = match mode {
                    WriteMode::Replace => Method::Put,
                    WriteMode::PartialUpdate => Method::Post,
                };
                Ok(BuiltRequest {
                    request: Request::new(method)
                        .with_path(&uri(path))
                        .with_payload(format.code(), payload),
                    format: Some(format),
                })
            }
            DownlinkRequest::WriteAttributes { path, attributes } => {
                not_root(op, path)?;
                if attributes.is_empty() {
                    return Err(invalid(op, "no attribute given".into()));
                }
                attributes.validate()?;
                let mut request = Request::new(Method::Put).with_path(&uri(path));
                for item in attributes.to_query() {
                    request = request.with_query(&item);
                }
                Ok(BuiltRequest {
                    request,
                    format: None,
                })
            }
            DownlinkRequest::Execute { path, args } => {
                if !matches!(path, Path::Resource(..)) {
                    return Err(not_allowed(op, path));
                }
                let mut request = Request::new(Method::Post).with_path(&uri(path));
                if let Some(args) = args.as_deref().filter(|a| !a.is_empty()) {
                    request =
                        request.with_payload(ContentFormat::Text.code(), args.as_bytes().to_vec());
                }
                Ok(BuiltRequest {
                    request,
                    format: None,
                })
            }
            DownlinkRequest::Create {
                object,
                instance,
                resources,
                format,
            } => {
                let instance_node = Instance {
                    resources: resources.clone(),
                };
                // With an ID, the payload names the instance (TLV instance wrapper, SenML
                // names /o/i/r). Without, it holds bare resources, which only TLV can say
                // without naming an instance: the device answers with the ID it picked.
                let (path, node, format) = match instance {
                    Some(iid) => {
                        let node = Node::Object(BTreeMap::from([(*iid, instance_node)]));
                        let format = pick(op, formats, Payload::Tree, *format)?;
                        (Path::Object(*object), node, format)
                    }
                    None => {
                        let format = format.unwrap_or(ContentFormat::Tlv);
                        if !matches!(format, ContentFormat::Tlv | ContentFormat::LegacyTlv) {
                            return Err(invalid(
                                op,
                                "without an instance ID the payload must be TLV".into(),
                            ));
                        }
                        check_accepts(op, formats, format, Payload::Tree)?;
                        (
                            Path::Instance(*object, 0),
                            Node::Instance(instance_node),
                            format,
                        )
                    }
                };
                let payload = codec::encode(format, &path, &node)?;
                Ok(BuiltRequest {
                    request: Request::new(Method::Post)
                        .with_path(&uri(&Path::Object(*object)))
                        .with_payload(format.code(), payload),
                    format: Some(format),
                })
            }
            DownlinkRequest::Delete { path } => {
                match path {
                    Path::Instance(..) => {}
                    Path::ResourceInstance(..) => needs(op, formats, Version::V1_2, "1.2")?,
                    _ => return Err(not_allowed(op, path)),
                }
                Ok(BuiltRequest {
                    request: Request::new(Method::Delete).with_path(&uri(path)),
                    format: None,
                })
            }
            DownlinkRequest::Discover { path, depth } => {
                if matches!(path, Path::Root | Path::ResourceInstance(..)) {
                    return Err(not_allowed(op, path));
                }
                let mut request = Request::new(Method::Get)
                    .with_path(&uri(path))
                    .with_option(option::ACCEPT, accept(ContentFormat::LinkFormat));
                if let Some(depth) = depth {
                    needs("Discover with depth", formats, Version::V1_2, "1.2")?;
                    if *depth > 3 {
                        return Err(invalid(op, format!("depth {depth} is not 0 to 3")));
                    }
                    request = request.with_query(&format!("depth={depth}"));
                }
                Ok(BuiltRequest {
                    request,
                    format: Some(ContentFormat::LinkFormat),
                })
            }
            DownlinkRequest::ReadComposite { paths, format }
            | DownlinkRequest::ObserveComposite { paths, format }
            | DownlinkRequest::CancelCompositeObservation { paths, format } => {
                needs(op, formats, Version::V1_1, "1.1")?;
                if paths.is_empty() {
                    return Err(invalid(op, "no path given".into()));
                }
                let format = pick(op, formats, Payload::Composite, *format)?;
                let payload = codec::encode_paths(format, paths)?;
                let mut request = Request::new(Method::Fetch).with_path(&uri(&Path::Root));
                match self {
                    DownlinkRequest::ObserveComposite { .. } => {
                        request = request.with_option(option::OBSERVE, encode_uint(0));
                    }
                    DownlinkRequest::CancelCompositeObservation { .. } => {
                        request = request.with_option(option::OBSERVE, encode_uint(1));
                    }
                    _ => {}
                }
                request = request
                    .with_option(option::ACCEPT, accept(format))
                    .with_payload(format.code(), payload);
                Ok(BuiltRequest {
                    request,
                    format: Some(format),
                })
            }
            DownlinkRequest::WriteComposite { nodes, format } => {
                needs(op, formats, Version::V1_1, "1.1")?;
                if nodes.is_empty() {
                    return Err(invalid(op, "no node given".into()));
                }
                for (path, node) in nodes {
                    // Write-Composite writes resources and resource instances only (Core
                    // §5.4.3.3): instances are created, not written, this way.
                    if !matches!(path, Path::Resource(..) | Path::ResourceInstance(..)) {
                        return Err(not_allowed(op, path));
                    }
                    node.check_fits(path)
                        .map_err(|e| invalid(op, e.to_string()))?;
                }
                let format = pick(op, formats, Payload::Composite, *format)?;
                let payload = codec::encode_nodes(format, nodes)?;
                Ok(BuiltRequest {
                    request: Request::new(Method::IPatch)
                        .with_path(&uri(&Path::Root))
                        .with_payload(format.code(), payload),
                    format: Some(format),
                })
            }
        }
    }
}

/// What decoding the answer to a request needs: the operation and the paths it targets, without
/// the values it carries (those are already in the built CoAP payload). This is what the
/// service keeps for a request once it is built, and what a persisted queue entry stores
/// (see [`super::queue`]), so an answer can be decoded after a restart too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestKind {
    Read { path: Path },
    Write { path: Path, mode: WriteMode },
    WriteAttributes { path: Path },
    Execute { path: Path },
    Create { object: u16, instance: Option<u16> },
    Delete { path: Path },
    Discover { path: Path },
    ReadComposite { paths: Vec<Path> },
    WriteComposite { paths: Vec<Path> },
    Observe { path: Path },
    CancelObservation { path: Path },
    ObserveComposite { paths: Vec<Path> },
    CancelCompositeObservation { paths: Vec<Path> },
}

impl RequestKind {
    /// The operation's name, for errors and logs (as [`DownlinkRequest::operation`]).
    pub fn operation(&self) -> &'static str {
        match self {
            RequestKind::Read { .. } => "Read",
            RequestKind::Write { .. } => "Write",
            RequestKind::WriteAttributes { .. } => "Write-Attributes",
            RequestKind::Execute { .. } => "Execute",
            RequestKind::Create { .. } => "Create",
            RequestKind::Delete { .. } => "Delete",
            RequestKind::Discover { .. } => "Discover",
            RequestKind::ReadComposite { .. } => "Read-Composite",
            RequestKind::WriteComposite { .. } => "Write-Composite",
            RequestKind::Observe { .. } => "Observe",
            RequestKind::CancelObservation { .. } => "Cancel Observation",
            RequestKind::ObserveComposite { .. } => "Observe-Composite",
            RequestKind::CancelCompositeObservation { .. } => "Cancel Observation-Composite",
        }
    }

    /// True for requests whose answer starts an observation.
    pub fn is_observe(&self) -> bool {
        matches!(
            self,
            RequestKind::Observe { .. } | RequestKind::ObserveComposite { .. }
        )
    }

    /// The observed paths of an Observe or Observe-Composite; empty for anything else.
    pub fn observed_paths(&self) -> Vec<Path> {
        match self {
            RequestKind::Observe { path } => vec![*path],
            RequestKind::ObserveComposite { paths } => paths.clone(),
            _ => Vec::new(),
        }
    }
}

impl From<&DownlinkRequest> for RequestKind {
    fn from(request: &DownlinkRequest) -> RequestKind {
        match request {
            DownlinkRequest::Read { path, .. } => RequestKind::Read { path: *path },
            DownlinkRequest::Write { path, mode, .. } => RequestKind::Write {
                path: *path,
                mode: *mode,
            },
            DownlinkRequest::WriteAttributes { path, .. } => {
                RequestKind::WriteAttributes { path: *path }
            }
            DownlinkRequest::Execute { path, .. } => RequestKind::Execute { path: *path },
            DownlinkRequest::Create {
                object, instance, ..
            } => RequestKind::Create {
                object: *object,
                instance: *instance,
            },
            DownlinkRequest::Delete { path } => RequestKind::Delete { path: *path },
            DownlinkRequest::Discover { path, .. } => RequestKind::Discover { path: *path },
            DownlinkRequest::ReadComposite { paths, .. } => RequestKind::ReadComposite {
                paths: paths.clone(),
            },
            DownlinkRequest::WriteComposite { nodes, .. } => RequestKind::WriteComposite {
                paths: nodes.keys().copied().collect(),
            },
            DownlinkRequest::Observe { path, .. } => RequestKind::Observe { path: *path },
            DownlinkRequest::CancelObservation { path } => {
                RequestKind::CancelObservation { path: *path }
            }
            DownlinkRequest::ObserveComposite { paths, .. } => RequestKind::ObserveComposite {
                paths: paths.clone(),
            },
            DownlinkRequest::CancelCompositeObservation { paths, .. } => {
                RequestKind::CancelCompositeObservation {
                    paths: paths.clone(),
                }
            }
        }
    }
}

fn accept(format: ContentFormat) -> Vec<u8> {
    encode_uint(u32::from(format.code()))
}

fn invalid(operation: &'static str, reason: String) -> DmError {
    DmError::InvalidRequest { operation, reason }
}

fn not_allowed(operation: &'static str, path: &Path) -> DmError {
    DmError::PathNotAllowed {
        operation,
        path: *path,
    }
}

fn not_root(operation: &'static str, path: &Path) -> Result<(), DmError> {
    if *path == Path::Root {
        Err(not_allowed(operation, path))
    } else {
        Ok(())
    }
}

fn needs(
    operation: &'static str,
    formats: &ClientFormats,
    version: Version,
    name: &'static str,
) -> Result<(), DmError> {
    if formats.lwm2m >= version {
        Ok(())
    } else {
        Err(DmError::VersionTooLow {
            operation,
            needs: name,
            has: formats.lwm2m.to_string(),
        })
    }
}

/// The caller's format if the client can take it for this content, else `choose_format`'s.
fn pick(
    operation: &'static str,
    formats: &ClientFormats,
    shape: Payload,
    forced: Option<ContentFormat>,
) -> Result<ContentFormat, DmError> {
    match forced {
        Some(format) => {
            check_accepts(operation, formats, format, shape)?;
            Ok(format)
        }
        None => choose_format(formats, shape).ok_or(DmError::NoFormat { operation }),
    }
}

/// A forced format must at least be one the client's version has and the content's shape
/// allows; whether the device can encode this very value (opaque for a string) is its call,
/// and its 4.06 is surfaced as such.
fn check_accepts(
    operation: &'static str,
    formats: &ClientFormats,
    format: ContentFormat,
    shape: Payload,
) -> Result<(), DmError> {
    if formats.accepts(format, shape) {
        Ok(())
    } else {
        Err(DmError::FormatNotAccepted { operation, format })
    }
}

/// What a Read of `path` returns: one value for a single resource or a resource instance, a
/// tree otherwise. A resource the model does not know is read as a tree, whose formats say
/// the value's type.
pub(crate) fn read_shape(models: &dyn Models, path: &Path) -> Payload {
    match *path {
        Path::Resource(o, _, r) => match models.resource(o, r) {
            Some(m) if !m.multiple => Payload::SingleValue(m.data_type),
            _ => Payload::Tree,
        },
        Path::ResourceInstance(o, _, r, _) => match models.resource(o, r) {
            Some(m) => Payload::SingleValue(m.data_type),
            None => Payload::Tree,
        },
        _ => Payload::Tree,
    }
}

fn node_shape(models: &dyn Models, path: &Path, node: &Node) -> Payload {
    match node {
        Node::Resource(Resource::Single(v)) | Node::ResourceInstance(v) => Payload::SingleValue(
            steward_objects::node::model_type(models, path).unwrap_or(v.data_type()),
        ),
        _ => Payload::Tree,
    }
}

/// Transport §6.4.4: Replace on an instance, a resource or (1.1+) a resource instance; Partial
/// Update on an instance, or on a resource only when it is multiple (it adds instances).
/// An object is never written (a POST to it is a Create).
fn check_write_path(
    op: &'static str,
    path: &Path,
    mode: WriteMode,
    version: Version,
    models: &dyn Models,
) -> Result<(), DmError> {
    let allowed = match (mode, path) {
        (_, Path::Root | Path::Object(_)) => false,
        (WriteMode::Replace, Path::Instance(..) | Path::Resource(..)) => true,
        (WriteMode::Replace, Path::ResourceInstance(..)) => {
            if version < Version::V1_1 {
                return Err(DmError::VersionTooLow {
                    operation: "Write to a resource instance",
                    needs: "1.1",
                    has: version.to_string(),
                });
            }
            true
        }
        (WriteMode::PartialUpdate, Path::Instance(..)) => true,
        (WriteMode::PartialUpdate, Path::Resource(o, _, r)) => {
            models.resource(*o, *r).is_none_or(|m| m.multiple)
        }
        (WriteMode::PartialUpdate, Path::ResourceInstance(..)) => false,
    };
    if !allowed {
        return Err(not_allowed(op, path));
    }
    // Writability is the device's call (its models may be newer than ours): a read-only
    // resource comes back as its 4.05, surfaced as `DmError::Device`.
    Ok(())
}
