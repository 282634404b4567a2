//! The plan of `draas apply` and `draas diff`: for each document what applying it does
//! (create, configure, start, stop, or nothing), with a unified diff of its labels and spec
//! against the instance as the API shows it, and the instances `--prune` would delete.

use std::fmt::Write;
use std::io::IsTerminal;

use draas_protocol::DesiredState;
use serde_json::Value;

use super::document::{Document, desired_facts, live_facts};
use super::files::Loaded;
use super::http::ClientError;
use super::output;

/// One thing applying a document does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Create,
    Configure,
    Start,
    Stop,
}

impl Step {
    fn as_str(self) -> &'static str {
        match self {
            Step::Create => "create",
            Step::Configure => "configure",
            Step::Start => "start",
            Step::Stop => "stop",
        }
    }
}

/// What applying one document does.
#[derive(Debug, Clone)]
pub struct Entry {
    pub loaded: Loaded,
    /// The instance as read (its generation is the `If-Match` of the write).
    pub live: Option<Value>,
    pub steps: Vec<Step>,
    /// Unified diff of labels and spec; empty when they match.
    pub diff: String,
}

impl Entry {
    pub fn name(&self) -> &str {
        self.loaded.doc.name()
    }

    pub fn generation(&self) -> Option<u64> {
        self.live.as_ref().and_then(|v| v["generation"].as_u64())
    }

    pub fn configures(&self) -> bool {
        self.steps.contains(&Step::Configure)
    }
}

/// Every document's entry, and the instances to delete.
#[derive(Debug)]
pub struct Plan {
    pub entries: Vec<Entry>,
    pub prune: Vec<Value>,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        !self.prune.is_empty() || self.entries.iter().any(|e| !e.steps.is_empty())
    }
}

/// What applying `loaded` to `live` (the instance of that name, if any) does.
pub fn entry(loaded: Loaded, live: Option<Value>) -> Result<Entry, ClientError> {
    let doc: &Document = &loaded.doc;
    let desired = desired_facts(doc);
    let new = output::yaml(&desired)?;
    let header_new = format!("instance/{} ({})", doc.name(), loaded.source);
    let header_old = format!("instance/{} (live)", doc.name());
    let (steps, diff) = match &live {
        None => {
            let mut steps = vec![Step::Create];
            if doc.desired() == DesiredState::Running {
                steps.push(Step::Start);
            }
            (steps, unified("", &new, &header_old, &header_new))
        }
        Some(view) => {
            let current = live_facts(view, doc.spec.env.is_some());
            let mut steps = Vec::new();
            let mut diff = String::new();
            if current != desired {
                steps.push(Step::Configure);
                let old = output::yaml(&current)?;
                diff = unified(&old, &new, &header_old, &header_new);
            }
            let state = view["state"].as_str().unwrap_or_default();
            match doc.desired() {
                DesiredState::Running if matches!(state, "created" | "stopped" | "failed") => {
                    steps.push(Step::Start)
                }
                DesiredState::Stopped if matches!(state, "running" | "starting") => {
                    steps.push(Step::Stop)
                }
                _ => {}
            }
            (steps, diff)
        }
    };
    Ok(Entry {
        loaded,
        live,
        steps,
        diff,
    })
}

fn unified(old: &str, new: &str, header_old: &str, header_new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(header_old, header_new)
        .to_string()
}

/// The plan as people read it: each entry's steps and diff, what is deleted, a summary.
pub fn render(plan: &Plan, color: bool) -> String {
    let mut out = String::new();
    for e in &plan.entries {
        match e.steps.is_empty() {
            true => {
                let _ = writeln!(out, "instance/{}: unchanged", e.name());
            }
            false => {
                let steps: Vec<_> = e.steps.iter().map(|s| s.as_str()).collect();
                let _ = writeln!(out, "instance/{}: {}", e.name(), steps.join(", "));
                out.push_str(&paint(&e.diff, color));
            }
        }
    }
    for view in &plan.prune {
        let _ = writeln!(
            out,
            "instance/{}: delete (not in the files)",
            output::text(&view["name"])
        );
    }
    if !plan.has_changes() {
        let _ = writeln!(
            out,
            "No changes: {} instance(s) match their documents.",
            plan.entries.len()
        );
        return out;
    }
    let count = |step: Step| {
        plan.entries
            .iter()
            .filter(|e| e.steps.contains(&step))
            .count()
    };
    let unchanged = plan.entries.iter().filter(|e| e.steps.is_empty()).count();
    let _ = writeln!(
        out,
        "Plan: {} to create, {} to configure, {} to start, {} to stop, {} to delete, {} unchanged.",
        count(Step::Create),
        count(Step::Configure),
        count(Step::Start),
        count(Step::Stop),
        plan.prune.len(),
        unchanged
    );
    out
}

/// Whether plans and diffs are coloured: stdout is a terminal and `NO_COLOR` is unset.
pub fn color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn paint(diff: &str, color: bool) -> String {
    if !color {
        return diff.to_owned();
    }
    diff.lines()
        .map(|line| {
            let code = match line.as_bytes().first() {
                _ if line.starts_with("+++") || line.starts_with("---") => "1",
                Some(b'+') => "32",
                Some(b'-') => "31",
                Some(b'@') => "36",
                _ => return format!("{line}\n"),
            };
            format!("\x1b[{code}m{line}\x1b[0m\n")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn loaded(spec: Value) -> Loaded {
        let doc = Document::from_value(json!({
            "apiVersion": "draas.io/v1", "kind": "DrasiInstance",
            "metadata": {"name": "a", "labels": {"app": "x"}}, "spec": spec
        }))
        .unwrap();
        Loaded {
            doc,
            source: "a.yaml".into(),
        }
    }

    fn live(state: &str, desired: Option<&str>, config: Value) -> Value {
        let mut v = json!({"name": "a", "platform": "process", "labels": {"app": "x"},
            "config": config, "state": state, "generation": 4});
        if let Some(d) = desired {
            v["desiredState"] = json!(d);
        }
        v
    }

    fn config(id: &str) -> Value {
        json!({"sources": [{"kind": "http", "id": id}]})
    }

    #[test]
    fn steps_follow_from_the_document_and_the_instance() {
        let running = || loaded(json!({"platform": "process", "config": config("s")}));
        let e = entry(running(), None).unwrap();
        assert_eq!(e.steps, [Step::Create, Step::Start]);
        assert!(e.diff.contains("+++ instance/a (a.yaml)"), "{}", e.diff);

        let e = entry(
            running(),
            Some(live("running", Some("running"), config("s"))),
        )
        .unwrap();
        assert!(e.steps.is_empty(), "{:?}", e.steps);
        assert!(e.diff.is_empty());
        assert_eq!(e.generation(), Some(4));

        let e = entry(
            running(),
            Some(live("running", Some("running"), config("t"))),
        )
        .unwrap();
        assert_eq!(e.steps, [Step::Configure]);
        let changed = |sign: char, id: &str| {
            e.diff
                .lines()
                .any(|l| l.starts_with(sign) && l.ends_with(&format!("id: {id}")))
        };
        assert!(changed('-', "t") && changed('+', "s"), "{}", e.diff);

        let e = entry(
            running(),
            Some(live("stopped", Some("running"), config("s"))),
        )
        .unwrap();
        assert_eq!(e.steps, [Step::Start]);

        let stopped = loaded(
            json!({"platform": "process", "desiredState": "stopped", "config": config("s")}),
        );
        let e = entry(stopped, Some(live("running", Some("running"), config("s")))).unwrap();
        assert_eq!(e.steps, [Step::Configure, Step::Stop]);
        assert!(e.diff.contains("+  desiredState: stopped"), "{}", e.diff);

        // Nothing stored yet (made by POST): the write records it.
        let e = entry(running(), Some(live("running", None, config("s")))).unwrap();
        assert_eq!(e.steps, [Step::Configure]);
    }

    #[test]
    fn a_plan_says_what_it_does_and_when_nothing() {
        let doc = loaded(json!({"platform": "process", "config": config("s")}));
        let same = entry(
            doc.clone(),
            Some(live("running", Some("running"), config("s"))),
        )
        .unwrap();
        let plan = Plan {
            entries: vec![same.clone()],
            prune: vec![],
        };
        assert!(!plan.has_changes());
        assert_eq!(
            render(&plan, false),
            "instance/a: unchanged\nNo changes: 1 instance(s) match their documents.\n"
        );
        let plan = Plan {
            entries: vec![same],
            prune: vec![json!({"name": "old"})],
        };
        let text = render(&plan, false);
        assert!(text.contains("instance/old: delete"), "{text}");
        assert!(text.contains("1 to delete, 1 unchanged."), "{text}");
    }
}
