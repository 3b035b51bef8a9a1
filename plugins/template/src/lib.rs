//! The template plugin: copy this crate to start a new plugin.
//!
//! It owns object 42790 ("Hello", described in `hello.xml`) and wants two kinds of events:
//!
//! - `registered`: a device that lists object 42790 registered. The plugin asks the device for
//!   its manufacturer (`/3/0/0`) and logs the answer when it comes back as a `response` event.
//! - `command`: an operator command. `hello` with the argument `"world"` replies
//!   `{"hello": "world"}`:
//!
//!   ```text
//!   curl -X POST http://127.0.0.1:8080/api/steward/plugins/template/commands \
//!        -H 'content-type: application/json' -d '{"name":"hello","argument":"world"}'
//!   ```
//!
//! Remember the event model (see the SDK's crate docs): every event runs in a fresh instance,
//! so nothing survives in memory between events, and `handle` does not act, it returns the
//! effects for the host to apply after it returns.

use steward_plugin_sdk::{
    Description, Effect, Event, EventKinds, ObjectClaim, Plugin, PluginError, ResponseBody, effect,
    host, rejected,
};

/// The object this plugin owns. Pick an ID of your own: two plugins cannot own the same object,
/// and the core objects (0-7, 21 ...) belong to the server.
const HELLO_OBJECT: u16 = 42790;

/// The correlation of our manufacturer read: it comes back in the `response` event, so we know
/// which of our requests is being answered.
const MANUFACTURER: &str = "manufacturer";

/// The plugin itself: an empty type, since there is no state to keep in memory.
struct Template;

impl Plugin for Template {
    fn describe() -> Description {
        Description {
            // Lowercase letters, digits and '-': names the plugin in the API, the CLI and the
            // logs.
            name: "template".into(),
            // Semver: bump it when you change the plugin.
            version: "0.1.0".into(),
            // The object's model, compiled into the component.
            objects: vec![ObjectClaim {
                id: HELLO_OBJECT,
                ddf: include_str!("../hello.xml").into(),
            }],
            // `response` events (answers to our own requests) always come; ask for the rest.
            events: EventKinds::REGISTERED | EventKinds::COMMAND,
        }
    }

    fn handle(event: Event) -> Result<Vec<Effect>, PluginError> {
        match event {
            Event::Registered(device) => {
                host::log_info(&format!("{} registered", device.endpoint));
                // Ask for the manufacturer; the answer arrives later as a `response` event.
                Ok(vec![effect::read(device.endpoint, MANUFACTURER, "/3/0/0")])
            }
            Event::Response(response) if response.correlation == MANUFACTURER => {
                match response.outcome {
                    Ok(ResponseBody::Read(entries)) => {
                        for entry in entries {
                            if let Some(manufacturer) = entry.value.as_text() {
                                host::log_info(&format!(
                                    "{} is made by {manufacturer}",
                                    response.endpoint
                                ));
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(error) => host::log_warn(&format!(
                        "reading the manufacturer of {} failed: {}",
                        response.endpoint, error.message
                    )),
                }
                Ok(vec![])
            }
            Event::Command(command) => match command.name.as_str() {
                "hello" => {
                    // The argument is JSON text ("null" when there was none). A bad argument is
                    // the caller's fault: `rejected`, which does not count towards quarantine
                    // (`failed`, a panic or a trap do).
                    let name: String = serde_json::from_str(&command.argument)
                        .map_err(|e| rejected(format!("hello wants a JSON string: {e}")))?;
                    let answer = serde_json::json!({ "hello": name });
                    Ok(vec![effect::reply(answer.to_string())])
                }
                other => Err(rejected(format!("unknown command {other}"))),
            },
            // Events we did not ask for do not come; ignore anything else.
            _ => Ok(vec![]),
        }
    }
}

// Generates the component's exports (`describe` and `handle`) for our type.
steward_plugin_sdk::export_plugin!(Template);
