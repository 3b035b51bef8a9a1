//! Uplink Bootstrap-interface requests, parsed from CoAP (Transport §6.4.2):
//!
//! ```text
//! Bootstrap-Request       POST /bs?ep={name}&pct={format}        (pct: 1.1+)
//! Bootstrap-Pack-Request  GET  /bspack?ep={name}   Accept: 112 | 110 | 11544   (1.2)
//! ```
//!
//! Parsing only, plus [`authorize`]: who may bootstrap as which endpoint.
//!
//! Rules, and why:
//! - A known parameter given twice is 4.00, as on `/rd`.
//! - `ep` may be omitted by a 1.1+ client; the name is then its authenticated identity (as for
//!   Register, Core 1.1 §5.3.1). The Bootstrap-Request carries no `lwm2m=`, so the version is
//!   not known here and the rule is the same for every client.
//! - `pct` must be a decimal Content-Format number (else 4.00); whether we can write in it is
//!   the session's call (4.15, Transport §6.4.2).
//! - Unknown parameters are kept in `extra` and ignored (Leshan: "additional attributes").
//! - A payload is ignored: the Bootstrap-Request has none defined.

use steward_coap::message::{Method, Request, option};

use super::error::BootstrapError;
use crate::registry::PeerIdentity;
use crate::uri_query::{Query, QueryError};

/// The Uri-Path of the Bootstrap-Request (and of Bootstrap-Finish, server to client).
pub const BS: &str = "bs";
/// The Uri-Path of the Bootstrap-Pack-Request (1.2).
pub const BSPACK: &str = "bspack";

/// A parsed uplink Bootstrap-interface request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UplinkRequest {
    Bootstrap(BootstrapRequest),
    Pack(PackRequest),
}

/// `POST /bs?ep=&pct=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapRequest {
    /// `ep`; `None` means "my authenticated identity".
    pub endpoint: Option<String>,
    /// `pct`: the Content-Format the client prefers for Bootstrap-Write payloads.
    pub preferred_format: Option<u16>,
    /// Parameters we do not know, as sent (`name` or `name=value`).
    pub extra: Vec<(String, Option<String>)>,
}

/// `GET /bspack?ep=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackRequest {
    pub endpoint: Option<String>,
    /// The Accept option; `None` lets the server pick (SenML CBOR).
    pub accept: Option<u16>,
    pub extra: Vec<(String, Option<String>)>,
}

impl BootstrapRequest {
    /// A Bootstrap-Request for `endpoint` (the simulated client uses it).
    pub fn new(endpoint: &str) -> BootstrapRequest {
        BootstrapRequest {
            endpoint: Some(endpoint.to_owned()),
            preferred_format: None,
            extra: Vec::new(),
        }
    }

    /// The CoAP request a client sends for this Bootstrap-Request.
    pub fn to_request(&self) -> Request {
        let mut r = Request::new(Method::Post).with_path(BS);
        if let Some(ep) = &self.endpoint {
            r = r.with_query(&format!("ep={ep}"));
        }
        if let Some(pct) = self.preferred_format {
            r = r.with_query(&format!("pct={pct}"));
        }
        with_extra(r, &self.extra)
    }
}

impl PackRequest {
    /// The CoAP request a client sends for this Bootstrap-Pack-Request.
    pub fn to_request(&self) -> Request {
        let mut r = Request::new(Method::Get).with_path(BSPACK);
        if let Some(ep) = &self.endpoint {
            r = r.with_query(&format!("ep={ep}"));
        }
        if let Some(accept) = self.accept {
            r = r.with_option(
                option::ACCEPT,
                steward_coap::message::encode_uint(u32::from(accept)),
            );
        }
        with_extra(r, &self.extra)
    }
}

fn with_extra(mut r: Request, extra: &[(String, Option<String>)]) -> Request {
    for (name, value) in extra {
        r = match value {
            Some(v) => r.with_query(&format!("{name}={v}")),
            None => r.with_query(name),
        };
    }
    r
}

/// True when `request` is addressed to the Bootstrap interface (`/bs` or `/bspack`), so the
/// router of the bootstrap endpoint hands it here.
pub fn is_bootstrap_path(request: &Request) -> bool {
    let mut path = request.options.get_all(option::URI_PATH);
    matches!(
        (path.next(), path.next()),
        (Some(first), None) if first == BS.as_bytes() || first == BSPACK.as_bytes()
    )
}

/// Parses a request to the bootstrap endpoint.
pub fn parse(request: &Request) -> Result<UplinkRequest, BootstrapError> {
    let path = request.options.uri_path().ok_or(BootstrapError::NotUtf8)?;
    match (path.as_slice(), request.method) {
        ([BS], Method::Post) => {
            let query = Query::of(request)?;
            let preferred_format = match query.value("pct")? {
                None => None,
                Some(v) => Some(decimal_u16(v).ok_or_else(|| BootstrapError::BadValue {
                    name: "pct",
                    value: clip(v),
                })?),
            };
            Ok(UplinkRequest::Bootstrap(BootstrapRequest {
                endpoint: query.value("ep")?.map(str::to_owned),
                preferred_format,
                extra: query.extra(&["ep", "pct"]),
            }))
        }
        ([BSPACK], Method::Get) => {
            let query = Query::of(request)?;
            // An Accept that is not a 16-bit number names no format we have.
            let accept = request
                .options
                .get(option::ACCEPT)
                .map(|_| request.options.accept().unwrap_or(u16::MAX));
            Ok(UplinkRequest::Pack(PackRequest {
                endpoint: query.value("ep")?.map(str::to_owned),
                accept,
                extra: query.extra(&["ep"]),
            }))
        }
        ([BS] | [BSPACK], method) => Err(BootstrapError::MethodNotAllowed(method)),
        _ => Err(BootstrapError::NotFound),
    }
}

/// The endpoint name a request from `identity` bootstraps: `requested` if the identity allows
/// it, or the identity's own name when `requested` is `None`.
///
/// The name must equal the PSK identity (as UTF-8) or the certificate's subject CN (Transport
/// §5.2.6 via DESIGN.md "Security rules"); NoSec peers only when `allow_unsecured`, and then
/// they must name themselves.
pub fn authorize(
    requested: Option<&str>,
    identity: &PeerIdentity,
    allow_unsecured: bool,
) -> Result<String, BootstrapError> {
    let authenticated = match identity {
        PeerIdentity::Unsecured if !allow_unsecured => {
            return Err(BootstrapError::UnsecuredRefused);
        }
        PeerIdentity::Unsecured => {
            return requested
                .map(str::to_owned)
                .ok_or(BootstrapError::MissingEndpoint);
        }
        // A PSK identity that is not UTF-8 cannot equal any endpoint name.
        PeerIdentity::Psk(id) => std::str::from_utf8(id).ok(),
        PeerIdentity::X509 { common_name } => Some(common_name.as_str()),
    };
    match (requested, authenticated) {
        (Some(ep), Some(id)) if ep == id => Ok(ep.to_owned()),
        (Some(ep), _) => Err(BootstrapError::IdentityMismatch(clip(ep))),
        (None, Some(id)) if !id.is_empty() => Ok(id.to_owned()),
        (None, _) => Err(BootstrapError::MissingEndpoint),
    }
}

fn decimal_u16(s: &str) -> Option<u16> {
    // `u16::from_str` also takes `+5`; the parameter is digits only.
    (!s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Values echoed into diagnostics are cut short: the peer controls them.
fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

impl From<QueryError<'_>> for BootstrapError {
    fn from(e: QueryError<'_>) -> BootstrapError {
        match e {
            QueryError::NotUtf8 => BootstrapError::NotUtf8,
            QueryError::Duplicate(name) => BootstrapError::DuplicateParameter(name),
            QueryError::BadValue { name, value } => BootstrapError::BadValue {
                name,
                value: clip(value),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use BootstrapError as E;
    use steward_coap::message::Code;

    fn post(query: &[&str]) -> Request {
        query
            .iter()
            .fold(Request::new(Method::Post).with_path("/bs"), |r, q| {
                r.with_query(q)
            })
    }

    #[test]
    fn bootstrap_request_round_trips() {
        let mut b = BootstrapRequest::new("dev1");
        b.preferred_format = Some(112);
        b.extra.push(("x".into(), None));
        assert_eq!(parse(&b.to_request()), Ok(UplinkRequest::Bootstrap(b)));
        let p = PackRequest {
            endpoint: Some("dev1".into()),
            accept: Some(110),
            extra: vec![],
        };
        assert_eq!(parse(&p.to_request()), Ok(UplinkRequest::Pack(p)));
    }

    #[test]
    fn malformed_requests_are_4_00() {
        for (q, e) in [
            (&["ep=a", "ep=b"][..], E::DuplicateParameter("ep")),
            (
                &["ep="],
                E::BadValue {
                    name: "ep",
                    value: String::new(),
                },
            ),
            (
                &["ep=a", "pct=+5"],
                E::BadValue {
                    name: "pct",
                    value: "+5".into(),
                },
            ),
            (
                &["ep=a", "pct=70000"],
                E::BadValue {
                    name: "pct",
                    value: "70000".into(),
                },
            ),
        ] {
            let got = parse(&post(q));
            assert_eq!(got, Err(e.clone()), "{q:?}");
            assert_eq!(e.code(), Code::BAD_REQUEST);
        }
        let get = Request::new(Method::Get).with_path("/bs");
        assert_eq!(parse(&get), Err(E::MethodNotAllowed(Method::Get)));
        let other = Request::new(Method::Post).with_path("/rd");
        assert_eq!(parse(&other), Err(E::NotFound));
        assert!(!is_bootstrap_path(&other) && is_bootstrap_path(&post(&[])));
        let deeper = Request::new(Method::Post).with_path("/bs/x");
        assert!(!is_bootstrap_path(&deeper));
    }

    #[test]
    fn identity_rules() {
        let psk = PeerIdentity::Psk(b"dev1".to_vec());
        assert_eq!(authorize(Some("dev1"), &psk, false), Ok("dev1".into()));
        assert_eq!(authorize(None, &psk, false), Ok("dev1".into()));
        assert_eq!(
            authorize(Some("dev2"), &psk, true),
            Err(E::IdentityMismatch("dev2".into()))
        );
        let cert = PeerIdentity::X509 {
            common_name: "dev1".into(),
        };
        assert_eq!(authorize(Some("dev1"), &cert, false), Ok("dev1".into()));
        let u = PeerIdentity::Unsecured;
        assert_eq!(authorize(Some("a"), &u, false), Err(E::UnsecuredRefused));
        assert_eq!(authorize(Some("a"), &u, true), Ok("a".into()));
        assert_eq!(authorize(None, &u, true), Err(E::MissingEndpoint));
        assert_eq!(E::IdentityMismatch("x".into()).code(), Code::FORBIDDEN);
    }
}
