"""Schemathesis hooks of the DRaaS contract test (run.sh sets SCHEMATHESIS_HOOKS=hooks).

- Instances are placed on the process platform: the test runs one process worker, and a
  command for a platform without a live worker is answered 503 `unavailable` by design
  (documented); the docker and kubernetes platforms have tests of their own. The generated
  value is replaced, never the case dropped. (Pings: `parameters` in schemathesis.toml.)
- The run's own token (DRAAS_ST_TOKEN_ID) is never revoked: every request after that would
  be a 401 and test nothing.
"""

import os

import schemathesis

PLATFORM = "process"
OTHER_PLATFORMS = ("docker", "kubernetes")
OWN_TOKEN_ID = os.environ.get("DRAAS_ST_TOKEN_ID", "")


@schemathesis.hook
def map_case(ctx, case):
    operation_id = case.operation.definition.raw.get("operationId")
    body = case.body
    if operation_id == "createInstance" and isinstance(body, dict):
        if body.get("platform") in OTHER_PLATFORMS:
            body["platform"] = PLATFORM
    if operation_id == "putInstance" and isinstance(body, dict):
        spec = body.get("spec")
        if isinstance(spec, dict) and spec.get("platform") in OTHER_PLATFORMS:
            spec["platform"] = PLATFORM
    return case


@schemathesis.hook
def filter_case(ctx, case):
    operation_id = case.operation.definition.raw.get("operationId")
    if operation_id == "revokeToken" and case.path_parameters:
        return case.path_parameters.get("id") != OWN_TOKEN_ID
    return True
