//! application/multipart-core (RFC 8710) from EST /skg and /skc: any bytes give parts or a
//! `MultipartError`, and decoded parts encode to a payload that decodes to the same parts.
#![no_main]

use steward_pki::multipart::{decode, encode};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(parts) = decode(data) else {
        return;
    };
    let again = encode(&parts).expect("decoded parts encode");
    assert_eq!(decode(&again).expect("encoded parts decode"), parts);
});
