//! Tenant quotas on the request path: the 409 `quota_exceeded` a refusal becomes, and the
//! checks made at create, patch and start (the counting lives in `draas_bus::store` quotas).

use draas_bus::store::{Limit, QuotaExceeded};
use draas_protocol::drasi::DrasiConfig;
use serde_json::json;
use uuid::Uuid;

use crate::App;
use crate::error::{ApiError, ApiResult};

/// The 409 for a refusal: `details` names the limit, its maximum and the current count.
pub fn exceeded(tenant: &str, refusal: QuotaExceeded) -> ApiError {
    let QuotaExceeded {
        limit,
        maximum,
        current,
    } = refusal;
    let message = match limit {
        Limit::MaxInstances => format!(
            "tenant `{tenant}` has {current} instances; its quota allows {maximum} (max-instances)"
        ),
        Limit::MaxRunning => format!(
            "tenant `{tenant}` has {current} instances starting or running; its quota allows {maximum} (max-running)"
        ),
        Limit::MaxConfigBytes => format!(
            "the config is {current} bytes; tenant `{tenant}`'s quota allows {maximum} (max-config-bytes)"
        ),
    };
    let field = match limit {
        Limit::MaxConfigBytes => Some("config"),
        _ => None,
    };
    let mut details = json!({
        "limit": limit.as_str(),
        "maximum": maximum,
        "current": current,
        "tenant": tenant,
    });
    if let Some(field) = field {
        details["field"] = json!(field);
    }
    ApiError::Conflict {
        code: "quota_exceeded",
        message,
        details,
    }
}

/// The size `max-config-bytes` judges: the config as stored (compact JSON).
pub fn config_bytes(config: &DrasiConfig) -> ApiResult<u64> {
    serde_json::to_vec(config)
        .map(|v| v.len() as u64)
        .map_err(|e| ApiError::Internal(format!("config does not serialize: {e}")))
}

/// Counts new instance `id` against `tenant`'s quota, or refuses with nothing written.
pub async fn reserve_instance(
    app: &App,
    tenant: &str,
    id: Uuid,
    config: &DrasiConfig,
) -> ApiResult<()> {
    let bytes = config_bytes(config)?;
    app.store
        .reserve_instance(tenant, id, bytes)
        .await?
        .map_err(|refusal| exceeded(tenant, refusal))
}

/// Checks `max-config-bytes` for a patched config.
pub async fn check_config(app: &App, tenant: &str, config: &DrasiConfig) -> ApiResult<()> {
    let bytes = config_bytes(config)?;
    app.store
        .check_config_bytes(tenant, bytes)
        .await?
        .map_err(|refusal| exceeded(tenant, refusal))
}

/// Takes a `max-running` slot for a start of instance `id`, atomically, or refuses.
pub async fn reserve_start(app: &App, tenant: &str, id: Uuid) -> ApiResult<()> {
    app.store
        .reserve_running(tenant, id)
        .await?
        .map_err(|refusal| exceeded(tenant, refusal))
}
