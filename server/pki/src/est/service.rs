//! The request handler: [`EstService::handle`].

use sha2::{Digest, Sha256};
use steward_coap::message::{Code, Method};

use super::audit::{AuditLine, AuditOutcome};
use super::content_format as cf;
use super::discovery::discovery_payload;
use super::enroller::{Enroller, EstClient, EstContext, EstEncoder, EstRefusal};
use super::route::{EstFunction, Route, route};

/// What the service offers beyond the mandatory `/crts`, `/sen`, `/sren`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EstConfig {
    /// Serve `/skg` and `/skc`. Off by default: generating device keys on the server is a
    /// deployment decision (LwM2M mode 4 keeps the key on the device, standards.md §1.11).
    pub server_keygen: bool,
    /// Serve `/att`. On by default; it is harmless and may answer an empty SEQUENCE.
    pub csr_attrs: bool,
    /// Largest CSR accepted, in bytes; larger ones get 4.13 with Size1. 8 KiB holds an RSA-4096
    /// CSR with a generous attribute set; P-256 CSRs are ~300–600 bytes.
    pub max_csr_len: usize,
}

impl Default for EstConfig {
    fn default() -> EstConfig {
        EstConfig {
            server_keygen: false,
            csr_attrs: true,
            max_csr_len: 8 * 1024,
        }
    }
}

impl EstConfig {
    /// True if the function is served (and listed in discovery).
    pub fn enabled(&self, function: EstFunction) -> bool {
        match function {
            EstFunction::Crts | EstFunction::Sen | EstFunction::Sren => true,
            EstFunction::Skg | EstFunction::Skc => self.server_keygen,
            EstFunction::Att => self.csr_attrs,
        }
    }
}

/// One reassembled request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EstRequest<'a> {
    pub method: Method,
    /// Uri-Path segments.
    pub path: Vec<String>,
    /// Uri-Query values; only `/.well-known/core` looks at them.
    pub query: Vec<String>,
    pub content_format: Option<u16>,
    pub accept: Option<u16>,
    pub payload: &'a [u8],
    /// The authenticated DTLS identity; `None` on an unsecured transport.
    pub client: Option<EstClient>,
}

/// The response, plus the audit line the server must record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EstResponse {
    pub code: Code,
    /// `None` for errors, whose payload (if any) is a UTF-8 diagnostic (RFC 7252 §5.5.2).
    pub content_format: Option<u16>,
    /// Set on 5.03: when to retry (RFC 9148 §4.7).
    pub max_age: Option<u32>,
    /// Set on 4.13: the largest CSR accepted (RFC 7959 §4).
    pub size1: Option<u32>,
    pub payload: Vec<u8>,
    /// Present for every refusal and every issuance.
    pub audit: Option<AuditLine>,
}

/// The EST-coaps resources of one server.
#[derive(Debug, Clone)]
pub struct EstService<E, C> {
    enroller: E,
    encoder: C,
    config: EstConfig,
}

impl<E: Enroller, C: EstEncoder> EstService<E, C> {
    pub fn new(enroller: E, encoder: C, config: EstConfig) -> EstService<E, C> {
        EstService {
            enroller,
            encoder,
            config,
        }
    }

    pub fn config(&self) -> &EstConfig {
        &self.config
    }

    pub fn enroller(&self) -> &E {
        &self.enroller
    }

    /// The EST links for the server's `/.well-known/core` (see [`super::discovery`]).
    pub fn discovery(&self, query: &[String]) -> Vec<String> {
        super::discovery::discovery(&self.config, query)
    }

    /// Answers one request. Total: any input gives a response, nothing panics.
    pub fn handle(&self, req: &EstRequest<'_>) -> EstResponse {
        let mut audit = Audit::new(req.client.as_ref(), &req.path);
        match route(&req.path) {
            None => audit.refuse(Code::NOT_FOUND, "not an EST path", true),
            Some(Route::Unknown) => audit.refuse(Code::NOT_FOUND, "no such EST resource", true),
            Some(Route::Core) => self.core(req, &audit),
            Some(Route::Function { label, function }) => {
                audit.function = Some(function);
                audit.label = label.map(|l| l.escape_debug().to_string());
                self.function(req, label, function, &audit)
            }
        }
    }

    /// [`EstRequest::from_coap`] then [`EstService::handle`]; unreadable options are refused
    /// (and audited) like any other bad request.
    pub fn handle_coap(
        &self,
        req: &steward_coap::message::Request,
        client: Option<EstClient>,
    ) -> EstResponse {
        // Parse without the client first so that it is not cloned for the error path.
        match EstRequest::from_coap(req, None) {
            Ok(mut est) => {
                est.client = client;
                self.handle(&est)
            }
            Err(error) => {
                let lossy_path: Vec<String> = req
                    .options
                    .get_all(steward_coap::message::option::URI_PATH)
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect();
                Audit::new(client.as_ref(), &lossy_path).refuse(
                    error.code(),
                    &error.to_string(),
                    true,
                )
            }
        }
    }

    fn core(&self, req: &EstRequest<'_>, audit: &Audit) -> EstResponse {
        if req.method != Method::Get {
            return audit.refuse(Code::METHOD_NOT_ALLOWED, "discovery is GET only", true);
        }
        if !matches!(req.accept, None | Some(cf::LINK_FORMAT)) {
            return audit.refuse(Code::NOT_ACCEPTABLE, "discovery answers ct 40 only", true);
        }
        let payload = discovery_payload(&self.config, &req.query);
        ok(Code::CONTENT, cf::LINK_FORMAT, payload.into_bytes())
    }

    fn function(
        &self,
        req: &EstRequest<'_>,
        label: Option<&str>,
        function: EstFunction,
        audit: &Audit,
    ) -> EstResponse {
        // RFC 9148 §3: every EST function needs an authenticated client.
        let Some(client) = req.client.as_ref() else {
            return audit.refuse(Code::UNAUTHORIZED, "no authenticated client identity", true);
        };
        if let Some(label) = label
            && !self.enroller.has_label(label)
        {
            // Same diagnostic as an unknown path: a label is not confirmed or denied.
            return audit.refuse(Code::NOT_FOUND, "no such EST resource", true);
        }
        if !self.config.enabled(function) {
            return audit.refuse(Code::NOT_FOUND, "no such EST resource", true);
        }
        if req.method != function.method() {
            let reason = format!("/{function} takes {} only", function.method());
            return audit.refuse(Code::METHOD_NOT_ALLOWED, &reason, true);
        }
        let ctx = EstContext { client, label };
        match function {
            EstFunction::Crts => self.crts(req, &ctx, audit),
            EstFunction::Att => self.att(req, &ctx, audit),
            EstFunction::Sen | EstFunction::Sren | EstFunction::Skg | EstFunction::Skc => {
                self.issue(req, &ctx, function, audit)
            }
        }
    }

    fn crts(&self, req: &EstRequest<'_>, ctx: &EstContext<'_>, audit: &Audit) -> EstResponse {
        let Some(format) = cert_format(req.accept) else {
            return audit.refuse(Code::NOT_ACCEPTABLE, "/crts answers ct 281 or 287", true);
        };
        let certs = match self.enroller.ca_certs(ctx) {
            Ok(certs) => certs,
            Err(refusal) => return audit.refusal(&refusal),
        };
        match (format, certs.as_slice()) {
            (_, []) => audit.refuse(
                Code::INTERNAL_SERVER_ERROR,
                "no CA certificate configured",
                false,
            ),
            (cf::PKIX_CERT, [one]) => ok(Code::CONTENT, cf::PKIX_CERT, one.clone()),
            // 287 carries one certificate (RFC 9148 §4.1); dropping the rest of the chain
            // would hand the client an incomplete trust anchor set, so ask for 281 instead.
            (cf::PKIX_CERT, more) => {
                let reason = format!(
                    "{} CA certificates do not fit one pkix-cert; ask for ct 281",
                    more.len()
                );
                audit.refuse(Code::NOT_ACCEPTABLE, &reason, true)
            }
            (_, _) => match self.encoder.certs_only(&certs) {
                Ok(cms) => ok(Code::CONTENT, cf::CERTS_ONLY, cms),
                Err(e) => {
                    let reason = format!("certs-only encoding failed: {e}");
                    audit.refuse(Code::INTERNAL_SERVER_ERROR, &reason, false)
                }
            },
        }
    }

    fn att(&self, req: &EstRequest<'_>, ctx: &EstContext<'_>, audit: &Audit) -> EstResponse {
        if !matches!(req.accept, None | Some(cf::CSRATTRS)) {
            return audit.refuse(Code::NOT_ACCEPTABLE, "/att answers ct 285 only", true);
        }
        match self.enroller.csr_attrs(ctx) {
            Ok(attrs) => ok(Code::CONTENT, cf::CSRATTRS, attrs),
            Err(refusal) => audit.refusal(&refusal),
        }
    }

    fn issue(
        &self,
        req: &EstRequest<'_>,
        ctx: &EstContext<'_>,
        function: EstFunction,
        audit: &Audit,
    ) -> EstResponse {
        // RFC 7030 §4.2.2: the certificate being renewed is the TLS client certificate, so a
        // PSK session has nothing to renew (DESIGN: /sren needs the current operational cert).
        if function == EstFunction::Sren && !ctx.client.has_certificate() {
            return audit.refuse(
                Code::UNAUTHORIZED,
                "re-enrolment needs the current certificate as DTLS client credential",
                true,
            );
        }
        if req.content_format != Some(cf::PKCS10) {
            let reason = match req.content_format {
                Some(ct) => format!("/{function} takes ct 286 (PKCS#10), not {ct}"),
                None => format!("/{function} takes ct 286 (PKCS#10), got no Content-Format"),
            };
            return audit.refuse(Code::UNSUPPORTED_CONTENT_FORMAT, &reason, true);
        }
        let cert_format = match function {
            EstFunction::Sen | EstFunction::Sren => match cert_format(req.accept) {
                Some(format) => Some(format),
                None => {
                    let reason = format!("/{function} answers ct 281 or 287");
                    return audit.refuse(Code::NOT_ACCEPTABLE, &reason, true);
                }
            },
            _ if matches!(req.accept, None | Some(cf::MULTIPART_CORE)) => None,
            _ => {
                let reason = format!("/{function} answers ct 62 only");
                return audit.refuse(Code::NOT_ACCEPTABLE, &reason, true);
            }
        };
        if req.payload.len() > self.config.max_csr_len {
            let reason = format!(
                "CSR of {} bytes exceeds the limit of {}",
                req.payload.len(),
                self.config.max_csr_len
            );
            let mut response = audit.refuse(Code::REQUEST_ENTITY_TOO_LARGE, &reason, true);
            response.size1 = u32::try_from(self.config.max_csr_len).ok();
            return response;
        }
        if let Err(problem) = check_der_sequence(req.payload) {
            let reason = format!("CSR is not one DER SEQUENCE: {problem}");
            return audit.refuse(Code::BAD_REQUEST, &reason, true);
        }
        let csr = req.payload;
        match function {
            EstFunction::Sen | EstFunction::Sren => {
                let issued = if function == EstFunction::Sen {
                    self.enroller.enroll(ctx, csr)
                } else {
                    self.enroller.reenroll(ctx, csr)
                };
                let cert = match issued {
                    Ok(cert) => cert,
                    Err(refusal) => return audit.refusal(&refusal),
                };
                let fingerprint = sha256_hex(&cert);
                let delivered = match cert_format {
                    Some(cf::PKIX_CERT) => Ok((cf::PKIX_CERT, cert)),
                    _ => self
                        .encoder
                        .certs_only(std::slice::from_ref(&cert))
                        .map(|cms| (cf::CERTS_ONLY, cms)),
                };
                match delivered {
                    Ok((format, payload)) => audit.issued(format, payload, &fingerprint),
                    Err(e) => audit.undelivered(&fingerprint, &e.to_string()),
                }
            }
            EstFunction::Skg | EstFunction::Skc => {
                let key = match self.enroller.server_keygen(ctx, csr) {
                    Ok(key) => key,
                    Err(refusal) => return audit.refusal(&refusal),
                };
                let fingerprint = sha256_hex(&key.cert_der);
                let cert_part = if function == EstFunction::Skg {
                    self.encoder
                        .certs_only(std::slice::from_ref(&key.cert_der))
                        .map(|cms| (cf::CERTS_ONLY, cms))
                } else {
                    Ok((cf::PKIX_CERT, key.cert_der.clone()))
                };
                let delivered = cert_part.and_then(|(format, cert)| {
                    self.encoder.multipart(&[
                        (cf::PKCS8, key.pkcs8_der.as_slice()),
                        (format, cert.as_slice()),
                    ])
                });
                match delivered {
                    Ok(payload) => audit.issued(cf::MULTIPART_CORE, payload, &fingerprint),
                    Err(e) => audit.undelivered(&fingerprint, &e.to_string()),
                }
            }
            // Routed to crts/att above; answering 5.00 keeps this total without a panic.
            EstFunction::Crts | EstFunction::Att => audit.refuse(
                Code::INTERNAL_SERVER_ERROR,
                "not an issuing function",
                false,
            ),
        }
    }
}

/// Why a CoAP request cannot be read as an EST request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("Uri-Path is not UTF-8")]
    PathNotUtf8,
    #[error("Uri-Query is not UTF-8")]
    QueryNotUtf8,
    /// Present but longer than two bytes.
    #[error("unreadable Content-Format")]
    ContentFormat,
    /// Present but longer than two bytes.
    #[error("unreadable Accept")]
    Accept,
}

impl RequestError {
    pub fn code(self) -> Code {
        match self {
            RequestError::PathNotUtf8 | RequestError::QueryNotUtf8 => Code::BAD_REQUEST,
            RequestError::ContentFormat => Code::UNSUPPORTED_CONTENT_FORMAT,
            RequestError::Accept => Code::NOT_ACCEPTABLE,
        }
    }
}

impl<'a> EstRequest<'a> {
    /// Reads an EST request out of a steward-coap request (Uri-Path, Uri-Query,
    /// Content-Format, Accept, payload).
    pub fn from_coap(
        req: &'a steward_coap::message::Request,
        client: Option<EstClient>,
    ) -> Result<EstRequest<'a>, RequestError> {
        use steward_coap::message::option;
        let options = &req.options;
        let path = options.uri_path().ok_or(RequestError::PathNotUtf8)?;
        let query = options.uri_query().ok_or(RequestError::QueryNotUtf8)?;
        let content_format = options.content_format();
        if content_format.is_none() && options.contains(option::CONTENT_FORMAT) {
            return Err(RequestError::ContentFormat);
        }
        let accept = options.accept();
        if accept.is_none() && options.contains(option::ACCEPT) {
            return Err(RequestError::Accept);
        }
        Ok(EstRequest {
            method: req.method,
            path: path.into_iter().map(str::to_owned).collect(),
            query: query.into_iter().map(str::to_owned).collect(),
            content_format,
            accept,
            payload: &req.payload,
            client,
        })
    }
}

impl EstResponse {
    /// The steward-coap response to send (the audit line stays with the caller).
    pub fn to_coap(&self) -> steward_coap::message::Response {
        use steward_coap::message::{Response, option};
        let mut response = Response::new(self.code);
        match self.content_format {
            Some(format) => response = response.with_payload(format, self.payload.clone()),
            None => response.payload = self.payload.clone(),
        }
        if let Some(max_age) = self.max_age {
            response.options.set_uint(option::MAX_AGE, max_age);
        }
        if let Some(size1) = self.size1 {
            response.options.set_uint(option::SIZE1, size1);
        }
        response
    }
}

/// Accept for `/crts`, `/sen`, `/sren`: none ⇒ 281 (RFC 9148 §4.3 "SHOULD use 281"), 281 or
/// 287; `None` for anything else.
fn cert_format(accept: Option<u16>) -> Option<u16> {
    match accept {
        None | Some(cf::CERTS_ONLY) => Some(cf::CERTS_ONLY),
        Some(cf::PKIX_CERT) => Some(cf::PKIX_CERT),
        Some(_) => None,
    }
}

fn ok(code: Code, format: u16, payload: Vec<u8>) -> EstResponse {
    EstResponse {
        code,
        content_format: Some(format),
        max_age: None,
        size1: None,
        payload,
        audit: None,
    }
}

/// The audit fields known before the outcome.
struct Audit {
    client: String,
    path: String,
    function: Option<EstFunction>,
    label: Option<String>,
}

/// Paths are attacker-controlled: bound what goes into the log.
const MAX_AUDIT_PATH_CHARS: usize = 256;

impl Audit {
    fn new(client: Option<&EstClient>, path: &[String]) -> Audit {
        let mut shown = String::new();
        for segment in path {
            shown.push('/');
            shown.extend(segment.escape_debug());
        }
        if shown.is_empty() {
            shown.push('/');
        }
        if shown.chars().count() > MAX_AUDIT_PATH_CHARS {
            shown = shown.chars().take(MAX_AUDIT_PATH_CHARS).collect();
            shown.push('…');
        }
        Audit {
            client: client.map_or_else(|| "anonymous".to_owned(), ToString::to_string),
            path: shown,
            function: None,
            label: None,
        }
    }

    fn line(&self, outcome: AuditOutcome, code: Code, reason: String) -> AuditLine {
        AuditLine {
            client: self.client.clone(),
            path: self.path.clone(),
            function: self.function,
            label: self.label.clone(),
            outcome,
            code,
            reason,
        }
    }

    /// A refusal; `tell` sends the reason as diagnostic payload. Only protocol-level reasons
    /// and the client's own input errors are told: policy and server reasons stay in the log.
    fn refuse(&self, code: Code, reason: &str, tell: bool) -> EstResponse {
        EstResponse {
            code,
            content_format: None,
            max_age: None,
            size1: None,
            payload: if tell {
                reason.as_bytes().to_vec()
            } else {
                Vec::new()
            },
            audit: Some(self.line(AuditOutcome::Refused, code, reason.to_owned())),
        }
    }

    fn refusal(&self, refusal: &EstRefusal) -> EstResponse {
        let tell = matches!(refusal, EstRefusal::BadRequest(_) | EstRefusal::TooLarge(_));
        let mut response = self.refuse(refusal.code(), refusal.reason(), tell);
        response.max_age = refusal.max_age();
        response
    }

    fn issued(&self, format: u16, payload: Vec<u8>, fingerprint: &str) -> EstResponse {
        EstResponse {
            code: Code::CHANGED,
            content_format: Some(format),
            max_age: None,
            size1: None,
            payload,
            audit: Some(self.line(
                AuditOutcome::Issued,
                Code::CHANGED,
                format!("issued certificate sha256:{fingerprint}"),
            )),
        }
    }

    /// The CA issued a certificate but it could not be packed: the client retries and gets a
    /// new one, so the log must name the orphan.
    fn undelivered(&self, fingerprint: &str, error: &str) -> EstResponse {
        let reason =
            format!("issued certificate sha256:{fingerprint} but could not encode it: {error}");
        self.refuse(Code::INTERNAL_SERVER_ERROR, &reason, false)
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks that `der` is exactly one DER SEQUENCE with a definite, minimally encoded length
/// and nothing after it: cheap framing that lets the handler refuse garbage (4.00) before the
/// Enroller parses anything.
fn check_der_sequence(der: &[u8]) -> Result<(), &'static str> {
    let [tag, first, rest @ ..] = der else {
        return Err("too short");
    };
    if *tag != 0x30 {
        return Err("does not start with a SEQUENCE tag");
    }
    let (len, body) = match *first {
        short @ 0..=0x7f => (usize::from(short), rest),
        0x80 => return Err("indefinite length (BER, not DER)"),
        long => {
            let n = usize::from(long & 0x7f);
            // Four length octets already allow 4 GiB, far beyond any CSR.
            if n > 4 {
                return Err("length field too long");
            }
            let Some((len_bytes, body)) = rest.split_at_checked(n) else {
                return Err("truncated length");
            };
            if len_bytes.first() == Some(&0) {
                return Err("length not minimally encoded");
            }
            let len = len_bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            if len < 0x80 {
                return Err("length not minimally encoded");
            }
            (len, body)
        }
    };
    match body.len().cmp(&len) {
        std::cmp::Ordering::Less => Err("truncated"),
        std::cmp::Ordering::Greater => Err("trailing bytes after the SEQUENCE"),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::check_der_sequence;

    #[test]
    fn der_framing() {
        assert_eq!(check_der_sequence(&[0x30, 0x00]), Ok(()));
        assert_eq!(check_der_sequence(&[0x30, 0x01, 0x05]), Ok(()));
        assert!(check_der_sequence(&[]).is_err());
        assert!(check_der_sequence(&[0x30]).is_err());
        assert!(check_der_sequence(&[0x31, 0x00]).is_err());
        assert!(check_der_sequence(&[0x30, 0x80, 0x00, 0x00]).is_err());
        assert!(check_der_sequence(&[0x30, 0x01]).is_err());
        assert!(check_der_sequence(&[0x30, 0x00, 0x00]).is_err());
        // 0x81 0x05 would fit the short form.
        assert!(check_der_sequence(&[0x30, 0x81, 0x01, 0x00]).is_err());
        assert!(check_der_sequence(&[0x30, 0x82, 0x00, 0x80]).is_err());
        let mut long = vec![0x30, 0x81, 0x80];
        long.extend([0u8; 0x80]);
        assert_eq!(check_der_sequence(&long), Ok(()));
        let mut long2 = vec![0x30, 0x82, 0x01, 0x00];
        long2.extend([0u8; 0x100]);
        assert_eq!(check_der_sequence(&long2), Ok(()));
        assert!(check_der_sequence(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_err());
    }
}
