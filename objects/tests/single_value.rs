//! The single-value formats: plain text (0), opaque (42) and CBOR (60). Vector tables under
//! tests/vectors/{text,cbor}/, round trips of every single-value node, and hostile input.

mod common;

use common::{REGISTRY, TEST_OBJECT, hex, vector};
use proptest::prelude::*;
use steward_objects::codec::{DecodeError, EncodeError, decode, encode};
use steward_objects::model::NoModels;
use steward_objects::node::NodeError;
use steward_objects::{ContentFormat, Instance, Models, Node, ObjLink, Path, Resource, Value};

const TEXT: ContentFormat = ContentFormat::Text;
const OPAQUE: ContentFormat = ContentFormat::Opaque;
const CBOR: ContentFormat = ContentFormat::Cbor;

/// What a vector expects: a value, or an error of a kind.
#[derive(Debug)]
enum Expected {
    Value(Value),
    Error(String),
}

fn parse_expected(spec: &str) -> Expected {
    let (kind, rest) = spec.split_once(':').unwrap_or((spec, ""));
    fn bad<T>(spec: &str) -> T {
        panic!("bad expectation {spec:?}")
    }
    Expected::Value(match kind {
        "int" => Value::Integer(rest.parse().unwrap_or_else(|_| bad(spec))),
        "uint" => Value::UnsignedInteger(rest.parse().unwrap_or_else(|_| bad(spec))),
        "float" => Value::Float(rest.parse().unwrap_or_else(|_| bad(spec))),
        "bool" => Value::Boolean(rest.parse().unwrap_or_else(|_| bad(spec))),
        "bytes" => Value::Opaque(hex(rest)),
        "str" => Value::String(rest.to_owned()),
        "time" => Value::Time(rest.parse().unwrap_or_else(|_| bad(spec))),
        "objlnk" => Value::Objlnk(rest.parse().unwrap_or_else(|_| bad(spec))),
        "corelnk" => Value::Corelnk(rest.to_owned()),
        "error" => return Expected::Error(rest.to_owned()),
        _ => bad(spec),
    })
}

fn error_kind(e: &DecodeError) -> &'static str {
    match e {
        DecodeError::Malformed { .. } => "malformed",
        DecodeError::TypeMismatch { .. } => "type",
        DecodeError::UnknownResource { .. } => "unknown",
        DecodeError::Unsupported { .. } => "unsupported",
        DecodeError::Node(NodeError::Multiplicity { .. }) => "multiplicity",
        DecodeError::Node(_) => "node",
        DecodeError::TooDeep { .. } => "too deep",
    }
}

/// Equality that counts NaN equal to NaN: CBOR carries NaN, and a NaN must come back NaN.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) if x.is_nan() && y.is_nan() => true,
        _ => a == b,
    }
}

fn same_node(a: &Node, b: &Node) -> bool {
    match (a, b) {
        (Node::Resource(Resource::Single(x)), Node::Resource(Resource::Single(y)))
        | (Node::ResourceInstance(x), Node::ResourceInstance(y)) => same_value(x, y),
        _ => a == b,
    }
}

fn single_node(path: &Path, value: Value) -> Node {
    match path {
        Path::ResourceInstance(..) => Node::ResourceInstance(value),
        _ => Node::Resource(Resource::Single(value)),
    }
}

/// Runs one TAB-separated vector table: direction, path, payload, expectation.
fn run_table(format: ContentFormat, file: &str, payload_bytes: impl Fn(&str) -> Vec<u8>) {
    let table = vector(file);
    let mut checked = 0;
    for (n, line) in table.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let [direction, path, payload, expected] = fields[..] else {
            panic!("{file}:{}: four TAB-separated fields expected", n + 1);
        };
        let at = format!("{file}:{} ({path} {payload:?})", n + 1);
        let path: Path = path.parse().unwrap_or_else(|e| panic!("{at}: {e}"));
        let bytes = payload_bytes(payload);
        let decoded = decode(format, &path, &bytes, &*REGISTRY);
        match parse_expected(expected) {
            Expected::Value(value) => {
                let node = single_node(&path, value);
                let ok = decoded.as_ref().is_ok_and(|d| same_node(d, &node));
                assert!(ok, "{at}: decoded {decoded:?}, expected {node:?}");
                if direction == "both" {
                    assert_eq!(
                        encode(format, &path, &node).as_ref(),
                        Ok(&bytes),
                        "{at}: encoding"
                    );
                }
            }
            Expected::Error(kind) => {
                assert_eq!(direction, "decode", "{at}: errors only decode");
                let found = decoded.as_ref().map_err(error_kind);
                assert_eq!(found.err(), Some(kind.as_str()), "{at}: {decoded:?}");
            }
        }
        checked += 1;
    }
    assert!(checked > 20, "{file}: only {checked} vectors");
}

#[test]
fn text_vectors() {
    run_table(TEXT, "text/values.tsv", |payload| {
        payload.as_bytes().to_vec()
    });
}

#[test]
fn cbor_vectors() {
    run_table(CBOR, "cbor/values.tsv", hex);
}

fn res(rid: u16) -> Path {
    Path::Resource(TEST_OBJECT, 0, rid)
}

#[test]
fn text_refuses_invalid_utf8() {
    for payload in [&b"\xff"[..], b"abc\xc3", b"\xed\xa0\x80"] {
        let result = decode(TEXT, &res(0), payload, &*REGISTRY);
        assert!(
            matches!(result, Err(DecodeError::Malformed { .. })),
            "{result:?}"
        );
    }
}

#[test]
fn text_needs_a_model() {
    let result = decode(TEXT, &Path::Resource(3, 0, 0), b"x", &NoModels);
    assert!(
        matches!(result, Err(DecodeError::UnknownResource { .. })),
        "{result:?}"
    );
}

#[test]
fn text_errors_stay_short_for_huge_payloads() {
    let payload = "9".repeat(1 << 20);
    let err = decode(TEXT, &res(1), payload.as_bytes(), &*REGISTRY).expect_err("too large");
    assert!(err.to_string().len() < 200, "{err}");
}

#[test]
fn opaque_carries_raw_bytes_of_opaque_resources() {
    let bytes = vec![0, 1, 2, 0xFF];
    let cases = [
        (
            res(5),
            Node::Resource(Resource::Single(Value::Opaque(bytes.clone()))),
        ),
        (
            Path::ResourceInstance(TEST_OBJECT, 0, 15, 7),
            Node::ResourceInstance(Value::Opaque(bytes.clone())),
        ),
        // Firmware Update Package.
        (
            Path::Resource(5, 0, 0),
            Node::Resource(Resource::Single(Value::Opaque(bytes.clone()))),
        ),
    ];
    for (path, node) in cases {
        assert_eq!(
            decode(OPAQUE, &path, &bytes, &*REGISTRY),
            Ok(node.clone()),
            "{path}"
        );
        assert_eq!(encode(OPAQUE, &path, &node), Ok(bytes.clone()), "{path}");
    }
    // Unknown resources are opaque, with or without models.
    let unknown = Node::Resource(Resource::Single(Value::Opaque(bytes.clone())));
    assert_eq!(
        decode(OPAQUE, &res(999), &bytes, &*REGISTRY),
        Ok(unknown.clone())
    );
    assert_eq!(
        decode(OPAQUE, &Path::Resource(3, 0, 0), &bytes, &NoModels),
        Ok(unknown)
    );
    assert_eq!(
        decode(OPAQUE, &res(5), &[], &*REGISTRY),
        Ok(Node::Resource(Resource::Single(Value::Opaque(Vec::new()))))
    );
}

#[test]
fn opaque_refuses_everything_else() {
    // Typed resources other than opaque.
    for rid in [0, 1, 2, 3, 4, 6, 7, 8, 9] {
        let result = decode(OPAQUE, &res(rid), b"\x01", &*REGISTRY);
        assert!(
            matches!(result, Err(DecodeError::TypeMismatch { .. })),
            "{rid}: {result:?}"
        );
    }
    // Paths above a resource, and the multiple opaque resource as a whole.
    for path in [Path::Instance(TEST_OBJECT, 0), Path::Object(TEST_OBJECT)] {
        let result = decode(OPAQUE, &path, b"\x01", &*REGISTRY);
        assert!(
            matches!(result, Err(DecodeError::Unsupported { .. })),
            "{path}: {result:?}"
        );
    }
    let result = decode(OPAQUE, &res(15), b"\x01", &*REGISTRY);
    assert!(
        matches!(
            result,
            Err(DecodeError::Node(NodeError::Multiplicity { .. }))
        ),
        "{result:?}"
    );
    // Encoding a non-opaque value.
    let node = Node::Resource(Resource::Single(Value::Integer(1)));
    assert!(matches!(
        encode(OPAQUE, &res(1), &node),
        Err(EncodeError::Unsupported { .. })
    ));
}

#[test]
fn single_value_formats_refuse_trees() {
    let instance = Node::Instance(Instance::default());
    let multiple = Node::Resource(Resource::Multiple([(0, Value::Opaque(vec![1]))].into()));
    for format in [TEXT, OPAQUE, CBOR] {
        let result = encode(format, &Path::Instance(TEST_OBJECT, 0), &instance);
        assert!(
            matches!(result, Err(EncodeError::Unsupported { .. })),
            "{format}: {result:?}"
        );
        let result = encode(format, &res(15), &multiple);
        assert!(
            matches!(result, Err(EncodeError::Unsupported { .. })),
            "{format}: {result:?}"
        );
        let result = decode(format, &Path::Root, b"", &*REGISTRY);
        assert!(
            matches!(result, Err(DecodeError::Unsupported { .. })),
            "{format}: {result:?}"
        );
    }
}

#[test]
fn text_cannot_write_nan_or_infinity() {
    for f in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let node = Node::Resource(Resource::Single(Value::Float(f)));
        assert!(
            matches!(
                encode(TEXT, &res(3), &node),
                Err(EncodeError::InvalidValue { .. })
            ),
            "{f}"
        );
    }
}

#[test]
fn cbor_typed_values_encode_as_documented() {
    let cases = [
        (res(2), Value::UnsignedInteger(1), "01"),
        (res(3), Value::Float(1.5), "fa3fc00000"),
        (res(3), Value::Float(f64::NAN), "fb7ff8000000000000"),
        (res(6), Value::Time(1_363_896_240), "c11a514b67b0"),
        (res(7), Value::Objlnk(ObjLink::new(3, 0)), "63333a30"),
    ];
    for (path, value, expected) in cases {
        let node = Node::Resource(Resource::Single(value));
        assert_eq!(encode(CBOR, &path, &node), Ok(hex(expected)), "{path}");
    }
}

#[test]
fn cbor_deep_nesting_fails_fast() {
    for unit in [
        &[0x81u8][..],
        &[0xC1],
        &[0xD8, 0x18],
        &[0xA1, 0x00],
        &[0x9F],
    ] {
        let payload: Vec<u8> = unit.iter().copied().cycle().take(200_000).collect();
        let result = decode(CBOR, &res(1), &payload, &*REGISTRY);
        assert!(
            matches!(result, Err(DecodeError::Malformed { .. })),
            "{unit:02x?}: {result:?}"
        );
    }
}

#[test]
fn cbor_huge_declared_lengths_fail_fast() {
    for payload in [
        "5bffffffffffffffff00",
        "5a7fffffff00",
        "7bffffffffffffffff",
        "5f5bffffffffffffffff00ff",
    ] {
        let result = decode(CBOR, &res(5), &hex(payload), &*REGISTRY);
        assert!(
            matches!(result, Err(DecodeError::Malformed { .. })),
            "{payload}: {result:?}"
        );
    }
}

fn fuzz_paths() -> impl Strategy<Value = Path> {
    prop_oneof![
        (0u16..20).prop_map(res),
        (10u16..19, 0u16..3).prop_map(|(r, ri)| Path::ResourceInstance(TEST_OBJECT, 0, r, ri)),
        Just(Path::Resource(3, 0, 13)),
        Just(Path::Resource(3, 0, 6)),
        Just(Path::Instance(3, 0)),
    ]
}

fn opaque_node() -> impl Strategy<Value = (Path, Node)> {
    common::single_value_node().prop_filter("opaque value", |(_, node)| {
        matches!(
            node,
            Node::Resource(Resource::Single(Value::Opaque(_)))
                | Node::ResourceInstance(Value::Opaque(_))
        )
    })
}

proptest! {
    #[test]
    fn text_round_trips((path, node) in common::single_value_node()) {
        let bytes = encode(TEXT, &path, &node).expect("generated values have text forms");
        prop_assert_eq!(decode(TEXT, &path, &bytes, &*REGISTRY), Ok(node));
    }

    #[test]
    fn cbor_round_trips((path, node) in common::single_value_node()) {
        let bytes = encode(CBOR, &path, &node).expect("encodes");
        prop_assert_eq!(decode(CBOR, &path, &bytes, &*REGISTRY), Ok(node));
    }

    #[test]
    fn opaque_round_trips((path, node) in opaque_node()) {
        let bytes = encode(OPAQUE, &path, &node).expect("encodes");
        prop_assert_eq!(decode(OPAQUE, &path, &bytes, &*REGISTRY), Ok(node.clone()));
        prop_assert_eq!(decode(OPAQUE, &path, &bytes, &NoModels), Ok(node));
    }

    /// Any bytes give a node or an error; a node re-encodes to bytes that decode to it again.
    #[test]
    fn decoders_are_total(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..24),
            "[-+0-9.eE:]{0,12}".prop_map(String::into_bytes),
        ],
        path in fuzz_paths(),
    ) {
        for format in [TEXT, OPAQUE, CBOR] {
            for models in [&*REGISTRY as &dyn Models, &NoModels] {
                if let Ok(node) = decode(format, &path, &bytes, models) {
                    let again = encode(format, &path, &node);
                    // Text cannot write back a non-finite float; nothing decodes to one.
                    let again = again.expect("decoded nodes encode");
                    let back = decode(format, &path, &again, models).expect("re-encoded bytes decode");
                    prop_assert!(same_node(&back, &node), "{} {}: {:?} then {:?}", format, path, node, back);
                }
            }
        }
    }
}
