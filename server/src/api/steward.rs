//! Steward's own API under `/api/steward/`: what Leshan has no page for (the CA, issued
//! certificates, revocation, the factory allow-list, Bootstrap-Pack previews).
//!
//! | Route | Answer |
//! |---|---|
//! | `GET /api/steward/ca` | JSON `{"chain":[{subject,sha256,pem}..]}`, issuing CA first; PEM with `?format=pem` or `Accept: application/x-pem-file` |
//! | `GET /api/steward/certificates[?endpoint=]` | issued certificates (all, or one endpoint's) |
//! | `POST /api/steward/revoke` | `{"serial":"hex"}` or `{"endpoint":"ep"}`, optional `"reason"` → `{"revoked":n}` |
//! | `GET/POST /api/steward/allow-list`, `DELETE /api/steward/allow-list/{id}` | factory allow-list; POST takes a JSON array or CSV (`text/csv`, first column) |
//! | `GET /api/steward/bootstrap-pack/{ep}` | the Bootstrap-Pack a device would get, in SenML JSON |
//!
//! Times are epoch milliseconds, as in the Leshan-shaped routes. The PKI routes answer 404
//! `no CA: run \`steward ca init\`` when the server runs without a CA (the same text as `/ca`).

use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Digest;
use steward_objects::ContentFormat;
use steward_pki::ca::Serial;
use steward_pki::records::{IssuedRecord, PkiStore, PkiStoreError, RevocationReason};

use super::ApiState;
use super::security::{ApiError, blocking, body_limit, check_endpoint, hex, json_response};
use crate::bootstrap::pack::encode_pack;
use crate::pki::{PkiError, PkiService, reason_from_name};

/// Allow-list IDs per import; a production run fits, a runaway script does not (the body
/// limit bounds it too).
const MAX_ALLOW_LIST_IMPORT: usize = 10_000;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/steward/ca", get(ca))
        .route("/api/steward/certificates", get(certificates))
        .route("/api/steward/revoke", post(revoke))
        .route(
            "/api/steward/allow-list",
            get(allow_list).post(allow_list_add),
        )
        .route("/api/steward/allow-list/{id}", delete(allow_list_remove))
        .route("/api/steward/bootstrap-pack/{ep}", get(bootstrap_pack))
        .layer(body_limit())
}

#[derive(Debug, Deserialize)]
struct CaQuery {
    format: Option<String>,
}

/// `GET /api/steward/ca`.
async fn ca(
    State(state): State<ApiState>,
    Query(query): Query<CaQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let pki = need_pki(&state)?;
    let mut entries = Vec::new();
    let mut pem_chain = String::new();
    for der in pki.ca_chain_der() {
        let cert = openssl::x509::X509::from_der(&der)
            .map_err(|e| ApiError::Internal(format!("CA certificate unreadable: {e}")))?;
        let pem = cert
            .to_pem()
            .map_err(|e| ApiError::Internal(format!("CA certificate unreadable: {e}")))?;
        let pem = String::from_utf8_lossy(&pem).into_owned();
        pem_chain.push_str(&pem);
        entries.push(json!({
            "subject": subject(&cert),
            "sha256": hex(&sha2::Sha256::digest(&der)),
            "pem": pem,
        }));
    }
    let wants_pem = query.format.as_deref() == Some("pem")
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/x-pem-file"));
    if wants_pem {
        return Ok((
            [(header::CONTENT_TYPE, "application/x-pem-file")],
            pem_chain,
        )
            .into_response());
    }
    Ok(json_response(StatusCode::OK, &json!({ "chain": entries })))
}

#[derive(Debug, Deserialize)]
struct CertificatesQuery {
    endpoint: Option<String>,
}

/// `GET /api/steward/certificates[?endpoint=]`.
async fn certificates(
    State(state): State<ApiState>,
    Query(query): Query<CertificatesQuery>,
) -> Result<Response, ApiError> {
    let pki = need_pki(&state)?;
    if let Some(ep) = &query.endpoint {
        check_endpoint(ep)?;
    }
    let records = pki_blocking(move || match query.endpoint {
        Some(ep) => pki.issued_for_endpoint(&ep),
        None => Ok(pki.store().all_issued()?),
    })
    .await?;
    let body: Vec<Value> = records.iter().map(record_json).collect();
    Ok(json_response(StatusCode::OK, &Value::Array(body)))
}

fn record_json(r: &IssuedRecord) -> Value {
    json!({
        "serial": r.serial.to_string(),
        "endpoint": r.endpoint,
        "profile": r.profile,
        "notBefore": r.not_before.saturating_mul(1000),
        "notAfter": r.not_after.saturating_mul(1000),
        "issuedAt": r.issued_at.saturating_mul(1000),
        "revoked": r.revoked.map(|rev| json!({
            "at": rev.at.saturating_mul(1000),
            "reason": rev.reason.to_string(),
        })),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    serial: Option<String>,
    endpoint: Option<String>,
    reason: Option<String>,
}

/// `POST /api/steward/revoke`: `{"revoked": n}` (0 when already revoked); 404 for a serial we
/// never issued.
async fn revoke(State(state): State<ApiState>, body: Bytes) -> Result<Response, ApiError> {
    let pki = need_pki(&state)?;
    let request: RevokeBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Invalid request body: {e}")))?;
    let reason = match request.reason.as_deref() {
        None => RevocationReason::Unspecified,
        Some(name) => reason_from_name(name)
            .ok_or_else(|| ApiError::bad_request(format!("unknown revocation reason {name:?}")))?,
    };
    let now = SystemTime::now();
    let revoked = match (request.serial, request.endpoint) {
        (Some(serial), None) => {
            let serial: Serial = serial
                .parse()
                .map_err(|e| ApiError::bad_request(format!("invalid serial: {e}")))?;
            let changed = pki_blocking(move || pki.revoke_serial(&serial, reason, now)).await?;
            usize::from(changed)
        }
        (None, Some(endpoint)) => {
            check_endpoint(&endpoint)?;
            pki_blocking(move || pki.revoke_endpoint(&endpoint, reason, now)).await?
        }
        _ => {
            return Err(ApiError::bad_request(
                "exactly one of serial and endpoint must be given",
            ));
        }
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({ "revoked": revoked }),
    ))
}

/// `GET /api/steward/allow-list`: the device IDs, sorted.
async fn allow_list(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let pki = need_pki(&state)?;
    let ids = pki_blocking(move || Ok(pki.store().allow_list_all()?)).await?;
    Ok(json_response(StatusCode::OK, &json!(ids)))
}

/// `POST /api/steward/allow-list`: a JSON array of IDs, or CSV (`text/csv`: one device per
/// line, ID in the first column, an optional `id`/`device_id` header line). All or nothing.
async fn allow_list_add(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let pki = need_pki(&state)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let ids: Vec<String> = if content_type.starts_with("text/csv") {
        let text = std::str::from_utf8(&body)
            .map_err(|_| ApiError::bad_request("the CSV body is not UTF-8"))?;
        csv_ids(text)
    } else if content_type.starts_with("application/json") {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "Invalid request body: expected an array of IDs: {e}"
            ))
        })?
    } else {
        return Err(ApiError::Status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send application/json (an array of IDs) or text/csv".into(),
        ));
    };
    if ids.len() > MAX_ALLOW_LIST_IMPORT {
        return Err(ApiError::Status(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("at most {MAX_ALLOW_LIST_IMPORT} IDs per import"),
        ));
    }
    // Control characters would reach logs and the EST audit trail.
    if let Some(bad) = ids.iter().find(|id| id.chars().any(char::is_control)) {
        return Err(ApiError::bad_request(format!(
            "device ID {bad:?} contains control characters"
        )));
    }
    let count = ids.len();
    let added = pki_blocking(move || {
        Ok(pki
            .store()
            .allow_list_put_all(ids.iter().map(String::as_str))?)
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "received": count, "added": added }),
    ))
}

/// The first column of each non-empty line, trimmed and unquoted; a header line naming the
/// column is skipped.
fn csv_ids(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let first = line.split(',').next().unwrap_or_default().trim();
            let first = first.trim_matches('"').trim();
            (!first.is_empty()).then(|| first.to_owned())
        })
        .enumerate()
        .filter(|(i, id)| {
            !(*i == 0
                && matches!(
                    id.to_ascii_lowercase().as_str(),
                    "id" | "device_id" | "deviceid"
                ))
        })
        .map(|(_, id)| id)
        .collect()
}

/// `DELETE /api/steward/allow-list/{id}`: 204, or 404 when the ID was not listed.
async fn allow_list_remove(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let pki = need_pki(&state)?;
    if id.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "device ID contains control characters",
        ));
    }
    let key = id.clone();
    if pki_blocking(move || Ok(pki.store().allow_list_remove(&key)?)).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!(
            "{id} is not in the allow-list"
        )))
    }
}

/// `GET /api/steward/bootstrap-pack/{ep}`: what `GET /bspack?ep=` would answer with
/// `Accept: 110`, for inspection. 404 without a configuration, 400 if the configuration is
/// invalid (the device would get 4.00).
async fn bootstrap_pack(
    State(state): State<ApiState>,
    Path(endpoint): Path<String>,
) -> Result<Response, ApiError> {
    check_endpoint(&endpoint)?;
    let store = state.store.clone();
    let key = endpoint.clone();
    let Some(config) = blocking(move || store.bootstrap_config(&key)).await? else {
        return Err(ApiError::not_found(format!("no config for {endpoint}")));
    };
    config
        .validate()
        .map_err(|e| ApiError::bad_request(format!("invalid config for {endpoint}: {e}")))?;
    let payload = encode_pack(&config, ContentFormat::SenmlJson)
        .map_err(|e| ApiError::bad_request(format!("cannot encode the pack: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/senml+json")], payload).into_response())
}

// --- helpers -------------------------------------------------------------------------------------

fn need_pki(state: &ApiState) -> Result<PkiService, ApiError> {
    state
        .pki
        .clone()
        .ok_or_else(|| ApiError::not_found("no CA: run `steward ca init`"))
}

/// Runs a blocking PKI call; unknown serials are 404, invalid input 400, the rest 500.
async fn pki_blocking<T, F>(f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, PkiError> + Send + 'static,
{
    let result = tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("PKI task failed: {e}")))?;
    result.map_err(|e| match e {
        PkiError::Store(PkiStoreError::UnknownSerial(serial)) => {
            ApiError::not_found(format!("no issued certificate with serial {serial}"))
        }
        PkiError::Store(PkiStoreError::Invalid(m)) => ApiError::bad_request(m),
        other => {
            tracing::error!(error = %other, "PKI failed under the management API");
            ApiError::Internal("PKI failure".into())
        }
    })
}

/// `CN=..., O=...` from a certificate's subject.
fn subject(cert: &openssl::x509::X509Ref) -> String {
    cert.subject_name()
        .entries()
        .map(|e| {
            let key = e.object().nid().short_name().unwrap_or("?");
            let value = e.data().to_string().unwrap_or_default();
            format!("{key}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_takes_first_column_and_skips_header() {
        assert_eq!(
            csv_ids("id,batch\n\"dev-1\",7\n\ndev-2\r\n"),
            vec!["dev-1".to_owned(), "dev-2".to_owned()]
        );
        assert_eq!(csv_ids("dev-1\nid\n"), vec!["dev-1", "id"]);
    }
}
