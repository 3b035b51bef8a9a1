//! Leshan's JSON shapes (leshan-rest-api.md §2.3): registrations, LwM2M nodes in both
//! directions, device responses, Discover links and object models. Pure functions of their
//! input, shared by `/api/clients`, the event stream (REGISTRATION, NOTIFICATION,
//! REQUEST_RESPONSE) and anything else that speaks Leshan's JSON.
//!
//! Leshan quirks kept on purpose: integers and floats are JSON strings, TIME is epoch
//! milliseconds, opaque is lower-case hex, `status` is `NAME(code)`, empty fields are left out
//! (Jackson `NON_NULL`), CoRE-link attribute values keep their quotes.

use crate::hex::{decode as unhex, encode as hex};
use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde_json::{Map, Value as Json, json};
use steward_coap::message::Code;
use steward_objects::link::{self, DiscoverAnswer, Link, ObjectLinks, ParamValue};
use steward_objects::{
    DataType, Instance, Node, NodeMap, ObjLink, ObjectModel, Path, Resource, Value,
};

use crate::dm::{DmError, DownlinkResponse};
use crate::registry::{PeerIdentity, Registration};

/// Which operation a response answers: decides which codes are `valid` (Leshan's
/// `*Response.isValid()`: the codes the spec allows for that operation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Read,
    Discover,
    Write,
    WriteAttributes,
    Execute,
    Create,
    Delete,
    Observe,
    CancelObservation,
    ReadComposite,
    WriteComposite,
    ObserveComposite,
    CancelCompositeObservation,
}

impl Operation {
    fn valid(self, code: Code) -> bool {
        let c = code_number(code);
        let success = match self {
            Operation::Create => 201,
            Operation::Delete => 202,
            Operation::Write
            | Operation::WriteAttributes
            | Operation::Execute
            | Operation::WriteComposite => 204,
            _ => 205,
        };
        let errors: &[u16] = match self {
            Operation::Read | Operation::Observe | Operation::CancelObservation => {
                &[400, 401, 404, 405, 406, 500]
            }
            Operation::ReadComposite
            | Operation::ObserveComposite
            | Operation::CancelCompositeObservation => &[400, 401, 404, 406, 415, 500],
            Operation::Discover | Operation::WriteAttributes | Operation::Execute => {
                &[400, 401, 404, 405, 500]
            }
            Operation::Delete => &[400, 401, 404, 405, 500],
            Operation::Write | Operation::WriteComposite => {
                &[400, 401, 404, 405, 408, 413, 415, 500]
            }
            Operation::Create => &[400, 401, 404, 405, 415, 500],
        };
        c == success || errors.contains(&c)
    }
}

/// `class*100+detail`: Leshan's number for a CoAP code (4.04 → 404).
pub fn code_number(code: Code) -> u16 {
    u16::from(code.class()) * 100 + u16::from(code.detail())
}

/// Leshan's `ResponseCode.toString()`: `CONTENT(205)`, `UNKNOWN(502)` for codes it has no name for.
pub fn status(code: Code) -> String {
    let n = code_number(code);
    let name = match n {
        201 => "CREATED",
        202 => "DELETED",
        204 => "CHANGED",
        205 => "CONTENT",
        231 => "CONTINUE",
        400 => "BAD_REQUEST",
        401 => "UNAUTHORIZED",
        403 => "FORBIDDEN",
        404 => "NOT_FOUND",
        405 => "METHOD_NOT_ALLOWED",
        406 => "NOT_ACCEPTABLE",
        408 => "REQUEST_ENTITY_INCOMPLETE",
        412 => "PRECONDITION_FAILED",
        413 => "REQUEST_ENTITY_TOO_LARGE",
        415 => "UNSUPPORTED_CONTENT_FORMAT",
        500 => "INTERNAL_SERVER_ERROR",
        _ => "UNKNOWN",
    };
    format!("{name}({n})")
}

/// A device's answer as Leshan's Response JSON (§2.3.4). `target` is the request's path (the
/// `id` of the content node); composite answers key their nodes by path instead.
pub fn response(op: Operation, target: &Path, answer: &DownlinkResponse) -> Json {
    let code = answer.code();
    let mut out = envelope(op, code);
    match answer {
        DownlinkResponse::Read { node, .. }
        | DownlinkResponse::Observe { node, .. }
        | DownlinkResponse::CancelObservation { node } => {
            if let Some(node) = node {
                out.insert("content".into(), node_json(target, node));
            }
        }
        DownlinkResponse::ReadComposite { nodes }
        | DownlinkResponse::ObserveComposite { nodes, .. }
        | DownlinkResponse::CancelCompositeObservation { nodes } => {
            out.insert("content".into(), nodes_json(nodes));
        }
        DownlinkResponse::Discover { links } => {
            out.insert("objectLinks".into(), discover_links(links));
        }
        DownlinkResponse::Create { location } => {
            // Leshan joins the Location-Path options: no leading slash.
            if let Some(path) = location {
                let text = path.to_string();
                out.insert(
                    "location".into(),
                    Json::String(text.trim_start_matches('/').to_owned()),
                );
            }
        }
        DownlinkResponse::Write
        | DownlinkResponse::WriteAttributes
        | DownlinkResponse::Execute
        | DownlinkResponse::Delete
        | DownlinkResponse::WriteComposite => {}
    }
    Json::Object(out)
}

/// An error code from the device as Leshan's Response JSON: `success` false, `errormessage`
/// only when the device sent a diagnostic.
pub fn error_response(op: Operation, code: Code, diagnostic: &str) -> Json {
    let mut out = envelope(op, code);
    if !diagnostic.is_empty() {
        out.insert("errormessage".into(), Json::String(diagnostic.to_owned()));
    }
    Json::Object(out)
}

/// The outcome of a request as Leshan's Response JSON, when it is one: a device answer or a
/// device error code. Other failures (timeout, bad request, ...) are not responses in Leshan
/// (they become HTTP errors or are dropped); they give `None`.
pub fn outcome(
    op: Operation,
    target: &Path,
    result: &Result<DownlinkResponse, DmError>,
) -> Option<Json> {
    match result {
        Ok(answer) => Some(response(op, target, answer)),
        Err(DmError::Device { code, diagnostic }) => Some(error_response(op, *code, diagnostic)),
        Err(_) => None,
    }
}

fn envelope(op: Operation, code: Code) -> Map<String, Json> {
    let mut out = Map::new();
    out.insert("status".into(), Json::String(status(code)));
    out.insert("valid".into(), Json::Bool(op.valid(code)));
    out.insert("success".into(), Json::Bool(code.is_success()));
    out.insert("failure".into(), Json::Bool(!code.is_success()));
    out
}

/// Composite content: `{"/3/0/1": node, ...}`.
pub fn nodes_json(nodes: &NodeMap) -> Json {
    Json::Object(
        nodes
            .iter()
            .map(|(path, node)| (path.to_string(), node_json(path, node)))
            .collect(),
    )
}

/// One node at `path` in Leshan's shape (§2.3.3); the `id` is the path's last ID.
pub fn node_json(path: &Path, node: &Node) -> Json {
    let id = last_id(path);
    match node {
        Node::Object(instances) => json!({
            "id": id,
            "kind": "obj",
            "instances": instances
                .iter()
                .map(|(iid, instance)| instance_json(*iid, instance))
                .collect::<Vec<_>>(),
        }),
        Node::Instance(instance) => instance_json(id.unwrap_or(0), instance),
        Node::Resource(resource) => resource_json(id.unwrap_or(0), resource),
        Node::ResourceInstance(value) => json!({
            "id": id,
            "kind": "resourceInstance",
            "type": type_name(value.data_type()),
            "value": value_json(value),
        }),
    }
}

fn last_id(path: &Path) -> Option<u16> {
    path.ids().last().copied()
}

fn instance_json(id: u16, instance: &Instance) -> Json {
    json!({
        "id": id,
        "kind": "instance",
        "resources": instance
            .resources
            .iter()
            .map(|(rid, r)| resource_json(*rid, r))
            .collect::<Vec<_>>(),
    })
}

fn resource_json(id: u16, resource: &Resource) -> Json {
    match resource {
        Resource::Single(value) => json!({
            "id": id,
            "kind": "singleResource",
            "type": type_name(value.data_type()),
            "value": value_json(value),
        }),
        Resource::Multiple(values) => {
            // Without instances there is no value to take the type from; Leshan would use the
            // model's, which the node does not carry.
            let data_type = values
                .values()
                .next()
                .map_or(DataType::None, Value::data_type);
            let values: Map<String, Json> = values
                .iter()
                .map(|(riid, v)| (riid.to_string(), value_json(v)))
                .collect();
            json!({
                "id": id,
                "kind": "multiResource",
                "type": type_name(data_type),
                "values": values,
            })
        }
    }
}

/// Leshan's `ResourceModel.Type` name, as the node serializer writes it.
pub fn type_name(data_type: DataType) -> &'static str {
    match data_type {
        DataType::String => "STRING",
        DataType::Integer => "INTEGER",
        DataType::UnsignedInteger => "UNSIGNED_INTEGER",
        DataType::Float => "FLOAT",
        DataType::Boolean => "BOOLEAN",
        DataType::Opaque => "OPAQUE",
        DataType::Time => "TIME",
        DataType::Objlnk => "OBJLNK",
        DataType::Corelnk => "CORELINK",
        DataType::None => "NONE",
    }
}

fn value_json(value: &Value) -> Json {
    match value {
        Value::String(s) | Value::Corelnk(s) => Json::String(s.clone()),
        Value::Integer(i) => Json::String(i.to_string()),
        Value::UnsignedInteger(u) => Json::String(u.to_string()),
        // Debug keeps a `.0` on whole numbers, as Java's Double.toString does ("21.0").
        Value::Float(f) => Json::String(format!("{f:?}")),
        Value::Boolean(b) => Json::Bool(*b),
        Value::Opaque(bytes) => Json::String(hex(bytes)),
        Value::Time(secs) => Json::from(secs.saturating_mul(1000)),
        Value::Objlnk(link) => json!({
            "objectId": link.object,
            "objectInstanceId": link.instance,
            "nullLink": link.is_null(),
        }),
    }
}

/// Why a JSON body is not a node (surfaced as 400 `Invalid request: unable to parse json to
/// tlv:<reason>`, Leshan's wording).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NodeJsonError(pub String);

fn bad(msg: impl Into<String>) -> NodeJsonError {
    NodeJsonError(msg.into())
}

/// Parses a Write body for `target` (§2.3.3): an instance at `/o/i`, a single or multiple
/// resource at `/o/i/r`, a resource instance at `/o/i/r/ri`. The node's `id` must be the
/// target's last ID when present.
pub fn parse_node(target: &Path, body: &Json) -> Result<Node, NodeJsonError> {
    let obj = body
        .as_object()
        .ok_or_else(|| bad("Invalid node element"))?;
    let kind = obj.get("kind").and_then(Json::as_str);
    let node = if kind == Some("obj") || obj.contains_key("instances") {
        return Err(bad("a write body must not be an object node"));
    } else if kind == Some("instance") || obj.contains_key("resources") {
        Node::Instance(parse_instance(obj)?.1)
    } else if kind == Some("multiResource") || obj.contains_key("values") {
        Node::Resource(parse_resource(obj)?.1)
    } else if kind == Some("resourceInstance") {
        let data_type = parse_type(obj)?;
        Node::ResourceInstance(parse_value(data_type, field(obj, "value")?)?)
    } else if obj.contains_key("value") {
        Node::Resource(parse_resource(obj)?.1)
    } else {
        return Err(bad("Invalid node element"));
    };
    if let Some(id) = optional_id(obj)?
        && Some(id) != last_id(target)
    {
        return Err(bad(format!("node id {id} does not match path {target}")));
    }
    if !node.fits(target) {
        return Err(bad(format!("this node cannot be written at {target}")));
    }
    Ok(node)
}

/// Parses a Create body: an instance node whose `id` (number, numeric string, or absent/empty
/// for a client-assigned ID) names the instance to create.
pub fn parse_create(body: &Json) -> Result<(Option<u16>, Instance), NodeJsonError> {
    let obj = body
        .as_object()
        .ok_or_else(|| bad("Invalid node element"))?;
    if !(obj.get("kind").and_then(Json::as_str) == Some("instance")
        || obj.contains_key("resources"))
    {
        return Err(bad("payload must contain an object instance"));
    }
    parse_instance(obj)
}

/// Parses a Write-Composite body: `{"/3/0/1": node, ...}`.
pub fn parse_nodes(body: &Json) -> Result<NodeMap, NodeJsonError> {
    let obj = body
        .as_object()
        .ok_or_else(|| bad("composite body must be a JSON object of path to node"))?;
    let mut nodes = NodeMap::new();
    for (key, value) in obj {
        let path: Path = key
            .parse()
            .map_err(|e| bad(format!("invalid path {key:?}: {e}")))?;
        let node = parse_node(&path, value)?;
        nodes.insert(path, node);
    }
    Ok(nodes)
}

fn field<'a>(obj: &'a Map<String, Json>, name: &str) -> Result<&'a Json, NodeJsonError> {
    obj.get(name).ok_or_else(|| bad(format!("Missing {name}")))
}

/// `id` as a number or a numeric string (the UI's Create dialog sends `"7"`, or `""` when
/// cleared, which means no ID).
fn optional_id(obj: &Map<String, Json>) -> Result<Option<u16>, NodeJsonError> {
    match obj.get("id") {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Json::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| bad(format!("invalid id {s:?}"))),
        Some(Json::Number(n)) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| bad(format!("invalid id {n}"))),
        Some(other) => Err(bad(format!("invalid id {other}"))),
    }
}

fn required_id(obj: &Map<String, Json>) -> Result<u16, NodeJsonError> {
    optional_id(obj)?.ok_or_else(|| bad("Missing id"))
}

fn parse_instance(obj: &Map<String, Json>) -> Result<(Option<u16>, Instance), NodeJsonError> {
    let id = optional_id(obj)?;
    let list = field(obj, "resources")?
        .as_array()
        .ok_or_else(|| bad("'resources' must be an array"))?;
    let mut resources = BTreeMap::new();
    for item in list {
        let r = item
            .as_object()
            .ok_or_else(|| bad("Invalid node element"))?;
        let (rid, resource) = parse_resource(r)?;
        resources.insert(rid, resource);
    }
    Ok((id, Instance { resources }))
}

fn parse_resource(obj: &Map<String, Json>) -> Result<(u16, Resource), NodeJsonError> {
    let id = required_id(obj)?;
    let data_type = parse_type(obj)?;
    let multiple = obj.get("kind").and_then(Json::as_str) == Some("multiResource")
        || obj.contains_key("values");
    if multiple {
        let values = field(obj, "values")?
            .as_object()
            .ok_or_else(|| bad("'values' must be an object"))?;
        let mut out = BTreeMap::new();
        for (key, v) in values {
            let riid: u16 = key
                .parse()
                .map_err(|_| bad(format!("invalid resource instance id {key:?}")))?;
            out.insert(riid, parse_value(data_type, v)?);
        }
        Ok((id, Resource::Multiple(out)))
    } else {
        Ok((
            id,
            Resource::Single(parse_value(data_type, field(obj, "value")?)?),
        ))
    }
}

fn parse_type(obj: &Map<String, Json>) -> Result<DataType, NodeJsonError> {
    let name = field(obj, "type")?
        .as_str()
        .ok_or_else(|| bad("'type' must be a string"))?;
    // Leshan upper-cases; the UI sends the model's lower-case names.
    Ok(match name.to_ascii_uppercase().as_str() {
        "STRING" => DataType::String,
        "INTEGER" => DataType::Integer,
        "UNSIGNED_INTEGER" => DataType::UnsignedInteger,
        "FLOAT" => DataType::Float,
        "BOOLEAN" => DataType::Boolean,
        "OPAQUE" => DataType::Opaque,
        "TIME" => DataType::Time,
        "OBJLNK" => DataType::Objlnk,
        "CORELINK" => DataType::Corelnk,
        other => return Err(bad(format!("unknown type {other:?}"))),
    })
}

/// One value by the declared type, accepting what Leshan's deserializer accepts.
fn parse_value(data_type: DataType, v: &Json) -> Result<Value, NodeJsonError> {
    let wrong = || {
        bad(format!(
            "Unexpected JSON type of 'value' field [{v}] for {data_type}"
        ))
    };
    Ok(match data_type {
        DataType::String => Value::String(v.as_str().ok_or_else(wrong)?.to_owned()),
        DataType::Corelnk => {
            let s = v.as_str().ok_or_else(wrong)?;
            link::parse(s.as_bytes()).map_err(|e| bad(format!("invalid CoRE link: {e}")))?;
            Value::Corelnk(s.to_owned())
        }
        DataType::Boolean => Value::Boolean(v.as_bool().ok_or_else(wrong)?),
        DataType::Integer => Value::Integer(match v {
            Json::String(s) => s.trim().parse().map_err(|_| wrong())?,
            Json::Number(n) => n.as_i64().ok_or_else(wrong)?,
            _ => return Err(wrong()),
        }),
        DataType::UnsignedInteger => Value::UnsignedInteger(match v {
            Json::String(s) => s.trim().parse().map_err(|_| wrong())?,
            Json::Number(n) => n.as_u64().ok_or_else(wrong)?,
            _ => return Err(wrong()),
        }),
        DataType::Float => {
            let f = match v {
                Json::String(s) => s.trim().parse::<f64>().map_err(|_| wrong())?,
                Json::Number(n) => n.as_f64().ok_or_else(wrong)?,
                _ => return Err(wrong()),
            };
            if !f.is_finite() {
                return Err(wrong());
            }
            Value::Float(f)
        }
        // Epoch milliseconds in, seconds in the model.
        DataType::Time => Value::Time(v.as_i64().ok_or_else(wrong)?.div_euclid(1000)),
        DataType::Opaque => Value::Opaque(unhex(v.as_str().ok_or_else(wrong)?).ok_or_else(wrong)?),
        DataType::Objlnk => {
            let o = v.as_object().ok_or_else(wrong)?;
            let id = |name: &str| {
                o.get(name)
                    .and_then(Json::as_u64)
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or_else(wrong)
            };
            Value::Objlnk(ObjLink::new(id("objectId")?, id("objectInstanceId")?))
        }
        DataType::None => return Err(wrong()),
    })
}

/// CoRE links as Leshan's `JacksonLinkSerializer` writes them: the value exactly as in link
/// format (quoted strings keep their quotes, a valueless attribute is `null`).
pub fn links_json(links: &[Link]) -> Json {
    Json::Array(
        links
            .iter()
            .map(|l| {
                let attributes: Map<String, Json> = l
                    .params
                    .iter()
                    .map(|(name, value)| {
                        let v = match value {
                            None => Json::Null,
                            Some(ParamValue::Token(t)) => Json::String(t.clone()),
                            Some(ParamValue::Quoted(q)) => Json::String(format!(
                                "\"{}\"",
                                q.replace('\\', "\\\\").replace('"', "\\\"")
                            )),
                        };
                        (name.clone(), v)
                    })
                    .collect();
                json!({"url": l.target, "attributes": attributes})
            })
            .collect(),
    )
}

fn discover_links(answer: &DiscoverAnswer) -> Json {
    links_json(&answer.to_links())
}

/// A registration in Leshan's shape (§2.3.1). `sleeping` is asked only for queue-mode clients.
pub fn registration(reg: &Registration, sleeping: impl FnOnce() -> bool) -> Json {
    let links = link::parse(reg.object_links.as_bytes()).unwrap_or_default();
    let announced = ObjectLinks::parse(reg.object_links.as_bytes()).unwrap_or_default();
    let available: Map<String, Json> = announced
        .objects
        .iter()
        .map(|(id, o)| (id.to_string(), json!(o.instances)))
        .collect();
    let mut out = Map::new();
    out.insert("endpoint".into(), json!(reg.endpoint));
    out.insert("registrationId".into(), json!(reg.id));
    out.insert("registrationDate".into(), json!(reg.registered_at_ms));
    out.insert("lastUpdate".into(), json!(reg.last_update_ms));
    out.insert("address".into(), json!(leshan_address(&reg.address)));
    if let Some(sms) = &reg.sms {
        out.insert("smsNumber".into(), json!(sms));
    }
    out.insert("lwM2mVersion".into(), json!(reg.version.as_str()));
    out.insert("lifetime".into(), json!(reg.lifetime));
    out.insert("bindingMode".into(), json!(binding_mode(reg)));
    out.insert("rootPath".into(), json!(root_path(&announced)));
    out.insert("objectLinks".into(), links_json(&links));
    out.insert(
        "secure".into(),
        json!(!matches!(reg.identity, PeerIdentity::Unsecured)),
    );
    // Steward does not keep extra registration attributes: always empty.
    out.insert("additionalRegistrationAttributes".into(), json!({}));
    out.insert("queuemode".into(), json!(reg.queue_mode));
    out.insert("availableInstances".into(), Json::Object(available));
    if reg.queue_mode {
        out.insert("sleeping".into(), json!(sleeping()));
    }
    Json::Object(out)
}

/// A 1.0 client in queue mode registered with `UQ`, which Leshan shows as is; 1.1+ clients
/// send `Q` apart and Leshan shows the binding alone.
fn binding_mode(reg: &Registration) -> String {
    if reg.queue_mode && reg.version == crate::registry::Lwm2mVersion::V1_0 {
        format!("{}Q", reg.binding)
    } else {
        reg.binding.clone()
    }
}

fn root_path(links: &ObjectLinks) -> String {
    let p = links.alternate_path();
    if p.ends_with('/') {
        p.to_owned()
    } else {
        format!("{p}/")
    }
}

/// `ip:port` with IPv6 unbracketed, as Java's `getHostAddress() + ":" + port`.
fn leshan_address(address: &str) -> String {
    match address.parse::<SocketAddr>() {
        Ok(SocketAddr::V6(a)) => format!("{}:{}", a.ip(), a.port()),
        _ => address.to_owned(),
    }
}

/// Object models as Leshan's `ObjectModelSerDes` writes them (§2.3.6), sorted by ID.
pub fn object_models(models: &[ObjectModel]) -> Json {
    let mut sorted: Vec<&ObjectModel> = models.iter().collect();
    sorted.sort_by_key(|m| m.id);
    Json::Array(sorted.into_iter().map(object_model).collect())
}

fn object_model(m: &ObjectModel) -> Json {
    let resources: Vec<Json> = m
        .resources
        .values()
        .map(|r| {
            let ops = match r.operations.ddf() {
                "" => "NONE",
                other => other,
            };
            json!({
                "id": r.id,
                "name": r.name,
                "operations": ops,
                "instancetype": instance_type(r.multiple),
                "mandatory": r.mandatory,
                "type": model_type_name(r.data_type),
                "range": r.range,
                "units": r.units,
                "description": r.description,
            })
        })
        .collect();
    json!({
        "id": m.id,
        "name": m.name,
        "instancetype": instance_type(m.multiple),
        "mandatory": m.mandatory,
        "urn": m.urn,
        "version": m.version.to_string(),
        "lwm2mversion": m.lwm2m_version.to_string(),
        "description": m.description,
        // Steward's models keep no second description; Leshan writes null when absent.
        "description2": Json::Null,
        "resourcedefs": resources,
    })
}

fn instance_type(multiple: bool) -> &'static str {
    if multiple { "multiple" } else { "single" }
}

/// The lower-case model type names of objectspecs (and of the UI's write bodies).
fn model_type_name(data_type: DataType) -> &'static str {
    match data_type {
        DataType::String => "string",
        DataType::Integer => "integer",
        DataType::UnsignedInteger => "unsigned_integer",
        DataType::Float => "float",
        DataType::Boolean => "boolean",
        DataType::Opaque => "opaque",
        DataType::Time => "time",
        DataType::Objlnk => "objlnk",
        DataType::Corelnk => "corelink",
        DataType::None => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(status(Code::CONTENT), "CONTENT(205)");
        assert_eq!(status(Code::NOT_FOUND), "NOT_FOUND(404)");
        assert_eq!(status(Code::new(5, 2)), "UNKNOWN(502)");
    }

    #[test]
    fn values_out_and_in() {
        let node = Node::Resource(Resource::Single(Value::Float(21.0)));
        let out = node_json(&Path::Resource(3303, 0, 5700), &node);
        assert_eq!(
            out,
            json!({"id":5700,"kind":"singleResource","type":"FLOAT","value":"21.0"})
        );
        let time = node_json(
            &Path::Resource(3, 0, 13),
            &Node::Resource(Resource::Single(Value::Time(1_700_000_000))),
        );
        assert_eq!(time["value"], json!(1_700_000_000_000_i64));
        let back = parse_node(
            &Path::Resource(3, 0, 13),
            &json!({"id":13,"kind":"singleResource","type":"time","value":1_700_000_000_000_i64}),
        );
        assert_eq!(
            back,
            Ok(Node::Resource(Resource::Single(Value::Time(1_700_000_000))))
        );
        let opaque = parse_node(
            &Path::ResourceInstance(5, 0, 0, 1),
            &json!({"id":1,"kind":"resourceInstance","type":"opaque","value":"0aff"}),
        );
        assert_eq!(
            opaque,
            Ok(Node::ResourceInstance(Value::Opaque(vec![10, 255])))
        );
    }

    #[test]
    fn create_ids() {
        let body = json!({"kind":"instance","resources":[{"id":1,"kind":"singleResource","value":"101","type":"integer"}],"id":"7"});
        let (id, instance) = parse_create(&body).expect("instance");
        assert_eq!(id, Some(7));
        assert_eq!(
            instance.resources.get(&1),
            Some(&Resource::Single(Value::Integer(101)))
        );
        let cleared = json!({"kind":"instance","resources":[],"id":""});
        assert_eq!(parse_create(&cleared).map(|(id, _)| id), Ok(None));
    }

    #[test]
    fn wrong_value_type_is_an_error() {
        let e = parse_node(
            &Path::Resource(3, 0, 14),
            &json!({"id":14,"kind":"singleResource","type":"string","value":3}),
        );
        assert!(e.is_err());
        let mismatch = parse_node(
            &Path::Resource(3, 0, 14),
            &json!({"id":15,"kind":"singleResource","type":"string","value":"x"}),
        );
        assert!(mismatch.is_err());
    }

    #[test]
    fn quoted_link_values_keep_quotes() {
        let links = link::parse(br#"</>;rt="oma.lwm2m";ct=60,</3>;ver=1.1,</3/0>"#).expect("links");
        assert_eq!(
            links_json(&links),
            json!([
                {"url":"/","attributes":{"rt":"\"oma.lwm2m\"","ct":"60"}},
                {"url":"/3","attributes":{"ver":"1.1"}},
                {"url":"/3/0","attributes":{}}
            ])
        );
    }
}
