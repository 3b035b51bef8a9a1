//! The LwM2M node tree: objects, instances, single and multiple resources, resource instances.
//!
//! Nodes carry no IDs of their own: an ID is the key of the map that holds the node, or the
//! path it was read from. A node therefore cannot disagree with its address.

use std::collections::BTreeMap;

use crate::model::Models;
use crate::path::Path;
use crate::value::{DataType, Value};

/// An object instance: its resources by ID.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Instance {
    pub resources: BTreeMap<u16, Resource>,
}

/// A resource: one value, or values by resource-instance ID.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    Single(Value),
    Multiple(BTreeMap<u16, Value>),
}

/// The content found at a path. Which variant is legal depends on the path's depth:
/// `Object` at `/o`, `Instance` at `/o/i`, `Resource` at `/o/i/r`, `ResourceInstance` at
/// `/o/i/r/ri` (see [`Node::fits`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Object(BTreeMap<u16, Instance>),
    Instance(Instance),
    Resource(Resource),
    ResourceInstance(Value),
}

/// Nodes keyed by path: the content of composite operations and of one Send/notification entry.
pub type NodeMap = BTreeMap<Path, Node>;

/// One entry of a time series: the nodes reported at one time (seconds since the epoch as the
/// device wrote it; SenML allows fractions and relative times, see [`Timestamp`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TimestampedNodes {
    pub time: Option<Timestamp>,
    pub nodes: NodeMap,
}

/// A SenML time: seconds, absolute if at least 2^28 (RFC 8428 §4.5.3), otherwise relative to
/// the time the receiver got the message. Kept as sent; [`Timestamp::resolve`] makes it absolute.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Timestamp(pub f64);

impl Timestamp {
    /// RFC 8428 §4.5.3: values below 2^28 are relative to the time of reception.
    pub const RELATIVE_BELOW: f64 = 268_435_456.0;

    pub fn is_relative(self) -> bool {
        self.0 < Self::RELATIVE_BELOW
    }

    /// Absolute seconds since the epoch, given when the message arrived.
    pub fn resolve(self, now: f64) -> f64 {
        if self.is_relative() {
            now + self.0
        } else {
            self.0
        }
    }
}

/// A leaf value with its full path: how SenML, OMA JSON and LwM2M CBOR see the tree.
pub type Leaf = (Path, Value);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NodeError {
    #[error("{path}: a {node} node cannot stand at this path")]
    WrongDepth { path: Path, node: &'static str },
    #[error("{path} is outside the requested path {base}")]
    OutsideBase { path: Path, base: Path },
    #[error("{path}: value given twice")]
    Duplicate { path: Path },
    #[error("{path}: the model says this resource is {expected}, the payload says otherwise")]
    Multiplicity { path: Path, expected: &'static str },
    #[error("{path}: no value at this path")]
    Empty { path: Path },
}

impl Node {
    fn kind(&self) -> &'static str {
        match self {
            Node::Object(_) => "object",
            Node::Instance(_) => "instance",
            Node::Resource(_) => "resource",
            Node::ResourceInstance(_) => "resource instance",
        }
    }

    /// True when this node may stand at `path`.
    pub fn fits(&self, path: &Path) -> bool {
        matches!(
            (self, path),
            (Node::Object(_), Path::Object(..))
                | (Node::Instance(_), Path::Instance(..))
                | (Node::Resource(_), Path::Resource(..))
                | (Node::ResourceInstance(_), Path::ResourceInstance(..))
        )
    }

    /// Errors unless this node may stand at `path`.
    pub fn check_fits(&self, path: &Path) -> Result<(), NodeError> {
        if self.fits(path) {
            Ok(())
        } else {
            Err(NodeError::WrongDepth {
                path: *path,
                node: self.kind(),
            })
        }
    }

    /// Every value below this node with its full path, in tree order.
    pub fn leaves(&self, path: &Path) -> Result<Vec<(Path, &Value)>, NodeError> {
        self.check_fits(path)?;
        let mut out = Vec::new();
        let at = |p: &Path, id: u16| {
            p.child(id).ok_or(NodeError::WrongDepth {
                path: *p,
                node: "child",
            })
        };
        match self {
            Node::Object(instances) => {
                for (iid, inst) in instances {
                    inst.push_leaves(&at(path, *iid)?, &mut out)?;
                }
            }
            Node::Instance(inst) => inst.push_leaves(path, &mut out)?,
            Node::Resource(res) => res.push_leaves(path, &mut out)?,
            Node::ResourceInstance(v) => out.push((*path, v)),
        }
        Ok(out)
    }
}

impl Instance {
    fn push_leaves<'a>(
        &'a self,
        path: &Path,
        out: &mut Vec<(Path, &'a Value)>,
    ) -> Result<(), NodeError> {
        for (rid, res) in &self.resources {
            let p = path.child(*rid).ok_or(NodeError::WrongDepth {
                path: *path,
                node: "resource",
            })?;
            res.push_leaves(&p, out)?;
        }
        Ok(())
    }
}

impl Resource {
    fn push_leaves<'a>(
        &'a self,
        path: &Path,
        out: &mut Vec<(Path, &'a Value)>,
    ) -> Result<(), NodeError> {
        match self {
            Resource::Single(v) => out.push((*path, v)),
            Resource::Multiple(values) => {
                for (riid, v) in values {
                    let p = path.child(*riid).ok_or(NodeError::WrongDepth {
                        path: *path,
                        node: "resource instance",
                    })?;
                    out.push((p, v));
                }
            }
        }
        Ok(())
    }

    pub fn is_multiple(&self) -> bool {
        matches!(self, Resource::Multiple(_))
    }
}

/// Builds the node at `base` from leaf values (SenML records, OMA JSON entries, LwM2M CBOR
/// leaves). The model decides whether a resource is multiple; without a model the depth of the
/// leaves decides. Leaves outside `base`, duplicates and leaves that contradict the model are
/// errors. No leaves at an object or instance give an empty node (an empty read result); no
/// leaves at a single resource or resource instance is [`NodeError::Empty`].
pub fn build_node(base: &Path, leaves: Vec<Leaf>, models: &dyn Models) -> Result<Node, NodeError> {
    let mut node = match *base {
        Path::Root => {
            return Err(NodeError::WrongDepth {
                path: *base,
                node: "root",
            });
        }
        Path::Object(..) => Node::Object(BTreeMap::new()),
        Path::Instance(..) => Node::Instance(Instance::default()),
        Path::Resource(o, _, r) => {
            let is_multi = match models.resource(o, r) {
                Some(m) => m.multiple,
                None => leaves.iter().any(|(p, _)| p.depth() == 4),
            };
            if !is_multi {
                return single_leaf(base, leaves).map(|v| Node::Resource(Resource::Single(v)));
            }
            Node::Resource(Resource::Multiple(BTreeMap::new()))
        }
        Path::ResourceInstance(o, _, r, _) => {
            if models.resource(o, r).is_some_and(|m| !m.multiple) {
                return Err(NodeError::Multiplicity {
                    path: *base,
                    expected: "single",
                });
            }
            return single_leaf(base, leaves).map(Node::ResourceInstance);
        }
    };
    for (path, value) in leaves {
        if !base.is_prefix_of(&path) {
            return Err(NodeError::OutsideBase { path, base: *base });
        }
        insert_leaf(&mut node, path, value, models)?;
    }
    Ok(node)
}

fn single_leaf(base: &Path, leaves: Vec<Leaf>) -> Result<Value, NodeError> {
    let mut it = leaves.into_iter();
    let Some((path, value)) = it.next() else {
        return Err(NodeError::Empty { path: *base });
    };
    if path != *base {
        return Err(NodeError::OutsideBase { path, base: *base });
    }
    if it.next().is_some() {
        return Err(NodeError::Duplicate { path });
    }
    Ok(value)
}

fn insert_leaf(
    node: &mut Node,
    path: Path,
    value: Value,
    models: &dyn Models,
) -> Result<(), NodeError> {
    let (resource_path, riid) = match path {
        Path::Resource(..) => (path, None),
        Path::ResourceInstance(o, i, r, ri) => (Path::Resource(o, i, r), Some(ri)),
        _ => {
            return Err(NodeError::WrongDepth {
                path,
                node: "value",
            });
        }
    };
    let (Some(oid), Some(iid), Some(rid)) = (
        resource_path.object_id(),
        resource_path.instance_id(),
        resource_path.resource_id(),
    ) else {
        return Err(NodeError::WrongDepth {
            path,
            node: "value",
        });
    };
    let model_multiple = models.resource(oid, rid).map(|m| m.multiple);
    match (model_multiple, riid) {
        (Some(true), None) => {
            return Err(NodeError::Multiplicity {
                path,
                expected: "multiple",
            });
        }
        (Some(false), Some(_)) => {
            return Err(NodeError::Multiplicity {
                path,
                expected: "single",
            });
        }
        _ => {}
    }
    match node {
        Node::Object(instances) => {
            let inst = instances.entry(iid).or_default();
            put(inst.resources.entry(rid), path, riid, value)
        }
        Node::Instance(inst) => put(inst.resources.entry(rid), path, riid, value),
        Node::Resource(Resource::Multiple(values)) => match riid {
            Some(ri) if values.insert(ri, value).is_none() => Ok(()),
            Some(_) => Err(NodeError::Duplicate { path }),
            None => Err(NodeError::Multiplicity {
                path,
                expected: "multiple",
            }),
        },
        Node::Resource(Resource::Single(_)) | Node::ResourceInstance(_) => {
            Err(NodeError::WrongDepth {
                path,
                node: "value",
            })
        }
    }
}

fn put(
    entry: std::collections::btree_map::Entry<'_, u16, Resource>,
    path: Path,
    riid: Option<u16>,
    value: Value,
) -> Result<(), NodeError> {
    use std::collections::btree_map::Entry;
    match (entry, riid) {
        (Entry::Vacant(e), None) => {
            e.insert(Resource::Single(value));
            Ok(())
        }
        (Entry::Vacant(e), Some(ri)) => {
            e.insert(Resource::Multiple(BTreeMap::from([(ri, value)])));
            Ok(())
        }
        (Entry::Occupied(mut e), Some(ri)) => match e.get_mut() {
            Resource::Multiple(values) => {
                if values.insert(ri, value).is_some() {
                    Err(NodeError::Duplicate { path })
                } else {
                    Ok(())
                }
            }
            Resource::Single(_) => Err(NodeError::Multiplicity {
                path,
                expected: "single",
            }),
        },
        (Entry::Occupied(_), None) => Err(NodeError::Duplicate { path }),
    }
}

/// The data type the model gives `path` (a resource or resource instance), if known.
pub fn model_type(models: &dyn Models, path: &Path) -> Option<DataType> {
    models
        .resource(path.object_id()?, path.resource_id()?)
        .map(|r| r.data_type)
}
