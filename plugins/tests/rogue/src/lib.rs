//! A test plugin playing a rogue server's operator: it owns object 42769 (Trust Recovery) and
//! offers devices whatever bytes it is told, at the recovery-token resource or the CTL-update
//! resource, in every bootstrap session. The trust-recovery security tests use it to put
//! forged, expired and wrongly signed tokens, and CTL updates the device's CTL did not sign,
//! in front of locked-in devices: they must refuse them all and keep their CTL.
//!
//! Commands: `offer {"name", "resource": 3 | 5, "hex"}` (replaces the offer of that name),
//! `withdraw "name"`. Every answer is emitted as an `offer-answered` API event.

use serde_json::{Value as Json, json};
use steward_plugin_sdk::{
    Command, Description, Effect, Event, EventKinds, ObjectClaim, Plugin, PluginError, Value,
    effect, rejected,
};

struct Rogue;

impl Plugin for Rogue {
    fn describe() -> Description {
        Description {
            name: "rogue".into(),
            version: "0.1.0".into(),
            objects: vec![ObjectClaim {
                id: 42769,
                ddf: include_str!("../../../trust-recovery/42769.xml").into(),
            }],
            events: EventKinds::COMMAND,
        }
    }

    fn handle(event: Event) -> Result<Vec<Effect>, PluginError> {
        match event {
            Event::Command(c) => command(c),
            Event::OfferAnswered(a) => Ok(vec![effect::emit(
                "offer-answered",
                json!({
                    "offer": a.offer,
                    "endpoint": a.endpoint,
                    "code": a.code,
                    "diagnostic": a.diagnostic,
                })
                .to_string(),
            )]),
            _ => Ok(vec![]),
        }
    }
}

fn command(c: Command) -> Result<Vec<Effect>, PluginError> {
    let argument: Json =
        serde_json::from_str(&c.argument).map_err(|e| rejected(format!("argument: {e}")))?;
    match c.name.as_str() {
        "offer" => {
            let name = argument["name"]
                .as_str()
                .ok_or_else(|| rejected("no name"))?;
            let resource = argument["resource"]
                .as_u64()
                .filter(|r| *r == 3 || *r == 5)
                .ok_or_else(|| rejected("resource must be 3 or 5"))?;
            let bytes = unhex(argument["hex"].as_str().unwrap_or_default())
                .ok_or_else(|| rejected("hex"))?;
            Ok(vec![
                effect::bootstrap_offer(
                    name,
                    format!("/42769/0/{resource}"),
                    Value::Opaque(bytes),
                    Vec::new(),
                    true,
                    None,
                ),
                effect::reply(json!({ "offered": name }).to_string()),
            ])
        }
        "withdraw" => {
            let name = argument.as_str().ok_or_else(|| rejected("name"))?;
            Ok(vec![effect::withdraw_offer(name), effect::reply("null")])
        }
        other => Err(rejected(format!("unknown command {other}"))),
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

steward_plugin_sdk::export_plugin!(Rogue);
