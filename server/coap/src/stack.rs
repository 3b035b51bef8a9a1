//! The layer application code drives: an [`Endpoint`] with block-wise transfers (RFC 7959),
//! observe (RFC 7641) and Echo (RFC 9175 §2) made transparent.
//!
//! [`Stack`] has the driving surface of [`Endpoint`] (`handle`, `handle_timeout`,
//! `poll_timeout`, `poll_transmit`, `poll_event`, `request`, `respond`, `notify`, `cancel`,
//! `forget_peer`, `stats`) and the same [`Event`] type, so a tokio driver can own either. What
//! the application sees:
//!
//! - **Requests** arrive whole. Block1 blocks are reassembled by a [`Block1Assembler`] under its
//!   caps; 2.31 Continue and block-wise errors (4.08, 4.13, 5.03) are answered here. The
//!   handler gets one [`Event::Request`] per body, and its response gets the Block1 echo.
//! - **Responses** of any size are sliced: a 2.xx response larger than the block size
//!   ([`StackConfig::block_szx`], 1024 bytes by default, as LwM2M wants), or one to a request
//!   that carried Block2, goes out block by block. The whole representation is kept in a
//!   bounded cache keyed by peer and request, so follow-up Block2 requests are answered without
//!   the application. A representation without an ETag gets one (a hash of its content), so a
//!   client can tell when a re-rendered representation differs from the blocks it holds.
//! - **Our requests** go out block-wise when their body is larger than the block size (fresh
//!   Request-Tag per body), and a Block2 response is fetched to its end: the application gets
//!   one [`Event::Response`] with the whole body, or [`Event::Failed`] with
//!   [`Failure::Block`].
//! - **Observations we hold** are filtered by the freshness rule (§3.4): a stale notification is
//!   still acknowledged by the endpoint but not delivered. A notification with Block2 M=1 is
//!   fetched to completion with plain GETs (RFC 7959 §2.6) before it is delivered.
//! - **Observations we serve** are kept in an [`ObserverRegistry`]: [`Stack::observe_accept`]
//!   answers a registration and puts the peer on the list; [`Stack::notify_observers`] sends a
//!   representation to every observer of a resource with its sequence number and the
//!   CON-at-least-every-24-hours rule; an [`Event::ObserveEnded`] takes the observer off.
//! - **Echo**: a 4.01 with Echo to one of our requests is retried once with the value; the
//!   application sees only the outcome of the retry. As a server, [`StackConfig::echo`] names
//!   the requests that must carry a fresh Echo (off by default).
//!
//! ## Decisions worth knowing
//!
//! - **A Block2 follow-up we hold nothing for** (evicted, expired, or never sliced here) is
//!   passed to the application as a fresh request, without its Block2 option, and the answer is
//!   sliced at the block asked for (and cached). The representation may have changed since
//!   block 0; the ETag the stack adds lets the client notice and start again. Only safe
//!   methods (GET, FETCH) are re-run: re-running a POST or PUT without its body would perform
//!   a different action, so their orphaned follow-ups are answered 4.08 Request Entity
//!   Incomplete ("the part of the exchange this belongs to is gone").
//! - **Block 0 always reaches the application.** A request for block 0 (or without Block2)
//!   renders the current representation and replaces the cached one; only blocks after the
//!   first come from the cache. So a client that restarts after an ETag change gets new data.
//! - **Error responses are never sliced** (RFC 7959 only makes sense for representations) and
//!   get no ETag; a large diagnostic payload is the application's business.
//! - **Echo is checked where a transfer starts**: on requests without Block1 or with Block1
//!   block 0. A Block1 continuation belongs to a body whose block 0 passed the check (same
//!   peer, same Request-Tag), and a follow-up answered from the cache belongs to a response
//!   that was produced for a checked request. Echo values are bound to the peer through its
//!   `Debug` rendering (the address or session name), so a value issued to one peer does not
//!   verify for another.
//! - **Client restarts after an ETag change**: a plain request is sent again from the start,
//!   at most [`StackConfig::max_block2_restarts`] times. A request whose own body went
//!   block-wise, or an observe registration, is not re-sent (that would repeat its effect or
//!   re-register); it fails with `Failure::Block(EtagChanged)`. A notification whose fetch
//!   fails is dropped: the change that broke the fetch comes as a newer notification.
//! - **A fresh notification supersedes a fetch in progress** of an older one: the older is
//!   cancelled, so only the newest representation is delivered.
//! - **Re-registration** when a notification's Max-Age runs out (§3.3.1) is left to the
//!   application: it knows whether the observation is still wanted.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

use crate::block::{
    Block1Assembler, Block1Config, Block1Outcome, Block1Progress, Block1Sender, Block2Fetcher,
    Block2Progress, BlockError, BlockOption, MAX_SZX, slice_response, szx_size,
};
use crate::echo::{EchoClient, EchoConfig, EchoVerifier};
use crate::endpoint::{
    Config, Endpoint, Event, Failure, Incoming, ObserveKey, RequestId, RespondError, Rng, Stats,
    Transmit, is_observe_register,
};
use crate::message::{Code, Method, Request, Response, option};
use crate::observe::{
    ClientObserveConfig, NotificationDecision, ObservationTracker, ObserveConfig, ObserveError,
    ObserveRequest, ObserverRegistry, Registration, observe_request,
};
use crate::wire::Token;

/// Settings of a [`Stack`].
#[derive(Debug, Clone)]
pub struct StackConfig {
    pub endpoint: Config,
    /// Block size of the responses we slice and the request bodies we split, 2^(szx+4) bytes.
    /// 6 (1024 bytes) by default; values above 6 are taken as 6 (7 is BERT, not for UDP).
    pub block_szx: u8,
    /// Caps of the Block1 reassembly. Its `preferred_szx` is lowered to `block_szx` if larger.
    pub block1: Block1Config,
    /// The largest response body our requests assemble from Block2 blocks.
    pub max_response_body: usize,
    pub block2_cache: Block2CacheConfig,
    /// How often a plain request is started again after the ETag changed mid-transfer.
    pub max_block2_restarts: u32,
    /// The list of observers we serve.
    pub observe: ObserveConfig,
    /// The observations we hold.
    pub client_observe: ClientObserveConfig,
    /// Send every notification of [`Stack::notify_observers`] confirmable, not only the one
    /// the 24-hour rule asks for.
    pub confirmable_notifications: bool,
    /// Require fresh Echo values on some requests; `None` (the default) requires none.
    pub echo: Option<ServerEcho>,
}

impl Default for StackConfig {
    fn default() -> StackConfig {
        let endpoint = Config::default();
        StackConfig {
            block2_cache: Block2CacheConfig {
                lifetime: endpoint.exchange_lifetime,
                ..Block2CacheConfig::default()
            },
            endpoint,
            block_szx: MAX_SZX,
            block1: Block1Config::default(),
            max_response_body: 1024 * 1024,
            max_block2_restarts: 2,
            observe: ObserveConfig::default(),
            client_observe: ClientObserveConfig::default(),
            confirmable_notifications: false,
            echo: None,
        }
    }
}

/// Limits of the cache of sliced representations. Entries beyond a cap evict the ones least
/// recently used; a representation larger than `max_bytes` is not cached at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block2CacheConfig {
    pub max_entries: usize,
    /// Entries one peer may hold, so one busy or hostile peer cannot evict everyone else's.
    pub max_entries_per_peer: usize,
    /// Payload, option and key bytes held across all entries.
    pub max_bytes: usize,
    /// How long an entry lives after its last use: EXCHANGE_LIFETIME (RFC 7252 §4.8.2) by
    /// default, beyond which no client still continues a transfer.
    pub lifetime: Duration,
}

impl Default for Block2CacheConfig {
    fn default() -> Block2CacheConfig {
        Block2CacheConfig {
            max_entries: 256,
            max_entries_per_peer: 8,
            max_bytes: 1024 * 1024,
            lifetime: Duration::from_secs(247),
        }
    }
}

/// Server-side Echo policy (RFC 9175 §2.4).
#[derive(Debug, Clone, Copy)]
pub struct ServerEcho {
    /// Random, per process (see [`EchoVerifier::new`]).
    pub secret: [u8; 16],
    pub config: EchoConfig,
    /// Which requests must prove freshness (for LwM2M: e.g. requests that act on the device
    /// before the DTLS session is known to be live).
    pub require_for: fn(&Request) -> bool,
}

/// Counters of what the stack did beyond the endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StackStats {
    /// Block2 follow-ups answered from the cache.
    pub block2_cache_hits: u64,
    /// Block2 follow-ups with nothing cached (passed to the application or refused).
    pub block2_cache_misses: u64,
    /// Block2 transfers of ours started again after an ETag change.
    pub block2_restarts: u64,
    /// Notifications dropped by the freshness rule.
    pub stale_notifications: u64,
    /// Block-wise notification fetches given up (superseded or failed).
    pub dropped_notification_fetches: u64,
    /// 4.01 challenges sent.
    pub echo_challenges: u64,
    /// Requests of ours sent again with Echo.
    pub echo_retries: u64,
}

/// Misuse of the observe API; nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StackError {
    #[error(transparent)]
    Respond(#[from] RespondError),
    #[error("the request is not an observe registration (GET or FETCH with Observe 0)")]
    NotARegistration,
    #[error(transparent)]
    Observe(#[from] ObserveError),
}

/// An [`Endpoint`] with block-wise, observe and Echo handled; see the module docs.
#[derive(Debug)]
pub struct Stack<P: Copy + Eq + Hash + Ord> {
    config: StackConfig,
    endpoint: Endpoint<P>,
    events: VecDeque<Event<P>>,
    stats: StackStats,
    // Serving.
    assembler: Block1Assembler<P>,
    cache: Block2Cache<P>,
    pending: HashMap<Incoming<P>, PendingIncoming<P>>,
    /// Expiry order of `pending`; entries answered meanwhile are skipped when they come up.
    pending_order: VecDeque<(Instant, Incoming<P>)>,
    observers: ObserverRegistry<P>,
    /// Made at the first request that needs it: its epoch must not be after any `now`.
    verifier: Option<EchoVerifier>,
    // Requesting.
    requests: HashMap<RequestId, Outbound<P>>,
    /// Endpoint request → the logical request it belongs to.
    subs: HashMap<RequestId, (RequestId, Role)>,
    tracker: ObservationTracker<P>,
    next_logical: u64,
    next_tag: u32,
    tracer: Option<Tracer<P>>,
}

/// Which way a traced datagram went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Given to [`Stack::handle`].
    Incoming,
    /// Returned by [`Stack::poll_transmit`].
    Outgoing,
}

/// Sees every datagram the stack is given and every one it returns (see [`Stack::set_tracer`]).
pub type TraceFn<P> = Box<dyn FnMut(Direction, P, &[u8]) + Send>;

/// A [`TraceFn`] with a `Debug` so that [`Stack`] keeps its own.
struct Tracer<P>(TraceFn<P>);

impl<P> std::fmt::Debug for Tracer<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tracer")
    }
}

impl<P: Copy + Eq + Hash + Ord + std::fmt::Debug> Stack<P> {
    pub fn new(mut config: StackConfig) -> Stack<P> {
        config.block_szx = config.block_szx.min(MAX_SZX);
        config.block1.preferred_szx = config.block1.preferred_szx.min(config.block_szx);
        // Request-Tags come from the same seed as the endpoint's tokens, offset so the two
        // sequences differ; a counter from a random start keeps every body's tag distinct.
        let next_tag = (Rng(config.endpoint.seed ^ 0x7a67).next() >> 32) as u32;
        Stack {
            endpoint: Endpoint::new(config.endpoint.clone()),
            events: VecDeque::new(),
            stats: StackStats::default(),
            assembler: Block1Assembler::new(config.block1),
            cache: Block2Cache::new(config.block2_cache),
            pending: HashMap::new(),
            pending_order: VecDeque::new(),
            observers: ObserverRegistry::new(config.observe),
            verifier: None,
            requests: HashMap::new(),
            subs: HashMap::new(),
            tracker: ObservationTracker::new(config.client_observe),
            next_logical: 1,
            next_tag,
            tracer: None,
            config,
        }
    }

    pub fn config(&self) -> &StackConfig {
        &self.config
    }

    /// The exchange layer's counters.
    pub fn stats(&self) -> Stats {
        self.endpoint.stats()
    }

    pub fn stack_stats(&self) -> StackStats {
        self.stats
    }

    pub fn peer_count(&self) -> usize {
        self.endpoint.peer_count()
    }

    /// Bytes held by the Block2 cache (never above [`Block2CacheConfig::max_bytes`]).
    pub fn cache_bytes(&self) -> usize {
        self.cache.bytes
    }

    pub fn cache_len(&self) -> usize {
        self.cache.entries.len()
    }

    /// Bytes held by unfinished Block1 bodies.
    pub fn block1_buffered(&self) -> usize {
        self.assembler.buffered()
    }

    /// Observers on our list.
    pub fn observers(&self) -> &ObserverRegistry<P> {
        &self.observers
    }

    /// Requests of ours not finished yet (observations included).
    pub fn outstanding(&self) -> usize {
        self.requests.len()
    }

    // ---------------------------------------------------------------------------------------
    // Driving

    /// Calls `tracer` with every datagram given to [`Stack::handle`] (before it is parsed, so
    /// malformed ones too) and every datagram [`Stack::poll_transmit`] returns. `None` removes
    /// it; without one the cost is a branch per datagram. Meant for message logs (Leshan's
    /// `COAPLOG`): the tracer runs in the driver's task, so it must be quick.
    pub fn set_tracer(&mut self, tracer: Option<TraceFn<P>>) {
        self.tracer = tracer.map(Tracer);
    }

    pub fn handle(&mut self, now: Instant, peer: P, datagram: &[u8]) {
        if let Some(Tracer(trace)) = &mut self.tracer {
            trace(Direction::Incoming, peer, datagram);
        }
        self.endpoint.handle(now, peer, datagram);
        self.drain(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.endpoint.handle_timeout(now);
        self.assembler.expire(now);
        self.cache.expire(now);
        self.expire_pending(now);
        self.drain(now);
    }

    /// When [`Stack::handle_timeout`] wants to run; may be early, never late.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.endpoint.poll_timeout(),
            self.assembler.poll_timeout(),
            self.cache.poll_timeout(),
            self.pending_order.front().map(|(at, _)| *at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit<P>> {
        let transmit = self.endpoint.poll_transmit()?;
        if let Some(Tracer(trace)) = &mut self.tracer {
            trace(Direction::Outgoing, transmit.peer, &transmit.datagram);
        }
        Some(transmit)
    }

    pub fn poll_event(&mut self) -> Option<Event<P>> {
        self.events.pop_front()
    }

    /// Forgets everything about a peer; its requests fail with `Reset`, its observations and
    /// transfers are dropped.
    pub fn forget_peer(&mut self, peer: P) {
        self.endpoint.forget_peer(peer);
        self.assembler.forget_peer(&peer);
        self.cache.forget_peer(peer);
        self.pending.retain(|id, _| id.peer() != peer);
        self.observers.deregister_peer(peer);
        // Forgetting produces only failures of our requests, which need no clock.
        while let Some(e) = self.endpoint.poll_event() {
            match e {
                Event::Failed { id, peer, reason } => self.on_failed(id, peer, reason),
                other => self.events.push_back(other),
            }
        }
    }

    /// Processes what the endpoint reported, until it has nothing more: handling one event may
    /// send a request whose failure is reported at once.
    fn drain(&mut self, now: Instant) {
        while let Some(e) = self.endpoint.poll_event() {
            match e {
                Event::Request { id, request } => self.on_request(now, id, request),
                Event::Response { id, response, .. } => self.on_response(now, id, response),
                Event::Failed { id, peer, reason } => self.on_failed(id, peer, reason),
                Event::ObserveEnded { key, reason } => {
                    self.observers.deregister(key.peer(), key.token());
                    self.events.push_back(Event::ObserveEnded { key, reason });
                }
            }
        }
    }

    fn expire_pending(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.pending_order.front() {
            if at > now {
                break;
            }
            self.pending_order.pop_front();
            if self.pending.get(&id).is_some_and(|p| p.expires == at) {
                self.pending.remove(&id);
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Serving

    fn on_request(&mut self, now: Instant, id: Incoming<P>, request: Request) {
        let peer = id.peer();
        if observe_request(&request) == Some(ObserveRequest::Deregister) {
            // §3.6: a GET with Observe 1 under the observation's token ends it; the GET itself
            // is then served like any other.
            self.observers.deregister(peer, id.token());
        }
        let (block1, block2) = match block_options(&request) {
            Ok(blocks) => blocks,
            Err(e) => return self.reply(now, id, error_response(&e)),
        };
        let key = CacheKey::of(peer, &request);
        if let Some(asked) = block2.filter(|b| b.num > 0) {
            if let Some(answer) = self.cache.serve(now, &key, asked, self.config.block_szx) {
                self.stats.block2_cache_hits += 1;
                let response = answer.unwrap_or_else(|e| error_response(&e));
                return self.reply(now, id, response);
            }
            self.stats.block2_cache_misses += 1;
            if !matches!(request.method, Method::Get | Method::Fetch) {
                let gone = Response::new(Code::REQUEST_ENTITY_INCOMPLETE)
                    .with_diagnostic("the response this block belongs to is gone; start again");
                return self.reply(now, id, gone);
            }
        }
        let continuation = block1.is_some_and(|b| b.num > 0);
        if !continuation && !self.echo_fresh(now, id, &request) {
            return;
        }
        let (request, block1) = match block1 {
            None => (request, None),
            Some(_) => match self.assembler.offer(now, peer, &request) {
                Block1Outcome::Complete { request, block1 } => (request, block1),
                Block1Outcome::Continue(r) | Block1Outcome::Error(r) => {
                    return self.reply(now, id, r);
                }
            },
        };
        self.deliver_request(now, id, request, block1, block2, key);
    }

    /// Hands a whole request to the application and remembers how to finish its response.
    fn deliver_request(
        &mut self,
        now: Instant,
        id: Incoming<P>,
        mut request: Request,
        block1: Option<BlockOption>,
        block2: Option<BlockOption>,
        key: CacheKey<P>,
    ) {
        // Kept with Block2: a registration may ask for a block size that notifications honour.
        let registration =
            (observe_request(&request) == Some(ObserveRequest::Register)).then(|| request.clone());
        // Block2 and Size2 are transport: the stack slices whatever the handler answers.
        request.options.remove(option::BLOCK2);
        request.options.remove(option::SIZE2);
        let expires = now + self.config.endpoint.exchange_lifetime;
        self.pending.insert(
            id,
            PendingIncoming {
                block1,
                block2,
                key,
                registration,
                expires,
            },
        );
        self.pending_order.push_back((expires, id));
        // Answered requests stay in the expiry queue until their time comes; at a high request
        // rate that is many. Dropping them once they are most of it keeps the queue within a
        // constant factor of the pending requests, at amortised constant cost.
        if self.pending_order.len() > 2 * self.pending.len() + 64 {
            let pending = &self.pending;
            self.pending_order
                .retain(|(at, id)| pending.get(id).is_some_and(|p| p.expires == *at));
        }
        self.events.push_back(Event::Request { id, request });
    }

    /// `false` when the request needed a fresh Echo and did not have one: it was challenged.
    fn echo_fresh(&mut self, now: Instant, id: Incoming<P>, request: &Request) -> bool {
        let Some(policy) = self.config.echo else {
            return true;
        };
        if !(policy.require_for)(request) {
            return true;
        }
        let verifier = self
            .verifier
            .get_or_insert_with(|| EchoVerifier::new(policy.secret, now, policy.config));
        let context = peer_context(id.peer());
        match verifier.require_fresh(now, &context, request) {
            Ok(()) => true,
            Err((_, challenge)) => {
                self.stats.echo_challenges += 1;
                self.reply(now, id, challenge);
                false
            }
        }
    }

    /// Answers a request the application never saw.
    fn reply(&mut self, now: Instant, id: Incoming<P>, response: Response) {
        // The request arrived just now, so it is pending; our own answers are small enough to
        // encode. Neither error can happen, and there is nobody to report it to.
        let _ = self.endpoint.respond(now, id, response);
    }

    /// Answers a request from [`Event::Request`]. A large response goes out block-wise; the
    /// answer to a Block1 body carries the Block1 echo.
    pub fn respond(
        &mut self,
        now: Instant,
        id: Incoming<P>,
        response: Response,
    ) -> Result<(), RespondError> {
        let pending = self.pending.remove(&id).ok_or(RespondError::NotPending)?;
        let response = Block1Outcome::finish(pending.block1, response);
        let response = self.blockwise_response(now, pending.key, pending.block2, response);
        let result = self.endpoint.respond(now, id, response);
        self.drain(now);
        result
    }

    /// Answers an observe registration (GET or FETCH with Observe 0) and puts the peer on the
    /// list of observers of `resource_key`:
    ///
    /// - `Ok(Some(Accepted { observe, .. }))`: sent with Observe = `observe`; notify with
    ///   [`Stack::notify_observers`];
    /// - `Ok(Some(Ignored(cap)))`: over a cap, sent without Observe (the client then knows it
    ///   is not on the list, RFC 7641 §3.1);
    /// - `Ok(None)`: the response is not 2.xx, which establishes nothing (§4.1); it was sent as
    ///   it is and any earlier entry of this peer and token was removed.
    ///
    /// An `Err` means nothing was sent: the request is not pending, or not a registration (use
    /// [`Stack::respond`] for those).
    pub fn observe_accept(
        &mut self,
        now: Instant,
        id: Incoming<P>,
        resource_key: impl Into<String>,
        mut response: Response,
    ) -> Result<Option<Registration>, StackError> {
        let pending = self.pending.get(&id).ok_or(RespondError::NotPending)?;
        let request = pending
            .registration
            .clone()
            .ok_or(StackError::NotARegistration)?;
        let (peer, token) = (id.peer(), id.token());
        if !response.code.is_success() {
            self.observers.deregister(peer, token);
            response.options.remove(option::OBSERVE);
            self.respond(now, id, response)?;
            return Ok(None);
        }
        let registration =
            self.observers
                .register(peer, token, resource_key.into(), request, now)?;
        match registration {
            Registration::Accepted { observe, .. } => {
                response.options.set_uint(option::OBSERVE, observe);
            }
            Registration::Ignored(_) => response.options.remove(option::OBSERVE),
        }
        if let Err(e) = self.respond(now, id, response) {
            self.observers.deregister(peer, token);
            return Err(e.into());
        }
        Ok(Some(registration))
    }

    /// Sends `response` to every observer of `resource_key`, each with its next Observe value,
    /// confirmable when the 24-hour rule (§4.5) or [`StackConfig::confirmable_notifications`]
    /// says so. A large representation goes as block 0, the rest fetched by the client from
    /// the cache. A non-2.xx response is the final notification (§3.2): it goes without
    /// Observe and takes the observers off the list. Returns how many notifications went out.
    pub fn notify_observers(
        &mut self,
        now: Instant,
        resource_key: &str,
        response: Response,
    ) -> usize {
        let observers: Vec<(P, Token, Request)> = self
            .observers
            .observers(resource_key)
            .map(|o| (o.peer, o.token, o.request.clone()))
            .collect();
        let sent = observers
            .into_iter()
            .filter(|(peer, token, request)| {
                self.notify_one(now, *peer, *token, request, response.clone())
            })
            .count();
        self.drain(now);
        sent
    }

    fn notify_one(
        &mut self,
        now: Instant,
        peer: P,
        token: Token,
        request: &Request,
        mut response: Response,
    ) -> bool {
        let key = ObserveKey::new(peer, token);
        if !response.code.is_success() {
            self.observers.deregister(peer, token);
            response.options.remove(option::OBSERVE);
            // Confirmable, so that the observer learns the observation is over even over a
            // lossy link.
            return self.endpoint.notify(now, key, response, true).is_ok();
        }
        let Some(next) = self.observers.next_notification(peer, token, now) else {
            return false;
        };
        let confirmable = next.confirmable || self.config.confirmable_notifications;
        if confirmable && !next.confirmable {
            self.observers.record_confirmable(peer, token, now);
        }
        response.options.set_uint(option::OBSERVE, next.observe);
        // A registration may have asked for a block size (early negotiation, RFC 7959 §2.4);
        // every notification starts at block 0 of the new representation.
        let block2 = BlockOption::from_options(&request.options, option::BLOCK2)
            .ok()
            .flatten()
            .map(|b| BlockOption { num: 0, ..b });
        let cache_key = CacheKey::of(peer, request);
        let response = self.blockwise_response(now, cache_key, block2, response);
        self.endpoint
            .notify(now, key, response, confirmable)
            .is_ok()
    }

    /// Sends a notification as it is (the application manages its own observers and Observe
    /// values); see [`Endpoint::notify`]. Not sliced.
    pub fn notify(
        &mut self,
        now: Instant,
        key: ObserveKey<P>,
        response: Response,
        confirmable: bool,
    ) -> Result<(), RespondError> {
        let result = self.endpoint.notify(now, key, response, confirmable);
        self.drain(now);
        result
    }

    /// The block of `response` to send, caching the whole representation when there is more
    /// than one block.
    fn blockwise_response(
        &mut self,
        now: Instant,
        key: CacheKey<P>,
        block2: Option<BlockOption>,
        mut response: Response,
    ) -> Response {
        let szx = self.config.block_szx;
        if !response.code.is_success()
            || (block2.is_none() && response.payload.len() <= szx_size(szx))
        {
            return response;
        }
        if !response.options.contains(option::ETAG) {
            response.options.set(option::ETAG, content_etag(&response));
        }
        let used = block2.map_or(szx, |b| b.szx.min(szx));
        match slice_response(&response, block2, szx) {
            Ok(block) => {
                if response.payload.len() > szx_size(used) {
                    self.cache.insert(now, key, representation(response));
                }
                block
            }
            Err(e) => error_response(&e),
        }
    }

    // ---------------------------------------------------------------------------------------
    // Requesting

    /// Sends a request; the outcome comes as one [`Event::Response`] (one per fresh
    /// notification for an observation) or [`Event::Failed`], named by the returned id.
    pub fn request(
        &mut self,
        now: Instant,
        peer: P,
        request: Request,
        confirmable: bool,
    ) -> RequestId {
        let id = RequestId::from_raw(self.next_logical);
        self.next_logical += 1;
        let (transfer, first) = match self.plan(&request) {
            Ok(plan) => plan,
            Err(e) => {
                self.events.push_back(Event::Failed {
                    id,
                    peer,
                    reason: Failure::Block(e),
                });
                return id;
            }
        };
        // The tracker is keyed by token; the stack's id stands in for the endpoint's tokens,
        // which change with every block and retry of the same observation.
        let observation = is_observe_register(&request).then(|| Token::from_u64(id.raw()));
        if let Some(token) = observation {
            self.tracker.start(peer, token);
        }
        let out = Outbound {
            peer,
            confirmable,
            request,
            current: (id, Request::new(Method::Get)),
            transfer,
            echo: EchoClient::new(),
            echo_value: None,
            restarts: 0,
            observation,
            notification: None,
        };
        self.send_main(now, id, out, first);
        self.drain(now);
        id
    }

    /// How a request goes out: whole, or block-wise with a fresh Request-Tag.
    ///
    /// An observe registration must fit in one block: its blocks would each carry Observe, and
    /// which of their tokens the notifications answer depends on the server. It fails with
    /// `TooLarge` rather than half-work.
    fn plan(&mut self, request: &Request) -> Result<(Transfer, Request), BlockError> {
        let szx = self.config.block_szx;
        if request.payload.len() <= szx_size(szx) {
            return Ok((Transfer::Single, request.clone()));
        }
        if is_observe_register(request) {
            return Err(BlockError::TooLarge {
                limit: szx_size(szx),
            });
        }
        let tag = self.next_tag.to_be_bytes().to_vec();
        self.next_tag = self.next_tag.wrapping_add(1);
        let sender = Block1Sender::new(request.clone(), szx, Some(tag))?;
        let first = sender.request();
        Ok((Transfer::Block1(sender), first))
    }

    /// Stops a request or ends an observation (the next notification gets a Reset, §3.6).
    pub fn cancel(&mut self, now: Instant, peer: P, id: RequestId) {
        if self.requests.get(&id).is_none_or(|out| out.peer != peer) {
            return;
        }
        let Some(out) = self.requests.remove(&id) else {
            return;
        };
        self.subs.remove(&out.current.0);
        self.endpoint.cancel(now, peer, out.current.0);
        if let Some(fetch) = out.notification {
            self.subs.remove(&fetch.id);
            self.endpoint.cancel(now, peer, fetch.id);
        }
        if let Some(token) = out.observation {
            self.tracker.cancel(peer, token);
        }
        self.drain(now);
    }

    /// Sends the next request of a logical request's main line and keeps its state.
    fn send_main(&mut self, now: Instant, id: RequestId, mut out: Outbound<P>, request: Request) {
        let sub = self
            .endpoint
            .request(now, out.peer, request.clone(), out.confirmable);
        self.subs.insert(sub, (id, Role::Main));
        out.current = (sub, request);
        self.requests.insert(id, out);
    }

    fn on_response(&mut self, now: Instant, sub: RequestId, response: Response) {
        let Some(&(id, role)) = self.subs.get(&sub) else {
            // Cancelled, superseded, or belonging to a request that already failed.
            return;
        };
        match role {
            Role::Main => {
                let still_observing = self.requests.get(&id).is_some_and(|out| {
                    out.current.0 == sub && endpoint_keeps(&out.current.1, &response)
                });
                if !still_observing {
                    self.subs.remove(&sub);
                }
                self.on_main_response(now, id, sub, response);
            }
            Role::Notification => {
                self.subs.remove(&sub);
                self.on_notification_block(now, id, sub, response);
            }
        }
    }

    fn on_main_response(&mut self, now: Instant, id: RequestId, sub: RequestId, r: Response) {
        let Some(mut out) = self.requests.remove(&id) else {
            return;
        };
        if out.current.0 != sub {
            self.requests.insert(id, out);
            return;
        }
        if let Some(value) = out.echo.on_response(&r) {
            self.stats.echo_retries += 1;
            let mut again = out.current.1.clone();
            again.options.set(option::ECHO, value.clone());
            out.echo_value = Some(value);
            return self.send_main(now, id, out, again);
        }
        if let Some(token) = out.observation {
            match self.tracker.on_notification(out.peer, token, &r, now) {
                NotificationDecision::Deliver { .. } => {
                    return self.on_fresh_notification(now, id, out, r);
                }
                NotificationDecision::Stale | NotificationDecision::Reject => {
                    self.stats.stale_notifications += 1;
                    self.requests.insert(id, out);
                    return;
                }
                NotificationDecision::Ended => {
                    // The final response of the observation: handled like any response.
                    out.observation = None;
                    self.drop_notification_fetch(now, &mut out);
                }
            }
        }
        self.advance(now, id, out, r);
    }

    /// Moves a logical request on with the response to its request in flight.
    fn advance(&mut self, now: Instant, id: RequestId, mut out: Outbound<P>, r: Response) {
        match std::mem::replace(&mut out.transfer, Transfer::Single) {
            Transfer::Single if is_blockwise(&r) => {
                let base = without_echo(out.current.1.clone());
                let fetcher = Block2Fetcher::new(base, self.config.max_response_body);
                self.continue_block2(now, id, out, fetcher, r);
            }
            Transfer::Single => self.deliver(id, out.peer, r),
            Transfer::Block1(mut sender) => match sender.on_response(r) {
                Ok(Block1Progress::Continue(next)) => {
                    out.transfer = Transfer::Block1(sender);
                    self.send_main(now, id, out, next);
                }
                Ok(Block1Progress::Complete(last)) if is_blockwise(&last) => {
                    let fetcher = sender.block2_fetcher(self.config.max_response_body);
                    self.continue_block2(now, id, out, fetcher, last);
                }
                Ok(Block1Progress::Complete(mut last)) => {
                    last.options.remove(option::BLOCK1);
                    self.deliver(id, out.peer, last);
                }
                Err(e) => self.fail(id, out.peer, Failure::Block(e)),
            },
            Transfer::Block2(fetcher) => self.continue_block2(now, id, out, fetcher, r),
        }
    }

    fn continue_block2(
        &mut self,
        now: Instant,
        id: RequestId,
        mut out: Outbound<P>,
        mut fetcher: Block2Fetcher,
        r: Response,
    ) {
        match fetcher.on_response(r) {
            Ok(Block2Progress::Continue(next)) => {
                out.transfer = Transfer::Block2(fetcher);
                self.send_main(now, id, out, next);
            }
            Ok(Block2Progress::Complete(whole)) => self.deliver(id, out.peer, whole),
            Err(BlockError::EtagChanged) if self.may_restart(&out) => {
                out.restarts += 1;
                self.stats.block2_restarts += 1;
                let mut again = out.request.clone();
                // Keep the Echo value that got the request through, if one was needed: the
                // client has used its one retry, so a new challenge would end the request.
                if let Some(echo) = &out.echo_value {
                    again.options.set(option::ECHO, echo.clone());
                }
                self.send_main(now, id, out, again);
            }
            Err(e) => self.fail(id, out.peer, Failure::Block(e)),
        }
    }

    /// Only a plain request is sent again from the start (see the module docs).
    fn may_restart(&self, out: &Outbound<P>) -> bool {
        out.restarts < self.config.max_block2_restarts
            && out.request.payload.len() <= szx_size(self.config.block_szx)
            && !is_observe_register(&out.request)
    }

    fn on_fresh_notification(
        &mut self,
        now: Instant,
        id: RequestId,
        mut out: Outbound<P>,
        r: Response,
    ) {
        self.drop_notification_fetch(now, &mut out);
        if !is_blockwise(&r) {
            self.events.push_back(Event::Response {
                id,
                peer: out.peer,
                response: r,
            });
            self.requests.insert(id, out);
            return;
        }
        // RFC 7959 §2.6: the rest of the notification comes with plain requests (the fetcher
        // drops Observe from them), which are not part of the observation.
        let base = without_echo(out.request.clone());
        let fetcher = Block2Fetcher::new(base, self.config.max_response_body);
        self.continue_notification(now, id, &mut out, fetcher, r);
        self.requests.insert(id, out);
    }

    fn on_notification_block(&mut self, now: Instant, id: RequestId, sub: RequestId, r: Response) {
        let Some(mut out) = self.requests.remove(&id) else {
            return;
        };
        match out.notification.take() {
            Some(fetch) if fetch.id == sub => {
                self.continue_notification(now, id, &mut out, fetch.fetcher, r);
            }
            other => out.notification = other,
        }
        self.requests.insert(id, out);
    }

    fn continue_notification(
        &mut self,
        now: Instant,
        id: RequestId,
        out: &mut Outbound<P>,
        mut fetcher: Block2Fetcher,
        r: Response,
    ) {
        match fetcher.on_response(r) {
            Ok(Block2Progress::Continue(next)) => {
                let sub = self.endpoint.request(now, out.peer, next, out.confirmable);
                self.subs.insert(sub, (id, Role::Notification));
                out.notification = Some(NotificationFetch { id: sub, fetcher });
            }
            Ok(Block2Progress::Complete(whole)) => self.events.push_back(Event::Response {
                id,
                peer: out.peer,
                response: whole,
            }),
            // A changed ETag or a failing server: the newer state comes as a notification.
            Err(_) => self.stats.dropped_notification_fetches += 1,
        }
    }

    fn drop_notification_fetch(&mut self, now: Instant, out: &mut Outbound<P>) {
        if let Some(fetch) = out.notification.take() {
            self.stats.dropped_notification_fetches += 1;
            self.subs.remove(&fetch.id);
            self.endpoint.cancel(now, out.peer, fetch.id);
        }
    }

    fn on_failed(&mut self, sub: RequestId, peer: P, reason: Failure) {
        let Some((id, role)) = self.subs.remove(&sub) else {
            return;
        };
        match role {
            Role::Notification => {
                if let Some(out) = self.requests.get_mut(&id)
                    && out.notification.as_ref().is_some_and(|f| f.id == sub)
                {
                    out.notification = None;
                    self.stats.dropped_notification_fetches += 1;
                }
            }
            Role::Main => {
                if self.requests.get(&id).is_none_or(|o| o.current.0 != sub) {
                    return;
                }
                if let Some(out) = self.requests.remove(&id) {
                    if let Some(fetch) = &out.notification {
                        // Its outcome, when it comes, belongs to nobody.
                        self.subs.remove(&fetch.id);
                    }
                    if let Some(token) = out.observation {
                        self.tracker.cancel(out.peer, token);
                    }
                }
                self.fail(id, peer, reason);
            }
        }
    }

    fn deliver(&mut self, id: RequestId, peer: P, response: Response) {
        self.events
            .push_back(Event::Response { id, peer, response });
    }

    fn fail(&mut self, id: RequestId, peer: P, reason: Failure) {
        self.events.push_back(Event::Failed { id, peer, reason });
    }
}

/// What the stack remembers of a request handed to the application, to finish its answer.
#[derive(Debug)]
struct PendingIncoming<P> {
    /// The last block's option of a Block1 body: the response echoes it (RFC 7959 §2.3).
    block1: Option<BlockOption>,
    /// The block asked for, if any: the response is sliced there.
    block2: Option<BlockOption>,
    key: CacheKey<P>,
    /// The request, when it is an observe registration (the registry keeps it, §4.2).
    registration: Option<Request>,
    expires: Instant,
}

/// A request of ours as the application sees it.
#[derive(Debug)]
struct Outbound<P> {
    peer: P,
    confirmable: bool,
    /// As the application made it; restarts start from it.
    request: Request,
    /// The endpoint request carrying the exchange now, and what it carries.
    current: (RequestId, Request),
    transfer: Transfer,
    echo: EchoClient,
    /// The Echo value of the successful retry, for restarts.
    echo_value: Option<Vec<u8>>,
    restarts: u32,
    /// The tracker's name for this observation; `None` for a plain request.
    observation: Option<Token>,
    /// The rest of a block-wise notification being fetched.
    notification: Option<NotificationFetch>,
}

#[derive(Debug)]
enum Transfer {
    Single,
    Block1(Block1Sender),
    Block2(Block2Fetcher),
}

#[derive(Debug)]
struct NotificationFetch {
    id: RequestId,
    fetcher: Block2Fetcher,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The request itself, its blocks, follow-ups and retries; for an observation, the
    /// registration that notifications answer.
    Main,
    /// A follow-up fetching the rest of a notification.
    Notification,
}

/// Options that say how a representation travels, not which one: left out of cache keys.
const TRANSPORT_OPTIONS: [u16; 6] = [
    option::BLOCK1,
    option::BLOCK2,
    option::SIZE1,
    option::SIZE2,
    option::OBSERVE,
    option::ECHO,
];

/// Which representation a request asks for, from whom: what a Block2 follow-up shares with the
/// request that produced the cached representation. Request-Tag stays in: two bodies of the
/// same peer to the same resource have different answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey<P> {
    peer: P,
    method: Method,
    options: Vec<(u16, Vec<u8>)>,
    /// A FETCH body says what is asked (RFC 8132); other bodies are not sent with follow-ups.
    body: Vec<u8>,
}

impl<P: Copy> CacheKey<P> {
    fn of(peer: P, request: &Request) -> CacheKey<P> {
        let options = request
            .options
            .iter()
            .filter(|(n, _)| !TRANSPORT_OPTIONS.contains(n))
            .map(|(n, v)| (n, v.to_vec()))
            .collect();
        let body = if request.method == Method::Fetch {
            request.payload.clone()
        } else {
            Vec::new()
        };
        CacheKey {
            peer,
            method: request.method,
            options,
            body,
        }
    }

    fn bytes(&self) -> usize {
        self.body.len() + self.options.iter().map(|(_, v)| v.len()).sum::<usize>()
    }
}

#[derive(Debug)]
struct CacheEntry {
    response: Response,
    bytes: usize,
    expires: Instant,
    /// Insertion order, to break ties between equal expiry times reproducibly.
    serial: u64,
}

/// Whole representations whose blocks are being fetched, under entry and byte caps.
#[derive(Debug)]
struct Block2Cache<P> {
    config: Block2CacheConfig,
    entries: HashMap<CacheKey<P>, CacheEntry>,
    bytes: usize,
    serial: u64,
}

impl<P: Copy + Eq + Hash> Block2Cache<P> {
    fn new(config: Block2CacheConfig) -> Block2Cache<P> {
        Block2Cache {
            config,
            entries: HashMap::new(),
            bytes: 0,
            serial: 0,
        }
    }

    /// The block asked for, if the representation is held; using it keeps it alive.
    fn serve(
        &mut self,
        now: Instant,
        key: &CacheKey<P>,
        asked: BlockOption,
        szx: u8,
    ) -> Option<Result<Response, BlockError>> {
        let entry = self.entries.get_mut(key)?;
        entry.expires = now + self.config.lifetime;
        Some(slice_response(&entry.response, Some(asked), szx))
    }

    /// Keeps `response` under `key`, evicting least recently used entries to stay within the
    /// caps. A representation too large for the cache is not kept: its follow-ups go to the
    /// application.
    fn insert(&mut self, now: Instant, key: CacheKey<P>, response: Response) {
        self.remove(&key);
        let bytes = key.bytes() + response_bytes(&response);
        let peer = key.peer;
        if bytes > self.config.max_bytes
            || self.config.max_entries == 0
            || self.config.max_entries_per_peer == 0
        {
            return;
        }
        while self.entries.len() >= self.config.max_entries
            || self.bytes + bytes > self.config.max_bytes
        {
            if !self.evict_oldest(None) {
                return;
            }
        }
        while self.entries.keys().filter(|k| k.peer == peer).count()
            >= self.config.max_entries_per_peer
        {
            if !self.evict_oldest(Some(peer)) {
                return;
            }
        }
        self.serial += 1;
        self.bytes += bytes;
        self.entries.insert(
            key,
            CacheEntry {
                response,
                bytes,
                expires: now + self.config.lifetime,
                serial: self.serial,
            },
        );
    }

    fn evict_oldest(&mut self, of_peer: Option<P>) -> bool {
        let oldest = self
            .entries
            .iter()
            .filter(|(k, _)| of_peer.is_none_or(|p| k.peer == p))
            .min_by_key(|(_, e)| (e.expires, e.serial))
            .map(|(k, _)| k.clone());
        match oldest {
            Some(key) => {
                self.remove(&key);
                true
            }
            None => false,
        }
    }

    fn remove(&mut self, key: &CacheKey<P>) {
        if let Some(e) = self.entries.remove(key) {
            self.bytes = self.bytes.saturating_sub(e.bytes);
        }
    }

    fn expire(&mut self, now: Instant) {
        let mut freed = 0;
        self.entries.retain(|_, e| {
            let keep = e.expires > now;
            if !keep {
                freed += e.bytes;
            }
            keep
        });
        self.bytes = self.bytes.saturating_sub(freed);
    }

    /// A scan: the entry cap keeps it short.
    fn poll_timeout(&self) -> Option<Instant> {
        self.entries.values().map(|e| e.expires).min()
    }

    fn forget_peer(&mut self, peer: P) {
        let mut freed = 0;
        self.entries.retain(|k, e| {
            let keep = k.peer != peer;
            if !keep {
                freed += e.bytes;
            }
            keep
        });
        self.bytes = self.bytes.saturating_sub(freed);
    }
}

/// Bytes of payload and option values a response holds.
fn response_bytes(response: &Response) -> usize {
    response.payload.len() + response.options.iter().map(|(_, v)| v.len()).sum::<usize>()
}

/// The representation to cache: what every block shares, without the per-message options.
fn representation(mut response: Response) -> Response {
    for n in [
        option::OBSERVE,
        option::BLOCK1,
        option::BLOCK2,
        option::SIZE2,
    ] {
        response.options.remove(n);
    }
    response
}

/// The Block1 and Block2 options of a request; a malformed one is the request's fault.
fn block_options(
    request: &Request,
) -> Result<(Option<BlockOption>, Option<BlockOption>), BlockError> {
    Ok((
        BlockOption::from_options(&request.options, option::BLOCK1)?,
        BlockOption::from_options(&request.options, option::BLOCK2)?,
    ))
}

fn error_response(e: &BlockError) -> Response {
    Response::new(e.code()).with_diagnostic(&e.to_string())
}

/// A response the client side must follow block-wise (the fetcher also strips Block2 from a
/// single final block).
fn is_blockwise(response: &Response) -> bool {
    response.code.is_success() && response.options.contains(option::BLOCK2)
}

/// Whether the endpoint keeps an exchange open after this response: a registration answered
/// with a success carrying Observe (RFC 7641 §3.2), as [`Endpoint`] decides it.
fn endpoint_keeps(sent: &Request, response: &Response) -> bool {
    is_observe_register(sent) && response.code.is_success() && response.options.observe().is_some()
}

fn without_echo(mut request: Request) -> Request {
    request.options.remove(option::ECHO);
    request
}

/// What an Echo value is bound to: the peer as the driver names it (address or session).
fn peer_context<P: std::fmt::Debug>(peer: P) -> Vec<u8> {
    format!("{peer:?}").into_bytes()
}

/// An ETag from the content (FNV-1a, 64 bits): equal representations get equal tags, so a
/// client that fetched part of one can continue with a re-rendering of the same content, and a
/// change shows. Not a security measure; a collision only means a client mixes two versions
/// of a resource, which an ETag chosen by the handler would avoid.
fn content_etag(response: &Response) -> Vec<u8> {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let format = response
        .options
        .get(option::CONTENT_FORMAT)
        .unwrap_or_default();
    let code = [response.code.byte()];
    let bytes = code
        .iter()
        .chain(format.iter())
        .chain(response.payload.iter());
    bytes
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
        .to_be_bytes()
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tokio driver moves the stack into its task.
    #[test]
    fn the_stack_can_move_between_threads() {
        fn assert_send<T: Send>() {}
        assert_send::<Stack<std::net::SocketAddr>>();
    }

    #[test]
    fn the_tracer_sees_both_directions() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut stack: Stack<u8> = Stack::new(StackConfig::default());
        let log = std::sync::Arc::clone(&seen);
        stack.set_tracer(Some(Box::new(move |direction, peer, datagram: &[u8]| {
            log.lock()
                .expect("the log lock")
                .push((direction, peer, datagram.to_vec()));
        })));
        let now = Instant::now();
        stack.request(now, 7, Request::new(Method::Get).with_path("/3/0"), true);
        let sent = stack.poll_transmit().expect("the request goes out");
        // An empty ACK for it: version 1, type ACK, no token, code 0.00, the same message ID.
        let ack = [0x60, 0x00, sent.datagram[2], sent.datagram[3]];
        stack.handle(now, 7, &ack);
        let seen = seen.lock().expect("the log lock");
        assert_eq!(
            *seen,
            vec![
                (Direction::Outgoing, 7, sent.datagram.clone()),
                (Direction::Incoming, 7, ack.to_vec()),
            ]
        );
        drop(seen);
        stack.set_tracer(None);
        stack.handle(now, 7, &ack);
    }

    #[test]
    fn etag_follows_content() {
        let a = Response::new(Code::CONTENT).with_payload(0, vec![1; 2000]);
        let b = Response::new(Code::CONTENT).with_payload(0, vec![2; 2000]);
        assert_eq!(content_etag(&a), content_etag(&a.clone()));
        assert_ne!(content_etag(&a), content_etag(&b));
        assert_eq!(content_etag(&a).len(), 8);
    }

    #[test]
    fn cache_keys_ignore_transport_options() {
        let plain = Request::new(Method::Get).with_path("/5/0/3");
        let mut follow_up = plain.clone().with_option(option::ECHO, vec![1]);
        BlockOption {
            num: 3,
            more: false,
            szx: 6,
        }
        .set_in(&mut follow_up.options, option::BLOCK2);
        assert_eq!(CacheKey::of(1u8, &plain), CacheKey::of(1u8, &follow_up));
        assert_ne!(CacheKey::of(1u8, &plain), CacheKey::of(2u8, &plain));
        let tagged = plain.clone().with_option(option::REQUEST_TAG, vec![7]);
        assert_ne!(CacheKey::of(1u8, &plain), CacheKey::of(1u8, &tagged));
    }

    #[test]
    fn cache_holds_its_caps() {
        let config = Block2CacheConfig {
            max_entries: 3,
            max_entries_per_peer: 2,
            max_bytes: 5000,
            lifetime: Duration::from_secs(10),
        };
        let mut cache = Block2Cache::<u8>::new(config);
        let now = Instant::now();
        let rep = |n: usize| Response::new(Code::CONTENT).with_payload(0, vec![0; n]);
        let key =
            |peer: u8, path: &str| CacheKey::of(peer, &Request::new(Method::Get).with_path(path));
        cache.insert(now, key(1, "/a"), rep(2000));
        cache.insert(now, key(1, "/b"), rep(2000));
        cache.insert(now, key(1, "/c"), rep(100));
        assert_eq!(cache.entries.len(), 2, "per-peer cap");
        assert!(!cache.entries.contains_key(&key(1, "/a")), "oldest went");
        cache.insert(now, key(2, "/a"), rep(2500));
        assert!(cache.bytes <= 5000, "{}", cache.bytes);
        cache.insert(now, key(3, "/a"), rep(6000));
        assert!(
            !cache.entries.contains_key(&key(3, "/a")),
            "too large to keep"
        );
        assert!(cache.bytes <= 5000);
        cache.expire(now + Duration::from_secs(10));
        assert_eq!((cache.entries.len(), cache.bytes), (0, 0));
    }
}
