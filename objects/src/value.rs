//! LwM2M data types and values (Core Appendix C).

use std::fmt;
use std::str::FromStr;

/// The data type of a resource, as named in OMA DDF `<Type>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum DataType {
    String,
    Integer,
    UnsignedInteger,
    Float,
    Boolean,
    Opaque,
    Time,
    Objlnk,
    Corelnk,
    /// Executable resources carry no value (`<Type></Type>` in DDF).
    None,
}

impl DataType {
    /// The name used in DDF XML.
    pub fn ddf_name(self) -> &'static str {
        match self {
            DataType::String => "String",
            DataType::Integer => "Integer",
            DataType::UnsignedInteger => "Unsigned Integer",
            DataType::Float => "Float",
            DataType::Boolean => "Boolean",
            DataType::Opaque => "Opaque",
            DataType::Time => "Time",
            DataType::Objlnk => "Objlnk",
            DataType::Corelnk => "Corelnk",
            DataType::None => "",
        }
    }

    /// Parses a DDF `<Type>`; OMA files vary in case and spacing ("Unsigned Integer",
    /// "unsignedInteger", "Objlnk", "ObjLnk").
    pub fn from_ddf_name(name: &str) -> Option<DataType> {
        let key: String = name
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '_')
            .flat_map(char::to_lowercase)
            .collect();
        Some(match key.as_str() {
            "string" => DataType::String,
            "integer" => DataType::Integer,
            "unsignedinteger" => DataType::UnsignedInteger,
            "float" => DataType::Float,
            "boolean" => DataType::Boolean,
            "opaque" => DataType::Opaque,
            "time" => DataType::Time,
            "objlnk" => DataType::Objlnk,
            "corelnk" => DataType::Corelnk,
            "" | "none" => DataType::None,
            _ => return None,
        })
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataType::None => "none",
            other => other.ddf_name(),
        })
    }
}

/// An object link: `oid:iid`. `65535:65535` is the null link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjLink {
    pub object: u16,
    pub instance: u16,
}

impl ObjLink {
    pub const NULL: ObjLink = ObjLink {
        object: 65535,
        instance: 65535,
    };

    pub fn new(object: u16, instance: u16) -> ObjLink {
        ObjLink { object, instance }
    }

    pub fn is_null(&self) -> bool {
        *self == ObjLink::NULL
    }
}

impl fmt::Display for ObjLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.object, self.instance)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("object link must be two IDs 0..=65535 joined by ':', got {0:?}")]
pub struct ObjLinkError(pub String);

impl FromStr for ObjLink {
    type Err = ObjLinkError;
    fn from_str(s: &str) -> Result<ObjLink, ObjLinkError> {
        let err = || ObjLinkError(s.chars().take(32).collect());
        let (o, i) = s.split_once(':').ok_or_else(err)?;
        let digits =
            |x: &str| !x.is_empty() && x.len() <= 5 && x.bytes().all(|b| b.is_ascii_digit());
        if !digits(o) || !digits(i) {
            return Err(err());
        }
        Ok(ObjLink {
            object: o.parse().map_err(|_| err())?,
            instance: i.parse().map_err(|_| err())?,
        })
    }
}

/// A typed LwM2M value.
///
/// `Time` is seconds since the Unix epoch (signed: dates before 1970 are representable in
/// every format that carries time). `Corelnk` holds the link-format text as sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    String(String),
    Integer(i64),
    UnsignedInteger(u64),
    Float(f64),
    Boolean(bool),
    Opaque(Vec<u8>),
    Time(i64),
    Objlnk(ObjLink),
    Corelnk(String),
}

impl Value {
    pub fn data_type(&self) -> DataType {
        match self {
            Value::String(_) => DataType::String,
            Value::Integer(_) => DataType::Integer,
            Value::UnsignedInteger(_) => DataType::UnsignedInteger,
            Value::Float(_) => DataType::Float,
            Value::Boolean(_) => DataType::Boolean,
            Value::Opaque(_) => DataType::Opaque,
            Value::Time(_) => DataType::Time,
            Value::Objlnk(_) => DataType::Objlnk,
            Value::Corelnk(_) => DataType::Corelnk,
        }
    }

    /// Converts this value to `target` where LwM2M allows it without loss: numbers between the
    /// integer types, Time and Float when exact, opaque to and from nothing else. Decoders of
    /// self-describing formats (SenML, CBOR, JSON) call this to bring a wire type to the model's
    /// type; `None` means the value does not fit the resource.
    pub fn coerce(self, target: DataType) -> Option<Value> {
        use Value as V;
        if self.data_type() == target {
            return Some(self);
        }
        let as_i64 = |v: &Value| -> Option<i64> {
            match *v {
                V::Integer(i) | V::Time(i) => Some(i),
                V::UnsignedInteger(u) => i64::try_from(u).ok(),
                V::Float(f) => float_to_i64(f),
                _ => None,
            }
        };
        Some(match target {
            DataType::Integer => V::Integer(as_i64(&self)?),
            DataType::Time => V::Time(as_i64(&self)?),
            DataType::UnsignedInteger => V::UnsignedInteger(match self {
                V::Integer(i) | V::Time(i) => u64::try_from(i).ok()?,
                V::Float(f) => float_to_u64(f)?,
                _ => return None,
            }),
            DataType::Float => V::Float(match self {
                V::Integer(i) | V::Time(i) => exact_f64_from_i64(i)?,
                V::UnsignedInteger(u) => exact_f64_from_u64(u)?,
                _ => return None,
            }),
            DataType::Objlnk => match self {
                V::String(s) => V::Objlnk(s.parse().ok()?),
                _ => return None,
            },
            DataType::Corelnk => match self {
                V::String(s) => V::Corelnk(s),
                _ => return None,
            },
            DataType::String => match self {
                V::Corelnk(s) => V::String(s),
                _ => return None,
            },
            DataType::Boolean | DataType::Opaque | DataType::None => return None,
        })
    }
}

fn float_to_i64(f: f64) -> Option<i64> {
    // 2^63 is exactly representable; every integral float in [-2^63, 2^63) fits.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    (f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f)).then_some(f as i64)
}

fn float_to_u64(f: f64) -> Option<u64> {
    const LIMIT: f64 = 18_446_744_073_709_551_616.0;
    (f.fract() == 0.0 && (0.0..LIMIT).contains(&f)).then_some(f as u64)
}

fn exact_f64_from_i64(i: i64) -> Option<f64> {
    let f = i as f64;
    (float_to_i64(f) == Some(i)).then_some(f)
}

fn exact_f64_from_u64(u: u64) -> Option<f64> {
    let f = u as f64;
    (float_to_u64(f) == Some(u)).then_some(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddf_type_names() {
        assert_eq!(
            DataType::from_ddf_name("Unsigned Integer"),
            Some(DataType::UnsignedInteger)
        );
        assert_eq!(
            DataType::from_ddf_name("unsignedInteger"),
            Some(DataType::UnsignedInteger)
        );
        assert_eq!(DataType::from_ddf_name("ObjLnk"), Some(DataType::Objlnk));
        assert_eq!(DataType::from_ddf_name(""), Some(DataType::None));
        assert_eq!(DataType::from_ddf_name("Double"), None);
    }

    #[test]
    fn objlnk_text() {
        assert_eq!("3:0".parse(), Ok(ObjLink::new(3, 0)));
        assert_eq!("65535:65535".parse(), Ok(ObjLink::NULL));
        for bad in ["3", "3:", ":0", "3:0:1", "-1:0", "65536:0", "a:b", "3 :0"] {
            assert!(bad.parse::<ObjLink>().is_err(), "{bad}");
        }
    }

    #[test]
    fn coercions_keep_values_exact() {
        assert_eq!(
            Value::Float(3.0).coerce(DataType::Integer),
            Some(Value::Integer(3))
        );
        assert_eq!(Value::Float(3.5).coerce(DataType::Integer), None);
        assert_eq!(Value::Integer(-1).coerce(DataType::UnsignedInteger), None);
        assert_eq!(
            Value::Integer(7).coerce(DataType::Time),
            Some(Value::Time(7))
        );
        assert_eq!(
            Value::UnsignedInteger(u64::MAX).coerce(DataType::Integer),
            None
        );
        assert_eq!(Value::Integer(i64::MAX).coerce(DataType::Float), None);
        assert_eq!(Value::Float(f64::NAN).coerce(DataType::Integer), None);
        assert_eq!(Value::Boolean(true).coerce(DataType::Integer), None);
        assert_eq!(
            Value::String("1:2".into()).coerce(DataType::Objlnk),
            Some(Value::Objlnk(ObjLink::new(1, 2)))
        );
    }
}
