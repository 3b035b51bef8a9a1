//! Opaque: `application/octet-stream` (42). Core TS 1.1 §7.4 "Opaque".
//!
//! The payload is the raw value of one Opaque resource or resource instance (firmware
//! packages, keys, certificates). A resource the model does not know is taken as Opaque;
//! any other type is an error, as is any node that is not a single value.

use crate::codec::text::{check_single_path, single_node, single_value};
use crate::codec::{DecodeError, EncodeError};
use crate::format::ContentFormat;
use crate::model::Models;
use crate::node::{Node, model_type};
use crate::path::Path;
use crate::value::{DataType, Value};

const FORMAT: ContentFormat = ContentFormat::Opaque;

/// Encodes the bytes of the opaque single resource or resource instance at `path`.
pub fn encode(path: &Path, node: &Node) -> Result<Vec<u8>, EncodeError> {
    match single_value(FORMAT, path, node)? {
        Value::Opaque(bytes) => Ok(bytes.clone()),
        _ => Err(EncodeError::Unsupported {
            format: FORMAT,
            what: "values other than opaque",
        }),
    }
}

/// Decodes the payload as the opaque value at `path`.
pub fn decode(path: &Path, payload: &[u8], models: &dyn Models) -> Result<Node, DecodeError> {
    check_single_path(FORMAT, path, models)?;
    match model_type(models, path) {
        None | Some(DataType::Opaque) => single_node(path, Value::Opaque(payload.to_vec())),
        Some(expected) => Err(DecodeError::TypeMismatch {
            path: *path,
            expected,
            found: format!("{} raw bytes in {FORMAT}", payload.len()),
        }),
    }
}
