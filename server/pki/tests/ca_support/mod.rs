//! Helpers shared by the `ca_*`, `csr_*` and `policy_*` tests: keys, CSRs, hand-made CA and
//! device certificates with chosen validity, and the openssl CLI.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::stack::Stack;
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509, X509Builder, X509NameBuilder, X509Req, X509ReqBuilder};

/// 2025-06-15T16:26:40Z: a fixed "now" for tests that do not involve the openssl CLI.
pub const NOW: u64 = 1_750_004_800;
pub const DAY: u64 = 86_400;

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn ec_key(curve: Nid) -> PKey<Private> {
    PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(curve).unwrap()).unwrap()).unwrap()
}

pub fn p256() -> PKey<Private> {
    ec_key(Nid::X9_62_PRIME256V1)
}

pub fn rsa(bits: u32) -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(bits).unwrap()).unwrap()
}

/// A CSR signed by `key`, with the given CNs (none, one or several) and DNS SAN entries.
pub fn csr_with(key: &PKey<Private>, cns: &[&str], dns_san: &[&str]) -> Vec<u8> {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::ORGANIZATIONNAME, "Acme")
        .unwrap();
    for cn in cns {
        name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    }
    let name = name.build();
    let mut b = X509ReqBuilder::new().unwrap();
    b.set_version(0).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_pubkey(key).unwrap();
    if !dns_san.is_empty() {
        let mut san = SubjectAlternativeName::new();
        for d in dns_san {
            san.dns(d);
        }
        let ext = san.build(&b.x509v3_context(None)).unwrap();
        let mut exts = Stack::new().unwrap();
        exts.push(ext).unwrap();
        b.add_extensions(&exts).unwrap();
    }
    b.sign(key, MessageDigest::sha256()).unwrap();
    b.build().to_der().unwrap()
}

pub fn csr(cn: &str) -> (PKey<Private>, Vec<u8>) {
    let key = p256();
    let der = csr_with(&key, &[cn], &[]);
    (key, der)
}

/// What a hand-made test certificate looks like.
pub struct CertSpec<'a> {
    pub cn: &'a str,
    /// subject serialNumber attribute(s).
    pub serial_numbers: &'a [&'a str],
    pub ca: bool,
    pub not_before: u64,
    pub not_after: u64,
}

impl<'a> CertSpec<'a> {
    pub fn leaf(cn: &'a str) -> CertSpec<'a> {
        CertSpec {
            cn,
            serial_numbers: &[],
            ca: false,
            not_before: NOW - 30 * DAY,
            not_after: NOW + 3650 * DAY,
        }
    }

    pub fn ca(cn: &'a str) -> CertSpec<'a> {
        CertSpec {
            ca: true,
            ..CertSpec::leaf(cn)
        }
    }
}

/// Builds a certificate for `key` per `spec`, signed by `issuer` (self-signed if `None`).
/// No SKI/AKI, so that chains are built by name, as with many manufacturer PKIs.
pub fn cert(
    spec: &CertSpec<'_>,
    key: &PKey<Private>,
    issuer: Option<(&X509, &PKey<Private>)>,
) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, spec.cn).unwrap();
    for sn in spec.serial_numbers {
        name.append_entry_by_nid(Nid::SERIALNUMBER, sn).unwrap();
    }
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    let serial = BigNum::from_u32(rand_u32())
        .unwrap()
        .to_asn1_integer()
        .unwrap();
    b.set_serial_number(&serial).unwrap();
    b.set_subject_name(&name).unwrap();
    match issuer {
        Some((c, _)) => b.set_issuer_name(c.subject_name()).unwrap(),
        None => b.set_issuer_name(&name).unwrap(),
    }
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::from_unix(spec.not_before as i64).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::from_unix(spec.not_after as i64).unwrap())
        .unwrap();
    if spec.ca {
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
    } else {
        b.append_extension(BasicConstraints::new().critical().build().unwrap())
            .unwrap();
    }
    let signer = issuer.map(|(_, k)| k).unwrap_or(key);
    b.sign(signer, MessageDigest::sha256()).unwrap();
    b.build()
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    openssl::rand::rand_bytes(&mut b).unwrap();
    u32::from_be_bytes(b) | 1
}

pub fn parse_req(der: &[u8]) -> X509Req {
    X509Req::from_der(der).unwrap()
}

/// Runs the openssl CLI; returns (success, stdout+stderr).
pub fn openssl(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new("/usr/bin/openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run /usr/bin/openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
