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
//! Not produced: `COAPLOG` (the stack has no message tracer). `ObservationEnded` and
//! `Completed` have no Leshan event.
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
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use futures_util::stream;
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use steward_objects::NodeMap;
use tokio::sync::{broadcast, watch};

use super::ApiState;
use super::leshan_json;
use crate::devices::{DeviceEvent, Devices};

/// Frames a connection may fall behind before it loses the oldest.
pub const FRAME_CAPACITY: usize = 1024;
/// Leshan (Jetty's `EventSourceServlet`) sends its heartbeat every 10 s.
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);

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
}

impl EventHub {
    /// Subscribes to `devices` now and spawns the hub task; it ends when `shutdown` fires or
    /// the devices' event stream closes. Needs a tokio runtime (the HTTP server's).
    pub fn start(
        devices: &Devices,
        shutdown: &ApiShutdown,
        delayed: &broadcast::Sender<super::clients::DelayedResponse>,
    ) -> EventHub {
        let (frames, _) = broadcast::channel(FRAME_CAPACITY);
        let hub = EventHub {
            frames,
            counts: Arc::new(EventCounts::default()),
            streams: Arc::new(AtomicU64::new(0)),
            stop: shutdown.subscribe(),
        };
        let events = devices.events();
        let task = HubTask {
            devices: devices.clone(),
            frames: hub.frames.clone(),
            counts: Arc::clone(&hub.counts),
            known: devices
                .registrations()
                .iter()
                .map(|r| (r.endpoint.clone(), registration_json(devices, r)))
                .collect(),
        };
        tokio::spawn(task.run(events, shutdown.subscribe()));
        tokio::spawn(forward_delayed(
            delayed.subscribe(),
            hub.frames.clone(),
            shutdown.subscribe(),
        ));
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

/// `REQUEST_RESPONSE`: the answers to requests that were answered `delayed` (queue mode).
async fn forward_delayed(
    mut delayed: broadcast::Receiver<super::clients::DelayedResponse>,
    frames: broadcast::Sender<Arc<Frame>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let received = tokio::select! {
            received = delayed.recv() => received,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        match received {
            Ok(outcome) => {
                let _ = frames.send(Arc::new(Frame {
                    endpoint: outcome.endpoint,
                    name: "REQUEST_RESPONSE",
                    data: outcome.data.to_string(),
                }));
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    dropped = n,
                    "delayed responses dropped before the event stream"
                );
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
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
}

impl HubTask {
    async fn run(
        mut self,
        mut events: crate::devices::DeviceEvents,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let event = tokio::select! {
                event = events.next() => event,
                // Fired, or the switch itself is gone: either way the server is stopping.
                _ = stop.wait_for(|stopped| *stopped) => None,
            };
            let Some(event) = event else {
                break;
            };
            if let Some(frame) = self.render(event) {
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
                let reg = registration_json(&self.devices, &registration);
                self.known.insert(endpoint.clone(), reg.clone());
                let update = update_json(&reg);
                let data = json!({"registration": reg, "update": update});
                (endpoint, "UPDATED", data)
            }
            DeviceEvent::Deregistered { endpoint } | DeviceEvent::Expired { endpoint } => {
                self.counts.deregistrations.fetch_add(1, Ordering::Relaxed);
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
        let reg = registration_json(&self.devices, &registration);
        self.known.insert(endpoint.to_owned(), reg.clone());
        Some(reg)
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
