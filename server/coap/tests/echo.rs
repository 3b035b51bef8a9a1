//! RFC 9175 §2: the Echo challenge, the client's single retry, and what the verifier refuses.

use std::time::{Duration, Instant};

use steward_coap::echo::{
    EchoClient, EchoConfig, EchoError, EchoValue, EchoVerifier, ISSUED_LEN, MAX_LEN, echo_option,
};
use steward_coap::message::{Code, Method, Request, Response, option};

const SECRET: [u8; 16] = [
    0x3c, 0x91, 0x0e, 0x5a, 0x77, 0x21, 0xd4, 0x08, 0xaa, 0x13, 0x6f, 0xe2, 0x40, 0x9b, 0x55, 0xc7,
];

fn verifier(t0: Instant) -> EchoVerifier {
    EchoVerifier::new(SECRET, t0, EchoConfig::default())
}

fn echo_of(response: &Response) -> Vec<u8> {
    match echo_option(&response.options) {
        Some(Ok(v)) => v.into_bytes(),
        other => panic!("challenge carries a valid Echo, got {other:?}"),
    }
}

#[test]
fn challenge_retry_verified() {
    let t0 = Instant::now();
    let server = verifier(t0);
    let peer = b"192.0.2.1:5683";
    let mut request = Request::new(Method::Post).with_path("/rd");

    // First attempt: no Echo, so the server challenges with 4.01 + Echo (§2.4).
    let Err((error, challenge)) = server.require_fresh(t0, peer, &request) else {
        panic!("a request without Echo is not fresh");
    };
    assert_eq!(error, EchoError::Missing);
    assert_eq!(challenge.code, Code::UNAUTHORIZED);
    assert_eq!(echo_of(&challenge).len(), ISSUED_LEN);

    // The client retries with the value...
    let mut client = EchoClient::new();
    let Some(value) = client.on_response(&challenge) else {
        panic!("a 4.01 with Echo asks for a retry");
    };
    request.options.set(option::ECHO, value.clone());

    // ...a little later, and is let in.
    let t1 = t0 + Duration::from_secs(2);
    assert_eq!(server.require_fresh(t1, peer, &request), Ok(()));
    assert_eq!(server.verify_for(t1, peer, &value), Ok(()));
}

#[test]
fn stale_after_the_window() {
    let t0 = Instant::now();
    let server = EchoVerifier::new(
        SECRET,
        t0,
        EchoConfig {
            freshness_window: Duration::from_secs(10),
        },
    );
    let issued = t0 + Duration::from_secs(100);
    let value = server.issue(issued).into_bytes();
    assert_eq!(
        server.verify(issued + Duration::from_secs(10), &value),
        Ok(())
    );
    assert_eq!(
        server.verify(issued + Duration::from_millis(10_001), &value),
        Err(EchoError::Stale {
            age: Duration::from_millis(10_001)
        })
    );
    // A stale value earns a new challenge, whose value is fresh again.
    let now = issued + Duration::from_secs(60);
    let request = Request::new(Method::Get).with_option(option::ECHO, value);
    let Err((EchoError::Stale { .. }, challenge)) = server.require_fresh(now, &[], &request) else {
        panic!("stale value");
    };
    assert_eq!(server.verify(now, &echo_of(&challenge)), Ok(()));
}

#[test]
fn tampered_and_foreign_values_are_forged() {
    let t0 = Instant::now();
    let server = verifier(t0);
    let value = server.issue(t0).into_bytes();
    assert_eq!(server.verify(t0, &value), Ok(()));
    // Every single-bit flip is caught, in the time as in the tag.
    for i in 0..value.len() * 8 {
        let mut v = value.clone();
        if let Some(b) = v.get_mut(i / 8) {
            *b ^= 1 << (i % 8);
        }
        assert_eq!(server.verify(t0, &v), Err(EchoError::Forged), "bit {i}");
    }
    // Moving the time forward to stretch the window needs the key.
    let later = t0 + Duration::from_secs(3600);
    let mut moved = value.clone();
    moved[..8].copy_from_slice(&3_600_000u64.to_be_bytes());
    assert_eq!(server.verify(later, &moved), Err(EchoError::Forged));
    // Another key (e.g. after a restart) does not accept our values.
    let other = EchoVerifier::new([0; 16], t0, EchoConfig::default());
    assert_eq!(other.verify(t0, &value), Err(EchoError::Forged));
    // Valid lengths that are not our format.
    assert_eq!(server.verify(t0, &[1]), Err(EchoError::Forged));
    assert_eq!(server.verify(t0, &value[..15]), Err(EchoError::Forged));
    let mut longer = value.clone();
    longer.push(0);
    assert_eq!(server.verify(t0, &longer), Err(EchoError::Forged));
}

#[test]
fn lengths_are_checked_first() {
    let t0 = Instant::now();
    let server = verifier(t0);
    assert_eq!(server.verify(t0, &[]), Err(EchoError::Length { len: 0 }));
    assert_eq!(
        server.verify(t0, &[0; MAX_LEN + 1]),
        Err(EchoError::Length { len: 41 })
    );
    assert!(EchoValue::parse(&[0; MAX_LEN]).is_ok());
    let request = Request::new(Method::Get).with_option(option::ECHO, vec![0; 41]);
    assert_eq!(
        echo_option(&request.options),
        Some(Err(EchoError::Length { len: 41 }))
    );
    assert_eq!(echo_option(&Request::new(Method::Get).options), None);
    let Err((EchoError::Length { len: 41 }, challenge)) = server.require_fresh(t0, &[], &request)
    else {
        panic!("oversize Echo");
    };
    assert_eq!(challenge.code, Code::UNAUTHORIZED);
}

#[test]
fn one_retry_only() {
    let t0 = Instant::now();
    let server = verifier(t0);
    let mut client = EchoClient::new();
    assert!(!client.has_retried());
    assert!(client.on_response(&server.challenge(t0)).is_some());
    assert!(client.has_retried());
    // The server challenges again (say it rejects its own values): no loop, the 4.01 goes to
    // the application.
    assert_eq!(client.on_response(&server.challenge(t0)), None);
}

#[test]
fn client_retries_only_on_a_valid_challenge() {
    let mut client = EchoClient::new();
    let plain_401 = Response::new(Code::UNAUTHORIZED);
    assert_eq!(client.on_response(&plain_401), None, "no Echo: a real 4.01");
    let bad_length = Response::new(Code::UNAUTHORIZED).with_option(option::ECHO, vec![0; 41]);
    assert_eq!(client.on_response(&bad_length), None);
    let echo_in_205 = Response::new(Code::CONTENT).with_option(option::ECHO, vec![9]);
    assert_eq!(
        client.on_response(&echo_in_205),
        None,
        "only 4.01 asks for a retry"
    );
    assert!(!client.has_retried(), "none of those used up the retry");
    let ok = Response::new(Code::UNAUTHORIZED).with_option(option::ECHO, vec![9]);
    assert_eq!(client.on_response(&ok), Some(vec![9]));
}

#[test]
fn apply_sets_a_single_echo() {
    let mut request = Request::new(Method::Get).with_option(option::ECHO, vec![1]);
    let Ok(value) = EchoValue::parse(&[2, 3]) else {
        panic!("2 bytes is a valid length");
    };
    value.apply(&mut request);
    let echoes: Vec<&[u8]> = request.options.get_all(option::ECHO).collect();
    assert_eq!(echoes, [&[2u8, 3][..]]);
}

#[test]
fn deterministic_for_a_given_secret_and_epoch() {
    let t0 = Instant::now();
    let t1 = t0 + Duration::from_millis(1234);
    assert_eq!(verifier(t0).issue(t1), verifier(t0).issue(t1));
    assert_ne!(
        verifier(t0).issue(t1),
        verifier(t0).issue(t1 + Duration::from_millis(1))
    );
}
