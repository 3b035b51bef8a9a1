//! The npm `lwm2m-node-lib` client (LwM2M 1.0, text format, no DTLS; installed by
//! `interop/install-peers`) registers with `steward serve` over plain CoAP and answers the
//! server's read of a single resource.

use std::path::PathBuf;
use std::time::Duration;

use steward::config::Config;
use steward::dm::request::DownlinkRequest;
use steward::dm::response::DownlinkResponse;
use steward::runtime;
use steward_objects::{ContentFormat, Node, Path, Resource, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lwm2m_node_lib_registers_and_answers_a_read() {
    let data = std::env::temp_dir().join(format!("steward-node-interop-{}", std::process::id()));
    let config = Config {
        coap_port: 0,
        coaps_port: 0,
        bs_coap_port: 0,
        bs_coaps_port: 0,
        http_port: 0,
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

    // A read of /3/0/0 (Manufacturer) as text/plain, the format this client speaks.
    let read = DownlinkRequest::Read {
        path: Path::Resource(3, 0, 0),
        format: Some(ContentFormat::Text),
    };
    let answer = server
        .devices()
        .request("node-client-1", read, Duration::from_secs(10))
        .await
        .expect("the client answers the read");
    match answer {
        DownlinkResponse::Read { node, .. } => assert_eq!(
            node,
            Some(Node::Resource(Resource::Single(Value::String(
                "Node Manufacturer".into()
            ))))
        ),
        other => panic!("expected a read response, got {other:?}"),
    }
    let _ = child.kill().await;
    server.shutdown().await.expect("clean shutdown");
    let _ = std::fs::remove_dir_all(&data);
}
