//! The Bootstrap-Server (Transport §6.4.2, Core §6.1), sans-IO like [`crate::lwm2m`]: requests
//! and their authenticated peer in, responses, requests to send and events out.
//!
//! - [`config`]: bootstrap configurations in Leshan's `BootstrapConfig` JSON shape, import,
//!   export and validation (Security Mode 4, EST, included).
//! - [`nodes`]: a configuration as /0, /1, /2, /21 instances.
//! - [`request`]: `POST /bs` and `GET /bspack` parsed; who may bootstrap as which endpoint.
//! - [`session`]: [`BootstrapSessions`], the session state machine (Discover, Delete, Write,
//!   Finish), with its actions, events and failure reasons.
//! - [`offers`]: plugins' bootstrap offers, written first in the sessions they apply to.
//! - [`pack`]: Bootstrap-Pack (1.2).
//! - [`trigger`]: the `/1/x/9` target of a server-initiated bootstrap.
//! - [`error`]: every refusal of an uplink request, and its CoAP code.
//!
//! Configurations are stored by [`crate::store::Store::put_bootstrap_config`] and read through
//! [`session::ConfigSource`], which the store implements.

pub mod config;
pub mod error;
pub mod nodes;
pub mod offers;
pub mod pack;
pub mod request;
pub mod session;
pub mod trigger;

pub use config::{
    AclConfig, BootstrapConfig, CertificateUsage, ConfigError, MatchingType, OscoreObject,
    SecurityMode, ServerConfig, ServerSecurity, SmsSecurityMode, configs_from_json,
    configs_to_json,
};
pub use error::BootstrapError;
pub use offers::{NewOffer, NoOffers, Offer, OfferChange, OfferError, OfferRegistry, OfferSource};
pub use request::{BootstrapRequest, PackRequest, UplinkRequest, is_bootstrap_path};
pub use session::{
    Action, BootstrapEvent, BootstrapOp, BootstrapSessions, ConfigSource, Content, Correlation,
    FailureReason, OFFER_DIAGNOSTIC_BYTES, OpKind, Outcome, Outgoing, SessionId, SessionsConfig,
    StepInfo,
};
pub use trigger::{TriggerError, bootstrap_trigger};
