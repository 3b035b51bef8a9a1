//! Shared body of the `senml_json` and `senml_cbor` targets: every SenML entry point on the
//! input, and for whatever decodes, a re-encode in both SenML encodings that must decode to the
//! same content.

use steward_objects::codec::{
    decode, decode_nodes, decode_paths, decode_timestamped, encode, encode_nodes, encode_paths,
    encode_timestamped,
};
use steward_objects::{
    ContentFormat, ModelRegistry, Models, NoModels, Node, NodeMap, Path, Resource, Timestamp,
    TimestampedNodes, Value,
};

/// Paths at every depth: the codec test object (every data type), core objects, an unknown
/// object.
const PATHS: [Path; 9] = [
    Path::Object(42799),
    Path::Instance(42799, 0),
    Path::Resource(42799, 0, 3),
    Path::Resource(42799, 0, 11),
    Path::ResourceInstance(42799, 0, 13, 2),
    Path::Instance(3, 0),
    Path::Resource(3, 0, 13),
    Path::Object(1),
    Path::Instance(3303, 0),
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

const BOTH: [ContentFormat; 2] = [ContentFormat::SenmlJson, ContentFormat::SenmlCbor];

pub fn run(format: ContentFormat, data: &[u8]) {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let models: &dyn Models = if selector & 0x80 == 0 {
        &*MODELS
    } else {
        &NoModels
    };
    let path = PATHS[usize::from(selector & 0x7f) % PATHS.len()];

    if let Ok(node) = decode(format, &path, payload, models) {
        for f in BOTH {
            // JSON has no NaN or infinity; everything else must carry over.
            let Ok(bytes) = encode(f, &path, &node) else {
                assert!(f == ContentFormat::SenmlJson && has_non_finite(&path, &node));
                continue;
            };
            let back = decode(f, &path, &bytes, models).expect("re-encoded node decodes");
            assert!(
                same_node(&path, &node, &back),
                "{f} at {path}: {node:?} came back as {back:?}"
            );
        }
    }
    for requested in [None, Some(&PATHS[..])] {
        if let Ok(nodes) = decode_nodes(format, payload, requested, models) {
            for f in BOTH {
                let Ok(bytes) = encode_nodes(f, &nodes) else {
                    assert!(f == ContentFormat::SenmlJson);
                    continue;
                };
                let back =
                    decode_nodes(f, &bytes, requested, models).expect("re-encoded nodes decode");
                assert!(
                    same_map(&nodes, &back),
                    "{f}: {nodes:?} came back as {back:?}"
                );
            }
        }
    }
    if let Ok(series) = decode_timestamped(format, payload, models) {
        for f in BOTH {
            let Ok(bytes) = encode_timestamped(f, &series) else {
                assert!(f == ContentFormat::SenmlJson);
                continue;
            };
            let back = decode_timestamped(f, &bytes, models).expect("re-encoded series decodes");
            assert!(
                same_series(&series, &back),
                "{f}: {series:?} came back as {back:?}"
            );
        }
    }
    if let Ok(paths) = decode_paths(format, payload) {
        for f in BOTH {
            let bytes = encode_paths(f, &paths).expect("paths encode");
            assert_eq!(decode_paths(f, &bytes).as_ref(), Ok(&paths));
        }
    }
}

fn same_f64(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => same_f64(*x, *y),
        _ => a == b,
    }
}

fn same_node(path: &Path, a: &Node, b: &Node) -> bool {
    let (Ok(x), Ok(y)) = (a.leaves(path), b.leaves(path)) else {
        return false;
    };
    // Same leaves and same shape (a multiple resource stays multiple).
    x.len() == y.len()
        && x.iter()
            .zip(&y)
            .all(|((p, v), (q, w))| p == q && same_value(v, w))
        && shape(a) == shape(b)
}

fn shape(node: &Node) -> Vec<bool> {
    let multiple = |r: &Resource| r.is_multiple();
    match node {
        Node::Object(instances) => instances
            .values()
            .flat_map(|i| i.resources.values().map(multiple))
            .collect(),
        Node::Instance(i) => i.resources.values().map(multiple).collect(),
        Node::Resource(r) => vec![multiple(r)],
        Node::ResourceInstance(_) => vec![],
    }
}

fn same_map(a: &NodeMap, b: &NodeMap) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((p, x), (q, y))| p == q && same_node(p, x, y))
}

fn same_series(a: &[TimestampedNodes], b: &[TimestampedNodes]) -> bool {
    let same_time = |x: Option<Timestamp>, y: Option<Timestamp>| match (x, y) {
        (Some(x), Some(y)) => same_f64(x.0, y.0),
        (x, y) => x.is_none() && y.is_none(),
    };
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| same_time(x.time, y.time) && same_map(&x.nodes, &y.nodes))
}

fn has_non_finite(path: &Path, node: &Node) -> bool {
    node.leaves(path)
        .map(|leaves| {
            leaves
                .iter()
                .any(|(_, v)| matches!(v, Value::Float(f) if !f.is_finite()))
        })
        .unwrap_or(false)
}
