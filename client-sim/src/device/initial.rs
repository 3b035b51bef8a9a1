//! The object tree a simulated device starts with: one Security and one Server account for the
//! configured server, a Device and a Connectivity Monitoring instance with plausible values,
//! and the configured instances of its extra objects.
//!
//! Values are typed by the device's models and resources a version does not define are left
//! out, so a 1.0 device never carries a resource its 1.0 model cannot type.

use std::collections::BTreeMap;

use steward_objects::{DataType, Instance, Models, Resource, Value, Version};

use super::DeviceConfig;
use super::models::{DeviceModels, is_core_object};

/// object → instance → resources.
pub type Tree = BTreeMap<u16, BTreeMap<u16, Instance>>;

pub fn tree(config: &DeviceConfig, models: &DeviceModels) -> Tree {
    let mut tree = Tree::new();
    // A device made with a bootstrap server holds only that account: it has no LwM2M server
    // until the bootstrap server configures one.
    let (security, server) = match &config.bootstrap {
        Some(bs) => (bootstrap_security(bs), None),
        None => (security(config), Some(server(config))),
    };
    for (object, resources) in [
        (0, Some(security)),
        (1, server),
        (3, Some(device(config))),
        (4, Some(connectivity())),
        (
            5,
            Some(crate::firmware::initial_resources(
                &config.firmware,
                config.clock,
            )),
        ),
    ] {
        let Some(resources) = resources else {
            tree.entry(object).or_default();
            continue;
        };
        let instance = Instance {
            resources: resources
                .into_iter()
                // Keep only what this version's model defines, typed as it says (Lifetime
                // is an Integer in Server 1.0/1.1 and an Unsigned Integer in 1.2).
                .filter_map(|(rid, res)| {
                    let data_type = models.resource(object, rid)?.data_type;
                    Some((rid, typed(res, data_type)))
                })
                .collect(),
        };
        tree.entry(object).or_default().insert(0, instance);
    }
    // An extra object is in the tree even without instances: it exists (Discover, Create).
    for extra in &config.extra_objects {
        let object = extra.id();
        if is_core_object(object) {
            continue;
        }
        let instances = extra
            .instances
            .iter()
            .map(|(iid, inst)| {
                let resources = inst
                    .resources
                    .iter()
                    .filter_map(|(rid, res)| {
                        let data_type = models.resource(object, *rid)?.data_type;
                        Some((*rid, typed(res.clone(), data_type)))
                    })
                    .collect();
                (*iid, Instance { resources })
            })
            .collect();
        tree.insert(object, instances);
    }
    tree
}

/// The binding string of `/1/x/7`: 1.0 puts queue mode into it (`UQ`), 1.1+ has a separate
/// `Q` registration parameter and a plain `U` here.
pub fn binding(lwm2m: Version, queue_mode: bool) -> &'static str {
    if queue_mode && lwm2m < Version::V1_1 {
        "UQ"
    } else {
        "U"
    }
}

pub(super) fn typed(resource: Resource, data_type: DataType) -> Resource {
    let coerce = |v: Value| v.clone().coerce(data_type).unwrap_or(v);
    match resource {
        Resource::Single(v) => Resource::Single(coerce(v)),
        Resource::Multiple(values) => {
            Resource::Multiple(values.into_iter().map(|(i, v)| (i, coerce(v))).collect())
        }
    }
}

fn single(rid: u16, v: Value) -> (u16, Resource) {
    (rid, Resource::Single(v))
}

fn multiple(rid: u16, values: impl IntoIterator<Item = Value>) -> (u16, Resource) {
    let values = (0u16..).zip(values).collect();
    (rid, Resource::Multiple(values))
}

fn security(config: &DeviceConfig) -> Vec<(u16, Resource)> {
    vec![
        single(0, Value::String(config.server_uri.clone())),
        single(1, Value::Boolean(false)),
        // 3 = NoSec: PSK and certificates come with the DTLS work.
        single(2, Value::Integer(3)),
        single(3, Value::Opaque(Vec::new())),
        single(4, Value::Opaque(Vec::new())),
        single(5, Value::Opaque(Vec::new())),
        single(10, Value::Integer(i64::from(config.short_server_id))),
    ]
}

fn bootstrap_security(bs: &super::BootstrapServer) -> Vec<(u16, Resource)> {
    let mut resources = vec![
        single(0, Value::String(bs.uri.clone())),
        single(1, Value::Boolean(true)),
        // Client Hold Off Time: bootstrap at once.
        single(11, Value::Integer(0)),
    ];
    resources.extend(bs.security.resources());
    resources
}

fn server(config: &DeviceConfig) -> Vec<(u16, Resource)> {
    vec![
        single(0, Value::Integer(i64::from(config.short_server_id))),
        single(1, Value::Integer(i64::from(config.lifetime))),
        single(2, Value::Integer(0)),
        single(3, Value::Integer(60)),
        single(6, Value::Boolean(false)),
        single(
            7,
            Value::String(binding(config.lwm2m, config.queue_mode).to_owned()),
        ),
        // Send works (1.1+; the 1.0 model has no resource 23 and drops it).
        single(23, Value::Boolean(false)),
    ]
}

fn device(config: &DeviceConfig) -> Vec<(u16, Resource)> {
    let text = |s: &str| Value::String(s.to_owned());
    vec![
        single(0, text("Steward")),
        single(1, text("steward-client-sim")),
        single(2, Value::String(config.serial.clone())),
        single(3, text("1.0.0")),
        // Internal battery (1) and USB (5).
        multiple(6, [Value::Integer(1), Value::Integer(5)]),
        multiple(7, [Value::Integer(3800), Value::Integer(5000)]),
        multiple(8, [Value::Integer(125), Value::Integer(900)]),
        single(9, Value::Integer(100)),
        single(10, Value::Integer(512)),
        multiple(11, [Value::Integer(0)]),
        single(13, Value::Time(config.clock)),
        single(14, text("+00:00")),
        single(15, text("Etc/UTC")),
        single(
            16,
            text(if config.lwm2m < Version::V1_1 {
                "UQ"
            } else {
                "U"
            }),
        ),
        single(17, text("simulator")),
        single(18, text("1.0")),
        single(
            19,
            text(concat!("steward-client ", env!("CARGO_PKG_VERSION"))),
        ),
        single(20, Value::Integer(0)),
        single(21, Value::Integer(1024)),
    ]
}

fn connectivity() -> Vec<(u16, Resource)> {
    let text = |s: &str| Value::String(s.to_owned());
    vec![
        // 41 = Ethernet: the simulator runs on a wired loopback, not a radio.
        single(0, Value::Integer(41)),
        multiple(1, [Value::Integer(41)]),
        single(2, Value::Integer(-60)),
        single(3, Value::Integer(100)),
        multiple(4, [text("127.0.0.1")]),
        multiple(5, [text("127.0.0.1")]),
        single(6, Value::Integer(0)),
    ]
}
