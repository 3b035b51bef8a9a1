//! # steward
//!
//! The Steward server: LwM2M registration, device management, observations, queue mode and
//! the durable store, built on `steward-coap` (message layer) and `steward-objects` (data
//! model).
//!
//! - [`registry`]: registrations as the server keeps them.
//! - [`bootstrap`]: the Bootstrap-Server as a sans-IO handler, and bootstrap configurations.
//! - [`lwm2m`]: the Registration interface as a sans-IO handler.
//! - [`observation`]: observations as the server keeps them.
//! - [`pki`]: the CA service: EST enrolment policy, DTLS chain checks, CRL and OCSP.
//! - [`store`]: the durable store: the [`store::Store`] trait and its sled implementation.
//! - [`config`]: the configuration of `steward serve` (defaults, TOML file, env, flags).
//! - [`runtime`]: `steward serve` at run time: store, listeners, durability, expiry.
//! - [`devices`]: [`devices::Devices`], the running server's device-management handle.
//! - [`demo`]: `steward demo`, a server and simulated devices driven through every operation.
//! - [`demo_recovery`]: the demo's trust-chain recovery scenario (servers A and B, a fleet
//!   locked in to A, the vendor service), and its building blocks for the end-to-end test.
//! - [`vendor`]: the device vendor's recovery service (`steward vendor ...`), a separate service
//!   that signs trust-chain recovery tokens and audits every signing.

pub mod api;
pub mod bootstrap;
mod channels;
mod clock;
pub mod config;
pub mod demo;
pub mod demo_recovery;
pub mod devices;
pub mod dm;
mod hex;
pub mod lwm2m;
pub mod observation;
pub mod pki;
pub mod pki_cli;
pub mod plugins;
pub mod plugins_cli;
pub mod registry;
pub mod runtime;
pub mod security_cli;
pub mod store;
pub mod tls;
mod uri_query;
pub mod vendor;
