//! The published contract: the OpenAPI 3.1 document generated from the code (utoipa's
//! `#[utoipa::path]` above every handler, `ToSchema` on the wire types of `draas-protocol`, the
//! admin reports of `draas-bus` and the API), served at `GET /api/v1/openapi.json`, with the
//! browsable reference at `GET /api/v1/docs` ([`docs`]).
//!
//! - [`ApiDoc`]: the document's paths, tags and top-level text.
//! - [`middleware`]: security and the error responses of the layers in front of handlers,
//!   from the access policy of each route.
//! - [`links`]: the links from a created instance (and a command) to what can follow, which
//!   schemathesis' stateful phase walks.
//! - [`shape`]: flattened and `kind`-tagged schemas merged into single objects.
//! - [`schemas`], [`admin`]: the bodies the handlers build with `json!` (in [`admin`], around
//!   the admin reports of `draas-bus`); [`params`], [`responses`]: parameters and answers
//!   several operations share.
//!
//! `tests/tests/openapi.rs` holds the document to the router's table (`routes::table()`):
//! a route without an operation, or an operation without a route, fails it.

pub mod admin;
pub mod docs;
mod links;
mod middleware;
pub mod params;
pub mod responses;
pub mod schemas;
mod shape;

use std::sync::OnceLock;

use serde_json::Value;
use utoipa::OpenApi;

use crate::auth::tokens;
use crate::routes;

/// The document's paths and text; [`document`] is the finished document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "DRaaS API",
        description = include_str!("description.md"),
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        routes::system::healthz,
        routes::system::readyz,
        routes::system::platforms,
        routes::system::workers,
        routes::system::ping,
        routes::instances::create,
        routes::instances::list,
        routes::instances::get,
        routes::instances::patch,
        routes::apply::put,
        routes::lifecycle::delete,
        routes::lifecycle::start,
        routes::lifecycle::stop,
        routes::lifecycle::restart,
        routes::lifecycle::logs,
        routes::events::instance,
        routes::events::all,
        routes::operations::get,
        routes::data::queries,
        routes::data::results,
        routes::data::changes,
        routes::data::event,
        routes::data::batch,
        routes::admin::streams,
        routes::admin::pending,
        routes::admin::claim,
        routes::admin::retry,
        routes::admin::drop,
        routes::admin::dlq_list,
        routes::admin::dlq_replay,
        routes::admin::dlq_purge,
        routes::admin::dlq_show,
        routes::admin::consumers,
        routes::admin::prune,
        routes::admin::trim,
        routes::admin::audit,
        tokens::create,
        tokens::list,
        tokens::revoke,
        docs::document,
        docs::page,
        docs::asset,
    ),
    components(schemas(schemas::ErrorBody, draas_protocol::Event, docs::DocsAsset)),
    tags(
        (name = "instances", description = "Create, read, list, change and apply instances."),
        (name = "lifecycle", description = "Start, stop, restart and delete: commands that \
            finish within `?wait=` (200) or go on as an operation (202)."),
        (name = "operations", description = "The durable record of every command."),
        (name = "events", description = "Server-Sent Events of state changes."),
        (name = "data", description = "An instance's queries, results, change feeds and \
            source events, through the worker that runs it."),
        (name = "system", description = "Health, readiness, platforms and workers."),
        (name = "tokens", description = "Bearer tokens: create, list, revoke."),
        (name = "admin", description = "Operator actions on command streams, pending entries, \
            dead letters and the audit trail (`draas ops` over HTTP)."),
        (name = "docs", description = "This document and its reference page."),
    ),
)]
pub struct ApiDoc;

/// The finished document: generated, then the layers' responses and security added
/// ([`middleware`]), links added ([`links`]), flattened schemas merged and unused ones
/// dropped ([`shape`]). Built once.
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut doc = match serde_json::to_value(ApiDoc::openapi()) {
            Ok(doc) => doc,
            // Serializing plain data cannot fail; an empty document would fail every test.
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        };
        middleware::apply(&mut doc);
        links::apply(&mut doc);
        shape::merge_all_of(&mut doc);
        shape::prune(&mut doc);
        doc
    })
}
