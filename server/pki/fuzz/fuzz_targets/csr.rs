//! PKCS#10 requests from EST /sen, /sren, /skg and /skc: any bytes give a `Csr` or a
//! `CsrError`, and an accepted request keeps its bytes, answers every accessor, and parses
//! again.
#![no_main]

use steward_pki::csr::{Csr, CsrLimits};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let limits = CsrLimits::default();
    let Ok(csr) = Csr::from_der(data, limits) else {
        return;
    };
    assert!(data.len() <= limits.max_der_len);
    assert_eq!(csr.der(), data);
    let _ = csr.common_name();
    let _ = csr.require_common_name();
    let _ = (csr.subject_der(), csr.san(), csr.san_der(), csr.key_kind());
    let _ = csr.challenge_password();
    let _ = csr.subject_name().entries().count();
    csr.public_key_der().expect("an accepted CSR's key encodes");
    let again = Csr::from_der(csr.der(), limits).expect("an accepted CSR parses again");
    assert_eq!(again.common_name(), csr.common_name());
    assert_eq!(again.san(), csr.san());
});
