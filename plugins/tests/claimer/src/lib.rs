//! A test plugin that claims object 42799, the example plugin's: the host must refuse to load
//! it next to `example` (two plugins cannot own the same object).

use steward_plugin_sdk::{
    Description, Effect, Event, EventKinds, ObjectClaim, Plugin, PluginError,
};

struct Claimer;

impl Plugin for Claimer {
    fn describe() -> Description {
        Description {
            name: "claimer".into(),
            version: "0.1.0".into(),
            objects: vec![ObjectClaim {
                id: 42799,
                ddf: include_str!("../42799.xml").into(),
            }],
            events: EventKinds::empty(),
        }
    }

    fn handle(_event: Event) -> Result<Vec<Effect>, PluginError> {
        Ok(vec![])
    }
}

steward_plugin_sdk::export_plugin!(Claimer);
