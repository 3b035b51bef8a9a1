//! `steward-client bench`: figures for issue 4 item 6, printed with the core count and the
//! targets beside them (never asserted: they depend on the machine).
//!
//! 1. Registration throughput: a `steward serve --allow-unsecured` child process on a fresh
//!    temporary data directory (durability on, as by default: every 2.01/2.04/2.02 waits for
//!    the store's fsync), and a [`Fleet`] in this process registering N devices, then
//!    updating each, then de-registering each, with a cap on operations in flight (a closed
//!    loop: the figure is what the server sustains, not how fast the kernel drops a burst).
//! 2. Memory per registered idle device: the child's VmRSS (`/proc/<pid>/status`) before the
//!    fleet starts and once N devices are registered, the difference divided by N.
//! 3. Notifications per second: `steward serve` has no management API over the network yet,
//!    so this is measured at the CoAP level: an in-process observer (a `steward_coap` stack on
//!    a UDP socket) answers registrations, observes `/3/0/13` with `pmin=0` on K devices, the
//!    fleet changes that resource as fast as asked, and the observer counts the notifications
//!    it receives. Observer and fleet share this process and its cores.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path as FsPath, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use steward_client::fleet::{
    Fleet, FleetConfig, FleetError, Op, Summary, raise_file_limit, socket_capacity,
};
use steward_coap::endpoint::{Event, RequestId};
use steward_coap::message::{Code, Method, Request, Response, encode_uint, option};
use steward_coap::stack::{Stack, StackConfig};
use steward_objects::{Path, Version};
use steward_transport::udp::{self, UdpConfig};

use crate::fleet_cmd::{ALL_REGISTERED, progress_bar, show};

const TARGET_REGISTRATIONS: f64 = 20_000.0;
const TARGET_BYTES_PER_REGISTRATION: f64 = 1024.0;
const TARGET_NOTIFICATIONS: f64 = 100_000.0;
/// A phase that makes no progress for this long is reported as stalled, not waited for.
const STALL: Duration = Duration::from_secs(30);
/// How long the child gets to answer its first datagram.
const STARTUP: Duration = Duration::from_secs(20);

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The `steward` binary to run (default: next to this one).
    #[arg(long)]
    steward: Option<PathBuf>,
    /// Devices for the registration and memory figures.
    #[arg(long, default_value_t = 100_000)]
    count: usize,
    /// Cap on registration operations awaiting an answer.
    #[arg(long, default_value_t = 2000)]
    max_in_flight: usize,
    /// Pace registrations (devices/s; 0: only the in-flight cap).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Observed devices for the notification figure (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    observers: usize,
    /// Resource changes per second asked of the fleet in the notification figure.
    #[arg(long, default_value_t = 200_000.0)]
    notify_rate: f64,
    /// Seconds the notification figure is measured over.
    #[arg(long, default_value_t = 5)]
    notify_seconds: u64,
    /// Skip the figures that need the `steward serve` child.
    #[arg(long)]
    skip_serve: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error("cannot find the steward binary next to {0}; pass --steward PATH")]
    NoSteward(PathBuf),
    #[error("cannot start {}: {source}", path.display())]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("steward serve did not answer within {STARTUP:?}; its log: {}", log.display())]
    NotReady { log: PathBuf },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> BenchError {
    move |source| BenchError::Io { what, source }
}

pub async fn run(args: BenchArgs) -> Result<(), BenchError> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let capacity = match raise_file_limit(args.count.max(args.observers)) {
        Ok(_) => usize::MAX,
        Err(e) => {
            // Without CAP_SYS_RESOURCE the hard limit stays: helper processes make up the rest.
            let capacity = socket_capacity();
            println!("note: {e}");
            println!(
                "note: {capacity} device sockets per process; helper `steward-client fleet` \
                 processes register the other devices"
            );
            raise_file_limit(capacity)?;
            capacity
        }
    };
    println!(
        "steward-client bench: {cores} core(s), {} (release build: {})",
        std::env::consts::ARCH,
        !cfg!(debug_assertions)
    );
    if !args.skip_serve {
        serve_figures(&args, cores, capacity).await?;
    }
    if args.observers > 0 {
        notify_figure(&args, cores, capacity).await?;
    }
    Ok(())
}

/// Figures 1 and 2, against a `steward serve` child.
async fn serve_figures(args: &BenchArgs, cores: usize, capacity: usize) -> Result<(), BenchError> {
    let steward = match &args.steward {
        Some(p) => p.clone(),
        None => {
            let me = std::env::current_exe().map_err(io("locating this binary"))?;
            let sibling = me.with_file_name("steward");
            if !sibling.exists() {
                return Err(BenchError::NoSteward(me));
            }
            sibling
        }
    };
    let dir = TempDir::new("bench")?;
    let server = Server::start(&steward, dir.path()).await?;
    let rss_before = server.rss_kib();
    println!(
        "steward serve pid {} on {} (data dir {}), VmRSS {} KiB",
        server.child.id(),
        server.addr,
        dir.path().display(),
        rss_before.unwrap_or(0)
    );

    // Devices beyond what this process can hold register first, from helper processes, and
    // stay registered idle (long lifetime) while this process's fleet is measured.
    let n = args.count.min(capacity);
    let helped = args.count - n;
    let helpers = if helped > 0 {
        let started = Instant::now();
        let helpers = Helpers::start(server.addr, helped, capacity, args.max_in_flight)?;
        let ok = helpers.wait(Duration::from_secs(600)).await;
        println!(
            "helpers: {} of {} processes registered their {helped} devices in {:.1} s",
            ok,
            helpers.children.len(),
            started.elapsed().as_secs_f64()
        );
        Some(helpers)
    } else {
        None
    };
    let mut config = FleetConfig::new(server.addr, n);
    config.first = helped;
    config.prefix = "bench".into();
    config.rate = args.rate;
    config.max_in_flight = args.max_in_flight;
    // Long lifetime: no periodic Update may mix into the measured phases.
    config.lifetime = 86_400;
    let fleet = Fleet::start(config)?;
    let bar = progress_bar(n);
    let stats = Arc::clone(fleet.stats());
    let want = u64::try_from(n).unwrap_or(u64::MAX);

    let register = phase(
        &bar,
        &fleet,
        || stats.registered.load(Ordering::Relaxed),
        want,
    )
    .await;
    // Let the writer's last group commit and the allocator settle before sampling.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = server.rss_kib();
    let registered = stats.registered.load(Ordering::Relaxed);
    let all_registered = registered + u64::try_from(helped).unwrap_or(0);

    let updates_before = stats.ok(Op::Update);
    fleet.update_all();
    let update = phase(
        &bar,
        &fleet,
        || stats.ok(Op::Update).saturating_sub(updates_before),
        registered,
    )
    .await;

    fleet.deregister_all();
    let deregister = phase(
        &bar,
        &fleet,
        || registered.saturating_sub(stats.registered.load(Ordering::Relaxed)),
        registered,
    )
    .await;
    bar.finish_and_clear();
    let summary = fleet.stop().await?;
    drop(helpers);
    drop(server);

    println!();
    println!(
        "== registration throughput, loopback, durability on ({cores} cores, client and server share them)"
    );
    println!(
        "   in-flight cap {}, {n} devices in this process{}",
        args.max_in_flight,
        if helped > 0 {
            format!(" (the server holds {helped} more, idle, from helper processes)")
        } else {
            String::new()
        }
    );
    report_rate("Register", register, TARGET_REGISTRATIONS);
    report_rate("Update", update, TARGET_REGISTRATIONS);
    report_rate("Deregister", deregister, TARGET_REGISTRATIONS);
    let (done, took) = [register, update, deregister]
        .iter()
        .fold((0, Duration::ZERO), |(d, t), p| (d + p.done, t + p.took));
    report_rate(
        "all three",
        Phase {
            done,
            took,
            stalled: false,
        },
        TARGET_REGISTRATIONS,
    );
    println!();
    println!("== memory per registered idle device ({cores} cores)");
    match (rss_before, rss_after) {
        (Some(before), Some(after)) if all_registered > 0 => {
            #[allow(clippy::cast_precision_loss)] // KiB and device counts fit f64 exactly
            let per = (after.saturating_sub(before) as f64 * 1024.0) / all_registered as f64;
            println!(
                "   server VmRSS {before} KiB -> {after} KiB with {all_registered} registered: \
                 {per:.0} bytes per registration (target {TARGET_BYTES_PER_REGISTRATION:.0})"
            );
        }
        _ => println!("   VmRSS not available (no /proc, or nothing registered)"),
    }
    println!();
    print_summary(&summary);
    Ok(())
}

fn print_summary(summary: &Summary) {
    println!("== fleet summary (latency per attempt, from send to answer)");
    for line in summary.to_string().lines() {
        println!("   {line}");
    }
}

#[derive(Debug, Clone, Copy)]
struct Phase {
    done: u64,
    took: Duration,
    stalled: bool,
}

/// Waits until `progress()` reaches `want` or stops moving for [`STALL`].
async fn phase(
    bar: &indicatif::ProgressBar,
    fleet: &Fleet,
    progress: impl Fn() -> u64,
    want: u64,
) -> Phase {
    let start = Instant::now();
    let mut last = (0, Instant::now());
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let mut shown = Instant::now();
    loop {
        tick.tick().await;
        let done = progress();
        let now = Instant::now();
        if now.duration_since(shown) > Duration::from_millis(200) {
            show(bar, fleet);
            shown = now;
        }
        if done >= want {
            return Phase {
                done,
                took: now.duration_since(start),
                stalled: false,
            };
        }
        if done != last.0 {
            last = (done, now);
        } else if now.duration_since(last.1) > STALL {
            return Phase {
                done,
                took: last.1.duration_since(start),
                stalled: true,
            };
        }
    }
}

fn report_rate(what: &str, p: Phase, target: f64) {
    let secs = p.took.as_secs_f64().max(1e-9);
    #[allow(clippy::cast_precision_loss)]
    let rate = p.done as f64 / secs;
    println!(
        "   {what:<11} {:>7} in {:>7.2} s = {:>8.0} /s   (target {target:.0} /s){}",
        p.done,
        secs,
        rate,
        if p.stalled { "  STALLED" } else { "" }
    );
}

/// Figure 3: notifications per second at the CoAP level (see the module docs).
async fn notify_figure(args: &BenchArgs, cores: usize, capacity: usize) -> Result<(), BenchError> {
    let observer = Observer::start()?;
    let k = args.observers.min(capacity);
    let mut config = FleetConfig::new(observer.addr, k);
    config.prefix = "notify".into();
    // 1.2: attributes in the Observe query are attached to the observation.
    config.lwm2m = Version::V1_2;
    config.lifetime = 86_400;
    config.max_in_flight = args.max_in_flight;
    let fleet = Fleet::start(config)?;
    let bar = progress_bar(k);
    let want = u64::try_from(k).unwrap_or(u64::MAX);
    let counts = Arc::clone(&observer.counts);
    let established = phase(
        &bar,
        &fleet,
        || counts.observing.load(Ordering::Relaxed),
        want,
    )
    .await;
    bar.finish_and_clear();
    let path = Path::Resource(3, 0, 13);
    let received_before = counts.notifications.load(Ordering::Relaxed);
    let sent_before = fleet.stats().notifications.load(Ordering::Relaxed);
    let start = Instant::now();
    fleet.stimulate(path, args.notify_rate);
    tokio::time::sleep(Duration::from_secs(args.notify_seconds)).await;
    fleet.stop_stimulus();
    let took = start.elapsed().as_secs_f64();
    let sent = fleet
        .stats()
        .notifications
        .load(Ordering::Relaxed)
        .saturating_sub(sent_before);
    // Notifications still on the wire count for the window they were sent in.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let received = counts
        .notifications
        .load(Ordering::Relaxed)
        .saturating_sub(received_before);
    let summary = fleet.stop().await?;
    println!();
    println!(
        "== notifications/s at the CoAP level ({cores} cores; observer and {k} devices in this process)"
    );
    println!(
        "   {} of {k} observations established{}",
        established.done,
        if established.stalled {
            " (stalled)"
        } else {
            ""
        }
    );
    #[allow(clippy::cast_precision_loss)]
    let (sent_rate, received_rate) = (sent as f64 / took, received as f64 / took);
    println!(
        "   asked {:.0} changes/s for {took:.1} s: devices sent {sent} ({sent_rate:.0} /s), \
         observer received {received} ({received_rate:.0} /s)   (target {TARGET_NOTIFICATIONS:.0} /s)",
        args.notify_rate
    );
    println!(
        "   NON notifications (the stack default); lost = sent - received = {}",
        sent.saturating_sub(received)
    );
    println!();
    print_summary(&summary);
    observer.handle.shutdown();
    Ok(())
}

/// Counters of the in-process observer.
#[derive(Default)]
struct ObserverCounts {
    observing: AtomicU64,
    notifications: AtomicU64,
}

/// A minimal LwM2M server for the notification figure: registers anyone, observes
/// `/3/0/13?pmin=0` on each, counts notifications.
struct Observer {
    addr: SocketAddr,
    counts: Arc<ObserverCounts>,
    handle: steward_transport::Handle<Stack<SocketAddr>>,
}

impl Observer {
    fn start() -> Result<Observer, BenchError> {
        let (socket, _) = udp::bind(&UdpConfig {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            recv_buffer: 4 << 20,
            send_buffer: 4 << 20,
        })
        .map_err(io("binding the observer"))?;
        let counts = Arc::new(ObserverCounts::default());
        let seen = Arc::clone(&counts);
        // Observation id -> the initial response came already.
        let mut observations: HashMap<RequestId, bool> = HashMap::new();
        let mut next_location = 0u64;
        let stack = Stack::new(StackConfig::default());
        let (handle, _task) = udp::spawn(socket, stack, move |stack, now, event| match event {
            Event::Request { id, request } => {
                let path = request.path_string();
                let response = match request.method {
                    Method::Post if path == "/rd" => {
                        next_location += 1;
                        Response::new(Code::CREATED)
                            .with_option(option::LOCATION_PATH, b"rd".to_vec())
                            .with_option(
                                option::LOCATION_PATH,
                                next_location.to_string().into_bytes(),
                            )
                    }
                    Method::Post if path.starts_with("/rd/") => Response::new(Code::CHANGED),
                    Method::Delete if path.starts_with("/rd/") => Response::new(Code::DELETED),
                    _ => Response::new(Code::NOT_FOUND),
                };
                let created = response.code == Code::CREATED;
                let peer = id.peer();
                // The request is pending in the stack: NotPending cannot happen here.
                let _ = stack.respond(now, id, response);
                if created {
                    let observe = Request::new(Method::Get)
                        .with_path("/3/0/13")
                        .with_query("pmin=0")
                        .with_option(option::OBSERVE, encode_uint(0));
                    let oid = stack.request(now, peer, observe, true);
                    observations.insert(oid, false);
                }
            }
            Event::Response { id, response, .. } => {
                if let Some(first_seen) = observations.get_mut(&id)
                    && response.code.is_success()
                {
                    if *first_seen {
                        seen.notifications.fetch_add(1, Ordering::Relaxed);
                    } else {
                        *first_seen = true;
                        seen.observing.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Event::Failed { .. } | Event::ObserveEnded { .. } => {}
        })
        .map_err(io("starting the observer"))?;
        Ok(Observer {
            addr: handle.local,
            counts,
            handle,
        })
    }
}

/// `steward-client fleet` processes holding the devices beyond this process's socket limit;
/// killed on drop (their registrations stay on the server until it stops).
struct Helpers {
    children: Vec<Child>,
    registered: Arc<AtomicU64>,
}

impl Helpers {
    fn start(
        server: SocketAddr,
        count: usize,
        per_process: usize,
        max_in_flight: usize,
    ) -> Result<Helpers, BenchError> {
        let me = std::env::current_exe().map_err(io("locating this binary"))?;
        let registered = Arc::new(AtomicU64::new(0));
        let mut helpers = Helpers {
            children: Vec::new(),
            registered: Arc::clone(&registered),
        };
        let mut first = 0;
        while first < count {
            let n = per_process.min(count - first).max(1);
            let mut child = std::process::Command::new(&me)
                .args([
                    "fleet",
                    "--prefix",
                    "bench",
                    "--rate",
                    "0",
                    "--lifetime",
                    "86400",
                ])
                .arg("--server")
                .arg(server.to_string())
                .arg("--count")
                .arg(n.to_string())
                .arg("--first")
                .arg(first.to_string())
                .arg("--max-in-flight")
                .arg(max_in_flight.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|source| BenchError::Spawn {
                    path: me.clone(),
                    source,
                })?;
            if let Some(out) = child.stdout.take() {
                let registered = Arc::clone(&registered);
                // A plain thread: it only reads lines until the child ends.
                std::thread::spawn(move || {
                    use std::io::BufRead;
                    for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                        if line.starts_with(ALL_REGISTERED) {
                            registered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
            helpers.children.push(child);
            first += n;
        }
        Ok(helpers)
    }

    /// Waits until every helper reported all its devices registered, or `limit`; returns how
    /// many did.
    async fn wait(&self, limit: Duration) -> u64 {
        let want = u64::try_from(self.children.len()).unwrap_or(u64::MAX);
        let deadline = Instant::now() + limit;
        while self.registered.load(Ordering::Relaxed) < want && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.registered.load(Ordering::Relaxed)
    }
}

impl Drop for Helpers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `steward serve` child; killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    async fn start(steward: &FsPath, dir: &FsPath) -> Result<Server, BenchError> {
        let coap = free_port()?;
        let coaps = free_port()?;
        let log_path = dir.join("steward.log");
        let log = std::fs::File::create(&log_path).map_err(io("creating the server log"))?;
        let err = log.try_clone().map_err(io("creating the server log"))?;
        let child = std::process::Command::new(steward)
            .args(["serve", "--allow-unsecured", "--bind", "127.0.0.1"])
            .arg("--coap-port")
            .arg(coap.to_string())
            .arg("--coaps-port")
            .arg(coaps.to_string())
            // The bootstrap and HTTP listeners are not measured here: free ports.
            .args([
                "--bs-coap-port",
                "0",
                "--bs-coaps-port",
                "0",
                "--http-port",
                "0",
            ])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|source| BenchError::Spawn {
                path: steward.to_path_buf(),
                source,
            })?;
        let server = Server {
            child,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, coap)),
        };
        if !answers(server.addr).await {
            return Err(BenchError::NotReady { log: log_path });
        }
        Ok(server)
    }

    /// VmRSS in KiB, from `/proc/<pid>/status`.
    fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Nothing to keep: the data directory is thrown away.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True once something at `addr` answers a CoAP ping (an empty CON: the answer is a Reset).
async fn answers(addr: SocketAddr) -> bool {
    let Ok(socket) = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await else {
        return false;
    };
    let deadline = Instant::now() + STARTUP;
    let mut buf = [0u8; 64];
    let mut mid: u16 = 1;
    while Instant::now() < deadline {
        let [hi, lo] = mid.to_be_bytes();
        mid = mid.wrapping_add(1);
        // Version 1, CON, no token, code 0.00 (empty), message ID.
        let _ = socket.send_to(&[0x40, 0x00, hi, lo], addr).await;
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(200), socket.recv_from(&mut buf)).await
        {
            return true;
        }
    }
    false
}

/// A port free right now (the child binds it a moment later; a clash fails loudly).
fn free_port() -> Result<u16, BenchError> {
    let socket =
        std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io("finding a free port"))?;
    Ok(socket
        .local_addr()
        .map_err(io("finding a free port"))?
        .port())
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Result<TempDir, BenchError> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir =
            std::env::temp_dir().join(format!("steward-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(io("creating the data directory"))?;
        Ok(TempDir(dir))
    }

    fn path(&self) -> &FsPath {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
