//! Placeholder: being written.
use crate::codec::{DecodeError, EncodeError};
use crate::format::ContentFormat;
use crate::model::Models;
use crate::node::Node;
use crate::path::Path;

pub fn encode(_path: &Path, _node: &Node) -> Result<Vec<u8>, EncodeError> {
    Err(EncodeError::Unsupported { format: ContentFormat::Text, what: "anything yet" })
}

pub fn decode(_path: &Path, _payload: &[u8], _models: &dyn Models) -> Result<Node, DecodeError> {
    Err(DecodeError::Unsupported { format: ContentFormat::Text, what: "anything yet" })
}
