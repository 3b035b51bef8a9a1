//! Handshakes and data over the DTLS transport, against webrtc-dtls clients on loopback.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use steward_dtls::{Identity, Target};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psk_handshake_and_data_both_ways() {
    init_tracing();
    let (server, mut inbound) = psk_server(base_config());
    let socket = client_socket(server.local_addr()).await;
    let client = connect(socket, psk_client_config(PSK_ID, PSK_KEY))
        .await
        .expect("handshake");

    client.write(b"hello", None).await.expect("client write");
    let got = recv_inbound(&mut inbound).await;
    assert_eq!(got.datagram, b"hello");
    assert_eq!(
        *got.identity,
        Identity::Psk {
            identity: PSK_ID.to_vec()
        }
    );

    server
        .send(Target::Session(got.session), b"world")
        .await
        .expect("send by session");
    assert_eq!(client_read(&client).await, b"world");
    server.send(got.peer, b"again").await.expect("send by peer");
    assert_eq!(client_read(&client).await, b"again");

    let m = server.metrics();
    assert_eq!(m.handshakes_ok, 1);
    assert!(
        m.cookies_sent >= 1,
        "the server did the cookie exchange: {m:?}"
    );
    assert_eq!(m.sessions, 1);
    let m = server.shutdown().await;
    assert_eq!(m.tasks, 0, "every task stopped: {m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_psk_fails_and_frees_state() {
    init_tracing();
    let (server, _inbound) = psk_server(base_config());
    let socket = client_socket(server.local_addr()).await;
    let mut config = psk_client_config(PSK_ID, &[0x22; 16]);
    config.flight_interval = Duration::from_millis(200);
    let result = connect(socket, config).await;
    assert!(result.is_err(), "a wrong key must not authenticate");
    let m = wait_metrics(&server, "failed handshake cleaned up", |m| {
        m.handshakes_in_progress == 0 && m.peers == 0
    })
    .await;
    assert_eq!(m.sessions, 0);
    assert_eq!(m.handshakes_ok, 0);
    assert_eq!(server.shutdown().await.tasks, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_handshake_with_client_chain() {
    init_tracing();
    let pki = test_pki("urn:dev:cert-1");
    let (server, mut inbound) = pki_server(&pki);
    let socket = client_socket(server.local_addr()).await;
    let client = connect(
        socket,
        cert_client_config(&pki.client_chain, &pki.client_key),
    )
    .await
    .expect("handshake");

    client.write(b"ping", None).await.expect("write");
    let got = recv_inbound(&mut inbound).await;
    assert_eq!(got.datagram, b"ping");
    match &*got.identity {
        Identity::X509 { common_name, chain } => {
            assert_eq!(common_name.as_deref(), Some("urn:dev:cert-1"));
            assert_eq!(chain, &pki.client_chain);
        }
        other => panic!("expected an X.509 identity, got {other:?}"),
    }
    server.send(got.session, b"pong").await.expect("send");
    assert_eq!(client_read(&client).await, b"pong");
    assert_eq!(server.shutdown().await.tasks, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psk_and_certificate_clients_on_one_server() {
    init_tracing();
    let pki = test_pki("urn:dev:cert-2");
    let (server, mut inbound) = pki_server(&pki);
    let psk = connect(
        client_socket(server.local_addr()).await,
        psk_client_config(PSK_ID, PSK_KEY),
    )
    .await
    .expect("psk handshake");
    let cert = connect(
        client_socket(server.local_addr()).await,
        cert_client_config(&pki.client_chain, &pki.client_key),
    )
    .await
    .expect("cert handshake");
    psk.write(b"a", None).await.expect("write");
    cert.write(b"b", None).await.expect("write");
    let mut kinds = vec![];
    for _ in 0..2 {
        let got = recv_inbound(&mut inbound).await;
        kinds.push(matches!(*got.identity, Identity::Psk { .. }));
    }
    kinds.sort();
    assert_eq!(kinds, vec![false, true]);
    assert_eq!(server.shutdown().await.tasks, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_unknown_ca_is_rejected() {
    init_tracing();
    let pki = test_pki("urn:dev:good");
    let other = test_pki("urn:dev:rogue");
    let (server, _inbound) = pki_server(&pki);
    let socket = client_socket(server.local_addr()).await;
    let result = connect(
        socket,
        cert_client_config(&other.client_chain, &other.client_key),
    )
    .await;
    assert!(result.is_err(), "a chain from another CA must fail");
    let m = wait_metrics(&server, "rejected handshake counted", |m| {
        m.handshakes_failed + m.handshakes_timed_out >= 1 && m.handshakes_in_progress == 0
    })
    .await;
    assert_eq!(m.sessions, 0);
    assert_eq!(server.shutdown().await.tasks, 0);
}

/// A device that lost its DTLS state reconnects from the same address and port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_from_same_address_replaces_session() {
    init_tracing();
    let (server, mut inbound) = psk_server(base_config());
    let socket = client_socket(server.local_addr()).await;
    let first = connect(Arc::clone(&socket), psk_client_config(PSK_ID, PSK_KEY))
        .await
        .expect("first");
    first.write(b"one", None).await.expect("write");
    let one = recv_inbound(&mut inbound).await;
    // Forget the session without a close_notify, as a rebooted device would.
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let second = connect(socket, psk_client_config(PSK_ID, PSK_KEY))
        .await
        .expect("second handshake");
    second.write(b"two", None).await.expect("write");
    let two = recv_inbound(&mut inbound).await;
    assert_eq!(two.datagram, b"two");
    assert_eq!(two.peer, one.peer, "same address and port");
    assert_ne!(two.session, one.session, "a new session");
    server.send(two.peer, b"reply").await.expect("send");
    assert_eq!(client_read(&second).await, b"reply");
    assert!(
        server
            .send(Target::Session(one.session), b"x")
            .await
            .is_err(),
        "the old session is gone"
    );
    let m = server.metrics();
    assert_eq!(
        (m.sessions, m.sessions_replaced, m.handshakes_ok),
        (1, 1, 2),
        "{m:?}"
    );
    assert_eq!(server.shutdown().await.tasks, 0);
}

/// Every (epoch, record sequence number) the server sends on one association, in order,
/// seen by a proxy between a webrtc-dtls client and the server.
async fn server_record_numbers_through_proxy(
    server_addr: std::net::SocketAddr,
    config: webrtc_dtls::config::Config,
) -> Vec<(u16, u64)> {
    let proxy = Arc::new(
        tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("proxy"),
    );
    let upstream = client_socket(server_addr).await;
    let proxy_addr = proxy.local_addr().expect("addr");
    let client_addr = Arc::new(tokio::sync::Mutex::new(None));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));

    let (p, u, ca) = (
        Arc::clone(&proxy),
        Arc::clone(&upstream),
        Arc::clone(&client_addr),
    );
    let to_server = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = p.recv_from(&mut buf).await {
            *ca.lock().await = Some(from);
            let _ = u.send(&buf[..n]).await;
        }
    });
    let (p, u, ca, s) = (
        Arc::clone(&proxy),
        Arc::clone(&upstream),
        Arc::clone(&client_addr),
        Arc::clone(&seen),
    );
    let to_client = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = u.recv(&mut buf).await {
            let mut rest = &buf[..n];
            while rest.len() >= 13 {
                let epoch = u16::from_be_bytes([rest[3], rest[4]]);
                let mut seq = [0u8; 8];
                seq[2..].copy_from_slice(&rest[5..11]);
                s.lock()
                    .expect("lock")
                    .push((epoch, u64::from_be_bytes(seq)));
                let len = usize::from(u16::from_be_bytes([rest[11], rest[12]]));
                rest = rest.get(13 + len..).unwrap_or_default();
            }
            if let Some(to) = *ca.lock().await {
                let _ = p.send_to(&buf[..n], to).await;
            }
        }
    });

    let client = connect(client_socket(proxy_addr).await, config)
        .await
        .expect("handshake through the proxy");
    client.write(b"ping", None).await.expect("write");
    let _ = client.close().await;
    to_server.abort();
    to_client.abort();
    seen.lock().expect("lock").clone()
}

/// The HelloVerifyRequest copies the ClientHello's record sequence number (RFC 6347
/// §4.2.1), so the handshake that follows must not start its epoch-0 numbering at 0
/// again: GnuTLS drops a record whose number it has seen as a replay, which lost the
/// ServerHello and stalled libcoap's GnuTLS client in certificate handshakes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_never_repeats_a_record_sequence_number() {
    init_tracing();
    let pki = test_pki("urn:dev:cert-seq");
    let (server, _inbound) = pki_server(&pki);
    for config in [
        psk_client_config(PSK_ID, PSK_KEY),
        cert_client_config(&pki.client_chain, &pki.client_key),
    ] {
        let seen = server_record_numbers_through_proxy(server.local_addr(), config).await;
        assert!(
            seen.len() >= 3,
            "HelloVerifyRequest and a server flight: {seen:?}"
        );
        let mut unique = seen.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            seen.len(),
            "an (epoch, sequence number) was sent twice: {seen:?}"
        );
    }
    assert_eq!(server.shutdown().await.tasks, 0);
}
