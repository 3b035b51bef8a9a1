//! Encode and decode throughput per content format for one Device object instance with 20
//! resources (the shape of a full `/3/0` read), plus single-value formats for one resource.
//!
//! Run: `cargo bench -p steward-objects --bench codecs` (add `-- --quick` for a short run).
//! Prints one line per format as it finishes. Wall-clock figures; compare runs on one machine.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use steward_objects::codec::{decode, encode};
use steward_objects::{
    ContentFormat, Instance, ModelRegistry, Node, ObjLink, Path, Resource, Value,
};

fn device_instance() -> Node {
    let s = |v: &str| Resource::Single(Value::String(v.to_owned()));
    let i = |v: i64| Resource::Single(Value::Integer(v));
    let multi = |vs: &[i64]| {
        Resource::Multiple(
            vs.iter()
                .enumerate()
                .map(|(k, v)| (k as u16, Value::Integer(*v)))
                .collect(),
        )
    };
    let resources: BTreeMap<u16, Resource> = [
        (0, s("Open Mobile Alliance")),
        (1, s("Lightweight M2M Client")),
        (2, s("345000123")),
        (3, s("1.0")),
        (6, multi(&[1, 5])),
        (7, multi(&[3800, 5000])),
        (8, multi(&[125, 900])),
        (9, i(100)),
        (10, i(15)),
        (11, multi(&[0])),
        (13, Resource::Single(Value::Time(1_367_491_215))),
        (14, s("+02:00")),
        (15, s("Europe/Paris")),
        (16, s("U")),
        (17, s("Demo sensor")),
        (18, s("HW 1.2")),
        (19, s("SW 4.5.6")),
        (20, i(1)),
        (21, i(65536)),
        (
            22,
            Resource::Multiple(BTreeMap::from([(0, Value::Objlnk(ObjLink::new(4, 0)))])),
        ),
    ]
    .into_iter()
    .collect();
    Node::Instance(Instance { resources })
}

struct Figures {
    ops_per_sec: f64,
    mib_per_sec: f64,
}

/// Runs `f` repeatedly for about `budget`, returns the rate.
fn measure(budget: Duration, bytes: usize, mut f: impl FnMut()) -> Figures {
    // Warm caches and branch predictors before timing.
    for _ in 0..100 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..64 {
            f();
        }
        n += 64;
    }
    let secs = start.elapsed().as_secs_f64();
    Figures {
        ops_per_sec: n as f64 / secs,
        mib_per_sec: (n as f64 * bytes as f64) / secs / (1024.0 * 1024.0),
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let budget = Duration::from_millis(if quick { 150 } else { 1000 });
    let models = ModelRegistry::core();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "steward-objects codec throughput, {cores} core(s), one thread, {budget:?} per figure"
    );

    let path = Path::Instance(3, 0);
    let node = device_instance();
    let tree_formats = [
        ContentFormat::Tlv,
        ContentFormat::SenmlJson,
        ContentFormat::SenmlCbor,
        ContentFormat::Lwm2mCbor,
        ContentFormat::OmaJson,
    ];
    println!(
        "{:<28} {:>6} {:>14} {:>10} {:>14} {:>10}",
        "format (/3/0, 20 resources)", "bytes", "encode ops/s", "MiB/s", "decode ops/s", "MiB/s"
    );
    for format in tree_formats {
        report(format, &path, &node, &models, budget);
    }

    println!();
    let single = Path::Resource(3, 0, 0);
    let value = Node::Resource(Resource::Single(Value::String(
        "Open Mobile Alliance".into(),
    )));
    for format in [ContentFormat::Text, ContentFormat::Cbor, ContentFormat::Tlv] {
        report(format, &single, &value, &models, budget);
    }
}

fn report(
    format: ContentFormat,
    path: &Path,
    node: &Node,
    models: &ModelRegistry,
    budget: Duration,
) {
    let name = format!("{} {}", format.leshan_name(), path);
    let payload = match encode(format, path, node) {
        Ok(p) => p,
        Err(e) => {
            println!("{name:<28} encode failed: {e}");
            return;
        }
    };
    match decode(format, path, &payload, models) {
        Ok(back) if back == *node => {}
        Ok(_) => {
            println!("{name:<28} decode gave a different node; not timed");
            return;
        }
        Err(e) => {
            println!("{name:<28} decode failed: {e}");
            return;
        }
    }
    let enc = measure(budget, payload.len(), || {
        let _ = black_box(encode(format, black_box(path), black_box(node)));
    });
    let dec = measure(budget, payload.len(), || {
        let _ = black_box(decode(format, black_box(path), black_box(&payload), models));
    });
    println!(
        "{:<28} {:>6} {:>14.0} {:>10.1} {:>14.0} {:>10.1}",
        name,
        payload.len(),
        enc.ops_per_sec,
        enc.mib_per_sec,
        dec.ops_per_sec,
        dec.mib_per_sec
    );
}
