//! Redis with TLS and a least-privilege ACL user, end to end: a real `redis-server` listening
//! only on `--tls-port`, with a CA, server and client certificates made here (rcgen), and a
//! user created from `draas_bus::acl::rule`. The whole lifecycle runs through the API and a
//! worker connected as that user over `rediss://` without one refused command; a user without
//! the rule, and a client trusting the wrong CA, are refused at start-up with clear errors.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use common::{ApiNode, DEADLINE, WorkerNode, fresh_keys, runtime_binary, scratch, wait_until};
use draas_bus::connect::{RedisTarget, RedisTls};
use draas_protocol::Keyspace;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde_json::json;

/// A CA and the PEM files it signed, in one directory.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A fresh CA with a server certificate for 127.0.0.1 and a client certificate.
    fn make(name: &str) -> anyhow::Result<Pki> {
        let dir = scratch(name);
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("draas test CA {name}"));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        std::fs::write(dir.join("ca.pem"), ca.pem())?;
        for (file, purpose) in [
            ("server", ExtendedKeyUsagePurpose::ServerAuth),
            ("client", ExtendedKeyUsagePurpose::ClientAuth),
        ] {
            let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()])?;
            params
                .distinguished_name
                .push(DnType::CommonName, format!("draas test {file}"));
            params.extended_key_usages = vec![purpose];
            let key = KeyPair::generate()?;
            let cert = params.signed_by(&key, &ca)?;
            std::fs::write(dir.join(format!("{file}.pem")), cert.pem())?;
            std::fs::write(dir.join(format!("{file}-key.pem")), key.serialize_pem())?;
        }
        Ok(Pki { dir })
    }
}

/// A redis-server that only speaks TLS, demanding client certificates, killed on drop.
struct TlsRedis {
    port: u16,
    pki: Pki,
    child: Child,
}

impl TlsRedis {
    fn start() -> anyhow::Result<TlsRedis> {
        let pki = Pki::make("redis-pki")?;
        let port = common::free_port();
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
            ])
            .arg("--tls-cert-file")
            .arg(pki.file("server.pem"))
            .arg("--tls-key-file")
            .arg(pki.file("server-key.pem"))
            .arg("--tls-ca-cert-file")
            .arg(pki.ca())
            .args([
                "--tls-auth-clients",
                "yes",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .arg("--dir")
            .arg(&pki.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("redis-server must be installed, built with TLS")?;
        Ok(TlsRedis { port, pki, child })
    }

    /// The target for `user:password` (or the default user when `None`), trusting `ca`.
    fn target(&self, login: Option<(&str, &str)>, ca: &Path) -> RedisTarget {
        let auth = login.map_or(String::new(), |(u, p)| format!("{u}:{p}@"));
        RedisTarget::new(
            format!("rediss://{auth}127.0.0.1:{}", self.port),
            RedisTls {
                ca: Some(ca.to_owned()),
                cert: Some(self.pki.file("client.pem")),
                key: Some(self.pki.file("client-key.pem")),
            },
        )
    }

    /// The administrator's connection (the default user), once the server answers.
    async fn admin(&self) -> anyhow::Result<draas_bus::connect::Conn> {
        let target = self.target(None, &self.pki.ca());
        draas_bus::connect::check(&target, Duration::from_secs(10)).await?;
        Ok(draas_bus::connect::shared(&target).await?)
    }

    /// Creates `user` with the README's rule for `keys`, minus the commands in `without`.
    async fn create_user(
        &self,
        user: &str,
        keys: &Keyspace,
        without: &[&str],
    ) -> anyhow::Result<()> {
        let mut admin = self.admin().await?;
        let rule = draas_bus::acl::rule(user, "s3cret", keys.prefix(), &[7, 0], false);
        let mut words = rule.split_whitespace();
        let mut cmd = redis::cmd(words.next().context("rule")?);
        for word in words.filter(|w| !without.iter().any(|c| w.strip_prefix('+') == Some(*c))) {
            cmd.arg(word);
        }
        let _: () = cmd.query_async(&mut admin).await?;
        Ok(())
    }

    /// `ACL LOG` entries about `user`: every command it was refused.
    async fn refusals(&self, user: &str) -> anyhow::Result<Vec<String>> {
        let mut admin = self.admin().await?;
        let log: Vec<redis::Value> = redis::cmd("ACL").arg("LOG").query_async(&mut admin).await?;
        Ok(log
            .into_iter()
            .map(|entry| format!("{entry:?}"))
            .filter(|entry| entry.contains(&format!("\"{user}\"")))
            .collect())
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        common::terminate(&mut self.child);
    }
}

#[tokio::test]
async fn the_lifecycle_runs_over_tls_as_the_least_privileged_user() -> anyhow::Result<()> {
    let redis = TlsRedis::start()?;
    let keys = fresh_keys("tls");
    redis.create_user("draas", &keys, &[]).await?;
    let target = redis.target(Some(("draas", "s3cret")), &redis.pki.ca());
    let worker_target = target.clone();
    let worker = WorkerNode::start_tuned(
        "redis://unused",
        &keys,
        runtime_binary(),
        scratch("worker"),
        |c| c.redis_url = worker_target,
    )
    .await?;
    let api_target = target.clone();
    let api = ApiNode::start_tuned("redis://unused", &keys, |c| c.redis_url = api_target).await?;
    let outcome = lifecycle(&api).await;
    // Not one command of the whole run was refused: the rule is complete.
    let refusals = redis.refusals("draas").await?;
    // The start-up checks of both probed every command, and none of their probes ran.
    let probed: i64 = redis::cmd("EXISTS")
        .arg(keys.acl_probe())
        .query_async(&mut redis.admin().await?)
        .await?;
    api.shutdown().await;
    worker.shutdown().await;
    outcome.with_context(|| format!("commands refused: {refusals:?}"))?;
    assert_eq!(refusals, Vec::<String>::new());
    assert_eq!(
        probed,
        0,
        "a permission probe ran: {} exists",
        keys.acl_probe()
    );
    Ok(())
}

/// Create, start, stop and delete one instance through the API.
async fn lifecycle(api: &ApiNode) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", api.url);

    wait_until(|| async {
        let v = common::get_json(&http, &url("/api/v1/platforms")).await?;
        (v["items"][0]["available"] == true).then_some(())
    })
    .await
    .context("the worker never showed up")?;
    let created = http
        .post(url("/api/v1/instances"))
        .json(&json!({"name": "secure", "platform": "process", "config": common::sensor_config()}))
        .send()
        .await?;
    let (status, body) = common::status_json(created).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().context("id")?.to_owned();
    for (action, state) in [("start", "running"), ("stop", "stopped")] {
        let reply = http
            .post(url(&format!("/api/v1/instances/{id}/{action}?wait=30")))
            .send()
            .await?;
        let (status, body) = common::status_json(reply).await;
        assert!(status == 200 || status == 202, "{action}: {status} {body}");
        wait_until(|| async {
            let v = common::get_json(&http, &url(&format!("/api/v1/instances/{id}"))).await?;
            (v["state"] == state).then_some(())
        })
        .await
        .with_context(|| format!("{action} never reached {state}"))?;
    }
    let deleted = http
        .delete(url(&format!("/api/v1/instances/{id}?wait=30")))
        .send()
        .await?;
    assert!(deleted.status().is_success(), "{}", deleted.status());
    wait_until(|| async {
        let reply = http
            .get(url(&format!("/api/v1/instances/{id}")))
            .send()
            .await
            .ok()?;
        (reply.status() == 404).then_some(())
    })
    .await
    .context("the deleted instance is still there")?;
    Ok(())
}

#[tokio::test]
async fn a_user_without_the_rule_is_refused_at_start_up() -> anyhow::Result<()> {
    let redis = TlsRedis::start()?;
    let keys = fresh_keys("acl");
    redis.create_user("partial", &keys, &["xautoclaim"]).await?;
    let target = redis.target(Some(("partial", "s3cret")), &redis.pki.ca());

    let mut config = draas_api::ApiConfig::new(target.clone());
    config.keys = keys.clone();
    let error = draas_api::App::connect(config)
        .await
        .err()
        .context("the API started without XAUTOCLAIM")?
        .to_string();
    assert!(
        error.contains("XAUTOCLAIM") && error.contains("NOPERM"),
        "{error}"
    );
    assert!(
        !error.contains('\n') && !error.contains("s3cret"),
        "{error}"
    );

    // The binary says the same in one line, with the TLS files given as flags.
    let output = tokio::process::Command::new(common::draas_binary())
        .arg("worker")
        .args([
            "--redis-url",
            &format!("rediss://partial:s3cret@127.0.0.1:{}", redis.port),
        ])
        .args(["--prefix", keys.prefix()])
        .arg("--redis-ca")
        .arg(redis.pki.ca())
        .arg("--redis-cert")
        .arg(redis.pki.file("client.pem"))
        .arg("--redis-key")
        .arg(redis.pki.file("client-key.pem"))
        .arg("--data-dir")
        .arg(scratch("refused-worker"))
        .env("RUST_LOG", "off")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(DEADLINE, output).await??;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("XAUTOCLAIM") && stderr.contains("NOPERM"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn a_server_signed_by_another_ca_is_refused() -> anyhow::Result<()> {
    let redis = TlsRedis::start()?;
    redis.admin().await?;
    let other = Pki::make("other-pki")?;
    let target = redis.target(None, &other.ca());
    let error = draas_bus::connect::check(&target, Duration::from_secs(3))
        .await
        .err()
        .context("a server the CA never signed was trusted")?
        .to_string();
    assert!(error.contains("certificate"), "{error}");

    // And a plain `redis://` URL with TLS files is a configuration error, not a silent
    // plaintext connection.
    let plain = RedisTarget::new(
        format!("redis://127.0.0.1:{}", redis.port),
        target.tls.clone(),
    );
    let error = draas_bus::connect::check(&plain, Duration::from_secs(3))
        .await
        .err()
        .context("TLS files on a redis:// URL were accepted")?
        .to_string();
    assert!(error.contains("rediss://"), "{error}");
    Ok(())
}
