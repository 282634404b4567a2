//! Operations: `draas operations get ID [--wait]`, and following an operation to its end
//! (`GET /api/v1/operations/{id}` polled with a growing interval, up to a second) for every
//! `--wait`, with a spinner on a terminal.

use std::time::Duration;

use serde_json::Value;

use super::http::{Api, ClientError, segment};
use super::output::{self, Format, Spinner};

/// Whether an operation has ended.
pub fn is_terminal(op: &Value) -> bool {
    matches!(op["state"].as_str(), Some("succeeded" | "failed"))
}

/// Polls the operation until it has ended; returns its final record.
pub async fn follow(api: &Api, op: Value, spinner: &Spinner) -> Result<Value, ClientError> {
    let mut op = op;
    let mut interval = Duration::from_millis(100);
    while !is_terminal(&op) {
        let id = op["id"]
            .as_str()
            .ok_or_else(|| ClientError::Failed(format!("an operation without an id: {op}")))?
            .to_owned();
        spinner.set_message(format!(
            "{} {}: {}",
            output::text(&op["command"]),
            id,
            output::text(&op["state"])
        ));
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(Duration::from_secs(1));
        op = match api
            .get(&format!("/api/v1/operations/{}", segment(&id)))
            .await
        {
            Ok(op) => op,
            // The API restarting under a long wait: keep following.
            Err(ClientError::Unreachable { .. }) => continue,
            Err(ClientError::Api { status, .. }) if status >= 500 => continue,
            Err(e) => return Err(e),
        };
    }
    Ok(op)
}

/// Follows `op` (when `wait`) under a spinner saying `what`.
pub async fn settle(api: &Api, op: Value, wait: bool, what: &str) -> Result<Value, ClientError> {
    if !wait || is_terminal(&op) {
        return Ok(op);
    }
    let spinner = Spinner::start(what.to_owned());
    let result = follow(api, op, &spinner).await;
    spinner.finish();
    result
}

/// The failure of a failed operation: its error code and message.
pub fn failure(op: &Value) -> Option<String> {
    (op["state"] == "failed").then(|| {
        format!(
            "{} failed: {} ({})",
            output::text(&op["command"]),
            output::text(&op["error"]["message"]),
            output::text(&op["error"]["code"])
        )
    })
}

/// `draas operations get ID [--wait]`: the record; with `--wait` after it ended, and exit 1
/// when it failed.
pub async fn get(api: &Api, id: &str, wait: bool, format: Format) -> Result<(), ClientError> {
    let op = api
        .get(&format!("/api/v1/operations/{}", segment(id)))
        .await?;
    let op = settle(api, op, wait, &format!("waiting for operation {id}")).await?;
    match format {
        Format::Table => print!("{}", table(&op)),
        other => output::print_data(&op, other)?,
    }
    match (wait, failure(&op)) {
        (true, Some(failed)) => Err(ClientError::Failed(failed)),
        _ => Ok(()),
    }
}

fn table(op: &Value) -> String {
    let error = match &op["error"] {
        Value::Null => "-".to_owned(),
        e => format!(
            "{}: {}",
            output::text(&e["code"]),
            output::text(&e["message"])
        ),
    };
    output::table(
        &[
            "ID", "COMMAND", "STATE", "INSTANCE", "AGE", "ATTEMPTS", "ERROR",
        ],
        &[vec![
            output::text(&op["id"]),
            output::text(&op["command"]),
            output::text(&op["state"]),
            output::text(&op["instanceId"]),
            output::age(op["createdAt"].as_str()),
            output::text(&op["attempts"]),
            error,
        ]],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_failed_operation_says_why() {
        let op = json!({"id": "o", "command": "start", "state": "failed",
            "error": {"code": "readiness_timeout", "message": "not healthy in 30s"}});
        assert!(is_terminal(&op));
        assert_eq!(
            failure(&op).unwrap(),
            "start failed: not healthy in 30s (readiness_timeout)"
        );
        assert!(failure(&json!({"state": "succeeded"})).is_none());
        assert!(!is_terminal(&json!({"state": "pending"})));
    }
}
