//! Junk aimed at an established session: spoofed records from the peer's own address must be
//! dropped without ending the session or reaching the layer above.

mod common;

use common::*;
use steward_dtls::Target;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_on_an_established_session_is_dropped_and_the_session_survives() {
    init_tracing();
    let (server, mut inbound) = psk_server(base_config());
    let socket = client_socket(server.local_addr()).await;
    let client = connect(socket.clone(), psk_client_config(PSK_ID, PSK_KEY))
        .await
        .expect("handshake");
    client.write(b"before", None).await.expect("client write");
    let first = recv_inbound(&mut inbound).await;
    assert_eq!(first.datagram, b"before");
    let dropped_before = server.metrics().datagrams_dropped;

    // From the same address and port as the session: garbage, a truncated record header, an
    // application-data record of epoch 1 whose ciphertext is random, an epoch-1 record with an
    // absurd length, and a handshake record that is not a ClientHello.
    let junk: [&[u8]; 5] = [
        b"not dtls at all",
        &[0x17, 0xfe, 0xfd, 0x00],
        &[
            0x17, 0xfe, 0xfd, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x63, 0x00, 0x18, 0xde,
            0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe,
            0xef, 0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef,
        ],
        &[
            0x17, 0xfe, 0xfd, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x64, 0xff, 0xff, 0x01,
        ],
        &[
            0x16, 0xfe, 0xfd, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x65, 0x00, 0x01, 0x0b,
        ],
    ];
    for datagram in junk {
        socket.send(datagram).await.expect("send junk");
    }
    wait_metrics(&server, "junk counted", |m| {
        m.datagrams_dropped > dropped_before
    })
    .await;

    // The real session still works both ways, and nothing from the junk reached the layer above.
    client.write(b"after", None).await.expect("client write");
    let next = recv_inbound(&mut inbound).await;
    assert_eq!(next.datagram, b"after", "junk must not surface as data");
    assert_eq!(next.session, first.session, "same session");
    server
        .send(Target::Session(next.session), b"still here")
        .await
        .expect("send");
    assert_eq!(client_read(&client).await, b"still here");
    let m = server.metrics();
    assert_eq!(m.sessions, 1);
    assert_eq!(m.handshakes_ok, 1, "junk started no handshake");
    drop(client);
    server.shutdown().await;
}
