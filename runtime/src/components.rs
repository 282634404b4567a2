//! Turns one (effective) instance of the config into a built, not yet started, DrasiLib:
//! sources, their bootstrap providers and reactions are created through the published
//! crates' plugin descriptors from their camelCase config, queries are mapped onto
//! drasi-lib's `QueryConfig`.
//!
//! - [`bootstrap`]: `bootstrapProviders` and each source's `bootstrapProvider`.
//! - [`postgres`]: what the PostgreSQL plugins are handed.
//! - [`storedproc`]: what the MySQL and SQL Server stored-procedure plugins are handed.
//!
//! `http-adaptive` and `grpc-adaptive` reactions run as the http and grpc reactions with
//! adaptive batching ([`ReactionConfig::as_http`], [`ReactionConfig::as_grpc`]).

pub mod bootstrap;
pub mod postgres;
pub mod storedproc;

use std::sync::Arc;

use draas_protocol::drasi::{
    InstanceConfig, QueryConfig, QueryLanguage, ReactionConfig, SourceConfig,
};
use drasi_lib::{DrasiLib, Query, Source};
use drasi_plugin_sdk::descriptor::{ReactionPluginDescriptor, SourcePluginDescriptor};
use serde::Serialize;

use crate::RuntimeError;

/// Keys every source/reaction shares; the plugin descriptors take only the kind's own keys.
const COMMON_KEYS: &[&str] = &[
    "id",
    "autoStart",
    "bootstrapProvider",
    "identityProvider",
    "queries",
];

/// Builds the DrasiLib for one instance. `prefix` is the instance's config path ("" for the
/// implicit top-level instance) and is used in error messages.
pub async fn build_instance(
    prefix: &str,
    id: &str,
    inst: &InstanceConfig,
) -> Result<DrasiLib, RuntimeError> {
    let at = |rest: String| {
        if prefix.is_empty() {
            rest
        } else {
            format!("{prefix}.{rest}")
        }
    };
    let mut builder = DrasiLib::builder().with_id(id);
    // A resolved config: every settings field holds its value.
    if let Some(cap) = inst
        .default_priority_queue_capacity
        .as_ref()
        .and_then(|c| c.get())
    {
        builder = builder.with_priority_queue_capacity(to_usize(
            &at("defaultPriorityQueueCapacity".into()),
            cap,
        )?);
    }
    if let Some(cap) = inst
        .default_dispatch_buffer_capacity
        .as_ref()
        .and_then(|c| c.get())
    {
        builder = builder.with_dispatch_buffer_capacity(to_usize(
            &at("defaultDispatchBufferCapacity".into()),
            cap,
        )?);
    }
    if let Some(store) = &inst.state_store {
        let path = std::path::Path::new(&store.path);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| component_err(at("stateStore.path".into()), e))?;
        }
        let provider = drasi_state_store_redb::RedbStateStoreProvider::new(path)
            .map_err(|e| component_err(at("stateStore.path".into()), e))?;
        builder = builder.with_state_store_provider(Arc::new(provider));
    }
    // The WAL of sources with `durability.enabled: true` (http, grpc): one redb file per
    // source under `data/<instance id>/wal`, which drasi-lib replays for persistent queries.
    // Only wired when some source asks for it.
    if inst.sources.iter().any(durable) {
        let path = instance_data_dir(id).join("wal");
        std::fs::create_dir_all(&path).map_err(|e| component_err(at("sources".into()), e))?;
        builder = builder.with_wal_provider(Arc::new(drasi_wal_redb::RedbWalProvider::new(path)));
    }
    if inst.persist_index == Some(true) {
        // As drasi-server does: `data/<instance id>/index` under the working directory (the
        // process platform's instance directory; on Docker `/app`, whose `data` is the
        // instance's volume). RocksDB creates what is missing.
        let path = index_path(id);
        std::fs::create_dir_all(&path).map_err(|e| component_err(at("persistIndex".into()), e))?;
        let provider = drasi_index_rocksdb::RocksDbIndexProvider::new(path, false, false);
        builder = builder.with_default_index_provider("rocksdb", Arc::new(provider));
    }

    let bootstrap_entries = bootstrap::entries(prefix, inst)?;
    for (i, source) in inst.sources.iter().enumerate() {
        let path = at(format!("sources[{i}]"));
        let created = match source {
            SourceConfig::Http(s) => {
                drasi_source_http::descriptor::HttpSourceDescriptor
                    .create_source(&s.id, &plugin_body(s), source.auto_start())
                    .await
            }
            SourceConfig::Mock(s) => {
                drasi_source_mock::descriptor::MockSourceDescriptor
                    .create_source(&s.id, &plugin_body(s), source.auto_start())
                    .await
            }
            SourceConfig::Postgres(s) => {
                drasi_source_postgres::descriptor::PostgresSourceDescriptor
                    .create_source(&s.id, &plugin_body(s), source.auto_start())
                    .await
            }
            SourceConfig::Grpc(s) => {
                drasi_source_grpc::descriptor::GrpcSourceDescriptor
                    .create_source(&s.id, &plugin_body(s), source.auto_start())
                    .await
            }
        };
        let created = created.map_err(|e| component_err(path, format!("{e:#}")))?;
        // As drasi-server does: the provider is attached before the source is added.
        if let Some(resolved) = bootstrap::for_source(prefix, inst, i, &bootstrap_entries)? {
            created
                .set_bootstrap_provider(bootstrap::create(&resolved).await?)
                .await;
        }
        builder = builder.with_source(created);
    }

    for (i, query) in inst.queries.iter().enumerate() {
        builder = builder.with_query(map_query(&at(format!("queries[{i}]")), query)?);
    }

    for (i, reaction) in inst.reactions.iter().enumerate() {
        let path = at(format!("reactions[{i}]"));
        let (id, queries, auto_start) = (
            reaction.id(),
            reaction.queries().to_vec(),
            reaction.auto_start(),
        );
        let created = match reaction {
            ReactionConfig::Log(r) => {
                drasi_reaction_log::descriptor::LogReactionDescriptor
                    .create_reaction(id, queries, &plugin_body(r), auto_start)
                    .await
            }
            ReactionConfig::Http(r) => {
                drasi_reaction_http::descriptor::HttpReactionDescriptor
                    .create_reaction(id, queries, &plugin_body(r), auto_start)
                    .await
            }
            ReactionConfig::Sse(r) => {
                drasi_reaction_sse::descriptor::SseReactionDescriptor
                    .create_reaction(id, queries, &plugin_body(r), auto_start)
                    .await
            }
            ReactionConfig::Profiler(r) => {
                drasi_reaction_profiler::descriptor::ProfilerReactionDescriptor
                    .create_reaction(id, queries, &plugin_body(r), auto_start)
                    .await
            }
            ReactionConfig::StoredProcPostgres(r) => {
                let body = postgres::storedproc_body(plugin_body(r), r);
                drasi_reaction_storedproc_postgres::descriptor::PostgresStoredProcReactionDescriptor
                    .create_reaction(id, queries, &body, auto_start)
                    .await
            }
            ReactionConfig::Grpc(r) => {
                drasi_reaction_grpc::descriptor::GrpcReactionDescriptor
                    .create_reaction(id, queries, &plugin_body(r), auto_start)
                    .await
            }
            ReactionConfig::StoredProcMysql(r) => {
                drasi_reaction_storedproc_mysql::descriptor::MySqlStoredProcReactionDescriptor
                    .create_reaction(
                        id,
                        queries,
                        &storedproc::body(plugin_body(r), r),
                        auto_start,
                    )
                    .await
            }
            ReactionConfig::StoredProcMssql(r) => {
                drasi_reaction_storedproc_mssql::descriptor::MsSqlStoredProcReactionDescriptor
                    .create_reaction(
                        id,
                        queries,
                        &storedproc::body(plugin_body(r), r),
                        auto_start,
                    )
                    .await
            }
            ReactionConfig::HttpAdaptive(r) => {
                drasi_reaction_http::descriptor::HttpReactionDescriptor
                    .create_reaction(id, queries, &plugin_body(&r.to_http()), auto_start)
                    .await
            }
            ReactionConfig::GrpcAdaptive(r) => {
                drasi_reaction_grpc::descriptor::GrpcReactionDescriptor
                    .create_reaction(id, queries, &plugin_body(&r.to_grpc()), auto_start)
                    .await
            }
        };
        let created = created.map_err(|e| component_err(path, format!("{e:#}")))?;
        builder = builder.with_reaction(created);
    }

    builder.build().await.map_err(|e| RuntimeError::Drasi {
        instance: id.to_string(),
        message: e.to_string(),
    })
}

/// Whether a source asks for WAL durability (`durability.enabled: true`).
pub fn durable(source: &SourceConfig) -> bool {
    let durability = match source {
        SourceConfig::Http(s) => s.durability.as_ref(),
        SourceConfig::Grpc(s) => s.durability.as_ref(),
        _ => None,
    };
    durability
        .and_then(|d| d.get("enabled"))
        .and_then(|e| e.as_bool())
        .unwrap_or(false)
}

/// Where a persistent (`persistIndex: true`) instance keeps its RocksDB indexes, relative to
/// the working directory: `data/<id>/index` (see [`instance_data_dir`]).
pub fn index_path(id: &str) -> std::path::PathBuf {
    instance_data_dir(id).join("index")
}

/// An instance's on-disk state, relative to the working directory: `data/<id>`, the id
/// reduced to `[A-Za-z0-9_-]` (anything else becomes `_`) so it is one path component.
pub fn instance_data_dir(id: &str) -> std::path::PathBuf {
    let safe: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let safe = if safe.is_empty() {
        "_".to_owned()
    } else {
        safe
    };
    std::path::Path::new("data").join(safe)
}

/// The kind-specific part of a component's config, as the plugin descriptor expects it.
fn plugin_body<T: Serialize>(component: &T) -> serde_json::Value {
    let mut value = serde_json::to_value(component).unwrap_or_default();
    if let serde_json::Value::Object(map) = &mut value {
        for key in COMMON_KEYS {
            map.remove(*key);
        }
    }
    value
}

/// Maps a query onto drasi-lib's config, starting from drasi-lib's own defaults.
pub fn map_query(path: &str, q: &QueryConfig) -> Result<drasi_lib::QueryConfig, RuntimeError> {
    let builder = match q.effective_language() {
        QueryLanguage::Cypher => Query::cypher(&q.id),
        QueryLanguage::Gql => Query::gql(&q.id),
    };
    let mut out = builder
        .query(&q.query)
        .auto_start(q.effective_auto_start())
        .build();
    out.sources = q
        .sources
        .iter()
        .map(|s| drasi_lib::config::SourceSubscriptionConfig {
            source_id: s.source_id.clone(),
            nodes: s.nodes.clone(),
            relations: s.relations.clone(),
            pipeline: s.pipeline.clone(),
        })
        .collect();
    if let Some(joins) = &q.joins {
        out.joins = Some(
            serde_json::from_value(joins.clone())
                .map_err(|e| component_err(format!("{path}.joins"), e))?,
        );
    }
    if let Some(v) = q.enable_bootstrap {
        out.enable_bootstrap = v;
    }
    if let Some(v) = q.bootstrap_buffer_size {
        out.bootstrap_buffer_size = to_usize(&format!("{path}.bootstrapBufferSize"), v)?;
    }
    if let Some(v) = q.priority_queue_capacity {
        out.priority_queue_capacity = Some(to_usize(&format!("{path}.priorityQueueCapacity"), v)?);
    }
    if let Some(v) = q.dispatch_buffer_capacity {
        out.dispatch_buffer_capacity =
            Some(to_usize(&format!("{path}.dispatchBufferCapacity"), v)?);
    }
    if let Some(mode) = &q.dispatch_mode {
        out.dispatch_mode = Some(
            serde_json::from_value(serde_json::Value::String(mode.to_ascii_lowercase())).map_err(
                |_| {
                    component_err(
                        format!("{path}.dispatchMode"),
                        format!("unknown dispatch mode `{mode}`; expected channel or broadcast"),
                    )
                },
            )?,
        );
    }
    if let Some(v) = q.outbox_capacity {
        out.outbox_capacity = to_usize(&format!("{path}.outboxCapacity"), v)?;
    }
    if let Some(v) = q.bootstrap_timeout_secs {
        out.bootstrap_timeout_secs = v;
    }
    Ok(out)
}

fn to_usize(path: &str, v: u64) -> Result<usize, RuntimeError> {
    usize::try_from(v).map_err(|_| component_err(path.to_string(), "value too large"))
}

fn component_err(path: String, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Component {
        path,
        message: e.to_string(),
    }
}
