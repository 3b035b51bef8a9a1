//! `cose`: what we sign, what we accept and refuse, the size limit, and PEM key loading, with
//! keys from OpenSSL (an implementation independent of p256). The RFC and cose-wg vectors are
//! in cose_vectors.rs.
#![allow(clippy::unwrap_used)]

use coset::iana;
use coset::{
    Algorithm, CborSerializable, CoseSign1, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable,
};
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use p256::ecdsa::Signature;
use p256::ecdsa::signature::Signer;
use proptest::prelude::*;
use steward_pki::cose::{
    CoseError, ES256_SIGNATURE_LEN, MAX_MESSAGE_LEN, SigningKey, cose_sign1_es256, cose_sign1_kid,
    cose_verify1_es256, load_signing_key, load_verifying_key,
};

struct TestKey {
    /// SEC1 `EC PRIVATE KEY`.
    sec1: String,
    /// PKCS#8 `PRIVATE KEY`.
    pkcs8: String,
    /// SPKI `PUBLIC KEY`.
    public: String,
}

/// A fresh P-256 key from OpenSSL.
fn generate() -> TestKey {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let ec = EcKey::generate(&group).unwrap();
    let sec1 = String::from_utf8(ec.private_key_to_pem().unwrap()).unwrap();
    let public = String::from_utf8(ec.public_key_to_pem().unwrap()).unwrap();
    let pkey = PKey::from_ec_key(ec).unwrap();
    let pkcs8 = String::from_utf8(pkey.private_key_to_pem_pkcs8().unwrap()).unwrap();
    TestKey {
        sec1,
        pkcs8,
        public,
    }
}

fn is_invalid<T: std::fmt::Debug>(result: Result<T, CoseError>) -> bool {
    matches!(result, Err(CoseError::Invalid(_)))
}

/// A message with these headers and payload, signed with `key` over the Sig_structure as
/// given (coset's, no checks of ours).
fn signed_by(
    key: &SigningKey,
    protected: HeaderBuilder,
    unprotected: HeaderBuilder,
    payload: &[u8],
) -> Vec<u8> {
    CoseSign1Builder::new()
        .protected(protected.build())
        .unprotected(unprotected.build())
        .payload(payload.to_vec())
        .create_signature(&[], |tbs| {
            let s: Signature = key.sign(tbs);
            s.to_bytes().to_vec()
        })
        .build()
        .to_tagged_vec()
        .unwrap()
}

fn es256() -> HeaderBuilder {
    HeaderBuilder::new().algorithm(iana::Algorithm::ES256)
}

#[test]
fn sign_then_verify_round_trips_with_every_key_form() {
    let k = generate();
    let by_sec1 = load_signing_key(&k.sec1).unwrap();
    let by_pkcs8 = load_signing_key(&k.pkcs8).unwrap();
    assert_eq!(by_sec1.verifying_key(), by_pkcs8.verifying_key());
    let message = cose_sign1_es256(&by_sec1, b"device-ca", b"hello").unwrap();
    assert_eq!(message[0], 0xd2, "tagged COSE_Sign1");
    for pem in [&k.sec1, &k.pkcs8, &k.public] {
        let verifying_key = load_verifying_key(pem).unwrap();
        assert_eq!(
            cose_verify1_es256(&verifying_key, &message).unwrap(),
            (b"hello".to_vec(), b"device-ca".to_vec())
        );
    }
    let empty = cose_sign1_es256(&by_pkcs8, b"k", b"").unwrap();
    let verifying_key = load_verifying_key(&k.public).unwrap();
    assert_eq!(cose_verify1_es256(&verifying_key, &empty).unwrap().0, b"");
}

#[test]
fn signed_message_has_alg_and_kid_protected() {
    let key = load_signing_key(&generate().sec1).unwrap();
    let message = cose_sign1_es256(&key, b"k-1", b"x").unwrap();
    let sign1 = CoseSign1::from_tagged_slice(&message).unwrap();
    assert_eq!(
        sign1.protected.header.alg,
        Some(Algorithm::Assigned(iana::Algorithm::ES256))
    );
    assert_eq!(sign1.protected.header.key_id, b"k-1");
    assert!(sign1.unprotected.is_empty());
    assert_eq!(sign1.signature.len(), ES256_SIGNATURE_LEN);
    assert_eq!(cose_sign1_kid(&message).unwrap(), b"k-1");

    // No kid: protected is exactly {1: -7}.
    let message = cose_sign1_es256(&key, b"", b"x").unwrap();
    let sign1 = CoseSign1::from_tagged_slice(&message).unwrap();
    assert_eq!(
        sign1.protected.original_data.as_deref(),
        Some(&[0xa1, 0x01, 0x26][..])
    );
    assert_eq!(cose_sign1_kid(&message).unwrap(), b"");
}

#[test]
fn kid_is_protected_first_then_unprotected() {
    let key = load_signing_key(&generate().sec1).unwrap();
    let both = signed_by(
        &key,
        es256().key_id(b"inner".to_vec()),
        HeaderBuilder::new().key_id(b"outer".to_vec()),
        b"x",
    );
    assert_eq!(cose_sign1_kid(&both).unwrap(), b"inner");
    assert_eq!(
        cose_verify1_es256(key.verifying_key(), &both).unwrap().1,
        b"inner"
    );
    let outer = signed_by(
        &key,
        es256(),
        HeaderBuilder::new().key_id(b"outer".to_vec()),
        b"x",
    );
    assert_eq!(cose_sign1_kid(&outer).unwrap(), b"outer");
    // ES256 repeated in the unprotected header is allowed; another algorithm is not.
    let repeated = signed_by(
        &key,
        es256(),
        HeaderBuilder::new().algorithm(iana::Algorithm::ES256),
        b"x",
    );
    assert!(cose_verify1_es256(key.verifying_key(), &repeated).is_ok());
    let other = signed_by(
        &key,
        es256(),
        HeaderBuilder::new().algorithm(iana::Algorithm::EdDSA),
        b"x",
    );
    assert!(is_invalid(cose_verify1_es256(key.verifying_key(), &other)));
    assert!(is_invalid(cose_sign1_kid(&other)));
}

#[test]
fn tampering_and_other_keys_are_bad_signatures() {
    let key = load_signing_key(&generate().sec1).unwrap();
    let message = cose_sign1_es256(&key, b"k", b"pay 10").unwrap();
    let mut sign1 = CoseSign1::from_tagged_slice(&message).unwrap();
    sign1.payload = Some(b"pay 99".to_vec());
    let tampered = sign1.to_tagged_vec().unwrap();
    assert_eq!(
        cose_verify1_es256(key.verifying_key(), &tampered),
        Err(CoseError::BadSignature)
    );
    let mut flipped = message.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert_eq!(
        cose_verify1_es256(key.verifying_key(), &flipped),
        Err(CoseError::BadSignature)
    );
    let other = load_verifying_key(&generate().public).unwrap();
    assert_eq!(
        cose_verify1_es256(&other, &message),
        Err(CoseError::BadSignature)
    );
    // r = s = 0 (and r, s >= n) are no signature at all.
    let mut sign1 = CoseSign1::from_tagged_slice(&message).unwrap();
    for fill in [0x00, 0xff] {
        sign1.signature = vec![fill; ES256_SIGNATURE_LEN];
        assert_eq!(
            cose_verify1_es256(key.verifying_key(), &sign1.clone().to_tagged_vec().unwrap()),
            Err(CoseError::BadSignature)
        );
    }
}

#[test]
fn other_algorithms_are_invalid() {
    let key = load_signing_key(&generate().sec1).unwrap();
    let es384 = CoseSign1Builder::new()
        .protected(
            HeaderBuilder::new()
                .algorithm(iana::Algorithm::ES384)
                .key_id(b"k".to_vec())
                .build(),
        )
        .payload(b"x".to_vec())
        .signature(vec![1; 96])
        .build()
        .to_tagged_vec()
        .unwrap();
    assert!(is_invalid(cose_verify1_es256(key.verifying_key(), &es384)));
    assert!(is_invalid(cose_sign1_kid(&es384)));

    let no_alg = CoseSign1Builder::new()
        .payload(b"x".to_vec())
        .signature(vec![1; 64])
        .build()
        .to_tagged_vec()
        .unwrap();
    assert!(is_invalid(cose_verify1_es256(key.verifying_key(), &no_alg)));
}

#[test]
fn crit_is_refused() {
    let key = load_signing_key(&generate().sec1).unwrap();
    let message = signed_by(
        &key,
        es256().add_critical(iana::HeaderParameter::Alg),
        HeaderBuilder::new(),
        b"x",
    );
    assert!(is_invalid(cose_verify1_es256(
        key.verifying_key(),
        &message
    )));
    assert!(is_invalid(cose_sign1_kid(&message)));
}

#[test]
fn detached_payload_is_invalid() {
    let key = load_signing_key(&generate().sec1).unwrap();
    let detached = CoseSign1Builder::new()
        .protected(es256().build())
        .create_detached_signature(b"elsewhere", &[], |tbs| {
            let s: Signature = key.sign(tbs);
            s.to_bytes().to_vec()
        })
        .build()
        .to_tagged_vec()
        .unwrap();
    assert!(is_invalid(cose_verify1_es256(
        key.verifying_key(),
        &detached
    )));
    assert!(is_invalid(cose_sign1_kid(&detached)));
}

#[test]
fn untagged_is_accepted() {
    let key = load_signing_key(&generate().sec1).unwrap();
    let message = cose_sign1_es256(&key, b"k", b"untagged").unwrap();
    let untagged = CoseSign1::from_tagged_slice(&message)
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!(untagged[0], 0x84, "a bare 4-array");
    assert_eq!(
        cose_verify1_es256(key.verifying_key(), &untagged).unwrap(),
        (b"untagged".to_vec(), b"k".to_vec())
    );
}

#[test]
fn garbage_is_invalid() {
    let key = load_signing_key(&generate().sec1).unwrap();
    for garbage in [
        &b""[..],
        b"\xd2",
        b"hello",
        b"\xd2\x84\x40\xa0\x40",                      // 3 of 4 items
        b"\xd8\x62\x84\x43\xa1\x01\x26\xa0\x41x\x40", // tag 98 (COSE_Sign), not 18
        b"\xd8\x12\x84\x43\xa1\x01\x26\xa0\x41x\x40", // tag 18 in two bytes
        &[0xff; 100],
        &[0x81; 10_000], // deep nesting
    ] {
        assert!(
            is_invalid(cose_verify1_es256(key.verifying_key(), garbage)),
            "{:02x?}",
            &garbage[..garbage.len().min(16)]
        );
        assert!(is_invalid(cose_sign1_kid(garbage)));
    }
    // Trailing bytes after a valid message, tagged and untagged.
    let mut message = cose_sign1_es256(&key, b"k", b"x").unwrap();
    let mut untagged = message[1..].to_vec();
    message.push(0);
    untagged.push(0);
    assert!(is_invalid(cose_verify1_es256(
        key.verifying_key(),
        &message
    )));
    assert!(is_invalid(cose_verify1_es256(
        key.verifying_key(),
        &untagged
    )));
    assert!(is_invalid(cose_sign1_kid(&message)));
    // A signature of the wrong length.
    let mut sign1 = CoseSign1::from_tagged_slice(&message[..message.len() - 1]).unwrap();
    for len in [0, 63, 65, 96] {
        sign1.signature.resize(len, 1);
        assert!(is_invalid(cose_verify1_es256(
            key.verifying_key(),
            &sign1.clone().to_tagged_vec().unwrap()
        )));
    }
}

/// A message of exactly [`MAX_MESSAGE_LEN`] bytes is signed and read; one more byte is not.
#[test]
fn size_limit_is_exact() {
    let key = load_signing_key(&generate().sec1).unwrap();
    // d2 84, 43 a10126, a0, 59 <len16>, payload, 58 40 <64 bytes>
    let overhead = 2 + 4 + 1 + 3 + 2 + ES256_SIGNATURE_LEN;
    let fits = vec![7; MAX_MESSAGE_LEN - overhead];
    let message = cose_sign1_es256(&key, b"", &fits).unwrap();
    assert_eq!(message.len(), MAX_MESSAGE_LEN);
    assert_eq!(
        cose_verify1_es256(key.verifying_key(), &message).unwrap().0,
        fits
    );
    assert!(is_invalid(cose_sign1_es256(
        &key,
        b"",
        &vec![7; fits.len() + 1]
    )));
    assert!(is_invalid(cose_sign1_es256(
        &key,
        b"",
        &vec![7; MAX_MESSAGE_LEN + 1]
    )));

    // Over the limit is refused before decoding, even if it would verify.
    let mut sign1 = CoseSign1::from_tagged_slice(&message).unwrap();
    sign1.payload = Some(vec![7; fits.len() + 1]);
    let unsigned = sign1.to_tagged_vec().unwrap();
    assert_eq!(unsigned.len(), MAX_MESSAGE_LEN + 1);
    assert!(is_invalid(cose_verify1_es256(
        key.verifying_key(),
        &unsigned
    )));
    assert!(is_invalid(cose_sign1_kid(&unsigned)));
}

#[test]
fn key_loading() {
    let k = generate();
    // A public key cannot sign; junk is no key.
    assert!(matches!(
        load_signing_key(&k.public),
        Err(CoseError::Key(_))
    ));
    for junk in [
        "",
        "hello",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "-----BEGIN ",
        "-----BEGIN -----END -----",
    ] {
        assert!(
            matches!(load_signing_key(junk), Err(CoseError::Key(_))),
            "{junk:?}"
        );
        assert!(
            matches!(load_verifying_key(junk), Err(CoseError::Key(_))),
            "{junk:?}"
        );
    }
    // Other curves.
    let group = EcGroup::from_curve_name(Nid::SECP384R1).unwrap();
    let ec = EcKey::generate(&group).unwrap();
    let sec1 = String::from_utf8(ec.private_key_to_pem().unwrap()).unwrap();
    let public = String::from_utf8(ec.public_key_to_pem().unwrap()).unwrap();
    assert!(matches!(load_signing_key(&sec1), Err(CoseError::Key(_))));
    assert!(matches!(
        load_verifying_key(&public),
        Err(CoseError::Key(_))
    ));
}

#[test]
fn ec_parameters_before_the_key_are_skipped() {
    let k = generate();
    let params = "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n";
    let pem = format!("{params}{}", k.sec1);
    let signing_key = load_signing_key(&pem).unwrap();
    assert_eq!(
        signing_key.verifying_key(),
        &load_verifying_key(&k.public).unwrap()
    );
    assert_eq!(
        load_verifying_key(&pem).unwrap(),
        load_verifying_key(&k.public).unwrap()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any payload and kid come back as signed, and the kid is readable before verifying.
    #[test]
    fn any_payload_and_kid_round_trip(
        payload in proptest::collection::vec(any::<u8>(), 0..512),
        kid in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let key = SigningKey::from_slice(&[0x42; 32]).unwrap();
        let message = cose_sign1_es256(&key, &kid, &payload).unwrap();
        prop_assert_eq!(cose_sign1_kid(&message).unwrap(), kid.clone());
        prop_assert_eq!(
            cose_verify1_es256(key.verifying_key(), &message).unwrap(),
            (payload, kid)
        );
    }
}
