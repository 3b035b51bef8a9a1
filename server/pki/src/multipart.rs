//! application/multipart-core (CoAP Content-Format 62, RFC 8710).
//!
//! A CBOR array of pairs: a Content-Format (uint, at most 65535) and a representation (byte
//! string, or null for "no representation"). EST-coaps /skg answers
//! `[284, pkcs8 key, 281, certs-only]` (RFC 9148 §4.8).
//!
//! RFC 8710 §2 asks for strictness: stop on any CBOR error, structural deviation or trailing
//! data. [`decode`] follows that and says which rule was broken. Both definite and indefinite
//! length arrays and byte strings are accepted, since both are well-formed CBOR.

use minicbor::data::Type;
use minicbor::{Decoder, Encoder};

/// CoAP Content-Format of application/multipart-core.
pub const CONTENT_FORMAT: u16 = 62;

/// One representation inside a multipart-core payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// CoAP Content-Format of `payload`.
    pub content_format: u16,
    /// The representation; `None` is CBOR null, "no representation of this format".
    pub payload: Option<Vec<u8>>,
}

impl Part {
    /// A part with a representation.
    pub fn new(content_format: u16, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            content_format,
            payload: Some(payload.into()),
        }
    }
}

/// Why a multipart-core payload was rejected.
#[derive(Debug, thiserror::Error)]
pub enum MultipartError {
    /// Not well-formed CBOR, or truncated.
    #[error("invalid CBOR at byte {position}: {message}")]
    Cbor {
        /// Offset into the input.
        position: usize,
        /// The decoder's message.
        message: String,
    },
    /// The top-level item is not an array.
    #[error("top-level item is a {0}, not an array")]
    NotAnArray(String),
    /// A Content-Format is not an unsigned integer that fits in 16 bits.
    #[error("part {index}: Content-Format is not a uint of at most 65535")]
    InvalidContentFormat {
        /// Zero-based part number.
        index: usize,
    },
    /// A representation is neither a byte string nor null.
    #[error("part {index}: representation is not a byte string or null")]
    InvalidPayload {
        /// Zero-based part number.
        index: usize,
    },
    /// The array has an odd number of elements: the last Content-Format has no representation.
    #[error("array has an odd number of elements")]
    OddLength,
    /// Bytes follow the array.
    #[error("{0} bytes of trailing data after the array")]
    TrailingData(usize),
    /// Encoding failed (only possible through a bug in the CBOR encoder; writing to a Vec
    /// cannot fail).
    #[error("CBOR encoding failed: {0}")]
    Encode(String),
}

/// Encodes parts as a definite-length multipart-core array.
pub fn encode(parts: &[Part]) -> Result<Vec<u8>, MultipartError> {
    let mut e = Encoder::new(Vec::new());
    encode_into(&mut e, parts).map_err(|err| MultipartError::Encode(err.to_string()))?;
    Ok(e.into_writer())
}

fn encode_into(
    e: &mut Encoder<Vec<u8>>,
    parts: &[Part],
) -> Result<(), minicbor::encode::Error<std::convert::Infallible>> {
    // usize → u64 cannot truncate on any platform Rust supports.
    e.array(2 * parts.len() as u64)?;
    for part in parts {
        e.u16(part.content_format)?;
        match &part.payload {
            Some(bytes) => e.bytes(bytes)?,
            None => e.null()?,
        };
    }
    Ok(())
}

/// Decodes a multipart-core payload. Never allocates more than the input size for parts,
/// whatever lengths the input claims.
pub fn decode(input: &[u8]) -> Result<Vec<Part>, MultipartError> {
    let mut d = Decoder::new(input);
    let len = match d.datatype().map_err(|e| cbor(&d, e))? {
        Type::Array => d.array().map_err(|e| cbor(&d, e))?,
        Type::ArrayIndef => {
            d.array().map_err(|e| cbor(&d, e))?;
            None
        }
        other => return Err(MultipartError::NotAnArray(other.to_string())),
    };
    let mut parts = Vec::new();
    let mut elements: u64 = 0;
    loop {
        match len {
            Some(n) if elements == n => break,
            None if d.datatype().map_err(|e| cbor(&d, e))? == Type::Break => {
                d.skip().map_err(|e| cbor(&d, e))?;
                break;
            }
            _ => {}
        }
        let index = parts.len();
        let content_format = decode_content_format(&mut d, index)?;
        elements += 1;
        if len == Some(elements)
            || (len.is_none() && d.datatype().map_err(|e| cbor(&d, e))? == Type::Break)
        {
            return Err(MultipartError::OddLength);
        }
        let payload = decode_payload(&mut d, index)?;
        elements += 1;
        parts.push(Part {
            content_format,
            payload,
        });
    }
    let rest = input.len().saturating_sub(d.position());
    if rest != 0 {
        return Err(MultipartError::TrailingData(rest));
    }
    Ok(parts)
}

fn decode_content_format(d: &mut Decoder<'_>, index: usize) -> Result<u16, MultipartError> {
    match d.datatype().map_err(|e| cbor(d, e))? {
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => d
            .u16()
            .map_err(|_| MultipartError::InvalidContentFormat { index }),
        _ => Err(MultipartError::InvalidContentFormat { index }),
    }
}

fn decode_payload(d: &mut Decoder<'_>, index: usize) -> Result<Option<Vec<u8>>, MultipartError> {
    match d.datatype().map_err(|e| cbor(d, e))? {
        Type::Null => {
            d.null().map_err(|e| cbor(d, e))?;
            Ok(None)
        }
        Type::Bytes => Ok(Some(d.bytes().map_err(|e| cbor(d, e))?.to_vec())),
        Type::BytesIndef => {
            let start = d.position();
            let mut out = Vec::new();
            for chunk in d.bytes_iter().map_err(|e| cbor_at(start, e))? {
                out.extend_from_slice(chunk.map_err(|e| cbor_at(start, e))?);
            }
            Ok(Some(out))
        }
        _ => Err(MultipartError::InvalidPayload { index }),
    }
}

fn cbor(d: &Decoder<'_>, e: minicbor::decode::Error) -> MultipartError {
    cbor_at(d.position(), e)
}

/// `fallback` is used when the decoder error carries no position of its own.
fn cbor_at(fallback: usize, e: minicbor::decode::Error) -> MultipartError {
    MultipartError::Cbor {
        position: e.position().unwrap_or(fallback),
        message: e.to_string(),
    }
}
