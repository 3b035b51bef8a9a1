//! Fleet mode: many simulated devices from one process, without a task per device.
//!
//! Devices are split over a few *shards*; each shard is one tokio task that owns its devices'
//! [`Client`]s and UDP sockets (one socket per device: the server tells devices apart by their
//! source address). A shard waits on three things at once:
//!
//! - socket readiness, as a `FuturesUnordered` of `readable()` futures, one per device: only
//!   the sockets that became readable are polled, so 50k idle sockets cost nothing per wake-up;
//!   a ready socket is drained with `try_recv_from` (which clears tokio's readiness) and
//!   re-armed;
//! - a timer heap of each device's next deadline (`Client::poll_timeout`), with lazy deletion:
//!   an entry is live only while it equals the wake-up the device slot records;
//! - its command channel (update all, deregister all, stimulate observations, stop).
//!
//! Work the fleet starts itself (the initial Register of the ramp-up, and bulk Updates and
//! De-registers) goes through a per-shard queue paced by a token bucket (`rate`) and a cap on
//! operations in flight, so a benchmark measures the server rather than the kernel dropping a
//! burst of 100k datagrams.
//!
//! Latency is timed from the moment the registration request is handed to the socket (read
//! from [`Registration::in_flight`]) to the event that ends it, per attempt: a Register that
//! times out and is retried counts one failure and, later, one success.
//!
//! [`Registration::in_flight`]: crate::registration::Registration::in_flight

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use steward_coap::endpoint::Config as EndpointConfig;
use steward_coap::stack::StackConfig;
use steward_objects::{Path, Value, Version};
use steward_transport::udp::{self, UdpConfig};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::registration::{RegistrationEvent, RequestKind};
use crate::{Client, DeviceConfig, DeviceEvent};

/// Devices bound to one loopback source address at most: below the default ephemeral port
/// range (32768–60999, 28k ports), so binding port 0 never runs out.
const DEVICES_PER_SOURCE_IP: usize = 20_000;
/// Datagrams read from one ready socket before the others get their turn.
const RECV_BATCH: usize = 16;
/// Ready sockets served per wake-up before timers and commands are looked at again.
const READY_BATCH: usize = 512;
/// Largest datagram a device accepts (CoAP over UDP stays far below).
const MAX_DATAGRAM: usize = 2048;
/// Timers further away than this get jitter; nearer ones are CoAP retransmissions and
/// exchanges, whose timing the stack already randomises.
const JITTER_FROM: Duration = Duration::from_secs(5);
/// File descriptors kept for everything that is not a device socket (runtime, stdio, a child).
const SPARE_FDS: u64 = 1024;

/// How a fleet runs.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub server: SocketAddr,
    pub count: usize,
    /// Index of the first device: several processes make up one larger fleet (one process
    /// holds as many sockets as RLIMIT_NOFILE allows) with distinct names and addresses.
    pub first: usize,
    /// Endpoint names are `{prefix}-{index}`.
    pub prefix: String,
    pub lwm2m: Version,
    pub lifetime: u32,
    pub queue_mode: bool,
    /// Operations the fleet starts itself (Register at ramp-up, bulk Update and De-register)
    /// per second over the whole fleet; 0 means as fast as `max_in_flight` allows.
    pub rate: f64,
    /// Cap on such operations awaiting an answer, over the whole fleet; 0 means no cap.
    pub max_in_flight: usize,
    /// Largest delay added to long timers (periodic Updates), so devices that registered in
    /// the same second do not update in the same second forever after.
    pub jitter: Duration,
    /// Worker tasks; 0 means one per available core.
    pub shards: usize,
    /// Per-socket buffers to ask for (small: 100k sockets).
    pub socket_buffer: usize,
}

impl FleetConfig {
    pub fn new(server: SocketAddr, count: usize) -> FleetConfig {
        FleetConfig {
            server,
            count,
            first: 0,
            prefix: "steward-sim".to_owned(),
            lwm2m: Version::V1_1,
            lifetime: 300,
            queue_mode: false,
            rate: 0.0,
            max_in_flight: 0,
            jitter: Duration::from_secs(10),
            shards: 0,
            socket_buffer: 16 << 10,
        }
    }
}

/// Why a fleet could not start.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(
        "cannot raise the open-file limit (RLIMIT_NOFILE) to {wanted} for {devices} device \
         sockets: soft {soft}, hard {hard}: {reason}. Raising the hard limit needs \
         CAP_SYS_RESOURCE (root usually has it; some containers drop it), or raise it first \
         (`ulimit -n {wanted}`), or split the fleet over processes (--count and --first)"
    )]
    FileLimit {
        wanted: u64,
        devices: usize,
        soft: u64,
        hard: u64,
        reason: String,
    },
    #[error(
        "{count} devices need {count} source ports, more than one address offers \
         ({DEVICES_PER_SOURCE_IP} per address); against a loopback server the fleet spreads \
         over 127.0.0.x, elsewhere run fewer devices per process"
    )]
    TooManyDevices { count: usize },
    #[error("fleet worker {0} failed")]
    Shard(usize),
}

/// Raises RLIMIT_NOFILE (soft, and hard when allowed: root may) so `sockets` more descriptors
/// fit. Returns the soft limit in force.
pub fn raise_file_limit(sockets: usize) -> Result<u64, FleetError> {
    let wanted = u64::try_from(sockets)
        .unwrap_or(u64::MAX)
        .saturating_add(SPARE_FDS);
    let (soft, hard) = rlimit::Resource::NOFILE
        .get()
        .map_err(|e| FleetError::FileLimit {
            wanted,
            devices: sockets,
            soft: 0,
            hard: 0,
            reason: e.to_string(),
        })?;
    if soft >= wanted {
        return Ok(soft);
    }
    let fail = |reason: String| FleetError::FileLimit {
        wanted,
        devices: sockets,
        soft,
        hard,
        reason,
    };
    let new_hard = hard.max(wanted);
    rlimit::Resource::NOFILE
        .set(wanted, new_hard)
        .map_err(|e| fail(e.to_string()))?;
    Ok(wanted)
}

/// How many device sockets this process can open: the hard RLIMIT_NOFILE (which only a
/// process with CAP_SYS_RESOURCE can raise) less the spare descriptors.
pub fn socket_capacity() -> usize {
    rlimit::Resource::NOFILE.get().map_or(0, |(_, hard)| {
        usize::try_from(hard.saturating_sub(SPARE_FDS)).unwrap_or(usize::MAX)
    })
}

/// Which registration operation a figure is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Register,
    Update,
    Deregister,
}

impl Op {
    pub const ALL: [Op; 3] = [Op::Register, Op::Update, Op::Deregister];

    fn index(self) -> usize {
        match self {
            Op::Register => 0,
            Op::Update => 1,
            Op::Deregister => 2,
        }
    }

    fn of(kind: RequestKind) -> Op {
        match kind {
            RequestKind::Register => Op::Register,
            RequestKind::Update => Op::Update,
            RequestKind::Deregister => Op::Deregister,
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Op::Register => "Register",
            Op::Update => "Update",
            Op::Deregister => "Deregister",
        })
    }
}

/// Live counters, read by progress bars and benchmarks while the fleet runs.
#[derive(Debug, Default)]
pub struct Stats {
    /// Devices whose Register was sent at least once.
    pub started: AtomicU64,
    /// Devices registered right now.
    pub registered: AtomicU64,
    /// Fleet-started operations awaiting an answer.
    pub in_flight: AtomicU64,
    ok: [AtomicU64; 3],
    failed: [AtomicU64; 3],
    /// Notifications the devices sent.
    pub notifications: AtomicU64,
    /// DM requests the devices answered.
    pub served: AtomicU64,
    /// Datagrams the kernel would not take (full send buffer); CoAP retransmits them.
    pub send_dropped: AtomicU64,
}

impl Stats {
    pub fn ok(&self, op: Op) -> u64 {
        self.ok[op.index()].load(Ordering::Relaxed)
    }
    pub fn failed(&self, op: Op) -> u64 {
        self.failed[op.index()].load(Ordering::Relaxed)
    }
    pub fn failures(&self) -> u64 {
        Op::ALL.iter().map(|op| self.failed(*op)).sum()
    }
}

/// Latency percentiles of one operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Percentiles {
    pub count: usize,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Percentiles {
    fn of(samples: &mut [u32]) -> Percentiles {
        samples.sort_unstable();
        let at = |q: f64| -> Duration {
            // Nearest rank; the casts stay in range because q is in [0, 1].
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let rank = ((samples.len() as f64 * q).ceil() as usize).saturating_sub(1);
            samples
                .get(rank)
                .map_or(Duration::ZERO, |us| Duration::from_micros(u64::from(*us)))
        };
        Percentiles {
            count: samples.len(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// What a fleet did, once stopped.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub devices: usize,
    pub ok: BTreeMap<Op, u64>,
    pub failures: BTreeMap<String, u64>,
    pub latency: BTreeMap<Op, Percentiles>,
    pub notifications: u64,
    pub served: u64,
    pub send_dropped: u64,
    pub elapsed: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} devices, {:.1} s",
            self.devices,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "{:<11} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10}",
            "operation", "ok", "failed", "p50", "p90", "p99", "max"
        )?;
        for op in Op::ALL {
            let failed: u64 = self
                .failures
                .iter()
                .filter(|(reason, _)| reason.starts_with(&op.to_string()))
                .map(|(_, n)| n)
                .sum();
            let p = self.latency.get(&op).copied().unwrap_or_default();
            writeln!(
                f,
                "{:<11} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10}",
                op.to_string(),
                self.ok.get(&op).copied().unwrap_or(0),
                failed,
                ms(p.p50),
                ms(p.p90),
                ms(p.p99),
                ms(p.max)
            )?;
        }
        if self.failures.is_empty() {
            writeln!(f, "no failures")?;
        } else {
            writeln!(f, "failures by reason:")?;
            for (reason, n) in &self.failures {
                writeln!(f, "  {reason}: {n}")?;
            }
        }
        write!(
            f,
            "notifications sent {}, requests served {}, datagrams dropped by a full send buffer {}",
            self.notifications, self.served, self.send_dropped
        )
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Orders to the shards.
#[derive(Debug, Clone, Copy)]
enum Command {
    /// Every registered device sends an Update (paced like the ramp-up).
    UpdateAll,
    /// Every device de-registers (paced like the ramp-up).
    DeregisterAll,
    /// Set a resource to a new value on every device, `rate` devices per second over the
    /// fleet, until `Stimulate(None)`: observations of it notify.
    Stimulate(Option<(Path, f64)>),
    Stop,
}

/// A running fleet; see the module docs.
pub struct Fleet {
    stats: Arc<Stats>,
    commands: Vec<mpsc::UnboundedSender<Command>>,
    shards: Vec<JoinHandle<ShardRecord>>,
    devices: usize,
    started: Instant,
}

impl Fleet {
    /// Starts the shards on the current tokio runtime; devices register as the ramp allows.
    /// Raise the file limit first ([`raise_file_limit`]).
    pub fn start(config: FleetConfig) -> Result<Fleet, FleetError> {
        let loopback = config.server.ip().is_loopback();
        if !loopback && config.first + config.count > DEVICES_PER_SOURCE_IP {
            return Err(FleetError::TooManyDevices {
                count: config.first + config.count,
            });
        }
        let shards = if config.shards == 0 {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        } else {
            config.shards
        }
        .clamp(1, config.count.max(1));
        let stats = Arc::new(Stats::default());
        let config = Arc::new(config);
        let mut commands = Vec::with_capacity(shards);
        let mut handles = Vec::with_capacity(shards);
        for shard in 0..shards {
            let (tx, rx) = mpsc::unbounded_channel();
            let worker = Shard::new(shard, shards, Arc::clone(&config), Arc::clone(&stats), rx);
            handles.push(tokio::spawn(worker.run()));
            commands.push(tx);
        }
        Ok(Fleet {
            stats,
            commands,
            shards: handles,
            devices: config.count,
            started: Instant::now(),
        })
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    pub fn devices(&self) -> usize {
        self.devices
    }

    fn send(&self, command: Command) {
        for tx in &self.commands {
            // A shard that ended has nothing left to order.
            let _ = tx.send(command);
        }
    }

    /// Every registered device sends a registration Update.
    pub fn update_all(&self) {
        self.send(Command::UpdateAll);
    }

    /// Every device de-registers.
    pub fn deregister_all(&self) {
        self.send(Command::DeregisterAll);
    }

    /// Changes `path` on every device in turn, `rate` changes per second over the fleet, until
    /// [`Fleet::stop_stimulus`]. The value is a fresh integer (or time) each time.
    pub fn stimulate(&self, path: Path, rate: f64) {
        self.send(Command::Stimulate(Some((path, rate))));
    }

    pub fn stop_stimulus(&self) {
        self.send(Command::Stimulate(None));
    }

    /// Stops the shards (sockets close; nothing is de-registered) and sums up.
    pub async fn stop(self) -> Result<Summary, FleetError> {
        self.send(Command::Stop);
        let mut record = ShardRecord::default();
        for (i, shard) in self.shards.into_iter().enumerate() {
            let r = shard.await.map_err(|_| FleetError::Shard(i))?;
            for (all, mine) in record.latency.iter_mut().zip(r.latency) {
                all.extend(mine);
            }
            for (reason, n) in r.failures {
                *record.failures.entry(reason).or_default() += n;
            }
        }
        let stats = &self.stats;
        let mut summary = Summary {
            devices: self.devices,
            failures: record.failures,
            notifications: stats.notifications.load(Ordering::Relaxed),
            served: stats.served.load(Ordering::Relaxed),
            send_dropped: stats.send_dropped.load(Ordering::Relaxed),
            elapsed: self.started.elapsed(),
            ..Summary::default()
        };
        for op in Op::ALL {
            summary.ok.insert(op, stats.ok(op));
            if let Some(samples) = record.latency.get_mut(op.index()) {
                summary.latency.insert(op, Percentiles::of(samples));
            }
        }
        Ok(summary)
    }
}

/// What a shard hands back when it stops.
#[derive(Debug, Default)]
struct ShardRecord {
    /// Microseconds, per [`Op::index`].
    latency: [Vec<u32>; 3],
    failures: BTreeMap<String, u64>,
}

/// Work the shard starts itself, paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Start,
    Update,
    Deregister,
}

struct Slot {
    client: Client<SocketAddr>,
    socket: Arc<UdpSocket>,
    /// The device's own next deadline, as last read.
    deadline: Option<Instant>,
    /// When the shard wakes it for that deadline (later by the jitter); the live heap entry.
    wake: Option<Instant>,
    /// The registration request in flight and when it went out.
    op: Option<(Op, Instant)>,
    /// The op was started by the paced queue (counts against the in-flight cap).
    paced: bool,
    registered: bool,
}

type Readable = Pin<Box<dyn Future<Output = usize> + Send>>;

struct Shard {
    index: usize,
    of: usize,
    config: Arc<FleetConfig>,
    stats: Arc<Stats>,
    commands: mpsc::UnboundedReceiver<Command>,
    /// Device `slots[k]` is fleet device `k * of + index`; `None` until started.
    slots: Vec<Option<Slot>>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    readable: FuturesUnordered<Readable>,
    todo: VecDeque<(usize, Action)>,
    tokens: f64,
    refilled: Instant,
    in_flight: usize,
    stimulus: Option<Stimulus>,
    rng: u64,
    record: ShardRecord,
    buf: Vec<u8>,
}

struct Stimulus {
    path: Path,
    rate: f64,
    tokens: f64,
    refilled: Instant,
    cursor: usize,
    value: i64,
}

impl Shard {
    fn new(
        index: usize,
        of: usize,
        config: Arc<FleetConfig>,
        stats: Arc<Stats>,
        commands: mpsc::UnboundedReceiver<Command>,
    ) -> Shard {
        let mine = config.count.saturating_sub(index).div_ceil(of);
        let now = Instant::now();
        Shard {
            index,
            of,
            stats,
            commands,
            slots: (0..mine).map(|_| None).collect(),
            timers: BinaryHeap::new(),
            readable: FuturesUnordered::new(),
            todo: (0..mine).map(|k| (k, Action::Start)).collect(),
            tokens: 1.0,
            refilled: now,
            in_flight: 0,
            stimulus: None,
            // Any odd non-zero seed will do; distinct per shard so jitter differs.
            rng: 0x9E37_79B9_7F4A_7C15 ^ ((index as u64 + 1) << 17) | 1,
            record: ShardRecord::default(),
            buf: vec![0; MAX_DATAGRAM],
            config,
        }
    }

    /// This shard's share of a fleet-wide rate or cap.
    fn share(&self, total: f64) -> f64 {
        #[allow(clippy::cast_precision_loss)] // shard counts are tiny
        let of = self.of as f64;
        total / of
    }

    fn in_flight_cap(&self) -> usize {
        if self.config.max_in_flight == 0 {
            usize::MAX
        } else {
            self.config.max_in_flight.div_ceil(self.of).max(1)
        }
    }

    async fn run(mut self) -> ShardRecord {
        loop {
            let now = Instant::now();
            self.fire_timers(now);
            let paced_wake = self.release(now);
            let stimulus_wake = self.stimulate(now);
            let wake = [self.next_timer(), paced_wake, stimulus_wake]
                .into_iter()
                .flatten()
                .min();
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Stop) | None => break,
                    Some(c) => self.command(c),
                },
                Some(slot) = self.readable.next(), if !self.readable.is_empty() => {
                    self.receive(slot);
                    // Serve what else is ready without going back through select!.
                    for _ in 1..READY_BATCH {
                        match self.readable.next().now_or_never() {
                            Some(Some(slot)) => self.receive(slot),
                            _ => break,
                        }
                    }
                }
                () = sleep => {}
            }
        }
        self.record
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::UpdateAll => {
                for k in 0..self.slots.len() {
                    if self
                        .slots
                        .get(k)
                        .is_some_and(|s| s.as_ref().is_some_and(|s| s.registered))
                    {
                        self.todo.push_back((k, Action::Update));
                    }
                }
            }
            Command::DeregisterAll => {
                // Devices not started yet never will be.
                self.todo.retain(|(_, a)| *a != Action::Start);
                for k in 0..self.slots.len() {
                    if self.slots.get(k).is_some_and(Option::is_some) {
                        self.todo.push_back((k, Action::Deregister));
                    }
                }
            }
            Command::Stimulate(Some((path, rate))) => {
                self.stimulus = Some(Stimulus {
                    path,
                    rate: self.share(rate),
                    tokens: 1.0,
                    refilled: Instant::now(),
                    cursor: 0,
                    value: 0,
                });
            }
            Command::Stimulate(None) => self.stimulus = None,
            Command::Stop => {}
        }
    }

    /// Starts queued work as the token bucket and the in-flight cap allow; returns when more
    /// tokens will be there if that is what holds it back.
    fn release(&mut self, now: Instant) -> Option<Instant> {
        let rate = self.share(self.config.rate);
        if rate > 0.0 {
            let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
            // A bucket of a few milliseconds' worth: smooth, yet not one wake-up per device.
            self.tokens = (self.tokens + elapsed * rate).min((rate / 200.0).max(1.0));
            self.refilled = now;
        }
        let cap = self.in_flight_cap();
        while self.in_flight < cap {
            if rate > 0.0 && self.tokens < 1.0 {
                break;
            }
            let (k, action) = self.todo.pop_front()?;
            if rate > 0.0 {
                self.tokens -= 1.0;
            }
            self.act(now, k, action);
        }
        if self.todo.is_empty() || self.in_flight >= cap || rate <= 0.0 {
            return None;
        }
        Some(now + Duration::from_secs_f64(((1.0 - self.tokens) / rate).max(1e-4)))
    }

    fn act(&mut self, now: Instant, k: usize, action: Action) {
        match action {
            Action::Start => {
                if let Err(e) = self.create(k) {
                    *self
                        .record
                        .failures
                        .entry(format!("Register: cannot bind a socket: {}", e.kind()))
                        .or_default() += 1;
                    self.stats.failed[Op::Register.index()].fetch_add(1, Ordering::Relaxed);
                    return;
                }
                self.stats.started.fetch_add(1, Ordering::Relaxed);
                if let Some(Some(slot)) = self.slots.get_mut(k) {
                    slot.client.start(now);
                }
            }
            Action::Update => {
                if let Some(Some(slot)) = self.slots.get_mut(k) {
                    slot.client.device.registration_mut().trigger_update();
                    slot.client.handle_timeout(now);
                }
            }
            Action::Deregister => {
                if let Some(Some(slot)) = self.slots.get_mut(k) {
                    slot.client.deregister(now);
                }
            }
        }
        self.after(k, now, true);
    }

    /// Builds device `k` of this shard and arms its socket.
    fn create(&mut self, k: usize) -> io::Result<()> {
        let device = self.config.first + k * self.of + self.index;
        let endpoint = format!("{}-{device}", self.config.prefix);
        let mut config = DeviceConfig::new(endpoint.clone(), self.config.lwm2m);
        config.lifetime = self.config.lifetime;
        config.queue_mode = self.config.queue_mode;
        config.server_uri = format!("coap://{}", self.config.server);
        let stack = StackConfig {
            endpoint: EndpointConfig {
                seed: crate::fleet::seed_of(&endpoint),
                ..EndpointConfig::default()
            },
            ..StackConfig::default()
        };
        let mut client = Client::new(config, stack, self.config.server);
        client
            .device
            .set_peer_resolver(crate::firmware::ip_resolver);
        let (socket, _) = udp::bind(&UdpConfig {
            bind: source_address(self.config.server, device),
            recv_buffer: self.config.socket_buffer,
            send_buffer: self.config.socket_buffer,
        })?;
        let socket = Arc::new(socket);
        self.readable.push(arm(Arc::clone(&socket), k));
        if let Some(slot) = self.slots.get_mut(k) {
            *slot = Some(Slot {
                client,
                socket,
                deadline: None,
                wake: None,
                op: None,
                paced: false,
                registered: false,
            });
        }
        Ok(())
    }

    /// Drains a readable socket into its device, then re-arms it.
    fn receive(&mut self, k: usize) {
        let now = Instant::now();
        let Some(Some(slot)) = self.slots.get_mut(k) else {
            return;
        };
        let mut rearm = true;
        for _ in 0..RECV_BATCH {
            match slot.socket.try_recv_from(&mut self.buf) {
                Ok((n, peer)) => {
                    slot.client
                        .handle(now, peer, self.buf.get(..n).unwrap_or_default())
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // ICMP port unreachable (server down) surfaces here on Linux: it concerns
                // the datagram, not the socket; CoAP times the exchange out.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(_) => {
                    // A broken socket would be ready forever: stop listening on it.
                    rearm = false;
                    break;
                }
            }
        }
        let socket = Arc::clone(&slot.socket);
        if rearm {
            self.readable.push(arm(socket, k));
        }
        self.after(k, now, false);
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(Reverse((at, k))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(Some(slot)) = self.slots.get_mut(k) else {
                continue;
            };
            if slot.wake != Some(at) {
                continue; // superseded
            }
            slot.wake = None;
            slot.deadline = None;
            slot.client.handle_timeout(now);
            self.after(k, now, false);
        }
    }

    fn next_timer(&mut self) -> Option<Instant> {
        // Drop superseded entries so the sleep targets a live one.
        while let Some(Reverse((at, k))) = self.timers.peek().copied() {
            let live = self
                .slots
                .get(k)
                .and_then(Option::as_ref)
                .is_some_and(|s| s.wake == Some(at));
            if live {
                return Some(at);
            }
            self.timers.pop();
        }
        None
    }

    /// Changes the stimulated resource on the next devices, as the stimulus rate allows.
    fn stimulate(&mut self, now: Instant) -> Option<Instant> {
        let stimulus = self.stimulus.as_mut()?;
        let elapsed = now
            .saturating_duration_since(stimulus.refilled)
            .as_secs_f64();
        stimulus.tokens = (stimulus.tokens + elapsed * stimulus.rate).min(
            // At most ~5 ms worth per wake-up, so receiving is not starved.
            (stimulus.rate / 200.0).max(1.0),
        );
        stimulus.refilled = now;
        let mut touched = Vec::new();
        let slots = self.slots.len();
        let mut scanned = 0;
        while stimulus.tokens >= 1.0 && scanned < slots {
            let k = stimulus.cursor % slots.max(1);
            stimulus.cursor = stimulus.cursor.wrapping_add(1);
            scanned += 1;
            let Some(Some(slot)) = self.slots.get_mut(k) else {
                continue;
            };
            if !slot.registered {
                continue;
            }
            stimulus.tokens -= 1.0;
            stimulus.value = stimulus.value.wrapping_add(1);
            let value = match stimulus.path {
                // Current Time is a Time resource.
                Path::Resource(3, _, 13) => Value::Time(stimulus.value),
                _ => Value::Integer(stimulus.value),
            };
            slot.client.device.set(&stimulus.path, value);
            slot.client.handle_timeout(now);
            touched.push(k);
        }
        let wake = (stimulus.rate > 0.0).then(|| {
            now + Duration::from_secs_f64(((1.0 - stimulus.tokens) / stimulus.rate).max(1e-4))
        });
        for k in touched {
            self.after(k, now, false);
        }
        wake
    }

    /// After the device ran: send what it queued, account its events and ops, re-arm its timer.
    fn after(&mut self, k: usize, now: Instant, paced: bool) {
        let Some(Some(slot)) = self.slots.get_mut(k) else {
            return;
        };
        while let Some((peer, datagram)) = slot.client.poll_transmit() {
            // Never wait for the socket in a shard: a full send buffer drops the datagram, and
            // CoAP's retransmission stands in for the wait. The send goes straight to the
            // kernel: tokio's `try_send_to` refuses until the reactor has seen the new socket
            // writable, which drops every device's first Register.
            let sent =
                socket2::SockRef::from(slot.socket.as_ref()).send_to(&datagram, &peer.into());
            if sent.is_err() {
                self.stats.send_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        while let Some(event) = slot.client.poll_event() {
            account(
                &self.stats,
                &mut self.record,
                slot,
                &mut self.in_flight,
                now,
                &event,
            );
        }
        if slot.op.is_none()
            && let Some(kind) = slot.client.device.registration().in_flight()
        {
            slot.op = Some((Op::of(kind), now));
            slot.paced = paced;
            if paced {
                self.in_flight += 1;
                self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
            }
        }
        let deadline = slot.client.poll_timeout();
        if deadline != slot.deadline || slot.wake.is_none() && deadline.is_some() {
            slot.deadline = deadline;
            slot.wake = deadline.map(|d| {
                let ahead = d.saturating_duration_since(now);
                if ahead > JITTER_FROM && !self.config.jitter.is_zero() {
                    let most = self.config.jitter.min(ahead / 10);
                    d + most.mul_f64(next_unit(&mut self.rng))
                } else {
                    d
                }
            });
            if let Some(at) = slot.wake {
                self.timers.push(Reverse((at, k)));
            }
        }
    }
}

/// Counts a device event and closes the op it answers.
fn account(
    stats: &Stats,
    record: &mut ShardRecord,
    slot: &mut Slot,
    in_flight: &mut usize,
    now: Instant,
    event: &DeviceEvent,
) {
    let (op, outcome) = match event {
        DeviceEvent::Registration(e) => match e {
            RegistrationEvent::Registered { .. } => {
                if !slot.registered {
                    slot.registered = true;
                    stats.registered.fetch_add(1, Ordering::Relaxed);
                }
                (Op::Register, Ok(()))
            }
            RegistrationEvent::Updated => (Op::Update, Ok(())),
            RegistrationEvent::Deregistered => {
                unregistered(stats, slot);
                (Op::Deregister, Ok(()))
            }
            RegistrationEvent::RegisterFailed { code, .. } => {
                (Op::Register, Err(reason(Op::Register, *code)))
            }
            RegistrationEvent::UpdateFailed { code } => {
                // The device registers again on its own.
                unregistered(stats, slot);
                (Op::Update, Err(reason(Op::Update, *code)))
            }
            // A new Register follows at once; it closes the op.
            RegistrationEvent::VersionFallback { .. } => return,
        },
        DeviceEvent::Notified { .. } => {
            stats.notifications.fetch_add(1, Ordering::Relaxed);
            return;
        }
        DeviceEvent::Served { .. } => {
            stats.served.fetch_add(1, Ordering::Relaxed);
            return;
        }
        _ => return,
    };
    // Close the op: a Deregistered from backoff (nothing in flight) closes nothing.
    if let Some((started, at)) = slot.op
        && (started == op || outcome.is_err())
    {
        slot.op = None;
        if slot.paced {
            slot.paced = false;
            *in_flight = in_flight.saturating_sub(1);
            let _ = stats
                .in_flight
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
        if outcome.is_ok() {
            let us =
                u32::try_from(now.saturating_duration_since(at).as_micros()).unwrap_or(u32::MAX);
            if let Some(samples) = record.latency.get_mut(op.index()) {
                samples.push(us);
            }
        }
    }
    match outcome {
        Ok(()) => stats.ok[op.index()].fetch_add(1, Ordering::Relaxed),
        Err(reason) => {
            *record.failures.entry(reason).or_default() += 1;
            stats.failed[op.index()].fetch_add(1, Ordering::Relaxed)
        }
    };
}

fn unregistered(stats: &Stats, slot: &mut Slot) {
    if slot.registered {
        slot.registered = false;
        let _ = stats
            .registered
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
}

fn reason(op: Op, code: Option<steward_coap::message::Code>) -> String {
    match code {
        Some(code) => format!("{op}: {code}"),
        None => format!("{op}: no answer"),
    }
}

fn arm(socket: Arc<UdpSocket>, k: usize) -> Readable {
    Box::pin(async move {
        // An error is reported by the try_recv_from that follows.
        let _ = socket.readable().await;
        k
    })
}

/// The local address device `device` binds: against a loopback server, 127.0.0.x with
/// [`DEVICES_PER_SOURCE_IP`] devices per address, so 100k devices do not exhaust one
/// address's ephemeral ports; otherwise the wildcard address.
fn source_address(server: SocketAddr, device: usize) -> SocketAddr {
    match server.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => {
            let n = u32::try_from(device / DEVICES_PER_SOURCE_IP).unwrap_or(0);
            // 127.0.0.1, 127.0.0.2, ...: all of 127/8 is routed to lo on Linux.
            let host = u32::from(Ipv4Addr::new(127, 0, 0, 1)).saturating_add(n);
            SocketAddr::from((Ipv4Addr::from(host), 0))
        }
        IpAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        IpAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    }
}

/// A stable per-device seed, so two devices never share message IDs and tokens.
pub fn seed_of(endpoint: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    endpoint.hash(&mut h);
    h.finish()
}

/// xorshift64: jitter needs spread, not quality, and no dependency.
fn next_unit(state: &mut u64) -> f64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    #[allow(clippy::cast_precision_loss)] // 53 bits are plenty
    let unit = (x >> 11) as f64 / (1u64 << 53) as f64;
    unit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut samples: Vec<u32> = (1..=100).collect();
        let p = Percentiles::of(&mut samples);
        assert_eq!(p.count, 100);
        assert_eq!(p.p50, Duration::from_micros(50));
        assert_eq!(p.p90, Duration::from_micros(90));
        assert_eq!(p.p99, Duration::from_micros(99));
        assert_eq!(p.max, Duration::from_micros(100));
        assert_eq!(Percentiles::of(&mut []), Percentiles::default());
    }

    #[test]
    fn loopback_devices_spread_over_source_addresses() {
        let server = SocketAddr::from(([127, 0, 0, 1], 5683));
        assert_eq!(source_address(server, 0).ip(), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(
            source_address(server, DEVICES_PER_SOURCE_IP).ip(),
            Ipv4Addr::new(127, 0, 0, 2)
        );
        let remote = SocketAddr::from(([192, 0, 2, 1], 5683));
        assert!(source_address(remote, 99_999).ip().is_unspecified());
    }

    #[test]
    fn jitter_stays_in_the_unit_interval() {
        let mut rng = 1;
        for _ in 0..1000 {
            let u = next_unit(&mut rng);
            assert!((0.0..1.0).contains(&u));
        }
    }
}
