//! EST-coaps requests as they arrive: a CoAP datagram that decodes to a request is read with
//! `EstRequest::from_coap` and answered by `EstService::handle` with a fixed Enroller, which
//! never panics and keeps the handler's invariants (those of tests/est_fuzz.rs).
//!
//! The peer's DTLS identity comes from the low two bits of the message ID: none, PSK `dev-1`,
//! a certificate for `dev-1` (the leaf of testdata/), or an unknown PSK identity.
#![no_main]

mod shared;

use std::sync::OnceLock;

use steward_coap::message::{Code, Request};
use steward_coap::wire::{self, Kind};
use steward_pki::csr::{Csr, CsrLimits};
use steward_pki::est::{
    AuditOutcome, EncodeError, Enroller, EstClient, EstConfig, EstContext, EstEncoder, EstRefusal,
    EstRequest, EstResponse, EstService, Route, ServerKey, route,
};
use steward_pki::multipart::{self, Part};
use steward_pki::pkcs7;

/// Knows the endpoint `dev-1` and the label `tpm`; "issues" the fixed leaf for any valid CSR
/// whose CN names the client, so that the success paths and the real encoders run.
struct FixedEnroller;

impl FixedEnroller {
    fn endpoint(client: &EstClient) -> Result<&'static str, EstRefusal> {
        let name: &[u8] = match client {
            EstClient::Psk { identity } => identity,
            EstClient::Certificate { common_name, .. } => {
                common_name.as_deref().unwrap_or_default().as_bytes()
            }
        };
        match name {
            b"dev-1" => Ok("dev-1"),
            _ => Err(EstRefusal::Unauthorized("unknown client".into())),
        }
    }

    fn issue(ctx: &EstContext<'_>, csr_der: &[u8]) -> Result<Vec<u8>, EstRefusal> {
        let endpoint = Self::endpoint(ctx.client)?;
        let csr = Csr::from_der(csr_der, CsrLimits::default())
            .map_err(|e| EstRefusal::BadRequest(e.to_string()))?;
        let cn = csr
            .require_common_name()
            .map_err(|e| EstRefusal::BadRequest(e.to_string()))?;
        if cn != endpoint {
            return Err(EstRefusal::BadRequest("CSR names another endpoint".into()));
        }
        Ok(shared::fixture().leaf_der.clone())
    }
}

impl Enroller for FixedEnroller {
    fn has_label(&self, label: &str) -> bool {
        label == "tpm"
    }

    fn ca_certs(&self, ctx: &EstContext<'_>) -> Result<Vec<Vec<u8>>, EstRefusal> {
        Self::endpoint(ctx.client)?;
        Ok(vec![shared::fixture().ca_der.clone()])
    }

    fn enroll(&self, ctx: &EstContext<'_>, csr_der: &[u8]) -> Result<Vec<u8>, EstRefusal> {
        Self::issue(ctx, csr_der)
    }

    fn reenroll(&self, ctx: &EstContext<'_>, csr_der: &[u8]) -> Result<Vec<u8>, EstRefusal> {
        Self::issue(ctx, csr_der)
    }

    fn server_keygen(
        &self,
        ctx: &EstContext<'_>,
        _csr_der: &[u8],
    ) -> Result<ServerKey, EstRefusal> {
        // The CSR's key and signature are ignored here (RFC 9148 §4.8); a fixed delivery.
        Self::endpoint(ctx.client)?;
        Ok(ServerKey {
            pkcs8_der: vec![0x30, 0x00],
            cert_der: shared::fixture().leaf_der.clone(),
        })
    }

    fn csr_attrs(&self, ctx: &EstContext<'_>) -> Result<Vec<u8>, EstRefusal> {
        Self::endpoint(ctx.client)?;
        Ok(vec![0x30, 0x00])
    }
}

/// The encoders the server wires: the crate's own certs-only CMS and multipart-core.
struct RealEncoder;

impl EstEncoder for RealEncoder {
    fn certs_only(&self, certs: &[Vec<u8>]) -> Result<Vec<u8>, EncodeError> {
        pkcs7::certs_only(certs).map_err(|e| EncodeError(e.to_string()))
    }

    fn multipart(&self, parts: &[(u16, &[u8])]) -> Result<Vec<u8>, EncodeError> {
        let parts: Vec<Part> = parts.iter().map(|(cf, p)| Part::new(*cf, *p)).collect();
        multipart::encode(&parts).map_err(|e| EncodeError(e.to_string()))
    }
}

fn service() -> &'static EstService<FixedEnroller, RealEncoder> {
    static S: OnceLock<EstService<FixedEnroller, RealEncoder>> = OnceLock::new();
    S.get_or_init(|| {
        let config = EstConfig {
            server_keygen: true,
            ..EstConfig::default()
        };
        EstService::new(FixedEnroller, RealEncoder, config)
    })
}

fn client(mid: u16) -> Option<EstClient> {
    match mid & 3 {
        0 => None,
        1 => Some(EstClient::Psk {
            identity: b"dev-1".to_vec(),
        }),
        2 => {
            let f = shared::fixture();
            Some(EstClient::Certificate {
                common_name: Some("dev-1".into()),
                chain: vec![f.leaf_der.clone(), f.ca_der.clone()],
            })
        }
        _ => Some(EstClient::Psk {
            identity: b"intruder".to_vec(),
        }),
    }
}

/// Invariants every response must hold, whatever the request.
fn check(req: &EstRequest<'_>, r: &EstResponse) {
    let routed = route(&req.path);
    match r.code.class() {
        2 => {
            assert!(r.content_format.is_some(), "success has a content format");
            assert_eq!(r.max_age, None);
            let function = match routed {
                Some(Route::Function { function, .. }) => Some(function),
                Some(Route::Core) => None,
                other => panic!("success on {other:?}"),
            };
            match function {
                Some(f) if f.issues() => {
                    assert_eq!(r.code, Code::CHANGED);
                    let audit = r.audit.as_ref().expect("issuance is audited");
                    assert_eq!(audit.outcome, AuditOutcome::Issued);
                    assert!(req.client.is_some());
                    assert_eq!(req.content_format, Some(286));
                    assert_eq!(req.payload.first(), Some(&0x30));
                }
                Some(_) => {
                    assert_eq!(r.code, Code::CONTENT);
                    assert!(req.client.is_some());
                    assert!(r.audit.is_none());
                }
                None => assert_eq!(r.code, Code::CONTENT),
            }
        }
        4 | 5 => {
            assert_eq!(r.content_format, None, "errors carry diagnostics only");
            let audit = r.audit.as_ref().expect("every refusal is audited");
            assert_eq!(audit.outcome, AuditOutcome::Refused);
            assert_eq!(audit.code, r.code);
            assert!(!audit.to_string().contains('\n'), "one audit line");
            assert_eq!(r.max_age.is_some(), r.code == Code::SERVICE_UNAVAILABLE);
        }
        other => panic!("unexpected class {other}"),
    }
    // RFC 9148 §3: no EST function answers anything but 4.01 to an anonymous peer.
    if req.client.is_none() && matches!(routed, Some(Route::Function { .. })) {
        assert_eq!(r.code, Code::UNAUTHORIZED);
    }
    assert_eq!(r.to_coap().code, r.code);
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(msg) = wire::decode(data) else {
        return;
    };
    let Kind::Request(method) = msg.kind else {
        return;
    };
    let req = Request {
        method,
        options: msg.options,
        payload: msg.payload,
    };
    let client = client(msg.mid);
    let s = service();
    let r = s.handle_coap(&req, client.clone());
    match EstRequest::from_coap(&req, client) {
        Ok(est) => {
            let direct = s.handle(&est);
            check(&est, &direct);
            assert_eq!(direct, r, "handle_coap answers as from_coap + handle");
        }
        Err(e) => {
            assert_eq!(r.code, e.code());
            assert!(r.audit.is_some(), "an unreadable request is audited");
            assert_eq!(r.content_format, None);
        }
    }
    // The answer goes back on the wire; encoding may refuse it (size), never panic.
    let answer = r.to_coap();
    let _ = wire::encode(&wire::Message {
        mtype: wire::Type::Ack,
        kind: Kind::Response(answer.code),
        mid: msg.mid,
        token: msg.token,
        options: answer.options,
        payload: answer.payload,
    });
});
