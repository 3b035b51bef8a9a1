//! Allow-list import (CSV, JSON) and PSK identity binding.
#![allow(clippy::unwrap_used)]

mod ca_support;

use ca_support::{csr, csr_with, p256};
use steward_pki::csr::{Csr, CsrLimits};
use steward_pki::policy::{AllowList, AllowListError, PskBinding, PskRefusal, check_subject};

fn ids(list: &AllowList) -> Vec<&str> {
    list.iter().collect()
}

#[test]
fn csv_with_a_header_uses_the_device_id_column() {
    let csv = "\u{feff}model,Device_ID,batch\r\nX1,dev-1,7\r\n\r\nX1,\"dev,2\",7\nX2, dev-3 ,8\nX2,dev-1,9\n";
    let list = AllowList::from_csv(csv).unwrap();
    assert_eq!(ids(&list), ["dev,2", "dev-1", "dev-3"]);
}

#[test]
fn csv_with_a_single_column_and_no_header() {
    let list = AllowList::from_csv("dev-1\ndev-2\n\"dev \"\"3\"\"\"\n").unwrap();
    assert_eq!(ids(&list), ["dev \"3\"", "dev-1", "dev-2"]);
    // A lone `device_id` header line is a header, not an ID.
    let list = AllowList::from_csv("device_id\ndev-9\n").unwrap();
    assert_eq!(ids(&list), ["dev-9"]);
}

#[test]
fn malformed_csv_names_the_line() {
    let err = |csv: &str| match AllowList::from_csv(csv).unwrap_err() {
        AllowListError::Csv { line, reason } => (line, reason),
        other => panic!("{other:?}"),
    };
    let (line, reason) = err("a,b\nc,d\n");
    assert_eq!(line, 1);
    assert!(reason.contains("device_id"), "{reason}");
    assert_eq!(err("device_id,model\ndev-1,x\n,y\n").0, 3);
    assert_eq!(err("model,device_id\nx\n").0, 2);
    assert_eq!(err("dev-1\n\"unterminated\n").0, 2);
    assert_eq!(err("dev-1\ndev-2\ndev\u{7}3\n").0, 3);
    assert_eq!(err("dev-1\nab\"c\n").0, 2);
    let long = format!("dev-1\n{}\n", "x".repeat(257));
    assert_eq!(err(&long).0, 2);
}

#[test]
fn json_arrays_of_strings_objects_or_both() {
    let list = AllowList::from_json(r#"["dev-1", "dev-2"]"#).unwrap();
    assert_eq!(ids(&list), ["dev-1", "dev-2"]);
    let list = AllowList::from_json(
        r#"[{"device_id": "dev-1", "model": "X1"}, {"model": {"nested": true}, "device_id": "dev-2"}, "dev-3"]"#,
    )
    .unwrap();
    assert_eq!(ids(&list), ["dev-1", "dev-2", "dev-3"]);
    assert!(AllowList::from_json("[]").unwrap().is_empty());
}

#[test]
fn malformed_json_names_line_and_column() {
    let err = |json: &str| match AllowList::from_json(json).unwrap_err() {
        AllowListError::Json {
            line,
            column,
            reason,
        } => (line, column, reason),
        other => panic!("{other:?}"),
    };
    let (line, _, reason) = err("[\n  \"dev-1\",\n  {\"model\": \"X\"}\n]");
    assert_eq!(line, 3);
    assert!(reason.contains("device_id"), "{reason}");
    let (line, _, reason) = err("[\n\"dev-1\",\n\"\"\n]");
    assert_eq!(line, 3);
    assert!(reason.contains("empty"), "{reason}");
    assert_eq!(err("[\"a\",\n 42]").0, 2);
    assert_eq!(err("{\"device_id\": \"a\"}").0, 1);
    assert_eq!(err("[\"a\",\n\n  \"b\"").0, 3);
    let (line, column, _) = err("[{\"device_id\": 7}]");
    assert_eq!((line, column), (1, 16));
    assert!(
        err("[{\"device_id\": \"a\", \"device_id\": \"b\"}]")
            .2
            .contains("duplicate")
    );
}

#[test]
fn allow_list_editing() {
    let mut list = AllowList::new();
    assert_eq!(list.insert("dev-1"), Ok(true));
    assert_eq!(list.insert("dev-1"), Ok(false));
    assert!(list.insert(" dev-1").is_err());
    assert!(list.contains("dev-1") && !list.contains("dev-2"));
    assert!(list.remove("dev-1"));
    assert!(!list.remove("dev-1"));
    assert_eq!(list.len(), 0);
}

fn parsed(der: &[u8]) -> Csr {
    Csr::from_der(der, CsrLimits::default()).unwrap()
}

#[test]
fn psk_identity_may_only_enrol_its_bound_name() {
    let mut binding = PskBinding::new();
    binding.bind(b"psk-id-1", "urn:dev:1");
    let own = parsed(&csr("urn:dev:1").1);
    let other = parsed(&csr("urn:dev:2").1);
    let nameless = parsed(&csr_with(&p256(), &[], &["x.example"]));

    assert_eq!(binding.check(b"psk-id-1", &own), Ok("urn:dev:1"));
    assert_eq!(
        binding.check(b"psk-id-1", &other),
        Err(PskRefusal::SubjectMismatch {
            identity: "psk-id-1".into(),
            expected: "urn:dev:1".into(),
            requested: "urn:dev:2".into(),
        })
    );
    assert_eq!(
        binding.check(b"psk-id-1", &nameless),
        Err(PskRefusal::NoCommonName)
    );
    assert_eq!(
        binding.check(b"psk-id-9", &own),
        Err(PskRefusal::UnknownIdentity("psk-id-9".into()))
    );

    // No case folding: endpoint names are case-sensitive.
    let upper = parsed(&csr("URN:DEV:1").1);
    assert!(matches!(
        check_subject(b"psk-id-1", "urn:dev:1", &upper),
        Err(PskRefusal::SubjectMismatch { .. })
    ));

    assert_eq!(binding.unbind(b"psk-id-1").as_deref(), Some("urn:dev:1"));
    assert!(matches!(
        binding.check(b"psk-id-1", &own),
        Err(PskRefusal::UnknownIdentity(_))
    ));
}
