//! LwM2M CBOR (content format 11544, Core TS 1.2 §7.4.6).
//!
//! A payload is one CBOR map whose keys are LwM2M IDs and whose values are either nested maps
//! (one level further down the tree) or resource values:
//! `{3: {0: {0: "Open Mobile Alliance", 6: {0: 1, 1: 5}}}}`. A key may also be an array of
//! IDs standing for several levels at once, so `{[3, 0]: {0: "…"}}` and `{[3, 0, 0]: "…"}`
//! say the same thing. Paths always start at the object: the payload of a Read on `/3/0/0`
//! still names object 3 and instance 0.
//!
//! Values keep their CBOR type (Core Appendix C, "CBOR, LwM2M CBOR and SenML CBOR" column):
//! integers, floats, booleans, text (String, Corelnk, and Objlnk as `"oid:iid"`), byte
//! strings (Opaque) and Time as tag 1 around epoch seconds (tag 0 date/time strings are also
//! read). A null value marks a path without a value: that is how a Read-Composite or
//! Observe-Composite request lists its paths.
//!
//! The format has no time field, so it cannot carry a time series: timestamped content is
//! only accepted without times (a Send of current values).
//!
//! Encoding writes definite-length maps nested one ID per level, the form every decoder
//! reads; path lists use one array key per path because overlapping paths (`/3/0` and
//! `/3/0/1`) cannot share nested maps. Decoding accepts definite and indefinite lengths and
//! both key forms.

use std::collections::{BTreeMap, BTreeSet};

use minicbor::Decoder;
use minicbor::data::Type;

use crate::codec::{
    DecodeError, EncodeError, MAX_NESTING, group_leaves, group_timestamped, type_value,
};
use crate::format::ContentFormat;
use crate::model::Models;
use crate::node::{
    Instance, Leaf, Node, NodeError, NodeMap, Resource, TimestampedNodes, build_node,
};
use crate::path::{MAX_ID, Path};
use crate::value::Value;

const FORMAT: ContentFormat = ContentFormat::Lwm2mCbor;

/// CBOR tag for epoch-based date/time (RFC 8949 §3.4.2).
const TAG_EPOCH: u64 = 1;

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

pub fn encode(path: &Path, node: &Node) -> Result<Vec<u8>, EncodeError> {
    let mut tree = Tree::default();
    tree.add_node(path, node)?;
    Ok(tree.to_cbor())
}

pub fn decode(path: &Path, payload: &[u8], models: &dyn Models) -> Result<Node, DecodeError> {
    let scan = scan(payload)?;
    let leaves = typed_values(scan.leaves, models)?;
    let mut node = if leaves.is_empty() && scan.empty.contains(path) {
        empty_node_at(path, models)?
    } else {
        build_node(path, leaves, models)?
    };
    for empty in &scan.empty {
        place_empty(&mut node, path, empty, models)?;
    }
    Ok(node)
}

pub fn encode_nodes(nodes: &NodeMap) -> Result<Vec<u8>, EncodeError> {
    let mut tree = Tree::default();
    for (path, node) in nodes {
        tree.add_node(path, node)?;
    }
    Ok(tree.to_cbor())
}

/// Empty maps (an instance or multiple resource without values) are not reported: a
/// composite result only lists what holds values (see [`crate::codec::decode_nodes`]).
pub fn decode_nodes(
    payload: &[u8],
    requested: Option<&[Path]>,
    models: &dyn Models,
) -> Result<NodeMap, DecodeError> {
    let scan = scan(payload)?;
    group_leaves(typed_values(scan.leaves, models)?, requested, models)
}

/// `{[3, 0, 0]: null, 1: null}`: one key per path, each holding null.
pub fn encode_paths(paths: &[Path]) -> Result<Vec<u8>, EncodeError> {
    let mut seen = BTreeSet::new();
    let mut out = Out::default();
    out.head(MAJOR_MAP, len_u64(paths.len()));
    for path in paths {
        if *path == Path::Root {
            return Err(EncodeError::InvalidValue {
                path: *path,
                reason: "LwM2M CBOR keys need at least one ID; the root cannot be listed".into(),
            });
        }
        if !seen.insert(*path) {
            return Err(EncodeError::InvalidValue {
                path: *path,
                reason: "path listed twice (it would be a duplicate map key)".into(),
            });
        }
        out.path_key(path);
        out.null();
    }
    Ok(out.0)
}

pub fn decode_paths(payload: &[u8]) -> Result<Vec<Path>, DecodeError> {
    let scan = scan(payload)?;
    if let Some(empty) = scan.empty.first() {
        return Err(malformed(format!(
            "{empty}: an empty map in a path list (each path is a key holding null)"
        )));
    }
    let mut seen = BTreeSet::new();
    let mut paths = Vec::new();
    for (path, wire) in scan.leaves {
        if let Wire::Value(_) = wire {
            return Err(malformed(format!(
                "{path}: a path list holds null at each path, not values"
            )));
        }
        if !seen.insert(path) {
            return Err(malformed(format!("{path}: listed twice")));
        }
        paths.push(path);
    }
    Ok(paths)
}

/// LwM2M CBOR has no time field: only one entry without a time can be written (a Send of
/// current values). Anything with a time needs SenML.
pub fn encode_timestamped(entries: &[TimestampedNodes]) -> Result<Vec<u8>, EncodeError> {
    match entries {
        [] => encode_nodes(&NodeMap::new()),
        [entry] if entry.time.is_none() => encode_nodes(&entry.nodes),
        _ => Err(EncodeError::Unsupported {
            format: FORMAT,
            what: "timestamps (it has no time field; use SenML for time series)",
        }),
    }
}

/// Every value is reported without a time, as one entry (none for an empty map).
pub fn decode_timestamped(
    payload: &[u8],
    models: &dyn Models,
) -> Result<Vec<TimestampedNodes>, DecodeError> {
    let scan = scan(payload)?;
    let leaves = typed_values(scan.leaves, models)?;
    group_timestamped(
        leaves.into_iter().map(|leaf| (None, leaf)).collect(),
        models,
    )
}

// ---------------------------------------------------------------------------------------------
// Decoding: walk the nested maps into flat leaves
// ---------------------------------------------------------------------------------------------

/// A map value before the model types it: a value, or null (a path without value).
#[derive(Debug, Clone, PartialEq)]
enum Wire {
    Value(Value),
    Null,
}

/// What a payload says, flattened: leaves in document order, and maps that had no entries
/// (an instance or multiple resource without values, which leaves cannot express).
#[derive(Debug, Default)]
struct Scan {
    leaves: Vec<(Path, Wire)>,
    empty: Vec<Path>,
}

fn malformed(reason: impl Into<String>) -> DecodeError {
    DecodeError::malformed(FORMAT, reason)
}

fn cbor_error(err: minicbor::decode::Error) -> DecodeError {
    if err.is_end_of_input() {
        malformed("payload ends in the middle of a CBOR item")
    } else {
        malformed(format!("invalid CBOR: {err}"))
    }
}

fn scan(payload: &[u8]) -> Result<Scan, DecodeError> {
    let mut d = Decoder::new(payload);
    let mut scan = Scan::default();
    match d.datatype().map_err(cbor_error)? {
        Type::Map | Type::MapIndef => read_map(&mut d, Path::Root, 1, &mut scan)?,
        other => {
            return Err(malformed(format!(
                "the payload must be a CBOR map, not {other}"
            )));
        }
    }
    if d.position() != payload.len() {
        return Err(malformed("bytes left after the top-level map"));
    }
    Ok(scan)
}

/// Reads the map of the node at `at`. Recursion is bounded twice over: every level adds at
/// least one ID to a path of at most four, and `depth` is checked against [`MAX_NESTING`].
fn read_map(
    d: &mut Decoder<'_>,
    at: Path,
    depth: usize,
    scan: &mut Scan,
) -> Result<(), DecodeError> {
    if depth > MAX_NESTING {
        return Err(DecodeError::TooDeep { format: FORMAT });
    }
    if at.depth() == 4 {
        return Err(malformed(format!("{at}: a map below a resource instance")));
    }
    let len = d.map().map_err(cbor_error)?;
    // Keys are compared as the absolute paths they lead to: `[3, 0]` and `3` differ, two
    // `3`s in one map do not.
    let mut keys = BTreeSet::new();
    let mut read = 0u64;
    while !at_end(d, len, read)? {
        read = read.saturating_add(1);
        let path = read_key(d, at)?;
        if !keys.insert(path) {
            return Err(malformed(format!("{path}: the same key twice in one map")));
        }
        match d.datatype().map_err(cbor_error)? {
            Type::Map | Type::MapIndef => read_map(d, path, depth + 1, scan)?,
            _ => {
                let wire = read_leaf(d, &path)?;
                scan.leaves.push((path, wire));
            }
        }
    }
    if keys.is_empty() && at != Path::Root {
        scan.empty.push(at);
    }
    Ok(())
}

/// True (and the break byte consumed) when a map or array with `len` entries (`None`:
/// indefinite) has no more after `read`.
fn at_end(d: &mut Decoder<'_>, len: Option<u64>, read: u64) -> Result<bool, DecodeError> {
    match len {
        Some(n) => Ok(read >= n),
        None => {
            if d.datatype().map_err(cbor_error)? == Type::Break {
                d.set_position(d.position().saturating_add(1));
                Ok(true)
            } else {
                Ok(false)
            }
        }
    }
}

/// A key is one ID or a non-empty array of IDs, relative to `at`.
fn read_key(d: &mut Decoder<'_>, at: Path) -> Result<Path, DecodeError> {
    match d.datatype().map_err(cbor_error)? {
        Type::Array | Type::ArrayIndef => {
            let len = d.array().map_err(cbor_error)?;
            let mut path = at;
            let mut read = 0u64;
            while !at_end(d, len, read)? {
                read = read.saturating_add(1);
                path = below(path, read_id(d)?)?;
            }
            if read == 0 {
                return Err(malformed(format!("{at}: an empty array as a map key")));
            }
            Ok(path)
        }
        _ => below(at, read_id(d)?),
    }
}

fn read_id(d: &mut Decoder<'_>) -> Result<u16, DecodeError> {
    match d.datatype().map_err(cbor_error)? {
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => {}
        Type::I8 | Type::I16 | Type::I32 | Type::I64 | Type::Int => {
            return Err(malformed("a negative number where an ID is expected"));
        }
        other => return Err(malformed(format!("a {other} where an ID is expected"))),
    }
    let id = d.u64().map_err(cbor_error)?;
    u16::try_from(id)
        .ok()
        .filter(|&id| id != MAX_ID)
        .ok_or_else(|| malformed(format!("{id} is not an ID (0 to 65534)")))
}

fn below(path: Path, id: u16) -> Result<Path, DecodeError> {
    path.child(id).ok_or_else(|| {
        malformed(format!(
            "{path}: a key would make a path longer than four IDs"
        ))
    })
}

/// A value or null. Values are read exactly as in single-value CBOR (60), which LwM2M CBOR
/// shares its value encodings with (Core Appendix C), so one reader serves both.
fn read_leaf(d: &mut Decoder<'_>, path: &Path) -> Result<Wire, DecodeError> {
    if d.datatype().map_err(cbor_error)? == Type::Null {
        d.null().map_err(cbor_error)?;
        return Ok(Wire::Null);
    }
    match crate::codec::cbor::read_item(d, path) {
        Ok(value) => Ok(Wire::Value(value)),
        Err(DecodeError::Malformed { reason, .. }) => Err(malformed(reason)),
        Err(other) => Err(other),
    }
}

/// Types every value through the model. Null is a path marker, not a value, and only
/// resources and resource instances carry values.
fn typed_values(leaves: Vec<(Path, Wire)>, models: &dyn Models) -> Result<Vec<Leaf>, DecodeError> {
    check_no_overlap(leaves.iter().map(|(path, _)| *path))?;
    leaves
        .into_iter()
        .map(|(path, wire)| match wire {
            Wire::Null => Err(malformed(format!(
                "{path}: null (a path without value) where a value is expected"
            ))),
            Wire::Value(_) if path.depth() < 3 => Err(malformed(format!(
                "{path}: a value at an object or instance (only resources carry values)"
            ))),
            Wire::Value(value) => Ok((path, type_value(FORMAT, &path, value, models)?)),
        })
        .collect()
}

/// Different keys can reach one path (`[3, 0, 1]` and `3: {0: {1: …}}`), or a path and one
/// below it: either way the payload says two things about one resource. Composite decoding
/// groups leaves per resource and would not notice, so this is checked here for all.
fn check_no_overlap(paths: impl Iterator<Item = Path>) -> Result<(), DecodeError> {
    let mut sorted: Vec<Path> = paths.collect();
    sorted.sort_unstable();
    // In tree order a path's descendants directly follow it, so neighbours suffice.
    for pair in sorted.windows(2) {
        if let [a, b] = pair {
            if a == b {
                return Err(NodeError::Duplicate { path: *a }.into());
            }
            if a.is_prefix_of(b) {
                return Err(malformed(format!(
                    "{a} holds a value and also has {b} below it"
                )));
            }
        }
    }
    Ok(())
}

/// The node for a base path that the payload names only as an empty map. An empty
/// resource map is a multiple resource without instances.
fn empty_node_at(base: &Path, models: &dyn Models) -> Result<Node, DecodeError> {
    match *base {
        Path::Resource(o, _, r) => {
            if models.resource(o, r).is_some_and(|m| !m.multiple) {
                return Err(NodeError::Multiplicity {
                    path: *base,
                    expected: "single",
                }
                .into());
            }
            Ok(Node::Resource(Resource::Multiple(BTreeMap::new())))
        }
        _ => Ok(build_node(base, Vec::new(), models)?),
    }
}

fn instance_mut(node: &mut Node, iid: u16) -> Option<&mut Instance> {
    match node {
        Node::Object(instances) => Some(instances.entry(iid).or_default()),
        Node::Instance(inst) => Some(inst),
        _ => None,
    }
}

/// Adds an instance or multiple resource that the payload gave as an empty map.
fn place_empty(
    node: &mut Node,
    base: &Path,
    empty: &Path,
    models: &dyn Models,
) -> Result<(), DecodeError> {
    if empty.is_prefix_of(base) {
        // An ancestor of the base (or the base itself): the node already stands for it.
        return Ok(());
    }
    if !base.is_prefix_of(empty) {
        return Err(NodeError::OutsideBase {
            path: *empty,
            base: *base,
        }
        .into());
    }
    match *empty {
        Path::Instance(_, iid) => {
            instance_mut(node, iid);
            Ok(())
        }
        Path::Resource(o, iid, r) => {
            let single = NodeError::Multiplicity {
                path: *empty,
                expected: "single",
            };
            if models.resource(o, r).is_some_and(|m| !m.multiple) {
                return Err(single.into());
            }
            let Some(inst) = instance_mut(node, iid) else {
                return Ok(());
            };
            match inst
                .resources
                .entry(r)
                .or_insert_with(|| Resource::Multiple(BTreeMap::new()))
            {
                Resource::Multiple(_) => Ok(()),
                Resource::Single(_) => Err(single.into()),
            }
        }
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding: gather nodes into one ID tree, then write it as nested maps
// ---------------------------------------------------------------------------------------------

/// The nested-map shape of the payload. An empty `Map` is an instance or multiple resource
/// without values, which the format can say (`{}`) and flat leaves cannot.
#[derive(Debug, Default)]
struct Tree<'a> {
    children: BTreeMap<u16, Branch<'a>>,
}

#[derive(Debug)]
enum Branch<'a> {
    Leaf(&'a Value),
    Map(Tree<'a>),
}

impl<'a> Tree<'a> {
    fn add_node(&mut self, path: &Path, node: &'a Node) -> Result<(), EncodeError> {
        for container in containers(path, node) {
            self.map_at(&container)?;
        }
        for (leaf_path, value) in node.leaves(path)? {
            self.add_leaf(&leaf_path, value)?;
        }
        Ok(())
    }

    /// The map at `path`, created (with its ancestors) if absent.
    fn map_at(&mut self, path: &Path) -> Result<&mut Tree<'a>, EncodeError> {
        let mut tree = self;
        for id in path.segments().iter() {
            let branch = tree
                .children
                .entry(*id)
                .or_insert_with(|| Branch::Map(Tree::default()));
            tree = match branch {
                Branch::Map(sub) => sub,
                Branch::Leaf(_) => return Err(conflict(path)),
            };
        }
        Ok(tree)
    }

    fn add_leaf(&mut self, path: &Path, value: &'a Value) -> Result<(), EncodeError> {
        let (Some(parent), Some(&id)) = (path.parent(), path.segments().last()) else {
            return Err(conflict(path));
        };
        match self.map_at(&parent)?.children.entry(id) {
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(Branch::Leaf(value));
                Ok(())
            }
            std::collections::btree_map::Entry::Occupied(_) => Err(conflict(path)),
        }
    }

    fn to_cbor(&self) -> Vec<u8> {
        let mut out = Out::default();
        self.write(&mut out);
        out.0
    }

    /// Depth is at most four maps below the root, one per path ID.
    fn write(&self, out: &mut Out) {
        out.head(MAJOR_MAP, len_u64(self.children.len()));
        for (id, branch) in &self.children {
            out.head(MAJOR_UNSIGNED, u64::from(*id));
            match branch {
                Branch::Leaf(value) => out.value(value),
                Branch::Map(sub) => sub.write(out),
            }
        }
    }
}

fn conflict(path: &Path) -> EncodeError {
    EncodeError::InvalidValue {
        path: *path,
        reason: "given twice, or both as a value and as a node with children".into(),
    }
}

/// Every instance and multiple resource in `node`, so empty ones are written too.
fn containers(path: &Path, node: &Node) -> Vec<Path> {
    let mut out = Vec::new();
    match node {
        Node::Object(instances) => {
            out.push(*path);
            for (iid, inst) in instances {
                if let Some(ipath) = path.child(*iid) {
                    instance_containers(ipath, inst, &mut out);
                }
            }
        }
        Node::Instance(inst) => instance_containers(*path, inst, &mut out),
        Node::Resource(Resource::Multiple(_)) => out.push(*path),
        // A value, not a map: `add_leaf` opens the maps above it.
        Node::Resource(Resource::Single(_)) | Node::ResourceInstance(_) => {}
    }
    out
}

fn instance_containers(path: Path, inst: &Instance, out: &mut Vec<Path>) {
    out.push(path);
    for (rid, res) in &inst.resources {
        if let (Resource::Multiple(_), Some(rpath)) = (res, path.child(*rid)) {
            out.push(rpath);
        }
    }
}

const MAJOR_UNSIGNED: u8 = 0;
const MAJOR_NEGATIVE: u8 = 1;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_MAP: u8 = 5;
const MAJOR_TAG: u8 = 6;

fn len_u64(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX)
}

/// CBOR output in preferred serialization (RFC 8949 §4.1: shortest heads and floats).
/// Writing into a `Vec` cannot fail, so this needs no error plumbing.
#[derive(Default)]
struct Out(Vec<u8>);

impl Out {
    fn head(&mut self, major: u8, n: u64) {
        let m = major << 5;
        if n < 24 {
            self.0.push(m | n as u8);
        } else if let Ok(n) = u8::try_from(n) {
            self.0.extend_from_slice(&[m | 24, n]);
        } else if let Ok(n) = u16::try_from(n) {
            self.0.push(m | 25);
            self.0.extend_from_slice(&n.to_be_bytes());
        } else if let Ok(n) = u32::try_from(n) {
            self.0.push(m | 26);
            self.0.extend_from_slice(&n.to_be_bytes());
        } else {
            self.0.push(m | 27);
            self.0.extend_from_slice(&n.to_be_bytes());
        }
    }

    fn null(&mut self) {
        self.0.push(0xf6);
    }

    fn int(&mut self, i: i64) {
        match u64::try_from(i) {
            Ok(u) => self.head(MAJOR_UNSIGNED, u),
            // -1 - i is non-negative and cannot overflow for any negative i64.
            Err(_) => self.head(MAJOR_NEGATIVE, (-1 - i) as u64),
        }
    }

    fn text(&mut self, s: &str) {
        self.head(MAJOR_TEXT, len_u64(s.len()));
        self.0.extend_from_slice(s.as_bytes());
    }

    fn float(&mut self, f: f64) {
        let narrow = f as f32;
        if f64::from(narrow) == f || f.is_nan() {
            match f16_bits(narrow) {
                Some(half) => {
                    self.0.push(0xf9);
                    self.0.extend_from_slice(&half.to_be_bytes());
                }
                None => {
                    self.0.push(0xfa);
                    self.0.extend_from_slice(&narrow.to_be_bytes());
                }
            }
        } else {
            self.0.push(0xfb);
            self.0.extend_from_slice(&f.to_be_bytes());
        }
    }

    fn value(&mut self, value: &Value) {
        match value {
            Value::String(s) | Value::Corelnk(s) => self.text(s),
            Value::Integer(i) => self.int(*i),
            Value::UnsignedInteger(u) => self.head(MAJOR_UNSIGNED, *u),
            Value::Float(f) => self.float(*f),
            Value::Boolean(b) => self.0.push(if *b { 0xf5 } else { 0xf4 }),
            Value::Opaque(bytes) => {
                self.head(MAJOR_BYTES, len_u64(bytes.len()));
                self.0.extend_from_slice(bytes);
            }
            Value::Time(t) => {
                self.head(MAJOR_TAG, TAG_EPOCH);
                self.int(*t);
            }
            Value::Objlnk(link) => self.text(&link.to_string()),
        }
    }

    /// A one-ID path as a plain key, a longer one as an array of IDs.
    fn path_key(&mut self, path: &Path) {
        let ids = path.segments();
        if let [id] = ids[..] {
            self.head(MAJOR_UNSIGNED, u64::from(id));
        } else {
            self.head(MAJOR_ARRAY, len_u64(ids.len()));
            for id in ids.iter() {
                self.head(MAJOR_UNSIGNED, u64::from(*id));
            }
        }
    }
}

/// The half-precision bits of `x` when the conversion is exact.
fn f16_bits(x: f32) -> Option<u16> {
    if x.is_nan() {
        return Some(0x7e00);
    }
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    if x.is_infinite() {
        return Some(sign | 0x7c00);
    }
    if x == 0.0 {
        return Some(sign);
    }
    let exp = ((bits >> 23) & 0xff) as i32 - 127;
    let mantissa = bits & 0x007f_ffff;
    match exp {
        -14..=15 if mantissa & 0x1fff == 0 => {
            Some(sign | (((exp + 15) as u16) << 10) | (mantissa >> 13) as u16)
        }
        -24..=-15 => {
            // Subnormal half: the value is m * 2^-24 with m < 1024.
            let full = mantissa | 0x0080_0000;
            let shift = (-(exp + 1)) as u32;
            (full & ((1 << shift) - 1) == 0).then(|| sign | (full >> shift) as u16)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ModelRegistry, NoModels};
    use crate::value::ObjLink;

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| {
                let text = std::str::from_utf8(pair).unwrap_or("00");
                u8::from_str_radix(text, 16).unwrap_or(0)
            })
            .collect()
    }

    fn leaf(path: &str) -> Path {
        path.parse().unwrap_or(Path::Root)
    }

    #[test]
    fn key_forms_are_equivalent() {
        // {3: {0: {1: "x"}}}, {[3, 0]: {1: "x"}}, {[3, 0, 1]: "x"}, indefinite variants.
        let forms = [
            "a1 03 a1 00 a1 01 61 78",
            "a1 82 03 00 a1 01 61 78",
            "a1 83 03 00 01 61 78",
            "bf 9f 03 00 01 ff 61 78 ff",
            "bf 03 bf 00 bf 01 7f 61 78 ff ff ff ff",
        ];
        for form in forms {
            let node = decode(&leaf("/3/0/1"), &hex(form), &NoModels);
            assert_eq!(
                node,
                Ok(Node::Resource(Resource::Single(Value::String("x".into())))),
                "{form}"
            );
        }
    }

    #[test]
    fn rejects_bad_keys() {
        let cases = [
            ("a1 19 ff ff a1 00 a1 00 01", "65535"),
            ("a1 1a 00 01 00 00 01", "65536"),
            ("a1 20 01", "negative"),
            ("a1 80 01", "empty array"),
            ("a1 61 33 01", "text key"),
            ("a1 85 01 02 03 04 05 01", "five IDs"),
            (
                "a1 83 03 00 01 a1 01 a1 00 02",
                "map below a resource instance's parent",
            ),
        ];
        for (payload, what) in cases {
            assert!(
                matches!(
                    decode_nodes(&hex(payload), None, &NoModels),
                    Err(DecodeError::Malformed { .. })
                ),
                "{what}"
            );
        }
    }

    #[test]
    fn rejects_duplicate_keys_but_merges_prefixes() {
        let dup = hex("a2 03 a1 00 a1 01 01 03 a1 00 a1 02 02");
        assert!(matches!(
            decode_nodes(&dup, None, &NoModels),
            Err(DecodeError::Malformed { .. })
        ));
        // {[3, 0]: {1: 1}, [3, 0, 2]: 2}: different keys, same instance.
        let merged = hex("a2 82 03 00 a1 01 01 83 03 00 02 02");
        let node = decode(&leaf("/3/0"), &merged, &NoModels);
        assert!(matches!(node, Ok(Node::Instance(ref i)) if i.resources.len() == 2));
        // {[3, 0, 1]: 1, 3: {0: {1: 2}}}: the same resource through two keys.
        let clash = hex("a2 83 03 00 01 01 03 a1 00 a1 01 02");
        assert!(matches!(
            decode(&leaf("/3/0"), &clash, &NoModels),
            Err(DecodeError::Node(NodeError::Duplicate { .. }))
        ));
    }

    #[test]
    fn a_value_with_values_below_it_is_refused() {
        // {[3, 0, 6]: 1, [3, 0, 6, 0]: 2}: resource 6 both single and multiple.
        let both = hex("a2 83 03 00 06 01 84 03 00 06 00 02");
        assert!(matches!(
            decode_nodes(&both, None, &NoModels),
            Err(DecodeError::Malformed { .. })
        ));
        assert!(decode_timestamped(&both, &NoModels).is_err());
        // As a path list the same shape is fine: /3/0/6 and /3/0/6/0 may both be asked for.
        let paths = hex("a2 83 03 00 06 f6 84 03 00 06 00 f6");
        assert_eq!(decode_paths(&paths).map(|p| p.len()), Ok(2));
    }

    #[test]
    fn deep_and_truncated_input_fail_cleanly() {
        let mut deep = Vec::new();
        for _ in 0..10_000 {
            deep.extend_from_slice(&[0xa1, 0x01]);
        }
        assert!(decode_nodes(&deep, None, &NoModels).is_err());
        let full = hex("a1 03 a1 00 a1 01 65 68 65 6c 6c 6f");
        for cut in 0..full.len() {
            assert!(
                decode_nodes(&full[..cut], None, &NoModels).is_err(),
                "cut at {cut}"
            );
        }
        // A map declaring 2^63 entries, a text declaring 4 GiB.
        assert!(decode_nodes(&hex("bb 80 00 00 00 00 00 00 00 03"), None, &NoModels).is_err());
        assert!(decode_nodes(&hex("a1 83 03 00 01 7a ff ff ff ff 61"), None, &NoModels).is_err());
    }

    #[test]
    fn values_and_time_forms() {
        let cases: [(&str, Value); 9] = [
            ("c1 1a 51 82 42 8f", Value::Time(1_367_491_215)),
            ("c1 fb 41 d4 60 90 a3 c0 00 00", Value::Time(1_367_491_215)),
            (
                "c0 74 32 30 31 33 2d 30 35 2d 30 32 54 31 30 3a 34 30 3a 31 35 5a",
                Value::Time(1_367_491_215),
            ),
            ("c1 20", Value::Time(-1)),
            ("f9 3e 00", Value::Float(1.5)),
            ("3b 7f ff ff ff ff ff ff ff", Value::Integer(i64::MIN)),
            (
                "1b ff ff ff ff ff ff ff ff",
                Value::UnsignedInteger(u64::MAX),
            ),
            ("5f 41 01 41 02 ff", Value::Opaque(vec![1, 2])),
            // A fraction of a second is dropped: LwM2M Time counts whole seconds.
            ("c1 fb 3f f8 00 00 00 00 00 00", Value::Time(1)),
        ];
        for (value_hex, expected) in cases {
            let payload = hex(&format!("a1 83 03 00 01 {value_hex}"));
            let node = decode(&leaf("/3/0/1"), &payload, &NoModels);
            assert_eq!(
                node,
                Ok(Node::Resource(Resource::Single(expected))),
                "{value_hex}"
            );
        }
        for bad in [
            "c2 41 00",
            "c1 61 31",
            "f7",
            "80",
            "3b ff ff ff ff ff ff ff ff",
        ] {
            let payload = hex(&format!("a1 83 03 00 01 {bad}"));
            assert!(
                decode(&leaf("/3/0/1"), &payload, &NoModels).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn floats_use_the_shortest_exact_width() {
        for (f, len) in [
            (1.5, 3),
            (0.0, 3),
            (-0.0, 3),
            (65504.0, 3),
            (5.960_464_477_539_063e-8, 3),
            (100_000.0, 5),
            (0.1, 9),
            (f64::INFINITY, 3),
        ] {
            let mut out = Out::default();
            out.float(f);
            assert_eq!(out.0.len(), len, "{f}");
            let back = Decoder::new(&out.0).f64();
            assert_eq!(back.ok().map(f64::to_bits), Some(f.to_bits()), "{f}");
        }
    }

    #[test]
    fn empty_containers_survive() {
        let mut node = Node::Object(BTreeMap::new());
        if let Node::Object(instances) = &mut node {
            let mut inst = Instance::default();
            inst.resources
                .insert(6, Resource::Multiple(BTreeMap::new()));
            instances.insert(0, inst);
            instances.insert(1, Instance::default());
        }
        let path = Path::Object(3);
        let bytes = encode(&path, &node);
        assert_eq!(
            bytes.as_deref().ok(),
            Some(&hex("a1 03 a2 00 a1 06 a0 01 a0")[..])
        );
        let models = ModelRegistry::core();
        assert_eq!(
            decode(&path, &hex("a1 03 a2 00 a1 06 a0 01 a0"), &models),
            Ok(node)
        );
        let empty_multi = decode(&leaf("/3/0/6"), &hex("a1 83 03 00 06 a0"), &NoModels);
        assert_eq!(
            empty_multi,
            Ok(Node::Resource(Resource::Multiple(BTreeMap::new())))
        );
        // Resource 0 of the Device object is single: an empty map there is wrong.
        assert!(decode(&leaf("/3/0/0"), &hex("a1 83 03 00 00 a0"), &models).is_err());
    }

    #[test]
    fn path_lists_round_trip() {
        let paths = [leaf("/3/0"), leaf("/3/0/1"), leaf("/1"), leaf("/5/0/3/2")];
        let bytes = encode_paths(&paths);
        assert_eq!(
            bytes.as_deref().ok(),
            Some(&hex("a4 82 03 00 f6 83 03 00 01 f6 01 f6 84 05 00 03 02 f6")[..])
        );
        assert_eq!(
            decode_paths(&hex(
                "a4 82 03 00 f6 83 03 00 01 f6 01 f6 84 05 00 03 02 f6"
            )),
            Ok(paths.to_vec())
        );
        assert!(encode_paths(&[Path::Root]).is_err());
        assert!(encode_paths(&[leaf("/1"), leaf("/1")]).is_err());
        // A value in a path list, and a path twice through different keys.
        assert!(decode_paths(&hex("a1 01 01")).is_err());
        assert!(decode_paths(&hex("a2 82 03 00 f6 03 a1 00 f6")).is_err());
    }

    #[test]
    fn null_and_instance_values_are_not_node_values() {
        assert!(decode(&leaf("/3/0"), &hex("a1 83 03 00 01 f6"), &NoModels).is_err());
        assert!(decode(&leaf("/3/0"), &hex("a1 82 03 00 01"), &NoModels).is_err());
    }

    #[test]
    fn models_type_the_wire_values() {
        let models = ModelRegistry::core();
        // /1/0/0 Short Server ID is an Integer; /3/0/13 Current Time is a Time.
        let node = decode(
            &leaf("/3/0/13"),
            &hex("a1 83 03 00 0d 1a 51 82 42 8f"),
            &models,
        );
        assert_eq!(
            node,
            Ok(Node::Resource(Resource::Single(Value::Time(1_367_491_215))))
        );
        let wrong = decode(&leaf("/3/0/13"), &hex("a1 83 03 00 0d 61 78"), &models);
        assert!(matches!(wrong, Err(DecodeError::TypeMismatch { .. })));
        let link = Value::Objlnk(ObjLink::new(3, 0));
        let bytes = encode(
            &leaf("/9/0/9"),
            &Node::Resource(Resource::Single(link.clone())),
        );
        assert_eq!(
            bytes.as_deref().ok(),
            Some(&hex("a1 09 a1 00 a1 09 63 33 3a 30")[..])
        );
    }

    #[test]
    fn timestamps_are_refused() {
        let timed = TimestampedNodes {
            time: Some(crate::node::Timestamp(1.0)),
            nodes: NodeMap::new(),
        };
        assert!(matches!(
            encode_timestamped(&[timed]),
            Err(EncodeError::Unsupported { .. })
        ));
        assert_eq!(encode_timestamped(&[]).as_deref().ok(), Some(&[0xa0][..]));
        assert_eq!(decode_timestamped(&[0xa0], &NoModels), Ok(vec![]));
    }
}
