//! `${VAR}` references, by drasi-server's rules, with the variable lookup supplied by the caller
//! (this crate never reads the process environment).
//!
//! drasi-server resolves references in the *values* of the parsed document, never in its text:
//! a comment is never looked at, quoting is YAML's, and a value never becomes structure.
//! [`expand`] is the rule for one string (mirroring drasi-server's reference scanner,
//! `check_handlebars_env_refs` in `src/config/plugin_validation.rs`, and its resolver,
//! `EnvironmentVariableResolver` in `src/api/mappings/core/resolver.rs`):
//!
//! - `${NAME}` is a reference when `NAME` is one or more ASCII letters, digits or `_` (a
//!   leading digit included). It resolves to the variable's value when it is set, even to an
//!   empty value; an unset variable is an error naming it.
//! - `${NAME:-default}`: the default (up to the first `}`, possibly empty) when `NAME` is not
//!   set. A set but empty variable gives the empty value, not the default.
//! - `${{…}}` is not a reference (Handlebars templates write `${{after.total}}`): `${` is kept
//!   and scanning goes on after it.
//! - `${` without a closing `}` is not a reference: the rest of the string is kept as written.
//! - `${…}` whose name is empty or holds any other character (`${a.b}`, `${A-x}`, `${ A }`)
//!   is not a reference: kept as written.
//! - There are no escapes: `$${A}` is `$` followed by the reference `${A}`, `\${A}` likewise.
//! - A value or default is inserted as is, never scanned again.
//!
//! [`resolve_value`] applies the rule to every string of a document (mapping keys are never
//! resolved) and names the field of an unresolved reference; [`interpolate`] does the same
//! for a YAML document's text. The runtime, the API and the worker all resolve through these,
//! so they agree. [`unaccepted_value`] says a resolved value a typed field refuses (a port
//! that is no number) in terms of the reference, never the value.

use serde_json::Value;

use super::ConfigError;
use super::error::join_path;

/// Resolves the references in one string value by drasi-server's rules (see the module
/// documentation). An unresolved reference is an error (with an empty path) naming the
/// variable.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        if after.starts_with('{') {
            // `${{…}}`: a template expression, not a reference.
            out.push_str("${");
            rest = after;
            continue;
        }
        let Some(end) = after.find('}') else {
            // Unterminated: not a reference.
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let inner = &after[..end];
        let (name, default) = match inner.find(":-") {
            Some(at) => (&inner[..at], Some(&inner[at + 2..])),
            None => (inner, None),
        };
        if is_reference_name(name) {
            match (lookup(name), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => {
                    return Err(ConfigError::new(
                        "",
                        format!(
                            "environment variable `{name}` is not set \
                             (use `${{{name}:-default}}` to give a default)"
                        ),
                    ));
                }
            }
        } else {
            out.push_str(&rest[start..start + 2 + end + 1]);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// What drasi-server takes for a variable name in `${…}`.
fn is_reference_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Resolves every string of `value` with [`expand`] (mapping keys are left alone); an
/// unresolved reference is an error naming its field (`queries[0].query`), relative to
/// `path`. Returns whether anything changed.
pub fn resolve_value(
    value: &mut Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<bool, ConfigError> {
    match value {
        Value::String(text) if text.contains("${") => {
            let resolved = expand(text, lookup).map_err(|e| ConfigError::new(path, e.message))?;
            let changed = resolved != *text;
            *text = resolved;
            Ok(changed)
        }
        Value::Array(items) => {
            let mut changed = false;
            for (i, item) in items.iter_mut().enumerate() {
                changed |= resolve_value(item, &format!("{path}[{i}]"), lookup)?;
            }
            Ok(changed)
        }
        Value::Object(map) => {
            let mut changed = false;
            for (key, item) in map.iter_mut() {
                changed |= resolve_value(item, &join_path(path, key), lookup)?;
            }
            Ok(changed)
        }
        _ => Ok(false),
    }
}

/// The error of a resolved config's typed parse: when the field it names held a reference
/// as written, it is said in terms of the reference, the resolved value left out.
pub(crate) fn unaccepted_value(e: ConfigError, written: &Value, resolved: &Value) -> ConfigError {
    let (Some(Value::String(before)), Some(Value::String(after))) =
        (value_at(written, &e.path), value_at(resolved, &e.path))
    else {
        return e;
    };
    if !before.contains("${") {
        return e;
    }
    let mut why = e.message.replace(&format!("{after:?}"), "(the value)");
    if !after.is_empty() {
        why = why.replace(after.as_str(), "(the value)");
    }
    let message = format!("`{before}` resolves to a value this field does not accept: {why}");
    ConfigError::new(e.path, message)
}

/// The value at a key path (`sources[0].port`) of a document, if there is one.
fn value_at<'v>(doc: &'v Value, path: &str) -> Option<&'v Value> {
    let mut at = doc;
    for part in path.split('.') {
        let (key, indexes) = part
            .split_once('[')
            .map_or((part, ""), |(k, rest)| (k, rest));
        if !key.is_empty() {
            at = at.get(key)?;
        }
        for index in indexes.split('[').filter(|i| !i.is_empty()) {
            at = at.get(index.strip_suffix(']')?.parse::<usize>().ok()?)?;
        }
    }
    Some(at)
}

/// Parses a YAML (or JSON) document into a JSON value, as a config pasted into a request body
/// would be. A syntax error is reported with its line and column.
pub fn yaml_to_json(text: &str) -> Result<Value, ConfigError> {
    serde_yaml::from_str(text).map_err(|e| ConfigError::new("", e.to_string()))
}

/// Resolves the references in a YAML document's values ([`resolve_value`]): comments and keys
/// are never resolved, and a value never becomes structure. The text comes back unchanged
/// when nothing was resolved; otherwise the resolved document is rendered again as YAML.
pub fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    if !text.contains("${") {
        return Ok(text.to_owned());
    }
    let mut doc = yaml_to_json(text)?;
    if !resolve_value(&mut doc, "", lookup)? {
        return Ok(text.to_owned());
    }
    serde_yaml::to_string(&doc)
        .map_err(|e| ConfigError::new("", format!("cannot render the resolved config: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("9000".into()),
            "EMPTY" => Some(String::new()),
            "A" => Some("a".into()),
            "B" => Some("b".into()),
            "1X" => Some("digit-first".into()),
            "NESTED" => Some("${A}".into()),
            _ => None,
        }
    }

    fn x(text: &str) -> String {
        expand(text, &env).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn unset(text: &str) -> String {
        expand(text, &env).unwrap_err().message
    }

    #[test]
    fn a_reference_is_its_value_and_an_unset_one_is_an_error_naming_it() {
        assert_eq!(x("${PORT}"), "9000");
        assert_eq!(x("http://${A}:${PORT}/x"), "http://a:9000/x");
        assert_eq!(x("${A}${B}"), "ab");
        let message = unset("x ${MISSING_VAR} y");
        assert!(message.contains("`MISSING_VAR`"), "{message}");
        assert!(message.contains("${MISSING_VAR:-default}"), "{message}");
    }

    #[test]
    fn a_default_applies_only_when_the_variable_is_unset() {
        assert_eq!(x("${HOST:-127.0.0.1}"), "127.0.0.1");
        assert_eq!(x("${PORT:-1}"), "9000");
        // Set but empty: the empty value, not the default (drasi-server's resolver).
        assert_eq!(x("[${EMPTY:-info}]"), "[]");
        assert_eq!(x("[${EMPTY}]"), "[]");
        assert_eq!(x("[${UNSET:-}]"), "[]");
        // The default runs to the first `:-` split and the first `}`; it is never expanded.
        assert_eq!(x("${UNSET:-a:-b}"), "a:-b");
        assert_eq!(x("${UNSET:-${A}}"), "${A}");
        assert_eq!(x("${UNSET:-x}y}"), "xy}");
    }

    #[test]
    fn double_braces_are_templates_not_references() {
        assert_eq!(x("${{after.total}}"), "${{after.total}}");
        assert_eq!(
            x("Order {{after.id}}: ${{after.total}} by ${A}"),
            "Order {{after.id}}: ${{after.total}} by a"
        );
        // Scanning goes on inside the template expression.
        assert_eq!(x("${{${A}}}"), "${{a}}");
    }

    #[test]
    fn malformed_references_are_kept_as_written() {
        assert_eq!(x("a: ${UNCLOSED"), "a: ${UNCLOSED");
        assert_eq!(x("${A} then ${UNCLOSED"), "a then ${UNCLOSED");
        for literal in ["${}", "${a.b}", "${A-x}", "${ A }", "${:-d}", "${A B:-c}"] {
            assert_eq!(x(literal), literal);
        }
        // A leading digit is a name.
        assert_eq!(x("${1X}"), "digit-first");
        assert!(unset("${2X}").contains("`2X`"));
        // `$` alone is text.
        assert_eq!(x("$PORT $ {A} $"), "$PORT $ {A} $");
    }

    #[test]
    fn there_are_no_escapes_and_values_are_not_expanded_again() {
        assert_eq!(x("$${A}"), "$a");
        assert_eq!(x("\\${A}"), "\\a");
        assert_eq!(x("${NESTED}"), "${A}");
    }

    #[test]
    fn documents_resolve_values_only_and_name_the_field() {
        let text = "# ${COMMENTED} is never read\nport: ${PORT} # nor ${THIS}\nlogLevel: ${LEVEL:-debug}\n\
                    ${KEY}: kept\nquery: |\n  MATCH (n) # ${A}\n  RETURN n\n";
        let out = interpolate(text, &env).unwrap();
        let doc: Value = serde_yaml::from_str(&out).unwrap();
        assert_eq!(doc["port"], "9000");
        assert_eq!(doc["logLevel"], "debug");
        assert_eq!(doc["${KEY}"], "kept");
        assert_eq!(doc["query"], "MATCH (n) # a\nRETURN n\n");

        let err = interpolate("a: 1\nb: [x, '${MISSING_VAR}']\n", &env).unwrap_err();
        assert_eq!(err.path, "b[1]");
        assert!(err.message.contains("`MISSING_VAR`"), "{err}");

        // Nothing to resolve: the text as written, comments and all.
        for text in [
            "# ${NOPE}\nport: 1\n",
            "t: ${{after.x}}\n",
            "a: 1 # ${NOPE}\n",
            "",
        ] {
            assert_eq!(interpolate(text, &env).unwrap(), text);
        }
        // A value never becomes structure.
        let out = interpolate("a: ${V}\n", &|_| Some("1\nb: 2".into())).unwrap();
        let doc: Value = serde_yaml::from_str(&out).unwrap();
        assert_eq!(doc, serde_json::json!({"a": "1\nb: 2"}));
    }
}
