//! `GET /bs/api/event[?ep=NAME]`: the bootstrap server's event stream, Leshan's
//! leshan-demo-bsserver `/api/event` (leshan-rest-api.md §2.5), mounted under `/bs`.
//!
//! Every event is named `BSSESSION` and carries
//! `{"name": .., "endpoint": .., "time": <ms since the epoch>, "message": "<multi-line text>"}`.
//! The [`BootstrapEvent`]s of the Bootstrap-Server listeners map to Leshan's names so:
//!
//! | `BootstrapEvent` | `name`s, in order |
//! |---|---|
//! | `Started` | `new session`, `authorized` (a session only starts once authorized and configured) |
//! | `Step` | `receive success response` (message: the operation, its path and the code) |
//! | `OfferAnswered`, a success code | `receive success response` (message as for `Step`, plus the plugin and offer) |
//! | `OfferAnswered`, an error code | `receive error response` (the same, plus the diagnostic; the session goes on) |
//! | `Finished` | `finished` |
//! | `Failed`, an error code | `receive error response`, `failed` |
//! | `Failed`, no answer (CoAP gave up) | `request failure`, `failed` |
//! | `Failed`, anything else (timeout, superseded, bad Discover answer, encoding) | `failed` |
//! | `Refused`, identity mismatch or NoSec refused | `unauthorized` |
//! | `Refused`, no configuration | `no config` |
//! | `Refused`, anything else (malformed request, bad `pct`, store failure, ...) | `failed` |
//! | `Packed` (Bootstrap-Pack, LwM2M 1.2; Leshan has none) | `bootstrap pack` (Steward's own name) |
//!
//! What cannot be filled as Leshan does:
//! * `send discover` / `send delete` / `send write` / `send request` are not produced: the
//!   session manager reports a step when it is answered, not when it is sent. The answer's
//!   `receive success response` names the operation and path instead.
//! * `time` is when the API took the event off the channel, not when the session manager
//!   produced it (events carry no timestamp); the two differ by microseconds.
//! * `endpoint` is `null` for a refused request that named no readable `ep`; such events
//!   reach only unfiltered streams.
//! * `message` is Steward's text (Leshan prints its Java request objects): the first line says
//!   what happened, further lines give the session id and details.
//!
//! Memory is bounded as for `/api/event` ([`super::events`]): the runtime's channel keeps
//! 1024 events; a connection that falls further behind loses the oldest and is told so with
//! an SSE comment (`: lagged, N events dropped`). A keep-alive comment goes out every
//! [`KEEP_ALIVE`]. The stream ends when the HTTP server stops ([`super::events::ApiShutdown`]).

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::Router;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast;

use super::ApiState;
use super::events::KEEP_ALIVE;
use crate::bootstrap::BootstrapError;
use crate::bootstrap::BootstrapEvent;
use crate::bootstrap::session::FailureReason;
use crate::clock::unix_ms;

/// The one SSE event name of the bootstrap server.
pub const BSSESSION: &str = "BSSESSION";

pub fn routes() -> Router<ApiState> {
    Router::new().route("/bs/api/event", get(event_stream))
}

#[derive(Debug, Deserialize)]
struct EventQuery {
    ep: Option<String>,
}

/// One `BSSESSION` event: its endpoint (for the filter) and its JSON data.
#[derive(Debug, Clone)]
struct Frame {
    endpoint: Option<String>,
    data: String,
}

struct StreamState {
    rx: broadcast::Receiver<BootstrapEvent>,
    filter: Option<String>,
    /// Frames rendered from one event and not yet written (an event may give two).
    queued: VecDeque<Frame>,
    stop: tokio::sync::watch::Receiver<bool>,
}

async fn event_stream(State(state): State<ApiState>, Query(query): Query<EventQuery>) -> Response {
    let initial = StreamState {
        rx: state.bootstrap_events.subscribe(),
        filter: query.ep.filter(|ep| !ep.is_empty()),
        queued: VecDeque::new(),
        stop: state.shutdown.subscribe(),
    };
    let events = stream::unfold(initial, |mut st| async move {
        loop {
            if let Some(frame) = st.queued.pop_front() {
                let event = Event::default().event(BSSESSION).data(frame.data);
                return Some((Ok::<_, Infallible>(event), st));
            }
            if *st.stop.borrow() {
                return None;
            }
            let received = tokio::select! {
                received = st.rx.recv() => received,
                // The server is stopping: end the response.
                _ = st.stop.wait_for(|stopped| *stopped) => return None,
            };
            match received {
                Ok(event) => {
                    let frames = render(&event, unix_ms());
                    st.queued.extend(frames.into_iter().filter(|f| {
                        st.filter
                            .as_ref()
                            .is_none_or(|ep| f.endpoint.as_deref() == Some(ep.as_str()))
                    }));
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    let note = Event::default().comment(format!("lagged, {n} events dropped"));
                    return Some((Ok(note), st));
                }
                // The runtime is gone: nothing more will come.
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response()
}

/// Leshan's `BSSESSION` frames for one event, in order (see the table above).
fn render(event: &BootstrapEvent, time: u64) -> Vec<Frame> {
    let frame = |name: &str, endpoint: Option<&str>, message: String| Frame {
        endpoint: endpoint.map(str::to_owned),
        data: json!({"name": name, "endpoint": endpoint, "time": time, "message": message})
            .to_string(),
    };
    match event {
        BootstrapEvent::Started {
            session,
            endpoint,
            format,
        } => {
            let ep = Some(endpoint.as_str());
            vec![
                frame(
                    "new session",
                    ep,
                    format!(
                        "Bootstrap-Request from {endpoint}\nsession: {}\ncontent format: {format}",
                        session.0
                    ),
                ),
                frame(
                    "authorized",
                    ep,
                    format!("{endpoint} may bootstrap\nsession: {}", session.0),
                ),
            ]
        }
        BootstrapEvent::Step {
            session,
            endpoint,
            op,
            code,
        } => vec![frame(
            "receive success response",
            Some(endpoint),
            format!("{op}\nresponse: {code}\nsession: {}", session.0),
        )],
        BootstrapEvent::OfferAnswered {
            session,
            endpoint,
            plugin,
            offer,
            path,
            code,
            diagnostic,
        } => {
            let (name, diagnostic) = if code.is_success() {
                ("receive success response", String::new())
            } else {
                (
                    "receive error response",
                    format!("\ndiagnostic: {diagnostic}"),
                )
            };
            vec![frame(
                name,
                Some(endpoint),
                format!(
                    "Bootstrap-Write {path} (offer {offer:?} of plugin {plugin})\nresponse: \
                     {code}{diagnostic}\nsession: {}",
                    session.0
                ),
            )]
        }
        BootstrapEvent::Finished { session, endpoint } => vec![frame(
            "finished",
            Some(endpoint),
            format!("Bootstrap session finished\nsession: {}", session.0),
        )],
        BootstrapEvent::Failed {
            session,
            endpoint,
            reason,
        } => {
            let ep = Some(endpoint.as_str());
            let failed = frame(
                "failed",
                ep,
                format!("Bootstrap session failed: {reason}\nsession: {}", session.0),
            );
            let before = match reason {
                FailureReason::ErrorResponse {
                    op,
                    code,
                    diagnostic,
                } => Some(frame(
                    "receive error response",
                    ep,
                    format!(
                        "{op}\nresponse: {code}\ndiagnostic: {diagnostic}\nsession: {}",
                        session.0
                    ),
                )),
                FailureReason::NoResponse { op, failure } => Some(frame(
                    "request failure",
                    ep,
                    format!("{op}\nfailure: {failure:?}\nsession: {}", session.0),
                )),
                _ => None,
            };
            before.into_iter().chain([failed]).collect()
        }
        BootstrapEvent::Packed { endpoint, format } => vec![frame(
            "bootstrap pack",
            Some(endpoint),
            format!("Bootstrap-Pack served to {endpoint}\ncontent format: {format}"),
        )],
        BootstrapEvent::Refused { endpoint, error } => {
            let name = match error {
                BootstrapError::IdentityMismatch(_) | BootstrapError::UnsecuredRefused => {
                    "unauthorized"
                }
                BootstrapError::NoConfig(_) => "no config",
                _ => "failed",
            };
            let mut message = format!(
                "Bootstrap request refused: {error}\nresponse: {}",
                error.code()
            );
            // The details kept from the device are the operator's.
            match error {
                BootstrapError::ConfigUnavailable(detail) => {
                    message.push_str(&format!("\ndetail: {detail}"));
                }
                BootstrapError::InvalidConfig { reason, .. } => {
                    message.push_str(&format!("\ndetail: {reason}"));
                }
                _ => {}
            }
            vec![frame(name, endpoint.as_deref(), message)]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::session::SessionId;
    use serde_json::Value as Json;

    fn data(frame: &Frame) -> Json {
        serde_json::from_str(&frame.data).expect("JSON")
    }

    #[test]
    fn refusals_map_to_leshan_names() {
        let no_config = BootstrapEvent::Refused {
            endpoint: Some("a".into()),
            error: BootstrapError::NoConfig("a".into()),
        };
        let frames = render(&no_config, 5);
        assert_eq!(frames.len(), 1);
        let j = data(&frames[0]);
        assert_eq!(j["name"], "no config");
        assert_eq!(j["endpoint"], "a");
        assert_eq!(j["time"], 5);

        let nameless = BootstrapEvent::Refused {
            endpoint: None,
            error: BootstrapError::MissingEndpoint,
        };
        let frames = render(&nameless, 5);
        assert_eq!(frames[0].endpoint, None);
        assert_eq!(data(&frames[0])["endpoint"], Json::Null);
        assert_eq!(data(&frames[0])["name"], "failed");
    }

    #[test]
    fn offer_answers_are_step_like() {
        let answered = |code| BootstrapEvent::OfferAnswered {
            session: SessionId(3),
            endpoint: "c".into(),
            plugin: "example".into(),
            offer: "label".into(),
            path: steward_objects::Path::Resource(42799, 0, 1),
            code,
            diagnostic: "no".into(),
        };
        let ok = render(&answered(steward_coap::message::Code::CHANGED), 1);
        assert_eq!(ok.len(), 1);
        let j = data(&ok[0]);
        assert_eq!(j["name"], "receive success response");
        assert_eq!(j["endpoint"], "c");
        assert_eq!(
            j["message"],
            "Bootstrap-Write /42799/0/1 (offer \"label\" of plugin example)\nresponse: 2.04\nsession: 3"
        );
        let refused = render(&answered(steward_coap::message::Code::NOT_FOUND), 1);
        let j = data(&refused[0]);
        assert_eq!(j["name"], "receive error response");
        assert!(
            j["message"]
                .as_str()
                .is_some_and(|m| m.contains("response: 4.04\ndiagnostic: no")),
            "{j}"
        );
    }

    #[test]
    fn a_timeout_is_one_failed_event() {
        let failed = BootstrapEvent::Failed {
            session: SessionId(1),
            endpoint: "b".into(),
            reason: FailureReason::Timeout(100),
        };
        let names: Vec<Json> = render(&failed, 0)
            .iter()
            .map(|f| data(f)["name"].clone())
            .collect();
        assert_eq!(names, vec![json!("failed")]);
    }
}
