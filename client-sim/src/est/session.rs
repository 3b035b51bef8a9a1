//! [`EstSession`]: one enrolment, re-enrolment or server-certificate check as a sans-IO state
//! machine (see the module docs of [`crate::est`] for the flow).

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use steward_coap::message::{Code, Method, Request, Response, encode_uint, option};
use steward_pki::est::content_format as cf;
use steward_pki::revocation::ocsp::{check_response, request_for};
use steward_pki::revocation::{CertStatus, RevocationReason};

use super::credentials::{self, CredentialError, Enrolled};
use super::{EstConfig, OcspCheck};

/// The steps of a session, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EstStep {
    /// `GET /.well-known/est/crts`: the explicit trust anchors.
    CaCerts,
    /// `POST /.well-known/est/sen`.
    Enrol,
    /// `POST /.well-known/est/sren`.
    Reenrol,
    /// `POST /ocsp` about the server certificate.
    Ocsp,
}

impl std::fmt::Display for EstStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EstStep::CaCerts => "/crts",
            EstStep::Enrol => "/sen",
            EstStep::Reenrol => "/sren",
            EstStep::Ocsp => "OCSP",
        })
    }
}

/// What a session is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EstJob {
    /// Security Mode 4: new key, `/sen`, then the check of `server_certificate` (`/0/x/4`).
    Enrol { server_certificate: Vec<u8> },
    /// `/sren` with a new key; `common_name` must be the current certificate's (RFC 7030
    /// §4.2.2: the subject stays), and the DTLS session must use the current certificate.
    Reenrol {
        common_name: String,
        server_certificate: Vec<u8>,
    },
    /// Mode 2 (or a persisted mode-4 account): only the check of `server_certificate`.
    CheckServer { server_certificate: Vec<u8> },
}

/// Why the server certificate is not trusted. The device fails closed: every variant means
/// "do not connect".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectReason {
    /// The responder says the certificate was revoked.
    Revoked {
        revoked_at: SystemTime,
        reason: Option<RevocationReason>,
    },
    /// The responder does not know the certificate.
    Unknown,
    /// The OCSP request got no answer.
    NoAnswer,
    /// The OCSP endpoint answered with a CoAP error.
    Refused(Code),
    /// The answer is not a valid, fresh, signed response to our request (bad signature, nonce
    /// mismatch, stale, an error status, garbage ...).
    InvalidResponse(String),
    /// The device has no bootstrap server (the EST server and OCSP responder) to ask.
    NoResponder,
    /// The server certificate is not a certificate, or none of the EST CA certificates
    /// issued it (so no responder can speak for it).
    NoIssuer(String),
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RejectReason::Revoked { reason, .. } => match reason {
                Some(r) => write!(f, "server certificate revoked ({r:?})"),
                None => f.write_str("server certificate revoked"),
            },
            RejectReason::Unknown => f.write_str("server certificate unknown to the responder"),
            RejectReason::NoAnswer => f.write_str("no answer from the OCSP responder"),
            RejectReason::NoResponder => f.write_str("no OCSP responder to ask"),
            RejectReason::Refused(code) => write!(f, "OCSP request refused ({code})"),
            RejectReason::InvalidResponse(why) => write!(f, "invalid OCSP response: {why}"),
            RejectReason::NoIssuer(why) => write!(f, "cannot check the server certificate: {why}"),
        }
    }
}

/// Why an attempt failed; the session retries after a back-off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EstFailure {
    /// The EST server answered with an error (4.03: policy said no; 5.03: try later).
    Refused {
        step: EstStep,
        code: Code,
        /// The diagnostic payload, if any (RFC 7252 §5.5.2).
        diagnostic: String,
    },
    NoAnswer {
        step: EstStep,
    },
    /// A 2.xx answer we cannot use (wrong format, no certificate for our key, a chain that
    /// does not lead to the CA).
    BadResponse {
        step: EstStep,
        why: String,
    },
    /// The OCSP check said no.
    ServerCertificateRejected(RejectReason),
    /// Our own side failed (key generation, CSR).
    Local(String),
}

impl std::fmt::Display for EstFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EstFailure::Refused {
                step,
                code,
                diagnostic,
            } if diagnostic.is_empty() => write!(f, "EST {step} refused ({code})"),
            EstFailure::Refused {
                step,
                code,
                diagnostic,
            } => write!(f, "EST {step} refused ({code}): {diagnostic}"),
            EstFailure::NoAnswer { step } => write!(f, "no answer to EST {step}"),
            EstFailure::BadResponse { step, why } => write!(f, "bad answer to EST {step}: {why}"),
            EstFailure::ServerCertificateRejected(r) => r.fmt(f),
            EstFailure::Local(why) => write!(f, "EST client failed: {why}"),
        }
    }
}

/// Progress of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EstEvent {
    /// A request went out.
    Requested { step: EstStep },
    /// `/crts` answered with this many CA certificates.
    CaCertificates { count: usize },
    /// `/sen` or `/sren` gave the device a certificate for its key, chaining to the CA.
    Enrolled { certificate_len: usize },
    /// The responder said Good for the server certificate.
    ServerCertificateAccepted,
    /// An attempt failed; the session tries again in `retry_in`.
    Failed {
        reason: EstFailure,
        retry_in: Duration,
    },
    /// The session is done; take its outcome with [`EstSession::take_outcome`].
    Done,
}

/// What a finished session leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EstOutcome {
    /// A new certificate (and, when checking is on, a server certificate found Good).
    Enrolled(Enrolled),
    /// `CheckServer`: the server certificate may be trusted.
    ServerTrusted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The step's request is due at the next poll.
    Due(EstStep),
    InFlight(EstStep),
    Backoff {
        until: Instant,
        step: EstStep,
    },
    Done,
}

/// One EST session; see the module docs of [`crate::est`].
pub struct EstSession {
    config: EstConfig,
    job: EstJob,
    /// Generated when the first enrolment request is built; kept across retries so that a
    /// 5.03 retry resends the same CSR (RFC 9148 §4.7).
    key: Option<PKey<Private>>,
    csr: Option<Vec<u8>>,
    ca: Vec<X509>,
    ca_der: Vec<Vec<u8>>,
    issued: Option<Vec<u8>>,
    /// The nonce of the OCSP request in flight.
    nonce: Vec<u8>,
    state: State,
    failures: u32,
    events: VecDeque<EstEvent>,
    outcome: Option<EstOutcome>,
}

// The key stays out of logs.
impl std::fmt::Debug for EstSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EstSession")
            .field("job", &self.job)
            .field("state", &self.state)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

impl EstSession {
    /// A session that sends its first request at the next [`EstSession::poll_request`].
    pub fn new(config: EstConfig, job: EstJob) -> EstSession {
        EstSession {
            config,
            job,
            key: None,
            csr: None,
            ca: Vec::new(),
            ca_der: Vec::new(),
            issued: None,
            nonce: Vec::new(),
            state: State::Due(EstStep::CaCerts),
            failures: 0,
            events: VecDeque::new(),
            outcome: None,
        }
    }

    pub fn job(&self) -> &EstJob {
        &self.job
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The request due now, if any (one at a time: NSTART 1, RFC 9148 §6).
    pub fn poll_request(&mut self, now: Instant) -> Option<Request> {
        let State::Due(step) = self.state else {
            return None;
        };
        let request = match self.build(step) {
            Ok(r) => r,
            Err(failure) => {
                // Local failures are retried like others: the RNG or openssl may recover, and
                // a device must not give up for good.
                self.fail_at(now, step, failure);
                return None;
            }
        };
        self.state = State::InFlight(step);
        self.events.push_back(EstEvent::Requested { step });
        Some(request)
    }

    /// The answer to the request in flight. `wall` is the device's idea of the current time,
    /// which the OCSP freshness check needs.
    pub fn on_response(&mut self, now: Instant, wall: SystemTime, response: &Response) {
        let State::InFlight(step) = self.state else {
            return;
        };
        let result = match step {
            EstStep::CaCerts => self.on_ca_certs(response),
            EstStep::Enrol | EstStep::Reenrol => self.on_enrolled(step, response),
            EstStep::Ocsp => self.on_ocsp(response, wall),
        };
        match result {
            Ok(()) => self.advance(now, step),
            Err(failure) => {
                let max_age = (response.code == Code::SERVICE_UNAVAILABLE)
                    .then(|| response.options.get_uint(option::MAX_AGE))
                    .flatten();
                self.fail_at(now, step, failure);
                // RFC 9148 §4.7: 5.03 + Max-Age means "resend the same request then".
                if let (Some(secs), State::Backoff { step, .. }) = (max_age, self.state) {
                    self.state = State::Backoff {
                        until: now + Duration::from_secs(u64::from(secs)),
                        step,
                    };
                    if let Some(EstEvent::Failed { retry_in, .. }) = self.events.back_mut() {
                        *retry_in = Duration::from_secs(u64::from(secs));
                    }
                }
            }
        }
    }

    /// The request in flight got no answer (the stack gave up).
    pub fn on_failure(&mut self, now: Instant) {
        let State::InFlight(step) = self.state else {
            return;
        };
        let failure = match step {
            EstStep::Ocsp => EstFailure::ServerCertificateRejected(RejectReason::NoAnswer),
            step => EstFailure::NoAnswer { step },
        };
        self.fail_at(now, step, failure);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Backoff { until, .. } => Some(until),
            _ => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let State::Backoff { until, step } = self.state
            && until <= now
        {
            // The OCSP nonce is fresh per request; the CA may have changed: start at /crts
            // again unless we only wait to resend an identical enrolment request.
            self.state = State::Due(if step == EstStep::Ocsp {
                EstStep::CaCerts
            } else {
                step
            });
        }
    }

    pub fn poll_event(&mut self) -> Option<EstEvent> {
        self.events.pop_front()
    }

    /// The result, once [`EstEvent::Done`] was reported.
    pub fn take_outcome(&mut self) -> Option<EstOutcome> {
        self.outcome.take()
    }

    fn enrol_step(&self) -> Option<EstStep> {
        match self.job {
            EstJob::Enrol { .. } => Some(EstStep::Enrol),
            EstJob::Reenrol { .. } => Some(EstStep::Reenrol),
            EstJob::CheckServer { .. } => None,
        }
    }

    fn server_certificate(&self) -> &[u8] {
        match &self.job {
            EstJob::Enrol { server_certificate }
            | EstJob::Reenrol {
                server_certificate, ..
            }
            | EstJob::CheckServer { server_certificate } => server_certificate,
        }
    }

    fn build(&mut self, step: EstStep) -> Result<Request, EstFailure> {
        let root = self.config.est_root.trim_end_matches('/');
        let local = |e: CredentialError| EstFailure::Local(e.to_string());
        Ok(match step {
            EstStep::CaCerts => Request::new(Method::Get)
                .with_path(&format!("{root}/crts"))
                .with_option(option::ACCEPT, encode_uint(u32::from(cf::CERTS_ONLY))),
            EstStep::Enrol | EstStep::Reenrol => {
                let csr = match &self.csr {
                    Some(csr) => csr.clone(),
                    None => {
                        let key = credentials::new_key().map_err(local)?;
                        let cn = match &self.job {
                            EstJob::Reenrol { common_name, .. } => common_name.clone(),
                            _ => self.config.endpoint.clone(),
                        };
                        let csr = credentials::csr(&key, &cn).map_err(local)?;
                        self.key = Some(key);
                        self.csr = Some(csr.clone());
                        csr
                    }
                };
                let short = if step == EstStep::Enrol {
                    "sen"
                } else {
                    "sren"
                };
                Request::new(Method::Post)
                    .with_path(&format!("{root}/{short}"))
                    .with_payload(cf::PKCS10, csr)
                    .with_option(option::ACCEPT, encode_uint(u32::from(cf::CERTS_ONLY)))
            }
            EstStep::Ocsp => {
                let OcspCheck::On { path } = &self.config.ocsp else {
                    return Err(EstFailure::Local("OCSP check is off".into()));
                };
                let reject = |r| EstFailure::ServerCertificateRejected(r);
                let cert = X509::from_der(self.server_certificate()).map_err(|e| {
                    reject(RejectReason::NoIssuer(format!(
                        "the server certificate (/0/x/4) does not parse: {e}"
                    )))
                })?;
                let issuer = credentials::issuer_of(&cert, &self.ca).ok_or_else(|| {
                    reject(RejectReason::NoIssuer(
                        "no CA certificate from /crts issued the server certificate".into(),
                    ))
                })?;
                let mut nonce = vec![0; 16];
                openssl::rand::rand_bytes(&mut nonce)
                    .map_err(|e| EstFailure::Local(e.to_string()))?;
                let der = request_for(&cert, issuer, Some(&nonce))
                    .map_err(|e| EstFailure::Local(e.to_string()))?;
                self.nonce = nonce;
                // No Content-Format: CoAP has no registered number for
                // application/ocsp-request (RFC 6960 App. A names only the HTTP media type), so
                // the body is the bare DER OCSPRequest, as the server's /ocsp expects.
                let mut request = Request::new(Method::Post).with_path(path);
                request.payload = der;
                request
            }
        })
    }

    fn on_ca_certs(&mut self, response: &Response) -> Result<(), EstFailure> {
        let step = EstStep::CaCerts;
        let certs = certs_only(step, response, Code::CONTENT)?;
        let parsed = certs
            .iter()
            .map(|der| X509::from_der(der))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(step, format!("a CA certificate does not parse: {e}")))?;
        if parsed.is_empty() {
            return Err(bad(step, "no CA certificate".into()));
        }
        self.events.push_back(EstEvent::CaCertificates {
            count: parsed.len(),
        });
        self.ca = parsed;
        self.ca_der = certs;
        Ok(())
    }

    fn on_enrolled(&mut self, step: EstStep, response: &Response) -> Result<(), EstFailure> {
        let certs = certs_only(step, response, Code::CHANGED)?;
        let Some(key) = &self.key else {
            return Err(EstFailure::Local("no key for the request in flight".into()));
        };
        let leaf = credentials::pick_leaf(&certs, key).map_err(|e| bad(step, e.to_string()))?;
        credentials::verify_chain(&leaf, &self.ca).map_err(|e| bad(step, e.to_string()))?;
        let der = leaf
            .to_der()
            .map_err(|e| EstFailure::Local(e.to_string()))?;
        self.events.push_back(EstEvent::Enrolled {
            certificate_len: der.len(),
        });
        self.issued = Some(der);
        Ok(())
    }

    fn on_ocsp(&mut self, response: &Response, wall: SystemTime) -> Result<(), EstFailure> {
        let reject = EstFailure::ServerCertificateRejected;
        if !response.code.is_success() {
            return Err(reject(RejectReason::Refused(response.code)));
        }
        let cert = X509::from_der(self.server_certificate())
            .map_err(|e| reject(RejectReason::NoIssuer(e.to_string())))?;
        let issuer = credentials::issuer_of(&cert, &self.ca).ok_or_else(|| {
            reject(RejectReason::NoIssuer(
                "no CA certificate issued the server certificate".into(),
            ))
        })?;
        let status = check_response(&response.payload, &cert, issuer, Some(&self.nonce), wall)
            .map_err(|e| reject(RejectReason::InvalidResponse(e.to_string())))?;
        match status {
            CertStatus::Good => {
                self.events.push_back(EstEvent::ServerCertificateAccepted);
                Ok(())
            }
            CertStatus::Revoked { revoked_at, reason } => {
                Err(reject(RejectReason::Revoked { revoked_at, reason }))
            }
            CertStatus::Unknown => Err(reject(RejectReason::Unknown)),
        }
    }

    /// The step after `step` succeeded.
    fn advance(&mut self, now: Instant, step: EstStep) {
        let check = matches!(self.config.ocsp, OcspCheck::On { .. });
        let next = match step {
            EstStep::CaCerts => self.enrol_step().or(check.then_some(EstStep::Ocsp)),
            // A re-run of the check after a failed OCSP attempt must not enrol again.
            EstStep::Enrol | EstStep::Reenrol => check.then_some(EstStep::Ocsp),
            EstStep::Ocsp => None,
        };
        let next = match next {
            Some(EstStep::Enrol | EstStep::Reenrol) if self.issued.is_some() => {
                check.then_some(EstStep::Ocsp)
            }
            other => other,
        };
        match next {
            Some(next) => self.state = State::Due(next),
            None => self.finish(now),
        }
    }

    fn finish(&mut self, now: Instant) {
        self.failures = 0;
        self.state = State::Done;
        self.outcome = Some(match (&self.key, &self.issued) {
            (Some(key), Some(certificate)) => match key.private_key_to_pkcs8() {
                Ok(private_key) => EstOutcome::Enrolled(Enrolled {
                    private_key,
                    certificate: certificate.clone(),
                    ca: self.ca_der.clone(),
                }),
                Err(e) => {
                    // Cannot happen for a key openssl generated; retried rather than trusted.
                    self.issued = None;
                    self.csr = None;
                    self.key = None;
                    let step = self.enrol_step().unwrap_or(EstStep::CaCerts);
                    self.fail_at(now, step, EstFailure::Local(e.to_string()));
                    return;
                }
            },
            _ => EstOutcome::ServerTrusted,
        });
        self.events.push_back(EstEvent::Done);
    }

    /// Backs off exponentially from `now`.
    fn fail_at(&mut self, now: Instant, step: EstStep, reason: EstFailure) {
        self.failures = self.failures.saturating_add(1);
        let retry_in =
            crate::retry::backoff(self.failures, self.config.retry_base, self.config.retry_max);
        // A rejected /sen or /sren CSR is not resent as is: a 4.xx answer judged it, so the
        // next attempt makes a new key (5.03 keeps it, RFC 9148 §4.7).
        if matches!(step, EstStep::Enrol | EstStep::Reenrol)
            && !matches!(
                reason,
                EstFailure::Refused {
                    code: Code::SERVICE_UNAVAILABLE,
                    ..
                } | EstFailure::NoAnswer { .. }
            )
        {
            self.key = None;
            self.csr = None;
        }
        self.state = State::Backoff {
            until: now + retry_in,
            step,
        };
        self.events.push_back(EstEvent::Failed { reason, retry_in });
    }
}

fn bad(step: EstStep, why: String) -> EstFailure {
    EstFailure::BadResponse { step, why }
}

/// The certificates of a certs-only answer with code `expected`.
fn certs_only(
    step: EstStep,
    response: &Response,
    expected: Code,
) -> Result<Vec<Vec<u8>>, EstFailure> {
    if response.code != expected {
        if response.code.is_success() {
            return Err(bad(step, format!("unexpected {}", response.code)));
        }
        return Err(EstFailure::Refused {
            step,
            code: response.code,
            diagnostic: String::from_utf8_lossy(&response.payload)
                .chars()
                .take(200)
                .collect(),
        });
    }
    match response.options.content_format() {
        Some(cf::CERTS_ONLY) | None => {}
        Some(other) => return Err(bad(step, format!("content format {other}, not 281"))),
    }
    steward_pki::pkcs7::parse_certs_only(&response.payload).map_err(|e| bad(step, e.to_string()))
}
