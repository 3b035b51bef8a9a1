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
//! - [`bootstrap`]: the client-initiated bootstrap (Bootstrap interface, client side) and the
//!   server accounts it leaves in /0 and /1; the bootstrap server's operations are
//!   [`device::handle_bootstrap`].
//! - [`state`]: what a device keeps across power cycles (`--state-dir`).
//! - [`est`]: Security Mode 4 (EST-coaps enrolment and re-enrolment with the bootstrap
//!   server) and the OCSP check of the LwM2M server's certificate, as a sans-IO session.
//! - [`transport`]: which server (bootstrap or LwM2M) a device on sockets must reach now,
//!   and with which DTLS credentials.
//! - [`managed`]: one device on sockets whose driver follows it from the bootstrap server to
//!   the LwM2M server (factory credentials → bootstrap → EST → registered).
//!
//! Like the CoAP layer, nothing here reads a clock: every call takes `now`.

pub mod bootstrap;
pub mod device;
pub mod dtls;
pub mod est;
pub mod firmware;
pub mod fleet;
pub mod harness;
pub mod managed;
pub mod observe;
pub mod queue;
pub mod registration;
mod retry;
pub mod send;
pub mod sensors;
mod sim_device;
pub mod state;
pub mod transport;
pub mod trust;

pub use bootstrap::{Bootstrap, BootstrapEvent, Security, ServerAccount};
pub use device::{
    BootstrapServer, Device, DeviceConfig, Effect, ExtraObject, ExtraObjectError, handle,
    handle_bootstrap,
};
pub use queue::QueueTiming;
pub use registration::{Registration, RegistrationConfig, RegistrationEvent};
pub use send::SendError;
pub use sensors::SensorConfig;
pub use sim_device::{Client, DeviceEvent, PeerResolver, ReenrolError, SimDevice};
pub use state::{DeviceState, StateError, StateStore};

/// Re-exported so users of this crate name the same stack type.
pub use steward_coap::stack::Stack;
