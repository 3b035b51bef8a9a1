//! OMA TLV from devices: any bytes at any path give a node or a `DecodeError`, and a decoded
//! node re-encodes to a payload that decodes to the same node.
#![no_main]

mod shared;

use steward_objects::codec::{decode, encode};
use steward_objects::{ContentFormat, Path};

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
    let Ok(node) = decode(ContentFormat::Tlv, &path, payload, models) else {
        return;
    };
    let again = encode(ContentFormat::Tlv, &path, &node).expect("a decoded node encodes");
    let back = decode(ContentFormat::Tlv, &path, &again, models).expect("re-encoded TLV decodes");
    assert!(
        shared::same(&node, &back),
        "{path}: {node:?} came back as {back:?}"
    );
});
