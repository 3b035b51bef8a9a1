//! Factory-certificate policy: manufacturer CA + allow-list, and every refusal.
#![allow(clippy::unwrap_used)]

mod ca_support;

use ca_support::{CertSpec, DAY, NOW, cert, p256};
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use steward_pki::policy::{
    AllowList, DeviceIdSource, FactoryDevice, FactoryPolicy, ManufacturerCas, PolicyError, Refusal,
};
use steward_pki::records::{MemoryPkiStore, PkiStore};

/// A manufacturer: root → intermediate (the manufacturer CA that issues device certificates).
struct Manufacturer {
    root: X509,
    root_key: PKey<Private>,
    inter: X509,
    inter_key: PKey<Private>,
}

impl Manufacturer {
    fn new(name: &str) -> Manufacturer {
        let root_key = p256();
        let root = cert(&CertSpec::ca(&format!("{name} Root")), &root_key, None);
        let inter_key = p256();
        let inter = cert(
            &CertSpec::ca(&format!("{name} Device CA")),
            &inter_key,
            Some((&root, &root_key)),
        );
        Manufacturer {
            root,
            root_key,
            inter,
            inter_key,
        }
    }

    fn device(&self, spec: &CertSpec<'_>) -> Vec<u8> {
        cert(spec, &p256(), Some((&self.inter, &self.inter_key)))
            .to_der()
            .unwrap()
    }
}

/// A policy trusting Acme's intermediate (only), and an allow-list with dev-1 and SN-42.
fn setup() -> (Manufacturer, FactoryPolicy, AllowList) {
    let acme = Manufacturer::new("Acme");
    let mut cas = ManufacturerCas::new();
    cas.add_pem("acme", &acme.inter.to_pem().unwrap()).unwrap();
    let mut list = AllowList::new();
    list.insert("dev-1").unwrap();
    list.insert("SN-42").unwrap();
    (acme, FactoryPolicy::new(cas), list)
}

fn refusal(r: Result<FactoryDevice, PolicyError>) -> Refusal {
    match r {
        Err(PolicyError::Refused(r)) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn device_on_the_list_under_the_manufacturer_ca_is_accepted() {
    let (acme, policy, list) = setup();
    let leaf = acme.device(&CertSpec::leaf("dev-1"));
    let ok = policy
        .check(std::slice::from_ref(&leaf), NOW, &list)
        .unwrap();
    assert_eq!(
        ok,
        FactoryDevice {
            device_id: "dev-1".into(),
            manufacturer: "acme".into()
        }
    );
    // With the intermediate presented too (what a DTLS client sends) it is the same.
    let chain = vec![leaf, acme.inter.to_der().unwrap()];
    assert_eq!(policy.check(&chain, NOW, &list).unwrap().device_id, "dev-1");
}

#[test]
fn device_not_on_the_list_is_refused() {
    let (acme, policy, list) = setup();
    let leaf = acme.device(&CertSpec::leaf("dev-2"));
    assert_eq!(
        refusal(policy.check(&[leaf], NOW, &list)),
        Refusal::NotOnAllowList {
            device_id: "dev-2".into(),
            manufacturer: "acme".into()
        }
    );
}

#[test]
fn device_of_another_ca_is_an_unknown_manufacturer() {
    let (_acme, policy, list) = setup();
    let other = Manufacturer::new("Other");
    // Same device ID as an allowed one: the ID alone must not be enough.
    let leaf = other.device(&CertSpec::leaf("dev-1"));
    assert_eq!(
        refusal(policy.check(std::slice::from_ref(&leaf), NOW, &list)),
        Refusal::UnknownManufacturer
    );
    let chain = vec![
        leaf,
        other.inter.to_der().unwrap(),
        other.root.to_der().unwrap(),
    ];
    assert_eq!(
        refusal(policy.check(&chain, NOW, &list)),
        Refusal::UnknownManufacturer
    );
    // A self-signed "device" is no better.
    let key = p256();
    let selfsigned = cert(&CertSpec::leaf("dev-1"), &key, None).to_der().unwrap();
    assert_eq!(
        refusal(policy.check(&[selfsigned], NOW, &list)),
        Refusal::UnknownManufacturer
    );
}

#[test]
fn trusting_only_the_intermediate_does_not_trust_its_root() {
    let (acme, policy, list) = setup();
    // Another intermediate under Acme's root; the policy only trusts the device-CA intermediate.
    let sibling_key = p256();
    let sibling = cert(
        &CertSpec::ca("Acme Other CA"),
        &sibling_key,
        Some((&acme.root, &acme.root_key)),
    );
    let leaf = cert(
        &CertSpec::leaf("dev-1"),
        &p256(),
        Some((&sibling, &sibling_key)),
    )
    .to_der()
    .unwrap();
    let chain = vec![leaf, sibling.to_der().unwrap(), acme.root.to_der().unwrap()];
    assert_eq!(
        refusal(policy.check(&chain, NOW, &list)),
        Refusal::UnknownManufacturer
    );
}

#[test]
fn configuring_the_root_accepts_devices_under_its_intermediates() {
    let acme = Manufacturer::new("Acme");
    let mut cas = ManufacturerCas::new();
    cas.add_pem("acme-root", &acme.root.to_pem().unwrap())
        .unwrap();
    let policy = FactoryPolicy::new(cas);
    let mut list = AllowList::new();
    list.insert("dev-1").unwrap();
    let leaf = acme.device(&CertSpec::leaf("dev-1"));
    // Without the intermediate the chain cannot be built...
    assert_eq!(
        refusal(policy.check(std::slice::from_ref(&leaf), NOW, &list)),
        Refusal::UnknownManufacturer
    );
    // ...with it, it can.
    let chain = vec![leaf, acme.inter.to_der().unwrap()];
    assert_eq!(
        policy.check(&chain, NOW, &list).unwrap().manufacturer,
        "acme-root"
    );
}

#[test]
fn expired_and_not_yet_valid_certificates_are_refused() {
    let (acme, policy, list) = setup();
    let expired = acme.device(&CertSpec {
        not_before: NOW - 400 * DAY,
        not_after: NOW - DAY,
        ..CertSpec::leaf("dev-1")
    });
    assert_eq!(
        refusal(policy.check(std::slice::from_ref(&expired), NOW, &list)),
        Refusal::Expired { depth: 0 }
    );
    // The same certificate was fine while it was valid: the time comes from `now`, not the clock.
    assert!(policy.check(&[expired], NOW - 2 * DAY, &list).is_ok());

    let future = acme.device(&CertSpec {
        not_before: NOW + DAY,
        not_after: NOW + 400 * DAY,
        ..CertSpec::leaf("dev-1")
    });
    assert_eq!(
        refusal(policy.check(&[future], NOW, &list)),
        Refusal::NotYetValid { depth: 0 }
    );

    // An expired manufacturer CA fails the chain at depth 1.
    let root_key = p256();
    let inter_key = p256();
    let root = cert(&CertSpec::ca("Old Root"), &root_key, None);
    let old_inter = cert(
        &CertSpec {
            not_before: NOW - 400 * DAY,
            not_after: NOW - DAY,
            ..CertSpec::ca("Old CA")
        },
        &inter_key,
        Some((&root, &root_key)),
    );
    let mut cas = ManufacturerCas::new();
    cas.add_pem("old", &old_inter.to_pem().unwrap()).unwrap();
    let leaf = cert(
        &CertSpec::leaf("dev-1"),
        &p256(),
        Some((&old_inter, &inter_key)),
    )
    .to_der()
    .unwrap();
    assert_eq!(
        refusal(FactoryPolicy::new(cas).check(&[leaf], NOW, &list)),
        Refusal::Expired { depth: 1 }
    );
}

#[test]
fn forged_signature_under_the_right_issuer_name_is_a_bad_chain() {
    let (acme, policy, list) = setup();
    // Issuer name = Acme's device CA, but signed with an attacker key.
    let attacker = p256();
    let forged = cert(
        &CertSpec::leaf("dev-1"),
        &p256(),
        Some((&acme.inter, &attacker)),
    )
    .to_der()
    .unwrap();
    match refusal(policy.check(&[forged], NOW, &list)) {
        Refusal::BadChain(msg) => assert!(msg.contains("signature"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_ca_certificate_is_not_a_device_certificate() {
    let (acme, policy, list) = setup();
    // The manufacturer CA certificate is public; presenting it must not pass as a device.
    let chain = vec![acme.inter.to_der().unwrap()];
    assert_eq!(refusal(policy.check(&chain, NOW, &list)), Refusal::LeafIsCa);
}

#[test]
fn malformed_and_empty_chains() {
    let (acme, policy, list) = setup();
    assert_eq!(refusal(policy.check(&[], NOW, &list)), Refusal::EmptyChain);
    assert_eq!(
        refusal(policy.check(&[b"junk".to_vec()], NOW, &list)),
        Refusal::MalformedCertificate { index: 0 }
    );
    let leaf = acme.device(&CertSpec::leaf("dev-1"));
    assert_eq!(
        refusal(policy.check(&[leaf.clone(), vec![0x30, 0x00]], NOW, &list)),
        Refusal::MalformedCertificate { index: 1 }
    );
    let long = vec![leaf; 9];
    assert_eq!(
        refusal(policy.check(&long, NOW, &list)),
        Refusal::ChainTooLong(9)
    );
}

#[test]
fn serial_number_attribute_wins_over_the_common_name() {
    let (acme, mut policy, list) = setup();
    // CN is a model name shared by many devices, serialNumber is the device: SN-42 is listed.
    let leaf = acme.device(&CertSpec {
        serial_numbers: &["SN-42"],
        ..CertSpec::leaf("Thermostat X")
    });
    assert_eq!(
        policy
            .check(std::slice::from_ref(&leaf), NOW, &list)
            .unwrap()
            .device_id,
        "SN-42"
    );

    // A listed CN does not help when the serialNumber is present and unlisted.
    let leaf2 = acme.device(&CertSpec {
        serial_numbers: &["SN-99"],
        ..CertSpec::leaf("dev-1")
    });
    assert_eq!(
        refusal(policy.check(std::slice::from_ref(&leaf2), NOW, &list)),
        Refusal::NotOnAllowList {
            device_id: "SN-99".into(),
            manufacturer: "acme".into()
        }
    );

    // Configured to use the CN only, the same certificate is judged by its CN.
    policy.device_id_source = DeviceIdSource::CommonName;
    assert_eq!(
        policy.check(&[leaf2], NOW, &list).unwrap().device_id,
        "dev-1"
    );
    policy.device_id_source = DeviceIdSource::SerialNumber;
    assert_eq!(
        policy.check(&[leaf], NOW, &list).unwrap().device_id,
        "SN-42"
    );
    let no_sn = acme.device(&CertSpec::leaf("dev-1"));
    assert_eq!(
        refusal(policy.check(&[no_sn], NOW, &list)),
        Refusal::NoDeviceId
    );
}

#[test]
fn two_serial_numbers_are_ambiguous() {
    let (acme, policy, list) = setup();
    let leaf = acme.device(&CertSpec {
        serial_numbers: &["SN-42", "SN-43"],
        ..CertSpec::leaf("x")
    });
    assert_eq!(
        refusal(policy.check(&[leaf], NOW, &list)),
        Refusal::AmbiguousDeviceId
    );
}

#[test]
fn the_allow_list_can_live_in_the_store() {
    let (acme, policy, _) = setup();
    let store = MemoryPkiStore::new();
    let leaf = acme.device(&CertSpec::leaf("dev-7"));
    assert!(matches!(
        refusal(policy.check(std::slice::from_ref(&leaf), NOW, &store)),
        Refusal::NotOnAllowList { .. }
    ));
    store.allow_list_put("dev-7").unwrap();
    assert_eq!(
        policy
            .check(std::slice::from_ref(&leaf), NOW, &store)
            .unwrap()
            .device_id,
        "dev-7"
    );
    // Through a trait object too, as the server holds it.
    let dyn_store: &dyn PkiStore = &store;
    assert!(policy.check(&[leaf], NOW, dyn_store).is_ok());
}

#[test]
fn manufacturer_configuration_is_checked() {
    let acme = Manufacturer::new("Acme");
    let mut cas = ManufacturerCas::new();
    // A device certificate is not a manufacturer CA.
    let leaf = X509::from_der(&acme.device(&CertSpec::leaf("dev-1"))).unwrap();
    assert!(cas.add_pem("bad", &leaf.to_pem().unwrap()).is_err());
    assert!(cas.add_pem("empty", b"").is_err());
    // A bundle of intermediate + root is one manufacturer.
    let mut bundle = acme.inter.to_pem().unwrap();
    bundle.extend(acme.root.to_pem().unwrap());
    cas.add_pem("acme", &bundle).unwrap();
    assert_eq!(cas.iter().next().unwrap().certs().len(), 2);
    assert!(cas.add_pem("acme", &bundle).is_err(), "duplicate name");

    // Loading a directory: one manufacturer per *.pem, named after the file.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("zeta.pem"), acme.root.to_pem().unwrap()).unwrap();
    std::fs::write(dir.path().join("alpha.pem"), acme.inter.to_pem().unwrap()).unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"ignored").unwrap();
    let mut from_dir = ManufacturerCas::new();
    from_dir.add_pem_dir(dir.path()).unwrap();
    let names: Vec<&str> = from_dir.iter().map(|m| m.name()).collect();
    assert_eq!(names, ["alpha", "zeta"]);
}
