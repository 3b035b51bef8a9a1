//! Shared proptest strategies: nodes and node maps typed by real object models.
//!
//! Values are generated from the model of the resource they sit in, so a decoder that types
//! through the model must give back exactly what was encoded. Two model sources: the codec test
//! object 42799 (every data type, single and multiple) and the bundled core objects.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::LazyLock;

use proptest::prelude::*;
use steward_objects::model::{ModelRegistry, Models, ObjectModel, ResourceModel};
use steward_objects::node::{Instance, Node, NodeMap, Resource, Timestamp, TimestampedNodes};
use steward_objects::path::Path;
use steward_objects::value::{DataType, ObjLink, Value};

/// The codec test object: resources 0..=8 single of each type, 9 executable, 10..=18 multiple.
pub const TEST_OBJECT: u16 = 42799;

/// Core objects plus the codec test object.
pub static REGISTRY: LazyLock<ModelRegistry> = LazyLock::new(|| {
    let mut reg = ModelRegistry::core();
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/ddf/42799.xml");
    let xml = std::fs::read_to_string(file).expect("test object DDF is in the repository");
    reg.load_str(file, &xml).expect("test object DDF parses");
    reg
});

/// Objects the strategies generate content for.
pub fn generated_objects() -> Vec<u16> {
    [TEST_OBJECT, 3, 1, 4, 5]
        .into_iter()
        .filter(|id| REGISTRY.object(*id).is_some())
        .collect()
}

/// A value of the given type. Floats are finite (no format carries NaN both ways in LwM2M).
pub fn value_of(dt: DataType) -> BoxedStrategy<Value> {
    match dt {
        DataType::String => "\\PC{0,24}".prop_map(Value::String).boxed(),
        DataType::Integer => any::<i64>().prop_map(Value::Integer).boxed(),
        DataType::UnsignedInteger => any::<u64>().prop_map(Value::UnsignedInteger).boxed(),
        DataType::Float => prop_oneof![
            (-1_000_000i32..1_000_000).prop_map(|i| Value::Float(f64::from(i) / 8.0)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::Float),
        ]
        .boxed(),
        DataType::Boolean => any::<bool>().prop_map(Value::Boolean).boxed(),
        DataType::Opaque => proptest::collection::vec(any::<u8>(), 0..48)
            .prop_map(Value::Opaque)
            .boxed(),
        DataType::Time => prop_oneof![0i64..4_102_444_800, any::<i64>()]
            .prop_map(Value::Time)
            .boxed(),
        DataType::Objlnk => (any::<u16>(), any::<u16>())
            .prop_map(|(o, i)| Value::Objlnk(ObjLink::new(o, i)))
            .boxed(),
        DataType::Corelnk => prop_oneof![
            Just("</3/0>".to_owned()),
            Just("</1/0>;ssid=1,</3/0>".to_owned()),
            "</[0-9]{1,4}/[0-9]{1,3}>(;[a-z]{1,5}=[0-9]{1,3})?",
        ]
        .prop_map(Value::Corelnk)
        .boxed(),
        // Executable resources have no value; callers never ask for one.
        DataType::None => Just(Value::Opaque(Vec::new())).boxed(),
    }
}

/// Resources of an object that hold a value (not executables).
pub fn valued_resources(object: &ObjectModel) -> Vec<ResourceModel> {
    object
        .resources
        .values()
        .filter(|r| r.data_type != DataType::None)
        .cloned()
        .collect()
}

/// A resource as its model says: one value, or 1..4 instances with arbitrary IDs.
pub fn resource_for(model: &ResourceModel) -> BoxedStrategy<Resource> {
    let dt = model.data_type;
    if model.multiple {
        proptest::collection::btree_map(0u16..600, value_of(dt), 1..4)
            .prop_map(Resource::Multiple)
            .boxed()
    } else {
        value_of(dt).prop_map(Resource::Single).boxed()
    }
}

/// An instance with a non-empty subset of the object's valued resources.
pub fn instance_for(object: &ObjectModel) -> BoxedStrategy<Instance> {
    let resources = valued_resources(object);
    let n = resources.len();
    proptest::sample::subsequence(resources, 1..=n.clamp(1, 8))
        .prop_flat_map(|picked| {
            picked
                .into_iter()
                .map(|r| resource_for(&r).prop_map(move |res| (r.id, res)))
                .collect::<Vec<_>>()
        })
        .prop_map(|pairs| Instance {
            resources: pairs.into_iter().collect(),
        })
        .boxed()
}

fn object_model(id: u16) -> ObjectModel {
    REGISTRY
        .object(id)
        .cloned()
        .unwrap_or_else(|| panic!("model for object {id}"))
}

/// A node at a path of the given depth (1 object .. 4 resource instance) in `object`.
pub fn node_at_depth(object: u16, depth: usize) -> BoxedStrategy<(Path, Node)> {
    let model = object_model(object);
    let iid = 0u16..5;
    match depth {
        1 => proptest::collection::btree_map(iid, instance_for(&model), 1..3)
            .prop_map(move |m| (Path::Object(object), Node::Object(m)))
            .boxed(),
        2 => (iid, instance_for(&model))
            .prop_map(move |(i, inst)| (Path::Instance(object, i), Node::Instance(inst)))
            .boxed(),
        3 => {
            let resources = valued_resources(&model);
            (iid, proptest::sample::select(resources))
                .prop_flat_map(move |(i, r)| {
                    resource_for(&r)
                        .prop_map(move |res| (Path::Resource(object, i, r.id), Node::Resource(res)))
                })
                .boxed()
        }
        _ => {
            let multiple: Vec<_> = valued_resources(&model)
                .into_iter()
                .filter(|r| r.multiple)
                .collect();
            if multiple.is_empty() {
                return node_at_depth(object, 3);
            }
            (iid, 0u16..600, proptest::sample::select(multiple))
                .prop_flat_map(move |(i, ri, r)| {
                    value_of(r.data_type).prop_map(move |v| {
                        (
                            Path::ResourceInstance(object, i, r.id, ri),
                            Node::ResourceInstance(v),
                        )
                    })
                })
                .boxed()
        }
    }
}

/// A node at any depth in any generated object.
pub fn any_node() -> BoxedStrategy<(Path, Node)> {
    (proptest::sample::select(generated_objects()), 1usize..=4)
        .prop_flat_map(|(o, d)| node_at_depth(o, d))
        .boxed()
}

/// A single-value node: a single resource or a resource instance.
pub fn single_value_node() -> BoxedStrategy<(Path, Node)> {
    any_node()
        .prop_filter("single value", |(_, n)| {
            matches!(
                n,
                Node::Resource(Resource::Single(_)) | Node::ResourceInstance(_)
            )
        })
        .boxed()
}

/// Drops paths that sit under (or above) an earlier path: composite content never overlaps.
fn without_overlaps(nodes: Vec<(Path, Node)>) -> NodeMap {
    let mut out: NodeMap = BTreeMap::new();
    for (path, node) in nodes {
        let overlaps = out
            .keys()
            .any(|p| p.is_prefix_of(&path) || path.is_prefix_of(p));
        if !overlaps {
            out.insert(path, node);
        }
    }
    out
}

/// Composite content: 1..5 non-overlapping nodes at instance, resource or resource-instance depth.
pub fn node_map() -> BoxedStrategy<NodeMap> {
    let entry = (proptest::sample::select(generated_objects()), 2usize..=4)
        .prop_flat_map(|(o, d)| node_at_depth(o, d));
    proptest::collection::vec(entry, 1..5)
        .prop_map(without_overlaps)
        .boxed()
}

/// Leaf-level content as a time-series decoder returns it when nobody asked for paths:
/// single resources, whole multiple resources, no instance-level nodes.
pub fn resource_level_map() -> BoxedStrategy<NodeMap> {
    let entry =
        proptest::sample::select(generated_objects()).prop_flat_map(|o| node_at_depth(o, 3));
    proptest::collection::vec(entry, 1..4)
        .prop_map(without_overlaps)
        .boxed()
}

/// A time series: 1..4 entries with strictly increasing absolute times (whole and quarter
/// seconds, which every format carries exactly), the first possibly without time.
pub fn time_series() -> BoxedStrategy<Vec<TimestampedNodes>> {
    (
        any::<bool>(),
        1_600_000_000i64..1_900_000_000,
        proptest::collection::vec((1i64..100_000, 0u8..4, resource_level_map()), 1..4),
    )
        .prop_map(|(first_untimed, start, steps)| {
            let mut t = start as f64;
            steps
                .into_iter()
                .enumerate()
                .map(|(k, (dt, quarter, nodes))| {
                    t += dt as f64 + f64::from(quarter) / 4.0;
                    TimestampedNodes {
                        time: if k == 0 && first_untimed {
                            None
                        } else {
                            Some(Timestamp(t))
                        },
                        nodes,
                    }
                })
                .collect()
        })
        .boxed()
}

/// Decodes hex written with any whitespace and `#` comments (test-vector files).
pub fn hex(text: &str) -> Vec<u8> {
    let digits: String = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// Reads a test-vector file relative to objects/tests/vectors/.
pub fn vector(name: &str) -> String {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The Device object instance of the OMA LwM2M TS examples (TLV, JSON, SenML and LwM2M CBOR
/// appendices all encode this one): every format's vector must decode to it.
pub fn spec_device_instance() -> Instance {
    let s = |v: &str| Resource::Single(Value::String(v.to_owned()));
    let i = |v: i64| Resource::Single(Value::Integer(v));
    let multi = |vs: &[i64]| {
        Resource::Multiple(
            (0u16..)
                .zip(vs.iter().map(|v| Value::Integer(*v)))
                .collect(),
        )
    };
    Instance {
        resources: BTreeMap::from([
            (0, s("Open Mobile Alliance")),
            (1, s("Lightweight M2M Client")),
            (2, s("345000123")),
            (3, s("1.0")),
            (6, multi(&[1, 5])),
            (7, multi(&[3800, 5000])),
            (8, multi(&[125, 900])),
            (9, i(100)),
            (10, i(15)),
            (11, multi(&[0])),
            (13, Resource::Single(Value::Time(1_367_491_215))),
            (14, s("+02:00")),
            (16, s("U")),
        ]),
    }
}

/// The registry plus objects 65 and 66, the example objects of the TS object-link examples.
pub static EXAMPLE_MODELS: LazyLock<ModelRegistry> = LazyLock::new(|| {
    let mut reg = REGISTRY.clone();
    reg.load_str(
        "spec_objects_65_66.xml",
        &vector("tlv/spec_objects_65_66.xml"),
    )
    .expect("example objects parse");
    reg
});

// Short builders for expected values in vector tests.

pub fn p(s: &str) -> Path {
    s.parse().expect("test path")
}

pub fn int(i: i64) -> Value {
    Value::Integer(i)
}

pub fn string(s: &str) -> Value {
    Value::String(s.to_owned())
}

pub fn single(v: Value) -> Resource {
    Resource::Single(v)
}

pub fn multiple(values: &[(u16, Value)]) -> Resource {
    Resource::Multiple(values.iter().cloned().collect())
}

pub fn instance(resources: Vec<(u16, Resource)>) -> Instance {
    Instance {
        resources: resources.into_iter().collect(),
    }
}
