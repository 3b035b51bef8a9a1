//! COSE_Sign1 test vectors (tests/vectors/, sources in its README.md) through `cose`: RFC 9052
//! Appendix C.2.1 and cose-wg/Examples `sign1-tests`, all made with the COSE WG's key `11`, and
//! an independent ECDSA implementation (OpenSSL) both ways.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use coset::{CborSerializable, CoseSign1, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable};
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey, EcPoint};
use openssl::ecdsa::EcdsaSig;
use openssl::nid::Nid;
use sha2::{Digest, Sha256};
use steward_pki::cose::{
    CoseError, SigningKey, VerifyingKey, cose_sign1_es256, cose_sign1_kid, cose_verify1_es256,
};

/// Reads `tests/vectors/<name>`: hex digits, whitespace ignored, `#` starts a comment.
fn vector(name: &str) -> Vec<u8> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests/vectors", name]
        .iter()
        .collect();
    hex(&std::fs::read_to_string(&path).unwrap())
}

fn hex(text: &str) -> Vec<u8> {
    let digits: String = text
        .lines()
        .map(|line| line.split('#').next().unwrap())
        .flat_map(str::chars)
        .filter(|c| !c.is_whitespace())
        .collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

/// Key `11` of RFC 9052 Appendix C.7.1 / cose-wg/Examples, base64url `x`, `y`, `d` in hex.
const KEY_11_X: &str = "bac5b11cad8f99f9c72b05cf4b9e26d244dc189f745228255a219a86d6a09eff";
const KEY_11_Y: &str = "20138bf82dc1b6d562be0fa54ab7804a3a64b6d72ccfed6b6fb6ed28bbfc117e";
const KEY_11_D: &str = "57c92077664146e876760c9520d054aa93c3afb04e306705db6090308507b4d3";

const CONTENT: &[u8] = b"This is the content.";

/// cose-wg's `intermediates.ToBeSign_hex` for protected `{1: -7}`, no external AAD, this
/// content: `["Signature1", h'A10126', h'', 'This is the content.']`.
const TO_BE_SIGNED: &str =
    "846a5369676e61747572653143a101264054546869732069732074686520636f6e74656e742e";

fn key_11() -> VerifyingKey {
    let point = hex(&format!("04{KEY_11_X}{KEY_11_Y}"));
    VerifyingKey::from_sec1_bytes(&point).unwrap()
}

fn key_11_private() -> SigningKey {
    let signing_key = SigningKey::from_slice(&hex(KEY_11_D)).unwrap();
    assert_eq!(signing_key.verifying_key(), &key_11(), "d matches x, y");
    signing_key
}

/// Key `11` as an OpenSSL key.
fn openssl_key_11() -> EcKey<openssl::pkey::Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let mut ctx = BigNumContext::new().unwrap();
    let point =
        EcPoint::from_bytes(&group, &hex(&format!("04{KEY_11_X}{KEY_11_Y}")), &mut ctx).unwrap();
    let d = BigNum::from_slice(&hex(KEY_11_D)).unwrap();
    let key = EcKey::from_private_components(&group, &d, &point).unwrap();
    key.check_key().unwrap();
    key
}

#[test]
fn rfc9052_c_2_1_verifies() {
    let message = vector("rfc9052-c2-1-sign1.hex");
    let (payload, kid) = cose_verify1_es256(&key_11(), &message).unwrap();
    assert_eq!(payload, CONTENT);
    assert_eq!(kid, b"11", "kid from the unprotected header");
    assert_eq!(cose_sign1_kid(&message).unwrap(), b"11");
    // The same headers and content as cose-wg's: the same To-Be-Signed bytes.
    let sign1 = CoseSign1::from_tagged_slice(&message).unwrap();
    assert_eq!(sign1.tbs_data(&[]), hex(TO_BE_SIGNED));

    // One bit flipped in the payload, then in the signature.
    for at in [20, message.len() - 1] {
        let mut flipped = message.clone();
        flipped[at] ^= 0x01;
        assert_eq!(
            cose_verify1_es256(&key_11(), &flipped),
            Err(CoseError::BadSignature),
            "byte {at}"
        );
    }
    // What is signed is the protected header as sent: the same header {1: -7} with -7
    // encoded in two bytes (38 06) no longer verifies.
    let mut sign1 = CoseSign1::from_tagged_slice(&message).unwrap();
    sign1.protected.original_data = Some(hex("a1013806"));
    assert_eq!(
        cose_verify1_es256(&key_11(), &sign1.to_tagged_vec().unwrap()),
        Err(CoseError::BadSignature)
    );
    // Untagged, the same signature still verifies.
    let untagged = CoseSign1::from_tagged_slice(&message)
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!(untagged, message[1..]);
    assert_eq!(
        cose_verify1_es256(&key_11(), &untagged).unwrap(),
        (CONTENT.to_vec(), b"11".to_vec())
    );
}

/// What a vector should give.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    /// Verifies with key `11`, payload [`CONTENT`], kid `11`.
    Verifies,
    /// Refused before the signature is checked; no kid either.
    Invalid,
    /// Well-formed, kid `11`, but key `11` did not sign these bytes.
    BadSignature,
}

fn outcome(message: &[u8]) -> Want {
    match cose_verify1_es256(&key_11(), message) {
        Ok((payload, kid)) => {
            assert_eq!((payload.as_slice(), kid.as_slice()), (CONTENT, &b"11"[..]));
            Want::Verifies
        }
        Err(CoseError::Invalid(why)) => {
            assert!(!why.is_empty());
            Want::Invalid
        }
        Err(CoseError::BadSignature) => Want::BadSignature,
        Err(other) => panic!("{other:?}"),
    }
}

/// What each cose-wg `sign1-tests` file gives.
#[test]
fn cose_wg_sign1_tests() {
    for (name, want) in [
        ("cose-wg-sign1-pass-01.hex", Want::Invalid),
        ("cose-wg-sign1-pass-02.hex", Want::BadSignature),
        ("cose-wg-sign1-pass-03.hex", Want::Verifies),
        ("cose-wg-sign1-fail-01.hex", Want::Invalid),
        ("cose-wg-sign1-fail-02.hex", Want::BadSignature),
        ("cose-wg-sign1-fail-03.hex", Want::Invalid),
        ("cose-wg-sign1-fail-04.hex", Want::Invalid),
        ("cose-wg-sign1-fail-06.hex", Want::BadSignature),
        ("cose-wg-sign1-fail-07.hex", Want::BadSignature),
    ] {
        let message = vector(name);
        assert_eq!(outcome(&message), want, "{name}");
        let kid = cose_sign1_kid(&message);
        if want == Want::Invalid {
            assert!(matches!(kid, Err(CoseError::Invalid(_))), "{name}: {kid:?}");
        } else {
            assert_eq!(kid.unwrap(), b"11", "{name}");
        }
    }
    // pass-02 verifies once its external AAD is used: only the AAD differs.
    let sign1 = CoseSign1::from_tagged_slice(&vector("cose-wg-sign1-pass-02.hex")).unwrap();
    let aad = hex("11aa22bb33cc44dd55006699");
    sign1
        .verify_signature(&aad, |signature, tbs| {
            use p256::ecdsa::signature::Verifier;
            let signature = p256::ecdsa::Signature::from_slice(signature).map_err(|_| ())?;
            key_11().verify(tbs, &signature).map_err(|_| ())
        })
        .unwrap();
}

/// Ours, signed with key `11` and no kid: the bytes around the signature and the
/// Sig_structure are cose-wg's, and OpenSSL verifies the signature.
#[test]
fn our_message_matches_cose_wg_layout() {
    let message = cose_sign1_es256(&key_11_private(), b"", CONTENT).unwrap();
    // 18([h'A10126', {}, 'This is the content.', h'<64 bytes>'])
    let head = hex("d28443a10126a054546869732069732074686520636f6e74656e742e5840");
    assert_eq!(message.len(), head.len() + 64);
    assert_eq!(message[..head.len()], head);
    let sign1 = CoseSign1::from_tagged_slice(&message).unwrap();
    assert_eq!(sign1.tbs_data(&[]), hex(TO_BE_SIGNED));
    assert_eq!(
        cose_verify1_es256(&key_11(), &message).unwrap(),
        (CONTENT.to_vec(), Vec::new())
    );

    let ec = openssl_key_11();
    let digest = Sha256::digest(hex(TO_BE_SIGNED));
    let r = BigNum::from_slice(&sign1.signature[..32]).unwrap();
    let s = BigNum::from_slice(&sign1.signature[32..]).unwrap();
    let sig = EcdsaSig::from_private_components(r, s).unwrap();
    assert!(sig.verify(&digest, &ec).unwrap());
}

/// OpenSSL signs the Sig_structure with key `11` (kid in the unprotected header, as cose-wg
/// does), we verify; the r || s encoding and the Sig_structure agree with an independent
/// implementation in both directions.
#[test]
fn openssl_signatures_verify() {
    let ec = openssl_key_11();
    for i in 0..8u8 {
        let payload = vec![i; usize::from(i) * 7];
        let unsigned = CoseSign1Builder::new()
            .protected(
                HeaderBuilder::new()
                    .algorithm(coset::iana::Algorithm::ES256)
                    .build(),
            )
            .unprotected(HeaderBuilder::new().key_id(b"11".to_vec()).build())
            .payload(payload.clone())
            .build();
        let digest = Sha256::digest(unsigned.tbs_data(&[]));
        let sig = EcdsaSig::sign(&digest, &ec).unwrap();
        let mut raw = sig.r().to_vec_padded(32).unwrap();
        raw.extend(sig.s().to_vec_padded(32).unwrap());
        let signed = CoseSign1 {
            signature: raw,
            ..unsigned
        }
        .to_tagged_vec()
        .unwrap();
        assert_eq!(
            cose_verify1_es256(&key_11(), &signed).unwrap(),
            (payload, b"11".to_vec())
        );
    }
}
