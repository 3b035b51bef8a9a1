//! libcoap's command-line clients (Debian `libcoap3-bin`, installed by `interop/install-peers`)
//! against Steward's plain-UDP endpoint.

use std::time::Duration;

use steward_interop::{large_body, run, start_plain_server};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libcoap_fetches_a_4k_resource_block_wise() {
    let server = start_plain_server().await.expect("server binds");
    let url = format!("coap://{}/large", server.local);
    let expected = String::from_utf8(large_body()).expect("ascii");
    for block_size in ["1024", "256", "16"] {
        let out = run(
            "coap-client-notls",
            &["-m", "get", "-b", block_size, "-B", "10", &url],
            LIMIT,
        )
        .await
        .expect("client runs");
        assert_eq!(stdout(&out), expected, "block size {block_size}: {out:?}");
    }
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libcoap_puts_a_large_body_block_wise() {
    let server = start_plain_server().await.expect("server binds");
    let dir = std::env::temp_dir().join(format!("steward-interop-put-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("body.txt");
    let body: String = (0..3000)
        .map(|i| char::from(b'A' + (i % 26) as u8))
        .collect();
    std::fs::write(&file, &body).expect("write");
    let url = format!("coap://{}/echo", server.local);
    let out = run(
        "coap-client-notls",
        &[
            "-m",
            "put",
            "-b",
            "256",
            "-B",
            "10",
            "-f",
            file.to_str().expect("utf-8"),
            &url,
        ],
        LIMIT,
    )
    .await
    .expect("client runs");
    assert_eq!(stdout(&out), body, "{out:?}");
    server.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libcoap_observes_a_resource() {
    let server = start_plain_server().await.expect("server binds");
    let url = format!("coap://{}/counter", server.local);
    // Subscribe for two seconds; the server notifies every 200 ms.
    let out = run(
        "coap-client-notls",
        &["-m", "get", "-s", "2", "-B", "4", &url],
        LIMIT,
    )
    .await
    .expect("client runs");
    let values: Vec<u64> = stdout(&out)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert!(values.len() >= 3, "notifications: {values:?} ({out:?})");
    assert!(
        values.windows(2).all(|w| w[0] < w[1]),
        "in order: {values:?}"
    );
    server.shutdown();
}
