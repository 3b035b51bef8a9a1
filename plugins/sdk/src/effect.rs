//! Constructors for the [`Effect`]s a plugin returns from `handle`.
//!
//! The host applies the effects of one event after `handle` returns: key-value writes first,
//! all together and atomically, then the others in the order given.
//!
//! Device requests take the device's `endpoint`, a `correlation` chosen by the plugin (at most
//! 256 bytes, echoed in the [`Event::Response`](crate::Event::Response) that answers the
//! request and in the notifications of an observation) and the target.

use crate::{
    ApiEvent, AuditRecord, BootstrapOffer, CreateRequest, DeviceRequest, Effect, Entry,
    ExecuteRequest, Operation, TimerRequest, Value, WriteRequest,
};

/// A request to a device: the general form of [`read`], [`write`] and the others.
pub fn request(
    endpoint: impl Into<String>,
    correlation: impl Into<String>,
    operation: Operation,
) -> Effect {
    Effect::Request(DeviceRequest {
        endpoint: endpoint.into(),
        correlation: correlation.into(),
        operation,
    })
}

/// Reads an object, instance, resource or resource instance (also allowed on core objects).
/// Answered with [`ResponseBody::Read`](crate::ResponseBody::Read).
pub fn read(
    endpoint: impl Into<String>,
    correlation: impl Into<String>,
    path: impl Into<String>,
) -> Effect {
    request(endpoint, correlation, Operation::Read(path.into()))
}

/// Writes `entries` (each under `path`) to an instance, resource or resource instance:
/// `replace` = true replaces it (CoAP PUT), false updates it (POST). Answered with
/// [`ResponseBody::Written`](crate::ResponseBody::Written).
pub fn write(
    endpoint: impl Into<String>,
    correlation: impl Into<String>,
    path: impl Into<String>,
    entries: Vec<Entry>,
    replace: bool,
) -> Effect {
    request(
        endpoint,
        correlation,
        Operation::Write(WriteRequest {
            path: path.into(),
            entries,
            replace,
        }),
    )
}

/// Executes a resource, with optional Core §5.4.5 arguments (`"0='a',1"`). Answered with
/// [`ResponseBody::Executed`](crate::ResponseBody::Executed).
pub fn execute(
    endpoint: impl Into<String>,
    correlation: impl Into<String>,
    path: impl Into<String>,
    arguments: Option<String>,
) -> Effect {
    request(
        endpoint,
        correlation,
        Operation::Execute(ExecuteRequest {
            path: path.into(),
            arguments,
        }),
    )
}

/// Creates an instance of `object` with the given resource values (resource ID, value).
///
/// `instance` none lets the device choose the instance ID. Since the new instance is not known
/// then, the entries carry the resource paths `/<object>/<instance or 0>/<resource>`: the
/// host takes only the resource IDs from the entries of a create. Answered with
/// [`ResponseBody::Created`](crate::ResponseBody::Created) and the new instance's path when
/// the device named one.
pub fn create(
    endpoint: impl Into<String>,
    correlation: impl Into<String>,
    object: u16,
    instance: Option<u16>,
    resources: impl IntoIterator<Item = (u16, Value)>,
) -> Effect {
    let entry_instance = instance.unwrap_or(0);
    let entries = resources
        .into_iter()
        .map(|(resource, value)| Entry {
            path: format!("/{object}/{entry_instance}/{resource}"),
            value,
        })
        .collect();
    request(
        endpoint,
        correlation,
        Operation::Create(CreateRequest {
            object,
            instance,
            entries,
        }),
    )
}

/// Deletes an instance. Answered with [`ResponseBody::Deleted`](crate::ResponseBody::Deleted).
pub fn delete(
    endpoint: impl Into<String>,
    correlation: impl Into<String>,
    path: impl Into<String>,
) -> Effect {
    request(endpoint, correlation, Operation::Delete(path.into()))
}

/// Observes a path. Answered with [`ResponseBody::Observing`](crate::ResponseBody::Observing)
/// and the current values; then each notification arrives as an
/// [`Event::Notification`](crate::Event::Notification) with the same correlation.
pub fn observe(
    endpoint: impl Into<String>,
    correlation: impl Into<String>,
    path: impl Into<String>,
) -> Effect {
    request(endpoint, correlation, Operation::Observe(path.into()))
}

/// Cancels the observation of a path. Answered with
/// [`ResponseBody::Cancelled`](crate::ResponseBody::Cancelled).
pub fn cancel_observe(
    endpoint: impl Into<String>,
    correlation: impl Into<String>,
    path: impl Into<String>,
) -> Effect {
    request(endpoint, correlation, Operation::CancelObserve(path.into()))
}

/// Stores `value` at `key` in the plugin's key-value namespace (key at most 256 bytes, value
/// at most 64 KiB).
pub fn kv_put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Effect {
    Effect::KvPut((key.into(), value.into()))
}

/// Removes `key` from the plugin's key-value namespace.
pub fn kv_delete(key: impl Into<String>) -> Effect {
    Effect::KvDelete(key.into())
}

/// An audit record: what was decided (`action`), whom it concerns (`subject`), the `outcome`
/// (`"ok"`, `"refused"`, `"failed"` ...) and a free `detail`.
pub fn audit(
    action: impl Into<String>,
    subject: impl Into<String>,
    outcome: impl Into<String>,
    detail: impl Into<String>,
) -> Effect {
    Effect::Audit(AuditRecord {
        action: action.into(),
        subject: subject.into(),
        outcome: outcome.into(),
        detail: detail.into(),
    })
}

/// An event on the API's event stream (`/api/event`), as `PLUGIN` with the plugin's name;
/// `data` is JSON text.
pub fn emit(kind: impl Into<String>, data: impl Into<String>) -> Effect {
    Effect::Emit(ApiEvent {
        kind: kind.into(),
        data: data.into(),
    })
}

/// Sets the timer `name` to run out in `after_ms` milliseconds, as an
/// [`Event::Timer`](crate::Event::Timer). Setting a timer of the same name again moves it.
pub fn set_timer(name: impl Into<String>, after_ms: u64) -> Effect {
    Effect::SetTimer(TimerRequest {
        name: name.into(),
        after_ms,
    })
}

/// Cancels the timer `name`.
pub fn cancel_timer(name: impl Into<String>) -> Effect {
    Effect::CancelTimer(name.into())
}

/// The answer (JSON text) to the operator command being handled; ignored for other events.
pub fn reply(json: impl Into<String>) -> Effect {
    Effect::Reply(json.into())
}

/// Offers `value` at the resource `path` (of an owned object) to every bootstrap session of
/// `endpoints` (all endpoints when empty), written before the session's configuration; see
/// the WIT's `bootstrap-offer`. The device's answer comes back as
/// [`Event::OfferAnswered`](crate::Event::OfferAnswered).
pub fn bootstrap_offer(
    name: impl Into<String>,
    path: impl Into<String>,
    value: Value,
    endpoints: Vec<String>,
    finish_on_accept: bool,
    expires_ms: Option<u64>,
) -> Effect {
    Effect::BootstrapOffer(BootstrapOffer {
        name: name.into(),
        path: path.into(),
        value,
        endpoints,
        finish_on_accept,
        expires_ms,
    })
}

/// Withdraws the bootstrap offer `name` (no effect when there is none).
pub fn withdraw_offer(name: impl Into<String>) -> Effect {
    Effect::WithdrawOffer(name.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_puts_the_instance_or_0_in_the_entry_paths() {
        let paths = |instance| match create("ep", "c", 42799, instance, [(1, Value::Boolean(true))])
        {
            Effect::Request(DeviceRequest {
                operation: Operation::Create(create),
                ..
            }) => create
                .entries
                .into_iter()
                .map(|e| e.path)
                .collect::<Vec<_>>(),
            other => panic!("not a create: {other:?}"),
        };
        assert_eq!(paths(Some(7)), ["/42799/7/1"]);
        assert_eq!(paths(None), ["/42799/0/1"]);
    }
}
