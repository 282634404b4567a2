//! Loading a config file: read, `${VAR}` interpolation, parse, validate and runtime checks.

use std::path::Path;

use draas_protocol::drasi::{DrasiConfig, interpolate};

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

/// Interpolates, parses and checks config text.
pub fn parse_config(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<DrasiConfig, RuntimeError> {
    let text = interpolate(text, lookup)?;
    let config = DrasiConfig::from_yaml_str(&text)?;
    config.validate()?;
    support::check(&config)?;
    Ok(config)
}

/// Variable lookup from the process environment.
pub fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}
