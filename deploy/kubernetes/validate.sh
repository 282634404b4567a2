#!/usr/bin/env bash
# Validates the Kubernetes manifests in this directory offline, with no cluster:
#   1. every *.yaml except kustomization.yaml is listed in kustomization.yaml's resources, and
#      every listed resource exists;
#   2. every manifest validates with `kubernetes-validate --strict` (its bundled OpenAPI
#      schemas: unknown fields, wrong types and unknown kinds fail);
#   3. when kubectl is on PATH, `kubectl kustomize` builds the kustomization and every
#      resource it emits validates the same way;
#   4. house rules on the built resources: every container has cpu and memory requests and
#      limits, every resource carries the app.kubernetes.io name/part-of/component labels,
#      workload selectors match their pod labels, and there is no cluster-scoped RBAC.
#
#   bash deploy/kubernetes/validate.sh            # K8S_VERSION=1.32.0 by default
#
# Needs kubernetes-validate: python3 -m pip install kubernetes-validate==1.37.0
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
version=${K8S_VERSION:-1.32.0}

if command -v kubernetes-validate >/dev/null 2>&1; then
  kv=(kubernetes-validate)
elif python3 -c 'import kubernetes_validate' >/dev/null 2>&1; then
  kv=(python3 -m kubernetes_validate)
else
  echo "validate.sh: kubernetes-validate is missing; python3 -m pip install kubernetes-validate==1.37.0" >&2
  exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
fail() { echo "FAIL $*" >&2; failed=1; }

# 1. The resources list of kustomization.yaml against the files in this directory.
[ -f kustomization.yaml ] || { echo "FAIL no kustomization.yaml in $here" >&2; exit 1; }
awk '
  /^resources:/ { on = 1; next }
  on && /^[[:space:]]*#/ { next }
  on && /^[[:space:]]*-[[:space:]]*/ { sub(/^[[:space:]]*-[[:space:]]*/, ""); sub(/[[:space:]]+#.*$/, ""); gsub(/["'"'"']/, ""); print; next }
  on && /^[^[:space:]]/ { on = 0 }
' kustomization.yaml | sort -u >"$tmp/listed"
find . -maxdepth 1 -name '*.yaml' ! -name kustomization.yaml -printf '%f\n' | sort -u >"$tmp/present"
while read -r f; do fail "$f is not listed in kustomization.yaml's resources"; done < <(comm -13 "$tmp/listed" "$tmp/present")
while read -r f; do fail "kustomization.yaml lists $f, which does not exist"; done < <(comm -23 "$tmp/listed" "$tmp/present")
[ -s "$tmp/present" ] || fail "no manifests in $here"

# 2. Each manifest against the schemas. kubernetes-validate exits 0 on a kind it has no schema
# for (a misspelt kind, a missing CRD), so its output is checked for that too.
check() { # FILE LABEL
  local out rc=0
  out=$("${kv[@]}" -k "$version" --strict --quiet "$1" </dev/null 2>&1) || rc=$?
  if [ "$rc" -ne 0 ] || grep -q "Couldn't find schema" <<<"$out"; then
    fail "$2 (kubernetes-validate exit $rc)"
    [ -z "$out" ] || while IFS= read -r line; do echo "    $line"; done <<<"$out" >&2
    return
  fi
  echo "ok   $2 (Kubernetes $version, strict)"
}
while read -r f; do check "$f" "$f"; done <"$tmp/present"

# 2b. The objects the kubernetes worker generates for an instance, as its golden tests pin them.
for f in configmap deployment service volume; do
  check "$here/../../worker/src/driver/kubernetes/golden/$f.json" "worker-generated $f (golden)"
done

# 3. The kustomization as kubectl builds it.
if command -v kubectl >/dev/null 2>&1; then
  if kubectl kustomize . </dev/null >"$tmp/built.yaml" 2>"$tmp/kustomize.err"; then
    check "$tmp/built.yaml" "kubectl kustomize output"
  else
    fail "kubectl kustomize $here"
    sed 's/^/    /' "$tmp/kustomize.err" >&2
  fi
else
  echo "skip kubectl kustomize (kubectl is not on PATH)"
  # The house rules below still run, over the listed files.
  while read -r f; do cat "$f"; echo "---"; done <"$tmp/listed" >"$tmp/built.yaml"
fi

# 4. House rules, with the PyYAML that kubernetes-validate brings.
if python3 -c 'import yaml' >/dev/null 2>&1; then
  if python3 - "$tmp/built.yaml" <<'PY'; then echo "ok   house rules (resources, labels, selectors, RBAC scope)"; else fail "house rules"; fi
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
errors = []
LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/part-of", "app.kubernetes.io/component")
for d in docs:
    what = f"{d.get('kind')}/{d.get('metadata', {}).get('name')}"
    labels = d.get("metadata", {}).get("labels") or {}
    for key in LABELS:
        if key not in labels:
            errors.append(f"{what}: no label {key}")
    if labels.get("app.kubernetes.io/part-of") not in (None, "draas"):
        errors.append(f"{what}: app.kubernetes.io/part-of is not draas")
    if d.get("kind") in ("ClusterRole", "ClusterRoleBinding"):
        errors.append(f"{what}: cluster-scoped RBAC")
    template = (d.get("spec") or {}).get("template")
    if template is None:
        continue
    pod_labels = (template.get("metadata") or {}).get("labels") or {}
    for key in LABELS:
        if key not in pod_labels:
            errors.append(f"{what}: pod template has no label {key}")
    selector = ((d.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    if not selector or any(pod_labels.get(k) != v for k, v in selector.items()):
        errors.append(f"{what}: selector {selector} does not match the pod labels")
    pod = template.get("spec") or {}
    for c in (pod.get("initContainers") or []) + (pod.get("containers") or []):
        res = c.get("resources") or {}
        for kind in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in (res.get(kind) or {}):
                    errors.append(f"{what}: container {c.get('name')} has no {kind}.{r}")
for e in errors:
    print("    " + e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
else
  echo "skip house rules (python3 has no yaml module)"
fi

if [ "$failed" -ne 0 ]; then
  echo "deploy/kubernetes: validation FAILED" >&2
  exit 1
fi
echo "deploy/kubernetes: all manifests valid"
