//! SenML JSON (content format 110) from devices: any bytes give content or a `DecodeError` in
//! every entry point, and decoded content survives a re-encode in SenML JSON and SenML CBOR.
#![no_main]

mod shared;

#[path = "senml_common.rs"]
mod senml_common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    senml_common::run(steward_objects::ContentFormat::SenmlJson, data);
});
