//! certs-only CMS from an EST server (/crts, /sen, /sren): any bytes give a list of DER
//! certificates or a `Pkcs7Error`, and a non-empty list wraps again into a certs-only message
//! that reads back as the same set (a DER SET OF is sorted and holds no duplicates).
#![no_main]

use steward_pki::pkcs7::{certs_only, parse_certs_only};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(certs) = parse_certs_only(data) else {
        return;
    };
    if certs.is_empty() {
        return;
    }
    let again = certs_only(&certs).expect("certificates read from a message wrap again");
    let mut back = parse_certs_only(&again).expect("a built certs-only message parses");
    let mut expected = certs;
    expected.sort();
    expected.dedup();
    back.sort();
    assert_eq!(back, expected);
});
