//! `GET /api/v1/operations/{id}`: the durable operation record.

use axum::Json;
use axum::extract::{Path, State};
use draas_protocol::Operation;

use super::parse_id;
use crate::App;
use crate::error::{ApiError, ApiResult};

pub async fn get(State(app): State<App>, Path(id): Path<String>) -> ApiResult<Json<Operation>> {
    let id = parse_id(&id, "operation")?;
    let op = app.store.operation(id).await?;
    op.map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("operation {id} does not exist")))
}
