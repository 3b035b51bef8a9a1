//! A fake Enroller and encoder for the EST handler tests. The real Enroller (CA + policy +
//! store) is glued by the server; here the decisions are scripted by the CSR's content.
//!
//! Fake CSR: one DER SEQUENCE whose content is the UTF-8 subject name. Subjects with a
//! special meaning: `bad-sig` (4.00), `pending` (5.03, Max-Age 60), `boom` (5.00).
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Mutex;

use steward_coap::message::Method;
use steward_pki::est::{
    EncodeError, Enroller, EstClient, EstConfig, EstContext, EstEncoder, EstRefusal, EstRequest,
    EstService, ServerKey,
};

/// One call the fake saw: (method name, label, payload).
pub type Call = (&'static str, Option<String>, Vec<u8>);

#[derive(Default)]
pub struct FakeEnroller {
    pub calls: Mutex<Vec<Call>>,
}

impl FakeEnroller {
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn record(&self, what: &'static str, ctx: &EstContext<'_>, payload: &[u8]) {
        self.calls
            .lock()
            .unwrap()
            .push((what, ctx.label.map(str::to_owned), payload.to_vec()));
    }

    /// The endpoint name behind a client, or the refusal the policy would give.
    fn endpoint(client: &EstClient) -> Result<String, EstRefusal> {
        let name = match client {
            EstClient::Psk { identity } => String::from_utf8_lossy(identity).into_owned(),
            EstClient::Certificate { common_name, .. } => common_name.clone().unwrap_or_default(),
        };
        match name.as_str() {
            "dev-1" | "dev-2" | "dev-3" => Ok(name),
            "banned" => Err(EstRefusal::Forbidden("not on allow-list".into())),
            "revoked" => Err(EstRefusal::Forbidden("certificate revoked".into())),
            _ => Err(EstRefusal::Unauthorized(format!("unknown client {name}"))),
        }
    }

    fn issue(ctx: &EstContext<'_>, csr: &[u8]) -> Result<Vec<u8>, EstRefusal> {
        let endpoint = Self::endpoint(ctx.client)?;
        let subject = subject_of(csr);
        match subject.as_str() {
            "bad-sig" => return Err(EstRefusal::BadRequest("CSR signature invalid".into())),
            "pending" => {
                return Err(EstRefusal::TryLater {
                    max_age: 60,
                    reason: "waiting for manual approval".into(),
                });
            }
            "boom" => return Err(EstRefusal::Internal("CA key unavailable".into())),
            _ => {}
        }
        if subject != endpoint {
            return Err(EstRefusal::BadRequest(format!(
                "CSR names {subject}, client is {endpoint}"
            )));
        }
        Ok(cert_for(ctx.label, &subject))
    }
}

impl Enroller for FakeEnroller {
    fn has_label(&self, label: &str) -> bool {
        matches!(label, "tpm" | "two")
    }

    fn ca_certs(&self, ctx: &EstContext<'_>) -> Result<Vec<Vec<u8>>, EstRefusal> {
        self.record("ca_certs", ctx, &[]);
        Self::endpoint(ctx.client)?;
        Ok(match ctx.label {
            Some("two") => vec![b"ICA".to_vec(), b"ROOT".to_vec()],
            _ => vec![b"CA1".to_vec()],
        })
    }

    fn enroll(&self, ctx: &EstContext<'_>, csr_der: &[u8]) -> Result<Vec<u8>, EstRefusal> {
        self.record("enroll", ctx, csr_der);
        Self::issue(ctx, csr_der)
    }

    fn reenroll(&self, ctx: &EstContext<'_>, csr_der: &[u8]) -> Result<Vec<u8>, EstRefusal> {
        self.record("reenroll", ctx, csr_der);
        Self::issue(ctx, csr_der)
    }

    fn server_keygen(&self, ctx: &EstContext<'_>, csr_der: &[u8]) -> Result<ServerKey, EstRefusal> {
        self.record("server_keygen", ctx, csr_der);
        let cert_der = Self::issue(ctx, csr_der)?;
        Ok(ServerKey {
            pkcs8_der: b"KEY".to_vec(),
            cert_der,
        })
    }

    fn csr_attrs(&self, ctx: &EstContext<'_>) -> Result<Vec<u8>, EstRefusal> {
        self.record("csr_attrs", ctx, &[]);
        Self::endpoint(ctx.client)?;
        Ok(vec![0x30, 0x00])
    }
}

/// certs-only stand-in: `P7` then each certificate length-prefixed; multipart is the real
/// RFC 8710 CBOR so that the tests can decode it.
pub struct FakeEncoder {
    pub fail: bool,
}

impl EstEncoder for FakeEncoder {
    fn certs_only(&self, certs: &[Vec<u8>]) -> Result<Vec<u8>, EncodeError> {
        if self.fail {
            return Err(EncodeError("CMS encoder broken".into()));
        }
        Ok(certs_only(certs))
    }

    fn multipart(&self, parts: &[(u16, &[u8])]) -> Result<Vec<u8>, EncodeError> {
        let mut e = minicbor::Encoder::new(Vec::new());
        e.array(2 * parts.len() as u64).unwrap();
        for (ct, bytes) in parts {
            e.u16(*ct).unwrap().bytes(bytes).unwrap();
        }
        Ok(e.into_writer())
    }
}

pub fn certs_only(certs: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"P7".to_vec();
    for c in certs {
        out.push(c.len() as u8);
        out.extend(c);
    }
    out
}

pub fn decode_multipart(bytes: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut d = minicbor::Decoder::new(bytes);
    let n = d.array().unwrap().unwrap();
    let mut parts = Vec::new();
    for _ in 0..n / 2 {
        let ct = d.u16().unwrap();
        let b = d.bytes().unwrap().to_vec();
        parts.push((ct, b));
    }
    parts
}

pub fn cert_for(label: Option<&str>, subject: &str) -> Vec<u8> {
    format!("CERT:{}:{subject}", label.unwrap_or("-")).into_bytes()
}

/// A fake CSR: a DER SEQUENCE around the subject (short form, subjects < 128 bytes).
pub fn csr(subject: &str) -> Vec<u8> {
    let mut out = vec![0x30, subject.len() as u8];
    out.extend(subject.as_bytes());
    out
}

pub fn subject_of(csr: &[u8]) -> String {
    String::from_utf8_lossy(csr.get(2..).unwrap_or_default()).into_owned()
}

pub type Service = EstService<FakeEnroller, FakeEncoder>;

pub fn service() -> Service {
    service_with(EstConfig::default())
}

pub fn service_with(config: EstConfig) -> Service {
    EstService::new(FakeEnroller::default(), FakeEncoder { fail: false }, config)
}

pub fn all_functions() -> EstConfig {
    EstConfig {
        server_keygen: true,
        ..EstConfig::default()
    }
}

pub fn psk(name: &str) -> Option<EstClient> {
    Some(EstClient::Psk {
        identity: name.as_bytes().to_vec(),
    })
}

pub fn x509(cn: &str) -> Option<EstClient> {
    Some(EstClient::Certificate {
        common_name: Some(cn.to_owned()),
        chain: vec![b"LEAF".to_vec(), b"MFR-CA".to_vec()],
    })
}

pub fn path(p: &str) -> Vec<String> {
    p.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A request builder with EST defaults: no Content-Format, no Accept, empty payload.
pub fn get<'a>(p: &str, client: Option<EstClient>) -> EstRequest<'a> {
    EstRequest {
        method: Method::Get,
        path: path(p),
        query: Vec::new(),
        content_format: None,
        accept: None,
        payload: &[],
        client,
    }
}

/// POST with ct 286.
pub fn post<'a>(p: &str, client: Option<EstClient>, payload: &'a [u8]) -> EstRequest<'a> {
    EstRequest {
        method: Method::Post,
        content_format: Some(286),
        payload,
        ..get(p, client)
    }
}
