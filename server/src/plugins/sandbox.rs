//! Where plugin code runs: one wasmtime engine with the pooling allocator and epoch
//! interruption, a linker that grants the `steward:plugin/host` capabilities and a WASI
//! without files, sockets or environment, and a fresh store per call.
//!
//! # Limits
//!
//! - **CPU:** an engine-wide ticker thread advances the epoch every [`TICK`]; each call gets a
//!   deadline of `deadline / TICK` ticks and traps when it passes. Host calls run on the same
//!   clock, so their time counts against the plugin (a host call cannot be interrupted, but
//!   the next wasm instruction after it traps). Tests may add fuel for a deterministic bound.
//! - **Memory:** a [`StoreLimits`] cap per call that traps on a failed `memory.grow`, and the
//!   pool's `max_memory_size`.
//! - **State:** none survives a call. The store (and every instance in it) is dropped after
//!   each `describe` or `handle`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{Component, HasData, Linker, ResourceTable};
use wasmtime::{
    Cache, CacheConfig, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
    StoreLimits, StoreLimitsBuilder, Trap,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::steward::plugin::host::{self, Level};
use super::bindings::steward::plugin::types::{
    self, CertificateInfo, Description, Effect, Event, HostError, PluginError,
};
use super::bindings::{Plugin, PluginPre};
use super::keys::{KeyError, Keyring};
use crate::clock::unix_ms;
use crate::pki::PkiService;
use crate::store::SledStore;

/// How often the epoch advances: the resolution of the CPU deadline.
pub const TICK: Duration = Duration::from_millis(1);
/// Bytes of a plugin's stderr kept to explain a trap (a Rust panic message lands there).
const STDERR_CAPTURE: usize = 4096;
const MAX_RANDOM_BYTES: u32 = 1024;
const MAX_KV_LIST: u32 = 1000;

/// Per-call limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Wall-clock CPU budget of one call, host calls included.
    pub deadline: Duration,
    /// Linear memory a plugin may grow to.
    pub memory_bytes: usize,
    /// Fuel per call (tests: a deterministic instruction budget). `None`: no fuel metering.
    pub fuel: Option<u64>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            deadline: Duration::from_millis(100),
            memory_bytes: 64 << 20,
            fuel: None,
        }
    }
}

/// What the host grants plugins: reads of their own key-value namespace, their own keys, the
/// CA. Shared by every call.
pub struct Capabilities {
    pub store: Option<Arc<SledStore>>,
    pub keys: Keyring,
    pub pki: Option<PkiService>,
}

/// The data of one call's store.
pub struct Sandbox {
    plugin: String,
    caps: Arc<Capabilities>,
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    /// Host calls made during this call (for the benchmarks and the logs).
    host_calls: u32,
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Why a call did not return normally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("ran past its CPU deadline of {0:?}")]
    Deadline(Duration),
    #[error("ran out of fuel")]
    Fuel,
    #[error("exceeded its memory limit of {0} bytes")]
    Memory(usize),
    #[error("trapped: {0}")]
    Trap(String),
}

/// Why a component cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a valid component: {0}")]
    Compile(String),
    /// It imports something the host does not grant (files, sockets, an unknown interface).
    #[error("imports what the host does not grant: {0}")]
    Link(String),
    #[error("describe() failed: {0}")]
    Describe(CallError),
}

/// The engine, the linker and the epoch ticker.
pub struct Sandboxes {
    engine: Engine,
    linker: Linker<Sandbox>,
    limits: Limits,
    stop_ticker: Arc<AtomicBool>,
}

impl Drop for Sandboxes {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

impl Sandboxes {
    /// `cache_dir`: where compiled components are kept between runs (keyed by the
    /// component's digest and the compiler's settings); `None` compiles every load.
    pub fn new(limits: Limits, cache_dir: Option<&Path>) -> Result<Sandboxes, LoadError> {
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .consume_fuel(limits.fuel.is_some())
            .max_wasm_stack(512 << 10);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(256)
            .total_core_instances(2048)
            .total_memories(256)
            .total_tables(1024)
            .max_memory_size(limits.memory_bytes)
            // No `linear_memory_keep_resident`: keeping 1 MiB resident made wasmtime zero it
            // on every call, which was most of a call's cost (plugin_bench: `now` p50 44 µs
            // with 1 MiB, about 30 µs without).
            .max_core_instances_per_component(32);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        if let Some(dir) = cache_dir {
            let mut cache = CacheConfig::new();
            cache.with_directory(dir);
            match Cache::new(cache) {
                Ok(cache) => {
                    config.cache(Some(cache));
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "plugin compile cache unavailable; compiling every load")
                }
            }
        }
        let engine = match Engine::new(&config) {
            Ok(engine) => engine,
            Err(e) => {
                // The pool reserves address space up front; where that fails (small VA
                // spaces), allocate on demand rather than run without plugins.
                tracing::warn!(error = %e, "pooling allocator unavailable; allocating plugin instances on demand");
                config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
                Engine::new(&config).map_err(|e| LoadError::Compile(e.to_string()))?
            }
        };
        let mut linker = Linker::new(&engine);
        link_wasi(&mut linker).map_err(|e| LoadError::Link(e.to_string()))?;
        Plugin::add_to_linker::<Sandbox, HostData>(&mut linker, |s| s)
            .map_err(|e| LoadError::Link(e.to_string()))?;
        let stop_ticker = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = Arc::clone(&stop_ticker);
            std::thread::Builder::new()
                .name("plugin-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| LoadError::Compile(format!("epoch ticker: {e}")))?;
        }
        Ok(Sandboxes {
            engine,
            linker,
            limits,
            stop_ticker,
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compiles (or fetches from the cache) and links a component. Linking checks every
    /// import against what the host grants, before any plugin code runs.
    pub fn prepare(&self, bytes: &[u8]) -> Result<PluginPre<Sandbox>, LoadError> {
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        PluginPre::new(pre).map_err(|e| LoadError::Link(format!("{e:#}")))
    }

    fn store(&self, plugin: &str, caps: &Arc<Capabilities>) -> Result<Store<Sandbox>, CallError> {
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE);
        let wasi = WasiCtxBuilder::new().stderr(stderr).build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory_bytes)
            .instances(64)
            .tables(64)
            .memories(8)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(
            &self.engine,
            Sandbox {
                plugin: plugin.to_owned(),
                caps: Arc::clone(caps),
                wasi,
                table: ResourceTable::new(),
                limits,
                host_calls: 0,
            },
        );
        store.limiter(|s| &mut s.limits);
        let ticks = self.limits.deadline.as_micros() / TICK.as_micros().max(1);
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX).max(1));
        store.epoch_deadline_trap();
        if let Some(fuel) = self.limits.fuel {
            store
                .set_fuel(fuel)
                .map_err(|e| CallError::Trap(format!("fuel: {e}")))?;
        }
        Ok(store)
    }

    /// Calls `describe()` on a fresh instance.
    pub fn describe(
        &self,
        pre: &PluginPre<Sandbox>,
        plugin: &str,
        caps: &Arc<Capabilities>,
    ) -> Result<Description, CallError> {
        let mut store = self.store(plugin, caps)?;
        let result = pre
            .instantiate(&mut store)
            .and_then(|instance| instance.call_describe(&mut store));
        result.map_err(|e| self.classify(e))
    }

    /// Calls `handle(event)` on a fresh instance. The outer error is the sandbox's verdict
    /// (trap, deadline, memory); the inner one is the plugin's own.
    pub fn handle(
        &self,
        pre: &PluginPre<Sandbox>,
        plugin: &str,
        caps: &Arc<Capabilities>,
        event: &Event,
    ) -> Result<Result<Vec<Effect>, PluginError>, CallError> {
        let mut store = self.store(plugin, caps)?;
        let result = pre
            .instantiate(&mut store)
            .and_then(|instance| instance.call_handle(&mut store, event));
        result.map_err(|e| self.classify(e))
    }

    fn classify(&self, e: wasmtime::Error) -> CallError {
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => return CallError::Deadline(self.limits.deadline),
            Some(Trap::OutOfFuel) => return CallError::Fuel,
            _ => {}
        }
        let text = format!("{e:#}");
        if text.contains("growing memory") || text.contains("memory.grow") {
            return CallError::Memory(self.limits.memory_bytes);
        }
        CallError::Trap(text)
    }
}

/// `HasData` for the generated `add_to_linker`: host functions get `&mut Sandbox`.
struct HostData;

impl HasData for HostData {
    type Data<'a> = &'a mut Sandbox;
}

struct Io;

impl HasData for Io {
    type Data<'a> = &'a mut ResourceTable;
}

/// The WASI a Rust `wasm32-wasip2` plugin needs, granting nothing: no environment or
/// arguments, stdin empty, stdout discarded, stderr captured for trap reports, clocks and
/// randomness. The filesystem and sockets are not linked at all: a component that imports
/// them (`std::fs`, `std::net`) fails to load, before any of its code runs.
fn link_wasi(l: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
    use wasmtime_wasi::p2::bindings::{cli, clocks, random, sync};
    use wasmtime_wasi::random::WasiRandom;

    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<Sandbox, Io>(l, |s| &mut s.table)?;
    sync::io::poll::add_to_linker::<Sandbox, Io>(l, |s| &mut s.table)?;
    sync::io::streams::add_to_linker::<Sandbox, Io>(l, |s| &mut s.table)?;
    clocks::wall_clock::add_to_linker::<Sandbox, WasiClocks>(l, Sandbox::clocks)?;
    clocks::monotonic_clock::add_to_linker::<Sandbox, WasiClocks>(l, Sandbox::clocks)?;
    random::random::add_to_linker::<Sandbox, WasiRandom>(l, |s| s.wasi.random())?;
    random::insecure::add_to_linker::<Sandbox, WasiRandom>(l, |s| s.wasi.random())?;
    random::insecure_seed::add_to_linker::<Sandbox, WasiRandom>(l, |s| s.wasi.random())?;
    cli::exit::add_to_linker::<Sandbox, WasiCli>(l, Sandbox::cli)?;
    cli::environment::add_to_linker::<Sandbox, WasiCli>(l, Sandbox::cli)?;
    cli::stdin::add_to_linker::<Sandbox, WasiCli>(l, Sandbox::cli)?;
    cli::stdout::add_to_linker::<Sandbox, WasiCli>(l, Sandbox::cli)?;
    cli::stderr::add_to_linker::<Sandbox, WasiCli>(l, Sandbox::cli)?;
    cli::terminal_input::add_to_linker::<Sandbox, WasiCli>(l, Sandbox::cli)?;
    cli::terminal_output::add_to_linker::<Sandbox, WasiCli>(l, Sandbox::cli)?;
    cli::terminal_stdin::add_to_linker::<Sandbox, WasiCli>(l, Sandbox::cli)?;
    cli::terminal_stdout::add_to_linker::<Sandbox, WasiCli>(l, Sandbox::cli)?;
    cli::terminal_stderr::add_to_linker::<Sandbox, WasiCli>(l, Sandbox::cli)?;
    Ok(())
}

impl types::Host for Sandbox {}

fn key_error(e: KeyError) -> HostError {
    match e {
        KeyError::Denied(m) => HostError::Denied(m),
        KeyError::Invalid(m) => HostError::Invalid(m),
        KeyError::BadSignature => HostError::Failed("bad signature".into()),
        KeyError::Failed(m) => HostError::Failed(m),
    }
}

impl Sandbox {
    fn store(&self) -> wasmtime::Result<&SledStore> {
        self.caps
            .store
            .as_deref()
            .ok_or_else(|| wasmtime::Error::msg("no key-value store in this host"))
    }
}

/// Host imports. A store failure traps the call (the event fails) rather than answering
/// "absent": a plugin must not decide on state it could not read.
impl host::Host for Sandbox {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.host_calls += 1;
        let plugin = self.plugin.as_str();
        let message: String = message.chars().take(4096).collect();
        match level {
            Level::Trace => tracing::trace!(target: "steward::plugin", plugin, "{message}"),
            Level::Debug => tracing::debug!(target: "steward::plugin", plugin, "{message}"),
            Level::Info => tracing::info!(target: "steward::plugin", plugin, "{message}"),
            Level::Warn => tracing::warn!(target: "steward::plugin", plugin, "{message}"),
            Level::Error => tracing::error!(target: "steward::plugin", plugin, "{message}"),
        }
        Ok(())
    }

    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        self.host_calls += 1;
        Ok(unix_ms())
    }

    fn random_bytes(&mut self, len: u32) -> wasmtime::Result<Vec<u8>> {
        self.host_calls += 1;
        if len > MAX_RANDOM_BYTES {
            return Err(wasmtime::Error::msg(format!(
                "random-bytes: {len} bytes asked, at most {MAX_RANDOM_BYTES}"
            )));
        }
        let mut buf = vec![0; len as usize];
        openssl::rand::rand_bytes(&mut buf)
            .map_err(|e| wasmtime::Error::msg(format!("random-bytes: {e}")))?;
        Ok(buf)
    }

    fn kv_get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        self.host_calls += 1;
        let store = self.store()?;
        store
            .plugin_kv_get(&self.plugin, &key)
            .map_err(|e| wasmtime::Error::msg(format!("kv-get: {e}")))
    }

    fn kv_list(&mut self, prefix: String, limit: u32) -> wasmtime::Result<Vec<String>> {
        self.host_calls += 1;
        let store = self.store()?;
        store
            .plugin_kv_keys(&self.plugin, &prefix, limit.min(MAX_KV_LIST) as usize)
            .map_err(|e| wasmtime::Error::msg(format!("kv-list: {e}")))
    }

    fn cose_sign(
        &mut self,
        key: String,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, HostError>> {
        self.host_calls += 1;
        Ok(self
            .caps
            .keys
            .sign(&self.plugin, &key, &payload)
            .map_err(key_error))
    }

    fn cose_verify(
        &mut self,
        key: String,
        message: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, HostError>> {
        self.host_calls += 1;
        Ok(self
            .caps
            .keys
            .verify(&self.plugin, &key, &message)
            .map_err(key_error))
    }

    fn certificate_verify(
        &mut self,
        chain: Vec<Vec<u8>>,
    ) -> wasmtime::Result<Result<CertificateInfo, HostError>> {
        self.host_calls += 1;
        let Some(pki) = &self.caps.pki else {
            return Ok(Err(HostError::Denied("this server has no CA".into())));
        };
        if chain.is_empty() || chain.len() > 8 {
            return Ok(Err(HostError::Invalid(
                "a chain has 1 to 8 certificates".into(),
            )));
        }
        let verified = pki
            .verify_operational_chain(&chain, &[])
            .or_else(|operational| pki.verify_bootstrap_chain(&chain).map_err(|_| operational));
        Ok(match verified {
            Ok(_) => certificate_info(&chain[0]),
            Err(e) => Err(HostError::Failed(e.to_string())),
        })
    }

    fn certificate_issue(
        &mut self,
        csr: Vec<u8>,
        profile: String,
    ) -> wasmtime::Result<Result<Vec<u8>, HostError>> {
        self.host_calls += 1;
        let Some(pki) = &self.caps.pki else {
            return Ok(Err(HostError::Denied("this server has no CA".into())));
        };
        Ok(pki
            .issue_for_plugin(&self.plugin, &csr, &profile)
            .map_err(|e| match e {
                steward_pki::est::EstRefusal::BadRequest(m)
                | steward_pki::est::EstRefusal::TooLarge(m) => HostError::Invalid(m),
                other => HostError::Failed(other.to_string()),
            }))
    }
}

fn certificate_info(der: &[u8]) -> Result<CertificateInfo, HostError> {
    let cert = openssl::x509::X509::from_der(der)
        .map_err(|e| HostError::Invalid(format!("leaf certificate: {e}")))?;
    let name = |n: &openssl::x509::X509NameRef| {
        n.entries()
            .filter_map(|e| {
                let key = e.object().nid().short_name().ok()?;
                let value = e.data().to_string().ok()?;
                Some(format!("{key}={value}"))
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let serial = cert
        .serial_number()
        .to_bn()
        .and_then(|bn| bn.to_hex_str().map(|s| s.to_lowercase()))
        .map_err(|e| HostError::Failed(format!("serial: {e}")))?;
    let epoch = openssl::asn1::Asn1Time::from_unix(0)
        .map_err(|e| HostError::Failed(format!("time: {e}")))?;
    let not_after = epoch
        .diff(cert.not_after())
        .map(|d| i64::from(d.days) * 86_400 + i64::from(d.secs))
        .map_err(|e| HostError::Failed(format!("notAfter: {e}")))?;
    Ok(CertificateInfo {
        subject: name(cert.subject_name()),
        issuer: name(cert.issuer_name()),
        serial,
        not_after,
    })
}
