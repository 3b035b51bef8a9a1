//! Shared body of the `senml_json` and `senml_cbor` targets: every SenML entry point on the
//! input, and for whatever decodes, a re-encode in both SenML encodings that must decode to the
//! same content.

use steward_objects::codec::{
    decode, decode_nodes, decode_paths, decode_timestamped, encode, encode_nodes, encode_paths,
    encode_timestamped,
};
use steward_objects::{ContentFormat, Node, Path, Value};

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

const BOTH: [ContentFormat; 2] = [ContentFormat::SenmlJson, ContentFormat::SenmlCbor];

pub fn run(format: ContentFormat, data: &[u8]) {
    let Some(crate::shared::Input {
        path,
        models,
        payload,
        ..
    }) = crate::shared::split(data, &PATHS)
    else {
        return;
    };

    if let Ok(node) = decode(format, &path, payload, models) {
        for f in BOTH {
            // JSON has no NaN or infinity; everything else must carry over.
            let Ok(bytes) = encode(f, &path, &node) else {
                assert!(f == ContentFormat::SenmlJson && has_non_finite(&path, &node));
                continue;
            };
            let back = decode(f, &path, &bytes, models).expect("re-encoded node decodes");
            assert!(
                crate::shared::same(&node, &back),
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
                    crate::shared::same(&nodes, &back),
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
                crate::shared::same(&series, &back),
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

fn has_non_finite(path: &Path, node: &Node) -> bool {
    node.leaves(path)
        .map(|leaves| {
            leaves
                .iter()
                .any(|(_, v)| matches!(v, Value::Float(f) if !f.is_finite()))
        })
        .unwrap_or(false)
}
