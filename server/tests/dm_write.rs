//! Write (replace and partial update), read back; a read-only resource gives 4.05.

mod dm_support;

use std::collections::BTreeMap;

use dm_support::World;
use steward::dm::{DmError, DownlinkRequest, DownlinkResponse, WriteMode};
use steward_coap::message::Code;
use steward_objects::{Instance, Node, Path, Resource, Value, Version};

fn read(world: &mut World, path: Path) -> Node {
    match world.request(DownlinkRequest::Read { path, format: None }) {
        Ok(DownlinkResponse::Read { node: Some(n), .. }) => n,
        other => panic!("{path}: {other:?}"),
    }
}

fn text(s: &str) -> Value {
    Value::String(s.into())
}

#[test]
fn replace_and_partial_update_then_read_back() {
    for lwm2m in [Version::V1_0, Version::V1_1, Version::V1_2] {
        let mut world = World::registered(lwm2m);
        let utc = Path::Resource(3, 0, 14);
        let written = world.request(DownlinkRequest::Write {
            path: utc,
            node: Node::Resource(Resource::Single(text("+02:00"))),
            mode: WriteMode::Replace,
            format: None,
        });
        assert_eq!(written, Ok(DownlinkResponse::Write), "{lwm2m}");
        assert_eq!(
            read(&mut world, utc),
            Node::Resource(Resource::Single(text("+02:00"))),
            "{lwm2m}"
        );

        let update = Instance {
            resources: BTreeMap::from([
                (14, Resource::Single(text("+01:00"))),
                (15, Resource::Single(text("Europe/Paris"))),
            ]),
        };
        let written = world.request(DownlinkRequest::Write {
            path: Path::Instance(3, 0),
            node: Node::Instance(update),
            mode: WriteMode::PartialUpdate,
            format: None,
        });
        assert_eq!(written, Ok(DownlinkResponse::Write), "{lwm2m}");
        let Node::Instance(after) = read(&mut world, Path::Instance(3, 0)) else {
            panic!("{lwm2m}: an instance");
        };
        assert_eq!(
            after.resources.get(&14),
            Some(&Resource::Single(text("+01:00")))
        );
        assert_eq!(
            after.resources.get(&15),
            Some(&Resource::Single(text("Europe/Paris")))
        );
        // Partial update left the rest alone.
        assert_eq!(
            after.resources.get(&2),
            Some(&Resource::Single(text("SIM-dm-device"))),
            "{lwm2m}"
        );
    }
}

#[test]
fn writing_a_read_only_resource_is_4_05() {
    let mut world = World::registered(Version::V1_1);
    match world.request(DownlinkRequest::Write {
        path: Path::Resource(3, 0, 0),
        node: Node::Resource(Resource::Single(text("Someone else"))),
        mode: WriteMode::Replace,
        format: None,
    }) {
        Err(DmError::Device { code, .. }) => assert_eq!(code, Code::METHOD_NOT_ALLOWED),
        other => panic!("{other:?}"),
    }
}
