//! The DDF loader and the model registry: the bundled core objects, per-version lookups,
//! loading operator directories, and DDF documents written to break the parser.

use std::collections::BTreeSet;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use steward_objects::ddf::{self, DdfError};
use steward_objects::model::{CORE_DDF, RegistryError};
use steward_objects::{DataType, ModelRegistry, Models, ObjectModel, Version};

const TEST_OBJECT: &str = include_str!("vectors/ddf/42799.xml");

fn v(major: u8, minor: u8) -> Version {
    Version::new(major, minor)
}

/// Every bundled file with the object and version it must define.
const EXPECTED_FILES: &[(&str, u16, (u8, u8))] = &[
    ("0.xml", 0, (1, 0)),
    ("0-1_1.xml", 0, (1, 1)),
    ("0-1_2.xml", 0, (1, 2)),
    ("1.xml", 1, (1, 0)),
    ("1-1_1.xml", 1, (1, 1)),
    ("1-1_2.xml", 1, (1, 2)),
    ("2.xml", 2, (1, 0)),
    ("2-1_1.xml", 2, (1, 1)),
    ("3.xml", 3, (1, 0)),
    ("3-1_1.xml", 3, (1, 1)),
    ("3-1_2.xml", 3, (1, 2)),
    ("4-1_0.xml", 4, (1, 0)),
    ("4-1_1.xml", 4, (1, 1)),
    ("4-1_2.xml", 4, (1, 2)),
    // The current Connectivity Monitoring version keeps the plain name.
    ("4.xml", 4, (1, 3)),
    ("5.xml", 5, (1, 0)),
    ("5-1_1.xml", 5, (1, 1)),
    ("5-1_2.xml", 5, (1, 2)),
    ("21.xml", 21, (1, 0)),
    ("21-1_1.xml", 21, (1, 1)),
    ("21-2_0.xml", 21, (2, 0)),
];

fn parse_one(name: &str, xml: &str) -> ObjectModel {
    let mut models = ddf::parse(xml).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(models.len(), 1, "{name}: one object per file");
    models.remove(0)
}

fn model(reg: &ModelRegistry, id: u16, ver: Version) -> &ObjectModel {
    reg.get(id, ver)
        .unwrap_or_else(|| panic!("/{id} {ver} missing from the core registry"))
}

fn ids(m: &ObjectModel) -> Vec<u16> {
    m.resources.keys().copied().collect()
}

fn range(ids: impl IntoIterator<Item = u16>) -> Vec<u16> {
    ids.into_iter().collect()
}

fn assert_resource(m: &ObjectModel, rid: u16, ty: DataType, multiple: bool, ops: &str) {
    let r = m
        .resources
        .get(&rid)
        .unwrap_or_else(|| panic!("/{}/x/{rid} missing in {}", m.id, m.version));
    let at = format!("/{}/x/{rid} ({}) in version {}", m.id, r.name, m.version);
    assert_eq!(r.data_type, ty, "{at}: type");
    assert_eq!(r.multiple, multiple, "{at}: multiplicity");
    assert_eq!(r.operations.ddf(), ops, "{at}: operations");
}

// ---------------------------------------------------------------------------------------------
// Bundled files
// ---------------------------------------------------------------------------------------------

#[test]
fn core_ddf_lists_exactly_the_expected_files() {
    let listed: Vec<&str> = CORE_DDF.iter().map(|(name, _)| *name).collect();
    let expected: Vec<&str> = EXPECTED_FILES.iter().map(|(name, _, _)| *name).collect();
    assert_eq!(listed, expected);
}

#[test]
fn every_file_in_the_ddf_dir_is_bundled() {
    let dir = FsPath::new(env!("CARGO_MANIFEST_DIR")).join("ddf");
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("objects/ddf exists")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".xml"))
        .collect();
    let bundled: BTreeSet<String> = CORE_DDF.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(on_disk, bundled);
}

#[test]
fn every_bundled_file_parses_to_its_object_and_version() {
    for &(file, id, (major, minor)) in EXPECTED_FILES {
        let xml = CORE_DDF
            .iter()
            .find(|(n, _)| *n == file)
            .map(|(_, x)| *x)
            .unwrap_or_else(|| panic!("{file} not bundled"));
        let m = parse_one(file, xml);
        let ver = v(major, minor);
        assert_eq!((m.id, m.version), (id, ver), "{file}");
        let urn = if ver == Version::V1_0 {
            format!("urn:oma:lwm2m:oma:{id}")
        } else {
            format!("urn:oma:lwm2m:oma:{id}:{ver}")
        };
        assert_eq!(m.urn, urn, "{file}");
        assert!(!m.name.is_empty() && !m.description.is_empty(), "{file}");
    }
}

#[test]
fn bundled_resources_are_well_formed() {
    for (file, xml) in CORE_DDF {
        let m = parse_one(file, xml);
        assert!(!m.resources.is_empty(), "{file}");
        for (rid, r) in &m.resources {
            assert_eq!(*rid, r.id, "{file}");
            assert!(!r.name.is_empty(), "{file} resource {rid}: name");
            assert!(
                !r.description.is_empty(),
                "{file} resource {rid}: description"
            );
            // Executables carry no value; everything else has a type the codecs can use.
            let executable = r.operations.execute;
            assert_eq!(
                executable,
                r.data_type == DataType::None,
                "{file} resource {rid}: E iff no type"
            );
            if executable {
                assert_eq!(r.operations.ddf(), "E", "{file} resource {rid}");
                assert!(!r.multiple, "{file} resource {rid}: executables are single");
            }
        }
    }
}

#[test]
fn core_registry_has_every_object_and_version() {
    let reg = ModelRegistry::core();
    assert_eq!(
        reg.object_ids().collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4, 5, 21]
    );
    let expect: &[(u16, &[(u8, u8)])] = &[
        (0, &[(1, 0), (1, 1), (1, 2)]),
        (1, &[(1, 0), (1, 1), (1, 2)]),
        (2, &[(1, 0), (1, 1)]),
        (3, &[(1, 0), (1, 1), (1, 2)]),
        (4, &[(1, 0), (1, 1), (1, 2), (1, 3)]),
        (5, &[(1, 0), (1, 1), (1, 2)]),
        (21, &[(1, 0), (1, 1), (2, 0)]),
    ];
    for (id, versions) in expect {
        let want: Vec<Version> = versions.iter().map(|&(a, b)| v(a, b)).collect();
        assert_eq!(reg.versions(*id), want, "/{id}");
        assert_eq!(reg.latest(*id).map(|m| m.version), want.last().copied());
    }
}

#[test]
fn object_level_flags() {
    let reg = ModelRegistry::core();
    // (id, multiple instances, mandatory object)
    for (id, multiple, mandatory) in [
        (0, true, true),
        (1, true, true),
        (2, true, false),
        (3, false, true),
        (4, false, false),
        (5, false, false),
        (21, true, false),
    ] {
        for ver in reg.versions(id) {
            let m = model(&reg, id, ver);
            assert_eq!(
                (m.multiple, m.mandatory),
                (multiple, mandatory),
                "/{id} {ver}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Resource sets per version (from each object's version history in the OMNA registry)
// ---------------------------------------------------------------------------------------------

#[test]
fn security_resources_per_version() {
    let reg = ModelRegistry::core();
    assert_eq!(ids(model(&reg, 0, v(1, 0))), range(0..=12));
    assert_eq!(ids(model(&reg, 0, v(1, 1))), range(0..=17));
    assert_eq!(ids(model(&reg, 0, v(1, 2))), range(0..=30));
    for ver in reg.versions(0) {
        let m = model(&reg, 0, ver);
        // Bootstrap-only object: no operation is open to a regular server.
        assert!(m.resources.values().all(|r| r.operations.ddf().is_empty()));
        assert_resource(m, 0, DataType::String, false, "");
        assert_resource(m, 1, DataType::Boolean, false, "");
        assert_resource(m, 2, DataType::Integer, false, "");
        for rid in [3, 4, 5] {
            assert_resource(m, rid, DataType::Opaque, false, "");
        }
        assert_resource(m, 10, DataType::Integer, false, "");
    }
    // 1.1 and 1.2 disagree on the integer flavour of the TLS resources.
    let m11 = model(&reg, 0, v(1, 1));
    assert_resource(m11, 13, DataType::UnsignedInteger, false, "");
    assert_resource(m11, 15, DataType::Integer, false, "");
    assert_resource(m11, 16, DataType::Integer, true, "");
    assert_resource(m11, 17, DataType::Objlnk, false, "");
    let m12 = model(&reg, 0, v(1, 2));
    assert_resource(m12, 15, DataType::UnsignedInteger, false, "");
    assert_resource(m12, 16, DataType::UnsignedInteger, true, "");
    assert_resource(m12, 25, DataType::String, true, "");
    assert_resource(m12, 27, DataType::Objlnk, true, "");
}

#[test]
fn server_resources_per_version() {
    let reg = ModelRegistry::core();
    assert_eq!(ids(model(&reg, 1, v(1, 0))), range(0..=8));
    assert_eq!(ids(model(&reg, 1, v(1, 1))), range(0..=23));
    assert_eq!(ids(model(&reg, 1, v(1, 2))), range(0..=27));
    for ver in reg.versions(1) {
        let m = model(&reg, 1, ver);
        assert_resource(m, 0, DataType::Integer, false, "R");
        assert_resource(m, 4, DataType::None, false, "E");
        assert_resource(m, 6, DataType::Boolean, false, "RW");
        assert_resource(m, 7, DataType::String, false, "RW");
        assert_resource(m, 8, DataType::None, false, "E");
        let mandatory: Vec<u16> = m
            .resources
            .values()
            .filter(|r| r.mandatory)
            .map(|r| r.id)
            .collect();
        assert_eq!(mandatory, vec![0, 1, 6, 7, 8], "/1 {ver}");
    }
    // Lifetime became an Unsigned Integer in 1.2.
    assert_resource(model(&reg, 1, v(1, 0)), 1, DataType::Integer, false, "RW");
    assert_resource(model(&reg, 1, v(1, 1)), 1, DataType::Integer, false, "RW");
    assert_resource(
        model(&reg, 1, v(1, 2)),
        1,
        DataType::UnsignedInteger,
        false,
        "RW",
    );
    // 1.1 leaves the registration-sequencing resources to bootstrap; 1.2 opens them.
    assert_resource(
        model(&reg, 1, v(1, 1)),
        17,
        DataType::UnsignedInteger,
        false,
        "",
    );
    assert_resource(
        model(&reg, 1, v(1, 2)),
        17,
        DataType::UnsignedInteger,
        false,
        "RW",
    );
    assert_resource(model(&reg, 1, v(1, 1)), 12, DataType::Time, false, "R");
    assert_resource(model(&reg, 1, v(1, 2)), 24, DataType::Objlnk, true, "RW");
    assert_resource(model(&reg, 1, v(1, 2)), 25, DataType::String, true, "RW");
}

#[test]
fn access_control_resources() {
    let reg = ModelRegistry::core();
    for ver in [v(1, 0), v(1, 1)] {
        let m = model(&reg, 2, ver);
        assert_eq!(ids(m), range(0..=3));
        assert_resource(m, 0, DataType::Integer, false, "R");
        assert_resource(m, 1, DataType::Integer, false, "R");
        assert_resource(m, 2, DataType::Integer, true, "RW");
        assert_resource(m, 3, DataType::Integer, false, "RW");
    }
    // The two versions differ only in metadata.
    assert_eq!(model(&reg, 2, v(1, 0)).resources[&2].range, "16-bit");
    assert_eq!(model(&reg, 2, v(1, 1)).resources[&2].range, "0..31");
}

#[test]
fn device_resources_per_version() {
    let reg = ModelRegistry::core();
    // The registry's version history shows 17-22 already in Device 1.0 (OMA-SUP-XML
    // LWM2M_Device-V1_0_2); 1.1 and 1.2 only changed metadata (Error Code range, texts).
    for ver in [v(1, 0), v(1, 1), v(1, 2)] {
        let m = model(&reg, 3, ver);
        assert_eq!(ids(m), range(0..=22), "/3 {ver}");
        assert_resource(m, 0, DataType::String, false, "R");
        assert_resource(m, 4, DataType::None, false, "E");
        assert_resource(m, 5, DataType::None, false, "E");
        assert_resource(m, 6, DataType::Integer, true, "R");
        assert_resource(m, 7, DataType::Integer, true, "R");
        assert_resource(m, 9, DataType::Integer, false, "R");
        assert_resource(m, 11, DataType::Integer, true, "R");
        assert_resource(m, 13, DataType::Time, false, "RW");
        assert_resource(m, 14, DataType::String, false, "RW");
        assert_resource(m, 16, DataType::String, false, "R");
        assert_resource(m, 22, DataType::Objlnk, true, "R");
        let mandatory: Vec<u16> = m
            .resources
            .values()
            .filter(|r| r.mandatory)
            .map(|r| r.id)
            .collect();
        assert_eq!(mandatory, vec![4, 11, 16], "/3 {ver}");
    }
    assert_eq!(model(&reg, 3, v(1, 1)).resources[&11].range, "0..8");
    assert_eq!(model(&reg, 3, v(1, 2)).resources[&11].range, "0..32");
    assert_eq!(model(&reg, 3, v(1, 0)).lwm2m_version, Version::V1_0);
    assert_eq!(model(&reg, 3, v(1, 2)).lwm2m_version, Version::V1_1);
}

#[test]
fn connectivity_monitoring_resources_per_version() {
    let reg = ModelRegistry::core();
    assert_eq!(ids(model(&reg, 4, v(1, 0))), range(0..=10));
    assert_eq!(ids(model(&reg, 4, v(1, 1))), range(0..=11));
    assert_eq!(ids(model(&reg, 4, v(1, 2))), range(0..=12));
    assert_eq!(ids(model(&reg, 4, v(1, 3))), range(0..=13));
    for ver in reg.versions(4) {
        let m = model(&reg, 4, ver);
        assert_resource(m, 0, DataType::Integer, false, "R");
        assert_resource(m, 1, DataType::Integer, true, "R");
        assert_resource(m, 2, DataType::Integer, false, "R");
        assert_resource(m, 4, DataType::String, true, "R");
        assert_resource(m, 5, DataType::String, true, "R");
        assert_resource(m, 7, DataType::String, true, "R");
        assert_eq!(m.resources[&2].units, "dBm");
    }
}

#[test]
fn firmware_update_resources_per_version() {
    let reg = ModelRegistry::core();
    let v10: Vec<u16> = [0, 1, 2, 3, 5, 6, 7, 8, 9].into();
    assert_eq!(ids(model(&reg, 5, v(1, 0))), v10);
    let v11: Vec<u16> = v10.iter().copied().chain(10..=13).collect();
    assert_eq!(ids(model(&reg, 5, v(1, 1))), v11);
    let v12: Vec<u16> = v11.iter().copied().chain([14]).collect();
    assert_eq!(ids(model(&reg, 5, v(1, 2))), v12);
    for ver in reg.versions(5) {
        let m = model(&reg, 5, ver);
        assert_resource(m, 0, DataType::Opaque, false, "W");
        assert_resource(m, 1, DataType::String, false, "RW");
        assert_resource(m, 2, DataType::None, false, "E");
        assert_resource(m, 3, DataType::Integer, false, "R");
        assert_resource(m, 5, DataType::Integer, false, "R");
        assert_resource(m, 8, DataType::Integer, true, "R");
    }
    let m12 = model(&reg, 5, v(1, 2));
    assert_resource(m12, 10, DataType::None, false, "E");
    assert_resource(m12, 12, DataType::Time, false, "R");
    assert_resource(m12, 13, DataType::UnsignedInteger, false, "RW");
    assert_resource(m12, 14, DataType::Boolean, false, "RW");
}

#[test]
fn oscore_resources_per_version() {
    let reg = ModelRegistry::core();
    assert_eq!(ids(model(&reg, 21, v(1, 0))), range(0..=5));
    assert_eq!(ids(model(&reg, 21, v(1, 1))), range(0..=6));
    assert_eq!(ids(model(&reg, 21, v(2, 0))), range(0..=6));
    // The major version bump changed the keying material from String to Opaque.
    for rid in [0, 1, 2, 5] {
        assert_resource(model(&reg, 21, v(1, 0)), rid, DataType::String, false, "");
        assert_resource(model(&reg, 21, v(2, 0)), rid, DataType::Opaque, false, "");
    }
    assert_resource(model(&reg, 21, v(1, 1)), 6, DataType::String, false, "");
    assert_resource(model(&reg, 21, v(2, 0)), 6, DataType::Opaque, false, "");
    assert_resource(model(&reg, 21, v(2, 0)), 3, DataType::Integer, false, "");
}

// ---------------------------------------------------------------------------------------------
// Per-client model selection
// ---------------------------------------------------------------------------------------------

fn chosen(reg: &ModelRegistry, id: u16, ver: Option<Version>) -> Option<Version> {
    reg.for_client(&[(id, ver)]).object(id).map(|m| m.version)
}

#[test]
fn for_client_uses_the_announced_version() {
    let reg = ModelRegistry::core();
    assert_eq!(chosen(&reg, 3, Some(v(1, 0))), Some(v(1, 0)));
    assert_eq!(chosen(&reg, 3, Some(v(1, 1))), Some(v(1, 1)));
    assert_eq!(chosen(&reg, 3, Some(v(1, 2))), Some(v(1, 2)));
    assert_eq!(chosen(&reg, 21, Some(v(2, 0))), Some(v(2, 0)));
    assert_eq!(chosen(&reg, 4, Some(v(1, 3))), Some(v(1, 3)));
}

#[test]
fn for_client_without_ver_means_1_0() {
    let reg = ModelRegistry::core();
    for id in [0, 1, 2, 3, 4, 5, 21] {
        assert_eq!(chosen(&reg, id, None), Some(Version::V1_0), "/{id}");
    }
}

#[test]
fn for_client_unknown_version_falls_back() {
    let reg = ModelRegistry::core();
    // Nearest lower version with the same major.
    assert_eq!(chosen(&reg, 3, Some(v(1, 7))), Some(v(1, 2)));
    assert_eq!(chosen(&reg, 21, Some(v(2, 5))), Some(v(2, 0)));
    assert_eq!(chosen(&reg, 21, Some(v(1, 9))), Some(v(1, 1)));
    // No same-major version at or below: the latest we have.
    assert_eq!(chosen(&reg, 3, Some(v(2, 0))), Some(v(1, 2)));
    assert_eq!(chosen(&reg, 3, Some(v(0, 9))), Some(v(1, 2)));
}

#[test]
fn for_client_typing_follows_the_chosen_version() {
    let reg = ModelRegistry::core();
    let old = reg.for_client(&[(1, Some(v(1, 1))), (21, None)]);
    let new = reg.for_client(&[(1, Some(v(1, 2))), (21, Some(v(2, 0)))]);
    let ty = |m: &dyn Models, o, r| m.resource(o, r).map(|r| r.data_type);
    assert_eq!(ty(&old, 1, 1), Some(DataType::Integer));
    assert_eq!(ty(&new, 1, 1), Some(DataType::UnsignedInteger));
    assert_eq!(ty(&old, 21, 0), Some(DataType::String));
    assert_eq!(ty(&new, 21, 0), Some(DataType::Opaque));
    // A resource the announced version lacks is unknown to that client.
    assert_eq!(ty(&old, 1, 24), None);
    assert_eq!(ty(&new, 1, 24), Some(DataType::Objlnk));
}

#[test]
fn for_client_unannounced_and_unknown_objects() {
    let reg = ModelRegistry::core();
    let client = reg.for_client(&[(3, Some(v(1, 0))), (42000, Some(v(1, 0)))]);
    // Not announced: the latest version.
    assert_eq!(client.object(5).map(|m| m.version), Some(v(1, 2)));
    // Announced but unknown to the registry: no model.
    assert!(client.object(42000).is_none());
    assert!(client.resource(42000, 0).is_none());
    // Without a client context the registry answers with the latest version.
    assert_eq!(reg.object(3).map(|m| m.version), Some(v(1, 2)));
    assert_eq!(
        reg.resource(3, 13).map(|r| r.data_type),
        Some(DataType::Time)
    );
}

// ---------------------------------------------------------------------------------------------
// The codec test object
// ---------------------------------------------------------------------------------------------

#[test]
fn codec_test_object_layout() {
    let m = parse_one("42799.xml", TEST_OBJECT);
    assert_eq!((m.id, m.version, m.multiple), (42799, Version::V1_0, true));
    assert_eq!(ids(&m), range(0..=18));
    let types = [
        DataType::String,
        DataType::Integer,
        DataType::UnsignedInteger,
        DataType::Float,
        DataType::Boolean,
        DataType::Opaque,
        DataType::Time,
        DataType::Objlnk,
        DataType::Corelnk,
    ];
    for (i, ty) in (0u16..).zip(types) {
        assert_resource(&m, i, ty, false, "RW");
        assert_resource(&m, i + 10, ty, true, "RW");
    }
    assert_resource(&m, 9, DataType::None, false, "E");
}

// ---------------------------------------------------------------------------------------------
// load_dir / load_str
// ---------------------------------------------------------------------------------------------

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "steward-ddf-{tag}-{}-{nanos}-{n}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.0.join(name), text).expect("write temp file");
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A minimal valid DDF for object `id` with one String resource.
fn tiny_ddf(id: u32, version: &str) -> String {
    format!(
        r#"<?xml version="1.0"?>
<LWM2M><Object ObjectType="MODefinition">
  <Name>Tiny {id}</Name><ObjectID>{id}</ObjectID><ObjectVersion>{version}</ObjectVersion>
  <MultipleInstances>Single</MultipleInstances><Mandatory>Optional</Mandatory>
  <Resources><Item ID="0"><Name>Value</Name><Operations>RW</Operations>
    <MultipleInstances>Single</MultipleInstances><Mandatory>Mandatory</Mandatory>
    <Type>String</Type></Item></Resources>
</Object></LWM2M>"#
    )
}

#[test]
fn load_dir_loads_every_xml_file() {
    let dir = TempDir::new("ok");
    dir.write("42799.xml", TEST_OBJECT);
    dir.write("30000.XML", &tiny_ddf(30000, "1.0"));
    dir.write("30000-2_1.xml", &tiny_ddf(30000, "2.1"));
    dir.write("README.txt", "not a DDF, not an .xml file: ignored");
    std::fs::create_dir(dir.0.join("nested.xml")).expect("subdir");

    let mut reg = ModelRegistry::core();
    let mut added = reg.load_dir(&dir.0).expect("load_dir");
    added.sort();
    assert_eq!(
        added,
        vec![(30000, v(1, 0)), (30000, v(2, 1)), (42799, v(1, 0))]
    );
    assert_eq!(reg.versions(30000), vec![v(1, 0), v(2, 1)]);
    assert_eq!(
        reg.resource(42799, 3).map(|r| r.data_type),
        Some(DataType::Float)
    );
    // The core objects are still there.
    assert_eq!(reg.versions(3).len(), 3);
}

#[test]
fn load_dir_bad_file_fails_naming_it() {
    let dir = TempDir::new("bad");
    dir.write("30000.xml", &tiny_ddf(30000, "1.0"));
    dir.write(
        "zz-broken.xml",
        "<LWM2M><Object><Name>x</Name></Object></LWM2M>",
    );
    let err = ModelRegistry::new()
        .load_dir(&dir.0)
        .expect_err("a bad file must fail the load");
    match &err {
        RegistryError::Ddf { file, source } => {
            assert!(file.ends_with("zz-broken.xml"), "{file}");
            assert!(
                matches!(
                    source,
                    DdfError::Missing {
                        field: "ObjectID",
                        ..
                    }
                ),
                "{source}"
            );
        }
        other => panic!("expected a DDF error, got {other}"),
    }
    assert!(err.to_string().contains("zz-broken.xml"), "{err}");
}

#[test]
fn load_dir_invalid_utf8_file_fails_naming_it() {
    let dir = TempDir::new("utf8");
    std::fs::write(dir.0.join("latin1.xml"), b"<LWM2M>\xe9\xff</LWM2M>").expect("write");
    let err = ModelRegistry::new()
        .load_dir(&dir.0)
        .expect_err("not UTF-8");
    assert!(err.to_string().contains("latin1.xml"), "{err}");
}

#[test]
fn load_dir_missing_dir_is_an_io_error() {
    let dir = TempDir::new("gone");
    let missing = dir.0.join("does-not-exist");
    let err = ModelRegistry::new()
        .load_dir(&missing)
        .expect_err("no such dir");
    assert!(matches!(err, RegistryError::Io { .. }), "{err}");
    assert!(err.to_string().contains("does-not-exist"), "{err}");
}

#[test]
fn load_str_replaces_a_version_in_place() {
    let mut reg = ModelRegistry::new();
    reg.load_str("a.xml", &tiny_ddf(30001, "1.0"))
        .expect("load");
    let renamed = tiny_ddf(30001, "1.0").replace("Tiny 30001", "Renamed");
    assert_eq!(
        reg.load_str("b.xml", &renamed).expect("load"),
        vec![(30001, v(1, 0))]
    );
    assert_eq!(reg.versions(30001), vec![v(1, 0)]);
    assert_eq!(
        reg.get(30001, v(1, 0)).map(|m| m.name.as_str()),
        Some("Renamed")
    );
}

// ---------------------------------------------------------------------------------------------
// Parser details and hostile input
// ---------------------------------------------------------------------------------------------

/// A one-resource DDF with the given pieces spliced in.
fn ddf_with(object_id: &str, item: &str) -> String {
    format!(
        "<LWM2M><Object ObjectType=\"MODefinition\"><Name>T</Name>{object_id}\
         <MultipleInstances>Multiple</MultipleInstances><Resources>{item}</Resources>\
         </Object></LWM2M>"
    )
}

fn item(id: &str, ops: &str, ty: &str, multiple: &str) -> String {
    format!(
        "<Item ID=\"{id}\"><Name>R</Name><Operations>{ops}</Operations>\
         <MultipleInstances>{multiple}</MultipleInstances><Mandatory>Optional</Mandatory>\
         <Type>{ty}</Type></Item>"
    )
}

fn good_item() -> String {
    item("0", "RW", "String", "Single")
}

#[test]
fn parser_accepts_schema_variations() {
    // Namespaced root, CDATA, predefined entities and character references, odd type
    // spellings, several objects in one document, missing optional fields.
    let xml = "<?xml version=\"1.0\"?>\n<!-- comment -->\n\
        <x:LWM2M xmlns:x=\"urn:example\">\
        <Object><Name><![CDATA[A & B]]></Name><ObjectID> 30002 </ObjectID>\
        <MultipleInstances>Single</MultipleInstances>\
        <Resources><Item ID=\" 7 \"><Name>R &amp; &#x53;</Name><Operations>rw</Operations>\
        <MultipleInstances>Multiple</MultipleInstances><Type>unsignedInteger</Type></Item>\
        <Item ID=\"8\"><Name>X</Name><Operations/><MultipleInstances>Single</MultipleInstances>\
        <Type>ObjLnk</Type></Item></Resources></Object>\
        <Object><Name>Second</Name><ObjectID>30003</ObjectID><ObjectVersion>1.2.1</ObjectVersion>\
        <MultipleInstances>Multiple</MultipleInstances></Object></x:LWM2M>";
    let models = ddf::parse(xml).expect("parses");
    assert_eq!(models.len(), 2);
    let a = &models[0];
    assert_eq!(
        (a.id, a.name.as_str(), a.version),
        (30002, "A & B", Version::V1_0)
    );
    assert!(!a.mandatory, "Mandatory defaults to Optional");
    let r7 = &a.resources[&7];
    assert_eq!(r7.name, "R & S");
    assert_eq!(r7.data_type, DataType::UnsignedInteger);
    assert!(r7.multiple && r7.operations.read && r7.operations.write);
    assert_eq!(a.resources[&8].data_type, DataType::Objlnk);
    assert_eq!((models[1].id, models[1].version), (30003, v(1, 2)));
    assert!(models[1].resources.is_empty());
}

#[test]
fn a_doctype_without_entity_use_is_harmless() {
    let xml = format!(
        "<!DOCTYPE LWM2M [ <!ENTITY unused \"x\"> ]>{}",
        tiny_ddf(30004, "1.0")
    );
    // The XML declaration must come first, so drop it from the tiny DDF.
    let xml = xml.replace("<?xml version=\"1.0\"?>\n", "");
    let m = parse_one("doctype", &xml);
    assert_eq!(m.id, 30004);
}

fn assert_err(xml: &str, check: impl Fn(&DdfError) -> bool, what: &str) {
    match ddf::parse(xml) {
        Ok(models) => panic!(
            "{what}: parsed {} object(s), expected an error",
            models.len()
        ),
        Err(e) => {
            assert!(check(&e), "{what}: unexpected error {e:?}");
            // Every error renders to a short, loggable line.
            let text = e.to_string();
            assert!(!text.is_empty() && text.len() < 512, "{what}: {text}");
        }
    }
}

#[test]
fn not_xml() {
    for input in [
        "",
        "   ",
        "not xml at all",
        "\u{0}\u{1}\u{2}",
        "<<<>>>",
        "<LWM2M",
        "<LWM2M><Object></LWM2M>",
        "<LWM2M></Object></LWM2M>",
        "<LWM2M attr=unquoted></LWM2M>",
        "<LWM2M a=\"1\" a=\"2\"></LWM2M>",
        "<LWM2M/><LWM2M/>",
        "</LWM2M>",
        "<LWM2M>&#0;</LWM2M>",
        "<LWM2M>&#xD800;</LWM2M>",
        "<LWM2M>&#99999999999;</LWM2M>",
        "<LWM2M>&bogus;</LWM2M>",
        "<LWM2M>&amp</LWM2M>",
    ] {
        assert_err(input, |_| true, &format!("{input:?}"));
    }
}

#[test]
fn wrong_root_or_no_object() {
    assert_err(
        "<Foo/>",
        |e| matches!(e, DdfError::NotDdf(n) if n == "Foo"),
        "root",
    );
    assert_err(
        "<lwm2m><Object/></lwm2m>",
        |e| matches!(e, DdfError::NotDdf(_)),
        "root is case-sensitive",
    );
    let long = format!("<{}/>", "A".repeat(10_000));
    assert_err(
        &long,
        |e| matches!(e, DdfError::NotDdf(n) if n.len() <= 64),
        "long root",
    );
    assert_err("<LWM2M/>", |e| *e == DdfError::NoObject, "empty");
    assert_err(
        "<LWM2M><Item/></LWM2M>",
        |e| *e == DdfError::NoObject,
        "no object",
    );
}

#[test]
fn bad_object_fields() {
    let missing = |field: &'static str| move |e: &DdfError| matches!(e, DdfError::Missing { field: f, .. } if *f == field);
    let invalid = |field: &'static str| move |e: &DdfError| matches!(e, DdfError::Invalid { field: f, .. } if *f == field);

    assert_err(
        &ddf_with("", &good_item()),
        missing("ObjectID"),
        "no ObjectID",
    );
    for bad in [
        "65535",
        "65536",
        "-1",
        "abc",
        "",
        "1.5",
        "0x10",
        "999999999999",
    ] {
        let xml = ddf_with(&format!("<ObjectID>{bad}</ObjectID>"), &good_item());
        assert_err(&xml, invalid("ObjectID"), &format!("ObjectID {bad:?}"));
    }
    let no_name = "<LWM2M><Object><ObjectID>1</ObjectID><MultipleInstances>Single</MultipleInstances></Object></LWM2M>";
    assert_err(no_name, missing("Name"), "no Name");
    let no_multi = "<LWM2M><Object><Name>x</Name><ObjectID>1</ObjectID></Object></LWM2M>";
    assert_err(
        no_multi,
        missing("MultipleInstances"),
        "no MultipleInstances",
    );
    let bad_multi = "<LWM2M><Object><Name>x</Name><ObjectID>1</ObjectID><MultipleInstances>Many</MultipleInstances></Object></LWM2M>";
    assert_err(
        bad_multi,
        invalid("MultipleInstances"),
        "bad MultipleInstances",
    );
    let bad_mand = "<LWM2M><Object><Name>x</Name><ObjectID>1</ObjectID><MultipleInstances>Single</MultipleInstances><Mandatory>Yes</Mandatory></Object></LWM2M>";
    assert_err(bad_mand, invalid("Mandatory"), "bad Mandatory");
    for bad in ["abc", "1", "1.2.3.4", "256.0", "-1.0"] {
        let xml = format!(
            "<LWM2M><Object><Name>x</Name><ObjectID>1</ObjectID><ObjectVersion>{bad}</ObjectVersion><MultipleInstances>Single</MultipleInstances></Object></LWM2M>"
        );
        assert_err(
            &xml,
            invalid("ObjectVersion"),
            &format!("ObjectVersion {bad:?}"),
        );
    }
    let bad_lwm2m = "<LWM2M><Object><Name>x</Name><ObjectID>1</ObjectID><LWM2MVersion>one</LWM2MVersion><MultipleInstances>Single</MultipleInstances></Object></LWM2M>";
    assert_err(bad_lwm2m, invalid("LWM2MVersion"), "bad LWM2MVersion");
}

#[test]
fn bad_resource_fields() {
    let invalid = |field: &'static str| move |e: &DdfError| matches!(e, DdfError::Invalid { field: f, .. } if *f == field);
    let oid = "<ObjectID>30005</ObjectID>";
    for ty in ["Double", "int", "Strin g2", "Objlink", "Time64"] {
        let xml = ddf_with(oid, &item("0", "RW", ty, "Single"));
        assert_err(&xml, invalid("Type"), &format!("Type {ty:?}"));
    }
    for ops in ["RWX", "RR", "X", "read", "R W E E"] {
        let xml = ddf_with(oid, &item("0", ops, "String", "Single"));
        assert_err(&xml, invalid("Operations"), &format!("Operations {ops:?}"));
    }
    for id in ["65535", "-3", "x", "", "70000"] {
        let xml = ddf_with(oid, &item(id, "RW", "String", "Single"));
        assert_err(&xml, invalid("ID"), &format!("resource ID {id:?}"));
    }
    let xml = ddf_with(oid, &item("0", "RW", "String", "Several"));
    assert_err(
        &xml,
        invalid("MultipleInstances"),
        "resource MultipleInstances",
    );
    let no_id = ddf_with(
        oid,
        "<Item><Name>R</Name><MultipleInstances>Single</MultipleInstances></Item>",
    );
    assert_err(
        &no_id,
        |e| matches!(e, DdfError::Missing { field: "ID", .. }),
        "resource without ID",
    );
    let no_name = ddf_with(
        oid,
        "<Item ID=\"1\"><MultipleInstances>Single</MultipleInstances></Item>",
    );
    assert_err(
        &no_name,
        |e| matches!(e, DdfError::Missing { field: "Name", .. }),
        "resource without Name",
    );
    // Error values quote at most 64 characters of the offending text.
    let long = "Q".repeat(5000);
    let xml = ddf_with(oid, &item("0", "RW", &long, "Single"));
    assert_err(
        &xml,
        |e| matches!(e, DdfError::Invalid { value, .. } if value.chars().count() <= 64),
        "long Type",
    );
}

#[test]
fn duplicate_resource() {
    let items = format!("{}{}", good_item(), item(" 0 ", "R", "Integer", "Single"));
    let xml = ddf_with("<ObjectID>30006</ObjectID>", &items);
    assert_err(
        &xml,
        |e| {
            *e == DdfError::DuplicateResource {
                object: 30006,
                resource: 0,
            }
        },
        "duplicate",
    );
}

#[test]
fn deep_nesting_is_refused() {
    let depth = 100;
    let xml = format!("{}{}", "<LWM2M>".repeat(depth), "</LWM2M>".repeat(depth));
    assert_err(&xml, |e| *e == DdfError::TooDeep, "100 deep");
    // Self-closing elements at depth count too.
    let xml = format!("{}<a/>{}", "<a>".repeat(depth), "</a>".repeat(depth));
    assert_err(&xml, |e| *e == DdfError::TooDeep, "100 deep, empty leaf");
    // Far deeper than any stack could take if the parser recursed.
    let depth = 200_000;
    let xml = format!("{}{}", "<a>".repeat(depth), "</a>".repeat(depth));
    assert_err(&xml, |e| *e == DdfError::TooDeep, "200k deep");
}

#[test]
fn huge_element_count_is_refused() {
    let xml = format!(
        "<LWM2M><Object><Name>x</Name><ObjectID>1</ObjectID><MultipleInstances>Single</MultipleInstances><Resources>{}</Resources></Object></LWM2M>",
        "<Junk/>".repeat(200_000)
    );
    assert_err(&xml, |e| *e == DdfError::TooLarge, "200k elements");
    // A realistic large object (a few thousand resources) is still fine.
    let items: String = (0..2000)
        .map(|i| item(&i.to_string(), "R", "Integer", "Single"))
        .collect();
    let m = parse_one("big", &ddf_with("<ObjectID>30007</ObjectID>", &items));
    assert_eq!(m.resources.len(), 2000);
}

#[test]
fn entities_are_never_expanded() {
    let secret = "EXPANDED-ENTITY-TEXT";
    let internal = format!(
        "<!DOCTYPE LWM2M [ <!ENTITY e \"{secret}\"> ]>\
         <LWM2M><Object><Name>&e;</Name><ObjectID>1</ObjectID>\
         <MultipleInstances>Single</MultipleInstances></Object></LWM2M>"
    );
    let external = "<!DOCTYPE LWM2M [ <!ENTITY xxe SYSTEM \"file:///etc/passwd\"> ]>\
         <LWM2M><Object><Name>&xxe;</Name><ObjectID>1</ObjectID>\
         <MultipleInstances>Single</MultipleInstances></Object></LWM2M>";
    let external_dtd = "<!DOCTYPE LWM2M SYSTEM \"http://127.0.0.1:1/evil.dtd\">\
         <LWM2M><Object><Name>&evil;</Name><ObjectID>1</ObjectID>\
         <MultipleInstances>Single</MultipleInstances></Object></LWM2M>";
    let parameter = "<!DOCTYPE LWM2M [ <!ENTITY % p SYSTEM \"file:///etc/passwd\"> %p; ]>\
         <LWM2M><Object><Name>&q;</Name><ObjectID>1</ObjectID>\
         <MultipleInstances>Single</MultipleInstances></Object></LWM2M>";
    let in_attribute = "<!DOCTYPE LWM2M [ <!ENTITY e \"5\"> ]>\
         <LWM2M><Object><Name>x</Name><ObjectID>1</ObjectID>\
         <MultipleInstances>Single</MultipleInstances><Resources><Item ID=\"&e;\">\
         <Name>R</Name><MultipleInstances>Single</MultipleInstances></Item></Resources>\
         </Object></LWM2M>";
    let mut laughs = String::from("<!DOCTYPE LWM2M [ <!ENTITY l0 \"lol\">");
    for i in 1..10 {
        let prev = format!("&l{};", i - 1).repeat(10);
        laughs.push_str(&format!("<!ENTITY l{i} \"{prev}\">"));
    }
    laughs.push_str(
        " ]><LWM2M><Object><Name>&l9;</Name><ObjectID>1</ObjectID>\
         <MultipleInstances>Single</MultipleInstances></Object></LWM2M>",
    );
    for (what, xml) in [
        ("internal entity", internal.as_str()),
        ("external entity", external),
        ("external DTD", external_dtd),
        ("parameter entity", parameter),
        ("entity in attribute", in_attribute),
        ("billion laughs", laughs.as_str()),
    ] {
        match ddf::parse(xml) {
            Err(DdfError::Xml(msg)) => assert!(!msg.contains(secret), "{what}: {msg}"),
            Err(other) => panic!("{what}: expected an XML error, got {other:?}"),
            Ok(models) => panic!(
                "{what}: parsed, names {:?}",
                models.iter().map(|m| &m.name).collect::<Vec<_>>()
            ),
        }
    }
}

#[test]
fn every_truncation_of_a_bundled_file_is_handled() {
    let (_, xml) = CORE_DDF
        .iter()
        .find(|(n, _)| *n == "1-1_2.xml")
        .expect("bundled");
    let cuts: Vec<usize> = (0..xml.len())
        .filter(|&i| xml.is_char_boundary(i))
        .collect();
    for &cut in cuts.iter().step_by(3) {
        // Only the complete document is valid: a cut inside the root never parses.
        if let Ok(models) = ddf::parse(&xml[..cut]) {
            panic!("truncated at {cut} parsed as {} object(s)", models.len());
        }
    }
    assert!(ddf::parse(xml).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,400}") {
        let _ = ddf::parse(&s);
    }

    #[test]
    fn xmlish_text_never_panics(s in "[<>/=\"'!?&;# a-zA-Z0-9\\[\\]-]{0,300}") {
        let _ = ddf::parse(&s);
    }

    #[test]
    fn mutated_ddf_never_panics(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<char>()), 1..8),
    ) {
        let mut chars: Vec<char> = TEST_OBJECT.chars().collect();
        for (at, c) in edits {
            let i = at.index(chars.len());
            if c.is_ascii_digit() {
                chars.remove(i);
            } else {
                chars[i] = c;
            }
        }
        let mutated: String = chars.into_iter().collect();
        let _ = ddf::parse(&mutated);
    }
}
