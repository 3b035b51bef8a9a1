//! Cross-format properties: what one format decodes, another encodes to the same tree.
//!
//! The server translates between formats all the time (a TLV read shown as SenML in the API, a
//! Send in SenML CBOR stored and replayed as JSON), so every pair must agree on every node.

mod common;

use common::REGISTRY;
use proptest::prelude::*;
use steward_objects::codec::{decode, decode_nodes, encode, encode_nodes};
use steward_objects::{ContentFormat, Node, Path, Resource, Value};

const TREE_FORMATS: [ContentFormat; 5] = [
    ContentFormat::Tlv,
    ContentFormat::SenmlJson,
    ContentFormat::SenmlCbor,
    ContentFormat::Lwm2mCbor,
    ContentFormat::OmaJson,
];

const COMPOSITE_FORMATS: [ContentFormat; 3] = [
    ContentFormat::SenmlJson,
    ContentFormat::SenmlCbor,
    ContentFormat::Lwm2mCbor,
];

fn through(format: ContentFormat, path: &Path, node: &Node) -> Result<Node, String> {
    let bytes = encode(format, path, node).map_err(|e| format!("encode {format}: {e}"))?;
    decode(format, path, &bytes, &*REGISTRY).map_err(|e| format!("decode {format}: {e}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Decode in A, encode in B, decode in B: the tree that comes out is the one that went in.
    #[test]
    fn every_tree_format_pair_agrees((path, node) in common::any_node()) {
        for a in TREE_FORMATS {
            let via_a = through(a, &path, &node);
            prop_assert_eq!(via_a.as_ref(), Ok(&node), "{} at {}", a, path);
            let Ok(via_a) = via_a else { continue };
            for b in TREE_FORMATS {
                prop_assert_eq!(through(b, &path, &via_a), Ok(node.clone()), "{} then {} at {}", a, b, path);
            }
        }
    }

    /// Single values: text, CBOR and (for opaque values) octet-stream agree with the tree formats.
    #[test]
    fn single_value_formats_agree((path, node) in common::single_value_node()) {
        let value = match &node {
            Node::Resource(Resource::Single(v)) | Node::ResourceInstance(v) => v.clone(),
            _ => unreachable!("strategy yields single values"),
        };
        let mut formats = vec![ContentFormat::Text, ContentFormat::Cbor];
        if matches!(value, Value::Opaque(_)) {
            formats.push(ContentFormat::Opaque);
        }
        formats.extend(TREE_FORMATS);
        for f in formats {
            prop_assert_eq!(through(f, &path, &node), Ok(node.clone()), "{} at {}", f, path);
        }
    }

    /// Composite content crosses between SenML JSON, SenML CBOR and LwM2M CBOR unchanged.
    #[test]
    fn composite_formats_agree(map in common::node_map()) {
        let requested: Vec<Path> = map.keys().copied().collect();
        for a in COMPOSITE_FORMATS {
            let bytes = encode_nodes(a, &map).map_err(|e| TestCaseError::fail(format!("{a}: {e}")))?;
            let via_a = decode_nodes(a, &bytes, Some(&requested), &*REGISTRY)
                .map_err(|e| TestCaseError::fail(format!("{a}: {e}")))?;
            prop_assert_eq!(&via_a, &map, "{}", a);
            for b in COMPOSITE_FORMATS {
                let bytes = encode_nodes(b, &via_a).map_err(|e| TestCaseError::fail(format!("{b}: {e}")))?;
                let via_b = decode_nodes(b, &bytes, Some(&requested), &*REGISTRY)
                    .map_err(|e| TestCaseError::fail(format!("{b}: {e}")))?;
                prop_assert_eq!(&via_b, &map, "{} then {}", a, b);
            }
        }
    }
}

/// The OMA examples of one Device object instance, written out in every tree format, decode to
/// the same node: the vectors of each format agree with each other, not only with themselves.
#[test]
fn spec_device_instance_vectors_agree() {
    let path = Path::Instance(3, 0);
    let expected = Node::Instance(common::spec_device_instance());
    let vectors: [(ContentFormat, &str, bool); 5] = [
        (ContentFormat::Tlv, "tlv/device_instance.hex", true),
        (
            ContentFormat::OmaJson,
            "oma_json/device_instance.json",
            false,
        ),
        (
            ContentFormat::Lwm2mCbor,
            "lwm2m_cbor/device_instance.hex",
            true,
        ),
        (
            ContentFormat::SenmlJson,
            "senml/lwm2m-read-device-instance.json",
            false,
        ),
        (
            ContentFormat::SenmlCbor,
            "senml/lwm2m-read-device-instance.hex",
            true,
        ),
    ];
    for (format, file, is_hex) in vectors {
        let text = common::vector(file);
        let bytes = if is_hex {
            common::hex(&text)
        } else {
            text.into_bytes()
        };
        assert_eq!(
            decode(format, &path, &bytes, &*REGISTRY),
            Ok(expected.clone()),
            "{file}"
        );
    }
}
