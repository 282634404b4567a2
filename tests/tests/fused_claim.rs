//! The claim and the finish of a command without effects in one call
//! (`Store::claim_and_finish`, real Redis): a fresh command is claimed, recorded and answered
//! by one script call, with the record a claim and a finish would leave; only a call that
//! finds no record writes one, so a record that was there (pending, finished, running for
//! someone else or for this very worker, a hash of an earlier version) gets the answer a
//! plain claim gives and nothing is recorded or sent; a reply that fails leaves a finished
//! record answered as one; a Redis without the script loads it; and calls made together share
//! their script call while each gets its own answer.

mod common;

use common::RedisServer;
use common::records::{self, calls, ping};
use draas_bus::store::{Claim, Fused};
use draas_bus::{Store, connect};
use draas_protocol::{Keyspace, OperationState, Outcome, Reply, Timestamp};

fn reply_as(worker: &str) -> Reply {
    records::reply(worker, serde_json::json!({"pong": true}))
}

fn lease() -> Timestamp {
    Timestamp(draas_bus::clock::now().millis() + 60_000)
}

async fn replies(conn: &mut redis::aio::MultiplexedConnection, stream: &str) -> Vec<Reply> {
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .unwrap();
    entries
        .ids
        .iter()
        .map(|e| draas_protocol::codec::decode(&draas_bus::streams::payload(e).unwrap()).unwrap())
        .collect()
}

/// A Redis of its own, the keyspace, a store on it and a connection for the checks.
async fn setup() -> anyhow::Result<(
    RedisServer,
    Keyspace,
    Store,
    redis::aio::MultiplexedConnection,
)> {
    let redis = RedisServer::start()?;
    let keys = Keyspace::new("fused");
    let store = Store::new(connect::shared(&redis.url).await?, keys.clone());
    let conn = redis.client().get_multiplexed_async_connection().await?;
    Ok((redis, keys, store, conn))
}

/// What a worker finds at its start: its script loaded (`Store::preload_scripts`) and the
/// reply stream of the API node it answers.
async fn warm_up(store: &Store, stream: &str) -> anyhow::Result<()> {
    store.preload_scripts().await?;
    store.send_reply(stream, &reply_as("warm-up")).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_command_is_claimed_finished_and_answered_by_one_call() -> anyhow::Result<()> {
    let (_redis, keys, store, mut conn) = setup().await?;
    let stream = keys.replies("node-a");
    warm_up(&store, &stream).await?;
    let finished = reply_as("w");
    let op = ping(finished.command_id);
    let counted = |conn: &mut redis::aio::MultiplexedConnection| {
        let mut conn = conn.clone();
        async move {
            let mut n = Vec::new();
            for command in ["set", "evalsha", "xadd", "get"] {
                n.push(calls(&mut conn, command).await);
            }
            n
        }
    };
    let before = counted(&mut conn).await;

    let fused = store
        .claim_and_finish(&op, "w", lease(), &finished, &stream)
        .await?;
    assert_eq!(fused, Fused::Finished);
    // One script call: the record's SET and the reply's XADD inside, nothing read.
    let after = counted(&mut conn).await;
    let spent: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(spent, [1, 1, 1, 0], "SET, EVALSHA, XADD, GET");
    let record = store.operation(op.id).await?.expect("a record");
    assert_eq!(record.state, OperationState::Succeeded);
    assert_eq!(record.attempts, 1);
    assert_eq!(record.worker.as_deref(), Some("w"));
    assert_eq!(record.result, Some(serde_json::json!({"pong": true})));
    // The same fields as a claim followed by a finish leave.
    let usual = reply_as("w");
    store
        .claim_operation(&ping(usual.command_id), "w", lease())
        .await?;
    assert!(store.finish_and_reply("w", &usual, None).await?);
    let fields = |id| {
        let store = store.clone();
        async move {
            let fields = store.operation_fields(&[id]).await.unwrap().pop().flatten();
            let mut names: Vec<String> = fields.expect("a record").into_keys().collect();
            names.sort();
            names
        }
    };
    assert_eq!(fields(op.id).await, fields(usual.command_id).await);
    let sent = replies(&mut conn, &stream).await;
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1], finished);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_that_fails_leaves_a_finished_record_answered_as_one() -> anyhow::Result<()> {
    let (_redis, keys, store, mut conn) = setup().await?;
    // Not a stream: the reply's XADD fails after the record is written.
    let stream = keys.replies("node-e");
    redis::cmd("SET")
        .arg(&stream)
        .arg("not a stream")
        .exec_async(&mut conn)
        .await?;
    store.preload_scripts().await?;
    let finished = reply_as("w");
    let op = ping(finished.command_id);
    let fused = store
        .claim_and_finish(&op, "w", lease(), &finished, &stream)
        .await?;
    let record = store.operation(op.id).await?.expect("a record");
    assert_eq!(record.state, OperationState::Succeeded);
    // The caller answers as for a finished record: it sends the reply from the record.
    assert_eq!(fused, Fused::Unfinished(Claim::Done(record)));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_call_that_finds_no_record_records_and_replies() -> anyhow::Result<()> {
    let (_redis, keys, store, mut conn) = setup().await?;
    let stream = keys.replies("node-b");
    warm_up(&store, &stream).await?;
    let fused = |finished: Reply| {
        let (store, stream) = (store.clone(), stream.clone());
        async move {
            store
                .claim_and_finish(&ping(finished.command_id), "w", lease(), &finished, &stream)
                .await
        }
    };

    // Pending (an API that handed the id out wrote it): claimed by the script, not finished.
    let pending = reply_as("w");
    store.record_operation(&ping(pending.command_id)).await?;
    assert_eq!(
        fused(pending.clone()).await?,
        Fused::Unfinished(Claim::Claimed { attempts: 1 })
    );
    let record = store.operation(pending.command_id).await?.expect("record");
    assert_eq!(record.state, OperationState::Running);
    // The usual finish follows.
    assert!(store.finish_and_reply("w", &pending, Some(&stream)).await?);

    // Finished: answered from the record, nothing new recorded.
    let done = store.operation(pending.command_id).await?.expect("record");
    let mut again = pending.clone();
    again.outcome = Outcome::Succeeded {
        result: serde_json::json!({"second": true}),
    };
    assert_eq!(
        fused(again).await?,
        Fused::Unfinished(Claim::Done(done.clone()))
    );
    assert_eq!(store.operation(pending.command_id).await?, Some(done));

    // Running for another live worker: busy.
    let taken = reply_as("w");
    store
        .claim_operation(&ping(taken.command_id), "other", lease())
        .await?;
    assert_eq!(
        fused(taken.clone()).await?,
        Fused::Unfinished(Claim::Busy {
            owner: "other".into()
        })
    );

    // Running for this very worker (it restarted with the same name): a new attempt is
    // claimed, and nothing is recorded though the owner matches.
    let own = reply_as("w");
    store
        .claim_operation(&ping(own.command_id), "w", lease())
        .await?;
    assert_eq!(
        fused(own.clone()).await?,
        Fused::Unfinished(Claim::Claimed { attempts: 2 })
    );
    let record = store.operation(own.command_id).await?.expect("record");
    assert_eq!(record.state, OperationState::Running);
    assert_eq!(record.attempts, 2);

    // A hash of an earlier version (pending): claimed by the script, rewritten as a string
    // record, not finished.
    let old = reply_as("w");
    let key = keys.operation(old.command_id);
    redis::pipe()
        .hset_multiple(&key, &ping(old.command_id).to_fields())
        .ignore()
        .exec_async(&mut conn)
        .await?;
    assert_eq!(
        fused(old.clone()).await?,
        Fused::Unfinished(Claim::Claimed { attempts: 1 })
    );
    let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await?;
    assert_eq!(kind, "string");
    let record = store.operation(old.command_id).await?.expect("record");
    assert_eq!(record.state, OperationState::Running);

    // Only the one finish made the usual way replied (after the warm-up's).
    let sent = replies(&mut conn, &stream).await;
    assert_eq!(sent[1..], [pending]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_script_loaded_the_call_loads_it_and_finishes() -> anyhow::Result<()> {
    let (_redis, keys, store, mut conn) = setup().await?;
    let stream = keys.replies("node-c");
    store.send_reply(&stream, &reply_as("warm-up")).await?;
    // A restarted or flushed Redis answers NOSCRIPT: the call loads the script and goes on.
    store.preload_scripts().await?;
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async::<()>(&mut conn)
        .await?;
    let finished = reply_as("w");
    let op = ping(finished.command_id);
    assert_eq!(
        store
            .claim_and_finish(&op, "w", lease(), &finished, &stream)
            .await?,
        Fused::Finished
    );
    assert_eq!(
        store.operation(op.id).await?.map(|r| r.state),
        Some(OperationState::Succeeded)
    );
    assert_eq!(replies(&mut conn, &stream).await.len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_made_together_share_a_script_call_and_each_gets_its_answer() -> anyhow::Result<()> {
    let (_redis, keys, store, mut conn) = setup().await?;
    let stream = keys.replies("node-d");
    warm_up(&store, &stream).await?;
    // One in three was finished before: it is answered from its record.
    let mut done = Vec::new();
    let mut calls_to_make = Vec::new();
    for i in 0..150 {
        let finished = reply_as("w");
        if i % 3 == 0 {
            store
                .claim_operation(&ping(finished.command_id), "earlier", lease())
                .await?;
            let mut earlier = finished.clone();
            earlier.worker = "earlier".into();
            assert!(store.finish_and_reply("earlier", &earlier, None).await?);
            done.push(finished.command_id);
        }
        calls_to_make.push(finished);
    }
    let before = calls(&mut conn, "evalsha").await;
    let handles: Vec<_> = calls_to_make
        .iter()
        .cloned()
        .map(|finished| {
            let (store, stream) = (store.clone(), stream.clone());
            tokio::spawn(async move {
                let op = ping(finished.command_id);
                (
                    finished.command_id,
                    store
                        .claim_and_finish(&op, "w", lease(), &finished, &stream)
                        .await,
                )
            })
        })
        .collect();
    for handle in handles {
        let (id, fused) = handle.await?;
        match fused? {
            Fused::Finished => assert!(!done.contains(&id), "{id} finished twice"),
            Fused::Unfinished(Claim::Done(record)) => {
                assert!(done.contains(&id), "{id} was not finished before");
                assert_eq!(record.worker.as_deref(), Some("earlier"));
            }
            other => panic!("{id}: {other:?}"),
        }
    }
    let scripts = calls(&mut conn, "evalsha").await - before;
    assert!(
        scripts < 150,
        "150 calls made together took {scripts} script calls"
    );
    let sent = replies(&mut conn, &stream).await;
    assert_eq!(sent.len(), 1 + 100, "one reply per fresh command");
    Ok(())
}
