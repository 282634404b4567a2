//! Where a drasi-server config's `${VAR}` references are resolved: the table of its
//! *settings fields*, the fields drasi-server types `ConfigValue<T>` (drasi-plugin-sdk
//! 0.11.3, `src/config_value.rs`), per site: the server, each `instances[]` entry, each
//! source, bootstrap provider and reaction kind DRaaS supports. Nowhere else is a reference
//! resolved, by drasi-server or DRaaS ([`super::interpolate`] holds the rule itself).
//!
//! A row is a path relative to its site: keys joined by `.`, `[]` for every item of a list,
//! `*` for every key of a map (`webhooks.routes[].path`, `metadata.*`). Each table names the
//! DTO it is read from (crate, version as in `runtime/Cargo.toml`, struct). A source's,
//! reaction's or bootstrap provider's own keys (`kind`, `id`, `queries`, `autoStart`,
//! `bootstrapProvider`, `identityProvider`) are plain strings in drasi-server
//! (`src/api/models/{source,reaction,bootstrap}.rs`), so none is a row; neither is a query
//! (`QueryConfigDto`, `src/api/models/queries/query.rs`, has no settings field).
//!
//! Plugin-defined settings DRaaS keeps verbatim are nobody's rows: `identityProviders`,
//! `secretStore`, and components of a kind DRaaS does not know (a `bootstrapProviders` entry
//! of another kind). Their plugin resolves its own settings when the workload starts;
//! DRaaS neither resolves nor warns about them.
//!
//! [`walk`] visits a document by this table: every settings field (whatever its value) and
//! every other string, with its path.

use serde_json::Value;

use super::ConfigError;
use super::error::join_path;

/// The type of a settings field's resolved value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// `ConfigValue<String>`.
    Text,
    /// `ConfigValue<u16 | u32 | u64 | usize>` (ports are [`super::Port`], the others
    /// [`super::Setting`]).
    Number,
    /// `ConfigValue<bool>`.
    Flag,
    /// `ConfigValue<SomeEnum>` (a postgres `sslMode`).
    Choice,
}

use ValueKind::{Choice, Flag, Number, Text};

/// One settings field: its path relative to its site, and its value's type.
pub type Field = (&'static str, ValueKind);

/// drasi-server 0.2.2, `src/config/types.rs` `DrasiServerConfig`, and `stateStore`
/// (`src/api/models/state_store.rs`, `StateStoreConfig::Redb`).
pub const SERVER: &[Field] = &[
    ("id", Text),
    ("host", Text),
    ("port", Number),
    ("logLevel", Text),
    ("defaultPriorityQueueCapacity", Number),
    ("defaultDispatchBufferCapacity", Number),
    ("stateStore.path", Text),
];

/// drasi-server 0.2.2, `src/config/types.rs` `DrasiLibInstanceConfig` (an `instances[]`
/// entry), and its `stateStore` (`StateStoreConfig::Redb`).
pub const INSTANCE: &[Field] = &[
    ("id", Text),
    ("defaultPriorityQueueCapacity", Number),
    ("defaultDispatchBufferCapacity", Number),
    ("stateStore.path", Text),
];

/// drasi-source-http 0.2.13, `HttpSourceConfigDto`; under `webhooks`: `WebhookConfigDto`,
/// `CorsConfigDto`, `WebhookRouteDto`, `AuthConfigDto` (`SignatureConfigDto`,
/// `BearerConfigDto`), `WebhookMappingDto`, `MappingConditionDto`, `EffectiveFromConfigDto`
/// (a settings field itself, or `{value, format}`) and `ElementTemplateDto` (its
/// `properties` are templates, not settings).
const HTTP_SOURCE: &[Field] = &[
    ("host", Text),
    ("port", Number),
    ("endpoint", Text),
    ("timeoutMs", Number),
    ("adaptiveMaxBatchSize", Number),
    ("adaptiveMinBatchSize", Number),
    ("adaptiveMaxWaitMs", Number),
    ("adaptiveMinWaitMs", Number),
    ("adaptiveWindowSecs", Number),
    ("adaptiveEnabled", Flag),
    ("webhooks.cors.allowOrigins[]", Text),
    ("webhooks.cors.allowMethods[]", Text),
    ("webhooks.cors.allowHeaders[]", Text),
    ("webhooks.cors.exposeHeaders[]", Text),
    ("webhooks.routes[].path", Text),
    ("webhooks.routes[].auth.signature.secretEnv", Text),
    ("webhooks.routes[].auth.signature.header", Text),
    ("webhooks.routes[].auth.signature.prefix", Text),
    ("webhooks.routes[].auth.bearer.tokenEnv", Text),
    ("webhooks.routes[].mappings[].operationFrom", Text),
    ("webhooks.routes[].mappings[].when.header", Text),
    ("webhooks.routes[].mappings[].when.field", Text),
    ("webhooks.routes[].mappings[].when.equals", Text),
    ("webhooks.routes[].mappings[].when.contains", Text),
    ("webhooks.routes[].mappings[].when.regex", Text),
    ("webhooks.routes[].mappings[].effectiveFrom", Text),
    ("webhooks.routes[].mappings[].effectiveFrom.value", Text),
    ("webhooks.routes[].mappings[].template.id", Text),
    ("webhooks.routes[].mappings[].template.labels[]", Text),
    ("webhooks.routes[].mappings[].template.from", Text),
    ("webhooks.routes[].mappings[].template.to", Text),
];

/// drasi-source-grpc 0.2.12, `GrpcSourceConfigDto`.
const GRPC_SOURCE: &[Field] = &[
    ("host", Text),
    ("port", Number),
    ("endpoint", Text),
    ("timeoutMs", Number),
];

/// drasi-source-mock 0.2.12, `MockSourceConfigDto` (`dataType` is a plain enum).
const MOCK_SOURCE: &[Field] = &[("intervalMs", Number)];

/// drasi-source-postgres 0.2.12, `PostgresSourceConfigDto` (`tables`, `slotName`,
/// `publicationName` and `tableKeys` are plain).
const POSTGRES_SOURCE: &[Field] = &[
    ("host", Text),
    ("port", Number),
    ("database", Text),
    ("user", Text),
    ("password", Text),
    ("sslMode", Choice),
];

/// drasi-bootstrap-postgres 0.2.15, `PostgresBootstrapConfigDto`: the source's settings.
const POSTGRES_BOOTSTRAP: &[Field] = POSTGRES_SOURCE;

/// drasi-reaction-http 0.3.5, `HttpReactionConfigDto` and `AdaptiveBatchConfigDto`
/// (`outputTemplates`' urls, methods, headers and bodies are plain templates).
const HTTP_REACTION: &[Field] = &[
    ("baseUrl", Text),
    ("token", Text),
    ("timeoutMs", Number),
    ("priorityQueueCapacity", Number),
    ("batchEndpoint", Text),
    ("adaptive.adaptiveMinBatchSize", Number),
    ("adaptive.adaptiveMaxBatchSize", Number),
    ("adaptive.adaptiveWindowSize", Number),
    ("adaptive.adaptiveBatchTimeoutMs", Number),
];

/// drasi-reaction-http-adaptive 0.3.5, `HttpAdaptiveReactionConfigDto` (the crate ended at
/// drasi-lib 0.8, so read from drasi-core at its removal, commit 96bd8442^:
/// `components/reactions/http-adaptive/src/descriptor.rs`; `routes` are plain).
const HTTP_ADAPTIVE_REACTION: &[Field] = &[
    ("baseUrl", Text),
    ("token", Text),
    ("timeoutMs", Number),
    ("adaptiveMinBatchSize", Number),
    ("adaptiveMaxBatchSize", Number),
    ("adaptiveWindowSize", Number),
    ("adaptiveBatchTimeoutMs", Number),
];

/// drasi-reaction-grpc 0.4.5, `GrpcReactionConfigDto` (`metadata` values are settings;
/// `outputTemplates` are plain) and `BatchingConfigDto` (`fixed` or `adaptive`).
const GRPC_REACTION: &[Field] = &[
    ("endpoint", Text),
    ("timeoutMs", Number),
    ("maxRetries", Number),
    ("connectionRetryAttempts", Number),
    ("initialConnectionTimeoutMs", Number),
    ("metadata.*", Text),
    ("batching.batchSize", Number),
    ("batching.batchFlushTimeoutMs", Number),
    ("batching.adaptiveMinBatchSize", Number),
    ("batching.adaptiveMaxBatchSize", Number),
    ("batching.adaptiveWindowSize", Number),
    ("batching.adaptiveBatchTimeoutMs", Number),
];

/// drasi-reaction-grpc-adaptive 0.2.5, `GrpcAdaptiveReactionConfigDto` (read from drasi-core
/// at its removal, commit 33d98338^: `components/reactions/grpc-adaptive/src/descriptor.rs`;
/// unlike the grpc reaction's, its `metadata` values are plain strings).
const GRPC_ADAPTIVE_REACTION: &[Field] = &[
    ("endpoint", Text),
    ("timeoutMs", Number),
    ("maxRetries", Number),
    ("connectionRetryAttempts", Number),
    ("initialConnectionTimeoutMs", Number),
    ("adaptiveMinBatchSize", Number),
    ("adaptiveMaxBatchSize", Number),
    ("adaptiveWindowSize", Number),
    ("adaptiveBatchTimeoutMs", Number),
];

/// drasi-reaction-sse 0.3.8, `SseReactionConfigDto` (templates and their `path` are plain).
const SSE_REACTION: &[Field] = &[
    ("host", Text),
    ("port", Number),
    ("ssePath", Text),
    ("heartbeatIntervalMs", Number),
];

/// drasi-reaction-profiler 0.3.8, `ProfilerReactionConfigDto`.
const PROFILER_REACTION: &[Field] = &[("windowSize", Number), ("reportIntervalSecs", Number)];

/// drasi-reaction-storedproc-postgres, -mysql and -mssql 0.3.8,
/// `PostgresStoredProcReactionConfigDto`, `MySqlStoredProcReactionConfigDto`,
/// `MsSqlStoredProcReactionConfigDto` (the same fields; templates are plain).
const STOREDPROC_REACTION: &[Field] = &[
    ("hostname", Text),
    ("port", Number),
    ("user", Text),
    ("password", Text),
    ("database", Text),
    ("ssl", Flag),
    ("commandTimeoutMs", Number),
    ("retryAttempts", Number),
];

/// drasi-reaction-log 0.2.9, `LogReactionConfigDto`: templates only, no settings field.
const LOG_REACTION: &[Field] = &[];

/// Source kinds and their settings fields.
pub const SOURCES: &[(&str, &[Field])] = &[
    ("http", HTTP_SOURCE),
    ("grpc", GRPC_SOURCE),
    ("mock", MOCK_SOURCE),
    ("postgres", POSTGRES_SOURCE),
];

/// Bootstrap provider kinds (inline on a source, or `bootstrapProviders[]`) and their
/// settings fields.
pub const BOOTSTRAP_PROVIDERS: &[(&str, &[Field])] = &[("postgres", POSTGRES_BOOTSTRAP)];

/// Reaction kinds and their settings fields.
pub const REACTIONS: &[(&str, &[Field])] = &[
    ("log", LOG_REACTION),
    ("http", HTTP_REACTION),
    ("http-adaptive", HTTP_ADAPTIVE_REACTION),
    ("sse", SSE_REACTION),
    ("profiler", PROFILER_REACTION),
    ("grpc", GRPC_REACTION),
    ("grpc-adaptive", GRPC_ADAPTIVE_REACTION),
    ("storedproc-postgres", STOREDPROC_REACTION),
    ("storedproc-mysql", STOREDPROC_REACTION),
    ("storedproc-mssql", STOREDPROC_REACTION),
];

/// How [`walk`] sees a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A settings field: a whole-value reference here is resolved. Any value is visited
    /// (a string, a structured `{kind: EnvironmentVariable, …}` object, a number…).
    Setting(ValueKind),
    /// A string of any other field: never resolved.
    Plain,
    /// A query's text (Cypher or GQL, where `'${x}'` and `$param` are ordinary): never
    /// resolved, never warned about.
    Query,
}

/// What [`walk`] calls: the value's path (`sources[0].webhooks.routes[1].path`), the value
/// and how it is seen.
pub type Visit<'a> = dyn FnMut(&str, &mut Value, Role) -> Result<(), ConfigError> + 'a;

/// Visits `doc`, a whole config, by the table: every settings field (any value; not entered,
/// except an object without a string `kind`, which is no reference and is entered like any
/// other), and every other string with [`Role::Plain`] or [`Role::Query`]. Mapping keys are
/// never visited; plugin-defined settings (see the module documentation) are not entered.
pub fn walk(doc: &mut Value, visit: &mut Visit) -> Result<(), ConfigError> {
    walk_instance(doc, "", SERVER, visit)
}

/// The top level (`settings`: [`SERVER`]) or an `instances[]` entry ([`INSTANCE`]).
fn walk_instance(
    value: &mut Value,
    at: &str,
    settings: &[Field],
    visit: &mut Visit,
) -> Result<(), ConfigError> {
    let Value::Object(map) = value else {
        return walk_fields(value, at, &mut Vec::new(), &[], visit);
    };
    for (key, item) in map.iter_mut() {
        let path = join_path(at, key);
        match key.as_str() {
            "sources" => each(item, &path, visit, &mut |v, p, visit| {
                walk_component(v, p, SOURCES, true, visit)
            })?,
            "reactions" => each(item, &path, visit, &mut |v, p, visit| {
                walk_component(v, p, REACTIONS, false, visit)
            })?,
            "bootstrapProviders" => each(item, &path, visit, &mut |v, p, visit| {
                walk_component(v, p, BOOTSTRAP_PROVIDERS, false, visit)
            })?,
            "queries" => each(item, &path, visit, &mut walk_query)?,
            "instances" if at.is_empty() => each(item, &path, visit, &mut |v, p, visit| {
                walk_instance(v, p, INSTANCE, visit)
            })?,
            "identityProviders" | "secretStore" => {}
            _ => walk_fields(
                item,
                &path,
                &mut vec![Seg::Key(key.clone())],
                settings,
                visit,
            )?,
        }
    }
    Ok(())
}

type Each<'e> = dyn FnMut(&mut Value, &str, &mut Visit) -> Result<(), ConfigError> + 'e;

/// Each item of a list (anything else is visited as plain values).
fn each(
    value: &mut Value,
    at: &str,
    visit: &mut Visit,
    item: &mut Each,
) -> Result<(), ConfigError> {
    let Value::Array(items) = value else {
        return walk_fields(value, at, &mut Vec::new(), &[], visit);
    };
    for (i, v) in items.iter_mut().enumerate() {
        item(v, &format!("{at}[{i}]"), visit)?;
    }
    Ok(())
}

/// A query: its `query` text is [`Role::Query`], the rest plain.
fn walk_query(value: &mut Value, at: &str, visit: &mut Visit) -> Result<(), ConfigError> {
    let Value::Object(map) = value else {
        return walk_fields(value, at, &mut Vec::new(), &[], visit);
    };
    for (key, item) in map.iter_mut() {
        let path = join_path(at, key);
        if key == "query" && item.is_string() {
            visit(&path, item, Role::Query)?;
        } else {
            walk_fields(item, &path, &mut Vec::new(), &[], visit)?;
        }
    }
    Ok(())
}

/// A source, reaction or bootstrap provider, by its `kind`'s row of `tables`; an inline
/// `bootstrapProvider` of a source by its own kind. A kind not in the table is the plugin's
/// and is not entered.
fn walk_component(
    value: &mut Value,
    at: &str,
    tables: &[(&str, &'static [Field])],
    source: bool,
    visit: &mut Visit,
) -> Result<(), ConfigError> {
    let Value::Object(map) = value else {
        return walk_fields(value, at, &mut Vec::new(), &[], visit);
    };
    let kind = map.get("kind").and_then(Value::as_str);
    let Some(fields) = kind.and_then(|k| settings_of(tables, k)) else {
        return Ok(());
    };
    for (key, item) in map.iter_mut() {
        let path = join_path(at, key);
        if source && key == "bootstrapProvider" && item.is_object() {
            walk_component(item, &path, BOOTSTRAP_PROVIDERS, false, visit)?;
        } else {
            walk_fields(item, &path, &mut vec![Seg::Key(key.clone())], fields, visit)?;
        }
    }
    Ok(())
}

/// The settings fields of `kind` in `tables`.
pub fn settings_of(tables: &[(&str, &'static [Field])], kind: &str) -> Option<&'static [Field]> {
    tables.iter().find(|(k, _)| *k == kind).map(|(_, f)| *f)
}

/// One step of a path within a site.
#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index,
}

/// Whether `rel` is the row `pattern` (`webhooks.routes[].path`, `metadata.*`).
fn matches(pattern: &str, rel: &[Seg]) -> bool {
    let mut steps = rel.iter();
    for part in pattern.split('.') {
        let (key, lists) = part.split_at(part.find("[]").unwrap_or(part.len()));
        let key_ok = match steps.next() {
            Some(Seg::Key(k)) => key == "*" || k == key,
            _ => false,
        };
        if !key_ok {
            return false;
        }
        for _ in 0..lists.len() / 2 {
            if !matches!(steps.next(), Some(Seg::Index)) {
                return false;
            }
        }
    }
    steps.next().is_none()
}

/// A value at `rel` within a site whose settings fields are `fields`.
fn walk_fields(
    value: &mut Value,
    at: &str,
    rel: &mut Vec<Seg>,
    fields: &[Field],
    visit: &mut Visit,
) -> Result<(), ConfigError> {
    if let Some((_, kind)) = fields.iter().find(|(p, _)| matches(p, rel)) {
        let entered =
            matches!(value, Value::Object(map) if !map.get("kind").is_some_and(Value::is_string));
        if !entered {
            return visit(at, value, Role::Setting(*kind));
        }
    }
    match value {
        Value::String(_) => visit(at, value, Role::Plain),
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                rel.push(Seg::Index);
                let r = walk_fields(item, &format!("{at}[{i}]"), rel, fields, visit);
                rel.pop();
                r?;
            }
            Ok(())
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                rel.push(Seg::Key(key.clone()));
                let r = walk_fields(item, &join_path(at, key), rel, fields, visit);
                rel.pop();
                r?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The paths of every settings field `doc` sets, in document order, with their types.
pub fn settings(doc: &Value) -> Vec<(String, ValueKind)> {
    let mut doc = doc.clone();
    let mut out = Vec::new();
    let _ = walk(&mut doc, &mut |path, _, role| {
        if let Role::Setting(kind) = role {
            out.push((path.to_owned(), kind));
        }
        Ok(())
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The settings paths of `doc`, sorted (map order is serde_json's).
    fn paths(doc: Value) -> Vec<String> {
        let mut out: Vec<String> = settings(&doc).into_iter().map(|(p, _)| p).collect();
        out.sort();
        out
    }

    fn sorted<const N: usize>(paths: [&str; N]) -> Vec<String> {
        let mut out: Vec<String> = paths.iter().map(|p| (*p).to_owned()).collect();
        out.sort();
        out
    }

    #[test]
    fn rows_match_keys_lists_and_maps() {
        let rel = |parts: &[&str]| -> Vec<Seg> {
            parts
                .iter()
                .map(|p| match *p {
                    "[]" => Seg::Index,
                    k => Seg::Key(k.to_owned()),
                })
                .collect()
        };
        assert!(matches("host", &rel(&["host"])));
        assert!(!matches("host", &rel(&["hosts"])));
        assert!(!matches("host", &rel(&["host", "x"])));
        assert!(matches(
            "webhooks.routes[].path",
            &rel(&["webhooks", "routes", "[]", "path"])
        ));
        assert!(!matches(
            "webhooks.routes[].path",
            &rel(&["webhooks", "routes", "path"])
        ));
        assert!(matches("metadata.*", &rel(&["metadata", "x-key"])));
        assert!(!matches("metadata.*", &rel(&["metadata"])));
        assert!(matches("a.b[]", &rel(&["a", "b", "[]"])));
    }

    #[test]
    fn every_site_is_read_by_its_kind() {
        let doc = json!({
            "id": "s", "port": 1, "persistIndex": true, "stateStore": {"kind": "redb", "path": "p"},
            "identityProviders": [{"kind": "azure", "clientId": "x"}],
            "bootstrapProviders": [{"id": "b", "kind": "postgres", "host": "h", "tables": ["t"]},
                                   {"id": "c", "kind": "scriptfile", "filePaths": ["f"]}],
            "sources": [
                {"kind": "http", "id": "h", "timeoutMs": 1,
                 "webhooks": {"cors": {"allowOrigins": ["a", "b"]},
                              "routes": [{"path": "/x", "mappings": [
                                  {"elementType": "node", "effectiveFrom": {"value": "v", "format": "iso8601"},
                                   "template": {"id": "i", "labels": ["L"], "properties": {"p": "x"}}}]}]}},
                {"kind": "postgres", "id": "pg", "user": "u", "tables": ["t"],
                 "bootstrapProvider": {"kind": "postgres", "password": "p"}},
                {"kind": "kafka", "id": "k", "brokers": "b"}],
            "queries": [{"id": "q", "query": "MATCH (n) RETURN n"}],
            "reactions": [
                {"kind": "grpc", "id": "g", "endpoint": "e", "metadata": {"a": "1"},
                 "batching": {"mode": "fixed", "batchSize": 5}},
                {"kind": "grpc-adaptive", "id": "ga", "endpoint": "e", "metadata": {"a": "1"}},
                {"kind": "log", "id": "l"}],
            "instances": [{"id": "i", "defaultPriorityQueueCapacity": 3,
                           "sources": [{"kind": "mock", "id": "m", "intervalMs": 5}]}]
        });
        assert_eq!(
            paths(doc),
            sorted([
                "id",
                "port",
                "stateStore.path",
                "bootstrapProviders[0].host",
                "sources[0].timeoutMs",
                "sources[0].webhooks.cors.allowOrigins[0]",
                "sources[0].webhooks.cors.allowOrigins[1]",
                "sources[0].webhooks.routes[0].path",
                "sources[0].webhooks.routes[0].mappings[0].effectiveFrom.value",
                "sources[0].webhooks.routes[0].mappings[0].template.id",
                "sources[0].webhooks.routes[0].mappings[0].template.labels[0]",
                "sources[1].user",
                "sources[1].bootstrapProvider.password",
                "reactions[0].endpoint",
                "reactions[0].metadata.a",
                "reactions[0].batching.batchSize",
                "reactions[1].endpoint",
                "instances[0].id",
                "instances[0].defaultPriorityQueueCapacity",
                "instances[0].sources[0].intervalMs",
            ])
        );
    }

    #[test]
    fn plain_strings_and_query_text_are_visited_too() {
        let mut doc = json!({
            "sources": [{"kind": "mock", "id": "m"}],
            "queries": [{"id": "q", "query": "MATCH (n) RETURN n", "sources": [{"sourceId": "m"}]}],
            "reactions": [{"kind": "log", "id": "l", "queries": ["q"],
                           "defaultTemplate": {"added": {"template": "t"}}}],
            "secretStore": {"kind": "file", "path": "s"}
        });
        let mut seen = Vec::new();
        walk(&mut doc, &mut |path, _, role| {
            seen.push((path.to_owned(), role));
            Ok(())
        })
        .unwrap();
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        let expected = [
            ("queries[0].id", Role::Plain),
            ("queries[0].query", Role::Query),
            ("queries[0].sources[0].sourceId", Role::Plain),
            ("reactions[0].defaultTemplate.added.template", Role::Plain),
            ("reactions[0].id", Role::Plain),
            ("reactions[0].kind", Role::Plain),
            ("reactions[0].queries[0]", Role::Plain),
            ("sources[0].id", Role::Plain),
            ("sources[0].kind", Role::Plain),
        ]
        .map(|(p, r)| (p.to_owned(), r));
        assert_eq!(seen, expected, "secretStore is the plugin's");
    }

    #[test]
    fn a_structured_reference_is_a_setting_and_other_objects_are_entered() {
        let doc = json!({"sources": [{"kind": "http", "id": "h",
            "host": {"kind": "EnvironmentVariable", "name": "H"},
            "webhooks": {"routes": [{"path": "/p", "mappings": [
                {"effectiveFrom": {"kind": "EnvironmentVariable", "name": "E"}},
                {"effectiveFrom": "${F}"}]}]}}]});
        assert_eq!(
            paths(doc),
            sorted([
                "sources[0].host",
                "sources[0].webhooks.routes[0].path",
                "sources[0].webhooks.routes[0].mappings[0].effectiveFrom",
                "sources[0].webhooks.routes[0].mappings[1].effectiveFrom",
            ])
        );
    }
}
