//! The audit stream: one entry per mutating or refused API request, capped with `MAXLEN ~`.
//!
//! Entries are plain stream fields (readable with `XRANGE` by hand): `at` (ms), `actor`,
//! `tenant`, `method`, `route` (the route template), `path`, `status`, `operation`. Reads are
//! pages of `XREVRANGE … COUNT`, newest first; the cursor is the last id of a page.

use std::collections::HashMap;

use redis::streams::StreamRangeReply;
use serde::{Deserialize, Serialize};

use super::Store;
use crate::BusError;

/// One audited request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// The stream id (empty before it is written).
    #[serde(default)]
    #[schema(required = true)]
    pub id: String,
    /// When the request was answered, ms since the epoch.
    pub at: u64,
    /// The token id, `anonymous` with authentication off, `unknown` when refused before the
    /// caller was known.
    pub actor: String,
    /// The caller's tenant, when known.
    #[schema(required = true)]
    pub tenant: Option<String>,
    pub method: String,
    /// The route template (`/api/v1/instances/{id}`), when a route matched.
    #[schema(required = true)]
    pub route: Option<String>,
    /// The concrete path.
    pub path: String,
    pub status: u16,
    /// The operation the response named, if any.
    #[schema(required = true)]
    pub operation: Option<String>,
}

/// A page of audit entries, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    /// Pass as `cursor` for the next (older) page; `null` at the end.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

impl AuditEntry {
    fn fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("at", self.at.to_string()),
            ("actor", self.actor.clone()),
            ("method", self.method.clone()),
            ("path", self.path.clone()),
            ("status", self.status.to_string()),
        ];
        let optional = [
            ("tenant", &self.tenant),
            ("route", &self.route),
            ("operation", &self.operation),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                fields.push((name, value.clone()));
            }
        }
        fields
    }

    fn parse(id: &str, map: &HashMap<String, redis::Value>) -> Self {
        let text = |name: &str| -> Option<String> {
            map.get(name)
                .and_then(|v| redis::from_redis_value::<String>(v.clone()).ok())
        };
        AuditEntry {
            id: id.to_owned(),
            at: text("at").and_then(|t| t.parse().ok()).unwrap_or(0),
            actor: text("actor").unwrap_or_default(),
            tenant: text("tenant"),
            method: text("method").unwrap_or_default(),
            route: text("route"),
            path: text("path").unwrap_or_default(),
            status: text("status").and_then(|t| t.parse().ok()).unwrap_or(0),
            operation: text("operation"),
        }
    }
}

impl Store {
    /// Appends entries in one pipeline, each `XADD … MAXLEN ~ maxlen`.
    pub async fn append_audit(
        &self,
        entries: &[AuditEntry],
        maxlen: usize,
    ) -> Result<(), BusError> {
        if entries.is_empty() {
            return Ok(());
        }
        let key = self.keys.audit();
        let mut pipe = redis::pipe();
        for entry in entries {
            let mut cmd = redis::cmd("XADD");
            cmd.arg(&key).arg("MAXLEN").arg("~").arg(maxlen).arg("*");
            for (name, value) in entry.fields() {
                cmd.arg(name).arg(value);
            }
            pipe.add_command(cmd).ignore();
        }
        pipe.exec_async(&mut self.conn()).await?;
        Ok(())
    }

    /// Up to `limit` entries older than `cursor` (or the newest), newest first.
    pub async fn audit_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<AuditPage, BusError> {
        let end = cursor.map_or_else(|| "+".to_owned(), |c| format!("({c}"));
        let reply: StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(self.keys.audit())
            .arg(end)
            .arg("-")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut self.conn())
            .await?;
        let items: Vec<AuditEntry> = reply
            .ids
            .iter()
            .map(|e| AuditEntry::parse(&e.id, &e.map))
            .collect();
        let next_cursor = match items.len() == limit {
            true => items.last().map(|e| e.id.clone()),
            false => None,
        };
        Ok(AuditPage { items, next_cursor })
    }
}
