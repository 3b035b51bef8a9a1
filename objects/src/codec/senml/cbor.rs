//! SenML CBOR (content format 112, RFC 8428 §6).
//!
//! The pack is a definite-length array of maps with the integer labels of RFC 8428 Table 4;
//! LwM2M's `vlo` is a text key. Decoding rules:
//! - the top-level array must have a definite length, and text and byte strings too (§6: an
//!   indefinite array is the streaming SensML type); record maps may be indefinite;
//! - numbers may be integers, half/single/double floats or decimal fractions (tag 4, §6);
//!   a negative integer below `i64::MIN` and any other tag are errors;
//! - a value position holds a scalar: arrays and maps there are malformed, so the decoder
//!   never goes more than two containers deep and needs no recursion;
//! - unknown integer labels are ignored (§12.3.3), and so are unknown text labels unless they
//!   end in `_` (§4.4). A text key spelling a label that CBOR writes as an integer (`"n"`,
//!   `"v"`, ...) is rejected: the table is conclusive, and silently ignoring it would misread
//!   the record;
//! - declared lengths are never used to reserve memory; a lying length runs into the end of
//!   the input.

use minicbor::data::Type;
use minicbor::{Decoder, Encoder};

use super::{Label, Number, OutRecord, Record, Scalar, Sink, time_number};
use crate::codec::{DecodeError, EncodeError};
use crate::format::ContentFormat;
use crate::model::Models;
use crate::node::{Node, NodeMap, TimestampedNodes};
use crate::path::Path;
use crate::value::Value;

const FORMAT: ContentFormat = ContentFormat::SenmlCbor;

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

/// Parses a SenML CBOR pack into records as sent (no base values applied; see
/// [`super::resolve`]). An empty array is accepted, as in JSON.
pub fn parse_records(payload: &[u8]) -> Result<Vec<Record>, DecodeError> {
    super::collect_records(for_each_record, payload)
}

/// Parses the pack and hands each record to `sink` as soon as it is read; the first error,
/// the parser's or the sink's, ends the parse.
pub(crate) fn for_each_record(payload: &[u8], sink: &mut Sink<'_>) -> Result<(), DecodeError> {
    let mut d = Decoder::new(payload);
    let count = match d.array().map_err(|e| cbor_error("the pack", &e))? {
        Some(n) => n,
        None => {
            return Err(DecodeError::malformed(
                FORMAT,
                "indefinite-length top-level array (streaming SensML); SenML needs a definite length",
            ));
        }
    };
    for index in 0..count {
        let record = parse_record(&mut d).map_err(|reason| {
            DecodeError::malformed(FORMAT, format!("record {index}: {reason}"))
        })?;
        sink(record)?;
    }
    if d.position() != payload.len() {
        return Err(DecodeError::malformed(
            FORMAT,
            format!(
                "{} bytes after the pack",
                payload.len().saturating_sub(d.position())
            ),
        ));
    }
    Ok(())
}

fn cbor_error(what: &str, e: &minicbor::decode::Error) -> DecodeError {
    DecodeError::malformed(FORMAT, format!("{what}: {e}"))
}

fn parse_record(d: &mut Decoder<'_>) -> Result<Record, String> {
    let declared = match d.datatype().map_err(|e| e.to_string())? {
        Type::Map | Type::MapIndef => d.map().map_err(|e| e.to_string())?,
        other => return Err(format!("a record must be a map, got {other}")),
    };
    let mut record = Record::default();
    let mut seen = 0u64;
    loop {
        match declared {
            Some(n) if seen == n => break,
            None if d.datatype().map_err(|e| e.to_string())? == Type::Break => {
                d.set_position(d.position().saturating_add(1));
                break;
            }
            _ => {}
        }
        let key = parse_key(d)?;
        let value = parse_scalar(d)?;
        field(&mut record, key, value)?;
        seen = seen.saturating_add(1);
    }
    Ok(record)
}

enum Key {
    Int(i128),
    Text(String),
}

fn parse_key(d: &mut Decoder<'_>) -> Result<Key, String> {
    match d.datatype().map_err(|e| e.to_string())? {
        Type::U8
        | Type::U16
        | Type::U32
        | Type::U64
        | Type::I8
        | Type::I16
        | Type::I32
        | Type::I64
        | Type::Int => Ok(Key::Int(i128::from(d.int().map_err(|e| e.to_string())?))),
        Type::String => Ok(Key::Text(d.str().map_err(|e| e.to_string())?.to_owned())),
        other => Err(format!(
            "a label must be an integer or a definite text string, got {other}"
        )),
    }
}

fn field(record: &mut Record, key: Key, value: Scalar) -> Result<(), String> {
    match key {
        Key::Int(label) => match Label::from_cbor(label) {
            Some(label) => record.set(label, value),
            None => Ok(()),
        },
        Key::Text(text) => match Label::from_text(&text) {
            Some(label) => match label.cbor() {
                None => record.set(label, value),
                Some(int) => Err(format!(
                    "text label \"{text}\": SenML CBOR writes it as the integer {int}"
                )),
            },
            None if text.ends_with('_') => Err(format!(
                "label {:?} must be understood (it ends in '_') and this decoder does not know it",
                text.chars().take(32).collect::<String>()
            )),
            None => Ok(()),
        },
    }
}

fn parse_scalar(d: &mut Decoder<'_>) -> Result<Scalar, String> {
    let e = |e: minicbor::decode::Error| e.to_string();
    Ok(match d.datatype().map_err(e)? {
        Type::U8
        | Type::U16
        | Type::U32
        | Type::U64
        | Type::I8
        | Type::I16
        | Type::I32
        | Type::I64
        | Type::Int => Scalar::Number(Number::Integer(integer(d)?)),
        Type::F16 | Type::F32 | Type::F64 => Scalar::Number(Number::Float(d.f64().map_err(e)?)),
        Type::Bool => Scalar::Bool(d.bool().map_err(e)?),
        Type::String => Scalar::Text(d.str().map_err(e)?.to_owned()),
        Type::Bytes => Scalar::Bytes(d.bytes().map_err(e)?.to_vec()),
        Type::StringIndef | Type::BytesIndef => {
            return Err("indefinite-length strings are not SenML CBOR (RFC 8428 §6)".into());
        }
        Type::Tag => {
            let tag = d.tag().map_err(e)?;
            if tag.as_u64() != 4 {
                return Err(format!("unexpected CBOR tag {}", tag.as_u64()));
            }
            Scalar::Number(Number::Float(decimal_fraction(d)?))
        }
        Type::Array | Type::ArrayIndef | Type::Map | Type::MapIndef => {
            return Err(
                "a field value must be a number, string, byte string or boolean, got a container"
                    .into(),
            );
        }
        other => {
            return Err(format!(
                "a field value must be a number, string, byte string or boolean, got {other}"
            ));
        }
    })
}

/// A CBOR integer in `i64::MIN..=u64::MAX`, the range LwM2M integers live in.
fn integer(d: &mut Decoder<'_>) -> Result<i128, String> {
    let i = i128::from(d.int().map_err(|e| e.to_string())?);
    if i < i128::from(i64::MIN) {
        return Err(format!("integer {i} is below the 64-bit signed range"));
    }
    Ok(i)
}

/// Tag 4 content `[exponent, mantissa]` as the nearest double (RFC 8949 §3.4.4).
fn decimal_fraction(d: &mut Decoder<'_>) -> Result<f64, String> {
    const MAX_EXPONENT: i128 = 400;
    if d.array().map_err(|e| e.to_string())? != Some(2) {
        return Err("a decimal fraction (tag 4) must be a two-element array".into());
    }
    let int = |d: &mut Decoder<'_>| match d.datatype().map_err(|e| e.to_string())? {
        Type::U8
        | Type::U16
        | Type::U32
        | Type::U64
        | Type::I8
        | Type::I16
        | Type::I32
        | Type::I64
        | Type::Int => integer(d),
        other => Err(format!(
            "decimal fraction parts must be integers, got {other}"
        )),
    };
    let exponent = int(d)?;
    let mantissa = int(d)?;
    if !(-MAX_EXPONENT..=MAX_EXPONENT).contains(&exponent) {
        return Err(format!(
            "decimal fraction exponent {exponent} is out of range"
        ));
    }
    // Rust's float parser rounds correctly; building the text is cheaper than getting
    // m × 10^e right by hand.
    let value: f64 = format!("{mantissa}e{exponent}")
        .parse()
        .map_err(|_| "decimal fraction does not make a number".to_owned())?;
    if !value.is_finite() {
        return Err("decimal fraction is out of the double range".into());
    }
    Ok(value)
}

// ---------------------------------------------------------------------------------------------
// Writing.

fn write_pack(records: &[OutRecord<'_>]) -> Result<Vec<u8>, EncodeError> {
    let mut e = Encoder::new(Vec::new());
    let len = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    e.array(len(records.len())).map_err(write_error)?;
    for record in records {
        let fields = [
            record.base_name.is_some(),
            record.name.is_some(),
            record.time.is_some(),
            record.value.is_some(),
        ];
        e.map(len(fields.iter().filter(|f| **f).count()))
            .map_err(write_error)?;
        if let Some(bn) = &record.base_name {
            e.i8(-2)
                .map_err(write_error)?
                .str(bn)
                .map_err(write_error)?;
        }
        if let Some(n) = &record.name {
            e.u8(0).map_err(write_error)?.str(n).map_err(write_error)?;
        }
        if let Some(t) = record.time {
            e.u8(6).map_err(write_error)?;
            write_number(&mut e, time_number(t))?;
        }
        if let Some(value) = record.value {
            write_value(&mut e, value)?;
        }
    }
    Ok(e.into_writer())
}

/// Writing into a `Vec` cannot fail; keep the error typed anyway rather than panic.
fn write_error(e: minicbor::encode::Error<std::convert::Infallible>) -> EncodeError {
    EncodeError::InvalidValue {
        path: Path::Root,
        reason: format!("CBOR writer: {e}"),
    }
}

fn write_value(e: &mut Encoder<Vec<u8>>, value: &Value) -> Result<(), EncodeError> {
    match value {
        Value::String(s) | Value::Corelnk(s) => {
            e.u8(3).map_err(write_error)?.str(s).map_err(write_error)?;
        }
        Value::Integer(i) | Value::Time(i) => {
            e.u8(2).map_err(write_error)?.i64(*i).map_err(write_error)?;
        }
        Value::UnsignedInteger(u) => {
            e.u8(2).map_err(write_error)?.u64(*u).map_err(write_error)?;
        }
        Value::Float(f) => {
            e.u8(2).map_err(write_error)?;
            write_number(e, Number::Float(*f))?;
        }
        Value::Boolean(b) => {
            e.u8(4)
                .map_err(write_error)?
                .bool(*b)
                .map_err(write_error)?;
        }
        Value::Opaque(bytes) => {
            e.u8(8)
                .map_err(write_error)?
                .bytes(bytes)
                .map_err(write_error)?;
        }
        Value::Objlnk(link) => {
            e.str("vlo")
                .map_err(write_error)?
                .str(&link.to_string())
                .map_err(write_error)?;
        }
    }
    Ok(())
}

/// Integers as CBOR integers; floats in the shortest width that gives back the same double
/// (RFC 8428 §6 asks for exactly the same value).
fn write_number(e: &mut Encoder<Vec<u8>>, number: Number) -> Result<(), EncodeError> {
    match number {
        Number::Integer(i) => match (i64::try_from(i), u64::try_from(i)) {
            (Ok(s), _) => e.i64(s).map(drop),
            (_, Ok(u)) => e.u64(u).map(drop),
            _ => e.f64(i as f64).map(drop),
        },
        Number::Float(f) if fits_f16(f) => e.f16(f as f32).map(drop),
        Number::Float(f) if f64::from(f as f32).to_bits() == f.to_bits() => {
            e.f32(f as f32).map(drop)
        }
        Number::Float(f) => e.f64(f).map(drop),
    }
    .map_err(write_error)
}

/// True when `f` is exactly a binary16 value (NaN excepted: its payload would be lost).
fn fits_f16(f: f64) -> bool {
    if f == 0.0 || f.is_infinite() {
        return true;
    }
    if f.is_nan() {
        return false;
    }
    let bits = f.abs().to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i32 - 1023;
    let mantissa = bits & ((1u64 << 52) - 1);
    // Normal halves keep 10 fraction bits; subnormal halves are multiples of 2^-24.
    let kept = match exponent {
        -14..=15 => 10,
        -24..=-15 => exponent + 24,
        _ => return false,
    };
    let dropped = 52 - kept;
    mantissa & ((1u64 << dropped) - 1) == 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::NoModels;

    fn err(bytes: &[u8]) -> String {
        parse_records(bytes)
            .and_then(|_| decode_nodes(bytes, None, &NoModels))
            .unwrap_err()
            .to_string()
    }

    fn number_bytes(n: Number) -> Vec<u8> {
        let mut e = Encoder::new(Vec::new());
        write_number(&mut e, n).unwrap();
        e.into_writer()
    }

    #[test]
    fn shortest_exact_floats() {
        assert_eq!(number_bytes(Number::Float(1.5)), [0xf9, 0x3e, 0x00]);
        assert_eq!(number_bytes(Number::Float(0.0)), [0xf9, 0x00, 0x00]);
        assert_eq!(number_bytes(Number::Float(-0.0)), [0xf9, 0x80, 0x00]);
        assert_eq!(number_bytes(Number::Float(65504.0)), [0xf9, 0x7b, 0xff]);
        assert_eq!(
            number_bytes(Number::Float(f64::INFINITY)),
            [0xf9, 0x7c, 0x00]
        );
        assert_eq!(
            number_bytes(Number::Float(5.960464477539063e-8)),
            [0xf9, 0x00, 0x01]
        );
        assert_eq!(number_bytes(Number::Float(65536.0))[0], 0xfa);
        assert_eq!(number_bytes(Number::Float(0.1))[0], 0xfb);
        assert_eq!(number_bytes(Number::Integer(-1)), [0x20]);
        assert_eq!(number_bytes(Number::Integer(i128::from(u64::MAX)))[0], 0x1b);
        for f in [
            1.5,
            65504.0,
            1e-7,
            0.1,
            3.4e38,
            1e300,
            5.960464477539063e-8,
            2.0f64.powi(-24) * 3.0,
        ] {
            let bytes = number_bytes(Number::Float(f));
            assert_eq!(
                Decoder::new(&bytes).f64().unwrap().to_bits(),
                f.to_bits(),
                "{f}"
            );
        }
    }

    #[test]
    fn f16_boundaries() {
        assert!(fits_f16(2.0f64.powi(-24)));
        assert!(!fits_f16(2.0f64.powi(-25)));
        assert!(fits_f16(2.0f64.powi(-14) * (1.0 + 1.0 / 1024.0)));
        assert!(!fits_f16(2.0f64.powi(-14) * (1.0 + 1.0 / 2048.0)));
        assert!(!fits_f16(65520.0));
        assert!(!fits_f16(f64::NAN));
    }

    #[test]
    fn decimal_fractions() {
        // 4([-1, 1201]) = 120.1
        let pack = [
            0x81, 0xa2, 0x00, 0x66, b'/', b'1', b'/', b'0', b'/', b'0', 0x02, 0xc4, 0x82, 0x20,
            0x19, 0x04, 0xb1,
        ];
        let records = parse_records(&pack).unwrap();
        assert_eq!(
            records[0].value,
            Some(super::super::RecordValue::Number(Number::Float(120.1)))
        );
        let big_exp = [0x81, 0xa1, 0x02, 0xc4, 0x82, 0x19, 0x03, 0xe8, 0x01];
        assert!(err(&big_exp).contains("exponent"));
        let bignum = [0x81, 0xa1, 0x02, 0xc4, 0x82, 0x00, 0xc2, 0x41, 0x01];
        assert!(err(&bignum).contains("integers"));
    }

    #[test]
    fn malformed_inputs_say_why() {
        assert!(err(&[]).contains("the pack"));
        assert!(err(&[0xa0]).contains("the pack"));
        assert!(err(&[0x9f, 0xff]).contains("indefinite-length top-level"));
        assert!(err(&[0x81, 0x01]).contains("must be a map"));
        assert!(err(&[0x81, 0xa1, 0x02, 0x81, 0x01]).contains("container"));
        assert!(err(&[0x81, 0xa1, 0x02, 0xc1, 0x01]).contains("tag 1"));
        assert!(
            err(&[
                0x81, 0xa1, 0x02, 0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
            ])
            .contains("below")
        );
        assert!(err(&[0x81, 0xa1, 0x02, 0x7f, 0x60, 0xff]).contains("indefinite-length strings"));
        assert!(err(&[0x81, 0xa1, 0x61, b'n', 0x60]).contains("integer 0"));
        assert!(err(&[0x81, 0xa1, 0x62, b'x', b'_', 0x01]).contains("must be understood"));
        assert!(err(&[0x81, 0xa1, 0x02, 0xf6]).contains("null"));
        assert!(err(&[0x81, 0xa1, 0xf5, 0x01]).contains("label must be"));
        assert!(err(&[0x81, 0xa0, 0x00]).contains("after the pack"));
        // A huge declared array, map or string length runs into the end of the input.
        assert!(
            err(&[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xa0]).contains("record 1")
        );
        assert!(
            err(&[0x81, 0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).contains("record 0")
        );
        assert!(
            err(&[
                0x81, 0xa1, 0x03, 0x7b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
            ])
            .contains("record 0")
        );
    }

    #[test]
    fn indefinite_maps_and_unknown_labels() {
        // [{_ 0: "/1/0/0", 2: 1, 9: "x", "foo": h'00'}]
        let pack = [
            0x81, 0xbf, 0x00, 0x66, b'/', b'1', b'/', b'0', b'/', b'0', 0x02, 0x01, 0x09, 0x61,
            b'x', 0x63, b'f', b'o', b'o', 0x41, 0x00, 0xff,
        ];
        let nodes = decode_nodes(&pack, None, &NoModels).unwrap();
        assert_eq!(
            nodes.get(&Path::Resource(1, 0, 0)),
            Some(&Node::Resource(crate::node::Resource::Single(
                Value::Integer(1)
            )))
        );
    }
}
