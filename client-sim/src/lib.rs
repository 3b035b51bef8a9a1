//! # steward-client
//!
//! Simulated LwM2M client devices: real clients on Steward's own CoAP stack, used by tests
//! (in simulated time, on `steward_coap::sim::Pair`) and as a load generator (over UDP).
//!
//! - [`device`]: a device's object tree and the DM operations on it, as the pure function
//!   [`device::handle`].
//! - [`registration`]: Register / Update / Deregister as a sans-IO state machine.
//! - [`SimDevice`]: ties both to a CoAP [`Stack`] it does not own: it answers the server's
//!   requests and sends its registration requests. [`Client`] owns a stack too and is what
//!   the tokio UDP driver runs (it implements `steward_transport::Machine`).
//! - [`firmware`]: the Firmware Update object's state machine and package format.
//! - [`dtls`]: a [`Client`] over DTLS (PSK or X.509), reconnecting and registering again when
//!   its session fails.
//! - [`fleet`]: many devices from one process (shards of sockets, not a task per device).
//! - [`harness`]: runs a `SimDevice` on a `Pair` against an in-test server.
//!
//! Like the CoAP layer, nothing here reads a clock: every call takes `now`.

pub mod device;
pub mod dtls;
pub mod firmware;
pub mod fleet;
pub mod harness;
pub mod observe;
pub mod queue;
pub mod registration;
pub mod send;
pub mod sensors;
mod sim_device;

pub use device::{Device, DeviceConfig, Effect, handle};
pub use queue::QueueTiming;
pub use registration::{Registration, RegistrationConfig, RegistrationEvent};
pub use send::SendError;
pub use sensors::SensorConfig;
pub use sim_device::{Client, DeviceEvent, PeerResolver, SimDevice};

/// Re-exported so users of this crate name the same stack type.
pub use steward_coap::stack::Stack;
