//! OMA TLV: `application/vnd.oma.lwm2m+tlv` (11542, and 1542 as some 1.0 clients still send it).
//! Core TS 1.1 §7.4.3 (1.0: §6.4.3).
//!
//! One TLV is a type byte, an identifier, an optional length field and the value:
//! - type bits 7-6: what the TLV is (00 object instance, 01 resource instance, 10 multiple
//!   resource, 11 resource with value); bit 5: identifier width (0: 8 bits, 1: 16 bits);
//!   bits 4-3: length-field width (00: the length is bits 2-0, 01/10/11: an 8/16/24-bit
//!   big-endian length follows the identifier).
//! - object instance and multiple resource TLVs hold further TLVs as their value.
//!
//! What stands at each path:
//! - `/o`: object instance TLVs, each holding resource TLVs;
//! - `/o/i`: resource TLVs. A lone object instance TLV with ID `i` around them is accepted too,
//!   as some clients answer that way;
//! - `/o/i/r`: one resource-with-value TLV, or one multiple-resource TLV holding resource
//!   instance TLVs;
//! - `/o/i/r/ri`: one resource instance TLV.
//!
//! TLV does not say which type a value has: the decoder asks the model, and keeps the raw bytes
//! as [`Value::Opaque`] for a resource the model does not know. The nesting depth is fixed by
//! the format (at most three levels), so the decoder never recurses.

use std::collections::BTreeMap;

use crate::codec::{DecodeError, EncodeError};
use crate::format::ContentFormat;
use crate::model::Models;
use crate::node::{Instance, Node, NodeError, Resource, model_type};
use crate::path::{MAX_ID, Path};
use crate::value::{DataType, ObjLink, Value};

const FORMAT: ContentFormat = ContentFormat::Tlv;

/// The largest value a 24-bit length field can announce (16 MiB - 1).
pub const MAX_VALUE_LEN: usize = 0xFF_FFFF;

/// Encodes the node at `path`. Values are written by their own type, so the node must
/// already be typed the way the model says.
pub fn encode(path: &Path, node: &Node) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    match (node, *path) {
        (Node::Object(instances), Path::Object(_)) => {
            for (&iid, instance) in instances {
                let instance_path = child(path, iid)?;
                let body = encode_instance(&instance_path, instance)?;
                write_tlv(&mut out, Kind::ObjectInstance, iid, &body, &instance_path)?;
            }
        }
        (Node::Instance(instance), Path::Instance(..)) => {
            out = encode_instance(path, instance)?;
        }
        (Node::Resource(resource), Path::Resource(_, _, rid)) => {
            let parent = path.parent().unwrap_or(Path::Root);
            encode_resource(&mut out, &parent, rid, resource)?;
        }
        (Node::ResourceInstance(value), Path::ResourceInstance(.., riid)) => {
            write_tlv(
                &mut out,
                Kind::ResourceInstance,
                riid,
                &encode_value(value),
                path,
            )?;
        }
        _ => {
            node.check_fits(path)?;
            return Err(EncodeError::Unsupported {
                format: FORMAT,
                what: "a node at the root path",
            });
        }
    }
    Ok(out)
}

/// Decodes the node at `path`, typing values through `models`.
pub fn decode(path: &Path, payload: &[u8], models: &dyn Models) -> Result<Node, DecodeError> {
    let tlvs = parse(payload)?;
    match *path {
        Path::Object(o) => decode_object(o, &tlvs, models).map(Node::Object),
        Path::Instance(o, i) => decode_instance_at(o, i, &tlvs, models).map(Node::Instance),
        Path::Resource(..) => {
            let tlv = lone(path, &tlvs, "resource")?;
            decode_resource(path, tlv, models).map(Node::Resource)
        }
        Path::ResourceInstance(o, _, r, _) => {
            let tlv = lone(path, &tlvs, "resource instance")?;
            if tlv.kind != Kind::ResourceInstance {
                return Err(wrong_kind(path, tlv.kind, "a resource instance TLV"));
            }
            if models.resource(o, r).is_some_and(|m| !m.multiple) {
                return Err(NodeError::Multiplicity {
                    path: *path,
                    expected: "single",
                }
                .into());
            }
            decode_value(path, tlv.value, models).map(Node::ResourceInstance)
        }
        Path::Root => Err(DecodeError::Unsupported {
            format: FORMAT,
            what: "a node at the root path",
        }),
    }
}

/// Bits 7-6 of the type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ObjectInstance,
    ResourceInstance,
    MultipleResource,
    ResourceValue,
}

impl Kind {
    fn from_type_byte(b: u8) -> Kind {
        match b >> 6 {
            0b00 => Kind::ObjectInstance,
            0b01 => Kind::ResourceInstance,
            0b10 => Kind::MultipleResource,
            _ => Kind::ResourceValue,
        }
    }

    fn bits(self) -> u8 {
        match self {
            Kind::ObjectInstance => 0b00,
            Kind::ResourceInstance => 0b01,
            Kind::MultipleResource => 0b10,
            Kind::ResourceValue => 0b11,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::ObjectInstance => "an object instance TLV",
            Kind::ResourceInstance => "a resource instance TLV",
            Kind::MultipleResource => "a multiple resource TLV",
            Kind::ResourceValue => "a resource TLV",
        }
    }
}

/// One TLV with its value still in wire form (nested TLVs or a value's bytes).
#[derive(Debug, Clone, Copy)]
struct Tlv<'a> {
    kind: Kind,
    id: u16,
    value: &'a [u8],
}

fn malformed(reason: impl Into<String>) -> DecodeError {
    DecodeError::malformed(FORMAT, reason)
}

/// Splits `input` into its top-level TLVs. Every TLV takes at least two input bytes, so the
/// list never outgrows the input.
fn parse(mut input: &[u8]) -> Result<Vec<Tlv<'_>>, DecodeError> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let (tlv, rest) = parse_one(input)?;
        out.push(tlv);
        input = rest;
    }
    Ok(out)
}

fn parse_one(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), DecodeError> {
    let (&type_byte, rest) = input
        .split_first()
        .ok_or_else(|| malformed("TLV expected, input ended"))?;
    let kind = Kind::from_type_byte(type_byte);
    let id_width = if type_byte & 0x20 == 0 { 1 } else { 2 };
    let (id_bytes, rest) = take(rest, id_width, "identifier runs past the end of the input")?;
    let id =
        u16::try_from(be_uint(id_bytes)).map_err(|_| malformed("identifier wider than 16 bits"))?;
    if id == MAX_ID {
        return Err(malformed("identifier 65535 is reserved"));
    }
    let (len, rest) = match (type_byte >> 3) & 0b11 {
        0 => (usize::from(type_byte & 0b111), rest),
        width => {
            let (len_bytes, rest) = take(
                rest,
                usize::from(width),
                "length field runs past the end of the input",
            )?;
            let len = usize::try_from(be_uint(len_bytes))
                .map_err(|_| malformed("length does not fit in memory"))?;
            (len, rest)
        }
    };
    let (value, rest) = rest.split_at_checked(len).ok_or_else(|| {
        malformed(format!(
            "{} with ID {id} declares {len} bytes of value, {} remain",
            kind.name(),
            rest.len()
        ))
    })?;
    Ok((Tlv { kind, id, value }, rest))
}

fn take<'a>(input: &'a [u8], n: usize, what: &str) -> Result<(&'a [u8], &'a [u8]), DecodeError> {
    input.split_at_checked(n).ok_or_else(|| malformed(what))
}

/// Big-endian unsigned integer of up to 8 bytes.
fn be_uint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |acc, &b| (acc << 8) | u64::from(b))
}

fn wrong_kind(path: &Path, found: Kind, expected: &str) -> DecodeError {
    malformed(format!(
        "{path}: expected {expected}, found {}",
        found.name()
    ))
}

fn child(path: &Path, id: u16) -> Result<Path, EncodeError> {
    path.child(id).ok_or_else(|| EncodeError::InvalidValue {
        path: *path,
        reason: format!("child ID {id} is reserved or too deep"),
    })
}

/// The one TLV a resource or resource-instance payload must hold, with the ID the path names.
fn lone<'a, 'b>(path: &Path, tlvs: &'b [Tlv<'a>], what: &str) -> Result<&'b Tlv<'a>, DecodeError> {
    let expected_id = path.segments().last().copied();
    match tlvs {
        [] => Err(NodeError::Empty { path: *path }.into()),
        [tlv] if Some(tlv.id) == expected_id => Ok(tlv),
        [tlv] => Err(malformed(format!(
            "{path}: the {what} TLV has ID {}, the path says {}",
            tlv.id,
            expected_id.unwrap_or_default()
        ))),
        more => Err(malformed(format!(
            "{path}: expected one {what} TLV, found {}",
            more.len()
        ))),
    }
}

fn decode_object(
    oid: u16,
    tlvs: &[Tlv<'_>],
    models: &dyn Models,
) -> Result<BTreeMap<u16, Instance>, DecodeError> {
    let mut instances = BTreeMap::new();
    for tlv in tlvs {
        let path = Path::Instance(oid, tlv.id);
        if tlv.kind != Kind::ObjectInstance {
            return Err(wrong_kind(
                &Path::Object(oid),
                tlv.kind,
                "object instance TLVs",
            ));
        }
        let instance = decode_resources(&path, &parse(tlv.value)?, models)?;
        if instances.insert(tlv.id, instance).is_some() {
            return Err(NodeError::Duplicate { path }.into());
        }
    }
    Ok(instances)
}

fn decode_instance_at(
    oid: u16,
    iid: u16,
    tlvs: &[Tlv<'_>],
    models: &dyn Models,
) -> Result<Instance, DecodeError> {
    let path = Path::Instance(oid, iid);
    match tlvs {
        [wrapper] if wrapper.kind == Kind::ObjectInstance => {
            if wrapper.id != iid {
                return Err(malformed(format!(
                    "{path}: the object instance TLV has ID {}, the path says {iid}",
                    wrapper.id
                )));
            }
            decode_resources(&path, &parse(wrapper.value)?, models)
        }
        _ => decode_resources(&path, tlvs, models),
    }
}

/// The resources of one instance.
fn decode_resources(
    instance_path: &Path,
    tlvs: &[Tlv<'_>],
    models: &dyn Models,
) -> Result<Instance, DecodeError> {
    let mut resources = BTreeMap::new();
    for tlv in tlvs {
        let path = instance_path.child(tlv.id).ok_or_else(|| {
            malformed(format!(
                "{instance_path}: resource ID {} out of range",
                tlv.id
            ))
        })?;
        let resource = decode_resource(&path, tlv, models)?;
        if resources.insert(tlv.id, resource).is_some() {
            return Err(NodeError::Duplicate { path }.into());
        }
    }
    Ok(Instance { resources })
}

/// One resource TLV (single or multiple) at `path` (`/o/i/r`).
fn decode_resource(
    path: &Path,
    tlv: &Tlv<'_>,
    models: &dyn Models,
) -> Result<Resource, DecodeError> {
    let model_multiple = match *path {
        Path::Resource(o, _, r) => models.resource(o, r).map(|m| m.multiple),
        _ => None,
    };
    match (tlv.kind, model_multiple) {
        (Kind::ResourceValue, Some(true)) => Err(NodeError::Multiplicity {
            path: *path,
            expected: "multiple",
        }
        .into()),
        (Kind::MultipleResource, Some(false)) => Err(NodeError::Multiplicity {
            path: *path,
            expected: "single",
        }
        .into()),
        (Kind::ResourceValue, _) => decode_value(path, tlv.value, models).map(Resource::Single),
        (Kind::MultipleResource, _) => {
            decode_instances(path, tlv.value, models).map(Resource::Multiple)
        }
        (kind, _) => Err(wrong_kind(path, kind, "a resource TLV")),
    }
}

/// The resource instance TLVs inside a multiple resource TLV.
fn decode_instances(
    resource_path: &Path,
    body: &[u8],
    models: &dyn Models,
) -> Result<BTreeMap<u16, Value>, DecodeError> {
    let mut values = BTreeMap::new();
    for tlv in parse(body)? {
        if tlv.kind != Kind::ResourceInstance {
            return Err(wrong_kind(
                resource_path,
                tlv.kind,
                "resource instance TLVs",
            ));
        }
        let path = resource_path.child(tlv.id).ok_or_else(|| {
            malformed(format!(
                "{resource_path}: instance ID {} out of range",
                tlv.id
            ))
        })?;
        if values
            .insert(tlv.id, decode_value(&path, tlv.value, models)?)
            .is_some()
        {
            return Err(NodeError::Duplicate { path }.into());
        }
    }
    Ok(values)
}

/// Reads a value's bytes as the type the model gives `path`.
fn decode_value(path: &Path, bytes: &[u8], models: &dyn Models) -> Result<Value, DecodeError> {
    let Some(data_type) = model_type(models, path) else {
        return Ok(Value::Opaque(bytes.to_vec()));
    };
    let mismatch = |found: String| DecodeError::TypeMismatch {
        path: *path,
        expected: data_type,
        found,
    };
    let bad_len = |allowed: &str| mismatch(format!("{} bytes (TLV allows {allowed})", bytes.len()));
    Ok(match data_type {
        DataType::String => Value::String(utf8(bytes).map_err(mismatch)?),
        DataType::Corelnk => Value::Corelnk(utf8(bytes).map_err(mismatch)?),
        DataType::Integer => Value::Integer(signed(bytes).ok_or_else(|| bad_len("1, 2, 4 or 8"))?),
        DataType::Time => Value::Time(signed(bytes).ok_or_else(|| bad_len("1, 2, 4 or 8"))?),
        DataType::UnsignedInteger => {
            Value::UnsignedInteger(unsigned(bytes).ok_or_else(|| bad_len("1, 2, 4 or 8"))?)
        }
        DataType::Float => Value::Float(float(bytes).ok_or_else(|| bad_len("4 or 8"))?),
        DataType::Boolean => match bytes {
            [0] => Value::Boolean(false),
            [1] => Value::Boolean(true),
            [b] => return Err(mismatch(format!("byte {b:#04x} (a TLV boolean is 0 or 1)"))),
            _ => return Err(bad_len("1")),
        },
        DataType::Objlnk => match *bytes {
            [o0, o1, i0, i1] => Value::Objlnk(ObjLink::new(
                u16::from_be_bytes([o0, o1]),
                u16::from_be_bytes([i0, i1]),
            )),
            _ => return Err(bad_len("4")),
        },
        DataType::Opaque => Value::Opaque(bytes.to_vec()),
        DataType::None => {
            return Err(mismatch(format!(
                "{} bytes of value (executable resources have none)",
                bytes.len()
            )));
        }
    })
}

fn utf8(bytes: &[u8]) -> Result<String, String> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|e| format!("invalid UTF-8 ({e})"))
}

fn signed(bytes: &[u8]) -> Option<i64> {
    Some(match bytes.len() {
        1 => i64::from(i8::from_be_bytes(bytes.try_into().ok()?)),
        2 => i64::from(i16::from_be_bytes(bytes.try_into().ok()?)),
        4 => i64::from(i32::from_be_bytes(bytes.try_into().ok()?)),
        8 => i64::from_be_bytes(bytes.try_into().ok()?),
        _ => return None,
    })
}

fn unsigned(bytes: &[u8]) -> Option<u64> {
    matches!(bytes.len(), 1 | 2 | 4 | 8).then(|| be_uint(bytes))
}

fn float(bytes: &[u8]) -> Option<f64> {
    match bytes.len() {
        4 => Some(f64::from(f32::from_be_bytes(bytes.try_into().ok()?))),
        8 => Some(f64::from_be_bytes(bytes.try_into().ok()?)),
        _ => None,
    }
}

fn encode_instance(path: &Path, instance: &Instance) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    for (&rid, resource) in &instance.resources {
        encode_resource(&mut out, path, rid, resource)?;
    }
    Ok(out)
}

/// Appends the TLV of resource `rid` of the instance at `instance_path`.
fn encode_resource(
    out: &mut Vec<u8>,
    instance_path: &Path,
    rid: u16,
    resource: &Resource,
) -> Result<(), EncodeError> {
    let path = child(instance_path, rid)?;
    match resource {
        Resource::Single(value) => {
            write_tlv(out, Kind::ResourceValue, rid, &encode_value(value), &path)
        }
        Resource::Multiple(values) => {
            let mut body = Vec::new();
            for (&riid, value) in values {
                let instance_path = child(&path, riid)?;
                write_tlv(
                    &mut body,
                    Kind::ResourceInstance,
                    riid,
                    &encode_value(value),
                    &instance_path,
                )?;
            }
            write_tlv(out, Kind::MultipleResource, rid, &body, &path)
        }
    }
}

/// Appends one TLV. `path` is where it stands, for errors.
fn write_tlv(
    out: &mut Vec<u8>,
    kind: Kind,
    id: u16,
    value: &[u8],
    path: &Path,
) -> Result<(), EncodeError> {
    let len = value.len();
    if len > MAX_VALUE_LEN {
        return Err(EncodeError::InvalidValue {
            path: *path,
            reason: format!("{len} bytes do not fit TLV's 24-bit length field"),
        });
    }
    let wide_id = id > 0xFF;
    let (len_bits, len_width): (u8, usize) = match len {
        0..=7 => (len as u8, 0),
        8..=0xFF => (0b01 << 3, 1),
        0x100..=0xFFFF => (0b10 << 3, 2),
        _ => (0b11 << 3, 3),
    };
    out.push((kind.bits() << 6) | (u8::from(wide_id) << 5) | len_bits);
    if wide_id {
        out.extend_from_slice(&id.to_be_bytes());
    } else {
        out.extend_from_slice(&id.to_be_bytes()[1..]);
    }
    let len_bytes = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    out.extend_from_slice(&len_bytes[4 - len_width..]);
    out.extend_from_slice(value);
    Ok(())
}

/// A value's bytes: integers in the fewest of 1, 2, 4 or 8 bytes, floats in 4 bytes when
/// that is exact.
fn encode_value(value: &Value) -> Vec<u8> {
    match value {
        Value::Integer(i) | Value::Time(i) => shortest_signed(*i),
        Value::UnsignedInteger(u) => shortest_unsigned(*u),
        Value::Float(f) => {
            let narrow = *f as f32;
            if f64::from(narrow) == *f {
                narrow.to_be_bytes().to_vec()
            } else {
                f.to_be_bytes().to_vec()
            }
        }
        Value::Boolean(b) => vec![u8::from(*b)],
        Value::Opaque(bytes) => bytes.clone(),
        Value::String(s) | Value::Corelnk(s) => s.as_bytes().to_vec(),
        Value::Objlnk(link) => {
            let mut out = link.object.to_be_bytes().to_vec();
            out.extend_from_slice(&link.instance.to_be_bytes());
            out
        }
    }
}

fn shortest_signed(i: i64) -> Vec<u8> {
    if let Ok(v) = i8::try_from(i) {
        v.to_be_bytes().to_vec()
    } else if let Ok(v) = i16::try_from(i) {
        v.to_be_bytes().to_vec()
    } else if let Ok(v) = i32::try_from(i) {
        v.to_be_bytes().to_vec()
    } else {
        i.to_be_bytes().to_vec()
    }
}

fn shortest_unsigned(u: u64) -> Vec<u8> {
    if let Ok(v) = u8::try_from(u) {
        vec![v]
    } else if let Ok(v) = u16::try_from(u) {
        v.to_be_bytes().to_vec()
    } else if let Ok(v) = u32::try_from(u) {
        v.to_be_bytes().to_vec()
    } else {
        u.to_be_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NoModels;

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| {
                u8::from_str_radix(std::str::from_utf8(pair).expect("ascii"), 16).expect("hex")
            })
            .collect()
    }

    #[test]
    fn header_widths() {
        let mut out = Vec::new();
        let p = Path::ResourceInstance(1, 0, 2, 3);
        write_tlv(&mut out, Kind::ResourceInstance, 3, &[0xAA; 7], &p).expect("fits");
        assert_eq!(out[..2], [0x47, 0x03]);
        out.clear();
        write_tlv(&mut out, Kind::ResourceValue, 300, &[0; 8], &p).expect("fits");
        assert_eq!(out[..5], [0xE8, 0x01, 0x2C, 0x08, 0x00]);
        out.clear();
        write_tlv(&mut out, Kind::MultipleResource, 1, &[0; 256], &p).expect("fits");
        assert_eq!(out[..4], [0x90, 0x01, 0x01, 0x00]);
        out.clear();
        write_tlv(&mut out, Kind::ObjectInstance, 1, &[0; 0x10000], &p).expect("fits");
        assert_eq!(out[..5], [0x18, 0x01, 0x01, 0x00, 0x00]);
    }

    #[test]
    fn shortest_integers() {
        assert_eq!(shortest_signed(-128), [0x80]);
        assert_eq!(shortest_signed(128), [0x00, 0x80]);
        assert_eq!(shortest_signed(-32769), [0xFF, 0xFF, 0x7F, 0xFF]);
        assert_eq!(shortest_signed(i64::MIN).len(), 8);
        assert_eq!(shortest_unsigned(255), [0xFF]);
        assert_eq!(shortest_unsigned(u64::MAX), [0xFF; 8]);
    }

    #[test]
    fn floats_narrow_only_when_exact() {
        assert_eq!(encode_value(&Value::Float(1.5)).len(), 4);
        assert_eq!(encode_value(&Value::Float(0.1)).len(), 8);
        assert_eq!(encode_value(&Value::Float(f64::INFINITY)).len(), 4);
    }

    #[test]
    fn truncated_and_oversized_lengths() {
        let p = Path::Instance(3, 0);
        for bad in [
            "",
            "C8",
            "C800",
            "C80014",
            "E8",
            "E800",
            "D8000A01",
            "F8000000FF",
        ] {
            let bytes = hex(bad);
            let result = decode(&p, &bytes, &NoModels);
            if bytes.is_empty() {
                assert_eq!(result, Ok(Node::Instance(Instance::default())));
            } else {
                assert!(
                    matches!(result, Err(DecodeError::Malformed { .. })),
                    "{bad}: {result:?}"
                );
            }
        }
    }

    #[test]
    fn reserved_id_rejected() {
        let bytes = hex("E1FFFF00");
        let result = decode(&Path::Instance(3, 0), &bytes, &NoModels);
        assert!(
            matches!(result, Err(DecodeError::Malformed { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn nested_kinds_are_checked() {
        // An object instance TLV inside an object instance TLV.
        let bytes = hex("0201 0000");
        let result = decode(&Path::Object(3), &bytes, &NoModels);
        assert!(
            matches!(result, Err(DecodeError::Malformed { .. })),
            "{result:?}"
        );
        // A resource TLV inside a multiple resource TLV.
        let bytes = hex("8603 C10001");
        let result = decode(&Path::Resource(3, 0, 6), &bytes, &NoModels);
        assert!(
            matches!(result, Err(DecodeError::Malformed { .. })),
            "{result:?}"
        );
    }
}
