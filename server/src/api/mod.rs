//! The management API over HTTP: Leshan's demo-server REST API (`/api/...`), its bootstrap
//! server API under `/bs/api/...`, Steward's own additions under `/api/steward/...`, and
//! `/metrics`. Every handler reaches devices through [`Devices`] (the same `DeviceRequests`
//! service the CLI and plugins use) and the store through [`Store`].
//!
//! The contract is `shared/research/leshan-rest-api.md`; each submodule names the part it
//! implements.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;

use crate::devices::Devices;
use crate::pki::PkiService;
use crate::store::Store;

pub mod auth;
pub mod bootstrap;
pub mod bs_events;
pub mod clients;
pub mod events;
pub mod leshan_json;
pub mod metrics;
pub mod openapi;
pub mod plugins;
pub mod security;
pub mod steward;

/// What every handler may use.
#[derive(Clone)]
pub struct ApiState {
    pub devices: Devices,
    pub store: Arc<dyn Store>,
    pub pki: Option<PkiService>,
    pub endpoints: ServerEndpoints,
    /// When set, every route requires `Authorization: Bearer <token>` (see [`auth`]).
    pub http_token: Option<crate::config::HttpToken>,
    /// Ends the event streams when the HTTP server stops (see [`events`]).
    pub shutdown: events::ApiShutdown,
    /// Outcomes of requests answered `delayed` (queue mode), for `REQUEST_RESPONSE` events.
    pub delayed: tokio::sync::broadcast::Sender<clients::DelayedResponse>,
    /// Bootstrap session events, for `/bs/api/event` (see [`bs_events`]).
    pub bootstrap_events: tokio::sync::broadcast::Sender<crate::bootstrap::BootstrapEvent>,
    /// The LwM2M listeners' datagrams, for `COAPLOG` events (see [`events`]).
    pub coap_log: tokio::sync::broadcast::Sender<events::CoapLogRecord>,
    /// Handshake counters of the DTLS listeners, by listener (`lwm2m`, `bootstrap`).
    pub dtls: Vec<(&'static str, steward_dtls::DtlsCounters)>,
    /// The plugin host (`/api/steward/plugins`, `PLUGIN` events); `None` in API tests
    /// without one.
    pub plugins: Option<crate::plugins::dispatch::Dispatcher>,
}

/// Where the server's listeners are (for `/api/server/endpoint` and the UIs).
#[derive(Debug, Clone, Copy)]
pub struct ServerEndpoints {
    pub coap: SocketAddr,
    pub coaps: SocketAddr,
    pub bs_coap: SocketAddr,
    pub bs_coaps: SocketAddr,
}

/// The whole API.
pub fn router(state: ApiState) -> Router {
    let hub = events::EventHub::start(
        &state.devices,
        &state.shutdown,
        &state.delayed,
        &state.coap_log,
        state.plugins.as_ref().map(|p| p.api_events()),
    );
    let metrics = metrics::Metrics::new(hub.clone());
    Router::new()
        .merge(clients::routes())
        .merge(security::routes())
        .merge(bootstrap::routes())
        .merge(steward::routes())
        .merge(plugins::routes())
        .merge(events::routes(hub))
        .merge(metrics::routes(metrics.clone()))
        .merge(openapi::routes())
        .merge(bs_events::routes())
        // These two layers stay last: a layer covers only the routes merged before it.
        .layer(axum::middleware::from_fn_with_state(
            state.http_token.clone(),
            auth::require_bearer,
        ))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            metrics::count_requests,
        ))
        .with_state(state)
}
