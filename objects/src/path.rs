//! LwM2M paths: `/`, `/o`, `/o/i`, `/o/i/r`, `/o/i/r/ri`.
//!
//! IDs are 16-bit; 65535 (`MAX_ID`) is reserved by the specification (it means "no instance"
//! in an Objlnk and "all servers" elsewhere), so a path never carries it. A `Path` that exists
//! is therefore always addressable.

use std::fmt;
use std::str::FromStr;

/// The reserved ID (Core §7.2.1): never a valid object, instance or resource ID.
pub const MAX_ID: u16 = 65535;

/// An LwM2M ID that is not the reserved 65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(u16);

impl Id {
    pub const fn new(id: u16) -> Option<Id> {
        if id == MAX_ID { None } else { Some(Id(id)) }
    }
    pub const fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A path into the LwM2M object tree.
///
/// Ordering is the tree's depth-first order, so a `BTreeMap<Path, _>` lists nodes the way
/// every LwM2M content format wants them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Path {
    Root,
    Object(u16),
    Instance(u16, u16),
    Resource(u16, u16, u16),
    ResourceInstance(u16, u16, u16, u16),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("a path must start with '/': {0:?}")]
    NoLeadingSlash(String),
    #[error("path has more than four segments: {0:?}")]
    TooDeep(String),
    #[error("path segment {segment:?} is not an ID from 0 to 65534")]
    BadId { segment: String },
}

impl Path {
    /// Builds a path from up to four IDs; `None` when there are more than four or an ID is 65535.
    pub fn from_ids(ids: &[u16]) -> Option<Path> {
        if ids.contains(&MAX_ID) {
            return None;
        }
        Some(match *ids {
            [] => Path::Root,
            [o] => Path::Object(o),
            [o, i] => Path::Instance(o, i),
            [o, i, r] => Path::Resource(o, i, r),
            [o, i, r, ri] => Path::ResourceInstance(o, i, r, ri),
            _ => return None,
        })
    }

    /// The IDs of this path, outermost first.
    pub fn ids(&self) -> Vec<u16> {
        self.segments().to_vec()
    }

    /// The IDs of this path without allocating: paths are map keys on hot paths.
    pub fn segments(&self) -> Segments {
        let (ids, len) = match *self {
            Path::Root => ([0; 4], 0),
            Path::Object(o) => ([o, 0, 0, 0], 1),
            Path::Instance(o, i) => ([o, i, 0, 0], 2),
            Path::Resource(o, i, r) => ([o, i, r, 0], 3),
            Path::ResourceInstance(o, i, r, ri) => ([o, i, r, ri], 4),
        };
        Segments { ids, len }
    }

    /// Number of segments: 0 for the root, 4 for a resource instance.
    pub fn depth(&self) -> usize {
        match self {
            Path::Root => 0,
            Path::Object(..) => 1,
            Path::Instance(..) => 2,
            Path::Resource(..) => 3,
            Path::ResourceInstance(..) => 4,
        }
    }

    pub fn object_id(&self) -> Option<u16> {
        self.segments().first().copied()
    }
    pub fn instance_id(&self) -> Option<u16> {
        self.segments().get(1).copied()
    }
    pub fn resource_id(&self) -> Option<u16> {
        self.segments().get(2).copied()
    }
    pub fn resource_instance_id(&self) -> Option<u16> {
        self.segments().get(3).copied()
    }

    /// The path one level up; the root has none.
    pub fn parent(&self) -> Option<Path> {
        match self.segments().split_last() {
            Some((_, rest)) => Path::from_ids(rest),
            None => None,
        }
    }

    /// The path one level down; `None` below a resource instance or for the reserved ID.
    pub fn child(&self, id: u16) -> Option<Path> {
        let mut ids = self.segments();
        if ids.len == 4 {
            return None;
        }
        ids.ids[ids.len] = id;
        ids.len += 1;
        Path::from_ids(&ids)
    }

    /// True when `self` is `other` or one of its ancestors.
    pub fn is_prefix_of(&self, other: &Path) -> bool {
        let (a, b) = (self.segments(), other.segments());
        a.len() <= b.len() && a[..] == b[..a.len()]
    }
}

/// Up to four IDs on the stack; derefs to a slice.
#[derive(Debug, Clone, Copy)]
pub struct Segments {
    ids: [u16; 4],
    len: usize,
}

impl std::ops::Deref for Segments {
    type Target = [u16];
    fn deref(&self) -> &[u16] {
        &self.ids[..self.len]
    }
}

impl Ord for Path {
    /// Depth-first tree order: a node sorts right before its children.
    fn cmp(&self, other: &Path) -> std::cmp::Ordering {
        self.segments()[..].cmp(&other.segments()[..])
    }
}

impl PartialOrd for Path {
    fn partial_cmp(&self, other: &Path) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids = self.segments();
        if ids.is_empty() {
            return f.write_str("/");
        }
        for id in ids.iter() {
            write!(f, "/{id}")?;
        }
        Ok(())
    }
}

impl FromStr for Path {
    type Err = PathError;

    /// Accepts `/`, `/3`, `/3/0`, `/3/0/1`, `/3/0/11/2`; a trailing slash is tolerated
    /// (`/3/0/` as sent by some clients), empty inner segments are not.
    fn from_str(s: &str) -> Result<Path, PathError> {
        let rest = s
            .strip_prefix('/')
            .ok_or_else(|| PathError::NoLeadingSlash(s.to_owned()))?;
        if rest.is_empty() {
            return Ok(Path::Root);
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let mut ids = Vec::with_capacity(4);
        for segment in rest.split('/') {
            if ids.len() == 4 {
                return Err(PathError::TooDeep(s.to_owned()));
            }
            ids.push(parse_id(segment)?);
        }
        Path::from_ids(&ids).ok_or_else(|| PathError::TooDeep(s.to_owned()))
    }
}

/// Parses one decimal ID segment: digits only (no sign, no spaces), at most 65534.
pub fn parse_id(segment: &str) -> Result<u16, PathError> {
    let bad = || PathError::BadId {
        segment: segment.chars().take(16).collect(),
    };
    if segment.is_empty() || segment.len() > 5 || !segment.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match segment.parse::<u16>() {
        Ok(id) if id != MAX_ID => Ok(id),
        _ => Err(bad()),
    }
}

impl serde::Serialize for Path {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Path {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Path, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_depth() {
        assert_eq!("/".parse(), Ok(Path::Root));
        assert_eq!("/3".parse(), Ok(Path::Object(3)));
        assert_eq!("/3/0".parse(), Ok(Path::Instance(3, 0)));
        assert_eq!("/3/0/".parse(), Ok(Path::Instance(3, 0)));
        assert_eq!("/3/0/1".parse(), Ok(Path::Resource(3, 0, 1)));
        assert_eq!(
            "/3/0/11/65534".parse(),
            Ok(Path::ResourceInstance(3, 0, 11, 65534))
        );
    }

    #[test]
    fn rejects_bad_paths() {
        for bad in [
            "",
            "3/0",
            "//",
            "/3//1",
            "/a",
            "/-1",
            "/+1",
            "/65535",
            "/1/2/3/4/5",
            "/ 3",
            "/000001",
        ] {
            assert!(bad.parse::<Path>().is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn relations() {
        let r = Path::Resource(3, 0, 1);
        assert_eq!(r.parent(), Some(Path::Instance(3, 0)));
        assert_eq!(Path::Root.parent(), None);
        assert!(Path::Object(3).is_prefix_of(&r));
        assert!(!Path::Object(4).is_prefix_of(&r));
        assert!(Path::Root.is_prefix_of(&r));
        assert_eq!(r.child(7), Some(Path::ResourceInstance(3, 0, 1, 7)));
        assert_eq!(Path::ResourceInstance(1, 2, 3, 4).child(0), None);
        assert!(Path::Instance(3, 0) < Path::Resource(3, 0, 0));
        assert!(Path::Resource(3, 0, 9) < Path::Instance(3, 1));
    }

    proptest::proptest! {
        #[test]
        fn display_parse_round_trip(ids in proptest::collection::vec(0u16..65535, 0..=4)) {
            let p = Path::from_ids(&ids).expect("valid ids");
            proptest::prop_assert_eq!(p.to_string().parse::<Path>(), Ok(p));
        }
    }
}
