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

pub mod clients;

/// What every handler may use.
#[derive(Clone)]
pub struct ApiState {
    pub devices: Devices,
    pub store: Arc<dyn Store>,
    pub pki: Option<PkiService>,
    pub endpoints: ServerEndpoints,
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
    Router::new().merge(clients::routes()).with_state(state)
}
