//! Read-Composite and Write-Composite (1.1+), in every composite format the client allows.

mod dm_support;

use dm_support::World;
use steward::dm::{DownlinkRequest, DownlinkResponse};
use steward_objects::{ContentFormat, Node, NodeMap, Path, Resource, Value, Version};

#[test]
fn read_composite_in_every_composite_format() {
    for lwm2m in [Version::V1_1, Version::V1_2] {
        let mut world = World::registered(lwm2m);
        let paths = vec![
            Path::Resource(3, 0, 0),
            Path::Resource(3, 0, 9),
            Path::Instance(1, 0),
        ];
        let mut formats = vec![ContentFormat::SenmlJson, ContentFormat::SenmlCbor];
        if lwm2m >= Version::V1_2 {
            formats.push(ContentFormat::Lwm2mCbor);
        }
        for format in formats {
            match world.request(DownlinkRequest::ReadComposite {
                paths: paths.clone(),
                format: Some(format),
            }) {
                Ok(DownlinkResponse::ReadComposite { nodes }) => {
                    for path in &paths {
                        assert_eq!(
                            nodes.get(path),
                            world.device.device().node(path).as_ref(),
                            "{lwm2m} {format} {path}"
                        );
                    }
                }
                other => panic!("{lwm2m} {format}: {other:?}"),
            }
        }
    }
}

#[test]
fn write_composite_then_read_back() {
    for lwm2m in [Version::V1_1, Version::V1_2] {
        let mut world = World::registered(lwm2m);
        let utc = Path::Resource(3, 0, 14);
        let zone = Path::Resource(3, 0, 15);
        let nodes = NodeMap::from([
            (
                utc,
                Node::Resource(Resource::Single(Value::String("+03:00".into()))),
            ),
            (
                zone,
                Node::Resource(Resource::Single(Value::String("Europe/Moscow".into()))),
            ),
        ]);
        let done = world.request(DownlinkRequest::WriteComposite {
            nodes: nodes.clone(),
            format: None,
        });
        assert_eq!(done, Ok(DownlinkResponse::WriteComposite), "{lwm2m}");
        match world.request(DownlinkRequest::ReadComposite {
            paths: vec![utc, zone],
            format: None,
        }) {
            Ok(DownlinkResponse::ReadComposite { nodes: read }) => assert_eq!(read, nodes),
            other => panic!("{lwm2m}: {other:?}"),
        }
    }
}
