//! CoRE link format: spec vectors (tests/vectors/link/, sources in its README.md), round-trip
//! properties for every payload kind, and hostile input.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use proptest::prelude::*;
use steward_objects::format::ContentFormat;
use steward_objects::link::{
    self, AnnouncedObject, Attr, AttributeError, DiscoverAnswer, DiscoverLink, Link, LinkError,
    NotificationAttributes, ObjectLinks, ParamValue, Properties, RootLink, SyntaxError,
};
use steward_objects::model::{ModelRegistry, Version};
use steward_objects::path::Path;

fn vector(name: &str) -> Vec<u8> {
    let file: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests/vectors/link", name]
        .iter()
        .collect();
    fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

fn paths(answer: &DiscoverAnswer) -> Vec<String> {
    answer.links.iter().map(|l| l.path.to_string()).collect()
}

fn p(s: &str) -> Path {
    s.parse().expect("test path")
}

// ---------------------------------------------------------------------------------------------
// RFC 6690 vectors

#[test]
fn rfc6690_examples_parse_and_round_trip() {
    for name in [
        "rfc6690/s5_interfaces.link",
        "rfc6690/s5_hierarchy_index.link",
        "rfc6690/s5_hierarchy_sensors.link",
        "rfc6690/s5_anchor.link",
        "rfc6690/s5_1_filtered.link",
    ] {
        let links = link::parse(&vector(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!links.is_empty(), "{name}");
        let again = link::parse(link::format(&links).as_bytes()).expect("formatted output parses");
        assert_eq!(again, links, "{name}");
    }
}

#[test]
fn rfc6690_anchor_example_content() {
    let links = link::parse(&vector("rfc6690/s5_anchor.link")).expect("parses");
    let targets: Vec<&str> = links.iter().map(|l| l.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            "/sensors",
            "/sensors/temp",
            "/sensors/light",
            "http://www.example.com/sensors/t123",
            "/t"
        ]
    );
    assert_eq!(links[0].param("ct"), Some(Some(&ParamValue::token("40"))));
    assert_eq!(links[0].param_str("title"), Some("Sensor Index"));
    assert_eq!(links[1].param_str("rt"), Some("temperature-c"));
    assert_eq!(links[3].param_str("anchor"), Some("/sensors/temp"));
    assert_eq!(links[3].param_str("rel"), Some("describedby"));
    assert_eq!(links[4].param_str("rel"), Some("alternate"));
    assert_eq!(
        link::format(&links[..2]),
        r#"</sensors>;ct=40;title="Sensor Index",</sensors/temp>;rt="temperature-c";if="sensor""#
    );
}

#[test]
fn rfc6690_interfaces_example_content() {
    let links = link::parse(&vector("rfc6690/s5_interfaces.link")).expect("parses");
    assert_eq!(
        links,
        vec![
            Link::new("/sensors/temp").with("if", Some(ParamValue::quoted("sensor"))),
            Link::new("/sensors/light").with("if", Some(ParamValue::quoted("sensor"))),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Registration vectors

#[test]
fn register_objects_only() {
    let reg = ObjectLinks::parse(&vector("register/core11_5_3_1_objects.link")).expect("parses");
    assert_eq!(reg.root, None);
    assert_eq!(reg.alternate_path(), "/");
    assert_eq!(
        reg.announced_versions(),
        vec![(1, None), (2, None), (3, None), (4, None), (5, None)]
    );
    assert!(reg.object_instances().is_empty());
    assert_eq!(reg.to_string(), "</1>,</2>,</3>,</4>,</5>");
}

#[test]
fn register_objects_and_instances() {
    let reg = ObjectLinks::parse(&vector("register/core11_5_3_1_instances.link")).expect("parses");
    let instances: Vec<String> = reg.object_instances().iter().map(Path::to_string).collect();
    assert_eq!(
        instances,
        [
            "/1/0", "/1/1", "/2/0", "/2/1", "/2/2", "/2/3", "/2/4", "/3/0", "/4/0"
        ]
    );
    assert!(reg.supports(5) && !reg.has_instance(5, 0));
    assert_eq!(
        reg.to_string(),
        "</1/0>,</1/1>,</2/0>,</2/1>,</2/2>,</2/3>,</2/4>,</3/0>,</4/0>,</5>"
    );
}

#[test]
fn register_lwm2m_1_0_root_link_with_ct() {
    let reg = ObjectLinks::parse(&vector("register/core11_5_3_1_root_ct.link")).expect("parses");
    assert_eq!(reg.alternate_path(), "/");
    assert_eq!(reg.content_formats(), vec![ContentFormat::OmaJson]);
    assert_eq!(reg.object_instances().len(), 9);
}

#[test]
fn register_alternate_path() {
    let reg =
        ObjectLinks::parse(&vector("register/transport_alternate_path.link")).expect("parses");
    assert_eq!(reg.alternate_path(), "/lwm2m");
    assert!(reg.content_formats().is_empty());
    assert!(reg.has_instance(3, 0) && reg.has_instance(2, 4) && reg.supports(5));
    assert_eq!(reg.client_path(&p("/3/0/0")), "/lwm2m/3/0/0");
    let printed = vector("register/transport_alternate_path_as_printed.link");
    assert!(matches!(
        ObjectLinks::parse(&printed),
        Err(LinkError::Syntax {
            problem: SyntaxError::BadTargetChar,
            ..
        })
    ));
}

#[test]
fn register_1_2_root_link() {
    let reg = ObjectLinks::parse(&vector("register/core12_root_ct.link")).expect("parses");
    assert_eq!(reg.content_formats(), vec![ContentFormat::SenmlJson]);
    assert_eq!(
        reg.announced_versions(),
        vec![(1, None), (3, Some(Version::V1_1)), (5, None)]
    );
    assert_eq!(
        reg.to_string(),
        r#"</>;rt="oma.lwm2m";ct=110,</1/0>,</3>;ver=1.1,</3/0>,</5/0>"#
    );

    let list = ObjectLinks::parse(&vector("register/core12_root_ct_list.link")).expect("parses");
    assert_eq!(
        list.content_formats(),
        vec![
            ContentFormat::SenmlJson,
            ContentFormat::SenmlCbor,
            ContentFormat::Cbor
        ]
    );
    assert_eq!(
        list.to_string(),
        String::from_utf8(vector("register/core12_root_ct_list.link")).expect("UTF-8")
    );
}

#[test]
fn announced_versions_feed_the_model_registry() {
    let reg = ObjectLinks::parse(&vector("register/core12_root_ct.link")).expect("parses");
    // Whatever models are bundled, every announced object must be accepted without panic and
    // unknown ones silently left out.
    let registry = ModelRegistry::core();
    let _models = registry.for_client(&reg.announced_versions());
}

// ---------------------------------------------------------------------------------------------
// Discover vectors

#[test]
fn discover_object() {
    let answer =
        DiscoverAnswer::parse(&vector("discover/core11_5_4_2_object.link")).expect("parses");
    assert_eq!(answer.lwm2m, None);
    assert_eq!(
        paths(&answer),
        [
            "/3", "/3/0", "/3/0/1", "/3/0/2", "/3/0/3", "/3/0/4", "/3/0/6", "/3/0/7", "/3/0/8",
            "/3/0/11", "/3/0/16"
        ]
    );
    assert_eq!(answer.links[0].attributes.pmin, Attr::Set(10));
    assert!(answer.links[1..].iter().all(|l| l.attributes.is_empty()));
}

#[test]
fn discover_instance() {
    let answer =
        DiscoverAnswer::parse(&vector("discover/core11_5_4_2_instance.link")).expect("parses");
    assert_eq!(answer.links.len(), 10);
    assert_eq!(answer.links[0].attributes.pmax, Attr::Set(60));
    let r7 = answer.get(&p("/3/0/7")).expect("/3/0/7");
    assert_eq!(r7.properties.dim, Some(8));
    assert_eq!(r7.attributes.gt, Attr::Set(50.0));
    assert_eq!(r7.attributes.lt, Attr::Set(42.2));
    for dim8 in ["/3/0/6", "/3/0/8"] {
        assert_eq!(answer.get(&p(dim8)).and_then(|l| l.properties.dim), Some(8));
    }
    assert_eq!(
        answer.to_string(),
        "</3/0>;pmax=60,</3/0/1>,</3/0/2>,</3/0/3>,</3/0/4>,</3/0/6>;dim=8,\
         </3/0/7>;dim=8;gt=50;lt=42.2,</3/0/8>;dim=8,</3/0/11>,</3/0/16>"
    );
}

#[test]
fn discover_resource_answers_are_byte_exact() {
    for name in [
        "discover/core11_5_4_2_resource.link",
        "discover/core11_5_4_2_server1.link",
        "discover/core11_5_4_2_server2.link",
        "discover/multiple_resource_dim.link",
    ] {
        let bytes = vector(name);
        let answer = DiscoverAnswer::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(answer.to_string().as_bytes(), &bytes[..], "{name}");
    }
    let r = DiscoverAnswer::parse(&vector("discover/core11_5_4_2_resource.link")).expect("parses");
    let a = &r.links[0].attributes;
    assert_eq!(
        (a.pmin, a.pmax, a.gt, a.lt),
        (
            Attr::Set(10),
            Attr::Set(60),
            Attr::Set(50.0),
            Attr::Set(42.2)
        )
    );
}

#[test]
fn discover_answer_built_by_the_client() {
    let attrs = NotificationAttributes {
        pmin: Attr::Set(10),
        ..NotificationAttributes::default()
    };
    let answer = DiscoverAnswer::new(vec![
        DiscoverLink::new(p("/3/0")).with_attributes(attrs),
        DiscoverLink::new(p("/3/0/1")),
        DiscoverLink::new(p("/3/0/7")).with_dim(2),
    ]);
    assert_eq!(answer.to_string(), "</3/0>;pmin=10,</3/0/1>,</3/0/7>;dim=2");
}

// ---------------------------------------------------------------------------------------------
// Bootstrap-Discover vectors

#[test]
fn bootstrap_discover_security_object() {
    let answer = DiscoverAnswer::parse(&vector("bootstrap-discover/core11_5_2_7_3_security.link"))
        .expect("parses");
    assert_eq!(answer.lwm2m, Some(Version::V1_0));
    assert_eq!(paths(&answer), ["/0/0", "/0/1", "/0/2"]);
    let ssids: Vec<_> = answer.links.iter().map(|l| l.properties.ssid).collect();
    assert_eq!(ssids, [Some(101), None, Some(102)]);
}

#[test]
fn bootstrap_discover_root() {
    let answer = DiscoverAnswer::parse(&vector("bootstrap-discover/core11_5_2_7_3_root.link"))
        .expect("parses");
    assert_eq!(paths(&answer), ["/0/0", "/0/1", "/1/0", "/3/0", "/5", "/4"]);
    assert_eq!(
        answer.get(&p("/1/0")).and_then(|l| l.properties.ssid),
        Some(101)
    );
    // Encoded in the current root-link form.
    assert_eq!(
        answer.to_string(),
        "</>;lwm2m=1.0,</0/0>;ssid=101,</0/1>,</1/0>;ssid=101,</3/0>,</5>,</4>"
    );
}

#[test]
fn bootstrap_discover_versions() {
    let v2 = DiscoverAnswer::parse(&vector(
        "bootstrap-discover/core11_5_2_7_3_version_2_0.link",
    ))
    .expect("parses");
    assert_eq!(v2.lwm2m, Some(Version::new(2, 0)));
    assert_eq!(
        v2.get(&p("/55")).and_then(|l| l.properties.ver),
        Some(Version::new(1, 9))
    );
    let ets = DiscoverAnswer::parse(&vector("bootstrap-discover/ets_1_1.link")).expect("parses");
    assert_eq!(ets.lwm2m, Some(Version::V1_1));
    assert_eq!(paths(&ets), ["/0/0", "/0/1", "/1/0", "/3/0"]);
}

#[test]
fn bootstrap_discover_root_link_form() {
    let answer = DiscoverAnswer::parse(&vector("bootstrap-discover/core12_root_link_form.link"))
        .expect("parses");
    assert_eq!(answer.lwm2m, Some(Version::V1_2));
    let server = answer.get(&p("/0/0")).expect("/0/0");
    assert_eq!(server.properties.ssid, Some(101));
    assert_eq!(
        server.properties.uri.as_deref(),
        Some("coaps://server_1.example.com")
    );
    assert_eq!(
        answer.to_string(),
        r#"</>;lwm2m=1.2,</0/0>;ssid=101;uri="coaps://server_1.example.com",</0/1>,</1/0>;ssid=101,</3/0>,</4>,</55>;ver=1.9,</55/0>"#
    );
    let built = DiscoverAnswer::bootstrap(
        Version::V1_1,
        vec![
            DiscoverLink::new(p("/0/0")).with_server(Some(1), None),
            DiscoverLink::new(p("/0/1")),
            DiscoverLink::new(p("/1/0")).with_server(Some(1), None),
            DiscoverLink::new(p("/3/0")),
        ],
    );
    let ets = DiscoverAnswer::parse(&vector("bootstrap-discover/ets_1_1.link")).expect("parses");
    assert_eq!(built, ets);
}

// ---------------------------------------------------------------------------------------------
// Write-Attributes vectors

fn query_lines(name: &str) -> Vec<(String, String)> {
    let text = String::from_utf8(vector(name)).expect("UTF-8");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (q, expect) = l.split_once(" -> ").expect("`query -> expected`");
            (q.trim().to_owned(), expect.trim().to_owned())
        })
        .collect()
}

fn error_kind(e: &AttributeError) -> &'static str {
    match e {
        AttributeError::Unknown(_) => "Unknown",
        AttributeError::ReadOnly(_) => "ReadOnly",
        AttributeError::Duplicate(_) => "Duplicate",
        AttributeError::MissingValue(_) => "MissingValue",
        AttributeError::BadValue { .. } => "BadValue",
        AttributeError::LtNotBelowGt { .. } => "LtNotBelowGt",
        AttributeError::StepTooLarge { .. } => "StepTooLarge",
        AttributeError::EvaluationPeriodsInverted { .. } => "EvaluationPeriodsInverted",
        AttributeError::PeriodsInverted { .. } => "PeriodsInverted",
        AttributeError::WrongLevel { .. } => "WrongLevel",
    }
}

#[test]
fn write_attributes_valid_queries() {
    let lines = query_lines("write-attributes/valid.txt");
    assert!(lines.len() >= 5);
    for (query, canonical) in lines {
        let attrs = NotificationAttributes::from_query_string(&query)
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        attrs.validate().unwrap_or_else(|e| panic!("{query}: {e}"));
        assert_eq!(attrs.to_query_string(), canonical, "{query}");
        let items: Vec<&str> = query.split('&').collect();
        assert_eq!(
            NotificationAttributes::from_query(&items),
            Ok(attrs),
            "{query}"
        );
    }
}

#[test]
fn write_attributes_invalid_queries() {
    let lines = query_lines("write-attributes/invalid.txt");
    assert!(lines.len() >= 10);
    for (query, kind) in lines {
        let result = NotificationAttributes::from_query_string(&query).and_then(|a| a.validate());
        match result {
            Err(e) => assert_eq!(error_kind(&e), kind, "{query}: {e}"),
            Ok(()) => panic!("{query}: accepted, expected {kind}"),
        }
    }
}

#[test]
fn write_attributes_brief_example_as_uri_query_options() {
    let attrs = NotificationAttributes::from_query(&["pmin=10", "pmax=60", "gt=20.5", "lt"])
        .expect("parses");
    assert_eq!(attrs.pmin, Attr::Set(10));
    assert_eq!(attrs.lt, Attr::Unset);
    assert_eq!(attrs.to_query(), ["pmin=10", "pmax=60", "gt=20.5", "lt"]);
    assert!(attrs.check_level(&p("/3303/0/5700")).is_ok());
    assert!(matches!(
        attrs.check_level(&p("/3303/0")),
        Err(AttributeError::WrongLevel { name: "gt", .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Hostile input

#[test]
fn hostile_non_utf8_everywhere() {
    let bad = b"</3/0>;t=\"\xc3\x28\"";
    assert_eq!(link::parse(bad), Err(LinkError::NotUtf8 { at: 10 }));
    assert_eq!(ObjectLinks::parse(bad), Err(LinkError::NotUtf8 { at: 10 }));
    assert_eq!(
        DiscoverAnswer::parse(bad),
        Err(LinkError::NotUtf8 { at: 10 })
    );
}

#[test]
fn hostile_unterminated_pieces() {
    for (input, problem) in [
        ("</3/0", SyntaxError::UnterminatedTarget),
        ("<", SyntaxError::UnterminatedTarget),
        ("</3>;ver=\"1.1", SyntaxError::UnterminatedQuote),
        ("</3>;ver=\"1.1\\", SyntaxError::UnterminatedQuote),
        ("</3>;ver=", SyntaxError::MissingValue),
        ("<<<<<<<<>", SyntaxError::BadTargetChar),
        ("</3>>", SyntaxError::ExpectedSeparator),
        (">", SyntaxError::ExpectedLink),
    ] {
        for result in [
            link::parse(input.as_bytes()).map(|_| ()),
            ObjectLinks::parse(input.as_bytes()).map(|_| ()),
            DiscoverAnswer::parse(input.as_bytes()).map(|_| ()),
        ] {
            match result {
                Err(LinkError::Syntax { problem: got, .. }) => {
                    assert_eq!(got, problem, "{input:?}")
                }
                other => panic!("{input:?}: expected {problem:?}, got {other:?}"),
            }
        }
    }
}

#[test]
fn hostile_huge_counts_parse_in_linear_time() {
    let mut payload = String::from("</>;rt=\"oma.lwm2m\";ct=\"");
    payload.push_str(&"110 ".repeat(50_000));
    payload.push_str("\",");
    for i in 0..50_000u32 {
        payload.push_str(&format!("</{}/{}>,", i % 60_000, i % 7));
    }
    let reg = ObjectLinks::parse(payload.as_bytes()).expect("parses");
    assert_eq!(reg.content_formats(), vec![ContentFormat::SenmlJson]);
    assert_eq!(reg.objects.len(), 50_000);

    let commas = ",".repeat(1_000_000);
    assert_eq!(link::parse(commas.as_bytes()), Ok(vec![]));

    let open_target = format!("<{}", "a".repeat(1_000_000));
    assert!(link::parse(open_target.as_bytes()).is_err());
    let open_quote = format!("</a>;t=\"{}", "\\\"".repeat(500_000));
    assert!(link::parse(open_quote.as_bytes()).is_err());
}

#[test]
fn hostile_values_are_refused_with_short_messages() {
    let long_target = format!("</{}>", "x".repeat(100_000));
    let err = ObjectLinks::parse(long_target.as_bytes()).expect_err("not a path");
    assert!(matches!(err, LinkError::NotAPath { .. }));
    assert!(
        err.to_string().len() < 300,
        "error message is clipped: {}",
        err.to_string().len()
    );

    let digits = "9".repeat(100_000);
    let err =
        NotificationAttributes::from_query_string(&format!("pmin={digits}")).expect_err("overflow");
    assert!(err.to_string().len() < 300);
    let err =
        NotificationAttributes::from_query_string(&format!("gt={digits}")).expect_err("infinite");
    assert!(matches!(err, AttributeError::BadValue { name: "gt", .. }));
    assert!(matches!(
        ObjectLinks::parse(format!("</>;ct={digits}").as_bytes()),
        Err(LinkError::BadContentFormat(_))
    ));
    assert!(matches!(
        ObjectLinks::parse(b"</3>;ver=999.1"),
        Err(LinkError::Attribute { .. })
    ));
    assert!(matches!(
        ObjectLinks::parse(b"</65535/0>"),
        Err(LinkError::NotAPath { .. })
    ));
    assert!(matches!(
        DiscoverAnswer::parse(b"</0/0>;ssid=65535"),
        Err(LinkError::Attribute { .. })
    ));
}

#[test]
fn hostile_leading_params_only_in_discover() {
    assert!(matches!(
        link::parse(b"lwm2m=\"1.1\",</0/0>"),
        Err(LinkError::Syntax {
            problem: SyntaxError::LeadingParams,
            ..
        })
    ));
    assert!(ObjectLinks::parse(b"lwm2m=\"1.1\",</0/0>").is_err());
    assert!(DiscoverAnswer::parse(b"lwm2m=\"1.1\",</0/0>").is_ok());
}

// ---------------------------------------------------------------------------------------------
// Strategies

fn ptoken() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'()*+./:<=>?@\\[\\]^_`{|}~-]{1,10}"
}

fn param_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$&+.^_`|~-]{1,8}\\*?"
}

fn param_value() -> impl Strategy<Value = Option<ParamValue>> {
    prop_oneof![
        Just(None),
        ptoken().prop_map(|t| Some(ParamValue::Token(t))),
        any::<String>().prop_map(|q| Some(ParamValue::Quoted(q))),
    ]
}

fn generic_link() -> impl Strategy<Value = Link> {
    (
        "[A-Za-z0-9/._~:?#\\[\\]@!$&'()*+,;=%é-]{0,16}",
        proptest::collection::vec((param_name(), param_value()), 0..5),
    )
        .prop_map(|(target, params)| Link { target, params })
}

fn version() -> impl Strategy<Value = Version> {
    (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Version::new(a, b))
}

fn id() -> impl Strategy<Value = u16> {
    prop_oneof![0u16..10, 0u16..65535]
}

fn finite() -> impl Strategy<Value = f64> {
    prop_oneof![
        (-100_000i32..100_000).prop_map(|i| f64::from(i) / 10.0),
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
    ]
}

fn attr<T: std::fmt::Debug + Clone + 'static>(
    value: impl Strategy<Value = T> + 'static,
) -> impl Strategy<Value = Attr<T>> {
    prop_oneof![
        2 => Just(Attr::Absent),
        1 => Just(Attr::Unset),
        2 => value.prop_map(Attr::Set),
    ]
}

fn notification() -> impl Strategy<Value = NotificationAttributes> {
    (
        (
            attr(any::<u32>()),
            attr(any::<u32>()),
            attr(finite()),
            attr(finite()),
        ),
        (
            attr(finite().prop_map(f64::abs)),
            attr(any::<u32>()),
            attr(any::<u32>()),
        ),
        (attr(any::<bool>()), attr(any::<bool>()), attr(any::<u32>())),
    )
        .prop_map(
            |((pmin, pmax, gt, lt), (st, epmin, epmax), (edge, con, hqmax))| {
                NotificationAttributes {
                    pmin,
                    pmax,
                    gt,
                    lt,
                    st,
                    epmin,
                    epmax,
                    edge,
                    con,
                    hqmax,
                }
            },
        )
}

fn properties() -> impl Strategy<Value = Properties> {
    (
        proptest::option::of(any::<u16>()),
        proptest::option::of(1u16..=65534),
        proptest::option::of(any::<String>()),
        proptest::option::of(version()),
        proptest::option::of(version()),
    )
        .prop_map(|(dim, ssid, uri, ver, lwm2m)| Properties {
            dim,
            ssid,
            uri,
            ver,
            lwm2m,
        })
}

fn lwm2m_path() -> impl Strategy<Value = Path> {
    proptest::collection::vec(0u16..65535, 1..=4)
        .prop_map(|ids| Path::from_ids(&ids).expect("1..=4 valid ids"))
}

fn alternate_path() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/".to_owned()),
        Just("/lwm2m".to_owned()),
        "(/[a-z][a-z0-9_.-]{0,6}){1,3}",
    ]
}

fn object_links() -> impl Strategy<Value = ObjectLinks> {
    (
        proptest::option::of((
            alternate_path(),
            proptest::collection::vec(any::<u16>(), 0..4),
        )),
        proptest::collection::btree_map(
            id(),
            (
                proptest::option::of(version()),
                proptest::collection::btree_set(id(), 0..4),
            ),
            0..8,
        ),
    )
        .prop_map(|(root, objects)| ObjectLinks {
            root: root.map(|(path, content_formats)| RootLink {
                path,
                content_formats,
            }),
            objects: objects
                .into_iter()
                .map(|(o, (version, instances))| (o, AnnouncedObject { version, instances }))
                .collect::<BTreeMap<u16, AnnouncedObject>>(),
        })
}

fn discover_answer() -> impl Strategy<Value = DiscoverAnswer> {
    (
        proptest::option::of(version()),
        proptest::option::of("(/[a-z][a-z0-9_.-]{0,6}){1,2}"),
        proptest::collection::vec((lwm2m_path(), properties(), notification()), 0..6),
    )
        .prop_map(|(lwm2m, alternate_path, links)| DiscoverAnswer {
            lwm2m,
            alternate_path,
            links: links
                .into_iter()
                .map(|(path, properties, attributes)| DiscoverLink {
                    path,
                    properties,
                    attributes,
                })
                .collect(),
        })
}

// ---------------------------------------------------------------------------------------------
// Round-trip properties

proptest! {
    #[test]
    fn generic_links_round_trip(links in proptest::collection::vec(generic_link(), 0..6)) {
        let text = link::format(&links);
        prop_assert_eq!(link::parse(text.as_bytes()), Ok(links));
    }

    #[test]
    fn notification_attributes_round_trip_through_the_query(attrs in notification()) {
        let query = attrs.to_query();
        prop_assert_eq!(NotificationAttributes::from_query(&query), Ok(attrs));
        prop_assert_eq!(NotificationAttributes::from_query_string(&attrs.to_query_string()), Ok(attrs));
    }

    #[test]
    fn registration_payloads_round_trip(reg in object_links()) {
        let text = reg.to_string();
        prop_assert_eq!(ObjectLinks::parse(text.as_bytes()), Ok(reg));
    }

    #[test]
    fn discover_answers_round_trip(answer in discover_answer()) {
        let text = answer.to_string();
        prop_assert_eq!(DiscoverAnswer::parse(text.as_bytes()), Ok(answer.clone()));
        if let Some(prefix) = &answer.alternate_path {
            // A DM Discover answer without its root link, read under the registration's path.
            let mut plain = answer.clone();
            plain.lwm2m = None;
            plain.alternate_path = None;
            let prefixed: Vec<Link> = answer.to_links().into_iter().skip(1).collect();
            let parsed = DiscoverAnswer::parse_under(link::format(&prefixed).as_bytes(), prefix);
            prop_assert_eq!(parsed, Ok(plain));
        }
    }

    #[test]
    fn any_bytes_give_a_value_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = link::parse(&bytes);
        let _ = ObjectLinks::parse(&bytes);
        let _ = DiscoverAnswer::parse(&bytes);
        let _ = DiscoverAnswer::parse_under(&bytes, "/lwm2m");
    }

    #[test]
    fn link_like_text_reparses_after_formatting(text in "[</>;=,\" a-z0-9.\\\\]{0,64}") {
        if let Ok(links) = link::parse(text.as_bytes()) {
            prop_assert_eq!(link::parse(link::format(&links).as_bytes()), Ok(links));
        }
        if let Ok(reg) = ObjectLinks::parse(text.as_bytes()) {
            prop_assert_eq!(ObjectLinks::parse(reg.to_string().as_bytes()), Ok(reg));
        }
        if let Ok(answer) = DiscoverAnswer::parse(text.as_bytes()) {
            prop_assert_eq!(DiscoverAnswer::parse(answer.to_string().as_bytes()), Ok(answer));
        }
    }

    #[test]
    fn query_like_text_reparses_after_formatting(text in "[a-z=&0-9.+e-]{0,48}") {
        if let Ok(attrs) = NotificationAttributes::from_query_string(&text) {
            prop_assert_eq!(NotificationAttributes::from_query_string(&attrs.to_query_string()), Ok(attrs));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Attribute bookkeeping a client keeps

#[test]
fn write_attributes_then_discover_shows_inherited_values() {
    let object = NotificationAttributes::from_query_string("pmin=10").expect("parses");
    let mut instance = NotificationAttributes::default();
    instance.apply(&NotificationAttributes::from_query_string("pmax=60").expect("parses"));
    let mut resource = NotificationAttributes::default();
    resource.apply(&NotificationAttributes::from_query_string("gt=50&lt=42.2").expect("parses"));
    let effective = resource.inherit(&instance.inherit(&object));
    let answer = DiscoverAnswer::new(vec![
        DiscoverLink::new(p("/3/0/7"))
            .with_dim(8)
            .with_attributes(effective),
    ]);
    assert_eq!(
        answer.to_string().as_bytes(),
        &vector("discover/core11_5_4_2_resource.link")[..]
    );
    let unset = NotificationAttributes::from_query_string("pmin").expect("parses");
    let mut object = object;
    object.apply(&unset);
    assert!(object.is_empty());
}
