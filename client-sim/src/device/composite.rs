//! Read-Composite (FETCH /) and Write-Composite (iPATCH /), LwM2M 1.1+.

use steward_coap::message::{Code, Response};
use steward_objects::{ContentFormat, Models, Node, NodeMap, Path, Version, codec};

use super::error::DmError;
use super::{Device, WriteMode};

impl Device {
    pub(super) fn read_composite(
        &self,
        format: ContentFormat,
        accept: Option<ContentFormat>,
        payload: &[u8],
    ) -> Result<Response, DmError> {
        self.check_composite_version()?;
        use ContentFormat as F;
        let allowed = match format {
            F::SenmlJson | F::SenmlCbor => true,
            F::SenmlEtchJson | F::SenmlEtchCbor | F::Lwm2mCbor => self.lwm2m() >= Version::V1_2,
            _ => false,
        };
        if !allowed {
            return Err(DmError::UnsupportedContentFormat(format.code()));
        }
        let paths = codec::decode_paths(format, payload)
            .map_err(|e| DmError::from_decode(format.code(), &e))?;
        // Without Accept the answer comes in the request's format (SenML for SenML-ETCH).
        let answer_format = match accept.unwrap_or(format) {
            F::SenmlEtchJson => F::SenmlJson,
            F::SenmlEtchCbor => F::SenmlCbor,
            f => f,
        };
        if !answer_format.is_composite() || !self.formats().contains(&answer_format) {
            return Err(DmError::NotAcceptable(answer_format.code()));
        }
        let mut nodes = NodeMap::new();
        for path in paths {
            Device::check_access(&path)?;
            if path == Path::Root {
                // Everything the server may read: every object but Security.
                for o in self.tree.keys().filter(|o| **o != 0) {
                    let p = Path::Object(*o);
                    if let Some(node) = self.readable_node(&p) {
                        nodes.insert(p, node);
                    }
                }
                continue;
            }
            // A path that does not exist adds nothing; the server sees it missing from the
            // answer, and the other values still arrive.
            if let Some(node) = self.readable_node(&path) {
                nodes.insert(path, node);
            }
        }
        let body = codec::encode_nodes(answer_format, &nodes)
            .map_err(|e| DmError::from_encode(answer_format.code(), &e))?;
        Ok(Response::new(Code::CONTENT).with_payload(answer_format.code(), body))
    }

    pub(super) fn write_composite(
        &mut self,
        format: ContentFormat,
        payload: &[u8],
    ) -> Result<Response, DmError> {
        self.check_composite_version()?;
        let allowed = match format {
            ContentFormat::SenmlJson | ContentFormat::SenmlCbor => true,
            ContentFormat::Lwm2mCbor => self.lwm2m() >= Version::V1_2,
            _ => false,
        };
        if !allowed {
            return Err(DmError::UnsupportedContentFormat(format.code()));
        }
        let nodes = codec::decode_nodes(format, payload, None, &*self.models)
            .map_err(|e| DmError::from_decode(format.code(), &e))?;
        // All or nothing: check every target before changing any.
        for (path, node) in &nodes {
            Device::check_access(path)?;
            let (Some(o), Some(i), Some(r)) =
                (path.object_id(), path.instance_id(), path.resource_id())
            else {
                return Err(DmError::BadRequest(format!(
                    "{path}: Write-Composite writes resources"
                )));
            };
            if self.instance(o, i).is_none() {
                return Err(DmError::not_found(path));
            }
            match self.models.resource(o, r) {
                None => return Err(DmError::not_found(path)),
                Some(m) if !m.operations.write => {
                    return Err(DmError::not_allowed("Write", path));
                }
                Some(_) => {}
            }
            if !matches!(node, Node::Resource(_) | Node::ResourceInstance(_)) {
                return Err(DmError::BadRequest(format!("{path}: not a resource value")));
            }
        }
        for (path, node) in nodes {
            self.store(&path, WriteMode::Replace, node);
            if let Some(o) = path.object_id() {
                self.note_server_change(o, &path);
            }
        }
        Ok(Response::new(Code::CHANGED))
    }

    /// Composite operations came with LwM2M 1.1; a 1.0 device does not know FETCH/iPATCH.
    fn check_composite_version(&self) -> Result<(), DmError> {
        if self.lwm2m() >= Version::V1_1 {
            Ok(())
        } else {
            Err(DmError::not_allowed("composite operations", Path::Root))
        }
    }
}
