//! The label index (`bus/src/store/labels.rs`) against a real Redis: create, spec change and
//! delete keep every tenant's and the every-tenant sets exactly the records' labels (empty sets
//! and bookkeeping entries gone), racing spec changes leave the winner's labels, a long random
//! walk matches a full scan, and records written before the index are found, through the store
//! and through the API, before and after the background build.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{ApiNode, RedisServer, fresh_keys, wait_until};
use draas_bus::{Store, connect};
use draas_protocol::keys::LabelScope;
use draas_protocol::{Instance, InstanceSpec, InstanceState, Keyspace, Platform, RuntimeInfo};
use serde_json::{Value, json};
use uuid::Uuid;

fn instance(tenant: &str, name: &str, labels: &[(&str, &str)]) -> Instance {
    let now = draas_bus::clock::now();
    Instance {
        id: Uuid::now_v7(),
        tenant: tenant.to_owned(),
        spec: spec(name, labels),
        state: InstanceState::Created,
        generation: 1,
        created_at: now,
        updated_at: now,
        runtime: RuntimeInfo::default(),
    }
}

fn spec(name: &str, labels: &[(&str, &str)]) -> InstanceSpec {
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    serde_json::from_value(
        json!({"name": name, "platform": "process", "config": {}, "labels": labels}),
    )
    .expect("a valid spec")
}

async fn setup() -> anyhow::Result<(RedisServer, Store, Keyspace)> {
    let redis = RedisServer::start()?;
    let keys = fresh_keys("labels");
    let store = Store::new(connect::shared(&redis.url).await?, keys.clone());
    Ok((redis, store, keys))
}

/// Members of a sorted set, in order.
async fn members(store: &Store, key: &str) -> anyhow::Result<Vec<String>> {
    Ok(redis::cmd("ZRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .query_async(&mut store.conn())
        .await?)
}

/// Every label index key (sets and bookkeeping) of the keyspace.
async fn label_keys(store: &Store, keys: &Keyspace) -> anyhow::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for pattern in [
        format!("{}:*:label:*", keys.prefix()),
        format!("{}:*:labeled", keys.prefix()),
    ] {
        let found: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut store.conn())
            .await?;
        out.extend(found);
    }
    Ok(out)
}

/// Every id the label index lists for `labels` in `scope`, paged `count` at a time.
async fn listed(
    store: &Store,
    scope: LabelScope<'_>,
    labels: &[(&str, &str)],
    count: usize,
) -> anyhow::Result<Vec<Uuid>> {
    let labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let (page, last) = store
            .labeled_instances_page(scope, &labels, after, count)
            .await?
            .expect("the index is built");
        out.extend(page.iter().map(|i| i.id));
        match last {
            Some(last) => after = Some(last),
            None => return Ok(out),
        }
    }
}

/// Every record, read through the id index.
async fn all_records(store: &Store) -> anyhow::Result<Vec<Instance>> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let (page, last) = store.instances_page(after, 100).await?;
        out.extend(page);
        match last {
            Some(last) => after = Some(last),
            None => return Ok(out),
        }
    }
}

fn ids(list: &[&Instance]) -> Vec<String> {
    list.iter().map(|i| i.id.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_change_and_delete_keep_the_index_exact() -> anyhow::Result<()> {
    let (_redis, store, keys) = setup().await?;
    assert_eq!(store.build_label_index().await?, 0);
    let a = instance("acme", "a", &[("tier", "gold"), ("zone", "x")]);
    let b = instance("acme", "b", &[("tier", "gold")]);
    let c = instance("globex", "c", &[("tier", "gold")]);
    let bare = instance("acme", "bare", &[]);
    for inst in [&a, &b, &c, &bare] {
        store.create_instance(inst).await?;
    }
    let acme = LabelScope::Tenant("acme");
    let globex = LabelScope::Tenant("globex");
    let all = LabelScope::All;
    let gold = |scope| keys.label_index(scope, "tier", "gold");
    assert_eq!(members(&store, &gold(acme)).await?, ids(&[&a, &b]));
    assert_eq!(members(&store, &gold(globex)).await?, ids(&[&c]));
    assert_eq!(members(&store, &gold(all)).await?, ids(&[&a, &b, &c]));
    assert_eq!(
        members(&store, &keys.label_index(all, "zone", "x")).await?,
        ids(&[&a])
    );
    // An instance without labels has no bookkeeping entry at all.
    let bookkept: Vec<String> = redis::cmd("HKEYS")
        .arg(keys.labeled(all))
        .query_async(&mut store.conn())
        .await?;
    assert_eq!(
        bookkept.into_iter().collect::<BTreeSet<_>>(),
        ids(&[&a, &b, &c]).into_iter().collect()
    );

    // A change of labels moves the memberships; a set left empty is gone.
    let moved = store
        .update_spec(a.id, "acme", 1, &spec("a", &[("tier", "silver")]), "a")
        .await?;
    assert_eq!(moved, Some(2));
    assert_eq!(members(&store, &gold(acme)).await?, ids(&[&b]));
    assert_eq!(members(&store, &gold(all)).await?, ids(&[&b, &c]));
    for scope in [acme, all] {
        assert_eq!(
            members(&store, &keys.label_index(scope, "tier", "silver")).await?,
            ids(&[&a])
        );
        let zone: bool = redis::cmd("EXISTS")
            .arg(keys.label_index(scope, "zone", "x"))
            .query_async(&mut store.conn())
            .await?;
        assert!(!zone, "an emptied set lingers in {scope:?}");
    }
    // A change that loses its compare-and-set leaves the record's labels, not its own.
    let stale = store
        .update_spec(a.id, "acme", 1, &spec("a", &[("tier", "bronze")]), "a")
        .await?;
    assert_eq!(stale, None);
    assert!(
        !label_keys(&store, &keys)
            .await?
            .iter()
            .any(|k| k.ends_with("tier=bronze")),
        "a lost change left memberships"
    );
    // A label change on an instance that had none, and one that removes them all.
    store
        .update_spec(
            bare.id,
            "acme",
            1,
            &spec("bare", &[("tier", "gold")]),
            "bare",
        )
        .await?;
    assert_eq!(members(&store, &gold(acme)).await?, ids(&[&b, &bare]));
    store
        .update_spec(bare.id, "acme", 2, &spec("bare", &[]), "bare")
        .await?;
    assert_eq!(members(&store, &gold(acme)).await?, ids(&[&b]));

    // Lists: scoped, ordered by id, each candidate checked against its record.
    assert_eq!(
        listed(&store, all, &[("tier", "gold")], 1).await?,
        vec![b.id, c.id]
    );
    assert_eq!(
        listed(&store, acme, &[("tier", "gold")], 10).await?,
        vec![b.id]
    );
    assert_eq!(
        listed(&store, globex, &[("tier", "gold")], 10).await?,
        vec![c.id]
    );
    assert_eq!(
        listed(&store, globex, &[("tier", "silver")], 10).await?,
        Vec::<Uuid>::new()
    );
    // A stray membership (a writer that died between its two steps) is not listed.
    let _: () = redis::cmd("ZADD")
        .arg(gold(all))
        .arg(0)
        .arg(a.id.to_string())
        .query_async(&mut store.conn())
        .await?;
    assert_eq!(
        listed(&store, all, &[("tier", "gold")], 2).await?,
        vec![b.id, c.id]
    );
    let _: () = redis::cmd("ZREM")
        .arg(gold(all))
        .arg(a.id.to_string())
        .query_async(&mut store.conn())
        .await?;

    // Deletes take every membership and bookkeeping entry with them.
    for inst in [&a, &b, &c, &bare] {
        let name = store
            .instance(inst.id)
            .await?
            .expect("exists")
            .instance
            .spec
            .name;
        store
            .delete_instance(inst.id, &name, Platform::Process)
            .await?;
    }
    assert_eq!(label_keys(&store, &keys).await?, BTreeSet::new());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_delete_drops_the_tenants_memberships_too() -> anyhow::Result<()> {
    let (_redis, store, keys) = setup().await?;
    store.build_label_index().await?;
    let a = instance("acme", "a", &[("tier", "gold")]);
    store.create_instance(&a).await?;
    // The first attempt removed the record and died; the retry no longer knows the tenant.
    let _: () = redis::cmd("DEL")
        .arg(keys.instance(a.id))
        .query_async(&mut store.conn())
        .await?;
    store.delete_instance(a.id, "a", Platform::Process).await?;
    assert_eq!(label_keys(&store, &keys).await?, BTreeSet::new());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_spec_changes_leave_the_winners_labels() -> anyhow::Result<()> {
    let (_redis, store, keys) = setup().await?;
    store.build_label_index().await?;
    let inst = instance("acme", "raced", &[("v", "start")]);
    store.create_instance(&inst).await?;
    let mut generation = 1;
    for round in 0..15 {
        let mut tasks = Vec::new();
        for writer in 0..6 {
            let store = store.clone();
            let id = inst.id;
            tasks.push(tokio::spawn(async move {
                let value = format!("r{round}w{writer}");
                let spec = spec("raced", &[("v", &value), ("round", &round.to_string())]);
                store
                    .update_spec(id, "acme", generation, &spec, "raced")
                    .await
            }));
        }
        // An index build (as a starting API node runs) races the writers too.
        let builder = {
            let store = store.clone();
            tokio::spawn(async move { store.build_label_index().await })
        };
        let mut won = 0;
        for task in tasks {
            if task.await??.is_some() {
                won += 1;
            }
        }
        builder.await??;
        assert_eq!(won, 1, "round {round}: one writer wins");
        generation += 1;
        let record = store.instance(inst.id).await?.expect("exists").instance;
        assert_eq!(record.generation, generation);
        let value = record.spec.labels["v"].clone();
        for scope in [LabelScope::Tenant("acme"), LabelScope::All] {
            let sets: BTreeSet<String> = label_keys(&store, &keys)
                .await?
                .into_iter()
                .filter(|k| k.starts_with(&keys.label_index_prefix(scope)))
                .collect();
            let expected: BTreeSet<String> = [
                keys.label_index(scope, "v", &value),
                keys.label_index(scope, "round", &round.to_string()),
            ]
            .into();
            assert_eq!(sets, expected, "round {round}, {scope:?}");
            assert_eq!(
                listed(&store, scope, &[("v", &value)], 10).await?,
                vec![inst.id]
            );
        }
    }
    Ok(())
}

/// A small deterministic generator (xorshift64*), so a failing walk can be replayed.
struct Walk(u64);

impl Walk {
    fn next(&mut self, below: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % below
    }

    fn labels(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for k in ["a", "b", "c"] {
            if self.next(3) > 0 {
                out.push((k.to_owned(), (1 + self.next(3)).to_string()));
            }
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_walk_lists_what_a_full_scan_finds() -> anyhow::Result<()> {
    let (_redis, store, keys) = setup().await?;
    store.build_label_index().await?;
    let mut walk = Walk(0x9e37_79b9_7f4a_7c15);
    let tenants = ["acme", "globex"];
    let mut live: Vec<(Uuid, String, String)> = Vec::new();
    for step in 0..400 {
        match walk.next(10) {
            0..=3 => {
                let tenant = tenants[walk.next(2)];
                let labels = walk.labels();
                let pairs: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let inst = instance(tenant, &format!("i{step}"), &pairs);
                store.create_instance(&inst).await?;
                live.push((inst.id, tenant.to_owned(), inst.spec.name.clone()));
            }
            4..=7 if !live.is_empty() => {
                let (id, tenant, name) = live[walk.next(live.len())].clone();
                let current = store.instance(id).await?.expect("live").instance;
                let labels = walk.labels();
                let pairs: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let changed = store
                    .update_spec(id, &tenant, current.generation, &spec(&name, &pairs), &name)
                    .await?;
                assert!(changed.is_some(), "step {step}: nothing else writes");
            }
            _ if !live.is_empty() => {
                let (id, _, name) = live.swap_remove(walk.next(live.len()));
                store.delete_instance(id, &name, Platform::Process).await?;
            }
            _ => {}
        }
        if step % 50 != 49 {
            continue;
        }
        // Every label and pair of labels, in every scope, against the records themselves;
        // and the sets hold exactly the matching ids (no stray or empty set).
        let records = all_records(&store).await?;
        let mut selectors: Vec<Vec<(&str, &str)>> = Vec::new();
        for k in ["a", "b", "c"] {
            for v in ["1", "2", "3"] {
                selectors.push(vec![(k, v)]);
                selectors.push(vec![(k, v), ("b", "2")]);
            }
        }
        let mut expected_keys = BTreeSet::new();
        for scope in [
            LabelScope::All,
            LabelScope::Tenant("acme"),
            LabelScope::Tenant("globex"),
        ] {
            for selector in &selectors {
                let truth: Vec<Uuid> = records
                    .iter()
                    .filter(|i| match scope {
                        LabelScope::All => true,
                        LabelScope::Tenant(t) => i.tenant == t,
                    })
                    .filter(|i| {
                        selector
                            .iter()
                            .all(|(k, v)| i.spec.labels.get(*k).map(String::as_str) == Some(*v))
                    })
                    .map(|i| i.id)
                    .collect();
                let count = 1 + walk.next(7);
                assert_eq!(
                    listed(&store, scope, selector, count).await?,
                    truth,
                    "step {step}, {scope:?}, {selector:?}, pages of {count}"
                );
                if let [(k, v)] = selector.as_slice() {
                    let set = keys.label_index(scope, k, v);
                    let in_set: Vec<String> = members(&store, &set).await?;
                    let truth: Vec<String> = truth.iter().map(Uuid::to_string).collect();
                    assert_eq!(in_set, truth, "step {step}: {set}");
                    if !truth.is_empty() {
                        expected_keys.insert(set);
                    }
                }
            }
            if records.iter().any(|i| {
                !i.spec.labels.is_empty()
                    && match scope {
                        LabelScope::All => true,
                        LabelScope::Tenant(t) => i.tenant == t,
                    }
            }) {
                expected_keys.insert(keys.labeled(scope));
            }
        }
        assert_eq!(
            label_keys(&store, &keys).await?,
            expected_keys,
            "step {step}"
        );
    }
    Ok(())
}

/// Writes what an older version wrote for an instance: the record and its id indexes, and no
/// label index.
async fn legacy_record(store: &Store, keys: &Keyspace, inst: &Instance) -> anyhow::Result<()> {
    legacy_record_of(store, keys, inst, true).await?;
    redis::pipe()
        .zadd(keys.tenant_instances(&inst.tenant), inst.id.to_string(), 0)
        .hset(
            keys.tenant_names(&inst.tenant),
            &inst.spec.name,
            inst.id.to_string(),
        )
        .exec_async(&mut store.conn())
        .await?;
    Ok(())
}

/// The record (with its `tenant` field or, older than tenants, without) and the global id
/// index entry.
async fn legacy_record_of(
    store: &Store,
    keys: &Keyspace,
    inst: &Instance,
    tenant_field: bool,
) -> anyhow::Result<()> {
    let id = inst.id.to_string();
    let mut fields = vec![
        ("id", id.clone()),
        ("platform", "process".to_owned()),
        ("spec", serde_json::to_string(&inst.spec)?),
        ("state", "created".to_owned()),
        ("generation", "1".to_owned()),
        ("created", inst.created_at.millis().to_string()),
        ("updated", inst.updated_at.millis().to_string()),
        ("fence", "0".to_owned()),
    ];
    if tenant_field {
        fields.push(("tenant", inst.tenant.clone()));
    }
    redis::pipe()
        .hset_multiple(keys.instance(inst.id), &fields)
        .zadd(keys.instance_index(), &id, 0)
        .exec_async(&mut store.conn())
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_older_than_the_index_are_listed() -> anyhow::Result<()> {
    let (redis, store, keys) = setup().await?;
    let mut old = Vec::new();
    for n in 0..30 {
        let tier = if n % 3 == 0 { "gold" } else { "silver" };
        let inst = instance("default", &format!("old{n}"), &[("tier", tier)]);
        legacy_record(&store, &keys, &inst).await?;
        old.push(inst);
    }
    // Older than tenants: no `tenant` field and in no tenant's id index, so only a cluster
    // administrator's list shows it, filtered or not.
    let untenanted = instance("default", "untenanted", &[("tier", "gold")]);
    legacy_record_of(&store, &keys, &untenanted, false).await?;
    let gold: Vec<String> = old
        .iter()
        .filter(|i| i.spec.labels["tier"] == "gold")
        .map(|i| i.id.to_string())
        .collect();
    let mut every_gold = gold.clone();
    every_gold.push(untenanted.id.to_string());
    // Not built: the store says so (and starts the build), the caller reads the id index.
    let labels = [("tier".to_owned(), "gold".to_owned())];
    let unbuilt = store
        .labeled_instances_page(LabelScope::All, &labels, None, 100)
        .await?;
    assert!(unbuilt.is_none(), "an unbuilt index must not answer");
    wait_until(|| async {
        store
            .labeled_instances_page(LabelScope::All, &labels, None, 100)
            .await
            .ok()
            .flatten()
    })
    .await?;
    let built = listed(&store, LabelScope::All, &[("tier", "gold")], 4).await?;
    assert_eq!(
        built.iter().map(Uuid::to_string).collect::<Vec<_>>(),
        every_gold,
        "the build indexed the old records"
    );
    let tenant_gold = |store: Store| async move {
        let ids = listed(
            &store,
            LabelScope::Tenant("default"),
            &[("tier", "gold")],
            4,
        )
        .await?;
        anyhow::Ok(ids.iter().map(Uuid::to_string).collect::<Vec<_>>())
    };
    assert_eq!(tenant_gold(store.clone()).await?, gold);
    // A label change of the untenanted record keeps it out of the default tenant's sets.
    store
        .update_spec(
            untenanted.id,
            "default",
            1,
            &spec("untenanted", &[("tier", "gold"), ("zone", "x")]),
            "untenanted",
        )
        .await?
        .expect("changed");
    assert_eq!(tenant_gold(store.clone()).await?, gold);
    assert_eq!(
        listed(&store, LabelScope::All, &[("zone", "x")], 4).await?,
        vec![untenanted.id]
    );
    assert_eq!(
        listed(&store, LabelScope::Tenant("default"), &[("zone", "x")], 4).await?,
        Vec::<Uuid>::new()
    );

    // Through the API, in a fresh keyspace whose old records no index knows yet: the same
    // answer whether or not the API node's background build has finished.
    let keys = fresh_keys("legacy");
    let store = Store::new(connect::shared(&redis.url).await?, keys.clone());
    let mut gold = Vec::new();
    for n in 0..250 {
        let tier = if n % 5 == 0 { "gold" } else { "silver" };
        let inst = instance("default", &format!("old{n}"), &[("tier", tier)]);
        legacy_record(&store, &keys, &inst).await?;
        if tier == "gold" {
            gold.push(inst.id.to_string());
        }
    }
    let api = ApiNode::start(&redis.url, &keys).await?;
    let http = reqwest::Client::new();
    let list_gold = || async {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{}/api/v1/instances?label=tier=gold&limit=7", api.url);
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let page: Value = http.get(url).send().await?.json().await?;
            for item in page["items"].as_array().expect("items") {
                seen.push(item["id"].as_str().expect("id").to_owned());
            }
            match page["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return anyhow::Ok(seen),
            }
        }
    };
    assert_eq!(list_gold().await?, gold, "before or during the build");
    wait_until(|| async { store.label_index_built().await.ok().filter(|b| *b) }).await?;
    assert_eq!(list_gold().await?, gold, "from the built index");
    api.shutdown().await;
    Ok(())
}
