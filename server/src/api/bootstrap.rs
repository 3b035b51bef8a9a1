//! The bootstrap server's API, under `/bs/` so that Leshan's bootstrap UI (which calls relative
//! `api/...` URLs) can be served from `/bs/` next to the server UI (leshan-rest-api.md §2.5,
//! leshan-webui-requests.md §5).
//!
//! - `GET /bs/api/bootstrap`, `POST|DELETE /bs/api/bootstrap/{ep}`: bootstrap configurations in
//!   Leshan's JSON ([`BootstrapConfig`] reads and writes it).
//! - `GET|PUT|DELETE /bs/api/security/clients[/{ep}]`: the credentials bootstrap clients must
//!   present. Leshan keeps these in a separate file (`bssecurity.data`); Steward uses **one
//!   security store for both servers**, so an entry added here also authenticates the device on
//!   the LwM2M server and the reverse. A device has one identity; two stores would let them
//!   drift apart.
//! - `GET /bs/api/server/endpoint` and `/bs/api/server/security`: the bootstrap listeners and
//!   the certificate, which the bootstrap UI's wizard reads for its defaults.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::ApiState;
use super::security::{
    ApiError, blocking, body_limit, check_endpoint, endpoints_json, json_response,
    security_clients_routes, server_security,
};
use crate::bootstrap::{BootstrapConfig, configs_to_json};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/bs/api/bootstrap",
            get(list_configs).post(post_no_endpoint),
        )
        // Leshan: `/api/bootstrap/` (empty endpoint segment) is 404 `bad URL`.
        .route("/bs/api/bootstrap/", get(bad_url).post(post_no_endpoint))
        .route(
            "/bs/api/bootstrap/{ep}",
            post(post_config).delete(delete_config),
        )
        .route(
            "/bs/api/bootstrap/{ep}/{*rest}",
            post(post_too_long).delete(post_too_long),
        )
        .merge(security_clients_routes("/bs/api"))
        .route("/bs/api/server/endpoint", get(server_endpoints))
        // The bootstrap server presents the same certificate as the LwM2M server (one CA, one
        // server identity), so the handler is shared.
        .route("/bs/api/server/security", get(server_security))
        .route("/bs/api/security/server", get(server_security))
        .layer(body_limit())
}

/// `GET /bs/api/bootstrap`: `{ "<endpoint>": config, ... }`, pretty-printed like Leshan.
async fn list_configs(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let store = state.store.clone();
    let configs = blocking(move || store.bootstrap_configs()).await?;
    let body = configs_to_json(configs.iter().map(|(ep, c)| (ep.as_str(), c)));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn bad_url() -> ApiError {
    ApiError::not_found("bad URL")
}

async fn post_no_endpoint() -> ApiError {
    ApiError::bad_request("endpoint name should be specified in the URL")
}

async fn post_too_long() -> ApiError {
    ApiError::bad_request("endpoint name should be specified in the URL, nothing more")
}

/// `POST /bs/api/bootstrap/{ep}`: 200 empty; 400 with the parse or validation message.
async fn post_config(
    State(state): State<ApiState>,
    Path(endpoint): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_endpoint(&endpoint)?;
    if body.is_empty() {
        return Err(ApiError::bad_request("no content"));
    }
    // Validated here, as Leshan's store does on add: a config the session would refuse is
    // refused now, where the operator sees why.
    let config =
        BootstrapConfig::from_json(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    config
        .validate()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let store = state.store.clone();
    blocking(move || store.put_bootstrap_config(&endpoint, &config)).await?;
    Ok(StatusCode::OK.into_response())
}

/// `DELETE /bs/api/bootstrap/{ep}`: 204, or 404 `no config for {ep}`.
async fn delete_config(
    State(state): State<ApiState>,
    Path(endpoint): Path<String>,
) -> Result<Response, ApiError> {
    check_endpoint(&endpoint)?;
    let store = state.store.clone();
    let key = endpoint.clone();
    if blocking(move || store.remove_bootstrap_config(&key)).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!("no config for {endpoint}")))
    }
}

/// `GET /bs/api/server/endpoint`: the bootstrap listeners (the wizard takes its default BS URIs
/// from the first `coap` and `coaps` entries).
async fn server_endpoints(State(state): State<ApiState>) -> Response {
    let e = state.endpoints;
    json_response(
        StatusCode::OK,
        &endpoints_json(&[("coap", e.bs_coap), ("coaps", e.bs_coaps)]),
    )
}
