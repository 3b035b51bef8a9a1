//! `GET /api/openapi.json`: the OpenAPI 3.0 description of the whole HTTP API (the management
//! API, the event stream, `/metrics` and the revocation routes of `runtime::http`).
//!
//! The document is hand-written in `openapi.json` next to this file and embedded as is;
//! `tests/api_openapi.rs` keeps it true: every route registered in `api/*.rs` and
//! `runtime/http.rs` must be documented with its methods, and nothing else may be.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::ApiState;

/// The document, as served.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

pub fn routes() -> Router<ApiState> {
    Router::new().route("/api/openapi.json", get(openapi))
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}
