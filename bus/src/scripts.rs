//! Single-key Lua scripts: O(1) compare-and-set steps that must not interleave.
//!
//! Each touches exactly one key, so each is valid in a Redis Cluster and never blocks Redis
//! for longer than a few hash operations. Each reads what it needs with one `HMGET` and writes
//! with one `HSET`: every `redis.call` counts as a command in Redis's accounting and costs
//! its own dispatch, so the hot ones (claim, finish, transition) make 2–4 calls, not 6–10.

use std::sync::LazyLock;

use redis::Script;

/// Instance state CAS with fencing.
/// KEYS[1] instance; ARGV: expected state, new state, fencing token (0 = none), now ms,
/// runtime JSON ("" = unchanged), the command making the change ("" = none, e.g. a monitor).
/// Returns {status, detail}: ok/current (then also the instance's platform, '' for records
/// older than that field), state/current, fenced/fence, missing.
pub(crate) static TRANSITION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local f = redis.call('HMGET', KEYS[1], 'state', 'fence', 'platform')
local cur = f[1]
if not cur then return {'missing', ''} end
if cur ~= ARGV[1] then return {'state', cur} end
local token = tonumber(ARGV[3])
if token > 0 then
  local fence = tonumber(f[2] or '0')
  if fence > token then return {'fenced', tostring(fence)} end
end
local set = {'state', ARGV[2], 'updated', ARGV[4]}
if ARGV[5] ~= '' then set[#set + 1] = 'runtime'; set[#set + 1] = ARGV[5] end
if ARGV[6] ~= '' then set[#set + 1] = 'command'; set[#set + 1] = ARGV[6] end
redis.call('HSET', KEYS[1], unpack(set))
if ARGV[6] == '' then redis.call('HDEL', KEYS[1], 'command') end
return {'ok', cur, f[3] or ''}
",
    )
});

/// Takes a new fencing token for an instance. KEYS[1] instance. Returns the token, or -1 when
/// the instance does not exist (so a deleted instance is never resurrected as a bare hash).
pub(crate) static FENCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('HINCRBY', KEYS[1], 'fence', 1)
",
    )
});

/// Writes runtime info only while the caller's token is current.
/// KEYS[1] instance; ARGV: token, runtime JSON, now ms. Returns 1 when written.
pub(crate) static SET_RUNTIME: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local fence = tonumber(redis.call('HGET', KEYS[1], 'fence') or '0')
if fence > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'runtime', ARGV[2], 'updated', ARGV[3])
return 1
",
    )
});

/// Stores an observation unless a newer one is stored (several workers may watch one
/// workload). KEYS[1] instance; ARGV: observation JSON, its time (ms). Returns 1 if written.
pub(crate) static SET_OBSERVED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local last = tonumber(redis.call('HGET', KEYS[1], 'observed-at') or '0')
if last > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'observed', ARGV[1], 'observed-at', ARGV[2])
return 1
",
    )
});

/// Spec update guarded by generation. KEYS[1] instance; ARGV: expected generation, spec JSON,
/// now ms. Returns the new generation, -1 if missing, -2 if the generation moved on.
pub(crate) static UPDATE_SPEC: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local g = redis.call('HGET', KEYS[1], 'generation')
if not g then return -1 end
if g ~= ARGV[1] then return -2 end
local next = tonumber(g) + 1
redis.call('HSET', KEYS[1], 'spec', ARGV[2], 'generation', tostring(next), 'updated', ARGV[3])
return next
",
    )
});

/// Claims an operation for execution. KEYS[1] operation; ARGV: consumer, now ms, lease-until
/// ms, then field/value pairs to create the record with if it is missing.
/// Returns {'done'}, {'busy', owner} or {'claimed', attempts}.
pub(crate) static CLAIM_OPERATION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local f = redis.call('HMGET', KEYS[1], 'state', 'worker', 'leaseUntil', 'attempts')
local st = f[1]
if st == 'succeeded' or st == 'failed' then return {'done', ''} end
if st == 'running' then
  local owner = f[2]
  local lease = tonumber(f[3] or '0')
  if owner ~= ARGV[1] and lease > tonumber(ARGV[2]) then return {'busy', owner or ''} end
end
if not st then
  local set = {}
  for i = 4, #ARGV do set[#set + 1] = ARGV[i] end
  set[#set + 1] = 'state'; set[#set + 1] = 'running'
  set[#set + 1] = 'worker'; set[#set + 1] = ARGV[1]
  set[#set + 1] = 'leaseUntil'; set[#set + 1] = ARGV[3]
  set[#set + 1] = 'attempts'; set[#set + 1] = '1'
  redis.call('HSET', KEYS[1], unpack(set))
  return {'claimed', '1'}
end
local attempts = tostring(tonumber(f[4] or '0') + 1)
redis.call('HSET', KEYS[1], 'state', 'running', 'worker', ARGV[1], 'leaseUntil', ARGV[3], 'attempts', attempts)
return {'claimed', attempts}
",
    )
});

/// Extends the caller's lease on an operation. KEYS[1] operation; ARGV: consumer, lease-until.
/// Returns 1 while the caller still owns it.
pub(crate) static RENEW_OPERATION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local f = redis.call('HMGET', KEYS[1], 'state', 'worker')
if f[1] ~= 'running' or f[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'leaseUntil', ARGV[2])
return 1
",
    )
});

/// The finish, shared by the two scripts below: returns 0 unless the caller still owns the
/// operation, else writes the final state and the retention, and goes on.
const FINISH_BODY: &str = r"
local f = redis.call('HMGET', KEYS[1], 'state', 'worker')
if f[1] ~= 'running' or f[2] ~= ARGV[1] then return 0 end
local set = {'state', ARGV[2], 'completed', ARGV[3]}
if ARGV[4] ~= '' then set[#set + 1] = 'result'; set[#set + 1] = ARGV[4] end
if ARGV[5] ~= '' then set[#set + 1] = 'error'; set[#set + 1] = ARGV[5] end
redis.call('HSET', KEYS[1], unpack(set))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
";

/// Completes an operation if the caller still owns it. KEYS[1] operation; ARGV: consumer,
/// final state, completed ms, result JSON or "", error JSON or "", retention seconds.
/// Returns 1 when written, 0 when another owner took it over. The `leaseUntil` of the last
/// claim stays in the record: a lease counts only while the state is `running`, and not
/// deleting it saves a command per operation.
pub(crate) static FINISH_OPERATION: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{FINISH_BODY}return 1\n")));

/// [`FINISH_OPERATION`], then the reply, in one step: used where both keys may be named by
/// one script (one Redis server; on a cluster they are in different slots, so the worker
/// takes the two steps). Saves a round trip on every command's critical path.
/// KEYS[1] operation, KEYS[2] reply stream; ARGV: as FINISH_OPERATION (1–6), then the reply's
/// field name and payload, the stream's MAXLEN (approximate) and its TTL in seconds (set only
/// when the stream has to be created). Returns 1 when written and replied, 0 when another
/// owner took the operation over (no reply then: that owner replies).
pub(crate) static FINISH_AND_REPLY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{FINISH_BODY}{}",
        r"
local added = redis.call('XADD', KEYS[2], 'NOMKSTREAM', 'MAXLEN', '~', ARGV[9], '*', ARGV[7], ARGV[8])
if not added then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[9], '*', ARGV[7], ARGV[8])
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[10]))
end
return 1
"
    ))
});

/// Removes a name only while it still maps to the given id. KEYS[1] names; ARGV: name, id.
pub(crate) static RELEASE_NAME: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
",
    )
});

/// Gives an operation back (pending, unowned) so another worker may take it at once.
/// KEYS[1] operation; ARGV: consumer. Returns 1 when released.
pub(crate) static RELEASE_OPERATION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
if redis.call('HGET', KEYS[1], 'worker') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'pending')
redis.call('HDEL', KEYS[1], 'worker', 'leaseUntil')
return 1
",
    )
});

/// Ends an operation whose command was dead-lettered before it ran to completion.
/// KEYS[1] operation; ARGV: error JSON, completed ms, retention seconds. Returns 1 when ended.
pub(crate) static DEAD_LETTER_OPERATION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local st = redis.call('HGET', KEYS[1], 'state')
if not st or st == 'succeeded' or st == 'failed' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'failed', 'error', ARGV[1], 'completed', ARGV[2])
redis.call('HDEL', KEYS[1], 'worker', 'leaseUntil')
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
",
    )
});

/// Makes a dead-lettered operation pending again, for a replay. KEYS[1] operation; ARGV: the
/// dead-letter error code. Returns 1 when reopened.
pub(crate) static REOPEN_OPERATION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HGET', KEYS[1], 'state') ~= 'failed' then return 0 end
local err = redis.call('HGET', KEYS[1], 'error') or ''
if not string.find(err, ARGV[1], 1, true) then return 0 end
redis.call('HSET', KEYS[1], 'state', 'pending')
redis.call('HDEL', KEYS[1], 'error', 'completed')
return 1
",
    )
});
