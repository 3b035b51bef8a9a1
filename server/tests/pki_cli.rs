//! `steward ca` and `steward bootstrap`, driven through `pki_cli`'s functions on a temporary
//! data directory, plus the built binary for `ca init` and `ca show`.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::SystemTime;

use openssl::x509::X509Crl;
use steward::bootstrap::config::configs_to_json;
use steward::bootstrap::{BootstrapConfig, ServerConfig, ServerSecurity};
use steward::pki::{PkiService, PkiSettings};
use steward::pki_cli::{
    AllowListAction, BootstrapAction, CaAction, ManufacturerAction, PkiCliError, run_bootstrap,
    run_ca,
};
use steward::store::SledStore;
use steward_pki::ca::{Ca, CaNames};

fn ca(data: &Path, action: CaAction) -> Result<Vec<String>, PkiCliError> {
    run_ca(data, &action, SystemTime::now())
}

/// Issues the server certificate through the service (so that there is a record), then
/// releases the store so that the CLI can open it.
fn issue_one(data: &Path, cn: &str) -> String {
    let store = Arc::new(SledStore::open(data).unwrap());
    let pki = PkiService::load(data, store, PkiSettings::default())
        .unwrap()
        .unwrap();
    let (_, _, der) = pki.server_certificate(cn).unwrap();
    let cert = openssl::x509::X509::from_der(&der).unwrap();
    steward_pki::ca::Serial::from_asn1(cert.serial_number())
        .unwrap()
        .to_string()
}

#[test]
fn init_show_and_refuse_a_second_init() {
    let dir = tempfile::tempdir().unwrap();
    let lines = ca(
        dir.path(),
        CaAction::Init {
            org: Some("Example".into()),
        },
    )
    .unwrap();
    assert!(
        lines.iter().any(|l| l.starts_with("root: O=Example, CN=")),
        "{lines:?}"
    );
    let shown = ca(dir.path(), CaAction::Show).unwrap();
    assert_eq!(shown.iter().filter(|l| l.contains("sha256")).count(), 2);
    assert!(matches!(
        ca(dir.path(), CaAction::Init { org: None }),
        Err(PkiCliError::Ca(_))
    ));
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        ca(empty.path(), CaAction::Show),
        Err(PkiCliError::NoCa(_))
    ));
}

#[test]
fn import_an_existing_ca() {
    let src = tempfile::tempdir().unwrap();
    let original = Ca::init(src.path(), &CaNames::default(), 1_750_000_000).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lines = ca(
        dir.path(),
        CaAction::Import {
            root: src.path().join("root.crt.pem"),
            issuing: src.path().join("issuing.crt.pem"),
            key: src.path().join("issuing.key.pem"),
        },
    )
    .unwrap();
    assert!(lines[0].starts_with("imported"));
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let pki = PkiService::load(dir.path(), store, PkiSettings::default())
        .unwrap()
        .unwrap();
    assert_eq!(pki.root_der(), original.root_cert_der());
}

#[test]
fn manufacturers_add_and_list() {
    let dir = tempfile::tempdir().unwrap();
    let mfr_dir = tempfile::tempdir().unwrap();
    let mfr = Ca::init(mfr_dir.path(), &CaNames::default(), 1_750_000_000).unwrap();
    let pem = mfr_dir.path().join("acme.pem");
    std::fs::write(&pem, mfr.issuing_cert().to_pem().unwrap()).unwrap();
    let add = |name: &str| {
        ca(
            dir.path(),
            CaAction::Manufacturer {
                action: ManufacturerAction::Add {
                    name: name.into(),
                    file: pem.clone(),
                },
            },
        )
    };
    assert!(add("acme").unwrap()[0].starts_with("added manufacturer acme"));
    assert!(matches!(
        add("acme"),
        Err(PkiCliError::ManufacturerExists(..))
    ));
    assert!(matches!(
        add("../evil"),
        Err(PkiCliError::BadManufacturerName(_))
    ));
    let listed = ca(
        dir.path(),
        CaAction::Manufacturer {
            action: ManufacturerAction::List,
        },
    )
    .unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].starts_with("acme\t"), "{listed:?}");
    // A file without a CA certificate is refused.
    let junk = mfr_dir.path().join("junk.pem");
    std::fs::write(&junk, "not a pem").unwrap();
    let r = ca(
        dir.path(),
        CaAction::Manufacturer {
            action: ManufacturerAction::Add {
                name: "junk".into(),
                file: junk,
            },
        },
    );
    assert!(matches!(r, Err(PkiCliError::Manufacturer(_))), "{r:?}");
}

#[test]
fn allow_list_import_list_remove() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let csv = files.path().join("ids.csv");
    std::fs::write(&csv, "device_id,batch\ndev-1,7\ndev-2,7\n").unwrap();
    let json = files.path().join("ids.json");
    std::fs::write(&json, r#"["dev-2", {"device_id": "dev-3"}]"#).unwrap();
    let bad = files.path().join("bad.csv");
    std::fs::write(&bad, "a,b\n1,2\n").unwrap();
    let al = |action| ca(dir.path(), CaAction::AllowList { action });
    assert_eq!(
        al(AllowListAction::Import { file: csv }).unwrap(),
        ["imported 2 device ID(s), 2 new"]
    );
    assert_eq!(
        al(AllowListAction::Import { file: json }).unwrap(),
        ["imported 2 device ID(s), 1 new"]
    );
    assert!(matches!(
        al(AllowListAction::Import { file: bad }),
        Err(PkiCliError::AllowList { .. })
    ));
    assert_eq!(
        al(AllowListAction::List).unwrap(),
        ["dev-1", "dev-2", "dev-3"]
    );
    al(AllowListAction::Remove { id: "dev-2".into() }).unwrap();
    assert!(matches!(
        al(AllowListAction::Remove { id: "dev-2".into() }),
        Err(PkiCliError::NotOnAllowList(_))
    ));
}

#[test]
fn issued_revoke_and_crl() {
    let dir = tempfile::tempdir().unwrap();
    ca(dir.path(), CaAction::Init { org: None }).unwrap();
    let serial = issue_one(dir.path(), "srv.example");
    let issued = ca(dir.path(), CaAction::Issued { endpoint: None }).unwrap();
    assert_eq!(issued.len(), 1);
    assert!(
        issued[0].starts_with(&serial) && issued[0].ends_with("valid"),
        "{issued:?}"
    );
    let revoke = |reason: &str| {
        ca(
            dir.path(),
            CaAction::Revoke {
                serial: Some(serial.clone()),
                endpoint: None,
                reason: reason.into(),
            },
        )
    };
    assert!(matches!(revoke("because"), Err(PkiCliError::BadReason(_))));
    assert_eq!(
        revoke("keyCompromise").unwrap(),
        [format!("revoked {serial} (keyCompromise)")]
    );
    assert!(revoke("keyCompromise").unwrap()[0].contains("already"));
    let by_endpoint = ca(
        dir.path(),
        CaAction::Issued {
            endpoint: Some("srv.example".into()),
        },
    )
    .unwrap();
    assert!(by_endpoint[0].contains("revoked"), "{by_endpoint:?}");

    let out = dir.path().join("crl.der");
    ca(dir.path(), CaAction::Crl { out: out.clone() }).unwrap();
    let crl = X509Crl::from_der(&std::fs::read(&out).unwrap()).unwrap();
    let listed: Vec<String> = crl
        .get_revoked()
        .unwrap()
        .iter()
        .map(|r| {
            steward_pki::ca::Serial::from_asn1(r.serial_number())
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(listed, [serial]);

    // Revoking by endpoint counts only what was not revoked yet.
    issue_one(dir.path(), "other.example");
    let n = ca(
        dir.path(),
        CaAction::Revoke {
            serial: None,
            endpoint: Some("other.example".into()),
            reason: "superseded".into(),
        },
    )
    .unwrap();
    assert_eq!(
        n,
        ["revoked 1 certificate(s) of other.example (superseded)"]
    );
}

#[test]
fn a_running_server_holds_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let _held = SledStore::open(dir.path()).unwrap();
    let err = ca(
        dir.path(),
        CaAction::AllowList {
            action: AllowListAction::List,
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("stop it first"), "{err}");
}

#[test]
fn bootstrap_import_export_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BootstrapConfig::default();
    config.servers.insert(0, ServerConfig::new(1));
    config.security.insert(
        1,
        ServerSecurity::psk("coaps://lwm2m.example:5684", 1, b"id", b"key"),
    );
    let file = dir.path().join("bs.json");
    std::fs::write(&file, configs_to_json([("ep-1", &config)])).unwrap();
    let data = dir.path().join("data");
    assert_eq!(
        run_bootstrap(&data, &BootstrapAction::Import { file }).unwrap(),
        ["imported 1 bootstrap configuration(s)"]
    );
    let exported = run_bootstrap(&data, &BootstrapAction::Export).unwrap();
    let back = steward::bootstrap::config::configs_from_json(exported[0].as_bytes()).unwrap();
    assert_eq!(back.get("ep-1"), Some(&config));
}

#[test]
fn the_binary_runs_ca_init_and_show() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_steward"))
            .args(args)
            .output()
            .unwrap()
    };
    let init = run(&["ca", "init", "--data-dir", data, "--org", "Example"]);
    assert!(init.status.success(), "{init:?}");
    let show = run(&["ca", "show", "--data-dir", data]);
    assert!(show.status.success(), "{show:?}");
    let stdout = String::from_utf8_lossy(&show.stdout);
    assert!(
        stdout.contains("issuing: O=Example, CN=Steward Issuing CA"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("sha256 ").count(), 2, "{stdout}");
    let again = run(&["ca", "init", "--data-dir", data]);
    assert_eq!(again.status.code(), Some(2));
}
