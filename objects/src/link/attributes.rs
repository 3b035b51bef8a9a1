//! LwM2M attributes (Core 1.1 §5.1.2, Core 1.2 §7.3): how they travel in a Write-Attributes
//! (or 1.2 Observe) URI query and as link parameters in Discover answers.
//!
//! `<NOTIFICATION>` attributes are writable and tri-state in a request: `pmin=10` sets,
//! a bare `pmin` unsets (back to the default or the level above), and absence leaves the
//! current value alone. `<PROPERTIES>` attributes (`dim`, `ssid`, `uri`, `ver`, `lwm2m`) are
//! read-only: they only appear in Discover and Register payloads.
//!
//! | name  | type               | level                                   |
//! |-------|--------------------|-----------------------------------------|
//! | pmin  | integer seconds    | any (object, instance, resource, r.inst)|
//! | pmax  | integer seconds    | any; 0 means "no maximum"               |
//! | gt lt | float              | resource, resource instance             |
//! | st    | float ≥ 0          | resource, resource instance             |
//! | epmin epmax | integer seconds | any (1.1+)                          |
//! | edge  | 0 or 1             | resource, resource instance (1.2)       |
//! | con   | 0 or 1             | any (1.2)                               |
//! | hqmax | integer            | any (1.2)                               |
//!
//! Types and levels of the 1.0/1.1 attributes are from Core 1.1 §5.1.2 Tables 3 and 4; those
//! of the 1.2 additions (`edge`, `con`, `hqmax`) from memory of Core 1.2 §7.3, not re-checked
//! against the table.
//!
//! Rules ([`NotificationAttributes::validate`]): `lt < gt` and `lt + 2·st < gt` (Core: "MUST
//! be respected"), `st ≥ 0`, finite numbers, and `epmin ≤ epmax`. `pmin ≤ pmax` is only in
//! [`NotificationAttributes::validate_strict`]: the spec says an inconsistent pmax is ignored
//! by the client, not refused, while Leshan refuses it; the server checks operator input with
//! the strict variant, a client follows the spec.

use std::fmt;

use crate::model::Version;
use crate::path::Path;

use super::syntax::ParamValue;

/// One attribute in a request or a stored attribute set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Attr<T> {
    /// Not mentioned: leave it as it is.
    #[default]
    Absent,
    /// Written without a value (`?pmin`): remove it at this level.
    Unset,
    Set(T),
}

impl<T: Copy> Attr<T> {
    /// The value when set.
    pub fn value(self) -> Option<T> {
        match self {
            Attr::Set(v) => Some(v),
            Attr::Absent | Attr::Unset => None,
        }
    }

    pub fn is_absent(self) -> bool {
        matches!(self, Attr::Absent)
    }

    /// This value if set, else the fallback's value if set (attribute precedence: resource
    /// over instance over object).
    fn or_set(self, fallback: Attr<T>) -> Attr<T> {
        match (self, fallback) {
            (Attr::Set(v), _) | (_, Attr::Set(v)) => Attr::Set(v),
            _ => Attr::Absent,
        }
    }

    /// The stored value after a Write-Attributes carrying `update`.
    fn updated(self, update: Attr<T>) -> Attr<T> {
        match update {
            Attr::Absent => self,
            Attr::Unset => Attr::Absent,
            Attr::Set(v) => Attr::Set(v),
        }
    }
}

/// The `<NOTIFICATION>` class attributes.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct NotificationAttributes {
    pub pmin: Attr<u32>,
    pub pmax: Attr<u32>,
    pub gt: Attr<f64>,
    pub lt: Attr<f64>,
    pub st: Attr<f64>,
    pub epmin: Attr<u32>,
    pub epmax: Attr<u32>,
    pub edge: Attr<bool>,
    pub con: Attr<bool>,
    pub hqmax: Attr<u32>,
}

/// The `<PROPERTIES>` class attributes, as found in Discover and Bootstrap-Discover answers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Properties {
    /// Number of instances of a multiple resource.
    pub dim: Option<u16>,
    /// Short Server ID of a /0 or /1 instance (Bootstrap-Discover).
    pub ssid: Option<u16>,
    /// Server URI of a /0 instance (Bootstrap-Discover, 1.1.1+).
    pub uri: Option<String>,
    /// Object version (object links).
    pub ver: Option<Version>,
    /// LwM2M enabler version (the root link of a Bootstrap-Discover answer).
    pub lwm2m: Option<Version>,
}

/// Why a set of attributes is refused (the client answers 4.00 Bad Request).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AttributeError {
    #[error("unknown attribute {0:?}")]
    Unknown(String),
    #[error("attribute {0} is read-only")]
    ReadOnly(&'static str),
    #[error("attribute {0} is given twice")]
    Duplicate(&'static str),
    #[error("attribute {0} needs a value")]
    MissingValue(&'static str),
    #[error("attribute {name}={value:?}: expected {expected}")]
    BadValue {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("lt ({lt}) must be less than gt ({gt})")]
    LtNotBelowGt { lt: f64, gt: f64 },
    #[error("lt + 2*st must be less than gt (lt={lt}, st={st}, gt={gt})")]
    StepTooLarge { lt: f64, st: f64, gt: f64 },
    #[error("epmin ({epmin}) must not exceed epmax ({epmax})")]
    EvaluationPeriodsInverted { epmin: u32, epmax: u32 },
    #[error("pmin ({pmin}) must not exceed pmax ({pmax})")]
    PeriodsInverted { pmin: u32, pmax: u32 },
    #[error(
        "attribute {name} cannot be attached to {path}: only to resources and resource instances"
    )]
    WrongLevel { name: &'static str, path: Path },
}

/// Every attribute name LwM2M defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Pmin,
    Pmax,
    Gt,
    Lt,
    St,
    Epmin,
    Epmax,
    Edge,
    Con,
    Hqmax,
    Dim,
    Ssid,
    Uri,
    Ver,
    Lwm2m,
}

impl Known {
    const ALL: [Known; 15] = [
        Known::Pmin,
        Known::Pmax,
        Known::Gt,
        Known::Lt,
        Known::St,
        Known::Epmin,
        Known::Epmax,
        Known::Edge,
        Known::Con,
        Known::Hqmax,
        Known::Dim,
        Known::Ssid,
        Known::Uri,
        Known::Ver,
        Known::Lwm2m,
    ];

    fn name(self) -> &'static str {
        match self {
            Known::Pmin => "pmin",
            Known::Pmax => "pmax",
            Known::Gt => "gt",
            Known::Lt => "lt",
            Known::St => "st",
            Known::Epmin => "epmin",
            Known::Epmax => "epmax",
            Known::Edge => "edge",
            Known::Con => "con",
            Known::Hqmax => "hqmax",
            Known::Dim => "dim",
            Known::Ssid => "ssid",
            Known::Uri => "uri",
            Known::Ver => "ver",
            Known::Lwm2m => "lwm2m",
        }
    }

    /// Link parameter names are case-insensitive (RFC 8288 §3); query keys are matched the
    /// same way so that `PMIN=5` is not silently "unknown".
    fn from_name(name: &str) -> Option<Known> {
        Known::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name))
    }

    fn is_property(self) -> bool {
        matches!(
            self,
            Known::Dim | Known::Ssid | Known::Uri | Known::Ver | Known::Lwm2m
        )
    }
}

impl NotificationAttributes {
    /// True when no attribute is mentioned at all.
    pub fn is_empty(&self) -> bool {
        *self == NotificationAttributes::default()
    }

    /// Parses the Uri-Query options of a Write-Attributes (or 1.2 Observe) request, one
    /// `key=value` or bare `key` per item, as they arrive in CoAP Uri-Query options.
    /// Empty items are skipped. Read-only, unknown and repeated attributes are errors.
    /// Value syntax is checked here; cross-attribute rules are [`Self::validate`]'s job.
    pub fn from_query<S: AsRef<str>>(
        items: &[S],
    ) -> Result<NotificationAttributes, AttributeError> {
        let mut attrs = NotificationAttributes::default();
        for item in items.iter().map(AsRef::as_ref).filter(|i| !i.is_empty()) {
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (item, None),
            };
            let known = Known::from_name(key).ok_or_else(|| AttributeError::Unknown(clip(key)))?;
            if known.is_property() {
                return Err(AttributeError::ReadOnly(known.name()));
            }
            attrs.put(known, value)?;
        }
        Ok(attrs)
    }

    /// [`Self::from_query`] on a `key=value&key` string.
    pub fn from_query_string(query: &str) -> Result<NotificationAttributes, AttributeError> {
        let items: Vec<&str> = query.split('&').collect();
        NotificationAttributes::from_query(&items)
    }

    /// The Uri-Query options for this set, in a fixed order: `pmin=10`, `lt` (unset), ...
    pub fn to_query(&self) -> Vec<String> {
        self.entries()
            .map(|(name, value)| match value {
                Some(v) => format!("{name}={v}"),
                None => name.to_owned(),
            })
            .collect()
    }

    /// [`Self::to_query`] joined with `&`.
    pub fn to_query_string(&self) -> String {
        self.to_query().join("&")
    }

    /// The rules every attribute set must follow (see the module docs). Only values set in
    /// this one set are compared; a client checks the merged set it would end up with.
    pub fn validate(&self) -> Result<(), AttributeError> {
        for (name, value) in [("gt", self.gt), ("lt", self.lt), ("st", self.st)] {
            if let Attr::Set(v) = value
                && !v.is_finite()
            {
                return Err(bad_value(name, &v.to_string(), "a finite number"));
            }
        }
        if let Attr::Set(st) = self.st
            && st < 0.0
        {
            return Err(bad_value("st", &format_float(st), "a non-negative number"));
        }
        if let (Attr::Set(lt), Attr::Set(gt)) = (self.lt, self.gt) {
            if lt >= gt {
                return Err(AttributeError::LtNotBelowGt { lt, gt });
            }
            if let Attr::Set(st) = self.st
                && lt + 2.0 * st >= gt
            {
                return Err(AttributeError::StepTooLarge { lt, st, gt });
            }
        }
        if let (Attr::Set(epmin), Attr::Set(epmax)) = (self.epmin, self.epmax)
            && epmin > epmax
        {
            return Err(AttributeError::EvaluationPeriodsInverted { epmin, epmax });
        }
        Ok(())
    }

    /// [`Self::validate`] plus `pmin ≤ pmax` (unless pmax is 0, "no maximum"), as Leshan
    /// enforces; for requests the server builds from operator input.
    pub fn validate_strict(&self) -> Result<(), AttributeError> {
        self.validate()?;
        if let (Attr::Set(pmin), Attr::Set(pmax)) = (self.pmin, self.pmax)
            && pmax != 0
            && pmin > pmax
        {
            return Err(AttributeError::PeriodsInverted { pmin, pmax });
        }
        Ok(())
    }

    /// Checks the attributes may be attached at `target`: `gt`, `lt`, `st` and `edge` only
    /// make sense on a (numeric or boolean) resource or resource instance.
    pub fn check_level(&self, target: &Path) -> Result<(), AttributeError> {
        if target.depth() >= 3 {
            return Ok(());
        }
        let resource_only = [
            ("gt", self.gt.is_absent()),
            ("lt", self.lt.is_absent()),
            ("st", self.st.is_absent()),
            ("edge", self.edge.is_absent()),
        ];
        match resource_only.into_iter().find(|(_, absent)| !absent) {
            Some((name, _)) => Err(AttributeError::WrongLevel {
                name,
                path: *target,
            }),
            None => Ok(()),
        }
    }

    /// Applies a Write-Attributes request to stored attributes: set values replace, unset
    /// ones are removed, absent ones stay.
    pub fn apply(&mut self, update: &NotificationAttributes) {
        self.pmin = self.pmin.updated(update.pmin);
        self.pmax = self.pmax.updated(update.pmax);
        self.gt = self.gt.updated(update.gt);
        self.lt = self.lt.updated(update.lt);
        self.st = self.st.updated(update.st);
        self.epmin = self.epmin.updated(update.epmin);
        self.epmax = self.epmax.updated(update.epmax);
        self.edge = self.edge.updated(update.edge);
        self.con = self.con.updated(update.con);
        self.hqmax = self.hqmax.updated(update.hqmax);
    }

    /// The attributes in force at a level: this level's values, then the level above's
    /// (Core precedence: resource instance > resource > object instance > object).
    pub fn inherit(&self, parent: &NotificationAttributes) -> NotificationAttributes {
        NotificationAttributes {
            pmin: self.pmin.or_set(parent.pmin),
            pmax: self.pmax.or_set(parent.pmax),
            gt: self.gt.or_set(parent.gt),
            lt: self.lt.or_set(parent.lt),
            st: self.st.or_set(parent.st),
            epmin: self.epmin.or_set(parent.epmin),
            epmax: self.epmax.or_set(parent.epmax),
            edge: self.edge.or_set(parent.edge),
            con: self.con.or_set(parent.con),
            hqmax: self.hqmax.or_set(parent.hqmax),
        }
    }

    /// `(name, Some(value))` for set attributes, `(name, None)` for unset ones, in the
    /// order of the Core attribute table.
    fn entries(&self) -> impl Iterator<Item = (&'static str, Option<String>)> {
        let uint = |a: Attr<u32>| a.map_text(|v| v.to_string());
        let float = |a: Attr<f64>| a.map_text(format_float);
        let bit = |a: Attr<bool>| a.map_text(|v| if v { "1" } else { "0" }.to_owned());
        [
            ("pmin", uint(self.pmin)),
            ("pmax", uint(self.pmax)),
            ("gt", float(self.gt)),
            ("lt", float(self.lt)),
            ("st", float(self.st)),
            ("epmin", uint(self.epmin)),
            ("epmax", uint(self.epmax)),
            ("edge", bit(self.edge)),
            ("con", bit(self.con)),
            ("hqmax", uint(self.hqmax)),
        ]
        .into_iter()
        .filter_map(|(name, text)| text.map(|t| (name, t)))
    }

    /// Stores one attribute; `raw` is `None` for a bare key (unset).
    fn put(&mut self, known: Known, raw: Option<&str>) -> Result<(), AttributeError> {
        let name = known.name();
        let already = match known {
            Known::Pmin => fill(&mut self.pmin, raw, |v| parse_uint(name, v))?,
            Known::Pmax => fill(&mut self.pmax, raw, |v| parse_uint(name, v))?,
            Known::Gt => fill(&mut self.gt, raw, |v| parse_float(name, v))?,
            Known::Lt => fill(&mut self.lt, raw, |v| parse_float(name, v))?,
            Known::St => fill(&mut self.st, raw, |v| parse_step(name, v))?,
            Known::Epmin => fill(&mut self.epmin, raw, |v| parse_uint(name, v))?,
            Known::Epmax => fill(&mut self.epmax, raw, |v| parse_uint(name, v))?,
            Known::Edge => fill(&mut self.edge, raw, |v| parse_bit(name, v))?,
            Known::Con => fill(&mut self.con, raw, |v| parse_bit(name, v))?,
            Known::Hqmax => fill(&mut self.hqmax, raw, |v| parse_uint(name, v))?,
            Known::Dim | Known::Ssid | Known::Uri | Known::Ver | Known::Lwm2m => {
                return Err(AttributeError::ReadOnly(name));
            }
        };
        if already {
            return Err(AttributeError::Duplicate(name));
        }
        Ok(())
    }
}

impl fmt::Display for NotificationAttributes {
    /// The query form: `pmin=10&pmax=60&lt`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_query_string())
    }
}

impl<T: Copy> Attr<T> {
    /// `None` when absent, `Some(None)` when unset, `Some(Some(text))` when set.
    fn map_text(self, text: impl Fn(T) -> String) -> Option<Option<String>> {
        match self {
            Attr::Absent => None,
            Attr::Unset => Some(None),
            Attr::Set(v) => Some(Some(text(v))),
        }
    }
}

/// Fills an absent slot; returns whether it was already taken (a duplicate).
fn fill<T>(
    slot: &mut Attr<T>,
    raw: Option<&str>,
    parse: impl Fn(&str) -> Result<T, AttributeError>,
) -> Result<bool, AttributeError> {
    if !matches!(slot, Attr::Absent) {
        return Ok(true);
    }
    *slot = match raw {
        None => Attr::Unset,
        Some(v) => Attr::Set(parse(v)?),
    };
    Ok(false)
}

impl Properties {
    pub fn is_empty(&self) -> bool {
        *self == Properties::default()
    }
}

/// Link parameters → attributes. Unknown parameters are skipped (Core: "any other
/// parameters ... MUST be silently ignored"); known ones must be well-formed. A notification
/// attribute without a value is read as [`Attr::Unset`], a property without one is an error.
pub(crate) fn from_link_params(
    params: &[(String, Option<ParamValue>)],
) -> Result<(Properties, NotificationAttributes), AttributeError> {
    let mut props = Properties::default();
    let mut notif = NotificationAttributes::default();
    for (name, value) in params {
        let Some(known) = Known::from_name(name) else {
            continue;
        };
        let raw = value.as_ref().map(ParamValue::as_str);
        if known.is_property() {
            props.put(known, raw)?;
        } else {
            notif.put(known, raw)?;
        }
    }
    Ok((props, notif))
}

/// Attributes → link parameters, properties first, each in the Core table's order (the
/// order of the Core's Discover examples: `</3/0/7>;dim=8;pmin=10;pmax=60;gt=50;lt=42.2`).
pub(crate) fn to_link_params(
    props: &Properties,
    notif: &NotificationAttributes,
) -> Vec<(String, Option<ParamValue>)> {
    let token = |name: &str, value: String| (name.to_owned(), Some(ParamValue::Token(value)));
    let mut params = Vec::new();
    params.extend(props.dim.map(|dim| token("dim", dim.to_string())));
    params.extend(props.ssid.map(|ssid| token("ssid", ssid.to_string())));
    if let Some(uri) = &props.uri {
        params.push(("uri".to_owned(), Some(ParamValue::Quoted(uri.clone()))));
    }
    params.extend(props.ver.map(|ver| token("ver", ver.to_string())));
    params.extend(props.lwm2m.map(|v| token("lwm2m", v.to_string())));
    params.extend(
        notif
            .entries()
            .map(|(name, value)| (name.to_owned(), value.map(ParamValue::Token))),
    );
    params
}

impl Properties {
    fn put(&mut self, known: Known, raw: Option<&str>) -> Result<(), AttributeError> {
        let name = known.name();
        let raw = raw.ok_or(AttributeError::MissingValue(name))?;
        let taken = match known {
            Known::Dim => self.dim.replace(parse_u16(name, raw)?).is_some(),
            Known::Ssid => self.ssid.replace(parse_ssid(raw)?).is_some(),
            Known::Uri => self.uri.replace(raw.to_owned()).is_some(),
            Known::Ver => self.ver.replace(parse_version(name, raw)?).is_some(),
            Known::Lwm2m => self.lwm2m.replace(parse_version(name, raw)?).is_some(),
            _ => return Err(AttributeError::Unknown(name.to_owned())),
        };
        if taken {
            return Err(AttributeError::Duplicate(name));
        }
        Ok(())
    }
}

/// Writes a float so that it parses back to the same `f64`: plain decimals in the usual
/// range (`42.2`, `50`), exponent form for the extremes (`1e300`) to keep it short.
pub(crate) fn format_float(v: f64) -> String {
    let magnitude = v.abs();
    if magnitude != 0.0 && !(1e-5..1e16).contains(&magnitude) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

fn bad_value(name: &'static str, value: &str, expected: &'static str) -> AttributeError {
    AttributeError::BadValue {
        name,
        value: clip(value),
        expected,
    }
}

/// Keeps hostile input out of log lines.
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", s.get(..cut).unwrap_or("")),
        None => s.to_owned(),
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn parse_uint(name: &'static str, v: &str) -> Result<u32, AttributeError> {
    const EXPECTED: &str = "a whole number from 0 to 4294967295";
    if !all_digits(v) {
        return Err(bad_value(name, v, EXPECTED));
    }
    v.parse().map_err(|_| bad_value(name, v, EXPECTED))
}

fn parse_u16(name: &'static str, v: &str) -> Result<u16, AttributeError> {
    const EXPECTED: &str = "a whole number from 0 to 65535";
    if !all_digits(v) {
        return Err(bad_value(name, v, EXPECTED));
    }
    v.parse().map_err(|_| bad_value(name, v, EXPECTED))
}

fn parse_ssid(v: &str) -> Result<u16, AttributeError> {
    match parse_u16("ssid", v) {
        Ok(id @ 1..=65534) => Ok(id),
        _ => Err(bad_value("ssid", v, "a Short Server ID from 1 to 65534")),
    }
}

fn parse_version(name: &'static str, v: &str) -> Result<Version, AttributeError> {
    v.parse()
        .map_err(|_| bad_value(name, v, "a version such as 1.1"))
}

fn parse_bit(name: &'static str, v: &str) -> Result<bool, AttributeError> {
    match v {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(bad_value(name, v, "0 or 1")),
    }
}

/// A decimal number: `[+-]digits[.digits][(e|E)[+-]digits]`, finite. Rust's own float
/// syntax also takes `inf`, `NaN` and `.5`; LwM2M text values do not.
fn parse_float(name: &'static str, v: &str) -> Result<f64, AttributeError> {
    const EXPECTED: &str = "a decimal number such as -12.5";
    let unsigned = v.strip_prefix(['+', '-']).unwrap_or(v);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.strip_prefix(['+', '-']).unwrap_or(e))),
        None => (unsigned, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let well_formed =
        all_digits(int) && frac.is_none_or(all_digits) && exponent.is_none_or(all_digits);
    match v.parse::<f64>() {
        Ok(f) if well_formed && f.is_finite() => Ok(f),
        _ => Err(bad_value(name, v, EXPECTED)),
    }
}

fn parse_step(name: &'static str, v: &str) -> Result<f64, AttributeError> {
    match parse_float(name, v)? {
        st if st >= 0.0 => Ok(st),
        _ => Err(bad_value(name, v, "a non-negative number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Result<NotificationAttributes, AttributeError> {
        NotificationAttributes::from_query_string(s)
    }

    #[test]
    fn parses_the_brief_query() {
        let a = NotificationAttributes::from_query(&["pmin=10", "pmax=60", "gt=20.5", "lt"])
            .expect("parses");
        assert_eq!(a.pmin, Attr::Set(10));
        assert_eq!(a.pmax, Attr::Set(60));
        assert_eq!(a.gt, Attr::Set(20.5));
        assert_eq!(a.lt, Attr::Unset);
        assert_eq!(a.st, Attr::Absent);
        assert_eq!(a.to_query_string(), "pmin=10&pmax=60&gt=20.5&lt");
    }

    #[test]
    fn values_are_typed() {
        assert!(matches!(
            q("pmin=-1"),
            Err(AttributeError::BadValue { name: "pmin", .. })
        ));
        assert!(matches!(
            q("pmin=1.5"),
            Err(AttributeError::BadValue { .. })
        ));
        assert!(matches!(
            q("pmin=4294967296"),
            Err(AttributeError::BadValue { .. })
        ));
        assert!(matches!(q("pmin="), Err(AttributeError::BadValue { .. })));
        assert!(matches!(q("gt=inf"), Err(AttributeError::BadValue { .. })));
        assert!(matches!(q("gt=NaN"), Err(AttributeError::BadValue { .. })));
        assert!(matches!(
            q("gt=1e400"),
            Err(AttributeError::BadValue { .. })
        ));
        assert!(matches!(q("gt=.5"), Err(AttributeError::BadValue { .. })));
        assert!(matches!(q("gt=0x10"), Err(AttributeError::BadValue { .. })));
        assert!(matches!(
            q("st=-1"),
            Err(AttributeError::BadValue { name: "st", .. })
        ));
        assert!(matches!(
            q("edge=2"),
            Err(AttributeError::BadValue { name: "edge", .. })
        ));
        assert!(matches!(
            q("con=true"),
            Err(AttributeError::BadValue { name: "con", .. })
        ));
        assert_eq!(q("gt=-1.5E+3").map(|a| a.gt), Ok(Attr::Set(-1500.0)));
        assert_eq!(q("lt=+7").map(|a| a.lt), Ok(Attr::Set(7.0)));
        assert_eq!(
            q("edge=1&con=0").map(|a| (a.edge, a.con)),
            Ok((Attr::Set(true), Attr::Set(false)))
        );
    }

    #[test]
    fn unknown_read_only_and_duplicates_are_refused() {
        assert_eq!(q("foo=1"), Err(AttributeError::Unknown("foo".to_owned())));
        assert_eq!(q("dim=3"), Err(AttributeError::ReadOnly("dim")));
        assert_eq!(q("ver=1.1"), Err(AttributeError::ReadOnly("ver")));
        assert_eq!(q("pmin=1&pmin"), Err(AttributeError::Duplicate("pmin")));
        assert_eq!(q("PMIN=5").map(|a| a.pmin), Ok(Attr::Set(5)));
        assert_eq!(q("").map(|a| a.is_empty()), Ok(true));
        assert_eq!(q("pmin=1&&pmax=2").map(|a| a.pmax), Ok(Attr::Set(2)));
    }

    #[test]
    fn validity_rules() {
        assert!(q("lt=10&gt=20&st=4").expect("parses").validate().is_ok());
        assert!(matches!(
            q("lt=20&gt=20").expect("parses").validate(),
            Err(AttributeError::LtNotBelowGt { .. })
        ));
        assert!(matches!(
            q("lt=10&gt=20&st=5").expect("parses").validate(),
            Err(AttributeError::StepTooLarge { .. })
        ));
        assert!(matches!(
            q("epmin=10&epmax=5").expect("parses").validate(),
            Err(AttributeError::EvaluationPeriodsInverted { .. })
        ));
        assert!(q("epmin=5&epmax=5").expect("parses").validate().is_ok());
        let inverted = q("pmin=60&pmax=10").expect("parses");
        assert!(
            inverted.validate().is_ok(),
            "the spec ignores pmax, it does not refuse it"
        );
        assert!(matches!(
            inverted.validate_strict(),
            Err(AttributeError::PeriodsInverted { pmin: 60, pmax: 10 })
        ));
        assert!(
            q("pmin=60&pmax=0")
                .expect("parses")
                .validate_strict()
                .is_ok()
        );
        // Only values set in the same request are compared.
        assert!(q("lt=30&gt").expect("parses").validate().is_ok());
    }

    #[test]
    fn levels() {
        let gt = q("gt=5").expect("parses");
        assert!(gt.check_level(&Path::Resource(3303, 0, 5700)).is_ok());
        assert!(gt.check_level(&Path::ResourceInstance(3, 0, 7, 1)).is_ok());
        assert_eq!(
            gt.check_level(&Path::Instance(3303, 0)),
            Err(AttributeError::WrongLevel {
                name: "gt",
                path: Path::Instance(3303, 0)
            })
        );
        assert!(
            q("pmin=5&con=1")
                .expect("parses")
                .check_level(&Path::Root)
                .is_ok()
        );
    }

    #[test]
    fn apply_and_inherit() {
        let mut stored = q("pmin=5&pmax=60&gt=3").expect("parses");
        stored.apply(&q("pmin=10&pmax&lt=1").expect("parses"));
        assert_eq!(stored.to_query_string(), "pmin=10&gt=3&lt=1");
        let object = q("pmin=1&pmax=100").expect("parses");
        assert_eq!(
            stored.inherit(&object).to_query_string(),
            "pmin=10&pmax=100&gt=3&lt=1"
        );
    }

    #[test]
    fn floats_format_to_what_parses_back() {
        for v in [
            0.0,
            -0.0,
            42.2,
            50.0,
            0.1,
            1e300,
            -1e-300,
            5e-324,
            f64::MAX,
            1e16,
            9.999e15,
            1e-5,
        ] {
            let text = format_float(v);
            assert_eq!(
                parse_float("gt", &text).map(f64::to_bits),
                Ok(v.to_bits()),
                "{text}"
            );
        }
        assert_eq!(format_float(50.0), "50");
        assert_eq!(format_float(1e300), "1e300");
    }

    #[test]
    fn link_params_round_trip() {
        let props = Properties {
            dim: Some(8),
            ssid: Some(101),
            uri: Some("coaps://s,1".to_owned()),
            ver: Some(Version::V1_1),
            lwm2m: Some(Version::V1_2),
        };
        let notif = q("pmin=10&lt&gt=42.2").expect("parses");
        let params = to_link_params(&props, &notif);
        assert_eq!(from_link_params(&params), Ok((props, notif)));
        assert_eq!(
            from_link_params(&[("dim".to_owned(), None)]),
            Err(AttributeError::MissingValue("dim"))
        );
        assert!(matches!(
            from_link_params(&[("ssid".to_owned(), Some(ParamValue::token("0")))]),
            Err(AttributeError::BadValue { name: "ssid", .. })
        ));
        assert_eq!(
            from_link_params(&[
                ("obs".to_owned(), None),
                ("rt".to_owned(), Some(ParamValue::token("x")))
            ]),
            Ok(Default::default()),
            "unknown parameters are ignored"
        );
    }
}
