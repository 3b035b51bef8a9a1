//! What an administrator asks the vendor service for, parsed into types that cannot hold an
//! invalid value: the CTL fingerprint, the installation ID, the token's lifetime, and the names
//! of administrators and of the issuer. No I/O.
//!
//! The HTTP API and the CLI both start from text (JSON fields, flags); both go through
//! [`SignInput::parse`], so they refuse the same things with the same messages.

pub use crate::hex::{decode as unhex, encode as hex};
use serde::Deserialize;
use steward_pki::recovery::{MAX_LIFETIME, MAX_NAME_LEN};

/// A token lives a week unless asked otherwise: long enough to reach every device of an
/// installation through its normal provisioning cycle, short enough that a token that leaks
/// after the recovery is soon useless.
pub const DEFAULT_LIFETIME: u64 = 7 * 24 * 60 * 60;

/// The longest administrator name, in bytes.
pub const MAX_ADMIN_NAME_LEN: usize = 64;

/// Why an input was refused. The messages are shown to the administrator as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("fingerprint must be 64 hex digits (the SHA-256 of the CTL the devices hold), got {0}")]
    Fingerprint(String),
    #[error("installation ID must be 1 to {MAX_NAME_LEN} bytes without control characters: {0}")]
    Installation(String),
    #[error("lifetime must be 1 to {MAX_LIFETIME} seconds (30 days), got {0}")]
    Lifetime(u64),
    #[error(
        "administrator name must be 1 to {MAX_ADMIN_NAME_LEN} bytes of letters, digits and . _ - @ \
         (not starting with . or -): {0:?}"
    )]
    AdminName(String),
    #[error("issuer must be 1 to {MAX_NAME_LEN} bytes without control characters: {0}")]
    Issuer(String),
    /// The body of `POST /api/vendor/recovery-tokens` is not the JSON object it should be.
    #[error(
        "expected {{\"fingerprint\": \"<64 hex>\", \"installation\": \"<id>\", \
         \"lifetimeSeconds\": <optional>}}: {0}"
    )]
    Body(String),
}

/// The SHA-256 fingerprint of a CTL (`steward_pki::ctl::Ctl::fingerprint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// 64 hex digits, either case; nothing else (no colons, no `0x`, no spaces).
    pub fn parse(text: &str) -> Result<Fingerprint, InputError> {
        let refused = || {
            InputError::Fingerprint(if text.len() == 64 {
                "a character that is not a hex digit".to_owned()
            } else {
                format!("{} characters", text.chars().count())
            })
        };
        if text.len() != 64 {
            return Err(refused());
        }
        let bytes = unhex(text).ok_or_else(refused)?;
        bytes.try_into().map(Fingerprint).map_err(|_| refused())
    }

    pub fn bytes(&self) -> [u8; 32] {
        self.0
    }

    /// Lower-case hex, as the API and the audit show it.
    pub fn hex(&self) -> String {
        hex(&self.0)
    }
}

/// The installation a token is scoped to: 1..=[`MAX_NAME_LEN`] bytes of UTF-8 without control
/// characters. Compared byte for byte by devices, so it is kept exactly as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installation(String);

impl Installation {
    pub fn parse(text: &str) -> Result<Installation, InputError> {
        check_name(text)
            .map(|()| Installation(text.to_owned()))
            .map_err(InputError::Installation)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The issuer (`iss`) the service writes into every token: the vendor's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer(String);

impl Issuer {
    pub fn parse(text: &str) -> Result<Issuer, InputError> {
        check_name(text)
            .map(|()| Issuer(text.to_owned()))
            .map_err(InputError::Issuer)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How long a token lives (`exp - iat`), 1..=[`MAX_LIFETIME`] seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime(u64);

impl Lifetime {
    /// `None` is the default, [`DEFAULT_LIFETIME`].
    pub fn parse(seconds: Option<u64>) -> Result<Lifetime, InputError> {
        match seconds.unwrap_or(DEFAULT_LIFETIME) {
            s @ 1..=MAX_LIFETIME => Ok(Lifetime(s)),
            s => Err(InputError::Lifetime(s)),
        }
    }

    pub fn seconds(&self) -> u64 {
        self.0
    }
}

/// An administrator's name: what the audit records as "who". Letters, digits and `. _ - @`, so
/// that it reads unambiguously in logs and audit listings (no spaces, no control characters).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AdminName(String);

impl AdminName {
    pub fn parse(text: &str) -> Result<AdminName, InputError> {
        let valid = !text.is_empty()
            && text.len() <= MAX_ADMIN_NAME_LEN
            && !text.starts_with(['.', '-'])
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
        if valid {
            Ok(AdminName(text.to_owned()))
        } else {
            Err(InputError::AdminName(for_display(text)))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for AdminName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A signing request as the administrator typed it (JSON fields or CLI flags), before parsing.
/// Kept as given so that a refusal can be audited with what was asked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SignInput {
    pub fingerprint: String,
    pub installation: String,
    #[serde(default)]
    pub lifetime_seconds: Option<u64>,
}

/// A signing request that can be signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignRequest {
    pub fingerprint: Fingerprint,
    pub installation: Installation,
    pub lifetime: Lifetime,
}

impl SignInput {
    /// The JSON body of `POST /api/vendor/recovery-tokens`. Unknown fields are refused: a
    /// misspelt `lifetimeSeconds` must not silently become the default lifetime.
    pub fn from_json(body: &[u8]) -> Result<SignInput, InputError> {
        if body.is_empty() {
            return Err(InputError::Body("the body is empty".into()));
        }
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| InputError::Body(e.to_string()))?;
        // serde would also take the fields as an array in declaration order; only the object
        // form is the API.
        if !value.is_object() {
            return Err(InputError::Body("the body is not a JSON object".into()));
        }
        serde_json::from_value(value).map_err(|e| InputError::Body(e.to_string()))
    }

    /// Checks every field; the first wrong one is the error.
    pub fn parse(&self) -> Result<SignRequest, InputError> {
        Ok(SignRequest {
            fingerprint: Fingerprint::parse(&self.fingerprint)?,
            installation: Installation::parse(&self.installation)?,
            lifetime: Lifetime::parse(self.lifetime_seconds)?,
        })
    }
}

/// Text that came from outside, made safe for an error message or an audit record: at most
/// [`MAX_NAME_LEN`] characters, control characters replaced (no log injection through a
/// newline), an ellipsis when cut.
pub fn for_display(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_NAME_LEN)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if text.chars().nth(MAX_NAME_LEN).is_some() {
        out.push('…');
    }
    out
}

/// The rule for installation IDs and the issuer, which the token's claims share; the error is
/// what to show of the refused text.
fn check_name(text: &str) -> Result<(), String> {
    if text.is_empty() {
        Err("it is empty".into())
    } else if text.len() > MAX_NAME_LEN {
        Err(format!("it is {} bytes", text.len()))
    } else if text.chars().any(char::is_control) {
        Err(format!("{:?} has control characters", for_display(text)))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const FP: &str = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";

    #[test]
    fn fingerprints() {
        let fp = Fingerprint::parse(FP).unwrap();
        assert_eq!(fp.bytes()[0], 0);
        assert_eq!(fp.bytes()[31], 0xff);
        assert_eq!(fp.hex(), FP.to_ascii_lowercase());
        for bad in [
            "",
            &FP[..62],
            &format!("{FP}00"),
            &FP.replace('0', "g"),
            &format!("+{}", &FP[1..]),
            &format!(" {}", &FP[1..]),
        ] {
            assert!(
                matches!(Fingerprint::parse(bad), Err(InputError::Fingerprint(_))),
                "{bad:?}"
            );
        }
        // 64 bytes but not 64 characters: multi-byte UTF-8 is not hex.
        let tricky = format!("é{}", &FP[2..]);
        assert_eq!(tricky.len(), 64);
        assert!(Fingerprint::parse(&tricky).is_err());
    }

    #[test]
    fn installations() {
        assert!(Installation::parse("site-1").is_ok());
        assert!(Installation::parse("Zürich HQ").is_ok());
        assert!(Installation::parse(&"i".repeat(MAX_NAME_LEN)).is_ok());
        for bad in ["", "a\nb", "a\u{0}", &"i".repeat(MAX_NAME_LEN + 1)] {
            assert!(
                matches!(Installation::parse(bad), Err(InputError::Installation(_))),
                "{bad:?}"
            );
        }
        // 128 bytes, fewer characters: the limit is in bytes, as in the token.
        assert!(Installation::parse(&"é".repeat(65)).is_err());
    }

    #[test]
    fn lifetimes() {
        assert_eq!(Lifetime::parse(None).unwrap().seconds(), DEFAULT_LIFETIME);
        assert_eq!(Lifetime::parse(Some(1)).unwrap().seconds(), 1);
        assert_eq!(
            Lifetime::parse(Some(MAX_LIFETIME)).unwrap().seconds(),
            MAX_LIFETIME
        );
        assert_eq!(Lifetime::parse(Some(0)), Err(InputError::Lifetime(0)));
        assert_eq!(
            Lifetime::parse(Some(MAX_LIFETIME + 1)),
            Err(InputError::Lifetime(MAX_LIFETIME + 1))
        );
    }

    #[test]
    fn admin_names() {
        for good in ["alice", "bob.smith", "ops_team-2", "carol@example.com"] {
            assert_eq!(AdminName::parse(good).unwrap().as_str(), good);
        }
        for bad in ["", ".hidden", "-flag", "a b", "a/b", "a\nb", "é"] {
            assert!(AdminName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(AdminName::parse(&"a".repeat(MAX_ADMIN_NAME_LEN)).is_ok());
        assert!(AdminName::parse(&"a".repeat(MAX_ADMIN_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn json_bodies() {
        let input = SignInput::from_json(
            format!(r#"{{"fingerprint":"{FP}","installation":"site-1","lifetimeSeconds":60}}"#)
                .as_bytes(),
        )
        .unwrap();
        let request = input.parse().unwrap();
        assert_eq!(request.installation.as_str(), "site-1");
        assert_eq!(request.lifetime.seconds(), 60);
        let input = SignInput::from_json(
            format!(r#"{{"fingerprint":"{FP}","installation":"site-1"}}"#).as_bytes(),
        )
        .unwrap();
        assert_eq!(input.parse().unwrap().lifetime.seconds(), DEFAULT_LIFETIME);
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"fingerprint":"00"}"#,
            &format!(r#"{{"fingerprint":"{FP}","installation":"x","lifetime":60}}"#),
            &format!(r#"{{"fingerprint":"{FP}","installation":"x","lifetimeSeconds":-1}}"#),
            &format!(r#"{{"fingerprint":"{FP}","installation":"x","lifetimeSeconds":1.5}}"#),
            &format!(r#"{{"fingerprint":"{FP}","installation":7}}"#),
            &format!(r#"["{FP}","site-1"]"#),
        ] {
            assert!(
                matches!(
                    SignInput::from_json(bad.as_bytes()),
                    Err(InputError::Body(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn display_is_bounded_and_has_no_control_characters() {
        assert_eq!(for_display("a\nb"), "a\u{fffd}b");
        let long = for_display(&"x".repeat(1000));
        assert_eq!(long.chars().count(), MAX_NAME_LEN + 1);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(unhex("00aB"), Some(vec![0, 0xab]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("+1"), None);
        assert_eq!(hex(&[0, 0xab]), "00ab");
    }
}
