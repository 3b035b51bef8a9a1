//! The Bootstrap interface over real sockets against the real server: client-initiated
//! bootstrap (`POST /bs`) then registration with the configured LwM2M server, then
//! server-initiated bootstrap (Execute `/1/x/9`) and the device bootstrapping and registering
//! again. Plain CoAP with `allow_unsecured`, so only the Bootstrap interface is under test here
//! (DTLS and EST: `enrol_e2e.rs`).

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use steward::bootstrap::{BootstrapConfig, SecurityMode, ServerConfig, ServerSecurity};
use steward::config::Config;
use steward::runtime::{self, RunningServer};
use steward_objects::Path;

const DEVICE: &str = "bs-e2e-1";
const WAIT: Duration = Duration::from_secs(30);

struct Device(Child);

impl Drop for Device {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the device holds a registration whose ID is not `previous`.
async fn registered_anew(
    server: &RunningServer,
    device: &mut Device,
    previous: Option<&str>,
) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(r) = server.registration(DEVICE)
            && Some(r.id.as_str()) != previous
        {
            return r.id;
        }
        if let Ok(Some(status)) = device.0.try_wait() {
            panic!("steward-client exited early: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "no new registration within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_and_server_initiated_bootstrap() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        allow_unsecured: true,
        ..Config::ephemeral(dir.path().join("data"))
    };
    let server = runtime::start(&config).await.unwrap();
    let mut account = ServerSecurity::new(
        &format!("coap://{}", server.coap_addr()),
        SecurityMode::NoSec,
    );
    account.server_id = Some(7);
    let mut bootstrap = BootstrapConfig::default();
    bootstrap.security.insert(1, account);
    bootstrap.servers.insert(0, ServerConfig::new(7));
    server
        .store()
        .put_bootstrap_config(DEVICE, &bootstrap)
        .unwrap();

    let mut device = Device(
        Command::new(env!("CARGO_BIN_EXE_steward-client"))
            .arg("--bootstrap")
            .arg(format!("coap://{}", server.bs_coap_addr().unwrap()))
            .args(["--endpoint", DEVICE, "--lwm2m", "1.1"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Client-initiated: the device has only a Bootstrap-Server account, so it bootstraps and
    // registers with the server the configuration names.
    let first = registered_anew(&server, &mut device, None).await;
    let registration = server.registration(DEVICE).unwrap();
    assert!(
        registration.object_links.contains("</1/0>"),
        "{}",
        registration.object_links
    );

    // Server-initiated: Bootstrap-Request Trigger on the device's /1 instance written by the
    // bootstrap (instance 0 of the configuration), then a new bootstrap and a new Register.
    let path = server
        .devices()
        .trigger_bootstrap(DEVICE, None, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(path, Path::Resource(1, 0, 9));
    registered_anew(&server, &mut device, Some(&first)).await;

    drop(device);
    server.shutdown().await.unwrap();
}
