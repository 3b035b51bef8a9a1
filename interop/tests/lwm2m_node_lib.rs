//! The npm `lwm2m-node-lib` client (LwM2M 1.0, text format, no DTLS; installed by
//! `interop/install-peers`) registers with `steward serve` over plain CoAP.

use std::path::PathBuf;
use std::time::Duration;

use steward::config::Config;
use steward::runtime;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lwm2m_node_lib_registers_with_steward() {
    let data = std::env::temp_dir().join(format!("steward-node-interop-{}", std::process::id()));
    let config = Config {
        coap_port: 0,
        coaps_port: 0,
        data_dir: data.clone(),
        allow_unsecured: true,
        ..Config::default()
    };
    let server = runtime::start(&config).await.expect("server starts");
    let script: PathBuf = [env!("CARGO_MANIFEST_DIR"), "node", "lwm2m-node-client.js"]
        .iter()
        .collect();
    let mut child = tokio::process::Command::new("node")
        .arg(&script)
        .arg("127.0.0.1")
        .arg(server.coap_addr().port().to_string())
        .arg("node-client-1")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (run interop/install-peers)");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let registered = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(location) = line.strip_prefix("registered ") {
                return Some(location.to_owned());
            }
        }
        None
    })
    .await
    .expect("registration within 20 s")
    .expect("the client printed its location");
    let registration = server
        .registration("node-client-1")
        .expect("Steward holds the registration");
    assert!(
        registered.ends_with(&registration.id),
        "{registered} vs {}",
        registration.id
    );
    assert_eq!(registration.version, steward::registry::Lwm2mVersion::V1_0);
    let _ = child.kill().await;
    server.shutdown().await.expect("clean shutdown");
    let _ = std::fs::remove_dir_all(&data);
}
