//! Bootstrap-Pack (LwM2M 1.2, Transport §6.4.2): `GET /bspack?ep=` is answered 2.05 with the
//! whole configuration in one payload, and no Bootstrap-Finish follows.
//!
//! The pack holds the objects /0 and /1, and /2 and /21 when configured, with every instance
//! and resource typed as in Bootstrap-Write (see [`super::nodes`]). It is written in SenML CBOR
//! (112) unless the request's Accept asks for SenML JSON (110) or LwM2M CBOR (11544), the three
//! formats Transport lists; any other Accept is 4.06.
//!
//! What a pack cannot say, and why that is acceptable:
//! - `toDelete`: a pack has no delete operation. The client applies a pack as its new
//!   configuration (Core 1.2 §6.1.x), so there is nothing left to delete.
//! - `autoIdForSecurityObject`: there is no Bootstrap-Discover before a pack, so the Security
//!   instances keep their configured IDs.
//!
//! Identity and configuration rules are those of the Bootstrap-Request: the endpoint must be
//! the authenticated one (4.03), and an endpoint without configuration gets 4.00.

use steward_coap::message::{Code, Response};
use steward_objects::ContentFormat;
use steward_objects::codec::{self, EncodeError};

use super::config::BootstrapConfig;
use super::error::BootstrapError;
use super::request::{PackRequest, authorize};
use super::session::ConfigSource;
use crate::lwm2m::Peer;

/// The formats a pack is available in, the default first.
pub const PACK_FORMATS: [ContentFormat; 3] = [
    ContentFormat::SenmlCbor,
    ContentFormat::SenmlJson,
    ContentFormat::Lwm2mCbor,
];

/// The format for a request's Accept option (`None`: SenML CBOR).
pub fn pack_format(accept: Option<u16>) -> Result<ContentFormat, BootstrapError> {
    match accept {
        None => Ok(ContentFormat::SenmlCbor),
        Some(code) => ContentFormat::from_code(code)
            .filter(|f| PACK_FORMATS.contains(f))
            .ok_or(BootstrapError::NotAcceptable(code)),
    }
}

/// The pack payload of `config` in `format` (one of [`PACK_FORMATS`]).
pub fn encode_pack(
    config: &BootstrapConfig,
    format: ContentFormat,
) -> Result<Vec<u8>, EncodeError> {
    codec::encode_nodes(format, &config.object_nodes())
}

/// Answers a Bootstrap-Pack-Request from `peer`: the response, the endpoint and the format.
pub fn answer<C: ConfigSource + ?Sized>(
    peer: &Peer,
    request: &PackRequest,
    allow_unsecured: bool,
    configs: &C,
) -> Result<(Response, String, ContentFormat), BootstrapError> {
    let endpoint = authorize(request.endpoint.as_deref(), &peer.identity, allow_unsecured)?;
    let format = pack_format(request.accept)?;
    let config = configs
        .lookup(&endpoint)
        .map_err(BootstrapError::ConfigUnavailable)?
        .ok_or_else(|| BootstrapError::NoConfig(endpoint.chars().take(64).collect()))?;
    let invalid = |reason: String| BootstrapError::InvalidConfig {
        endpoint: endpoint.clone(),
        reason,
    };
    config.validate().map_err(|e| invalid(e.to_string()))?;
    let payload = encode_pack(&config, format).map_err(|e| invalid(e.to_string()))?;
    let response = Response::new(Code::CONTENT).with_payload(format.code(), payload);
    Ok((response, endpoint, format))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;

    use super::*;
    use crate::bootstrap::config::{AclConfig, OscoreObject, ServerConfig, ServerSecurity};
    use steward_objects::{ModelRegistry, Node, Path, Resource, Value};

    fn config() -> BootstrapConfig {
        let mut c = BootstrapConfig::default();
        c.servers.insert(0, ServerConfig::new(101));
        c.security.insert(
            1,
            ServerSecurity {
                oscore_security_mode: Some(0),
                ..ServerSecurity::psk("coaps://dm:5684", 101, b"dev", b"0123456789abcdef")
            },
        );
        c.oscore.insert(
            0,
            OscoreObject {
                oscore_master_secret: Some(vec![1; 16]),
                oscore_sender_id: Some(vec![1]),
                oscore_recipient_id: Some(vec![2]),
                ..OscoreObject::default()
            },
        );
        c.acls.insert(
            0,
            AclConfig {
                object_id: 3,
                object_instance_id: 0,
                acls: Some(BTreeMap::from([(101, 7)])),
                access_control_owner: Some(101),
            },
        );
        c
    }

    #[test]
    fn pack_decodes_with_typed_resources_in_every_format() {
        let models = ModelRegistry::core();
        let c = config();
        c.validate().unwrap();
        for format in PACK_FORMATS {
            let payload = encode_pack(&c, format).unwrap();
            let nodes = codec::decode_nodes(format, &payload, None, &models).unwrap();
            let value = |p: &str| -> Option<Value> {
                let path: Path = p.parse().unwrap();
                let (o, i, r) = (path.object_id()?, path.instance_id()?, path.resource_id()?);
                let resource = match nodes.get(&path) {
                    Some(Node::Resource(res)) => Some(res.clone()),
                    _ => match nodes.get(&Path::Object(o)) {
                        Some(Node::Object(obj)) => {
                            obj.get(&i).and_then(|inst| inst.resources.get(&r)).cloned()
                        }
                        _ => None,
                    },
                };
                match resource {
                    Some(Resource::Single(v)) => Some(v),
                    _ => None,
                }
            };
            assert_eq!(
                value("/0/1/0"),
                Some(Value::String("coaps://dm:5684".into())),
                "{format}"
            );
            assert_eq!(value("/0/1/3"), Some(Value::Opaque(b"dev".to_vec())));
            assert_eq!(value("/0/1/10"), Some(Value::Integer(101)));
            assert_eq!(
                value("/0/1/17"),
                Some(Value::Objlnk(steward_objects::ObjLink::new(21, 0)))
            );
            assert_eq!(value("/1/0/0"), Some(Value::Integer(101)));
            assert_eq!(value("/1/0/7"), Some(Value::String("U".into())));
            assert_eq!(value("/21/0/1"), Some(Value::Opaque(vec![1])));
            assert_eq!(value("/2/0/0"), Some(Value::Integer(3)));
        }
    }

    #[test]
    fn accept_selects_the_format() {
        assert_eq!(pack_format(None), Ok(ContentFormat::SenmlCbor));
        assert_eq!(pack_format(Some(110)), Ok(ContentFormat::SenmlJson));
        assert_eq!(
            pack_format(Some(11542)).unwrap_err().code(),
            Code::NOT_ACCEPTABLE
        );
    }
}
