//! Between the WIT shapes plugins see (flat lists of path/value entries) and the server's
//! node tree. Plugins never deal with content formats: the host encodes for each device.

use std::collections::BTreeMap;

use steward_objects::{Instance, Node, NodeMap, ObjLink, Path, Resource, Value};

use super::bindings::steward::plugin::types::{Entry, Value as WitValue};

pub fn to_wit(value: &Value) -> WitValue {
    match value {
        Value::String(s) => WitValue::Text(s.clone()),
        Value::Integer(i) => WitValue::Integer(*i),
        Value::UnsignedInteger(u) => WitValue::Unsigned(*u),
        Value::Float(f) => WitValue::Float(*f),
        Value::Boolean(b) => WitValue::Boolean(*b),
        Value::Opaque(o) => WitValue::Opaque(o.clone()),
        Value::Time(t) => WitValue::Time(*t),
        Value::Objlnk(l) => WitValue::Objlnk((l.object, l.instance)),
        Value::Corelnk(c) => WitValue::Corelnk(c.clone()),
    }
}

pub fn from_wit(value: WitValue) -> Value {
    match value {
        WitValue::Text(s) => Value::String(s),
        WitValue::Integer(i) => Value::Integer(i),
        WitValue::Unsigned(u) => Value::UnsignedInteger(u),
        WitValue::Float(f) => Value::Float(f),
        WitValue::Boolean(b) => Value::Boolean(b),
        WitValue::Opaque(o) => Value::Opaque(o),
        WitValue::Time(t) => Value::Time(t),
        WitValue::Objlnk((object, instance)) => Value::Objlnk(ObjLink { object, instance }),
        WitValue::Corelnk(c) => Value::Corelnk(c),
    }
}

/// Every value of `node` (found at `path`) as resource or resource-instance entries.
pub fn flatten(path: &Path, node: &Node, out: &mut Vec<Entry>) {
    let mut push = |p: Path, v: &Value| {
        out.push(Entry {
            path: p.to_string(),
            value: to_wit(v),
        })
    };
    let resource =
        |o: u16, i: u16, r: u16, res: &Resource, push: &mut dyn FnMut(Path, &Value)| match res {
            Resource::Single(v) => push(Path::Resource(o, i, r), v),
            Resource::Multiple(vs) => {
                for (ri, v) in vs {
                    push(Path::ResourceInstance(o, i, r, *ri), v);
                }
            }
        };
    match (*path, node) {
        (Path::Object(o), Node::Object(instances)) => {
            for (i, inst) in instances {
                for (r, res) in &inst.resources {
                    resource(o, *i, *r, res, &mut push);
                }
            }
        }
        (Path::Instance(o, i), Node::Instance(inst)) => {
            for (r, res) in &inst.resources {
                resource(o, i, *r, res, &mut push);
            }
        }
        (Path::Resource(o, i, r), Node::Resource(res)) => resource(o, i, r, res, &mut push),
        (p @ Path::ResourceInstance(..), Node::ResourceInstance(v)) => push(p, v),
        // Shapes that do not fit their path never leave the codecs; nothing to report.
        _ => {}
    }
}

pub fn flatten_map(nodes: &NodeMap) -> Vec<Entry> {
    let mut out = Vec::new();
    for (path, node) in nodes {
        flatten(path, node, &mut out);
    }
    out
}

/// Why entries do not make a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntriesError {
    #[error("entry path {0:?} does not parse")]
    BadPath(String),
    #[error("entry {entry} is not a resource or resource instance under {target}")]
    Outside { entry: String, target: String },
    #[error("entry {0} is given twice")]
    Duplicate(String),
    #[error("resource {0} is given both as a single value and as instances")]
    Mixed(String),
    #[error("no entries")]
    Empty,
}

/// Builds the node at `target` (an instance, resource or resource-instance path) from
/// entries that lie under it.
pub fn node_from_entries(target: &Path, entries: Vec<Entry>) -> Result<Node, EntriesError> {
    if entries.is_empty() {
        return Err(EntriesError::Empty);
    }
    let resources = collect_resources(target, entries)?;
    match *target {
        Path::Instance(..) => Ok(Node::Instance(Instance { resources })),
        Path::Resource(_, _, r) => resources
            .into_iter()
            .find(|(id, _)| *id == r)
            .map(|(_, res)| Node::Resource(res))
            .ok_or(EntriesError::Empty),
        Path::ResourceInstance(_, _, _, ri) => match resources.into_values().next() {
            Some(Resource::Multiple(mut vs)) => vs
                .remove(&ri)
                .map(Node::ResourceInstance)
                .ok_or(EntriesError::Empty),
            _ => Err(EntriesError::Empty),
        },
        _ => Err(EntriesError::Outside {
            entry: String::new(),
            target: target.to_string(),
        }),
    }
}

/// The resources of one instance from entries under `target` (which must be at least an
/// instance path). Used for Create too, where only resource IDs matter.
pub fn collect_resources(
    target: &Path,
    entries: Vec<Entry>,
) -> Result<BTreeMap<u16, Resource>, EntriesError> {
    let within = |p: &Path| -> bool {
        let (t, e) = (target.segments(), p.segments());
        e.len() >= 3 && e.len() >= t.len() && e[..t.len()] == t[..]
    };
    let mut resources: BTreeMap<u16, Resource> = BTreeMap::new();
    for entry in entries {
        let path: Path = entry
            .path
            .parse()
            .map_err(|_| EntriesError::BadPath(entry.path.clone()))?;
        if !within(&path) {
            return Err(EntriesError::Outside {
                entry: entry.path,
                target: target.to_string(),
            });
        }
        let value = from_wit(entry.value);
        match path {
            Path::Resource(_, _, r) => {
                if resources.insert(r, Resource::Single(value)).is_some() {
                    return Err(EntriesError::Duplicate(entry.path));
                }
            }
            Path::ResourceInstance(_, _, r, ri) => {
                let res = resources
                    .entry(r)
                    .or_insert_with(|| Resource::Multiple(BTreeMap::new()));
                let Resource::Multiple(vs) = res else {
                    return Err(EntriesError::Mixed(entry.path));
                };
                if vs.insert(ri, value).is_some() {
                    return Err(EntriesError::Duplicate(entry.path));
                }
            }
            _ => {
                return Err(EntriesError::Outside {
                    entry: entry.path,
                    target: target.to_string(),
                });
            }
        }
    }
    Ok(resources)
}

/// Create's entries name resources by their paths under the new instance; the instance
/// segment is whatever the plugin wrote (it may not know the ID the device will pick).
pub fn create_resources(
    object: u16,
    entries: Vec<Entry>,
) -> Result<BTreeMap<u16, Resource>, EntriesError> {
    let mut by_instance: Vec<Entry> = Vec::with_capacity(entries.len());
    for e in entries {
        let path: Path = e
            .path
            .parse()
            .map_err(|_| EntriesError::BadPath(e.path.clone()))?;
        if path.object_id() != Some(object) || path.depth() < 3 {
            return Err(EntriesError::Outside {
                entry: e.path,
                target: format!("/{object}"),
            });
        }
        // Normalise the instance to 0 so `collect_resources` sees one instance.
        let ids = path.ids();
        let mut normal = vec![object, 0];
        normal.extend_from_slice(&ids[2..]);
        let normal =
            Path::from_ids(&normal).ok_or_else(|| EntriesError::BadPath(e.path.clone()))?;
        by_instance.push(Entry {
            path: normal.to_string(),
            value: e.value,
        });
    }
    collect_resources(&Path::Instance(object, 0), by_instance)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(p: &str, v: WitValue) -> Entry {
        Entry {
            path: p.into(),
            value: v,
        }
    }

    #[test]
    fn values_round_trip() {
        let values = [
            Value::String("a".into()),
            Value::Integer(-3),
            Value::UnsignedInteger(u64::MAX),
            Value::Float(1.5),
            Value::Boolean(true),
            Value::Opaque(vec![1, 2]),
            Value::Time(1_700_000_000),
            Value::Objlnk(ObjLink {
                object: 3,
                instance: 0,
            }),
            Value::Corelnk("</3/0>".into()),
        ];
        for v in values {
            assert_eq!(from_wit(to_wit(&v)), v);
        }
    }

    #[test]
    fn nodes_flatten_to_leaf_entries() {
        let mut inst = Instance::default();
        inst.resources
            .insert(0, Resource::Single(Value::Integer(7)));
        inst.resources.insert(
            6,
            Resource::Multiple(BTreeMap::from([
                (1, Value::Integer(1)),
                (2, Value::Integer(5)),
            ])),
        );
        let mut out = Vec::new();
        flatten(&Path::Instance(3, 0), &Node::Instance(inst), &mut out);
        let paths: Vec<&str> = out.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["/3/0/0", "/3/0/6/1", "/3/0/6/2"]);
    }

    #[test]
    fn entries_build_the_node_at_the_target() {
        let node = node_from_entries(
            &Path::Instance(42799, 0),
            vec![
                entry("/42799/0/1", WitValue::Text("x".into())),
                entry("/42799/0/4/2", WitValue::Integer(9)),
            ],
        )
        .expect("node");
        let Node::Instance(inst) = node else {
            panic!("an instance")
        };
        assert_eq!(
            inst.resources.get(&1),
            Some(&Resource::Single(Value::String("x".into())))
        );
        let node = node_from_entries(
            &Path::Resource(42799, 0, 1),
            vec![entry("/42799/0/1", WitValue::Text("y".into()))],
        )
        .expect("node");
        assert_eq!(
            node,
            Node::Resource(Resource::Single(Value::String("y".into())))
        );
    }

    #[test]
    fn entries_outside_the_target_are_refused() {
        let cases = [
            vec![entry("/3/0/1", WitValue::Integer(1))],
            vec![entry("nope", WitValue::Integer(1))],
            vec![],
            vec![
                entry("/42799/0/1", WitValue::Integer(1)),
                entry("/42799/0/1", WitValue::Integer(2)),
            ],
        ];
        for entries in cases {
            assert!(node_from_entries(&Path::Instance(42799, 0), entries).is_err());
        }
    }

    #[test]
    fn create_entries_ignore_the_instance_segment() {
        let res = create_resources(
            42799,
            vec![entry("/42799/65534/1", WitValue::Text("new".into()))],
        )
        .expect("resources");
        assert_eq!(
            res.get(&1),
            Some(&Resource::Single(Value::String("new".into())))
        );
        assert!(create_resources(42799, vec![entry("/3/0/1", WitValue::Integer(1))]).is_err());
    }
}
