//! The loaded plugins: loading a directory, the routing table (who owns which object),
//! calls with quarantine, reload and disable.
//!
//! # Loading
//!
//! Every `*.wasm` file of the plugin directory, in name order: read, hash (SHA-256), check
//! the signed manifest `X.wasm.manifest` if there is one (mandatory with `require_signed`),
//! compile (once per digest: an unchanged file is not compiled again on reload, and wasmtime's
//! on-disk cache keeps the machine code between runs), link (an import the host does not
//! grant refuses the component here, before any of its code runs), call `describe()` and
//! parse it. A plugin whose name or objects collide with one accepted before it is refused
//! with both names in the message. Plugins already running are accepted first, so a new file
//! cannot take over a running plugin's objects; at start the order is the file names'.
//!
//! # Reload
//!
//! A reload builds a complete new routing table and swaps it in one step. Calls already
//! running hold the old plugin (an `Arc`) and finish on it. A file that fails to load on
//! reload keeps its previous version running, so a bad upload cannot take a working plugin
//! down.
//!
//! # Failures and quarantine
//!
//! A trap, a deadline or memory overrun, a `failed` error or an effect the plugin may not ask
//! for fails the event. After `max_failures` failures in a row the plugin is quarantined:
//! it gets no events for `quarantine_base`, doubling with each further quarantine up to
//! `quarantine_max`. The first success after a quarantine clears the back-off. `rejected`
//! errors are the caller's fault and count for nothing.

use crate::hex::encode as hex;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use steward_objects::{ModelRegistry, ObjectModel};

use super::bindings::PluginPre;
use super::bindings::steward::plugin::types::{Event, PluginError};
use super::describe::{self, PluginInfo};
use super::effects::{self, Planned};
use super::manifest;
use super::sandbox::{CallError, Capabilities, Limits, LoadError, Sandbox, Sandboxes};
use crate::clock::unix_ms;
use crate::store::SledStore;

/// How the host loads and limits plugins.
#[derive(Debug, Clone, PartialEq)]
pub struct HostConfig {
    /// Where the `*.wasm` components (and their `.manifest` files) are.
    pub dir: PathBuf,
    /// `<keys_dir>/<plugin>/<key>.pem`: the keys plugins sign and verify with.
    pub keys_dir: PathBuf,
    /// wasmtime's compile cache; `None` compiles on every start.
    pub cache_dir: Option<PathBuf>,
    /// Refuse components without a valid manifest from a trusted signer.
    pub require_signed: bool,
    pub limits: Limits,
    pub max_failures: u32,
    pub quarantine_base: Duration,
    pub quarantine_max: Duration,
}

impl HostConfig {
    /// The defaults for a data directory: `plugins/`, `plugin-keys/`, `plugin-cache/`.
    pub fn in_data_dir(data_dir: &Path) -> HostConfig {
        HostConfig {
            dir: data_dir.join("plugins"),
            keys_dir: data_dir.join("plugin-keys"),
            cache_dir: Some(data_dir.join("plugin-cache")),
            require_signed: false,
            limits: Limits::default(),
            max_failures: 3,
            quarantine_base: Duration::from_secs(1),
            quarantine_max: Duration::from_secs(300),
        }
    }

    /// Trusted manifest signers: `<dir>/signers/<name>.pem`.
    pub fn signers_dir(&self) -> PathBuf {
        self.dir.join("signers")
    }
}

/// A plugin that loaded: its description, where it came from, its linked component.
pub struct LoadedPlugin {
    pub info: PluginInfo,
    pub file: PathBuf,
    pub sha256: [u8; 32],
    /// The manifest's signer, when the component came with one.
    pub signer: Option<String>,
    pub loaded_at_ms: u64,
    pre: PluginPre<Sandbox>,
}

impl LoadedPlugin {
    pub fn name(&self) -> &str {
        self.info.name.as_str()
    }

    pub fn digest_hex(&self) -> String {
        hex(&self.sha256)
    }
}

/// Who owns what, as one immutable value swapped on reload.
#[derive(Default)]
pub struct Routing {
    plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    owners: HashMap<u16, String>,
}

impl Routing {
    pub fn plugins(&self) -> impl Iterator<Item = &Arc<LoadedPlugin>> {
        self.plugins.values()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<LoadedPlugin>> {
        self.plugins.get(name)
    }

    /// The plugin owning `object`.
    pub fn owner(&self, object: u16) -> Option<&Arc<LoadedPlugin>> {
        self.plugins.get(self.owners.get(&object)?)
    }
}

/// A component the last load refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Refusal {
    pub file: String,
    pub reason: String,
}

/// Why an event did not produce effects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventFailure {
    #[error("plugin {0} is disabled")]
    Disabled(String),
    #[error("plugin {plugin} is quarantined for {remaining_ms} ms after repeated failures")]
    Quarantined { plugin: String, remaining_ms: u64 },
    #[error("plugin {plugin} {error}")]
    Sandbox { plugin: String, error: CallError },
    #[error("plugin {plugin} refused the event: {reason}")]
    Rejected { plugin: String, reason: String },
    #[error("plugin {plugin} failed: {reason}")]
    Failed { plugin: String, reason: String },
    #[error("plugin {plugin} asked for what it may not do: {reason}")]
    Effect { plugin: String, reason: String },
    #[error("plugin {plugin}: {reason}")]
    Host { plugin: String, reason: String },
}

/// Health of one plugin (by name, across reloads).
#[derive(Debug, Clone, Default)]
struct Health {
    disabled: bool,
    failures_in_row: u32,
    quarantines: u32,
    quarantined_until: Option<Instant>,
    events_ok: u64,
    events_failed: u64,
    events_rejected: u64,
    last_error: Option<String>,
}

/// One plugin as the API shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PluginStatus {
    pub name: String,
    pub version: String,
    pub file: String,
    pub sha256: String,
    pub signer: Option<String>,
    pub objects: Vec<u16>,
    pub events: Vec<&'static str>,
    /// `active`, `disabled` or `quarantined`.
    pub state: &'static str,
    pub quarantined_for_ms: Option<u64>,
    pub events_ok: u64,
    pub events_failed: u64,
    pub events_rejected: u64,
    pub last_error: Option<String>,
    pub loaded_at_ms: u64,
}

/// The result of a (re)load.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct LoadReport {
    pub loaded: Vec<String>,
    pub refused: Vec<Refusal>,
}

/// Timing of one load, for the benchmarks.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadTiming {
    pub prepare: Duration,
    pub describe: Duration,
}

pub struct PluginHost {
    config: HostConfig,
    sandboxes: Sandboxes,
    caps: Arc<Capabilities>,
    core: ModelRegistry,
    store: Option<Arc<SledStore>>,
    routing: RwLock<Arc<Routing>>,
    health: Mutex<HashMap<String, Health>>,
    compiled: Mutex<HashMap<[u8; 32], PluginPre<Sandbox>>>,
    refused: Mutex<Vec<Refusal>>,
    /// One load at a time (start, API, CLI).
    loading: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PluginHost {
    /// A host with no plugin loaded yet ([`PluginHost::load`] loads the directory).
    pub fn new(
        config: HostConfig,
        store: Option<Arc<SledStore>>,
        pki: Option<crate::pki::PkiService>,
    ) -> Result<PluginHost, LoadError> {
        if let Some(dir) = &config.cache_dir
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot create the plugin compile cache");
        }
        let sandboxes = Sandboxes::new(config.limits.clone(), config.cache_dir.as_deref())?;
        let caps = Arc::new(Capabilities {
            store: store.clone(),
            keys: super::keys::Keyring::new(config.keys_dir.clone()),
            pki,
        });
        Ok(PluginHost {
            config,
            sandboxes,
            caps,
            core: ModelRegistry::core(),
            store,
            routing: RwLock::new(Arc::new(Routing::default())),
            health: Mutex::new(HashMap::new()),
            compiled: Mutex::new(HashMap::new()),
            refused: Mutex::new(Vec::new()),
            loading: Mutex::new(()),
        })
    }

    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// The routing table now.
    pub fn routing(&self) -> Arc<Routing> {
        Arc::clone(&self.routing.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The models of every owned object (merged into the server's registry).
    pub fn models(&self) -> Vec<ObjectModel> {
        self.routing()
            .plugins()
            .flat_map(|p| p.info.objects.iter().map(|o| o.model.clone()))
            .collect()
    }

    /// Whether `object` is one the server itself ships (anyone may read those).
    pub fn is_core(&self, object: u16) -> bool {
        self.core.latest(object).is_some()
    }

    /// (Re)loads the plugin directory and swaps the routing table. A missing directory means
    /// no plugins.
    pub fn load(&self) -> LoadReport {
        let _one = lock(&self.loading);
        let old = self.routing();
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&self.config.dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "wasm"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                let refusal = Refusal {
                    file: self.config.dir.display().to_string(),
                    reason: format!("cannot read the plugin directory: {e}"),
                };
                tracing::error!(dir = %refusal.file, reason = %refusal.reason, "plugins not loaded");
                *lock(&self.refused) = vec![refusal.clone()];
                return LoadReport {
                    loaded: old.plugins.keys().cloned().collect(),
                    refused: vec![refusal],
                };
            }
        };
        // Describe every file first, then accept in this order: the plugins running now, then
        // those that owned objects before the last restart (recorded in the store), then the
        // rest by file name. A newcomer never takes a running or previous owner's objects,
        // whatever its file is called.
        files.sort();
        let previous_owners = self
            .store
            .as_ref()
            .and_then(|s| s.plugin_owners().ok())
            .unwrap_or_default();
        let mut candidates: Vec<(PathBuf, Result<Arc<LoadedPlugin>, String>)> = files
            .into_iter()
            .map(|f| {
                let loaded = self.load_file(&f).map(|(p, _)| p);
                (f, loaded)
            })
            .collect();
        let rank = |file: &PathBuf, loaded: &Result<Arc<LoadedPlugin>, String>| {
            let name = loaded.as_ref().ok().map(|p| p.name().to_owned());
            let running = old.plugins().any(|p| &p.file == file)
                || name.as_ref().is_some_and(|n| old.plugins.contains_key(n));
            let owned_before = name
                .as_ref()
                .is_some_and(|n| previous_owners.values().any(|o| o == n));
            (!running, !owned_before)
        };
        candidates.sort_by_cached_key(|(f, l)| (rank(f, l), f.clone()));
        let mut next = Routing::default();
        let mut refused = Vec::new();
        for (file, loaded) in candidates {
            let loaded = loaded.and_then(|p| accept(&next, p));
            let plugin = match loaded {
                Ok(p) => p,
                Err(reason) => {
                    tracing::error!(file = %file.display(), %reason, "plugin refused");
                    refused.push(Refusal {
                        file: file.display().to_string(),
                        reason,
                    });
                    // Keep the version that ran before, if it still fits.
                    match old.plugins().find(|p| p.file == file).map(Arc::clone) {
                        Some(previous) => match accept(&next, previous) {
                            Ok(p) => {
                                tracing::warn!(plugin = p.name(), "keeping the previous version");
                                p
                            }
                            Err(_) => continue,
                        },
                        None => continue,
                    }
                }
            };
            for o in &plugin.info.objects {
                next.owners.insert(o.id, plugin.name().to_owned());
            }
            next.plugins.insert(plugin.name().to_owned(), plugin);
        }
        refused.sort_by(|a, b| a.file.cmp(&b.file));
        if let Some(store) = &self.store
            && let Err(e) = store.plugin_set_owners(&next.owners)
        {
            tracing::error!(error = %e, "cannot record which plugin owns which object");
        }
        // Disabled flags live in the store, so they survive restarts.
        {
            let mut health = lock(&self.health);
            for name in next.plugins.keys() {
                let disabled = self
                    .store
                    .as_ref()
                    .is_some_and(|s| s.plugin_disabled(name).unwrap_or(false));
                health.entry(name.clone()).or_default().disabled = disabled;
            }
        }
        let report = LoadReport {
            loaded: next.plugins.keys().cloned().collect(),
            refused: refused.clone(),
        };
        for p in next.plugins() {
            tracing::info!(
                plugin = p.name(),
                version = %p.info.version,
                objects = ?p.info.object_ids(),
                sha256 = %p.digest_hex(),
                "plugin loaded"
            );
        }
        *self.routing.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
        *lock(&self.refused) = refused;
        report
    }

    /// Loads one component without routing it (used by [`PluginHost::load`] and the
    /// benchmarks).
    pub fn load_file(&self, file: &Path) -> Result<(Arc<LoadedPlugin>, LoadTiming), String> {
        let bytes = std::fs::read(file).map_err(|e| format!("cannot read: {e}"))?;
        let sha256 = manifest::sha256(&bytes);
        let manifest_file = PathBuf::from(format!("{}.manifest", file.display()));
        let manifest = match std::fs::read(&manifest_file) {
            Ok(m) => Some(
                manifest::verify_manifest(&m, &bytes, &self.config.signers_dir())
                    .map_err(|e| format!("manifest: {e}"))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.config.require_signed {
                    return Err(format!(
                        "no signed manifest ({}) and signed plugins are required",
                        manifest_file.display()
                    ));
                }
                None
            }
            Err(e) => return Err(format!("cannot read {}: {e}", manifest_file.display())),
        };
        let mut timing = LoadTiming::default();
        let started = Instant::now();
        let cached = lock(&self.compiled).get(&sha256).cloned();
        let pre = match cached {
            Some(pre) => pre,
            None => {
                let pre = self.sandboxes.prepare(&bytes).map_err(|e| e.to_string())?;
                lock(&self.compiled).insert(sha256, pre.clone());
                pre
            }
        };
        timing.prepare = started.elapsed();
        let started = Instant::now();
        let label = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let description = self
            .sandboxes
            .describe(&pre, &label, &self.caps)
            .map_err(|e| LoadError::Describe(e).to_string())?;
        timing.describe = started.elapsed();
        let info = describe::parse(description, &self.core)
            .map_err(|e| format!("malformed describe(): {e}"))?;
        if let Some(m) = &manifest
            && m.name != info.name.as_str()
        {
            return Err(format!(
                "manifest is for plugin {:?}, the component says it is {:?}",
                m.name,
                info.name.as_str()
            ));
        }
        Ok((
            Arc::new(LoadedPlugin {
                info,
                file: file.to_path_buf(),
                sha256,
                signer: manifest.map(|m| m.signer),
                loaded_at_ms: unix_ms(),
                pre,
            }),
            timing,
        ))
    }

    /// Runs one event on `plugin` (blocking: call from a blocking thread) and checks the
    /// effects. Updates the plugin's health.
    pub fn call(&self, plugin: &LoadedPlugin, event: &Event) -> Result<Planned, EventFailure> {
        let name = plugin.name().to_owned();
        {
            let mut health = lock(&self.health);
            let h = health.entry(name.clone()).or_default();
            if h.disabled {
                return Err(EventFailure::Disabled(name));
            }
            if let Some(until) = h.quarantined_until {
                let now = Instant::now();
                if until > now {
                    return Err(EventFailure::Quarantined {
                        plugin: name,
                        remaining_ms: u64::try_from((until - now).as_millis()).unwrap_or(u64::MAX),
                    });
                }
            }
        }
        let outcome = match self.sandboxes.handle(&plugin.pre, &name, &self.caps, event) {
            Err(error) => Err(EventFailure::Sandbox {
                plugin: name.clone(),
                error,
            }),
            Ok(Err(PluginError::Rejected(reason))) => Err(EventFailure::Rejected {
                plugin: name.clone(),
                reason,
            }),
            Ok(Err(PluginError::Failed(reason))) => Err(EventFailure::Failed {
                plugin: name.clone(),
                reason,
            }),
            Ok(Ok(effects)) => {
                effects::plan(&plugin.info, effects, &|o| self.is_core(o), unix_ms()).map_err(|e| {
                    EventFailure::Effect {
                        plugin: name.clone(),
                        reason: e.to_string(),
                    }
                })
            }
        };
        self.record(&name, &outcome);
        outcome
    }

    /// Counts an event's outcome (also for failures found after the call, such as a store
    /// write that failed).
    pub fn record(&self, name: &str, outcome: &Result<Planned, EventFailure>) {
        let mut health = lock(&self.health);
        let h = health.entry(name.to_owned()).or_default();
        match outcome {
            Ok(_) => {
                h.events_ok += 1;
                h.failures_in_row = 0;
                h.quarantines = 0;
                h.quarantined_until = None;
            }
            Err(EventFailure::Rejected { .. }) => h.events_rejected += 1,
            Err(EventFailure::Disabled(_) | EventFailure::Quarantined { .. }) => {}
            Err(e) => {
                h.events_failed += 1;
                h.failures_in_row += 1;
                h.last_error = Some(e.to_string());
                tracing::warn!(plugin = name, error = %e, failures_in_row = h.failures_in_row, "plugin event failed");
                if h.failures_in_row >= self.config.max_failures.max(1) {
                    let backoff = self
                        .config
                        .quarantine_base
                        .saturating_mul(1 << h.quarantines.min(16))
                        .min(self.config.quarantine_max);
                    h.quarantines += 1;
                    h.failures_in_row = 0;
                    h.quarantined_until = Some(Instant::now() + backoff);
                    tracing::error!(
                        plugin = name,
                        ?backoff,
                        quarantines = h.quarantines,
                        "plugin quarantined after repeated failures"
                    );
                }
            }
        }
    }

    /// Disables (or enables) a plugin; remembered in the store across restarts. False when
    /// no plugin of that name is loaded.
    pub fn set_disabled(&self, name: &str, disabled: bool) -> Result<bool, String> {
        if self.routing().get(name).is_none() {
            return Ok(false);
        }
        if let Some(store) = &self.store {
            store
                .plugin_set_disabled(name, disabled)
                .map_err(|e| format!("cannot record the change: {e}"))?;
        }
        let mut health = lock(&self.health);
        let h = health.entry(name.to_owned()).or_default();
        h.disabled = disabled;
        if !disabled {
            // An operator's enable is a fresh start.
            h.quarantined_until = None;
            h.quarantines = 0;
            h.failures_in_row = 0;
        }
        tracing::info!(
            plugin = name,
            disabled,
            "plugin state changed by the operator"
        );
        Ok(true)
    }

    /// Whether `name` is loaded and not disabled: the plugins whose bootstrap offers are
    /// written. A quarantined plugin's offers still are: quarantine is about its event
    /// handling, and an offer is a decision it already made.
    pub fn is_offering(&self, name: &str) -> bool {
        self.routing().get(name).is_some()
            && !lock(&self.health).get(name).is_some_and(|h| h.disabled)
    }

    /// Every loaded plugin with its health.
    pub fn status(&self) -> Vec<PluginStatus> {
        let routing = self.routing();
        let health = lock(&self.health);
        let now = Instant::now();
        routing
            .plugins()
            .map(|p| {
                let h = health.get(p.name()).cloned().unwrap_or_default();
                let quarantined_for = h.quarantined_until.filter(|u| *u > now).map(|u| u - now);
                PluginStatus {
                    name: p.name().to_owned(),
                    version: p.info.version.to_string(),
                    file: p.file.display().to_string(),
                    sha256: p.digest_hex(),
                    signer: p.signer.clone(),
                    objects: p.info.object_ids(),
                    events: describe::event_names(p.info.events),
                    state: if h.disabled {
                        "disabled"
                    } else if quarantined_for.is_some() {
                        "quarantined"
                    } else {
                        "active"
                    },
                    quarantined_for_ms: quarantined_for
                        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                    events_ok: h.events_ok,
                    events_failed: h.events_failed,
                    events_rejected: h.events_rejected,
                    last_error: h.last_error,
                    loaded_at_ms: p.loaded_at_ms,
                }
            })
            .collect()
    }

    /// What the last load refused.
    pub fn refused(&self) -> Vec<Refusal> {
        lock(&self.refused).clone()
    }

    pub fn store(&self) -> Option<&Arc<SledStore>> {
        self.store.as_ref()
    }
}

/// Adds `plugin` to the table being built, unless its name or an object is taken.
fn accept(next: &Routing, plugin: Arc<LoadedPlugin>) -> Result<Arc<LoadedPlugin>, String> {
    if let Some(other) = next.plugins.get(plugin.name()) {
        return Err(format!(
            "plugin name {} is already used by {}",
            plugin.name(),
            other.file.display()
        ));
    }
    for o in &plugin.info.objects {
        if let Some(owner) = next.owners.get(&o.id) {
            return Err(format!(
                "plugin {} claims object {}, which plugin {owner} already owns",
                plugin.name(),
                o.id
            ));
        }
    }
    Ok(plugin)
}
