//! What the workers' controller (the desired-state reconciler) keeps in Redis: one lease per
//! platform (`SET NX PX`, renewed and released only by its holder through single-key Lua
//! compare-and-sets) and its marks, one per situation of an instance it acted on or
//! reported, so no situation is handled twice, whichever controller sees it.

use std::sync::LazyLock;
use std::time::Duration;

use draas_protocol::Platform;
use redis::{AsyncCommands, Script};
use uuid::Uuid;

use super::{OPERATION_RETENTION_SECS, Store};
use crate::BusError;

/// Extends the lease if `ARGV[1]` holds it. KEYS[1] lease; ARGV: holder, ttl ms. Returns 1
/// when extended, 0 when someone else (or nobody) holds it.
static RENEW_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
",
    )
});

/// Drops the lease if `ARGV[1]` holds it. KEYS[1] lease; ARGV: holder. Returns 1 if dropped.
static RELEASE_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
",
    )
});

impl Store {
    /// Takes or keeps the platform's controller lease for `holder` for `ttl`: renewed when
    /// `holder` has it, taken when nobody has. False while another holder's lease lives.
    pub async fn hold_converge_lease(
        &self,
        platform: Platform,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, BusError> {
        let key = self.keys.converge_lease(platform);
        let ttl_ms = ttl.as_millis().max(1) as u64;
        let renewed: i64 = RENEW_LEASE
            .key(&key)
            .arg(holder)
            .arg(ttl_ms)
            .invoke_async(&mut self.conn())
            .await?;
        if renewed == 1 {
            return Ok(true);
        }
        let taken: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(holder)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut self.conn())
            .await?;
        Ok(taken.is_some())
    }

    /// Gives the lease up if `holder` has it, so another controller takes over at once.
    pub async fn release_converge_lease(
        &self,
        platform: Platform,
        holder: &str,
    ) -> Result<bool, BusError> {
        let released: i64 = RELEASE_LEASE
            .key(self.keys.converge_lease(platform))
            .arg(holder)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(released == 1)
    }

    /// Who holds the platform's controller lease now, if anyone.
    pub async fn converge_lease_holder(
        &self,
        platform: Platform,
    ) -> Result<Option<String>, BusError> {
        Ok(self.conn().get(self.keys.converge_lease(platform)).await?)
    }

    /// Marks `situation` of instance `id` as handled by `what` (an operation id, or a note);
    /// false when it already was (by this controller or another). Marks live as long as
    /// operation records.
    pub async fn mark_converged(
        &self,
        id: Uuid,
        situation: &str,
        what: &str,
    ) -> Result<bool, BusError> {
        let set: Option<String> = redis::cmd("SET")
            .arg(self.keys.converge_mark(id, situation))
            .arg(what)
            .arg("NX")
            .arg("EX")
            .arg(OPERATION_RETENTION_SECS)
            .query_async(&mut self.conn())
            .await?;
        Ok(set.is_some())
    }

    /// Forgets a mark whose action could not be taken (its command was not appended), so a
    /// later look tries again.
    pub async fn unmark_converged(&self, id: Uuid, situation: &str) -> Result<(), BusError> {
        self.conn()
            .del::<_, ()>(self.keys.converge_mark(id, situation))
            .await?;
        Ok(())
    }
}
