//! Discover (with depth on 1.2) and Write-Attributes, whose result Discover shows.

mod dm_support;

use dm_support::World;
use steward::dm::{DmError, DownlinkRequest, DownlinkResponse};
use steward_objects::link::{Attr, NotificationAttributes};
use steward_objects::{Path, Version};

fn discover(world: &mut World, path: Path, depth: Option<u8>) -> Vec<Path> {
    match world.request(DownlinkRequest::Discover { path, depth }) {
        Ok(DownlinkResponse::Discover { links }) => links.links.iter().map(|l| l.path).collect(),
        other => panic!("{path}: {other:?}"),
    }
}

#[test]
fn discover_lists_the_tree() {
    for lwm2m in [Version::V1_0, Version::V1_1, Version::V1_2] {
        let mut world = World::registered(lwm2m);
        let links = discover(&mut world, Path::Object(3), None);
        assert!(links.contains(&Path::Object(3)), "{lwm2m}: {links:?}");
        assert!(links.contains(&Path::Instance(3, 0)), "{lwm2m}");
        assert!(links.contains(&Path::Resource(3, 0, 9)), "{lwm2m}");
        let links = discover(&mut world, Path::Resource(3, 0, 9), None);
        assert_eq!(links, [Path::Resource(3, 0, 9)], "{lwm2m}");
    }
    let mut world = World::registered(Version::V1_2);
    let links = discover(&mut world, Path::Object(3), Some(1));
    assert!(links.contains(&Path::Instance(3, 0)));
    assert!(
        !links.contains(&Path::Resource(3, 0, 9)),
        "depth 1: {links:?}"
    );

    let mut world = World::registered(Version::V1_1);
    assert!(matches!(
        world.submit(
            DownlinkRequest::Discover {
                path: Path::Object(3),
                depth: Some(1)
            },
            std::time::Duration::from_secs(5)
        ),
        Err(DmError::VersionTooLow { .. })
    ));
}

#[test]
fn write_attributes_then_discover_shows_them() {
    let mut world = World::registered(Version::V1_1);
    let attributes = NotificationAttributes {
        pmin: Attr::Set(10),
        pmax: Attr::Set(60),
        ..NotificationAttributes::default()
    };
    let done = world.request(DownlinkRequest::WriteAttributes {
        path: Path::Resource(3, 0, 9),
        attributes,
    });
    assert_eq!(done, Ok(DownlinkResponse::WriteAttributes));
    match world.request(DownlinkRequest::Discover {
        path: Path::Resource(3, 0, 9),
        depth: None,
    }) {
        Ok(DownlinkResponse::Discover { links }) => {
            let link = links.get(&Path::Resource(3, 0, 9)).expect("a link");
            assert_eq!(link.attributes.pmin, Attr::Set(10));
            assert_eq!(link.attributes.pmax, Attr::Set(60));
        }
        other => panic!("{other:?}"),
    }
    // lt must stay below gt: refused here, never sent.
    let bad = NotificationAttributes {
        gt: Attr::Set(10.0),
        lt: Attr::Set(20.0),
        ..NotificationAttributes::default()
    };
    assert!(matches!(
        world.submit(
            DownlinkRequest::WriteAttributes {
                path: Path::Resource(3, 0, 9),
                attributes: bad
            },
            std::time::Duration::from_secs(5)
        ),
        Err(DmError::InvalidAttributes(_))
    ));
}
