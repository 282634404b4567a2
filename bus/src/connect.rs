//! Connections to Redis, established with exponential backoff (backon).
//!
//! Two kinds: the shared connection for ordinary commands (multiplexed, reconnects by itself),
//! and a dedicated connection per blocking reader. A blocking `XREAD`/`XREADGROUP` on the
//! shared connection would stall every other request behind it, and its response timeout must
//! be longer than `BLOCK`, so blocking readers never share.
//!
//! A URL that lists several nodes, comma-separated (`redis://10.0.0.1:7000,redis://…`), is a
//! Redis Cluster: [`Conn::Cluster`] routes every command by its key's slot. The key layout
//! makes that safe: keys used together share a hash tag, every Lua script touches one key.
//!
//! [`shared`] and [`blocking`] retry for a long time, which suits a running component riding
//! out a Redis restart. A program starting up first calls [`check`], which gives up within a
//! few seconds, so an unreachable Redis is one clear error, not a minute of retries. Messages
//! name a Redis by [`redacted`], never with its password.
//!
//! Every function takes a [`RedisTarget`]: the URL (`redis://`, `rediss://` for TLS, with
//! `user:password@` for an ACL user) plus the TLS files given beside it (a CA to trust instead
//! of the system's, a client certificate and key). A plain `&str` URL converts into one.

use std::fmt;
use std::ops::Deref;
use std::path::PathBuf;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, Cmd, Pipeline, RedisError, RedisFuture,
    TlsCertificates, Value,
};

/// TLS files given beside a Redis URL. All empty: a `rediss://` URL trusts the system's CAs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// PEM CA certificate(s) to trust instead of the system's roots (`--redis-ca`).
    pub ca: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (`--redis-cert`); needs `key`.
    pub cert: Option<PathBuf>,
    /// PEM private key of the client certificate (`--redis-key`).
    pub key: Option<PathBuf>,
}

impl RedisTls {
    fn is_empty(&self) -> bool {
        self.ca.is_none() && self.cert.is_none() && self.key.is_none()
    }
}

/// Which Redis to use and how: a URL (one server, or a cluster's nodes comma-separated) and
/// the TLS files for `rediss://`. Dereferences to the URL; prints (and debug-prints)
/// [`redacted`], so a logged configuration never shows the password.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RedisTarget {
    pub url: String,
    pub tls: RedisTls,
}

impl RedisTarget {
    pub fn new(url: impl Into<String>, tls: RedisTls) -> Self {
        RedisTarget {
            url: url.into(),
            tls,
        }
    }

    /// A client for one node URL: with the TLS files when any are given (which the URL must
    /// then name `rediss://`), else as the URL says.
    fn client(&self, url: &str) -> Result<Client, RedisError> {
        match self.certificates()? {
            Some(certs) => Client::build_with_tls(url, certs),
            None => Client::open(url),
        }
    }

    /// A plain connection to one node of this target (bounded waits, no retries), for
    /// one-off questions such as the start-up permission check.
    pub(crate) async fn single_node(&self, url: &str) -> Result<MultiplexedConnection, RedisError> {
        let config = AsyncConnectionConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(Duration::from_secs(2)));
        self.client(url)?
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// A cluster client over `nodes`, with the TLS files when any are given.
    fn cluster_builder(
        &self,
        nodes: Vec<&str>,
    ) -> Result<redis::cluster::ClusterClientBuilder, RedisError> {
        let builder = ClusterClient::builder(nodes);
        Ok(match self.certificates()? {
            Some(certs) => builder.certs(certs),
            None => builder,
        })
    }

    /// The TLS files read, or `None` when none were given. A client certificate without its
    /// key (or the reverse) is an error, as is any of them on a `redis://` URL.
    fn certificates(&self) -> Result<Option<TlsCertificates>, RedisError> {
        if self.tls.is_empty() {
            return Ok(None);
        }
        if self
            .url
            .split(',')
            .any(|node| !node.trim().starts_with("rediss://"))
        {
            return Err(invalid(
                "--redis-ca, --redis-cert and --redis-key need a rediss:// URL",
            ));
        }
        let client_tls = match (&self.tls.cert, &self.tls.key) {
            (Some(cert), Some(key)) => Some(ClientTlsConfig {
                client_cert: read_pem(cert, "client certificate (--redis-cert)")?,
                client_key: read_pem(key, "client key (--redis-key)")?,
            }),
            (None, None) => None,
            _ => return Err(invalid("--redis-cert and --redis-key go together")),
        };
        let root_cert = match &self.tls.ca {
            Some(ca) => Some(read_pem(ca, "CA (--redis-ca)")?),
            None => None,
        };
        Ok(Some(TlsCertificates {
            client_tls,
            root_cert,
        }))
    }
}

fn invalid(message: &'static str) -> RedisError {
    RedisError::from((redis::ErrorKind::InvalidClientConfig, message))
}

fn read_pem(path: &std::path::Path, what: &str) -> Result<Vec<u8>, RedisError> {
    std::fs::read(path).map_err(|error| {
        RedisError::from(std::io::Error::new(
            error.kind(),
            format!("reading the Redis {what} {}: {error}", path.display()),
        ))
    })
}

impl Deref for RedisTarget {
    type Target = str;
    fn deref(&self) -> &str {
        &self.url
    }
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTarget")
            .field("url", &redacted(&self.url))
            .field("tls", &self.tls)
            .finish()
    }
}

impl fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redacted(&self.url))
    }
}

impl From<&str> for RedisTarget {
    fn from(url: &str) -> Self {
        RedisTarget::new(url, RedisTls::default())
    }
}

impl From<String> for RedisTarget {
    fn from(url: String) -> Self {
        RedisTarget::new(url, RedisTls::default())
    }
}

impl From<&String> for RedisTarget {
    fn from(url: &String) -> Self {
        RedisTarget::new(url.clone(), RedisTls::default())
    }
}

impl From<&RedisTarget> for RedisTarget {
    fn from(target: &RedisTarget) -> Self {
        target.clone()
    }
}

/// How long ordinary commands may take before they count as failed.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a blocking read on a cluster may take; every `BLOCK` used is far shorter.
const BLOCKING_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection to a single Redis server or to a Redis Cluster. Cheap to clone (multiplexed).
#[derive(Clone)]
pub enum Conn {
    /// The shared connection to one server: reconnects by itself.
    Manager(ConnectionManager),
    /// A blocking reader's own connection to one server.
    Single(MultiplexedConnection),
    /// A cluster: commands routed by slot, topology followed on MOVED/ASK.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Manager(c) => c.req_packed_command(cmd),
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Manager(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => Box::pin(cluster_pipeline(c, pipeline, offset, count)),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Manager(c) => c.get_db(),
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// A pipeline on a cluster. A cluster sends a pipeline to one node, so its keys must share a
/// slot: transactions always do here (the key layout's hash tags), and so do most pipelines.
/// A plain pipeline whose keys span slots (an instance record plus a platform's stream, say)
/// is sent command by command instead: the same results, a round trip each.
async fn cluster_pipeline(
    conn: &mut ClusterConnection,
    pipeline: &Pipeline,
    offset: usize,
    count: usize,
) -> Result<Vec<Value>, RedisError> {
    match conn.req_packed_commands(pipeline, offset, count).await {
        Err(e)
            if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::CrossSlot)
                && !pipeline.is_transaction() =>
        {
            let mut values = Vec::with_capacity(pipeline.len());
            for cmd in pipeline.cmd_iter() {
                values.push(conn.req_packed_command(cmd).await?);
            }
            Ok(values)
        }
        other => other,
    }
}

/// Whether `url` names a Redis Cluster (several nodes, comma-separated).
pub fn is_cluster(url: &str) -> bool {
    cluster_nodes(url).is_some()
}

/// The node URLs of a cluster URL (several, comma-separated), or `None` for one server.
fn cluster_nodes(url: &str) -> Option<Vec<&str>> {
    let nodes: Vec<&str> = url
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    (nodes.len() > 1).then_some(nodes)
}

async fn cluster(
    target: &RedisTarget,
    nodes: Vec<&str>,
    response_timeout: Duration,
) -> Result<Conn, RedisError> {
    let client = target
        .cluster_builder(nodes)?
        .connection_timeout(Duration::from_secs(2))
        .response_timeout(response_timeout)
        .build()?;
    let conn = (|| client.get_async_connection())
        .retry(backoff())
        .notify(|e, d| tracing::warn!(message = "redis cluster connect failed, retrying", error = %e, delay = ?d))
        .await?;
    Ok(Conn::Cluster(conn))
}

fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(8)
        .with_jitter()
}

/// Checks that `url` answers PING, giving up after `within`. Refused connections, timeouts and
/// a Redis still loading its data are tried again until then (a Redis may be starting
/// alongside); errors no retry fixes (a malformed URL, a wrong password) return at once.
pub async fn check(target: impl Into<RedisTarget>, within: Duration) -> Result<(), RedisError> {
    let target = target.into();
    let deadline = tokio::time::Instant::now() + within;
    // The reason to report: a real refusal seen on the way beats the time-out of a last
    // attempt that the deadline cut short.
    let mut refusal: Option<RedisError> = None;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (error, timed_out) = match tokio::time::timeout(left, ping(&target, left)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error)) => {
                let timed_out = error.is_timeout();
                (error, timed_out)
            }
            Err(_) => (
                RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {} s", within.as_secs_f64()),
                )),
                true,
            ),
        };
        let transient = error.is_io_error()
            || error.is_timeout()
            || error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading);
        let pause = Duration::from_millis(200);
        if !transient || tokio::time::Instant::now() + pause >= deadline {
            return Err(match (timed_out, refusal) {
                (true, Some(refusal)) => refusal,
                _ => error,
            });
        }
        if !timed_out {
            refusal = Some(error);
        }
        tokio::time::sleep(pause).await;
    }
}

/// One connection attempt and a PING, each bounded by `within` (at most 2 s).
async fn ping(target: &RedisTarget, within: Duration) -> Result<(), RedisError> {
    let timeout = within.min(Duration::from_secs(2));
    if let Some(nodes) = cluster_nodes(target) {
        let client = target
            .cluster_builder(nodes)?
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(0)
            .build()?;
        let mut conn = client.get_async_connection().await?;
        return redis::cmd("PING").query_async::<()>(&mut conn).await;
    }
    let config = AsyncConnectionConfig::new()
        .set_response_timeout(Some(timeout))
        .set_connection_timeout(Some(timeout));
    let mut conn = target
        .client(target)?
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    redis::cmd("PING").query_async::<()>(&mut conn).await
}

/// `url` fit to print: a password in it (`redis://user:secret@host`, `redis://:secret@host`) is
/// replaced by `***`, for every node of a cluster URL.
pub fn redacted(url: &str) -> String {
    url.split(',')
        .map(|node| {
            let Some((scheme, rest)) = node.split_once("://") else {
                return node.to_owned();
            };
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(authority_end);
            match authority.rsplit_once('@') {
                Some((userinfo, host)) => {
                    let user = userinfo.split_once(':').map_or("", |(user, _)| user);
                    format!("{scheme}://{user}:***@{host}{tail}")
                }
                None => node.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Opens the shared, self-reconnecting connection.
pub async fn shared(target: impl Into<RedisTarget>) -> Result<Conn, RedisError> {
    let target = target.into();
    if let Some(nodes) = cluster_nodes(&target) {
        return cluster(&target, nodes, RESPONSE_TIMEOUT).await;
    }
    let client = target.client(&target)?;
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(Duration::from_secs(2)));
    let conn = (|| ConnectionManager::new_with_config(client.clone(), config.clone()))
        .retry(backoff())
        .notify(|e, d| tracing::warn!(message = "redis connect failed, retrying", error = %e, delay = ?d))
        .await?;
    Ok(Conn::Manager(conn))
}

/// Opens a connection for one blocking reader: no response timeout, so `BLOCK` governs.
pub async fn blocking(target: impl Into<RedisTarget>) -> Result<Conn, RedisError> {
    let target = target.into();
    if let Some(nodes) = cluster_nodes(&target) {
        return cluster(&target, nodes, BLOCKING_RESPONSE_TIMEOUT).await;
    }
    let client = target.client(&target)?;
    let config = AsyncConnectionConfig::new()
        .set_response_timeout(None)
        .set_connection_timeout(Some(Duration::from_secs(2)));
    let conn = (|| client.get_multiplexed_async_connection_with_config(&config))
        .retry(backoff())
        .notify(|e, d| tracing::warn!(message = "redis connect failed, retrying", error = %e, delay = ?d))
        .await?;
    Ok(Conn::Single(conn))
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn redaction_hides_passwords_only() {
        let cases = [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
            ("redis://app:s3cret@host", "redis://app:***@host"),
            ("rediss://s3cret@host/1?x=1", "rediss://:***@host/1?x=1"),
            (
                "redis://a:p@n1:7000,redis://a:p@n2:7001",
                "redis://a:***@n1:7000,redis://a:***@n2:7001",
            ),
        ];
        for (url, shown) in cases {
            assert_eq!(redacted(url), shown, "{url}");
        }
    }

    #[test]
    fn targets_never_print_the_password() {
        let target = super::RedisTarget::from("rediss://draas:s3cret@host:6380");
        assert_eq!(target.to_string(), "rediss://draas:***@host:6380");
        assert!(!format!("{target:?}").contains("s3cret"));
        assert_eq!(&*target, "rediss://draas:s3cret@host:6380");
    }

    #[tokio::test]
    async fn check_gives_up_within_its_budget() {
        // A port nothing listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let started = std::time::Instant::now();
        let error = super::check(
            &format!("redis://127.0.0.1:{port}"),
            std::time::Duration::from_secs(1),
        )
        .await
        .expect_err("nothing listens there");
        assert!(error.is_connection_refusal(), "{error}");
        assert!(started.elapsed() < std::time::Duration::from_secs(3));
    }
}
