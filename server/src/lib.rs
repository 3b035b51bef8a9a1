//! # steward
//!
//! The Steward server: LwM2M registration, device management, observations, queue mode and
//! the durable store, built on `steward-coap` (message layer) and `steward-objects` (data
//! model).
//!
//! - [`registry`]: registrations as the server keeps them.

pub mod registry;
