//! SenML JSON (110) and SenML CBOR (112): RFC 8428 and OMA LwM2M vectors, round trips in both
//! encodings, independence from how a sender arranges base names, and hostile input.
//!
//! Vector sources are listed in tests/vectors/senml/README.md.

mod common;

use std::collections::BTreeMap;

use common::{REGISTRY, TEST_OBJECT, hex, vector};
use proptest::prelude::*;
use steward_objects::codec::senml::{self, Number, RecordValue, ResolvedRecord};
use steward_objects::codec::{
    DecodeError, decode, decode_nodes, decode_paths, decode_timestamped, encode, encode_nodes,
    encode_paths, encode_timestamped,
};
use steward_objects::{
    ContentFormat, Instance, Models, NoModels, Node, NodeMap, ObjLink, Path, Resource, Timestamp,
    TimestampedNodes, Value,
};

const JSON: ContentFormat = ContentFormat::SenmlJson;
const CBOR: ContentFormat = ContentFormat::SenmlCbor;
const BOTH: [ContentFormat; 2] = [JSON, CBOR];

/// The payload of a vector in the given encoding: `<name>.json`, or `<name>.hex` for CBOR.
fn payload(name: &str, format: ContentFormat) -> Vec<u8> {
    match format {
        ContentFormat::SenmlJson => vector(&format!("senml/{name}.json")).into_bytes(),
        _ => hex(&vector(&format!("senml/{name}.hex"))),
    }
}

fn json_records(name: &str) -> Vec<ResolvedRecord> {
    let records = senml::json::parse_records(&payload(name, JSON)).expect("vector parses");
    senml::resolve(records).expect("vector resolves")
}

fn cbor_records(name: &str) -> Vec<ResolvedRecord> {
    let records = senml::cbor::parse_records(&payload(name, CBOR)).expect("vector parses");
    senml::resolve(records).expect("vector resolves")
}

fn float(v: &ResolvedRecord) -> f64 {
    match v.value {
        Some(RecordValue::Number(n)) => n.as_f64(),
        ref other => panic!("{}: not a number: {other:?}", v.name()),
    }
}

fn single(v: Value) -> Node {
    Node::Resource(Resource::Single(v))
}

fn multiple(values: impl IntoIterator<Item = (u16, Value)>) -> Resource {
    Resource::Multiple(values.into_iter().collect())
}

fn instance(resources: impl IntoIterator<Item = (u16, Resource)>) -> Instance {
    Instance {
        resources: resources.into_iter().collect(),
    }
}

fn s(text: &str) -> Value {
    Value::String(text.to_owned())
}

// ---------------------------------------------------------------------------------------------
// RFC 8428 vectors, checked at the record level (their names are not LwM2M paths).

#[test]
fn rfc_5_1_1_single_data_point() {
    let r = json_records("rfc8428-5.1.1-single-data-point");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].name(), "urn:dev:ow:10e2073a01080063");
    assert_eq!(r[0].unit.as_deref(), Some("Cel"));
    assert_eq!(r[0].value, Some(RecordValue::Number(Number::Float(23.1))));
    assert_eq!(r[0].time, None);
    assert_eq!(r[0].version, 10);
}

#[test]
fn rfc_5_1_2_multiple_data_points() {
    let r = json_records("rfc8428-5.1.2-multiple-data-points");
    let names: Vec<_> = r
        .iter()
        .map(|r| (r.name(), r.unit.as_deref().map(str::to_owned), float(r)))
        .collect();
    assert_eq!(
        names,
        [
            (
                "urn:dev:ow:10e2073a01080063:voltage".to_owned(),
                Some("V".to_owned()),
                120.1
            ),
            (
                "urn:dev:ow:10e2073a01080063:current".to_owned(),
                Some("A".to_owned()),
                1.2
            ),
        ]
    );
}

#[test]
fn rfc_5_1_2_relative_times_add_to_base_time() {
    let r = json_records("rfc8428-5.1.2-multiple-data-points-timed");
    let bt = 1.276020076001e9;
    assert_eq!(r.len(), 7);
    assert!(
        r.iter().all(|r| r.version == 5),
        "bver 5 applies to the whole pack"
    );
    assert_eq!(r[0].unit.as_deref(), Some("V"));
    assert!(
        r[1..].iter().all(|r| r.unit.as_deref() == Some("A")),
        "base unit"
    );
    let times: Vec<_> = r.iter().map(|r| r.time).collect();
    let expected: Vec<_> = [0.0, -5.0, -4.0, -3.0, -2.0, -1.0, 0.0]
        .iter()
        .map(|t| Some(bt + t))
        .collect();
    assert_eq!(times, expected);
    assert_eq!(float(&r[6]), 1.7);
}

#[test]
fn rfc_5_1_3_resolves_to_5_1_4() {
    let compact = json_records("rfc8428-5.1.3-multiple-measurements");
    let resolved = json_records("rfc8428-5.1.4-resolved");
    let view = |r: &[ResolvedRecord]| -> Vec<_> {
        r.iter()
            .map(|r| (r.name(), r.unit.clone(), r.time, r.value.clone()))
            .collect()
    };
    assert_eq!(view(&compact), view(&resolved));
}

#[test]
fn rfc_5_1_5_multiple_data_types() {
    let r = json_records("rfc8428-5.1.5-multiple-data-types");
    assert_eq!(r[1].value, Some(RecordValue::String("Machine Room".into())));
    assert_eq!(r[2].value, Some(RecordValue::Boolean(false)));
    assert_eq!(r[3].name(), "urn:dev:ow:10e2073a01080063:nfv-reader");
    assert_eq!(r[3].value, Some(RecordValue::Data(b"hi \n".to_vec())));
}

#[test]
fn rfc_5_1_6_base_name_changes_base_time_stays() {
    let r = json_records("rfc8428-5.1.6-collection-of-resources");
    let view: Vec<_> = r.iter().map(|r| (r.name(), r.time)).collect();
    let view: Vec<_> = view.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    let bt = Some(1.320078429e9);
    assert_eq!(
        view,
        [
            ("2001:db8::2/temperature", bt),
            ("2001:db8::2/humidity", bt),
            ("2001:db8::1/temperature", bt),
            ("2001:db8::1/humidity", bt),
        ]
    );
}

#[test]
fn rfc_5_1_7_base_name_alone_in_the_first_record() {
    let r = json_records("rfc8428-5.1.7-setting-an-actuator");
    assert_eq!(r[0].value, None);
    assert!(r[0].own_name.is_none());
    assert_eq!(r[2].name(), "urn:dev:ow:10e2073a01080063:heat");
    assert_eq!(r[2].unit.as_deref(), Some("/"));
    assert_eq!(r[2].value, Some(RecordValue::Number(Number::Integer(1))));

    let lights = json_records("rfc8428-5.1.7-lights-off");
    assert_eq!(lights[0].unit.as_deref(), Some("/"));
    assert_eq!(lights[3].time, Some(1.320078429e9 + 0.1));
    assert_eq!(float(&lights[3]), 0.0);
}

#[test]
fn rfc_6_cbor_example_equals_the_json_example() {
    let cbor = cbor_records("rfc8428-6-cbor-example");
    let json = json_records("rfc8428-5.1.2-multiple-data-points-timed");
    assert_eq!(cbor, json);
    // The half float `f9 3e00` in the dump.
    assert_eq!(cbor[4].value, Some(RecordValue::Number(Number::Float(1.5))));
}

#[test]
fn rfc_names_are_not_lwm2m_paths() {
    for format in BOTH {
        let name = match format {
            ContentFormat::SenmlJson => "rfc8428-5.1.2-multiple-data-points",
            _ => "rfc8428-6-cbor-example",
        };
        let err =
            decode_nodes(format, &payload(name, format), None, &NoModels).expect_err("not LwM2M");
        assert!(err.to_string().contains("not an LwM2M path"), "{err}");
    }
}

// ---------------------------------------------------------------------------------------------
// LwM2M vectors, each in JSON and in its CBOR twin.

#[test]
fn device_instance_read() {
    let path = Path::Instance(3, 0);
    let expected = Node::Instance(common::spec_device_instance());
    for format in BOTH {
        let bytes = payload("lwm2m-read-device-instance", format);
        assert_eq!(
            decode(format, &path, &bytes, &*REGISTRY),
            Ok(expected.clone()),
            "{format}"
        );
        // Without models the multiple resources are still found (their names have four
        // segments) and the Time resource stays an integer.
        let Ok(Node::Instance(bare)) = decode(format, &path, &bytes, &NoModels) else {
            panic!("{format}: decodes without models");
        };
        assert_eq!(
            bare.resources.get(&13),
            Some(&Resource::Single(Value::Integer(1367491215)))
        );
        assert_eq!(
            bare.resources.get(&11),
            Some(&multiple([(0, Value::Integer(0))]))
        );
    }
}

#[test]
fn device_instance_encodes_like_the_vector() {
    let path = Path::Instance(3, 0);
    let node = Node::Instance(common::spec_device_instance());
    let json = encode(JSON, &path, &node).expect("encodes");
    let ours: serde_json::Value = serde_json::from_slice(&json).expect("valid JSON");
    let theirs: serde_json::Value =
        serde_json::from_slice(&payload("lwm2m-read-device-instance", JSON)).expect("valid JSON");
    assert_eq!(ours, theirs);
    let cbor = encode(CBOR, &path, &node).expect("encodes");
    assert_eq!(cbor, payload("lwm2m-read-device-instance", CBOR));
}

#[test]
fn single_resource_with_the_full_path_in_bn() {
    for format in BOTH {
        let bytes = payload("lwm2m-read-single-resource", format);
        assert_eq!(
            decode(format, &Path::Resource(3, 0, 0), &bytes, &*REGISTRY),
            Ok(single(s("Open Mobile Alliance")))
        );
        let err =
            decode(format, &Path::Resource(3, 0, 1), &bytes, &*REGISTRY).expect_err("other path");
        assert!(err.to_string().contains("outside"), "{err}");
    }
}

#[test]
fn object_with_two_instances() {
    let acl = |object: i64, rights: &[(u16, i64)]| {
        instance([
            (0, Resource::Single(Value::Integer(object))),
            (1, Resource::Single(Value::Integer(0))),
            (
                2,
                multiple(rights.iter().map(|(k, v)| (*k, Value::Integer(*v)))),
            ),
            (3, Resource::Single(Value::Integer(101))),
        ])
    };
    let expected = Node::Object(BTreeMap::from([
        (0, acl(1, &[(101, 15)])),
        (1, acl(3, &[(101, 15), (102, 1)])),
    ]));
    for format in BOTH {
        let bytes = payload("lwm2m-read-object-multiple-instances", format);
        assert_eq!(
            decode(format, &Path::Object(2), &bytes, &*REGISTRY),
            Ok(expected.clone()),
            "{format}"
        );
    }
}

#[test]
fn object_link_uses_vlo_in_both_encodings() {
    let path = Path::ResourceInstance(65, 0, 0, 0);
    for format in BOTH {
        let bytes = payload("lwm2m-objlnk", format);
        assert_eq!(
            decode(format, &path, &bytes, &NoModels),
            Ok(Node::ResourceInstance(Value::Objlnk(ObjLink::new(66, 0)))),
            "{format}"
        );
    }
}

#[test]
fn read_composite_request_paths() {
    let expected = vec![
        Path::Resource(4, 0, 0),
        Path::Resource(4, 0, 1),
        Path::Resource(4, 0, 2),
        Path::Instance(6, 0),
    ];
    for format in BOTH {
        let bytes = payload("lwm2m-read-composite-request", format);
        assert_eq!(
            decode_paths(format, &bytes),
            Ok(expected.clone()),
            "{format}"
        );
        let ours = encode_paths(format, &expected).expect("encodes");
        assert_eq!(
            decode_paths(format, &ours),
            Ok(expected.clone()),
            "{format}"
        );
    }
    assert_eq!(
        encode_paths(JSON, &expected).expect("encodes"),
        br#"[{"n":"/4/0/0"},{"n":"/4/0/1"},{"n":"/4/0/2"},{"n":"/6/0"}]"#
    );
}

#[test]
fn read_composite_response_groups_under_requested_paths() {
    let requested = [
        Path::Resource(3, 0, 0),
        Path::Resource(3, 0, 9),
        Path::Instance(1, 0),
    ];
    let expected: NodeMap = BTreeMap::from([
        (Path::Resource(3, 0, 0), single(s("Open Mobile Alliance"))),
        (Path::Resource(3, 0, 9), single(Value::Integer(95))),
        (
            Path::Instance(1, 0),
            Node::Instance(instance([
                (0, Resource::Single(Value::Integer(1))),
                (1, Resource::Single(Value::UnsignedInteger(86400))),
                (6, Resource::Single(Value::Boolean(false))),
                (7, Resource::Single(s("U"))),
            ])),
        ),
    ]);
    for format in BOTH {
        let bytes = payload("lwm2m-read-composite-response", format);
        assert_eq!(
            decode_nodes(format, &bytes, Some(&requested), &*REGISTRY),
            Ok(expected.clone())
        );
        let err = decode_nodes(format, &bytes, Some(&requested[..2]), &*REGISTRY)
            .expect_err("/1/0 not asked");
        assert!(err.to_string().contains("outside"), "{err}");
    }
}

#[test]
fn write_composite_without_requested_paths() {
    let expected: NodeMap = BTreeMap::from([
        (
            Path::Resource(1, 0, 1),
            single(Value::UnsignedInteger(86400)),
        ),
        (Path::Resource(3, 0, 14), single(s("+02:00"))),
    ]);
    for format in BOTH {
        let bytes = payload("lwm2m-write-composite", format);
        assert_eq!(
            decode_nodes(format, &bytes, None, &*REGISTRY),
            Ok(expected.clone())
        );
    }
}

#[test]
fn send_with_base_time_and_relative_times() {
    let temperature = Path::Resource(3303, 0, 5700);
    let expected = vec![
        TimestampedNodes {
            time: Some(Timestamp(1_700_000_000.0)),
            nodes: BTreeMap::from([(temperature, single(Value::Float(21.5)))]),
        },
        TimestampedNodes {
            time: Some(Timestamp(1_700_000_060.0)),
            nodes: BTreeMap::from([
                (temperature, single(Value::Float(21.75))),
                (Path::Resource(3303, 0, 5701), single(s("Cel"))),
            ]),
        },
        TimestampedNodes {
            time: Some(Timestamp(1_700_000_120.0)),
            nodes: BTreeMap::from([(temperature, single(Value::Integer(22)))]),
        },
    ];
    for format in BOTH {
        let bytes = payload("lwm2m-send-timestamped", format);
        assert_eq!(
            decode_timestamped(format, &bytes, &NoModels),
            Ok(expected.clone()),
            "{format}"
        );
    }
}

#[test]
fn test_object_every_type_through_the_model() {
    let o = TEST_OBJECT;
    let expected = Node::Instance(instance([
        (0, Resource::Single(s("hello"))),
        (1, Resource::Single(Value::Integer(-5))),
        (2, Resource::Single(Value::UnsignedInteger(u64::MAX))),
        (3, Resource::Single(Value::Float(1.5))),
        (4, Resource::Single(Value::Boolean(true))),
        (5, Resource::Single(Value::Opaque(vec![1, 2, 3, 255]))),
        (6, Resource::Single(Value::Time(1_700_000_000))),
        (7, Resource::Single(Value::Objlnk(ObjLink::new(3, 0)))),
        (8, Resource::Single(Value::Corelnk("</3/0>".into()))),
        (
            11,
            multiple([(0, Value::Integer(1)), (7, Value::Integer(-1))]),
        ),
        (13, multiple([(0, Value::Float(0.25))])),
        (17, multiple([(3, Value::Objlnk(ObjLink::NULL))])),
    ]));
    for format in BOTH {
        let bytes = payload("lwm2m-test-object-all-types", format);
        let node = decode(format, &Path::Instance(o, 0), &bytes, &*REGISTRY);
        assert_eq!(node, Ok(expected.clone()), "{format}");
        for again in BOTH {
            let written = encode(again, &Path::Instance(o, 0), &expected).expect("encodes");
            assert_eq!(
                decode(again, &Path::Instance(o, 0), &written, &*REGISTRY),
                Ok(expected.clone())
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Every legal arrangement of base names decodes to the same content.

#[test]
fn hand_written_arrangements_agree() {
    let expected = decode(
        JSON,
        &Path::Instance(3, 0),
        br#"[{"n":"/3/0/0","vs":"a"},{"n":"/3/0/6/1","v":5}]"#,
        &NoModels,
    )
    .expect("plain names");
    let arrangements: [&[u8]; 7] = [
        br#"[{"bn":"/3/0/","n":"0","vs":"a"},{"n":"6/1","v":5}]"#,
        br#"[{"bn":"/3/0/"},{"n":"0","vs":"a"},{"n":"6/1","v":5}]"#,
        br#"[{"bn":"/3/0/0","vs":"a"},{"bn":"/3/0/6/1","v":5}]"#,
        br#"[{"bn":"/3/","n":"0/0","vs":"a"},{"bn":"/3/0/6/","n":"1","v":5}]"#,
        br#"[{"bn":"","n":"/3/0/0","vs":"a"},{"n":"/3/0/6/1","v":5}]"#,
        br#"[{"bn":"/","n":"3/0/0","vs":"a"},{"n":"3/0/6/1","v":5,"bt":1,"u":"x","ut":5,"s":1}]"#,
        br#"[{"bn":"/3/0/0","vs":"a","bver":10},{"bt":100},{"bn":"/3/0/6/1","v":5}]"#,
    ];
    for payload in arrangements {
        assert_eq!(
            decode(JSON, &Path::Instance(3, 0), payload, &NoModels),
            Ok(expected.clone()),
            "{}",
            String::from_utf8_lossy(payload)
        );
    }
}

/// One record's parts for the arrangement property: base name (if written), name (if
/// written), value.
type Parts = (Option<String>, Option<String>, Value);

/// Splits each leaf's full name at a chosen point into `bn` and `n`, writing `bn` only when it
/// differs from the base name in force.
fn arrange(leaves: &[(Path, Value)], splits: &[usize]) -> Vec<Parts> {
    let mut current = String::new();
    leaves
        .iter()
        .zip(splits.iter().cycle())
        .map(|((path, value), split)| {
            let full = path.to_string();
            let cut = split % (full.len() + 1);
            let (bn, n) = full.split_at(cut);
            let base = (bn != current).then(|| {
                current = bn.to_owned();
                bn.to_owned()
            });
            (base, (!n.is_empty()).then(|| n.to_owned()), value.clone())
        })
        .collect()
}

fn arranged_json(parts: &[Parts]) -> Vec<u8> {
    use base64::Engine;
    let records: Vec<serde_json::Value> = parts
        .iter()
        .map(|(bn, n, value)| {
            let mut m = serde_json::Map::new();
            if let Some(bn) = bn {
                m.insert("bn".into(), bn.clone().into());
            }
            if let Some(n) = n {
                m.insert("n".into(), n.clone().into());
            }
            let (label, v): (&str, serde_json::Value) = match value {
                Value::String(x) | Value::Corelnk(x) => ("vs", x.clone().into()),
                Value::Integer(i) | Value::Time(i) => ("v", (*i).into()),
                Value::UnsignedInteger(u) => ("v", (*u).into()),
                Value::Float(f) => ("v", (*f).into()),
                Value::Boolean(b) => ("vb", (*b).into()),
                Value::Opaque(d) => (
                    "vd",
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .encode(d)
                        .into(),
                ),
                Value::Objlnk(l) => ("vlo", l.to_string().into()),
            };
            m.insert(label.into(), v);
            serde_json::Value::Object(m)
        })
        .collect();
    serde_json::to_vec(&records).expect("serializes")
}

fn arranged_cbor(parts: &[Parts]) -> Vec<u8> {
    let mut e = minicbor::Encoder::new(Vec::new());
    let ok = "writing to a Vec";
    e.array(parts.len() as u64).expect(ok);
    for (bn, n, value) in parts {
        e.map(1 + u64::from(bn.is_some()) + u64::from(n.is_some()))
            .expect(ok);
        if let Some(bn) = bn {
            e.i8(-2).expect(ok).str(bn).expect(ok);
        }
        if let Some(n) = n {
            e.u8(0).expect(ok).str(n).expect(ok);
        }
        match value {
            Value::String(x) | Value::Corelnk(x) => e.u8(3).expect(ok).str(x).expect(ok),
            Value::Integer(i) | Value::Time(i) => e.u8(2).expect(ok).i64(*i).expect(ok),
            Value::UnsignedInteger(u) => e.u8(2).expect(ok).u64(*u).expect(ok),
            // Always a double here: the codec's own writer picks the shortest width.
            Value::Float(f) => e.u8(2).expect(ok).f64(*f).expect(ok),
            Value::Boolean(b) => e.u8(4).expect(ok).bool(*b).expect(ok),
            Value::Opaque(d) => e.u8(8).expect(ok).bytes(d).expect(ok),
            Value::Objlnk(l) => e.str("vlo").expect(ok).str(&l.to_string()).expect(ok),
        };
    }
    e.into_writer()
}

fn owned_leaves(nodes: &NodeMap) -> Vec<(Path, Value)> {
    nodes
        .iter()
        .flat_map(|(p, n)| n.leaves(p).expect("generated node fits"))
        .map(|(p, v)| (p, v.clone()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn single_path_round_trip((path, node) in common::any_node()) {
        for format in BOTH {
            let bytes = encode(format, &path, &node).expect("encodes");
            prop_assert_eq!(decode(format, &path, &bytes, &*REGISTRY), Ok(node.clone()), "{}", format);
        }
    }

    #[test]
    fn composite_round_trip(map in common::node_map()) {
        let requested: Vec<Path> = map.keys().copied().collect();
        for format in BOTH {
            let bytes = encode_nodes(format, &map).expect("encodes");
            prop_assert_eq!(decode_nodes(format, &bytes, Some(&requested), &*REGISTRY), Ok(map.clone()), "{}", format);
        }
    }

    #[test]
    fn timestamped_round_trip(series in common::time_series()) {
        for format in BOTH {
            let bytes = encode_timestamped(format, &series).expect("encodes");
            prop_assert_eq!(decode_timestamped(format, &bytes, &*REGISTRY), Ok(series.clone()), "{}", format);
        }
    }

    #[test]
    fn path_list_round_trip(ids in proptest::collection::vec(proptest::collection::vec(0u16..65535, 0..=4), 1..8)) {
        let paths: Vec<Path> = ids.iter().filter_map(|ids| Path::from_ids(ids)).collect();
        for format in BOTH {
            let bytes = encode_paths(format, &paths).expect("encodes");
            prop_assert_eq!(decode_paths(format, &bytes), Ok(paths.clone()), "{}", format);
        }
    }

    /// JSON and CBOR carry the same records: parsed and resolved, the two are identical.
    #[test]
    fn json_and_cbor_carry_the_same_records(series in common::time_series()) {
        let json = encode_timestamped(JSON, &series).expect("encodes");
        let cbor = encode_timestamped(CBOR, &series).expect("encodes");
        let from_json = senml::resolve(senml::json::parse_records(&json).expect("parses")).expect("resolves");
        let from_cbor = senml::resolve(senml::cbor::parse_records(&cbor).expect("parses")).expect("resolves");
        prop_assert_eq!(from_json, from_cbor);
    }

    /// However a sender splits names between `bn` and `n`, the content is the same.
    #[test]
    fn any_base_name_arrangement_decodes_alike(
        map in common::node_map(),
        splits in proptest::collection::vec(any::<usize>(), 1..16),
    ) {
        let requested: Vec<Path> = map.keys().copied().collect();
        let parts = arrange(&owned_leaves(&map), &splits);
        let json = arranged_json(&parts);
        prop_assert_eq!(decode_nodes(JSON, &json, Some(&requested), &*REGISTRY), Ok(map.clone()));
        let cbor = arranged_cbor(&parts);
        prop_assert_eq!(decode_nodes(CBOR, &cbor, Some(&requested), &*REGISTRY), Ok(map));
    }

    /// Arbitrary bytes give a node or an error, never a panic, in every entry point.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        exercise_every_decoder(&bytes);
    }

    /// Valid encodings with a byte changed, or cut short, never panic either.
    #[test]
    fn damaged_encodings_never_panic(
        (path, node) in common::any_node(),
        at in any::<usize>(),
        byte in any::<u8>(),
    ) {
        for format in BOTH {
            let mut bytes = encode(format, &path, &node).expect("encodes");
            let cut = at % (bytes.len() + 1);
            exercise_every_decoder(&bytes[..cut]);
            let index = at % bytes.len().max(1);
            if let Some(b) = bytes.get_mut(index) {
                *b = byte;
            }
            exercise_every_decoder(&bytes);
        }
    }
}

fn exercise_every_decoder(bytes: &[u8]) {
    let paths = [
        Path::Object(3),
        Path::Instance(3, 0),
        Path::Resource(3, 0, 0),
        Path::ResourceInstance(3, 0, 6, 0),
        Path::Instance(TEST_OBJECT, 0),
    ];
    let models: [&dyn Models; 2] = [&NoModels, &*REGISTRY];
    for format in BOTH {
        for m in models {
            for p in &paths {
                let _ = decode(format, p, bytes, m);
            }
            let _ = decode_nodes(format, bytes, None, m);
            let _ = decode_nodes(format, bytes, Some(&paths), m);
            let _ = decode_timestamped(format, bytes, m);
        }
        let _ = decode_paths(format, bytes);
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile and wrong input.

fn json_err(payload: &str) -> DecodeError {
    decode_nodes(JSON, payload.as_bytes(), None, &*REGISTRY).expect_err(payload)
}

fn cbor_err(bytes: &[u8]) -> DecodeError {
    decode_nodes(CBOR, bytes, None, &*REGISTRY).expect_err("malformed CBOR")
}

fn is_malformed(e: &DecodeError) -> bool {
    matches!(e, DecodeError::Malformed { .. })
}

#[test]
fn every_truncation_of_a_valid_pack_is_an_error() {
    for name in [
        "lwm2m-read-device-instance",
        "lwm2m-test-object-all-types",
        "lwm2m-send-timestamped",
    ] {
        for format in BOTH {
            let bytes = payload(name, format);
            let bytes = match format {
                // Trailing whitespace is insignificant in JSON; cut inside the content.
                ContentFormat::SenmlJson => String::from_utf8(bytes)
                    .expect("utf-8")
                    .trim_end()
                    .as_bytes()
                    .to_vec(),
                _ => bytes,
            };
            for cut in 0..bytes.len() {
                let result = decode_nodes(format, &bytes[..cut], None, &*REGISTRY);
                assert!(
                    result.is_err(),
                    "{name} {format} cut at {cut} decoded: {result:?}"
                );
            }
        }
    }
}

#[test]
fn huge_declared_cbor_lengths_run_into_the_end() {
    let cases: [&[u8]; 5] = [
        &[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        &[0x9a, 0xff, 0xff, 0xff, 0xff, 0xa0],
        &[
            0x81, 0xbb, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00,
        ],
        &[
            0x81, 0xa1, 0x00, 0x7b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x2f,
        ],
        &[0x81, 0xa1, 0x08, 0x5a, 0xff, 0xff, 0xff, 0xff, 0x00],
    ];
    for bytes in cases {
        assert!(is_malformed(&cbor_err(bytes)), "{bytes:02x?}");
    }
}

#[test]
fn deep_nesting_is_refused_without_recursion() {
    let depth = 1_000_000;
    let json = format!("[{{\"n\":\"/3/0/0\",\"v\":{}", "[".repeat(depth));
    assert!(is_malformed(&json_err(&json)));
    assert!(is_malformed(&json_err(&"[".repeat(depth))));
    let mut cbor = vec![0x81, 0xa1, 0x02];
    cbor.extend(std::iter::repeat_n(0x81, depth));
    assert!(is_malformed(&cbor_err(&cbor)));
    let mut cbor = vec![0x81];
    cbor.extend(std::iter::repeat_n(0x81, depth));
    assert!(is_malformed(&cbor_err(&cbor)));
    let mut tags = vec![0x81, 0xa1, 0x02];
    tags.extend(std::iter::repeat_n(0xc4, depth));
    assert!(is_malformed(&cbor_err(&tags)));
}

#[test]
fn wrong_field_types() {
    for (payload, needle) in [
        (r#"[{"n":"/3/0/0","vs":1}]"#, "\"vs\" must be a string"),
        (r#"[{"n":"/3/0/0","v":"1"}]"#, "\"v\" must be a number"),
        (
            r#"[{"n":"/3/0/0","vb":"true"}]"#,
            "\"vb\" must be a boolean",
        ),
        (r#"[{"n":3,"v":1}]"#, "\"n\" must be a string"),
        (
            r#"[{"bn":"/3/0/","n":"0","bt":"x","v":1}]"#,
            "\"bt\" must be a number",
        ),
        (
            r#"[{"n":"/3/0/0","vd":1}]"#,
            "\"vd\" must be a base64url string",
        ),
        (r#"[{"n":"/3/0/0","vs":"a","bver":-1}]"#, "unsigned integer"),
        (r#"[{"n":"/3/0/0","vs":"a","bver":11}]"#, "version 11"),
        (
            r#"[{"n":"/3/0/0","vs":"a"},{"n":"/3/0/1","vs":"b","bver":9}]"#,
            "differs",
        ),
        (r#"[{"n":"/3/0/0","vs":"a","x_":0}]"#, "must be understood"),
        (r#"[{"n":"/3/0/0","vs":"a","vs":"b"}]"#, "twice"),
        (
            r#"[{"n":"/3/0/0","vs":"a","vb":true}]"#,
            "more than one value",
        ),
        (r#"[{"n":"/3/0/65535","v":1}]"#, "not an LwM2M path"),
        (r#"[{"n":"/3/0/1/2/3","v":1}]"#, "not an LwM2M path"),
        (r#"[{"n":"/3","v":1}]"#, "resource or resource instance"),
        (r#"[{"n":"/42799/0/7","vlo":"3-0"}]"#, "vlo"),
        (r#"{"n":"/3/0/0","v":1}"#, "SenML pack"),
        ("[{\"n\":\"/3/0/0\",\"vs\":\"\\ud800\"}]", "escape"),
    ] {
        let err = json_err(payload);
        assert!(is_malformed(&err), "{payload}: {err:?}");
        assert!(err.to_string().contains(needle), "{payload}: {err}");
    }
}

#[test]
fn values_that_contradict_the_model() {
    let o = TEST_OBJECT;
    for (record, path) in [
        (r#"{"n":"/42799/0/1","vs":"5"}"#, Path::Resource(o, 0, 1)),
        (r#"{"n":"/42799/0/1","v":1.5}"#, Path::Resource(o, 0, 1)),
        (r#"{"n":"/42799/0/2","v":-1}"#, Path::Resource(o, 0, 2)),
        (r#"{"n":"/42799/0/4","v":1}"#, Path::Resource(o, 0, 4)),
        (r#"{"n":"/42799/0/5","vs":"AQI"}"#, Path::Resource(o, 0, 5)),
        (
            r#"{"n":"/42799/0/7","vs":"3:0:1"}"#,
            Path::Resource(o, 0, 7),
        ),
        (r#"{"n":"/42799/0/9","vb":true}"#, Path::Resource(o, 0, 9)),
    ] {
        let err = json_err(&format!("[{record}]"));
        assert!(
            matches!(&err, DecodeError::TypeMismatch { path: p, .. } if *p == path),
            "{record}: {err:?}"
        );
    }
    // The model's multiplicity wins over the shape of the names.
    for payload in [
        r#"[{"n":"/42799/0/0/1","vs":"x"}]"#,
        r#"[{"n":"/42799/0/10","vs":"x"}]"#,
    ] {
        let err =
            decode(JSON, &Path::Instance(o, 0), payload.as_bytes(), &*REGISTRY).expect_err(payload);
        assert!(matches!(err, DecodeError::Node(_)), "{err:?}");
    }
}

#[test]
fn lenient_where_the_model_allows() {
    let o = TEST_OBJECT;
    let at = |rid| Path::Resource(o, 0, rid);
    let cases = [
        (r#"[{"n":"/42799/0/3","v":3}]"#, at(3), Value::Float(3.0)),
        (r#"[{"n":"/42799/0/1","v":3.0}]"#, at(1), Value::Integer(3)),
        (
            r#"[{"n":"/42799/0/6","v":1.7e9}]"#,
            at(6),
            Value::Time(1_700_000_000),
        ),
        (
            r#"[{"n":"/42799/0/7","vs":"3:0"}]"#,
            at(7),
            Value::Objlnk(ObjLink::new(3, 0)),
        ),
        (
            r#"[{"n":"/42799/0/5","vd":"AQI="}]"#,
            at(5),
            Value::Opaque(vec![1, 2]),
        ),
        (
            r#"[{"bn":"/42799/0/1","bv":40,"v":2}]"#,
            at(1),
            Value::Integer(42),
        ),
    ];
    for (payload, path, value) in cases {
        assert_eq!(
            decode(JSON, &path, payload.as_bytes(), &*REGISTRY),
            Ok(single(value)),
            "{payload}"
        );
    }
}

#[test]
fn cbor_specific_rules() {
    // Text keys for labels CBOR writes as integers: [{"n": "/3/0/0", 3: "a"}]
    let mut text_n = vec![0x81, 0xa2, 0x61, b'n', 0x66];
    text_n.extend_from_slice(b"/3/0/0");
    text_n.extend_from_slice(&[0x03, 0x61, b'a']);
    assert!(cbor_err(&text_n).to_string().contains("integer 0"));
    // Indefinite top-level array: streaming SensML, not SenML.
    assert!(cbor_err(&[0x9f, 0xff]).to_string().contains("indefinite"));
    // Tags other than decimal fractions.
    assert!(
        cbor_err(&[0x81, 0xa1, 0x02, 0xc1, 0x00])
            .to_string()
            .contains("tag 1")
    );
    // A negative integer below i64::MIN for an integer resource.
    let mut low = vec![0x81, 0xa2, 0x00, 0x6b];
    low.extend_from_slice(b"/42799/0/11");
    low.extend_from_slice(&[0x02, 0x3b, 0x80, 0, 0, 0, 0, 0, 0, 0]);
    assert!(cbor_err(&low).to_string().contains("below"));
    // An unsigned integer above i64::MAX is fine for an Unsigned Integer resource.
    let mut high = vec![0x81, 0xa2, 0x00, 0x6a];
    high.extend_from_slice(b"/42799/0/2");
    high.extend_from_slice(&[0x02, 0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    assert_eq!(
        decode(CBOR, &Path::Resource(TEST_OBJECT, 0, 2), &high, &*REGISTRY),
        Ok(single(Value::UnsignedInteger(u64::MAX)))
    );
    // ... and a type mismatch for a signed Integer resource.
    high[13] = b'1';
    assert!(matches!(
        decode(CBOR, &Path::Resource(TEST_OBJECT, 0, 1), &high, &*REGISTRY),
        Err(DecodeError::TypeMismatch { .. })
    ));
    // Half, single and double floats all read as Float.
    for float in [
        &[0xf9, 0x3e, 0x00][..],
        &[0xfa, 0x3f, 0xc0, 0, 0],
        &[0xfb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0],
    ] {
        let mut pack = vec![0x81, 0xa2, 0x00, 0x6a];
        pack.extend_from_slice(b"/42799/0/3");
        pack.push(0x02);
        pack.extend_from_slice(float);
        assert_eq!(
            decode(CBOR, &Path::Resource(TEST_OBJECT, 0, 3), &pack, &*REGISTRY),
            Ok(single(Value::Float(1.5)))
        );
    }
}

#[test]
fn path_lists_carry_names_only() {
    assert!(decode_paths(JSON, br#"[{"n":"/3/0/0","v":1}]"#).is_err());
    assert!(decode_paths(JSON, br#"[{"v":1}]"#).is_err());
    assert!(decode_paths(JSON, br#"[{"n":"3/0"}]"#).is_err());
    assert_eq!(
        decode_paths(JSON, br#"[{"bn":"/3/0"}]"#),
        Ok(vec![Path::Instance(3, 0)])
    );
    assert_eq!(decode_paths(JSON, br#"[{"n":"/"}]"#), Ok(vec![Path::Root]));
    assert_eq!(decode_paths(JSON, b"[]"), Ok(vec![]));
}

#[test]
fn empty_packs() {
    for format in BOTH {
        let empty = encode(
            format,
            &Path::Instance(3, 0),
            &Node::Instance(Instance::default()),
        )
        .expect("encodes");
        assert_eq!(
            empty,
            if format == JSON {
                &b"[]"[..]
            } else {
                &[0x80][..]
            }
        );
        assert_eq!(
            decode(format, &Path::Instance(3, 0), &empty, &*REGISTRY),
            Ok(Node::Instance(Instance::default()))
        );
        assert!(decode(format, &Path::Resource(3, 0, 0), &empty, &*REGISTRY).is_err());
    }
}

#[test]
fn json_cannot_carry_nan_but_cbor_can() {
    let path = Path::Resource(TEST_OBJECT, 0, 3);
    for f in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let node = single(Value::Float(f));
        assert!(encode(JSON, &path, &node).is_err());
        let bytes = encode(CBOR, &path, &node).expect("CBOR carries any double");
        match decode(CBOR, &path, &bytes, &*REGISTRY) {
            Ok(Node::Resource(Resource::Single(Value::Float(g)))) => {
                assert_eq!(g.to_bits(), f.to_bits())
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn encoded_layout() {
    let node = Node::Instance(instance([
        (0, Resource::Single(s("a\"b"))),
        (5, Resource::Single(Value::Opaque(vec![0xfb, 0xff]))),
        (11, multiple([(2, Value::Integer(-3))])),
    ]));
    let json = encode(JSON, &Path::Instance(TEST_OBJECT, 1), &node).expect("encodes");
    assert_eq!(
        String::from_utf8(json).expect("utf-8"),
        r#"[{"bn":"/42799/1/","n":"0","vs":"a\"b"},{"n":"5","vd":"-_8"},{"n":"11/2","v":-3}]"#
    );
    let series = vec![
        TimestampedNodes {
            time: Some(Timestamp(1_700_000_000.5)),
            nodes: BTreeMap::from([(Path::Resource(3, 0, 9), single(Value::Integer(90)))]),
        },
        TimestampedNodes {
            time: None,
            nodes: BTreeMap::from([(Path::Resource(3, 0, 9), single(Value::Integer(89)))]),
        },
    ];
    let json = encode_timestamped(JSON, &series).expect("encodes");
    assert_eq!(
        String::from_utf8(json).expect("utf-8"),
        r#"[{"bn":"/3/0/","n":"9","t":1700000000.5,"v":90},{"n":"9","v":89}]"#
    );
    assert_eq!(
        decode_timestamped(
            JSON,
            &encode_timestamped(JSON, &series).expect("encodes"),
            &*REGISTRY
        ),
        Ok(series)
    );
}

/// One long base name over many records: resolving shares it instead of copying it into each
/// record (copying would cost base-name length × record count, gigabytes here).
#[test]
fn long_base_name_is_shared_not_copied() {
    let long = "a".repeat(400_000);
    let mut json = format!("[{{\"bn\":\"{long}\"}}");
    json.push_str(&",{}".repeat(200_000));
    json.push(']');
    assert_eq!(
        decode_nodes(JSON, json.as_bytes(), None, &*REGISTRY),
        Ok(NodeMap::new())
    );
    let err = decode_paths(JSON, json.as_bytes()).expect_err("not a path");
    assert!(err.to_string().contains("longer than any path"), "{err}");
    let records = senml::resolve(senml::json::parse_records(json.as_bytes()).expect("parses"))
        .expect("resolves");
    assert_eq!(records.len(), 200_001);

    let mut cbor = vec![
        0x9a, 0x00, 0x03, 0x0d, 0x41, 0xa1, 0x21, 0x7a, 0x00, 0x06, 0x1a, 0x80,
    ];
    cbor.extend(std::iter::repeat_n(b'a', 400_000));
    cbor.extend(std::iter::repeat_n(0xa0, 200_000));
    assert_eq!(
        decode_nodes(CBOR, &cbor, None, &*REGISTRY),
        Ok(NodeMap::new())
    );
}
