//! CA directory lifecycle: init, load, refusing to overwrite, import and its checks.
#![allow(clippy::unwrap_used)]

mod ca_support;

use std::os::unix::fs::PermissionsExt;

use ca_support::{CertSpec, NOW, cert, p256};
use steward_pki::ca::{Ca, CaError, CaNames};
use x509_parser::prelude::*;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_then_load_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let names = CaNames {
        organization: Some("Example Org".into()),
        ..CaNames::default()
    };
    let ca = Ca::init(&ca_dir, &names, NOW).unwrap();

    for f in [
        "root.crt.pem",
        "issuing.crt.pem",
        "root.key.pem",
        "issuing.key.pem",
    ] {
        assert!(ca_dir.join(f).is_file(), "{f} missing");
    }
    assert_eq!(mode(&ca_dir.join("root.key.pem")), 0o600);
    assert_eq!(mode(&ca_dir.join("issuing.key.pem")), 0o600);

    let loaded = Ca::load(&ca_dir).unwrap();
    assert_eq!(loaded.root_cert_der(), ca.root_cert_der());
    assert_eq!(loaded.issuing_cert_der(), ca.issuing_cert_der());
    assert!(loaded.issuing_key().public_eq(ca.issuing_key()));
    assert_eq!(
        loaded.chain_der(),
        &[ca.issuing_cert_der().to_vec(), ca.root_cert_der().to_vec()]
    );
    assert_eq!(loaded.issuing_not_after(), NOW + 3650 * 86_400);
}

#[test]
fn ca_certificates_have_ca_extensions() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::init(dir.path(), &CaNames::default(), NOW).unwrap();
    let (_, root) = parse_x509_certificate(ca.root_cert_der()).unwrap();
    let (_, issuing) = parse_x509_certificate(ca.issuing_cert_der()).unwrap();

    let bc = root.basic_constraints().unwrap().unwrap();
    assert!(bc.critical && bc.value.ca && bc.value.path_len_constraint.is_none());
    let bc = issuing.basic_constraints().unwrap().unwrap();
    assert!(bc.critical && bc.value.ca);
    assert_eq!(bc.value.path_len_constraint, Some(0));
    for c in [&root, &issuing] {
        let ku = c.key_usage().unwrap().unwrap();
        assert!(ku.critical && ku.value.key_cert_sign() && ku.value.crl_sign());
    }
    assert_eq!(root.subject(), root.issuer());
    assert_eq!(issuing.issuer(), root.subject());
    assert!(
        issuing
            .subject()
            .iter_common_name()
            .any(|cn| cn.as_str().unwrap() == "Steward Issuing CA")
    );

    // AKI of the issuing CA is the root's SKI.
    let ski = |c: &X509Certificate<'_>| {
        c.extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
    };
    let aki = issuing
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(Some(aki), ski(&root));
    assert!(ski(&issuing).is_some());
    assert_ne!(ski(&issuing), ski(&root));
}

#[test]
fn init_refuses_to_overwrite_an_existing_ca() {
    let dir = tempfile::tempdir().unwrap();
    let first = Ca::init(dir.path(), &CaNames::default(), NOW).unwrap();
    let before = std::fs::read(dir.path().join("issuing.key.pem")).unwrap();

    let err = Ca::init(dir.path(), &CaNames::default(), NOW).unwrap_err();
    assert!(matches!(err, CaError::AlreadyExists(_)), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("issuing.key.pem")).unwrap(),
        before
    );
    assert_eq!(
        Ca::load(dir.path()).unwrap().issuing_cert_der(),
        first.issuing_cert_der()
    );

    // A single leftover file is enough to refuse.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("root.key.pem"), b"x").unwrap();
    assert!(matches!(
        Ca::init(other.path(), &CaNames::default(), NOW),
        Err(CaError::AlreadyExists(_))
    ));
}

#[test]
fn load_of_an_empty_directory_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(Ca::load(dir.path()), Err(CaError::Io { .. })));
}

/// The PEM files of a freshly initialised CA, for import tests.
fn ca_pems() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    Ca::init(dir.path(), &CaNames::default(), NOW).unwrap();
    let read = |f: &str| std::fs::read(dir.path().join(f)).unwrap();
    (
        read("root.crt.pem"),
        read("issuing.crt.pem"),
        read("issuing.key.pem"),
    )
}

#[test]
fn import_accepts_a_consistent_ca_and_writes_no_root_key() {
    let (root, issuing, key) = ca_pems();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::import(dir.path(), &root, &issuing, &key).unwrap();
    assert!(!dir.path().join("root.key.pem").exists());
    assert_eq!(mode(&dir.path().join("issuing.key.pem")), 0o600);
    let loaded = Ca::load(dir.path()).unwrap();
    assert_eq!(loaded.issuing_cert_der(), ca.issuing_cert_der());
    // And importing again over it is refused.
    assert!(matches!(
        Ca::import(dir.path(), &root, &issuing, &key),
        Err(CaError::AlreadyExists(_))
    ));
}

#[test]
fn import_refuses_a_key_that_does_not_match() {
    let (root, issuing, _) = ca_pems();
    let (_, _, other_key) = ca_pems();
    let dir = tempfile::tempdir().unwrap();
    let err = Ca::import(dir.path(), &root, &issuing, &other_key).unwrap_err();
    assert!(matches!(err, CaError::KeyMismatch), "{err}");
    // Nothing was written.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn import_refuses_an_issuing_ca_from_another_root() {
    let (root, _, _) = ca_pems();
    let (_, issuing, key) = ca_pems();
    let dir = tempfile::tempdir().unwrap();
    let err = Ca::import(dir.path(), &root, &issuing, &key).unwrap_err();
    assert!(
        matches!(err, CaError::InvalidCa(ref m) if m.contains("not signed by the root")),
        "{err}"
    );
}

#[test]
fn import_refuses_a_non_ca_issuing_certificate_and_non_p256_keys() {
    let root_key = p256();
    let root = cert(&CertSpec::ca("Root"), &root_key, None);
    let leaf_key = p256();
    let leaf = cert(
        &CertSpec::leaf("not a ca"),
        &leaf_key,
        Some((&root, &root_key)),
    );
    let dir = tempfile::tempdir().unwrap();
    let err = Ca::import(
        dir.path(),
        &root.to_pem().unwrap(),
        &leaf.to_pem().unwrap(),
        &leaf_key.private_key_to_pem_pkcs8().unwrap(),
    )
    .unwrap_err();
    assert!(
        matches!(err, CaError::InvalidCa(ref m) if m.contains("not a CA")),
        "{err}"
    );

    let p384 = ca_support::ec_key(openssl::nid::Nid::SECP384R1);
    let inter = cert(
        &CertSpec::ca("P-384 issuing"),
        &p384,
        Some((&root, &root_key)),
    );
    let err = Ca::import(
        dir.path(),
        &root.to_pem().unwrap(),
        &inter.to_pem().unwrap(),
        &p384.private_key_to_pem_pkcs8().unwrap(),
    )
    .unwrap_err();
    assert!(matches!(err, CaError::UnsupportedKey(_)), "{err}");

    let err = Ca::import(dir.path(), b"not pem", b"", b"").unwrap_err();
    assert!(matches!(err, CaError::InvalidCa(_)), "{err}");
}
