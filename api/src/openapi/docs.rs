//! The browsable reference: `GET /api/v1/docs` (a page of our own) and its assets under
//! `GET /api/v1/docs/{file}` (Swagger UI's files, embedded in the binary by
//! utoipa-swagger-ui's `vendored` build: no CDN), and `GET /api/v1/openapi.json`. Every answer
//! carries a `Content-Security-Policy` that lets the page load scripts, styles, images and
//! the document from this API only.

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa_swagger_ui::Config;

use crate::error::ApiError;

/// Where the document is served.
pub const DOCUMENT_PATH: &str = "/api/v1/openapi.json";
/// Where the reference page is served; its assets live under it.
pub const DOCS_PATH: &str = "/api/v1/docs";

/// The Swagger UI files the page loads, and their media types: nothing else is served.
pub const ASSETS: &[(&str, &str)] = &[
    ("swagger-ui.css", "text/css"),
    ("index.css", "text/css"),
    ("swagger-ui-bundle.js", "text/javascript"),
    ("swagger-ui-standalone-preset.js", "text/javascript"),
    ("swagger-initializer.js", "text/javascript"),
    ("favicon-32x32.png", "image/png"),
    ("favicon-16x16.png", "image/png"),
];

/// Only this API: no inline script, no other origin (Swagger UI sets inline styles).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; font-src 'self'; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The reference page: Swagger UI's stylesheets and scripts, all from [`DOCS_PATH`].
const PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="UTF-8">
  <title>DRaaS API reference</title>
  <link rel="stylesheet" type="text/css" href="/api/v1/docs/swagger-ui.css">
  <link rel="stylesheet" type="text/css" href="/api/v1/docs/index.css">
  <link rel="icon" type="image/png" href="/api/v1/docs/favicon-32x32.png" sizes="32x32">
  <link rel="icon" type="image/png" href="/api/v1/docs/favicon-16x16.png" sizes="16x16">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/api/v1/docs/swagger-ui-bundle.js" charset="UTF-8"></script>
  <script src="/api/v1/docs/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
  <script src="/api/v1/docs/swagger-initializer.js" charset="UTF-8"></script>
</body>
</html>
"#;

/// `GET /api/v1/openapi.json`: the document this binary was built with.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "getOpenApiDocument",
    tag = "docs",
    summary = "This API's OpenAPI 3.1 document",
    description = "Generated from the code of this binary (utoipa): every route, parameter, \
                   header, body, response and error code.",
    responses((status = 200, description = "The document.", content_type = "application/json",
        body = Object)),
)]
pub async fn document() -> Response {
    static BODY: OnceLock<Vec<u8>> = OnceLock::new();
    let body = BODY.get_or_init(|| super::document().to_string().into_bytes());
    answer(body.clone(), "application/json", "no-cache")
}

/// `GET /api/v1/docs`: the reference page.
#[utoipa::path(
    get,
    path = "/api/v1/docs",
    operation_id = "getDocsPage",
    tag = "docs",
    summary = "The browsable API reference (Swagger UI)",
    description = "An HTML page that loads Swagger UI from `/api/v1/docs/{file}` and this \
                   API's document from `/api/v1/openapi.json`; nothing from elsewhere.",
    responses((status = 200, description = "The page.", content_type = "text/html",
        body = String)),
)]
pub async fn page() -> Response {
    answer(
        PAGE.as_bytes().to_vec(),
        "text/html; charset=utf-8",
        "no-cache",
    )
}

/// `GET /api/v1/docs/{file}`: one of the page's assets.
#[utoipa::path(
    get,
    path = "/api/v1/docs/{file}",
    operation_id = "getDocsAsset",
    tag = "docs",
    summary = "A file of the reference page",
    params(("file" = DocsAsset, Path, description = "One of the page's files.")),
    responses(
        (status = 200, description = "The file.", content(
            (String = "text/css"), (String = "text/javascript"),
            (BinaryFile = "image/png"))),
        (status = 404, description = "No such file (`not_found`).",
            body = super::schemas::ErrorBody),
    ),
)]
pub async fn asset(Path(file): Path<String>) -> Response {
    let Some((name, media)) = ASSETS.iter().find(|(name, _)| *name == file) else {
        return ApiError::NotFound(format!("no docs file `{file}`")).into_response();
    };
    match utoipa_swagger_ui::serve(name, config()) {
        Ok(Some(found)) => answer(found.bytes.into_owned(), media, "public, max-age=3600"),
        Ok(None) => ApiError::NotFound(format!("no docs file `{file}`")).into_response(),
        Err(e) => ApiError::Internal(format!("docs file {file}: {e}")).into_response(),
    }
}

/// The name of a file the page loads.
pub struct DocsAsset;

impl utoipa::PartialSchema for DocsAsset {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(ASSETS.iter().map(|(name, _)| *name)))
            .into()
    }
}

impl utoipa::ToSchema for DocsAsset {}

/// A file's bytes (an image).
pub struct BinaryFile;

impl utoipa::PartialSchema for BinaryFile {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::schema::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Binary,
            )))
            .into()
    }
}

impl utoipa::ToSchema for BinaryFile {}

/// Swagger UI's settings: the document's URL, no validator badge (it would load an image
/// from another origin), "Try it out" on.
fn config() -> Arc<Config<'static>> {
    static CONFIG: OnceLock<Arc<Config<'static>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            Arc::new(
                Config::new([DOCUMENT_PATH])
                    .validator_url("none")
                    .try_it_out_enabled(true)
                    .display_request_duration(true),
            )
        })
        .clone()
}

fn answer(body: Vec<u8>, media: &str, cache: &'static str) -> Response {
    let mut response = (StatusCode::OK, Body::from(body)).into_response();
    let headers = response.headers_mut();
    if let Ok(media) = HeaderValue::from_str(media) {
        headers.insert(CONTENT_TYPE, media);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert("content-security-policy", HeaderValue::from_static(CSP));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}
