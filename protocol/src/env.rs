//! An instance's explicit environment: the only variables its config may reference as
//! `${NAME}`. Instances never inherit the worker's environment; the worker passes what the
//! operator allows plus this map (see `worker/src/driver/process/env.rs`).
//!
//! A value is a plain string, or `{"value": "...", "secret": true}`. Secret values are never
//! shown again: [`InstanceEnv::redacted`] replaces them with `{"secret": true}` for every read,
//! and a patch that leaves such a redacted entry in place keeps the stored value
//! ([`InstanceEnv::restore_secrets`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Most variables one instance may have.
pub const MAX_VARS: usize = 100;
/// Longest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 8 * 1024;

/// The variables a tenant may set for its instance, by name.
pub type InstanceEnv = BTreeMap<String, EnvValue>;

/// One variable of an instance's environment ([`InstanceEnv`]): a plain string, or
/// `{"value": "...", "secret": true}`. A secret's value is never shown again: reads give
/// `{"secret": true}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum EnvValue {
    /// A plain value, shown in reads.
    Plain(String),
    Detailed {
        /// Absent only in a redacted read, or in a patch that keeps the stored secret.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<String>,
        /// Never shown again once stored; scrubbed from the instance's messages.
        #[serde(default)]
        secret: bool,
    },
}

impl EnvValue {
    /// The value, when known (`None` for a redacted secret).
    pub fn value(&self) -> Option<&str> {
        match self {
            EnvValue::Plain(v) => Some(v),
            EnvValue::Detailed { value, .. } => value.as_deref(),
        }
    }

    pub fn is_secret(&self) -> bool {
        matches!(self, EnvValue::Detailed { secret: true, .. })
    }
}

/// A rule an environment breaks, with the field it concerns (`env.NAME`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct EnvError {
    pub field: String,
    pub message: String,
}

/// Names a tenant may not set: the dynamic loader's and libc's knobs, the proxy settings
/// that carry the egress policy, and what DRaaS itself sets.
fn reserved(name: &str) -> Option<&'static str> {
    let upper = name.to_ascii_uppercase();
    if upper.starts_with("LD_") || upper.starts_with("GLIBC_") || upper.starts_with("MALLOC_") {
        return Some("dynamic loader and libc settings cannot be set");
    }
    if matches!(
        upper.as_str(),
        "HTTP_PROXY" | "HTTPS_PROXY" | "ALL_PROXY" | "NO_PROXY"
    ) {
        return Some("proxy settings carry the operator's egress policy and cannot be set");
    }
    if upper.starts_with("DRAAS_") || matches!(upper.as_str(), "PATH" | "NO_COLOR") {
        return Some("is set by DRaaS");
    }
    None
}

/// Checks names, values and sizes. `allow_redacted` accepts a secret without a value (a
/// patch keeping the stored one); a create must give every value.
pub fn validate(env: &InstanceEnv, allow_redacted: bool) -> Result<(), EnvError> {
    let err = |name: &str, message: String| EnvError {
        field: format!("env.{name}"),
        message,
    };
    if env.len() > MAX_VARS {
        return Err(EnvError {
            field: "env".into(),
            message: format!("at most {MAX_VARS} variables"),
        });
    }
    for (name, value) in env {
        if !is_var_name(name) {
            return Err(err(
                name,
                "a name is a letter or `_` followed by letters, digits or `_`".into(),
            ));
        }
        if let Some(why) = reserved(name) {
            return Err(err(name, format!("`{name}` {why}")));
        }
        match value.value() {
            None if !allow_redacted || !value.is_secret() => {
                return Err(err(name, "a value is required".into()));
            }
            None => {}
            Some(v) if v.len() > MAX_VALUE_BYTES => {
                return Err(err(
                    name,
                    format!("the value is longer than {MAX_VALUE_BYTES} bytes"),
                ));
            }
            // A line break or other control character could change the structure of the
            // YAML the value is substituted into.
            Some(v) if v.chars().any(char::is_control) => {
                return Err(err(
                    name,
                    "the value must not contain line breaks or control characters".into(),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Whether `name` is a valid variable name (`[A-Za-z_][A-Za-z0-9_]*`).
pub fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 128
}

/// The environment as every read shows it: secret values removed.
pub fn redacted(env: &InstanceEnv) -> InstanceEnv {
    env.iter()
        .map(|(name, value)| {
            let shown = if value.is_secret() {
                EnvValue::Detailed {
                    value: None,
                    secret: true,
                }
            } else {
                value.clone()
            };
            (name.clone(), shown)
        })
        .collect()
}

/// After a patch of the redacted view: a secret left without a value takes the value stored
/// under the same name. One that had none stays without, and [`validate`] refuses it.
pub fn restore_secrets(patched: &mut InstanceEnv, stored: &InstanceEnv) {
    for (name, value) in patched.iter_mut() {
        if let EnvValue::Detailed {
            value: v @ None,
            secret: true,
        } = value
            && let Some(old) = stored.get(name).and_then(EnvValue::value)
        {
            *v = Some(old.to_owned());
        }
    }
}

/// The lookup a config's `${NAME}` references resolve against.
pub fn lookup(env: &InstanceEnv) -> impl Fn(&str) -> Option<String> + '_ {
    move |name| env.get(name).and_then(EnvValue::value).map(str::to_owned)
}

/// The secret values, for scrubbing text (logs, error messages) before it is shown.
pub fn secret_values(env: &InstanceEnv) -> Vec<&str> {
    env.values()
        .filter(|v| v.is_secret())
        .filter_map(EnvValue::value)
        .filter(|v| !v.is_empty())
        .collect()
}

/// Replaces every secret value in `text` with `<redacted>`.
pub fn scrub(text: &str, env: &InstanceEnv) -> String {
    let mut out = text.to_owned();
    for secret in secret_values(env) {
        if out.contains(secret) {
            out = out.replace(secret, "<redacted>");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(json: &str) -> InstanceEnv {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn plain_and_secret_values_parse_and_redact() {
        let e = env(r#"{"A": "1", "B": {"value": "s3cret", "secret": true}, "C": {"value": "x"}}"#);
        validate(&e, false).unwrap();
        let shown = serde_json::to_string(&redacted(&e)).unwrap();
        assert_eq!(
            shown,
            r#"{"A":"1","B":{"secret":true},"C":{"value":"x","secret":false}}"#
        );
        assert!(!shown.contains("s3cret"));
        assert_eq!(lookup(&e)("B").as_deref(), Some("s3cret"));
        assert_eq!(scrub("token s3cret!", &e), "token <redacted>!");
    }

    #[test]
    fn a_patched_redacted_secret_keeps_its_value() {
        let stored = env(r#"{"B": {"value": "s3cret", "secret": true}}"#);
        let mut patched = redacted(&stored);
        patched.insert(
            "N".into(),
            EnvValue::Detailed {
                value: None,
                secret: true,
            },
        );
        assert!(validate(&patched, false).is_err());
        restore_secrets(&mut patched, &stored);
        assert_eq!(patched["B"].value(), Some("s3cret"));
        // A new secret without a value has nothing to restore: still refused.
        let e = validate(&patched, false).unwrap_err();
        assert_eq!(e.field, "env.N");
    }

    #[test]
    fn names_values_and_reserved_names_are_checked() {
        for bad in [
            r#"{"1A": "x"}"#,
            r#"{"LD_PRELOAD": "/tmp/x.so"}"#,
            r#"{"http_proxy": "x"}"#,
            r#"{"PATH": "/tmp"}"#,
            r#"{"DRAAS_EGRESS": "allow"}"#,
            r#"{"A": "line\nbreak"}"#,
        ] {
            assert!(validate(&env(bad), true).is_err(), "{bad} accepted");
        }
        let long = format!(r#"{{"A": "{}"}}"#, "x".repeat(MAX_VALUE_BYTES + 1));
        assert_eq!(validate(&env(&long), false).unwrap_err().field, "env.A");
    }
}
