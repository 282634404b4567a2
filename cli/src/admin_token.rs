//! `draas up`'s administrator token: made on the first run (tenant `default`, scope `*`),
//! printed once, and kept in `<data dir>/admin-token` (mode 0600) for the next runs and for
//! the walk-through (`TOKEN=$(cat .draas/admin-token)`). A file whose token is no longer in
//! Redis (revoked, or Redis data lost) is replaced by a new token.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use draas_bus::Store;
use draas_bus::store::tokens::digest;
use draas_protocol::auth::{DEFAULT_TENANT, Scope};

/// Name of the token file in the data directory.
pub const FILE: &str = "admin-token";

/// The administrator token and whether it was made just now (then it is shown once).
pub struct AdminToken {
    pub secret: String,
    pub path: PathBuf,
    pub created: bool,
}

/// Reads the token of `data_dir`, or makes one when there is none (or it is gone from Redis).
pub async fn ensure(store: &Store, data_dir: &Path) -> anyhow::Result<AdminToken> {
    let path = data_dir.join(FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let secret = text.trim().to_owned();
        if store.token_by_digest(&digest(&secret)).await?.is_some() {
            return Ok(AdminToken {
                secret,
                path,
                created: false,
            });
        }
    }
    let token = crate::tokens::create(
        store,
        DEFAULT_TENANT,
        vec![Scope::All],
        None,
        Some("draas up administrator".to_owned()),
    )
    .await?;
    let _ = std::fs::remove_file(&path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(file, "{}", token.secret)?;
    Ok(AdminToken {
        secret: token.secret,
        path,
        created: true,
    })
}
