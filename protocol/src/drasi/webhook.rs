//! Webhook mode of the http source (`webhooks:`): routes, auth, CORS and payload mappings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::lenient;

/// `webhooks:` on an http source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookConfig {
    /// What to do with a request no mapping handles: `accept_and_log`, `accept_and_skip` or
    /// `reject`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_behavior: Option<ErrorBehavior>,
    /// CORS settings of the webhook routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsConfig>,
    /// The routes; each turns the requests it matches into change events.
    pub routes: Vec<WebhookRoute>,
}

/// What to do with a request no mapping can turn into events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorBehavior {
    AcceptAndLog,
    AcceptAndSkip,
    Reject,
}

/// CORS answers of the webhook routes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CorsConfig {
    /// Answer CORS requests.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<crate::schema::Flag>)]
    pub enabled: Option<bool>,
    /// Origins allowed (`*` for any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_origins: Option<Vec<String>>,
    /// Methods allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_methods: Option<Vec<String>>,
    /// Request headers allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_headers: Option<Vec<String>>,
    /// Response headers exposed to the page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expose_headers: Option<Vec<String>>,
    /// Allow credentials (cookies, authorization).
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<crate::schema::Flag>)]
    pub allow_credentials: Option<bool>,
    /// How long a preflight answer may be cached, in seconds.
    #[serde(
        default,
        deserialize_with = "lenient::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<crate::schema::Count>)]
    pub max_age: Option<u64>,
}

/// One webhook route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookRoute {
    /// The route's path; `:name` segments capture values the templates can use.
    pub path: String,
    /// The HTTP methods it accepts (default POST).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<HttpMethod>>,
    /// How its requests are authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    /// Overrides the webhook's `errorBehavior` for this route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_behavior: Option<ErrorBehavior>,
    /// How a request becomes change events: every mapping whose `when` holds produces one.
    pub mappings: Vec<WebhookMapping>,
}

/// An HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

/// How webhook requests are authenticated: a signature, a bearer token, or both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthConfig {
    /// An HMAC signature of the body, in a header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureConfig>,
    /// A bearer token in `Authorization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer: Option<BearerConfig>,
}

/// An HMAC signature check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignatureConfig {
    /// `hmac-sha1` or `hmac-sha256`.
    #[serde(rename = "type")]
    pub algorithm: SignatureAlgorithm,
    /// Name of the environment variable holding the secret.
    pub secret_env: String,
    /// The header holding the signature.
    pub header: String,
    /// What precedes the signature in the header (`sha256=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// `hex` or `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<SignatureEncoding>,
}

/// The HMAC algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureAlgorithm {
    HmacSha1,
    HmacSha256,
}

/// How the signature is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    Hex,
    Base64,
}

/// A bearer token check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BearerConfig {
    /// Name of the environment variable holding the token.
    pub token_env: String,
}

/// One change event made from a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookMapping {
    /// The condition on the request; always when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<MappingCondition>,
    /// The change: `insert`, `update` or `delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<OperationType>,
    /// A payload path whose value names the operation (with `operationMap`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_from: Option<String>,
    /// Payload values mapped to operations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_map: Option<BTreeMap<String, OperationType>>,
    /// `node` or `relation`.
    pub element_type: ElementType,
    /// A template string, or `{value, format}` with an explicit timestamp format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_from: Option<serde_json::Value>,
    /// The element made: id, labels and properties as Handlebars templates over the request
    /// (`payload`, `headers`, `route`).
    pub template: ElementTemplate,
}

/// A condition on a webhook request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MappingCondition {
    /// The header to test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// The payload path to test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Holds when the value equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    /// Holds when the value contains this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    /// Holds when the value matches this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// A change's operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OperationType {
    Insert,
    Update,
    Delete,
}

/// What a change is about: a node or a relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ElementType {
    Node,
    Relation,
}

/// The element a mapping makes, as Handlebars templates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ElementTemplate {
    /// The element's id.
    pub id: String,
    /// The element's labels.
    pub labels: Vec<String>,
    /// The element's properties: a template string, or a map of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<serde_json::Value>,
    /// A relation's start node id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// A relation's end node id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}
