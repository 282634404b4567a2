//! The one policy of every route: open, or the scope a token must hold. The authentication
//! layer finds a request's policy by its matched route template and method; a route missing
//! from [`POLICIES`] is refused (fail closed), and the authorisation-matrix test walks the
//! router's own table (`routes::table()`) against this one.

use axum::http::Method;
use draas_protocol::auth::Scope;

/// What a route demands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token needed (health, readiness, the OpenAPI document and its reference page).
    Open,
    /// A valid token holding this scope (`*` holds every scope).
    Scope(Scope),
}

use Access::{Open, Scope as S};
use Scope::{Admin, DataRead, DataWrite, InstancesOperate, InstancesRead, InstancesWrite, Tokens};

/// (method, route template, access): one row per route of the router.
pub const POLICIES: &[(&str, &str, Access)] = &[
    ("GET", "/healthz", Open),
    ("GET", "/readyz", Open),
    ("GET", "/api/v1/openapi.json", Open),
    ("GET", "/api/v1/docs", Open),
    ("GET", "/api/v1/docs/{file}", Open),
    ("GET", "/api/v1/platforms", S(InstancesRead)),
    ("GET", "/api/v1/workers", S(Admin)),
    ("POST", "/api/v1/platforms/{platform}/ping", S(Admin)),
    ("POST", "/api/v1/instances", S(InstancesWrite)),
    ("GET", "/api/v1/instances", S(InstancesRead)),
    ("GET", "/api/v1/instances/{id}", S(InstancesRead)),
    ("PATCH", "/api/v1/instances/{id}", S(InstancesWrite)),
    ("PUT", "/api/v1/instances/{id}", S(InstancesWrite)),
    ("DELETE", "/api/v1/instances/{id}", S(InstancesWrite)),
    ("POST", "/api/v1/instances/{id}/start", S(InstancesOperate)),
    ("POST", "/api/v1/instances/{id}/stop", S(InstancesOperate)),
    (
        "POST",
        "/api/v1/instances/{id}/restart",
        S(InstancesOperate),
    ),
    ("GET", "/api/v1/instances/{id}/logs", S(InstancesOperate)),
    ("GET", "/api/v1/instances/{id}/events", S(InstancesRead)),
    ("GET", "/api/v1/instances/{id}/queries", S(DataRead)),
    (
        "GET",
        "/api/v1/instances/{id}/queries/{query}/results",
        S(DataRead),
    ),
    (
        "GET",
        "/api/v1/instances/{id}/queries/{query}/changes",
        S(DataRead),
    ),
    (
        "POST",
        "/api/v1/instances/{id}/sources/{source}/events",
        S(DataWrite),
    ),
    (
        "POST",
        "/api/v1/instances/{id}/sources/{source}/events/batch",
        S(DataWrite),
    ),
    ("GET", "/api/v1/events", S(InstancesRead)),
    ("GET", "/api/v1/operations/{id}", S(InstancesRead)),
    ("GET", "/api/v1/admin/streams", S(Admin)),
    ("GET", "/api/v1/admin/pending", S(Admin)),
    ("POST", "/api/v1/admin/claim", S(Admin)),
    ("POST", "/api/v1/admin/retry", S(Admin)),
    ("POST", "/api/v1/admin/drop", S(Admin)),
    ("GET", "/api/v1/admin/dlq", S(Admin)),
    ("POST", "/api/v1/admin/dlq/replay", S(Admin)),
    ("POST", "/api/v1/admin/dlq/purge", S(Admin)),
    ("GET", "/api/v1/admin/dlq/{id}", S(Admin)),
    ("GET", "/api/v1/admin/consumers", S(Admin)),
    ("POST", "/api/v1/admin/prune", S(Admin)),
    ("POST", "/api/v1/admin/trim", S(Admin)),
    ("GET", "/api/v1/admin/audit", S(Admin)),
    ("POST", "/api/v1/tokens", S(Tokens)),
    ("GET", "/api/v1/tokens", S(Tokens)),
    ("DELETE", "/api/v1/tokens/{id}", S(Tokens)),
];

/// The policy of `method` on the route template `path`, if it has one. HEAD is judged as GET.
pub fn policy_for(method: &Method, path: &str) -> Option<Access> {
    let method = if *method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    POLICIES
        .iter()
        .find(|(m, p, _)| *m == method && *p == path)
        .map(|(_, _, access)| *access)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_route_and_only_health_is_open() {
        for (i, (m, p, access)) in POLICIES.iter().enumerate() {
            assert!(
                !POLICIES[i + 1..]
                    .iter()
                    .any(|(m2, p2, _)| m == m2 && p == p2),
                "{m} {p} has two policies"
            );
            let docs = *p == "/api/v1/openapi.json" || p.starts_with("/api/v1/docs");
            assert_eq!(
                *access == Open,
                !p.starts_with("/api/v1/") || docs,
                "{m} {p}: only health, readiness and the API's documentation are open"
            );
        }
        assert_eq!(
            policy_for(&Method::HEAD, "/api/v1/instances"),
            Some(S(InstancesRead))
        );
        assert_eq!(policy_for(&Method::PUT, "/api/v1/instances"), None);
    }
}
