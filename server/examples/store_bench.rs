//! Registration write throughput of [`SledStore`] under its durability modes.
//!
//! `cargo run --release -p steward --example store_bench [dir]` prints registrations/s for:
//! one writer with an fsync per write, many concurrent writers sharing fsyncs (group commit),
//! `put_registrations` batches, and `Durability::Relaxed` (no fsync wait) for comparison.

use std::time::{Duration, Instant};

use steward::registry::{Lwm2mVersion, PeerIdentity, Registration};
use steward::store::{Durability, SledStore, Store};

fn main() {
    let base = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("steward-store-bench-{}", std::process::id()));
    let mut case = 0;
    let mut fresh = |durability| {
        case += 1;
        let dir = base.join(case.to_string());
        match SledStore::open_with(&dir, durability) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cannot open {}: {e}", dir.display());
                std::process::exit(1);
            }
        }
    };

    let store = fresh(Durability::Sync);
    let n = 1_000;
    let t = Instant::now();
    for i in 0..n {
        put(&store, &reg("seq", i));
    }
    report(
        "1 writer, fsync per write",
        n,
        t.elapsed(),
        store.flush_count(),
    );

    for threads in [4u64, 16, 64] {
        let store = fresh(Durability::Sync);
        let per = 400;
        let t = Instant::now();
        std::thread::scope(|s| {
            for th in 0..threads {
                let store = &store;
                s.spawn(move || {
                    for i in 0..per {
                        put(store, &reg(&format!("c{th}"), i));
                    }
                });
            }
        });
        report(
            &format!("{threads} writers, group commit"),
            threads * per,
            t.elapsed(),
            store.flush_count(),
        );
    }

    for batch in [100u64, 1_000] {
        let store = fresh(Durability::Sync);
        let n = 20_000;
        let t = Instant::now();
        for b in 0..n / batch {
            let regs: Vec<_> = (0..batch).map(|i| reg("b", b * batch + i)).collect();
            if let Err(e) = store.put_registrations(&regs) {
                eprintln!("batch failed: {e}");
                std::process::exit(1);
            }
        }
        report(
            &format!("put_registrations x{batch}"),
            n,
            t.elapsed(),
            store.flush_count(),
        );
    }

    let store = fresh(Durability::Relaxed);
    let n = 20_000;
    let t = Instant::now();
    for i in 0..n {
        put(&store, &reg("relaxed", i));
    }
    report(
        "1 writer, Relaxed (no fsync wait)",
        n,
        t.elapsed(),
        store.flush_count(),
    );
    let f = Instant::now();
    if let Err(e) = store.flush() {
        eprintln!("flush failed: {e}");
    }
    println!(
        "  then one flush of all of it: {:.1} ms",
        f.elapsed().as_secs_f64() * 1000.0
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&base);
}

fn put(store: &SledStore, r: &Registration) {
    if let Err(e) = store.put_registration(r) {
        eprintln!("put failed: {e}");
        std::process::exit(1);
    }
}

fn report(what: &str, n: u64, elapsed: Duration, flushes: u64) {
    println!(
        "{what:<36} {n:>6} regs in {:>8.1} ms = {:>9.0} regs/s, {flushes} fsyncs",
        elapsed.as_secs_f64() * 1000.0,
        n as f64 / elapsed.as_secs_f64()
    );
}

fn reg(prefix: &str, i: u64) -> Registration {
    Registration {
        id: format!("{prefix}-id-{i}"),
        endpoint: format!("urn:dev:ops:{prefix}-{i}"),
        version: Lwm2mVersion::V1_1,
        lifetime: 300,
        binding: "U".into(),
        queue_mode: false,
        sms: None,
        object_links: "</>;rt=\"oma.lwm2m\",</1/0>,</3/0>,</4/0>,</5/0>".into(),
        address: "127.0.0.1:40000".into(),
        identity: PeerIdentity::Psk(format!("{prefix}-{i}").into_bytes()),
        registered_at_ms: 1_700_000_000_000,
        last_update_ms: 1_700_000_000_000,
    }
}
