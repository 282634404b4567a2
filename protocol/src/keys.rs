//! Every Redis key name DRaaS uses, built in one place.
//!
//! Keys that are read or written together by one multi-key command (a worker's XREADGROUP over
//! its platform stream and its node stream) share the platform's hash tag, e.g.
//! `draas:{process}:commands`, so a Redis Cluster can hold the whole layout. Every other key is
//! only ever touched by single-key commands, so it may live in any slot. A label index scope
//! (one tenant's, or every tenant's under `{labels}`) keeps its sets and bookkeeping under one
//! tag, because one script updates them together.

use uuid::Uuid;

use crate::instance::Platform;

/// The consumer group every worker of a platform joins.
pub const WORKER_GROUP: &str = "workers";

/// Builds key names under one prefix (`draas` by default; tests use a fresh prefix each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyspace {
    prefix: String,
}

impl Default for Keyspace {
    fn default() -> Self {
        Keyspace::new("draas")
    }
}

impl Keyspace {
    pub fn new(prefix: impl Into<String>) -> Self {
        Keyspace {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The platform's command stream, read by the platform's consumer group.
    pub fn commands(&self, platform: Platform) -> String {
        format!("{}:{{{platform}}}:commands", self.prefix)
    }

    /// A node's own command stream: commands for instances that node already runs.
    pub fn node_commands(&self, platform: Platform, node: &str) -> String {
        format!("{}:{{{platform}}}:node:{node}:commands", self.prefix)
    }

    /// Dead letters of the platform: commands that ran out of deliveries.
    pub fn dead_letters(&self, platform: Platform) -> String {
        format!("{}:{{{platform}}}:dlq", self.prefix)
    }

    /// Live workers of the platform: a sorted set of consumer name → last heartbeat (ms).
    pub fn workers(&self, platform: Platform) -> String {
        format!("{}:{{{platform}}}:workers", self.prefix)
    }

    /// Nodes of the platform: a sorted set of node → last heartbeat (ms).
    pub fn nodes(&self, platform: Platform) -> String {
        format!("{}:{{{platform}}}:nodes", self.prefix)
    }

    /// Ids of the instances placed on a node.
    pub fn node_instances(&self, platform: Platform, node: &str) -> String {
        format!("{}:{{{platform}}}:node:{node}:instances", self.prefix)
    }

    /// One worker's heartbeat hash (node, pid, started); it expires when beats stop.
    pub fn worker(&self, platform: Platform, consumer: &str) -> String {
        format!("{}:{{{platform}}}:worker:{consumer}", self.prefix)
    }

    /// An API node's reply stream; only that node reads it.
    pub fn replies(&self, api_node: &str) -> String {
        format!("{}:{{api-{api_node}}}:replies", self.prefix)
    }

    /// A durable operation record (also the command's execution record).
    pub fn operation(&self, id: Uuid) -> String {
        format!("{}:op:{id}", self.prefix)
    }

    /// An idempotency key → the operation it created.
    pub fn idempotency(&self, key: &str) -> String {
        format!("{}:idem:{key}", self.prefix)
    }

    /// An instance record: spec, state, fencing token and runtime info.
    pub fn instance(&self, id: Uuid) -> String {
        format!("{}:inst:{id}", self.prefix)
    }

    /// The per-instance lease that serialises commands on one instance across workers.
    pub fn lease(&self, id: Uuid) -> String {
        format!("{}:lease:{id}", self.prefix)
    }

    /// Sorted set of every instance id (score 0, so ids sort lexically: UUIDv7 is time order).
    pub fn instance_index(&self) -> String {
        format!("{}:instances", self.prefix)
    }

    /// Hash of instance name → id; `HSETNX` makes names unique.
    pub fn names(&self) -> String {
        format!("{}:names", self.prefix)
    }

    /// Hash of platform → number of instance records.
    pub fn platform_counts(&self) -> String {
        format!("{}:platform-counts", self.prefix)
    }

    /// Hash of `<platform>:<state>` → number of instance records in that state, kept by
    /// every create, transition and delete (the `draas_instances` gauge reads it).
    pub fn state_counts(&self) -> String {
        format!("{}:state-counts", self.prefix)
    }

    /// The events stream: every state change of every instance.
    pub fn events(&self) -> String {
        format!("{}:events", self.prefix)
    }

    /// A tenant's quota: hash of `max-instances`, `max-running`, `max-config-bytes` (absent
    /// fields are unlimited). Shares the tenant's hash tag with [`Keyspace::tenant_usage`], so
    /// one Lua script checks and counts atomically.
    pub fn tenant_quota(&self, tenant: &str) -> String {
        format!("{}:{{tenant-{tenant}}}:quota", self.prefix)
    }

    /// Set of a tenant's instance ids counted against `max-instances`: records that exist or
    /// are being created. A set, not a counter, so giving a unit back is idempotent (a delete
    /// retried after a crash never gives back twice).
    pub fn tenant_usage(&self, tenant: &str) -> String {
        format!("{}:{{tenant-{tenant}}}:counted", self.prefix)
    }

    /// Set of a tenant's instance ids that are starting or running.
    pub fn tenant_running(&self, tenant: &str) -> String {
        format!("{}:{{tenant-{tenant}}}:running", self.prefix)
    }

    /// Sorted set of every tenant with a quota (score 0, by name), for `draas tenants list`.
    pub fn tenants(&self) -> String {
        format!("{}:tenants", self.prefix)
    }

    /// The audit stream: every mutating or refused request, `MAXLEN ~` capped.
    pub fn audit(&self) -> String {
        format!("{}:audit", self.prefix)
    }

    /// Hash of a tenant's instance names → ids; `HSETNX` makes names unique per tenant.
    pub fn tenant_names(&self, tenant: &str) -> String {
        format!("{}:{{tenant-{tenant}}}:names", self.prefix)
    }

    /// Sorted set of a tenant's instance ids (score 0), paged like [`Keyspace::instance_index`],
    /// so a tenant's list never reads another tenant's records.
    pub fn tenant_instances(&self, tenant: &str) -> String {
        format!("{}:{{tenant-{tenant}}}:instances", self.prefix)
    }

    /// A token record, keyed by the SHA-256 (hex) of its secret: id, tenant, scopes,
    /// description, created, expires, last-used. The secret itself is stored nowhere.
    pub fn token(&self, digest: &str) -> String {
        format!("{}:token:{digest}", self.prefix)
    }

    /// A token id → the digest its record is keyed by (revoke and list by id).
    pub fn token_id(&self, id: &str) -> String {
        format!("{}:token-id:{id}", self.prefix)
    }

    /// Sorted set of every token id (score 0; ids are UUIDv7, so time order).
    pub fn tokens(&self) -> String {
        format!("{}:tokens", self.prefix)
    }

    /// Sorted set of one tenant's token ids.
    pub fn tenant_tokens(&self, tenant: &str) -> String {
        format!("{}:{{tenant-{tenant}}}:tokens", self.prefix)
    }
}

/// Whose instances a label index covers: one tenant's (that tenant's lists) or every
/// tenant's (a cluster administrator's lists, which read the global instance index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelScope<'a> {
    All,
    Tenant(&'a str),
}

impl Keyspace {
    /// The label index of `scope`, one sorted set per label `key=value` (score 0, instance
    /// ids, ordered like [`Keyspace::instance_index`] so a list's cursor works on both). Every
    /// key of a scope shares one hash tag (the tenant's, or `{labels}` for every tenant), so
    /// one Lua script keeps an instance's memberships and their bookkeeping together.
    pub fn label_index(&self, scope: LabelScope<'_>, key: &str, value: &str) -> String {
        format!(
            "{}{}",
            self.label_index_prefix(scope),
            label_pair(key, value)
        )
    }

    /// What every label index key of `scope` starts with: [`Keyspace::label_index`] is this
    /// followed by [`label_pair`].
    pub fn label_index_prefix(&self, scope: LabelScope<'_>) -> String {
        format!("{}:label:", self.label_tag(scope))
    }

    /// Hash of instance id → the label index memberships it holds in `scope` and the newest
    /// generation written or about to be written (JSON `{"p": generation, "m": [pairs]}`).
    pub fn labeled(&self, scope: LabelScope<'_>) -> String {
        format!("{}:labeled", self.label_tag(scope))
    }

    /// Set once every instance record older than the label index has been indexed: until
    /// then a label-filtered list reads the id index instead.
    pub fn labels_built(&self) -> String {
        format!("{}:{{labels}}:built", self.prefix)
    }

    fn label_tag(&self, scope: LabelScope<'_>) -> String {
        match scope {
            LabelScope::All => format!("{}:{{labels}}", self.prefix),
            LabelScope::Tenant(tenant) => format!("{}:{{tenant-{tenant}}}", self.prefix),
        }
    }
}

/// A label as a member of [`Keyspace::labeled`] and the tail of its index key: `key=value`,
/// with `%` and `=` in the key written `%25` and `%3D`, so the first `=` always ends the key
/// (a key may hold `=`; `a=b`/`c` and `a`/`b=c` are different labels).
pub fn label_pair(key: &str, value: &str) -> String {
    let key = key.replace('%', "%25").replace('=', "%3D");
    format!("{key}={value}")
}

impl Keyspace {
    /// The lease of a platform's controller (the workers' desired-state reconciler): the
    /// consumer holding it, set with `NX PX` and renewed by its holder only.
    pub fn converge_lease(&self, platform: Platform) -> String {
        format!("{}:{{{platform}}}:converge-lease", self.prefix)
    }

    /// The controller's mark that it already acted on (or reported) one situation of an
    /// instance: `situation` names the generation, fencing token and states, so the same
    /// situation seen by two controllers (before and after a lease handover) is handled once.
    pub fn converge_mark(&self, id: Uuid, situation: &str) -> String {
        format!("{}:converge:{id}:{situation}", self.prefix)
    }
}

impl Keyspace {
    /// The key the start-up permission check names in the commands it queues and never runs
    /// (`bus::acl`); nothing is ever stored under it.
    pub fn acl_probe(&self) -> String {
        format!("{}:{{acl-probe}}:key", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let k = Keyspace::default();
        let id = Uuid::from_u128(1);
        assert_eq!(k.commands(Platform::Process), "draas:{process}:commands");
        assert_eq!(
            k.node_commands(Platform::Docker, "n1"),
            "draas:{docker}:node:n1:commands"
        );
        assert_eq!(
            k.dead_letters(Platform::Kubernetes),
            "draas:{kubernetes}:dlq"
        );
        assert_eq!(k.workers(Platform::Process), "draas:{process}:workers");
        assert_eq!(k.replies("a1"), "draas:{api-a1}:replies");
        assert_eq!(
            k.operation(id),
            "draas:op:00000000-0000-0000-0000-000000000001"
        );
        assert_eq!(
            k.instance(id),
            "draas:inst:00000000-0000-0000-0000-000000000001"
        );
        assert_eq!(k.names(), "draas:names");
        assert_eq!(k.tenant_quota("acme"), "draas:{tenant-acme}:quota");
        assert_eq!(k.tenant_usage("acme"), "draas:{tenant-acme}:counted");
        assert_eq!(k.tenant_running("acme"), "draas:{tenant-acme}:running");
        assert_eq!(k.audit(), "draas:audit");
        assert_eq!(k.tenant_names("acme"), "draas:{tenant-acme}:names");
        assert_eq!(k.tenant_instances("acme"), "draas:{tenant-acme}:instances");
        assert_eq!(k.token("ab12"), "draas:token:ab12");
        assert_eq!(k.token_id("t1"), "draas:token-id:t1");
        assert_eq!(k.tokens(), "draas:tokens");
        assert_eq!(k.tenant_tokens("acme"), "draas:{tenant-acme}:tokens");
        assert_eq!(
            k.converge_lease(Platform::Process),
            "draas:{process}:converge-lease"
        );
        assert_eq!(
            k.label_index(LabelScope::Tenant("acme"), "tier", "gold"),
            "draas:{tenant-acme}:label:tier=gold"
        );
        assert_eq!(
            k.label_index(LabelScope::All, "a=b%", "c=d"),
            "draas:{labels}:label:a%3Db%25=c=d"
        );
        assert_eq!(k.labeled(LabelScope::All), "draas:{labels}:labeled");
        assert_eq!(
            k.labeled(LabelScope::Tenant("acme")),
            "draas:{tenant-acme}:labeled"
        );
        assert_eq!(k.labels_built(), "draas:{labels}:built");
        assert_eq!(
            k.converge_mark(id, "g1"),
            "draas:converge:00000000-0000-0000-0000-000000000001:g1"
        );
    }

    /// The tag is what Redis Cluster hashes: a platform's streams must share it.
    #[test]
    fn platform_streams_share_a_hash_tag() {
        fn tag(key: &str) -> &str {
            let open = key.find('{').unwrap();
            let close = key[open..].find('}').unwrap() + open;
            &key[open + 1..close]
        }
        let k = Keyspace::new("t1");
        for p in Platform::ALL {
            assert_eq!(tag(&k.commands(p)), tag(&k.node_commands(p, "n")));
            assert_eq!(tag(&k.commands(p)), tag(&k.dead_letters(p)));
            assert_eq!(tag(&k.commands(p)), p.as_str());
        }
        // A label scope's sets and its bookkeeping hash are written by one script.
        for scope in [LabelScope::All, LabelScope::Tenant("acme")] {
            assert_eq!(
                tag(&k.label_index(scope, "{x}", "{y}")),
                tag(&k.labeled(scope))
            );
        }
        assert_eq!(
            tag(&k.labeled(LabelScope::Tenant("acme"))),
            tag(&k.tenant_instances("acme"))
        );
    }
}
