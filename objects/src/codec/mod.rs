//! Content-format codecs, both directions.
//!
//! One entry point per operation shape, dispatching on [`ContentFormat`]:
//! - [`encode`]/[`decode`]: the node at one path (Read, Write, Create, Observe notifications);
//! - [`encode_nodes`]/[`decode_nodes`]: nodes at several paths (Read/Write-Composite);
//! - [`encode_paths`]/[`decode_paths`]: the path list of a Read/Observe-Composite request;
//! - [`encode_timestamped`]/[`decode_timestamped`]: time series (Send, notifications).
//!
//! Decoders are total: any byte string gives a node or a [`DecodeError`], never a panic, never
//! an allocation larger than a small multiple of the input, never unbounded recursion.
//! Encoders take typed nodes and only fail when the format cannot carry what they are given.

pub mod cbor;
pub mod lwm2m_cbor;
pub mod oma_json;
pub mod opaque;
pub mod senml;
pub mod text;
pub mod tlv;

use crate::format::ContentFormat;
use crate::model::Models;
use crate::node::{Node, NodeError, NodeMap, TimestampedNodes};
use crate::path::Path;
use crate::value::DataType;

/// Nesting limit for self-describing formats (CBOR, JSON). LwM2M needs at most 6 levels
/// (LwM2M CBOR: object, instance, resource, resource instance, plus a value container).
pub const MAX_NESTING: usize = 16;

/// A payload that could not be decoded. Every variant is the peer's fault except
/// [`DecodeError::Unsupported`] (4.15 Unsupported Content-Format); the rest map to 4.00.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed {format} payload: {reason}")]
    Malformed {
        format: ContentFormat,
        reason: String,
    },
    #[error("{path}: expected a value of type {expected}, got {found}")]
    TypeMismatch {
        path: Path,
        expected: DataType,
        found: String,
    },
    #[error("{path}: unknown resource, and {format} does not say the value's type")]
    UnknownResource { path: Path, format: ContentFormat },
    #[error("{format} payload nested deeper than {MAX_NESTING} levels")]
    TooDeep { format: ContentFormat },
    #[error("{format} cannot carry {what}")]
    Unsupported {
        format: ContentFormat,
        what: &'static str,
    },
    #[error(transparent)]
    Node(#[from] NodeError),
}

impl DecodeError {
    pub fn malformed(format: ContentFormat, reason: impl Into<String>) -> DecodeError {
        DecodeError::Malformed {
            format,
            reason: reason.into(),
        }
    }

    /// True when the fault is the format choice, not the payload (CoAP 4.15).
    pub fn is_unsupported_format(&self) -> bool {
        matches!(self, DecodeError::Unsupported { .. })
    }
}

/// A node that a format cannot carry.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    #[error("{format} cannot carry {what}")]
    Unsupported {
        format: ContentFormat,
        what: &'static str,
    },
    #[error("{path}: {reason}")]
    InvalidValue { path: Path, reason: String },
    #[error(transparent)]
    Node(#[from] NodeError),
}

fn unsupported_decode(format: ContentFormat, what: &'static str) -> DecodeError {
    DecodeError::Unsupported { format, what }
}

fn unsupported_encode(format: ContentFormat, what: &'static str) -> EncodeError {
    EncodeError::Unsupported { format, what }
}

/// Encodes the node found at `path`.
pub fn encode(format: ContentFormat, path: &Path, node: &Node) -> Result<Vec<u8>, EncodeError> {
    node.check_fits(path)?;
    use ContentFormat as F;
    match format {
        F::Text => text::encode(path, node),
        F::Opaque => opaque::encode(path, node),
        F::Cbor => cbor::encode(path, node),
        F::Tlv | F::LegacyTlv => tlv::encode(path, node),
        F::OmaJson | F::LegacyOmaJson => oma_json::encode(path, node),
        F::SenmlJson => senml::json::encode(path, node),
        F::SenmlCbor => senml::cbor::encode(path, node),
        F::Lwm2mCbor => lwm2m_cbor::encode(path, node),
        F::LinkFormat | F::SenmlEtchJson | F::SenmlEtchCbor => {
            Err(unsupported_encode(format, "LwM2M nodes"))
        }
    }
}

/// Decodes the node at `path`, typing values through `models`.
pub fn decode(
    format: ContentFormat,
    path: &Path,
    payload: &[u8],
    models: &dyn Models,
) -> Result<Node, DecodeError> {
    use ContentFormat as F;
    if *path == Path::Root {
        return Err(unsupported_decode(format, "a node at the root path"));
    }
    let node = match format {
        F::Text => text::decode(path, payload, models),
        F::Opaque => opaque::decode(path, payload, models),
        F::Cbor => cbor::decode(path, payload, models),
        F::Tlv | F::LegacyTlv => tlv::decode(path, payload, models),
        F::OmaJson | F::LegacyOmaJson => oma_json::decode(path, payload, models),
        F::SenmlJson => senml::json::decode(path, payload, models),
        F::SenmlCbor => senml::cbor::decode(path, payload, models),
        F::Lwm2mCbor => lwm2m_cbor::decode(path, payload, models),
        F::LinkFormat | F::SenmlEtchJson | F::SenmlEtchCbor => {
            Err(unsupported_decode(format, "LwM2M nodes"))
        }
    }?;
    node.check_fits(path)?;
    Ok(node)
}

/// Encodes nodes at several paths (Read-Composite response, Write-Composite request).
pub fn encode_nodes(format: ContentFormat, nodes: &NodeMap) -> Result<Vec<u8>, EncodeError> {
    for (path, node) in nodes {
        node.check_fits(path)?;
    }
    match format {
        ContentFormat::SenmlJson => senml::json::encode_nodes(nodes),
        ContentFormat::SenmlCbor => senml::cbor::encode_nodes(nodes),
        ContentFormat::Lwm2mCbor => lwm2m_cbor::encode_nodes(nodes),
        _ => Err(unsupported_encode(format, "composite content")),
    }
}

/// Decodes nodes at several paths. With `requested` (a Read-Composite answer), values are
/// grouped under the requested path that holds them and a value outside every requested path
/// is an error; a requested path without values is absent from the map. Without `requested`
/// (Write-Composite), each value stands at its resource (multiple resources gathered) or, when
/// the model does not know it, at its own path.
pub fn decode_nodes(
    format: ContentFormat,
    payload: &[u8],
    requested: Option<&[Path]>,
    models: &dyn Models,
) -> Result<NodeMap, DecodeError> {
    match format {
        ContentFormat::SenmlJson => senml::json::decode_nodes(payload, requested, models),
        ContentFormat::SenmlCbor => senml::cbor::decode_nodes(payload, requested, models),
        ContentFormat::Lwm2mCbor => lwm2m_cbor::decode_nodes(payload, requested, models),
        _ => Err(unsupported_decode(format, "composite content")),
    }
}

/// Encodes the path list of a Read-Composite or Observe-Composite request.
pub fn encode_paths(format: ContentFormat, paths: &[Path]) -> Result<Vec<u8>, EncodeError> {
    match format {
        ContentFormat::SenmlJson | ContentFormat::SenmlEtchJson => senml::json::encode_paths(paths),
        ContentFormat::SenmlCbor | ContentFormat::SenmlEtchCbor => senml::cbor::encode_paths(paths),
        ContentFormat::Lwm2mCbor => lwm2m_cbor::encode_paths(paths),
        _ => Err(unsupported_encode(format, "a path list")),
    }
}

/// Decodes the path list of a Read-Composite or Observe-Composite request.
pub fn decode_paths(format: ContentFormat, payload: &[u8]) -> Result<Vec<Path>, DecodeError> {
    match format {
        ContentFormat::SenmlJson | ContentFormat::SenmlEtchJson => {
            senml::json::decode_paths(payload)
        }
        ContentFormat::SenmlCbor | ContentFormat::SenmlEtchCbor => {
            senml::cbor::decode_paths(payload)
        }
        ContentFormat::Lwm2mCbor => lwm2m_cbor::decode_paths(payload),
        _ => Err(unsupported_decode(format, "a path list")),
    }
}

/// Encodes a time series (Send, notifications with history). Entries keep their order.
pub fn encode_timestamped(
    format: ContentFormat,
    entries: &[TimestampedNodes],
) -> Result<Vec<u8>, EncodeError> {
    for entry in entries {
        for (path, node) in &entry.nodes {
            node.check_fits(path)?;
        }
    }
    match format {
        ContentFormat::SenmlJson => senml::json::encode_timestamped(entries),
        ContentFormat::SenmlCbor => senml::cbor::encode_timestamped(entries),
        ContentFormat::Lwm2mCbor => lwm2m_cbor::encode_timestamped(entries),
        _ => Err(unsupported_encode(format, "timestamped content")),
    }
}

/// Decodes a time series. Consecutive values with the same time form one entry; values at
/// resource-instance paths of a multiple resource are gathered into the resource.
pub fn decode_timestamped(
    format: ContentFormat,
    payload: &[u8],
    models: &dyn Models,
) -> Result<Vec<TimestampedNodes>, DecodeError> {
    match format {
        ContentFormat::SenmlJson => senml::json::decode_timestamped(payload, models),
        ContentFormat::SenmlCbor => senml::cbor::decode_timestamped(payload, models),
        ContentFormat::Lwm2mCbor => lwm2m_cbor::decode_timestamped(payload, models),
        _ => Err(unsupported_decode(format, "timestamped content")),
    }
}

/// A leaf with the time it was reported at (SenML `t`/`bt`), as decoded from the wire.
pub type TimedLeaf = (Option<crate::node::Timestamp>, crate::node::Leaf);

/// Brings a self-describing wire value to the type the model gives `path`. Unknown resources
/// keep the wire type. Shared by SenML, OMA JSON, CBOR and LwM2M CBOR.
pub fn type_value(
    format: ContentFormat,
    path: &Path,
    value: crate::value::Value,
    models: &dyn Models,
) -> Result<crate::value::Value, DecodeError> {
    let Some(expected) = crate::node::model_type(models, path) else {
        return Ok(value);
    };
    if expected == DataType::None {
        return Err(DecodeError::TypeMismatch {
            path: *path,
            expected,
            found: format!(
                "a {} value (executable resources have none)",
                value.data_type()
            ),
        });
    }
    let found = value.data_type();
    value
        .coerce(expected)
        .ok_or_else(|| DecodeError::TypeMismatch {
            path: *path,
            expected,
            found: format!("{found} in {format}"),
        })
}

/// Groups decoded leaves into nodes (see [`decode_nodes`] for the rules).
pub fn group_leaves(
    leaves: Vec<crate::node::Leaf>,
    requested: Option<&[Path]>,
    models: &dyn Models,
) -> Result<NodeMap, DecodeError> {
    use std::collections::BTreeMap;
    let mut groups: BTreeMap<Path, Vec<crate::node::Leaf>> = BTreeMap::new();
    for (path, value) in leaves {
        let base = match requested {
            Some(paths) => {
                // The most specific requested path wins, so `/3/0` and `/3/0/1` both requested
                // give `/3/0/1` its own node.
                let holder = paths
                    .iter()
                    .filter(|p| p.is_prefix_of(&path))
                    .max_by_key(|p| p.depth());
                match holder {
                    Some(Path::Root) => resource_base(&path, models),
                    Some(p) => *p,
                    None => {
                        return Err(NodeError::OutsideBase {
                            path,
                            base: paths.first().copied().unwrap_or(Path::Root),
                        }
                        .into());
                    }
                }
            }
            None => resource_base(&path, models),
        };
        groups.entry(base).or_default().push((path, value));
    }
    let mut out = NodeMap::new();
    for (base, leaves) in groups {
        out.insert(base, crate::node::build_node(&base, leaves, models)?);
    }
    Ok(out)
}

/// Where a value stands when nobody asked for a path: a resource instance of a resource the
/// model calls multiple is gathered into that resource; anything else stands at its own path.
fn resource_base(path: &Path, models: &dyn Models) -> Path {
    match *path {
        Path::ResourceInstance(o, i, r, _) => match models.resource(o, r) {
            Some(m) if m.multiple => Path::Resource(o, i, r),
            _ => *path,
        },
        other => other,
    }
}

/// Splits timed leaves into entries: consecutive leaves with the same time form one entry.
pub fn group_timestamped(
    leaves: Vec<TimedLeaf>,
    models: &dyn Models,
) -> Result<Vec<TimestampedNodes>, DecodeError> {
    let mut runs: Vec<(Option<crate::node::Timestamp>, Vec<crate::node::Leaf>)> = Vec::new();
    for (time, leaf) in leaves {
        match runs.last_mut() {
            Some((t, run)) if *t == time => run.push(leaf),
            _ => runs.push((time, vec![leaf])),
        }
    }
    runs.into_iter()
        .map(|(time, leaves)| {
            Ok(TimestampedNodes {
                time,
                nodes: group_leaves(leaves, None, models)?,
            })
        })
        .collect()
}
