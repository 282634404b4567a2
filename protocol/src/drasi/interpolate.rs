//! `${VAR}` references, exactly by drasi-server's rules, with the variable lookup supplied by
//! the caller (this crate never reads the process environment). The runtime, the API and the
//! worker all resolve through this module, so they agree with each other and with
//! drasi-server.
//!
//! drasi-server resolves a reference only in a *settings field*, one its DTOs type
//! `ConfigValue<T>` (drasi-plugin-sdk 0.11.3: `ConfigValue`'s `Deserialize` and
//! `parse_posix_env_var` in `src/config_value.rs`, resolution in `src/mapper.rs`; which
//! fields those are is [`super::references`]' table), and only in its whole value:
//!
//! - A string value that starts with `${` and ends with `}` is a reference ([`reference`]):
//!   the text between them, split at the first `:-` into the variable's name and a default.
//!   The name is not checked (any text is a name). A set variable gives its value, even an
//!   empty one; an unset one gives the default, and without one is an error naming the field
//!   and the variable.
//! - DRaaS's one deviation: `${{…}}` (a Handlebars expression) is never a reference, even as
//!   a whole value; it is kept as written.
//! - The structured form `{kind: EnvironmentVariable, name: N, default: D}` (`default`
//!   optional; only a string counts) is the same reference. `{kind: Secret, name: N}` names a
//!   secret store's secret: DRaaS has none, so it is refused, naming the field; any other
//!   `kind` is refused as drasi-server does ("Unknown kind"). [`normalise`] rewrites a
//!   structured reference as its string form (`${N}`, `${N:-D}`) before a config is parsed,
//!   so the stored config, the API's checks, the worker's render and the runtime read one
//!   form.
//! - A reference inside a longer string (`"http://${HOST}:80"`) is not resolved: the string
//!   is kept as written. Nor is any string of another field (a query's text, a template, an
//!   id, a kind) or a mapping key; a comment is never read, and a value never becomes
//!   structure. The config's `warnings` name a `${NAME}` kept as written
//!   ([`super::warnings`]), except in a query's text.
//! - A value or default is used as it is, never resolved again: one that is itself a
//!   `${…}` reference is refused (the workload's plugins would read it as one).
//!
//! [`resolve_value`] applies the rule to a document and names the field of an unresolved
//! reference; [`interpolate`] does the same for a YAML document's text. [`unaccepted_value`]
//! says a resolved value a typed field refuses (a port that is no number) in terms of the
//! reference, never the value.

use serde_json::Value;

use super::ConfigError;
use super::references::{Role, walk};

/// The variable's name and default of `text` when it is one whole reference by
/// drasi-server's rule (`${NAME}` or `${NAME:-default}`, split at the first `:-`); `None` for
/// anything else, `${{…}}` included.
pub fn reference(text: &str) -> Option<(&str, Option<&str>)> {
    let inner = text.strip_prefix("${")?.strip_suffix('}')?;
    if inner.starts_with('{') {
        return None;
    }
    Some(match inner.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (inner, None),
    })
}

/// Whether `text` would be read as a reference by drasi-server's plugins (their rule without
/// DRaaS's `${{…}}` deviation).
fn reads_as_reference(text: &str) -> bool {
    text.starts_with("${") && text.ends_with('}') && text.len() >= 3
}

/// Resolves one settings value: a whole-value reference becomes its variable's value or its
/// default; any other text is kept as written. An unresolved reference is an error (with an
/// empty path) naming the variable.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    match reference(text) {
        None => Ok(text.to_owned()),
        Some((name, default)) => variable(name, default, lookup),
    }
}

fn variable(
    name: &str,
    default: Option<&str>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    match (lookup(name), default) {
        (Some(value), _) => Ok(value),
        (None, Some(default)) => Ok(default.to_owned()),
        (None, None) => Err(ConfigError::new(
            "",
            format!(
                "environment variable `{name}` is not set (use `${{{name}:-default}}` to give \
                 a default)"
            ),
        )),
    }
}

/// A structured reference (`{kind: EnvironmentVariable, …}`) as its name and default, or why
/// it is refused. `None` when `value` is no object with a string `kind`.
fn structured(value: &Value) -> Option<Result<(String, Option<String>), String>> {
    let map = value.as_object()?;
    let kind = map.get("kind")?.as_str()?;
    Some(match kind {
        "EnvironmentVariable" => match map.get("name").and_then(Value::as_str) {
            Some(name) => Ok((
                name.to_owned(),
                map.get("default")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            )),
            None => Err(
                "an `EnvironmentVariable` reference needs `name`, the variable's name as a string"
                    .to_owned(),
            ),
        },
        "Secret" => Err(
            "secret references (`kind: Secret`) are not supported: DRaaS has no secret store. \
             Use `{kind: EnvironmentVariable, name: NAME}` (or `${NAME}`) and give the value in \
             the instance's `env`, as a secret value"
                .to_owned(),
        ),
        other => Err(format!(
            "Unknown kind: {other}; a reference is `{{kind: EnvironmentVariable, name: NAME}}`"
        )),
    })
}

/// Rewrites every structured reference of a document's settings fields as its string form
/// (`{kind: EnvironmentVariable, name: N}` → `"${N}"`, with `default: D` → `"${N:-D}"`),
/// which drasi-server reads alike; a `Secret` or unknown `kind` is an error naming the field.
/// Returns whether anything changed.
pub fn normalise(doc: &mut Value) -> Result<bool, ConfigError> {
    let mut changed = false;
    walk(doc, &mut |path, value, role| {
        let Role::Setting(_) = role else {
            return Ok(());
        };
        let Some(found) = structured(value) else {
            return Ok(());
        };
        let (name, default) = found.map_err(|why| ConfigError::new(path, why))?;
        // The string form splits at the first `:-`, and `${{` is never a reference.
        if name.contains(":-") || name.starts_with('{') {
            return Err(ConfigError::new(
                path,
                format!(
                    "variable name `{name}` cannot be written as a `${{…}}` reference (it holds \
                     `:-` or starts with `{{`)"
                ),
            ));
        }
        *value = Value::String(match default {
            Some(default) => format!("${{{name}:-{default}}}"),
            None => format!("${{{name}}}"),
        });
        changed = true;
        Ok(())
    })?;
    Ok(changed)
}

/// Resolves the references of a whole document's settings fields ([`super::references`]),
/// string or structured; nothing else is touched. An unresolved reference, a refused
/// structured one, or a value that is itself a reference is an error naming the field
/// (`sources[0].password`). Returns whether anything changed.
pub fn resolve_value(
    doc: &mut Value,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<bool, ConfigError> {
    let mut changed = false;
    walk(doc, &mut |path, value, role| {
        let Role::Setting(_) = role else {
            return Ok(());
        };
        let (name, default) = match (structured(value), value.as_str().and_then(reference)) {
            (Some(found), _) => found.map_err(|why| ConfigError::new(path, why))?,
            (None, Some((name, default))) => (name.to_owned(), default.map(str::to_owned)),
            (None, None) => return Ok(()),
        };
        let resolved = variable(&name, default.as_deref(), lookup)
            .map_err(|e| ConfigError::new(path, e.message))?;
        if reads_as_reference(&resolved) {
            // The value is not repeated: it may be a secret.
            return Err(ConfigError::new(
                path,
                format!(
                    "`{name}` resolves to a `${{…}}` reference; a variable's value is used as \
                     it is, never resolved again"
                ),
            ));
        }
        *value = Value::String(resolved);
        changed = true;
        Ok(())
    })?;
    Ok(changed)
}

/// The error of a resolved config's typed parse: when the field it names held a reference
/// as written, it is said in terms of the reference, the resolved value left out.
pub(crate) fn unaccepted_value(e: ConfigError, written: &Value, resolved: &Value) -> ConfigError {
    let (Some(Value::String(before)), Some(Value::String(after))) =
        (value_at(written, &e.path), value_at(resolved, &e.path))
    else {
        return e;
    };
    if reference(before).is_none() {
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

/// Resolves the references of a YAML document ([`resolve_value`]). The text comes back
/// unchanged when nothing was resolved (comments and all); otherwise the resolved document is
/// rendered again as YAML. A document that does not parse as plain YAML data is returned as
/// it is when it holds no `${`, for the typed parse to judge.
pub fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut doc = match yaml_to_json(text) {
        Ok(doc) => doc,
        Err(e) if text.contains("${") => return Err(e),
        Err(_) => return Ok(text.to_owned()),
    };
    if !resolve_value(&mut doc, lookup)? {
        return Ok(text.to_owned());
    }
    serde_yaml::to_string(&doc)
        .map_err(|e| ConfigError::new("", format!("cannot render the resolved config: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("9000".into()),
            "EMPTY" => Some(String::new()),
            "A" => Some("a".into()),
            "B" => Some("b".into()),
            "a.b" => Some("dotted".into()),
            "NESTED" => Some("${A}".into()),
            "TEMPLATE" => Some("${{x}}".into()),
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
    fn only_a_whole_value_is_a_reference() {
        assert_eq!(x("${PORT}"), "9000");
        assert_eq!(reference("${PORT}"), Some(("PORT", None)));
        // Inside a longer string: kept as written.
        for literal in [
            "http://${A}:${PORT}/x",
            "x${A}",
            "${A}x",
            " ${A}",
            "${A} ",
            "$${A}",
            "\\${A}",
            "${UNCLOSED",
            "$A",
            "",
        ] {
            assert_eq!(x(literal), literal);
            assert_eq!(reference(literal), None, "{literal}");
        }
        let message = unset("${MISSING_VAR}");
        assert!(message.contains("`MISSING_VAR`"), "{message}");
        assert!(message.contains("${MISSING_VAR:-default}"), "{message}");
    }

    #[test]
    fn the_default_splits_at_the_first_marker_and_applies_only_when_unset() {
        assert_eq!(x("${HOST:-127.0.0.1}"), "127.0.0.1");
        assert_eq!(x("${PORT:-1}"), "9000");
        // Set but empty: the empty value, not the default.
        assert_eq!(x("${EMPTY:-info}"), "");
        assert_eq!(x("${EMPTY}"), "");
        assert_eq!(x("${UNSET:-}"), "");
        // The first `:-` splits; the default is the rest, never resolved.
        assert_eq!(reference("${A:-b:-c}"), Some(("A", Some("b:-c"))));
        assert_eq!(x("${UNSET:-a:-b}"), "a:-b");
        assert_eq!(x("${UNSET:-${A}}"), "${A}");
        assert_eq!(x("${UNSET:-x}y}"), "x}y");
    }

    #[test]
    fn any_name_is_a_name_and_double_braces_are_templates() {
        // drasi-server does not check names: whatever is between `${` and `}` (or `:-`).
        assert_eq!(x("${a.b}"), "dotted");
        assert_eq!(reference("${A}${B}"), Some(("A}${B", None)));
        assert!(unset("${A}${B}").contains("`A}${B`"));
        assert_eq!(reference("${}"), Some(("", None)));
        assert_eq!(reference("${ A }"), Some((" A ", None)));
        // `${{…}}`: never a reference, even as the whole value.
        for literal in ["${{after.total}}", "${{x}", "${{}}"] {
            assert_eq!(reference(literal), None, "{literal}");
            assert_eq!(x(literal), literal);
        }
    }

    fn resolved(doc: Value) -> Result<Value, ConfigError> {
        let mut doc = doc;
        resolve_value(&mut doc, &env)?;
        Ok(doc)
    }

    #[test]
    fn documents_resolve_settings_fields_only_and_name_the_field() {
        let doc = resolved(json!({
            "port": "${PORT}",
            "logLevel": "${LEVEL:-debug}",
            "sources": [{"kind": "http", "id": "${A}", "host": "${EMPTY:-x}",
                         "endpoint": "/in/${A}"}],
            "queries": [{"id": "q", "query": "MATCH (n) RETURN '${A}' AS a"}],
            "reactions": [{"kind": "http", "id": "r", "queries": ["q"], "baseUrl": "${{x}}",
                           "token": "Bearer ${A}",
                           "outputTemplates": {"defaultTemplate": {"added": {"url": "${A}"}}}}]
        }))
        .unwrap();
        assert_eq!(doc["port"], "9000");
        assert_eq!(doc["logLevel"], "debug");
        let source = &doc["sources"][0];
        assert_eq!(
            (&source["id"], &source["host"], &source["endpoint"]),
            (&json!("${A}"), &json!(""), &json!("/in/${A}"))
        );
        assert_eq!(doc["queries"][0]["query"], "MATCH (n) RETURN '${A}' AS a");
        let reaction = &doc["reactions"][0];
        assert_eq!(reaction["baseUrl"], "${{x}}");
        assert_eq!(reaction["token"], "Bearer ${A}");
        assert_eq!(
            reaction["outputTemplates"]["defaultTemplate"]["added"]["url"],
            "${A}"
        );

        let err = resolved(
            json!({"reactions": [{"kind": "http", "id": "r", "queries": [],
                                                 "token": "${MISSING_VAR}"}]}),
        )
        .unwrap_err();
        assert_eq!(err.path, "reactions[0].token");
        assert!(err.message.contains("`MISSING_VAR`"), "{err}");
    }

    #[test]
    fn nested_settings_and_instances_resolve() {
        let doc = resolved(json!({
            "instances": [{"id": "${A}", "defaultDispatchBufferCapacity": "${PORT}",
                "sources": [{"kind": "http", "id": "h", "webhooks": {
                    "cors": {"allowOrigins": ["${A}", "https://${B}"]},
                    "routes": [{"path": "${B}", "mappings": [
                        {"template": {"id": "${A}", "properties": {"p": "${A}"}}}]}]}}],
                "reactions": [{"kind": "grpc", "id": "g", "queries": [], "endpoint": "${A}",
                    "metadata": {"x": "${B}"}, "batching": {"mode": "fixed", "batchSize": "${PORT}"}}]}]
        }))
        .unwrap();
        let inst = &doc["instances"][0];
        assert_eq!(inst["id"], "a");
        assert_eq!(inst["defaultDispatchBufferCapacity"], "9000");
        let hooks = &inst["sources"][0]["webhooks"];
        assert_eq!(hooks["cors"]["allowOrigins"], json!(["a", "https://${B}"]));
        assert_eq!(hooks["routes"][0]["path"], "b");
        let template = &hooks["routes"][0]["mappings"][0]["template"];
        assert_eq!(
            (&template["id"], &template["properties"]["p"]),
            (&json!("a"), &json!("${A}"))
        );
        let grpc = &inst["reactions"][0];
        assert_eq!(grpc["endpoint"], "a");
        assert_eq!(grpc["metadata"]["x"], "b");
        assert_eq!(grpc["batching"]["batchSize"], "9000");
    }

    #[test]
    fn structured_references_resolve_or_are_refused_naming_the_field() {
        let pg = |password: Value| {
            json!({"sources": [{"kind": "postgres", "id": "pg", "database": "d", "user": "u",
                                "password": password}]})
        };
        let doc = resolved(pg(json!({"kind": "EnvironmentVariable", "name": "A"}))).unwrap();
        assert_eq!(doc["sources"][0]["password"], "a");
        let with_default = json!({"kind": "EnvironmentVariable", "name": "UNSET", "default": "d"});
        let doc = resolved(pg(with_default.clone())).unwrap();
        assert_eq!(doc["sources"][0]["password"], "d");
        // Only a string default counts (drasi-server's rule).
        let numeric = json!({"kind": "EnvironmentVariable", "name": "UNSET", "default": 5});
        let err = resolved(pg(numeric.clone())).unwrap_err();
        assert!(err.message.contains("`UNSET`"), "{err}");

        let err = resolved(pg(json!({"kind": "Secret", "name": "db"}))).unwrap_err();
        assert_eq!(err.path, "sources[0].password");
        assert!(err.message.contains("secret references"), "{err}");
        assert!(err.message.contains("`env`"), "{err}");
        let err = resolved(pg(json!({"kind": "Vault", "name": "db"}))).unwrap_err();
        assert_eq!(err.path, "sources[0].password");
        assert!(err.message.contains("Unknown kind: Vault"), "{err}");
        let err = resolved(pg(json!({"kind": "EnvironmentVariable"}))).unwrap_err();
        assert!(err.message.contains("`name`"), "{err}");

        // Normalised to the string form drasi-server reads alike.
        let mut doc = pg(with_default);
        assert!(normalise(&mut doc).unwrap());
        assert_eq!(doc["sources"][0]["password"], "${UNSET:-d}");
        let mut doc = pg(numeric);
        normalise(&mut doc).unwrap();
        assert_eq!(doc["sources"][0]["password"], "${UNSET}");
        let mut doc = pg(json!({"kind": "Secret", "name": "db"}));
        assert_eq!(normalise(&mut doc).unwrap_err().path, "sources[0].password");
        let mut doc = pg(json!({"kind": "EnvironmentVariable", "name": "A:-B"}));
        assert!(normalise(&mut doc).is_err());
        // Outside a settings field an object is not a reference: left to the typed parse.
        let mut doc = json!({"queries": [{"id": {"kind": "Secret", "name": "x"}}]});
        assert!(!normalise(&mut doc).unwrap());
    }

    #[test]
    fn values_are_never_resolved_again() {
        for name in ["NESTED", "TEMPLATE"] {
            let err = resolved(json!({"id": format!("${{{name}}}")})).unwrap_err();
            assert_eq!(err.path, "id");
            assert!(err.message.contains("never resolved again"), "{err}");
            assert!(
                !err.message.contains("${A}"),
                "the value is not said: {err}"
            );
        }
    }

    #[test]
    fn yaml_text_resolves_values_only() {
        let text = "# ${COMMENTED} is never read\nport: ${PORT} # nor ${THIS}\nlogLevel: ${LEVEL:-debug}\n\
                    ${KEY}: kept\nqueries:\n  - id: q\n    query: |\n      MATCH (n) # ${A}\n      RETURN n\n";
        let out = interpolate(text, &env).unwrap();
        let doc: Value = serde_yaml::from_str(&out).unwrap();
        assert_eq!(doc["port"], "9000");
        assert_eq!(doc["logLevel"], "debug");
        assert_eq!(doc["${KEY}"], "kept");
        assert_eq!(doc["queries"][0]["query"], "MATCH (n) # ${A}\nRETURN n\n");

        let err = interpolate("a: 1\nid: '${MISSING_VAR}'\n", &env).unwrap_err();
        assert_eq!(err.path, "id");

        // Nothing to resolve: the text as written, comments and all.
        for text in [
            "# ${NOPE}\nport: 1\n",
            "id: ${{after.x}}\n",
            "id: x-${NOPE}\n",
            "a: 1 # ${NOPE}\n",
            "",
        ] {
            assert_eq!(interpolate(text, &env).unwrap(), text);
        }
        // A value never becomes structure.
        let out = interpolate("id: ${V}\n", &|_| Some("1\nb: 2".into())).unwrap();
        let doc: Value = serde_yaml::from_str(&out).unwrap();
        assert_eq!(doc, json!({"id": "1\nb: 2"}));
        // A structured reference in a file resolves too.
        let out = interpolate("logLevel: {kind: EnvironmentVariable, name: A}\n", &env).unwrap();
        let doc: Value = serde_yaml::from_str(&out).unwrap();
        assert_eq!(doc["logLevel"], "a");
    }
}
