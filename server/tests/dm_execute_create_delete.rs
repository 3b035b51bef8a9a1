//! Execute (with and without arguments), Create (instance named by us or by the device) and
//! Delete.

mod dm_support;

use std::collections::BTreeMap;

use dm_support::World;
use steward::dm::{DmError, DownlinkRequest, DownlinkResponse};
use steward_coap::message::Code;
use steward_objects::{Node, Path, Resource, Value, Version};

#[test]
fn execute_resets_the_error_code_and_refuses_non_executables() {
    let mut world = World::registered(Version::V1_1);
    let done = world.request(DownlinkRequest::Execute {
        path: Path::Resource(3, 0, 12),
        args: None,
    });
    assert_eq!(done, Ok(DownlinkResponse::Execute));
    let done = world.request(DownlinkRequest::Execute {
        path: Path::Resource(1, 0, 8),
        args: Some("0='now',1".into()),
    });
    assert_eq!(done, Ok(DownlinkResponse::Execute));
    match world.request(DownlinkRequest::Execute {
        path: Path::Resource(3, 0, 0),
        args: None,
    }) {
        Err(DmError::Device { code, .. }) => assert_eq!(code, Code::METHOD_NOT_ALLOWED),
        other => panic!("{other:?}"),
    }
}

fn server_account(ssid: i64) -> BTreeMap<u16, Resource> {
    BTreeMap::from([
        (0, Resource::Single(Value::Integer(ssid))),
        (1, Resource::Single(Value::Integer(600))),
        (6, Resource::Single(Value::Boolean(false))),
        (7, Resource::Single(Value::String("U".into()))),
    ])
}

#[test]
fn create_read_and_delete_an_instance() {
    for lwm2m in [Version::V1_0, Version::V1_1, Version::V1_2] {
        let mut world = World::registered(lwm2m);
        let created = world.request(DownlinkRequest::Create {
            object: 1,
            instance: Some(5),
            resources: server_account(5),
            format: None,
        });
        assert_eq!(
            created,
            Ok(DownlinkResponse::Create {
                location: Some(Path::Instance(1, 5))
            }),
            "{lwm2m}"
        );
        match world.request(DownlinkRequest::Read {
            path: Path::Resource(1, 5, 0),
            format: None,
        }) {
            Ok(DownlinkResponse::Read { node: Some(n), .. }) => {
                assert!(matches!(n, Node::Resource(Resource::Single(_))), "{lwm2m}")
            }
            other => panic!("{lwm2m}: {other:?}"),
        }

        // Without an ID the device picks one and names it in Location-Path.
        match world.request(DownlinkRequest::Create {
            object: 1,
            instance: None,
            resources: server_account(6),
            format: None,
        }) {
            Ok(DownlinkResponse::Create {
                location: Some(Path::Instance(1, i)),
            }) => assert!(i != 0 && i != 5, "{lwm2m}: a free ID, got {i}"),
            other => panic!("{lwm2m}: {other:?}"),
        }

        let deleted = world.request(DownlinkRequest::Delete {
            path: Path::Instance(1, 5),
        });
        assert_eq!(deleted, Ok(DownlinkResponse::Delete), "{lwm2m}");
        match world.request(DownlinkRequest::Read {
            path: Path::Instance(1, 5),
            format: None,
        }) {
            Err(DmError::Device { code, .. }) => assert_eq!(code, Code::NOT_FOUND),
            other => panic!("{lwm2m}: {other:?}"),
        }
        // The Device object has exactly one instance: it cannot be deleted.
        match world.request(DownlinkRequest::Delete {
            path: Path::Instance(3, 0),
        }) {
            Err(DmError::Device { code, .. }) => assert_eq!(code, Code::METHOD_NOT_ALLOWED),
            other => panic!("{lwm2m}: {other:?}"),
        }
    }
}
