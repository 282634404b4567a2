//! `draas tenants`: tenant quotas straight on Redis: set (or remove) limits, show one
//! tenant's quota and usage, list every tenant with a quota.
//!
//! Limits: `--max-instances` (instance records), `--max-running` (instances starting or
//! running), `--max-config-bytes` (the config JSON at create and patch). A value of `none`
//! removes the limit. Exceeding one is the API's 409 `quota_exceeded`.

use anyhow::bail;
use clap::{Args, Subcommand};
use draas_bus::Store;
use draas_bus::store::{Limit, LimitChange, Quota, Usage};
use draas_protocol::auth::is_tenant_name;
use serde::Serialize;

use crate::Common;

#[derive(Args)]
pub struct TenantsArgs {
    #[command(flatten)]
    pub common: Common,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: TenantsCmd,
}

#[derive(Subcommand)]
enum TenantsCmd {
    /// Set or remove limits of a tenant's quota (`none` removes one).
    Set {
        tenant: String,
        #[arg(long, value_parser = parse_limit)]
        max_instances: Option<MaxValue>,
        #[arg(long, value_parser = parse_limit)]
        max_running: Option<MaxValue>,
        #[arg(long, value_parser = parse_limit)]
        max_config_bytes: Option<MaxValue>,
    },
    /// A tenant's quota and what it uses.
    Get { tenant: String },
    /// Every tenant that was given a quota.
    List,
}

/// A limit's new value: a number, or `None` for unlimited.
#[derive(Clone, Copy)]
struct MaxValue(Option<u64>);

fn parse_limit(text: &str) -> Result<MaxValue, String> {
    match text {
        "none" => Ok(MaxValue(None)),
        _ => text
            .parse()
            .map(|n| MaxValue(Some(n)))
            .map_err(|_| format!("`{text}` is not a count: a non-negative integer or `none`")),
    }
}

/// One tenant as printed.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TenantView {
    tenant: String,
    quota: Quota,
    usage: Usage,
}

pub async fn run(args: TenantsArgs) -> anyhow::Result<()> {
    let store = args.common.store().await?;
    match args.command {
        TenantsCmd::Set {
            tenant,
            max_instances,
            max_running,
            max_config_bytes,
        } => {
            check_name(&tenant)?;
            let changes: Vec<LimitChange> = [
                (Limit::MaxInstances, max_instances),
                (Limit::MaxRunning, max_running),
                (Limit::MaxConfigBytes, max_config_bytes),
            ]
            .into_iter()
            .filter_map(|(limit, value)| value.map(|v| (limit, v.0)))
            .collect();
            if changes.is_empty() {
                bail!("nothing to set: give --max-instances, --max-running or --max-config-bytes");
            }
            store.set_quota(&tenant, &changes).await?;
            show(&store, &tenant, args.json).await
        }
        TenantsCmd::Get { tenant } => {
            check_name(&tenant)?;
            show(&store, &tenant, args.json).await
        }
        TenantsCmd::List => {
            let mut views = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = store.tenants_page(after.as_deref(), 200).await?;
                let Some(last) = page.last().cloned() else {
                    break;
                };
                for tenant in page {
                    views.push(view(&store, &tenant).await?);
                }
                after = Some(last);
            }
            if args.json {
                println!("{}", serde_json::to_string_pretty(&views)?);
            } else if views.is_empty() {
                println!(
                    "no tenant has a quota; set one with `draas tenants set TENANT --max-instances N`"
                );
            } else {
                for v in &views {
                    print_view(v);
                }
            }
            Ok(())
        }
    }
}

fn check_name(tenant: &str) -> anyhow::Result<()> {
    if !is_tenant_name(tenant) {
        bail!(
            "`{tenant}` is not a tenant name: 1 to 63 lowercase letters, digits or '-', not starting or ending with '-'"
        );
    }
    Ok(())
}

async fn view(store: &Store, tenant: &str) -> anyhow::Result<TenantView> {
    Ok(TenantView {
        tenant: tenant.to_owned(),
        quota: store.quota(tenant).await?,
        usage: store.usage(tenant).await?,
    })
}

async fn show(store: &Store, tenant: &str, json: bool) -> anyhow::Result<()> {
    let v = view(store, tenant).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_view(&v);
    }
    Ok(())
}

fn print_view(v: &TenantView) {
    let max = |limit: Limit| {
        v.quota
            .get(limit)
            .map_or_else(|| "unlimited".to_owned(), |n| n.to_string())
    };
    println!(
        "{}: instances {}/{}, running {}/{}, config bytes max {}",
        v.tenant,
        v.usage.instances,
        max(Limit::MaxInstances),
        v.usage.running,
        max(Limit::MaxRunning),
        max(Limit::MaxConfigBytes),
    );
}
