//! CBOR: `application/cbor` (60), LwM2M 1.1 and later (Core TS 1.1 §7.4 "CBOR"; RFC 8949).
//!
//! The payload is one CBOR data item: the value of a single resource or resource instance.
//! - String and Corelnk: text string; Objlnk: text string `oid:iid`;
//! - Integer: integer (major type 0 or 1); Unsigned Integer: major type 0;
//! - Float: single precision when exact, double otherwise (the decoder takes half, single and
//!   double);
//! - Boolean: `true`/`false`; Opaque: byte string;
//! - Time: the Core text does not fix an encoding. We send tag 1 (epoch-based date/time,
//!   RFC 8949 §3.4.2) around an integer, as Leshan does, because a decoder that handles time
//!   at all handles tag 1. We accept an untagged integer, tag 1 around an integer or a float
//!   (a fraction is dropped, rounding down), and tag 0 around an RFC 3339 date-time, which
//!   Zephyr's LwM2M client sends.
//!
//! Indefinite-length text and byte strings are ordinary RFC 8949 data items and LwM2M does not
//! exclude them, so the decoder joins their chunks. Arrays, maps, null, undefined, other simple
//! values and other tags cannot be a resource value and are refused, as are bytes after the
//! item. Nothing nests, so the decoder never recurses.
//!
//! The decoder reads the wire type, then brings it to the model's type with
//! [`type_value`](crate::codec::type_value); a resource the model does not know keeps the wire
//! type (a non-negative integer that fits `i64` reads as [`Value::Integer`]).

use minicbor::data::Type;
use minicbor::{Decoder, Encoder};

use crate::codec::text::{check_single_path, single_node, single_value};
use crate::codec::{DecodeError, EncodeError, type_value};
use crate::format::ContentFormat;
use crate::model::Models;
use crate::node::Node;
use crate::path::Path;
use crate::value::Value;

const FORMAT: ContentFormat = ContentFormat::Cbor;

/// RFC 8949 §3.4.1: standard date/time string.
const TAG_DATE_TIME: u64 = 0;
/// RFC 8949 §3.4.2: epoch-based date/time.
const TAG_EPOCH: u64 = 1;

/// Encodes the value of the single resource or resource instance at `path`.
pub fn encode(path: &Path, node: &Node) -> Result<Vec<u8>, EncodeError> {
    let value = single_value(FORMAT, path, node)?;
    let mut e = Encoder::new(Vec::new());
    write_value(&mut e, value).map_err(|err| EncodeError::InvalidValue {
        path: *path,
        reason: err.to_string(),
    })?;
    Ok(e.into_writer())
}

/// Decodes the value of the single resource or resource instance at `path`.
pub fn decode(path: &Path, payload: &[u8], models: &dyn Models) -> Result<Node, DecodeError> {
    check_single_path(FORMAT, path, models)?;
    let mut d = Decoder::new(payload);
    let value = read_item(&mut d, path)?;
    let rest = payload.len().saturating_sub(d.position());
    if rest != 0 {
        return Err(malformed(format!("{path}: {rest} bytes after the value")));
    }
    let value = type_value(FORMAT, path, value, models)?;
    single_node(path, value)
}

type WriteError = minicbor::encode::Error<std::convert::Infallible>;

fn write_value(e: &mut Encoder<Vec<u8>>, value: &Value) -> Result<(), WriteError> {
    match value {
        Value::String(s) | Value::Corelnk(s) => e.str(s)?,
        Value::Integer(i) => e.i64(*i)?,
        Value::UnsignedInteger(u) => e.u64(*u)?,
        Value::Float(f) => {
            let narrow = *f as f32;
            if f64::from(narrow) == *f {
                e.f32(narrow)?
            } else {
                e.f64(*f)?
            }
        }
        Value::Boolean(b) => e.bool(*b)?,
        Value::Opaque(bytes) => e.bytes(bytes)?,
        Value::Time(t) => e.tag(minicbor::data::Tag::new(TAG_EPOCH))?.i64(*t)?,
        Value::Objlnk(link) => e.str(&link.to_string())?,
    };
    Ok(())
}

fn malformed(reason: impl Into<String>) -> DecodeError {
    DecodeError::malformed(FORMAT, reason)
}

fn cbor_error(err: minicbor::decode::Error) -> DecodeError {
    malformed(err.to_string())
}

/// Reads one data item as the value its CBOR type says. LwM2M CBOR (11544) reads its leaf
/// values with this too.
pub(crate) fn read_item(d: &mut Decoder<'_>, path: &Path) -> Result<Value, DecodeError> {
    Ok(match d.datatype().map_err(cbor_error)? {
        Type::Bool => Value::Boolean(d.bool().map_err(cbor_error)?),
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => {
            let u = d.u64().map_err(cbor_error)?;
            i64::try_from(u).map_or(Value::UnsignedInteger(u), Value::Integer)
        }
        Type::I8 | Type::I16 | Type::I32 | Type::I64 | Type::Int => {
            Value::Integer(read_negative(d, path)?)
        }
        Type::F16 | Type::F32 | Type::F64 => Value::Float(d.f64().map_err(cbor_error)?),
        Type::Bytes | Type::BytesIndef => Value::Opaque(read_bytes(d)?),
        Type::String | Type::StringIndef => Value::String(read_text(d)?),
        Type::Tag => Value::Time(read_tagged_time(d, path)?),
        other => {
            return Err(malformed(format!(
                "{path}: a CBOR {other} cannot be a resource value"
            )));
        }
    })
}

fn read_negative(d: &mut Decoder<'_>, path: &Path) -> Result<i64, DecodeError> {
    let n = i128::from(d.int().map_err(cbor_error)?);
    i64::try_from(n)
        .map_err(|_| malformed(format!("{path}: integer {n} is below the 64-bit range")))
}

/// A definite or indefinite byte string; the chunks together are never longer than the input.
fn read_bytes(d: &mut Decoder<'_>) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    for chunk in d.bytes_iter().map_err(cbor_error)? {
        out.extend_from_slice(chunk.map_err(cbor_error)?);
    }
    Ok(out)
}

/// A definite or indefinite text string.
fn read_text(d: &mut Decoder<'_>) -> Result<String, DecodeError> {
    let mut out = String::new();
    for chunk in d.str_iter().map_err(cbor_error)? {
        out.push_str(chunk.map_err(cbor_error)?);
    }
    Ok(out)
}

/// A tagged time: tag 1 around a number of seconds, or tag 0 around an RFC 3339 string.
fn read_tagged_time(d: &mut Decoder<'_>, path: &Path) -> Result<i64, DecodeError> {
    let tag = d.tag().map_err(cbor_error)?.as_u64();
    let inner = d.datatype().map_err(cbor_error)?;
    match (tag, inner) {
        (TAG_EPOCH, Type::U8 | Type::U16 | Type::U32 | Type::U64) => {
            let u = d.u64().map_err(cbor_error)?;
            i64::try_from(u)
                .map_err(|_| malformed(format!("{path}: time {u} is past the 64-bit range")))
        }
        (TAG_EPOCH, Type::I8 | Type::I16 | Type::I32 | Type::I64 | Type::Int) => {
            read_negative(d, path)
        }
        (TAG_EPOCH, Type::F16 | Type::F32 | Type::F64) => {
            let f = d.f64().map_err(cbor_error)?.floor();
            // 2^63 is exact as a float; every finite float in [-2^63, 2^63) fits an i64.
            const LIMIT: f64 = 9_223_372_036_854_775_808.0;
            if f.is_finite() && (-LIMIT..LIMIT).contains(&f) {
                Ok(f as i64)
            } else {
                Err(malformed(format!(
                    "{path}: time {f} is not a 64-bit number of seconds"
                )))
            }
        }
        (TAG_DATE_TIME, Type::String | Type::StringIndef) => {
            let text = read_text(d)?;
            rfc3339_seconds(&text)
                .ok_or_else(|| malformed(format!("{path}: {text:?} is not an RFC 3339 date-time")))
        }
        (TAG_EPOCH | TAG_DATE_TIME, other) => Err(malformed(format!(
            "{path}: tag {tag} cannot hold a CBOR {other}"
        ))),
        (other, _) => Err(malformed(format!(
            "{path}: CBOR tag {other} is not an LwM2M value"
        ))),
    }
}

/// Seconds since the epoch of an RFC 3339 `date-time`, e.g. `2013-05-02T10:40:15Z` or
/// `2013-05-02T12:40:15.5+02:00`. Fractions of a second are dropped; `-00:00` (offset
/// unknown) counts as UTC.
fn rfc3339_seconds(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |from: usize, to: usize| -> Option<i64> {
        let digits = b.get(from..to)?;
        digits.iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let at = |i: usize, allowed: &[u8]| b.get(i).is_some_and(|c| allowed.contains(c));
    let seps = at(4, b"-") && at(7, b"-") && at(10, b"Tt") && at(13, b":") && at(16, b":");
    if !seps {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let valid = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour <= 23
        && minute <= 59
        && second <= 60;
    if !valid {
        return None;
    }
    let mut rest = b.get(19..)?;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let digits = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        rest = fraction.get(digits..)?;
    }
    let offset = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let two = |a: u8, b: u8| {
                (a.is_ascii_digit() && b.is_ascii_digit())
                    .then(|| i64::from(a - b'0') * 10 + i64::from(b - b'0'))
            };
            let (h, m) = (two(*h1, *h2)?, two(*m1, *m2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let magnitude = h * 3600 + m * 60;
            if *sign == b'-' { -magnitude } else { magnitude }
        }
        _ => return None,
    };
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(rfc3339_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_seconds("2013-05-02T10:40:15Z"), Some(1_367_491_215));
        assert_eq!(
            rfc3339_seconds("2013-05-02T12:40:15.999+02:00"),
            Some(1_367_491_215)
        );
        assert_eq!(
            rfc3339_seconds("2013-05-02T10:40:15-00:00"),
            Some(1_367_491_215)
        );
        assert_eq!(rfc3339_seconds("1969-12-31T23:59:59z"), Some(-1));
        assert_eq!(rfc3339_seconds("2000-02-29T00:00:00Z"), Some(951_782_400));
        for bad in [
            "",
            "2013-05-02",
            "2013-05-02T10:40:15",
            "2013-05-02 10:40:15Z",
            "2013-13-02T10:40:15Z",
            "2001-02-29T00:00:00Z",
            "2013-05-02T24:00:00Z",
            "2013-05-02T10:40:15.Z",
            "2013-05-02T10:40:15+2:00",
            "2013-05-02T10:40:15+02:00x",
            "+013-05-02T10:40:15Z",
            "２０13-05-02T10:40:15Z",
        ] {
            assert_eq!(rfc3339_seconds(bad), None, "{bad}");
        }
    }
}
