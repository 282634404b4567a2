//! What one command costs Redis, and that the cuts keep their promises (real Redis): a reply is
//! one `XADD NOMKSTREAM` and still creates a missing reply stream, the API node keeps its
//! stream's TTL fresh, the finish and the reply are one step that only the owner takes, acks
//! of commands that finish together go out in batches while each caller still learns that its
//! own entry was acked, finished records live as long as the operator says, and a command
//! whose id only its caller knows gets its record from whoever needs it first (the claim, the
//! caller handing the id out, a dead letter), while records of an earlier version (hashes)
//! still read, claim and finish.

mod common;

use std::time::Duration;

use common::records::{self, calls, ping};
use common::{RedisServer, pending_count, wait_until};
use draas_api::dispatch::Dispatcher;
use draas_bus::streams::{REPLIES_TTL_SECS, ensure_group};
use draas_bus::{Store, connect};
use draas_protocol::keys::WORKER_GROUP;
use draas_protocol::{Keyspace, Platform, Reply};
use tokio_util::sync::CancellationToken;

fn reply() -> Reply {
    records::reply("w", serde_json::Value::Null)
}

async fn ttl(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("TTL").arg(key).query_async(conn).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_creates_a_missing_stream_and_its_node_keeps_the_ttl() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let keys = Keyspace::new("cost");
    let store = Store::new(connect::shared(&redis.url).await?, keys.clone());
    let mut conn = redis.client().get_multiplexed_async_connection().await?;
    let stream = keys.replies("node-a");

    // No stream yet (its node has not been answered before): the reply creates it, with a TTL.
    store.send_reply(&stream, &reply()).await?;
    let len: usize = redis::cmd("XLEN")
        .arg(&stream)
        .query_async(&mut conn)
        .await?;
    assert_eq!(len, 1, "the reply reached a stream that did not exist");
    let first = ttl(&mut conn, &stream).await;
    assert!(
        first > 0 && first <= REPLIES_TTL_SECS as i64,
        "a created reply stream expires: TTL {first}"
    );

    // Once the stream exists, a reply is one XADD: it does not touch the TTL.
    let _: i64 = redis::cmd("PERSIST")
        .arg(&stream)
        .query_async(&mut conn)
        .await?;
    let (xadd, expire) = (
        calls(&mut conn, "xadd").await,
        calls(&mut conn, "expire").await,
    );
    store.send_reply(&stream, &reply()).await?;
    assert_eq!(ttl(&mut conn, &stream).await, -1, "a reply paid an EXPIRE");
    assert_eq!(calls(&mut conn, "xadd").await, xadd + 1);
    assert_eq!(calls(&mut conn, "expire").await, expire);

    // The API node reading the stream refreshes its TTL (at start, then hourly).
    let stop = CancellationToken::new();
    let _dispatcher = Dispatcher::start(
        store.clone(),
        redis.url.as_str(),
        "node-a",
        Duration::from_secs(10),
        false,
        stop.clone(),
    )
    .await?;
    wait_until(|| {
        let mut conn = conn.clone();
        let stream = stream.clone();
        async move { (ttl(&mut conn, &stream).await > 0).then_some(()) }
    })
    .await?;
    stop.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_of_commands_finishing_together_go_out_in_batches() -> anyhow::Result<()> {
    const N: usize = 300;
    let redis = RedisServer::start()?;
    let keys = Keyspace::new("acks");
    let store = Store::new(connect::shared(&redis.url).await?, keys.clone());
    let mut conn = redis.client().get_multiplexed_async_connection().await?;
    let stream = keys.commands(Platform::Process);
    ensure_group(&mut conn, &stream).await?;
    let mut pipe = redis::pipe();
    for n in 0..N {
        pipe.cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("n")
            .arg(n)
            .ignore();
    }
    pipe.exec_async(&mut conn).await?;
    let read: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(WORKER_GROUP)
        .arg("c1")
        .arg("COUNT")
        .arg(N)
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query_async(&mut conn)
        .await?;
    let ids: Vec<String> = read.keys[0].ids.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids.len(), N);
    assert_eq!(pending_count(&mut conn, &stream).await, N);

    let before = calls(&mut conn, "xack").await;
    // As many executions finishing at once as a worker runs: each awaits its own ack.
    let acks = ids.iter().map(|id| {
        let (store, stream) = (store.clone(), stream.clone());
        let id = id.clone();
        tokio::spawn(async move { store.ack(&stream, &id).await })
    });
    for ack in futures::future::join_all(acks).await {
        ack??;
    }
    // Every caller was told "acked" only once it was: nothing is pending, nothing is kept.
    assert_eq!(pending_count(&mut conn, &stream).await, 0);
    let len: usize = redis::cmd("XLEN")
        .arg(&stream)
        .query_async(&mut conn)
        .await?;
    assert_eq!(len, 0, "acked entries are deleted");
    let sent = calls(&mut conn, "xack").await - before;
    assert!(
        sent >= 1 && (sent as usize) < N,
        "{N} acks finishing together took {sent} XACKs: they were not batched"
    );
    assert_eq!(
        calls(&mut conn, "xdel").await,
        sent,
        "one XDEL goes with each XACK"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_operations_are_kept_as_long_as_the_worker_is_told() -> anyhow::Result<()> {
    // The operator bounds what operation records may hold: about 0.5 KB per command for this
    // long (`draas worker --operation-retention`), not under the floor of 600 s.
    let sys = common::System::start_tuned(common::runtime_binary(), |c| {
        c.operation_retention = Duration::from_secs(900)
    })
    .await?;
    let (status, op) = sys.post("/api/v1/platforms/process/ping").await;
    assert_eq!(
        (status, op["state"].as_str()),
        (200, Some("succeeded")),
        "{op}"
    );
    let id: uuid::Uuid = op["id"].as_str().unwrap_or_default().parse()?;
    let mut conn = sys
        .redis
        .client()
        .get_multiplexed_async_connection()
        .await?;
    let left = ttl(&mut conn, &sys.keys.operation(id)).await;
    assert!(
        left > 600 && left <= 900,
        "a finished operation expires after the worker's retention: TTL {left}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_and_the_reply_go_together_and_only_from_the_owner() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let keys = Keyspace::new("finish");
    let store = Store::new(connect::shared(&redis.url).await?, keys.clone());
    let mut conn = redis.client().get_multiplexed_async_connection().await?;
    let stream = keys.replies("node-f");
    let mut finished = reply();
    let op = ping(finished.command_id);
    let lease = draas_protocol::Timestamp(draas_bus::clock::now().millis() + 60_000);
    let claim = store.claim_operation(&op, "owner", lease).await?;
    assert_eq!(claim, draas_bus::store::Claim::Claimed { attempts: 1 });

    // Another worker (its lease taken over) records nothing and sends nothing.
    finished.worker = "other".into();
    assert!(
        !store
            .finish_and_reply("other", &finished, Some(&stream))
            .await?
    );
    let len: usize = redis::cmd("XLEN")
        .arg(&stream)
        .query_async(&mut conn)
        .await?;
    assert_eq!(len, 0, "a fenced-off worker replied");

    // The owner records the outcome and replies in the same step.
    finished.worker = "owner".into();
    assert!(
        store
            .finish_and_reply("owner", &finished, Some(&stream))
            .await?
    );
    let record = store.operation(finished.command_id).await?.expect("record");
    assert_eq!(record.state, draas_protocol::OperationState::Succeeded);
    assert_eq!(record.completed_at, Some(finished.completed_at));
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(&stream)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await?;
    assert_eq!(entries.ids.len(), 1);
    let sent: Reply =
        draas_protocol::codec::decode(&draas_bus::streams::payload(&entries.ids[0])?)?;
    assert_eq!(sent.command_id, finished.command_id);
    assert_eq!((sent.worker.as_str(), sent.attempts), ("owner", 1));
    let expires = ttl(&mut conn, &stream).await;
    assert!(
        expires > 0,
        "a reply stream the finish created expires: TTL {expires}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_and_finishes_made_together_share_round_trips_and_each_answers_for_itself()
-> anyhow::Result<()> {
    use draas_bus::store::Claim;
    use draas_protocol::{OperationState, Timestamp};
    const N: usize = 200;
    let redis = RedisServer::start()?;
    let keys = Keyspace::new("batch");
    let store = Store::new(connect::shared(&redis.url).await?, keys.clone());
    let mut conn = redis.client().get_multiplexed_async_connection().await?;
    let stream = keys.replies("node-b");
    let now = draas_bus::clock::now().millis();
    let (live, lapsed) = (Timestamp(now + 60_000), Timestamp(now.saturating_sub(1)));
    // Four kinds, one at a time: no record yet; finished; run by a live other worker; run by
    // another worker whose lease ran out.
    let mut ops = Vec::new();
    for i in 0..N {
        let mut finished = reply();
        let op = ping(finished.command_id);
        match i % 4 {
            1 => {
                store.claim_operation(&op, "done-by", live).await?;
                finished.worker = "done-by".into();
                assert!(store.finish_and_reply("done-by", &finished, None).await?);
            }
            2 => assert!(matches!(
                store.claim_operation(&op, "other", live).await?,
                Claim::Claimed { .. }
            )),
            3 => assert!(matches!(
                store.claim_operation(&op, "other", lapsed).await?,
                Claim::Claimed { .. }
            )),
            _ => {}
        }
        ops.push(op);
    }

    let before = calls(&mut conn, "evalsha").await;
    let claims = ops.iter().map(|op| {
        let (store, op) = (store.clone(), op.clone());
        tokio::spawn(async move { store.claim_operation(&op, "me", live).await })
    });
    let claims = futures::future::join_all(claims).await;
    let sent = calls(&mut conn, "evalsha").await - before;
    for (i, claim) in claims.into_iter().enumerate() {
        match (i % 4, claim??) {
            (0, Claim::Claimed { attempts: 1 }) | (3, Claim::Claimed { attempts: 2 }) => {}
            (1, Claim::Done(done)) => assert_eq!(done.state, OperationState::Succeeded),
            (2, Claim::Busy { owner }) => assert_eq!(owner, "other"),
            (kind, claim) => panic!("operation {i} (kind {kind}) was answered {claim:?}"),
        }
    }
    // New records and finished ones are decided by the `SET … NX GET` alone; the pending and
    // running ones (half of them) go to the script, together.
    assert!(
        sent >= 1 && (sent as usize) < N / 2,
        "{} undecided claims made together took {sent} script calls: they were not batched",
        N / 2
    );

    // Finishes of the claimed ones, and of those a live other worker owns (fenced off).
    let before = calls(&mut conn, "evalsha").await;
    let finishing: Vec<usize> = (0..N).filter(|i| i % 4 != 1).collect();
    let finishes = finishing.iter().map(|&i| {
        let (store, stream) = (store.clone(), stream.clone());
        let mut finished = reply();
        finished.command_id = ops[i].id;
        finished.worker = "me".into();
        tokio::spawn(async move { store.finish_and_reply("me", &finished, Some(&stream)).await })
    });
    let finishes = futures::future::join_all(finishes).await;
    let sent = calls(&mut conn, "evalsha").await - before;
    for (&i, written) in finishing.iter().zip(finishes) {
        assert_eq!(
            written??,
            i % 4 != 2,
            "operation {i}: only the owner finishes"
        );
        let record = store.operation(ops[i].id).await?.expect("record");
        let want = if i % 4 == 2 {
            OperationState::Running
        } else {
            OperationState::Succeeded
        };
        assert_eq!(record.state, want, "operation {i}");
    }
    let len: usize = redis::cmd("XLEN")
        .arg(&stream)
        .query_async(&mut conn)
        .await?;
    assert_eq!(
        len,
        N / 2,
        "one reply per finish by an owner, none from the fenced off"
    );
    assert!(
        sent >= 1 && (sent as usize) < finishing.len(),
        "{} finishes made together took {sent} script calls: they were not batched",
        finishing.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_gives_up_mid_call_holds_up_no_other() -> anyhow::Result<()> {
    use draas_bus::store::Claim;
    use draas_protocol::Timestamp;
    let redis = RedisServer::start()?;
    let store = Store::new(connect::shared(&redis.url).await?, Keyspace::new("giveup"));
    let mut conn = redis.client().get_multiplexed_async_connection().await?;
    let now = draas_bus::clock::now().millis();
    let lease = Timestamp(now + 60_000);
    let op = || ping(uuid::Uuid::now_v7());
    let blocked = |conn: &mut redis::aio::MultiplexedConnection| {
        let mut conn = conn.clone();
        async move {
            let info: String = redis::cmd("INFO")
                .arg("clients")
                .query_async(&mut conn)
                .await
                .ok()?;
            info.lines()
                .find_map(|l| l.strip_prefix("blocked_clients:"))
                .and_then(|n| n.trim().parse::<u32>().ok())
                .filter(|&n| n >= 1)
        }
    };
    // Writes wait: the first claim is on the wire, the second queues behind it.
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(60_000)
        .arg("WRITE")
        .exec_async(&mut conn)
        .await?;
    let first = tokio::spawn({
        let (store, op) = (store.clone(), op());
        async move { store.claim_operation(&op, "w", lease).await }
    });
    wait_until(|| blocked(&mut conn)).await?;
    let second_op = op();
    let mut second = Box::pin(store.claim_operation(&second_op, "w", lease));
    assert!(
        futures::poll!(&mut second).is_pending(),
        "the second claim queued"
    );
    // The first caller gives up (its execution was abandoned) while its claim is out.
    first.abort();
    assert!(first.await.is_err_and(|e| e.is_cancelled()));
    redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .exec_async(&mut conn)
        .await?;
    let within = Duration::from_secs(10);
    let second = tokio::time::timeout(within, second).await?;
    assert_eq!(
        second?,
        Claim::Claimed { attempts: 1 },
        "the queued claim went out"
    );
    let third = tokio::time::timeout(within, store.claim_operation(&op(), "w", lease)).await?;
    assert_eq!(
        third?,
        Claim::Claimed { attempts: 1 },
        "later claims still go out"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_or_finish_that_fails_fails_alone_in_its_batch() -> anyhow::Result<()> {
    use draas_bus::store::Claim;
    use draas_protocol::{Operation, Timestamp};
    const N: usize = 40;
    let redis = RedisServer::start()?;
    let keys = Keyspace::new("alone");
    let store = Store::new(connect::shared(&redis.url).await?, keys.clone());
    let mut conn = redis.client().get_multiplexed_async_connection().await?;
    let now = draas_bus::clock::now().millis();
    let lease = Timestamp(now + 60_000);
    let ops: Vec<Operation> = (0..N).map(|_| ping(uuid::Uuid::now_v7())).collect();
    // Operation 7's key holds neither a record nor a hash (a list): its claim fails, in the
    // same round trips as the others.
    redis::cmd("RPUSH")
        .arg(keys.operation(ops[7].id))
        .arg("not a record")
        .exec_async(&mut conn)
        .await?;
    let before = calls(&mut conn, "evalsha").await;
    let claims = ops.iter().map(|op| {
        let (store, op) = (store.clone(), op.clone());
        tokio::spawn(async move { store.claim_operation(&op, "me", lease).await })
    });
    for (i, claim) in futures::future::join_all(claims)
        .await
        .into_iter()
        .enumerate()
    {
        match (i, claim?) {
            (7, Err(error)) => assert!(error.to_string().contains("WRONGTYPE"), "{error}"),
            (7, Ok(claim)) => panic!("a claim of a broken record answered {claim:?}"),
            (_, claim) => assert_eq!(claim?, Claim::Claimed { attempts: 1 }, "operation {i}"),
        }
    }
    let sent = calls(&mut conn, "evalsha").await - before;
    // One call, counted twice the first time (`NOSCRIPT`, then after `SCRIPT LOAD`).
    assert!(
        sent <= 2,
        "{N} new claims took {sent} script calls: only the broken one needs the script"
    );
    // Operation 3's reply stream is not a stream: its finish fails, the others reply.
    let (good, bad) = (keys.replies("node-good"), keys.replies("node-bad"));
    redis::cmd("SET")
        .arg(&bad)
        .arg("not a stream")
        .exec_async(&mut conn)
        .await?;
    let finishes = (0..N).filter(|&i| i != 7).map(|i| {
        let store = store.clone();
        let to = if i == 3 { bad.clone() } else { good.clone() };
        let mut finished = reply();
        finished.command_id = ops[i].id;
        finished.worker = "me".into();
        tokio::spawn(async move { (i, store.finish_and_reply("me", &finished, Some(&to)).await) })
    });
    for finish in futures::future::join_all(finishes).await {
        match finish? {
            (3, written) => assert!(written.is_err(), "{written:?}"),
            (i, written) => assert!(written?, "operation {i} was finished by its owner"),
        }
    }
    let len: usize = redis::cmd("XLEN").arg(&good).query_async(&mut conn).await?;
    assert_eq!(len, N - 2, "every other finish replied");
    assert!(
        ttl(&mut conn, &good).await > 0,
        "a reply stream made in a batch expires"
    );
    let record = ttl(&mut conn, &keys.operation(ops[0].id)).await;
    assert!(
        record > 0,
        "a record finished in a batch expires: TTL {record}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_only_its_caller_knows_gets_its_record_from_whoever_needs_it_first()
-> anyhow::Result<()> {
    use draas_api::dispatch::Request;
    use draas_bus::store::Claim;
    use draas_protocol::{Command, OperationState, Timestamp};
    let redis = RedisServer::start()?;
    let keys = Keyspace::new("record");
    let store = Store::new(connect::shared(&redis.url).await?, keys.clone());
    let mut conn = redis.client().get_multiplexed_async_connection().await?;
    let stream = keys.commands(Platform::Process);
    ensure_group(&mut conn, &stream).await?;
    let exists = |conn: &mut redis::aio::MultiplexedConnection, id: uuid::Uuid| {
        let (mut conn, key) = (conn.clone(), keys.operation(id));
        async move {
            redis::cmd("EXISTS")
                .arg(key)
                .query_async::<i64>(&mut conn)
                .await
                .unwrap()
                == 1
        }
    };
    let stop = CancellationToken::new();
    let dispatcher = Dispatcher::start(
        store.clone(),
        redis.url.as_str(),
        "node-r",
        Duration::from_secs(10),
        false,
        stop.clone(),
    )
    .await?;
    let wait = Duration::from_millis(200);
    let lease = Timestamp(draas_bus::clock::now().millis() + 60_000);

    // Nobody runs it: the append wrote no record, and the answer without a reply writes the
    // pending one the caller is about to poll, with a TTL.
    let submitted = dispatcher
        .submit(Request::new(
            stream.clone(),
            Platform::Process,
            None,
            Command::Ping,
            wait,
        ))
        .await?;
    let id = submitted.operation;
    assert!(
        !exists(&mut conn, id).await,
        "a record was written at submit"
    );
    let answered = submitted.operation(wait).await?;
    assert_eq!(answered.state, OperationState::Pending);
    let stored = store
        .operation(id)
        .await?
        .expect("the answer wrote the record");
    assert_eq!(stored, answered);
    assert!(
        ttl(&mut conn, &keys.operation(id)).await > 0,
        "the record expires"
    );
    // A worker then claims it from that record, and a late writer changes nothing.
    let claim = store.claim_operation(&stored, "w", lease).await?;
    assert_eq!(claim, Claim::Claimed { attempts: 1 });
    let again = store.record_operation(&stored).await?;
    assert_eq!(
        (again.state, again.worker.as_deref()),
        (OperationState::Running, Some("w"))
    );

    // With an idempotency key the id is known beyond the request: recorded at submit.
    let mut keyed = Request::new(stream.clone(), Platform::Process, None, Command::Ping, wait);
    keyed.idempotency_key = Some("k".into());
    let submitted = dispatcher.submit(keyed).await?;
    assert!(
        exists(&mut conn, submitted.operation).await,
        "no record for a keyed command"
    );

    // A command dead-lettered before anyone claimed it ends with a record that says why.
    let (env, _) = common::envelope(None, Command::Ping);
    store.append(&stream, &env).await?;
    let read: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(WORKER_GROUP)
        .arg("dl")
        .arg("COUNT")
        .arg(100)
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query_async(&mut conn)
        .await?;
    let entry = read.keys[0].ids.last().expect("the appended entry").clone();
    store
        .dead_letter(Platform::Process, &stream, &entry, "test", 5)
        .await?;
    let ended = store
        .operation(env.command_id)
        .await?
        .expect("a dead letter's record");
    assert_eq!(ended.state, OperationState::Failed);
    assert!(ttl(&mut conn, &keys.operation(env.command_id)).await > 0);

    // A record an earlier version wrote (a hash) is read, claimed and finished, keeping its TTL.
    let old = ping(uuid::Uuid::now_v7());
    let key = keys.operation(old.id);
    let mut pipe = redis::pipe();
    pipe.hset_multiple(&key, &old.to_fields()).ignore();
    pipe.expire(&key, 3600).ignore();
    pipe.exec_async(&mut conn).await?;
    assert_eq!(store.operation(old.id).await?, Some(old.clone()));
    let claim = store.claim_operation(&old, "w", lease).await?;
    assert_eq!(claim, Claim::Claimed { attempts: 1 });
    let left = ttl(&mut conn, &key).await;
    assert!(
        left > 0 && left <= 3600,
        "the claim kept the record's TTL: {left}"
    );
    let mut finished = reply();
    finished.command_id = old.id;
    finished.worker = "w".into();
    assert!(
        store
            .finish_and_reply("w", &finished, Some(&keys.replies("node-r")))
            .await?
    );
    let done = store.operation(old.id).await?.expect("record");
    assert_eq!((done.state, done.attempts), (OperationState::Succeeded, 1));
    stop.cancel();
    Ok(())
}
