//! The DrasiInstance document that `apply`, `diff` and `create -f` read and `get -o yaml`
//! writes: its types and local checks (apiVersion, kind, name, known fields), the document of
//! an instance as the API shows it, and the comparable form of both sides that a plan diffs
//! (configs, restart policies and resources normalised through the protocol's own types, so
//! a document read back compares equal to what the server stores).

use std::collections::BTreeMap;

use draas_protocol::drasi::DrasiConfig;
use draas_protocol::env::{self, InstanceEnv};
use draas_protocol::{DesiredState, Platform, Resources, RestartPolicy};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::http::ClientError;

pub const API_VERSION: &str = "draas.io/v1";
pub const KIND: &str = "DrasiInstance";

/// One DrasiInstance document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Document {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: Spec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    pub platform: Platform,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_state: Option<DesiredState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
    /// Read by the client, relative to the document's file, and sent as `config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Value>,
    /// Absent: the server keeps the instance's environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Value>,
}

impl Document {
    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// `spec.desiredState`, `running` when the document leaves it out.
    pub fn desired(&self) -> DesiredState {
        self.spec.desired_state.unwrap_or(DesiredState::Running)
    }

    /// The body of `PUT /api/v1/instances/{name}` (`configFile` already read into `config`).
    pub fn wire(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The document as YAML.
    pub fn to_yaml(&self) -> Result<String, ClientError> {
        serde_yaml::to_string(self).map_err(|e| ClientError::Failed(format!("rendering YAML: {e}")))
    }

    /// Checks a parsed document: apiVersion, kind, a name, known fields with their types.
    /// Errors say where in the document the problem is.
    pub fn from_value(value: Value) -> Result<Document, String> {
        let Value::Object(map) = &value else {
            return Err("a document is a mapping with apiVersion, kind, metadata and spec".into());
        };
        match map.get("apiVersion") {
            Some(Value::String(v)) if v == API_VERSION => {}
            Some(other) => {
                return Err(format!(
                    "apiVersion: expected {API_VERSION}, got {}",
                    short(other)
                ));
            }
            None => return Err(format!("apiVersion: missing (use {API_VERSION})")),
        }
        match map.get("kind") {
            Some(Value::String(k)) if k == KIND => {}
            Some(other) => return Err(format!("kind: expected {KIND}, got {}", short(other))),
            None => return Err(format!("kind: missing (use {KIND})")),
        }
        match value.pointer("/metadata/name") {
            Some(Value::String(n)) if !n.trim().is_empty() => {}
            _ => return Err("metadata.name: a name is required".into()),
        }
        let doc: Document = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            match path.as_str() {
                "." => e.inner().to_string(),
                _ => format!("{path}: {}", e.inner()),
            }
        })?;
        match (&doc.spec.config, &doc.spec.config_file) {
            (Some(_), Some(_)) => Err("spec: give config or configFile, not both".into()),
            (None, None) => Err("spec: config (or configFile) is required".into()),
            _ => Ok(doc),
        }
    }

    /// The document of an instance as the API shows it: what `apply` accepts unchanged (no
    /// id, state, runtime or env; `desiredState` as stored, else what the state says).
    pub fn of_view(view: &Value) -> Result<Document, ClientError> {
        let bad = |what: &str| ClientError::Failed(format!("the API's instance has no {what}"));
        let name = view["name"].as_str().ok_or_else(|| bad("name"))?;
        let platform = view["platform"]
            .as_str()
            .and_then(Platform::parse)
            .ok_or_else(|| bad("platform"))?;
        let labels = serde_json::from_value(view["labels"].clone()).unwrap_or_default();
        let desired = match view["desiredState"].as_str() {
            Some("stopped") => DesiredState::Stopped,
            Some(_) => DesiredState::Running,
            None => match view["state"].as_str() {
                Some("running" | "starting") => DesiredState::Running,
                _ => DesiredState::Stopped,
            },
        };
        let policy = normalized_policy(&view["restartPolicy"]);
        let default_policy = serde_json::to_value(RestartPolicy::default()).unwrap_or_default();
        let some = |v: &Value| (!v.is_null()).then(|| v.clone());
        Ok(Document {
            api_version: API_VERSION.to_owned(),
            kind: KIND.to_owned(),
            metadata: Metadata {
                name: name.to_owned(),
                labels,
            },
            spec: Spec {
                platform,
                desired_state: Some(desired),
                description: view["description"].as_str().map(str::to_owned),
                config: Some(view["config"].clone()),
                config_file: None,
                restart_policy: (policy != default_policy).then_some(policy),
                image: view["image"].as_str().map(str::to_owned),
                resources: some(&view["resources"]),
                env: None,
            },
        })
    }
}

/// What a plan compares for a document: labels and spec, normalised; `desiredState` defaulted;
/// `env` only when the document gives one (secrets redacted, as the API shows them).
pub fn desired_facts(doc: &Document) -> Value {
    let spec = &doc.spec;
    let mut out = Map::new();
    out.insert("platform".into(), json!(spec.platform.as_str()));
    out.insert("desiredState".into(), json!(doc.desired().as_str()));
    if let Some(d) = &spec.description {
        out.insert("description".into(), json!(d));
    }
    let config = spec.config.clone().unwrap_or(Value::Null);
    out.insert("config".into(), normalized_config(&config));
    out.insert(
        "restartPolicy".into(),
        normalized_policy(spec.restart_policy.as_ref().unwrap_or(&Value::Null)),
    );
    if let Some(image) = &spec.image {
        out.insert("image".into(), json!(image));
    }
    if let Some(resources) = &spec.resources {
        out.insert("resources".into(), normalized_resources(resources));
    }
    if let Some(env) = &spec.env {
        out.insert("env".into(), redacted_env(env));
    }
    facts(doc.name(), &json!(doc.metadata.labels), out)
}

/// The same for the instance the API shows (`desiredState` only when stored; `env` only
/// when `with_env`).
pub fn live_facts(view: &Value, with_env: bool) -> Value {
    let mut out = Map::new();
    out.insert("platform".into(), view["platform"].clone());
    if let Some(d) = view["desiredState"].as_str() {
        out.insert("desiredState".into(), json!(d));
    }
    if let Some(d) = view["description"].as_str() {
        out.insert("description".into(), json!(d));
    }
    out.insert("config".into(), normalized_config(&view["config"]));
    out.insert(
        "restartPolicy".into(),
        normalized_policy(&view["restartPolicy"]),
    );
    if let Some(image) = view["image"].as_str() {
        out.insert("image".into(), json!(image));
    }
    if !view["resources"].is_null() {
        out.insert("resources".into(), normalized_resources(&view["resources"]));
    }
    if with_env {
        let env = match &view["env"] {
            Value::Null => json!({}),
            env => env.clone(),
        };
        out.insert("env".into(), redacted_env(&env));
    }
    let name = view["name"].as_str().unwrap_or_default();
    let labels = match &view["labels"] {
        Value::Null => json!({}),
        labels => labels.clone(),
    };
    facts(name, &labels, out)
}

fn facts(name: &str, labels: &Value, spec: Map<String, Value>) -> Value {
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!(name));
    if labels.as_object().is_some_and(|l| !l.is_empty()) {
        metadata.insert("labels".into(), labels.clone());
    }
    json!({ "metadata": metadata, "spec": spec })
}

/// A config as the server stores it (parsed and rendered by the protocol's model); as given
/// when it does not parse (the server will say why).
fn normalized_config(config: &Value) -> Value {
    DrasiConfig::from_json_value(config.clone())
        .ok()
        .and_then(|c| serde_json::to_value(c).ok())
        .unwrap_or_else(|| config.clone())
}

/// A restart policy with its defaults filled in (`null`: the default policy).
fn normalized_policy(policy: &Value) -> Value {
    let parsed = match policy {
        Value::Null => Some(RestartPolicy::default()),
        other => serde_json::from_value::<RestartPolicy>(other.clone()).ok(),
    };
    parsed
        .and_then(|p| serde_json::to_value(p).ok())
        .unwrap_or_else(|| policy.clone())
}

fn normalized_resources(resources: &Value) -> Value {
    serde_json::from_value::<Resources>(resources.clone())
        .ok()
        .and_then(|r| serde_json::to_value(r).ok())
        .unwrap_or_else(|| resources.clone())
}

/// An environment as the API shows it: secret values replaced by `{"secret": true}`.
fn redacted_env(value: &Value) -> Value {
    serde_json::from_value::<InstanceEnv>(value.clone())
        .ok()
        .and_then(|e| serde_json::to_value(env::redacted(&e)).ok())
        .unwrap_or_else(|| value.clone())
}

/// A value for an error message, cut short.
fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(extra: Value) -> Value {
        let mut base = json!({
            "apiVersion": "draas.io/v1",
            "kind": "DrasiInstance",
            "metadata": {"name": "a", "labels": {"app": "x"}},
            "spec": {"platform": "process", "config": {"sources": [{"kind": "http", "id": "s"}]}}
        });
        merge(&mut base, &extra);
        base
    }

    /// RFC 7396 merge: `null` removes, objects merge, anything else replaces.
    fn merge(target: &mut Value, patch: &Value) {
        match (target, patch) {
            (Value::Object(t), Value::Object(p)) => {
                for (k, v) in p {
                    match v {
                        Value::Null => {
                            t.remove(k);
                        }
                        _ => merge(t.entry(k.clone()).or_insert(Value::Null), v),
                    }
                }
            }
            (t, p) => *t = p.clone(),
        }
    }

    #[test]
    fn documents_are_checked_field_by_field() {
        assert!(Document::from_value(doc(json!({}))).is_ok());
        let cases = [
            (
                json!({"apiVersion": "v1"}),
                "apiVersion: expected draas.io/v1",
            ),
            (json!({"kind": "Pod"}), "kind: expected DrasiInstance"),
            (json!({"metadata": {"name": ""}}), "metadata.name"),
            (
                json!({"spec": {"confg": 1}}),
                "spec.confg: unknown field `confg`",
            ),
            (
                json!({"spec": {"platform": "vm"}}),
                "spec.platform: unknown variant `vm`",
            ),
            (
                json!({"spec": {"desiredState": "paused"}}),
                "spec.desiredState",
            ),
            (json!({"spec": {"configFile": "c.yaml"}}), "not both"),
            (
                json!({"spec": {"config": null}}),
                "config (or configFile) is required",
            ),
        ];
        for (patch, expected) in cases {
            let error = Document::from_value(doc(patch.clone())).unwrap_err();
            assert!(error.contains(expected), "{patch}: {error}");
        }
        assert!(Document::from_value(json!([1])).is_err());
    }

    fn view() -> Value {
        json!({
            "id": "0190a6f2-0000-7000-8000-000000000000",
            "name": "a", "platform": "process", "labels": {"app": "x"},
            "config": {"sources": [{"kind": "http", "id": "s"}]},
            "restartPolicy": {"mode": "never", "maxAttempts": 5, "initialBackoffMs": 1000, "maxBackoffMs": 60000},
            "state": "running", "generation": 3, "desiredState": "running",
            "env": {"TOKEN": {"secret": true}},
            "runtime": {"pid": 12}, "warnings": []
        })
    }

    #[test]
    fn the_document_of_an_instance_compares_equal_to_it() {
        let doc = Document::of_view(&view()).unwrap();
        let yaml = doc.to_yaml().unwrap();
        for absent in [
            "0190a6f2",
            "state: running",
            "runtime",
            "generation",
            "env",
            "TOKEN",
        ] {
            assert!(!yaml.contains(absent), "{absent} in\n{yaml}");
        }
        // A default restart policy is left out; the document parses back as itself.
        assert!(!yaml.contains("restartPolicy"), "{yaml}");
        let value: Value = serde_yaml::from_str(&yaml).unwrap();
        let back = Document::from_value(value).unwrap();
        assert_eq!(back, doc);
        assert_eq!(desired_facts(&back), live_facts(&view(), false));
    }

    #[test]
    fn desired_state_follows_the_instance_when_none_is_stored() {
        let mut v = view();
        v.as_object_mut().unwrap().remove("desiredState");
        assert_eq!(
            Document::of_view(&v).unwrap().desired(),
            DesiredState::Running
        );
        v["state"] = json!("stopped");
        assert_eq!(
            Document::of_view(&v).unwrap().desired(),
            DesiredState::Stopped
        );
        // Nothing stored: the plan shows desiredState as a change.
        assert!(live_facts(&v, false)["spec"].get("desiredState").is_none());
    }

    #[test]
    fn equivalent_spellings_compare_equal() {
        // A policy with defaults left out, a config port given as a string.
        let mut d = Document::from_value(doc(json!({"spec": {
            "restartPolicy": {"mode": "never"},
            "config": {"port": "8080", "sources": [{"kind": "http", "id": "s"}]}
        }})))
        .unwrap();
        let mut v = view();
        v["config"] = json!({"port": 8080, "sources": [{"kind": "http", "id": "s"}]});
        assert_eq!(desired_facts(&d), live_facts(&v, false));
        d.spec.restart_policy = Some(json!({"mode": "always"}));
        assert_ne!(desired_facts(&d), live_facts(&v, false));
    }

    #[test]
    fn env_is_compared_only_when_given_and_secrets_redacted() {
        let d = Document::from_value(doc(json!({"spec": {
            "env": {"TOKEN": {"value": "s3cret", "secret": true}}
        }})))
        .unwrap();
        let facts = desired_facts(&d);
        assert_eq!(facts["spec"]["env"], json!({"TOKEN": {"secret": true}}));
        assert!(!facts.to_string().contains("s3cret"));
        assert_eq!(facts, live_facts(&view(), true));
    }
}
