//! Registration-interface requests, parsed from CoAP (Transport §6.4.3, Core 1.1 §5.3 / 1.2
//! §6.2):
//!
//! ```text
//! Register     POST   /rd?ep={name}&lt={s}&lwm2m={ver}&b={binding}&Q&sms={msisdn}&pid={id}   ct 40
//! Update       POST   /rd/{id}?lt=&b=&Q&sms=                               (ct 40 payload optional)
//! De-register  DELETE /rd/{id}
//! ```
//!
//! Parsing only: the result says what the client asked for, in types that cannot hold a
//! malformed value. Whether the client may ask it (identity, ownership) is decided by
//! [`super::identity`] and [`super::server`].
//!
//! Rules, and why:
//! - `lwm2m` is read first: a version we do not support may define parameters differently, so
//!   4.12 (which makes the client fall back, Transport §6.4.3) wins over any 4.00 after it.
//!   Syntactically bad (`lwm2m=abc`) is 4.00; well-formed but not 1.0/1.1/1.2 is 4.12.
//! - A known parameter given twice is 4.00: the two values cannot both hold.
//! - Unknown parameters are kept in `extra` and otherwise ignored, like Leshan's
//!   "additional attributes": Core asks receivers to ignore what they do not know.
//! - `ep` is mandatory in 1.0; from 1.1 it may be omitted and comes from the (D)TLS identity
//!   (Core 1.1 §5.3.1 Table "Endpoint Client Name": "... optional ... if not provided the
//!   LwM2M Server will use the identity of the (D)TLS session").
//! - The payload must be link format (ct 40, or no Content-Format at all, which some clients
//!   omit); another ct is 4.15. Register without payload is 4.00 unless `pid` (1.2) names a
//!   profile; we keep no profiles, which the server answers with 4.09.

use steward_coap::message::{Method, Request, option};
use steward_objects::Version;
use steward_objects::link::ObjectLinks;

use super::binding::Binding;
use super::error::RegistrationError;
use crate::registry::Lwm2mVersion;
use crate::uri_query::{Query, QueryError};

/// The first Uri-Path segment of the Registration interface (and of our Location-Paths).
pub const RD: &str = "rd";

/// Link format, the only payload this interface carries.
const LINK_FORMAT: u16 = 40;

/// A parsed Registration-interface request.
#[derive(Debug, Clone, PartialEq)]
pub enum RegistrationRequest {
    Register(RegisterRequest),
    Update(UpdateRequest),
    Deregister(DeregisterRequest),
}

/// `POST /rd?...`.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterRequest {
    /// `ep`; always `Some` for 1.0 (checked here), optional from 1.1.
    pub endpoint: Option<String>,
    /// `lt` in seconds; `None` means the server default.
    pub lifetime: Option<u32>,
    /// `lwm2m`; absent means 1.0.
    pub version: Lwm2mVersion,
    /// `b`; `None` means `U`.
    pub binding: Option<Binding>,
    /// The separate `Q` parameter (1.1+).
    pub queue: bool,
    pub sms: Option<String>,
    /// `pid` (1.2): Profile ID, e.g. `6:27354b9a`.
    pub profile_id: Option<String>,
    /// The payload; `None` only when `pid` stands in for it.
    pub objects: Option<ObjectLinks>,
    /// Parameters we do not know, as sent (`name` or `name=value`).
    pub extra: Vec<(String, Option<String>)>,
}

/// `POST /rd/{id}?...`: only what changed.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateRequest {
    pub id: String,
    pub lifetime: Option<u32>,
    /// Letters are checked against the registration's version by the server (it is not known
    /// here); parsed with the 1.2 alphabet.
    pub binding: Option<Binding>,
    pub queue: bool,
    pub sms: Option<String>,
    pub objects: Option<ObjectLinks>,
    pub extra: Vec<(String, Option<String>)>,
}

/// `DELETE /rd/{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeregisterRequest {
    pub id: String,
}

impl RegisterRequest {
    /// A minimal Register: this endpoint and version, these objects, everything else default.
    pub fn new(endpoint: Option<&str>, version: Lwm2mVersion, objects: ObjectLinks) -> Self {
        RegisterRequest {
            endpoint: endpoint.map(str::to_owned),
            lifetime: None,
            version,
            binding: None,
            queue: false,
            sms: None,
            profile_id: None,
            objects: Some(objects),
            extra: Vec::new(),
        }
    }

    /// Queue mode in either style: `Q` inside `b` (1.0) or the `Q` parameter (1.1+).
    pub fn queue_mode(&self) -> bool {
        self.queue || self.binding.is_some_and(|b| b.queue)
    }

    /// The CoAP request a client sends for this Register (the simulated client uses it).
    pub fn to_request(&self) -> Request {
        let mut r = Request::new(Method::Post).with_path(RD);
        if let Some(ep) = &self.endpoint {
            r = r.with_query(&format!("ep={ep}"));
        }
        if let Some(lt) = self.lifetime {
            r = r.with_query(&format!("lt={lt}"));
        }
        r = r.with_query(&format!("lwm2m={}", self.version.as_str()));
        r = common_query(r, self.binding, self.queue, self.sms.as_deref());
        if let Some(pid) = &self.profile_id {
            r = r.with_query(&format!("pid={pid}"));
        }
        with_extra_and_payload(r, &self.extra, self.objects.as_ref())
    }
}

impl UpdateRequest {
    /// An Update that changes nothing (a "keep-alive", which still renews the lifetime).
    pub fn new(id: &str) -> UpdateRequest {
        UpdateRequest {
            id: id.to_owned(),
            lifetime: None,
            binding: None,
            queue: false,
            sms: None,
            objects: None,
            extra: Vec::new(),
        }
    }

    pub fn to_request(&self) -> Request {
        let mut r = Request::new(Method::Post).with_path(&format!("/{RD}/{}", self.id));
        if let Some(lt) = self.lifetime {
            r = r.with_query(&format!("lt={lt}"));
        }
        r = common_query(r, self.binding, self.queue, self.sms.as_deref());
        with_extra_and_payload(r, &self.extra, self.objects.as_ref())
    }
}

impl DeregisterRequest {
    pub fn to_request(&self) -> Request {
        Request::new(Method::Delete).with_path(&format!("/{RD}/{}", self.id))
    }
}

fn common_query(mut r: Request, b: Option<Binding>, q: bool, sms: Option<&str>) -> Request {
    if let Some(b) = b {
        r = r.with_query(&format!("b={b}"));
    }
    if q {
        r = r.with_query("Q");
    }
    if let Some(sms) = sms {
        r = r.with_query(&format!("sms={sms}"));
    }
    r
}

fn with_extra_and_payload(
    mut r: Request,
    extra: &[(String, Option<String>)],
    objects: Option<&ObjectLinks>,
) -> Request {
    for (name, value) in extra {
        r = match value {
            Some(v) => r.with_query(&format!("{name}={v}")),
            None => r.with_query(name),
        };
    }
    match objects {
        Some(o) => r.with_payload(LINK_FORMAT, o.to_string().into_bytes()),
        None => r,
    }
}

/// True when `request` is addressed to the Registration interface (`/rd` or below), so the
/// router hands it here.
pub fn is_registration_path(request: &Request) -> bool {
    request
        .options
        .get_all(option::URI_PATH)
        .next()
        .is_some_and(|first| first == RD.as_bytes())
}

/// Parses a request under `/rd`.
pub fn parse(request: &Request) -> Result<RegistrationRequest, RegistrationError> {
    let path = request
        .options
        .uri_path()
        .ok_or(RegistrationError::NotUtf8)?;
    match (path.as_slice(), request.method) {
        ([RD], Method::Post) => parse_register(request).map(RegistrationRequest::Register),
        ([RD, id], Method::Post) if !id.is_empty() => {
            parse_update(id, request).map(RegistrationRequest::Update)
        }
        ([RD, id], Method::Delete) if !id.is_empty() => {
            Ok(RegistrationRequest::Deregister(DeregisterRequest {
                id: (*id).to_owned(),
            }))
        }
        ([RD] | [RD, _], method) => Err(RegistrationError::MethodNotAllowed(method)),
        _ => Err(RegistrationError::NotFound),
    }
}

fn parse_register(request: &Request) -> Result<RegisterRequest, RegistrationError> {
    let query = Query::of(request)?;
    let version = match query.single("lwm2m")? {
        None => Lwm2mVersion::V1_0,
        Some(v) => parse_version(v.unwrap_or(""))?,
    };
    let endpoint = query.value("ep")?.map(str::to_owned);
    if endpoint.is_none() && version == Lwm2mVersion::V1_0 {
        return Err(RegistrationError::MissingEndpoint);
    }
    let binding = match query.value("b")? {
        None => None,
        Some(s) => {
            Some(
                Binding::parse(s, version).ok_or_else(|| RegistrationError::BadBinding {
                    binding: clip(s),
                    version: version.as_str(),
                })?,
            )
        }
    };
    let profile_id = query.value("pid")?.map(str::to_owned);
    let objects = object_links(request)?;
    if objects.is_none() && profile_id.is_none() {
        return Err(RegistrationError::MissingObjectLinks);
    }
    Ok(RegisterRequest {
        endpoint,
        lifetime: lifetime(&query)?,
        version,
        binding,
        queue: query.flag("Q")?,
        sms: query.value("sms")?.map(str::to_owned),
        profile_id,
        objects,
        extra: query.extra(&["ep", "lt", "lwm2m", "b", "Q", "sms", "pid"]),
    })
}

fn parse_update(id: &str, request: &Request) -> Result<UpdateRequest, RegistrationError> {
    let query = Query::of(request)?;
    let binding = match query.value("b")? {
        None => None,
        Some(s) => Some(Binding::parse(s, Lwm2mVersion::V1_2).ok_or_else(|| {
            RegistrationError::BadBinding {
                binding: clip(s),
                version: Lwm2mVersion::V1_2.as_str(),
            }
        })?),
    };
    Ok(UpdateRequest {
        id: id.to_owned(),
        lifetime: lifetime(&query)?,
        binding,
        queue: query.flag("Q")?,
        sms: query.value("sms")?.map(str::to_owned),
        objects: object_links(request)?,
        extra: query.extra(&["lt", "b", "Q", "sms"]),
    })
}

/// `1.0`, `1.1`, `1.2` (patch releases such as `1.1.1`, `1.2.2` included). Anything else that
/// is `major.minor[.patch]` is a version we do not support (4.12); the rest is malformed (4.00).
fn parse_version(s: &str) -> Result<Lwm2mVersion, RegistrationError> {
    let v: Version = s
        .parse()
        .map_err(|_| RegistrationError::MalformedVersion(clip(s)))?;
    match (v.major, v.minor) {
        (1, 0) => Ok(Lwm2mVersion::V1_0),
        (1, 1) => Ok(Lwm2mVersion::V1_1),
        (1, 2) => Ok(Lwm2mVersion::V1_2),
        _ => Err(RegistrationError::UnsupportedVersion(clip(s))),
    }
}

/// The link-format payload, if there is one.
fn object_links(request: &Request) -> Result<Option<ObjectLinks>, RegistrationError> {
    if request.payload.is_empty() {
        return Ok(None);
    }
    match request.options.get(option::CONTENT_FORMAT) {
        None => {}
        Some(_) => match request.options.content_format() {
            Some(LINK_FORMAT) => {}
            // An unparsable option value is not a format we support either.
            other => {
                return Err(RegistrationError::UnsupportedContentFormat(
                    other.unwrap_or(u16::MAX),
                ));
            }
        },
    }
    ObjectLinks::parse(&request.payload)
        .map(Some)
        .map_err(RegistrationError::BadObjectLinks)
}

/// Values echoed into diagnostics are cut short: the peer controls them.
fn clip(s: &str) -> String {
    s.chars().take(32).collect()
}

impl From<QueryError<'_>> for RegistrationError {
    fn from(e: QueryError<'_>) -> RegistrationError {
        match e {
            QueryError::NotUtf8 => RegistrationError::NotUtf8,
            QueryError::Duplicate(name) => RegistrationError::DuplicateParameter(name),
            QueryError::BadValue { name, value } => RegistrationError::BadValue {
                name,
                value: clip(value),
            },
        }
    }
}

/// `lt`: decimal seconds that fit 32 bits (the Server object's Lifetime is an integer).
fn lifetime(query: &Query<'_>) -> Result<Option<u32>, RegistrationError> {
    let Some(v) = query.value("lt")? else {
        return Ok(None);
    };
    // `u32::from_str` also takes `+5`; the parameter is digits only.
    v.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| v.parse().ok())
        .flatten()
        .map(Some)
        .ok_or_else(|| RegistrationError::BadValue {
            name: "lt",
            value: clip(v),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use steward_coap::message::Code;
    use steward_objects::ContentFormat;

    const LINKS: &str = "</>;rt=\"oma.lwm2m\";ct=\"110 112\",</1/0>,</3>;ver=1.1,</3/0>";

    fn post(path: &str, query: &[&str], payload: Option<&str>) -> Request {
        let mut r = Request::new(Method::Post).with_path(path);
        for q in query {
            r = r.with_query(q);
        }
        match payload {
            Some(p) => r.with_payload(LINK_FORMAT, p.as_bytes().to_vec()),
            None => r,
        }
    }

    fn register(query: &[&str]) -> Result<RegisterRequest, RegistrationError> {
        match parse(&post("/rd", query, Some(LINKS)))? {
            RegistrationRequest::Register(r) => Ok(r),
            other => panic!("not a Register: {other:?}"),
        }
    }

    fn code(query: &[&str]) -> Code {
        register(query).err().map_or(Code::CREATED, |e| e.code())
    }

    #[test]
    fn register_with_every_parameter() {
        let r = register(&[
            "ep=urn:imei:1234",
            "lt=300",
            "lwm2m=1.2",
            "b=UT",
            "Q",
            "sms=4912345",
            "pid=6:27354b9a",
            "vendor=acme",
            "flag",
        ]);
        let r = r.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.endpoint.as_deref(), Some("urn:imei:1234"));
        assert_eq!(r.lifetime, Some(300));
        assert_eq!(r.version, Lwm2mVersion::V1_2);
        assert_eq!(r.binding.map(|b| b.letters()), Some("UT".into()));
        assert!(r.queue && r.queue_mode());
        assert_eq!(r.sms.as_deref(), Some("4912345"));
        assert_eq!(r.profile_id.as_deref(), Some("6:27354b9a"));
        assert_eq!(
            r.extra,
            vec![
                ("vendor".into(), Some("acme".into())),
                ("flag".into(), None)
            ]
        );
        let links = r.objects.unwrap_or_default();
        assert_eq!(
            links.content_formats(),
            vec![ContentFormat::SenmlJson, ContentFormat::SenmlCbor]
        );
        assert_eq!(links.announced_versions().len(), 2);
    }

    #[test]
    fn defaults() {
        let r = register(&["ep=a"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.version, Lwm2mVersion::V1_0, "absent lwm2m means 1.0");
        assert_eq!((r.lifetime, r.binding, r.queue_mode()), (None, None, false));
        assert_eq!((r.sms, r.profile_id), (None, None));
    }

    #[test]
    fn lwm2m_1_0_queue_inside_binding() {
        for (b, queue) in [("UQ", true), ("SQ", true), ("UQS", true), ("US", false)] {
            let r = register(&["ep=a", "lwm2m=1.0", &format!("b={b}")]);
            let r = r.unwrap_or_else(|e| panic!("{b}: {e}"));
            assert_eq!(r.queue_mode(), queue, "{b}");
            assert!(!r.queue, "no separate Q");
        }
        assert_eq!(code(&["ep=a", "lwm2m=1.0", "b=T"]), Code::BAD_REQUEST);
    }

    #[test]
    fn lwm2m_1_1_separate_queue() {
        let r = register(&["ep=a", "lwm2m=1.1", "b=U", "Q"]);
        assert_eq!(r.map(|r| r.queue_mode()), Ok(true));
        assert_eq!(code(&["ep=a", "lwm2m=1.1", "b=UM"]), Code::BAD_REQUEST);
        assert_eq!(code(&["ep=a", "lwm2m=1.1", "Q=1"]), Code::BAD_REQUEST);
    }

    #[test]
    fn versions() {
        for v in ["1.0", "1.1", "1.1.1", "1.2", "1.2.2"] {
            assert_eq!(code(&["ep=a", &format!("lwm2m={v}")]), Code::CREATED, "{v}");
        }
        for v in ["1.3", "2.0", "0.9", "1.3.0"] {
            let c = code(&["ep=a", &format!("lwm2m={v}")]);
            assert_eq!(c, Code::PRECONDITION_FAILED, "{v}");
        }
        for v in ["", "abc", "1", "1.", "1.x", "1.2.3.4", "01234.0"] {
            let c = code(&["ep=a", &format!("lwm2m={v}")]);
            assert_eq!(c, Code::BAD_REQUEST, "{v:?}");
        }
        assert_eq!(code(&["ep=a", "lwm2m"]), Code::BAD_REQUEST);
        // An unsupported version wins over other problems in the same request.
        assert_eq!(code(&["lt=x", "lwm2m=2.0"]), Code::PRECONDITION_FAILED);
    }

    #[test]
    fn endpoint_rules() {
        assert_eq!(code(&[]), Code::BAD_REQUEST, "1.0 needs ep");
        assert_eq!(code(&["lwm2m=1.0"]), Code::BAD_REQUEST);
        let r = register(&["lwm2m=1.1"]).map(|r| r.endpoint);
        assert_eq!(r, Ok(None), "1.1 may omit ep");
        assert_eq!(code(&["ep="]), Code::BAD_REQUEST);
        assert_eq!(code(&["ep"]), Code::BAD_REQUEST);
    }

    #[test]
    fn bad_parameters() {
        let dup = register(&["ep=a", "ep=b"]);
        assert_eq!(dup.err(), Some(RegistrationError::DuplicateParameter("ep")));
        assert_eq!(code(&["ep=a", "lt=60", "lt=60"]), Code::BAD_REQUEST);
        assert_eq!(code(&["ep=a", "Q", "Q", "lwm2m=1.1"]), Code::BAD_REQUEST);
        assert_eq!(code(&["ep=a", "lwm2m=1.1", "lwm2m=1.1"]), Code::BAD_REQUEST);
        for lt in ["lt=", "lt=-1", "lt=+5", "lt=1e3", "lt=4294967296", "lt"] {
            assert_eq!(code(&["ep=a", lt]), Code::BAD_REQUEST, "{lt}");
        }
        assert_eq!(code(&["ep=a", "lt=0"]), Code::CREATED, "0 = no expiry");
        assert_eq!(code(&["ep=a", "b="]), Code::BAD_REQUEST);
        assert_eq!(code(&["ep=a", "sms="]), Code::BAD_REQUEST);
        // Unknown parameters, even repeated, are kept and ignored.
        assert_eq!(code(&["ep=a", "x=1", "x=2"]), Code::CREATED);
    }

    #[test]
    fn payload_rules() {
        let no_payload = parse(&post("/rd", &["ep=a"], None));
        assert_eq!(
            no_payload.err(),
            Some(RegistrationError::MissingObjectLinks)
        );
        let pid_only = parse(&post("/rd", &["ep=a", "lwm2m=1.2", "pid=6:ab"], None));
        assert!(matches!(
            pid_only,
            Ok(RegistrationRequest::Register(RegisterRequest {
                objects: None,
                ..
            }))
        ));
        let json = Request::new(Method::Post)
            .with_path("/rd")
            .with_query("ep=a")
            .with_payload(50, LINKS.as_bytes().to_vec());
        let e = parse(&json).err().map(|e| e.code());
        assert_eq!(e, Some(Code::UNSUPPORTED_CONTENT_FORMAT));
        let mut no_ct = post("/rd", &["ep=a"], None);
        no_ct.payload = b"</1/0>".to_vec();
        assert!(
            parse(&no_ct).is_ok(),
            "a missing Content-Format is tolerated"
        );
        let bad = parse(&post("/rd", &["ep=a"], Some("</1/0"))).err();
        assert!(matches!(bad, Some(RegistrationError::BadObjectLinks(_))));
        assert_eq!(bad.map(|e| e.code()), Some(Code::BAD_REQUEST));
    }

    #[test]
    fn update_and_deregister() {
        let u = parse(&post(
            "/rd/abc",
            &["lt=60", "b=UQ", "sms=1", "ep=x"],
            Some("</1/0>"),
        ));
        let Ok(RegistrationRequest::Update(u)) = u else {
            panic!("{u:?}")
        };
        assert_eq!(u.id, "abc");
        assert_eq!(u.lifetime, Some(60));
        assert_eq!(
            u.binding.map(|b| (b.letters(), b.queue)),
            Some(("U".into(), true))
        );
        assert_eq!(u.sms.as_deref(), Some("1"));
        assert_eq!(u.extra, vec![("ep".into(), Some("x".into()))]);
        assert!(u.objects.is_some());
        let bare = parse(&post("/rd/abc", &[], None));
        assert_eq!(
            bare,
            Ok(RegistrationRequest::Update(UpdateRequest::new("abc")))
        );
        let d = parse(&Request::new(Method::Delete).with_path("/rd/abc"));
        assert_eq!(
            d,
            Ok(RegistrationRequest::Deregister(DeregisterRequest {
                id: "abc".into()
            }))
        );
        assert_eq!(
            parse(&post("/rd/abc", &["lt=x"], None)).map_err(|e| e.code()),
            Err(Code::BAD_REQUEST)
        );
    }

    #[test]
    fn routing() {
        let get = parse(&Request::new(Method::Get).with_path("/rd"));
        assert_eq!(get.map_err(|e| e.code()), Err(Code::METHOD_NOT_ALLOWED));
        let put = parse(&Request::new(Method::Put).with_path("/rd/x"));
        assert_eq!(put.map_err(|e| e.code()), Err(Code::METHOD_NOT_ALLOWED));
        let deep = parse(&post("/rd/x/y", &[], None));
        assert_eq!(deep.map_err(|e| e.code()), Err(Code::NOT_FOUND));
        let delete_rd = parse(&Request::new(Method::Delete).with_path("/rd"));
        assert_eq!(
            delete_rd.map_err(|e| e.code()),
            Err(Code::METHOD_NOT_ALLOWED)
        );
        assert!(is_registration_path(&post("/rd/x", &[], None)));
        assert!(!is_registration_path(&post("/dp", &[], None)));
        assert!(!is_registration_path(&post("/", &[], None)));
        let mut not_utf8 = Request::new(Method::Post).with_path("/rd");
        not_utf8
            .options
            .push(option::URI_QUERY, vec![b'e', b'p', b'=', 0xff]);
        assert_eq!(parse(&not_utf8).err(), Some(RegistrationError::NotUtf8));
    }

    #[test]
    fn builders_write_what_the_parser_reads() {
        let mut r = RegisterRequest::new(
            Some("dev"),
            Lwm2mVersion::V1_0,
            ObjectLinks::new().with_instance(1, 0),
        );
        r.binding = Binding::parse("UQ", Lwm2mVersion::V1_0);
        r.lifetime = Some(30);
        let req = r.to_request();
        assert_eq!(
            req.options.uri_query(),
            Some(vec!["ep=dev", "lt=30", "lwm2m=1.0", "b=UQ"])
        );
        assert_eq!(parse(&req), Ok(RegistrationRequest::Register(r)));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;
    use steward_objects::ContentFormat;

    fn any_param() -> impl Strategy<Value = String> {
        prop_oneof![
            "(ep|lt|lwm2m|b|Q|sms|pid|x)(=[ -~]{0,12})?",
            "[ -~]{0,20}",
            "lwm2m=[0-9.]{0,6}",
            "b=[UTSNMHQX]{0,4}",
            "lt=[0-9+-]{0,11}",
        ]
    }

    fn version() -> impl Strategy<Value = Lwm2mVersion> {
        prop_oneof![
            Just(Lwm2mVersion::V1_0),
            Just(Lwm2mVersion::V1_1),
            Just(Lwm2mVersion::V1_2)
        ]
    }

    fn links() -> impl Strategy<Value = ObjectLinks> {
        (
            proptest::option::of(prop_oneof![Just("/"), Just("/lwm2m")]),
            proptest::collection::vec((0u16..40, proptest::option::of(0u16..3)), 1..6),
        )
            .prop_map(|(root, objects)| {
                let mut l = ObjectLinks::new();
                if let Some(root) = root {
                    l = l.with_root(root, &[ContentFormat::SenmlCbor, ContentFormat::Tlv]);
                }
                for (o, i) in objects {
                    l = match i {
                        Some(i) => l.with_instance(o, i),
                        None => l.with_object(o, None),
                    };
                }
                l
            })
    }

    prop_compose! {
        fn register_request()(
            version in version(),
            ep in "[a-zA-Z0-9:_.-]{1,24}",
            omit_ep in any::<bool>(),
            lifetime in proptest::option::of(any::<u32>()),
            letters in proptest::sample::subsequence(vec!['U', 'T', 'S', 'N', 'M', 'H'], 0..=3),
            binding_queue in any::<bool>(),
            queue in any::<bool>(),
            sms in proptest::option::of("[0-9]{1,15}"),
            pid in proptest::option::of("[0-9]:[0-9a-f]{8}"),
            extra in proptest::collection::vec(("z[a-z]{0,5}", proptest::option::of("[a-z0-9]{0,5}")), 0..3),
            objects in links(),
        ) -> RegisterRequest {
            let transports: Vec<_> = letters
                .iter()
                .filter_map(|c| super::super::binding::Transport::ALL.into_iter().find(|t| t.letter() == *c))
                .collect();
            let binding = (!transports.is_empty())
                .then(|| Binding::of(&transports, binding_queue))
                .filter(|b| b.fits(version));
            RegisterRequest {
                endpoint: (!omit_ep || version == Lwm2mVersion::V1_0).then_some(ep),
                lifetime,
                version,
                binding,
                queue,
                sms,
                profile_id: pid,
                objects: Some(objects),
                extra,
            }
        }
    }

    proptest! {
        #[test]
        fn never_panics(
            params in proptest::collection::vec(any_param(), 0..8),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            id in proptest::option::of("[ -~]{0,8}"),
            delete in any::<bool>(),
        ) {
            let method = if delete { Method::Delete } else { Method::Post };
            let mut r = Request::new(method).with_path("/rd");
            if let Some(id) = id {
                r.options.push(option::URI_PATH, id.into_bytes());
            }
            for p in params {
                r = r.with_query(&p);
            }
            r.payload = payload;
            if let Err(e) = parse(&r) {
                // Every refusal has a client-error code and a printable reason.
                prop_assert_eq!(e.code().class(), 4);
                prop_assert!(!e.to_string().is_empty());
            }
        }

        #[test]
        fn register_round_trips(r in register_request()) {
            let parsed = parse(&r.to_request());
            prop_assert_eq!(parsed, Ok(RegistrationRequest::Register(r)));
        }

        #[test]
        fn update_round_trips(
            id in "[a-z2-7]{10}",
            lifetime in proptest::option::of(any::<u32>()),
            queue in any::<bool>(),
            sms in proptest::option::of("[0-9]{1,15}"),
            objects in proptest::option::of(links()),
        ) {
            let u = UpdateRequest { lifetime, queue, sms, objects, ..UpdateRequest::new(&id) };
            prop_assert_eq!(parse(&u.to_request()), Ok(RegistrationRequest::Update(u)));
        }
    }
}
