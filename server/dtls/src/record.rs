//! DTLS record-layer and ClientHello parsing, just enough for the demultiplexer.
//!
//! The demultiplexer looks at datagrams before any per-peer state exists, so everything
//! here is bounds-checked and borrowed: it must not panic or allocate much on junk.
//! Layouts: RFC 6347 §4.1 (record), §4.2.2 (handshake header), §4.2.1 (HelloVerifyRequest),
//! RFC 5246 §7.4.1.2 (ClientHello body, plus the DTLS cookie).

use thiserror::Error;

pub(crate) const CONTENT_CHANGE_CIPHER_SPEC: u8 = 20;
pub(crate) const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const HANDSHAKE_HELLO_VERIFY_REQUEST: u8 = 3;

const RECORD_HEADER_LEN: usize = 13;
const HANDSHAKE_HEADER_LEN: usize = 12;
/// DTLS 1.2 on the wire.
const VERSION_DTLS12: [u8; 2] = [0xfe, 0xfd];
/// DTLS 1.0 on the wire; RFC 6347 §4.2.1 asks servers to put it in HelloVerifyRequest.
const VERSION_DTLS10: [u8; 2] = [0xfe, 0xff];

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("datagram truncated inside a record or handshake header")]
    Truncated,
    #[error("first record is not an unfragmented epoch-0 ClientHello")]
    NotClientHello,
    #[error("ClientHello is fragmented across records")]
    Fragmented,
}

/// One DTLS record inside a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub content_type: u8,
    pub version: [u8; 2],
    pub epoch: u16,
    /// 48-bit record sequence number.
    pub sequence: u64,
    pub length: u16,
}

/// Walks the records of a datagram. Stops (with an error item) at the first truncated record.
pub(crate) fn records(
    datagram: &[u8],
) -> impl Iterator<Item = Result<(usize, RecordHeader), RecordError>> + '_ {
    let mut offset = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || offset >= datagram.len() {
            return None;
        }
        let start = offset;
        match parse_record_header(&datagram[start..]) {
            Some(header) => {
                let end = start + RECORD_HEADER_LEN + usize::from(header.length);
                if end > datagram.len() {
                    failed = true;
                    return Some(Err(RecordError::Truncated));
                }
                offset = end;
                Some(Ok((start, header)))
            }
            None => {
                failed = true;
                Some(Err(RecordError::Truncated))
            }
        }
    })
}

fn parse_record_header(bytes: &[u8]) -> Option<RecordHeader> {
    let h = bytes.get(..RECORD_HEADER_LEN)?;
    let mut seq = [0u8; 8];
    seq[2..].copy_from_slice(&h[5..11]);
    Some(RecordHeader {
        content_type: h[0],
        version: [h[1], h[2]],
        epoch: u16::from_be_bytes([h[3], h[4]]),
        sequence: u64::from_be_bytes(seq),
        length: u16::from_be_bytes([h[11], h[12]]),
    })
}

/// What the router needs to know about a datagram that is not a ClientHello.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DatagramSummary {
    /// Some record is in epoch 0 (handshake in progress).
    pub has_epoch0: bool,
    /// An epoch-0 ChangeCipherSpec: the client's next records belong to the new handshake.
    pub has_change_cipher_spec: bool,
    /// The datagram starts with an epoch-0 ClientHello.
    pub starts_with_client_hello: bool,
}

/// Summarises a datagram; `None` if it holds no complete record (junk).
pub(crate) fn summarise(datagram: &[u8]) -> Option<DatagramSummary> {
    let mut summary = DatagramSummary::default();
    let mut any = false;
    for (index, item) in records(datagram).enumerate() {
        let Ok((offset, header)) = item else { break };
        any = true;
        if header.epoch == 0 {
            summary.has_epoch0 = true;
            if header.content_type == CONTENT_CHANGE_CIPHER_SPEC {
                summary.has_change_cipher_spec = true;
            }
            if index == 0
                && header.content_type == CONTENT_HANDSHAKE
                && datagram.get(offset + RECORD_HEADER_LEN) == Some(&HANDSHAKE_CLIENT_HELLO)
            {
                summary.starts_with_client_hello = true;
            }
        }
    }
    any.then_some(summary)
}

/// Rewrites the record-layer version of epoch-0 ClientHello records to DTLS 1.2.
///
/// mbedTLS (Anjay, Zephyr) sends its first ClientHello with record version `fe 00`, which
/// webrtc-dtls drops as an unsupported version. The record version is not part of the
/// handshake transcript, so rewriting it changes nothing the peers authenticate.
/// Returns how many records were rewritten.
pub(crate) fn normalise_client_hello_version(datagram: &mut [u8]) -> usize {
    let positions: Vec<usize> = records(datagram)
        .map_while(Result::ok)
        .filter(|(offset, h)| {
            h.epoch == 0
                && h.content_type == CONTENT_HANDSHAKE
                && h.version != VERSION_DTLS12
                && datagram.get(offset + RECORD_HEADER_LEN) == Some(&HANDSHAKE_CLIENT_HELLO)
        })
        .map(|(offset, _)| offset)
        .collect();
    for offset in &positions {
        // In bounds: `records` only yields offsets of complete 13-byte headers.
        if let Some(version) = datagram.get_mut(offset + 1..offset + 3) {
            version.copy_from_slice(&VERSION_DTLS12);
        }
    }
    positions.len()
}

/// The parts of a ClientHello that the cookie and the config choice depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientHello<'a> {
    pub record_sequence: u64,
    pub message_seq: u16,
    pub client_version: [u8; 2],
    pub random: [u8; 32],
    pub session_id: &'a [u8],
    pub cookie: &'a [u8],
    /// The raw cipher-suite list (2 bytes per suite).
    pub cipher_suites_raw: &'a [u8],
    pub compression_methods: &'a [u8],
}

impl ClientHello<'_> {
    pub fn cipher_suites(&self) -> impl Iterator<Item = u16> + '_ {
        self.cipher_suites_raw
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
    }
}

/// Parses the ClientHello in the first record of a datagram.
pub(crate) fn parse_client_hello(datagram: &[u8]) -> Result<ClientHello<'_>, RecordError> {
    let (offset, header) = records(datagram).next().ok_or(RecordError::Truncated)??;
    if header.epoch != 0 || header.content_type != CONTENT_HANDSHAKE {
        return Err(RecordError::NotClientHello);
    }
    let start = offset + RECORD_HEADER_LEN;
    let fragment = datagram
        .get(start..start + usize::from(header.length))
        .ok_or(RecordError::Truncated)?;
    let hs = fragment
        .get(..HANDSHAKE_HEADER_LEN)
        .ok_or(RecordError::Truncated)?;
    if hs[0] != HANDSHAKE_CLIENT_HELLO {
        return Err(RecordError::NotClientHello);
    }
    let length = u24(&hs[1..4]);
    let message_seq = u16::from_be_bytes([hs[4], hs[5]]);
    let fragment_offset = u24(&hs[6..9]);
    let fragment_length = u24(&hs[9..12]);
    // The cookie covers the whole ClientHello; a fragmented one would need reassembly
    // state before the cookie is checked, which is exactly what we refuse to hold.
    if fragment_offset != 0 || fragment_length != length {
        return Err(RecordError::Fragmented);
    }
    let body = fragment
        .get(HANDSHAKE_HEADER_LEN..HANDSHAKE_HEADER_LEN + length)
        .ok_or(RecordError::Truncated)?;
    let mut r = Reader(body);
    let version = r.take(2)?;
    let client_version = [version[0], version[1]];
    let mut random = [0u8; 32];
    random.copy_from_slice(r.take(32)?);
    let session_id = r.vec8()?;
    let cookie = r.vec8()?;
    let cipher_suites_raw = r.vec16()?;
    let compression_methods = r.vec8()?;
    Ok(ClientHello {
        record_sequence: header.sequence,
        message_seq,
        client_version,
        random,
        session_id,
        cookie,
        cipher_suites_raw,
        compression_methods,
    })
}

/// Builds a HelloVerifyRequest datagram (RFC 6347 §4.2.1) answering `hello`.
pub(crate) fn hello_verify_request(hello: &ClientHello<'_>, cookie: &[u8]) -> Vec<u8> {
    // Cookies are at most 255 bytes on the wire; ours are 32.
    let cookie = &cookie[..cookie.len().min(255)];
    let body_len = 2 + 1 + cookie.len();
    let record_len = HANDSHAKE_HEADER_LEN + body_len;
    let mut out = Vec::with_capacity(RECORD_HEADER_LEN + record_len);
    out.push(CONTENT_HANDSHAKE);
    out.extend_from_slice(&VERSION_DTLS10);
    out.extend_from_slice(&0u16.to_be_bytes());
    // §4.2.1: the server copies the ClientHello's record sequence number.
    out.extend_from_slice(&hello.record_sequence.to_be_bytes()[2..]);
    out.extend_from_slice(&(record_len as u16).to_be_bytes());
    out.push(HANDSHAKE_HELLO_VERIFY_REQUEST);
    out.extend_from_slice(&(body_len as u32).to_be_bytes()[1..]);
    // message_seq 0: the first message a (stateless) server sends in a handshake.
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(body_len as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&VERSION_DTLS10);
    out.push(cookie.len() as u8);
    out.extend_from_slice(cookie);
    out
}

fn u24(b: &[u8]) -> usize {
    (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2])
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn vec8(&mut self) -> Result<&'a [u8], RecordError> {
        let n = self.take(1)?[0];
        self.take(usize::from(n))
    }
    fn vec16(&mut self) -> Result<&'a [u8], RecordError> {
        let n = self.take(2)?;
        self.take(usize::from(u16::from_be_bytes([n[0], n[1]])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ClientHello record: no extensions, one suite (PSK CCM_8), given cookie.
    pub(crate) fn client_hello(version: [u8; 2], seq: u16, cookie: &[u8]) -> Vec<u8> {
        let mut body = vec![0xfe, 0xfd];
        body.extend_from_slice(&[7u8; 32]);
        body.push(0); // session id
        body.push(cookie.len() as u8);
        body.extend_from_slice(cookie);
        body.extend_from_slice(&[0, 2, 0xc0, 0xa8]);
        body.extend_from_slice(&[1, 0]);
        let len = body.len() as u32;
        let mut hs = vec![HANDSHAKE_CLIENT_HELLO];
        hs.extend_from_slice(&len.to_be_bytes()[1..]);
        hs.extend_from_slice(&seq.to_be_bytes());
        hs.extend_from_slice(&[0, 0, 0]);
        hs.extend_from_slice(&len.to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut rec = vec![
            CONTENT_HANDSHAKE,
            version[0],
            version[1],
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            5,
        ];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn parses_client_hello_fields() {
        let dgram = client_hello([0xfe, 0xfd], 1, b"abc");
        let ch = parse_client_hello(&dgram).expect("valid");
        assert_eq!(ch.message_seq, 1);
        assert_eq!(ch.record_sequence, 5);
        assert_eq!(ch.cookie, b"abc");
        assert_eq!(ch.cipher_suites().collect::<Vec<_>>(), vec![0xc0a8]);
    }

    #[test]
    fn normalises_mbedtls_record_version() {
        let mut dgram = client_hello([0xfe, 0x00], 0, b"");
        assert_eq!(normalise_client_hello_version(&mut dgram), 1);
        assert_eq!(&dgram[1..3], &[0xfe, 0xfd]);
        assert_eq!(normalise_client_hello_version(&mut dgram), 0);
    }

    #[test]
    fn truncated_input_is_an_error_at_every_length() {
        let dgram = client_hello([0xfe, 0xfd], 0, b"cookie");
        for n in 0..dgram.len() {
            assert!(parse_client_hello(&dgram[..n]).is_err(), "length {n}");
            let _ = summarise(&dgram[..n]);
            let mut copy = dgram[..n].to_vec();
            let _ = normalise_client_hello_version(&mut copy);
        }
    }

    #[test]
    fn hello_verify_request_layout() {
        let dgram = client_hello([0xfe, 0xfd], 0, b"");
        let ch = parse_client_hello(&dgram).expect("valid");
        let hvr = hello_verify_request(&ch, &[9; 32]);
        assert_eq!(hvr.len(), 13 + 12 + 3 + 32);
        assert_eq!(hvr[0], CONTENT_HANDSHAKE);
        assert_eq!(&hvr[5..11], &[0, 0, 0, 0, 0, 5]);
        assert_eq!(hvr[13], HANDSHAKE_HELLO_VERIFY_REQUEST);
        assert_eq!(hvr[13 + 12 + 2], 32);
    }
}
