//! Issuing end-entity certificates and checking them with OpenSSL (library and CLI).
#![allow(clippy::unwrap_used)]

mod ca_support;

use ca_support::{DAY, NOW, csr, csr_with, openssl, p256, rsa, unix_now};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::{X509VerifyFlags, X509VerifyParam};
use openssl::x509::{X509, X509StoreContext};
use steward_pki::ca::{Ca, CaError, CaNames, IssueParams, Issued, Serial};
use steward_pki::csr::{Csr, CsrLimits};
use steward_pki::profile::{KeyPurpose, Profile};
use x509_parser::prelude::*;

fn new_ca(now: u64) -> (tempfile::TempDir, Ca) {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::init(dir.path(), &CaNames::default(), now).unwrap();
    (dir, ca)
}

fn parse_csr(der: &[u8]) -> Csr {
    Csr::from_der(der, CsrLimits::default()).unwrap()
}

fn issue(ca: &Ca, csr_der: &[u8], profile: &Profile, now: u64) -> Issued {
    ca.issue(
        &parse_csr(csr_der),
        profile,
        IssueParams::new(Serial::random().unwrap(), now),
    )
    .unwrap()
}

/// Verifies `leaf` against the CA with an X509Store at time `at`.
fn verify_with_store(ca: &Ca, leaf: &[u8], at: u64) -> Result<(), String> {
    let mut store = X509StoreBuilder::new().unwrap();
    store
        .add_cert(X509::from_der(ca.root_cert_der()).unwrap())
        .unwrap();
    let mut param = X509VerifyParam::new().unwrap();
    param.set_time(at as i64);
    param.set_flags(X509VerifyFlags::X509_STRICT).unwrap();
    store.set_param(&param).unwrap();
    let store = store.build();
    let mut chain = Stack::new().unwrap();
    chain
        .push(X509::from_der(ca.issuing_cert_der()).unwrap())
        .unwrap();
    let leaf = X509::from_der(leaf).unwrap();
    let mut ctx = X509StoreContext::new().unwrap();
    ctx.init(&store, &leaf, &chain, |c| {
        Ok(if c.verify_cert()? {
            Ok(())
        } else {
            Err(c.error().error_string().to_owned())
        })
    })
    .unwrap()
}

fn extension<'a>(
    cert: &'a X509Certificate<'a>,
    pick: impl Fn(&'a ParsedExtension<'a>) -> bool,
) -> Option<&'a X509Extension<'a>> {
    cert.extensions()
        .iter()
        .find(|e| pick(e.parsed_extension()))
}

#[test]
fn issued_certificate_verifies_with_x509_store() {
    let (_d, ca) = new_ca(NOW);
    let (_, req) = csr("dev1");
    let issued = issue(&ca, &req, &Profile::device(), NOW);
    verify_with_store(&ca, &issued.der, NOW).unwrap();
    verify_with_store(&ca, &issued.der, NOW + 364 * DAY).unwrap();
    // Outside its validity the same certificate fails: the check is not vacuous.
    let err = verify_with_store(&ca, &issued.der, NOW + 366 * DAY).unwrap_err();
    assert!(err.contains("expired"), "{err}");
    // And it does not verify against another CA.
    let (_d2, other) = new_ca(NOW);
    assert!(verify_with_store(&other, &issued.der, NOW).is_err());
}

#[test]
fn issued_certificate_verifies_with_the_openssl_cli() {
    // The CLI checks against the real clock, so issue "now".
    let now = unix_now();
    let (dir, ca) = new_ca(now);
    let (_, req) = csr("dev-cli");
    let issued = issue(&ca, &req, &Profile::device(), now);
    let leaf = X509::from_der(&issued.der).unwrap();
    std::fs::write(dir.path().join("leaf.pem"), leaf.to_pem().unwrap()).unwrap();

    let (ok, out) = openssl(
        &[
            "verify",
            "-x509_strict",
            "-purpose",
            "sslclient",
            "-CAfile",
            "root.crt.pem",
            "-untrusted",
            "issuing.crt.pem",
            "leaf.pem",
        ],
        dir.path(),
    );
    assert!(ok && out.contains("leaf.pem: OK"), "{out}");

    // A device certificate is not a server certificate.
    let (ok, out) = openssl(
        &[
            "verify",
            "-purpose",
            "sslserver",
            "-CAfile",
            "root.crt.pem",
            "-untrusted",
            "issuing.crt.pem",
            "leaf.pem",
        ],
        dir.path(),
    );
    assert!(!ok, "{out}");

    // Without the issuing CA the chain is incomplete.
    let (ok, out) = openssl(
        &["verify", "-CAfile", "root.crt.pem", "leaf.pem"],
        dir.path(),
    );
    assert!(!ok, "{out}");
}

#[test]
fn device_certificate_has_the_expected_fields_and_extensions() {
    let (_d, ca) = new_ca(NOW);
    let key = p256();
    let req = csr_with(&key, &["dev1"], &["dev1.example.com", "dev1.local"]);
    let serial = Serial::random().unwrap();
    let issued = ca
        .issue(
            &parse_csr(&req),
            &Profile::device(),
            IssueParams::new(serial.clone(), NOW),
        )
        .unwrap();
    assert_eq!(issued.serial, serial);
    assert_eq!(issued.subject_cn.as_deref(), Some("dev1"));
    assert_eq!(issued.not_before, NOW - 300);
    assert_eq!(issued.not_after, NOW + 365 * DAY);

    let (_, c) = parse_x509_certificate(&issued.der).unwrap();
    assert_eq!(c.raw_serial(), serial.as_bytes());
    assert_eq!(
        c.validity().not_before.timestamp() as u64,
        issued.not_before
    );
    assert_eq!(c.validity().not_after.timestamp() as u64, issued.not_after);
    let subject: Vec<String> = c
        .subject()
        .iter_attributes()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(subject, ["Acme", "dev1"]);

    let bc = c.basic_constraints().unwrap().unwrap();
    assert!(bc.critical && !bc.value.ca);
    let ku = c.key_usage().unwrap().unwrap();
    assert!(ku.critical);
    assert!(ku.value.digital_signature() && ku.value.key_agreement());
    assert!(!ku.value.key_cert_sign() && !ku.value.key_encipherment());
    let eku = c.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth && !eku.ocsp_signing);
    let san = c.subject_alternative_name().unwrap().unwrap();
    assert!(!san.critical);
    assert_eq!(
        san.value.general_names,
        vec![
            GeneralName::DNSName("dev1.example.com"),
            GeneralName::DNSName("dev1.local")
        ]
    );
    // No AIA or CRL DP unless the profile asks.
    assert!(extension(&c, |e| matches!(e, ParsedExtension::AuthorityInfoAccess(_))).is_none());
    assert!(
        extension(&c, |e| matches!(
            e,
            ParsedExtension::CRLDistributionPoints(_)
        ))
        .is_none()
    );

    // AKI = issuing CA's SKI; SKI present.
    let (_, issuing) = parse_x509_certificate(ca.issuing_cert_der()).unwrap();
    let ski_of = |c: &X509Certificate<'_>| {
        c.extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
    };
    let aki = c
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        });
    assert_eq!(aki, ski_of(&issuing));
    assert!(ski_of(&c).is_some());

    // The certificate carries the CSR's key.
    let cert = X509::from_der(&issued.der).unwrap();
    assert!(cert.public_key().unwrap().public_eq(&key));
}

#[test]
fn profile_urls_and_validation_profile_are_encoded() {
    let (_d, ca) = new_ca(NOW);
    let profile = Profile {
        ocsp_url: Some("http://ocsp.example.com/ocsp".into()),
        crl_url: Some("http://crl.example.com/issuing.crl".into()),
        ..Profile::validation()
    };
    let (_, req) = csr("ocsp-responder");
    let issued = issue(&ca, &req, &profile, NOW);
    assert_eq!(issued.not_after, NOW + 30 * DAY);
    let (_, c) = parse_x509_certificate(&issued.der).unwrap();

    let eku = c.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.ocsp_signing && !eku.client_auth && !eku.server_auth);
    let ku = c.key_usage().unwrap().unwrap().value;
    // Not a TLS profile: no key agreement.
    assert!(ku.digital_signature() && !ku.key_agreement());

    let aia = extension(&c, |e| matches!(e, ParsedExtension::AuthorityInfoAccess(_))).unwrap();
    let ParsedExtension::AuthorityInfoAccess(aia) = aia.parsed_extension() else {
        unreachable!()
    };
    assert_eq!(aia.accessdescs.len(), 1);
    assert_eq!(
        aia.accessdescs[0].access_method.to_id_string(),
        "1.3.6.1.5.5.7.48.1"
    );
    assert_eq!(
        aia.accessdescs[0].access_location,
        GeneralName::URI("http://ocsp.example.com/ocsp")
    );
    let dp = extension(&c, |e| {
        matches!(e, ParsedExtension::CRLDistributionPoints(_))
    })
    .unwrap();
    let ParsedExtension::CRLDistributionPoints(dp) = dp.parsed_extension() else {
        unreachable!()
    };
    let names = match &dp.points[0].distribution_point {
        Some(DistributionPointName::FullName(names)) => names.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        names,
        vec![GeneralName::URI("http://crl.example.com/issuing.crl")]
    );
    let nocheck = c
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.48.1.5")
        .unwrap();
    assert_eq!(nocheck.value, &[0x05, 0x00]);

    // OpenSSL reads the same certificate as an OCSP signer.
    let (ok, out) = {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.der"), &issued.der).unwrap();
        openssl(
            &["x509", "-inform", "DER", "-in", "c.der", "-noout", "-text"],
            dir.path(),
        )
    };
    assert!(ok, "{out}");
    assert!(
        out.contains("OCSP Signing") && out.contains("OCSP No Check"),
        "{out}"
    );
    assert!(
        out.contains("OCSP - URI:http://ocsp.example.com/ocsp"),
        "{out}"
    );
}

#[test]
fn server_profile_and_rsa_keys() {
    let (_d, ca) = new_ca(NOW);
    let key = rsa(2048);
    let req = csr_with(&key, &["server.example.com"], &["server.example.com"]);
    let issued = issue(&ca, &req, &Profile::server(), NOW);
    let (_, c) = parse_x509_certificate(&issued.der).unwrap();
    let eku = c.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);
    let ku = c.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && ku.key_encipherment() && !ku.key_agreement());
    verify_with_store(&ca, &issued.der, NOW).unwrap();
}

#[test]
fn subject_override_replaces_the_csr_subject_but_keeps_the_san() {
    let (_d, ca) = new_ca(NOW);
    let req = csr_with(&p256(), &["whatever-the-device-says"], &["dev.example"]);
    let params = IssueParams::new(Serial::random().unwrap(), NOW)
        .with_subject_cn("urn:dev:ep-7")
        .unwrap();
    let issued = ca
        .issue(&parse_csr(&req), &Profile::device(), params)
        .unwrap();
    assert_eq!(issued.subject_cn.as_deref(), Some("urn:dev:ep-7"));
    let (_, c) = parse_x509_certificate(&issued.der).unwrap();
    assert_eq!(c.subject().to_string(), "CN=urn:dev:ep-7");
    assert_eq!(
        c.subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names,
        vec![GeneralName::DNSName("dev.example")]
    );
}

#[test]
fn reissue_keeps_subject_and_san_of_the_current_certificate() {
    let (_d, ca) = new_ca(NOW);
    let first = issue(
        &ca,
        &csr_with(&p256(), &["dev1"], &["dev1.example"]),
        &Profile::device(),
        NOW,
    );
    // The renewal CSR asks for another name and SAN, with a new key.
    let new_key = p256();
    let renewal = parse_csr(&csr_with(&new_key, &["evil"], &["evil.example"]));
    let later = NOW + 300 * DAY;
    let second = ca
        .reissue_keeping(
            &first.der,
            &renewal,
            &Profile::device(),
            IssueParams::new(Serial::random().unwrap(), later),
        )
        .unwrap();
    assert_eq!(second.subject_cn.as_deref(), Some("dev1"));
    assert_ne!(second.serial, first.serial);
    assert_eq!(second.not_after, later + 365 * DAY);
    let (_, a) = parse_x509_certificate(&first.der).unwrap();
    let (_, b) = parse_x509_certificate(&second.der).unwrap();
    assert_eq!(a.subject().as_raw(), b.subject().as_raw());
    let san = |c: &X509Certificate<'_>| {
        format!(
            "{:?}",
            c.subject_alternative_name()
                .unwrap()
                .unwrap()
                .value
                .general_names
        )
    };
    assert_eq!(san(&a), san(&b));
    assert!(san(&b).contains("dev1.example"));
    assert!(
        X509::from_der(&second.der)
            .unwrap()
            .public_key()
            .unwrap()
            .public_eq(&new_key)
    );

    assert!(matches!(
        ca.reissue_keeping(
            b"junk",
            &renewal,
            &Profile::device(),
            IssueParams::new(Serial::random().unwrap(), later)
        ),
        Err(CaError::InvalidRequest(_))
    ));
}

#[test]
fn server_keygen_returns_a_matching_p256_key() {
    let (_d, ca) = new_ca(NOW);
    let generated = ca
        .server_keygen(
            "dev-skg",
            &Profile::device(),
            IssueParams::new(Serial::random().unwrap(), NOW),
        )
        .unwrap();
    assert!(format!("{:?}", generated.key).contains("redacted"));
    let key = openssl::pkey::PKey::private_key_from_pkcs8(&generated.key.pkcs8_der).unwrap();
    assert_eq!(
        key.ec_key().unwrap().group().curve_name(),
        Some(openssl::nid::Nid::X9_62_PRIME256V1)
    );
    let cert = X509::from_der(&generated.cert.der).unwrap();
    assert!(cert.public_key().unwrap().public_eq(&key));
    assert_eq!(generated.cert.subject_cn.as_deref(), Some("dev-skg"));
    verify_with_store(&ca, &generated.cert.der, NOW).unwrap();
}

#[test]
fn certificates_never_outlive_the_issuing_ca() {
    let dir = tempfile::tempdir().unwrap();
    let names = CaNames {
        issuing_days: 100,
        ..CaNames::default()
    };
    let ca = Ca::init(dir.path(), &names, NOW).unwrap();
    let (_, req) = csr("dev1");
    let issued = issue(&ca, &req, &Profile::device(), NOW);
    assert_eq!(issued.not_after, ca.issuing_not_after());
    assert_eq!(issued.not_after, NOW + 100 * DAY);

    let err = ca
        .issue(
            &parse_csr(&req),
            &Profile::device(),
            IssueParams::new(Serial::random().unwrap(), NOW + 101 * DAY),
        )
        .unwrap_err();
    assert!(matches!(err, CaError::CaExpired { .. }), "{err}");
}

#[test]
fn invalid_profiles_and_nameless_requests_are_refused() {
    let (_d, ca) = new_ca(NOW);
    let (_, req) = csr("dev1");
    let bad = Profile {
        extended_key_usage: vec![],
        ..Profile::device()
    };
    assert!(matches!(
        ca.issue(
            &parse_csr(&req),
            &bad,
            IssueParams::new(Serial::random().unwrap(), NOW)
        ),
        Err(CaError::Profile(_))
    ));

    // An empty subject and no SAN would name nobody.
    let empty = csr_with(&p256(), &[], &[]);
    let csr = parse_csr(&empty);
    let params = IssueParams {
        subject: Some(openssl::x509::X509NameBuilder::new().unwrap().build()),
        ..IssueParams::new(Serial::random().unwrap(), NOW)
    };
    assert!(matches!(
        ca.issue(&csr, &Profile::device(), params),
        Err(CaError::InvalidRequest(_))
    ));

    // With only a SAN the certificate is fine, and the SAN becomes critical (RFC 5280 §4.2.1.6).
    let params = IssueParams {
        subject: Some(openssl::x509::X509NameBuilder::new().unwrap().build()),
        ..IssueParams::new(Serial::random().unwrap(), NOW)
    };
    let san_only = parse_csr(&csr_with(&p256(), &[], &["only-san.example"]));
    let issued = ca
        .issue(
            &san_only,
            &Profile {
                extended_key_usage: vec![KeyPurpose::ClientAuth],
                ..Profile::device()
            },
            params,
        )
        .unwrap();
    let (_, c) = parse_x509_certificate(&issued.der).unwrap();
    assert!(c.subject_alternative_name().unwrap().unwrap().critical);
    assert_eq!(issued.subject_cn, None);
}
