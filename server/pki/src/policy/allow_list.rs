//! The allow-list: device IDs the manufacturer reports as issued (seed 003: "the manufacturer
//! should maintain the list of IDs for all issued devices and provide this list back"; it also
//! bounds how many devices a manufacturer can enrol).
//!
//! Import formats:
//! - CSV: a header row with a `device_id` column (other columns are ignored), or no header and a
//!   single column of IDs. RFC 4180 quoting within a line is understood; blank lines are skipped.
//! - JSON: an array of strings, or an array of objects each with a string `device_id` (other
//!   members are ignored). The two forms can be mixed.
//!
//! Errors name the line (and for JSON the column) so that an operator can fix a
//! manufacturer's file. An import is all-or-nothing.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::records::{PkiStore, PkiStoreError};

/// Longest device ID accepted.
pub const MAX_DEVICE_ID_LEN: usize = 256;

/// Checks that a device ID can be stored and compared: 1..=256 bytes, no control characters, no
/// surrounding whitespace (which would make "abc" and "abc " two devices).
pub fn validate_device_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("empty");
    }
    if id.len() > MAX_DEVICE_ID_LEN {
        return Err("longer than 256 bytes");
    }
    if id.chars().any(char::is_control) {
        return Err("contains a control character");
    }
    if id.trim() != id {
        return Err("has leading or trailing whitespace");
    }
    Ok(())
}

/// Looks a device ID up in an allow-list, wherever it is kept.
pub trait AllowListLookup {
    fn contains(&self, device_id: &str) -> Result<bool, PkiStoreError>;
}

/// Any [`PkiStore`] is an allow-list source.
impl<S: PkiStore + ?Sized> AllowListLookup for S {
    fn contains(&self, device_id: &str) -> Result<bool, PkiStoreError> {
        self.allow_list_contains(device_id)
    }
}

/// An in-memory allow-list, e.g. the result of an import before it goes into the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    ids: BTreeSet<String>,
}

impl AllowListLookup for AllowList {
    fn contains(&self, device_id: &str) -> Result<bool, PkiStoreError> {
        Ok(self.ids.contains(device_id))
    }
}

/// Why an allow-list import failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowListError {
    #[error("line {line}: {reason}")]
    Csv { line: usize, reason: String },
    #[error("line {line}, column {column}: {reason}")]
    Json {
        line: usize,
        column: usize,
        reason: String,
    },
}

impl AllowList {
    pub fn new() -> AllowList {
        AllowList::default()
    }

    /// Adds an ID; `Ok(true)` if it was new.
    pub fn insert(&mut self, device_id: &str) -> Result<bool, &'static str> {
        validate_device_id(device_id)?;
        Ok(self.ids.insert(device_id.to_owned()))
    }

    pub fn remove(&mut self, device_id: &str) -> bool {
        self.ids.remove(device_id)
    }

    pub fn contains(&self, device_id: &str) -> bool {
        self.ids.contains(device_id)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The IDs, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.ids.iter().map(String::as_str)
    }

    /// Parses a CSV allow-list (see the module docs). Duplicate IDs are merged.
    pub fn from_csv(text: &str) -> Result<AllowList, AllowListError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut list = AllowList::new();
        // Which column holds the ID; decided by the first non-blank line.
        let mut column: Option<usize> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let err = |reason: String| AllowListError::Csv { line, reason };
            if raw.trim().is_empty() {
                continue;
            }
            let fields = split_csv_line(raw).map_err(|r| err(r.into()))?;
            let col = match column {
                Some(c) => c,
                None => {
                    if let Some(c) = fields
                        .iter()
                        .position(|f| f.trim().eq_ignore_ascii_case("device_id"))
                    {
                        column = Some(c);
                        continue; // the header itself is not an ID
                    }
                    if fields.len() != 1 {
                        return Err(err(format!(
                            "{} columns but no `device_id` header",
                            fields.len()
                        )));
                    }
                    column = Some(0);
                    0
                }
            };
            let Some(field) = fields.get(col) else {
                return Err(err(format!(
                    "has {} columns, the device_id column is number {}",
                    fields.len(),
                    col + 1
                )));
            };
            let id = field.trim();
            list.insert(id)
                .map_err(|r| err(format!("device ID {id:?}: {r}")))?;
        }
        Ok(list)
    }

    /// Parses a JSON allow-list (see the module docs). Duplicate IDs are merged.
    pub fn from_json(text: &str) -> Result<AllowList, AllowListError> {
        let entries: Vec<Entry> = serde_json::from_str(text).map_err(|e| AllowListError::Json {
            line: e.line(),
            column: e.column(),
            reason: json_reason(&e),
        })?;
        let mut list = AllowList::new();
        for Entry(id) in entries {
            // Already validated while deserializing, where the position was known.
            list.ids.insert(id);
        }
        Ok(list)
    }
}

// serde_json appends " at line L column C" to its messages; the error type carries those
// separately, so strip them to avoid saying it twice.
fn json_reason(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// Splits one CSV line into fields, honouring RFC 4180 double quotes ("" is a quote inside a
/// quoted field). A quoted field may not span lines: device IDs never contain newlines.
fn split_csv_line(line: &str) -> Result<Vec<String>, &'static str> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut in_quotes = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            ',' => {
                fields.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            '"' if field.trim().is_empty() && !was_quoted => {
                field.clear();
                in_quotes = true;
                was_quoted = true;
            }
            '"' => return Err("stray double quote"),
            _ if was_quoted && !c.is_whitespace() => return Err("text after a closing quote"),
            _ => field.push(c),
        }
    }
    if in_quotes {
        return Err("unterminated quoted field");
    }
    fields.push(field);
    Ok(fields)
}

/// One JSON allow-list entry: a string or an object with `device_id`.
struct Entry(String);

impl<'de> de::Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(EntryVisitor)
    }
}

struct EntryVisitor;

impl EntryVisitor {
    fn checked<E: de::Error>(id: String) -> Result<Entry, E> {
        validate_device_id(&id).map_err(|r| E::custom(format!("device ID {id:?}: {r}")))?;
        Ok(Entry(id))
    }
}

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = Entry;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a device ID string or an object with a string \"device_id\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Entry, E> {
        EntryVisitor::checked(v.to_owned())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entry, A::Error> {
        let mut id: Option<String> = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "device_id" {
                if id.is_some() {
                    return Err(de::Error::duplicate_field("device_id"));
                }
                id = Some(map.next_value()?);
            } else {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
        let id = id.ok_or_else(|| de::Error::missing_field("device_id"))?;
        EntryVisitor::checked(id)
    }
}
