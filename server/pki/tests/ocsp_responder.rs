//! The OCSP responder against our client side, openssl's library and the openssl CLI.
#![allow(clippy::unwrap_used)]

mod ocsp_crl_testca;

use std::cell::Cell;
use std::time::Duration;

use der::asn1::{Null, OctetString};
use der::{Decode, Encode};
use ocsp_crl_testca::{
    Ca, HOUR, Pki, foreign_ca, foreign_leaf, now, openssl_cli, write, write_pem,
};
use openssl::hash::MessageDigest;
use openssl::ocsp::{
    OcspCertId, OcspCertStatus, OcspRequest as OpensslRequest, OcspResponse as OpensslResponse,
    OcspResponseStatus,
};
use openssl::x509::X509Ref;
use sha2::{Digest, Sha256};
use spki::AlgorithmIdentifierOwned;
use steward_pki::revocation::ocsp::{
    CheckError, MAX_REQUESTS, OcspResponder, RequestError, ResponseStatus, check_response,
    request_for,
};
use steward_pki::revocation::{CertStatus, RevocationReason, serial_of};
use x509_cert::ext::Extension;
use x509_cert::serial_number::SerialNumber;
use x509_ocsp::builder::OcspRequestBuilder;
use x509_ocsp::ext::Nonce;
use x509_ocsp::{BasicOcspResponse, CertId, OcspResponse, Request, ResponderId, Version};

const NONCE: &[u8] = b"0123456789abcdef";

fn ca_responder(pki: &Pki) -> OcspResponder {
    OcspResponder::new(
        &pki.issuing.cert,
        &pki.issuing.key,
        std::slice::from_ref(&pki.issuing.cert),
    )
    .unwrap()
}

fn revoked_at() -> std::time::SystemTime {
    // Whole seconds: GeneralizedTime carries no fraction.
    std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_760_000_000)
}

/// Revokes `revoked` for keyCompromise; everything else the CA issued is good.
fn lookup_for(revoked: Vec<u8>) -> impl Fn(&[u8]) -> CertStatus {
    move |serial: &[u8]| {
        if serial == revoked.as_slice() {
            CertStatus::Revoked {
                revoked_at: revoked_at(),
                reason: Some(RevocationReason::KeyCompromise),
            }
        } else if serial.len() <= 2 {
            CertStatus::Good
        } else {
            CertStatus::Unknown
        }
    }
}

fn basic(response: &[u8]) -> BasicOcspResponse {
    let r = OcspResponse::from_der(response).unwrap();
    BasicOcspResponse::from_der(r.response_bytes.unwrap().response.as_bytes()).unwrap()
}

fn status_code(response: &[u8]) -> OcspResponseStatus {
    OpensslResponse::from_der(response).unwrap().status()
}

#[test]
fn good_round_trip_through_our_client() {
    let pki = Pki::new();
    let (leaf, _) = pki.leaf("server", 10);
    let req = request_for(&leaf, &pki.issuing.cert, Some(NONCE)).unwrap();
    let resp = ca_responder(&pki).respond(&req, &lookup_for(vec![11]), now());
    let status = check_response(&resp, &leaf, &pki.issuing.cert, Some(NONCE), now()).unwrap();
    assert_eq!(status, CertStatus::Good);
}

#[test]
fn revoked_round_trip_carries_time_and_reason() {
    let pki = Pki::new();
    let (leaf, _) = pki.leaf("server", 11);
    let req = request_for(&leaf, &pki.issuing.cert, Some(NONCE)).unwrap();
    let resp = ca_responder(&pki).respond(&req, &lookup_for(vec![11]), now());
    let status = check_response(&resp, &leaf, &pki.issuing.cert, Some(NONCE), now()).unwrap();
    assert_eq!(
        status,
        CertStatus::Revoked {
            revoked_at: revoked_at(),
            reason: Some(RevocationReason::KeyCompromise)
        }
    );
}

#[test]
fn lookup_sees_the_unsigned_serial() {
    let pki = Pki::new();
    // 0x80 needs a DER sign octet; the lookup must get [0x80], as serial_of gives.
    let (leaf, _) = pki.leaf("server", 0x80);
    let seen = Cell::new(None);
    let lookup = |serial: &[u8]| {
        seen.set(Some(serial.to_vec()));
        CertStatus::Good
    };
    let req = request_for(&leaf, &pki.issuing.cert, None).unwrap();
    ca_responder(&pki).respond(&req, &lookup, now());
    assert_eq!(seen.take(), Some(serial_of(&leaf).unwrap()));
    assert_eq!(serial_of(&leaf).unwrap(), vec![0x80]);
}

#[test]
fn response_fields() {
    let pki = Pki::new();
    let (leaf, _) = pki.leaf("server", 10);
    let req = request_for(&leaf, &pki.issuing.cert, Some(NONCE)).unwrap();
    let t = now();
    let resp = ca_responder(&pki)
        .with_validity(Duration::from_secs(600))
        .respond(&req, &lookup_for(vec![]), t);
    let b = basic(&resp);
    // Nonce echoed.
    assert_eq!(b.tbs_response_data.nonce().unwrap().0.as_bytes(), NONCE);
    // byKey: SHA-1 of the responder's subjectPublicKey bits.
    let spki = pki
        .issuing
        .cert
        .public_key()
        .unwrap()
        .public_key_to_der()
        .unwrap();
    let bits = spki::SubjectPublicKeyInfoRef::from_der(&spki)
        .unwrap()
        .subject_public_key
        .raw_bytes()
        .to_vec();
    let expected = sha1::Sha1::digest(&bits).to_vec();
    match &b.tbs_response_data.responder_id {
        ResponderId::ByKey(k) => assert_eq!(k.as_bytes(), expected.as_slice()),
        other => panic!("responder id {other:?}"),
    }
    // Times.
    let single = &b.tbs_response_data.responses[0];
    let secs = |g: &der::asn1::GeneralizedTime| g.to_unix_duration().as_secs();
    let t_secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(secs(&single.this_update.0), t_secs);
    assert_eq!(secs(&b.tbs_response_data.produced_at.0), t_secs);
    assert_eq!(secs(&single.next_update.unwrap().0), t_secs + 600);
    // Responder certificate included; ECDSA-SHA256.
    assert_eq!(b.certs.as_ref().map(Vec::len), Some(1));
    assert_eq!(b.signature_algorithm.oid.to_string(), "1.2.840.10045.4.3.2");
}

#[test]
fn openssl_library_verifies_and_finds_status() {
    let pki = Pki::new();
    let (leaf, _) = pki.leaf("server", 11);
    // Request built by openssl, not by us.
    let mut req = OpensslRequest::new().unwrap();
    req.add_id(OcspCertId::from_cert(MessageDigest::sha1(), &leaf, &pki.issuing.cert).unwrap())
        .unwrap();
    let resp = ca_responder(&pki).respond(&req.to_der().unwrap(), &lookup_for(vec![11]), now());

    let resp = OpensslResponse::from_der(&resp).unwrap();
    assert_eq!(resp.status(), OcspResponseStatus::SUCCESSFUL);
    let basic = resp.basic().unwrap();
    let mut store = openssl::x509::store::X509StoreBuilder::new().unwrap();
    store.add_cert(pki.root.cert.clone()).unwrap();
    basic
        .verify(
            &openssl::stack::Stack::new().unwrap(),
            &store.build(),
            openssl::ocsp::OcspFlag::empty(),
        )
        .unwrap();
    let id = OcspCertId::from_cert(MessageDigest::sha1(), &leaf, &pki.issuing.cert).unwrap();
    let status = basic.find_status(&id).unwrap();
    assert_eq!(status.status, OcspCertStatus::REVOKED);
    assert_eq!(
        status.reason,
        openssl::ocsp::OcspRevokedStatus::KEY_COMPROMISE
    );
    status.check_validity(60, None).unwrap();
}

/// Runs `openssl ocsp` twice on a request/response pair:
/// 1. `-reqin req -respin resp`: checks the signature chain to the root and that the response
///    echoes the request's nonce, and prints the response (`-resp_text`);
/// 2. `-issuer -cert leaf -respin resp -no_nonce`: prints the `leaf.pem: <status>` line. With
///    `-cert`, openssl builds its own request (and would add a fresh nonce, ignoring
///    `-reqin`), hence `-no_nonce` there.
fn run_openssl_ocsp(pki: &Pki, leaf: &X509Ref, req: &[u8], resp: &[u8]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let req = write(dir.path(), "req.der", req);
    let resp = write(dir.path(), "resp.der", resp);
    let ca = write_pem(dir.path(), "ca.pem", &[&pki.root.cert]);
    let issuer = write_pem(dir.path(), "issuing.pem", &[&pki.issuing.cert]);
    let leaf = write_pem(dir.path(), "leaf.pem", &[leaf]);
    let (ok1, out1) = openssl_cli([
        "ocsp",
        "-reqin",
        req.to_str().unwrap(),
        "-respin",
        resp.to_str().unwrap(),
        "-CAfile",
        ca.to_str().unwrap(),
        // The issuing CA as an untrusted intermediate, as `-issuer` provides in run 2: a
        // delegated responder's chain goes responder → issuing CA → root.
        "-verify_other",
        issuer.to_str().unwrap(),
        "-resp_text",
    ]);
    let (ok2, out2) = openssl_cli([
        "ocsp",
        "-respin",
        resp.to_str().unwrap(),
        "-CAfile",
        ca.to_str().unwrap(),
        "-issuer",
        issuer.to_str().unwrap(),
        "-cert",
        leaf.to_str().unwrap(),
        "-no_nonce",
    ]);
    (ok1 && ok2, format!("{out1}\n----\n{out2}"))
}

#[test]
fn openssl_cli_accepts_good() {
    let pki = Pki::new();
    let (leaf, _) = pki.leaf("server", 10);
    let req = request_for(&leaf, &pki.issuing.cert, Some(NONCE)).unwrap();
    let resp = ca_responder(&pki).respond(&req, &lookup_for(vec![11]), now());
    let (ok, out) = run_openssl_ocsp(&pki, &leaf, &req, &resp);
    assert!(ok, "{out}");
    assert!(out.contains("Response verify OK"), "{out}");
    assert!(out.contains("leaf.pem: good"), "{out}");
    assert!(out.contains("Cert Status: good"), "{out}");
    assert!(!out.contains("WARNING"), "{out}");
}

#[test]
fn openssl_cli_accepts_revoked_with_reason() {
    let pki = Pki::new();
    let (leaf, _) = pki.leaf("server", 11);
    let req = request_for(&leaf, &pki.issuing.cert, Some(NONCE)).unwrap();
    let resp = ca_responder(&pki).respond(&req, &lookup_for(vec![11]), now());
    let (ok, out) = run_openssl_ocsp(&pki, &leaf, &req, &resp);
    assert!(ok, "{out}");
    assert!(out.contains("Response verify OK"), "{out}");
    assert!(out.contains("leaf.pem: revoked"), "{out}");
    assert!(out.contains("Revocation Reason: keyCompromise"), "{out}");
}

#[test]
fn openssl_cli_request_is_answered() {
    // The request comes from `openssl ocsp` itself, with its own nonce.
    let pki = Pki::new();
    let (leaf, _) = pki.leaf("server", 10);
    let dir = tempfile::tempdir().unwrap();
    let issuer = write_pem(dir.path(), "issuing.pem", &[&pki.issuing.cert]);
    let leaf_pem = write_pem(dir.path(), "leaf.pem", &[&leaf]);
    let req_file = dir.path().join("req.der");
    let (ok, out) = openssl_cli([
        "ocsp",
        "-issuer",
        issuer.to_str().unwrap(),
        "-cert",
        leaf_pem.to_str().unwrap(),
        "-reqout",
        req_file.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let req = std::fs::read(&req_file).unwrap();
    let resp = ca_responder(&pki).respond(&req, &lookup_for(vec![]), now());
    let (ok, out) = run_openssl_ocsp(&pki, &leaf, &req, &resp);
    assert!(ok, "{out}");
    assert!(out.contains("Response verify OK"), "{out}");
    assert!(out.contains("leaf.pem: good"), "{out}");
    // openssl fails on a nonce mismatch and warns about a missing one.
    assert!(!out.contains("WARNING: no nonce"), "{out}");
}

#[test]
fn delegated_responder_is_accepted() {
    let pki = Pki::new();
    let (leaf, _) = pki.leaf("server", 11);
    let delegate = Pki::responder(&pki.issuing, 500, true);
    let responder = OcspResponder::new(
        &pki.issuing.cert,
        &delegate.key,
        std::slice::from_ref(&delegate.cert),
    )
    .unwrap();
    let req = request_for(&leaf, &pki.issuing.cert, Some(NONCE)).unwrap();
    let resp = responder.respond(&req, &lookup_for(vec![11]), now());
    assert!(matches!(
        check_response(&resp, &leaf, &pki.issuing.cert, Some(NONCE), now()),
        Ok(CertStatus::Revoked { .. })
    ));
    let (ok, out) = run_openssl_ocsp(&pki, &leaf, &req, &resp);
    assert!(ok && out.contains("Response verify OK"), "{out}");
}

fn assert_untrusted(pki: &Pki, signer: &Ca) {
    let (leaf, _) = pki.leaf("server", 10);
    let responder = OcspResponder::new(
        &pki.issuing.cert,
        &signer.key,
        std::slice::from_ref(&signer.cert),
    )
    .unwrap();
    let req = request_for(&leaf, &pki.issuing.cert, Some(NONCE)).unwrap();
    let resp = responder.respond(&req, &lookup_for(vec![]), now());
    let r = check_response(&resp, &leaf, &pki.issuing.cert, Some(NONCE), now());
    assert!(matches!(r, Err(CheckError::Untrusted(_))), "{r:?}");
}

#[test]
fn responder_without_ocsp_signing_eku_is_rejected() {
    let pki = Pki::new();
    assert_untrusted(&pki, &Pki::responder(&pki.issuing, 501, false));
}

#[test]
fn responder_delegated_by_another_ca_is_rejected() {
    let pki = Pki::new();
    // The root may sign OCSP responders, but not for the issuing CA's certificates.
    assert_untrusted(&pki, &Pki::responder(&pki.root, 502, true));
    assert_untrusted(&pki, &foreign_ca());
}

#[test]
fn certificate_of_another_issuer_is_unknown() {
    let pki = Pki::new();
    let other = foreign_ca();
    let stranger = foreign_leaf(&other, 10);
    let called = Cell::new(false);
    let lookup = |_: &[u8]| {
        called.set(true);
        CertStatus::Good
    };
    let req = request_for(&stranger, &other.cert, Some(NONCE)).unwrap();
    let resp = ca_responder(&pki).respond(&req, &lookup, now());
    assert!(!called.get(), "lookup must not run for a foreign issuer");
    let b = basic(&resp);
    assert!(matches!(
        b.tbs_response_data.responses[0].cert_status,
        x509_ocsp::CertStatus::Unknown(_)
    ));
}

#[test]
fn sha256_cert_id_is_matched() {
    let pki = Pki::new();
    let (leaf, _) = pki.leaf("server", 11);
    let name = pki.issuing.cert.subject_name().to_der().unwrap();
    let spki = pki
        .issuing
        .cert
        .public_key()
        .unwrap()
        .public_key_to_der()
        .unwrap();
    let bits = spki::SubjectPublicKeyInfoRef::from_der(&spki)
        .unwrap()
        .subject_public_key
        .raw_bytes()
        .to_vec();
    let id = CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: der::oid::ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1"),
            parameters: Some(Null.into()),
        },
        issuer_name_hash: OctetString::new(Sha256::digest(&name).to_vec()).unwrap(),
        issuer_key_hash: OctetString::new(Sha256::digest(&bits).to_vec()).unwrap(),
        serial_number: SerialNumber::new(&[11]).unwrap(),
    };
    let req = OcspRequestBuilder::new(Version::V1)
        .with_request(Request::new(id))
        .build()
        .to_der()
        .unwrap();
    let resp = ca_responder(&pki).respond(&req, &lookup_for(vec![11]), now());
    let b = basic(&resp);
    assert!(matches!(
        b.tbs_response_data.responses[0].cert_status,
        x509_ocsp::CertStatus::Revoked(_)
    ));
    // Our client finds the SHA-256 answer too.
    assert!(matches!(
        check_response(&resp, &leaf, &pki.issuing.cert, None, now()),
        Ok(CertStatus::Revoked { .. })
    ));
}

#[test]
fn nonce_checks_on_the_client() {
    let pki = Pki::new();
    let (leaf, _) = pki.leaf("server", 10);
    let responder = ca_responder(&pki);
    let req = request_for(&leaf, &pki.issuing.cert, Some(NONCE)).unwrap();
    let resp = responder.respond(&req, &lookup_for(vec![]), now());
    assert!(matches!(
        check_response(
            &resp,
            &leaf,
            &pki.issuing.cert,
            Some(b"another nonce"),
            now()
        ),
        Err(CheckError::NonceMismatch)
    ));
    let req = request_for(&leaf, &pki.issuing.cert, None).unwrap();
    let resp = responder.respond(&req, &lookup_for(vec![]), now());
    assert!(basic(&resp).tbs_response_data.nonce().is_none());
    assert!(matches!(
        check_response(&resp, &leaf, &pki.issuing.cert, Some(NONCE), now()),
        Err(CheckError::NonceMissing)
    ));
    assert!(matches!(
        request_for(&leaf, &pki.issuing.cert, Some(&[0; 33])),
        Err(RequestError::InvalidNonce(33))
    ));
    assert!(matches!(
        request_for(&leaf, &pki.issuing.cert, Some(&[])),
        Err(RequestError::InvalidNonce(0))
    ));
}

fn request_with_extension(pki: &Pki, ext: impl x509_cert::ext::AsExtension) -> Vec<u8> {
    let (leaf, _) = pki.leaf("server", 10);
    let plain = request_for(&leaf, &pki.issuing.cert, None).unwrap();
    let parsed = x509_ocsp::OcspRequest::from_der(&plain).unwrap();
    OcspRequestBuilder::new(Version::V1)
        .with_request(parsed.tbs_request.request_list[0].clone())
        .with_extension(ext)
        .unwrap()
        .build()
        .to_der()
        .unwrap()
}

#[test]
fn oversized_or_empty_nonce_is_malformed() {
    let pki = Pki::new();
    let responder = ca_responder(&pki);
    for len in [0usize, 33, 64] {
        let req = request_with_extension(&pki, Nonce::new(vec![7u8; len]).unwrap());
        let resp = responder.respond(&req, &lookup_for(vec![]), now());
        assert_eq!(
            status_code(&resp),
            OcspResponseStatus::MALFORMED_REQUEST,
            "len {len}"
        );
    }
    let req = request_with_extension(&pki, Nonce::new(vec![7u8; 32]).unwrap());
    let resp = responder.respond(&req, &lookup_for(vec![]), now());
    assert_eq!(status_code(&resp), OcspResponseStatus::SUCCESSFUL);
}

/// An extension we do not know, marked critical.
struct Critical;
impl der::Encode for Critical {
    fn encoded_len(&self) -> der::Result<der::Length> {
        Null.encoded_len()
    }
    fn encode(&self, w: &mut impl der::Writer) -> der::Result<()> {
        Null.encode(w)
    }
}
impl const_oid_shim::AssociatedOid for Critical {
    const OID: der::oid::ObjectIdentifier = der::oid::ObjectIdentifier::new_unwrap("1.2.3.4");
}
impl x509_cert::ext::AsExtension for Critical {
    fn critical(&self, _: &x509_cert::name::Name, _: &[Extension]) -> bool {
        true
    }
}
mod const_oid_shim {
    pub use der::oid::AssociatedOid;
}

#[test]
fn unknown_critical_extension_is_malformed() {
    let pki = Pki::new();
    let req = request_with_extension(&pki, Critical);
    let resp = ca_responder(&pki).respond(&req, &lookup_for(vec![]), now());
    assert_eq!(status_code(&resp), OcspResponseStatus::MALFORMED_REQUEST);
}

#[test]
fn garbage_empty_and_oversized_requests_are_malformed() {
    let pki = Pki::new();
    let responder = ca_responder(&pki);
    let lookup = lookup_for(vec![]);
    for garbage in [&b""[..], b"\x30\x00", b"hello", &[0xff; 100]] {
        let resp = responder.respond(garbage, &lookup, now());
        assert_eq!(status_code(&resp), OcspResponseStatus::MALFORMED_REQUEST);
        assert!(matches!(
            check_response(&resp, &pki.issuing.cert, &pki.issuing.cert, None, now()),
            Err(CheckError::Unsuccessful(ResponseStatus::MalformedRequest))
        ));
    }
    // An empty requestList.
    let empty = OcspRequestBuilder::new(Version::V1)
        .build()
        .to_der()
        .unwrap();
    assert_eq!(
        status_code(&responder.respond(&empty, &lookup, now())),
        OcspResponseStatus::MALFORMED_REQUEST
    );
    // More CertIDs than we answer in one go.
    let (leaf, _) = pki.leaf("server", 10);
    let one =
        x509_ocsp::OcspRequest::from_der(&request_for(&leaf, &pki.issuing.cert, None).unwrap())
            .unwrap()
            .tbs_request
            .request_list[0]
            .clone();
    let mut builder = OcspRequestBuilder::new(Version::V1);
    for _ in 0..=MAX_REQUESTS {
        builder = builder.with_request(one.clone());
    }
    let many = builder.build().to_der().unwrap();
    assert_eq!(
        status_code(&responder.respond(&many, &lookup, now())),
        OcspResponseStatus::MALFORMED_REQUEST
    );
}

#[test]
fn freshness_is_checked_against_now() {
    let pki = Pki::new();
    let (leaf, _) = pki.leaf("server", 10);
    let req = request_for(&leaf, &pki.issuing.cert, None).unwrap();
    let t = now();
    let resp = ca_responder(&pki).respond(&req, &lookup_for(vec![]), t);
    // Within the hour (plus skew) it is fine.
    assert!(check_response(&resp, &leaf, &pki.issuing.cert, None, t + HOUR).is_ok());
    assert!(matches!(
        check_response(&resp, &leaf, &pki.issuing.cert, None, t + 2 * HOUR),
        Err(CheckError::Stale)
    ));
    assert!(matches!(
        check_response(
            &resp,
            &leaf,
            &pki.issuing.cert,
            None,
            t - Duration::from_secs(1200)
        ),
        Err(CheckError::NotYetValid)
    ));
}

#[test]
fn response_for_another_certificate_does_not_count() {
    let pki = Pki::new();
    let (asked, _) = pki.leaf("server", 10);
    let (other, _) = pki.leaf("other", 12);
    let req = request_for(&asked, &pki.issuing.cert, None).unwrap();
    let resp = ca_responder(&pki).respond(&req, &lookup_for(vec![]), now());
    assert!(matches!(
        check_response(&resp, &other, &pki.issuing.cert, None, now()),
        Err(CheckError::NoStatusForCertificate)
    ));
}

#[test]
fn tampered_response_is_rejected() {
    let pki = Pki::new();
    let (leaf, _) = pki.leaf("server", 11);
    let req = request_for(&leaf, &pki.issuing.cert, Some(NONCE)).unwrap();
    let mut resp = ca_responder(&pki).respond(&req, &lookup_for(vec![11]), now());
    // Flip the nonce's last byte inside the signed data.
    let pos = resp.windows(NONCE.len()).position(|w| w == NONCE).unwrap() + NONCE.len() - 1;
    resp[pos] ^= 1;
    assert!(matches!(
        check_response(&resp, &leaf, &pki.issuing.cert, None, now()),
        Err(CheckError::Untrusted(_))
    ));
}

#[test]
fn responder_setup_checks_the_key() {
    let pki = Pki::new();
    assert!(OcspResponder::new(&pki.issuing.cert, &pki.root.key, &[]).is_err());
    assert!(
        OcspResponder::new(
            &pki.issuing.cert,
            &pki.issuing.key,
            std::slice::from_ref(&pki.root.cert)
        )
        .is_err()
    );
    // CA-signed without the certificate in the response: clients that have the issuer still
    // verify it.
    let (leaf, _) = pki.leaf("server", 10);
    let responder = OcspResponder::new(&pki.issuing.cert, &pki.issuing.key, &[]).unwrap();
    let req = request_for(&leaf, &pki.issuing.cert, None).unwrap();
    let resp = responder.respond(&req, &lookup_for(vec![]), now());
    assert!(basic(&resp).certs.is_none());
    assert_eq!(
        check_response(&resp, &leaf, &pki.issuing.cert, None, now()).unwrap(),
        CertStatus::Good
    );
}
