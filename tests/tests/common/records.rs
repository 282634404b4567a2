//! Operation records and replies as the store's tests build them, and Redis's own count of
//! the commands it ran.

use draas_protocol::{CommandKind, Operation, Outcome, Platform, Reply, SCHEMA_VERSION};

/// A successful reply from `worker` for a fresh command, with `result`.
pub fn reply(worker: &str, result: serde_json::Value) -> Reply {
    Reply {
        v: SCHEMA_VERSION,
        command_id: uuid::Uuid::now_v7(),
        correlation_id: uuid::Uuid::now_v7(),
        instance_id: None,
        platform: Platform::Process,
        worker: worker.into(),
        completed_at: draas_bus::clock::now(),
        outcome: Outcome::Succeeded { result },
        attempts: 1,
    }
}

/// A pending Ping operation.
pub fn ping(id: uuid::Uuid) -> Operation {
    Operation::pending(
        id,
        None,
        Platform::Process,
        CommandKind::Ping,
        draas_bus::clock::now(),
    )
}

/// How many times Redis has run `command` (lower case), from `INFO commandstats`.
pub async fn calls(conn: &mut redis::aio::MultiplexedConnection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
