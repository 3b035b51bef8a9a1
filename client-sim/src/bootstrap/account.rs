//! The accounts a device holds in its Security (/0) and Server (/1) objects, read out of the
//! object tree into types that cannot hold an unusable account: a bootstrap-server account, and
//! LwM2M server accounts (a /0 instance with Bootstrap-Server = false whose Short Server ID
//! matches a /1 instance).
//!
//! [`Security`] is what the transport needs from `/0/x/2..5` (Transport §5.2.7, standards.md
//! §1.4 and §1.10). Security Mode 4 (Certificate mode with EST) needs an enrolment first: the
//! EST client is [`crate::est`] (a network exchange, turned on with
//! [`crate::SimDevice::set_est`]); without it the synchronous [`Enrolment`] hook is asked,
//! whose default [`NoEnrolment`] answers [`EnrolmentError::NotAvailable`].

use std::time::Duration;

use steward_objects::{Instance, Resource, Value};

/// Security Mode (`/0/x/2`) values.
pub mod mode {
    pub const PSK: i64 = 0;
    pub const RPK: i64 = 1;
    pub const CERTIFICATE: i64 = 2;
    pub const NO_SEC: i64 = 3;
    pub const CERTIFICATE_WITH_EST: i64 = 4;
}

/// How the device authenticates to a server, from `/0/x/2` (mode), `/0/x/3` (public key or
/// identity), `/0/x/4` (server public key) and `/0/x/5` (secret key).
#[derive(Clone, PartialEq, Eq)]
pub enum Security {
    /// Mode 3: plain CoAP (lower-layer security only).
    NoSec,
    /// Mode 0: DTLS with a pre-shared key.
    Psk { identity: Vec<u8>, key: Vec<u8> },
    /// Mode 2: DTLS with X.509. All DER: the client certificate (`/0/x/3`), the server
    /// certificate or trust anchor (`/0/x/4`), the PKCS#8 private key (`/0/x/5`).
    Certificate {
        certificate: Vec<u8>,
        server_certificate: Vec<u8>,
        private_key: Vec<u8>,
    },
    /// Mode 4: enrol over EST with the bootstrap server first (`/0/x/4` holds the server
    /// certificate), then behave as mode 2. See [`Enrolment`].
    CertificateWithEst { server_certificate: Vec<u8> },
    /// Mode 1 (raw public keys) and anything else: the DTLS stack does not do it.
    Unsupported(i64),
}

// Secrets stay out of logs and panic messages.
impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Security::NoSec => f.write_str("NoSec"),
            Security::Psk { identity, .. } => f
                .debug_struct("Psk")
                .field("identity", &String::from_utf8_lossy(identity))
                .finish_non_exhaustive(),
            Security::Certificate { certificate, .. } => f
                .debug_struct("Certificate")
                .field("certificate_len", &certificate.len())
                .finish_non_exhaustive(),
            Security::CertificateWithEst { .. } => f.write_str("CertificateWithEst"),
            Security::Unsupported(m) => write!(f, "Unsupported({m})"),
        }
    }
}

impl Security {
    /// The `/0/x/2` value.
    pub fn mode(&self) -> i64 {
        match self {
            Security::Psk { .. } => mode::PSK,
            Security::Certificate { .. } => mode::CERTIFICATE,
            Security::NoSec => mode::NO_SEC,
            Security::CertificateWithEst { .. } => mode::CERTIFICATE_WITH_EST,
            Security::Unsupported(m) => *m,
        }
    }

    /// Resources 2..=5 of a Security instance that holds these credentials.
    pub fn resources(&self) -> Vec<(u16, Resource)> {
        let opaque = |b: &[u8]| Resource::Single(Value::Opaque(b.to_vec()));
        let (identity, server, secret): (&[u8], &[u8], &[u8]) = match self {
            Security::NoSec | Security::Unsupported(_) => (&[], &[], &[]),
            Security::Psk { identity, key } => (identity, &[], key),
            Security::Certificate {
                certificate,
                server_certificate,
                private_key,
            } => (certificate, server_certificate, private_key),
            Security::CertificateWithEst { server_certificate } => (&[], server_certificate, &[]),
        };
        vec![
            (2, Resource::Single(Value::Integer(self.mode()))),
            (3, opaque(identity)),
            (4, opaque(server)),
            (5, opaque(secret)),
        ]
    }

    fn from_instance(inst: &Instance) -> Security {
        let bytes = |rid| match inst.resources.get(&rid) {
            Some(Resource::Single(Value::Opaque(b))) => b.clone(),
            Some(Resource::Single(Value::String(s))) => s.clone().into_bytes(),
            _ => Vec::new(),
        };
        match int(inst, 2).unwrap_or(mode::NO_SEC) {
            mode::NO_SEC => Security::NoSec,
            mode::PSK => Security::Psk {
                identity: bytes(3),
                key: bytes(5),
            },
            mode::CERTIFICATE => Security::Certificate {
                certificate: bytes(3),
                server_certificate: bytes(4),
                private_key: bytes(5),
            },
            mode::CERTIFICATE_WITH_EST => Security::CertificateWithEst {
                server_certificate: bytes(4),
            },
            other => Security::Unsupported(other),
        }
    }
}

/// The bootstrap-server account: the /0 instance with Bootstrap-Server (`/0/x/1`) = true.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapAccount {
    /// Its /0 instance ID (never deleted by Bootstrap-Delete).
    pub instance: u16,
    pub uri: String,
    pub security: Security,
    /// Client Hold Off Time (`/0/x/11`): wait this long before a client-initiated bootstrap.
    pub hold_off: Duration,
}

/// An LwM2M server account: a /0 instance (not the bootstrap one) and the /1 instance with the
/// same Short Server ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAccount {
    pub ssid: u16,
    pub security_instance: u16,
    pub server_instance: u16,
    /// `/0/x/0`, e.g. `coaps://lwm2m.example.com:5684`.
    pub uri: String,
    pub security: Security,
    /// `/1/x/1`, seconds.
    pub lifetime: Option<u32>,
    /// `/1/x/7`.
    pub binding: Option<String>,
}

/// Bootstrap and server accounts of a /0 and /1 object (instance ID → instance).
pub(crate) fn bootstrap_account<'a>(
    security: impl IntoIterator<Item = (&'a u16, &'a Instance)>,
) -> Option<BootstrapAccount> {
    security.into_iter().find_map(|(iid, inst)| {
        if !is_bootstrap(inst) {
            return None;
        }
        Some(BootstrapAccount {
            instance: *iid,
            uri: string(inst, 0)?,
            security: Security::from_instance(inst),
            hold_off: Duration::from_secs(
                int(inst, 11)
                    .and_then(|s| u64::try_from(s).ok())
                    .unwrap_or(0),
            ),
        })
    })
}

/// The usable LwM2M server accounts, by /0 instance ID.
pub(crate) fn server_accounts<'a>(
    security: impl IntoIterator<Item = (&'a u16, &'a Instance)>,
    servers: impl IntoIterator<Item = (&'a u16, &'a Instance)> + Clone,
) -> Vec<ServerAccount> {
    security
        .into_iter()
        .filter(|(_, inst)| !is_bootstrap(inst))
        .filter_map(|(siid, sec)| {
            let ssid = int(sec, 10).and_then(|s| u16::try_from(s).ok())?;
            // 0 and 65535 are not Short Server IDs (Security object, resource 10).
            if ssid == 0 || ssid == u16::MAX {
                return None;
            }
            let uri = string(sec, 0).filter(|u| !u.is_empty())?;
            let (server_instance, server) = servers
                .clone()
                .into_iter()
                .find(|(_, s)| int(s, 0) == Some(i64::from(ssid)))?;
            Some(ServerAccount {
                ssid,
                security_instance: *siid,
                server_instance: *server_instance,
                uri,
                security: Security::from_instance(sec),
                lifetime: int(server, 1).and_then(|l| u32::try_from(l).ok()),
                binding: string(server, 7),
            })
        })
        .collect()
}

pub(crate) fn is_bootstrap(inst: &Instance) -> bool {
    matches!(
        inst.resources.get(&1),
        Some(Resource::Single(Value::Boolean(true)))
    )
}

pub(crate) fn int(inst: &Instance, rid: u16) -> Option<i64> {
    match inst.resources.get(&rid)? {
        Resource::Single(Value::Integer(v)) => Some(*v),
        Resource::Single(Value::UnsignedInteger(v)) => i64::try_from(*v).ok(),
        _ => None,
    }
}

fn string(inst: &Instance, rid: u16) -> Option<String> {
    match inst.resources.get(&rid)? {
        Resource::Single(Value::String(s)) => Some(s.clone()),
        _ => None,
    }
}

/// A server URI (`/0/x/0`): scheme, host and port (default 5683 for `coap`, 5684 for `coaps`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUri {
    pub secure: bool,
    pub host: String,
    pub port: u16,
}

/// Why a server URI cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error("{0:?} is not a coap:// or coaps:// URI")]
    Scheme(String),
    #[error("{0:?} has no usable host and port")]
    Authority(String),
}

impl ServerUri {
    pub fn parse(uri: &str) -> Result<ServerUri, UriError> {
        let (scheme, rest) = uri
            .split_once("://")
            .ok_or_else(|| UriError::Scheme(uri.to_owned()))?;
        let secure = match scheme.to_ascii_lowercase().as_str() {
            "coap" => false,
            "coaps" => true,
            _ => return Err(UriError::Scheme(uri.to_owned())),
        };
        // A path after the authority means nothing for an LwM2M server URI: ignore it.
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        let bad = || UriError::Authority(uri.to_owned());
        if authority.contains('@') {
            return Err(bad());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(bad)?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad());
        }
        let port = match port {
            None if secure => 5684,
            None => 5683,
            Some(p) => p.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?,
        };
        Ok(ServerUri {
            secure,
            host: host.to_owned(),
            port,
        })
    }
}

/// Why an enrolment did not give the device a certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrolmentError {
    /// No EST client is wired in.
    #[error("EST enrolment not available")]
    NotAvailable,
    #[error("EST enrolment failed: {0}")]
    Failed(String),
}

/// Extension point for Security Mode 4 (Certificate mode with EST, Transport §5.2.4): turns an
/// account whose security is [`Security::CertificateWithEst`] into one the transport can use
/// (normally [`Security::Certificate`] with a freshly enrolled certificate and a key generated
/// on the device).
///
/// Called when a bootstrap finished and the chosen account needs an enrolment, only when no
/// EST client is configured: the real exchange (RFC 9148 `/sen` on the bootstrap server) is
/// [`crate::est::EstSession`], driven by the device loop. This hook stays for callers that
/// provision credentials out of band (tests, a device with a pre-issued certificate).
pub trait Enrolment: std::fmt::Debug + Send {
    fn enrol(&mut self, account: &ServerAccount) -> Result<Security, EnrolmentError>;
}

/// The default: no EST client.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEnrolment;

impl Enrolment for NoEnrolment {
    fn enrol(&mut self, _account: &ServerAccount) -> Result<Security, EnrolmentError> {
        Err(EnrolmentError::NotAvailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_uris() {
        let u = ServerUri::parse("coaps://[::1]").ok();
        assert_eq!(
            u,
            Some(ServerUri {
                secure: true,
                host: "::1".into(),
                port: 5684
            })
        );
        let u = ServerUri::parse("coap://127.0.0.1:5783/bs").ok();
        assert_eq!(
            u.map(|u| (u.host, u.port)),
            Some(("127.0.0.1".into(), 5783))
        );
        for bad in ["http://x", "coap://", "coap://h:0", "coap://u@h", "nothing"] {
            assert!(ServerUri::parse(bad).is_err(), "{bad}");
        }
    }
}
