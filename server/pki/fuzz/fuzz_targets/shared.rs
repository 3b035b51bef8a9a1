//! What the PKI fuzz targets share: a fixed CA (testdata/, a throw-away P-256 key that exists
//! only for fuzzing) with one leaf, a fixed clock inside their validity, and the OCSP
//! responder built from them once. Nothing here is random, so a crash reproduces.
// Each target is its own crate and uses a different part of this module.
#![allow(dead_code)]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use steward_pki::revocation::ocsp::OcspResponder;
use steward_pki::revocation::{CertStatus, RevocationReason};

pub const CA_PEM: &[u8] = include_bytes!("../testdata/ca.pem");
pub const CA_KEY_PEM: &[u8] = include_bytes!("../testdata/ca.key.pem");
/// CN=dev-1, serial 7, issued by the CA; the lookup below reports it revoked.
pub const LEAF_PEM: &[u8] = include_bytes!("../testdata/leaf.pem");

/// 2027-01-15, inside the validity of both certificates (2026-11-21 to 2126).
pub fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

pub struct Fixture {
    pub ca: X509,
    pub ca_der: Vec<u8>,
    pub ca_key: PKey<Private>,
    pub leaf: X509,
    pub leaf_der: Vec<u8>,
    pub responder: OcspResponder,
}

pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let ca = X509::from_pem(CA_PEM).expect("testdata/ca.pem");
        let ca_key = PKey::private_key_from_pem(CA_KEY_PEM).expect("testdata/ca.key.pem");
        let leaf = X509::from_pem(LEAF_PEM).expect("testdata/leaf.pem");
        let responder = OcspResponder::new(&ca, &ca_key, &[]).expect("responder from the CA");
        Fixture {
            ca_der: ca.to_der().expect("CA to DER"),
            leaf_der: leaf.to_der().expect("leaf to DER"),
            ca,
            ca_key,
            leaf,
            responder,
        }
    })
}

/// The responder's view of the store: serial 7 (the leaf) is revoked, serial 9 unknown,
/// everything else good.
pub fn lookup(serial: &[u8]) -> CertStatus {
    match serial {
        [7] => CertStatus::Revoked {
            revoked_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000),
            reason: Some(RevocationReason::KeyCompromise),
        },
        [9] => CertStatus::Unknown,
        _ => CertStatus::Good,
    }
}
