//! OCSP from the network, both ways. As a request to the CA's responder: any bytes get a DER
//! OCSPResponse that openssl reads, `successful` or `malformedRequest`, and a successful one
//! that the device-side check accepts reports what the store says about the leaf. As a
//! response checked by a device: any bytes give a status or a `CheckError`, never a panic.
#![no_main]

mod shared;

use openssl::ocsp::{OcspResponse, OcspResponseStatus};
use steward_pki::revocation::ocsp::check_response;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let f = shared::fixture();
    let now = shared::now();

    let response = f.responder.respond(data, &shared::lookup, now);
    let status = OcspResponse::from_der(&response)
        .expect("the responder answers a DER OCSPResponse")
        .status();
    assert!(
        status == OcspResponseStatus::SUCCESSFUL || status == OcspResponseStatus::MALFORMED_REQUEST,
        "unexpected responder status {status:?}"
    );
    if let Ok(got) = check_response(&response, &f.leaf, &f.ca, None, now) {
        assert_eq!(status, OcspResponseStatus::SUCCESSFUL);
        assert_eq!(
            got,
            shared::lookup(&[7]),
            "the check reports what the responder signed"
        );
    }

    let _ = check_response(data, &f.leaf, &f.ca, None, now);
});
