//! # steward-objects
//!
//! The LwM2M data model shared by the Steward server, its plugins and the simulated client:
//! paths, typed values, nodes, object models from OMA DDF XML, and every LwM2M content format
//! in both directions. No I/O and no async: everything here is a pure function of its input.
//!
//! - [`path`]: `/o/i/r/ri` paths and IDs.
//! - [`value`]: the LwM2M data types and values.
//! - [`node`]: objects, instances, resources, resource instances, time series.
//! - [`model`] and [`ddf`]: object models and the bundled core objects.
//! - [`codec`]: TLV, text, opaque, CBOR, SenML JSON/CBOR, OMA JSON, LwM2M CBOR.
//! - [`link`]: the CoRE link format with LwM2M attributes.
//! - [`format`]: content-format IDs and which one to use for which request.
//!
//! ```
//! use steward_objects::{codec, ContentFormat, ModelRegistry, Node, Path, Resource, Value};
//!
//! let models = ModelRegistry::core();
//! let path: Path = "/3/0/9".parse()?;
//! // Battery Level 100 % as a TLV resource: type 0xC1 (8-bit ID, 1-byte value), ID 9, 0x64.
//! let node = codec::decode(ContentFormat::Tlv, &path, &[0xC1, 0x09, 0x64], &models)?;
//! assert_eq!(node, Node::Resource(Resource::Single(Value::Integer(100))));
//! let senml = codec::encode(ContentFormat::SenmlJson, &path, &node)?;
//! assert_eq!(String::from_utf8(senml)?, r#"[{"bn":"/3/0/","n":"9","v":100}]"#);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod codec;
pub mod ddf;
pub mod format;
pub mod link;
pub mod model;
pub mod node;
pub mod path;
pub mod value;

pub use format::{ClientFormats, ContentFormat, Payload, choose_format};
pub use model::{
    ClientModels, ModelRegistry, Models, NoModels, ObjectModel, ResourceModel, Version,
};
pub use node::{Instance, Node, NodeMap, Resource, Timestamp, TimestampedNodes};
pub use path::Path;
pub use value::{DataType, ObjLink, Value};
