//! [`ConfigError`]: a configuration problem located by its key path.

use std::fmt;

/// A configuration error. `path` locates the offending key, e.g.
/// `queries[0].sources[1].sourceId`, or is empty for the document root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Marks a message produced by a nested, separately path-tracked deserialization (the
/// per-kind source and reaction bodies) so the outer path can be joined with the inner one.
const NESTED: char = '\u{1e}';

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Builds an error from a `serde_path_to_error` failure, joining nested paths.
    pub(crate) fn from_serde<E: fmt::Display>(err: serde_path_to_error::Error<E>) -> Self {
        let outer = normalize(&err.path().to_string());
        let message = err.inner().to_string();
        Self::join(outer, &message)
    }

    fn join(outer: String, message: &str) -> Self {
        let message = strip_yaml_path(&outer, message);
        // A nested message looks like "<NESTED>inner.path<NESTED>text<NESTED>", possibly
        // followed by serde_yaml's " at line X column Y" suffix, which is kept.
        if let Some(rest) = message.strip_prefix(NESTED)
            && let Some((inner, text)) = rest.split_once(NESTED)
        {
            let text = match text.split_once(NESTED) {
                Some((text, suffix)) => format!("{text}{suffix}"),
                None => text.to_string(),
            };
            return Self::new(join_path(&outer, inner), text);
        }
        Self::new(outer, message.to_string())
    }

    /// Encodes a nested error so that [`ConfigError::from_serde`] can recover its path.
    pub(crate) fn nested_message(inner_path: &str, message: &str) -> String {
        format!("{NESTED}{}{NESTED}{message}{NESTED}", normalize(inner_path))
    }
}

/// serde_yaml prefixes messages with its own (coarser) location, e.g. `sources: `; the
/// tracked path is more precise, so that prefix is dropped when it is a prefix of it.
fn strip_yaml_path<'m>(outer: &str, message: &'m str) -> &'m str {
    if let Some((head, rest)) = message.split_once(": ")
        && !head.is_empty()
        && !head.contains(char::is_whitespace)
        && let Some(tail) = outer.strip_prefix(head)
        && (tail.is_empty() || tail.starts_with(['.', '[']))
    {
        return rest;
    }
    message
}

/// `serde_path_to_error` renders the root as "."; we use "".
fn normalize(path: &str) -> String {
    if path == "." {
        String::new()
    } else {
        path.to_string()
    }
}

pub(crate) fn join_path(outer: &str, inner: &str) -> String {
    match (outer.is_empty(), inner.is_empty()) {
        (true, _) => inner.to_string(),
        (_, true) => outer.to_string(),
        _ if inner.starts_with('[') => format!("{outer}{inner}"),
        _ => format!("{outer}.{inner}"),
    }
}
