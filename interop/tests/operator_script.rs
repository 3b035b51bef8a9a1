//! The operator script (`interop/operator/operator.py`, Python with `requests`) against the real
//! server: `runtime::start` in-process, three `steward_client` devices over real UDP on
//! 127.0.0.1, and the script driving them through the Leshan-compatible REST API (list, read,
//! write, observe with events, execute, create, delete, errors). `requests` is installed by
//! `interop/install-peers`; without it this test fails rather than skips.

use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use steward::config::Config;
use steward::devices::DeviceEvent;
use steward::runtime;
use steward_client::{Client, DeviceConfig, SensorConfig};
use steward_coap::endpoint::Config as EndpointConfig;
use steward_coap::stack::StackConfig;
use steward_objects::Version;
use steward_transport::Handle;
use steward_transport::udp::{self, UdpConfig};
use tokio::io::AsyncReadExt;

/// The whole script: its own waits add up to well under this.
const SCRIPT_LIMIT: Duration = Duration::from_secs(150);
const REGISTER_WAIT: Duration = Duration::from_secs(20);

/// Every step the script reports, in order (`step <name>: ok ...`).
const STEPS: [&str; 21] = [
    "list",
    "pick",
    "read-object-instance",
    "read-text",
    "write",
    "read-back",
    "event-stream",
    "write-attributes",
    "observe",
    "notification",
    "cancel-observe",
    "cancel-unknown",
    "execute-reboot",
    "re-registration",
    "create",
    "read-created",
    "delete",
    "read-deleted",
    "delete-refused",
    "unknown-endpoint",
    "create-on-instance",
];

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("operator/operator.py")
}

/// A device on its own UDP socket registering with `server`; battery drains every second so
/// that an observation of `/3/0/9` has changes to report.
fn spawn_device(server: SocketAddr, endpoint: &str, seed: u64) -> Handle<Client<SocketAddr>> {
    let mut config = DeviceConfig::new(endpoint, Version::V1_1);
    config.server_uri = format!("coap://{server}");
    config.sensors = Some(SensorConfig {
        battery_every: 1,
        ..SensorConfig::new(seed)
    });
    let stack = StackConfig {
        endpoint: EndpointConfig {
            seed: RandomState::new().hash_one(endpoint),
            ..EndpointConfig::default()
        },
        ..StackConfig::default()
    };
    let client = Client::new(config, stack, server);
    let (socket, _) = udp::bind(&UdpConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        recv_buffer: 64 << 10,
        send_buffer: 64 << 10,
    })
    .expect("bind a device socket");
    let (handle, _task) = udp::spawn(socket, client, |_, _, _| {}).expect("spawn a device");
    handle.command(|client, now| client.start(now));
    handle
}

/// Runs the script with piped output; on the time limit it is killed and what it printed so
/// far is still returned. `None` for the exit status means it was killed.
async fn run_script(base: &str, devices: usize) -> (Option<i32>, String, String) {
    let mut child = tokio::process::Command::new("python3")
        .arg(script())
        .args(["--base", base, "--expect-devices", &devices.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start python3");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out = tokio::spawn(async move {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s).await;
        s
    });
    let err = tokio::spawn(async move {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s).await;
        s
    });
    let status = match tokio::time::timeout(SCRIPT_LIMIT, child.wait()).await {
        Ok(status) => status.expect("wait for python3").code(),
        Err(_) => {
            let _ = child.kill().await;
            None
        }
    };
    (
        status,
        out.await.expect("stdout reader"),
        err.await.expect("stderr reader"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_script_drives_three_devices() {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import requests"])
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "python3 cannot import requests ({}); run interop/install-peers",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("python3 is not available ({e}); run interop/install-peers"),
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config {
        allow_unsecured: true,
        ..Config::ephemeral(dir.path().join("data"))
    };
    let server = runtime::start(&config)
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    let http = server.http_addr().expect("the HTTP API is on");
    let mut events = server.devices().events();

    let endpoints = ["operator-a", "operator-b", "operator-c"];
    let devices: Vec<_> = endpoints
        .iter()
        .zip(1u64..)
        .map(|(ep, seed)| spawn_device(server.coap_addr(), ep, seed))
        .collect();
    // All three registered before the script starts (it would wait too, but a device that
    // cannot register is better reported here).
    let mut pending: Vec<&str> = endpoints.to_vec();
    let registered = tokio::time::timeout(REGISTER_WAIT, async {
        while !pending.is_empty() {
            match events.next().await {
                Some(DeviceEvent::Registered { endpoint, .. }) => {
                    pending.retain(|ep| *ep != endpoint.as_str());
                }
                Some(_) => {}
                None => break,
            }
        }
    })
    .await;
    assert!(
        registered.is_ok() && pending.is_empty(),
        "devices not registered: {pending:?}"
    );

    let (status, stdout, stderr) = run_script(&format!("http://{http}"), endpoints.len()).await;
    println!("{stdout}");
    assert_eq!(
        status,
        Some(0),
        "operator.py failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    for step in STEPS {
        assert!(
            stdout.contains(&format!("step {step}: ok")),
            "step {step} missing from the output\n{stdout}"
        );
    }
    assert!(stdout.contains("operator: all steps passed"), "{stdout}");

    drop(devices);
    server.shutdown().await.expect("shutdown");
}
