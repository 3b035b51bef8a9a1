//! What a device keeps across power cycles, one small file per endpoint.
//!
//! A real device keeps its bootstrap result and a few facts in flash; so does a simulated one
//! with a state directory (`--state-dir`): the Security (/0) and Server (/1) instances as a
//! bootstrap server wrote them, the registration's location and when it expires, the LwM2M
//! version it negotiated, the firmware state and versions, the paths of its key and
//! certificate files, and the instances of its extra objects (a plugin's object holds what the
//! plugin wrote; the other objects' values are the simulator's own). A restarted device re-uses
//! all of it: it sends an Update to its old location while the lifetime has not run out
//! (Register otherwise) and does not bootstrap again while it holds a usable server account.
//!
//! ## Format: JSON
//!
//! `DIR/<endpoint>.json`, versioned by a top-level `"format"` number ([`FORMAT`]). JSON rather
//! than CBOR because the file is tiny and written rarely, so compactness buys nothing, while an
//! operator or a test can read and fix it with any editor, and `serde_json` is already a
//! workspace dependency. The object instances are stored as SenML JSON (RFC 8428, the same
//! codec the device speaks; opaque keys as base64url `vd`), so loading them goes through the
//! LwM2M codec and the device's models: a value of the wrong type is refused like a bad write.
//! Extra objects are in `"objects"` (object ID → SenML JSON), left out when there are none, so
//! files without them are format 1 too. Their models are not known when a file is read: the
//! values are typed by the wire (SenML) and coerced to the device's models when the state is
//! applied, which drops what those models do not define (an extra object the restarted device
//! is not made with, a resource its DDF no longer has).
//!
//! ## Writing and loading
//!
//! [`StateStore::save`] writes a temporary file in the same directory, syncs it and renames it
//! over the old one, so a crash leaves the old or the new state, never half of one.
//!
//! A file that does not parse, or whose `"format"` is not one this build reads, is an error
//! ([`StateError::Corrupt`], [`StateError::UnsupportedFormat`]) naming the file, never a
//! panic. The device does not silently start from factory state instead: that would make it
//! bootstrap or register anew and hide the problem; the CLI stops with the message and the
//! operator deletes or fixes the file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path as FsPath, PathBuf};

use serde::{Deserialize, Serialize};
use steward_objects::{
    ContentFormat, Instance, Models, NoModels, Node, Path, Resource, Value, Version, codec,
};

use crate::device::{Device, DeviceModels};
use crate::firmware;

/// The file format version this build writes and reads.
pub const FORMAT: u32 = 1;

/// Why a state could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: corrupt device state ({reason}); delete the file to start from factory state", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("{}: device state format {found} is not supported (this build reads format {supported})", path.display())]
    UnsupportedFormat {
        path: PathBuf,
        found: u64,
        supported: u32,
    },
    #[error("cannot encode the device state: {0}")]
    Encode(String),
}

/// A registration that may be resumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedRegistration {
    /// `/rd/5a3f`.
    pub location: String,
    /// The server it is held by (`/0/x/0`): resumed only with the same server.
    pub server_uri: String,
    /// Unix seconds at which the lifetime runs out (0 lifetime: `i64::MAX`).
    pub expires: i64,
}

/// Firmware Update facts that survive a power cycle.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SavedFirmware {
    /// State (/5/0/3).
    pub state: i64,
    /// Update Result (/5/0/5).
    pub update_result: i64,
    /// PkgName (/5/0/6).
    pub package_name: String,
    /// PkgVersion (/5/0/7).
    pub package_version: String,
    /// The running firmware (/3/0/3).
    pub firmware_version: String,
}

/// Where the device's key and certificates live (files it was started with).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CredentialPaths {
    pub certificate: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
}

/// A device's persisted state; see the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceState {
    pub endpoint: String,
    /// The version last negotiated with the server.
    pub lwm2m: Version,
    /// The Short Server ID of the account in use.
    pub ssid: u16,
    pub security: BTreeMap<u16, Instance>,
    pub server: BTreeMap<u16, Instance>,
    pub registration: Option<SavedRegistration>,
    pub firmware: SavedFirmware,
    pub credentials: CredentialPaths,
    /// The instances of each extra object (`DeviceConfig::extra_objects`).
    pub objects: BTreeMap<u16, BTreeMap<u16, Instance>>,
    /// The CTL and recovery history of a device made for trust-chain recovery.
    pub trust: Option<crate::trust::SavedTrust>,
}

/// The file as stored.
#[derive(Serialize, Deserialize)]
struct File {
    format: u32,
    endpoint: String,
    lwm2m: String,
    ssid: u16,
    /// SenML JSON records of /0 and /1.
    security: serde_json::Value,
    server: serde_json::Value,
    registration: Option<SavedRegistration>,
    firmware: SavedFirmware,
    credentials: CredentialPaths,
    /// SenML JSON records of each extra object, by object ID.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    objects: BTreeMap<u16, serde_json::Value>,
    /// Left out for devices without trust-chain recovery, so their files stay format 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trust: Option<crate::trust::SavedTrust>,
}

impl DeviceState {
    /// The state of `device` now.
    pub fn capture(
        device: &Device,
        registration: Option<SavedRegistration>,
        credentials: CredentialPaths,
    ) -> DeviceState {
        let text = |o, i, r| match device.node(&Path::Resource(o, i, r)) {
            Some(Node::Resource(Resource::Single(Value::String(s)))) => s,
            _ => String::new(),
        };
        DeviceState {
            endpoint: device.config().endpoint.clone(),
            lwm2m: device.lwm2m(),
            ssid: device.short_server_id(),
            security: device.instances(0).cloned().unwrap_or_default(),
            server: device.instances(1).cloned().unwrap_or_default(),
            registration,
            firmware: SavedFirmware {
                state: firmware::state(device) as i64,
                update_result: firmware::update_result(device),
                package_name: text(5, 0, 6),
                package_version: text(5, 0, 7),
                firmware_version: text(3, 0, 3),
            },
            credentials,
            objects: device
                .models()
                .extra_object_ids()
                .map(|o| (o, device.instances(o).cloned().unwrap_or_default()))
                .collect(),
            trust: device.trust().map(crate::trust::DeviceTrust::save),
        }
    }

    /// Puts the state into `device`: version (only ever lowered: the device may have been
    /// reconfigured to an older one), accounts, firmware, the instances of the extra objects it
    /// is made with. The firmware image itself lives in RAM in the simulator, so a download or
    /// update in progress, or a downloaded image, is lost as if the power went: Idle with
    /// Update Result 4 (connection lost) or 8 (update failed).
    pub fn apply(&self, device: &mut Device) {
        if self.lwm2m < device.lwm2m() {
            device.set_lwm2m(self.lwm2m);
        }
        device.replace_instances(0, self.security.clone());
        device.replace_instances(1, self.server.clone());
        device.use_server(self.ssid);
        for (object, instances) in &self.objects {
            // Objects the device is not made with are skipped there.
            device.replace_instances(*object, instances.clone());
        }
        if let Some(saved) = &self.trust {
            // Checked when the file was read (`from_json`): a CTL that does not decode never
            // gets this far, so a locked-in device is never silently unlocked.
            let _ = device.restore_trust(saved);
        }
        let f = &self.firmware;
        let (state, result) = match f.state {
            0 => (0, f.update_result),
            3 => (0, firmware::UpdateResult::UpdateFailed as i64),
            _ => (0, firmware::UpdateResult::ConnectionLost as i64),
        };
        device.set(5, 0, 3, Value::Integer(state));
        device.set(5, 0, 5, Value::Integer(result));
        for (o, r, v) in [
            (5, 6, &f.package_name),
            (5, 7, &f.package_version),
            (3, 3, &f.firmware_version),
        ] {
            if !v.is_empty() {
                device.set(o, 0, r, Value::String(v.clone()));
            }
        }
    }

    pub fn to_json(&self) -> Result<Vec<u8>, StateError> {
        let file = File {
            format: FORMAT,
            endpoint: self.endpoint.clone(),
            lwm2m: self.lwm2m.to_string(),
            ssid: self.ssid,
            security: object_to_json(0, &self.security)?,
            server: object_to_json(1, &self.server)?,
            registration: self.registration.clone(),
            firmware: self.firmware.clone(),
            credentials: self.credentials.clone(),
            objects: self
                .objects
                .iter()
                .map(|(o, instances)| Ok((*o, object_to_json(*o, instances)?)))
                .collect::<Result<_, StateError>>()?,
            trust: self.trust.clone(),
        };
        serde_json::to_vec_pretty(&file).map_err(|e| StateError::Encode(e.to_string()))
    }

    /// Parses a state file's bytes; `path` names it in errors.
    pub fn from_json(bytes: &[u8], path: &FsPath) -> Result<DeviceState, StateError> {
        let corrupt = |reason: String| StateError::Corrupt {
            path: path.to_owned(),
            reason,
        };
        // The format number first: a newer file may not fit this build's structure at all.
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        let found = value
            .get("format")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| corrupt("no \"format\" number".into()))?;
        if found != u64::from(FORMAT) {
            return Err(StateError::UnsupportedFormat {
                path: path.to_owned(),
                found,
                supported: FORMAT,
            });
        }
        let file: File = serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
        let lwm2m: Version = file
            .lwm2m
            .parse()
            .map_err(|_| corrupt(format!("LwM2M version {:?}", file.lwm2m)))?;
        let models = DeviceModels::bootstrap(lwm2m);
        Ok(DeviceState {
            endpoint: file.endpoint,
            lwm2m,
            ssid: file.ssid,
            security: object_from_json(0, &file.security, &*models).map_err(corrupt)?,
            server: object_from_json(1, &file.server, &*models).map_err(corrupt)?,
            registration: file.registration,
            firmware: file.firmware,
            credentials: file.credentials,
            objects: file
                .objects
                .iter()
                .map(|(o, value)| Ok((*o, object_from_json(*o, value, &NoModels)?)))
                .collect::<Result<_, String>>()
                .map_err(corrupt)?,
            trust: match file.trust {
                Some(saved) => {
                    crate::trust::check_saved(&saved).map_err(corrupt)?;
                    Some(saved)
                }
                None => None,
            },
        })
    }
}

fn object_to_json(
    object: u16,
    instances: &BTreeMap<u16, Instance>,
) -> Result<serde_json::Value, StateError> {
    if instances.is_empty() {
        return Ok(serde_json::Value::Array(Vec::new()));
    }
    let bytes = codec::encode(
        ContentFormat::SenmlJson,
        &Path::Object(object),
        &Node::Object(instances.clone()),
    )
    .map_err(|e| StateError::Encode(format!("/{object}: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| StateError::Encode(format!("/{object}: {e}")))
}

fn object_from_json(
    object: u16,
    value: &serde_json::Value,
    models: &dyn Models,
) -> Result<BTreeMap<u16, Instance>, String> {
    if value.as_array().is_some_and(Vec::is_empty) {
        return Ok(BTreeMap::new());
    }
    let bytes = serde_json::to_vec(value).map_err(|e| format!("/{object}: {e}"))?;
    match codec::decode(
        ContentFormat::SenmlJson,
        &Path::Object(object),
        &bytes,
        models,
    ) {
        Ok(Node::Object(instances)) => Ok(instances),
        Ok(_) => Err(format!("/{object}: not a list of instances")),
        Err(e) => Err(format!("/{object}: {e}")),
    }
}

/// A directory of device states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    pub fn new(dir: impl Into<PathBuf>) -> StateStore {
        StateStore { dir: dir.into() }
    }

    pub fn dir(&self) -> &FsPath {
        &self.dir
    }

    /// `DIR/<endpoint>.json`; characters other than letters, digits, `.`, `_` and `-` are
    /// percent-encoded so that any endpoint name (`urn:imei:…`, a `/`) makes one file name.
    pub fn path(&self, endpoint: &str) -> PathBuf {
        let mut name = String::with_capacity(endpoint.len() + 5);
        for b in endpoint.bytes() {
            if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
                name.push(char::from(b));
            } else {
                name.push_str(&format!("%{b:02X}"));
            }
        }
        // A name of dots alone would be `.` or `..`.
        if name.bytes().all(|b| b == b'.') {
            name = name.replace('.', "%2E");
        }
        name.push_str(".json");
        self.dir.join(name)
    }

    /// The saved state of `endpoint`; `None` when it has none yet.
    pub fn load(&self, endpoint: &str) -> Result<Option<DeviceState>, StateError> {
        let path = self.path(endpoint);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        let state = DeviceState::from_json(&bytes, &path)?;
        if state.endpoint != endpoint {
            return Err(StateError::Corrupt {
                path,
                reason: format!("it belongs to endpoint {:?}", state.endpoint),
            });
        }
        Ok(Some(state))
    }

    /// Writes `state` atomically (temporary file, sync, rename).
    pub fn save(&self, state: &DeviceState) -> Result<(), StateError> {
        let bytes = state.to_json()?;
        let path = self.path(&state.endpoint);
        let io = |path: &FsPath| {
            let path = path.to_owned();
            move |source| StateError::Io { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        // The file holds keys, as the device's flash would: readable by its owner only.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(io(&tmp))?;
        file.write_all(&bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        drop(file);
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe() {
        let store = StateStore::new("/tmp/x");
        assert_eq!(store.path("dev-1"), PathBuf::from("/tmp/x/dev-1.json"));
        assert_eq!(
            store.path("urn:imei:1/2"),
            PathBuf::from("/tmp/x/urn%3Aimei%3A1%2F2.json")
        );
        assert_eq!(store.path(".."), PathBuf::from("/tmp/x/%2E%2E.json"));
    }
}
