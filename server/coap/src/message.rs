//! Requests and responses as handlers see them: method or code, options, payload. No message
//! ID, no message type, no token: those belong to the exchange layer ([`crate::endpoint`]).

use std::fmt;

/// Option numbers used by LwM2M and the RFCs this crate implements.
pub mod option {
    pub const IF_MATCH: u16 = 1;
    pub const URI_HOST: u16 = 3;
    pub const ETAG: u16 = 4;
    pub const IF_NONE_MATCH: u16 = 5;
    pub const OBSERVE: u16 = 6;
    pub const URI_PORT: u16 = 7;
    pub const LOCATION_PATH: u16 = 8;
    pub const OSCORE: u16 = 9;
    pub const URI_PATH: u16 = 11;
    pub const CONTENT_FORMAT: u16 = 12;
    pub const MAX_AGE: u16 = 14;
    pub const URI_QUERY: u16 = 15;
    pub const ACCEPT: u16 = 17;
    pub const LOCATION_QUERY: u16 = 20;
    pub const BLOCK2: u16 = 23;
    pub const BLOCK1: u16 = 27;
    pub const SIZE2: u16 = 28;
    pub const PROXY_URI: u16 = 35;
    pub const PROXY_SCHEME: u16 = 39;
    pub const SIZE1: u16 = 60;
    pub const ECHO: u16 = 252;
    pub const NO_RESPONSE: u16 = 258;
    pub const REQUEST_TAG: u16 = 292;

    /// Options this crate understands. An unknown option with an odd number is critical
    /// (RFC 7252 §5.4.1): a request carrying one is refused with 4.02.
    pub const KNOWN: [u16; 23] = [
        IF_MATCH,
        URI_HOST,
        ETAG,
        IF_NONE_MATCH,
        OBSERVE,
        URI_PORT,
        LOCATION_PATH,
        OSCORE,
        URI_PATH,
        CONTENT_FORMAT,
        MAX_AGE,
        URI_QUERY,
        ACCEPT,
        LOCATION_QUERY,
        BLOCK2,
        BLOCK1,
        SIZE2,
        PROXY_URI,
        PROXY_SCHEME,
        SIZE1,
        ECHO,
        NO_RESPONSE,
        REQUEST_TAG,
    ];

    pub const fn is_critical(number: u16) -> bool {
        number & 1 == 1
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
    Fetch,
    Patch,
    IPatch,
}

impl Method {
    pub const fn code(self) -> u8 {
        match self {
            Method::Get => 1,
            Method::Post => 2,
            Method::Put => 3,
            Method::Delete => 4,
            Method::Fetch => 5,
            Method::Patch => 6,
            Method::IPatch => 7,
        }
    }

    pub const fn from_code(code: u8) -> Option<Method> {
        Some(match code {
            1 => Method::Get,
            2 => Method::Post,
            3 => Method::Put,
            4 => Method::Delete,
            5 => Method::Fetch,
            6 => Method::Patch,
            7 => Method::IPatch,
            _ => return None,
        })
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Fetch => "FETCH",
            Method::Patch => "PATCH",
            Method::IPatch => "iPATCH",
        })
    }
}

/// A response code `c.dd` (RFC 7252 §12.1.2), kept as the raw byte so codes this crate does not
/// name (LwM2M uses 4.12, 4.13, 2.31 ...) pass through unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Code(u8);

impl Code {
    pub const CREATED: Code = Code::new(2, 1);
    pub const DELETED: Code = Code::new(2, 2);
    pub const VALID: Code = Code::new(2, 3);
    pub const CHANGED: Code = Code::new(2, 4);
    pub const CONTENT: Code = Code::new(2, 5);
    pub const CONTINUE: Code = Code::new(2, 31);
    pub const BAD_REQUEST: Code = Code::new(4, 0);
    pub const UNAUTHORIZED: Code = Code::new(4, 1);
    pub const BAD_OPTION: Code = Code::new(4, 2);
    pub const FORBIDDEN: Code = Code::new(4, 3);
    pub const NOT_FOUND: Code = Code::new(4, 4);
    pub const METHOD_NOT_ALLOWED: Code = Code::new(4, 5);
    pub const NOT_ACCEPTABLE: Code = Code::new(4, 6);
    pub const REQUEST_ENTITY_INCOMPLETE: Code = Code::new(4, 8);
    pub const CONFLICT: Code = Code::new(4, 9);
    pub const PRECONDITION_FAILED: Code = Code::new(4, 12);
    pub const REQUEST_ENTITY_TOO_LARGE: Code = Code::new(4, 13);
    pub const UNSUPPORTED_CONTENT_FORMAT: Code = Code::new(4, 15);
    pub const INTERNAL_SERVER_ERROR: Code = Code::new(5, 0);
    pub const NOT_IMPLEMENTED: Code = Code::new(5, 1);
    pub const SERVICE_UNAVAILABLE: Code = Code::new(5, 3);
    pub const GATEWAY_TIMEOUT: Code = Code::new(5, 4);

    /// `class` 2, 4 or 5 and `detail` 0..=31. Other classes are not response codes.
    pub const fn new(class: u8, detail: u8) -> Code {
        Code(((class & 0x07) << 5) | (detail & 0x1f))
    }

    /// A response code from the header byte; `None` for requests, empty and reserved classes.
    pub const fn from_byte(b: u8) -> Option<Code> {
        match b >> 5 {
            2..=5 => Some(Code(b)),
            _ => None,
        }
    }

    pub const fn byte(self) -> u8 {
        self.0
    }
    pub const fn class(self) -> u8 {
        self.0 >> 5
    }
    pub const fn detail(self) -> u8 {
        self.0 & 0x1f
    }
    pub const fn is_success(self) -> bool {
        self.class() == 2
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.class(), self.detail())
    }
}

/// The options of a message in number order; repeatable options appear once per value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Options(Vec<(u16, Vec<u8>)>);

impl Options {
    pub fn new() -> Options {
        Options::default()
    }

    /// Adds a value after any values of the same option already present (order matters for
    /// Uri-Path and Uri-Query).
    pub fn push(&mut self, number: u16, value: Vec<u8>) {
        let at = self.0.partition_point(|(n, _)| *n <= number);
        self.0.insert(at, (number, value));
    }

    pub fn set(&mut self, number: u16, value: Vec<u8>) {
        self.remove(number);
        self.push(number, value);
    }

    pub fn set_uint(&mut self, number: u16, value: u32) {
        self.set(number, encode_uint(value));
    }

    pub fn remove(&mut self, number: u16) {
        self.0.retain(|(n, _)| *n != number);
    }

    pub fn get(&self, number: u16) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(n, _)| *n == number)
            .map(|(_, v)| v.as_slice())
    }

    pub fn get_all(&self, number: u16) -> impl Iterator<Item = &[u8]> {
        self.0
            .iter()
            .filter(move |(n, _)| *n == number)
            .map(|(_, v)| v.as_slice())
    }

    /// An unsigned-integer option (RFC 7252 §3.2: big-endian, leading zeros may be omitted).
    /// `None` when absent or longer than four bytes.
    pub fn get_uint(&self, number: u16) -> Option<u32> {
        decode_uint(self.get(number)?)
    }

    pub fn contains(&self, number: u16) -> bool {
        self.0.iter().any(|(n, _)| *n == number)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u16, &[u8])> {
        self.0.iter().map(|(n, v)| (*n, v.as_slice()))
    }

    /// The first critical option this crate does not know, if any.
    pub fn unknown_critical(&self) -> Option<u16> {
        self.0
            .iter()
            .map(|(n, _)| *n)
            .find(|n| option::is_critical(*n) && !option::KNOWN.contains(n))
    }

    /// Uri-Path segments as UTF-8; `None` if one is not UTF-8 (the request is then malformed).
    pub fn uri_path(&self) -> Option<Vec<&str>> {
        self.get_all(option::URI_PATH)
            .map(|s| std::str::from_utf8(s).ok())
            .collect()
    }

    /// Uri-Query parameters as UTF-8; `None` if one is not UTF-8.
    pub fn uri_query(&self) -> Option<Vec<&str>> {
        self.get_all(option::URI_QUERY)
            .map(|s| std::str::from_utf8(s).ok())
            .collect()
    }

    pub fn content_format(&self) -> Option<u16> {
        self.get_uint(option::CONTENT_FORMAT)
            .and_then(|v| u16::try_from(v).ok())
    }

    pub fn accept(&self) -> Option<u16> {
        self.get_uint(option::ACCEPT)
            .and_then(|v| u16::try_from(v).ok())
    }

    /// The Observe option (3 bytes at most, RFC 7641 §2).
    pub fn observe(&self) -> Option<u32> {
        self.get(option::OBSERVE)
            .filter(|v| v.len() <= 3)
            .and_then(decode_uint)
    }
}

/// Shortest big-endian encoding of an option integer (zero is the empty string).
pub fn encode_uint(value: u32) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    bytes[skip..].to_vec()
}

pub fn decode_uint(bytes: &[u8]) -> Option<u32> {
    if bytes.len() > 4 {
        return None;
    }
    Some(bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
}

/// A request as a handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub options: Options,
    pub payload: Vec<u8>,
}

impl Request {
    pub fn new(method: Method) -> Request {
        Request {
            method,
            options: Options::new(),
            payload: Vec::new(),
        }
    }

    /// Sets Uri-Path from `/a/b/c` (empty segments are dropped: `/` is the root).
    pub fn with_path(mut self, path: &str) -> Request {
        self.options.remove(option::URI_PATH);
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            self.options
                .push(option::URI_PATH, segment.as_bytes().to_vec());
        }
        self
    }

    pub fn with_query(mut self, query: &str) -> Request {
        self.options
            .push(option::URI_QUERY, query.as_bytes().to_vec());
        self
    }

    pub fn with_option(mut self, number: u16, value: Vec<u8>) -> Request {
        self.options.push(number, value);
        self
    }

    pub fn with_payload(mut self, content_format: u16, payload: Vec<u8>) -> Request {
        self.options
            .set_uint(option::CONTENT_FORMAT, u32::from(content_format));
        self.payload = payload;
        self
    }

    /// `/a/b/c` from Uri-Path, `/` when there is none; lossy for non-UTF-8 segments (logs).
    pub fn path_string(&self) -> String {
        let segments: Vec<String> = self
            .options
            .get_all(option::URI_PATH)
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        format!("/{}", segments.join("/"))
    }
}

/// A response as a handler writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub code: Code,
    pub options: Options,
    pub payload: Vec<u8>,
}

impl Response {
    pub fn new(code: Code) -> Response {
        Response {
            code,
            options: Options::new(),
            payload: Vec::new(),
        }
    }

    pub fn with_payload(mut self, content_format: u16, payload: Vec<u8>) -> Response {
        self.options
            .set_uint(option::CONTENT_FORMAT, u32::from(content_format));
        self.payload = payload;
        self
    }

    pub fn with_option(mut self, number: u16, value: Vec<u8>) -> Response {
        self.options.push(number, value);
        self
    }

    /// A diagnostic payload (RFC 7252 §5.5.2): UTF-8 text, no Content-Format.
    pub fn with_diagnostic(mut self, text: &str) -> Response {
        self.payload = text.as_bytes().to_vec();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_print_like_the_rfc() {
        assert_eq!(Code::CONTENT.to_string(), "2.05");
        assert_eq!(Code::PRECONDITION_FAILED.to_string(), "4.12");
        assert_eq!(Code::from_byte(0x45), Some(Code::CONTENT));
        assert_eq!(Code::from_byte(0x01), None);
        assert_eq!(Code::from_byte(0xE0), None);
    }

    #[test]
    fn options_keep_number_order_and_value_order() {
        let r = Request::new(Method::Get)
            .with_query("ep=a")
            .with_path("/rd/5a3f")
            .with_query("lt=60");
        let numbers: Vec<u16> = r.options.iter().map(|(n, _)| n).collect();
        assert_eq!(numbers, [11, 11, 15, 15]);
        assert_eq!(r.options.uri_path(), Some(vec!["rd", "5a3f"]));
        assert_eq!(r.options.uri_query(), Some(vec!["ep=a", "lt=60"]));
        assert_eq!(r.path_string(), "/rd/5a3f");
    }

    #[test]
    fn uints() {
        assert_eq!(encode_uint(0), Vec::<u8>::new());
        assert_eq!(encode_uint(60), vec![60]);
        assert_eq!(encode_uint(11542), vec![0x2d, 0x16]);
        assert_eq!(decode_uint(&[0x2d, 0x16]), Some(11542));
        assert_eq!(decode_uint(&[]), Some(0));
        assert_eq!(decode_uint(&[1, 2, 3, 4, 5]), None);
    }

    #[test]
    fn unknown_critical_options_are_found() {
        let mut o = Options::new();
        o.push(option::URI_PATH, b"a".to_vec());
        o.push(2048, vec![]);
        assert_eq!(o.unknown_critical(), None, "even numbers are elective");
        o.push(2049, vec![]);
        assert_eq!(o.unknown_critical(), Some(2049));
    }
}
