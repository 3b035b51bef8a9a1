//! What a plugin costs: loading a component, and an event's round trip through the host.
//!
//! `cargo run --release -p steward --example plugin_bench [-- --events N] [-- --dir PATH]`
//! (N defaults to 5000; PATH is where the temporary data directory goes, default the system
//! temp dir). The components come from `plugins/target/wasm32-wasip2/release/`
//! (`scripts/build-plugins`). Phases, each on the example plugin in a fresh data directory:
//!
//! 1. **Cold load:** `PluginHost::new` and loading the component with an empty wasmtime cache
//!    (compile), again in a new host with the same cache directory (wasmtime's on-disk cache),
//!    and `load()` again on the same host (the per-digest cache in memory). Compile/link
//!    (`LoadTiming::prepare`) and `describe()` apart.
//! 2. **Sequential events:** `PluginHost::call` one event at a time after a warm-up: `ok` on
//!    the hostile test plugin (a reply, no host call: the floor of a call), the example's `now`
//!    (one host call), `get` (a key-value read), and `put` followed by
//!    `SledStore::plugin_kv_apply` (what the dispatcher does: one batch and a durable commit),
//!    with the call and the write timed apart.
//! 3. **All cores:** `now` from T threads sharing one `Arc<PluginHost>`.
//! 4. **The dispatcher:** a running server (`runtime::start`) answering
//!    `plugins().command("example", "now")`, from 1 and from 32 concurrent callers.
//!
//! Figures are wall time on whatever else the machine is doing; compare runs on one machine.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use steward::config::Config;
use steward::plugins::bindings::steward::plugin::types::{Command, Event};
use steward::plugins::host::{HostConfig, LoadTiming, LoadedPlugin, PluginHost};
use steward::runtime;
use steward::store::SledStore;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const WARM_UP: usize = 200;
/// The per-event figure the plugin host is held to.
const TARGET_US: f64 = 50.0;
/// Concurrent callers in the dispatcher's second case.
const CALLERS: usize = 32;

fn main() -> Result<(), BoxError> {
    let args = Args::parse()?;
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let example = component("example")?;
    let trivial = component("hostile")?;
    let base = match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    // The server's data directory (phase 4) holds the plugin directory and the compile cache
    // phases 1-3 use too, so the server starts from a warm cache; the bench's own store lives
    // next to it (sled owns its directory).
    let data = base.path().join("server");
    let plugins_dir = data.join("plugins");
    std::fs::create_dir_all(&plugins_dir)?;
    std::fs::copy(&example, plugins_dir.join("example.wasm"))?;
    println!(
        "plugin_bench: {cores} cores (available_parallelism), {} events per phase after {WARM_UP} warm-up, data in {}",
        args.events,
        base.path().display()
    );
    println!(
        "components: example.wasm {} bytes, hostile.wasm {} bytes (its `ok`: the trivial call)",
        std::fs::metadata(&example)?.len(),
        std::fs::metadata(&trivial)?.len()
    );

    let store = Arc::new(SledStore::open(base.path().join("bench-store"))?);
    let config = HostConfig::in_data_dir(&data);
    let mut loads = Vec::new();

    // 1. Cold load.
    eprintln!("[load] compiling with an empty cache ...");
    {
        let (host, timing) = cold_load(&config, &store, &plugins_dir)?;
        loads.push(("empty disk cache (compile)", timing));
        drop(host);
    }
    eprintln!("[load] new host, same cache directory ...");
    let (host, timing) = cold_load(&config, &store, &plugins_dir)?;
    loads.push(("same cache dir (wasmtime disk hit)", timing));
    {
        let started = Instant::now();
        let report = host.load();
        let load = started.elapsed();
        if report.loaded != ["example"] {
            return Err(format!("load() on a warm host: {report:?}").into());
        }
        let (_, split) = host.load_file(&plugins_dir.join("example.wasm"))?;
        loads.push((
            "load() again, same host (memory hit)",
            Load {
                new: Duration::ZERO,
                split,
                total: load,
            },
        ));
    }
    print_loads(&loads);

    // 2. Sequential events.
    let host = Arc::new(host);
    let routing = host.routing();
    let plugin = Arc::clone(routing.get("example").ok_or("example not loaded")?);
    let (ok_plugin, _) = host.load_file(&trivial)?;
    let n = args.events;
    let mut rows = Vec::new();

    let ok = command("ok", &Json::Null);
    let samples = sequential(
        &host,
        &ok_plugin,
        "call ok",
        n,
        |_| ok.clone(),
        expect_reply,
    )?;
    rows.push(Row::from_samples("call: trivial (hostile ok)", samples));

    let now = command("now", &Json::Null);
    let samples = sequential(&host, &plugin, "call now", n, |_| now.clone(), expect_reply)?;
    rows.push(Row::from_samples("call: now (1 host call)", samples));

    let flushes = store.flush_count();
    let (calls, applies, totals) = put_and_apply(&host, &plugin, &store, n)?;
    let flushes = store.flush_count() - flushes;
    rows.push(Row::from_samples("call: put (1 kv effect)", calls));
    rows.push(Row::from_samples("  plugin_kv_apply (durable)", applies));
    rows.push(Row::from_samples("call put + kv apply", totals));

    let samples = sequential(
        &host,
        &plugin,
        "call get",
        n,
        |i| command("get", &json!({ "key": format!("bench/{}", i % n.max(1)) })),
        expect_reply,
    )?;
    rows.push(Row::from_samples("call: get (host kv-get)", samples));

    // 3. All cores.
    let mut thread_counts = vec![1, cores];
    thread_counts.dedup();
    for threads in thread_counts {
        rows.push(parallel(&host, &plugin, threads, n)?);
    }
    drop((ok_plugin, plugin, routing, host));
    drop(store);

    // 4. Through the dispatcher.
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rows.extend(tokio.block_on(dispatcher(&data, n))?);

    print_rows(&rows, cores, flushes);
    Ok(())
}

struct Args {
    events: usize,
    dir: Option<PathBuf>,
}

impl Args {
    fn parse() -> Result<Args, BoxError> {
        let mut args = Args {
            events: 5000,
            dir: None,
        };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--events" => {
                    args.events = it.next().ok_or("--events wants a number")?.parse()?;
                }
                "--dir" => args.dir = Some(it.next().ok_or("--dir wants a path")?.into()),
                other => {
                    return Err(
                        format!("unknown argument {other:?} (--events N, --dir PATH)").into(),
                    );
                }
            }
        }
        if args.events < CALLERS {
            return Err(format!("--events must be at least {CALLERS}").into());
        }
        Ok(args)
    }
}

/// A component built by `scripts/build-plugins`.
fn component(name: &str) -> Result<PathBuf, BoxError> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    if !path.exists() {
        return Err(format!(
            "{} is missing: run scripts/build-plugins first",
            path.display()
        )
        .into());
    }
    Ok(path)
}

fn command(name: &str, argument: &Json) -> Event {
    Event::Command(Command {
        name: name.into(),
        argument: argument.to_string(),
    })
}

/// One cold load: `PluginHost::new`, then the component (compile or cache, link, describe).
struct Load {
    new: Duration,
    split: LoadTiming,
    total: Duration,
}

fn cold_load(
    config: &HostConfig,
    store: &Arc<SledStore>,
    plugins_dir: &Path,
) -> Result<(PluginHost, Load), BoxError> {
    let started = Instant::now();
    let host = PluginHost::new(config.clone(), Some(Arc::clone(store)), None)?;
    let new = started.elapsed();
    let (_, split) = host.load_file(&plugins_dir.join("example.wasm"))?;
    let total = started.elapsed();
    Ok((host, Load { new, split, total }))
}

fn expect_reply(planned: steward::plugins::effects::Planned) -> Result<(), BoxError> {
    match planned.reply {
        Some(_) => Ok(()),
        None => Err("the plugin did not reply".into()),
    }
}

/// Progress to stderr every 10% of `total`.
fn progress(label: &str, done: usize, total: usize) {
    let step = (total / 10).max(1);
    if done.is_multiple_of(step) {
        eprintln!("[{label}] {done}/{total}");
    }
}

/// `n` calls one after the other (after the warm-up), each one timed.
fn sequential(
    host: &PluginHost,
    plugin: &LoadedPlugin,
    label: &str,
    n: usize,
    event: impl Fn(usize) -> Event,
    check: impl Fn(steward::plugins::effects::Planned) -> Result<(), BoxError>,
) -> Result<(Vec<Duration>, Duration), BoxError> {
    for i in 0..WARM_UP {
        check(host.call(plugin, &event(i))?)?;
    }
    let mut samples = Vec::with_capacity(n);
    let wall = Instant::now();
    for i in 0..n {
        let event = event(i);
        let started = Instant::now();
        let planned = host.call(plugin, &event)?;
        samples.push(started.elapsed());
        check(planned)?;
        progress(label, i + 1, n);
    }
    Ok((samples, wall.elapsed()))
}

type Samples = (Vec<Duration>, Duration);

/// `put` then the planned writes applied as the dispatcher does; call, write and both timed.
fn put_and_apply(
    host: &PluginHost,
    plugin: &LoadedPlugin,
    store: &SledStore,
    n: usize,
) -> Result<(Samples, Samples, Samples), BoxError> {
    let event = |i: usize| {
        command(
            "put",
            &json!({ "key": format!("bench/{i}"), "value": format!("value {i}") }),
        )
    };
    for i in 0..WARM_UP {
        let planned = host.call(plugin, &event(n + i))?;
        store.plugin_kv_apply(plugin.name(), &planned.kv)?;
    }
    let (mut calls, mut applies, mut totals) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut call_time, mut apply_time) = (Duration::ZERO, Duration::ZERO);
    let wall = Instant::now();
    for i in 0..n {
        let event = event(i);
        let started = Instant::now();
        let planned = host.call(plugin, &event)?;
        let called = started.elapsed();
        if planned.kv.len() != 1 {
            return Err(format!("put planned {} writes", planned.kv.len()).into());
        }
        store.plugin_kv_apply(plugin.name(), &planned.kv)?;
        let total = started.elapsed();
        calls.push(called);
        applies.push(total - called);
        totals.push(total);
        call_time += called;
        apply_time += total - called;
        progress("call put + kv apply", i + 1, n);
    }
    Ok((
        (calls, call_time),
        (applies, apply_time),
        (totals, wall.elapsed()),
    ))
}

/// `now` from `threads` threads sharing the host, `n` events in all.
fn parallel(
    host: &Arc<PluginHost>,
    plugin: &Arc<LoadedPlugin>,
    threads: usize,
    n: usize,
) -> Result<Row, BoxError> {
    let label = format!("now x{threads} threads");
    let now = command("now", &Json::Null);
    let done = AtomicUsize::new(0);
    let per_thread = n / threads;
    let wall = Instant::now();
    let results: Vec<Result<Vec<Duration>, BoxError>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (host, plugin, now, done, label) = (host, plugin, &now, &done, &label);
                // The remainder goes to the first thread.
                let count = per_thread + if t == 0 { n % threads } else { 0 };
                s.spawn(move || -> Result<Vec<Duration>, BoxError> {
                    let mut samples = Vec::with_capacity(count);
                    for _ in 0..count {
                        let started = Instant::now();
                        let planned = host.call(plugin, now)?;
                        samples.push(started.elapsed());
                        expect_reply(planned)?;
                        progress(label, done.fetch_add(1, Ordering::Relaxed) + 1, n);
                    }
                    Ok(samples)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err("a worker panicked".into())))
            .collect()
    });
    let wall = wall.elapsed();
    let mut samples = Vec::with_capacity(n);
    for r in results {
        samples.extend(r?);
    }
    Ok(Row::from_samples(
        &format!("call: now, {threads} thread(s)"),
        (samples, wall),
    ))
}

/// The server's path: `Dispatcher::command` from 1 and from [`CALLERS`] concurrent callers.
async fn dispatcher(data: &Path, n: usize) -> Result<Vec<Row>, BoxError> {
    eprintln!("[dispatcher] starting the server ...");
    let started = Instant::now();
    let server = runtime::start(&Config::ephemeral(data.to_path_buf())).await?;
    println!(
        "server start (runtime::start, plugins from the warm cache): {:.1} ms",
        ms(started.elapsed())
    );
    let dispatcher = server.plugins().clone();
    for _ in 0..WARM_UP {
        dispatcher.command("example", "now", &Json::Null).await?;
    }
    let mut rows = Vec::new();
    for callers in [1, CALLERS] {
        let label = Arc::new(format!("dispatcher x{callers}"));
        let done = Arc::new(AtomicUsize::new(0));
        let wall = Instant::now();
        let tasks: Vec<_> = (0..callers)
            .map(|c| {
                let (dispatcher, label, done) =
                    (dispatcher.clone(), Arc::clone(&label), Arc::clone(&done));
                let count = n / callers + if c == 0 { n % callers } else { 0 };
                tokio::spawn(async move {
                    let mut samples = Vec::with_capacity(count);
                    for _ in 0..count {
                        let started = Instant::now();
                        let reply = dispatcher.command("example", "now", &Json::Null).await?;
                        samples.push(started.elapsed());
                        if reply.is_none() {
                            return Err::<_, BoxError>("the plugin did not reply".into());
                        }
                        progress(&label, done.fetch_add(1, Ordering::Relaxed) + 1, n);
                    }
                    Ok(samples)
                })
            })
            .collect();
        let mut samples = Vec::with_capacity(n);
        for task in tasks {
            samples.extend(task.await??);
        }
        rows.push(Row::from_samples(
            &format!("dispatcher: now, {callers} caller(s)"),
            (samples, wall.elapsed()),
        ));
    }
    eprintln!("[dispatcher] shutting down ...");
    server.shutdown().await?;
    Ok(rows)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

struct Row {
    what: String,
    n: usize,
    mean_us: f64,
    p50_us: f64,
    p99_us: f64,
    /// Events over the phase's wall time (or over the summed time of this part).
    per_s: f64,
}

impl Row {
    fn from_samples(what: &str, (mut samples, wall): Samples) -> Row {
        samples.sort_unstable();
        let n = samples.len();
        let at = |q: f64| {
            // Nearest rank.
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n.max(1));
            samples.get(rank - 1).copied().map_or(0.0, us)
        };
        let sum: Duration = samples.iter().sum();
        Row {
            what: what.to_owned(),
            n,
            mean_us: if n == 0 { 0.0 } else { us(sum) / n as f64 },
            p50_us: at(0.50),
            p99_us: at(0.99),
            per_s: n as f64 / wall.as_secs_f64().max(f64::MIN_POSITIVE),
        }
    }
}

fn print_loads(loads: &[(&str, Load)]) {
    println!();
    println!(
        "{:<38} {:>9} {:>13} {:>12} {:>10}",
        "cold load (example.wasm)", "new ms", "compile+link", "describe ms", "total ms"
    );
    for (what, l) in loads {
        println!(
            "{what:<38} {:>9.2} {:>13.2} {:>12.2} {:>10.2}",
            ms(l.new),
            ms(l.split.prepare),
            ms(l.split.describe),
            ms(l.total)
        );
    }
    println!("  (the last row's total is the whole load(); its split is a load_file after it)");
}

fn print_rows(rows: &[Row], cores: usize, flushes: u64) {
    println!();
    println!(
        "{:<36} {:>6} {:>9} {:>9} {:>9} {:>10}",
        "event round trip", "n", "mean µs", "p50 µs", "p99 µs", "events/s"
    );
    for r in rows {
        println!(
            "{:<36} {:>6} {:>9.1} {:>9.1} {:>9.1} {:>10.0}",
            r.what, r.n, r.mean_us, r.p50_us, r.p99_us, r.per_s
        );
    }
    println!(
        "  {cores} cores; put phase: {flushes} store flushes; events/s of a part row is n over that part's summed time"
    );
    if let Some(now) = rows.iter().find(|r| r.what.starts_with("call: now (")) {
        println!(
            "  target {TARGET_US:.0} µs per event: `now` sequential mean {:.1} µs ({})",
            now.mean_us,
            if now.mean_us <= TARGET_US {
                "met"
            } else {
                "missed"
            }
        );
    }
}
