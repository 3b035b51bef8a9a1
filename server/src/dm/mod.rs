//! Device Management & Service Enablement and Information Reporting, server side (Transport
//! §6.4.4, §6.4.5, §6.5).
//!
//! - [`request`]: typed [`DownlinkRequest`]s and how each becomes a CoAP request for one
//!   registered client (paths, formats, validation before sending).
//! - [`response`]: CoAP answers decoded into typed [`DownlinkResponse`]s.
//! - [`service`]: [`DeviceRequests`], the sans-IO service everyone uses to talk to devices:
//!   timeouts, observations and notifications, queue mode and presence.
//! - [`queue`]: the per-endpoint queue of requests for sleeping devices.
//! - [`send`]: the Send operation (`POST /dp`) into a [`SendReport`].
//! - [`error`]: [`DmError`] by fault domain, and its one mapping to CoAP codes.

pub mod counters;
pub mod error;
pub mod queue;
pub mod request;
pub mod response;
pub mod send;
pub mod service;

pub use counters::{DmCounters, RequestResult};
pub use error::{DmError, Fault};
pub use request::{BuiltRequest, DownlinkRequest, RequestKind, WriteMode};
pub use response::DownlinkResponse;
pub use send::{SendError, SendReport, handle_send, is_send, parse_send};
pub use service::{
    Command, DeviceRequests, DmConfig, DmEvent, MAX_TRANSMIT_WAIT, Notification, Ticket,
};
