//! What the host grants a plugin (WIT interface `steward:plugin/host`).
//!
//! Nothing else is linked: no files, no sockets, no environment. A component that imports
//! anything the host does not provide (for instance `wasi:sockets`, pulled in by
//! `std::net`) is refused at load.
//!
//! Every call runs on the event's clock: time spent in the host counts against the plugin's
//! CPU deadline.

use crate::__bindings::steward::plugin::host as imports;
use crate::{CertificateInfo, HostError, Level};

/// A line in the server's log at `level`, tagged with the plugin's name.
pub fn log(level: Level, message: &str) {
    imports::log(level, message);
}

/// A `trace` line in the server's log.
pub fn log_trace(message: &str) {
    log(Level::Trace, message);
}

/// A `debug` line in the server's log.
pub fn log_debug(message: &str) {
    log(Level::Debug, message);
}

/// An `info` line in the server's log.
pub fn log_info(message: &str) {
    log(Level::Info, message);
}

/// A `warn` line in the server's log.
pub fn log_warn(message: &str) {
    log(Level::Warn, message);
}

/// An `error` line in the server's log.
pub fn log_error(message: &str) {
    log(Level::Error, message);
}

/// Wall-clock time, milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    imports::now_ms()
}

/// `len` cryptographically secure random bytes; the host gives at most 1024 per call.
pub fn random_bytes(len: u32) -> Vec<u8> {
    imports::random_bytes(len)
}

/// The value at `key` in this plugin's key-value namespace, as committed before the event
/// began (the event's own `kv-put` effects are not visible: they are applied after `handle`).
pub fn kv_get(key: &str) -> Option<Vec<u8>> {
    imports::kv_get(key)
}

/// The keys of this plugin's namespace that start with `prefix`, sorted, at most `limit`
/// (the host caps it at 1000).
pub fn kv_list(prefix: &str, limit: u32) -> Vec<String> {
    imports::kv_list(prefix, limit)
}

/// Signs `payload` as a tagged COSE_Sign1 (ES256) with the plugin's key named `key`
/// (`<data-dir>/plugin-keys/<plugin-name>/<key>.pem`). The protected header carries alg and
/// kid = the key name. The key never leaves the host.
pub fn cose_sign(key: &str, payload: &[u8]) -> Result<Vec<u8>, HostError> {
    imports::cose_sign(key, payload)
}

/// Verifies a COSE_Sign1 (tagged or not, ES256) with the plugin's key named `key` (a public
/// or private key file) and returns its payload.
pub fn cose_verify(key: &str, message: &[u8]) -> Result<Vec<u8>, HostError> {
    imports::cose_verify(key, message)
}

/// Verifies a DER certificate chain (leaf first) against the server's CA and manufacturer
/// CAs, including revocation of the certificates the CA issued.
pub fn certificate_verify(chain: &[Vec<u8>]) -> Result<CertificateInfo, HostError> {
    imports::certificate_verify(chain)
}

/// Has the server's CA issue a certificate for a DER PKCS#10 request with one of its profiles
/// (`"device"` ...); returns the DER certificate. The request's signature is checked; the
/// issuance is recorded and audited under the plugin's name.
pub fn certificate_issue(csr: &[u8], profile: &str) -> Result<Vec<u8>, HostError> {
    imports::certificate_issue(csr, profile)
}
