//! CSR parsing: vectors from the openssl CLI and the openssl crate, and every refusal.
#![allow(clippy::unwrap_used)]

mod ca_support;

use ca_support::{csr, csr_with, ec_key, openssl, p256, rsa};
use openssl::nid::Nid;
use proptest::prelude::*;
use steward_pki::csr::{Csr, CsrError, CsrLimits, DEFAULT_MAX_CSR_LEN, KeyKind, SanEntry};

fn parse(der: &[u8]) -> Result<Csr, CsrError> {
    Csr::from_der(der, CsrLimits::default())
}

/// Runs `openssl req` in a temp dir and returns the DER CSR.
fn cli_csr(extra: &[&str], config: Option<&str>) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "req", "-new", "-nodes", "-keyout", "key.pem", "-outform", "DER", "-out", "csr.der",
    ];
    if let Some(cfg) = config {
        std::fs::write(dir.path().join("req.cnf"), cfg).unwrap();
        args.extend(["-config", "req.cnf"]);
    }
    args.extend(extra);
    let (ok, out) = openssl(&args, dir.path());
    assert!(ok, "{out}");
    std::fs::read(dir.path().join("csr.der")).unwrap()
}

#[test]
fn csr_from_the_openssl_cli_parses() {
    let der = cli_csr(
        &[
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-subj",
            "/CN=dev1",
        ],
        None,
    );
    let csr = parse(&der).unwrap();
    assert_eq!(csr.common_name(), Some("dev1"));
    assert_eq!(csr.require_common_name(), Ok("dev1"));
    assert_eq!(csr.key_kind(), KeyKind::EcP256);
    assert!(csr.san().is_empty());
    assert_eq!(csr.san_der(), None);
    assert_eq!(csr.challenge_password(), None);
    assert_eq!(csr.der(), der.as_slice());
    // The SPKI is the one in the request.
    let req = openssl::x509::X509Req::from_der(&der).unwrap();
    assert_eq!(
        csr.public_key_der().unwrap(),
        req.public_key().unwrap().public_key_to_der().unwrap()
    );
    // Subject DER is the Name SEQUENCE with one CN.
    assert_eq!(
        csr.subject_der(),
        req.subject_name().to_der().unwrap().as_slice()
    );
}

#[test]
fn cli_csr_with_san_and_challenge_password() {
    let config = "\
[req]
prompt = no
distinguished_name = dn
attributes = attrs
req_extensions = exts
[dn]
O = Acme
CN = dev2
[attrs]
challengePassword = s3cret-otp
[exts]
subjectAltName = DNS:dev2.example.com, URI:urn:dev:ops:32473-dev2, IP:192.0.2.7, email:ops@example.com, IP:2001:db8::1
";
    let der = cli_csr(
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
        Some(config),
    );
    let csr = parse(&der).unwrap();
    assert_eq!(csr.common_name(), Some("dev2"));
    assert_eq!(csr.key_kind(), KeyKind::EcP384);
    assert_eq!(csr.challenge_password(), Some("s3cret-otp"));
    assert_eq!(
        csr.san(),
        &[
            SanEntry::Dns("dev2.example.com".into()),
            SanEntry::Uri("urn:dev:ops:32473-dev2".into()),
            SanEntry::Ip("192.0.2.7".parse().unwrap()),
            SanEntry::Email("ops@example.com".into()),
            SanEntry::Ip("2001:db8::1".parse().unwrap()),
        ]
    );
    assert!(csr.san_der().is_some());
    // The password never reaches Debug output.
    let dbg = format!("{csr:?}");
    assert!(!dbg.contains("s3cret") && dbg.contains("redacted"), "{dbg}");
}

#[test]
fn rsa_2048_is_accepted_and_small_or_odd_keys_are_not() {
    let csr2048 = csr_with(&rsa(2048), &["rsa"], &[]);
    assert_eq!(
        parse(&csr2048).unwrap().key_kind(),
        KeyKind::Rsa { bits: 2048 }
    );

    let csr1024 = csr_with(&rsa(1024), &["rsa"], &[]);
    assert!(matches!(parse(&csr1024), Err(CsrError::UnsupportedKey(m)) if m.contains("1024")));

    let p224 = csr_with(&ec_key(Nid::SECP224R1), &["p224"], &[]);
    assert!(matches!(parse(&p224), Err(CsrError::UnsupportedKey(_))));

    let ed = cli_csr(&["-newkey", "ed25519", "-subj", "/CN=ed"], None);
    assert!(matches!(parse(&ed), Err(CsrError::UnsupportedKey(_))));
}

#[test]
fn flipped_signature_byte_is_a_bad_signature() {
    let (_, der) = csr("dev1");
    // The ECDSA signature is the tail of the request; flipping its last byte changes s but
    // keeps the DER valid, so only the signature check can catch it.
    let mut bad = der.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    assert_eq!(parse(&bad).unwrap_err(), CsrError::BadSignature);

    // Changing the signed content (a byte of the CN) is caught the same way.
    let pos = der.windows(4).position(|w| w == b"dev1").unwrap();
    let mut bad = der.clone();
    bad[pos + 3] = b'2';
    assert_eq!(parse(&bad).unwrap_err(), CsrError::BadSignature);

    assert!(parse(&der).is_ok());
}

#[test]
fn truncated_garbage_and_trailing_bytes_are_malformed() {
    let (_, der) = csr("dev1");
    for cut in [0, 1, 10, der.len() / 2, der.len() - 1] {
        assert!(
            matches!(parse(&der[..cut]), Err(CsrError::Malformed(_))),
            "cut at {cut}"
        );
    }
    assert!(matches!(
        parse(b"hello, I am not a CSR"),
        Err(CsrError::Malformed(_))
    ));
    let mut trailing = der.clone();
    trailing.push(0);
    assert!(matches!(parse(&trailing), Err(CsrError::Malformed(m)) if m.contains("after")));
}

#[test]
fn oversize_input_is_refused_before_parsing() {
    let big = vec![0x30; DEFAULT_MAX_CSR_LEN + 1];
    assert_eq!(
        parse(&big).unwrap_err(),
        CsrError::TooLarge {
            len: DEFAULT_MAX_CSR_LEN + 1,
            max: DEFAULT_MAX_CSR_LEN
        }
    );
    // A valid CSR over a tighter limit is refused too.
    let (_, der) = csr("dev1");
    let tight = CsrLimits {
        max_der_len: der.len() - 1,
    };
    assert!(matches!(
        Csr::from_der(&der, tight),
        Err(CsrError::TooLarge { .. })
    ));
    assert!(
        Csr::from_der(
            &der,
            CsrLimits {
                max_der_len: der.len()
            }
        )
        .is_ok()
    );
}

#[test]
fn common_name_rules() {
    let none = parse(&csr_with(&p256(), &[], &["x.example"])).unwrap();
    assert_eq!(none.common_name(), None);
    assert_eq!(none.require_common_name(), Err(CsrError::MissingCommonName));
    assert_eq!(none.san(), &[SanEntry::Dns("x.example".into())]);

    let nul = csr_with(&p256(), &["dev1\0admin"], &[]);
    assert!(matches!(parse(&nul), Err(CsrError::Malformed(m)) if m.contains("control")));

    let two = csr_with(&p256(), &["a", "b"], &[]);
    assert_eq!(parse(&two).unwrap_err(), CsrError::MultipleCommonNames);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn mutated_csrs_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let (_, der) = csr("mutant");
        let mut m = der.clone();
        for (i, v) in flips {
            let i = i % m.len();
            m[i] ^= v;
        }
        if parse(&m).is_ok() {
            // Whatever survives must still verify with its own key when checked independently.
            let req = openssl::x509::X509Req::from_der(&m).unwrap();
            prop_assert!(req.verify(&req.public_key().unwrap()).unwrap());
        }
    }
}
