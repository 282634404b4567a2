//! Which API the client commands talk to, and with which token.
//!
//! The URL: `--api`/`DRAAS_API`, else `api:` of the config file, else the `api_url` of a live
//! `draas up` context, else `http://127.0.0.1:8080`. The token: `DRAAS_TOKEN`, else `token:`
//! of the config file, else the `draas up` data directory's `admin-token` — that last one only
//! when the API is that `draas up`'s own, so a local administrator token is never sent
//! elsewhere. The config file is `$XDG_CONFIG_HOME/draas/config.yaml` (else
//! `~/.config/draas/config.yaml`); one readable by group or others is refused. The token is
//! never printed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::http::ClientError;
use crate::context::{self, Context};

/// The API used when nothing names one.
pub const DEFAULT_API: &str = "http://127.0.0.1:8080";

/// The client config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub api: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
}

/// What was given on the command line and in the environment.
#[derive(Debug, Default, Clone)]
pub struct Given {
    pub api: Option<String>,
    pub token: Option<String>,
    /// `--context`: a `draas up` data directory or its context.json.
    pub context: Option<PathBuf>,
}

/// The settled API URL and token.
#[derive(Debug)]
pub struct Target {
    pub api: String,
    pub token: Option<String>,
}

/// Settles the target from what was given, the config file and the `draas up` context.
pub fn resolve(given: &Given) -> Result<Target, ClientError> {
    let file = match config_path() {
        Some(path) => read_config(&path)?,
        None => ConfigFile::default(),
    };
    settle(given, &file)
}

/// [`resolve`] with the config file already read.
fn settle(given: &Given, file: &ConfigFile) -> Result<Target, ClientError> {
    let up_dir = up_dir(given.context.as_deref());
    let up = read_context(&up_dir.join(context::FILE), given.context.is_some())?;
    let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.trim().is_empty());
    let api = nonempty(&given.api)
        .or_else(|| nonempty(&file.api))
        .or_else(|| up.as_ref().map(|c| c.api_url.clone()))
        .unwrap_or_else(|| DEFAULT_API.to_owned());
    let api = api.trim_end_matches('/').to_owned();
    let ups_api = up
        .as_ref()
        .is_some_and(|c| c.api_url.trim_end_matches('/') == api);
    let token = nonempty(&given.token)
        .or_else(|| nonempty(&file.token))
        .or_else(|| ups_api.then(|| admin_token(&up_dir)).flatten());
    Ok(Target {
        api,
        token: token.map(|t| t.trim().to_owned()),
    })
}

/// `$XDG_CONFIG_HOME/draas/config.yaml`, else `$HOME/.config/draas/config.yaml`.
pub fn config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|d| !d.is_empty())
                .map(|home| PathBuf::from(home).join(".config"))
        })?;
    Some(base.join("draas").join("config.yaml"))
}

/// The config file at `path` (none there: empty). Refused when group or others may read it:
/// it may hold a token.
pub fn read_config(path: &Path) -> Result<ConfigFile, ClientError> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ConfigFile::default()),
        Err(e) => {
            return Err(ClientError::Failed(format!(
                "reading {}: {e}",
                path.display()
            )));
        }
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ClientError::Usage(format!(
            "{} is readable by group or others (mode {mode:04o}) and may hold a token; \
             run `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| ClientError::Failed(format!("reading {}: {e}", path.display())))?;
    if text.trim().is_empty() {
        return Ok(ConfigFile::default());
    }
    serde_yaml::from_str(&text).map_err(|e| {
        ClientError::Usage(format!(
            "{} is not a draas client config (`api:` and `token:`): {e}",
            path.display()
        ))
    })
}

/// The `draas up` data directory: `--context` (a directory, or the context file's), else
/// `$DRAAS_DATA_DIR`, else `.draas`.
fn up_dir(given: Option<&Path>) -> PathBuf {
    if let Some(given) = given {
        return match given.is_dir() {
            true => given.to_owned(),
            false => given.parent().map(Path::to_owned).unwrap_or_default(),
        };
    }
    std::env::var_os("DRAAS_DATA_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from(context::DEFAULT_DIR), PathBuf::from)
}

/// The live context at `path`; `None` when missing or stale, unless it was named explicitly.
fn read_context(path: &Path, explicit: bool) -> Result<Option<Context>, ClientError> {
    let context = std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Context>(&bytes).ok());
    let live = context.filter(|c| Path::new(&format!("/proc/{}", c.pid)).exists());
    if live.is_none() && explicit {
        return Err(ClientError::Usage(format!(
            "no live `draas up` context at {} (is `draas up` running there?)",
            path.display()
        )));
    }
    Ok(live)
}

fn admin_token(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join(crate::admin_token::FILE))
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("draas-target-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write(path: &Path, text: &str, mode: u32) {
        let mut file = std::fs::File::create(path).unwrap();
        file.write_all(text.as_bytes()).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_config_file_readable_by_others_is_refused() {
        let dir = scratch();
        let path = dir.join("config.yaml");
        write(&path, "api: http://h:1\ntoken: draas_secret\n", 0o644);
        let error = read_config(&path).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(error.to_string().contains("chmod 600"), "{error}");
        assert!(!error.to_string().contains("draas_secret"), "{error}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = read_config(&path).unwrap();
        assert_eq!(config.api.as_deref(), Some("http://h:1"));
        assert_eq!(config.token.as_deref(), Some("draas_secret"));
        // Unknown keys are a mistake worth saying.
        write(&path, "apu: x\n", 0o600);
        assert_eq!(read_config(&path).unwrap_err().exit_code(), 2);
        // No file: nothing configured.
        assert!(read_config(&dir.join("none.yaml")).unwrap().api.is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_admin_token_goes_only_to_its_own_api() {
        let dir = scratch();
        Context {
            redis_url: "redis://127.0.0.1:1".into(),
            api_url: "http://127.0.0.1:9999".into(),
            prefix: "p".into(),
            pid: std::process::id(),
        }
        .write(&dir)
        .unwrap();
        write(&dir.join(crate::admin_token::FILE), "draas_admin\n", 0o600);
        let mut given = Given {
            context: Some(dir.clone()),
            ..Given::default()
        };
        let none = ConfigFile::default();
        let target = settle(&given, &none).unwrap();
        assert_eq!(target.api, "http://127.0.0.1:9999");
        assert_eq!(target.token.as_deref(), Some("draas_admin"));
        // Another API: the local administrator token stays home.
        given.api = Some("http://elsewhere:8080".into());
        let target = settle(&given, &none).unwrap();
        assert_eq!(target.api, "http://elsewhere:8080");
        assert_eq!(target.token, None);
        // An explicit token wins.
        given.token = Some("draas_given".into());
        assert_eq!(
            settle(&given, &none).unwrap().token.as_deref(),
            Some("draas_given")
        );
        // The config file's API and token come before the context's.
        let file = ConfigFile {
            api: Some("http://configured:1".into()),
            token: Some("draas_file".into()),
        };
        given.api = None;
        given.token = None;
        let target = settle(&given, &file).unwrap();
        assert_eq!(target.api, "http://configured:1");
        assert_eq!(target.token.as_deref(), Some("draas_file"));
        std::fs::remove_dir_all(&dir).unwrap();
        // A named context that is not there is an error, not a silent default.
        assert_eq!(settle(&given, &none).unwrap_err().exit_code(), 2);
    }
}
