//! Server-initiated bootstrap (Core §6.1, Transport "Bootstrap Trigger"): the LwM2M Server
//! executes Bootstrap-Request Trigger, `/1/x/9`, on its own Server object instance, and the
//! client starts a client-initiated bootstrap. Only the target is computed here; the Execute
//! goes through the device-management requests like any other.
//!
//! Which instance: the client's ACLs normally let a server execute only on its own /1
//! instance, the one whose Short Server ID is the server's. The registration lists the /1
//! instances but not their SSIDs, so with several the caller must say which one is ours (from
//! a Read of `/1/x/0`, or from the endpoint's bootstrap configuration).

use steward_objects::Path;
use steward_objects::link::ObjectLinks;

use crate::registry::{Lwm2mVersion, Registration};

/// Bootstrap-Request Trigger.
pub const BOOTSTRAP_TRIGGER: u16 = 9;

/// Why no trigger target can be named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriggerError {
    /// The Server object defines /1/x/9 from version 1.1 (LwM2M 1.1).
    #[error("LwM2M 1.0 clients have no Bootstrap-Request Trigger (/1/x/9)")]
    Unsupported,
    #[error("the registration's object links do not parse")]
    BadLinks,
    #[error("the client registered no Server object instance")]
    NoServerInstance,
    #[error("the client did not register /1/{0}")]
    NotRegistered(u16),
    /// Several /1 instances and no hint which one is this server's.
    #[error("the client has several Server instances {0:?}: say which one is this server's")]
    Ambiguous(Vec<u16>),
}

/// The `/1/<i>/9` Execute target that makes `registration`'s client bootstrap again.
/// `own_instance` is this server's /1 instance when known.
pub fn bootstrap_trigger(
    registration: &Registration,
    own_instance: Option<u16>,
) -> Result<Path, TriggerError> {
    if registration.version == Lwm2mVersion::V1_0 {
        return Err(TriggerError::Unsupported);
    }
    let links = ObjectLinks::parse(registration.object_links.as_bytes())
        .map_err(|_| TriggerError::BadLinks)?;
    let instances: Vec<u16> = links
        .object_instances()
        .into_iter()
        .filter_map(|p| match p {
            Path::Instance(1, i) => Some(i),
            _ => None,
        })
        .collect();
    let instance = match (own_instance, instances.as_slice()) {
        (Some(i), list) if list.contains(&i) => i,
        (Some(i), _) => return Err(TriggerError::NotRegistered(i)),
        (None, []) => return Err(TriggerError::NoServerInstance),
        (None, [only]) => *only,
        (None, _) => return Err(TriggerError::Ambiguous(instances)),
    };
    Ok(Path::Resource(1, instance, BOOTSTRAP_TRIGGER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::PeerIdentity;

    fn registration(version: Lwm2mVersion, links: &str) -> Registration {
        Registration {
            id: "r".into(),
            endpoint: "ep".into(),
            version,
            lifetime: 60,
            binding: "U".into(),
            queue_mode: false,
            sms: None,
            object_links: links.into(),
            address: "a".into(),
            identity: PeerIdentity::Unsecured,
            registered_at_ms: 0,
            last_update_ms: 0,
        }
    }

    #[test]
    fn targets() {
        let one = registration(Lwm2mVersion::V1_1, "</1/0>,</3/0>");
        assert_eq!(bootstrap_trigger(&one, None), Ok(Path::Resource(1, 0, 9)));
        assert_eq!(
            bootstrap_trigger(&one, Some(2)),
            Err(TriggerError::NotRegistered(2))
        );
        let two = registration(Lwm2mVersion::V1_2, "</1/0>,</1/4>,</3/0>");
        assert_eq!(
            bootstrap_trigger(&two, None),
            Err(TriggerError::Ambiguous(vec![0, 4]))
        );
        assert_eq!(
            bootstrap_trigger(&two, Some(4)),
            Ok(Path::Resource(1, 4, 9))
        );
        let none = registration(Lwm2mVersion::V1_1, "</3/0>");
        assert_eq!(
            bootstrap_trigger(&none, None),
            Err(TriggerError::NoServerInstance)
        );
        let old = registration(Lwm2mVersion::V1_0, "</1/0>");
        assert_eq!(
            bootstrap_trigger(&old, None),
            Err(TriggerError::Unsupported)
        );
    }
}
