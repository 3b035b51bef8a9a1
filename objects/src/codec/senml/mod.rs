//! SenML (RFC 8428) in JSON (110) and CBOR (112), as LwM2M uses it (Core TS 1.1 §7.4.4, §7.4.5).
//!
//! Two layers, shared by both encodings:
//! - the RFC layer: a pack is parsed into [`Record`]s exactly as sent, then [`resolve`]d
//!   (RFC 8428 §4.6) into [`ResolvedRecord`]s: base name, time, unit, value and sum applied,
//!   version checked. [`json::parse_records`] and [`cbor::parse_records`] expose it, so RFC
//!   examples with non-LwM2M names can be checked field by field;
//! - the LwM2M layer: each resolved name is a path (`bn` + `n` = `/3/0/1`), each value is typed
//!   through the model with [`codec::type_value`](crate::codec::type_value). It streams: the
//!   encoding's parser hands over one record at a time, which is resolved and turned into a
//!   leaf at once, and base names are shared, not copied, so memory follows the leaves.
//!
//! Choices worth knowing:
//! - Unknown resources keep the SenML type: `vs` → String, `vb` → Boolean, `vd` → Opaque,
//!   `vlo` → Objlnk, and `v` keeps the number's own syntax: an integer literal (JSON) or CBOR
//!   integer becomes Integer (UnsignedInteger above `i64::MAX`), a float literal or CBOR float
//!   stays Float even when integral. Both encodings tell the two apart, so an unmodelled
//!   `1.0` read and written back is still `1.0`.
//! - The encoder puts the instance in `bn` and the rest of the path in `n`
//!   (`{"bn":"/3/0/","n":"0"}`, `{"n":"6/1"}`), like the OMA examples, repeating `bn` only when
//!   the instance changes. Times go in each record's `t`, never in `bt`, so a record without
//!   time can follow a timed one. The decoder accepts any arrangement RFC 8428 allows.
//! - A record that names nothing of its own and carries no value (`{"bn":"/3/0/"}`, a record
//!   that only sets `bt`) is a carrier of base fields and gives no leaf.
//! - Units and sums are resolved but LwM2M has no place for them; they are dropped.
//! - LwM2M names start with `/`, which RFC 8428 §4.5.1 forbids; the Core TS requires it (OMA
//!   LwM2M issue #577), so names are checked as LwM2M paths, not against the RFC character set.

pub mod cbor;
pub mod json;

use crate::codec::{
    DecodeError, EncodeError, TimedLeaf, group_leaves, group_timestamped, type_value,
};
use crate::format::ContentFormat;
use crate::model::Models;
use crate::node::{Node, NodeMap, Timestamp, TimestampedNodes, build_node};
use crate::path::Path;
use crate::value::{ObjLink, Value};
use std::sync::Arc;

/// The SenML version RFC 8428 defines; packs may declare it or any lower one (§4.4).
pub const SENML_VERSION: u64 = 10;

/// The SenML labels this codec understands: RFC 8428 Table 1 plus LwM2M's `vlo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    BaseVersion,
    BaseName,
    BaseTime,
    BaseUnit,
    BaseValue,
    BaseSum,
    Name,
    Unit,
    Value,
    StringValue,
    BooleanValue,
    DataValue,
    Sum,
    Time,
    UpdateTime,
    /// `vlo`, registered by OMA for LwM2M object links; a text key in CBOR too.
    ObjlnkValue,
}

impl Label {
    const ALL: [Label; 16] = [
        Label::BaseVersion,
        Label::BaseName,
        Label::BaseTime,
        Label::BaseUnit,
        Label::BaseValue,
        Label::BaseSum,
        Label::Name,
        Label::Unit,
        Label::Value,
        Label::StringValue,
        Label::BooleanValue,
        Label::DataValue,
        Label::Sum,
        Label::Time,
        Label::UpdateTime,
        Label::ObjlnkValue,
    ];

    /// The JSON label (RFC 8428 Table 2).
    pub fn text(self) -> &'static str {
        match self {
            Label::BaseVersion => "bver",
            Label::BaseName => "bn",
            Label::BaseTime => "bt",
            Label::BaseUnit => "bu",
            Label::BaseValue => "bv",
            Label::BaseSum => "bs",
            Label::Name => "n",
            Label::Unit => "u",
            Label::Value => "v",
            Label::StringValue => "vs",
            Label::BooleanValue => "vb",
            Label::DataValue => "vd",
            Label::Sum => "s",
            Label::Time => "t",
            Label::UpdateTime => "ut",
            Label::ObjlnkValue => "vlo",
        }
    }

    /// The CBOR integer label (RFC 8428 Table 4); `None` for labels CBOR writes as text.
    pub fn cbor(self) -> Option<i8> {
        Some(match self {
            Label::BaseVersion => -1,
            Label::BaseName => -2,
            Label::BaseTime => -3,
            Label::BaseUnit => -4,
            Label::BaseValue => -5,
            Label::BaseSum => -6,
            Label::Name => 0,
            Label::Unit => 1,
            Label::Value => 2,
            Label::StringValue => 3,
            Label::BooleanValue => 4,
            Label::Sum => 5,
            Label::Time => 6,
            Label::UpdateTime => 7,
            Label::DataValue => 8,
            Label::ObjlnkValue => return None,
        })
    }

    pub fn from_text(label: &str) -> Option<Label> {
        Label::ALL.into_iter().find(|l| l.text() == label)
    }

    pub fn from_cbor(label: i128) -> Option<Label> {
        Label::ALL
            .into_iter()
            .find(|l| l.cbor().map(i128::from) == Some(label))
    }
}

/// A SenML number. Integers keep their exact value: LwM2M integers are 64-bit and a double
/// cannot hold them all. Parsers only produce integers in `i64::MIN..=u64::MAX`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Integer(i128),
    Float(f64),
}

impl Number {
    pub fn as_f64(self) -> f64 {
        match self {
            // Exact for every LwM2M integer up to 2^53; beyond that the nearest double, which
            // is what SenML's "double" fields (time, sum) mean anyway.
            Number::Integer(i) => i as f64,
            Number::Float(f) => f,
        }
    }

    /// Base value plus value (RFC 8428 §4.5.4), exact while both are integers in range.
    fn add(self, other: Number) -> Number {
        match (self, other) {
            (Number::Integer(a), Number::Integer(b)) => match a.checked_add(b) {
                Some(sum) if (i128::from(i64::MIN)..=i128::from(u64::MAX)).contains(&sum) => {
                    Number::Integer(sum)
                }
                _ => Number::Float(a as f64 + b as f64),
            },
            (a, b) => Number::Float(a.as_f64() + b.as_f64()),
        }
    }
}

/// A field value as the encoding delivered it, before the label says what it must be.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Number(Number),
    Text(String),
    Bytes(Vec<u8>),
    Bool(bool),
}

impl Scalar {
    fn kind(&self) -> &'static str {
        match self {
            Scalar::Number(_) => "a number",
            Scalar::Text(_) => "a string",
            Scalar::Bytes(_) => "a byte string",
            Scalar::Bool(_) => "a boolean",
        }
    }
}

/// The value of a record: exactly one of `v`, `vs`, `vb`, `vd`, `vlo`.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordValue {
    Number(Number),
    String(String),
    Boolean(bool),
    Data(Vec<u8>),
    /// `vlo` as sent (`"3:0"`); checked when the record becomes an LwM2M value.
    Objlnk(String),
}

impl RecordValue {
    fn label(&self) -> Label {
        match self {
            RecordValue::Number(_) => Label::Value,
            RecordValue::String(_) => Label::StringValue,
            RecordValue::Boolean(_) => Label::BooleanValue,
            RecordValue::Data(_) => Label::DataValue,
            RecordValue::Objlnk(_) => Label::ObjlnkValue,
        }
    }
}

/// One SenML record as sent: base and regular fields, nothing resolved.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    pub base_version: Option<u64>,
    pub base_name: Option<String>,
    pub base_time: Option<f64>,
    pub base_unit: Option<String>,
    pub base_value: Option<Number>,
    pub base_sum: Option<f64>,
    pub name: Option<String>,
    pub unit: Option<String>,
    pub value: Option<RecordValue>,
    pub sum: Option<f64>,
    pub time: Option<f64>,
    pub update_time: Option<f64>,
}

impl Record {
    /// Sets the field `label` names. A label given twice, a second value field or a value of
    /// the wrong type is an error naming the label.
    pub fn set(&mut self, label: Label, scalar: Scalar) -> Result<(), String> {
        let name = label.text();
        let wrong = |expected: &str, got: &Scalar| {
            format!("\"{name}\" must be {expected}, got {}", got.kind())
        };
        let text = |s: Scalar| match s {
            Scalar::Text(t) => Ok(t),
            other => Err(wrong("a string", &other)),
        };
        let number = |s: Scalar| match s {
            Scalar::Number(n) => Ok(n),
            other => Err(wrong("a number", &other)),
        };
        let value = match label {
            Label::BaseVersion => {
                let version = match scalar {
                    Scalar::Number(Number::Integer(v)) => u64::try_from(v).ok(),
                    _ => None,
                }
                .ok_or_else(|| wrong("an unsigned integer", &scalar))?;
                return put(&mut self.base_version, version, name);
            }
            Label::BaseName => return put(&mut self.base_name, text(scalar)?, name),
            Label::BaseTime => return put(&mut self.base_time, number(scalar)?.as_f64(), name),
            Label::BaseUnit => return put(&mut self.base_unit, text(scalar)?, name),
            Label::BaseValue => return put(&mut self.base_value, number(scalar)?, name),
            Label::BaseSum => return put(&mut self.base_sum, number(scalar)?.as_f64(), name),
            Label::Name => return put(&mut self.name, text(scalar)?, name),
            Label::Unit => return put(&mut self.unit, text(scalar)?, name),
            Label::Sum => return put(&mut self.sum, number(scalar)?.as_f64(), name),
            Label::Time => return put(&mut self.time, number(scalar)?.as_f64(), name),
            Label::UpdateTime => return put(&mut self.update_time, number(scalar)?.as_f64(), name),
            Label::Value => RecordValue::Number(number(scalar)?),
            Label::StringValue => RecordValue::String(text(scalar)?),
            Label::ObjlnkValue => RecordValue::Objlnk(text(scalar)?),
            Label::BooleanValue => match scalar {
                Scalar::Bool(b) => RecordValue::Boolean(b),
                other => return Err(wrong("a boolean", &other)),
            },
            Label::DataValue => match scalar {
                Scalar::Bytes(b) => RecordValue::Data(b),
                other => return Err(wrong("binary data", &other)),
            },
        };
        match &self.value {
            None => {
                self.value = Some(value);
                Ok(())
            }
            Some(first) if first.label() == label => Err(format!("label \"{name}\" given twice")),
            Some(first) => Err(format!(
                "more than one value (\"{}\" and \"{name}\"); RFC 8428 allows exactly one",
                first.label().text()
            )),
        }
    }
}

fn put<T>(slot: &mut Option<T>, value: T, label: &str) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("label \"{label}\" given twice"));
    }
    *slot = Some(value);
    Ok(())
}

/// A record with the pack's base values applied (RFC 8428 §4.6). Times stay as sent:
/// resolving relative times needs the time of reception, which the caller knows.
///
/// The base name and base unit are shared with the records around it rather than copied, so a
/// pack of many small records under one long base name costs memory in proportion to its size.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedRecord {
    /// The base name in force.
    pub base_name: Arc<str>,
    /// The record's own name (`n`), if it has one.
    pub own_name: Option<String>,
    pub unit: Option<Arc<str>>,
    pub value: Option<RecordValue>,
    pub sum: Option<f64>,
    pub time: Option<f64>,
    pub update_time: Option<f64>,
    /// The pack's SenML version (10 unless declared lower).
    pub version: u64,
}

impl ResolvedRecord {
    /// Base name + name.
    pub fn name(&self) -> String {
        let mut name = String::with_capacity(self.name_len());
        name.push_str(&self.base_name);
        name.push_str(self.own_name.as_deref().unwrap_or(""));
        name
    }

    pub fn name_len(&self) -> usize {
        self.base_name
            .len()
            .saturating_add(self.own_name.as_ref().map_or(0, String::len))
    }
}

/// Resolves a whole pack; see [`Resolver`].
pub fn resolve(records: Vec<Record>) -> Result<Vec<ResolvedRecord>, String> {
    let mut resolver = Resolver::default();
    records.into_iter().map(|r| resolver.resolve(r)).collect()
}

/// Applies base fields to the records that follow them (RFC 8428 §4.1, §4.5, §4.6), one record
/// at a time in pack order.
///
/// Errors: a version newer than [`SENML_VERSION`] or zero, and records that disagree on the
/// version (§4.4: "All SenML Records in a Pack MUST have the same version number").
#[derive(Debug, Default)]
pub struct Resolver {
    index: usize,
    version: Option<u64>,
    name: Arc<str>,
    time: Option<f64>,
    unit: Option<Arc<str>>,
    value: Option<Number>,
    sum: Option<f64>,
}

impl Resolver {
    pub fn resolve(&mut self, record: Record) -> Result<ResolvedRecord, String> {
        let index = self.index;
        self.index = self.index.saturating_add(1);
        let version = record
            .base_version
            .or(self.version)
            .unwrap_or(SENML_VERSION);
        if version == 0 || version > SENML_VERSION {
            return Err(format!(
                "record {index}: SenML version {version} is not one this decoder understands (1 to {SENML_VERSION})"
            ));
        }
        match self.version {
            Some(v) if v != version => {
                return Err(format!(
                    "record {index}: version {version} differs from the pack's version {v}"
                ));
            }
            _ => self.version = Some(version),
        }
        if let Some(bn) = record.base_name {
            self.name = Arc::from(bn);
        }
        replace_if_some(&mut self.time, record.base_time);
        replace_if_some(&mut self.unit, record.base_unit.map(Arc::from));
        replace_if_some(&mut self.value, record.base_value);
        replace_if_some(&mut self.sum, record.base_sum);
        // A missing value counts as zero when a base value applies (§4.5.4), but only for a
        // record with no value field at all: `vs` under a `bv` is a string, not bv + 0.
        let value = match (record.value, self.value) {
            (Some(RecordValue::Number(v)), Some(bv)) => Some(RecordValue::Number(bv.add(v))),
            (Some(v), _) => Some(v),
            (None, Some(bv)) => Some(RecordValue::Number(bv)),
            (None, None) => None,
        };
        Ok(ResolvedRecord {
            base_name: Arc::clone(&self.name),
            own_name: record.name,
            unit: record.unit.map(Arc::from).or_else(|| self.unit.clone()),
            value,
            sum: add_optional(self.sum, record.sum),
            time: add_optional(self.time, record.time),
            update_time: record.update_time,
            version,
        })
    }
}

fn replace_if_some<T>(slot: &mut Option<T>, new: Option<T>) {
    if new.is_some() {
        *slot = new;
    }
}

/// Base + own, a missing side counting as zero; `None` only when both are missing (§4.5.3).
fn add_optional(base: Option<f64>, own: Option<f64>) -> Option<f64> {
    match (base, own) {
        (None, None) => None,
        (b, o) => Some(b.unwrap_or(0.0) + o.unwrap_or(0.0)),
    }
}

// ---------------------------------------------------------------------------------------------
// LwM2M layer: decoding.

fn malformed(format: ContentFormat, reason: impl Into<String>) -> DecodeError {
    DecodeError::malformed(format, reason)
}

/// Where an encoding's parser delivers records, in pack order, as it reads them. The LwM2M
/// layer resolves and converts each one at once, so no list of raw records is ever built.
pub(crate) type Sink<'a> = dyn FnMut(Record) -> Result<(), DecodeError> + 'a;

/// An encoding's record parser (`json::for_each_record`, `cbor::for_each_record`).
pub(crate) type Parser = fn(&[u8], &mut Sink<'_>) -> Result<(), DecodeError>;

/// Every record of a pack, as sent: what `json::parse_records` and `cbor::parse_records` give.
pub(crate) fn collect_records(parse: Parser, payload: &[u8]) -> Result<Vec<Record>, DecodeError> {
    let mut records = Vec::new();
    parse(payload, &mut |record| {
        records.push(record);
        Ok(())
    })?;
    Ok(records)
}

/// The longest text an LwM2M path can be written with: `/65534/65534/65534/65534/`.
const MAX_PATH_TEXT: usize = 25;

/// A resolved name as an LwM2M path.
fn parse_name(format: ContentFormat, record: &ResolvedRecord) -> Result<Path, DecodeError> {
    let len = record.name_len();
    if len == 0 {
        return Err(malformed(
            format,
            "record without a name (no \"bn\" and no \"n\")",
        ));
    }
    if len > MAX_PATH_TEXT {
        let start: String = record
            .base_name
            .chars()
            .chain(record.own_name.iter().flat_map(|n| n.chars()))
            .take(32)
            .collect();
        return Err(malformed(
            format,
            format!("name {start:?}... is not an LwM2M path: {len} bytes is longer than any path"),
        ));
    }
    let name = record.name();
    name.parse()
        .map_err(|e| malformed(format, format!("name {name:?} is not an LwM2M path: {e}")))
}

/// The value a record carries, in the LwM2M type SenML implies.
fn wire_value(
    format: ContentFormat,
    path: &Path,
    value: RecordValue,
) -> Result<Value, DecodeError> {
    Ok(match value {
        RecordValue::Number(Number::Integer(i)) => match i64::try_from(i) {
            Ok(i) => Value::Integer(i),
            Err(_) => match u64::try_from(i) {
                Ok(u) => Value::UnsignedInteger(u),
                Err(_) => Value::Float(i as f64),
            },
        },
        RecordValue::Number(Number::Float(f)) => Value::Float(f),
        RecordValue::String(s) => Value::String(s),
        RecordValue::Boolean(b) => Value::Boolean(b),
        RecordValue::Data(d) => Value::Opaque(d),
        RecordValue::Objlnk(s) => Value::Objlnk(
            s.parse::<ObjLink>()
                .map_err(|e| malformed(format, format!("{path}: \"vlo\" {e}")))?,
        ),
    })
}

/// The leaf a resolved record gives, typed through `models`; `None` for a record that only
/// carries base fields (no name of its own, no value).
fn leaf(
    format: ContentFormat,
    record: ResolvedRecord,
    models: &dyn Models,
) -> Result<Option<TimedLeaf>, DecodeError> {
    if record.value.is_none() && record.own_name.is_none() {
        return Ok(None);
    }
    let path = parse_name(format, &record)?;
    if !matches!(path, Path::Resource(..) | Path::ResourceInstance(..)) {
        return Err(malformed(
            format,
            format!("{path}: a SenML value must name a resource or resource instance"),
        ));
    }
    let value = record
        .value
        .ok_or_else(|| malformed(format, format!("{path}: record has no value")))?;
    let value = type_value(format, &path, wire_value(format, &path, value)?, models)?;
    Ok(Some((record.time.map(Timestamp), (path, value))))
}

/// Every value in the pack with its path and time, typed through `models`.
fn timed_leaves(
    format: ContentFormat,
    parse: Parser,
    payload: &[u8],
    models: &dyn Models,
) -> Result<Vec<TimedLeaf>, DecodeError> {
    let mut resolver = Resolver::default();
    let mut leaves = Vec::new();
    parse(payload, &mut |record| {
        let record = resolver.resolve(record).map_err(|e| malformed(format, e))?;
        leaves.extend(leaf(format, record, models)?);
        Ok(())
    })?;
    Ok(leaves)
}

fn untimed(leaves: Vec<TimedLeaf>) -> Vec<crate::node::Leaf> {
    leaves.into_iter().map(|(_, leaf)| leaf).collect()
}

pub(crate) fn decode_node(
    format: ContentFormat,
    parse: Parser,
    path: &Path,
    payload: &[u8],
    models: &dyn Models,
) -> Result<Node, DecodeError> {
    let leaves = untimed(timed_leaves(format, parse, payload, models)?);
    Ok(build_node(path, leaves, models)?)
}

pub(crate) fn decode_nodes(
    format: ContentFormat,
    parse: Parser,
    payload: &[u8],
    requested: Option<&[Path]>,
    models: &dyn Models,
) -> Result<NodeMap, DecodeError> {
    let leaves = untimed(timed_leaves(format, parse, payload, models)?);
    group_leaves(leaves, requested, models)
}

pub(crate) fn decode_timestamped(
    format: ContentFormat,
    parse: Parser,
    payload: &[u8],
    models: &dyn Models,
) -> Result<Vec<TimestampedNodes>, DecodeError> {
    group_timestamped(timed_leaves(format, parse, payload, models)?, models)
}

/// A Read/Observe-Composite path list: every record names one path and carries no value.
pub(crate) fn decode_paths(
    format: ContentFormat,
    parse: Parser,
    payload: &[u8],
) -> Result<Vec<Path>, DecodeError> {
    let mut resolver = Resolver::default();
    let mut paths = Vec::new();
    parse(payload, &mut |record| {
        let record = resolver.resolve(record).map_err(|e| malformed(format, e))?;
        let path = parse_name(format, &record)?;
        if record.value.is_some() {
            return Err(malformed(
                format,
                format!("{path}: a path list carries names only, this record has a value"),
            ));
        }
        paths.push(path);
        Ok(())
    })?;
    Ok(paths)
}

// ---------------------------------------------------------------------------------------------
// LwM2M layer: encoding. Both encodings write the same records.

/// A record to write: base name when it changes, name, time, value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OutRecord<'a> {
    pub base_name: Option<String>,
    pub name: Option<String>,
    pub time: Option<f64>,
    pub value: Option<&'a Value>,
    /// The full path, for error messages.
    pub path: Path,
}

/// Writes leaves with `bn` = the instance (`/3/0/`) and `n` = the rest (`1`, `6/0`).
#[derive(Default)]
struct LeafWriter<'a> {
    current_base: Option<Path>,
    out: Vec<OutRecord<'a>>,
}

impl<'a> LeafWriter<'a> {
    fn push(&mut self, path: Path, value: &'a Value, time: Option<Timestamp>) {
        let (base, name) = match path {
            Path::Resource(o, i, r) => (Path::Instance(o, i), r.to_string()),
            Path::ResourceInstance(o, i, r, ri) => (Path::Instance(o, i), format!("{r}/{ri}")),
            // Node::leaves only yields resources and resource instances; anything else is
            // written whole in `bn`.
            other => (other, String::new()),
        };
        let base_name = (self.current_base != Some(base)).then(|| {
            self.current_base = Some(base);
            if name.is_empty() {
                base.to_string()
            } else {
                format!("{base}/")
            }
        });
        self.out.push(OutRecord {
            base_name,
            name: (!name.is_empty()).then_some(name),
            time: time.map(|t| t.0),
            value: Some(value),
            path,
        });
    }

    fn push_node(
        &mut self,
        path: &Path,
        node: &'a Node,
        time: Option<Timestamp>,
    ) -> Result<(), EncodeError> {
        for (leaf, value) in node.leaves(path)? {
            self.push(leaf, value, time);
        }
        Ok(())
    }
}

pub(crate) fn node_records<'a>(
    path: &Path,
    node: &'a Node,
) -> Result<Vec<OutRecord<'a>>, EncodeError> {
    let mut writer = LeafWriter::default();
    writer.push_node(path, node, None)?;
    Ok(writer.out)
}

pub(crate) fn nodes_records(nodes: &NodeMap) -> Result<Vec<OutRecord<'_>>, EncodeError> {
    let mut writer = LeafWriter::default();
    for (path, node) in nodes {
        writer.push_node(path, node, None)?;
    }
    Ok(writer.out)
}

pub(crate) fn timestamped_records(
    entries: &[TimestampedNodes],
) -> Result<Vec<OutRecord<'_>>, EncodeError> {
    let mut writer = LeafWriter::default();
    for entry in entries {
        for (path, node) in &entry.nodes {
            writer.push_node(path, node, entry.time)?;
        }
    }
    Ok(writer.out)
}

/// A path list: one record per path, the whole path in `n`.
pub(crate) fn path_records(paths: &[Path]) -> Vec<OutRecord<'static>> {
    paths
        .iter()
        .map(|path| OutRecord {
            base_name: None,
            name: Some(path.to_string()),
            time: None,
            value: None,
            path: *path,
        })
        .collect()
}

/// A time as SenML writes it: an integer when it is one (shorter, and exact in both
/// encodings), a float otherwise.
pub(crate) fn time_number(t: f64) -> Number {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if t.fract() == 0.0 && (-LIMIT..LIMIT).contains(&t) {
        Number::Integer(t as i128)
    } else {
        Number::Float(t)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rec(bn: Option<&str>, n: Option<&str>, v: Option<f64>) -> Record {
        Record {
            base_name: bn.map(str::to_owned),
            name: n.map(str::to_owned),
            value: v.map(|v| RecordValue::Number(Number::Float(v))),
            ..Record::default()
        }
    }

    #[test]
    fn labels_round_trip() {
        for label in Label::ALL {
            assert_eq!(Label::from_text(label.text()), Some(label));
            if let Some(i) = label.cbor() {
                assert_eq!(Label::from_cbor(i128::from(i)), Some(label));
            }
        }
        assert_eq!(Label::from_cbor(9), None);
        assert_eq!(Label::from_cbor(-7), None);
        assert_eq!(Label::ObjlnkValue.cbor(), None);
    }

    #[test]
    fn set_rejects_duplicates_and_second_values() {
        let mut r = Record::default();
        r.set(Label::Name, Scalar::Text("a".into())).unwrap();
        assert!(
            r.set(Label::Name, Scalar::Text("b".into()))
                .unwrap_err()
                .contains("twice")
        );
        r.set(Label::Value, Scalar::Number(Number::Integer(1)))
            .unwrap();
        let err = r
            .set(Label::StringValue, Scalar::Text("x".into()))
            .unwrap_err();
        assert!(err.contains("more than one value"), "{err}");
        assert!(
            r.set(Label::Value, Scalar::Number(Number::Integer(2)))
                .unwrap_err()
                .contains("twice")
        );
        let err = r
            .set(Label::BaseVersion, Scalar::Number(Number::Float(10.0)))
            .unwrap_err();
        assert!(err.contains("unsigned integer"), "{err}");
        let err = r.set(Label::Time, Scalar::Text("now".into())).unwrap_err();
        assert!(err.contains("\"t\" must be a number"), "{err}");
    }

    #[test]
    fn base_name_changes_mid_pack() {
        let records = vec![
            rec(Some("/3/0/"), Some("1"), Some(1.0)),
            rec(None, Some("2"), Some(2.0)),
            rec(Some("/4/0/"), Some("1"), Some(3.0)),
            rec(None, Some("/5/0/1"), Some(4.0)),
        ];
        let names: Vec<_> = resolve(records)
            .unwrap()
            .iter()
            .map(ResolvedRecord::name)
            .collect();
        assert_eq!(names, ["/3/0/1", "/3/0/2", "/4/0/1", "/4/0//5/0/1"]);
    }

    #[test]
    fn base_value_time_and_sum() {
        let records = vec![
            Record {
                base_value: Some(Number::Integer(10)),
                base_time: Some(100.0),
                base_sum: Some(1.5),
                base_unit: Some("V".into()),
                ..rec(Some("x"), None, None)
            },
            Record {
                value: Some(RecordValue::Number(Number::Integer(-3))),
                time: Some(-5.0),
                unit: Some("A".into()),
                ..Record::default()
            },
            Record {
                value: Some(RecordValue::String("s".into())),
                sum: Some(2.0),
                ..Record::default()
            },
        ];
        let r = resolve(records).unwrap();
        assert_eq!(r[0].value, Some(RecordValue::Number(Number::Integer(10))));
        assert_eq!(r[0].time, Some(100.0));
        assert_eq!(r[0].sum, Some(1.5));
        assert_eq!(r[1].value, Some(RecordValue::Number(Number::Integer(7))));
        assert_eq!(r[1].time, Some(95.0));
        assert_eq!(r[1].unit.as_deref(), Some("A"));
        assert_eq!(r[2].value, Some(RecordValue::String("s".into())));
        assert_eq!(r[2].sum, Some(3.5));
        assert_eq!(r[2].unit.as_deref(), Some("V"));
    }

    #[test]
    fn integer_base_value_overflow_falls_back_to_float() {
        let big = Number::Integer(i128::from(u64::MAX));
        assert!(matches!(big.add(Number::Integer(1)), Number::Float(_)));
        assert_eq!(
            Number::Integer(-5).add(Number::Float(0.5)),
            Number::Float(-4.5)
        );
    }

    #[test]
    fn versions() {
        let v = |bver: Option<u64>| Record {
            base_version: bver,
            ..rec(Some("/3/0/1"), None, Some(1.0))
        };
        assert_eq!(resolve(vec![v(None)]).unwrap()[0].version, 10);
        assert_eq!(resolve(vec![v(Some(5)), v(None)]).unwrap()[1].version, 5);
        assert!(resolve(vec![v(Some(11))]).is_err());
        assert!(resolve(vec![v(Some(0))]).is_err());
        assert!(resolve(vec![v(None), v(Some(5))]).is_err());
        assert!(resolve(vec![v(Some(10)), v(Some(10))]).is_ok());
    }

    #[test]
    fn time_numbers() {
        assert_eq!(time_number(5.0), Number::Integer(5));
        assert_eq!(time_number(-0.0), Number::Integer(0));
        assert_eq!(time_number(0.25), Number::Float(0.25));
        assert_eq!(time_number(1e300), Number::Float(1e300));
    }

    #[test]
    fn writer_repeats_base_name_only_on_change() {
        let v = Value::Integer(1);
        let mut w = LeafWriter::default();
        w.push(Path::Resource(3, 0, 1), &v, None);
        w.push(Path::ResourceInstance(3, 0, 6, 2), &v, None);
        w.push(Path::Resource(3, 1, 0), &v, Some(Timestamp(2.5)));
        let summary: Vec<_> = w
            .out
            .iter()
            .map(|r| (r.base_name.as_deref(), r.name.as_deref(), r.time))
            .collect();
        assert_eq!(
            summary,
            [
                (Some("/3/0/"), Some("1"), None),
                (None, Some("6/2"), None),
                (Some("/3/1/"), Some("0"), Some(2.5)),
            ]
        );
    }
}
