//! Fleet mode against an in-process `steward` server over loopback UDP: 200 devices register,
//! update and de-register, and the summary accounts for every one of them. No timing
//! thresholds: the waits are hang guards only.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use steward::config::Config;
use steward_client::fleet::{Fleet, FleetConfig, Op, raise_file_limit};

const DEVICES: usize = 200;
/// Only a guard against hanging forever; a healthy run takes well under a second.
const GUARD: Duration = Duration::from_secs(15);

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + GUARD;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_registers_updates_and_deregisters_against_steward() {
    raise_file_limit(DEVICES).unwrap();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "steward-client-fleet-{}-{nanos}",
        std::process::id()
    ));
    let server = steward::runtime::start(&Config {
        coap_port: 0,
        coaps_port: 0,
        bs_coap_port: 0,
        bs_coaps_port: 0,
        http_port: 0,
        data_dir: dir.clone(),
        allow_unsecured: true,
        ..Config::default()
    })
    .await
    .unwrap();

    let mut config = FleetConfig::new(server.coap_addr(), DEVICES);
    config.prefix = "fleet-test".into();
    config.max_in_flight = 50;
    config.shards = 2;
    let fleet = Fleet::start(config).unwrap();
    let stats = fleet.stats().clone();
    let n = DEVICES as u64;

    wait_until("registrations", || {
        stats.registered.load(Ordering::Relaxed) == n
    })
    .await;
    assert_eq!(server.registration_count(), DEVICES);
    assert!(server.registration("fleet-test-0").is_some());
    assert!(server.registration("fleet-test-199").is_some());

    fleet.update_all();
    wait_until("updates", || stats.ok(Op::Update) == n).await;

    fleet.deregister_all();
    wait_until("de-registrations", || {
        stats.registered.load(Ordering::Relaxed) == 0
            && stats.in_flight.load(Ordering::Relaxed) == 0
    })
    .await;
    wait_until("the server to forget them", || {
        server.registration_count() == 0
    })
    .await;

    let summary = fleet.stop().await.unwrap();
    println!("{summary}");
    assert_eq!(summary.failures.len(), 0, "{summary}");
    for op in Op::ALL {
        assert_eq!(summary.ok.get(&op), Some(&n), "{op}: {summary}");
        let latency = summary.latency.get(&op).unwrap();
        assert_eq!(latency.count, DEVICES, "{op}: {summary}");
        assert!(latency.p50 <= latency.p99 && latency.p99 <= latency.max);
    }
    server.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
