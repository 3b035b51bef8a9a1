//! A throw-away PKI for the CRL, OCSP and PKCS#7 tests: root → issuing CA → leaves, plus
//! delegated OCSP responder certificates. Built with openssl directly so that the tests do not
//! depend on the crate's own CA code.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use openssl::asn1::{Asn1Integer, Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509Builder, X509Extension, X509Name, X509Ref};

pub struct Ca {
    pub cert: X509,
    pub key: PKey<Private>,
}

pub struct Pki {
    pub root: Ca,
    pub issuing: Ca,
}

pub fn now() -> SystemTime {
    SystemTime::now()
}

pub fn p256_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn name(cn: &str) -> X509Name {
    let mut n = X509Name::builder().unwrap();
    n.append_entry_by_text("O", "Steward test").unwrap();
    n.append_entry_by_text("CN", cn).unwrap();
    n.build()
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64
}

enum Kind {
    Ca,
    Leaf,
    OcspResponder { eku: bool },
}

fn build(cn: &str, serial: u32, key: &PKey<Private>, issuer: Option<&Ca>, kind: Kind) -> X509 {
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    let serial = Asn1Integer::from_bn(&BigNum::from_u32(serial).unwrap()).unwrap();
    b.set_serial_number(&serial).unwrap();
    let subject = name(cn);
    b.set_subject_name(&subject).unwrap();
    b.set_issuer_name(issuer.map_or(&subject, |i| i.cert.subject_name()))
        .unwrap();
    b.set_pubkey(key).unwrap();
    let t = unix(now());
    b.set_not_before(&Asn1Time::from_unix(t - 3600).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::from_unix(t + 30 * 86_400).unwrap())
        .unwrap();
    match kind {
        Kind::Ca => {
            b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
            b.append_extension(
                KeyUsage::new()
                    .critical()
                    .key_cert_sign()
                    .crl_sign()
                    .build()
                    .unwrap(),
            )
            .unwrap();
        }
        Kind::Leaf => {
            b.append_extension(BasicConstraints::new().critical().build().unwrap())
                .unwrap();
            b.append_extension(
                KeyUsage::new()
                    .critical()
                    .digital_signature()
                    .build()
                    .unwrap(),
            )
            .unwrap();
            b.append_extension(ExtendedKeyUsage::new().server_auth().build().unwrap())
                .unwrap();
        }
        Kind::OcspResponder { eku } => {
            b.append_extension(
                KeyUsage::new()
                    .critical()
                    .digital_signature()
                    .build()
                    .unwrap(),
            )
            .unwrap();
            if eku {
                b.append_extension(
                    ExtendedKeyUsage::new()
                        .other("OCSPSigning")
                        .build()
                        .unwrap(),
                )
                .unwrap();
            }
            // id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1), value NULL.
            let oid = Asn1Object::from_str("1.3.6.1.5.5.7.48.1.5").unwrap();
            let null = Asn1OctetString::new_from_bytes(&[0x05, 0x00]).unwrap();
            b.append_extension(X509Extension::new_from_der(&oid, false, &null).unwrap())
                .unwrap();
        }
    }
    let ski = SubjectKeyIdentifier::new()
        .build(&b.x509v3_context(issuer.map(|i| &*i.cert), None))
        .unwrap();
    b.append_extension(ski).unwrap();
    if let Some(i) = issuer {
        let aki = AuthorityKeyIdentifier::new()
            .keyid(true)
            .build(&b.x509v3_context(Some(&i.cert), None))
            .unwrap();
        b.append_extension(aki).unwrap();
    }
    b.sign(issuer.map_or(key, |i| &i.key), MessageDigest::sha256())
        .unwrap();
    b.build()
}

impl Pki {
    pub fn new() -> Pki {
        let root_key = p256_key();
        let root = Ca {
            cert: build("Test Root", 1, &root_key, None, Kind::Ca),
            key: root_key,
        };
        let issuing_key = p256_key();
        let issuing = Ca {
            cert: build("Test Issuing CA", 2, &issuing_key, Some(&root), Kind::Ca),
            key: issuing_key,
        };
        Pki { root, issuing }
    }

    /// A server/device certificate issued by the issuing CA.
    pub fn leaf(&self, cn: &str, serial: u32) -> (X509, PKey<Private>) {
        let key = p256_key();
        let cert = build(cn, serial, &key, Some(&self.issuing), Kind::Leaf);
        (cert, key)
    }

    /// A delegated OCSP responder certificate issued by `issuer`.
    pub fn responder(issuer: &Ca, serial: u32, with_ocsp_eku: bool) -> Ca {
        let key = p256_key();
        let cert = build(
            "Test OCSP responder",
            serial,
            &key,
            Some(issuer),
            Kind::OcspResponder { eku: with_ocsp_eku },
        );
        Ca { cert, key }
    }
}

/// Another, unrelated CA (same names, different keys): its certificates must not be vouched
/// for by our responder.
pub fn foreign_ca() -> Ca {
    let key = p256_key();
    Ca {
        cert: build("Test Issuing CA", 2, &key, None, Kind::Ca),
        key,
    }
}

pub fn foreign_leaf(ca: &Ca, serial: u32) -> X509 {
    build("foreign", serial, &p256_key(), Some(ca), Kind::Leaf)
}

pub fn write_pem(dir: &Path, file: &str, certs: &[&X509Ref]) -> PathBuf {
    let mut pem = Vec::new();
    for c in certs {
        pem.extend(c.to_pem().unwrap());
    }
    let path = dir.join(file);
    std::fs::write(&path, pem).unwrap();
    path
}

pub fn write(dir: &Path, file: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Runs /usr/bin/openssl and returns (success, stdout + stderr).
pub fn openssl_cli<I, S>(args: I) -> (bool, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = Command::new("/usr/bin/openssl")
        .args(args)
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

pub const HOUR: Duration = Duration::from_secs(3600);
