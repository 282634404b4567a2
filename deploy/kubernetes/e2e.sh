#!/usr/bin/env bash
# The README's walk-through on a real Kubernetes cluster: DRaaS deployed with
# deploy/kubernetes, one instance on the kubernetes platform created, started, fed an event,
# queried, stopped, started again and deleted, checking the cluster's objects at each step.
#
#   bash deploy/kubernetes/e2e.sh                       # the current kubectl context, or kind
#   KIND_CLUSTER=draas-e2e bash deploy/kubernetes/e2e.sh   # a kind cluster (created if missing)
#
# Needs kubectl, docker, curl and jq; kind when KIND_CLUSTER is set or there is no current
# context. On kind the images are built locally and loaded into the cluster. On any other
# cluster the nodes must be able to pull them: push them and set CONTROL_IMAGE and
# RUNTIME_IMAGE to their registry names (PUSH=1 pushes them after the build).
#
# Environment:
#   KIND_CLUSTER        use (or create) this kind cluster
#   CONTROL_IMAGE       image of the API and workers       (default draas:latest)
#   RUNTIME_IMAGE       image of the instances            (default draas-runtime:latest)
#   SKIP_BUILD=1        use the images as they are
#   PUSH=1              docker push both images after building them (not on kind)
#   TIMEOUT             seconds for rollouts              (default 300)
#   API_PORT            local port of the API's port-forward (default 18080); the instance's
#                       data goes through the API, never a port-forward of its own
#   TEARDOWN=1          kubectl delete -k deploy/kubernetes at the end (and the kind cluster
#                       if this script created it); by default everything is left running
set -euo pipefail
cd "$(dirname "$0")/../.."

CONTROL_IMAGE=${CONTROL_IMAGE:-draas:latest}
RUNTIME_IMAGE=${RUNTIME_IMAGE:-draas-runtime:latest}
TIMEOUT=${TIMEOUT:-300}
API_PORT=${API_PORT:-18080}
CP=draas              # the control plane's namespace
NS=draas-instances    # the instances' namespace
API=http://127.0.0.1:$API_PORT

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf '\nFAIL: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Prerequisites and the cluster.
for tool in kubectl docker curl jq; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done

on_kind=false
created_cluster=false
if [ -n "${KIND_CLUSTER:-}" ] || ! kubectl config current-context >/dev/null 2>&1; then
  command -v kind >/dev/null 2>&1 ||
    die "no current kubectl context and no kind: install kind, or point KUBECONFIG at a cluster"
  KIND_CLUSTER=${KIND_CLUSTER:-draas-e2e}
  if ! kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
    log "creating kind cluster $KIND_CLUSTER"
    kind create cluster --name "$KIND_CLUSTER" --wait 180s
    created_cluster=true
  fi
  CONTEXT=kind-$KIND_CLUSTER
  on_kind=true
else
  CONTEXT=$(kubectl config current-context)
  if [[ $CONTEXT == kind-* ]] && command -v kind >/dev/null 2>&1 &&
    kind get clusters 2>/dev/null | grep -qx "${CONTEXT#kind-}"; then
    KIND_CLUSTER=${CONTEXT#kind-}
    on_kind=true
  fi
fi
# Every kubectl call names the context, so the user's current context is never changed.
k() { kubectl --context "$CONTEXT" "$@"; }
k cluster-info >/dev/null || die "cannot reach the cluster of context $CONTEXT"
log "cluster: context $CONTEXT (kind: $on_kind)"

# ---------------------------------------------------------------------------------------------
# Port-forwards and cleanup.
tmp=$(mktemp -d)
forwards=()         # pids of the port-forwards this script started

# forward NAME ARGS...: `kubectl port-forward ARGS` in the background, logged to $tmp/NAME.log.
forward() {
  local name=$1
  shift
  # kubectl itself, not the k function: $! must be kubectl's pid, not a subshell's.
  kubectl --context "$CONTEXT" port-forward --address 127.0.0.1 "$@" >"$tmp/$name.log" 2>&1 &
  forwards+=("$!")
  last_forward=$!
}

unforward() { # PID
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  for pid in ${forwards[@]+"${forwards[@]}"}; do unforward "$pid"; done
  if [ "$rc" -ne 0 ]; then
    echo "--- diagnostics (exit $rc) ---" >&2
    k -n "$CP" get pods -o wide >&2 || true
    k -n "$NS" get deploy,svc,cm,pods -o wide >&2 || true
    k -n "$NS" get events --sort-by=.lastTimestamp 2>/dev/null | tail -n 20 >&2 || true
    k -n "$CP" logs deploy/draas-worker-kubernetes --tail=60 >&2 || true
    k -n "$CP" logs deploy/draas-api --tail=30 >&2 || true
    for f in "$tmp"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 5 "$f" >&2; }; done
  fi
  if [ -n "${TEARDOWN:-}" ]; then
    k delete -k deploy/kubernetes --ignore-not-found --wait=false >&2 || true
    if $created_cluster; then kind delete cluster --name "$KIND_CLUSTER" >&2 || true; fi
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for SECONDS WHAT COMMAND...: runs COMMAND every second until it succeeds.
wait_for() {
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "timed out waiting for $what"
    sleep 1
  done
}

# call METHOD URL [JSON]: sets $status and $body.
call() {
  local args=(-sS -X "$1" -o "$tmp/body" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$2")
  if [ $# -ge 3 ]; then args+=(-H 'content-type: application/json' --data-binary "$3"); fi
  status=$(curl "${args[@]}") || die "$1 $2: no answer"
  body=$(cat "$tmp/body")
}

# expect STATUS JQ-FILTER WHAT: the last call answered STATUS and its body satisfies the filter.
expect() {
  [ "$status" = "$1" ] || die "$3: HTTP $status, expected $1: $body"
  jq -e "$2" >/dev/null <<<"$body" || die "$3: $2 does not hold for $body"
  echo "ok   $3"
}

instance_state() { # ID STATE
  call GET "$API/api/v1/instances/$1"
  expect 200 ".state == \"$2\"" "instance is $2"
}

objects() { # ID: the instance's Deployment, Service, ConfigMap and data volume claim names
  k -n "$NS" get deployments,services,configmaps,persistentvolumeclaims -l "io.draas.instance.id=$1" -o name
}

no_objects() { # ID: none of them is left
  local left
  left=$(objects "$1") && [ -z "$left" ]
}

replicas() { # NAME: the Deployment's desired replicas
  k -n "$NS" get deployment "$1" -o 'jsonpath={.spec.replicas}'
}

no_pods() { # NAME: the Deployment runs no pod
  local running
  running=$(k -n "$NS" get deployment "$1" -o 'jsonpath={.status.replicas}') &&
    [ "${running:-0}" = 0 ]
}

# ---------------------------------------------------------------------------------------------
# Images.
if [ -z "${SKIP_BUILD:-}" ]; then
  log "building $CONTROL_IMAGE and $RUNTIME_IMAGE (a release build of the workspace each)"
  docker build -f deploy/docker/Dockerfile -t "$CONTROL_IMAGE" .
  docker build -f deploy/docker/Dockerfile.runtime -t "$RUNTIME_IMAGE" .
  if ! $on_kind && [ -n "${PUSH:-}" ]; then
    docker push "$CONTROL_IMAGE"
    docker push "$RUNTIME_IMAGE"
  fi
fi
if $on_kind; then
  log "loading the images into kind cluster $KIND_CLUSTER"
  kind load docker-image --name "$KIND_CLUSTER" "$CONTROL_IMAGE" "$RUNTIME_IMAGE"
else
  echo "not kind: the nodes must be able to pull $CONTROL_IMAGE and $RUNTIME_IMAGE" >&2
fi

# ---------------------------------------------------------------------------------------------
# DRaaS itself.
log "kubectl apply -k deploy/kubernetes"
existed=false
k -n "$CP" get deployment draas-api >/dev/null 2>&1 && existed=true
# The data-plane secret the API and the workers share: made once, never in the manifests.
k apply -f deploy/kubernetes/namespaces.yaml
if ! k -n "$CP" get secret draas-data-plane >/dev/null 2>&1; then
  k -n "$CP" create secret generic draas-data-plane --from-literal=secret="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
fi
k apply -k deploy/kubernetes
if [ "$CONTROL_IMAGE" != draas:latest ]; then
  for d in draas-api draas-worker-process; do
    k -n "$CP" set image "deployment/$d" "*=$CONTROL_IMAGE"
  done
  # Not `*`: its init container runs the instance image (set below).
  k -n "$CP" set image deployment/draas-worker-kubernetes "worker=$CONTROL_IMAGE"
elif $existed && [ -z "${SKIP_BUILD:-}" ]; then
  # Same tag, new build: restart so the pods run the image just loaded.
  k -n "$CP" rollout restart deployment/draas-api deployment/draas-worker-kubernetes deployment/draas-worker-process
fi
# The instances run the image just built (a `:latest` tag: the worker's pull policy must
# allow a loaded image, i.e. IfNotPresent, or set RUNTIME_IMAGE to another tag).
k -n "$CP" set env deployment/draas-worker-kubernetes "DRAAS_IMAGE=$RUNTIME_IMAGE"
# Its init container asks the same image what it runs (the worker's --capabilities-file).
k -n "$CP" set image deployment/draas-worker-kubernetes "capabilities=$RUNTIME_IMAGE"

log "waiting for the rollouts"
k -n "$CP" rollout status statefulset/redis --timeout="${TIMEOUT}s"
k -n "$CP" rollout status deployment/draas-worker-process --timeout="${TIMEOUT}s"
# The API refuses to start while Redis holds no token: make one for this walk-through with
# the draas binary of a worker pod (it reaches the same Redis).
log "creating an API token"
TOKEN=$(k -n "$CP" exec deploy/draas-worker-process -- \
  draas tokens create --tenant default --scope '*' --description e2e --quiet) ||
  die "cannot create an API token"
for d in draas-api draas-worker-kubernetes; do
  k -n "$CP" rollout status "deployment/$d" --timeout="${TIMEOUT}s"
done

log "port-forward svc/draas-api to $API"
forward api -n "$CP" svc/draas-api "$API_PORT:80"
wait_for 30 "the API at $API/readyz" curl -fsS "$API/readyz"
# The workers heartbeat into Redis; the platform is available once one of them has.
wait_for 60 "a live kubernetes worker" \
  sh -c "curl -fsS -H 'Authorization: Bearer $TOKEN' '$API/api/v1/platforms' | jq -e '.items[] | select(.platform == \"kubernetes\") | .available' | grep -qx true"
call GET "$API/api/v1/workers"
echo "workers: $(jq -c '[.items[]? | {platform, node}]' <<<"$body" 2>/dev/null || echo "$body")"

# ---------------------------------------------------------------------------------------------
# The walk-through.
# A previous run's instance keeps the name taken: delete it first.
call GET "$API/api/v1/instances?platform=kubernetes&limit=100"
for stale in $(jq -r '.items[]? | select(.name == "e2e") | .id' <<<"$body"); do
  log "deleting instance $stale left by a previous run"
  call DELETE "$API/api/v1/instances/$stale?wait=120"
done

log "creating instance e2e on the kubernetes platform"
call POST "$API/api/v1/instances" '{
  "name": "e2e", "platform": "kubernetes",
  "config": {
    "sources":   [{"kind": "http", "id": "readings"}],
    "queries":   [{"id": "hot", "sources": [{"sourceId": "readings"}],
                   "query": "MATCH (s:Sensor) WHERE s.temperature > 75 RETURN s.id AS id, s.temperature AS temperature"}],
    "reactions": [{"kind": "log", "id": "log", "queries": ["hot"]}]
  }}'
expect 201 '.id | type == "string"' "created"
ID=$(jq -r .id <<<"$body")
NAME=draas-$ID
instance_state "$ID" created

log "starting $ID"
call POST "$API/api/v1/instances/$ID/start?wait=120"
expect 200 '.state == "succeeded"' "start operation succeeded"
instance_state "$ID" running
INST=$body

k -n "$NS" get deployments,services,configmaps,persistentvolumeclaims -l "io.draas.instance.id=$ID"
got=$(objects "$ID") || die "cannot list the objects of $ID"
for want in "deployment.apps/$NAME" "service/$NAME" "configmap/$NAME" "persistentvolumeclaim/$NAME-data"; do
  grep -qx "$want" <<<"$got" || die "no $want labelled io.draas.instance.id=$ID; found: $got"
done
[ "$(wc -l <<<"$got")" -eq 4 ] || die "expected 4 objects labelled io.draas.instance.id=$ID, found: $got"
echo "ok   deployment, service, configmap $NAME and claim $NAME-data exist"
[ "$(replicas "$NAME")" = 1 ] || die "deployment $NAME wants $(replicas "$NAME") replicas, expected 1"
k -n "$NS" rollout status "deployment/$NAME" --timeout=120s

# The data plane goes through the API: API → a kubernetes worker → the instance's Service.
log "posting an event through the API, reading the query's results through the API"
call POST "$API/api/v1/instances/$ID/sources/readings/events" '{
  "operation": "insert",
  "element": {"type": "node", "id": "s1", "labels": ["Sensor"], "properties": {"id": "s1", "temperature": 80}}}'
[[ $status == 2* ]] || die "posting the event: HTTP $status: $body"
echo "ok   event accepted (HTTP $status)"
wait_for 30 "s1 in the results of query hot" \
  sh -c "curl -fsS -H 'Authorization: Bearer $TOKEN' '$API/api/v1/instances/$ID/queries/hot/results' | jq -e '[.items[]? | select(.id == \"s1\" and .temperature == 80)] | length == 1'"
call GET "$API/api/v1/instances/$ID/queries/hot/results"
echo "ok   query hot returns $(jq -c .items <<<"$body")"

call GET "$API/api/v1/instances/$ID/logs?tail=5"
[ "$status" = 200 ] || die "logs: HTTP $status: $body"
echo "ok   logs: $(jq -c . <<<"$body" | cut -c1-300)"

log "stopping $ID"
call POST "$API/api/v1/instances/$ID/stop?wait=120"
expect 200 '.state == "succeeded"' "stop operation succeeded"
instance_state "$ID" stopped
[ "$(replicas "$NAME")" = 0 ] || die "deployment $NAME wants $(replicas "$NAME") replicas after stop, expected 0"
echo "ok   deployment $NAME scaled to 0"
wait_for 120 "the pods of $NAME to go" no_pods "$NAME"
echo "ok   no pod left"

log "starting $ID again"
call POST "$API/api/v1/instances/$ID/start?wait=120"
expect 200 '.state == "succeeded"' "second start operation succeeded"
instance_state "$ID" running
[ "$(replicas "$NAME")" = 1 ] || die "deployment $NAME wants $(replicas "$NAME") replicas, expected 1"
k -n "$NS" rollout status "deployment/$NAME" --timeout=120s
wait_for 60 "the restarted instance's results through the API" \
  curl -fsS -H "Authorization: Bearer $TOKEN" "$API/api/v1/instances/$ID/queries/hot/results"
call GET "$API/api/v1/instances/$ID/queries/hot/results"
[ "$status" = 200 ] || die "query results after the restart: HTTP $status: $body"
echo "ok   restarted instance answers"

log "deleting $ID"
call DELETE "$API/api/v1/instances/$ID?wait=120"
expect 200 '.state == "succeeded"' "delete operation succeeded"
call GET "$API/api/v1/instances/$ID"
[ "$status" = 404 ] || die "instance still readable after delete: HTTP $status: $body"
echo "ok   instance gone from the API"
wait_for 120 "the objects of $ID to go" no_objects "$ID"
echo "ok   deployment, service and configmap $NAME deleted"

echo
echo PASS
