//! CRLs built by `revocation::crl` checked by openssl: the library, `openssl crl -text`, and
//! `openssl verify -crl_check` against a revoked and a good leaf.
#![allow(clippy::unwrap_used)]

mod ocsp_crl_testca;

use std::time::{Duration, SystemTime};

use ocsp_crl_testca::{HOUR, Pki, now, openssl_cli, write, write_pem};
use openssl::asn1::Asn1Integer;
use openssl::bn::BigNum;
use openssl::x509::{CrlStatus, ReasonCode, X509Crl};
use steward_pki::revocation::crl::{CrlError, build_crl};
use steward_pki::revocation::{RevocationReason, RevokedEntry, serial_of};

fn entry(serial: &[u8], reason: Option<RevocationReason>) -> RevokedEntry {
    RevokedEntry {
        serial: serial.to_vec(),
        revoked_at: now() - Duration::from_secs(60),
        reason,
    }
}

fn asn1_serial(v: u32) -> Asn1Integer {
    Asn1Integer::from_bn(&BigNum::from_u32(v).unwrap()).unwrap()
}

#[test]
fn openssl_parses_and_verifies_our_crl() {
    let pki = Pki::new();
    let (leaf, _) = pki.leaf("server", 0x1234);
    let entries = [
        entry(
            &serial_of(&leaf).unwrap(),
            Some(RevocationReason::KeyCompromise),
        ),
        entry(&[0x99], None),
        // High bit set: needs the DER sign octet, which build_crl must add.
        entry(&[0x80, 0x01], Some(RevocationReason::Superseded)),
    ];
    let der = build_crl(
        &pki.issuing.cert,
        &pki.issuing.key,
        &entries,
        7,
        now(),
        now() + HOUR,
    )
    .unwrap();

    let crl = X509Crl::from_der(&der).unwrap();
    assert!(crl.verify(&pki.issuing.cert.public_key().unwrap()).unwrap());
    assert!(!crl.verify(&pki.root.cert.public_key().unwrap()).unwrap());
    assert_eq!(
        crl.issuer_name().to_der().unwrap(),
        pki.issuing.cert.subject_name().to_der().unwrap()
    );

    match crl.get_by_cert(&leaf) {
        CrlStatus::Revoked(r) => {
            let (critical, reason) = r.extension::<ReasonCode>().unwrap().unwrap();
            assert!(!critical);
            assert_eq!(reason.get_i64().unwrap(), 1);
        }
        _ => panic!("leaf not revoked"),
    }
    match crl.get_by_serial(&asn1_serial(0x99)) {
        CrlStatus::Revoked(r) => assert!(r.extension::<ReasonCode>().unwrap().is_none()),
        _ => panic!("0x99 not revoked"),
    }
    assert!(matches!(
        crl.get_by_serial(&asn1_serial(0x8001)),
        CrlStatus::Revoked(_)
    ));
    assert!(matches!(
        crl.get_by_serial(&asn1_serial(0x42)),
        CrlStatus::NotRevoked
    ));

    let (critical, number) = crl
        .extension::<openssl::x509::extension::CrlNumber>()
        .unwrap()
        .unwrap();
    assert!(!critical);
    assert_eq!(number.to_bn().unwrap(), BigNum::from_u32(7).unwrap());
    assert!(crl.next_update().is_some());
}

#[test]
fn openssl_cli_prints_extensions_and_reasons() {
    let pki = Pki::new();
    let der = build_crl(
        &pki.issuing.cert,
        &pki.issuing.key,
        &[entry(&[0x10], Some(RevocationReason::KeyCompromise))],
        42,
        now(),
        now() + HOUR,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "crl.der", &der);
    let (ok, out) = openssl_cli([
        "crl",
        "-inform",
        "DER",
        "-text",
        "-noout",
        "-in",
        file.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("Version 2"), "{out}");
    assert!(out.contains("ecdsa-with-SHA256"), "{out}");
    assert!(out.contains("X509v3 CRL Number"), "{out}");
    assert!(out.contains("42"), "{out}");
    assert!(out.contains("X509v3 Authority Key Identifier"), "{out}");
    assert!(out.contains("Key Compromise"), "{out}");
    assert!(out.contains("Serial Number: 10"), "{out}");
}

#[test]
fn openssl_verify_with_crl_check_rejects_the_revoked_leaf_only() {
    let pki = Pki::new();
    let (revoked, _) = pki.leaf("revoked-server", 100);
    let (good, _) = pki.leaf("good-server", 101);
    let der = build_crl(
        &pki.issuing.cert,
        &pki.issuing.key,
        &[entry(
            &serial_of(&revoked).unwrap(),
            Some(RevocationReason::KeyCompromise),
        )],
        1,
        now() - Duration::from_secs(10),
        now() + HOUR,
    )
    .unwrap();
    let crl_pem = X509Crl::from_der(&der).unwrap().to_pem().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let ca = write_pem(dir.path(), "ca.pem", &[&pki.root.cert, &pki.issuing.cert]);
    let crl = write(dir.path(), "crl.pem", &crl_pem);
    let revoked_pem = write_pem(dir.path(), "revoked.pem", &[&revoked]);
    let good_pem = write_pem(dir.path(), "good.pem", &[&good]);

    let verify = |leaf: &std::path::Path| {
        openssl_cli([
            "verify",
            "-crl_check",
            "-CAfile",
            ca.to_str().unwrap(),
            "-CRLfile",
            crl.to_str().unwrap(),
            leaf.to_str().unwrap(),
        ])
    };
    let (ok, out) = verify(&revoked_pem);
    assert!(!ok, "{out}");
    assert!(out.contains("certificate revoked"), "{out}");
    let (ok, out) = verify(&good_pem);
    assert!(ok, "{out}");
    assert!(out.contains("OK"), "{out}");
}

#[test]
fn empty_crl_has_no_revoked_list() {
    let pki = Pki::new();
    let der = build_crl(
        &pki.issuing.cert,
        &pki.issuing.key,
        &[],
        1,
        now(),
        now() + HOUR,
    )
    .unwrap();
    let crl = X509Crl::from_der(&der).unwrap();
    assert!(crl.verify(&pki.issuing.cert.public_key().unwrap()).unwrap());
    assert!(crl.get_revoked().is_none());
}

#[test]
fn same_input_gives_the_same_tbs() {
    // Entries are sorted, so the order callers pass them in does not matter.
    let pki = Pki::new();
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let a = [entry(&[1], None), entry(&[2], None)];
    let b = [entry(&[2], None), entry(&[1], None)];
    let (a, b) = (
        build_crl(&pki.issuing.cert, &pki.issuing.key, &a, 3, t, t + HOUR).unwrap(),
        build_crl(&pki.issuing.cert, &pki.issuing.key, &b, 3, t, t + HOUR).unwrap(),
    );
    let tbs = |der: &[u8]| {
        use der::{Decode, Encode};
        x509_cert::crl::CertificateList::from_der(der)
            .unwrap()
            .tbs_cert_list
            .to_der()
            .unwrap()
    };
    assert_eq!(tbs(&a), tbs(&b));
}

#[test]
fn rejects_caller_mistakes() {
    let pki = Pki::new();
    let t = now();
    assert!(matches!(
        build_crl(&pki.issuing.cert, &pki.root.key, &[], 1, t, t + HOUR),
        Err(CrlError::KeyMismatch)
    ));
    assert!(matches!(
        build_crl(&pki.issuing.cert, &pki.issuing.key, &[], 1, t, t),
        Err(CrlError::InvalidUpdateWindow)
    ));
    assert!(matches!(
        build_crl(
            &pki.issuing.cert,
            &pki.issuing.key,
            &[entry(&[0x7f; 21], None)],
            1,
            t,
            t + HOUR
        ),
        Err(CrlError::InvalidSerial(_))
    ));
}
