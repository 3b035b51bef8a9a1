//! Queue mode (Transport §6.5): downlink requests for a sleeping device wait here, FIFO, each
//! with its own deadline, until the device shows up (any uplink) and they are released one at a
//! time.
//!
//! # Persistence
//!
//! The queue the service works with lives in memory ([`DownlinkQueues`]); durability is the
//! caller's job, driven by the service's commands (the service stays free of I/O):
//!
//! - a request that goes into the queue comes out as [`Command::Persist`](super::Command) with
//!   its record ([`encode_queued`]); the runtime appends it to the store's queue
//!   (`Store::enqueue`);
//! - once that request has an outcome (answered, failed, expired, device deregistered) the
//!   service emits [`Command::Unpersist`](super::Command) and the runtime removes the record.
//!   The record stays in the store while the request is on the wire, so a request in flight
//!   when the server dies is sent again after the restart: delivery is at least once;
//! - at start the runtime reads the store's queues back and hands each record to
//!   `DeviceRequests::restore_queued`, which puts it back in this queue under a fresh ticket.
//!
//! # Record encoding (version 1)
//!
//! One CBOR array ([`minicbor`] derive, field indices below), stored as the opaque `request`
//! bytes of a [`QueuedRequest`](crate::store::QueuedRequest). The store keeps the endpoint, the
//! creation time and the expiry next to it, so the record carries only what rebuilding the CoAP
//! request and decoding its answer needs:
//!
//! | index | field | content |
//! |---|---|---|
//! | 0 | `version` | `1` |
//! | 1 | `ticket` | the ticket in the run that queued it (informative: tickets restart at 1) |
//! | 2 | `op` | the operation, see [`op_code`] (1 Read … 13 Cancel Observation-Composite) |
//! | 3 | `paths` | target paths as text (`/3/0/9`); for Create, `/object[/instance]` |
//! | 4 | `mode` | Write: 0 replace (PUT), 1 partial update (POST); absent otherwise |
//! | 5 | `method` | the CoAP method code (1 GET … 7 iPATCH) |
//! | 6 | `options` | `[number, value bytes]` pairs in order, Uri-Path already resolved for the client |
//! | 7 | `payload` | bytes |
//! | 8 | `format` | the content format sent or asked for (Accept), the answer's expected format |
//!
//! The CoAP request is stored already built (the client's alternate path, the chosen format,
//! the encoded payload): the device registration it was built for is the one it is delivered
//! to, so rebuilding it from the typed request is neither needed nor safer.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use minicbor::{Decode, Encode};
use steward_coap::message::{Method, Options, Request};
use steward_objects::{ContentFormat, Path};

use super::request::{BuiltRequest, RequestKind, WriteMode};
use super::service::Ticket;

/// The record format this build writes and reads.
pub const RECORD_VERSION: u8 = 1;

/// One request waiting for its device.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedEntry {
    pub ticket: Ticket,
    pub kind: RequestKind,
    pub built: BuiltRequest,
    pub queued_at: Instant,
    pub deadline: Instant,
}

/// The queues of every endpoint.
#[derive(Debug, Default)]
pub struct DownlinkQueues {
    queues: HashMap<String, VecDeque<QueuedEntry>>,
}

impl DownlinkQueues {
    pub fn enqueue(&mut self, endpoint: &str, entry: QueuedEntry) {
        self.queues
            .entry(endpoint.to_owned())
            .or_default()
            .push_back(entry);
    }

    pub fn len(&self, endpoint: &str) -> usize {
        self.queues.get(endpoint).map_or(0, VecDeque::len)
    }

    pub fn is_empty(&self, endpoint: &str) -> bool {
        self.len(endpoint) == 0
    }

    pub fn pop(&mut self, endpoint: &str) -> Option<QueuedEntry> {
        let queue = self.queues.get_mut(endpoint)?;
        let entry = queue.pop_front();
        if queue.is_empty() {
            self.queues.remove(endpoint);
        }
        entry
    }

    /// Removes and returns every entry whose deadline has passed, across endpoints.
    pub fn expire(&mut self, now: Instant) -> Vec<(String, QueuedEntry)> {
        let mut out = Vec::new();
        self.queues.retain(|endpoint, queue| {
            let (due, keep): (VecDeque<_>, VecDeque<_>) =
                queue.drain(..).partition(|e| e.deadline <= now);
            out.extend(due.into_iter().map(|e| (endpoint.clone(), e)));
            *queue = keep;
            !queue.is_empty()
        });
        // Deterministic order for callers and tests: by deadline, then FIFO.
        out.sort_by_key(|(_, e)| (e.deadline, e.ticket));
        out
    }

    /// Removes an endpoint's whole queue (deregistration).
    pub fn clear(&mut self, endpoint: &str) -> Vec<QueuedEntry> {
        self.queues
            .remove(endpoint)
            .map(Vec::from)
            .unwrap_or_default()
    }

    /// The earliest deadline of any queued entry.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.queues
            .values()
            .flat_map(|q| q.iter().map(|e| e.deadline))
            .min()
    }
}

/// Why a stored queue record cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("queued request record is not valid CBOR: {0}")]
    Cbor(String),
    #[error(
        "queued request record version {found} is not supported (this build reads {RECORD_VERSION})"
    )]
    Version { found: u8 },
    #[error("queued request record has an unknown operation {0}")]
    Operation(u8),
    #[error("queued request record has an unknown CoAP method {0}")]
    Method(u8),
    #[error("queued request record has an invalid path {0:?}")]
    Path(String),
    #[error("queued request record has {found} paths where its operation needs {needs}")]
    PathCount { found: usize, needs: &'static str },
    #[error("queued request record has an unknown content format {0}")]
    Format(u16),
    #[error("queued request record cannot be encoded: {0}")]
    Encode(String),
}

/// A queued request read back from its record.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedRecord {
    /// The ticket it had in the run that queued it.
    pub original_ticket: u64,
    pub kind: RequestKind,
    pub built: BuiltRequest,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
struct Record {
    #[n(0)]
    version: u8,
    #[n(1)]
    ticket: u64,
    #[n(2)]
    op: u8,
    #[n(3)]
    paths: Vec<String>,
    #[n(4)]
    mode: Option<u8>,
    #[n(5)]
    method: u8,
    #[n(6)]
    options: Vec<RecordOption>,
    #[cbor(n(7), with = "minicbor::bytes")]
    payload: Vec<u8>,
    #[n(8)]
    format: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
struct RecordOption {
    #[n(0)]
    number: u16,
    #[cbor(n(1), with = "minicbor::bytes")]
    value: Vec<u8>,
}

/// The operation codes of record field 2.
pub fn op_code(kind: &RequestKind) -> u8 {
    match kind {
        RequestKind::Read { .. } => 1,
        RequestKind::Write { .. } => 2,
        RequestKind::WriteAttributes { .. } => 3,
        RequestKind::Execute { .. } => 4,
        RequestKind::Create { .. } => 5,
        RequestKind::Delete { .. } => 6,
        RequestKind::Discover { .. } => 7,
        RequestKind::ReadComposite { .. } => 8,
        RequestKind::WriteComposite { .. } => 9,
        RequestKind::Observe { .. } => 10,
        RequestKind::CancelObservation { .. } => 11,
        RequestKind::ObserveComposite { .. } => 12,
        RequestKind::CancelCompositeObservation { .. } => 13,
    }
}

/// The record of a queued request (see the module docs for the layout).
pub fn encode_queued(
    ticket: Ticket,
    kind: &RequestKind,
    built: &BuiltRequest,
) -> Result<Vec<u8>, RecordError> {
    let text = |paths: &[Path]| paths.iter().map(ToString::to_string).collect::<Vec<_>>();
    let (paths, mode) = match kind {
        RequestKind::Read { path }
        | RequestKind::WriteAttributes { path }
        | RequestKind::Execute { path }
        | RequestKind::Delete { path }
        | RequestKind::Discover { path }
        | RequestKind::Observe { path }
        | RequestKind::CancelObservation { path } => (text(&[*path]), None),
        RequestKind::Write { path, mode } => (
            text(&[*path]),
            Some(match mode {
                WriteMode::Replace => 0,
                WriteMode::PartialUpdate => 1,
            }),
        ),
        RequestKind::Create { object, instance } => (
            vec![match instance {
                Some(i) => Path::Instance(*object, *i).to_string(),
                None => Path::Object(*object).to_string(),
            }],
            None,
        ),
        RequestKind::ReadComposite { paths }
        | RequestKind::WriteComposite { paths }
        | RequestKind::ObserveComposite { paths }
        | RequestKind::CancelCompositeObservation { paths } => (text(paths), None),
    };
    let record = Record {
        version: RECORD_VERSION,
        ticket: ticket.id(),
        op: op_code(kind),
        paths,
        mode,
        method: built.request.method.code(),
        options: built
            .request
            .options
            .iter()
            .map(|(number, value)| RecordOption {
                number,
                value: value.to_vec(),
            })
            .collect(),
        payload: built.request.payload.clone(),
        format: built.format.map(ContentFormat::code),
    };
    minicbor::to_vec(&record).map_err(|e| RecordError::Encode(e.to_string()))
}

/// Reads a record written by [`encode_queued`].
pub fn decode_queued(bytes: &[u8]) -> Result<DecodedRecord, RecordError> {
    let record: Record = minicbor::decode(bytes).map_err(|e| RecordError::Cbor(e.to_string()))?;
    if record.version != RECORD_VERSION {
        return Err(RecordError::Version {
            found: record.version,
        });
    }
    let paths = record
        .paths
        .iter()
        .map(|p| p.parse::<Path>().map_err(|_| RecordError::Path(p.clone())))
        .collect::<Result<Vec<Path>, _>>()?;
    let one = || match paths.as_slice() {
        [path] => Ok(*path),
        _ => Err(RecordError::PathCount {
            found: paths.len(),
            needs: "one",
        }),
    };
    let kind = match record.op {
        1 => RequestKind::Read { path: one()? },
        2 => RequestKind::Write {
            path: one()?,
            mode: if record.mode == Some(1) {
                WriteMode::PartialUpdate
            } else {
                WriteMode::Replace
            },
        },
        3 => RequestKind::WriteAttributes { path: one()? },
        4 => RequestKind::Execute { path: one()? },
        5 => match one()? {
            Path::Object(object) => RequestKind::Create {
                object,
                instance: None,
            },
            Path::Instance(object, instance) => RequestKind::Create {
                object,
                instance: Some(instance),
            },
            other => return Err(RecordError::Path(other.to_string())),
        },
        6 => RequestKind::Delete { path: one()? },
        7 => RequestKind::Discover { path: one()? },
        8 => RequestKind::ReadComposite { paths },
        9 => RequestKind::WriteComposite { paths },
        10 => RequestKind::Observe { path: one()? },
        11 => RequestKind::CancelObservation { path: one()? },
        12 => RequestKind::ObserveComposite { paths },
        13 => RequestKind::CancelCompositeObservation { paths },
        other => return Err(RecordError::Operation(other)),
    };
    let method = Method::from_code(record.method).ok_or(RecordError::Method(record.method))?;
    let mut options = Options::new();
    for o in record.options {
        options.push(o.number, o.value);
    }
    let format = match record.format {
        None => None,
        Some(code) => Some(ContentFormat::from_code(code).ok_or(RecordError::Format(code))?),
    };
    Ok(DecodedRecord {
        original_ticket: record.ticket,
        kind,
        built: BuiltRequest {
            request: Request {
                method,
                options,
                payload: record.payload,
            },
            format,
        },
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use steward_coap::message::{encode_uint, option};

    use super::*;

    fn built(method: Method, path: &str, payload: Vec<u8>) -> BuiltRequest {
        BuiltRequest {
            request: Request::new(method)
                .with_path(path)
                .with_option(option::ACCEPT, encode_uint(112))
                .with_query("pmin=5")
                .with_payload(112, payload),
            format: Some(ContentFormat::SenmlJson),
        }
    }

    #[test]
    fn records_round_trip_for_every_kind() {
        let p = Path::Resource(3, 0, 9);
        let many = vec![Path::Resource(3, 0, 9), Path::Instance(1, 0)];
        let kinds = [
            RequestKind::Read { path: p },
            RequestKind::Write {
                path: p,
                mode: WriteMode::PartialUpdate,
            },
            RequestKind::Write {
                path: p,
                mode: WriteMode::Replace,
            },
            RequestKind::WriteAttributes { path: p },
            RequestKind::Execute { path: p },
            RequestKind::Create {
                object: 5,
                instance: None,
            },
            RequestKind::Create {
                object: 5,
                instance: Some(2),
            },
            RequestKind::Delete {
                path: Path::Instance(5, 2),
            },
            RequestKind::Discover {
                path: Path::Object(3),
            },
            RequestKind::ReadComposite {
                paths: many.clone(),
            },
            RequestKind::WriteComposite {
                paths: many.clone(),
            },
            RequestKind::Observe { path: p },
            RequestKind::CancelObservation { path: p },
            RequestKind::ObserveComposite {
                paths: many.clone(),
            },
            RequestKind::CancelCompositeObservation { paths: many },
        ];
        for (i, kind) in kinds.into_iter().enumerate() {
            let b = built(Method::Fetch, "/alt/3/0/9", vec![1, 2, 3, i as u8]);
            let bytes = encode_queued(Ticket::for_test(7), &kind, &b)
                .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            let decoded = decode_queued(&bytes).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            assert_eq!(decoded.kind, kind);
            assert_eq!(decoded.built, b);
            assert_eq!(decoded.original_ticket, 7);
        }
    }

    #[test]
    fn bad_records_are_typed_errors() {
        assert!(matches!(decode_queued(&[0xff]), Err(RecordError::Cbor(_))));
        let b = built(Method::Get, "/3/0/9", Vec::new());
        let kind = RequestKind::Read {
            path: Path::Resource(3, 0, 9),
        };
        let bytes = encode_queued(Ticket::for_test(1), &kind, &b).unwrap_or_default();
        let mut record: Record = minicbor::decode(&bytes).unwrap_or_else(|e| panic!("{e}"));
        record.version = 9;
        let bytes = minicbor::to_vec(&record).unwrap_or_default();
        assert_eq!(
            decode_queued(&bytes),
            Err(RecordError::Version { found: 9 })
        );
        record.version = RECORD_VERSION;
        record.op = 99;
        let bytes = minicbor::to_vec(&record).unwrap_or_default();
        assert_eq!(decode_queued(&bytes), Err(RecordError::Operation(99)));
        record.op = 1;
        record.paths = vec!["nope".into()];
        let bytes = minicbor::to_vec(&record).unwrap_or_default();
        assert_eq!(decode_queued(&bytes), Err(RecordError::Path("nope".into())));
    }

    #[test]
    fn expire_takes_due_entries_in_deadline_order() {
        let now = Instant::now();
        let entry = |t: u64, after: u64| QueuedEntry {
            ticket: Ticket::for_test(t),
            kind: RequestKind::Read {
                path: Path::Resource(3, 0, 9),
            },
            built: built(Method::Get, "/3/0/9", Vec::new()),
            queued_at: now,
            deadline: now + Duration::from_secs(after),
        };
        let mut q = DownlinkQueues::default();
        q.enqueue("a", entry(1, 5));
        q.enqueue("b", entry(2, 1));
        q.enqueue("a", entry(3, 60));
        let due = q.expire(now + Duration::from_secs(10));
        let tickets: Vec<u64> = due.iter().map(|(_, e)| e.ticket.id()).collect();
        assert_eq!(tickets, [2, 1]);
        assert_eq!(q.len("a"), 1);
        assert!(q.is_empty("b"));
    }
}
