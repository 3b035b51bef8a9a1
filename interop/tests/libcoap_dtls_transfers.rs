//! Block-wise transfers and observe over DTLS (PSK) with libcoap's OpenSSL and GnuTLS clients.

use std::time::Duration;

use steward_interop::{PSK_IDENTITY, PSK_KEY, large_body, run, start_dtls_server};

const LIMIT: Duration = Duration::from_secs(30);

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_wise_get_and_observe_over_dtls() {
    let server = start_dtls_server(None).expect("server binds");
    let key = String::from_utf8_lossy(PSK_KEY).into_owned();
    let expected = String::from_utf8(large_body()).expect("ascii");
    for client in ["coap-client-openssl", "coap-client-gnutls"] {
        let url = format!("coaps://{}/large", server.local);
        let out = run(
            client,
            &[
                "-m",
                "get",
                "-b",
                "512",
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
        assert_eq!(stdout(&out), expected, "{client}: {out:?}");

        let url = format!("coaps://{}/counter", server.local);
        let out = run(
            client,
            &[
                "-m",
                "get",
                "-s",
                "2",
                "-B",
                "4",
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
        let values: Vec<u64> = stdout(&out)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        assert!(values.len() >= 3, "{client}: notifications {values:?}");
        assert!(
            values.windows(2).all(|w| w[0] < w[1]),
            "{client}: {values:?}"
        );
    }
    server.shutdown();
}
