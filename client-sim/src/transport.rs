//! Which server a device on real sockets must talk to now, and over what: the bootstrap
//! server while it bootstraps (or when it has no account), else its LwM2M server account.
//! A driver bound to one DTLS session compares [`wanted`] with the target it runs and
//! restarts with the new one when [`Target::same_driver`] is false (see [`crate::managed`]).
//!
//! While the device runs an EST session (enrolment, re-enrolment, server-certificate check,
//! [`crate::est`]) it wants its bootstrap server, which is the EST server; `/sren` uses the
//! current operational certificate there instead of the factory credentials.
//!
//! Credentials: a bootstrapped account's come from /0 (mode 0: identity /0/x/3, key /0/x/5;
//! mode 2: client certificate /0/x/3, server certificate /0/x/4, PKCS#8 key /0/x/5, all
//! DER); the bootstrap account's, and a `coaps` factory account's without security in /0,
//! are the factory credentials given by the caller. Hosts must be IP literals or `localhost`
//! ([`crate::firmware::ip_resolver`]: no DNS in the simulator).

use std::net::SocketAddr;

use steward_dtls::{ClientCertificate, ClientCredentials, ServerTrust};

use crate::SimDevice;
use crate::bootstrap::{Security, ServerUri};

/// Where a device must talk, and how.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// `None`: CoAP over UDP.
    pub credentials: Option<ClientCredentials>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("addr", &self.addr)
            .field("dtls", &self.credentials.is_some())
            .finish()
    }
}

impl Target {
    /// Whether one running driver serves both: UDP reaches any address, a DTLS session one.
    pub fn same_driver(&self, other: &Target) -> bool {
        match (&self.credentials, &other.credentials) {
            (None, None) => true,
            (Some(_), Some(_)) => self.addr == other.addr,
            _ => false,
        }
    }
}

/// Why no target can be named.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("the device has neither an LwM2M server account nor a bootstrap server")]
    NoServer,
    #[error("{uri}: {why}")]
    Uri { uri: String, why: String },
    #[error("{uri}: {source}")]
    Credentials {
        uri: String,
        source: steward_dtls::DtlsError,
    },
}

/// The target `device` wants now; `factory` are the credentials it was made with.
///
/// A device made for trust-chain recovery ([`crate::trust`]) judges its servers by its CTL
/// instead: the bootstrap server's chain after the handshake (so that a locked-out device can
/// still receive a recovery token, [`ServerTrust::judged_later`]), the LwM2M server's during
/// it (anchors of the CTL; the account's /0/x/4 only while the device holds no CTL).
pub fn wanted(
    device: &SimDevice<SocketAddr>,
    factory: Option<&ClientCredentials>,
) -> Result<Target, TransportError> {
    let mut target = untrusted_target(device, factory)?;
    if let Some(trust) = device.device().trust()
        && let Some(ClientCredentials::Certificate { server, .. }) = &mut target.credentials
    {
        if is_bootstrap_target(device) {
            *server = ServerTrust::judged_later();
        } else if let Some(ctl) = trust.server_trust() {
            *server = ctl;
        }
    }
    Ok(target)
}

/// Whether [`wanted`] names the bootstrap server (the EST server too).
pub fn is_bootstrap_target(device: &SimDevice<SocketAddr>) -> bool {
    (device.is_bootstrapping() || device.device().server_account().is_none())
        && device.device().bootstrap_account().is_some()
}

fn untrusted_target(
    device: &SimDevice<SocketAddr>,
    factory: Option<&ClientCredentials>,
) -> Result<Target, TransportError> {
    let account = device.device().server_account();
    if (device.is_bootstrapping() || account.is_none())
        && let Some(bs) = device.device().bootstrap_account()
    {
        if device.is_reenrolling()
            && let Some(a) = &account
        {
            return reenrol_target(&bs.uri, &a.security, factory);
        }
        return target_of(&bs.uri, None, factory);
    }
    match account {
        Some(a) => target_of(&a.uri, Some(&a.security), factory),
        None => Err(TransportError::NoServer),
    }
}

/// `/sren` authenticates with the current operational certificate (RFC 7030 §3.3.2) and
/// trusts the bootstrap server as the factory credentials do (`--ca`).
fn reenrol_target(
    uri: &str,
    security: &Security,
    factory: Option<&ClientCredentials>,
) -> Result<Target, TransportError> {
    let bad = |why: &str| TransportError::Uri {
        uri: uri.to_owned(),
        why: why.to_owned(),
    };
    let Security::Certificate {
        certificate,
        private_key,
        ..
    } = security
    else {
        return Err(bad("re-enrolment needs a certificate-mode account"));
    };
    let Some(ClientCredentials::Certificate { server, .. }) = factory else {
        return Err(bad(
            "re-enrolment needs the bootstrap server's trust anchor (--cert/--key/--ca)",
        ));
    };
    let mut target = target_of(uri, None, factory)?;
    target.credentials = Some(ClientCredentials::Certificate {
        certificate: ClientCertificate::from_der(vec![certificate.clone()], private_key).map_err(
            |source| TransportError::Credentials {
                uri: uri.to_owned(),
                source,
            },
        )?,
        server: server.clone(),
    });
    Ok(target)
}

fn target_of(
    uri: &str,
    security: Option<&Security>,
    factory: Option<&ClientCredentials>,
) -> Result<Target, TransportError> {
    let bad = |why: String| TransportError::Uri {
        uri: uri.to_owned(),
        why,
    };
    let parsed = ServerUri::parse(uri).map_err(|e| bad(e.to_string()))?;
    let addr = crate::firmware::ip_resolver(&parsed.host, parsed.port)
        .ok_or_else(|| bad("the host must be an IP address or localhost".into()))?;
    let credentials = match security {
        None | Some(Security::NoSec) if parsed.secure => {
            Some(factory.cloned().ok_or_else(|| {
                bad("coaps needs factory credentials (PSK or certificate)".into())
            })?)
        }
        None | Some(Security::NoSec) => None,
        Some(Security::Psk { identity, key }) => Some(ClientCredentials::Psk {
            identity: identity.clone(),
            key: key.clone(),
        }),
        Some(Security::Certificate {
            certificate,
            server_certificate,
            private_key,
        }) => Some(ClientCredentials::Certificate {
            certificate: ClientCertificate::from_der(vec![certificate.clone()], private_key)
                .map_err(|source| TransportError::Credentials {
                    uri: uri.to_owned(),
                    source,
                })?,
            server: ServerTrust::new(vec![server_certificate.clone()]),
        }),
        Some(other) => {
            return Err(bad(format!(
                "security mode {} is not supported",
                other.mode()
            )));
        }
    };
    Ok(Target { addr, credentials })
}
