//! Fuzz-style properties: whatever bytes arrive, the responder answers with a well-formed
//! OCSPResponse and the client never panics nor accepts a tampered answer as something else.
#![allow(clippy::unwrap_used)]

mod ocsp_crl_testca;

use std::sync::OnceLock;
use std::time::SystemTime;

use ocsp_crl_testca::{Pki, now};
use openssl::ocsp::{OcspResponse as OpensslResponse, OcspResponseStatus};
use openssl::x509::X509;
use proptest::prelude::*;
use steward_pki::revocation::ocsp::{OcspResponder, check_response, request_for};
use steward_pki::revocation::{CertStatus, RevocationReason};

struct Fixture {
    pki: Pki,
    leaf: X509,
    responder: OcspResponder,
    request: Vec<u8>,
    response: Vec<u8>,
    at: SystemTime,
}

const NONCE: &[u8] = b"fuzz-nonce-0123456789";

fn lookup(serial: &[u8]) -> CertStatus {
    if serial == [7] {
        CertStatus::Revoked {
            revoked_at: SystemTime::UNIX_EPOCH,
            reason: Some(RevocationReason::Superseded),
        }
    } else {
        CertStatus::Good
    }
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let pki = Pki::new();
        let (leaf, _) = pki.leaf("server", 7);
        let responder = OcspResponder::new(
            &pki.issuing.cert,
            &pki.issuing.key,
            std::slice::from_ref(&pki.issuing.cert),
        )
        .unwrap();
        let request = request_for(&leaf, &pki.issuing.cert, Some(NONCE)).unwrap();
        let at = now();
        let response = responder.respond(&request, &lookup, at);
        Fixture {
            pki,
            leaf,
            responder,
            request,
            response,
            at,
        }
    })
}

/// Whatever the input, the output is an OCSPResponse openssl can read.
fn assert_well_formed(response: &[u8]) -> OcspResponseStatus {
    OpensslResponse::from_der(response).unwrap().status()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic_respond(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let f = fixture();
        let response = f.responder.respond(&bytes, &lookup, f.at);
        let status = assert_well_formed(&response);
        prop_assert!(
            status == OcspResponseStatus::MALFORMED_REQUEST || status == OcspResponseStatus::SUCCESSFUL
        );
    }

    #[test]
    fn mutated_requests_never_panic_respond(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let f = fixture();
        let mut req = f.request.clone();
        for (at, byte) in flips {
            let i = at.index(req.len());
            req[i] ^= byte;
        }
        if let Some(cut) = cut {
            req.truncate(cut.index(req.len()));
        }
        assert_well_formed(&f.responder.respond(&req, &lookup, f.at));
    }

    #[test]
    fn client_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let f = fixture();
        let _ = check_response(&bytes, &f.leaf, &f.pki.issuing.cert, Some(NONCE), f.at);
    }

    #[test]
    fn client_never_accepts_a_different_answer_from_a_tampered_response(
        at in any::<prop::sample::Index>(),
        byte in 1u8..,
    ) {
        let f = fixture();
        let mut resp = f.response.clone();
        let i = at.index(resp.len());
        resp[i] ^= byte;
        // A flip outside the signed data (e.g. in the attached certificate) may still verify;
        // it must then report exactly what the responder signed.
        if let Ok(status) = check_response(&resp, &f.leaf, &f.pki.issuing.cert, Some(NONCE), f.at) {
            prop_assert_eq!(status, CertStatus::Revoked {
                revoked_at: SystemTime::UNIX_EPOCH,
                reason: Some(RevocationReason::Superseded),
            });
        }
    }
}

#[test]
fn fixture_response_checks_out() {
    let f = fixture();
    assert!(matches!(
        check_response(&f.response, &f.leaf, &f.pki.issuing.cert, Some(NONCE), f.at),
        Ok(CertStatus::Revoked { .. })
    ));
}
