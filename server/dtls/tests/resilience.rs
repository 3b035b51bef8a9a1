//! Resource limits and hostile input: junk, stalled handshakes, floods, caps, idling.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::net::UdpSocket;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_and_stalled_handshake_do_not_block_a_good_handshake() {
    init_tracing();
    let (server, mut inbound) = psk_server(base_config());
    let addr = server.local_addr();
    let junk = client_socket(addr).await;
    junk.send(b"\x16\xfe\xfd this is not DTLS")
        .await
        .expect("send");
    junk.send(&[0u8; 3]).await.expect("send");
    let _stalled = stalled_handshake(addr, [3; 32]).await;
    wait_metrics(&server, "stalled handshake in progress", |m| {
        m.handshakes_in_progress == 1
    })
    .await;

    let client = connect(
        client_socket(addr).await,
        psk_client_config(PSK_ID, PSK_KEY),
    )
    .await
    .expect("good handshake while another one stalls");
    client.write(b"ok", None).await.expect("write");
    assert_eq!(recv_inbound(&mut inbound).await.datagram, b"ok");
    let m = server.metrics();
    assert!(m.datagrams_dropped >= 2, "junk counted: {m:?}");
    assert_eq!(
        m.handshakes_in_progress, 1,
        "the stalled one is still pending: {m:?}"
    );
    assert_eq!(server.shutdown().await.tasks, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_timeout_frees_state() {
    init_tracing();
    let mut config = base_config();
    config.handshake_timeout = Duration::from_millis(500);
    let (server, _inbound) = psk_server(config);
    let _stalled = stalled_handshake(server.local_addr(), [4; 32]).await;
    wait_metrics(&server, "handshake started", |m| {
        m.handshakes_ok + m.handshakes_in_progress + m.handshakes_timed_out >= 1
    })
    .await;
    let m = wait_metrics(&server, "handshake timed out", |m| {
        m.handshakes_timed_out == 1
    })
    .await;
    assert_eq!(
        (m.handshakes_in_progress, m.peers, m.tasks),
        (0, 0, 0),
        "{m:?}"
    );
    assert_eq!(server.shutdown().await.tasks, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_session_is_evicted() {
    init_tracing();
    let mut config = base_config();
    config.idle_timeout = Duration::from_millis(400);
    let (server, mut inbound) = psk_server(config);
    let client = connect(
        client_socket(server.local_addr()).await,
        psk_client_config(PSK_ID, PSK_KEY),
    )
    .await
    .expect("handshake");
    client.write(b"hi", None).await.expect("write");
    let got = recv_inbound(&mut inbound).await;
    let m = wait_metrics(&server, "eviction", |m| m.evictions == 1).await;
    assert_eq!((m.sessions, m.peers), (0, 0), "{m:?}");
    assert!(
        server.send(got.peer, b"late").await.is_err(),
        "evicted session is gone"
    );
    assert_eq!(server.shutdown().await.tasks, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookieless_client_hello_flood_creates_no_state() {
    init_tracing();
    let (server, _inbound) = psk_server(base_config());
    let addr = server.local_addr();
    let mut sockets = Vec::new();
    for _ in 0..100 {
        sockets.push(client_socket(addr).await);
    }
    let mut sent = 0u32;
    for round in 0..10u8 {
        for (i, socket) in sockets.iter().enumerate() {
            let mut random = [round; 32];
            random[0] = i as u8;
            socket
                .send(&crafted_client_hello([0xfe, 0xfd], 0, random, &[]))
                .await
                .expect("send");
            sent += 1;
        }
        // Pace the flood so the test measures state, not socket-buffer overflow.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sent, 1000);
    let m = wait_metrics(&server, "all cookies sent", |m| m.cookies_sent == 1000).await;
    assert_eq!(
        (m.peers, m.sessions, m.handshakes_in_progress, m.tasks),
        (0, 0, 0, 0),
        "{m:?}"
    );
    assert_eq!(server.shutdown().await.tasks, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_handshakes_are_capped() {
    init_tracing();
    let mut config = base_config();
    config.max_handshakes = 2;
    let (server, _inbound) = psk_server(config);
    let addr = server.local_addr();
    let _a = stalled_handshake(addr, [5; 32]).await;
    let _b = stalled_handshake(addr, [6; 32]).await;
    wait_metrics(&server, "two handshakes", |m| m.handshakes_in_progress == 2).await;
    let _c = stalled_handshake(addr, [7; 32]).await;
    let m = wait_metrics(&server, "third dropped", |m| m.hellos_dropped_over_cap == 1).await;
    assert_eq!((m.handshakes_in_progress, m.peers), (2, 2), "{m:?}");
    assert_eq!(server.shutdown().await.tasks, 0);
}

/// mbedTLS (Anjay, Zephyr) sends ClientHello records with version `fe 00`. A proxy
/// rewrites a webrtc-dtls client's ClientHellos that way; the handshake must complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_hello_with_record_version_fe00_gets_through() {
    init_tracing();
    let (server, mut inbound) = psk_server(base_config());
    let server_addr = server.local_addr();
    let proxy = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("proxy"));
    let upstream = client_socket(server_addr).await;
    let proxy_addr = proxy.local_addr().expect("addr");
    let rewritten = Arc::new(std::sync::atomic::AtomicUsize::new(0));

    let client_addr = Arc::new(tokio::sync::Mutex::new(None));
    let (p, u, ca, rw) = (
        Arc::clone(&proxy),
        Arc::clone(&upstream),
        Arc::clone(&client_addr),
        Arc::clone(&rewritten),
    );
    let to_server = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = p.recv_from(&mut buf).await {
            *ca.lock().await = Some(from);
            let d = &mut buf[..n];
            // First record an epoch-0 handshake ClientHello: rewrite its record version.
            if n > 13 && d[0] == 22 && d[3] == 0 && d[4] == 0 && d[13] == 1 {
                d[1] = 0xfe;
                d[2] = 0x00;
                rw.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let _ = u.send(d).await;
        }
    });
    let (p, u, ca) = (
        Arc::clone(&proxy),
        Arc::clone(&upstream),
        Arc::clone(&client_addr),
    );
    let to_client = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = u.recv(&mut buf).await {
            if let Some(to) = *ca.lock().await {
                let _ = p.send_to(&buf[..n], to).await;
            }
        }
    });

    let client = connect(
        client_socket(proxy_addr).await,
        psk_client_config(PSK_ID, PSK_KEY),
    )
    .await
    .expect("handshake through the fe00 proxy");
    client.write(b"mbedtls-ish", None).await.expect("write");
    assert_eq!(recv_inbound(&mut inbound).await.datagram, b"mbedtls-ish");
    assert!(
        rewritten.load(std::sync::atomic::Ordering::Relaxed) >= 2,
        "both ClientHellos went out as fe00"
    );
    to_server.abort();
    to_client.abort();
    assert_eq!(server.shutdown().await.tasks, 0);
}
