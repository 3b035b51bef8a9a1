//! # steward-claims
//!
//! The claim tables of the signed messages Steward relays, fixed once so that the server, the
//! plugins and the simulated client agree: for now the trust-chain recovery token's
//! ([`recovery`], seed 000). Claims only: signing and verifying (COSE_Sign1, ES256) live in
//! `steward-pki` for the server and the client, and behind the host's `cose-verify` for a
//! plugin.
//!
//! Pure Rust without C code or I/O (minicbor and thiserror only), so that it builds for
//! `wasm32-wasip2` and a plugin can depend on it by path.

pub mod cbor;
pub mod recovery;

pub use recovery::{ClaimError, Expectation, RecoveryClaims};
