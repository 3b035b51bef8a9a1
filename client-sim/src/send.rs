//! Send (Transport §6.4.5, LwM2M 1.1+): the device reports values on its own with
//! `POST /dp`, each value with the time it was taken (SenML `t`).
//!
//! Either the current values (one entry at the device clock `/3/0/13`) or a time series of
//! the last samples the simulated sensors kept, oldest first.

use steward_coap::message::{Method, Request};
use steward_objects::node::Timestamp;
use steward_objects::{ContentFormat, NodeMap, Path, TimestampedNodes, Version, codec};

use crate::device::Device;
use crate::sensors::Sample;

/// Why a Send was not sent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SendError {
    #[error("Send came with LwM2M 1.1; this device speaks {0}")]
    NotSupported(Version),
    #[error("Send is muted (/1/x/23 Mute Send)")]
    Muted,
    #[error("not registered")]
    NotRegistered,
    #[error("nothing to send at {0}")]
    NotFound(Path),
    #[error("no paths to send")]
    Empty,
    #[error("Send cannot use content format {0:?}")]
    Format(ContentFormat),
    #[error("the values do not encode: {0}")]
    Encode(String),
}

/// Checks that this device may Send in `format`.
pub fn check(device: &Device, format: ContentFormat) -> Result<(), SendError> {
    if device.lwm2m() < Version::V1_1 {
        return Err(SendError::NotSupported(device.lwm2m()));
    }
    if device.mute_send() {
        return Err(SendError::Muted);
    }
    let allowed = match format {
        ContentFormat::SenmlCbor | ContentFormat::SenmlJson => true,
        ContentFormat::Lwm2mCbor => device.lwm2m() >= Version::V1_2,
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(SendError::Format(format))
    }
}

/// The current values of `paths`, stamped with the device clock.
pub fn current(device: &Device, paths: &[Path]) -> Result<TimestampedNodes, SendError> {
    if paths.is_empty() {
        return Err(SendError::Empty);
    }
    let mut nodes = NodeMap::new();
    for path in paths {
        // Security stays private, as for any server access.
        if path.object_id() == Some(0) {
            return Err(SendError::NotFound(*path));
        }
        // Only what the server could read: no write-only secrets.
        let node = device.readable(path).ok_or(SendError::NotFound(*path))?;
        nodes.insert(*path, node);
    }
    Ok(TimestampedNodes {
        time: Some(stamp(device_clock(device))),
        nodes,
    })
}

/// The last `count` samples restricted to `paths` (paths no sensor samples are taken at
/// their current value in every entry), oldest first.
pub fn series<'a>(
    device: &Device,
    samples: impl DoubleEndedIterator<Item = &'a Sample>,
    paths: &[Path],
    count: usize,
) -> Result<Vec<TimestampedNodes>, SendError> {
    let now = current(device, paths)?;
    let mut picked: Vec<&Sample> = samples.rev().take(count).collect();
    picked.reverse();
    if picked.is_empty() {
        return Ok(vec![now]);
    }
    Ok(picked
        .into_iter()
        .map(|sample| {
            let mut nodes = now.nodes.clone();
            for (path, value) in &sample.values {
                if let Some(node) = nodes.get_mut(path) {
                    *node = steward_objects::Node::Resource(steward_objects::Resource::Single(
                        value.clone(),
                    ));
                }
            }
            TimestampedNodes {
                time: Some(stamp(sample.time)),
                nodes,
            }
        })
        .collect())
}

/// `POST /dp` carrying `entries` in `format`.
pub fn request(format: ContentFormat, entries: &[TimestampedNodes]) -> Result<Request, SendError> {
    let body =
        codec::encode_timestamped(format, entries).map_err(|e| SendError::Encode(e.to_string()))?;
    Ok(Request::new(Method::Post)
        .with_path("/dp")
        .with_payload(format.code(), body))
}

fn device_clock(device: &Device) -> i64 {
    match device.node(&crate::sensors::CURRENT_TIME) {
        Some(steward_objects::Node::Resource(steward_objects::Resource::Single(
            steward_objects::Value::Time(t) | steward_objects::Value::Integer(t),
        ))) => t,
        _ => device.config().clock,
    }
}

// Unix seconds fit an f64 exactly for the next few million years.
#[allow(clippy::cast_precision_loss)]
fn stamp(t: i64) -> Timestamp {
    Timestamp(t as f64)
}
