//! The plugin host.
pub mod bindings;
pub mod convert;
pub mod describe;
pub mod dispatch;
pub mod effects;
pub mod host;
pub mod keys;
pub mod manifest;
pub mod offers;
pub mod sandbox;
