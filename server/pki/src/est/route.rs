//! Uri-Path → EST function.

use std::fmt;

use steward_coap::message::Method;

use super::content_format as cf;

/// One EST-coaps function, named by its short path (RFC 9148 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EstFunction {
    /// `/crts`: CA certificates (RFC 7030 /cacerts).
    Crts,
    /// `/sen`: simple enrolment.
    Sen,
    /// `/sren`: simple re-enrolment.
    Sren,
    /// `/skg`: server-side key generation, certificate as certs-only.
    Skg,
    /// `/skc`: server-side key generation, certificate as a single pkix-cert.
    Skc,
    /// `/att`: CSR attributes.
    Att,
}

impl EstFunction {
    /// In the order RFC 9148 §4.1 lists them in its discovery example.
    pub const ALL: [EstFunction; 6] = [
        EstFunction::Crts,
        EstFunction::Sen,
        EstFunction::Sren,
        EstFunction::Att,
        EstFunction::Skg,
        EstFunction::Skc,
    ];

    pub const fn short(self) -> &'static str {
        match self {
            EstFunction::Crts => "crts",
            EstFunction::Sen => "sen",
            EstFunction::Sren => "sren",
            EstFunction::Skg => "skg",
            EstFunction::Skc => "skc",
            EstFunction::Att => "att",
        }
    }

    /// Only the short names: RFC 9148 makes them mandatory and the long RFC 7030 names
    /// (`cacerts`, `simpleenroll`, ...) optional, and one spelling per resource keeps the
    /// routing and the audit trail unambiguous.
    pub fn from_short(segment: &str) -> Option<EstFunction> {
        EstFunction::ALL.into_iter().find(|f| f.short() == segment)
    }

    /// The resource type registered by RFC 9148 §8.2.
    pub const fn resource_type(self) -> &'static str {
        match self {
            EstFunction::Crts => "ace.est.crts",
            EstFunction::Sen => "ace.est.sen",
            EstFunction::Sren => "ace.est.sren",
            EstFunction::Skg => "ace.est.skg",
            EstFunction::Skc => "ace.est.skc",
            EstFunction::Att => "ace.est.att",
        }
    }

    pub const fn method(self) -> Method {
        match self {
            EstFunction::Crts | EstFunction::Att => Method::Get,
            EstFunction::Sen | EstFunction::Sren | EstFunction::Skg | EstFunction::Skc => {
                Method::Post
            }
        }
    }

    /// Response content formats, as advertised in discovery.
    pub const fn response_formats(self) -> &'static [u16] {
        match self {
            EstFunction::Crts | EstFunction::Sen | EstFunction::Sren => {
                &[cf::CERTS_ONLY, cf::PKIX_CERT]
            }
            EstFunction::Skg | EstFunction::Skc => &[cf::MULTIPART_CORE],
            EstFunction::Att => &[cf::CSRATTRS],
        }
    }

    /// True for the functions that issue a certificate (and so carry a CSR).
    pub const fn issues(self) -> bool {
        matches!(
            self,
            EstFunction::Sen | EstFunction::Sren | EstFunction::Skg | EstFunction::Skc
        )
    }
}

impl fmt::Display for EstFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short())
    }
}

/// Where a request path leads, for paths this module owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/.well-known/core`.
    Core,
    /// `/.well-known/est/<short>` (label `None`) or `/.well-known/est/<label>/<short>`.
    Function {
        label: Option<&'a str>,
        function: EstFunction,
    },
    /// Under `/.well-known/est` but no function: answered 4.04.
    Unknown,
}

/// Routes a Uri-Path; `None` when the path is not EST's, so the server's router can try its
/// other handlers.
pub fn route(path: &[String]) -> Option<Route<'_>> {
    match path {
        [wk, core] if wk == ".well-known" && core == "core" => Some(Route::Core),
        [wk, est, rest @ ..] if wk == ".well-known" && est == "est" => Some(match rest {
            [short] => {
                EstFunction::from_short(short).map_or(Route::Unknown, |function| Route::Function {
                    label: None,
                    function,
                })
            }
            // An empty label segment (`/.well-known/est//sen`) is not a label.
            [label, short] if !label.is_empty() => {
                EstFunction::from_short(short).map_or(Route::Unknown, |function| Route::Function {
                    label: Some(label.as_str()),
                    function,
                })
            }
            _ => Route::Unknown,
        }),
        _ => None,
    }
}
