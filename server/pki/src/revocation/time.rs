//! Conversions between `SystemTime` and the ASN.1 time types of CRLs and OCSP.

use std::time::{Duration, SystemTime};

use der::DateTime;
use der::asn1::{GeneralizedTime, UtcTime};
use x509_cert::time::Time;
use x509_ocsp::OcspGeneralizedTime;

/// RFC 5280 §4.1.2.5 / §5.1.2.4: UTCTime through 2049, GeneralizedTime from 2050 on.
/// (x509-cert's `TryFrom<SystemTime>` always picks GeneralizedTime, which strict parsers
/// reject for pre-2050 dates.)
pub(crate) fn x509_time(t: SystemTime) -> der::Result<Time> {
    let dt = DateTime::from_system_time(t)?;
    if dt.year() < 2050 {
        Ok(Time::UtcTime(UtcTime::from_date_time(dt)?))
    } else {
        Ok(Time::GeneralTime(GeneralizedTime::from_date_time(dt)))
    }
}

/// OCSP uses GeneralizedTime only (RFC 6960 §4.2.1). Sub-second precision is dropped, as DER
/// GeneralizedTime in PKIX must not carry fractional seconds.
pub(crate) fn ocsp_time(t: SystemTime) -> der::Result<OcspGeneralizedTime> {
    Ok(OcspGeneralizedTime(GeneralizedTime::from_system_time(t)?))
}

pub(crate) fn from_generalized(t: &GeneralizedTime) -> SystemTime {
    SystemTime::UNIX_EPOCH + t.to_unix_duration()
}

/// Seconds since the epoch; `None` before 1970 (nothing in a PKI we run predates it).
pub(crate) fn unix_seconds(t: SystemTime) -> Option<u64> {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .map(|d: Duration| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_before_2050_generalized_after() {
        let y2030 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_893_456_000);
        assert!(matches!(x509_time(y2030), Ok(Time::UtcTime(_))));
        let y2051 = SystemTime::UNIX_EPOCH + Duration::from_secs(2_556_144_000);
        assert!(matches!(x509_time(y2051), Ok(Time::GeneralTime(_))));
    }

    #[test]
    fn ocsp_time_round_trips_whole_seconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_900);
        let g = ocsp_time(t).map(|g| from_generalized(&g.0));
        assert_eq!(
            g.ok(),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
    }
}
