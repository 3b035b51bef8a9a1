//! COSE_Sign1 messages as a device or the plugin host receives them (signed tokens, manifests):
//! any bytes give a kid or a `CoseError` from `cose_sign1_kid`, and a payload or a
//! `CoseError` from `cose_verify1_es256` with a fixed key, never a panic; the two agree.
//!
//! The key is the COSE WG's key `11` (RFC 9052 C.7.1, fixed scalar `d`), the one that signed
//! the vectors in tests/vectors/ (`scripts/fuzz` seeds the corpus with them), so mutations of a
//! valid message reach the verifying path and the success path.
#![no_main]

use std::sync::OnceLock;

use steward_pki::cose::{
    CoseError, MAX_MESSAGE_LEN, SigningKey, cose_sign1_es256, cose_sign1_kid, cose_verify1_es256,
};

/// `d` of key `11` (base64url `V8kgd2ZB...` in cose-wg/Examples).
const KEY_11_D: [u8; 32] = [
    0x57, 0xc9, 0x20, 0x77, 0x66, 0x41, 0x46, 0xe8, 0x76, 0x76, 0x0c, 0x95, 0x20, 0xd0, 0x54, 0xaa,
    0x93, 0xc3, 0xaf, 0xb0, 0x4e, 0x30, 0x67, 0x05, 0xdb, 0x60, 0x90, 0x30, 0x85, 0x07, 0xb4, 0xd3,
];

fn key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::from_slice(&KEY_11_D).expect("d is a valid P-256 scalar"))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let signing_key = key();
    let kid = cose_sign1_kid(data);
    let verified = cose_verify1_es256(signing_key.verifying_key(), data);
    if data.len() > MAX_MESSAGE_LEN {
        assert!(matches!(kid, Err(CoseError::Invalid(_))));
        assert!(matches!(verified, Err(CoseError::Invalid(_))));
        return;
    }
    match (&kid, &verified) {
        // Both refuse a message that does not decode or has the wrong headers.
        (Err(CoseError::Invalid(_)), Err(CoseError::Invalid(_))) => {}
        // Only verify looks at the signature's length and value.
        (Ok(_), Err(CoseError::Invalid(_) | CoseError::BadSignature)) => {}
        (Ok(kid), Ok((payload, verified_kid))) => {
            assert_eq!(kid, verified_kid);
            // What verified signs again (when it fits: ours may be a few bytes longer, with the
            // tag and the kid moved to the protected header), and verifies to the same.
            if data.len() + 16 <= MAX_MESSAGE_LEN {
                let ours = cose_sign1_es256(signing_key, kid, payload)
                    .expect("a verified payload and kid sign again");
                assert_eq!(
                    cose_verify1_es256(signing_key.verifying_key(), &ours)
                        .expect("our own message verifies"),
                    (payload.clone(), kid.clone())
                );
                assert_eq!(&cose_sign1_kid(&ours).expect("our kid reads"), kid);
            }
        }
        other => panic!("kid and verify disagree: {other:?}"),
    }
});
