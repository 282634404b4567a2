//! Authentication and authorisation of API requests.
//!
//! - [`caller`]: the [`Caller`] identity every request under `/api/v1/` carries.
//!
//! Until token authentication is configured, [`attach_unauthenticated`] gives every request
//! the identity of `--auth none`.

pub mod caller;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

pub use caller::Caller;

/// `--auth none`: every request is a cluster administrator of the default tenant.
pub async fn attach_unauthenticated(mut req: Request, next: Next) -> Response {
    req.extensions_mut().insert(Caller::unauthenticated());
    next.run(req).await
}
