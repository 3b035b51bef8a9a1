//! `/api/security/clients`, `/api/security/server`, `/api/server/security` and
//! `/api/server/endpoint` (leshan-rest-api.md §2.2, §2.3.7, §2.3.8).
//!
//! The JSON is Leshan 2.x's (`{"endpoint","tls":{"mode":"psk","details":{..}}}`), not the 1.x
//! `{"psk":{..}}` shape: the UIs in leshan-webui-requests.md send and read the 2.x one.
//!
//! Deliberate differences from Leshan:
//! - a body with neither `tls` nor `oscore` is a 400 with a message (Leshan fails with a 500);
//! - OSCORE credentials are refused with a 400: Steward's store has no OSCORE security;
//! - an X.509 entry whose expected CN is not the endpoint, or that pins a certificate (both only
//!   possible through `steward security`), shows them under `tls.details`, which Leshan's UI
//!   ignores; a plain entry is `{"mode":"x509"}` as in Leshan.
//!
//! The helpers at the bottom ([`ApiError`], [`check_endpoint`], [`body_limit`]) are shared with
//! the bootstrap and Steward routes, which take the same hostile input.

pub(super) use crate::hex::{decode as unhex, encode as hex};
use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use base64::Engine;
use serde_json::{Value, json};

use super::ApiState;
use crate::store::{Conflict, Credential, FaultDomain, SecurityInfo, StoreError};

/// Bodies of the management API are small JSON documents (a security entry, a bootstrap
/// configuration, an allow-list import of a few thousand IDs); anything larger is refused
/// before it is buffered.
pub(super) const MAX_BODY: usize = 64 * 1024;

/// Endpoint names are short in practice (an IMEI URN is 24 bytes); the cap keeps error
/// messages and store keys bounded.
pub(super) const MAX_ENDPOINT_LEN: usize = 255;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .merge(security_clients_routes("/api"))
        .route("/api/security/server", get(server_security))
        .route("/api/server/security", get(server_security))
        .route("/api/server/endpoint", get(server_endpoints))
        // Leshan answers any other GET under these prefixes with an empty 400, not 404.
        .route("/api/security/{*rest}", get(empty_bad_request))
        .route("/api/server/{*rest}", get(empty_bad_request))
        .layer(body_limit())
}

async fn empty_bad_request() -> StatusCode {
    StatusCode::BAD_REQUEST
}

/// The security-client routes under `prefix` (`/api` for the LwM2M server, `/bs/api` for the
/// bootstrap server: both read the same store).
pub(super) fn security_clients_routes(prefix: &str) -> Router<ApiState> {
    Router::new()
        // The UIs PUT to `api/security/clients/` (trailing slash); scripts use the bare path.
        .route(
            &format!("{prefix}/security/clients"),
            get(list_security)
                .put(put_security)
                .delete(delete_no_endpoint),
        )
        .route(
            &format!("{prefix}/security/clients/"),
            get(list_security)
                .put(put_security)
                .delete(delete_no_endpoint),
        )
        .route(
            &format!("{prefix}/security/clients/{{ep}}"),
            delete(delete_security),
        )
}

/// `GET /api/security/clients`: every entry, ordered by endpoint.
async fn list_security(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let store = state.store.clone();
    let infos = blocking(move || store.security_infos()).await?;
    let body: Vec<Value> = infos.iter().map(security_to_json).collect();
    Ok(json_response(StatusCode::OK, &Value::Array(body)))
}

/// `PUT /api/security/clients`: add or replace; 200 with an empty body.
async fn put_security(State(state): State<ApiState>, body: Bytes) -> Result<Response, ApiError> {
    let info = security_from_json(&body)?;
    let store = state.store.clone();
    match blocking(move || store.put_security(&info)).await {
        Ok(_) => Ok(StatusCode::OK.into_response()),
        // Leshan's NonUniqueSecurityInfoException message.
        Err(ApiError::Store(StoreError::Conflict(Conflict::PskIdentityTaken {
            identity, ..
        }))) => Err(ApiError::bad_request(format!(
            "PSK Identity {identity} is already used"
        ))),
        Err(e) => Err(e),
    }
}

/// `DELETE /api/security/clients/{ep}`: 200 empty, or 200 `{"message":"not_found"}` when there
/// was nothing (Leshan's answer; the bootstrap UI chains its config delete on a 2xx here).
async fn delete_security(
    State(state): State<ApiState>,
    Path(endpoint): Path<String>,
) -> Result<Response, ApiError> {
    check_endpoint(&endpoint)?;
    let store = state.store.clone();
    let removed = blocking(move || store.remove_security(&endpoint)).await?;
    Ok(match removed {
        Some(_) => StatusCode::OK.into_response(),
        None => json_response(StatusCode::OK, &json!({"message": "not_found"})),
    })
}

async fn delete_no_endpoint() -> ApiError {
    ApiError::bad_request("endpoint name should be specified in the URL")
}

/// `GET /api/server/security`: `{"certificate":{..}}` when Steward has a CA (the certificate
/// the CoAPs listener presents), otherwise `{}` (Leshan's answer for a server with neither a
/// certificate nor a raw public key).
pub(super) async fn server_security(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let Some(pki) = state.pki.clone() else {
        return Ok(json_response(StatusCode::OK, &json!({})));
    };
    // May issue (and write) the server certificate on first use: blocking work.
    let issued =
        tokio::task::spawn_blocking(move || pki.server_certificate(crate::runtime::SERVER_CN))
            .await
            .map_err(|e| ApiError::Internal(format!("server certificate task failed: {e}")))?;
    let (_, _, leaf_der) = issued.map_err(|e| {
        tracing::error!(error = %e, "cannot read the server certificate");
        ApiError::Internal("cannot read the server certificate".into())
    })?;
    let body = certificate_json(&leaf_der)
        .map_err(|e| ApiError::Internal(format!("server certificate unreadable: {e}")))?;
    Ok(json_response(StatusCode::OK, &body))
}

/// `GET /api/server/endpoint`: the LwM2M server's listeners.
async fn server_endpoints(State(state): State<ApiState>) -> Response {
    let e = state.endpoints;
    json_response(
        StatusCode::OK,
        &endpoints_json(&[("coap", e.coap), ("coaps", e.coaps)]),
    )
}

/// Leshan's endpoint list for `(scheme, address)` pairs.
pub(super) fn endpoints_json(listeners: &[(&str, SocketAddr)]) -> Value {
    Value::Array(
        listeners
            .iter()
            .map(|(scheme, addr)| {
                // `SocketAddr`'s Display brackets IPv6 hosts, as a URI needs.
                let description = if *scheme == "coaps" {
                    "CoAP over DTLS endpoint based on Steward"
                } else {
                    "CoAP over UDP endpoint based on Steward"
                };
                json!({
                    "uri": {
                        "full": format!("{scheme}://{addr}"),
                        "scheme": scheme,
                        "host": addr.ip().to_string(),
                        "port": addr.port(),
                    },
                    "description": description,
                })
            })
            .collect(),
    )
}

/// `{"certificate":{"pubkey":{..},"b64Der":".."}}` (Leshan's `X509CertificateSerDes`).
pub(super) fn certificate_json(der: &[u8]) -> Result<Value, openssl::error::ErrorStack> {
    let cert = openssl::x509::X509::from_der(der)?;
    let key = cert.public_key()?;
    let pubkey = pubkey_json(&key)?;
    Ok(json!({
        "certificate": {
            "pubkey": pubkey,
            "b64Der": base64::engine::general_purpose::STANDARD.encode(der),
        }
    }))
}

/// Leshan's `PublicKeySerDes`: EC coordinates (unsigned big-endian hex), the curve as Java's
/// `ECParameterSpec.toString()` prints it, and the SubjectPublicKeyInfo. Non-EC keys have only
/// `b64Der` (Leshan supports EC only; the UI needs just `b64Der` to download the key).
fn pubkey_json(
    key: &openssl::pkey::PKeyRef<openssl::pkey::Public>,
) -> Result<Value, openssl::error::ErrorStack> {
    let spki = base64::engine::general_purpose::STANDARD.encode(key.public_key_to_der()?);
    let Ok(ec) = key.ec_key() else {
        return Ok(json!({ "b64Der": spki }));
    };
    let mut ctx = openssl::bn::BigNumContext::new()?;
    let mut x = openssl::bn::BigNum::new()?;
    let mut y = openssl::bn::BigNum::new()?;
    ec.public_key()
        .affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx)?;
    use openssl::nid::Nid;
    let params = match ec.group().curve_name() {
        Some(Nid::X9_62_PRIME256V1) => {
            "secp256r1 [NIST P-256,X9.62 prime256v1] (1.2.840.10045.3.1.7)"
        }
        Some(Nid::SECP384R1) => "secp384r1 [NIST P-384] (1.3.132.0.34)",
        Some(Nid::SECP521R1) => "secp521r1 [NIST P-521] (1.3.132.0.35)",
        _ => "unknown curve",
    };
    Ok(json!({
        "x": hex(&x.to_vec()),
        "y": hex(&y.to_vec()),
        "params": params,
        "b64Der": spki,
    }))
}

// --- SecurityInfo JSON ---------------------------------------------------------------------------

/// Leshan's `JacksonSecuritySerializer` shape.
fn security_to_json(info: &SecurityInfo) -> Value {
    let tls = match &info.credential {
        Credential::Psk { identity, key } => json!({
            "mode": "psk",
            "details": {
                "identity": String::from_utf8_lossy(identity),
                "key": hex(key),
            }
        }),
        Credential::Rpk { public_key_der } => json!({
            "mode": "rpk",
            "details": { "key": hex(public_key_der) }
        }),
        Credential::X509 {
            expected_cn,
            pinned_sha256,
        } => {
            if expected_cn == &info.endpoint && pinned_sha256.is_none() {
                json!({ "mode": "x509" })
            } else {
                json!({
                    "mode": "x509",
                    "details": {
                        "expectedCn": expected_cn,
                        "pinnedSha256": pinned_sha256.as_deref().map(hex),
                    }
                })
            }
        }
    };
    json!({ "endpoint": info.endpoint, "tls": tls })
}

/// Reads Leshan's SecurityInfo JSON (`JacksonSecurityDeserializer`); errors carry Leshan's
/// `Invalid request body: ` prefix.
fn security_from_json(body: &[u8]) -> Result<SecurityInfo, ApiError> {
    let invalid = |m: &str| ApiError::bad_request(format!("Invalid request body: {m}"));
    if body.is_empty() {
        return Err(invalid("no content"));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| invalid(&e.to_string()))?;
    let Some(object) = value.as_object() else {
        return Err(invalid("a JSON object is expected"));
    };
    let endpoint = match object.get("endpoint") {
        Some(Value::String(ep)) => ep.clone(),
        Some(_) => return Err(invalid("endpoint must be a string")),
        None => return Err(invalid("endpoint is mandatory")),
    };
    check_endpoint(&endpoint)?;
    // Leshan: `tls` wins over `oscore`.
    let credential = if let Some(tls) = object.get("tls") {
        let mode = tls.get("mode").and_then(Value::as_str).unwrap_or_default();
        let details = tls.get("details");
        let text = |name: &str| details.and_then(|d| d.get(name)).and_then(Value::as_str);
        match mode {
            "psk" => {
                let identity =
                    text("identity").ok_or_else(|| invalid("psk identity is mandatory"))?;
                let key = text("key").ok_or_else(|| invalid("psk key is mandatory"))?;
                if identity.is_empty() {
                    return Err(invalid("psk identity must not be empty"));
                }
                let key = unhex(key).ok_or_else(|| invalid("psk key must be hexadecimal"))?;
                if key.is_empty() {
                    return Err(invalid("psk key must not be empty"));
                }
                Credential::Psk {
                    identity: identity.as_bytes().to_vec(),
                    key,
                }
            }
            "rpk" => {
                let key = text("key").ok_or_else(|| invalid("rpk key is mandatory"))?;
                let der = unhex(key).ok_or_else(|| invalid("rpk key must be hexadecimal"))?;
                // Refuse now what the DTLS handshake could never match.
                if openssl::pkey::PKey::public_key_from_der(&der).is_err() {
                    return Err(invalid(
                        "rpk key is not a DER SubjectPublicKeyInfo (RFC 7250)",
                    ));
                }
                Credential::Rpk {
                    public_key_der: der,
                }
            }
            // Leshan: the certificate's CN must be the endpoint name.
            "x509" => Credential::X509 {
                expected_cn: endpoint.clone(),
                pinned_sha256: None,
            },
            _ => return Err(invalid("tls mode must be one of psk, rpk, x509")),
        }
    } else if object.contains_key("oscore") {
        return Err(invalid("OSCORE security is not supported by Steward"));
    } else {
        return Err(invalid("tls or oscore is mandatory"));
    };
    Ok(SecurityInfo {
        endpoint,
        credential,
    })
}

// --- shared helpers ------------------------------------------------------------------------------

/// An error answer of the management API: status + `text/plain` message (Leshan's
/// `safelySendError`, shown verbatim by the UIs' toasts).
#[derive(Debug, thiserror::Error)]
pub(super) enum ApiError {
    /// The request is wrong; the message says how.
    #[error("{1}")]
    Status(StatusCode, String),
    /// The store failed or refused; mapped by fault domain.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A bug or an unreadable stored object: logged, answered 500.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub(super) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::Status(StatusCode::BAD_REQUEST, message.into())
    }

    pub(super) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::Status(StatusCode::NOT_FOUND, message.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Status(status, message) => (status, message).into_response(),
            ApiError::Store(e) => match e.domain() {
                FaultDomain::Storage => {
                    tracing::error!(error = %e, "store failed under the management API");
                    (StatusCode::INTERNAL_SERVER_ERROR, "store failure").into_response()
                }
                FaultDomain::NotFound => (StatusCode::NOT_FOUND, e.to_string()).into_response(),
                FaultDomain::Conflict => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
            },
            ApiError::Internal(message) => {
                tracing::error!(%message, "management API internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, message).into_response()
            }
        }
    }
}

/// Refuses endpoint names that cannot be real and could hurt whoever uses them later: empty,
/// over-long, control characters (log injection), and path separators or dot segments (path
/// traversal, should a name ever become a file name or a URL segment).
pub(super) fn check_endpoint(endpoint: &str) -> Result<(), ApiError> {
    let reason = if endpoint.is_empty() {
        "it is empty"
    } else if endpoint.len() > MAX_ENDPOINT_LEN {
        "it is longer than 255 bytes"
    } else if endpoint.chars().any(char::is_control) {
        "it contains control characters"
    } else if endpoint.contains(['/', '\\']) || endpoint == "." || endpoint == ".." {
        "it contains a path separator or is a dot segment"
    } else {
        return Ok(());
    };
    Err(ApiError::bad_request(format!(
        "invalid endpoint name: {reason}"
    )))
}

/// The body limit for every route of these modules: a larger body is 413 before it is read.
pub(super) fn body_limit() -> DefaultBodyLimit {
    DefaultBodyLimit::max(MAX_BODY)
}

/// Runs a blocking store call off the async workers (the store fsyncs).
pub(super) async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("store task failed: {e}")))?
        .map_err(ApiError::from)
}

pub(super) fn json_response(status: StatusCode, value: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn endpoint_names() {
        assert!(check_endpoint("urn:imei:123456789012345").is_ok());
        for bad in ["", "..", "a/b", "..\\x", "a\nb", "a\u{7f}"] {
            assert!(check_endpoint(bad).is_err(), "{bad:?}");
        }
        assert!(check_endpoint(&"e".repeat(256)).is_err());
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(unhex("00aB"), Some(vec![0, 0xab]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("+1"), None);
        assert_eq!(hex(&[0, 0xab]), "00ab");
    }

    #[test]
    fn security_json_round_trip() {
        let body = br#"{"endpoint":"ep-new","tls":{"mode":"psk","details":{"identity":"id-new","key":"00112233"}}}"#;
        let info = security_from_json(body).unwrap();
        assert_eq!(
            security_to_json(&info),
            serde_json::from_slice::<Value>(body).unwrap()
        );
        let x509 =
            security_from_json(br#"{"endpoint":"e","tls":{"mode":"x509","details":{}}}"#).unwrap();
        assert_eq!(
            security_to_json(&x509),
            json!({"endpoint":"e","tls":{"mode":"x509"}})
        );
    }
}
