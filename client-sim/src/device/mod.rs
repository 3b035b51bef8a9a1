//! A simulated device: its object tree (Security, Server, Device, Connectivity Monitoring,
//! Firmware Update, and any [extra objects](ExtraObject) it is made with),
//! the attributes the server wrote, and the DM operations on them as one pure function,
//! [`handle`]: a request in, a response out, no I/O and no clock.
//!
//! What the device must *do* after an operation (reboot, send an Update, ...) is not done here:
//! it is queued as an [`Effect`] that the device loop ([`crate::SimDevice`]) acts on once the
//! response is on its way, as a real device answers Reboot before it goes down.
//!
//! Formats: a device reads and writes the formats of its LwM2M version (TLV, text, opaque for
//! 1.0; plus CBOR and SenML JSON/CBOR for 1.1; plus LwM2M CBOR for 1.2) and announces them in
//! its registration `ct=`. A Read without Accept is answered in the format
//! [`steward_objects::choose_format`] picks for a server that knows those formats, so client
//! and server agree on the default.

mod bootstrap;
mod composite;
mod discover;
mod error;
mod extra;
mod initial;
pub mod models;
mod read;
mod request;
mod trust;
mod write;

use std::collections::BTreeMap;
use std::sync::Arc;

use steward_coap::message::{Request, Response};
use steward_objects::link::{NotificationAttributes, ObjectLinks};
use steward_objects::{
    ClientFormats, ContentFormat, Instance, Node, Path, Resource, Value, Version,
};

use crate::bootstrap::account::{self, BootstrapAccount, Security, ServerAccount};

pub use bootstrap::handle_bootstrap;
pub use error::DmError;
pub use extra::{ExtraObject, ExtraObjectError};
pub use initial::binding;
pub use models::DeviceModels;
pub use request::{Operation, WriteMode};

use initial::Tree;

/// What a device is, before it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceConfig {
    /// Endpoint Client Name (`ep=`).
    pub endpoint: String,
    /// The enabler version it speaks and announces (`lwm2m=`).
    pub lwm2m: Version,
    /// Registration lifetime in seconds (`/1/0/1`, `lt=`); 0 means no expiry.
    pub lifetime: u32,
    /// Queue mode (`Q`, or `UQ` binding for 1.0).
    pub queue_mode: bool,
    /// `/0/0/0`: the LwM2M server URI.
    pub server_uri: String,
    /// `/0/0/10` and `/1/0/0`.
    pub short_server_id: u16,
    /// `/3/0/2`.
    pub serial: String,
    /// `/3/0/13` at start, Unix seconds: the caller's clock, so the device stays pure.
    pub clock: i64,
    /// Simulated sensors (battery, clock, radio) that change values over time; `None` keeps
    /// every value still, which fleets and most tests want.
    pub sensors: Option<crate::sensors::SensorConfig>,
    /// The format of Send (`POST /dp`): SenML CBOR, SenML JSON or (1.2) LwM2M CBOR.
    pub send_format: ContentFormat,
    /// How long a queue-mode device stays awake and sleeps (used when `queue_mode`).
    pub queue: crate::queue::QueueTiming,
    /// Firmware Update (/5/0): delivery methods and simulated delays.
    pub firmware: crate::firmware::FirmwareConfig,
    /// A factory bootstrap-server account: when set, the factory tree holds this account in
    /// /0/0 and no LwM2M server account, so the device bootstraps before it registers.
    pub bootstrap: Option<BootstrapServer>,
    /// Objects beyond the core set, with their initial instances (see [`ExtraObject`]). One
    /// with the ID of a core object (0, 1, 2, 3, 4, 5, 21) is ignored; of two with one ID,
    /// the later wins.
    pub extra_objects: Vec<ExtraObject>,
    /// Trust-chain recovery ([`crate::trust`]): a CTL, locked-in mode, and object 42769.
    /// `None`: the device trusts what its accounts say (/0/x/4, the factory `--ca`).
    pub trust: Option<crate::trust::TrustConfig>,
}

/// The bootstrap server a device is made with (`--bootstrap URI`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapServer {
    /// `coap://host:port` or `coaps://host:port`.
    pub uri: String,
    pub security: Security,
}

impl DeviceConfig {
    /// A device with the usual defaults: lifetime 300 s, no queue mode, SSID 1, a serial
    /// derived from the endpoint name.
    pub fn new(endpoint: impl Into<String>, lwm2m: Version) -> DeviceConfig {
        let endpoint = endpoint.into();
        DeviceConfig {
            serial: format!("SIM-{endpoint}"),
            endpoint,
            lwm2m,
            lifetime: 300,
            queue_mode: false,
            server_uri: "coap://127.0.0.1:5683".to_owned(),
            short_server_id: 1,
            clock: 0,
            sensors: None,
            send_format: ContentFormat::SenmlCbor,
            queue: crate::queue::QueueTiming::default(),
            firmware: crate::firmware::FirmwareConfig::default(),
            bootstrap: None,
            extra_objects: Vec::new(),
            trust: None,
        }
    }
}

/// Something the device loop must do because of an operation the device answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// `/3/0/4` executed.
    Reboot,
    /// `/3/0/5` executed; the tree is already back to its initial state.
    FactoryReset,
    /// `/1/x/8` executed: send an Update now.
    RegistrationUpdate,
    /// `/1/x/4` executed: deregister and stay silent for the Disable Timeout.
    Disable,
    /// `/1/x/9` executed: the server asks for a client-initiated bootstrap.
    BootstrapRequest,
    /// Bootstrap-Finish accepted: the configuration holds a usable server account.
    BootstrapFinished,
    /// `/1/x/1` or `/1/x/7` written: the next Update carries the new `lt=` / `b=`.
    RegistrationParametersChanged,
    /// An instance was created or deleted: the next Update carries the object links.
    ObjectsChanged,
    /// A recovery token was accepted: the CTL is erased; forget the bootstrapped accounts
    /// and bootstrap again from the initial state.
    TrustReset,
    /// An executable resource of an [extra object](ExtraObject) was executed (answered 2.04,
    /// nothing else done): for the test that plays the object's behaviour. `arguments` are
    /// the request's payload as sent (checked to be valid Execute arguments, Core §5.4.5).
    Executed { path: Path, arguments: Vec<u8> },
    /// The Firmware Update object needs the device loop (timers, a download).
    Firmware(crate::firmware::Task),
}

/// A simulated device's state. Operate on it with [`handle`].
#[derive(Debug, Clone)]
pub struct Device {
    config: DeviceConfig,
    models: Arc<DeviceModels>,
    /// `models` plus the bootstrap-only objects (Access Control, OSCORE).
    bs_models: Arc<DeviceModels>,
    tree: Tree,
    /// The Short Server ID of the LwM2M server account in use: `config.short_server_id` until
    /// a bootstrap server configures another one.
    ssid: u16,
    /// Attributes written with Write-Attributes, per path (object, instance, resource, ...).
    attributes: BTreeMap<Path, NotificationAttributes>,
    effects: Vec<Effect>,
    /// Bumped whenever a value may have changed (a write, a sensor): observations re-evaluate
    /// when it moves instead of re-rendering every observed node on every poll.
    generation: u64,
    /// The firmware image being downloaded, verified or installed.
    firmware: crate::firmware::Staging,
    /// Trust-chain recovery, when the device is made for it.
    trust: Option<crate::trust::DeviceTrust>,
    /// Unix seconds, set by the device loop (token expiry checks).
    unix_now: u64,
}

/// Answers one DM request from the server. Never panics; anything the device cannot do is an
/// error response with the code the Transport spec gives.
pub fn handle(device: &mut Device, request: &Request) -> Response {
    let result = Operation::parse(request, &*device.models).and_then(|op| {
        let mutating = matches!(
            op,
            Operation::Write { .. }
                | Operation::WriteComposite { .. }
                | Operation::Create { .. }
                | Operation::Delete { .. }
                | Operation::Execute { .. }
        );
        let response = match op {
            Operation::Write {
                path,
                format,
                payload,
                ..
            } if device.is_trust_write(&path) => {
                device.trust_write(&path, format, &payload, trust::Context::Management)?
            }
            op => device.apply(op)?,
        };
        if mutating {
            device.generation += 1;
        }
        Ok(response)
    });
    match result {
        Ok(response) => response,
        Err(e) => e.to_response(),
    }
}

impl Device {
    /// A device fresh from the factory. A trust configuration whose factory CTL is unusable
    /// leaves the device without trust (and object 42769); [`Device::try_new`] reports it.
    pub fn new(config: DeviceConfig) -> Device {
        let trust = config
            .trust
            .as_ref()
            .and_then(|t| crate::trust::DeviceTrust::new(t.clone()).ok());
        Device::with_trust(config, trust)
    }

    /// A device fresh from the factory; `Err` when its factory CTL is unusable.
    pub fn try_new(config: DeviceConfig) -> Result<Device, steward_pki::ctl::CtlError> {
        let trust = config
            .trust
            .as_ref()
            .map(|t| crate::trust::DeviceTrust::new(t.clone()))
            .transpose()?;
        Ok(Device::with_trust(config, trust))
    }

    fn with_trust(mut config: DeviceConfig, trust: Option<crate::trust::DeviceTrust>) -> Device {
        if trust.is_some()
            && !config
                .extra_objects
                .iter()
                .any(|o| o.id() == crate::trust::OBJECT)
        {
            config.extra_objects.push(trust::extra_object());
        }
        let (models, bs_models) = models_for(&config);
        let tree = initial::tree(&config, &models);
        let mut device = Device {
            ssid: config.short_server_id,
            config,
            models,
            bs_models,
            tree,
            attributes: BTreeMap::new(),
            effects: Vec::new(),
            generation: 0,
            firmware: crate::firmware::Staging::default(),
            trust,
            unix_now: 0,
        };
        device.refresh_trust();
        device
    }

    pub fn config(&self) -> &DeviceConfig {
        &self.config
    }

    pub fn lwm2m(&self) -> Version {
        self.config.lwm2m
    }

    pub fn models(&self) -> &DeviceModels {
        &self.models
    }

    /// Changes the enabler version the device speaks (a registration fallback after 4.12, or
    /// the version a restarted device had negotiated): models, formats and the binding
    /// style follow, and the tree keeps only what the new version's models define, typed as
    /// they say.
    pub fn set_lwm2m(&mut self, lwm2m: Version) {
        if lwm2m == self.config.lwm2m {
            return;
        }
        self.config.lwm2m = lwm2m;
        (self.models, self.bs_models) = models_for(&self.config);
        let models = Arc::clone(&self.bs_models);
        for (object, instances) in &mut self.tree {
            for inst in instances.values_mut() {
                inst.resources = std::mem::take(&mut inst.resources)
                    .into_iter()
                    .filter_map(|(rid, res)| {
                        let data_type = models.resource_model(*object, rid)?.data_type;
                        Some((rid, initial::typed(res, data_type)))
                    })
                    .collect();
            }
        }
        // Queue mode is part of the binding in 1.0 (`UQ`), a separate `Q` parameter later.
        let queue = self.config.queue_mode;
        let restyle = |b: &mut String| {
            if lwm2m < Version::V1_1 {
                if queue && !b.contains('Q') {
                    b.push('Q');
                }
            } else {
                b.retain(|c| c != 'Q');
            }
        };
        for (object, rid) in [(1, 7), (3, 16)] {
            for inst in self
                .tree
                .get_mut(&object)
                .into_iter()
                .flat_map(|i| i.values_mut())
            {
                if let Some(Resource::Single(Value::String(b))) = inst.resources.get_mut(&rid) {
                    restyle(b);
                }
            }
        }
        self.generation += 1;
    }

    /// The format this device asks a bootstrap server for (`pct=`, 1.1+): SenML CBOR, which
    /// every 1.1 and 1.2 bootstrap server must read.
    pub fn preferred_format(&self) -> Option<ContentFormat> {
        (self.lwm2m() >= Version::V1_1).then_some(ContentFormat::SenmlCbor)
    }

    /// The bootstrap-server account in /0, if any.
    pub fn bootstrap_account(&self) -> Option<BootstrapAccount> {
        account::bootstrap_account(self.tree.get(&0).into_iter().flatten())
    }

    /// Every usable LwM2M server account (/0 and /1 instances with the same SSID).
    pub fn server_accounts(&self) -> Vec<ServerAccount> {
        let servers = self.tree.get(&1).into_iter().flatten();
        account::server_accounts(self.tree.get(&0).into_iter().flatten(), servers)
    }

    /// The account in use: the one with the current Short Server ID, else the first usable.
    pub fn server_account(&self) -> Option<ServerAccount> {
        let accounts = self.server_accounts();
        let at = accounts
            .iter()
            .position(|a| a.ssid == self.ssid)
            .unwrap_or(0);
        accounts.into_iter().nth(at)
    }

    /// The Short Server ID whose Server instance drives lifetime, binding and periods.
    pub fn short_server_id(&self) -> u16 {
        self.ssid
    }

    /// Registers with the account of `ssid` from now on.
    pub fn use_server(&mut self, ssid: u16) {
        self.ssid = ssid;
    }

    /// The instances of `object` as stored.
    pub fn instances(&self, object: u16) -> Option<&BTreeMap<u16, Instance>> {
        self.tree.get(&object)
    }

    /// Replaces every instance of `object` (a restored state). Resources the models do not
    /// define are dropped, values are typed as the models say.
    pub fn replace_instances(&mut self, object: u16, instances: BTreeMap<u16, Instance>) {
        let models = Arc::clone(&self.bs_models);
        if steward_objects::Models::object(&*models, object).is_none() {
            return;
        }
        let typed = instances
            .into_iter()
            .map(|(iid, inst)| {
                let resources = inst
                    .resources
                    .into_iter()
                    .filter_map(|(rid, res)| {
                        let data_type = models.resource_model(object, rid)?.data_type;
                        Some((rid, initial::typed(res, data_type)))
                    })
                    .collect();
                (iid, Instance { resources })
            })
            .collect();
        self.tree.insert(object, typed);
        self.attributes.retain(|p, _| p.object_id() != Some(object));
        self.generation += 1;
    }

    /// Every content format the device reads and writes, as announced in `ct=`.
    pub fn formats(&self) -> Vec<ContentFormat> {
        use ContentFormat as F;
        let mut formats = vec![F::Text, F::Opaque, F::Tlv];
        if self.lwm2m() >= Version::V1_1 {
            formats.extend([F::Cbor, F::SenmlJson, F::SenmlCbor]);
        }
        if self.lwm2m() >= Version::V1_2 {
            formats.push(F::Lwm2mCbor);
        }
        formats
    }

    /// The device's formats as the server sees them after registration.
    pub fn client_formats(&self) -> ClientFormats {
        let announced = if self.lwm2m() >= Version::V1_1 {
            self.formats()
        } else {
            Vec::new()
        };
        ClientFormats::new(self.lwm2m(), announced)
    }

    /// The Register / Update payload: root link with `ct=` (1.1+), objects with `ver=` when
    /// not 1.0, and their instances. The Security object is never announced (Core §6.2.1).
    pub fn object_links(&self) -> ObjectLinks {
        let mut links = ObjectLinks::new();
        if self.lwm2m() >= Version::V1_1 {
            links = links.with_root("/", &self.formats());
        }
        for id in self.models.object_ids().filter(|id| *id != 0) {
            let version = self
                .models
                .object_version(id)
                .filter(|v| *v != Version::V1_0);
            links = links.with_object(id, version);
            for iid in self.tree.get(&id).into_iter().flat_map(|i| i.keys()) {
                links = links.with_instance(id, *iid);
            }
        }
        links
    }

    /// The node at `path` as stored (no access checks): for tests and the device loop.
    pub fn node(&self, path: &Path) -> Option<Node> {
        match *path {
            Path::Root => None,
            Path::Object(o) => self.tree.get(&o).map(|i| Node::Object(i.clone())),
            Path::Instance(o, i) => self.instance(o, i).map(|i| Node::Instance(i.clone())),
            Path::Resource(o, i, r) => self.resource(o, i, r).map(|r| Node::Resource(r.clone())),
            Path::ResourceInstance(o, i, r, ri) => match self.resource(o, i, r)? {
                Resource::Multiple(values) => values.get(&ri).cloned().map(Node::ResourceInstance),
                Resource::Single(_) => None,
            },
        }
    }

    /// Sets a single resource from the device side (a sensor changed, the battery drained).
    /// False when the instance does not exist or the model has no such resource.
    pub fn set(&mut self, object: u16, instance: u16, resource: u16, value: Value) -> bool {
        if self.models.resource_model(object, resource).is_none() {
            return false;
        }
        match self.instance_mut(object, instance) {
            Some(inst) => {
                inst.resources.insert(resource, Resource::Single(value));
                self.generation += 1;
                true
            }
            None => false,
        }
    }

    /// Sets any stored value the model knows, including one resource instance of a multiple
    /// resource (`/3/0/7/0`). False when the path names nothing settable.
    pub fn set_path(&mut self, path: &Path, value: Value) -> bool {
        match *path {
            Path::Resource(o, i, r) => self.set(o, i, r, value),
            Path::ResourceInstance(o, i, r, ri) => {
                if self.models.resource_model(o, r).is_none_or(|m| !m.multiple) {
                    return false;
                }
                let Some(inst) = self.instance_mut(o, i) else {
                    return false;
                };
                match inst
                    .resources
                    .entry(r)
                    .or_insert_with(|| Resource::Multiple(BTreeMap::new()))
                {
                    Resource::Multiple(values) => {
                        values.insert(ri, value);
                        self.generation += 1;
                        true
                    }
                    Resource::Single(_) => false,
                }
            }
            _ => false,
        }
    }

    /// Counts changes of the tree; see the field.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The attributes in force at `path` by the Core precedence (resource instance > resource
    /// > object instance > object), without the Server object defaults.
    pub fn effective_attributes(&self, path: &Path) -> NotificationAttributes {
        let mut attrs = self.attributes.get(path).copied().unwrap_or_default();
        let mut at = path.parent();
        while let Some(p) = at {
            if let Some(parent) = self.attributes.get(&p) {
                attrs = attrs.inherit(parent);
            }
            at = p.parent();
        }
        attrs
    }

    /// Default Minimum / Maximum Period (`/1/x/2`, `/1/x/3`) in seconds, when set.
    pub fn default_period(&self, resource: u16) -> Option<u32> {
        match self.server_value(resource)? {
            Value::Integer(v) => u32::try_from(*v).ok(),
            Value::UnsignedInteger(v) => u32::try_from(*v).ok(),
            _ => None,
        }
    }

    /// Mute Send (`/1/x/23`): true, or absent (a 1.0 Server object), means Send is off.
    pub fn mute_send(&self) -> bool {
        !matches!(self.server_value(23), Some(Value::Boolean(false)))
    }

    /// The attributes written at exactly `path`.
    pub fn attributes(&self, path: &Path) -> Option<&NotificationAttributes> {
        self.attributes.get(path)
    }

    /// The registration lifetime in seconds, as `/1/0/1` now says.
    pub fn lifetime(&self) -> u32 {
        let lifetime = match self.server_value(1) {
            Some(Value::Integer(lt)) => u32::try_from(*lt).ok(),
            Some(Value::UnsignedInteger(lt)) => u32::try_from(*lt).ok(),
            _ => None,
        };
        lifetime.unwrap_or(self.config.lifetime)
    }

    /// The binding, as `/1/0/7` now says.
    pub fn binding(&self) -> String {
        match self.server_value(7) {
            Some(Value::String(b)) => b.clone(),
            _ => binding(self.lwm2m(), self.config.queue_mode).to_owned(),
        }
    }

    /// Effects queued by the operations answered so far, oldest first.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// Back to the factory tree: objects as configured, no attributes.
    pub fn factory_reset(&mut self) {
        self.tree = initial::tree(&self.config, &self.models);
        self.ssid = self.config.short_server_id;
        self.attributes.clear();
        self.firmware = crate::firmware::Staging::default();
        // The trust store is not part of the factory-reset menu: erasing the CTL is what the
        // recovery token is for (seed 000: a reset button must not unlock a device).
        self.refresh_trust();
        self.generation += 1;
    }

    pub(crate) fn firmware_staging(&mut self) -> &mut crate::firmware::Staging {
        &mut self.firmware
    }

    pub(crate) fn push_effect(&mut self, effect: Effect) {
        self.effects.push(effect);
    }

    fn apply(&mut self, op: Operation) -> Result<Response, DmError> {
        match op {
            Operation::Read { path, accept } => self.read(&path, accept),
            Operation::Discover { path, depth } => self.discover(&path, depth),
            Operation::Write {
                path,
                mode,
                format,
                payload,
            } => self.write(&path, mode, format, &payload),
            Operation::WriteAttributes { path, attributes } => {
                self.write_attributes(&path, &attributes)
            }
            Operation::Execute { path, arguments } => self.execute(&path, &arguments),
            Operation::Create {
                object,
                format,
                payload,
            } => self.create(object, format, &payload),
            Operation::Delete { path } => self.delete(&path),
            Operation::ReadComposite {
                format,
                accept,
                payload,
            } => self.read_composite(format, accept, &payload),
            Operation::WriteComposite { format, payload } => self.write_composite(format, &payload),
        }
    }

    /// The Server object instance this device registers with (the one whose SSID matches).
    fn server_value(&self, resource: u16) -> Option<&Value> {
        let ssid = i64::from(self.ssid);
        self.tree.get(&1)?.values().find_map(|inst| {
            match inst.resources.get(&0) {
                Some(Resource::Single(Value::Integer(s))) if *s == ssid => {}
                Some(Resource::Single(Value::UnsignedInteger(s)))
                    if i64::try_from(*s) == Ok(ssid) => {}
                _ => return None,
            }
            match inst.resources.get(&resource) {
                Some(Resource::Single(v)) => Some(v),
                _ => None,
            }
        })
    }

    fn instance(&self, object: u16, instance: u16) -> Option<&Instance> {
        self.tree.get(&object)?.get(&instance)
    }

    fn instance_mut(&mut self, object: u16, instance: u16) -> Option<&mut Instance> {
        self.tree.get_mut(&object)?.get_mut(&instance)
    }

    fn resource(&self, object: u16, instance: u16, resource: u16) -> Option<&Resource> {
        self.instance(object, instance)?.resources.get(&resource)
    }

    /// The Security object (and OSCORE's) belongs to the bootstrap server: a DM server gets
    /// 4.01 for any operation on it (Transport §6.4.4 note, Core §6.3).
    fn check_access(path: &Path) -> Result<(), DmError> {
        if matches!(path.object_id(), Some(0 | 21)) {
            Err(DmError::Unauthorized(*path))
        } else {
            Ok(())
        }
    }

    /// The request's format must be one this device reads.
    fn check_format(&self, format: ContentFormat) -> Result<(), DmError> {
        if self.formats().contains(&format) {
            Ok(())
        } else {
            Err(DmError::UnsupportedContentFormat(format.code()))
        }
    }
}

/// The device's models and its bootstrap models: the shared sets of its version, plus its
/// extra objects when it has any.
fn models_for(config: &DeviceConfig) -> (Arc<DeviceModels>, Arc<DeviceModels>) {
    let extra = &config.extra_objects;
    (
        DeviceModels::with_extra(&DeviceModels::shared(config.lwm2m), extra),
        DeviceModels::with_extra(&DeviceModels::bootstrap(config.lwm2m), extra),
    )
}

impl DeviceModels {
    fn resource_model(
        &self,
        object: u16,
        resource: u16,
    ) -> Option<&steward_objects::ResourceModel> {
        steward_objects::Models::resource(self, object, resource)
    }
}
