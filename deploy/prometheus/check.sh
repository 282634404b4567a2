#!/usr/bin/env bash
# Checks the monitoring files offline, with promtool (Debian's `prometheus` package):
#   1. prometheus.yml: `promtool check config` (which also checks the rule files it names);
#   2. kubernetes.yml: the same, with its kubernetes_sd_configs replaced by a static target
#      when this promtool is built without Kubernetes service discovery (Debian's is);
#   3. rules.yml: `promtool check rules --lint-fatal` (syntax, templates, duplicate rules);
#   4. rules_test.yml: `promtool test rules` (every alert fires and stays quiet where it should);
#   5. ../grafana/draas.json: valid JSON (python3 -m json.tool), schemaVersion >= 36, the
#      ${DS_PROMETHEUS} datasource on every panel and target, the `platform` variable, unique
#      panel ids; and every panel query and variable query parses: each is written, with
#      $platform, $job and $__rate_interval replaced by valid values, as a recording rule of a
#      temporary rules file that `promtool check rules` must accept.
# Exits non-zero when any check fails.
#
#   bash deploy/prometheus/check.sh
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
dashboard="$here/../grafana/draas.json"

if ! command -v promtool >/dev/null 2>&1; then
  echo "check.sh: promtool is missing; install Debian's prometheus package (apt-get install prometheus)" >&2
  exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
run() { # LABEL COMMAND...
  local label=$1 out
  shift
  if out=$("$@" 2>&1); then
    echo "ok   $label"
  else
    echo "FAIL $label" >&2
    sed 's/^/    /' <<<"$out" >&2
    failed=1
  fi
}

# 1. The loopback scrape configuration and the rule files it loads.
run "promtool check config prometheus.yml" promtool check config --lint-fatal prometheus.yml

# 2. The in-cluster scrape configuration.
if promtool check config --syntax-only kubernetes.yml >"$tmp/k8s.out" 2>&1; then
  run "promtool check config kubernetes.yml" promtool check config --lint-fatal kubernetes.yml
elif grep -q "field kubernetes_sd_configs not found" "$tmp/k8s.out" && ! python3 -c 'import yaml' 2>/dev/null; then
  echo "FAIL kubernetes.yml: this promtool lacks Kubernetes SD and python3 has no yaml module to check the rest (apt-get install python3-yaml)" >&2
  failed=1
elif grep -q "field kubernetes_sd_configs not found" "$tmp/k8s.out"; then
  # This promtool has no Kubernetes service discovery: check everything else of the file.
  if python3 - kubernetes.yml "$tmp/kubernetes-static.yml" "$here/rules.yml" <<'PY'
import sys, yaml
src, dst, rules = sys.argv[1:]
cfg = yaml.safe_load(open(src))
cfg["rule_files"] = [rules if r == "rules.yml" else r for r in cfg.get("rule_files", [])]
for job in cfg["scrape_configs"]:
    for sd in job.pop("kubernetes_sd_configs", []):
        if sd.get("role") not in ("node", "service", "pod", "endpoints", "endpointslice", "ingress"):
            sys.exit(f"{job['job_name']}: unknown kubernetes_sd_configs role {sd.get('role')!r}")
        names = (sd.get("namespaces") or {}).get("names", [])
        if not all(isinstance(n, str) and n for n in names):
            sys.exit(f"{job['job_name']}: namespaces.names must be non-empty strings")
        job.setdefault("static_configs", []).append({"targets": ["127.0.0.1:9300"]})
yaml.safe_dump(cfg, open(dst, "w"), sort_keys=False)
PY
  then
    run "promtool check config kubernetes.yml (kubernetes_sd_configs replaced by a static target: this promtool lacks Kubernetes SD)" \
      promtool check config --lint-fatal "$tmp/kubernetes-static.yml"
  else
    echo "FAIL kubernetes.yml (structure)" >&2
    failed=1
  fi
else
  echo "FAIL promtool check config kubernetes.yml" >&2
  sed 's/^/    /' "$tmp/k8s.out" >&2
  failed=1
fi

# 3 and 4. The rules and their unit tests.
run "promtool check rules rules.yml" promtool check rules --lint-fatal rules.yml
run "promtool test rules rules_test.yml" promtool test rules rules_test.yml

# 5. The dashboard.
if python3 -m json.tool "$dashboard" >/dev/null 2>"$tmp/json.err"; then
  echo "ok   draas.json is JSON"
  if python3 - "$dashboard" "$tmp/dashboard_rules.yml" <<'PY'
import json, re, sys
path, out = sys.argv[1:]
dash = json.load(open(path))
errors = []
DS = "${DS_PROMETHEUS}"
if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 36:
    errors.append(f"schemaVersion {dash.get('schemaVersion')!r} is below 36")
variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
if variables.get("DS_PROMETHEUS", {}).get("type") != "datasource":
    errors.append("no datasource variable DS_PROMETHEUS")
if "platform" not in variables:
    errors.append("no templating variable platform")

# The values a query's variables take when it is checked.
SUBST = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h",
         "$platform": ".*", "$job": ".*"}
def substitute(expr, where):
    for k, v in SUBST.items():
        expr = expr.replace(k, v)
    left = re.findall(r"\$\{?\w+", expr)
    if left:
        errors.append(f"{where}: no check value for {', '.join(sorted(set(left)))}")
    return expr

def walk(panels):
    for p in panels:
        yield p
        yield from walk(p.get("panels", []))

rules, ids = [], set()
for p in walk(dash.get("panels", [])):
    where = f"panel {p.get('id')} {p.get('title')!r}"
    if p.get("id") in ids:
        errors.append(f"{where}: duplicate id")
    ids.add(p.get("id"))
    if "gridPos" not in p:
        errors.append(f"{where}: no gridPos")
    if p.get("type") == "row":
        continue
    if (p.get("datasource") or {}).get("uid") != DS:
        errors.append(f"{where}: datasource is not {DS}")
    if not p.get("targets"):
        errors.append(f"{where}: no targets")
    for t in p.get("targets", []):
        tw = f"{where} target {t.get('refId')}"
        if (t.get("datasource") or {}).get("uid") != DS:
            errors.append(f"{tw}: datasource is not {DS}")
        if not t.get("expr"):
            errors.append(f"{tw}: no expr")
            continue
        rules.append((f"dashboard:panel_{p['id']}_{t.get('refId')}", substitute(t["expr"], tw), tw))
for name, v in variables.items():
    if v.get("type") != "query":
        continue
    if (v.get("datasource") or {}).get("uid") != DS:
        errors.append(f"variable {name}: datasource is not {DS}")
    query = v.get("query")
    query = query.get("query") if isinstance(query, dict) else query
    m = re.fullmatch(r"\s*label_values\((.+),\s*(\w+)\s*\)\s*", query or "")
    if not m:
        errors.append(f"variable {name}: query {query!r} is not label_values(expr, label)")
        continue
    rules.append((f"dashboard:variable_{name}", substitute(m.group(1), f"variable {name}"), f"variable {name}"))

with open(out, "w") as f:
    f.write("groups:\n  - name: dashboard\n    rules:\n")
    for name, expr, _ in rules:
        f.write(f"      - record: {name}\n        expr: {json.dumps(expr)}\n")
for e in errors:
    print("    " + e, file=sys.stderr)
print(f"     {len(rules)} queries: {sum(1 for r in rules if r[0].startswith('dashboard:panel'))} panel targets, {sum(1 for r in rules if r[0].startswith('dashboard:variable'))} variables")
sys.exit(1 if errors else 0)
PY
  then
    echo "ok   draas.json structure (schemaVersion, datasource, variables, ids)"
    run "draas.json queries parse (promtool check rules)" promtool check rules --lint-fatal "$tmp/dashboard_rules.yml"
  else
    echo "FAIL draas.json structure" >&2
    failed=1
  fi
else
  echo "FAIL draas.json is not valid JSON" >&2
  sed 's/^/    /' "$tmp/json.err" >&2
  failed=1
fi

if [ "$failed" -ne 0 ]; then
  echo "deploy/prometheus: checks FAILED" >&2
  exit 1
fi
echo "deploy/prometheus: all checks passed"
