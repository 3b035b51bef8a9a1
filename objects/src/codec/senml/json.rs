//! SenML JSON (content format 110, RFC 8428 §5).
//!
//! Parsed with serde_json through visitors that accept exactly the SenML shape: an array of
//! objects whose members are strings, numbers or booleans. A nested array or object in a value
//! position is malformed and stops the parse at once, so depth never exceeds three whatever the
//! input. Integers keep their exact value (serde_json reports u64/i64 apart from f64, and the
//! crate enables `float_roundtrip` so floats come back bit-exact).
//!
//! `vd` is base64url without padding (RFC 8428 §4.3, Table 1 note). The decoder also takes
//! padded input and the standard alphabet, which some 1.1 clients sent before Wakaama and
//! Leshan fixed their encoders; the two alphabets differ in `-_` versus `+/`, so there is no
//! ambiguity.

use std::fmt;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::de::{self, DeserializeSeed, Deserializer as _, MapAccess, SeqAccess, Visitor};

use super::{Label, Number, OutRecord, Record, Scalar, Sink, time_number};
use crate::codec::{DecodeError, EncodeError};
use crate::format::ContentFormat;
use crate::model::Models;
use crate::node::{Node, NodeMap, TimestampedNodes};
use crate::path::Path;
use crate::value::Value;

const FORMAT: ContentFormat = ContentFormat::SenmlJson;

pub fn encode(path: &Path, node: &Node) -> Result<Vec<u8>, EncodeError> {
    write_pack(&super::node_records(path, node)?)
}

pub fn decode(path: &Path, payload: &[u8], models: &dyn Models) -> Result<Node, DecodeError> {
    super::decode_node(FORMAT, for_each_record, path, payload, models)
}

pub fn encode_nodes(nodes: &NodeMap) -> Result<Vec<u8>, EncodeError> {
    write_pack(&super::nodes_records(nodes)?)
}

pub fn decode_nodes(
    payload: &[u8],
    requested: Option<&[Path]>,
    models: &dyn Models,
) -> Result<NodeMap, DecodeError> {
    super::decode_nodes(FORMAT, for_each_record, payload, requested, models)
}

pub fn encode_paths(paths: &[Path]) -> Result<Vec<u8>, EncodeError> {
    write_pack(&super::path_records(paths))
}

pub fn decode_paths(payload: &[u8]) -> Result<Vec<Path>, DecodeError> {
    super::decode_paths(FORMAT, for_each_record, payload)
}

pub fn encode_timestamped(entries: &[TimestampedNodes]) -> Result<Vec<u8>, EncodeError> {
    write_pack(&super::timestamped_records(entries)?)
}

pub fn decode_timestamped(
    payload: &[u8],
    models: &dyn Models,
) -> Result<Vec<TimestampedNodes>, DecodeError> {
    super::decode_timestamped(FORMAT, for_each_record, payload, models)
}

// ---------------------------------------------------------------------------------------------
// Parsing.

/// Parses a SenML JSON pack into records as sent (no base values applied; see
/// [`super::resolve`]). An empty array is accepted although RFC 8428's CDDL asks for one
/// record at least: LwM2M clients answer a read of an empty instance with `[]`.
pub fn parse_records(payload: &[u8]) -> Result<Vec<Record>, DecodeError> {
    super::collect_records(for_each_record, payload)
}

/// Parses the pack and hands each record to `sink` as soon as it is read; the first error,
/// the parser's or the sink's, ends the parse.
pub(crate) fn for_each_record(payload: &[u8], sink: &mut Sink<'_>) -> Result<(), DecodeError> {
    let mut failure = None;
    let mut de = serde_json::Deserializer::from_slice(payload);
    let parsed = de.deserialize_seq(PackVisitor {
        sink,
        failure: &mut failure,
    });
    if let Some(e) = failure {
        return Err(e);
    }
    parsed.map_err(|e| DecodeError::malformed(FORMAT, e.to_string()))?;
    de.end()
        .map_err(|e| DecodeError::malformed(FORMAT, format!("after the pack: {e}")))
}

struct PackVisitor<'s, 'a> {
    sink: &'s mut Sink<'a>,
    /// The sink's error, kept typed: serde can only carry text.
    failure: &'s mut Option<DecodeError>,
}

impl<'de> Visitor<'de> for PackVisitor<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a SenML pack (a JSON array of records)")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        while let Some(record) = seq.next_element_seed(RecordSeed { index })? {
            if let Err(e) = (self.sink)(record) {
                *self.failure = Some(e);
                return Err(de::Error::custom("stopped by the record's content"));
            }
            index = index.saturating_add(1);
        }
        Ok(())
    }
}

struct RecordSeed {
    index: usize,
}

impl<'de> DeserializeSeed<'de> for RecordSeed {
    type Value = Record;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Record, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed {
    type Value = Record;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record {} to be a JSON object", self.index)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Record, A::Error> {
        let mut record = Record::default();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(ScalarSeed)?;
            field(&mut record, &key, value)
                .map_err(|e| de::Error::custom(format!("record {}: {e}", self.index)))?;
        }
        Ok(record)
    }
}

/// Stores one member; unknown labels are ignored unless they end in `_` (RFC 8428 §4.4).
fn field(record: &mut Record, key: &str, value: Scalar) -> Result<(), String> {
    match Label::from_text(key) {
        Some(Label::DataValue) => {
            let Scalar::Text(text) = value else {
                return Err(format!(
                    "\"vd\" must be a base64url string, got {}",
                    value.kind()
                ));
            };
            record.set(Label::DataValue, Scalar::Bytes(base64_decode(&text)?))
        }
        Some(label) => record.set(label, value),
        None if key.ends_with('_') => Err(format!(
            "label {:?} must be understood (it ends in '_') and this decoder does not know it",
            key.chars().take(32).collect::<String>()
        )),
        None => Ok(()),
    }
}

struct ScalarSeed;

impl<'de> DeserializeSeed<'de> for ScalarSeed {
    type Value = Scalar;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Scalar, D::Error> {
        d.deserialize_any(self)
    }
}

/// Strings, numbers and booleans. The default `visit_seq`/`visit_map` reject containers
/// without reading into them.
impl Visitor<'_> for ScalarSeed {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a SenML field value (string, number or boolean)")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Number(Number::Integer(i128::from(v))))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar::Number(Number::Integer(i128::from(v))))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar::Number(Number::Float(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Text(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar::Text(v))
    }
}

const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let engine = if text.contains(['+', '/']) {
        &STANDARD_LENIENT
    } else {
        &URL_SAFE_LENIENT
    };
    engine
        .decode(text)
        .map_err(|e| format!("\"vd\" is not base64url: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Writing.

fn write_pack(records: &[OutRecord<'_>]) -> Result<Vec<u8>, EncodeError> {
    let mut out = String::from("[");
    for (k, record) in records.iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        write_record(&mut out, record)?;
    }
    out.push(']');
    Ok(out.into_bytes())
}

fn write_record(out: &mut String, record: &OutRecord<'_>) -> Result<(), EncodeError> {
    let mut members = Members { out, first: true };
    if let Some(bn) = &record.base_name {
        members.key("bn");
        write_string(members.out, bn);
    }
    if let Some(n) = &record.name {
        members.key("n");
        write_string(members.out, n);
    }
    if let Some(t) = record.time {
        members.key("t");
        write_number(members.out, time_number(t), &record.path)?;
    }
    if let Some(value) = record.value {
        write_value(&mut members, value, &record.path)?;
    }
    members.out.push('}');
    Ok(())
}

struct Members<'s> {
    out: &'s mut String,
    first: bool,
}

impl Members<'_> {
    fn key(&mut self, label: &str) {
        self.out.push(if self.first { '{' } else { ',' });
        self.first = false;
        self.out.push('"');
        self.out.push_str(label);
        self.out.push_str("\":");
    }
}

fn write_value(members: &mut Members<'_>, value: &Value, path: &Path) -> Result<(), EncodeError> {
    match value {
        Value::String(s) | Value::Corelnk(s) => {
            members.key("vs");
            write_string(members.out, s);
        }
        Value::Integer(i) | Value::Time(i) => {
            members.key("v");
            members.out.push_str(&i.to_string());
        }
        Value::UnsignedInteger(u) => {
            members.key("v");
            members.out.push_str(&u.to_string());
        }
        Value::Float(f) => {
            members.key("v");
            write_number(members.out, Number::Float(*f), path)?;
        }
        Value::Boolean(b) => {
            members.key("vb");
            members.out.push_str(if *b { "true" } else { "false" });
        }
        Value::Opaque(bytes) => {
            members.key("vd");
            members.out.push('"');
            members
                .out
                .push_str(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
            members.out.push('"');
        }
        Value::Objlnk(link) => {
            members.key("vlo");
            members.out.push('"');
            members.out.push_str(&link.to_string());
            members.out.push('"');
        }
    }
    Ok(())
}

fn write_number(out: &mut String, number: Number, path: &Path) -> Result<(), EncodeError> {
    match number {
        Number::Integer(i) => out.push_str(&i.to_string()),
        Number::Float(f) if f.is_finite() => {
            // `{:?}` is the shortest text that parses back to the same double, and always
            // reads as a float in JSON ("3.0", "1e300", "1e-7"): the decoder keeps it Float.
            out.push_str(&format!("{f:?}"));
        }
        Number::Float(f) => {
            return Err(EncodeError::InvalidValue {
                path: *path,
                reason: format!("SenML JSON cannot carry the number {f}"),
            });
        }
    }
    Ok(())
}

/// A JSON string literal (RFC 8259 §7): quote, backslash and control characters escaped.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::NoModels;
    use crate::value::ObjLink;

    fn err(payload: &str) -> String {
        parse_records(payload.as_bytes())
            .and_then(|_| decode_nodes(payload.as_bytes(), None, &NoModels))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn floats_print_as_floats() {
        let mut s = String::new();
        for f in [3.0, 1e300, 1e-7, -0.0, 0.1, 1e16, 123456789.125] {
            s.clear();
            write_number(&mut s, Number::Float(f), &Path::Root).unwrap();
            assert!(s.contains(['.', 'e']), "{s}");
            assert!(!s.contains('E'), "{s}");
            assert_eq!(s.parse::<f64>().unwrap().to_bits(), f.to_bits(), "{s}");
        }
        assert!(write_number(&mut s, Number::Float(f64::NAN), &Path::Root).is_err());
        assert!(write_number(&mut s, Number::Float(f64::INFINITY), &Path::Root).is_err());
    }

    #[test]
    fn strings_escape() {
        let mut s = String::new();
        write_string(&mut s, "a\"b\\c\nd\u{1}é");
        assert_eq!(s, r#""a\"b\\c\nd\u0001é""#);
        let parsed: String = serde_json::from_str(&s).unwrap();
        assert_eq!(parsed, "a\"b\\c\nd\u{1}é");
    }

    #[test]
    fn base64_variants() {
        assert_eq!(base64_decode("aGkgCg").unwrap(), b"hi \n");
        assert_eq!(base64_decode("aGkgCg==").unwrap(), b"hi \n");
        assert_eq!(base64_decode("-_8").unwrap(), [0xfb, 0xff]);
        assert_eq!(base64_decode("+/8").unwrap(), [0xfb, 0xff]);
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("a").is_err());
        assert!(base64_decode("a=b").is_err());
        assert!(base64_decode("-/8").is_err());
    }

    #[test]
    fn value_kinds() {
        let payload =
            br#"[{"bn":"/1/2/","n":"0","v":5},{"n":"1","v":5.0},{"n":"2","v":18446744073709551615},
            {"n":"3","vs":"x"},{"n":"4","vb":true},{"n":"5","vd":"AQI"},{"n":"6","vlo":"3:0"}]"#;
        let nodes = decode_nodes(payload, None, &NoModels).unwrap();
        let values: Vec<_> = nodes
            .iter()
            .map(|(p, n)| match n {
                Node::Resource(crate::node::Resource::Single(v)) => {
                    (p.resource_id().unwrap(), v.clone())
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            values,
            [
                (0, Value::Integer(5)),
                (1, Value::Float(5.0)),
                (2, Value::UnsignedInteger(u64::MAX)),
                (3, Value::String("x".into())),
                (4, Value::Boolean(true)),
                (5, Value::Opaque(vec![1, 2])),
                (6, Value::Objlnk(ObjLink::new(3, 0))),
            ]
        );
    }

    #[test]
    fn malformed_inputs_say_why() {
        assert!(err("").contains("EOF"));
        assert!(err("{}").contains("SenML pack"));
        assert!(err("[1]").contains("record 0"));
        assert!(err(r#"[{"n":"/1/0/0","v":[1]}]"#).contains("SenML field value"));
        assert!(err(r#"[{"n":"/1/0/0","v":{"a":1}}]"#).contains("SenML field value"));
        assert!(err(r#"[{"n":"/1/0/0","v":null}]"#).contains("SenML field value"));
        assert!(err(r#"[{"n":"/1/0/0","v":1,"v":2}]"#).contains("twice"));
        assert!(err(r#"[{"n":"/1/0/0","v":1,"vs":"a"}]"#).contains("more than one value"));
        assert!(err(r#"[{"n":"/1/0/0","v":1,"foo_":1}]"#).contains("must be understood"));
        assert!(err(r#"[{"n":"/1/0/0","vd":"a"}]"#).contains("base64"));
        assert!(err(r#"[{"n":"/1/0/0","vlo":"3"}]"#).contains("vlo"));
        assert!(err(r#"[{"n":"/1/0/0","v":1}] x"#).contains("after the pack"));
        assert!(err(r#"[{"n":"/1/0","v":1}]"#).contains("resource or resource instance"));
        assert!(err(r#"[{"n":"1/0/0","v":1}]"#).contains("not an LwM2M path"));
        assert!(err(r#"[{"n":"/1/0/0"}]"#).contains("no value"));
        assert!(err(r#"[{"v":1}]"#).contains("without a name"));
        assert!(err(r#"[{"n":"/1/0/0","v":1e999}]"#).contains("out of range"));
    }

    #[test]
    fn unknown_labels_are_ignored() {
        let nodes = decode_nodes(
            br#"[{"n":"/1/0/0","v":1,"foo":"bar","ct":60,"x":true}]"#,
            None,
            &NoModels,
        )
        .unwrap();
        assert_eq!(nodes.len(), 1);
    }

    #[test]
    fn deep_nesting_stops_at_once() {
        let deep = format!("[{{\"n\":{}{}}}]", "[".repeat(100_000), "]".repeat(100_000));
        assert!(err(&deep).contains("SenML field value"));
        let deep_top = "[".repeat(100_000);
        assert!(parse_records(deep_top.as_bytes()).is_err());
    }
}
