//! Operations that change the tree: Write (replace and partial update), Execute, Create,
//! Delete. Each checks everything first and changes the tree last, so a refused request
//! leaves no half-applied state behind.

use std::collections::BTreeMap;

use steward_coap::message::{Code, Response, option};
use steward_objects::{ContentFormat, Instance, Models, Node, Path, Resource, Value, codec};

use super::error::DmError;
use super::models::is_core_object;
use super::{Device, Effect, WriteMode};

impl Device {
    pub(super) fn write(
        &mut self,
        path: &Path,
        mode: WriteMode,
        format: ContentFormat,
        payload: &[u8],
    ) -> Result<Response, DmError> {
        Device::check_access(path)?;
        let (object, instance) = match *path {
            // Object-level Write cannot be told from Create on CoAP (Transport §6.4.4).
            Path::Root | Path::Object(_) => return Err(DmError::not_allowed("Write", path)),
            Path::Instance(o, i) | Path::Resource(o, i, _) | Path::ResourceInstance(o, i, _, _) => {
                (o, i)
            }
        };
        if self.instance(object, instance).is_none() {
            return Err(DmError::not_found(path));
        }
        if let Some(rid) = path.resource_id() {
            let model = self
                .models
                .resource(object, rid)
                .ok_or_else(|| DmError::not_found(path))?;
            if !model.operations.write {
                return Err(DmError::not_allowed("Write", path));
            }
            if path.depth() == 4 && !model.multiple {
                return Err(DmError::not_found(path));
            }
        }
        self.check_format(format)?;
        let node = codec::decode(format, path, payload, &*self.models)
            .map_err(|e| DmError::from_decode(format.code(), &e))?;
        if let Node::Instance(inst) = &node {
            self.check_writable(object, inst.resources.keys().copied(), path)?;
            // Package and Package URI drive the update state machine one at a time.
            if object == 5 && inst.resources.keys().any(|r| *r <= 1) {
                return Err(DmError::BadRequest(
                    "write Package or Package URI as a single resource".into(),
                ));
            }
        }
        if let Path::Resource(5, _, rid @ (0 | 1)) = *path {
            return crate::firmware::write(self, rid, node);
        }
        self.store(path, mode, node);
        self.note_server_change(object, path);
        Ok(Response::new(Code::CHANGED))
    }

    pub(super) fn execute(&mut self, path: &Path, arguments: &[u8]) -> Result<Response, DmError> {
        Device::check_access(path)?;
        let Path::Resource(object, instance, resource) = *path else {
            return Err(DmError::not_allowed("Execute", path));
        };
        if self.instance(object, instance).is_none() {
            return Err(DmError::not_found(path));
        }
        parse_arguments(arguments).map_err(DmError::BadRequest)?;
        match (object, resource) {
            (3, 4) => self.effects.push(Effect::Reboot),
            (3, 5) => {
                self.factory_reset();
                self.effects.push(Effect::FactoryReset);
            }
            (3, 12) => {
                if let Some(inst) = self.instance_mut(3, instance) {
                    let none = Resource::Multiple(BTreeMap::from([(0, Value::Integer(0))]));
                    inst.resources.insert(11, none);
                }
            }
            (1, 4) => self.effects.push(Effect::Disable),
            (1, 8) => self.effects.push(Effect::RegistrationUpdate),
            (1, 9) => self.effects.push(Effect::BootstrapRequest),
            (5, r) => return crate::firmware::execute(self, r),
            // An extra object's behaviour is the test's: record the Execute for it.
            (o, _) if !is_core_object(o) => self.effects.push(Effect::Executed {
                path: *path,
                arguments: arguments.to_vec(),
            }),
            // Other executables exist in the model but do nothing on a simulator.
            _ => {}
        }
        Ok(Response::new(Code::CHANGED))
    }

    pub(super) fn create(
        &mut self,
        object: u16,
        format: ContentFormat,
        payload: &[u8],
    ) -> Result<Response, DmError> {
        let path = Path::Object(object);
        Device::check_access(&path)?;
        let model = self
            .models
            .object(object)
            .ok_or_else(|| DmError::not_found(path))?;
        if !model.multiple {
            return Err(DmError::not_allowed("Create", path));
        }
        self.check_format(format)?;
        let (iid, inst, chosen_by_us) = self.decode_new_instance(object, format, payload)?;
        if self.instance(object, iid).is_some() {
            return Err(DmError::BadRequest(format!(
                "/{object}/{iid} exists already"
            )));
        }
        if let Some(rid) = inst
            .resources
            .keys()
            .find(|rid| self.models.resource(object, **rid).is_none())
        {
            return Err(DmError::BadRequest(format!(
                "object {object} has no resource {rid}"
            )));
        }
        self.tree.entry(object).or_default().insert(iid, inst);
        self.effects.push(Effect::ObjectsChanged);
        let mut response = Response::new(Code::CREATED);
        if chosen_by_us {
            // The server did not name the instance: tell it which one it got.
            response = response
                .with_option(option::LOCATION_PATH, object.to_string().into_bytes())
                .with_option(option::LOCATION_PATH, iid.to_string().into_bytes());
        }
        Ok(response)
    }

    pub(super) fn delete(&mut self, path: &Path) -> Result<Response, DmError> {
        Device::check_access(path)?;
        let Path::Instance(object, instance) = *path else {
            return Err(DmError::not_allowed("Delete", path));
        };
        // Single-instance objects (the Device object above all) cannot lose their instance.
        if self.models.object(object).is_some_and(|m| !m.multiple) {
            return Err(DmError::not_allowed("Delete", path));
        }
        let removed = self
            .tree
            .get_mut(&object)
            .and_then(|instances| instances.remove(&instance));
        if removed.is_none() {
            return Err(DmError::not_found(path));
        }
        self.attributes.retain(|p, _| !path.is_prefix_of(p));
        self.effects.push(Effect::ObjectsChanged);
        Ok(Response::new(Code::DELETED))
    }

    /// The instance of a Create payload: the server may name it (TLV instance wrapper, SenML
    /// names `/o/i/r`), or send bare resources and let the device pick the lowest free ID.
    fn decode_new_instance(
        &self,
        object: u16,
        format: ContentFormat,
        payload: &[u8],
    ) -> Result<(u16, Instance, bool), DmError> {
        let as_object = codec::decode(format, &Path::Object(object), payload, &*self.models);
        if let Ok(Node::Object(instances)) = as_object {
            let mut it = instances.into_iter();
            return match (it.next(), it.next()) {
                (Some((iid, inst)), None) => Ok((iid, inst, false)),
                _ => Err(DmError::BadRequest(
                    "a Create payload must hold exactly one instance".into(),
                )),
            };
        }
        let free = (0..u16::MAX)
            .find(|i| self.instance(object, *i).is_none())
            .ok_or_else(|| DmError::BadRequest(format!("object {object} is full")))?;
        match codec::decode(
            format,
            &Path::Instance(object, free),
            payload,
            &*self.models,
        ) {
            Ok(Node::Instance(inst)) => Ok((free, inst, true)),
            Ok(_) => Err(DmError::BadRequest("not an instance".into())),
            Err(e) => Err(DmError::from_decode(format.code(), &e)),
        }
    }

    /// Every resource of an instance payload must exist and be writable.
    fn check_writable(
        &self,
        object: u16,
        resources: impl Iterator<Item = u16>,
        path: &Path,
    ) -> Result<(), DmError> {
        for rid in resources {
            match self.models.resource(object, rid) {
                None => {
                    return Err(DmError::BadRequest(format!(
                        "{path}: object {object} has no resource {rid}"
                    )));
                }
                Some(m) if !m.operations.write => {
                    return Err(DmError::not_allowed("Write", format!("{path}/{rid}")));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Puts a decoded (and checked) node into the tree.
    pub(super) fn store(&mut self, path: &Path, mode: WriteMode, node: Node) {
        let (object, instance) = match *path {
            Path::Instance(o, i) | Path::Resource(o, i, _) | Path::ResourceInstance(o, i, _, _) => {
                (o, i)
            }
            Path::Root | Path::Object(_) => return,
        };
        let models = std::sync::Arc::clone(&self.models);
        let Some(inst) = self.instance_mut(object, instance) else {
            return;
        };
        match (node, *path) {
            (Node::Instance(new), _) => {
                if mode == WriteMode::Replace {
                    // Replace: writable resources become the payload's; read-only ones (the
                    // device's own data) stay. Mandatory writable ones the payload leaves out
                    // keep their value rather than leave the instance invalid.
                    inst.resources.retain(|rid, _| {
                        models
                            .resource(object, *rid)
                            .is_none_or(|m| !m.operations.write || m.mandatory)
                    });
                }
                for (rid, res) in new.resources {
                    merge_resource(&mut inst.resources, rid, res, mode);
                }
            }
            (Node::Resource(res), Path::Resource(_, _, rid)) => {
                merge_resource(&mut inst.resources, rid, res, mode);
            }
            (Node::ResourceInstance(v), Path::ResourceInstance(_, _, rid, ri)) => {
                let entry = inst
                    .resources
                    .entry(rid)
                    .or_insert_with(|| Resource::Multiple(BTreeMap::new()));
                if let Resource::Multiple(values) = entry {
                    values.insert(ri, v);
                }
            }
            // The codec checked the node fits the path; nothing else can arrive here.
            _ => {}
        }
    }

    /// Writing the lifetime or binding of our Server account changes the registration.
    pub(super) fn note_server_change(&mut self, object: u16, path: &Path) {
        if object == 1
            && matches!(path.resource_id(), None | Some(1) | Some(7))
            && !self
                .effects
                .contains(&Effect::RegistrationParametersChanged)
        {
            self.effects.push(Effect::RegistrationParametersChanged);
        }
    }
}

fn merge_resource(
    resources: &mut BTreeMap<u16, Resource>,
    rid: u16,
    new: Resource,
    mode: WriteMode,
) {
    match (mode, resources.get_mut(&rid), new) {
        // Partial update of a multiple resource adds or overwrites instances.
        (WriteMode::Update, Some(Resource::Multiple(old)), Resource::Multiple(values)) => {
            old.extend(values);
        }
        (_, _, new) => {
            resources.insert(rid, new);
        }
    }
}

/// Checks Execute arguments (Core §5.4.5): `0='a',1,2='x y'`, a digit and an optional quoted
/// value of printable characters other than `'`, `"` and `\`. Returns them as (digit, value).
pub fn parse_arguments(payload: &[u8]) -> Result<Vec<(u8, Option<String>)>, String> {
    let text = std::str::from_utf8(payload).map_err(|_| "arguments are not UTF-8".to_owned())?;
    let mut out = Vec::new();
    if text.is_empty() {
        return Ok(out);
    }
    let mut rest = text;
    loop {
        let mut chars = rest.char_indices();
        let digit = match chars.next() {
            Some((_, c)) if c.is_ascii_digit() => c as u8 - b'0',
            _ => return Err(format!("argument must start with a digit: {rest:?}")),
        };
        rest = &rest[1..];
        let mut value = None;
        if let Some(after) = rest.strip_prefix("='") {
            let end = after
                .find('\'')
                .ok_or_else(|| "unterminated argument value".to_owned())?;
            let v = &after[..end];
            if !v
                .chars()
                .all(|c| (' '..='~').contains(&c) && c != '"' && c != '\\')
            {
                return Err(format!("argument {digit} has a character not allowed"));
            }
            value = Some(v.to_owned());
            rest = &after[end + 1..];
        }
        out.push((digit, value));
        match rest.strip_prefix(',') {
            Some(next) => rest = next,
            None if rest.is_empty() => return Ok(out),
            None => return Err(format!("unexpected {rest:?} after argument {digit}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_arguments;

    #[test]
    fn execute_arguments() {
        assert_eq!(parse_arguments(b""), Ok(vec![]));
        assert_eq!(
            parse_arguments(b"0='a b',1"),
            Ok(vec![(0, Some("a b".into())), (1, None)])
        );
        for bad in [&b"a"[..], b"0=", b"0='x", b"0,", b"12", b"0='\\'"] {
            assert!(parse_arguments(bad).is_err(), "{bad:?}");
        }
    }
}
