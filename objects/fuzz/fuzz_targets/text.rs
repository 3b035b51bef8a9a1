//! Plain text and opaque single values from devices: any bytes give a node or a
//! `DecodeError`, and a decoded node re-encodes to a payload that decodes to the same node.
#![no_main]

mod shared;

use steward_objects::codec::{decode, encode};
use steward_objects::{ContentFormat, Path};

/// Every data type of the codec test object (0-8), its executable (9), a multiple resource
/// (10) and one of its instances, an unknown resource, paths above a resource, and core
/// resources.
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
    Path::Resource(42799, 0, 999),
    Path::Instance(3, 0),
    Path::Resource(3, 0, 13),
    Path::Resource(5, 0, 0),
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
    for format in [ContentFormat::Text, ContentFormat::Opaque] {
        let Ok(node) = decode(format, &path, payload, models) else {
            continue;
        };
        // Text refuses NaN and infinity on input, so everything it decodes has a text form.
        let again = encode(format, &path, &node).expect("a decoded node encodes");
        let back = decode(format, &path, &again, models).expect("re-encoded payload decodes");
        assert!(
            shared::same(&node, &back),
            "{format} at {path}: {node:?} came back as {back:?}"
        );
    }
});
