//! Fuzz-style properties: arbitrary requests (and arbitrary CoAP options) never panic, and
//! every answer keeps the handler's invariants.
#![allow(clippy::unwrap_used)]

mod est_support;

use est_support::*;
use proptest::prelude::*;
use steward_coap::message::{Code, Method, Request, option};
use steward_pki::est::{
    AuditOutcome, EstClient, EstConfig, EstFunction, EstRequest, EstResponse, Route, route,
};

fn method() -> impl Strategy<Value = Method> {
    (1u8..=7).prop_map(|c| Method::from_code(c).unwrap())
}

/// Segments biased towards the ones that matter, plus arbitrary text.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(".well-known".to_owned()),
        Just("est".to_owned()),
        Just("core".to_owned()),
        Just("tpm".to_owned()),
        Just("two".to_owned()),
        Just(String::new()),
        prop::sample::select(vec!["crts", "sen", "sren", "skg", "skc", "att"])
            .prop_map(str::to_owned),
        ".{0,12}",
    ]
}

fn path() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        prop::collection::vec(segment(), 0..6),
        // Mostly well-formed EST paths, so the deeper checks get exercised.
        (
            prop::option::of(prop::sample::select(vec!["tpm", "two", "nope"])),
            prop::sample::select(vec!["crts", "sen", "sren", "skg", "skc", "att"]),
        )
            .prop_map(|(label, short)| {
                let mut p = vec![".well-known".to_owned(), "est".to_owned()];
                p.extend(label.map(str::to_owned));
                p.push(short.to_owned());
                p
            }),
    ]
}

fn format() -> impl Strategy<Value = Option<u16>> {
    prop::option::of(prop_oneof![
        prop::sample::select(vec![0u16, 40, 62, 280, 281, 284, 285, 286, 287]),
        any::<u16>(),
    ])
}

fn client() -> impl Strategy<Value = Option<EstClient>> {
    let names = prop::sample::select(vec!["dev-1", "dev-2", "banned", "revoked", "who"]);
    prop::option::of(prop_oneof![
        names.clone().prop_map(|n| EstClient::Psk {
            identity: n.as_bytes().to_vec()
        }),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(|identity| EstClient::Psk { identity }),
        (
            prop::option::of(names),
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..8), 0..3)
        )
            .prop_map(|(cn, chain)| EstClient::Certificate {
                common_name: cn.map(str::to_owned),
                chain,
            }),
    ])
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..80),
        prop::sample::select(vec![
            "dev-1", "dev-2", "dev-3", "bad-sig", "pending", "boom"
        ])
        .prop_map(csr),
        ".{0,40}".prop_map(|s| {
            let mut v = vec![0x30];
            if s.len() < 0x80 {
                v.push(s.len() as u8);
            } else {
                v.extend([0x81, s.len() as u8]);
            }
            v.extend(s.as_bytes());
            v
        }),
    ]
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
            assert!(!audit.to_string().contains('\n'));
            assert_eq!(r.max_age.is_some(), r.code == Code::SERVICE_UNAVAILABLE);
        }
        other => panic!("unexpected class {other}"),
    }
    // RFC 9148 §3: no EST function answers anything but 4.01 to an anonymous peer.
    if req.client.is_none() && matches!(routed, Some(Route::Function { .. })) {
        assert_eq!(r.code, Code::UNAUTHORIZED);
    }
    // to_coap is total and keeps the code.
    assert_eq!(r.to_coap().code, r.code);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_requests_never_panic(
        method in method(),
        path in path(),
        query in prop::collection::vec(".{0,16}", 0..3),
        content_format in format(),
        accept in format(),
        payload in payload(),
        client in client(),
        keygen in any::<bool>(),
        attrs in any::<bool>(),
        max_csr_len in prop_oneof![Just(8192usize), 0usize..64],
    ) {
        let s = service_with(EstConfig { server_keygen: keygen, csr_attrs: attrs, max_csr_len });
        let req = EstRequest { method, path, query, content_format, accept, payload: &payload, client };
        let r = s.handle(&req);
        check(&req, &r);
        // The Enroller only ever sees framed CSRs within the size limit.
        for (_, _, seen) in s.enroller().calls() {
            prop_assert!(seen.is_empty() || (seen[0] == 0x30 && seen.len() <= max_csr_len));
        }
    }

    #[test]
    fn route_is_total_and_consistent(path in prop::collection::vec(".{0,10}", 0..8)) {
        match route(&path) {
            Some(Route::Function { label, function }) => {
                prop_assert_eq!(&path[0], ".well-known");
                prop_assert_eq!(&path[1], "est");
                prop_assert_eq!(path.last().unwrap().as_str(), function.short());
                prop_assert_eq!(path.len(), if label.is_some() { 4 } else { 3 });
                prop_assert!(label.is_none_or(|l| !l.is_empty()));
            }
            Some(Route::Core) => prop_assert_eq!(path, vec![".well-known", "core"]),
            Some(Route::Unknown) => prop_assert!(path.len() >= 2),
            None => prop_assert!(path.len() < 2 || path[0] != ".well-known"
                || (path[1] != "est" && !(path.len() == 2 && path[1] == "core"))),
        }
    }

    /// Request parsing from raw CoAP options: arbitrary option numbers and bytes.
    #[test]
    fn arbitrary_coap_options_never_panic(
        method in method(),
        options in prop::collection::vec(
            (
                prop_oneof![
                    prop::sample::select(vec![
                        option::URI_PATH, option::URI_QUERY, option::CONTENT_FORMAT,
                        option::ACCEPT, option::BLOCK1, option::URI_HOST,
                    ]),
                    any::<u16>(),
                ],
                prop_oneof![
                    prop::collection::vec(any::<u8>(), 0..6),
                    prop::sample::select(vec![".well-known", "est", "sen", "crts", "core", "rt=ace.est*"])
                        .prop_map(|s| s.as_bytes().to_vec()),
                ],
            ),
            0..10,
        ),
        payload in payload(),
        client in client(),
    ) {
        let mut req = Request::new(method);
        for (number, value) in options {
            req.options.push(number, value);
        }
        req.payload = payload;
        let s = service_with(EstConfig { server_keygen: true, ..EstConfig::default() });
        let r = s.handle_coap(&req, client.clone());
        if let Ok(est) = EstRequest::from_coap(&req, client) {
            prop_assert_eq!(&s.handle(&est), &r);
            check(&est, &r);
        } else {
            prop_assert!(r.code.class() == 4 && r.audit.is_some());
            prop_assert_eq!(r.content_format, None);
        }
        let _ = r.to_coap();
    }

    /// Well-formed enrolments always succeed for the matching client, with any label the
    /// Enroller knows and either Accept.
    #[test]
    fn good_enrolments_succeed(
        function in prop::sample::select(vec![EstFunction::Sen, EstFunction::Sren, EstFunction::Skg, EstFunction::Skc]),
        label in prop::option::of(prop::sample::select(vec!["tpm", "two"])),
        name in prop::sample::select(vec!["dev-1", "dev-2", "dev-3"]),
    ) {
        let s = service_with(EstConfig { server_keygen: true, ..EstConfig::default() });
        let p = match label {
            Some(l) => format!("/.well-known/est/{l}/{function}"),
            None => format!("/.well-known/est/{function}"),
        };
        let body = csr(name);
        let r = s.handle(&post(&p, x509(name), &body));
        prop_assert_eq!(r.code, Code::CHANGED);
        let expected_ct = if function == EstFunction::Sen || function == EstFunction::Sren { 281 } else { 62 };
        prop_assert_eq!(r.content_format, Some(expected_ct));
        let audit = r.audit.unwrap();
        prop_assert_eq!(audit.label.as_deref(), label);
    }
}
