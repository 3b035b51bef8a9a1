//! application/multipart-core (RFC 8710): test vectors, strictness, and a decoder fuzz.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use steward_pki::multipart::{MultipartError, Part, decode, encode};

/// RFC 8710 §2 example: [42, h'0123456789abcdef', 0, h'3031323334'].
const RFC8710_EXAMPLE: [u8; 19] = [
    0x84, 0x18, 0x2a, 0x48, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x00, 0x45, 0x30, 0x31,
    0x32, 0x33, 0x34,
];

#[test]
fn rfc8710_example_encodes_byte_exact() {
    let parts = [
        Part::new(42, vec![0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]),
        Part::new(0, b"01234".to_vec()),
    ];
    assert_eq!(encode(&parts).unwrap(), RFC8710_EXAMPLE);
    assert_eq!(decode(&RFC8710_EXAMPLE).unwrap(), parts);
}

#[test]
fn est_server_keygen_shape() {
    // /skg answers [284, pkcs8, 281, certs-only] (RFC 9148 §4.8).
    let parts = [Part::new(284, vec![1, 2, 3]), Part::new(281, vec![4, 5])];
    let bytes = encode(&parts).unwrap();
    assert_eq!(
        bytes,
        [
            0x84, 0x19, 0x01, 0x1c, 0x43, 1, 2, 3, 0x19, 0x01, 0x19, 0x42, 4, 5
        ]
    );
    assert_eq!(decode(&bytes).unwrap(), parts);
}

#[test]
fn empty_and_null_parts() {
    assert_eq!(encode(&[]).unwrap(), [0x80]);
    assert_eq!(decode(&[0x80]).unwrap(), vec![]);
    let parts = [Part {
        content_format: 281,
        payload: None,
    }];
    let bytes = encode(&parts).unwrap();
    assert_eq!(bytes, [0x82, 0x19, 0x01, 0x19, 0xf6]);
    assert_eq!(decode(&bytes).unwrap(), parts);
}

#[test]
fn indefinite_lengths_are_well_formed_cbor() {
    // [_ 42, (_ h'01', h'02'), 0, h''] with an indefinite array and byte string.
    let bytes = [
        0x9f, 0x18, 0x2a, 0x5f, 0x41, 0x01, 0x41, 0x02, 0xff, 0x00, 0x40, 0xff,
    ];
    assert_eq!(
        decode(&bytes).unwrap(),
        vec![Part::new(42, vec![1, 2]), Part::new(0, vec![])]
    );
}

#[test]
fn rejects_malformed_input() {
    use MultipartError as E;
    // Not an array: a map, a byte string.
    assert!(matches!(decode(&[0xa0]), Err(E::NotAnArray(_))));
    assert!(matches!(decode(&[0x40]), Err(E::NotAnArray(_))));
    // Empty input and truncated items.
    assert!(matches!(decode(&[]), Err(E::Cbor { .. })));
    assert!(matches!(decode(&[0x82, 0x00]), Err(E::Cbor { .. })));
    assert!(matches!(
        decode(&[0x82, 0x00, 0x45, 0x01]),
        Err(E::Cbor { .. })
    ));
    // Odd number of elements, definite and indefinite.
    assert!(matches!(decode(&[0x81, 0x00]), Err(E::OddLength)));
    assert!(matches!(decode(&[0x9f, 0x00, 0xff]), Err(E::OddLength)));
    // Content-Format out of range, negative, or not an integer.
    assert!(matches!(
        decode(&[0x82, 0x1a, 0x00, 0x01, 0x00, 0x00, 0x40]),
        Err(E::InvalidContentFormat { index: 0 })
    ));
    assert!(matches!(
        decode(&[0x82, 0x20, 0x40]),
        Err(E::InvalidContentFormat { index: 0 })
    ));
    assert!(matches!(
        decode(&[0x82, 0x61, 0x61, 0x40]),
        Err(E::InvalidContentFormat { index: 0 })
    ));
    // Representation that is text, not bytes or null.
    assert!(matches!(
        decode(&[0x84, 0x00, 0x40, 0x00, 0x61, 0x61]),
        Err(E::InvalidPayload { index: 1 })
    ));
    // Trailing data after the array.
    assert!(matches!(decode(&[0x80, 0x00]), Err(E::TrailingData(1))));
    // A huge claimed length does not allocate; it just runs out of input.
    assert!(matches!(
        decode(&[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00]),
        Err(E::Cbor { .. })
    ));
}

fn part() -> impl Strategy<Value = Part> {
    (
        any::<u16>(),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
    )
        .prop_map(|(content_format, payload)| Part {
            content_format,
            payload,
        })
}

proptest! {
    #[test]
    fn encode_decode_round_trip(parts in proptest::collection::vec(part(), 0..8)) {
        let bytes = encode(&parts).unwrap();
        prop_assert_eq!(decode(&bytes).unwrap(), parts);
    }

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&bytes);
    }
}
