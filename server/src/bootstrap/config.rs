//! Bootstrap configurations: what the Bootstrap-Server writes into one client, in the JSON shape
//! of Leshan's `BootstrapConfig` (leshan-rest-api.md §2.5, `bss/BootstrapConfig.java`), so that
//! configurations exported from a Leshan bootstrap server (`GET /api/bootstrap`) import here
//! unchanged and ours export in the same shape.
//!
//! JSON rules, as Leshan's demo mapper writes them:
//! - field names are Leshan's Java field names, including the capitalised ones
//!   (`CommunicationRetryTimer`, `SequenceDelayTimer`, `SequenceRetryCount`,
//!   `AccessControlOwner`);
//! - `null`/absent optional fields are left out (`NON_NULL`);
//! - byte arrays are arrays of unsigned integers 0..=255; on input signed bytes (-128..=-1, the
//!   form Leshan's JSON file store writes) are accepted too;
//! - enums are written by name (`"PSK"`) and read by name or by ordinal (the web UI sends
//!   `certificateUsage: 3`);
//! - `binding` is a string of letters (`"U"`, `"UQ"`).
//!
//! Where Leshan's Java shape has no clear JSON form we chose one and say so:
//! - `contentFormat` (a Java bean in Leshan; its UI never sends it) is written as the numeric
//!   CoAP Content-Format and read as a number, a Leshan format name (`"TLV"`), or an object
//!   with a `code` field;
//! - `cipherSuite` (a list of `CipherSuiteId` beans) is written as the /0/x/16 integer values
//!   (`49320` for TLS_PSK_WITH_AES_128_CCM_8) and read as integers or as objects with
//!   `valueForSecurityObject`.
//!
//! Defaults follow the Java field initialisers, except `toDelete`: an absent `toDelete` means
//! `["/0", "/1"]` (what Leshan's UI always sends, and the clean slate a configuration written
//! by hand expects); an explicit `[]` deletes nothing. Leshan-exported JSON always carries the
//! field, so round trips are exact either way.
//!
//! # Security Mode 4, "Certificate mode with EST"
//!
//! [`SecurityMode::Est`] writes 4 into /0/x/2 and the server's certificate into /0/x/4 (Server
//! Public Key), Transport 1.2 §5.2.4 (standards.md §1.11). /0/x/3 and /0/x/5 are not used in
//! this mode: the client generates its key pair and enrols over EST-coaps (RFC 9148). LwM2M
//! defines no resource for the EST server's address, so the client enrols with the
//! Bootstrap-Server it is talking to, on its coaps URI, at the RFC 9148 default paths
//! `/.well-known/est/{crts,sen,sren}` (OMA ETS 1.1-int-10 does exactly this). Nothing else is
//! needed in the configuration. Validation therefore asks for a non-empty `serverPublicKey`
//! and an empty `secretKey` (the private key never leaves the device, so a configured one is a
//! mistake). Leshan refuses EST configurations outright ("EST is not currently supported.").
//!
//! # Validation
//!
//! [`BootstrapConfig::validate`] follows Leshan's `DefaultConfigurationChecker`, in its order and
//! with its messages, plus checks Leshan leaves to the device (Short Server ID 65535, a missing
//! Short Server ID on a LwM2M Server's security instance, two Bootstrap-Server accounts,
//! Bootstrap-Delete of a resource). Key material is checked for presence and, for certificate
//! and key modes, for a DER SEQUENCE; decoding keys is left to the DTLS layer.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use steward_objects::{ContentFormat, Path};

use crate::lwm2m::binding::{Binding, Transport};
use crate::registry::Lwm2mVersion;

/// One client's bootstrap configuration (Leshan `BootstrapConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapConfig {
    /// Start with a Bootstrap-Discover of `/` and choose the Security instance IDs from it: the
    /// configuration's Bootstrap-Server entry takes the device's existing Bootstrap-Server
    /// instance, the others take free IDs (the keys of [`BootstrapConfig::security`] are then
    /// ignored). The device cannot delete its Bootstrap-Server account, so this avoids writing
    /// a second one (OMA_LwM2M_for_Developers#522).
    #[serde(default)]
    pub auto_id_for_security_object: bool,
    /// Forces the format of Bootstrap-Write payloads; `None` uses the client's `pct`, else TLV.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "content_format_opt"
    )]
    pub content_format: Option<ContentFormat>,
    /// Bootstrap-Delete targets, sent in this order before any write: `/`, `/o` or `/o/i`.
    #[serde(default = "default_to_delete", with = "paths")]
    pub to_delete: Vec<Path>,
    /// Server object (/1) instances by instance ID.
    #[serde(default)]
    pub servers: BTreeMap<u16, ServerConfig>,
    /// Security object (/0) instances by instance ID.
    #[serde(default)]
    pub security: BTreeMap<u16, ServerSecurity>,
    /// Access Control object (/2) instances by instance ID.
    #[serde(default)]
    pub acls: BTreeMap<u16, AclConfig>,
    /// OSCORE object (/21) instances by instance ID; /0/x/17 links to them.
    #[serde(default)]
    pub oscore: BTreeMap<u16, OscoreObject>,
}

fn default_to_delete() -> Vec<Path> {
    vec![Path::Object(0), Path::Object(1)]
}

impl Default for BootstrapConfig {
    fn default() -> BootstrapConfig {
        BootstrapConfig {
            auto_id_for_security_object: false,
            content_format: None,
            to_delete: default_to_delete(),
            servers: BTreeMap::new(),
            security: BTreeMap::new(),
            acls: BTreeMap::new(),
            oscore: BTreeMap::new(),
        }
    }
}

/// A Server object (/1) instance (Leshan `ServerConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerConfig {
    /// /1/x/0; links to the /0 instance with the same /0/x/10.
    pub short_id: u16,
    /// /1/x/1, seconds.
    #[serde(default = "default_lifetime")]
    pub lifetime: u32,
    /// /1/x/2, seconds.
    #[serde(
        default = "default_min_period",
        skip_serializing_if = "Option::is_none"
    )]
    pub default_min_period: Option<u32>,
    /// /1/x/3, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_max_period: Option<u32>,
    /// /1/x/5, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_timeout: Option<u32>,
    /// /1/x/6.
    #[serde(default = "yes")]
    pub notif_if_disabled: bool,
    /// /1/x/7, e.g. `U`, `UQ`, `T`.
    #[serde(default, with = "binding")]
    pub binding: Binding,
    /// /1/x/10, an instance of object 11 (APN Connection Profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apn_link: Option<u16>,
    /// /1/x/13.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_priority: Option<u64>,
    /// /1/x/14, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay: Option<u64>,
    /// /1/x/15.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_failure: Option<bool>,
    /// /1/x/16.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_on_registration_failure: Option<bool>,
    /// /1/x/17.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub communication_retry_count: Option<u64>,
    /// /1/x/18, seconds.
    #[serde(
        rename = "CommunicationRetryTimer",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub communication_retry_timer: Option<u64>,
    /// /1/x/19, seconds.
    #[serde(
        rename = "SequenceDelayTimer",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sequence_delay_timer: Option<u64>,
    /// /1/x/20.
    #[serde(
        rename = "SequenceRetryCount",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sequence_retry_count: Option<u64>,
    /// /1/x/21.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<bool>,
    /// /1/x/22, one transport letter.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "transport_opt"
    )]
    pub preferred_transport: Option<Transport>,
    /// /1/x/23.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mute_send: Option<bool>,
}

fn default_lifetime() -> u32 {
    86_400
}

fn default_min_period() -> Option<u32> {
    Some(1)
}

fn yes() -> bool {
    true
}

impl ServerConfig {
    /// A server instance with Leshan's defaults for everything but the Short Server ID.
    pub fn new(short_id: u16) -> ServerConfig {
        ServerConfig {
            short_id,
            lifetime: default_lifetime(),
            default_min_period: default_min_period(),
            default_max_period: None,
            disable_timeout: None,
            notif_if_disabled: true,
            binding: Binding::default(),
            apn_link: None,
            registration_priority: None,
            initial_delay: None,
            registration_failure: None,
            bootstrap_on_registration_failure: None,
            communication_retry_count: None,
            communication_retry_timer: None,
            sequence_delay_timer: None,
            sequence_retry_count: None,
            trigger: None,
            preferred_transport: None,
            mute_send: None,
        }
    }
}

/// A Security object (/0) instance (Leshan `ServerSecurity`). `Debug` redacts the secrets.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerSecurity {
    /// /0/x/0. Mandatory; `Option` only so that its absence gets Leshan's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// /0/x/1.
    #[serde(default)]
    pub bootstrap_server: bool,
    /// /0/x/2. Mandatory; `Option` for the same reason as `uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_mode: Option<SecurityMode>,
    /// /0/x/3: PSK identity (UTF-8), client SPKI (RPK) or client certificate (X.509).
    #[serde(default, with = "bytes")]
    pub public_key_or_id: Vec<u8>,
    /// /0/x/4: server SPKI (RPK) or certificate (X.509, EST).
    #[serde(default, with = "bytes")]
    pub server_public_key: Vec<u8>,
    /// /0/x/5: PSK or RFC 5958 private key.
    #[serde(default, with = "bytes")]
    pub secret_key: Vec<u8>,
    /// /0/x/6.
    #[serde(default = "sms_no_sec")]
    pub sms_security_mode: SmsSecurityMode,
    /// /0/x/7.
    #[serde(default, with = "bytes")]
    pub sms_binding_key_param: Vec<u8>,
    /// /0/x/8.
    #[serde(default, with = "bytes")]
    pub sms_binding_key_secret: Vec<u8>,
    /// /0/x/9.
    #[serde(default)]
    pub server_sms_number: String,
    /// /0/x/10: the Short Server ID; mandatory unless `bootstrap_server`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<u16>,
    /// /0/x/11, seconds.
    #[serde(default = "one", skip_serializing_if = "Option::is_none")]
    pub client_old_off_time: Option<u32>,
    /// /0/x/12, seconds; 0 = never purge.
    #[serde(default = "zero", skip_serializing_if = "Option::is_none")]
    pub bootstrap_server_account_timeout: Option<u32>,
    /// /0/x/17 as a key of [`BootstrapConfig::oscore`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oscore_security_mode: Option<u16>,
    /// /0/x/13.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matching_type: Option<MatchingType>,
    /// /0/x/14.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// /0/x/15.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_usage: Option<CertificateUsage>,
    /// /0/x/16: IANA cipher suite values (`0xC0A8` = 49320).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "cipher_suites"
    )]
    pub cipher_suite: Option<Vec<u16>>,
}

fn sms_no_sec() -> SmsSecurityMode {
    SmsSecurityMode::NoSec
}

fn one() -> Option<u32> {
    Some(1)
}

fn zero() -> Option<u32> {
    Some(0)
}

impl ServerSecurity {
    /// A Security instance with Leshan's defaults, for `uri` in `mode`; keys empty.
    pub fn new(uri: &str, mode: SecurityMode) -> ServerSecurity {
        ServerSecurity {
            uri: Some(uri.to_owned()),
            bootstrap_server: false,
            security_mode: Some(mode),
            public_key_or_id: Vec::new(),
            server_public_key: Vec::new(),
            secret_key: Vec::new(),
            sms_security_mode: SmsSecurityMode::NoSec,
            sms_binding_key_param: Vec::new(),
            sms_binding_key_secret: Vec::new(),
            server_sms_number: String::new(),
            server_id: None,
            client_old_off_time: one(),
            bootstrap_server_account_timeout: zero(),
            oscore_security_mode: None,
            matching_type: None,
            sni: None,
            certificate_usage: None,
            cipher_suite: None,
        }
    }

    /// A LwM2M Server account in PSK mode.
    pub fn psk(uri: &str, short_server_id: u16, identity: &[u8], key: &[u8]) -> ServerSecurity {
        ServerSecurity {
            public_key_or_id: identity.to_vec(),
            secret_key: key.to_vec(),
            server_id: Some(short_server_id),
            ..ServerSecurity::new(uri, SecurityMode::Psk)
        }
    }

    /// A LwM2M Server account in Certificate mode with EST: the client enrols with the
    /// Bootstrap-Server over EST-coaps and then uses `server_certificate` (DER) to
    /// authenticate the server at `uri`.
    pub fn est(uri: &str, short_server_id: u16, server_certificate: &[u8]) -> ServerSecurity {
        ServerSecurity {
            server_public_key: server_certificate.to_vec(),
            server_id: Some(short_server_id),
            ..ServerSecurity::new(uri, SecurityMode::Est)
        }
    }
}

// Debug by hand so that keys never reach a log line (as `store::SecurityInfo`).
impl fmt::Debug for ServerSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSecurity")
            .field("uri", &self.uri)
            .field("bootstrap_server", &self.bootstrap_server)
            .field("security_mode", &self.security_mode)
            .field(
                "public_key_or_id",
                &String::from_utf8_lossy(&self.public_key_or_id),
            )
            .field(
                "server_public_key",
                &format_args!("<{} bytes>", self.server_public_key.len()),
            )
            .field(
                "secret_key",
                &format_args!("<{} bytes redacted>", self.secret_key.len()),
            )
            .field("sms_security_mode", &self.sms_security_mode)
            .field(
                "sms_binding_key_secret",
                &format_args!("<{} bytes redacted>", self.sms_binding_key_secret.len()),
            )
            .field("server_id", &self.server_id)
            .field("oscore_security_mode", &self.oscore_security_mode)
            .finish_non_exhaustive()
    }
}

/// An Access Control object (/2) instance (Leshan `ACLConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AclConfig {
    /// /2/x/0: the object the rights apply to.
    pub object_id: u16,
    /// /2/x/1: its instance (65535: object-level entry, for Create).
    pub object_instance_id: u16,
    /// /2/x/2: rights by Short Server ID (0 = default); bits R 1, W 2, E 4, D 8, C 16.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acls: Option<BTreeMap<u16, u64>>,
    /// /2/x/3: the Short Server ID that manages this instance (65535: bootstrap only).
    #[serde(
        rename = "AccessControlOwner",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub access_control_owner: Option<u16>,
}

/// An OSCORE object (/21) instance (Leshan `OscoreObject`). `Debug` redacts the secrets.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OscoreObject {
    /// /21/x/0.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "bytes_opt")]
    pub oscore_master_secret: Option<Vec<u8>>,
    /// /21/x/1.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "bytes_opt")]
    pub oscore_sender_id: Option<Vec<u8>>,
    /// /21/x/2.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "bytes_opt")]
    pub oscore_recipient_id: Option<Vec<u8>>,
    /// /21/x/3: COSE algorithm (10 = AES-CCM-16-64-128, the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oscore_aead_algorithm: Option<i64>,
    /// /21/x/4: COSE algorithm (5 = HMAC 256/256, the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oscore_hmac_algorithm: Option<i64>,
    /// /21/x/5.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "bytes_opt")]
    pub oscore_master_salt: Option<Vec<u8>>,
}

impl fmt::Debug for OscoreObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OscoreObject")
            .field("oscore_sender_id", &self.oscore_sender_id)
            .field("oscore_recipient_id", &self.oscore_recipient_id)
            .field("oscore_aead_algorithm", &self.oscore_aead_algorithm)
            .field("oscore_hmac_algorithm", &self.oscore_hmac_algorithm)
            .finish_non_exhaustive()
    }
}

// --- enums ---------------------------------------------------------------------------------------

/// An enum written by its Leshan (Java) name and read by name or by ordinal.
pub trait LeshanEnum: Copy + Sized + 'static {
    /// In Java declaration order, so that the index is Jackson's ordinal.
    const ALL: &'static [Self];
    /// What the type is called in error messages.
    const WHAT: &'static str;
    fn leshan_name(self) -> &'static str;

    fn from_leshan_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.leshan_name() == name)
    }
}

macro_rules! leshan_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal {
        $($(#[$vmeta:meta])* $variant:ident = $json:literal => $code:literal,)+
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// The value of the LwM2M resource.
            pub const fn code(self) -> u8 {
                match self {
                    $($name::$variant => $code,)+
                }
            }

            pub fn from_code(code: u8) -> Option<$name> {
                <$name as LeshanEnum>::ALL.iter().copied().find(|v| v.code() == code)
            }
        }

        impl LeshanEnum for $name {
            const ALL: &'static [$name] = &[$($name::$variant,)+];
            const WHAT: &'static str = $what;
            fn leshan_name(self) -> &'static str {
                match self {
                    $($name::$variant => $json,)+
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.leshan_name())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                d.deserialize_any(EnumVisitor(PhantomData))
            }
        }
    };
}

leshan_enum!(
    /// /0/x/2 Security Mode (Leshan `SecurityMode`).
    SecurityMode, "security mode" {
        Psk = "PSK" => 0,
        Rpk = "RPK" => 1,
        X509 = "X509" => 2,
        NoSec = "NO_SEC" => 3,
        /// Certificate mode with EST (LwM2M 1.1+).
        Est = "EST" => 4,
    }
);

leshan_enum!(
    /// /0/x/6 SMS Security Mode (Leshan `SmsSecurityMode`).
    SmsSecurityMode, "SMS security mode" {
        Reserved = "RESERVED" => 0,
        /// DTLS mode, device terminated.
        SpsDevice = "SPS_DEVICE" => 1,
        /// Secure Packet Structure, smartcard terminated.
        SpsSmartcard = "SPS_SMARTCARD" => 2,
        NoSec = "NO_SEC" => 3,
        Proprietary = "PROPRIETARY" => 255,
    }
);

leshan_enum!(
    /// /0/x/13 Matching Type (Leshan `MatchingType`).
    MatchingType, "matching type" {
        ExactMatch = "EXACT_MATCH" => 0,
        Sha256 = "SHA256" => 1,
        Sha384 = "SHA384" => 2,
        Sha512 = "SHA512" => 3,
    }
);

leshan_enum!(
    /// /0/x/15 Certificate Usage (Leshan `CertificateUsage`, RFC 6698 usages).
    CertificateUsage, "certificate usage" {
        CaConstraint = "CA_CONSTRAINT" => 0,
        ServiceCertificateConstraint = "SERVICE_CERTIFICATE_CONSTRAINT" => 1,
        TrustAnchorAssertion = "TRUST_ANCHOR_ASSERTION" => 2,
        DomainIssuerCertificate = "DOMAIN_ISSUER_CERTIFICATE" => 3,
    }
);

struct EnumVisitor<E>(PhantomData<E>);

impl<E: LeshanEnum> Visitor<'_> for EnumVisitor<E> {
    type Value = E;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} name or ordinal", E::WHAT)
    }

    fn visit_str<Er: de::Error>(self, v: &str) -> Result<E, Er> {
        E::from_leshan_name(v).ok_or_else(|| Er::custom(format_args!("unknown {} {v:?}", E::WHAT)))
    }

    fn visit_u64<Er: de::Error>(self, v: u64) -> Result<E, Er> {
        usize::try_from(v)
            .ok()
            .and_then(|i| E::ALL.get(i).copied())
            .ok_or_else(|| Er::custom(format_args!("{} ordinal {v} out of range", E::WHAT)))
    }

    fn visit_i64<Er: de::Error>(self, v: i64) -> Result<E, Er> {
        u64::try_from(v)
            .map_err(|_| Er::custom(format_args!("{} ordinal {v} out of range", E::WHAT)))
            .and_then(|v| self.visit_u64(v))
    }
}

// --- serde helpers -------------------------------------------------------------------------------

/// `byte[]` as Leshan's REST API writes it: unsigned integers; signed bytes accepted on input.
mod bytes {
    use super::*;

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(b)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let raw = Vec::<i64>::deserialize(d)?;
        raw.into_iter()
            .map(|v| match v {
                // Two's complement: the JSON file store writes Java's signed bytes.
                -128..=-1 => u8::try_from(v + 256).map_err(de::Error::custom),
                0..=255 => u8::try_from(v).map_err(de::Error::custom),
                _ => Err(de::Error::custom(format_args!("{v} is not a byte"))),
            })
            .collect()
    }
}

mod bytes_opt {
    use super::*;

    pub fn serialize<S: Serializer>(b: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match b {
            Some(b) => super::bytes::serialize(b, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::bytes")] Vec<u8>);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

/// Paths as strings (`"/0"`); a path that does not parse is reported like Leshan does.
mod paths {
    use super::*;

    pub fn serialize<S: Serializer>(p: &[Path], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(p.iter().map(Path::to_string))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Path>, D::Error> {
        Vec::<String>::deserialize(d)?
            .into_iter()
            .map(|s| {
                s.parse::<Path>().map_err(|_| {
                    let shown: String = s.chars().take(64).collect();
                    de::Error::custom(format_args!(" {shown} is not a valid path"))
                })
            })
            .collect()
    }
}

/// `EnumSet<BindingMode>` as a string of letters.
mod binding {
    use super::*;

    pub fn serialize<S: Serializer>(b: &Binding, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&b.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Binding, D::Error> {
        let s = String::deserialize(d)?;
        Binding::parse(&s, Lwm2mVersion::V1_2).ok_or_else(|| {
            let shown: String = s.chars().take(16).collect();
            de::Error::custom(format_args!("invalid binding {shown:?}"))
        })
    }
}

/// `BindingMode` (one letter, not `Q`).
mod transport_opt {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Option<Transport>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(t.letter().encode_utf8(&mut [0; 4])),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Transport>, D::Error> {
        let Some(s) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        let parsed = Binding::parse(&s, Lwm2mVersion::V1_2).filter(|b| !b.queue);
        let mut transports = parsed.iter().flat_map(Binding::transports);
        match (transports.next(), transports.next()) {
            (Some(t), None) => Ok(Some(t)),
            _ => Err(de::Error::custom(format_args!(
                "invalid preferred transport {:?}",
                s.chars().take(16).collect::<String>()
            ))),
        }
    }
}

/// `ContentFormat`: written as the CoAP code; read as a code, a Leshan name or `{"code": n}`.
mod content_format_opt {
    use super::*;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Code(u16),
        Name(String),
        Bean { code: u16 },
    }

    pub fn serialize<S: Serializer>(f: &Option<ContentFormat>, s: S) -> Result<S::Ok, S::Error> {
        match f {
            Some(f) => s.serialize_u16(f.code()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ContentFormat>, D::Error> {
        let Some(raw) = Option::<Raw>::deserialize(d)? else {
            return Ok(None);
        };
        let found = match &raw {
            Raw::Code(c) | Raw::Bean { code: c } => ContentFormat::from_code(*c),
            Raw::Name(n) => ContentFormat::from_leshan_name(n),
        };
        found.map(Some).ok_or_else(|| {
            de::Error::custom("unknown content format (a CoAP code or a Leshan name is expected)")
        })
    }
}

/// `List<CipherSuiteId>`: written as /0/x/16 values; read as values or beans.
mod cipher_suites {
    use super::*;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Value(u16),
        Bean {
            #[serde(rename = "valueForSecurityObject")]
            value: u16,
        },
    }

    pub fn serialize<S: Serializer>(c: &Option<Vec<u16>>, s: S) -> Result<S::Ok, S::Error> {
        match c {
            Some(c) => s.collect_seq(c),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u16>>, D::Error> {
        Ok(Option::<Vec<Raw>>::deserialize(d)?.map(|list| {
            list.into_iter()
                .map(|r| match r {
                    Raw::Value(v) | Raw::Bean { value: v } => v,
                })
                .collect()
        }))
    }
}

// --- import / export -----------------------------------------------------------------------------

/// Why JSON could not be read as a configuration, or a configuration is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not JSON, or not the shape of a `BootstrapConfig` (Leshan: `JsonParseException`).
    #[error("{0}")]
    Json(String),
    /// The configuration is well-formed but inconsistent (Leshan:
    /// `InvalidConfigurationException`); the text is Leshan's message where Leshan has one.
    #[error("{0}")]
    Invalid(String),
}

impl BootstrapConfig {
    /// Reads one configuration (the body of Leshan's `POST /api/bootstrap/{ep}`). Not validated:
    /// call [`BootstrapConfig::validate`].
    pub fn from_json(json: &[u8]) -> Result<BootstrapConfig, ConfigError> {
        serde_json::from_slice(json).map_err(|e| ConfigError::Json(e.to_string()))
    }

    /// One configuration as JSON.
    pub fn to_json(&self) -> String {
        // Serialising these types cannot fail: every map key is an integer and every value a
        // plain number, string, bool, sequence or map.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Checks the configuration as Leshan's `DefaultConfigurationChecker` does, then what Leshan
    /// leaves to the device. The first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if let Some(format) = self.content_format
            && !super::session::WRITE_FORMATS.contains(&format)
        {
            return invalid(format!(
                "content format {format} cannot carry a Bootstrap-Write"
            ));
        }
        for path in &self.to_delete {
            // Transport §6.4.2: Bootstrap-Delete targets `/`, `/o` or `/o/i`.
            if path.depth() > 2 {
                return invalid(format!(" {path} is not a valid path"));
            }
        }
        for sec in self.security.values() {
            match sec.security_mode {
                Some(SecurityMode::NoSec) => check_no_sec(sec)?,
                Some(SecurityMode::Psk) => check_psk(sec)?,
                Some(SecurityMode::Rpk) => check_keys(sec, "raw-public-key")?,
                Some(SecurityMode::X509) => check_keys(sec, "x509")?,
                Some(SecurityMode::Est) => check_est(sec)?,
                None => {}
            }
            if sec.uri.as_deref().is_none_or(str::is_empty) {
                return invalid("LwM2M Server URI is mandatory".into());
            }
            if sec.security_mode.is_none() {
                return invalid("Security Mode is mandatory".into());
            }
            if let Some(oscore) = sec.oscore_security_mode
                && !self.oscore.contains_key(&oscore)
            {
                return invalid(format!(
                    "oscore mode, no oscore Object with instance {oscore}"
                ));
            }
        }
        for (id, oscore) in &self.oscore {
            check_oscore(*id, oscore)?;
        }
        for (id, server) in &self.servers {
            if server.short_id == 0 {
                return invalid("short ID must not be 0".into());
            }
            let has_security = self
                .security
                .values()
                .any(|s| !s.bootstrap_server && s.server_id == Some(server.short_id));
            if !has_security {
                return invalid(format!("no security entry for server instance: {id}"));
            }
        }
        // Beyond Leshan: what the Security object's definition forbids.
        for (id, server) in &self.servers {
            if server.short_id == 65_535 {
                return invalid(format!(
                    "short ID must not be 65535 (server instance: {id})"
                ));
            }
        }
        let mut bootstrap_accounts = 0;
        for (id, sec) in &self.security {
            if sec.bootstrap_server {
                bootstrap_accounts += 1;
            } else {
                match sec.server_id {
                    None => {
                        return invalid(format!(
                            "security instance {id}: short server ID is mandatory for a LwM2M \
                             Server"
                        ));
                    }
                    Some(0 | 65_535) => {
                        return invalid(format!(
                            "security instance {id}: short server ID must not be 0 or 65535"
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        if bootstrap_accounts > 1 {
            return invalid("only one security entry may be a bootstrap server".into());
        }
        // 65535 is not an instance ID (Core §7.2: IDs are 0..=65534).
        for (what, has) in [
            ("security", self.security.contains_key(&65_535)),
            ("server", self.servers.contains_key(&65_535)),
            ("ACL", self.acls.contains_key(&65_535)),
            ("oscore", self.oscore.contains_key(&65_535)),
        ] {
            if has {
                return invalid(format!("{what} instance ID 65535 is reserved"));
            }
        }
        Ok(())
    }
}

fn check_no_sec(sec: &ServerSecurity) -> Result<(), ConfigError> {
    assert_not(
        !sec.secret_key.is_empty(),
        "NO-SEC mode, secret key must be empty",
    )?;
    assert_not(
        !sec.public_key_or_id.is_empty(),
        "NO-SEC mode, public key or ID must be empty",
    )?;
    assert_not(
        !sec.server_public_key.is_empty(),
        "NO-SEC mode, server public key must be empty",
    )
}

fn check_psk(sec: &ServerSecurity) -> Result<(), ConfigError> {
    assert_not(
        sec.secret_key.is_empty(),
        "pre-shared-key mode, secret key must not be empty",
    )?;
    assert_not(
        sec.public_key_or_id.is_empty(),
        "pre-shared-key mode, public key or id must not be empty",
    )?;
    // Leshan's text (sic): it means the identity must be UTF-8.
    assert_not(
        std::str::from_utf8(&sec.public_key_or_id).is_err(),
        "pre-shared-key mode, public key or id must not be an utf8 string",
    )
}

/// RPK and X.509: all three keys present and DER (a SEQUENCE); decoding them is the DTLS
/// layer's job.
fn check_keys(sec: &ServerSecurity, mode: &str) -> Result<(), ConfigError> {
    let (key, public, server) = if mode == "x509" {
        (
            "RFC5958 encoded private key",
            "DER encoded X.509 certificate",
            "DER encoded X.509 certificate",
        )
    } else {
        (
            "RFC5958 encoded private key",
            "RFC7250 encoded public key",
            "RFC7250 encoded public key",
        )
    };
    for (bytes, name, form) in [
        (&sec.secret_key, "secret key", key),
        (&sec.public_key_or_id, "public key or id", public),
        (&sec.server_public_key, "server public key", server),
    ] {
        if bytes.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "{mode} mode, {name} must not be empty"
            )));
        }
        if bytes.first() != Some(&0x30) {
            return Err(ConfigError::Invalid(format!(
                "{mode} mode, {name} must be {form}"
            )));
        }
    }
    Ok(())
}

fn check_est(sec: &ServerSecurity) -> Result<(), ConfigError> {
    assert_not(
        sec.server_public_key.is_empty(),
        "EST mode, server public key (the server's certificate) must not be empty",
    )?;
    assert_not(
        sec.server_public_key.first() != Some(&0x30),
        "EST mode, server public key must be DER encoded X.509 certificate",
    )?;
    assert_not(
        !sec.secret_key.is_empty(),
        "EST mode, secret key must be empty: the client generates its own key pair",
    )
}

fn check_oscore(id: u16, o: &OscoreObject) -> Result<(), ConfigError> {
    let missing = |v: &Option<Vec<u8>>| v.as_ref().is_none_or(Vec::is_empty);
    let fail = |what: &str| {
        Err(ConfigError::Invalid(format!(
            "oscore mode, invalid oscore object {id} : {what}"
        )))
    };
    if missing(&o.oscore_master_secret) {
        return fail("master secret must not be empty");
    }
    // The IDs may be empty byte strings (RFC 8613 §3.3), but must be present.
    if o.oscore_sender_id.is_none() {
        return fail("sender ID is mandatory");
    }
    if o.oscore_recipient_id.is_none() {
        return fail("recipient ID is mandatory");
    }
    if o.oscore_sender_id == o.oscore_recipient_id {
        return fail("sender ID and recipient ID must differ");
    }
    Ok(())
}

fn assert_not(condition: bool, message: &str) -> Result<(), ConfigError> {
    if condition {
        Err(ConfigError::Invalid(message.to_owned()))
    } else {
        Ok(())
    }
}

/// Reads `{ "<endpoint>": config, ... }`, the shape of Leshan's `GET /api/bootstrap` and of its
/// `data/bootstrapStore.json`. Not validated.
pub fn configs_from_json(json: &[u8]) -> Result<BTreeMap<String, BootstrapConfig>, ConfigError> {
    serde_json::from_slice(json).map_err(|e| ConfigError::Json(e.to_string()))
}

/// Writes `{ "<endpoint>": config, ... }`, pretty-printed like Leshan's `GET /api/bootstrap`.
pub fn configs_to_json<'a>(
    configs: impl IntoIterator<Item = (&'a str, &'a BootstrapConfig)>,
) -> String {
    let map: BTreeMap<&str, &BootstrapConfig> = configs.into_iter().collect();
    // As in `to_json`: these types always serialise.
    serde_json::to_string_pretty(&map).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// leshan-rest-api.md §2.5, with the elided `...` of security "1" filled with Leshan's
    /// defaults.
    pub(crate) const LESHAN_EXAMPLE: &str = r#"{"autoIdForSecurityObject":false,"toDelete":["/0","/1"],
 "servers":{"0":{"shortId":123,"lifetime":300,"defaultMinPeriod":1,"notifIfDisabled":true,"binding":"U"}},
 "security":{
   "0":{"uri":"coaps://bs.example:5784","bootstrapServer":true,"securityMode":"PSK","publicKeyOrId":[105,100],
        "serverPublicKey":[],"secretKey":[1,2,3],"smsSecurityMode":"NO_SEC","smsBindingKeyParam":[],
        "smsBindingKeySecret":[],"serverSmsNumber":"","clientOldOffTime":1,"bootstrapServerAccountTimeout":0},
   "1":{"uri":"coap://dm.example:5683","bootstrapServer":false,"securityMode":"NO_SEC","serverId":123,
        "publicKeyOrId":[],"serverPublicKey":[],"secretKey":[],"smsSecurityMode":"NO_SEC",
        "smsBindingKeyParam":[],"smsBindingKeySecret":[],"serverSmsNumber":"","clientOldOffTime":1,
        "bootstrapServerAccountTimeout":0}},
 "acls":{},"oscore":{}}"#;

    fn json_value(s: &str) -> serde_json::Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn leshan_example_reads_validates_and_writes_back_the_same_json() {
        let config = BootstrapConfig::from_json(LESHAN_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(config.to_delete, vec![Path::Object(0), Path::Object(1)]);
        assert_eq!(config.servers[&0].short_id, 123);
        assert_eq!(config.servers[&0].lifetime, 300);
        let bs = &config.security[&0];
        assert!(bs.bootstrap_server);
        assert_eq!(bs.security_mode, Some(SecurityMode::Psk));
        assert_eq!(bs.public_key_or_id, b"id");
        assert_eq!(bs.secret_key, vec![1, 2, 3]);
        assert_eq!(config.security[&1].server_id, Some(123));
        config.validate().unwrap();
        assert_eq!(
            json_value(&config.to_json()),
            json_value(LESHAN_EXAMPLE),
            "export is Leshan's JSON, field for field"
        );
    }

    #[test]
    fn whole_store_round_trips() {
        let one = BootstrapConfig::from_json(LESHAN_EXAMPLE.as_bytes()).unwrap();
        let json = format!(r#"{{"ep1": {LESHAN_EXAMPLE}, "ep2": {{}}}}"#);
        let all = configs_from_json(json.as_bytes()).unwrap();
        assert_eq!(all["ep1"], one);
        assert_eq!(all["ep2"], BootstrapConfig::default());
        let back = configs_to_json(all.iter().map(|(k, v)| (k.as_str(), v)));
        assert_eq!(configs_from_json(back.as_bytes()).unwrap(), all);
    }

    #[test]
    fn leshan_input_variants() {
        let json = r#"{"toDelete":[],"servers":{"1":{"shortId":7,"binding":"UQ","preferredTransport":"T",
            "CommunicationRetryTimer":60,"SequenceRetryCount":2}},
            "security":{"1":{"uri":"coaps://x","securityMode":4,"serverPublicKey":[48,-1,-128],
              "serverId":7,"certificateUsage":3,"matchingType":"SHA256",
              "cipherSuite":[49320,{"valueForSecurityObject":49326}]}},
            "acls":{"0":{"objectId":3,"objectInstanceId":0,"acls":{"7":15},"AccessControlOwner":7}},
            "contentFormat":"SENML_CBOR"}"#;
        let c = BootstrapConfig::from_json(json.as_bytes()).unwrap();
        assert!(c.to_delete.is_empty());
        let s = &c.servers[&1];
        assert!(s.binding.queue);
        assert_eq!(s.preferred_transport, Some(Transport::Tcp));
        assert_eq!(s.communication_retry_timer, Some(60));
        assert_eq!(s.default_min_period, Some(1), "Leshan default");
        let sec = &c.security[&1];
        assert_eq!(sec.security_mode, Some(SecurityMode::Est));
        assert_eq!(sec.server_public_key, vec![48, 255, 128]);
        assert_eq!(
            sec.certificate_usage,
            Some(CertificateUsage::DomainIssuerCertificate)
        );
        assert_eq!(sec.cipher_suite, Some(vec![49320, 49326]));
        assert_eq!(c.content_format, Some(ContentFormat::SenmlCbor));
        assert_eq!(c.acls[&0].access_control_owner, Some(7));
        c.validate().unwrap();
        let out = json_value(&c.to_json());
        assert_eq!(out["servers"]["1"]["CommunicationRetryTimer"], 60);
        assert_eq!(out["servers"]["1"]["binding"], "UQ");
        assert_eq!(out["security"]["1"]["securityMode"], "EST");
        assert_eq!(out["security"]["1"]["serverPublicKey"][1], 255);
        assert_eq!(out["acls"]["0"]["AccessControlOwner"], 7);
        assert_eq!(out["contentFormat"], 112);
        assert_eq!(
            BootstrapConfig::from_json(c.to_json().as_bytes()).unwrap(),
            c
        );
    }

    #[test]
    fn malformed_json_is_a_json_error() {
        for bad in [
            &br#"{"toDelete":["0"]}"#[..],
            br#"{"servers":{"x":{"shortId":1}}}"#,
            br#"{"security":{"0":{"securityMode":"FOO"}}}"#,
            br#"{"security":{"0":{"publicKeyOrId":[256]}}}"#,
            br#"{"servers":{"0":{"shortId":1,"binding":"UU"}}}"#,
            b"\"x\"",
            b"",
        ] {
            assert!(
                matches!(BootstrapConfig::from_json(bad), Err(ConfigError::Json(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let e = BootstrapConfig::from_json(br#"{"toDelete":["0"]}"#).unwrap_err();
        assert!(e.to_string().contains(" 0 is not a valid path"), "{e}");
    }

    fn valid() -> BootstrapConfig {
        let mut c = BootstrapConfig::default();
        c.servers.insert(0, ServerConfig::new(123));
        c.security.insert(
            1,
            ServerSecurity::psk("coaps://dm:5684", 123, b"dev", b"secret-key-16byt"),
        );
        c
    }

    fn message(c: &BootstrapConfig) -> String {
        match c.validate() {
            Err(ConfigError::Invalid(m)) => m,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn validation_uses_leshans_messages() {
        valid().validate().unwrap();

        let mut c = valid();
        c.security.get_mut(&1).unwrap().secret_key.clear();
        assert_eq!(
            message(&c),
            "pre-shared-key mode, secret key must not be empty"
        );

        let mut c = valid();
        c.servers.get_mut(&0).unwrap().short_id = 0;
        assert_eq!(message(&c), "short ID must not be 0");

        let mut c = valid();
        c.security.get_mut(&1).unwrap().server_id = Some(124);
        assert_eq!(message(&c), "no security entry for server instance: 0");

        let mut c = valid();
        c.security.get_mut(&1).unwrap().uri = None;
        assert_eq!(message(&c), "LwM2M Server URI is mandatory");

        let mut c = valid();
        c.security.get_mut(&1).unwrap().uri = Some(String::new());
        assert_eq!(message(&c), "LwM2M Server URI is mandatory");

        let mut c = valid();
        c.security.get_mut(&1).unwrap().security_mode = None;
        assert_eq!(message(&c), "Security Mode is mandatory");

        let mut c = valid();
        c.security.get_mut(&1).unwrap().oscore_security_mode = Some(4);
        assert_eq!(message(&c), "oscore mode, no oscore Object with instance 4");

        let mut c = valid();
        c.security.insert(
            2,
            ServerSecurity {
                secret_key: vec![1],
                ..ServerSecurity::new("coap://x", SecurityMode::NoSec)
            },
        );
        assert_eq!(message(&c), "NO-SEC mode, secret key must be empty");

        let mut c = valid();
        c.security.get_mut(&1).unwrap().public_key_or_id = vec![0xff];
        assert!(message(&c).contains("utf8"));

        let mut c = valid();
        c.content_format = Some(ContentFormat::Text);
        assert!(message(&c).starts_with("content format"));

        let mut c = valid();
        c.to_delete.push(Path::Resource(0, 0, 1));
        assert_eq!(message(&c), " /0/0/1 is not a valid path");
    }

    #[test]
    fn est_mode_needs_the_server_certificate_and_no_private_key() {
        let mut c = valid();
        c.security.insert(
            1,
            ServerSecurity::est("coaps://dm:5684", 123, &[0x30, 0x82]),
        );
        c.validate().unwrap();
        c.security.get_mut(&1).unwrap().server_public_key.clear();
        assert!(message(&c).starts_with("EST mode, server public key"));
        let mut c = valid();
        let mut est = ServerSecurity::est("coaps://dm:5684", 123, &[0x30]);
        est.secret_key = vec![0x30];
        c.security.insert(1, est);
        assert!(message(&c).starts_with("EST mode, secret key must be empty"));
    }

    #[test]
    fn checks_beyond_leshan() {
        let mut c = valid();
        c.security.get_mut(&1).unwrap().server_id = None;
        c.servers.clear();
        assert!(message(&c).contains("short server ID is mandatory"));

        let mut c = valid();
        let bs = ServerSecurity {
            bootstrap_server: true,
            ..ServerSecurity::psk("coaps://bs", 1, b"a", b"b")
        };
        c.security.insert(0, bs.clone());
        c.validate().unwrap();
        c.security.insert(2, bs);
        assert_eq!(
            message(&c),
            "only one security entry may be a bootstrap server"
        );

        let mut c = valid();
        c.servers.get_mut(&0).unwrap().short_id = 65_535;
        c.security.get_mut(&1).unwrap().server_id = Some(65_535);
        assert!(message(&c).contains("65535"));
    }

    #[test]
    fn debug_redacts_keys() {
        let s = ServerSecurity::psk("coaps://x", 1, b"dev", b"topsecretvalue");
        let text = format!("{s:?}");
        assert!(!text.contains("topsecretvalue") && !text.contains("116, 111"));
        assert!(text.contains("14 bytes redacted"), "{text}");
        let o = OscoreObject {
            oscore_master_secret: Some(b"hush-hush".to_vec()),
            ..OscoreObject::default()
        };
        assert!(!format!("{o:?}").contains("104, 117"));
    }
}
