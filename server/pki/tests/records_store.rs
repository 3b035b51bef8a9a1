//! Issued-certificate records: CBOR format and the in-memory store's contract.
#![allow(clippy::unwrap_used)]

use steward_pki::ca::Serial;
use steward_pki::records::{
    FaultDomain, ISSUED_RECORD_VERSION, IssuedRecord, MemoryPkiStore, PkiStore, PkiStoreError,
    Revocation, RevocationReason,
};

fn record(serial: &str, endpoint: &str, issued_at: u64) -> IssuedRecord {
    IssuedRecord {
        serial: serial.parse().unwrap(),
        endpoint: endpoint.into(),
        profile: "device".into(),
        not_before: issued_at - 300,
        not_after: issued_at + 365 * 86_400,
        der: vec![0x30, 0x82, 0x01, 0x00, 0xde, 0xad],
        issued_at,
        revoked: None,
    }
}

#[test]
fn cbor_round_trip_with_and_without_revocation() {
    let plain = record("0a1b2c", "ep-1", 1_750_000_000);
    assert_eq!(IssuedRecord::from_cbor(&plain.to_cbor()).unwrap(), plain);
    for reason in RevocationReason::ALL {
        let revoked = IssuedRecord {
            revoked: Some(Revocation {
                at: 1_760_000_000,
                reason,
            }),
            ..plain.clone()
        };
        assert_eq!(
            IssuedRecord::from_cbor(&revoked.to_cbor()).unwrap(),
            revoked
        );
    }
}

#[test]
fn cbor_layout_starts_with_the_version() {
    let bytes = record("01", "ep", 1_000).to_cbor();
    // array(9), then unsigned 1.
    assert_eq!(&bytes[..2], &[0x89, ISSUED_RECORD_VERSION as u8]);
    // The serial is a byte string right after.
    assert_eq!(&bytes[2..4], &[0x41, 0x01]);
}

#[test]
fn unknown_versions_and_damage_are_refused() {
    let bytes = record("01", "ep", 1_000).to_cbor();
    let mut v2 = bytes.clone();
    v2[1] = 0x02;
    let err = IssuedRecord::from_cbor(&v2).unwrap_err();
    assert!(
        matches!(&err, PkiStoreError::Corrupt(m) if m.contains("version 2")),
        "{err}"
    );
    assert_eq!(err.domain(), FaultDomain::Storage);

    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(matches!(
        IssuedRecord::from_cbor(&trailing),
        Err(PkiStoreError::Corrupt(_))
    ));
    assert!(IssuedRecord::from_cbor(&bytes[..bytes.len() - 1]).is_err());
    assert!(IssuedRecord::from_cbor(&[]).is_err());

    // Revocation reason 7 does not exist in RFC 5280.
    let revoked = IssuedRecord {
        revoked: Some(Revocation {
            at: 5,
            reason: RevocationReason::KeyCompromise,
        }),
        ..record("01", "ep", 1_000)
    };
    let mut bad = revoked.to_cbor();
    let last = bad.len() - 1;
    assert_eq!(bad[last], 1, "reason is the last byte");
    bad[last] = 7;
    let err = IssuedRecord::from_cbor(&bad).unwrap_err();
    assert!(err.to_string().contains("reason code 7"), "{err}");

    // A zero serial cannot be smuggled in.
    let mut zero = bytes.clone();
    zero[3] = 0x00;
    assert!(IssuedRecord::from_cbor(&zero).is_err());
}

#[test]
fn reason_codes_follow_rfc_5280() {
    let codes: Vec<u8> = RevocationReason::ALL.iter().map(|r| r.code()).collect();
    assert_eq!(codes, [0, 1, 2, 3, 4, 5, 6, 8, 9, 10]);
    for r in RevocationReason::ALL {
        assert_eq!(RevocationReason::from_code(r.code()), Some(r));
    }
    assert_eq!(RevocationReason::from_code(7), None);
    assert_eq!(RevocationReason::from_code(11), None);
    assert_eq!(RevocationReason::CaCompromise.to_string(), "cACompromise");
    assert_eq!(
        serde_json::to_string(&RevocationReason::KeyCompromise).unwrap(),
        "\"key_compromise\""
    );
}

#[test]
fn memory_store_issued_records() {
    let store = MemoryPkiStore::new();
    let a = record("aa", "ep-1", 3_000);
    let b = record("bb", "ep-1", 1_000);
    let c = record("cc", "ep-2", 2_000);
    for r in [&a, &b, &c] {
        store.put_issued(r).unwrap();
    }
    let err = store.put_issued(&a).unwrap_err();
    assert_eq!(err, PkiStoreError::SerialTaken(a.serial.clone()));
    assert_eq!(err.domain(), FaultDomain::Conflict);

    assert_eq!(store.issued(&a.serial).unwrap(), Some(a.clone()));
    assert_eq!(store.issued(&"ff".parse().unwrap()).unwrap(), None);
    // Oldest first.
    assert_eq!(
        store.issued_for_endpoint("ep-1").unwrap(),
        vec![b.clone(), a.clone()]
    );
    assert!(store.issued_for_endpoint("nobody").unwrap().is_empty());
}

#[test]
fn memory_store_revocation() {
    let store = MemoryPkiStore::new();
    let a = record("aa", "ep-1", 1_000);
    let b = record("bb", "ep-1", 2_000);
    store.put_issued(&a).unwrap();
    store.put_issued(&b).unwrap();
    assert!(store.revoked().unwrap().is_empty());

    assert!(
        store
            .revoke(&b.serial, RevocationReason::KeyCompromise, 5_000)
            .unwrap()
    );
    // A second revocation keeps the first time and reason.
    assert!(
        !store
            .revoke(&b.serial, RevocationReason::Superseded, 6_000)
            .unwrap()
    );
    let revoked = store.revoked().unwrap();
    assert_eq!(revoked.len(), 1);
    assert_eq!(
        revoked[0].revoked,
        Some(Revocation {
            at: 5_000,
            reason: RevocationReason::KeyCompromise
        })
    );
    assert!(!store.issued(&a.serial).unwrap().unwrap().is_revoked());

    let unknown: Serial = "0123".parse().unwrap();
    let err = store
        .revoke(&unknown, RevocationReason::Unspecified, 1)
        .unwrap_err();
    assert_eq!(err, PkiStoreError::UnknownSerial(unknown));
    assert_eq!(err.domain(), FaultDomain::NotFound);
}

#[test]
fn memory_store_allow_list_and_crl_numbers() {
    let store = MemoryPkiStore::new();
    assert!(!store.allow_list_contains("dev-1").unwrap());
    assert!(store.allow_list_put("dev-2").unwrap());
    assert!(store.allow_list_put("dev-1").unwrap());
    assert!(!store.allow_list_put("dev-1").unwrap());
    assert!(matches!(
        store.allow_list_put(""),
        Err(PkiStoreError::Invalid(_))
    ));
    assert!(store.allow_list_contains("dev-1").unwrap());
    assert_eq!(store.allow_list_all().unwrap(), ["dev-1", "dev-2"]);
    assert!(store.allow_list_remove("dev-1").unwrap());
    assert!(!store.allow_list_remove("dev-1").unwrap());
    assert_eq!(store.allow_list_all().unwrap(), ["dev-2"]);

    let numbers: Vec<u64> = (0..4).map(|_| store.next_crl_number().unwrap()).collect();
    assert_eq!(numbers, [1, 2, 3, 4]);
}
