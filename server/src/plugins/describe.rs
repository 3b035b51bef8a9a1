//! What a plugin says about itself (`describe()`), parsed into a [`PluginInfo`] that cannot
//! hold an invalid name, version or object model. A plugin whose description does not parse is
//! refused at load with the reason.

use std::fmt;

use steward_objects::{ModelRegistry, ObjectModel};

use super::bindings::steward::plugin::types::{Description, EventKinds};

/// At most this many objects per plugin, and this much DDF per object: generous for real
/// objects, small enough that a hostile description cannot make the server parse megabytes.
const MAX_OBJECTS: usize = 16;
const MAX_DDF_BYTES: usize = 256 * 1024;

/// A plugin name: 1 to 64 of `[a-z0-9-]`, starting with a letter. It names the key-value
/// namespace and key folder, so it never holds a separator, a dot or a NUL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PluginName(String);

impl PluginName {
    pub fn parse(name: &str) -> Result<PluginName, DescribeError> {
        let ok = (1..=64).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(PluginName(name.to_owned()))
        } else {
            Err(DescribeError::Name(name.chars().take(80).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PluginName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An object a plugin owns, with its parsed model.
#[derive(Debug, Clone)]
pub struct OwnedObject {
    pub id: u16,
    pub model: ObjectModel,
    /// The DDF as the plugin gave it (served to operators and merged into the registry).
    pub ddf: String,
}

/// A parsed `describe()`.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    pub name: PluginName,
    pub version: semver::Version,
    pub objects: Vec<OwnedObject>,
    pub events: EventKinds,
}

impl PluginInfo {
    pub fn owns(&self, object: u16) -> bool {
        self.objects.iter().any(|o| o.id == object)
    }

    pub fn object_ids(&self) -> Vec<u16> {
        self.objects.iter().map(|o| o.id).collect()
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DescribeError {
    #[error("plugin name {0:?} is not 1-64 of [a-z0-9-] starting with a letter")]
    Name(String),
    #[error("plugin version {0:?} is not semver")]
    Version(String),
    #[error("a plugin must own at least one object")]
    NoObjects,
    #[error("a plugin may own at most {MAX_OBJECTS} objects, not {0}")]
    TooManyObjects(usize),
    #[error("object {0} is claimed twice")]
    DuplicateObject(u16),
    #[error("object {0} is a core object of the server and cannot be owned by a plugin")]
    CoreObject(u16),
    #[error("object {id}: DDF of {len} bytes exceeds {MAX_DDF_BYTES}")]
    DdfTooLarge { id: u16, len: usize },
    #[error("object {id}: DDF does not parse: {reason}")]
    Ddf { id: u16, reason: String },
    #[error("object {id}: DDF must describe exactly object {id}, it describes {found:?}")]
    DdfMismatch { id: u16, found: Vec<u16> },
}

/// Parses a description. `core` is the server's built-in registry: its objects stay the
/// server's.
pub fn parse(description: Description, core: &ModelRegistry) -> Result<PluginInfo, DescribeError> {
    let name = PluginName::parse(&description.name)?;
    let version = semver::Version::parse(&description.version)
        .map_err(|_| DescribeError::Version(description.version.chars().take(80).collect()))?;
    if description.objects.is_empty() {
        return Err(DescribeError::NoObjects);
    }
    if description.objects.len() > MAX_OBJECTS {
        return Err(DescribeError::TooManyObjects(description.objects.len()));
    }
    let mut objects: Vec<OwnedObject> = Vec::with_capacity(description.objects.len());
    for claim in description.objects {
        let id = claim.id;
        if objects.iter().any(|o| o.id == id) {
            return Err(DescribeError::DuplicateObject(id));
        }
        if core.latest(id).is_some() {
            return Err(DescribeError::CoreObject(id));
        }
        if claim.ddf.len() > MAX_DDF_BYTES {
            return Err(DescribeError::DdfTooLarge {
                id,
                len: claim.ddf.len(),
            });
        }
        let models = steward_objects::ddf::parse(&claim.ddf).map_err(|e| DescribeError::Ddf {
            id,
            reason: e.to_string(),
        })?;
        let found: Vec<u16> = models.iter().map(|m| m.id).collect();
        let model = match <[ObjectModel; 1]>::try_from(models) {
            Ok([model]) if model.id == id => model,
            _ => return Err(DescribeError::DdfMismatch { id, found }),
        };
        objects.push(OwnedObject {
            id,
            model,
            ddf: claim.ddf,
        });
    }
    Ok(PluginInfo {
        name,
        version,
        objects,
        events: description.events,
    })
}

/// The names of the event kinds, for the API and logs.
pub fn event_names(kinds: EventKinds) -> Vec<&'static str> {
    [
        (EventKinds::REGISTERED, "registered"),
        (EventKinds::UPDATED, "updated"),
        (EventKinds::DEREGISTERED, "deregistered"),
        (EventKinds::BOOTSTRAP_REQUEST, "bootstrap-request"),
        (EventKinds::NOTIFICATION, "notification"),
        (EventKinds::SEND, "send"),
        (EventKinds::COMMAND, "command"),
        (EventKinds::TIMER, "timer"),
    ]
    .into_iter()
    .filter(|(k, _)| kinds.contains(*k))
    .map(|(_, n)| n)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::bindings::steward::plugin::types::ObjectClaim;

    const DDF: &str = r#"<LWM2M><Object ObjectType="MODefinition"><Name>Example</Name>
        <ObjectID>42799</ObjectID><MultipleInstances>Multiple</MultipleInstances>
        <Mandatory>Optional</Mandatory><Resources>
        <Item ID="0"><Name>Counter</Name><Operations>R</Operations>
        <MultipleInstances>Single</MultipleInstances><Mandatory>Mandatory</Mandatory>
        <Type>Integer</Type></Item></Resources></Object></LWM2M>"#;

    fn description(name: &str, version: &str, objects: Vec<(u16, &str)>) -> Description {
        Description {
            name: name.into(),
            version: version.into(),
            objects: objects
                .into_iter()
                .map(|(id, ddf)| ObjectClaim {
                    id,
                    ddf: ddf.into(),
                })
                .collect(),
            events: EventKinds::COMMAND | EventKinds::TIMER,
        }
    }

    #[test]
    fn a_good_description_parses() {
        let info = parse(
            description("example", "0.1.0", vec![(42799, DDF)]),
            &ModelRegistry::core(),
        )
        .expect("parses");
        assert_eq!(info.name.as_str(), "example");
        assert_eq!(info.objects[0].model.name, "Example");
        assert!(info.owns(42799));
        assert_eq!(event_names(info.events), ["command", "timer"]);
    }

    #[test]
    fn bad_descriptions_are_refused_with_the_reason() {
        let core = ModelRegistry::core();
        let cases = [
            (
                description("Bad Name!", "0.1.0", vec![(42799, DDF)]),
                "plugin name",
            ),
            (
                description("../x", "0.1.0", vec![(42799, DDF)]),
                "plugin name",
            ),
            (description("", "0.1.0", vec![(42799, DDF)]), "plugin name"),
            (
                description("ok", "not-semver", vec![(42799, DDF)]),
                "semver",
            ),
            (description("ok", "1.0.0", vec![]), "at least one"),
            (description("ok", "1.0.0", vec![(3, DDF)]), "core object"),
            (
                description("ok", "1.0.0", vec![(42799, DDF), (42799, DDF)]),
                "twice",
            ),
            (
                description("ok", "1.0.0", vec![(42797, "<LWM2M><Object>broken")]),
                "does not parse",
            ),
            (
                description("ok", "1.0.0", vec![(42798, DDF)]),
                "exactly object",
            ),
        ];
        for (d, want) in cases {
            let err = parse(d, &core).expect_err("refused").to_string();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        }
    }
}
