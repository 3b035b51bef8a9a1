//! aiocoap (PyPI, with DTLSSocket: tinydtls, PSK with TLS_PSK_WITH_AES_128_CCM_8 only) against
//! Steward over plain CoAP and DTLS-PSK. Installed by `interop/install-peers`.

use std::time::Duration;

use steward_interop::{PSK_IDENTITY, PSK_KEY, run, start_dtls_server, start_plain_server};

const LIMIT: Duration = Duration::from_secs(30);

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiocoap_client_over_plain_coap() {
    let server = start_plain_server().await.expect("server binds");
    let url = format!("coap://{}/hello", server.local);
    let out = run("aiocoap-client", &[&url], LIMIT)
        .await
        .unwrap_or_else(|e| panic!("aiocoap-client: {e} (run interop/install-peers)"));
    assert_eq!(stdout(&out), "Hello from Steward", "{out:?}");
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiocoap_client_over_dtls_psk() {
    let server = start_dtls_server(None).expect("server binds");
    let dir = std::env::temp_dir().join(format!("steward-aiocoap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let credentials = dir.join("credentials.json");
    let key = String::from_utf8_lossy(PSK_KEY);
    std::fs::write(
        &credentials,
        format!(
            r#"{{"coaps://{}/*": {{"dtls": {{"psk": {{"ascii": "{key}"}}, "client-identity": {{"ascii": "{PSK_IDENTITY}"}}}}}}}}"#,
            server.local
        ),
    )
    .expect("write credentials");
    let creds = credentials.to_str().expect("utf-8 path");
    for path in ["/whoami", "/large"] {
        let url = format!("coaps://{}{path}", server.local);
        let out = run("aiocoap-client", &["--credentials", creds, &url], LIMIT)
            .await
            .expect("aiocoap-client runs");
        let expected = match path {
            "/whoami" => format!("psk:{PSK_IDENTITY}"),
            _ => String::from_utf8(steward_interop::large_body()).expect("ascii"),
        };
        assert_eq!(stdout(&out), expected, "{path}: {out:?}");
    }
    server.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
