//! Native unit tests (the host imports are never called: [`FakeEnv`] stands in for the host).
//! Run with `cargo test --target x86_64-unknown-linux-gnu -p steward-plugin-trust-recovery`
//! inside `plugins/`.
#![allow(clippy::unwrap_used)]

use serde_json::{Value as Json, json};
use steward_claims::RecoveryClaims;
use steward_claims::recovery::MAX_LIFETIME;
use steward_plugin_sdk::{
    BootstrapRequest, Command, Device, Effect, Entry, Event, EventKinds, HostError, OfferAnswer,
    Plugin, PluginError, RequestError, Response, ResponseBody, Value, effect, entry, rejected,
};

use crate::commands::{
    ImportError, Page, assess_token, check_token_form, is_write_target, parse_page,
    parse_token_argument,
};
use crate::devices::{Answer, decide_on_report, record_answer};
use crate::env::Env;
use crate::env::tests::FakeEnv;
use crate::records::{DeviceRecord, Kind, TokenRecord, VENDOR_KEY_MISSING, hex};
use crate::{TrustRecovery, handle};

const IAT: u64 = 1_780_000_000;
const EXP: u64 = IAT + 7 * 24 * 60 * 60;
const NOW_MS: u64 = (IAT + 60) * 1000;
const SITE: &str = "site-42.example.net";
const FP: [u8; 32] = [0x48; 32];
const CTI: [u8; 16] = [0xa0; 16];

fn claims() -> RecoveryClaims {
    RecoveryClaims {
        issuer: "recovery.example.com".into(),
        ctl_fingerprint: FP,
        installation: SITE.into(),
        issued_at: IAT,
        expires_at: EXP,
        token_id: CTI,
    }
}

/// A token [`FakeEnv`] verifies: `d2 84` and the claims.
fn token_of(claims: &RecoveryClaims) -> Vec<u8> {
    let mut token = vec![0xd2, 0x84];
    token.extend_from_slice(&claims.encode().unwrap());
    token
}

fn token() -> Vec<u8> {
    token_of(&claims())
}

fn cti() -> String {
    hex(&CTI)
}

fn run(env: &FakeEnv, event: Event) -> Result<Vec<Effect>, PluginError> {
    let effects = handle(env, event)?;
    env.apply(&effects);
    Ok(effects)
}

fn command(env: &FakeEnv, name: &str, argument: Json) -> Result<Vec<Effect>, PluginError> {
    run(
        env,
        Event::Command(Command {
            name: name.into(),
            argument: argument.to_string(),
        }),
    )
}

fn reply_of(effects: &[Effect]) -> Json {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::Reply(text) => Some(serde_json::from_str(text).unwrap()),
            _ => None,
        })
        .expect("a reply")
}

fn emitted(effects: &[Effect], kind: &str) -> Vec<Json> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Emit(event) if event.kind == kind => {
                Some(serde_json::from_str(&event.data).unwrap())
            }
            _ => None,
        })
        .collect()
}

fn audits(effects: &[Effect]) -> Vec<(String, String, String)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Audit(a) => Some((a.action.clone(), a.subject.clone(), a.outcome.clone())),
            _ => None,
        })
        .collect()
}

fn writes(effects: &[Effect]) -> Vec<(String, String)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Request(r) => match &r.operation {
                steward_plugin_sdk::Operation::Write(_) => {
                    Some((r.endpoint.clone(), r.correlation.clone()))
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn report(
    fingerprint: &[u8],
    installation: &str,
    state: i64,
    last_token: &[u8],
    outcome: i64,
) -> Vec<Entry> {
    vec![
        entry("/42769/0/0", Value::Opaque(fingerprint.to_vec())),
        entry("/42769/0/1", Value::Text(installation.into())),
        entry("/42769/0/2", Value::Integer(state)),
        entry("/42769/0/4", Value::Text(String::new())),
        entry("/42769/0/6", Value::Integer(1)),
        entry("/42769/0/7", Value::Opaque(vec![7; 32])),
        entry("/42769/0/8", Value::Opaque(last_token.to_vec())),
        entry("/42769/0/9", Value::Integer(outcome)),
    ]
}

fn read_answer(env: &FakeEnv, endpoint: &str, entries: Vec<Entry>) -> Vec<Effect> {
    run(
        env,
        Event::Response(Response {
            correlation: "read".into(),
            endpoint: endpoint.into(),
            outcome: Ok(ResponseBody::Read(entries)),
        }),
    )
    .unwrap()
}

fn offer_answer(env: &FakeEnv, endpoint: &str, code: &str, diagnostic: &str) -> Vec<Effect> {
    run(
        env,
        Event::OfferAnswered(OfferAnswer {
            offer: format!("recovery-{}", cti()),
            endpoint: endpoint.into(),
            code: code.into(),
            diagnostic: diagnostic.into(),
        }),
    )
    .unwrap()
}

fn progress(env: &FakeEnv) -> Json {
    env.json(&format!("token/{}", cti()))["progress"].clone()
}

fn token_record() -> TokenRecord {
    TokenRecord::new(&token(), &claims(), NOW_MS)
}

fn matching_device(endpoint: &str) -> DeviceRecord {
    let mut device = DeviceRecord::new(endpoint, 0);
    device.registered = true;
    device.fingerprint = hex(&FP);
    device.installation = SITE.into();
    device
}

// ---- describe ----

#[test]
fn describe_claims_42769() {
    let d = TrustRecovery::describe();
    assert_eq!(d.name, "trust-recovery");
    assert_eq!(d.objects.len(), 1);
    assert_eq!(d.objects[0].id, 42769);
    assert!(d.objects[0].ddf.contains("<ObjectID>42769</ObjectID>"));
    assert!(
        d.events
            .contains(EventKinds::REGISTERED | EventKinds::COMMAND)
    );
    assert!(!d.events.contains(EventKinds::TIMER));
}

// ---- import decisions ----

#[test]
fn token_arguments() {
    let hex_token = hex(&token());
    assert_eq!(
        parse_token_argument(&json!(hex_token).to_string()),
        Ok(token())
    );
    assert_eq!(
        parse_token_argument(&json!({ "token": hex_token.to_uppercase() }).to_string()),
        Ok(token())
    );
    let wrapped = format!("{}\n{}", &hex_token[..64], &hex_token[64..]);
    assert_eq!(
        parse_token_argument(&json!(wrapped).to_string()),
        Ok(token())
    );
    for bad in [
        json!("xyz"),
        json!("abc"),
        json!(""),
        json!(42),
        json!({ "tok": hex_token }),
        json!("ab".repeat(2049)),
    ] {
        assert!(
            matches!(
                parse_token_argument(&bad.to_string()),
                Err(PluginError::Rejected(_))
            ),
            "{bad}"
        );
    }
    assert!(parse_token_argument("{not json").is_err());
}

#[test]
fn token_form() {
    assert_eq!(check_token_form(&token()), Ok(()));
    let mut long = token();
    long.resize(1025, 0);
    assert!(matches!(check_token_form(&long), Err(ImportError::Refused(r)) if r.contains("1024")));
    // Untagged, or a CWT tag 61 around it.
    assert!(matches!(
        check_token_form(&token()[1..]),
        Err(ImportError::Refused(_))
    ));
    assert!(matches!(
        check_token_form(&[0xd8, 0x3d, 0xd2, 0x84]),
        Err(ImportError::Refused(_))
    ));
}

#[test]
fn token_assessment() {
    let payload = claims().encode().unwrap();
    let now = IAT + 60;
    assert_eq!(assess_token(Ok(payload.clone()), now), Ok(claims()));
    assert_eq!(
        assess_token(Err(HostError::Denied("no key".into())), now),
        Err(ImportError::VendorKeyMissing)
    );
    let refused = |verified, now| match assess_token(verified, now) {
        Err(ImportError::Refused(reason)) => reason,
        other => panic!("not refused: {other:?}"),
    };
    assert!(refused(Err(HostError::Failed("bad signature".into())), now).contains("bad signature"));
    assert!(refused(Err(HostError::Invalid("not COSE".into())), now).starts_with("malformed"));
    // Expired, at exp exactly.
    assert!(refused(Ok(payload.clone()), EXP).contains("expired"));
    // Not valid yet.
    assert!(refused(Ok(payload.clone()), IAT - 301).contains("not valid yet"));
    // Lifetime over 30 days, even when current.
    let mut long = claims();
    long.expires_at = IAT + MAX_LIFETIME + 1;
    assert!(refused(Ok(long.encode().unwrap()), now).contains("lives longer"));
    // Malformed claims: an unknown claim, trailing bytes, a CTL (an array).
    let mut unknown = payload.clone();
    unknown[0] = 0xa7;
    unknown.extend_from_slice(&[0x02, 0x61, b'x']);
    assert!(refused(Ok(unknown), now).contains("unknown claim"));
    let mut trailing = payload.clone();
    trailing.push(0);
    assert!(refused(Ok(trailing), now).contains("trailing"));
    assert!(refused(Ok(vec![0x82, 0x01, 0x80]), now).starts_with("claims"));
}

#[test]
fn write_targets() {
    let token = token_record();
    assert!(is_write_target(&matching_device("a"), &token));
    let mut other_site = matching_device("b");
    other_site.installation = "site-43".into();
    assert!(!is_write_target(&other_site, &token));
    let mut other_ctl = matching_device("c");
    other_ctl.fingerprint = hex(&[0x49; 32]);
    assert!(!is_write_target(&other_ctl, &token));
    let mut no_ctl = matching_device("d");
    no_ctl.fingerprint.clear();
    assert!(!is_write_target(&no_ctl, &token));
    let mut gone = matching_device("e");
    gone.registered = false;
    assert!(!is_write_target(&gone, &token));
    let mut accepted = matching_device("f");
    accepted.count(&token.token_id, Kind::Accepted);
    assert!(!is_write_target(&accepted, &token));
    // A device that refused is written again on a new import (the operator's retry).
    let mut refused = matching_device("g");
    refused.count(&token.token_id, Kind::Refused);
    assert!(is_write_target(&refused, &token));
}

// ---- counting ----

#[test]
fn answers_are_counted_once_per_device_and_kind() {
    let mut token = token_record();
    let mut device = matching_device("a");
    let refused = Answer::new("4.03", "the recovery token is not valid yet");
    assert!(record_answer(&mut device, &mut token, &refused));
    assert!(!record_answer(&mut device, &mut token, &refused));
    assert!(!record_answer(
        &mut device,
        &mut token,
        &Answer::new("4.03", "other reason")
    ));
    assert_eq!(device.state, "refused: other reason");
    assert_eq!((token.progress.answered, token.progress.refused), (1, 1));
    assert_eq!(
        token.progress.refused_by["the recovery token is not valid yet"],
        1
    );
    // Later accepted: counted as accepted too, still one answer.
    assert!(record_answer(&mut device, &mut token, &Answer::Accepted));
    assert!(!record_answer(&mut device, &mut token, &Answer::Accepted));
    assert_eq!(
        (
            token.progress.answered,
            token.progress.accepted,
            token.progress.refused
        ),
        (1, 1, 1)
    );
    assert_eq!(device.state, "token-accepted");
    // A refusal after acceptance (the offer again, from the initial state) changes nothing.
    let before = (device.clone(), token.clone());
    assert!(!record_answer(
        &mut device,
        &mut token,
        &Answer::new("4.03", "no CTL to recover")
    ));
    assert_eq!((device, token), before);
}

#[test]
fn answer_reasons() {
    assert_eq!(Answer::new("2.04", "ignored"), Answer::Accepted);
    assert_eq!(Answer::new("4.03", ""), Answer::Refused("4.03".into()));
    assert_eq!(Answer::new("4.04", "x"), Answer::Refused("x".into()));
    let Answer::Refused(long) = Answer::new("4.03", &"é".repeat(100)) else {
        panic!("refused");
    };
    assert!(long.len() <= 128);
}

#[test]
fn refusal_reasons_are_bounded() {
    let mut token = token_record();
    for i in 0..40 {
        let mut device = matching_device(&format!("ep{i}"));
        record_answer(
            &mut device,
            &mut token,
            &Answer::Refused(format!("reason {i}")),
        );
    }
    assert_eq!(token.progress.refused, 40);
    assert_eq!(token.progress.refused_by.len(), 33);
    assert_eq!(token.progress.refused_by["other"], 8);
}

#[test]
fn report_decisions() {
    let now = IAT + 60;
    let mut tokens = vec![token_record()];
    // A matching device gets the token written, once counted.
    let mut device = matching_device("a");
    let decision = decide_on_report(&mut device, &mut tokens, now);
    assert_eq!((decision.recovered, decision.write), (None, Some(0)));
    assert_eq!(device.state, "token-written");
    assert_eq!(tokens[0].progress.written, 1);
    let decision = decide_on_report(&mut device, &mut tokens, now);
    assert_eq!(decision.write, Some(0));
    assert_eq!(tokens[0].progress.written, 1);
    // Not after it expired, nor after it was withdrawn.
    assert_eq!(
        decide_on_report(&mut matching_device("b"), &mut tokens, EXP).write,
        None
    );
    tokens[0].withdrawn = true;
    assert_eq!(
        decide_on_report(&mut matching_device("b"), &mut tokens, now).write,
        None
    );
    tokens[0].withdrawn = false;
    // Of two fitting tokens, the one expiring last.
    let mut later = claims();
    later.token_id = [0xb0; 16];
    later.expires_at = EXP + 10;
    tokens.push(TokenRecord::new(&token_of(&later), &later, NOW_MS));
    assert_eq!(
        decide_on_report(&mut matching_device("c"), &mut tokens, now).write,
        Some(1)
    );
    // A device naming our token as its last accepted one: recovered, once; nothing written.
    let mut recovered = matching_device("d");
    recovered.fingerprint.clear();
    recovered.last_token_id = cti();
    let decision = decide_on_report(&mut recovered, &mut tokens, now);
    assert_eq!((decision.recovered, decision.write), (Some(0), None));
    assert_eq!(recovered.state, "recovered");
    assert_eq!(tokens[0].progress.recovered, 1);
    assert_eq!(
        decide_on_report(&mut recovered, &mut tokens, now),
        Default::default()
    );
    assert_eq!(tokens[0].progress.recovered, 1);
    // Back on its factory CTL (the token's fingerprint again): recovered, not written again
    // with that token (it would be "already used"), but the other fitting token is.
    let mut factory = matching_device("e");
    factory.last_token_id = cti();
    let decision = decide_on_report(&mut factory, &mut tokens, now);
    assert_eq!((decision.recovered, decision.write), (Some(0), Some(1)));
}

// ---- whole flows against the in-memory host ----

#[test]
fn import_without_vendor_key_is_rejected() {
    let mut env = FakeEnv::new(NOW_MS);
    env.vendor_key = false;
    assert_eq!(
        command(&env, "import", json!(hex(&token()))),
        Err(rejected(VENDOR_KEY_MISSING))
    );
    assert!(env.kv.borrow().is_empty());
}

#[test]
fn refused_imports_are_audited_not_stored() {
    let env = FakeEnv::new(NOW_MS);
    let mut expired = claims();
    expired.issued_at = IAT - 100_000;
    expired.expires_at = IAT;
    let mut bad_signature = token();
    bad_signature.push(0xff);
    for (token, why) in [
        (token_of(&expired), "expired"),
        (bad_signature, "signature"),
        (vec![0xd2, 0x84, 0xa0], "claims"),
        (vec![0x84, 0x40], "COSE_Sign1"),
    ] {
        let effects = command(&env, "import", json!(hex(&token))).unwrap();
        let reply = reply_of(&effects);
        assert_eq!(reply["imported"], json!(false), "{why}");
        assert!(reply["reason"].as_str().unwrap().contains(why), "{reply}");
        assert_eq!(audits(&effects)[0].0, "token-refused");
        assert_eq!(audits(&effects)[0].2, "refused");
        assert_eq!(emitted(&effects, "token-refused").len(), 1);
    }
    assert!(env.kv.borrow().is_empty());
}

#[test]
fn recovery_end_to_end() {
    let env = FakeEnv::new(NOW_MS);
    // Four registered devices: a fits, b is in another installation, c holds another CTL, d
    // fits but deregisters.
    for (ep, fp, site) in [
        ("a", FP, SITE),
        ("b", FP, "site-43"),
        ("c", [0x49; 32], SITE),
        ("d", FP, SITE),
    ] {
        let effects = run(
            &env,
            Event::Registered(Device {
                endpoint: ep.into(),
                registration_id: "r".into(),
                lwm2m_version: "1.1".into(),
                objects: vec!["/3/0".into(), "/42769/0".into()],
            }),
        )
        .unwrap();
        assert_eq!(effects, vec![effect::read(ep, "read", "/42769/0")]);
        let effects = read_answer(&env, ep, report(&fp, site, 1, &[], 0));
        assert!(writes(&effects).is_empty());
    }
    run(&env, Event::Deregistered("d".into())).unwrap();
    assert_eq!(env.json("device/d")["registered"], json!(false));
    assert!(
        env.kv_list("index/", 1000)
            .iter()
            .all(|k| !k.ends_with("/d"))
    );

    // Import: offered to every bootstrap session, written to a only.
    let effects = command(&env, "import", json!(hex(&token()))).unwrap();
    let reply = reply_of(&effects);
    assert_eq!(
        reply,
        json!({
            "tokenId": cti(),
            "issuer": "recovery.example.com",
            "installation": SITE,
            "fingerprint": hex(&FP),
            "issuedAt": IAT,
            "expiresAt": EXP,
            "offered": true,
            "writtenTo": 1,
            "reimported": false,
        })
    );
    assert!(effects.contains(&effect::bootstrap_offer(
        format!("recovery-{}", cti()),
        "/42769/0/3",
        Value::Opaque(token()),
        vec![],
        true,
        Some(EXP * 1000),
    )));
    assert_eq!(
        writes(&effects),
        vec![("a".into(), format!("write:{}", cti()))]
    );
    assert_eq!(
        audits(&effects),
        vec![("token-imported".into(), cti(), "ok".into())]
    );
    assert_eq!(emitted(&effects, "token-imported").len(), 1);
    assert_eq!(env.json("device/a")["state"], json!("token-written"));

    // Importing again re-offers and re-writes, counting nothing twice.
    let effects = command(&env, "import", json!({ "token": hex(&token()) })).unwrap();
    assert_eq!(reply_of(&effects)["reimported"], json!(true));
    assert_eq!(writes(&effects).len(), 1);
    assert_eq!(progress(&env)["written"], json!(1));

    // a accepts the write (twice: counted once).
    for _ in 0..2 {
        let effects = run(
            &env,
            Event::Response(Response {
                correlation: format!("write:{}", cti()),
                endpoint: "a".into(),
                outcome: Ok(ResponseBody::Written),
            }),
        )
        .unwrap();
        let event = &emitted(&effects, "write-answered")[0];
        assert_eq!(event["accepted"], json!(1));
    }
    assert_eq!(env.json("device/a")["state"], json!("token-accepted"));

    // A locked-out device answers the bootstrap offer: refused, counted once.
    for _ in 0..2 {
        let effects = offer_answer(&env, "x", "4.03", "the recovery token is for another CTL");
        assert_eq!(
            emitted(&effects, "offer-answered"),
            vec![json!({
                "endpoint": "x",
                "tokenId": cti(),
                "code": "4.03",
                "diagnostic": "the recovery token is for another CTL",
                "accepted": 1,
                "refused": 1,
            })]
        );
    }
    assert_eq!(
        env.json("device/x")["state"],
        json!("refused: the recovery token is for another CTL")
    );
    // Another accepts it in its bootstrap session.
    offer_answer(&env, "y", "2.04", "");
    assert_eq!(
        progress(&env),
        json!({
            "written": 1,
            "answered": 3,
            "accepted": 2,
            "refused": 1,
            "refusedBy": { "the recovery token is for another CTL": 1 },
            "recovered": 0,
        })
    );

    // a comes back from its initial state: its bootstrap refused the offer (no CTL), which
    // does not count; then it registers and reports the token as its last accepted one.
    offer_answer(&env, "a", "4.03", "no CTL to recover");
    assert_eq!(progress(&env)["refused"], json!(1));
    for _ in 0..2 {
        let effects = read_answer(&env, "a", report(&[], SITE, 0, &CTI, 9));
        assert!(writes(&effects).is_empty());
    }
    assert_eq!(env.json("device/a")["state"], json!("recovered"));
    assert_eq!(progress(&env)["recovered"], json!(1));

    // The recovered event, audited, once.
    let effects = read_answer(&env, "y", report(&[], SITE, 0, &CTI, 1));
    assert_eq!(
        emitted(&effects, "device-recovered"),
        vec![json!({ "endpoint": "y", "tokenId": cti(), "recovered": 2 })]
    );
    assert_eq!(
        audits(&effects),
        vec![("device-recovered".into(), "y".into(), "ok".into())]
    );

    // status
    let status = reply_of(&command(&env, "status", Json::Null).unwrap());
    assert_eq!(status["tokens"][0]["tokenId"], json!(cti()));
    assert_eq!(status["tokens"][0]["offered"], json!(true));
    assert_eq!(status["tokens"][0]["progress"]["recovered"], json!(2));
    assert!(status["tokens"][0].get("token").is_none());
    assert_eq!(
        status["devices"],
        json!({
            "tracked": 6,
            "registered": 4,
            "byTrustState": { "initial": 2, "locked-in": 3, "unknown": 1 },
        })
    );

    // devices: all, filtered, paged.
    let page = reply_of(&command(&env, "devices", Json::Null).unwrap());
    let names: Vec<&str> = page["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["endpoint"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "c", "d", "x", "y"]);
    let recovered = reply_of(&command(&env, "devices", json!({ "state": "recovered" })).unwrap());
    assert_eq!(recovered["devices"].as_array().unwrap().len(), 2);
    let refused = reply_of(&command(&env, "devices", json!({ "state": "refused" })).unwrap());
    assert_eq!(refused["devices"][0]["endpoint"], json!("x"));
    let first = reply_of(&command(&env, "devices", json!({ "limit": 2 })).unwrap());
    assert_eq!(first["next"], json!("b"));
    let second = reply_of(&command(&env, "devices", json!({ "after": "b", "limit": 10 })).unwrap());
    assert_eq!(second["devices"][0]["endpoint"], json!("c"));
    assert_eq!(second["next"], Json::Null);

    // withdraw: the offer goes, and a fitting device that registers is not written to.
    let effects = command(&env, "withdraw", json!({ "tokenId": cti() })).unwrap();
    assert!(effects.contains(&effect::withdraw_offer(format!("recovery-{}", cti()))));
    assert_eq!(
        reply_of(&effects),
        json!({ "tokenId": cti(), "withdrawn": true })
    );
    let effects = read_answer(&env, "z", report(&FP, SITE, 1, &[], 0));
    assert!(writes(&effects).is_empty());
    let status = reply_of(&command(&env, "status", Json::Null).unwrap());
    assert_eq!(status["tokens"][0]["withdrawn"], json!(true));
    assert_eq!(status["tokens"][0]["offered"], json!(false));
    assert!(command(&env, "withdraw", json!({ "tokenId": "00".repeat(16) })).is_err());
}

#[test]
fn registration_writes_a_fitting_token_and_records_refusals() {
    let env = FakeEnv::new(NOW_MS);
    command(&env, "import", json!(hex(&token()))).unwrap();
    let effects = read_answer(&env, "late", report(&FP, SITE, 1, &[], 0));
    assert_eq!(
        writes(&effects),
        vec![("late".into(), format!("write:{}", cti()))]
    );
    // The device refuses with a diagnostic (as the host words it).
    run(
        &env,
        Event::Response(Response {
            correlation: format!("write:{}", cti()),
            endpoint: "late".into(),
            outcome: Err(RequestError {
                code: Some("4.03".into()),
                message: "the device answered 4.03: the recovery token is not valid yet".into(),
            }),
        }),
    )
    .unwrap();
    assert_eq!(
        env.json("device/late")["state"],
        json!("refused: the recovery token is not valid yet")
    );
    // Not written again at its next update: it answered.
    let effects = read_answer(&env, "late", report(&FP, SITE, 1, &[], 7));
    assert!(writes(&effects).is_empty());
    // A write that got no answer is not an answer: written again next time.
    let effects = read_answer(&env, "quiet", report(&FP, SITE, 1, &[], 0));
    assert_eq!(writes(&effects).len(), 1);
    run(
        &env,
        Event::Response(Response {
            correlation: format!("write:{}", cti()),
            endpoint: "quiet".into(),
            outcome: Err(RequestError {
                code: None,
                message: "timeout".into(),
            }),
        }),
    )
    .unwrap();
    assert_eq!(
        env.json("device/quiet")["state"],
        json!("write-failed: timeout")
    );
    let effects = read_answer(&env, "quiet", report(&FP, SITE, 1, &[], 0));
    assert_eq!(writes(&effects).len(), 1);
    assert_eq!(progress(&env)["answered"], json!(1));
}

#[test]
fn odd_events_are_harmless() {
    let env = FakeEnv::new(NOW_MS);
    // A device without the object, an unknown correlation, an unknown offer, a read error, a
    // report with a bad fingerprint.
    let device = Device {
        endpoint: "a".into(),
        registration_id: "r".into(),
        lwm2m_version: "1.1".into(),
        objects: vec!["/427690/0".into()],
    };
    assert_eq!(run(&env, Event::Registered(device)).unwrap(), vec![]);
    let other = Response {
        correlation: "other".into(),
        endpoint: "a".into(),
        outcome: Ok(ResponseBody::Written),
    };
    assert_eq!(run(&env, Event::Response(other)).unwrap(), vec![]);
    let unknown_offer = OfferAnswer {
        offer: "something".into(),
        endpoint: "a".into(),
        code: "2.04".into(),
        diagnostic: String::new(),
    };
    assert_eq!(
        run(&env, Event::OfferAnswered(unknown_offer)).unwrap(),
        vec![]
    );
    assert_eq!(offer_answer(&env, "a", "2.04", ""), vec![]);
    run(
        &env,
        Event::Response(Response {
            correlation: "read".into(),
            endpoint: "a".into(),
            outcome: Err(RequestError {
                code: Some("4.04".into()),
                message: "the device answered 4.04".into(),
            }),
        }),
    )
    .unwrap();
    assert_eq!(
        env.json("device/a")["lastError"],
        json!("read failed: the device answered 4.04")
    );
    read_answer(
        &env,
        "a",
        vec![entry("/42769/0/0", Value::Opaque(vec![1; 3]))],
    );
    assert!(
        env.json("device/a")["lastError"]
            .as_str()
            .unwrap()
            .contains("3 bytes")
    );
    // A long endpoint is not tracked (its keys would pass the host's limit).
    let long = "e".repeat(200);
    assert_eq!(
        read_answer(&env, &long, report(&FP, SITE, 1, &[], 0)),
        vec![]
    );
    // Bootstrap requests are counted.
    for accepted in [true, true, false] {
        run(
            &env,
            Event::BootstrapRequest(BootstrapRequest {
                endpoint: "b".into(),
                transport: "coaps".into(),
                accepted,
            }),
        )
        .unwrap();
    }
    let status = reply_of(&command(&env, "status", Json::Null).unwrap());
    assert_eq!(
        status["bootstrapRequests"],
        json!({ "accepted": 2, "refused": 1 })
    );
    // Unknown commands and bad arguments are rejected.
    assert!(matches!(
        command(&env, "nope", Json::Null),
        Err(PluginError::Rejected(_))
    ));
    assert!(matches!(
        command(&env, "devices", json!({ "limit": 0 })),
        Err(PluginError::Rejected(_))
    ));
}

#[test]
fn page_arguments() {
    assert_eq!(
        parse_page("null"),
        Ok(Page {
            state: None,
            after: None,
            limit: 100
        })
    );
    assert_eq!(
        parse_page(r#"{"state":"recovered","after":"x","limit":1000}"#),
        Ok(Page {
            state: Some("recovered".into()),
            after: Some("x".into()),
            limit: 1000
        })
    );
    assert!(parse_page(r#"{"limit":1001}"#).is_err());
    assert!(parse_page(r#"{"state":1}"#).is_err());
    assert!(parse_page("[]").is_err());
}

#[test]
fn too_many_active_tokens() {
    let env = FakeEnv::new(NOW_MS);
    for i in 0..64u8 {
        let mut c = claims();
        c.token_id = [i; 16];
        let reply = reply_of(&command(&env, "import", json!(hex(&token_of(&c)))).unwrap());
        assert_eq!(reply["offered"], json!(true));
    }
    let mut c = claims();
    c.token_id = [0xee; 16];
    let reply = reply_of(&command(&env, "import", json!(hex(&token_of(&c)))).unwrap());
    assert_eq!(reply["imported"], json!(false));
    // Re-importing an active one is fine.
    let mut c = claims();
    c.token_id = [3; 16];
    let reply = reply_of(&command(&env, "import", json!(hex(&token_of(&c)))).unwrap());
    assert_eq!(reply["reimported"], json!(true));
    // Same id, other claims: refused.
    c.installation = "elsewhere".into();
    let reply = reply_of(&command(&env, "import", json!(hex(&token_of(&c)))).unwrap());
    assert_eq!(reply["imported"], json!(false));
}

#[test]
fn a_read_without_answer_does_not_reregister() {
    let env = FakeEnv::new(NOW_MS);
    read_answer(&env, "a", report(&FP, SITE, 1, &[], 0));
    assert_eq!(env.kv_list("index/", 10).len(), 1);
    run(&env, Event::Deregistered("a".into())).unwrap();
    assert!(env.kv_list("index/", 10).is_empty());
    run(
        &env,
        Event::Response(Response {
            correlation: "read".into(),
            endpoint: "a".into(),
            outcome: Err(RequestError {
                code: None,
                message: "endpoint \"a\" is not registered".into(),
            }),
        }),
    )
    .unwrap();
    assert_eq!(env.json("device/a")["registered"], json!(false));
    assert!(env.kv_list("index/", 10).is_empty());
    let status = reply_of(&command(&env, "status", Json::Null).unwrap());
    assert_eq!(status["devices"]["registered"], json!(0));
}
