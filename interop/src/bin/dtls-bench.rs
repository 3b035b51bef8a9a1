//! DTLS handshake throughput and per-session memory of `steward-dtls` on loopback.
//!
//! `cargo run --release -p steward-interop --bin dtls-bench -- [psk|cert|memory|all] [SECONDS] [CONCURRENCY]`
//! (default `all 5 16`).
//!
//! * `psk`: CONCURRENCY client tasks, each in a loop: new UDP socket → full DTLS-PSK
//!   handshake (TLS_PSK_WITH_AES_128_CCM_8, cookie exchange included) → one application
//!   datagram echoed by the server → close_notify. Reports handshakes/s.
//! * `cert`: the same with TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 and mutual P-256
//!   certificates under a test CA made with rcgen (the server verifies the client chain).
//! * `memory`: the server runs in a child process (this binary re-executed as `serve`) so
//!   the clients' memory stays out of the figure; the child's VmRSS is read from
//!   `/proc/<pid>/status` before and after establishing 1,000 and 10,000 PSK sessions that
//!   are kept open, and the child reports its `metrics()` when asked on stdin.
//!
//! The webrtc-dtls clients and the server share this machine's cores; the figures are
//! wall-clock and only meaningful relative to each other on the same machine. Progress is
//! printed every second. The targets are printed next to the figures, never asserted.

use std::error::Error;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls_pki_types::CertificateDer;
use steward_dtls::{
    ChainVerifier, DtlsConfig, DtlsServer, Inbound, MemoryCredentials, ServerCertificate,
    StrictPolicy,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use webrtc_dtls::cipher_suite::CipherSuiteId;
use webrtc_dtls::config::{Config, ExtendedMasterSecretType};
use webrtc_dtls::conn::DTLSConn;
use webrtc_dtls::crypto::{Certificate, CryptoPrivateKey};

type BoxResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

const PSK_ID: &[u8] = b"bench-psk";
const PSK_KEY: &[u8] = &[0x42; 16];
const PAYLOAD: &[u8] = b"steward dtls-bench ping";

const TARGET_PSK_PER_S: f64 = 5000.0;
const TARGET_CERT_PER_S: f64 = 3000.0;
const TARGET_KIB_PER_SESSION: f64 = 4.0;

/// Session counts of the memory measurement.
const MEMORY_STEPS: [usize; 2] = [1_000, 10_000];
/// Give up on reaching the next step after this long (and report what was reached).
const MEMORY_STEP_BUDGET: Duration = Duration::from_secs(120);

/// A handshake or echo that takes longer than this counts as a failure.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> BoxResult<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        return serve().await;
    }
    let mode = args.get(1).map_or("all", String::as_str).to_owned();
    let seconds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let concurrency: usize = args
        .get(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or(16)
        .max(1);
    let (psk, cert, memory) = match mode.as_str() {
        "psk" => (true, false, false),
        "cert" => (false, true, false),
        "memory" => (false, false, true),
        "all" => (true, true, true),
        other => {
            eprintln!(
                "unknown mode {other:?}; usage: dtls-bench [psk|cert|memory|all] [SECONDS] [CONCURRENCY]"
            );
            std::process::exit(2);
        }
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "steward-dtls benchmark on loopback: {cores} core(s) shared by the server AND the \
         webrtc-dtls clients (handshake runs: one process, one 2-worker tokio runtime; the \
         memory run puts the server in a child process); {concurrency} concurrent clients, \
         {seconds} s per run"
    );

    let mut psk_rate = None;
    let mut cert_rate = None;
    let mut mem = None;
    if psk {
        println!();
        println!("[psk] full handshake (TLS_PSK_WITH_AES_128_CCM_8) + 1 echo + close");
        psk_rate = Some(handshake_run(Kind::Psk, seconds, concurrency).await?);
    }
    if cert {
        println!();
        println!(
            "[cert] full handshake (TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, mutual P-256 certs) + 1 echo + close"
        );
        cert_rate = Some(handshake_run(Kind::Cert, seconds, concurrency).await?);
    }
    if memory {
        println!();
        println!("[memory] server in a child process; PSK sessions kept open");
        mem = Some(memory_run(concurrency.max(32)).await?);
    }

    println!();
    println!("== results ({cores} core(s), shared by server and clients) ==");
    if let Some(r) = psk_rate {
        println!(
            "PSK handshakes/s          : {r:>9.0}   (target {TARGET_PSK_PER_S:.0}/s, {:.0}%)",
            100.0 * r / TARGET_PSK_PER_S
        );
    }
    if let Some(r) = cert_rate {
        println!(
            "ECDHE-ECDSA handshakes/s  : {r:>9.0}   (target {TARGET_CERT_PER_S:.0}/s, {:.0}%)",
            100.0 * r / TARGET_CERT_PER_S
        );
    }
    if let Some(points) = mem {
        for p in points {
            println!(
                "memory per session @ {:>6}: {:>7.2} KiB   (target {TARGET_KIB_PER_SESSION:.0} KiB; \
                 RSS {} -> {} KiB, server metrics: {} sessions)",
                p.sessions, p.kib_per_session, p.rss_before_kib, p.rss_after_kib, p.server_sessions
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Credentials and configs

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Psk,
    Cert,
}

/// A CA, the server's certificate (chain) and one client certificate under it.
struct Pki {
    ca_der: Vec<u8>,
    server: ServerCertificate,
    client: Certificate,
}

fn make_pki() -> BoxResult<Pki> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "dtls-bench CA");
    let ca = ca_params.self_signed(&ca_key)?;

    let server_key = KeyPair::generate()?;
    let server_cert = CertificateParams::new(vec!["localhost".to_owned()])?.signed_by(
        &server_key,
        &ca,
        &ca_key,
    )?;

    let client_key = KeyPair::generate()?;
    let mut client_params = CertificateParams::new(Vec::<String>::new())?;
    client_params
        .distinguished_name
        .push(DnType::CommonName, "bench-client");
    let client_cert = client_params.signed_by(&client_key, &ca, &ca_key)?;

    Ok(Pki {
        ca_der: ca.der().to_vec(),
        server: ServerCertificate::from_der(
            vec![server_cert.der().to_vec(), ca.der().to_vec()],
            &server_key.serialize_der(),
        )?,
        client: Certificate {
            certificate: vec![CertificateDer::from(client_cert.der().to_vec())],
            private_key: CryptoPrivateKey::from_key_pair(&client_key)?,
        },
    })
}

fn server_config(idle_timeout: Duration) -> BoxResult<DtlsConfig> {
    let mut config = DtlsConfig::new("127.0.0.1:0".parse()?);
    config.idle_timeout = idle_timeout;
    config.max_handshakes = 1024;
    Ok(config)
}

fn psk_client_config() -> Config {
    Config {
        psk: Some(Arc::new(|_hint: &[u8]| Ok(PSK_KEY.to_vec()))),
        psk_identity_hint: Some(PSK_ID.to_vec()),
        cipher_suites: vec![CipherSuiteId::Tls_Psk_With_Aes_128_Ccm_8],
        extended_master_secret: ExtendedMasterSecretType::Request,
        flight_interval: Duration::from_millis(500),
        ..Config::default()
    }
}

fn cert_client_config(client: &Certificate) -> Config {
    Config {
        certificates: vec![client.clone()],
        cipher_suites: vec![CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_128_Ccm_8],
        // The client still checks the ServerKeyExchange signature; only the chain check
        // against a root store is skipped (the server's chain is not what is measured).
        insecure_skip_verify: true,
        extended_master_secret: ExtendedMasterSecretType::Request,
        flight_interval: Duration::from_millis(500),
        ..Config::default()
    }
}

/// Binds a server and starts an echo loop over its inbound datagrams.
fn echo_server(
    config: DtlsConfig,
    credentials: MemoryCredentials,
) -> BoxResult<(Arc<DtlsServer>, tokio::task::JoinHandle<()>)> {
    let (server, rx) = DtlsServer::bind(config, Arc::new(credentials))?;
    let server = Arc::new(server);
    let echo = tokio::spawn(echo_loop(Arc::downgrade(&server), rx));
    Ok((server, echo))
}

/// Sends every application datagram back on the session it came from. Holds only a weak
/// reference so the server can be shut down while this runs.
async fn echo_loop(server: std::sync::Weak<DtlsServer>, mut rx: mpsc::Receiver<Inbound>) {
    while let Some(inbound) = rx.recv().await {
        let Some(server) = server.upgrade() else {
            return;
        };
        // One task per reply: a write on a session that is closing must not hold up the
        // replies to every other session.
        tokio::spawn(async move {
            let _ = server.send(inbound.session, &inbound.datagram).await;
        });
    }
}

// ---------------------------------------------------------------------------------------
// One client round: socket, handshake, echo, (close)

async fn connect_and_echo(target: SocketAddr, config: Config) -> BoxResult<DTLSConn> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    socket.connect(target).await?;
    let conn = tokio::time::timeout(
        CLIENT_TIMEOUT,
        DTLSConn::new(Arc::new(socket), config, true, None),
    )
    .await
    .map_err(|_| "handshake timed out")??;
    conn.write(PAYLOAD, None).await?;
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(CLIENT_TIMEOUT, conn.read(&mut buf, None))
        .await
        .map_err(|_| "echo timed out")??;
    if &buf[..n] != PAYLOAD {
        return Err("echo mismatch".into());
    }
    Ok(conn)
}

// ---------------------------------------------------------------------------------------
// Handshake throughput

async fn handshake_run(kind: Kind, seconds: u64, concurrency: usize) -> BoxResult<f64> {
    let config = server_config(Duration::from_secs(60))?;
    let (server, echo, client_config) = match kind {
        Kind::Psk => {
            let creds = MemoryCredentials::new().with_psk(PSK_ID, PSK_KEY);
            let (server, echo) = echo_server(config, creds)?;
            (server, echo, psk_client_config())
        }
        Kind::Cert => {
            let pki = make_pki()?;
            let mut config = config;
            config.psk = false;
            config.certificate = Some(pki.server.clone());
            let creds = MemoryCredentials::new().with_chain_verifier(ChainVerifier::new(
                vec![pki.ca_der.clone()],
                Arc::new(StrictPolicy),
            ));
            let (server, echo) = echo_server(config, creds)?;
            (server, echo, cert_client_config(&pki.client))
        }
    };
    let target = server.local_addr();

    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (done, failed, stop) = (done.clone(), failed.clone(), stop.clone());
        let first_error = first_error.clone();
        let client_config = client_config.clone();
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match connect_and_echo(target, client_config.clone()).await {
                    Ok(conn) => {
                        let _ = conn.close().await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        let mut first = first_error.lock().unwrap_or_else(|p| p.into_inner());
                        first.get_or_insert_with(|| e.to_string());
                    }
                }
            }
        }));
    }

    let start = Instant::now();
    let (mut last_done, mut last_failed) = (0, 0);
    for s in 1..=seconds {
        tokio::time::sleep_until((start + Duration::from_secs(s)).into()).await;
        let (d, f) = (done.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
        let m = server.metrics();
        println!(
            "  t={s:>2}s {:>7} handshakes/s  failures {:>4}  server: sessions {:>4}, handshakes in progress {:>4}",
            d - last_done,
            f - last_failed,
            m.sessions,
            m.handshakes_in_progress
        );
        (last_done, last_failed) = (d, f);
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    let total = done.load(Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let m = server.metrics();
    println!(
        "  total {total} handshakes in {elapsed:.1} s, {} client failures; server: ok {}, failed {}, \
         timed out {}, cookies sent {}, datagrams dropped {}",
        failed.load(Ordering::Relaxed),
        m.handshakes_ok,
        m.handshakes_failed,
        m.handshakes_timed_out,
        m.cookies_sent,
        m.datagrams_dropped
    );
    if let Some(e) = first_error.lock().unwrap_or_else(|p| p.into_inner()).take() {
        println!("  first client error: {e}");
    }
    echo.abort();
    match Arc::try_unwrap(server) {
        Ok(server) => {
            server.shutdown().await;
        }
        Err(server) => drop(server),
    }
    Ok(total as f64 / elapsed)
}

// ---------------------------------------------------------------------------------------
// Memory per session

/// The child: a PSK echo server. Prints `port N`, then answers each `stats` line on stdin
/// with one `stats sessions=.. handshakes_ok=..` line; exits on EOF.
async fn serve() -> BoxResult<()> {
    let creds = MemoryCredentials::new().with_psk(PSK_ID, PSK_KEY);
    // Sessions must outlive the whole measurement.
    let (server, _echo) = echo_server(server_config(Duration::from_secs(3600))?, creds)?;
    let mut out = tokio::io::stdout();
    out.write_all(format!("port {}\n", server.local_addr().port()).as_bytes())
        .await?;
    out.flush().await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        if line.trim() == "stats" {
            let m = server.metrics();
            let reply = format!(
                "stats sessions={} handshakes_ok={} handshakes_failed={} in_progress={} tasks={}\n",
                m.sessions, m.handshakes_ok, m.handshakes_failed, m.handshakes_in_progress, m.tasks
            );
            out.write_all(reply.as_bytes()).await?;
            out.flush().await?;
        }
    }
    Ok(())
}

struct MemoryPoint {
    sessions: usize,
    server_sessions: u64,
    rss_before_kib: u64,
    rss_after_kib: u64,
    kib_per_session: f64,
}

/// Talks to the `serve` child over its stdin/stdout.
struct Child {
    child: tokio::process::Child,
    pid: u32,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Child {
    async fn spawn() -> BoxResult<(Child, u16)> {
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .arg("serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().ok_or("child has no pid")?;
        let stdin = child.stdin.take().ok_or("no child stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or("no child stdout")?).lines();
        let line = tokio::time::timeout(Duration::from_secs(10), stdout.next_line())
            .await
            .map_err(|_| "child did not print its port")??
            .ok_or("child exited")?;
        let port = line
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("unexpected child line {line:?}"))?;
        Ok((
            Child {
                child,
                pid,
                stdin,
                stdout,
            },
            port,
        ))
    }

    fn rss_kib(&self) -> BoxResult<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| "no VmRSS in /proc/<pid>/status".into())
    }

    /// The server's session count (and the whole line, for the log).
    async fn sessions(&mut self) -> BoxResult<(u64, String)> {
        self.stdin.write_all(b"stats\n").await?;
        self.stdin.flush().await?;
        let line = tokio::time::timeout(Duration::from_secs(10), self.stdout.next_line())
            .await
            .map_err(|_| "child did not answer stats")??
            .ok_or("child exited")?;
        let sessions = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("sessions="))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("unexpected child line {line:?}"))?;
        Ok((sessions, line))
    }

    /// Polls until the server reports `want` sessions (or a few seconds pass).
    async fn settle(&mut self, want: u64) -> BoxResult<(u64, String)> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (n, line) = self.sessions().await?;
            if n == want || Instant::now() > deadline {
                // Let the allocator and the session tasks come to rest before reading RSS.
                tokio::time::sleep(Duration::from_millis(300)).await;
                return Ok((n, line));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn memory_run(concurrency: usize) -> BoxResult<Vec<MemoryPoint>> {
    let (mut child, port) = Child::spawn().await?;
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    println!(
        "  server child pid {}, port {port}; clients: {concurrency} concurrent handshakes",
        child.pid
    );

    // Warm-up: a few sessions opened and closed, so one-time allocations (runtime, socket
    // buffers, lazily built tables) are in the baseline rather than in the first step.
    let mut warm = Vec::new();
    establish(target, 32, concurrency, &mut warm, Duration::from_secs(30)).await;
    for conn in warm.drain(..) {
        let _ = conn.close().await;
    }
    let (n, _) = child.settle(0).await?;
    let rss_before = child.rss_kib()?;
    println!("  baseline: VmRSS {rss_before} KiB with {n} sessions (after a 32-session warm-up)");

    let mut held: Vec<DTLSConn> = Vec::new();
    let mut points = Vec::new();
    for step in MEMORY_STEPS {
        let want = step - held.len();
        let (reached, error) =
            establish(target, want, concurrency, &mut held, MEMORY_STEP_BUDGET).await;
        let (server_sessions, line) = child.settle(held.len() as u64).await?;
        let rss_after = child.rss_kib()?;
        let count = held.len();
        if reached < want {
            println!(
                "  could not reach {step} sessions: stopped at {count}{}",
                error
                    .map(|e| format!(" (first error: {e})"))
                    .unwrap_or_default()
            );
        }
        if count == 0 {
            break;
        }
        let kib = rss_after.saturating_sub(rss_before) as f64 / count as f64;
        println!(
            "  {count} sessions: VmRSS {rss_after} KiB, {kib:.2} KiB/session; child says: {line}"
        );
        points.push(MemoryPoint {
            sessions: count,
            server_sessions,
            rss_before_kib: rss_before,
            rss_after_kib: rss_after,
            kib_per_session: kib,
        });
        if reached < want {
            break;
        }
    }
    drop(held);
    drop(child.stdin);
    let _ = child.child.kill().await;
    Ok(points)
}

/// Establishes up to `count` more sessions (each on its own UDP socket, each proven by
/// one echo) with `concurrency` handshakes in flight, and appends them to `held`.
/// Returns how many were added and the first error, if the budget ran out or sockets did.
async fn establish(
    target: SocketAddr,
    count: usize,
    concurrency: usize,
    held: &mut Vec<DTLSConn>,
    budget: Duration,
) -> (usize, Option<String>) {
    let remaining = Arc::new(AtomicU64::new(count as u64));
    let added = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let fatal = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let deadline = Instant::now() + budget;
    let config = psk_client_config();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.min(count) {
        let (remaining, added, fatal) = (remaining.clone(), added.clone(), fatal.clone());
        let (failures, first_error, config) =
            (failures.clone(), first_error.clone(), config.clone());
        tasks.push(tokio::spawn(async move {
            while !fatal.load(Ordering::Relaxed) && Instant::now() < deadline {
                // Claim one session to make.
                if remaining
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1))
                    .is_err()
                {
                    return;
                }
                match connect_and_echo(target, config.clone()).await {
                    Ok(conn) => added.lock().unwrap_or_else(|p| p.into_inner()).push(conn),
                    Err(e) => {
                        remaining.fetch_add(1, Ordering::Relaxed);
                        let text = e.to_string();
                        // Out of file descriptors or ports: more attempts will not help.
                        if text.contains("Too many open files")
                            || text.contains("Address already in use")
                            || text.contains("Cannot assign requested address")
                            || failures.fetch_add(1, Ordering::Relaxed) > 100
                        {
                            fatal.store(true, Ordering::Relaxed);
                        }
                        first_error
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(text);
                    }
                }
            }
        }));
    }
    let start = Instant::now();
    let base = held.len();
    let mut tick = 1;
    loop {
        let all_done = tasks.iter().all(|t| t.is_finished());
        if all_done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if start.elapsed() >= Duration::from_secs(tick) {
            let n = added.lock().unwrap_or_else(|p| p.into_inner()).len();
            println!(
                "  t={tick:>3}s {:>6} sessions established ({} failures)",
                base + n,
                failures.load(Ordering::Relaxed)
            );
            tick += 1;
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut added = std::mem::take(&mut *added.lock().unwrap_or_else(|p| p.into_inner()));
    let n = added.len();
    held.append(&mut added);
    let error = first_error.lock().unwrap_or_else(|p| p.into_inner()).take();
    (n, error)
}
