//! Read (GET): the node at a path, readable resources only, in the negotiated format.

use steward_coap::message::{Code, Response};
use steward_objects::format::Payload;
use steward_objects::{ContentFormat, Models, Node, Path, Resource, choose_format, codec};

use super::Device;
use super::error::DmError;

impl Device {
    pub(super) fn read(
        &self,
        path: &Path,
        accept: Option<ContentFormat>,
    ) -> Result<Response, DmError> {
        Device::check_access(path)?;
        if *path == Path::Root {
            return Err(DmError::not_allowed("Read", path));
        }
        if let (Some(o), Some(r)) = (path.object_id(), path.resource_id())
            && let Some(model) = self.models.resource(o, r)
            && !model.operations.read
        {
            return Err(DmError::not_allowed("Read", path));
        }
        let node = self
            .readable_node(path)
            .ok_or_else(|| DmError::not_found(path))?;
        let (format, body) = self.render(path, &node, accept)?;
        Ok(Response::new(Code::CONTENT).with_payload(format.code(), body))
    }

    /// Encodes `node` in the format asked for (4.06 when the device cannot) or, without
    /// Accept, in the one `choose_format` picks for this device.
    pub(super) fn render(
        &self,
        path: &Path,
        node: &Node,
        accept: Option<ContentFormat>,
    ) -> Result<(ContentFormat, Vec<u8>), DmError> {
        let shape = self.shape(path, node);
        let client = self.client_formats();
        let format = match accept {
            Some(f) if self.formats().contains(&f) && client.accepts(f, shape) => f,
            Some(f) => return Err(DmError::NotAcceptable(f.code())),
            None => choose_format(&client, shape)
                .ok_or_else(|| DmError::Internal(format!("no format for {path}")))?,
        };
        let body = codec::encode(format, path, node)
            .map_err(|e| DmError::from_encode(format.code(), &e))?;
        Ok((format, body))
    }

    /// The node at `path` as the server may read it: `None` for a resource that is not
    /// readable, and an object or instance without such resources. What Send reports.
    pub fn readable(&self, path: &Path) -> Option<Node> {
        if let (Some(o), Some(r)) = (path.object_id(), path.resource_id())
            && self
                .models
                .resource(o, r)
                .is_some_and(|m| !m.operations.read)
        {
            return None;
        }
        self.readable_node(path)
    }

    /// The node at `path` without resources the model says are not readable (write-only and
    /// executable ones).
    pub(super) fn readable_node(&self, path: &Path) -> Option<Node> {
        let object = path.object_id()?;
        let readable = |rid: &u16| {
            self.models
                .resource(object, *rid)
                .is_none_or(|m| m.operations.read)
        };
        let mut node = self.node(path)?;
        match &mut node {
            Node::Object(instances) => {
                for inst in instances.values_mut() {
                    inst.resources.retain(|rid, _| readable(rid));
                }
            }
            Node::Instance(inst) => inst.resources.retain(|rid, _| readable(rid)),
            Node::Resource(_) | Node::ResourceInstance(_) => {}
        }
        Some(node)
    }

    fn shape(&self, path: &Path, node: &Node) -> Payload {
        let data_type = |p: &Path| {
            steward_objects::node::model_type(&*self.models, p)
                .unwrap_or(steward_objects::DataType::Opaque)
        };
        match node {
            Node::Resource(Resource::Single(_)) | Node::ResourceInstance(_) => {
                Payload::SingleValue(data_type(path))
            }
            _ => Payload::Tree,
        }
    }
}
