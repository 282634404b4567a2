//! The parameters several operations share, as `IntoParams` types: an instance named by id
//! or name, `?wait=`, the command headers, and the list filters. Schema-only; the handlers
//! read the same names (`routes::lifecycle::wait_param`, `routes::count_param`, …).

#![allow(dead_code)]

use draas_protocol::{InstanceState, Platform};
use serde::Deserialize;
use utoipa::IntoParams;

/// The instance of the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct InstancePath {
    /// The instance's id (a UUID), or its name in the caller's tenant.
    #[param(
        example = "sensors",
        pattern = r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)$"
    )]
    pub id: String,
}

/// How long to wait for the command.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Seconds to wait for the command to finish before answering `202` with the pending
    /// operation (default from the API's configuration, 30 s; capped at its maximum, 300 s).
    #[param(minimum = 0, example = 10, nullable = false)]
    pub wait: Option<f64>,
}

/// The headers of a command request.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct CommandHeaders {
    /// Makes a retry safe: the same key with the same request answers with the original
    /// operation; with a different request it is a `422 idempotency_key_reused`. 1–255
    /// visible ASCII characters; keys are per tenant and remembered for 7 days.
    #[serde(rename = "Idempotency-Key")]
    #[param(
        min_length = 1,
        max_length = 255,
        pattern = "^[!-~]+$",
        example = "start-sensors-2026-01-01",
        nullable = false
    )]
    pub idempotency_key: Option<String>,
    /// W3C trace context, carried into the command.
    #[param(nullable = false)]
    pub traceparent: Option<String>,
}

/// Filters and paging of the instance list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InstanceListQuery {
    /// Instances per page.
    #[param(minimum = 1, maximum = 500, default = 50, nullable = false)]
    pub limit: Option<u32>,
    /// Only instances of this platform.
    #[param(nullable = false)]
    pub platform: Option<Platform>,
    /// Only instances in this state.
    #[param(nullable = false)]
    pub state: Option<InstanceState>,
    /// Only instances with this label, as `key=value`; repeated, only instances with every
    /// one of them (at most 16).
    #[param(example = json!(["team=iot", "env=prod"]), nullable = false, max_items = 16)]
    pub label: Option<Vec<String>>,
    /// The `nextCursor` of the previous page.
    #[param(value_type = Option<uuid::Uuid>, nullable = false)]
    pub cursor: Option<String>,
}
