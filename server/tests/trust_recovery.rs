//! Trust-chain recovery (issue 8, seed 000) end to end, on real sockets: a fleet of simulated
//! devices locked in to server A's CTL; A's data directory is destroyed; server B comes up
//! with a new CA on the same addresses; the devices cannot connect; the administrator reads
//! one device's fingerprint, gets a recovery token from the vendor service, imports it into
//! B's `trust-recovery` plugin; every device recovers and registers with B with no
//! per-device action. Then the security cases, each leaving the devices' CTL untouched.

mod http_client;
mod plugins;

use std::path::{Path as FsPath, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_client::Request as HttpRequest;
use openssl::x509::X509;
use serde_json::{Value as Json, json};
use steward::demo_recovery::{self as scenario, INSTALLATION, Manufacturer, ScenarioPorts};
use steward::dm::{DownlinkRequest, WriteMode};
use steward::pki::CA_DIR;
use steward::runtime::{self, RunningServer};
use steward_client::managed::{self, ManagedDevice};
use steward_client::trust::TrustState;
use steward_objects::{Node, Path, Resource, Value};
use steward_pki::recovery::{RecoveryClaims, sign_recovery_token};

/// Fleet size: `STEWARD_RECOVERY_DEVICES` overrides it (the note's figures use 10 000).
const DEVICES: usize = 100;
const WAIT: Duration = Duration::from_secs(120);
/// The trust-recovery plugin's component, and the rogue operator's (plugins/tests/rogue).
const RECOVERY: &str = "trust_recovery";
const ROGUE: &str = "rogue";

fn unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a device's trust says now: (state, CTL fingerprint, last outcome).
async fn trust_of(device: &ManagedDevice) -> Option<(TrustState, Option<[u8; 32]>, u8)> {
    scenario::trust_of(device)
        .await
        .map(|t| (t.state, t.fingerprint, t.last_outcome))
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
    plugin_command(server, "trust-recovery", name, argument).await
}

async fn plugin_command(
    server: &RunningServer,
    plugin: &str,
    name: &str,
    argument: Json,
) -> (u16, Json) {
    let http = server.http_addr().expect("http");
    let body = json!({"name": name, "argument": argument}).to_string();
    let target = format!("/api/steward/plugins/{plugin}/commands");
    let reply = HttpRequest::new("POST", &target)
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
    dir: tempfile::TempDir,
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
            dir,
        }
    }

    fn dir(&self) -> &FsPath {
        self.dir.path()
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

/// Devices locked in to server A, and A lost with its data directory.
struct Scene {
    factory: Manufacturer,
    vendor: Vendor,
    ports: ScenarioPorts,
    fleet: Vec<String>,
    devices: Vec<ManagedDevice>,
    /// The CTL fingerprint every device holds (A's CA).
    fingerprint_a: [u8; 32],
    dirs: tempfile::TempDir,
}

impl Scene {
    async fn lost_server(n: usize) -> Scene {
        let fleet = scenario::fleet(n);
        let dirs = tempfile::tempdir().expect("tempdir");
        let factory = Manufacturer::new(&dirs.path().join("acme")).expect("manufacturer");
        let vendor = Vendor::start().await;
        let vendor_key =
            steward_pki::cose::load_verifying_key(&vendor.public_pem).expect("vendor key");
        let ports = ScenarioPorts::free().expect("ports");

        // Server A: the devices bootstrap, trust it on first use, enrol and register.
        let data_a = dirs.path().join("a");
        scenario::prepare_server(
            &data_a,
            &ports,
            &factory,
            &fleet,
            &plugins::component(RECOVERY),
            &vendor.public_pem,
        )
        .expect("A prepared");
        let server_a = runtime::start(&ports.config(&data_a))
            .await
            .expect("A starts");
        let devices: Vec<ManagedDevice> = fleet
            .iter()
            .map(|e| {
                let credentials = factory.credentials(e).expect("factory credentials");
                let config = scenario::device_config(
                    e,
                    &ports,
                    credentials,
                    &vendor_key,
                    &scenario::Pace::quick(),
                );
                managed::spawn(config).expect("device starts")
            })
            .collect();
        all_registered(&server_a, &fleet, "server A").await;
        let locked = trust_of(&devices[0]).await.expect("trust");
        assert_eq!(locked.0, TrustState::LockedIn);
        let fingerprint_a = locked.1.expect("a CTL");
        for d in &devices {
            assert_eq!(trust_of(d).await.and_then(|t| t.1), Some(fingerprint_a));
        }

        // A is lost with its data directory.
        server_a.shutdown().await.expect("A stops");
        std::fs::remove_dir_all(&data_a).expect("A's data destroyed");
        Scene {
            factory,
            vendor,
            ports,
            fleet,
            devices,
            fingerprint_a,
            dirs,
        }
    }

    /// A server with a new CA on A's addresses, with `plugin` loaded.
    async fn new_server(&self, name: &str, plugin: &str) -> (RunningServer, PathBuf) {
        let data = self.dirs.path().join(name);
        scenario::prepare_server(
            &data,
            &self.ports,
            &self.factory,
            &self.fleet,
            &plugins::component(plugin),
            &self.vendor.public_pem,
        )
        .expect("server prepared");
        let server = runtime::start(&self.ports.config(&data))
            .await
            .expect("server starts");
        (server, data)
    }

    /// The devices notice the loss (their next Update), cannot authenticate the server now on
    /// A's addresses and end up in recovery mode; none registers with it.
    async fn locked_out(&self, server: &RunningServer) {
        for d in &self.devices {
            d.command(|client, _| client.device.registration_mut().trigger_update());
        }
        self.until("every device in recovery mode", |t| {
            t.0 == TrustState::Recovery
        })
        .await;
        assert!(
            self.fleet.iter().all(|e| server.registration(e).is_none()),
            "no device registers without a token"
        );
        self.ctl_untouched().await;
    }

    /// Waits until `want` holds for every device's (state, fingerprint, last outcome).
    async fn until(&self, what: &str, want: impl Fn(&(TrustState, Option<[u8; 32]>, u8)) -> bool) {
        let t = Instant::now();
        loop {
            let mut pending = 0;
            for d in &self.devices {
                if !trust_of(d).await.is_some_and(|t| want(&t)) {
                    pending += 1;
                }
            }
            if pending == 0 {
                return;
            }
            assert!(t.elapsed() < WAIT, "{what}: {pending} devices not there");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn ctl_untouched(&self) {
        for d in &self.devices {
            assert_eq!(
                trust_of(d).await.and_then(|t| t.1),
                Some(self.fingerprint_a),
                "the CTL is untouched"
            );
        }
    }

    async fn shutdown(self) {
        for d in self.devices {
            let _ = d.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_in_fleet_recovers_after_its_server_is_lost() {
    let n = std::env::var("STEWARD_RECOVERY_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEVICES);
    let scene = Scene::lost_server(n).await;
    // B comes up with a new CA on the same addresses.
    let (server_b, _) = scene.new_server("b", RECOVERY).await;
    scene.locked_out(&server_b).await;

    // The administrator: one device's fingerprint, a token from the vendor, import into B.
    let (state, fingerprint, _) = trust_of(&scene.devices[0]).await.expect("trust");
    assert_eq!(state, TrustState::Recovery);
    let (status, issued) = scene
        .vendor
        .recovery_token(&hex(&fingerprint.expect("CTL")), INSTALLATION)
        .await;
    assert_eq!(status, 201, "{issued}");
    let token = issued["token"].as_str().expect("token").to_owned();
    let imported_at = Instant::now();
    let (status, reply) = command(&server_b, "import", json!(token)).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["offered"], json!(true), "{reply}");

    all_registered(&server_b, &scene.fleet, "server B after recovery").await;
    println!(
        "recovery: {n} devices recovered and registered with B in {:.2} s after the import \
         (token {} bytes)",
        imported_at.elapsed().as_secs_f64(),
        token.len() / 2
    );
    let fingerprint_b = trust_of(&scene.devices[0]).await.and_then(|t| t.1);
    assert!(
        fingerprint_b.is_some_and(|f| f != scene.fingerprint_a),
        "a new CTL"
    );
    scene
        .until("locked in to B's CA", |t| {
            t.0 == TrustState::LockedIn && t.1 == fingerprint_b
        })
        .await;

    // The plugin's account of it.
    let (status, progress) = command(&server_b, "status", Json::Null).await;
    assert_eq!(status, 200, "{progress}");
    let tokens = progress["tokens"].as_array().expect("tokens");
    assert_eq!(tokens.len(), 1, "{progress}");
    let counts = &tokens[0]["progress"];
    assert_eq!(counts["accepted"], json!(n), "{progress}");
    scene.shutdown().await;
    server_b.shutdown().await.expect("B stops");
}

/// A token signed with `key`, for a claim set the vendor service would never issue.
fn sign_token(key: &steward_pki::cose::SigningKey, claims: &RecoveryClaims) -> String {
    hex(&sign_recovery_token(key, b"k", claims).expect("signed"))
}

fn claims(
    fingerprint: [u8; 32],
    installation: &str,
    issued_at: u64,
    expires_at: u64,
) -> RecoveryClaims {
    RecoveryClaims {
        issuer: "Acme Devices".into(),
        ctl_fingerprint: fingerprint,
        installation: installation.into(),
        issued_at,
        expires_at,
        token_id: [0x5a; 16],
    }
}

/// The issuing CA certificate (DER) and key of a server's data directory.
fn server_ca(data: &FsPath) -> (Vec<u8>, steward_pki::cose::SigningKey) {
    let dir = data.join(CA_DIR);
    let cert = X509::from_pem(&std::fs::read(dir.join("issuing.crt.pem")).expect("CA cert"))
        .expect("pem")
        .to_der()
        .expect("der");
    let key = std::fs::read_to_string(dir.join("issuing.key.pem")).expect("CA key");
    (
        cert,
        steward_pki::cose::load_signing_key(&key).expect("P-256 CA key"),
    )
}

/// Offers `hex` at /42769/0/`resource` from the rogue server and waits until every device has
/// refused it with `outcome` (42769/0/9); the CTL stays A's and nobody registers.
async fn rogue_offer(
    scene: &Scene,
    rogue: &RunningServer,
    case: &str,
    resource: u16,
    hex: String,
    outcome: u8,
) {
    let (status, reply) = plugin_command(
        rogue,
        "rogue",
        "offer",
        json!({"name": case, "resource": resource, "hex": hex}),
    )
    .await;
    assert_eq!(status, 200, "{case}: {reply}");
    scene
        .until(case, |t| t.0 == TrustState::Recovery && t.2 == outcome)
        .await;
    scene.ctl_untouched().await;
    assert!(
        scene.fleet.iter().all(|e| rogue.registration(e).is_none()),
        "{case}: nobody registers with the rogue server"
    );
    let (status, _) = plugin_command(rogue, "rogue", "withdraw", json!(case)).await;
    assert_eq!(status, 200);
}

/// Every way to make a locked-in device give up its CTL without the vendor's say-so fails,
/// and each leaves the CTL untouched: a rogue server on A's addresses (no token; tokens for
/// another installation and another CTL, expired, forged, signed by the server's key; a CTL
/// update of its own), then, after a real recovery with B, the same token replayed and a CTL
/// update that no anchor signed. A chain-linked update signed by B's CA is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_but_a_valid_vendor_token_unlocks_a_device() {
    let scene = Scene::lost_server(4).await;
    let fingerprint = hex(&scene.fingerprint_a);
    let now = unix();

    // The rogue server: its own CA on A's addresses; its operator owns 42769.
    let (rogue, rogue_data) = scene.new_server("rogue", ROGUE).await;
    scene.locked_out(&rogue).await;

    // Genuine vendor tokens for the wrong scope.
    let (status, other_site) = scene.vendor.recovery_token(&fingerprint, "plant-8").await;
    assert_eq!(status, 201);
    let other_site = other_site["token"].as_str().expect("token").to_owned();
    let (status, other_ctl) = scene
        .vendor
        .recovery_token(&hex(&[0x11; 32]), INSTALLATION)
        .await;
    assert_eq!(status, 201);
    let other_ctl = other_ctl["token"].as_str().expect("token").to_owned();
    // What the vendor service would not issue, signed with its key.
    let vendor_key = steward_pki::cose::load_signing_key(
        &std::fs::read_to_string(scene.vendor.dir().join("vendor-key.pem")).expect("vendor key"),
    )
    .expect("vendor key");
    let expired = sign_token(
        &vendor_key,
        &claims(scene.fingerprint_a, INSTALLATION, now - 7200, now - 3600),
    );
    let (status, good) = scene
        .vendor
        .recovery_token(&fingerprint, INSTALLATION)
        .await;
    assert_eq!(status, 201);
    let good = good["token"].as_str().expect("token").to_owned();
    let mut forged = unhex(&good);
    let last = forged.len() - 1;
    forged[last] ^= 0x01;
    let (rogue_ca, rogue_key) = server_ca(&rogue_data);
    let by_server = sign_token(
        &rogue_key,
        &claims(scene.fingerprint_a, INSTALLATION, now - 60, now + 3600),
    );

    use steward_client::trust::Outcome;
    for (case, token, outcome) in [
        (
            "another installation",
            other_site,
            Outcome::WrongInstallation,
        ),
        ("another CTL", other_ctl, Outcome::WrongFingerprint),
        ("expired", expired, Outcome::Expired),
        ("forged signature", hex(&forged), Outcome::BadSignature),
        (
            "signed by the server's key",
            by_server,
            Outcome::BadSignature,
        ),
    ] {
        rogue_offer(&scene, &rogue, case, 3, token, outcome as u8).await;
    }
    // The rogue's own CTL, as a chain-linked update signed by its CA.
    let update = steward_pki::ctl::sign_ctl_update(
        &rogue_key,
        &rogue_ca,
        &steward_pki::ctl::Ctl::new(2, vec![rogue_ca.clone()]).expect("ctl"),
    )
    .expect("update");
    rogue_offer(
        &scene,
        &rogue,
        "rogue CTL update",
        5,
        hex(&update),
        Outcome::CtlUpdateRefused as u8,
    )
    .await;
    rogue.shutdown().await.expect("rogue stops");

    // The real recovery: B and the good token. The refusals used nothing up.
    let (server_b, data_b) = scene.new_server("b", RECOVERY).await;
    let (status, reply) = command(&server_b, "import", json!(good)).await;
    assert_eq!(status, 200, "{reply}");
    all_registered(&server_b, &scene.fleet, "B after recovery").await;
    let fingerprint_b = trust_of(&scene.devices[0]).await.and_then(|t| t.1);
    scene
        .until("locked in to B", |t| {
            t.0 == TrustState::LockedIn && t.1 == fingerprint_b
        })
        .await;

    // Replayed: B still offers the token; a device that bootstraps again refuses it.
    let devices = server_b.devices();
    let endpoint = &scene.fleet[0];
    devices
        .trigger_bootstrap(endpoint, None, Duration::from_secs(10))
        .await
        .expect("bootstrap trigger");
    let replayed = |t: &(TrustState, Option<[u8; 32]>, u8)| {
        t.2 == Outcome::WrongFingerprint as u8 && t.1 == fingerprint_b
    };
    let t = Instant::now();
    while !trust_of(&scene.devices[0])
        .await
        .is_some_and(|s| replayed(&s))
    {
        assert!(t.elapsed() < WAIT, "the replayed token is refused");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // (It does not register again: B's EST refuses factory credentials once it has issued an
    // operational certificate for them, the allow-list's one-enrolment rule.)

    // Over LwM2M from B to another device: the token again, a rogue CTL update, then B's own
    // chain-linked one.
    let (endpoint, device) = (&scene.fleet[1], &scene.devices[1]);
    let write = |payload: Vec<u8>, resource: u16| {
        let devices = devices.clone();
        let endpoint = endpoint.clone();
        async move {
            devices
                .request(
                    &endpoint,
                    DownlinkRequest::Write {
                        path: Path::Resource(42769, 0, resource),
                        mode: WriteMode::Replace,
                        node: Node::Resource(Resource::Single(Value::Opaque(payload))),
                        format: None,
                    },
                    Duration::from_secs(10),
                )
                .await
        }
    };
    let refused = write(unhex(&good), 3).await;
    assert!(forbidden(&refused), "replay over LwM2M: {refused:?}");
    let refused = write(update, 5).await;
    assert!(forbidden(&refused), "rogue CTL update: {refused:?}");
    assert_eq!(
        trust_of(&scene.devices[0]).await.and_then(|t| t.1),
        fingerprint_b
    );

    let (b_ca, b_key) = server_ca(&data_b);
    let next = steward_pki::ctl::Ctl::new(2, vec![b_ca.clone(), rogue_ca]).expect("ctl");
    let linked = steward_pki::ctl::sign_ctl_update(&b_key, &b_ca, &next).expect("update");
    let accepted = write(linked, 5).await;
    assert!(accepted.is_ok(), "B's chain-linked update: {accepted:?}");
    assert_eq!(
        trust_of(device).await.and_then(|t| t.1),
        Some(next.fingerprint()),
        "the device holds B's next CTL"
    );

    scene.shutdown().await;
    server_b.shutdown().await.expect("B stops");
}

/// The device answered 4.03 Forbidden.
fn forbidden<T>(outcome: &Result<T, steward::dm::DmError>) -> bool {
    matches!(
        outcome,
        Err(steward::dm::DmError::Device { code, .. }) if *code == steward_coap::message::Code::FORBIDDEN
    )
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}
