//! The "Objects and Object Instances" payload of Register and Update (Core 1.1 §5.3.1,
//! Core 1.2 §6.2.1; Transport "Alternate Path").
//!
//! ```text
//! </>;rt="oma.lwm2m";ct=110,</1/0>,</3>;ver=1.1,</3/0>,</5>
//! </lwm2m>;rt="oma.lwm2m";ct="110 112 60",</lwm2m/1/0>,</lwm2m/3/0>
//! </>;ct=11543,</1/0>,</3/0>                      (LwM2M 1.0: root link without rt)
//! ```
//!
//! How each link is read:
//! - The root link is the one with `rt="oma.lwm2m"` (also in a list, `rt="oma.lwm2m x"`) or
//!   the target `</>`. Its target is the alternate path that prefixes every DM and Information
//!   Reporting request; its `ct` (a number or a quoted space-separated list) lists the content
//!   formats the client supports. Two root links are an error, and so is an alternate path
//!   with a numeric segment (Transport: "This link MUST NOT contain numerical URI segment").
//! - `</o>` and `</o/i>` announce objects and instances, with `ver=` on either (Core 1.2
//!   §7.2.2 allows it on an instance link). Under an alternate path `/lwm2m` the links read
//!   `</lwm2m/3/0>`; the prefix is stripped. Unprefixed links are accepted too: the spec's
//!   "no numerical segment" rule keeps the two readings apart.
//! - Links at resource depth are not part of the Register payload and are ignored, like any
//!   other parameter (Core: "MUST be silently ignored, unless specified for use").
//! - Unknown objects and versions are kept here as announced; ignoring them is the model
//!   registry's job ([`crate::model::ModelRegistry::for_client`]). So are `/0` and `/21`,
//!   which a client must not list: refusing or skipping them is server policy.
//! - A target that is not an LwM2M path, a malformed `ver` or `ct`, and one object announced
//!   with two different versions are errors: the server cannot know what the client has.
//!
//! Content formats are kept as announced (raw codes, including ones this crate does not
//! know, so the payload re-encodes unchanged); [`ObjectLinks::content_formats`] maps the
//! known ones and drops the rest.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::format::ContentFormat;
use crate::model::Version;
use crate::path::Path;

use super::LinkError;
use super::attributes::{AttributeError, clip};
use super::syntax::{self, Link, ParamValue};

/// The resource type of the LwM2M root link.
pub const LWM2M_RESOURCE_TYPE: &str = "oma.lwm2m";

/// What a client announced in its Register or Update payload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectLinks {
    /// The root link, when the client sent one.
    pub root: Option<RootLink>,
    /// Announced objects by ID.
    pub objects: BTreeMap<u16, AnnouncedObject>,
}

/// `</path>;rt="oma.lwm2m";ct=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootLink {
    /// `/` or the alternate path without a trailing slash (`/lwm2m`).
    pub path: String,
    /// The `ct` codes in the order given, known to this crate or not.
    pub content_formats: Vec<u16>,
}

/// One object of the payload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AnnouncedObject {
    /// `ver=`; `None` means 1.0 (Core §7.2.2).
    pub version: Option<Version>,
    /// Existing instances; empty when only `</o>` was listed.
    pub instances: BTreeSet<u16>,
}

impl ObjectLinks {
    pub fn new() -> ObjectLinks {
        ObjectLinks::default()
    }

    /// Parses a Register or Update payload.
    pub fn parse(payload: &[u8]) -> Result<ObjectLinks, LinkError> {
        let links = syntax::parse(payload)?;
        let mut out = ObjectLinks::default();
        let mut rest = Vec::new();
        for link in links {
            if is_root_link(&link) {
                if out.root.is_some() {
                    return Err(LinkError::SeveralRootLinks);
                }
                out.root = Some(RootLink::from_link(&link)?);
            } else {
                rest.push(link);
            }
        }
        let prefix = out.prefix().to_owned();
        for link in &rest {
            let path = object_path(&link.target, &prefix)?;
            let version = link_version(link)?;
            let (object, instance) = match path {
                Path::Object(o) => (o, None),
                Path::Instance(o, i) => (o, Some(i)),
                // `</lwm2m/>` (the root again) and resource links carry nothing here.
                Path::Root | Path::Resource(..) | Path::ResourceInstance(..) => continue,
            };
            let entry = out.objects.entry(object).or_default();
            merge_version(object, &mut entry.version, version)?;
            entry.instances.extend(instance);
        }
        Ok(out)
    }

    /// Sets the root link (builder style for the simulated client). The alternate path must
    /// be absolute with no numeric segment, or the payload will not parse back.
    pub fn with_root(mut self, alternate_path: &str, formats: &[ContentFormat]) -> ObjectLinks {
        self.root = Some(RootLink {
            path: normalize_root(alternate_path),
            content_formats: formats.iter().map(|f| f.code()).collect(),
        });
        self
    }

    /// Announces an object (builder style); a version replaces an earlier one.
    pub fn with_object(mut self, object: u16, version: Option<Version>) -> ObjectLinks {
        let entry = self.objects.entry(object).or_default();
        if version.is_some() {
            entry.version = version;
        }
        self
    }

    /// Announces an instance, and its object (builder style).
    pub fn with_instance(mut self, object: u16, instance: u16) -> ObjectLinks {
        self.objects
            .entry(object)
            .or_default()
            .instances
            .insert(instance);
        self
    }

    /// The path the server prefixes to every DM request: `/` when the client gave none.
    pub fn alternate_path(&self) -> &str {
        self.root.as_ref().map_or("/", |r| r.path.as_str())
    }

    /// The URI path to use for `path` on this client: `/lwm2m/3/0` under `/lwm2m`.
    pub fn client_path(&self, path: &Path) -> String {
        match (self.prefix(), path) {
            ("", p) => p.to_string(),
            (prefix, Path::Root) => prefix.to_owned(),
            (prefix, p) => format!("{prefix}{p}"),
        }
    }

    /// The content formats of the root link that this crate knows, without duplicates.
    pub fn content_formats(&self) -> Vec<ContentFormat> {
        let mut known = Vec::new();
        for f in self.codes().filter_map(ContentFormat::from_code) {
            if !known.contains(&f) {
                known.push(f);
            }
        }
        known
    }

    /// The `ct` codes this crate does not know (kept for logs and re-encoding).
    pub fn unknown_content_formats(&self) -> Vec<u16> {
        self.codes()
            .filter(|c| ContentFormat::from_code(*c).is_none())
            .collect()
    }

    /// Every announced object with its `ver` (for `ModelRegistry::for_client`).
    pub fn announced_versions(&self) -> Vec<(u16, Option<Version>)> {
        self.objects
            .iter()
            .map(|(id, o)| (*id, o.version))
            .collect()
    }

    /// Every announced instance, in tree order.
    pub fn object_instances(&self) -> Vec<Path> {
        self.objects
            .iter()
            .flat_map(|(o, obj)| obj.instances.iter().map(|i| Path::Instance(*o, *i)))
            .collect()
    }

    pub fn supports(&self, object: u16) -> bool {
        self.objects.contains_key(&object)
    }

    pub fn has_instance(&self, object: u16, instance: u16) -> bool {
        self.objects
            .get(&object)
            .is_some_and(|o| o.instances.contains(&instance))
    }

    /// The payload as links: root link, then per object `</o>` (when it has a version or no
    /// instance) and its `</o/i>`, IDs ascending.
    pub fn to_links(&self) -> Vec<Link> {
        let prefix = self.prefix();
        let mut links = Vec::new();
        if let Some(root) = &self.root {
            links.push(root.to_link());
        }
        for (id, object) in &self.objects {
            if object.version.is_some() || object.instances.is_empty() {
                let mut link = Link::new(format!("{prefix}/{id}"));
                if let Some(v) = object.version {
                    link.params
                        .push(("ver".to_owned(), Some(ParamValue::Token(v.to_string()))));
                }
                links.push(link);
            }
            for instance in &object.instances {
                links.push(Link::new(format!("{prefix}/{id}/{instance}")));
            }
        }
        links
    }

    /// `""` for the root, else the alternate path: what object links start with.
    fn prefix(&self) -> &str {
        match self.alternate_path() {
            "/" => "",
            p => p,
        }
    }

    fn codes(&self) -> impl Iterator<Item = u16> + '_ {
        self.root
            .iter()
            .flat_map(|r| r.content_formats.iter().copied())
    }
}

impl fmt::Display for ObjectLinks {
    /// The Register payload: `</>;rt="oma.lwm2m";ct=110,</1/0>,</3>;ver=1.1,</3/0>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&syntax::format(&self.to_links()))
    }
}

impl RootLink {
    fn from_link(link: &Link) -> Result<RootLink, LinkError> {
        let path = alternate_path_of(link)?;
        let mut content_formats = Vec::new();
        for (name, value) in &link.params {
            if !name.eq_ignore_ascii_case("ct") {
                continue;
            }
            let bad =
                || LinkError::BadContentFormat(clip(value.as_ref().map_or("", |v| v.as_str())));
            let value = value.as_ref().ok_or_else(bad)?;
            for item in value.items() {
                let code = item
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| item.parse::<u16>().ok())
                    .flatten()
                    .ok_or_else(bad)?;
                content_formats.push(code);
            }
        }
        Ok(RootLink {
            path,
            content_formats,
        })
    }

    fn to_link(&self) -> Link {
        let mut link = Link::new(self.path.clone()).with(
            "rt",
            Some(ParamValue::Quoted(LWM2M_RESOURCE_TYPE.to_owned())),
        );
        let ct = match self.content_formats.as_slice() {
            [] => None,
            [one] => Some(ParamValue::Token(one.to_string())),
            many => Some(ParamValue::Quoted(
                many.iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
            )),
        };
        if ct.is_some() {
            link.params.push(("ct".to_owned(), ct));
        }
        link
    }
}

/// `rt="oma.lwm2m"` (alone or in a list), or the target `/`.
pub(crate) fn is_root_link(link: &Link) -> bool {
    let typed = link.params.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("rt")
            && value
                .as_ref()
                .is_some_and(|v| v.items().any(|t| t == LWM2M_RESOURCE_TYPE))
    });
    typed || (!link.target.is_empty() && link.target.bytes().all(|b| b == b'/'))
}

/// The normalized target of a root link; it must be absolute and not look like an object
/// path.
pub(crate) fn alternate_path_of(link: &Link) -> Result<String, LinkError> {
    let path = normalize_root(&link.target);
    let numeric = path
        .split('/')
        .any(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
    if !path.starts_with('/') || numeric {
        return Err(LinkError::BadAlternatePath(clip(&link.target)));
    }
    Ok(path)
}

/// `/lwm2m/` → `/lwm2m`, `//` → `/`.
pub(crate) fn normalize_root(target: &str) -> String {
    match target.trim_end_matches('/') {
        "" => "/".to_owned(),
        p => p.to_owned(),
    }
}

/// The LwM2M path of an object link under `prefix` (`""` for none); unprefixed links are
/// taken as plain paths.
pub(crate) fn object_path(target: &str, prefix: &str) -> Result<Path, LinkError> {
    let relative = match target.strip_prefix(prefix) {
        Some(rest) if !prefix.is_empty() && (rest.is_empty() || rest.starts_with('/')) => {
            if rest.is_empty() { "/" } else { rest }
        }
        _ => target,
    };
    relative.parse().map_err(|source| LinkError::NotAPath {
        target: clip(target),
        source,
    })
}

fn link_version(link: &Link) -> Result<Option<Version>, LinkError> {
    let attribute = |source| LinkError::Attribute {
        target: clip(&link.target),
        source,
    };
    match link.param("ver") {
        None => Ok(None),
        Some(None) => Err(attribute(AttributeError::MissingValue("ver"))),
        Some(Some(v)) => v.as_str().parse().map(Some).map_err(|_| {
            attribute(AttributeError::BadValue {
                name: "ver",
                value: clip(v.as_str()),
                expected: "a version such as 1.1",
            })
        }),
    }
}

fn merge_version(
    object: u16,
    slot: &mut Option<Version>,
    new: Option<Version>,
) -> Result<(), LinkError> {
    match (*slot, new) {
        (Some(old), Some(new)) if old != new => Err(LinkError::ConflictingVersions {
            object,
            first: old,
            second: new,
        }),
        (None, Some(new)) => {
            *slot = Some(new);
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ObjectLinks, LinkError> {
        ObjectLinks::parse(s.as_bytes())
    }

    #[test]
    fn brief_example_round_trips() {
        let text = r#"</>;rt="oma.lwm2m";ct=110,</1/0>,</3>;ver=1.1,</3/0>"#;
        let links = parse(text).expect("parses");
        assert_eq!(links.alternate_path(), "/");
        assert_eq!(links.content_formats(), vec![ContentFormat::SenmlJson]);
        assert_eq!(
            links.announced_versions(),
            vec![(1, None), (3, Some(Version::V1_1))]
        );
        assert_eq!(
            links.object_instances(),
            vec![Path::Instance(1, 0), Path::Instance(3, 0)]
        );
        assert_eq!(links.to_string(), text);
        let built = ObjectLinks::new()
            .with_root("/", &[ContentFormat::SenmlJson])
            .with_instance(1, 0)
            .with_object(3, Some(Version::V1_1))
            .with_instance(3, 0);
        assert_eq!(built, links);
    }

    #[test]
    fn alternate_path_is_stripped() {
        let links = parse(
            r#"</lwm2m/>;rt="oma.lwm2m";ct="110 112 60 9999",</lwm2m/1/0>,</lwm2m/3/0>,</5>"#,
        )
        .expect("parses");
        assert_eq!(links.alternate_path(), "/lwm2m");
        assert_eq!(
            links.object_instances(),
            vec![Path::Instance(1, 0), Path::Instance(3, 0)]
        );
        assert!(links.supports(5));
        assert_eq!(
            links.content_formats(),
            vec![
                ContentFormat::SenmlJson,
                ContentFormat::SenmlCbor,
                ContentFormat::Cbor
            ]
        );
        assert_eq!(links.unknown_content_formats(), vec![9999]);
        assert_eq!(links.client_path(&Path::Resource(3, 0, 0)), "/lwm2m/3/0/0");
        assert_eq!(links.client_path(&Path::Root), "/lwm2m");
        assert_eq!(
            links.to_string(),
            r#"</lwm2m>;rt="oma.lwm2m";ct="110 112 60 9999",</lwm2m/1/0>,</lwm2m/3/0>,</lwm2m/5>"#
        );
    }

    #[test]
    fn lwm2m_1_0_root_without_rt() {
        let links = parse("</>;ct=11543, </1/0>,</3/0>").expect("parses");
        assert_eq!(links.content_formats(), vec![ContentFormat::OmaJson]);
        assert_eq!(links.client_path(&Path::Instance(3, 0)), "/3/0");
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse(r#"</a>;rt="oma.lwm2m",</b>;rt="oma.lwm2m""#),
            Err(LinkError::SeveralRootLinks)
        );
        assert!(matches!(
            parse(r#"</7>;rt="oma.lwm2m""#),
            Err(LinkError::BadAlternatePath(_))
        ));
        assert!(matches!(
            parse("</>;ct=json"),
            Err(LinkError::BadContentFormat(_))
        ));
        assert!(matches!(
            parse("</>;ct=70000"),
            Err(LinkError::BadContentFormat(_))
        ));
        assert!(matches!(
            parse("</3>;ver=x"),
            Err(LinkError::Attribute { .. })
        ));
        assert!(matches!(
            parse("</3>;ver"),
            Err(LinkError::Attribute { .. })
        ));
        assert!(matches!(parse("</rd>"), Err(LinkError::NotAPath { .. })));
        assert_eq!(
            parse("</3>;ver=1.1,</3/0>;ver=1.2"),
            Err(LinkError::ConflictingVersions {
                object: 3,
                first: Version::V1_1,
                second: Version::V1_2
            })
        );
    }

    #[test]
    fn resource_links_and_unknown_params_are_ignored() {
        let links = parse("</3/0/1>,</3/0>;obs;ver=1.0,</3303>;ver=\"2.0\"").expect("parses");
        assert_eq!(
            links.announced_versions(),
            vec![(3, Some(Version::V1_0)), (3303, Some(Version::new(2, 0)))]
        );
        assert_eq!(links.object_instances(), vec![Path::Instance(3, 0)]);
    }
}
