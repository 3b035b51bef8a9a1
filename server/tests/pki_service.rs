//! `PkiService` with a real sled store and real certificates: EST enrolment by factory
//! certificate and by PSK, the hostile inputs of the security rules (each refused with the
//! right code and nothing recorded), re-enrolment, revocation through OCSP and the CRL, and the
//! DTLS chain checks.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::ocsp::{OcspCertId, OcspCertStatus, OcspRequest, OcspResponse};
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509, X509Crl, X509NameBuilder, X509ReqBuilder, X509StoreContext};
use steward::pki::{CA_DIR, MANUFACTURERS_DIR, PkiService, PkiSettings};
use steward::store::{Credential, SecurityInfo, SledStore, Store};
use steward_coap::message::{Code, Method};
use steward_pki::ca::{Ca, CaNames, IssueParams, Serial};
use steward_pki::est::{EstClient, EstRequest, EstResponse};
use steward_pki::profile::Profile;
use steward_pki::records::{PkiStore, RevocationReason};

const DAY: u64 = 86_400;
const DEVICE: &str = "acme-0001";

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn p256() -> PKey<Private> {
    let group = openssl::ec::EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(openssl::ec::EcKey::generate(&group).unwrap()).unwrap()
}

fn csr_with(key: &PKey<Private>, cn: Option<&str>, dns_san: &[&str]) -> Vec<u8> {
    let mut name = X509NameBuilder::new().unwrap();
    if let Some(cn) = cn {
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

fn csr(cn: &str) -> Vec<u8> {
    csr_with(&p256(), Some(cn), &[])
}

/// A manufacturer CA (in its own directory) and factory certificates it issues.
struct Manufacturer {
    _dir: tempfile::TempDir,
    ca: Ca,
}

impl Manufacturer {
    fn new() -> Manufacturer {
        let dir = tempfile::tempdir().unwrap();
        let names = CaNames {
            organization: Some("Acme".into()),
            root_cn: "Acme Root".into(),
            issuing_cn: "Acme Devices CA".into(),
            ..CaNames::default()
        };
        // Created long ago, so that it can have issued certificates that have expired since.
        let ca = Ca::init(&dir.path().join("mfr"), &names, unix_now() - 1000 * DAY).unwrap();
        Manufacturer { _dir: dir, ca }
    }

    /// A factory chain (leaf, manufacturer issuing CA) for `device_id`, issued at `issued_at`.
    fn factory_chain(&self, device_id: &str, issued_at: u64) -> Vec<Vec<u8>> {
        let csr = steward_pki::csr::Csr::from_der(&csr(device_id), Default::default()).unwrap();
        let issued = self
            .ca
            .issue(
                &csr,
                &Profile::device(),
                IssueParams::new(Serial::random().unwrap(), issued_at),
            )
            .unwrap();
        vec![issued.der, self.ca.issuing_cert_der().to_vec()]
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<SledStore>,
    pki: PkiService,
    mfr: Manufacturer,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mfr = Manufacturer::new();
    install_manufacturer(dir.path(), &mfr);
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    store.allow_list_put(DEVICE).unwrap();
    let pki =
        PkiService::init_if_missing(dir.path(), store.clone(), PkiSettings::default()).unwrap();
    Fixture {
        _dir: dir,
        store,
        pki,
        mfr,
    }
}

fn install_manufacturer(data_dir: &Path, mfr: &Manufacturer) {
    let dir = data_dir.join(CA_DIR).join(MANUFACTURERS_DIR);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("acme.pem"),
        mfr.ca.issuing_cert().to_pem().unwrap(),
    )
    .unwrap();
}

fn post(pki: &PkiService, function: &str, csr: &[u8], client: EstClient) -> EstResponse {
    pki.est_service().handle(&EstRequest {
        method: Method::Post,
        path: vec![".well-known".into(), "est".into(), function.into()],
        query: vec![],
        content_format: Some(286),
        accept: Some(287),
        payload: csr,
        client: Some(client),
    })
}

fn cert_client(chain: &[Vec<u8>]) -> EstClient {
    let leaf = X509::from_der(&chain[0]).unwrap();
    let cn = leaf
        .subject_name()
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .map(|e| e.data().to_string().unwrap());
    EstClient::Certificate {
        common_name: cn,
        chain: chain.to_vec(),
    }
}

fn reason(r: &EstResponse) -> String {
    r.audit
        .as_ref()
        .map(|a| a.reason.clone())
        .unwrap_or_default()
}

/// Every certificate recorded for the endpoints the tests use.
fn recorded(store: &SledStore) -> usize {
    [
        "acme-0001",
        "acme-0002",
        "acme-0003",
        "acme-old",
        "psk-dev",
        "other",
    ]
    .iter()
    .map(|ep| store.issued_for_endpoint(ep).unwrap().len())
    .sum()
}

fn assert_refused(f: &Fixture, response: &EstResponse, code: Code, before: usize) {
    assert_eq!(
        response.code,
        code,
        "{:?}",
        String::from_utf8_lossy(&response.payload)
    );
    assert_eq!(
        recorded(&f.store),
        before,
        "a refusal recorded a certificate"
    );
}

/// Enrols DEVICE with its factory certificate; returns the operational chain and key.
fn enrol(f: &Fixture, san: &[&str]) -> (Vec<Vec<u8>>, PKey<Private>) {
    let factory = f.mfr.factory_chain(DEVICE, unix_now());
    let key = p256();
    let response = post(
        &f.pki,
        "sen",
        &csr_with(&key, Some(DEVICE), san),
        cert_client(&factory),
    );
    assert_eq!(response.code, Code::CHANGED, "{response:?}");
    let mut chain = vec![response.payload];
    chain.push(f.pki.ca_chain_der()[0].clone());
    (chain, key)
}

fn verify_with_openssl(f: &Fixture, leaf_der: &[u8]) -> bool {
    let mut builder = X509StoreBuilder::new().unwrap();
    for der in f.pki.ca_chain_der() {
        builder.add_cert(X509::from_der(&der).unwrap()).unwrap();
    }
    let store = builder.build();
    let leaf = X509::from_der(leaf_der).unwrap();
    let chain = Stack::new().unwrap();
    let mut ctx = X509StoreContext::new().unwrap();
    ctx.init(&store, &leaf, &chain, |c| c.verify_cert())
        .unwrap()
}

#[test]
fn factory_certificate_enrols_and_the_certificate_verifies() {
    let f = fixture();
    let (chain, _key) = enrol(&f, &[]);
    assert!(verify_with_openssl(&f, &chain[0]));
    let leaf = X509::from_der(&chain[0]).unwrap();
    let cn = leaf.subject_name().entries_by_nid(Nid::COMMONNAME).next();
    assert_eq!(cn.unwrap().data().to_string().unwrap(), DEVICE);
    let records = f.pki.issued_for_endpoint(DEVICE).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].der, chain[0]);
    assert_eq!(records[0].profile, "device");
    // The DTLS checks: the factory chain opens the bootstrap port with the device ID, the
    // operational chain opens both ports.
    let factory = f.mfr.factory_chain(DEVICE, unix_now());
    match f.pki.verify_bootstrap_chain(&factory).unwrap() {
        steward_dtls::Identity::X509 { common_name, .. } => {
            assert_eq!(common_name.as_deref(), Some(DEVICE));
        }
        other => panic!("{other:?}"),
    }
    f.pki.verify_bootstrap_chain(&chain).unwrap();
    f.pki.verify_operational_chain(&chain, &[]).unwrap();
    assert!(f.pki.verify_operational_chain(&factory, &[]).is_err());
}

#[test]
fn hostile_enrolments_are_refused_and_nothing_is_recorded() {
    let f = fixture();
    let now = unix_now();
    let factory = cert_client(&f.mfr.factory_chain(DEVICE, now));
    let before = recorded(&f.store);

    // A CSR whose signature does not verify: no proof of possession.
    let mut bad_sig = csr(DEVICE);
    let last = bad_sig.len() - 1;
    bad_sig[last] ^= 0x01;
    let r = post(&f.pki, "sen", &bad_sig, factory.clone());
    assert_refused(&f, &r, Code::BAD_REQUEST, before);
    assert!(reason(&r).contains("signature"), "{}", reason(&r));

    // A CSR naming another endpoint than the factory certificate's device ID.
    let r = post(&f.pki, "sen", &csr("acme-0002"), factory.clone());
    assert_refused(&f, &r, Code::BAD_REQUEST, before);
    assert!(reason(&r).contains("another endpoint"), "{}", reason(&r));

    // A factory certificate whose device ID the manufacturer never reported.
    let unlisted = cert_client(&f.mfr.factory_chain("acme-0003", now));
    let r = post(&f.pki, "sen", &csr("acme-0003"), unlisted);
    assert_refused(&f, &r, Code::FORBIDDEN, before);
    assert!(reason(&r).contains("allow-list"), "{}", reason(&r));

    // An expired factory certificate, even on the allow-list.
    f.store.allow_list_put("acme-old").unwrap();
    let expired = cert_client(&f.mfr.factory_chain("acme-old", now - 400 * DAY));
    let r = post(&f.pki, "sen", &csr("acme-old"), expired);
    assert_refused(&f, &r, Code::FORBIDDEN, before);
    assert!(reason(&r).contains("expired"), "{}", reason(&r));

    // A certificate of an unknown manufacturer.
    let stranger = Manufacturer::new();
    let foreign = cert_client(&stranger.factory_chain(DEVICE, now));
    let r = post(&f.pki, "sen", &csr(DEVICE), foreign);
    assert_refused(&f, &r, Code::FORBIDDEN, before);

    // Oversize and garbage PKCS#10.
    let r = post(&f.pki, "sen", &vec![0x30; 5000], factory.clone());
    assert_refused(&f, &r, Code::REQUEST_ENTITY_TOO_LARGE, before);
    let r = post(
        &f.pki,
        "sen",
        &[0x30, 0x03, 0x02, 0x01, 0x01],
        factory.clone(),
    );
    assert_refused(&f, &r, Code::BAD_REQUEST, before);

    // A factory certificate cannot re-enrol.
    let r = post(&f.pki, "sren", &csr(DEVICE), factory);
    assert_refused(&f, &r, Code::FORBIDDEN, before);
}

#[test]
fn psk_enrolment_is_bound_to_the_security_store() {
    let f = fixture();
    f.store
        .put_security(&SecurityInfo {
            endpoint: "psk-dev".into(),
            credential: Credential::Psk {
                identity: b"psk-id".to_vec(),
                key: vec![1; 16],
            },
        })
        .unwrap();
    let client = EstClient::Psk {
        identity: b"psk-id".to_vec(),
    };
    let before = recorded(&f.store);
    let r = post(&f.pki, "sen", &csr("other"), client.clone());
    assert_refused(&f, &r, Code::BAD_REQUEST, before);
    let stranger = EstClient::Psk {
        identity: b"nobody".to_vec(),
    };
    let r = post(&f.pki, "sen", &csr("psk-dev"), stranger);
    assert_refused(&f, &r, Code::FORBIDDEN, before);
    let r = post(&f.pki, "sen", &csr("psk-dev"), client);
    assert_eq!(r.code, Code::CHANGED);
    assert_eq!(f.pki.issued_for_endpoint("psk-dev").unwrap().len(), 1);
}

#[test]
fn reenrolment_keeps_subject_and_san_and_operational_certs_cannot_use_sen() {
    let f = fixture();
    let (chain, _) = enrol(&f, &["acme-0001.devices.example"]);
    let before = recorded(&f.store);
    let r = post(&f.pki, "sen", &csr(DEVICE), cert_client(&chain));
    assert_refused(&f, &r, Code::FORBIDDEN, before);

    // Renewal with a new key; the CSR asks for a different SAN, which is not granted.
    let new_key = p256();
    let r = post(
        &f.pki,
        "sren",
        &csr_with(&new_key, Some(DEVICE), &["evil.example"]),
        cert_client(&chain),
    );
    assert_eq!(r.code, Code::CHANGED, "{r:?}");
    let old = X509::from_der(&chain[0]).unwrap();
    let new = X509::from_der(&r.payload).unwrap();
    assert_eq!(
        old.subject_name().to_der().unwrap(),
        new.subject_name().to_der().unwrap()
    );
    let sans = |c: &X509| -> Vec<String> {
        c.subject_alt_names()
            .unwrap()
            .iter()
            .filter_map(|n| n.dnsname().map(str::to_owned))
            .collect()
    };
    assert_eq!(sans(&new), ["acme-0001.devices.example"]);
    assert!(new.public_key().unwrap().public_eq(&new_key));
    assert!(verify_with_openssl(&f, &r.payload));
    assert_eq!(f.pki.issued_for_endpoint(DEVICE).unwrap().len(), 2);

    // A renewal CSR that names someone else is refused.
    let before = recorded(&f.store);
    let r = post(&f.pki, "sren", &csr("acme-0002"), cert_client(&chain));
    assert_refused(&f, &r, Code::FORBIDDEN, before);
}

#[test]
fn revocation_shows_in_ocsp_crl_sren_and_dtls() {
    let f = fixture();
    let (chain, _) = enrol(&f, &[]);
    let leaf = X509::from_der(&chain[0]).unwrap();
    let issuing = X509::from_der(&f.pki.ca_chain_der()[0]).unwrap();
    let now = SystemTime::now();

    let ocsp_status = || {
        let id = OcspCertId::from_cert(MessageDigest::sha1(), &leaf, &issuing).unwrap();
        let mut req = OcspRequest::new().unwrap();
        req.add_id(id).unwrap();
        let response = f.pki.ocsp_response(&req.to_der().unwrap(), now);
        let response = OcspResponse::from_der(&response).unwrap();
        let basic = response.basic().unwrap();
        let id = OcspCertId::from_cert(MessageDigest::sha1(), &leaf, &issuing).unwrap();
        basic.find_status(&id).unwrap().status
    };
    assert_eq!(ocsp_status(), OcspCertStatus::GOOD);
    let crl_before = f.pki.crl_der(now).unwrap();
    assert!(!f.pki.is_revoked(&chain[0]).unwrap());

    let serial = Serial::from_asn1(leaf.serial_number()).unwrap();
    assert!(
        f.pki
            .revoke_serial(&serial, RevocationReason::KeyCompromise, now)
            .unwrap()
    );
    assert!(
        !f.pki
            .revoke_serial(&serial, RevocationReason::KeyCompromise, now)
            .unwrap()
    );
    assert!(f.pki.is_revoked(&chain[0]).unwrap());
    assert_eq!(ocsp_status(), OcspCertStatus::REVOKED);

    let crl = X509Crl::from_der(&f.pki.crl_der(now).unwrap()).unwrap();
    assert!(crl.verify(&issuing.public_key().unwrap()).unwrap());
    let listed: Vec<Vec<u8>> = crl
        .get_revoked()
        .unwrap()
        .iter()
        .map(|r| r.serial_number().to_bn().unwrap().to_vec())
        .collect();
    assert_eq!(listed, [serial.as_bytes().to_vec()]);
    assert_ne!(crl.to_der().unwrap(), crl_before);

    let before = recorded(&f.store);
    let r = post(&f.pki, "sren", &csr(DEVICE), cert_client(&chain));
    assert_refused(&f, &r, Code::FORBIDDEN, before);
    assert!(f.pki.verify_operational_chain(&chain, &[]).is_err());
    assert!(f.pki.verify_bootstrap_chain(&chain).is_err());
}

#[test]
fn revoke_endpoint_counts_and_load_finds_the_ca() {
    let f = fixture();
    // Two certificates for the endpoint: the first enrolment and a re-enrolment.
    let (chain, _key) = enrol(&f, &[]);
    let renewed = post(&f.pki, "sren", &csr(DEVICE), cert_client(&chain));
    assert_eq!(renewed.code, Code::CHANGED, "{renewed:?}");
    let now = SystemTime::now();
    assert_eq!(
        f.pki
            .revoke_endpoint(DEVICE, RevocationReason::CessationOfOperation, now)
            .unwrap(),
        2
    );
    assert_eq!(
        f.pki
            .revoke_endpoint(DEVICE, RevocationReason::CessationOfOperation, now)
            .unwrap(),
        0
    );
    let data = f._dir.path();
    let loaded = PkiService::load(data, f.store.clone(), PkiSettings::default())
        .unwrap()
        .unwrap();
    assert_eq!(loaded.ca_chain_der(), f.pki.ca_chain_der());
    assert_eq!(loaded.manufacturer_cas_der().len(), 1);
    let empty = tempfile::tempdir().unwrap();
    assert!(
        PkiService::load(empty.path(), f.store.clone(), PkiSettings::default())
            .unwrap()
            .is_none()
    );
}

#[test]
fn server_certificate_is_kept_and_reissued_when_revoked() {
    let f = fixture();
    let (chain_pem, key_pem, leaf) = f.pki.server_certificate("steward.example").unwrap();
    assert!(verify_with_openssl(&f, &leaf));
    let chain = X509::stack_from_pem(chain_pem.as_bytes()).unwrap();
    assert_eq!(chain.len(), 2);
    let key = PKey::private_key_from_pem(key_pem.as_bytes()).unwrap();
    assert!(chain[0].public_key().unwrap().public_eq(&key));
    let key_path = f._dir.path().join(CA_DIR).join("server-key.pem");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_path).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    // Same answer while it is good.
    assert_eq!(f.pki.server_certificate("steward.example").unwrap().2, leaf);
    // A new CN or a revocation re-issues.
    let serial = Serial::from_asn1(chain[0].serial_number()).unwrap();
    f.pki
        .revoke_serial(&serial, RevocationReason::KeyCompromise, SystemTime::now())
        .unwrap();
    let (_, _, reissued) = f.pki.server_certificate("steward.example").unwrap();
    assert_ne!(reissued, leaf);
    let (_, _, renamed) = f.pki.server_certificate("other.example").unwrap();
    assert_ne!(renamed, reissued);
}

#[test]
fn csr_attrs_and_crts() {
    let f = fixture();
    let client = cert_client(&f.mfr.factory_chain(DEVICE, unix_now()));
    let get = |function: &str, accept: Option<u16>| {
        f.pki.est_service().handle(&EstRequest {
            method: Method::Get,
            path: vec![".well-known".into(), "est".into(), function.into()],
            query: vec![],
            content_format: None,
            accept,
            payload: &[],
            client: Some(client.clone()),
        })
    };
    let att = get("att", None);
    assert_eq!(att.code, Code::CONTENT);
    // A DER SEQUENCE whose length covers the rest of the payload.
    assert_eq!(att.payload[0], 0x30);
    assert_eq!(usize::from(att.payload[1]) + 2, att.payload.len());
    let crts = get("crts", None);
    assert_eq!(crts.code, Code::CONTENT);
    let certs = steward_pki::pkcs7::parse_certs_only(&crts.payload).unwrap();
    assert_eq!(certs.len(), 2);
}

/// The same enrolment asked again (its answer was lost) gets the same certificate, and records
/// nothing new; only the key the certificate certifies can ask.
#[test]
fn a_lost_enrolment_answer_can_be_asked_for_again() {
    let f = fixture();
    let factory = cert_client(&f.mfr.factory_chain(DEVICE, unix_now()));
    let key = p256();
    let request = csr_with(&key, Some(DEVICE), &[]);
    let first = post(&f.pki, "sen", &request, factory.clone());
    assert_eq!(first.code, Code::CHANGED, "{first:?}");
    let before = recorded(&f.store);
    let again = post(&f.pki, "sen", &request, factory.clone());
    assert_eq!(again.code, Code::CHANGED, "{again:?}");
    assert_eq!(again.payload, first.payload, "the same certificate");
    assert_eq!(recorded(&f.store), before, "nothing new issued");
    // A new CSR for the same key (another encoding of the same request) is the same enrolment.
    let resigned = post(
        &f.pki,
        "sen",
        &csr_with(&key, Some(DEVICE), &[]),
        factory.clone(),
    );
    assert_eq!(resigned.payload, first.payload);
    // Another key is another enrolment: refused as before.
    let other = post(&f.pki, "sen", &csr(DEVICE), factory);
    assert_eq!(other.code, Code::FORBIDDEN, "{other:?}");
}

#[test]
fn factory_credentials_are_replaced_on_first_enrolment() {
    let f = fixture();
    let (chain, _key) = enrol(&f, &[]);
    let factory = cert_client(&f.mfr.factory_chain(DEVICE, unix_now()));
    let before = recorded(&f.store);

    // The same factory certificate again, with a fresh key: the device already holds a
    // valid operational certificate, so its factory credentials no longer enrol.
    let again = post(&f.pki, "sen", &csr(DEVICE), factory.clone());
    assert_refused(&f, &again, Code::FORBIDDEN, before);
    assert!(
        reason(&again).contains("already holds"),
        "{}",
        reason(&again)
    );

    // The operator revokes the lost certificate: the factory credentials are admitted again.
    let serial =
        steward_pki::ca::Serial::from_asn1(X509::from_der(&chain[0]).unwrap().serial_number())
            .unwrap();
    assert!(
        f.pki
            .revoke_serial(
                &serial,
                steward_pki::records::RevocationReason::Superseded,
                std::time::SystemTime::now()
            )
            .unwrap()
    );
    let admitted = post(&f.pki, "sen", &csr(DEVICE), factory);
    assert_eq!(admitted.code, Code::CHANGED, "{admitted:?}");
    assert_eq!(recorded(&f.store), before + 1);
}
