//! The Bootstrap interface on the device (Transport §6.4.2, Core §5.2.7): what a bootstrap
//! server may do between the client's Bootstrap-Request and its Bootstrap-Finish.
//!
//! - Bootstrap-Discover (GET, Accept 40) on `/` or `/{o}`: link format with `lwm2m="1.x"`,
//!   `ssid=` on server accounts (/0 and /1 instances) and `uri=` on /0 instances (Core
//!   §5.2.7.3 example).
//! - Bootstrap-Read (1.1+) on /1 and /2, object or instance (Core §6.1.7.4 allows both objects;
//!   Transport names only /2). /0 and /21 hold secrets: 4.01. Other objects: 4.05.
//! - Bootstrap-Write (PUT) on `/{o}`, `/{o}/{i}`, `/{o}/{i}/{r}`, `/{o}/{i}/{r}/{ri}`: applied
//!   whether or not the instance exists (it is created) and whatever the resource's operations
//!   say (Security resources are writable by nobody else). An instance written whole is
//!   replaced, as Leshan's client does: a stale key must not survive a re-bootstrap. Formats:
//!   those the device reads (TLV always; SenML JSON/CBOR from 1.1; LwM2M CBOR from 1.2; text
//!   and opaque for a single resource).
//! - Bootstrap-Delete on `/`, `/{o}`, `/{o}/{i}`: never the bootstrap-server account and
//!   never an instance of a single-instance object (Device, Connectivity Monitoring,
//!   Firmware Update: the device's own functions). Deleting a /0 account also deletes the /1
//!   instance with its Short Server ID (Transport §5.2.5, unbootstrapping). Deleting what
//!   does not exist is a success: the wanted state holds.
//! - Bootstrap-Finish (`POST /bs`): 2.04 when the configuration is usable — at least one /0
//!   instance with Bootstrap-Server = false, a URI and a Short Server ID that a /1 instance
//!   has — else 4.06 Not Acceptable ("inconsistent loaded configuration").

use std::collections::BTreeMap;
use std::sync::Arc;

use steward_coap::message::{Code, Method, Request, Response};
use steward_objects::link::{DiscoverAnswer, DiscoverLink};
use steward_objects::{
    ContentFormat, Instance, Models, Node, Path, Resource, Value, Version, codec,
};

use super::error::DmError;
use super::request::path_of;
use super::{Device, Effect, WriteMode};
use crate::bootstrap::account::{int, is_bootstrap};

/// Answers one request of the bootstrap server. Never panics.
pub fn handle_bootstrap(device: &mut Device, request: &Request) -> Response {
    match device.bootstrap_operation(request) {
        Ok(response) => response,
        Err(e) => e.to_response(),
    }
}

impl Device {
    fn bootstrap_operation(&mut self, request: &Request) -> Result<Response, DmError> {
        let segments = request.options.uri_path().unwrap_or_default();
        let finish = request.method == Method::Post && segments == ["bs"];
        if let Some(t) = &self.trust
            && !t.accepts_configuration()
        {
            // Recovery mode: the server is not the one the CTL trusts. Only a recovery token
            // (which authenticates itself) and, once one is accepted, Finish.
            // A CTL update goes through to be refused (and recorded as such) by the trust.
            let token = request.method == Method::Put
                && path_of(request).ok().is_some_and(|p| {
                    [crate::trust::rid::TOKEN, crate::trust::rid::CTL_UPDATE]
                        .map(|r| Path::Resource(crate::trust::OBJECT, 0, r))
                        .contains(&p)
                });
            if !(token || finish && t.reset_pending()) {
                return Err(DmError::Forbidden(
                    "recovery mode: this bootstrap server does not chain to the device's CTL; \
                     only a recovery token is accepted"
                        .into(),
                ));
            }
        }
        if finish {
            return self.bootstrap_finish();
        }
        let path = path_of(request)?;
        let accept = match request.options.accept() {
            None => None,
            Some(code) => Some(ContentFormat::from_code(code).ok_or(DmError::NotAcceptable(code))?),
        };
        let response = match request.method {
            Method::Get if accept == Some(ContentFormat::LinkFormat) => {
                self.bootstrap_discover(&path)?
            }
            Method::Get => self.bootstrap_read(&path, accept)?,
            Method::Put => {
                let code = request
                    .options
                    .content_format()
                    .ok_or_else(|| DmError::BadRequest("Content-Format is required".into()))?;
                let format = ContentFormat::from_code(code)
                    .ok_or(DmError::UnsupportedContentFormat(code))?;
                if self.is_trust_write(&path) {
                    self.trust_write(
                        &path,
                        format,
                        &request.payload,
                        super::trust::Context::Bootstrap,
                    )?
                } else {
                    self.bootstrap_write(&path, format, &request.payload)?
                }
            }
            Method::Delete => self.bootstrap_delete(&path)?,
            _ => return Err(DmError::not_allowed("this method during bootstrap", path)),
        };
        Ok(response)
    }

    fn bootstrap_finish(&mut self) -> Result<Response, DmError> {
        if self.trust.as_mut().is_some_and(|t| t.take_reset()) {
            // A recovery token was accepted in this session: start over, whatever was written.
            self.effects.push(Effect::TrustReset);
            return Ok(Response::new(Code::CHANGED));
        }
        if self.server_accounts().is_empty() {
            return Ok(Response::new(Code::NOT_ACCEPTABLE).with_diagnostic(
                "no LwM2M server account: a /0 instance with Bootstrap-Server false, a URI and \
                 a Short Server ID that a /1 instance has",
            ));
        }
        if let Some(t) = &mut self.trust
            && t.bootstrap_finished()
        {
            self.refresh_trust();
        }
        self.effects.push(Effect::BootstrapFinished);
        Ok(Response::new(Code::CHANGED))
    }

    fn bootstrap_discover(&self, path: &Path) -> Result<Response, DmError> {
        let objects: Vec<u16> = match *path {
            Path::Root => self.bs_models.object_ids().collect(),
            Path::Object(o) if self.bs_models.object(o).is_some() => vec![o],
            Path::Object(_) => return Err(DmError::not_found(path)),
            _ => return Err(DmError::not_allowed("Bootstrap-Discover", path)),
        };
        let mut links = Vec::new();
        for o in objects {
            let instances = self.tree.get(&o);
            let version = self
                .bs_models
                .object_version(o)
                .filter(|v| *v != Version::V1_0);
            // An object link when it says something: its version, or that it has no instance.
            if version.is_some() || instances.is_none_or(BTreeMap::is_empty) {
                let mut link = DiscoverLink::new(Path::Object(o));
                if let Some(v) = version {
                    link = link.with_version(v);
                }
                links.push(link);
            }
            for (iid, inst) in instances.into_iter().flatten() {
                let link = DiscoverLink::new(Path::Instance(o, *iid));
                let ssid =
                    || int(inst, if o == 0 { 10 } else { 0 }).and_then(|s| u16::try_from(s).ok());
                let link = match o {
                    0 => {
                        let uri = match inst.resources.get(&0) {
                            Some(Resource::Single(Value::String(u))) => Some(u.as_str()),
                            _ => None,
                        };
                        let ssid = if is_bootstrap(inst) { None } else { ssid() };
                        link.with_server(ssid, uri)
                    }
                    1 => link.with_server(ssid(), None),
                    _ => link,
                };
                links.push(link);
            }
        }
        let answer = DiscoverAnswer::bootstrap(self.lwm2m(), links);
        Ok(Response::new(Code::CONTENT).with_payload(
            ContentFormat::LinkFormat.code(),
            answer.to_string().into_bytes(),
        ))
    }

    fn bootstrap_read(
        &self,
        path: &Path,
        accept: Option<ContentFormat>,
    ) -> Result<Response, DmError> {
        if self.lwm2m() < Version::V1_1 {
            return Err(DmError::not_allowed("Bootstrap-Read (LwM2M 1.1+)", path));
        }
        match *path {
            Path::Object(1 | 2) | Path::Instance(1 | 2, _) => {}
            p if matches!(p.object_id(), Some(0 | 21)) => return Err(DmError::Unauthorized(p)),
            _ => return Err(DmError::not_allowed("Bootstrap-Read", path)),
        }
        let node = self.node(path).ok_or_else(|| DmError::not_found(path))?;
        let (format, body) = self.render(path, &node, accept)?;
        Ok(Response::new(Code::CONTENT).with_payload(format.code(), body))
    }

    fn bootstrap_write(
        &mut self,
        path: &Path,
        format: ContentFormat,
        payload: &[u8],
    ) -> Result<Response, DmError> {
        let object = path
            .object_id()
            .ok_or_else(|| DmError::not_allowed("Bootstrap-Write", path))?;
        let models = Arc::clone(&self.bs_models);
        if models.object(object).is_none() {
            return Err(DmError::not_found(path));
        }
        self.check_format(format)?;
        let node = codec::decode(format, path, payload, &*models)
            .map_err(|e| DmError::from_decode(format.code(), &e))?;
        // Every resource must be one the model knows (operations do not matter here).
        let unknown = |inst: &Instance| {
            inst.resources
                .keys()
                .find(|rid| models.resource(object, **rid).is_none())
                .copied()
        };
        let check = |inst: &Instance| match unknown(inst) {
            Some(rid) => Err(DmError::BadRequest(format!(
                "object {object} has no resource {rid}"
            ))),
            None => Ok(()),
        };
        let single = models.object(object).is_some_and(|m| !m.multiple);
        match (node, *path) {
            (Node::Object(instances), _) => {
                for inst in instances.values() {
                    check(inst)?;
                }
                if single && instances.keys().any(|i| *i != 0) {
                    return Err(DmError::BadRequest(format!(
                        "object {object} has a single instance, 0"
                    )));
                }
                for (iid, inst) in instances {
                    self.put_instance(object, iid, inst);
                }
            }
            (Node::Instance(inst), Path::Instance(_, iid)) => {
                check(&inst)?;
                if single && iid != 0 {
                    return Err(DmError::BadRequest(format!(
                        "object {object} has a single instance, 0"
                    )));
                }
                self.put_instance(object, iid, inst);
            }
            (node, _) => {
                let Some(rid) = path.resource_id() else {
                    return Err(DmError::BadRequest("payload does not fit the path".into()));
                };
                if models.resource(object, rid).is_none() {
                    return Err(DmError::not_found(path));
                }
                let iid = match *path {
                    Path::Resource(_, i, _) | Path::ResourceInstance(_, i, _, _) => i,
                    _ => 0,
                };
                self.tree
                    .entry(object)
                    .or_default()
                    .entry(iid)
                    .or_insert_with(|| Instance {
                        resources: BTreeMap::new(),
                    });
                self.store(path, WriteMode::Replace, node);
            }
        }
        self.generation += 1;
        Ok(Response::new(Code::CHANGED))
    }

    fn put_instance(&mut self, object: u16, iid: u16, inst: Instance) {
        self.tree.entry(object).or_default().insert(iid, inst);
        let at = Path::Instance(object, iid);
        self.attributes.retain(|p, _| !at.is_prefix_of(p));
    }

    fn bootstrap_delete(&mut self, path: &Path) -> Result<Response, DmError> {
        let targets: Vec<(u16, Option<u16>)> = match *path {
            Path::Root => self.bs_models.object_ids().map(|o| (o, None)).collect(),
            Path::Object(o) | Path::Instance(o, _) if !self.deletable(o) => {
                return Err(DmError::BadRequest(format!(
                    "the instances of object {o} cannot be deleted"
                )));
            }
            Path::Object(o) => vec![(o, None)],
            Path::Instance(o, i) => {
                if o == 0 && self.instance(0, i).is_some_and(is_bootstrap) {
                    return Err(DmError::BadRequest(
                        "the bootstrap-server account cannot be deleted".into(),
                    ));
                }
                vec![(o, Some(i))]
            }
            _ => return Err(DmError::BadRequest(format!("Bootstrap-Delete on {path}"))),
        };
        for (object, instance) in targets {
            if !self.deletable(object) {
                continue;
            }
            let doomed: Vec<u16> = self
                .tree
                .get(&object)
                .into_iter()
                .flatten()
                .filter(|(iid, inst)| {
                    instance.is_none_or(|i| i == **iid) && !(object == 0 && is_bootstrap(inst))
                })
                .map(|(iid, _)| *iid)
                .collect();
            for iid in doomed {
                self.remove_instance(object, iid);
            }
        }
        self.generation += 1;
        Ok(Response::new(Code::DELETED))
    }

    /// Multiple-instance objects only: the single-instance ones are the device's functions.
    fn deletable(&self, object: u16) -> bool {
        self.bs_models.object(object).is_some_and(|m| m.multiple)
    }

    fn remove_instance(&mut self, object: u16, iid: u16) {
        let Some(removed) = self.tree.get_mut(&object).and_then(|i| i.remove(&iid)) else {
            return;
        };
        let at = Path::Instance(object, iid);
        self.attributes.retain(|p, _| !at.is_prefix_of(p));
        // Unbootstrapping (Transport §5.2.5): a server's account goes with its Server instance.
        if object == 0
            && let Some(ssid) = int(&removed, 10)
        {
            let linked: Vec<u16> = self
                .tree
                .get(&1)
                .into_iter()
                .flatten()
                .filter(|(_, s)| int(s, 0) == Some(ssid))
                .map(|(iid, _)| *iid)
                .collect();
            for server in linked {
                self.remove_instance(1, server);
            }
        }
    }
}
