//! The trust-chain recovery scenario of `steward demo` (issue 8, seed 000), on real sockets
//! and with its own servers, apart from the demo's server and fleet:
//!
//! 1. A manufacturer CA ("Acme") issues a factory certificate per device. Server A gets its
//!    data directory prepared offline: its CA, the manufacturer trusted for bootstrap and
//!    EST, the fleet on the allow-list, one bootstrap configuration per device (Security
//!    Mode 4: EST with A's CA), the `trust-recovery` plugin and the vendor's public key for
//!    it (`plugin-keys/trust-recovery/vendor.pem`).
//! 2. The devices (`steward_client::managed`, built with the vendor's public key, trust on
//!    first use) bootstrap, pin A's CA as their Certificate Trust List, enrol and register.
//! 3. A stops and its data directory is destroyed. B comes up on the same ports with a data
//!    directory prepared the same way, hence a new CA.
//! 4. The devices' next Update (brought forward) fails: they cannot authenticate B, and sit
//!    in recovery mode; none registers with B.
//! 5. The administrator reads one device's CTL fingerprint, asks the vendor service (in
//!    process, its own data directory and key) for a recovery token over its HTTP API
//!    (`steward vendor request`'s client), and imports it into B's plugin through B's HTTP
//!    API (`steward plugins command trust-recovery import`).
//! 6. Every device recovers and registers with B with no per-device action; the time from
//!    the import to the last registration is the figure printed.
//!
//! Everything lives in one temporary directory (manufacturer CA, vendor, A, B), removed
//! afterwards. The ports are free loopback ports, not the demo server's.
//!
//! The building blocks are public so that the end-to-end test (`tests/trust_recovery.rs`)
//! can use them: [`Manufacturer`], [`ScenarioPorts`], [`prepare_server`],
//! [`device_config`], [`trust_of`], [`fleet`].

use crate::hex::encode as hex;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::x509::{X509NameBuilder, X509ReqBuilder};
use serde_json::Value as Json;
use steward_client::DeviceConfig;
use steward_client::est::OcspCheck;
use steward_client::managed::{self, ManagedConfig, ManagedDevice};
use steward_client::trust::{InitialTrust, TrustConfig, TrustState};
use steward_coap::endpoint::Config as EndpointConfig;
use steward_dtls::{ClientCertificate, ClientCredentials, ServerTrust};
use steward_objects::Version;
use steward_pki::ca::{Ca, CaNames, IssueParams, Serial};
use steward_pki::cose::VerifyingKey;
use steward_pki::csr::Csr;
use steward_pki::profile::Profile;
use tokio::sync::oneshot;

use crate::bootstrap::{BootstrapConfig, ServerConfig, ServerSecurity};
use crate::config::Config;
use crate::pki::{CA_DIR, MANUFACTURERS_DIR, PkiService};
use crate::plugins_cli::{self, PluginsArgs, PluginsCommand};
use crate::runtime::{self, RunningServer};
use crate::store::{SledStore, Store};
use crate::vendor::{self, Outcome as AuditOutcome, RunningVendor, VendorService};

/// The fleet size when not told otherwise (the issue's figure).
pub const DEFAULT_RECOVERY_DEVICES: usize = 100;
/// The `trust-recovery` plugin's component as `scripts/build-plugins` leaves it.
pub const DEFAULT_RECOVERY_PLUGIN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../plugins/target/wasm32-wasip2/release/trust_recovery.wasm"
);
/// The plugin's name (its key directory, its API path).
pub const PLUGIN: &str = "trust-recovery";
/// Its file name in a plugin directory.
const PLUGIN_FILE: &str = "trust_recovery.wasm";
/// The object the plugin owns (Trust Recovery).
const PLUGIN_OBJECT: u16 = steward_client::trust::OBJECT;
/// The installation the devices belong to (set by their installer).
pub const INSTALLATION: &str = "plant-7";
/// The vendor, as its tokens name it.
const VENDOR: &str = "Acme Devices";
/// The vendor's administrator who asks for the token.
const ADMIN: &str = "alice";
/// How long the scenario waits for the whole fleet to do something, at the least; each
/// device adds [`WAIT_PER_DEVICE`].
const WAIT: Duration = Duration::from_secs(60);
const WAIT_PER_DEVICE: Duration = Duration::from_millis(200);
/// From this many devices on, waits report progress every [`PROGRESS_EVERY`].
const PROGRESS_FROM: usize = 1000;
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How long the plugin's progress report may lag the registrations.
const STATUS_WAIT: Duration = Duration::from_secs(10);

/// What to run the scenario with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryOptions {
    pub devices: usize,
    /// The `trust-recovery` component; missing fails the scenario before anything starts.
    pub component: PathBuf,
}

impl Default for RecoveryOptions {
    fn default() -> RecoveryOptions {
        RecoveryOptions {
            devices: DEFAULT_RECOVERY_DEVICES,
            component: PathBuf::from(DEFAULT_RECOVERY_PLUGIN),
        }
    }
}

/// How the scenario went, for the demo's lines.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub devices: usize,
    /// From the import to the last registration with B.
    pub recovery: Duration,
    /// One line per stage, in order; the last says how long the recovery took.
    pub lines: Vec<String>,
}

/// Runs the scenario in a fresh temporary directory, removed afterwards (whatever happens).
/// An error says what went wrong and how far the scenario got.
pub async fn run(options: &RecoveryOptions) -> Result<Recovered, String> {
    if options.devices == 0 {
        return Err("no devices to recover".into());
    }
    if !options.component.is_file() {
        return Err(format!(
            "trust-recovery plugin not built: run scripts/build-plugins ({} is missing)",
            options.component.display()
        ));
    }
    let root = TempDir::new()?;
    let mut stage = Stage::default();
    let result = scenario(options, &root.0, &mut stage).await;
    stage.stop().await;
    drop(root);
    result
}

/// A temporary directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, String> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!(
            "steward-demo-recovery-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What is running, stopped at the end whether the scenario passed or not.
#[derive(Default)]
struct Stage {
    devices: Vec<ManagedDevice>,
    server: Option<RunningServer>,
    vendor: Option<RunningVendor>,
}

impl Stage {
    /// The devices first (each De-registers from the server it is registered with, all at
    /// once), then the server and the vendor service.
    async fn stop(&mut self) {
        let mut stopping = tokio::task::JoinSet::new();
        for device in self.devices.drain(..) {
            stopping.spawn(async move {
                let _ = device.shutdown().await;
            });
        }
        while stopping.join_next().await.is_some() {}
        if let Some(server) = self.server.take()
            && let Err(e) = server.shutdown().await
        {
            tracing::warn!(error = %e, "recovery scenario: a server did not stop cleanly");
        }
        if let Some(vendor) = self.vendor.take() {
            vendor.shutdown().await;
        }
    }
}

async fn scenario(
    options: &RecoveryOptions,
    root: &Path,
    stage: &mut Stage,
) -> Result<Recovered, String> {
    let n = options.devices;
    let wait = WAIT + WAIT_PER_DEVICE * u32::try_from(n).unwrap_or(u32::MAX);
    let endpoints = fleet(n);
    let ports = ScenarioPorts::free().map_err(|e| format!("no free ports: {e}"))?;
    let mut lines = Vec::new();

    // The vendor's service: its own key and administrator, its HTTP API.
    let vendor_dir = root.join("vendor");
    let service = blocking(move || {
        let service =
            VendorService::init(&vendor_dir, VENDOR).map_err(|e| format!("vendor service: {e}"))?;
        let admin = service
            .add_admin(ADMIN)
            .map_err(|e| format!("vendor administrator: {e}"))?;
        Ok((service, admin.expose().to_owned()))
    })
    .await?;
    let (service, admin_token) = service;
    let vendor_pem = service.public_key_pem().to_owned();
    let vendor_key = steward_pki::cose::load_verifying_key(&vendor_pem)
        .map_err(|e| format!("vendor public key: {e}"))?;
    let running = vendor::serve(service.clone(), SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(|e| format!("vendor service: {e}"))?;
    let vendor_url = format!("http://{}", running.local_addr());
    stage.vendor = Some(running);

    // The factory, and server A's data directory.
    let data_a = root.join("a");
    let prepared = {
        let (root, data, fleet, component, pem) = (
            root.to_path_buf(),
            data_a.clone(),
            endpoints.clone(),
            options.component.clone(),
            vendor_pem.clone(),
        );
        blocking(move || {
            let manufacturer = Manufacturer::new(&root.join("acme-ca"))?;
            let credentials = fleet
                .iter()
                .map(|e| manufacturer.credentials(e))
                .collect::<Result<Vec<_>, _>>()?;
            prepare_server(&data, &ports, &manufacturer, &fleet, &component, &pem)?;
            Ok((manufacturer, credentials))
        })
        .await?
    };
    let (manufacturer, credentials) = prepared;
    let manufacturer = Arc::new(manufacturer);

    // Server A; the devices bootstrap, trust it on first use, enrol and register.
    let t = Instant::now();
    let server_a = runtime::start(&ports.config(&data_a))
        .await
        .map_err(|e| format!("server A: {e}"))?;
    let plugin = plugin_loaded(&server_a).map_err(|e| format!("server A: {e}"));
    stage.server = Some(server_a);
    let plugin = plugin?;
    let pace = Pace::for_devices(endpoints.len());
    for (i, (endpoint, credentials)) in endpoints.iter().zip(credentials).enumerate() {
        let config = device_config(endpoint, &ports, credentials, &vendor_key, &pace);
        let device = managed::spawn(config).map_err(|e| format!("device {endpoint}: {e}"))?;
        stage.devices.push(device);
        if let Some(rate) = pace.start_rate
            && (i + 1) % 50 == 0
        {
            tokio::time::sleep(Duration::from_millis(50_000 / u64::from(rate.max(1)))).await;
        }
    }
    let server_a = stage.server.as_ref().ok_or("server A is gone")?;
    all_registered(server_a, &endpoints, wait)
        .await
        .map_err(|e| format!("server A: {e}"))?;
    let registered_a = t.elapsed();
    let fingerprint_a = locked_in_to_one(&stage.devices)
        .await
        .map_err(|e| format!("after registering with A: {e}"))?;
    lines.push(format!(
        "server A (new CA, plugin {plugin}): {n} devices with factory certificates bootstrapped \
         (Security Mode 4, EST), locked in to A's CTL on first use (fingerprint {}…) and \
         registered in {}",
        short(&fingerprint_a),
        secs(registered_a)
    ));

    // A is lost with its data directory; B comes up with a new CA on the same ports.
    if let Some(server_a) = stage.server.take() {
        server_a
            .shutdown()
            .await
            .map_err(|e| format!("server A did not stop: {e}"))?;
    }
    std::fs::remove_dir_all(&data_a).map_err(|e| format!("destroying A's data: {e}"))?;
    lines.push("server A stopped and its data directory destroyed (its CA key is gone)".into());
    let data_b = root.join("b");
    {
        let (data, manufacturer, fleet, component, pem) = (
            data_b.clone(),
            Arc::clone(&manufacturer),
            endpoints.clone(),
            options.component.clone(),
            vendor_pem.clone(),
        );
        blocking(move || prepare_server(&data, &ports, &manufacturer, &fleet, &component, &pem))
            .await
            .map_err(|e| format!("server B: {e}"))?;
    }
    let server_b = runtime::start(&ports.config(&data_b))
        .await
        .map_err(|e| format!("server B: {e}"))?;
    let http = server_b.http_addr();
    stage.server = Some(server_b);
    let http = http.ok_or("server B has no HTTP API")?;

    // The devices' next Update (brought forward) fails: they cannot authenticate B.
    let t = Instant::now();
    for d in &stage.devices {
        d.command(|client, _| client.device.registration_mut().trigger_update());
    }
    let in_recovery = all_in_recovery(&stage.devices, wait).await?;
    let server_b = stage.server.as_ref().ok_or("server B is gone")?;
    let registered_b = endpoints
        .iter()
        .filter(|e| server_b.registration(e).is_some())
        .count();
    if registered_b > 0 {
        return Err(format!(
            "{registered_b} device(s) registered with B without a recovery token"
        ));
    }
    for d in &stage.devices {
        if trust_of(d).await.and_then(|t| t.fingerprint) != Some(fingerprint_a) {
            return Err("a device in recovery mode changed its CTL".into());
        }
    }
    lines.push(format!(
        "server B up on the same ports with a new CA: the devices cannot authenticate it; \
         {in_recovery}/{n} in recovery mode after {}, {registered_b} registered with B",
        secs(t.elapsed())
    ));

    // The administrator: one device's fingerprint, a token from the vendor, import into B.
    let fingerprint = hex(&fingerprint_a);
    let first = endpoints.first().cloned().unwrap_or_default();
    let issued = {
        let (url, fingerprint, service) = (vendor_url.clone(), fingerprint.clone(), service);
        blocking(move || {
            let received =
                vendor::client::request_token(&url, &admin_token, &fingerprint, INSTALLATION, None)
                    .map_err(|e| e.to_string())?;
            let audit = service.audit(1).map_err(|e| format!("vendor audit: {e}"))?;
            Ok((received, audit))
        })
        .await
        .map_err(|e| format!("recovery token: {e}"))?
    };
    let (received, audit) = issued;
    let token_id = received.answer["tokenId"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    let audited = audit
        .last()
        .filter(|r| {
            r.outcome == AuditOutcome::Issued && r.token_id.as_deref() == Some(token_id.as_str())
        })
        .ok_or("the vendor did not audit the token it issued")?;
    lines.push(format!(
        "administrator: fingerprint {}… read from {first} (/42769/0/0); token from the vendor \
         service ({vendor_url}): {} bytes, tokenId {}…, audited as issued to {} ({}, record \
         {})",
        short(&fingerprint_a),
        received.token.len(),
        &token_id[..token_id.len().min(8)],
        audited.admin,
        audited.channel.as_str(),
        audited.seq
    ));

    let imported_at = Instant::now();
    let reply = plugin_command(http, "import", Json::String(hex(&received.token))).await?;
    if reply["imported"] == false || reply["tokenId"].as_str() != Some(token_id.as_str()) {
        return Err(format!("B's plugin did not import the token: {reply}"));
    }
    lines.push(format!(
        "imported into B (steward plugins command {PLUGIN} import): offered to every bootstrap \
         session{}",
        match reply["writtenTo"].as_u64() {
            Some(written) if written > 0 => format!(", written to {written} registered devices"),
            _ => String::new(),
        }
    ));

    let server_b = stage.server.as_ref().ok_or("server B is gone")?;
    all_registered(server_b, &endpoints, wait)
        .await
        .map_err(|e| format!("after the import: {e}"))?;
    let recovery = imported_at.elapsed();
    let fingerprint_b = locked_in_to_one(&stage.devices)
        .await
        .map_err(|e| format!("after recovering: {e}"))?;
    if fingerprint_b == fingerprint_a {
        return Err("the devices are still locked in to A's CTL".into());
    }
    let (accepted, refused, reported) = progress(http, &token_id, n).await?;
    lines.push(format!(
        "B's {PLUGIN} status: token accepted by {accepted} devices, refused by {refused}; \
         {reported} report having recovered with it"
    ));
    lines.push(format!(
        "{n}/{n} recovered and registered with B in {}, no per-device action; all locked in to \
         B's CTL ({}…)",
        secs(recovery),
        short(&fingerprint_b)
    ));
    Ok(Recovered {
        devices: n,
        recovery,
        lines,
    })
}

/// Runs blocking work (keys, sled, files, blocking HTTP clients) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(format!("a blocking task failed: {e}")))
}

/// The plugin that owns object 42769 on `server`, "name version"; or what was refused.
fn plugin_loaded(server: &RunningServer) -> Result<String, String> {
    let host = server.plugins().host();
    if let Some(owner) = host.routing().owner(PLUGIN_OBJECT) {
        return Ok(format!("{} {}", owner.name(), owner.info.version));
    }
    let refused: Vec<String> = host
        .refused()
        .into_iter()
        .map(|r| format!("{}: {}", r.file, r.reason))
        .collect();
    Err(if refused.is_empty() {
        format!("no plugin owns /{PLUGIN_OBJECT}")
    } else {
        format!(
            "no plugin owns /{PLUGIN_OBJECT}; refused {}",
            refused.join("; ")
        )
    })
}

/// `steward plugins command trust-recovery COMMAND ARGUMENT` against the HTTP API at `http`,
/// as the administrator types it: the plugin's reply.
async fn plugin_command(http: SocketAddr, command: &str, argument: Json) -> Result<Json, String> {
    let args = PluginsArgs {
        command: PluginsCommand::Command {
            name: PLUGIN.into(),
            command: command.into(),
            argument: Some(argument.to_string()),
        },
        api: Some(format!("http://{http}")),
        token: None,
    };
    let what = format!("{PLUGIN} {command}");
    blocking(move || {
        let lines = plugins_cli::run(&args).map_err(|e| format!("{what}: {e}"))?;
        let reply = lines.first().map(String::as_str).unwrap_or("null");
        serde_json::from_str(reply).map_err(|e| format!("{what}: the reply is not JSON: {e}"))
    })
    .await
}

/// The plugin's progress of token `token_id` (`status`) once every device has reported
/// recovering with it, or as it is after [`STATUS_WAIT`]: accepted, refused, recovered.
async fn progress(http: SocketAddr, token_id: &str, n: usize) -> Result<(u64, u64, u64), String> {
    let t = Instant::now();
    loop {
        let status = plugin_command(http, "status", Json::Null).await?;
        let progress = status["tokens"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["tokenId"] == token_id)
            .map(|t| t["progress"].clone())
            .ok_or_else(|| format!("{PLUGIN} status does not list the token: {status}"))?;
        let count = |kind: &str| progress[kind].as_u64().unwrap_or(0);
        let counts = (count("accepted"), count("refused"), count("recovered"));
        if counts.2 >= u64::try_from(n).unwrap_or(u64::MAX) || t.elapsed() > STATUS_WAIT {
            return Ok(counts);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every endpoint is registered with `server`.
async fn all_registered(
    server: &RunningServer,
    endpoints: &[String],
    wait: Duration,
) -> Result<(), String> {
    let t = Instant::now();
    let mut reported = Instant::now();
    loop {
        let missing = endpoints
            .iter()
            .filter(|e| server.registration(e).is_none())
            .count();
        if missing == 0 {
            return Ok(());
        }
        // A big fleet takes a while: say how far it got (stderr, beside the step's lines).
        if endpoints.len() >= PROGRESS_FROM && reported.elapsed() >= PROGRESS_EVERY {
            reported = Instant::now();
            eprintln!(
                "  … {}/{} registered after {}",
                endpoints.len() - missing,
                endpoints.len(),
                secs(t.elapsed())
            );
        }
        if t.elapsed() > wait {
            return Err(format!(
                "{}/{} devices registered after {}",
                endpoints.len() - missing,
                endpoints.len(),
                secs(wait)
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every device is in recovery mode; how many are.
async fn all_in_recovery(devices: &[ManagedDevice], wait: Duration) -> Result<usize, String> {
    let t = Instant::now();
    loop {
        let mut recovering = 0;
        for d in devices {
            if trust_of(d).await.map(|t| t.state) == Some(TrustState::Recovery) {
                recovering += 1;
            }
        }
        if recovering == devices.len() {
            return Ok(recovering);
        }
        if t.elapsed() > wait {
            return Err(format!(
                "{recovering}/{} devices in recovery mode after {}",
                devices.len(),
                secs(wait)
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every device locked in, to one CTL: its fingerprint.
async fn locked_in_to_one(devices: &[ManagedDevice]) -> Result<[u8; 32], String> {
    let mut seen = None;
    for d in devices {
        let trust = trust_of(d).await.ok_or("a device has no trust state")?;
        let fingerprint = match (trust.state, trust.fingerprint) {
            (TrustState::LockedIn, Some(f)) => f,
            (state, _) => return Err(format!("a device is {state:?}, not locked in")),
        };
        match seen {
            Some(f) if f != fingerprint => return Err("the devices hold different CTLs".into()),
            _ => seen = Some(fingerprint),
        }
    }
    seen.ok_or_else(|| "no devices".to_owned())
}

/// The names of a fleet of `n`: `plant7-00000`, ...
pub fn fleet(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("plant7-{i:05}")).collect()
}

/// The four UDP ports a server of the scenario listens on; A and B use the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScenarioPorts {
    pub coap: u16,
    pub coaps: u16,
    pub bs_coap: u16,
    pub bs_coaps: u16,
}

impl ScenarioPorts {
    /// Four loopback UDP ports free now (the servers bind them a moment later), below the
    /// kernel's ephemeral range: between A's shutdown and B's start the devices open new
    /// sockets on ephemeral ports, and one of them must not take B's.
    pub fn free() -> std::io::Result<ScenarioPorts> {
        let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
            .unwrap_or(32768);
        let (low, high) = (10_000u16, ephemeral_low.max(10_100));
        let mut seed = [0u8; 2];
        openssl::rand::rand_bytes(&mut seed).map_err(std::io::Error::other)?;
        let span = high - low;
        let start = u16::from_le_bytes(seed) % span;
        // Held until all four are found, so that no two are the same.
        let mut held = Vec::new();
        for i in 0..span {
            let port = low + (start + i) % span;
            if let Ok(socket) = UdpSocket::bind(("127.0.0.1", port)) {
                held.push((port, socket));
                if held.len() == 4 {
                    break;
                }
            }
        }
        if held.len() < 4 {
            return Err(std::io::Error::other(
                "no four free UDP ports below the ephemeral range",
            ));
        }
        Ok(ScenarioPorts {
            coap: held[0].0,
            coaps: held[1].0,
            bs_coap: held[2].0,
            bs_coaps: held[3].0,
        })
    }

    pub fn coaps(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.coaps))
    }

    pub fn bs_coaps(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.bs_coaps))
    }

    /// A server on `data` with these ports (and a free HTTP port).
    pub fn config(&self, data: &Path) -> Config {
        let mut config = Config::ephemeral(data.to_path_buf());
        config.coap_port = self.coap;
        config.coaps_port = self.coaps;
        config.bs_coap_port = self.bs_coap;
        config.bs_coaps_port = self.bs_coaps;
        config
    }
}

/// The device maker's factory: a manufacturer CA ("Acme Factory CA") and a certificate per
/// device.
pub struct Manufacturer {
    ca: Ca,
}

impl Manufacturer {
    /// A new CA in `dir` (created; keep it as long as certificates are issued).
    pub fn new(dir: &Path) -> Result<Manufacturer, String> {
        let names = CaNames {
            organization: Some("Acme Devices".into()),
            root_cn: "Acme Root CA".into(),
            issuing_cn: "Acme Factory CA".into(),
            ..CaNames::default()
        };
        let ca = Ca::init(dir, &names, unix_secs()).map_err(|e| format!("manufacturer CA: {e}"))?;
        Ok(Manufacturer { ca })
    }

    /// The issuing CA's certificate, PEM: what servers trust for bootstrap and EST.
    pub fn ca_pem(&self) -> Result<Vec<u8>, String> {
        self.ca
            .issuing_cert()
            .to_pem()
            .map_err(|e| format!("manufacturer CA certificate: {e}"))
    }

    /// The factory credentials of `endpoint` (CN = endpoint, P-256), with no server trust:
    /// a device made for trust-chain recovery trusts what its CTL says.
    pub fn credentials(&self, endpoint: &str) -> Result<ClientCredentials, String> {
        self.issue(endpoint)
            .map_err(|e| format!("factory certificate of {endpoint}: {e}"))
    }

    fn issue(&self, endpoint: &str) -> Result<ClientCredentials, Box<dyn std::error::Error>> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
        let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
        let mut name = X509NameBuilder::new()?;
        name.append_entry_by_nid(Nid::COMMONNAME, endpoint)?;
        let mut request = X509ReqBuilder::new()?;
        request.set_subject_name(&name.build())?;
        request.set_pubkey(&key)?;
        request.sign(&key, MessageDigest::sha256())?;
        let csr = Csr::from_der(&request.build().to_der()?, Default::default())?;
        // Valid from a minute ago: the clocks of factory and server need not agree.
        let params = IssueParams::new(Serial::random()?, unix_secs().saturating_sub(60));
        let issued = self.ca.issue(&csr, &Profile::device(), params)?;
        let chain = vec![issued.der, self.ca.issuing_cert().to_der()?];
        let certificate = ClientCertificate::from_der(chain, &key.private_key_to_pkcs8()?)?;
        Ok(ClientCredentials::Certificate {
            certificate,
            server: ServerTrust::new(Vec::new()),
        })
    }
}

/// Prepares a server's data directory while no server holds it: its CA (created), the
/// manufacturer's CA trusted for bootstrap and EST, `fleet` on the allow-list, one bootstrap
/// configuration per device (Security Mode 4: EST with this server's CA, `coaps://` on
/// `ports`), the `trust-recovery` component and the vendor's public key for it.
pub fn prepare_server(
    data: &Path,
    ports: &ScenarioPorts,
    manufacturer: &Manufacturer,
    fleet: &[String],
    component: &Path,
    vendor_pem: &str,
) -> Result<(), String> {
    let io = |path: &Path, e: std::io::Error| format!("{}: {e}", path.display());
    let trusted = data.join(CA_DIR).join(MANUFACTURERS_DIR);
    std::fs::create_dir_all(&trusted).map_err(|e| io(&trusted, e))?;
    std::fs::write(trusted.join("acme.pem"), manufacturer.ca_pem()?)
        .map_err(|e| io(&trusted, e))?;
    {
        let store = Arc::new(SledStore::open(data).map_err(|e| format!("store: {e}"))?);
        store
            .allow_list_put_all(fleet.iter().map(String::as_str))
            .map_err(|e| format!("allow-list: {e}"))?;
        let pki = PkiService::init_if_missing(data, Arc::clone(&store), Default::default())
            .map_err(|e| format!("CA: {e}"))?;
        let (_, _, server_certificate) = pki
            .server_certificate(runtime::SERVER_CN)
            .map_err(|e| format!("server certificate: {e}"))?;
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
                .map_err(|e| format!("bootstrap configuration of {endpoint}: {e}"))?;
        }
    }
    let host = ports.config(data).plugins.host_config(data);
    std::fs::create_dir_all(&host.dir).map_err(|e| io(&host.dir, e))?;
    std::fs::copy(component, host.dir.join(PLUGIN_FILE)).map_err(|e| io(component, e))?;
    let keys = host.keys_dir.join(PLUGIN);
    std::fs::create_dir_all(&keys).map_err(|e| io(&keys, e))?;
    std::fs::write(keys.join("vendor.pem"), vendor_pem).map_err(|e| io(&keys, e))?;
    Ok(())
}

/// A device made for trust-chain recovery: LwM2M 1.1, its factory `credentials`, the
/// bootstrap server on `ports`, built with the vendor's public key, trust on first use,
/// installation [`INSTALLATION`]. Short CoAP timeouts and a 1 s recovery retry, so that a
/// lost server is noticed and a token picked up in seconds rather than minutes.
pub fn device_config(
    endpoint: &str,
    ports: &ScenarioPorts,
    credentials: ClientCredentials,
    vendor_key: &VerifyingKey,
    pace: &Pace,
) -> ManagedConfig {
    let mut device = DeviceConfig::new(endpoint, Version::V1_1);
    device.server_uri = format!("coaps://{}", ports.coaps());
    device.clock = i64::try_from(unix_secs()).unwrap_or(0);
    device.trust = Some(TrustConfig {
        installation: INSTALLATION.into(),
        vendor_key: *vendor_key,
        initial: InitialTrust::FirstUse,
        recovery_retry: pace.recovery_retry,
    });
    let mut config = ManagedConfig::new(device, ports.coaps());
    config.factory = Some(credentials);
    config.bootstrap = Some(format!("coaps://{}", ports.bs_coaps()));
    config.ocsp = OcspCheck::Off;
    config.stack.endpoint = EndpointConfig {
        ack_timeout: pace.ack_timeout,
        max_retransmit: pace.max_retransmit,
        ..config.stack.endpoint
    };
    config.backoff.initial = Duration::from_millis(500);
    config.backoff.max = pace.backoff_max;
    config
}

/// How hard a fleet of the scenario pushes: how often locked-out devices ask for a token, its
/// CoAP and DTLS retry timers, how fast the devices are switched on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pace {
    pub recovery_retry: Duration,
    pub ack_timeout: Duration,
    pub max_retransmit: u32,
    /// The longest pause between two DTLS handshake attempts.
    pub backoff_max: Duration,
    /// Devices switched on per second; `None`: all at once.
    pub start_rate: Option<u32>,
}

impl Pace {
    /// For a demo-sized fleet: short timers, so that a lost server is noticed in seconds.
    pub fn quick() -> Pace {
        Pace {
            recovery_retry: Duration::from_secs(1),
            ack_timeout: Duration::from_millis(500),
            max_retransmit: 2,
            backoff_max: Duration::from_secs(2),
            start_rate: None,
        }
    }

    /// For thousands of devices on one machine: CoAP's default timers, a token asked for every
    /// 10 s (spread per device), devices switched on at 500 a second. With the quick timers,
    /// 10 000 devices polling every second retry faster than two cores answer, and their
    /// retries supersede their own sessions.
    pub fn fleet() -> Pace {
        Pace {
            recovery_retry: Duration::from_secs(10),
            ack_timeout: Duration::from_secs(2),
            max_retransmit: 4,
            backoff_max: Duration::from_secs(30),
            start_rate: Some(500),
        }
    }

    /// [`Pace::quick`] up to 1 000 devices, [`Pace::fleet`] beyond.
    pub fn for_devices(n: usize) -> Pace {
        if n <= 1000 {
            Pace::quick()
        } else {
            Pace::fleet()
        }
    }
}

/// A device's trust as it holds it now (object 42769).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustView {
    pub state: TrustState,
    /// The CTL fingerprint (/42769/0/0).
    pub fingerprint: Option<[u8; 32]>,
    /// /42769/0/9, as its number.
    pub last_outcome: u8,
}

/// What `device`'s trust says now; `None` when it has none or does not answer (asked again
/// while it switches transports, for up to five seconds).
pub async fn trust_of(device: &ManagedDevice) -> Option<TrustView> {
    for _ in 0..50 {
        let (tx, rx) = oneshot::channel();
        let sent = device.command(move |client, _| {
            let trust = client.device.device().trust().map(|t| TrustView {
                state: t.state(),
                fingerprint: t.fingerprint(),
                last_outcome: t.last_outcome() as u8,
            });
            let _ = tx.send(trust);
        });
        if sent && let Ok(answer) = rx.await {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A fingerprint's first 8 bytes, hex.
fn short(fingerprint: &[u8; 32]) -> String {
    hex(&fingerprint[..8])
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_component_says_how_to_build_it() {
        let options = RecoveryOptions {
            devices: 3,
            component: std::env::temp_dir().join("steward-no-such-component.wasm"),
        };
        let error = run(&options).await.expect_err("missing component");
        assert!(
            error.starts_with("trust-recovery plugin not built: run scripts/build-plugins"),
            "{error}"
        );
    }

    #[test]
    fn free_ports_are_four_distinct_ones() {
        let ports = ScenarioPorts::free().expect("ports");
        let mut all = vec![ports.coap, ports.coaps, ports.bs_coap, ports.bs_coaps];
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 4);
        assert!(all.iter().all(|p| *p != 0));
    }
}
