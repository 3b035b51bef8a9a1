//! libcoap's command-line clients (Debian `libcoap3-bin`, installed by `interop/install-peers`)
//! against Steward's plain-UDP endpoint.

use std::time::Duration;

use steward_interop::{run, start_plain_server};

const LIMIT: Duration = Duration::from_secs(20);

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libcoap_clients_get_and_post_over_plain_coap() {
    let server = start_plain_server().await.expect("server binds");
    let base = format!("coap://{}", server.local);
    for client in [
        "coap-client-notls",
        "coap-client-openssl",
        "coap-client-gnutls",
    ] {
        let out = run(
            client,
            &["-m", "get", "-B", "5", &format!("{base}/hello")],
            LIMIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{client}: {e} (run interop/install-peers)"));
        assert!(out.status.success(), "{client}: {out:?}");
        assert_eq!(stdout(&out), "Hello from Steward", "{client}");

        let out = run(
            client,
            &[
                "-m",
                "post",
                "-e",
                "ping",
                "-B",
                "5",
                &format!("{base}/echo"),
            ],
            LIMIT,
        )
        .await
        .expect("client runs");
        assert_eq!(stdout(&out), "ping", "{client}: {out:?}");
    }
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libcoap_sees_not_found_and_method_errors() {
    let server = start_plain_server().await.expect("server binds");
    let base = format!("coap://{}", server.local);
    let out = run(
        "coap-client-notls",
        &["-m", "get", "-B", "5", &format!("{base}/nothing")],
        LIMIT,
    )
    .await
    .expect("client runs");
    // libcoap prints the response code of an error response on stderr, e.g. "4.04 Not Found".
    let all = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(all.contains("4.04"), "{all}");
    let out = run(
        "coap-client-notls",
        &["-m", "delete", "-B", "5", &format!("{base}/hello")],
        LIMIT,
    )
    .await
    .expect("client runs");
    let all = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(all.contains("4.05"), "{all}");
    server.shutdown();
}
