//! The vendor recovery service (issue 8): its HTTP API over real sockets on loopback, its
//! audit log, restarts, and the `steward vendor` commands. Every server a test starts, it stops.
#![allow(clippy::unwrap_used)]

mod http_client;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_client::{Reply, Request};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use steward::vendor::{self, RunningVendor, VendorService};
use steward_pki::cose::{cose_sign1_kid, load_verifying_key};
use steward_pki::recovery::{
    Expectation, MAX_LIFETIME, MAX_NAME_LEN, RecoveryClaims, verify_recovery_token,
};

const FP: &str = "5d41402abc4b2a76b9719d911017c59228b4637f1b2e3c4d5e6f708192a3b4c5";
const TOKENS: &str = "/api/vendor/recovery-tokens";
const WEEK: u64 = 7 * 24 * 60 * 60;

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A service in a fresh data directory with one administrator, served on 127.0.0.1:0.
struct Fixture {
    dir: tempfile::TempDir,
    service: VendorService,
    token: String,
    running: RunningVendor,
}

impl Fixture {
    async fn start() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let service = VendorService::init(dir.path(), "ACME Phones").unwrap();
        let token = service.add_admin("alice").unwrap().expose().to_owned();
        let running = vendor::serve(service.clone(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        Fixture {
            dir,
            service,
            token,
            running,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.running.local_addr()
    }

    async fn post(&self, token: Option<&str>, body: &Value) -> Reply {
        let text = body.to_string();
        Request::new("POST", TOKENS)
            .bearer(token)
            .body("application/json", text.as_bytes())
            .send(self.addr())
            .await
    }

    async fn issue(&self, body: &Value) -> Value {
        let reply = self.post(Some(&self.token), body).await;
        assert_eq!(reply.status, 201, "{}", reply.text());
        assert_eq!(reply.content_type(), "application/json");
        reply.json()
    }

    async fn audit(&self, query: &str) -> Vec<Value> {
        let target = format!("/api/vendor/audit{query}");
        let reply = Request::get(&target)
            .bearer(Some(&self.token))
            .send(self.addr())
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()["records"].as_array().unwrap().clone()
    }

    async fn stop(self) -> (tempfile::TempDir, VendorService) {
        self.running.shutdown().await;
        (self.dir, self.service)
    }
}

/// Verifies a token as a device of `installation` holding the CTL `fingerprint` would.
fn verify(public_pem: &str, token: &[u8], fingerprint: &str, installation: &str) -> RecoveryClaims {
    let key = load_verifying_key(public_pem).unwrap();
    let fingerprint: [u8; 32] = unhex(fingerprint).try_into().unwrap();
    verify_recovery_token(
        &key,
        token,
        &Expectation {
            fingerprint,
            installation,
            now: now(),
        },
    )
    .unwrap()
}

/// SHA-256 of the SubjectPublicKeyInfo DER of a public key PEM.
fn key_id_of(public_pem: &str) -> String {
    let der = openssl::pkey::PKey::public_key_from_pem(public_pem.as_bytes())
        .unwrap()
        .public_key_to_der()
        .unwrap();
    hex(&Sha256::digest(der))
}

fn error_of(reply: &Reply) -> String {
    assert_eq!(reply.content_type(), "application/json", "{}", reply.text());
    reply.json()["error"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_valid_token_nothing_is_signed_or_shown() {
    let f = Fixture::start().await;
    let body = json!({"fingerprint": FP, "installation": "site-1"});
    for token in [None, Some("wrong"), Some(&"0".repeat(64)[..])] {
        let reply = f.post(token, &body).await;
        assert_eq!(reply.status, 401, "{token:?}: {}", reply.text());
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
        assert!(error_of(&reply).contains("bearer token"));
    }
    // Another scheme with the right secret is not a bearer token.
    let reply = Request::new("POST", TOKENS)
        .header("Authorization", &format!("Basic {}", f.token))
        .body("application/json", body.to_string().as_bytes())
        .send(f.addr())
        .await;
    assert_eq!(reply.status, 401);
    // A removed administrator's token stops working at once.
    let bob = f.service.add_admin("bob").unwrap().expose().to_owned();
    assert_eq!(f.post(Some(&bob), &body).await.status, 201);
    assert!(f.service.remove_admin("bob").unwrap());
    assert_eq!(f.post(Some(&bob), &body).await.status, 401);
    let audit = Request::get("/api/vendor/audit").send(f.addr()).await;
    assert_eq!(audit.status, 401);
    let audit = Request::get("/api/vendor/audit")
        .bearer(Some("wrong"))
        .send(f.addr())
        .await;
    assert_eq!(audit.status, 401);
    // Unauthenticated attempts are not audited: only bob's signing is there.
    let records = f.audit("").await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["admin"], "bob");

    // The public key and its id are public.
    let pem = Request::get("/api/vendor/public-key").send(f.addr()).await;
    assert_eq!(pem.status, 200);
    assert_eq!(pem.text(), f.service.public_key_pem());
    assert_eq!(
        pem.text(),
        std::fs::read_to_string(f.dir.path().join("vendor-public.pem")).unwrap()
    );
    let kid = Request::get("/api/vendor/key-id").send(f.addr()).await;
    assert_eq!(kid.status, 200);
    assert_eq!(kid.text(), key_id_of(&pem.text()));
    assert_eq!(kid.text(), hex(&f.service.key_id()));
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_a_clear_message_and_audited() {
    let f = Fixture::start().await;
    let token = Some(f.token.as_str());
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"fingerprint": "abc", "installation": "s"}),
            "fingerprint",
        ),
        (
            json!({"fingerprint": FP.replace('a', "x"), "installation": "s"}),
            "fingerprint",
        ),
        (
            json!({"fingerprint": FP, "installation": ""}),
            "installation",
        ),
        (
            json!({"fingerprint": FP, "installation": "i".repeat(MAX_NAME_LEN + 1)}),
            "installation",
        ),
        (
            json!({"fingerprint": FP, "installation": "a\nb"}),
            "control characters",
        ),
        (
            json!({"fingerprint": FP, "installation": "s", "lifetimeSeconds": MAX_LIFETIME + 1}),
            "lifetime",
        ),
        (
            json!({"fingerprint": FP, "installation": "s", "lifetimeSeconds": 0}),
            "lifetime",
        ),
        (
            json!({"fingerprint": FP, "installation": "s", "lifetimeSeconds": -5}),
            "lifetimeSeconds",
        ),
        (
            json!({"fingerprint": FP, "installation": "s", "lifetime": 60}),
            "unknown field",
        ),
        (json!({"installation": "s"}), "fingerprint"),
        (json!([FP, "s"]), "expected"),
    ];
    for (body, expected) in &cases {
        let reply = f.post(token, body).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
        let message = error_of(&reply);
        assert!(message.contains(expected), "{body}: {message}");
    }
    let not_json = Request::new("POST", TOKENS)
        .bearer(token)
        .body("application/json", b"fingerprint=00")
        .send(f.addr())
        .await;
    assert_eq!(not_json.status, 400);
    // Exactly at the limit is still fine.
    let long = json!({"fingerprint": FP, "installation": "i".repeat(MAX_NAME_LEN)});
    assert_eq!(f.post(token, &long).await.status, 201);
    // A huge body is refused before it is read.
    let huge = vec![b'x'; 1024 * 1024];
    let reply = Request::new("POST", TOKENS)
        .bearer(token)
        .body("application/json", &huge)
        .send(f.addr())
        .await;
    assert_eq!(reply.status, 413, "{}", reply.text());
    assert!(error_of(&reply).contains("over"));

    // Every refusal of a known administrator is in the audit, with what was asked.
    let records = f.audit("").await;
    let refused: Vec<&Value> = records
        .iter()
        .filter(|r| r["outcome"] == "refused")
        .collect();
    assert_eq!(refused.len(), cases.len() + 2, "{records:#?}");
    assert!(refused.iter().all(|r| r["admin"] == "alice"));
    assert!(refused.iter().all(|r| r["tokenId"].is_null()));
    assert!(refused.iter().all(|r| r["reason"].as_str().is_some()));
    assert_eq!(refused[0]["fingerprint"], "abc");
    let newline = refused
        .iter()
        .find(|r| {
            r["reason"]
                .as_str()
                .unwrap()
                .contains("has control characters")
        })
        .unwrap();
    assert_eq!(
        newline["installation"], "a\u{fffd}b",
        "no raw newline in the audit"
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issued_token_verifies_with_the_public_key_and_matches_the_request() {
    let f = Fixture::start().await;
    let before = now();
    let answer = f
        .issue(&json!({"fingerprint": FP.to_uppercase(), "installation": "Zürich HQ", "lifetimeSeconds": 3600}))
        .await;
    let token = unhex(answer["token"].as_str().unwrap());
    assert_eq!(answer["size"], token.len());
    assert_eq!(answer["fingerprint"], FP);
    assert_eq!(answer["installation"], "Zürich HQ");
    assert_eq!(answer["keyId"], hex(&f.service.key_id()));
    assert_eq!(answer["issuer"], "ACME Phones");

    // As a device verifies it: the PEM devices are built with, the CTL, the installation.
    let pem = std::fs::read_to_string(f.dir.path().join("vendor-public.pem")).unwrap();
    let claims = verify(&pem, &token, FP, "Zürich HQ");
    assert_eq!(hex(&claims.ctl_fingerprint), FP);
    assert_eq!(claims.installation, "Zürich HQ");
    assert_eq!(claims.issuer, "ACME Phones");
    assert_eq!(claims.expires_at - claims.issued_at, 3600);
    assert!(claims.issued_at >= before && claims.issued_at <= now());
    assert_eq!(answer["issuedAt"], claims.issued_at);
    assert_eq!(answer["expiresAt"], claims.expires_at);
    assert_eq!(claims.token_id.len(), 16);
    assert_eq!(answer["tokenId"], hex(&claims.token_id));
    // kid = SHA-256 of the SubjectPublicKeyInfo DER (42769 resource 7).
    assert_eq!(hex(&cose_sign1_kid(&token).unwrap()), key_id_of(&pem));
    // Scoped: another installation or CTL is refused.
    let key = load_verifying_key(&pem).unwrap();
    let fingerprint: [u8; 32] = unhex(FP).try_into().unwrap();
    let other = Expectation {
        fingerprint,
        installation: "Basel",
        now: now(),
    };
    assert!(verify_recovery_token(&key, &token, &other).is_err());
    println!("recovery token: {} bytes", token.len());

    // The default lifetime is a week; every token has its own id.
    let second = f
        .issue(&json!({"fingerprint": FP, "installation": "Zürich HQ"}))
        .await;
    let second_claims = verify(
        &pem,
        &unhex(second["token"].as_str().unwrap()),
        FP,
        "Zürich HQ",
    );
    assert_eq!(second_claims.expires_at - second_claims.issued_at, WEEK);
    assert_ne!(second_claims.token_id, claims.token_id);
    assert_ne!(second["tokenId"], answer["tokenId"]);
    // The longest lifetime allowed.
    let longest = f
        .issue(&json!({"fingerprint": FP, "installation": "s", "lifetimeSeconds": MAX_LIFETIME}))
        .await;
    assert_eq!(
        longest["expiresAt"].as_u64().unwrap() - longest["issuedAt"].as_u64().unwrap(),
        MAX_LIFETIME
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_says_who_when_what_for_every_signing() {
    let f = Fixture::start().await;
    let bob = f.service.add_admin("bob").unwrap().expose().to_owned();
    let first = f
        .issue(&json!({"fingerprint": FP, "installation": "site-1"}))
        .await;
    let refused = f
        .post(
            Some(&bob),
            &json!({"fingerprint": "00", "installation": "site-2"}),
        )
        .await;
    assert_eq!(refused.status, 400);
    let body = json!({"fingerprint": FP, "installation": "site-2", "lifetimeSeconds": 60});
    let second = f.post(Some(&bob), &body).await;
    assert_eq!(second.status, 201);
    let second = second.json();

    let records = f.audit("").await;
    assert_eq!(records.len(), 3, "{records:#?}");
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3], "newest last, no gaps");
    for r in &records {
        assert_eq!(r["channel"], "api");
        let remote: SocketAddr = r["remote"].as_str().unwrap().parse().unwrap();
        assert!(remote.ip().is_loopback());
        let time = r["time"].as_u64().unwrap();
        assert!(time <= now() && time + 60 > now());
    }
    let (a, r, b) = (&records[0], &records[1], &records[2]);
    assert_eq!(a["admin"], "alice");
    assert_eq!(a["outcome"], "issued");
    assert_eq!(a["fingerprint"], FP);
    assert_eq!(a["installation"], "site-1");
    assert_eq!(a["tokenId"], first["tokenId"]);
    assert_eq!(a["issuedAt"], first["issuedAt"]);
    assert_eq!(a["expiresAt"], first["expiresAt"]);
    assert_eq!(a["size"], first["size"]);
    assert_eq!(r["admin"], "bob");
    assert_eq!(r["outcome"], "refused");
    assert_eq!(r["installation"], "site-2");
    assert!(r["reason"].as_str().unwrap().contains("fingerprint"));
    assert_eq!(b["admin"], "bob");
    assert_eq!(b["tokenId"], second["tokenId"]);
    assert_eq!(
        b["expiresAt"].as_u64().unwrap() - b["issuedAt"].as_u64().unwrap(),
        60
    );

    let last = f.audit("?limit=2").await;
    assert_eq!(last.len(), 2);
    assert_eq!(last[1]["seq"], 3);
    for bad in ["?limit=0", "?limit=x", "?limit=100000"] {
        let target = format!("/api/vendor/audit{bad}");
        let reply = Request::get(&target)
            .bearer(Some(&f.token))
            .send(f.addr())
            .await;
        assert_eq!(reply.status, 400, "{bad}");
        assert!(error_of(&reply).contains("limit"));
    }
    // The same records through the library.
    assert_eq!(f.service.audit(10).unwrap().len(), 3);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_key_the_administrators_and_the_audit() {
    let f = Fixture::start().await;
    let token = f.token.clone();
    let answer = f
        .issue(&json!({"fingerprint": FP, "installation": "site-1"}))
        .await;
    let key_id = f.service.key_id();
    let pem = f.service.public_key_pem().to_owned();
    let (dir, service) = f.stop().await;
    drop(service);

    let service = VendorService::open(dir.path()).unwrap();
    assert_eq!(service.key_id(), key_id);
    assert_eq!(service.public_key_pem(), pem);
    assert_eq!(service.issuer(), "ACME Phones");
    let running = vendor::serve(service.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let body = json!({"fingerprint": FP, "installation": "site-1"}).to_string();
    let reply = Request::new("POST", TOKENS)
        .bearer(Some(&token))
        .body("application/json", body.as_bytes())
        .send(running.local_addr())
        .await;
    assert_eq!(reply.status, 201, "the administrator's token still works");
    let again = reply.json();
    verify(&pem, &unhex(again["token"].as_str().unwrap()), FP, "site-1");
    assert_ne!(again["tokenId"], answer["tokenId"]);
    let records = service.audit(100).unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(
        records[0].token_id.as_deref(),
        answer["tokenId"].as_str(),
        "the record from before the restart"
    );
    assert_eq!(records[1].seq, 2, "the sequence continues");
    running.shutdown().await;
    drop(service);
    // init never overwrites the key, and a reopened directory has the same one.
    let e = VendorService::init(dir.path(), "other").err().unwrap();
    assert!(e.to_string().contains("never overwrites"), "{e}");
    assert_eq!(VendorService::open(dir.path()).unwrap().key_id(), key_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_without_a_key_is_not_opened() {
    let dir = tempfile::tempdir().unwrap();
    let e = VendorService::open(dir.path()).err().unwrap();
    assert!(e.to_string().contains("steward vendor init"), "{e}");
    assert!(!dir.path().join("db").exists(), "no database left behind");
    // A database whose key is gone is not given a new key behind the operator's back.
    let service = VendorService::init(dir.path(), "ACME").unwrap();
    drop(service);
    std::fs::remove_file(dir.path().join("vendor-key.pem")).unwrap();
    std::fs::remove_file(dir.path().join("vendor-public.pem")).unwrap();
    let e = VendorService::init(dir.path(), "ACME").err().unwrap();
    assert!(e.to_string().contains("restore"), "{e}");
    assert!(!dir.path().join("vendor-key.pem").exists());
}

// ---- the `steward vendor` commands ----

fn steward(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(args)
        .env_remove("STEWARD_VENDOR_TOKEN")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_init_admin_sign_audit_round_trip() {
    tokio::task::spawn_blocking(|| {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("vendor");
        let d = data.to_str().unwrap();
        let init = stdout(&steward(&[
            "vendor",
            "init",
            "--data-dir",
            d,
            "--issuer",
            "ACME",
        ]));
        assert!(init.contains("key id"), "{init}");
        let pem_path = data.join("vendor-public.pem");
        let key_path = data.join("vendor-key.pem");
        let pem = std::fs::read_to_string(&pem_path).unwrap();
        assert!(init.contains(&key_id_of(&pem)), "{init}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let key = std::fs::read(&key_path).unwrap();

        // init refuses to overwrite.
        let again = steward(&["vendor", "init", "--data-dir", d]);
        assert_eq!(again.status.code(), Some(2));
        assert!(
            stderr(&again).contains("never overwrites"),
            "{}",
            stderr(&again)
        );
        assert_eq!(std::fs::read(&key_path).unwrap(), key);

        let token = stdout(&steward(&[
            "vendor",
            "admin",
            "add",
            "alice",
            "--data-dir",
            d,
        ]));
        let token = token.trim();
        assert_eq!(token.len(), 64, "{token}");
        let dup = steward(&["vendor", "admin", "add", "alice", "--data-dir", d]);
        assert!(!dup.status.success());
        assert!(stderr(&dup).contains("already exists"));
        let list = stdout(&steward(&["vendor", "admin", "list", "--data-dir", d]));
        assert!(list.starts_with("alice\t"), "{list}");

        // sign to stdout: only the token there.
        let signed = stdout(&steward(&[
            "vendor",
            "sign",
            "--data-dir",
            d,
            "--admin",
            "alice",
            "--fingerprint",
            FP,
            "--installation",
            "site-1",
            "--lifetime",
            "600",
        ]));
        let token_bytes = unhex(signed.trim());
        let claims = verify(&pem, &token_bytes, FP, "site-1");
        assert_eq!(claims.expires_at - claims.issued_at, 600);
        assert_eq!(claims.issuer, "ACME");
        // sign to a file.
        let out = dir.path().join("token.hex");
        let summary = stdout(&steward(&[
            "vendor",
            "sign",
            "--data-dir",
            d,
            "--admin",
            "alice",
            "--fingerprint",
            FP,
            "--installation",
            "site-1",
            "--out",
            out.to_str().unwrap(),
        ]));
        assert!(summary.contains("token.hex"), "{summary}");
        let from_file = unhex(std::fs::read_to_string(&out).unwrap().trim());
        let file_claims = verify(&pem, &from_file, FP, "site-1");
        assert_eq!(file_claims.expires_at - file_claims.issued_at, WEEK);
        assert_ne!(file_claims.token_id, claims.token_id);

        // Refusals: an unknown administrator, a bad fingerprint.
        let unknown = steward(&[
            "vendor",
            "sign",
            "--data-dir",
            d,
            "--admin",
            "mallory",
            "--fingerprint",
            FP,
            "--installation",
            "site-1",
        ]);
        assert_eq!(unknown.status.code(), Some(2));
        assert!(stderr(&unknown).contains("no administrator named \"mallory\""));
        let bad = steward(&[
            "vendor",
            "sign",
            "--data-dir",
            d,
            "--admin",
            "alice",
            "--fingerprint",
            "00",
            "--installation",
            "site-1",
        ]);
        assert_eq!(bad.status.code(), Some(2));
        assert!(stderr(&bad).contains("64 hex digits"), "{}", stderr(&bad));
        assert!(bad.stdout.is_empty(), "no token on a refusal");

        let audit = stdout(&steward(&["vendor", "audit", "--data-dir", d]));
        let lines: Vec<&str> = audit.lines().collect();
        assert_eq!(lines.len(), 4, "{audit}");
        assert!(lines[0].starts_with("#1 "), "{audit}");
        assert!(lines[0].contains("alice via cli: issued"), "{audit}");
        assert!(lines[0].contains(&format!("cti={}", hex(&claims.token_id))));
        assert!(lines[0].contains(&format!("fingerprint={FP}")));
        assert!(lines[0].contains("installation=\"site-1\""));
        assert!(lines[2].contains("mallory via cli: refused"), "{audit}");
        assert!(lines[3].contains("alice via cli: refused"), "{audit}");
        let last = stdout(&steward(&[
            "vendor",
            "audit",
            "--data-dir",
            d,
            "--limit",
            "1",
        ]));
        assert!(last.starts_with("#4 "), "{last}");

        let removed = stdout(&steward(&[
            "vendor",
            "admin",
            "remove",
            "alice",
            "--data-dir",
            d,
        ]));
        assert!(removed.contains("removed"));
        let gone = steward(&["vendor", "admin", "remove", "alice", "--data-dir", d]);
        assert!(!gone.status.success());
        let list = stdout(&steward(&["vendor", "admin", "list", "--data-dir", d]));
        assert!(list.is_empty(), "{list}");

        // A directory that was never initialised.
        let empty = dir.path().join("nothing");
        let none = steward(&["vendor", "audit", "--data-dir", empty.to_str().unwrap()]);
        assert_eq!(none.status.code(), Some(2));
        assert!(
            stderr(&none).contains("steward vendor init"),
            "{}",
            stderr(&none)
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_request_against_a_served_instance_and_a_locked_directory() {
    let f = Fixture::start().await;
    let url = format!("http://{}", f.addr());
    let data = f.dir.path().to_str().unwrap().to_owned();
    let out = f.dir.path().join("token.hex");
    let (token, pem) = (f.token.clone(), f.service.public_key_pem().to_owned());
    let out_path = out.clone();
    tokio::task::spawn_blocking(move || {
        // The token from the environment, written to a file.
        let request = Command::new(env!("CARGO_BIN_EXE_steward"))
            .args([
                "vendor",
                "request",
                "--url",
                &url,
                "--fingerprint",
                FP,
                "--installation",
                "site-9",
                "--lifetime",
                "120",
                "--out",
                out_path.to_str().unwrap(),
            ])
            .env("STEWARD_VENDOR_TOKEN", &token)
            .output()
            .unwrap();
        let summary = stdout(&request);
        assert!(summary.contains("site-9"), "{summary}");
        let token_bytes = unhex(std::fs::read_to_string(&out_path).unwrap().trim());
        let claims = verify(&pem, &token_bytes, FP, "site-9");
        assert_eq!(claims.expires_at - claims.issued_at, 120);

        // --token, to stdout.
        let printed = stdout(&steward(&[
            "vendor",
            "request",
            "--url",
            &url,
            "--token",
            &token,
            "--fingerprint",
            FP,
            "--installation",
            "site-9",
        ]));
        verify(&pem, &unhex(printed.trim()), FP, "site-9");

        // The service's refusals come through.
        let wrong = steward(&[
            "vendor",
            "request",
            "--url",
            &url,
            "--token",
            "nope",
            "--fingerprint",
            FP,
            "--installation",
            "site-9",
        ]);
        assert_eq!(wrong.status.code(), Some(2));
        assert!(stderr(&wrong).contains("401"), "{}", stderr(&wrong));
        let bad = steward(&[
            "vendor",
            "request",
            "--url",
            &url,
            "--token",
            &token,
            "--fingerprint",
            FP,
            "--installation",
            "site-9",
            "--lifetime",
            "99999999",
        ]);
        assert!(stderr(&bad).contains("400") && stderr(&bad).contains("lifetime"));
        let no_token = steward(&[
            "vendor",
            "request",
            "--url",
            &url,
            "--fingerprint",
            FP,
            "--installation",
            "x",
        ]);
        assert!(stderr(&no_token).contains("STEWARD_VENDOR_TOKEN"));

        // The running service holds the directory: offline commands say so.
        let locked = steward(&[
            "vendor",
            "sign",
            "--data-dir",
            &data,
            "--admin",
            "alice",
            "--fingerprint",
            FP,
            "--installation",
            "site-9",
        ]);
        assert_eq!(locked.status.code(), Some(2));
        assert!(
            stderr(&locked).contains("in use by another process"),
            "{}",
            stderr(&locked)
        );
    })
    .await
    .unwrap();
    let records = f.audit("").await;
    let issued: Vec<&Value> = records
        .iter()
        .filter(|r| r["outcome"] == "issued")
        .collect();
    assert_eq!(issued.len(), 2, "{records:#?}");
    assert!(
        issued
            .iter()
            .all(|r| r["channel"] == "api" && r["installation"] == "site-9")
    );
    f.stop().await;
}

/// `steward vendor serve` as a process; killed on drop if a test fails before stopping it.
struct ServeProcess(Child);

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_listens_answers_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_owned();
    let service = VendorService::init(dir.path(), "ACME").unwrap();
    let key_id = hex(&service.key_id());
    drop(service);
    let mut child = ServeProcess(
        Command::new(env!("CARGO_BIN_EXE_steward"))
            .args([
                "vendor",
                "serve",
                "--data-dir",
                &d,
                "--listen",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        line
    })
    .await
    .unwrap();
    assert!(line.contains(&format!("key-id={key_id}")), "{line}");
    let addr: SocketAddr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .unwrap()
        .parse()
        .unwrap();
    let reply = Request::get("/api/vendor/key-id").send(addr).await;
    assert_eq!(reply.text(), key_id);

    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(status.success(), "exit {status} on SIGTERM");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "did not stop within 20 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Stopped: the directory is free for the offline commands again.
    let service = tokio::task::spawn_blocking(move || VendorService::open(Path::new(&d)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hex(&service.key_id()), key_id);
}
