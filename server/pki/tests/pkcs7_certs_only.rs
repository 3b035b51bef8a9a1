//! certs-only CMS (EST content format 281): our encoder against openssl, and our parser
//! against openssl's output.
#![allow(clippy::unwrap_used)]

mod ocsp_crl_testca;

use ocsp_crl_testca::{Pki, openssl_cli, write, write_pem};
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::stack::Stack;
use proptest::prelude::*;
use steward_pki::pkcs7::{Pkcs7Error, certs_only, parse_certs_only};

fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

#[test]
fn round_trip_keeps_the_set_of_certificates() {
    let pki = Pki::new();
    let (leaf, _) = pki.leaf("device-1", 10);
    let input = vec![
        leaf.to_der().unwrap(),
        pki.issuing.cert.to_der().unwrap(),
        pki.root.cert.to_der().unwrap(),
    ];
    let der = certs_only(&input).unwrap();
    assert_eq!(sorted(parse_certs_only(&der).unwrap()), sorted(input));
}

#[test]
fn openssl_reads_our_certs_only() {
    let pki = Pki::new();
    let (leaf, _) = pki.leaf("device-1", 10);
    let input = vec![leaf.to_der().unwrap(), pki.issuing.cert.to_der().unwrap()];
    let der = certs_only(&input).unwrap();

    let p7 = Pkcs7::from_der(&der).unwrap();
    let certs = p7.signed().unwrap().certificates().unwrap();
    let got: Vec<Vec<u8>> = certs.iter().map(|c| c.to_der().unwrap()).collect();
    assert_eq!(sorted(got), sorted(input));
}

#[test]
fn openssl_cli_prints_the_certs() {
    let pki = Pki::new();
    let (leaf, _) = pki.leaf("device-cli", 11);
    let der = certs_only(&[leaf.to_der().unwrap(), pki.issuing.cert.to_der().unwrap()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "certs.p7b", &der);
    let (ok, out) = openssl_cli([
        "pkcs7",
        "-inform",
        "DER",
        "-print_certs",
        "-noout",
        "-in",
        file.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("CN=device-cli") || out.contains("CN = device-cli"),
        "{out}"
    );
    assert!(out.contains("Test Issuing CA"), "{out}");
}

#[test]
fn parses_certs_only_made_by_openssl_crl2pkcs7() {
    let pki = Pki::new();
    let (leaf, _) = pki.leaf("device-2", 12);
    let dir = tempfile::tempdir().unwrap();
    let pem = write_pem(dir.path(), "chain.pem", &[&leaf, &pki.issuing.cert]);
    let out_file = dir.path().join("out.p7b");
    let (ok, out) = openssl_cli([
        "crl2pkcs7",
        "-nocrl",
        "-certfile",
        pem.to_str().unwrap(),
        "-outform",
        "DER",
        "-out",
        out_file.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let der = std::fs::read(out_file).unwrap();
    let got = parse_certs_only(&der).unwrap();
    assert_eq!(
        sorted(got),
        sorted(vec![
            leaf.to_der().unwrap(),
            pki.issuing.cert.to_der().unwrap()
        ])
    );
}

#[test]
fn duplicates_are_sent_once() {
    let pki = Pki::new();
    let c = pki.root.cert.to_der().unwrap();
    let der = certs_only(&[c.clone(), c.clone()]).unwrap();
    assert_eq!(parse_certs_only(&der).unwrap(), vec![c]);
}

#[test]
fn rejects_bad_input_when_building() {
    assert!(matches!(certs_only(&[]), Err(Pkcs7Error::NoCertificates)));
    assert!(matches!(
        certs_only(&[vec![0x30, 0x03, 0x02, 0x01, 0x01]]),
        Err(Pkcs7Error::InvalidCertificate { index: 0, .. })
    ));
}

#[test]
fn rejects_signed_messages_and_other_content() {
    let pki = Pki::new();
    let signed = Pkcs7::sign(
        &pki.issuing.cert,
        &pki.issuing.key,
        &Stack::new().unwrap(),
        b"hello",
        Pkcs7Flags::BINARY,
    )
    .unwrap()
    .to_der()
    .unwrap();
    assert!(matches!(
        parse_certs_only(&signed),
        Err(Pkcs7Error::NotCertsOnly)
    ));
    assert!(matches!(
        parse_certs_only(b"\x30\x00"),
        Err(Pkcs7Error::Malformed(_))
    ));
    // ContentInfo{ id-data, [0] OCTET STRING "" }
    let data = [
        0x30, 0x0f, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01, 0xa0, 0x02,
        0x04, 0x00,
    ];
    assert!(matches!(
        parse_certs_only(&data),
        Err(Pkcs7Error::NotSignedData(_))
    ));
}

proptest! {
    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_certs_only(&bytes);
    }
}
