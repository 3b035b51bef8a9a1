//! The CoRE link format (RFC 6690, content format 40) and the LwM2M attributes it carries.
//!
//! Not a [`crate::codec`] format: link-format payloads describe the object tree rather than
//! hold its values, so each LwM2M use has its own entry point.
//!
//! - [`parse()`] / [`format()`]: generic RFC 6690 links ([`Link`], [`ParamValue`]), for anything
//!   that is not LwM2M-specific (`/.well-known/core`, Corelnk resource values).
//! - [`ObjectLinks`]: the Register / Update payload: root link with the alternate path and
//!   content formats, objects with versions, instances.
//! - [`NotificationAttributes`]: Write-Attributes (and 1.2 Observe) query parameters, tri-state
//!   ([`Attr`]): set, unset, absent; with the Core validity rules.
//! - [`DiscoverAnswer`]: Discover and Bootstrap-Discover answers, both directions.
//!
//! Every parser takes the raw payload bytes and is total: any input gives a value or a
//! [`LinkError`] (syntax errors carry the byte offset), nothing panics, and nothing is
//! allocated in proportion to a count the input claims. Every `to_links`/`Display` output
//! parses back to an equal value.

mod attributes;
mod discover;
mod registration;
mod syntax;

pub use attributes::{Attr, AttributeError, NotificationAttributes, Properties};
pub use discover::{DiscoverAnswer, DiscoverLink};
pub use registration::{AnnouncedObject, LWM2M_RESOURCE_TYPE, ObjectLinks, RootLink};
pub use syntax::{Link, ParamValue, SyntaxError, format, is_ptoken, parse};

use crate::model::Version;
use crate::path::PathError;

/// A link-format payload that cannot be used. Every variant means 4.00 Bad Request to the
/// peer that sent it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LinkError {
    #[error("link format is not UTF-8: invalid byte at offset {at}")]
    NotUtf8 { at: usize },
    #[error("malformed link format at byte {at}: {problem}")]
    Syntax { at: usize, problem: SyntaxError },
    #[error("link target <{target}> is not an LwM2M path: {source}")]
    NotAPath { target: String, source: PathError },
    #[error("more than one root link (rt=\"oma.lwm2m\" or </>)")]
    SeveralRootLinks,
    #[error("alternate path <{0}> must be absolute and have no numeric segment")]
    BadAlternatePath(String),
    #[error("ct={0:?} is not a content-format number or a space-separated list of them")]
    BadContentFormat(String),
    #[error("object {object} is announced with two versions, {first} and {second}")]
    ConflictingVersions {
        object: u16,
        first: Version,
        second: Version,
    },
    #[error("link <{target}>: {source}")]
    Attribute {
        target: String,
        source: AttributeError,
    },
}
