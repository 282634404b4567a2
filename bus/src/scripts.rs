//! Lua scripts: O(1) compare-and-set steps that must not interleave.
//!
//! Each step touches one key, so each is valid in a Redis Cluster and never blocks Redis for
//! longer than a few hash operations. Three run several steps in one call on one Redis server:
//! [`CLAIM_OPERATIONS`] (one key per claim; a cluster sends one key per call),
//! [`FINISH_AND_REPLY`] and [`RECORD_FRESH_AND_REPLY`] (a record and its reply stream per
//! operation; one server only). Each step
//! reads what it needs with one call (`HMGET` of an instance, `GET` of an operation record)
//! and writes with one (`HSET`, `SET` with the record's TTL): every `redis.call` counts as a
//! command in Redis's accounting and costs its own dispatch, so the hot ones (claim, finish,
//! transition) make 2–3 calls, not 6–10, and a batch pays one `EVALSHA` for all.

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

/// How the operation scripts read a record: `load(key)` returns its fields as a table, or
/// nil when there is none. A record is a JSON string of string fields, decoded with Redis's
/// built-in `cjson`; one that an earlier version wrote as a hash of the same fields is read
/// with `HGETALL` (only after `GET` met it: a current record costs one call). Writing one back
/// (`SET`) replaces a hash with a string; a key of any other type fails the step.
const RECORD_FUNCTIONS: &str = r"
local function load(key)
  local raw = redis.pcall('GET', key)
  if type(raw) == 'table' then
    local flat = redis.call('HGETALL', key)
    local rec = {}
    for i = 1, #flat, 2 do rec[flat[i]] = flat[i + 1] end
    return rec
  end
  if not raw then return nil end
  return cjson.decode(raw)
end
local function failure(e)
  if type(e) == 'table' then return tostring(e.err) end
  return tostring(e)
end
";

fn with_records(body: &str) -> Script {
    Script::new(&format!("{RECORD_FUNCTIONS}{body}"))
}

/// Claims operations whose record the first step of a claim (`SET … NX GET`, see
/// `store/operations.rs`) found and could not decide on: pending, running, or a hash of an
/// earlier version. Any number in one call. KEYS: the operations; ARGV[1]: now ms, then per
/// key four values: consumer, lease-until ms, the record to create if it is missing (it
/// expired since), and that record's TTL in seconds.
/// Returns, per key, two values: 'done' and the record, 'busy' and the owner, 'claimed' and
/// the attempts, or 'error' and why (that claim failed alone: the others of the call stand).
pub(crate) static CLAIM_OPERATIONS: LazyLock<Script> = LazyLock::new(|| {
    with_records(
        r"
local function claim(key, consumer, now, lease, fresh, ttl)
  local rec = load(key)
  if not rec then
    redis.call('SET', key, fresh, 'EX', ttl)
    return 'claimed', '1'
  end
  local st = rec['state']
  if st == 'succeeded' or st == 'failed' then return 'done', cjson.encode(rec) end
  if st == 'running' and rec['worker'] ~= consumer and tonumber(rec['leaseUntil'] or '0') > now then
    return 'busy', rec['worker'] or ''
  end
  local attempts = tostring(tonumber(rec['attempts'] or '0') + 1)
  rec['state'] = 'running'; rec['worker'] = consumer; rec['leaseUntil'] = lease
  rec['attempts'] = attempts
  redis.call('SET', key, cjson.encode(rec), 'KEEPTTL')
  return 'claimed', attempts
end
local now = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS do
  local a = 2 + (i - 1) * 4
  local ok, status, detail = pcall(claim, KEYS[i], ARGV[a], now, ARGV[a + 1], ARGV[a + 2], ARGV[a + 3])
  if not ok then status, detail = 'error', failure(status) end
  out[#out + 1] = status
  out[#out + 1] = detail
end
return out
",
    )
});

/// Extends the caller's lease on an operation. KEYS[1] operation; ARGV: consumer, lease-until.
/// Returns 1 while the caller still owns it.
pub(crate) static RENEW_OPERATION: LazyLock<Script> = LazyLock::new(|| {
    with_records(
        r"
local rec = load(KEYS[1])
if not rec or rec['state'] ~= 'running' or rec['worker'] ~= ARGV[1] then return 0 end
rec['leaseUntil'] = ARGV[2]
redis.call('SET', KEYS[1], cjson.encode(rec), 'KEEPTTL')
return 1
",
    )
});

/// The finish, shared by the two scripts below: `finish(key, a)` returns 0 unless the caller
/// still owns the operation, else writes the final state with the retention as its TTL and
/// returns 1. ARGV[a..a+5]: consumer, final state, completed ms, result JSON or "", error JSON
/// or "", retention seconds. The `leaseUntil` of the last claim stays in the record: a lease
/// counts only while the state is `running`.
const FINISH_FUNCTION: &str = r"
local function finish(key, a)
  local rec = load(key)
  if not rec or rec['state'] ~= 'running' or rec['worker'] ~= ARGV[a] then return 0 end
  rec['state'] = ARGV[a + 1]; rec['completed'] = ARGV[a + 2]
  if ARGV[a + 3] ~= '' then rec['result'] = ARGV[a + 3] end
  if ARGV[a + 4] ~= '' then rec['error'] = ARGV[a + 4] end
  redis.call('SET', key, cjson.encode(rec), 'EX', tonumber(ARGV[a + 5]))
  return 1
end
";

/// The reply, shared by the two scripts that reply: `reply(key, a)` appends ARGV[a] = ARGV[a +
/// 1] (the reply's field and payload) to the reply stream `key`, capped at ARGV[a + 2]
/// entries (approximately), creating it with a TTL of ARGV[a + 3] seconds when it is missing
/// (the API node that waits for it creates it; a stream it left behind expires).
const REPLY_FUNCTION: &str = r"
local function reply(key, a)
  local added = redis.call('XADD', key, 'NOMKSTREAM', 'MAXLEN', '~', ARGV[a + 2], '*', ARGV[a], ARGV[a + 1])
  if not added then
    redis.call('XADD', key, 'MAXLEN', '~', ARGV[a + 2], '*', ARGV[a], ARGV[a + 1])
    redis.call('EXPIRE', key, tonumber(ARGV[a + 3]))
  end
end
";

/// Completes an operation if the caller still owns it. KEYS[1] operation; ARGV 1–6 as
/// `finish` above. Returns 1 when written, 0 when another owner took it over.
pub(crate) static FINISH_OPERATION: LazyLock<Script> =
    LazyLock::new(|| with_records(&format!("{FINISH_FUNCTION}return finish(KEYS[1], 1)\n")));

/// [`FINISH_OPERATION`], then the reply, in one step, for any number of operations (the
/// finishes that queue while one batch is out go together, [`crate::coalesce`]): used where
/// all keys may be named by one script (one Redis server; on a cluster an operation and its
/// reply stream are in different slots, so the worker takes the two steps). Saves a round
/// trip on every command's critical path.
/// KEYS: per operation, its record and its reply stream; ARGV: per operation ten values: as
/// `finish` (six), then as `reply` (four: the reply's field and payload, the stream's MAXLEN
/// and its TTL). Returns per operation '1' when written and replied, '0' when another owner
/// took it over (no reply then: that owner replies), or 'error: ' and why (that finish failed
/// alone: the others stand).
pub(crate) static FINISH_AND_REPLY: LazyLock<Script> = LazyLock::new(|| {
    with_records(&format!(
        "{FINISH_FUNCTION}{REPLY_FUNCTION}{}",
        r"
local out = {}
for i = 1, #KEYS / 2 do
  local a = (i - 1) * 10 + 1
  local ok, written = pcall(function()
    local written = finish(KEYS[2 * i - 1], a)
    if written == 1 then reply(KEYS[2 * i], a + 6) end
    return tostring(written)
  end)
  if ok then out[i] = written else out[i] = 'error: ' .. failure(written) end
end
return out
"
    ))
});

/// The claim and the finish of commands without effects, run before their claim
/// (`Store::claim_and_finish`): writes each operation's finished record only when it has no
/// record at all (`SET … NX … GET`: this execution is then the first and only claim), and
/// then its reply. Nothing is decoded: a fresh command costs one `SET` and one `XADD`.
/// KEYS: per operation, its record and its reply stream; ARGV: per operation six values: the
/// finished record, its TTL in seconds, then as `reply` (four).
/// Returns per operation two values: 'finished' and '' (recorded and replied), 'recorded' and
/// why the reply failed (recorded, not replied: the caller sends the reply), 'found' and the
/// record that was there (nothing written: the caller claims as usual), or 'error' and why
/// (`WRONGTYPE`: a hash of an earlier version, read by the usual claim).
pub(crate) static RECORD_FRESH_AND_REPLY: LazyLock<Script> = LazyLock::new(|| {
    with_records(&format!(
        "{REPLY_FUNCTION}{}",
        r"
local out = {}
for i = 1, #KEYS / 2 do
  local a = (i - 1) * 6 + 1
  local found = redis.pcall('SET', KEYS[2 * i - 1], ARGV[a], 'NX', 'EX', ARGV[a + 1], 'GET')
  local status, detail = 'found', found
  if type(found) == 'table' then
    status, detail = 'error', failure(found)
  elseif not found then
    local ok, e = pcall(reply, KEYS[2 * i], a + 2)
    if ok then status, detail = 'finished', '' else status, detail = 'recorded', failure(e) end
  end
  out[#out + 1] = status
  out[#out + 1] = detail
end
return out
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
    with_records(
        r"
local rec = load(KEYS[1])
if not rec or rec['state'] ~= 'running' or rec['worker'] ~= ARGV[1] then return 0 end
rec['state'] = 'pending'; rec['worker'] = nil; rec['leaseUntil'] = nil
redis.call('SET', KEYS[1], cjson.encode(rec), 'KEEPTTL')
return 1
",
    )
});

/// Ends an operation whose command was dead-lettered before it ran to completion, creating
/// its record when there is none (nobody claimed it, and its submitter wrote none).
/// KEYS[1] operation; ARGV: error JSON, completed ms, retention seconds, the pending record to
/// start from when there is none. Returns 1 when ended.
pub(crate) static DEAD_LETTER_OPERATION: LazyLock<Script> = LazyLock::new(|| {
    with_records(
        r"
local rec = load(KEYS[1]) or cjson.decode(ARGV[4])
if rec['state'] == 'succeeded' or rec['state'] == 'failed' then return 0 end
rec['state'] = 'failed'; rec['error'] = ARGV[1]; rec['completed'] = ARGV[2]
rec['worker'] = nil; rec['leaseUntil'] = nil
redis.call('SET', KEYS[1], cjson.encode(rec), 'EX', tonumber(ARGV[3]))
return 1
",
    )
});

/// Makes a dead-lettered operation pending again, for a replay. KEYS[1] operation; ARGV: the
/// dead-letter error code. Returns 1 when reopened.
pub(crate) static REOPEN_OPERATION: LazyLock<Script> = LazyLock::new(|| {
    with_records(
        r"
local rec = load(KEYS[1])
if not rec or rec['state'] ~= 'failed' then return 0 end
if not string.find(rec['error'] or '', ARGV[1], 1, true) then return 0 end
rec['state'] = 'pending'; rec['error'] = nil; rec['completed'] = nil
redis.call('SET', KEYS[1], cjson.encode(rec), 'KEEPTTL')
return 1
",
    )
});
