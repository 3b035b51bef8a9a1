//! The client side of the Bootstrap interface (Transport §6.4.2, Core §6.1): a client-initiated
//! bootstrap as a sans-IO state machine, like [`crate::registration`].
//!
//! ```text
//!  start ─► Holding off (/0/x/11) ─► Requesting: POST /bs?ep=..&pct=.. ─ 2.04 ─► Serving
//!                                         │ error / no answer                │ Finish accepted
//!                                         ▼                                  ▼
//!                                 Backoff ─► Requesting ◄── no Finish in time  Finished
//! ```
//!
//! While Serving, the bootstrap server's Discover / Read / Write / Delete / Finish are answered
//! by [`crate::device::handle_bootstrap`]; the device loop tells this machine about each of
//! them ([`Bootstrap::activity`]) and about an accepted Finish ([`Bootstrap::finished`]).
//!
//! Timeout: the client deems the bootstrap failed when the server stays silent for
//! [`BootstrapConfig::exchange_timeout`] (EXCHANGE_LIFETIME, 247 s, by default) — counted from
//! the 2.04 and restarted by every bootstrap operation, so a slow but active server is not cut
//! off in the middle of a long configuration. Failures back off exponentially.
//!
//! `pct` (Preferred Content Format) is sent by 1.1+ clients only (it is a 1.1 parameter).

pub mod account;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use steward_coap::message::{Code, Method, Request, Response};
use steward_objects::{ContentFormat, Version};

pub use account::{
    BootstrapAccount, Enrolment, EnrolmentError, NoEnrolment, Security, ServerAccount, ServerUri,
    UriError,
};

/// CoAP EXCHANGE_LIFETIME with default parameters (RFC 7252 §4.8.2).
pub const EXCHANGE_LIFETIME: Duration = Duration::from_secs(247);

/// What a bootstrap request says and how long the client waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapConfig {
    pub endpoint: String,
    pub lwm2m: Version,
    /// `pct=` (1.1+): the format the device prefers for Bootstrap-Write / -Read.
    pub preferred_format: Option<ContentFormat>,
    /// Silence from the bootstrap server after which the bootstrap failed.
    pub exchange_timeout: Duration,
    /// First retry delay; doubles per failure up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl BootstrapConfig {
    pub fn new(endpoint: impl Into<String>, lwm2m: Version) -> BootstrapConfig {
        BootstrapConfig {
            endpoint: endpoint.into(),
            lwm2m,
            preferred_format: None,
            exchange_timeout: EXCHANGE_LIFETIME,
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(600),
        }
    }
}

/// Where the bootstrap stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Idle,
    /// Waiting for the Client Hold Off Time; the deadline is set at the next timeout call.
    HoldingOff {
        hold_off: Duration,
        until: Option<Instant>,
    },
    /// Bootstrap-Request sent or about to be.
    Requesting,
    /// The server accepted the request: serving its operations until Finish.
    Serving {
        deadline: Instant,
    },
    Backoff {
        until: Instant,
    },
    /// Finish accepted; the device goes on to register.
    Finished,
}

/// Why a bootstrap attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapFailure {
    /// The server answered the Bootstrap-Request with an error.
    Refused(Code),
    /// The Bootstrap-Request got no answer.
    NoAnswer,
    /// The server went silent before Finish.
    Timeout,
    /// Finish was accepted but the chosen account cannot be used (e.g. EST not available).
    Unusable(String),
}

impl std::fmt::Display for BootstrapFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BootstrapFailure::Refused(code) => write!(f, "bootstrap request refused ({code})"),
            BootstrapFailure::NoAnswer => f.write_str("no answer to the bootstrap request"),
            BootstrapFailure::Timeout => f.write_str("no Bootstrap-Finish in time"),
            BootstrapFailure::Unusable(why) => write!(f, "bootstrapped account unusable: {why}"),
        }
    }
}

/// What happened, for progress output and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapEvent {
    /// Bootstrap-Request sent.
    Requested,
    /// The server answered 2.04: its operations follow.
    Accepted,
    Finished,
    Failed {
        reason: BootstrapFailure,
        retry_in: Duration,
    },
}

/// The client-initiated bootstrap; see the module docs.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    config: BootstrapConfig,
    state: State,
    /// The Bootstrap-Request is handed out and not answered yet.
    in_flight: bool,
    queued: bool,
    failures: u32,
    events: VecDeque<BootstrapEvent>,
}

impl Bootstrap {
    pub fn new(config: BootstrapConfig) -> Bootstrap {
        Bootstrap {
            config,
            state: State::Idle,
            in_flight: false,
            queued: false,
            failures: 0,
            events: VecDeque::new(),
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn config(&self) -> &BootstrapConfig {
        &self.config
    }

    /// The device's version changed (a fallback): the next request says so.
    pub fn set_lwm2m(&mut self, lwm2m: Version, preferred_format: Option<ContentFormat>) {
        self.config.lwm2m = lwm2m;
        self.config.preferred_format = preferred_format;
    }

    /// Between the first request and Finish (or giving up): the device belongs to the
    /// bootstrap server and does not register.
    pub fn is_active(&self) -> bool {
        !matches!(self.state, State::Idle | State::Finished)
    }

    /// True while the bootstrap server may send operations.
    pub fn is_serving(&self) -> bool {
        matches!(self.state, State::Serving { .. })
    }

    /// Starts (again) after the Client Hold Off Time.
    pub fn start(&mut self, hold_off: Duration) {
        self.in_flight = false;
        self.queued = false;
        self.state = State::HoldingOff {
            hold_off,
            until: None,
        };
    }

    /// Stops without a result (e.g. the device rebooted).
    pub fn stop(&mut self) {
        self.in_flight = false;
        self.queued = false;
        self.state = State::Idle;
    }

    /// The Bootstrap-Request to send, if one is due.
    pub fn poll_request(&mut self) -> Option<Request> {
        if self.in_flight || !self.queued {
            return None;
        }
        self.queued = false;
        self.in_flight = true;
        self.events.push_back(BootstrapEvent::Requested);
        Some(self.request())
    }

    /// `POST /bs?ep=..[&pct=..]`.
    pub fn request(&self) -> Request {
        let c = &self.config;
        let mut request = Request::new(Method::Post)
            .with_path("/bs")
            .with_query(&format!("ep={}", c.endpoint));
        if c.lwm2m >= Version::V1_1
            && let Some(f) = c.preferred_format
        {
            request = request.with_query(&format!("pct={}", f.code()));
        }
        request
    }

    pub fn on_response(&mut self, now: Instant, response: &Response) {
        if !std::mem::take(&mut self.in_flight) || self.state != State::Requesting {
            return;
        }
        if response.code == Code::CHANGED {
            self.state = State::Serving {
                deadline: now + self.config.exchange_timeout,
            };
            self.events.push_back(BootstrapEvent::Accepted);
        } else {
            self.fail(now, BootstrapFailure::Refused(response.code));
        }
    }

    pub fn on_failure(&mut self, now: Instant) {
        if std::mem::take(&mut self.in_flight) && self.state == State::Requesting {
            self.fail(now, BootstrapFailure::NoAnswer);
        }
    }

    /// The bootstrap server sent an operation: it is alive, restart the silence timer. An
    /// operation that overtakes the 2.04 of the request (reordering) counts as its acceptance.
    pub fn activity(&mut self, now: Instant) {
        match self.state {
            State::Serving { .. } => {
                self.state = State::Serving {
                    deadline: now + self.config.exchange_timeout,
                }
            }
            State::Requesting => {
                self.in_flight = false;
                self.state = State::Serving {
                    deadline: now + self.config.exchange_timeout,
                };
                self.events.push_back(BootstrapEvent::Accepted);
            }
            _ => {}
        }
    }

    /// Bootstrap-Finish was accepted.
    pub fn finished(&mut self) {
        self.failures = 0;
        self.in_flight = false;
        self.state = State::Finished;
        self.events.push_back(BootstrapEvent::Finished);
    }

    /// The configuration was accepted but cannot be used: try again later.
    pub fn unusable(&mut self, now: Instant, why: String) {
        self.fail(now, BootstrapFailure::Unusable(why));
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::HoldingOff { until, .. } => until,
            State::Serving { deadline } => Some(deadline),
            State::Backoff { until } => Some(until),
            _ => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::HoldingOff {
                hold_off,
                until: None,
            } => {
                self.state = State::HoldingOff {
                    hold_off,
                    until: Some(now + hold_off),
                };
                self.handle_timeout(now);
            }
            State::HoldingOff {
                until: Some(until), ..
            }
            | State::Backoff { until }
                if until <= now =>
            {
                self.state = State::Requesting;
                self.queued = true;
            }
            State::Serving { deadline } if deadline <= now => {
                self.fail(now, BootstrapFailure::Timeout);
            }
            _ => {}
        }
    }

    pub fn poll_event(&mut self) -> Option<BootstrapEvent> {
        self.events.pop_front()
    }

    fn fail(&mut self, now: Instant, reason: BootstrapFailure) {
        self.failures = self.failures.saturating_add(1);
        let retry_in =
            crate::retry::backoff(self.failures, self.config.retry_base, self.config.retry_max);
        let retry_in = crate::retry::spread(retry_in, &self.config.endpoint, self.failures);
        self.in_flight = false;
        self.queued = false;
        self.state = State::Backoff {
            until: now + retry_in,
        };
        self.events
            .push_back(BootstrapEvent::Failed { reason, retry_in });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_carries_pct_from_1_1() {
        let mut c = BootstrapConfig::new("dev", Version::V1_0);
        c.preferred_format = Some(ContentFormat::SenmlCbor);
        let r = Bootstrap::new(c.clone()).request();
        assert_eq!(r.options.uri_query(), Some(vec!["ep=dev"]));
        c.lwm2m = Version::V1_1;
        let r = Bootstrap::new(c).request();
        assert_eq!(r.options.uri_query(), Some(vec!["ep=dev", "pct=112"]));
        assert_eq!(r.path_string(), "/bs");
    }

    #[test]
    fn silence_fails_and_backs_off() {
        let now = Instant::now();
        let mut b = Bootstrap::new(BootstrapConfig::new("dev", Version::V1_1));
        b.start(Duration::ZERO);
        b.handle_timeout(now);
        assert!(b.poll_request().is_some());
        b.on_response(now, &Response::new(Code::CHANGED));
        assert!(b.is_serving());
        b.handle_timeout(now + EXCHANGE_LIFETIME);
        // 5 s, spread by up to a half for this device.
        let retry = crate::retry::spread(Duration::from_secs(5), "dev", 1);
        assert!(retry >= Duration::from_secs(5) && retry < Duration::from_millis(7500));
        assert_eq!(
            b.state(),
            &State::Backoff {
                until: now + EXCHANGE_LIFETIME + retry
            }
        );
        let events: Vec<_> = std::iter::from_fn(|| b.poll_event()).collect();
        assert!(matches!(
            events.last(),
            Some(BootstrapEvent::Failed {
                reason: BootstrapFailure::Timeout,
                ..
            })
        ));
    }
}
