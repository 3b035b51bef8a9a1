//! Discover (GET, Accept 40) and Write-Attributes (PUT with only a query).

use steward_coap::message::{Code, Response};
use steward_objects::link::{DiscoverAnswer, DiscoverLink, NotificationAttributes};
use steward_objects::{ContentFormat, DataType, Instance, Models, Path, Resource, Version};

use super::Device;
use super::error::DmError;

impl Device {
    pub(super) fn discover(&self, path: &Path, depth: Option<u8>) -> Result<Response, DmError> {
        Device::check_access(path)?;
        let mut links = Vec::new();
        match *path {
            // Discover on `/` is a Bootstrap-Discover; the DM interface has none.
            Path::Root | Path::ResourceInstance(..) => {
                return Err(DmError::not_allowed("Discover", path));
            }
            Path::Object(o) => {
                let instances = self.tree.get(&o).ok_or_else(|| DmError::not_found(path))?;
                let mut link = DiscoverLink::new(*path).with_attributes(self.attrs(path));
                if let Some(v) = self
                    .models
                    .object_version(o)
                    .filter(|v| *v != Version::V1_0)
                {
                    link = link.with_version(v);
                }
                links.push(link);
                for (iid, inst) in instances {
                    self.instance_links(o, *iid, inst, &mut links);
                }
            }
            Path::Instance(o, i) => {
                let inst = self
                    .instance(o, i)
                    .ok_or_else(|| DmError::not_found(path))?;
                self.instance_links(o, i, inst, &mut links);
            }
            Path::Resource(o, i, r) => {
                let inst = self
                    .instance(o, i)
                    .ok_or_else(|| DmError::not_found(path))?;
                let link = self
                    .resource_link(o, i, r, inst)
                    .ok_or_else(|| DmError::not_found(path))?;
                // At resource level the answer shows the attributes in force, inherited from
                // the instance and object levels (Core §5.4.2).
                let inherited = self
                    .attrs(path)
                    .inherit(&self.attrs(&Path::Instance(o, i)))
                    .inherit(&self.attrs(&Path::Object(o)));
                links.push(link.with_attributes(inherited));
            }
        }
        let mut answer = DiscoverAnswer::new(links);
        // `depth` is LwM2M 1.2; older devices ignore the parameter as unknown.
        if let Some(depth) = depth.filter(|_| self.lwm2m() >= Version::V1_2) {
            answer.retain_depth(path, depth);
        }
        Ok(Response::new(Code::CONTENT).with_payload(
            ContentFormat::LinkFormat.code(),
            answer.to_string().into_bytes(),
        ))
    }

    pub(super) fn write_attributes(
        &mut self,
        path: &Path,
        update: &NotificationAttributes,
    ) -> Result<Response, DmError> {
        Device::check_access(path)?;
        if *path == Path::Root {
            return Err(DmError::not_allowed("Write-Attributes", path));
        }
        if !self.exists(path) {
            return Err(DmError::not_found(path));
        }
        update
            .check_level(path)
            .map_err(|e| DmError::BadRequest(e.to_string()))?;
        let thresholds = !(update.gt.is_absent() && update.lt.is_absent() && update.st.is_absent());
        if thresholds && !self.is_numeric(path) {
            return Err(DmError::BadRequest(format!(
                "gt, lt and st need a numeric resource, {path} is not one"
            )));
        }
        let mut merged = self.attrs(path);
        merged.apply(update);
        merged
            .validate()
            .map_err(|e| DmError::BadRequest(e.to_string()))?;
        if merged.is_empty() {
            self.attributes.remove(path);
        } else {
            self.attributes.insert(*path, merged);
        }
        Ok(Response::new(Code::CHANGED))
    }

    fn attrs(&self, path: &Path) -> NotificationAttributes {
        self.attributes.get(path).cloned().unwrap_or_default()
    }

    /// The instance link and one link per resource it has: stored values and the executable
    /// resources of the model, which exist without a value.
    fn instance_links(&self, o: u16, i: u16, inst: &Instance, links: &mut Vec<DiscoverLink>) {
        let path = Path::Instance(o, i);
        links.push(DiscoverLink::new(path).with_attributes(self.attrs(&path)));
        for rid in self.resource_ids(o, inst) {
            if let Some(link) = self.resource_link(o, i, rid, inst) {
                let at = Path::Resource(o, i, rid);
                links.push(link.with_attributes(self.attrs(&at)));
            }
        }
    }

    fn resource_ids(&self, o: u16, inst: &Instance) -> Vec<u16> {
        let mut ids: Vec<u16> = inst.resources.keys().copied().collect();
        if let Some(model) = self.models.object(o) {
            ids.extend(
                model
                    .resources
                    .values()
                    .filter(|m| m.operations.execute)
                    .map(|m| m.id),
            );
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    fn resource_link(&self, o: u16, i: u16, r: u16, inst: &Instance) -> Option<DiscoverLink> {
        let link = DiscoverLink::new(Path::Resource(o, i, r));
        match inst.resources.get(&r) {
            Some(Resource::Multiple(values)) => {
                Some(link.with_dim(u16::try_from(values.len()).unwrap_or(u16::MAX)))
            }
            Some(Resource::Single(_)) => Some(link),
            None if self
                .models
                .resource(o, r)
                .is_some_and(|m| m.operations.execute) =>
            {
                Some(link)
            }
            None => None,
        }
    }

    fn exists(&self, path: &Path) -> bool {
        match *path {
            Path::Root => true,
            Path::Object(o) => self.tree.contains_key(&o),
            Path::Resource(o, i, r) => self
                .instance(o, i)
                .is_some_and(|inst| self.resource_ids(o, inst).contains(&r)),
            _ => self.node(path).is_some(),
        }
    }

    fn is_numeric(&self, path: &Path) -> bool {
        matches!(
            steward_objects::node::model_type(&*self.models, path),
            Some(DataType::Integer | DataType::UnsignedInteger | DataType::Float)
        )
    }
}
