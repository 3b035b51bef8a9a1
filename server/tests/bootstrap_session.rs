//! The Bootstrap-Server end to end, sans-IO: a client's Bootstrap-Request in, the exact
//! sequence of Bootstrap-Delete / Write / Finish requests out, each answered by a scripted
//! client; refusals (identity, no configuration, format), failures (error response, no
//! response, session timeout, a new request), Bootstrap-Discover with automatic Security IDs,
//! Bootstrap-Pack, Leshan JSON, and the sled store. A property test feeds arbitrary requests and
//! answers and checks that nothing panics.

#![allow(clippy::unwrap_used)] // tests

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use steward::bootstrap::{
    Action, BootstrapConfig, BootstrapEvent, BootstrapOp, BootstrapSessions, ConfigSource,
    Correlation, FailureReason, OpKind, Outcome, Outgoing, SecurityMode, ServerConfig,
    ServerSecurity, SessionsConfig, configs_from_json, configs_to_json,
};
use steward::lwm2m::Peer;
use steward::registry::PeerIdentity;
use steward::store::{SledStore, Store};
use steward_coap::endpoint::Failure;
use steward_coap::message::{Code, Method, Request, Response, encode_uint, option};
use steward_objects::{ContentFormat, ModelRegistry, Node, Path, Resource, Value, codec};

const EP: &str = "dev1";
const T0: u64 = 1_700_000_000_000;

fn peer(identity: &[u8]) -> Peer {
    Peer {
        address: "10.0.0.7:5683".into(),
        identity: PeerIdentity::Psk(identity.to_vec()),
    }
}

/// One LwM2M server account in PSK mode: /0/1 + /1/0, Leshan's default deletes.
fn psk_config() -> BootstrapConfig {
    let mut c = BootstrapConfig::default();
    c.servers.insert(
        0,
        ServerConfig {
            lifetime: 300,
            ..ServerConfig::new(101)
        },
    );
    c.security.insert(
        1,
        ServerSecurity::psk("coaps://dm.example:5684", 101, b"dev1", b"0123456789abcdef"),
    );
    c
}

fn configs(config: BootstrapConfig) -> BTreeMap<String, BootstrapConfig> {
    BTreeMap::from([(EP.to_owned(), config)])
}

fn bs_request(query: &[&str]) -> Request {
    query
        .iter()
        .fold(Request::new(Method::Post).with_path("/bs"), |r, q| {
            r.with_query(q)
        })
}

fn sends(actions: &[Action]) -> Vec<Outgoing> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(o) => Some(o.clone()),
            Action::Event(_) => None,
        })
        .collect()
}

fn events(actions: &[Action]) -> Vec<BootstrapEvent> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Event(e) => Some(e.clone()),
            Action::Send(_) => None,
        })
        .collect()
}

fn ok_for(op: &BootstrapOp) -> Response {
    match op {
        BootstrapOp::Delete { .. } => Response::new(Code::DELETED),
        BootstrapOp::Discover { .. } | BootstrapOp::Read { .. } => Response::new(Code::CONTENT),
        BootstrapOp::Write { .. } | BootstrapOp::Finish => Response::new(Code::CHANGED),
    }
}

/// Plays a well-behaved client: answers every request with its success code until the session
/// ends. Returns every request sent and every event.
fn run_to_end(
    sessions: &mut BootstrapSessions,
    first: Vec<Action>,
) -> (Vec<Outgoing>, Vec<BootstrapEvent>) {
    let mut sent = Vec::new();
    let mut seen = events(&first);
    let mut next = sends(&first);
    while let Some(out) = next.pop() {
        assert!(next.is_empty(), "one request in flight per session");
        let actions =
            sessions.on_response(T0 + 10, out.correlation, Outcome::Response(ok_for(&out.op)));
        seen.extend(events(&actions));
        next = sends(&actions);
        sent.push(out);
    }
    (sent, seen)
}

fn op_names(sent: &[Outgoing]) -> Vec<String> {
    sent.iter().map(|o| o.op.info().to_string()).collect()
}

fn resource(node: &Node, id: u16) -> Option<Value> {
    match node {
        Node::Instance(i) => match i.resources.get(&id) {
            Some(Resource::Single(v)) => Some(v.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// Decodes a Bootstrap-Write request the way a client would: by its Content-Format.
fn decode_write(out: &Outgoing) -> (Path, Node) {
    let path: Path = out.request.path_string().parse().unwrap();
    let ct = out.request.options.content_format().unwrap();
    let format = ContentFormat::from_code(ct).unwrap();
    let node = codec::decode(format, &path, &out.request.payload, &ModelRegistry::core()).unwrap();
    (path, node)
}

fn complete_session(query: &[&str], format: ContentFormat) {
    let mut sessions = BootstrapSessions::new(SessionsConfig::default());
    let (response, actions) = sessions.on_request(
        T0,
        &peer(b"dev1"),
        &bs_request(query),
        &configs(psk_config()),
    );
    assert_eq!(response.code, Code::CHANGED);
    assert!(matches!(
        events(&actions).first(),
        Some(BootstrapEvent::Started { format: f, .. }) if *f == format
    ));
    let (sent, seen) = run_to_end(&mut sessions, actions);
    assert_eq!(
        op_names(&sent),
        [
            "Bootstrap-Delete /0",
            "Bootstrap-Delete /1",
            "Bootstrap-Write /0/1",
            "Bootstrap-Write /1/0",
            "Bootstrap-Finish"
        ]
    );
    // The wire form of each.
    let methods: Vec<Method> = sent.iter().map(|o| o.request.method).collect();
    assert_eq!(
        methods,
        [
            Method::Delete,
            Method::Delete,
            Method::Put,
            Method::Put,
            Method::Post
        ]
    );
    assert!(
        sent.iter()
            .all(|o| o.address == "10.0.0.7:5683" && o.endpoint == EP)
    );
    assert_eq!(sent[4].request.path_string(), "/bs");
    assert!(sent[4].request.payload.is_empty());

    let (path, security) = decode_write(&sent[2]);
    assert_eq!(path, Path::Instance(0, 1));
    assert_eq!(
        sent[2].request.options.content_format(),
        Some(format.code())
    );
    assert_eq!(
        resource(&security, 0),
        Some(Value::String("coaps://dm.example:5684".into()))
    );
    assert_eq!(resource(&security, 1), Some(Value::Boolean(false)));
    assert_eq!(resource(&security, 2), Some(Value::Integer(0)), "PSK");
    assert_eq!(
        resource(&security, 3),
        Some(Value::Opaque(b"dev1".to_vec()))
    );
    assert_eq!(
        resource(&security, 5),
        Some(Value::Opaque(b"0123456789abcdef".to_vec()))
    );
    assert_eq!(resource(&security, 10), Some(Value::Integer(101)));

    let (path, server) = decode_write(&sent[3]);
    assert_eq!(path, Path::Instance(1, 0));
    assert_eq!(resource(&server, 0), Some(Value::Integer(101)));
    // /1/x/1 is Unsigned Integer in Server 1.2, the model the decoder types with.
    assert!(matches!(
        resource(&server, 1),
        Some(Value::UnsignedInteger(300) | Value::Integer(300))
    ));
    assert_eq!(resource(&server, 6), Some(Value::Boolean(true)));
    assert_eq!(resource(&server, 7), Some(Value::String("U".into())));

    assert!(
        matches!(seen.last(), Some(BootstrapEvent::Finished { endpoint, .. }) if endpoint == EP)
    );
    let steps = seen
        .iter()
        .filter(|e| matches!(e, BootstrapEvent::Step { .. }))
        .count();
    assert_eq!(steps, 5);
    assert!(sessions.is_empty());
    assert_eq!(sessions.poll_timeout(), None);
}

#[test]
fn complete_psk_session_in_tlv() {
    complete_session(&["ep=dev1"], ContentFormat::Tlv);
}

#[test]
fn complete_psk_session_in_the_preferred_format() {
    complete_session(&["ep=dev1", "pct=112"], ContentFormat::SenmlCbor);
    complete_session(&["ep=dev1", "pct=110"], ContentFormat::SenmlJson);
    complete_session(&["ep=dev1", "pct=11544"], ContentFormat::Lwm2mCbor);
}

#[test]
fn configured_format_wins_over_pct() {
    let mut c = psk_config();
    c.content_format = Some(ContentFormat::SenmlJson);
    let mut sessions = BootstrapSessions::new(SessionsConfig::default());
    let (_, actions) = sessions.on_request(
        T0,
        &peer(b"dev1"),
        &bs_request(&["ep=dev1", "pct=112"]),
        &configs(c),
    );
    let (sent, _) = run_to_end(&mut sessions, actions);
    assert_eq!(sent[2].request.options.content_format(), Some(110));
}

#[test]
fn identity_mismatch_is_4_03() {
    let mut sessions = BootstrapSessions::new(SessionsConfig::default());
    let (response, actions) = sessions.on_request(
        T0,
        &peer(b"someone-else"),
        &bs_request(&["ep=dev1"]),
        &configs(psk_config()),
    );
    assert_eq!(response.code, Code::FORBIDDEN);
    assert!(sends(&actions).is_empty() && sessions.is_empty());
    assert!(matches!(
        events(&actions).as_slice(),
        [BootstrapEvent::Refused { endpoint: Some(ep), .. }] if ep == "dev1"
    ));
    // NoSec only when allowed.
    let nosec = Peer {
        address: "a".into(),
        identity: PeerIdentity::Unsecured,
    };
    let req = bs_request(&["ep=dev1"]);
    let (r, _) = sessions.on_request(T0, &nosec, &req, &configs(psk_config()));
    assert_eq!(r.code, Code::FORBIDDEN);
    let mut open = BootstrapSessions::new(SessionsConfig {
        allow_unsecured: true,
        ..SessionsConfig::default()
    });
    let (r, _) = open.on_request(T0, &nosec, &req, &configs(psk_config()));
    assert_eq!(r.code, Code::CHANGED);
}

#[test]
fn unknown_endpoint_is_4_00_with_a_reason() {
    let mut sessions = BootstrapSessions::new(SessionsConfig::default());
    let (response, actions) = sessions.on_request(
        T0,
        &peer(b"dev2"),
        &bs_request(&["ep=dev2"]),
        &configs(psk_config()),
    );
    assert_eq!(response.code, Code::BAD_REQUEST);
    let text = String::from_utf8(response.payload).unwrap();
    assert!(text.contains("no bootstrap config"), "{text}");
    assert!(sends(&actions).is_empty() && sessions.is_empty());
}

#[test]
fn unsupported_pct_is_4_15_and_invalid_config_is_5_00() {
    let mut sessions = BootstrapSessions::new(SessionsConfig::default());
    let (r, _) = sessions.on_request(
        T0,
        &peer(b"dev1"),
        &bs_request(&["ep=dev1", "pct=0"]),
        &configs(psk_config()),
    );
    assert_eq!(r.code, Code::UNSUPPORTED_CONTENT_FORMAT);
    let mut broken = psk_config();
    broken.security.get_mut(&1).unwrap().secret_key.clear();
    let (r, actions) = sessions.on_request(
        T0,
        &peer(b"dev1"),
        &bs_request(&["ep=dev1"]),
        &configs(broken),
    );
    assert_eq!(r.code, Code::INTERNAL_SERVER_ERROR);
    let text = String::from_utf8(r.payload).unwrap();
    assert!(
        !text.contains("secret key"),
        "details stay out of the answer: {text}"
    );
    assert!(matches!(
        events(&actions).as_slice(),
        [BootstrapEvent::Refused { error: steward::bootstrap::BootstrapError::InvalidConfig { reason, .. }, .. }]
            if reason.contains("secret key must not be empty")
    ));
}

/// Starts a session and answers its first `n` requests with success; returns the next request.
fn advance(sessions: &mut BootstrapSessions, n: usize) -> Outgoing {
    let (_, actions) = sessions.on_request(
        T0,
        &peer(b"dev1"),
        &bs_request(&["ep=dev1"]),
        &configs(psk_config()),
    );
    let mut out = sends(&actions).pop().unwrap();
    for _ in 0..n {
        let actions =
            sessions.on_response(T0 + 5, out.correlation, Outcome::Response(ok_for(&out.op)));
        out = sends(&actions).pop().unwrap();
    }
    out
}

#[test]
fn an_error_response_mid_session_fails_it() {
    let mut sessions = BootstrapSessions::new(SessionsConfig::default());
    let write = advance(&mut sessions, 2);
    assert_eq!(write.op.info().to_string(), "Bootstrap-Write /0/1");
    let answer = Response::new(Code::BAD_REQUEST).with_diagnostic("bad TLV");
    let actions = sessions.on_response(T0 + 6, write.correlation, Outcome::Response(answer));
    assert!(sends(&actions).is_empty());
    match events(&actions).as_slice() {
        [
            BootstrapEvent::Failed {
                endpoint,
                reason:
                    FailureReason::ErrorResponse {
                        op,
                        code,
                        diagnostic,
                    },
                ..
            },
        ] => {
            assert_eq!(endpoint, EP);
            assert_eq!(op.kind, OpKind::Write);
            assert_eq!(op.path, Some(Path::Instance(0, 1)));
            assert_eq!(*code, Code::BAD_REQUEST);
            assert_eq!(diagnostic, "bad TLV");
        }
        other => panic!("{other:?}"),
    }
    assert!(sessions.is_empty());
    // A late answer for the dead session is ignored.
    let late = sessions.on_response(
        T0 + 7,
        write.correlation,
        Outcome::Response(Response::new(Code::CHANGED)),
    );
    assert!(late.is_empty());
}

#[test]
fn finish_refused_fails_and_no_response_fails() {
    let mut sessions = BootstrapSessions::new(SessionsConfig::default());
    let finish = advance(&mut sessions, 4);
    assert_eq!(finish.op, BootstrapOp::Finish);
    // 4.06: "inconsistent loaded configuration".
    let actions = sessions.on_response(
        T0 + 6,
        finish.correlation,
        Outcome::Response(Response::new(Code::NOT_ACCEPTABLE)),
    );
    assert!(matches!(
        events(&actions).as_slice(),
        [BootstrapEvent::Failed {
            reason: FailureReason::ErrorResponse {
                code: Code::NOT_ACCEPTABLE,
                ..
            },
            ..
        }]
    ));

    let delete = advance(&mut sessions, 0);
    let actions = sessions.on_response(
        T0 + 6,
        delete.correlation,
        Outcome::Failed(Failure::Timeout),
    );
    assert!(matches!(
        events(&actions).as_slice(),
        [BootstrapEvent::Failed {
            reason: FailureReason::NoResponse {
                failure: Failure::Timeout,
                ..
            },
            ..
        }]
    ));
    assert!(sessions.is_empty());
}

#[test]
fn stale_correlations_are_ignored() {
    let mut sessions = BootstrapSessions::new(SessionsConfig::default());
    let second = advance(&mut sessions, 1);
    let stale = Correlation {
        session: second.correlation.session,
        step: second.correlation.step - 1,
    };
    assert!(
        sessions
            .on_response(
                T0 + 6,
                stale,
                Outcome::Response(Response::new(Code::DELETED))
            )
            .is_empty()
    );
    assert_eq!(sessions.len(), 1);
}

#[test]
fn the_session_timeout_fails_it() {
    let mut sessions = BootstrapSessions::new(SessionsConfig {
        session_timeout_ms: 30_000,
        ..SessionsConfig::default()
    });
    let pending = advance(&mut sessions, 1);
    assert_eq!(sessions.poll_timeout(), Some(T0 + 30_000));
    assert!(sessions.on_timeout(T0 + 29_999).is_empty());
    let actions = sessions.on_timeout(T0 + 30_000);
    assert!(matches!(
        events(&actions).as_slice(),
        [BootstrapEvent::Failed {
            reason: FailureReason::Timeout(30_000),
            ..
        }]
    ));
    assert!(sessions.is_empty() && sessions.poll_timeout().is_none());
    let late = sessions.on_response(
        T0 + 30_001,
        pending.correlation,
        Outcome::Response(Response::new(Code::DELETED)),
    );
    assert!(late.is_empty());
}

#[test]
fn a_new_request_supersedes_the_running_session() {
    let mut sessions = BootstrapSessions::new(SessionsConfig::default());
    let old = advance(&mut sessions, 1);
    let (r, actions) = sessions.on_request(
        T0 + 100,
        &peer(b"dev1"),
        &bs_request(&["ep=dev1"]),
        &configs(psk_config()),
    );
    assert_eq!(r.code, Code::CHANGED);
    let evs = events(&actions);
    assert!(matches!(
        evs.first(),
        Some(BootstrapEvent::Failed {
            reason: FailureReason::Superseded,
            ..
        })
    ));
    assert!(matches!(evs.get(1), Some(BootstrapEvent::Started { .. })));
    assert_eq!(sessions.len(), 1);
    assert!(
        sessions
            .on_response(
                T0 + 101,
                old.correlation,
                Outcome::Response(Response::new(Code::DELETED))
            )
            .is_empty()
    );
    let new = sends(&actions).pop().unwrap();
    assert_eq!(new.op.info().to_string(), "Bootstrap-Delete /0");
}

#[test]
fn too_many_sessions_is_5_03() {
    let mut sessions = BootstrapSessions::new(SessionsConfig {
        max_sessions: 1,
        ..SessionsConfig::default()
    });
    let mut all = configs(psk_config());
    all.insert("dev2".into(), psk_config());
    let (r, _) = sessions.on_request(T0, &peer(b"dev1"), &bs_request(&["ep=dev1"]), &all);
    assert_eq!(r.code, Code::CHANGED);
    let (r, _) = sessions.on_request(T0, &peer(b"dev2"), &bs_request(&["ep=dev2"]), &all);
    assert_eq!(r.code, Code::SERVICE_UNAVAILABLE);
}

#[test]
fn auto_id_discovers_first_and_rewrites_the_bootstrap_account_in_place() {
    let mut c = psk_config();
    c.auto_id_for_security_object = true;
    c.security.insert(
        0,
        ServerSecurity {
            bootstrap_server: true,
            server_id: None,
            ..ServerSecurity::psk("coaps://bs.example:5784", 1, b"dev1", b"bootstrap-key-16")
        },
    );
    c.validate().unwrap();
    let mut sessions = BootstrapSessions::new(SessionsConfig::default());
    let (_, actions) =
        sessions.on_request(T0, &peer(b"dev1"), &bs_request(&["ep=dev1"]), &configs(c));
    let discover = sends(&actions).pop().unwrap();
    assert_eq!(discover.op, BootstrapOp::Discover { path: Path::Root });
    assert_eq!(discover.request.method, Method::Get);
    assert_eq!(discover.request.options.accept(), Some(40));
    // The device's Bootstrap-Server account is /0/0 (no ssid); /0/3 is an old server account.
    let links = b"</>;lwm2m=1.1,</0/0>,</0/3>;ssid=7,</1/3>;ssid=7,</3/0>".to_vec();
    let answer = Response::new(Code::CONTENT).with_payload(40, links);
    let actions = sessions.on_response(T0 + 1, discover.correlation, Outcome::Response(answer));
    let (sent, seen) = run_to_end(&mut sessions, actions);
    assert_eq!(
        op_names(&sent),
        [
            "Bootstrap-Delete /0",
            "Bootstrap-Delete /1",
            "Bootstrap-Write /0/0",
            "Bootstrap-Write /0/1",
            "Bootstrap-Write /1/0",
            "Bootstrap-Finish"
        ]
    );
    let (_, bs) = decode_write(&sent[2]);
    assert_eq!(resource(&bs, 1), Some(Value::Boolean(true)));
    let (_, dm) = decode_write(&sent[3]);
    assert_eq!(resource(&dm, 10), Some(Value::Integer(101)));
    assert!(matches!(seen.last(), Some(BootstrapEvent::Finished { .. })));
}

#[test]
fn a_bad_discover_answer_fails_the_session() {
    let mut c = psk_config();
    c.auto_id_for_security_object = true;
    let mut sessions = BootstrapSessions::new(SessionsConfig::default());
    let (_, actions) =
        sessions.on_request(T0, &peer(b"dev1"), &bs_request(&["ep=dev1"]), &configs(c));
    let discover = sends(&actions).pop().unwrap();
    let answer = Response::new(Code::CONTENT).with_payload(40, b"<<<".to_vec());
    let actions = sessions.on_response(T0 + 1, discover.correlation, Outcome::Response(answer));
    assert!(matches!(
        events(&actions).last(),
        Some(BootstrapEvent::Failed {
            reason: FailureReason::BadDiscover(_),
            ..
        })
    ));
}

#[test]
fn est_mode_is_written_as_mode_4_with_the_server_certificate() {
    let cert = [0x30, 0x82, 0x01, 0x0a, 0xde, 0xad];
    let mut c = psk_config();
    c.security.insert(
        1,
        ServerSecurity::est("coaps://dm.example:5684", 101, &cert),
    );
    c.validate().unwrap();
    let mut sessions = BootstrapSessions::new(SessionsConfig::default());
    let (_, actions) = sessions.on_request(
        T0,
        &peer(b"dev1"),
        &bs_request(&["ep=dev1", "pct=112"]),
        &configs(c),
    );
    let (sent, _) = run_to_end(&mut sessions, actions);
    let (_, sec) = decode_write(&sent[2]);
    assert_eq!(resource(&sec, 2), Some(Value::Integer(4)));
    assert_eq!(resource(&sec, 4), Some(Value::Opaque(cert.to_vec())));
    assert_eq!(resource(&sec, 5), Some(Value::Opaque(Vec::new())));
    assert_eq!(SecurityMode::Est.code(), 4);
}

#[test]
fn bootstrap_pack_is_senml_cbor_of_the_whole_configuration() {
    let mut sessions = BootstrapSessions::new(SessionsConfig::default());
    let request = Request::new(Method::Get)
        .with_path("/bspack")
        .with_query("ep=dev1");
    let (response, actions) =
        sessions.on_request(T0, &peer(b"dev1"), &request, &configs(psk_config()));
    assert_eq!(response.code, Code::CONTENT);
    assert_eq!(response.options.content_format(), Some(112));
    assert!(
        sends(&actions).is_empty() && sessions.is_empty(),
        "no session, no Finish"
    );
    assert!(matches!(
        events(&actions).as_slice(),
        [BootstrapEvent::Packed { .. }]
    ));
    let nodes = codec::decode_nodes(
        ContentFormat::SenmlCbor,
        &response.payload,
        None,
        &ModelRegistry::core(),
    )
    .unwrap();
    let leaf = |o: u16, i: u16, r: u16| -> Option<Value> {
        match nodes.get(&Path::Resource(o, i, r)) {
            Some(Node::Resource(Resource::Single(v))) => Some(v.clone()),
            _ => match nodes.get(&Path::Object(o)) {
                Some(Node::Object(m)) => match m.get(&i)?.resources.get(&r)? {
                    Resource::Single(v) => Some(v.clone()),
                    Resource::Multiple(_) => None,
                },
                _ => None,
            },
        }
    };
    assert_eq!(
        leaf(0, 1, 0),
        Some(Value::String("coaps://dm.example:5684".into()))
    );
    assert_eq!(leaf(0, 1, 3), Some(Value::Opaque(b"dev1".to_vec())));
    assert_eq!(leaf(1, 0, 0), Some(Value::Integer(101)));

    // Same identity rules as /bs; Accept it cannot serve is 4.06.
    let (r, _) = sessions.on_request(T0, &peer(b"x"), &request, &configs(psk_config()));
    assert_eq!(r.code, Code::FORBIDDEN);
    let tlv = request
        .clone()
        .with_option(option::ACCEPT, encode_uint(11542));
    let (r, _) = sessions.on_request(T0, &peer(b"dev1"), &tlv, &configs(psk_config()));
    assert_eq!(r.code, Code::NOT_ACCEPTABLE);
}

#[test]
fn leshan_json_round_trip() {
    // leshan-rest-api.md §2.5 (security "1" completed with Leshan's defaults), as the
    // `GET /api/bootstrap` map.
    let one = r#"{"autoIdForSecurityObject":false,"toDelete":["/0","/1"],
     "servers":{"0":{"shortId":123,"lifetime":300,"defaultMinPeriod":1,"notifIfDisabled":true,"binding":"U"}},
     "security":{
       "0":{"uri":"coaps://bs.example:5784","bootstrapServer":true,"securityMode":"PSK","publicKeyOrId":[105,100],
            "serverPublicKey":[],"secretKey":[1,2,3],"smsSecurityMode":"NO_SEC","smsBindingKeyParam":[],
            "smsBindingKeySecret":[],"serverSmsNumber":"","clientOldOffTime":1,"bootstrapServerAccountTimeout":0},
       "1":{"uri":"coap://dm.example:5683","bootstrapServer":false,"securityMode":"NO_SEC","serverId":123,
            "publicKeyOrId":[],"serverPublicKey":[],"secretKey":[],"smsSecurityMode":"NO_SEC",
            "smsBindingKeyParam":[],"smsBindingKeySecret":[],"serverSmsNumber":"","clientOldOffTime":1,
            "bootstrapServerAccountTimeout":0}},
     "acls":{},"oscore":{}}"#;
    let all = format!(r#"{{"{EP}": {one}}}"#);
    let configs = configs_from_json(all.as_bytes()).unwrap();
    configs[EP].validate().unwrap();
    let exported = configs_to_json(configs.iter().map(|(k, v)| (k.as_str(), v)));
    let a: serde_json::Value = serde_json::from_str(&exported).unwrap();
    let b: serde_json::Value = serde_json::from_str(&all).unwrap();
    assert_eq!(a, b);
    assert_eq!(configs_from_json(exported.as_bytes()).unwrap(), configs);
}

/// A unique directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        TempDir(std::env::temp_dir().join(format!(
            "steward-bootstrap-{name}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        )))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn store_round_trip_survives_a_reopen() {
    let dir = TempDir::new("store");
    let mut est = psk_config();
    est.security
        .insert(1, ServerSecurity::est("coaps://dm:5684", 101, &[0x30, 1]));
    {
        let store = SledStore::open(&dir.0).unwrap();
        assert_eq!(store.bootstrap_config(EP).unwrap(), None);
        store.put_bootstrap_config(EP, &psk_config()).unwrap();
        store.put_bootstrap_config("dev0", &est).unwrap();
        store.put_bootstrap_config(EP, &est).unwrap(); // replaces
        assert_eq!(store.bootstrap_config(EP).unwrap(), Some(est.clone()));
    }
    let store = SledStore::open(&dir.0).unwrap();
    let all = store.bootstrap_configs().unwrap();
    assert_eq!(
        all,
        vec![
            ("dev0".to_owned(), est.clone()),
            (EP.to_owned(), est.clone())
        ]
    );
    assert!(store.remove_bootstrap_config("dev0").unwrap());
    assert!(!store.remove_bootstrap_config("dev0").unwrap());
    store.verify().unwrap();
    drop(store);
    let store = SledStore::open(&dir.0).unwrap();
    assert_eq!(store.bootstrap_configs().unwrap().len(), 1);

    // The store is a configuration source for sessions.
    let source: &dyn Store = &store;
    assert_eq!(source.lookup(EP).unwrap(), Some(est));
    let mut sessions = BootstrapSessions::new(SessionsConfig::default());
    let (r, _) = sessions.on_request(T0, &peer(b"dev1"), &bs_request(&["ep=dev1"]), source);
    assert_eq!(r.code, Code::CHANGED);
}

fn method() -> impl Strategy<Value = Method> {
    (1u8..=7).prop_map(|c| Method::from_code(c).unwrap_or(Method::Get))
}

fn segment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"bs".to_vec()),
        Just(b"bspack".to_vec()),
        Just(b"rd".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..6),
    ]
}

fn query() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"ep=dev1".to_vec()),
        Just(b"ep=".to_vec()),
        Just(b"ep".to_vec()),
        Just(b"pct=112".to_vec()),
        Just(b"pct=11542".to_vec()),
        "pct=[0-9+-]{0,7}".prop_map(String::into_bytes),
        "[a-z]{1,3}(=[a-z0-9]{0,4})?".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..8),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    // Well-formed requests often enough that sessions start and answers get exercised.
    prop_oneof![
        1 => Just(bs_request(&["ep=dev1"])),
        1 => Just(bs_request(&["pct=112"])),
        1 => Just(Request::new(Method::Get).with_path("/bspack")),
        4 => arbitrary_request(),
    ]
}

fn arbitrary_request() -> impl Strategy<Value = Request> {
    (
        method(),
        proptest::collection::vec(segment(), 0..3),
        proptest::collection::vec(query(), 0..4),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..5)),
        proptest::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(|(m, path, queries, accept, payload)| {
            let mut r = Request::new(m);
            for s in path {
                r.options.push(option::URI_PATH, s);
            }
            for q in queries {
                r.options.push(option::URI_QUERY, q);
            }
            if let Some(a) = accept {
                r.options.push(option::ACCEPT, a);
            }
            r.payload = payload;
            r
        })
}

fn answer() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..24)).prop_map(|(c, p)| {
            let code = Code::from_byte(c).unwrap_or(Code::CHANGED);
            Outcome::Response(Response::new(code).with_payload(40, p))
        }),
        Just(Outcome::Failed(Failure::Reset)),
        Just(Outcome::Response(
            Response::new(Code::CONTENT).with_payload(40, b"</0/0>,</0/1>;ssid=101".to_vec())
        )),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_requests_and_answers_never_panic(
        requests in proptest::collection::vec((request(), any::<bool>(), any::<bool>()), 1..6),
        answers in proptest::collection::vec(answer(), 0..12),
        auto_id in any::<bool>(),
    ) {
        let mut c = psk_config();
        c.auto_id_for_security_object = auto_id;
        let configs = configs(c);
        let mut sessions = BootstrapSessions::new(SessionsConfig {
            allow_unsecured: true,
            ..SessionsConfig::default()
        });
        let mut in_flight = Vec::new();
        for (i, (r, secure, right_identity)) in requests.into_iter().enumerate() {
            let peer = match (secure, right_identity) {
                (false, _) => Peer { address: "a".into(), identity: PeerIdentity::Unsecured },
                (true, true) => peer(b"dev1"),
                (true, false) => peer(b"other"),
            };
            let now = T0 + i as u64;
            let (response, actions) = sessions.on_request(now, &peer, &r, &configs);
            // A refusal is never a success, and every success is one of the two interface codes.
            prop_assert!(
                !response.code.is_success()
                    || response.code == Code::CHANGED
                    || response.code == Code::CONTENT
            );
            in_flight.extend(sends(&actions));
        }
        for (i, a) in answers.into_iter().enumerate() {
            let Some(out) = in_flight.pop() else { break };
            let actions = sessions.on_response(T0 + 100 + i as u64, out.correlation, a);
            in_flight.extend(sends(&actions));
        }
        let _ = sessions.on_timeout(T0 + 1_000_000);
        prop_assert!(sessions.is_empty());
    }
}
