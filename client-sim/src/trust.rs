//! The device side of trust-chain recovery (seed 000): a Certificate Trust List (CTL) with
//! chain-linked updates, locked-in mode, and the vendor recovery token that lets a device whose
//! server lost its keys start over. Pure: no I/O, the caller passes the time.
//!
//! # States (resource 42769/0/2)
//!
//! - **Initial** (0): no CTL. With [`InitialTrust::FirstUse`] the device trusts the first
//!   bootstrap server it completes a bootstrap with, and pins the root of the chain that server
//!   showed as its CTL (version 1). With [`InitialTrust::Factory`] it starts from the factory
//!   CTL instead, so it is never in this state.
//! - **Locked-in** (1): the device trusts only servers whose certificate chains to a CTL anchor
//!   (or is one), for its bootstrap server and its LwM2M server alike. A new CTL is accepted
//!   only as an update signed by the key of a current anchor, with a higher version
//!   ([`steward_pki::ctl::Ctl::accept_update`]): the chain of trust.
//! - **Recovery** (2): the bootstrap server's certificate does not chain to the CTL. The device
//!   still completes the DTLS handshake and sends its Bootstrap-Request, because the recovery
//!   token authenticates itself and the channel need not; but in such a session it accepts
//!   nothing except a valid recovery token (and, once one is accepted, Bootstrap-Finish). A
//!   rogue server can put a device in this state, and can do nothing with it.
//!
//! # The recovery token (resource 42769/0/3)
//!
//! Accepted, from a bootstrap session or from the registered server, only when
//! [`steward_pki::recovery::verify_recovery_token`] passes with the vendor recovery key the
//! device was built with, this CTL's fingerprint, this installation and the device's clock,
//! and its `cti` was not used before. Then the device erases its CTL and returns to its initial
//! state; the device loop forgets its bootstrapped accounts and bootstraps again. Anything else
//! is refused and changes nothing but the last-result resources.

use std::collections::VecDeque;

use steward_dtls::ServerTrust;
use steward_pki::cose::VerifyingKey;
use steward_pki::ctl::{Ctl, CtlError};
use steward_pki::recovery::{Expectation, RecoveryError, verify_recovery_token};

/// The Trust Recovery object (OMA test range, not for production).
pub const OBJECT: u16 = 42769;
/// Its model, shipped with the `trust-recovery` plugin.
pub const DDF: &str = include_str!("../../plugins/trust-recovery/42769.xml");

/// Resource IDs of /42769/0.
pub mod rid {
    pub const FINGERPRINT: u16 = 0;
    pub const INSTALLATION: u16 = 1;
    pub const STATE: u16 = 2;
    pub const TOKEN: u16 = 3;
    pub const LAST_RESULT: u16 = 4;
    pub const CTL_UPDATE: u16 = 5;
    pub const CTL_VERSION: u16 = 6;
    pub const VENDOR_KEY_ID: u16 = 7;
    pub const LAST_TOKEN_ID: u16 = 8;
    pub const LAST_OUTCOME: u16 = 9;
}

/// How many used token ids a device remembers (oldest forgotten first). A forgotten id is
/// still refused by the fingerprint: the CTL it named is gone.
const REMEMBERED_TOKENS: usize = 64;

/// What a device goes back to when it erases its CTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitialTrust {
    /// Trust on first use: the first bootstrap server the device completes a bootstrap with.
    FirstUse,
    /// A factory CTL (DER anchors), version 1.
    Factory(Vec<Vec<u8>>),
}

/// How a device is built for trust-chain recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustConfig {
    /// The installation it belongs to (set by its installer), 1..=128 bytes.
    pub installation: String,
    /// The vendor recovery public key it was built with.
    pub vendor_key: VerifyingKey,
    pub initial: InitialTrust,
    /// The longest a device waits between two bootstrap attempts (a locked-out device polls
    /// its bootstrap server for a recovery token this often).
    pub recovery_retry: std::time::Duration,
}

/// The default of [`TrustConfig::recovery_retry`].
pub const DEFAULT_RECOVERY_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

/// The path of the recovery token resource.
pub const TOKEN_PATH: &str = "/42769/0/3";

/// 42769/0/2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustState {
    Initial = 0,
    LockedIn = 1,
    Recovery = 2,
}

/// 42769/0/9: what the device did with the last token or CTL update it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    None = 0,
    Recovered = 1,
    BadSignature = 2,
    Malformed = 3,
    WrongFingerprint = 4,
    WrongInstallation = 5,
    Expired = 6,
    NotYetValid = 7,
    AlreadyUsed = 8,
    NoCtl = 9,
    Lifetime = 10,
    CtlUpdated = 20,
    CtlUpdateRefused = 21,
}

/// A token or update the device refused: the outcome and why, for the diagnostic payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub outcome: Outcome,
    pub reason: String,
}

/// Whom the current bootstrap session is with, as far as the device can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Session {
    /// No session seen yet (or not over DTLS with certificates).
    Unknown,
    /// The server's chain chains to the CTL.
    Authenticated,
    /// Initial state, first use: this chain's root is pinned when the bootstrap finishes.
    FirstUse { anchor: Vec<u8> },
    /// The server could not be authenticated: recovery mode for this session.
    Unauthenticated,
}

/// What the device keeps across power cycles.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedTrust {
    /// The CTL's canonical bytes, hex; absent in the initial state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctl: Option<String>,
    /// Used token ids, hex, oldest first.
    #[serde(default)]
    pub used_tokens: Vec<String>,
    #[serde(default)]
    pub last_outcome: u8,
    #[serde(default)]
    pub last_result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_token: Option<String>,
}

/// A device's trust: its CTL and what it did with tokens.
#[derive(Debug, Clone)]
pub struct DeviceTrust {
    config: TrustConfig,
    ctl: Option<Ctl>,
    used: VecDeque<[u8; 16]>,
    last_outcome: Outcome,
    last_result: String,
    last_token: Option<[u8; 16]>,
    session: Session,
    /// The chain the bootstrap server showed in this session (re-judged after a reset).
    chain: Vec<Vec<u8>>,
    /// A token was accepted in this bootstrap session: Bootstrap-Finish resets.
    reset_pending: bool,
}

impl DeviceTrust {
    /// A device fresh from the factory.
    pub fn new(config: TrustConfig) -> Result<DeviceTrust, CtlError> {
        let ctl = match &config.initial {
            InitialTrust::FirstUse => None,
            InitialTrust::Factory(anchors) => Some(Ctl::new(1, anchors.clone())?),
        };
        Ok(DeviceTrust {
            config,
            ctl,
            used: VecDeque::new(),
            last_outcome: Outcome::None,
            last_result: String::new(),
            last_token: None,
            session: Session::Unknown,
            chain: Vec::new(),
            reset_pending: false,
        })
    }

    pub fn config(&self) -> &TrustConfig {
        &self.config
    }

    pub fn ctl(&self) -> Option<&Ctl> {
        self.ctl.as_ref()
    }

    /// SHA-256 of the CTL's canonical encoding; `None` in the initial state.
    pub fn fingerprint(&self) -> Option<[u8; 32]> {
        self.ctl.as_ref().map(Ctl::fingerprint)
    }

    pub fn state(&self) -> TrustState {
        match (&self.ctl, &self.session) {
            (None, _) => TrustState::Initial,
            (Some(_), Session::Unauthenticated) => TrustState::Recovery,
            (Some(_), _) => TrustState::LockedIn,
        }
    }

    pub fn last_outcome(&self) -> Outcome {
        self.last_outcome
    }

    pub fn last_result(&self) -> &str {
        &self.last_result
    }

    pub fn last_token(&self) -> Option<[u8; 16]> {
        self.last_token
    }

    /// SHA-256 of the vendor key's SubjectPublicKeyInfo (42769/0/7).
    pub fn vendor_key_id(&self) -> [u8; 32] {
        steward_pki::cose::verifying_key_id(&self.config.vendor_key)
    }

    /// How the device checks its LwM2M server: against the CTL when it holds one; `None`
    /// leaves the account's own server certificate (/0/x/4) in charge (initial state).
    pub fn server_trust(&self) -> Option<ServerTrust> {
        self.ctl
            .as_ref()
            .map(|ctl| ServerTrust::new(ctl.anchors().to_vec()))
    }

    /// A DTLS session with the bootstrap server came up; `chain` is the certificate chain it
    /// showed (leaf first; empty over PSK or plain CoAP). Decides what the session may do.
    pub fn bootstrap_session(&mut self, chain: &[Vec<u8>]) {
        self.reset_pending = false;
        self.chain = chain.to_vec();
        self.judge_session();
    }

    fn judge_session(&mut self) {
        let chain = &self.chain;
        self.session = match &self.ctl {
            Some(ctl)
                if !chain.is_empty()
                    && ServerTrust::new(ctl.anchors().to_vec())
                        .verify(chain)
                        .is_ok() =>
            {
                Session::Authenticated
            }
            Some(_) => Session::Unauthenticated,
            None => match chain.last() {
                Some(root) => Session::FirstUse {
                    anchor: root.clone(),
                },
                None => Session::Unknown,
            },
        };
    }

    /// Whether the bootstrap server may configure the device in this session; false in
    /// recovery mode (only a token, then Finish, are accepted).
    pub fn accepts_configuration(&self) -> bool {
        !matches!(self.session, Session::Unauthenticated)
    }

    /// Whether a token was accepted in this bootstrap session (Finish then resets).
    pub fn reset_pending(&self) -> bool {
        self.reset_pending
    }

    /// Takes the pending reset (Bootstrap-Finish of the session that accepted a token).
    pub fn take_reset(&mut self) -> bool {
        std::mem::take(&mut self.reset_pending)
    }

    /// A bootstrap finished with a configuration: in the initial state with a first-use
    /// session, the server's root becomes the CTL and the device is locked in. True when it did.
    pub fn bootstrap_finished(&mut self) -> bool {
        if self.ctl.is_some() {
            return false;
        }
        let Session::FirstUse { anchor } = &self.session else {
            return false;
        };
        match Ctl::new(1, vec![anchor.clone()]) {
            Ok(ctl) => {
                self.ctl = Some(ctl);
                self.session = Session::Authenticated;
                true
            }
            Err(_) => false,
        }
    }

    /// A recovery token was written (42769/0/3) at `now` (Unix seconds). `Ok`: the CTL is
    /// erased and the device must go back to its initial state
    /// ([`DeviceTrust::reset_pending`] is set for a bootstrap session).
    pub fn offer_token(&mut self, token: &[u8], now: u64) -> Result<(), Refused> {
        let result = self.check_token(token, now);
        match result {
            Ok(cti) => {
                self.used.push_back(cti);
                while self.used.len() > REMEMBERED_TOKENS {
                    self.used.pop_front();
                }
                self.ctl = match &self.config.initial {
                    InitialTrust::FirstUse => None,
                    InitialTrust::Factory(anchors) => Ctl::new(1, anchors.clone()).ok(),
                };
                self.last_token = Some(cti);
                self.record(Outcome::Recovered, "recovered".into());
                self.reset_pending = true;
                // The same session may go on after the reset: it is now a first use.
                self.judge_session();
                Ok(())
            }
            Err(refused) => {
                self.record(refused.outcome, format!("refused: {}", refused.reason));
                Err(refused)
            }
        }
    }

    fn check_token(&self, token: &[u8], now: u64) -> Result<[u8; 16], Refused> {
        let Some(ctl) = &self.ctl else {
            return Err(Refused {
                outcome: Outcome::NoCtl,
                reason: "no CTL to recover: the device is in its initial state".into(),
            });
        };
        let expect = Expectation {
            fingerprint: ctl.fingerprint(),
            installation: &self.config.installation,
            now,
        };
        let claims =
            verify_recovery_token(&self.config.vendor_key, token, &expect).map_err(refusal)?;
        if self.used.contains(&claims.token_id) {
            return Err(Refused {
                outcome: Outcome::AlreadyUsed,
                reason: "this recovery token was used before".into(),
            });
        }
        Ok(claims.token_id)
    }

    /// A CTL update was written (42769/0/5): accepted only when a current anchor's key signed
    /// a newer CTL. Never accepted in recovery mode or without a CTL.
    pub fn offer_ctl_update(&mut self, update: &[u8]) -> Result<(), Refused> {
        let refused = |reason: String| Refused {
            outcome: Outcome::CtlUpdateRefused,
            reason,
        };
        let result = match (&self.ctl, &self.session) {
            (_, Session::Unauthenticated) => Err(refused(
                "recovery mode: only a recovery token is accepted".into(),
            )),
            (None, _) => Err(refused("no CTL to update".into())),
            (Some(ctl), _) => ctl
                .accept_update(update)
                .map_err(|e| refused(e.to_string())),
        };
        match result {
            Ok(new) => {
                let version = new.version();
                self.ctl = Some(new);
                self.record(
                    Outcome::CtlUpdated,
                    format!("CTL updated to version {version}"),
                );
                Ok(())
            }
            Err(r) => {
                self.record(r.outcome, format!("CTL update refused: {}", r.reason));
                Err(r)
            }
        }
    }

    fn record(&mut self, outcome: Outcome, result: String) {
        self.last_outcome = outcome;
        self.last_result = result;
    }

    pub fn save(&self) -> SavedTrust {
        SavedTrust {
            ctl: self.ctl.as_ref().map(|c| hex(&c.canonical_bytes())),
            used_tokens: self.used.iter().map(|t| hex(t)).collect(),
            last_outcome: self.last_outcome as u8,
            last_result: self.last_result.clone(),
            last_token: self.last_token.map(|t| hex(&t)),
        }
    }

    /// Restores a saved trust; a CTL that does not decode is an error (never silently the
    /// initial state: that would unlock the device).
    pub fn restore(&mut self, saved: &SavedTrust) -> Result<(), String> {
        self.ctl = match &saved.ctl {
            None => None,
            Some(h) => Some(
                Ctl::from_canonical(&unhex(h).ok_or("CTL is not hex")?)
                    .map_err(|e| format!("saved CTL: {e}"))?,
            ),
        };
        self.used = saved
            .used_tokens
            .iter()
            .filter_map(|t| unhex(t).and_then(|b| <[u8; 16]>::try_from(b).ok()))
            .collect();
        self.last_outcome = outcome_of(saved.last_outcome);
        self.last_result = saved.last_result.clone();
        self.last_token = saved
            .last_token
            .as_deref()
            .and_then(unhex)
            .and_then(|b| <[u8; 16]>::try_from(b).ok());
        Ok(())
    }
}

/// Whether a saved trust restores (its CTL decodes).
pub fn check_saved(saved: &SavedTrust) -> Result<(), String> {
    match &saved.ctl {
        None => Ok(()),
        Some(h) => Ctl::from_canonical(&unhex(h).ok_or("the saved CTL is not hex")?)
            .map(|_| ())
            .map_err(|e| format!("saved CTL: {e}")),
    }
}

fn refusal(e: RecoveryError) -> Refused {
    let outcome = match &e {
        RecoveryError::Signature => Outcome::BadSignature,
        RecoveryError::WrongFingerprint => Outcome::WrongFingerprint,
        RecoveryError::WrongInstallation => Outcome::WrongInstallation,
        RecoveryError::Expired => Outcome::Expired,
        RecoveryError::NotYetValid => Outcome::NotYetValid,
        RecoveryError::Lifetime => Outcome::Lifetime,
        _ => Outcome::Malformed,
    };
    Refused {
        outcome,
        reason: e.to_string(),
    }
}

fn outcome_of(n: u8) -> Outcome {
    use Outcome::*;
    [
        None,
        Recovered,
        BadSignature,
        Malformed,
        WrongFingerprint,
        WrongInstallation,
        Expired,
        NotYetValid,
        AlreadyUsed,
        NoCtl,
        Lifetime,
        CtlUpdated,
        CtlUpdateRefused,
    ]
    .into_iter()
    .find(|o| *o as u8 == n)
    .unwrap_or(None)
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use steward_pki::cose::SigningKey;
    use steward_pki::recovery::{RecoveryClaims, sign_recovery_token};

    pub(crate) const NOW: u64 = 1_800_000_000;
    pub(crate) const INSTALLATION: &str = "acme-plant-7";

    pub(crate) fn key(first: u8) -> SigningKey {
        let scalar: Vec<u8> = (first..first + 32).collect();
        SigningKey::from_slice(&scalar).expect("a valid scalar")
    }

    pub(crate) fn vendor() -> SigningKey {
        key(1)
    }

    pub(crate) fn anchors() -> Vec<Vec<u8>> {
        vec![b"anchor A (server A's CA)".to_vec()]
    }

    /// A device locked in to `anchors()` (factory CTL, so no handshake is needed).
    pub(crate) fn locked_in() -> DeviceTrust {
        DeviceTrust::new(TrustConfig {
            installation: INSTALLATION.into(),
            vendor_key: *vendor().verifying_key(),
            initial: InitialTrust::Factory(anchors()),
            recovery_retry: DEFAULT_RECOVERY_RETRY,
        })
        .expect("factory CTL")
    }

    pub(crate) fn token_with(
        signer: &SigningKey,
        edit: impl FnOnce(&mut RecoveryClaims),
    ) -> Vec<u8> {
        let mut claims = RecoveryClaims {
            issuer: "vendor".into(),
            ctl_fingerprint: Ctl::new(1, anchors()).expect("ctl").fingerprint(),
            installation: INSTALLATION.into(),
            issued_at: NOW - 60,
            expires_at: NOW + 3600,
            token_id: [7; 16],
        };
        edit(&mut claims);
        sign_recovery_token(signer, b"vendor", &claims).expect("signed")
    }

    #[test]
    fn a_valid_token_erases_the_ctl() {
        let mut trust = locked_in();
        let before = trust.fingerprint();
        assert_eq!(trust.state(), TrustState::LockedIn);
        trust
            .offer_token(&token_with(&vendor(), |_| {}), NOW)
            .expect("accepted");
        assert_eq!(trust.last_outcome(), Outcome::Recovered);
        assert_eq!(trust.last_token(), Some([7; 16]));
        assert!(trust.reset_pending());
        // Factory initial state: back to the factory CTL, which is the one it had.
        assert_eq!(trust.fingerprint(), before);
    }

    #[test]
    fn every_bad_token_leaves_the_ctl_untouched() {
        let server_key = key(0x21);
        let cases: Vec<(&str, Vec<u8>, Outcome)> = vec![
            (
                "another installation",
                token_with(&vendor(), |c| c.installation = "other-site".into()),
                Outcome::WrongInstallation,
            ),
            (
                "another fingerprint",
                token_with(&vendor(), |c| c.ctl_fingerprint = [9; 32]),
                Outcome::WrongFingerprint,
            ),
            (
                "expired",
                token_with(&vendor(), |c| {
                    c.issued_at = NOW - 7200;
                    c.expires_at = NOW - 1;
                }),
                Outcome::Expired,
            ),
            (
                "signed by the server's key",
                token_with(&server_key, |_| {}),
                Outcome::BadSignature,
            ),
            (
                "forged signature",
                {
                    let mut t = token_with(&vendor(), |_| {});
                    let last = t.len() - 1;
                    t[last] ^= 1;
                    t
                },
                Outcome::BadSignature,
            ),
            ("garbage", b"not a token".to_vec(), Outcome::Malformed),
        ];
        for (what, token, outcome) in cases {
            let mut trust = locked_in();
            let ctl = trust.ctl().cloned();
            let refused = trust.offer_token(&token, NOW).expect_err(what);
            assert_eq!(refused.outcome, outcome, "{what}");
            assert_eq!(trust.last_outcome(), outcome, "{what}");
            assert_eq!(trust.ctl().cloned(), ctl, "{what}: CTL untouched");
            assert!(!trust.reset_pending(), "{what}");
        }
    }

    #[test]
    fn a_token_is_used_once() {
        let mut trust = locked_in();
        let token = token_with(&vendor(), |_| {});
        trust.offer_token(&token, NOW).expect("first use");
        let refused = trust.offer_token(&token, NOW).expect_err("replay");
        assert_eq!(refused.outcome, Outcome::AlreadyUsed);
    }

    #[test]
    fn first_use_pins_the_root_and_recovery_returns_to_first_use() {
        let mut trust = DeviceTrust::new(TrustConfig {
            installation: INSTALLATION.into(),
            vendor_key: *vendor().verifying_key(),
            initial: InitialTrust::FirstUse,
            recovery_retry: DEFAULT_RECOVERY_RETRY,
        })
        .expect("trust");
        assert_eq!(trust.state(), TrustState::Initial);
        let chain_a = vec![b"leaf A".to_vec(), anchors()[0].clone()];
        trust.bootstrap_session(&chain_a);
        assert!(trust.accepts_configuration());
        assert!(trust.bootstrap_finished(), "pinned");
        assert_eq!(trust.ctl().map(|c| c.anchors().to_vec()), Some(anchors()));
        assert_eq!(trust.state(), TrustState::LockedIn);

        // Server B: not in the CTL. Recovery mode: no configuration, no CTL update.
        let chain_b = vec![b"leaf B".to_vec(), b"root B".to_vec()];
        trust.bootstrap_session(&chain_b);
        assert_eq!(trust.state(), TrustState::Recovery);
        assert!(!trust.accepts_configuration());
        assert_eq!(
            trust.offer_ctl_update(b"anything").map_err(|r| r.outcome),
            Err(Outcome::CtlUpdateRefused)
        );
        assert_eq!(trust.ctl().map(|c| c.anchors().to_vec()), Some(anchors()));

        // The token: back to the initial state, and this session becomes the first use.
        trust
            .offer_token(&token_with(&vendor(), |_| {}), NOW)
            .expect("accepted");
        assert_eq!(trust.state(), TrustState::Initial);
        assert!(trust.accepts_configuration());
        assert!(trust.bootstrap_finished());
        assert_eq!(
            trust.ctl().map(|c| c.anchors().to_vec()),
            Some(vec![b"root B".to_vec()])
        );
    }

    #[test]
    fn state_survives_a_save_and_restore() {
        let mut trust = locked_in();
        let _ = trust.offer_token(&token_with(&vendor(), |c| c.installation = "x".into()), NOW);
        let saved = trust.save();
        let json = serde_json::to_string(&saved).expect("json");
        let mut restored = DeviceTrust::new(TrustConfig {
            installation: INSTALLATION.into(),
            vendor_key: *vendor().verifying_key(),
            initial: InitialTrust::FirstUse,
            recovery_retry: DEFAULT_RECOVERY_RETRY,
        })
        .expect("trust");
        restored
            .restore(&serde_json::from_str(&json).expect("parse"))
            .expect("restored");
        assert_eq!(restored.fingerprint(), trust.fingerprint());
        assert_eq!(restored.last_outcome(), Outcome::WrongInstallation);
        assert_eq!(restored.last_result(), trust.last_result());
        let mut bad = saved.clone();
        bad.ctl = Some("zz".into());
        assert!(restored.restore(&bad).is_err(), "a corrupt CTL is an error");
    }
}
