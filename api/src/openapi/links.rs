//! OpenAPI links: from an answer to the operations that can follow it, with the parameter
//! taken from the answer. A created (or applied) instance leads to reading, patching,
//! starting, stopping, restarting, deleting it and reading its logs; a command's operation
//! to reading the operation. Schemathesis' stateful phase walks these in generated orders.

use serde_json::{Value, json};

/// (from operation, statuses, the `id` of what it answered, the operations it leads to).
const LINKS: &[(&str, &[&str], &str, &[&str])] = &[
    (
        "createInstance",
        &["201"],
        "$response.body#/id",
        INSTANCE_OPS,
    ),
    (
        "putInstance",
        &["200", "201", "202"],
        "$response.body#/instance/id",
        INSTANCE_OPS,
    ),
    ("getInstance", &["200"], "$response.body#/id", INSTANCE_OPS),
    (
        "startInstance",
        &["200", "202"],
        "$response.body#/id",
        &["getOperation"],
    ),
    (
        "stopInstance",
        &["200", "202"],
        "$response.body#/id",
        &["getOperation"],
    ),
    (
        "restartInstance",
        &["200", "202"],
        "$response.body#/id",
        &["getOperation"],
    ),
    (
        "deleteInstance",
        &["200", "202"],
        "$response.body#/id",
        &["getOperation"],
    ),
    (
        "pingPlatform",
        &["200", "202"],
        "$response.body#/id",
        &["getOperation"],
    ),
];

/// What can be done to an instance by its id (not its event feed: that never ends).
const INSTANCE_OPS: &[&str] = &[
    "getInstance",
    "patchInstance",
    "startInstance",
    "stopInstance",
    "restartInstance",
    "deleteInstance",
    "getInstanceLogs",
];

/// Adds the links to the responses of [`LINKS`]; an operation or status missing from the
/// document is left out (the drift test names missing operations).
pub(super) fn apply(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for operation in item.values_mut() {
            let Some(id) = operation["operationId"].as_str().map(str::to_owned) else {
                continue;
            };
            let Some((_, statuses, parameter, targets)) =
                LINKS.iter().find(|(from, ..)| *from == id)
            else {
                continue;
            };
            for status in *statuses {
                let Some(response) = operation["responses"].get_mut(*status) else {
                    continue;
                };
                for target in *targets {
                    response["links"][*target] = json!({
                        "operationId": target,
                        "parameters": {"id": parameter},
                    });
                }
            }
        }
    }
}
