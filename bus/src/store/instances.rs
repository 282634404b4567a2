//! Instance records: `inst:<id>` hashes, each tenant's name → id map, the id index of all
//! instances and one per tenant (a tenant's list reads only its own). Every write of a
//! record's labels (create, spec change, delete) keeps the label index ([`super::labels`])
//! around it: memberships added before the write, removed after.
//!
//! Hash fields: `tenant` (absent on records older than tenants: the default one), `spec` (JSON `InstanceSpec`), `state`, `generation`, `created`, `updated`,
//! `fence` (the newest fencing token handed out), `runtime` (JSON `RuntimeInfo`, written by
//! commands under their fencing token) and `observed` (JSON `Observed`, the platform's own
//! view written by watchers, never replaced by an older one: `observed-at`; shown as
//! `runtime.observed`). Keeping `observed` in its own field
//! means a watcher never overwrites what a command wrote, and needs no fencing token.

use std::collections::HashMap;

use draas_protocol::auth::DEFAULT_TENANT;
use draas_protocol::{
    Instance, InstanceSpec, InstanceState, Observed, Platform, RuntimeInfo, Timestamp,
};
use redis::AsyncCommands;
use uuid::Uuid;

use super::Store;
use crate::BusError;
use crate::clock::now;
use crate::scripts;

/// An instance plus the fencing token stored with it.
#[derive(Debug, Clone)]
pub struct StoredInstance {
    pub instance: Instance,
    pub fence: u64,
    /// The command whose execution made the last state change, if a command did.
    pub last_command: Option<Uuid>,
}

/// What `create_instance` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    NameTaken { by: Uuid },
}

/// What a compare-and-set state change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Moved; carries the state it moved from.
    Done(InstanceState),
    /// The instance was not in the expected state; carries the actual one.
    WrongState(InstanceState),
    /// A newer fencing token exists: the caller no longer owns the instance.
    Fenced(u64),
    Missing,
}

impl Store {
    /// Creates an instance record if its name is free in its tenant.
    pub async fn create_instance(&self, inst: &Instance) -> Result<CreateOutcome, BusError> {
        let mut conn = self.conn();
        let names = self.keys.tenant_names(&inst.tenant);
        let id = inst.id.to_string();
        let claimed: bool = conn.hset_nx(&names, &inst.spec.name, &id).await?;
        if !claimed {
            let holder: Option<String> = conn.hget(&names, &inst.spec.name).await?;
            let holder = holder.and_then(|h| h.parse::<Uuid>().ok());
            match holder {
                Some(by) if conn.exists::<_, bool>(self.keys.instance(by)).await? => {
                    return Ok(CreateOutcome::NameTaken { by });
                }
                // The name points at a record that no longer exists (a crash between the two
                // writes of an earlier create or delete): take it over.
                _ => {
                    conn.hset::<_, _, _, ()>(&names, &inst.spec.name, &id)
                        .await?
                }
            }
        }
        // Label memberships first: the index may hold more than the records, never less.
        if !inst.spec.labels.is_empty()
            && let Err(error) = self
                .prepare_labels(
                    &inst.tenant,
                    inst.id,
                    inst.generation,
                    &inst.spec.labels,
                    true,
                )
                .await
        {
            // No record was written: take back what one scope may have added.
            let _ = self.drop_labels(&inst.tenant, inst.id).await;
            return Err(error);
        }
        let fields = instance_fields(inst)?;
        // The id index entries before the record: whoever sees the record finds it in its
        // tenant's index (the label index of a tenant checks that), and a list that meets the
        // id first skips it as it skips a vanished record.
        redis::pipe()
            .zadd(self.keys.tenant_instances(&inst.tenant), &id, 0)
            .ignore()
            .zadd(self.keys.instance_index(), &id, 0)
            .ignore()
            .hset_multiple(self.keys.instance(inst.id), &fields)
            .ignore()
            .hincr(self.keys.platform_counts(), inst.spec.platform.as_str(), 1)
            .ignore()
            .hincr(
                self.keys.state_counts(),
                format!("{}:{}", inst.spec.platform.as_str(), inst.state.as_str()),
                1,
            )
            .ignore()
            .exec_async(&mut conn)
            .await?;
        Ok(CreateOutcome::Created)
    }

    /// Reads one instance.
    pub async fn instance(&self, id: Uuid) -> Result<Option<StoredInstance>, BusError> {
        let key = self.keys.instance(id);
        let fields: HashMap<String, String> = self.conn().hgetall(&key).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        parse_instance(&key, id, &fields).map(Some)
    }

    /// The id a name maps to in `tenant`, if any.
    pub async fn instance_id_by_name(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<Uuid>, BusError> {
        let id: Option<String> = self
            .conn()
            .hget(self.keys.tenant_names(tenant), name)
            .await?;
        Ok(id.and_then(|s| s.parse().ok()))
    }

    /// One page of the id index after `after`, with the records, in id order. Ids whose record
    /// vanished in between are skipped. Returns the records and the last id scanned.
    pub async fn instances_page(
        &self,
        after: Option<Uuid>,
        count: usize,
    ) -> Result<(Vec<Instance>, Option<Uuid>), BusError> {
        self.page_of(self.keys.instance_index(), after, count).await
    }

    /// [`Store::instances_page`] over one tenant's own index: other tenants' records are
    /// never read.
    pub async fn tenant_instances_page(
        &self,
        tenant: &str,
        after: Option<Uuid>,
        count: usize,
    ) -> Result<(Vec<Instance>, Option<Uuid>), BusError> {
        self.page_of(self.keys.tenant_instances(tenant), after, count)
            .await
    }

    /// [`Store::instances_page`] with each record's fencing token and last command (the
    /// workers' controller judges by them).
    pub async fn stored_instances_page(
        &self,
        after: Option<Uuid>,
        count: usize,
    ) -> Result<(Vec<StoredInstance>, Option<Uuid>), BusError> {
        self.stored_page_of(self.keys.instance_index(), after, count)
            .await
    }

    pub(super) async fn page_of(
        &self,
        index: String,
        after: Option<Uuid>,
        count: usize,
    ) -> Result<(Vec<Instance>, Option<Uuid>), BusError> {
        let (stored, last) = self.stored_page_of(index, after, count).await?;
        Ok((stored.into_iter().map(|s| s.instance).collect(), last))
    }

    async fn stored_page_of(
        &self,
        index: String,
        after: Option<Uuid>,
        count: usize,
    ) -> Result<(Vec<StoredInstance>, Option<Uuid>), BusError> {
        let after = after.map(|id| id.to_string());
        let ids = self.lex_page(&index, after.as_deref(), count).await?;
        let ids: Vec<Uuid> = ids.iter().filter_map(|s| s.parse().ok()).collect();
        if ids.is_empty() {
            return Ok((Vec::new(), None));
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(self.keys.instance(*id));
        }
        let records: Vec<HashMap<String, String>> = pipe.query_async(&mut self.conn()).await?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, fields) in ids.iter().zip(records) {
            if !fields.is_empty() {
                out.push(parse_instance(&self.keys.instance(*id), *id, &fields)?);
            }
        }
        Ok((out, ids.last().copied()))
    }

    /// Replaces the spec if the generation is still `expected`; returns the new generation.
    /// `Ok(None)` means the generation moved on (or the record is gone).
    pub async fn update_spec(
        &self,
        id: Uuid,
        tenant: &str,
        expected: u64,
        spec: &InstanceSpec,
        old_name: &str,
    ) -> Result<Option<u64>, BusError> {
        let mut conn = self.conn();
        let names = self.keys.tenant_names(tenant);
        if spec.name != old_name {
            let claimed: bool = conn.hset_nx(&names, &spec.name, id.to_string()).await?;
            if !claimed {
                return Ok(None);
            }
        }
        let json = serde_json::to_string(spec).map_err(|e| BusError::corrupt("spec", e))?;
        let generation = expected + 1;
        let unsettled = match self
            .prepare_labels(tenant, id, generation, &spec.labels, false)
            .await
        {
            Ok(unsettled) => unsettled,
            Err(error) => {
                if spec.name != old_name {
                    self.release_name(tenant, &spec.name, id).await?;
                }
                return Err(error);
            }
        };
        let result: i64 = scripts::UPDATE_SPEC
            .key(self.keys.instance(id))
            .arg(expected)
            .arg(json)
            .arg(now().millis())
            .invoke_async(&mut conn)
            .await?;
        if result < 0 {
            // The prepared memberships may not be the record's: index it as it is (or drop
            // it, gone). Extra memberships are harmless, so a failure here is only logged.
            if let Err(error) = self.reindex_labels(tenant, id).await {
                tracing::warn!(message = "label index not settled", instance = %id, %error);
            }
            if spec.name != old_name {
                self.release_name(tenant, &spec.name, id).await?;
            }
            return Ok(None);
        }
        if unsettled {
            self.settle_labels(tenant, id, result as u64, &spec.labels)
                .await;
        }
        if spec.name != old_name {
            self.release_name(tenant, old_name, id).await?;
        }
        Ok(Some(result as u64))
    }

    /// Moves one instance of `platform` from state `from` to `to` in the per-state counts.
    async fn count_move(
        &self,
        platform: &str,
        from: &str,
        to: InstanceState,
    ) -> Result<(), BusError> {
        let key = self.keys.state_counts();
        redis::pipe()
            .hincr(&key, format!("{platform}:{from}"), -1)
            .ignore()
            .hincr(&key, format!("{platform}:{}", to.as_str()), 1)
            .ignore()
            .exec_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Instance records by `<platform>:<state>`, from the counts every change keeps.
    pub async fn state_counts(&self) -> Result<HashMap<String, i64>, BusError> {
        Ok(self.conn().hgetall(self.keys.state_counts()).await?)
    }

    /// Instance count per platform.
    pub async fn instance_counts(&self) -> Result<HashMap<String, i64>, BusError> {
        Ok(self.conn().hgetall(self.keys.platform_counts()).await?)
    }

    /// Hands out a new fencing token for the instance; `None` if it does not exist.
    pub async fn fence(&self, id: Uuid) -> Result<Option<u64>, BusError> {
        let token: i64 = scripts::FENCE
            .key(self.keys.instance(id))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(u64::try_from(token).ok())
    }

    /// Compare-and-set state change. `token` 0 skips the fencing check (used by monitors that
    /// observe the platform rather than execute a command).
    pub async fn transition(
        &self,
        id: Uuid,
        expected: InstanceState,
        to: InstanceState,
        token: u64,
        runtime: Option<&RuntimeInfo>,
    ) -> Result<Transition, BusError> {
        self.transition_by(id, expected, to, token, runtime, None)
            .await
    }

    /// A state change made by `command`; the record remembers it as the last command that
    /// moved the instance, so a later attempt of the same command can tell its own progress.
    pub async fn transition_by(
        &self,
        id: Uuid,
        expected: InstanceState,
        to: InstanceState,
        token: u64,
        runtime: Option<&RuntimeInfo>,
        command: Option<Uuid>,
    ) -> Result<Transition, BusError> {
        let runtime = match runtime {
            Some(r) => runtime_json(r)?,
            None => String::new(),
        };
        let reply: Vec<String> = scripts::TRANSITION
            .key(self.keys.instance(id))
            .arg(expected.as_str())
            .arg(to.as_str())
            .arg(token)
            .arg(now().millis())
            .arg(runtime)
            .arg(command.map(|c| c.to_string()).unwrap_or_default())
            .invoke_async(&mut self.conn())
            .await?;
        let key = || self.keys.instance(id);
        let mut reply = reply.into_iter();
        let status = reply.next().unwrap_or_default();
        let detail = reply.next().unwrap_or_default();
        let platform = reply.next().unwrap_or_default();
        let state =
            |s: &str| InstanceState::parse(s).ok_or_else(|| BusError::corrupt(key(), "state"));
        if status == "ok" {
            // The per-state counts follow (one more round trip; a process that dies between
            // the two leaves them off by one, which the next restart of the API does not
            // repair: they are gauges for operators, not inputs to decisions).
            if !platform.is_empty()
                && let Err(error) = self.count_move(&platform, &detail, to).await
            {
                tracing::warn!(message = "state counts not updated", instance = %id, %error);
            }
            // The tenant's running set follows the state (max-running is checked against it).
            // Bookkeeping only: the state change stands even if this write fails; the next
            // change of the instance (or its delete) puts the set right.
            if let Err(error) = self.track_running(id, state(&detail)?, to).await {
                tracing::warn!(message = "running set not updated", instance = %id, %error);
            }
        }
        Ok(match status.as_str() {
            "ok" => Transition::Done(state(&detail)?),
            "state" => Transition::WrongState(state(&detail)?),
            "fenced" => Transition::Fenced(detail.parse().unwrap_or(0)),
            _ => Transition::Missing,
        })
    }

    /// Writes runtime info while `token` is current. Returns false when fenced off or gone.
    pub async fn set_runtime(
        &self,
        id: Uuid,
        token: u64,
        runtime: &RuntimeInfo,
    ) -> Result<bool, BusError> {
        let json = runtime_json(runtime)?;
        let written: i64 = scripts::SET_RUNTIME
            .key(self.keys.instance(id))
            .arg(token)
            .arg(json)
            .arg(now().millis())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(written == 1)
    }

    /// Records what the platform says about the instance's workload. Returns false when the
    /// instance no longer exists or a newer observation is stored (nothing is written then).
    pub async fn set_observed(&self, id: Uuid, observed: &Observed) -> Result<bool, BusError> {
        let json = serde_json::to_string(observed).map_err(|e| BusError::corrupt("observed", e))?;
        let written: i64 = scripts::SET_OBSERVED
            .key(self.keys.instance(id))
            .arg(json)
            .arg(observed.at.millis())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(written == 1)
    }

    /// Drops the record, its index entry and its name.
    pub async fn delete_instance(
        &self,
        id: Uuid,
        name: &str,
        platform: Platform,
    ) -> Result<(), BusError> {
        let mut conn = self.conn();
        let tenant = self.instance_tenant(id).await?;
        let (state, removed): (Option<String>, i64) = redis::pipe()
            .hget(self.keys.instance(id), "state")
            .del(self.keys.instance(id))
            .zrem(self.keys.instance_index(), id.to_string())
            .ignore()
            .zrem(self.keys.tenant_instances(&tenant), id.to_string())
            .ignore()
            .query_async(&mut conn)
            .await?;
        if removed == 1 {
            let state = state.unwrap_or_default();
            redis::pipe()
                .hincr(self.keys.platform_counts(), platform.as_str(), -1)
                .ignore()
                .hincr(
                    self.keys.state_counts(),
                    format!("{}:{state}", platform.as_str()),
                    -1,
                )
                .ignore()
                .exec_async(&mut conn)
                .await?;
        }
        // Label memberships go after the record (a concurrent index of the record checks
        // that it still exists once it has indexed it).
        self.drop_labels(&tenant, id).await?;
        // The tenant's quota count goes with the record, and so does any running mark a failed
        // bookkeeping write may have left. Both are idempotent, so a delete resumed after a
        // crash between the DEL and here still gives them back.
        self.release_instance(&tenant, id).await?;
        self.untrack_running(&tenant, id).await?;
        self.release_name(&tenant, name, id).await
    }

    async fn release_name(&self, tenant: &str, name: &str, id: Uuid) -> Result<(), BusError> {
        let _: i64 = scripts::RELEASE_NAME
            .key(self.keys.tenant_names(tenant))
            .arg(name)
            .arg(id.to_string())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }
}

fn instance_fields(inst: &Instance) -> Result<Vec<(&'static str, String)>, BusError> {
    let spec = serde_json::to_string(&inst.spec).map_err(|e| BusError::corrupt("spec", e))?;
    let runtime =
        serde_json::to_string(&inst.runtime).map_err(|e| BusError::corrupt("runtime", e))?;
    Ok(vec![
        ("id", inst.id.to_string()),
        ("tenant", inst.tenant.clone()),
        ("platform", inst.spec.platform.as_str().to_owned()),
        ("spec", spec),
        ("state", inst.state.as_str().to_owned()),
        ("generation", inst.generation.to_string()),
        ("created", inst.created_at.millis().to_string()),
        ("updated", inst.updated_at.millis().to_string()),
        ("fence", "0".to_owned()),
        ("runtime", runtime),
    ])
}

/// The `runtime` field: everything but `observed`, which lives in a field of its own.
fn runtime_json(runtime: &RuntimeInfo) -> Result<String, BusError> {
    let mut value = serde_json::to_value(runtime).map_err(|e| BusError::corrupt("runtime", e))?;
    if let Some(map) = value.as_object_mut() {
        map.remove("observed");
    }
    Ok(value.to_string())
}

fn parse_instance(
    key: &str,
    id: Uuid,
    f: &HashMap<String, String>,
) -> Result<StoredInstance, BusError> {
    let get = |field: &str| {
        f.get(field)
            .ok_or_else(|| BusError::corrupt(key, format!("no `{field}`")))
    };
    let num = |field: &str| -> Result<u64, BusError> {
        get(field)?
            .parse()
            .map_err(|_| BusError::corrupt(key, format!("bad `{field}`")))
    };
    let spec: InstanceSpec = serde_json::from_str(get("spec")?)
        .map_err(|e| BusError::corrupt(key, format!("spec: {e}")))?;
    let runtime: RuntimeInfo = match f.get("runtime") {
        Some(r) => {
            serde_json::from_str(r).map_err(|e| BusError::corrupt(key, format!("runtime: {e}")))?
        }
        None => RuntimeInfo::default(),
    };
    let mut runtime = runtime;
    if let Some(observed) = f.get("observed") {
        runtime.observed = Some(
            serde_json::from_str(observed)
                .map_err(|e| BusError::corrupt(key, format!("observed: {e}")))?,
        );
    }
    let state =
        InstanceState::parse(get("state")?).ok_or_else(|| BusError::corrupt(key, "bad `state`"))?;
    Ok(StoredInstance {
        instance: Instance {
            id,
            tenant: f
                .get("tenant")
                .cloned()
                .unwrap_or_else(|| DEFAULT_TENANT.to_owned()),
            spec,
            state,
            generation: num("generation")?,
            created_at: Timestamp(num("created")?),
            updated_at: Timestamp(num("updated")?),
            runtime,
        },
        fence: f.get("fence").and_then(|s| s.parse().ok()).unwrap_or(0),
        last_command: f.get("command").and_then(|s| s.parse().ok()),
    })
}
