//! The `trust-recovery` plugin: trust-chain recovery (seed 000, issue 8) for devices locked in
//! to a Certificate Trust List whose server lost its keys.
//!
//! The administrator gets a recovery token from the device vendor (a COSE_Sign1 over the
//! claims of `steward_claims::recovery`, signed with the vendor recovery key) and imports it.
//! The plugin checks the vendor's signature with the vendor's public key (its key `vendor`),
//! offers the token to every bootstrap session (devices locked out of their server reach
//! only the bootstrap server) and writes it to the registered devices that report the token's
//! CTL fingerprint and installation. Devices verify the token themselves and erase their CTL
//! when it fits; the plugin tracks each device's answer and reports progress through the
//! `status` and `devices` commands and the API event stream.
//!
//! It owns object 42769, Trust Recovery (`42769.xml`; OMA test range, not for production).
//!
//! # Events
//!
//! - `registered` / `updated` of a device listing `/42769`: read `/42769/0` (correlation
//!   `read`). On the answer the device's record is updated (module `report`); when its Last
//!   Token ID names one of our tokens it is counted as recovered (audit and event
//!   `device-recovered`); when an active token fits its fingerprint and installation and it
//!   has not answered that token yet, the token is written to `/42769/0/3` (correlation
//!   `write:<token id>`), and the answer is counted like a bootstrap offer's (event
//!   `write-answered`).
//! - `offer-answered`: a device answered the bootstrap offer `recovery-<token id>` (2.04:
//!   accepted; otherwise refused, with its diagnostic); event `offer-answered`.
//! - `deregistered`: the device's record says so.
//! - `bootstrap-request`: counted (sessions started / refused).
//!
//! Counters are per token and count devices, each at most once per kind (written, answered,
//! accepted, refused, recovered); see `devices::record_answer`.
//!
//! # Commands
//!
//! `import`, `withdraw`, `status`, `devices`: see the module `commands`; `README.md` has
//! examples.
//!
//! # State
//!
//! Nothing lives in wasm memory between events; the key-value layout is in the module
//! `records`.

mod commands;
mod devices;
mod env;
mod records;
mod report;

use steward_plugin_sdk::{
    Description, Effect, Event, EventKinds, ObjectClaim, Plugin, PluginError,
};

use crate::env::{Env, HostEnv};
use crate::records::OBJECT;

struct TrustRecovery;

impl Plugin for TrustRecovery {
    fn describe() -> Description {
        Description {
            name: "trust-recovery".into(),
            version: "0.1.0".into(),
            objects: vec![ObjectClaim {
                id: OBJECT,
                ddf: include_str!("../42769.xml").into(),
            }],
            events: EventKinds::REGISTERED
                | EventKinds::UPDATED
                | EventKinds::DEREGISTERED
                | EventKinds::BOOTSTRAP_REQUEST
                | EventKinds::COMMAND,
        }
    }

    fn handle(event: Event) -> Result<Vec<Effect>, PluginError> {
        handle(&HostEnv, event)
    }
}

steward_plugin_sdk::export_plugin!(TrustRecovery);

/// One event, against any [`Env`] (the host, or a test's in-memory one).
fn handle<E: Env>(env: &E, event: Event) -> Result<Vec<Effect>, PluginError> {
    match event {
        Event::Registered(device) | Event::Updated(device) => Ok(devices::registered(env, &device)),
        Event::Deregistered(endpoint) => devices::deregistered(env, &endpoint),
        Event::BootstrapRequest(request) => devices::bootstrap_request(env, &request),
        Event::Response(response) => devices::response(env, response),
        Event::OfferAnswered(answer) => devices::offer_answered(env, &answer),
        Event::Command(command) => commands::command(env, &command),
        Event::Notification(_) | Event::Send(_) | Event::Timer(_) => Ok(vec![]),
    }
}

#[cfg(test)]
mod tests;
