//! # steward-coap
//!
//! The CoAP message layer shared by the Steward server and its simulated clients, as a
//! deterministic state machine: it takes `now`, a datagram and a peer, and returns datagrams to
//! send, the next timer and events. No sockets, no clock, no tasks (see quinn-proto).
//!
//! - [`endpoint`]: the exchange layer: message IDs, tokens, dedup, retransmission, NSTART.
//! - [`message`]: requests and responses as handlers see them.
//! - [`sim`]: a simulated link (loss, duplication, reordering, MTU) and a client/server `Pair`.
//! - [`wire`]: datagrams ⇄ messages on coap-lite's codec.

pub mod endpoint;
pub mod message;
pub mod sim;
pub mod wire;
