//! EST-coaps handler: paths, methods, content formats, Accept, refusal codes and audit lines.
#![allow(clippy::unwrap_used)]

mod est_support;

use est_support::*;
use steward_coap::message::{Code, Method, Request, option};
use steward_pki::est::{
    AuditOutcome, EstClient, EstConfig, EstFunction, EstRequest, EstService, RequestError,
};

const SEN: &str = "/.well-known/est/sen";
const SREN: &str = "/.well-known/est/sren";
const CRTS: &str = "/.well-known/est/crts";
const SKG: &str = "/.well-known/est/skg";
const SKC: &str = "/.well-known/est/skc";
const ATT: &str = "/.well-known/est/att";

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn refused(code: Code, resp: &steward_pki::est::EstResponse) {
    assert_eq!(resp.code, code, "{resp:?}");
    assert_eq!(resp.content_format, None);
    let audit = resp.audit.as_ref().expect("every refusal is audited");
    assert_eq!(audit.outcome, AuditOutcome::Refused);
    assert_eq!(audit.code, code);
}

// ---- /crts ----------------------------------------------------------------------------------

#[test]
fn crts_defaults_to_certs_only() {
    let s = service();
    let r = s.handle(&get(CRTS, psk("dev-1")));
    assert_eq!(r.code, Code::CONTENT);
    assert_eq!(r.content_format, Some(281));
    assert_eq!(r.payload, certs_only(&[b"CA1".to_vec()]));
    assert_eq!(
        r.audit, None,
        "serving CA certificates is not an audit event"
    );
}

#[test]
fn crts_accept_281_and_287() {
    let s = service();
    let r = s.handle(&EstRequest {
        accept: Some(281),
        ..get(CRTS, psk("dev-1"))
    });
    assert_eq!((r.code, r.content_format), (Code::CONTENT, Some(281)));
    let r = s.handle(&EstRequest {
        accept: Some(287),
        ..get(CRTS, x509("dev-2"))
    });
    assert_eq!((r.code, r.content_format), (Code::CONTENT, Some(287)));
    assert_eq!(r.payload, b"CA1");
}

#[test]
fn crts_287_with_a_chain_is_not_acceptable() {
    let s = service();
    let r = s.handle(&EstRequest {
        accept: Some(287),
        ..get("/.well-known/est/two/crts", psk("dev-1"))
    });
    refused(Code::NOT_ACCEPTABLE, &r);
    let r = s.handle(&get("/.well-known/est/two/crts", psk("dev-1")));
    assert_eq!(r.code, Code::CONTENT);
    assert_eq!(r.payload, certs_only(&[b"ICA".to_vec(), b"ROOT".to_vec()]));
}

#[test]
fn crts_other_accept_is_4_06_without_asking_the_enroller() {
    let s = service();
    for accept in [0u16, 40, 60, 62, 284, 285, 286, 280, 65535] {
        let r = s.handle(&EstRequest {
            accept: Some(accept),
            ..get(CRTS, psk("dev-1"))
        });
        refused(Code::NOT_ACCEPTABLE, &r);
    }
    assert!(s.enroller().calls().is_empty());
}

#[test]
fn crts_refusal_from_the_enroller() {
    let s = service();
    let r = s.handle(&get(CRTS, psk("banned")));
    refused(Code::FORBIDDEN, &r);
    assert!(
        r.payload.is_empty(),
        "policy reasons are not told to the client"
    );
    assert_eq!(r.audit.unwrap().reason, "not on allow-list");
}

#[test]
fn crts_encoder_failure_is_5_00() {
    let s = EstService::new(
        FakeEnroller::default(),
        FakeEncoder { fail: true },
        EstConfig::default(),
    );
    let r = s.handle(&get(CRTS, psk("dev-1")));
    refused(Code::INTERNAL_SERVER_ERROR, &r);
    assert!(r.payload.is_empty());
}

// ---- methods --------------------------------------------------------------------------------

#[test]
fn wrong_method_is_4_05_for_every_function() {
    let s = service_with(all_functions());
    let methods = [
        Method::Get,
        Method::Post,
        Method::Put,
        Method::Delete,
        Method::Fetch,
        Method::Patch,
        Method::IPatch,
    ];
    for function in EstFunction::ALL {
        let p = format!("/.well-known/est/{function}");
        let payload = csr("dev-1");
        for method in methods {
            if method == function.method() {
                continue;
            }
            let r = s.handle(&EstRequest {
                method,
                ..post(&p, x509("dev-1"), &payload)
            });
            refused(Code::METHOD_NOT_ALLOWED, &r);
            assert_eq!(r.audit.unwrap().function, Some(function));
        }
    }
    assert!(s.enroller().calls().is_empty());
}

// ---- authentication -------------------------------------------------------------------------

#[test]
fn no_client_identity_is_4_01_for_every_function() {
    let s = service_with(all_functions());
    let payload = csr("dev-1");
    for function in EstFunction::ALL {
        for prefix in [
            "/.well-known/est",
            "/.well-known/est/tpm",
            "/.well-known/est/nope",
        ] {
            let p = format!("{prefix}/{function}");
            let req = if function.method() == Method::Get {
                get(&p, None)
            } else {
                post(&p, None, &payload)
            };
            let r = s.handle(&req);
            refused(Code::UNAUTHORIZED, &r);
            assert_eq!(r.audit.as_ref().unwrap().client, "anonymous");
            assert_eq!(r.audit.unwrap().function, Some(function));
        }
    }
    assert!(s.enroller().calls().is_empty());
}

#[test]
fn unknown_psk_identity_is_4_01_from_the_enroller() {
    let s = service();
    let payload = csr("stranger");
    let r = s.handle(&post(SEN, psk("stranger"), &payload));
    refused(Code::UNAUTHORIZED, &r);
    assert!(r.payload.is_empty());
    assert!(r.audit.unwrap().reason.contains("unknown client"));
}

// ---- /sen -----------------------------------------------------------------------------------

#[test]
fn sen_issues_certs_only_by_default() {
    let s = service();
    let payload = csr("dev-1");
    let r = s.handle(&post(SEN, psk("dev-1"), &payload));
    assert_eq!(r.code, Code::CHANGED);
    assert_eq!(r.content_format, Some(281));
    let cert = cert_for(None, "dev-1");
    assert_eq!(r.payload, certs_only(std::slice::from_ref(&cert)));
    let audit = r.audit.unwrap();
    assert_eq!(audit.outcome, AuditOutcome::Issued);
    assert_eq!(audit.code, Code::CHANGED);
    assert_eq!(audit.client, "psk:dev-1");
    assert_eq!(audit.path, SEN);
    assert_eq!(audit.function, Some(EstFunction::Sen));
    assert_eq!(audit.label, None);
    assert_eq!(
        audit.reason,
        format!("issued certificate sha256:{}", sha256_hex(&cert))
    );
    assert_eq!(
        s.enroller().calls(),
        vec![("enroll", None, payload.clone())],
        "the CSR reaches the Enroller unchanged"
    );
}

#[test]
fn sen_accept_287_gives_the_bare_certificate() {
    let s = service();
    let payload = csr("dev-2");
    let r = s.handle(&EstRequest {
        accept: Some(287),
        ..post(SEN, x509("dev-2"), &payload)
    });
    assert_eq!((r.code, r.content_format), (Code::CHANGED, Some(287)));
    assert_eq!(r.payload, cert_for(None, "dev-2"));
    let r = s.handle(&EstRequest {
        accept: Some(281),
        ..post(SEN, x509("dev-2"), &payload)
    });
    assert_eq!((r.code, r.content_format), (Code::CHANGED, Some(281)));
}

#[test]
fn sen_other_accept_is_4_06() {
    let s = service();
    let payload = csr("dev-1");
    for accept in [40u16, 62, 284, 285, 286, 280] {
        let r = s.handle(&EstRequest {
            accept: Some(accept),
            ..post(SEN, psk("dev-1"), &payload)
        });
        refused(Code::NOT_ACCEPTABLE, &r);
    }
    assert!(s.enroller().calls().is_empty());
}

#[test]
fn sen_needs_content_format_286() {
    let s = service();
    let payload = csr("dev-1");
    for ct in [
        None,
        Some(0u16),
        Some(40),
        Some(60),
        Some(281),
        Some(284),
        Some(287),
    ] {
        let r = s.handle(&EstRequest {
            content_format: ct,
            ..post(SEN, psk("dev-1"), &payload)
        });
        refused(Code::UNSUPPORTED_CONTENT_FORMAT, &r);
        assert!(!r.payload.is_empty(), "protocol errors carry a diagnostic");
    }
    assert!(s.enroller().calls().is_empty());
}

#[test]
fn sen_refusal_codes() {
    let s = service();
    let cases: [(&str, &str, Code, &str); 6] = [
        (
            "dev-1",
            "dev-3",
            Code::BAD_REQUEST,
            "CSR names dev-3, client is dev-1",
        ),
        (
            "dev-1",
            "bad-sig",
            Code::BAD_REQUEST,
            "CSR signature invalid",
        ),
        ("banned", "banned", Code::FORBIDDEN, "not on allow-list"),
        ("revoked", "revoked", Code::FORBIDDEN, "certificate revoked"),
        (
            "dev-1",
            "boom",
            Code::INTERNAL_SERVER_ERROR,
            "CA key unavailable",
        ),
        ("who", "who", Code::UNAUTHORIZED, "unknown client who"),
    ];
    for (client, subject, code, reason) in cases {
        let payload = csr(subject);
        let r = s.handle(&post(SEN, psk(client), &payload));
        refused(code, &r);
        assert_eq!(r.audit.as_ref().unwrap().reason, reason);
        assert_eq!(r.max_age, None);
        // Only the client's own input errors are explained to it.
        if code == Code::BAD_REQUEST {
            assert_eq!(r.payload, reason.as_bytes());
        } else {
            assert!(r.payload.is_empty(), "{code}: {:?}", r.payload);
        }
    }
}

#[test]
fn sen_try_later_is_5_03_with_max_age() {
    let s = service();
    let payload = csr("pending");
    let r = s.handle(&post(SEN, psk("dev-1"), &payload));
    refused(Code::SERVICE_UNAVAILABLE, &r);
    assert_eq!(r.max_age, Some(60));
    let coap = r.to_coap();
    assert_eq!(coap.options.get_uint(option::MAX_AGE), Some(60));
}

#[test]
fn sen_too_large_is_4_13_with_size1() {
    let s = service_with(EstConfig {
        max_csr_len: 64,
        ..EstConfig::default()
    });
    let payload = csr(&"x".repeat(63)); // 65 bytes
    let r = s.handle(&post(SEN, psk("dev-1"), &payload));
    refused(Code::REQUEST_ENTITY_TOO_LARGE, &r);
    assert_eq!(r.size1, Some(64));
    assert_eq!(r.to_coap().options.get_uint(option::SIZE1), Some(64));
    let payload = csr(&"x".repeat(62)); // exactly 64: reaches the Enroller
    let r = s.handle(&post(SEN, psk("dev-1"), &payload));
    assert_eq!(r.code, Code::BAD_REQUEST);
    assert_eq!(s.enroller().calls().len(), 1);
}

#[test]
fn sen_rejects_payloads_that_are_not_one_der_sequence() {
    let s = service();
    let bad: [&[u8]; 7] = [
        b"",
        b"\x30",
        b"\x31\x00",
        b"\x30\x05abc",
        b"\x30\x01ab",
        b"\x30\x80\x00\x00",
        b"-----BEGIN CERTIFICATE REQUEST-----",
    ];
    for payload in bad {
        let r = s.handle(&post(SEN, psk("dev-1"), payload));
        refused(Code::BAD_REQUEST, &r);
        assert!(
            r.audit
                .unwrap()
                .reason
                .starts_with("CSR is not one DER SEQUENCE")
        );
    }
    assert!(s.enroller().calls().is_empty());
}

#[test]
fn issued_but_not_encoded_is_5_00_and_names_the_certificate() {
    let s = EstService::new(
        FakeEnroller::default(),
        FakeEncoder { fail: true },
        EstConfig::default(),
    );
    let payload = csr("dev-1");
    let r = s.handle(&post(SEN, psk("dev-1"), &payload));
    refused(Code::INTERNAL_SERVER_ERROR, &r);
    let reason = r.audit.unwrap().reason;
    assert!(
        reason.contains(&sha256_hex(&cert_for(None, "dev-1"))),
        "{reason}"
    );
    assert!(reason.contains("CMS encoder broken"), "{reason}");
    // 287 needs no encoder, so it still works.
    let r = s.handle(&EstRequest {
        accept: Some(287),
        ..post(SEN, psk("dev-1"), &payload)
    });
    assert_eq!(r.code, Code::CHANGED);
}

// ---- /sren ----------------------------------------------------------------------------------

#[test]
fn sren_needs_a_certificate_identity() {
    let s = service();
    let payload = csr("dev-1");
    let r = s.handle(&post(SREN, psk("dev-1"), &payload));
    refused(Code::UNAUTHORIZED, &r);
    assert!(s.enroller().calls().is_empty());

    let r = s.handle(&post(SREN, x509("dev-1"), &payload));
    assert_eq!((r.code, r.content_format), (Code::CHANGED, Some(281)));
    assert_eq!(r.audit.unwrap().function, Some(EstFunction::Sren));
    assert_eq!(
        s.enroller().calls(),
        vec![("reenroll", None, payload.clone())]
    );
}

#[test]
fn sren_content_format_accept_and_refusals() {
    let s = service();
    let payload = csr("dev-2");
    let r = s.handle(&EstRequest {
        accept: Some(287),
        ..post(SREN, x509("dev-2"), &payload)
    });
    assert_eq!((r.code, r.content_format), (Code::CHANGED, Some(287)));
    let r = s.handle(&EstRequest {
        content_format: Some(287),
        ..post(SREN, x509("dev-2"), &payload)
    });
    refused(Code::UNSUPPORTED_CONTENT_FORMAT, &r);
    let r = s.handle(&EstRequest {
        accept: Some(62),
        ..post(SREN, x509("dev-2"), &payload)
    });
    refused(Code::NOT_ACCEPTABLE, &r);
    let r = s.handle(&post(SREN, x509("revoked"), &csr("revoked")));
    refused(Code::FORBIDDEN, &r);
    assert_eq!(r.audit.unwrap().client, "x509:CN=revoked");
}

// ---- /skg and /skc --------------------------------------------------------------------------

#[test]
fn server_keygen_is_off_by_default() {
    let s = service();
    let payload = csr("dev-1");
    for p in [SKG, SKC] {
        let r = s.handle(&post(p, psk("dev-1"), &payload));
        refused(Code::NOT_FOUND, &r);
    }
    assert!(s.enroller().calls().is_empty());
}

#[test]
fn skg_returns_key_and_certs_only() {
    let s = service_with(all_functions());
    let payload = csr("dev-1");
    for accept in [None, Some(62)] {
        let r = s.handle(&EstRequest {
            accept,
            ..post(SKG, psk("dev-1"), &payload)
        });
        assert_eq!((r.code, r.content_format), (Code::CHANGED, Some(62)));
        let cert = cert_for(None, "dev-1");
        assert_eq!(
            decode_multipart(&r.payload),
            vec![
                (284, b"KEY".to_vec()),
                (281, certs_only(std::slice::from_ref(&cert)))
            ]
        );
        let audit = r.audit.unwrap();
        assert_eq!(audit.outcome, AuditOutcome::Issued);
        assert!(audit.reason.contains(&sha256_hex(&cert)));
        assert!(
            !audit.reason.contains("KEY"),
            "the key never reaches the log"
        );
    }
}

#[test]
fn skc_returns_key_and_bare_certificate() {
    let s = service_with(all_functions());
    let payload = csr("dev-2");
    let r = s.handle(&post(SKC, x509("dev-2"), &payload));
    assert_eq!((r.code, r.content_format), (Code::CHANGED, Some(62)));
    assert_eq!(
        decode_multipart(&r.payload),
        vec![(284, b"KEY".to_vec()), (287, cert_for(None, "dev-2"))]
    );
    assert_eq!(s.enroller().calls()[0].0, "server_keygen");
}

#[test]
fn skg_skc_checks() {
    let s = service_with(all_functions());
    let payload = csr("dev-1");
    for p in [SKG, SKC] {
        for accept in [281u16, 287, 284, 40] {
            let r = s.handle(&EstRequest {
                accept: Some(accept),
                ..post(p, psk("dev-1"), &payload)
            });
            refused(Code::NOT_ACCEPTABLE, &r);
        }
        let r = s.handle(&EstRequest {
            content_format: None,
            ..post(p, psk("dev-1"), &payload)
        });
        refused(Code::UNSUPPORTED_CONTENT_FORMAT, &r);
        let r = s.handle(&post(p, psk("banned"), &csr("banned")));
        refused(Code::FORBIDDEN, &r);
    }
}

#[test]
fn server_key_debug_redacts_the_key() {
    let key = steward_pki::est::ServerKey {
        pkcs8_der: b"SECRET".to_vec(),
        cert_der: b"C".to_vec(),
    };
    let shown = format!("{key:?}");
    assert!(!shown.contains("83, 69, 67"), "{shown}");
    assert!(shown.contains("redacted"), "{shown}");
}

// ---- /att -----------------------------------------------------------------------------------

#[test]
fn att_returns_csrattrs() {
    let s = service();
    for accept in [None, Some(285)] {
        let r = s.handle(&EstRequest {
            accept,
            ..get(ATT, psk("dev-1"))
        });
        assert_eq!((r.code, r.content_format), (Code::CONTENT, Some(285)));
        assert_eq!(r.payload, [0x30, 0x00]);
        assert_eq!(r.audit, None);
    }
    let r = s.handle(&EstRequest {
        accept: Some(286),
        ..get(ATT, psk("dev-1"))
    });
    refused(Code::NOT_ACCEPTABLE, &r);
    let r = s.handle(&get(ATT, psk("banned")));
    refused(Code::FORBIDDEN, &r);
}

#[test]
fn att_can_be_disabled() {
    let s = service_with(EstConfig {
        csr_attrs: false,
        ..EstConfig::default()
    });
    refused(Code::NOT_FOUND, &s.handle(&get(ATT, psk("dev-1"))));
    assert!(s.enroller().calls().is_empty());
}

// ---- labels and unknown paths ---------------------------------------------------------------

#[test]
fn labelled_paths_reach_the_enroller_with_the_label() {
    let s = service();
    let payload = csr("dev-1");
    let r = s.handle(&post("/.well-known/est/tpm/sen", psk("dev-1"), &payload));
    assert_eq!(r.code, Code::CHANGED);
    assert_eq!(r.payload, certs_only(&[cert_for(Some("tpm"), "dev-1")]));
    let audit = r.audit.unwrap();
    assert_eq!(audit.label.as_deref(), Some("tpm"));
    assert_eq!(audit.path, "/.well-known/est/tpm/sen");
    assert_eq!(
        s.enroller().calls(),
        vec![("enroll", Some("tpm".to_owned()), payload.clone())]
    );
    let r = s.handle(&get("/.well-known/est/tpm/att", psk("dev-1")));
    assert_eq!(r.code, Code::CONTENT);
}

#[test]
fn unknown_label_looks_like_an_unknown_path() {
    let s = service();
    let payload = csr("dev-1");
    let unknown_label = s.handle(&post("/.well-known/est/nope/sen", psk("dev-1"), &payload));
    let unknown_path = s.handle(&post("/.well-known/est/nope", psk("dev-1"), &payload));
    refused(Code::NOT_FOUND, &unknown_label);
    refused(Code::NOT_FOUND, &unknown_path);
    assert_eq!(unknown_label.payload, unknown_path.payload);
    assert_eq!(unknown_label.audit.unwrap().label.as_deref(), Some("nope"));
    assert!(s.enroller().calls().is_empty());
}

#[test]
fn unknown_paths_are_4_04_and_audited() {
    let s = service();
    for p in [
        "/",
        "/foo",
        "/.well-known",
        "/.well-known/est",
        "/.well-known/est/cacerts",
        "/.well-known/est/simpleenroll",
        "/.well-known/est/SEN",
        "/.well-known/est/tpm/sen/extra",
        "/.well-known/est/tpm",
        "/est/sen",
        "/.well-known/core/sen",
    ] {
        let r = s.handle(&get(p, psk("dev-1")));
        refused(Code::NOT_FOUND, &r);
        assert_eq!(r.audit.unwrap().path, p);
    }
    // Empty segments are preserved by Uri-Path and do not form a label.
    let r = s.handle(&EstRequest {
        path: vec![
            ".well-known".into(),
            "est".into(),
            String::new(),
            "sen".into(),
        ],
        ..get("/", psk("dev-1"))
    });
    refused(Code::NOT_FOUND, &r);
    let r = s.handle(&EstRequest {
        path: vec![
            ".well-known".into(),
            "est".into(),
            "sen".into(),
            String::new(),
        ],
        ..get("/", psk("dev-1"))
    });
    refused(Code::NOT_FOUND, &r);
}

// ---- /.well-known/core through the handler --------------------------------------------------

#[test]
fn core_is_served_without_identity() {
    let s = service();
    let r = s.handle(&EstRequest {
        query: vec!["rt=ace.est.sen".into()],
        ..get("/.well-known/core", None)
    });
    assert_eq!((r.code, r.content_format), (Code::CONTENT, Some(40)));
    assert_eq!(
        String::from_utf8(r.payload).unwrap(),
        "</.well-known/est/sen>;rt=\"ace.est.sen\";ct=\"281 287\""
    );
    assert_eq!(r.audit, None);
    let r = s.handle(&EstRequest {
        method: Method::Post,
        ..get("/.well-known/core", None)
    });
    refused(Code::METHOD_NOT_ALLOWED, &r);
    let r = s.handle(&EstRequest {
        accept: Some(281),
        ..get("/.well-known/core", None)
    });
    refused(Code::NOT_ACCEPTABLE, &r);
}

// ---- steward-coap adaptors ------------------------------------------------------------------

#[test]
fn handle_coap_reads_options_and_writes_them_back() {
    let s = service();
    let req = Request::new(Method::Post)
        .with_path(SEN)
        .with_payload(286, csr("dev-1"))
        .with_option(option::ACCEPT, vec![0x01, 0x1f]); // 287
    let r = s.handle_coap(&req, psk("dev-1"));
    assert_eq!(r.code, Code::CHANGED);
    let coap = r.to_coap();
    assert_eq!(coap.code, Code::CHANGED);
    assert_eq!(coap.options.content_format(), Some(287));
    assert_eq!(coap.payload, cert_for(None, "dev-1"));

    let req = Request::new(Method::Get).with_path(CRTS);
    let coap = s.handle_coap(&req, None).to_coap();
    assert_eq!(coap.code, Code::UNAUTHORIZED);
    assert_eq!(coap.options.content_format(), None);
}

#[test]
fn from_coap_refuses_unreadable_options() {
    let s = service();
    let non_utf8_path = Request::new(Method::Get)
        .with_path("/.well-known/est")
        .with_option(option::URI_PATH, vec![0xff, 0xfe]);
    refused(
        Code::BAD_REQUEST,
        &s.handle_coap(&non_utf8_path, psk("dev-1")),
    );
    let non_utf8_query = Request::new(Method::Get)
        .with_path("/.well-known/core")
        .with_option(option::URI_QUERY, vec![0xc3]);
    refused(
        Code::BAD_REQUEST,
        &s.handle_coap(&non_utf8_query, psk("dev-1")),
    );
    let wide_ct = Request::new(Method::Post)
        .with_path(SEN)
        .with_option(option::CONTENT_FORMAT, vec![1, 0, 0]);
    refused(
        Code::UNSUPPORTED_CONTENT_FORMAT,
        &s.handle_coap(&wide_ct, psk("dev-1")),
    );
    let wide_accept = Request::new(Method::Get)
        .with_path(CRTS)
        .with_option(option::ACCEPT, vec![1, 2, 3, 4, 5]);
    refused(
        Code::NOT_ACCEPTABLE,
        &s.handle_coap(&wide_accept, psk("dev-1")),
    );
    assert_eq!(
        EstRequest::from_coap(&non_utf8_path, None),
        Err(RequestError::PathNotUtf8)
    );
    assert_eq!(
        EstRequest::from_coap(&non_utf8_query, None),
        Err(RequestError::QueryNotUtf8)
    );
    assert_eq!(
        EstRequest::from_coap(&wide_ct, None),
        Err(RequestError::ContentFormat)
    );
    assert_eq!(
        EstRequest::from_coap(&wide_accept, None),
        Err(RequestError::Accept)
    );
    let audit = s.handle_coap(&non_utf8_path, psk("dev-1")).audit.unwrap();
    assert_eq!(audit.client, "psk:dev-1");
    assert_eq!(audit.path, "/.well-known/est/\u{fffd}\u{fffd}");
}

// ---- audit line rendering -------------------------------------------------------------------

#[test]
fn audit_lines_escape_hostile_identities_and_paths() {
    let s = service();
    let client = Some(EstClient::Psk {
        identity: b"evil\nest client=admin".to_vec(),
    });
    let r = s.handle(&get("/.well-known/est/x\ny", client));
    let line = r.audit.unwrap().to_string();
    assert!(!line.contains('\n'), "{line}");
    assert!(
        line.starts_with("est client=psk:evil\\nest client=admin"),
        "{line}"
    );
    assert!(line.contains("code=4.04 outcome=refused"), "{line}");

    let binary = EstClient::Psk {
        identity: vec![0xff, 0x00],
    };
    assert_eq!(binary.to_string(), "psk:0xff00");
    let no_cn = EstClient::Certificate {
        common_name: None,
        chain: vec![],
    };
    assert_eq!(no_cn.to_string(), "x509:<no CN>");
    assert!(!format!("{:?}", x509("dev-1").unwrap()).contains("LEAF"));

    let long = format!("/.well-known/est/{}", "a".repeat(1000));
    let r = s.handle(&get(&long, psk("dev-1")));
    assert!(r.audit.unwrap().path.chars().count() <= 257);
}
