//! Read (Transport §6.4.4) of an object, an instance, a resource and a resource instance, in
//! every format the device's version allows, compared with what the device holds.

mod dm_support;

use dm_support::World;
use steward::dm::{DmError, DownlinkRequest, DownlinkResponse};
use steward_coap::message::Code;
use steward_objects::format::Payload;
use steward_objects::{ContentFormat, DataType, Node, Path, Version};

fn shape(path: &Path) -> Payload {
    match path {
        Path::Resource(3, 0, 0) => Payload::SingleValue(DataType::String),
        Path::Resource(3, 0, 9) => Payload::SingleValue(DataType::Integer),
        Path::ResourceInstance(..) => Payload::SingleValue(DataType::Integer),
        _ => Payload::Tree,
    }
}

#[test]
fn read_every_level_in_every_allowed_format() {
    for lwm2m in [Version::V1_0, Version::V1_1, Version::V1_2] {
        let mut world = World::registered(lwm2m);
        let formats = world.device.device().client_formats();
        let mut paths = vec![
            Path::Object(3),
            Path::Instance(3, 0),
            Path::Resource(3, 0, 0),
            Path::Resource(3, 0, 9),
            Path::Resource(3, 0, 7),
        ];
        if lwm2m >= Version::V1_1 {
            paths.push(Path::ResourceInstance(3, 0, 7, 1));
        }
        let mut checked = 0;
        for path in paths {
            let expected = world.device.device().node(&path).expect("device has it");
            for format in world.device.device().formats() {
                if !formats.accepts(format, shape(&path)) {
                    continue;
                }
                let result = world.request(DownlinkRequest::Read {
                    path,
                    format: Some(format),
                });
                let opaque_for_non_opaque = format == ContentFormat::Opaque
                    && shape(&path) != Payload::SingleValue(DataType::Opaque);
                if opaque_for_non_opaque {
                    // The device cannot put a string or an integer in opaque: 4.06.
                    match result {
                        Err(DmError::Device { code, .. }) => {
                            assert_eq!(code, Code::NOT_ACCEPTABLE, "{lwm2m} {path} {format}")
                        }
                        other => panic!("{lwm2m} {path} {format}: {other:?}"),
                    }
                    continue;
                }
                match result {
                    Ok(DownlinkResponse::Read {
                        node: Some(node),
                        format: got,
                    }) => {
                        assert_eq!(got, Some(format), "{lwm2m} {path}");
                        assert_eq!(node, expected, "{lwm2m} {path} read in {format}");
                        checked += 1;
                    }
                    other => panic!("{lwm2m} {path} {format}: {other:?}"),
                }
            }
        }
        assert!(checked >= 5, "{lwm2m}: {checked} reads compared");
    }
}

#[test]
fn read_without_format_uses_the_negotiated_one() {
    for (lwm2m, tree) in [
        (Version::V1_0, ContentFormat::Tlv),
        (Version::V1_1, ContentFormat::SenmlCbor),
        (Version::V1_2, ContentFormat::Lwm2mCbor),
    ] {
        let mut world = World::registered(lwm2m);
        match world.request(DownlinkRequest::Read {
            path: Path::Instance(3, 0),
            format: None,
        }) {
            Ok(DownlinkResponse::Read {
                node: Some(Node::Instance(_)),
                format,
            }) => assert_eq!(format, Some(tree), "{lwm2m}"),
            other => panic!("{lwm2m}: {other:?}"),
        }
        match world.request(DownlinkRequest::Read {
            path: Path::Resource(3, 0, 9),
            format: None,
        }) {
            Ok(DownlinkResponse::Read { format, .. }) => {
                assert_eq!(format, Some(ContentFormat::Text), "{lwm2m}")
            }
            other => panic!("{lwm2m}: {other:?}"),
        }
    }
}
