//! The data-plane secret API nodes present to workers: read from `--data-secret-file` or
//! `DRAAS_DATA_SECRET` (never a command-line value, which `ps` would show), or, for `draas
//! up`, made once and kept in `<data dir>/data-secret` (mode 0600).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use draas_protocol::dataplane::DataSecret;

/// Name of `draas up`'s secret file in the data directory.
pub const FILE: &str = "data-secret";

/// Where a data-plane secret comes from.
#[derive(Args, Clone, Default)]
pub struct SecretArgs {
    /// A file holding the data-plane secret API nodes and workers share (32 to 1024 visible
    /// characters); or set DRAAS_DATA_SECRET.
    #[arg(long, env = "DRAAS_DATA_SECRET_FILE")]
    pub data_secret_file: Option<PathBuf>,
}

impl SecretArgs {
    /// The secret, if one is given.
    pub fn secret(&self) -> anyhow::Result<Option<DataSecret>> {
        let text = match &self.data_secret_file {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("reading the data-plane secret {}", path.display()))?,
            None => match std::env::var("DRAAS_DATA_SECRET") {
                Ok(text) => text,
                Err(_) => return Ok(None),
            },
        };
        Ok(Some(DataSecret::new(text)?))
    }
}

/// The secret of `data_dir`, made (random, 64 hex characters) when there is none.
pub fn ensure(data_dir: &Path) -> anyhow::Result<DataSecret> {
    let path = data_dir.join(FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        return DataSecret::new(text).with_context(|| format!("in {}", path.display()));
    }
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(secret.as_bytes())?;
    Ok(DataSecret::new(secret)?)
}
