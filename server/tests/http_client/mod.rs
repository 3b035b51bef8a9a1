//! A small HTTP/1.1 client over a raw `TcpStream` for the API tests (one request per
//! connection, `Connection: close`), free of extra dependencies: bodies framed by
//! `Content-Length`, chunked transfer encoding or the connection's close; and an event-stream
//! (SSE) reader.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value as Json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long an exchange, the head of an event stream or the next event may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// An answer: status, headers (lower-case names, in order) and the (de-chunked) body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The Content-Type, lower-cased, or empty.
    pub fn content_type(&self) -> String {
        self.header("content-type")
            .unwrap_or_default()
            .to_ascii_lowercase()
    }

    /// Whether the body came chunked.
    pub fn chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    /// The head's header lines (`name: value`), all lower-case.
    pub fn head_lower(&self) -> String {
        self.headers
            .iter()
            .map(|(n, v)| format!("{n}: {}\r\n", v.to_ascii_lowercase()))
            .collect()
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> Json {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text()))
    }
}

/// One request, built up then sent with [`Request::send`].
#[derive(Debug, Clone)]
pub struct Request<'a> {
    method: &'a str,
    target: &'a str,
    headers: Vec<(String, String)>,
    body: Option<(&'a str, &'a [u8])>,
    timeout: Duration,
}

impl<'a> Request<'a> {
    pub fn new(method: &'a str, target: &'a str) -> Self {
        Request {
            method,
            target,
            headers: Vec::new(),
            body: None,
            timeout: TIMEOUT,
        }
    }

    pub fn get(target: &'a str) -> Self {
        Request::new("GET", target)
    }

    /// An extra header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// `Authorization: Bearer <token>` when there is one.
    pub fn bearer(self, token: Option<&str>) -> Self {
        match token {
            Some(t) => self.header("Authorization", &format!("Bearer {t}")),
            None => self,
        }
    }

    /// A body with its Content-Type (Content-Length is always sent, 0 without a body).
    pub fn body(mut self, content_type: &'a str, body: &'a [u8]) -> Self {
        self.body = Some((content_type, body));
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The request head, `Connection: close`.
    pub fn head(&self, addr: SocketAddr) -> String {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n",
            self.method, self.target
        );
        for (n, v) in &self.headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        let length = self.body.map_or(0, |(_, b)| b.len());
        if let Some((content_type, _)) = self.body {
            head.push_str(&format!("Content-Type: {content_type}\r\n"));
        }
        head.push_str(&format!("Content-Length: {length}\r\n\r\n"));
        head
    }

    /// The answer, or `None` when the server closed without one.
    pub async fn try_send(&self, addr: SocketAddr) -> Option<Reply> {
        let body = self.body.map_or(&b""[..], |(_, b)| b);
        exchange(addr, self.head(addr).as_bytes(), body, self.timeout).await
    }

    /// The answer (panics without one).
    pub async fn send(&self, addr: SocketAddr) -> Reply {
        self.try_send(addr)
            .await
            .unwrap_or_else(|| panic!("{} {}: no answer", self.method, self.target))
    }
}

/// One raw exchange: `head` and `body` are sent as they are (write errors ignored: a peer
/// may answer and close before reading everything), then everything up to the close is read
/// within `timeout` (read errors end the answer). `None` when no answer head came.
pub async fn exchange(
    addr: SocketAddr,
    head: &[u8],
    body: &[u8],
    timeout: Duration,
) -> Option<Reply> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let _ = stream.write_all(head).await;
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(timeout, stream.read_to_end(&mut raw))
        .await
        .expect("an answer or a close in time");
    parse(&raw)
}

/// Where a head (ending in an empty line) ends in `raw`: (head length, body start).
fn head_end(raw: &[u8]) -> Option<(usize, usize)> {
    raw.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| (at, at + 4))
}

/// Status line and headers (lower-case names) of a head.
fn parse_head(head: &[u8]) -> Option<(u16, Vec<(String, String)>)> {
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some((status, headers))
}

/// A whole answer as read up to the connection's close: the body per Content-Length, chunked
/// or to the end. `None` when `raw` has no complete head.
pub fn parse(raw: &[u8]) -> Option<Reply> {
    let (head, start) = head_end(raw)?;
    let (status, headers) = parse_head(&raw[..head])?;
    let mut reply = Reply {
        status,
        headers,
        body: Vec::new(),
    };
    let rest = &raw[start..];
    reply.body = if reply.chunked() {
        dechunk(rest).0
    } else if let Some(length) = reply
        .header("content-length")
        .and_then(|l| l.parse::<usize>().ok())
    {
        rest[..length.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    Some(reply)
}

/// Decodes the complete chunks at the start of `raw`: (data, bytes consumed).
pub fn dechunk(raw: &[u8]) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let rest = &raw[at..];
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            break;
        };
        let size = std::str::from_utf8(&rest[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
        let Some(size) = size else { break };
        let end = eol + 2 + size + 2;
        if rest.len() < end {
            break;
        }
        out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
        at += end;
        if size == 0 {
            break;
        }
    }
    (out, at)
}

/// An event-stream client: `GET target` with `Accept: text/event-stream`, read as events come.
pub struct Sse {
    /// The answer's status and headers (no body).
    pub head: Reply,
    pub stream: TcpStream,
    /// Bytes read and not decoded yet (an incomplete chunk).
    pub raw: Vec<u8>,
    /// Decoded event-stream text not consumed as events yet.
    pub text: String,
    chunked: bool,
    /// How long [`Sse::next_event`] waits.
    pub timeout: Duration,
}

impl Sse {
    /// Opens the stream and reads its head (once it is here the handler has subscribed),
    /// whatever the status.
    pub async fn connect(addr: SocketAddr, target: &str, token: Option<&str>) -> Sse {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
        let req = format!(
            "GET {target} HTTP/1.1\r\nHost: {addr}\r\n{auth}Accept: text/event-stream\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await.expect("send");
        let mut raw = Vec::new();
        let head = tokio::time::timeout(TIMEOUT, async {
            let mut buf = [0u8; 4096];
            loop {
                if let Some((head, start)) = head_end(&raw) {
                    let parsed = parse_head(&raw[..head]).expect("a status line");
                    raw.drain(..start);
                    return parsed;
                }
                let n = stream.read(&mut buf).await.expect("read");
                assert!(n > 0, "{target}: closed before the headers");
                raw.extend_from_slice(&buf[..n]);
            }
        })
        .await
        .expect("headers in time");
        let head = Reply {
            status: head.0,
            headers: head.1,
            body: Vec::new(),
        };
        let mut sse = Sse {
            chunked: head.chunked(),
            head,
            stream,
            raw,
            text: String::new(),
            timeout: TIMEOUT,
        };
        sse.decode();
        sse
    }

    /// Opens the stream, which must answer 200 with `text/event-stream`.
    pub async fn open(addr: SocketAddr, target: &str) -> Sse {
        Sse::open_with(addr, target, None).await
    }

    /// [`Sse::open`] with a bearer token.
    pub async fn open_with(addr: SocketAddr, target: &str, token: Option<&str>) -> Sse {
        let sse = Sse::connect(addr, target, token).await;
        assert_eq!(sse.head.status, 200, "{target}: {:?}", sse.head);
        assert!(
            sse.head.content_type().starts_with("text/event-stream"),
            "{target}: {:?}",
            sse.head
        );
        sse
    }

    /// Moves what `raw` holds (whole chunks when chunked) to `text`.
    fn decode(&mut self) {
        if self.chunked {
            let (data, used) = dechunk(&self.raw);
            self.raw.drain(..used);
            self.text.push_str(&String::from_utf8_lossy(&data));
        } else {
            // Keep an incomplete UTF-8 sequence at the end for the next read.
            let valid = match std::str::from_utf8(&self.raw) {
                Ok(s) => s.len(),
                Err(e) => e.valid_up_to(),
            };
            let text = String::from_utf8_lossy(&self.raw[..valid]).into_owned();
            self.raw.drain(..valid);
            self.text.push_str(&text);
        }
    }

    /// Reads once more from the stream (which must not end).
    pub async fn fill(&mut self) {
        let mut buf = [0u8; 4096];
        let n = self.stream.read(&mut buf).await.expect("read");
        assert!(n > 0, "the stream ended");
        self.raw.extend_from_slice(&buf[..n]);
        self.decode();
    }

    /// The next named event (comments and unnamed blocks skipped): name and data (`data:`
    /// lines joined), within `self.timeout`.
    pub async fn next_event(&mut self) -> (String, String) {
        tokio::time::timeout(self.timeout, async {
            loop {
                while let Some(end) = self.text.find("\n\n") {
                    let block: String = self.text.drain(..end + 2).collect();
                    let mut name = None;
                    let mut data = String::new();
                    for line in block.lines() {
                        if let Some(n) = line.strip_prefix("event:") {
                            name = Some(n.trim().to_owned());
                        } else if let Some(d) = line.strip_prefix("data:") {
                            data.push_str(d.strip_prefix(' ').unwrap_or(d));
                        }
                    }
                    if let Some(name) = name {
                        return (name, data);
                    }
                }
                self.fill().await;
            }
        })
        .await
        .expect("an event in time")
    }

    /// The next named event with its data parsed as JSON.
    pub async fn next_json(&mut self) -> (String, Json) {
        let (name, data) = self.next_event().await;
        let json =
            serde_json::from_str(&data).unwrap_or_else(|e| panic!("{name} data {data:?}: {e}"));
        (name, json)
    }
}
