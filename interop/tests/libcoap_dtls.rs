//! libcoap's clients over DTLS 1.2 against Steward: PSK (OpenSSL and GnuTLS builds) and mutual
//! certificates, with the identity Steward authenticated checked through `/whoami`.

use std::time::Duration;

use steward_interop::{PSK_IDENTITY, PSK_KEY, run, start_dtls_server, test_pki};

const LIMIT: Duration = Duration::from_secs(30);

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libcoap_psk_clients_over_dtls() {
    let server = start_dtls_server(None).expect("server binds");
    let key = String::from_utf8_lossy(PSK_KEY).into_owned();
    for client in ["coap-client-openssl", "coap-client-gnutls"] {
        let url = format!("coaps://{}/hello", server.local);
        let out = run(
            client,
            &[
                "-m",
                "get",
                "-B",
                "10",
                "-u",
                PSK_IDENTITY,
                "-k",
                &key,
                &url,
            ],
            LIMIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{client}: {e} (run interop/install-peers)"));
        assert!(
            text(&out).contains("Hello from Steward"),
            "{client}: {}",
            text(&out)
        );

        let url = format!("coaps://{}/whoami", server.local);
        let out = run(
            client,
            &[
                "-m",
                "get",
                "-B",
                "10",
                "-u",
                PSK_IDENTITY,
                "-k",
                &key,
                &url,
            ],
            LIMIT,
        )
        .await
        .expect("client runs");
        assert!(
            text(&out).contains(&format!("psk:{PSK_IDENTITY}")),
            "{client}: {}",
            text(&out)
        );
    }
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libcoap_wrong_psk_is_refused() {
    let server = start_dtls_server(None).expect("server binds");
    let url = format!("coaps://{}/hello", server.local);
    let out = run(
        "coap-client-openssl",
        &[
            "-m",
            "get",
            "-B",
            "5",
            "-u",
            PSK_IDENTITY,
            "-k",
            "wrong-key-000000",
            &url,
        ],
        LIMIT,
    )
    .await
    .expect("client runs");
    assert!(!text(&out).contains("Hello from Steward"), "{}", text(&out));
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libcoap_certificate_clients_over_dtls() {
    let pki = test_pki("urn:dev:interop-1").expect("pki");
    let dir = std::env::temp_dir().join(format!("steward-interop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca = dir.join("ca.pem");
    let cert = dir.join("client.pem");
    let key = dir.join("client.key");
    std::fs::write(&ca, &pki.ca_pem).expect("write");
    std::fs::write(&cert, &pki.client_cert_pem).expect("write");
    std::fs::write(&key, &pki.client_key_pem).expect("write");
    let server = start_dtls_server(Some(&pki)).expect("server binds");
    let url = format!("coaps://{}/whoami", server.local);
    for client in ["coap-client-openssl", "coap-client-gnutls"] {
        let out = run(
            client,
            &[
                "-m",
                "get",
                "-B",
                "10",
                "-c",
                cert.to_str().expect("utf-8 path"),
                "-j",
                key.to_str().expect("utf-8 path"),
                "-R",
                ca.to_str().expect("utf-8 path"),
                &url,
            ],
            LIMIT,
        )
        .await
        .expect("client runs");
        assert!(
            text(&out).contains("x509:urn:dev:interop-1"),
            "{client}: {}",
            text(&out)
        );
    }
    server.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
