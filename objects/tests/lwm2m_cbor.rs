//! LwM2M CBOR (11544): example payloads as files (see vectors/lwm2m_cbor/README.md), round
//! trips of every node kind at every depth, composite content and path lists, and hostile
//! input.

mod common;

use common::{EXAMPLE_MODELS, instance, multiple, p, single, string};

use std::collections::BTreeMap;

use common::{REGISTRY, hex, vector};
use proptest::prelude::*;
use steward_objects::codec::{
    DecodeError, EncodeError, decode, decode_nodes, decode_paths, decode_timestamped, encode,
    encode_nodes, encode_paths, encode_timestamped,
};
use steward_objects::model::NoModels;
use steward_objects::node::{NodeError, NodeMap, TimestampedNodes};
use steward_objects::{ContentFormat, Node, ObjLink, Path, Value};

const CBOR: ContentFormat = ContentFormat::Lwm2mCbor;

fn bytes(name: &str) -> Vec<u8> {
    hex(&vector(&format!("lwm2m_cbor/{name}")))
}

fn obj66_object() -> Node {
    let link = |o, i| Value::Objlnk(ObjLink::new(o, i));
    Node::Object(BTreeMap::from([
        (
            0,
            instance(vec![
                (0, single(string("myService 1"))),
                (1, single(string("Internet.15.234"))),
                (2, single(link(67, 0))),
            ]),
        ),
        (
            1,
            instance(vec![
                (0, single(string("myService 2"))),
                (1, single(string("Internet.15.235"))),
                (2, single(Value::Objlnk(ObjLink::NULL))),
            ]),
        ),
    ]))
}

/// Decodes `name` at `path` and, for canonical vectors, checks the encoder writes it back
/// byte for byte.
fn check_vector(name: &str, path: &str, expected: &Node, canonical: bool) {
    let payload = bytes(name);
    let path = p(path);
    assert_eq!(
        decode(CBOR, &path, &payload, &*EXAMPLE_MODELS).as_ref(),
        Ok(expected),
        "{name}"
    );
    if canonical {
        assert_eq!(encode(CBOR, &path, expected), Ok(payload), "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Vectors
// ---------------------------------------------------------------------------------------------

#[test]
fn device_instance_read() {
    let expected = Node::Instance(common::spec_device_instance());
    check_vector("device_instance.hex", "/3/0", &expected, true);
    check_vector("device_instance_array_key.hex", "/3/0", &expected, false);
}

#[test]
fn device_object_read_holds_the_instance() {
    let expected = Node::Object(BTreeMap::from([(0, common::spec_device_instance())]));
    check_vector("device_instance.hex", "/3", &expected, true);
}

#[test]
fn single_resource_read() {
    let expected = Node::Resource(single(string("Open Mobile Alliance")));
    check_vector("device_resource.hex", "/3/0/0", &expected, false);
    check_vector("single_resource_nested.hex", "/3/0/0", &expected, true);
}

#[test]
fn multiple_resource_and_resource_instance_read() {
    let voltage = multiple(&[(0, Value::Integer(3800)), (1, Value::Integer(5000))]);
    check_vector(
        "power_source_voltage.hex",
        "/3/0/7",
        &Node::Resource(voltage),
        true,
    );
    let one = Node::ResourceInstance(Value::Integer(5000));
    check_vector("power_source_voltage_instance.hex", "/3/0/7/1", &one, true);
}

#[test]
fn object_links_as_text() {
    check_vector("obj66_object.hex", "/66", &obj66_object(), true);
    let link = |o, i| Value::Objlnk(ObjLink::new(o, i));
    let expected = Node::Instance(instance(vec![
        (0, multiple(&[(0, link(66, 0)), (1, link(66, 1))])),
        (1, single(string("8613800755500"))),
        (2, single(Value::Integer(305_419_896))),
    ]));
    check_vector("obj65_instance.hex", "/65/0", &expected, true);
    // Without a model the text stays text.
    let untyped = decode(
        CBOR,
        &p("/66/0/2"),
        &hex("a1 83 18 42 00 02 64 36 37 3a 30"),
        &NoModels,
    );
    assert_eq!(untyped, Ok(Node::Resource(single(string("67:0")))));
}

#[test]
fn read_composite_response() {
    let requested = [p("/3/0/9"), p("/3/0/13"), p("/1/0/1")];
    let expected: NodeMap = BTreeMap::from([
        (
            p("/1/0/1"),
            Node::Resource(single(Value::UnsignedInteger(86_400))),
        ),
        (p("/3/0/9"), Node::Resource(single(Value::Integer(100)))),
        (
            p("/3/0/13"),
            Node::Resource(single(Value::Time(1_367_491_215))),
        ),
    ]);
    let payload = bytes("composite_read_response.hex");
    assert_eq!(
        decode_nodes(CBOR, &payload, Some(&requested), &*EXAMPLE_MODELS),
        Ok(expected.clone())
    );
    assert_eq!(encode_nodes(CBOR, &expected), Ok(payload));
}

#[test]
fn read_composite_request_paths() {
    let paths = vec![p("/3/0/9"), p("/3/0/13"), p("/1/0"), p("/5")];
    let payload = bytes("composite_read_request.hex");
    assert_eq!(decode_paths(CBOR, &payload), Ok(paths.clone()));
    assert_eq!(encode_paths(CBOR, &paths), Ok(payload));
}

#[test]
fn write_composite_mixed_key_forms() {
    let expected: NodeMap = BTreeMap::from([
        (
            p("/1/0/1"),
            Node::Resource(single(Value::UnsignedInteger(5))),
        ),
        (p("/3/0/14"), Node::Resource(single(string("+02:00")))),
    ]);
    assert_eq!(
        decode_nodes(CBOR, &bytes("write_composite.hex"), None, &*EXAMPLE_MODELS),
        Ok(expected)
    );
}

#[test]
fn send_without_times_only() {
    let payload = bytes("composite_read_response.hex");
    let entries = decode_timestamped(CBOR, &payload, &*EXAMPLE_MODELS).expect("decodes");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].time, None);
    assert_eq!(encode_timestamped(CBOR, &entries), Ok(payload));
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

/// Distinct paths at any depth (Read-Composite lists may overlap).
fn path_list() -> impl Strategy<Value = Vec<Path>> {
    let id = 0u16..65535;
    let path = proptest::collection::vec(id, 1..=4)
        .prop_map(|ids| Path::from_ids(&ids).expect("valid IDs"));
    proptest::collection::btree_set(path, 0..8).prop_map(|set| set.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn node_round_trip((path, node) in common::any_node()) {
        let payload = encode(CBOR, &path, &node).expect("every node encodes");
        prop_assert_eq!(decode(CBOR, &path, &payload, &*REGISTRY), Ok(node));
    }

    #[test]
    fn composite_round_trip(nodes in common::node_map()) {
        let payload = encode_nodes(CBOR, &nodes).expect("composite content encodes");
        let requested: Vec<Path> = nodes.keys().copied().collect();
        prop_assert_eq!(decode_nodes(CBOR, &payload, Some(&requested), &*REGISTRY), Ok(nodes));
    }

    #[test]
    fn untimed_send_round_trip(nodes in common::resource_level_map()) {
        let entries = vec![TimestampedNodes { time: None, nodes }];
        let payload = encode_timestamped(CBOR, &entries).expect("untimed entry encodes");
        prop_assert_eq!(decode_timestamped(CBOR, &payload, &*REGISTRY), Ok(entries));
    }

    #[test]
    fn time_series_are_refused(series in common::time_series()) {
        let timed = series.len() > 1 || series.iter().any(|e| e.time.is_some());
        let result = encode_timestamped(CBOR, &series);
        prop_assert_eq!(timed, matches!(result, Err(EncodeError::Unsupported { .. })));
    }

    #[test]
    fn path_list_round_trip(paths in path_list()) {
        let payload = encode_paths(CBOR, &paths).expect("paths encode");
        prop_assert_eq!(decode_paths(CBOR, &payload), Ok(paths));
    }

    #[test]
    fn arbitrary_bytes_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode(CBOR, &p("/3/0"), &payload, &*REGISTRY);
        let _ = decode_nodes(CBOR, &payload, None, &NoModels);
        let _ = decode_paths(CBOR, &payload);
    }

    #[test]
    fn corrupted_encodings_never_panic((path, node) in common::any_node(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut payload = encode(CBOR, &path, &node).expect("encodes");
        let i = at.index(payload.len());
        payload[i] = byte;
        let _ = decode(CBOR, &path, &payload, &*REGISTRY);
        let _ = decode_nodes(CBOR, &payload, None, &*REGISTRY);
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile input
// ---------------------------------------------------------------------------------------------

fn is_malformed<T: std::fmt::Debug>(result: &Result<T, DecodeError>) -> bool {
    matches!(
        result,
        Err(DecodeError::Malformed { .. } | DecodeError::TooDeep { .. })
    )
}

#[test]
fn every_truncation_fails() {
    let full = bytes("device_instance.hex");
    for cut in 0..full.len() {
        let result = decode(CBOR, &p("/3/0"), &full[..cut], &*EXAMPLE_MODELS);
        assert!(is_malformed(&result), "cut at {cut}: {result:?}");
    }
    let mut trailing = full.clone();
    trailing.push(0x00);
    assert!(is_malformed(&decode(
        CBOR,
        &p("/3/0"),
        &trailing,
        &*EXAMPLE_MODELS
    )));
}

#[test]
fn deep_nesting_is_refused_without_recursion_trouble() {
    let depth = 100_000;
    let cases: Vec<Vec<u8>> = vec![
        // {1: {1: {1: ...}}} and the indefinite-length version.
        [0xa1, 0x01].repeat(depth),
        [0xbf, 0x01].repeat(depth),
        // A value of nested arrays and of nested tags.
        [hex("a1 83 03 00 01"), vec![0x81; depth]].concat(),
        [hex("a1 83 03 00 01"), vec![0xc1; depth], vec![0x00]].concat(),
        // A key of nested arrays.
        [vec![0xa1], vec![0x81; depth], vec![0x00, 0x00]].concat(),
    ];
    for payload in cases {
        assert!(is_malformed(&decode_nodes(CBOR, &payload, None, &NoModels)));
        assert!(is_malformed(&decode_paths(CBOR, &payload)));
    }
}

#[test]
fn huge_declared_lengths_allocate_nothing() {
    for payload in [
        "bb ffffffffffffffff 03",                // map of 2^64-1 entries
        "a1 9b 7fffffffffffffff 03",             // key array of 2^63-1 IDs
        "a1 83 03 00 01 5b 00000000ffffffff 00", // 4 GiB byte string
        "a1 83 03 00 01 7a ffffffff 61",         // 4 GiB text string
        "a1 83 03 00 01 5f 5b 7fffffffffffffff", // indefinite bytes, huge chunk
    ] {
        let result = decode_nodes(CBOR, &hex(payload), None, &NoModels);
        assert!(is_malformed(&result), "{payload}: {result:?}");
    }
}

#[test]
fn duplicate_keys_and_values_are_refused() {
    // {3: {0: {1: 1}}, 3: {0: {2: 2}}}: the same key twice in one map.
    let same_key = hex("a2 03 a1 00 a1 01 01 03 a1 00 a1 02 02");
    assert!(is_malformed(&decode(
        CBOR,
        &p("/3/0"),
        &same_key,
        &NoModels
    )));
    // {[3, 0]: {1: "a"}, [3, 0, 1]: "b"}: one resource through two keys.
    let same_value = hex("a2 82 03 00 a1 01 61 61 83 03 00 01 61 62");
    assert!(matches!(
        decode(CBOR, &p("/3/0"), &same_value, &NoModels),
        Err(DecodeError::Node(NodeError::Duplicate { .. }))
    ));
}

#[test]
fn invalid_ids_are_refused() {
    for key in [
        "19 ffff",
        "1a 00010000",
        "20",
        "f6",
        "61 33",
        "fb 4008000000000000",
        "80",
    ] {
        let payload = hex(&format!("a1 {key} a1 00 a1 00 01"));
        assert!(
            is_malformed(&decode_nodes(CBOR, &payload, None, &NoModels)),
            "{key}"
        );
    }
    // Five IDs deep, through nesting and through one array.
    assert!(is_malformed(&decode_nodes(
        CBOR,
        &hex("a1 03 a1 00 a1 01 a1 02 a1 03 04"),
        None,
        &NoModels
    )));
    assert!(is_malformed(&decode_nodes(
        CBOR,
        &hex("a1 85 03 00 01 02 03 04"),
        None,
        &NoModels
    )));
}

#[test]
fn wrong_types_are_refused() {
    let at = |key: &str, value: &str| hex(&format!("a1 83 {key} {value}"));
    // Current Time (/3/0/13) as text, Battery Level (/3/0/9) as a float with a fraction,
    // Manufacturer (/3/0/0) as bytes, a boolean as Unsigned Integer (/42799/0/2).
    let cases = [
        ("/3/0/13", at("03 00 0d", "61 78")),
        ("/3/0/9", at("03 00 09", "f9 3e 00")),
        ("/3/0/0", at("03 00 00", "41 00")),
        ("/42799/0/2", at("19 a72f 00 02", "f5")),
        ("/42799/0/7", at("19 a72f 00 07", "64 31 3a 32 3a")),
    ];
    for (path, payload) in cases {
        let result = decode(CBOR, &p(path), &payload, &*REGISTRY);
        assert!(
            matches!(result, Err(DecodeError::TypeMismatch { .. })),
            "{path}: {result:?}"
        );
    }
    // Values that are no LwM2M type at all, whatever the model.
    for value in ["f7", "e0", "80", "c2 41 00", "c1 61 31", "f8 ff"] {
        let result = decode(CBOR, &p("/3/0/9"), &at("03 00 09", value), &*REGISTRY);
        assert!(is_malformed(&result), "{value}: {result:?}");
    }
    // A resource the model calls single given as a map of instances, and the reverse.
    assert!(matches!(
        decode(
            CBOR,
            &p("/3/0/9"),
            &hex("a1 83 03 00 09 a1 00 01"),
            &*REGISTRY
        ),
        Err(DecodeError::Node(_))
    ));
    assert!(matches!(
        decode(CBOR, &p("/3/0/7"), &hex("a1 83 03 00 07 01"), &*REGISTRY),
        Err(DecodeError::Node(NodeError::Multiplicity { .. }))
    ));
}

#[test]
fn content_outside_the_requested_path_is_refused() {
    let payload = bytes("device_instance.hex");
    assert!(matches!(
        decode(CBOR, &p("/3/1"), &payload, &*EXAMPLE_MODELS),
        Err(DecodeError::Node(NodeError::OutsideBase { .. }))
    ));
    let requested = [p("/3/0/9")];
    assert!(decode_nodes(CBOR, &payload, Some(&requested), &*EXAMPLE_MODELS).is_err());
}

#[test]
fn not_a_map_is_refused() {
    for payload in ["", "80", "01", "f6", "61 61", "ff"] {
        assert!(
            is_malformed(&decode_nodes(CBOR, &hex(payload), None, &NoModels)),
            "{payload}"
        );
    }
}
