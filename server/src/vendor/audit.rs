//! The audit record of a signing: who asked, when, over which channel and from where, for
//! which CTL fingerprint and installation, and what came of it (the token's id, times and size,
//! or why it was refused). One record per request, issued or refused; records are never
//! changed or removed by the service.

use minicbor::{Decode, Encode};
use serde::Serialize;

/// How the request reached the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize)]
#[cbor(index_only)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// `POST /api/vendor/recovery-tokens`.
    #[n(0)]
    Api,
    /// `steward vendor sign`, on the service's machine.
    #[n(1)]
    Cli,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Api => "api",
            Channel::Cli => "cli",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize)]
#[cbor(index_only)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    #[n(0)]
    Issued,
    #[n(1)]
    Refused,
}

/// Where a request came from: the channel, and the peer's address for the API (as the TCP
/// connection shows it: a reverse proxy's address if there is one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub channel: Channel,
    pub remote: Option<std::net::SocketAddr>,
}

impl Origin {
    pub fn cli() -> Origin {
        Origin {
            channel: Channel::Cli,
            remote: None,
        }
    }

    pub fn api(remote: Option<std::net::SocketAddr>) -> Origin {
        Origin {
            channel: Channel::Api,
            remote,
        }
    }
}

/// One audit record, as stored (CBOR, integer keys: a field added later as an `Option` still
/// reads old records) and as `GET /api/vendor/audit` shows it (JSON, camelCase). Times are
/// seconds since the Unix epoch, as in the token.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// 1, 2, 3, ... in the order the requests were decided; a gap means a record was lost.
    #[n(0)]
    pub seq: u64,
    #[n(1)]
    pub time: u64,
    /// The administrator: authenticated by token (API) or named on the command line (CLI).
    #[n(2)]
    pub admin: String,
    #[n(3)]
    pub channel: Channel,
    #[n(4)]
    pub remote: Option<String>,
    /// Lower-case hex when issued; as presented (bounded, see `request::for_display`) when
    /// refused.
    #[n(5)]
    pub fingerprint: String,
    #[n(6)]
    pub installation: String,
    #[n(7)]
    pub outcome: Outcome,
    /// The token's `cti`, hex; issued tokens only.
    #[n(8)]
    pub token_id: Option<String>,
    #[n(9)]
    pub issued_at: Option<u64>,
    #[n(10)]
    pub expires_at: Option<u64>,
    /// The token's size in bytes.
    #[n(11)]
    pub size: Option<u64>,
    /// Why a request was refused.
    #[n(12)]
    pub reason: Option<String>,
}

impl AuditRecord {
    /// One line for `steward vendor audit`.
    pub fn line(&self) -> String {
        let when = time(self.time);
        let from = self
            .remote
            .as_deref()
            .map_or_else(String::new, |r| format!(" from {r}"));
        match self.outcome {
            Outcome::Issued => format!(
                "#{} {when} {} via {}{from}: issued cti={} fingerprint={} installation={:?} \
                 iat={} exp={} size={}",
                self.seq,
                self.admin,
                self.channel.as_str(),
                self.token_id.as_deref().unwrap_or("?"),
                self.fingerprint,
                self.installation,
                self.issued_at.unwrap_or(0),
                self.expires_at.unwrap_or(0),
                self.size.unwrap_or(0),
            ),
            Outcome::Refused => format!(
                "#{} {when} {} via {}{from}: refused fingerprint={:?} installation={:?}: {}",
                self.seq,
                self.admin,
                self.channel.as_str(),
                self.fingerprint,
                self.installation,
                self.reason.as_deref().unwrap_or("?"),
            ),
        }
    }
}

/// A Unix time as an ASN.1-style UTC string ("Jan  2 03:04:05 2026 GMT"), the number if it
/// cannot be shown so.
pub fn time(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|t| openssl::asn1::Asn1Time::from_unix(t).ok())
        .map_or_else(|| unix.to_string(), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn issued() -> AuditRecord {
        AuditRecord {
            seq: 7,
            time: 1_767_225_600,
            admin: "alice".into(),
            channel: Channel::Api,
            remote: Some("127.0.0.1:5000".into()),
            fingerprint: "00".repeat(32),
            installation: "site-1".into(),
            outcome: Outcome::Issued,
            token_id: Some("11".repeat(16)),
            issued_at: Some(1_767_225_600),
            expires_at: Some(1_767_225_660),
            size: Some(208),
            reason: None,
        }
    }

    #[test]
    fn cbor_round_trip() {
        let record = issued();
        let bytes = minicbor::to_vec(&record).unwrap();
        assert_eq!(minicbor::decode::<AuditRecord>(&bytes).unwrap(), record);
    }

    #[test]
    fn json_shape() {
        let json = serde_json::to_value(issued()).unwrap();
        assert_eq!(json["channel"], "api");
        assert_eq!(json["outcome"], "issued");
        assert_eq!(json["tokenId"], "11".repeat(16));
        assert_eq!(json["issuedAt"], 1_767_225_600u64);
        assert!(json["reason"].is_null());
    }

    #[test]
    fn lines() {
        let line = issued().line();
        assert!(
            line.starts_with(
                "#7 Jan  1 00:00:00 2026 GMT alice via api from 127.0.0.1:5000: issued"
            )
        );
        let mut refused = issued();
        refused.outcome = Outcome::Refused;
        refused.reason = Some("bad".into());
        assert!(refused.line().ends_with(": bad"), "{}", refused.line());
    }
}
