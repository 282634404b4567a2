//! Tenant quotas and the usage they are checked against.
//!
//! Keys (all under the tenant's hash tag `{tenant-<name>}`, so one Lua script may read and
//! write them together on a Redis Cluster): `quota` (hash: `max-instances`, `max-running`,
//! `max-config-bytes`; an absent field is unlimited), `usage` (hash: `instances`, the records
//! that exist or are being created) and `running` (set of the ids that are starting or
//! running). `tenants` (outside the tag) lists every tenant that was given a quota.
//!
//! Creating an instance reserves one unit of `instances` with a check-and-increment script,
//! so concurrent creates never overshoot; a create that then fails gives it back, and the
//! worker gives it back when it drops a deleted record. The running set is maintained where
//! state changes are applied ([`Store::transition_by`]); a start is checked against its size.
//! An instance's tenant is its record's `tenant` field ([`TENANT_FIELD`]); a record without
//! one belongs to the default tenant.

use std::collections::HashMap;
use std::sync::LazyLock;

use draas_protocol::InstanceState;
use draas_protocol::auth::DEFAULT_TENANT;
use redis::AsyncCommands;
use serde::Serialize;
use uuid::Uuid;

use super::Store;
use crate::BusError;

/// The instance hash field naming the tenant the instance belongs to.
pub const TENANT_FIELD: &str = "tenant";

/// One quota limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Limit {
    #[serde(rename = "max-instances")]
    MaxInstances,
    #[serde(rename = "max-running")]
    MaxRunning,
    #[serde(rename = "max-config-bytes")]
    MaxConfigBytes,
}

impl Limit {
    pub const ALL: [Limit; 3] = [
        Limit::MaxInstances,
        Limit::MaxRunning,
        Limit::MaxConfigBytes,
    ];

    /// The hash field and wire name (`max-instances`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::MaxInstances => "max-instances",
            Limit::MaxRunning => "max-running",
            Limit::MaxConfigBytes => "max-config-bytes",
        }
    }
}

/// A tenant's quota: `None` is unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    pub max_instances: Option<u64>,
    pub max_running: Option<u64>,
    pub max_config_bytes: Option<u64>,
}

impl Quota {
    pub fn get(&self, limit: Limit) -> Option<u64> {
        match limit {
            Limit::MaxInstances => self.max_instances,
            Limit::MaxRunning => self.max_running,
            Limit::MaxConfigBytes => self.max_config_bytes,
        }
    }
}

/// What a tenant uses now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub instances: u64,
    pub running: u64,
}

/// A refusal: `limit` allows `maximum`, and `current` is what the tenant has (or, for
/// `max-config-bytes`, the size of the refused config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuotaExceeded {
    pub limit: Limit,
    pub maximum: u64,
    pub current: u64,
}

/// A change to one limit: a new maximum, or `None` to remove it (unlimited).
pub type LimitChange = (Limit, Option<u64>);

/// Checks `max-config-bytes` and `max-instances`; counts instance ARGV[2] when both pass (an
/// id already counted passes). KEYS: quota, counted set. ARGV: config bytes, instance id.
/// Returns {0|1, limit index, maximum, current}.
static RESERVE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 1 then return {1, 0, 0, 0} end
local q = redis.call('HMGET', KEYS[1], 'max-config-bytes', 'max-instances')
local bytes = tonumber(ARGV[1])
if q[1] and bytes > tonumber(q[1]) then return {0, 3, tonumber(q[1]), bytes} end
local cur = redis.call('SCARD', KEYS[2])
if q[2] and cur >= tonumber(q[2]) then return {0, 1, tonumber(q[2]), cur} end
redis.call('SADD', KEYS[2], ARGV[2])
return {1, 0, 0, cur + 1}
",
    )
});

/// Checks `max-running` for a start of ARGV[1] and takes its slot in the same step, so
/// concurrent starts never overshoot. KEYS: quota, running. Returns {0|1, maximum, current}.
static RESERVE_RUNNING: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return {1, 0, 0} end
local max = redis.call('HGET', KEYS[1], 'max-running')
local cur = redis.call('SCARD', KEYS[2])
if max and cur >= tonumber(max) then return {0, tonumber(max), cur} end
redis.call('SADD', KEYS[2], ARGV[1])
return {1, 0, cur + 1}
",
    )
});

/// Whether an instance in `state` counts against `max-running`.
pub fn is_active(state: InstanceState) -> bool {
    matches!(state, InstanceState::Starting | InstanceState::Running)
}

impl Store {
    /// The tenant's quota (every limit `None` when none was set).
    pub async fn quota(&self, tenant: &str) -> Result<Quota, BusError> {
        let fields: HashMap<String, u64> =
            self.conn().hgetall(self.keys.tenant_quota(tenant)).await?;
        let get = |limit: Limit| fields.get(limit.as_str()).copied();
        Ok(Quota {
            max_instances: get(Limit::MaxInstances),
            max_running: get(Limit::MaxRunning),
            max_config_bytes: get(Limit::MaxConfigBytes),
        })
    }

    /// Sets or removes limits of the tenant's quota and lists the tenant.
    pub async fn set_quota(&self, tenant: &str, changes: &[LimitChange]) -> Result<(), BusError> {
        let key = self.keys.tenant_quota(tenant);
        let mut pipe = redis::pipe();
        for (limit, value) in changes {
            match value {
                Some(n) => pipe.hset(&key, limit.as_str(), *n).ignore(),
                None => pipe.hdel(&key, limit.as_str()).ignore(),
            };
        }
        pipe.zadd(self.keys.tenants(), tenant, 0).ignore();
        pipe.exec_async(&mut self.conn()).await?;
        Ok(())
    }

    /// Tenants that were given a quota, by name, after `after`, at most `count`.
    pub async fn tenants_page(
        &self,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<String>, BusError> {
        self.lex_page(&self.keys.tenants(), after, count).await
    }

    /// What the tenant uses now.
    pub async fn usage(&self, tenant: &str) -> Result<Usage, BusError> {
        let (instances, running): (u64, u64) = redis::pipe()
            .scard(self.keys.tenant_usage(tenant))
            .scard(self.keys.tenant_running(tenant))
            .query_async(&mut self.conn())
            .await?;
        Ok(Usage { instances, running })
    }

    /// Counts instance `id` against the tenant's quota for a config of `config_bytes`, or
    /// says which limit refuses it (then nothing is written). Atomic: concurrent creates never
    /// count more than `max-instances` allows.
    pub async fn reserve_instance(
        &self,
        tenant: &str,
        id: Uuid,
        config_bytes: u64,
    ) -> Result<Result<(), QuotaExceeded>, BusError> {
        let (ok, limit, maximum, current): (i64, usize, u64, u64) = RESERVE
            .key(self.keys.tenant_quota(tenant))
            .key(self.keys.tenant_usage(tenant))
            .arg(config_bytes)
            .arg(id.to_string())
            .invoke_async(&mut self.conn())
            .await?;
        if ok == 1 {
            return Ok(Ok(()));
        }
        let limit = Limit::ALL[limit.saturating_sub(1).min(2)];
        Ok(Err(QuotaExceeded {
            limit,
            maximum,
            current,
        }))
    }

    /// Stops counting instance `id` (a create refused after all, or a dropped record).
    /// Idempotent.
    pub async fn release_instance(&self, tenant: &str, id: Uuid) -> Result<(), BusError> {
        self.conn()
            .srem::<_, _, ()>(self.keys.tenant_usage(tenant), id.to_string())
            .await?;
        Ok(())
    }

    /// Checks `max-config-bytes` for a config of `bytes` (a patch).
    pub async fn check_config_bytes(
        &self,
        tenant: &str,
        bytes: u64,
    ) -> Result<Result<(), QuotaExceeded>, BusError> {
        let max: Option<u64> = self
            .conn()
            .hget(
                self.keys.tenant_quota(tenant),
                Limit::MaxConfigBytes.as_str(),
            )
            .await?;
        Ok(match max {
            Some(maximum) if bytes > maximum => Err(QuotaExceeded {
                limit: Limit::MaxConfigBytes,
                maximum,
                current: bytes,
            }),
            _ => Ok(()),
        })
    }

    /// Checks `max-running` for a start of `id` and counts it as starting in the same atomic
    /// step (an instance already counted passes). The worker's state changes keep the count
    /// right from then on: a start that fails or is stopped gives the slot back.
    pub async fn reserve_running(
        &self,
        tenant: &str,
        id: Uuid,
    ) -> Result<Result<(), QuotaExceeded>, BusError> {
        let (ok, maximum, current): (i64, u64, u64) = RESERVE_RUNNING
            .key(self.keys.tenant_quota(tenant))
            .key(self.keys.tenant_running(tenant))
            .arg(id.to_string())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(match ok {
            1 => Ok(()),
            _ => Err(QuotaExceeded {
                limit: Limit::MaxRunning,
                maximum,
                current,
            }),
        })
    }

    /// The tenant an instance record belongs to (the default tenant when it names none).
    pub async fn instance_tenant(&self, id: Uuid) -> Result<String, BusError> {
        let tenant: Option<String> = self
            .conn()
            .hget(self.keys.instance(id), TENANT_FIELD)
            .await?;
        Ok(tenant.unwrap_or_else(|| DEFAULT_TENANT.to_owned()))
    }

    /// Drops `id` from the tenant's running set (a dropped record, or a start whose command
    /// was never appended).
    pub async fn untrack_running(&self, tenant: &str, id: Uuid) -> Result<(), BusError> {
        self.conn()
            .srem::<_, _, ()>(self.keys.tenant_running(tenant), id.to_string())
            .await?;
        Ok(())
    }

    /// Keeps the tenant's running set in step with a state change `from` → `to` of `id`.
    pub(crate) async fn track_running(
        &self,
        id: Uuid,
        from: InstanceState,
        to: InstanceState,
    ) -> Result<(), BusError> {
        if is_active(from) == is_active(to) {
            return Ok(());
        }
        let key = self.keys.tenant_running(&self.instance_tenant(id).await?);
        let mut conn = self.conn();
        match is_active(to) {
            true => conn.sadd::<_, _, ()>(key, id.to_string()).await?,
            false => conn.srem::<_, _, ()>(key, id.to_string()).await?,
        }
        Ok(())
    }
}
