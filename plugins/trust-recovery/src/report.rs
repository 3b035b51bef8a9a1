//! A device's Trust Recovery instance (`/42769/0`) as read: the resources the plugin decides on.

use steward_claims::recovery::{FINGERPRINT_LEN, MAX_NAME_LEN, TOKEN_ID_LEN};
use steward_plugin_sdk::{Entry, Value};

use crate::records::{DeviceRecord, hex, trust_state_name};

/// What a device reported in `/42769/0`: a whole instance, so a resource that is absent (or
/// empty) has no value on the device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DeviceReport {
    /// 0: `None` while the device holds no CTL.
    pub fingerprint: Option<[u8; FINGERPRINT_LEN]>,
    /// 1.
    pub installation: Option<String>,
    /// 2.
    pub trust_state: Option<i64>,
    /// 4.
    pub last_result: Option<String>,
    /// 6.
    pub ctl_version: Option<i64>,
    /// 8: `None` until the device accepts a token.
    pub last_token_id: Option<[u8; TOKEN_ID_LEN]>,
    /// 9.
    pub last_outcome: Option<i64>,
}

/// Parses the entries of a read of `/42769/0`. The resources the plugin matches tokens on
/// (fingerprint, installation, last token id) must have their type and size, or the whole
/// report is refused: a device that reports garbage is not written to. Other resources of an
/// unexpected type are ignored.
pub(crate) fn parse_report(entries: &[Entry]) -> Result<DeviceReport, String> {
    let mut report = DeviceReport::default();
    for entry in entries {
        let Some(resource) = entry.path.strip_prefix("/42769/0/") else {
            continue;
        };
        match (resource, &entry.value) {
            ("0", value) => report.fingerprint = fixed(value, "CTL Fingerprint")?,
            ("1", Value::Text(text)) if !text.is_empty() && text.len() <= MAX_NAME_LEN => {
                report.installation = Some(text.clone());
            }
            ("1", _) => {
                return Err(format!(
                    "Installation ID is not a text of 1..={MAX_NAME_LEN} bytes"
                ));
            }
            ("2", value) => report.trust_state = integer(value),
            ("4", Value::Text(text)) => report.last_result = Some(text.clone()),
            ("6", value) => report.ctl_version = integer(value),
            ("8", value) => report.last_token_id = fixed(value, "Last Token ID")?,
            ("9", value) => report.last_outcome = integer(value),
            _ => {}
        }
    }
    Ok(report)
}

impl DeviceReport {
    /// Copies the report into the device's record: every resource, absent ones as empty.
    pub fn apply_to(&self, record: &mut DeviceRecord) {
        record.fingerprint = self.fingerprint.map(|f| hex(&f)).unwrap_or_default();
        record.installation = self.installation.clone().unwrap_or_default();
        record.trust_state = trust_state_name(self.trust_state).into();
        record.last_result = self.last_result.clone().unwrap_or_default();
        record.ctl_version = self.ctl_version;
        record.last_token_id = self.last_token_id.map(|t| hex(&t)).unwrap_or_default();
        record.last_outcome = self.last_outcome;
    }
}

/// An opaque value of exactly `N` bytes, or empty.
fn fixed<const N: usize>(value: &Value, what: &str) -> Result<Option<[u8; N]>, String> {
    match value {
        Value::Opaque(bytes) if bytes.is_empty() => Ok(None),
        Value::Opaque(bytes) => <[u8; N]>::try_from(bytes.as_slice())
            .map(Some)
            .map_err(|_| format!("{what} is {} bytes, not {N}", bytes.len())),
        _ => Err(format!("{what} is not opaque")),
    }
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Integer(n) => Some(*n),
        Value::Unsigned(n) => i64::try_from(*n).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use steward_plugin_sdk::entry;

    use super::*;

    fn full() -> Vec<Entry> {
        vec![
            entry("/42769/0/0", Value::Opaque(vec![0xab; 32])),
            entry("/42769/0/1", Value::Text("site-42".into())),
            entry("/42769/0/2", Value::Integer(2)),
            entry("/42769/0/4", Value::Text("recovered".into())),
            entry("/42769/0/6", Value::Unsigned(3)),
            entry("/42769/0/7", Value::Opaque(vec![0; 32])),
            entry("/42769/0/8", Value::Opaque(vec![0xa0; 16])),
            entry("/42769/0/9", Value::Integer(1)),
        ]
    }

    #[test]
    fn a_full_read() {
        let report = parse_report(&full()).expect("parses");
        assert_eq!(report.fingerprint, Some([0xab; 32]));
        assert_eq!(report.installation.as_deref(), Some("site-42"));
        assert_eq!(report.trust_state, Some(2));
        assert_eq!(report.ctl_version, Some(3));
        assert_eq!(report.last_token_id, Some([0xa0; 16]));
        assert_eq!(report.last_outcome, Some(1));

        let mut record = DeviceRecord::new("ep", 0);
        report.apply_to(&mut record);
        assert_eq!(record.fingerprint, "ab".repeat(32));
        assert_eq!(record.installation, "site-42");
        assert_eq!(record.trust_state, "recovery");
        assert_eq!(record.last_result, "recovered");
        assert_eq!(record.ctl_version, Some(3));
        assert_eq!(record.last_token_id, "a0".repeat(16));
        assert_eq!(record.last_outcome, Some(1));
    }

    #[test]
    fn empty_or_absent_values_mean_none() {
        let report = parse_report(&[
            entry("/42769/0/0", Value::Opaque(vec![])),
            entry("/42769/0/8", Value::Opaque(vec![])),
        ])
        .expect("parses");
        assert_eq!(report, DeviceReport::default());
        // The instance was read whole: what it no longer has is cleared in the record.
        let mut record = DeviceRecord::new("ep", 0);
        parse_report(&full()).expect("parses").apply_to(&mut record);
        parse_report(&[entry("/42769/0/1", Value::Text("site-42".into()))])
            .expect("parses")
            .apply_to(&mut record);
        assert_eq!(record.fingerprint, "");
        assert_eq!(record.installation, "site-42");
        assert_eq!(record.trust_state, "unknown");
        assert_eq!(record.last_token_id, "");
        assert_eq!(record.last_outcome, None);
    }

    #[test]
    fn garbage_in_matched_resources_is_refused() {
        for bad in [
            entry("/42769/0/0", Value::Opaque(vec![1; 31])),
            entry("/42769/0/0", Value::Text("ab".into())),
            entry("/42769/0/1", Value::Text(String::new())),
            entry("/42769/0/1", Value::Text("x".repeat(129))),
            entry("/42769/0/1", Value::Integer(1)),
            entry("/42769/0/8", Value::Opaque(vec![1; 17])),
        ] {
            assert!(parse_report(std::slice::from_ref(&bad)).is_err(), "{bad:?}");
        }
        // Other resources of an odd type, or other objects, are ignored.
        let report = parse_report(&[
            entry("/42769/0/2", Value::Text("locked".into())),
            entry("/3/0/0", Value::Text("ACME".into())),
            entry("/42769/1/0", Value::Text("not ours".into())),
        ])
        .expect("parses");
        assert_eq!(report, DeviceReport::default());
    }
}
