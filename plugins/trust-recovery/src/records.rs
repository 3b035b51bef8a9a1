//! What the plugin keeps in its key-value namespace, and the pure bookkeeping on it.
//!
//! | key | value (JSON) |
//! |---|---|
//! | `token/<cti hex>` | [`TokenRecord`]: the token, its claims, withdrawal, [`Progress`] |
//! | `device/<endpoint>` | [`DeviceRecord`]: what the device last reported and where it stands |
//! | `index/<fingerprint hex>/<endpoint>` | the installation: registered devices by the fingerprint of the CTL they hold (what `import` lists to find the devices to write to) |
//! | `stats` | [`Stats`]: device counts by trust state, bootstrap requests |

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use steward_claims::RecoveryClaims;

/// The object this plugin owns (OMA test range).
pub(crate) const OBJECT: u16 = 42769;
/// The instance the plugin reads.
pub(crate) const INSTANCE_PATH: &str = "/42769/0";
/// The Recovery Token resource (write-only).
pub(crate) const TOKEN_PATH: &str = "/42769/0/3";
/// The name of the vendor's public recovery key among the plugin's keys.
pub(crate) const VENDOR_KEY: &str = "vendor";
/// What `import` answers when the vendor key is missing.
pub(crate) const VENDOR_KEY_MISSING: &str = concat!(
    "vendor key not installed: put the vendor's public key in ",
    "<data-dir>/plugin-keys/trust-recovery/vendor.pem"
);

pub(crate) const TOKEN_PREFIX: &str = "token/";
pub(crate) const DEVICE_PREFIX: &str = "device/";
pub(crate) const INDEX_PREFIX: &str = "index/";
pub(crate) const STATS_KEY: &str = "stats";

/// The longest endpoint name the plugin tracks: `index/<64 hex>/<endpoint>` must fit the
/// host's 256-byte key limit. Longer names are logged and ignored.
pub(crate) const MAX_ENDPOINT_LEN: usize = 180;
/// At most this many active tokens (the host keeps at most 64 offers per plugin).
pub(crate) const MAX_ACTIVE_TOKENS: usize = 64;
/// Distinct refusal reasons counted per token; further ones count under `"other"`.
pub(crate) const MAX_REASONS: usize = 32;

pub(crate) fn token_key(token_id: &str) -> String {
    format!("{TOKEN_PREFIX}{token_id}")
}

pub(crate) fn device_key(endpoint: &str) -> String {
    format!("{DEVICE_PREFIX}{endpoint}")
}

pub(crate) fn index_prefix(fingerprint: &str) -> String {
    format!("{INDEX_PREFIX}{fingerprint}/")
}

/// The bootstrap offer of a token.
pub(crate) fn offer_name(token_id: &str) -> String {
    format!("recovery-{token_id}")
}

/// The token id of one of our offers.
pub(crate) fn token_of_offer(offer: &str) -> Option<&str> {
    offer
        .strip_prefix("recovery-")
        .filter(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// An imported token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenRecord {
    /// `cti`, lowercase hex.
    pub token_id: String,
    /// The token as imported (the COSE_Sign1), hex.
    pub token: String,
    pub issuer: String,
    pub installation: String,
    /// The CTL fingerprint it is for, hex.
    pub fingerprint: String,
    /// `iat`, seconds since the Unix epoch.
    pub issued_at: u64,
    /// `exp`, seconds since the Unix epoch.
    pub expires_at: u64,
    /// When it was first imported, milliseconds since the Unix epoch.
    pub imported_at_ms: u64,
    #[serde(default)]
    pub withdrawn: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn_at_ms: Option<u64>,
    #[serde(default)]
    pub progress: Progress,
}

impl TokenRecord {
    pub fn new(token: &[u8], claims: &RecoveryClaims, now_ms: u64) -> Self {
        TokenRecord {
            token_id: hex(&claims.token_id),
            token: hex(token),
            issuer: claims.issuer.clone(),
            installation: claims.installation.clone(),
            fingerprint: hex(&claims.ctl_fingerprint),
            issued_at: claims.issued_at,
            expires_at: claims.expires_at,
            imported_at_ms: now_ms,
            withdrawn: false,
            withdrawn_at_ms: None,
            progress: Progress::default(),
        }
    }

    /// Offered and written: neither withdrawn nor expired at `now_s`.
    pub fn active(&self, now_s: u64) -> bool {
        !self.withdrawn && now_s < self.expires_at
    }

    /// The same claims (a token re-signed by the vendor has other bytes, same claims).
    pub fn same_claims(&self, other: &TokenRecord) -> bool {
        (
            &self.token_id,
            &self.issuer,
            &self.installation,
            &self.fingerprint,
            self.issued_at,
            self.expires_at,
        ) == (
            &other.token_id,
            &other.issuer,
            &other.installation,
            &other.fingerprint,
            other.issued_at,
            other.expires_at,
        )
    }

    pub fn token_bytes(&self) -> Vec<u8> {
        unhex(&self.token).unwrap_or_default()
    }
}

/// How far a token got, in distinct devices (each device counts at most once per kind).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct Progress {
    /// Registered devices the token was written to.
    pub written: u64,
    /// Devices that answered it (a bootstrap offer or a write), accepting or refusing.
    pub answered: u64,
    pub accepted: u64,
    pub refused: u64,
    /// `refused` by the reason of each device's first refusal.
    pub refused_by: BTreeMap<String, u64>,
    /// Devices that report having recovered with it (Last Token ID).
    pub recovered: u64,
}

/// What a device did with a token, counted once per device and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    Written,
    Answered,
    Accepted,
    Refused,
    Recovered,
}

/// A device, as far as the plugin knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeviceRecord {
    pub endpoint: String,
    /// Registered now (false after deregistration, and for devices only seen bootstrapping).
    #[serde(default)]
    pub registered: bool,
    /// The fingerprint of its CTL (42769/0/0), hex; empty when it holds none or never told.
    #[serde(default)]
    pub fingerprint: String,
    /// Its installation ID (42769/0/1); empty when unknown.
    #[serde(default)]
    pub installation: String,
    /// 42769/0/2 as a name: `initial`, `locked-in`, `recovery`, `unknown`.
    #[serde(default = "unknown")]
    pub trust_state: String,
    /// 42769/0/6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctl_version: Option<i64>,
    /// 42769/0/9.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_outcome: Option<i64>,
    /// 42769/0/4.
    #[serde(default)]
    pub last_result: String,
    /// 42769/0/8, hex; empty when none.
    #[serde(default)]
    pub last_token_id: String,
    /// Where recovery stands: `seen`, `token-written`, `write-failed: ..`, `token-accepted`,
    /// `refused: <reason>`, `recovered`.
    pub state: String,
    /// The token `state` is about (hex), empty for `seen`.
    #[serde(default)]
    pub token_id: String,
    /// What was counted for this device, per token id.
    #[serde(default)]
    pub counted: BTreeMap<String, BTreeSet<Kind>>,
    /// The last read that failed or did not parse; empty otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_error: String,
    pub updated_at_ms: u64,
}

fn unknown() -> String {
    "unknown".into()
}

impl DeviceRecord {
    pub fn new(endpoint: &str, now_ms: u64) -> Self {
        DeviceRecord {
            endpoint: endpoint.into(),
            registered: false,
            fingerprint: String::new(),
            installation: String::new(),
            trust_state: unknown(),
            ctl_version: None,
            last_outcome: None,
            last_result: String::new(),
            last_token_id: String::new(),
            state: "seen".into(),
            token_id: String::new(),
            counted: BTreeMap::new(),
            last_error: String::new(),
            updated_at_ms: now_ms,
        }
    }

    /// Whether `kind` was counted for this device and token.
    pub fn has(&self, token_id: &str, kind: Kind) -> bool {
        self.counted
            .get(token_id)
            .is_some_and(|kinds| kinds.contains(&kind))
    }

    /// Marks `kind` for `token_id`; true the first time (then the token's counter goes up).
    pub fn count(&mut self, token_id: &str, kind: Kind) -> bool {
        self.counted
            .entry(token_id.to_owned())
            .or_default()
            .insert(kind)
    }

    /// The device answered this token, or recovered with it: writing it again is pointless.
    pub fn settled(&self, token_id: &str) -> bool {
        [Kind::Accepted, Kind::Refused, Kind::Recovered]
            .into_iter()
            .any(|kind| self.has(token_id, kind))
    }

    /// Done with this token: accepted or recovered.
    pub fn took(&self, token_id: &str) -> bool {
        self.has(token_id, Kind::Accepted) || self.has(token_id, Kind::Recovered)
    }

    /// The `index/..` key while the device is registered with a CTL.
    pub fn index_key(&self) -> Option<String> {
        (self.registered && !self.fingerprint.is_empty())
            .then(|| format!("{}{}", index_prefix(&self.fingerprint), self.endpoint))
    }

    /// Whether `filter` (the `devices` command's `state`) selects this device: its recovery
    /// state (`refused` selects every `refused: ..`), its trust state, `registered` or
    /// `deregistered`.
    pub fn matches_state(&self, filter: &str) -> bool {
        match filter {
            "registered" => self.registered,
            "deregistered" => !self.registered,
            "refused" => self.state.starts_with("refused"),
            "write-failed" => self.state.starts_with("write-failed"),
            _ => self.state == filter || self.trust_state == filter,
        }
    }
}

/// The name of a Trust State (42769/0/2) value.
pub(crate) fn trust_state_name(state: Option<i64>) -> &'static str {
    match state {
        Some(0) => "initial",
        Some(1) => "locked-in",
        Some(2) => "recovery",
        _ => "unknown",
    }
}

/// Device counts, kept up to date on every change of a device record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct Stats {
    /// Device records.
    pub devices: u64,
    pub registered: u64,
    /// Device records by their last known trust state.
    pub by_trust_state: BTreeMap<String, u64>,
    /// Bootstrap requests seen: sessions started / refused.
    pub bootstrap_accepted: u64,
    pub bootstrap_refused: u64,
}

impl Stats {
    /// Accounts for a device record going from `old` to `new`.
    pub fn replace(&mut self, old: Option<&DeviceRecord>, new: &DeviceRecord) {
        match old {
            None => self.devices += 1,
            Some(old) => {
                self.registered = self.registered.saturating_sub(u64::from(old.registered));
                if let Some(n) = self.by_trust_state.get_mut(&old.trust_state) {
                    *n = n.saturating_sub(1);
                }
            }
        }
        self.registered += u64::from(new.registered);
        *self
            .by_trust_state
            .entry(new.trust_state.clone())
            .or_default() += 1;
        self.by_trust_state.retain(|_, n| *n > 0);
    }
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        text.push(char::from(DIGITS[usize::from(b >> 4)]));
        text.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    text
}

/// Hex in either case; `None` when odd or not hex.
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks_exact(2)
        .map(|pair| {
            let high = char::from(pair[0]).to_digit(16)?;
            let low = char::from(pair[1]).to_digit(16)?;
            u8::try_from(high << 4 | low).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_is_once_per_kind() {
        let mut device = DeviceRecord::new("ep", 0);
        assert!(device.count("aa", Kind::Answered));
        assert!(!device.count("aa", Kind::Answered));
        assert!(device.count("bb", Kind::Answered));
        assert!(device.has("aa", Kind::Answered));
        assert!(!device.settled("aa"));
        assert!(device.count("aa", Kind::Refused));
        assert!(device.settled("aa"));
        assert!(!device.took("aa"));
    }

    #[test]
    fn stats_follow_records() {
        let mut stats = Stats::default();
        let mut device = DeviceRecord::new("ep", 0);
        stats.replace(None, &device);
        assert_eq!((stats.devices, stats.registered), (1, 0));
        assert_eq!(stats.by_trust_state["unknown"], 1);
        let mut next = device.clone();
        next.registered = true;
        next.trust_state = "locked-in".into();
        stats.replace(Some(&device), &next);
        assert_eq!((stats.devices, stats.registered), (1, 1));
        assert_eq!(
            stats.by_trust_state,
            BTreeMap::from([("locked-in".into(), 1)])
        );
        device = next.clone();
        next.registered = false;
        stats.replace(Some(&device), &next);
        assert_eq!(stats.registered, 0);
    }

    #[test]
    fn offer_names() {
        let id = "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf";
        assert_eq!(token_of_offer(&offer_name(id)), Some(id));
        assert_eq!(token_of_offer("recovery-xyz"), None);
        assert_eq!(token_of_offer("other"), None);
        assert!(offer_name(id).len() <= 64);
    }

    #[test]
    fn state_filters() {
        let mut device = DeviceRecord::new("ep", 0);
        device.state = "refused: expired".into();
        device.trust_state = "recovery".into();
        assert!(device.matches_state("refused"));
        assert!(device.matches_state("refused: expired"));
        assert!(device.matches_state("recovery"));
        assert!(device.matches_state("deregistered"));
        assert!(!device.matches_state("recovered"));
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(hex(&[0x01, 0xfe]), "01fe");
        assert_eq!(unhex("01FE"), Some(vec![0x01, 0xfe]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
    }
}
