//! The vendor service's HTTP API (the routes are listed in the [module docs](super#http-api)).
//! Handlers authenticate, parse, and hand the work to [`VendorService`] on the blocking pool
//! (every write fsyncs).

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::admin_token::bearer;
use super::request::{SignInput, for_display, hex};
use super::{Origin, VendorError, VendorService};

/// Signing requests are a few hundred bytes; anything much larger is not one, and is refused
/// (413) before it is buffered.
pub const MAX_BODY: usize = 8 * 1024;

/// Audit records per answer when `limit` is not given, and the most one may ask for.
pub const DEFAULT_AUDIT_LIMIT: usize = 1000;
pub const MAX_AUDIT_LIMIT: usize = 10_000;

/// The whole API. The remote address is recorded when the router is served with
/// `into_make_service_with_connect_info::<SocketAddr>()` (as [`super::serve`] does).
pub fn router(service: VendorService) -> Router {
    Router::new()
        .route("/api/vendor/recovery-tokens", post(recovery_token))
        .route("/api/vendor/audit", get(audit))
        .route("/api/vendor/public-key", get(public_key))
        .route("/api/vendor/key-id", get(key_id))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(service)
}

/// An error answer: status and `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "an administrator's bearer token is required (Authorization: Bearer <token>)",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            json!({"error": self.message}).to_string(),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750 §3.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<VendorError> for ApiError {
    fn from(e: VendorError) -> ApiError {
        match e {
            VendorError::Input(e) => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
            // The administrator was removed between authentication and signing.
            VendorError::UnknownAdmin(_) => ApiError::unauthorized(),
            other => {
                // The operator's problem, not the administrator's: the details go to the log.
                tracing::error!(error = %other, "vendor service failure");
                let message = match other {
                    VendorError::Audit(_) => {
                        "the signing could not be recorded in the audit log, so no token was \
                         issued; try again later"
                    }
                    _ => "internal error of the vendor service; see its log",
                };
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
            }
        }
    }
}

/// Who is asking: the administrator whose token the request carries.
async fn authenticate(service: &VendorService, headers: &HeaderMap) -> Result<String, ApiError> {
    // A header that is not visible ASCII cannot hold a (hex) token.
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .map(str::to_owned);
    let Some(presented) = presented else {
        return Err(ApiError::unauthorized());
    };
    let service = service.clone();
    let admin = blocking(move || service.authenticate(&presented)).await?;
    admin.ok_or_else(ApiError::unauthorized)
}

/// `POST /api/vendor/recovery-tokens`.
async fn recovery_token(
    State(service): State<VendorService>,
    headers: HeaderMap,
    extensions: Extensions,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let remote = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    let admin = match authenticate(&service, &headers).await {
        Ok(admin) => admin,
        Err(e) => {
            // Not audited (anyone can send these and would fill the log); logged.
            tracing::warn!(remote = ?remote, "recovery-token request without a valid token");
            return Err(e);
        }
    };
    let origin = Origin::api(remote);
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("the body is over {MAX_BODY} bytes")
            } else {
                format!("cannot read the body: {}", rejection.body_text())
            };
            let (service, admin) = (service.clone(), admin.clone());
            let reason = message.clone();
            let _ = tokio::task::spawn_blocking(move || {
                service.refuse(&admin, &origin, &SignInput::default(), &reason)
            })
            .await;
            return Err(ApiError::new(status, message));
        }
    };
    let input = match SignInput::from_json(&body) {
        Ok(input) => input,
        Err(e) => {
            // Audit what can be read of the request, so that the record says what was asked.
            let presented = presented_fields(&body);
            let (service, reason) = (service.clone(), e.to_string());
            let _ = tokio::task::spawn_blocking(move || {
                service.refuse(&admin, &origin, &presented, &reason)
            })
            .await;
            return Err(VendorError::Input(e).into());
        }
    };
    let issued = blocking(move || service.sign(&admin, &origin, &input)).await?;
    Ok((
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        issued.to_json().to_string(),
    )
        .into_response())
}

/// The `fingerprint` and `installation` strings of a body that failed to parse as a request,
/// where they are strings.
fn presented_fields(body: &[u8]) -> SignInput {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let field = |name: &str| value[name].as_str().map(for_display).unwrap_or_default();
    SignInput {
        fingerprint: field("fingerprint"),
        installation: field("installation"),
        lifetime_seconds: None,
    }
}

#[derive(Serialize)]
struct AuditAnswer<'a> {
    records: &'a [super::AuditRecord],
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    limit: Option<String>,
}

/// `GET /api/vendor/audit?limit=N`.
async fn audit(
    State(service): State<VendorService>,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    authenticate(&service, &headers).await?;
    let Query(query) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let limit = parse_limit(query.limit.as_deref())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let records = blocking(move || service.audit(limit)).await?;
    // Serialised from the struct, not through `json!`, so that each record's fields keep
    // their order (seq, time, admin, ...) instead of an alphabetical one.
    let body = serde_json::to_string(&AuditAnswer { records: &records }).map_err(|e| {
        tracing::error!(error = %e, "cannot serialise the audit log");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    })?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// `limit`: 1..=[`MAX_AUDIT_LIMIT`], default [`DEFAULT_AUDIT_LIMIT`].
fn parse_limit(text: Option<&str>) -> Result<usize, String> {
    let Some(text) = text else {
        return Ok(DEFAULT_AUDIT_LIMIT);
    };
    match text.parse::<usize>() {
        Ok(n @ 1..=MAX_AUDIT_LIMIT) => Ok(n),
        _ => Err(format!(
            "limit must be 1 to {MAX_AUDIT_LIMIT}, got {:?}",
            for_display(text)
        )),
    }
}

/// `GET /api/vendor/public-key`: public, like the key built into every device.
async fn public_key(State(service): State<VendorService>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        service.public_key_pem().to_owned(),
    )
        .into_response()
}

/// `GET /api/vendor/key-id`.
async fn key_id(State(service): State<VendorService>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain")],
        hex(&service.key_id()),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route in the vendor API")
}

/// Runs a database call off the async workers.
async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, VendorError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "vendor service task failed");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        })?
        .map_err(ApiError::from)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(parse_limit(None), Ok(DEFAULT_AUDIT_LIMIT));
        assert_eq!(parse_limit(Some("5")), Ok(5));
        assert_eq!(parse_limit(Some("10000")), Ok(10_000));
        for bad in ["0", "-1", "10001", "x", "", "1e3"] {
            assert!(parse_limit(Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn presented_fields_of_a_bad_body() {
        let input = presented_fields(br#"{"fingerprint":"zz","installation":"a\nb","x":1}"#);
        assert_eq!(input.fingerprint, "zz");
        assert_eq!(input.installation, "a\u{fffd}b");
        assert_eq!(presented_fields(b"not json"), SignInput::default());
    }
}
