//! Serde helpers for scalar settings that drasi-server also accepts as strings (for example
//! `timeoutMs: "5000"` after `${TIMEOUT}` interpolation inside quotes). Ports are [`super::Port`],
//! which also keeps a whole-value `${VAR}` reference until it is resolved.

use std::fmt::Display;
use std::str::FromStr;

use serde::de::{DeserializeOwned, Error};
use serde::{Deserialize, Deserializer};

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
