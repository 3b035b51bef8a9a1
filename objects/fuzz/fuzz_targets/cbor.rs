//! CBOR single values (content format 60) from devices: any bytes give a node or a
//! `DecodeError`, and a decoded node re-encodes to a payload that decodes to the same node.
#![no_main]

mod shared;

use steward_objects::codec::{decode, encode};
use steward_objects::{ContentFormat, Path};

/// Every data type of the codec test object (0-8), its executable (9), a multiple resource
/// (10) and instances of multiple resources, an unknown resource, a path above a resource,
/// and core resources.
const PATHS: [Path; 16] = [
    Path::Resource(42799, 0, 0),
    Path::Resource(42799, 0, 1),
    Path::Resource(42799, 0, 2),
    Path::Resource(42799, 0, 3),
    Path::Resource(42799, 0, 4),
    Path::Resource(42799, 0, 5),
    Path::Resource(42799, 0, 6),
    Path::Resource(42799, 0, 7),
    Path::Resource(42799, 0, 8),
    Path::Resource(42799, 0, 9),
    Path::Resource(42799, 0, 10),
    Path::ResourceInstance(42799, 0, 13, 2),
    Path::ResourceInstance(42799, 0, 16, 0),
    Path::Resource(42799, 0, 999),
    Path::Instance(3, 0),
    Path::Resource(3, 0, 13),
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
    let Ok(node) = decode(ContentFormat::Cbor, &path, payload, models) else {
        return;
    };
    let again = encode(ContentFormat::Cbor, &path, &node).expect("a decoded node encodes");
    let back = decode(ContentFormat::Cbor, &path, &again, models).expect("re-encoded CBOR decodes");
    assert!(
        shared::same(&node, &back),
        "{path}: {node:?} came back as {back:?}"
    );
});
