//! The Redis permissions DRaaS needs, in one table: the least-privilege ACL rule in the
//! README is [`rule`] built from it, and [`check`] proves at start-up that the connected user
//! holds every one of them, so a user without the rule is one clear error, not a failure in
//! the middle of some command later.
//!
//! The check sends `MULTI`, one wrong-arity `ECHO` (which marks the transaction failed), one
//! probe per needed command on the key [`Keyspace::acl_probe`], then `EXEC`. Redis checks a
//! command's ACL before queueing it, so each probe answers `QUEUED` or `NOPERM`; the failed
//! transaction makes `EXEC` discard everything, so nothing ever runs. It needs no admin
//! command (`ACL DRYRUN`, `ACL GETUSER`), so the checked user stays least-privileged.

use draas_protocol::Keyspace;
use redis::{RedisError, Value};

use crate::connect::RedisTarget;

/// One command DRaaS sends: its name in an ACL rule, the server version that has it, and a
/// probe invocation (`K` stands for the probe key) with the arity Redis checks.
struct Need {
    rule: &'static str,
    since: [u32; 2],
    /// Only checked when the component uses it (`WAITAOF` behind `--wait-aof`).
    optional: bool,
    probe: &'static [&'static str],
}

const fn need(rule: &'static str, probe: &'static [&'static str]) -> Need {
    Need {
        rule,
        since: [0, 0],
        optional: false,
        probe,
    }
}

/// Every command the API, the workers and `draas ops` send (the benchmark's key clean-up, SCAN
/// and UNLINK, is not among them: give it its own user). Connection set-up (AUTH, HELLO) needs
/// no grant; `CLIENT SETINFO` (7.2+) is sent by the client library, which would ignore a
/// refusal, but a refusal would fill `ACL LOG`.
const NEEDS: &[Need] = &[
    need("ping", &["PING"]),
    need("info", &["INFO", "server"]),
    need("multi", &["MULTI"]),
    need("exec", &["EXEC"]),
    need(
        "evalsha",
        &[
            "EVALSHA",
            "0000000000000000000000000000000000000000",
            "1",
            "K",
        ],
    ),
    need("script|load", &["SCRIPT", "LOAD", "return 1"]),
    // Strings and keys.
    need("get", &["GET", "K"]),
    need("set", &["SET", "K", "v", "NX", "PX", "1"]),
    need("del", &["DEL", "K"]),
    need("exists", &["EXISTS", "K"]),
    need("expire", &["EXPIRE", "K", "1"]),
    need("pexpire", &["PEXPIRE", "K", "1"]),
    need("pexpireat", &["PEXPIREAT", "K", "1"]),
    // Hashes.
    need("hset", &["HSET", "K", "f", "v"]),
    need("hmset", &["HMSET", "K", "f", "v"]),
    need("hsetnx", &["HSETNX", "K", "f", "v"]),
    need("hget", &["HGET", "K", "f"]),
    need("hmget", &["HMGET", "K", "f"]),
    need("hgetall", &["HGETALL", "K"]),
    need("hdel", &["HDEL", "K", "f"]),
    need("hincrby", &["HINCRBY", "K", "f", "1"]),
    // Sets and sorted sets.
    need("sadd", &["SADD", "K", "m"]),
    need("srem", &["SREM", "K", "m"]),
    need("smembers", &["SMEMBERS", "K"]),
    need("scard", &["SCARD", "K"]),
    need("sismember", &["SISMEMBER", "K", "m"]),
    need("zadd", &["ZADD", "K", "0", "m"]),
    need("zrem", &["ZREM", "K", "m"]),
    need("zrange", &["ZRANGE", "K", "0", "-1"]),
    need("zrangebyscore", &["ZRANGEBYSCORE", "K", "0", "1"]),
    need("zcount", &["ZCOUNT", "K", "0", "1"]),
    need("zcard", &["ZCARD", "K"]),
    need("zremrangebyscore", &["ZREMRANGEBYSCORE", "K", "0", "1"]),
    // Streams.
    need("xadd", &["XADD", "K", "MAXLEN", "~", "10", "*", "m", "x"]),
    need("xread", &["XREAD", "COUNT", "1", "STREAMS", "K", "0"]),
    need(
        "xreadgroup",
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "COUNT",
            "1",
            "STREAMS",
            "K",
            ">",
        ],
    ),
    need("xack", &["XACK", "K", "g", "0-1"]),
    need("xdel", &["XDEL", "K", "0-1"]),
    need("xlen", &["XLEN", "K"]),
    need("xrange", &["XRANGE", "K", "-", "+", "COUNT", "1"]),
    need("xrevrange", &["XREVRANGE", "K", "+", "-", "COUNT", "1"]),
    need("xpending", &["XPENDING", "K", "g"]),
    need("xclaim", &["XCLAIM", "K", "g", "c", "1000", "0-1"]),
    need(
        "xautoclaim",
        &["XAUTOCLAIM", "K", "g", "c", "1000", "0-0", "COUNT", "1"],
    ),
    need("xgroup", &["XGROUP", "CREATE", "K", "g", "0", "MKSTREAM"]),
    need("xinfo", &["XINFO", "STREAM", "K"]),
    Need {
        rule: "client|setinfo",
        since: [7, 2],
        optional: false,
        probe: &["CLIENT", "SETINFO", "LIB-NAME", "draas"],
    },
    Need {
        rule: "xackdel",
        since: [8, 2],
        optional: false,
        probe: &["XACKDEL", "K", "g", "IDS", "1", "0-1"],
    },
    Need {
        rule: "waitaof",
        since: [7, 2],
        optional: true,
        probe: &["WAITAOF", "1", "0", "0"],
    },
];

/// The least-privilege rule for a user `user` with password `password` whose keys (and, for
/// revocation notices, pub/sub channels) all start with `prefix:`; `version` is the server's
/// (commands it lacks are left out: Redis refuses unknown names in a rule). `wait_aof` adds
/// `WAITAOF` for `draas api --wait-aof`.
pub fn rule(user: &str, password: &str, prefix: &str, version: &[u32], wait_aof: bool) -> String {
    let mut rule = format!(
        "ACL SETUSER {user} on >{password} resetkeys ~{prefix}:* resetchannels &{prefix}:* -@all"
    );
    for need in needed(version, wait_aof) {
        rule.push_str(" +");
        rule.push_str(need.rule);
    }
    rule
}

fn needed(version: &[u32], wait_aof: bool) -> impl Iterator<Item = &'static Need> {
    let version = version.to_vec();
    NEEDS
        .iter()
        .filter(move |n| version.as_slice() >= n.since.as_slice() && (wait_aof || !n.optional))
}

/// Checks that the user `target` connects as may run every command DRaaS sends on keys under
/// `keys`' prefix. The first refusal is an error naming the command and Redis's reason. On a
/// cluster the first node is asked (ACLs are per node; keep them the same on every node).
pub async fn check(
    target: &RedisTarget,
    keys: &Keyspace,
    wait_aof: bool,
) -> Result<(), RedisError> {
    let node = target
        .url
        .split(',')
        .map(str::trim)
        .find(|n| !n.is_empty())
        .unwrap_or("");
    let mut conn = target.single_node(node).await?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await
        .map_err(|e| refused("INFO", e))?;
    let version = crate::store::parse_version(&info);
    let probe_key = keys.acl_probe();
    let needs: Vec<&Need> = needed(&version, wait_aof)
        .filter(|n| !matches!(n.rule, "multi" | "exec" | "info"))
        .collect();
    // MULTI alone first: were it refused, the probes below would run instead of queueing.
    let _: () = redis::cmd("MULTI")
        .query_async(&mut conn)
        .await
        .map_err(|e| refused("MULTI", e))?;
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    // Wrong arity (ECHO takes exactly one argument): refused while queueing, before the ACL
    // check, so EXEC aborts and no probe runs. (`PING a b` would not do: PING's arity is
    // open-ended and it fails only when run, so EXEC would run every probe.)
    pipe.cmd("ECHO");
    for need in &needs {
        let mut cmd = redis::cmd(need.probe[0]);
        for arg in &need.probe[1..] {
            cmd.arg(if *arg == "K" { probe_key.as_str() } else { arg });
        }
        pipe.add_command(cmd);
    }
    pipe.cmd("EXEC");
    let replies: Vec<Value> = pipe.query_async(&mut conn).await?;
    let names = std::iter::once("ECHO")
        .chain(needs.iter().map(|n| n.probe[0]))
        .chain(std::iter::once("EXEC"));
    for (name, reply) in names.zip(&replies) {
        if let Value::ServerError(error) = reply
            && error.code() == "NOPERM"
        {
            return Err(denied(name, error.details().unwrap_or("")));
        }
    }
    Ok(())
}

/// `error` as a refusal of `command` when it is a NOPERM, else as it is.
fn refused(command: &str, error: RedisError) -> RedisError {
    if error.code() == Some("NOPERM") {
        denied(command, error.detail().unwrap_or(""))
    } else {
        error
    }
}

fn denied(command: &str, reason: &str) -> RedisError {
    RedisError::from((
        redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm),
        "the Redis user lacks the DRaaS ACL rule (README.md, \"Redis security\")",
        format!("{command} refused: NOPERM {reason}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_follows_the_server_version_and_options() {
        let old = rule("draas", "pw", "draas", &[7, 0, 15], false);
        assert!(old.starts_with(
            "ACL SETUSER draas on >pw resetkeys ~draas:* resetchannels &draas:* -@all +ping +info"
        ));
        assert!(old.contains(" +xautoclaim ") && old.contains(" +script|load "));
        assert!(!old.contains("waitaof") && !old.contains("xackdel"));
        let new = rule("draas", "pw", "draas", &[8, 2, 0], true);
        assert!(new.ends_with(" +client|setinfo +xackdel +waitaof"), "{new}");
    }

    #[test]
    fn every_probe_names_its_command() {
        for need in NEEDS {
            let command = need.rule.split('|').next().unwrap();
            assert!(need.probe[0].eq_ignore_ascii_case(command), "{}", need.rule);
        }
    }

    #[test]
    fn the_readme_shows_the_rule() {
        let readme = include_str!("../../README.md");
        let shown = rule("draas", "<password>", "draas", &[7, 0], false);
        assert!(readme.contains(&shown), "README.md lacks:\n{shown}");
    }
}
