//! The object models a simulated device implements, per LwM2M version.
//!
//! A device speaks one enabler version and implements one version of each object; codecs must
//! type values with exactly those models (a 1.0 Device object has no resource the 1.2 one
//! adds). The models are built once per LwM2M version and shared: a fleet of 100k devices must
//! not hold 100k copies of the DDF.
//!
//! A device made with extra objects ([`super::ExtraObject`], the objects of a server plugin)
//! gets its own `DeviceModels`: the shared set plus the extras. Every model sits behind an
//! `Arc`, so that set is a small map of pointers, not a copy of the core DDF.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use steward_objects::{ModelRegistry, Models, ObjectModel, Version};

use super::ExtraObject;

/// The objects every simulated device has: Security, Server, Device, Connectivity Monitoring,
/// Firmware Update.
pub const OBJECTS: [u16; 5] = [0, 1, 3, 4, 5];

/// What a bootstrap server may also write: Access Control (2) and OSCORE (21). The device stores
/// them (and serves them to Bootstrap-Read/-Discover) but does not implement them towards an
/// LwM2M server: they are not announced and a DM server cannot reach them.
pub const BOOTSTRAP_ONLY_OBJECTS: [u16; 2] = [2, 21];

/// The models of one device: exactly one version per implemented object.
#[derive(Debug, Clone)]
pub struct DeviceModels {
    lwm2m: Version,
    objects: BTreeMap<u16, Arc<ObjectModel>>,
}

/// True for the objects a device has of its own ([`OBJECTS`] and [`BOOTSTRAP_ONLY_OBJECTS`]):
/// an extra object cannot take one of their IDs.
pub fn is_core_object(id: u16) -> bool {
    OBJECTS.contains(&id) || BOOTSTRAP_ONLY_OBJECTS.contains(&id)
}

impl DeviceModels {
    /// The shared models for `lwm2m` (1.0, 1.1 or 1.2; anything newer gets the 1.2 set).
    pub fn shared(lwm2m: Version) -> Arc<DeviceModels> {
        static SETS: OnceLock<[Arc<DeviceModels>; 3]> = OnceLock::new();
        let sets = SETS.get_or_init(|| {
            let registry = ModelRegistry::core();
            [Version::V1_0, Version::V1_1, Version::V1_2]
                .map(|v| Arc::new(DeviceModels::build(&registry, v, &OBJECTS)))
        });
        DeviceModels::pick(sets, lwm2m)
    }

    /// The models the Bootstrap interface sees: [`DeviceModels::shared`] plus
    /// [`BOOTSTRAP_ONLY_OBJECTS`].
    pub fn bootstrap(lwm2m: Version) -> Arc<DeviceModels> {
        static SETS: OnceLock<[Arc<DeviceModels>; 3]> = OnceLock::new();
        let sets = SETS.get_or_init(|| {
            let registry = ModelRegistry::core();
            let ids: Vec<u16> = OBJECTS
                .iter()
                .chain(&BOOTSTRAP_ONLY_OBJECTS)
                .copied()
                .collect();
            [Version::V1_0, Version::V1_1, Version::V1_2]
                .map(|v| Arc::new(DeviceModels::build(&registry, v, &ids)))
        });
        DeviceModels::pick(sets, lwm2m)
    }

    /// `base` plus the models of `extra` (skipping any with a core object's ID; a later extra
    /// replaces an earlier one with the same ID). Without extras, `base` itself: devices
    /// without extra objects keep sharing one set.
    pub fn with_extra(base: &Arc<DeviceModels>, extra: &[ExtraObject]) -> Arc<DeviceModels> {
        if extra.iter().all(|e| is_core_object(e.model.id)) {
            return Arc::clone(base);
        }
        let mut models = DeviceModels::clone(base);
        for e in extra.iter().filter(|e| !is_core_object(e.model.id)) {
            models.objects.insert(e.model.id, Arc::clone(&e.model));
        }
        Arc::new(models)
    }

    fn pick(sets: &[Arc<DeviceModels>; 3], lwm2m: Version) -> Arc<DeviceModels> {
        let [v10, v11, v12] = sets;
        if lwm2m < Version::V1_1 {
            Arc::clone(v10)
        } else if lwm2m < Version::V1_2 {
            Arc::clone(v11)
        } else {
            Arc::clone(v12)
        }
    }

    /// For each object, the highest bundled version that an `lwm2m` client can implement: the
    /// object version numbers follow the enabler (Security 1.1 came with LwM2M 1.1, ...).
    fn build(registry: &ModelRegistry, lwm2m: Version, ids: &[u16]) -> DeviceModels {
        let objects = ids
            .iter()
            .filter_map(|&id| {
                let version = registry
                    .versions(id)
                    .into_iter()
                    .filter(|v| *v <= lwm2m)
                    .max()?;
                registry.get(id, version).map(|m| (id, Arc::new(m.clone())))
            })
            .collect();
        DeviceModels { lwm2m, objects }
    }

    pub fn lwm2m(&self) -> Version {
        self.lwm2m
    }

    /// The version of an object this device implements.
    pub fn object_version(&self, id: u16) -> Option<Version> {
        self.objects.get(&id).map(|m| m.version)
    }

    pub fn object_ids(&self) -> impl Iterator<Item = u16> + '_ {
        self.objects.keys().copied()
    }

    /// The IDs of the extra objects (those not [core](is_core_object)).
    pub fn extra_object_ids(&self) -> impl Iterator<Item = u16> + '_ {
        self.object_ids().filter(|id| !is_core_object(*id))
    }
}

impl Models for DeviceModels {
    fn object(&self, id: u16) -> Option<&ObjectModel> {
        self.objects.get(&id).map(|m| &**m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_the_enabler() {
        let v10 = DeviceModels::shared(Version::V1_0);
        let v12 = DeviceModels::shared(Version::V1_2);
        assert_eq!(v10.object_version(3), Some(Version::V1_0));
        assert_eq!(v12.object_version(3), Some(Version::V1_2));
        assert_eq!(v12.object_version(1), Some(Version::V1_2));
        for id in OBJECTS {
            assert!(v10.object(id).is_some(), "object {id} in 1.0");
            assert!(v12.object(id).is_some(), "object {id} in 1.2");
        }
    }
}
