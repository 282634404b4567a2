#!/usr/bin/env bash
# Runs schemathesis against a live DRaaS API with the contract's checks:
#   run.sh API_URL TOKEN [more schemathesis options]
# API_URL is the API's base (http://127.0.0.1:8080), TOKEN a bearer token holding every
# scope. SCHEMATHESIS names the executable (default: the one of target/schemathesis-venv,
# else `schemathesis` on PATH). Settings: schemathesis.toml; hooks: hooks.py (the platform of
# generated instances, the run's own token, DRAAS_ST_TOKEN_ID). tests/tests/schemathesis.rs
# runs it with its sizes, seed and exclusions (each named there with its reason).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 API_URL TOKEN [schemathesis options]" >&2
  exit 2
fi
url="${1%/}"
token="$2"
shift 2
here="$(cd "$(dirname "$0")" && pwd)"
st="${SCHEMATHESIS:-$here/../../target/schemathesis-venv/bin/schemathesis}"
[ -x "$st" ] || st=schemathesis
export SCHEMATHESIS_HOOKS=hooks
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
exec "$st" --config-file "$here/schemathesis.toml" run "$url/api/v1/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --header "Authorization: Bearer $token" \
  --generation-with-security-parameters false \
  --generation-database none \
  --no-color \
  "$@"
