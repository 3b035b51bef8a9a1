//! LwM2M CBOR (content format 11544) from devices: every entry point on any bytes gives content
//! or a `DecodeError`, and whatever decodes survives a re-encode unchanged.
#![no_main]

mod shared;

use steward_objects::codec::{
    decode, decode_nodes, decode_paths, decode_timestamped, encode, encode_nodes, encode_paths,
    encode_timestamped,
};
use steward_objects::{ContentFormat, Path};

const CBOR: ContentFormat = ContentFormat::Lwm2mCbor;

/// Paths at every depth: the codec test object (every data type, single and multiple), core
/// objects, an unknown object.
const PATHS: [Path; 10] = [
    Path::Object(42799),
    Path::Instance(42799, 0),
    Path::Resource(42799, 0, 3),
    Path::Resource(42799, 0, 11),
    Path::ResourceInstance(42799, 0, 13, 2),
    Path::Object(3),
    Path::Instance(3, 0),
    Path::Resource(3, 0, 13),
    Path::Resource(3, 0, 7),
    Path::Instance(3303, 0),
];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some(shared::Input {
        path,
        models,
        payload,
        ..
    }) = shared::split(data, &PATHS)
    else {
        return;
    };

    if let Ok(node) = decode(CBOR, &path, payload, models) {
        let again = encode(CBOR, &path, &node).expect("a decoded node encodes");
        let back = decode(CBOR, &path, &again, models).expect("a re-encoded node decodes");
        assert!(
            shared::same(&node, &back),
            "{path}: {node:?} came back as {back:?}"
        );
    }

    let requested = [path];
    for requested in [None, Some(&requested[..])] {
        if let Ok(nodes) = decode_nodes(CBOR, payload, requested, models) {
            let again = encode_nodes(CBOR, &nodes).expect("decoded nodes encode");
            let back =
                decode_nodes(CBOR, &again, requested, models).expect("re-encoded nodes decode");
            assert!(
                shared::same(&nodes, &back),
                "{nodes:?} came back as {back:?}"
            );
        }
    }

    if let Ok(paths) = decode_paths(CBOR, payload) {
        let again = encode_paths(CBOR, &paths).expect("decoded paths encode");
        assert_eq!(decode_paths(CBOR, &again).as_ref(), Ok(&paths));
    }

    if let Ok(entries) = decode_timestamped(CBOR, payload, models) {
        let again = encode_timestamped(CBOR, &entries).expect("decoded entries carry no time");
        let back = decode_timestamped(CBOR, &again, models).expect("re-encoded entries decode");
        assert!(
            shared::same(&entries, &back),
            "{entries:?} came back as {back:?}"
        );
    }
});
