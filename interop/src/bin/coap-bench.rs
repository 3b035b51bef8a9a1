//! Plain CoAP GET throughput on loopback: Steward's endpoint against libcoap's `coap-server`,
//! with the same load generator in the same run, and the ratio.
//!
//! `cargo run --release -p steward-interop --bin coap-bench -- [SECONDS] [CLIENTS]`
//!
//! Each simulated client owns a UDP socket and keeps one confirmable GET outstanding
//! (stop-and-wait, as NSTART = 1 asks), so CLIENTS is the concurrency. Progress is printed
//! every second. Wall-clock figures: compare the two servers within one run, not across runs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use steward_interop::start_plain_server;
use tokio::net::UdpSocket;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let clients: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "plain CoAP GET on loopback: {clients} clients, {seconds} s per server, {cores} core(s) shared by server and load"
    );

    let steward = start_plain_server().await?;
    let steward_rate = load("steward", steward.local, "/", seconds, clients).await?;
    steward.shutdown();

    let port = free_port()?;
    let mut libcoap = tokio::process::Command::new("coap-server-notls")
        .args(["-A", "127.0.0.1", "-p", &port.to_string()])
        .kill_on_drop(true)
        .spawn();
    let libcoap_rate = match &mut libcoap {
        Ok(_) => {
            let target = SocketAddr::from(([127, 0, 0, 1], port));
            wait_until_up(target).await;
            Some(load("libcoap", target, "/", seconds, clients).await?)
        }
        Err(e) => {
            println!("libcoap coap-server-notls not available ({e}); run interop/install-peers");
            None
        }
    };
    if let Ok(child) = &mut libcoap {
        let _ = child.kill().await;
    }

    println!();
    println!("steward : {steward_rate:>10.0} requests/s");
    if let Some(l) = libcoap_rate {
        println!("libcoap : {l:>10.0} requests/s");
        if l > 0.0 {
            println!("ratio   : {:>10.2}x", steward_rate / l);
        }
    }
    Ok(())
}

fn free_port() -> std::io::Result<u16> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0")?;
    Ok(s.local_addr()?.port())
}

async fn wait_until_up(target: SocketAddr) {
    let Ok(sock) = UdpSocket::bind("127.0.0.1:0").await else {
        return;
    };
    for attempt in 0..50u16 {
        let req = get_request(attempt, "/");
        let _ = sock.send_to(&req, target).await;
        let mut buf = [0u8; 1500];
        if tokio::time::timeout(Duration::from_millis(100), sock.recv_from(&mut buf))
            .await
            .is_ok()
        {
            return;
        }
    }
}

/// A CON GET with a 2-byte token equal to the message ID and Uri-Path segments of `path`.
fn get_request(mid: u16, path: &str) -> Vec<u8> {
    let [hi, lo] = mid.to_be_bytes();
    let mut d = vec![0x42, 0x01, hi, lo, hi, lo];
    let mut last = 0u16;
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        let delta = 11 - last;
        last = 11;
        let len = segment.len().min(12) as u8;
        d.push(((delta as u8) << 4) | len);
        d.extend_from_slice(&segment.as_bytes()[..usize::from(len)]);
    }
    d
}

async fn load(
    name: &str,
    target: SocketAddr,
    path: &str,
    seconds: u64,
    clients: usize,
) -> std::io::Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let sock = UdpSocket::bind("127.0.0.1:0").await?;
        sock.connect(target).await?;
        let done = done.clone();
        let stop = stop.clone();
        let path = path.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut mid = (c as u16).wrapping_mul(7919);
            let mut buf = [0u8; 1500];
            while !stop.load(Ordering::Relaxed) {
                mid = mid.wrapping_add(1);
                let req = get_request(mid, &path);
                if sock.send(&req).await.is_err() {
                    continue;
                }
                // Wait for the ACK with our message ID; a timeout just moves on to a new
                // request (a lost datagram on loopback means the server's queue overflowed).
                let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
                loop {
                    match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                        Ok(Ok(n)) if n >= 4 && buf[2..4] == mid.to_be_bytes() => {
                            done.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Ok(Ok(_)) => continue,
                        _ => break,
                    }
                }
            }
        }));
    }
    let start = Instant::now();
    let mut last = 0;
    for s in 1..=seconds {
        tokio::time::sleep_until((start + Duration::from_secs(s)).into()).await;
        let now = done.load(Ordering::Relaxed);
        println!("  {name:<8} t={s:>2}s {:>9} req/s", now - last);
        last = now;
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    let total = done.load(Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    Ok(total as f64 / elapsed)
}
