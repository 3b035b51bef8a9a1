//! OMA LwM2M JSON (content format 11543, and the pre-registration 1543): LwM2M 1.0 Core
//! §6.4.4, kept in 1.1 §7.4.5 for servers talking to 1.0 clients.
//!
//! ```json
//! {"bn":"/3/0/","bt":25462634,
//!  "e":[{"n":"0","sv":"Open Mobile Alliance"},{"n":"6/0","v":1},{"n":"9","bv":true,"t":-5}]}
//! ```
//!
//! The base name `bn` is only allowed at the top; each entry's `n` is appended to it (a `/` is
//! inserted when neither side has one, which 1.0 clients sometimes leave out). Without `bn`
//! names are relative to the request path. Values: `v` number (Integer, Unsigned Integer,
//! Float, Time), `bv` boolean, `sv` string (String, Corelnk, and Opaque as base64), `ov`
//! object link `"oid:iid"`.
//!
//! Times (`bt` plus each entry's `t`) describe history: a notification may report one
//! resource several times. Decoding gives the node's current state, so of several entries
//! for one path the latest wins; two entries for one path at the same time are an error.
//! Time series go through SenML; the encoder writes no times.
//!
//! JSON is flat, so an empty object instance or multiple resource can only be written as the
//! node itself (`"e":[]`), never nested inside a larger node.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::codec::{DecodeError, EncodeError, MAX_NESTING, type_value};
use crate::format::ContentFormat;
use crate::model::Models;
use crate::node::{Leaf, Node, NodeError, Resource, build_node, model_type};
use crate::path::Path;
use crate::value::{DataType, ObjLink, Value};

const FORMAT: ContentFormat = ContentFormat::OmaJson;

/// Standard alphabet with padding on output (Core Appendix C); input may omit the padding.
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bt: Option<f64>,
    e: Vec<Entry>,
}

/// Unknown fields are refused rather than skipped: an entry carrying `bn` or a SenML label
/// (`vs`, `vb`) would otherwise be silently misread.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    #[serde(default)]
    n: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    v: Option<serde_json::Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bv: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ov: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

pub fn encode(path: &Path, node: &Node) -> Result<Vec<u8>, EncodeError> {
    check_no_nested_empty(node)?;
    let base = base_of(path, node);
    let prefix = base.depth();
    let mut entries = Vec::new();
    for (leaf_path, value) in node.leaves(path)? {
        let name = leaf_path
            .segments()
            .get(prefix..)
            .unwrap_or_default()
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join("/");
        entries.push(entry(name, &leaf_path, value)?);
    }
    let document = Document {
        bn: Some(base_name(&base)),
        bt: None,
        e: entries,
    };
    serde_json::to_vec(&document).map_err(|err| EncodeError::InvalidValue {
        path: *path,
        reason: format!("JSON serialization failed: {err}"),
    })
}

/// The path entry names are relative to: the node itself when it holds several values, its
/// parent when it is one value (so every entry has a non-empty name).
fn base_of(path: &Path, node: &Node) -> Path {
    match node {
        Node::Object(_) | Node::Instance(_) | Node::Resource(Resource::Multiple(_)) => *path,
        Node::Resource(Resource::Single(_)) | Node::ResourceInstance(_) => {
            path.parent().unwrap_or(*path)
        }
    }
}

fn base_name(base: &Path) -> String {
    match base {
        Path::Root => "/".to_owned(),
        other => format!("{other}/"),
    }
}

fn entry(n: String, path: &Path, value: &Value) -> Result<Entry, EncodeError> {
    let mut e = Entry {
        n,
        ..Entry::default()
    };
    match value {
        Value::String(s) | Value::Corelnk(s) => e.sv = Some(s.clone()),
        Value::Opaque(bytes) => e.sv = Some(BASE64.encode(bytes)),
        Value::Objlnk(link) => e.ov = Some(link.to_string()),
        Value::Boolean(b) => e.bv = Some(*b),
        Value::Integer(i) | Value::Time(i) => e.v = Some((*i).into()),
        Value::UnsignedInteger(u) => e.v = Some((*u).into()),
        Value::Float(f) => {
            e.v = Some(serde_json::Number::from_f64(*f).ok_or_else(|| {
                EncodeError::InvalidValue {
                    path: *path,
                    reason: format!("{f} has no JSON representation"),
                }
            })?);
        }
    }
    Ok(e)
}

/// Flat entries cannot say "this instance exists but holds nothing" below the top node.
fn check_no_nested_empty(node: &Node) -> Result<(), EncodeError> {
    let unsupported = |what| {
        Err(EncodeError::Unsupported {
            format: FORMAT,
            what,
        })
    };
    let empty_multiple = |inst: &crate::node::Instance| {
        inst.resources
            .values()
            .any(|r| matches!(r, Resource::Multiple(values) if values.is_empty()))
    };
    match node {
        Node::Object(instances) => {
            if instances.values().any(|inst| inst.resources.is_empty()) {
                return unsupported("an empty object instance inside an object");
            }
            if instances.values().any(empty_multiple) {
                return unsupported("a multiple resource without instances inside an object");
            }
        }
        Node::Instance(inst) if empty_multiple(inst) => {
            return unsupported("a multiple resource without instances inside an instance");
        }
        _ => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

fn malformed(reason: impl Into<String>) -> DecodeError {
    DecodeError::malformed(FORMAT, reason)
}

pub fn decode(path: &Path, payload: &[u8], models: &dyn Models) -> Result<Node, DecodeError> {
    check_nesting(payload)?;
    let document: Document = serde_json::from_slice(payload)
        .map_err(|err| malformed(format!("not an OMA JSON document: {err}")))?;
    let base = match &document.bn {
        Some(bn) => bn.clone(),
        None => base_name(path),
    };
    let base_time = document.bt.unwrap_or(0.0);
    // Latest value per path; see the module comment on history.
    let mut latest: BTreeMap<Path, (f64, Value)> = BTreeMap::new();
    for entry in document.e {
        let leaf_path = resolve(&base, &entry.n)?;
        if leaf_path.depth() < 3 {
            return Err(malformed(format!(
                "{leaf_path}: an entry names an object or instance (only resources carry values)"
            )));
        }
        let time = base_time + entry.t.unwrap_or(0.0);
        let value = entry_value(&leaf_path, entry, models)?;
        match latest.get(&leaf_path) {
            Some((seen, _)) if *seen == time => {
                return Err(NodeError::Duplicate { path: leaf_path }.into());
            }
            Some((seen, _)) if *seen > time => {}
            _ => {
                latest.insert(leaf_path, (time, value));
            }
        }
    }
    let leaves: Vec<Leaf> = latest.into_iter().map(|(p, (_, v))| (p, v)).collect();
    if leaves.is_empty() {
        return empty_node(path, models);
    }
    Ok(build_node(path, leaves, models)?)
}

/// `"e":[]` at a resource can only be a multiple resource without instances.
fn empty_node(path: &Path, models: &dyn Models) -> Result<Node, DecodeError> {
    match *path {
        Path::Resource(o, _, r) if models.resource(o, r).is_none_or(|m| m.multiple) => {
            Ok(Node::Resource(Resource::Multiple(BTreeMap::new())))
        }
        _ => Ok(build_node(path, Vec::new(), models)?),
    }
}

/// `bn` + `n`, inserting or dropping one `/` at the seam so `"/3/0"`+`"1"` and
/// `"/3/0/"`+`"/1"` both give `/3/0/1`.
fn resolve(base: &str, name: &str) -> Result<Path, DecodeError> {
    let full = match (base.ends_with('/'), name.starts_with('/')) {
        _ if name.is_empty() => base.to_owned(),
        (true, true) => format!("{}{name}", base.strip_suffix('/').unwrap_or(base)),
        (false, false) => format!("{base}/{name}"),
        _ => format!("{base}{name}"),
    };
    full.parse().map_err(|err| {
        let shown: String = full.chars().take(48).collect();
        malformed(format!("entry name {shown:?} is not a path: {err}"))
    })
}

/// One entry's value, typed through the model. Opaque travels as base64 in `sv`, which only
/// the model can tell from a string.
fn entry_value(path: &Path, entry: Entry, models: &dyn Models) -> Result<Value, DecodeError> {
    let Entry { v, bv, sv, ov, .. } = entry;
    let wire = match (v, bv, sv, ov) {
        (Some(number), None, None, None) => number_value(path, &number)?,
        (None, Some(b), None, None) => Value::Boolean(b),
        (None, None, Some(s), None) => {
            if model_type(models, path) == Some(DataType::Opaque) {
                let bytes = BASE64
                    .decode(s.as_bytes())
                    .map_err(|_| DecodeError::TypeMismatch {
                        path: *path,
                        expected: DataType::Opaque,
                        found: "a string that is not base64".into(),
                    })?;
                Value::Opaque(bytes)
            } else {
                Value::String(s)
            }
        }
        (None, None, None, Some(link)) => Value::Objlnk(parse_objlnk(path, &link)?),
        (None, None, None, None) => {
            return Err(malformed(format!("{path}: entry without a value")));
        }
        _ => return Err(malformed(format!("{path}: entry with more than one value"))),
    };
    type_value(FORMAT, path, wire, models)
}

fn number_value(path: &Path, number: &serde_json::Number) -> Result<Value, DecodeError> {
    if let Some(i) = number.as_i64() {
        Ok(Value::Integer(i))
    } else if let Some(u) = number.as_u64() {
        Ok(Value::UnsignedInteger(u))
    } else {
        number
            .as_f64()
            .map(Value::Float)
            .ok_or_else(|| malformed(format!("{path}: number {number} out of range")))
    }
}

/// `"oid:iid"`. `"FFFF:FFFF"` is also read as the null link: an example in the 1.0 TS and
/// clients copied from it write the reserved ID in hex.
fn parse_objlnk(path: &Path, text: &str) -> Result<ObjLink, DecodeError> {
    if text.eq_ignore_ascii_case("FFFF:FFFF") {
        return Ok(ObjLink::NULL);
    }
    text.parse().map_err(|err| DecodeError::TypeMismatch {
        path: *path,
        expected: DataType::Objlnk,
        found: format!("{err}"),
    })
}

/// Refuses documents nested deeper than [`MAX_NESTING`] before serde sees them: OMA JSON
/// needs three levels, and serde's own limit (128) is far above ours.
fn check_nesting(payload: &[u8]) -> Result<(), DecodeError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in payload {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(DecodeError::TooDeep { format: FORMAT });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ModelRegistry, NoModels};

    fn p(s: &str) -> Path {
        s.parse().unwrap_or(Path::Root)
    }

    fn single(v: Value) -> Node {
        Node::Resource(Resource::Single(v))
    }

    #[test]
    fn names_join_with_one_slash() {
        for (bn, n) in [
            ("/3/0/", "1"),
            ("/3/0", "1"),
            ("/3/0/", "/1"),
            ("/3/0", "/1"),
            ("/3/0/1", ""),
            ("/", "3/0/1"),
        ] {
            assert_eq!(resolve(bn, n), Ok(p("/3/0/1")), "{bn:?} + {n:?}");
        }
        assert!(resolve("/3/0/", "a").is_err());
        assert!(resolve("3/0", "1").is_err());
    }

    #[test]
    fn without_bn_names_are_relative_to_the_request() {
        let doc = br#"{"e":[{"n":"0","sv":"Open Mobile Alliance"}]}"#;
        let node = decode(&p("/3/0"), doc, &NoModels);
        assert!(matches!(node, Ok(Node::Instance(ref i)) if i.resources.len() == 1));
        let single_doc = br#"{"e":[{"sv":"x"}]}"#;
        assert_eq!(
            decode(&p("/3/0/0"), single_doc, &NoModels),
            Ok(single(Value::String("x".into())))
        );
    }

    #[test]
    fn latest_time_wins_and_equal_times_clash() {
        let doc = br#"{"bn":"/3303/0/","bt":25462634,"e":[
            {"n":"5700","v":22.4,"t":-5},{"n":"5700","v":22.9,"t":-30},{"n":"5700","v":24.1,"t":-50}]}"#;
        assert_eq!(
            decode(&p("/3303/0/5700"), doc, &NoModels),
            Ok(single(Value::Float(22.4)))
        );
        let clash = br#"{"bn":"/3/0/","e":[{"n":"9","v":1},{"n":"9","v":2}]}"#;
        assert!(matches!(
            decode(&p("/3/0"), clash, &NoModels),
            Err(DecodeError::Node(NodeError::Duplicate { .. }))
        ));
    }

    #[test]
    fn entries_need_exactly_one_known_value() {
        for doc in [
            r#"{"e":[{"n":"1"}]}"#,
            r#"{"e":[{"n":"1","v":1,"sv":"x"}]}"#,
            r#"{"e":[{"n":"1","vs":"x"}]}"#,
            r#"{"e":[{"n":"1","bn":"/4/0/","v":1}]}"#,
            r#"{"bn":"/3/0/","bn":"/4/0/","e":[]}"#,
            r#"{"e":[{"n":"1","v":"1"}]}"#,
            r#"{"e":{}}"#,
            r#"[]"#,
            r#"{"e":[{"n":1,"v":1}]}"#,
        ] {
            assert!(
                decode(&p("/3/0"), doc.as_bytes(), &NoModels).is_err(),
                "{doc}"
            );
        }
    }

    #[test]
    fn opaque_is_base64_when_the_model_says_so() {
        let models = ModelRegistry::core();
        // /5/0/0 Package is Opaque.
        let doc = br#"{"bn":"/5/0/","e":[{"n":"0","sv":"AQID"}]}"#;
        assert_eq!(
            decode(&p("/5/0/0"), doc, &models),
            Ok(single(Value::Opaque(vec![1, 2, 3])))
        );
        let unpadded = br#"{"bn":"/5/0/","e":[{"n":"0","sv":"AQ"}]}"#;
        assert_eq!(
            decode(&p("/5/0/0"), unpadded, &models),
            Ok(single(Value::Opaque(vec![1])))
        );
        let bad = br#"{"bn":"/5/0/","e":[{"n":"0","sv":"*"}]}"#;
        assert!(matches!(
            decode(&p("/5/0/0"), bad, &models),
            Err(DecodeError::TypeMismatch { .. })
        ));
        let node = single(Value::Opaque(vec![1]));
        assert_eq!(
            encode(&p("/5/0/0"), &node).ok(),
            Some(br#"{"bn":"/5/0/","e":[{"n":"0","sv":"AQ=="}]}"#.to_vec())
        );
    }

    #[test]
    fn object_links_and_the_hex_null_link() {
        let doc = br#"{"bn":"/66/0/","e":[{"n":"2","ov":"67:0"}]}"#;
        assert_eq!(
            decode(&p("/66/0/2"), doc, &NoModels),
            Ok(single(Value::Objlnk(ObjLink::new(67, 0))))
        );
        let null = br#"{"bn":"/66/1/","e":[{"n":"2","ov":"FFFF:FFFF"}]}"#;
        assert_eq!(
            decode(&p("/66/1/2"), null, &NoModels),
            Ok(single(Value::Objlnk(ObjLink::NULL)))
        );
        let bad = br#"{"bn":"/66/1/","e":[{"n":"2","ov":"67"}]}"#;
        assert!(decode(&p("/66/1/2"), bad, &NoModels).is_err());
    }

    #[test]
    fn nesting_is_bounded_before_parsing() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            decode(&p("/3/0"), deep.as_bytes(), &NoModels),
            Err(DecodeError::TooDeep { format: FORMAT })
        );
        // Brackets inside strings do not count.
        let quoted = format!(
            r#"{{"bn":"/3/0/","e":[{{"n":"0","sv":"{}\"["}}]}}"#,
            "[".repeat(40)
        );
        assert!(decode(&p("/3/0"), quoted.as_bytes(), &NoModels).is_ok());
    }

    #[test]
    fn values_outside_json_or_empty_nested_nodes_do_not_encode() {
        assert!(encode(&p("/3/0/1"), &single(Value::Float(f64::NAN))).is_err());
        let mut object = BTreeMap::new();
        object.insert(0, crate::node::Instance::default());
        assert!(matches!(
            encode(&p("/3"), &Node::Object(object)),
            Err(EncodeError::Unsupported { .. })
        ));
        // The empty node itself is fine.
        let empty = Node::Instance(crate::node::Instance::default());
        let bytes = encode(&p("/3/0"), &empty);
        assert_eq!(
            bytes.as_deref().ok(),
            Some(&br#"{"bn":"/3/0/","e":[]}"#[..])
        );
        assert_eq!(
            decode(&p("/3/0"), br#"{"bn":"/3/0/","e":[]}"#, &NoModels),
            Ok(empty)
        );
        let multi = decode(&p("/3/0/6"), br#"{"bn":"/3/0/6/","e":[]}"#, &NoModels);
        assert_eq!(
            multi,
            Ok(Node::Resource(Resource::Multiple(BTreeMap::new())))
        );
    }

    #[test]
    fn numbers_keep_their_kind() {
        let doc = br#"{"bn":"/9/0/","e":[{"n":"1","v":18446744073709551615},{"n":"2","v":-3},{"n":"3","v":3.0},{"n":"4","v":1e2}]}"#;
        let Ok(Node::Instance(inst)) = decode(&p("/9/0"), doc, &NoModels) else {
            panic!("decode failed");
        };
        let values: Vec<_> = inst.resources.values().cloned().collect();
        assert_eq!(
            values,
            vec![
                Resource::Single(Value::UnsignedInteger(u64::MAX)),
                Resource::Single(Value::Integer(-3)),
                Resource::Single(Value::Float(3.0)),
                Resource::Single(Value::Float(100.0)),
            ]
        );
    }
}
