//! Device management on a simulated device: every operation through `device::handle`,
//! answers decoded with the steward-objects codecs.

use steward_client::{Device, DeviceConfig, Effect, handle};
use steward_coap::message::{Code, Method, Request, Response, option};
use steward_objects::link::DiscoverAnswer;
use steward_objects::{ContentFormat, Node, Path, Resource, Value, Version, codec};

fn device(lwm2m: Version) -> Device {
    Device::new(DeviceConfig::new("dm-test", lwm2m))
}

fn get(path: &str, accept: Option<ContentFormat>) -> Request {
    let mut r = Request::new(Method::Get).with_path(path);
    if let Some(f) = accept {
        r = r.with_option(option::ACCEPT, codec_uint(f.code()));
    }
    r
}

fn codec_uint(v: u16) -> Vec<u8> {
    steward_coap::message::encode_uint(u32::from(v))
}

fn content_format(r: &Response) -> Option<ContentFormat> {
    r.options
        .content_format()
        .and_then(ContentFormat::from_code)
}

/// Reads `path` and decodes the answer with the format it says it is in.
fn read(device: &mut Device, path: &str, accept: Option<ContentFormat>) -> (ContentFormat, Node) {
    let response = handle(device, &get(path, accept));
    assert_eq!(response.code, Code::CONTENT, "{path}: {response:?}");
    let format = content_format(&response).expect("a Content-Format");
    let p: Path = path.parse().expect("a path");
    let node = codec::decode(format, &p, &response.payload, device.models()).expect("decodes");
    (format, node)
}

#[test]
fn read_device_object_in_every_announced_format() {
    use ContentFormat as F;
    for (lwm2m, format) in [
        (Version::V1_0, F::Tlv),
        (Version::V1_1, F::Tlv),
        (Version::V1_1, F::SenmlJson),
        (Version::V1_1, F::SenmlCbor),
        (Version::V1_2, F::SenmlCbor),
        (Version::V1_2, F::Lwm2mCbor),
    ] {
        let mut d = device(lwm2m);
        let (got, node) = read(&mut d, "/3/0", Some(format));
        assert_eq!(got, format);
        assert_eq!(
            Some(node),
            d.node(&Path::Instance(3, 0)),
            "{lwm2m} {format}"
        );
    }
}

#[test]
fn read_without_accept_uses_the_shared_choice() {
    assert_eq!(
        read(&mut device(Version::V1_0), "/3/0", None).0,
        ContentFormat::Tlv
    );
    assert_eq!(
        read(&mut device(Version::V1_1), "/3/0", None).0,
        ContentFormat::SenmlCbor
    );
    assert_eq!(
        read(&mut device(Version::V1_2), "/3/0", None).0,
        ContentFormat::Lwm2mCbor
    );
}

#[test]
fn read_single_resource_as_text() {
    let mut d = device(Version::V1_1);
    let response = handle(&mut d, &get("/3/0/9", None));
    assert_eq!(response.code, Code::CONTENT);
    assert_eq!(content_format(&response), Some(ContentFormat::Text));
    assert_eq!(response.payload, b"100");
    let (_, node) = read(&mut d, "/3/0/0", Some(ContentFormat::Text));
    assert_eq!(
        node,
        Node::Resource(Resource::Single(Value::String("Steward".into())))
    );
    // A multiple resource instance is a single value too.
    let (_, node) = read(&mut d, "/3/0/11/0", Some(ContentFormat::Text));
    assert_eq!(node, Node::ResourceInstance(Value::Integer(0)));
}

#[test]
fn write_then_read_back() {
    let mut d = device(Version::V1_1);
    let put = Request::new(Method::Put)
        .with_path("/3/0/13")
        .with_payload(ContentFormat::Text.code(), b"1700000000".to_vec());
    assert_eq!(handle(&mut d, &put).code, Code::CHANGED);
    let (_, node) = read(&mut d, "/3/0/13", None);
    assert_eq!(
        node,
        Node::Resource(Resource::Single(Value::Time(1_700_000_000)))
    );

    // Partial update of the Server instance in SenML JSON: lifetime changes, the rest stays.
    let body = br#"[{"bn":"/1/0/","n":"1","v":120}]"#.to_vec();
    let post = Request::new(Method::Post)
        .with_path("/1/0")
        .with_payload(ContentFormat::SenmlJson.code(), body);
    assert_eq!(handle(&mut d, &post).code, Code::CHANGED);
    assert_eq!(d.lifetime(), 120);
    assert_eq!(
        d.take_effects(),
        vec![Effect::RegistrationParametersChanged]
    );
    let (_, node) = read(&mut d, "/1/0/7", None);
    assert_eq!(
        node,
        Node::Resource(Resource::Single(Value::String("U".into())))
    );
}

#[test]
fn write_to_read_only_is_refused() {
    let mut d = device(Version::V1_1);
    let put = Request::new(Method::Put)
        .with_path("/3/0/0")
        .with_payload(ContentFormat::Text.code(), b"Evil".to_vec());
    assert_eq!(handle(&mut d, &put).code, Code::METHOD_NOT_ALLOWED);
    let (_, node) = read(&mut d, "/3/0/0", None);
    assert_eq!(
        node,
        Node::Resource(Resource::Single(Value::String("Steward".into())))
    );
    // The Short Server ID is read-only too, also inside an instance payload.
    let body = br#"[{"bn":"/1/0/","n":"0","v":7}]"#.to_vec();
    let put = Request::new(Method::Put)
        .with_path("/1/0")
        .with_payload(ContentFormat::SenmlJson.code(), body);
    assert_eq!(handle(&mut d, &put).code, Code::METHOD_NOT_ALLOWED);
}

#[test]
fn execute_queues_effects() {
    let mut d = device(Version::V1_1);
    let reboot = Request::new(Method::Post).with_path("/3/0/4");
    assert_eq!(handle(&mut d, &reboot).code, Code::CHANGED);
    let trigger = Request::new(Method::Post).with_path("/1/0/8");
    assert_eq!(handle(&mut d, &trigger).code, Code::CHANGED);
    assert_eq!(
        d.take_effects(),
        vec![Effect::Reboot, Effect::RegistrationUpdate]
    );
    // Executing a readable resource is not allowed; reading an executable one neither.
    let post = Request::new(Method::Post).with_path("/3/0/9");
    assert_eq!(handle(&mut d, &post).code, Code::METHOD_NOT_ALLOWED);
    assert_eq!(
        handle(&mut d, &get("/3/0/4", None)).code,
        Code::METHOD_NOT_ALLOWED
    );
    let bad_args = Request::new(Method::Post)
        .with_path("/3/0/4")
        .with_payload(0, b"x=1".to_vec());
    assert_eq!(handle(&mut d, &bad_args).code, Code::BAD_REQUEST);
}

#[test]
fn discover_lists_resources_with_attributes() {
    let mut d = device(Version::V1_1);
    let wa = Request::new(Method::Put)
        .with_path("/3/0/9")
        .with_query("pmin=10")
        .with_query("gt=50");
    assert_eq!(handle(&mut d, &wa).code, Code::CHANGED);
    let response = handle(&mut d, &get("/3/0", Some(ContentFormat::LinkFormat)));
    assert_eq!(response.code, Code::CONTENT);
    assert_eq!(content_format(&response), Some(ContentFormat::LinkFormat));
    let answer = DiscoverAnswer::parse(&response.payload).expect("parses");
    assert!(answer.get(&Path::Instance(3, 0)).is_some());
    assert!(
        answer.get(&Path::Resource(3, 0, 4)).is_some(),
        "executables are listed"
    );
    let errors = answer.get(&Path::Resource(3, 0, 11)).expect("/3/0/11");
    assert_eq!(errors.properties.dim, Some(1));
    let battery = answer.get(&Path::Resource(3, 0, 9)).expect("/3/0/9");
    assert_eq!(battery.attributes.pmin.value(), Some(10));
    assert_eq!(battery.attributes.gt.value(), Some(50.0));

    let response = handle(&mut d, &get("/3", Some(ContentFormat::LinkFormat)));
    let answer = DiscoverAnswer::parse(&response.payload).expect("parses");
    assert_eq!(
        answer.get(&Path::Object(3)).and_then(|l| l.properties.ver),
        Some(Version::V1_1)
    );
    // Thresholds need a numeric resource; lt ≥ gt is inconsistent.
    let bad = Request::new(Method::Put)
        .with_path("/3/0/0")
        .with_query("gt=1");
    assert_eq!(handle(&mut d, &bad).code, Code::BAD_REQUEST);
    let bad = Request::new(Method::Put)
        .with_path("/3/0/9")
        .with_query("lt=60");
    assert_eq!(handle(&mut d, &bad).code, Code::BAD_REQUEST);
}

#[test]
fn create_and_delete_server_instance() {
    let mut d = device(Version::V1_1);
    let body = br#"[{"bn":"/1/1/","n":"0","v":2},{"n":"1","v":60},{"n":"6","vb":false},{"n":"7","vs":"U"}]"#;
    let create = Request::new(Method::Post)
        .with_path("/1")
        .with_payload(ContentFormat::SenmlJson.code(), body.to_vec());
    assert_eq!(handle(&mut d, &create).code, Code::CREATED);
    assert!(d.object_links().has_instance(1, 1));
    assert_eq!(
        handle(&mut d, &create).code,
        Code::BAD_REQUEST,
        "exists already"
    );
    let delete = Request::new(Method::Delete).with_path("/1/1");
    assert_eq!(handle(&mut d, &delete).code, Code::DELETED);
    assert_eq!(handle(&mut d, &delete).code, Code::NOT_FOUND);
    assert_eq!(
        d.take_effects(),
        vec![Effect::ObjectsChanged, Effect::ObjectsChanged]
    );
    // The Device object is single-instance: no Create, no Delete.
    let delete = Request::new(Method::Delete).with_path("/3/0");
    assert_eq!(handle(&mut d, &delete).code, Code::METHOD_NOT_ALLOWED);
}

#[test]
fn create_without_instance_id_gets_a_location() {
    let mut d = device(Version::V1_0);
    // TLV resources without an instance wrapper: SSID 2, lifetime 60, storing false, "U".
    let body = vec![
        0xC1, 0x00, 0x02, 0xC1, 0x01, 0x3C, 0xC1, 0x06, 0x00, 0xC1, 0x07, b'U',
    ];
    let create = Request::new(Method::Post)
        .with_path("/1")
        .with_payload(ContentFormat::Tlv.code(), body);
    let response = handle(&mut d, &create);
    assert_eq!(response.code, Code::CREATED, "{response:?}");
    let location: Vec<&[u8]> = response.options.get_all(option::LOCATION_PATH).collect();
    assert_eq!(location, vec![&b"1"[..], &b"1"[..]]);
}

#[test]
fn error_paths() {
    use ContentFormat as F;
    let mut d = device(Version::V1_1);
    for path in ["/3/1", "/9", "/3/0/99", "/rd", "/3/0/11/5"] {
        assert_eq!(
            handle(&mut d, &get(path, None)).code,
            Code::NOT_FOUND,
            "{path}"
        );
    }
    // LwM2M CBOR is 1.2: a 1.1 device cannot answer in it, nor read it.
    assert_eq!(
        handle(&mut d, &get("/3/0", Some(F::Lwm2mCbor))).code,
        Code::NOT_ACCEPTABLE
    );
    // Text cannot carry an instance.
    assert_eq!(
        handle(&mut d, &get("/3/0", Some(F::Text))).code,
        Code::NOT_ACCEPTABLE
    );
    let put = Request::new(Method::Put)
        .with_path("/3/0/13")
        .with_payload(F::Lwm2mCbor.code(), vec![0xA0]);
    assert_eq!(handle(&mut d, &put).code, Code::UNSUPPORTED_CONTENT_FORMAT);
    let put = Request::new(Method::Put)
        .with_path("/3/0/13")
        .with_payload(F::Text.code(), b"not a time".to_vec());
    assert_eq!(handle(&mut d, &put).code, Code::BAD_REQUEST);
    let put = Request::new(Method::Put)
        .with_path("/3/0")
        .with_payload(F::Tlv.code(), vec![0xC8]);
    assert_eq!(handle(&mut d, &put).code, Code::BAD_REQUEST);
    // The Security object is for the bootstrap server only.
    assert_eq!(handle(&mut d, &get("/0/0", None)).code, Code::UNAUTHORIZED);
    // Object-level Write does not exist on CoAP.
    let put = Request::new(Method::Put)
        .with_path("/3")
        .with_payload(F::Tlv.code(), vec![]);
    assert_eq!(handle(&mut d, &put).code, Code::METHOD_NOT_ALLOWED);
}

#[test]
fn read_and_write_composite() {
    use ContentFormat as F;
    let mut d = device(Version::V1_1);
    let paths = [
        Path::Resource(3, 0, 9),
        Path::Instance(1, 0),
        Path::Resource(3, 0, 77),
    ];
    let body = codec::encode_paths(F::SenmlJson, &paths).expect("encodes");
    let fetch = Request::new(Method::Fetch)
        .with_path("/")
        .with_payload(F::SenmlJson.code(), body);
    let response = handle(&mut d, &fetch);
    assert_eq!(response.code, Code::CONTENT, "{response:?}");
    let nodes = codec::decode_nodes(F::SenmlJson, &response.payload, Some(&paths), d.models())
        .expect("decodes");
    assert_eq!(nodes.get(&paths[0]), d.node(&paths[0]).as_ref());
    assert_eq!(nodes.get(&paths[1]), d.node(&paths[1]).as_ref());
    assert!(!nodes.contains_key(&paths[2]));

    let write = br#"[{"n":"/3/0/13","v":42},{"n":"/1/0/1","v":600}]"#.to_vec();
    let ipatch = Request::new(Method::IPatch)
        .with_path("/")
        .with_payload(F::SenmlJson.code(), write);
    assert_eq!(handle(&mut d, &ipatch).code, Code::CHANGED);
    assert_eq!(d.lifetime(), 600);
    // 1.0 devices do not know composite operations.
    let mut old = device(Version::V1_0);
    assert_eq!(handle(&mut old, &fetch).code, Code::METHOD_NOT_ALLOWED);
}

#[test]
fn registration_payload_announces_formats_and_versions() {
    let links = device(Version::V1_2).object_links();
    let text = links.to_string();
    assert!(text.starts_with("</>;rt=\"oma.lwm2m\";ct="), "{text}");
    assert!(links.content_formats().contains(&ContentFormat::Lwm2mCbor));
    assert!(!links.supports(0), "Security is never announced");
    assert!(links.has_instance(3, 0) && links.has_instance(1, 0) && links.has_instance(4, 0));
    assert!(links.has_instance(5, 0), "Firmware Update is announced");
    assert!(text.contains("</5>;ver=1.2"), "{text}");
    let v10 = device(Version::V1_0).object_links();
    assert!(v10.root.is_none());
    assert_eq!(v10.to_string(), "</1/0>,</3/0>,</4/0>,</5/0>");
}
