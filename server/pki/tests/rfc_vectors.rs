//! RFC example payloads (tests/vectors/, sources in its README.md) through this crate's decoders:
//! RFC 9148 Appendix A (EST-coaps) and RFC 8710 (application/multipart-core).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use der::asn1::{PrintableStringRef, SetOfVec};
use der::{Any, Decode, Tag, Tagged};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::x509::{X509, X509NameRef};
use steward_coap::message::{Method, Request, encode_uint, option};
use steward_pki::csr::{Csr, CsrError, CsrLimits, KeyKind, SanEntry};
use steward_pki::est::{EstFunction, EstRequest, content_format};
use steward_pki::multipart::{self, Part};
use steward_pki::pkcs7;

/// Reads `tests/vectors/<name>`: hex digits, whitespace ignored, `#` starts a comment.
fn vector(name: &str) -> Vec<u8> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests/vectors", name]
        .iter()
        .collect();
    let text = std::fs::read_to_string(&path).unwrap();
    let digits: String = text
        .lines()
        .map(|line| line.split('#').next().unwrap())
        .flat_map(str::chars)
        .filter(|c| !c.is_whitespace())
        .collect();
    assert!(
        digits.len().is_multiple_of(2),
        "{name}: odd number of hex digits"
    );
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

fn csr(name: &str) -> Csr {
    Csr::from_der(&vector(name), CsrLimits::default()).unwrap()
}

/// The one certificate of a certs-only bundle.
fn only_cert(bundle: &[u8]) -> X509 {
    let certs = pkcs7::parse_certs_only(bundle).unwrap();
    assert_eq!(certs.len(), 1);
    X509::from_der(&certs[0]).unwrap()
}

/// The values of `nid` in a name, in order.
fn entries(name: &X509NameRef, nid: Nid) -> Vec<String> {
    name.entries_by_nid(nid)
        .map(|e| String::from_utf8(e.data().as_slice().to_vec()).unwrap())
        .collect()
}

fn serial_hex(cert: &X509) -> String {
    cert.serial_number()
        .to_bn()
        .unwrap()
        .to_hex_str()
        .unwrap()
        .to_string()
}

/// The Appendix C.2 subject: C=US, ST=CA, L=LA, O=example Inc, OU=IoT/serialNumber=Wt1234.
fn assert_device_subject(name: &X509NameRef) {
    assert_eq!(entries(name, Nid::COUNTRYNAME), ["US"]);
    assert_eq!(entries(name, Nid::STATEORPROVINCENAME), ["CA"]);
    assert_eq!(entries(name, Nid::LOCALITYNAME), ["LA"]);
    assert_eq!(entries(name, Nid::ORGANIZATIONNAME), ["example Inc"]);
    assert_eq!(entries(name, Nid::ORGANIZATIONALUNITNAME), ["IoT"]);
    assert_eq!(entries(name, Nid::SERIALNUMBER), ["Wt1234"]);
    assert!(entries(name, Nid::COMMONNAME).is_empty());
}

/// The P-256 key every RFC 9148 device example uses (Appendix C.2 and C.3 "pub: 04:c8:b4:21...").
const DEVICE_POINT_PREFIX: [u8; 5] = [0x04, 0xc8, 0xb4, 0x21, 0xf1];

fn assert_device_key(spki_der: &[u8]) {
    let key = PKey::public_key_from_der(spki_der).unwrap();
    let ec = key.ec_key().unwrap();
    assert_eq!(ec.group().curve_name(), Some(Nid::X9_62_PRIME256V1));
    let mut ctx = openssl::bn::BigNumContext::new().unwrap();
    let point = ec
        .public_key()
        .to_bytes(
            ec.group(),
            openssl::ec::PointConversionForm::UNCOMPRESSED,
            &mut ctx,
        )
        .unwrap();
    assert_eq!(point.len(), 65);
    assert_eq!(point[..5], DEVICE_POINT_PREFIX);
    assert_eq!(point[61..], [0x38, 0xe5, 0x9f, 0xd9]);
}

// ---------------------------------------------------------------------------------------------
// RFC 9148 Appendix A.1: cacerts
// ---------------------------------------------------------------------------------------------

#[test]
fn rfc9148_a1_crts_response_is_one_self_signed_root() {
    let bundle = vector("rfc9148-a1-crts-response.hex");
    assert_eq!(bundle.len(), 638);
    let root = only_cert(&bundle);
    // Appendix C.1.
    let subject = root.subject_name();
    assert_eq!(entries(subject, Nid::COMMONNAME), ["Root CA"]);
    assert_eq!(entries(subject, Nid::ORGANIZATIONNAME), ["Example Inc"]);
    assert_eq!(
        entries(subject, Nid::ORGANIZATIONALUNITNAME),
        ["certification"]
    );
    assert_eq!(entries(subject, Nid::COUNTRYNAME), ["US"]);
    assert_eq!(entries(subject, Nid::STATEORPROVINCENAME), ["CA"]);
    assert_eq!(entries(subject, Nid::LOCALITYNAME), ["LA"]);
    assert_eq!(
        root.issuer_name().to_der().unwrap(),
        subject.to_der().unwrap()
    );
    assert_eq!(serial_hex(&root), "0B8BB0FE604F6A1E");
    assert_eq!(root.not_before().to_string(), "Jan 31 11:27:03 2019 GMT");
    assert_eq!(root.not_after().to_string(), "Jan 26 11:27:03 2039 GMT");
    let san = root.subject_alt_names().unwrap();
    assert_eq!(san.len(), 1);
    assert_eq!(san.get(0).unwrap().email(), Some("certify@example.com"));
    assert!(root.verify(&root.public_key().unwrap()).unwrap());
}

#[test]
fn rfc9148_a1_crts_request_options() {
    // The A.1 header listing: GET, Uri-Host "example.com", Uri-Port 9085, Uri-Path "est" "crts",
    // Accept 281, empty payload.
    let req = Request::new(Method::Get)
        .with_option(option::URI_HOST, b"example.com".to_vec())
        .with_option(option::URI_PORT, encode_uint(9085))
        .with_path("/est/crts")
        .with_option(option::ACCEPT, encode_uint(281));
    let est = EstRequest::from_coap(&req, None).unwrap();
    assert_eq!(est.method, Method::Get);
    assert_eq!(est.path, ["est", "crts"]);
    assert_eq!(est.accept, Some(content_format::CERTS_ONLY));
    assert_eq!(est.content_format, None);
    assert!(est.payload.is_empty());
    let function = EstFunction::from_short(&est.path[1]).unwrap();
    assert_eq!(function, EstFunction::Crts);
    assert_eq!(function.method(), est.method);
}

// ---------------------------------------------------------------------------------------------
// RFC 9148 Appendix A.2: enroll / reenroll
// ---------------------------------------------------------------------------------------------

/// The challengePassword of A.2 (Appendix C.2 "<256-bit PoP linking value>"): a 37-byte
/// UTF8String whose bytes 12..18 are `c3 a2 c2 80 c2 99`, i.e. U+00E2 U+0080 U+0099.
const A2_CHALLENGE_PASSWORD: &str = "vCv0)*&JKJ;\u{e2}\u{80}\u{99}/><.,=knv43##@= Nx~`";

#[test]
fn rfc9148_a2_sen_request_csr() {
    let der = vector("rfc9148-a2-sen-request.hex");
    assert_eq!(der.len(), 399);
    let csr = Csr::from_der(&der, CsrLimits::default()).unwrap();
    assert_device_subject(csr.subject_name());
    // No CN in the subject: a CA that needs one refuses it with the documented error.
    assert_eq!(csr.common_name(), None);
    assert_eq!(csr.require_common_name(), Err(CsrError::MissingCommonName));
    assert_eq!(csr.key_kind(), KeyKind::EcP256);
    assert_device_key(&csr.public_key_der().unwrap());
    assert_eq!(csr.challenge_password(), Some(A2_CHALLENGE_PASSWORD));
    assert_eq!(A2_CHALLENGE_PASSWORD.len(), 37);
    // One SAN entry, the id-on-hardwareModuleName otherName (1.3.6.1.5.5.7.8.4) of Appendix C.2.
    assert_eq!(csr.san().len(), 1);
    assert!(matches!(csr.san()[0], SanEntry::Other(_)));
    let san_der = csr.san_der().unwrap();
    let hw_module_name_oid = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x08, 0x04];
    assert!(san_der.windows(10).any(|w| w == hw_module_name_oid));
}

#[test]
fn rfc9148_a2_sen_request_signature_is_checked() {
    // The RFC's CSR verifies as printed (above); the same bytes with one bit of the signature
    // flipped do not: the vector really exercises proof of possession.
    let mut der = vector("rfc9148-a2-sen-request.hex");
    let last = der.len() - 1;
    der[last] ^= 0x01;
    assert_eq!(
        Csr::from_der(&der, CsrLimits::default()).unwrap_err(),
        CsrError::BadSignature
    );
}

#[test]
fn rfc9148_a2_sen_request_options() {
    // POST [2001:db8::2:321]:61616/est/sen, Accept 281, Content-Format 286.
    let csr_der = vector("rfc9148-a2-sen-request.hex");
    let req = Request::new(Method::Post)
        .with_path("/est/sen")
        .with_option(option::ACCEPT, encode_uint(281))
        .with_payload(286, csr_der.clone());
    let est = EstRequest::from_coap(&req, None).unwrap();
    assert_eq!(est.path, ["est", "sen"]);
    assert_eq!(est.content_format, Some(content_format::PKCS10));
    assert_eq!(est.accept, Some(content_format::CERTS_ONLY));
    assert_eq!(est.payload, csr_der.as_slice());
    let function = EstFunction::from_short(&est.path[1]).unwrap();
    assert_eq!(function, EstFunction::Sen);
    assert_eq!(function.method(), est.method);
}

#[test]
fn rfc9148_a2_sen_response_certifies_the_request() {
    let bundle = vector("rfc9148-a2-sen-response.hex");
    assert_eq!(bundle.len(), 626);
    let cert = only_cert(&bundle);
    let csr = csr("rfc9148-a2-sen-request.hex");
    // Appendix C.2: the issued certificate has the CSR's subject and key.
    assert_device_subject(cert.subject_name());
    assert_eq!(cert.subject_name().to_der().unwrap(), csr.subject_der());
    assert_eq!(
        cert.public_key().unwrap().public_key_to_der().unwrap(),
        csr.public_key_der().unwrap()
    );
    assert_eq!(serial_hex(&cert), "7E7661D7B54E4632");
    let issuer = cert.issuer_name();
    assert_eq!(entries(issuer, Nid::COMMONNAME), ["802.1AR CA"]);
    assert_eq!(entries(issuer, Nid::ORGANIZATIONNAME), ["Example Inc"]);
    assert_eq!(
        entries(issuer, Nid::ORGANIZATIONALUNITNAME),
        ["certification"]
    );
    assert_eq!(cert.not_before().to_string(), "Jan 31 11:29:16 2019 GMT");
    // 99991231235959Z: "no well-defined expiration date" (RFC 5280 §4.1.2.5).
    assert_eq!(cert.not_after().to_string(), "Dec 31 23:59:59 9999 GMT");
}

// ---------------------------------------------------------------------------------------------
// RFC 9148 Appendix A.3: serverkeygen
// ---------------------------------------------------------------------------------------------

#[test]
fn rfc9148_a3_skg_request_csr() {
    let der = vector("rfc9148-a3-skg-request.hex");
    assert_eq!(der.len(), 211);
    let csr = Csr::from_der(&der, CsrLimits::default()).unwrap();
    // Appendix C.3: Subject O=skg example, attributes a0:00 (none).
    let subject = csr.subject_name();
    assert_eq!(entries(subject, Nid::ORGANIZATIONNAME), ["skg example"]);
    assert_eq!(subject.entries().count(), 1);
    assert_eq!(csr.common_name(), None);
    assert_eq!(csr.challenge_password(), None);
    assert!(csr.san().is_empty());
    assert_eq!(csr.san_der(), None);
    assert_eq!(csr.key_kind(), KeyKind::EcP256);
    // The same device key as A.2.
    assert_eq!(
        csr.public_key_der().unwrap(),
        self::csr("rfc9148-a2-sen-request.hex")
            .public_key_der()
            .unwrap()
    );
}

#[test]
fn rfc9148_a3_skg_request_options() {
    // POST 192.0.2.1:8085/est/skg, Accept 62, Content-Format 286.
    let req = Request::new(Method::Post)
        .with_path("/est/skg")
        .with_option(option::ACCEPT, encode_uint(62))
        .with_payload(286, vector("rfc9148-a3-skg-request.hex"));
    let est = EstRequest::from_coap(&req, None).unwrap();
    assert_eq!(est.path, ["est", "skg"]);
    assert_eq!(est.accept, Some(multipart::CONTENT_FORMAT));
    assert_eq!(est.content_format, Some(content_format::PKCS10));
    let function = EstFunction::from_short(&est.path[1]).unwrap();
    assert_eq!(function, EstFunction::Skg);
    assert_eq!(function.method(), est.method);
}

#[test]
fn rfc9148_a3_skg_response_multipart() {
    let body = vector("rfc9148-a3-skg-response.hex");
    assert_eq!(body.len(), 617);
    let parts = multipart::decode(&body).unwrap();
    let formats: Vec<u16> = parts.iter().map(|p| p.content_format).collect();
    assert_eq!(formats, [content_format::PKCS8, content_format::CERTS_ONLY]);
    let key_der = parts[0].payload.as_deref().unwrap();
    let bundle = parts[1].payload.as_deref().unwrap();
    // The annotated lengths: bytes(138) and bytes(467).
    assert_eq!(key_der.len(), 138);
    assert_eq!(bundle.len(), 467);
    // Our encoder writes the RFC's bytes back (preferred serialization throughout).
    assert_eq!(multipart::encode(&parts).unwrap(), body);

    // Part 284: unencrypted PKCS#8 P-256 key, priv 61:33:6a:86:... (Appendix C.3).
    let key = PKey::private_key_from_pkcs8(key_der).unwrap();
    let ec = key.ec_key().unwrap();
    assert_eq!(ec.group().curve_name(), Some(Nid::X9_62_PRIME256V1));
    assert_eq!(
        ec.private_key().to_hex_str().unwrap().to_string(),
        "61336A86AC6E7AF4A96F632830AD4E6AA0837679206094D7679A01CA8C6F0C37"
    );
    let key_spki = key.public_key_to_der().unwrap();
    assert_device_key(&key_spki);

    // Part 281: one self-signed certificate O=skg example for that key.
    let cert = only_cert(bundle);
    assert_eq!(
        entries(cert.subject_name(), Nid::ORGANIZATIONNAME),
        ["skg example"]
    );
    assert_eq!(
        cert.issuer_name().to_der().unwrap(),
        cert.subject_name().to_der().unwrap()
    );
    assert_eq!(serial_hex(&cert), "B3313E8F3FC9538E");
    assert_eq!(cert.not_before().to_string(), "Sep  4 07:44:03 2019 GMT");
    assert_eq!(cert.not_after().to_string(), "Aug 30 07:44:03 2039 GMT");
    assert_eq!(
        cert.public_key().unwrap().public_key_to_der().unwrap(),
        key_spki
    );
    assert!(cert.verify(&key).unwrap());
    // The key answers the A.3 request's CSR.
    assert_eq!(
        key_spki,
        csr("rfc9148-a3-skg-request.hex").public_key_der().unwrap()
    );
}

// ---------------------------------------------------------------------------------------------
// RFC 9148 Appendix A.4: csrattrs (RFC 7030 Appendix A.2's example)
// ---------------------------------------------------------------------------------------------

/// One CsrAttrs element (RFC 7030 §4.5.2): `AttrOrOID ::= CHOICE { oid, attribute }`, OIDs in
/// dotted form.
#[derive(Debug, PartialEq, Eq)]
enum AttrOrOid {
    Oid(String),
    Attribute(String, Vec<Any>),
}

/// Dotted form of an OBJECT IDENTIFIER. Written out because `const-oid` (behind `der`) refuses
/// arcs such as 2.999, which the RFC 7030 example uses on purpose.
fn dotted(oid: &Any) -> String {
    assert_eq!(oid.tag(), Tag::ObjectIdentifier);
    let mut arcs: Vec<u128> = Vec::new();
    let mut arc: u128 = 0;
    for &b in oid.value() {
        arc = (arc << 7) | u128::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (arc / 40).min(2);
                arcs.extend([first, arc - 40 * first]);
            } else {
                arcs.push(arc);
            }
            arc = 0;
        }
    }
    let arcs: Vec<String> = arcs.iter().map(u128::to_string).collect();
    arcs.join(".")
}

/// This crate serves csrattrs but has no decoder for it; read it with `der` directly.
fn csr_attrs(der: &[u8]) -> Vec<AttrOrOid> {
    Vec::<Any>::from_der(der)
        .unwrap()
        .into_iter()
        .map(|item| match item.tag() {
            Tag::ObjectIdentifier => AttrOrOid::Oid(dotted(&item)),
            Tag::Sequence => {
                let fields: Vec<Any> = item.decode_as().unwrap();
                assert_eq!(fields.len(), 2);
                let values: SetOfVec<Any> = fields[1].decode_as().unwrap();
                AttrOrOid::Attribute(dotted(&fields[0]), values.into_vec())
            }
            other => panic!("unexpected {other} in CsrAttrs"),
        })
        .collect()
}

fn oid(s: &str) -> String {
    s.to_string()
}

fn printable(value: &Any) -> String {
    value
        .decode_as::<PrintableStringRef<'_>>()
        .unwrap()
        .as_str()
        .to_string()
}

#[test]
fn rfc9148_a4_att_response_csrattrs() {
    let der = vector("rfc9148-a4-att-response.hex");
    assert_eq!(der.len(), 126);
    let attrs = csr_attrs(&der);
    assert_eq!(attrs.len(), 6);
    // macAddress (RFC 2307).
    assert_eq!(attrs[0], AttrOrOid::Oid(oid("1.3.6.1.1.1.1.22")));
    let AttrOrOid::Attribute(ty, values) = &attrs[1] else {
        panic!("{:?}", attrs[1])
    };
    assert_eq!(*ty, oid("2.999.1"));
    assert_eq!(values.len(), 1);
    assert_eq!(printable(&values[0]), "Parse SET as 2.999.1 data");
    // challengePassword (PKCS#9).
    assert_eq!(attrs[2], AttrOrOid::Oid(oid("1.2.840.113549.1.9.7")));
    let AttrOrOid::Attribute(ty, values) = &attrs[3] else {
        panic!("{:?}", attrs[3])
    };
    assert_eq!(*ty, oid("2.999.2"));
    assert_eq!(values.len(), 3);
    assert_eq!(dotted(&values[0]), "2.999.3");
    assert_eq!(dotted(&values[1]), "2.999.4");
    assert_eq!(printable(&values[2]), "Parse SET as 2.999.2 data");
    // brainpoolP384r1 and SHA-384.
    assert_eq!(attrs[4], AttrOrOid::Oid(oid("1.3.36.3.3.2.8.1.1.11")));
    assert_eq!(attrs[5], AttrOrOid::Oid(oid("2.16.840.1.101.3.4.2.2")));
}

#[test]
fn rfc9148_a4_att_request_options() {
    // GET example.com:61616/est/att; the response is Content-Format 285.
    let req = Request::new(Method::Get).with_path("/est/att");
    let est = EstRequest::from_coap(&req, None).unwrap();
    assert_eq!(est.path, ["est", "att"]);
    assert_eq!(est.accept, None);
    let function = EstFunction::from_short(&est.path[1]).unwrap();
    assert_eq!(function, EstFunction::Att);
    assert_eq!(function.method(), est.method);
    assert_eq!(function.response_formats(), [content_format::CSRATTRS]);
}

// ---------------------------------------------------------------------------------------------
// RFC 8710: application/multipart-core
// ---------------------------------------------------------------------------------------------

#[test]
fn rfc8710_section2_two_representations() {
    let body = vector("rfc8710-2-two-parts.hex");
    let parts = multipart::decode(&body).unwrap();
    assert_eq!(
        parts,
        [
            Part::new(42, hex_bytes("0123456789abcdef")),
            Part::new(0, b"01234".to_vec()),
        ]
    );
    assert_eq!(multipart::encode(&parts).unwrap(), body);
}

#[test]
fn rfc8710_section4_single_text_object() {
    let body = vector("rfc8710-4-hello.hex");
    assert_eq!(body[..3], [0x82, 0x00, 0x4b]);
    let parts = multipart::decode(&body).unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].content_format, 0);
    let text = parts[0].payload.as_deref().unwrap();
    assert_eq!(text.len(), 11);
    // The quoted value is "Hello World", the printed bytes spell "w": see the README.
    assert!(text.eq_ignore_ascii_case(b"Hello World"));
    assert_eq!(multipart::encode(&parts).unwrap(), body);
}

#[test]
fn rfc8710_section4_no_representations() {
    let body = vector("rfc8710-4-empty.hex");
    assert_eq!(body, [0x80]);
    assert!(multipart::decode(&body).unwrap().is_empty());
    assert_eq!(multipart::encode(&[]).unwrap(), body);
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
