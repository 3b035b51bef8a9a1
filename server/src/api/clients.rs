//! `/api/clients` and `/api/objectspecs` (leshan-rest-api.md §2.1, §2.2): registrations and
//! device operations in the shape of Leshan's demo server, so its web UI and scripts work.
//!
//! Routing follows Leshan's `ClientServlet`: the endpoint is resolved first (unknown → 400
//! `No registered client with id '{ep}'`), then the rest of the path picks the operation by
//! method and by a trailing `observe`, `discover` or `attributes`, or a leading `composite`.
//! Device error codes are answers (200 with `success:false`); only failures without an answer
//! become HTTP errors (504 `Request timeout`, 400 `Invalid request: ...`, 500 ...), as text.
//!
//! Queue mode: a request for a sleeping queue-mode device is handed to the service (which
//! queues it until the device wakes) and answered at once with
//! `{"ep","path","requestId","delayed":true}`; its outcome is published on
//! [`ApiState::delayed`] as the data of a `REQUEST_RESPONSE` event.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value as Json, json};
use steward_objects::{ContentFormat, Node, Path, Resource, Value};
use tokio::sync::broadcast;

use super::leshan_json::{self, Operation};
use super::{ApiState, security};
use crate::dm::{DmError, DownlinkRequest, WriteMode};

/// Leshan's default when `timeout` is absent or not a number.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Delayed outcomes kept for slow event-stream subscribers.
const DELAYED_CAPACITY: usize = 256;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/clients", get(list))
        .route("/api/clients/{ep}", get(one))
        .route(
            "/api/clients/{ep}/{*rest}",
            get(operation)
                .put(operation)
                .post(operation)
                .delete(operation),
        )
        .route("/api/objectspecs/{ep}", get(object_specs))
        // Same hostile-input rules as the admin routes: bodies over 64 KiB are 413 before
        // they are read.
        .layer(security::body_limit())
}

/// The outcome of a delayed (queue-mode) request: `data` is the whole `REQUEST_RESPONSE`
/// event payload, `{"ep","path"?,"requestId","response","delayed":true}`.
#[derive(Debug, Clone)]
pub struct DelayedResponse {
    pub endpoint: String,
    pub request_id: String,
    pub data: Json,
}

/// The channel delayed outcomes go out on; [`ApiState::delayed`] holds one per server.
pub fn delayed_channel() -> broadcast::Sender<DelayedResponse> {
    broadcast::channel(DELAYED_CAPACITY).0
}

async fn list(State(state): State<ApiState>) -> Response {
    let devices = &state.devices;
    let all: Vec<Json> = devices
        .registrations()
        .iter()
        .map(|r| leshan_json::registration(r, || !devices.is_awake(&r.endpoint)))
        .collect();
    json_ok(Json::Array(all))
}

async fn one(State(state): State<ApiState>, UrlPath(ep): UrlPath<String>) -> Response {
    if let Err(e) = security::check_endpoint(&ep) {
        return e.into_response();
    }
    match state.devices.registration(&ep) {
        Some(r) => json_ok(leshan_json::registration(&r, || {
            !state.devices.is_awake(&ep)
        })),
        None => unknown_endpoint(&ep),
    }
}

async fn object_specs(State(state): State<ApiState>, UrlPath(ep): UrlPath<String>) -> Response {
    if let Err(e) = security::check_endpoint(&ep) {
        return e.into_response();
    }
    match state.devices.client_object_models(&ep) {
        Some(models) => json_ok(leshan_json::object_models(&models)),
        // ObjectSpecServlet's wording (lower-case "no").
        None => text(
            StatusCode::BAD_REQUEST,
            format!("no registered client with id '{ep}'"),
        ),
    }
}

/// Every device operation: `/api/clients/{ep}/...`.
async fn operation(
    State(state): State<ApiState>,
    UrlPath((ep, rest)): UrlPath<(String, String)>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Control characters, separators (`%2F`), dot segments: 400 before any lookup.
    if let Err(e) = security::check_endpoint(&ep) {
        return e.into_response();
    }
    let Some(registration) = state.devices.registration(&ep) else {
        return unknown_endpoint(&ep);
    };
    let query = Query::parse(query.as_deref().unwrap_or(""));
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let call = Call {
        state: &state,
        ep: &ep,
        queue_mode: registration.queue_mode,
        timeout: query.timeout(),
    };
    match (segments.as_slice(), &method) {
        (["composite"], &Method::GET) => {
            let Some(paths) = query.paths() else {
                return invalid("the paths parameter must list LwM2M paths");
            };
            let format = query.composite_format();
            call.send(
                Operation::ReadComposite,
                None,
                DownlinkRequest::ReadComposite { paths, format },
            )
            .await
        }
        (["composite"], &Method::PUT) => {
            let nodes = match json_body(&body).and_then(|b| {
                leshan_json::parse_nodes(&b).map_err(|e| format!("unable to parse json to tlv:{e}"))
            }) {
                Ok(nodes) => nodes,
                Err(e) => return invalid(&e),
            };
            let format = query.composite_format();
            call.send(
                Operation::WriteComposite,
                None,
                DownlinkRequest::WriteComposite { nodes, format },
            )
            .await
        }
        (["composite", "observe"], &Method::POST) => {
            let Some(paths) = query.paths() else {
                return invalid("the paths parameter must list LwM2M paths");
            };
            let format = query.composite_format();
            call.send(
                Operation::ObserveComposite,
                None,
                DownlinkRequest::ObserveComposite { paths, format },
            )
            .await
        }
        (["composite", "observe"], &Method::DELETE) => {
            let Some(paths) = query.paths() else {
                return invalid("the paths parameter must list LwM2M paths");
            };
            if query.has("active") {
                if !call.observed(&paths) {
                    let list: Vec<String> = paths.iter().map(ToString::to_string).collect();
                    return text(
                        StatusCode::NOT_FOUND,
                        format!(
                            "no composite observation for paths [{}] for  client '{ep}'",
                            list.join(", ")
                        ),
                    );
                }
                let format = query.composite_format();
                call.send(
                    Operation::CancelCompositeObservation,
                    None,
                    DownlinkRequest::CancelCompositeObservation { paths, format },
                )
                .await
            } else {
                call.forget(&paths);
                StatusCode::OK.into_response()
            }
        }
        ([ids @ .., "observe"], &Method::POST) if !ids.is_empty() => {
            let Some(path) = lwm2m_path(ids) else {
                return invalid_path();
            };
            let format = query.format();
            call.send(
                Operation::Observe,
                Some(path),
                DownlinkRequest::Observe { path, format },
            )
            .await
        }
        ([ids @ .., "observe"], &Method::DELETE) if !ids.is_empty() => {
            let Some(path) = lwm2m_path(ids) else {
                return invalid_path();
            };
            if query.has("active") {
                if !call.observed(&[path]) {
                    return text(
                        StatusCode::NOT_FOUND,
                        format!("no observation for path {path} for  client '{ep}'"),
                    );
                }
                call.send(
                    Operation::CancelObservation,
                    Some(path),
                    DownlinkRequest::CancelObservation { path },
                )
                .await
            } else {
                call.forget(&[path]);
                StatusCode::OK.into_response()
            }
        }
        ([ids @ .., "discover"], &Method::GET) if !ids.is_empty() => {
            let Some(path) = lwm2m_path(ids) else {
                return invalid_path();
            };
            call.send(
                Operation::Discover,
                Some(path),
                DownlinkRequest::Discover { path, depth: None },
            )
            .await
        }
        ([ids @ .., "attributes"], &Method::PUT) if !ids.is_empty() => {
            let Some(path) = lwm2m_path(ids) else {
                return invalid_path();
            };
            // Leshan parses the whole query as attributes, so it cannot take `timeout`; we
            // take it out first (more useful, and harmless for Leshan's callers).
            let attrs: Vec<String> = query
                .items
                .iter()
                .filter(|(k, _)| k != "timeout")
                .map(|(k, v)| match v {
                    Some(v) => format!("{k}={v}"),
                    None => k.clone(),
                })
                .collect();
            let attributes = match steward_objects::link::NotificationAttributes::from_query(&attrs)
            {
                Ok(a) => a,
                Err(e) => return text(StatusCode::BAD_REQUEST, format!("Invalid attributes: {e}")),
            };
            call.send(
                Operation::WriteAttributes,
                Some(path),
                DownlinkRequest::WriteAttributes { path, attributes },
            )
            .await
        }
        (ids, &Method::GET) if !ids.is_empty() => {
            let Some(path) = lwm2m_path(ids) else {
                return invalid_path();
            };
            let format = query.format();
            call.send(
                Operation::Read,
                Some(path),
                DownlinkRequest::Read { path, format },
            )
            .await
        }
        (ids, &Method::PUT) if ids.len() >= 2 => {
            let Some(path) = lwm2m_path(ids) else {
                return invalid_path();
            };
            let node = match write_body(&path, &headers, &body) {
                Ok(node) => node,
                Err(e) => return invalid(&e),
            };
            let mode = if query.replace() {
                WriteMode::Replace
            } else {
                WriteMode::PartialUpdate
            };
            let format = query.format();
            call.send(
                Operation::Write,
                Some(path),
                DownlinkRequest::Write {
                    path,
                    node,
                    mode,
                    format,
                },
            )
            .await
        }
        (ids @ [_, _, _], &Method::POST) => {
            let Some(path) = lwm2m_path(ids) else {
                return invalid_path();
            };
            // Raw text (`0='abc',1`), even under x-www-form-urlencoded: never form-decoded.
            let args = match std::str::from_utf8(&body) {
                Ok("") => None,
                Ok(s) => Some(s.to_owned()),
                Err(_) => return invalid("execute arguments must be UTF-8 text"),
            };
            call.send(
                Operation::Execute,
                Some(path),
                DownlinkRequest::Execute { path, args },
            )
            .await
        }
        ([object], &Method::POST) => {
            let Ok(object) = object.parse::<u16>() else {
                return invalid_path();
            };
            let (instance, created) = match json_body(&body).and_then(|b| {
                leshan_json::parse_create(&b)
                    .map_err(|e| format!("unable to parse json to tlv:{e}"))
            }) {
                Ok(parsed) => parsed,
                Err(e) => return invalid(&e),
            };
            call.send(
                Operation::Create,
                Some(Path::Object(object)),
                DownlinkRequest::Create {
                    object,
                    instance,
                    resources: created.resources,
                    format: query.format(),
                },
            )
            .await
        }
        (ids @ [_, _], &Method::POST) => {
            let path = ids.join("/");
            invalid(&format!(
                "Invalid path /{path}: Create request must target an object"
            ))
        }
        (ids, &Method::DELETE) if !ids.is_empty() => {
            let Some(path) = lwm2m_path(ids) else {
                return invalid_path();
            };
            call.send(
                Operation::Delete,
                Some(path),
                DownlinkRequest::Delete { path },
            )
            .await
        }
        _ => invalid_path(),
    }
}

/// One device operation in the making: who for, how long to wait.
struct Call<'a> {
    state: &'a ApiState,
    ep: &'a str,
    queue_mode: bool,
    timeout: Duration,
}

impl Call<'_> {
    /// Sends `request` and renders its outcome; for a sleeping queue-mode device, answers
    /// `delayed` at once and publishes the outcome later. `target` is the single path (`None`
    /// for composite operations, whose delayed answers have no `path`).
    async fn send(
        &self,
        op: Operation,
        target: Option<Path>,
        request: DownlinkRequest,
    ) -> Response {
        let devices = &self.state.devices;
        let node_path = target.unwrap_or(Path::Root);
        if self.queue_mode && !devices.is_awake(self.ep) {
            let pending = match devices.start(self.ep, request, self.timeout) {
                Ok(p) => p,
                Err(e) => return dm_error(op, &node_path, self.ep, e),
            };
            let request_id = format!("{:016x}", pending.ticket().id());
            let mut delayed = serde_json::Map::new();
            delayed.insert("ep".into(), json!(self.ep));
            if let Some(path) = target {
                delayed.insert("path".into(), json!(path.to_string()));
            }
            delayed.insert("requestId".into(), json!(request_id));
            let endpoint = self.ep.to_owned();
            let mut event = delayed.clone();
            let published = self.state.delayed.clone();
            tokio::spawn(async move {
                let result = pending.outcome().await;
                // Nobody listening is fine: the answer then only ends up nowhere, as in Leshan
                // without an open event stream.
                if let Some(response) = leshan_json::outcome(op, &node_path, &result) {
                    event.insert("response".into(), response);
                    event.insert("delayed".into(), json!(true));
                    let _ = published.send(DelayedResponse {
                        endpoint,
                        request_id,
                        data: Json::Object(event),
                    });
                }
            });
            delayed.insert("delayed".into(), json!(true));
            return json_ok(Json::Object(delayed));
        }
        let result = devices.request(self.ep, request, self.timeout).await;
        match leshan_json::outcome(op, &node_path, &result) {
            Some(body) => json_ok(body),
            None => match result {
                Err(e) => dm_error(op, &node_path, self.ep, e),
                // `outcome` renders every Ok.
                Ok(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            },
        }
    }

    /// True when this endpoint has an established observation of exactly `paths`.
    fn observed(&self, paths: &[Path]) -> bool {
        self.state
            .devices
            .observations()
            .iter()
            .any(|(_, ep, p)| ep == self.ep && p == paths)
    }

    /// Passive cancel: forgets the observations of exactly `paths` (the device's next
    /// notification gets a Reset).
    fn forget(&self, paths: &[Path]) {
        let devices = &self.state.devices;
        for (ticket, ep, p) in devices.observations() {
            if ep == self.ep && p == paths {
                devices.cancel_observation(ticket);
            }
        }
    }
}

/// A failure without a device answer, as Leshan's servlet reports it (text/plain).
fn dm_error(op: Operation, target: &Path, ep: &str, e: DmError) -> Response {
    match e {
        DmError::Device { code, diagnostic } => {
            json_ok(leshan_json::error_response(op, code, &diagnostic))
        }
        DmError::NotRegistered(_) => unknown_endpoint(ep),
        DmError::Timeout | DmError::Expired { .. } => {
            text(StatusCode::GATEWAY_TIMEOUT, "Request timeout".into())
        }
        DmError::QueueFull { .. } => text(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        DmError::PathNotAllowed { .. }
        | DmError::InvalidRequest { .. }
        | DmError::InvalidAttributes(_)
        | DmError::VersionTooLow { .. }
        | DmError::NoFormat { .. }
        | DmError::FormatNotAccepted { .. }
        | DmError::Encode(_) => invalid(&e.to_string()),
        DmError::UnexpectedCode { .. }
        | DmError::Decode { .. }
        | DmError::BadContentFormat { .. }
        | DmError::Link(_)
        | DmError::BadLocation(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Invalid Response: {e} (request on {target})"),
        ),
        DmError::Transport(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Request rejected: {e}"),
        ),
        DmError::Deregistered | DmError::ServerStopped => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Request cancelled: {e}"),
        ),
    }
}

/// A Write body: JSON node, or (text/plain) a string value for the resource at `path`.
fn write_body(path: &Path, headers: &HeaderMap, body: &[u8]) -> Result<Node, String> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("text/plain") {
        let value = std::str::from_utf8(body).map_err(|_| "body must be UTF-8 text".to_owned())?;
        return match path {
            Path::Resource(..) => Ok(Node::Resource(Resource::Single(Value::String(
                value.to_owned(),
            )))),
            _ => Err(format!("a text body can only write a resource, not {path}")),
        };
    }
    let json = json_body(body)?;
    leshan_json::parse_node(path, &json).map_err(|e| format!("unable to parse json to tlv:{e}"))
}

fn json_body(body: &[u8]) -> Result<Json, String> {
    if body.is_empty() {
        return Err("no content".into());
    }
    serde_json::from_slice(body).map_err(|e| format!("unable to parse json to tlv:{e}"))
}

/// `/o[/i[/r[/ri]]]` from URL segments; `None` for anything that is not 1 to 4 IDs.
fn lwm2m_path(ids: &[&str]) -> Option<Path> {
    if ids.is_empty() || ids.len() > 4 {
        return None;
    }
    format!("/{}", ids.join("/")).parse().ok()
}

/// The query string as Leshan's servlets see it: percent-decoded items, bare flags kept.
struct Query {
    items: Vec<(String, Option<String>)>,
}

impl Query {
    fn parse(raw: &str) -> Query {
        let items = raw
            .split('&')
            .filter(|i| !i.is_empty())
            .map(|item| match item.split_once('=') {
                Some((k, v)) => (percent_decode(k), Some(percent_decode(v))),
                None => (percent_decode(item), None),
            })
            .collect();
        Query { items }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.items
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }

    fn has(&self, name: &str) -> bool {
        self.items.iter().any(|(k, _)| k == name)
    }

    /// Seconds; absent or not a number → 5 s (Leshan's default).
    fn timeout(&self) -> Duration {
        self.get("timeout")
            .and_then(|t| t.trim().parse::<u64>().ok())
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs)
    }

    /// `format=TLV|JSON|SENML_JSON|...`; an unknown name lets the server choose, as in Leshan.
    fn format(&self) -> Option<ContentFormat> {
        self.get("format").and_then(ContentFormat::from_leshan_name)
    }

    /// Composite operations carry one format both ways here: `nodeformat` (the answer's),
    /// else `pathformat`.
    fn composite_format(&self) -> Option<ContentFormat> {
        self.get("nodeformat")
            .or_else(|| self.get("pathformat"))
            .and_then(ContentFormat::from_leshan_name)
    }

    /// `replace` is true unless given as something other than `true` (Boolean.valueOf).
    fn replace(&self) -> bool {
        self.get("replace")
            .is_none_or(|v| v.eq_ignore_ascii_case("true"))
    }

    /// `paths=/3/0/1,/3/0/2` (percent-encoded or raw); `None` when absent or invalid.
    fn paths(&self) -> Option<Vec<Path>> {
        let raw = self.get("paths")?;
        let paths: Option<Vec<Path>> = raw
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| p.trim().parse().ok())
            .collect();
        paths.filter(|p| !p.is_empty())
    }
}

/// `%XX` decoding; malformed escapes are kept as written. `+` stays `+` (not form decoding:
/// attribute values such as `gt=+1` must survive).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_ok(body: Json) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn text(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=UTF-8")],
        message,
    )
        .into_response()
}

fn unknown_endpoint(ep: &str) -> Response {
    text(
        StatusCode::BAD_REQUEST,
        format!("No registered client with id '{ep}'"),
    )
}

fn invalid(message: &str) -> Response {
    text(
        StatusCode::BAD_REQUEST,
        format!("Invalid request: {message}"),
    )
}

fn invalid_path() -> Response {
    text(StatusCode::BAD_REQUEST, "Invalid path".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_flags_and_encoded_paths() {
        let q = Query::parse("paths=%2F3%2F0%2F1,/3/0/14&active&timeout=abc&replace=false");
        assert!(q.has("active"));
        assert_eq!(q.timeout(), DEFAULT_TIMEOUT);
        assert!(!q.replace());
        assert_eq!(
            q.paths(),
            Some(vec![Path::Resource(3, 0, 1), Path::Resource(3, 0, 14)])
        );
        assert!(Query::parse("").replace());
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
