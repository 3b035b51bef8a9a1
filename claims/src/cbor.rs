//! The few deterministic-CBOR writing helpers the canonical encodings need (RFC 8949 §4.2.1:
//! definite lengths, shortest heads). Reading goes through [`minicbor::Decoder`]; strict decoders
//! re-encode what they read with these and compare, so one writer defines the canonical form.
//!
//! Shared with `steward_pki::ctl` (the canonical CTL) so that both encodings use one copy.

/// Major type 0: unsigned integer.
pub const MAJOR_UNSIGNED: u8 = 0;
/// Major type 1: negative integer (`-1 - n`).
pub const MAJOR_NEGATIVE: u8 = 1;
/// Major type 2: byte string.
pub const MAJOR_BYTES: u8 = 2;
/// Major type 3: text string.
pub const MAJOR_TEXT: u8 = 3;
/// Major type 4: array.
pub const MAJOR_ARRAY: u8 = 4;
/// Major type 5: map.
pub const MAJOR_MAP: u8 = 5;

/// Appends a CBOR head (`major` 0..=7, argument `value`) in its shortest form.
pub fn head(out: &mut Vec<u8>, major: u8, value: u64) {
    let major = major << 5;
    match value {
        0..=23 => out.push(major | value as u8),
        24..=0xff => {
            out.push(major | 24);
            out.push(value as u8);
        }
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend_from_slice(&(value as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(major | 26);
            out.extend_from_slice(&(value as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend_from_slice(&value.to_be_bytes());
        }
    }
}

/// Appends an integer (a map key, say) in its shortest form: major type 0 or 1.
pub fn int(out: &mut Vec<u8>, value: i64) {
    if value >= 0 {
        head(out, MAJOR_UNSIGNED, value.unsigned_abs());
    } else {
        // -1 - value, without overflow for i64::MIN.
        head(out, MAJOR_NEGATIVE, (value + 1).unsigned_abs());
    }
}

/// Appends a definite-length byte string.
pub fn bytes(out: &mut Vec<u8>, value: &[u8]) {
    head(out, MAJOR_BYTES, value.len() as u64);
    out.extend_from_slice(value);
}

/// Appends a definite-length text string.
pub fn text(out: &mut Vec<u8>, value: &str) {
    head(out, MAJOR_TEXT, value.len() as u64);
    out.extend_from_slice(value.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(major: u8, value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        head(&mut out, major, value);
        out
    }

    #[test]
    fn heads_are_shortest() {
        assert_eq!(encoded(MAJOR_UNSIGNED, 0), [0x00]);
        assert_eq!(encoded(MAJOR_UNSIGNED, 23), [0x17]);
        assert_eq!(encoded(MAJOR_UNSIGNED, 24), [0x18, 0x18]);
        assert_eq!(encoded(MAJOR_BYTES, 0xff), [0x58, 0xff]);
        assert_eq!(encoded(MAJOR_TEXT, 0x100), [0x79, 0x01, 0x00]);
        assert_eq!(encoded(MAJOR_MAP, 0x1_0000), [0xba, 0, 1, 0, 0]);
        assert_eq!(
            encoded(MAJOR_ARRAY, u64::MAX),
            [0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn integers() {
        let int_bytes = |value| {
            let mut out = Vec::new();
            int(&mut out, value);
            out
        };
        assert_eq!(int_bytes(7), [0x07]);
        assert_eq!(int_bytes(-1), [0x20]);
        assert_eq!(int_bytes(-65537), [0x3a, 0x00, 0x01, 0x00, 0x00]);
        assert_eq!(
            int_bytes(i64::MIN),
            [0x3b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
    }
}
