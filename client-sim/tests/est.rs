//! Security Mode 4 (EST) and the OCSP check of the server certificate, in simulated time: the
//! scripted peer plays the bootstrap server with the real steward-pki pieces (a `Ca`, an
//! `EstService` with a small Enroller on `Ca::issue`, an `OcspResponder`), and the LwM2M
//! server (registration answers only). Its stack slices answers into 256-byte blocks so that
//! every certificate answer goes Block2.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::{Cell, RefCell};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openssl::pkey::PKey;
use openssl::stack::Stack as SslStack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509, X509StoreContext};
use steward_client::bootstrap::Security;
use steward_client::bootstrap::account::mode;
use steward_client::est::{
    EstConfig, EstEvent, EstFailure, EstStep, OcspCheck, RejectReason, credentials,
};
use steward_client::registration::RegistrationEvent;
use steward_client::state::{CredentialPaths, StateStore};
use steward_client::{BootstrapServer, DeviceConfig, DeviceEvent, SimDevice, harness};
use steward_coap::endpoint::Event;
use steward_coap::message::{Code, Method, Request, Response, encode_uint, option};
use steward_coap::sim::{Link, Pair, Side};
use steward_coap::stack::StackConfig;
use steward_objects::{ContentFormat, Instance, Node, Path, Resource, Value, Version, codec};
use steward_pki::ca::{Ca, CaNames, IssueParams, Serial};
use steward_pki::csr::{Csr, CsrLimits};
use steward_pki::est::{
    EncodeError, Enroller, EstClient, EstConfig as ServiceConfig, EstContext, EstEncoder,
    EstRefusal, EstService, ServerKey,
};
use steward_pki::profile::Profile;
use steward_pki::revocation::ocsp::{OcspResponder, request_for};
use steward_pki::revocation::{CertStatus, RevocationReason, normalize_serial, serial_of};

const BS_URI: &str = "coaps://bs.example:5784";
const SERVER_URI: &str = "coaps://lwm2m.example:5684";
const ENDPOINT: &str = "dev1";

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The test Enroller: CSR CN must be the PSK identity; `refusals` answers 4.03 that many
/// times first.
struct TestEnroller<'a> {
    ca: &'a Ca,
    refusals: Cell<u32>,
    issued: RefCell<Vec<Vec<u8>>>,
}

impl TestEnroller<'_> {
    fn issue(&self, csr_der: &[u8], current: Option<&[u8]>) -> Result<Vec<u8>, EstRefusal> {
        if self.refusals.get() > 0 {
            self.refusals.set(self.refusals.get() - 1);
            return Err(EstRefusal::Forbidden("not on the allow-list".into()));
        }
        let csr = Csr::from_der(csr_der, CsrLimits::default())
            .map_err(|e| EstRefusal::BadRequest(e.to_string()))?;
        if csr.common_name() != Some(ENDPOINT) {
            return Err(EstRefusal::BadRequest("CN is not the endpoint".into()));
        }
        let params = IssueParams::new(Serial::random().unwrap(), unix_now() - 60);
        let issued = match current {
            None => self.ca.issue(&csr, &Profile::device(), params),
            Some(current) => self
                .ca
                .reissue_keeping(current, &csr, &Profile::device(), params),
        }
        .map_err(|e| EstRefusal::Internal(e.to_string()))?;
        self.issued.borrow_mut().push(issued.der.clone());
        Ok(issued.der)
    }
}

impl Enroller for TestEnroller<'_> {
    fn ca_certs(&self, _ctx: &EstContext<'_>) -> Result<Vec<Vec<u8>>, EstRefusal> {
        Ok(self.ca.chain_der().to_vec())
    }
    fn enroll(&self, ctx: &EstContext<'_>, csr_der: &[u8]) -> Result<Vec<u8>, EstRefusal> {
        assert!(
            matches!(ctx.client, EstClient::Psk { identity } if identity == ENDPOINT.as_bytes())
        );
        self.issue(csr_der, None)
    }
    fn reenroll(&self, ctx: &EstContext<'_>, csr_der: &[u8]) -> Result<Vec<u8>, EstRefusal> {
        let EstClient::Certificate { chain, .. } = ctx.client else {
            return Err(EstRefusal::Unauthorized("no certificate".into()));
        };
        self.issue(csr_der, chain.first().map(Vec::as_slice))
    }
    fn server_keygen(&self, _: &EstContext<'_>, _: &[u8]) -> Result<ServerKey, EstRefusal> {
        Err(EstRefusal::NotFound("no".into()))
    }
    fn csr_attrs(&self, _: &EstContext<'_>) -> Result<Vec<u8>, EstRefusal> {
        Ok(vec![0x30, 0x00])
    }
}

struct Encoder;

impl EstEncoder for Encoder {
    fn certs_only(&self, certs: &[Vec<u8>]) -> Result<Vec<u8>, EncodeError> {
        steward_pki::pkcs7::certs_only(certs).map_err(|e| EncodeError(e.to_string()))
    }
    fn multipart(&self, parts: &[(u16, &[u8])]) -> Result<Vec<u8>, EncodeError> {
        let parts: Vec<_> = parts
            .iter()
            .map(|(cf, p)| steward_pki::multipart::Part::new(*cf, p.to_vec()))
            .collect();
        steward_pki::multipart::encode(&parts).map_err(|e| EncodeError(e.to_string()))
    }
}

/// How the OCSP endpoint misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ocsp {
    Honest,
    /// Answers a request of its own, with another nonce (a replayed response).
    WrongNonce,
}

/// The bootstrap server (EST, OCSP) and LwM2M server.
struct Peer<'a> {
    est: EstService<&'a TestEnroller<'a>, Encoder>,
    responder: OcspResponder,
    ca: &'a Ca,
    server_cert: X509,
    revoked: Vec<Vec<u8>>,
    ocsp: Ocsp,
    /// The device's current certificate, as a DTLS layer would report it on `/sren`.
    client_cert: Option<Vec<u8>>,
    paths: Vec<String>,
    sen: Vec<Request>,
    registers: usize,
}

impl Peer<'_> {
    fn answer(&mut self, request: &Request) -> Response {
        let path = request.path_string();
        self.paths.push(path.clone());
        if path.starts_with("/.well-known/est/") {
            if path.ends_with("/sen") {
                self.sen.push(request.clone());
            }
            let client = match &self.client_cert {
                Some(cert) if path.ends_with("/sren") => EstClient::Certificate {
                    common_name: Some(ENDPOINT.into()),
                    chain: vec![cert.clone()],
                },
                _ => EstClient::Psk {
                    identity: ENDPOINT.as_bytes().to_vec(),
                },
            };
            let answer = self.est.handle_coap(request, Some(client));
            let mut response = Response::new(answer.code);
            match answer.content_format {
                Some(cf) => response = response.with_payload(cf, answer.payload),
                None => response.payload = answer.payload,
            }
            if let Some(max_age) = answer.max_age {
                response = response.with_option(option::MAX_AGE, encode_uint(max_age));
            }
            return response;
        }
        match (request.method, path.as_str()) {
            (Method::Post, "/bs") => Response::new(Code::CHANGED),
            (Method::Post, "/ocsp") => {
                assert_eq!(request.options.content_format(), None);
                let revoked = self.revoked.clone();
                let lookup = move |serial: &[u8]| {
                    if revoked.iter().any(|r| r == normalize_serial(serial)) {
                        CertStatus::Revoked {
                            revoked_at: SystemTime::now() - Duration::from_secs(10),
                            reason: Some(RevocationReason::KeyCompromise),
                        }
                    } else {
                        CertStatus::Good
                    }
                };
                let body = match self.ocsp {
                    Ocsp::Honest => request.payload.clone(),
                    Ocsp::WrongNonce => request_for(
                        &self.server_cert,
                        self.ca.issuing_cert(),
                        Some(b"someone else's nonce"),
                    )
                    .unwrap(),
                };
                let mut response = Response::new(Code::CHANGED);
                response.payload = self.responder.respond(&body, &lookup, SystemTime::now());
                response
            }
            (Method::Post, "/rd") => {
                self.registers += 1;
                Response::new(Code::CREATED)
                    .with_option(option::LOCATION_PATH, b"rd".to_vec())
                    .with_option(option::LOCATION_PATH, b"1".to_vec())
            }
            (Method::Post, "/rd/1") => Response::new(Code::CHANGED),
            _ => Response::new(Code::NOT_FOUND),
        }
    }

    fn count(&self, path: &str) -> usize {
        self.paths.iter().filter(|p| *p == path).count()
    }
}

/// The CA and the LwM2M server's certificate it issued.
struct Pki {
    _dir: tempfile::TempDir,
    ca: Ca,
    server_cert: X509,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::init(
            &dir.path().join("ca"),
            &CaNames::default(),
            unix_now() - 3600,
        )
        .unwrap();
        let key = credentials::new_key().unwrap();
        let csr = Csr::from_der(
            &credentials::csr(&key, "lwm2m.example").unwrap(),
            CsrLimits::default(),
        )
        .unwrap();
        let params = IssueParams::new(Serial::random().unwrap(), unix_now() - 60);
        let issued = ca.issue(&csr, &Profile::server(), params).unwrap();
        Pki {
            _dir: dir,
            server_cert: X509::from_der(&issued.der).unwrap(),
            ca,
        }
    }

    fn enroller(&self, refusals: u32) -> TestEnroller<'_> {
        TestEnroller {
            ca: &self.ca,
            refusals: Cell::new(refusals),
            issued: RefCell::new(Vec::new()),
        }
    }

    fn peer<'a>(&'a self, enroller: &'a TestEnroller<'a>) -> Peer<'a> {
        Peer {
            est: EstService::new(enroller, Encoder, ServiceConfig::default()),
            responder: OcspResponder::new(self.ca.issuing_cert(), self.ca.issuing_key(), &[])
                .unwrap(),
            ca: &self.ca,
            server_cert: self.server_cert.clone(),
            revoked: Vec::new(),
            ocsp: Ocsp::Honest,
            client_cert: None,
            paths: Vec::new(),
            sen: Vec::new(),
            registers: 0,
        }
    }
}

struct Setup<'a> {
    pair: Pair,
    device: SimDevice<Side>,
    peer: Peer<'a>,
    events: Vec<DeviceEvent>,
}

impl<'a> Setup<'a> {
    fn new(peer: Peer<'a>, ocsp: OcspCheck, seed: u64) -> Setup<'a> {
        let mut config = DeviceConfig::new(ENDPOINT, Version::V1_1);
        config.bootstrap = Some(BootstrapServer {
            uri: BS_URI.into(),
            security: Security::NoSec,
        });
        config.clock = i64::try_from(unix_now()).unwrap();
        let mut device = SimDevice::new(config, Side::Server);
        let mut est = EstConfig::new(ENDPOINT);
        est.ocsp = ocsp;
        device.set_est(Some(est));
        let server = StackConfig {
            block_szx: 4,
            ..StackConfig::default()
        };
        Setup {
            pair: Pair::with_configs(Link::perfect(), seed, StackConfig::default(), server),
            device,
            peer,
            events: Vec::new(),
        }
    }

    fn run(&mut self, duration: Duration) {
        let peer = &mut self.peer;
        harness::run(&mut self.pair, &mut self.device, duration, |r| {
            peer.answer(r)
        });
        self.events
            .extend(std::iter::from_fn(|| self.device.poll_event()));
    }

    fn call(&mut self, request: Request) -> Response {
        let id = self.pair.server_request(request, true);
        for _ in 0..100 {
            self.run(Duration::from_millis(50));
            let at = self
                .pair
                .server_events
                .iter()
                .position(|e| matches!(e, Event::Response { id: i, .. } if *i == id));
            if let Some(at) = at
                && let Event::Response { response, .. } = self.pair.server_events.remove(at)
            {
                return response;
            }
        }
        panic!("no answer");
    }

    /// Bootstrap: a mode-4 account for the LwM2M server with its certificate in /0/1/4.
    fn bootstrap_mode_4(&mut self) {
        self.device.start();
        self.run(Duration::from_secs(1));
        assert!(self.device.bootstrap().is_serving());
        assert_eq!(self.call(delete("/")).code, Code::DELETED);
        let security = instance([
            (0, Value::String(SERVER_URI.into())),
            (1, Value::Boolean(false)),
            (2, Value::Integer(mode::CERTIFICATE_WITH_EST)),
            (4, Value::Opaque(self.peer.server_cert.to_der().unwrap())),
            (10, Value::Integer(101)),
        ]);
        assert_eq!(self.call(write("/0/1", &security)).code, Code::CHANGED);
        let server = instance([(0, Value::Integer(101)), (1, Value::Integer(300))]);
        assert_eq!(self.call(write("/1/0", &server)).code, Code::CHANGED);
        assert_eq!(self.call(finish()).code, Code::CHANGED);
    }

    fn opaque(&self, rid: u16) -> Vec<u8> {
        match self.device.device().node(&Path::Resource(0, 1, rid)) {
            Some(Node::Resource(Resource::Single(Value::Opaque(b)))) => b,
            other => panic!("/0/1/{rid}: {other:?}"),
        }
    }

    fn registered(&self) -> bool {
        self.events.iter().any(|e| {
            matches!(
                e,
                DeviceEvent::Registration(RegistrationEvent::Registered { .. })
            )
        })
    }

    fn rejections(&self) -> Vec<RejectReason> {
        self.events
            .iter()
            .filter_map(|e| match e {
                DeviceEvent::ServerCertificateRejected { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }
}

fn instance<const N: usize>(values: [(u16, Value); N]) -> Instance {
    Instance {
        resources: values
            .into_iter()
            .map(|(r, v)| (r, Resource::Single(v)))
            .collect(),
    }
}

fn write(path: &str, inst: &Instance) -> Request {
    let p: Path = path.parse().unwrap();
    let body = codec::encode(ContentFormat::SenmlCbor, &p, &Node::Instance(inst.clone())).unwrap();
    Request::new(Method::Put)
        .with_path(path)
        .with_payload(ContentFormat::SenmlCbor.code(), body)
}

fn delete(path: &str) -> Request {
    Request::new(Method::Delete).with_path(path)
}

fn finish() -> Request {
    Request::new(Method::Post).with_path("/bs")
}

/// `openssl verify`: `leaf` chains to the CA's root, with the issuing CA as intermediate.
fn chains_to(leaf: &X509, ca: &Ca) -> bool {
    let mut store = X509StoreBuilder::new().unwrap();
    store.add_cert(ca.root_cert().to_owned()).unwrap();
    let store = store.build();
    let mut chain = SslStack::new().unwrap();
    chain.push(ca.issuing_cert().to_owned()).unwrap();
    let mut ctx = X509StoreContext::new().unwrap();
    ctx.init(&store, leaf, &chain, |c| c.verify_cert()).unwrap()
}

#[test]
fn enrolment_gives_a_certificate_for_the_device_key_then_registers() {
    let pki = Pki::new();
    let enroller = pki.enroller(0);
    let mut s = Setup::new(pki.peer(&enroller), OcspCheck::default(), 1);
    let dir = tempfile::tempdir().unwrap();
    s.device
        .attach_state(StateStore::new(dir.path()), CredentialPaths::default())
        .unwrap();
    s.bootstrap_mode_4();
    s.run(Duration::from_secs(5));

    // crts → sen → ocsp → register, in that order.
    let order: Vec<_> = s
        .peer
        .paths
        .iter()
        .filter(|p| p.starts_with("/.well-known") || *p == "/ocsp" || *p == "/rd")
        .cloned()
        .collect();
    assert_eq!(
        order,
        [
            "/.well-known/est/crts",
            "/.well-known/est/sen",
            "/ocsp",
            "/rd"
        ]
    );
    let sen = &s.peer.sen[0];
    assert_eq!(sen.options.content_format(), Some(286));
    assert_eq!(sen.options.accept(), Some(281));
    assert!(
        s.pair.server.stack_stats().block2_cache_hits > 0,
        "the certificate answers went Block2"
    );

    // /0/1 now holds mode 2 with the issued certificate and the device's own key.
    let d = s.device.device();
    assert_eq!(
        d.node(&Path::Resource(0, 1, 2)),
        Some(Node::Resource(Resource::Single(Value::Integer(
            mode::CERTIFICATE
        ))))
    );
    let cert = X509::from_der(&s.opaque(3)).unwrap();
    let key = PKey::private_key_from_der(&s.opaque(5)).unwrap();
    assert!(cert.public_key().unwrap().public_eq(&key));
    assert_eq!(s.opaque(3), enroller.issued.borrow()[0]);
    assert_eq!(s.opaque(4), pki.server_cert.to_der().unwrap());
    assert!(chains_to(&cert, &pki.ca));
    let cn = cert
        .subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .unwrap()
        .data()
        .as_slice()
        .to_vec();
    assert_eq!(cn, ENDPOINT.as_bytes());

    assert!(s.registered());
    assert!(
        s.events
            .iter()
            .any(|e| matches!(e, DeviceEvent::Est(EstEvent::ServerCertificateAccepted)))
    );
    assert!(s.events.iter().any(|e| matches!(e, DeviceEvent::Bootstrapped { account } if account.security.mode() == mode::CERTIFICATE)));
    // The PEM files next to the state file.
    let stored = s
        .events
        .iter()
        .find_map(|e| match e {
            DeviceEvent::CredentialsStored { paths } => Some(paths.clone()),
            _ => None,
        })
        .expect("credentials stored");
    let pem = std::fs::read(&stored.certificate).unwrap();
    assert_eq!(X509::from_pem(&pem).unwrap().to_der().unwrap(), s.opaque(3));
    let pem_key = std::fs::read(&stored.key).unwrap();
    assert!(
        PKey::private_key_from_pem(&pem_key)
            .unwrap()
            .public_eq(&key)
    );
    assert_eq!(
        X509::stack_from_pem(&std::fs::read(&stored.ca).unwrap())
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn a_refused_enrolment_is_a_typed_failure_and_is_retried() {
    let pki = Pki::new();
    let enroller = pki.enroller(1);
    let mut s = Setup::new(pki.peer(&enroller), OcspCheck::default(), 2);
    s.bootstrap_mode_4();
    s.run(Duration::from_secs(2));
    let failure = s.events.iter().find_map(|e| match e {
        DeviceEvent::Est(EstEvent::Failed { reason, retry_in }) => {
            Some((reason.clone(), *retry_in))
        }
        _ => None,
    });
    let Some((EstFailure::Refused { step, code, .. }, retry_in)) = failure else {
        panic!("{failure:?}");
    };
    assert_eq!(
        (step, code, retry_in),
        (EstStep::Enrol, Code::FORBIDDEN, Duration::from_secs(5))
    );
    assert_eq!(s.peer.registers, 0);
    assert!(
        s.device.is_bootstrapping(),
        "still with the bootstrap server"
    );
    // After the back-off: a new CSR (new key), accepted.
    s.run(Duration::from_secs(6));
    assert_eq!(s.peer.sen.len(), 2);
    assert_ne!(s.peer.sen[0].payload, s.peer.sen[1].payload);
    assert!(s.registered());
    assert!(!s.device.is_bootstrapping());
}

#[test]
fn a_revoked_server_certificate_is_refused_and_checked_again_later() {
    let pki = Pki::new();
    let enroller = pki.enroller(0);
    let mut peer = pki.peer(&enroller);
    peer.revoked.push(serial_of(&pki.server_cert).unwrap());
    let mut s = Setup::new(peer, OcspCheck::default(), 3);
    s.bootstrap_mode_4();
    s.run(Duration::from_secs(3));
    assert_eq!(s.peer.registers, 0, "fail closed");
    let rejections = s.rejections();
    assert!(
        matches!(
            rejections.first(),
            Some(RejectReason::Revoked {
                reason: Some(RevocationReason::KeyCompromise),
                ..
            })
        ),
        "{rejections:?}"
    );
    assert_eq!(s.peer.count("/ocsp"), 1);
    // The enrolment itself is kept: the retry asks /crts and OCSP again, not /sen.
    s.run(Duration::from_secs(6));
    assert_eq!(s.peer.count("/ocsp"), 2);
    assert_eq!(s.peer.sen.len(), 1);
    assert_eq!(s.peer.registers, 0);
    // Un-revoked (e.g. a mistake corrected): the next check passes and the device registers.
    s.peer.revoked.clear();
    s.run(Duration::from_secs(11));
    assert!(s.registered());
    assert_eq!(s.peer.sen.len(), 1);
}

#[test]
fn a_response_with_another_nonce_is_refused() {
    let pki = Pki::new();
    let enroller = pki.enroller(0);
    let mut peer = pki.peer(&enroller);
    peer.ocsp = Ocsp::WrongNonce;
    let mut s = Setup::new(peer, OcspCheck::default(), 4);
    s.bootstrap_mode_4();
    s.run(Duration::from_secs(3));
    assert_eq!(s.peer.registers, 0);
    let rejections = s.rejections();
    assert!(
        matches!(rejections.first(), Some(RejectReason::InvalidResponse(why)) if why.contains("nonce")),
        "{rejections:?}"
    );
}

#[test]
fn an_ocsp_error_answer_is_refused() {
    let pki = Pki::new();
    let enroller = pki.enroller(0);
    // The responder is not where the device looks: 4.04.
    let peer = pki.peer(&enroller);
    let mut s = Setup::new(
        peer,
        OcspCheck::On {
            path: "/no-such-ocsp".into(),
        },
        5,
    );
    s.bootstrap_mode_4();
    s.run(Duration::from_secs(3));
    assert_eq!(s.peer.registers, 0);
    assert_eq!(
        s.rejections().first(),
        Some(&RejectReason::Refused(Code::NOT_FOUND))
    );
}

#[test]
fn without_the_check_the_device_enrols_and_registers() {
    let pki = Pki::new();
    let enroller = pki.enroller(0);
    let mut s = Setup::new(pki.peer(&enroller), OcspCheck::Off, 6);
    s.bootstrap_mode_4();
    s.run(Duration::from_secs(3));
    assert_eq!(s.peer.count("/ocsp"), 0);
    assert!(s.registered());
}

#[test]
fn reenrolment_keeps_the_subject_and_changes_the_key() {
    let pki = Pki::new();
    let enroller = pki.enroller(0);
    let mut s = Setup::new(pki.peer(&enroller), OcspCheck::default(), 7);
    s.bootstrap_mode_4();
    s.run(Duration::from_secs(3));
    assert!(s.registered());
    let old_cert = s.opaque(3);
    let old_key = s.opaque(5);
    s.peer.client_cert = Some(old_cert.clone());
    s.events.clear();

    s.device.reenrol().unwrap();
    assert!(s.device.is_reenrolling());
    s.run(Duration::from_secs(3));
    assert!(s.peer.paths.iter().any(|p| p == "/.well-known/est/sren"));
    let new_cert = X509::from_der(&s.opaque(3)).unwrap();
    let new_key = PKey::private_key_from_der(&s.opaque(5)).unwrap();
    assert_ne!(s.opaque(3), old_cert);
    assert_ne!(s.opaque(5), old_key);
    assert!(new_cert.public_key().unwrap().public_eq(&new_key));
    assert_eq!(
        new_cert.subject_name().to_der().unwrap(),
        X509::from_der(&old_cert)
            .unwrap()
            .subject_name()
            .to_der()
            .unwrap()
    );
    assert!(chains_to(&new_cert, &pki.ca));
    assert!(s.registered(), "registers afresh with the new certificate");
    assert!(!s.device.is_reenrolling());
}

#[test]
fn a_restarted_device_checks_the_server_certificate_before_registering() {
    let pki = Pki::new();
    let enroller = pki.enroller(0);
    let mut s = Setup::new(pki.peer(&enroller), OcspCheck::default(), 8);
    let dir = tempfile::tempdir().unwrap();
    s.device
        .attach_state(StateStore::new(dir.path()), CredentialPaths::default())
        .unwrap();
    s.bootstrap_mode_4();
    s.run(Duration::from_secs(3));
    assert!(s.registered());

    // Power cycle: the persisted mode-2 account is used, but only after a fresh OCSP check;
    // meanwhile the server certificate was revoked.
    s.peer.revoked.push(serial_of(&pki.server_cert).unwrap());
    let mut config = DeviceConfig::new(ENDPOINT, Version::V1_1);
    config.bootstrap = Some(BootstrapServer {
        uri: BS_URI.into(),
        security: Security::NoSec,
    });
    config.clock = i64::try_from(unix_now()).unwrap();
    let mut device = SimDevice::new(config, Side::Server);
    device.set_est(Some(EstConfig::new(ENDPOINT)));
    assert!(
        device
            .attach_state(StateStore::new(dir.path()), CredentialPaths::default())
            .unwrap()
    );
    s.device = device;
    s.events.clear();
    let (registers, ocsp) = (s.peer.registers, s.peer.count("/ocsp"));
    s.device.start();
    s.run(Duration::from_secs(3));
    assert_eq!(s.peer.count("/ocsp"), ocsp + 1);
    assert_eq!(
        s.peer.registers, registers,
        "no Register to a revoked server"
    );
    assert!(matches!(
        s.rejections().first(),
        Some(RejectReason::Revoked { .. })
    ));
    assert_eq!(s.peer.sen.len(), 1, "no new enrolment");
}
