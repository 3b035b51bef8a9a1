//! Object models: what an object's resources are called, their types and multiplicity.
//!
//! Models come from OMA DDF XML ([`crate::ddf`]). The registry keeps several versions of one
//! object (a 1.0 client's /3 is not a 1.2 client's /3) and hands each client the versions it
//! announced in its registration (`</3>;ver=1.2`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path as FsPath;
use std::str::FromStr;

use crate::ddf::{self, DdfError};
use crate::value::DataType;

/// A `major.minor` version: object versions (`ver=`) and LwM2M enabler versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u8,
    pub minor: u8,
}

impl Version {
    pub const V1_0: Version = Version::new(1, 0);
    pub const V1_1: Version = Version::new(1, 1);
    pub const V1_2: Version = Version::new(1, 2);

    pub const fn new(major: u8, minor: u8) -> Version {
        Version { major, minor }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("version must be MAJOR.MINOR with small numbers, got {0:?}")]
pub struct VersionError(pub String);

impl FromStr for Version {
    type Err = VersionError;
    /// Accepts `1.0`, `1.2` and, for enabler versions such as `1.2.1`, ignores a patch number.
    fn from_str(s: &str) -> Result<Version, VersionError> {
        let err = || VersionError(s.chars().take(16).collect());
        let mut parts = s.split('.');
        let num = |p: Option<&str>| -> Result<u8, VersionError> {
            let p = p.ok_or_else(err)?;
            if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            p.parse().map_err(|_| err())
        };
        let major = num(parts.next())?;
        let minor = num(parts.next())?;
        if let Some(patch) = parts.next() {
            num(Some(patch))?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(Version { major, minor })
    }
}

/// Which operations a resource supports (DDF `<Operations>`: R, W, RW, E or empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Operations {
    pub read: bool,
    pub write: bool,
    pub execute: bool,
}

impl Operations {
    pub fn from_ddf(s: &str) -> Option<Operations> {
        let s = s.trim();
        let mut ops = Operations::default();
        for c in s.chars() {
            match c.to_ascii_uppercase() {
                'R' if !ops.read => ops.read = true,
                'W' if !ops.write => ops.write = true,
                'E' if !ops.execute => ops.execute = true,
                _ => return None,
            }
        }
        Some(ops)
    }

    pub fn ddf(&self) -> &'static str {
        match (self.read, self.write, self.execute) {
            (true, true, _) => "RW",
            (true, false, _) => "R",
            (false, true, _) => "W",
            (false, false, true) => "E",
            (false, false, false) => "",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResourceModel {
    pub id: u16,
    pub name: String,
    pub operations: Operations,
    pub multiple: bool,
    pub mandatory: bool,
    pub data_type: DataType,
    pub range: String,
    pub units: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObjectModel {
    pub id: u16,
    pub name: String,
    pub description: String,
    /// `<ObjectVersion>`; 1.0 when absent.
    pub version: Version,
    /// `<LWM2MVersion>`; 1.0 when absent.
    pub lwm2m_version: Version,
    pub urn: String,
    pub multiple: bool,
    pub mandatory: bool,
    pub resources: BTreeMap<u16, ResourceModel>,
}

/// Where codecs look up object and resource models.
pub trait Models {
    fn object(&self, id: u16) -> Option<&ObjectModel>;

    fn resource(&self, object: u16, resource: u16) -> Option<&ResourceModel> {
        self.object(object)?.resources.get(&resource)
    }
}

/// No models at all: codecs fall back to what the wire says.
pub struct NoModels;

impl Models for NoModels {
    fn object(&self, _: u16) -> Option<&ObjectModel> {
        None
    }
}

/// Every known version of every known object.
#[derive(Debug, Clone, Default)]
pub struct ModelRegistry {
    objects: BTreeMap<u16, BTreeMap<Version, ObjectModel>>,
}

/// The core objects' DDF files, shipped inside the crate.
pub const CORE_DDF: &[(&str, &str)] = &[
    ("0.xml", include_str!("../ddf/0.xml")),
    ("0-1_1.xml", include_str!("../ddf/0-1_1.xml")),
    ("0-1_2.xml", include_str!("../ddf/0-1_2.xml")),
    ("1.xml", include_str!("../ddf/1.xml")),
    ("1-1_1.xml", include_str!("../ddf/1-1_1.xml")),
    ("1-1_2.xml", include_str!("../ddf/1-1_2.xml")),
    ("2.xml", include_str!("../ddf/2.xml")),
    ("2-1_1.xml", include_str!("../ddf/2-1_1.xml")),
    ("3.xml", include_str!("../ddf/3.xml")),
    ("3-1_1.xml", include_str!("../ddf/3-1_1.xml")),
    ("3-1_2.xml", include_str!("../ddf/3-1_2.xml")),
    ("4-1_0.xml", include_str!("../ddf/4-1_0.xml")),
    ("4-1_1.xml", include_str!("../ddf/4-1_1.xml")),
    ("4-1_2.xml", include_str!("../ddf/4-1_2.xml")),
    ("4.xml", include_str!("../ddf/4.xml")),
    ("5.xml", include_str!("../ddf/5.xml")),
    ("5-1_1.xml", include_str!("../ddf/5-1_1.xml")),
    ("5-1_2.xml", include_str!("../ddf/5-1_2.xml")),
    ("21.xml", include_str!("../ddf/21.xml")),
    ("21-1_1.xml", include_str!("../ddf/21-1_1.xml")),
    ("21-2_0.xml", include_str!("../ddf/21-2_0.xml")),
];

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{file}: {source}")]
    Ddf { file: String, source: DdfError },
    #[error("{dir}: {source}")]
    Io { dir: String, source: std::io::Error },
}

impl ModelRegistry {
    pub fn new() -> ModelRegistry {
        ModelRegistry::default()
    }

    /// The bundled core objects 0, 1, 2, 3, 4, 5 and 21 in every version we ship.
    pub fn core() -> ModelRegistry {
        let mut reg = ModelRegistry::new();
        for (file, xml) in CORE_DDF {
            // The bundled files are tested (`core_models_load`); a parse failure here is a
            // build defect, so surface it loudly in debug and skip the file in release.
            match ddf::parse(xml) {
                Ok(models) => models.into_iter().for_each(|m| reg.insert(m)),
                Err(e) => debug_assert!(false, "bundled DDF {file} does not parse: {e}"),
            }
        }
        reg
    }

    /// Adds (or replaces) one version of an object.
    pub fn insert(&mut self, model: ObjectModel) {
        self.objects
            .entry(model.id)
            .or_default()
            .insert(model.version, model);
    }

    /// Parses one DDF document and adds every object in it.
    pub fn load_str(
        &mut self,
        name: &str,
        xml: &str,
    ) -> Result<Vec<(u16, Version)>, RegistryError> {
        let models = ddf::parse(xml).map_err(|source| RegistryError::Ddf {
            file: name.to_owned(),
            source,
        })?;
        let added = models.iter().map(|m| (m.id, m.version)).collect();
        models.into_iter().for_each(|m| self.insert(m));
        Ok(added)
    }

    /// Loads every `*.xml` file of a directory (not recursive). One bad file fails the load
    /// and names the file, so an operator never runs with half a model set by accident.
    pub fn load_dir(&mut self, dir: &FsPath) -> Result<Vec<(u16, Version)>, RegistryError> {
        let io = |source| RegistryError::Io {
            dir: dir.display().to_string(),
            source,
        };
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("xml")))
            // A subdirectory that happens to be named `*.xml` is not a DDF file.
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        let mut added = Vec::new();
        for file in files {
            let xml = std::fs::read_to_string(&file).map_err(|source| RegistryError::Io {
                dir: file.display().to_string(),
                source,
            })?;
            added.extend(self.load_str(&file.display().to_string(), &xml)?);
        }
        Ok(added)
    }

    /// One version of an object.
    pub fn get(&self, id: u16, version: Version) -> Option<&ObjectModel> {
        self.objects.get(&id)?.get(&version)
    }

    /// The highest version known of an object.
    pub fn latest(&self, id: u16) -> Option<&ObjectModel> {
        self.objects.get(&id)?.values().next_back()
    }

    /// The versions known of an object, lowest first.
    pub fn versions(&self, id: u16) -> Vec<Version> {
        self.objects
            .get(&id)
            .map(|v| v.keys().copied().collect())
            .unwrap_or_default()
    }

    /// All object IDs known.
    pub fn object_ids(&self) -> impl Iterator<Item = u16> + '_ {
        self.objects.keys().copied()
    }

    /// The models one client uses: the versions it announced (`ver=`), 1.0 for objects it
    /// listed without `ver=` (Core: absent means 1.0), and the latest version of anything else.
    /// An announced version we do not know falls back to the nearest lower one we know with
    /// the same major, then to the latest: better a close model than none.
    pub fn for_client(&self, announced: &[(u16, Option<Version>)]) -> ClientModels<'_> {
        let mut chosen = BTreeMap::new();
        for &(id, ver) in announced {
            let Some(versions) = self.objects.get(&id) else {
                continue;
            };
            let want = ver.unwrap_or(Version::V1_0);
            let pick = versions
                .get(&want)
                .or_else(|| {
                    versions
                        .range(..=want)
                        .next_back()
                        .filter(|(v, _)| v.major == want.major)
                        .map(|(_, m)| m)
                })
                .or_else(|| versions.values().next_back());
            if let Some(m) = pick {
                chosen.insert(id, m);
            }
        }
        ClientModels {
            registry: self,
            chosen,
        }
    }
}

impl Models for ModelRegistry {
    /// Without a client context, the latest version.
    fn object(&self, id: u16) -> Option<&ObjectModel> {
        self.latest(id)
    }
}

/// The registry seen through one client's announced object versions.
#[derive(Debug, Clone)]
pub struct ClientModels<'a> {
    registry: &'a ModelRegistry,
    chosen: BTreeMap<u16, &'a ObjectModel>,
}

impl Models for ClientModels<'_> {
    fn object(&self, id: u16) -> Option<&ObjectModel> {
        match self.chosen.get(&id) {
            Some(m) => Some(m),
            None => self.registry.latest(id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!("1.2".parse(), Ok(Version::V1_2));
        assert_eq!("1.2.1".parse(), Ok(Version::V1_2));
        assert_eq!("2.0".parse(), Ok(Version::new(2, 0)));
        for bad in ["", "1", "1.", ".1", "a.b", "1.2.3.4", "1.-2", "1000.0"] {
            assert!(bad.parse::<Version>().is_err(), "{bad}");
        }
    }

    #[test]
    fn operations_parse() {
        assert_eq!(Operations::from_ddf("RW").map(|o| o.ddf()), Some("RW"));
        assert_eq!(Operations::from_ddf("E").map(|o| o.execute), Some(true));
        assert_eq!(Operations::from_ddf("").map(|o| o.ddf()), Some(""));
        assert_eq!(Operations::from_ddf("RR"), None);
        assert_eq!(Operations::from_ddf("X"), None);
    }
}
