//! Where the memory of idle registrations goes: the in-memory registration table and the
//! sled store, measured apart (VmRSS deltas) for N registrations.
//!
//! `cargo run --release -p steward --example registration_memory [N]` (default 100000).

use steward::lwm2m::{Lwm2mServer, ServerConfig};
use steward::registry::{Lwm2mVersion, PeerIdentity, Registration};
use steward::store::{Durability, SledStore, Store};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn reg(i: usize) -> Registration {
    Registration {
        id: format!("{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        endpoint: format!("sim-{i:06}"),
        version: Lwm2mVersion::V1_1,
        lifetime: 300,
        binding: "U".into(),
        queue_mode: false,
        sms: None,
        object_links: "</>;rt=\"oma.lwm2m\";ct=\"60 110 112 11542 11543\",</1>;ver=1.1,</1/0>,</3>;ver=1.1,</3/0>,</4/0>,</5/0>".into(),
        address: format!("127.0.0.1:{}", 20000 + i % 40000),
        identity: PeerIdentity::Unsecured,
        registered_at_ms: 1_700_000_000_000,
        last_update_ms: 1_700_000_000_000,
    }
}

fn per(before: u64, after: u64, n: usize) -> String {
    format!(
        "{} KiB -> {} KiB: {} bytes per registration",
        before,
        after,
        after.saturating_sub(before) * 1024 / n.max(1) as u64
    )
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let regs: Vec<Registration> = (0..n).map(reg).collect();

    let before = rss_kib();
    let mut server = Lwm2mServer::new(ServerConfig::default());
    let issues = server.restore(regs.clone());
    println!(
        "in-memory table ({} restored, {} issues): {}",
        server.registrations().len(),
        issues.len(),
        per(before, rss_kib(), n)
    );

    let dir = std::env::temp_dir().join(format!("steward-regmem-{}", std::process::id()));
    let before = rss_kib();
    let store = match SledStore::open_with(&dir, Durability::Relaxed) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot open {}: {e}", dir.display());
            std::process::exit(1);
        }
    };
    for chunk in regs.chunks(1000) {
        if let Err(e) = store.put_registrations(chunk) {
            eprintln!("store: {e}");
            std::process::exit(1);
        }
    }
    let _ = store.flush();
    println!("sled store: {}", per(before, rss_kib(), n));
    std::thread::sleep(std::time::Duration::from_secs(3));
    println!("sled store after 3 s: {}", per(before, rss_kib(), n));
    drop(store);
    std::thread::sleep(std::time::Duration::from_secs(1));
    println!("after closing the store: {}", per(before, rss_kib(), n));
    let store = match SledStore::open_with(&dir, Durability::Relaxed) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot reopen {}: {e}", dir.display());
            std::process::exit(1);
        }
    };
    let back = store.registrations().map(|r| r.len()).unwrap_or(0);
    println!("reopened, {back} read back: {}", per(before, rss_kib(), n));
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
