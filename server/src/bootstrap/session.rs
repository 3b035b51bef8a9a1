//! Bootstrap sessions as a sans-IO state machine: a Bootstrap-Request in, a response and
//! [`Action`]s (requests to send, events) out; each answer to one of our requests back in; no
//! sockets and no clock. The caller passes `now` (unix ms), asks
//! [`BootstrapSessions::poll_timeout`] when to call [`BootstrapSessions::on_timeout`], sends
//! [`Outgoing`] requests through its CoAP stack to the peer's address, and reports each
//! request's outcome with its [`Correlation`].
//!
//! # A session
//!
//! ```text
//! client                                   server
//!   POST /bs?ep=dev&pct=112  ───────────►  identity check, config lookup, format
//!                            ◄───────────  2.04 Changed
//!                            ◄───────────  GET /  (Accept 40)   only with autoIdForSecurityObject
//!   2.05 </0/0>,</0/1>;ssid=1,...  ──────►  pick Security instance IDs
//!                            ◄───────────  DELETE each toDelete path   (default /0, /1)
//!                            ◄───────────  PUT /0/x, /1/x, /2/x, /21/x  (one instance each)
//!                            ◄───────────  POST /bs  Bootstrap-Finish
//!   2.04 Changed             ──────────►  Finished
//! ```
//!
//! One request is in flight per session (Transport §6.4.2 orders these operations, and a
//! bootstrapping client is a constrained device). Any error response, any request that gets no
//! response, and the session deadline fail the session with a [`FailureReason`]; a success
//! code other than the one the operation defines is accepted for Delete, Write and Finish (a
//! 2.02 for a Write changes nothing about what the client did) and recorded in the
//! [`BootstrapEvent::Step`]. Leshan differs here: it continues after an error on anything but
//! Finish; we stop, because a configuration written in part is not one the operator asked for
//! and the client would be left with it after its own Finish timeout.
//!
//! Bootstrap-Delete of `/0` is sent as is: keeping the Bootstrap-Server account is the
//! client's rule (Transport §6.4.2), not something the server works around.
//!
//! A second Bootstrap-Request from the same endpoint replaces its running session (the client
//! restarted; the old session's answers would never come): the old one fails as
//! [`FailureReason::Superseded`].
//!
//! # Content format
//!
//! Writes use, in order: the configuration's `contentFormat`; the client's `pct`; TLV. The
//! Bootstrap-Request carries no LwM2M version, so `choose_format` (which needs one) does not
//! fit: without `pct` the client may be 1.0, and TLV is the one tree format every version
//! reads (Leshan's default too). A `pct` that cannot carry an instance is answered 4.15
//! (Transport §6.4.2).
//!
//! # Outgoing order
//!
//! The first [`Action::Send`] of a session comes with the 2.04 to the Bootstrap-Request; the
//! driver must send that response first (the client expects its answer before the server's
//! requests, and a client that has not seen the 2.04 may retransmit the request).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;

use steward_coap::endpoint::Failure;
use steward_coap::message::{Code, Method, Request, Response, encode_uint, option};
use steward_objects::link::DiscoverAnswer;
use steward_objects::{ContentFormat, Node, Path, codec};

use super::config::BootstrapConfig;
use super::error::BootstrapError;
use super::nodes::SECURITY;
use super::pack;
use super::request::{self, BS, BootstrapRequest, UplinkRequest};
use crate::lwm2m::Peer;
use crate::store::Store;

/// Session deadline when none is configured: well inside the client's own limit
/// (EXCHANGE_LIFETIME, 247 s, Core §6.1.6) so that both sides agree a session failed.
pub const DEFAULT_SESSION_TIMEOUT_MS: u64 = 60_000;

/// Concurrent sessions when none is configured: each holds a configuration in memory.
pub const DEFAULT_MAX_SESSIONS: usize = 10_000;

#[derive(Debug, Clone)]
pub struct SessionsConfig {
    /// Accept NoSec (coap://) bootstrap requests. Off by default, as for registrations.
    pub allow_unsecured: bool,
    /// From the Bootstrap-Request to the answer to Bootstrap-Finish.
    pub session_timeout_ms: u64,
    /// More sessions at once are refused with 5.03.
    pub max_sessions: usize,
}

impl Default for SessionsConfig {
    fn default() -> SessionsConfig {
        SessionsConfig {
            allow_unsecured: false,
            session_timeout_ms: DEFAULT_SESSION_TIMEOUT_MS,
            max_sessions: DEFAULT_MAX_SESSIONS,
        }
    }
}

/// Where sessions get configurations from. The runtime passes its store; tests pass a map.
pub trait ConfigSource {
    /// The configuration of `endpoint`; `Err` when the source itself failed (the client gets
    /// 5.00, the text goes to the log).
    fn lookup(&self, endpoint: &str) -> Result<Option<BootstrapConfig>, String>;
}

impl ConfigSource for BTreeMap<String, BootstrapConfig> {
    fn lookup(&self, endpoint: &str) -> Result<Option<BootstrapConfig>, String> {
        Ok(self.get(endpoint).cloned())
    }
}

impl ConfigSource for HashMap<String, BootstrapConfig> {
    fn lookup(&self, endpoint: &str) -> Result<Option<BootstrapConfig>, String> {
        Ok(self.get(endpoint).cloned())
    }
}

impl ConfigSource for dyn Store {
    fn lookup(&self, endpoint: &str) -> Result<Option<BootstrapConfig>, String> {
        self.bootstrap_config(endpoint).map_err(|e| e.to_string())
    }
}

/// Names a session (unique for the lifetime of a [`BootstrapSessions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// Names one request of a session: what the driver hands back with its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Correlation {
    pub session: SessionId,
    /// 1 for the first request of the session, then counting.
    pub step: u32,
}

/// An encoded payload. `Debug` shows its size only: Security instances hold keys.
#[derive(Clone, PartialEq, Eq)]
pub struct Content {
    pub format: ContentFormat,
    pub payload: Vec<u8>,
}

impl fmt::Debug for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Content({}, {} bytes)",
            self.format.code(),
            self.payload.len()
        )
    }
}

/// A downlink Bootstrap-interface operation (Transport §6.4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapOp {
    /// GET with Accept 40, on `/` or `/o`.
    Discover { path: Path },
    /// GET (1.1+), on `/o` (2 per Transport; Core also allows 1); answered in `format`.
    Read { path: Path, format: ContentFormat },
    /// PUT with the instance.
    Write { path: Path, content: Content },
    /// DELETE on `/`, `/o` or `/o/i`.
    Delete { path: Path },
    /// POST /bs, empty.
    Finish,
}

/// Which operation, without its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    Discover,
    Read,
    Write,
    Delete,
    Finish,
}

/// An operation as events and errors name it: kind and path, never the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StepInfo {
    pub kind: OpKind,
    /// `None` for Finish (its `/bs` is not an LwM2M path).
    pub path: Option<Path>,
}

impl fmt::Display for StepInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.kind {
            OpKind::Discover => "Bootstrap-Discover",
            OpKind::Read => "Bootstrap-Read",
            OpKind::Write => "Bootstrap-Write",
            OpKind::Delete => "Bootstrap-Delete",
            OpKind::Finish => "Bootstrap-Finish",
        };
        match self.path {
            Some(p) => write!(f, "{name} {p}"),
            None => f.write_str(name),
        }
    }
}

impl BootstrapOp {
    pub fn info(&self) -> StepInfo {
        let (kind, path) = match self {
            BootstrapOp::Discover { path } => (OpKind::Discover, Some(*path)),
            BootstrapOp::Read { path, .. } => (OpKind::Read, Some(*path)),
            BootstrapOp::Write { path, .. } => (OpKind::Write, Some(*path)),
            BootstrapOp::Delete { path } => (OpKind::Delete, Some(*path)),
            BootstrapOp::Finish => (OpKind::Finish, None),
        };
        StepInfo { kind, path }
    }

    /// The CoAP request. Bootstrap uses plain `/o/i` paths, never an alternate path
    /// (Transport §6.4.1).
    pub fn to_request(&self) -> Request {
        match self {
            BootstrapOp::Discover { path } => Request::new(Method::Get)
                .with_path(&path.to_string())
                .with_option(
                    option::ACCEPT,
                    encode_uint(u32::from(ContentFormat::LinkFormat.code())),
                ),
            BootstrapOp::Read { path, format } => Request::new(Method::Get)
                .with_path(&path.to_string())
                .with_option(option::ACCEPT, encode_uint(u32::from(format.code()))),
            BootstrapOp::Write { path, content } => Request::new(Method::Put)
                .with_path(&path.to_string())
                .with_payload(content.format.code(), content.payload.clone()),
            BootstrapOp::Delete { path } => {
                Request::new(Method::Delete).with_path(&path.to_string())
            }
            BootstrapOp::Finish => Request::new(Method::Post).with_path(BS),
        }
    }
}

/// A request for the driver to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub correlation: Correlation,
    pub endpoint: String,
    /// The peer address the Bootstrap-Request came from (over the same (D)TLS session).
    pub address: String,
    pub op: BootstrapOp,
    pub request: Request,
}

/// What the driver does next, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Send(Outgoing),
    Event(BootstrapEvent),
}

/// What happened, for logs, metrics and the API's event stream (Leshan's `BSSESSION`).
#[derive(Debug, Clone, PartialEq)]
pub enum BootstrapEvent {
    Started {
        session: SessionId,
        endpoint: String,
        format: ContentFormat,
    },
    /// One of our requests was answered with success `code`.
    Step {
        session: SessionId,
        endpoint: String,
        op: StepInfo,
        code: Code,
    },
    /// Bootstrap-Finish was answered 2.04: the client applies the configuration.
    Finished {
        session: SessionId,
        endpoint: String,
    },
    Failed {
        session: SessionId,
        endpoint: String,
        reason: FailureReason,
    },
    /// A Bootstrap-Pack was served.
    Packed {
        endpoint: String,
        format: ContentFormat,
    },
    /// A Bootstrap-Request or Pack-Request was refused (Leshan: "unauthorized", "no config").
    /// `endpoint` is the `ep` the request named, if it could be read.
    Refused {
        endpoint: Option<String>,
        error: BootstrapError,
    },
}

/// How one of our requests ended, as the driver reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Response(Response),
    /// The CoAP layer gave up (no ACK, Reset, ...).
    Failed(Failure),
}

/// Why a session failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FailureReason {
    #[error("{op} answered {code}{}", diag(diagnostic))]
    ErrorResponse {
        op: StepInfo,
        code: Code,
        diagnostic: String,
    },
    #[error("{op} got no response: {failure:?}")]
    NoResponse { op: StepInfo, failure: Failure },
    #[error("{op} answered {code}, which it does not define")]
    UnexpectedResponse { op: StepInfo, code: Code },
    #[error("Bootstrap-Discover answer is not usable: {0}")]
    BadDiscover(String),
    #[error("{path} cannot be encoded as {format}: {reason}")]
    Encode {
        path: Path,
        format: ContentFormat,
        reason: String,
    },
    #[error("session not finished within {0} ms")]
    Timeout(u64),
    #[error("replaced by a new Bootstrap-Request from the same endpoint")]
    Superseded,
}

fn diag(d: &str) -> String {
    if d.is_empty() {
        String::new()
    } else {
        format!(" ({d})")
    }
}

/// The formats a Bootstrap-Write can carry an instance in.
pub const WRITE_FORMATS: [ContentFormat; 4] = [
    ContentFormat::Tlv,
    ContentFormat::SenmlCbor,
    ContentFormat::SenmlJson,
    ContentFormat::Lwm2mCbor,
];

#[derive(Debug)]
struct Session {
    endpoint: String,
    address: String,
    config: BootstrapConfig,
    format: ContentFormat,
    deadline_ms: u64,
    /// The step number of the request in flight.
    step: u32,
    in_flight: StepInfo,
    pending: VecDeque<BootstrapOp>,
}

/// All bootstrap sessions of one Bootstrap-Server.
#[derive(Debug)]
pub struct BootstrapSessions {
    config: SessionsConfig,
    next_id: u64,
    sessions: BTreeMap<SessionId, Session>,
    by_endpoint: HashMap<String, SessionId>,
    deadlines: BTreeSet<(u64, SessionId)>,
}

impl BootstrapSessions {
    pub fn new(config: SessionsConfig) -> BootstrapSessions {
        BootstrapSessions {
            config,
            next_id: 1,
            sessions: BTreeMap::new(),
            by_endpoint: HashMap::new(),
            deadlines: BTreeSet::new(),
        }
    }

    /// Sessions in progress.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The running session of an endpoint.
    pub fn session_of(&self, endpoint: &str) -> Option<SessionId> {
        self.by_endpoint.get(endpoint).copied()
    }

    /// Answers one request to the bootstrap endpoint: `POST /bs` starts a session, `GET
    /// /bspack` is answered with the pack; anything else is refused. `configs` is read once, at
    /// the start of a session: a configuration changed later applies to the next session.
    pub fn on_request<C: ConfigSource + ?Sized>(
        &mut self,
        now_ms: u64,
        peer: &Peer,
        request: &Request,
        configs: &C,
    ) -> (Response, Vec<Action>) {
        let outcome = request::parse(request).and_then(|parsed| match parsed {
            UplinkRequest::Bootstrap(b) => self.start(now_ms, peer, b, configs),
            UplinkRequest::Pack(p) => {
                let (response, endpoint, format) =
                    pack::answer(peer, &p, self.config.allow_unsecured, configs)?;
                Ok((
                    response,
                    vec![Action::Event(BootstrapEvent::Packed { endpoint, format })],
                ))
            }
        });
        match outcome {
            Ok(ok) => ok,
            Err(error) => {
                // The `Display` of store and validation failures leaves their details out:
                // those are for the operator (the event), not for the device.
                let response = Response::new(error.code()).with_diagnostic(&error.to_string());
                let endpoint = requested_endpoint(request);
                (
                    response,
                    vec![Action::Event(BootstrapEvent::Refused { endpoint, error })],
                )
            }
        }
    }

    /// Takes the outcome of a request sent for `correlation`. Outcomes of a session that has
    /// ended, or of a step that is not the one in flight, are ignored.
    pub fn on_response(
        &mut self,
        now_ms: u64,
        correlation: Correlation,
        outcome: Outcome,
    ) -> Vec<Action> {
        let id = correlation.session;
        let Some(session) = self.sessions.get_mut(&id) else {
            return Vec::new();
        };
        if session.step != correlation.step {
            return Vec::new();
        }
        let op = session.in_flight;
        let response = match outcome {
            Outcome::Failed(failure) => {
                return self.fail(id, FailureReason::NoResponse { op, failure });
            }
            Outcome::Response(r) => r,
        };
        if !response.code.is_success() {
            let diagnostic = String::from_utf8_lossy(&response.payload)
                .chars()
                .take(128)
                .collect();
            return self.fail(
                id,
                FailureReason::ErrorResponse {
                    op,
                    code: response.code,
                    diagnostic,
                },
            );
        }
        let mut actions = vec![Action::Event(BootstrapEvent::Step {
            session: id,
            endpoint: session.endpoint.clone(),
            op,
            code: response.code,
        })];
        match op.kind {
            OpKind::Discover | OpKind::Read if response.code != Code::CONTENT => {
                actions.extend(self.fail(
                    id,
                    FailureReason::UnexpectedResponse {
                        op,
                        code: response.code,
                    },
                ));
                return actions;
            }
            OpKind::Discover => {
                let planned = DiscoverAnswer::parse(&response.payload)
                    .map_err(|e| FailureReason::BadDiscover(e.to_string()))
                    .and_then(|answer| {
                        let ids = assign_security_ids(&session.config, &answer);
                        plan(&session.config, session.format, &ids)
                    });
                match planned {
                    Ok(ops) => session.pending.extend(ops),
                    Err(reason) => {
                        actions.extend(self.fail(id, reason));
                        return actions;
                    }
                }
            }
            OpKind::Finish => {
                let endpoint = session.endpoint.clone();
                self.remove(id);
                actions.push(Action::Event(BootstrapEvent::Finished {
                    session: id,
                    endpoint,
                }));
                return actions;
            }
            OpKind::Read | OpKind::Write | OpKind::Delete => {}
        }
        let _ = now_ms; // Per-step deadlines are the CoAP layer's; the session's is fixed.
        actions.extend(self.send_next(id));
        actions
    }

    /// When [`BootstrapSessions::on_timeout`] has work (unix ms).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// Fails every session whose deadline has passed.
    pub fn on_timeout(&mut self, now_ms: u64) -> Vec<Action> {
        let expired: Vec<SessionId> = self
            .deadlines
            .iter()
            .take_while(|(t, _)| *t <= now_ms)
            .map(|(_, id)| *id)
            .collect();
        let timeout = self.config.session_timeout_ms;
        expired
            .into_iter()
            .flat_map(|id| self.fail(id, FailureReason::Timeout(timeout)))
            .collect()
    }

    fn start<C: ConfigSource + ?Sized>(
        &mut self,
        now_ms: u64,
        peer: &Peer,
        b: BootstrapRequest,
        configs: &C,
    ) -> Result<(Response, Vec<Action>), BootstrapError> {
        let endpoint = request::authorize(
            b.endpoint.as_deref(),
            &peer.identity,
            self.config.allow_unsecured,
        )?;
        let config = configs
            .lookup(&endpoint)
            .map_err(BootstrapError::ConfigUnavailable)?
            .ok_or_else(|| BootstrapError::NoConfig(endpoint.chars().take(64).collect()))?;
        let invalid = |reason: String| BootstrapError::InvalidConfig {
            endpoint: endpoint.clone(),
            reason,
        };
        config.validate().map_err(|e| invalid(e.to_string()))?;
        let format = match (config.content_format, b.preferred_format) {
            (Some(forced), _) if WRITE_FORMATS.contains(&forced) => forced,
            (Some(forced), _) => {
                return Err(invalid(format!("{forced} cannot carry a Bootstrap-Write")));
            }
            (None, Some(pct)) => ContentFormat::from_code(pct)
                .filter(|f| WRITE_FORMATS.contains(f))
                .ok_or(BootstrapError::UnsupportedPreferredFormat(pct))?,
            (None, None) => ContentFormat::Tlv,
        };
        let replaced = self.by_endpoint.get(&endpoint).copied();
        if replaced.is_none() && self.sessions.len() >= self.config.max_sessions {
            return Err(BootstrapError::TooManySessions);
        }
        let pending: VecDeque<BootstrapOp> = if config.auto_id_for_security_object {
            VecDeque::from([BootstrapOp::Discover { path: Path::Root }])
        } else {
            plan(&config, format, &BTreeMap::new())
                .map_err(|e| invalid(e.to_string()))?
                .into()
        };

        // Everything that can refuse the request has run: now change state.
        let mut actions = Vec::new();
        if let Some(old) = replaced {
            actions.extend(self.fail(old, FailureReason::Superseded));
        }
        let id = SessionId(self.next_id);
        self.next_id += 1;
        let deadline_ms = now_ms.saturating_add(self.config.session_timeout_ms);
        self.sessions.insert(
            id,
            Session {
                endpoint: endpoint.clone(),
                address: peer.address.clone(),
                config,
                format,
                deadline_ms,
                step: 0,
                in_flight: BootstrapOp::Finish.info(),
                pending,
            },
        );
        self.by_endpoint.insert(endpoint.clone(), id);
        self.deadlines.insert((deadline_ms, id));
        actions.push(Action::Event(BootstrapEvent::Started {
            session: id,
            endpoint,
            format,
        }));
        actions.extend(self.send_next(id));
        Ok((Response::new(Code::CHANGED), actions))
    }

    /// Sends the session's next planned request.
    fn send_next(&mut self, id: SessionId) -> Vec<Action> {
        let Some(session) = self.sessions.get_mut(&id) else {
            return Vec::new();
        };
        // Every plan ends with Finish, whose answer ends the session; an empty queue here
        // would be a planning bug, and Finish is the safe way out of it.
        let op = session.pending.pop_front().unwrap_or(BootstrapOp::Finish);
        session.step += 1;
        session.in_flight = op.info();
        vec![Action::Send(Outgoing {
            correlation: Correlation {
                session: id,
                step: session.step,
            },
            endpoint: session.endpoint.clone(),
            address: session.address.clone(),
            request: op.to_request(),
            op,
        })]
    }

    fn fail(&mut self, id: SessionId, reason: FailureReason) -> Vec<Action> {
        match self.remove(id) {
            Some(session) => vec![Action::Event(BootstrapEvent::Failed {
                session: id,
                endpoint: session.endpoint,
                reason,
            })],
            None => Vec::new(),
        }
    }

    fn remove(&mut self, id: SessionId) -> Option<Session> {
        let session = self.sessions.remove(&id)?;
        self.deadlines.remove(&(session.deadline_ms, id));
        if self.by_endpoint.get(&session.endpoint) == Some(&id) {
            self.by_endpoint.remove(&session.endpoint);
        }
        Some(session)
    }
}

/// The `ep` of a request, for the refusal event; clipped, since the peer controls it.
fn requested_endpoint(request: &Request) -> Option<String> {
    request.options.uri_query()?.into_iter().find_map(|q| {
        q.strip_prefix("ep=")
            .map(|ep| ep.chars().take(64).collect())
    })
}

/// The requests of a session after any Bootstrap-Discover: deletes, writes, Finish.
fn plan(
    config: &BootstrapConfig,
    format: ContentFormat,
    security_ids: &BTreeMap<u16, u16>,
) -> Result<Vec<BootstrapOp>, FailureReason> {
    let mut ops: Vec<BootstrapOp> = config
        .to_delete
        .iter()
        .map(|path| BootstrapOp::Delete { path: *path })
        .collect();
    for write in config.instance_writes(security_ids) {
        let node = Node::Instance(write.instance);
        let payload =
            codec::encode(format, &write.path, &node).map_err(|e| FailureReason::Encode {
                path: write.path,
                format,
                reason: e.to_string(),
            })?;
        ops.push(BootstrapOp::Write {
            path: write.path,
            content: Content { format, payload },
        });
    }
    ops.push(BootstrapOp::Finish);
    Ok(ops)
}

/// Security instance IDs for `autoIdForSecurityObject`, from a Bootstrap-Discover of `/`.
///
/// The device's Bootstrap-Server account is the /0 instance listed without `ssid` (LwM2M
/// Servers' accounts carry theirs). The configuration's Bootstrap-Server entry takes that ID,
/// so that it is rewritten rather than duplicated. Every other entry takes the lowest ID that
/// is neither taken by an earlier entry nor held by an instance that survives the
/// configuration's deletes (the Bootstrap-Server account always survives).
pub fn assign_security_ids(
    config: &BootstrapConfig,
    answer: &DiscoverAnswer,
) -> BTreeMap<u16, u16> {
    let instances: Vec<(u16, bool)> = answer
        .links
        .iter()
        .filter_map(|l| match l.path {
            Path::Instance(SECURITY, i) => Some((i, l.properties.ssid.is_some())),
            _ => None,
        })
        .collect();
    let device_bs = instances.iter().find(|(_, ssid)| !ssid).map(|(i, _)| *i);
    let mut taken: BTreeSet<u16> = instances
        .iter()
        .map(|(i, _)| *i)
        .filter(|i| {
            Some(*i) == device_bs
                || !config
                    .to_delete
                    .iter()
                    .any(|d| d.is_prefix_of(&Path::Instance(SECURITY, *i)))
        })
        .collect();
    let mut ids = BTreeMap::new();
    let next_free = |taken: &mut BTreeSet<u16>| {
        // 65535 is never an instance ID; 65535 accounts cannot exist, so this always finds one.
        let id = (0..u16::MAX).find(|i| !taken.contains(i)).unwrap_or(0);
        taken.insert(id);
        id
    };
    for (key, sec) in &config.security {
        if sec.bootstrap_server {
            let id = match device_bs {
                Some(id) => id,
                None => next_free(&mut taken),
            };
            ids.insert(*key, id);
        }
    }
    for (key, sec) in &config.security {
        if !sec.bootstrap_server {
            ids.insert(*key, next_free(&mut taken));
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::bootstrap::config::{ServerConfig, ServerSecurity};

    fn config() -> BootstrapConfig {
        let mut c = BootstrapConfig::default();
        c.servers.insert(0, ServerConfig::new(1));
        c.security.insert(
            1,
            ServerSecurity::psk("coaps://dm", 1, b"dev", b"0123456789abcdef"),
        );
        c
    }

    #[test]
    fn auto_ids_keep_the_bootstrap_account_and_skip_survivors() {
        let mut c = config();
        c.auto_id_for_security_object = true;
        c.security.insert(
            0,
            ServerSecurity {
                bootstrap_server: true,
                ..ServerSecurity::psk("coaps://bs", 9, b"dev", b"k")
            },
        );
        let answer =
            DiscoverAnswer::parse(b"</>;lwm2m=1.1,</0/0>;ssid=1,</0/1>,</1/0>;ssid=1,</3/0>")
                .unwrap();
        // /0 deleted: only the BS account (/0/1) survives.
        let ids = assign_security_ids(&c, &answer);
        assert_eq!(ids, BTreeMap::from([(0, 1), (1, 0)]));
        // Nothing deleted: /0/0 survives too.
        c.to_delete.clear();
        let ids = assign_security_ids(&c, &answer);
        assert_eq!(ids, BTreeMap::from([(0, 1), (1, 2)]));
    }

    #[test]
    fn op_requests() {
        let d = BootstrapOp::Delete { path: Path::Root }.to_request();
        assert_eq!(
            (d.method, d.path_string()),
            (Method::Delete, "/".to_owned())
        );
        let f = BootstrapOp::Finish.to_request();
        assert_eq!(
            (f.method, f.path_string()),
            (Method::Post, "/bs".to_owned())
        );
        assert!(f.payload.is_empty());
        let g = BootstrapOp::Discover { path: Path::Root }.to_request();
        assert_eq!(g.options.accept(), Some(40));
        assert_eq!(
            StepInfo {
                kind: OpKind::Write,
                path: Some(Path::Instance(0, 1))
            }
            .to_string(),
            "Bootstrap-Write /0/1"
        );
        let w = BootstrapOp::Write {
            path: Path::Instance(0, 1),
            content: Content {
                format: ContentFormat::Tlv,
                payload: b"secret".to_vec(),
            },
        };
        assert!(
            !format!("{w:?}").contains("115, 101"),
            "payload not printed"
        );
    }

    #[test]
    fn plan_order() {
        let ops = plan(&config(), ContentFormat::Tlv, &BTreeMap::new()).unwrap();
        let names: Vec<String> = ops.iter().map(|o| o.info().to_string()).collect();
        assert_eq!(
            names,
            [
                "Bootstrap-Delete /0",
                "Bootstrap-Delete /1",
                "Bootstrap-Write /0/1",
                "Bootstrap-Write /1/0",
                "Bootstrap-Finish"
            ]
        );
    }
}
