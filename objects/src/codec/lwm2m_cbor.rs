//! Placeholder: being written.
use crate::codec::{DecodeError, EncodeError};
use crate::format::ContentFormat;
use crate::model::Models;
use crate::node::Node;
use crate::path::Path;

pub fn encode(_path: &Path, _node: &Node) -> Result<Vec<u8>, EncodeError> {
    Err(EncodeError::Unsupported { format: ContentFormat::Lwm2mCbor, what: "anything yet" })
}

pub fn decode(_path: &Path, _payload: &[u8], _models: &dyn Models) -> Result<Node, DecodeError> {
    Err(DecodeError::Unsupported { format: ContentFormat::Lwm2mCbor, what: "anything yet" })
}

pub fn encode_nodes(_nodes: &crate::node::NodeMap) -> Result<Vec<u8>, EncodeError> {
    Err(EncodeError::Unsupported { format: ContentFormat::Lwm2mCbor, what: "anything yet" })
}

pub fn decode_nodes(
    _payload: &[u8],
    _requested: Option<&[Path]>,
    _models: &dyn Models,
) -> Result<crate::node::NodeMap, DecodeError> {
    Err(DecodeError::Unsupported { format: ContentFormat::Lwm2mCbor, what: "anything yet" })
}

pub fn encode_paths(_paths: &[Path]) -> Result<Vec<u8>, EncodeError> {
    Err(EncodeError::Unsupported { format: ContentFormat::Lwm2mCbor, what: "anything yet" })
}

pub fn decode_paths(_payload: &[u8]) -> Result<Vec<Path>, DecodeError> {
    Err(DecodeError::Unsupported { format: ContentFormat::Lwm2mCbor, what: "anything yet" })
}

pub fn encode_timestamped(_entries: &[crate::node::TimestampedNodes]) -> Result<Vec<u8>, EncodeError> {
    Err(EncodeError::Unsupported { format: ContentFormat::Lwm2mCbor, what: "anything yet" })
}

pub fn decode_timestamped(
    _payload: &[u8],
    _models: &dyn Models,
) -> Result<Vec<crate::node::TimestampedNodes>, DecodeError> {
    Err(DecodeError::Unsupported { format: ContentFormat::Lwm2mCbor, what: "anything yet" })
}
