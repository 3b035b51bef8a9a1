//! PSK-authenticated enrolment: which CSR subject a bootstrap PSK identity may enrol.
//!
//! RFC 9148 §3 wants certificate client authentication for EST, but LwM2M bootstraps are often
//! PSK, and enrolling inside the PSK bootstrap session is common practice (standards.md §1.11).
//! We allow it only when the CSR's common name is exactly the one bound to the PSK identity, so
//! a device holding one PSK cannot obtain a certificate in another device's name (DESIGN.md:
//! "a PSK identity bound to the CSR subject"; refused with 4.03).

use std::collections::BTreeMap;

use crate::csr::Csr;

/// Why a PSK-authenticated enrolment is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PskRefusal {
    #[error("PSK identity {0:?} is not bound to any subject")]
    UnknownIdentity(String),
    #[error("the CSR subject has no common name")]
    NoCommonName,
    #[error("PSK identity {identity:?} may enrol {expected:?}, the CSR asks for {requested:?}")]
    SubjectMismatch {
        identity: String,
        expected: String,
        requested: String,
    },
}

/// PSK identity → the one common name it may enrol.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PskBinding {
    bindings: BTreeMap<Vec<u8>, String>,
}

impl PskBinding {
    pub fn new() -> PskBinding {
        PskBinding::default()
    }

    /// Binds `identity` to `common_name`, replacing an earlier binding of the identity.
    pub fn bind(&mut self, identity: &[u8], common_name: &str) -> Option<String> {
        self.bindings
            .insert(identity.to_vec(), common_name.to_owned())
    }

    pub fn unbind(&mut self, identity: &[u8]) -> Option<String> {
        self.bindings.remove(identity)
    }

    /// The common name bound to `identity`.
    pub fn bound_name(&self, identity: &[u8]) -> Option<&str> {
        self.bindings.get(identity).map(String::as_str)
    }

    /// Accepts the CSR if its CN is the one bound to `identity`; returns that CN.
    pub fn check<'c>(&self, identity: &[u8], csr: &'c Csr) -> Result<&'c str, PskRefusal> {
        let expected = self
            .bound_name(identity)
            .ok_or_else(|| PskRefusal::UnknownIdentity(lossy(identity)))?;
        check_subject(identity, expected, csr)
    }
}

/// The check on its own, for a server that resolves the PSK identity to its endpoint name
/// elsewhere (its security store): the CSR's CN must equal `expected_cn` byte for byte. No case
/// folding or trimming: endpoint names are case-sensitive identifiers.
pub fn check_subject<'c>(
    identity: &[u8],
    expected_cn: &str,
    csr: &'c Csr,
) -> Result<&'c str, PskRefusal> {
    let requested = csr.common_name().ok_or(PskRefusal::NoCommonName)?;
    if requested != expected_cn {
        return Err(PskRefusal::SubjectMismatch {
            identity: lossy(identity),
            expected: expected_cn.to_owned(),
            requested: requested.to_owned(),
        });
    }
    Ok(requested)
}

fn lossy(identity: &[u8]) -> String {
    String::from_utf8_lossy(identity).into_owned()
}
