#!/usr/bin/env bash
# Creates the virtualenv of the API-contract tests (schemathesis, openapi-spec-validator) at
# $1 (default: <repo>/target/schemathesis-venv) and installs requirements.txt into it. The
# tests find it there, or through DRAAS_SCHEMATHESIS=/path/to/venv/bin/schemathesis.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-$here/../../target/schemathesis-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
"$venv/bin/schemathesis" --version
