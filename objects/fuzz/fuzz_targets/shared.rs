//! What every codec fuzz target needs: the models, the split of the input into a selector and
//! a payload, and round-trip equality.
// Each target is its own crate and uses a different part of this module.
#![allow(dead_code)]

use std::fmt::Debug;
use std::sync::LazyLock;

use steward_objects::{ModelRegistry, Models, NoModels, Path};

/// The bundled core objects plus the codec test object (every data type, single and multiple).
pub static MODELS: LazyLock<ModelRegistry> = LazyLock::new(|| {
    let mut reg = ModelRegistry::core();
    reg.load_str(
        "42799.xml",
        include_str!("../../tests/vectors/ddf/42799.xml"),
    )
    .expect("test object DDF parses");
    reg
});

/// The first byte selects: its low seven bits pick one of `paths`, its top bit decodes
/// without models (what a server sees for objects it has no DDF for). Bit 6 is left for the
/// target (e.g. the legacy content-format number).
pub struct Input<'a> {
    pub selector: u8,
    pub path: Path,
    pub models: &'static dyn Models,
    pub payload: &'a [u8],
}

pub fn split<'a>(data: &'a [u8], paths: &[Path]) -> Option<Input<'a>> {
    let (&selector, payload) = data.split_first()?;
    let path = *paths.get(usize::from(selector & 0x7f) % paths.len().max(1))?;
    let models: &'static dyn Models = if selector & 0x80 == 0 {
        &*MODELS
    } else {
        &NoModels
    };
    Some(Input {
        selector,
        path,
        models,
        payload,
    })
}

/// Round-trip equality: compares `Debug` output, which prints every NaN alike (formats that
/// carry any float bit pattern may hand back another NaN) and still tells -0.0 from 0.0 and a
/// multiple resource from a single one.
pub fn same<T: Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") == format!("{b:?}")
}
