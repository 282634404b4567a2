//! The monitoring files against the code. deploy/prometheus/check.sh (promtool: the scrape
//! configs, rules.yml, its unit tests rules_test.yml, and every query of the Grafana dashboard
//! deploy/grafana/draas.json) must pass; and what rules.yml and draas.json name must exist:
//! every metric in telemetry/src/names.rs (read as text), as a histogram's `_bucket`, `_sum`
//! or `_count`, among the process collector's `process_*` metrics or as a recording rule of
//! rules.yml; every `kind`, `platform`, `state`, `to`, `from` and `outcome` value in the
//! protocol's enums; every alert's runbook section in docs/runbook.md; every alert unit-tested
//! both firing and quiet; every catalogue metric on the dashboard.

#[path = "alert_rules/promql.rs"]
mod promql;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use draas_protocol::instance::TRANSITIONS;
use draas_protocol::{CommandKind, OperationState, Platform};
use serde_json::Value;

/// What metrics-process 2.x exports (telemetry/src/metrics.rs installs it).
const PROCESS_METRICS: &[&str] = &[
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
    "process_virtual_memory_bytes",
    "process_virtual_memory_max_bytes",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_threads",
];
/// Series Prometheus makes itself: alert state and scrape health.
const PROMETHEUS_SERIES: &[&str] = &["ALERTS", "ALERTS_FOR_STATE", "up"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// The metric catalogue: every `pub const X: &str = "…";` of names.rs, and which are histograms.
struct Catalogue {
    metrics: BTreeSet<String>,
    histograms: BTreeSet<String>,
}

fn catalogue() -> Catalogue {
    let text = read("telemetry/src/names.rs");
    let mut consts = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("pub const ") else {
            continue;
        };
        let Some((name, value)) = rest.split_once(": &str = \"") else {
            continue;
        };
        let value = value
            .strip_suffix("\";")
            .expect("a one-line string constant");
        consts.insert(name.to_owned(), value.to_owned());
    }
    let mut histograms = BTreeSet::new();
    for part in text.split("describe_histogram!(").skip(1) {
        let name = part.split(',').next().unwrap().trim();
        histograms.insert(consts.get(name).expect("a described constant").clone());
    }
    assert!(
        consts.len() >= 20 && histograms.len() >= 5,
        "names.rs read: {consts:?}"
    );
    Catalogue {
        metrics: consts.into_values().collect(),
        histograms,
    }
}

/// One rule of rules.yml: an alert or a recording rule.
#[derive(Debug, Default)]
struct Rule {
    alert: Option<String>,
    record: Option<String>,
    expr: String,
    annotations: BTreeMap<String, String>,
}

/// The value of `key:` at `lines[*i]`: inline, or a `|`/`>` block of more indented lines.
fn yaml_value(lines: &[&str], i: &mut usize, indent: usize, inline: &str) -> String {
    let inline = inline.trim();
    if !inline.starts_with('|') && !inline.starts_with('>') {
        return inline.trim_matches('"').to_owned();
    }
    let mut block = Vec::new();
    while let Some(next) = lines.get(*i + 1) {
        let deeper = next.len() - next.trim_start().len() > indent;
        if !(deeper || next.trim().is_empty()) {
            break;
        }
        block.push(next.trim());
        *i += 1;
    }
    block.join("\n").trim().to_owned()
}

/// The rules of rules.yml, read line by line (the file keeps to `key: value` and block scalars).
fn rules() -> Vec<Rule> {
    let text = read("deploy/prometheus/rules.yml");
    let lines: Vec<&str> = text.lines().collect();
    let mut rules: Vec<Rule> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let indent = line.len() - line.trim_start().len();
        let item = line.trim_start().trim_start_matches("- ");
        if let Some((key, value)) = item.split_once(':').filter(|_| !item.starts_with('#')) {
            let value = yaml_value(&lines, &mut i, indent, value);
            match key {
                "alert" => rules.push(Rule {
                    alert: Some(value),
                    ..Rule::default()
                }),
                "record" => rules.push(Rule {
                    record: Some(value),
                    ..Rule::default()
                }),
                "expr" => rules.last_mut().expect("expr inside a rule").expr = value,
                "summary" | "description" | "runbook_url" => {
                    let rule = rules.last_mut().expect("annotation inside a rule");
                    rule.annotations.insert(key.to_owned(), value);
                }
                _ => {}
            }
        }
        i += 1;
    }
    for r in &rules {
        assert!(!r.expr.is_empty(), "rule without expr: {r:?}");
    }
    assert!(
        rules.iter().filter(|r| r.alert.is_some()).count() >= 7,
        "alerts read: {rules:?}"
    );
    rules
}

/// Every query of the dashboard (panel targets and `label_values` variables), with where it is.
fn dashboard_queries() -> Vec<(String, String)> {
    let dash: Value = serde_json::from_str(&read("deploy/grafana/draas.json")).expect("draas.json");
    let mut out = Vec::new();
    let mut stack: Vec<&Value> = dash["panels"].as_array().unwrap().iter().collect();
    while let Some(p) = stack.pop() {
        stack.extend(p["panels"].as_array().into_iter().flatten());
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("every target has an expr");
            out.push((
                format!("panel {} {}", p["title"], t["refId"]),
                expr.to_owned(),
            ));
        }
    }
    for v in dash["templating"]["list"].as_array().unwrap() {
        if v["type"] == "query" {
            let query = v["query"]
                .as_str()
                .or(v["query"]["query"].as_str())
                .unwrap();
            let inner = query.trim().strip_prefix("label_values(").unwrap();
            let expr = &inner[..inner.rfind(',').expect("label_values(expr, label)")];
            out.push((format!("variable {}", v["name"]), expr.to_owned()));
        }
    }
    assert!(out.len() >= 30, "dashboard queries read: {out:?}");
    out
}

/// Every query of rules.yml and draas.json with where it is.
fn all_queries(rules: &[Rule]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = rules
        .iter()
        .map(|r| {
            let name = r.alert.as_ref().or(r.record.as_ref()).unwrap();
            (format!("rules.yml {name}"), r.expr.clone())
        })
        .collect();
    out.extend(dashboard_queries());
    out
}

#[test]
fn check_script_passes() {
    if Command::new("promtool").arg("--version").output().is_err() {
        let msg = "promtool is missing: install Debian's `prometheus` package (apt-get install prometheus)";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        eprintln!("SKIPPED (not CI): {msg}");
        return;
    }
    let out = Command::new("bash")
        .arg(root().join("deploy/prometheus/check.sh"))
        .output()
        .expect("run check.sh");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "deploy/prometheus/check.sh failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("promtool test rules rules_test.yml"),
        "{stdout}"
    );
}

#[test]
fn every_metric_used_exists_in_the_catalogue() {
    let cat = catalogue();
    let rules = rules();
    let recorded: BTreeSet<&str> = rules.iter().filter_map(|r| r.record.as_deref()).collect();
    let known = |m: &str| {
        cat.metrics.contains(m)
            || PROCESS_METRICS.contains(&m)
            || PROMETHEUS_SERIES.contains(&m)
            || recorded.contains(m)
            || ["_bucket", "_sum", "_count"].iter().any(|s| {
                m.strip_suffix(s)
                    .is_some_and(|h| cat.histograms.contains(h))
            })
    };
    let mut unknown = Vec::new();
    for (at, expr) in all_queries(&rules) {
        let refs = promql::refs(&expr).unwrap_or_else(|e| panic!("{at}: {e}"));
        assert!(
            !refs.metrics.is_empty(),
            "{at}: no metric found in {expr:?}"
        );
        unknown.extend(
            refs.metrics
                .into_iter()
                .filter(|m| !known(m))
                .map(|m| format!("{at}: {m}")),
        );
    }
    assert!(
        unknown.is_empty(),
        "metrics not in telemetry/src/names.rs:\n{}",
        unknown.join("\n")
    );
}

#[test]
fn every_label_value_used_exists_in_the_protocol() {
    let states: BTreeSet<String> = TRANSITIONS
        .iter()
        .flat_map(|(from, to)| std::iter::once(from).chain(to.iter()))
        .map(|s| {
            serde_json::to_value(s)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        states.contains("running") && states.contains("deleted"),
        "{states:?}"
    );
    let valid = |label: &str, value: &str| match label {
        "kind" => CommandKind::parse(value).is_some(),
        "platform" => Platform::parse(value).is_some(),
        "state" | "to" | "from" => states.contains(value),
        "outcome" => [OperationState::Succeeded, OperationState::Failed]
            .iter()
            .any(|o| o.as_str() == value),
        _ => true,
    };
    let mut wrong = Vec::new();
    let mut checked = 0;
    for (at, expr) in all_queries(&rules()) {
        for m in promql::refs(&expr).unwrap().matchers {
            let regex = m.op.ends_with('~');
            let values: Vec<&str> = if regex {
                m.value.split('|').collect()
            } else {
                vec![m.value.as_str()]
            };
            for v in values {
                // Grafana variables and regex patterns other than plain alternatives.
                if v.starts_with('$') || (regex && v.contains(['.', '*', '+', '[', '(', '?', '^']))
                {
                    continue;
                }
                checked += 1;
                if !valid(&m.label, v) {
                    wrong.push(format!("{at}: {}{}\"{v}\"", m.label, m.op));
                }
            }
        }
    }
    assert!(checked >= 5, "only {checked} label values checked");
    assert!(
        wrong.is_empty(),
        "label values the code never emits:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_catalogue_metric_is_on_the_dashboard() {
    let cat = catalogue();
    let used: BTreeSet<String> = dashboard_queries()
        .iter()
        .flat_map(|(_, e)| promql::refs(e).unwrap().metrics)
        .collect();
    let missing: Vec<&String> = cat
        .metrics
        .iter()
        .filter(|m| {
            let forms = [
                format!("{m}_bucket"),
                format!("{m}_sum"),
                format!("{m}_count"),
            ];
            !used.contains(*m) && !forms.iter().any(|f| used.contains(f))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "metrics of names.rs with no panel in draas.json: {missing:?}"
    );
}

#[test]
fn every_alert_has_annotations_and_a_runbook_section() {
    let runbook = read("docs/runbook.md");
    let headings: BTreeSet<String> = runbook
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|h| h.trim_start_matches('#').trim().to_lowercase())
        .collect();
    for rule in rules() {
        let Some(alert) = rule.alert else { continue };
        for key in ["summary", "description", "runbook_url"] {
            assert!(
                rule.annotations.get(key).is_some_and(|v| !v.is_empty()),
                "{alert}: no {key}"
            );
        }
        let anchor = alert.to_lowercase();
        assert_eq!(
            rule.annotations["runbook_url"],
            format!("docs/runbook.md#{anchor}"),
            "{alert}"
        );
        assert!(
            headings.contains(&anchor),
            "{alert}: no `### {alert}` section in docs/runbook.md"
        );
    }
}

#[test]
fn every_alert_is_unit_tested_firing_and_quiet() {
    let text = read("deploy/prometheus/rules_test.yml");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut cases: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = line.strip_prefix("alertname:") else {
            continue;
        };
        let exp = lines[i + 1..]
            .iter()
            .find(|l| l.starts_with("exp_alerts:"))
            .expect("exp_alerts");
        let entry = cases.entry(name.trim().to_owned()).or_default();
        if exp.trim_end().ends_with("[]") {
            entry.1 += 1
        } else {
            entry.0 += 1
        }
    }
    for rule in rules() {
        let Some(alert) = rule.alert else { continue };
        let (firing, quiet) = cases.get(&alert).copied().unwrap_or_default();
        assert!(firing > 0, "{alert}: no rules_test.yml case where it fires");
        assert!(
            quiet > 0,
            "{alert}: no rules_test.yml case where it stays quiet"
        );
    }
}
