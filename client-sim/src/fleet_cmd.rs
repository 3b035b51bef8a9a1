//! `steward-client fleet`: runs a [`Fleet`] with a progress bar until `--duration` is up or
//! Ctrl-C, optionally de-registers every device, and prints the summary.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use steward_client::fleet::{Fleet, FleetConfig, FleetError, Op, raise_file_limit};
use steward_objects::Version;

/// Printed once every device is registered.
pub const ALL_REGISTERED: &str = "fleet: all registered:";
/// How long de-registration may take at the end before the fleet stops anyway.
const DEREGISTER_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, clap::Args)]
pub struct FleetArgs {
    /// LwM2M server address.
    #[arg(long, default_value = "127.0.0.1:5683")]
    server: SocketAddr,
    /// Number of devices.
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Ramp-up: devices started per second (0: as fast as --max-in-flight allows).
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Registration lifetime in seconds.
    #[arg(long, default_value_t = 300)]
    lifetime: u32,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration: Option<u64>,
    /// De-register every device before stopping.
    #[arg(long)]
    deregister: bool,
    /// Index of the first device (to split one fleet over several processes).
    #[arg(long, default_value_t = 0)]
    first: usize,
    /// Endpoint names are PREFIX-0, PREFIX-1, ...
    #[arg(long, default_value = "steward-sim")]
    prefix: String,
    /// LwM2M version to speak: 1.0, 1.1 or 1.2.
    #[arg(long, default_value = "1.1", value_parser = crate::parse_version)]
    lwm2m: Version,
    /// Register in queue mode.
    #[arg(long)]
    queue: bool,
    /// Cap on fleet-started operations awaiting an answer (0: no cap).
    #[arg(long, default_value_t = 0)]
    max_in_flight: usize,
    /// Largest delay in seconds added to periodic timers, to spread Updates.
    #[arg(long, default_value_t = 10)]
    jitter: u64,
    /// Worker tasks (0: one per core).
    #[arg(long, default_value_t = 0)]
    shards: usize,
}

pub async fn run(args: FleetArgs) -> Result<(), FleetError> {
    let limit = raise_file_limit(args.count)?;
    let mut config = FleetConfig::new(args.server, args.count);
    config.first = args.first;
    config.prefix = args.prefix;
    config.lwm2m = args.lwm2m;
    config.lifetime = args.lifetime;
    config.queue_mode = args.queue;
    config.rate = args.rate;
    config.max_in_flight = args.max_in_flight;
    config.jitter = Duration::from_secs(args.jitter);
    config.shards = args.shards;
    let fleet = Fleet::start(config)?;
    println!(
        "steward-client fleet: {} devices, LwM2M {}, {} /s, registering with {} (open-file limit {limit})",
        args.count, args.lwm2m, args.rate, args.server
    );
    let bar = progress_bar(args.count);
    let stop_at = args
        .duration
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let mut all_registered = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                show(&bar, &fleet);
                let registered = fleet.stats().registered.load(Ordering::Relaxed);
                if !all_registered && registered == u64::try_from(args.count).unwrap_or(u64::MAX) {
                    all_registered = true;
                    // A fixed line on stdout: `bench` waits for it from its helper processes.
                    println!("{ALL_REGISTERED} {} devices after {:.1} s", args.count, started.elapsed().as_secs_f64());
                }
                if stop_at.is_some_and(|at| tokio::time::Instant::now() >= at) {
                    break;
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    if args.deregister {
        bar.println("de-registering");
        fleet.deregister_all();
        let deadline = tokio::time::Instant::now() + DEREGISTER_WAIT;
        while (fleet.stats().registered.load(Ordering::Relaxed) > 0
            || fleet.stats().in_flight.load(Ordering::Relaxed) > 0)
            && tokio::time::Instant::now() < deadline
        {
            tick.tick().await;
            show(&bar, &fleet);
        }
    }
    show(&bar, &fleet);
    bar.finish();
    let summary = fleet.stop().await?;
    println!("{summary}");
    Ok(())
}

pub fn progress_bar(count: usize) -> ProgressBar {
    let bar = ProgressBar::new(u64::try_from(count).unwrap_or(u64::MAX));
    // The template is a constant; if indicatif ever rejected it, the default style is fine.
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} registered  {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

pub fn show(bar: &ProgressBar, fleet: &Fleet) {
    let s = fleet.stats();
    bar.set_position(s.registered.load(Ordering::Relaxed));
    bar.set_message(format!(
        "failed {}  in flight {}  started {}  updates {}  deregistered {}",
        s.failures(),
        s.in_flight.load(Ordering::Relaxed),
        s.started.load(Ordering::Relaxed),
        s.ok(Op::Update),
        s.ok(Op::Deregister),
    ));
}
