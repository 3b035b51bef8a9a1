//! OMA DDF XML (LWM2M.xsd, LWM2M-v1_1.xsd, LWM2M-v1_2.xsd) → [`ObjectModel`].
//!
//! DDF files come from operators' directories and from plugins, so the parser treats them as
//! untrusted: no DTD or entity expansion beyond XML's predefined ones, a cap on depth and on
//! element count, and a typed error naming what is wrong instead of a half-filled model.

use std::collections::BTreeMap;

use quick_xml::events::Event;
use quick_xml::reader::Reader;

use crate::model::{ObjectModel, Operations, ResourceModel, Version};
use crate::value::DataType;

/// Deeper than any DDF schema needs (LWM2M > Object > Resources > Item > field is 5).
const MAX_DEPTH: usize = 16;
/// More than any OMA object (the largest registry objects have a few hundred resources).
const MAX_ELEMENTS: usize = 50_000;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DdfError {
    #[error("not well-formed XML: {0}")]
    Xml(String),
    #[error("XML nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("more than {MAX_ELEMENTS} XML elements")]
    TooLarge,
    #[error("root element must be <LWM2M>, found <{0}>")]
    NotDdf(String),
    #[error("no <Object> in the document")]
    NoObject,
    #[error("{context}: missing <{field}>")]
    Missing {
        context: String,
        field: &'static str,
    },
    #[error("{context}: <{field}> has invalid value {value:?}")]
    Invalid {
        context: String,
        field: &'static str,
        value: String,
    },
    #[error("object {object}: resource {resource} defined twice")]
    DuplicateResource { object: u16, resource: u16 },
}

/// A minimal element tree: DDF has no mixed content worth keeping.
#[derive(Debug, Default)]
struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    text: String,
    children: Vec<Element>,
}

impl Element {
    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }
    fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
    fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn xml_err(e: impl std::fmt::Display) -> DdfError {
    DdfError::Xml(e.to_string())
}

fn local_name(name: &str) -> String {
    match name.rsplit_once(':') {
        Some((_, local)) => local.to_owned(),
        None => name.to_owned(),
    }
}

fn parse_tree(xml: &str) -> Result<Element, DdfError> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Element> = vec![Element::default()];
    let mut count = 0usize;
    loop {
        let event = reader.read_event().map_err(xml_err)?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(DdfError::TooLarge);
                }
                if stack.len() > MAX_DEPTH {
                    return Err(DdfError::TooDeep);
                }
                let mut el = Element {
                    name: local_name(e.name().as_ref()),
                    ..Element::default()
                };
                for attr in e.attributes() {
                    let attr = attr.map_err(xml_err)?;
                    let value = attr
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(xml_err)?;
                    el.attrs
                        .push((local_name(attr.key.as_ref()), value.into_owned()));
                }
                if matches!(event, Event::Start(_)) {
                    stack.push(el);
                } else if let Some(parent) = stack.last_mut() {
                    parent.children.push(el);
                }
            }
            Event::End(_) => {
                // quick-xml checks that end tags match start tags.
                let el = stack.pop().ok_or_else(|| xml_err("unbalanced end tag"))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => return Err(xml_err("unbalanced end tag")),
                }
            }
            // Entity and character references arrive as `GeneralRef` events, so text holds none.
            Event::Text(t) => {
                if let Some(el) = stack.last_mut() {
                    el.text.push_str(&t.xml10_content());
                }
            }
            Event::CData(t) => {
                let text = t.xml10_content();
                if let Some(el) = stack.last_mut() {
                    el.text.push_str(&text);
                }
            }
            Event::GeneralRef(r) => {
                // Only the predefined entities and character references; a DTD cannot add more.
                let name: &str = &r;
                let resolved = match r.resolve_char_ref().map_err(xml_err)? {
                    Some(c) => c.to_string(),
                    None => quick_xml::escape::resolve_predefined_entity(name)
                        .ok_or_else(|| xml_err(format!("unknown entity &{name};")))?
                        .to_owned(),
                };
                if let Some(el) = stack.last_mut() {
                    el.text.push_str(&resolved);
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
    if stack.len() != 1 {
        return Err(xml_err("unclosed element at end of document"));
    }
    let mut doc = stack.pop().unwrap_or_default();
    match doc.children.len() {
        1 => Ok(doc.children.remove(0)),
        0 => Err(xml_err("empty document")),
        _ => Err(xml_err("more than one root element")),
    }
}

/// Parses a DDF document; returns every `<Object>` in it.
pub fn parse(xml: &str) -> Result<Vec<ObjectModel>, DdfError> {
    let root = parse_tree(xml)?;
    if root.name != "LWM2M" {
        return Err(DdfError::NotDdf(root.name.chars().take(64).collect()));
    }
    let objects: Vec<_> = root
        .children_named("Object")
        .map(parse_object)
        .collect::<Result<_, _>>()?;
    if objects.is_empty() {
        return Err(DdfError::NoObject);
    }
    Ok(objects)
}

fn invalid(context: &str, field: &'static str, value: &str) -> DdfError {
    DdfError::Invalid {
        context: context.to_owned(),
        field,
        value: value.chars().take(64).collect(),
    }
}

fn required<'a>(el: &'a Element, context: &str, field: &'static str) -> Result<&'a str, DdfError> {
    el.text_of(field).ok_or_else(|| DdfError::Missing {
        context: context.to_owned(),
        field,
    })
}

fn parse_id(s: &str, context: &str, field: &'static str) -> Result<u16, DdfError> {
    match crate::path::parse_id(s) {
        Ok(id) => Ok(id),
        Err(_) => Err(invalid(context, field, s)),
    }
}

fn multiple(s: &str, context: &str) -> Result<bool, DdfError> {
    match s {
        "Multiple" => Ok(true),
        "Single" => Ok(false),
        other => Err(invalid(context, "MultipleInstances", other)),
    }
}

fn mandatory(s: &str, context: &str) -> Result<bool, DdfError> {
    match s {
        "Mandatory" => Ok(true),
        "Optional" => Ok(false),
        other => Err(invalid(context, "Mandatory", other)),
    }
}

fn version(el: &Element, field: &'static str, context: &str) -> Result<Version, DdfError> {
    match el.text_of(field) {
        None | Some("") => Ok(Version::V1_0),
        Some(v) => v.parse().map_err(|_| invalid(context, field, v)),
    }
}

fn parse_object(obj: &Element) -> Result<ObjectModel, DdfError> {
    let context = "Object";
    let id = parse_id(required(obj, context, "ObjectID")?, context, "ObjectID")?;
    let context = format!("object {id}");
    let version = version(obj, "ObjectVersion", &context)?;
    let lwm2m_version = version_lwm2m(obj, &context)?;
    let mut resources = BTreeMap::new();
    if let Some(list) = obj.child("Resources") {
        for item in list.children_named("Item") {
            let res = parse_resource(item, &context)?;
            if resources.insert(res.id, res).is_some() {
                let rid = item
                    .attr("ID")
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or_default();
                return Err(DdfError::DuplicateResource {
                    object: id,
                    resource: rid,
                });
            }
        }
    }
    Ok(ObjectModel {
        id,
        name: required(obj, &context, "Name")?.to_owned(),
        description: obj.text_of("Description1").unwrap_or_default().to_owned(),
        version,
        lwm2m_version,
        urn: obj.text_of("ObjectURN").unwrap_or_default().to_owned(),
        multiple: multiple(required(obj, &context, "MultipleInstances")?, &context)?,
        mandatory: mandatory(obj.text_of("Mandatory").unwrap_or("Optional"), &context)?,
        resources,
    })
}

fn version_lwm2m(obj: &Element, context: &str) -> Result<Version, DdfError> {
    version(obj, "LWM2MVersion", context)
}

fn parse_resource(item: &Element, object_context: &str) -> Result<ResourceModel, DdfError> {
    let raw_id = item.attr("ID").ok_or_else(|| DdfError::Missing {
        context: format!("{object_context} resource"),
        field: "ID",
    })?;
    let id = parse_id(raw_id.trim(), object_context, "ID")?;
    let context = format!("{object_context} resource {id}");
    let ops_text = item.text_of("Operations").unwrap_or_default();
    let operations =
        Operations::from_ddf(ops_text).ok_or_else(|| invalid(&context, "Operations", ops_text))?;
    let type_text = item.text_of("Type").unwrap_or_default();
    let data_type =
        DataType::from_ddf_name(type_text).ok_or_else(|| invalid(&context, "Type", type_text))?;
    Ok(ResourceModel {
        id,
        name: required(item, &context, "Name")?.to_owned(),
        operations,
        multiple: multiple(required(item, &context, "MultipleInstances")?, &context)?,
        mandatory: mandatory(item.text_of("Mandatory").unwrap_or("Optional"), &context)?,
        data_type,
        range: item
            .text_of("RangeEnumeration")
            .unwrap_or_default()
            .to_owned(),
        units: item.text_of("Units").unwrap_or_default().to_owned(),
        description: item.text_of("Description").unwrap_or_default().to_owned(),
    })
}
