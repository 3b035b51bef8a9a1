//! Extra objects: objects beyond the core set that a device is made with, given as DDF models,
//! so that tests can exercise a server plugin that owns its own object (42799, 42769, ...).
//!
//! An extra object is a model and the instances the device starts with. Its model joins the
//! device's [`DeviceModels`](super::DeviceModels), so every generic operation works on it as
//! on a core object: Read, Discover, Write, Write-Attributes, Observe, Create, Delete,
//! Read-/Write-Composite, Send, Bootstrap-Write, and the Register / Update object links
//! (`</42799>;ver=1.1,</42799/0>`).
//!
//! The device gives the object no behaviour of its own. An Execute on one of its executable
//! resources is answered 2.04 and recorded as [`Effect::Executed`](super::Effect::Executed)
//! (which [`crate::SimDevice`] reports as [`crate::DeviceEvent::Executed`]); what a test
//! wants to happen then (a counter incremented, ...) it does itself, e.g. with
//! [`Device::set`](super::Device::set).

use std::collections::BTreeMap;
use std::sync::Arc;

use steward_objects::ddf::{self, DdfError};
use steward_objects::{Instance, ObjectModel};

use super::models::is_core_object;

/// One extra object of a device: its model and its initial instances (none: the device
/// announces just `</id>`).
#[derive(Debug, Clone, PartialEq)]
pub struct ExtraObject {
    /// Shared, so that many devices made with one object hold one copy of its model.
    pub model: Arc<ObjectModel>,
    /// Instance ID → resources, typed by `model` when the device is made (resources it does
    /// not define are dropped).
    pub instances: BTreeMap<u16, Instance>,
}

/// Why DDF text does not make extra objects.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExtraObjectError {
    #[error(transparent)]
    Ddf(#[from] DdfError),
    /// The simulator implements this object itself (Security, Server, Device, ...).
    #[error("object {0} is one of the simulated device's own objects")]
    CoreObject(u16),
}

impl ExtraObject {
    /// An object without instances.
    pub fn new(model: ObjectModel) -> ExtraObject {
        ExtraObject {
            model: Arc::new(model),
            instances: BTreeMap::new(),
        }
    }

    /// The objects a DDF document defines, without instances.
    pub fn from_ddf(xml: &str) -> Result<Vec<ExtraObject>, ExtraObjectError> {
        ddf::parse(xml)?
            .into_iter()
            .map(|model| match model.id {
                id if is_core_object(id) => Err(ExtraObjectError::CoreObject(id)),
                _ => Ok(ExtraObject::new(model)),
            })
            .collect()
    }

    /// Adds (or replaces) instance `id`.
    pub fn with_instance(mut self, id: u16, instance: Instance) -> ExtraObject {
        self.instances.insert(id, instance);
        self
    }

    /// The object ID.
    pub fn id(&self) -> u16 {
        self.model.id
    }
}
