//! A simulated network for deterministic tests: two stacks ([`crate::stack::Stack`], each an
//! endpoint with block-wise, observe and Echo), a link with delay, jitter, loss, duplication and
//! an MTU, and simulated time. One thread, no sleeping: time jumps to the
//! next delivery or timer. Later layers (LwM2M flows, plugins) reuse it for their own tests.
//!
//! ```
//! use std::time::Duration;
//! use steward_coap::endpoint::Event;
//! use steward_coap::message::{Code, Method, Request, Response};
//! use steward_coap::sim::{Link, Pair};
//!
//! let mut pair = Pair::new(Link::lossy(0.3), 7);
//! let id = pair.client_request(Request::new(Method::Get).with_path("/3/0/0"), true);
//! let response = pair.run_until_response(id, Duration::from_secs(300), |req| {
//!     assert_eq!(req.path_string(), "/3/0/0");
//!     Response::new(Code::CONTENT).with_payload(0, b"Steward".to_vec())
//! });
//! assert_eq!(response.map(|r| r.payload), Some(b"Steward".to_vec()));
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::endpoint::{Config, Event, Failure, RequestId};
use crate::message::{Request, Response};
use crate::stack::{Stack, StackConfig};

/// The two ends of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Client,
    Server,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

/// What the link does to each datagram, in each direction.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub delay: Duration,
    /// Extra random delay up to this much: reorders datagrams sent close together.
    pub jitter: Duration,
    /// Probability of losing a datagram.
    pub loss: f64,
    /// Probability of delivering a datagram twice.
    pub duplicate: f64,
    /// Datagrams larger than this are dropped, as an IP path would.
    pub mtu: usize,
}

impl Link {
    pub fn perfect() -> Link {
        Link {
            delay: Duration::from_millis(10),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            mtu: 1500,
        }
    }

    pub fn lossy(loss: f64) -> Link {
        Link {
            loss,
            ..Link::perfect()
        }
    }
}

/// Deterministic randomness for the link.
#[derive(Debug, Clone)]
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 * 1.0 < p
    }

    fn upto(&mut self, max: Duration) -> Duration {
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(self.next() % nanos)
        }
    }
}

/// Counters of what the link did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub sent: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub too_big: u64,
}

/// A client stack and a server stack joined by a simulated link.
#[derive(Debug)]
pub struct Pair {
    pub client: Stack<Side>,
    pub server: Stack<Side>,
    pub link: Link,
    pub now: Instant,
    pub stats: LinkStats,
    dice: Dice,
    /// Datagrams in flight: (arrival, sequence) → (destination, bytes).
    in_flight: BTreeMap<(Instant, u64), (Side, Vec<u8>)>,
    seq: u64,
    /// Events the harness has not handed out yet.
    pub client_events: Vec<Event<Side>>,
    pub server_events: Vec<Event<Side>>,
}

impl Pair {
    pub fn new(link: Link, seed: u64) -> Pair {
        Pair::with_configs(link, seed, StackConfig::default(), StackConfig::default())
    }

    /// A pair with the given settings; the endpoints' seeds are derived from `seed` (whatever
    /// the configs say) so that one number replays a whole run.
    pub fn with_configs(
        link: Link,
        seed: u64,
        mut client: StackConfig,
        mut server: StackConfig,
    ) -> Pair {
        client.endpoint = Config {
            seed: seed ^ 0xC11E,
            ..client.endpoint
        };
        server.endpoint = Config {
            seed: seed ^ 0x5E4E,
            ..server.endpoint
        };
        Pair {
            client: Stack::new(client),
            server: Stack::new(server),
            link,
            now: Instant::now(),
            stats: LinkStats::default(),
            dice: Dice(seed),
            in_flight: BTreeMap::new(),
            seq: 0,
            client_events: Vec::new(),
            server_events: Vec::new(),
        }
    }

    fn endpoint(&mut self, side: Side) -> &mut Stack<Side> {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    pub fn client_request(&mut self, request: Request, confirmable: bool) -> RequestId {
        let now = self.now;
        self.client.request(now, Side::Server, request, confirmable)
    }

    pub fn server_request(&mut self, request: Request, confirmable: bool) -> RequestId {
        let now = self.now;
        self.server.request(now, Side::Client, request, confirmable)
    }

    /// Moves every queued transmit onto the link, where it may be lost, duplicated, delayed.
    fn pump(&mut self) {
        for from in [Side::Client, Side::Server] {
            while let Some(t) = self.endpoint(from).poll_transmit() {
                self.stats.sent += 1;
                if t.datagram.len() > self.link.mtu {
                    self.stats.too_big += 1;
                    continue;
                }
                if self.dice.chance(self.link.loss) {
                    self.stats.lost += 1;
                    continue;
                }
                let copies = if self.dice.chance(self.link.duplicate) {
                    self.stats.duplicated += 1;
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    let at = self.now + self.link.delay + self.dice.upto(self.link.jitter);
                    self.seq += 1;
                    self.in_flight
                        .insert((at, self.seq), (from.other(), t.datagram.clone()));
                }
            }
            while let Some(e) = self.endpoint(from).poll_event() {
                match from {
                    Side::Client => self.client_events.push(e),
                    Side::Server => self.server_events.push(e),
                }
            }
        }
    }

    /// Advances to the next delivery or timer, whichever is first; false when nothing is left.
    pub fn step(&mut self) -> bool {
        self.step_until(None)
    }

    /// Like [`Pair::step`], but never past `limit`: when the next thing happens later, time
    /// moves to `limit` and nothing else happens (false).
    pub fn step_until(&mut self, limit: Option<Instant>) -> bool {
        self.pump();
        let next_delivery = self.in_flight.keys().next().map(|(at, _)| *at);
        let next_timer = [self.client.poll_timeout(), self.server.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let Some(at) = [next_delivery, next_timer].into_iter().flatten().min() else {
            return false;
        };
        if let Some(limit) = limit
            && at > limit
        {
            self.now = self.now.max(limit);
            return false;
        }
        self.now = self.now.max(at);
        let now = self.now;
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (to, datagram) = entry.remove();
            self.endpoint(to).handle(now, to.other(), &datagram);
        }
        self.client.handle_timeout(now);
        self.server.handle_timeout(now);
        self.pump();
        true
    }

    /// Runs until `id` (a client request) has its response or fails, answering every request
    /// the server sees with `answer`. `None` on failure or when `limit` of simulated time runs out.
    pub fn run_until_response(
        &mut self,
        id: RequestId,
        limit: Duration,
        mut answer: impl FnMut(&Request) -> Response,
    ) -> Option<Response> {
        let deadline = self.now + limit;
        loop {
            self.answer_server_requests(&mut answer);
            if let Some(outcome) = self.take_client_outcome(id) {
                return outcome.ok();
            }
            if self.now >= deadline || !self.step_until(Some(deadline)) {
                self.answer_server_requests(&mut answer);
                return self.take_client_outcome(id).and_then(Result::ok);
            }
        }
    }

    /// Answers every request the server has received so far.
    pub fn answer_server_requests(&mut self, answer: &mut impl FnMut(&Request) -> Response) {
        let now = self.now;
        let events = std::mem::take(&mut self.server_events);
        for e in events {
            match e {
                Event::Request { id, request } => {
                    let response = answer(&request);
                    let _ = self.server.respond(now, id, response);
                }
                other => self.server_events.push(other),
            }
        }
    }

    /// The outcome of a client request if it is known: the response or the failure.
    pub fn take_client_outcome(&mut self, id: RequestId) -> Option<Result<Response, Failure>> {
        let at = self.client_events.iter().position(|e| {
            matches!(e, Event::Response { id: r, .. } | Event::Failed { id: r, .. } if *r == id)
        })?;
        match self.client_events.remove(at) {
            Event::Response { response, .. } => Some(Ok(response)),
            Event::Failed { reason, .. } => Some(Err(reason)),
            _ => None,
        }
    }

    /// Runs for `duration` of simulated time (or until nothing is left to do).
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.step_until(Some(end)) {}
        self.now = self.now.max(end);
    }
}
