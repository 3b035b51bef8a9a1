//! RFC 6690 §2 syntax: a list of `<target>;param[=value]` links, and its formatting.
//!
//! Grammar (RFC 6690 §2, with RFC 8288 §3 whitespace):
//!
//! ```text
//! Link            = link-value-list
//! link-value-list = [ link-value *[ "," link-value ]]
//! link-value      = "<" URI-Reference ">" *( OWS ";" OWS link-param )
//! link-extension  = ( parmname [ BWS "=" BWS ( ptoken / quoted-string ) ] )
//!                 / ( ext-name-star "=" ext-value )
//! ptokenchar      = "!" / "#" / "$" / "%" / "&" / "'" / "(" / ")" / "*" / "+" / "-" / "."
//!                 / "/" / DIGIT / ":" / "<" / "=" / ">" / "?" / "@" / ALPHA / "[" / "]"
//!                 / "^" / "_" / "`" / "{" / "|" / "}" / "~"
//! parmname        = 1*attr-char                            ; RFC 5987
//! attr-char       = ALPHA / DIGIT / "!" / "#" / "$" / "&" / "+" / "-" / "." / "^" / "_"
//!                 / "`" / "|" / "~"
//! ```
//!
//! What the parser tolerates beyond RFC 6690 (which allows no whitespace at all): spaces, tabs
//! and line breaks around `,`, `;` and `=` and at both ends (RFC 8288's OWS/BWS; the RFC 6690
//! and LwM2M examples are printed with them), and empty list elements (`</a>,,</b>,`, as
//! RFC 7230 §7 asks of `#` lists). `ext-value` (`title*=UTF-8'en'x%20y`) is made of ptoken
//! characters, so it parses as a token. Everything else is an error with the byte offset.
//!
//! Formatting writes no whitespace, a token where the value is a valid ptoken and the link
//! says so, and a quoted string (escaping `"` and `\`) otherwise, so `parse(format(x)) == x`.

use std::fmt;

use super::LinkError;

/// One link: `<target>` and its parameters in the order they were written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Link {
    /// The URI-Reference between `<` and `>`, as written (no resolution, no percent-decoding).
    pub target: String,
    /// `(name, value)`; `None` for a parameter written without `=` (`;obs`).
    pub params: Vec<(String, Option<ParamValue>)>,
}

/// A parameter value as written on the wire.
///
/// RFC 6690 lets most parameters be written either way (`ct=40` or `ct="40"`, `rt=x` or
/// `rt="x"`); keeping the form lets formatting reproduce the input. Read it with
/// [`ParamValue::as_str`], which is the same for both.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ParamValue {
    /// A `ptoken`: `40`, `1.1`, `oma.lwm2m`.
    Token(String),
    /// The content of a quoted string, unescaped.
    Quoted(String),
}

/// What went wrong where in a link-format payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    #[error("expected '<' starting a link")]
    ExpectedLink,
    #[error("link target has no closing '>'")]
    UnterminatedTarget,
    #[error("link target contains a space, control character, '<' or '\"'")]
    BadTargetChar,
    #[error("expected ';' or ',' after a link or parameter")]
    ExpectedSeparator,
    #[error("expected a parameter name")]
    ExpectedParamName,
    #[error("'=' must be followed by a token or a quoted string")]
    MissingValue,
    #[error("quoted string has no closing '\"'")]
    UnterminatedQuote,
    #[error("parameters before the first link are only allowed in a Bootstrap-Discover answer")]
    LeadingParams,
}

/// Parses a whole link-format payload (content format 40).
///
/// An empty payload (or one of only whitespace and commas) is an empty list. Allocation is
/// proportional to what the payload actually contains, never to a number it declares.
pub fn parse(payload: &[u8]) -> Result<Vec<Link>, LinkError> {
    Ok(parse_document(payload, false)?.links)
}

/// Formats links as a compact link-format payload (no whitespace).
pub fn format(links: &[Link]) -> String {
    let mut out = String::new();
    for (i, link) in links.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_link(&mut out, link);
    }
    out
}

/// A payload that may start with parameters outside any link: the `lwm2m="1.0",</0/0>,...`
/// form of a LwM2M 1.1 Bootstrap-Discover answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Document {
    pub leading: Vec<(String, Option<ParamValue>)>,
    pub links: Vec<Link>,
}

pub(crate) fn parse_document(payload: &[u8], allow_leading: bool) -> Result<Document, LinkError> {
    let text = std::str::from_utf8(payload).map_err(|e| LinkError::NotUtf8 {
        at: e.valid_up_to(),
    })?;
    let mut p = Parser { text, pos: 0 };
    let mut doc = Document::default();
    let mut first = true;
    loop {
        p.skip_list_separators();
        if p.at_end() {
            return Ok(doc);
        }
        if p.peek() == Some(b'<') {
            doc.links.push(p.link()?);
        } else if first && p.peek().is_some_and(is_attr_char) {
            if !allow_leading {
                return Err(p.error(SyntaxError::LeadingParams));
            }
            doc.leading = p.bare_params()?;
        } else {
            return Err(p.error(SyntaxError::ExpectedLink));
        }
        first = false;
        p.skip_ows();
        match p.peek() {
            None => return Ok(doc),
            Some(b',') => p.pos += 1,
            Some(_) => return Err(p.error(SyntaxError::ExpectedSeparator)),
        }
    }
}

impl Link {
    pub fn new(target: impl Into<String>) -> Link {
        Link {
            target: target.into(),
            params: Vec::new(),
        }
    }

    /// Adds a parameter (builder style).
    pub fn with(mut self, name: impl Into<String>, value: Option<ParamValue>) -> Link {
        self.params.push((name.into(), value));
        self
    }

    /// The first parameter of that name (RFC 8288: names are case-insensitive): `None` when
    /// absent, `Some(None)` when written without a value.
    pub fn param(&self, name: &str) -> Option<Option<&ParamValue>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }

    /// True when a parameter of that name is present, with or without a value.
    pub fn has_param(&self, name: &str) -> bool {
        self.param(name).is_some()
    }

    /// The value of the first parameter of that name, token or quoted alike.
    pub fn param_str(&self, name: &str) -> Option<&str> {
        self.param(name).flatten().map(ParamValue::as_str)
    }
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        push_link(&mut s, self);
        f.write_str(&s)
    }
}

impl ParamValue {
    pub fn token(s: impl Into<String>) -> ParamValue {
        ParamValue::Token(s.into())
    }

    pub fn quoted(s: impl Into<String>) -> ParamValue {
        ParamValue::Quoted(s.into())
    }

    /// The value without quotes or escapes.
    pub fn as_str(&self) -> &str {
        match self {
            ParamValue::Token(s) | ParamValue::Quoted(s) => s,
        }
    }

    /// The space-separated items of a value: `rt="a b"`, `ct="110 112"` (RFC 6690 §3.1).
    pub fn items(&self) -> impl Iterator<Item = &str> {
        self.as_str().split_ascii_whitespace()
    }
}

/// True for a non-empty string of RFC 6690 `ptokenchar`s.
pub fn is_ptoken(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_ptoken_char)
}

fn is_ptoken_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'()*+-./:<=>?@[]^_`{|}~".contains(&b)
}

fn is_attr_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b)
}

fn is_ows(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_bad_target_char(c: char) -> bool {
    c.is_ascii_control() || c == ' ' || c == '<' || c == '"'
}

fn push_link(out: &mut String, link: &Link) {
    out.push('<');
    out.push_str(&link.target);
    out.push('>');
    for (name, value) in &link.params {
        out.push(';');
        push_param(out, name, value.as_ref());
    }
}

pub(crate) fn push_param(out: &mut String, name: &str, value: Option<&ParamValue>) {
    out.push_str(name);
    match value {
        None => {}
        Some(ParamValue::Token(t)) if is_ptoken(t) => {
            out.push('=');
            out.push_str(t);
        }
        Some(v) => {
            out.push('=');
            push_quoted(out, v.as_str());
        }
    }
}

fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, problem: SyntaxError) -> LinkError {
        LinkError::Syntax {
            at: self.pos,
            problem,
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn rest(&self) -> &str {
        self.text.get(self.pos..).unwrap_or("")
    }

    fn skip_ows(&mut self) {
        while self.peek().is_some_and(is_ows) {
            self.pos += 1;
        }
    }

    fn skip_list_separators(&mut self) {
        while self.peek().is_some_and(|b| is_ows(b) || b == b',') {
            self.pos += 1;
        }
    }

    fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> &str {
        let start = self.pos;
        while self.peek().is_some_and(&pred) {
            self.pos += 1;
        }
        // Only ASCII bytes were consumed, so both ends are char boundaries.
        self.text.get(start..self.pos).unwrap_or("")
    }

    fn link(&mut self) -> Result<Link, LinkError> {
        let open = self.pos;
        self.pos += 1;
        let Some(len) = self.rest().find('>') else {
            self.pos = open;
            return Err(self.error(SyntaxError::UnterminatedTarget));
        };
        let target = self.rest().get(..len).unwrap_or("");
        if let Some(bad) = target.find(is_bad_target_char) {
            self.pos += bad;
            return Err(self.error(SyntaxError::BadTargetChar));
        }
        let target = target.to_owned();
        self.pos += len + 1;
        let mut params = Vec::new();
        loop {
            let before = self.pos;
            self.skip_ows();
            if self.peek() != Some(b';') {
                self.pos = before;
                break;
            }
            self.pos += 1;
            self.skip_ows();
            params.push(self.param()?);
        }
        Ok(Link { target, params })
    }

    /// `name[=value](;name[=value])*` before the first link.
    fn bare_params(&mut self) -> Result<Vec<(String, Option<ParamValue>)>, LinkError> {
        let mut params = vec![self.param()?];
        loop {
            let before = self.pos;
            self.skip_ows();
            if self.peek() != Some(b';') {
                self.pos = before;
                return Ok(params);
            }
            self.pos += 1;
            self.skip_ows();
            params.push(self.param()?);
        }
    }

    fn param(&mut self) -> Result<(String, Option<ParamValue>), LinkError> {
        let name_start = self.pos;
        self.take_while(is_attr_char);
        if self.pos == name_start {
            return Err(self.error(SyntaxError::ExpectedParamName));
        }
        if self.peek() == Some(b'*') {
            self.pos += 1;
        }
        let name = self.text.get(name_start..self.pos).unwrap_or("").to_owned();
        let before = self.pos;
        self.skip_ows();
        if self.peek() != Some(b'=') {
            self.pos = before;
            return Ok((name, None));
        }
        self.pos += 1;
        self.skip_ows();
        let value = if self.peek() == Some(b'"') {
            ParamValue::Quoted(self.quoted()?)
        } else {
            let token = self.take_while(is_ptoken_char);
            if token.is_empty() {
                return Err(self.error(SyntaxError::MissingValue));
            }
            ParamValue::Token(token.to_owned())
        };
        Ok((name, Some(value)))
    }

    /// A quoted string (RFC 2616 §2.2): `\` makes the next character literal. Starts on `"`.
    fn quoted(&mut self) -> Result<String, LinkError> {
        let open = self.pos;
        let body = self.text.get(open + 1..).unwrap_or("");
        let mut value = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos = open + 1 + i + 1;
                    return Ok(value);
                }
                '\\' => match chars.next() {
                    Some((_, escaped)) => value.push(escaped),
                    None => break,
                },
                c => value.push(c),
            }
        }
        self.pos = open;
        Err(self.error(SyntaxError::UnterminatedQuote))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(s: &str) -> Option<ParamValue> {
        Some(ParamValue::token(s))
    }

    fn quo(s: &str) -> Option<ParamValue> {
        Some(ParamValue::quoted(s))
    }

    fn syntax_error(input: &str) -> (usize, SyntaxError) {
        match parse(input.as_bytes()) {
            Err(LinkError::Syntax { at, problem }) => (at, problem),
            other => panic!("{input:?}: expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn parses_the_brief_example() {
        let links = parse(br#"</a/b>;rt="x";ct=40;obs,</c>"#).expect("parses");
        assert_eq!(
            links,
            vec![
                Link::new("/a/b")
                    .with("rt", quo("x"))
                    .with("ct", tok("40"))
                    .with("obs", None),
                Link::new("/c"),
            ]
        );
        assert_eq!(links[0].param_str("RT"), Some("x"));
        assert_eq!(links[0].param("obs"), Some(None));
        assert_eq!(links[0].param("if"), None);
    }

    #[test]
    fn quoted_strings_keep_commas_semicolons_and_escapes() {
        let links = parse(br#"</a>;title="x, y; \"z\" \\",</b>"#).expect("parses");
        assert_eq!(links.len(), 2);
        assert_eq!(links[0].param_str("title"), Some(r#"x, y; "z" \"#));
        assert_eq!(format(&links), r#"</a>;title="x, y; \"z\" \\",</b>"#);
    }

    #[test]
    fn whitespace_and_empty_elements_are_tolerated() {
        let links = parse(b" </a> ; rt = \"x\" ,\r\n\t</b>;obs ,, </c>, ").expect("parses");
        let targets: Vec<_> = links.iter().map(|l| l.target.as_str()).collect();
        assert_eq!(targets, ["/a", "/b", "/c"]);
        assert_eq!(links[0].params, vec![("rt".to_owned(), quo("x"))]);
        assert_eq!(parse(b"").expect("empty"), vec![]);
        assert_eq!(parse(b" , ,").expect("only separators"), vec![]);
    }

    #[test]
    fn tokens_may_contain_ptoken_specials() {
        let links = parse(b"</a>;x=<b>=c?d;title*=UTF-8'en'a%20b").expect("parses");
        assert_eq!(links[0].param_str("x"), Some("<b>=c?d"));
        assert_eq!(links[0].param_str("title*"), Some("UTF-8'en'a%20b"));
    }

    #[test]
    fn syntax_errors_name_the_offset() {
        assert_eq!(syntax_error("</a"), (0, SyntaxError::UnterminatedTarget));
        assert_eq!(
            syntax_error("</a>;rt=\"x"),
            (8, SyntaxError::UnterminatedQuote)
        );
        assert_eq!(
            syntax_error("</a>;rt=\"x\\"),
            (8, SyntaxError::UnterminatedQuote)
        );
        assert_eq!(syntax_error("</a b>"), (3, SyntaxError::BadTargetChar));
        assert_eq!(syntax_error("</a>;"), (5, SyntaxError::ExpectedParamName));
        assert_eq!(syntax_error("</a>;;x"), (5, SyntaxError::ExpectedParamName));
        assert_eq!(syntax_error("</a>;x="), (7, SyntaxError::MissingValue));
        assert_eq!(syntax_error("</a>;x=,"), (7, SyntaxError::MissingValue));
        assert_eq!(
            syntax_error("</a> </b>"),
            (5, SyntaxError::ExpectedSeparator)
        );
        assert_eq!(
            syntax_error("</a>;x=y z"),
            (9, SyntaxError::ExpectedSeparator)
        );
        assert_eq!(
            syntax_error("lwm2m=1.1,</a>"),
            (0, SyntaxError::LeadingParams)
        );
        assert_eq!(syntax_error("</a>,x"), (5, SyntaxError::ExpectedLink));
        assert_eq!(syntax_error("\"x\""), (0, SyntaxError::ExpectedLink));
        assert_eq!(
            parse(b"</a>\xff"),
            Err(LinkError::NotUtf8 { at: 4 }),
            "non-UTF-8 is reported with its offset"
        );
    }

    #[test]
    fn leading_params_for_bootstrap_discover() {
        let doc = parse_document(br#"lwm2m="1.0";x,</0/0>"#, true).expect("parses");
        assert_eq!(
            doc.leading,
            vec![("lwm2m".to_owned(), quo("1.0")), ("x".to_owned(), None)]
        );
        assert_eq!(doc.links, vec![Link::new("/0/0")]);
        // Only before the first link.
        assert!(parse_document(b"</0/0>,lwm2m=1.0", true).is_err());
    }

    #[test]
    fn formatting_quotes_what_is_not_a_token() {
        let link = Link::new("/a")
            .with("a", tok("ok"))
            .with("b", tok("not ok"))
            .with("c", tok(""))
            .with("d", quo("q"));
        assert_eq!(link.to_string(), r#"</a>;a=ok;b="not ok";c="";d="q""#);
    }

    #[test]
    fn multibyte_text_in_quotes_and_targets() {
        let links = parse("</é>;t=\"ü\\ß\"".as_bytes()).expect("parses");
        assert_eq!(links[0].target, "/é");
        assert_eq!(links[0].param_str("t"), Some("üß"));
    }
}
