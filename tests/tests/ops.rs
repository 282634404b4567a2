//! Operator tooling on real Redis: pending entries made by a consumer that died ("ghost"),
//! inspected decoded, claimed to a live worker or retried so they run exactly once; dead
//! letters replayed with each effect happening once; purge dry-run first; prune and trim that
//! never lose pending work; owners judged by the heartbeat TTL they registered, with every
//! skipped entry reported. Through the library, the REST admin endpoints and `draas ops`.

mod common;
#[path = "ops/dead_letters.rs"]
mod dead_letters;
#[path = "ops/liveness.rs"]
mod liveness;
#[path = "ops/pending.rs"]
mod pending;

use std::collections::HashMap;

use common::{RedisServer, draas_binary, wait_until};
pub use common::{envelope, ghost_pings, ghost_read};
use draas_bus::Store;
use draas_protocol::{CommandEnvelope, Keyspace, Operation, Platform, codec};
use redis::aio::MultiplexedConnection;
use redis::streams::StreamId;

/// Runs `draas ops --redis-url … --prefix … <args>` with stdin closed (not a terminal).
fn ops_cli(redis: &RedisServer, keys: &Keyspace, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(draas_binary())
        .args(["ops", "--redis-url", &redis.url, "--prefix", keys.prefix()])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run draas");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Puts `env` in the platform's dead-letter stream the way the sweeper does.
async fn dead_letter(store: &Store, env: &CommandEnvelope) -> anyhow::Result<()> {
    let entry = StreamId {
        id: "0-1".into(),
        map: HashMap::from([("m".to_owned(), redis::Value::BulkString(codec::encode(env)))]),
        ..StreamId::default()
    };
    let stream = store.keys().commands(Platform::Process);
    store
        .dead_letter(
            Platform::Process,
            &stream,
            &entry,
            "test: out of deliveries",
            4,
        )
        .await?;
    Ok(())
}

async fn terminal(store: &Store, id: uuid::Uuid) -> anyhow::Result<Operation> {
    wait_until(|| async {
        let op = store.operation(id).await.ok()??;
        op.state.is_terminal().then_some(op)
    })
    .await
}

async fn xlen(conn: &mut MultiplexedConnection, key: &str) -> u64 {
    redis::cmd("XLEN").arg(key).query_async(conn).await.unwrap()
}
