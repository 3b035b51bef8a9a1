//! Certificate profiles: what a certificate issued under a name is for and how long it lives.
//!
//! Three profiles are built in (and can be overridden from configuration by name):
//!
//! | name | lifetime | extended key usage | why |
//! |---|---|---|---|
//! | `device` | 365 days | clientAuth | operational LwM2M client certificates (EST /sen, /sren, /skg) |
//! | `server` | 365 days | serverAuth | the server's own DTLS certificates |
//! | `validation` | 30 days | OCSPSigning, with id-pkix-ocsp-nocheck | the delegated OCSP responder |
//!
//! The validation profile follows seed 003: the credential of the service that tells devices a
//! server certificate was revoked is as powerful as the root (it can cut off every device), so it
//! lives 20–30 days instead of years. Because it is short-lived it carries id-pkix-ocsp-nocheck
//! (RFC 6960 §4.2.2.2.1): clients need not (and cannot, without a loop) check its own status.
//!
//! Profiles deserialize from configuration (TOML `[[pki.profile]]` tables or JSON), e.g.
//!
//! ```toml
//! [[pki.profile]]
//! name = "device"
//! lifetime_days = 90
//! extended_key_usage = ["client_auth"]
//! ocsp_url = "http://ocsp.example.com"
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Name of the built-in device profile.
pub const DEVICE: &str = "device";
/// Name of the built-in server profile.
pub const SERVER: &str = "server";
/// Name of the built-in validation (OCSP responder) profile.
pub const VALIDATION: &str = "validation";

/// Longest lifetime a profile may ask for (20 years): longer is almost certainly a typo.
pub const MAX_LIFETIME_DAYS: u32 = 7300;
/// Longest backdating a profile may ask for.
pub const MAX_BACKDATE_SECS: u32 = 86_400;

const DEFAULT_BACKDATE_SECS: u32 = 300;

/// A named certificate profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    /// Days from issuance to notAfter (clamped to the issuing CA's own notAfter).
    pub lifetime_days: u32,
    /// Extended key usages to put in the certificate; never empty, so that no issued certificate
    /// is good for every purpose.
    pub extended_key_usage: Vec<KeyPurpose>,
    /// OCSP responder URL for the Authority Information Access extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocsp_url: Option<String>,
    /// CRL distribution point URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_url: Option<String>,
    /// Add id-pkix-ocsp-nocheck (only meaningful with [`KeyPurpose::OcspSigning`]).
    #[serde(default)]
    pub ocsp_nocheck: bool,
    /// notBefore is set this many seconds before issuance, so that a device whose clock is a
    /// little behind does not reject a certificate it just received.
    #[serde(default = "default_backdate")]
    pub backdate_secs: u32,
}

fn default_backdate() -> u32 {
    DEFAULT_BACKDATE_SECS
}

/// An extended key usage purpose (RFC 5280 §4.2.1.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyPurpose {
    /// id-kp-serverAuth 1.3.6.1.5.5.7.3.1
    ServerAuth,
    /// id-kp-clientAuth 1.3.6.1.5.5.7.3.2
    ClientAuth,
    /// id-kp-OCSPSigning 1.3.6.1.5.5.7.3.9
    OcspSigning,
    /// id-kp-cmcRA 1.3.6.1.5.5.7.3.28 (an EST-coaps registrar, RFC 9148 §5)
    CmcRa,
}

impl KeyPurpose {
    /// The dotted OID.
    pub fn oid(self) -> &'static str {
        match self {
            KeyPurpose::ServerAuth => "1.3.6.1.5.5.7.3.1",
            KeyPurpose::ClientAuth => "1.3.6.1.5.5.7.3.2",
            KeyPurpose::OcspSigning => "1.3.6.1.5.5.7.3.9",
            KeyPurpose::CmcRa => "1.3.6.1.5.5.7.3.28",
        }
    }

    /// Whether the certificate is used to set up (D)TLS sessions, where an EC key may also be
    /// used for key agreement (ECDH).
    pub fn is_tls(self) -> bool {
        matches!(self, KeyPurpose::ServerAuth | KeyPurpose::ClientAuth)
    }
}

/// Why a profile is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("profile name {0:?} must be 1-64 characters of a-z, 0-9, '-' or '_'")]
    BadName(String),
    #[error("profile {name}: lifetime_days must be 1..={MAX_LIFETIME_DAYS}, not {days}")]
    BadLifetime { name: String, days: u32 },
    #[error("profile {name}: backdate_secs must be at most {MAX_BACKDATE_SECS}")]
    BadBackdate { name: String },
    #[error("profile {name}: extended_key_usage must not be empty")]
    NoKeyPurpose { name: String },
    #[error("profile {name}: {field} {url:?} is not an absolute URL of printable ASCII")]
    BadUrl {
        name: String,
        field: &'static str,
        url: String,
    },
    #[error("profile {0:?} is defined twice")]
    Duplicate(String),
}

impl Profile {
    /// The built-in `device` profile: 365 days, clientAuth.
    pub fn device() -> Profile {
        Profile::builtin(DEVICE, 365, vec![KeyPurpose::ClientAuth], false)
    }

    /// The built-in `server` profile: 365 days, serverAuth.
    pub fn server() -> Profile {
        Profile::builtin(SERVER, 365, vec![KeyPurpose::ServerAuth], false)
    }

    /// The built-in `validation` profile: 30 days, OCSPSigning + ocsp-nocheck.
    pub fn validation() -> Profile {
        Profile::builtin(VALIDATION, 30, vec![KeyPurpose::OcspSigning], true)
    }

    fn builtin(name: &str, days: u32, eku: Vec<KeyPurpose>, nocheck: bool) -> Profile {
        Profile {
            name: name.to_owned(),
            lifetime_days: days,
            extended_key_usage: eku,
            ocsp_url: None,
            crl_url: None,
            ocsp_nocheck: nocheck,
            backdate_secs: DEFAULT_BACKDATE_SECS,
        }
    }

    /// Checks what serde cannot: ranges, names and URLs. [`Profiles`] calls it on every profile,
    /// and the CA calls it before issuing.
    pub fn validate(&self) -> Result<(), ProfileError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(ProfileError::BadName(self.name.clone()));
        }
        if self.lifetime_days == 0 || self.lifetime_days > MAX_LIFETIME_DAYS {
            return Err(ProfileError::BadLifetime {
                name: self.name.clone(),
                days: self.lifetime_days,
            });
        }
        if self.backdate_secs > MAX_BACKDATE_SECS {
            return Err(ProfileError::BadBackdate {
                name: self.name.clone(),
            });
        }
        if self.extended_key_usage.is_empty() {
            return Err(ProfileError::NoKeyPurpose {
                name: self.name.clone(),
            });
        }
        for (field, url) in [("ocsp_url", &self.ocsp_url), ("crl_url", &self.crl_url)] {
            if let Some(url) = url
                && !is_absolute_url(url)
            {
                return Err(ProfileError::BadUrl {
                    name: self.name.clone(),
                    field,
                    url: url.clone(),
                });
            }
        }
        Ok(())
    }

    /// Lifetime in seconds.
    pub fn lifetime_secs(&self) -> u64 {
        u64::from(self.lifetime_days) * 86_400
    }

    /// Whether any purpose is a (D)TLS one.
    pub fn is_tls(&self) -> bool {
        self.extended_key_usage.iter().any(|p| p.is_tls())
    }
}

// The URL ends up in an IA5String; anything beyond "scheme://rest" in printable ASCII without
// spaces is the operator's business.
fn is_absolute_url(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
        && !rest.is_empty()
        && url.bytes().all(|b| b.is_ascii_graphic())
}

/// A set of profiles by name; always contains the three built-ins unless they were overridden.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Profile>", into = "Vec<Profile>")]
pub struct Profiles {
    by_name: BTreeMap<String, Profile>,
}

impl Default for Profiles {
    fn default() -> Self {
        let by_name = [Profile::device(), Profile::server(), Profile::validation()]
            .into_iter()
            .map(|p| (p.name.clone(), p))
            .collect();
        Profiles { by_name }
    }
}

impl Profiles {
    /// The built-ins, with `overrides` replacing them by name or adding new ones. Every profile is
    /// validated, and a name given twice in `overrides` is an error.
    pub fn with_overrides(overrides: Vec<Profile>) -> Result<Profiles, ProfileError> {
        let mut profiles = Profiles::default();
        let mut seen = std::collections::BTreeSet::new();
        for p in overrides {
            p.validate()?;
            if !seen.insert(p.name.clone()) {
                return Err(ProfileError::Duplicate(p.name));
            }
            profiles.by_name.insert(p.name.clone(), p);
        }
        Ok(profiles)
    }

    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.by_name.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Profile> {
        self.by_name.values()
    }
}

impl TryFrom<Vec<Profile>> for Profiles {
    type Error = ProfileError;

    fn try_from(list: Vec<Profile>) -> Result<Self, Self::Error> {
        Profiles::with_overrides(list)
    }
}

impl From<Profiles> for Vec<Profile> {
    fn from(p: Profiles) -> Self {
        p.by_name.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn builtins_are_valid_and_match_the_seed() {
        for p in Profiles::default().iter() {
            p.validate().unwrap();
        }
        let v = Profile::validation();
        assert!((20..=30).contains(&v.lifetime_days));
        assert_eq!(v.extended_key_usage, vec![KeyPurpose::OcspSigning]);
        assert!(v.ocsp_nocheck);
        assert!(!v.is_tls());
        assert!(Profile::device().is_tls());
    }

    #[test]
    fn deserializes_with_defaults_and_overrides_builtins() {
        let json = r#"[{"name": "device", "lifetime_days": 90,
            "extended_key_usage": ["client_auth"], "ocsp_url": "http://ocsp.example.com/"}]"#;
        let profiles: Profiles = serde_json::from_str(json).unwrap();
        let device = profiles.get(DEVICE).unwrap();
        assert_eq!(device.lifetime_days, 90);
        assert_eq!(device.backdate_secs, DEFAULT_BACKDATE_SECS);
        assert_eq!(device.ocsp_url.as_deref(), Some("http://ocsp.example.com/"));
        // The other built-ins are still there.
        assert_eq!(profiles.get(SERVER), Some(&Profile::server()));
    }

    #[test]
    fn rejects_bad_profiles() {
        let bad = |json: &str| {
            serde_json::from_str::<Profiles>(json)
                .unwrap_err()
                .to_string()
        };
        assert!(
            bad(r#"[{"name":"x","lifetime_days":0,"extended_key_usage":["client_auth"]}]"#)
                .contains("lifetime_days")
        );
        assert!(
            bad(r#"[{"name":"x","lifetime_days":1,"extended_key_usage":[]}]"#)
                .contains("extended_key_usage")
        );
        assert!(bad(
            r#"[{"name":"x","lifetime_days":1,"extended_key_usage":["client_auth"],"crl_url":"a b"}]"#
        )
        .contains("crl_url"));
        assert!(
            bad(r#"[{"name":"X!","lifetime_days":1,"extended_key_usage":["client_auth"]}]"#)
                .contains("profile name")
        );
        assert!(
            bad(
                r#"[{"name":"x","lifetime_days":1,"extended_key_usage":["client_auth"],"typo":1}]"#
            )
            .contains("unknown field")
        );
        let dup = r#"[{"name":"x","lifetime_days":1,"extended_key_usage":["client_auth"]},
                      {"name":"x","lifetime_days":2,"extended_key_usage":["client_auth"]}]"#;
        assert!(bad(dup).contains("twice"));
    }
}
