//! API tokens: secrets made here and shown once, records keyed by the secret's SHA-256.
//!
//! Keys (`protocol/src/keys.rs`): `token:<digest>` (hash: `id`, `tenant`, `scopes` (JSON),
//! `description`, `created`, `expires`, `used`), `token-id:<id>` (the digest, for revoke),
//! `tokens` and `{tenant-<t>}:tokens` (sorted sets of ids, cursor-paged like instances).
//! Looking a secret up is one HGETALL; the secret itself is stored nowhere. An expiring
//! token's keys expire with it; index entries left behind are skipped and dropped by lists.

use std::collections::HashMap;

use draas_protocol::Timestamp;
use draas_protocol::auth::{Scopes, TOKEN_PREFIX, TokenRecord};
use redis::AsyncCommands;
use sha2::{Digest, Sha256};

use super::Store;
use crate::BusError;
use crate::clock::now;

/// Random bytes in a secret: 256 bits.
const SECRET_BYTES: usize = 32;

/// Why a token could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("the system's random number generator failed: {0}")]
    Random(getrandom::Error),
}

impl From<redis::RedisError> for TokenError {
    fn from(e: redis::RedisError) -> Self {
        TokenError::Bus(e.into())
    }
}

/// A token just made: the only time its secret exists outside the client.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub secret: String,
    pub record: TokenRecord,
}

/// A fresh secret: `draas_` and 256 random bits in lowercase base32 (52 characters).
pub fn generate_secret() -> Result<String, TokenError> {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes).map_err(TokenError::Random)?;
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        data_encoding::BASE32_DNSSEC.encode(&bytes)
    ))
}

/// The hex SHA-256 of a secret: what Redis keys the record by.
pub fn digest(secret: &str) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(secret.as_bytes()))
}

/// Whether `text` has the shape of a secret [`generate_secret`] makes (checked before any
/// Redis lookup, so garbage costs nothing).
pub fn looks_like_secret(text: &str) -> bool {
    text.strip_prefix(TOKEN_PREFIX).is_some_and(|rest| {
        rest.len() == 52
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

/// Sets `used` only while the record exists, so a late write never revives a revoked token.
const TOUCH: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'used', ARGV[1])
  return 1
end
return 0";

impl Store {
    /// Makes a token and stores its record; the returned secret is never stored.
    pub async fn create_token(
        &self,
        tenant: &str,
        scopes: Scopes,
        description: Option<String>,
        expires_at: Option<Timestamp>,
    ) -> Result<NewToken, TokenError> {
        let secret = generate_secret()?;
        let record = TokenRecord {
            id: uuid::Uuid::now_v7().to_string(),
            tenant: tenant.to_owned(),
            scopes,
            description,
            created_at: now(),
            expires_at,
            last_used_at: None,
        };
        let hash = digest(&secret);
        let (key, id_key) = (self.keys.token(&hash), self.keys.token_id(&record.id));
        let scopes_json =
            serde_json::to_string(&record.scopes).map_err(|e| BusError::corrupt(&key, e))?;
        let mut fields = vec![
            ("id", record.id.clone()),
            ("tenant", record.tenant.clone()),
            ("scopes", scopes_json),
            ("created", record.created_at.millis().to_string()),
        ];
        if let Some(d) = &record.description {
            fields.push(("description", d.clone()));
        }
        if let Some(at) = record.expires_at {
            fields.push(("expires", at.millis().to_string()));
        }
        let mut pipe = redis::pipe();
        pipe.hset_multiple(&key, &fields)
            .ignore()
            .set(&id_key, &hash)
            .ignore()
            .zadd(self.keys.tokens(), &record.id, 0)
            .ignore()
            .zadd(self.keys.tenant_tokens(tenant), &record.id, 0)
            .ignore();
        if let Some(at) = record.expires_at {
            pipe.cmd("PEXPIREAT").arg(&key).arg(at.millis()).ignore();
            pipe.cmd("PEXPIREAT").arg(&id_key).arg(at.millis()).ignore();
        }
        pipe.exec_async(&mut self.conn()).await?;
        Ok(NewToken { secret, record })
    }

    /// The record of the token whose secret has this digest: one HGETALL.
    pub async fn token_by_digest(&self, digest: &str) -> Result<Option<TokenRecord>, BusError> {
        let key = self.keys.token(digest);
        let fields: HashMap<String, String> = self.conn().hgetall(&key).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        parse_token(&key, &fields).map(Some)
    }

    /// The record of token `id`, if it exists.
    pub async fn token(&self, id: &str) -> Result<Option<TokenRecord>, BusError> {
        let digest: Option<String> = self.conn().get(self.keys.token_id(id)).await?;
        match digest {
            Some(d) => self.token_by_digest(&d).await,
            None => Ok(None),
        }
    }

    /// Revokes token `id`: its record is gone at once (API nodes' caches forget it within
    /// a second). Returns the record revoked, `None` if there was none.
    pub async fn revoke_token(&self, id: &str) -> Result<Option<TokenRecord>, BusError> {
        let id_key = self.keys.token_id(id);
        let digest: Option<String> = self.conn().get(&id_key).await?;
        let Some(digest) = digest else {
            return Ok(None);
        };
        let record = self.token_by_digest(&digest).await?;
        let mut pipe = redis::pipe();
        pipe.del(self.keys.token(&digest))
            .ignore()
            .del(&id_key)
            .ignore()
            .zrem(self.keys.tokens(), id)
            .ignore();
        if let Some(r) = &record {
            pipe.zrem(self.keys.tenant_tokens(&r.tenant), id).ignore();
        }
        pipe.exec_async(&mut self.conn()).await?;
        Ok(record)
    }

    /// Records that the token was used at `at` (callers do this at most once a minute).
    pub async fn touch_token(&self, digest: &str, at: Timestamp) -> Result<(), BusError> {
        let _: i64 = redis::Script::new(TOUCH)
            .key(self.keys.token(digest))
            .arg(at.millis())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Whether any token exists (`draas api` refuses to start without one).
    pub async fn has_tokens(&self) -> Result<bool, BusError> {
        let count: u64 = self.conn().zcard(self.keys.tokens()).await?;
        Ok(count > 0)
    }

    /// One page of tokens after id `after` (all tenants, or one), in id order. Ids whose
    /// record expired or vanished are dropped from the index. Returns the records and the
    /// last id scanned (the next cursor), `None` at the end.
    pub async fn tokens_page(
        &self,
        tenant: Option<&str>,
        after: Option<&str>,
        count: usize,
    ) -> Result<(Vec<TokenRecord>, Option<String>), BusError> {
        let index = match tenant {
            Some(t) => self.keys.tenant_tokens(t),
            None => self.keys.tokens(),
        };
        let mut conn = self.conn();
        let ids = self.lex_page(&index, after, count).await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in &ids {
            match self.token(id).await? {
                Some(record) => out.push(record),
                None => {
                    let mut pipe = redis::pipe();
                    pipe.zrem(self.keys.tokens(), id).ignore();
                    if let Some(t) = tenant {
                        pipe.zrem(self.keys.tenant_tokens(t), id).ignore();
                    }
                    pipe.exec_async(&mut conn).await?;
                }
            }
        }
        let next = (ids.len() == count).then(|| ids.last().cloned()).flatten();
        Ok((out, next))
    }
}

fn parse_token(key: &str, f: &HashMap<String, String>) -> Result<TokenRecord, BusError> {
    let get = |field: &str| {
        f.get(field)
            .ok_or_else(|| BusError::corrupt(key, format!("no `{field}`")))
    };
    let millis = |field: &str| -> Result<Option<Timestamp>, BusError> {
        f.get(field)
            .map(|v| {
                v.parse()
                    .map(Timestamp)
                    .map_err(|_| BusError::corrupt(key, format!("bad `{field}`")))
            })
            .transpose()
    };
    Ok(TokenRecord {
        id: get("id")?.clone(),
        tenant: get("tenant")?.clone(),
        scopes: serde_json::from_str(get("scopes")?)
            .map_err(|e| BusError::corrupt(key, format!("scopes: {e}")))?,
        description: f.get("description").cloned(),
        created_at: millis("created")?.unwrap_or(Timestamp(0)),
        expires_at: millis("expires")?,
        last_used_at: millis("used")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_random_and_recognised() {
        let a = generate_secret().unwrap();
        let b = generate_secret().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("draas_"));
        assert!(looks_like_secret(&a), "{a}");
        assert!(!looks_like_secret("draas_short"));
        assert!(!looks_like_secret(&a.to_uppercase()));
        assert!(!looks_like_secret(&a[6..]));
    }

    #[test]
    fn digest_is_hex_sha256() {
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
