//! A test plugin with an invalid description: a name with capitals, a space and a '!', a
//! version that is not semver and a DDF that is not even XML. The host must refuse to load it.

use steward_plugin_sdk::{
    Description, Effect, Event, EventKinds, ObjectClaim, Plugin, PluginError,
};

struct BadDescribe;

impl Plugin for BadDescribe {
    fn describe() -> Description {
        Description {
            name: "Bad Name!".into(),
            version: "not-semver".into(),
            objects: vec![ObjectClaim {
                id: 42797,
                ddf: "<LWM2M><Object>broken".into(),
            }],
            events: EventKinds::COMMAND,
        }
    }

    fn handle(_event: Event) -> Result<Vec<Effect>, PluginError> {
        Ok(vec![])
    }
}

steward_plugin_sdk::export_plugin!(BadDescribe);
