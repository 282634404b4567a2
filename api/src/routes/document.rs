//! The instance document of `PUT /api/v1/instances/{name}` (`apiVersion: draas.io/v1`,
//! `kind: DrasiInstance`, `metadata`, `spec`): its types, the rules beyond them (each refusal
//! naming the field as the document spells it), and `If-Match` on the instance's generation.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use draas_protocol::env::InstanceEnv;
use draas_protocol::{DesiredState, Instance, Platform, Resources, RestartPolicy};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};

/// The only `apiVersion` and `kind` a document may have.
const API_VERSION: &str = "draas.io/v1";
const KIND: &str = "DrasiInstance";

/// An instance document. Every part is optional to serde so that a missing one is refused
/// here, naming it, rather than as an anonymous "missing field".
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Document {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    spec: Option<DocumentSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Metadata {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct DocumentSpec {
    #[serde(default)]
    platform: Option<Platform>,
    #[serde(default)]
    desired_state: Option<DesiredState>,
    #[serde(default)]
    config: Option<Value>,
    /// Refused: a file is the client's to read.
    #[serde(default)]
    config_file: Option<Value>,
    #[serde(default)]
    restart_policy: RestartPolicy,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    resources: Option<Resources>,
    #[serde(default)]
    description: Option<String>,
    /// Absent: the instance keeps its environment (a document read back has none: secrets
    /// are never readable). Present: replaces it; a secret without a value keeps its own.
    #[serde(default)]
    env: Option<InstanceEnv>,
}

/// An `If-Match` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Condition {
    /// `*`: any existing instance.
    Exists,
    /// One of these generations.
    Generations(Vec<u64>),
}

/// A document's parts once checked: what the spec is built from.
pub(super) struct Checked {
    pub platform: Platform,
    pub desired_state: Option<DesiredState>,
    pub config: Option<Value>,
    pub labels: BTreeMap<String, String>,
    pub restart_policy: RestartPolicy,
    pub image: Option<String>,
    pub resources: Option<Resources>,
    pub description: Option<String>,
    pub env: Option<InstanceEnv>,
}

/// The rules of a document beyond its types, each refusal naming the field.
pub(super) fn checked(doc: Document, name: &str) -> ApiResult<Checked> {
    let field =
        |f: &str, message: String| ApiError::bad_request("invalid_field", message, Some(f.into()));
    match doc.api_version.as_deref() {
        Some(API_VERSION) => {}
        Some(other) => {
            return Err(field(
                "apiVersion",
                format!("apiVersion: `{other}` is not supported; use `{API_VERSION}`"),
            ));
        }
        None => {
            return Err(field(
                "apiVersion",
                format!("apiVersion is required: `{API_VERSION}`"),
            ));
        }
    }
    match doc.kind.as_deref() {
        Some(KIND) => {}
        Some(other) => {
            return Err(field(
                "kind",
                format!("kind: `{other}` is not supported; use `{KIND}`"),
            ));
        }
        None => return Err(field("kind", format!("kind is required: `{KIND}`"))),
    }
    let metadata = doc
        .metadata
        .ok_or_else(|| field("metadata.name", "metadata.name is required".into()))?;
    match metadata.name.as_deref() {
        Some(n) if n == name => {}
        Some(n) => {
            return Err(field(
                "metadata.name",
                format!("metadata.name `{n}` must be the name in the path, `{name}`"),
            ));
        }
        None => return Err(field("metadata.name", "metadata.name is required".into())),
    }
    let spec = doc
        .spec
        .ok_or_else(|| field("spec", "spec is required".into()))?;
    if spec.config_file.is_some() {
        return Err(field(
            "spec.configFile",
            "spec.configFile: a file is read by the client; send `config`".into(),
        ));
    }
    let platform = spec.platform.ok_or_else(|| {
        field(
            "spec.platform",
            "spec.platform is required: process, docker or kubernetes".into(),
        )
    })?;
    if spec.config.is_none() {
        return Err(field(
            "spec.config",
            "spec.config is required: the instance's drasi-server configuration".into(),
        ));
    }
    Ok(Checked {
        platform,
        desired_state: spec.desired_state,
        config: spec.config,
        labels: metadata.labels,
        restart_policy: spec.restart_policy,
        image: spec.image,
        resources: spec.resources,
        description: spec.description,
        env: spec.env,
    })
}

/// Checks `If-Match` against the instance as read: a missing instance or another
/// generation is a 412 that says the current one.
pub(super) fn precondition(
    condition: Option<&Condition>,
    current: Option<&Instance>,
    name: &str,
) -> ApiResult<()> {
    let Some(condition) = condition else {
        return Ok(());
    };
    let Some(inst) = current else {
        return Err(ApiError::PreconditionFailed {
            message: format!("If-Match: instance `{name}` does not exist"),
            details: json!({ "field": "If-Match", "generation": null }),
        });
    };
    match condition {
        Condition::Exists => Ok(()),
        Condition::Generations(wanted) if wanted.contains(&inst.generation) => Ok(()),
        Condition::Generations(_) => Err(ApiError::PreconditionFailed {
            message: format!(
                "If-Match: instance `{name}` is at generation {}; read it again and retry",
                inst.generation
            ),
            details: json!({ "field": "If-Match", "generation": inst.generation }),
        }),
    }
}

/// `If-Match`: `*`, or generations, quoted or not (`"3"`, `W/"3"`, `3`, comma-separated).
pub(super) fn if_match(headers: &HeaderMap) -> ApiResult<Option<Condition>> {
    let Some(value) = headers.get("if-match") else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::bad_request(
            "invalid_header",
            "If-Match must be `*` or the instance's generation (its ETag), e.g. \"3\"",
            Some("If-Match".into()),
        )
    };
    let text = value.to_str().map_err(|_| invalid())?.trim();
    if text == "*" {
        return Ok(Some(Condition::Exists));
    }
    let generations = text
        .split(',')
        .map(|tag| {
            let tag = tag.trim();
            let tag = tag.strip_prefix("W/").unwrap_or(tag);
            let tag = tag
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .unwrap_or(tag);
            tag.parse::<u64>().map_err(|_| invalid())
        })
        .collect::<ApiResult<Vec<u64>>>()?;
    Ok(Some(Condition::Generations(generations)))
}

/// A spec error as the document names it: `name` is `metadata.name`, `labels.*` is
/// `metadata.labels.*`, everything else lives under `spec.`.
pub(super) fn in_document(error: ApiError) -> ApiError {
    let place = |field: String| match field.as_str() {
        "name" => "metadata.name".to_owned(),
        f if f.starts_with("labels.") => format!("metadata.{f}"),
        _ => format!("spec.{field}"),
    };
    match error {
        ApiError::BadRequest {
            code,
            message,
            field: Some(field),
        } => ApiError::BadRequest {
            code,
            message,
            field: Some(place(field)),
        },
        ApiError::Unprocessable {
            code,
            message,
            field: Some(field),
        } => ApiError::Unprocessable {
            code,
            message,
            field: Some(place(field)),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("if-match", value.parse().unwrap());
        h
    }

    #[test]
    fn if_match_takes_quoted_weak_bare_lists_and_star() {
        let gens = |v: &str| if_match(&headers(v)).unwrap();
        assert_eq!(gens("\"3\""), Some(Condition::Generations(vec![3])));
        assert_eq!(gens("3"), Some(Condition::Generations(vec![3])));
        assert_eq!(
            gens("W/\"4\", \"5\""),
            Some(Condition::Generations(vec![4, 5]))
        );
        assert_eq!(gens("*"), Some(Condition::Exists));
        assert_eq!(if_match(&HeaderMap::new()).unwrap(), None);
        assert!(if_match(&headers("\"abc\"")).is_err());
    }

    #[test]
    fn documents_name_what_is_wrong() {
        let doc = |v: Value| checked(serde_json::from_value(v).unwrap(), "n");
        let field = |r: ApiResult<Checked>| match r {
            Err(ApiError::BadRequest { field, .. }) => field.unwrap(),
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("accepted"),
        };
        let good = json!({"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "n"},
            "spec": {"platform": "process", "config": {}}});
        assert!(doc(good.clone()).is_ok());
        let mut bad = good.clone();
        bad["apiVersion"] = json!("v2");
        assert_eq!(field(doc(bad)), "apiVersion");
        let mut bad = good.clone();
        bad["kind"] = json!("Pod");
        assert_eq!(field(doc(bad)), "kind");
        let mut bad = good.clone();
        bad["metadata"]["name"] = json!("m");
        assert_eq!(field(doc(bad)), "metadata.name");
        let mut bad = good.clone();
        bad["spec"]["configFile"] = json!("a.yaml");
        assert_eq!(field(doc(bad)), "spec.configFile");
        let mut bad = good;
        bad["spec"].as_object_mut().unwrap().remove("config");
        assert_eq!(field(doc(bad)), "spec.config");
    }
}
