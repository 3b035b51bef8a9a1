//! Write Steward plugins in Rust.
//!
//! A Steward plugin is a WebAssembly component (`wasm32-wasip2`) that implements the WIT world
//! `steward:plugin/plugin@0.2.0` (`plugins/wit/plugin.wit`). This crate hides the generated
//! bindings: a plugin is a type implementing [`Plugin`], exported with [`export_plugin!`].
//!
//! ```ignore
//! use steward_plugin_sdk::{Description, Effect, Event, EventKinds, Plugin, PluginError};
//!
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     fn describe() -> Description {
//!         Description {
//!             name: "hello".into(),
//!             version: "0.1.0".into(),
//!             objects: vec![],
//!             events: EventKinds::COMMAND,
//!         }
//!     }
//!
//!     fn handle(event: Event) -> Result<Vec<Effect>, PluginError> {
//!         match event {
//!             Event::Command(c) => Ok(vec![steward_plugin_sdk::effect::reply(c.argument)]),
//!             _ => Ok(vec![]),
//!         }
//!     }
//! }
//!
//! steward_plugin_sdk::export_plugin!(Hello);
//! ```
//!
//! # The event model
//!
//! - **`describe` once, `handle` per event.** The server calls [`Plugin::describe`] once when
//!   it loads the component, then [`Plugin::handle`] once for each event the plugin wants
//!   ([`EventKinds`]) and for each answer to its own requests ([`Event::Response`], always
//!   delivered).
//! - **A fresh instance per event.** Every call runs in a new instance of the component:
//!   statics, `thread_local!`s and anything else kept in wasm memory are gone by the next event.
//!   What a plugin must remember goes to its key-value namespace with [`effect::kv_put`]; it
//!   is read back with [`host::kv_get`] and [`host::kv_list`]. The namespace lives in the
//!   server's store and survives restarts and reloads of the plugin.
//! - **Effects, not actions.** `handle` does not act on devices or on the store: it returns a
//!   list of [`Effect`]s that the host applies **after** `handle` returns, in order. Key-value
//!   writes ([`effect::kv_put`], [`effect::kv_delete`]) are applied first, all together and
//!   atomically; then the rest (device requests, audit records, API events, timers, the reply)
//!   in the order given. So [`host::kv_get`] during an event sees the store as committed before
//!   the event began, never the plugin's own pending writes. When `handle` returns an error,
//!   no effect is applied.
//! - **Device requests are asynchronous.** A request effect ([`effect::read`],
//!   [`effect::write`] ...) carries a *correlation*: a string of at most 256 bytes that the
//!   plugin chooses. The device's answer arrives later as an [`Event::Response`] carrying the
//!   same correlation (and, for observations, every [`Event::Notification`] carries it too).
//!   Put what you need to resume in the correlation, or in the key-value store under a key
//!   derived from it. Write, execute, create, delete and observe are allowed on the plugin's
//!   own objects only; read also on the core objects.
//! - **Errors.** [`rejected`] refuses an event that was the caller's fault (a bad command
//!   argument) and does not count towards quarantine; [`failed`] (like a trap, a panic or
//!   running out of time or memory) counts towards quarantine.
//! - **Commands.** An operator command ([`Event::Command`]) carries a name and a JSON argument
//!   text (`"null"` when there was none); the plugin answers with [`effect::reply`].
//!
//! # Paths
//!
//! LwM2M paths are text ([`Path`]): `"/3"`, `"/3/0"`, `"/3/0/9"`, `"/3/0/9/1"`. The host parses
//! every path a plugin hands it and refuses the effect if it does not parse.

pub mod effect;
pub mod host;

#[doc(hidden)]
#[allow(unsafe_code, unused, clippy::all, missing_docs)]
pub mod __bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        additional_derives: [PartialEq],
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "steward_plugin_sdk::__bindings",
    });
}

pub use __bindings::steward::plugin::host::Level;
pub use __bindings::steward::plugin::types::{
    ApiEvent, AuditRecord, BootstrapOffer, BootstrapRequest, CertificateInfo, Command,
    CreateRequest, Description, Device, DeviceRequest, Effect, Entry, Event, EventKinds,
    ExecuteRequest, HostError, Notification, ObjectClaim, OfferAnswer, Operation, Path,
    PluginError, RequestError, Response, ResponseBody, SendData, Timer, TimerRequest, Value,
    WriteRequest,
};

/// A Steward plugin: implement this on a (usually empty) type and export it with
/// [`export_plugin!`].
///
/// Both functions are associated functions, without `self`: there is no plugin value that
/// lives from one call to the next (see the crate docs for the event model).
pub trait Plugin {
    /// Who the plugin is, what it owns and which events it wants. Called once per load; the
    /// host refuses to load a plugin whose description is invalid (a bad name or version, a
    /// core or already claimed object, a DDF that does not describe exactly the claimed object).
    fn describe() -> Description;

    /// Handles one event and returns the effects the host applies after this returns.
    fn handle(event: Event) -> Result<Vec<Effect>, PluginError>;
}

/// Exports a type implementing [`Plugin`] as the component's `describe` and `handle`.
///
/// Use it once, in the plugin's `cdylib` crate:
///
/// ```ignore
/// steward_plugin_sdk::export_plugin!(MyPlugin);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ident) => {
        $crate::__bindings::__export_plugin_world!($plugin with_types_in $crate::__bindings);
    };
}

impl<T: Plugin> __bindings::Guest for T {
    fn describe() -> Description {
        <T as Plugin>::describe()
    }

    fn handle(event: Event) -> Result<Vec<Effect>, PluginError> {
        <T as Plugin>::handle(event)
    }
}

/// The event was refused: the caller's fault (a bad command argument ...). Does not count
/// towards quarantine.
pub fn rejected(message: impl Into<String>) -> PluginError {
    PluginError::Rejected(message.into())
}

/// The plugin could not handle the event: counts towards quarantine, like a trap.
pub fn failed(message: impl Into<String>) -> PluginError {
    PluginError::Failed(message.into())
}

/// An [`Entry`]: a value at a resource (`"/o/i/r"`) or resource-instance (`"/o/i/r/ri"`) path.
pub fn entry(path: impl Into<String>, value: Value) -> Entry {
    Entry {
        path: path.into(),
        value,
    }
}

impl Value {
    /// The text of a `text` value.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(text) => Some(text),
            _ => None,
        }
    }
}

impl PluginError {
    /// `"rejected"` or `"failed"`.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::Rejected(_) => "rejected",
            PluginError::Failed(_) => "failed",
        }
    }

    /// The message without the kind.
    pub fn message(&self) -> &str {
        match self {
            PluginError::Rejected(message) | PluginError::Failed(message) => message,
        }
    }
}

impl HostError {
    /// `"denied"`, `"invalid"` or `"failed"`.
    pub fn kind(&self) -> &'static str {
        match self {
            HostError::Denied(_) => "denied",
            HostError::Invalid(_) => "invalid",
            HostError::Failed(_) => "failed",
        }
    }

    /// The host's message without the kind.
    pub fn message(&self) -> &str {
        match self {
            HostError::Denied(message)
            | HostError::Invalid(message)
            | HostError::Failed(message) => message,
        }
    }

    /// `"<kind>: <message>"`, e.g. `"denied: no key named example"`.
    pub fn to_text(&self) -> String {
        format!("{}: {}", self.kind(), self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_error_as_text() {
        assert_eq!(
            HostError::Denied("no key named example".into()).to_text(),
            "denied: no key named example"
        );
        assert_eq!(failed("x").kind(), "failed");
        assert_eq!(rejected("y").message(), "y");
    }
}
