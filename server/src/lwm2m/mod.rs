//! The LwM2M server side of the device interfaces. So far: the Registration interface
//! (Transport §6.4.3).
//!
//! - [`registration`]: CoAP request → typed Register / Update / De-register (parse only).
//! - [`binding`]: the `b=` parameter in its 1.0 (`UQ`) and 1.1+ (`U` + `Q`) styles.
//! - [`identity`]: endpoint name ⇄ authenticated (D)TLS identity; who owns a registration.
//! - [`registrations`]: the in-memory registry (replace on re-Register, expiry, lookups).
//! - [`server`]: the sans-IO handler: event in, response and [`server::DomainEvent`]s out.
//! - [`error`]: every refusal, and the single mapping to a CoAP code.

pub mod binding;
pub mod error;
pub mod identity;
pub mod registration;
pub mod registrations;
pub mod server;

pub use error::RegistrationError;
pub use registration::{DeregisterRequest, RegisterRequest, RegistrationRequest, UpdateRequest};
pub use registrations::{LinkSummary, RegisteredClient, Registrations, RestoreIssue};
pub use server::{DomainEvent, Handled, Lwm2mServer, Peer, Reply, ServerConfig};
