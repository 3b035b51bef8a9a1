//! The Echo option (RFC 9175 §2): a server proves that a request is fresh, or that the client
//! can receive at its claimed address, by making the client repeat a value it chose.
//!
//! # Server side: [`EchoVerifier`]
//!
//! Stateless (§2.3, "timestamp-based" freshness): a value is the time it was issued, as
//! milliseconds since the verifier's epoch, followed by a keyed 64-bit SipHash-2-4 tag over that
//! time and an optional caller context (the peer's address or identity, to bind the value to
//! one client, §2.4 item 3). Verifying needs no table of issued values, so a flood of requests
//! cannot grow state.
//!
//! The tag only shows that *this verifier* issued the value and when. It is not encryption and
//! not authentication: anyone who sees a value can repeat it within the freshness window, and
//! the time in it is readable. That is all Echo promises (§2.2); integrity of the request
//! itself comes from DTLS or OSCORE. The key is drawn by the caller (randomness comes in from
//! outside, so tests are reproducible) and should be fresh per process; a restart therefore
//! invalidates outstanding values, which only costs the client one more 4.01 round.
//!
//! SipHash with a caller-chosen key is only in std as the deprecated `SipHasher` (SipHash-2-4;
//! `RandomState` keys itself from the OS, which would make the tests nondeterministic). It is
//! checked below against the reference vector of the SipHash paper.
//!
//! # Client side: [`EchoClient`]
//!
//! A 4.01 carrying Echo asks the client to send the request again with that value (§2.3). The
//! client does so once per request: a second 4.01 goes to the application, so a server that
//! never accepts its own values cannot make the client loop.

use std::hash::Hasher;
use std::time::{Duration, Instant};

use crate::message::{Code, Options, Request, Response, option};

/// Echo option values are 1 to 40 bytes long (§2.2.1).
pub const MIN_LEN: usize = 1;
pub const MAX_LEN: usize = 40;

/// Length of the values an [`EchoVerifier`] issues: 8 bytes of time, 8 bytes of tag.
pub const ISSUED_LEN: usize = 16;

/// A syntactically valid Echo option value (1 to 40 bytes). Whether it is fresh is for the
/// server that issued it to say.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EchoValue(Vec<u8>);

impl EchoValue {
    pub fn parse(bytes: &[u8]) -> Result<EchoValue, EchoError> {
        check_length(bytes)?;
        Ok(EchoValue(bytes.to_vec()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// Adds this value to a request as its only Echo option.
    pub fn apply(&self, request: &mut Request) {
        request.options.set(option::ECHO, self.0.clone());
    }
}

/// Echo option values are 1 to 40 bytes long (§2.2.1).
pub fn check_length(bytes: &[u8]) -> Result<(), EchoError> {
    if (MIN_LEN..=MAX_LEN).contains(&bytes.len()) {
        Ok(())
    } else {
        Err(EchoError::Length { len: bytes.len() })
    }
}

/// The Echo option of a message: `None` when absent. Echo is not repeatable (§2.2.1); per
/// RFC 7252 §5.4.5 later occurrences are ignored like unrecognised elective options.
pub fn echo_option(options: &Options) -> Option<Result<EchoValue, EchoError>> {
    options.get(option::ECHO).map(EchoValue::parse)
}

/// Why an Echo value was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EchoError {
    #[error("Echo value of {len} bytes is outside 1..=40")]
    Length { len: usize },
    /// The request carried no Echo option where one is required.
    #[error("request has no Echo option")]
    Missing,
    /// Not issued by this verifier (another key, another context, or altered).
    #[error("Echo value was not issued here")]
    Forged,
    /// Issued here, but longer ago than the freshness window.
    #[error("Echo value is {age:?} old, older than the freshness window")]
    Stale { age: Duration },
}

/// Settings of an [`EchoVerifier`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoConfig {
    /// How long after issue a value is accepted. Long enough for a constrained client to
    /// resend over a slow link (a CON round trip with retransmissions takes seconds); short
    /// enough that a repeated value says the request is recent.
    pub freshness_window: Duration,
}

impl Default for EchoConfig {
    fn default() -> EchoConfig {
        EchoConfig {
            freshness_window: Duration::from_secs(10),
        }
    }
}

/// Domain separation, so that a tag made for Echo cannot be passed off as any other use of the
/// same key, and a later format cannot be confused with this one.
const TAG_DOMAIN: &[u8] = b"steward-coap/echo/v1";

/// Issues and checks stateless Echo values (§2.3, §2.4).
#[derive(Debug, Clone)]
pub struct EchoVerifier {
    k0: u64,
    k1: u64,
    /// Times in values count from here; `Instant` has no absolute meaning.
    epoch: Instant,
    config: EchoConfig,
}

impl EchoVerifier {
    /// `secret` must be random and kept within the process; `epoch` is any instant not after
    /// the first `now` passed in (the start of the process will do).
    pub fn new(secret: [u8; 16], epoch: Instant, config: EchoConfig) -> EchoVerifier {
        let (k0, k1) = split_key(secret);
        EchoVerifier {
            k0,
            k1,
            epoch,
            config,
        }
    }

    pub fn config(&self) -> &EchoConfig {
        &self.config
    }

    /// A fresh value, not bound to any peer.
    pub fn issue(&self, now: Instant) -> EchoValue {
        self.issue_for(now, &[])
    }

    /// A fresh value bound to `context` (the peer's address or identity): it verifies only
    /// with the same context.
    pub fn issue_for(&self, now: Instant, context: &[u8]) -> EchoValue {
        let time = self.millis(now);
        let tag = self.tag(time, context);
        let mut value = Vec::with_capacity(ISSUED_LEN);
        value.extend_from_slice(&time.to_be_bytes());
        value.extend_from_slice(&tag.to_be_bytes());
        EchoValue(value)
    }

    /// 4.01 Unauthorized with a fresh Echo value (§2.4): "send this again with the value".
    pub fn challenge(&self, now: Instant) -> Response {
        self.challenge_for(now, &[])
    }

    pub fn challenge_for(&self, now: Instant, context: &[u8]) -> Response {
        Response::new(Code::UNAUTHORIZED)
            .with_option(option::ECHO, self.issue_for(now, context).into_bytes())
    }

    /// Accepts a value this verifier issued no longer than the freshness window ago.
    pub fn verify(&self, now: Instant, value: &[u8]) -> Result<(), EchoError> {
        self.verify_for(now, &[], value)
    }

    pub fn verify_for(&self, now: Instant, context: &[u8], value: &[u8]) -> Result<(), EchoError> {
        check_length(value)?;
        // Any other length is valid Echo syntax but not a value this verifier issued.
        let issued: [u8; ISSUED_LEN] = value.try_into().map_err(|_| EchoError::Forged)?;
        // Time in the high 8 bytes, tag in the low 8, both big-endian (see `issue_for`); the
        // casts take exactly those halves.
        let packed = u128::from_be_bytes(issued);
        let (time, tag) = ((packed >> 64) as u64, packed as u64);
        // Comparing two u64 values takes the same time whatever they hold, so this leaks
        // nothing that would help guess a tag byte by byte.
        if self.tag(time, context) != tag {
            return Err(EchoError::Forged);
        }
        // Only this verifier makes valid tags, so a time ahead of `now` can only come from a
        // caller whose clock readings went backwards; such a value is as good as new.
        let age = Duration::from_millis(self.millis(now).saturating_sub(time));
        if age > self.config.freshness_window {
            return Err(EchoError::Stale { age });
        }
        Ok(())
    }

    /// For a handler that needs a fresh request: `Ok` if the request carries a valid fresh
    /// Echo, otherwise the error and the 4.01 challenge to send back (§2.4).
    pub fn require_fresh(
        &self,
        now: Instant,
        context: &[u8],
        request: &Request,
    ) -> Result<(), (EchoError, Response)> {
        let result = match echo_option(&request.options) {
            None => Err(EchoError::Missing),
            Some(Err(e)) => Err(e),
            Some(Ok(value)) => self.verify_for(now, context, value.as_bytes()),
        };
        result.map_err(|e| (e, self.challenge_for(now, context)))
    }

    fn millis(&self, now: Instant) -> u64 {
        // 2^64 ms is far beyond any uptime; saturate rather than wrap.
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    #[allow(deprecated)] // The only keyed SipHash in std; see the module docs.
    fn tag(&self, time: u64, context: &[u8]) -> u64 {
        let mut h = std::hash::SipHasher::new_with_keys(self.k0, self.k1);
        // Time is fixed-width and comes before the context, so the input is unambiguous.
        h.write(TAG_DOMAIN);
        h.write(&time.to_be_bytes());
        h.write(context);
        h.finish()
    }
}

fn split_key(secret: [u8; 16]) -> (u64, u64) {
    // Two little-endian halves, as the SipHash reference reads its key (so the test vector
    // below applies); the casts take the low and high 8 bytes.
    let k = u128::from_le_bytes(secret);
    (k as u64, (k >> 64) as u64)
}

/// Client-side Echo handling for one request: at most one retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EchoClient {
    retried: bool,
}

impl EchoClient {
    pub fn new() -> EchoClient {
        EchoClient::default()
    }

    /// `Some(value)` when the endpoint should send the request again with Echo = `value`
    /// (a 4.01 with a valid Echo, first time for this request, §2.3); `None` means the
    /// response goes to the application as it is.
    pub fn on_response(&mut self, response: &Response) -> Option<Vec<u8>> {
        if self.retried || response.code != Code::UNAUTHORIZED {
            return None;
        }
        let value = echo_option(&response.options)?.ok()?;
        self.retried = true;
        Some(value.into_bytes())
    }

    pub fn has_retried(&self) -> bool {
        self.retried
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(deprecated)]
    fn siphash_matches_the_reference_vector() {
        // SipHash paper, appendix A: key 00..0f, message 00..0e, SipHash-2-4.
        let key: [u8; 16] = std::array::from_fn(|i| i as u8);
        let message: Vec<u8> = (0u8..15).collect();
        let (k0, k1) = split_key(key);
        let mut h = std::hash::SipHasher::new_with_keys(k0, k1);
        h.write(&message);
        assert_eq!(h.finish(), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn issued_values_have_the_documented_length() {
        let t0 = Instant::now();
        let v = EchoVerifier::new([7; 16], t0, EchoConfig::default());
        assert_eq!(v.issue(t0).as_bytes().len(), ISSUED_LEN);
    }

    #[test]
    fn lengths() {
        assert_eq!(EchoValue::parse(&[]), Err(EchoError::Length { len: 0 }));
        assert!(EchoValue::parse(&[0]).is_ok());
        assert!(EchoValue::parse(&[0; 40]).is_ok());
        assert_eq!(
            EchoValue::parse(&[0; 41]),
            Err(EchoError::Length { len: 41 })
        );
    }

    #[test]
    fn context_binds_the_value() {
        let t0 = Instant::now();
        let v = EchoVerifier::new([1; 16], t0, EchoConfig::default());
        let value = v.issue_for(t0, b"peer-a");
        assert_eq!(v.verify_for(t0, b"peer-a", value.as_bytes()), Ok(()));
        assert_eq!(
            v.verify_for(t0, b"peer-b", value.as_bytes()),
            Err(EchoError::Forged)
        );
        assert_eq!(v.verify(t0, value.as_bytes()), Err(EchoError::Forged));
    }
}
