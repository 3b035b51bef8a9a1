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
//! # Bootstrap offers
//!
//! Plugins' offers ([`super::offers`]) that apply to the endpoint are written first, one
//! Bootstrap-Write of a single resource each, in (plugin, name) order, before any Discover,
//! Delete or Write of the configuration. An offer's answer is reported as
//! [`BootstrapEvent::OfferAnswered`] (instead of a `Step`), whatever its code: an error answer
//! does not fail the session (a device that does not want the value refuses it and is
//! configured as usual); no answer fails it as for any request. A success answer to an offer
//! with `finish_on_accept` makes Bootstrap-Finish the session's next and last request: the
//! device restarts on its own terms (after a trust reset, say) and bootstraps again.
//!
//! An endpoint with no configuration but an applicable offer gets an *offer-only* session
//! (the offers, then Finish) instead of the "no config" refusal (4.00). The case this serves is
//! the one offers exist for: a device locked out of its LwM2M server reaching a Bootstrap-Server
//! that was rebuilt, or never held its configuration; writing nothing but the offer (no
//! Delete, no accounts) leaves the device's own configuration as it was. The refusal stays as
//! before when no offer applies. A Bootstrap-Pack carries no offers: it has no per-write
//! answer to report.
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
use steward_objects::{ContentFormat, Node, Path, Resource, codec};

use super::config::BootstrapConfig;
use super::error::BootstrapError;
use super::nodes::SECURITY;
use super::offers::{NoOffers, Offer, OfferSource};
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
    /// The device answered a plugin's offer (any code: an error answer does not fail the
    /// session).
    OfferAnswered {
        session: SessionId,
        endpoint: String,
        plugin: String,
        /// The offer's name.
        offer: String,
        /// The resource written.
        path: Path,
        code: Code,
        /// The answer's diagnostic payload, UTF-8 (lossy), at most
        /// [`OFFER_DIAGNOSTIC_BYTES`] bytes.
        diagnostic: String,
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

/// An offer answer's diagnostic is clipped to this many bytes (the WIT's `offer-answer`).
pub const OFFER_DIAGNOSTIC_BYTES: usize = 256;

#[derive(Debug)]
struct Session {
    endpoint: String,
    address: String,
    /// `None` in an offer-only session (see the module docs).
    config: Option<BootstrapConfig>,
    format: ContentFormat,
    deadline_ms: u64,
    /// The step number of the request in flight.
    step: u32,
    in_flight: StepInfo,
    /// The offer the request in flight writes, if it writes one.
    in_flight_offer: Option<OfferTag>,
    pending: VecDeque<Planned>,
}

/// Which offer a planned Bootstrap-Write carries.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OfferTag {
    plugin: String,
    name: String,
    path: Path,
    finish_on_accept: bool,
}

/// A request of the session's plan.
#[derive(Debug)]
struct Planned {
    op: BootstrapOp,
    offer: Option<OfferTag>,
}

impl From<BootstrapOp> for Planned {
    fn from(op: BootstrapOp) -> Planned {
        Planned { op, offer: None }
    }
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
    /// No offers are written ([`BootstrapSessions::on_request_with_offers`] writes them).
    pub fn on_request<C: ConfigSource + ?Sized>(
        &mut self,
        now_ms: u64,
        peer: &Peer,
        request: &Request,
        configs: &C,
    ) -> (Response, Vec<Action>) {
        self.on_request_with_offers(now_ms, peer, request, configs, &NoOffers)
    }

    /// [`BootstrapSessions::on_request`], with the offers of `offers` that apply to the
    /// endpoint written first (see the module docs). Read once, at the start of a session,
    /// after the endpoint is authorized.
    pub fn on_request_with_offers<C: ConfigSource + ?Sized, O: OfferSource + ?Sized>(
        &mut self,
        now_ms: u64,
        peer: &Peer,
        request: &Request,
        configs: &C,
        offers: &O,
    ) -> (Response, Vec<Action>) {
        let outcome = request::parse(request).and_then(|parsed| match parsed {
            UplinkRequest::Bootstrap(b) => self.start(now_ms, peer, b, configs, offers),
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
        if let Some(offer) = session.in_flight_offer.take() {
            let accepted = response.code.is_success();
            let mut actions = vec![Action::Event(BootstrapEvent::OfferAnswered {
                session: id,
                endpoint: session.endpoint.clone(),
                plugin: offer.plugin,
                offer: offer.name,
                path: offer.path,
                code: response.code,
                diagnostic: clip_utf8(&response.payload, OFFER_DIAGNOSTIC_BYTES),
            })];
            if accepted && offer.finish_on_accept {
                session.pending = VecDeque::from([Planned::from(BootstrapOp::Finish)]);
            }
            actions.extend(self.send_next(id));
            return actions;
        }
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
                    .and_then(|answer| match &session.config {
                        Some(config) => {
                            let ids = assign_security_ids(config, &answer);
                            plan(config, session.format, &ids)
                        }
                        // Offer-only sessions plan no Discover; should one get here, there
                        // is nothing to configure.
                        None => Ok(vec![BootstrapOp::Finish]),
                    });
                match planned {
                    Ok(ops) => session.pending.extend(ops.into_iter().map(Planned::from)),
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

    fn start<C: ConfigSource + ?Sized, O: OfferSource + ?Sized>(
        &mut self,
        now_ms: u64,
        peer: &Peer,
        b: BootstrapRequest,
        configs: &C,
        offers: &O,
    ) -> Result<(Response, Vec<Action>), BootstrapError> {
        let endpoint = request::authorize(
            b.endpoint.as_deref(),
            &peer.identity,
            self.config.allow_unsecured,
        )?;
        let config = configs
            .lookup(&endpoint)
            .map_err(BootstrapError::ConfigUnavailable)?;
        let offers = offers.offers_for(&endpoint, now_ms);
        // No configuration: an offer-only session if an offer applies (module docs).
        if config.is_none() && offers.is_empty() {
            return Err(BootstrapError::NoConfig(
                endpoint.chars().take(64).collect(),
            ));
        }
        let invalid = |reason: String| BootstrapError::InvalidConfig {
            endpoint: endpoint.clone(),
            reason,
        };
        if let Some(config) = &config {
            config.validate().map_err(|e| invalid(e.to_string()))?;
        }
        let forced = config.as_ref().and_then(|c| c.content_format);
        let format = match (forced, b.preferred_format) {
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
        let mut pending: VecDeque<Planned> = offer_writes(&offers, format).collect();
        match &config {
            Some(c) if c.auto_id_for_security_object => {
                pending.push_back(BootstrapOp::Discover { path: Path::Root }.into());
            }
            Some(c) => pending.extend(
                plan(c, format, &BTreeMap::new())
                    .map_err(|e| invalid(e.to_string()))?
                    .into_iter()
                    .map(Planned::from),
            ),
            None => pending.push_back(BootstrapOp::Finish.into()),
        }

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
                in_flight_offer: None,
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
        let Planned { op, offer } = session
            .pending
            .pop_front()
            .unwrap_or_else(|| BootstrapOp::Finish.into());
        session.step += 1;
        session.in_flight = op.info();
        session.in_flight_offer = offer;
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

/// The Bootstrap-Writes of `offers`, in their order, each a single resource in `format`.
/// An offer that cannot be encoded is left out rather than failing the configuration behind
/// it; a single typed value at a resource path encodes in every Bootstrap-Write format, so
/// this does not happen with offers the plugin host checked.
fn offer_writes(offers: &[Offer], format: ContentFormat) -> impl Iterator<Item = Planned> + '_ {
    offers.iter().filter_map(move |o| {
        let node = Node::Resource(Resource::Single(o.value().clone()));
        let payload = codec::encode(format, &o.path(), &node).ok()?;
        Some(Planned {
            op: BootstrapOp::Write {
                path: o.path(),
                content: Content { format, payload },
            },
            offer: Some(OfferTag {
                plugin: o.plugin().to_owned(),
                name: o.name().to_owned(),
                path: o.path(),
                finish_on_accept: o.finish_on_accept(),
            }),
        })
    })
}

/// `bytes` as UTF-8 (lossy), cut to at most `max` bytes on a character boundary.
fn clip_utf8(bytes: &[u8], max: usize) -> String {
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
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

    // --- offers ---------------------------------------------------------------------------

    use crate::bootstrap::offers::{NewOffer, OfferRegistry};
    use crate::registry::PeerIdentity;
    use steward_objects::{ModelRegistry, Value};

    /// Object 42799 with its String resource 1 (as the example plugin's DDF has it), so
    /// that TLV decodes to a string.
    fn models() -> ModelRegistry {
        let ddf = r#"<LWM2M><Object ObjectType="MODefinition"><Name>Example</Name>
            <ObjectID>42799</ObjectID><MultipleInstances>Multiple</MultipleInstances>
            <Mandatory>Optional</Mandatory><Resources>
            <Item ID="1"><Name>Label</Name><Operations>RW</Operations>
            <MultipleInstances>Single</MultipleInstances><Mandatory>Optional</Mandatory>
            <Type>String</Type></Item></Resources></Object></LWM2M>"#;
        let mut models = ModelRegistry::new();
        models.insert(steward_objects::ddf::parse(ddf).unwrap().remove(0));
        models
    }

    const EP: &str = "dev";
    const T0: u64 = 1_000;

    fn peer() -> Peer {
        Peer {
            address: "10.0.0.1:5683".into(),
            identity: PeerIdentity::Psk(EP.as_bytes().to_vec()),
        }
    }

    fn bs(query: &[&str]) -> Request {
        query
            .iter()
            .fold(Request::new(Method::Post).with_path(BS), |r, q| {
                r.with_query(q)
            })
    }

    fn new_offer(plugin: &str, name: &str, finish_on_accept: bool) -> NewOffer {
        NewOffer {
            plugin: plugin.into(),
            name: name.into(),
            path: Path::Resource(42799, 0, 1),
            value: Value::String(format!("{plugin}/{name}")),
            endpoints: Vec::new(),
            finish_on_accept,
            expires_ms: None,
        }
    }

    fn offer(plugin: &str, name: &str, finish_on_accept: bool) -> Offer {
        new_offer(plugin, name, finish_on_accept)
            .check(None)
            .unwrap()
    }

    fn configs(c: BootstrapConfig) -> BTreeMap<String, BootstrapConfig> {
        BTreeMap::from([(EP.to_owned(), c)])
    }

    fn outgoing(actions: &[Action]) -> Vec<Outgoing> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(o) => Some(o.clone()),
                Action::Event(_) => None,
            })
            .collect()
    }

    fn events(actions: &[Action]) -> Vec<BootstrapEvent> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Event(e) => Some(e.clone()),
                Action::Send(_) => None,
            })
            .collect()
    }

    /// Plays the client: `answer` gives each request's response. Returns the requests (as
    /// Bootstrap-Write payloads decode, for offers) and every event.
    fn run(
        sessions: &mut BootstrapSessions,
        first: Vec<Action>,
        answer: &dyn Fn(&Outgoing) -> Outcome,
    ) -> (Vec<Outgoing>, Vec<BootstrapEvent>) {
        let mut sent = Vec::new();
        let mut seen = events(&first);
        let mut next = outgoing(&first);
        while let Some(out) = next.pop() {
            assert!(next.is_empty(), "one request in flight");
            let actions = sessions.on_response(T0 + 1, out.correlation, answer(&out));
            seen.extend(events(&actions));
            next = outgoing(&actions);
            sent.push(out);
        }
        (sent, seen)
    }

    fn success(out: &Outgoing) -> Outcome {
        Outcome::Response(Response::new(match out.op {
            BootstrapOp::Delete { .. } => Code::DELETED,
            BootstrapOp::Discover { .. } | BootstrapOp::Read { .. } => Code::CONTENT,
            BootstrapOp::Write { .. } | BootstrapOp::Finish => Code::CHANGED,
        }))
    }

    fn names(sent: &[Outgoing]) -> Vec<String> {
        sent.iter().map(|o| o.op.info().to_string()).collect()
    }

    fn answers(seen: &[BootstrapEvent]) -> Vec<(String, String, Code)> {
        seen.iter()
            .filter_map(|e| match e {
                BootstrapEvent::OfferAnswered {
                    plugin,
                    offer,
                    code,
                    endpoint,
                    ..
                } => {
                    assert_eq!(endpoint, EP);
                    Some((plugin.clone(), offer.clone(), *code))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn offers_go_first_as_single_resource_writes_in_the_session_format() {
        let registry =
            OfferRegistry::from_offers([offer("zeta", "a", false), offer("alpha", "b", false)]);
        for (query, format) in [
            (vec!["ep=dev"], ContentFormat::Tlv),
            (vec!["ep=dev", "pct=110"], ContentFormat::SenmlJson),
            (vec!["ep=dev", "pct=112"], ContentFormat::SenmlCbor),
        ] {
            let mut sessions = BootstrapSessions::new(SessionsConfig::default());
            let (response, first) = sessions.on_request_with_offers(
                T0,
                &peer(),
                &bs(&query),
                &configs(config()),
                &registry,
            );
            assert_eq!(response.code, Code::CHANGED);
            let (sent, seen) = run(&mut sessions, first, &success);
            assert_eq!(
                names(&sent),
                [
                    "Bootstrap-Write /42799/0/1",
                    "Bootstrap-Write /42799/0/1",
                    "Bootstrap-Delete /0",
                    "Bootstrap-Delete /1",
                    "Bootstrap-Write /0/1",
                    "Bootstrap-Write /1/0",
                    "Bootstrap-Finish"
                ]
            );
            // By (plugin, name), each one resource in the session's format.
            for (out, want) in sent.iter().zip(["alpha/b", "zeta/a"]) {
                let BootstrapOp::Write { path, content } = &out.op else {
                    panic!("a write");
                };
                assert_eq!(content.format, format);
                assert_eq!(out.request.options.content_format(), Some(format.code()));
                let node = codec::decode(format, path, &content.payload, &models()).unwrap();
                assert_eq!(
                    node,
                    Node::Resource(Resource::Single(Value::String(want.into())))
                );
            }
            assert_eq!(
                answers(&seen),
                [
                    ("alpha".into(), "b".into(), Code::CHANGED),
                    ("zeta".into(), "a".into(), Code::CHANGED)
                ]
            );
            // Offers are answered by OfferAnswered, not Step.
            let steps = seen
                .iter()
                .filter(|e| matches!(e, BootstrapEvent::Step { .. }))
                .count();
            assert_eq!(steps, 5);
            assert!(matches!(seen.last(), Some(BootstrapEvent::Finished { .. })));
        }
    }

    #[test]
    fn without_offers_a_session_is_what_it_was() {
        let plain = |offers: &dyn Fn(&mut BootstrapSessions) -> (Response, Vec<Action>)| {
            let mut sessions = BootstrapSessions::new(SessionsConfig::default());
            let (response, first) = offers(&mut sessions);
            let (sent, seen) = run(&mut sessions, first, &success);
            let requests: Vec<Request> = sent.into_iter().map(|o| o.request).collect();
            (response, requests, seen)
        };
        let c = configs(config());
        let before = plain(&|s| s.on_request(T0, &peer(), &bs(&["ep=dev"]), &c));
        let empty = OfferRegistry::new();
        let after = plain(&|s| s.on_request_with_offers(T0, &peer(), &bs(&["ep=dev"]), &c, &empty));
        assert_eq!(before, after);
        // Offers for other endpoints change nothing either.
        let other = NewOffer {
            endpoints: vec!["someone-else".into()],
            ..new_offer("p", "a", false)
        }
        .check(None)
        .unwrap();
        let elsewhere = OfferRegistry::from_offers([other]);
        let after =
            plain(&|s| s.on_request_with_offers(T0, &peer(), &bs(&["ep=dev"]), &c, &elsewhere));
        assert_eq!(before, after);
    }

    #[test]
    fn a_refused_offer_does_not_fail_the_session() {
        let registry = OfferRegistry::from_offers([offer("p", "a", true), offer("p", "b", false)]);
        let mut sessions = BootstrapSessions::new(SessionsConfig::default());
        let (_, first) = sessions.on_request_with_offers(
            T0,
            &peer(),
            &bs(&["ep=dev"]),
            &configs(config()),
            &registry,
        );
        let refuse_offers = |out: &Outgoing| match &out.op {
            BootstrapOp::Write { path, .. } if path.object_id() == Some(42799) => {
                Outcome::Response(Response::new(Code::NOT_FOUND).with_diagnostic(&"é".repeat(200)))
            }
            _ => success(out),
        };
        let (sent, seen) = run(&mut sessions, first, &refuse_offers);
        assert_eq!(sent.len(), 7, "both offers, then the whole configuration");
        assert_eq!(
            answers(&seen),
            [
                ("p".into(), "a".into(), Code::NOT_FOUND),
                ("p".into(), "b".into(), Code::NOT_FOUND)
            ]
        );
        let BootstrapEvent::OfferAnswered { diagnostic, .. } = &seen[2] else {
            panic!("an answer: {seen:?}");
        };
        assert_eq!(
            diagnostic.len(),
            OFFER_DIAGNOSTIC_BYTES,
            "clipped on a boundary"
        );
        assert!(matches!(seen.last(), Some(BootstrapEvent::Finished { .. })));
        assert!(sessions.is_empty());
    }

    #[test]
    fn an_accepted_offer_with_finish_on_accept_ends_the_session() {
        let registry = OfferRegistry::from_offers([
            offer("p", "a", false),
            offer("p", "b", true),
            offer("p", "c", false),
        ]);
        for auto_id in [false, true] {
            let mut c = config();
            c.auto_id_for_security_object = auto_id;
            let mut sessions = BootstrapSessions::new(SessionsConfig::default());
            let (_, first) = sessions.on_request_with_offers(
                T0,
                &peer(),
                &bs(&["ep=dev"]),
                &configs(c),
                &registry,
            );
            let (sent, seen) = run(&mut sessions, first, &success);
            assert_eq!(
                names(&sent),
                [
                    "Bootstrap-Write /42799/0/1",
                    "Bootstrap-Write /42799/0/1",
                    "Bootstrap-Finish"
                ],
                "auto id {auto_id}"
            );
            assert_eq!(answers(&seen).len(), 2);
            assert!(matches!(seen.last(), Some(BootstrapEvent::Finished { .. })));
        }
    }

    #[test]
    fn auto_id_sessions_write_offers_before_the_discover() {
        let registry = OfferRegistry::from_offers([offer("p", "a", true)]);
        let mut c = config();
        c.auto_id_for_security_object = true;
        let mut sessions = BootstrapSessions::new(SessionsConfig::default());
        let (_, first) =
            sessions.on_request_with_offers(T0, &peer(), &bs(&["ep=dev"]), &configs(c), &registry);
        let answer = |out: &Outgoing| match &out.op {
            BootstrapOp::Write { path, .. } if path.object_id() == Some(42799) => {
                Outcome::Response(Response::new(Code::FORBIDDEN))
            }
            BootstrapOp::Discover { .. } => Outcome::Response(
                Response::new(Code::CONTENT)
                    .with_payload(40, b"</>;lwm2m=1.1,</0/0>,</1>".to_vec()),
            ),
            _ => success(out),
        };
        let (sent, seen) = run(&mut sessions, first, &answer);
        assert_eq!(
            names(&sent)[..3],
            [
                "Bootstrap-Write /42799/0/1",
                "Bootstrap-Discover /",
                "Bootstrap-Delete /0"
            ]
        );
        assert!(matches!(seen.last(), Some(BootstrapEvent::Finished { .. })));
    }

    #[test]
    fn no_answer_to_an_offer_fails_the_session() {
        let registry = OfferRegistry::from_offers([offer("p", "a", false)]);
        let mut sessions = BootstrapSessions::new(SessionsConfig::default());
        let (_, first) = sessions.on_request_with_offers(
            T0,
            &peer(),
            &bs(&["ep=dev"]),
            &configs(config()),
            &registry,
        );
        let (sent, seen) = run(&mut sessions, first, &|_| Outcome::Failed(Failure::Timeout));
        assert_eq!(sent.len(), 1);
        assert!(matches!(
            seen.last(),
            Some(BootstrapEvent::Failed {
                reason: FailureReason::NoResponse { .. },
                ..
            })
        ));
        assert!(answers(&seen).is_empty());
    }

    #[test]
    fn an_endpoint_without_configuration_gets_an_offer_only_session() {
        let none: BTreeMap<String, BootstrapConfig> = BTreeMap::new();
        // No offer: refused as before.
        let mut sessions = BootstrapSessions::new(SessionsConfig::default());
        let (response, actions) = sessions.on_request_with_offers(
            T0,
            &peer(),
            &bs(&["ep=dev"]),
            &none,
            &OfferRegistry::new(),
        );
        assert_eq!(response.code, Code::BAD_REQUEST);
        assert!(matches!(
            events(&actions)[..],
            [BootstrapEvent::Refused {
                error: BootstrapError::NoConfig(_),
                ..
            }]
        ));
        // An offer: the offer, then Finish; nothing deleted, nothing else written.
        let registry = OfferRegistry::from_offers([offer("p", "a", false)]);
        for code in [Code::CHANGED, Code::FORBIDDEN] {
            let (response, first) = sessions.on_request_with_offers(
                T0,
                &peer(),
                &bs(&["ep=dev", "pct=110"]),
                &none,
                &registry,
            );
            assert_eq!(response.code, Code::CHANGED);
            assert!(matches!(
                events(&first)[..],
                [BootstrapEvent::Started {
                    format: ContentFormat::SenmlJson,
                    ..
                }]
            ));
            let answer = |out: &Outgoing| match out.op {
                BootstrapOp::Write { .. } => Outcome::Response(Response::new(code)),
                _ => success(out),
            };
            let (sent, seen) = run(&mut sessions, first, &answer);
            assert_eq!(
                names(&sent),
                ["Bootstrap-Write /42799/0/1", "Bootstrap-Finish"]
            );
            assert_eq!(answers(&seen), [("p".into(), "a".into(), code)]);
            assert!(matches!(seen.last(), Some(BootstrapEvent::Finished { .. })));
        }
        // The identity check still comes first.
        let (response, _) = sessions.on_request_with_offers(
            T0,
            &peer(),
            &bs(&["ep=someone-else"]),
            &none,
            &registry,
        );
        assert_eq!(response.code, Code::FORBIDDEN);
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
