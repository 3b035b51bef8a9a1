//! Observations the device serves (Information Reporting, Transport §6.4.5) and when to notify.
//!
//! The CoAP stack keeps the list of observers and their Observe sequence (RFC 7641); this
//! module keeps what LwM2M adds per observation: the notification attributes and the timing
//! they ask for.
//!
//! - A notification re-runs the registering request (RFC 7641 §4.2), so it comes in the
//!   observation's format, single path or composite alike.
//! - Attributes in force: the ones in the Observe request's query (1.2: attached to this
//!   observation) over the written ones by Core precedence (resource instance > resource >
//!   instance > object), then the Server object defaults `/1/x/2` (pmin) and `/1/x/3` (pmax).
//!   Composite observations use only their query and the defaults.
//! - A change of the device ([`Device::generation`]) schedules an evaluation, no earlier than
//!   `epmin` after the previous one; `epmax` forces one. An evaluation that finds a new value
//!   passing the conditions schedules a notification no earlier than `pmin` after the last
//!   one; with nothing sent for `pmax`, one goes anyway.
//! - Conditions (Core 1.1 §5.1.2, 1.2 §7.3): for a numeric single value with `gt`, `lt` or
//!   `st`, notify when the value crossed `gt` or `lt` since the last notification, or moved
//!   by at least `st` from it (any one suffices, as Wakaama does); for a boolean with `edge`,
//!   on the rising (1) or falling (0) edge only; otherwise on any change.
//! - `con` (1.2) is not honoured per observation: the stack's `confirmable_notifications`
//!   setting decides for all.
//!
//! One server per device in practice, so the state is per resource key, shared by every
//! observer of that key (the stack keeps one entry per peer and key).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::time::{Duration, Instant};

use steward_coap::message::{Method, Request, Response};
use steward_coap::stack::Stack;
use steward_objects::link::NotificationAttributes;
use steward_objects::{ContentFormat, Node, Path, Resource, Value, codec};

use crate::device::{self, Device};

/// A notification that went out (or the final error one), for the device's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notified {
    pub key: String,
    pub code: steward_coap::message::Code,
    /// How many observers it went to.
    pub observers: usize,
}

/// The device's observations; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct Observations {
    list: BTreeMap<String, Observation>,
    seen_generation: u64,
}

#[derive(Debug, Clone)]
struct Observation {
    /// The registering request; notifications are its answer, re-run.
    request: Request,
    /// What the attributes and conditions look at.
    targets: Vec<Path>,
    composite: bool,
    /// Attributes in the Observe request's query.
    query: NotificationAttributes,
    last_sent: Instant,
    last_payload: Vec<u8>,
    last_value: Option<Scalar>,
    last_eval: Instant,
    eval_due: Option<Instant>,
    send_due: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Scalar {
    Number(f64),
    Bool(bool),
}

/// The attributes of one observation with defaults applied.
#[derive(Debug, Clone, Copy)]
struct Effective {
    pmin: Duration,
    pmax: Option<Duration>,
    gt: Option<f64>,
    lt: Option<f64>,
    st: Option<f64>,
    epmin: Duration,
    epmax: Option<Duration>,
    edge: Option<bool>,
}

/// The key the stack files an observation under: what is observed and in which format, so a
/// second observation of the same path in another format is a different one.
pub fn resource_key(request: &Request, response: &Response) -> String {
    let format = response.options.content_format().unwrap_or(0);
    match request.method {
        Method::Fetch => format!("fetch:{:016x}|{format}", fnv(&request.payload)),
        _ => format!("{}|{format}", request.path_string()),
    }
}

/// FNV-1a: a short stable name for a composite path list.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Observations {
    pub fn new() -> Observations {
        Observations::default()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Forgets every observation (reboot): the server re-observes after it re-registers.
    pub fn clear(&mut self) {
        self.list.clear();
    }

    /// Starts the bookkeeping for an observation the stack accepted with `response`.
    pub fn start(
        &mut self,
        now: Instant,
        key: String,
        request: Request,
        response: &Response,
        device: &Device,
    ) {
        let composite = request.method == Method::Fetch;
        let targets = if composite {
            request
                .options
                .content_format()
                .and_then(ContentFormat::from_code)
                .and_then(|f| codec::decode_paths(f, &request.payload).ok())
                .unwrap_or_default()
        } else {
            request
                .path_string()
                .parse::<Path>()
                .map(|p| vec![p])
                .unwrap_or_default()
        };
        // A query that is not valid attributes was not refused by the Read either; it simply
        // attaches nothing.
        let query = request
            .options
            .uri_query()
            .and_then(|q| NotificationAttributes::from_query(&q).ok())
            .unwrap_or_default();
        let last_value = scalar(device, &targets, composite);
        self.seen_generation = device.generation();
        self.list.insert(
            key,
            Observation {
                request,
                targets,
                composite,
                query,
                last_sent: now,
                last_payload: response.payload.clone(),
                last_value,
                last_eval: now,
                eval_due: None,
                send_due: None,
            },
        );
    }

    /// Evaluates and notifies what is due by `now`.
    pub fn poll<P: Copy + Eq + Hash + Ord + Debug>(
        &mut self,
        now: Instant,
        device: &mut Device,
        stack: &mut Stack<P>,
    ) -> Vec<Notified> {
        // Cancelled (Observe 1), Reset or unacknowledged: the stack took them off its list.
        self.list
            .retain(|key, _| stack.observers().observers(key).next().is_some());
        let changed = device.generation() != self.seen_generation;
        self.seen_generation = device.generation();
        let mut notified = Vec::new();
        let mut ended = Vec::new();
        for (key, obs) in &mut self.list {
            let a = effective(device, obs);
            if changed && obs.eval_due.is_none() {
                obs.eval_due = Some(now.max(obs.last_eval + a.epmin));
            }
            if let Some(epmax) = a.epmax
                && obs.last_eval + epmax <= now
            {
                obs.eval_due = Some(now);
            }
            if obs.eval_due.is_some_and(|t| t <= now) {
                obs.evaluate(now, device, &a);
            }
            let pmax_due = a.pmax.is_some_and(|p| obs.last_sent + p <= now);
            if pmax_due || obs.send_due.is_some_and(|t| t <= now) {
                let response = device::handle(device, &obs.request);
                let code = response.code;
                let payload = response.payload.clone();
                let observers = stack.notify_observers(now, key, response);
                notified.push(Notified {
                    key: key.clone(),
                    code,
                    observers,
                });
                if !code.is_success() || observers == 0 {
                    // An error notification is the last one (RFC 7641 §3.2).
                    ended.push(key.clone());
                    continue;
                }
                obs.last_sent = now;
                obs.last_payload = payload;
                obs.last_value = scalar(device, &obs.targets, obs.composite);
                obs.send_due = None;
            }
        }
        for key in ended {
            self.list.remove(&key);
        }
        notified
    }

    /// The next instant [`Observations::poll`] has work at.
    pub fn poll_timeout(&self, device: &Device) -> Option<Instant> {
        let changed = device.generation() != self.seen_generation;
        self.list
            .values()
            .flat_map(|obs| {
                let a = effective(device, obs);
                [
                    obs.eval_due,
                    changed.then(|| obs.last_eval + a.epmin),
                    obs.send_due,
                    a.pmax.map(|p| obs.last_sent + p),
                    a.epmax.map(|p| obs.last_eval + p),
                ]
            })
            .flatten()
            .min()
    }
}

impl Observation {
    /// Looks at the value now and schedules a notification if the conditions hold.
    fn evaluate(&mut self, now: Instant, device: &mut Device, a: &Effective) {
        self.eval_due = None;
        self.last_eval = now;
        let response = device::handle(device, &self.request);
        if response.code.is_success() && response.payload == self.last_payload {
            return;
        }
        // An error (the path is gone) is always worth telling: it ends the observation.
        let current = scalar(device, &self.targets, self.composite);
        if response.code.is_success() && !passes(a, self.last_value, current) {
            return;
        }
        let at = now.max(self.last_sent + a.pmin);
        self.send_due = Some(self.send_due.map_or(at, |t| t.min(at)));
    }
}

fn effective(device: &Device, obs: &Observation) -> Effective {
    let mut attrs = obs.query;
    if !obs.composite
        && let Some(target) = obs.targets.first()
    {
        attrs = attrs.inherit(&device.effective_attributes(target));
    }
    let secs = |s: u32| Duration::from_secs(u64::from(s));
    let pmin = attrs.pmin.value().or(device.default_period(2)).unwrap_or(0);
    // pmax 0 means none; a pmax below pmin is ignored (Core §5.1.2).
    let pmax = attrs
        .pmax
        .value()
        .or(device.default_period(3))
        .filter(|p| *p > 0 && *p >= pmin);
    let epmin = attrs.epmin.value().unwrap_or(0);
    let epmax = attrs.epmax.value().filter(|p| *p > 0 && *p > epmin);
    Effective {
        pmin: secs(pmin),
        pmax: pmax.map(secs),
        gt: attrs.gt.value(),
        lt: attrs.lt.value(),
        st: attrs.st.value(),
        epmin: secs(epmin),
        epmax: epmax.map(secs),
        edge: attrs.edge.value(),
    }
}

/// Whether a change from `last` (as last notified) to `now` is worth a notification.
fn passes(a: &Effective, last: Option<Scalar>, now: Option<Scalar>) -> bool {
    match (last, now) {
        (Some(Scalar::Number(prev)), Some(Scalar::Number(v)))
            if a.gt.is_some() || a.lt.is_some() || a.st.is_some() =>
        {
            let crossed = |t: Option<f64>| t.is_some_and(|t| (prev > t) != (v > t));
            let stepped = a.st.is_some_and(|st| (v - prev).abs() >= st);
            crossed(a.gt) || crossed(a.lt) || stepped
        }
        (Some(Scalar::Bool(prev)), Some(Scalar::Bool(v))) if a.edge.is_some() => {
            if a.edge == Some(true) {
                !prev && v
            } else {
                prev && !v
            }
        }
        _ => true,
    }
}

/// The single numeric or boolean value a single-path observation looks at.
fn scalar(device: &Device, targets: &[Path], composite: bool) -> Option<Scalar> {
    let [path] = targets else { return None };
    if composite {
        return None;
    }
    let value = match device.node(path)? {
        Node::Resource(Resource::Single(v)) | Node::ResourceInstance(v) => v,
        _ => return None,
    };
    match value {
        // Counts and levels are far below 2^53: the conversion is exact for them.
        #[allow(clippy::cast_precision_loss)]
        Value::Integer(v) | Value::Time(v) => Some(Scalar::Number(v as f64)),
        #[allow(clippy::cast_precision_loss)]
        Value::UnsignedInteger(v) => Some(Scalar::Number(v as f64)),
        Value::Float(v) => Some(Scalar::Number(v)),
        Value::Boolean(b) => Some(Scalar::Bool(b)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs() -> Effective {
        Effective {
            pmin: Duration::ZERO,
            pmax: None,
            gt: None,
            lt: None,
            st: None,
            epmin: Duration::ZERO,
            epmax: None,
            edge: None,
        }
    }

    #[test]
    fn thresholds_and_steps() {
        let n = |v| Some(Scalar::Number(v));
        let gt = Effective {
            gt: Some(50.0),
            ..attrs()
        };
        assert!(passes(&gt, n(49.0), n(51.0)));
        assert!(passes(&gt, n(51.0), n(49.0)));
        assert!(!passes(&gt, n(51.0), n(60.0)));
        let st = Effective {
            st: Some(5.0),
            ..attrs()
        };
        assert!(!passes(&st, n(10.0), n(14.0)));
        assert!(passes(&st, n(10.0), n(15.0)));
        assert!(passes(&attrs(), n(1.0), n(2.0)));
        let rising = Effective {
            edge: Some(true),
            ..attrs()
        };
        let b = |v| Some(Scalar::Bool(v));
        assert!(passes(&rising, b(false), b(true)));
        assert!(!passes(&rising, b(true), b(false)));
    }
}
