//! Scalar settings as drasi-server configs write them.
//!
//! - [`opt`]: a plain scalar that drasi-server also accepts as a string (`persistIndex:
//!   "true"`). No `${VAR}` reference is resolved in such a field, by drasi-server or DRaaS.
//! - [`Setting`]: a scalar *settings* field, one drasi-server types `ConfigValue<T>` (its
//!   plugin SDK): the value (a string holding it accepted too), or a string that is one whole
//!   `${VAR}` / `${VAR:-default}` reference, kept as written until the config is resolved
//!   ([`super::interpolate`]). Which fields are settings fields is
//!   [`super::references`]'s table. Ports are [`super::Port`], the same idea for `u16`.

use std::fmt::{self, Display};
use std::str::FromStr;

use serde::de::{DeserializeOwned, Error};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::interpolate::reference;
use super::postgres::PostgresSslMode;

/// Deserializes an optional scalar from either its native form or a string.
pub fn opt<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr + DeserializeOwned,
    T::Err: Display,
{
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => s
            .trim()
            .parse::<T>()
            .map(Some)
            .map_err(|e| D::Error::custom(format!("invalid value {s:?}: {e}"))),
        Some(v) => serde_json::from_value(v)
            .map(Some)
            .map_err(D::Error::custom),
    }
}

/// A scalar settings field as written (drasi-server's `ConfigValue<T>`): its value, or a
/// whole-value `${VAR}` / `${VAR:-default}` reference not yet resolved. A resolved config
/// holds values only ([`super::interpolate::resolve_value`] refuses a variable whose value is
/// itself a reference).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Setting<T> {
    /// The value, as the field's type.
    Value(T),
    /// `${NAME}` or `${NAME:-default}`, exactly as written.
    Reference(String),
}

impl<T> Setting<T> {
    /// The value; `None` for a reference (in a resolved config, never).
    pub fn value(&self) -> Option<&T> {
        match self {
            Self::Value(v) => Some(v),
            Self::Reference(_) => None,
        }
    }

    /// The reference as written, if this is one.
    pub fn reference(&self) -> Option<&str> {
        match self {
            Self::Value(_) => None,
            Self::Reference(r) => Some(r),
        }
    }
}

impl<T: Copy> Setting<T> {
    /// The value, copied; `None` for a reference.
    pub fn get(&self) -> Option<T> {
        self.value().copied()
    }
}

impl<T> From<T> for Setting<T> {
    fn from(value: T) -> Self {
        Self::Value(value)
    }
}

impl<T: Display> Display for Setting<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Value(v) => v.fmt(f),
            Self::Reference(r) => f.write_str(r),
        }
    }
}

/// A type a [`Setting`] holds: how its value reads from a string.
pub trait Scalar: Sized + Serialize + DeserializeOwned {
    /// What a value looks like, for errors.
    const EXPECTED: &'static str;

    /// The value a string holds (surrounding spaces ignored for numbers and flags).
    fn from_text(text: &str) -> Option<Self>;
}

impl Scalar for u64 {
    const EXPECTED: &'static str = "a non-negative integer";

    fn from_text(text: &str) -> Option<Self> {
        text.trim().parse().ok()
    }
}

impl Scalar for u32 {
    const EXPECTED: &'static str = "a non-negative integer below 2^32";

    fn from_text(text: &str) -> Option<Self> {
        text.trim().parse().ok()
    }
}

impl Scalar for bool {
    const EXPECTED: &'static str = "true or false";

    fn from_text(text: &str) -> Option<Self> {
        text.trim().parse().ok()
    }
}

impl Scalar for PostgresSslMode {
    const EXPECTED: &'static str = "disable, prefer or require";

    fn from_text(text: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
    }
}

impl<T: Scalar> Setting<T> {
    /// Reads a settings value: a string that is one whole reference is kept as written (by
    /// drasi-server's rule, [`reference`]); any other string must hold the value.
    pub fn from_json(value: serde_json::Value) -> Result<Self, String> {
        match value {
            serde_json::Value::String(text) => {
                if reference(&text).is_some() {
                    return Ok(Self::Reference(text));
                }
                T::from_text(&text).map(Self::Value).ok_or_else(|| {
                    format!(
                        "invalid value {text:?}: expected {}, or a whole-value `${{VAR}}` / \
                         `${{VAR:-default}}` reference",
                        T::EXPECTED
                    )
                })
            }
            other => serde_json::from_value(other)
                .map(Self::Value)
                .map_err(|e| e.to_string()),
        }
    }
}

impl<T: Serialize> Serialize for Setting<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Value(v) => v.serialize(s),
            Self::Reference(r) => s.serialize_str(r),
        }
    }
}

impl<'de, T: Scalar> Deserialize<'de> for Setting<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::from_json(serde_json::Value::deserialize(d)?).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn count(v: serde_json::Value) -> Result<Setting<u64>, String> {
        Setting::from_json(v)
    }

    #[test]
    fn a_setting_is_its_value_or_one_whole_reference() {
        assert_eq!(count(json!(5000)), Ok(Setting::Value(5000)));
        assert_eq!(count(json!(" 5000 ")), Ok(Setting::Value(5000)));
        for r in ["${T}", "${T:-100}", "${T:-not-a-number}", "${a.b}", "${}"] {
            assert_eq!(count(json!(r)), Ok(Setting::Reference(r.to_owned())), "{r}");
        }
        // Round trip: values as their type, references as written.
        assert_eq!(
            serde_json::to_value(Setting::Value(7u64)).unwrap(),
            json!(7)
        );
        let r: Setting<u64> = serde_yaml::from_str("\"${T:-1}\"").unwrap();
        assert_eq!(serde_json::to_value(&r).unwrap(), json!("${T:-1}"));
        assert_eq!(r.reference(), Some("${T:-1}"));
        let flag: Setting<bool> = serde_yaml::from_str("\"true\"").unwrap();
        assert_eq!(flag.get(), Some(true));
        let mode: Setting<PostgresSslMode> = serde_yaml::from_str("require").unwrap();
        assert_eq!(mode.get(), Some(PostgresSslMode::Require));
    }

    #[test]
    fn anything_else_is_refused_saying_what_is_expected() {
        for bad in [
            json!("big"),
            json!("x${T}"),
            json!("${T}x"),
            json!(" ${T}"),
            json!("${{T}}"),
            json!(-1),
            json!(true),
        ] {
            assert!(count(bad.clone()).is_err(), "{bad}");
        }
        let message = count(json!("big")).unwrap_err();
        assert!(message.contains("\"big\""), "{message}");
        assert!(message.contains("non-negative integer"), "{message}");
        assert!(message.contains("${VAR}"), "{message}");
        assert!(Setting::<PostgresSslMode>::from_json(json!("Require")).is_err());
    }
}
