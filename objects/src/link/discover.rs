//! Discover and Bootstrap-Discover answers (Core 1.1 §5.4.2 and §5.2.7.3, Core 1.2 §6.3.x
//! with `depth`; Transport §6.4.4).
//!
//! ```text
//! </3>;pmin=10,</3/0>,</3/0/1>,</3/0/2>,</3/0/7>;dim=8;gt=50;lt=42.2   (Discover /3)
//! </3/0/7>;dim=8;pmin=10;pmax=60;gt=50;lt=42.2                        (Discover /3/0/7)
//! lwm2m="1.0",</0/0>;ssid=101,</0/1>,</1/0>;ssid=101,</3/0>           (Bootstrap-Discover, 1.1)
//! </>;lwm2m=1.1,</0/0>;ssid=101;uri="coaps://s1",</0/1>,</3/0>          (Bootstrap-Discover, 1.1.1+)
//! ```
//!
//! Both forms of the enabler version are read: the LwM2M 1.1 pseudo-link `lwm2m="1.0",`
//! before the first link, and the later root link `</>;lwm2m=1.1` (or, with an alternate
//! path, `</lwm2m>;rt="oma.lwm2m";lwm2m=1.2`). The encoder writes the root-link form, which
//! current servers (Leshan, Anjay-based ones) expect.
//!
//! Known attributes must be well-formed; unknown parameters are ignored. The cross-attribute
//! rules (`lt < gt`, ...) are not checked: a Discover answer reports what the client holds.

use std::fmt;

use crate::model::Version;
use crate::path::Path;

use super::LinkError;
use super::attributes::{
    AttributeError, NotificationAttributes, Properties, clip, from_link_params, to_link_params,
};
use super::registration::{
    LWM2M_RESOURCE_TYPE, alternate_path_of, is_root_link, normalize_root, object_path,
};
use super::syntax::{self, Link, ParamValue};

/// One link of a Discover answer: a path with its properties and attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoverLink {
    /// Never [`Path::Root`]: a `</>` link is the answer's root link, not an entry.
    pub path: Path,
    /// `dim` for multiple resources; `ver` on object links; `ssid`/`uri` in Bootstrap-Discover.
    pub properties: Properties,
    /// Notification attributes attached at (or, for a resource target, inherited by) `path`.
    pub attributes: NotificationAttributes,
}

/// A whole Discover or Bootstrap-Discover answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DiscoverAnswer {
    /// The enabler version (Bootstrap-Discover only).
    pub lwm2m: Option<Version>,
    /// The alternate path of a root link `</lwm2m>;rt="oma.lwm2m"`, when the answer has one
    /// other than `/`.
    pub alternate_path: Option<String>,
    pub links: Vec<DiscoverLink>,
}

impl DiscoverLink {
    pub fn new(path: Path) -> DiscoverLink {
        DiscoverLink {
            path,
            properties: Properties::default(),
            attributes: NotificationAttributes::default(),
        }
    }

    /// Sets `dim` (builder style).
    pub fn with_dim(mut self, dim: u16) -> DiscoverLink {
        self.properties.dim = Some(dim);
        self
    }

    /// Sets `ver` (builder style).
    pub fn with_version(mut self, ver: Version) -> DiscoverLink {
        self.properties.ver = Some(ver);
        self
    }

    /// Sets `ssid` and optionally `uri` (builder style, Bootstrap-Discover).
    pub fn with_server(mut self, ssid: Option<u16>, uri: Option<&str>) -> DiscoverLink {
        self.properties.ssid = ssid;
        self.properties.uri = uri.map(str::to_owned);
        self
    }

    /// Sets the notification attributes (builder style).
    pub fn with_attributes(mut self, attributes: NotificationAttributes) -> DiscoverLink {
        self.attributes = attributes;
        self
    }

    fn to_link(&self, prefix: &str) -> Link {
        let target = match (prefix, self.path) {
            ("", p) => p.to_string(),
            (prefix, Path::Root) => prefix.to_owned(),
            (prefix, p) => format!("{prefix}{p}"),
        };
        Link {
            target,
            params: to_link_params(&self.properties, &self.attributes),
        }
    }
}

impl DiscoverAnswer {
    /// An answer made of these links.
    pub fn new(links: Vec<DiscoverLink>) -> DiscoverAnswer {
        DiscoverAnswer {
            links,
            ..DiscoverAnswer::default()
        }
    }

    /// A Bootstrap-Discover answer: the enabler version and these links.
    pub fn bootstrap(lwm2m: Version, links: Vec<DiscoverLink>) -> DiscoverAnswer {
        DiscoverAnswer {
            lwm2m: Some(lwm2m),
            alternate_path: None,
            links,
        }
    }

    /// Parses an answer whose links are plain `/o/i/r` paths (or carry their own root link).
    pub fn parse(payload: &[u8]) -> Result<DiscoverAnswer, LinkError> {
        DiscoverAnswer::parse_under(payload, "/")
    }

    /// Parses a DM Discover answer from a client registered with an alternate path, whose
    /// links may read `</lwm2m/3/0>`. A root link in the answer takes precedence.
    pub fn parse_under(payload: &[u8], alternate_path: &str) -> Result<DiscoverAnswer, LinkError> {
        let doc = syntax::parse_document(payload, true)?;
        let (leading, _) =
            from_link_params(&doc.leading).map_err(|source| LinkError::Attribute {
                target: String::new(),
                source,
            })?;
        let mut answer = DiscoverAnswer {
            lwm2m: leading.lwm2m,
            ..DiscoverAnswer::default()
        };
        let mut prefix = normalize_root(alternate_path);
        let mut others = Vec::new();
        let mut root_seen = false;
        for link in &doc.links {
            if !is_root_link(link) {
                others.push(link);
                continue;
            }
            if root_seen {
                return Err(LinkError::SeveralRootLinks);
            }
            root_seen = true;
            answer.read_root_link(link)?;
            if let Some(path) = &answer.alternate_path {
                prefix.clone_from(path);
            }
        }
        let prefix = if prefix == "/" { "" } else { prefix.as_str() };
        for link in others {
            let path = object_path(&link.target, prefix)?;
            if path == Path::Root {
                continue;
            }
            let (properties, attributes) =
                from_link_params(&link.params).map_err(|source| LinkError::Attribute {
                    target: clip(&link.target),
                    source,
                })?;
            answer.links.push(DiscoverLink {
                path,
                properties,
                attributes,
            });
        }
        Ok(answer)
    }

    /// The answer as links: the root link (when there is an enabler version or an alternate
    /// path), then the links in order.
    pub fn to_links(&self) -> Vec<Link> {
        let prefix = match self.alternate_path.as_deref() {
            None | Some("/") => "",
            Some(p) => p,
        };
        let mut links = Vec::new();
        if !prefix.is_empty() || self.lwm2m.is_some() {
            let mut root = Link::new(if prefix.is_empty() { "/" } else { prefix });
            if !prefix.is_empty() {
                root.params.push((
                    "rt".to_owned(),
                    Some(ParamValue::Quoted(LWM2M_RESOURCE_TYPE.to_owned())),
                ));
            }
            if let Some(v) = self.lwm2m {
                root.params
                    .push(("lwm2m".to_owned(), Some(ParamValue::Token(v.to_string()))));
            }
            links.push(root);
        }
        links.extend(self.links.iter().map(|l| l.to_link(prefix)));
        links
    }

    /// The link for a path, if the answer has one.
    pub fn get(&self, path: &Path) -> Option<&DiscoverLink> {
        self.links.iter().find(|l| l.path == *path)
    }

    /// Keeps what a 1.2 Discover with `?depth=` asks for: links at `target` and up to
    /// `depth` levels below it.
    pub fn retain_depth(&mut self, target: &Path, depth: u8) {
        let limit = target.depth() + usize::from(depth);
        self.links
            .retain(|l| target.is_prefix_of(&l.path) && l.path.depth() <= limit);
    }

    fn read_root_link(&mut self, link: &Link) -> Result<(), LinkError> {
        let path = alternate_path_of(link)?;
        let attribute = |source| LinkError::Attribute {
            target: clip(&link.target),
            source,
        };
        let (props, _) = from_link_params(&link.params).map_err(attribute)?;
        if let Some(v) = props.lwm2m {
            if self.lwm2m.is_some_and(|old| old != v) {
                return Err(attribute(AttributeError::Duplicate("lwm2m")));
            }
            self.lwm2m = Some(v);
        }
        if path != "/" {
            self.alternate_path = Some(path);
        }
        Ok(())
    }
}

impl fmt::Display for DiscoverAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&syntax::format(&self.to_links()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::attributes::Attr;

    fn parse(s: &str) -> DiscoverAnswer {
        DiscoverAnswer::parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn resource_discover_with_attributes() {
        let answer = parse("</3/0/7>;dim=8;pmin=10;pmax=60;gt=50;lt=42.2");
        let link = answer.get(&Path::Resource(3, 0, 7)).expect("has /3/0/7");
        assert_eq!(link.properties.dim, Some(8));
        assert_eq!(link.attributes.pmin, Attr::Set(10));
        assert_eq!(link.attributes.lt, Attr::Set(42.2));
        assert_eq!(
            answer.to_string(),
            "</3/0/7>;dim=8;pmin=10;pmax=60;gt=50;lt=42.2"
        );
    }

    #[test]
    fn bootstrap_discover_both_forms() {
        let old = parse(r#"lwm2m="1.0",</0/0>;ssid=101, </0/1/>, </0/2>;ssid=102"#);
        assert_eq!(old.lwm2m, Some(Version::V1_0));
        assert_eq!(old.links[1].path, Path::Instance(0, 1));
        assert_eq!(old.links[2].properties.ssid, Some(102));
        let new = parse(r#"</>;lwm2m=1.0,</0/0>;ssid=101,</0/1>,</0/2>;ssid=102"#);
        assert_eq!(new, old);
        assert_eq!(
            new.to_string(),
            "</>;lwm2m=1.0,</0/0>;ssid=101,</0/1>,</0/2>;ssid=102"
        );
    }

    #[test]
    fn alternate_path_in_answer_or_given() {
        let a = parse(r#"</lwm2m>;rt="oma.lwm2m";lwm2m=1.2,</lwm2m/0/1>,</lwm2m/3/0>"#);
        assert_eq!(a.alternate_path.as_deref(), Some("/lwm2m"));
        assert_eq!(a.lwm2m, Some(Version::V1_2));
        assert_eq!(
            a.links.iter().map(|l| l.path).collect::<Vec<_>>(),
            [Path::Instance(0, 1), Path::Instance(3, 0)]
        );
        assert_eq!(
            a.to_string(),
            r#"</lwm2m>;rt="oma.lwm2m";lwm2m=1.2,</lwm2m/0/1>,</lwm2m/3/0>"#
        );
        let dm =
            DiscoverAnswer::parse_under(b"</lwm2m/3/0>,</lwm2m/3/0/1>", "/lwm2m").expect("parses");
        assert_eq!(dm.links.len(), 2);
        assert!(matches!(
            DiscoverAnswer::parse(b"</lwm2m/3/0>"),
            Err(LinkError::NotAPath { .. })
        ));
    }

    #[test]
    fn bad_attribute_values_are_errors() {
        assert!(matches!(
            DiscoverAnswer::parse(b"</3/0/7>;dim=x"),
            Err(LinkError::Attribute {
                source: AttributeError::BadValue { name: "dim", .. },
                ..
            })
        ));
        assert!(matches!(
            DiscoverAnswer::parse(b"lwm2m=one,</0/0>"),
            Err(LinkError::Attribute { .. })
        ));
        assert!(matches!(
            DiscoverAnswer::parse(br#"lwm2m="1.0",</>;lwm2m=1.1"#),
            Err(LinkError::Attribute {
                source: AttributeError::Duplicate("lwm2m"),
                ..
            })
        ));
    }

    #[test]
    fn depth() {
        let mut a = parse("</3>;pmin=10,</3/0>,</3/0/1>,</3/0/7>;dim=2,</3/0/7/0>,</4/0>");
        a.retain_depth(&Path::Instance(3, 0), 1);
        let paths: Vec<String> = a.links.iter().map(|l| l.path.to_string()).collect();
        assert_eq!(paths, ["/3/0", "/3/0/1", "/3/0/7"]);
    }
}
