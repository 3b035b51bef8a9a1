//! The asynchronous side of the plugin host: what happens to devices becomes events for the
//! plugins that own the objects involved, and the effects plugins return are carried out.
//!
//! ```text
//!  Devices::events ─┐                          per plugin, in order:
//!  bootstrap  ──────┼─► route ─► queue(plugin) ─► call (blocking pool, fresh instance)
//!  timers, API ─────┘                 ▲           ─► key-value writes and bootstrap offers
//!                                     │              (one transaction, fsync)
//!                                     │           ─► requests, audit, API events, timers
//!                  Response events ───┘ (when a request's outcome arrives)
//! ```
//!
//! Bootstrap offers ([`super::offers`]) are durable before the event counts as handled, like
//! key-value writes and in the same transaction; the per-plugin cap is checked then, and a
//! plugin over it fails the event as for any forbidden effect. The device's answer to an
//! offer comes back from the Bootstrap-Server as `offer-answered`, always delivered to the
//! offering plugin (it answers the plugin's own decision, as `response` does). Expired offers
//! are pruned every [`PRUNE_EVERY`].
//!
//! Each plugin has one queue and one worker, so a plugin sees its events one at a time and
//! in order: its key-value reads always see the writes of the events before. A plugin that is
//! slow or stuck delays only itself; a full queue drops device events (logged and counted)
//! and answers operator commands with "busy".

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use steward_objects::link::ObjectLinks;
use steward_objects::{Path, TimestampedNodes};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::bindings::steward::plugin::types::OfferAnswer;
use super::bindings::steward::plugin::types::{
    BootstrapRequest, Command, Device, Entry, Event, EventKinds, Notification, RequestError,
    Response, ResponseBody, SendData, Timer,
};
use super::convert;
use super::effects::{Action, PlannedRequest};
use super::host::{EventFailure, LoadReport, LoadedPlugin, PluginHost};
use super::offers::{ApplyError, PluginOffers};
use crate::clock::unix_ms;
use crate::devices::{DeviceEvent, DeviceEvents, Devices};
use crate::dm::{DmError, DownlinkRequest, DownlinkResponse, Ticket};
use crate::store::PluginTimer;

/// Events waiting per plugin before device events are dropped. A fleet that recovers at once
/// brings a plugin about four events per device within seconds (bootstrap request, offer
/// answer, registration, read response): 10 000 devices must fit. A queued event is a few
/// hundred bytes.
const QUEUE: usize = 65_536;
/// How long a plugin's device request may take, queueing for a sleeping device included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How often expired bootstrap offers are removed (sessions skip them in between).
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// An event for the API's stream (`PLUGIN`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PluginApiEvent {
    pub plugin: String,
    pub kind: String,
    pub data: serde_json::Value,
}

/// A device asked the bootstrap server for its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapRequested {
    pub endpoint: String,
    /// `coap` or `coaps`.
    pub transport: &'static str,
    /// A session started (false: refused, e.g. no configuration).
    pub accepted: bool,
}

/// A device answered a plugin's bootstrap offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferAnswered {
    pub plugin: String,
    pub offer: String,
    pub endpoint: String,
    /// "2.04", "4.04" ...
    pub code: String,
    pub diagnostic: String,
}

/// What the Bootstrap-Server tells the plugins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapNotice {
    Requested(BootstrapRequested),
    OfferAnswered(OfferAnswered),
}

/// Why an operator command got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("no plugin named {0:?} is loaded")]
    NoSuchPlugin(String),
    #[error("plugin {0} does not take commands")]
    NoCommands(String),
    #[error("plugin {0} has too many events waiting; try again")]
    Busy(String),
    #[error("plugin {0} did not answer in time")]
    Timeout(String),
    #[error(transparent)]
    Failed(#[from] EventFailure),
}

struct Job {
    event: Event,
    reply: Option<oneshot::Sender<Result<Option<serde_json::Value>, EventFailure>>>,
}

/// Counters for the metrics endpoint and the benchmarks.
#[derive(Debug, Default)]
pub struct DispatchCounters {
    pub events: AtomicU64,
    pub dropped: AtomicU64,
    pub requests: AtomicU64,
}

struct Inner {
    host: Arc<PluginHost>,
    offers: Arc<PluginOffers>,
    devices: Devices,
    queues: Mutex<HashMap<String, mpsc::Sender<Job>>>,
    api_events: broadcast::Sender<PluginApiEvent>,
    timers: Mutex<HashMap<(String, String), tokio::task::AbortHandle>>,
    /// Observations plugins made: ticket → (plugin, correlation).
    observations: Mutex<HashMap<Ticket, (String, String)>>,
    /// Which plugins were told a device registered (so they hear when it goes).
    seen: Mutex<HashMap<String, Vec<String>>>,
    counters: DispatchCounters,
    /// Set at shutdown: nothing more is queued.
    closed: std::sync::atomic::AtomicBool,
    /// The workers and routing loops, awaited at shutdown.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// The running dispatcher. Cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Dispatcher {
    /// Starts routing `devices`' events and the Bootstrap-Server's notices to the plugins of
    /// `host`, re-arms the timers stored by the previous run, and prunes `offers` (which the
    /// plugins' effects change) from time to time. Needs a tokio runtime.
    pub fn start(
        host: Arc<PluginHost>,
        offers: Arc<PluginOffers>,
        devices: Devices,
        bootstrap: Option<broadcast::Receiver<BootstrapNotice>>,
        stop: watch::Receiver<bool>,
    ) -> Dispatcher {
        let (api_events, _) = broadcast::channel(1024);
        let dispatcher = Dispatcher {
            inner: Arc::new(Inner {
                host,
                offers,
                devices: devices.clone(),
                queues: Mutex::new(HashMap::new()),
                api_events,
                timers: Mutex::new(HashMap::new()),
                observations: Mutex::new(HashMap::new()),
                seen: Mutex::new(HashMap::new()),
                counters: DispatchCounters::default(),
                closed: std::sync::atomic::AtomicBool::new(false),
                tasks: Mutex::new(Vec::new()),
            }),
        };
        // Devices registered before this start (restored from the store) are known to the
        // plugins that own their objects, so their deregistration reaches them.
        for r in devices.registrations() {
            let owners = dispatcher.inner.owners_of_links(&r.object_links);
            if !owners.is_empty() {
                lock(&dispatcher.inner.seen).insert(r.endpoint.clone(), owners);
            }
        }
        let mut tasks = vec![tokio::spawn(
            Arc::clone(&dispatcher.inner).device_events(devices.events(), stop.clone()),
        )];
        if let Some(rx) = bootstrap {
            tasks.push(tokio::spawn(
                Arc::clone(&dispatcher.inner).bootstrap_notices(rx, stop.clone()),
            ));
        }
        tasks.push(tokio::spawn(prune_offers(
            Arc::clone(&dispatcher.inner.offers),
            stop.clone(),
        )));
        lock(&dispatcher.inner.tasks).extend(tasks);
        dispatcher.inner.restore_timers();
        dispatcher
    }

    pub fn host(&self) -> &Arc<PluginHost> {
        &self.inner.host
    }

    /// The plugins' bootstrap offers.
    pub fn offers(&self) -> &Arc<PluginOffers> {
        &self.inner.offers
    }

    pub fn counters(&self) -> &DispatchCounters {
        &self.inner.counters
    }

    /// The plugins' events for the API stream.
    pub fn api_events(&self) -> broadcast::Receiver<PluginApiEvent> {
        self.inner.api_events.subscribe()
    }

    /// Stops taking events, lets every plugin finish the event it is handling (its key-value
    /// writes land), drops the timers (they are in the store) and waits for the workers.
    /// `stop` (given to [`Dispatcher::start`]) must have fired, or the routing loops keep
    /// running.
    pub async fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        lock(&self.inner.queues).clear();
        for (_, timer) in lock(&self.inner.timers).drain() {
            timer.abort();
        }
        let tasks = std::mem::take(&mut *lock(&self.inner.tasks));
        let wait = self.inner.host.config().limits.deadline + Duration::from_secs(10);
        for task in tasks {
            if tokio::time::timeout(wait, task).await.is_err() {
                tracing::warn!("a plugin worker did not stop in time");
            }
        }
    }

    /// Reloads the plugin directory, then gives the device-management service the models of
    /// the objects the new set owns.
    pub async fn reload(&self) -> LoadReport {
        let host = Arc::clone(&self.inner.host);
        let report = tokio::task::spawn_blocking(move || host.load())
            .await
            .unwrap_or_else(|e| LoadReport {
                loaded: Vec::new(),
                refused: vec![super::host::Refusal {
                    file: String::new(),
                    reason: format!("reload task failed: {e}"),
                }],
            });
        self.inner.devices.add_models(self.inner.host.models());
        report
    }

    /// Sends an operator command to `plugin` and waits for its reply (`None`: the plugin
    /// handled it without a `reply` effect).
    pub async fn command(
        &self,
        plugin: &str,
        name: &str,
        argument: &serde_json::Value,
    ) -> Result<Option<serde_json::Value>, CommandError> {
        let routing = self.inner.host.routing();
        let Some(p) = routing.get(plugin) else {
            return Err(CommandError::NoSuchPlugin(plugin.to_owned()));
        };
        if !p.info.events.contains(EventKinds::COMMAND) {
            return Err(CommandError::NoCommands(plugin.to_owned()));
        }
        let (tx, rx) = oneshot::channel();
        let job = Job {
            event: Event::Command(Command {
                name: name.to_owned(),
                argument: argument.to_string(),
            }),
            reply: Some(tx),
        };
        if !self.inner.enqueue(plugin, job) {
            return Err(CommandError::Busy(plugin.to_owned()));
        }
        let wait = self.inner.host.config().limits.deadline + Duration::from_secs(30);
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(result)) => Ok(result?),
            _ => Err(CommandError::Timeout(plugin.to_owned())),
        }
    }
}

impl Inner {
    /// Queues `job` for `plugin`, starting its worker on first use. False when the queue is
    /// full.
    fn enqueue(self: &Arc<Self>, plugin: &str, job: Job) -> bool {
        if self.closed.load(Ordering::SeqCst) {
            return false;
        }
        let mut queues = lock(&self.queues);
        let tx = queues.entry(plugin.to_owned()).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            let worker = tokio::spawn(Arc::clone(self).worker(plugin.to_owned(), rx));
            lock(&self.tasks).push(worker);
            tx
        });
        match tx.try_send(job) {
            Ok(()) => {
                self.counters.events.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(_) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(plugin, "plugin event queue full; event dropped");
                false
            }
        }
    }

    fn send_event(self: &Arc<Self>, plugin: &str, event: Event) {
        self.enqueue(plugin, Job { event, reply: None });
    }

    async fn worker(self: Arc<Self>, plugin: String, mut rx: mpsc::Receiver<Job>) {
        while let Some(job) = rx.recv().await {
            let result = self.run(&plugin, job.event).await;
            if let Err(e) = &result
                && job.reply.is_none()
            {
                tracing::debug!(plugin, error = %e, "plugin event not handled");
            }
            if let Some(reply) = job.reply {
                let _ = reply.send(result);
            }
        }
    }

    /// One event: the call on the blocking pool (the current version of the plugin; a reload
    /// while it runs does not disturb it), then its effects.
    async fn run(
        self: &Arc<Self>,
        plugin: &str,
        event: Event,
    ) -> Result<Option<serde_json::Value>, EventFailure> {
        let Some(loaded) = self.host.routing().get(plugin).cloned() else {
            return Err(EventFailure::Host {
                plugin: plugin.to_owned(),
                reason: "not loaded".into(),
            });
        };
        let host = Arc::clone(&self.host);
        let call = {
            let loaded = Arc::clone(&loaded);
            tokio::task::spawn_blocking(move || host.call(&loaded, &event))
        };
        let mut planned = call.await.map_err(|e| EventFailure::Host {
            plugin: plugin.to_owned(),
            reason: format!("call task failed: {e}"),
        })??;
        if !planned.offers.is_empty() {
            let offers = Arc::clone(&self.offers);
            let name = plugin.to_owned();
            let kv = std::mem::take(&mut planned.kv);
            let changes = std::mem::take(&mut planned.offers);
            let applied =
                tokio::task::spawn_blocking(move || offers.apply(&name, &kv, changes, unix_ms()))
                    .await;
            let failure = match applied {
                Ok(Ok(())) => None,
                // Over the cap: the plugin asked for what it may not do.
                Ok(Err(ApplyError::Refused(e))) => Some(EventFailure::Effect {
                    plugin: plugin.to_owned(),
                    reason: e.to_string(),
                }),
                Ok(Err(e)) => Some(EventFailure::Host {
                    plugin: plugin.to_owned(),
                    reason: format!("bootstrap offers and key-value writes not applied: {e}"),
                }),
                Err(e) => Some(EventFailure::Host {
                    plugin: plugin.to_owned(),
                    reason: format!("offer task failed: {e}"),
                }),
            };
            if let Some(failure) = failure {
                // Nothing else of the event is applied (as for a failed key-value write).
                self.host.record(plugin, &Err(failure.clone()));
                return Err(failure);
            }
        }
        if !planned.kv.is_empty() {
            let Some(store) = self.host.store().cloned() else {
                return Err(self.fail(plugin, "no key-value store in this host".into()));
            };
            let name = plugin.to_owned();
            let kv = planned.kv;
            let written = tokio::task::spawn_blocking(move || store.plugin_kv_apply(&name, &kv))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            if let Err(e) = written {
                // Nothing else of the event is applied: its requests may rely on the state.
                return Err(self.fail(plugin, format!("key-value write failed: {e}")));
            }
        }
        for action in planned.actions {
            self.apply(&loaded, action);
        }
        Ok(planned.reply)
    }

    fn fail(&self, plugin: &str, reason: String) -> EventFailure {
        let failure = EventFailure::Host {
            plugin: plugin.to_owned(),
            reason,
        };
        self.host.record(plugin, &Err(failure.clone()));
        failure
    }

    fn apply(self: &Arc<Self>, plugin: &Arc<LoadedPlugin>, action: Action) {
        let name = plugin.name();
        match action {
            Action::Request(r) => {
                self.counters.requests.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(Arc::clone(self).request(name.to_owned(), r));
            }
            Action::Audit {
                action,
                subject,
                outcome,
                detail,
            } => {
                tracing::info!(
                    target: "steward::audit",
                    plugin = name,
                    action,
                    subject,
                    outcome,
                    detail,
                    "plugin decision"
                );
            }
            Action::Emit { kind, data } => {
                let _ = self.api_events.send(PluginApiEvent {
                    plugin: name.to_owned(),
                    kind,
                    data,
                });
            }
            Action::SetTimer { name: timer, after } => {
                let due_ms =
                    unix_ms().saturating_add(u64::try_from(after.as_millis()).unwrap_or(u64::MAX));
                let record = PluginTimer {
                    plugin: name.to_owned(),
                    name: timer,
                    due_ms,
                };
                if let Some(store) = self.host.store().cloned() {
                    let r = record.clone();
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = store.plugin_timer_put(&r) {
                            tracing::error!(plugin = %r.plugin, timer = %r.name, error = %e, "cannot store a plugin timer; it will not survive a restart");
                        }
                    });
                }
                self.schedule(record);
            }
            Action::CancelTimer(timer) => {
                if let Some(handle) = lock(&self.timers).remove(&(name.to_owned(), timer.clone())) {
                    handle.abort();
                }
                if let Some(store) = self.host.store().cloned() {
                    let plugin = name.to_owned();
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = store.plugin_timer_remove(&plugin, &timer) {
                            tracing::error!(plugin, timer, error = %e, "cannot remove a plugin timer");
                        }
                    });
                }
            }
        }
    }

    /// Sends a plugin's request and hands the outcome back to it as a `response` event.
    async fn request(self: Arc<Self>, plugin: String, r: PlannedRequest) {
        let path = request_path(&r.request);
        let outcome = match self.devices.start(&r.endpoint, r.request, REQUEST_TIMEOUT) {
            Err(e) => Err(e),
            Ok(pending) => {
                let ticket = pending.ticket();
                let outcome = pending.outcome().await;
                if let Ok(answer) = &outcome
                    && answer.establishes_observation()
                {
                    lock(&self.observations)
                        .insert(ticket, (plugin.clone(), r.correlation.clone()));
                }
                outcome
            }
        };
        let outcome = match outcome {
            Ok(answer) => Ok(response_body(path.as_ref(), answer)),
            Err(e) => Err(request_error(&e)),
        };
        self.send_event(
            &plugin,
            Event::Response(Response {
                correlation: r.correlation,
                endpoint: r.endpoint,
                outcome,
            }),
        );
    }

    fn schedule(self: &Arc<Self>, timer: PluginTimer) {
        let key = (timer.plugin.clone(), timer.name.clone());
        let inner = Arc::clone(self);
        let task = tokio::spawn(async move {
            let wait = timer.due_ms.saturating_sub(unix_ms());
            tokio::time::sleep(Duration::from_millis(wait)).await;
            lock(&inner.timers).remove(&(timer.plugin.clone(), timer.name.clone()));
            if let Some(store) = inner.host.store().cloned() {
                let (p, n) = (timer.plugin.clone(), timer.name.clone());
                let _ =
                    tokio::task::spawn_blocking(move || store.plugin_timer_remove(&p, &n)).await;
            }
            let wants = inner
                .host
                .routing()
                .get(&timer.plugin)
                .is_some_and(|p| p.info.events.contains(EventKinds::TIMER));
            if wants {
                inner.send_event(&timer.plugin, Event::Timer(Timer { name: timer.name }));
            }
        });
        if let Some(old) = lock(&self.timers).insert(key, task.abort_handle()) {
            old.abort();
        }
    }

    fn restore_timers(self: &Arc<Self>) {
        let Some(store) = self.host.store() else {
            return;
        };
        match store.plugin_timers() {
            Ok(timers) => {
                for t in timers {
                    self.schedule(t);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the stored plugin timers"),
        }
    }

    /// The plugins owning an object listed in `links` (a Register/Update payload).
    fn owners_of_links(&self, links: &str) -> Vec<String> {
        ObjectLinks::parse(links.as_bytes())
            .map(|parsed| self.owners(&parsed))
            .unwrap_or_default()
    }

    /// Each plugin owning an announced object, once (a plugin may own several of them).
    fn owners(&self, links: &ObjectLinks) -> Vec<String> {
        let routing = self.host.routing();
        let owners: std::collections::BTreeSet<String> = links
            .objects
            .keys()
            .filter_map(|id| routing.owner(*id).map(|p| p.name().to_owned()))
            .collect();
        owners.into_iter().collect()
    }

    fn device(&self, endpoint: &str) -> Option<(Device, Vec<String>)> {
        let r = self.devices.registration(endpoint)?;
        let parsed = ObjectLinks::parse(r.object_links.as_bytes()).ok()?;
        let mut objects = Vec::new();
        for (id, o) in &parsed.objects {
            if o.instances.is_empty() {
                objects.push(format!("/{id}"));
            }
            objects.extend(o.instances.iter().map(|i| format!("/{id}/{i}")));
        }
        let owners = self.owners(&parsed);
        Some((
            Device {
                endpoint: r.endpoint,
                registration_id: r.id,
                lwm2m_version: r.version.as_str().to_owned(),
                objects,
            },
            owners,
        ))
    }

    fn wants(&self, plugin: &str, kind: EventKinds) -> bool {
        self.host
            .routing()
            .get(plugin)
            .is_some_and(|p| p.info.events.contains(kind))
    }

    async fn device_events(
        self: Arc<Self>,
        mut events: DeviceEvents,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let event = tokio::select! {
                e = events.next() => e,
                _ = stop.wait_for(|s| *s) => return,
            };
            let Some(event) = event else { return };
            self.route(event);
        }
    }

    fn route(self: &Arc<Self>, event: DeviceEvent) {
        match event {
            DeviceEvent::Registered { endpoint, .. } | DeviceEvent::Updated { endpoint } => {
                // Registrations are the server's hot path: without plugins, no lookup or parse.
                if self.host.routing().plugins().next().is_none() {
                    return;
                }
                let Some((device, owners)) = self.device(&endpoint) else {
                    return;
                };
                let before = lock(&self.seen).insert(endpoint, owners.clone());
                for plugin in owners {
                    // A device that lists the object for the first time "registers" with the
                    // plugin even if it came by Update (it created an instance, say).
                    let fresh = before.as_ref().is_none_or(|b| !b.contains(&plugin));
                    let (kind, event) = if fresh {
                        (EventKinds::REGISTERED, Event::Registered(device.clone()))
                    } else {
                        (EventKinds::UPDATED, Event::Updated(device.clone()))
                    };
                    if self.wants(&plugin, kind) {
                        self.send_event(&plugin, event);
                    }
                }
            }
            DeviceEvent::Deregistered { endpoint } | DeviceEvent::Expired { endpoint } => {
                let owners = lock(&self.seen).remove(&endpoint).unwrap_or_default();
                for plugin in owners {
                    if self.wants(&plugin, EventKinds::DEREGISTERED) {
                        self.send_event(&plugin, Event::Deregistered(endpoint.clone()));
                    }
                }
            }
            DeviceEvent::Notification(n) => {
                let mine = lock(&self.observations).get(&n.ticket).cloned();
                let (plugin, correlation) = match mine {
                    Some(x) => x,
                    None => {
                        let routing = self.host.routing();
                        let Some(owner) = n
                            .paths
                            .first()
                            .and_then(Path::object_id)
                            .and_then(|o| routing.owner(o))
                        else {
                            return;
                        };
                        if !owner.info.events.contains(EventKinds::NOTIFICATION) {
                            return;
                        }
                        (owner.name().to_owned(), String::new())
                    }
                };
                self.send_event(
                    &plugin,
                    Event::Notification(Notification {
                        endpoint: n.endpoint,
                        correlation,
                        values: convert::flatten_map(&n.nodes),
                    }),
                );
            }
            DeviceEvent::ObservationEnded { ticket, .. } => {
                lock(&self.observations).remove(&ticket);
            }
            DeviceEvent::Send(report) => {
                let routing = self.host.routing();
                for p in routing.plugins() {
                    if !p.info.events.contains(EventKinds::SEND) {
                        continue;
                    }
                    let values = owned_entries(p, &report.entries);
                    if !values.is_empty() {
                        self.send_event(
                            p.name(),
                            Event::Send(SendData {
                                endpoint: report.endpoint.clone(),
                                values,
                            }),
                        );
                    }
                }
            }
            _ => {}
        }
    }

    async fn bootstrap_notices(
        self: Arc<Self>,
        mut rx: broadcast::Receiver<BootstrapNotice>,
        mut stop: watch::Receiver<bool>,
    ) {
        let what = "bootstrap notices for plugins";
        while let Some(notice) = crate::channels::next_or_stop(&mut rx, &mut stop, what).await {
            let b = match notice {
                BootstrapNotice::Requested(b) => b,
                BootstrapNotice::OfferAnswered(a) => {
                    // Always delivered (no event flag): it answers the plugin's own offer.
                    if self.host.routing().get(&a.plugin).is_some() {
                        self.send_event(
                            &a.plugin,
                            Event::OfferAnswered(OfferAnswer {
                                offer: a.offer,
                                endpoint: a.endpoint,
                                code: a.code,
                                diagnostic: a.diagnostic,
                            }),
                        );
                    }
                    continue;
                }
            };
            let routing = self.host.routing();
            for p in routing.plugins() {
                if p.info.events.contains(EventKinds::BOOTSTRAP_REQUEST) {
                    self.send_event(
                        p.name(),
                        Event::BootstrapRequest(BootstrapRequest {
                            endpoint: b.endpoint.clone(),
                            transport: b.transport.to_owned(),
                            accepted: b.accepted,
                        }),
                    );
                }
            }
        }
    }
}

/// Prunes expired offers every [`PRUNE_EVERY`] until `stop`.
async fn prune_offers(offers: Arc<PluginOffers>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let offers = Arc::clone(&offers);
        let _ = tokio::task::spawn_blocking(move || offers.prune(unix_ms())).await;
    }
}

fn owned_entries(plugin: &LoadedPlugin, entries: &[TimestampedNodes]) -> Vec<Entry> {
    let mut out = Vec::new();
    for t in entries {
        for (path, node) in &t.nodes {
            if path.object_id().is_some_and(|o| plugin.info.owns(o)) {
                convert::flatten(path, node, &mut out);
            }
        }
    }
    out
}

fn request_path(request: &DownlinkRequest) -> Option<Path> {
    match request {
        DownlinkRequest::Read { path, .. }
        | DownlinkRequest::Write { path, .. }
        | DownlinkRequest::Execute { path, .. }
        | DownlinkRequest::Delete { path }
        | DownlinkRequest::Observe { path, .. }
        | DownlinkRequest::CancelObservation { path } => Some(*path),
        _ => None,
    }
}

fn entries(path: Option<&Path>, node: Option<&steward_objects::Node>) -> Vec<Entry> {
    let mut out = Vec::new();
    if let (Some(path), Some(node)) = (path, node) {
        convert::flatten(path, node, &mut out);
    }
    out
}

fn response_body(path: Option<&Path>, answer: DownlinkResponse) -> ResponseBody {
    match answer {
        DownlinkResponse::Read { node, .. } => ResponseBody::Read(entries(path, node.as_ref())),
        DownlinkResponse::Observe { node, .. } => {
            ResponseBody::Observing(entries(path, node.as_ref()))
        }
        DownlinkResponse::Execute => ResponseBody::Executed,
        DownlinkResponse::Create { location } => {
            ResponseBody::Created(location.map(|p| p.to_string()))
        }
        DownlinkResponse::Delete => ResponseBody::Deleted,
        DownlinkResponse::CancelObservation { .. }
        | DownlinkResponse::CancelCompositeObservation { .. } => ResponseBody::Cancelled,
        DownlinkResponse::ReadComposite { nodes }
        | DownlinkResponse::ObserveComposite { nodes, .. } => {
            ResponseBody::Read(convert::flatten_map(&nodes))
        }
        DownlinkResponse::Write
        | DownlinkResponse::WriteAttributes
        | DownlinkResponse::WriteComposite
        | DownlinkResponse::Discover { .. } => ResponseBody::Written,
    }
}

fn request_error(e: &DmError) -> RequestError {
    RequestError {
        code: match e {
            DmError::Device { code, .. } => Some(code.to_string()),
            _ => None,
        },
        message: e.to_string(),
    }
}
