//! The node tree: flattening to leaves and rebuilding gives the same tree, grouping composite
//! leaves finds the requested paths, and rebuilding refuses leaves that contradict the model.

mod common;

use common::REGISTRY;
use proptest::prelude::*;
use std::collections::BTreeMap;
use steward_objects::codec::{group_leaves, group_timestamped};
use steward_objects::node::{NodeError, build_node};
use steward_objects::{Instance, NoModels, Node, Path, Resource, Value};

fn owned_leaves(path: &Path, node: &Node) -> Vec<(Path, Value)> {
    node.leaves(path)
        .expect("generated node fits its path")
        .into_iter()
        .map(|(p, v)| (p, v.clone()))
        .collect()
}

proptest! {
    #[test]
    fn leaves_rebuild_the_same_node((path, node) in common::any_node()) {
        let leaves = owned_leaves(&path, &node);
        prop_assert_eq!(build_node(&path, leaves, &*REGISTRY), Ok(node));
    }

    #[test]
    fn composite_leaves_group_under_requested_paths(map in common::node_map()) {
        let leaves: Vec<_> = map.iter().flat_map(|(p, n)| owned_leaves(p, n)).collect();
        let requested: Vec<Path> = map.keys().copied().collect();
        let grouped = group_leaves(leaves, Some(&requested), &*REGISTRY).expect("groups");
        prop_assert_eq!(grouped, map);
    }

    #[test]
    fn time_series_regroups(series in common::time_series()) {
        let timed: Vec<_> = series
            .iter()
            .flat_map(|e| {
                e.nodes
                    .iter()
                    .flat_map(|(p, n)| owned_leaves(p, n))
                    .map(move |leaf| (e.time, leaf))
            })
            .collect();
        prop_assert_eq!(group_timestamped(timed, &*REGISTRY).expect("groups"), series);
    }
}

#[test]
fn model_decides_multiplicity() {
    // /3/0/11 Error Code is multiple: a bare resource value contradicts the model.
    let leaves = vec![(Path::Resource(3, 0, 11), Value::Integer(0))];
    assert!(matches!(
        build_node(&Path::Instance(3, 0), leaves, &*REGISTRY),
        Err(NodeError::Multiplicity { .. })
    ));
    // /3/0/0 Manufacturer is single: an instance of it contradicts the model.
    let leaves = vec![(
        Path::ResourceInstance(3, 0, 0, 1),
        Value::String("x".into()),
    )];
    assert!(matches!(
        build_node(&Path::Instance(3, 0), leaves, &*REGISTRY),
        Err(NodeError::Multiplicity { .. })
    ));
    // A resource instance of a single resource is refused at its own path too.
    let leaves = vec![(
        Path::ResourceInstance(3, 0, 0, 1),
        Value::String("x".into()),
    )];
    assert!(matches!(
        build_node(&Path::ResourceInstance(3, 0, 0, 1), leaves, &*REGISTRY),
        Err(NodeError::Multiplicity { .. })
    ));
    // Without a model the depth decides.
    let leaves = vec![(
        Path::ResourceInstance(3, 0, 0, 1),
        Value::String("x".into()),
    )];
    let node = build_node(&Path::Resource(3, 0, 0), leaves, &NoModels).expect("builds");
    assert_eq!(
        node,
        Node::Resource(Resource::Multiple(BTreeMap::from([(
            1,
            Value::String("x".into())
        )])))
    );
}

#[test]
fn rebuild_refuses_strays_and_duplicates() {
    let v = || Value::Integer(1);
    let outside = vec![(Path::Resource(3, 1, 9), v())];
    assert!(matches!(
        build_node(&Path::Instance(3, 0), outside, &*REGISTRY),
        Err(NodeError::OutsideBase { .. })
    ));
    let twice = vec![
        (Path::Resource(3, 0, 9), v()),
        (Path::Resource(3, 0, 9), v()),
    ];
    assert!(matches!(
        build_node(&Path::Instance(3, 0), twice, &*REGISTRY),
        Err(NodeError::Duplicate { .. })
    ));
    assert!(matches!(
        build_node(&Path::Resource(3, 0, 9), vec![], &*REGISTRY),
        Err(NodeError::Empty { .. })
    ));
    assert_eq!(
        build_node(&Path::Instance(3, 0), vec![], &*REGISTRY),
        Ok(Node::Instance(Instance::default()))
    );
}

#[test]
fn nodes_only_fit_their_depth() {
    let res = Node::Resource(Resource::Single(Value::Boolean(true)));
    assert!(res.fits(&Path::Resource(1, 0, 6)));
    assert!(!res.fits(&Path::Instance(1, 0)));
    assert!(res.leaves(&Path::Object(1)).is_err());
}
