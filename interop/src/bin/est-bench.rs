//! EST enrolment and bootstrap throughput of the real server, in-process, on loopback (issue 5).
//!
//! `CARGO_INCREMENTAL=0 cargo run --release -p steward-interop --bin est-bench -- [--devices N]
//! [--concurrency C] [--only est|est-handshake|bootstrap] [--max-failures K]`
//!
//! The data directory is prepared offline before the server starts (sled locks it while the
//! server runs): the Steward CA (`PkiService::init_if_missing`), a manufacturer CA (a second
//! `steward_pki::ca::Ca`) whose issuing certificate goes to `DATA_DIR/ca/manufacturers/`,
//! factory certificates `bench-000001`… issued by it, all on the allow-list, and one bootstrap
//! configuration per bootstrap device (`bench-bs-000001`…, one PSK LwM2M Server account). Then
//! every device's operational key and CSR are generated, before any timing: that is the
//! device's cost, not the server's, and is reported on its own line.
//!
//! The figures, each with the core count, N, the concurrency, elapsed, rate, p50/p99:
//!
//! 1. `est`: N DTLS sessions (ECDHE-ECDSA, factory certificate) to the bootstrap coaps port
//!    are opened first, untimed; then one CON `POST /.well-known/est/sen` (Content-Format 286,
//!    Accept 287) per session, at most C in flight, timed from sending to the 2.04. The
//!    CoAP side is a `steward_coap::stack::Stack` per session (block-wise included, should the
//!    answer ever exceed a block).
//! 2. `est-handshake`: per device a fresh session (full handshake), `/sen`, close; at most C
//!    devices at once, timed from the first handshake flight to the 2.04.
//! 3. `bootstrap`: per device a `POST /bs?ep=…` over plain CoAP, then the server's
//!    Bootstrap-Delete (answered 2.02), Bootstrap-Write (2.04) and Bootstrap-Finish (2.04);
//!    timed from the request to the answer to Finish. Plain CoAP needs `allow_unsecured`, so
//!    this figure runs against a second start of the server on the same data directory with
//!    `allow_unsecured: true`; the EST figures run with it off (it does not touch EST, which
//!    is coaps only, but the server under test should be the default one where possible).
//!
//! Devices enrol once each (`bench-000001`… for figure 1, the next N for figure 2): the server
//! refuses a second `/sen` from a factory certificate whose endpoint holds a valid operational
//! certificate (`PkiSettings::factory_reenrolment` off by default). Every certificate returned
//! is verified after the timed phase against the Steward CA, with its CN and public key
//! checked against the request, so that a broken server cannot look fast.
//!
//! The clients (webrtc-dtls handshakes, CoAP stacks) share this process's tokio runtime and
//! cores with the server: the figures are what one machine does playing both sides, and only
//! meaningful relative to each other on the same machine. The issue's target is printed next to
//! figure 1, never asserted. The run fails (exit 1) when more flows failed than
//! `--max-failures` (default N/200 per figure), after printing what failed and why.

use std::collections::{BTreeMap, VecDeque};
use std::error::Error;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack as SslStack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509, X509NameBuilder, X509ReqBuilder, X509StoreContext};
use steward::bootstrap::{BootstrapConfig, ServerConfig, ServerSecurity};
use steward::config::Config;
use steward::pki::{CA_DIR, MANUFACTURERS_DIR, PkiService, PkiSettings};
use steward::runtime::RunningServer;
use steward::store::{Durability, SledStore, Store};
use steward_coap::endpoint::{self, Event, RequestId};
use steward_coap::message::{Code, Method, Request, Response, option};
use steward_coap::stack::{Stack, StackConfig};
use steward_dtls::{ClientCertificate, ClientConfig, ClientCredentials, ClientSession, ServerTrust};
use steward_pki::ca::{Ca, CaNames, IssueParams, Serial};
use steward_pki::csr::{Csr, CsrLimits};
use steward_pki::profile::Profile;
use tokio::net::UdpSocket;

type BoxResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Issue 5's target for enrolments on open sessions.
const TARGET_EST_PER_S: f64 = 5000.0;
/// EST-coaps Content-Formats (RFC 9148 §8.1).
const CT_PKCS10: u16 = 286;
const CT_PKIX_CERT: u16 = 287;
/// Largest datagram read from a socket or session (a 1024-byte block plus headers fits).
const MAX_DATAGRAM: usize = 4096;
/// The PSK the bootstrap configurations hand out (content does not matter to the figure).
const BS_PSK: [u8; 16] = [0x42; 16];
const DAY: u64 = 86_400;

#[derive(Debug, Parser)]
#[command(about = "EST enrolment and bootstrap throughput of the in-process server (issue 5)")]
struct Args {
    /// Devices per figure.
    #[arg(long, default_value_t = 2000)]
    devices: usize,
    /// Flows in flight at once (sessions opened at once for figure 1's set-up too).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Run one figure only.
    #[arg(long, value_enum)]
    only: Option<Figure>,
    /// Failed flows tolerated per figure before the run fails (default: N/200).
    #[arg(long)]
    max_failures: Option<usize>,
    /// A flow that has not finished after this many seconds counts as failed.
    #[arg(long, default_value_t = 60)]
    flow_timeout: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Figure {
    Est,
    EstHandshake,
    Bootstrap,
}

#[tokio::main]
async fn main() -> BoxResult<()> {
    let args = Args::parse();
    let n = args.devices.max(1);
    let c = args.concurrency.max(1);
    let wanted = |f: Figure| args.only.is_none_or(|only| only == f);
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let max_failures = args.max_failures.unwrap_or(n / 200);
    let timeout = Duration::from_secs(args.flow_timeout.max(1));
    println!(
        "est-bench: {cores} core(s) shared by the in-process server AND its clients; N = {n} \
         devices per figure, concurrency {c}; release build: {}",
        !cfg!(debug_assertions)
    );

    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    let est_ids = if wanted(Figure::Est) {
        ids("bench", 1, n)
    } else {
        Vec::new()
    };
    let hs_ids = if wanted(Figure::EstHandshake) {
        ids("bench", n + 1, n)
    } else {
        Vec::new()
    };
    let bs_ids = if wanted(Figure::Bootstrap) {
        ids("bench-bs", 1, n)
    } else {
        Vec::new()
    };

    let started = Instant::now();
    let prepared = prepare(tmp.path(), &data, &est_ids, &hs_ids, &bs_ids)?;
    println!(
        "set-up (offline, untimed): Steward CA, manufacturer CA, {} factory certificates on the \
         allow-list, {} bootstrap configurations in {:.2} s",
        est_ids.len() + hs_ids.len(),
        bs_ids.len(),
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let mut est_devices = device_keys(&est_ids, &prepared.factory)?;
    let mut hs_devices = device_keys(&hs_ids, &prepared.factory)?;
    let keyed = est_devices.len() + hs_devices.len();
    if keyed > 0 {
        let took = started.elapsed();
        println!(
            "device side (untimed below): {keyed} P-256 keys + CSRs in {:.2} s = {:.0} µs each \
             on one core",
            took.as_secs_f64(),
            took.as_secs_f64() * 1e6 / keyed as f64
        );
    }

    let mut results = Vec::new();
    if !est_devices.is_empty() || !hs_devices.is_empty() {
        let server = start(&data, false).await?;
        let bs_coaps = server.bs_coaps_addr().ok_or("no bootstrap coaps listener")?;
        if !est_devices.is_empty() {
            let devices = std::mem::take(&mut est_devices);
            results.push(est_open(bs_coaps, &prepared, devices, c, timeout).await?);
        }
        if !hs_devices.is_empty() {
            let devices = std::mem::take(&mut hs_devices);
            results.push(est_handshake(bs_coaps, &prepared, devices, c, timeout).await?);
        }
        server.shutdown().await?;
    }
    if !bs_ids.is_empty() {
        let server = start(&data, true).await?;
        let bs_coap = server.bs_coap_addr().ok_or("no bootstrap coap listener")?;
        results.push(bootstrap(bs_coap, &bs_ids, c, timeout).await?);
        server.shutdown().await?;
    }

    println!();
    println!("== results ({cores} core(s), shared by server and clients; N = {n}, concurrency {c})");
    let mut failed_figures = Vec::new();
    for r in &results {
        r.print();
        if r.failed > max_failures {
            failed_figures.push(r.name);
        }
    }
    for r in &results {
        r.print_failures();
    }
    if !failed_figures.is_empty() {
        eprintln!(
            "FAILED: more than {max_failures} failed flow(s) in: {}",
            failed_figures.join(", ")
        );
        std::process::exit(1);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Set-up

/// What the clients need from the set-up.
struct Prepared {
    /// The Steward root: the clients' trust anchor for the server's DTLS certificate.
    root_der: Vec<u8>,
    /// The Steward issuing CA and root, to verify what `/sen` returned.
    issuing: X509,
    root: X509,
    /// Per factory device ID: its factory chain (leaf, manufacturer issuing CA) and key.
    factory: BTreeMap<String, (Vec<Vec<u8>>, PKey<Private>)>,
}

fn ids(prefix: &str, first: usize, count: usize) -> Vec<String> {
    (first..first + count)
        .map(|i| format!("{prefix}-{i:06}"))
        .collect()
}

fn unix_now() -> BoxResult<u64> {
    Ok(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())
}

fn p256() -> BoxResult<PKey<Private>> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    Ok(PKey::from_ec_key(EcKey::generate(&group)?)?)
}

/// A PKCS#10 request with subject `CN=<cn>`, signed by `key`.
fn csr(key: &PKey<Private>, cn: &str) -> BoxResult<Vec<u8>> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, cn)?;
    let name = name.build();
    let mut b = X509ReqBuilder::new()?;
    b.set_version(0)?;
    b.set_subject_name(&name)?;
    b.set_pubkey(key)?;
    b.sign(key, MessageDigest::sha256())?;
    Ok(b.build().to_der()?)
}

/// Writes the data directory as an operator would offline (`steward ca init`, `ca manufacturer
/// add`, `ca allow-list import`, `bootstrap import`), and the factory's side of the devices.
fn prepare(
    tmp: &Path,
    data: &Path,
    est_ids: &[String],
    hs_ids: &[String],
    bs_ids: &[String],
) -> BoxResult<Prepared> {
    std::fs::create_dir_all(data)?;
    // Relaxed durability with one flush at the end: thousands of set-up writes need not each
    // wait for an fsync. The server opens the store with its default (Sync) durability.
    let store = Arc::new(SledStore::open_with(data, Durability::Relaxed)?);
    let pki = PkiService::init_if_missing(data, Arc::clone(&store), PkiSettings::default())?;
    let chain = pki.ca_chain_der();
    let issuing = X509::from_der(chain.first().ok_or("the CA chain is empty")?)?;
    let root_der = pki.root_der();
    let root = X509::from_der(&root_der)?;

    // The manufacturer: its own CA, created a day ago, its issuing certificate installed as
    // a manufacturer CA of the server.
    let names = CaNames {
        organization: Some("Bench Devices Ltd".into()),
        root_cn: "Bench Manufacturer Root".into(),
        issuing_cn: "Bench Manufacturer Devices CA".into(),
        ..CaNames::default()
    };
    let now = unix_now()?;
    let mfr = Ca::init(&tmp.join("manufacturer"), &names, now - DAY)?;
    let dir = data.join(CA_DIR).join(MANUFACTURERS_DIR);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("bench.pem"), mfr.issuing_cert().to_pem()?)?;

    let all: Vec<&String> = est_ids.iter().chain(hs_ids).collect();
    let mut factory = BTreeMap::new();
    let bar = progress(all.len(), "factory certificates");
    for id in &all {
        let key = p256()?;
        let request = Csr::from_der(&csr(&key, id)?, CsrLimits::default())?;
        let issued = mfr.issue(
            &request,
            &Profile::device(),
            IssueParams::new(Serial::random()?, now - 60),
        )?;
        let chain = vec![issued.der, mfr.issuing_cert_der().to_vec()];
        factory.insert((*id).clone(), (chain, key));
        bar.inc(1);
    }
    bar.finish_and_clear();
    store.allow_list_put_all(all.iter().map(|s| s.as_str()))?;

    for (i, id) in bs_ids.iter().enumerate() {
        let mut config = BootstrapConfig::default();
        // One LwM2M Server account in PSK mode; the bootstrap writes /0/0 and /1/0.
        config.security.insert(
            0,
            ServerSecurity::psk("coaps://127.0.0.1:5684", 1, id.as_bytes(), &BS_PSK),
        );
        config.servers.insert(0, ServerConfig::new(1));
        if i == 0 {
            config.validate()?;
        }
        store.put_bootstrap_config(id, &config)?;
    }
    store.flush()?;
    drop(pki);
    drop(store);
    Ok(Prepared {
        root_der,
        issuing,
        root,
        factory,
    })
}

/// One enrolling device: its factory credentials, and the operational key and CSR it made.
struct Device {
    id: String,
    credentials: ClientCredentials,
    key: PKey<Private>,
    csr: Vec<u8>,
}

/// The device's own work before it enrols: a fresh P-256 key and a CSR naming its endpoint.
fn device_keys(
    ids: &[String],
    factory: &BTreeMap<String, (Vec<Vec<u8>>, PKey<Private>)>,
) -> BoxResult<Vec<Device>> {
    ids.iter()
        .map(|id| {
            let (chain, factory_key) = factory.get(id).ok_or("no factory certificate")?;
            let certificate =
                ClientCertificate::from_der(chain.clone(), &factory_key.private_key_to_pkcs8()?)?;
            let key = p256()?;
            let csr = csr(&key, id)?;
            Ok(Device {
                id: id.clone(),
                credentials: ClientCredentials::Certificate {
                    certificate,
                    // Filled in by the caller with the Steward root (see `dtls_config`).
                    server: ServerTrust::new(Vec::new()),
                },
                key,
                csr,
            })
        })
        .collect()
}

async fn start(data: &Path, allow_unsecured: bool) -> BoxResult<RunningServer> {
    let mut config = Config::ephemeral(PathBuf::from(data));
    config.allow_unsecured = allow_unsecured;
    Ok(steward::runtime::start(&config).await?)
}

fn dtls_config(server: SocketAddr, device: &Device, root_der: &[u8]) -> ClientConfig {
    let credentials = match &device.credentials {
        ClientCredentials::Certificate { certificate, .. } => ClientCredentials::Certificate {
            certificate: certificate.clone(),
            server: ServerTrust::new(vec![root_der.to_vec()]),
        },
        other => other.clone(),
    };
    ClientConfig::new(server, credentials)
}

// ---------------------------------------------------------------------------------------
// Figures

/// One figure's outcome.
struct Outcome {
    name: &'static str,
    what: String,
    n: usize,
    concurrency: usize,
    ok: usize,
    failed: usize,
    elapsed: Duration,
    /// Per successful flow, sorted.
    latencies: Vec<Duration>,
    failures: BTreeMap<String, usize>,
    /// Lines printed under the figure (set-up costs, verification).
    notes: Vec<String>,
    target: Option<f64>,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn print(&self) {
        println!();
        println!("[{}] {}", self.name, self.what);
        println!(
            "   {} ok, {} failed of {} (concurrency {}) in {:.2} s = {:.0} /s{}",
            self.ok,
            self.failed,
            self.n,
            self.concurrency,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.target.map_or_else(String::new, |t| format!(
                "   (issue 5 target {t:.0} /s: {:.0}%)",
                100.0 * self.rate() / t
            )),
        );
        println!(
            "   latency p50 {}  p99 {}  max {}",
            ms(percentile(&self.latencies, 50.0)),
            ms(percentile(&self.latencies, 99.0)),
            ms(self.latencies.last().copied()),
        );
        for note in &self.notes {
            println!("   {note}");
        }
    }

    fn print_failures(&self) {
        if self.failures.is_empty() {
            return;
        }
        println!();
        println!("[{}] failures by reason:", self.name);
        for (reason, count) in &self.failures {
            println!("   {count:>6} × {reason}");
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted.get(rank.min(sorted.len() - 1)).copied()
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.1} ms", d.as_secs_f64() * 1e3),
    )
}

fn progress(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    // The template is a constant; if indicatif ever rejected it, the default style is fine.
    if let Ok(style) = ProgressStyle::with_template(&format!(
        "{{elapsed_precise}} [{{bar:30}}] {{pos}}/{{len}} {what}  {{msg}}"
    )) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

