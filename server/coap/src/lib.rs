//! # steward-coap
//!
//! The CoAP message layer shared by the Steward server and its simulated clients, as a
//! deterministic state machine: it takes `now`, a datagram and a peer, and returns datagrams to
//! send, the next timer and events. No sockets, no clock, no tasks (see quinn-proto).
//!
//! - [`message`]: requests and responses as handlers see them.
//! - [`wire`]: datagrams ⇄ messages on coap-lite's codec.

pub mod message;
pub mod wire;
