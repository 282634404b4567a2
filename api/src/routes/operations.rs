//! `GET /api/v1/operations/{id}`: the durable operation record, seen only by its tenant
//! (and cluster administrators).

use axum::Json;
use axum::extract::{Path, State};
use draas_protocol::Operation;

use super::parse_id;
use crate::App;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

#[utoipa::path(
    get,
    path = "/api/v1/operations/{id}",
    operation_id = "getOperation",
    tag = "operations",
    summary = "A command's operation record",
    description = "Poll it until `state` is `succeeded` or `failed`. Records are kept 7 days \
                   after they end.",
    params(("id" = uuid::Uuid, Path, description = "The operation's id.")),
    responses(
        (status = 200, description = "The operation as it stands.",
            body = draas_protocol::Operation),
        (status = 400, description = "Not an operation id (`invalid_id`).",
            body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "No such operation, or another tenant's (`not_found`).",
            body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn get(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Operation>> {
    let id = parse_id(&id, "operation")?;
    let not_found = || ApiError::NotFound(format!("operation {id} does not exist"));
    let op = app.store.operation(id).await?.ok_or_else(not_found)?;
    if caller.is_cluster_admin() {
        return Ok(Json(op));
    }
    // The operation's own tenant, else (records made by workers, or older than tenants) its
    // instance's; one of another tenant answers 404 exactly as an unknown id does.
    let tenant = match (&op.tenant, op.instance_id) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(instance)) => app
            .store
            .instance(instance)
            .await?
            .map(|s| s.instance.tenant),
        (None, None) => None,
    };
    match tenant {
        Some(t) if caller.sees(&t) => Ok(Json(op)),
        _ => Err(not_found()),
    }
}
