//! The data plane's wire contract between API nodes and workers: the paths a worker's
//! data-plane listener serves, and the shared secret an API node presents to it.
//!
//! An API node never routes to an instance itself: it forwards a data request to a worker
//! that owns the instance (`GET|POST <worker>/data/v1/instances/<id>/<what>`), with
//! `Authorization: Bearer <secret>`, and the worker reaches the instance locally.

use std::fmt;

/// The prefix of every data-plane path on a worker.
pub const PREFIX: &str = "/data/v1/instances";

/// What a data request asks of an instance, after `/instances/<id>/` on the API and on a
/// worker alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataRoute {
    /// `GET queries`: every query with its status.
    Queries,
    /// `GET queries/<q>/results`: the current result set.
    Results(String),
    /// `GET queries/<q>/changes`: Server-Sent Events of result changes.
    Changes(String),
    /// `POST sources/<s>/events`: one event into an http source.
    Event(String),
    /// `POST sources/<s>/events/batch`: several.
    Batch(String),
}

impl DataRoute {
    /// The path after `/instances/<id>/`.
    pub fn tail(&self) -> String {
        match self {
            DataRoute::Queries => "queries".to_owned(),
            DataRoute::Results(q) => format!("queries/{q}/results"),
            DataRoute::Changes(q) => format!("queries/{q}/changes"),
            DataRoute::Event(s) => format!("sources/{s}/events"),
            DataRoute::Batch(s) => format!("sources/{s}/events/batch"),
        }
    }

    /// The worker's path for this route of instance `id`.
    pub fn worker_path(&self, id: uuid::Uuid) -> String {
        format!("{PREFIX}/{id}/{}", self.tail())
    }

    /// Whether the route takes a request body (POST).
    pub fn is_post(&self) -> bool {
        matches!(self, DataRoute::Event(_) | DataRoute::Batch(_))
    }
}

/// An error's message with its causes, for the reasons the data plane reports (an HTTP
/// client's own message leaves out why: the DNS failure, the refused connection).
pub fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = cause.source();
    }
    text
}

/// The secret API nodes present to workers' data-plane listeners. Never printed: its `Debug`
/// and `Display` are redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct DataSecret(String);

/// Why a secret was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the data-plane secret must be 32 to 1024 visible ASCII characters")]
pub struct WeakSecret;

impl DataSecret {
    /// A secret of 32 to 1024 visible ASCII characters (it travels in a header).
    pub fn new(secret: impl Into<String>) -> Result<Self, WeakSecret> {
        let secret = secret.into();
        let secret = secret.trim().to_owned();
        let visible = secret.bytes().all(|b| b.is_ascii_graphic());
        if (32..=1024).contains(&secret.len()) && visible {
            Ok(DataSecret(secret))
        } else {
            Err(WeakSecret)
        }
    }

    /// The `Authorization` header value an API node sends.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// Whether an `Authorization` header value presents this secret. The comparison takes
    /// the same time wherever the first difference is.
    pub fn admits(&self, authorization: &str) -> bool {
        let Some(presented) = authorization.strip_prefix("Bearer ") else {
            return false;
        };
        let (a, b) = (presented.as_bytes(), self.0.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for DataSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_checked_and_never_printed() {
        assert!(DataSecret::new("short").is_err());
        assert!(DataSecret::new(format!("{}\n", "a".repeat(40))).is_ok());
        assert!(DataSecret::new(format!("{} b", "a".repeat(40))).is_err());
        let s = DataSecret::new("x".repeat(40)).unwrap();
        assert!(s.admits(&format!("Bearer {}", "x".repeat(40))));
        assert!(!s.admits(&format!("Bearer {}", "x".repeat(39))));
        assert!(!s.admits(&format!("Bearer {}y", "x".repeat(39))));
        assert!(!s.admits(&"x".repeat(40)));
        assert_eq!(format!("{s:?}"), "DataSecret(<redacted>)");
    }

    #[test]
    fn routes_map_to_worker_paths() {
        let id = uuid::Uuid::nil();
        assert_eq!(
            DataRoute::Batch("s".into()).worker_path(id),
            format!("/data/v1/instances/{id}/sources/s/events/batch")
        );
        assert!(DataRoute::Event("s".into()).is_post());
        assert!(!DataRoute::Changes("q".into()).is_post());
    }
}
