//! The exchange layer (RFC 7252 §4, §5.2, §5.3): message types, message IDs, tokens,
//! deduplication, retransmission and response matching, as a state machine without I/O.
//!
//! Drive it like quinn-proto: feed datagrams with [`Endpoint::handle`], call
//! [`Endpoint::handle_timeout`] when [`Endpoint::poll_timeout`] says, send what
//! [`Endpoint::poll_transmit`] returns and act on [`Endpoint::poll_event`]. Above it, code sees
//! requests and responses with a peer; never a message ID, a message type or a token.
//!
//! Both roles live in one endpoint, as in LwM2M: a server answers registrations and sends
//! requests to the same device; a device answers reads and sends registrations.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

use crate::block::BlockError;
use crate::message::{Code, Request, Response, option};
use crate::wire::{self, Kind, Message, Token, Type};

/// Transmission parameters (RFC 7252 §4.8) and the limits that keep memory bounded.
#[derive(Debug, Clone)]
pub struct Config {
    pub ack_timeout: Duration,
    /// ACK_RANDOM_FACTOR as a per-mille value (1500 = 1.5) so the state machine stays exact.
    pub ack_random_factor_permille: u32,
    pub max_retransmit: u32,
    /// Outstanding confirmable requests per peer; more wait in a queue (RFC 7252 §4.7).
    pub nstart: usize,
    pub exchange_lifetime: Duration,
    pub non_lifetime: Duration,
    /// A request not answered within this time gets an empty ACK, and the answer goes as a
    /// separate response (RFC 7252 §5.2.2). Below ACK_TIMEOUT so the peer does not retransmit.
    pub separate_response_after: Duration,
    /// How long a request waits for its response after the peer acknowledged it.
    pub response_timeout: Duration,
    /// Requests waiting for an NSTART slot, per peer; beyond it `request` fails at once.
    pub max_queued_per_peer: usize,
    /// Message IDs remembered for deduplication, over all peers; at the cap the oldest go first.
    pub max_dedup_entries: usize,
    /// Seeds message IDs, tokens and retransmission jitter; tests fix it to replay a run.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            ack_timeout: Duration::from_secs(2),
            ack_random_factor_permille: 1500,
            max_retransmit: 4,
            nstart: 1,
            exchange_lifetime: Duration::from_secs(247),
            non_lifetime: Duration::from_secs(145),
            separate_response_after: Duration::from_millis(1000),
            response_timeout: Duration::from_secs(93),
            max_queued_per_peer: 64,
            max_dedup_entries: 200_000,
            seed: 0x5745_5741_5244,
        }
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit<P> {
    pub peer: P,
    pub datagram: Vec<u8>,
}

/// Names a request this endpoint sent, for matching its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(u64);

impl RequestId {
    /// For the layer above ([`crate::stack`]), which names its own logical requests in the same
    /// type so that a driver sees one kind of id whichever layer it owns.
    pub(crate) const fn from_raw(raw: u64) -> RequestId {
        RequestId(raw)
    }

    pub(crate) const fn raw(self) -> u64 {
        self.0
    }
}

/// Names a request this endpoint received, for answering it. Opaque on purpose: the message ID,
/// type and token stay inside the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Incoming<P> {
    peer: P,
    mid: u16,
    token: Token,
}

impl<P: Copy> Incoming<P> {
    pub fn peer(&self) -> P {
        self.peer
    }

    /// The observe relationship this request would start is named by the peer and this key.
    pub fn observe_key(&self) -> ObserveKey<P> {
        ObserveKey {
            peer: self.peer,
            token: self.token,
        }
    }

    /// The request's token, for the stack's observer list (which is keyed by peer and token).
    pub(crate) fn token(&self) -> Token {
        self.token
    }
}

/// An observation this endpoint serves: where notifications go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObserveKey<P> {
    peer: P,
    token: Token,
}

impl<P: Copy> ObserveKey<P> {
    pub fn peer(&self) -> P {
        self.peer
    }

    /// The stack rebuilds keys from its observer list; the token stays inside the crate.
    pub(crate) fn new(peer: P, token: Token) -> ObserveKey<P> {
        ObserveKey { peer, token }
    }

    pub(crate) fn token(&self) -> Token {
        self.token
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No acknowledgement after MAX_RETRANSMIT retransmissions, or no response in time.
    Timeout,
    /// The peer answered with a Reset.
    Reset,
    /// Too many requests already queued for this peer.
    QueueFull,
    /// The request could not be encoded (an option or payload too large for a datagram).
    Unencodable,
    /// A block-wise transfer run by [`crate::stack::Stack`] could not complete: the body is over
    /// a cap ([`BlockError::TooLarge`]), the representation kept changing
    /// ([`BlockError::EtagChanged`]), or the peer broke the block-wise protocol.
    Block(BlockError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<P> {
    /// A request from a peer; answer it with [`Endpoint::respond`].
    Request { id: Incoming<P>, request: Request },
    /// The response to a request of ours; for an observation, each notification too.
    Response {
        id: RequestId,
        peer: P,
        response: Response,
    },
    /// A request of ours got no response.
    Failed {
        id: RequestId,
        peer: P,
        reason: Failure,
    },
    /// The peer rejected (Reset) or never acknowledged a notification: it no longer observes.
    ObserveEnded { key: ObserveKey<P>, reason: Failure },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RespondError {
    #[error("no unanswered request with this id (answered already, or forgotten)")]
    NotPending,
    #[error("the response cannot be encoded: {0}")]
    Unencodable(String),
}

/// Counters for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub received: u64,
    pub malformed: u64,
    pub duplicates: u64,
    pub retransmissions: u64,
    pub resets_sent: u64,
    pub timeouts: u64,
}

/// SplitMix64: small, fast, and reproducible from the configured seed.
#[derive(Debug, Clone)]
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// What happened to a message ID we received.
#[derive(Debug)]
enum Seen {
    /// A request not answered yet; `acked` once an empty ACK went out.
    Unanswered {
        token: Token,
        con: bool,
        acked: bool,
    },
    /// What to send again if the same message arrives again.
    Answered { reply: Option<Vec<u8>> },
}

/// A confirmable message of ours waiting for its ACK.
#[derive(Debug)]
struct Retransmission {
    datagram: Vec<u8>,
    attempts: u32,
    timeout: Duration,
    purpose: Purpose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Request(Token),
    Response,
    Notification(Token),
}

/// A request of ours, by token.
#[derive(Debug)]
struct Outstanding {
    id: RequestId,
    observe: bool,
    state: Phase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Sent, waiting for ACK or response (CON) or for the response (NON).
    Sent { mid: u16 },
    /// Acknowledged; the response comes separately.
    Acked,
    /// A notification arrived: the observation lives until cancelled; it holds no NSTART slot.
    Observing,
}

/// A remembered message ID: what happened to it, and until when it is remembered (which also
/// tells a queued expiry apart from a later reuse of the same message ID).
#[derive(Debug)]
struct Remembered {
    until: Instant,
    seen: Seen,
}

#[derive(Debug, Default)]
struct Peer {
    seen: HashMap<u16, Remembered>,
    retransmissions: HashMap<u16, Retransmission>,
    /// NON notifications recently sent, so a Reset to one ends the observation.
    non_notifications: HashMap<u16, Token>,
    outstanding: HashMap<Token, Outstanding>,
    active: usize,
    queue: VecDeque<(RequestId, Token, Message)>,
}

impl Peer {
    fn is_idle(&self) -> bool {
        self.seen.is_empty()
            && self.retransmissions.is_empty()
            && self.non_notifications.is_empty()
            && self.outstanding.is_empty()
            && self.queue.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Retransmit(u16),
    SeparateAck(u16),
    ResponseDeadline(Token),
    ForgetNon(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Timer<P> {
    at: Instant,
    seq: u64,
    peer: P,
    kind: TimerKind,
}

/// One CoAP endpoint: every peer it talks to, both as client and as server.
#[derive(Debug)]
pub struct Endpoint<P: Copy + Eq + Hash + Ord> {
    config: Config,
    rng: Rng,
    next_mid: u16,
    next_request: u64,
    timer_seq: u64,
    peers: HashMap<P, Peer>,
    dedup_entries: usize,
    /// Message IDs to forget, in expiry order. One queue per lifetime (CON, NON) keeps each
    /// queue sorted, so expiry and eviction only ever look at the fronts.
    expiries: [VecDeque<(Instant, P, u16)>; 2],
    /// Lazy timers: a fired timer whose state is gone is ignored, so nothing is ever removed
    /// from the heap but by popping.
    timers: BinaryHeap<Reverse<Timer<P>>>,
    transmits: VecDeque<Transmit<P>>,
    events: VecDeque<Event<P>>,
    stats: Stats,
}

impl<P: Copy + Eq + Hash + Ord + std::fmt::Debug> Endpoint<P> {
    pub fn new(config: Config) -> Endpoint<P> {
        let mut rng = Rng(config.seed);
        let next_mid = (rng.next() & 0xffff) as u16;
        Endpoint {
            config,
            rng,
            next_mid,
            next_request: 1,
            timer_seq: 0,
            peers: HashMap::new(),
            dedup_entries: 0,
            expiries: [VecDeque::new(), VecDeque::new()],
            timers: BinaryHeap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Peers with any state (remembered message IDs, exchanges, observations).
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit<P>> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event<P>> {
        self.events.pop_front()
    }

    /// When [`Endpoint::handle_timeout`] wants to run next. May be early (a timer whose state
    /// is gone), never late.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let fronts = self
            .expiries
            .iter()
            .filter_map(|q| q.front().map(|(at, _, _)| *at));
        self.timers
            .peek()
            .map(|Reverse(t)| t.at)
            .into_iter()
            .chain(fronts)
            .min()
    }

    /// Forgets everything about a peer: its DTLS session ended, or it re-registered from a new
    /// address. Its requests fail with `Reset`.
    pub fn forget_peer(&mut self, peer: P) {
        if let Some(state) = self.peers.remove(&peer) {
            self.dedup_entries = self.dedup_entries.saturating_sub(state.seen.len());
            let mut ids: Vec<RequestId> = state.outstanding.values().map(|o| o.id).collect();
            ids.extend(state.queue.iter().map(|(id, _, _)| *id));
            ids.sort();
            for id in ids {
                self.events.push_back(Event::Failed {
                    id,
                    peer,
                    reason: Failure::Reset,
                });
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Receiving

    /// Processes one datagram from `peer`.
    pub fn handle(&mut self, now: Instant, peer: P, datagram: &[u8]) {
        self.stats.received += 1;
        let msg = match wire::decode(datagram) {
            Ok(msg) => msg,
            Err(e) => {
                self.stats.malformed += 1;
                // RFC 7252 §4.2: a CON we cannot process is rejected with a Reset; anything
                // else is dropped silently.
                if let Some((Type::Con, mid)) = e.header() {
                    self.send_empty(peer, Type::Rst, mid);
                }
                return;
            }
        };
        match (msg.mtype, msg.kind) {
            (Type::Con | Type::Non, Kind::Request(_)) => self.on_request(now, peer, msg),
            (Type::Con | Type::Non, Kind::Response(_)) => self.on_separate_response(now, peer, msg),
            // A CON ping (RFC 7252 §4.3) is answered with a Reset.
            (Type::Con, Kind::Empty) => self.send_empty(peer, Type::Rst, msg.mid),
            (Type::Ack, Kind::Empty) => {
                self.on_ack(now, peer, msg.mid);
            }
            (Type::Ack, Kind::Response(_)) => {
                if self.on_ack(now, peer, msg.mid) {
                    self.on_response(now, peer, msg);
                }
            }
            (Type::Rst, Kind::Empty) => self.on_reset(now, peer, msg.mid),
            // NON empty, ACK carrying a request, RST with content: not valid, dropped.
            _ => self.stats.malformed += 1,
        }
    }

    fn on_request(&mut self, now: Instant, peer: P, msg: Message) {
        let con = msg.mtype == Type::Con;
        if let Some(seen) = self.remembered(peer, msg.mid) {
            let resend = match seen {
                Seen::Answered { reply } => reply.clone(),
                Seen::Unanswered {
                    token, acked: true, ..
                } => empty_ack(msg.mid, *token),
                Seen::Unanswered { .. } => None,
            };
            self.stats.duplicates += 1;
            if let Some(datagram) = resend {
                self.transmits.push_back(Transmit { peer, datagram });
            }
            return;
        }
        let Kind::Request(method) = msg.kind else {
            return;
        };
        // RFC 7252 §5.4.1: an unknown critical option in a CON gets 4.02; in a NON, a Reset.
        let refusal = if msg.options.unknown_critical().is_some() {
            Some(Code::BAD_OPTION)
        } else if msg.options.uri_path().is_none() || msg.options.uri_query().is_none() {
            Some(Code::BAD_REQUEST)
        } else {
            None
        };
        self.remember(
            now,
            peer,
            msg.mid,
            con,
            Seen::Unanswered {
                token: msg.token,
                con,
                acked: false,
            },
        );
        let id = Incoming {
            peer,
            mid: msg.mid,
            token: msg.token,
        };
        if let Some(code) = refusal {
            if con || code != Code::BAD_OPTION {
                let _ = self.respond(now, id, Response::new(code));
            } else {
                self.set_seen(peer, msg.mid, Seen::Answered { reply: None });
                self.send_empty(peer, Type::Rst, msg.mid);
            }
            return;
        }
        if con {
            let at = now + self.config.separate_response_after;
            self.schedule(at, peer, TimerKind::SeparateAck(msg.mid));
        }
        self.events.push_back(Event::Request {
            id,
            request: Request {
                method,
                options: msg.options,
                payload: msg.payload,
            },
        });
    }

    /// Marks our CON with this message ID as acknowledged. True if it was ours (an ACK for an
    /// unknown message ID is ignored, RFC 7252 §4.2).
    fn on_ack(&mut self, now: Instant, peer: P, mid: u16) -> bool {
        let Some(state) = self.peers.get_mut(&peer) else {
            return false;
        };
        let Some(rt) = state.retransmissions.remove(&mid) else {
            return false;
        };
        if let Purpose::Request(token) = rt.purpose
            && let Some(out) = state.outstanding.get_mut(&token)
            && out.state == (Phase::Sent { mid })
        {
            out.state = Phase::Acked;
            let at = now + self.config.response_timeout;
            self.schedule(at, peer, TimerKind::ResponseDeadline(token));
        }
        true
    }

    fn on_reset(&mut self, now: Instant, peer: P, mid: u16) {
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        if let Some(token) = state.non_notifications.remove(&mid) {
            self.events.push_back(Event::ObserveEnded {
                key: ObserveKey { peer, token },
                reason: Failure::Reset,
            });
            return;
        }
        let Some(rt) = state.retransmissions.remove(&mid) else {
            return;
        };
        match rt.purpose {
            Purpose::Request(token) => self.finish(now, peer, token, Some(Failure::Reset)),
            Purpose::Notification(token) => self.events.push_back(Event::ObserveEnded {
                key: ObserveKey { peer, token },
                reason: Failure::Reset,
            }),
            Purpose::Response => {}
        }
    }

    /// A CON or NON response (separate response or notification).
    fn on_separate_response(&mut self, now: Instant, peer: P, msg: Message) {
        let known = self
            .peers
            .get(&peer)
            .is_some_and(|p| p.outstanding.contains_key(&msg.token));
        if let Some(seen) = self.remembered(peer, msg.mid) {
            let resend = match seen {
                Seen::Answered { reply } => reply.clone(),
                Seen::Unanswered { .. } => None,
            };
            self.stats.duplicates += 1;
            if let Some(datagram) = resend {
                self.transmits.push_back(Transmit { peer, datagram });
            }
            return;
        }
        let con = msg.mtype == Type::Con;
        if !known {
            // RFC 7252 §5.3.2 / RFC 7641 §3.6: a response we did not ask for (or an
            // observation we forgot) is rejected.
            self.send_empty(peer, Type::Rst, msg.mid);
            return;
        }
        let reply = con.then(|| empty_ack(msg.mid, Token::EMPTY)).flatten();
        self.remember(
            now,
            peer,
            msg.mid,
            con,
            Seen::Answered {
                reply: reply.clone(),
            },
        );
        if let Some(datagram) = reply {
            self.transmits.push_back(Transmit { peer, datagram });
        }
        self.on_response(now, peer, msg);
    }

    fn on_response(&mut self, now: Instant, peer: P, msg: Message) {
        let Kind::Response(code) = msg.kind else {
            return;
        };
        let Some(out) = self
            .peers
            .get_mut(&peer)
            .and_then(|p| p.outstanding.get_mut(&msg.token))
        else {
            return;
        };
        let id = out.id;
        // RFC 7641 §3.2: a success response carrying Observe means the observation holds.
        let observing = out.observe && code.is_success() && msg.options.observe().is_some();
        let response = Response {
            code,
            options: msg.options,
            payload: msg.payload,
        };
        self.events
            .push_back(Event::Response { id, peer, response });
        if observing {
            let was_active = matches!(out.state, Phase::Sent { .. } | Phase::Acked);
            out.state = Phase::Observing;
            if was_active {
                self.release_slot(now, peer);
            }
        } else {
            self.finish(now, peer, msg.token, None);
        }
    }

    // ---------------------------------------------------------------------------------------
    // Answering

    /// Answers a request: piggybacked on the ACK when still possible, else as a separate
    /// response (CON, retransmitted until acknowledged).
    pub fn respond(
        &mut self,
        now: Instant,
        id: Incoming<P>,
        response: Response,
    ) -> Result<(), RespondError> {
        let Some(Seen::Unanswered { token, con, acked }) = self.remembered(id.peer, id.mid) else {
            return Err(RespondError::NotPending);
        };
        let (token, con, acked) = (*token, *con, *acked);
        let mut msg = Message {
            mtype: Type::Ack,
            kind: Kind::Response(response.code),
            mid: id.mid,
            token,
            options: response.options,
            payload: response.payload,
        };
        if con && !acked {
            let datagram =
                wire::encode(&msg).map_err(|e| RespondError::Unencodable(e.to_string()))?;
            self.set_seen(
                id.peer,
                id.mid,
                Seen::Answered {
                    reply: Some(datagram.clone()),
                },
            );
            self.transmits.push_back(Transmit {
                peer: id.peer,
                datagram,
            });
            return Ok(());
        }
        msg.mtype = if con { Type::Con } else { Type::Non };
        msg.mid = self.next_mid();
        let datagram = wire::encode(&msg).map_err(|e| RespondError::Unencodable(e.to_string()))?;
        let reply = if con {
            empty_ack(id.mid, token)
        } else {
            Some(datagram.clone())
        };
        self.set_seen(id.peer, id.mid, Seen::Answered { reply });
        if con {
            self.send_confirmable(now, id.peer, msg.mid, datagram, Purpose::Response);
        } else {
            self.transmits.push_back(Transmit {
                peer: id.peer,
                datagram,
            });
        }
        Ok(())
    }

    /// Sends a notification for an observation this endpoint serves. A Reset to it, or no ACK
    /// to a confirmable one, ends the observation ([`Event::ObserveEnded`]).
    pub fn notify(
        &mut self,
        now: Instant,
        key: ObserveKey<P>,
        response: Response,
        confirmable: bool,
    ) -> Result<(), RespondError> {
        let mid = self.next_mid();
        let msg = Message {
            mtype: if confirmable { Type::Con } else { Type::Non },
            kind: Kind::Response(response.code),
            mid,
            token: key.token,
            options: response.options,
            payload: response.payload,
        };
        let datagram = wire::encode(&msg).map_err(|e| RespondError::Unencodable(e.to_string()))?;
        if confirmable {
            self.send_confirmable(
                now,
                key.peer,
                mid,
                datagram,
                Purpose::Notification(key.token),
            );
        } else {
            self.peers
                .entry(key.peer)
                .or_default()
                .non_notifications
                .insert(mid, key.token);
            let at = now + self.config.non_lifetime;
            self.schedule(at, key.peer, TimerKind::ForgetNon(mid));
            self.transmits.push_back(Transmit {
                peer: key.peer,
                datagram,
            });
        }
        Ok(())
    }

    // ---------------------------------------------------------------------------------------
    // Requesting

    /// Sends a request to `peer`, confirmable unless `confirmable` is false. The response comes
    /// as [`Event::Response`] (repeatedly for an observation) or [`Event::Failed`].
    pub fn request(
        &mut self,
        now: Instant,
        peer: P,
        request: Request,
        confirmable: bool,
    ) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        let token = self.fresh_token(peer);
        let observe = request.options.observe() == Some(0);
        let msg = Message {
            mtype: if confirmable { Type::Con } else { Type::Non },
            kind: Kind::Request(request.method),
            mid: 0,
            token,
            options: request.options,
            payload: request.payload,
        };
        let nstart = self.config.nstart;
        let max_queued = self.config.max_queued_per_peer;
        let state = self.peers.entry(peer).or_default();
        if state.active >= nstart {
            if state.queue.len() >= max_queued {
                self.events.push_back(Event::Failed {
                    id,
                    peer,
                    reason: Failure::QueueFull,
                });
            } else {
                state.queue.push_back((id, token, msg));
            }
            return id;
        }
        self.start(now, peer, id, token, observe, msg);
        id
    }

    /// Stops waiting for a response, or ends an observation passively: the next notification
    /// gets a Reset (RFC 7641 §3.6).
    pub fn cancel(&mut self, now: Instant, peer: P, id: RequestId) {
        let token = self.peers.get(&peer).and_then(|p| {
            p.outstanding
                .iter()
                .find(|(_, o)| o.id == id)
                .map(|(t, _)| *t)
        });
        match token {
            Some(token) => self.finish(now, peer, token, None),
            None => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.queue.retain(|(queued, _, _)| *queued != id);
                }
            }
        }
    }

    fn start(
        &mut self,
        now: Instant,
        peer: P,
        id: RequestId,
        token: Token,
        observe: bool,
        mut msg: Message,
    ) {
        msg.mid = self.next_mid();
        let datagram = match wire::encode(&msg) {
            Ok(d) => d,
            Err(_) => {
                self.events.push_back(Event::Failed {
                    id,
                    peer,
                    reason: Failure::Unencodable,
                });
                return;
            }
        };
        let state = self.peers.entry(peer).or_default();
        state.active += 1;
        state.outstanding.insert(
            token,
            Outstanding {
                id,
                observe,
                state: Phase::Sent { mid: msg.mid },
            },
        );
        if msg.mtype == Type::Con {
            self.send_confirmable(now, peer, msg.mid, datagram, Purpose::Request(token));
        } else {
            let at = now + self.config.response_timeout;
            self.schedule(at, peer, TimerKind::ResponseDeadline(token));
            self.transmits.push_back(Transmit { peer, datagram });
        }
    }

    /// Ends a request of ours; with `failure`, reports it. Frees its NSTART slot.
    fn finish(&mut self, now: Instant, peer: P, token: Token, failure: Option<Failure>) {
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        let Some(out) = state.outstanding.remove(&token) else {
            return;
        };
        if let Phase::Sent { mid } = out.state {
            state.retransmissions.remove(&mid);
        }
        if let Some(reason) = failure {
            self.events.push_back(Event::Failed {
                id: out.id,
                peer,
                reason,
            });
        }
        if out.state != Phase::Observing {
            self.release_slot(now, peer);
        }
    }

    /// One outstanding request is done: start the next queued one, if any.
    fn release_slot(&mut self, now: Instant, peer: P) {
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        state.active = state.active.saturating_sub(1);
        if state.active < self.config.nstart
            && let Some((id, token, msg)) = state.queue.pop_front()
        {
            let observe = msg.options.observe() == Some(0);
            self.start(now, peer, id, token, observe, msg);
        }
    }

    // ---------------------------------------------------------------------------------------
    // Timers

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse(timer)) = self.timers.peek().copied() {
            if timer.at > now {
                break;
            }
            self.timers.pop();
            self.fire(now, timer);
        }
        self.expire_due(now);
    }

    fn fire(&mut self, now: Instant, timer: Timer<P>) {
        let peer = timer.peer;
        match timer.kind {
            TimerKind::Retransmit(mid) => self.retransmit(now, peer, mid),
            TimerKind::SeparateAck(mid) => {
                let Some(state) = self.peers.get_mut(&peer) else {
                    return;
                };
                if let Some(Seen::Unanswered {
                    token,
                    con: true,
                    acked,
                }) = state.seen.get_mut(&mid).map(|r| &mut r.seen)
                    && !*acked
                {
                    *acked = true;
                    let token = *token;
                    if let Some(datagram) = empty_ack(mid, token) {
                        self.transmits.push_back(Transmit { peer, datagram });
                    }
                }
            }
            TimerKind::ResponseDeadline(token) => {
                let waiting = self
                    .peers
                    .get(&peer)
                    .and_then(|p| p.outstanding.get(&token))
                    .is_some_and(|o| o.state != Phase::Observing);
                if waiting && timer.at <= now {
                    self.stats.timeouts += 1;
                    self.finish(now, peer, token, Some(Failure::Timeout));
                }
            }
            TimerKind::ForgetNon(mid) => {
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.non_notifications.remove(&mid);
                }
            }
        }
        self.drop_if_idle(peer);
    }

    fn retransmit(&mut self, now: Instant, peer: P, mid: u16) {
        let max = self.config.max_retransmit;
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        let Some(rt) = state.retransmissions.get_mut(&mid) else {
            return;
        };
        if rt.attempts >= max {
            let purpose = rt.purpose;
            state.retransmissions.remove(&mid);
            self.stats.timeouts += 1;
            match purpose {
                Purpose::Request(token) => self.finish(now, peer, token, Some(Failure::Timeout)),
                Purpose::Notification(token) => self.events.push_back(Event::ObserveEnded {
                    key: ObserveKey { peer, token },
                    reason: Failure::Timeout,
                }),
                Purpose::Response => {}
            }
            return;
        }
        rt.attempts += 1;
        rt.timeout *= 2;
        let at = now + rt.timeout;
        self.transmits.push_back(Transmit {
            peer,
            datagram: rt.datagram.clone(),
        });
        self.stats.retransmissions += 1;
        self.schedule(at, peer, TimerKind::Retransmit(mid));
    }

    // ---------------------------------------------------------------------------------------
    // Helpers

    fn send_confirmable(
        &mut self,
        now: Instant,
        peer: P,
        mid: u16,
        datagram: Vec<u8>,
        purpose: Purpose,
    ) {
        let timeout = self.initial_timeout();
        self.peers.entry(peer).or_default().retransmissions.insert(
            mid,
            Retransmission {
                datagram: datagram.clone(),
                attempts: 0,
                timeout,
                purpose,
            },
        );
        self.schedule(now + timeout, peer, TimerKind::Retransmit(mid));
        self.transmits.push_back(Transmit { peer, datagram });
    }

    /// A random duration between ACK_TIMEOUT and ACK_TIMEOUT × ACK_RANDOM_FACTOR (§4.2).
    fn initial_timeout(&mut self) -> Duration {
        let base = self.config.ack_timeout;
        let spread = u64::from(self.config.ack_random_factor_permille.saturating_sub(1000));
        let extra_permille = if spread == 0 {
            0
        } else {
            self.rng.next() % (spread + 1)
        };
        base + base * u32::try_from(extra_permille).unwrap_or(0) / 1000
    }

    fn next_mid(&mut self) -> u16 {
        self.next_mid = self.next_mid.wrapping_add(1);
        self.next_mid
    }

    /// An unpredictable 8-byte token not in use with this peer (RFC 7252 §5.3.1: tokens guard
    /// against spoofed responses, so they are random, not a counter).
    fn fresh_token(&mut self, peer: P) -> Token {
        loop {
            let token = Token::from_u64(self.rng.next());
            let taken = self.peers.get(&peer).is_some_and(|p| {
                p.outstanding.contains_key(&token) || p.queue.iter().any(|(_, t, _)| *t == token)
            });
            if !taken {
                return token;
            }
        }
    }

    fn send_empty(&mut self, peer: P, mtype: Type, mid: u16) {
        if mtype == Type::Rst {
            self.stats.resets_sent += 1;
        }
        let msg = Message {
            mtype,
            kind: Kind::Empty,
            mid,
            token: Token::EMPTY,
            options: Default::default(),
            payload: Vec::new(),
        };
        if let Ok(datagram) = wire::encode(&msg) {
            self.transmits.push_back(Transmit { peer, datagram });
        }
    }

    fn schedule(&mut self, at: Instant, peer: P, kind: TimerKind) {
        self.timer_seq += 1;
        self.timers.push(Reverse(Timer {
            at,
            seq: self.timer_seq,
            peer,
            kind,
        }));
    }

    fn remembered(&self, peer: P, mid: u16) -> Option<&Seen> {
        self.peers.get(&peer)?.seen.get(&mid).map(|r| &r.seen)
    }

    fn remember(&mut self, now: Instant, peer: P, mid: u16, con: bool, seen: Seen) {
        self.expire_due(now);
        if self.dedup_entries >= self.config.max_dedup_entries {
            self.evict_oldest();
        }
        let (lifetime, queue) = if con {
            (self.config.exchange_lifetime, 0)
        } else {
            (self.config.non_lifetime, 1)
        };
        let until = now + lifetime;
        let state = self.peers.entry(peer).or_default();
        if state.seen.insert(mid, Remembered { until, seen }).is_none() {
            self.dedup_entries += 1;
        }
        self.expiries[queue].push_back((until, peer, mid));
    }

    fn set_seen(&mut self, peer: P, mid: u16, seen: Seen) {
        if let Some(slot) = self.peers.get_mut(&peer).and_then(|p| p.seen.get_mut(&mid)) {
            slot.seen = seen;
        }
    }

    /// Forgets every message ID whose lifetime is over.
    fn expire_due(&mut self, now: Instant) {
        for queue in 0..2 {
            while let Some(&(at, peer, mid)) = self.expiries[queue].front() {
                if at > now {
                    break;
                }
                self.expiries[queue].pop_front();
                self.forget_mid(peer, mid, at);
            }
        }
    }

    /// At the cap, forgets the message ID that would expire first (RFC 7252 leaves the cost of
    /// deduplication to the implementation; a bounded memory wins over a late duplicate).
    fn evict_oldest(&mut self) {
        loop {
            let fronts = [0, 1].map(|q| self.expiries[q].front().map(|(at, _, _)| *at));
            let queue = match fronts {
                [Some(a), Some(b)] => usize::from(b < a),
                [Some(_), None] => 0,
                [None, Some(_)] => 1,
                [None, None] => return,
            };
            if let Some((at, peer, mid)) = self.expiries[queue].pop_front()
                && self.forget_mid(peer, mid, at)
            {
                return;
            }
        }
    }

    /// Forgets `mid` of `peer` if it is the entry queued for `at` (not a later reuse).
    fn forget_mid(&mut self, peer: P, mid: u16, at: Instant) -> bool {
        let Some(state) = self.peers.get_mut(&peer) else {
            return false;
        };
        if state.seen.get(&mid).is_none_or(|r| r.until != at) {
            return false;
        }
        state.seen.remove(&mid);
        self.dedup_entries = self.dedup_entries.saturating_sub(1);
        self.drop_if_idle(peer);
        true
    }

    fn drop_if_idle(&mut self, peer: P) {
        if self.peers.get(&peer).is_some_and(Peer::is_idle) {
            self.peers.remove(&peer);
        }
    }
}

/// An empty ACK for `mid`. Empty messages carry no token (RFC 7252 §4.1); the token parameter
/// is there to make call sites say which exchange they acknowledge.
fn empty_ack(mid: u16, _token: Token) -> Option<Vec<u8>> {
    let msg = Message {
        mtype: Type::Ack,
        kind: Kind::Empty,
        mid,
        token: Token::EMPTY,
        options: Default::default(),
        payload: Vec::new(),
    };
    wire::encode(&msg).ok()
}

/// Whether a request asks to start observing (Observe = 0).
pub fn is_observe_register(request: &Request) -> bool {
    request.options.observe() == Some(0) && request.options.contains(option::OBSERVE)
}
