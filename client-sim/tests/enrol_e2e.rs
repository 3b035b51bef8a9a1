//! End to end over real sockets: a fresh device with only a factory certificate goes
//! factory certificate → bootstrap (DTLS, coaps 5784 role) → EST `/sen` → OCSP check of the
//! LwM2M server's certificate → Register over DTLS with its operational certificate.
//!
//! The server is the real `steward` runtime with a CA in its data directory; the device is the
//! `steward-client` binary. Nothing is mocked.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509, X509NameBuilder, X509ReqBuilder};
use steward::bootstrap::{BootstrapConfig, ServerConfig, ServerSecurity};
use steward::config::Config;
use steward::pki::{CA_DIR, MANUFACTURERS_DIR, PkiService, PkiSettings};
use steward::registry::PeerIdentity;
use steward::runtime::{self, RunningServer, SERVER_CN};
use steward::store::SledStore;
use steward_pki::ca::{Ca, CaNames, IssueParams, Serial};
use steward_pki::csr::Csr;
use steward_pki::profile::Profile;
use steward_pki::records::{PkiStore, RevocationReason};

const DEVICE: &str = "e2e-factory-1";
const WAIT: Duration = Duration::from_secs(60);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn p256() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

/// The manufacturer's CA issues the factory certificate (device ID in the CN).
fn factory_credentials(manufacturer: &Ca, dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = p256();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, DEVICE).unwrap();
    let mut req = X509ReqBuilder::new().unwrap();
    req.set_subject_name(&name.build()).unwrap();
    req.set_pubkey(&key).unwrap();
    req.sign(&key, MessageDigest::sha256()).unwrap();
    let csr = Csr::from_der(&req.build().to_der().unwrap(), Default::default()).unwrap();
    let issued = manufacturer
        .issue(
            &csr,
            &Profile::device(),
            IssueParams::new(Serial::random().unwrap(), unix_now() - 60),
        )
        .unwrap();
    let mut chain = X509::from_der(&issued.der).unwrap().to_pem().unwrap();
    chain.extend(manufacturer.issuing_cert().to_pem().unwrap());
    let cert = dir.join("factory.pem");
    let key_path = dir.join("factory.key");
    std::fs::write(&cert, chain).unwrap();
    std::fs::write(&key_path, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    (cert, key_path)
}

/// The data directory before the server starts: the Steward CA, the manufacturer's CA and
/// the allow-list with the device on it (sled locks the directory, so this runs offline).
fn prepare(data: &Path, manufacturer: &Ca) -> Vec<u8> {
    let mfr_dir = data.join(CA_DIR).join(MANUFACTURERS_DIR);
    std::fs::create_dir_all(&mfr_dir).unwrap();
    std::fs::write(
        mfr_dir.join("acme.pem"),
        manufacturer.issuing_cert().to_pem().unwrap(),
    )
    .unwrap();
    let store = Arc::new(SledStore::open(data).unwrap());
    store.allow_list_put(DEVICE).unwrap();
    let pki = PkiService::init_if_missing(data, store, PkiSettings::default()).unwrap();
    // What the device trusts out of the factory: the Steward root (implicit trust anchor).
    X509::from_der(&pki.root_der()).unwrap().to_pem().unwrap()
}

struct Device(Child);

impl Drop for Device {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_for_registration(server: &RunningServer, device: &mut Device) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if server.registration(DEVICE).is_some() {
            return true;
        }
        if let Ok(Some(status)) = device.0.try_wait() {
            panic!("steward-client exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A running server with a CA, the device's factory credentials and a Security Mode 4
/// bootstrap configuration for it.
struct World {
    dir: tempfile::TempDir,
    server: RunningServer,
    pki: PkiService,
    server_cert: Vec<u8>,
    factory_cert: PathBuf,
    factory_key: PathBuf,
    trust: PathBuf,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let manufacturer =
        Ca::init(&dir.path().join("acme-ca"), &CaNames::default(), unix_now()).unwrap();
    let (factory_cert, factory_key) = factory_credentials(&manufacturer, dir.path());
    let root_pem = prepare(&data, &manufacturer);
    let trust = dir.path().join("steward-root.pem");
    std::fs::write(&trust, root_pem).unwrap();

    let server = runtime::start(&Config::ephemeral(data)).await.unwrap();
    let pki = server.pki().unwrap().clone();
    let (_, _, server_cert) = pki.server_certificate(SERVER_CN).unwrap();
    // One LwM2M server account in Security Mode 4 (certificate mode with EST), pointing at
    // the running server with its certificate in /0/x/4.
    let mut config = BootstrapConfig::default();
    config.security.insert(
        1,
        ServerSecurity::est(&format!("coaps://{}", server.coaps_addr()), 1, &server_cert),
    );
    config.servers.insert(0, ServerConfig::new(1));
    server
        .store()
        .put_bootstrap_config(DEVICE, &config)
        .unwrap();
    World {
        dir,
        server,
        pki,
        server_cert,
        factory_cert,
        factory_key,
        trust,
    }
}

impl World {
    fn device(&self) -> Device {
        let bs = self.server.bs_coaps_addr().unwrap();
        Device(
            Command::new(env!("CARGO_BIN_EXE_steward-client"))
                .arg("--bootstrap")
                .arg(format!("coaps://{bs}"))
                .args(["--endpoint", DEVICE])
                .arg("--cert")
                .arg(&self.factory_cert)
                .arg("--key")
                .arg(&self.factory_key)
                .arg("--ca")
                .arg(&self.trust)
                .arg("--state-dir")
                .arg(self.dir.path().join("state"))
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    }

    async fn stop(self) {
        drop(self.pki);
        self.server.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn factory_certificate_to_est_to_bootstrap_to_registered() {
    let world = world().await;
    let mut device = world.device();
    let registered = wait_for_registration(&world.server, &mut device).await;
    let issued = world.pki.issued_for_endpoint(DEVICE).unwrap();
    let registration = world.server.registration(DEVICE);
    let state = world.dir.path().join("state");
    drop(device);
    assert!(registered, "the device did not register within {WAIT:?}");

    // EST issued exactly one operational certificate, and the registration came over DTLS
    // with a certificate whose CN is the endpoint: the operational one (the LwM2M server
    // port accepts no factory chain).
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert_eq!(issued[0].profile, "device");
    let registration = registration.expect("registered");
    assert_eq!(
        registration.identity,
        PeerIdentity::X509 {
            common_name: DEVICE.into()
        }
    );
    // The device kept its operational credentials next to its state.
    let cert = std::fs::read(state.join(format!("{DEVICE}.est-cert.pem"))).unwrap();
    assert_eq!(
        X509::from_pem(&cert).unwrap().to_der().unwrap(),
        issued[0].der
    );
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_server_certificate_is_refused_after_ocsp() {
    let world = world().await;
    // The LwM2M server's certificate is compromised and revoked before the device comes.
    let serial =
        Serial::from_asn1(X509::from_der(&world.server_cert).unwrap().serial_number()).unwrap();
    assert!(
        world
            .pki
            .revoke_serial(&serial, RevocationReason::KeyCompromise, SystemTime::now())
            .unwrap()
    );
    let mut device = world.device();
    let stdout = device.0.stdout.take().unwrap();
    // The device's own report, line by line, until it refuses the server (or exits).
    let refused = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|line| line.contains("server certificate rejected"))
    });
    let line = tokio::time::timeout(WAIT, refused)
        .await
        .expect("the device neither refused nor exited")
        .unwrap()
        .expect("the device exited without refusing the server");
    assert!(line.contains("revoked"), "{line}");
    // It enrolled (EST worked), but it did not register with the revoked server.
    assert_eq!(world.pki.issued_for_endpoint(DEVICE).unwrap().len(), 1);
    assert!(world.server.registration(DEVICE).is_none());
    drop(device);
    world.stop().await;
}
