//! Who is asking: the identity the authentication layer attaches to every request under
//! `/api/v1/`, which handlers take as an extractor. A handler never sees a request without
//! one: a missing `Caller` is a server fault (the layer was not installed), never an
//! anonymous pass.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use draas_protocol::Timestamp;
use draas_protocol::auth::{DEFAULT_TENANT, Scope, Scopes};

use crate::error::ApiError;

/// The authenticated identity of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's id (never its secret); `None` when authentication is off.
    pub token_id: Option<String>,
    /// The tenant every instance this caller creates belongs to, and the only one it sees
    /// unless it is a cluster administrator.
    pub tenant: String,
    pub scopes: Scopes,
    /// When the caller's token expires; tokens it makes never outlive it.
    pub expires_at: Option<Timestamp>,
}

impl Caller {
    /// The identity of every request when authentication is off (`--auth none`): a cluster
    /// administrator of the default tenant.
    pub fn unauthenticated() -> Self {
        Caller {
            token_id: None,
            tenant: DEFAULT_TENANT.to_owned(),
            scopes: [Scope::All].into_iter().collect(),
            expires_at: None,
        }
    }

    /// Whether this caller sees every tenant's objects.
    pub fn is_cluster_admin(&self) -> bool {
        self.scopes.is_cluster_admin()
    }

    /// Whether this caller may see an object of `tenant`. Objects it may not see answer 404
    /// exactly as unknown ids do.
    pub fn sees(&self, tenant: &str) -> bool {
        self.is_cluster_admin() || self.tenant == tenant
    }

    /// Who did it, for events and the audit stream: the token id, or `anonymous`.
    pub fn actor(&self) -> String {
        self.token_id
            .clone()
            .unwrap_or_else(|| "anonymous".to_owned())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("no caller identity on the request".into()))
    }
}
