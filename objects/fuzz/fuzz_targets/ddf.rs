//! OMA DDF XML from operators and plugins: any bytes must give models or a `DdfError`.
#![no_main]

use steward_objects::ddf;
use steward_objects::{ModelRegistry, Models, Version};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // DDF files are read as UTF-8 text; lossy decoding also lets non-UTF-8 inputs reach
    // the XML layer instead of being skipped.
    let xml = String::from_utf8_lossy(data);
    let Ok(models) = ddf::parse(&xml) else {
        return;
    };
    assert!(!models.is_empty(), "Ok with no object");
    let mut reg = ModelRegistry::new();
    for m in &models {
        assert_ne!(m.id, u16::MAX, "reserved object ID accepted");
        for (rid, r) in &m.resources {
            assert_eq!(*rid, r.id, "resource keyed under the wrong ID");
            assert_ne!(*rid, u16::MAX, "reserved resource ID accepted");
        }
        reg.insert(m.clone());
    }
    // Whatever parsed must be usable through the registry and a client view.
    let announced: Vec<(u16, Option<Version>)> =
        models.iter().map(|m| (m.id, Some(m.version))).collect();
    let client = reg.for_client(&announced);
    for m in &models {
        // A later object with the same ID and version replaces an earlier one, so compare
        // against what the view chose, not against `m`.
        let seen = client.object(m.id).expect("announced object has a model");
        assert_eq!(seen.id, m.id);
        for (rid, r) in &seen.resources {
            assert_eq!(client.resource(m.id, *rid), Some(r));
        }
    }
});
