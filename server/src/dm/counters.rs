//! Downlink requests counted by operation and outcome, for every user of
//! [`Devices`](crate::devices::Devices) (HTTP API, CLI, plugins): `Devices::start` counts the
//! requests refused before sending, `PendingRequest::outcome` the others.
//!
//! Keys are `&'static str` pairs from closed sets ([`DownlinkRequest::operation`] ×
//! [`RequestResult`]), so the table stays small whatever the traffic.
//!
//! [`DownlinkRequest::operation`]: super::DownlinkRequest::operation

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use super::{DmError, Fault};

/// How a request ended, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RequestResult {
    /// The device answered with a success code.
    Success,
    /// The device answered with an error code, or cannot do it (version, formats).
    DeviceError,
    /// No answer in time, or a queued request expired before the device woke up.
    Timeout,
    /// Refused before sending: invalid request, unknown endpoint, full queue.
    Rejected,
    /// Anything else: unusable answer, transport failure, deregistration, shutdown.
    Failed,
}

impl RequestResult {
    pub fn of<T>(result: &Result<T, DmError>) -> RequestResult {
        match result {
            Ok(_) => RequestResult::Success,
            Err(e) => RequestResult::of_error(e),
        }
    }

    pub fn of_error(e: &DmError) -> RequestResult {
        match e {
            DmError::Timeout | DmError::Expired { .. } => RequestResult::Timeout,
            DmError::QueueFull { .. } => RequestResult::Rejected,
            _ => match e.fault() {
                Fault::Caller => RequestResult::Rejected,
                Fault::Device => RequestResult::DeviceError,
                Fault::DeviceMisbehaved | Fault::Transport => RequestResult::Failed,
            },
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            RequestResult::Success => "success",
            RequestResult::DeviceError => "device_error",
            RequestResult::Timeout => "timeout",
            RequestResult::Rejected => "rejected",
            RequestResult::Failed => "failed",
        }
    }
}

/// Request counts since the server started.
#[derive(Debug, Default)]
pub struct DmCounters {
    counts: Mutex<BTreeMap<(&'static str, RequestResult), u64>>,
}

impl DmCounters {
    pub fn record<T>(&self, operation: &'static str, result: &Result<T, DmError>) {
        self.count(operation, RequestResult::of(result));
    }

    pub fn count(&self, operation: &'static str, result: RequestResult) {
        *self
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((operation, result))
            .or_default() += 1;
    }

    /// `(operation, result, count)`, ordered by operation then result.
    pub fn snapshot(&self) -> Vec<(&'static str, RequestResult, u64)> {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(&(op, result), &n)| (op, result, n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use steward_coap::message::Code;

    #[test]
    fn outcomes_are_classified_and_counted() {
        let c = DmCounters::default();
        c.record("Read", &Ok::<(), DmError>(()));
        c.record("Read", &Ok::<(), DmError>(()));
        c.record::<()>(
            "Read",
            &Err(DmError::Device {
                code: Code::NOT_FOUND,
                diagnostic: String::new(),
            }),
        );
        c.record::<()>("Write", &Err(DmError::Timeout));
        c.record::<()>("Write", &Err(DmError::NotRegistered("x".into())));
        c.record::<()>("Execute", &Err(DmError::ServerStopped));
        assert_eq!(
            c.snapshot(),
            vec![
                ("Execute", RequestResult::Failed, 1),
                ("Read", RequestResult::Success, 2),
                ("Read", RequestResult::DeviceError, 1),
                ("Write", RequestResult::Timeout, 1),
                ("Write", RequestResult::Rejected, 1),
            ]
        );
    }
}
