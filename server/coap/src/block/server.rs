//! Server side: Block2 slicing of large responses and Block1 reassembly of large requests.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use super::{BlockError, BlockOption, MAX_SZX, size_value, size1};
use crate::message::{Code, Method, Request, Response, option};

/// Cuts the block a client asked for out of a complete response (RFC 7959 §2.4).
///
/// `requested` is the Block2 option of the request (`None` on a first request without one);
/// `default_szx` is the block size this server uses when the client states no smaller one.
///
/// - A response that fits in one block and was not asked for block-wise is returned unchanged.
/// - Early negotiation: a client-requested SZX smaller than `default_szx` is honoured; a larger
///   one is reduced to `default_szx` ("MUST use the block size indicated or a smaller size").
///   When the size is reduced the block is located by byte offset, so the answer's block number
///   is the client's offset counted in the smaller size.
/// - The first block carries Size2 with the full length (RFC 7959 §4); later blocks do not.
/// - A block starting beyond the end is [`BlockError::OutOfRange`] (answer 4.00, see the module
///   docs). Block 0 of an empty body is a valid, empty, final block.
///
/// The function is stateless: every call re-renders nothing, it only cuts. The caller keeps the
/// representation stable across the transfer and puts the same ETag on every block of it
/// (RFC 7959 §2.4); the client detects an ETag change and restarts.
pub fn slice_response(
    response: &Response,
    requested: Option<BlockOption>,
    default_szx: u8,
) -> Result<Response, BlockError> {
    if default_szx > MAX_SZX {
        return Err(BlockError::Bert);
    }
    let len = response.payload.len();
    let (offset, szx, asked) = match requested {
        Some(b) => {
            // The M bit of a Block2 request means nothing and is ignored (RFC 7959 §2.4).
            let b = BlockOption::new(b.num, false, b.szx)?;
            (b.offset(), b.szx.min(default_szx), Some(b))
        }
        None => (0, default_szx, None),
    };
    let size = super::szx_size(szx);
    if asked.is_none() && len <= size {
        return Ok(response.clone());
    }
    if offset > 0 && offset >= len {
        return Err(BlockError::OutOfRange {
            num: asked.map_or(0, |b| b.num),
            offset,
            len,
        });
    }
    let end = offset.saturating_add(size).min(len);
    let payload = response
        .payload
        .get(offset..end)
        .unwrap_or_default()
        .to_vec();
    // offset < 2^30 (num < 2^20, size <= 2^10) so the quotient fits in 20 bits.
    let num = u32::try_from(offset / size).map_err(|_| BlockError::NumTooLarge(u32::MAX))?;
    let block = BlockOption::new(num, end < len, szx)?;

    let mut out = Response {
        code: response.code,
        options: response.options.clone(),
        payload,
    };
    block.set_in(&mut out.options, option::BLOCK2);
    if num == 0 {
        out.options.set_uint(option::SIZE2, size_value(len));
    } else {
        out.options.remove(option::SIZE2);
    }
    Ok(out)
}

/// Limits of a [`Block1Assembler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block1Config {
    /// Largest body accepted for one request; more is answered 4.13 with Size1 = this.
    pub max_body: usize,
    /// Bytes buffered across all transfers of all peers; more is answered 5.03.
    pub max_buffered: usize,
    /// Concurrent transfers across all peers; a new one beyond this is answered 5.03.
    pub max_transfers: usize,
    /// A transfer without a new block for this long is dropped by [`Block1Assembler::expire`].
    pub idle_timeout: Duration,
    /// The block size this server prefers; a 2.31 answer asks the client for it when the
    /// client's is larger (RFC 7959 §2.3, control usage of Block1 in a response).
    pub preferred_szx: u8,
}

impl Default for Block1Config {
    fn default() -> Block1Config {
        Block1Config {
            max_body: 64 * 1024,
            max_buffered: 1024 * 1024,
            max_transfers: 256,
            // EXCHANGE_LIFETIME is 247 s (RFC 7252 §4.8.2); a client that stalls longer than
            // that between blocks has certainly given up on the exchange.
            idle_timeout: Duration::from_secs(247),
            preferred_szx: MAX_SZX,
        }
    }
}

/// What identifies one Block1 body of a peer (RFC 7959 §2.5, RFC 9175 §3.3): the method, the
/// target (Uri-Path, Uri-Query) and the Request-Tag values. An absent Request-Tag (no values) and
/// an empty one (one empty value) are different keys; Request-Tag is repeatable, so the key
/// holds all its values in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Block1Key {
    pub method: Method,
    pub path: Vec<Vec<u8>>,
    pub query: Vec<Vec<u8>>,
    pub request_tag: Vec<Vec<u8>>,
}

impl Block1Key {
    pub fn of(request: &Request) -> Block1Key {
        let all = |n| request.options.get_all(n).map(<[u8]>::to_vec).collect();
        Block1Key {
            method: request.method,
            path: all(option::URI_PATH),
            query: all(option::URI_QUERY),
            request_tag: all(option::REQUEST_TAG),
        }
    }
}

/// The assembler's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block1Outcome {
    /// Send this 2.31 Continue (Block1 echoes the block number with M=1, possibly a smaller
    /// SZX asking the client to shrink).
    Continue(Response),
    /// The body is complete: hand `request` to the handler. It carries the whole body and no
    /// Block1, Size1 or Request-Tag. `block1` is the last block's option (M=0), which the final
    /// response must echo (RFC 7959 §2.3; see [`Block1Outcome::finish`]); `None` when the
    /// request was not block-wise at all.
    Complete {
        request: Request,
        block1: Option<BlockOption>,
    },
    /// Send this error response; the request goes no further.
    Error(Response),
}

impl Block1Outcome {
    /// Adds the Block1 echo to the handler's final response of a completed transfer.
    pub fn finish(block1: Option<BlockOption>, mut response: Response) -> Response {
        if let Some(b) = block1 {
            b.set_in(&mut response.options, option::BLOCK1);
        }
        response
    }
}

#[derive(Debug)]
struct Transfer {
    body: Vec<u8>,
    /// The last block appended, to recognise its retransmission.
    last: BlockOption,
    last_len: usize,
    touched: Instant,
}

/// Reassembles Block1 request bodies (RFC 7959 §2.5 atomic transfers), keyed by the peer (`K`,
/// whatever identifies an authenticated peer to the caller) and the [`Block1Key`].
///
/// Blocks must come in order: a block is accepted when its offset `num * size` equals the bytes
/// held, so the client may shrink SZX between blocks. A repeat of the last block (same offset,
/// same bytes) is acknowledged again without appending. Block 0 always starts the body afresh,
/// replacing an unfinished one under the same key (a client restarting, RFC 9175 §3.3: without
/// a distinct Request-Tag the server cannot tell two bodies apart, so the newer wins).
///
/// Memory is spent only on bytes actually received, under `max_body` per body, `max_buffered`
/// in total and `max_transfers` bodies; a block that would exceed a cap drops its transfer.
#[derive(Debug)]
pub struct Block1Assembler<K> {
    config: Block1Config,
    transfers: HashMap<(K, Block1Key), Transfer>,
    buffered: usize,
}

impl<K: Eq + Hash + Clone> Block1Assembler<K> {
    pub fn new(config: Block1Config) -> Block1Assembler<K> {
        Block1Assembler {
            config,
            transfers: HashMap::new(),
            buffered: 0,
        }
    }

    pub fn config(&self) -> &Block1Config {
        &self.config
    }

    /// Bytes held across all transfers.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Transfers in progress.
    pub fn len(&self) -> usize {
        self.transfers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.transfers.is_empty()
    }

    /// Takes one request of `peer`. Requests without Block1 pass through as
    /// [`Block1Outcome::Complete`] (after the Size1 check), leaving any transfer alone.
    pub fn offer(&mut self, now: Instant, peer: K, request: &Request) -> Block1Outcome {
        let block = match BlockOption::from_options(&request.options, option::BLOCK1) {
            Ok(b) => b,
            Err(e) => return error(&e, &self.config),
        };
        // Size1 in a request announces the whole body (RFC 7959 §4): refuse early, before any
        // block is stored.
        if size1(&request.options).is_some_and(|s| s > self.config.max_body) {
            return too_large(self.config.max_body);
        }
        let Some(block) = block else {
            if request.payload.len() > self.config.max_body {
                return too_large(self.config.max_body);
            }
            return Block1Outcome::Complete {
                request: strip(request, request.payload.clone()),
                block1: None,
            };
        };
        let size = block.size();
        let len = request.payload.len();
        // RFC 7959 §2.3: every block but the last is exactly the block size; the last is at
        // most that.
        if (block.more && len != size) || len > size {
            let e = BlockError::BadBlockLength {
                expected: size,
                got: len,
            };
            return error(&e, &self.config);
        }
        let key = (peer, Block1Key::of(request));
        let offset = block.offset();

        if block.num == 0 {
            self.remove(&key);
            if len > self.config.max_body {
                return too_large(self.config.max_body);
            }
            if !block.more {
                // A one-block body: nothing to buffer.
                return Block1Outcome::Complete {
                    request: strip(request, request.payload.clone()),
                    block1: Some(block),
                };
            }
            if self.transfers.len() >= self.config.max_transfers {
                return busy(&self.config);
            }
            if self.buffered.saturating_add(len) > self.config.max_buffered {
                return busy(&self.config);
            }
            self.buffered += len;
            self.transfers.insert(
                key,
                Transfer {
                    body: request.payload.clone(),
                    last: block,
                    last_len: len,
                    touched: now,
                },
            );
            return self.continue_response(block);
        }

        // num > 0: only meaningful as the continuation of a transfer we hold. A stray or
        // hostile high block number ends here without allocating anything.
        let Some(t) = self.transfers.get_mut(&key) else {
            return incomplete("no transfer in progress for this block");
        };
        let held = t.body.len();
        if offset != held {
            let repeat = offset.checked_add(len) == Some(held)
                && block.szx == t.last.szx
                && block.num == t.last.num
                && block.more
                && t.body.get(offset..) == Some(request.payload.as_slice());
            if repeat {
                // A retransmission the exchange layer did not catch (new message ID): answer
                // as before, append nothing.
                t.touched = now;
                return self.continue_response(block);
            }
            return incomplete("block out of order");
        }
        if held.saturating_add(len) > self.config.max_body {
            self.remove(&key);
            return too_large(self.config.max_body);
        }
        if self.buffered.saturating_add(len) > self.config.max_buffered {
            // The block is lost either way; dropping the transfer frees room for others and the
            // client restarts after the 5.03.
            self.remove(&key);
            return busy(&self.config);
        }
        if block.more {
            t.body.extend_from_slice(&request.payload);
            t.last = block;
            t.last_len = len;
            t.touched = now;
            self.buffered += len;
            return self.continue_response(block);
        }
        let Some(t) = self.transfers.remove(&key) else {
            return incomplete("no transfer in progress for this block");
        };
        self.buffered = self.buffered.saturating_sub(t.body.len());
        let mut body = t.body;
        body.extend_from_slice(&request.payload);
        Block1Outcome::Complete {
            request: strip(request, body),
            block1: Some(block),
        }
    }

    /// Drops transfers idle for `idle_timeout` or longer at `now`; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let timeout = self.config.idle_timeout;
        let before = self.transfers.len();
        let mut freed = 0;
        self.transfers.retain(|_, t| {
            let keep = now.saturating_duration_since(t.touched) < timeout;
            if !keep {
                freed += t.body.len();
            }
            keep
        });
        self.buffered = self.buffered.saturating_sub(freed);
        before - self.transfers.len()
    }

    /// When [`Block1Assembler::expire`] next has something to drop.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.transfers
            .values()
            .map(|t| t.touched + self.config.idle_timeout)
            .min()
    }

    /// Forgets every transfer of `peer` (it deregistered, its DTLS session ended ...).
    pub fn forget_peer(&mut self, peer: &K) {
        let mut freed = 0;
        self.transfers.retain(|(k, _), t| {
            let keep = k != peer;
            if !keep {
                freed += t.body.len();
            }
            keep
        });
        self.buffered = self.buffered.saturating_sub(freed);
    }

    fn remove(&mut self, key: &(K, Block1Key)) {
        if let Some(t) = self.transfers.remove(key) {
            self.buffered = self.buffered.saturating_sub(t.body.len());
        }
    }

    fn continue_response(&self, block: BlockOption) -> Block1Outcome {
        let echo = BlockOption {
            num: block.num,
            more: true,
            szx: block.szx.min(self.config.preferred_szx),
        };
        let mut r = Response::new(Code::CONTINUE);
        echo.set_in(&mut r.options, option::BLOCK1);
        Block1Outcome::Continue(r)
    }
}

/// The request as the handler sees it: whole body, no block-wise transport options.
fn strip(request: &Request, payload: Vec<u8>) -> Request {
    let mut options = request.options.clone();
    options.remove(option::BLOCK1);
    options.remove(option::SIZE1);
    options.remove(option::REQUEST_TAG);
    Request {
        method: request.method,
        options,
        payload,
    }
}

fn error(e: &BlockError, config: &Block1Config) -> Block1Outcome {
    match e {
        BlockError::TooLarge { .. } => too_large(config.max_body),
        _ => Block1Outcome::Error(Response::new(e.code()).with_diagnostic(&e.to_string())),
    }
}

/// 4.13 with Size1 = the largest body this server takes (RFC 7959 §2.9.3, §4).
fn too_large(max_body: usize) -> Block1Outcome {
    let mut r = Response::new(Code::REQUEST_ENTITY_TOO_LARGE);
    r.options.set_uint(option::SIZE1, size_value(max_body));
    Block1Outcome::Error(r)
}

/// 4.08 (RFC 7959 §2.9.2): blocks missing, out of order, or discarded already.
fn incomplete(why: &str) -> Block1Outcome {
    Block1Outcome::Error(Response::new(Code::REQUEST_ENTITY_INCOMPLETE).with_diagnostic(why))
}

/// 5.03 when the server-wide budget is spent: the body itself may be fine, so 4.13 (which tells
/// the client the body is too big for this server) would be wrong. Max-Age says when to retry
/// (RFC 7252 §5.9.3.4): by then idle transfers have expired.
fn busy(config: &Block1Config) -> Block1Outcome {
    let mut r = Response::new(Code::SERVICE_UNAVAILABLE);
    let secs = u32::try_from(config.idle_timeout.as_secs()).unwrap_or(u32::MAX);
    r.options.set_uint(option::MAX_AGE, secs.max(1));
    Block1Outcome::Error(r.with_diagnostic("block-wise buffers full"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Options;

    fn b(num: u32, more: bool, szx: u8) -> BlockOption {
        BlockOption { num, more, szx }
    }

    fn put(block: BlockOption, payload: &[u8]) -> Request {
        let mut r = Request::new(Method::Put).with_path("/fw/0/0");
        block.set_in(&mut r.options, option::BLOCK1);
        r.payload = payload.to_vec();
        r
    }

    fn echo(o: &Block1Outcome) -> Option<BlockOption> {
        match o {
            Block1Outcome::Continue(r) => {
                BlockOption::from_options(&r.options, option::BLOCK1).ok()?
            }
            _ => None,
        }
    }

    fn code(o: &Block1Outcome) -> Option<Code> {
        match o {
            Block1Outcome::Error(r) | Block1Outcome::Continue(r) => Some(r.code),
            Block1Outcome::Complete { .. } => None,
        }
    }

    #[test]
    fn slice_leaves_small_responses_alone() {
        let r = Response::new(Code::CONTENT).with_payload(0, vec![1; 20]);
        assert_eq!(slice_response(&r, None, 6), Ok(r.clone()));
        // Asked block-wise: a single final block with Size2.
        let s = slice_response(&r, Some(b(0, false, 6)), 6).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            BlockOption::from_options(&s.options, option::BLOCK2),
            Ok(Some(b(0, false, 6)))
        );
        assert_eq!(s.options.get_uint(option::SIZE2), Some(20));
        assert_eq!(s.payload, r.payload);
    }

    #[test]
    fn slice_beyond_the_end_is_bad_request() {
        let r = Response::new(Code::CONTENT).with_payload(0, vec![1; 32]);
        let e = slice_response(&r, Some(b(2, false, 0)), 6);
        assert_eq!(
            e,
            Err(BlockError::OutOfRange {
                num: 2,
                offset: 32,
                len: 32
            })
        );
        assert_eq!(e.map_err(|e| e.code()), Err(Code::BAD_REQUEST));
        // Block 0 of an empty body exists.
        let empty = Response::new(Code::CONTENT);
        assert!(slice_response(&empty, Some(b(0, false, 0)), 6).is_ok());
        assert_eq!(
            slice_response(&r, Some(b(0, false, 7)), 6),
            Err(BlockError::Bert)
        );
        assert_eq!(slice_response(&r, None, 7), Err(BlockError::Bert));
    }

    #[test]
    fn slice_translates_a_larger_requested_size_by_offset() {
        let body: Vec<u8> = (0..=255).collect();
        let r = Response::new(Code::CONTENT).with_payload(0, body.clone());
        // Client asks block 1 of 128; server uses 32: offset 128 is block 4 of 32.
        let s = slice_response(&r, Some(b(1, false, 3)), 1).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            BlockOption::from_options(&s.options, option::BLOCK2),
            Ok(Some(b(4, true, 1)))
        );
        assert_eq!(s.payload, body[128..160].to_vec());
        assert!(!s.options.contains(option::SIZE2));
    }

    #[test]
    fn bomb_allocates_nothing() {
        let mut a = Block1Assembler::new(Block1Config::default());
        let now = Instant::now();
        let o = a.offer(now, 1u8, &put(b(10000, true, 6), &[0; 1024]));
        assert_eq!(code(&o), Some(Code::REQUEST_ENTITY_INCOMPLETE));
        assert_eq!((a.len(), a.buffered()), (0, 0));
    }

    #[test]
    fn retransmitted_block_is_acknowledged_without_appending() {
        let mut a = Block1Assembler::new(Block1Config::default());
        let now = Instant::now();
        let first = put(b(0, true, 0), &[1; 16]);
        assert_eq!(echo(&a.offer(now, 1u8, &first)), Some(b(0, true, 0)));
        let second = put(b(1, true, 0), &[2; 16]);
        assert_eq!(echo(&a.offer(now, 1u8, &second)), Some(b(1, true, 0)));
        assert_eq!(echo(&a.offer(now, 1u8, &second)), Some(b(1, true, 0)));
        assert_eq!(a.buffered(), 32);
        // Same number, different bytes: not a retransmission.
        let forged = put(b(1, true, 0), &[3; 16]);
        assert_eq!(
            code(&a.offer(now, 1u8, &forged)),
            Some(Code::REQUEST_ENTITY_INCOMPLETE)
        );
        // A gap.
        let gap = put(b(3, true, 0), &[4; 16]);
        assert_eq!(
            code(&a.offer(now, 1u8, &gap)),
            Some(Code::REQUEST_ENTITY_INCOMPLETE)
        );
        let last = put(b(2, false, 0), &[5; 3]);
        match a.offer(now, 1u8, &last) {
            Block1Outcome::Complete { request, block1 } => {
                assert_eq!(block1, Some(b(2, false, 0)));
                assert_eq!(request.payload.len(), 35);
                assert!(!request.options.contains(option::BLOCK1));
                assert_eq!(request.path_string(), "/fw/0/0");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!((a.len(), a.buffered()), (0, 0));
    }

    #[test]
    fn caps() {
        let config = Block1Config {
            max_body: 64,
            max_buffered: 48,
            max_transfers: 2,
            ..Block1Config::default()
        };
        let mut a = Block1Assembler::new(config);
        let now = Instant::now();
        // Size1 announces too much: refused before anything is stored.
        let announced = put(b(0, true, 0), &[0; 16]).with_option(option::SIZE1, vec![200]);
        match a.offer(now, 1u8, &announced) {
            Block1Outcome::Error(r) => {
                assert_eq!(r.code, Code::REQUEST_ENTITY_TOO_LARGE);
                assert_eq!(r.options.get_uint(option::SIZE1), Some(64));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(a.len(), 0);
        // Per body: 5 blocks of 16 > 64.
        for n in 0..4 {
            let o = a.offer(now, 1u8, &put(b(n, true, 0), &[0; 16]));
            if n < 3 {
                assert_eq!(code(&o), Some(Code::CONTINUE), "block {n}");
            } else {
                // Global cap (48) hits first: 5.03, transfer dropped.
                assert_eq!(code(&o), Some(Code::SERVICE_UNAVAILABLE), "block {n}");
            }
        }
        assert_eq!((a.len(), a.buffered()), (0, 0));
        a.config.max_buffered = 1000;
        for n in 0..4 {
            a.offer(now, 1u8, &put(b(n, true, 0), &[0; 16]));
        }
        let o = a.offer(now, 1u8, &put(b(4, false, 0), &[0; 1]));
        assert_eq!(code(&o), Some(Code::REQUEST_ENTITY_TOO_LARGE));
        assert_eq!((a.len(), a.buffered()), (0, 0));
        // Transfer count.
        a.offer(now, 1u8, &put(b(0, true, 0), &[0; 16]));
        a.offer(now, 2u8, &put(b(0, true, 0), &[0; 16]));
        let o = a.offer(now, 3u8, &put(b(0, true, 0), &[0; 16]));
        assert_eq!(code(&o), Some(Code::SERVICE_UNAVAILABLE));
        a.forget_peer(&1);
        assert_eq!((a.len(), a.buffered()), (1, 16));
    }

    #[test]
    fn wrong_block_lengths_are_bad_requests() {
        let mut a = Block1Assembler::new(Block1Config::default());
        let now = Instant::now();
        let short = put(b(0, true, 1), &[0; 31]);
        assert_eq!(code(&a.offer(now, 1u8, &short)), Some(Code::BAD_REQUEST));
        let long = put(b(0, false, 0), &[0; 17]);
        assert_eq!(code(&a.offer(now, 1u8, &long)), Some(Code::BAD_REQUEST));
        assert_eq!(a.len(), 0);
    }

    #[test]
    fn key_includes_request_tag_absent_differs_from_empty() {
        let r = put(b(0, true, 0), &[]);
        let empty = r.clone().with_option(option::REQUEST_TAG, vec![]);
        assert_ne!(Block1Key::of(&r), Block1Key::of(&empty));
        let mut o = Options::new();
        o.push(option::URI_QUERY, b"a".to_vec());
        let q = Request {
            options: o,
            ..r.clone()
        };
        assert_ne!(Block1Key::of(&r), Block1Key::of(&q));
    }

    #[test]
    fn idle_transfers_expire() {
        let config = Block1Config {
            idle_timeout: Duration::from_secs(10),
            ..Block1Config::default()
        };
        let mut a = Block1Assembler::new(config);
        let t0 = Instant::now();
        a.offer(t0, 1u8, &put(b(0, true, 0), &[0; 16]));
        a.offer(
            t0 + Duration::from_secs(5),
            2u8,
            &put(b(0, true, 0), &[0; 16]),
        );
        assert_eq!(a.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        assert_eq!(a.expire(t0 + Duration::from_secs(9)), 0);
        assert_eq!(a.expire(t0 + Duration::from_secs(10)), 1);
        assert_eq!((a.len(), a.buffered()), (1, 16));
        let o = a.offer(
            t0 + Duration::from_secs(11),
            1u8,
            &put(b(1, true, 0), &[0; 16]),
        );
        assert_eq!(code(&o), Some(Code::REQUEST_ENTITY_INCOMPLETE));
    }
}
