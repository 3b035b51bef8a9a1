//! OMA TLV from devices: any bytes at any path give a node or a `DecodeError`, and a decoded
//! node re-encodes to a payload that decodes to the same node.
#![no_main]

use steward_objects::codec::{decode, encode};
use steward_objects::{
    ContentFormat, Instance, ModelRegistry, Models, NoModels, Node, Path, Resource, Value,
};

/// Paths at every depth, in objects with and without multiple resources, plus the codec test
/// object (every data type).
const PATHS: [Path; 14] = [
    Path::Object(3),
    Path::Instance(3, 0),
    Path::Resource(3, 0, 6),
    Path::ResourceInstance(3, 0, 6, 1),
    Path::Resource(3, 0, 13),
    Path::Object(1),
    Path::Instance(1, 0),
    Path::Object(2),
    Path::Resource(2, 0, 2),
    Path::Resource(5, 0, 0),
    Path::Object(42799),
    Path::Instance(42799, 0),
    Path::Resource(42799, 0, 13),
    Path::ResourceInstance(42799, 0, 10, 1),
];

static MODELS: std::sync::LazyLock<ModelRegistry> = std::sync::LazyLock::new(|| {
    let mut reg = ModelRegistry::core();
    reg.load_str(
        "42799.xml",
        include_str!("../../tests/vectors/ddf/42799.xml"),
    )
    .expect("test object DDF parses");
    reg
});

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let path = PATHS[usize::from(selector) % PATHS.len()];
    let models: &dyn Models = if selector & 0x80 == 0 {
        &*MODELS
    } else {
        &NoModels
    };
    let Ok(node) = decode(ContentFormat::Tlv, &path, payload, models) else {
        return;
    };
    let again = encode(ContentFormat::Tlv, &path, &node).expect("a decoded node encodes");
    let back = decode(ContentFormat::Tlv, &path, &again, models).expect("re-encoded TLV decodes");
    assert!(
        same_node(&node, &back),
        "{path}: {node:?} came back as {back:?}"
    );
});

/// Equality that takes NaN as equal to NaN (TLV carries any float bit pattern).
fn same_node(a: &Node, b: &Node) -> bool {
    match (a, b) {
        (Node::Object(x), Node::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((i, p), (j, q))| i == j && same_instance(p, q))
        }
        (Node::Instance(x), Node::Instance(y)) => same_instance(x, y),
        (Node::Resource(x), Node::Resource(y)) => same_resource(x, y),
        (Node::ResourceInstance(x), Node::ResourceInstance(y)) => same_value(x, y),
        _ => false,
    }
}

fn same_instance(a: &Instance, b: &Instance) -> bool {
    a.resources.len() == b.resources.len()
        && a.resources
            .iter()
            .zip(&b.resources)
            .all(|((i, x), (j, y))| i == j && same_resource(x, y))
}

fn same_resource(a: &Resource, b: &Resource) -> bool {
    match (a, b) {
        (Resource::Single(x), Resource::Single(y)) => same_value(x, y),
        (Resource::Multiple(x), Resource::Multiple(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((i, p), (j, q))| i == j && same_value(p, q))
        }
        _ => false,
    }
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x == y || (x.is_nan() && y.is_nan()),
        _ => a == b,
    }
}
