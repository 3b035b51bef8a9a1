//! OMA LwM2M JSON (content formats 11543 and 1543) from 1.0 devices: any bytes give a node or a
//! `DecodeError`, and a decoded node re-encodes to a document that decodes to the same node.
#![no_main]

use steward_objects::codec::{decode, encode};
use steward_objects::{ContentFormat, ModelRegistry, Models, NoModels, Path};

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
    assert_eq!(node, back, "{path}");
});
