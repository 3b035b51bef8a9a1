//! Stateless DTLS cookies (RFC 6347 §4.2.1).
//!
//! `Cookie = HMAC-SHA256(secret, client address ‖ client parameters)`. The parameters are
//! the ClientHello fields the client must repeat unchanged in its second ClientHello
//! (version, random, session id, cipher suites, compression methods). Nothing is stored
//! per client: a flood of spoofed ClientHellos costs one HMAC and one small reply each.
//! The secret rotates; cookies made with the previous secret stay valid for one more
//! period so that a rotation does not fail handshakes in flight.

use std::net::SocketAddr;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::record::ClientHello;

type HmacSha256 = Hmac<Sha256>;

pub(crate) const COOKIE_LEN: usize = 32;

pub(crate) struct CookieJar {
    current: [u8; 32],
    previous: [u8; 32],
}

impl CookieJar {
    pub fn new() -> Self {
        Self {
            current: rand::random(),
            previous: rand::random(),
        }
    }

    pub fn rotate(&mut self) {
        self.previous = self.current;
        self.current = rand::random();
    }

    pub fn make(&self, peer: SocketAddr, hello: &ClientHello<'_>) -> [u8; COOKIE_LEN] {
        mac(&self.current, peer, hello)
            .finalize()
            .into_bytes()
            .into()
    }

    /// Constant-time check against both the current and the previous secret.
    pub fn verify(&self, peer: SocketAddr, hello: &ClientHello<'_>) -> bool {
        if hello.cookie.len() != COOKIE_LEN {
            return false;
        }
        [&self.current, &self.previous]
            .into_iter()
            .any(|secret| mac(secret, peer, hello).verify_slice(hello.cookie).is_ok())
    }
}

fn mac(secret: &[u8; 32], peer: SocketAddr, hello: &ClientHello<'_>) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail; fall back to a fixed
    // key rather than panic if that ever changed (the cookie would just not verify).
    let mut mac = HmacSha256::new_from_slice(secret)
        .unwrap_or_else(|_| <HmacSha256 as Mac>::new(&Default::default()));
    match peer {
        SocketAddr::V4(a) => {
            mac.update(&[4]);
            mac.update(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            mac.update(&[6]);
            mac.update(&a.ip().octets());
        }
    }
    mac.update(&peer.port().to_be_bytes());
    mac.update(&hello.client_version);
    mac.update(&hello.random);
    // Length prefixes keep the variable-length fields unambiguous.
    for field in [
        hello.session_id,
        hello.cipher_suites_raw,
        hello.compression_methods,
    ] {
        mac.update(&(field.len() as u32).to_be_bytes());
        mac.update(field);
    }
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(cookie: &[u8]) -> ClientHello<'_> {
        ClientHello {
            record_sequence: 0,
            message_seq: 0,
            client_version: [0xfe, 0xfd],
            random: [1; 32],
            session_id: &[],
            cookie,
            cipher_suites_raw: &[0xc0, 0xa8],
            compression_methods: &[0],
        }
    }

    #[test]
    fn cookie_round_trip_and_rotation() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        let other: SocketAddr = "127.0.0.1:5001".parse().expect("addr");
        let mut jar = CookieJar::new();
        let c = jar.make(peer, &hello(&[]));
        assert!(jar.verify(peer, &hello(&c)));
        assert!(!jar.verify(other, &hello(&c)));
        assert!(!jar.verify(peer, &hello(&c[..31])));
        jar.rotate();
        assert!(
            jar.verify(peer, &hello(&c)),
            "previous secret still accepted"
        );
        jar.rotate();
        assert!(
            !jar.verify(peer, &hello(&c)),
            "two rotations later it expires"
        );
    }
}
