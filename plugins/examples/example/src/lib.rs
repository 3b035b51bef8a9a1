//! The example plugin: exercises every effect and every host import.
//!
//! The server's integration tests assert this behaviour exactly; change it only together with
//! them. It owns object 42799 ("Example Counter", `42799.xml`) and wants every kind of event.
//!
//! # Events
//!
//! - `registered` (a device listing `/42799`): `kv-put("seen/<ep>", registration id)`,
//!   `audit("device-seen", ep, "ok", "")`, `emit("device-seen", {"endpoint"})`, then the
//!   requests read `/3/0/0` (correlation `manufacturer`), write `"managed by example"` to
//!   `/42799/0/1` (`label`) and observe `/42799/0/0` (`observe`).
//! - `updated`: `emit("updated", {"endpoint"})`.
//! - `deregistered`: `kv-delete("seen/<ep>")`, `emit("deregistered", {"endpoint"})`.
//! - `bootstrap-request`: `kv-put("bootstrap/<ep>", transport)`,
//!   `audit("bootstrap-seen", ep, "ok", transport)`.
//! - `response`: `kv-put("response/<ep>/<correlation>", outcome JSON)`, `emit("response", ..)`,
//!   and for a successful `manufacturer` read with a text value at `/3/0/0`,
//!   `kv-put("manufacturer/<ep>", text)`. The outcome JSON is `{"ok": true, "values": {..}}`
//!   (plus `"body"`, and `"location"` for `created`, when the body is not values) or
//!   `{"ok": false, "code": "4.04" | null, "message": ".."}`.
//! - `notification`: `kv-put("counter/<ep>", values JSON)`,
//!   `emit("notification", {"endpoint", "correlation", "values"})`.
//! - `send`: `kv-put("send/<ep>", values JSON)`, `emit("send", {"endpoint", "values"})`.
//! - `timer`: for `tick:<ep>`, execute `/42799/0/2` on `<ep>` (correlation `tick`); for every
//!   timer `emit("timer", {"name"})`.
//! - `offer-answered` (a device answered one of its bootstrap offers, see the `offer`
//!   command): `kv-put("offer-answer/<offer>/<ep>", code)`,
//!   `emit("offer-answered", {"offer", "endpoint", "code", "diagnostic"})`.
//! - `command`: see [`command`].
//!
//! # Values as JSON
//!
//! A values JSON is an object from path to value: text, core link → string; integer,
//! unsigned, time → number; float → number (null when not finite); boolean → bool; opaque →
//! lowercase hex string; object link → `"<object>:<instance>"`.

use serde_json::{Map, Value as Json, json};
use steward_plugin_sdk::{
    BootstrapRequest, Command, Description, Device, Effect, Entry, Event, EventKinds, Notification,
    ObjectClaim, Plugin, PluginError, RequestError, Response, ResponseBody, SendData, Timer, Value,
    effect, entry, failed, host, rejected,
};

/// The object this plugin owns.
const OBJECT: u16 = 42799;
/// The key name for `cose-sign` (and the default one for `cose-verify`).
const COSE_KEY: &str = "example";
/// The prefix of the per-device tick timers.
const TICK: &str = "tick:";

struct Example;

impl Plugin for Example {
    fn describe() -> Description {
        Description {
            name: "example".into(),
            version: "0.1.0".into(),
            objects: vec![ObjectClaim {
                id: OBJECT,
                ddf: include_str!("../42799.xml").into(),
            }],
            events: EventKinds::all(),
        }
    }

    fn handle(event: Event) -> Result<Vec<Effect>, PluginError> {
        match event {
            Event::Registered(device) => Ok(registered(device)),
            Event::Updated(device) => Ok(vec![emit(
                "updated",
                json!({ "endpoint": device.endpoint }),
            )]),
            Event::Deregistered(endpoint) => Ok(vec![
                effect::kv_delete(format!("seen/{endpoint}")),
                emit("deregistered", json!({ "endpoint": endpoint })),
            ]),
            Event::BootstrapRequest(request) => Ok(bootstrap_request(request)),
            Event::Response(response) => Ok(response_effects(response)),
            Event::Notification(notification) => Ok(notification_effects(notification)),
            Event::Send(send) => Ok(send_effects(send)),
            Event::Timer(timer) => Ok(timer_effects(timer)),
            Event::Command(c) => command(c),
            Event::OfferAnswered(answer) => Ok(vec![
                effect::kv_put(
                    format!("offer-answer/{}/{}", answer.offer, answer.endpoint),
                    answer.code.as_str(),
                ),
                emit(
                    "offer-answered",
                    json!({
                        "offer": answer.offer,
                        "endpoint": answer.endpoint,
                        "code": answer.code,
                        "diagnostic": answer.diagnostic,
                    }),
                ),
            ]),
        }
    }
}

steward_plugin_sdk::export_plugin!(Example);

fn registered(device: Device) -> Vec<Effect> {
    let own = format!("/{OBJECT}");
    let lists_own_object = device
        .objects
        .iter()
        .any(|path| path == &own || path.starts_with(&format!("{own}/")));
    if !lists_own_object {
        return vec![];
    }
    let ep = device.endpoint;
    vec![
        effect::kv_put(format!("seen/{ep}"), device.registration_id),
        effect::audit("device-seen", ep.as_str(), "ok", ""),
        emit("device-seen", json!({ "endpoint": ep })),
        effect::read(ep.as_str(), "manufacturer", "/3/0/0"),
        effect::write(
            ep.as_str(),
            "label",
            "/42799/0/1",
            vec![entry(
                "/42799/0/1",
                Value::Text("managed by example".into()),
            )],
            false,
        ),
        effect::observe(ep, "observe", "/42799/0/0"),
    ]
}

fn bootstrap_request(request: BootstrapRequest) -> Vec<Effect> {
    vec![
        effect::kv_put(
            format!("bootstrap/{}", request.endpoint),
            request.transport.as_str(),
        ),
        effect::audit("bootstrap-seen", request.endpoint, "ok", request.transport),
    ]
}

fn response_effects(response: Response) -> Vec<Effect> {
    let Response {
        correlation,
        endpoint,
        outcome,
    } = response;
    let manufacturer = match &outcome {
        Ok(ResponseBody::Read(entries) | ResponseBody::Observing(entries))
            if correlation == "manufacturer" =>
        {
            entries
                .iter()
                .find(|e| e.path == "/3/0/0")
                .and_then(|e| e.value.as_text())
                .map(str::to_owned)
        }
        _ => None,
    };
    let outcome = outcome_json(outcome);
    let mut event = Map::new();
    event.insert("endpoint".into(), json!(endpoint));
    event.insert("correlation".into(), json!(correlation));
    event.extend(outcome.clone());
    let mut effects = vec![
        effect::kv_put(
            format!("response/{endpoint}/{correlation}"),
            Json::Object(outcome).to_string(),
        ),
        emit("response", Json::Object(event)),
    ];
    if let Some(manufacturer) = manufacturer {
        effects.push(effect::kv_put(
            format!("manufacturer/{endpoint}"),
            manufacturer,
        ));
    }
    effects
}

/// `{"ok": true, "values": {..}}` (with `"body"`, and `"location"` for `created`, when the
/// answer carries no values) or `{"ok": false, "code": .., "message": ..}`.
fn outcome_json(outcome: Result<ResponseBody, RequestError>) -> Map<String, Json> {
    let mut map = Map::new();
    match outcome {
        Ok(body) => {
            map.insert("ok".into(), json!(true));
            let (values, body) = match body {
                ResponseBody::Read(entries) | ResponseBody::Observing(entries) => {
                    (values_json(&entries), None)
                }
                ResponseBody::Written => (Map::new(), Some("written")),
                ResponseBody::Executed => (Map::new(), Some("executed")),
                ResponseBody::Created(location) => {
                    map.insert("location".into(), json!(location));
                    (Map::new(), Some("created"))
                }
                ResponseBody::Deleted => (Map::new(), Some("deleted")),
                ResponseBody::Cancelled => (Map::new(), Some("cancelled")),
            };
            map.insert("values".into(), Json::Object(values));
            if let Some(body) = body {
                map.insert("body".into(), json!(body));
            }
        }
        Err(error) => {
            map.insert("ok".into(), json!(false));
            map.insert("code".into(), json!(error.code));
            map.insert("message".into(), json!(error.message));
        }
    }
    map
}

fn notification_effects(notification: Notification) -> Vec<Effect> {
    let values = Json::Object(values_json(&notification.values));
    vec![
        effect::kv_put(
            format!("counter/{}", notification.endpoint),
            values.to_string(),
        ),
        emit(
            "notification",
            json!({
                "endpoint": notification.endpoint,
                "correlation": notification.correlation,
                "values": values,
            }),
        ),
    ]
}

fn send_effects(send: SendData) -> Vec<Effect> {
    let values = Json::Object(values_json(&send.values));
    vec![
        effect::kv_put(format!("send/{}", send.endpoint), values.to_string()),
        emit(
            "send",
            json!({ "endpoint": send.endpoint, "values": values }),
        ),
    ]
}

fn timer_effects(timer: Timer) -> Vec<Effect> {
    let mut effects = Vec::new();
    if let Some(endpoint) = timer.name.strip_prefix(TICK) {
        effects.push(effect::execute(endpoint, "tick", "/42799/0/2", None));
    }
    effects.push(emit("timer", json!({ "name": timer.name })));
    effects
}

/// Operator commands. The argument is a JSON object (or `null` for the commands that take
/// none); a bad argument is `rejected`.
///
/// | name | argument | effects | reply |
/// | --- | --- | --- | --- |
/// | `read` | `endpoint`, `path`, `correlation`? | read `path` (correlation or `cmd-read`) | `{"requested": true}` |
/// | `write` | `endpoint`, `path`, `label` | write text `label` at `path`, update, `cmd-write` | `{"requested": true}` |
/// | `execute` | `endpoint`, `arguments`? | execute `/42799/0/2`, `cmd-execute` | `{"requested": true}` |
/// | `create` | `endpoint`, `instance`?, `label` | create 42799 (instance) with `/42799/<instance or 0>/1` = label, `cmd-create` | `{"requested": true}` |
/// | `delete` | `endpoint`, `path` | delete `path`, `cmd-delete` | `{"requested": true}` |
/// | `observe` | `endpoint`, `path` | observe `path`, `cmd-observe` | `{"requested": true}` |
/// | `cancel-observe` | `endpoint`, `path` | cancel-observe `path`, `cmd-cancel` | `{"requested": true}` |
/// | `write-core` | `endpoint` | write text `+01` at `/3/0/14`, `cmd-write-core` (the host refuses it) | `{"requested": true}` |
/// | `bad-path` | `endpoint` | read `/not/a/path`, `cmd-bad-path` (the host refuses it) | `{"requested": true}` |
/// | `timer` | `endpoint`, `after_ms` | set-timer `tick:<endpoint>` | `{"requested": true}` |
/// | `cancel-timer` | `endpoint` | cancel-timer `tick:<endpoint>` | `{"requested": true}` |
/// | `get` | `key` | host kv-get | `{"key", "value": text or null}` |
/// | `list` | `prefix`? (default "") | host kv-list(prefix, 1000) | `{"keys": [..]}` |
/// | `put` | `key`, `value` (text) | kv-put | `{"stored": true}` |
/// | `sign` | `payload` (text) | host cose-sign with key `example` | `{"cose": hex}` or `{"error"}` |
/// | `verify` | `cose` (hex), `key`? (default `example`) | host cose-verify | `{"payload": text}` or `{"error"}` |
/// | `random` | — | host random-bytes(16) | `{"hex": 32 hex digits}` |
/// | `now` | — | host now-ms | `{"now_ms": n}` |
/// | `log` | `message` | host log at info | `{"logged": true}` |
/// | `verify-cert` | `chain` (hex DER list, leaf first) | host certificate-verify | `{"subject", "issuer", "serial", "not_after"}` or `{"error"}` |
/// | `issue-cert` | `csr` (hex DER), `profile` | host certificate-issue | `{"certificate": hex}` or `{"error"}` |
/// | `audit` | `subject` | audit(`operator-audit`, subject, `ok`, `from command`) | `{"requested": true}` |
/// | `emit` | `kind`, `data` (any JSON) | emit(kind, data) | `{"requested": true}` |
/// | `offer` | `name`, `path`, `value` (text), `endpoints`? (list, default all), `finishOnAccept`? (default false), `expiresMs`? | bootstrap-offer | `{"offered": true}` |
/// | `withdraw` | `name` | withdraw-offer | `{"withdrawn": true}` |
/// | `fail` | — | `Err(failed("asked to fail"))` | — |
///
/// Any other name is `Err(rejected("unknown command <name>"))`. A host error reads
/// `"<denied|invalid|failed>: <message>"`.
fn command(c: Command) -> Result<Vec<Effect>, PluginError> {
    let name = c.name.as_str();
    if name == "fail" {
        return Err(failed("asked to fail"));
    }
    if !KNOWN_COMMANDS.contains(&name) {
        return Err(rejected(format!("unknown command {name}")));
    }
    let args = Args::parse(&c.argument)?;
    let requested = || reply(json!({ "requested": true }));
    let effects = match name {
        "read" => {
            let correlation = args.opt_str("correlation")?.unwrap_or("cmd-read");
            vec![
                effect::read(args.str("endpoint")?, correlation, args.str("path")?),
                requested(),
            ]
        }
        "write" => {
            let path = args.str("path")?;
            let label = Value::Text(args.str("label")?.into());
            vec![
                effect::write(
                    args.str("endpoint")?,
                    "cmd-write",
                    path,
                    vec![entry(path, label)],
                    false,
                ),
                requested(),
            ]
        }
        "execute" => {
            let arguments = args.opt_str("arguments")?.map(str::to_owned);
            vec![
                effect::execute(
                    args.str("endpoint")?,
                    "cmd-execute",
                    "/42799/0/2",
                    arguments,
                ),
                requested(),
            ]
        }
        "create" => {
            let instance = args.opt_u16("instance")?;
            let label = Value::Text(args.str("label")?.into());
            vec![
                effect::create(
                    args.str("endpoint")?,
                    "cmd-create",
                    OBJECT,
                    instance,
                    [(1, label)],
                ),
                requested(),
            ]
        }
        "delete" => vec![
            effect::delete(args.str("endpoint")?, "cmd-delete", args.str("path")?),
            requested(),
        ],
        "observe" => vec![
            effect::observe(args.str("endpoint")?, "cmd-observe", args.str("path")?),
            requested(),
        ],
        "cancel-observe" => vec![
            effect::cancel_observe(args.str("endpoint")?, "cmd-cancel", args.str("path")?),
            requested(),
        ],
        "write-core" => vec![
            effect::write(
                args.str("endpoint")?,
                "cmd-write-core",
                "/3/0/14",
                vec![entry("/3/0/14", Value::Text("+01".into()))],
                false,
            ),
            requested(),
        ],
        "bad-path" => vec![
            effect::read(args.str("endpoint")?, "cmd-bad-path", "/not/a/path"),
            requested(),
        ],
        "timer" => vec![
            effect::set_timer(
                format!("{TICK}{}", args.str("endpoint")?),
                args.u64("after_ms")?,
            ),
            requested(),
        ],
        "cancel-timer" => vec![
            effect::cancel_timer(format!("{TICK}{}", args.str("endpoint")?)),
            requested(),
        ],
        "get" => {
            let key = args.str("key")?;
            let value = host::kv_get(key).map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
            vec![reply(json!({ "key": key, "value": value }))]
        }
        "list" => {
            let prefix = args.opt_str("prefix")?.unwrap_or("");
            vec![reply(json!({ "keys": host::kv_list(prefix, 1000) }))]
        }
        "put" => vec![
            effect::kv_put(args.str("key")?, args.str("value")?),
            reply(json!({ "stored": true })),
        ],
        "sign" => {
            let answer = match host::cose_sign(COSE_KEY, args.str("payload")?.as_bytes()) {
                Ok(cose) => json!({ "cose": hex(&cose) }),
                Err(error) => json!({ "error": error.to_text() }),
            };
            vec![reply(answer)]
        }
        "verify" => {
            let cose = args.hex("cose")?;
            let key = args.opt_str("key")?.unwrap_or(COSE_KEY);
            let answer = match host::cose_verify(key, &cose) {
                Ok(payload) => json!({ "payload": String::from_utf8_lossy(&payload) }),
                Err(error) => json!({ "error": error.to_text() }),
            };
            vec![reply(answer)]
        }
        "random" => vec![reply(json!({ "hex": hex(&host::random_bytes(16)) }))],
        "now" => vec![reply(json!({ "now_ms": host::now_ms() }))],
        "log" => {
            host::log_info(args.str("message")?);
            vec![reply(json!({ "logged": true }))]
        }
        "verify-cert" => {
            let chain = args.hex_list("chain")?;
            let answer = match host::certificate_verify(&chain) {
                Ok(info) => json!({
                    "subject": info.subject,
                    "issuer": info.issuer,
                    "serial": info.serial,
                    "not_after": info.not_after,
                }),
                Err(error) => json!({ "error": error.to_text() }),
            };
            vec![reply(answer)]
        }
        "issue-cert" => {
            let csr = args.hex("csr")?;
            let answer = match host::certificate_issue(&csr, args.str("profile")?) {
                Ok(certificate) => json!({ "certificate": hex(&certificate) }),
                Err(error) => json!({ "error": error.to_text() }),
            };
            vec![reply(answer)]
        }
        "audit" => vec![
            effect::audit("operator-audit", args.str("subject")?, "ok", "from command"),
            requested(),
        ],
        "emit" => {
            let data = args.get("data").cloned().unwrap_or(Json::Null);
            vec![emit(args.str("kind")?, data), requested()]
        }
        "offer" => vec![
            effect::bootstrap_offer(
                args.str("name")?,
                args.str("path")?,
                Value::Text(args.str("value")?.into()),
                args.opt_str_list("endpoints")?,
                args.opt_bool("finishOnAccept")?.unwrap_or(false),
                args.opt_u64("expiresMs")?,
            ),
            reply(json!({ "offered": true })),
        ],
        "withdraw" => vec![
            effect::withdraw_offer(args.str("name")?),
            reply(json!({ "withdrawn": true })),
        ],
        other => return Err(rejected(format!("unknown command {other}"))),
    };
    Ok(effects)
}

/// The commands [`command`] knows, but `fail`.
const KNOWN_COMMANDS: &[&str] = &[
    "read",
    "write",
    "execute",
    "create",
    "delete",
    "observe",
    "cancel-observe",
    "write-core",
    "bad-path",
    "timer",
    "cancel-timer",
    "get",
    "list",
    "put",
    "sign",
    "verify",
    "random",
    "now",
    "log",
    "verify-cert",
    "issue-cert",
    "audit",
    "emit",
    "offer",
    "withdraw",
];

/// A command's argument: a JSON object, or `null` (no fields).
struct Args(Map<String, Json>);

impl Args {
    fn parse(text: &str) -> Result<Args, PluginError> {
        match serde_json::from_str(text) {
            Ok(Json::Object(map)) => Ok(Args(map)),
            Ok(Json::Null) => Ok(Args(Map::new())),
            Ok(_) => Err(rejected("the argument must be a JSON object")),
            Err(e) => Err(rejected(format!("the argument is not JSON: {e}"))),
        }
    }

    /// A field that is present and not null.
    fn get(&self, field: &str) -> Option<&Json> {
        self.0.get(field).filter(|v| !v.is_null())
    }

    fn str(&self, field: &str) -> Result<&str, PluginError> {
        self.opt_str(field)?
            .ok_or_else(|| rejected(format!("missing field {field}")))
    }

    fn opt_str(&self, field: &str) -> Result<Option<&str>, PluginError> {
        match self.get(field) {
            None => Ok(None),
            Some(Json::String(s)) => Ok(Some(s)),
            Some(_) => Err(rejected(format!("field {field} must be a string"))),
        }
    }

    fn u64(&self, field: &str) -> Result<u64, PluginError> {
        match self.get(field) {
            None => Err(rejected(format!("missing field {field}"))),
            Some(v) => v
                .as_u64()
                .ok_or_else(|| rejected(format!("field {field} must be an unsigned integer"))),
        }
    }

    fn opt_u64(&self, field: &str) -> Result<Option<u64>, PluginError> {
        match self.get(field) {
            None => Ok(None),
            Some(_) => self.u64(field).map(Some),
        }
    }

    fn opt_bool(&self, field: &str) -> Result<Option<bool>, PluginError> {
        match self.get(field) {
            None => Ok(None),
            Some(Json::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(rejected(format!("field {field} must be a boolean"))),
        }
    }

    /// A list of strings; absent or null is the empty list.
    fn opt_str_list(&self, field: &str) -> Result<Vec<String>, PluginError> {
        let bad = || rejected(format!("field {field} must be a list of strings"));
        match self.get(field) {
            None => Ok(Vec::new()),
            Some(Json::Array(items)) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned).ok_or_else(bad))
                .collect(),
            Some(_) => Err(bad()),
        }
    }

    fn opt_u16(&self, field: &str) -> Result<Option<u16>, PluginError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| rejected(format!("field {field} must be an integer 0-65535"))),
        }
    }

    fn hex(&self, field: &str) -> Result<Vec<u8>, PluginError> {
        unhex(self.str(field)?).ok_or_else(|| rejected(format!("field {field} must be hex")))
    }

    fn hex_list(&self, field: &str) -> Result<Vec<Vec<u8>>, PluginError> {
        let bad = || rejected(format!("field {field} must be a list of hex strings"));
        match self.get(field) {
            Some(Json::Array(items)) => items
                .iter()
                .map(|item| item.as_str().and_then(unhex).ok_or_else(bad))
                .collect(),
            None => Err(rejected(format!("missing field {field}"))),
            Some(_) => Err(bad()),
        }
    }
}

fn emit(kind: &str, data: Json) -> Effect {
    effect::emit(kind, data.to_string())
}

fn reply(answer: Json) -> Effect {
    effect::reply(answer.to_string())
}

/// Values as a JSON object from path to value (see the crate docs for the mapping).
fn values_json(entries: &[Entry]) -> Map<String, Json> {
    entries
        .iter()
        .map(|e| (e.path.clone(), value_json(&e.value)))
        .collect()
}

fn value_json(value: &Value) -> Json {
    match value {
        Value::Text(text) | Value::Corelnk(text) => json!(text),
        Value::Integer(n) | Value::Time(n) => json!(n),
        Value::Unsigned(n) => json!(n),
        // serde_json turns a non-finite float into null.
        Value::Float(x) => json!(x),
        Value::Boolean(b) => json!(b),
        Value::Opaque(bytes) => json!(hex(bytes)),
        Value::Objlnk((object, instance)) => json!(format!("{object}:{instance}")),
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        text.push(char::from(DIGITS[usize::from(b >> 4)]));
        text.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    text
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks_exact(2)
        .map(|pair| {
            let high = char::from(pair[0]).to_digit(16)?;
            let low = char::from(pair[1]).to_digit(16)?;
            u8::try_from(high << 4 | low).ok()
        })
        .collect()
}

// Run on the build machine (the host imports are not called):
// `cargo test --target x86_64-unknown-linux-gnu` in plugins/.
#[cfg(test)]
mod tests {
    use super::*;
    use steward_plugin_sdk::{Command, Operation, RequestError};

    fn device(objects: &[&str]) -> Device {
        Device {
            endpoint: "ep1".into(),
            registration_id: "r42".into(),
            lwm2m_version: "1.1".into(),
            objects: objects.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn command_effects(name: &str, argument: &str) -> Result<Vec<Effect>, PluginError> {
        Example::handle(Event::Command(Command {
            name: name.into(),
            argument: argument.into(),
        }))
    }

    fn emitted(kind: &str, data: &str) -> Effect {
        effect::emit(kind, data)
    }

    #[test]
    fn describe_claims_42799_and_wants_everything() {
        let d = Example::describe();
        assert_eq!(d.name, "example");
        assert_eq!(d.version, "0.1.0");
        assert_eq!(d.objects.len(), 1);
        assert_eq!(d.objects[0].id, 42799);
        assert!(d.objects[0].ddf.contains("<ObjectID>42799</ObjectID>"));
        assert_eq!(d.events, EventKinds::all());
    }

    #[test]
    fn registered_device_with_the_object() {
        let effects =
            Example::handle(Event::Registered(device(&["/3/0", "/42799/0"]))).expect("handled");
        assert_eq!(
            effects,
            vec![
                effect::kv_put("seen/ep1", "r42"),
                effect::audit("device-seen", "ep1", "ok", ""),
                emitted("device-seen", r#"{"endpoint":"ep1"}"#),
                effect::read("ep1", "manufacturer", "/3/0/0"),
                effect::write(
                    "ep1",
                    "label",
                    "/42799/0/1",
                    vec![entry(
                        "/42799/0/1",
                        Value::Text("managed by example".into())
                    )],
                    false,
                ),
                effect::observe("ep1", "observe", "/42799/0/0"),
            ]
        );
    }

    #[test]
    fn registered_device_without_the_object_is_ignored() {
        let effects =
            Example::handle(Event::Registered(device(&["/3/0", "/427990/0"]))).expect("handled");
        assert!(effects.is_empty());
    }

    #[test]
    fn manufacturer_response_is_stored() {
        let effects = Example::handle(Event::Response(Response {
            correlation: "manufacturer".into(),
            endpoint: "ep1".into(),
            outcome: Ok(ResponseBody::Read(vec![entry(
                "/3/0/0",
                Value::Text("ACME".into()),
            )])),
        }))
        .expect("handled");
        assert_eq!(
            effects,
            vec![
                effect::kv_put(
                    "response/ep1/manufacturer",
                    r#"{"ok":true,"values":{"/3/0/0":"ACME"}}"#
                ),
                emitted(
                    "response",
                    r#"{"correlation":"manufacturer","endpoint":"ep1","ok":true,"values":{"/3/0/0":"ACME"}}"#
                ),
                effect::kv_put("manufacturer/ep1", "ACME"),
            ]
        );
    }

    #[test]
    fn failed_and_created_responses() {
        let failed = Example::handle(Event::Response(Response {
            correlation: "label".into(),
            endpoint: "ep1".into(),
            outcome: Err(RequestError {
                code: Some("4.05".into()),
                message: "method not allowed".into(),
            }),
        }))
        .expect("handled");
        assert_eq!(
            failed[0],
            effect::kv_put(
                "response/ep1/label",
                r#"{"code":"4.05","message":"method not allowed","ok":false}"#
            )
        );
        let created = Example::handle(Event::Response(Response {
            correlation: "cmd-create".into(),
            endpoint: "ep1".into(),
            outcome: Ok(ResponseBody::Created(None)),
        }))
        .expect("handled");
        assert_eq!(
            created[0],
            effect::kv_put(
                "response/ep1/cmd-create",
                r#"{"body":"created","location":null,"ok":true,"values":{}}"#
            )
        );
        assert_eq!(created.len(), 2);
    }

    #[test]
    fn values_as_json() {
        let values = values_json(&[
            entry("/42799/0/0", Value::Integer(-3)),
            entry("/42799/0/3", Value::Opaque(vec![0x00, 0xab])),
            entry("/42799/0/4", Value::Objlnk((3, 0))),
            entry("/42799/0/5", Value::Float(f64::NAN)),
            entry("/42799/0/6", Value::Boolean(true)),
        ]);
        assert_eq!(
            Json::Object(values).to_string(),
            r#"{"/42799/0/0":-3,"/42799/0/3":"00ab","/42799/0/4":"3:0","/42799/0/5":null,"/42799/0/6":true}"#
        );
    }

    #[test]
    fn tick_timer_executes_increment() {
        let effects = Example::handle(Event::Timer(Timer {
            name: "tick:ep1".into(),
        }))
        .expect("handled");
        assert_eq!(
            effects,
            vec![
                effect::execute("ep1", "tick", "/42799/0/2", None),
                emitted("timer", r#"{"name":"tick:ep1"}"#),
            ]
        );
    }

    #[test]
    fn create_without_instance_uses_instance_0_in_entries() {
        let effects =
            command_effects("create", r#"{"endpoint":"ep1","label":"x"}"#).expect("handled");
        let Effect::Request(request) = &effects[0] else {
            panic!("not a request: {effects:?}");
        };
        let Operation::Create(create) = &request.operation else {
            panic!("not a create: {request:?}");
        };
        assert_eq!(create.object, 42799);
        assert_eq!(create.instance, None);
        assert_eq!(
            create.entries,
            vec![entry("/42799/0/1", Value::Text("x".into()))]
        );
        assert_eq!(request.correlation, "cmd-create");
        assert_eq!(effects[1], effect::reply(r#"{"requested":true}"#));
    }

    #[test]
    fn timer_commands() {
        assert_eq!(
            command_effects("timer", r#"{"endpoint":"ep1","after_ms":250}"#).expect("handled")[0],
            effect::set_timer("tick:ep1", 250)
        );
        assert_eq!(
            command_effects("cancel-timer", r#"{"endpoint":"ep1"}"#).expect("handled")[0],
            effect::cancel_timer("tick:ep1")
        );
    }

    #[test]
    fn bad_commands() {
        let rejected_kind = |r: Result<Vec<Effect>, PluginError>| r.map_err(|e| e.kind());
        assert_eq!(
            rejected_kind(command_effects("read", "{not json")),
            Err("rejected")
        );
        assert_eq!(
            rejected_kind(command_effects("read", r#"{"endpoint":"ep1"}"#)),
            Err("rejected")
        );
        assert_eq!(
            rejected_kind(command_effects(
                "create",
                r#"{"endpoint":"e","label":"x","instance":70000}"#
            )),
            Err("rejected")
        );
        assert_eq!(
            rejected_kind(command_effects("verify", r#"{"cose":"abc"}"#)),
            Err("rejected")
        );
        assert_eq!(
            command_effects("nope", "null"),
            Err(rejected("unknown command nope"))
        );
        assert_eq!(
            command_effects("fail", "null"),
            Err(failed("asked to fail"))
        );
    }

    #[test]
    fn offer_commands() {
        assert_eq!(
            command_effects(
                "offer",
                r#"{"name":"o","path":"/42799/0/1","value":"v","endpoints":["a","b"],"finishOnAccept":true,"expiresMs":9}"#
            )
            .expect("handled"),
            vec![
                effect::bootstrap_offer(
                    "o",
                    "/42799/0/1",
                    Value::Text("v".into()),
                    vec!["a".into(), "b".into()],
                    true,
                    Some(9),
                ),
                effect::reply(r#"{"offered":true}"#),
            ]
        );
        assert_eq!(
            command_effects("offer", r#"{"name":"o","path":"/42799/0/1","value":"v"}"#)
                .expect("handled")[0],
            effect::bootstrap_offer(
                "o",
                "/42799/0/1",
                Value::Text("v".into()),
                vec![],
                false,
                None
            )
        );
        assert_eq!(
            command_effects("withdraw", r#"{"name":"o"}"#).expect("handled"),
            vec![
                effect::withdraw_offer("o"),
                effect::reply(r#"{"withdrawn":true}"#)
            ]
        );
        let kind = |r: Result<Vec<Effect>, PluginError>| r.map_err(|e| e.kind());
        for bad in [
            r#"{"name":"o","path":"/42799/0/1","value":"v","endpoints":"a"}"#,
            r#"{"name":"o","path":"/42799/0/1","value":"v","finishOnAccept":1}"#,
            r#"{"name":"o","path":"/42799/0/1"}"#,
        ] {
            assert_eq!(
                kind(command_effects("offer", bad)),
                Err("rejected"),
                "{bad}"
            );
        }
    }

    #[test]
    fn offer_answers_are_stored_and_emitted() {
        let effects = Example::handle(Event::OfferAnswered(steward_plugin_sdk::OfferAnswer {
            offer: "o".into(),
            endpoint: "ep1".into(),
            code: "2.04".into(),
            diagnostic: String::new(),
        }))
        .expect("handled");
        assert_eq!(
            effects,
            vec![
                effect::kv_put("offer-answer/o/ep1", "2.04"),
                emitted(
                    "offer-answered",
                    r#"{"code":"2.04","diagnostic":"","endpoint":"ep1","offer":"o"}"#
                ),
            ]
        );
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(hex(&[0x01, 0xfe]), "01fe");
        assert_eq!(unhex("01FE"), Some(vec![0x01, 0xfe]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
    }
}
