//! The label index: for each label `key=value`, a sorted set of the ids of the instances that
//! carry it, once per tenant and once for every tenant (a cluster administrator's list), so a
//! label-filtered list reads only the instances that match instead of paging through all.
//!
//! Keys ([`draas_protocol::Keyspace::label_index`], [`draas_protocol::Keyspace::labeled`]): a
//! scope's sets and its bookkeeping hash (instance id → the memberships it holds and the
//! newest generation written or about to be written) share one hash tag, the tenant's or
//! `{labels}`, and one script ([`INDEX`]) changes them together. A tenant's sets hold only
//! ids of its own id index, so a filtered list shows what the unfiltered one shows. The
//! instance record lives in a slot of its own, so the index cannot change in the same atomic
//! step as the record; instead it is kept a **superset** of the truth, and every list checks
//! each candidate against its record:
//!
//! - before a record is written (create, spec change), `prepare` adds the memberships of the
//!   labels about to be written and raises the generation mark to the one being written;
//! - after a spec change took, `settle` removes the memberships the record no longer has,
//!   unless a newer generation has been prepared since (that writer settles);
//! - a spec change that lost its compare-and-set indexes the record as it is (`index`);
//! - a delete drops every membership after the record is gone.
//!
//! So a crash between two steps leaves extra memberships (skipped by the list), never a
//! missing one. Sets are sorted sets that Redis deletes when their last member goes, and an
//! id with no memberships has no bookkeeping entry, so nothing empty lingers.
//!
//! Records written before the index existed are indexed by [`Store::build_label_index`]
//! (started in the background by every API node, and again by a filtered list that finds the
//! index unbuilt), which sets [`draas_protocol::Keyspace::labels_built`] when it has seen
//! every record; until then filtered lists read the id index as before.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};

use draas_protocol::Instance;
use draas_protocol::keys::{LabelScope, label_pair};
use redis::{AsyncCommands, Script};
use uuid::Uuid;

use super::Store;
use crate::BusError;
use crate::clock::now;

/// Records read per step of [`Store::build_label_index`].
const BUILD_PAGE: usize = 500;

/// What this process knows about the label index: built (for good), or being built by a task
/// of this process.
#[derive(Debug, Default)]
pub(crate) struct IndexState {
    built: AtomicBool,
    building: AtomicBool,
}

/// One step on an instance's memberships in one scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Add the memberships of the labels about to be written; raise the generation mark.
    Prepare,
    /// [`Op::Prepare`] for a record about to be created (not yet in its tenant's id index).
    Create,
    /// The record now holds these labels at this generation: remove the other memberships,
    /// unless a newer generation was prepared.
    Settle,
    /// A record read as it is: prepare and settle in one.
    Index,
    /// The record is gone: remove every membership and the bookkeeping entry.
    Drop,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Prepare => "prepare",
            Op::Create => "create",
            Op::Settle => "settle",
            Op::Index => "index",
            Op::Drop => "drop",
        }
    }
}

/// Steps on a batch of instances in one scope, atomically.
/// `KEYS[1]` the scope's bookkeeping hash (id → JSON `{"p": generation mark, "m": [pairs],
/// "t": tenant}`, `t` only in the every-tenant scope). `ARGV[1]` the prefix of the scope's set
/// keys, `ARGV[2]` the tenant's id index in a tenant's scope ('' in the every-tenant scope);
/// then per instance: op, id, generation, tenant ('' in a tenant's scope), n, n pairs.
/// Every key it touches is the prefix plus a pair or the id index, in `KEYS[1]`'s hash tag.
/// In a tenant's scope an id gets memberships only while it is in the tenant's id index
/// (the records a tenant's unfiltered list shows; a record older than tenants is in none), or
/// when it is being created (`create`: a prepare whose record and index entry come next).
/// Returns one integer per instance: prepare, create: 1 when the id still holds memberships
/// beyond the given labels (a settle after the write removes them); settle: 1 when it
/// settled; index, drop: 1.
static INDEX: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local prefix, ids = ARGV[1], ARGV[2]
local out = {}
local i = 3
while i <= #ARGV do
  local op, id, g, tenant = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  local n = tonumber(ARGV[i + 4])
  local want = {}
  for j = 1, n do want[ARGV[i + 4 + j]] = true end
  i = i + 5 + n
  if op == 'create' then
    op = 'prepare'
  elseif ids ~= '' and op ~= 'drop' then
    if #redis.call('ZRANGE', ids, '[' .. id, '[' .. id, 'BYLEX') == 0 then want = {} end
  end
  local raw = redis.call('HGET', KEYS[1], id)
  local p, held = 0, {}
  if raw then
    local s = cjson.decode(raw)
    p = tonumber(s.p) or 0
    for _, m in ipairs(s.m or {}) do held[m] = true end
  end
  local result = 0
  if op == 'drop' then
    for m in pairs(held) do redis.call('ZREM', prefix .. m, id) end
    if raw then redis.call('HDEL', KEYS[1], id) end
    result = 1
  elseif op ~= 'settle' or raw then
    if op ~= 'settle' then
      for m in pairs(want) do
        if not held[m] then
          redis.call('ZADD', prefix .. m, 0, id)
          held[m] = true
        end
      end
    end
    if g > p then p = g end
    if op ~= 'prepare' and g >= p then
      for m in pairs(held) do
        if not want[m] then
          redis.call('ZREM', prefix .. m, id)
          held[m] = nil
        end
      end
      result = 1
    end
    local list = {}
    for m in pairs(held) do
      list[#list + 1] = m
      if op == 'prepare' and not want[m] then result = 1 end
    end
    if #list == 0 then
      if raw then redis.call('HDEL', KEYS[1], id) end
    else
      table.sort(list)
      local s = {p = p, m = list}
      if tenant ~= '' then s.t = tenant end
      redis.call('HSET', KEYS[1], id, cjson.encode(s))
    end
  end
  out[#out + 1] = result
end
return out
",
    )
});

/// One instance's step.
struct Item<'a> {
    op: Op,
    id: Uuid,
    generation: u64,
    tenant: &'a str,
    labels: Option<&'a BTreeMap<String, String>>,
}

impl Store {
    /// Before a record with `labels` at `generation` is written (`create`: a new record):
    /// adds their memberships in the tenant's scope and the every-tenant scope. Returns
    /// whether the id still holds memberships beyond these (then [`Store::settle_labels`]
    /// follows a successful write).
    pub(super) async fn prepare_labels(
        &self,
        tenant: &str,
        id: Uuid,
        generation: u64,
        labels: &BTreeMap<String, String>,
        create: bool,
    ) -> Result<bool, BusError> {
        let item = |tenant| Item {
            op: if create { Op::Create } else { Op::Prepare },
            id,
            generation,
            tenant,
            labels: Some(labels),
        };
        let (mine, every) = ([item("")], [item(tenant)]);
        let (own, all) = tokio::try_join!(
            self.label_step(LabelScope::Tenant(tenant), &mine),
            self.label_step(LabelScope::All, &every),
        )?;
        Ok(own.contains(&1) || all.contains(&1))
    }

    /// After the record took `labels` at `generation`: removes the memberships it no longer
    /// has. A failure leaves extra memberships, which lists skip, so it is logged, not
    /// returned: the record's change stands.
    pub(super) async fn settle_labels(
        &self,
        tenant: &str,
        id: Uuid,
        generation: u64,
        labels: &BTreeMap<String, String>,
    ) {
        let item = |tenant| Item {
            op: Op::Settle,
            id,
            generation,
            tenant,
            labels: Some(labels),
        };
        let (own, all) = ([item("")], [item(tenant)]);
        if let Err(error) = tokio::try_join!(
            self.label_step(LabelScope::Tenant(tenant), &own),
            self.label_step(LabelScope::All, &all),
        ) {
            tracing::warn!(message = "label index not settled", instance = %id, %error);
        }
    }

    /// Indexes the record as it is now (after a spec change lost its compare-and-set, its
    /// prepared memberships may not be the record's), or drops it when it is gone.
    pub(super) async fn reindex_labels(&self, tenant: &str, id: Uuid) -> Result<(), BusError> {
        match self.instance(id).await? {
            Some(stored) => self.index_records(&[stored.instance]).await,
            None => self.drop_labels(tenant, id).await,
        }
    }

    /// The record is gone: drops every membership of `id` in `tenant`'s scope and the
    /// every-tenant scope. When the record was already gone before (a resumed delete, whose
    /// `tenant` is only a guess), the tenant the every-tenant scope recorded is dropped too.
    pub(super) async fn drop_labels(&self, tenant: &str, id: Uuid) -> Result<(), BusError> {
        let recorded: Option<String> = self
            .conn()
            .hget(self.keys.labeled(LabelScope::All), id.to_string())
            .await?;
        let recorded = recorded
            .and_then(|raw| serde_json::from_str::<serde_json::Value>(&raw).ok())
            .and_then(|v| v["t"].as_str().map(str::to_owned));
        let drop = [Item {
            op: Op::Drop,
            id,
            generation: 0,
            tenant: "",
            labels: None,
        }];
        self.label_step(LabelScope::Tenant(tenant), &drop).await?;
        if let Some(other) = recorded.filter(|t| t != tenant) {
            self.label_step(LabelScope::Tenant(&other), &drop).await?;
        }
        self.label_step(LabelScope::All, &drop).await?;
        Ok(())
    }

    /// Indexes records as read, then looks at them again: one that vanished meanwhile is
    /// dropped (a delete that dropped it before this indexed it must not leave memberships
    /// behind; a delete removes the record before it drops, so a record still seen here has
    /// its drop to come), and one that changed meanwhile is read and indexed again (an index
    /// from an older read only adds, and a writer's settle may already have passed). After
    /// a few rounds of a record that keeps changing, its writers settle it.
    async fn index_records(&self, records: &[Instance]) -> Result<(), BusError> {
        let mut changed = self.index_once(records).await?;
        for _ in 0..3 {
            if changed.is_empty() {
                break;
            }
            let mut again = Vec::with_capacity(changed.len());
            for (id, tenant) in changed {
                match self.instance(id).await? {
                    Some(stored) => again.push(stored.instance),
                    None => self.drop_labels(&tenant, id).await?,
                }
            }
            changed = self.index_once(&again).await?;
        }
        Ok(())
    }

    /// One round of [`Store::index_records`]: the ids (and tenants) whose record changed
    /// since it was read.
    async fn index_once(&self, records: &[Instance]) -> Result<Vec<(Uuid, String)>, BusError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let mut by_tenant: BTreeMap<&str, Vec<Item<'_>>> = BTreeMap::new();
        let mut all = Vec::with_capacity(records.len());
        for inst in records {
            let item = |tenant| Item {
                op: Op::Index,
                id: inst.id,
                generation: inst.generation,
                tenant,
                labels: Some(&inst.spec.labels),
            };
            by_tenant.entry(&inst.tenant).or_default().push(item(""));
            all.push(item(&inst.tenant));
        }
        for (tenant, items) in &by_tenant {
            self.label_step(LabelScope::Tenant(tenant), items).await?;
        }
        self.label_step(LabelScope::All, &all).await?;
        let mut pipe = redis::pipe();
        for inst in records {
            pipe.hget(self.keys.instance(inst.id), "generation");
        }
        let now: Vec<Option<String>> = pipe.query_async(&mut self.conn()).await?;
        let mut changed = Vec::new();
        for (inst, generation) in records.iter().zip(now) {
            match generation {
                None => self.drop_labels(&inst.tenant, inst.id).await?,
                Some(g) if g != inst.generation.to_string() => {
                    changed.push((inst.id, inst.tenant.clone()));
                }
                Some(_) => {}
            }
        }
        Ok(changed)
    }

    /// Runs [`INDEX`] over `items` in `scope`.
    async fn label_step(
        &self,
        scope: LabelScope<'_>,
        items: &[Item<'_>],
    ) -> Result<Vec<i64>, BusError> {
        let mut call = INDEX.key(self.keys.labeled(scope));
        call.arg(self.keys.label_index_prefix(scope));
        call.arg(match scope {
            LabelScope::All => String::new(),
            LabelScope::Tenant(tenant) => self.keys.tenant_instances(tenant),
        });
        for item in items {
            let pairs: Vec<String> = item
                .labels
                .into_iter()
                .flatten()
                .map(|(k, v)| label_pair(k, v))
                .collect();
            call.arg(item.op.as_str())
                .arg(item.id.to_string())
                .arg(item.generation)
                .arg(item.tenant)
                .arg(pairs.len())
                .arg(pairs);
        }
        Ok(call.invoke_async(&mut self.conn()).await?)
    }

    /// Indexes every instance record (paged over the id index), then marks the index built.
    /// Safe to run any number of times, from several processes at once and while records
    /// change (a record that changed meanwhile is read and indexed again).
    /// Returns the number of records read.
    pub async fn build_label_index(&self) -> Result<usize, BusError> {
        let mut after = None;
        let mut read = 0;
        loop {
            let (page, last) = self
                .page_of(self.keys.instance_index(), after, BUILD_PAGE)
                .await?;
            let Some(last) = last else { break };
            read += page.len();
            self.index_records(&page).await?;
            after = Some(last);
        }
        self.conn()
            .set::<_, _, ()>(self.keys.labels_built(), now().millis())
            .await?;
        self.label_index.built.store(true, Ordering::Relaxed);
        Ok(read)
    }

    /// Starts [`Store::build_label_index`] in the background unless this process knows the
    /// index is built or is building it already. A failed build is logged; the next call
    /// starts another.
    pub fn start_label_index(&self) {
        if self.label_index.built.load(Ordering::Relaxed)
            || self.label_index.building.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            let ready = store.label_index_built().await;
            if !matches!(ready, Ok(true)) {
                match store.build_label_index().await {
                    Ok(records) => tracing::info!(message = "label index built", records),
                    Err(error) => {
                        tracing::warn!(message = "label index not built; retried by the next filtered list", %error)
                    }
                }
            }
            store.label_index.building.store(false, Ordering::Release);
        });
    }

    /// Whether the label index covers every record (remembered once seen).
    pub async fn label_index_built(&self) -> Result<bool, BusError> {
        if self.label_index.built.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let built: bool = self.conn().exists(self.keys.labels_built()).await?;
        if built {
            self.label_index.built.store(true, Ordering::Relaxed);
        }
        Ok(built)
    }

    /// One page of the instances of `scope` carrying every label of `labels`, read from the
    /// label index: the smallest of the labels' sets, paged by id after `after` like
    /// [`Store::instances_page`] (`count` ids), each candidate checked against its record.
    /// Returns the matching records and the last id read (`None`: the set is exhausted), or
    /// `None` while the index is not built yet (it is then started; read the id index).
    pub async fn labeled_instances_page(
        &self,
        scope: LabelScope<'_>,
        labels: &[(String, String)],
        after: Option<Uuid>,
        count: usize,
    ) -> Result<Option<(Vec<Instance>, Option<Uuid>)>, BusError> {
        if !self.label_index_built().await? {
            self.start_label_index();
            return Ok(None);
        }
        let sets: Vec<String> = labels
            .iter()
            .map(|(k, v)| self.keys.label_index(scope, k, v))
            .collect();
        let set = match sets.as_slice() {
            [] => match scope {
                LabelScope::All => self.keys.instance_index(),
                LabelScope::Tenant(tenant) => self.keys.tenant_instances(tenant),
            },
            [one] => one.clone(),
            _ => {
                // Intersect by walking the smallest set; the record check does the rest.
                let mut pipe = redis::pipe();
                for set in &sets {
                    pipe.zcard(set);
                }
                let sizes: Vec<u64> = pipe.query_async(&mut self.conn()).await?;
                match sets.iter().zip(sizes).min_by_key(|(_, size)| *size) {
                    Some((_, 0)) | None => return Ok(Some((Vec::new(), None))),
                    Some((set, _)) => set.clone(),
                }
            }
        };
        let (mut page, last) = self.page_of(set, after, count).await?;
        page.retain(|inst| {
            labels
                .iter()
                .all(|(k, v)| inst.spec.labels.get(k) == Some(v))
                && match scope {
                    LabelScope::All => true,
                    LabelScope::Tenant(tenant) => inst.tenant == tenant,
                }
        });
        Ok(Some((page, last)))
    }
}
