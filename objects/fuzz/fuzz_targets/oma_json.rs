//! OMA LwM2M JSON (content formats 11543 and 1543) from 1.0 devices: any bytes give a node or a
//! `DecodeError`, and a decoded node re-encodes to a document that decodes to the same node.
#![no_main]

mod shared;

use steward_objects::codec::{decode, encode};
use steward_objects::{ContentFormat, Path};

/// Paths at every depth: the codec test object (every data type, single and multiple), core
/// objects, an unknown object.
const PATHS: [Path; 10] = [
    Path::Object(42799),
    Path::Instance(42799, 0),
    Path::Resource(42799, 0, 5),
    Path::Resource(42799, 0, 15),
    Path::ResourceInstance(42799, 0, 17, 2),
    Path::Object(3),
    Path::Instance(3, 0),
    Path::Resource(3, 0, 13),
    Path::Resource(3, 0, 7),
    Path::Object(1024),
];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some(shared::Input {
        selector,
        path,
        models,
        payload,
    }) = shared::split(data, &PATHS)
    else {
        return;
    };
    let format = if selector & 0x40 == 0 {
        ContentFormat::OmaJson
    } else {
        ContentFormat::LegacyOmaJson
    };
    let Ok(node) = decode(format, &path, payload, models) else {
        return;
    };
    // JSON carries no NaN, and decoded nodes hold no nested empty containers, so every
    // decoded node encodes.
    let again = encode(format, &path, &node).expect("a decoded node encodes");
    let back = decode(format, &path, &again, models).expect("a re-encoded node decodes");
    assert!(
        shared::same(&node, &back),
        "{path}: {node:?} came back as {back:?}"
    );
});
