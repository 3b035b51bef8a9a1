//! OMA TLV (11542, legacy 1542): the specification's examples byte for byte, round trips of
//! every node kind at every depth, and hostile input.

mod common;

use common::{EXAMPLE_MODELS, instance, int, multiple, single, string};

use std::collections::BTreeMap;

use common::{REGISTRY, TEST_OBJECT, hex, vector};
use proptest::prelude::*;
use steward_objects::codec::{DecodeError, EncodeError, decode, encode};
use steward_objects::model::NoModels;
use steward_objects::node::NodeError;
use steward_objects::{ContentFormat, Instance, Models, Node, ObjLink, Path, Value};

const TLV: ContentFormat = ContentFormat::Tlv;

fn tlv_vector(name: &str) -> Vec<u8> {
    hex(&vector(&format!("tlv/{name}")))
}

fn access_control_object() -> Node {
    let acl = |object: i64, entries: &[(u16, Value)]| {
        instance(vec![
            (0, single(int(object))),
            (1, single(int(0))),
            (2, multiple(entries)),
            (3, single(int(127))),
        ])
    };
    Node::Object(BTreeMap::from([
        (0, acl(1, &[(127, int(7))])),
        (2, acl(3, &[(127, int(7)), (310, int(1))])),
    ]))
}

fn server_object() -> Node {
    Node::Object(BTreeMap::from([(
        0,
        instance(vec![
            (0, single(int(1))),
            // Server object 1.2 types Lifetime as Unsigned Integer; the bytes are the same.
            (1, single(Value::UnsignedInteger(86400))),
            (6, single(Value::Boolean(true))),
            (7, single(string("U"))),
        ]),
    )]))
}

fn obj65_instance() -> Instance {
    instance(vec![
        (
            0,
            multiple(&[
                (0, Value::Objlnk(ObjLink::new(66, 0))),
                (1, Value::Objlnk(ObjLink::new(66, 1))),
            ]),
        ),
        (1, single(string("8613800755500"))),
        (2, single(int(305_419_896))),
    ])
}

fn obj66_object() -> Node {
    let service = |n: u8, link: ObjLink| {
        instance(vec![
            (0, single(string(&format!("myService {n}")))),
            (1, single(string(&format!("Internet.15.23{}", 3 + n)))),
            (2, single(Value::Objlnk(link))),
        ])
    };
    Node::Object(BTreeMap::from([
        (0, service(1, ObjLink::new(67, 0))),
        (1, service(2, ObjLink::NULL)),
    ]))
}

/// Every specification example: (file, path, node). Each decodes to the node and the node
/// encodes to exactly the example's bytes.
fn spec_examples() -> Vec<(&'static str, Path, Node)> {
    vec![
        (
            "device_instance.hex",
            Path::Instance(3, 0),
            Node::Instance(common::spec_device_instance()),
        ),
        (
            "device_object.hex",
            Path::Object(3),
            Node::Object(BTreeMap::from([(0, common::spec_device_instance())])),
        ),
        (
            "access_control_object.hex",
            Path::Object(2),
            access_control_object(),
        ),
        ("server_object.hex", Path::Object(1), server_object()),
        (
            "obj65_instance.hex",
            Path::Instance(65, 0),
            Node::Instance(obj65_instance()),
        ),
        ("obj66_object.hex", Path::Object(66), obj66_object()),
    ]
}

#[test]
fn spec_examples_decode() {
    for (file, path, node) in spec_examples() {
        for format in [ContentFormat::Tlv, ContentFormat::LegacyTlv] {
            let decoded = decode(format, &path, &tlv_vector(file), &*EXAMPLE_MODELS);
            assert_eq!(decoded, Ok(node.clone()), "{file} at {path} as {format}");
        }
    }
}

#[test]
fn spec_examples_encode_byte_exact() {
    for (file, path, node) in spec_examples() {
        let encoded = encode(TLV, &path, &node).expect("example encodes");
        assert_eq!(encoded, tlv_vector(file), "{file}");
    }
}

#[test]
fn instance_wrapped_in_object_instance_tlv() {
    // Some clients answer Read /3/0 with the instance TLV around the resources.
    let decoded = decode(
        TLV,
        &Path::Instance(3, 0),
        &tlv_vector("device_object.hex"),
        &*EXAMPLE_MODELS,
    );
    assert_eq!(decoded, Ok(Node::Instance(common::spec_device_instance())));
    // The wrapper must name the instance that was asked for.
    let decoded = decode(
        TLV,
        &Path::Instance(3, 1),
        &tlv_vector("device_object.hex"),
        &*EXAMPLE_MODELS,
    );
    assert!(
        matches!(decoded, Err(DecodeError::Malformed { .. })),
        "{decoded:?}"
    );
}

#[test]
fn resource_and_resource_instance_paths() {
    let models = &*EXAMPLE_MODELS;
    let voltage = hex("88 07 08 42 00 0E D8 42 01 13 88");
    assert_eq!(
        decode(TLV, &Path::Resource(3, 0, 7), &voltage, models),
        Ok(Node::Resource(multiple(&[(0, int(3800)), (1, int(5000))])))
    );
    let battery = hex("C1 09 64");
    assert_eq!(
        decode(TLV, &Path::Resource(3, 0, 9), &battery, models),
        Ok(Node::Resource(single(int(100))))
    );
    let acl_entry = hex("61 01 36 01");
    assert_eq!(
        decode(
            TLV,
            &Path::ResourceInstance(2, 2, 2, 310),
            &acl_entry,
            models
        ),
        Ok(Node::ResourceInstance(int(1)))
    );
    assert_eq!(
        encode(
            TLV,
            &Path::ResourceInstance(2, 2, 2, 310),
            &Node::ResourceInstance(int(1))
        ),
        Ok(acl_entry)
    );
}

#[test]
fn without_a_model_values_stay_raw_bytes() {
    let decoded = decode(
        TLV,
        &Path::Instance(3, 0),
        &tlv_vector("device_instance.hex"),
        &NoModels,
    )
    .expect("structure decodes without models");
    let Node::Instance(inst) = decoded else {
        panic!("instance expected")
    };
    assert_eq!(
        inst.resources.get(&0),
        Some(&single(Value::Opaque(b"Open Mobile Alliance".to_vec())))
    );
    assert_eq!(
        inst.resources.get(&7),
        Some(&multiple(&[
            (0, Value::Opaque(vec![0x0E, 0xD8])),
            (1, Value::Opaque(vec![0x13, 0x88]))
        ]))
    );
    // Unknown resource of a known object: raw bytes as well.
    let decoded = decode(
        TLV,
        &Path::Resource(3, 0, 999),
        &hex("E8 03 E7 02 AB CD"),
        &*EXAMPLE_MODELS,
    );
    assert_eq!(
        decoded,
        Ok(Node::Resource(single(Value::Opaque(vec![0xAB, 0xCD]))))
    );
}

#[test]
fn value_encodings_per_type() {
    let o = TEST_OBJECT;
    let cases: Vec<(u16, Value, &str)> = vec![
        (1, int(-1), "FF"),
        (1, int(127), "7F"),
        (1, int(128), "0080"),
        (1, int(-129), "FF7F"),
        (1, int(40_000), "00009C40"),
        (1, int(i64::MIN), "8000000000000000"),
        (2, Value::UnsignedInteger(255), "FF"),
        (2, Value::UnsignedInteger(65_535), "FFFF"),
        (2, Value::UnsignedInteger(u64::MAX), "FFFFFFFFFFFFFFFF"),
        (3, Value::Float(-2.5), "C0200000"),
        (3, Value::Float(0.1), "3FB999999999999A"),
        (4, Value::Boolean(false), "00"),
        (5, Value::Opaque(vec![]), ""),
        (6, Value::Time(-1), "FF"),
        (7, Value::Objlnk(ObjLink::new(3, 65_535)), "0003FFFF"),
        (8, Value::Corelnk("</3/0>".into()), "3C2F332F303E"),
    ];
    for (rid, value, value_hex) in cases {
        let path = Path::Resource(o, 0, rid);
        let node = Node::Resource(single(value));
        let bytes = encode(TLV, &path, &node).expect("encodes");
        let value_bytes = hex(value_hex);
        let header_len = if value_bytes.len() > 7 { 3 } else { 2 };
        assert_eq!(
            bytes.get(header_len..),
            Some(&value_bytes[..]),
            "{path} {node:?}"
        );
        assert_eq!(decode(TLV, &path, &bytes, &*EXAMPLE_MODELS), Ok(node));
    }
}

/// A one-resource payload at `/42799/0/rid` with the given value bytes.
fn test_resource(rid: u16, value: &[u8]) -> Vec<u8> {
    let mut out = vec![
        0xC8,
        u8::try_from(rid).expect("small id"),
        u8::try_from(value.len()).expect("short value"),
    ];
    out.extend_from_slice(value);
    out
}

fn decode_test_resource(rid: u16, value: &[u8]) -> Result<Node, DecodeError> {
    decode(
        TLV,
        &Path::Resource(TEST_OBJECT, 0, rid),
        &test_resource(rid, value),
        &*EXAMPLE_MODELS,
    )
}

#[test]
fn wrong_value_sizes_and_contents_are_type_errors() {
    let bad: Vec<(u16, &[u8])> = vec![
        (1, &[]),                 // integer: no bytes
        (1, &[0, 0, 1]),          // integer: 3 bytes
        (1, &[0; 5]),             // integer: 5 bytes
        (2, &[0; 16]),            // unsigned: 16 bytes
        (3, &[0; 2]),             // float: 2 bytes
        (3, &[0; 5]),             // float: 5 bytes
        (4, &[2]),                // boolean: neither 0 nor 1
        (4, &[0, 1]),             // boolean: 2 bytes
        (6, &[0; 3]),             // time: 3 bytes
        (7, &[0, 3, 0]),          // objlnk: 3 bytes
        (0, &[0x66, 0xFF, 0x6F]), // string: invalid UTF-8
        (0, &[0xED, 0xA0, 0x80]), // string: UTF-8-encoded surrogate
        (8, &[0xC0, 0x80]),       // corelnk: overlong encoding
        (9, &[]),                 // executable resource given a value
    ];
    for (rid, value) in bad {
        let result = decode_test_resource(rid, value);
        assert!(
            matches!(result, Err(DecodeError::TypeMismatch { .. })),
            "rid {rid} {value:02X?}: {result:?}"
        );
    }
    let err = decode_test_resource(0, &[0x66, 0xFF]).expect_err("invalid UTF-8");
    assert!(err.to_string().contains("UTF-8"), "{err}");
}

#[test]
fn multiplicity_must_match_the_model() {
    // Available Power Sources (/3/0/6) is multiple; sent as a single resource TLV.
    let result = decode(
        TLV,
        &Path::Instance(3, 0),
        &hex("C1 06 01"),
        &*EXAMPLE_MODELS,
    );
    assert!(
        matches!(
            result,
            Err(DecodeError::Node(NodeError::Multiplicity { .. }))
        ),
        "{result:?}"
    );
    // Battery Level (/3/0/9) is single; sent as a multiple resource TLV.
    let result = decode(
        TLV,
        &Path::Resource(3, 0, 9),
        &hex("83 09 41 00 64"),
        &*EXAMPLE_MODELS,
    );
    assert!(
        matches!(
            result,
            Err(DecodeError::Node(NodeError::Multiplicity { .. }))
        ),
        "{result:?}"
    );
    // A resource instance of a single resource.
    let result = decode(
        TLV,
        &Path::ResourceInstance(3, 0, 9, 0),
        &hex("41 00 64"),
        &*EXAMPLE_MODELS,
    );
    assert!(
        matches!(
            result,
            Err(DecodeError::Node(NodeError::Multiplicity { .. }))
        ),
        "{result:?}"
    );
}

#[test]
fn duplicates_are_refused() {
    let cases = [
        (Path::Instance(3, 0), "C1 09 64 C1 09 63"),
        (Path::Resource(3, 0, 6), "86 06 41 00 01 41 00 05"),
        (Path::Object(3), "08 00 03 C1 09 64 08 00 03 C1 09 64"),
    ];
    for (path, bytes) in cases {
        let result = decode(TLV, &path, &hex(bytes), &*EXAMPLE_MODELS);
        assert!(
            matches!(result, Err(DecodeError::Node(NodeError::Duplicate { .. }))),
            "{path}: {result:?}"
        );
    }
}

#[test]
fn structure_must_fit_the_path() {
    let cases = [
        // resource TLVs at an object path
        (Path::Object(3), "C1 09 64"),
        // two resources where one is asked for
        (Path::Resource(3, 0, 9), "C1 09 64 C1 0A 0F"),
        // the resource asked for has another ID
        (Path::Resource(3, 0, 9), "C1 0A 0F"),
        // resource instance TLV where a resource is asked for
        (Path::Resource(3, 0, 9), "41 09 64"),
        // resource TLV where a resource instance is asked for
        (Path::ResourceInstance(3, 0, 6, 0), "C1 00 01"),
        // resource instance with another ID
        (Path::ResourceInstance(3, 0, 6, 0), "41 01 01"),
        // resource instance TLVs straight in an instance
        (Path::Instance(3, 0), "41 00 01"),
        // resource TLV inside a multiple resource
        (Path::Resource(3, 0, 6), "86 06 C1 00 01 C1 01 05"),
    ];
    for (path, bytes) in cases {
        let result = decode(TLV, &path, &hex(bytes), &*EXAMPLE_MODELS);
        assert!(
            matches!(result, Err(DecodeError::Malformed { .. })),
            "{path} {bytes}: {result:?}"
        );
    }
    assert!(matches!(
        decode(TLV, &Path::Resource(3, 0, 9), &[], &*EXAMPLE_MODELS),
        Err(DecodeError::Node(NodeError::Empty { .. }))
    ));
    assert_eq!(
        decode(TLV, &Path::Object(3), &[], &*EXAMPLE_MODELS),
        Ok(Node::Object(BTreeMap::new()))
    );
}

#[test]
fn truncated_payloads_never_decode() {
    // The object form is one TLV: every strict prefix cuts it.
    let full = tlv_vector("device_object.hex");
    for len in 1..full.len() {
        let result = decode(TLV, &Path::Object(3), &full[..len], &*EXAMPLE_MODELS);
        assert!(
            matches!(result, Err(DecodeError::Malformed { .. })),
            "prefix {len}: {result:?}"
        );
    }
}

#[test]
fn trailing_garbage_is_refused() {
    for tail in ["00", "C8", "C8 00", "FF FF"] {
        let mut bytes = tlv_vector("device_instance.hex");
        bytes.extend(hex(tail));
        let result = decode(TLV, &Path::Instance(3, 0), &bytes, &*EXAMPLE_MODELS);
        assert!(result.is_err(), "tail {tail}: {result:?}");
    }
}

#[test]
fn huge_declared_lengths_fail_fast() {
    // 24-bit lengths of 16 MiB with a handful of bytes behind them, at every level.
    for bytes in [
        "F8 09 FF FF FF 00",
        "18 00 FF FF FF C1 09 64",
        "08 00 05 98 06 FF FF FF",
        "98 06 FF FF FF 41 00 01",
        "58 00 FF FF FF 01",
        "F0 09 FF FF 01",
        "E8 00 01",
    ] {
        for path in [
            Path::Object(3),
            Path::Instance(3, 0),
            Path::Resource(3, 0, 9),
            Path::ResourceInstance(3, 0, 6, 0),
        ] {
            let result = decode(TLV, &path, &hex(bytes), &*EXAMPLE_MODELS);
            assert!(result.is_err(), "{path} {bytes}: {result:?}");
        }
    }
}

#[test]
fn deep_nesting_is_refused_without_recursion() {
    // 2000 object instance TLVs nested in each other, each with a 24-bit length.
    let mut bytes = hex("C1 09 64");
    for _ in 0..2000 {
        let len = u32::try_from(bytes.len()).expect("small").to_be_bytes();
        let mut outer = vec![0x18, 0x00, len[1], len[2], len[3]];
        outer.extend_from_slice(&bytes);
        bytes = outer;
    }
    for path in [Path::Object(3), Path::Instance(3, 0)] {
        let result = decode(TLV, &path, &bytes, &*EXAMPLE_MODELS);
        assert!(
            matches!(result, Err(DecodeError::Malformed { .. })),
            "{path}: {result:?}"
        );
    }
}

#[test]
fn reserved_and_wide_ids() {
    // 16-bit IDs work at every level; 65535 is refused.
    let node = Node::Object(BTreeMap::from([(
        300,
        instance(vec![(1000, multiple(&[(65_534, int(1))]))]),
    )]));
    let bytes = encode(TLV, &Path::Object(TEST_OBJECT), &node).expect("encodes");
    assert_eq!(bytes, hex("27 01 2C   A4 03 E8   61 FF FE 01"));
    assert_eq!(
        decode(TLV, &Path::Object(TEST_OBJECT), &bytes, &NoModels),
        Ok(Node::Object(BTreeMap::from([(
            300,
            instance(vec![(1000, multiple(&[(65_534, Value::Opaque(vec![1]))]))]),
        )])))
    );
    let reserved = Node::Instance(instance(vec![(65_535, single(int(1)))]));
    assert!(matches!(
        encode(TLV, &Path::Instance(3, 0), &reserved),
        Err(EncodeError::InvalidValue { .. })
    ));
    let result = decode(TLV, &Path::Instance(3, 0), &hex("E1 FF FF 01"), &NoModels);
    assert!(
        matches!(result, Err(DecodeError::Malformed { .. })),
        "{result:?}"
    );
}

#[test]
fn length_field_widths_round_trip() {
    for len in [0usize, 7, 8, 255, 256, 65_535, 65_536, 100_000] {
        let node = Node::Resource(single(Value::Opaque(vec![0xA5; len])));
        let path = Path::Resource(TEST_OBJECT, 0, 5);
        let bytes = encode(TLV, &path, &node).expect("encodes");
        let header = match len {
            0..=7 => 2,
            8..=255 => 3,
            256..=65_535 => 4,
            _ => 5,
        };
        assert_eq!(bytes.len(), header + len, "{len}");
        assert_eq!(decode(TLV, &path, &bytes, &*EXAMPLE_MODELS), Ok(node));
    }
}

#[test]
fn oversized_values_do_not_encode() {
    let node = Node::Resource(single(Value::Opaque(vec![0; 0x100_0000])));
    let result = encode(TLV, &Path::Resource(TEST_OBJECT, 0, 5), &node);
    assert!(
        matches!(result, Err(EncodeError::InvalidValue { .. })),
        "{result:?}"
    );
}

fn paths_for_fuzzing() -> impl Strategy<Value = Path> {
    prop_oneof![
        Just(Path::Object(3)),
        Just(Path::Instance(3, 0)),
        Just(Path::Resource(3, 0, 7)),
        Just(Path::ResourceInstance(3, 0, 6, 1)),
        Just(Path::Object(TEST_OBJECT)),
        Just(Path::Instance(TEST_OBJECT, 1)),
        Just(Path::Resource(TEST_OBJECT, 0, 3)),
        Just(Path::ResourceInstance(TEST_OBJECT, 0, 14, 0)),
    ]
}

/// Byte strings that look like TLV often enough to get past the first header: short TLVs
/// with inline lengths and 8-bit IDs 0..=15, each kind, in sequence.
fn tlvish_bytes() -> impl Strategy<Value = Vec<u8>> {
    let tlv = (
        0u8..4,
        0u8..16,
        proptest::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(kind, id, value)| {
            let len = u8::try_from(value.len()).expect("at most 7");
            let mut out = vec![(kind << 6) | len, id];
            out.extend(value);
            out
        });
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec(tlv, 0..6).prop_map(|parts| parts.concat()),
    ]
}

proptest! {
    #[test]
    fn every_node_round_trips((path, node) in common::any_node()) {
        for format in [ContentFormat::Tlv, ContentFormat::LegacyTlv] {
            let bytes = encode(format, &path, &node).expect("generated nodes encode");
            prop_assert_eq!(decode(format, &path, &bytes, &*REGISTRY), Ok(node.clone()));
        }
    }

    /// Without models the structure survives and the raw bytes re-encode identically.
    #[test]
    fn raw_decoding_preserves_bytes((path, node) in common::any_node()) {
        let bytes = encode(TLV, &path, &node).expect("encodes");
        let raw = decode(TLV, &path, &bytes, &NoModels).expect("decodes without models");
        prop_assert_eq!(encode(TLV, &path, &raw), Ok(bytes));
    }

    #[test]
    fn wrapped_instances_decode_the_same((path, node) in common::node_at_depth(TEST_OBJECT, 2)) {
        let Path::Instance(_, iid) = path else { unreachable!("depth 2 is an instance") };
        let Node::Instance(inst) = node.clone() else { unreachable!("depth 2 is an instance") };
        let object = Node::Object(BTreeMap::from([(iid, inst)]));
        let wrapped = encode(TLV, &Path::Object(TEST_OBJECT), &object).expect("encodes");
        prop_assert_eq!(decode(TLV, &path, &wrapped, &*REGISTRY), Ok(node));
    }

    /// Any bytes: an error or a node, and a node re-encodes to a payload that decodes to it.
    #[test]
    fn decoding_is_total(bytes in tlvish_bytes(), path in paths_for_fuzzing()) {
        for models in [&*EXAMPLE_MODELS as &dyn Models, &NoModels] {
            if let Ok(node) = decode(TLV, &path, &bytes, models) {
                let again = encode(TLV, &path, &node).expect("decoded nodes encode");
                prop_assert_eq!(decode(TLV, &path, &again, models), Ok(node));
            }
        }
    }
}
