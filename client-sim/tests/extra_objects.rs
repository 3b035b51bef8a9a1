//! Extra objects given as DDF models (a server plugin's object): announced at registration,
//! reached by every generic operation, Execute recorded as an effect, kept in the state file.
//! The object is the example plugin's 42799 "Example Counter" (`tests/data`): 0 Counter
//! (Integer, R), 1 Label (String, RW), 2 Increment (E), 3 Secret (Opaque, W).

#![allow(clippy::unwrap_used)]

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use common::{Setup, observe};
use steward_client::state::{CredentialPaths, DeviceState};
use steward_client::{
    Device, DeviceConfig, DeviceEvent, Effect, ExtraObject, ExtraObjectError, SimDevice, handle,
    harness,
};
use steward_coap::message::{Code, Method, Request, Response, encode_uint, option};
use steward_coap::sim::{Link, Pair, Side};
use steward_objects::{ContentFormat, Instance, Node, Path, Resource, Value, Version, codec};

const COUNTER_DDF: &str = include_str!("data/example-counter-42799.xml");
const COUNTER: Path = Path::Resource(42799, 0, 0);
const LABEL: Path = Path::Resource(42799, 0, 1);
const INCREMENT: Path = Path::Resource(42799, 0, 2);

/// The counter object with instance 0 holding Counter 7 and Label "start".
fn counter_object() -> ExtraObject {
    let mut objects = ExtraObject::from_ddf(COUNTER_DDF).unwrap();
    assert_eq!(objects.len(), 1);
    let instance = Instance {
        resources: BTreeMap::from([
            (0, Resource::Single(Value::Integer(7))),
            (1, Resource::Single(Value::String("start".into()))),
        ]),
    };
    objects.remove(0).with_instance(0, instance)
}

fn config(endpoint: &str, lwm2m: Version) -> DeviceConfig {
    let mut config = DeviceConfig::new(endpoint, lwm2m);
    config.extra_objects = vec![counter_object()];
    config
}

fn device(lwm2m: Version) -> Device {
    Device::new(config("extra", lwm2m))
}

fn text(method: Method, path: &str, body: &str) -> Request {
    Request::new(method)
        .with_path(path)
        .with_payload(ContentFormat::Text.code(), body.as_bytes().to_vec())
}

fn read_text(device: &mut Device, path: &str) -> Response {
    let accept = encode_uint(u32::from(ContentFormat::Text.code()));
    handle(
        device,
        &Request::new(Method::Get)
            .with_path(path)
            .with_option(option::ACCEPT, accept),
    )
}

#[test]
fn ddf_makes_extra_objects_and_refuses_core_ones() {
    let objects = ExtraObject::from_ddf(COUNTER_DDF).unwrap();
    assert_eq!(objects[0].id(), 42799);
    assert_eq!(objects[0].model.name, "Example Counter");
    assert!(objects[0].instances.is_empty());
    let device_ddf = COUNTER_DDF.replace("<ObjectID>42799<", "<ObjectID>3<");
    assert_eq!(
        ExtraObject::from_ddf(&device_ddf),
        Err(ExtraObjectError::CoreObject(3))
    );
    assert!(matches!(
        ExtraObject::from_ddf("<LWM2M>"),
        Err(ExtraObjectError::Ddf(_))
    ));
}

#[test]
fn models_stay_shared_without_extra_objects() {
    let plain = |name| Device::new(DeviceConfig::new(name, Version::V1_1));
    let (a, b) = (plain("a"), plain("b"));
    assert!(std::ptr::eq(a.models(), b.models()));
    let extra = device(Version::V1_1);
    assert!(!std::ptr::eq(a.models(), extra.models()));
    assert_eq!(
        extra.models().extra_object_ids().collect::<Vec<_>>(),
        [42799]
    );
    assert_eq!(a.models().extra_object_ids().count(), 0);
    // An extra object with a core object's ID is ignored: the device keeps its own /3.
    let mut config = DeviceConfig::new("c", Version::V1_1);
    let mut model = (*counter_object().model).clone();
    model.id = 3;
    config.extra_objects = vec![ExtraObject::new(model)];
    let d = Device::new(config);
    assert!(std::ptr::eq(a.models(), d.models()));
    assert!(d.node(&Path::Resource(3, 0, 0)).is_some());
}

#[test]
fn object_links_announce_extra_objects_and_versions() {
    let links = device(Version::V1_1).object_links();
    assert!(links.has_instance(42799, 0), "{links}");
    assert!(links.to_string().ends_with(",</42799/0>"), "{links}");

    // No instance: the object alone. A version other than 1.0: `ver=`.
    let mut model = (*counter_object().model).clone();
    model.version = Version::V1_1;
    let mut config = DeviceConfig::new("empty", Version::V1_0);
    config.extra_objects = vec![ExtraObject::new(model)];
    let links = Device::new(config).object_links();
    assert_eq!(
        links.to_string(),
        "</1/0>,</3/0>,</4/0>,</5/0>,</42799>;ver=1.1"
    );
}

#[test]
fn read_write_and_read_back() {
    let mut d = device(Version::V1_1);
    let r = read_text(&mut d, "/42799/0/0");
    assert_eq!((r.code, r.payload.as_slice()), (Code::CONTENT, &b"7"[..]));
    assert_eq!(
        handle(&mut d, &text(Method::Put, "/42799/0/1", "kitchen")).code,
        Code::CHANGED
    );
    let r = read_text(&mut d, "/42799/0/1");
    assert_eq!(
        (r.code, r.payload.as_slice()),
        (Code::CONTENT, &b"kitchen"[..])
    );
    // Counter is read-only, Secret write-only.
    assert_eq!(
        handle(&mut d, &text(Method::Put, "/42799/0/0", "8")).code,
        Code::METHOD_NOT_ALLOWED
    );
    let secret = Request::new(Method::Put)
        .with_path("/42799/0/3")
        .with_payload(ContentFormat::Opaque.code(), vec![1, 2, 3]);
    assert_eq!(handle(&mut d, &secret).code, Code::CHANGED);
    assert_eq!(
        d.node(&Path::Resource(42799, 0, 3)),
        Some(Node::Resource(Resource::Single(Value::Opaque(vec![
            1, 2, 3
        ]))))
    );
    assert_eq!(
        read_text(&mut d, "/42799/0/3").code,
        Code::METHOD_NOT_ALLOWED
    );
    // The instance read leaves the secret out.
    let response = handle(&mut d, &Request::new(Method::Get).with_path("/42799/0"));
    assert_eq!(response.code, Code::CONTENT);
    let format = ContentFormat::from_code(response.options.content_format().unwrap()).unwrap();
    let node = codec::decode(
        format,
        &Path::Instance(42799, 0),
        &response.payload,
        d.models(),
    )
    .unwrap();
    let Node::Instance(inst) = node else {
        panic!("an instance: {node:?}")
    };
    assert_eq!(inst.resources.keys().copied().collect::<Vec<_>>(), [0, 1]);
    // A partial update of the instance (SenML JSON).
    let post = Request::new(Method::Post)
        .with_path("/42799/0")
        .with_payload(
            ContentFormat::SenmlJson.code(),
            br#"[{"n":"/42799/0/1","vs":"hall"}]"#.to_vec(),
        );
    assert_eq!(handle(&mut d, &post).code, Code::CHANGED);
    assert_eq!(
        d.node(&LABEL),
        Some(Node::Resource(Resource::Single(Value::String(
            "hall".into()
        ))))
    );
    assert!(d.take_effects().is_empty());
}

#[test]
fn execute_answers_changed_and_records_an_effect() {
    let mut d = device(Version::V1_1);
    let exec = Request::new(Method::Post)
        .with_path("/42799/0/2")
        .with_payload(ContentFormat::Text.code(), b"0='by 2'".to_vec());
    assert_eq!(handle(&mut d, &exec).code, Code::CHANGED);
    assert_eq!(
        d.take_effects(),
        vec![Effect::Executed {
            path: INCREMENT,
            arguments: b"0='by 2'".to_vec(),
        }]
    );
    // The device does nothing else: the counter is the test's to change.
    assert_eq!(
        d.node(&COUNTER),
        Some(Node::Resource(Resource::Single(Value::Integer(7))))
    );
    for (path, code) in [
        ("/42799/9/2", Code::NOT_FOUND),
        ("/42799/0/1", Code::METHOD_NOT_ALLOWED),
    ] {
        let r = handle(&mut d, &Request::new(Method::Post).with_path(path));
        assert_eq!(r.code, code, "{path}");
    }
    let bad = Request::new(Method::Post)
        .with_path("/42799/0/2")
        .with_payload(ContentFormat::Text.code(), b"x".to_vec());
    assert_eq!(handle(&mut d, &bad).code, Code::BAD_REQUEST);
    assert!(d.take_effects().is_empty());
}

#[test]
fn create_and_delete_instances() {
    let mut d = device(Version::V1_1);
    // Without an instance ID (TLV resources, no instance wrapper): the device picks the
    // lowest free one and says which. Label (1) = "second".
    let mut body = vec![0xC6, 0x01];
    body.extend_from_slice(b"second");
    let create = Request::new(Method::Post)
        .with_path("/42799")
        .with_payload(ContentFormat::Tlv.code(), body);
    let response = handle(&mut d, &create);
    assert_eq!(response.code, Code::CREATED, "{response:?}");
    let location: Vec<&[u8]> = response.options.get_all(option::LOCATION_PATH).collect();
    assert_eq!(location, vec![&b"42799"[..], &b"1"[..]]);
    // With one.
    let create = Request::new(Method::Post).with_path("/42799").with_payload(
        ContentFormat::SenmlJson.code(),
        br#"[{"n":"/42799/7/1","vs":"seventh"}]"#.to_vec(),
    );
    let response = handle(&mut d, &create);
    assert_eq!(response.code, Code::CREATED, "{response:?}");
    assert_eq!(response.options.get_all(option::LOCATION_PATH).count(), 0);
    let links = d.object_links();
    assert!(links.has_instance(42799, 1) && links.has_instance(42799, 7));
    assert_eq!(read_text(&mut d, "/42799/7/1").payload, b"seventh".to_vec());
    let delete = Request::new(Method::Delete).with_path("/42799/1");
    assert_eq!(handle(&mut d, &delete).code, Code::DELETED);
    assert_eq!(handle(&mut d, &delete).code, Code::NOT_FOUND);
    assert!(!d.object_links().has_instance(42799, 1));
    assert_eq!(
        d.take_effects(),
        vec![
            Effect::ObjectsChanged,
            Effect::ObjectsChanged,
            Effect::ObjectsChanged
        ]
    );
}

#[test]
fn discover_write_attributes_and_composite() {
    use ContentFormat as F;
    let mut d = device(Version::V1_1);
    let wa = Request::new(Method::Put)
        .with_path("/42799/0/0")
        .with_query("pmin=5")
        .with_query("gt=10");
    assert_eq!(handle(&mut d, &wa).code, Code::CHANGED);
    let discover = Request::new(Method::Get)
        .with_path("/42799")
        .with_option(option::ACCEPT, encode_uint(u32::from(F::LinkFormat.code())));
    let response = handle(&mut d, &discover);
    assert_eq!(response.code, Code::CONTENT);
    let text = String::from_utf8(response.payload).unwrap();
    // Stored values and the executable resource; Secret has no value yet.
    assert!(
        text.starts_with("</42799>,</42799/0>,</42799/0/0>;pmin=5;gt=10,</42799/0/1>,</42799/0/2>"),
        "{text}"
    );
    assert!(!text.contains("</42799/0/3>"), "{text}");

    let paths = [COUNTER, Path::Resource(3, 0, 9)];
    let fetch = Request::new(Method::Fetch).with_path("/").with_payload(
        F::SenmlJson.code(),
        codec::encode_paths(F::SenmlJson, &paths).unwrap(),
    );
    let response = handle(&mut d, &fetch);
    assert_eq!(response.code, Code::CONTENT, "{response:?}");
    let nodes =
        codec::decode_nodes(F::SenmlJson, &response.payload, Some(&paths), d.models()).unwrap();
    assert_eq!(nodes.get(&COUNTER), d.node(&COUNTER).as_ref());

    let ipatch = Request::new(Method::IPatch).with_path("/").with_payload(
        F::SenmlJson.code(),
        br#"[{"n":"/42799/0/1","vs":"patched"}]"#.to_vec(),
    );
    assert_eq!(handle(&mut d, &ipatch).code, Code::CHANGED);
    assert_eq!(
        d.node(&LABEL),
        Some(Node::Resource(Resource::Single(Value::String(
            "patched".into()
        ))))
    );
}

#[test]
fn lwm2m_fallback_and_factory_reset_keep_extra_objects() {
    let mut d = device(Version::V1_2);
    handle(&mut d, &text(Method::Put, "/42799/0/1", "changed"));
    d.set_lwm2m(Version::V1_0);
    assert!(d.object_links().has_instance(42799, 0));
    assert_eq!(read_text(&mut d, "/42799/0/1").payload, b"changed".to_vec());
    d.factory_reset();
    assert_eq!(read_text(&mut d, "/42799/0/1").payload, b"start".to_vec());
}

#[test]
fn state_keeps_extra_object_instances() {
    let mut d = device(Version::V1_1);
    handle(&mut d, &text(Method::Put, "/42799/0/1", "kept"));
    let create = Request::new(Method::Post).with_path("/42799").with_payload(
        ContentFormat::SenmlJson.code(),
        br#"[{"n":"/42799/4/1","vs":"four"}]"#.to_vec(),
    );
    assert_eq!(handle(&mut d, &create).code, Code::CREATED);
    let state = DeviceState::capture(&d, None, CredentialPaths::default());
    assert_eq!(
        state
            .objects
            .get(&42799)
            .map(|i| i.keys().copied().collect::<Vec<_>>()),
        Some(vec![0, 4])
    );
    let json = state.to_json().unwrap();
    let loaded = DeviceState::from_json(&json, FsPath::new("extra.json")).unwrap();

    let mut restarted = device(Version::V1_1);
    loaded.apply(&mut restarted);
    assert_eq!(restarted.instances(42799), d.instances(42799));
    assert_eq!(
        restarted.node(&COUNTER),
        Some(Node::Resource(Resource::Single(Value::Integer(7))))
    );
    // A device made without the object ignores it.
    let mut plain = Device::new(DeviceConfig::new("extra", Version::V1_1));
    loaded.apply(&mut plain);
    assert!(plain.instances(42799).is_none());
    // Without extra objects the file has no "objects".
    let plain_json = DeviceState::capture(&plain, None, CredentialPaths::default())
        .to_json()
        .unwrap();
    assert!(
        !String::from_utf8(plain_json)
            .unwrap()
            .contains("\"objects\"")
    );
}

/// Registers a device on a `Pair` and records the Register / Update payloads.
#[test]
fn register_and_update_carry_the_extra_object_links() {
    let mut pair = Pair::new(Link::perfect(), 3);
    let mut device = SimDevice::new(config("reg", Version::V1_1), Side::Server);
    device.start();
    let payloads: RefCell<Vec<(String, String)>> = RefCell::default();
    let answer = |r: &Request| {
        payloads.borrow_mut().push((
            r.path_string(),
            String::from_utf8_lossy(&r.payload).into_owned(),
        ));
        match r.path_string().as_str() {
            "/rd" => Response::new(Code::CREATED)
                .with_option(option::LOCATION_PATH, b"rd".to_vec())
                .with_option(option::LOCATION_PATH, b"1".to_vec()),
            _ => Response::new(Code::CHANGED),
        }
    };
    harness::run(&mut pair, &mut device, Duration::from_secs(1), answer);
    let register = payloads.borrow()[0].clone();
    assert_eq!(register.0, "/rd");
    assert!(register.1.ends_with(",</42799/0>"), "{register:?}");

    let create = Request::new(Method::Post).with_path("/42799").with_payload(
        ContentFormat::SenmlJson.code(),
        br#"[{"n":"/42799/1/1","vs":"new"}]"#.to_vec(),
    );
    pair.server_request(create, true);
    harness::run(&mut pair, &mut device, Duration::from_secs(1), answer);
    let payloads = payloads.into_inner();
    let update = payloads.iter().find(|(p, _)| p == "/rd/1").unwrap();
    assert!(update.1.ends_with(",</42799/0>,</42799/1>"), "{payloads:?}");
}

#[test]
fn sim_device_reports_executed_and_notifies_changes() {
    let mut s = Setup::registered(config("obs", Version::V1_1));
    let exec = Request::new(Method::Post).with_path("/42799/0/2");
    let response = s.call(exec, Duration::from_secs(5)).unwrap();
    assert_eq!(response.code, Code::CHANGED);
    let events = s.events();
    assert!(
        events.contains(&DeviceEvent::Executed {
            path: INCREMENT,
            arguments: Vec::new(),
        }),
        "{events:?}"
    );

    // Observe the label; a Write changes it and a notification follows.
    let id = s.request(observe("/42799/0/1"));
    s.run(Duration::from_millis(100));
    let first = s.take_responses(id);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].payload, b"start");
    let write = s.call(
        text(Method::Put, "/42799/0/1", "moved"),
        Duration::from_secs(5),
    );
    assert_eq!(write.map(|r| r.code), Some(Code::CHANGED));
    s.run(Duration::from_secs(1));
    let notes = s.take_responses(id);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0].payload, b"moved");
    // The device side changing the counter (what a test does after Increment) notifies too.
    let id = s.request(observe("/42799/0/0"));
    s.run(Duration::from_millis(100));
    assert_eq!(s.take_responses(id).len(), 1);
    assert!(s.device.set(&COUNTER, Value::Integer(8)));
    s.run(Duration::from_secs(1));
    let notes = s.take_responses(id);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0].payload, b"8");
}

#[test]
fn extra_objects_share_their_model() {
    let object = counter_object();
    let configs: Vec<DeviceConfig> = (0..3)
        .map(|i| {
            let mut c = DeviceConfig::new(format!("d{i}"), Version::V1_1);
            c.extra_objects = vec![object.clone()];
            c
        })
        .collect();
    assert!(
        configs
            .iter()
            .all(|c| Arc::ptr_eq(&c.extra_objects[0].model, &object.model))
    );
}

#[test]
fn send_reports_readable_values_only() {
    let mut s = Setup::registered(config("send", Version::V1_1));
    let secret = Request::new(Method::Put)
        .with_path("/42799/0/3")
        .with_payload(ContentFormat::Opaque.code(), vec![9; 4]);
    let answer = s.call(secret, Duration::from_secs(5)).unwrap();
    assert_eq!(answer.code, Code::CHANGED);
    let now = s.pair.now;
    s.device
        .send(now, &mut s.pair.client, &[Path::Instance(42799, 0)])
        .unwrap();
    s.run(Duration::from_secs(1));
    let sent = s.server.sends.pop().unwrap();
    let entries = codec::decode_timestamped(
        ContentFormat::SenmlCbor,
        &sent.payload,
        s.device.device().models(),
    )
    .unwrap();
    // Counter and Label; not the write-only Secret.
    assert_eq!(
        entries[0].nodes.keys().copied().collect::<Vec<_>>(),
        [COUNTER, LABEL]
    );
    let secret = Path::Resource(42799, 0, 3);
    assert_eq!(
        s.device.send(now, &mut s.pair.client, &[secret]),
        Err(steward_client::SendError::NotFound(secret))
    );
}
