//! The recovery token's claims against the payload of the fixed token vector
//! (`server/pki/tests/vectors/recovery-token-1.hex`), strict decoding and the check order.
#![allow(clippy::unwrap_used)]

use steward_claims::recovery::{
    CLOCK_SKEW, ClaimError, Expectation, MAX_LIFETIME, MAX_NAME_LEN, RecoveryClaims,
};

/// The payload of `recovery-token-1.hex` (the bstr inside the COSE_Sign1).
const PAYLOAD_HEX: &str = "a601747265636f766572792e6578616d706c652e636f6d041a6a21df80061a6a18a5\
                           000750a0a1a2a3a4a5a6a7a8a9aaabacadaeaf3a00010000582048e949507ea76629\
                           affdb7a9bb5b5e75ae4f311c8bad96ea13a3d21991e0483f3a000100017373697465\
                           2d34322e6578616d706c652e6e6574";
/// `recovery-ctl-1-fingerprint.hex`.
const FINGERPRINT_HEX: &str = "48e949507ea76629affdb7a9bb5b5e75ae4f311c8bad96ea13a3d21991e0483f";

const IAT: u64 = 1_780_000_000;
const EXP: u64 = IAT + 7 * 24 * 60 * 60;
const INSTALLATION: &str = "site-42.example.net";

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

fn fingerprint() -> [u8; 32] {
    hex(FINGERPRINT_HEX).try_into().unwrap()
}

fn claims() -> RecoveryClaims {
    RecoveryClaims {
        issuer: "recovery.example.com".into(),
        ctl_fingerprint: fingerprint(),
        installation: INSTALLATION.into(),
        issued_at: IAT,
        expires_at: EXP,
        token_id: core::array::from_fn(|i| 0xa0 + i as u8),
    }
}

fn expect(now: u64) -> Expectation<'static> {
    Expectation {
        fingerprint: fingerprint(),
        installation: INSTALLATION,
        now,
    }
}

#[test]
fn vector_payload_round_trips() {
    let payload = hex(PAYLOAD_HEX);
    assert_eq!(claims().encode().unwrap(), payload);
    assert_eq!(RecoveryClaims::decode(&payload), Ok(claims()));
}

#[test]
fn non_canonical_or_foreign_payloads_refused() {
    let good = hex(PAYLOAD_HEX);
    let malformed = |payload: &[u8]| {
        let result = RecoveryClaims::decode(payload);
        assert!(
            matches!(result, Err(ClaimError::Malformed(_))),
            "{payload:02x?}: {result:?}"
        );
    };
    let mut unknown = good.clone();
    unknown[0] = 0xa7;
    unknown.extend_from_slice(&[0x02, 0x61, b'x']);
    malformed(&unknown);
    let mut duplicate = good.clone();
    duplicate[0] = 0xa7;
    duplicate.extend_from_slice(&[0x01, 0x61, b'x']);
    malformed(&duplicate);
    let iss_len = 2 + 1 + "recovery.example.com".len();
    let mut reordered = vec![0xa6];
    reordered.extend_from_slice(&good[iss_len..]);
    reordered.extend_from_slice(&good[1..iss_len]);
    malformed(&reordered);
    // `exp` (0x1a + 4 bytes) as a non-shortest 8-byte integer.
    let exp_at = 1 + iss_len - 1;
    assert_eq!(&good[exp_at..exp_at + 2], [0x04, 0x1a]);
    let mut long_head = good[..exp_at + 1].to_vec();
    long_head.extend_from_slice(&[0x1b, 0, 0, 0, 0]);
    long_head.extend_from_slice(&good[exp_at + 2..]);
    malformed(&long_head);
    let mut trailing = good.clone();
    trailing.push(0);
    malformed(&trailing);
    malformed(&[]);
    malformed(&[0x80]);
    malformed(&[0xbf, 0xff]);
    for len in 0..good.len() {
        malformed(&good[..len]);
    }
}

#[test]
fn form_rules_on_encode() {
    let mut empty = claims();
    empty.installation = String::new();
    assert!(matches!(empty.encode(), Err(ClaimError::Malformed(_))));
    let mut long = claims();
    long.issuer = "x".repeat(MAX_NAME_LEN + 1);
    assert!(matches!(long.encode(), Err(ClaimError::Malformed(_))));
    long.issuer = "x".repeat(MAX_NAME_LEN);
    assert!(long.encode().is_ok());
    let mut backwards = claims();
    backwards.expires_at = IAT;
    assert!(matches!(backwards.encode(), Err(ClaimError::Malformed(_))));
}

#[test]
fn checks_in_order() {
    let claims = claims();
    assert_eq!(claims.check(&expect(IAT + 1)), Ok(()));
    assert_eq!(claims.check(&expect(EXP - 1)), Ok(()));
    assert_eq!(claims.check(&expect(EXP)), Err(ClaimError::Expired));
    assert_eq!(claims.check(&expect(u64::MAX)), Err(ClaimError::Expired));
    assert_eq!(claims.check(&expect(IAT - CLOCK_SKEW)), Ok(()));
    assert_eq!(
        claims.check(&expect(IAT - CLOCK_SKEW - 1)),
        Err(ClaimError::NotYetValid)
    );

    // Installation before time, fingerprint before installation, lifetime before everything.
    let mut other = expect(EXP + 1);
    other.installation = "site-43.example.net";
    assert_eq!(claims.check(&other), Err(ClaimError::WrongInstallation));
    other.fingerprint[0] ^= 1;
    assert_eq!(claims.check(&other), Err(ClaimError::WrongFingerprint));
    let mut long = claims.clone();
    long.expires_at = IAT + MAX_LIFETIME + 1;
    assert_eq!(long.check(&other), Err(ClaimError::Lifetime));
    assert_eq!(long.check_lifetime(), Err(ClaimError::Lifetime));
    long.expires_at = IAT + MAX_LIFETIME;
    assert_eq!(long.check_lifetime(), Ok(()));

    assert_eq!(claims.check_time(IAT), Ok(()));
    assert_eq!(claims.check_time(EXP), Err(ClaimError::Expired));
}
