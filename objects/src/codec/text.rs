//! Plain text: `text/plain;charset=utf-8` (0). Core TS 1.1 §7.4 "Plain Text" and Appendix C
//! (data types).
//!
//! One value of a single resource or of a resource instance, written as text:
//! - Integer, Unsigned Integer and Time (seconds since the epoch): decimal;
//! - Float: decimal. The encoder writes Rust's shortest round-trip digits without an exponent;
//!   the decoder also takes exponent notation (`1.5e3`) but no NaN or infinity, which LwM2M
//!   floats cannot carry in text;
//! - Boolean: `0` or `1`. Appendix C defines only these two; `true`/`false` are refused, as
//!   Leshan and Wakaama do, so a value never decodes differently here and on a device;
//! - Opaque: base64, standard alphabet, padded (Appendix C); the decoder also takes it unpadded;
//! - Objlnk: `oid:iid`; Corelnk: the link-format text; String: the UTF-8 text itself.
//!
//! Text does not say which type a value has, so the decoder needs the model and refuses a
//! resource it does not know ([`DecodeError::UnknownResource`]).
//!
//! This module also holds the path and multiplicity checks shared by the single-value formats
//! (text, opaque, CBOR).

use base64::Engine as _;

use crate::codec::{DecodeError, EncodeError};
use crate::format::ContentFormat;
use crate::model::Models;
use crate::node::{Node, NodeError, Resource, model_type};
use crate::path::Path;
use crate::value::{DataType, Value};

const FORMAT: ContentFormat = ContentFormat::Text;

/// Standard alphabet; writes padding, reads with or without it.
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// Encodes the value of the single resource or resource instance at `path`.
pub fn encode(path: &Path, node: &Node) -> Result<Vec<u8>, EncodeError> {
    let value = single_value(FORMAT, path, node)?;
    to_text(path, value).map(String::into_bytes)
}

/// Decodes the value of the single resource or resource instance at `path`.
pub fn decode(path: &Path, payload: &[u8], models: &dyn Models) -> Result<Node, DecodeError> {
    check_single_path(FORMAT, path, models)?;
    let Some(data_type) = model_type(models, path) else {
        return Err(DecodeError::UnknownResource {
            path: *path,
            format: FORMAT,
        });
    };
    let text = std::str::from_utf8(payload)
        .map_err(|e| DecodeError::malformed(FORMAT, format!("{path}: not UTF-8 ({e})")))?;
    let value = from_text(path, data_type, text)?;
    single_node(path, value)
}

/// The text form of one value.
pub fn to_text(path: &Path, value: &Value) -> Result<String, EncodeError> {
    Ok(match value {
        Value::String(s) | Value::Corelnk(s) => s.clone(),
        Value::Integer(i) | Value::Time(i) => i.to_string(),
        Value::UnsignedInteger(u) => u.to_string(),
        Value::Float(f) if f.is_finite() => f.to_string(),
        Value::Float(f) => {
            return Err(EncodeError::InvalidValue {
                path: *path,
                reason: format!("{f} has no LwM2M text form"),
            });
        }
        Value::Boolean(b) => if *b { "1" } else { "0" }.to_owned(),
        Value::Opaque(bytes) => BASE64.encode(bytes),
        Value::Objlnk(link) => link.to_string(),
    })
}

/// Reads `text` as a value of `data_type`.
pub fn from_text(path: &Path, data_type: DataType, text: &str) -> Result<Value, DecodeError> {
    let mismatch = |why: &str| DecodeError::TypeMismatch {
        path: *path,
        expected: data_type,
        found: format!("text {:?}{why}", excerpt(text)),
    };
    Ok(match data_type {
        DataType::String => Value::String(text.to_owned()),
        DataType::Corelnk => Value::Corelnk(text.to_owned()),
        DataType::Integer => Value::Integer(text.parse().map_err(|_| mismatch(""))?),
        DataType::Time => Value::Time(text.parse().map_err(|_| mismatch(""))?),
        DataType::UnsignedInteger => {
            Value::UnsignedInteger(text.parse().map_err(|_| mismatch(""))?)
        }
        DataType::Float => Value::Float(parse_float(text).ok_or_else(|| mismatch(""))?),
        DataType::Boolean => match text {
            "0" => Value::Boolean(false),
            "1" => Value::Boolean(true),
            _ => return Err(mismatch(" (a text boolean is 0 or 1)")),
        },
        DataType::Opaque => Value::Opaque(
            BASE64
                .decode(text)
                .map_err(|_| mismatch(" (opaque text must be base64)"))?,
        ),
        DataType::Objlnk => Value::Objlnk(text.parse().map_err(|_| mismatch(""))?),
        DataType::None => return Err(mismatch(" (executable resources have no value)")),
    })
}

/// Decimal or exponent notation, finite only. Rust's parser also takes `inf` and `NaN`
/// spelled out, and overflows to infinity: all refused.
fn parse_float(text: &str) -> Option<f64> {
    let looks_numeric = text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    let f: f64 = text.parse().ok()?;
    (looks_numeric && f.is_finite()).then_some(f)
}

/// The start of a payload, for error messages.
fn excerpt(text: &str) -> String {
    const MAX: usize = 32;
    let mut out: String = text.chars().take(MAX).collect();
    if text.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

/// The value of a single-value node (a single resource or a resource instance).
pub(crate) fn single_value<'a>(
    format: ContentFormat,
    path: &Path,
    node: &'a Node,
) -> Result<&'a Value, EncodeError> {
    match node {
        Node::Resource(Resource::Single(value)) | Node::ResourceInstance(value) => {
            node.check_fits(path)?;
            Ok(value)
        }
        Node::Resource(Resource::Multiple(_)) => Err(EncodeError::Unsupported {
            format,
            what: "a multiple resource",
        }),
        Node::Object(_) | Node::Instance(_) => Err(EncodeError::Unsupported {
            format,
            what: "an object or object instance",
        }),
    }
}

/// Refuses paths a single-value format cannot address: anything above a resource, and a
/// resource the model calls multiple (or a resource instance of one it calls single).
pub(crate) fn check_single_path(
    format: ContentFormat,
    path: &Path,
    models: &dyn Models,
) -> Result<(), DecodeError> {
    let multiple = |o, r| models.resource(o, r).map(|m| m.multiple);
    match *path {
        Path::Resource(o, _, r) if multiple(o, r) == Some(true) => Err(NodeError::Multiplicity {
            path: *path,
            expected: "multiple",
        }
        .into()),
        Path::ResourceInstance(o, _, r, _) if multiple(o, r) == Some(false) => {
            Err(NodeError::Multiplicity {
                path: *path,
                expected: "single",
            }
            .into())
        }
        Path::Resource(..) | Path::ResourceInstance(..) => Ok(()),
        Path::Root | Path::Object(_) | Path::Instance(..) => Err(DecodeError::Unsupported {
            format,
            what: "anything but a single resource or resource instance",
        }),
    }
}

/// The node holding one decoded value at `path` (checked by [`check_single_path`]).
pub(crate) fn single_node(path: &Path, value: Value) -> Result<Node, DecodeError> {
    let node = match path {
        Path::ResourceInstance(..) => Node::ResourceInstance(value),
        _ => Node::Resource(Resource::Single(value)),
    };
    node.check_fits(path)?;
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> Path {
        Path::Resource(1, 0, 0)
    }

    #[test]
    fn floats() {
        assert_eq!(
            from_text(&p(), DataType::Float, "1.5e3"),
            Ok(Value::Float(1500.0))
        );
        assert_eq!(
            from_text(&p(), DataType::Float, "-0.25"),
            Ok(Value::Float(-0.25))
        );
        for bad in ["NaN", "inf", "-infinity", "1e400", "", " 1", "0x10", "1,5"] {
            assert!(from_text(&p(), DataType::Float, bad).is_err(), "{bad}");
        }
        assert_eq!(
            to_text(&p(), &Value::Float(1e21)).ok(),
            Some("1000000000000000000000".into())
        );
        assert_eq!(to_text(&p(), &Value::Float(0.1)).ok(), Some("0.1".into()));
        assert!(to_text(&p(), &Value::Float(f64::NAN)).is_err());
    }

    #[test]
    fn booleans_are_digits() {
        assert_eq!(
            from_text(&p(), DataType::Boolean, "1"),
            Ok(Value::Boolean(true))
        );
        for bad in ["true", "false", "01", "2", ""] {
            assert!(from_text(&p(), DataType::Boolean, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn base64_padding_optional_on_input() {
        assert_eq!(
            to_text(&p(), &Value::Opaque(vec![1, 2, 3, 4, 5])).ok(),
            Some("AQIDBAU=".into())
        );
        assert_eq!(
            from_text(&p(), DataType::Opaque, "AQIDBAU"),
            Ok(Value::Opaque(vec![1, 2, 3, 4, 5]))
        );
        assert!(from_text(&p(), DataType::Opaque, "AQID BAU=").is_err());
        assert!(from_text(&p(), DataType::Opaque, "!,-INVALID$_'").is_err());
    }

    #[test]
    fn long_payloads_are_cut_in_errors() {
        let text = "x".repeat(1000);
        let Err(DecodeError::TypeMismatch { found, .. }) =
            from_text(&p(), DataType::Integer, &text)
        else {
            panic!("expected a type mismatch");
        };
        assert!(found.len() < 64, "{found}");
    }
}
