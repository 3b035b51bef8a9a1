//! What the server knows about a registered device (LwM2M Registration interface, Transport
//! §6.4.3). These records are what the store persists and what the API shows.

use minicbor::{Decode, Encode};

/// LwM2M enabler version a client registered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
pub enum Lwm2mVersion {
    #[n(0)]
    V1_0,
    #[n(1)]
    V1_1,
    #[n(2)]
    V1_2,
}

impl Lwm2mVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            Lwm2mVersion::V1_0 => "1.0",
            Lwm2mVersion::V1_1 => "1.1",
            Lwm2mVersion::V1_2 => "1.2",
        }
    }

    /// The `lwm2m=` value; absent means 1.0. `1.2.1`, `1.2.2` are 1.2 (patch releases).
    pub fn parse(s: &str) -> Option<Lwm2mVersion> {
        match s {
            "1.0" => Some(Lwm2mVersion::V1_0),
            "1.1" | "1.1.1" => Some(Lwm2mVersion::V1_1),
            "1.2" | "1.2.1" | "1.2.2" => Some(Lwm2mVersion::V1_2),
            _ => None,
        }
    }
}

/// How the device authenticated, as the transport reported it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum PeerIdentity {
    /// No DTLS (coap://): only allowed when the server is configured for it.
    #[n(0)]
    Unsecured,
    /// DTLS with a pre-shared key; the PSK identity.
    #[n(1)]
    Psk(#[n(0)] Vec<u8>),
    /// DTLS with an X.509 client certificate; its subject common name.
    #[n(2)]
    X509 {
        #[n(0)]
        common_name: String,
    },
}

/// One registration, as acknowledged with 2.01 Created.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Registration {
    /// The registration ID: the last segment of the Location-Path `/rd/{id}`.
    #[n(0)]
    pub id: String,
    #[n(1)]
    pub endpoint: String,
    #[n(2)]
    pub version: Lwm2mVersion,
    /// Seconds; 0 means no expiry (Server object 1.2).
    #[n(3)]
    pub lifetime: u32,
    /// Transport letters of the binding (`U`, `US`, `T`, ...), without `Q`: queue mode, in
    /// either the 1.0 (`b=UQ`) or the 1.1+ (`Q`) style, is `queue_mode`.
    #[n(4)]
    pub binding: String,
    /// Queue mode (1.1+ `Q` parameter, or `Q` inside a 1.0 binding).
    #[n(5)]
    pub queue_mode: bool,
    #[n(6)]
    pub sms: Option<String>,
    /// The CoRE link-format payload of the last Register or Update that carried one.
    #[n(7)]
    pub object_links: String,
    /// Where the device is reachable: `ip:port` of the registration's source.
    #[n(8)]
    pub address: String,
    #[n(9)]
    pub identity: PeerIdentity,
    /// Unix milliseconds.
    #[n(10)]
    pub registered_at_ms: u64,
    /// Unix milliseconds of the last Register or Update.
    #[n(11)]
    pub last_update_ms: u64,
}

impl Registration {
    /// When the registration expires (unix ms), or `None` for a lifetime of 0.
    pub fn expires_at_ms(&self) -> Option<u64> {
        (self.lifetime != 0).then(|| {
            self.last_update_ms
                .saturating_add(u64::from(self.lifetime).saturating_mul(1000))
        })
    }

    /// Serialised form for the store.
    pub fn to_cbor(&self) -> Vec<u8> {
        // Encoding into a Vec cannot fail.
        minicbor::to_vec(self).unwrap_or_default()
    }

    pub fn from_cbor(bytes: &[u8]) -> Result<Registration, minicbor::decode::Error> {
        minicbor::decode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Registration {
        Registration {
            id: "5a3f".into(),
            endpoint: "urn:dev:ops:001122-sensor-1".into(),
            version: Lwm2mVersion::V1_1,
            lifetime: 60,
            binding: "U".into(),
            queue_mode: true,
            sms: None,
            object_links: "</1/0>,</3/0>".into(),
            address: "127.0.0.1:40000".into(),
            identity: PeerIdentity::Psk(b"sensor-1".to_vec()),
            registered_at_ms: 1_700_000_000_000,
            last_update_ms: 1_700_000_030_000,
        }
    }

    #[test]
    fn cbor_round_trip() {
        let r = sample();
        assert_eq!(Registration::from_cbor(&r.to_cbor()).ok(), Some(r));
        assert!(Registration::from_cbor(&[0xff]).is_err());
    }

    #[test]
    fn expiry() {
        let mut r = sample();
        assert_eq!(r.expires_at_ms(), Some(1_700_000_090_000));
        r.lifetime = 0;
        assert_eq!(r.expires_at_ms(), None);
    }

    #[test]
    fn versions() {
        assert_eq!(Lwm2mVersion::parse("1.2.1"), Some(Lwm2mVersion::V1_2));
        assert_eq!(Lwm2mVersion::parse("2.0"), None);
    }
}
