//! Trust-chain recovery (issue 8, seed 000) end to end, on real sockets: a fleet of simulated
//! devices locked in to server A's CTL; A's data directory is destroyed; server B comes up
//! with a new CA on the same addresses; the devices cannot connect; the administrator reads
//! one device's fingerprint, gets a recovery token from the vendor service, imports it into
//! B's `trust-recovery` plugin; every device recovers and registers with B with no
//! per-device action. Then the security cases, each leaving the devices' CTL untouched.

mod http_client;
mod plugins;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_client::Request as HttpRequest;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::x509::{X509NameBuilder, X509ReqBuilder};
use serde_json::{Value as Json, json};
use steward::bootstrap::{BootstrapConfig, ServerConfig, ServerSecurity};
use steward::config::Config;
use steward::pki::{CA_DIR, MANUFACTURERS_DIR, PkiService};
use steward::runtime::{self, RunningServer};
use steward::store::{SledStore, Store};
use steward_client::managed::{self, ManagedConfig, ManagedDevice};
use steward_client::trust::{InitialTrust, TrustConfig, TrustState};
use steward_client::{DeviceConfig, est::OcspCheck};
use steward_coap::endpoint::Config as EndpointConfig;
use steward_dtls::{ClientCertificate, ClientCredentials, ServerTrust};
use steward_objects::Version;
use steward_pki::ca::{Ca, CaNames, IssueParams, Serial};
use steward_pki::csr::Csr;
use steward_pki::profile::Profile;
use tokio::sync::oneshot;

/// Fleet size: `STEWARD_RECOVERY_DEVICES` overrides it (the note's figures use 10 000).
const DEVICES: usize = 100;
const INSTALLATION: &str = "plant-7";
const WAIT: Duration = Duration::from_secs(120);

fn unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Four UDP ports free now (the servers bind them a moment later; A and B use the same).
fn free_ports() -> [u16; 4] {
    let sockets: Vec<UdpSocket> = (0..4)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let ports: Vec<u16> = sockets
        .iter()
        .map(|s| s.local_addr().expect("addr").port())
        .collect();
    [ports[0], ports[1], ports[2], ports[3]]
}

struct Ports {
    coap: u16,
    coaps: u16,
    bs_coap: u16,
    bs_coaps: u16,
}

impl Ports {
    fn new() -> Ports {
        let [coap, coaps, bs_coap, bs_coaps] = free_ports();
        Ports {
            coap,
            coaps,
            bs_coap,
            bs_coaps,
        }
    }

    fn coaps(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.coaps))
    }
}

/// The device maker's factory: a manufacturer CA and a certificate per device.
struct Factory {
    ca: Ca,
    _dir: tempfile::TempDir,
}

impl Factory {
    fn new() -> Factory {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = CaNames {
            organization: Some("Acme Devices".into()),
            root_cn: "Acme Root CA".into(),
            issuing_cn: "Acme Factory CA".into(),
            ..CaNames::default()
        };
        let ca = Ca::init(&dir.path().join("ca"), &names, unix()).expect("manufacturer CA");
        Factory { ca, _dir: dir }
    }

    fn ca_pem(&self) -> Vec<u8> {
        self.ca.issuing_cert().to_pem().expect("pem")
    }

    /// The factory credentials of `endpoint` (CN = endpoint).
    fn credentials(&self, endpoint: &str) -> ClientCredentials {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("curve");
        let key = PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("pkey");
        let mut name = X509NameBuilder::new().expect("name");
        name.append_entry_by_nid(Nid::COMMONNAME, endpoint)
            .expect("cn");
        let mut request = X509ReqBuilder::new().expect("req");
        request.set_subject_name(&name.build()).expect("subject");
        request.set_pubkey(&key).expect("pubkey");
        request.sign(&key, MessageDigest::sha256()).expect("sign");
        let csr = Csr::from_der(&request.build().to_der().expect("der"), Default::default())
            .expect("csr");
        let params = IssueParams::new(Serial::random().expect("serial"), unix() - 60);
        let issued = self
            .ca
            .issue(&csr, &Profile::device(), params)
            .expect("factory certificate");
        let chain = vec![
            issued.der.clone(),
            self.ca.issuing_cert().to_der().expect("der"),
        ];
        let key_der = key.private_key_to_pkcs8().expect("pkcs8");
        ClientCredentials::Certificate {
            certificate: ClientCertificate::from_der(chain, &key_der).expect("credentials"),
            // Replaced by the CTL (the device is made for trust-chain recovery).
            server: ServerTrust::new(Vec::new()),
        }
    }
}

fn endpoints(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("plant7-{i:05}")).collect()
}

/// A server's data directory, prepared while no server holds it: its CA, the manufacturer's
/// CA trusted for bootstrap and EST, the fleet on the allow-list, one bootstrap configuration
/// per device (Security Mode 4: EST with this server's CA), the trust-recovery plugin and the
/// vendor's public key for it.
fn prepare(data: &FsPath, ports: &Ports, factory: &Factory, fleet: &[String], vendor_pem: &str) {
    let trusted = data.join(CA_DIR).join(MANUFACTURERS_DIR);
    std::fs::create_dir_all(&trusted).expect("manufacturers dir");
    std::fs::write(trusted.join("acme.pem"), factory.ca_pem()).expect("manufacturer CA");
    let store = Arc::new(SledStore::open(data).expect("store"));
    store
        .allow_list_put_all(fleet.iter().map(String::as_str))
        .expect("allow-list");
    let pki =
        PkiService::init_if_missing(data, Arc::clone(&store), Default::default()).expect("CA");
    let (_, _, server_certificate) = pki
        .server_certificate(runtime::SERVER_CN)
        .expect("server certificate");
    let mut config = BootstrapConfig::default();
    config.security.insert(
        1,
        ServerSecurity::est(
            &format!("coaps://{}", ports.coaps()),
            1,
            &server_certificate,
        ),
    );
    config.servers.insert(0, ServerConfig::new(1));
    for endpoint in fleet {
        store
            .put_bootstrap_config(endpoint, &config)
            .expect("bootstrap config");
    }
    drop(pki);
    drop(store);
    plugins::install(data, &["trust_recovery"]);
    let keys = data.join("plugin-keys/trust-recovery");
    std::fs::create_dir_all(&keys).expect("key dir");
    std::fs::write(keys.join("vendor.pem"), vendor_pem).expect("vendor key");
}

async fn start(data: &FsPath, ports: &Ports) -> RunningServer {
    let mut config = Config::ephemeral(data.to_path_buf());
    config.coap_port = ports.coap;
    config.coaps_port = ports.coaps;
    config.bs_coap_port = ports.bs_coap;
    config.bs_coaps_port = ports.bs_coaps;
    runtime::start(&config).await.expect("server starts")
}

fn device(
    endpoint: &str,
    ports: &Ports,
    credentials: ClientCredentials,
    vendor: &steward_pki::cose::VerifyingKey,
) -> ManagedDevice {
    let mut device = DeviceConfig::new(endpoint, Version::V1_1);
    device.server_uri = format!("coaps://{}", ports.coaps());
    device.clock = i64::try_from(unix()).unwrap_or(0);
    device.trust = Some(TrustConfig {
        installation: INSTALLATION.into(),
        vendor_key: *vendor,
        initial: InitialTrust::FirstUse,
        recovery_retry: Duration::from_secs(1),
    });
    let mut config = ManagedConfig::new(device, ports.coaps());
    config.factory = Some(credentials);
    config.bootstrap = Some(format!("coaps://127.0.0.1:{}", ports.bs_coaps));
    config.ocsp = OcspCheck::Off;
    // Short CoAP timeouts: a lost server is noticed in seconds, not the default minute.
    config.stack.endpoint = EndpointConfig {
        ack_timeout: Duration::from_millis(500),
        max_retransmit: 2,
        ..config.stack.endpoint
    };
    config.backoff.initial = Duration::from_millis(500);
    config.backoff.max = Duration::from_secs(2);
    managed::spawn(config).expect("device starts")
}

/// What a device's trust says now.
async fn trust_of(device: &ManagedDevice) -> Option<(TrustState, Option<[u8; 32]>, u8)> {
    for _ in 0..50 {
        let (tx, rx) = oneshot::channel();
        let sent = device.command(move |client, _| {
            let t = client.device.device().trust();
            let _ = tx.send(t.map(|t| (t.state(), t.fingerprint(), t.last_outcome() as u8)));
        });
        if sent && let Ok(answer) = rx.await {
            return answer;
        }
        // Between two drivers: ask again.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Waits until every endpoint is registered with `server`.
async fn all_registered(server: &RunningServer, fleet: &[String], what: &str) -> Duration {
    let t = Instant::now();
    loop {
        let missing = fleet
            .iter()
            .filter(|e| server.registration(e).is_none())
            .count();
        if missing == 0 {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < WAIT,
            "{what}: {missing} of {} devices not registered after {WAIT:?}",
            fleet.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A plugin command through the HTTP API, as the administrator sends it.
async fn command(server: &RunningServer, name: &str, argument: Json) -> (u16, Json) {
    let http = server.http_addr().expect("http");
    let body = json!({"name": name, "argument": argument}).to_string();
    let reply = HttpRequest::new("POST", "/api/steward/plugins/trust-recovery/commands")
        .body("application/json", body.as_bytes())
        .send(http)
        .await;
    let json = serde_json::from_str(&reply.text()).unwrap_or(Json::String(reply.text()));
    (reply.status, json)
}

/// The vendor's side, in-process: its own data directory and key, an administrator, the
/// HTTP API.
struct Vendor {
    running: steward::vendor::RunningVendor,
    token: String,
    public_pem: String,
    _dir: tempfile::TempDir,
}

impl Vendor {
    async fn start() -> Vendor {
        let dir = tempfile::tempdir().expect("tempdir");
        let service =
            steward::vendor::VendorService::init(dir.path(), "Acme Devices").expect("vendor init");
        let token = service
            .add_admin("alice")
            .expect("admin")
            .expose()
            .to_owned();
        let public_pem = service.public_key_pem().to_owned();
        let running = steward::vendor::serve(service, "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("vendor serves");
        Vendor {
            running,
            token,
            public_pem,
            _dir: dir,
        }
    }

    /// `POST /api/vendor/recovery-tokens` as the administrator: the token, hex.
    async fn recovery_token(&self, fingerprint: &str, installation: &str) -> (u16, Json) {
        let body = json!({"fingerprint": fingerprint, "installation": installation}).to_string();
        let reply = HttpRequest::new("POST", "/api/vendor/recovery-tokens")
            .header("authorization", &format!("Bearer {}", self.token))
            .body("application/json", body.as_bytes())
            .send(self.running.local_addr())
            .await;
        let json = serde_json::from_str(&reply.text()).unwrap_or(Json::String(reply.text()));
        (reply.status, json)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_in_fleet_recovers_after_its_server_is_lost() {
    let n = std::env::var("STEWARD_RECOVERY_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEVICES);
    let fleet = endpoints(n);
    let factory = Factory::new();
    let vendor = Vendor::start().await;
    let vendor_key =
        steward_pki::cose::load_verifying_key(&vendor.public_pem).expect("vendor public key");
    let ports = Ports::new();

    // Server A: the devices bootstrap, trust it on first use, enrol and register.
    let dir_a = tempfile::tempdir().expect("tempdir");
    let data_a: PathBuf = dir_a.path().join("a");
    prepare(&data_a, &ports, &factory, &fleet, &vendor.public_pem);
    let server_a = start(&data_a, &ports).await;
    let mut devices = Vec::new();
    for endpoint in &fleet {
        devices.push(device(
            endpoint,
            &ports,
            factory.credentials(endpoint),
            &vendor_key,
        ));
    }
    all_registered(&server_a, &fleet, "server A").await;
    let locked = trust_of(&devices[0]).await.expect("trust");
    assert_eq!(locked.0, TrustState::LockedIn);
    let fingerprint_a = locked.1.expect("a CTL");
    for d in &devices {
        assert_eq!(trust_of(d).await.and_then(|t| t.1), Some(fingerprint_a));
    }

    // A is lost with its data directory; B comes up with a new CA on the same addresses.
    server_a.shutdown().await.expect("A stops");
    std::fs::remove_dir_all(&data_a).expect("A's data destroyed");
    let dir_b = tempfile::tempdir().expect("tempdir");
    let data_b = dir_b.path().join("b");
    prepare(&data_b, &ports, &factory, &fleet, &vendor.public_pem);
    let server_b = start(&data_b, &ports).await;

    // The devices notice (their next Update), cannot authenticate B and sit in recovery mode.
    for d in &devices {
        d.command(|client, _| client.device.registration_mut().trigger_update());
    }
    let t = Instant::now();
    loop {
        let mut recovering = 0;
        for d in &devices {
            if trust_of(d).await.map(|t| t.0) == Some(TrustState::Recovery) {
                recovering += 1;
            }
        }
        if recovering == devices.len() {
            break;
        }
        assert!(t.elapsed() < WAIT, "{recovering} of {n} in recovery mode");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        fleet.iter().all(|e| server_b.registration(e).is_none()),
        "no device registers with B without a token"
    );
    for d in &devices {
        assert_eq!(
            trust_of(d).await.and_then(|t| t.1),
            Some(fingerprint_a),
            "the CTL is untouched"
        );
    }

    // The administrator: one device's fingerprint, a token from the vendor, import into B.
    let (status, issued) = vendor
        .recovery_token(&hex(&fingerprint_a), INSTALLATION)
        .await;
    assert_eq!(status, 201, "{issued}");
    let token = issued["token"].as_str().expect("token").to_owned();
    let size = token.len() / 2;
    let imported_at = Instant::now();
    let (status, reply) = command(&server_b, "import", json!(token)).await;
    assert_eq!(status, 200, "{reply}");

    if std::env::var("TRACE_DEVICE").is_ok() {
        tokio::time::sleep(Duration::from_secs(8)).await;
        while let Some(e) = devices[0].try_next_event() {
            println!("dev0: {e:?}");
        }
        println!(
            "status: {:?}",
            command(&server_b, "status", Json::Null).await
        );
    }
    let took = all_registered(&server_b, &fleet, "server B after recovery").await;
    println!(
        "recovery: {n} devices recovered and registered with B in {:.2} s after the import \
         (token {size} bytes)",
        imported_at.elapsed().as_secs_f64()
    );
    let _ = took;
    let mut fingerprint_b = None;
    for d in &devices {
        let (state, fingerprint, _) = trust_of(d).await.expect("trust");
        assert_eq!(state, TrustState::LockedIn);
        assert_ne!(fingerprint, Some(fingerprint_a), "a new CTL");
        assert!(fingerprint.is_some());
        if let Some(f) = fingerprint_b {
            assert_eq!(fingerprint, Some(f), "every device locked in to B's CA");
        }
        fingerprint_b = fingerprint;
    }
    let (status, progress) = command(&server_b, "status", Json::Null).await;
    assert_eq!(status, 200, "{progress}");
    println!("trust-recovery status: {progress}");

    for d in devices {
        let _ = d.shutdown().await;
    }
    server_b.shutdown().await.expect("B stops");
}
