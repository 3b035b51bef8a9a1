//! `GET /metrics`: Prometheus text exposition format 0.0.4, written by hand (a handful of
//! families; no client library needed).
//!
//! | metric | type | source |
//! |---|---|---|
//! | `steward_registrations` | gauge | [`Devices::registrations`] |
//! | `steward_observations` | gauge | [`Devices::observations`] |
//! | `steward_queued_requests` | gauge | [`Devices::queued`] (the DM service's queues for sleeping devices), summed over registrations |
//! | `steward_device_requests_total{operation,result}` | counter | [`Devices::counters`]: every downlink request, whoever made it |
//! | `steward_dtls_handshakes_total{listener,result}` | counter | the DTLS listeners (`lwm2m`, `bootstrap`): `ok`, `failed`, `timeout` |
//! | `steward_notifications_total` | counter | `DeviceEvent::Notification` seen by the event hub |
//! | `steward_sends_total` | counter | `DeviceEvent::Send` |
//! | `steward_registration_events_total{event}` | counter | register / update / deregister (incl. expiry) |
//! | `steward_http_requests_total{method,route,status}` | counter | this API's requests, by route template |
//! | `steward_sse_streams` | gauge | open `/api/event` streams |
//! | `steward_sse_dropped_events_total` | counter | events lost by slow SSE readers |
//! | `steward_est_issued_certificates` | gauge | certificates in the CA's store (only with a CA) |
//!
//! Counters start at zero when the server starts. Device operations are counted twice: by the
//! DM service (`steward_device_requests_total`, by operation and result: `success`,
//! `device_error`, `timeout`, `rejected` before sending, `failed` otherwise), which covers
//! every user of [`Devices`] (API, CLI, plugins), and by the API
//! (`steward_http_requests_total`, with the route template such as
//! `/api/clients/{ep}/{*rest}` and the HTTP status it answered). Route labels are route
//! templates, never raw paths, so the number of series stays bounded.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};

use super::ApiState;
use super::events::EventHub;

/// HTTP requests counted by method, route template and status.
type RequestCounts = BTreeMap<(Method, String, u16), u64>;

/// What `/metrics` reads besides the devices: the event hub's counts and the HTTP requests.
#[derive(Clone)]
pub struct Metrics {
    hub: EventHub,
    http: Arc<Mutex<RequestCounts>>,
}

impl Metrics {
    pub fn new(hub: EventHub) -> Metrics {
        Metrics {
            hub,
            http: Arc::default(),
        }
    }
}

pub fn routes(metrics: Metrics) -> Router<ApiState> {
    Router::new()
        .route("/metrics", get(scrape))
        .layer(Extension(metrics))
}

/// Middleware counting every API request (`from_fn_with_state(metrics, count_requests)`).
pub async fn count_requests(
    State(metrics): State<Metrics>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let key = (method, route, response.status().as_u16());
    *metrics
        .http
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(key)
        .or_default() += 1;
    response
}

async fn scrape(State(state): State<ApiState>, Extension(metrics): Extension<Metrics>) -> Response {
    let devices = state.devices.clone();
    let pki = state.pki.clone();
    // Walks the registrations and, with a CA, the issued-certificate records: off the
    // async workers.
    let gauges = tokio::task::spawn_blocking(move || {
        let registrations = devices.registrations();
        let queued: usize = registrations
            .iter()
            .map(|r| devices.queued(&r.endpoint))
            .sum();
        let issued = pki.and_then(|pki| match pki.store().all_issued() {
            Ok(all) => Some(all.len()),
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot read the issued certificates");
                None
            }
        });
        (
            registrations.len(),
            devices.observations().len(),
            queued,
            issued,
        )
    })
    .await;
    let Ok((registrations, observations, queued, issued)) = gauges else {
        return (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "metrics task failed",
        )
            .into_response();
    };
    let counts = metrics.hub.counts();
    let mut out = String::new();
    let requests = state.devices.counters().snapshot();
    family(
        &mut out,
        "steward_registrations",
        "gauge",
        "Current registrations.",
    );
    sample(&mut out, "steward_registrations", &[], registrations as u64);
    family(
        &mut out,
        "steward_observations",
        "gauge",
        "Established observations.",
    );
    sample(&mut out, "steward_observations", &[], observations as u64);
    family(
        &mut out,
        "steward_queued_requests",
        "gauge",
        "Requests waiting for sleeping queue-mode devices.",
    );
    sample(&mut out, "steward_queued_requests", &[], queued as u64);
    family(
        &mut out,
        "steward_device_requests_total",
        "counter",
        "Downlink requests to devices by operation and result.",
    );
    for (operation, result, n) in requests {
        sample(
            &mut out,
            "steward_device_requests_total",
            &[("operation", operation), ("result", result.label())],
            n,
        );
    }
    if !state.dtls.is_empty() {
        family(
            &mut out,
            "steward_dtls_handshakes_total",
            "counter",
            "DTLS handshakes by listener and result.",
        );
    }
    for (listener, dtls) in &state.dtls {
        let m = dtls.snapshot();
        for (result, n) in [
            ("ok", m.handshakes_ok),
            ("failed", m.handshakes_failed),
            ("timeout", m.handshakes_timed_out),
        ] {
            sample(
                &mut out,
                "steward_dtls_handshakes_total",
                &[("listener", listener), ("result", result)],
                n,
            );
        }
    }
    family(
        &mut out,
        "steward_notifications_total",
        "counter",
        "Observe notifications received.",
    );
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    sample(
        &mut out,
        "steward_notifications_total",
        &[],
        load(&counts.notifications),
    );
    family(
        &mut out,
        "steward_sends_total",
        "counter",
        "LwM2M Send reports received.",
    );
    sample(&mut out, "steward_sends_total", &[], load(&counts.sends));
    family(
        &mut out,
        "steward_registration_events_total",
        "counter",
        "Registrations, updates and deregistrations (expiry included).",
    );
    for (event, c) in [
        ("register", &counts.registrations),
        ("update", &counts.updates),
        ("deregister", &counts.deregistrations),
    ] {
        sample(
            &mut out,
            "steward_registration_events_total",
            &[("event", event)],
            load(c),
        );
    }
    family(
        &mut out,
        "steward_http_requests_total",
        "counter",
        "HTTP API requests by method, route template and status.",
    );
    let http = metrics
        .http
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for ((method, route, status), n) in &http {
        let status = status.to_string();
        sample(
            &mut out,
            "steward_http_requests_total",
            &[
                ("method", method.as_str()),
                ("route", route),
                ("status", &status),
            ],
            *n,
        );
    }
    family(
        &mut out,
        "steward_sse_streams",
        "gauge",
        "Open event streams.",
    );
    sample(
        &mut out,
        "steward_sse_streams",
        &[],
        metrics.hub.open_streams(),
    );
    family(
        &mut out,
        "steward_sse_dropped_events_total",
        "counter",
        "Events dropped for event-stream readers that fell behind.",
    );
    sample(
        &mut out,
        "steward_sse_dropped_events_total",
        &[],
        load(&counts.sse_dropped),
    );
    if let Some(issued) = issued {
        family(
            &mut out,
            "steward_est_issued_certificates",
            "gauge",
            "Certificates the CA has issued (EST and CLI).",
        );
        sample(
            &mut out,
            "steward_est_issued_certificates",
            &[],
            issued as u64,
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Label values escape `\`, `"` and newline (exposition format 0.0.4).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_follow_the_text_format() {
        let mut out = String::new();
        family(&mut out, "x_total", "counter", "Things.");
        sample(&mut out, "x_total", &[("route", "/a\"b\\c\nd")], 3);
        sample(&mut out, "x_total", &[], 0);
        assert_eq!(
            out,
            "# HELP x_total Things.\n# TYPE x_total counter\n\
             x_total{route=\"/a\\\"b\\\\c\\nd\"} 3\nx_total 0\n"
        );
    }
}
