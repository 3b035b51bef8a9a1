//! `steward-client`: simulated LwM2M devices over UDP.
//!
//! ```text
//! steward-client --server 127.0.0.1:5683 --endpoint NAME --lwm2m 1.1 [--count N] \
//!     [--object-ddf FILE ...]
//! steward-client --server 127.0.0.1:5684 --endpoint NAME --psk-identity NAME --psk-key HEX
//! steward-client --server 127.0.0.1:5684 --endpoint CN --cert dev.pem --key dev.key --ca ca.pem
//! steward-client --bootstrap coap://127.0.0.1:5783 --endpoint NAME [--state-dir DIR]
//! steward-client --bootstrap coaps://127.0.0.1:5784 --endpoint NAME --psk-identity NAME --psk-key HEX
//! steward-client --bootstrap coaps://127.0.0.1:5784 --endpoint NAME --cert factory.pem \
//!     --key factory.key --ca bs-server-ca.pem --state-dir DIR [--no-ocsp-check] [--reenroll]
//! steward-client fleet --server 127.0.0.1:5683 --count 100000 --rate 5000 --lifetime 300 \
//!     [--duration S] [--deregister]
//! steward-client bench [--count 100000] [--steward target/release/steward]
//! ```
//!
//! Without a subcommand: registers N devices (one socket and one task each: a server addresses
//! a device by its source address), keeps them registered, answers the server's requests,
//! prints progress, and deregisters on Ctrl-C. With `--psk-identity`/`--psk-key` or
//! `--cert`/`--key`/`--ca` the (single) device talks CoAP over DTLS (see
//! `steward_client::dtls`): `--ca` holds the CA certificate(s) the server's chain must end at,
//! or the server's own (e.g. self-signed) certificate to pin. `fleet` runs many devices on a few worker tasks
//! (see `steward_client::fleet`) with a progress bar and a latency summary; `bench` measures
//! a `steward serve` child process (see `bench.rs`). With `--bootstrap` or `--state-dir` one
//! device runs with a transport that follows it from bootstrap server to LwM2M server (see
//! `steward_client::managed`).
//! `--object-ddf` adds the objects a DDF file defines (a server plugin's object) to every
//! device, each with one empty instance 0 (see `steward_client::device::ExtraObject`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod bench;
mod fleet_cmd;

use clap::{Parser, Subcommand};
use steward_client::dtls::DtlsEvent;
use steward_client::est::OcspCheck;
use steward_client::managed::{self, ManagedConfig, ManagedError, ManagedEvent, endpoint_seed};
use steward_client::registration::RegistrationEvent;
use steward_client::{
    BootstrapEvent, Client, DeviceConfig, DeviceEvent, ExtraObject, ExtraObjectError,
};
use steward_coap::endpoint::Config;
use steward_coap::stack::StackConfig;
use steward_dtls::{ClientCertificate, ClientConfig, ClientCredentials, ServerTrust};
use steward_objects::{Instance, Version};
use steward_transport::Handle;
use steward_transport::dtls_client::{Backoff, LinkEvent};
use steward_transport::udp::{self, UdpConfig};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Simulated LwM2M devices for Steward",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    single: Args,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Many devices from one process: ramp-up, progress bar, latency summary.
    Fleet(fleet_cmd::FleetArgs),
    /// Benchmarks against a `steward serve` child process and an in-process observer.
    Bench(bench::BenchArgs),
}

#[derive(Debug, clap::Args)]
struct Args {
    /// LwM2M server address.
    #[arg(long, default_value = "127.0.0.1:5683")]
    server: SocketAddr,
    /// Endpoint name; with --count above 1, devices are NAME-0, NAME-1, ...
    #[arg(long, default_value = "steward-sim")]
    endpoint: String,
    /// LwM2M version to speak: 1.0, 1.1 or 1.2.
    #[arg(long, default_value = "1.1", value_parser = parse_version)]
    lwm2m: Version,
    /// Number of devices.
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Registration lifetime in seconds.
    #[arg(long, default_value_t = 300)]
    lifetime: u32,
    /// Register in queue mode.
    #[arg(long)]
    queue: bool,
    /// DTLS with a pre-shared key: the PSK identity (usually the endpoint name).
    #[arg(
        long,
        value_name = "IDENTITY",
        requires = "psk_key",
        conflicts_with = "cert"
    )]
    psk_identity: Option<String>,
    /// DTLS with a pre-shared key: the key, in hex.
    #[arg(long, value_name = "HEX", requires = "psk_identity", value_parser = parse_hex)]
    psk_key: Option<HexKey>,
    /// DTLS with a certificate: the device's certificate chain (PEM, leaf first; CN = endpoint).
    #[arg(long, value_name = "PEM", requires_all = ["key", "ca"])]
    cert: Option<PathBuf>,
    /// DTLS with a certificate: the device's P-256 private key (PEM, PKCS#8).
    #[arg(long, value_name = "PEM", requires = "cert")]
    key: Option<PathBuf>,
    /// DTLS with a certificate: CA certificate(s) or the pinned server certificate (PEM).
    #[arg(long, value_name = "PEM", requires = "cert")]
    ca: Option<PathBuf>,
    /// Bootstrap server URI (coap:// or coaps://, an IP address): the device bootstraps when
    /// it has no usable LwM2M server account. coaps uses --psk-identity/--psk-key or
    /// --cert/--key/--ca as factory credentials.
    #[arg(long, value_name = "URI")]
    bootstrap: Option<String>,
    /// Keep the device's state (accounts, registration, LwM2M version, firmware) in
    /// DIR/<endpoint>.json across restarts.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// With --bootstrap: before trusting the LwM2M server's certificate (/0/x/4, modes 2 and
    /// 4), ask the bootstrap server's OCSP responder and refuse to connect unless it says
    /// Good (the default).
    #[arg(long, overrides_with = "no_ocsp_check")]
    ocsp_check: bool,
    /// Trust /0/x/4 without asking the OCSP responder.
    #[arg(long, overrides_with = "ocsp_check")]
    no_ocsp_check: bool,
    /// Uri-Path of the OCSP responder on the bootstrap server.
    #[arg(long, value_name = "PATH", default_value = steward_client::est::DEFAULT_OCSP_PATH)]
    ocsp_path: String,
    /// EST root on the bootstrap server (RFC 9148: /.well-known/est or
    /// /.well-known/est/<label>).
    #[arg(long, value_name = "PATH", default_value = steward_client::est::DEFAULT_EST_ROOT)]
    est_root: String,
    /// Re-enrol (EST /sren, new key, same subject) the certificate of the persisted
    /// certificate-mode account at start, then register with the new certificate. Needs
    /// --bootstrap and --state-dir.
    #[arg(long, requires_all = ["bootstrap", "state_dir"])]
    reenroll: bool,
    /// Also implement the objects this DDF file defines, each with an empty instance 0.
    /// Repeatable. Executing one of their resources answers 2.04 and does nothing else.
    #[arg(long, value_name = "FILE")]
    object_ddf: Vec<PathBuf>,
    /// Trust-chain recovery (object 42769): the installation this device belongs to. The
    /// device is locked in to a Certificate Trust List from then on (needs --vendor-key and
    /// --bootstrap with --cert).
    #[arg(long, value_name = "ID", requires_all = ["vendor_key", "bootstrap"])]
    installation: Option<String>,
    /// The vendor recovery public key (PEM) the device is built with.
    #[arg(long, value_name = "PEM", requires = "installation")]
    vendor_key: Option<PathBuf>,
    /// The factory CTL (PEM certificates). Without it the device trusts the first bootstrap
    /// server it completes a bootstrap with (trust on first use).
    #[arg(long, value_name = "PEM", requires = "installation")]
    factory_ctl: Option<PathBuf>,
}

/// Why the single-device mode could not run.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Dtls(#[from] steward_dtls::DtlsError),
    #[error("DTLS runs one device: --count must be 1")]
    DtlsCount,
    #[error("--bootstrap and --state-dir run one device: --count must be 1")]
    ManagedCount,
    #[error("{0}")]
    Uri(String),
    #[error(transparent)]
    Transport(#[from] steward_client::transport::TransportError),
    #[error(transparent)]
    Managed(#[from] ManagedError),
    #[error("{}: {source}", path.display())]
    ObjectDdf {
        path: PathBuf,
        source: ExtraObjectError,
    },
    #[error("{}: {why}", path.display())]
    Trust { path: PathBuf, why: String },
}

/// The trust-chain recovery configuration from `--installation`, `--vendor-key` and
/// `--factory-ctl`.
fn trust_config(args: &Args) -> Result<Option<steward_client::trust::TrustConfig>, RunError> {
    let (Some(installation), Some(key_path)) = (&args.installation, &args.vendor_key) else {
        return Ok(None);
    };
    let read = |path: &PathBuf| {
        std::fs::read_to_string(path).map_err(|source| RunError::Read {
            path: path.clone(),
            source,
        })
    };
    let vendor_key =
        steward_pki::cose::load_verifying_key(&read(key_path)?).map_err(|e| RunError::Trust {
            path: key_path.clone(),
            why: e.to_string(),
        })?;
    let initial = match &args.factory_ctl {
        None => steward_client::trust::InitialTrust::FirstUse,
        Some(path) => steward_client::trust::InitialTrust::Factory(
            steward_dtls::certificates_from_pem(&read(path)?)?,
        ),
    };
    Ok(Some(steward_client::trust::TrustConfig {
        installation: installation.clone(),
        vendor_key,
        initial,
        recovery_retry: steward_client::trust::DEFAULT_RECOVERY_RETRY,
    }))
}

/// A key given in hex. A newtype, because clap reads `Option<Vec<u8>>` as a list of numbers.
#[derive(Debug, Clone)]
struct HexKey(Vec<u8>);

fn parse_hex(s: &str) -> Result<HexKey, String> {
    let s = s.trim();
    if s.is_empty() || !s.len().is_multiple_of(2) {
        return Err("expected an even number of hex digits".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
                .ok_or_else(|| format!("not hex: {s:?}"))
        })
        .collect::<Result<Vec<u8>, String>>()
        .map(HexKey)
}

fn read(path: &Path) -> Result<String, RunError> {
    std::fs::read_to_string(path).map_err(|source| RunError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The DTLS credentials the flags ask for, if any.
fn credentials(args: &Args) -> Result<Option<ClientCredentials>, RunError> {
    if let (Some(identity), Some(key)) = (&args.psk_identity, &args.psk_key) {
        return Ok(Some(ClientCredentials::Psk {
            identity: identity.as_bytes().to_vec(),
            key: key.0.clone(),
        }));
    }
    if let (Some(cert), Some(key), Some(ca)) = (&args.cert, &args.key, &args.ca) {
        let certificate = ClientCertificate::from_pem(&read(cert)?, &read(key)?)?;
        let server = ServerTrust::from_pem(&read(ca)?)?;
        return Ok(Some(ClientCredentials::Certificate {
            certificate,
            server,
        }));
    }
    Ok(None)
}

/// The objects of every `--object-ddf` file, each with an empty instance 0.
fn extra_objects(args: &Args) -> Result<Vec<ExtraObject>, RunError> {
    let mut objects = Vec::new();
    for path in &args.object_ddf {
        let parsed = ExtraObject::from_ddf(&read(path)?).map_err(|source| RunError::ObjectDdf {
            path: path.clone(),
            source,
        })?;
        objects.extend(
            parsed
                .into_iter()
                .map(|o| o.with_instance(0, Instance::default())),
        );
    }
    Ok(objects)
}

pub(crate) fn parse_version(s: &str) -> Result<Version, String> {
    match s.parse::<Version>() {
        Ok(v) if [Version::V1_0, Version::V1_1, Version::V1_2].contains(&v) => Ok(v),
        Ok(v) => Err(format!("LwM2M {v} is not simulated (1.0, 1.1, 1.2)")),
        Err(e) => Err(e.to_string()),
    }
}

/// Counters shared by all device tasks, for the progress line.
#[derive(Default)]
struct Progress {
    registered: AtomicUsize,
    failures: AtomicUsize,
    served: AtomicUsize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("steward-client: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match cli.command {
        None => runtime.block_on(run(cli.single)).map_err(|e| e.to_string()),
        Some(Command::Fleet(args)) => runtime
            .block_on(fleet_cmd::run(args))
            .map_err(|e| e.to_string()),
        Some(Command::Bench(args)) => runtime
            .block_on(bench::run(args))
            .map_err(|e| e.to_string()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("steward-client: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), RunError> {
    let dtls = credentials(&args)?;
    if dtls.is_some() && args.count != 1 {
        return Err(RunError::DtlsCount);
    }
    let progress = Arc::new(Progress::default());
    let verbose = args.count <= 10;
    let clock = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let extra = extra_objects(&args)?;
    if args.bootstrap.is_some() || args.state_dir.is_some() {
        return run_managed(args, dtls, clock, extra).await;
    }
    let bind = match args.server {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    };
    let mut handles: Vec<Handle<Client<SocketAddr>>> = Vec::with_capacity(args.count);
    for i in 0..args.count {
        let endpoint = if args.count == 1 {
            args.endpoint.clone()
        } else {
            format!("{}-{i}", args.endpoint)
        };
        let mut config = DeviceConfig::new(endpoint.clone(), args.lwm2m);
        config.lifetime = args.lifetime;
        config.queue_mode = args.queue;
        let scheme = if dtls.is_some() { "coaps" } else { "coap" };
        config.server_uri = format!("{scheme}://{}", args.server);
        config.clock = clock;
        config.extra_objects = extra.clone();
        let stack = StackConfig {
            endpoint: Config {
                seed: endpoint_seed(&endpoint),
                ..Config::default()
            },
            ..StackConfig::default()
        };
        let mut client = Client::new(config, stack, args.server);
        // Package URIs on real sockets: IP literals (and localhost), no DNS.
        client
            .device
            .set_peer_resolver(steward_client::firmware::ip_resolver);
        if let Some(credentials) = &dtls {
            let progress = Arc::clone(&progress);
            let config = ClientConfig::new(args.server, credentials.clone());
            let (handle, _task) = steward_client::dtls::spawn(
                config,
                Backoff::default(),
                client,
                move |_, _, event| match event {
                    DtlsEvent::Device(event) => report(&endpoint, &event, &progress, verbose),
                    DtlsEvent::Link(event) => println!("{endpoint}: {}", describe_link(&event)),
                },
            );
            handles.push(handle);
            continue;
        }
        let (socket, _) = udp::bind(&UdpConfig {
            bind,
            recv_buffer: 64 << 10,
            send_buffer: 64 << 10,
        })?;
        let progress = Arc::clone(&progress);
        let (handle, _task) = udp::spawn(socket, client, move |_, _, event| {
            report(&endpoint, &event, &progress, verbose);
        })?;
        handle.command(|client, now| client.start(now));
        handles.push(handle);
    }
    println!(
        "steward-client: {} device(s), LwM2M {}, registering with {}",
        args.count, args.lwm2m, args.server
    );
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if !verbose {
                    println!(
                        "registered {}/{}  failures {}  requests served {}",
                        progress.registered.load(Ordering::Relaxed),
                        args.count,
                        progress.failures.load(Ordering::Relaxed),
                        progress.served.load(Ordering::Relaxed),
                    );
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    println!("steward-client: deregistering");
    for handle in &handles {
        handle.command(|client, now| client.deregister(now));
    }
    // Give the De-register requests time to be answered before the sockets close.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while progress.registered.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn report(endpoint: &str, event: &DeviceEvent, progress: &Progress, verbose: bool) {
    match event {
        DeviceEvent::Registration(RegistrationEvent::Registered { .. }) => {
            progress.registered.fetch_add(1, Ordering::Relaxed);
        }
        DeviceEvent::Registration(RegistrationEvent::Deregistered) => {
            // Saturating: a device may report Deregistered without having registered.
            let _ = progress
                .registered
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
        DeviceEvent::Registration(RegistrationEvent::RegisterFailed { .. }) => {
            progress.failures.fetch_add(1, Ordering::Relaxed);
        }
        DeviceEvent::Registration(RegistrationEvent::UpdateFailed { .. }) => {
            // The device registers again; count it off until it is back.
            let _ = progress
                .registered
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            progress.failures.fetch_add(1, Ordering::Relaxed);
        }
        DeviceEvent::Served { .. } => {
            progress.served.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    }
    if verbose {
        println!("{endpoint}: {}", describe(event));
    }
}

fn describe(event: &DeviceEvent) -> String {
    match event {
        DeviceEvent::Registration(RegistrationEvent::Registered { location }) => {
            format!("registered at {location}")
        }
        DeviceEvent::Registration(RegistrationEvent::Updated) => "registration updated".into(),
        DeviceEvent::Registration(RegistrationEvent::Deregistered) => "deregistered".into(),
        DeviceEvent::Registration(RegistrationEvent::RegisterFailed { code, retry_in }) => {
            let why = code.map_or_else(|| "no answer".to_owned(), |c| c.to_string());
            format!("register failed ({why}), retrying in {retry_in:?}")
        }
        DeviceEvent::Registration(RegistrationEvent::UpdateFailed { code }) => {
            let why = code.map_or_else(|| "no answer".to_owned(), |c| c.to_string());
            format!("update failed ({why}), registering again")
        }
        DeviceEvent::Registration(RegistrationEvent::VersionFallback { from, to }) => {
            format!("server refused LwM2M {from} (4.12), registering with {to}")
        }
        DeviceEvent::Served { method, path, code } => format!("{method} {path} -> {code}"),
        DeviceEvent::Rebooting => "rebooting".into(),
        DeviceEvent::TrustReset => {
            "recovery token accepted: CTL erased, bootstrapping from the initial state".into()
        }
        DeviceEvent::Disabled { until } => format!("disabled until {until:?}"),
        DeviceEvent::Unsupported(effect) => format!("not supported yet: {effect:?}"),
        DeviceEvent::Observed { key } => format!("observed {key}"),
        DeviceEvent::Notified { key, code } => format!("notified {key} -> {code}"),
        DeviceEvent::Sent { code } => format!("send -> {code}"),
        DeviceEvent::SendFailed => "send got no answer".into(),
        DeviceEvent::Slept => "asleep (queue mode)".into(),
        DeviceEvent::Woke => "awake (queue mode)".into(),
        DeviceEvent::Dropped { path } => format!("asleep, dropped a request for {path}"),
        DeviceEvent::Firmware { state, result } => {
            format!("firmware state {state:?}, update result {result}")
        }
        DeviceEvent::FirmwareUpdated { version } => format!("firmware updated to {version}"),
        DeviceEvent::Executed { path, arguments } => {
            format!("executed {path} ({:?})", String::from_utf8_lossy(arguments))
        }
        DeviceEvent::Bootstrap(e) => describe_bootstrap(e),
        DeviceEvent::Bootstrapped { account } => format!(
            "bootstrapped: server {} (SSID {}, {:?})",
            account.uri, account.ssid, account.security
        ),
        DeviceEvent::Unreachable { uri } => format!("cannot reach {uri}"),
        DeviceEvent::StateSaveFailed { error } => format!("state not saved: {error}"),
        DeviceEvent::Est(e) => describe_est(e),
        DeviceEvent::ServerCertificateRejected { reason, retry_in } => {
            format!(
                "server certificate rejected ({reason}), not connecting; checking again in {retry_in:?}"
            )
        }
        DeviceEvent::CredentialsStored { paths } => format!(
            "enrolled credentials stored: {}, {}, {}",
            paths.certificate.display(),
            paths.key.display(),
            paths.ca.display()
        ),
    }
}

fn describe_est(event: &steward_client::est::EstEvent) -> String {
    use steward_client::est::EstEvent;
    match event {
        EstEvent::Requested { step } => format!("EST {step} requested"),
        EstEvent::CaCertificates { count } => format!("EST CA certificates: {count}"),
        EstEvent::Enrolled { certificate_len } => {
            format!("enrolled: certificate of {certificate_len} bytes")
        }
        EstEvent::ServerCertificateAccepted => "server certificate Good (OCSP)".into(),
        EstEvent::Failed { reason, retry_in } => {
            format!("{reason}, retrying in {retry_in:?}")
        }
        EstEvent::Done => "EST done".into(),
    }
}

fn describe_bootstrap(event: &BootstrapEvent) -> String {
    match event {
        BootstrapEvent::Requested => "bootstrap requested".into(),
        BootstrapEvent::Accepted => "bootstrap server accepted the request".into(),
        BootstrapEvent::Finished => "bootstrap finished".into(),
        BootstrapEvent::Failed { reason, retry_in } => {
            format!("bootstrap failed ({reason}), retrying in {retry_in:?}")
        }
    }
}

fn describe_link(event: &LinkEvent) -> String {
    match event {
        LinkEvent::Connected {
            local, reconnect, ..
        } => {
            let again = if *reconnect { " again" } else { "" };
            format!("DTLS session up{again} (from {local})")
        }
        LinkEvent::HandshakeFailed { error, retry_in } => {
            format!("DTLS handshake failed ({error}), retrying in {retry_in:?}")
        }
        LinkEvent::Lost { reason } => format!("DTLS session lost ({reason}), reconnecting"),
    }
}

/// One device with a bootstrap server and/or persisted state, its transport following it
/// (`steward_client::managed`); prints its events until Ctrl-C, then deregisters.
async fn run_managed(
    args: Args,
    factory: Option<ClientCredentials>,
    clock: i64,
    extra: Vec<ExtraObject>,
) -> Result<(), RunError> {
    if args.count != 1 {
        return Err(RunError::ManagedCount);
    }
    let endpoint = args.endpoint.clone();
    let mut device = DeviceConfig::new(endpoint.clone(), args.lwm2m);
    device.lifetime = args.lifetime;
    device.queue_mode = args.queue;
    device.clock = clock;
    device.extra_objects = extra;
    device.trust = trust_config(&args)?;
    let scheme = if factory.is_some() { "coaps" } else { "coap" };
    device.server_uri = format!("{scheme}://{}", args.server);
    let mut config = ManagedConfig::new(device, args.server);
    config.factory = factory;
    config.bootstrap = args.bootstrap.clone();
    config.est_root = args.est_root.clone();
    config.ocsp = if args.no_ocsp_check {
        OcspCheck::Off
    } else {
        OcspCheck::On {
            path: args.ocsp_path.clone(),
        }
    };
    config.state_dir = args.state_dir.clone();
    config.credential_files = steward_client::state::CredentialPaths {
        certificate: args.cert.clone(),
        key: args.key.clone(),
        ca: args.ca.clone(),
    };
    config.reenrol = args.reenroll;
    let mut device = managed::spawn(config).map_err(|e| match e {
        ManagedError::Reenrol(e) => RunError::Uri(format!("--reenroll: {e}")),
        e => RunError::Managed(e),
    })?;
    if device.state_loaded()
        && let Some(dir) = &args.state_dir
    {
        println!("{endpoint}: state loaded from {}", dir.display());
    }
    if args.reenroll {
        println!("{endpoint}: re-enrolling (EST /sren)");
    }
    println!(
        "steward-client: 1 device, LwM2M {}, {}",
        args.lwm2m,
        match &args.bootstrap {
            Some(uri) => format!("bootstrapping with {uri} if needed"),
            None => format!("registering with {}", args.server),
        }
    );
    let progress = Progress::default();
    let mut stopping = false;
    loop {
        tokio::select! {
            event = device.next_event() => match event {
                Some(ManagedEvent::Device(event)) => report(&endpoint, &event, &progress, true),
                Some(ManagedEvent::Link(event)) => println!("{endpoint}: {}", describe_link(&event)),
                Some(ManagedEvent::NoTarget { error }) => println!("{endpoint}: {error}"),
                Some(ManagedEvent::Driver { .. }) => {}
                // The runner ended: after Ctrl-C, or with the reason it could not go on.
                None => return device.join().await.map(drop).map_err(RunError::from),
            },
            _ = tokio::signal::ctrl_c(), if !stopping => {
                println!("steward-client: deregistering");
                device.stop();
                stopping = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ddf_files_add_objects_with_instance_0() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ddf = dir.path().join("42799.xml");
        let xml = include_str!("../tests/data/example-counter-42799.xml");
        std::fs::write(&ddf, xml).expect("written");
        let core = dir.path().join("3.xml");
        std::fs::write(&core, xml.replace("<ObjectID>42799<", "<ObjectID>3<")).expect("written");
        let parse = |files: &[&Path]| {
            let mut argv: Vec<&std::ffi::OsStr> = vec![
                "steward-client".as_ref(),
                "--endpoint".as_ref(),
                "dev".as_ref(),
            ];
            for f in files {
                argv.extend(["--object-ddf".as_ref(), f.as_os_str()]);
            }
            Cli::try_parse_from(argv).expect("flags parse").single
        };
        let objects = extra_objects(&parse(&[&ddf, &ddf])).expect("objects");
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0].id(), 42799);
        assert_eq!(objects[0].instances.keys().collect::<Vec<_>>(), [&0]);
        assert!(objects[0].instances[&0].resources.is_empty());
        assert!(extra_objects(&parse(&[])).expect("none").is_empty());
        assert!(matches!(
            extra_objects(&parse(&[&core])),
            Err(RunError::ObjectDdf {
                source: ExtraObjectError::CoreObject(3),
                ..
            })
        ));
    }

    #[test]
    fn psk_flags_parse_into_credentials() {
        let cli = Cli::try_parse_from([
            "steward-client",
            "--endpoint",
            "dev",
            "--psk-identity",
            "dev",
            "--psk-key",
            "00ff10",
        ])
        .expect("flags parse");
        match credentials(&cli.single) {
            Ok(Some(ClientCredentials::Psk { identity, key })) => {
                assert_eq!(identity, b"dev");
                assert_eq!(key, [0x00, 0xff, 0x10]);
            }
            Ok(_) => panic!("PSK credentials expected"),
            Err(e) => panic!("PSK credentials expected, got {e}"),
        }
        for bad in ["0", "zz", ""] {
            assert!(
                Cli::try_parse_from([
                    "steward-client",
                    "--endpoint",
                    "dev",
                    "--psk-identity",
                    "dev",
                    "--psk-key",
                    bad
                ])
                .is_err(),
                "{bad:?}"
            );
        }
    }
}
