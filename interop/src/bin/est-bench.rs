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
use steward_dtls::{
    ClientCertificate, ClientConfig, ClientCredentials, ClientSession, ServerTrust,
};
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
    let est_devices = device_keys(&est_ids, &prepared.factory)?;
    let hs_devices = device_keys(&hs_ids, &prepared.factory)?;
    let keyed = est_devices.len() + hs_devices.len();
    if keyed > 0 {
        let took = started.elapsed();
        println!(
            "device side (untimed below): {keyed} P-256 keys + CSRs (and factory credentials \
             loaded for DTLS) in {:.2} s = {:.0} µs per device on one core",
            took.as_secs_f64(),
            took.as_secs_f64() * 1e6 / keyed as f64
        );
    }

    let mut results = Vec::new();
    if !est_devices.is_empty() || !hs_devices.is_empty() {
        let server = start(&data, false).await?;
        let bs_coaps = server
            .bs_coaps_addr()
            .ok_or("no bootstrap coaps listener")?;
        if !est_devices.is_empty() {
            results.push(est_open(bs_coaps, &prepared, est_devices, c, timeout).await?);
        }
        if !hs_devices.is_empty() {
            results.push(est_handshake(bs_coaps, &prepared, hs_devices, c, timeout).await?);
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
    println!(
        "== results ({cores} core(s), shared by server and clients; N = {n}, concurrency {c})"
    );
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
        // `exit` skips destructors: remove the data directory first.
        drop(tmp);
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

    for id in bs_ids {
        let mut config = BootstrapConfig::default();
        // One LwM2M Server account in PSK mode; the bootstrap writes /0/0 and /1/0.
        config.security.insert(
            0,
            ServerSecurity::psk("coaps://127.0.0.1:5684", 1, id.as_bytes(), &BS_PSK),
        );
        config.servers.insert(0, ServerConfig::new(1));
        config.validate()?;
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
    /// The factory chain and key, as the DTLS client takes them.
    certificate: ClientCertificate,
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
                certificate,
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

/// The device's DTLS client: its factory certificate, and the Steward root as the trust
/// anchor for the server's certificate (which the CA issued to the listeners).
fn dtls_config(server: SocketAddr, device: &Device, root_der: &[u8]) -> ClientConfig {
    ClientConfig::new(
        server,
        ClientCredentials::Certificate {
            certificate: device.certificate.clone(),
            server: ServerTrust::new(vec![root_der.to_vec()]),
        },
    )
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

/// Results of concurrent flows, collected from the workers.
struct Tally<R> {
    /// Per successful flow, sorted.
    latencies: Vec<Duration>,
    failures: BTreeMap<String, usize>,
    /// What the successful flows returned.
    returned: Vec<R>,
    elapsed: Duration,
}

impl<R> Tally<R> {
    fn failed(&self) -> usize {
        self.failures.values().sum()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn count(failures: &mut BTreeMap<String, usize>, reason: String) {
    *failures.entry(reason).or_default() += 1;
}

/// Runs `flow` on every item, at most `concurrency` at once, with `bar` counting finished
/// flows. Each flow is timed from its start to its return; one past `timeout` fails.
async fn run_flows<T, R, F, Fut>(
    items: Vec<T>,
    concurrency: usize,
    timeout: Duration,
    bar: &ProgressBar,
    flow: F,
) -> Tally<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, String>> + Send,
{
    struct Shared<R> {
        latencies: Vec<Duration>,
        failures: BTreeMap<String, usize>,
        returned: Vec<R>,
    }
    let queue = Arc::new(Mutex::new(items.into_iter().collect::<VecDeque<_>>()));
    let shared = Arc::new(Mutex::new(Shared {
        latencies: Vec::new(),
        failures: BTreeMap::new(),
        returned: Vec::new(),
    }));
    let flow = Arc::new(flow);
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (queue, shared, flow, bar, failed) = (
            Arc::clone(&queue),
            Arc::clone(&shared),
            Arc::clone(&flow),
            bar.clone(),
            Arc::clone(&failed),
        );
        workers.spawn(async move {
            loop {
                let next = lock(&queue).pop_front();
                let Some(item) = next else {
                    return;
                };
                let t0 = Instant::now();
                let result = match tokio::time::timeout(timeout, flow(item)).await {
                    Ok(result) => result,
                    Err(_) => Err(format!("no result within {timeout:?}")),
                };
                let took = t0.elapsed();
                let mut shared = lock(&shared);
                match result {
                    Ok(returned) => {
                        shared.latencies.push(took);
                        shared.returned.push(returned);
                    }
                    Err(reason) => {
                        count(&mut shared.failures, reason);
                        let f = failed.fetch_add(1, Ordering::Relaxed) + 1;
                        bar.set_message(format!("failed {f}"));
                    }
                }
                bar.inc(1);
            }
        });
    }
    let mut panicked = Vec::new();
    while let Some(joined) = workers.join_next().await {
        if let Err(e) = joined {
            panicked.push(format!("worker task: {e}"));
        }
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let mut shared = lock(&shared);
    for reason in panicked {
        count(&mut shared.failures, reason);
    }
    let mut latencies = std::mem::take(&mut shared.latencies);
    latencies.sort_unstable();
    Tally {
        latencies,
        failures: std::mem::take(&mut shared.failures),
        returned: std::mem::take(&mut shared.returned),
        elapsed,
    }
}

/// An open DTLS session with the CoAP stack that runs over it.
struct Open {
    session: ClientSession,
    stack: Stack<SocketAddr>,
}

fn client_stack(seed: u64) -> Stack<SocketAddr> {
    Stack::new(StackConfig {
        endpoint: endpoint::Config {
            seed,
            ..endpoint::Config::default()
        },
        ..StackConfig::default()
    })
}

fn sen_request(csr: &[u8]) -> Request {
    Request::new(Method::Post)
        .with_path("/.well-known/est/sen")
        .with_option(
            option::ACCEPT,
            steward_coap::message::encode_uint(u32::from(CT_PKIX_CERT)),
        )
        .with_payload(CT_PKCS10, csr.to_vec())
}

/// Sends `request` (CON) over the session and runs the stack until its answer.
async fn exchange(open: &mut Open, request: Request) -> Result<Response, String> {
    let server = open.session.server_addr();
    let id = open.stack.request(Instant::now(), server, request, true);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        while let Some(t) = open.stack.poll_transmit() {
            open.session
                .send(&t.datagram)
                .await
                .map_err(|e| format!("DTLS send: {e}"))?;
        }
        if let Some(answer) = answer_of(&mut open.stack, id) {
            // An ACK to a separate response may be due: let it go out.
            while let Some(t) = open.stack.poll_transmit() {
                let _ = open.session.send(&t.datagram).await;
            }
            return answer;
        }
        let timer = open.stack.poll_timeout();
        tokio::select! {
            received = open.session.recv(&mut buf) => {
                let n = received.map_err(|e| format!("DTLS session ended: {e}"))?;
                let datagram = buf.get(..n).unwrap_or_default();
                open.stack.handle(Instant::now(), server, datagram);
            }
            () = sleep_until(timer) => open.stack.handle_timeout(Instant::now()),
        }
    }
}

/// The outcome of request `id` among the stack's events, if it has come.
fn answer_of(stack: &mut Stack<SocketAddr>, id: RequestId) -> Option<Result<Response, String>> {
    while let Some(event) = stack.poll_event() {
        match event {
            Event::Response {
                id: got, response, ..
            } if got == id => return Some(Ok(response)),
            Event::Failed {
                id: got, reason, ..
            } if got == id => {
                return Some(Err(format!("CoAP request failed: {reason:?}")));
            }
            _ => {}
        }
    }
    None
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

fn code(code: Code) -> String {
    format!("{}.{:02}", code.class(), code.detail())
}

/// `/sen` on an open session: the issued certificate (DER) on 2.04.
async fn enrol(open: &mut Open, csr: &[u8]) -> Result<Vec<u8>, String> {
    let response = exchange(open, sen_request(csr)).await?;
    if response.code != Code::CHANGED {
        return Err(format!(
            "/sen answered {} {}",
            code(response.code),
            String::from_utf8_lossy(&response.payload)
        ));
    }
    if response.options.content_format() != Some(CT_PKIX_CERT) {
        return Err(format!(
            "/sen answered Content-Format {:?}, not the {CT_PKIX_CERT} asked for",
            response.options.content_format()
        ));
    }
    Ok(response.payload)
}

/// Checks every returned certificate: it chains to the Steward root through the issuing CA,
/// names the device, and certifies the key the device generated. Returns how many passed and
/// why the others did not.
fn verify_all(
    prepared: &Prepared,
    devices: &[Arc<Device>],
    returned: &[(usize, Vec<u8>)],
) -> (usize, BTreeMap<String, usize>) {
    let mut failures = BTreeMap::new();
    let checker = match CertChecker::new(prepared) {
        Ok(c) => c,
        Err(e) => {
            count(
                &mut failures,
                format!("cannot set up the verification: {e}"),
            );
            return (0, failures);
        }
    };
    let mut ok = 0;
    for (i, der) in returned {
        let Some(device) = devices.get(*i) else {
            count(&mut failures, "a certificate for no device".into());
            continue;
        };
        match checker.check(device, der) {
            Ok(()) => ok += 1,
            Err(e) => count(&mut failures, format!("returned certificate: {e}")),
        }
    }
    (ok, failures)
}

struct CertChecker {
    store: openssl::x509::store::X509Store,
    intermediates: SslStack<X509>,
}

impl CertChecker {
    fn new(prepared: &Prepared) -> BoxResult<CertChecker> {
        let mut store = X509StoreBuilder::new()?;
        store.add_cert(prepared.root.clone())?;
        let mut intermediates = SslStack::new()?;
        intermediates.push(prepared.issuing.clone())?;
        Ok(CertChecker {
            store: store.build(),
            intermediates,
        })
    }

    fn check(&self, device: &Device, der: &[u8]) -> Result<(), String> {
        let cert = X509::from_der(der).map_err(|e| format!("not DER: {e}"))?;
        let mut ctx = X509StoreContext::new().map_err(|e| e.to_string())?;
        let verdict = ctx
            .init(&self.store, &cert, &self.intermediates, |c| {
                let ok = c.verify_cert()?;
                Ok((ok, c.error().error_string()))
            })
            .map_err(|e| e.to_string())?;
        if !verdict.0 {
            return Err(format!("does not chain to the Steward CA: {}", verdict.1));
        }
        let cn = cert
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .next()
            .and_then(|e| e.data().to_string().ok());
        if cn.as_deref() != Some(device.id.as_str()) {
            return Err(format!("CN {cn:?}, not {:?}", device.id));
        }
        let key = cert.public_key().map_err(|e| e.to_string())?;
        if !key.public_eq(&device.key) {
            return Err("certifies another key than the CSR's".into());
        }
        Ok(())
    }
}

/// Figure 1: enrolments on sessions opened beforehand.
async fn est_open(
    server: SocketAddr,
    prepared: &Prepared,
    devices: Vec<Device>,
    concurrency: usize,
    timeout: Duration,
) -> BoxResult<Outcome> {
    let n = devices.len();
    let devices: Vec<Arc<Device>> = devices.into_iter().map(Arc::new).collect();
    println!();
    println!("[est] opening {n} DTLS sessions (ECDHE-ECDSA, factory certificates), untimed");
    let configs: Vec<(usize, ClientConfig)> = devices
        .iter()
        .enumerate()
        .map(|(i, d)| (i, dtls_config(server, d, &prepared.root_der)))
        .collect();
    let bar = progress(n, "sessions open");
    let opened = run_flows(
        configs,
        concurrency,
        timeout,
        &bar,
        |(i, config)| async move {
            let session = ClientSession::connect(&config)
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            Ok((i, session))
        },
    )
    .await;
    let open_note = format!(
        "set-up, untimed: {} sessions opened in {:.2} s ({:.0} handshakes/s at concurrency \
         {concurrency}), {} failed",
        opened.returned.len(),
        opened.elapsed.as_secs_f64(),
        opened.returned.len() as f64 / opened.elapsed.as_secs_f64().max(1e-9),
        opened.failed()
    );
    println!("[est] {open_note}");

    let work: Vec<(usize, Arc<Device>, Open)> = opened
        .returned
        .into_iter()
        .map(|(i, session)| {
            let stack = client_stack(0x5e4_0000 ^ i as u64);
            (i, Arc::clone(&devices[i]), Open { session, stack })
        })
        .collect();
    let bar = progress(work.len(), "enrolled (/sen on open sessions)");
    let done: Arc<Mutex<Vec<Open>>> = Arc::default();
    let enrolled = {
        let done = Arc::clone(&done);
        run_flows(
            work,
            concurrency,
            timeout,
            &bar,
            move |(i, device, mut open)| {
                let done = Arc::clone(&done);
                async move {
                    let result = enrol(&mut open, &device.csr).await;
                    lock(&done).push(open);
                    result.map(|der| (i, der))
                }
            },
        )
        .await
    };
    let sessions = std::mem::take(&mut *lock(&done));
    close_all(sessions).await;
    let (verified, bad) = verify_all(prepared, &devices, &enrolled.returned);

    let mut failures = opened.failures;
    for (reason, n) in enrolled.failures.into_iter().chain(bad) {
        *failures.entry(reason).or_default() += n;
    }
    Ok(Outcome {
        name: "est",
        what: "EST enrolments/s on open DTLS sessions (CON POST /.well-known/est/sen, ct 286, \
               Accept 287; one per device)"
            .into(),
        n,
        concurrency,
        ok: verified,
        failed: failures.values().sum(),
        elapsed: enrolled.elapsed,
        latencies: enrolled.latencies,
        failures,
        notes: vec![
            open_note,
            format!(
                "{verified} of {} returned certificates verified against the Steward CA \
                 (chain, CN = device ID, key = the device's)",
                enrolled.returned.len()
            ),
        ],
        target: Some(TARGET_EST_PER_S),
    })
}

async fn close_all(sessions: Vec<Open>) {
    let mut closing = tokio::task::JoinSet::new();
    for open in sessions {
        closing.spawn(async move { open.session.close().await });
    }
    while closing.join_next().await.is_some() {}
}

/// Figure 2: per device a handshake, `/sen` and close.
async fn est_handshake(
    server: SocketAddr,
    prepared: &Prepared,
    devices: Vec<Device>,
    concurrency: usize,
    timeout: Duration,
) -> BoxResult<Outcome> {
    let n = devices.len();
    let devices: Vec<Arc<Device>> = devices.into_iter().map(Arc::new).collect();
    println!();
    println!(
        "[est-handshake] {n} devices: connect (ECDHE-ECDSA, factory certificate) + /sen + close"
    );
    let work: Vec<(usize, Arc<Device>, ClientConfig)> = devices
        .iter()
        .enumerate()
        .map(|(i, d)| (i, Arc::clone(d), dtls_config(server, d, &prepared.root_der)))
        .collect();
    let bar = progress(n, "enrolled (handshake + /sen + close)");
    let enrolled = run_flows(
        work,
        concurrency,
        timeout,
        &bar,
        |(i, device, config)| async move {
            let session = ClientSession::connect(&config)
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            let mut open = Open {
                session,
                stack: client_stack(0x5e5_0000 ^ i as u64),
            };
            let result = enrol(&mut open, &device.csr).await;
            open.session.close().await;
            result.map(|der| (i, der))
        },
    )
    .await;
    let (verified, bad) = verify_all(prepared, &devices, &enrolled.returned);
    let mut failures = enrolled.failures;
    for (reason, n) in bad {
        *failures.entry(reason).or_default() += n;
    }
    Ok(Outcome {
        name: "est-handshake",
        what: "EST enrolments/s including the handshake (per device: new DTLS session with the \
               factory certificate, /sen, close_notify)"
            .into(),
        n,
        concurrency,
        ok: verified,
        failed: failures.values().sum(),
        elapsed: enrolled.elapsed,
        latencies: enrolled.latencies,
        failures,
        notes: vec![format!(
            "{verified} of {} returned certificates verified against the Steward CA",
            enrolled.returned.len()
        )],
        target: None,
    })
}

/// Figure 3: complete bootstrap flows over plain CoAP.
async fn bootstrap(
    server: SocketAddr,
    ids: &[String],
    concurrency: usize,
    timeout: Duration,
) -> BoxResult<Outcome> {
    let n = ids.len();
    println!();
    println!(
        "[bootstrap] {n} devices: POST /bs?ep=… over plain CoAP (server restarted with \
         allow_unsecured), answer Delete/Write/Finish"
    );
    let work: Vec<(usize, String)> = ids.iter().cloned().enumerate().collect();
    let bar = progress(n, "bootstrapped");
    let done = run_flows(work, concurrency, timeout, &bar, move |(i, ep)| {
        bootstrap_flow(server, ep, 0xb5_0000 ^ i as u64)
    })
    .await;
    let answered: usize = done.returned.iter().map(|s| s.requests).sum();
    let writes: usize = done.returned.iter().map(|s| s.writes).sum();
    let ok = done.returned.len();
    Ok(Outcome {
        name: "bootstrap",
        what: "complete bootstrap flows/s (Bootstrap-Request → 2.04, Delete /0 /1, Write /0/0 \
               /1/0, Finish; timed to the answer to Finish)"
            .into(),
        n,
        concurrency,
        ok,
        failed: done.failed(),
        elapsed: done.elapsed,
        latencies: done.latencies,
        failures: done.failures,
        notes: vec![format!(
            "server requests answered: {answered} ({:.1} per flow, {writes} Bootstrap-Writes)",
            answered as f64 / ok.max(1) as f64
        )],
        target: None,
    })
}

/// What one bootstrap flow saw.
struct BootstrapSeen {
    requests: usize,
    writes: usize,
}

/// One device's bootstrap: its own UDP socket and CoAP stack (so that the server's requests
/// reach the device they are for), until it has answered Bootstrap-Finish.
async fn bootstrap_flow(
    server: SocketAddr,
    ep: String,
    seed: u64,
) -> Result<BootstrapSeen, String> {
    let socket = UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    socket
        .connect(server)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut stack = client_stack(seed);
    let request = Request::new(Method::Post)
        .with_path("/bs")
        .with_query(&format!("ep={ep}"));
    let id = stack.request(Instant::now(), server, request, true);
    let mut accepted = false;
    let mut seen = BootstrapSeen {
        requests: 0,
        writes: 0,
    };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let mut finished = false;
        while let Some(event) = stack.poll_event() {
            match event {
                Event::Response {
                    id: got, response, ..
                } if got == id => {
                    if response.code != Code::CHANGED {
                        return Err(format!(
                            "Bootstrap-Request answered {} {}",
                            code(response.code),
                            String::from_utf8_lossy(&response.payload)
                        ));
                    }
                    accepted = true;
                }
                Event::Failed {
                    id: got, reason, ..
                } if got == id => {
                    return Err(format!("Bootstrap-Request failed: {reason:?}"));
                }
                Event::Request {
                    id: incoming,
                    request,
                } => {
                    let path = request.path_string();
                    let answer = match request.method {
                        Method::Delete => Code::DELETED,
                        Method::Put if !request.payload.is_empty() => {
                            seen.writes += 1;
                            Code::CHANGED
                        }
                        Method::Post if path == "/bs" => {
                            finished = true;
                            Code::CHANGED
                        }
                        other => return Err(format!("unexpected request {other:?} {path}")),
                    };
                    seen.requests += 1;
                    stack
                        .respond(Instant::now(), incoming, Response::new(answer))
                        .map_err(|e| format!("answering {path}: {e}"))?;
                }
                _ => {}
            }
        }
        // Our answers (and the Bootstrap-Request itself, the first time round) go out now,
        // not at the stack's next timer.
        while let Some(t) = stack.poll_transmit() {
            socket
                .send(&t.datagram)
                .await
                .map_err(|e| format!("send: {e}"))?;
        }
        if finished {
            // The answer to Finish, which the flow is timed to, has just been sent.
            if !accepted {
                return Err("Bootstrap-Finish before the 2.04 to the Bootstrap-Request".into());
            }
            if seen.writes == 0 {
                return Err("Bootstrap-Finish without any Bootstrap-Write".into());
            }
            return Ok(seen);
        }
        let timer = stack.poll_timeout();
        tokio::select! {
            received = socket.recv(&mut buf) => {
                let n = received.map_err(|e| format!("recv: {e}"))?;
                let datagram = buf.get(..n).unwrap_or_default();
                stack.handle(Instant::now(), server, datagram);
            }
            () = sleep_until(timer) => stack.handle_timeout(Instant::now()),
        }
    }
}
