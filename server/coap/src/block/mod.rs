//! Block-wise transfers (RFC 7959) over UDP/DTLS, with Request-Tag (RFC 9175 §3) for Block1.
//!
//! Pure building blocks for the exchange layer ([`crate::endpoint`]) and for simulated devices:
//! nothing here owns a socket or reads a clock. Functions that need time take `now`.
//!
//! - [`BlockOption`]: the Block1/Block2 option value (RFC 7959 §2.2).
//! - Server side: [`slice_response`] cuts a large response into Block2 blocks; the
//!   [`Block1Assembler`] collects a large request body under byte caps and an idle timeout.
//! - Client side: [`Block2Fetcher`] follows a Block2 response to its end; [`Block1Sender`]
//!   splits a request body into Block1 requests.
//!
//! ## Decisions worth knowing
//!
//! - **Offsets, not block numbers.** A block is placed by its byte offset `num * size`. That is
//!   what lets either side shrink the block size mid-transfer (RFC 7959 §2.3, §2.4) without
//!   renumbering anything: the offset of the next block is simply the number of bytes held.
//! - **Block2 beyond the end → 4.00 Bad Request.** RFC 7959 does not name a code for a Block2
//!   request whose block starts past the end of the representation. 4.02 (RFC 7252 §5.9.2.3) is
//!   for options that are unrecognised or malformed; this one is well formed, it just asks for
//!   something that is not there. aiocoap answers the same case with 4.00 ("Block request out
//!   of bounds"). Malformed Block options (4 bytes or more, SZX 7) are 4.02.
//! - **SZX 7 is refused.** It means BERT, which exists only for CoAP over reliable transports
//!   (RFC 8323 §6); over UDP it is reserved (RFC 7959 §2.2).
//! - **Allocation follows received bytes.** The assembler never reserves memory from a number
//!   the peer sent (a block number, Size1): a Block1 "bomb" (num 10000 with nothing before it)
//!   costs nothing and is answered 4.08.
//! - **ETags are the caller's business on the server side.** [`slice_response`] is stateless;
//!   the handler must put the same ETag on every block of one representation (RFC 7959 §2.4
//!   recommends it) so that a client can tell when the resource changed mid-transfer. The
//!   [`Block2Fetcher`] checks it and fails with [`BlockError::EtagChanged`] so the caller restarts.

mod client;
mod server;

pub use client::{Block1Progress, Block1Sender, Block2Fetcher, Block2Progress};
pub use server::{Block1Assembler, Block1Config, Block1Key, Block1Outcome, slice_response};

use thiserror::Error;

use crate::message::{Code, Options, decode_uint, encode_uint, option};

/// The largest SZX usable over UDP: 2^(6+4) = 1024-byte blocks. 7 is BERT (RFC 8323).
pub const MAX_SZX: u8 = 6;

/// Block numbers are 20 bits: the option is at most 3 bytes with 4 bits of M and SZX.
pub const MAX_NUM: u32 = (1 << 20) - 1;

/// A Block1 or Block2 option value (RFC 7959 §2.2): block number, more flag, size exponent.
///
/// The fields are public so tests and callers can write literals; [`BlockOption::new`] and
/// [`BlockOption::parse`] are the checked ways to make one, and [`BlockOption::encode`] refuses
/// values that cannot go on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockOption {
    pub num: u32,
    pub more: bool,
    pub szx: u8,
}

impl BlockOption {
    pub fn new(num: u32, more: bool, szx: u8) -> Result<BlockOption, BlockError> {
        if szx > MAX_SZX {
            return Err(BlockError::Bert);
        }
        if num > MAX_NUM {
            return Err(BlockError::NumTooLarge(num));
        }
        Ok(BlockOption { num, more, szx })
    }

    /// Parses an option value: 0 to 3 bytes, unsigned big-endian (RFC 7959 §2.2).
    pub fn parse(value: &[u8]) -> Result<BlockOption, BlockError> {
        if value.len() > 3 {
            return Err(BlockError::OptionTooLong(value.len()));
        }
        // At most 3 bytes, so decode_uint cannot fail; the error arm keeps it total anyway.
        let v = decode_uint(value).ok_or(BlockError::OptionTooLong(value.len()))?;
        let szx = (v & 0x7) as u8;
        if szx == 7 {
            return Err(BlockError::Bert);
        }
        Ok(BlockOption {
            num: v >> 4,
            more: v & 0x8 != 0,
            szx,
        })
    }

    /// The option value, shortest form (block 0 of 16 bytes without M is the empty string).
    pub fn encode(&self) -> Result<Vec<u8>, BlockError> {
        BlockOption::new(self.num, self.more, self.szx).map(|b| b.encode_valid())
    }

    /// Encoding for values built by this module, which are valid by construction; masking keeps
    /// it total should that ever stop being true (the peer would then see a wrong block, not us
    /// panic).
    fn encode_valid(&self) -> Vec<u8> {
        let v = ((self.num & MAX_NUM) << 4) | (u32::from(self.more) << 3) | u32::from(self.szx & 7);
        encode_uint(v)
    }

    /// Block size in bytes: 2^(SZX+4).
    pub const fn size(&self) -> usize {
        szx_size(self.szx)
    }

    /// Byte offset of the first byte of this block.
    pub const fn offset(&self) -> usize {
        // num < 2^20 and size <= 2^11 for any parsed value: no overflow on 32-bit targets
        // either; saturating keeps hand-built out-of-range literals harmless.
        (self.num as usize).saturating_mul(self.size())
    }

    /// The Block1 or Block2 option of a message. A repeated Block option is treated like an
    /// unrecognised critical option (RFC 7252 §5.4.5), i.e. an error.
    pub fn from_options(options: &Options, number: u16) -> Result<Option<BlockOption>, BlockError> {
        let mut values = options.get_all(number);
        let Some(first) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(BlockError::Repeated(number));
        }
        BlockOption::parse(first).map(Some)
    }

    /// Sets this value as option `number` (Block1 or Block2), replacing any present.
    pub fn set_in(&self, options: &mut Options, number: u16) {
        options.set(number, self.encode_valid());
    }
}

/// Block size for an SZX; SZX above 6 is clamped to 1024 for callers that pass a raw byte.
pub const fn szx_size(szx: u8) -> usize {
    let szx = if szx > MAX_SZX { MAX_SZX } else { szx };
    1 << (szx as u32 + 4)
}

/// The largest SZX whose block size is at most `bytes` (at least 0, i.e. 16 bytes): for picking
/// a block size from a path MTU or a payload budget.
pub fn szx_for_size(bytes: usize) -> u8 {
    let mut szx = MAX_SZX;
    while szx > 0 && szx_size(szx) > bytes {
        szx -= 1;
    }
    szx
}

/// Why a block-wise step failed. [`BlockError::code`] names the response a server sends for it.
/// `Copy` so that it can ride in [`crate::endpoint::Failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum BlockError {
    /// The peer sent a malformed option.
    #[error("block option value is {0} bytes; at most 3 are allowed")]
    OptionTooLong(usize),
    #[error("SZX 7 (BERT) is reserved outside reliable transports")]
    Bert,
    #[error("block number {0} does not fit in 20 bits")]
    NumTooLarge(u32),
    #[error("option {0} appears more than once")]
    Repeated(u16),

    /// The peer asked for or sent a block that does not fit.
    #[error("block {num} (offset {offset}) starts beyond the end of a {len}-byte body")]
    OutOfRange { num: u32, offset: usize, len: usize },
    #[error("expected the block at byte {expected}, got byte {got}")]
    OutOfOrder { expected: usize, got: usize },
    #[error("a non-final block carries {got} bytes instead of {expected}")]
    BadBlockLength { expected: usize, got: usize },
    #[error("body exceeds the {limit}-byte limit")]
    TooLarge { limit: usize },

    /// Client side: the transfer cannot continue.
    #[error("the ETag changed mid-transfer; the representation must be fetched again")]
    EtagChanged,
    #[error("the peer answered {0} mid-transfer")]
    Peer(Code),
    #[error("a response lacks the block option the transfer needs")]
    MissingBlock,
}

impl BlockError {
    /// The response code a server answers with when a request causes this error.
    pub fn code(&self) -> Code {
        match self {
            BlockError::OptionTooLong(_)
            | BlockError::Bert
            | BlockError::NumTooLarge(_)
            | BlockError::Repeated(_) => Code::BAD_OPTION,
            BlockError::OutOfOrder { .. } => Code::REQUEST_ENTITY_INCOMPLETE,
            BlockError::TooLarge { .. } => Code::REQUEST_ENTITY_TOO_LARGE,
            BlockError::OutOfRange { .. }
            | BlockError::BadBlockLength { .. }
            | BlockError::EtagChanged
            | BlockError::Peer(_)
            | BlockError::MissingBlock => Code::BAD_REQUEST,
        }
    }
}

/// Reads Size1/Size2; an over-long value is treated as absent (it is elective, RFC 7959 §4).
fn size_option(options: &Options, number: u16) -> Option<usize> {
    options
        .get_uint(number)
        .and_then(|v| usize::try_from(v).ok())
}

fn size1(options: &Options) -> Option<usize> {
    size_option(options, option::SIZE1)
}

fn size2(options: &Options) -> Option<usize> {
    size_option(options, option::SIZE2)
}

/// A Size1/Size2 value from a byte count, saturating at the option's 32 bits.
fn size_value(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_zero_to_three_bytes() {
        assert_eq!(
            BlockOption::parse(&[]),
            Ok(BlockOption {
                num: 0,
                more: false,
                szx: 0
            })
        );
        // 0x1E: num 1, M 1, SZX 6.
        assert_eq!(
            BlockOption::parse(&[0x1e]),
            Ok(BlockOption {
                num: 1,
                more: true,
                szx: 6
            })
        );
        // Two bytes: num 0x12 = 18.
        assert_eq!(
            BlockOption::parse(&[0x01, 0x22]),
            Ok(BlockOption {
                num: 18,
                more: false,
                szx: 2
            })
        );
        // Three bytes: the largest block number.
        assert_eq!(
            BlockOption::parse(&[0xff, 0xff, 0xf6]),
            Ok(BlockOption {
                num: MAX_NUM,
                more: false,
                szx: 6
            })
        );
    }

    #[test]
    fn refuses_four_bytes_and_bert() {
        assert_eq!(
            BlockOption::parse(&[0, 0, 0, 0x16]),
            Err(BlockError::OptionTooLong(4))
        );
        assert_eq!(BlockOption::parse(&[0x07]), Err(BlockError::Bert));
        assert_eq!(BlockOption::parse(&[0x01, 0x0f]), Err(BlockError::Bert));
        assert_eq!(BlockError::Bert.code(), Code::BAD_OPTION);
    }

    #[test]
    fn encodes_shortest_and_refuses_out_of_range() {
        let b = |num, more, szx| BlockOption { num, more, szx };
        assert_eq!(b(0, false, 0).encode(), Ok(vec![]));
        assert_eq!(b(1, true, 6).encode(), Ok(vec![0x1e]));
        assert_eq!(b(16, false, 2).encode(), Ok(vec![0x01, 0x02]));
        assert_eq!(b(MAX_NUM, true, 6).encode(), Ok(vec![0xff, 0xff, 0xfe]));
        assert_eq!(
            b(MAX_NUM + 1, false, 0).encode(),
            Err(BlockError::NumTooLarge(1 << 20))
        );
        assert_eq!(b(0, false, 7).encode(), Err(BlockError::Bert));
    }

    #[test]
    fn round_trips_every_szx() {
        for szx in 0..=MAX_SZX {
            for num in [0, 1, 15, 16, 4095, 4096, MAX_NUM] {
                for more in [false, true] {
                    let b = BlockOption { num, more, szx };
                    assert_eq!(b.encode().and_then(|v| BlockOption::parse(&v)), Ok(b));
                }
            }
        }
    }

    #[test]
    fn sizes_and_offsets() {
        assert_eq!(
            BlockOption {
                num: 0,
                more: false,
                szx: 0
            }
            .size(),
            16
        );
        assert_eq!(
            BlockOption {
                num: 3,
                more: false,
                szx: 6
            }
            .size(),
            1024
        );
        assert_eq!(
            BlockOption {
                num: 3,
                more: false,
                szx: 6
            }
            .offset(),
            3072
        );
        assert_eq!(szx_for_size(1152), 6);
        assert_eq!(szx_for_size(100), 2);
        assert_eq!(szx_for_size(0), 0);
    }

    #[test]
    fn repeated_block_option_is_an_error() {
        let mut o = Options::new();
        o.push(option::BLOCK2, vec![0x02]);
        assert_eq!(
            BlockOption::from_options(&o, option::BLOCK2),
            Ok(Some(BlockOption {
                num: 0,
                more: false,
                szx: 2
            }))
        );
        o.push(option::BLOCK2, vec![0x12]);
        assert_eq!(
            BlockOption::from_options(&o, option::BLOCK2),
            Err(BlockError::Repeated(option::BLOCK2))
        );
        assert_eq!(BlockOption::from_options(&o, option::BLOCK1), Ok(None));
    }
}
