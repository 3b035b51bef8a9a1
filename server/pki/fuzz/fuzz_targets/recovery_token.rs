//! Trust-chain recovery messages as a device receives them: any bytes give claims or a
//! `RecoveryError` from `verify_recovery_token` (and a `ClaimError` from `RecoveryClaims::decode`), a CTL or a
//! `CtlError` from `Ctl::from_canonical` and `Ctl::accept_update`, never a panic; what is
//! accepted is canonical (it encodes back to the same bytes) and fits the expectation.
//!
//! The vendor key is the test vectors' (`d` = 0x01..0x20, tests/recovery_vectors.rs) and the
//! current CTL is `tests/vectors/recovery-ctl-1.hex`, so mutations of
//! `recovery-token-1.hex` and `recovery-ctl-update-1.hex` reach the success paths.
#![no_main]

use std::sync::OnceLock;

use steward_pki::cose::SigningKey;
use steward_pki::ctl::Ctl;
use steward_pki::recovery::{Expectation, RecoveryClaims, verify_recovery_token};

const VENDOR_D: [u8; 32] = [
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10,
    0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20,
];

/// The vector's `iat` + 1: the vector verifies.
const NOW: u64 = 1_780_000_001;
const INSTALLATION: &str = "site-42.example.net";

const CTL_1_HEX: &str = include_str!("../../tests/vectors/recovery-ctl-1.hex");

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .flat_map(str::bytes)
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).expect("ASCII hex");
            u8::from_str_radix(pair, 16).expect("hex digits")
        })
        .collect()
}

fn fixtures() -> &'static (SigningKey, Ctl) {
    static FIXTURES: OnceLock<(SigningKey, Ctl)> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let key = SigningKey::from_slice(&VENDOR_D).expect("d is a valid P-256 scalar");
        let ctl = Ctl::from_canonical(&hex(CTL_1_HEX)).expect("the CTL vector decodes");
        (key, ctl)
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (key, ctl) = fixtures();
    let expect = Expectation {
        fingerprint: ctl.fingerprint(),
        installation: INSTALLATION,
        now: NOW,
    };
    if let Ok(claims) = verify_recovery_token(key.verifying_key(), data, &expect) {
        assert_eq!(claims.ctl_fingerprint, expect.fingerprint);
        assert_eq!(claims.installation, INSTALLATION);
        assert!(claims.issued_at < claims.expires_at);
        assert!(NOW < claims.expires_at);
    }
    if let Ok(claims) = RecoveryClaims::decode(data) {
        assert_eq!(claims.encode().expect("decoded claims encode"), data);
    }
    if let Ok(decoded) = Ctl::from_canonical(data) {
        assert_eq!(decoded.canonical_bytes(), data);
        assert_eq!(Ctl::from_canonical(&decoded.canonical_bytes()), Ok(decoded));
    }
    if let Ok(new) = ctl.accept_update(data) {
        assert!(new.version() > ctl.version());
        assert_eq!(Ctl::from_canonical(&new.canonical_bytes()), Ok(new));
    }
});
