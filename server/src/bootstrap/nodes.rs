//! A configuration as LwM2M object instances: what Bootstrap-Write and Bootstrap-Pack carry.
//!
//! Resource IDs and types follow the Security (0, v1.2), Server (1, v1.2), Access Control (2,
//! v1.1) and OSCORE (21, v2.0) object definitions (standards.md §1.4–1.6, §1.9), the mapping
//! Leshan's `BootstrapUtil` uses: every mandatory resource is written, optional ones only when
//! configured. Integer-typed resources are written as `Integer`, unsigned ones (/0/x/13, 15, 16;
//! /1/x/13, 14, 17–20) as `Unsigned Integer`; TLV and SenML do not tell them apart on the wire,
//! but LwM2M CBOR and our decoders do.

use std::collections::BTreeMap;

use steward_objects::{Instance, Node, NodeMap, ObjLink, Path, Resource, Value};

use super::config::{AclConfig, BootstrapConfig, OscoreObject, ServerConfig, ServerSecurity};

pub const SECURITY: u16 = 0;
pub const SERVER: u16 = 1;
pub const ACCESS_CONTROL: u16 = 2;
pub const OSCORE: u16 = 21;
/// Object 11, APN Connection Profile (/1/x/10 links to it).
const APN_CONNECTION_PROFILE: u16 = 11;

/// Builds an instance resource by resource, skipping absent optional values.
#[derive(Default)]
struct Builder(BTreeMap<u16, Resource>);

impl Builder {
    fn set(mut self, id: u16, value: Value) -> Builder {
        self.0.insert(id, Resource::Single(value));
        self
    }

    fn opt<T>(self, id: u16, value: Option<T>, f: impl FnOnce(T) -> Value) -> Builder {
        match value {
            Some(v) => self.set(id, f(v)),
            None => self,
        }
    }

    fn done(self) -> Instance {
        Instance { resources: self.0 }
    }
}

fn int(v: impl Into<i64>) -> Value {
    Value::Integer(v.into())
}

fn uint(v: impl Into<u64>) -> Value {
    Value::UnsignedInteger(v.into())
}

impl ServerSecurity {
    /// This account as a Security (/0) instance.
    pub fn to_instance(&self) -> Instance {
        let mut b = Builder::default()
            .set(0, Value::String(self.uri.clone().unwrap_or_default()))
            .set(1, Value::Boolean(self.bootstrap_server))
            // Validation makes the mode mandatory; NoSec is the harmless reading of "none".
            .set(2, int(self.security_mode.map_or(3, |m| m.code())))
            .set(3, Value::Opaque(self.public_key_or_id.clone()))
            .set(4, Value::Opaque(self.server_public_key.clone()))
            .set(5, Value::Opaque(self.secret_key.clone()))
            .set(6, int(self.sms_security_mode.code()))
            .set(7, Value::Opaque(self.sms_binding_key_param.clone()))
            .set(8, Value::Opaque(self.sms_binding_key_secret.clone()))
            .set(9, Value::String(self.server_sms_number.clone()))
            .opt(10, self.server_id, int)
            .opt(11, self.client_old_off_time, int)
            .opt(12, self.bootstrap_server_account_timeout, int)
            .opt(13, self.matching_type, |m| uint(m.code()))
            .opt(14, self.sni.clone(), Value::String)
            .opt(15, self.certificate_usage, |c| uint(c.code()))
            .opt(17, self.oscore_security_mode, |i| {
                Value::Objlnk(ObjLink::new(OSCORE, i))
            });
        if let Some(suites) = &self.cipher_suite {
            let instances = (0u16..).zip(suites.iter().map(|s| uint(*s))).collect();
            b.0.insert(16, Resource::Multiple(instances));
        }
        b.done()
    }
}

impl ServerConfig {
    /// This account as a Server (/1) instance.
    pub fn to_instance(&self) -> Instance {
        Builder::default()
            .set(0, int(self.short_id))
            .set(1, int(self.lifetime))
            .opt(2, self.default_min_period, int)
            .opt(3, self.default_max_period, int)
            .opt(5, self.disable_timeout, int)
            .set(6, Value::Boolean(self.notif_if_disabled))
            .set(7, Value::String(self.binding.to_string()))
            .opt(10, self.apn_link, |i| {
                Value::Objlnk(ObjLink::new(APN_CONNECTION_PROFILE, i))
            })
            .opt(13, self.registration_priority, uint)
            .opt(14, self.initial_delay, uint)
            .opt(15, self.registration_failure, Value::Boolean)
            .opt(16, self.bootstrap_on_registration_failure, Value::Boolean)
            .opt(17, self.communication_retry_count, uint)
            .opt(18, self.communication_retry_timer, uint)
            .opt(19, self.sequence_delay_timer, uint)
            .opt(20, self.sequence_retry_count, uint)
            .opt(21, self.trigger, Value::Boolean)
            .opt(22, self.preferred_transport, |t| {
                Value::String(t.letter().to_string())
            })
            .opt(23, self.mute_send, Value::Boolean)
            .done()
    }
}

impl AclConfig {
    /// This entry as an Access Control (/2) instance.
    pub fn to_instance(&self) -> Instance {
        let mut b = Builder::default()
            .set(0, int(self.object_id))
            .set(1, int(self.object_instance_id))
            .opt(3, self.access_control_owner, int);
        if let Some(acls) = &self.acls {
            // ACL values are 0..=31 by definition; anything wider is clamped to what an
            // Integer resource holds rather than wrapped.
            let rights = acls
                .iter()
                .map(|(ssid, bits)| {
                    (
                        *ssid,
                        Value::Integer(i64::try_from(*bits).unwrap_or(i64::MAX)),
                    )
                })
                .collect();
            b.0.insert(2, Resource::Multiple(rights));
        }
        b.done()
    }
}

impl OscoreObject {
    /// This context as an OSCORE (/21) instance.
    pub fn to_instance(&self) -> Instance {
        Builder::default()
            .set(
                0,
                Value::Opaque(self.oscore_master_secret.clone().unwrap_or_default()),
            )
            .set(
                1,
                Value::Opaque(self.oscore_sender_id.clone().unwrap_or_default()),
            )
            .set(
                2,
                Value::Opaque(self.oscore_recipient_id.clone().unwrap_or_default()),
            )
            .opt(3, self.oscore_aead_algorithm, int)
            .opt(4, self.oscore_hmac_algorithm, int)
            .opt(5, self.oscore_master_salt.clone(), Value::Opaque)
            .done()
    }
}

/// One Bootstrap-Write: an instance and where it goes.
#[derive(Clone, PartialEq)]
pub struct InstanceWrite {
    pub path: Path,
    pub instance: Instance,
}

impl BootstrapConfig {
    /// The instances to write, in write order: /0, /1, /2, /21, each by instance ID.
    /// `security_ids` renames Security instances (Bootstrap-Discover with
    /// `autoIdForSecurityObject`); a key without an entry keeps its own ID.
    pub fn instance_writes(&self, security_ids: &BTreeMap<u16, u16>) -> Vec<InstanceWrite> {
        let mut security: Vec<(u16, Instance)> = self
            .security
            .iter()
            .map(|(id, s)| (*security_ids.get(id).unwrap_or(id), s.to_instance()))
            .collect();
        security.sort_by_key(|(id, _)| *id);
        let servers = self
            .servers
            .iter()
            .map(|(id, s)| (SERVER, *id, s.to_instance()));
        let acls = self
            .acls
            .iter()
            .map(|(id, a)| (ACCESS_CONTROL, *id, a.to_instance()));
        let oscore = self
            .oscore
            .iter()
            .map(|(id, o)| (OSCORE, *id, o.to_instance()));
        security
            .into_iter()
            .map(|(id, i)| (SECURITY, id, i))
            .chain(servers)
            .chain(acls)
            .chain(oscore)
            .map(|(object, id, instance)| InstanceWrite {
                path: Path::Instance(object, id),
                instance,
            })
            .collect()
    }

    /// The whole configuration as object nodes (/0, /1, and /2, /21 when configured): the
    /// content of a Bootstrap-Pack.
    pub fn object_nodes(&self) -> NodeMap {
        let mut objects: BTreeMap<u16, BTreeMap<u16, Instance>> = BTreeMap::new();
        // Security and Server are mandatory objects: present even when empty.
        objects.entry(SECURITY).or_default();
        objects.entry(SERVER).or_default();
        for w in self.instance_writes(&BTreeMap::new()) {
            if let Path::Instance(o, i) = w.path {
                objects.entry(o).or_default().insert(i, w.instance);
            }
        }
        objects
            .into_iter()
            .map(|(o, instances)| (Path::Object(o), Node::Object(instances)))
            .collect()
    }
}

// `Instance` holds secrets (PSKs, private keys): never print values.
impl std::fmt::Debug for InstanceWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceWrite")
            .field("path", &self.path)
            .field(
                "resources",
                &self.instance.resources.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::bootstrap::config::{SecurityMode, ServerConfig};

    #[test]
    fn minimal_server_account() {
        // standards.md §1.5: /0/x {0, 1, 2, 3, 4, 5, 10} + /1/y {0, 1, 6, 7}.
        let sec = ServerSecurity::psk("coaps://dm:5684", 101, b"dev", b"k");
        let i = sec.to_instance();
        let get = |id| i.resources.get(&id).cloned();
        assert_eq!(
            get(0),
            Some(Resource::Single(Value::String("coaps://dm:5684".into())))
        );
        assert_eq!(get(1), Some(Resource::Single(Value::Boolean(false))));
        assert_eq!(get(2), Some(Resource::Single(Value::Integer(0))));
        assert_eq!(
            get(3),
            Some(Resource::Single(Value::Opaque(b"dev".to_vec())))
        );
        assert_eq!(get(5), Some(Resource::Single(Value::Opaque(b"k".to_vec()))));
        assert_eq!(get(10), Some(Resource::Single(Value::Integer(101))));
        assert_eq!(get(17), None);

        let s = ServerConfig::new(101).to_instance();
        assert_eq!(
            s.resources.get(&0),
            Some(&Resource::Single(Value::Integer(101)))
        );
        assert_eq!(
            s.resources.get(&1),
            Some(&Resource::Single(Value::Integer(86_400)))
        );
        assert_eq!(
            s.resources.get(&6),
            Some(&Resource::Single(Value::Boolean(true)))
        );
        assert_eq!(
            s.resources.get(&7),
            Some(&Resource::Single(Value::String("U".into())))
        );
    }

    #[test]
    fn est_mode_writes_4_and_the_server_certificate() {
        let i = ServerSecurity::est("coaps://dm:5684", 1, &[0x30, 1, 2]).to_instance();
        assert_eq!(
            i.resources.get(&2),
            Some(&Resource::Single(Value::Integer(4)))
        );
        assert_eq!(
            i.resources.get(&4),
            Some(&Resource::Single(Value::Opaque(vec![0x30, 1, 2])))
        );
        assert_eq!(SecurityMode::Est.code(), 4);
    }

    #[test]
    fn write_order_and_renaming() {
        let mut c = BootstrapConfig::default();
        c.security
            .insert(0, ServerSecurity::psk("coaps://a", 1, b"a", b"a"));
        c.security
            .insert(1, ServerSecurity::psk("coaps://b", 2, b"b", b"b"));
        c.servers.insert(0, ServerConfig::new(1));
        c.oscore.insert(0, OscoreObject::default());
        c.acls.insert(
            3,
            AclConfig {
                object_id: 3,
                object_instance_id: 0,
                acls: Some(BTreeMap::from([(1, 15)])),
                access_control_owner: Some(1),
            },
        );
        let renamed = BTreeMap::from([(0, 5), (1, 0)]);
        let paths: Vec<String> = c
            .instance_writes(&renamed)
            .iter()
            .map(|w| w.path.to_string())
            .collect();
        assert_eq!(paths, ["/0/0", "/0/5", "/1/0", "/2/3", "/21/0"]);
        let nodes = c.object_nodes();
        assert_eq!(
            nodes.keys().map(Path::to_string).collect::<Vec<_>>(),
            ["/0", "/1", "/2", "/21"]
        );
    }
}
