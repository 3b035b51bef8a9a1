//! `steward demo`: a server on the embedded defaults and a small fleet of simulated devices
//! (`steward_client`) over real UDP on loopback, driven step by step through what an operator
//! does: registration, reads in every format, write, execute, observe, a firmware update, queue
//! mode, deregistration. One readable line per step (✓/✗, what, how long), then a summary with
//! the latency percentiles per operation.
//!
//! The fleet (default 5 devices): `demo-0` LwM2M 1.0, `demo-1` 1.1, `demo-2` 1.2, `demo-3` 1.1
//! in queue mode (awake 2 s, asleep 3 s: short timings so the demo stays quick), `demo-4` 1.2,
//! and any further devices cycling through the versions. Everything goes through
//! [`Devices`], the same service the API and plugins use.
//!
//! One more device, `demo-est`, shows Security Mode 4 (issue 5): it leaves the factory with a
//! certificate from a manufacturer CA ("Acme", allow-listed) and the Steward root as its trust
//! anchor, bootstraps over DTLS with that certificate, enrols over EST-coaps for its
//! operational certificate, has the bootstrap server's OCSP responder vouch for the LwM2M
//! server's certificate, and registers over DTLS with the operational certificate
//! (`steward_client::managed` switches its transport on real sockets). The Steward CA and the
//! manufacturer's certificate are put into the data directory before the server starts (sled
//! locks the directory while the server runs); a CA that is already there is kept, and
//! `demo-est` certificates of an earlier run are revoked, as an operator does for a device
//! that comes back with factory credentials.
//!
//! One more device, `demo-plugin` (LwM2M 1.1), shows a WASM plugin at work: the example
//! plugin (`plugins/examples/example`, built by `scripts/build-plugins`; `--plugin FILE`) is
//! copied into the data directory's plugin directory before the server starts, so the server
//! loads it and merges its object 42799 ("Example Counter") into the registry. The device
//! implements that object (the model the plugin declared, instance 0: Counter 0, Label
//! "factory"). When it registers, the plugin sees it, reads its manufacturer, writes its label
//! and observes its counter; the demo checks the label through [`Devices`], changes the counter
//! on the device and waits for the plugin's notification. A missing component fails this step
//! only.
//!
//! The trust-chain recovery step (issue 8) runs apart from that server, with servers A and B
//! of its own, the vendor service in process and 100 devices (`--recovery-devices`) locked
//! in to A; A's data directory is destroyed, B comes up with a new CA, one vendor token
//! imported into B's `trust-recovery` plugin (`--recovery-plugin`) brings every device back:
//! see [`crate::demo_recovery`]. A missing component fails this step only.
//!
//! The steps ([`STEPS`]): register the fleet; read `/3/0` as TLV, SenML JSON, SenML CBOR and
//! LwM2M CBOR and `/3/0/0` as text; write `/3/0/14` and read it back; execute Reboot;
//! write-attributes and observe the battery level; push a firmware package, execute Update
//! and check the result; a read queued while the queue-mode device sleeps; Security Mode 4
//! enrolment of `demo-est`; the example plugin managing `demo-plugin`; trust-chain recovery
//! from a lost server A to B; deregister the fleet.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::x509::{X509, X509NameBuilder, X509NameRef, X509ReqBuilder};
use steward_client::est::EstEvent;
use steward_client::managed::{self, ManagedConfig, ManagedDevice, ManagedEvent};
use steward_client::{
    BootstrapEvent, Client, DeviceConfig, DeviceEvent as SimEvent, ExtraObject, QueueTiming,
    Security,
};
use steward_coap::endpoint::Config as EndpointConfig;
use steward_coap::stack::StackConfig;
use steward_dtls::{ClientCertificate, ClientCredentials, ServerTrust};
use steward_objects::link::{Attr, NotificationAttributes};
use steward_objects::{ContentFormat, Instance, Node, ObjectModel, Path, Resource, Value, Version};
use steward_pki::ca::{Ca, CaNames, IssueParams, Serial};
use steward_pki::csr::Csr;
use steward_pki::profile::Profile;
use steward_pki::records::{PkiStore, RevocationReason};
use steward_transport::Handle;
use steward_transport::dtls_client::LinkEvent;
use steward_transport::udp::{self, UdpConfig};
use tokio::sync::broadcast;

use crate::bootstrap::{BootstrapConfig, ServerConfig as BootstrapServerConfig, ServerSecurity};
use crate::config::{Config, DEFAULT_COAP_PORT, DEFAULT_COAPS_PORT};
use crate::demo_recovery::{
    self, DEFAULT_RECOVERY_DEVICES, DEFAULT_RECOVERY_PLUGIN, RecoveryOptions,
};
use crate::devices::{DeviceEvent, DeviceEvents, Devices};
use crate::dm::{DmConfig, DmError, DownlinkRequest, DownlinkResponse, WriteMode};
use crate::pki::{CA_DIR, MANUFACTURERS_DIR, PkiService, PkiSettings};
use crate::plugins::dispatch::{Dispatcher, PluginApiEvent};
use crate::registry::PeerIdentity;
use crate::runtime::{self, RuntimeError};
use crate::store::{SledStore, Store};

/// The fleet size when not told otherwise, and the least the steps need.
pub const DEFAULT_DEVICES: usize = 5;
/// Every step of the demo, in order (the summary lists each).
pub const STEPS: [&str; 19] = [
    "register",
    "read /3/0 as TLV",
    "read /3/0 as SenML JSON",
    "read /3/0 as SenML CBOR",
    "read /3/0 as LwM2M CBOR",
    "read /3/0/0 as text",
    "write /3/0/14 UTC offset",
    "read back /3/0/14",
    "execute /3/0/4 Reboot",
    "write-attributes /3/0/9",
    "observe /3/0/9 Battery Level",
    "firmware push /5/0/0",
    "firmware execute /5/0/2 Update",
    "firmware result",
    "queue mode: read while asleep",
    "Security Mode 4 (EST) enrolment",
    "plugin: example (WASM) manages /42799",
    "trust-chain recovery: A lost → B",
    "deregister",
];

/// How long one request may take (queueing excluded).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the demo waits for something the devices do on their own.
const EVENT_WAIT: Duration = Duration::from_secs(15);
const NEW_FIRMWARE: &str = "2.0.0";
/// The queue-mode device: awake this long after a message, then asleep.
const QUEUE_TIMING: QueueTiming = QueueTiming {
    awake: Duration::from_secs(2),
    sleep: Duration::from_secs(3),
};
/// The server's view of that awake window (a little shorter: when in doubt, queue).
const SERVER_AWAKE_WINDOW: Duration = Duration::from_millis(1500);
/// The Security Mode 4 device (factory certificate, EST, operational certificate).
const EST_DEVICE: &str = "demo-est";
/// The manufacturer's CA certificate in `DATA_DIR/ca/manufacturers/`.
const MANUFACTURER_FILE: &str = "acme.pem";
/// The CN of the manufacturer's CA that issues `demo-est`'s factory certificate.
const MANUFACTURER_CA: &str = "Acme Factory CA";
/// The example plugin's component as `scripts/build-plugins` leaves it.
pub const DEFAULT_PLUGIN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../plugins/target/wasm32-wasip2/release/example.wasm"
);
/// Its file name in the plugin directory.
const PLUGIN_FILE: &str = "example.wasm";
/// The device the example plugin manages.
const PLUGIN_DEVICE: &str = "demo-plugin";
/// The object the example plugin owns ("Example Counter": 0 Counter, 1 Label, 2 Increment).
const PLUGIN_OBJECT: u16 = 42799;
/// What the example plugin writes to `/42799/0/1` of a device it sees.
const PLUGIN_LABEL: &str = "managed by example";
/// The counter value the demo sets on the device (the plugin is notified of it).
const PLUGIN_COUNTER: i64 = 7;

/// `steward demo` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Data directory (kept afterwards) [default: a fresh temporary directory, removed].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Number of simulated devices (at least 5).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_DEVICES)]
    pub devices: usize,
    /// CoAP port; a free one is used when it is busy.
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_COAP_PORT)]
    pub coap_port: u16,
    /// CoAPs (DTLS) port; a free one is used when it is busy.
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_COAPS_PORT)]
    pub coaps_port: u16,
    /// The example plugin's component (built by scripts/build-plugins), installed into the
    /// data directory's plugin directory.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_PLUGIN)]
    pub plugin: PathBuf,
    /// Devices of the trust-chain recovery step (they run against servers of their own).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_RECOVERY_DEVICES)]
    pub recovery_devices: usize,
    /// The trust-recovery plugin's component (built by scripts/build-plugins), installed into
    /// the recovery step's servers A and B.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_RECOVERY_PLUGIN)]
    pub recovery_plugin: PathBuf,
}

/// What to run the demo with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoOptions {
    pub data_dir: Option<PathBuf>,
    pub devices: usize,
    /// 0 picks a free port.
    pub coap_port: u16,
    pub coaps_port: u16,
    /// The example plugin's component; missing fails the plugin step only.
    pub plugin: PathBuf,
    /// The trust-chain recovery step: its fleet size and the `trust-recovery` component
    /// (missing fails that step only).
    pub recovery: RecoveryOptions,
}

impl Default for DemoOptions {
    fn default() -> DemoOptions {
        DemoOptions {
            data_dir: None,
            devices: DEFAULT_DEVICES,
            coap_port: DEFAULT_COAP_PORT,
            coaps_port: DEFAULT_COAPS_PORT,
            plugin: PathBuf::from(DEFAULT_PLUGIN),
            recovery: RecoveryOptions::default(),
        }
    }
}

impl From<&DemoArgs> for DemoOptions {
    fn from(args: &DemoArgs) -> DemoOptions {
        DemoOptions {
            data_dir: args.data_dir.clone(),
            devices: args.devices,
            coap_port: args.coap_port,
            coaps_port: args.coaps_port,
            plugin: args.plugin.clone(),
            recovery: RecoveryOptions {
                devices: args.recovery_devices,
                component: args.recovery_plugin.clone(),
            },
        }
    }
}

/// Why the demo could not run at all (a failing step is not an error: it is in the summary).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("the demo needs at least {min} devices (got {got})")]
    TooFewDevices { min: usize, got: usize },
    #[error("cannot create the data directory {}: {source}", path.display())]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the server: {0}")]
    Server(#[from] RuntimeError),
    #[error("cannot start simulated device {endpoint}: {source}")]
    Device {
        endpoint: String,
        source: std::io::Error,
    },
    #[error("cannot write the demo output: {0}")]
    Output(#[from] std::io::Error),
}

/// One step as it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutcome {
    pub name: String,
    pub passed: bool,
    pub elapsed: Duration,
    pub detail: String,
}

/// The demo's result.
#[derive(Debug, Clone)]
pub struct DemoSummary {
    pub steps: Vec<StepOutcome>,
    /// Per operation (Register, Read, Write, ...): how long each took.
    pub latencies: BTreeMap<String, Vec<Duration>>,
    pub devices: usize,
    pub coap: SocketAddr,
    pub elapsed: Duration,
}

impl DemoSummary {
    /// True when every step ran and passed.
    pub fn passed(&self) -> bool {
        self.steps.len() == STEPS.len() && self.steps.iter().all(|s| s.passed)
    }

    pub fn failures(&self) -> usize {
        self.steps.iter().filter(|s| !s.passed).count()
    }

    /// The `p`-th percentile (nearest rank, `p` in 0..=100) of an operation's latencies.
    pub fn percentile(&self, operation: &str, p: u32) -> Option<Duration> {
        percentile(self.latencies.get(operation)?, p)
    }
}

fn percentile(samples: &[Duration], p: u32) -> Option<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = (usize::try_from(p).unwrap_or(100) * n).div_ceil(100).max(1);
    sorted.get(rank.min(n) - 1).copied()
}

/// A simulated device of the demo fleet.
struct SimDevice {
    endpoint: String,
    version: Version,
    handle: Handle<Client<SocketAddr>>,
}

struct Demo<'a> {
    out: &'a mut (dyn Write + Send),
    devices: Devices,
    events: DeviceEvents,
    steps: Vec<StepOutcome>,
    latencies: BTreeMap<String, Vec<Duration>>,
    /// Taken by the Security Mode 4 step (it holds the store and the CA open: gone before
    /// the server stops).
    mode4: Option<Mode4>,
    /// Taken by the plugin step (it holds the plugin host: gone before the server stops).
    plugin: Option<PluginDemo>,
}

/// Runs the demo; the lines go to `out`. Fails only when the demo cannot run at all.
pub async fn run(
    options: &DemoOptions,
    out: &mut (dyn Write + Send),
) -> Result<DemoSummary, DemoError> {
    if options.devices < DEFAULT_DEVICES {
        return Err(DemoError::TooFewDevices {
            min: DEFAULT_DEVICES,
            got: options.devices,
        });
    }
    let started = Instant::now();
    let (data_dir, temporary) = match &options.data_dir {
        Some(dir) => (dir.clone(), false),
        None => (fresh_temp_dir(), true),
    };
    std::fs::create_dir_all(&data_dir).map_err(|source| DemoError::DataDir {
        path: data_dir.clone(),
        source,
    })?;

    let (coap_port, coaps_port) = ports(options, out)?;
    let config = Config {
        coap_port,
        coaps_port,
        bs_coap_port: 0,
        bs_coaps_port: 0,
        http_port: 0,
        data_dir: data_dir.clone(),
        allow_unsecured: true,
        ..Config::default()
    };
    let dm = DmConfig {
        awake_window: SERVER_AWAKE_WINDOW,
        ..DmConfig::default()
    };
    // Offline, before sled locks the directory; a failure fails the Security Mode 4 step only.
    let factory = {
        let dir = data_dir.clone();
        tokio::task::spawn_blocking(move || prepare_factory(&dir))
            .await
            .unwrap_or_else(|e| Err(format!("preparing the CA failed: {e}")))
    };
    // Before the server starts: it loads the plugin directory once, at start.
    let plugin_installed = install_plugin(
        &options.plugin,
        &config.plugins.host_config(&config.data_dir).dir,
    );
    let server = runtime::start_with(&config, dm).await?;
    // Subscribed before any device starts: no event of the plugin's is missed.
    let plugin = PluginDemo {
        installed: plugin_installed,
        dispatcher: server.plugins().clone(),
        events: PluginEvents::new(server.plugins().api_events()),
    };
    let mode4 = Mode4 {
        factory,
        pki: server.pki().cloned(),
        store: server.store(),
        coaps: server.coaps_addr(),
        bs_coaps: server.bs_coaps_addr(),
    };
    let coap = server.coap_addr();
    let devices = server.devices();
    writeln!(
        out,
        "Steward demo: LwM2M server on coap://{coap} (coaps://{}), data in {}{}",
        server.coaps_addr(),
        data_dir.display(),
        if temporary { " (temporary)" } else { "" }
    )?;
    let mut demo = Demo {
        events: devices.events(),
        devices,
        out,
        steps: Vec::new(),
        latencies: BTreeMap::new(),
        mode4: Some(mode4),
        plugin: Some(plugin),
    };
    let result = demo.steps(coap, options).await;
    demo.mode4 = None;
    demo.plugin = None;
    let stopped = server.shutdown().await;
    if temporary {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    result?;
    let summary = DemoSummary {
        steps: demo.steps,
        latencies: demo.latencies,
        devices: options.devices,
        coap,
        elapsed: started.elapsed(),
    };
    write_summary(demo.out, &summary)?;
    if let Err(e) = stopped {
        writeln!(demo.out, "warning: the server did not stop cleanly: {e}")?;
    }
    Ok(summary)
}

/// The configured ports, or free ones (0) when either is busy.
fn ports(options: &DemoOptions, out: &mut (dyn Write + Send)) -> Result<(u16, u16), DemoError> {
    let free = |port: u16| {
        port == 0 || std::net::UdpSocket::bind((IpAddr::V4(Ipv4Addr::LOCALHOST), port)).is_ok()
    };
    if free(options.coap_port) && free(options.coaps_port) {
        return Ok((options.coap_port, options.coaps_port));
    }
    writeln!(
        out,
        "ports {}/{} are busy: using free ports instead",
        options.coap_port, options.coaps_port
    )?;
    Ok((0, 0))
}

fn fresh_temp_dir() -> PathBuf {
    fresh_temp_path("demo")
}

/// `$TMPDIR/steward-<what>-<pid>-<nanos>`, not created.
fn fresh_temp_path(what: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("steward-{what}-{}-{nanos}", std::process::id()))
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What the Security Mode 4 step needs from the offline preparation and the running server.
struct Mode4 {
    factory: Result<Factory, String>,
    pki: Option<PkiService>,
    store: Arc<dyn Store>,
    coaps: SocketAddr,
    bs_coaps: Option<SocketAddr>,
}

/// `demo-est` as it leaves the factory.
struct Factory {
    /// Its factory certificate chain and key, and the Steward root as its trust anchor.
    credentials: ClientCredentials,
    /// `demo-est` certificates of an earlier run (a kept data directory) revoked now.
    revoked: usize,
}

/// The manufacturer's CA: names for the demo's story.
fn manufacturer_names() -> CaNames {
    CaNames {
        organization: Some("Acme Devices".into()),
        root_cn: "Acme Root CA".into(),
        issuing_cn: MANUFACTURER_CA.into(),
        ..CaNames::default()
    }
}

/// Prepares `data_dir` for `demo-est` while no server holds it (sled locks it): the Steward
/// CA (created if missing), the manufacturer's CA certificate in `ca/manufacturers/`, the
/// device on the allow-list. Returns the device's factory credentials. The manufacturer's CA
/// is made in a temporary directory beside the data directory and removed at once: its key
/// signs only this factory certificate.
fn prepare_factory(data_dir: &std::path::Path) -> Result<Factory, String> {
    let now = unix_secs();
    let manufacturer_dir = fresh_temp_path("demo-acme-ca");
    let manufacturer = Ca::init(&manufacturer_dir, &manufacturer_names(), now);
    let _ = std::fs::remove_dir_all(&manufacturer_dir);
    let manufacturer = manufacturer.map_err(|e| format!("manufacturer CA: {e}"))?;
    let (chain_pem, key_pem) =
        factory_certificate(&manufacturer, now).map_err(|e| format!("factory certificate: {e}"))?;

    let trusted = data_dir.join(CA_DIR).join(MANUFACTURERS_DIR);
    let pem = manufacturer
        .issuing_cert()
        .to_pem()
        .map_err(|e| format!("manufacturer CA certificate: {e}"))?;
    std::fs::create_dir_all(&trusted)
        .and_then(|()| std::fs::write(trusted.join(MANUFACTURER_FILE), pem))
        .map_err(|e| format!("{}: {e}", trusted.display()))?;
    let store = Arc::new(SledStore::open(data_dir).map_err(|e| format!("store: {e}"))?);
    store
        .allow_list_put(EST_DEVICE)
        .map_err(|e| format!("allow-list: {e}"))?;
    let pki = PkiService::init_if_missing(data_dir, store, PkiSettings::default())
        .map_err(|e| format!("Steward CA: {e}"))?;
    // The factory credentials of a device that holds a valid operational certificate are
    // refused (used once); a device coming back with them gets its old certificate revoked.
    let revoked = pki
        .revoke_endpoint(EST_DEVICE, RevocationReason::Superseded, SystemTime::now())
        .map_err(|e| format!("revoking earlier {EST_DEVICE} certificates: {e}"))?;
    let certificate = ClientCertificate::from_pem(&chain_pem, &key_pem)
        .map_err(|e| format!("factory credentials: {e}"))?;
    Ok(Factory {
        credentials: ClientCredentials::Certificate {
            certificate,
            // Out of the factory the device trusts the Steward root (implicit trust anchor).
            server: ServerTrust::new(vec![pki.root_der()]),
        },
        revoked,
    })
}

/// A P-256 key and a certificate for it (CN = `demo-est`) from the manufacturer's CA: the
/// chain (leaf, manufacturer CA) and the PKCS#8 key, PEM.
fn factory_certificate(
    manufacturer: &Ca,
    now: u64,
) -> Result<(String, String), Box<dyn std::error::Error>> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, EST_DEVICE)?;
    let mut request = X509ReqBuilder::new()?;
    request.set_subject_name(&name.build())?;
    request.set_pubkey(&key)?;
    request.sign(&key, MessageDigest::sha256())?;
    let csr = Csr::from_der(&request.build().to_der()?, Default::default())?;
    // Valid from a minute ago: the clocks of factory and server need not agree to the second.
    let params = IssueParams::new(Serial::random()?, now.saturating_sub(60));
    let issued = manufacturer.issue(&csr, &Profile::device(), params)?;
    let mut chain = X509::from_der(&issued.der)?.to_pem()?;
    chain.extend(manufacturer.issuing_cert().to_pem()?);
    Ok((
        String::from_utf8(chain)?,
        String::from_utf8(key.private_key_to_pem_pkcs8()?)?,
    ))
}

/// What `demo-est` reported on its way to registration.
#[derive(Default)]
struct Enrolment {
    bootstrapped: bool,
    enrolled: bool,
    ocsp_good: bool,
    /// The last thing that went wrong, for the failure message.
    problem: Option<String>,
}

impl Enrolment {
    fn see(&mut self, event: ManagedEvent) {
        match event {
            ManagedEvent::Device(SimEvent::Bootstrap(BootstrapEvent::Finished)) => {
                self.bootstrapped = true;
            }
            ManagedEvent::Device(SimEvent::Bootstrap(BootstrapEvent::Failed {
                reason, ..
            })) => {
                self.problem = Some(format!("bootstrap failed: {reason}"));
            }
            ManagedEvent::Device(SimEvent::Est(EstEvent::Enrolled { .. })) => {
                self.enrolled = true;
            }
            ManagedEvent::Device(SimEvent::Est(EstEvent::ServerCertificateAccepted)) => {
                self.ocsp_good = true;
            }
            ManagedEvent::Device(SimEvent::Est(EstEvent::Failed { reason, .. })) => {
                self.problem = Some(format!("EST: {reason}"));
            }
            ManagedEvent::Device(SimEvent::ServerCertificateRejected { reason, .. }) => {
                self.problem = Some(format!("server certificate rejected: {reason}"));
            }
            ManagedEvent::Link(LinkEvent::HandshakeFailed { error, .. }) => {
                self.problem = Some(format!("DTLS handshake failed: {error}"));
            }
            ManagedEvent::NoTarget { error } => self.problem = Some(error),
            _ => {}
        }
    }
}

/// What the checks after `demo-est`'s registration found.
struct Checked {
    serial: String,
    issuer: String,
    profile: String,
    /// `/3/0/0` read over DTLS.
    read: String,
}

/// How waiting for `demo-est`'s registration ended.
enum Waited {
    Registered,
    /// The runner stopped by itself: the device can reach no server.
    RunnerEnded,
    ServerGone,
    TimedOut,
}

/// What the plugin step needs: whether the component went into the plugin directory, the
/// server's plugins, and their events (subscribed before any device started).
struct PluginDemo {
    installed: Result<(), String>,
    dispatcher: Dispatcher,
    events: PluginEvents,
}

/// Copies the plugin component into the plugin directory (before the server starts).
fn install_plugin(component: &std::path::Path, dir: &std::path::Path) -> Result<(), String> {
    if !component.is_file() {
        return Err(format!(
            "example plugin not built: run scripts/build-plugins ({} is missing)",
            component.display()
        ));
    }
    let target = dir.join(PLUGIN_FILE);
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::copy(component, &target))
        .map(|_| ())
        .map_err(|e| {
            format!(
                "cannot install {} as {}: {e}",
                component.display(),
                target.display()
            )
        })
}

/// The plugins' API events, kept until the step asks for them (the plugin's requests answer
/// in any order).
struct PluginEvents {
    rx: broadcast::Receiver<PluginApiEvent>,
    seen: Vec<PluginApiEvent>,
}

impl PluginEvents {
    fn new(rx: broadcast::Receiver<PluginApiEvent>) -> PluginEvents {
        PluginEvents {
            rx,
            seen: Vec::new(),
        }
    }

    /// The first event of `plugin` of `kind` about [`PLUGIN_DEVICE`] whose data satisfies
    /// `want`, waiting at most [`EVENT_WAIT`].
    async fn get(
        &mut self,
        plugin: &str,
        kind: &str,
        want: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value, String> {
        let matches = |e: &PluginApiEvent| {
            e.plugin == plugin
                && e.kind == kind
                && e.data["endpoint"] == PLUGIN_DEVICE
                && want(&e.data)
        };
        if let Some(i) = self.seen.iter().position(matches) {
            return Ok(self.seen.remove(i).data);
        }
        let deadline = tokio::time::Instant::now() + EVENT_WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Ok(e)) if matches(&e) => return Ok(e.data),
                Ok(Ok(e)) => self.seen.push(e),
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) => {
                    return Err("the plugin host stopped".into());
                }
                Err(_) => {
                    return Err(format!(
                        "no {kind:?} event from plugin {plugin} within {}",
                        ms(EVENT_WAIT)
                    ));
                }
            }
        }
    }

    /// The plugin's `response` event for its request `correlation`, which must have
    /// succeeded.
    async fn response(
        &mut self,
        plugin: &str,
        correlation: &str,
    ) -> Result<serde_json::Value, String> {
        let response = self
            .get(plugin, "response", |d| d["correlation"] == correlation)
            .await
            .map_err(|e| format!("{e} ({correlation})"))?;
        if response["ok"] == true {
            Ok(response)
        } else {
            Err(format!(
                "the plugin's request {correlation} failed: {response}"
            ))
        }
    }
}

fn fleet_config(index: usize, server: SocketAddr) -> DeviceConfig {
    let version = match index {
        0 => Version::V1_0,
        1 | 3 => Version::V1_1,
        2 | 4 => Version::V1_2,
        n => [Version::V1_0, Version::V1_1, Version::V1_2][n % 3],
    };
    let mut config = DeviceConfig::new(format!("demo-{index}"), version);
    config.server_uri = format!("coap://{server}");
    config.lifetime = 300;
    config.clock = i64::try_from(unix_secs()).unwrap_or(0);
    if index == 3 {
        config.queue_mode = true;
        config.queue = QUEUE_TIMING;
    }
    config
}

/// `demo-plugin`: LwM2M 1.1 with the plugin's object (its model as the plugin declared it),
/// instance 0 with Counter 0 and Label "factory".
fn plugin_device_config(model: ObjectModel, server: SocketAddr) -> DeviceConfig {
    let mut config = DeviceConfig::new(PLUGIN_DEVICE, Version::V1_1);
    config.server_uri = format!("coap://{server}");
    config.lifetime = 300;
    config.clock = i64::try_from(unix_secs()).unwrap_or(0);
    let mut instance = Instance::default();
    instance
        .resources
        .insert(0, Resource::Single(Value::Integer(0)));
    instance
        .resources
        .insert(1, Resource::Single(Value::String("factory".into())));
    config
        .extra_objects
        .push(ExtraObject::new(model).with_instance(0, instance));
    config
}

/// A device of the fleet: [`fleet_config`] `index`.
fn spawn_fleet_device(index: usize, server: SocketAddr) -> Result<SimDevice, DemoError> {
    let seed = 0x5eed_0000 + u64::try_from(index).unwrap_or(0);
    spawn_device(fleet_config(index, server), seed, server)
}

/// Starts `config` as a device on its own UDP socket (not yet registering).
fn spawn_device(
    config: DeviceConfig,
    seed: u64,
    server: SocketAddr,
) -> Result<SimDevice, DemoError> {
    let endpoint = config.endpoint.clone();
    let version = config.lwm2m;
    let failed = |source| DemoError::Device {
        endpoint: endpoint.clone(),
        source,
    };
    let stack = StackConfig {
        endpoint: EndpointConfig {
            seed,
            ..EndpointConfig::default()
        },
        ..StackConfig::default()
    };
    let client = Client::new(config, stack, server);
    let (socket, _) = udp::bind(&UdpConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        recv_buffer: 256 << 10,
        send_buffer: 256 << 10,
    })
    .map_err(failed)?;
    let (handle, _task) = udp::spawn(socket, client, |_, _, _| {}).map_err(failed)?;
    Ok(SimDevice {
        endpoint,
        version,
        handle,
    })
}

fn version_name(v: Version) -> String {
    v.to_string()
}

impl Demo<'_> {
    async fn steps(&mut self, server: SocketAddr, options: &DemoOptions) -> Result<(), DemoError> {
        let fleet = self.register(server, options.devices).await?;
        let label = |i: usize| {
            fleet
                .get(i)
                .map(|d| format!("{} (LwM2M {})", d.endpoint, version_name(d.version)))
                .unwrap_or_default()
        };

        // Reads in every format.
        for (step, device, path, format) in [
            (1, 0, Path::Instance(3, 0), ContentFormat::Tlv),
            (2, 1, Path::Instance(3, 0), ContentFormat::SenmlJson),
            (3, 1, Path::Instance(3, 0), ContentFormat::SenmlCbor),
            (4, 2, Path::Instance(3, 0), ContentFormat::Lwm2mCbor),
            (5, 0, Path::Resource(3, 0, 0), ContentFormat::Text),
        ] {
            let t = Instant::now();
            let endpoint = format!("demo-{device}");
            let result = match self.op(&endpoint, read(path, Some(format))).await {
                Ok(DownlinkResponse::Read {
                    node: Some(node),
                    format: got,
                }) if got == Some(format) => Ok(format!("{}: {}", label(device), describe(&node))),
                Ok(other) => Err(format!("unexpected answer {other:?}")),
                Err(e) => Err(e.to_string()),
            };
            self.record(STEPS[step], t, result)?;
        }

        // Write and read back.
        let offset = Path::Resource(3, 0, 14);
        let t = Instant::now();
        let write = DownlinkRequest::Write {
            path: offset,
            node: Node::Resource(Resource::Single(Value::String("+02:00".into()))),
            mode: WriteMode::Replace,
            format: None,
        };
        let result = match self.op("demo-1", write).await {
            Ok(DownlinkResponse::Write) => Ok(format!("{}: \"+02:00\"", label(1))),
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err(e) => Err(e.to_string()),
        };
        self.record(STEPS[6], t, result)?;
        let t = Instant::now();
        let result = match self.op("demo-1", read(offset, None)).await {
            Ok(DownlinkResponse::Read {
                node: Some(node), ..
            }) if single(&node) == Some(&Value::String("+02:00".into())) => {
                Ok(format!("{}: {}", label(1), describe(&node)))
            }
            Ok(other) => Err(format!("not the value written: {other:?}")),
            Err(e) => Err(e.to_string()),
        };
        self.record(STEPS[7], t, result)?;

        self.reboot(&label(1)).await?;
        self.observe(&label(4)).await?;
        self.firmware(&label(2)).await?;
        self.queue_mode(&label(3)).await?;
        self.security_mode_4().await?;
        self.plugin(server).await?;
        self.recovery(&options.recovery).await?;
        self.deregister(&fleet).await?;
        Ok(())
    }

    /// Starts the fleet and waits for every registration.
    async fn register(
        &mut self,
        server: SocketAddr,
        count: usize,
    ) -> Result<Vec<SimDevice>, DemoError> {
        let t = Instant::now();
        let mut fleet = Vec::with_capacity(count);
        for i in 0..count {
            let device = spawn_fleet_device(i, server)?;
            device.handle.command(|client, now| client.start(now));
            fleet.push(device);
        }
        let mut missing: HashSet<String> = fleet.iter().map(|d| d.endpoint.clone()).collect();
        let deadline = tokio::time::Instant::now() + EVENT_WAIT;
        while !missing.is_empty() {
            match tokio::time::timeout_at(deadline, self.events.next()).await {
                Ok(Some(DeviceEvent::Registered { endpoint, .. })) => {
                    if missing.remove(&endpoint) {
                        self.latency("Register", t.elapsed());
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let mut versions: BTreeMap<String, usize> = BTreeMap::new();
        for d in &fleet {
            *versions.entry(version_name(d.version)).or_default() += 1;
        }
        let mix: Vec<String> = versions
            .iter()
            .map(|(v, n)| format!("{n}× LwM2M {v}"))
            .collect();
        let registered = count - missing.len();
        let result = if missing.is_empty() {
            Ok(format!(
                "{registered}/{count} devices ({}; demo-3 in queue mode)",
                mix.join(", ")
            ))
        } else {
            let mut names: Vec<String> = missing.into_iter().collect();
            names.sort();
            Err(format!(
                "{registered}/{count} registered; missing {}",
                names.join(", ")
            ))
        };
        self.record(STEPS[0], t, result)?;
        Ok(fleet)
    }

    async fn reboot(&mut self, label: &str) -> Result<(), DemoError> {
        let t = Instant::now();
        let execute = DownlinkRequest::Execute {
            path: Path::Resource(3, 0, 4),
            args: None,
        };
        let result = match self.op("demo-1", execute).await {
            Ok(DownlinkResponse::Execute) => {
                let executed = t.elapsed();
                let again = self
                    .wait_event(|e| {
                        matches!(e, DeviceEvent::Registered { endpoint, replaced: true, .. }
                            if endpoint == "demo-1")
                    })
                    .await;
                match again {
                    Some(_) => Ok(format!(
                        "{label}: 2.04 in {}, registered again after {}",
                        ms(executed),
                        ms(t.elapsed())
                    )),
                    None => Err("2.04, but the device did not register again".into()),
                }
            }
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err(e) => Err(e.to_string()),
        };
        self.record(STEPS[8], t, result)
    }

    async fn observe(&mut self, label: &str) -> Result<(), DemoError> {
        let battery = Path::Resource(3, 0, 9);
        let t = Instant::now();
        let attributes = NotificationAttributes {
            pmin: Attr::Set(1),
            pmax: Attr::Set(1),
            ..NotificationAttributes::default()
        };
        let write = DownlinkRequest::WriteAttributes {
            path: battery,
            attributes,
        };
        let result = match self.op("demo-4", write).await {
            Ok(DownlinkResponse::WriteAttributes) => Ok(format!("{label}: pmin=1 pmax=1")),
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err(e) => Err(e.to_string()),
        };
        self.record(STEPS[9], t, result)?;

        let t = Instant::now();
        let observe = DownlinkRequest::Observe {
            path: battery,
            format: None,
        };
        let result = match self.op("demo-4", observe).await {
            Ok(DownlinkResponse::Observe {
                node,
                observe: Some(_),
            }) => {
                let ticket = self
                    .devices
                    .observations()
                    .into_iter()
                    .find(|(_, ep, paths)| ep == "demo-4" && *paths == [battery])
                    .map(|(t, _, _)| t);
                let first = node.as_ref().map(describe).unwrap_or_default();
                let mut values = Vec::new();
                while values.len() < 2 {
                    let got = self
                        .wait_event(|e| {
                            matches!(e, DeviceEvent::Notification(n) if Some(n.ticket) == ticket)
                        })
                        .await;
                    match got {
                        Some(DeviceEvent::Notification(n)) => {
                            values.push(n.nodes.get(&battery).map(describe).unwrap_or_default());
                        }
                        _ => break,
                    }
                }
                if let Some(ticket) = ticket {
                    self.devices.cancel_observation(ticket);
                }
                if values.len() >= 2 {
                    Ok(format!(
                        "{label}: {first} %, then {} notifications ({}) in {}",
                        values.len(),
                        values.join(", "),
                        ms(t.elapsed())
                    ))
                } else {
                    Err(format!("only {} notification(s)", values.len()))
                }
            }
            Ok(other) => Err(format!("not established: {other:?}")),
            Err(e) => Err(e.to_string()),
        };
        self.record(STEPS[10], t, result)
    }

    async fn firmware(&mut self, label: &str) -> Result<(), DemoError> {
        let endpoint = "demo-2";
        let body: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        let package = steward_client::firmware::package(NEW_FIRMWARE, &body);
        let size = package.len();
        let t = Instant::now();
        let write = DownlinkRequest::Write {
            path: Path::Resource(5, 0, 0),
            node: Node::Resource(Resource::Single(Value::Opaque(package))),
            mode: WriteMode::Replace,
            format: None,
        };
        let result = match self.op(endpoint, write).await {
            Ok(DownlinkResponse::Write) => {
                match self.wait_value(endpoint, Path::Resource(5, 0, 3), 2).await {
                    Ok(()) => Ok(format!(
                        "{label}: {size} bytes block-wise, State 2 (Downloaded)"
                    )),
                    Err(e) => Err(format!("pushed, but {e}")),
                }
            }
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err(e) => Err(e.to_string()),
        };
        let pushed = result.is_ok();
        self.record(STEPS[11], t, result)?;

        let t = Instant::now();
        let result = if pushed {
            let execute = DownlinkRequest::Execute {
                path: Path::Resource(5, 0, 2),
                args: None,
            };
            match self.op(endpoint, execute).await {
                Ok(DownlinkResponse::Execute) => Ok(format!("{label}: 2.04, installing")),
                Ok(other) => Err(format!("unexpected answer {other:?}")),
                Err(e) => Err(e.to_string()),
            }
        } else {
            Err("skipped: no package".into())
        };
        let executed = result.is_ok();
        self.record(STEPS[12], t, result)?;

        let t = Instant::now();
        let result = if executed {
            match self.wait_value(endpoint, Path::Resource(5, 0, 5), 1).await {
                Ok(()) => match self.op(endpoint, read(Path::Resource(3, 0, 3), None)).await {
                    Ok(DownlinkResponse::Read {
                        node: Some(node), ..
                    }) if single(&node) == Some(&Value::String(NEW_FIRMWARE.into())) => Ok(
                        format!("{label}: Update Result 1 (success), /3/0/3 = \"{NEW_FIRMWARE}\""),
                    ),
                    Ok(other) => Err(format!("updated, but /3/0/3 is {other:?}")),
                    Err(e) => Err(e.to_string()),
                },
                Err(e) => Err(e),
            }
        } else {
            Err("skipped: Update not executed".into())
        };
        self.record(STEPS[13], t, result)
    }

    /// Reads `path` until it holds the integer `want`.
    async fn wait_value(&mut self, endpoint: &str, path: Path, want: i64) -> Result<(), String> {
        let deadline = Instant::now() + EVENT_WAIT;
        let mut last = String::from("nothing");
        while Instant::now() < deadline {
            match self.op(endpoint, read(path, None)).await {
                Ok(DownlinkResponse::Read {
                    node: Some(node), ..
                }) => {
                    if matches!(single(&node), Some(Value::Integer(v)) if *v == want) {
                        return Ok(());
                    }
                    last = describe(&node);
                }
                Ok(other) => last = format!("{other:?}"),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(format!("{path} stayed {last}, not {want}"))
    }

    async fn queue_mode(&mut self, label: &str) -> Result<(), DemoError> {
        let endpoint = "demo-3";
        let t = Instant::now();
        let mut result = Err("the device never slept".to_owned());
        // The device may wake up between "asleep" and the request being handed in (it then
        // goes out at once): try again at its next sleep.
        for _attempt in 0..3 {
            let deadline = Instant::now() + EVENT_WAIT;
            while self.devices.is_awake(endpoint) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let asleep_after = t.elapsed();
            let queued_at = Instant::now();
            let request = read(Path::Resource(3, 0, 9), None);
            let pending = match self
                .devices
                .start(endpoint, request, REQUEST_TIMEOUT + EVENT_WAIT)
            {
                Ok(pending) => pending,
                Err(e) => {
                    result = Err(e.to_string());
                    break;
                }
            };
            let queued = self.devices.queued(endpoint);
            let outcome = pending.outcome().await;
            let waited = queued_at.elapsed();
            result = match outcome {
                Ok(DownlinkResponse::Read {
                    node: Some(node), ..
                }) if queued > 0 => {
                    self.latency("Read (queued)", waited);
                    Ok(format!(
                        "{label}: asleep after {}, read queued, delayed until wake-up: answered \
                         after {} ({})",
                        ms(asleep_after),
                        ms(waited),
                        describe(&node)
                    ))
                }
                Ok(_) if queued == 0 => {
                    result =
                        Err("the device was awake each time: the read was never queued".into());
                    continue;
                }
                Ok(other) => Err(format!("unexpected answer {other:?}")),
                Err(e) => Err(e.to_string()),
            };
            break;
        }
        self.record(STEPS[14], t, result)
    }

    /// Security Mode 4: `demo-est` goes factory certificate → bootstrap → EST → registered
    /// with its operational certificate over real sockets, then stops (De-register).
    async fn security_mode_4(&mut self) -> Result<(), DemoError> {
        let t = Instant::now();
        let result = match self.mode4.take() {
            Some(mode4) => self.enrol(mode4, t).await,
            None => Err("not prepared".to_owned()),
        };
        self.record(STEPS[15], t, result)
    }

    async fn enrol(&mut self, mode4: Mode4, t: Instant) -> Result<String, String> {
        let Mode4 {
            factory,
            pki,
            store,
            coaps,
            bs_coaps,
        } = mode4;
        let factory = factory?;
        let pki = pki.ok_or_else(|| "the server runs without a CA".to_owned())?;
        let bs = bs_coaps.ok_or_else(|| "no bootstrap server on DTLS".to_owned())?;
        let (_, _, server_certificate) = pki
            .server_certificate(runtime::SERVER_CN)
            .map_err(|e| format!("server certificate: {e}"))?;
        // One LwM2M server account in Security Mode 4 (certificate mode with EST): this
        // server, its certificate in /0/x/4.
        let mut config = BootstrapConfig::default();
        config.security.insert(
            1,
            ServerSecurity::est(&format!("coaps://{coaps}"), 1, &server_certificate),
        );
        config.servers.insert(0, BootstrapServerConfig::new(1));
        store
            .put_bootstrap_config(EST_DEVICE, &config)
            .map_err(|e| format!("bootstrap configuration: {e}"))?;
        drop(store);

        let mut device = DeviceConfig::new(EST_DEVICE, Version::V1_1);
        device.server_uri = format!("coaps://{coaps}");
        device.clock = i64::try_from(unix_secs()).unwrap_or(0);
        let mut managed = ManagedConfig::new(device, coaps);
        managed.factory = Some(factory.credentials);
        managed.bootstrap = Some(format!("coaps://{bs}"));
        let mut device = managed::spawn(managed).map_err(|e| e.to_string())?;

        let mut seen = Enrolment::default();
        let deadline = tokio::time::Instant::now() + EVENT_WAIT;
        let waited = loop {
            tokio::select! {
                event = self.events.next() => match event {
                    Some(DeviceEvent::Registered { endpoint, .. }) if endpoint == EST_DEVICE => {
                        break Waited::Registered;
                    }
                    Some(_) => {}
                    None => break Waited::ServerGone,
                },
                event = device.next_event() => match event {
                    Some(event) => seen.see(event),
                    None => break Waited::RunnerEnded,
                },
                () = tokio::time::sleep_until(deadline) => break Waited::TimedOut,
            }
        };
        // What the device reported before the server saw it register (the OCSP answer).
        while let Some(event) = device.try_next_event() {
            seen.see(event);
        }
        let registered_after = t.elapsed();
        let explain = |why: String, problem: Option<String>| match problem {
            Some(problem) => format!("{why} ({problem})"),
            None => why,
        };
        let why = match waited {
            Waited::Registered => None,
            Waited::RunnerEnded => {
                let why = match device.join().await {
                    Err(e) => e.to_string(),
                    Ok(_) => "the device stopped".to_owned(),
                };
                return Err(explain(why, seen.problem));
            }
            Waited::ServerGone => Some("the server stopped".to_owned()),
            Waited::TimedOut => Some(format!("not registered within {}", ms(EVENT_WAIT))),
        };
        if let Some(why) = why {
            // Dropping it stops the device without De-register: it never registered.
            drop(device);
            return Err(explain(why, seen.problem));
        }
        self.latency("Mode 4 enrolment", registered_after);

        let checked = self.check_enrolment(&device, &pki, &seen).await;
        // Stopped either way: De-register, then the socket closes.
        let stopped = device.shutdown().await;
        let checked = checked?;
        stopped.map_err(|e| format!("registered, but stopping failed: {e}"))?;
        let deregistered = self
            .wait_event(
                |e| matches!(e, DeviceEvent::Deregistered { endpoint } if endpoint == EST_DEVICE),
            )
            .await;
        if deregistered.is_none() {
            return Err("registered, but the De-register never reached the server".into());
        }
        let mut factory_line = format!(
            "factory: certificate CN={EST_DEVICE} from \"{MANUFACTURER_CA}\" (allow-listed), \
             trusts the Steward root"
        );
        if factory.revoked > 0 {
            let _ = write!(
                factory_line,
                "; {} certificate(s) of an earlier run revoked",
                factory.revoked
            );
        }
        let lines = [
            format!(
                "{EST_DEVICE} (LwM2M 1.1): factory certificate → bootstrap → EST → registered \
                 with its operational certificate in {}",
                ms(registered_after)
            ),
            factory_line,
            format!(
                "bootstrap over DTLS with coaps://{bs} (factory certificate): one Security Mode \
                 4 account, coaps://{coaps}"
            ),
            format!(
                "EST enrolment: operational certificate serial {}, issuer \"{}\" (profile {})",
                checked.serial, checked.issuer, checked.profile
            ),
            "OCSP check of the LwM2M server's certificate (bootstrap server's responder): good"
                .into(),
            format!(
                "registered over DTLS with the operational certificate (server sees X.509 \
                 CN={EST_DEVICE}); read /3/0/0 over DTLS: {}",
                checked.read
            ),
            "stopped: deregistered, socket closed".into(),
        ];
        Ok(lines.join("\n      "))
    }

    /// After `demo-est` registered: the server saw its operational certificate, the CA issued
    /// it, the device holds it, OCSP vouched for the server; then a read over DTLS.
    async fn check_enrolment(
        &mut self,
        device: &ManagedDevice,
        pki: &PkiService,
        seen: &Enrolment,
    ) -> Result<Checked, String> {
        let identity = self.devices.registration(EST_DEVICE).map(|r| r.identity);
        let expected = PeerIdentity::X509 {
            common_name: EST_DEVICE.into(),
        };
        if identity.as_ref() != Some(&expected) {
            return Err(format!("registered as {identity:?}, not {expected:?}"));
        }
        if !(seen.bootstrapped && seen.enrolled && seen.ocsp_good) {
            return Err(format!(
                "registered, but bootstrapped: {}, enrolled: {}, OCSP good: {}",
                seen.bootstrapped, seen.enrolled, seen.ocsp_good
            ));
        }
        // The certificate in the device's LwM2M server account (/0/x/3), which its DTLS
        // session with this server presents.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let asked = device.command(move |client, _| {
            let certificate = match client.device.device().server_account() {
                Some(account) => match account.security {
                    Security::Certificate { certificate, .. } => Some(certificate),
                    _ => None,
                },
                None => None,
            };
            let _ = tx.send(certificate);
        });
        let held = if asked {
            tokio::time::timeout(REQUEST_TIMEOUT, rx)
                .await
                .ok()
                .and_then(Result::ok)
                .flatten()
        } else {
            None
        };
        let held = held.ok_or_else(|| "the device holds no certificate-mode account".to_owned())?;
        let issued = pki
            .issued_for_endpoint(EST_DEVICE)
            .map_err(|e| format!("issued certificates: {e}"))?;
        let record = issued
            .iter()
            .find(|r| r.der == held)
            .ok_or_else(|| "the device's certificate is not one the CA issued".to_owned())?;
        if record.is_revoked() {
            return Err(format!(
                "operational certificate {} is revoked",
                record.serial
            ));
        }
        let issuer = X509::from_der(&record.der)
            .ok()
            .and_then(|c| common_name(c.issuer_name()))
            .unwrap_or_else(|| "?".into());
        let read = match self
            .op(EST_DEVICE, read(Path::Resource(3, 0, 0), None))
            .await
        {
            Ok(DownlinkResponse::Read {
                node: Some(node), ..
            }) => describe(&node),
            Ok(other) => return Err(format!("read /3/0/0: unexpected answer {other:?}")),
            Err(e) => return Err(format!("read /3/0/0 over DTLS: {e}")),
        };
        Ok(Checked {
            serial: record.serial.to_string(),
            issuer,
            profile: record.profile.clone(),
            read,
        })
    }

    async fn deregister(&mut self, fleet: &[SimDevice]) -> Result<(), DemoError> {
        let t = Instant::now();
        for d in fleet {
            d.handle.command(|client, now| client.deregister(now));
        }
        let mut missing: HashSet<String> = fleet.iter().map(|d| d.endpoint.clone()).collect();
        let deadline = tokio::time::Instant::now() + EVENT_WAIT;
        while !missing.is_empty() {
            match tokio::time::timeout_at(deadline, self.events.next()).await {
                Ok(Some(DeviceEvent::Deregistered { endpoint })) => {
                    if missing.remove(&endpoint) {
                        self.latency("De-register", t.elapsed());
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let count = fleet.len();
        let result = if missing.is_empty() {
            Ok(format!("{count}/{count} devices deregistered"))
        } else {
            Err(format!("{}/{count} deregistered", count - missing.len()))
        };
        for d in fleet {
            d.handle.shutdown();
        }
        self.record(STEPS[18], t, result)
    }

    /// Trust-chain recovery (issue 8) with servers of its own: see [`demo_recovery`].
    async fn recovery(&mut self, options: &RecoveryOptions) -> Result<(), DemoError> {
        let t = Instant::now();
        let result = demo_recovery::run(options).await.map(|recovered| {
            self.latency("Fleet recovery", recovered.recovery);
            let n = recovered.devices;
            let mut lines = vec![format!(
                "{n} devices locked in to server A; A lost; all recovered to server B with one \
                 vendor token"
            )];
            lines.extend(recovered.lines);
            lines.join("\n      ")
        });
        self.record(STEPS[17], t, result)
    }

    /// The example plugin at work: `demo-plugin` registers with object 42799; the plugin
    /// reads its manufacturer, labels it and observes its counter; the demo checks the label
    /// through the server, changes the counter and waits for the plugin's notification.
    async fn plugin(&mut self, server: SocketAddr) -> Result<(), DemoError> {
        let t = Instant::now();
        let result = match self.plugin.take() {
            Some(plugin) => self.run_plugin(plugin, server, t).await,
            None => Err("not prepared".to_owned()),
        };
        self.record(STEPS[16], t, result)
    }

    async fn run_plugin(
        &mut self,
        plugin: PluginDemo,
        server: SocketAddr,
        t: Instant,
    ) -> Result<String, String> {
        let PluginDemo {
            installed,
            dispatcher,
            mut events,
        } = plugin;
        installed?;
        let routing = dispatcher.host().routing();
        let Some(owner) = routing.owner(PLUGIN_OBJECT) else {
            let refused: Vec<String> = dispatcher
                .host()
                .refused()
                .into_iter()
                .map(|r| format!("{}: {}", r.file, r.reason))
                .collect();
            return Err(if refused.is_empty() {
                format!("no plugin owns /{PLUGIN_OBJECT}")
            } else {
                format!(
                    "no plugin owns /{PLUGIN_OBJECT}; refused {}",
                    refused.join("; ")
                )
            });
        };
        let name = owner.name().to_owned();
        let version = owner.info.version.to_string();
        let model = owner
            .info
            .objects
            .iter()
            .find(|o| o.id == PLUGIN_OBJECT)
            .map(|o| o.model.clone())
            .ok_or_else(|| format!("plugin {name} has no model of /{PLUGIN_OBJECT}"))?;
        drop(routing);
        drop(dispatcher);

        let config = plugin_device_config(model, server);
        let device = spawn_device(config, 0x5eed_4279, server).map_err(|e| e.to_string())?;
        device.handle.command(|client, now| client.start(now));
        let managed = self.managed(&device, &mut events, &name, t).await;
        // Stopped either way: De-register when it registered, then the socket closes.
        let registered = self.devices.registration(PLUGIN_DEVICE).is_some();
        let deregistered = if registered {
            device.handle.command(|client, now| client.deregister(now));
            self.wait_event(
                |e| matches!(e, DeviceEvent::Deregistered { endpoint } if endpoint == PLUGIN_DEVICE),
            )
            .await
            .is_some()
        } else {
            false
        };
        device.handle.shutdown();
        let managed = managed?;
        if !deregistered {
            return Err(format!(
                "{managed}, but the De-register never reached the server"
            ));
        }
        Ok(format!("plugin {name} {version} {managed}; deregistered"))
    }

    /// What the plugin did with `demo-plugin`, checked at both ends.
    async fn managed(
        &mut self,
        device: &SimDevice,
        events: &mut PluginEvents,
        plugin: &str,
        t: Instant,
    ) -> Result<String, String> {
        events
            .get(plugin, "device-seen", |_| true)
            .await
            .map_err(|e| format!("{PLUGIN_DEVICE} not seen by the plugin: {e}"))?;
        events.response(plugin, "label").await?;
        self.latency("Plugin label", t.elapsed());
        let manufacturer = events.response(plugin, "manufacturer").await?;
        let manufacturer = manufacturer["values"]["/3/0/0"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("the plugin read no manufacturer: {manufacturer}"))?;
        events.response(plugin, "observe").await?;

        let label = Path::Resource(PLUGIN_OBJECT, 0, 1);
        let written = match self.op(PLUGIN_DEVICE, read(label, None)).await {
            Ok(DownlinkResponse::Read {
                node: Some(node), ..
            }) if single(&node) == Some(&Value::String(PLUGIN_LABEL.into())) => describe(&node),
            Ok(other) => return Err(format!("{label} is not the plugin's label: {other:?}")),
            Err(e) => return Err(format!("read {label}: {e}")),
        };

        let counter = Path::Resource(PLUGIN_OBJECT, 0, 0);
        let changed = Instant::now();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let asked = device.handle.command(move |client, now| {
            let set = client.device.set(&counter, Value::Integer(PLUGIN_COUNTER));
            client.handle_timeout(now);
            let _ = tx.send(set);
        });
        let set = asked
            && matches!(
                tokio::time::timeout(REQUEST_TIMEOUT, rx).await,
                Ok(Ok(true))
            );
        if !set {
            return Err(format!(
                "the device did not take {counter} = {PLUGIN_COUNTER}"
            ));
        }
        let key = counter.to_string();
        events
            .get(plugin, "notification", |d| {
                d["values"][&key] == PLUGIN_COUNTER
            })
            .await?;
        self.latency("Plugin notify", changed.elapsed());
        Ok(format!(
            "labelled {PLUGIN_DEVICE} ({written}), read its manufacturer {manufacturer:?}, got \
             notification counter={PLUGIN_COUNTER}"
        ))
    }

    /// One request through the service, its latency recorded under its operation.
    async fn op(
        &mut self,
        endpoint: &str,
        request: DownlinkRequest,
    ) -> Result<DownlinkResponse, DmError> {
        let operation = request.operation();
        let t = Instant::now();
        let result = self
            .devices
            .request(endpoint, request, REQUEST_TIMEOUT)
            .await;
        if result.is_ok() {
            self.latency(operation, t.elapsed());
        }
        result
    }

    async fn wait_event(&mut self, want: impl Fn(&DeviceEvent) -> bool) -> Option<DeviceEvent> {
        let deadline = tokio::time::Instant::now() + EVENT_WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.next()).await {
                Ok(Some(e)) if want(&e) => return Some(e),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return None,
            }
        }
    }

    fn latency(&mut self, operation: &str, elapsed: Duration) {
        self.latencies
            .entry(operation.to_owned())
            .or_default()
            .push(elapsed);
    }

    fn record(
        &mut self,
        name: &str,
        started: Instant,
        result: Result<String, String>,
    ) -> Result<(), DemoError> {
        let elapsed = started.elapsed();
        let (passed, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        let mark = if passed { "✓" } else { "✗" };
        let width = STEPS.iter().map(|s| s.chars().count()).max().unwrap_or(0);
        writeln!(
            self.out,
            "  {mark} {name:<width$} {:>9}  {detail}",
            ms(elapsed)
        )?;
        self.out.flush()?;
        if passed {
            tracing::debug!(step = name, ?elapsed, "demo step passed");
        } else {
            tracing::warn!(step = name, %detail, "demo step failed");
        }
        self.steps.push(StepOutcome {
            name: name.to_owned(),
            passed,
            elapsed,
            detail,
        });
        Ok(())
    }
}

fn write_summary(out: &mut (dyn Write + Send), s: &DemoSummary) -> Result<(), DemoError> {
    let passed = s.steps.iter().filter(|x| x.passed).count();
    let requests: usize = s.latencies.values().map(Vec::len).sum();
    writeln!(out)?;
    writeln!(
        out,
        "Summary: {passed}/{} steps passed, {} failed; {} devices, {requests} timed operations, {}",
        STEPS.len(),
        s.failures() + STEPS.len().saturating_sub(s.steps.len()),
        s.devices,
        ms(s.elapsed)
    )?;
    for step in &s.steps {
        writeln!(
            out,
            "  {} {}",
            if step.passed { "✓" } else { "✗" },
            step.name
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "  {:<18} {:>5} {:>10} {:>10}",
        "operation", "count", "p50", "p99"
    )?;
    let mut table = String::new();
    for (operation, samples) in &s.latencies {
        let p50 = percentile(samples, 50).map(ms).unwrap_or_default();
        let p99 = percentile(samples, 99).map(ms).unwrap_or_default();
        let _ = writeln!(
            table,
            "  {operation:<18} {:>5} {p50:>10} {p99:>10}",
            samples.len()
        );
    }
    write!(out, "{table}")?;
    writeln!(
        out,
        "\n{}",
        if s.passed() {
            "demo passed"
        } else {
            "demo FAILED"
        }
    )?;
    out.flush()?;
    Ok(())
}

/// The first CN of a name.
fn common_name(name: &X509NameRef) -> Option<String> {
    let entry = name.entries_by_nid(Nid::COMMONNAME).next()?;
    entry.data().to_string().ok()
}

fn read(path: Path, format: Option<ContentFormat>) -> DownlinkRequest {
    DownlinkRequest::Read { path, format }
}

fn single(node: &Node) -> Option<&Value> {
    match node {
        Node::Resource(Resource::Single(v)) | Node::ResourceInstance(v) => Some(v),
        _ => None,
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Integer(i) | Value::Time(i) => i.to_string(),
        Value::UnsignedInteger(u) => u.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::Opaque(o) => format!("{} bytes", o.len()),
        other => format!("{other:?}"),
    }
}

fn describe(node: &Node) -> String {
    match node {
        Node::Instance(i) => {
            let n = i.resources.len();
            match i.resources.get(&0) {
                Some(Resource::Single(Value::String(m))) => {
                    format!("{n} resources, manufacturer {m:?}")
                }
                _ => format!("{n} resources"),
            }
        }
        Node::Object(o) => format!("{} instances", o.len()),
        Node::Resource(Resource::Single(v)) | Node::ResourceInstance(v) => value_text(v),
        Node::Resource(Resource::Multiple(m)) => format!("{} values", m.len()),
    }
}

/// A duration for people: "12 ms", "2.4 s".
fn ms(d: Duration) -> String {
    let millis = d.as_secs_f64() * 1000.0;
    if millis < 1.0 {
        format!("{millis:.2} ms")
    } else if millis < 10.0 {
        format!("{millis:.1} ms")
    } else if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 50), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&samples, 99), Some(Duration::from_millis(99)));
        assert_eq!(
            percentile(&samples[..1], 99),
            Some(Duration::from_millis(1))
        );
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn a_missing_plugin_says_how_to_build_it() {
        let dir = std::env::temp_dir().join("steward-demo-no-plugin");
        let missing = dir.join("nothing-here.wasm");
        let error = install_plugin(&missing, &dir.join("plugins")).expect_err("missing");
        assert!(
            error.starts_with("example plugin not built: run scripts/build-plugins"),
            "{error}"
        );
        assert!(!dir.join("plugins").exists(), "nothing installed");
    }

    #[test]
    fn the_fleet_mixes_versions_with_one_queue_device() {
        let server = SocketAddr::from(([127, 0, 0, 1], 5683));
        let configs: Vec<DeviceConfig> = (0..5).map(|i| fleet_config(i, server)).collect();
        let versions: HashSet<String> = configs.iter().map(|c| c.lwm2m.to_string()).collect();
        assert_eq!(versions.len(), 3);
        assert_eq!(configs.iter().filter(|c| c.queue_mode).count(), 1);
    }
}
