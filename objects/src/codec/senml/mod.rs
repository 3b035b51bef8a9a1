//! SenML (RFC 8428) in JSON and CBOR, as LwM2M uses it.
pub mod cbor;
pub mod json;
