//! Firmware Update (object 5, instance 0) on the simulated device: the state machine of Core
//! §E.6 (State /5/0/3, Update Result /5/0/5), push by Write to Package (/5/0/0) and pull by
//! Package URI (/5/0/1), Update (/5/0/2) and Cancel (/5/0/10, object 1.1+).
//!
//! ## Package format
//!
//! A simulated firmware image is a small header followed by the body:
//!
//! | bytes | content |
//! |---|---|
//! | 8 | magic `STWDFW1\0` |
//! | 1 | `n`, the length of the version string (1..=255) |
//! | n | the target firmware version, UTF-8 (becomes `/3/0/3` after Update) |
//! | 32 | SHA-256 of the body |
//! | rest | the body (opaque; the simulator only checks its hash) |
//!
//! [`package`] builds one, [`Package::parse`] checks one. A wrong magic or a malformed header
//! is Update Result 6 (unsupported package type), a body whose hash differs is 5 (integrity
//! check failure).
//!
//! ## Decisions
//!
//! - Errors of a download or an image are reported only through Update Result (the object's
//!   design): a Write of a bad package or a bad URI is answered 2.04 and the result changes.
//!   Writes that the state machine cannot take are refused as Anjay's client does: 4.05 in
//!   Updating, 4.00 for a new package or URI while one is downloading or downloaded (reset
//!   first with an empty value), 4.05 when the Delivery Method (/5/0/9) excludes the mode.
//! - Execute Update outside Downloaded is 4.05 Method Not Allowed: the resource "is only
//!   executable when State is Downloaded" (object 5 description) and 4.05 is the Transport
//!   code for an operation the target does not allow now (Anjay answers the same). Cancel
//!   outside Downloading/Downloaded is 4.05 too.
//! - Pull: only `coap://` is implemented (/5/0/8 = 0). A URI that does not parse, or has a
//!   scheme that is no download protocol at all, is 7 (invalid URI); a known protocol the
//!   device does not list in /5/0/8 (`coaps`, `http`, `https`, `coap+tcp`, `coaps+tcp`) is 9
//!   (unsupported protocol). A host the device cannot reach by address is 7, a 4.04 answer is
//!   7 (the URI names no package), no answer or any other error is 4 (connection lost) —
//!   the mapping Anjay's downloader uses.
//! - The device checks the image a short simulated while after it has all of it
//!   ([`FirmwareConfig::verify_delay`]), so Downloading is observable for pushed packages too
//!   (the CoAP stack reassembles Block1 before the device sees any of it).
//! - PkgName / PkgVersion describe the downloaded package, so they are set on Downloaded (a
//!   server may read them before it executes Update) and stay after the update. PkgName is
//!   the device model (`/3/0/1`), the package format has no name of its own.

use std::time::Duration;

use sha2::{Digest, Sha256};
use steward_coap::message::{Code, Response};
use steward_objects::{Node, Path, Resource, Value};

use crate::device::{Device, DmError, Effect};

/// The magic that starts every package.
pub const MAGIC: &[u8; 8] = b"STWDFW1\0";

const OBJECT: u16 = 5;
const PACKAGE: u16 = 0;
const PACKAGE_URI: u16 = 1;
const UPDATE: u16 = 2;
const STATE: u16 = 3;
const UPDATE_RESULT: u16 = 5;
const PKG_NAME: u16 = 6;
const PKG_VERSION: u16 = 7;
const PROTOCOL_SUPPORT: u16 = 8;
const DELIVERY_METHOD: u16 = 9;
const CANCEL: u16 = 10;
const AUTO_UPDATE: u16 = 14;

/// State (/5/0/3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Idle = 0,
    Downloading = 1,
    Downloaded = 2,
    Updating = 3,
}

/// Update Result (/5/0/5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateResult {
    Initial = 0,
    Success = 1,
    NotEnoughFlash = 2,
    OutOfRam = 3,
    ConnectionLost = 4,
    IntegrityFailure = 5,
    UnsupportedPackage = 6,
    InvalidUri = 7,
    UpdateFailed = 8,
    UnsupportedProtocol = 9,
    Cancelled = 10,
    Deferred = 11,
}

/// Firmware Update Delivery Method (/5/0/9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Pull = 0,
    Push = 1,
    Both = 2,
}

/// How the simulated firmware update behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirmwareConfig {
    /// /5/0/9: which of push and pull the device accepts.
    pub delivery: Delivery,
    /// From having the whole image to Downloaded (or the failure): writing flash, hashing.
    pub verify_delay: Duration,
    /// From Update executed to running the new firmware (Idle, result 1).
    pub install_delay: Duration,
}

impl Default for FirmwareConfig {
    fn default() -> FirmwareConfig {
        FirmwareConfig {
            delivery: Delivery::Both,
            verify_delay: Duration::from_millis(500),
            install_delay: Duration::from_secs(2),
        }
    }
}

/// What the device loop must do for the firmware object (carried by [`Effect::Firmware`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// An image arrived (pushed or fetched): check it after the verify delay.
    Verify,
    /// Fetch the package from this URI.
    Download(PackageUri),
    /// Install after the install delay.
    Install,
    /// Stop a download or verification in progress (reset or Cancel).
    Abort,
}

/// A parsed package; see the module docs for the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub version: String,
    pub body: Vec<u8>,
}

/// Why bytes are not an installable package.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackageError {
    #[error("not a Steward firmware package (bad magic)")]
    BadMagic,
    #[error("package header is truncated or malformed")]
    BadHeader,
    #[error("body does not match the SHA-256 in the header")]
    IntegrityFailure,
}

impl PackageError {
    pub fn update_result(&self) -> UpdateResult {
        match self {
            PackageError::BadMagic | PackageError::BadHeader => UpdateResult::UnsupportedPackage,
            PackageError::IntegrityFailure => UpdateResult::IntegrityFailure,
        }
    }
}

/// Builds a package for `version` around `body`. Versions longer than 255 bytes are cut at a
/// character boundary (the length is one byte).
pub fn package(version: &str, body: &[u8]) -> Vec<u8> {
    let mut end = version.len().min(255);
    while !version.is_char_boundary(end) {
        end -= 1;
    }
    let version = &version.as_bytes()[..end];
    let mut out = Vec::with_capacity(8 + 1 + version.len() + 32 + body.len());
    out.extend_from_slice(MAGIC);
    // `end` is at most 255 by construction.
    out.push(u8::try_from(version.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(version);
    out.extend_from_slice(&Sha256::digest(body));
    out.extend_from_slice(body);
    out
}

impl Package {
    pub fn parse(bytes: &[u8]) -> Result<Package, PackageError> {
        let rest = bytes.strip_prefix(MAGIC).ok_or(PackageError::BadMagic)?;
        let (&len, rest) = rest.split_first().ok_or(PackageError::BadHeader)?;
        let len = usize::from(len);
        if len == 0 || rest.len() < len + 32 {
            return Err(PackageError::BadHeader);
        }
        let (version, rest) = rest.split_at(len);
        let (hash, body) = rest.split_at(32);
        let version = std::str::from_utf8(version).map_err(|_| PackageError::BadHeader)?;
        if Sha256::digest(body).as_slice() != hash {
            return Err(PackageError::IntegrityFailure);
        }
        Ok(Package {
            version: version.to_owned(),
            body: body.to_vec(),
        })
    }
}

/// A `coap://host[:port]/path?query` Package URI, split into CoAP options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageUri {
    /// Host as written, without the brackets of an IPv6 literal.
    pub host: String,
    pub port: u16,
    /// Percent-decoded Uri-Path segments.
    pub path: Vec<String>,
    /// Percent-decoded Uri-Query items.
    pub query: Vec<String>,
}

/// Why a Package URI cannot be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error("invalid package URI: {0}")]
    Invalid(String),
    #[error("download protocol {0:?} is not supported")]
    UnsupportedProtocol(String),
}

impl UriError {
    pub fn update_result(&self) -> UpdateResult {
        match self {
            UriError::Invalid(_) => UpdateResult::InvalidUri,
            UriError::UnsupportedProtocol(_) => UpdateResult::UnsupportedProtocol,
        }
    }
}

/// The /5/0/8 number of a download scheme.
fn protocol_of(scheme: &str) -> Option<i64> {
    Some(match scheme {
        "coap" => 0,
        "coaps" => 1,
        "http" => 2,
        "https" => 3,
        "coap+tcp" => 4,
        "coaps+tcp" => 5,
        _ => return None,
    })
}

impl PackageUri {
    /// Parses `uri` for a device that supports the download protocols `supported` (/5/0/8).
    /// Only CoAP over UDP can actually be fetched here, whatever the list says.
    pub fn parse(uri: &str, supported: &[i64]) -> Result<PackageUri, UriError> {
        let invalid = |why: &str| UriError::Invalid(format!("{why}: {uri:?}"));
        if uri.len() > 255 {
            return Err(invalid("longer than 255 bytes"));
        }
        let (scheme, rest) = uri.split_once("://").ok_or_else(|| invalid("no scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        let protocol = protocol_of(&scheme).ok_or_else(|| invalid("unknown scheme"))?;
        if protocol != 0 || !supported.contains(&protocol) {
            return Err(UriError::UnsupportedProtocol(scheme));
        }
        if rest.contains('#') {
            return Err(invalid("a fragment has no meaning in CoAP"));
        }
        let (authority, path_query) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let (host, port) = split_authority(authority).ok_or_else(|| invalid("bad host"))?;
        let (path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
        let decode_all = |items: Vec<&str>| -> Result<Vec<String>, UriError> {
            items
                .into_iter()
                .map(|s| percent_decode(s).ok_or_else(|| invalid("bad percent-encoding")))
                .collect()
        };
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        // `coap://h/` and `coap://h` both mean the root: no Uri-Path (RFC 7252 §6.4).
        let segments = if segments == [""] { vec![] } else { segments };
        let queries: Vec<&str> = if query.is_empty() {
            vec![]
        } else {
            query.split('&').collect()
        };
        Ok(PackageUri {
            host,
            port,
            path: decode_all(segments)?,
            query: decode_all(queries)?,
        })
    }

    /// The GET that fetches the package.
    pub fn request(&self) -> steward_coap::message::Request {
        use steward_coap::message::{Method, Request, option};
        let mut request = Request::new(Method::Get);
        for s in &self.path {
            request = request.with_option(option::URI_PATH, s.as_bytes().to_vec());
        }
        for q in &self.query {
            request = request.with_option(option::URI_QUERY, q.as_bytes().to_vec());
        }
        request
    }
}

/// `host[:port]` or `[v6]:port`; the port defaults to 5683.
fn split_authority(authority: &str) -> Option<(String, u16)> {
    if authority.contains('@') {
        return None; // userinfo is not part of a CoAP URI (RFC 7252 §6.1)
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        None => 5683,
        Some(p) => p.parse().ok().filter(|p| *p != 0)?,
    };
    Some((host.to_owned(), port))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// For a device on real sockets: a host that is an IP literal, nothing else (no DNS here).
pub fn ip_resolver(host: &str, port: u16) -> Option<std::net::SocketAddr> {
    let ip: std::net::IpAddr = if host.eq_ignore_ascii_case("localhost") {
        std::net::Ipv4Addr::LOCALHOST.into()
    } else {
        host.parse().ok()?
    };
    Some(std::net::SocketAddr::new(ip, port))
}

/// The initial /5/0 resources (the device's models drop those its version lacks).
pub(crate) fn initial_resources(config: &FirmwareConfig, clock: i64) -> Vec<(u16, Resource)> {
    let single = |rid, v| (rid, Resource::Single(v));
    let text = |s: &str| Value::String(s.to_owned());
    vec![
        single(PACKAGE_URI, text("")),
        single(STATE, Value::Integer(State::Idle as i64)),
        single(UPDATE_RESULT, Value::Integer(UpdateResult::Initial as i64)),
        single(PKG_NAME, text("")),
        single(PKG_VERSION, text("")),
        (
            PROTOCOL_SUPPORT,
            Resource::Multiple([(0, Value::Integer(0))].into()),
        ),
        single(DELIVERY_METHOD, Value::Integer(config.delivery as i64)),
        single(11, Value::Integer(1)),
        single(12, Value::Time(clock)),
        single(13, Value::UnsignedInteger(0)),
        single(AUTO_UPDATE, Value::Boolean(false)),
    ]
}

/// What the firmware object holds beyond its resources: the image being handled.
#[derive(Debug, Clone, Default)]
pub(crate) struct Staging {
    /// The image as received, until verified.
    received: Option<Vec<u8>>,
    /// The verified package, from Downloaded to installed.
    package: Option<Package>,
}

fn int(device: &Device, rid: u16) -> i64 {
    match device.node(&Path::Resource(OBJECT, 0, rid)) {
        Some(Node::Resource(Resource::Single(Value::Integer(v)))) => v,
        Some(Node::Resource(Resource::Single(Value::UnsignedInteger(v)))) => {
            i64::try_from(v).unwrap_or(i64::MAX)
        }
        _ => 0,
    }
}

/// The current State.
pub fn state(device: &Device) -> State {
    match int(device, STATE) {
        1 => State::Downloading,
        2 => State::Downloaded,
        3 => State::Updating,
        _ => State::Idle,
    }
}

/// The current Update Result as its number (0..=11).
pub fn update_result(device: &Device) -> i64 {
    int(device, UPDATE_RESULT)
}

/// Sets State and Update Result through the device's set path, so observers are notified.
fn set_state(device: &mut Device, state: State, result: UpdateResult) {
    device.set(OBJECT, 0, STATE, Value::Integer(state as i64));
    device.set(OBJECT, 0, UPDATE_RESULT, Value::Integer(result as i64));
}

fn delivery(device: &Device) -> Delivery {
    match int(device, DELIVERY_METHOD) {
        0 => Delivery::Pull,
        1 => Delivery::Push,
        _ => Delivery::Both,
    }
}

/// Back to Idle with `result`, forgetting any image and stopping any download.
fn reset(device: &mut Device, result: UpdateResult) {
    *device.firmware_staging() = Staging::default();
    device.set(OBJECT, 0, PACKAGE_URI, Value::String(String::new()));
    set_state(device, State::Idle, result);
    device.push_effect(Effect::Firmware(Task::Abort));
}

/// A Write to /5/0/0 or /5/0/1 with its decoded value.
pub(crate) fn write(device: &mut Device, resource: u16, node: Node) -> Result<Response, DmError> {
    let path = Path::Resource(OBJECT, 0, resource);
    let value = match node {
        Node::Resource(Resource::Single(v)) => v,
        _ => return Err(DmError::BadRequest(format!("{path} takes a single value"))),
    };
    let state = state(device);
    if state == State::Updating {
        return Err(DmError::MethodNotAllowed {
            what: "Write while Updating",
            path: path.to_string(),
        });
    }
    match (resource, value) {
        (PACKAGE, Value::Opaque(bytes)) => {
            // An empty value or a single NUL resets the state machine (object 5 description).
            if bytes.is_empty() || bytes == [0] {
                reset(device, UpdateResult::Initial);
                return Ok(Response::new(Code::CHANGED));
            }
            if delivery(device) == Delivery::Pull {
                return Err(DmError::MethodNotAllowed {
                    what: "push delivery (pull only, /5/0/9)",
                    path: path.to_string(),
                });
            }
            if state != State::Idle {
                return Err(DmError::BadRequest(
                    "an image is already being handled; reset first".into(),
                ));
            }
            device.firmware_staging().received = Some(bytes);
            set_state(device, State::Downloading, UpdateResult::Initial);
            device.push_effect(Effect::Firmware(Task::Verify));
            Ok(Response::new(Code::CHANGED))
        }
        (PACKAGE_URI, Value::String(uri)) => {
            if uri.is_empty() {
                reset(device, UpdateResult::Initial);
                return Ok(Response::new(Code::CHANGED));
            }
            if delivery(device) == Delivery::Push {
                return Err(DmError::MethodNotAllowed {
                    what: "pull delivery (push only, /5/0/9)",
                    path: path.to_string(),
                });
            }
            if state != State::Idle {
                return Err(DmError::BadRequest(
                    "an image is already being handled; reset first".into(),
                ));
            }
            device.set(OBJECT, 0, PACKAGE_URI, Value::String(uri.clone()));
            match PackageUri::parse(&uri, &supported_protocols(device)) {
                Ok(parsed) => {
                    set_state(device, State::Downloading, UpdateResult::Initial);
                    device.push_effect(Effect::Firmware(Task::Download(parsed)));
                }
                // Reported through Update Result; the Write itself succeeded.
                Err(e) => set_state(device, State::Idle, e.update_result()),
            }
            Ok(Response::new(Code::CHANGED))
        }
        _ => Err(DmError::BadRequest(format!(
            "{path}: unexpected value type"
        ))),
    }
}

fn supported_protocols(device: &Device) -> Vec<i64> {
    match device.node(&Path::Resource(OBJECT, 0, PROTOCOL_SUPPORT)) {
        Some(Node::Resource(Resource::Multiple(values))) => values
            .values()
            .filter_map(|v| match v {
                Value::Integer(i) => Some(*i),
                _ => None,
            })
            .collect(),
        _ => vec![0],
    }
}

/// Execute of /5/0/2 (Update) or /5/0/10 (Cancel); other resources do nothing.
pub(crate) fn execute(device: &mut Device, resource: u16) -> Result<Response, DmError> {
    let state = state(device);
    let refuse = |what| DmError::MethodNotAllowed {
        what,
        path: Path::Resource(OBJECT, 0, resource).to_string(),
    };
    match resource {
        UPDATE if state == State::Downloaded => {
            set_state(device, State::Updating, UpdateResult::Initial);
            device.push_effect(Effect::Firmware(Task::Install));
        }
        UPDATE => return Err(refuse("Update outside state Downloaded")),
        CANCEL if matches!(state, State::Downloading | State::Downloaded) => {
            reset(device, UpdateResult::Cancelled);
        }
        CANCEL => return Err(refuse("Cancel outside Downloading/Downloaded")),
        _ => {}
    }
    Ok(Response::new(Code::CHANGED))
}

/// The fetched image (pull), or why it could not be fetched.
pub(crate) fn downloaded(device: &mut Device, outcome: Result<Vec<u8>, UpdateResult>) -> bool {
    if state(device) != State::Downloading {
        return false; // reset or cancelled meanwhile
    }
    match outcome {
        Ok(bytes) => {
            device.firmware_staging().received = Some(bytes);
            true
        }
        Err(result) => {
            *device.firmware_staging() = Staging::default();
            set_state(device, State::Idle, result);
            false
        }
    }
}

/// Checks the received image: Downloaded, or Idle with the failure. True when the device
/// should install right away (Automatic Upgrade at Download, /5/0/14).
pub(crate) fn verify(device: &mut Device) -> bool {
    let Some(bytes) = device.firmware_staging().received.take() else {
        return false;
    };
    if state(device) != State::Downloading {
        return false;
    }
    match Package::parse(&bytes) {
        Ok(package) => {
            let name = match device.node(&Path::Resource(3, 0, 1)) {
                Some(Node::Resource(Resource::Single(Value::String(s)))) => s,
                _ => "firmware".to_owned(),
            };
            device.set(OBJECT, 0, PKG_NAME, Value::String(name));
            device.set(
                OBJECT,
                0,
                PKG_VERSION,
                Value::String(package.version.clone()),
            );
            device.firmware_staging().package = Some(package);
            set_state(device, State::Downloaded, UpdateResult::Initial);
            let auto = matches!(
                device.node(&Path::Resource(OBJECT, 0, AUTO_UPDATE)),
                Some(Node::Resource(Resource::Single(Value::Boolean(true))))
            );
            if auto {
                set_state(device, State::Updating, UpdateResult::Initial);
            }
            auto
        }
        Err(e) => {
            set_state(device, State::Idle, e.update_result());
            false
        }
    }
}

/// Runs the new firmware: /3/0/3 becomes the package's version, Idle with result 1. Returns
/// the version, or `None` when nothing was being installed.
pub(crate) fn install(device: &mut Device) -> Option<String> {
    if state(device) != State::Updating {
        return None;
    }
    let Some(package) = device.firmware_staging().package.take() else {
        set_state(device, State::Idle, UpdateResult::UpdateFailed);
        return None;
    };
    device.set(3, 0, 3, Value::String(package.version.clone()));
    set_state(device, State::Idle, UpdateResult::Success);
    Some(package.version)
}

/// The device rebooted: a download in progress is lost (4), an installation that had not
/// finished failed (8). A Downloaded image stays, as it would in flash.
pub(crate) fn interrupted(device: &mut Device) {
    let result = match state(device) {
        State::Downloading => UpdateResult::ConnectionLost,
        State::Updating => UpdateResult::UpdateFailed,
        State::Idle | State::Downloaded => return,
    };
    *device.firmware_staging() = Staging::default();
    set_state(device, State::Idle, result);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_round_trip_and_errors() {
        let bytes = package("2.0.1", b"hello firmware");
        assert_eq!(
            Package::parse(&bytes),
            Ok(Package {
                version: "2.0.1".into(),
                body: b"hello firmware".to_vec()
            })
        );
        let mut corrupt = bytes.clone();
        if let Some(last) = corrupt.last_mut() {
            *last ^= 1;
        }
        assert_eq!(
            Package::parse(&corrupt),
            Err(PackageError::IntegrityFailure)
        );
        assert_eq!(Package::parse(b"ELF..."), Err(PackageError::BadMagic));
        assert_eq!(Package::parse(&bytes[..20]), Err(PackageError::BadHeader));
    }

    #[test]
    fn uris() {
        let ok = PackageUri::parse("coap://127.0.0.1:5683/fw/a%20b?x=1", &[0]);
        assert_eq!(
            ok,
            Ok(PackageUri {
                host: "127.0.0.1".into(),
                port: 5683,
                path: vec!["fw".into(), "a b".into()],
                query: vec!["x=1".into()],
            })
        );
        let v6 = PackageUri::parse("coap://[::1]/fw", &[0]);
        assert_eq!(v6.map(|u| (u.host, u.port)), Ok(("::1".into(), 5683)));
        for (uri, result) in [
            ("coaps://h/fw", UpdateResult::UnsupportedProtocol),
            ("http://h/fw", UpdateResult::UnsupportedProtocol),
            ("ftp://h/fw", UpdateResult::InvalidUri),
            ("not a uri", UpdateResult::InvalidUri),
            ("coap://:5683/fw", UpdateResult::InvalidUri),
            ("coap://h:99999/fw", UpdateResult::InvalidUri),
            ("coap://h/%zz", UpdateResult::InvalidUri),
        ] {
            let got = PackageUri::parse(uri, &[0]).map_err(|e| e.update_result());
            assert_eq!(got, Err(result), "{uri}");
        }
    }
}
