//! The configuration of `steward serve`.
//!
//! Four layers, each overriding the one before: built-in defaults (DESIGN.md, "Ports and
//! defaults"), a TOML file (`--config PATH` or `STEWARD_CONFIG`), `STEWARD_*` environment
//! variables, and command-line flags. Every layer is parsed into the same [`Settings`] (all
//! fields optional) and [`Config::resolve`] folds them; a bad value is reported with where it
//! came from (file and line, variable, or flag).
//!
//! | setting | TOML | environment | flag | default |
//! |---|---|---|---|---|
//! | bind address | `bind` | `STEWARD_BIND` | `--bind` | `127.0.0.1` |
//! | data directory | `data_dir` | `STEWARD_DATA_DIR` | `--data-dir` | `./steward-data` |
//! | CoAP port | `[lwm2m] coap_port` | `STEWARD_COAP_PORT` | `--coap-port` | 5683 |
//! | CoAPs (DTLS) port | `[lwm2m] coaps_port` | `STEWARD_COAPS_PORT` | `--coaps-port` | 5684 |
//! | Bootstrap CoAP port | `[bootstrap] coap_port` | `STEWARD_BS_COAP_PORT` | `--bs-coap-port` | 5783 |
//! | Bootstrap + EST CoAPs port | `[bootstrap] coaps_port` | `STEWARD_BS_COAPS_PORT` | `--bs-coaps-port` | 5784 |
//! | HTTP port (OCSP, CRL) | `[http] port` | `STEWARD_HTTP_PORT` | `--http-port` | 8080 |
//! | HTTP API bearer token | `[http] token` | `STEWARD_HTTP_TOKEN` | `--http-token` | none |
//! | accept NoSec registrations | `[lwm2m] allow_unsecured` | `STEWARD_ALLOW_UNSECURED` | `--allow-unsecured[=BOOL]` | false |
//! | lifetime when `lt` is absent (s) | `[lwm2m] default_lifetime` | `STEWARD_DEFAULT_LIFETIME` | `--default-lifetime` | 86400 |
//! | grace before expiry (s) | `[lwm2m] expiry_grace` | `STEWARD_EXPIRY_GRACE` | `--expiry-grace` | 93 |
//! | trusted device CAs (PEM files) | `[dtls] device_cas` | `STEWARD_DEVICE_CAS` (comma-separated) | `--device-ca` (repeatable) | none |
//! | server certificate chain (PEM) | `[dtls] certificate` | `STEWARD_DTLS_CERT` | `--dtls-cert` | generated |
//! | server private key (PEM, P-256) | `[dtls] private_key` | `STEWARD_DTLS_KEY` | `--dtls-key` | generated |
//! | plugin directory | `[plugins] dir` | `STEWARD_PLUGINS_DIR` | `--plugins-dir` | `<data_dir>/plugins` |
//!
//! The CA (`steward ca init`) is configured in the file only, under `[pki]`:
//!
//! ```toml
//! [pki]
//! crl_validity = 86400          # seconds between thisUpdate and nextUpdate of the CRL
//! ocsp_url = "http://pki.example:8080/ocsp"   # AIA in issued certificates
//! crl_url = "http://pki.example:8080/crl"     # CRL distribution point
//! factory_reenrolment = false   # a factory certificate enrols once (seed 003)
//! server_keygen = false         # EST /skg and /skc
//! [[pki.profiles]]              # replaces the built-in profile of the same name
//! name = "device"
//! lifetime_days = 90
//! extended_key_usage = ["client_auth"]
//! ```
//!
//! Plugins are configured in the file under `[plugins]`; only the directory has a flag
//! (`--plugins-dir`, `STEWARD_PLUGINS_DIR`):
//!
//! ```toml
//! [plugins]
//! dir = "/var/lib/steward/plugins"   # default: <data_dir>/plugins
//! require_signed = false             # refuse components without a trusted signed manifest
//! deadline_ms = 100                  # CPU per event, host calls included
//! memory_mib = 64                    # linear memory per instance
//! max_failures = 3                   # failures in a row before a quarantine
//! quarantine_max = 300               # seconds; quarantines start at 1 s and double
//! ```
//!
//! Certificate mode (X.509 devices) is on when at least one device CA is configured; a layer
//! that names CAs replaces the list of the layers below (lists are not merged). The server's
//! certificate and key go together; without them a self-signed certificate is generated into
//! the data directory on first start (see `tls`). A server certificate without device CAs is
//! refused as a configuration error: nothing could use it.
//!
//! The HTTP API trusts loopback: bound to `127.0.0.1` or `::1` it needs no token. Bound to any
//! other address it requires `Authorization: Bearer <token>` on every request, and the server
//! refuses to start without a token configured (issue: "bound to loopback by default; when bound
//! to any other address it requires a bearer token"). A configured token is required on
//! loopback too. The token is printable ASCII without spaces (RFC 6750 `b64token` and more)
//! and never appears in `Debug` or `Display` output ([`HttpToken`]); prefer the environment or
//! the file to the flag, which other local users can read in the process list.
//!
//! Port 0 asks the system for a free port (tests). `allow_unsecured` is off by default:
//! Transport §5.3 allows NoSec only with lower-layer security, which the server cannot see;
//! switch it on for a lab or loopback setup. The expiry grace is MAX_TRANSMIT_WAIT (93 s): an
//! Update sent just in time but retransmitted must not lose the race against expiry.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const DEFAULT_COAP_PORT: u16 = 5683;
pub const DEFAULT_COAPS_PORT: u16 = 5684;
pub const DEFAULT_BS_COAP_PORT: u16 = 5783;
pub const DEFAULT_BS_COAPS_PORT: u16 = 5784;
pub const DEFAULT_HTTP_PORT: u16 = 8080;
pub const DEFAULT_DATA_DIR: &str = "./steward-data";
pub const DEFAULT_EXPIRY_GRACE_SECS: u64 = 93;
/// The longest grace accepted: beyond a day it is a typo, not a policy.
const MAX_EXPIRY_GRACE_SECS: u64 = 86_400;

/// The resolved configuration of `steward serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub bind: IpAddr,
    pub coap_port: u16,
    pub coaps_port: u16,
    /// The Bootstrap-Server's ports (EST-coaps shares the CoAPs one).
    pub bs_coap_port: u16,
    pub bs_coaps_port: u16,
    /// HTTP: the OCSP responder and the CRL.
    pub http_port: u16,
    /// The bearer token of the HTTP API (required when `bind` is not loopback).
    pub http_token: Option<HttpToken>,
    pub data_dir: PathBuf,
    pub allow_unsecured: bool,
    pub default_lifetime: u32,
    pub expiry_grace_secs: u64,
    /// PEM files of the CAs whose device certificates are accepted (certificate mode).
    pub device_cas: Vec<PathBuf>,
    /// The server's certificate chain and key (PEM); `None`: generated in the data directory.
    pub dtls_certificate: Option<DtlsCertificatePaths>,
    /// The CA's settings (profiles, CRL, OCSP), used when the data directory has a CA.
    pub pki: PkiConfig,
    /// The plugin host's settings.
    pub plugins: PluginsConfig,
}

/// The `[plugins]` table: where plugins are and how they are limited.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// The plugin directory; `<data_dir>/plugins` when absent.
    pub dir: Option<PathBuf>,
    /// Refuse components without a manifest signed by a signer in `<dir>/signers/`.
    #[serde(default)]
    pub require_signed: bool,
    /// CPU deadline of one event, milliseconds (default 100).
    pub deadline_ms: Option<u64>,
    /// Memory a plugin may grow to, MiB (default 64).
    pub memory_mib: Option<usize>,
    /// Failures in a row before a quarantine (default 3).
    pub max_failures: Option<u32>,
    /// Longest quarantine, seconds (default 300; the first is 1 s, doubling).
    pub quarantine_max: Option<u64>,
    /// A deterministic instruction budget per event (tests; off by default).
    pub fuel: Option<u64>,
}

impl PluginsConfig {
    /// The plugin host's settings for `data_dir`.
    pub fn host_config(&self, data_dir: &Path) -> crate::plugins::host::HostConfig {
        let mut c = crate::plugins::host::HostConfig::in_data_dir(data_dir);
        if let Some(dir) = &self.dir {
            c.dir.clone_from(dir);
        }
        c.require_signed = self.require_signed;
        if let Some(ms) = self.deadline_ms {
            c.limits.deadline = std::time::Duration::from_millis(ms);
        }
        if let Some(mib) = self.memory_mib {
            c.limits.memory_bytes = mib.saturating_mul(1 << 20);
        }
        c.limits.fuel = self.fuel;
        if let Some(n) = self.max_failures {
            c.max_failures = n;
        }
        if let Some(secs) = self.quarantine_max {
            c.quarantine_max = std::time::Duration::from_secs(secs);
        }
        c
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.deadline_ms == Some(0) || self.memory_mib == Some(0) || self.max_failures == Some(0)
        {
            return Err(ConfigError::Invalid(
                "[plugins] deadline_ms, memory_mib and max_failures must be positive".into(),
            ));
        }
        if self.memory_mib.is_some_and(|m| m > 4096) {
            return Err(ConfigError::Invalid(
                "[plugins] memory_mib is at most 4096".into(),
            ));
        }
        Ok(())
    }
}

/// The `[pki]` table: how the CA issues and publishes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PkiConfig {
    /// Profiles replacing the built-in `device`, `server` and `validation`, or added to them.
    #[serde(default)]
    pub profiles: Vec<steward_pki::profile::Profile>,
    /// Seconds from a CRL's thisUpdate to its nextUpdate.
    pub crl_validity: Option<u64>,
    pub ocsp_url: Option<String>,
    pub crl_url: Option<String>,
    #[serde(default)]
    pub factory_reenrolment: bool,
    #[serde(default)]
    pub server_keygen: bool,
}

impl PkiConfig {
    /// The CA service's settings; fails on an invalid profile.
    pub fn settings(&self) -> Result<crate::pki::PkiSettings, ConfigError> {
        let defaults = crate::pki::PkiSettings::default();
        let profiles = steward_pki::profile::Profiles::with_overrides(self.profiles.clone())
            .map_err(|e| ConfigError::Invalid(format!("[pki] profiles: {e}")))?;
        Ok(crate::pki::PkiSettings {
            profiles,
            crl_validity: self
                .crl_validity
                .map_or(defaults.crl_validity, std::time::Duration::from_secs),
            ocsp_url: self.ocsp_url.clone(),
            crl_url: self.crl_url.clone(),
            factory_reenrolment: self.factory_reenrolment,
            server_keygen: self.server_keygen,
            ..defaults
        })
    }
}

/// Where the server's DTLS certificate chain and private key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtlsCertificatePaths {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            coap_port: DEFAULT_COAP_PORT,
            coaps_port: DEFAULT_COAPS_PORT,
            bs_coap_port: DEFAULT_BS_COAP_PORT,
            bs_coaps_port: DEFAULT_BS_COAPS_PORT,
            http_port: DEFAULT_HTTP_PORT,
            http_token: None,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            allow_unsecured: false,
            default_lifetime: crate::lwm2m::server::DEFAULT_LIFETIME,
            expiry_grace_secs: DEFAULT_EXPIRY_GRACE_SECS,
            device_cas: Vec::new(),
            dtls_certificate: None,
            pki: PkiConfig::default(),
            plugins: PluginsConfig::default(),
        }
    }
}

/// The HTTP API's bearer token. Its `Debug` and `Display` never show the value (configs and
/// flags are logged); [`HttpToken::expose`] is for the one place that compares it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct HttpToken(String);

impl HttpToken {
    pub fn new(token: impl Into<String>) -> HttpToken {
        HttpToken(token.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Usable in `Authorization: Bearer <token>`: non-empty visible ASCII, no spaces.
    fn is_well_formed(&self) -> bool {
        !self.0.is_empty() && self.0.bytes().all(|b| b.is_ascii_graphic())
    }
}

impl fmt::Debug for HttpToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HttpToken(<redacted>)")
    }
}

impl fmt::Display for HttpToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// For clap (`--http-token`); the form is checked with the other layers in `validate`.
impl std::str::FromStr for HttpToken {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<HttpToken, Self::Err> {
        Ok(HttpToken(s.to_owned()))
    }
}

/// One layer of settings; `None` leaves the value of the layers below.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub bind: Option<IpAddr>,
    pub coap_port: Option<u16>,
    pub coaps_port: Option<u16>,
    pub bs_coap_port: Option<u16>,
    pub bs_coaps_port: Option<u16>,
    pub http_port: Option<u16>,
    pub http_token: Option<HttpToken>,
    pub data_dir: Option<PathBuf>,
    pub allow_unsecured: Option<bool>,
    pub default_lifetime: Option<u32>,
    pub expiry_grace_secs: Option<u64>,
    pub device_cas: Option<Vec<PathBuf>>,
    pub dtls_cert: Option<PathBuf>,
    pub dtls_key: Option<PathBuf>,
    /// Only from the file (see the module docs).
    pub pki: Option<PkiConfig>,
    /// Only from the file, except the directory (`--plugins-dir`).
    pub plugins: Option<PluginsConfig>,
}

/// The flags of `steward serve`, as clap parses them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file (default: $STEWARD_CONFIG, else none).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1].
    #[arg(long, value_name = "IP")]
    pub bind: Option<IpAddr>,
    /// CoAP (UDP) port; 0 picks a free one [default: 5683].
    #[arg(long, value_name = "PORT")]
    pub coap_port: Option<u16>,
    /// CoAPs (DTLS) port; 0 picks a free one [default: 5684].
    #[arg(long, value_name = "PORT")]
    pub coaps_port: Option<u16>,
    /// Bootstrap-Server CoAP (UDP) port; 0 picks a free one [default: 5783].
    #[arg(long, value_name = "PORT")]
    pub bs_coap_port: Option<u16>,
    /// Bootstrap-Server and EST-coaps CoAPs port; 0 picks a free one [default: 5784].
    #[arg(long, value_name = "PORT")]
    pub bs_coaps_port: Option<u16>,
    /// HTTP port of the OCSP responder and the CRL; 0 picks a free one [default: 8080].
    #[arg(long, value_name = "PORT")]
    pub http_port: Option<u16>,
    /// Bearer token required by the HTTP API; mandatory when --bind is not loopback
    /// [default: none]. Prefer STEWARD_HTTP_TOKEN: flags show in the process list.
    #[arg(long, value_name = "TOKEN")]
    pub http_token: Option<HttpToken>,
    /// Data directory (the sled database) [default: ./steward-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Accept registrations over plain CoAP (NoSec) [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub allow_unsecured: Option<bool>,
    /// Lifetime in seconds for a Register without `lt` [default: 86400].
    #[arg(long, value_name = "SECONDS")]
    pub default_lifetime: Option<u32>,
    /// Seconds added to every lifetime before a registration expires [default: 93].
    #[arg(long, value_name = "SECONDS")]
    pub expiry_grace: Option<u64>,
    /// PEM file of a CA whose device certificates are accepted; repeat for several
    /// [default: none, no certificate mode].
    #[arg(long = "device-ca", value_name = "PEM")]
    pub device_cas: Vec<PathBuf>,
    /// The server's DTLS certificate chain, PEM [default: generated in the data directory].
    #[arg(long, value_name = "PEM")]
    pub dtls_cert: Option<PathBuf>,
    /// The server's DTLS private key, PEM PKCS#8 P-256 [default: generated].
    #[arg(long, value_name = "PEM")]
    pub dtls_key: Option<PathBuf>,
    /// Directory of plugin components (`*.wasm`) [default: <data-dir>/plugins].
    #[arg(long, value_name = "DIR")]
    pub plugins_dir: Option<PathBuf>,
}

impl ServeArgs {
    pub fn settings(&self) -> Settings {
        Settings {
            bind: self.bind,
            coap_port: self.coap_port,
            coaps_port: self.coaps_port,
            bs_coap_port: self.bs_coap_port,
            bs_coaps_port: self.bs_coaps_port,
            http_port: self.http_port,
            http_token: self.http_token.clone(),
            data_dir: self.data_dir.clone(),
            allow_unsecured: self.allow_unsecured,
            default_lifetime: self.default_lifetime,
            expiry_grace_secs: self.expiry_grace,
            device_cas: (!self.device_cas.is_empty()).then(|| self.device_cas.clone()),
            dtls_cert: self.dtls_cert.clone(),
            dtls_key: self.dtls_key.clone(),
            pki: None,
            plugins: self.plugins_dir.clone().map(|dir| PluginsConfig {
                dir: Some(dir),
                ..PluginsConfig::default()
            }),
        }
    }
}

/// Why a configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {}: {message}", path.display())]
    ParseFile { path: PathBuf, message: String },
    #[error("environment variable {var}={value:?}: expected {expected}")]
    Env {
        var: String,
        value: String,
        expected: &'static str,
    },
    #[error("environment variable {var} is not valid UTF-8")]
    EnvNotUtf8 { var: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The TOML file: top-level settings and the `[lwm2m]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    bind: Option<IpAddr>,
    data_dir: Option<PathBuf>,
    lwm2m: Option<FileLwm2m>,
    dtls: Option<FileDtls>,
    bootstrap: Option<FilePorts>,
    http: Option<FileHttp>,
    pki: Option<PkiConfig>,
    plugins: Option<PluginsConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePorts {
    coap_port: Option<u16>,
    coaps_port: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHttp {
    port: Option<u16>,
    token: Option<HttpToken>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDtls {
    device_cas: Option<Vec<PathBuf>>,
    certificate: Option<PathBuf>,
    private_key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLwm2m {
    coap_port: Option<u16>,
    coaps_port: Option<u16>,
    allow_unsecured: Option<bool>,
    default_lifetime: Option<u32>,
    expiry_grace: Option<u64>,
}

impl Settings {
    /// Parses the text of a TOML config file; `path` is only for messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Settings, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError::ParseFile {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let lwm2m = file.lwm2m.unwrap_or_default();
        let dtls = file.dtls.unwrap_or_default();
        let bootstrap = file.bootstrap.unwrap_or_default();
        let http = file.http.unwrap_or_default();
        Ok(Settings {
            bind: file.bind,
            coap_port: lwm2m.coap_port,
            coaps_port: lwm2m.coaps_port,
            bs_coap_port: bootstrap.coap_port,
            bs_coaps_port: bootstrap.coaps_port,
            http_port: http.port,
            http_token: http.token,
            data_dir: file.data_dir,
            allow_unsecured: lwm2m.allow_unsecured,
            default_lifetime: lwm2m.default_lifetime,
            expiry_grace_secs: lwm2m.expiry_grace,
            device_cas: dtls.device_cas,
            dtls_cert: dtls.certificate,
            dtls_key: dtls.private_key,
            pki: file.pki,
            plugins: file.plugins,
        })
    }

    /// Reads and parses a TOML config file.
    pub fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        Settings::from_toml(&text, path)
    }

    /// Reads the `STEWARD_*` variables among `vars`. Variables of other programs are ignored;
    /// an unknown `STEWARD_` name is returned in the second list so the caller can warn about
    /// it (a typo should not pass silently, nor stop the server).
    pub fn from_env<I>(vars: I) -> Result<(Settings, Vec<String>), ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut s = Settings::default();
        let mut unknown = Vec::new();
        for (var, value) in vars {
            let Some(name) = var.strip_prefix("STEWARD_") else {
                continue;
            };
            let v = value.trim();
            match name {
                "BIND" => s.bind = Some(parse_env(&var, v, "an IP address")?),
                "COAP_PORT" => s.coap_port = Some(parse_env(&var, v, "a port (0-65535)")?),
                "COAPS_PORT" => s.coaps_port = Some(parse_env(&var, v, "a port (0-65535)")?),
                "BS_COAP_PORT" => s.bs_coap_port = Some(parse_env(&var, v, "a port (0-65535)")?),
                "BS_COAPS_PORT" => {
                    s.bs_coaps_port = Some(parse_env(&var, v, "a port (0-65535)")?);
                }
                "HTTP_PORT" => s.http_port = Some(parse_env(&var, v, "a port (0-65535)")?),
                // Checked in `validate` (the value must not be echoed in an `Env` error).
                "HTTP_TOKEN" => s.http_token = Some(HttpToken(v.to_owned())),
                "DATA_DIR" => {
                    s.data_dir = Some(PathBuf::from(v));
                }
                "ALLOW_UNSECURED" => s.allow_unsecured = Some(parse_bool(&var, v)?),
                "DEFAULT_LIFETIME" => {
                    s.default_lifetime = Some(parse_env(&var, v, "seconds (0-4294967295)")?);
                }
                "EXPIRY_GRACE" => s.expiry_grace_secs = Some(parse_env(&var, v, "seconds")?),
                "DEVICE_CAS" => {
                    s.device_cas = Some(
                        v.split(',')
                            .map(str::trim)
                            .filter(|p| !p.is_empty())
                            .map(PathBuf::from)
                            .collect(),
                    );
                }
                "DTLS_CERT" => s.dtls_cert = Some(PathBuf::from(v)),
                "DTLS_KEY" => s.dtls_key = Some(PathBuf::from(v)),
                "PLUGINS_DIR" => {
                    s.plugins = Some(PluginsConfig {
                        dir: Some(PathBuf::from(v)),
                        ..PluginsConfig::default()
                    })
                }
                // The config file path, read by `Config::load`; RUST_LOG is not ours.
                "CONFIG" => {}
                _ => unknown.push(var.clone()),
            }
        }
        Ok((s, unknown))
    }
}

fn parse_env<T: std::str::FromStr>(
    var: &str,
    value: &str,
    expected: &'static str,
) -> Result<T, ConfigError> {
    value.parse().map_err(|_| ConfigError::Env {
        var: var.to_owned(),
        value: value.to_owned(),
        expected,
    })
}

fn parse_bool(var: &str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::Env {
            var: var.to_owned(),
            value: value.to_owned(),
            expected: "a boolean (true/false, 1/0, yes/no, on/off)",
        }),
    }
}

impl Config {
    /// Folds the layers over the defaults, lowest first: file, environment, flags.
    pub fn resolve(layers: &[Settings]) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        let mut cert: Option<PathBuf> = None;
        let mut key: Option<PathBuf> = None;
        for l in layers {
            c.bind = l.bind.unwrap_or(c.bind);
            c.coap_port = l.coap_port.unwrap_or(c.coap_port);
            c.coaps_port = l.coaps_port.unwrap_or(c.coaps_port);
            c.bs_coap_port = l.bs_coap_port.unwrap_or(c.bs_coap_port);
            c.bs_coaps_port = l.bs_coaps_port.unwrap_or(c.bs_coaps_port);
            c.http_port = l.http_port.unwrap_or(c.http_port);
            if l.http_token.is_some() {
                c.http_token.clone_from(&l.http_token);
            }
            if let Some(d) = &l.data_dir {
                c.data_dir.clone_from(d);
            }
            c.allow_unsecured = l.allow_unsecured.unwrap_or(c.allow_unsecured);
            c.default_lifetime = l.default_lifetime.unwrap_or(c.default_lifetime);
            c.expiry_grace_secs = l.expiry_grace_secs.unwrap_or(c.expiry_grace_secs);
            if let Some(cas) = &l.device_cas {
                c.device_cas.clone_from(cas);
            }
            if let Some(pki) = &l.pki {
                c.pki.clone_from(pki);
            }
            if let Some(plugins) = &l.plugins {
                // The flag layer names only the directory; keep the file's limits.
                if plugins
                    == &(PluginsConfig {
                        dir: plugins.dir.clone(),
                        ..PluginsConfig::default()
                    })
                {
                    c.plugins.dir.clone_from(&plugins.dir);
                } else {
                    c.plugins.clone_from(plugins);
                }
            }
            if l.dtls_cert.is_some() {
                cert.clone_from(&l.dtls_cert);
            }
            if l.dtls_key.is_some() {
                key.clone_from(&l.dtls_key);
            }
        }
        c.dtls_certificate = match (cert, key) {
            (None, None) => None,
            (Some(certificate), Some(private_key)) => Some(DtlsCertificatePaths {
                certificate,
                private_key,
            }),
            (Some(_), None) => {
                return Err(ConfigError::Invalid(
                    "dtls certificate given without its private key".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::Invalid(
                    "dtls private key given without its certificate".into(),
                ));
            }
        };
        c.validate()?;
        Ok(c)
    }

    /// Everything `steward serve` reads: the flags, the environment (`vars`, e.g.
    /// `std::env::vars()`), and the config file named by `--config` or `STEWARD_CONFIG`.
    /// Returns the configuration and the unknown `STEWARD_*` variables.
    pub fn load<I>(args: &ServeArgs, vars: I) -> Result<(Config, Vec<String>), ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let (env, unknown) = Settings::from_env(vars.iter().cloned())?;
        let path = args.config.clone().or_else(|| {
            vars.iter()
                .find(|(k, _)| k == "STEWARD_CONFIG")
                .map(|(_, v)| PathBuf::from(v.trim()))
                .filter(|p| !p.as_os_str().is_empty())
        });
        let file = match &path {
            Some(p) => Settings::from_file(p)?,
            None => Settings::default(),
        };
        let config = Config::resolve(&[file, env, args.settings()])?;
        Ok((config, unknown))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::Invalid("data_dir is empty".into()));
        }
        // UDP ports must differ (HTTP is TCP and may share a number).
        let udp = [
            ("coap_port", self.coap_port),
            ("coaps_port", self.coaps_port),
            ("bootstrap coap_port", self.bs_coap_port),
            ("bootstrap coaps_port", self.bs_coaps_port),
        ];
        for (i, (a, pa)) in udp.iter().enumerate() {
            if let Some((b, _)) = udp[i + 1..].iter().find(|(_, pb)| *pa != 0 && pa == pb) {
                return Err(ConfigError::Invalid(format!("{a} and {b} are both {pa}")));
            }
        }
        if self.dtls_certificate.is_some() && self.device_cas.is_empty() {
            return Err(ConfigError::Invalid(
                "a dtls certificate is configured but no device CA: certificate mode needs \
                 device_cas"
                    .into(),
            ));
        }
        if self.device_cas.iter().any(|p| p.as_os_str().is_empty()) {
            return Err(ConfigError::Invalid("an empty device CA path".into()));
        }
        self.pki.settings()?;
        self.plugins.validate()?;
        match &self.http_token {
            Some(token) if !token.is_well_formed() => {
                return Err(ConfigError::Invalid(
                    "http token must be non-empty printable ASCII without spaces".into(),
                ));
            }
            None if !self.bind.to_canonical().is_loopback() => {
                return Err(ConfigError::Invalid(format!(
                    "bind {} is not loopback: the HTTP API then requires a bearer token; set \
                     [http] token, STEWARD_HTTP_TOKEN or --http-token",
                    self.bind
                )));
            }
            _ => {}
        }
        if self.expiry_grace_secs > MAX_EXPIRY_GRACE_SECS {
            return Err(ConfigError::Invalid(format!(
                "expiry_grace {} s is longer than a day",
                self.expiry_grace_secs
            )));
        }
        Ok(())
    }

    pub fn coap_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.coap_port)
    }

    pub fn coaps_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.coaps_port)
    }

    pub fn bs_coap_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.bs_coap_port)
    }

    pub fn bs_coaps_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.bs_coaps_port)
    }

    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.http_port)
    }

    /// Every listener on a free port chosen by the system (tests, the demo).
    pub fn ephemeral(data_dir: PathBuf) -> Config {
        Config {
            coap_port: 0,
            coaps_port: 0,
            bs_coap_port: 0,
            bs_coaps_port: 0,
            http_port: 0,
            data_dir,
            ..Config::default()
        }
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "coap {} coaps {} bootstrap coap {} coaps {} http {} data {} allow_unsecured {} \
             default_lifetime {} s expiry_grace {} s device_cas {} dtls_certificate {} \
             http_token {}",
            self.coap_addr(),
            self.coaps_addr(),
            self.bs_coap_addr(),
            self.bs_coaps_addr(),
            self.http_addr(),
            self.data_dir.display(),
            self.allow_unsecured,
            self.default_lifetime,
            self.expiry_grace_secs,
            self.device_cas.len(),
            self.dtls_certificate.as_ref().map_or_else(
                || "generated".to_owned(),
                |p| p.certificate.display().to_string()
            ),
            if self.http_token.is_some() {
                "set"
            } else {
                "none"
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn args(flags: &[&str]) -> ServeArgs {
        let argv = std::iter::once("steward").chain(flags.iter().copied());
        Cli::try_parse_from(argv)
            .unwrap_or_else(|e| panic!("{e}"))
            .serve
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn file(text: &str) -> Settings {
        Settings::from_toml(text, Path::new("test.toml")).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn defaults_follow_the_design() {
        let (c, unknown) = Config::load(&args(&[]), env(&[])).unwrap_or_else(|e| panic!("{e}"));
        assert!(unknown.is_empty());
        assert_eq!(c, Config::default());
        assert_eq!(c.coap_addr().to_string(), "127.0.0.1:5683");
        assert_eq!(c.coaps_addr().to_string(), "127.0.0.1:5684");
        assert_eq!(c.data_dir, PathBuf::from("./steward-data"));
        assert!(!c.allow_unsecured);
        assert_eq!(c.default_lifetime, 86_400);
    }

    #[test]
    fn pki_profiles_and_ports_come_from_the_file() {
        let f = file(
            r#"
            [bootstrap]
            coap_port = 6783
            coaps_port = 6784
            [http]
            port = 9090
            [pki]
            crl_validity = 3600
            factory_reenrolment = true
            [[pki.profiles]]
            name = "validation"
            lifetime_days = 20
            extended_key_usage = ["ocsp_signing"]
            "#,
        );
        let c = Config::resolve(&[f]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.bs_coap_addr().port(), 6783);
        assert_eq!(c.bs_coaps_addr().port(), 6784);
        assert_eq!(c.http_addr().port(), 9090);
        let settings = c.pki.settings().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(settings.crl_validity, std::time::Duration::from_secs(3600));
        assert!(settings.factory_reenrolment);
        let validation = settings.profiles.get("validation").map(|p| p.lifetime_days);
        assert_eq!(
            validation,
            Some(20),
            "seed 003: 20-30 days for validation credentials"
        );
        // The other built-ins stay.
        assert!(settings.profiles.get("device").is_some());

        let bad = file(
            r#"
            [[pki.profiles]]
            name = "device"
            lifetime_days = 0
            extended_key_usage = []
            "#,
        );
        let err = Config::resolve(&[bad]).err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("[pki] profiles")),
            "{err:?}"
        );
        let clash = file("[bootstrap]\ncoaps_port = 5684\n");
        let err = Config::resolve(&[clash]).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("invalid configuration: coaps_port and bootstrap coaps_port are both 5684")
        );
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let f = file(
            r#"
            bind = "0.0.0.0"
            data_dir = "/from/file"
            [http]
            token = "t0ken"
            [lwm2m]
            coap_port = 1001
            coaps_port = 1002
            allow_unsecured = true
            default_lifetime = 100
            "#,
        );
        let (e, unknown) = Settings::from_env(env(&[
            ("STEWARD_COAP_PORT", "2001"),
            ("STEWARD_DATA_DIR", "/from/env"),
            ("STEWARD_ALLOW_UNSECURED", "no"),
            ("HOME", "/root"),
        ]))
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(unknown.is_empty());
        let a = args(&["--coap-port", "3001", "--expiry-grace", "5"]).settings();

        let c =
            Config::resolve(&[f.clone(), e.clone(), a.clone()]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.coap_port, 3001, "flag over env and file");
        assert_eq!(c.data_dir, PathBuf::from("/from/env"), "env over file");
        assert!(!c.allow_unsecured, "env over file");
        assert_eq!(c.coaps_port, 1002, "file over default");
        assert_eq!(c.bind.to_string(), "0.0.0.0", "file over default");
        assert_eq!(c.default_lifetime, 100);
        assert_eq!(c.expiry_grace_secs, 5, "flag over default");

        // Without the flag the env wins; without the env the file does.
        let c = Config::resolve(&[f.clone(), e]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.coap_port, 2001);
        let c = Config::resolve(&[f]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.coap_port, 1001);
        assert!(c.allow_unsecured);
    }

    #[test]
    fn load_reads_the_file_named_by_flag_or_env() {
        let dir = std::env::temp_dir().join(format!("steward-config-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let a = dir.join("a.toml");
        let b = dir.join("b.toml");
        std::fs::write(&a, "[lwm2m]\ncoap_port = 7001\n").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&b, "[lwm2m]\ncoap_port = 7002\n").unwrap_or_else(|e| panic!("{e}"));
        let b_env = env(&[("STEWARD_CONFIG", &b.to_string_lossy())]);

        let (c, _) = Config::load(&args(&[]), b_env.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.coap_port, 7002, "STEWARD_CONFIG");
        let flag = args(&["--config", &a.to_string_lossy()]);
        let (c, _) = Config::load(&flag, b_env).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.coap_port, 7001, "--config over STEWARD_CONFIG");

        let missing = args(&["--config", "/nonexistent/steward.toml"]);
        let err = Config::load(&missing, env(&[]))
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("cannot read config file /nonexistent/steward.toml")),
            "{err:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn allow_unsecured_flag_forms() {
        assert_eq!(args(&["--allow-unsecured"]).allow_unsecured, Some(true));
        assert_eq!(
            args(&["--allow-unsecured=false"]).allow_unsecured,
            Some(false)
        );
        assert_eq!(args(&[]).allow_unsecured, None);
        for v in ["1", "TRUE", "yes", "on"] {
            let (s, _) = Settings::from_env(env(&[("STEWARD_ALLOW_UNSECURED", v)]))
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(s.allow_unsecured, Some(true), "{v}");
        }
    }

    #[test]
    fn bad_values_are_clear_errors() {
        let e = Settings::from_env(env(&[("STEWARD_COAP_PORT", "70000")]))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("environment variable STEWARD_COAP_PORT=\"70000\": expected a port (0-65535)")
        );
        let e = Settings::from_env(env(&[("STEWARD_ALLOW_UNSECURED", "maybe")]))
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("expected a boolean")),
            "{e:?}"
        );
        let e = Settings::from_env(env(&[("STEWARD_BIND", "localhost")]))
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.contains("an IP address")),
            "{e:?}"
        );

        // File: wrong type, unknown key, syntax; the message names the file and the key.
        for (text, needle) in [
            ("[lwm2m]\ncoap_port = \"x\"\n", "coap_port"),
            ("[lwm2m]\ncoap_prot = 1\n", "coap_prot"),
            ("bind = \"not an ip\"\n", "bind"),
            ("data_dir = \n", "test.toml"),
        ] {
            let e = Settings::from_toml(text, Path::new("test.toml"))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.starts_with("config file test.toml:"), "{e}");
            assert!(e.contains(needle), "{text:?}: {e}");
        }

        // Flags: clap refuses before we see them.
        let cli = Cli::try_parse_from(["steward", "--coap-port", "-1"]);
        assert!(cli.is_err());
        let cli = Cli::try_parse_from(["steward", "--allow-unsecured=perhaps"]);
        assert!(cli.is_err());

        // Combinations.
        let same = Settings {
            coap_port: Some(6000),
            coaps_port: Some(6000),
            ..Settings::default()
        };
        let e = Config::resolve(&[same]).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("invalid configuration: coap_port and coaps_port are both 6000")
        );
        let both_free = Settings {
            coap_port: Some(0),
            coaps_port: Some(0),
            ..Settings::default()
        };
        assert!(
            Config::resolve(&[both_free]).is_ok(),
            "0 and 0 are two free ports"
        );
        let empty = Settings {
            data_dir: Some(PathBuf::new()),
            ..Settings::default()
        };
        assert!(Config::resolve(&[empty]).is_err());
    }

    #[test]
    fn dtls_settings_flag_beats_env_beats_file() {
        let f = file(
            r#"
            [dtls]
            device_cas = ["/file/ca1.pem", "/file/ca2.pem"]
            certificate = "/file/cert.pem"
            private_key = "/file/key.pem"
            "#,
        );
        let c = Config::resolve(std::slice::from_ref(&f)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.device_cas,
            [
                PathBuf::from("/file/ca1.pem"),
                PathBuf::from("/file/ca2.pem")
            ]
        );
        assert_eq!(
            c.dtls_certificate,
            Some(DtlsCertificatePaths {
                certificate: "/file/cert.pem".into(),
                private_key: "/file/key.pem".into(),
            })
        );

        let (e, unknown) = Settings::from_env(env(&[
            ("STEWARD_DEVICE_CAS", "/env/a.pem, /env/b.pem"),
            ("STEWARD_DTLS_KEY", "/env/key.pem"),
        ]))
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(unknown.is_empty());
        let a = args(&[
            "--device-ca",
            "/flag/x.pem",
            "--device-ca",
            "/flag/y.pem",
            "--dtls-cert",
            "/flag/cert.pem",
        ])
        .settings();

        let c =
            Config::resolve(&[f.clone(), e.clone(), a.clone()]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.device_cas,
            [PathBuf::from("/flag/x.pem"), PathBuf::from("/flag/y.pem")],
            "flag list replaces the env list"
        );
        assert_eq!(
            c.dtls_certificate,
            Some(DtlsCertificatePaths {
                certificate: "/flag/cert.pem".into(),
                private_key: "/env/key.pem".into(),
            }),
            "certificate from the flag, key from the env"
        );
        let c = Config::resolve(&[f.clone(), e]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.device_cas,
            [PathBuf::from("/env/a.pem"), PathBuf::from("/env/b.pem")],
            "env over file"
        );
        assert_eq!(
            c.dtls_certificate.map(|p| p.certificate),
            Some(PathBuf::from("/file/cert.pem")),
            "file over default"
        );
        // No flags: nothing from them (an empty --device-ca list is no layer).
        assert_eq!(args(&[]).settings().device_cas, None);
    }

    #[test]
    fn dtls_certificate_needs_key_and_device_cas() {
        let only_cert = Settings {
            device_cas: Some(vec!["/ca.pem".into()]),
            dtls_cert: Some("/cert.pem".into()),
            ..Settings::default()
        };
        let e = Config::resolve(&[only_cert]).err().map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("without its private key")),
            "{e:?}"
        );
        let no_ca = Settings {
            dtls_cert: Some("/cert.pem".into()),
            dtls_key: Some("/key.pem".into()),
            ..Settings::default()
        };
        let e = Config::resolve(&[no_ca]).err().map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.contains("no device CA")),
            "{e:?}"
        );
        let cas_only = Settings {
            device_cas: Some(vec!["/ca.pem".into()]),
            ..Settings::default()
        };
        let c = Config::resolve(&[cas_only]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.dtls_certificate, None, "generated at start");
        let e = Settings::from_toml("[dtls]\ncertficate = \"x\"\n", Path::new("test.toml"))
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.contains("certficate")),
            "{e:?}"
        );
    }

    #[test]
    fn unknown_steward_variables_are_reported_not_fatal() {
        let (s, unknown) = Settings::from_env(env(&[
            ("STEWARD_COAP_PROT", "1"),
            ("STEWARD_CONFIG", "x.toml"),
            ("PATH", "/bin"),
        ]))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s, Settings::default());
        assert_eq!(unknown, ["STEWARD_COAP_PROT"]);
    }

    #[test]
    fn http_token_flag_beats_env_beats_file() {
        let f = file("[http]\ntoken = \"from-file\"\n");
        let (e, unknown) = Settings::from_env(env(&[("STEWARD_HTTP_TOKEN", " from-env ")]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(unknown.is_empty());
        let a = args(&["--http-token", "from-flag"]).settings();

        let token = |layers: &[Settings]| {
            Config::resolve(layers)
                .unwrap_or_else(|e| panic!("{e}"))
                .http_token
                .map(|t| t.expose().to_owned())
        };
        assert_eq!(
            token(&[f.clone(), e.clone(), a]).as_deref(),
            Some("from-flag")
        );
        assert_eq!(token(&[f.clone(), e]).as_deref(), Some("from-env"));
        assert_eq!(token(&[f]).as_deref(), Some("from-file"));
        assert_eq!(token(&[]), None, "no token by default");
    }

    #[test]
    fn non_loopback_bind_requires_a_token() {
        for bind in ["0.0.0.0", "192.0.2.1", "::", "2001:db8::1"] {
            let open = args(&["--bind", bind]).settings();
            let e = Config::resolve(&[open]).err().map(|e| e.to_string());
            assert!(
                e.as_deref()
                    .is_some_and(|e| e.contains("requires a bearer token")
                        && e.contains("STEWARD_HTTP_TOKEN")),
                "{bind}: {e:?}"
            );
            let guarded = args(&["--bind", bind, "--http-token", "s3cret"]).settings();
            assert!(Config::resolve(&[guarded]).is_ok(), "{bind} with a token");
        }
        for bind in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            let local = args(&["--bind", bind]).settings();
            assert!(Config::resolve(&[local]).is_ok(), "{bind} needs no token");
        }
    }

    #[test]
    fn malformed_http_tokens_are_refused() {
        for bad in ["", "two words", "tab\there", "caf\u{e9}"] {
            let s = Settings {
                http_token: Some(HttpToken::new(bad)),
                ..Settings::default()
            };
            let e = Config::resolve(&[s]).err().map(|e| e.to_string());
            assert!(
                e.as_deref().is_some_and(|e| e.contains("http token")),
                "{bad:?}: {e:?}"
            );
            // The refused value is not echoed back.
            if !bad.is_empty() {
                assert!(e.as_deref().is_some_and(|e| !e.contains(bad)), "{e:?}");
            }
        }
        // An empty variable is present, not absent: it does not silently disable the token.
        let (s, _) = Settings::from_env(env(&[("STEWARD_HTTP_TOKEN", "  ")]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(Config::resolve(&[s]).is_err());
    }

    #[test]
    fn the_http_token_is_never_printed() {
        let secret = "do-not-log-me";
        let a = args(&["--http-token", secret, "--bind", "0.0.0.0"]);
        let s = a.settings();
        let c = Config::resolve(std::slice::from_ref(&s)).unwrap_or_else(|e| panic!("{e}"));
        for printed in [
            format!("{a:?}"),
            format!("{s:?}"),
            format!("{c:?}"),
            format!("{c}"),
            format!("{:?}", file("[http]\ntoken = \"do-not-log-me\"\n")),
        ] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(format!("{c}").contains("http_token set"));
    }
}
