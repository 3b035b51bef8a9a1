//! OMA LwM2M JSON (11543, legacy 1543): example payloads as files (see
//! vectors/oma_json/README.md), round trips of every node kind at every depth, and hostile
//! input.

mod common;

use common::{EXAMPLE_MODELS, instance, multiple, p, single, string};

use std::collections::BTreeMap;

use common::{REGISTRY, vector};
use proptest::prelude::*;
use steward_objects::codec::{DecodeError, EncodeError, decode, encode, encode_nodes};
use steward_objects::model::NoModels;
use steward_objects::node::{NodeError, NodeMap};
use steward_objects::{ContentFormat, Node, ObjLink, Value};

const JSON: ContentFormat = ContentFormat::OmaJson;
const LEGACY: ContentFormat = ContentFormat::LegacyOmaJson;

fn payload(name: &str) -> Vec<u8> {
    vector(&format!("oma_json/{name}")).into_bytes()
}

fn as_json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("valid JSON")
}

/// Decodes `name` at `path` with both content-format numbers and, for canonical vectors,
/// checks the encoder writes the same JSON document.
fn check_vector(name: &str, path: &str, expected: &Node, canonical: bool) {
    let bytes = payload(name);
    let path = p(path);
    for format in [JSON, LEGACY] {
        assert_eq!(
            decode(format, &path, &bytes, &*EXAMPLE_MODELS).as_ref(),
            Ok(expected),
            "{name}"
        );
    }
    if canonical {
        let encoded = encode(JSON, &path, expected).expect("encodes");
        assert_eq!(as_json(&encoded), as_json(&bytes), "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Vectors
// ---------------------------------------------------------------------------------------------

#[test]
fn device_instance_read() {
    let expected = Node::Instance(common::spec_device_instance());
    check_vector("device_instance.json", "/3/0", &expected, true);
    // The same values named from the root.
    let partial = Node::Instance(instance(vec![
        (0, single(string("Open Mobile Alliance"))),
        (9, single(Value::Integer(100))),
        (13, single(Value::Time(1_367_491_215))),
    ]));
    check_vector("device_root_names.json", "/3/0", &partial, false);
}

#[test]
fn single_and_multiple_resource_read() {
    let manufacturer = Node::Resource(single(string("Open Mobile Alliance")));
    check_vector("device_resource.json", "/3/0/0", &manufacturer, true);
    let voltage = multiple(&[(0, Value::Integer(3800)), (1, Value::Integer(5000))]);
    check_vector(
        "power_source_voltage.json",
        "/3/0/7",
        &Node::Resource(voltage),
        true,
    );
}

#[test]
fn object_links() {
    let link = |o, i| Value::Objlnk(ObjLink::new(o, i));
    let obj66 = Node::Object(BTreeMap::from([
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
    ]));
    check_vector("obj66_object.json", "/66", &obj66, true);
    let obj65 = Node::Instance(instance(vec![
        (0, multiple(&[(0, link(66, 0)), (1, link(66, 1))])),
        (1, single(string("8613800755500"))),
        (2, single(Value::Integer(305_419_896))),
    ]));
    check_vector("obj65_instance.json", "/65/0", &obj65, true);
    // `ov` says Objlnk even without a model.
    assert_eq!(
        decode(JSON, &p("/66"), &payload("obj66_object.json"), &NoModels),
        Ok(obj66)
    );
}

#[test]
fn historical_values_give_the_latest() {
    let expected = Node::Object(BTreeMap::from([(
        1,
        instance(vec![(2, single(Value::Float(22.4)))]),
    )]));
    assert_eq!(
        decode(
            JSON,
            &p("/1024"),
            &payload("historical_values.json"),
            &NoModels
        ),
        Ok(expected)
    );
}

#[test]
fn composite_and_time_series_are_not_oma_json() {
    let nodes: NodeMap = BTreeMap::from([(p("/3/0/9"), Node::Resource(single(Value::Integer(1))))]);
    assert!(matches!(
        encode_nodes(JSON, &nodes),
        Err(EncodeError::Unsupported { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn node_round_trip((path, node) in common::any_node()) {
        let bytes = encode(JSON, &path, &node).expect("every generated node encodes");
        prop_assert_eq!(decode(JSON, &path, &bytes, &*REGISTRY), Ok(node.clone()));
        prop_assert_eq!(decode(LEGACY, &path, &bytes, &*REGISTRY), Ok(node));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode(JSON, &p("/3/0"), &bytes, &*REGISTRY);
    }

    #[test]
    fn json_shaped_text_never_panics(text in r#"\{("(bn|bt|e|n|v|sv|bv|ov|t)"|[:,\[\]{}0-9./"-]|true|null){0,40}\}"#) {
        let _ = decode(JSON, &p("/3/0"), text.as_bytes(), &*REGISTRY);
        let _ = decode(JSON, &p("/42799/0/5"), text.as_bytes(), &*REGISTRY);
    }

    #[test]
    fn corrupted_encodings_never_panic((path, node) in common::any_node(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = encode(JSON, &path, &node).expect("encodes");
        let i = at.index(bytes.len());
        bytes[i] = byte;
        let _ = decode(JSON, &path, &bytes, &*REGISTRY);
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
    let full = payload("device_instance.json");
    let full = full.trim_ascii_end();
    for cut in 0..full.len() {
        let result = decode(JSON, &p("/3/0"), &full[..cut], &*EXAMPLE_MODELS);
        assert!(is_malformed(&result), "cut at {cut}: {result:?}");
    }
}

#[test]
fn deep_nesting_is_refused_before_parsing() {
    for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
        let doc = format!(
            "{{\"e\":[],\"x\":{}1{}}}",
            open.repeat(100_000),
            close.repeat(100_000)
        );
        assert_eq!(
            decode(JSON, &p("/3/0"), doc.as_bytes(), &NoModels),
            Err(DecodeError::TooDeep { format: JSON })
        );
    }
    // Unclosed brackets deep enough also stop at the limit.
    assert!(matches!(
        decode(
            JSON,
            &p("/3/0"),
            "[".repeat(1_000_000).as_bytes(),
            &NoModels
        ),
        Err(DecodeError::TooDeep { .. })
    ));
}

#[test]
fn duplicate_fields_and_values_are_refused() {
    for doc in [
        r#"{"bn":"/3/0/","bn":"/3/0/","e":[]}"#,
        r#"{"e":[],"e":[]}"#,
        r#"{"bn":"/3/0/","e":[{"n":"9","n":"10","v":1}]}"#,
        r#"{"bn":"/3/0/","e":[{"n":"9","v":1,"v":2}]}"#,
    ] {
        assert!(
            is_malformed(&decode(JSON, &p("/3/0"), doc.as_bytes(), &NoModels)),
            "{doc}"
        );
    }
    let twice = br#"{"bn":"/3/0/","e":[{"n":"9","v":1},{"n":"9","v":1}]}"#;
    assert!(matches!(
        decode(JSON, &p("/3/0"), twice, &NoModels),
        Err(DecodeError::Node(NodeError::Duplicate { .. }))
    ));
}

#[test]
fn wrong_types_are_refused() {
    let cases = [
        ("/3/0", r#"{"bn":"/3/0/","e":[{"n":"9","sv":"100"}]}"#),
        ("/3/0", r#"{"bn":"/3/0/","e":[{"n":"9","v":1.5}]}"#),
        ("/3/0", r#"{"bn":"/3/0/","e":[{"n":"0","v":1}]}"#),
        ("/3/0", r#"{"bn":"/3/0/","e":[{"n":"13","bv":true}]}"#),
        (
            "/3/0",
            r#"{"bn":"/3/0/","e":[{"n":"9","v":99999999999999999999999}]}"#,
        ),
        ("/42799/0", r#"{"bn":"/42799/0/","e":[{"n":"2","v":-1}]}"#),
        (
            "/42799/0",
            r#"{"bn":"/42799/0/","e":[{"n":"5","sv":"not base64!"}]}"#,
        ),
        (
            "/42799/0",
            r#"{"bn":"/42799/0/","e":[{"n":"7","ov":"1:65536"}]}"#,
        ),
        ("/42799/0", r#"{"bn":"/42799/0/","e":[{"n":"7","sv":"x"}]}"#),
        ("/42799/0", r#"{"bn":"/42799/0/","e":[{"n":"9","v":1}]}"#),
    ];
    for (path, doc) in cases {
        let result = decode(JSON, &p(path), doc.as_bytes(), &*REGISTRY);
        assert!(
            matches!(result, Err(DecodeError::TypeMismatch { .. })),
            "{doc}: {result:?}"
        );
    }
    for doc in [
        r#"{"bn":3,"e":[]}"#,
        r#"{"bn":"/3/0/","e":[{"n":"9","v":"1"}]}"#,
        r#"{"bn":"/3/0/","e":[{"n":"9","bv":1}]}"#,
        r#"{"bn":"/3/0/","e":[{"n":"9","v":1e400}]}"#,
        r#"{"bn":"/3/0/","e":[{"n":"9","v":null}]}"#,
        r#"{"bn":"/3/0/","e":[{"n":"9"}]}"#,
        r#"{"bn":"/3/0/","e":[{"n":"","v":1}]}"#,
        r#"{"bn":"/3/0/","e":[{"n":"1/2/3","v":1}]}"#,
        r#"{"bn":"/3/0/","e":[{"n":"65535","v":1}]}"#,
        r#"{"bn":"3/0/","e":[{"n":"9","v":1}]}"#,
        r#"{"bn":"/3/0/","e":[{"n":"9","v":1}],"ver":1}"#,
        r#"{"bn":"/3/0/"}"#,
        "",
        "null",
        "{\"bn\":\"/3/0/\",\"e\":[]} {}",
    ] {
        let result = decode(JSON, &p("/3/0"), doc.as_bytes(), &*REGISTRY);
        assert!(is_malformed(&result), "{doc}: {result:?}");
    }
}

#[test]
fn entries_outside_the_request_are_refused() {
    let result = decode(
        JSON,
        &p("/3/1"),
        &payload("device_instance.json"),
        &*EXAMPLE_MODELS,
    );
    assert!(matches!(
        result,
        Err(DecodeError::Node(NodeError::OutsideBase { .. }))
    ));
    let multiplicity = br#"{"bn":"/3/0/","e":[{"n":"9/0","v":1}]}"#;
    assert!(matches!(
        decode(JSON, &p("/3/0"), multiplicity, &*EXAMPLE_MODELS),
        Err(DecodeError::Node(NodeError::Multiplicity { .. }))
    ));
}

#[test]
fn invalid_utf8_and_control_bytes_are_refused() {
    for bytes in [
        &b"{\"bn\":\"/3/0/\xff\",\"e\":[]}"[..],
        b"\x00",
        b"{\"e\":[\x01]}",
    ] {
        assert!(is_malformed(&decode(JSON, &p("/3/0"), bytes, &NoModels)));
    }
}
