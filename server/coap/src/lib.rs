//! # steward-coap
//!
//! The CoAP message layer shared by the Steward server and its simulated clients, as a
//! deterministic state machine: it takes `now`, a datagram and a peer, and returns datagrams to
//! send, the next timer and events. No sockets, no clock, no tasks (see quinn-proto).
//!
//! - [`endpoint`]: the exchange layer: message IDs, tokens, dedup, retransmission, NSTART.
//! - [`block`]: block-wise transfers (RFC 7959) and Request-Tag (RFC 9175 §3), both sides.
//! - [`observe`]: observer registrations and notification freshness (RFC 7641), both sides.
//! - [`echo`]: Echo challenges and retries (RFC 9175 §2).
//! - [`message`]: requests and responses as handlers see them.
//! - [`stack`]: the layer applications drive: an endpoint with block-wise, observe and Echo
//!   made transparent.
//! - [`sim`]: a simulated link (loss, duplication, reordering, MTU) and a client/server `Pair`.
//! - [`wire`]: datagrams ⇄ messages on coap-lite's codec.

pub mod block;
pub mod echo;
pub mod endpoint;
pub mod message;
pub mod observe;
pub mod sim;
pub mod stack;
pub mod wire;
