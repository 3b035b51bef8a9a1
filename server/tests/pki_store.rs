//! `PkiStore` on the sled store: round trips, durability across reopen, revocation, the
//! endpoint index and the CRL number.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use steward::store::SledStore;
use steward_pki::ca::Serial;
use steward_pki::records::{IssuedRecord, PkiStore, PkiStoreError, Revocation, RevocationReason};

fn record(serial: &[u8], endpoint: &str, issued_at: u64) -> IssuedRecord {
    IssuedRecord {
        serial: Serial::from_bytes(serial).unwrap(),
        endpoint: endpoint.into(),
        profile: "device".into(),
        not_before: issued_at,
        not_after: issued_at + 86_400,
        der: vec![0x30, 0x03, 0x02, 0x01, serial[0]],
        issued_at,
        revoked: None,
    }
}

fn open(dir: &Path) -> SledStore {
    SledStore::open(dir).unwrap()
}

#[test]
fn issued_round_trip_and_duplicate_serial() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let r = record(&[1, 2, 3], "dev-1", 100);
    store.put_issued(&r).unwrap();
    assert_eq!(store.issued(&r.serial).unwrap(), Some(r.clone()));
    assert!(matches!(
        store.put_issued(&r),
        Err(PkiStoreError::SerialTaken(_))
    ));
    let unknown = Serial::from_bytes(&[9]).unwrap();
    assert_eq!(store.issued(&unknown).unwrap(), None);
}

#[test]
fn records_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let r = record(&[7], "dev-1", 100);
    {
        let store = open(dir.path());
        store.put_issued(&r).unwrap();
        store
            .revoke(&r.serial, RevocationReason::KeyCompromise, 200)
            .unwrap();
        store.allow_list_put("device-42").unwrap();
    }
    let store = open(dir.path());
    let got = store.issued(&r.serial).unwrap().unwrap();
    assert_eq!(
        got.revoked,
        Some(Revocation {
            at: 200,
            reason: RevocationReason::KeyCompromise
        })
    );
    assert!(store.allow_list_contains("device-42").unwrap());
    assert_eq!(store.issued_for_endpoint("dev-1").unwrap(), vec![got]);
}

#[test]
fn revoking_twice_keeps_the_first_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let r = record(&[5], "dev-1", 100);
    store.put_issued(&r).unwrap();
    assert!(
        store
            .revoke(&r.serial, RevocationReason::Superseded, 200)
            .unwrap()
    );
    assert!(
        !store
            .revoke(&r.serial, RevocationReason::KeyCompromise, 300)
            .unwrap()
    );
    let got = store.issued(&r.serial).unwrap().unwrap();
    assert_eq!(got.revoked.unwrap().at, 200);
    assert_eq!(got.revoked.unwrap().reason, RevocationReason::Superseded);
    assert!(matches!(
        store.revoke(
            &Serial::from_bytes(&[6]).unwrap(),
            RevocationReason::Unspecified,
            1
        ),
        Err(PkiStoreError::UnknownSerial(_))
    ));
    assert_eq!(store.revoked().unwrap().len(), 1);
}

#[test]
fn endpoint_index_separates_prefixes_and_orders_by_issue_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.put_issued(&record(&[0x10], "dev-1", 300)).unwrap();
    store.put_issued(&record(&[0x20], "dev-1", 100)).unwrap();
    store.put_issued(&record(&[0x30], "dev-10", 200)).unwrap();
    let mine: Vec<u64> = store
        .issued_for_endpoint("dev-1")
        .unwrap()
        .iter()
        .map(|r| r.issued_at)
        .collect();
    assert_eq!(mine, [100, 300]);
    assert_eq!(store.issued_for_endpoint("dev-10").unwrap().len(), 1);
    assert!(store.issued_for_endpoint("dev").unwrap().is_empty());
}

#[test]
fn allow_list_put_remove_list() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert!(store.allow_list_put("b").unwrap());
    assert!(store.allow_list_put("a").unwrap());
    assert!(!store.allow_list_put("a").unwrap());
    assert_eq!(store.allow_list_all().unwrap(), ["a", "b"]);
    assert!(store.allow_list_remove("a").unwrap());
    assert!(!store.allow_list_remove("a").unwrap());
    assert!(!store.allow_list_contains("a").unwrap());
    assert!(matches!(
        store.allow_list_put(" padded "),
        Err(PkiStoreError::Invalid(_))
    ));
}

#[test]
fn crl_number_is_monotonic_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        assert_eq!(store.next_crl_number().unwrap(), 1);
        assert_eq!(store.next_crl_number().unwrap(), 2);
    }
    let store = open(dir.path());
    assert_eq!(store.next_crl_number().unwrap(), 3);
}
