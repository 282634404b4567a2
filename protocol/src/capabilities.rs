//! What a worker's workload can run: the source and reaction kinds it has, as the workload
//! itself says (`draas-runtime capabilities` prints this as JSON). Workers advertise it in
//! their registration; the API refuses a config whose kinds no live worker of the platform
//! can run, naming the field, instead of letting the start fail later.

use serde::{Deserialize, Serialize};

use crate::drasi::{DrasiConfig, SUPPORTED_REACTION_KINDS, SUPPORTED_SOURCE_KINDS};

/// The kinds a workload supports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadKinds {
    /// The workload's name and version, e.g. `draas-runtime 0.1.0`.
    pub workload: String,
    pub sources: Vec<String>,
    pub reactions: Vec<String>,
}

/// A component kind of a config that a workload lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingKind {
    /// `config.sources[0].kind`, `config.instances[1].reactions[0].kind`.
    pub field: String,
    pub kind: String,
}

impl WorkloadKinds {
    /// What a workload built on this crate's config model supports (draas-runtime).
    pub fn of_this_model(workload: impl Into<String>) -> Self {
        let own = |kinds: &[&str]| kinds.iter().map(|k| (*k).to_owned()).collect();
        WorkloadKinds {
            workload: workload.into(),
            sources: own(SUPPORTED_SOURCE_KINDS),
            reactions: own(SUPPORTED_REACTION_KINDS),
        }
    }

    /// The kinds of `config` this workload does not have, each with its field.
    pub fn missing(&self, config: &DrasiConfig) -> Vec<MissingKind> {
        let mut out = Vec::new();
        for (prefix, instance) in config.effective_instances() {
            let at = |rest: String| {
                if prefix.is_empty() {
                    format!("config.{rest}")
                } else {
                    format!("config.{prefix}.{rest}")
                }
            };
            for (i, source) in instance.sources.iter().enumerate() {
                if !self.sources.iter().any(|k| k == source.kind()) {
                    out.push(MissingKind {
                        field: at(format!("sources[{i}].kind")),
                        kind: source.kind().to_owned(),
                    });
                }
            }
            for (i, reaction) in instance.reactions.iter().enumerate() {
                if !self.reactions.iter().any(|k| k == reaction.kind()) {
                    out.push(MissingKind {
                        field: at(format!("reactions[{i}].kind")),
                        kind: reaction.kind().to_owned(),
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_kinds_are_named_by_field() {
        let config = DrasiConfig::from_yaml_str(
            "sources: [{kind: http, id: a}, {kind: mock, id: b}]\n\
             queries: [{id: q, query: 'MATCH (n) RETURN n', sources: [{sourceId: a}]}]\n\
             reactions: [{kind: log, id: l, queries: [q]}, {kind: sse, id: s, queries: [q]}]\n",
        )
        .unwrap();
        let full = WorkloadKinds::of_this_model("draas-runtime 0.1.0");
        assert!(full.missing(&config).is_empty());
        let lean = WorkloadKinds {
            workload: "drasi-server 0.2.2".into(),
            sources: vec!["http".into()],
            reactions: vec!["log".into()],
        };
        assert_eq!(
            lean.missing(&config),
            vec![
                MissingKind {
                    field: "config.sources[1].kind".into(),
                    kind: "mock".into()
                },
                MissingKind {
                    field: "config.reactions[1].kind".into(),
                    kind: "sse".into()
                },
            ]
        );
        let json = serde_json::to_string(&lean).unwrap();
        assert_eq!(serde_json::from_str::<WorkloadKinds>(&json).unwrap(), lean);
    }
}
