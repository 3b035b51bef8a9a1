//! `/api/steward/plugins`: the plugin host for operators and the `steward plugins` CLI.
//!
//! | Route | Answer |
//! |---|---|
//! | `GET /api/steward/plugins` | `{"plugins":[status..],"refused":[{file,reason}..]}`; each status lists the plugin's bootstrap `offers` |
//! | `POST /api/steward/plugins/reload` | reloads the directory → `{"loaded":[..],"refused":[..]}` |
//! | `POST /api/steward/plugins/{name}/disable` / `enable` | `{"name","state"}`; remembered across restarts |
//! | `POST /api/steward/plugins/{name}/commands` | `{"name":"cmd","argument":<json>}` → the plugin's reply (`null` without one) |
//! | `GET /api/steward/plugins/{name}/kv?prefix=` | the plugin's keys (at most 1000) |
//! | `GET /api/steward/plugins/{name}/kv/{key}` | one value (`application/octet-stream`) |
//!
//! A command's failure maps to a status: the plugin refused the argument (`rejected`) → 400;
//! the plugin failed, trapped, overran or asked for a forbidden effect → 502 with the reason;
//! disabled or quarantined → 503; its queue is full → 503; no answer in time → 504.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiState;
use super::security::{ApiError, body_limit, json_response};
use crate::plugins::dispatch::{CommandError, Dispatcher};
use crate::plugins::host::EventFailure;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/steward/plugins", get(list))
        .route("/api/steward/plugins/reload", post(reload))
        .route("/api/steward/plugins/{name}/disable", post(disable))
        .route("/api/steward/plugins/{name}/enable", post(enable))
        .route("/api/steward/plugins/{name}/commands", post(command))
        .route("/api/steward/plugins/{name}/kv", get(kv_keys))
        .route("/api/steward/plugins/{name}/kv/{key}", get(kv_value))
        .layer(body_limit())
}

fn dispatcher(state: &ApiState) -> Result<&Dispatcher, ApiError> {
    state.plugins.as_ref().ok_or_else(|| {
        ApiError::Status(
            StatusCode::SERVICE_UNAVAILABLE,
            "this server runs without a plugin host".into(),
        )
    })
}

async fn list(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let dispatcher = dispatcher(&state)?;
    let host = dispatcher.host();
    let plugins: Vec<Value> = host
        .status()
        .into_iter()
        .map(|status| {
            let offers: Vec<Value> = dispatcher
                .offers()
                .of_plugin(&status.name)
                .iter()
                .map(offer_json)
                .collect();
            let mut entry = json!(status);
            entry["offers"] = Value::Array(offers);
            entry
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"plugins": plugins, "refused": host.refused()}),
    ))
}

/// An offer as operators see it: what and to whom, not the value (a plugin's business, and
/// possibly large).
fn offer_json(offer: &crate::bootstrap::Offer) -> Value {
    json!({
        "name": offer.name(),
        "path": offer.path().to_string(),
        "endpoints": offer.endpoints().len(),
        "finish_on_accept": offer.finish_on_accept(),
        "expires_ms": offer.expires_ms(),
    })
}

async fn reload(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let report = dispatcher(&state)?.reload().await;
    Ok(json_response(StatusCode::OK, &json!(report)))
}

async fn disable(state: State<ApiState>, name: Path<String>) -> Result<Response, ApiError> {
    set_disabled(state, name, true).await
}

async fn enable(state: State<ApiState>, name: Path<String>) -> Result<Response, ApiError> {
    set_disabled(state, name, false).await
}

async fn set_disabled(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    disabled: bool,
) -> Result<Response, ApiError> {
    let host = std::sync::Arc::clone(dispatcher(&state)?.host());
    let n = name.clone();
    let found = tokio::task::spawn_blocking(move || host.set_disabled(&n, disabled))
        .await
        .map_err(|e| ApiError::Internal(format!("plugin task failed: {e}")))?
        .map_err(ApiError::Internal)?;
    if !found {
        return Err(ApiError::not_found(format!(
            "no plugin named {name:?} is loaded"
        )));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"name": name, "state": if disabled { "disabled" } else { "active" }}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandBody {
    name: String,
    #[serde(default)]
    argument: Value,
}

async fn command(
    State(state): State<ApiState>,
    Path(plugin): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: CommandBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("expected {{\"name\":..,\"argument\":..}}: {e}"))
    })?;
    if body.name.is_empty() || body.name.len() > 128 {
        return Err(ApiError::bad_request("command name must be 1 to 128 bytes"));
    }
    let reply = dispatcher(&state)?
        .command(&plugin, &body.name, &body.argument)
        .await
        .map_err(command_error)?;
    Ok(json_response(StatusCode::OK, &reply.unwrap_or(Value::Null)))
}

fn command_error(e: CommandError) -> ApiError {
    let status = match &e {
        CommandError::NoSuchPlugin(_) => StatusCode::NOT_FOUND,
        CommandError::NoCommands(_) => StatusCode::METHOD_NOT_ALLOWED,
        CommandError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        CommandError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        CommandError::Failed(f) => match f {
            EventFailure::Rejected { .. } => StatusCode::BAD_REQUEST,
            EventFailure::Disabled(_) | EventFailure::Quarantined { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            EventFailure::Host { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            EventFailure::Sandbox { .. }
            | EventFailure::Failed { .. }
            | EventFailure::Effect { .. } => StatusCode::BAD_GATEWAY,
        },
    };
    ApiError::Status(status, e.to_string())
}

#[derive(Debug, Deserialize)]
struct KvQuery {
    prefix: Option<String>,
}

fn loaded(
    state: &ApiState,
    name: &str,
) -> Result<std::sync::Arc<crate::store::SledStore>, ApiError> {
    let host = dispatcher(state)?.host();
    if host.routing().get(name).is_none() {
        return Err(ApiError::not_found(format!(
            "no plugin named {name:?} is loaded"
        )));
    }
    host.store()
        .cloned()
        .ok_or_else(|| ApiError::Internal("plugin host without a store".into()))
}

async fn kv_keys(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Query(query): Query<KvQuery>,
) -> Result<Response, ApiError> {
    let store = loaded(&state, &name)?;
    let prefix = query.prefix.unwrap_or_default();
    let keys =
        super::security::blocking(move || store.plugin_kv_keys(&name, &prefix, 1000)).await?;
    Ok(json_response(StatusCode::OK, &json!({"keys": keys})))
}

async fn kv_value(
    State(state): State<ApiState>,
    Path((name, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let store = loaded(&state, &name)?;
    let k = key.clone();
    match super::security::blocking(move || store.plugin_kv_get(&name, &k)).await? {
        Some(value) => Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            value,
        )
            .into_response()),
        None => Err(ApiError::not_found(format!("no key {key:?}"))),
    }
}
