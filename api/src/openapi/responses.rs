//! Response sets several operations share, as `IntoResponses` types: the answers of the
//! instance commands (start, stop, restart, delete) and the 400 of the admin endpoints.
//! Schema-only; each variant's doc comment is the response's description.

#![allow(dead_code)]

use draas_protocol::Operation;
use utoipa::IntoResponses;

use super::schemas::ErrorBody;

/// What `POST /api/v1/instances/{id}/start|stop|restart` and `DELETE /api/v1/instances/{id}`
/// answer.
#[derive(IntoResponses)]
pub enum CommandAnswers {
    /// The command ended: the finished operation (`state` `succeeded` or `failed`, with
    /// `error`).
    #[response(status = 200, headers(("Location" = String, description = "The operation's URL.")))]
    Finished(Operation),
    /// Still running after `wait`: the pending operation; poll `Location`.
    #[response(status = 202, headers(("Location" = String, description = "The operation's URL.")))]
    Pending(Operation),
    /// Neither an instance id nor a name (`invalid_id`), a bad `wait` (`invalid_query`) or
    /// `Idempotency-Key` (`invalid_header`).
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No such instance in the caller's tenant (`not_found`).
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The instance's state does not allow the command (`illegal_transition`, with
    /// `details.state` and `details.allowed`), the tenant's `max-running` quota is reached by a
    /// start or restart (`quota_exceeded`), or the first request with this `Idempotency-Key` is
    /// still being accepted (`idempotent_request_in_progress`).
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// This `Idempotency-Key` was used for a different request (`idempotency_key_reused`).
    #[response(status = 422)]
    Unprocessable(ErrorBody),
    /// No live worker of the instance's platform, or Redis cannot be reached (`unavailable`).
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// The 400 of every admin endpoint.
#[derive(IntoResponses)]
pub enum AdminErrors {
    /// A missing, unknown or invalid parameter or field (`missing_field`,
    /// `unknown_parameter`, `invalid_platform`, `invalid_field`); `details.field` names it.
    #[response(status = 400)]
    BadRequest(ErrorBody),
}
