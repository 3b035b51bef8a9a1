//! A plugin's effects, checked before anything is applied. One bad effect fails the whole
//! event (nothing of it is applied): a plugin that asks for something it may not do is
//! broken, and half of its decision applied would be worse than none (fail closed).

use std::time::Duration;

use steward_objects::Path;

use super::bindings::steward::plugin::types::{BootstrapOffer, Effect, Operation};
use super::convert;
use super::describe::PluginInfo;
use crate::bootstrap::offers::{NewOffer, OfferChange};
use crate::dm::{DownlinkRequest, WriteMode};
use crate::store::PluginKvWrite;

pub const MAX_EFFECTS: usize = 1024;
pub const MAX_KEY_BYTES: usize = 256;
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
pub const MAX_CORRELATION_BYTES: usize = 256;
const MAX_TEXT_BYTES: usize = 4096;
const MAX_JSON_BYTES: usize = 64 * 1024;
/// Timers further out than this are refused: a plugin that wants a year should store a date.
pub const MAX_TIMER: Duration = Duration::from_secs(30 * 24 * 3600);

/// The request a plugin asked for, ready for [`crate::devices::Devices::start`].
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRequest {
    pub endpoint: String,
    pub correlation: String,
    pub request: DownlinkRequest,
}

/// What the host does after the key-value writes, in the plugin's order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Request(PlannedRequest),
    Audit {
        action: String,
        subject: String,
        outcome: String,
        detail: String,
    },
    Emit {
        kind: String,
        data: serde_json::Value,
    },
    SetTimer {
        name: String,
        after: Duration,
    },
    CancelTimer(String),
}

/// One event's checked effects.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Planned {
    pub kv: Vec<PluginKvWrite>,
    /// Bootstrap offers made and withdrawn, in order; durable with `kv`. The per-plugin cap
    /// depends on the offers already standing, so the dispatcher checks it when it applies
    /// them (and fails the whole event, as here, when it is exceeded).
    pub offers: Vec<OfferChange>,
    pub actions: Vec<Action>,
    /// The answer to an operator command (the last `reply` wins).
    pub reply: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("effect {index}: {reason}")]
pub struct EffectError {
    pub index: usize,
    pub reason: String,
}

/// Checks every effect against what `plugin` may do. `core` tells which objects anyone may
/// read; `now_ms` (Unix ms) is when the effects are made (an offer must expire later).
pub fn plan(
    plugin: &PluginInfo,
    effects: Vec<Effect>,
    is_core: &dyn Fn(u16) -> bool,
    now_ms: u64,
) -> Result<Planned, EffectError> {
    if effects.len() > MAX_EFFECTS {
        return Err(EffectError {
            index: MAX_EFFECTS,
            reason: format!("{} effects, at most {MAX_EFFECTS}", effects.len()),
        });
    }
    let mut planned = Planned::default();
    for (index, effect) in effects.into_iter().enumerate() {
        let fail = |reason: String| EffectError { index, reason };
        match effect {
            Effect::Request(r) => {
                if r.endpoint.is_empty() || r.endpoint.len() > 255 {
                    return Err(fail("endpoint must be 1 to 255 bytes".into()));
                }
                if r.correlation.len() > MAX_CORRELATION_BYTES {
                    return Err(fail(format!(
                        "correlation longer than {MAX_CORRELATION_BYTES} bytes"
                    )));
                }
                let request = request(plugin, r.operation, is_core).map_err(fail)?;
                planned.actions.push(Action::Request(PlannedRequest {
                    endpoint: r.endpoint,
                    correlation: r.correlation,
                    request,
                }));
            }
            Effect::KvPut((key, value)) => {
                check_key(&key).map_err(fail)?;
                if value.len() > MAX_VALUE_BYTES {
                    return Err(fail(format!(
                        "value of {} bytes exceeds {MAX_VALUE_BYTES}",
                        value.len()
                    )));
                }
                planned.kv.push(PluginKvWrite::Put(key, value));
            }
            Effect::KvDelete(key) => {
                check_key(&key).map_err(fail)?;
                planned.kv.push(PluginKvWrite::Delete(key));
            }
            Effect::Audit(a) => {
                for (field, text) in [
                    ("action", &a.action),
                    ("subject", &a.subject),
                    ("outcome", &a.outcome),
                    ("detail", &a.detail),
                ] {
                    if text.len() > MAX_TEXT_BYTES {
                        return Err(fail(format!("audit {field} longer than {MAX_TEXT_BYTES}")));
                    }
                }
                if a.action.is_empty() {
                    return Err(fail("audit record without an action".into()));
                }
                planned.actions.push(Action::Audit {
                    action: a.action,
                    subject: a.subject,
                    outcome: a.outcome,
                    detail: a.detail,
                });
            }
            Effect::Emit(e) => {
                if e.kind.is_empty() || e.kind.len() > 64 {
                    return Err(fail("event kind must be 1 to 64 bytes".into()));
                }
                let data = json(&e.data).map_err(fail)?;
                planned.actions.push(Action::Emit { kind: e.kind, data });
            }
            Effect::SetTimer(t) => {
                check_timer_name(&t.name).map_err(fail)?;
                let after = Duration::from_millis(t.after_ms);
                if after > MAX_TIMER {
                    return Err(fail(format!(
                        "timer of {} ms is longer than {} days",
                        t.after_ms,
                        MAX_TIMER.as_secs() / 86400
                    )));
                }
                planned.actions.push(Action::SetTimer {
                    name: t.name,
                    after,
                });
            }
            Effect::CancelTimer(name) => {
                check_timer_name(&name).map_err(fail)?;
                planned.actions.push(Action::CancelTimer(name));
            }
            Effect::Reply(text) => {
                planned.reply = Some(json(&text).map_err(fail)?);
            }
            Effect::BootstrapOffer(o) => {
                let offer = offer(plugin, o, now_ms).map_err(fail)?;
                planned.offers.push(OfferChange::Put(offer));
            }
            Effect::WithdrawOffer(name) => {
                let chars = name.chars().count();
                if chars == 0 || chars > crate::bootstrap::offers::MAX_OFFER_NAME_CHARS {
                    return Err(fail(crate::bootstrap::OfferError::Name.to_string()));
                }
                planned.offers.push(OfferChange::Withdraw {
                    plugin: plugin.name.as_str().to_owned(),
                    name,
                });
            }
        }
    }
    Ok(planned)
}

/// A bootstrap offer: on a resource of an owned object that the object's model defines as a
/// single-instance resource, with a value of (or losslessly convertible to) its type. The
/// resource's operations do not matter: Bootstrap-Write is not bound by them (Core §5.2.7.2),
/// and a plugin may well offer what no LwM2M server may write.
fn offer(
    plugin: &PluginInfo,
    o: BootstrapOffer,
    now_ms: u64,
) -> Result<crate::bootstrap::Offer, String> {
    let target = path(&o.path)?;
    let Path::Resource(object, _, resource) = target else {
        return Err(format!(
            "bootstrap offer on {target}: needs a resource path /o/i/r"
        ));
    };
    allowed(plugin, "bootstrap offer", &target, false, &|_| false)?;
    let model = plugin
        .objects
        .iter()
        .find(|owned| owned.id == object)
        .and_then(|owned| owned.model.resources.get(&resource))
        .ok_or_else(|| {
            format!("bootstrap offer on {target}: object {object} has no resource {resource}")
        })?;
    if model.multiple {
        return Err(format!(
            "bootstrap offer on {target}: a multiple-instance resource; offers write one value"
        ));
    }
    if model.data_type == steward_objects::DataType::None {
        return Err(format!(
            "bootstrap offer on {target}: an executable resource holds no value"
        ));
    }
    let value = convert::from_wit(o.value);
    let given = value.data_type();
    let value = value.coerce(model.data_type).ok_or_else(|| {
        format!(
            "bootstrap offer on {target}: a {} value does not fit the resource's type {}",
            given.ddf_name(),
            model.data_type.ddf_name()
        )
    })?;
    NewOffer {
        plugin: plugin.name.as_str().to_owned(),
        name: o.name,
        path: target,
        value,
        endpoints: o.endpoints,
        finish_on_accept: o.finish_on_accept,
        expires_ms: o.expires_ms,
    }
    .check(Some(now_ms))
    .map_err(|e| format!("bootstrap offer: {e}"))
}

fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(format!("key must be 1 to {MAX_KEY_BYTES} bytes"));
    }
    Ok(())
}

fn check_timer_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_CORRELATION_BYTES {
        return Err(format!(
            "timer name must be 1 to {MAX_CORRELATION_BYTES} bytes"
        ));
    }
    Ok(())
}

fn json(text: &str) -> Result<serde_json::Value, String> {
    if text.len() > MAX_JSON_BYTES {
        return Err(format!(
            "JSON of {} bytes exceeds {MAX_JSON_BYTES}",
            text.len()
        ));
    }
    serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))
}

fn path(text: &str) -> Result<Path, String> {
    match text.parse::<Path>() {
        Ok(Path::Root) | Err(_) => Err(format!("{text:?} is not an LwM2M path")),
        Ok(p) => Ok(p),
    }
}

/// The object of `path`, which `plugin` must own (or, for reads, may be a core object).
fn allowed(
    plugin: &PluginInfo,
    op: &str,
    p: &Path,
    read: bool,
    is_core: &dyn Fn(u16) -> bool,
) -> Result<(), String> {
    let object = p.object_id().unwrap_or_default();
    if plugin.owns(object) || (read && is_core(object)) {
        return Ok(());
    }
    Err(format!(
        "{op} on {p}: object {object} is not owned by plugin {}{}",
        plugin.name,
        if read {
            " and is not a core object"
        } else {
            ""
        }
    ))
}

fn request(
    plugin: &PluginInfo,
    operation: Operation,
    is_core: &dyn Fn(u16) -> bool,
) -> Result<DownlinkRequest, String> {
    Ok(match operation {
        Operation::Read(p) => {
            let path = path(&p)?;
            allowed(plugin, "read", &path, true, is_core)?;
            DownlinkRequest::Read { path, format: None }
        }
        Operation::Write(w) => {
            let target = path(&w.path)?;
            allowed(plugin, "write", &target, false, is_core)?;
            if target.depth() < 2 {
                return Err(format!(
                    "write on {target}: needs an instance or resource path"
                ));
            }
            let node = convert::node_from_entries(&target, w.entries)
                .map_err(|e| format!("write on {target}: {e}"))?;
            DownlinkRequest::Write {
                path: target,
                node,
                // Core §5.4.3: a resource (or resource instance) is always replaced; only an
                // instance has a partial update.
                mode: if w.replace || target.depth() > 2 {
                    WriteMode::Replace
                } else {
                    WriteMode::PartialUpdate
                },
                format: None,
            }
        }
        Operation::Execute(x) => {
            let path = path(&x.path)?;
            allowed(plugin, "execute", &path, false, is_core)?;
            DownlinkRequest::Execute {
                path,
                args: x.arguments,
            }
        }
        Operation::Create(c) => {
            allowed(plugin, "create", &Path::Object(c.object), false, is_core)?;
            let resources = convert::create_resources(c.object, c.entries)
                .map_err(|e| format!("create in /{}: {e}", c.object))?;
            DownlinkRequest::Create {
                object: c.object,
                instance: c.instance,
                resources,
                format: None,
            }
        }
        Operation::Delete(p) => {
            let path = path(&p)?;
            allowed(plugin, "delete", &path, false, is_core)?;
            DownlinkRequest::Delete { path }
        }
        Operation::Observe(p) => {
            let path = path(&p)?;
            allowed(plugin, "observe", &path, false, is_core)?;
            DownlinkRequest::Observe { path, format: None }
        }
        Operation::CancelObserve(p) => {
            let path = path(&p)?;
            allowed(plugin, "cancel-observe", &path, false, is_core)?;
            DownlinkRequest::CancelObservation { path }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::bindings::steward::plugin::types::{
        AuditRecord, BootstrapOffer, DeviceRequest, Entry, ExecuteRequest, Value as WitValue,
        WriteRequest,
    };
    use steward_objects::Value;

    const NOW: u64 = 1_000;

    fn offer(path: &str, value: WitValue) -> BootstrapOffer {
        BootstrapOffer {
            name: "o".into(),
            path: path.into(),
            value,
            endpoints: vec!["dev".into()],
            finish_on_accept: true,
            expires_ms: Some(NOW + 1),
        }
    }
    use crate::plugins::describe::{OwnedObject, PluginName};

    fn plugin() -> PluginInfo {
        let ddf = r#"<LWM2M><Object ObjectType="MODefinition"><Name>Example</Name>
            <ObjectID>42799</ObjectID><MultipleInstances>Multiple</MultipleInstances>
            <Mandatory>Optional</Mandatory><Resources>
            <Item ID="1"><Name>Label</Name><Operations>RW</Operations>
            <MultipleInstances>Single</MultipleInstances><Mandatory>Optional</Mandatory>
            <Type>String</Type></Item></Resources></Object></LWM2M>"#;
        let model = steward_objects::ddf::parse(ddf).expect("ddf").remove(0);
        PluginInfo {
            name: PluginName::parse("example").expect("name"),
            version: semver::Version::new(0, 1, 0),
            objects: vec![OwnedObject {
                id: 42799,
                model,
                ddf: ddf.into(),
            }],
            events: Default::default(),
        }
    }

    fn core(id: u16) -> bool {
        matches!(id, 0..=5 | 21)
    }

    fn req(op: Operation) -> Effect {
        Effect::Request(DeviceRequest {
            endpoint: "dev".into(),
            correlation: "c".into(),
            operation: op,
        })
    }

    #[test]
    fn allowed_effects_are_planned_in_order() {
        let planned = plan(
            &plugin(),
            vec![
                req(Operation::Read("/3/0/0".into())),
                Effect::KvPut(("k".into(), b"v".to_vec())),
                req(Operation::Write(WriteRequest {
                    path: "/42799/0/1".into(),
                    entries: vec![Entry {
                        path: "/42799/0/1".into(),
                        value: WitValue::Text("x".into()),
                    }],
                    replace: false,
                })),
                Effect::Audit(AuditRecord {
                    action: "a".into(),
                    subject: "s".into(),
                    outcome: "ok".into(),
                    detail: String::new(),
                }),
                Effect::Reply(r#"{"ok":true}"#.into()),
            ],
            &core,
            NOW,
        )
        .expect("planned");
        assert_eq!(planned.kv.len(), 1);
        assert_eq!(planned.actions.len(), 3);
        assert!(matches!(
            &planned.actions[0],
            Action::Request(PlannedRequest {
                request: DownlinkRequest::Read { .. },
                ..
            })
        ));
        assert_eq!(planned.reply, Some(serde_json::json!({"ok": true})));
    }

    #[test]
    fn forbidden_effects_fail_the_event_with_their_index() {
        let cases: Vec<(Effect, &str)> = vec![
            (
                req(Operation::Write(WriteRequest {
                    path: "/3/0/14".into(),
                    entries: vec![Entry {
                        path: "/3/0/14".into(),
                        value: WitValue::Text("+01".into()),
                    }],
                    replace: false,
                })),
                "not owned",
            ),
            (req(Operation::Read("/4242/0".into())), "not a core object"),
            (
                req(Operation::Read("/not/a/path".into())),
                "not an LwM2M path",
            ),
            (
                req(Operation::Execute(ExecuteRequest {
                    path: String::new(),
                    arguments: None,
                })),
                "not an LwM2M path",
            ),
            (Effect::KvPut((String::new(), vec![])), "key"),
            (
                Effect::KvPut(("k".into(), vec![0; MAX_VALUE_BYTES + 1])),
                "exceeds",
            ),
            (Effect::Reply("{".into()), "not JSON"),
            (
                Effect::BootstrapOffer(offer("/3/0/1", WitValue::Text("x".into()))),
                "not owned",
            ),
            (
                Effect::BootstrapOffer(offer("/42799/0", WitValue::Text("x".into()))),
                "needs a resource path",
            ),
            (
                Effect::BootstrapOffer(offer("/42799/0/9", WitValue::Text("x".into()))),
                "has no resource 9",
            ),
            (
                Effect::BootstrapOffer(offer("/42799/0/1", WitValue::Boolean(true))),
                "does not fit",
            ),
            (
                Effect::BootstrapOffer(BootstrapOffer {
                    expires_ms: Some(NOW),
                    ..offer("/42799/0/1", WitValue::Text("x".into()))
                }),
                "not after now",
            ),
            (
                Effect::BootstrapOffer(BootstrapOffer {
                    name: String::new(),
                    ..offer("/42799/0/1", WitValue::Text("x".into()))
                }),
                "name",
            ),
            (
                Effect::BootstrapOffer(BootstrapOffer {
                    endpoints: vec!["a\u{0}b".into()],
                    ..offer("/42799/0/1", WitValue::Text("x".into()))
                }),
                "not an endpoint name",
            ),
            (Effect::WithdrawOffer("x".repeat(65)), "name"),
        ];
        for (effect, want) in cases {
            let err = plan(
                &plugin(),
                vec![Effect::KvDelete("fine".into()), effect],
                &core,
                NOW,
            )
            .expect_err("refused");
            assert_eq!(err.index, 1);
            assert!(err.reason.contains(want), "{err} should mention {want:?}");
        }
    }

    #[test]
    fn offers_are_planned_with_their_values_typed_by_the_model() {
        let planned = plan(
            &plugin(),
            vec![
                Effect::BootstrapOffer(offer("/42799/0/1", WitValue::Text("x".into()))),
                // A Corelnk value fits a String resource (lossless).
                Effect::BootstrapOffer(BootstrapOffer {
                    name: "p".into(),
                    ..offer("/42799/1/1", WitValue::Corelnk("</3>".into()))
                }),
                Effect::WithdrawOffer("q".into()),
            ],
            &core,
            NOW,
        )
        .expect("planned");
        assert!(planned.actions.is_empty() && planned.kv.is_empty());
        let [
            OfferChange::Put(a),
            OfferChange::Put(b),
            OfferChange::Withdraw { plugin, name },
        ] = &planned.offers[..]
        else {
            panic!("two offers and a withdrawal: {:?}", planned.offers);
        };
        assert_eq!((a.plugin(), a.name()), ("example", "o"));
        assert_eq!(a.path(), Path::Resource(42799, 0, 1));
        assert_eq!(a.value(), &Value::String("x".into()));
        assert!(a.finish_on_accept());
        assert_eq!(a.expires_ms(), Some(NOW + 1));
        assert_eq!(b.value(), &Value::String("</3>".into()));
        assert_eq!((plugin.as_str(), name.as_str()), ("example", "q"));
    }
}
