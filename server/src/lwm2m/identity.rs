//! Who may register as which endpoint: the one seam for access decisions on the Registration
//! interface (Leshan's `Authorizer`).
//!
//! - Transport §5.2.6 (via standards.md §1.2): the server MUST compare the Endpoint Client Name
//!   with the identity authenticated by (D)TLS. Here that is equality with the PSK identity
//!   (as UTF-8) or with the certificate's subject CN. A lookup table (one identity for several
//!   names) can replace [`endpoint_for`] later without touching the handler.
//! - A mismatch is 4.03 Forbidden. standards.md quotes 4.00 for it, DESIGN says "4.00/4.03";
//!   we follow Core 1.1 §5.3.1 (Register: "4.03 Forbidden — the Endpoint Client Name
//!   registration in the LwM2M Server is not allowed"), STYLE's "policy denied → 4.03" and
//!   Leshan (`RegisterResponse.forbidden` when the authorizer declines).
//! - From 1.1 `ep` may be omitted; the name is then the authenticated identity (Core 1.1
//!   §5.3.1). Without an identity (NoSec) there is nothing to take it from: 4.00.
//! - NoSec peers (Transport §5.3: only with lower-layer security) are refused with 4.03 unless
//!   the server is configured to allow them.
//! - Update and De-register must come from the registration's own client: the same
//!   authenticated identity; for NoSec, also the same address, since the address is all that
//!   identifies a NoSec client (Transport: "in NoSec an IP change forces re-Register").

use super::error::RegistrationError;
use crate::registry::{PeerIdentity, Registration};

/// The endpoint name a Register from `identity` gets: `requested` if the identity allows it,
/// or the identity's own name when `requested` is `None` (1.1+).
pub fn endpoint_for(
    requested: Option<&str>,
    identity: &PeerIdentity,
    allow_unsecured: bool,
) -> Result<String, RegistrationError> {
    let authenticated = match identity {
        PeerIdentity::Unsecured if !allow_unsecured => {
            return Err(RegistrationError::UnsecuredRefused);
        }
        PeerIdentity::Unsecured => {
            return requested
                .map(str::to_owned)
                .ok_or(RegistrationError::MissingEndpoint);
        }
        // A PSK identity that is not UTF-8 cannot equal any endpoint name.
        PeerIdentity::Psk(id) => std::str::from_utf8(id).ok(),
        PeerIdentity::X509 { common_name } => Some(common_name.as_str()),
    };
    match (requested, authenticated) {
        (Some(ep), Some(id)) if ep == id => Ok(ep.to_owned()),
        (Some(ep), _) => Err(RegistrationError::IdentityMismatch {
            endpoint: ep.chars().take(64).collect(),
        }),
        (None, Some(id)) if !id.is_empty() => Ok(id.to_owned()),
        (None, _) => Err(RegistrationError::MissingEndpoint),
    }
}

/// True when a request from `identity` at `address` comes from the client that owns
/// `registration`.
pub fn owns(registration: &Registration, identity: &PeerIdentity, address: &str) -> bool {
    registration.identity == *identity
        && (*identity != PeerIdentity::Unsecured || registration.address == address)
}

#[cfg(test)]
mod tests {
    use super::*;
    use RegistrationError as E;

    fn psk(s: &[u8]) -> PeerIdentity {
        PeerIdentity::Psk(s.to_vec())
    }

    #[test]
    fn name_must_match_the_identity() {
        assert_eq!(
            endpoint_for(Some("dev1"), &psk(b"dev1"), false),
            Ok("dev1".into())
        );
        let cert = PeerIdentity::X509 {
            common_name: "dev1".into(),
        };
        assert_eq!(endpoint_for(Some("dev1"), &cert, false), Ok("dev1".into()));
        let e = endpoint_for(Some("dev2"), &psk(b"dev1"), false);
        assert!(matches!(e, Err(E::IdentityMismatch { .. })));
        let e = endpoint_for(Some("dev2"), &cert, true);
        assert!(matches!(e, Err(E::IdentityMismatch { .. })));
        let e = endpoint_for(Some("dev1"), &psk(&[0xff, 0x00]), false);
        assert!(matches!(e, Err(E::IdentityMismatch { .. })));
    }

    #[test]
    fn omitted_name_comes_from_the_identity() {
        assert_eq!(endpoint_for(None, &psk(b"dev1"), false), Ok("dev1".into()));
        assert_eq!(
            endpoint_for(None, &psk(&[0xff]), false),
            Err(E::MissingEndpoint)
        );
        assert_eq!(
            endpoint_for(None, &psk(b""), false),
            Err(E::MissingEndpoint)
        );
        let u = PeerIdentity::Unsecured;
        assert_eq!(endpoint_for(None, &u, true), Err(E::MissingEndpoint));
    }

    #[test]
    fn unsecured_only_when_allowed() {
        let u = PeerIdentity::Unsecured;
        assert_eq!(endpoint_for(Some("a"), &u, false), Err(E::UnsecuredRefused));
        assert_eq!(endpoint_for(Some("a"), &u, true), Ok("a".into()));
    }
}
