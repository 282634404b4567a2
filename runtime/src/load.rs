//! Loading a config file: read, `${VAR}` interpolation, parse, validate and runtime checks.

use std::path::Path;

use draas_protocol::drasi::{ConfigError, DrasiConfig, interpolate};

use crate::{RuntimeError, support};

/// Reads and checks the config at `path`, resolving `${VAR}` with `lookup`.
pub fn load_config(
    path: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<DrasiConfig, RuntimeError> {
    let text = std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            RuntimeError::ConfigNotFound {
                path: path.to_path_buf(),
            }
        } else {
            RuntimeError::ConfigRead {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    parse_config(&text, lookup)
}

/// Interpolates, parses and checks config text. `${VAR}` references are resolved in the
/// document's values by drasi-server's rules ([`interpolate`], the function the API and the
/// worker use too): comments are never read and `${{…}}` is a template, not a reference.
pub fn parse_config(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<DrasiConfig, RuntimeError> {
    let resolved = interpolate(text, lookup)?;
    let config = DrasiConfig::from_yaml_str(&resolved).map_err(|e| {
        // A resolved document is rendered anew: its line numbers are not the file's, so
        // the error names the key path only.
        if resolved == text {
            e
        } else {
            without_location(e)
        }
    })?;
    config.validate()?;
    support::check(&config)?;
    Ok(config)
}

/// Drops serde_yaml's ` at line L column C` from an error's message.
fn without_location(mut e: ConfigError) -> ConfigError {
    if let Some(at) = e.message.rfind(" at line ")
        && e.message[at + " at line ".len()..]
            .split(" column ")
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    {
        e.message.truncate(at);
    }
    e
}

/// Variable lookup from the process environment.
pub fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}
