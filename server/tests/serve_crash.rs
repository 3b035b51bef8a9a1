//! The crash test of issue 4 item 2: `steward serve` (the real binary, as a child process) is
//! killed with SIGKILL during a registration storm from simulated devices, started again on the
//! same data directory, and stopped with SIGTERM; then the database must open, be consistent,
//! and hold every registration a device saw acknowledged with 2.01.
//!
//! A failure here because of sled (spacejam/sled#1533, #1509) is a finding to report, not a
//! reason to weaken the test.

mod fleet;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fleet::{Fleet, TempDir, id_of, registered};
use steward::store::{SledStore, Store};

const RUNS: usize = 4;
const DEVICES: usize = 500;
const START_WAIT: Duration = Duration::from_secs(30);

/// The server child; killed on drop so a failing test leaves no process behind.
struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `steward serve` on free ports and waits for its "listening" line.
fn spawn_server(data: &Path, log: &Path) -> (Server, SocketAddr) {
    let log = File::options()
        .create(true)
        .append(true)
        .open(log)
        .expect("open the server log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_steward"))
        .args([
            "serve",
            "--allow-unsecured",
            "--coap-port",
            "0",
            "--coaps-port",
            "0",
            "--bs-coap-port",
            "0",
            "--bs-coaps-port",
            "0",
            "--http-port",
            "0",
        ])
        .arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn steward serve");
    let stdout = child.stdout.take().expect("stdout");
    let server = Server { child };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        // Keep reading so the child never blocks on a full pipe.
        let mut sink = String::new();
        while reader.read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
    });
    let line = rx
        .recv_timeout(START_WAIT)
        .expect("steward serve did not start");
    let coap = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("coap="))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no coap address in {line:?}"));
    (server, coap)
}

/// SIGTERM, then waits for a clean exit.
fn terminate(mut server: Server) {
    let pid = server.child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM failed");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match server.child.try_wait().expect("wait") {
            Some(status) => {
                assert!(
                    status.success(),
                    "steward serve exited with {status} on SIGTERM"
                );
                return;
            }
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            None => panic!("steward serve did not stop within 20 s of SIGTERM"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_registrations_survive_sigkill_of_steward_serve() {
    let dir = TempDir::new("serve-crash");
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let mut summary = Vec::new();
    for run in 0..RUNS {
        let (server, coap) = spawn_server(&data, &log);
        let mut fleet = Fleet::start(coap, &format!("r{run}"), DEVICES, 300);
        let storm = Instant::now();
        // Kill once a share of the devices (a different one each run) saw their 2.01.
        let kill_after = DEVICES * (run + 1) / (RUNS + 2);
        let mut acked: BTreeMap<usize, String> = BTreeMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while acked.len() < kill_after {
            match tokio::time::timeout_at(deadline, fleet.reports.recv()).await {
                Ok(Some(r)) => {
                    if let Some(location) = registered(&r.event) {
                        acked.insert(r.device, location.to_owned());
                    }
                }
                _ => panic!("run {run}: only {} of {kill_after} acks", acked.len()),
            }
        }
        // SIGKILL: no destructors, no flush.
        let mut server = server;
        server.child.kill().expect("SIGKILL");
        let _ = server.child.wait();
        let killed_at = storm.elapsed();
        drop(server);
        // The devices stop now (no re-registration against a restarted server); 2.01s that
        // were already on their way count as acknowledged too.
        fleet.stop();
        tokio::time::sleep(Duration::from_millis(100)).await;
        for r in fleet.drain() {
            if let Some(location) = registered(&r.event) {
                acked.insert(r.device, location.to_owned());
            }
        }

        // Restart on the same data directory: the database opens and restores; stop cleanly.
        let (server, _) = spawn_server(&data, &log);
        terminate(server);

        let store = SledStore::open(&data).unwrap_or_else(|e| {
            panic!(
                "run {run}: database does not open after kill -9 and restart: {e}\nserver log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        let report = store
            .verify()
            .unwrap_or_else(|e| panic!("run {run}: database inconsistent after kill -9: {e}"));
        let mut lost = Vec::new();
        for (device, location) in &acked {
            let endpoint = &fleet.endpoints[*device];
            match store.registration(endpoint).expect("store read") {
                Some(r) if r.id == id_of(location) => {}
                other => lost.push(format!(
                    "{endpoint}: acknowledged {location}, stored {:?}",
                    other.map(|r| r.id)
                )),
            }
        }
        assert!(
            lost.is_empty(),
            "run {run}: {} of {} acknowledged registrations lost after kill -9:\n{}\nserver log:\n{}",
            lost.len(),
            acked.len(),
            lost.join("\n"),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        summary.push(format!(
            "run {run}: killed after {killed_at:?} with {} acks ({} wanted), {} stored in total",
            acked.len(),
            kill_after,
            report.registrations
        ));
        drop(store);
    }
    println!("{}", summary.join("\n"));
}
