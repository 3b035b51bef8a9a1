//! Client side: following a Block2 response to its end, and sending a body in Block1 blocks.
//! Used by the simulated devices, and by the server when it reads large resources from a device
//! or writes large values to one.

use super::{BlockError, BlockOption, MAX_SZX, size_value, size2, szx_size};
use crate::message::{Code, Request, Response, option};

/// What to do after a response of a [`Block2Fetcher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block2Progress {
    /// Send this request for the next block.
    Continue(Request),
    /// The whole representation: the first block's code and options (ETag, Content-Format,
    /// Observe ...) without Block2 and Size2, and the assembled payload.
    Complete(Response),
}

#[derive(Debug)]
struct Fetch {
    first: Response,
    body: Vec<u8>,
    szx: u8,
    etag: Option<Vec<u8>>,
}

/// Follows a response with Block2 M=1 until the last block (RFC 7959 §2.4), under a byte cap.
///
/// Feed it every response of the transfer, the first included; it returns the next request or
/// the assembled response. Follow-up requests repeat the original request's options and payload
/// (a FETCH body is part of what is asked, RFC 8132) with Block2 set, minus:
/// - Observe: only the first block belongs to the observation; the rest are fetched with plain
///   requests (RFC 7959 §2.6);
/// - Block1 and Size1: a request body sent block-wise is not sent again (RFC 7959 §2.7); use
///   [`Block1Sender::block2_fetcher`] for that case, which also drops the payload.
///
/// The ETag of the first block is compared with every later one: a change means the
/// representation changed mid-transfer, reported as [`BlockError::EtagChanged`]; the caller
/// starts again with a fresh fetcher.
#[derive(Debug)]
pub struct Block2Fetcher {
    request: Request,
    max_body: usize,
    fetch: Option<Fetch>,
}

impl Block2Fetcher {
    pub fn new(request: Request, max_body: usize) -> Block2Fetcher {
        Block2Fetcher {
            request,
            max_body,
            fetch: None,
        }
    }

    /// The original request.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Bytes assembled so far.
    pub fn received(&self) -> usize {
        self.fetch.as_ref().map_or(0, |f| f.body.len())
    }

    pub fn on_response(&mut self, response: Response) -> Result<Block2Progress, BlockError> {
        let block = BlockOption::from_options(&response.options, option::BLOCK2)?;
        let Some(mut fetch) = self.fetch.take() else {
            return self.first(response, block);
        };
        if !response.code.is_success() {
            return Err(BlockError::Peer(response.code));
        }
        let block = block.ok_or(BlockError::MissingBlock)?;
        if response.options.get(option::ETAG) != fetch.etag.as_deref() {
            return Err(BlockError::EtagChanged);
        }
        check_block(&block, response.payload.len(), fetch.body.len())?;
        if fetch.body.len().saturating_add(response.payload.len()) > self.max_body {
            return Err(BlockError::TooLarge {
                limit: self.max_body,
            });
        }
        fetch.body.extend_from_slice(&response.payload);
        // The server may answer with a smaller size than asked; never ask larger again, so
        // the bytes held stay a whole number of blocks.
        fetch.szx = fetch.szx.min(block.szx);
        if block.more {
            let next = self.next_request(&fetch)?;
            self.fetch = Some(fetch);
            return Ok(Block2Progress::Continue(next));
        }
        let mut whole = fetch.first;
        whole.payload = fetch.body;
        Ok(Block2Progress::Complete(whole))
    }

    fn first(
        &mut self,
        response: Response,
        block: Option<BlockOption>,
    ) -> Result<Block2Progress, BlockError> {
        let Some(block) = block.filter(|_| response.code.is_success()) else {
            // Not block-wise (or an error, which is never sent block-wise): nothing to follow.
            return Ok(Block2Progress::Complete(response));
        };
        // Size2 announces the whole length (RFC 7959 §4): give up before fetching the rest.
        if size2(&response.options).is_some_and(|s| s > self.max_body)
            || response.payload.len() > self.max_body
        {
            return Err(BlockError::TooLarge {
                limit: self.max_body,
            });
        }
        check_block(&block, response.payload.len(), 0)?;
        let mut first = response;
        let body = std::mem::take(&mut first.payload);
        first.options.remove(option::BLOCK2);
        first.options.remove(option::SIZE2);
        if !block.more {
            first.payload = body;
            return Ok(Block2Progress::Complete(first));
        }
        let fetch = Fetch {
            etag: first.options.get(option::ETAG).map(<[u8]>::to_vec),
            first,
            body,
            szx: block.szx,
        };
        let next = self.next_request(&fetch)?;
        self.fetch = Some(fetch);
        Ok(Block2Progress::Continue(next))
    }

    fn next_request(&self, fetch: &Fetch) -> Result<Request, BlockError> {
        let num = u32::try_from(fetch.body.len() / szx_size(fetch.szx))
            .map_err(|_| BlockError::NumTooLarge(u32::MAX))?;
        let block = BlockOption::new(num, false, fetch.szx)?;
        let mut r = self.request.clone();
        r.options.remove(option::OBSERVE);
        r.options.remove(option::BLOCK1);
        r.options.remove(option::SIZE1);
        block.set_in(&mut r.options, option::BLOCK2);
        Ok(r)
    }
}

/// A received block must start where the body ends, and be whole unless it is the last.
fn check_block(block: &BlockOption, len: usize, held: usize) -> Result<(), BlockError> {
    if block.offset() != held {
        return Err(BlockError::OutOfOrder {
            expected: held,
            got: block.offset(),
        });
    }
    if (block.more && len != block.size()) || len > block.size() {
        return Err(BlockError::BadBlockLength {
            expected: block.size(),
            got: len,
        });
    }
    Ok(())
}

/// Block numbers are 20 bits (RFC 7959 §2.2): a 16 MiB body needs more than that at 16 bytes.
fn too_many_blocks(len: usize, szx: u8) -> bool {
    len.div_ceil(szx_size(szx)) > (super::MAX_NUM as usize) + 1
}

/// What to do after a response of a [`Block1Sender`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block1Progress {
    /// Send this request with the next block.
    Continue(Request),
    /// The transfer is over; this is the server's final answer, success or error (4.13 with
    /// Size1, 4.08 ...). It may carry Block2 M=1: continue with
    /// [`Block1Sender::block2_fetcher`].
    Complete(Response),
}

/// Sends a request body in Block1 blocks (RFC 7959 §2.5).
///
/// A body that fits in one block is sent as a plain request. Otherwise block 0 carries Size1
/// (the whole length, RFC 7959 §4) so that the server may refuse early, and every block carries
/// the Request-Tag given at construction (RFC 9175 §3.4: use a fresh one per body when another
/// transfer to the same resource may overlap, so the server cannot mix the two).
///
/// After each 2.31 Continue the sender moves on; if the server's Block1 asks for a smaller SZX
/// it is used from then on (RFC 7959 §2.3), the next block number being the bytes sent counted
/// in the new size. A 2.xx other than 2.31 echoing the block is a non-atomic server accepting
/// it: that continues too.
#[derive(Debug)]
pub struct Block1Sender {
    base: Request,
    body: Vec<u8>,
    szx: u8,
    /// Start of the block in flight.
    offset: usize,
}

impl Block1Sender {
    pub fn new(
        request: Request,
        szx: u8,
        request_tag: Option<Vec<u8>>,
    ) -> Result<Block1Sender, BlockError> {
        if szx > MAX_SZX {
            return Err(BlockError::Bert);
        }
        let mut base = request;
        let body = std::mem::take(&mut base.payload);
        if too_many_blocks(body.len(), szx) {
            return Err(BlockError::NumTooLarge(u32::MAX));
        }
        base.options.remove(option::BLOCK1);
        base.options.remove(option::SIZE1);
        if let Some(tag) = request_tag {
            base.options.set(option::REQUEST_TAG, tag);
        }
        Ok(Block1Sender {
            base,
            body,
            szx,
            offset: 0,
        })
    }

    /// Whether the body goes in more than one block at the size first chosen.
    fn blockwise(&self) -> bool {
        self.offset > 0 || self.body.len() > szx_size(self.szx)
    }

    fn end(&self) -> usize {
        self.offset
            .saturating_add(szx_size(self.szx))
            .min(self.body.len())
    }

    fn block(&self) -> BlockOption {
        BlockOption {
            // Fits in 20 bits: `new` and `on_response` check the block count of the whole body
            // at every size used; the fallback only keeps this total.
            num: u32::try_from(self.offset / szx_size(self.szx)).unwrap_or(u32::MAX),
            more: self.end() < self.body.len(),
            szx: self.szx,
        }
    }

    /// The request carrying the block in flight (to send, or to send again).
    pub fn request(&self) -> Request {
        let mut r = self.base.clone();
        r.payload = self
            .body
            .get(self.offset..self.end())
            .unwrap_or_default()
            .to_vec();
        if !self.blockwise() {
            // A plain request needs no tag to be told apart from another body.
            r.options.remove(option::REQUEST_TAG);
            return r;
        }
        let block = self.block();
        block.set_in(&mut r.options, option::BLOCK1);
        if self.offset == 0 {
            r.options
                .set_uint(option::SIZE1, size_value(self.body.len()));
        }
        r
    }

    pub fn on_response(&mut self, response: Response) -> Result<Block1Progress, BlockError> {
        if !self.blockwise() {
            return Ok(Block1Progress::Complete(response));
        }
        let sent = self.block();
        let echo = BlockOption::from_options(&response.options, option::BLOCK1)?;
        if !sent.more {
            if response.code == Code::CONTINUE {
                // 2.31 asks for more after the last block: the server lost count.
                return Err(BlockError::Peer(response.code));
            }
            return Ok(Block1Progress::Complete(response));
        }
        let echo = match (response.code, echo) {
            (Code::CONTINUE, None) => return Err(BlockError::MissingBlock),
            (code, Some(echo)) if code.is_success() => echo,
            // An error, or a success that does not speak block-wise: the server's last word.
            _ => return Ok(Block1Progress::Complete(response)),
        };
        if echo.num != sent.num {
            return Err(BlockError::OutOfOrder {
                expected: sent.offset(),
                got: echo.offset(),
            });
        }
        self.offset = self.end();
        // Only ever shrink: the bytes sent are a whole number of blocks of any smaller size.
        self.szx = self.szx.min(echo.szx);
        if too_many_blocks(self.body.len(), self.szx) {
            return Err(BlockError::NumTooLarge(u32::MAX));
        }
        Ok(Block1Progress::Continue(self.request()))
    }

    /// For a final response with Block2 M=1 (RFC 7959 §2.7, §3.3): a fetcher whose follow-up
    /// requests are this request without body, Block1 or Size1.
    pub fn block2_fetcher(&self, max_body: usize) -> Block2Fetcher {
        Block2Fetcher::new(self.base.clone(), max_body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Method;

    fn b(num: u32, more: bool, szx: u8) -> BlockOption {
        BlockOption { num, more, szx }
    }

    #[test]
    fn fetcher_passes_plain_and_error_responses_through() {
        let mut f = Block2Fetcher::new(Request::new(Method::Get), 100);
        let r = Response::new(Code::NOT_FOUND);
        assert_eq!(f.on_response(r.clone()), Ok(Block2Progress::Complete(r)));
        let mut f = Block2Fetcher::new(Request::new(Method::Get), 100);
        let r = Response::new(Code::CONTENT).with_payload(0, vec![1; 10]);
        assert_eq!(f.on_response(r.clone()), Ok(Block2Progress::Complete(r)));
    }

    #[test]
    fn fetcher_refuses_gaps_and_short_blocks() {
        let mut f = Block2Fetcher::new(Request::new(Method::Get), 1000);
        let mut first = Response::new(Code::CONTENT);
        b(0, true, 0).set_in(&mut first.options, option::BLOCK2);
        first.payload = vec![0; 16];
        assert!(matches!(
            f.on_response(first),
            Ok(Block2Progress::Continue(_))
        ));
        let mut skip = Response::new(Code::CONTENT);
        b(2, true, 0).set_in(&mut skip.options, option::BLOCK2);
        skip.payload = vec![0; 16];
        assert_eq!(
            f.on_response(skip),
            Err(BlockError::OutOfOrder {
                expected: 16,
                got: 32
            })
        );
    }

    #[test]
    fn sender_shrinks_when_asked_and_never_grows() {
        let request = Request::new(Method::Put).with_payload(0, vec![7; 300]);
        let mut s = Block1Sender::new(request, 2, Some(vec![9])).unwrap_or_else(|e| panic!("{e}"));
        let first = s.request();
        assert_eq!(first.options.get(option::REQUEST_TAG), Some(&[9][..]));
        assert_eq!(first.payload.len(), 64);
        let mut cont = Response::new(Code::CONTINUE);
        b(0, true, 0).set_in(&mut cont.options, option::BLOCK1);
        let Ok(Block1Progress::Continue(next)) = s.on_response(cont) else {
            panic!("expected the next block");
        };
        // 64 bytes sent, now in 16-byte blocks: block 4.
        assert_eq!(
            BlockOption::from_options(&next.options, option::BLOCK1),
            Ok(Some(b(4, true, 0)))
        );
        assert!(!next.options.contains(option::SIZE1));
        assert_eq!(next.options.get(option::REQUEST_TAG), Some(&[9][..]));
        let mut grow = Response::new(Code::CONTINUE);
        b(4, true, 6).set_in(&mut grow.options, option::BLOCK1);
        let Ok(Block1Progress::Continue(next)) = s.on_response(grow) else {
            panic!("expected the next block");
        };
        assert_eq!(
            BlockOption::from_options(&next.options, option::BLOCK1),
            Ok(Some(b(5, true, 0)))
        );
    }

    #[test]
    fn sender_refuses_bert_and_huge_bodies() {
        let r = Request::new(Method::Put);
        assert!(matches!(
            Block1Sender::new(r.clone(), 7, None),
            Err(BlockError::Bert)
        ));
        let huge = r.with_payload(0, vec![0; 16 * (1 << 20) + 1]);
        assert!(Block1Sender::new(huge.clone(), 0, None).is_err());
        assert!(Block1Sender::new(huge, 1, None).is_ok());
    }
}
