//! Token verification with a per-node cache: a verified token is remembered for at most
//! [`CACHE_TTL`], so a request costs one SHA-256 and a map lookup, and a revoked token is
//! refused by every node within a second. `lastUsedAt` is written at most once a minute per
//! token and node, off the request path.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use draas_bus::Store;
use draas_bus::clock::now;
use draas_bus::store::tokens::{digest, looks_like_secret};
use draas_protocol::auth::TokenRecord;

use super::Caller;

/// How long a verified token is trusted without asking Redis again; revocation takes effect
/// on every node within this (plus one Redis round trip).
pub const CACHE_TTL: Duration = Duration::from_millis(250);

/// How often an open event stream re-checks its token.
const LAPSE_CHECK: Duration = Duration::from_millis(500);

/// How often `lastUsedAt` is written per token (per API node).
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// Entries kept before stale ones are dropped.
const CACHE_CAP: usize = 10_000;

/// Why a request is not authenticated. The client is told none of this (one 401 for all).
#[derive(Debug)]
pub enum Refusal {
    /// Missing, malformed, unknown, expired or revoked.
    Unauthorized,
    /// Redis could not be asked.
    Unavailable(String),
}

/// Verifies bearer tokens for one API node.
pub struct Verifier {
    store: Store,
    cache: Mutex<HashMap<String, (TokenRecord, Instant)>>,
    touched: Mutex<HashMap<String, Instant>>,
}

impl Verifier {
    pub fn new(store: Store) -> Self {
        Verifier {
            store,
            cache: Mutex::default(),
            touched: Mutex::default(),
        }
    }

    /// The caller a request's `Authorization: Bearer <token>` names.
    pub async fn verify(&self, headers: &HeaderMap) -> Result<Caller, Refusal> {
        let secret = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| looks_like_secret(t))
            .ok_or(Refusal::Unauthorized)?;
        let digest = digest(secret);
        let cached = {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache
                .get(&digest)
                .filter(|(_, at)| at.elapsed() < CACHE_TTL)
                .map(|(record, _)| record.clone())
        };
        let record = match cached {
            Some(record) => record,
            None => {
                let found = self
                    .store
                    .token_by_digest(&digest)
                    .await
                    .map_err(|e| Refusal::Unavailable(e.to_string()))?;
                let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                let Some(record) = found else {
                    cache.remove(&digest);
                    return Err(Refusal::Unauthorized);
                };
                if cache.len() >= CACHE_CAP {
                    cache.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
                    if cache.len() >= CACHE_CAP {
                        cache.clear();
                    }
                }
                cache.insert(digest.clone(), (record.clone(), Instant::now()));
                record
            }
        };
        let now = now();
        if record.expired(now) {
            return Err(Refusal::Unauthorized);
        }
        self.touch(&record.id, digest, now);
        Ok(Caller {
            token_id: Some(record.id),
            tenant: record.tenant,
            scopes: record.scopes,
            expires_at: record.expires_at,
        })
    }

    /// Writes `lastUsedAt` in the background when this node has not for a minute.
    fn touch(&self, id: &str, digest: String, at: draas_protocol::Timestamp) {
        {
            let mut touched = self.touched.lock().unwrap_or_else(|p| p.into_inner());
            if touched.get(id).is_some_and(|t| t.elapsed() < TOUCH_EVERY) {
                return;
            }
            if touched.len() >= CACHE_CAP {
                touched.retain(|_, t| t.elapsed() < TOUCH_EVERY);
            }
            touched.insert(id.to_owned(), Instant::now());
        }
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(error) = store.touch_token(&digest, at).await {
                tracing::debug!(message = "lastUsedAt not recorded", %error);
            }
        });
    }
}

/// Resolves once `caller`'s token is revoked or expired (checked every [`LAPSE_CHECK`]); never
/// without a token (`--auth none`). Long-lived responses (event streams) end with it, so a
/// revoked token stops receiving within a second too.
pub async fn lapsed(store: Store, caller: Caller) {
    let Some(id) = caller.token_id else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(LAPSE_CHECK).await;
        match store.token(&id).await {
            Ok(Some(record)) if !record.expired(now()) => {}
            // Redis unreachable: keep the stream; the next check decides.
            Err(_) => {}
            _ => return,
        }
    }
}
