//! Trust-chain recovery (issue 8, seed 000): the recovery token and the CTL, against the fixed
//! vectors in tests/vectors/recovery-*.hex, and every way a device refuses them.
//!
//! The keys are fixed P-256 scalars, so every signature is fixed (RFC 6979):
//!
//! - the vendor recovery key: `d` = the 32 bytes `0x01, 0x02, ..., 0x20`;
//! - CTL anchors A, B, C (`recovery-ctl-anchor-{a,b,c}.hex`, self-signed certificates made once
//!   and committed): `d` = `0x21..=0x40`, `0x41..=0x60`, `0x61..=0x80`.
//!
//! The vectors:
//!
//! - `recovery-ctl-1.hex`: the canonical bytes of CTL version 1 = {A, B};
//!   `recovery-ctl-1-fingerprint.hex`: its SHA-256.
//! - `recovery-ctl-update-1.hex`: the update to CTL version 2 = {B, C}, signed by A.
//! - `recovery-token-1.hex`: the recovery token of [`claims`], scoped to CTL 1, kid `vendor-1`.
//!
//! Set `STEWARD_WRITE_RECOVERY_VECTORS=1` to rewrite them (only the day the format changes).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use sha2::{Digest, Sha256};
use steward_pki::cose::{SigningKey, cose_sign1_es256};
use steward_pki::ctl::{
    Ctl, CtlError, MAX_ANCHOR_LEN, MAX_ANCHORS, anchor_key_id, sign_ctl_update,
};
use steward_pki::recovery::{
    CLAIM_CTI, CLAIM_CTL_FINGERPRINT, CLAIM_EXP, CLAIM_IAT, CLAIM_INSTALLATION, CLAIM_ISS,
    CLOCK_SKEW, ClaimError, Expectation, MAX_LIFETIME, MAX_TOKEN_LEN, RecoveryClaims,
    RecoveryError, sign_recovery_token, verify_recovery_token,
};

fn vector_path(name: &str) -> PathBuf {
    [env!("CARGO_MANIFEST_DIR"), "tests/vectors", name]
        .iter()
        .collect()
}

/// Reads `tests/vectors/<name>`: hex digits, whitespace ignored, `#` starts a comment.
fn vector(name: &str) -> Vec<u8> {
    hex(&std::fs::read_to_string(vector_path(name)).unwrap())
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

/// Compares `bytes` with the vector `name`, or writes it (with `header` as comments) when
/// `STEWARD_WRITE_RECOVERY_VECTORS` is set.
fn check_vector(name: &str, header: &str, bytes: &[u8]) {
    if std::env::var_os("STEWARD_WRITE_RECOVERY_VECTORS").is_some() {
        let mut text: String = header.lines().map(|line| format!("# {line}\n")).collect();
        let digits: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        for chunk in digits.as_bytes().chunks(64) {
            text.push_str(std::str::from_utf8(chunk).unwrap());
            text.push('\n');
        }
        std::fs::write(vector_path(name), text).unwrap();
    }
    assert_eq!(bytes, vector(name), "{name}");
}

fn key_from(first: u8) -> SigningKey {
    let d: Vec<u8> = (first..first + 32).collect();
    SigningKey::from_slice(&d).unwrap()
}

fn vendor_key() -> SigningKey {
    key_from(0x01)
}

fn anchor(tag: char) -> (Vec<u8>, SigningKey) {
    let first = match tag {
        'a' => 0x21,
        'b' => 0x41,
        _ => 0x61,
    };
    (
        vector(&format!("recovery-ctl-anchor-{tag}.hex")),
        key_from(first),
    )
}

fn ctl_1() -> Ctl {
    Ctl::new(1, vec![anchor('b').0, anchor('a').0]).unwrap()
}

fn ctl_2() -> Ctl {
    Ctl::new(2, vec![anchor('b').0, anchor('c').0]).unwrap()
}

const KID: &[u8] = b"vendor-1";
const IAT: u64 = 1_780_000_000;
const EXP: u64 = IAT + 7 * 24 * 60 * 60;
const INSTALLATION: &str = "site-42.example.net";

fn claims() -> RecoveryClaims {
    RecoveryClaims {
        issuer: "recovery.example.com".into(),
        ctl_fingerprint: ctl_1().fingerprint(),
        installation: INSTALLATION.into(),
        issued_at: IAT,
        expires_at: EXP,
        token_id: core::array::from_fn(|i| 0xa0 + i as u8),
    }
}

fn expect(now: u64) -> Expectation<'static> {
    Expectation {
        fingerprint: ctl_1().fingerprint(),
        installation: INSTALLATION,
        now,
    }
}

fn verify(token: &[u8], now: u64) -> Result<RecoveryClaims, RecoveryError> {
    verify_recovery_token(vendor_key().verifying_key(), token, &expect(now))
}

/// Signs an arbitrary payload with the vendor key, as a token.
fn sign_payload(payload: &[u8]) -> Vec<u8> {
    cose_sign1_es256(&vendor_key(), KID, payload).unwrap()
}

// ---- CTL ----

#[test]
fn anchors_match_their_scalars() {
    for tag in ['a', 'b', 'c'] {
        let (cert, key) = anchor(tag);
        let spki = openssl::x509::X509::from_der(&cert)
            .unwrap()
            .public_key()
            .unwrap()
            .public_key_to_der()
            .unwrap();
        let from_cert =
            <p256::ecdsa::VerifyingKey as p256::pkcs8::DecodePublicKey>::from_public_key_der(&spki)
                .unwrap();
        assert_eq!(&from_cert, key.verifying_key(), "anchor {tag}");
        assert_eq!(
            anchor_key_id(&cert).unwrap(),
            <[u8; 32]>::from(Sha256::digest(&spki))
        );
    }
}

#[test]
fn ctl_vector_and_fingerprint() {
    let ctl = ctl_1();
    check_vector(
        "recovery-ctl-1.hex",
        "Steward CTL version 1 = {anchor A, anchor B}, canonical CBOR:\n\
         [1, [anchors as bstr, sorted bytewise by DER]]. See steward_pki::ctl.",
        &ctl.canonical_bytes(),
    );
    check_vector(
        "recovery-ctl-1-fingerprint.hex",
        "SHA-256 of recovery-ctl-1.hex: the CTL fingerprint of CTL version 1.",
        &ctl.fingerprint(),
    );
    let bytes = vector("recovery-ctl-1.hex");
    assert_eq!(&bytes[..3], &[0x82, 0x01, 0x82]);
    assert_eq!(Ctl::from_canonical(&bytes).unwrap(), ctl);
    assert_eq!(
        ctl.fingerprint().as_slice(),
        Sha256::digest(&bytes).as_slice()
    );
    assert_eq!(ctl.version(), 1);
    assert!(ctl.anchors().windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn ctl_new_sorts_and_deduplicates() {
    let (a, _) = anchor('a');
    let (b, _) = anchor('b');
    let ctl = Ctl::new(1, vec![b.clone(), a.clone(), b.clone(), a.clone()]).unwrap();
    assert_eq!(ctl, ctl_1());
    assert!(matches!(Ctl::new(1, vec![]), Err(CtlError::Limit(_))));
    assert!(matches!(Ctl::new(1, vec![vec![]]), Err(CtlError::Limit(_))));
    assert!(matches!(
        Ctl::new(1, vec![vec![0; MAX_ANCHOR_LEN + 1]]),
        Err(CtlError::Limit(_))
    ));
    let many: Vec<Vec<u8>> = (0..=MAX_ANCHORS).map(|i| vec![i as u8; 4]).collect();
    assert!(matches!(Ctl::new(1, many), Err(CtlError::Limit(_))));
}

#[test]
fn non_canonical_ctl_refused() {
    let (a, _) = anchor('a');
    let (b, _) = anchor('b');
    let (low, high) = if a < b { (a, b) } else { (b, a) };
    let encode = |version: &[u8], anchors: &[&[u8]]| {
        let mut out = vec![0x82];
        out.extend_from_slice(version);
        out.push(0x80 | anchors.len() as u8);
        for anchor in anchors {
            out.extend_from_slice(&[0x59, (anchor.len() >> 8) as u8, anchor.len() as u8]);
            out.extend_from_slice(anchor);
        }
        out
    };
    let good = encode(&[0x01], &[&low, &high]);
    assert_eq!(good, vector("recovery-ctl-1.hex"));
    assert!(Ctl::from_canonical(&good).is_ok());

    let malformed =
        |bytes: &[u8]| matches!(Ctl::from_canonical(bytes), Err(CtlError::Malformed(_)));
    assert!(malformed(&encode(&[0x01], &[&high, &low])), "unsorted");
    assert!(malformed(&encode(&[0x01], &[&low, &low])), "duplicate");
    assert!(
        malformed(&encode(&[0x18, 0x01], &[&low, &high])),
        "non-shortest version"
    );
    assert!(
        malformed(&encode(&[0x20], &[&low, &high])),
        "negative version"
    );
    let mut trailing = good.clone();
    trailing.push(0x00);
    assert!(malformed(&trailing), "trailing byte");
    assert!(malformed(&good[..good.len() - 1]), "truncated");
    let mut indefinite = good.clone();
    indefinite[0] = 0x9f;
    indefinite.push(0xff);
    assert!(malformed(&indefinite), "indefinite outer array");
    // A short anchor with a non-shortest length head.
    let mut long_head = vec![0x82, 0x01, 0x81, 0x58, 0x03];
    long_head.extend_from_slice(b"abc");
    assert!(malformed(&long_head), "non-shortest bstr head");
    assert!(Ctl::from_canonical(&[0x82, 0x01, 0x81, 0x43, b'a', b'b', b'c']).is_ok());

    assert!(matches!(
        Ctl::from_canonical(&[0x82, 0x01, 0x80]),
        Err(CtlError::Limit(_))
    ));
    let mut seventeen = vec![0x82, 0x01, 0x91];
    for i in 0..17u8 {
        seventeen.extend_from_slice(&[0x41, i]);
    }
    assert!(matches!(
        Ctl::from_canonical(&seventeen),
        Err(CtlError::Limit(_))
    ));
    let mut big = vec![0x82, 0x01, 0x81, 0x59, 0x20, 0x01];
    big.extend(std::iter::repeat_n(0, MAX_ANCHOR_LEN + 1));
    assert!(matches!(Ctl::from_canonical(&big), Err(CtlError::Limit(_))));
}

#[test]
fn good_ctl_update_accepted() {
    let (cert_a, key_a) = anchor('a');
    let update = sign_ctl_update(&key_a, &cert_a, &ctl_2()).unwrap();
    check_vector(
        "recovery-ctl-update-1.hex",
        "Steward CTL update: tagged COSE_Sign1 (ES256), kid = SHA-256 of anchor A's SPKI,\n\
         payload = canonical CTL version 2 = {anchor B, anchor C}; signed by anchor A\n\
         (d = 0x21..0x40), RFC 6979 deterministic. Accepted by CTL version 1 (recovery-ctl-1.hex).",
        &update,
    );
    assert_eq!(ctl_1().accept_update(&update), Ok(ctl_2()));
}

#[test]
fn ctl_update_by_non_anchor_refused() {
    let (cert_c, key_c) = anchor('c');
    // C is not in CTL 1.
    let update = sign_ctl_update(&key_c, &cert_c, &ctl_2()).unwrap();
    assert_eq!(ctl_1().accept_update(&update), Err(CtlError::UnknownSigner));
    // C's key claiming to be A (kid of A).
    let (cert_a, _) = anchor('a');
    let forged = cose_sign1_es256(
        &key_c,
        &anchor_key_id(&cert_a).unwrap(),
        &ctl_2().canonical_bytes(),
    )
    .unwrap();
    assert_eq!(ctl_1().accept_update(&forged), Err(CtlError::Signature));
    // No kid.
    let no_kid = cose_sign1_es256(&key_c, &[], &ctl_2().canonical_bytes()).unwrap();
    assert_eq!(ctl_1().accept_update(&no_kid), Err(CtlError::UnknownSigner));
    // The vendor recovery key cannot sign CTL updates either.
    let vendor = cose_sign1_es256(&vendor_key(), KID, &ctl_2().canonical_bytes()).unwrap();
    assert_eq!(ctl_1().accept_update(&vendor), Err(CtlError::UnknownSigner));
    // A certificate that is not the signing key's.
    assert!(matches!(
        sign_ctl_update(&key_c, &cert_a, &ctl_2()),
        Err(CtlError::Anchor(_))
    ));
}

#[test]
fn ctl_update_must_raise_version() {
    let (cert_a, key_a) = anchor('a');
    let current = Ctl::new(5, ctl_1().anchors().to_vec()).unwrap();
    for version in [0, 4, 5] {
        let new = Ctl::new(version, ctl_2().anchors().to_vec()).unwrap();
        let update = sign_ctl_update(&key_a, &cert_a, &new).unwrap();
        assert_eq!(
            current.accept_update(&update),
            Err(CtlError::NotNewer {
                current: 5,
                offered: version
            })
        );
    }
    let new = Ctl::new(6, ctl_2().anchors().to_vec()).unwrap();
    let update = sign_ctl_update(&key_a, &cert_a, &new).unwrap();
    assert_eq!(current.accept_update(&update), Ok(new));
}

#[test]
fn ctl_update_with_bad_payload_refused() {
    let (cert_a, key_a) = anchor('a');
    let kid = anchor_key_id(&cert_a).unwrap();
    let mut unsorted = ctl_2().canonical_bytes();
    unsorted.push(0x00);
    let update = cose_sign1_es256(&key_a, &kid, &unsorted).unwrap();
    assert!(matches!(
        ctl_1().accept_update(&update),
        Err(CtlError::Malformed(_))
    ));
    assert!(matches!(
        ctl_1().accept_update(b"not cose"),
        Err(CtlError::Malformed(_))
    ));
    let good = vector("recovery-ctl-update-1.hex");
    for i in 0..good.len() {
        let mut flipped = good.clone();
        flipped[i] ^= 0x01;
        assert!(ctl_1().accept_update(&flipped).is_err(), "byte {i} flipped");
    }
}

// ---- Recovery token ----

#[test]
fn token_vector() {
    let token = sign_recovery_token(&vendor_key(), KID, &claims()).unwrap();
    check_vector(
        "recovery-token-1.hex",
        "Steward recovery token: tagged COSE_Sign1 (ES256), protected {1: -7, 4: 'vendor-1'},\n\
         payload = claims {1: 'recovery.example.com', 4: 1780604800, 6: 1780000000,\n\
         7: h'a0a1..af', -65537: fingerprint of recovery-ctl-1.hex,\n\
         -65538: 'site-42.example.net'}. Vendor key d = 0x01..0x20, RFC 6979 deterministic.",
        &token,
    );
    // Re-signing gives the same bytes.
    assert_eq!(
        sign_recovery_token(&vendor_key(), KID, &claims()).unwrap(),
        token
    );
    assert_eq!(verify(&token, IAT + 1), Ok(claims()));
    // The size documented in steward_pki::recovery.
    assert_eq!(token.len(), 202);
    assert!(token.len() <= MAX_TOKEN_LEN);
}

#[test]
fn claims_encoding_is_canonical() {
    let payload = claims().encode().unwrap();
    // Map of 6, keys 1, 4, 6, 7, -65537, -65538 in this order.
    assert_eq!(payload[0], 0xa6);
    assert_eq!(payload[1], 0x01);
    let fp_key = [0x3a, 0x00, 0x01, 0x00, 0x00];
    let inst_key = [0x3a, 0x00, 0x01, 0x00, 0x01];
    let fp_at = payload.windows(5).position(|w| w == fp_key).unwrap();
    let inst_at = payload.windows(5).position(|w| w == inst_key).unwrap();
    assert!(fp_at < inst_at);
    assert_eq!(RecoveryClaims::decode(&payload), Ok(claims()));
    assert_eq!((CLAIM_ISS, CLAIM_EXP, CLAIM_IAT, CLAIM_CTI), (1, 4, 6, 7));
    assert_eq!(
        (CLAIM_CTL_FINGERPRINT, CLAIM_INSTALLATION),
        (-65537, -65538)
    );
}

#[test]
fn token_for_another_installation_or_ctl_refused() {
    let token = vector("recovery-token-1.hex");
    let key = vendor_key();
    let mut other = expect(IAT + 1);
    other.installation = "site-43.example.net";
    assert_eq!(
        verify_recovery_token(key.verifying_key(), &token, &other),
        Err(RecoveryError::WrongInstallation)
    );
    let mut other = expect(IAT + 1);
    other.fingerprint = ctl_2().fingerprint();
    assert_eq!(
        verify_recovery_token(key.verifying_key(), &token, &other),
        Err(RecoveryError::WrongFingerprint)
    );
}

#[test]
fn token_time_checks() {
    let token = vector("recovery-token-1.hex");
    assert_eq!(verify(&token, EXP - 1), Ok(claims()));
    assert_eq!(verify(&token, EXP), Err(RecoveryError::Expired));
    assert_eq!(verify(&token, u64::MAX), Err(RecoveryError::Expired));
    assert_eq!(verify(&token, IAT - CLOCK_SKEW), Ok(claims()));
    assert_eq!(
        verify(&token, IAT - CLOCK_SKEW - 1),
        Err(RecoveryError::NotYetValid)
    );
    assert_eq!(verify(&token, 0), Err(RecoveryError::NotYetValid));

    let mut long = claims();
    long.expires_at = IAT + MAX_LIFETIME + 1;
    assert_eq!(
        sign_recovery_token(&vendor_key(), KID, &long),
        Err(RecoveryError::Lifetime)
    );
    let token = sign_payload(&long.encode().unwrap());
    assert_eq!(verify(&token, IAT + 1), Err(RecoveryError::Lifetime));
    long.expires_at = IAT + MAX_LIFETIME;
    let token = sign_recovery_token(&vendor_key(), KID, &long).unwrap();
    assert_eq!(verify(&token, IAT + 1), Ok(long));

    let mut backwards = claims();
    backwards.expires_at = IAT;
    assert!(matches!(
        sign_recovery_token(&vendor_key(), KID, &backwards),
        Err(RecoveryError::Malformed(_))
    ));
}

#[test]
fn token_signed_by_another_key_refused() {
    // A "server" key: CTL anchor A's. Same claims, same kid.
    let (_, server_key) = anchor('a');
    let token = sign_recovery_token(&server_key, KID, &claims()).unwrap();
    assert_eq!(verify(&token, IAT + 1), Err(RecoveryError::Signature));
    // Some other key.
    let token = sign_recovery_token(&key_from(0x90), KID, &claims()).unwrap();
    assert_eq!(verify(&token, IAT + 1), Err(RecoveryError::Signature));
}

#[test]
fn flipped_bytes_refused() {
    let token = vector("recovery-token-1.hex");
    for i in 0..token.len() {
        for bit in [0x01, 0x80] {
            let mut flipped = token.clone();
            flipped[i] ^= bit;
            let result = verify(&flipped, IAT + 1);
            assert!(
                matches!(
                    result,
                    Err(RecoveryError::Signature | RecoveryError::Malformed(_))
                ),
                "byte {i} ^ {bit:#x}: {result:?}"
            );
        }
    }
    // In the signature (the last 64 bytes): always `Signature`.
    let mut flipped = token.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    assert_eq!(verify(&flipped, IAT + 1), Err(RecoveryError::Signature));
}

#[test]
fn malformed_claims_refused() {
    let good = claims().encode().unwrap();
    let malformed = |payload: &[u8]| {
        let result = verify(&sign_payload(payload), IAT + 1);
        assert!(
            matches!(result, Err(RecoveryError::Malformed(_))),
            "{payload:02x?}: {result:?}"
        );
        assert!(matches!(
            RecoveryClaims::decode(payload),
            Err(ClaimError::Malformed(_))
        ));
    };
    // An unknown claim (key 2, `sub`), with the map count raised.
    let mut unknown = good.clone();
    unknown[0] = 0xa7;
    unknown.extend_from_slice(&[0x02, 0x61, b'x']);
    malformed(&unknown);
    // A duplicate `iss`.
    let mut duplicate = good.clone();
    duplicate[0] = 0xa7;
    duplicate.extend_from_slice(&[0x01, 0x61, b'x']);
    malformed(&duplicate);
    // `iss` missing: drop its entry.
    let iss_len = 2 + 1 + "recovery.example.com".len();
    let mut missing = vec![0xa5];
    missing.extend_from_slice(&good[iss_len..]);
    malformed(&missing);
    // Keys out of order: `iss` moved to the end.
    let mut reordered = vec![0xa6];
    reordered.extend_from_slice(&good[iss_len..]);
    reordered.extend_from_slice(&good[1..iss_len]);
    malformed(&reordered);
    // Trailing byte, an array, empty, CWT tag 61 around the map.
    let mut trailing = good.clone();
    trailing.push(0x00);
    malformed(&trailing);
    malformed(&[0x80]);
    malformed(&[]);
    let mut tagged = vec![0xd8, 0x3d];
    tagged.extend_from_slice(&good);
    malformed(&tagged);
    // Wrong sizes and types.
    let mut short_cti = claims();
    short_cti.installation = String::new();
    assert!(matches!(short_cti.encode(), Err(ClaimError::Malformed(_))));
    let mut long_name = claims();
    long_name.issuer = "x".repeat(129);
    assert!(matches!(
        sign_recovery_token(&vendor_key(), KID, &long_name),
        Err(RecoveryError::Malformed(_))
    ));
    let cti_at = good.windows(2).position(|w| w == [0x07, 0x50]).unwrap();
    let mut cti_15 = good[..cti_at].to_vec();
    cti_15.extend_from_slice(&[0x07, 0x4f]);
    cti_15.extend_from_slice(&good[cti_at + 2..cti_at + 2 + 15]);
    cti_15.extend_from_slice(&good[cti_at + 2 + 16..]);
    malformed(&cti_15);
    let mut cti_text = good.clone();
    cti_text[cti_at + 1] = 0x70;
    malformed(&cti_text);
    // A token wrapped in CWT tag 61.
    let mut cwt = vec![0xd8, 0x3d];
    cwt.extend_from_slice(&vector("recovery-token-1.hex"));
    assert!(matches!(
        verify(&cwt, IAT + 1),
        Err(RecoveryError::Malformed(_))
    ));
    // A CTL update is not a token, even when the vendor key signed it.
    let ctl_as_token = sign_payload(&ctl_2().canonical_bytes());
    assert!(matches!(
        verify(&ctl_as_token, IAT + 1),
        Err(RecoveryError::Malformed(_))
    ));
    // Too long.
    assert!(matches!(
        verify(&vec![0; MAX_TOKEN_LEN + 1], IAT + 1),
        Err(RecoveryError::Malformed(_))
    ));
}

#[test]
fn replayed_token_refused_after_recovery() {
    // Once the device has replaced CTL 1, its fingerprint is CTL 2's: the token no longer fits.
    let token = vector("recovery-token-1.hex");
    let after = Expectation {
        fingerprint: ctl_2().fingerprint(),
        installation: INSTALLATION,
        now: IAT + 10,
    };
    assert_eq!(
        verify_recovery_token(vendor_key().verifying_key(), &token, &after),
        Err(RecoveryError::WrongFingerprint)
    );
}
