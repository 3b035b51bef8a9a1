//! Content formats and which one to use for which request.
//!
//! Server and client-sim both call [`choose_format`] so they agree on what goes on the wire.

use std::fmt;

use crate::model::Version;
use crate::value::DataType;

/// The CoAP Content-Format IDs LwM2M uses (Transport §6.3, IANA CoAP registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContentFormat {
    Text,
    LinkFormat,
    Opaque,
    Cbor,
    SenmlJson,
    SenmlCbor,
    SenmlEtchJson,
    SenmlEtchCbor,
    Tlv,
    /// 1542: the pre-registration TLV number some 1.0 clients still send.
    LegacyTlv,
    OmaJson,
    /// 1543: the pre-registration OMA JSON number.
    LegacyOmaJson,
    Lwm2mCbor,
}

impl ContentFormat {
    pub const ALL: [ContentFormat; 13] = [
        ContentFormat::Text,
        ContentFormat::LinkFormat,
        ContentFormat::Opaque,
        ContentFormat::Cbor,
        ContentFormat::SenmlJson,
        ContentFormat::SenmlCbor,
        ContentFormat::SenmlEtchJson,
        ContentFormat::SenmlEtchCbor,
        ContentFormat::Tlv,
        ContentFormat::LegacyTlv,
        ContentFormat::OmaJson,
        ContentFormat::LegacyOmaJson,
        ContentFormat::Lwm2mCbor,
    ];

    pub const fn code(self) -> u16 {
        match self {
            ContentFormat::Text => 0,
            ContentFormat::LinkFormat => 40,
            ContentFormat::Opaque => 42,
            ContentFormat::Cbor => 60,
            ContentFormat::SenmlJson => 110,
            ContentFormat::SenmlCbor => 112,
            ContentFormat::SenmlEtchJson => 320,
            ContentFormat::SenmlEtchCbor => 322,
            ContentFormat::Tlv => 11542,
            ContentFormat::LegacyTlv => 1542,
            ContentFormat::OmaJson => 11543,
            ContentFormat::LegacyOmaJson => 1543,
            ContentFormat::Lwm2mCbor => 11544,
        }
    }

    pub fn from_code(code: u16) -> Option<ContentFormat> {
        ContentFormat::ALL.into_iter().find(|f| f.code() == code)
    }

    pub const fn media_type(self) -> &'static str {
        match self {
            ContentFormat::Text => "text/plain;charset=utf-8",
            ContentFormat::LinkFormat => "application/link-format",
            ContentFormat::Opaque => "application/octet-stream",
            ContentFormat::Cbor => "application/cbor",
            ContentFormat::SenmlJson => "application/senml+json",
            ContentFormat::SenmlCbor => "application/senml+cbor",
            ContentFormat::SenmlEtchJson => "application/senml-etch+json",
            ContentFormat::SenmlEtchCbor => "application/senml-etch+cbor",
            ContentFormat::Tlv | ContentFormat::LegacyTlv => "application/vnd.oma.lwm2m+tlv",
            ContentFormat::OmaJson | ContentFormat::LegacyOmaJson => {
                "application/vnd.oma.lwm2m+json"
            }
            ContentFormat::Lwm2mCbor => "application/vnd.oma.lwm2m+cbor",
        }
    }

    /// The name Leshan's REST API uses for `format=` (`TLV`, `SENML_CBOR`, ...).
    pub const fn leshan_name(self) -> &'static str {
        match self {
            ContentFormat::Text => "TEXT",
            ContentFormat::LinkFormat => "LINK",
            ContentFormat::Opaque => "OPAQUE",
            ContentFormat::Cbor => "CBOR",
            ContentFormat::SenmlJson => "SENML_JSON",
            ContentFormat::SenmlCbor => "SENML_CBOR",
            ContentFormat::SenmlEtchJson => "SENML_ETCH_JSON",
            ContentFormat::SenmlEtchCbor => "SENML_ETCH_CBOR",
            ContentFormat::Tlv | ContentFormat::LegacyTlv => "TLV",
            ContentFormat::OmaJson | ContentFormat::LegacyOmaJson => "JSON",
            ContentFormat::Lwm2mCbor => "LWM2M_CBOR",
        }
    }

    pub fn from_leshan_name(name: &str) -> Option<ContentFormat> {
        let upper = name.to_ascii_uppercase();
        ContentFormat::ALL
            .into_iter()
            .filter(|f| !matches!(f, ContentFormat::LegacyTlv | ContentFormat::LegacyOmaJson))
            .find(|f| f.leshan_name() == upper)
    }

    /// Formats that carry one value only (Transport §6.3: text, opaque, CBOR).
    pub const fn is_single_value(self) -> bool {
        matches!(
            self,
            ContentFormat::Text | ContentFormat::Opaque | ContentFormat::Cbor
        )
    }

    /// Formats that can carry nodes at several paths (composite operations, Send).
    pub const fn is_composite(self) -> bool {
        matches!(
            self,
            ContentFormat::SenmlJson | ContentFormat::SenmlCbor | ContentFormat::Lwm2mCbor
        )
    }
}

impl fmt::Display for ContentFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.media_type(), self.code())
    }
}

/// What a request carries or asks for, as far as format choice is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// One value: a single resource or a resource instance, of this type.
    SingleValue(DataType),
    /// An object, an instance or a multiple resource.
    Tree,
    /// Nodes at several paths: Read/Write/Observe-Composite, Send.
    Composite,
}

/// What the client told us about formats at registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFormats {
    /// `lwm2m=` (absent means 1.0).
    pub lwm2m: Version,
    /// `ct=` on the root link; empty when the client did not say.
    pub announced: Vec<ContentFormat>,
}

impl ClientFormats {
    pub fn new(lwm2m: Version, announced: Vec<ContentFormat>) -> ClientFormats {
        ClientFormats { lwm2m, announced }
    }

    fn announces(&self, f: ContentFormat) -> bool {
        self.announced.contains(&f)
    }

    /// True when the client may be sent `format` for `payload` (what it announced, or what its
    /// LwM2M version makes mandatory when it announced nothing).
    pub fn accepts(&self, format: ContentFormat, payload: Payload) -> bool {
        let version_allows = match format {
            ContentFormat::SenmlJson | ContentFormat::SenmlCbor | ContentFormat::Cbor => {
                self.lwm2m >= Version::V1_1
            }
            ContentFormat::Lwm2mCbor
            | ContentFormat::SenmlEtchJson
            | ContentFormat::SenmlEtchCbor => self.lwm2m >= Version::V1_2,
            _ => true,
        };
        let shape_allows = match payload {
            Payload::SingleValue(_) => format != ContentFormat::LinkFormat,
            Payload::Tree => !format.is_single_value() && format != ContentFormat::LinkFormat,
            Payload::Composite => format.is_composite(),
        };
        version_allows && shape_allows
    }
}

/// The format to use for a request to a client, or `None` when nothing the client supports can
/// carry it (a composite operation for a 1.0 client).
///
/// Rules (Transport §6.3, and what Leshan and the LwM2M test specs expect):
/// - one value: opaque for Opaque resources, text for everything else;
/// - a tree: TLV for 1.0; for 1.1+ LwM2M CBOR when announced (1.2), else SenML CBOR unless the
///   client announced formats without it, then SenML JSON or TLV as announced;
/// - composite (1.1+): LwM2M CBOR when announced, else SenML CBOR, else SenML JSON as announced.
pub fn choose_format(client: &ClientFormats, payload: Payload) -> Option<ContentFormat> {
    use ContentFormat as F;
    let v1_0 = client.lwm2m < Version::V1_1;
    match payload {
        Payload::SingleValue(DataType::Opaque) => Some(F::Opaque),
        Payload::SingleValue(_) => Some(F::Text),
        Payload::Tree if v1_0 => Some(F::Tlv),
        Payload::Tree | Payload::Composite => {
            let order: &[F] = if payload == Payload::Tree {
                &[F::Lwm2mCbor, F::SenmlCbor, F::SenmlJson, F::Tlv]
            } else {
                &[F::Lwm2mCbor, F::SenmlCbor, F::SenmlJson]
            };
            if v1_0 {
                return None;
            }
            let picked = order
                .iter()
                .copied()
                .find(|f| client.announces(*f) && client.accepts(*f, payload));
            // A 1.1+ client that announced nothing usable still speaks SenML CBOR, the 1.1
            // default; without it the server could not send it a tree at all.
            Some(picked.unwrap_or(F::SenmlCbor))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ContentFormat as F;

    #[test]
    fn codes_round_trip() {
        for f in ContentFormat::ALL {
            assert_eq!(ContentFormat::from_code(f.code()), Some(f));
        }
        assert_eq!(ContentFormat::from_code(41), None);
        assert_eq!(
            ContentFormat::from_leshan_name("senml_cbor"),
            Some(F::SenmlCbor)
        );
        assert_eq!(ContentFormat::from_leshan_name("TLV"), Some(F::Tlv));
    }

    #[test]
    fn defaults_per_version() {
        let v10 = ClientFormats::new(Version::V1_0, vec![]);
        let v11 = ClientFormats::new(Version::V1_1, vec![]);
        let v12_cbor = ClientFormats::new(Version::V1_2, vec![F::Lwm2mCbor, F::SenmlCbor]);
        let v11_json = ClientFormats::new(Version::V1_1, vec![F::SenmlJson, F::Tlv]);
        assert_eq!(choose_format(&v10, Payload::Tree), Some(F::Tlv));
        assert_eq!(choose_format(&v10, Payload::Composite), None);
        assert_eq!(
            choose_format(&v10, Payload::SingleValue(DataType::Integer)),
            Some(F::Text)
        );
        assert_eq!(
            choose_format(&v10, Payload::SingleValue(DataType::Opaque)),
            Some(F::Opaque)
        );
        assert_eq!(choose_format(&v11, Payload::Tree), Some(F::SenmlCbor));
        assert_eq!(choose_format(&v11, Payload::Composite), Some(F::SenmlCbor));
        assert_eq!(choose_format(&v12_cbor, Payload::Tree), Some(F::Lwm2mCbor));
        assert_eq!(
            choose_format(&v12_cbor, Payload::Composite),
            Some(F::Lwm2mCbor)
        );
        assert_eq!(choose_format(&v11_json, Payload::Tree), Some(F::SenmlJson));
        assert_eq!(
            choose_format(&v11_json, Payload::Composite),
            Some(F::SenmlJson)
        );
    }

    #[test]
    fn lwm2m_cbor_needs_1_2() {
        // A 1.1 client announcing 11544 is confused; do not send it a 1.2 format.
        let c = ClientFormats::new(Version::V1_1, vec![F::Lwm2mCbor, F::SenmlJson]);
        assert_eq!(choose_format(&c, Payload::Tree), Some(F::SenmlJson));
    }
}
