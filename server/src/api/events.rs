//! `GET /api/event[?ep=NAME]`: Leshan's server-sent event stream (leshan-rest-api.md §2.4).
//!
//! ```text
//!  Devices::events ──► hub task ──(renders each event once)──► broadcast<Frame> ──► SSE streams
//!                        │ last registration JSON per endpoint (for DEREGISTRATION)
//!                        └ counters for /metrics
//! ```
//!
//! One task per HTTP server subscribes to [`Devices::events`], renders every event once in
//! Leshan's JSON and re-broadcasts the frame; each SSE connection filters by `ep` and writes.
//! The hub remembers the last registration JSON per endpoint because a DEREGISTRATION carries
//! the registration that is gone, which `Devices` no longer has.
//!
//! | `DeviceEvent` | SSE event | data |
//! |---|---|---|
//! | `Registered` | `REGISTRATION` | registration (§2.3.1) |
//! | `Updated` | `UPDATED` | `{"registration", "update"}` |
//! | `Deregistered`, `Expired` | `DEREGISTRATION` | the last registration seen |
//! | `Sleeping` / `Awake` | `SLEEPING` / `AWAKE` | `{"ep"}` |
//! | `Notification` (one path) | `NOTIFICATION` | `{"ep","kind":"single","res","val"}` |
//! | `Notification` (several) | `NOTIFICATION` | `{"ep","kind":"composite","val":{path: node},"paths"}` |
//! | `Send` | `SEND` | `{"ep","val":{path: node}}`, the most recent value per path |
//!
//! | a `delayed` request's outcome ([`super::ApiState::delayed`]) | `REQUEST_RESPONSE` | `{"ep","path","requestId","delayed":true,"response"}` |
//!
//! | a datagram of the LwM2M listeners ([`super::ApiState::coap_log`]) | `COAPLOG` | `{"timestamp","incoming","type","code","mId","token","options","payload","ep"}` |
//!
//! `ObservationEnded` and `Completed` have no Leshan event.
//!
//! ## COAPLOG
//!
//! The LwM2M stacks (UDP, and DTLS after decryption) have a tracer that sends each datagram
//! to the `coap_log` channel, but only while that channel has a receiver: a server nobody
//! watches pays one atomic load per datagram. Leshan produces COAPLOG only while some
//! `?ep=X` stream is open, so the receiver exists exactly then: the first filtered stream to
//! open subscribes (in its request handler, so nothing sent after its response head is
//! missed) and hands the receiver to the hub task; the last to close tells the hub to drop
//! it. One receiver for all streams, not one per stream, so each datagram is decoded once and,
//! as in Leshan, also reaches unfiltered streams while it is produced.
//!
//! The hub decodes the datagram ([`steward_coap::wire::decode`]; a datagram that is not CoAP
//! is skipped) and names the endpoint by the peer's address, from a map it keeps up to date
//! with the registration events. Like Leshan, which looks the peer up among the
//! registrations, it logs nothing for a peer without one (so not the Register request
//! itself, but its answer does not either; the first Update is logged). The data follows
//! Leshan's `CoapMessage`: `type` `CON`/`NON`/`ACK`/`RST`; `code` the method name (`GET`) or
//! `c.dd` (`2.05`), absent for an empty message; `token` upper-case hex (Californium's
//! `Token.getAsString`); `options` `Name: v1, v2 - Name: v` in option-number order (Leshan's
//! order is a `HashMap`'s), absent when there are none; `payload` the text when it is
//! printable ASCII, else `Hex:` and lower-case hex, absent when empty.
//!
//! Memory is bounded: the hub's channel keeps [`FRAME_CAPACITY`] frames; a connection that
//! falls further behind loses the oldest ones and is told so with an SSE comment
//! (`: lagged, N events dropped`). Nothing waits for a slow reader. A keep-alive comment
//! goes out every [`KEEP_ALIVE`] so that proxies keep idle streams open.
//!
//! Shutdown: an SSE response never ends by itself, and the HTTP server's graceful shutdown
//! waits for responses in flight. [`ApiShutdown::trigger`] (called when the HTTP server stops)
//! ends the hub task and every stream.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use futures_util::stream;
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use steward_coap::message::{Method, option};
use steward_coap::wire::{self, Kind, Type};
use steward_objects::NodeMap;
use tokio::sync::{broadcast, mpsc, watch};

use super::ApiState;
use super::leshan_json;
use crate::devices::{DeviceEvent, Devices};

/// Frames a connection may fall behind before it loses the oldest.
pub const FRAME_CAPACITY: usize = 1024;
/// Leshan (Jetty's `EventSourceServlet`) sends its heartbeat every 10 s.
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// Datagrams the COAPLOG channel holds for a reader that is behind.
pub const COAP_LOG_CAPACITY: usize = 4096;

/// One datagram of an LwM2M listener, as its stack's tracer saw it (decrypted for DTLS).
#[derive(Debug, Clone)]
pub struct CoapLogRecord {
    pub incoming: bool,
    pub peer: SocketAddr,
    pub datagram: Vec<u8>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: u64,
}

/// The channel the listeners' tracers send to; see the module docs.
pub fn coap_log_channel() -> broadcast::Sender<CoapLogRecord> {
    broadcast::channel(COAP_LOG_CAPACITY).0
}

/// Stops the API's background work (the event hub) so that open event streams end and the
/// HTTP server's graceful shutdown can finish. Cheap to clone; every clone is the same switch.
#[derive(Clone)]
pub struct ApiShutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for ApiShutdown {
    fn default() -> ApiShutdown {
        ApiShutdown {
            tx: Arc::new(watch::channel(false).0),
        }
    }
}

impl ApiShutdown {
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }
}

/// What the hub counted since the HTTP server started (read by `/metrics`).
#[derive(Debug, Default)]
pub struct EventCounts {
    pub notifications: AtomicU64,
    pub sends: AtomicU64,
    pub registrations: AtomicU64,
    pub updates: AtomicU64,
    pub deregistrations: AtomicU64,
    /// Frames an SSE connection lost because it read too slowly.
    pub sse_dropped: AtomicU64,
}

/// One rendered event.
#[derive(Debug)]
struct Frame {
    endpoint: String,
    name: &'static str,
    data: String,
}

/// The fan-out point between the device events and the SSE connections.
#[derive(Clone)]
pub struct EventHub {
    frames: broadcast::Sender<Arc<Frame>>,
    counts: Arc<EventCounts>,
    /// Open SSE connections.
    streams: Arc<AtomicU64>,
    /// The handles above keep the channel open, so the streams watch the switch themselves.
    stop: watch::Receiver<bool>,
    coap_log: CoapLogTap,
}

/// Who wants COAPLOG: the `?ep=` streams open now. The count and the hand-over to the hub
/// change under one lock, so the hub sees subscribe and drop in order.
#[derive(Clone)]
struct CoapLogTap {
    source: broadcast::Sender<CoapLogRecord>,
    watchers: Arc<Mutex<usize>>,
    /// `Some` when the first watcher came, `None` when the last left.
    to_hub: mpsc::UnboundedSender<Option<broadcast::Receiver<CoapLogRecord>>>,
}

/// A `?ep=` stream, counted while it lives.
struct CoapLogWatcher(CoapLogTap);

impl CoapLogWatcher {
    fn new(tap: &CoapLogTap) -> CoapLogWatcher {
        // A poisoned count is still a count: the lock only orders updates.
        let mut watchers = tap.watchers.lock().unwrap_or_else(|e| e.into_inner());
        if *watchers == 0 {
            let _ = tap.to_hub.send(Some(tap.source.subscribe()));
        }
        *watchers += 1;
        CoapLogWatcher(tap.clone())
    }
}

impl Drop for CoapLogWatcher {
    fn drop(&mut self) {
        let mut watchers = self.0.watchers.lock().unwrap_or_else(|e| e.into_inner());
        *watchers -= 1;
        if *watchers == 0 {
            let _ = self.0.to_hub.send(None);
        }
    }
}

impl EventHub {
    /// Subscribes to `devices` now and spawns the hub task; it ends when `shutdown` fires or
    /// the devices' event stream closes. Needs a tokio runtime (the HTTP server's).
    pub fn start(
        devices: &Devices,
        shutdown: &ApiShutdown,
        delayed: &broadcast::Sender<super::clients::DelayedResponse>,
        coap_log: &broadcast::Sender<CoapLogRecord>,
        plugins: Option<broadcast::Receiver<crate::plugins::dispatch::PluginApiEvent>>,
    ) -> EventHub {
        let (frames, _) = broadcast::channel(FRAME_CAPACITY);
        let (to_hub, taps) = mpsc::unbounded_channel();
        let hub = EventHub {
            frames,
            counts: Arc::new(EventCounts::default()),
            streams: Arc::new(AtomicU64::new(0)),
            stop: shutdown.subscribe(),
            coap_log: CoapLogTap {
                source: coap_log.clone(),
                watchers: Arc::new(Mutex::new(0)),
                to_hub,
            },
        };
        let events = devices.events();
        let registrations = devices.registrations();
        let task = HubTask {
            devices: devices.clone(),
            frames: hub.frames.clone(),
            counts: Arc::clone(&hub.counts),
            known: registrations
                .iter()
                .map(|r| (r.endpoint.clone(), registration_json(devices, r)))
                .collect(),
            by_address: registrations
                .iter()
                .filter_map(|r| Some((r.address.parse().ok()?, r.endpoint.clone())))
                .collect(),
            taps,
            coap_log: None,
        };
        tokio::spawn(task.run(events, shutdown.subscribe()));
        tokio::spawn(forward_delayed(
            delayed.subscribe(),
            hub.frames.clone(),
            shutdown.subscribe(),
        ));
        if let Some(plugins) = plugins {
            tokio::spawn(forward_plugin_events(
                plugins,
                hub.frames.clone(),
                shutdown.subscribe(),
            ));
        }
        hub
    }

    pub fn counts(&self) -> &EventCounts {
        &self.counts
    }

    /// SSE connections open now.
    pub fn open_streams(&self) -> u64 {
        self.streams.load(Ordering::Relaxed)
    }
}

/// `PLUGIN`: what plugins emit (`{"plugin","kind","data"}`). An event whose data names an
/// `endpoint` reaches that endpoint's `?ep=` streams too.
async fn forward_plugin_events(
    events: broadcast::Receiver<crate::plugins::dispatch::PluginApiEvent>,
    frames: broadcast::Sender<Arc<Frame>>,
    stop: watch::Receiver<bool>,
) {
    forward(events, frames, stop, "plugin events", |event| {
        let endpoint = event
            .data
            .get("endpoint")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Frame {
            endpoint,
            name: "PLUGIN",
            data: serde_json::json!(event).to_string(),
        }
    })
    .await;
}

/// `REQUEST_RESPONSE`: the answers to requests that were answered `delayed` (queue mode).
async fn forward_delayed(
    delayed: broadcast::Receiver<super::clients::DelayedResponse>,
    frames: broadcast::Sender<Arc<Frame>>,
    stop: watch::Receiver<bool>,
) {
    forward(delayed, frames, stop, "delayed responses", |outcome| {
        Frame {
            endpoint: outcome.endpoint,
            name: "REQUEST_RESPONSE",
            data: outcome.data.to_string(),
        }
    })
    .await;
}

/// Renders every item of `source` as a frame until `stop` fires or the source closes.
async fn forward<T: Clone>(
    mut source: broadcast::Receiver<T>,
    frames: broadcast::Sender<Arc<Frame>>,
    mut stop: watch::Receiver<bool>,
    what: &'static str,
    render: impl Fn(T) -> Frame,
) {
    while let Some(item) = crate::channels::next_or_stop(&mut source, &mut stop, what).await {
        let _ = frames.send(Arc::new(render(item)));
    }
}

pub fn routes(hub: EventHub) -> Router<ApiState> {
    Router::new()
        .route("/api/event", get(event_stream))
        .layer(Extension(hub))
}

#[derive(Debug, Deserialize)]
struct EventQuery {
    ep: Option<String>,
}

async fn event_stream(
    State(_): State<ApiState>,
    Extension(hub): Extension<EventHub>,
    Query(query): Query<EventQuery>,
) -> Response {
    let rx = hub.frames.subscribe();
    let open = OpenStream::new(&hub.streams);
    let filter = query.ep.filter(|ep| !ep.is_empty());
    // Kept with the stream: COAPLOG is produced while it lives.
    let watcher = filter.as_ref().map(|_| CoapLogWatcher::new(&hub.coap_log));
    let open = (open, watcher);
    let state = (rx, filter, Arc::clone(&hub.counts), open, hub.stop.clone());
    let events = stream::unfold(
        state,
        |(mut rx, filter, counts, open, mut stop)| async move {
            loop {
                let received = tokio::select! {
                    received = rx.recv() => received,
                    // The server is stopping: end the response.
                    _ = stop.wait_for(|stopped| *stopped) => return None,
                };
                match received {
                    Ok(frame) => {
                        if filter.as_ref().is_some_and(|ep| *ep != frame.endpoint) {
                            continue;
                        }
                        let event = Event::default().event(frame.name).data(&frame.data);
                        return Some((
                            Ok::<_, Infallible>(event),
                            (rx, filter, counts, open, stop),
                        ));
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        counts.sse_dropped.fetch_add(n, Ordering::Relaxed);
                        let note = Event::default().comment(format!("lagged, {n} events dropped"));
                        return Some((Ok(note), (rx, filter, counts, open, stop)));
                    }
                    // The hub is gone: nothing more will come.
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    );
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response()
}

/// Counts an open SSE connection for as long as its stream lives.
struct OpenStream(Arc<AtomicU64>);

impl OpenStream {
    fn new(count: &Arc<AtomicU64>) -> OpenStream {
        count.fetch_add(1, Ordering::Relaxed);
        OpenStream(Arc::clone(count))
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct HubTask {
    devices: Devices,
    frames: broadcast::Sender<Arc<Frame>>,
    counts: Arc<EventCounts>,
    /// The last registration JSON per endpoint, for DEREGISTRATION.
    known: HashMap<String, Json>,
    /// Registered peers' addresses, for naming a COAPLOG's endpoint.
    by_address: HashMap<SocketAddr, String>,
    /// The COAPLOG receiver, handed over by the first `?ep=` stream (see [`CoapLogWatcher`]).
    taps: mpsc::UnboundedReceiver<Option<broadcast::Receiver<CoapLogRecord>>>,
    coap_log: Option<broadcast::Receiver<CoapLogRecord>>,
}

/// What woke the hub task.
enum Wake {
    Stop,
    Event(DeviceEvent),
    Tap(Option<broadcast::Receiver<CoapLogRecord>>),
    Record(Result<CoapLogRecord, broadcast::error::RecvError>),
}

/// The next record, or never when there is no receiver.
async fn next_record(
    rx: &mut Option<broadcast::Receiver<CoapLogRecord>>,
) -> Result<CoapLogRecord, broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl HubTask {
    async fn run(
        mut self,
        mut events: crate::devices::DeviceEvents,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            // Biased: a registration event is handled before datagrams that came after it,
            // so the address map knows the peer.
            let wake = tokio::select! {
                biased;
                // Fired, or the switch itself is gone: either way the server is stopping.
                _ = stop.wait_for(|stopped| *stopped) => Wake::Stop,
                event = events.next() => event.map_or(Wake::Stop, Wake::Event),
                Some(tap) = self.taps.recv() => Wake::Tap(tap),
                record = next_record(&mut self.coap_log) => Wake::Record(record),
            };
            let frame = match wake {
                Wake::Stop => break,
                Wake::Event(event) => self.render(event),
                Wake::Tap(tap) => {
                    self.coap_log = tap;
                    None
                }
                Wake::Record(Ok(record)) => self.coap_frame(&record),
                Wake::Record(Err(broadcast::error::RecvError::Lagged(n))) => {
                    tracing::debug!(dropped = n, "datagrams dropped before COAPLOG");
                    None
                }
                Wake::Record(Err(broadcast::error::RecvError::Closed)) => {
                    self.coap_log = None;
                    None
                }
            };
            if let Some(frame) = frame {
                // No subscriber is fine: the frame is simply not wanted.
                let _ = self.frames.send(Arc::new(frame));
            }
        }
        // Dropping `self.frames` (the last sender) ends every open stream.
    }

    fn render(&mut self, event: DeviceEvent) -> Option<Frame> {
        let (endpoint, name, data) = match event {
            DeviceEvent::Registered { endpoint, .. } => {
                self.counts.registrations.fetch_add(1, Ordering::Relaxed);
                let reg = self.current(&endpoint)?;
                (endpoint, "REGISTRATION", reg)
            }
            DeviceEvent::Updated { endpoint } => {
                self.counts.updates.fetch_add(1, Ordering::Relaxed);
                let registration = self.devices.registration(&endpoint)?;
                self.learn_address(&registration);
                let reg = registration_json(&self.devices, &registration);
                self.known.insert(endpoint.clone(), reg.clone());
                let update = update_json(&reg);
                let data = json!({"registration": reg, "update": update});
                (endpoint, "UPDATED", data)
            }
            DeviceEvent::Deregistered { endpoint } | DeviceEvent::Expired { endpoint } => {
                self.counts.deregistrations.fetch_add(1, Ordering::Relaxed);
                self.by_address.retain(|_, ep| *ep != endpoint);
                // Known unless it registered before the hub started and never updated since.
                let reg = self
                    .known
                    .remove(&endpoint)
                    .unwrap_or_else(|| json!({"endpoint": endpoint}));
                (endpoint, "DEREGISTRATION", reg)
            }
            DeviceEvent::Sleeping { endpoint } => {
                let data = json!({"ep": endpoint});
                (endpoint, "SLEEPING", data)
            }
            DeviceEvent::Awake { endpoint } => {
                let data = json!({"ep": endpoint});
                (endpoint, "AWAKE", data)
            }
            DeviceEvent::Notification(n) => {
                self.counts.notifications.fetch_add(1, Ordering::Relaxed);
                let data = notification_json(&n.endpoint, &n.paths, &n.nodes);
                (n.endpoint, "NOTIFICATION", data)
            }
            DeviceEvent::Send(report) => {
                self.counts.sends.fetch_add(1, Ordering::Relaxed);
                // Entries in the order sent: a later value for a path replaces an earlier.
                let mut latest = NodeMap::new();
                for entry in report.entries {
                    latest.extend(entry.nodes);
                }
                let data = json!({"ep": report.endpoint, "val": leshan_json::nodes_json(&latest)});
                (report.endpoint, "SEND", data)
            }
            DeviceEvent::ObservationEnded { .. } | DeviceEvent::Completed { .. } => return None,
        };
        Some(Frame {
            endpoint,
            name,
            data: data.to_string(),
        })
    }

    /// The endpoint's registration now, remembered for its DEREGISTRATION.
    fn current(&mut self, endpoint: &str) -> Option<Json> {
        let registration = self.devices.registration(endpoint)?;
        self.learn_address(&registration);
        let reg = registration_json(&self.devices, &registration);
        self.known.insert(endpoint.to_owned(), reg.clone());
        Some(reg)
    }

    /// The endpoint's address now (an Update may carry a new one).
    fn learn_address(&mut self, registration: &crate::registry::Registration) {
        self.by_address.retain(|_, ep| *ep != registration.endpoint);
        if let Ok(address) = registration.address.parse() {
            self.by_address
                .insert(address, registration.endpoint.clone());
        }
    }

    /// `COAPLOG` for a datagram of a registered peer that is CoAP.
    fn coap_frame(&self, record: &CoapLogRecord) -> Option<Frame> {
        let endpoint = self.by_address.get(&record.peer)?;
        let message = wire::decode(&record.datagram).ok()?;
        let data = coap_log_json(record, &message, endpoint);
        Some(Frame {
            endpoint: endpoint.clone(),
            name: "COAPLOG",
            data: data.to_string(),
        })
    }
}

/// Leshan's `CoapMessage` (see the module docs).
fn coap_log_json(record: &CoapLogRecord, message: &wire::Message, endpoint: &str) -> Json {
    let mut out = Map::new();
    out.insert("timestamp".into(), json!(record.timestamp));
    out.insert("incoming".into(), json!(record.incoming));
    let mtype = match message.mtype {
        Type::Con => "CON",
        Type::Non => "NON",
        Type::Ack => "ACK",
        Type::Rst => "RST",
    };
    out.insert("type".into(), json!(mtype));
    match message.kind {
        Kind::Empty => {}
        Kind::Request(method) => {
            out.insert("code".into(), json!(method_name(method)));
        }
        Kind::Response(code) => {
            out.insert("code".into(), json!(code.to_string()));
        }
    }
    out.insert("mId".into(), json!(message.mid));
    let token: String = message
        .token
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    out.insert("token".into(), json!(token));
    if let Some(options) = options_text(&message.options) {
        out.insert("options".into(), json!(options));
    }
    if !message.payload.is_empty() {
        out.insert("payload".into(), json!(payload_text(&message.payload)));
    }
    out.insert("ep".into(), json!(endpoint));
    Json::Object(out)
}

/// Californium's `Code` names.
fn method_name(method: Method) -> &'static str {
    match method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Fetch => "FETCH",
        Method::Patch => "PATCH",
        Method::IPatch => "IPATCH",
    }
}

/// `Uri-Path: 3, 0 - Accept: application/vnd.oma.lwm2m+tlv`: values of one option joined by
/// `, `, options by ` - `, as Leshan's `CoapMessage` prints them.
fn options_text(options: &steward_coap::message::Options) -> Option<String> {
    let mut groups: Vec<(u16, Vec<String>)> = Vec::new();
    for (number, value) in options.iter() {
        let text = option_value(number, value);
        match groups.last_mut() {
            Some((last, values)) if *last == number => values.push(text),
            _ => groups.push((number, vec![text])),
        }
    }
    if groups.is_empty() {
        return None;
    }
    let parts: Vec<String> = groups
        .into_iter()
        .map(|(number, values)| format!("{}: {}", option_name(number), values.join(", ")))
        .collect();
    Some(parts.join(" - "))
}

/// Californium's `OptionNumberRegistry.toString`.
fn option_name(number: u16) -> String {
    let name = match number {
        option::IF_MATCH => "If-Match",
        option::URI_HOST => "Uri-Host",
        option::ETAG => "ETag",
        option::IF_NONE_MATCH => "If-None-Match",
        option::OBSERVE => "Observe",
        option::URI_PORT => "Uri-Port",
        option::LOCATION_PATH => "Location-Path",
        option::OSCORE => "OSCORE",
        option::URI_PATH => "Uri-Path",
        option::CONTENT_FORMAT => "Content-Format",
        option::MAX_AGE => "Max-Age",
        option::URI_QUERY => "Uri-Query",
        option::ACCEPT => "Accept",
        option::LOCATION_QUERY => "Location-Query",
        option::BLOCK2 => "Block2",
        option::BLOCK1 => "Block1",
        option::SIZE2 => "Size2",
        option::PROXY_URI => "Proxy-Uri",
        option::PROXY_SCHEME => "Proxy-Scheme",
        option::SIZE1 => "Size1",
        option::ECHO => "Echo",
        option::NO_RESPONSE => "No-Response",
        option::REQUEST_TAG => "Request-Tag",
        other => return format!("Unknown ({other})"),
    };
    name.to_owned()
}

/// Strings as text, numbers in decimal, media types by name, blocks as Californium shows
/// them, anything else `0x` and hex.
fn option_value(number: u16, value: &[u8]) -> String {
    let uint = || steward_coap::message::decode_uint(value).unwrap_or(0);
    match number {
        option::URI_HOST
        | option::LOCATION_PATH
        | option::URI_PATH
        | option::URI_QUERY
        | option::LOCATION_QUERY
        | option::PROXY_URI
        | option::PROXY_SCHEME => String::from_utf8_lossy(value).into_owned(),
        option::CONTENT_FORMAT | option::ACCEPT => media_type(uint()),
        option::BLOCK1 | option::BLOCK2 => {
            let v = uint();
            let szx = v & 0x7;
            format!(
                "(szx={szx}/{}, m={}, num={})",
                16u32 << szx.min(6),
                v & 0x8 != 0,
                v >> 4
            )
        }
        option::OBSERVE
        | option::URI_PORT
        | option::MAX_AGE
        | option::SIZE1
        | option::SIZE2
        | option::NO_RESPONSE => uint().to_string(),
        _ => {
            let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
            format!("0x{hex}")
        }
    }
}

/// Californium's `MediaTypeRegistry.toString` for the formats LwM2M uses.
fn media_type(format: u32) -> String {
    let name = match format {
        0 => "text/plain",
        40 => "application/link-format",
        42 => "application/octet-stream",
        60 => "application/cbor",
        110 => "application/senml+json",
        112 => "application/senml+cbor",
        11542 => "application/vnd.oma.lwm2m+tlv",
        11543 => "application/vnd.oma.lwm2m+json",
        11544 => "application/vnd.oma.lwm2m+cbor",
        other => return format!("unknown/{other}"),
    };
    name.to_owned()
}

/// Printable ASCII as is, anything else `Hex:` and hex (`StringUtils.isAsciiPrintable`).
fn payload_text(payload: &[u8]) -> String {
    if payload.iter().all(|b| (0x20..0x7f).contains(b)) {
        String::from_utf8_lossy(payload).into_owned()
    } else {
        let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
        format!("Hex:{hex}")
    }
}

fn registration_json(devices: &Devices, reg: &crate::registry::Registration) -> Json {
    leshan_json::registration(reg, || !devices.is_awake(&reg.endpoint))
}

/// Leshan's `RegistrationUpdate` (§2.3.2) holds only what the Update request carried; the
/// device events do not say which fields that was, so this repeats the current values of
/// the fields an Update can change.
fn update_json(reg: &Json) -> Json {
    let mut out = Map::new();
    for key in [
        "registrationId",
        "address",
        "smsNumber",
        "lifetime",
        "objectLinks",
        "secure",
    ] {
        if let Some(v) = reg.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    out.insert("additionalAttributes".into(), json!({}));
    Json::Object(out)
}

/// One path observed: Leshan's `single` shape; several: `composite`. (An Observe-Composite of
/// one path is shown as single: the event does not say which request it answers.)
fn notification_json(endpoint: &str, paths: &[steward_objects::Path], nodes: &NodeMap) -> Json {
    match paths {
        [path] => {
            let val = nodes
                .get(path)
                .map_or(Json::Null, |node| leshan_json::node_json(path, node));
            json!({"ep": endpoint, "kind": "single", "res": path.to_string(), "val": val})
        }
        _ => json!({
            "ep": endpoint,
            "kind": "composite",
            "val": leshan_json::nodes_json(nodes),
            "paths": paths.iter().map(ToString::to_string).collect::<Vec<_>>(),
        }),
    }
}
