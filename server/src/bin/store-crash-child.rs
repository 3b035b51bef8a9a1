//! Test-only helper for the crash test in `tests/store.rs`: writes registrations into a
//! [`SledStore`] in a loop from several threads until it is killed, and reports on stdout
//! `try <endpoint> <id>` before each write and `ack <endpoint> <id>` after the store returned
//! (the moment the server would send 2.01 Created). The test SIGKILLs it and checks that every
//! acknowledged registration survived.
//!
//! Usage: `store-crash-child <dir> <run> <threads> <single|batch>`. Each thread owns the
//! endpoints `r<run>-t<thread>-<n % 40>`, so endpoints are re-registered with new IDs and each
//! endpoint's writes are ordered.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use steward::registry::{Lwm2mVersion, PeerIdentity, Registration};
use steward::store::{SledStore, Store};

const ENDPOINTS_PER_THREAD: u64 = 40;
const BATCH: u64 = 8;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, run, threads, mode] = args.as_slice() else {
        eprintln!("usage: store-crash-child <dir> <run> <threads> <single|batch>");
        return ExitCode::from(2);
    };
    let threads: u64 = threads.parse().unwrap_or(1);
    let batch = mode == "batch";
    let store = match SledStore::open(dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("open failed: {e}");
            return ExitCode::from(3);
        }
    };
    // One lock around stdout so that lines from different threads never interleave.
    let out = Mutex::new(std::io::stdout());
    let say = |lines: &[String]| {
        let mut out = out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for l in lines {
            // If the parent went away there is nobody to report to; stop.
            if writeln!(out, "{l}").and_then(|()| out.flush()).is_err() {
                std::process::exit(0);
            }
        }
    };
    let failed = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let store = &store;
                let say = &say;
                s.spawn(move || -> Result<(), String> {
                    let mut n: u64 = 0;
                    loop {
                        let count = if batch { BATCH } else { 1 };
                        let regs: Vec<Registration> =
                            (n..n + count).map(|i| registration(run, t, i)).collect();
                        n += count;
                        say(&regs
                            .iter()
                            .map(|r| format!("try {} {}", r.endpoint, r.id))
                            .collect::<Vec<_>>());
                        let acked: Vec<String> = if batch {
                            let results =
                                store.put_registrations(&regs).map_err(|e| e.to_string())?;
                            regs.iter()
                                .zip(results)
                                .filter(|(_, r)| r.is_ok())
                                .map(|(r, _)| format!("ack {} {}", r.endpoint, r.id))
                                .collect()
                        } else {
                            let r = &regs[0];
                            store.put_registration(r).map_err(|e| e.to_string())?;
                            vec![format!("ack {} {}", r.endpoint, r.id)]
                        };
                        say(&acked);
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| match h.join() {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some("writer thread panicked".to_owned()),
            })
            .collect::<Vec<_>>()
    });
    for e in &failed {
        eprintln!("write failed: {e}");
    }
    ExitCode::from(if failed.is_empty() { 0 } else { 1 })
}

fn registration(run: &str, thread: u64, n: u64) -> Registration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let endpoint = format!("r{run}-t{thread}-{}", n % ENDPOINTS_PER_THREAD);
    Registration {
        id: format!("r{run}-t{thread}-n{n}"),
        endpoint: endpoint.clone(),
        version: Lwm2mVersion::V1_1,
        lifetime: 300,
        binding: "U".into(),
        queue_mode: false,
        sms: None,
        object_links: "</>;rt=\"oma.lwm2m\",</1/0>,</3/0>,</4/0>,</5/0>".into(),
        address: "127.0.0.1:40000".into(),
        identity: PeerIdentity::Psk(endpoint.into_bytes()),
        registered_at_ms: now,
        last_update_ms: now,
    }
}
