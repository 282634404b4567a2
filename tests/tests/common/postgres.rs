//! A private PostgreSQL server per test (Debian's `postgresql` package, version 15 or the
//! newest installed): `initdb` into a scratch directory, `postgres` on a free loopback port
//! with logical replication on, run as the `postgres` user when the tests run as root (the
//! server refuses root). Administration goes over its Unix socket (trust); applications
//! connect over TCP with a password (SCRAM). The server is stopped by PID on drop.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio_postgres::{Client, NoTls};

use super::{DEADLINE, free_port};

/// A running server, stopped (SIGINT, then SIGKILL) and its directory deleted on drop.
pub struct PgServer {
    pub port: u16,
    dir: PathBuf,
    socket_dir: PathBuf,
    child: Child,
}

/// The directory of the server binaries: 15 when installed, else the newest version.
fn bin_dir() -> anyhow::Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let preferred = root.join("15/bin");
    if preferred.join("postgres").is_file() {
        return Ok(preferred);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .context("PostgreSQL must be installed (apt-get install -y postgresql)")?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("postgres").is_file())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .context("no PostgreSQL server binaries under /usr/lib/postgresql")
}

/// The uid and gid to run the server as: `postgres` when we are root, else ourselves.
fn server_user() -> anyhow::Result<Option<(u32, u32)>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .context("no `postgres` user (the postgresql package creates it)")?;
    let fields: Vec<&str> = line.split(':').collect();
    Ok(Some((fields[2].parse()?, fields[3].parse()?)))
}

/// A scratch directory the server's user can reach: under the temp dir when every ancestor
/// lets others through, else under /tmp.
fn server_dir() -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let name = format!("draas-test-pg-{}", uuid::Uuid::new_v4().simple());
    let tmp = std::env::temp_dir();
    let reachable = tmp.ancestors().all(|dir| {
        std::fs::metadata(dir)
            .map(|m| m.permissions().mode() & 0o001 != 0)
            .unwrap_or(false)
    });
    let base = if reachable {
        tmp
    } else {
        PathBuf::from("/tmp")
    };
    base.join(name)
}

fn as_server_user(cmd: &mut Command, user: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

impl PgServer {
    pub async fn start() -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        let user = server_user()?;
        let dir = server_dir();
        let data = dir.join("data");
        let socket_dir = dir.join("sock");
        std::fs::create_dir_all(&socket_dir)?;
        if let Some((uid, gid)) = user {
            for d in [&dir, &socket_dir] {
                std::os::unix::fs::chown(d, Some(uid), Some(gid))?;
            }
        }
        let out = as_server_user(&mut Command::new(bin.join("initdb")), user)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let port = free_port();
        let log = std::fs::File::create(dir.join("server.log"))?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.join("server.log"), Some(uid), Some(gid))?;
        }
        let child = as_server_user(&mut Command::new(bin.join("postgres")), user)
            .arg("-D")
            .arg(&data)
            .args(["-c", "listen_addresses=127.0.0.1", "-p", &port.to_string()])
            .args(["-c", "wal_level=logical", "-c", "max_replication_slots=10"])
            .args(["-c", "max_wal_senders=10", "-c", "fsync=off"])
            .args(["-c", "full_page_writes=off"])
            .arg("-k")
            .arg(&socket_dir)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting postgres")?;
        let server = PgServer {
            port,
            dir,
            socket_dir,
            child,
        };
        let deadline = Instant::now() + DEADLINE;
        loop {
            if server.admin("postgres").await.is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!(
                    "postgres did not accept connections within {DEADLINE:?}: {}",
                    server.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// A superuser session on `database` over the Unix socket.
    pub async fn admin(&self, database: &str) -> anyhow::Result<Client> {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.socket_dir)
            .port(self.port)
            .user("postgres")
            .dbname(database)
            .connect_timeout(Duration::from_secs(5));
        connect(config).await
    }

    /// A session of `user` on `database` over TCP with `password`.
    pub async fn connect(
        &self,
        database: &str,
        user: &str,
        password: &str,
    ) -> anyhow::Result<Client> {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(user)
            .password(password)
            .dbname(database)
            .connect_timeout(Duration::from_secs(5));
        connect(config).await
    }

    /// Creates `role` (LOGIN REPLICATION, with `password`) and `database` owned by it.
    pub async fn create_app(
        &self,
        role: &str,
        password: &str,
        database: &str,
    ) -> anyhow::Result<()> {
        let admin = self.admin("postgres").await?;
        let quoted = password.replace('\'', "''");
        // One statement each: CREATE DATABASE cannot run inside a (multi-statement) transaction.
        admin
            .batch_execute(&format!(
                "CREATE ROLE \"{role}\" LOGIN REPLICATION PASSWORD '{quoted}'"
            ))
            .await?;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{database}\" OWNER \"{role}\""))
            .await?;
        Ok(())
    }

    /// Waits until a replication slot exists and a replication connection streams from it.
    /// drasi-source-postgres creates its slot when it starts streaming, after the bootstrap
    /// snapshot: a write made before then is in neither, so tests write only after this.
    pub async fn wait_streaming(&self) -> anyhow::Result<()> {
        let admin = self.admin("postgres").await?;
        let deadline = Instant::now() + DEADLINE;
        loop {
            let row = admin
                .query_one(
                    "SELECT count(*) FROM pg_replication_slots WHERE active",
                    &[],
                )
                .await?;
            if row.get::<_, i64>(0) > 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("no replication slot became active within {DEADLINE:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn connect(config: tokio_postgres::Config) -> anyhow::Result<Client> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Fast shutdown (SIGINT) ends the backends too; SIGKILL if it takes too long.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let until = Instant::now() + Duration::from_secs(10);
        let mut exited = false;
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                exited = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if !exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
