//! Datagrams ⇄ messages, on coap-lite's packet codec (RFC 7252 §3).
//!
//! coap-lite parses the header, token, options and payload; this module turns its packet into
//! a message whose type, code and token cannot be out of range, and back.

use coap_lite::{MessageClass, MessageType, Packet};

use crate::message::{Code, Method, Options};

/// A token: 0 to 8 bytes (RFC 7252 §5.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Token {
    len: u8,
    bytes: [u8; 8],
}

impl Token {
    pub const EMPTY: Token = Token {
        len: 0,
        bytes: [0; 8],
    };

    pub fn new(bytes: &[u8]) -> Option<Token> {
        let len = u8::try_from(bytes.len()).ok().filter(|l| *l <= 8)?;
        let mut t = Token { len, bytes: [0; 8] };
        t.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(t)
    }

    pub fn from_u64(v: u64) -> Token {
        Token {
            len: 8,
            bytes: v.to_be_bytes(),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Type {
    Con,
    Non,
    Ack,
    Rst,
}

/// What a message carries, by its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Empty,
    Request(Method),
    Response(Code),
}

/// One CoAP message as it travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub mtype: Type,
    pub kind: Kind,
    pub mid: u16,
    pub token: Token,
    pub options: Options,
    pub payload: Vec<u8>,
}

/// Why a datagram is not a CoAP message. What the endpoint does about it depends on how much
/// could be read (RFC 7252 §4.2, §4.3): a readable header of a CON gets a Reset, the rest is
/// dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("datagram of {0} bytes is shorter than a CoAP header")]
    TooShort(usize),
    #[error("CoAP version {0} is not 1")]
    Version(u8),
    #[error("malformed message (type {mtype:?}, message ID {mid}): {reason}")]
    Malformed {
        mtype: Type,
        mid: u16,
        reason: String,
    },
}

impl WireError {
    /// The message ID and type of a message whose header could be read.
    pub fn header(&self) -> Option<(Type, u16)> {
        match self {
            WireError::Malformed { mtype, mid, .. } => Some((*mtype, *mid)),
            _ => None,
        }
    }
}

fn type_of(bits: u8) -> Type {
    match bits & 0x03 {
        0 => Type::Con,
        1 => Type::Non,
        2 => Type::Ack,
        _ => Type::Rst,
    }
}

/// Parses one datagram.
pub fn decode(datagram: &[u8]) -> Result<Message, WireError> {
    let header = datagram
        .get(..4)
        .ok_or(WireError::TooShort(datagram.len()))?;
    let version = header[0] >> 6;
    if version != 1 {
        return Err(WireError::Version(version));
    }
    let mtype = type_of(header[0] >> 4);
    let tkl = header[0] & 0x0f;
    let code = header[1];
    let mid = u16::from_be_bytes([header[2], header[3]]);
    let malformed = |reason: String| WireError::Malformed { mtype, mid, reason };
    // RFC 7252 §3: token lengths 9-15 are reserved and a message format error.
    if tkl > 8 {
        return Err(malformed(format!("token length {tkl}")));
    }
    let kind = match code {
        0 => Kind::Empty,
        c if c >> 5 == 0 => Kind::Request(
            Method::from_code(c)
                .ok_or_else(|| malformed(format!("unknown method code 0.{c:02}")))?,
        ),
        c => Kind::Response(
            Code::from_byte(c)
                .ok_or_else(|| malformed(format!("reserved code class in {c:#04x}")))?,
        ),
    };
    // RFC 7252 §4.1: an Empty message has no token, options or payload.
    if kind == Kind::Empty && datagram.len() != 4 {
        return Err(malformed("empty message with content".into()));
    }
    let packet = Packet::from_bytes(datagram).map_err(|e| malformed(format!("{e:?}")))?;
    // RFC 7252 §3: a payload marker followed by no payload is a format error; coap-lite takes
    // it as an empty payload. Options encode canonically, so the datagram is then exactly one
    // byte longer than the packet re-encoded.
    if packet.payload.is_empty() && datagram.last() == Some(&0xff) {
        let canonical = packet.to_bytes().map_err(|e| malformed(format!("{e:?}")))?;
        if canonical.len() + 1 == datagram.len() {
            return Err(malformed("payload marker without payload".into()));
        }
    }
    let token = Token::new(packet.get_token()).ok_or_else(|| malformed("token too long".into()))?;
    let mut options = Options::new();
    for (number, values) in packet.options() {
        for v in values {
            options.push(*number, v.clone());
        }
    }
    Ok(Message {
        mtype,
        kind,
        mid,
        token,
        options,
        payload: packet.payload,
    })
}

/// Serialises a message. Fails only for a message no peer could parse (an option value
/// over 65804 bytes, a datagram over 64 000 bytes).
pub fn encode(msg: &Message) -> Result<Vec<u8>, WireError> {
    let mut packet = Packet::new();
    packet.header.set_version(1);
    packet.header.set_type(match msg.mtype {
        Type::Con => MessageType::Confirmable,
        Type::Non => MessageType::NonConfirmable,
        Type::Ack => MessageType::Acknowledgement,
        Type::Rst => MessageType::Reset,
    });
    packet.header.message_id = msg.mid;
    packet.header.code = MessageClass::from(match msg.kind {
        Kind::Empty => 0,
        Kind::Request(m) => m.code(),
        Kind::Response(c) => c.byte(),
    });
    packet.set_token(msg.token.as_bytes().to_vec());
    for (number, value) in msg.options.iter() {
        packet.add_option(coap_lite::CoapOption::from(number), value.to_vec());
    }
    packet.payload.clone_from(&msg.payload);
    packet.to_bytes().map_err(|e| WireError::Malformed {
        mtype: msg.mtype,
        mid: msg.mid,
        reason: format!("cannot encode: {e:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::option;

    #[test]
    fn rfc7252_figure_examples_round_trip() {
        // A CON GET /temperature with a 2-byte token, as in RFC 7252 Appendix A, Figure 17
        // style: header 0x42 (ver 1, CON, TKL 2), code 0.01, MID 0x7d34.
        let bytes = [
            0x42, 0x01, 0x7d, 0x34, 0x20, 0xff, 0xbb, b't', b'e', b'm', b'p', b'e', b'r', b'a',
            b't', b'u', b'r', b'e',
        ];
        let msg = decode(&bytes).expect("valid");
        assert_eq!(msg.mtype, Type::Con);
        assert_eq!(msg.kind, Kind::Request(Method::Get));
        assert_eq!(msg.mid, 0x7d34);
        assert_eq!(msg.token.as_bytes(), [0x20, 0xff]);
        assert_eq!(msg.options.uri_path(), Some(vec!["temperature"]));
        assert_eq!(encode(&msg).expect("encodes"), bytes);
    }

    #[test]
    fn malformed_datagrams() {
        assert_eq!(decode(&[0x40]), Err(WireError::TooShort(1)));
        assert_eq!(decode(&[0x80, 1, 0, 0]), Err(WireError::Version(2)));
        // Token length 9 is reserved: the header is readable, so a CON gets a Reset.
        let e = decode(&[0x49, 1, 0, 7]).expect_err("reserved TKL");
        assert_eq!(e.header(), Some((Type::Con, 7)));
        // An empty message must be exactly four bytes.
        assert!(decode(&[0x40, 0, 0, 1, 0xff]).is_err());
        // Option delta 15 without payload marker is a format error.
        assert!(decode(&[0x40, 1, 0, 1, 0xf0]).is_err());
        // Payload marker with no payload.
        assert!(decode(&[0x40, 1, 0, 1, 0xff]).is_err());
    }

    #[test]
    fn response_codes_pass_through() {
        let msg = Message {
            mtype: Type::Ack,
            kind: Kind::Response(Code::PRECONDITION_FAILED),
            mid: 1,
            token: Token::new(&[1, 2, 3]).expect("short"),
            options: {
                let mut o = Options::new();
                o.set_uint(option::CONTENT_FORMAT, 11542);
                o
            },
            payload: vec![1, 2, 3],
        };
        let bytes = encode(&msg).expect("encodes");
        assert_eq!(decode(&bytes), Ok(msg));
    }
}
