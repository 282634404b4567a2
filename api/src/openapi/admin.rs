//! The schemas of `/api/v1/admin/…` answers that are not a `draas_bus` type themselves: the
//! wrappers the handlers build with `json!` around the bus reports. The reports
//! (`draas_bus::admin::{StreamsReport, PendingPage, ActionReport, DlqPage, DeadLetter, …}`,
//! `draas_bus::store::AuditPage`) derive `ToSchema` where they are defined; the unit test at
//! the bottom holds their generated schemas to the JSON of real reports (which fields are
//! always sent, which only sometimes).

#![allow(dead_code)]

use draas_bus::admin::{ActionReport, ConsumerRow};
use serde::Serialize;
use utoipa::ToSchema;

/// Several streams' reports (prune, trim).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionReports {
    pub reports: Vec<ActionReport>,
}

/// A platform's consumers.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsumerList {
    pub items: Vec<ConsumerRow>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use draas_bus::admin as bus;
    use draas_protocol::Platform;
    use serde::Serialize;
    use serde_json::{Value, json};
    use uuid::Uuid;

    /// The component `name` of the document.
    fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
        let schema = &doc["components"]["schemas"][name];
        assert!(schema.is_object(), "{name} is not in the document");
        schema
    }

    fn names(value: &Value) -> BTreeSet<String> {
        match value {
            Value::Object(map) => map.keys().cloned().collect(),
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().expect("a name").to_owned())
                .collect(),
            _ => BTreeSet::new(),
        }
    }

    /// Holds `schema` to two serializations of one type: `sparse` (every optional field
    /// `None`) sends exactly the `required` fields, and `full` (every one `Some`) sends
    /// exactly the `properties`.
    fn holds(schema: &Value, sparse: &Value, full: &Value, name: &str) {
        assert_eq!(
            names(sparse),
            names(&schema["required"]),
            "{name}: required"
        );
        assert_eq!(
            names(full),
            names(&schema["properties"]),
            "{name}: properties"
        );
    }

    /// [`holds`] for a page (`outer`) and its first item (`inner`, in the array `field`).
    fn holds_page(doc: &Value, outer: &str, field: &str, inner: &str, pages: [Value; 2]) {
        let [sparse, full] = pages;
        holds(schema(doc, outer), &sparse, &full, outer);
        let (sparse, full) = (&sparse[field][0], &full[field][0]);
        holds(schema(doc, inner), sparse, full, inner);
    }

    fn json(value: impl Serialize) -> Value {
        serde_json::to_value(value).expect("plain data")
    }

    fn letter(full: bool) -> bus::DeadLetter {
        bus::DeadLetter {
            id: "1-0".into(),
            reason: "r".into(),
            stream: "s".into(),
            entry: "1-0".into(),
            deliveries: full.then_some(1),
            at: full.then_some(1),
            age_ms: full.then_some(1),
            payload: bus::Payload::Missing,
            operation: full.then(|| "failed".into()),
            fields: full.then(Default::default),
            envelope: full.then(|| json!({})),
        }
    }

    fn row(full: bool) -> bus::PendingRow {
        bus::PendingRow {
            id: "1-0".into(),
            consumer: "c".into(),
            consumer_live: true,
            idle_ms: 0,
            deliveries: 1,
            age_ms: full.then_some(1),
            payload: bus::Payload::Command {
                kind: "start".into(),
                command_id: Uuid::nil(),
                correlation_id: Uuid::nil(),
                instance_id: full.then(Uuid::nil),
                idempotency_key: full.then(|| "k".into()),
                platform: Platform::Process,
            },
            operation: full.then(|| "queued".into()),
            liveness: full.then(|| "live".into()),
        }
    }

    fn consumer(full: bool) -> bus::ConsumerRow {
        bus::ConsumerRow {
            stream: "s".into(),
            node: full.then(|| "n".into()),
            consumer: "c".into(),
            pending: 0,
            idle_ms: 0,
            inactive_ms: full.then_some(1),
            live: true,
        }
    }

    fn audit(full: bool) -> draas_bus::store::AuditPage {
        draas_bus::store::AuditPage {
            items: vec![draas_bus::store::AuditEntry {
                id: "1-0".into(),
                at: 1,
                actor: "a".into(),
                tenant: full.then(|| "t".into()),
                method: "GET".into(),
                route: full.then(|| "/".into()),
                path: "/".into(),
                status: 200,
                operation: full.then(|| "o".into()),
            }],
            next_cursor: full.then(|| "1-0".into()),
        }
    }

    #[test]
    fn the_admin_schemas_require_what_the_bus_reports_always_send() {
        let doc = crate::openapi::document();

        let report = json(bus::ActionReport {
            action: "retry".into(),
            stream: "s".into(),
            dry_run: true,
            matched: 1,
            changed: 0,
            skipped: 1,
            skip_reasons: vec![bus::Skipped {
                reason: bus::SkipReason::OwnerLive,
                consumer: None,
                count: 1,
                message: "m".into(),
            }],
            items: vec![bus::ActionItem {
                id: "1-0".into(),
                outcome: "skipped".into(),
                detail: "d".into(),
            }],
            items_truncated: false,
            notes: vec![],
        });
        holds(
            schema(doc, "ActionReport"),
            &report,
            &report,
            "ActionReport",
        );
        let skipped = &report["skipReasons"][0];
        holds(schema(doc, "Skipped"), skipped, skipped, "Skipped");
        let item = &report["items"][0];
        holds(schema(doc, "ActionItem"), item, item, "ActionItem");

        let (sparse, full) = (json(consumer(false)), json(consumer(true)));
        holds(schema(doc, "ConsumerRow"), &sparse, &full, "ConsumerRow");

        let pages = [json(audit(false)), json(audit(true))];
        holds_page(doc, "AuditPage", "items", "AuditEntry", pages);

        let page = |full: bool| bus::PendingPage {
            stream: "s".into(),
            rows: vec![row(full)],
            next: full.then(|| "1-0".into()),
        };
        let pages = [json(page(false)), json(page(true))];
        holds_page(doc, "PendingPage", "rows", "PendingRow", pages);

        let page = |full: bool| bus::DlqPage {
            stream: "s".into(),
            length: 1,
            letters: vec![letter(full)],
            next: full.then(|| "1-0".into()),
        };
        let pages = [json(page(false)), json(page(true))];
        holds_page(doc, "DlqPage", "letters", "DeadLetter", pages);
    }
}
